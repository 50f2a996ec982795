//! Pure bookkeeping for the generator: latency percentiles, and the exactly-once check of
//! sequence numbers per (receiver, stream).

/// Latency samples in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    samples: Vec<u64>,
}

/// p50, p99 and max of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Worst.
    pub max_us: f64,
    /// How many samples.
    pub count: usize,
}

impl Latencies {
    /// Adds one sample.
    pub fn push(&mut self, ns: u64) {
        self.samples.push(ns);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The percentiles (nearest-rank).
    pub fn summary(&mut self) -> Summary {
        if self.samples.is_empty() {
            return Summary::default();
        }
        self.samples.sort_unstable();
        let n = self.samples.len();
        let rank = |p: f64| {
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.samples[i] as f64 / 1000.0
        };
        Summary {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: self.samples[n - 1] as f64 / 1000.0,
            count: n,
        }
    }
}

/// Counts of what arrived, against what was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Deliveries expected (messages sent x receivers each).
    pub expected: u64,
    /// Deliveries that arrived in sequence, once.
    pub received: u64,
    /// Deliveries of a sequence number already seen.
    pub duplicates: u64,
    /// Times a sequence number skipped ahead (a gap: a loss, or a reordering).
    pub gaps: u64,
}

impl Delivery {
    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Whether every expected delivery arrived exactly once, in order.
    pub fn exactly_once(&self) -> bool {
        self.lost() == 0 && self.duplicates == 0 && self.gaps == 0 && self.received == self.expected
    }

    /// Adds another scenario's counts.
    pub fn add(&mut self, other: Delivery) {
        self.expected += other.expected;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.gaps += other.gaps;
    }
}

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalVerdict {
    /// The next number of its stream: counted.
    InOrder,
    /// A number already seen.
    Duplicate,
    /// Past the next number: some were skipped (counted, and the skipped ones stay missing).
    Gap,
}

/// Next expected sequence number per (receiver, stream). A receiver usually hears one or
/// a few streams, so each keeps a short list.
#[derive(Clone, Debug, Default)]
pub struct SeqCheck {
    next: Vec<Vec<(u32, u64)>>,
    /// Running totals (without `expected`, which the scenario sets).
    pub counts: Delivery,
}

impl SeqCheck {
    /// Records that `receiver` got sequence number `seq` of `stream` (numbers start at 1).
    pub fn arrive(&mut self, receiver: usize, stream: u32, seq: u64) -> ArrivalVerdict {
        if self.next.len() <= receiver {
            self.next.resize_with(receiver + 1, Vec::new);
        }
        let list = &mut self.next[receiver];
        let slot = match list.iter().position(|(s, _)| *s == stream) {
            Some(i) => &mut list[i].1,
            None => {
                list.push((stream, 1));
                &mut list.last_mut().expect("just pushed").1
            }
        };
        if seq < *slot {
            self.counts.duplicates += 1;
            ArrivalVerdict::Duplicate
        } else {
            let arrival = if seq == *slot {
                ArrivalVerdict::InOrder
            } else {
                self.counts.gaps += 1;
                ArrivalVerdict::Gap
            };
            *slot = seq + 1;
            self.counts.received += 1;
            arrival
        }
    }
}

/// The median of some measurements (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100u64 {
            l.push(us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.count, 100);
        assert_eq!(Latencies::default().summary(), Summary::default());
    }

    #[test]
    fn sequence_check_finds_duplicates_and_gaps() {
        let mut c = SeqCheck::default();
        assert_eq!(c.arrive(0, 5, 1), ArrivalVerdict::InOrder);
        assert_eq!(c.arrive(0, 5, 2), ArrivalVerdict::InOrder);
        assert_eq!(c.arrive(0, 5, 2), ArrivalVerdict::Duplicate);
        assert_eq!(c.arrive(0, 6, 1), ArrivalVerdict::InOrder);
        assert_eq!(c.arrive(3, 5, 1), ArrivalVerdict::InOrder);
        assert_eq!(c.arrive(0, 5, 4), ArrivalVerdict::Gap);
        c.counts.expected = 6;
        assert_eq!(c.counts.received, 5);
        assert_eq!(c.counts.duplicates, 1);
        assert_eq!(c.counts.gaps, 1);
        assert_eq!(c.counts.lost(), 1);
        assert!(!c.counts.exactly_once());
        let mut clean = SeqCheck::default();
        clean.arrive(1, 1, 1);
        clean.counts.expected = 1;
        assert!(clean.counts.exactly_once());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
