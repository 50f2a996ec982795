//! Simulated users on one [`Fleet`]: logs them in (a bounded number of logins in flight),
//! answers the server's keep-alives, and hands every benchmark payload that arrives to the
//! scenario with its arrival time.

use super::net::{Fleet, FleetEvent, Outgoing};
use super::wire::{self, Dialect, Incoming, LoginState, LoginStep, Stamp, User};
use rustls::ClientConfig;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One simulated user.
struct Member {
    user: User,
    state: LoginState,
}

/// How a batch of logins went.
#[derive(Clone, Debug, Default)]
pub struct LoginReport {
    /// Users logged in.
    pub ok: usize,
    /// Users refused, or whose connection failed.
    pub failed: usize,
    /// The first refusal line seen, if any.
    pub first_refusal: Option<String>,
    /// Wall time of the batch.
    pub secs: f64,
}

impl LoginReport {
    /// Logins per second.
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Many simulated users of one server.
pub struct Crowd {
    /// Their sockets.
    pub fleet: Fleet,
    dialect: Dialect,
    addr: SocketAddr,
    /// Connect over TLS with this configuration (a server's TLS door).
    tls: Option<Arc<ClientConfig>>,
    members: Vec<Member>,
    out: Outgoing,
    /// Answers to [`wire::ping`] received.
    pub pongs: usize,
    /// IRC channel joins confirmed (end of NAMES).
    pub joined: usize,
    /// Connections the server closed.
    pub closed: usize,
    /// Lines that were neither payloads nor login steps (acks, presence, numerics).
    pub other_lines: u64,
    /// The first line a failed login got.
    first_refusal: Option<String>,
    /// Logins finished (ok, failed) so far.
    logins: (usize, usize),
    /// Time zero of every stamp.
    epoch: Instant,
}

impl Crowd {
    /// No users yet.
    pub fn new(dialect: Dialect, addr: SocketAddr, epoch: Instant) -> io::Result<Crowd> {
        Ok(Crowd {
            fleet: Fleet::new()?,
            dialect,
            addr,
            tls: None,
            members: Vec::new(),
            out: Vec::new(),
            pongs: 0,
            joined: 0,
            closed: 0,
            other_lines: 0,
            first_refusal: None,
            logins: (0, 0),
            epoch,
        })
    }

    /// The same crowd, connecting over TLS with `config` when it is given.
    pub fn with_tls(mut self, config: Option<Arc<ClientConfig>>) -> Crowd {
        self.tls = config;
        self
    }

    /// The dialect spoken.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Nanoseconds since the epoch, for a stamp.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Nanoseconds since the epoch of an instant.
    pub fn ns_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// User `idx`'s name.
    pub fn name(&self, idx: usize) -> &str {
        &self.members[idx].user.name
    }

    /// Number of users (connected, whatever their state).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether user `idx` is logged in and connected.
    pub fn ready(&self, idx: usize) -> bool {
        self.members[idx].state == LoginState::Done && self.fleet.peers[idx].open
    }

    /// Sends a line as user `idx`.
    pub fn send(&mut self, idx: usize, line: &str) {
        self.fleet.send(idx, line.as_bytes());
    }

    /// Connects one user and starts its login; returns its index.
    pub fn connect(&mut self, user: User) -> io::Result<usize> {
        let idx = self
            .fleet
            .connect(self.addr, Duration::from_secs(5), self.tls.as_ref())?;
        if let Some(hello) = wire::greeting(self.dialect, &user) {
            self.fleet.send(idx, hello.as_bytes());
        }
        self.members.push(Member {
            user,
            state: wire::first_state(self.dialect),
        });
        Ok(idx)
    }

    /// Logs in `users`, keeping at most `in_flight` logins open at once, within `limit`.
    pub fn login(
        &mut self,
        users: Vec<User>,
        in_flight: usize,
        limit: Duration,
    ) -> io::Result<LoginReport> {
        let start = Instant::now();
        let (ok0, failed0) = self.logins;
        let total = users.len();
        let mut users = users.into_iter();
        let mut started = 0;
        loop {
            let finished = self.logins.0 - ok0 + self.logins.1 - failed0;
            if finished == total || start.elapsed() > limit {
                break;
            }
            while started - finished < in_flight.max(1) {
                let Some(user) = users.next() else { break };
                started += 1;
                if self.connect(user).is_err() {
                    // Counted as failed, without a member.
                    self.logins.1 += 1;
                }
            }
            self.pump(Duration::from_millis(5), |_, _, _| {})?;
        }
        Ok(LoginReport {
            ok: self.logins.0 - ok0,
            failed: total - (self.logins.0 - ok0),
            first_refusal: self.first_refusal.clone(),
            secs: start.elapsed().as_secs_f64(),
        })
    }

    /// Reads for up to `timeout`; every payload goes to `on_payload(receiver, stamp, at)`.
    /// Returns the number of lines read.
    pub fn pump(
        &mut self,
        timeout: Duration,
        mut on_payload: impl FnMut(usize, Stamp, Instant),
    ) -> io::Result<usize> {
        let dialect = self.dialect;
        let members = &mut self.members;
        let mut out = std::mem::take(&mut self.out);
        let (mut pongs, mut joined, mut closed, mut other) = (0, 0, 0, 0u64);
        let (mut ok, mut failed) = (0, 0);
        let mut refusal: Option<String> = None;
        let lines = self.fleet.poll(timeout, &mut out, |idx, event, at, out| {
            let member = &mut members[idx];
            let line = match event {
                FleetEvent::Line(l) => l,
                FleetEvent::Closed => {
                    closed += 1;
                    if !matches!(member.state, LoginState::Done | LoginState::Failed) {
                        member.state = LoginState::Failed;
                        failed += 1;
                    }
                    return;
                }
            };
            let Ok(line) = std::str::from_utf8(line) else {
                other += 1;
                return;
            };
            match member.state {
                LoginState::Done => match wire::incoming(dialect, line) {
                    Incoming::Payload(text) => match wire::parse_stamp(text) {
                        Some(stamp) => on_payload(idx, stamp, at),
                        None => other += 1,
                    },
                    Incoming::Ping(reply) => out.push((idx, reply)),
                    Incoming::Pong => pongs += 1,
                    Incoming::Other => {
                        other += 1;
                        if wire::joined(dialect, line) {
                            joined += 1;
                        }
                    }
                },
                LoginState::Failed => other += 1,
                state => match wire::login_step(dialect, state, line, &member.user) {
                    LoginStep::Reply(r) => {
                        member.state = wire::next_state(dialect, state, line);
                        out.push((idx, r));
                    }
                    LoginStep::Wait => {}
                    LoginStep::Done => {
                        member.state = LoginState::Done;
                        ok += 1;
                    }
                    LoginStep::Refused(why) => {
                        member.state = LoginState::Failed;
                        failed += 1;
                        refusal.get_or_insert(why);
                    }
                },
            }
        })?;
        self.out = out;
        self.pongs += pongs;
        self.joined += joined;
        self.closed += closed;
        self.other_lines += other;
        self.logins.0 += ok;
        self.logins.1 += failed;
        if self.first_refusal.is_none() {
            self.first_refusal = refusal;
        }
        Ok(lines)
    }

    /// Reads until nothing has arrived for `quiet` (at most `limit`): lets a burst of
    /// presence notices or join echoes drain before measuring.
    pub fn settle(&mut self, quiet: Duration, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        let mut last = Instant::now();
        while last.elapsed() < quiet && start.elapsed() < limit {
            if self.pump(quiet / 4, |_, _, _| {})? > 0 {
                last = Instant::now();
            }
        }
        Ok(())
    }

    /// Makes every logged-in user join the broadcast channel (IRC) and waits for the joins.
    pub fn join_all(&mut self, limit: Duration) -> io::Result<bool> {
        let Some(join) = wire::join(self.dialect) else {
            return Ok(true);
        };
        let want = self.joined + (0..self.len()).filter(|&i| self.ready(i)).count();
        for i in 0..self.len() {
            if self.ready(i) {
                self.send(i, &join);
                // Each join is echoed to every member: pace them so the echoes drain.
                self.pump(Duration::ZERO, |_, _, _| {})?;
            }
        }
        let start = Instant::now();
        while self.joined < want && start.elapsed() < limit {
            self.pump(Duration::from_millis(10), |_, _, _| {})?;
        }
        Ok(self.joined >= want)
    }

    /// Sends [`wire::ping`] to every logged-in user and counts the answers (within `limit`).
    pub fn ping_all(&mut self, limit: Duration) -> io::Result<(usize, usize)> {
        let before = self.pongs;
        let asked: Vec<usize> = (0..self.len()).filter(|&i| self.ready(i)).collect();
        let ping = wire::ping(self.dialect);
        for &i in &asked {
            self.send(i, ping);
        }
        let start = Instant::now();
        while self.pongs - before < asked.len() && start.elapsed() < limit {
            self.pump(Duration::from_millis(10), |_, _, _| {})?;
        }
        Ok((self.pongs - before, asked.len()))
    }
}
