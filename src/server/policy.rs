//! The session policy every door follows (native, IRC, web), as pure functions of `now`:
//!
//! - **Deadlines.** The login must be finished `login_timeout_secs` after the connection was
//!   accepted; a logged-in user is idle `idle_timeout_secs` after their last complete line
//!   that counts as activity; a client is silent `heartbeat_timeout_secs` after the last
//!   complete line of any kind. Bytes that never make a line move none of them, so a
//!   connection trickling one byte a second is closed on time like a silent one.
//! - **Pace.** A token bucket of `max_messages_per_sec` lines a second, bursts of
//!   `message_burst`. A line past it is not refused: the session waits until the budget
//!   allows it and reads nothing meanwhile, so TCP pushes back on the sender and nothing
//!   typed is lost. A client slowed without a break for `flood_disconnect_secs` (its lines
//!   kept coming faster than the rate all that time) is a flood, and is disconnected.
//!
//! It does no I/O and reads no clock: a door's read loop reads `now` on the server's
//! monotonic clock (`clock::Ticks`, which a test moves by hand), passes
//! [`Timers::deadline`] to its reader, asks [`Timers::expired`] what a timeout meant, asks
//! [`Pace::take`] when to handle each line, and does the talking itself (BYE or ERROR lines,
//! PING, pausing).

use super::ratelimit::TokenBucket;
use crate::config::Config;
use std::time::{Duration, Instant};

/// The configured limits; `None` means no limit.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// From accepting the connection to a finished login.
    pub login: Option<Duration>,
    /// From the last line that counts as activity to logging out.
    pub idle: Option<Duration>,
    /// From the last line of any kind to the silence rule of the door ([`Silence`]).
    pub silence: Option<Duration>,
    /// Lines a second, sustained (0: no limit).
    pub rate: u32,
    /// Lines above the rate in one burst.
    pub burst: u32,
    /// How long a client may be slowed without a break before it counts as a flood.
    pub flood: Option<Duration>,
}

/// A configured number of seconds as a limit; 0 means none.
fn secs_limit(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl SessionLimits {
    /// The limits `config` sets.
    pub fn of(config: &Config) -> SessionLimits {
        SessionLimits {
            login: secs_limit(config.login_timeout_secs),
            idle: secs_limit(config.idle_timeout_secs),
            silence: secs_limit(config.heartbeat_timeout_secs),
            rate: config.max_messages_per_sec,
            burst: config.message_burst,
            flood: secs_limit(config.flood_disconnect_secs),
        }
    }
}

/// What a door does about a logged-in client that goes silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Native and web: a client that has sent a heartbeat line once promised more, and is
    /// logged out after the silence limit; one that never did (telnet) is not watched.
    Heartbeats {
        /// Whether a heartbeat line has arrived.
        promised: bool,
    },
    /// IRC: a silent client is sent PING after the silence limit and dropped after twice it.
    Ping {
        /// Whether the PING has been sent (any line clears it).
        sent: bool,
    },
}

/// A deadline that has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The login was not finished in time.
    Login,
    /// No activity for the idle limit.
    Idle,
    /// Silent past the door's silence rule: log out.
    Silent,
    /// IRC: silent for the silence limit; send PING and call [`Timers::pinged`].
    PingDue,
}

/// What a complete line from the client was, for the deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Something the user did (a command, a chat line, even a refused one): restarts the
    /// idle clock.
    Activity,
    /// Only proof of life (the heartbeat line, IRC PING/PONG): the idle clock runs on.
    KeepAlive,
}

/// Where a connection is, and when each of its clocks last restarted.
#[derive(Clone, Copy, Debug)]
enum Phase {
    LoggingIn {
        connected: Instant,
    },
    LoggedIn {
        last_active: Instant,
        last_heard: Instant,
        silence: Silence,
    },
}

/// One connection's deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    limits: SessionLimits,
    phase: Phase,
}

impl Timers {
    /// A connection accepted at `connected`, not logged in yet.
    pub fn new(limits: SessionLimits, connected: Instant) -> Timers {
        Timers {
            limits,
            phase: Phase::LoggingIn { connected },
        }
    }

    /// The login finished at `now`: the login deadline is gone, the idle and silence clocks
    /// start, with the door's silence rule.
    pub fn logged_in(&mut self, now: Instant, silence: Silence) {
        self.phase = Phase::LoggedIn {
            last_active: now,
            last_heard: now,
            silence,
        };
    }

    /// A complete line arrived at `now`. Only a complete line moves a clock.
    pub fn heard(&mut self, now: Instant, heard: Heard) {
        if let Phase::LoggedIn {
            last_active,
            last_heard,
            silence,
        } = &mut self.phase
        {
            *last_heard = now;
            if heard == Heard::Activity {
                *last_active = now;
            }
            match silence {
                Silence::Ping { sent } => *sent = false,
                Silence::Heartbeats { .. } => {}
            }
        }
    }

    /// The client sent a heartbeat line: from now on it is watched for silence.
    pub fn heartbeat_promised(&mut self) {
        if let Phase::LoggedIn {
            silence: Silence::Heartbeats { promised },
            ..
        } = &mut self.phase
        {
            *promised = true;
        }
    }

    /// The PING for [`Expiry::PingDue`] was sent.
    pub fn pinged(&mut self) {
        if let Phase::LoggedIn {
            silence: Silence::Ping { sent },
            ..
        } = &mut self.phase
        {
            *sent = true;
        }
    }

    /// Every deadline now running, with what its passing means.
    fn running(&self) -> [Option<(Instant, Expiry)>; 2] {
        let at = |since: Instant, limit: Option<Duration>, what| limit.map(|l| (since + l, what));
        match self.phase {
            Phase::LoggingIn { connected } => {
                [at(connected, self.limits.login, Expiry::Login), None]
            }
            Phase::LoggedIn {
                last_active,
                last_heard,
                silence,
            } => {
                let silent = match silence {
                    Silence::Heartbeats { promised: false } => None,
                    Silence::Heartbeats { promised: true } => {
                        at(last_heard, self.limits.silence, Expiry::Silent)
                    }
                    Silence::Ping { sent: false } => {
                        at(last_heard, self.limits.silence, Expiry::PingDue)
                    }
                    Silence::Ping { sent: true } => at(
                        last_heard,
                        self.limits.silence.map(|s| s * 2),
                        Expiry::Silent,
                    ),
                };
                [at(last_active, self.limits.idle, Expiry::Idle), silent]
            }
        }
    }

    /// The earliest running deadline: the reader must return by then, whatever bytes
    /// arrive without finishing a line (`None`: wait for ever).
    pub fn deadline(&self) -> Option<Instant> {
        self.running().into_iter().flatten().map(|(at, _)| at).min()
    }

    /// Which deadline has passed at `now`, the earliest first (`None`: none yet; read on).
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        self.running()
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, what)| what)
    }

    /// How long the client has been silent at `now` (for IRC's "Ping timeout: N seconds").
    pub fn silent_for(&self, now: Instant) -> Duration {
        match self.phase {
            Phase::LoggingIn { connected } => now.saturating_duration_since(connected),
            Phase::LoggedIn { last_heard, .. } => now.saturating_duration_since(last_heard),
        }
    }
}

/// When to handle a line, by the rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Within the budget: handle it now.
    Now,
    /// Over the rate: handle it after this wait, reading nothing meanwhile.
    After(Duration),
    /// Slowed without a break for the flood limit: disconnect instead.
    Flood,
}

/// One connection's rate limit.
#[derive(Clone, Debug)]
pub struct Pace {
    bucket: TokenBucket,
    /// When the bucket's clock started.
    start: Instant,
    /// How long a client may be slowed without a break.
    flood: Option<Duration>,
    /// Since when every line had to wait (`None`: the last line did not).
    slowed_since: Option<Instant>,
}

impl Pace {
    /// A full budget at `now`.
    pub fn new(limits: &SessionLimits, now: Instant) -> Pace {
        Pace {
            bucket: TokenBucket::new(limits.rate, limits.burst),
            start: now,
            flood: limits.flood,
            slowed_since: None,
        }
    }

    /// A line arrived at `now` (exempt lines, such as logging out, are not asked about).
    pub fn take(&mut self, now: Instant) -> Take {
        let wait = self.bucket.take(now.saturating_duration_since(self.start));
        if wait.is_zero() {
            self.slowed_since = None;
            return Take::Now;
        }
        let since = *self.slowed_since.get_or_insert(now);
        if self
            .flood
            .is_some_and(|limit| now.saturating_duration_since(since) >= limit)
        {
            return Take::Flood;
        }
        Take::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits() -> SessionLimits {
        SessionLimits {
            login: Some(ms(1000)),
            idle: Some(ms(5000)),
            silence: Some(ms(2000)),
            rate: 10,
            burst: 3,
            flood: Some(ms(1000)),
        }
    }

    #[test]
    fn the_login_deadline_counts_from_the_connection_whatever_happens_after() {
        let t0 = Instant::now();
        let t = Timers::new(limits(), t0);
        assert_eq!(t.deadline(), Some(t0 + ms(1000)));
        assert_eq!(t.expired(t0 + ms(999)), None);
        assert_eq!(t.expired(t0 + ms(1000)), Some(Expiry::Login));
        // Lines before the login (a wrong password, a retried name) do not move it.
        let mut t = t;
        t.heard(t0 + ms(900), Heard::Activity);
        assert_eq!(t.deadline(), Some(t0 + ms(1000)));
        let unlimited = Timers::new(
            SessionLimits {
                login: None,
                ..limits()
            },
            t0,
        );
        assert_eq!(unlimited.deadline(), None);
        assert_eq!(unlimited.expired(t0 + ms(1_000_000)), None);
    }

    #[test]
    fn the_idle_deadline_counts_from_the_last_line_that_was_activity() {
        let t0 = Instant::now();
        let mut t = Timers::new(limits(), t0);
        t.logged_in(t0 + ms(500), Silence::Heartbeats { promised: false });
        assert_eq!(t.deadline(), Some(t0 + ms(5500)));
        t.heard(t0 + ms(3000), Heard::Activity);
        assert_eq!(t.deadline(), Some(t0 + ms(8000)));
        // A heartbeat line is heard but is not activity.
        t.heard(t0 + ms(7000), Heard::KeepAlive);
        assert_eq!(t.deadline(), Some(t0 + ms(8000)));
        assert_eq!(t.expired(t0 + ms(7999)), None);
        assert_eq!(t.expired(t0 + ms(8000)), Some(Expiry::Idle));
    }

    #[test]
    fn silence_is_watched_only_once_heartbeats_were_promised() {
        let t0 = Instant::now();
        let mut t = Timers::new(limits(), t0);
        t.logged_in(t0, Silence::Heartbeats { promised: false });
        assert_eq!(
            t.expired(t0 + ms(4000)),
            None,
            "a telnet user is not watched"
        );
        t.heartbeat_promised();
        t.heard(t0 + ms(1000), Heard::KeepAlive);
        assert_eq!(t.deadline(), Some(t0 + ms(3000)));
        assert_eq!(t.expired(t0 + ms(3000)), Some(Expiry::Silent));
    }

    #[test]
    fn an_irc_client_is_pinged_then_dropped_and_any_line_answers_the_ping() {
        let t0 = Instant::now();
        let mut t = Timers::new(
            SessionLimits {
                idle: None,
                ..limits()
            },
            t0,
        );
        t.logged_in(t0, Silence::Ping { sent: false });
        assert_eq!(t.expired(t0 + ms(2000)), Some(Expiry::PingDue));
        t.pinged();
        assert_eq!(t.deadline(), Some(t0 + ms(4000)));
        assert_eq!(t.expired(t0 + ms(3999)), None);
        assert_eq!(t.expired(t0 + ms(4000)), Some(Expiry::Silent));
        assert_eq!(t.silent_for(t0 + ms(4000)), ms(4000));
        t.heard(t0 + ms(3500), Heard::KeepAlive);
        assert_eq!(t.deadline(), Some(t0 + ms(5500)), "pinged again later");
    }

    #[test]
    fn the_earliest_of_idle_and_silence_is_the_one_that_expired() {
        let t0 = Instant::now();
        let mut t = Timers::new(limits(), t0);
        t.logged_in(t0, Silence::Ping { sent: true });
        // Silent at 4 s, idle at 5 s: at 6 s silence is what passed first.
        assert_eq!(t.expired(t0 + ms(6000)), Some(Expiry::Silent));
        t.heard(t0 + ms(4500), Heard::KeepAlive);
        assert_eq!(t.expired(t0 + ms(6000)), Some(Expiry::Idle));
    }

    #[test]
    fn a_paste_past_the_burst_waits_its_turn_line_by_line() {
        let t0 = Instant::now();
        let mut p = Pace::new(&limits(), t0);
        for _ in 0..3 {
            assert_eq!(p.take(t0), Take::Now);
        }
        // Each further line waits one more tenth of a second: the bucket is in debt.
        assert_eq!(p.take(t0), Take::After(ms(100)));
        assert_eq!(p.take(t0 + ms(100)), Take::After(ms(100)));
        assert_eq!(p.take(t0 + ms(200)), Take::After(ms(100)));
        // A pause refills the budget and ends the slowing.
        assert_eq!(p.take(t0 + ms(700)), Take::Now);
        assert_eq!(p.slowed_since, None);
    }

    #[test]
    fn slowed_without_a_break_for_the_flood_limit_is_a_flood() {
        let t0 = Instant::now();
        let mut p = Pace::new(&limits(), t0);
        let mut now = t0;
        let mut waited = Duration::ZERO;
        loop {
            match p.take(now) {
                Take::Now => {}
                Take::After(d) => {
                    now += d;
                    waited += d;
                }
                Take::Flood => break,
            }
            assert!(now < t0 + ms(5000), "never called a flood");
        }
        assert!(waited >= ms(1000), "slowed {waited:?} first");
        // An unlimited flood limit never disconnects; no rate never slows.
        let mut patient = Pace::new(
            &SessionLimits {
                flood: None,
                ..limits()
            },
            t0,
        );
        assert!((0..1000).all(|i| patient.take(t0 + ms(i)) != Take::Flood));
        let mut free = Pace::new(
            &SessionLimits {
                rate: 0,
                ..limits()
            },
            t0,
        );
        assert!((0..1000).all(|_| free.take(t0) == Take::Now));
    }

    #[test]
    fn lines_at_the_rate_are_never_slowed() {
        let t0 = Instant::now();
        let mut p = Pace::new(&limits(), t0);
        for i in 0..100 {
            assert_eq!(p.take(t0 + ms(100 * i)), Take::Now, "line {i}");
        }
    }
}
