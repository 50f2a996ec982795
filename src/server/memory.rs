//! Keeping ten thousand idle users small: giving freed heap back to the system, and giving
//! back the stack pages a connection thread touched once (the login) and will not need
//! while it waits for its user's next line.
//!
//! A burst (ten thousand users logging in, each login a presence notice to everyone) fills
//! outboxes for a few seconds; glibc keeps what was freed in its arenas, so without
//! [`release_free_memory`] the server's resident memory stays at the burst's peak long
//! after the outboxes are empty.
//!
//! A thread's stack pages stay resident once touched, however briefly: the deepest call a
//! connection ever made (the password check, the welcome and the mail delivered at login)
//! would cost every idle user that many pages for as long as it stays connected.
//! [`release_unused_stack`] hands the pages below the caller's frame back (they read as
//! zeros when touched again). The stack's size, hence its overflow margin, is unchanged.

use std::time::{Duration, Instant};

/// The glibc tunable the server runs with: its per-thread malloc cache (tcache) keeps only
/// chunks of up to 128 bytes. By default each thread keeps up to seven freed chunks of every
/// size up to 1 KiB for itself; with a thread per user that was 5 KiB or so of dead heap per
/// idle user (a third of what the user cost), while the small chunks the hot paths allocate
/// and free stay as fast as before.
pub const MALLOC_TUNABLE: &str = "glibc.malloc.tcache_max=128";

/// Starts this program again (same process, arguments and environment) with
/// [`MALLOC_TUNABLE`] in `GLIBC_TUNABLES`, which glibc reads only at startup; returns
/// (doing nothing) where that is not glibc on Linux, when the variable already sets the
/// tcache size (a second start, or the operator's own choice: then the process is named
/// after the program), or if the exec fails.
pub fn restart_with_small_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        if current
            .to_string_lossy()
            .contains("glibc.malloc.tcache_max")
        {
            name_process_after_program();
            return;
        }
        let mut value = current;
        if !value.is_empty() {
            value.push(":");
        }
        value.push(MALLOC_TUNABLE);
        let mut args = std::env::args_os();
        let Some(argv0) = args.next() else { return };
        let error = std::process::Command::new("/proc/self/exe")
            .arg0(argv0)
            .args(args)
            .env("GLIBC_TUNABLES", value)
            .exec();
        log::debug!("running without {MALLOC_TUNABLE}: cannot restart: {error}");
    }
}

/// Names the process after the file it was started as (`lanchat-server`): the kernel names
/// it after the file executed, and the second start runs `/proc/self/exe`, which `ps`, `top`
/// and `pkill lanchat-server` would then show as `exe`. Threads started later inherit it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn name_process_after_program() {
    use std::os::unix::ffi::OsStrExt;
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    let Some(file) = std::path::Path::new(&argv0).file_name() else {
        return;
    };
    let Some(name) = super::thread::kernel_name(file.as_bytes()) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `name`
    // is, and keeps no pointer to it.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

/// Returns free heap memory to the system (`malloc_trim`); cheap when there is little.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The usable part of the calling thread's stack, `(low, high)` addresses (the guard page
/// below `low` excluded); `None` where it cannot be known.
#[allow(unsafe_code)]
pub fn stack_bounds() -> Option<(usize, usize)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read and destroyed
    // once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() {
            return None;
        }
        let low = addr as usize;
        Some((low, low + size))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// An address inside the caller's frame (approximately the stack pointer).
#[inline(always)]
fn stack_pointer() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Page size assumed for releasing (a larger real page only makes the release a no-op
/// for part of the range).
const PAGE: usize = 4096;
/// What stays untouched below the releasing frame: that frame's callee, the libc call.
const RELEASE_MARGIN: usize = 512;

/// Gives back the calling thread's stack pages below its current frame (they stay mapped
/// and read as zeros when touched again). For a connection thread about to wait a long
/// time for its user, after work that went deeper than waiting does (logging in).
pub fn release_unused_stack() {
    if let Some((low, high)) = stack_bounds() {
        release_stack(low, high);
    }
}

/// Gives the stack below the caller back and remembers when (see [`IdleStack`]).
fn release_stack(low: usize, high: usize) {
    LAST_RELEASE.with(|t| t.set(Some(Instant::now())));
    release_below(low, high);
}

thread_local! {
    /// When this thread last gave its stack back: a wait right after the release that
    /// follows a login needs no second `madvise` (it was one more per login, counted with
    /// `perf` over the login ramp).
    static LAST_RELEASE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// [`release_unused_stack`] with the thread's stack bounds known.
#[inline(never)]
#[allow(unsafe_code)]
fn release_below(low: usize, high: usize) {
    if gauge::enabled() {
        // Released pages read as zeros: they would look used.
        return;
    }
    let sp = stack_pointer();
    if sp <= low || sp > high {
        return;
    }
    let low = low.next_multiple_of(PAGE);
    let end = sp.saturating_sub(RELEASE_MARGIN) & !(PAGE - 1);
    if end <= low {
        return;
    }
    // SAFETY: [low, end) lies in this thread's own stack (its bounds, checked against the
    // current frame), wholly below this call's frame and the margin for the madvise call
    // made from it: nothing live is there, and MADV_DONTNEED on private anonymous memory
    // only makes the pages read as zeros when next touched.
    unsafe {
        libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED);
    }
}

/// How often, at most, a connection thread gives back the stack its commands touched.
const IDLE_RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Gives back, before a connection thread waits for its user, the stack pages its last
/// commands touched below the waiting frames: at most once per [`IDLE_RELEASE_EVERY`] (a
/// busy client pays a system call a second, not one a line), and only after a line.
#[derive(Default)]
pub struct IdleStack {
    /// The thread's stack, once asked.
    bounds: Option<Option<(usize, usize)>>,
    /// Whether a line was handled since the stack was last given back.
    used: bool,
}

impl IdleStack {
    /// A line was handled: the next wait may give the stack back.
    pub fn used(&mut self) {
        self.used = true;
    }

    /// The thread is about to wait for its user.
    pub fn before_wait(&mut self) {
        let recent =
            LAST_RELEASE.with(|t| t.get().is_some_and(|t| t.elapsed() < IDLE_RELEASE_EVERY));
        if !self.used || recent {
            return;
        }
        self.used = false;
        let bounds = *self.bounds.get_or_insert_with(stack_bounds);
        if let Some((low, high)) = bounds {
            release_stack(low, high);
        }
    }
}

/// Measuring how deep connection threads go (tests and diagnostics; off by default, as it
/// touches every page of every connection's stack), per server ([`StackGauge`]): a thread
/// paints its free stack with a pattern when it starts and, when it ends, finds the lowest
/// word that changed.
///
/// A page only probed (`or $0`, as a frame larger than a page is entered) keeps its
/// pattern, so the depth found can be short of the true one by less than a page.
pub mod gauge {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    const PATTERN: u64 = 0x5a5a_a5a5_5a5a_a5a5;
    /// Left unpainted under the painter's own frame.
    const MARGIN: usize = 512;

    thread_local! {
        /// Whether this thread's stack is painted (its pages must then stay as they are).
        static PAINTED: Cell<bool> = const { Cell::new(false) };
    }

    /// One server's switch and result: whether its connection threads measure their stack
    /// use, and the deepest use measured so far.
    #[derive(Clone, Debug, Default)]
    pub struct StackGauge(Arc<(AtomicBool, AtomicUsize)>);

    impl StackGauge {
        /// Makes this server's connection threads started from now on measure their stack.
        pub fn enable(&self) {
            self.0 .0.store(true, Ordering::Release);
        }

        /// Whether this server's connection threads measure their stack use.
        pub fn enabled(&self) -> bool {
            self.0 .0.load(Ordering::Acquire)
        }

        /// The deepest stack use of one of this server's connection threads that has ended,
        /// in bytes from the top of its stack (what the thread library keeps there
        /// included); 0 if none was measured.
        pub fn deepest(&self) -> usize {
            self.0 .1.load(Ordering::Acquire)
        }

        /// Records one thread's depth.
        pub(crate) fn record(&self, depth: usize) {
            self.0 .1.fetch_max(depth, Ordering::AcqRel);
        }
    }

    /// Whether the calling thread's stack is painted.
    pub fn enabled() -> bool {
        PAINTED.with(Cell::get)
    }

    /// A painted stack, measured when [`Painted::finish`] is called.
    pub struct Painted {
        low: usize,
        high: usize,
    }

    /// Paints the calling thread's free stack if `gauge` is enabled.
    #[inline(never)]
    #[allow(unsafe_code)]
    pub fn paint(gauge: &StackGauge) -> Option<Painted> {
        if !gauge.enabled() {
            return None;
        }
        let (low, high) = super::stack_bounds()?;
        let low = low.next_multiple_of(8);
        let end = (super::stack_pointer().checked_sub(MARGIN)?) & !7;
        let mut at = low;
        while at < end {
            // SAFETY: [low, end) is this thread's own stack below this call's frame (and
            // the margin): unused, writable memory.
            unsafe { std::ptr::write_volatile(at as *mut u64, PATTERN) };
            at += 8;
        }
        PAINTED.with(|p| p.set(true));
        Some(Painted { low, high })
    }

    impl Painted {
        /// How deep the thread went since it painted.
        #[allow(unsafe_code)]
        pub fn finish(self) -> usize {
            let mut at = self.low;
            // SAFETY: the same painted range, below the frames still live.
            while at < self.high && unsafe { std::ptr::read_volatile(at as *const u64) } == PATTERN
            {
                at += 8;
            }
            PAINTED.with(|p| p.set(false));
            self.high - at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of `[low, high)` (mincore).
    #[allow(unsafe_code)]
    fn resident_pages(low: usize, high: usize) -> usize {
        let low = low.next_multiple_of(PAGE);
        let pages = (high - low) / PAGE;
        let mut vec = vec![0u8; pages];
        // SAFETY: [low, low + pages * PAGE) is mapped (a thread's stack); `vec` has a byte
        // per page.
        let rc = unsafe { libc::mincore(low as *mut libc::c_void, pages * PAGE, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[inline(never)]
    fn go_deep(bytes: usize) -> u8 {
        let mut buf = [0u8; 4096];
        std::hint::black_box(&mut buf);
        if bytes > buf.len() {
            go_deep(bytes - buf.len()).wrapping_add(buf[7])
        } else {
            buf[3]
        }
    }

    /// Runs `test` on a thread with a connection thread's stack, given that stack's bounds.
    fn on_a_connection_stack(test: impl FnOnce(usize, usize) + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let (low, high) = stack_bounds().expect("a thread's stack bounds");
                test(low, high)
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn released_stack_pages_are_no_longer_resident_and_read_as_zeros_again() {
        on_a_connection_stack(|low, high| {
            assert!(high - low >= 200 * 1024, "{low:x}-{high:x}");
            go_deep(96 * 1024);
            let deep = resident_pages(low, high);
            assert!(deep >= 24, "{deep} pages after going 96 KiB deep");
            release_unused_stack();
            let after = resident_pages(low, high);
            assert!(after <= 4, "{after} pages still resident (from {deep})");
            // The stack works as before.
            go_deep(96 * 1024);
        });
    }

    #[test]
    fn an_idle_stack_is_released_after_a_line_at_most_once_a_second() {
        on_a_connection_stack(|low, high| {
            let mut idle = IdleStack::default();
            go_deep(64 * 1024);
            idle.before_wait();
            assert!(
                resident_pages(low, high) >= 16,
                "no line yet: nothing released"
            );
            idle.used();
            idle.before_wait();
            assert!(resident_pages(low, high) <= 4);
            go_deep(64 * 1024);
            idle.used();
            idle.before_wait();
            assert!(
                resident_pages(low, high) >= 16,
                "released again within a second"
            );
        });
    }

    #[test]
    fn the_release_after_a_login_counts_for_the_next_wait() {
        on_a_connection_stack(|low, high| {
            go_deep(64 * 1024);
            release_unused_stack();
            assert!(resident_pages(low, high) <= 4);
            go_deep(64 * 1024);
            let mut idle = IdleStack::default();
            idle.used();
            idle.before_wait();
            assert!(
                resident_pages(low, high) >= 16,
                "the wait right after the login's release makes no second madvise"
            );
        });
    }
}
