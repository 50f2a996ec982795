//! Time behind traits, so that rules which depend on it are tested by moving a clock rather
//! than by sleeping, and the timestamp format shown to users (`2026-11-22T10:15:00Z`).
//!
//! - [`Clock`]: wall-clock seconds (login lockouts, last seen, address expiry).
//! - [`Ticks`]: a monotonic clock for the session deadlines (login, idle, heartbeat) and the
//!   rate limit; a connection thread waits for a [`Deadline`] on it.
//!
//! Each has a real implementation for production and a manual one a test moves; a server is
//! given both when it is bound, so two servers in one test process never share a clock.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of "now" in seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> u64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Clone, Debug)]
pub struct ManualClock {
    /// Shared so a test keeps a handle while the server holds another.
    now: Arc<Mutex<u64>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        *self.now.lock() += secs;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        *self.now.lock()
    }
}

/// A monotonic "now" for the session deadlines and the rate limit.
pub trait Ticks: Send + Sync {
    /// Now, on this clock.
    fn now(&self) -> Instant;

    /// The longest a thread waiting for a deadline on this clock may block before it reads
    /// the clock again. `None` (the real clock): one wait lasts until the deadline, with no
    /// extra wake-up, which matters when ten thousand connections wait at once. A clock
    /// moved by hand moves while a blocked thread cannot see it, so its waiters look again
    /// this often.
    fn recheck_every(&self) -> Option<Duration> {
        None
    }
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemTicks;

impl Ticks for SystemTicks {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How often a thread waiting on a [`ManualTicks`] looks whether the test moved it: a passed
/// deadline is acted on this soon, and a test server's few waiting threads wake this often.
pub const MANUAL_RECHECK: Duration = Duration::from_millis(20);

/// A monotonic clock that moves only when told to; for tests.
#[derive(Clone, Debug)]
pub struct ManualTicks {
    /// The real instant it started from (an `Instant` can only be made from another).
    origin: Instant,
    /// How far it has been moved; shared so a test keeps a handle while the server holds
    /// another.
    moved: Arc<Mutex<Duration>>,
}

impl ManualTicks {
    /// A clock standing still until moved.
    pub fn new() -> ManualTicks {
        ManualTicks {
            origin: Instant::now(),
            moved: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.moved.lock() += by;
    }
}

impl Default for ManualTicks {
    fn default() -> ManualTicks {
        ManualTicks::new()
    }
}

impl Ticks for ManualTicks {
    fn now(&self) -> Instant {
        self.origin + *self.moved.lock()
    }

    fn recheck_every(&self) -> Option<Duration> {
        Some(MANUAL_RECHECK)
    }
}

/// How long one blocking wait may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No deadline: as long as it takes.
    Forever,
    /// At most this long (never zero), then look at the deadline again.
    Upto(Duration),
    /// The deadline has passed: do not wait.
    Passed,
}

/// A moment a wait must end by (or none), on the clock that set it: an `Instant` of a
/// manual clock means nothing to the real one.
#[derive(Clone, Copy)]
pub struct Deadline<'a> {
    /// When; `None`: never.
    at: Option<Instant>,
    /// The clock `at` is on.
    ticks: &'a dyn Ticks,
}

impl<'a> Deadline<'a> {
    /// `at` on `ticks`.
    pub fn new(ticks: &'a dyn Ticks, at: Option<Instant>) -> Deadline<'a> {
        Deadline { at, ticks }
    }

    /// How long a blocking read may wait now: until the deadline on the real clock; in
    /// short slices on a manual one (see [`Ticks::recheck_every`]).
    /// Not inlined: its locals would stay in the frame of every waiting read, under ten
    /// thousand idle connections (see `server::memory`).
    #[inline(never)]
    pub fn wait(&self) -> Wait {
        let Some(at) = self.at else {
            return Wait::Forever;
        };
        match at.checked_duration_since(self.ticks.now()) {
            Some(left) if !left.is_zero() => {
                // A socket timeout must not be zero (that would mean no timeout).
                let left = left.max(Duration::from_millis(1));
                Wait::Upto(self.ticks.recheck_every().map_or(left, |r| left.min(r)))
            }
            _ => Wait::Passed,
        }
    }
}

/// Formats Unix seconds as RFC 3339 UTC, e.g. `2026-11-22T10:15:00Z`.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses what [`format_utc`] writes.
pub fn parse_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

/// Howard Hinnant's days-to-date algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_342_500), "2026-11-22T10:15:00Z");
    }

    #[test]
    fn round_trip() {
        for t in [0, 59, 86_399, 951_782_400, 1_795_342_500, 4_102_444_799] {
            assert_eq!(parse_utc(&format_utc(t)), Some(t), "{t}");
        }
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("garbage"), None);
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(100);
        let shared = c.clone();
        c.advance(5);
        assert_eq!(shared.now(), 105);
    }

    #[test]
    fn a_deadline_on_the_real_clock_is_waited_for_in_one_go() {
        let t = SystemTicks;
        let far = Deadline::new(&t, Some(Instant::now() + Duration::from_secs(3600)));
        match far.wait() {
            Wait::Upto(d) => assert!(d > Duration::from_secs(3590), "{d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(Deadline::new(&t, None).wait(), Wait::Forever);
        let past = Instant::now().checked_sub(Duration::from_secs(1));
        assert_eq!(Deadline::new(&t, past).wait(), Wait::Passed);
    }

    #[test]
    fn a_deadline_on_a_manual_clock_is_waited_for_in_slices_and_passes_when_moved() {
        let t = ManualTicks::new();
        let shared = t.clone();
        let deadline = Deadline::new(&t, Some(t.now() + Duration::from_secs(60)));
        assert_eq!(deadline.wait(), Wait::Upto(MANUAL_RECHECK));
        shared.advance(Duration::from_millis(59_995));
        assert_eq!(deadline.wait(), Wait::Upto(Duration::from_millis(5)));
        shared.advance(Duration::from_millis(5));
        assert_eq!(deadline.wait(), Wait::Passed);
        assert_eq!(Deadline::new(&t, None).wait(), Wait::Forever);
    }
}
