//! Failed-login bookkeeping as pure functions of `now` (seed 001's rule): after
//! `max_attempts` consecutive failures for one key, the key is refused for `block_secs`.
//! A success clears the count. The key is (username, IP) or username alone, by policy.

use std::collections::HashMap;
use std::hash::Hash;

/// The failures recorded for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Failures {
    /// Consecutive failures since the last success or block.
    count: u32,
    /// While `now < blocked_until`, the key is blocked.
    blocked_until: u64,
    /// When the last failure happened; old failures are forgotten after a block time.
    last_failure: u64,
}

/// What a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Not blocked yet; this many tries are left.
    TriesLeft(u32),
    /// The key is now blocked for this many seconds.
    Blocked(u64),
}

/// The lockout table: rules plus per-key state. Not thread-safe by itself; the hub keeps it
/// behind its own lock.
#[derive(Debug)]
pub struct Lockouts<K> {
    /// Failures allowed before a block.
    max_attempts: u32,
    /// Length of a block.
    block_secs: u64,
    /// Keys with failures or an active block.
    table: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Lockouts<K> {
    /// An empty table.
    pub fn new(max_attempts: u32, block_secs: u64) -> Self {
        Lockouts {
            max_attempts: max_attempts.max(1),
            block_secs,
            table: HashMap::new(),
        }
    }

    /// Seconds left on `key`'s block, if it is blocked at `now`.
    pub fn blocked_for(&self, key: &K, now: u64) -> Option<u64> {
        let f = self.table.get(key)?;
        (now < f.blocked_until).then(|| f.blocked_until - now)
    }

    /// Records a failed attempt at `now`.
    pub fn fail(&mut self, key: &K, now: u64) -> AfterFailure {
        if let Some(left) = self.blocked_for(key, now) {
            return AfterFailure::Blocked(left);
        }
        let block_secs = self.block_secs;
        let f = self.table.entry(key.clone()).or_default();
        if f.count > 0 && now >= f.last_failure + block_secs {
            f.count = 0;
        }
        f.count += 1;
        f.last_failure = now;
        if f.count >= self.max_attempts {
            f.count = 0;
            f.blocked_until = now + self.block_secs;
            AfterFailure::Blocked(self.block_secs)
        } else {
            AfterFailure::TriesLeft(self.max_attempts - f.count)
        }
    }

    /// Records a success: the count starts again.
    pub fn succeed(&mut self, key: &K) {
        self.table.remove(key);
    }

    /// Forgets keys whose block is over and whose last failure is older than a block time;
    /// keeps the table from growing without bound under a guessing attack.
    pub fn prune(&mut self, now: u64) {
        let block_secs = self.block_secs;
        self.table
            .retain(|_, f| now < f.blocked_until || now < f.last_failure + block_secs);
    }

    /// Number of keys tracked (for tests and stats).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_attempts_and_unblocks_after_block_time() {
        let mut l = Lockouts::new(3, 60);
        let k = ("columbia", "10.0.0.1");
        assert_eq!(l.fail(&k, 1000), AfterFailure::TriesLeft(2));
        assert_eq!(l.fail(&k, 1001), AfterFailure::TriesLeft(1));
        assert_eq!(l.blocked_for(&k, 1001), None);
        assert_eq!(l.fail(&k, 1002), AfterFailure::Blocked(60));
        assert_eq!(l.blocked_for(&k, 1002), Some(60));
        assert_eq!(l.blocked_for(&k, 1061), Some(1));
        assert_eq!(l.fail(&k, 1030), AfterFailure::Blocked(32));
        assert_eq!(l.blocked_for(&k, 1062), None);
        // After the block the count starts fresh.
        assert_eq!(l.fail(&k, 1062), AfterFailure::TriesLeft(2));
    }

    #[test]
    fn keys_are_independent() {
        let mut l = Lockouts::new(2, 60);
        let a = ("u", "1.1.1.1");
        let b = ("u", "2.2.2.2");
        l.fail(&a, 0);
        assert_eq!(l.fail(&a, 0), AfterFailure::Blocked(60));
        assert_eq!(l.blocked_for(&b, 0), None);
        assert_eq!(l.fail(&b, 0), AfterFailure::TriesLeft(1));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let mut l = Lockouts::new(3, 60);
        l.fail(&"u", 0);
        l.fail(&"u", 1);
        assert_eq!(l.fail(&"u", 61), AfterFailure::TriesLeft(2));
    }

    #[test]
    fn success_resets_the_count() {
        let mut l = Lockouts::new(3, 60);
        l.fail(&"u", 0);
        l.fail(&"u", 0);
        l.succeed(&"u");
        assert_eq!(l.fail(&"u", 0), AfterFailure::TriesLeft(2));
    }

    #[test]
    fn prune_forgets_expired_blocks() {
        let mut l = Lockouts::new(1, 10);
        l.fail(&"u", 0);
        l.prune(5);
        assert_eq!(l.len(), 1);
        l.prune(10);
        assert!(l.is_empty());
        let mut l = Lockouts::new(3, 10);
        l.fail(&"v", 0);
        l.prune(9);
        assert_eq!(l.len(), 1);
        l.prune(10);
        assert!(l.is_empty());
    }
}
