//! Capacity tuning: what lets one machine hold ten thousand idle users, each with a thread
//! of their own, within the memory and login rate `make bench`'s capacity row asks for.
//! Each trick was measured with and without, in alternating runs of the two builds, and
//! stays because removing it makes that row worse (the figures: docs/performance.md, "Each
//! tuning trick, measured"):
//!
//! - [`read`]: a waiting read takes 256 bytes on the stack and reads on into the heap buffer
//!   only when they filled it, so an idle connection holds no read buffer and its waiting
//!   frames stay within two stack pages.
//! - [`memory`]: glibc's per-thread malloc caches kept to small chunks (the process restarts
//!   itself once with `GLIBC_TUNABLES`), and freed heap given back once a second
//!   (`malloc_trim`). They stay as a pair: each alone is worth a little under the issue's
//!   10 %, together more than the row's noise allows to lose.
//! - [`stack`]: a connection thread gives back (`madvise`) the stack pages below its waiting
//!   frame after its login and, at most once a second, after a command. The plaintext
//!   capacity row does not need it (those logins go no deeper than waiting does); an
//!   argon2 check does, and the `capacity 500 argon2` row shows what every idle user of a
//!   classroom with hashed passwords would keep without it.
//! - [`thread`]: connection threads started with `pthread_create`, without std's per-thread
//!   signal stack: two memory maps per user instead of four, which made the login ramp
//!   faster (each map call walks the process's tens of thousands of maps) and moved the
//!   thread ceiling (`vm.max_map_count`) past the open-files limit.
//!
//! [`gauge`] is not a trick but the measuring stick the stack economy is checked with
//! (tests and `lanchat-bench`'s `kib_per_user`).

pub mod gauge;
pub mod memory;
pub mod read;
pub mod stack;
pub(crate) mod thread;
