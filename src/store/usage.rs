//! How many bytes the data directory holds, against its bound (`max_data_bytes`).
//!
//! In `auth = "open"` mode anyone can invent users, and every message to an offline user is
//! kept on disk: without a bound a script fills the disk. The count is kept as the store
//! writes and removes files, and measured again from the directory (at most once a second)
//! whenever a write seems not to fit, so a count that drifted (a file changed by hand, a
//! path this count missed) never refuses for long what fits.
//!
//! It does not decide what to refuse: the store refuses new mail past the bound (its
//! sender is told), writes no more history, and still writes what it already promised
//! (a rescued message, the user journal).

use parking_lot::Mutex;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the directory may be measured again when a write seems not to fit.
const REMEASURE_EVERY: Duration = Duration::from_secs(1);

/// The data directory's size and bound.
pub struct Usage {
    /// The directory measured (its files, and those of its `mail` and `history` folders).
    dir: PathBuf,
    /// The bound in bytes; 0 = none.
    max: AtomicU64,
    /// Bytes held, as counted.
    used: AtomicU64,
    /// When the directory was last measured; also serialises measuring.
    measured: Mutex<Instant>,
    /// Whether a "history is no longer written" warning was logged since the last write
    /// that fitted (one warning per episode, not one per line).
    warned: AtomicBool,
}

/// Sum of the sizes of the regular files in `dir` and its `mail` and `history` folders.
fn measure(dir: &Path) -> u64 {
    [dir.to_path_buf(), dir.join("mail"), dir.join("history")]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

impl Usage {
    /// Measures `dir` now; no bound until [`Usage::set_limit`].
    pub fn measure(dir: &Path) -> Usage {
        Usage {
            dir: dir.to_path_buf(),
            max: AtomicU64::new(0),
            used: AtomicU64::new(measure(dir)),
            measured: Mutex::new(Instant::now()),
            warned: AtomicBool::new(false),
        }
    }

    /// Sets the bound (0 = none).
    pub fn set_limit(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The bound (0 = none).
    pub fn limit(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Bytes held, as counted.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more fit under the bound now (nothing is reserved).
    pub fn admits(&self, bytes: u64) -> bool {
        self.fits(bytes, false)
    }

    /// Counts `bytes` about to be written if they fit under the bound; whether they did.
    /// Reserving before writing keeps two writers from both taking the last room; a write
    /// that then fails gives its bytes back with [`Usage::sub`].
    pub fn reserve(&self, bytes: u64) -> bool {
        self.fits(bytes, true)
    }

    fn fits(&self, bytes: u64, reserve: bool) -> bool {
        let max = self.limit();
        let try_once = || {
            self.used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    let after = u.saturating_add(bytes);
                    (max == 0 || after <= max).then_some(if reserve { after } else { u })
                })
                .is_ok()
        };
        if try_once() {
            if reserve {
                self.clear_warned();
            }
            return true;
        }
        let mut measured = self.measured.lock();
        if measured.elapsed() >= REMEASURE_EVERY {
            self.used.store(measure(&self.dir), Ordering::Relaxed);
            *measured = Instant::now();
        }
        drop(measured);
        try_once()
    }

    /// Counts `bytes` written without a reservation (what is written whatever the bound).
    pub fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A write fitted: the next refusal is worth a warning again.
    fn clear_warned(&self) {
        // Read first: every history round and mail passes here, and a store would bounce
        // the flag's cache line between cores for nothing.
        if self.warned.load(Ordering::Relaxed) {
            self.warned.store(false, Ordering::Relaxed);
        }
    }

    /// Counts `bytes` removed.
    pub fn sub(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    /// Whether this is the first refusal since the last write that fitted (to warn once).
    pub fn first_refusal(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_written_and_measures_again_when_full() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("mail")).unwrap();
        fs::write(tmp.path().join("mail/a.log"), [0u8; 100]).unwrap();
        let usage = Usage::measure(tmp.path());
        assert_eq!(usage.used(), 100);
        assert!(usage.admits(1_000_000));
        usage.set_limit(150);
        assert!(usage.admits(50));
        assert!(!usage.admits(51));
        assert!(usage.reserve(50));
        assert_eq!(usage.used(), 150);
        assert!(!usage.reserve(1));
        assert_eq!(usage.used(), 150);
        // A count that drifted up is corrected by measuring again (the file is gone).
        fs::remove_file(tmp.path().join("mail/a.log")).unwrap();
        *usage.measured.lock() -= REMEASURE_EVERY;
        assert!(usage.admits(150));
        assert!(usage.first_refusal());
        assert!(!usage.first_refusal());
    }
}
