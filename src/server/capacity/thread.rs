//! Connection threads, started with `pthread_create` directly instead of `std::thread`.
//!
//! Rust's std gives every thread it starts its own signal stack (an `mmap`, an `mprotect` for
//! its guard page and a `sigaltstack`, and an `munmap` when the thread ends), so that a stack
//! overflow can print its message. For a server with a thread per user that is two memory
//! maps per user next to the two of the thread's stack: the process hit the kernel's
//! `vm.max_map_count` (65,530) at about 16,300 threads, and the two system calls were a
//! tenth of a login's cost at 10,000 users (they walk the process's tens of thousands of
//! mappings). A connection thread started here has only glibc's stack and guard page: an
//! overflow still faults on the guard page and ends the process (without std's message), as
//! std's own handler does after printing it.
//!
//! The thread is detached (nobody joins connection threads: their end is told through
//! `Shared::conn_ended`), and a panic in it is caught and logged, as std would have reported
//! it, without unwinding into C.

use std::ffi::{c_void, CString};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What the new thread runs.
type Body = Box<dyn FnOnce() + Send + 'static>;

/// What the new thread is given: its name and its body.
struct Start {
    name: CString,
    body: Body,
}

/// Starts a detached thread named `name` (at most 15 bytes are kept, the kernel's limit)
/// with a stack of `stack_bytes` (raised to the system's minimum and rounded up to pages),
/// running `body`.
#[allow(unsafe_code)]
pub fn spawn_detached(
    name: &str,
    stack_bytes: usize,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let name = kernel_name(name.as_bytes())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "thread name has a NUL"))?;
    let start = Box::into_raw(Box::new(Start {
        name,
        body: Box::new(body),
    }));
    // SAFETY: `attr` is initialised before use and destroyed on every path; `start` is a
    // valid pointer whose ownership passes to the new thread if (and only if) it starts,
    // and is taken back here otherwise.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_attr_init(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(start));
            return Err(io::Error::from_raw_os_error(rc));
        }
        let rc = match libc::pthread_attr_setstacksize(&mut attr, stack_size(stack_bytes)) {
            0 => libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED),
            rc => rc,
        };
        let rc = match rc {
            0 => {
                let mut thread: libc::pthread_t = std::mem::zeroed();
                libc::pthread_create(&mut thread, &attr, run, start.cast())
            }
            rc => rc,
        };
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(start));
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// `name` as the kernel keeps a thread's or process's name: its first 15 bytes, NUL-ended;
/// `None` if they hold a NUL.
pub fn kernel_name(name: &[u8]) -> Option<CString> {
    CString::new(&name[..name.len().min(15)]).ok()
}

/// A stack size pthreads accepts: at least `PTHREAD_STACK_MIN`, a whole number of pages.
#[allow(unsafe_code)]
fn stack_size(wanted: usize) -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    wanted.max(libc::PTHREAD_STACK_MIN).div_ceil(page) * page
}

/// The new thread's start: names it, runs its body, and keeps a panic from unwinding into C.
#[allow(unsafe_code)]
extern "C" fn run(start: *mut c_void) -> *mut c_void {
    // SAFETY: `start` is the pointer `spawn_detached` gave up ownership of.
    let Start { name, body } = *unsafe { Box::from_raw(start.cast::<Start>()) };
    // SAFETY: `name` is NUL-terminated and at most 15 bytes long.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log::error!(
            "thread {} panicked (see the message above)",
            name.to_string_lossy()
        );
    }
    std::ptr::null_mut()
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// The name the kernel has for the calling thread.
    fn own_name() -> String {
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is 16 bytes, the size the call may write.
        let rc = unsafe {
            libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr().cast(), buf.len())
        };
        assert_eq!(rc, 0);
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// The calling thread's alternate signal stack, if it has one.
    fn has_signal_stack() -> bool {
        // SAFETY: reading the current alternate stack into a zeroed struct.
        unsafe {
            let mut stack: libc::stack_t = std::mem::zeroed();
            assert_eq!(libc::sigaltstack(std::ptr::null(), &mut stack), 0);
            stack.ss_flags & libc::SS_DISABLE == 0
        }
    }

    #[test]
    fn the_thread_runs_named_with_the_stack_asked_for_and_no_signal_stack() {
        let (tx, rx) = mpsc::channel();
        spawn_detached("conn-a-long-name-cut", 256 * 1024, move || {
            let bounds = crate::server::capacity::stack::stack_bounds();
            tx.send((own_name(), bounds, has_signal_stack())).unwrap();
        })
        .unwrap();
        let (name, bounds, signal_stack) = rx.recv().unwrap();
        assert_eq!(name, "conn-a-long-nam", "the kernel keeps 15 bytes");
        let (low, high) = bounds.expect("the stack's bounds are known");
        assert!(
            (256 * 1024..512 * 1024).contains(&(high - low)),
            "stack of {} bytes",
            high - low
        );
        assert!(!signal_stack, "no per-thread signal stack is made");
        // A std thread, for contrast, has one (what this module saves).
        assert!(std::thread::spawn(has_signal_stack).join().unwrap());
    }

    #[test]
    fn a_panicking_body_ends_its_thread_only_and_drops_what_it_held() {
        struct Dropped(mpsc::Sender<&'static str>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send("dropped");
            }
        }
        let (tx, rx) = mpsc::channel();
        let held = Dropped(tx);
        spawn_detached("panics", 64 * 1024, move || {
            let _held = held;
            panic!("on purpose");
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap(), "dropped");
    }

    #[test]
    fn tiny_stacks_are_raised_to_what_pthreads_accepts() {
        assert!(stack_size(1) >= libc::PTHREAD_STACK_MIN);
        assert_eq!(stack_size(256 * 1024), 256 * 1024);
        assert_eq!(stack_size(256 * 1024 + 1) % 4096, 0);
    }
}
