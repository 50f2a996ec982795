//! Capacity tuning: what lets one machine hold ten thousand idle users, each with a thread
//! of their own, under the 200 MiB the bench's capacity row asks for. Each trick here was
//! measured with and without (`make bench`'s capacity row, alternating runs of the two
//! builds, medians of five; docs/performance.md has the figures) and stays because removing
//! it moves that row:
//!
//! - [`read`]: a waiting read takes 256 bytes on the stack and reads on into the heap buffer
//!   only when they filled it, so an idle connection holds no read buffer and its waiting
//!   frames stay within two stack pages (a 4 KiB heap read buffer per connection instead:
//!   +24 % resident memory at 10,000 users).
//! - [`memory`]: glibc's per-thread malloc caches kept to chunks of 128 bytes (the process
//!   restarts itself once with `GLIBC_TUNABLES`), and freed heap given back once a second
//!   (`malloc_trim`). Each alone moved the row by 8-9 %, together by 16 %: they stay as a
//!   pair, since without them the row would be worse by more than its noise.
//! - [`stack`]: a connection thread gives back (`madvise`) the stack pages below its waiting
//!   frame after its login and, at most once a second, after a command. No change to the
//!   bench's row, whose users log in with plaintext passwords (155 against 157 MiB); with
//!   argon2 passwords, which every classroom using `add-user` has, the check goes deeper:
//!   1,500 idle users took 52 MiB without it against 35 with it (three alternating runs).
//! - [`thread`]: connection threads started with `pthread_create`, without std's per-thread
//!   signal stack: two memory maps per user instead of four, which took the login ramp to
//!   10,000 users from 6,439 to 9,766 logins/s (median of 3, alternating) and moved the
//!   thread ceiling (`vm.max_map_count`) past the open-files limit.
//!
//! [`gauge`] is not a trick but the measuring stick the stack economy is checked with
//! (tests and `lanchat-bench`'s `kib_per_user`).

pub mod gauge;
pub mod memory;
pub mod read;
pub mod stack;
pub(crate) mod thread;
