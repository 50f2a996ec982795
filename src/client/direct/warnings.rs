//! Warnings about incoming direct connections, at most one line per [`WINDOW`].
//!
//! A refused connection or a forged message is worth one line on the user's terminal; a
//! flood of them is worth one line too, not one each (40 connections held open used to
//! print 2,000 lines in 12 s). The first warning after a quiet [`WINDOW`] is shown as it
//! is; what follows within the window is counted, by address, and shown as one summary
//! line once the window is over: `ignored 37 direct connections from 127.0.0.2 in the last
//! 10 s (too many connections at once from that address)`.
//!
//! Pure: [`Warnings::note`] and [`Warnings::flush`] take `now` and return the line to show,
//! if any; the listener's reporter thread calls them and logs the lines.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most one line per this long.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Addresses named in a summary; the rest are counted as "other addresses".
const NAMED: usize = 3;
/// Addresses counted one by one in a window; the rest are counted together.
const TRACKED: usize = 256;
/// Different reasons kept for a summary.
const REASONS: usize = 4;

/// The lines shown and the ones held back.
#[derive(Debug, Default)]
pub struct Warnings {
    /// When the last line was shown.
    shown: Option<Instant>,
    /// Held back since then, by address.
    held: BTreeMap<IpAddr, u64>,
    /// Held back from addresses beyond [`TRACKED`].
    untracked: u64,
    /// Why they were held back (the first few different reasons).
    reasons: Vec<&'static str>,
}

impl Warnings {
    /// Nothing shown yet.
    pub fn new() -> Warnings {
        Warnings::default()
    }

    /// Something happened with a connection from `from`: `line` says what (for the
    /// moment it is shown alone), `reason` why (for a summary). Returns the line to show
    /// now, if any.
    pub fn note(
        &mut self,
        now: Instant,
        from: IpAddr,
        line: String,
        reason: &'static str,
    ) -> Option<String> {
        let quiet = self
            .shown
            .is_none_or(|shown| now.saturating_duration_since(shown) >= WINDOW);
        if quiet && self.held.is_empty() && self.untracked == 0 {
            self.shown = Some(now);
            return Some(line);
        }
        if let Some(count) = self.held.get_mut(&from) {
            *count += 1;
        } else if self.held.len() < TRACKED {
            self.held.insert(from, 1);
        } else {
            self.untracked += 1;
        }
        if !self.reasons.contains(&reason) && self.reasons.len() < REASONS {
            self.reasons.push(reason);
        }
        self.flush(now)
    }

    /// The summary of what was held back, once the window since the last line is over.
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        let shown = self.shown?;
        let total = self.held.values().sum::<u64>() + self.untracked;
        if total == 0 || now.saturating_duration_since(shown) < WINDOW {
            return None;
        }
        let mut by_count: Vec<(IpAddr, u64)> = std::mem::take(&mut self.held).into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let plural = if total == 1 { "" } else { "s" };
        let secs = now.saturating_duration_since(shown).as_secs();
        let reasons = self.reasons.join("; ");
        let line = match by_count.as_slice() {
            [(ip, _)] if self.untracked == 0 => format!(
                "ignored {total} direct connection{plural} from {ip} in the last {secs} s \
                 ({reasons})"
            ),
            _ => {
                let mut sources: Vec<String> = by_count
                    .iter()
                    .take(NAMED)
                    .map(|(ip, n)| format!("{n} from {ip}"))
                    .collect();
                let others: u64 =
                    self.untracked + by_count.iter().skip(NAMED).map(|(_, n)| n).sum::<u64>();
                if others > 0 {
                    sources.push(format!("{others} from other addresses"));
                }
                format!(
                    "ignored {total} direct connection{plural} in the last {secs} s: {} \
                     ({reasons})",
                    sources.join(", ")
                )
            }
        };
        self.untracked = 0;
        self.reasons.clear();
        self.shown = Some(now);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    const BUSY: &str = "too many connections at once from that address";

    #[test]
    fn a_flood_is_one_line_then_one_summary_per_window() {
        let t0 = Instant::now();
        let mut w = Warnings::new();
        let mut shown = Vec::new();
        for ms in (0..25_000).step_by(5) {
            let now = t0 + Duration::from_millis(ms);
            let line = format!("refused a direct connection from 10.0.0.66:{ms}: {BUSY}");
            shown.extend(w.note(now, ip(66), line, BUSY));
            if ms % 1000 == 0 {
                shown.extend(w.flush(now));
            }
        }
        assert_eq!(
            shown,
            [
                format!("refused a direct connection from 10.0.0.66:0: {BUSY}"),
                format!("ignored 2000 direct connections from 10.0.0.66 in the last 10 s ({BUSY})"),
                format!("ignored 2000 direct connections from 10.0.0.66 in the last 10 s ({BUSY})"),
            ]
        );
        // The rest is shown once the window is over, even with nothing new.
        let end = w.flush(t0 + Duration::from_secs(31)).unwrap();
        assert!(
            end.starts_with("ignored 999 direct connections from 10.0.0.66"),
            "{end}"
        );
        assert_eq!(w.flush(t0 + Duration::from_secs(60)), None);
        // After a quiet window, the next one is shown as it is.
        let next = w.note(t0 + Duration::from_secs(61), ip(2), "alone".into(), BUSY);
        assert_eq!(next.as_deref(), Some("alone"));
    }

    #[test]
    fn a_summary_names_the_busiest_addresses_and_every_reason() {
        let t0 = Instant::now();
        let mut w = Warnings::new();
        assert!(w.note(t0, ip(1), "first".into(), "a").is_some());
        for (last, n) in [(2u8, 1), (3, 5), (4, 3), (5, 2)] {
            for _ in 0..n {
                assert_eq!(w.note(t0, ip(last), "held".into(), "b"), None);
            }
        }
        w.note(t0, ip(3), "held".into(), "c");
        assert_eq!(w.flush(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            w.flush(t0 + WINDOW).unwrap(),
            "ignored 12 direct connections in the last 10 s: 6 from 10.0.0.3, 3 from 10.0.0.4, \
             2 from 10.0.0.5, 1 from other addresses (b; c)"
        );
    }

    #[test]
    fn the_addresses_counted_are_bounded() {
        let t0 = Instant::now();
        let mut w = Warnings::new();
        w.note(t0, ip(0), "first".into(), BUSY);
        for i in 0..1000u32 {
            let from = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            w.note(t0, from, "held".into(), BUSY);
        }
        assert!(w.held.len() <= TRACKED);
        let line = w.flush(t0 + WINDOW).unwrap();
        assert!(
            line.starts_with("ignored 1000 direct connections"),
            "{line}"
        );
        assert!(line.contains("997 from other addresses"), "{line}");
    }
}
