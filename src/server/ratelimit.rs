//! A token bucket per connection, as a pure function of elapsed time: `rate` lines a second
//! sustained, up to `burst` at once. It answers how long a line must wait, not whether it
//! may pass: a line over the rate is handled late, never refused (see `policy`).
//!
//! Kept as a schedule (the generic cell rate algorithm): each line books the next
//! `1/rate` of a virtual timeline, and may be handled as soon as it is no more than
//! `burst - 1` intervals ahead of the real one. Whole nanoseconds, so the waits are exact.

use std::time::Duration;

/// One connection's budget.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Time one line books: `1/rate`; zero when the rate is unlimited.
    interval: Duration,
    /// How far ahead of now the schedule may run without waiting: `(burst - 1)` intervals.
    allowance: Duration,
    /// Where the schedule stands: the next line's slot (time since an arbitrary start).
    booked_until: Duration,
}

impl TokenBucket {
    /// A full bucket. `rate == 0` disables limiting.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let interval = match rate {
            0 => Duration::ZERO,
            r => Duration::from_secs(1) / r,
        };
        TokenBucket {
            interval,
            allowance: interval * burst.max(1).saturating_sub(1),
            booked_until: Duration::ZERO,
        }
    }

    /// Takes one line's token at time `now`; returns how long the line must wait before it
    /// is handled (zero when the budget has room). The token is taken either way, so the
    /// next line waits its own share after this one.
    pub fn take(&mut self, now: Duration) -> Duration {
        if self.interval.is_zero() {
            return Duration::ZERO;
        }
        let slot = self.booked_until.max(now);
        let handled_at = slot.saturating_sub(self.allowance).max(now);
        self.booked_until = slot + self.interval;
        handled_at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(10, 5);
        for _ in 0..5 {
            assert_eq!(b.take(ms(0)), Duration::ZERO);
        }
        assert_eq!(b.take(ms(0)), ms(100));
        // That line was handled at 100 ms; the next one waits for 200 ms.
        assert_eq!(b.take(ms(100)), ms(100));
        assert_eq!(b.take(ms(250)), ms(50));
        // A long pause refills only up to the burst.
        let free = (0..20).take_while(|_| b.take(ms(60_000)).is_zero()).count();
        assert_eq!(free, 5);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = TokenBucket::new(0, 1);
        assert!((0..10_000).all(|_| b.take(ms(0)).is_zero()));
    }
}
