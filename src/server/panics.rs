//! How many of one server's threads panicked (a panic is caught and logged, and the server
//! goes on): tests assert it stays 0 without a process-wide panic hook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A live count of the panics on one server's connection, listener and janitor threads.
#[derive(Clone, Debug, Default)]
pub struct PanicCount(Arc<AtomicUsize>);

impl PanicCount {
    /// How many so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Counts a panic on the current thread while the returned value lives.
    pub(crate) fn watch(&self) -> Watch {
        Watch(self.clone())
    }
}

/// Adds one to its count if it is dropped while its thread unwinds from a panic.
pub(crate) struct Watch(PanicCount);

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0).0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_under_watch_is_counted_and_a_normal_end_is_not() {
        let count = PanicCount::default();
        let watched = count.clone();
        std::thread::spawn(move || {
            let _watch = watched.watch();
        })
        .join()
        .unwrap();
        assert_eq!(count.get(), 0);
        let watched = count.clone();
        let ended = std::thread::spawn(move || {
            let _watch = watched.watch();
            panic!("on purpose");
        })
        .join();
        assert!(ended.is_err());
        assert_eq!(count.get(), 1);
    }
}
