//! Giving back the stack pages a connection thread touched once (the login) and will not
//! need while it waits for its user's next line.
//!
//! A thread's stack pages stay resident once touched, however briefly: the deepest call a
//! connection ever made (the password check, the welcome and the mail delivered at login)
//! would cost every idle user that many pages for as long as it stays connected.
//! [`release_unused_stack`] hands the pages below the caller's frame back (they read as
//! zeros when touched again). The stack's size, hence its overflow margin, is unchanged.

use std::time::{Duration, Instant};

thread_local! {
    /// Whether this thread's stack is painted by the stack gauge (its pages must then stay
    /// as they are: released pages read as zeros and would look used).
    static PAINTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records whether the calling thread's stack is painted (`gauge::paint`, `finish`).
pub(super) fn set_painted(painted: bool) {
    PAINTED.with(|p| p.set(painted));
}

/// Whether the calling thread's stack is painted.
fn painted() -> bool {
    PAINTED.with(std::cell::Cell::get)
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
pub(super) fn stack_pointer() -> usize {
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
    if painted() {
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
