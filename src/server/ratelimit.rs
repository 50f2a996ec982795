//! A token bucket per connection, as a pure function of elapsed time: `rate` commands per
//! second sustained, up to `burst` at once. A classroom flood script is told to slow down;
//! a person typing never notices.

use std::time::Duration;

/// Tokens available to one connection.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens added per second; 0 means unlimited.
    rate: f64,
    /// Most tokens the bucket holds.
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// When `tokens` was last brought up to date (time since an arbitrary start).
    updated: Duration,
}

impl TokenBucket {
    /// A full bucket. `rate == 0` disables limiting.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            updated: Duration::ZERO,
        }
    }

    /// Takes one token at time `now`; false means "slow down" (nothing is taken).
    pub fn take(&mut self, now: Duration) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_sub(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now.max(self.updated);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
            assert!(b.take(ms(0)));
        }
        assert!(!b.take(ms(0)));
        assert!(!b.take(ms(50)));
        assert!(b.take(ms(100)));
        assert!(!b.take(ms(100)));
        // A long pause refills only up to the burst.
        let allowed = (0..20).filter(|_| b.take(ms(60_000))).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = TokenBucket::new(0, 1);
        assert!((0..10_000).all(|_| b.take(ms(0))));
    }
}
