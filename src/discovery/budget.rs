//! How many discovery answers the server may send, and to whom: a token bucket per sender
//! address inside a global one.
//!
//! A request is one unauthenticated datagram whose source anyone on the LAN can forge, and
//! its answer is several times its size. The global bucket keeps the server from becoming a
//! flood amplifier; the per-sender buckets keep one sender (or one forged source) from
//! spending the global budget, so that a flood from one address no longer silences the
//! server for everyone else: one address gets at most a tenth of it.
//!
//! Why a sender's share is not smaller: whoever forges requests *from a victim's address*
//! spends the victim's bucket, and the victim's own client then hears nothing (or only an
//! impostor). With [`AnswerLimits::sender_per_sec`] at 200 that costs 200 forged datagrams a
//! second, what silencing everyone cost before there were per-sender buckets; at a few a
//! second it would be nearly free. 200 answers a second to one spoofed victim is no flood.
//!
//! The table of senders is bounded ([`AnswerLimits::max_senders`]): senders whose bucket has
//! filled up again are forgotten (a fresh bucket is the same thing), and while the table is
//! still full, unknown senders share one overflow bucket. A flood whose forged source
//! changes with every datagram still competes for the global budget; only keys (a later
//! issue) would tell a real request from a forged one.
//!
//! Pure: every decision takes `now`, so the tests need no sleeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The numbers behind the budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnswerLimits {
    /// Answers one sender gets at once.
    pub sender_burst: f64,
    /// Answers one sender gets per second after its burst.
    pub sender_per_sec: f64,
    /// Answers all senders together get at once.
    pub global_burst: f64,
    /// Answers all senders together get per second.
    pub global_per_sec: f64,
    /// Senders remembered at once.
    pub max_senders: usize,
}

impl AnswerLimits {
    /// The server's limits (PROTOCOL.md section 10).
    pub const DEFAULT: AnswerLimits = AnswerLimits {
        sender_burst: 200.0,
        sender_per_sec: 200.0,
        global_burst: 2000.0,
        global_per_sec: 2000.0,
        max_senders: 4096,
    };
}

/// A token bucket: `tokens` refill at `per_sec` up to `burst`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens left as of `at`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refills for the time since the last call.
    fn refill(&mut self, burst: f64, per_sec: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.at = now;
    }

    /// Whether a token is left after refilling (without taking it).
    fn has_token(&mut self, burst: f64, per_sec: f64, now: Instant) -> bool {
        self.refill(burst, per_sec, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket would be full by `now`: it is then the same as a fresh one.
    fn is_full_by(&self, burst: f64, per_sec: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * per_sec >= burst
    }
}

/// Which answers may go out; one per responder socket.
#[derive(Debug)]
pub struct AnswerBudget {
    /// The numbers.
    limits: AnswerLimits,
    /// Everyone's answers together.
    global: Bucket,
    /// Each remembered sender's answers.
    senders: HashMap<IpAddr, Bucket>,
    /// Shared by the senders not remembered while the table is full.
    overflow: Bucket,
    /// When full buckets were last swept out of a full table (at most every
    /// [`SWEEP_EVERY`], so a flood of new senders costs no more than a lookup each).
    swept: Instant,
}

/// The shortest time between two sweeps of a full sender table.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl AnswerBudget {
    /// A budget with every bucket full.
    pub fn new(limits: AnswerLimits, now: Instant) -> AnswerBudget {
        AnswerBudget {
            limits,
            global: Bucket::full(limits.global_burst, now),
            senders: HashMap::new(),
            overflow: Bucket::full(limits.sender_burst, now),
            swept: now,
        }
    }

    /// Whether a request from `from` gets an answer at `now`; if so, the answer is counted.
    pub fn allow(&mut self, from: IpAddr, now: Instant) -> bool {
        let AnswerLimits {
            sender_burst,
            sender_per_sec,
            global_burst,
            global_per_sec,
            ..
        } = self.limits;
        let from = from.to_canonical();
        if !self.senders.contains_key(&from) && self.senders.len() >= self.limits.max_senders {
            self.sweep(now);
        }
        let sender = if self.senders.len() < self.limits.max_senders {
            self.senders
                .entry(from)
                .or_insert_with(|| Bucket::full(sender_burst, now))
        } else {
            self.senders.get_mut(&from).unwrap_or(&mut self.overflow)
        };
        if !sender.has_token(sender_burst, sender_per_sec, now)
            || !self.global.has_token(global_burst, global_per_sec, now)
        {
            return false;
        }
        sender.tokens -= 1.0;
        self.global.tokens -= 1.0;
        true
    }

    /// Forgets the senders whose bucket is full again, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        let (burst, per_sec) = (self.limits.sender_burst, self.limits.sender_per_sec);
        self.senders
            .retain(|_, bucket| !bucket.is_full_by(burst, per_sec, now));
    }

    /// How many senders are remembered.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: AnswerLimits = AnswerLimits {
        sender_burst: 4.0,
        sender_per_sec: 2.0,
        global_burst: 10.0,
        global_per_sec: 10.0,
        max_senders: 3,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn answered(budget: &mut AnswerBudget, from: IpAddr, n: usize, now: Instant) -> usize {
        (0..n).filter(|_| budget.allow(from, now)).count()
    }

    #[test]
    fn one_sender_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(SMALL, t0);
        assert_eq!(answered(&mut budget, ip(1), 100, t0), 4);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(answered(&mut budget, ip(1), 100, t1), 1);
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(
            answered(&mut budget, ip(1), 100, t2),
            4,
            "no more than a burst"
        );
    }

    #[test]
    fn a_flooding_sender_leaves_the_global_budget_to_the_others() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(SMALL, t0);
        for ms in 0..1000 {
            let now = t0 + Duration::from_millis(ms);
            answered(&mut budget, ip(1), 5, now);
            if ms % 250 == 50 {
                // Every other sender is still answered, every time it asks.
                assert!(budget.allow(ip(2), now), "at {ms} ms");
            }
        }
    }

    #[test]
    fn the_global_budget_caps_many_senders_together() {
        let t0 = Instant::now();
        let limits = AnswerLimits {
            max_senders: 1000,
            ..SMALL
        };
        let mut budget = AnswerBudget::new(limits, t0);
        let total: usize = (0..=255).map(|i| answered(&mut budget, ip(i), 1, t0)).sum();
        assert_eq!(total, 10);
        let later = t0 + Duration::from_millis(500);
        let total: usize = (0..=255)
            .map(|i| answered(&mut budget, ip(i), 1, later))
            .sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn the_sender_table_is_bounded_and_forgets_idle_senders() {
        let t0 = Instant::now();
        let limits = AnswerLimits {
            global_burst: 100.0,
            ..SMALL
        };
        let mut budget = AnswerBudget::new(limits, t0);
        for i in 1..=3 {
            assert_eq!(answered(&mut budget, ip(i), 4, t0), 4);
        }
        assert_eq!(budget.senders(), 3);
        // The table is full and no one is idle: newcomers share the overflow bucket.
        assert_eq!(answered(&mut budget, ip(4), 3, t0), 3);
        assert_eq!(answered(&mut budget, ip(5), 3, t0), 1);
        assert_eq!(budget.senders(), 3);
        // Two seconds later every bucket is full again: the sweep makes room.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(answered(&mut budget, ip(6), 10, t1), 4);
        assert_eq!(budget.senders(), 1);
        // A remembered sender keeps its own (empty) bucket.
        assert_eq!(answered(&mut budget, ip(6), 1, t1), 0);
    }

    #[test]
    fn forging_a_victims_address_costs_what_silencing_everyone_used_to() {
        // 150 forged requests a second from the victim's address (below the 200 that
        // silenced every client before per-sender budgets) leave the victim's own
        // requests answered, and the rest of the LAN's.
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(AnswerLimits::DEFAULT, t0);
        let victim = ip(7);
        for tick in 0..500u64 {
            let now = t0 + Duration::from_millis(tick * 10);
            let forged = if tick % 2 == 0 { 2 } else { 1 };
            answered(&mut budget, victim, forged, now);
            if tick % 50 == 25 {
                assert_eq!(answered(&mut budget, victim, 12, now), 12, "at tick {tick}");
                assert!(budget.allow(ip(8), now));
            }
        }
    }

    #[test]
    fn an_ipv4_mapped_sender_is_the_same_sender() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::new(SMALL, t0);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(answered(&mut budget, ip(1), 2, t0), 2);
        assert_eq!(answered(&mut budget, mapped, 10, t0), 2);
    }
}
