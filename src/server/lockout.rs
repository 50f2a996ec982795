//! Failed-login bookkeeping as pure functions of `now` (seed 001's rule): after
//! `max_attempts` consecutive failures for one key, the key is refused for `block_secs`.
//! A success clears the count. The key is (username, IP) or username alone, by policy.
//!
//! A password check takes time (argon2: tens of milliseconds), and many may run at once, so
//! an attempt is counted from the moment its check begins, not when it ends: the caller
//! [`reserves`](Lockouts::reserve) a try before verifying and settles it afterwards with
//! [`fail`](Lockouts::fail), [`succeed`](Lockouts::succeed) or
//! [`release`](Lockouts::release). Failures plus tries in flight never exceed
//! `max_attempts`, so 40 guesses sent at the same instant get `max_attempts` checks, not 40.

use std::collections::HashMap;
use std::hash::Hash;

/// The failures recorded for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Failures {
    /// Consecutive failures since the last success or block.
    count: u32,
    /// Tries reserved and not yet settled (checks running now); they count against
    /// `max_attempts` like failures, so parallel guesses cannot outrun the count.
    in_flight: u32,
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

/// Whether a password may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Yes; settle it with `fail`, `succeed` or `release` once the check is done.
    Granted,
    /// No: the key is blocked for this many more seconds.
    Blocked(u64),
    /// No: failures plus the checks running now already use every try. The key will be
    /// blocked unless one of those checks turns out right.
    Exhausted,
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

    /// Reserves one try for `key` at `now`, before its password is checked.
    pub fn reserve(&mut self, key: &K, now: u64) -> Reservation {
        if let Some(left) = self.blocked_for(key, now) {
            return Reservation::Blocked(left);
        }
        let (block_secs, max_attempts) = (self.block_secs, self.max_attempts);
        let f = self.table.entry(key.clone()).or_default();
        forget_old_failures(f, now, block_secs);
        if f.count + f.in_flight >= max_attempts {
            return Reservation::Exhausted;
        }
        f.in_flight += 1;
        Reservation::Granted
    }

    /// Settles a try without a verdict (its check never ran): it no longer counts.
    pub fn release(&mut self, key: &K) {
        if let Some(f) = self.table.get_mut(key) {
            f.in_flight = f.in_flight.saturating_sub(1);
            if *f == Failures::default() {
                self.table.remove(key);
            }
        }
    }

    /// Records a failed attempt at `now`, settling a reserved try if there is one.
    pub fn fail(&mut self, key: &K, now: u64) -> AfterFailure {
        let block_secs = self.block_secs;
        let f = self.table.entry(key.clone()).or_default();
        f.in_flight = f.in_flight.saturating_sub(1);
        if now < f.blocked_until {
            return AfterFailure::Blocked(f.blocked_until - now);
        }
        forget_old_failures(f, now, block_secs);
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

    /// Records a success, settling a reserved try if there is one: the count starts again
    /// (tries of other checks still running stay reserved).
    pub fn succeed(&mut self, key: &K) {
        let Some(f) = self.table.get_mut(key) else {
            return;
        };
        f.in_flight = f.in_flight.saturating_sub(1);
        if f.in_flight == 0 {
            self.table.remove(key);
        } else {
            f.count = 0;
        }
    }

    /// Forgets keys whose block is over, whose last failure is older than a block time and
    /// that have no check running; keeps the table from growing without bound under a
    /// guessing attack.
    pub fn prune(&mut self, now: u64) {
        let block_secs = self.block_secs;
        self.table.retain(|_, f| {
            f.in_flight > 0 || now < f.blocked_until || now < f.last_failure + block_secs
        });
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

/// Failures older than a block time no longer count.
fn forget_old_failures(f: &mut Failures, now: u64, block_secs: u64) {
    if f.count > 0 && now >= f.last_failure + block_secs {
        f.count = 0;
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

    #[test]
    fn parallel_tries_cannot_outrun_the_count() {
        let mut l = Lockouts::new(3, 60);
        let k = "columbia";
        // 40 checks start at the same instant: three get a try, the rest none.
        let granted = (0..40)
            .filter(|_| l.reserve(&k, 100) == Reservation::Granted)
            .count();
        assert_eq!(granted, 3);
        assert_eq!(l.reserve(&k, 100), Reservation::Exhausted);
        assert_eq!(l.fail(&k, 100), AfterFailure::TriesLeft(2));
        // A settled failure frees nothing: failures plus checks in flight are still 3.
        assert_eq!(l.reserve(&k, 100), Reservation::Exhausted);
        assert_eq!(l.fail(&k, 101), AfterFailure::TriesLeft(1));
        assert_eq!(l.fail(&k, 101), AfterFailure::Blocked(60));
        // The right password arriving now is refused without a check.
        assert_eq!(l.reserve(&k, 102), Reservation::Blocked(59));
        assert_eq!(l.reserve(&k, 161), Reservation::Granted);
    }

    #[test]
    fn a_success_in_flight_clears_failures_but_keeps_other_reservations() {
        let mut l = Lockouts::new(3, 60);
        let k = "u";
        for _ in 0..3 {
            assert_eq!(l.reserve(&k, 0), Reservation::Granted);
        }
        l.succeed(&k);
        // Two checks still run: one more try is free.
        assert_eq!(l.reserve(&k, 0), Reservation::Granted);
        assert_eq!(l.reserve(&k, 0), Reservation::Exhausted);
        assert_eq!(l.fail(&k, 0), AfterFailure::TriesLeft(2));
        assert_eq!(l.fail(&k, 0), AfterFailure::TriesLeft(1));
        assert_eq!(l.fail(&k, 0), AfterFailure::Blocked(60));
        assert_eq!(l.blocked_for(&k, 1), Some(59));
    }

    #[test]
    fn a_released_try_is_given_back() {
        let mut l = Lockouts::new(1, 60);
        assert_eq!(l.reserve(&"u", 0), Reservation::Granted);
        assert_eq!(l.reserve(&"u", 0), Reservation::Exhausted);
        l.release(&"u");
        assert!(l.is_empty());
        assert_eq!(l.reserve(&"u", 0), Reservation::Granted);
    }

    #[test]
    fn prune_keeps_keys_with_checks_in_flight() {
        let mut l = Lockouts::new(3, 10);
        l.reserve(&"u", 0);
        l.prune(1_000);
        assert_eq!(l.len(), 1);
        assert_eq!(l.fail(&"u", 1_000), AfterFailure::TriesLeft(2));
    }

    #[test]
    fn old_failures_do_not_block_a_new_reservation() {
        let mut l = Lockouts::new(2, 60);
        l.reserve(&"u", 0);
        l.fail(&"u", 0);
        assert_eq!(l.reserve(&"u", 1), Reservation::Granted);
        assert_eq!(l.reserve(&"u", 1), Reservation::Exhausted);
        l.release(&"u");
        assert_eq!(l.reserve(&"u", 60), Reservation::Granted);
        assert_eq!(l.reserve(&"u", 60), Reservation::Granted);
    }
}
