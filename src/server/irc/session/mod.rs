//! One IRC connection, on one thread: registration (CAP, PASS, NICK, USER) on the hub's
//! login rules, then a read-dispatch loop that calls the same hub methods as the native
//! session and turns their OK/ERR replies into numerics.
//!
//! ```text
//!   connect ──> CAP LS/REQ/END, PASS, NICK, USER (any order; CAP holds registration)
//!     auth=password: PASS is the user's password, NICK the username (wrong: 464, ERROR)
//!     open/allowlist: NICK is the name (433 in use, 432 invalid or not allowed)
//!   registered ──> 001-005, LUSERS, MOTD, JOIN #lobby + NAMES, offline mail, own channels
//!   commands ... ──> QUIT, EOF, ping or idle timeout, flood, shutdown ──> ERROR, close
//! ```
//!
//! This file holds the connection's state, the command loop and dispatch; the commands live
//! beside it by family: `register` (CAP, PASS, NICK, USER, PING), `messages` (PRIVMSG,
//! NOTICE, the `*lanchat` service), `channel` (JOIN, PART, TOPIC, NAMES), `queries` (WHO,
//! WHOIS, ISON, USERHOST, AWAY, MOTD, LUSERS, LIST) and `modes` (MODE, KICK, INVITE).

mod channel;
mod messages;
mod modes;
mod queries;
mod register;

use super::message::{format, parse, Message, MAX_LINE};
use super::numeric::*;
use super::world::{unix_now, World};
use super::IrcEncoder;
use crate::clock::Deadline;
use crate::protocol::{sanitize_text, GroupAction, Status};
use crate::server::hub::{Hub, LogoutReason};
use crate::server::outbox::Burst;
use crate::server::outbox::Conn;
use crate::server::policy::{Expiry, Heard, Pace, SessionLimits, Silence, Take, Timers};
use crate::server::reader::{Input, LineReader, ReadLines};
use crate::server::session::{drain_unread, pause, SessionContext};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The IRCv3 capabilities offered in `CAP LS`.
const CAPS: &str = "away-notify server-time";
/// The version in 002 and 004.
const VERSION: &str = concat!("lanchat-", env!("CARGO_PKG_VERSION"));
/// The lobby's topic.
const LOBBY_TOPIC: &str = "Everyone online. What you say here is a broadcast to all.";

/// What [`Hub::visible_online`] answers: the online users this user may see, and how many
/// are online in all.
type VisibleOnline = (Vec<(String, Status)>, usize);

/// Why the command loop ended: the hub's logout reason, the QUIT text others see and the
/// ERROR text the client gets (none at shutdown: the server already said goodbye).
struct Exit {
    reason: LogoutReason,
    quit: String,
    error: Option<String>,
}

/// Serves one accepted connection of the IRC door until it ends.
/// `encoder` is the one `conn` writes with.
pub fn serve(
    hub: &Hub,
    conn: &Arc<Conn>,
    ctx: &SessionContext<'_>,
    world: &Arc<World>,
    encoder: &IrcEncoder,
) {
    let _ = encoder.world.set(Arc::clone(world));
    let max = hub.config().max_line_bytes.max(MAX_LINE);
    let mut session = Session {
        hub,
        conn,
        enc: encoder,
        world,
        ctx,
        reader: LineReader::new(max).lossy(),
        nick: String::new(),
        server_time: false,
        away_notify: false,
        negotiating: false,
        active: Arc::new(AtomicU64::new(unix_now())),
        joined_here: BTreeSet::new(),
    };
    if let Some(registered_at) = session.register() {
        log::info!("{} logged in over IRC from {}", session.nick, conn.peer);
        // Registration (the welcome burst, the lobby's JOIN) went deeper than waiting does.
        crate::server::capacity::stack::release_unused_stack();
        let exit = session.command_loop(registered_at);
        session.leave(exit);
    }
    conn.wait_flushed(Duration::from_secs(1));
    conn.close();
    drain_unread(conn);
}

/// One connection's state.
struct Session<'a> {
    hub: &'a Hub,
    conn: &'a Arc<Conn>,
    enc: &'a IrcEncoder,
    world: &'a Arc<World>,
    ctx: &'a SessionContext<'a>,
    reader: LineReader,
    /// The nick, which is the lanchat name once registered; empty before.
    nick: String,
    /// Negotiated capabilities.
    server_time: bool,
    away_notify: bool,
    /// A `CAP LS` or `CAP REQ` holds registration until `CAP END`.
    negotiating: bool,
    /// When the user last did something (for WHOIS idle), shared with the world.
    active: Arc<AtomicU64>,
    /// The groups this connection JOINed (and has not PARTed). IRC has no membership that
    /// outlasts a connection, so they are left when it ends, however it ends; a membership
    /// made natively (`group join`, also through `*lanchat`) lasts, as on the native door.
    joined_here: BTreeSet<String>,
}

/// What a NICK check decided.
enum NickCheck {
    Ok,
    /// Refused with this reply; another NICK may follow.
    Reply(String),
    /// Refused for good (a lockout): ERROR, close.
    Close(String),
}

/// How a registration attempt ended.
enum Registration {
    /// Logged in; when, on the server's monotonic clock.
    Done(Instant),
    /// Refused (the reply was sent); wait for another NICK.
    Retry,
    Close,
}

impl Session<'_> {
    fn ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }

    fn replies(&self) -> Replies<'_> {
        Replies {
            server: &self.world.server_name,
            nick: if self.nick.is_empty() {
                "*"
            } else {
                &self.nick
            },
        }
    }

    fn send(&self, text: &str) {
        if !text.is_empty() {
            self.conn.send_bytes(text.as_bytes());
        }
    }

    fn server(&self) -> &str {
        &self.world.server_name
    }

    fn host(&self) -> String {
        let ip = self.ip().to_canonical().to_string();
        // A host starting with ':' would read as a trailing parameter.
        if ip.starts_with(':') {
            format!("0{ip}")
        } else {
            ip
        }
    }

    fn my_mask(&self) -> String {
        self.world.mask(&self.nick)
    }

    /// Serves a client registered at `registered_at` until it leaves.
    fn command_loop(&mut self, registered_at: Instant) -> Exit {
        let ticks = self.ctx.ticks;
        let limits = SessionLimits::of(self.hub.config());
        let mut timers = Timers::new(limits, self.ctx.connected);
        // A silent client is pinged after `heartbeat_timeout_secs`; after as long again of
        // silence it is gone.
        timers.logged_in(registered_at, Silence::Ping { sent: false });
        let mut pace = Pace::new(&limits, registered_at);
        // Replies and deliveries of a burst of pipelined lines go out together (see `outbox::burst`).
        let mut burst = Burst::begin(self.hub, self.conn);
        loop {
            burst.before_read();
            let input = self
                .reader
                .next_line(self.conn, Deadline::new(ticks, timers.deadline()));
            burst.after_read(self.reader.has_buffered_line());
            let now = ticks.now();
            let line = match input {
                Input::Line(l) => l,
                Input::TooLong(_) => {
                    timers.heard(now, Heard::Activity);
                    self.send(&self.replies().num(
                        ERR_INPUTTOOLONG,
                        &[],
                        "Input line was too long",
                    ));
                    continue;
                }
                Input::BadUtf8 => continue,
                Input::TimedOut => match timers.expired(now) {
                    Some(Expiry::Idle) => {
                        return Exit {
                            reason: LogoutReason::Timeout,
                            quit: "Idle timeout".into(),
                            error: Some("You were idle too long".into()),
                        }
                    }
                    Some(Expiry::Silent) => {
                        let silent = timers.silent_for(now);
                        let text = format!("Ping timeout: {} seconds", silent.as_secs());
                        return Exit {
                            reason: LogoutReason::Heartbeat,
                            quit: text.clone(),
                            error: Some(text),
                        };
                    }
                    Some(Expiry::PingDue) => {
                        timers.pinged();
                        self.send(&format(None, None, "PING", &[self.server()], true));
                        continue;
                    }
                    _ => continue,
                },
                Input::Closed => return self.closed_exit(),
            };
            let Some(m) = parse(&line) else {
                timers.heard(now, Heard::KeepAlive);
                continue;
            };
            if matches!(m.command.as_str(), "PING" | "PONG") {
                timers.heard(now, Heard::KeepAlive);
            } else {
                timers.heard(now, Heard::Activity);
                self.active.store(unix_now(), Ordering::Relaxed);
            }
            // Over the rate limit, lines wait (as IRC servers' "fake lag" does) rather
            // than being dropped, which IRC clients would not notice; a client that keeps
            // it up is an "Excess Flood" (see `policy`).
            if m.command != "QUIT" {
                match pace.take(now) {
                    Take::Now => {}
                    Take::After(wait) => {
                        burst.release();
                        if !pause(self.conn, ticks, now + wait) {
                            return self.closed_exit();
                        }
                    }
                    Take::Flood => {
                        return Exit {
                            reason: LogoutReason::Flood,
                            quit: "Excess Flood".into(),
                            error: Some("Excess Flood".into()),
                        };
                    }
                }
            }
            if let Some(exit) = self.dispatch(&m) {
                return exit;
            }
        }
    }

    /// Why the command loop ends when the connection was found closed.
    fn closed_exit(&self) -> Exit {
        if self.ctx.shutting_down.load(Ordering::Acquire) {
            Exit {
                reason: LogoutReason::Shutdown,
                quit: "Server shutting down".into(),
                error: None,
            }
        } else {
            Exit {
                reason: LogoutReason::Dropped,
                quit: "Connection lost".into(),
                error: None,
            }
        }
    }

    /// Leaves: others see QUIT with the user's text, the client gets ERROR.
    fn leave(&mut self, exit: Exit) {
        let (name, id) = (self.nick.clone(), self.conn.id);
        // Before going offline, so no group line is stored as mail for a departed member.
        self.leave_joined_here(&name);
        self.world
            .update(&name, id, |u| u.quit = Some(exit.quit.clone()));
        self.hub.logout(&name, id, exit.reason);
        self.world.unregister(&name, id);
        if let Some(error) = exit.error {
            self.send(
                &self
                    .replies()
                    .error(&format!("Closing Link: {name} ({error})")),
            );
        }
        log::info!("{name} left IRC ({:?})", exit.reason);
    }

    /// Takes `name` out of the groups this connection JOINed (others see the QUIT or the
    /// NICK, not a PART); a group is deleted with its last member, as natively.
    fn leave_joined_here(&mut self, name: &str) {
        for group in std::mem::take(&mut self.joined_here) {
            let _ = self.hub.group(name, &GroupAction::Leave(group.clone()));
            self.world.left_channel(&group, name);
        }
    }

    fn dispatch(&mut self, m: &Message) -> Option<Exit> {
        let r = self.replies();
        let out = match m.command.as_str() {
            "PING" => self.pong(m),
            "PONG" => String::new(),
            "PASS" | "USER" => r.num(ERR_ALREADYREGISTRED, &[], "You may not reregister"),
            "CAP" => self.cap(m, true),
            "NICK" => return self.nick_change(m),
            "PRIVMSG" | "NOTICE" => self.privmsg(m),
            "JOIN" => self.join(m),
            "PART" => self.part(m),
            "TOPIC" => self.topic(m),
            "NAMES" => self.names(m),
            "WHO" => self.who(m),
            "WHOIS" => self.whois(m),
            "ISON" => self.ison(m),
            "USERHOST" => self.userhost(m),
            "AWAY" => self.away(m),
            "MOTD" => self.motd(),
            "LUSERS" => self.lusers(false),
            "MODE" => self.mode(m),
            "LIST" => self.list(m),
            "KICK" => self.kick(m),
            "INVITE" => self.invite(m),
            "QUIT" => {
                let quit = match m.param(0).filter(|t| !t.is_empty()) {
                    Some(text) => format!("Quit: {}", sanitize_text(text)),
                    None => "Quit".to_string(),
                };
                return Some(Exit {
                    reason: LogoutReason::Requested,
                    error: Some(quit.clone()),
                    quit,
                });
            }
            other => r.num(ERR_UNKNOWNCOMMAND, &[other], "Unknown command"),
        };
        self.send(&out);
        None
    }
}
