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

use super::message::{format, mask_match, parse, same_name, Message, MAX_LINE};
use super::numeric::*;
use super::translate::SERVICE;
use super::world::{prefix, unix_now, ChannelMeta, IrcUser, World};
use super::{as_notice, IrcEncoder};
use crate::config::AuthMode;
use crate::protocol::{
    is_unsafe_char, parse_command, sanitize_text, valid_username, Audience, Command, GroupAction,
    Kind, Line, Status,
};
use crate::server::conn::Conn;
use crate::server::cork::Cork;
use crate::server::hub::{Hub, LogoutReason, NameCheck, PasswordCheck};
use crate::server::policy::{Expiry, Heard, Limits, Pace, Silence, Take, Timers};
use crate::server::reader::{Input, LineReader, ReadLines};
use crate::server::session::{apply, drain_unread, pause, SessionContext};
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
type Online = (Vec<(String, Status)>, usize);

/// Why the command loop ended: the hub's logout reason, the QUIT text others see and the
/// ERROR text the client gets (none at shutdown: the server already said goodbye).
struct Exit {
    reason: LogoutReason,
    quit: String,
    error: Option<String>,
}

/// Serves one accepted connection of the IRC door until it ends.
pub fn serve(hub: &Hub, conn: &Arc<Conn>, ctx: &SessionContext<'_>, world: &Arc<World>) {
    let Some(encoder) = IrcEncoder::of(conn) else {
        log::error!("conn {}: IRC session without an IRC encoder", conn.id);
        conn.close();
        return;
    };
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
    if session.register() {
        log::info!("{} logged in over IRC from {}", session.nick, conn.peer);
        // Registration (the welcome burst, the lobby's JOIN) went deeper than waiting does.
        crate::server::memory::release_unused_stack();
        let exit = session.command_loop();
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
    Done,
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

    // ----- registration -----

    /// Reads lines until the client is registered (true) or gone (false).
    fn register(&mut self) -> bool {
        let timers = Timers::new(Limits::of(self.hub.config()), self.ctx.connected);
        let mut pass: Option<String> = None;
        let mut nick: Option<String> = None;
        let mut user: Option<(String, String)> = None;
        loop {
            let line = match self.reader.next_line(self.conn, timers.deadline()) {
                Input::Line(l) => l,
                Input::TooLong(_) => {
                    self.send(&self.replies().num(
                        ERR_INPUTTOOLONG,
                        &[],
                        "Input line was too long",
                    ));
                    continue;
                }
                Input::BadUtf8 => continue,
                Input::TimedOut => {
                    if timers.expired(Instant::now()) == Some(Expiry::Login) {
                        self.send(
                            &self
                                .replies()
                                .error("Closing Link: * (Registration timed out)"),
                        );
                        return false;
                    }
                    continue;
                }
                Input::Closed => return false,
            };
            if self.ctx.shutting_down.load(Ordering::Acquire) {
                return false;
            }
            let Some(m) = parse(&line) else { continue };
            let r = self.replies();
            match m.command.as_str() {
                "CAP" => {
                    let reply = self.cap(&m, false);
                    self.send(&reply);
                }
                "PASS" => match m.param(0) {
                    Some(p) => pass = Some(p.to_string()),
                    None => {
                        self.send(&r.num(ERR_NEEDMOREPARAMS, &["PASS"], "Not enough parameters"))
                    }
                },
                "NICK" => match m.param(0).filter(|n| !n.is_empty()) {
                    None => self.send(&r.num(ERR_NONICKNAMEGIVEN, &[], "No nickname given")),
                    Some(n) => match self.check_nick(n, "") {
                        NickCheck::Ok => nick = Some(n.to_string()),
                        NickCheck::Reply(reply) => self.send(&reply),
                        NickCheck::Close(text) => {
                            self.send(&r.error(&format!("Closing Link: {n} ({text})")));
                            return false;
                        }
                    },
                },
                "USER" => {
                    let username = m.param(0).unwrap_or("");
                    let realname = m.param(3).unwrap_or("");
                    if m.params.len() < 4 || username.is_empty() || realname.is_empty() {
                        self.send(&r.num(ERR_NEEDMOREPARAMS, &["USER"], "Not enough parameters"));
                    } else {
                        // Others see it in WHOIS and WHO: escaped as it comes in.
                        let realname = sanitize_text(super::message::truncate(realname, 200));
                        user = Some((username.to_string(), realname));
                    }
                }
                "PING" => {
                    let reply = self.pong(&m);
                    self.send(&reply);
                }
                "PONG" => {}
                "QUIT" => {
                    self.send(&r.error("Closing Link: * (Quit)"));
                    return false;
                }
                _ => self.send(&r.num(ERR_NOTREGISTERED, &[], "You have not registered")),
            }
            if self.negotiating {
                continue;
            }
            let (Some(n), Some(u)) = (nick.clone(), user.clone()) else {
                continue;
            };
            match self.try_register(&n, pass.as_deref(), &u) {
                Registration::Done => return true,
                Registration::Retry => nick = None,
                Registration::Close => return false,
            }
        }
    }

    /// Whether `nick` may be taken as a lanchat name now (`current`: the nick it replaces).
    fn check_nick(&self, nick: &str, current: &str) -> NickCheck {
        let r = self.replies();
        if !valid_username(nick) {
            return NickCheck::Reply(r.num(ERR_ERRONEUSNICKNAME, &[nick], "Erroneous nickname"));
        }
        if self.hub.config().auth == AuthMode::Password {
            // Whether a name is online is told only after its password (as natively).
            return NickCheck::Ok;
        }
        match self.hub.check_name(nick, self.ip()) {
            NameCheck::Ok { .. } => {}
            NameCheck::Retry(line) if line.arg(0) == "already-online" => {
                return NickCheck::Reply(r.num(
                    ERR_NICKNAMEINUSE,
                    &[nick],
                    "Nickname is already in use",
                ));
            }
            NameCheck::Retry(line) => {
                let text = format!("Erroneous nickname: {}", line.text);
                return NickCheck::Reply(r.num(ERR_ERRONEUSNICKNAME, &[nick], &text));
            }
            NameCheck::Close(line) => return NickCheck::Close(line.text),
        }
        if !same_name(nick, current) && self.hub.online_case_twin(nick) {
            return NickCheck::Reply(r.num(
                ERR_NICKNAMEINUSE,
                &[nick],
                "Nickname is already in use",
            ));
        }
        NickCheck::Ok
    }

    /// With NICK and USER in: checks the password (in password mode) and logs in.
    fn try_register(
        &mut self,
        nick: &str,
        pass: Option<&str>,
        user: &(String, String),
    ) -> Registration {
        let r = self.replies();
        let closing = |text: &str| r.error(&format!("Closing Link: {nick} ({text})"));
        if self.hub.config().auth == AuthMode::Password
            && self.hub.config().require_tls
            && !self.conn.is_tls()
        {
            let port = self.hub.config().irc_tls_port;
            self.send(&(r.num(
                ERR_PASSWDMISMATCH,
                &[],
                &format!("This server takes passwords only over TLS: connect to port {port} with TLS (irssi -c HOST -p {port} -tls)"),
            ) + &closing("TLS required")));
            return Registration::Close;
        }
        if self.hub.config().auth == AuthMode::Password {
            let Some(pass) = pass else {
                self.send(&(r.num(
                    ERR_PASSWDMISMATCH,
                    &[],
                    "Password required: send your lanchat password as the server password (PASS)",
                ) + &closing("Password required")));
                return Registration::Close;
            };
            match self.hub.check_name(nick, self.ip()) {
                NameCheck::Ok { .. } => {}
                NameCheck::Retry(line) => {
                    self.send(&r.num(ERR_ERRONEUSNICKNAME, &[nick], &line.text));
                    return Registration::Retry;
                }
                NameCheck::Close(line) => {
                    self.send(&closing(&line.text));
                    return Registration::Close;
                }
            }
            match self.hub.check_password(nick, pass, self.ip()) {
                PasswordCheck::Ok => {}
                PasswordCheck::Retry(line) | PasswordCheck::Close(line) => {
                    self.send(
                        &(r.num(ERR_PASSWDMISMATCH, &[], "Password incorrect")
                            + &closing(&line.text)),
                    );
                    return Registration::Close;
                }
            }
        } else {
            match self.check_nick(nick, "") {
                NickCheck::Ok => {}
                NickCheck::Reply(reply) => {
                    self.send(&reply);
                    return Registration::Retry;
                }
                NickCheck::Close(text) => {
                    self.send(&closing(&text));
                    return Registration::Close;
                }
            }
        }
        self.world.register(
            nick,
            IrcUser {
                conn: Arc::clone(self.conn),
                username: clean_username(&user.0, nick),
                realname: user.1.clone(),
                host: self.host(),
                signon: unix_now(),
                active: Arc::clone(&self.active),
                away: None,
                quit: None,
                renamed_to: None,
                renaming: false,
            },
        );
        self.nick = nick.to_string();
        self.enc.set_nick(nick);
        self.enc.set_in_lobby(true);
        // The burst replaces WELCOME, so it precedes the offline mail and any live line.
        let burst = self.welcome_burst(&user.0);
        self.enc.set_welcome(Some(burst.into_bytes()));
        if let Err(line) = self.hub.login(nick, self.conn) {
            self.world.unregister(nick, self.conn.id);
            self.enc.set_welcome(None);
            self.enc.set_nick("");
            self.nick.clear();
            log::info!("IRC login of {nick} refused: {}", line.text);
            let reply = match line.arg(0) {
                "already-online" => {
                    self.replies()
                        .num(ERR_NICKNAMEINUSE, &[nick], "Nickname is already in use")
                }
                // A bound of the data directory (`user-limit`, `storage-full`): the text
                // says which, and that a nick used before still works.
                _ => self
                    .replies()
                    .num(ERR_ERRONEUSNICKNAME, &[nick], &line.text),
            };
            self.send(&reply);
            return Registration::Retry;
        }
        self.world.note_users(self.hub.online_count());
        self.rejoin_channels(&BTreeSet::new());
        Registration::Done
    }

    /// 001-005, LUSERS, the MOTD, then the lobby's JOIN, topic and NAMES.
    fn welcome_burst(&self, username: &str) -> String {
        let r = self.replies();
        let server = self.server();
        let created = crate::clock::format_utc(self.world.started);
        let mut out = r.num(
            RPL_WELCOME,
            &[],
            &format!(
                "Welcome to the {server} IRC network (lanchat), {}!{username}@{}",
                self.nick,
                self.host()
            ),
        );
        out += &r.num(
            RPL_YOURHOST,
            &[],
            &format!("Your host is {server}, running version {VERSION}"),
        );
        out += &r.num(
            RPL_CREATED,
            &[],
            &format!("This server was created {created}"),
        );
        out += &r.num_bare(RPL_MYINFO, &[server, VERSION, "i", "ntov", "ov"]);
        let tokens = [
            "AWAYLEN=200".to_string(),
            "CASEMAPPING=ascii".to_string(),
            "CHANLIMIT=#:".to_string(),
            "CHANMODES=,,,nt".to_string(),
            "CHANNELLEN=33".to_string(),
            "CHANTYPES=#".to_string(),
            "MODES=4".to_string(),
            format!("NETWORK={server}"),
            "NICKLEN=32".to_string(),
            "PREFIX=(ov)@+".to_string(),
            "TARGMAX=JOIN:,NAMES:,PART:,PRIVMSG:4,NOTICE:4,KICK:4,WHOIS:1,ISON:,USERHOST:5"
                .to_string(),
            "TOPICLEN=390".to_string(),
            "USERLEN=32".to_string(),
        ];
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        out += &r.num(RPL_ISUPPORT, &tokens, "are supported by this server");
        // Who is online, read once for both LUSERS and the lobby's NAMES: in a crowd it
        // is the dearest part of a login.
        let online = self.hub.visible_online(&self.nick);
        out += &self.lusers_of(&online, true);
        out += &self.motd();
        out += &self.joined_with(&self.world.lobby.clone(), None, Some(online));
        out
    }

    /// After login (or a nick change): JOINs for the groups the user is in (lanchat
    /// memberships last across logins), except those in `known`.
    fn rejoin_channels(&self, known: &BTreeSet<String>) {
        for (group, _, member) in self.hub.groups_with(&self.nick) {
            if member && !known.contains(&group) {
                let join = format(
                    None,
                    Some(&self.my_mask()),
                    "JOIN",
                    &[&format!("#{group}")],
                    false,
                );
                self.announce(&group, &join);
                self.send(&self.joined(&format!("#{group}"), Some(&group)));
            }
        }
    }

    // ----- the command loop -----

    fn command_loop(&mut self) -> Exit {
        let limits = Limits::of(self.hub.config());
        let mut timers = Timers::new(limits, self.ctx.connected);
        // A silent client is pinged after `heartbeat_timeout_secs`; after as long again of
        // silence it is gone.
        timers.logged_in(Instant::now(), Silence::Ping { sent: false });
        let mut pace = Pace::new(&limits, Instant::now());
        // Replies and deliveries of a burst of pipelined lines go out together (see `cork`).
        let mut cork = Cork::begin(self.hub, self.conn);
        loop {
            cork.before_read();
            let input = self.reader.next_line(self.conn, timers.deadline());
            cork.after_read(self.reader.has_buffered_line());
            let now = Instant::now();
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
                        cork.release();
                        if !pause(self.conn, wait) {
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

    // ----- commands -----

    fn pong(&self, m: &Message) -> String {
        match m.param(0) {
            Some(token) => format(
                None,
                Some(self.server()),
                "PONG",
                &[self.server(), token],
                true,
            ),
            None => self
                .replies()
                .num(ERR_NEEDMOREPARAMS, &["PING"], "Not enough parameters"),
        }
    }

    /// CAP LS / LIST / REQ / END (IRCv3 capability negotiation, 3.1 and 3.2).
    fn cap(&mut self, m: &Message, registered: bool) -> String {
        let sub = m.param(0).unwrap_or("").to_ascii_uppercase();
        let invalid = self.replies().num("410", &[&sub], "Invalid CAP command");
        let (server, nick) = (self.server().to_string(), self.replies().nick.to_string());
        let cap = |params: &[&str]| {
            let mut all = vec![nick.as_str()];
            all.extend_from_slice(params);
            format(None, Some(&server), "CAP", &all, true)
        };
        match sub.as_str() {
            "LS" => {
                self.negotiating |= !registered;
                cap(&["LS", CAPS])
            }
            "LIST" => {
                let mut on = Vec::new();
                if self.away_notify {
                    on.push("away-notify");
                }
                if self.server_time {
                    on.push("server-time");
                }
                cap(&["LIST", &on.join(" ")])
            }
            "REQ" => {
                self.negotiating |= !registered;
                let wanted = m.param(1).unwrap_or("");
                let known =
                    |c: &str| matches!(c.trim_start_matches('-'), "away-notify" | "server-time");
                if wanted.split_whitespace().all(known) && !wanted.trim().is_empty() {
                    for c in wanted.split_whitespace() {
                        let on = !c.starts_with('-');
                        match c.trim_start_matches('-') {
                            "away-notify" => self.away_notify = on,
                            _ => self.server_time = on,
                        }
                    }
                    self.enc.set_caps(self.server_time, self.away_notify);
                    cap(&["ACK", wanted.trim()])
                } else {
                    cap(&["NAK", &sanitize_text(wanted.trim())])
                }
            }
            "END" => {
                self.negotiating = false;
                String::new()
            }
            _ => invalid,
        }
    }

    /// NICK after registration: a new lanchat name, in open mode only.
    fn nick_change(&mut self, m: &Message) -> Option<Exit> {
        let r = self.replies();
        let Some(new) = m.param(0).filter(|n| !n.is_empty()).map(str::to_string) else {
            self.send(&r.num(ERR_NONICKNAMEGIVEN, &[], "No nickname given"));
            return None;
        };
        if new == self.nick {
            return None;
        }
        if self.hub.config().auth != AuthMode::Open {
            self.send(&r.num(
                ERR_NONICKCHANGE,
                &[&new],
                "Cannot change nickname: on this server your nick is your lanchat username",
            ));
            return None;
        }
        match self.check_nick(&new, &self.nick) {
            NickCheck::Ok => {}
            NickCheck::Reply(reply) => {
                self.send(&reply);
                return None;
            }
            NickCheck::Close(text) => {
                self.send(&r.num(ERR_ERRONEUSNICKNAME, &[&new], &text));
                return None;
            }
        }
        let (old, id) = (self.nick.clone(), self.conn.id);
        let old_mask = self.my_mask();
        let old_groups: BTreeSet<String> = self
            .hub
            .groups_with(&old)
            .into_iter()
            .filter_map(|(g, _, member)| member.then_some(g))
            .collect();
        // Others' encoders turn the logout into `:old NICK new`, and skip the login's JOIN.
        self.world
            .update(&old, id, |u| u.renamed_to = Some(new.clone()));
        self.hub.logout(&old, id, LogoutReason::Requested);
        let details = self.world.details(&old);
        self.world.unregister(&old, id);
        let (username, _, realname, signon, _) =
            details.unwrap_or_else(|| (old.clone(), String::new(), old.clone(), unix_now(), 0));
        self.world.register(
            &new,
            IrcUser {
                conn: Arc::clone(self.conn),
                username,
                realname,
                host: self.host(),
                signon,
                active: Arc::clone(&self.active),
                away: None,
                quit: None,
                renamed_to: None,
                renaming: true,
            },
        );
        self.send(&format(None, Some(&old_mask), "NICK", &[&new], false));
        self.nick = new.clone();
        self.enc.set_nick(&new);
        if self.hub.login(&new, self.conn).is_err() {
            // Lost a race for the name: become the old name again, or give up.
            self.world.unregister(&new, id);
            return Some(Exit {
                reason: LogoutReason::Dropped,
                quit: "Nick change failed".into(),
                error: Some("Nick change failed; please reconnect".into()),
            });
        }
        self.world.update(&new, id, |u| u.renaming = false);
        // The channels follow the user: the new name joins the old name's groups (over IRC,
        // so for this connection only), and the old name leaves those it JOINed here.
        let old_joined_here = std::mem::replace(&mut self.joined_here, old_groups.clone());
        for g in &old_groups {
            let _ = self.hub.group(&new, &GroupAction::Join(g.clone()));
            self.world.update_channel(g, |c| {
                if c.ops.remove(&old) {
                    c.ops.insert(new.clone());
                }
                if c.voices.remove(&old) {
                    c.voices.insert(new.clone());
                }
            });
        }
        for g in old_joined_here {
            let _ = self.hub.group(&old, &GroupAction::Leave(g));
        }
        self.rejoin_channels(&old_groups);
        None
    }

    /// PRIVMSG / NOTICE to nicks, channels, the lobby or the lanchat service.
    fn privmsg(&mut self, m: &Message) -> String {
        let notice = m.command == "NOTICE";
        let r = self.replies();
        let Some(targets) = m.param(0).filter(|t| !t.is_empty()) else {
            return if notice {
                String::new()
            } else {
                r.num(
                    ERR_NORECIPIENT,
                    &[],
                    &format!("No recipient given ({})", m.command),
                )
            };
        };
        let Some(text) = m.param(1).filter(|t| !t.is_empty()) else {
            return if notice {
                String::new()
            } else {
                r.num(ERR_NOTEXTTOSEND, &[], "No text to send")
            };
        };
        let text = sanitize_text(text);
        let mut out = String::new();
        for target in targets.split(',').filter(|t| !t.is_empty()).take(4) {
            out += &self.say_to(target, &text, notice);
        }
        out
    }

    fn say_to(&mut self, target: &str, text: &str, notice: bool) -> String {
        let r = self.replies();
        let quiet = |s: String| if notice { String::new() } else { s };
        let me = self.nick.clone();
        if self.world.is_lobby(target) {
            if !self.enc.in_lobby() {
                return quiet(r.num(
                    ERR_CANNOTSENDTOCHAN,
                    &[target],
                    "Cannot send to channel (join it first)",
                ));
            }
            let replies = as_notice(notice, || self.hub.broadcast(&me, &Audience::Online, text));
            return quiet(self.problems(&replies));
        }
        if let Some(group) = target.strip_prefix('#') {
            if !valid_username(group) {
                return quiet(r.num(ERR_NOSUCHCHANNEL, &[target], "No such channel"));
            }
            // The exact name first (one hub call, as for a native `gsend`); a channel
            // named in another case is looked up only when that fails.
            let mut send = GroupAction::Send(group.to_string(), text.to_string());
            let mut replies = as_notice(notice, || self.hub.group(&me, &send));
            if replies.first().is_some_and(|l| l.arg(0) == "no-such-group") {
                if let Some((real, _)) = self.hub.group_view(&me, group) {
                    send = GroupAction::Send(real, text.to_string());
                    replies = as_notice(notice, || self.hub.group(&me, &send));
                }
            }
            return quiet(match replies.first().map(|l| l.arg(0)) {
                Some("no-such-group") => r.num(ERR_NOSUCHCHANNEL, &[target], "No such channel"),
                Some("not-member") => r.num(
                    ERR_CANNOTSENDTOCHAN,
                    &[target],
                    "Cannot send to channel (join it first)",
                ),
                _ => self.problems(&replies),
            });
        }
        if same_name(target, SERVICE) {
            return if notice {
                String::new()
            } else {
                self.service(text)
            };
        }
        if !valid_username(target) {
            return quiet(r.num(ERR_NOSUCHNICK, &[target], "No such nick/channel"));
        }
        if let Some(partner) = self.enc.partner().filter(|p| same_name(p, target)) {
            let replies = as_notice(notice, || self.hub.talk(&me, text));
            match replies.first() {
                None => return String::new(),
                Some(l) if l.arg(0) == "no-session" => self.enc.clear_partner(),
                Some(_) => {
                    return quiet(r.num(ERR_NOSUCHNICK, &[&partner], "No such nick/channel"));
                }
            }
        }
        let mut to = target.to_string();
        let mut replies = as_notice(notice, || self.hub.message(&me, &to, text.to_string()));
        if replies.first().is_some_and(|l| l.arg(0) == "unknown-user") {
            if let Some((real, _, _)) = self.hub.find_online(&me, target).filter(|f| f.0 != target)
            {
                to = real;
                replies = as_notice(notice, || self.hub.message(&me, &to, text.to_string()));
            }
        }
        if notice {
            return String::new();
        }
        let mut out = String::new();
        for line in &replies {
            out += &match (line.kind, line.arg(0)) {
                (Kind::Ok, "sent") => String::new(),
                (Kind::Ok, "queued") => r.notice(&format!(
                    "{to} is not online; they will get your message when they log in."
                )),
                (Kind::Info, "busy") => r.num(RPL_AWAY, &[&to], &self.away_text(&to)),
                (Kind::Err, "unknown-user") => {
                    r.num(ERR_NOSUCHNICK, &[target], "No such nick/channel")
                }
                (Kind::Err, "blocked") => r.num(
                    ERR_TARGUMODEG,
                    &[&to],
                    "has blocked you; your message was not delivered",
                ),
                _ => r.notice(&line.text),
            };
        }
        out
    }

    /// What went wrong in a hub reply, as server notices (successes say nothing).
    fn problems(&self, replies: &[Line]) -> String {
        replies
            .iter()
            .filter(|l| l.kind == Kind::Err)
            .map(|l| self.replies().notice(&format!("error: {}", l.text)))
            .collect()
    }

    fn away_text(&self, name: &str) -> String {
        self.world
            .away(name)
            .unwrap_or_else(|| "is busy".to_string())
    }

    /// `/msg *lanchat COMMAND`: any native command; replies come back as notices.
    fn service(&mut self, text: &str) -> String {
        let me = self.nick.clone();
        let replies = match parse_command(text, &me) {
            Ok(None) => return String::new(),
            Err(e) => vec![Line::err(e.code, e.message)],
            Ok(Some(Command::Logout)) => vec![Line::err("usage", "To leave, use /quit.")],
            Ok(Some(Command::Intro(None))) => {
                vec![Line::err("usage", "usage: personalintro TEXT")]
            }
            Ok(Some(command)) => {
                if let Command::Status(Some(s)) = &command {
                    let away = (*s == Status::Busy).then(|| "busy".to_string());
                    self.world.update(&me, self.conn.id, |u| u.away = away);
                }
                apply(self.hub, &me, command)
            }
        };
        self.conn.send_all(&replies);
        String::new()
    }

    /// Sends `line` to the other IRC users online in `group`.
    fn announce(&self, group: &str, line: &str) {
        let online: Vec<String> = match self.hub.group_view(&self.nick, group) {
            Some((_, members)) => members
                .into_iter()
                .filter_map(|(n, online)| online.then_some(n))
                .collect(),
            None => return,
        };
        for conn in self.world.conns_of(&online, &self.nick) {
            conn.send_bytes(line.as_bytes());
        }
    }

    /// The JOIN, topic and NAMES a client gets on joining `channel` (`group`: its lanchat
    /// group; `None` for the lobby).
    fn joined(&self, channel: &str, group: Option<&str>) -> String {
        self.joined_with(channel, group, None)
    }

    /// [`Session::joined`], given the lobby's users if they were just read.
    fn joined_with(&self, channel: &str, group: Option<&str>, online: Option<Online>) -> String {
        let mut out = format(None, Some(&self.my_mask()), "JOIN", &[channel], false);
        out += &self.topic_lines(channel, group, false);
        out += &self.names_lines_with(channel, group, online);
        out += &self
            .replies()
            .num(RPL_ENDOFNAMES, &[channel], "End of /NAMES list");
        out
    }

    /// 332 (+333), or 331 when `always` and there is no topic.
    fn topic_lines(&self, channel: &str, group: Option<&str>, always: bool) -> String {
        let r = self.replies();
        match group {
            None => r.num(RPL_TOPIC, &[channel], LOBBY_TOPIC),
            Some(g) => match self.world.channel(g).topic {
                Some((text, by, at)) => {
                    r.num(RPL_TOPIC, &[channel], &text)
                        + &r.num_bare(RPL_TOPICWHOTIME, &[channel, &by, &at.to_string()])
                }
                None if always => r.num(RPL_NOTOPIC, &[channel], "No topic is set"),
                None => String::new(),
            },
        }
    }

    /// Who is in a channel, as 353 lines: every visible online user for the lobby, the
    /// online members (with `@`/`+`) for a group.
    fn names_lines(&self, channel: &str, group: Option<&str>) -> String {
        self.names_lines_with(channel, group, None)
    }

    /// [`Session::names_lines`], given the lobby's users if they were just read.
    fn names_lines_with(
        &self,
        channel: &str,
        group: Option<&str>,
        online: Option<Online>,
    ) -> String {
        let names: Vec<String> = match group {
            None => {
                let online = online.unwrap_or_else(|| self.hub.visible_online(&self.nick));
                let mut names: Vec<String> = online.0.into_iter().map(|(n, _)| n).collect();
                // At registration the user is not online yet, but is in the lobby.
                if let Err(at) = names.binary_search(&self.nick) {
                    names.insert(at, self.nick.clone());
                }
                names
            }
            Some(g) => {
                let meta = self.world.channel(g);
                self.members_online(g)
                    .into_iter()
                    .map(|n| format!("{}{n}", prefix(&meta, &n)))
                    .collect()
            }
        };
        let r = self.replies();
        let room = MAX_LINE - 64 - self.server().len() - self.nick.len() - channel.len();
        let mut out = String::new();
        let mut chunk = String::new();
        for n in names {
            if !chunk.is_empty() && chunk.len() + 1 + n.len() > room {
                out += &r.num(RPL_NAMREPLY, &["=", channel], &chunk);
                chunk.clear();
            }
            if !chunk.is_empty() {
                chunk.push(' ');
            }
            chunk.push_str(&n);
        }
        if !chunk.is_empty() {
            out += &r.num(RPL_NAMREPLY, &["=", channel], &chunk);
        }
        out
    }

    /// Every member of `group`, online or not.
    fn members(&self, group: &str) -> Vec<String> {
        self.hub
            .group_view(&self.nick, group)
            .map(|(_, members)| members.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default()
    }

    /// The members of `group` online and visible to this user.
    fn members_online(&self, group: &str) -> Vec<String> {
        self.hub
            .group_view(&self.nick, group)
            .map(|(_, members)| {
                members
                    .into_iter()
                    .filter_map(|(n, online)| online.then_some(n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A channel name as the client gave it: the lobby, or an existing group's real name.
    fn resolve(&self, channel: &str) -> Option<Option<String>> {
        if self.world.is_lobby(channel) {
            return Some(None);
        }
        let group = channel.strip_prefix('#').filter(|g| valid_username(g))?;
        self.hub
            .group_view(&self.nick, group)
            .map(|(real, _)| Some(real))
    }

    fn is_member(&self, group: &str) -> bool {
        self.hub
            .group_view(&self.nick, group)
            .is_some_and(|(_, m)| m.iter().any(|(n, _)| *n == self.nick))
    }

    fn join(&mut self, m: &Message) -> String {
        let r = self.replies();
        let Some(list) = m.param(0).filter(|l| !l.is_empty()) else {
            return r.num(ERR_NEEDMOREPARAMS, &["JOIN"], "Not enough parameters");
        };
        if list == "0" {
            return self.part_all();
        }
        let mut out = String::new();
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            out += &self.join_one(channel, true);
        }
        out
    }

    fn join_one(&mut self, channel: &str, retry: bool) -> String {
        let r = self.replies();
        let me = self.nick.clone();
        if self.world.is_lobby(channel) {
            if self.enc.in_lobby() {
                // Already in: the burst again, to this client only (it lost track of it).
                return self.joined(&self.world.lobby.clone(), None);
            }
            self.enc.set_in_lobby(true);
            return self.joined(&self.world.lobby.clone(), None);
        }
        let Some(name) = channel.strip_prefix('#').filter(|g| valid_username(g)) else {
            return r.num(ERR_NOSUCHCHANNEL, &[channel], "No such channel");
        };
        let group = match self.hub.group_view(&me, name) {
            Some((real, members)) => {
                if members.iter().any(|(n, _)| *n == me) {
                    // Already a member (memberships outlast logins): the JOIN burst again,
                    // to this client only, so a client that waits for its JOIN gets one.
                    return self.joined(&format!("#{real}"), Some(&real));
                }
                let first = !members.iter().any(|(n, online)| *online && *n != me);
                let replies = self.hub.group(&me, &GroupAction::Join(real.clone()));
                if replies.first().is_some_and(|l| l.kind == Kind::Err) {
                    return self.problems(&replies);
                }
                if first {
                    self.world.update_channel(&real, |c| {
                        c.ops.insert(me.clone());
                    });
                }
                self.joined_here.insert(real.clone());
                real
            }
            None => {
                let replies = self.hub.group(&me, &GroupAction::Create(name.to_string()));
                match replies.first() {
                    Some(l) if l.arg(0) == "group-exists" && retry => {
                        return self.join_one(channel, false);
                    }
                    Some(l) if l.kind == Kind::Err => return self.problems(&replies),
                    _ => {}
                }
                // A new channel: its creator is its operator.
                self.world.update_channel(name, |c| {
                    c.ops = BTreeSet::from([me.clone()]);
                    c.voices.clear();
                    c.topic = None;
                    c.open_topic = false;
                    c.created = unix_now();
                });
                self.joined_here.insert(name.to_string());
                name.to_string()
            }
        };
        let shown = format!("#{group}");
        let join = format(None, Some(&self.my_mask()), "JOIN", &[&shown], false);
        self.announce(&group, &join);
        self.joined(&shown, Some(&group))
    }

    fn part(&mut self, m: &Message) -> String {
        let r = self.replies();
        let Some(list) = m.param(0).filter(|l| !l.is_empty()) else {
            return r.num(ERR_NEEDMOREPARAMS, &["PART"], "Not enough parameters");
        };
        let reason = m.param(1).map(sanitize_text);
        let mut out = String::new();
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            out += &self.part_one(channel, reason.as_deref());
        }
        out
    }

    fn part_line(&self, channel: &str, reason: Option<&str>) -> String {
        let mask = self.my_mask();
        match reason {
            Some(text) => format(None, Some(&mask), "PART", &[channel, text], true),
            None => format(None, Some(&mask), "PART", &[channel], false),
        }
    }

    fn part_one(&mut self, channel: &str, reason: Option<&str>) -> String {
        let r = self.replies();
        match self.resolve(channel) {
            None => r.num(ERR_NOSUCHCHANNEL, &[channel], "No such channel"),
            Some(None) => {
                if !self.enc.in_lobby() {
                    return r.num(ERR_NOTONCHANNEL, &[channel], "You're not on that channel");
                }
                self.enc.set_in_lobby(false);
                self.part_line(&self.world.lobby, reason)
            }
            Some(Some(group)) => {
                if !self.is_member(&group) {
                    return r.num(ERR_NOTONCHANNEL, &[channel], "You're not on that channel");
                }
                let shown = format!("#{group}");
                let line = self.part_line(&shown, reason);
                self.announce(&group, &line);
                let replies = self
                    .hub
                    .group(&self.nick, &GroupAction::Leave(group.clone()));
                self.world.left_channel(&group, &self.nick);
                self.joined_here.remove(&group);
                line + &self.problems(&replies)
            }
        }
    }

    /// JOIN 0: leaves every channel (the lanchat groups too).
    fn part_all(&mut self) -> String {
        let mut out = String::new();
        if self.enc.in_lobby() {
            out += &self.part_one(&self.world.lobby.clone(), None);
        }
        for (group, _, member) in self.hub.groups_with(&self.nick) {
            if member {
                out += &self.part_one(&format!("#{group}"), None);
            }
        }
        out
    }

    fn topic(&mut self, m: &Message) -> String {
        let r = self.replies();
        let Some(channel) = m.param(0) else {
            return r.num(ERR_NEEDMOREPARAMS, &["TOPIC"], "Not enough parameters");
        };
        let Some(group) = self.resolve(channel) else {
            return r.num(ERR_NOSUCHCHANNEL, &[channel], "No such channel");
        };
        let shown = match &group {
            Some(g) => format!("#{g}"),
            None => self.world.lobby.clone(),
        };
        let Some(text) = m.param(1) else {
            return self.topic_lines(&shown, group.as_deref(), true);
        };
        let Some(group) = group else {
            return r.num(
                ERR_CHANOPRIVSNEEDED,
                &[&shown],
                "You're not channel operator",
            );
        };
        if !self.is_member(&group) {
            return r.num(ERR_NOTONCHANNEL, &[&shown], "You're not on that channel");
        }
        let meta = self.world.channel(&group);
        if !meta.open_topic && !meta.ops.contains(&self.nick) {
            return r.num(
                ERR_CHANOPRIVSNEEDED,
                &[&shown],
                "You're not channel operator",
            );
        }
        let text = sanitize_text(super::message::truncate(text, 390));
        let me = self.nick.clone();
        self.world.update_channel(&group, |c| {
            c.topic = (!text.is_empty()).then(|| (text.clone(), me.clone(), unix_now()));
        });
        let line = format(None, Some(&self.my_mask()), "TOPIC", &[&shown, &text], true);
        self.announce(&group, &line);
        line
    }

    fn names(&mut self, m: &Message) -> String {
        let r = self.replies();
        let mut out = String::new();
        let Some(list) = m.param(0).filter(|l| !l.is_empty()) else {
            if self.enc.in_lobby() {
                out += &self.names_lines(&self.world.lobby, None);
            }
            for (group, _, member) in self.hub.groups_with(&self.nick) {
                if member {
                    out += &self.names_lines(&format!("#{group}"), Some(&group));
                }
            }
            return out + &r.num(RPL_ENDOFNAMES, &["*"], "End of /NAMES list");
        };
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            match self.resolve(channel) {
                Some(None) => out += &self.names_lines(&self.world.lobby, None),
                Some(Some(g)) => out += &self.names_lines(&format!("#{g}"), Some(&g)),
                None => {}
            }
        }
        out + &r.num(RPL_ENDOFNAMES, &[list], "End of /NAMES list")
    }

    /// `(username, host, realname, away)` of an online user.
    fn who_is(&self, name: &str, status: Status, intro: &str) -> (String, String, String, bool) {
        let away = status == Status::Busy;
        match self.world.details(name) {
            Some((user, host, real, _, _)) => (user, host, real, away),
            None => {
                let real = if intro.is_empty() { name } else { intro };
                (
                    name.to_string(),
                    self.server().to_string(),
                    real.to_string(),
                    away,
                )
            }
        }
    }

    fn who(&mut self, m: &Message) -> String {
        let r = self.replies();
        let mask = m.param(0).filter(|p| !p.is_empty()).unwrap_or("*");
        let visible = self.hub.visible_online(&self.nick).0;
        let (channel, people): (String, Vec<(String, Status, &str)>) = match self.resolve(mask) {
            Some(None) => (
                self.world.lobby.clone(),
                visible.iter().map(|(n, s)| (n.clone(), *s, "")).collect(),
            ),
            Some(Some(group)) => {
                let meta = self.world.channel(&group);
                let members = self.members_online(&group);
                let people = visible
                    .iter()
                    .filter(|(n, _)| members.contains(n))
                    .map(|(n, s)| (n.clone(), *s, prefix(&meta, n)))
                    .collect();
                (format!("#{group}"), people)
            }
            None if mask.starts_with('#') => (mask.to_string(), Vec::new()),
            None if mask == "*" || mask == "0" => (
                "*".to_string(),
                visible.iter().map(|(n, s)| (n.clone(), *s, "")).collect(),
            ),
            None => (
                "*".to_string(),
                visible
                    .iter()
                    .filter(|(n, _)| mask_match(mask, n))
                    .map(|(n, s)| (n.clone(), *s, ""))
                    .collect(),
            ),
        };
        let mut out = String::new();
        for (name, status, chan_prefix) in people {
            let (user, host, real, away) = self.who_is(&name, status, "");
            let flags = format!("{}{chan_prefix}", if away { "G" } else { "H" });
            out += &r.num(
                RPL_WHOREPLY,
                &[&channel, &user, &host, self.server(), &name, &flags],
                &format!("0 {real}"),
            );
        }
        out + &r.num(RPL_ENDOFWHO, &[mask], "End of WHO list")
    }

    fn whois(&mut self, m: &Message) -> String {
        let r = self.replies();
        let Some(target) = m.params.last().filter(|t| !t.is_empty()) else {
            return r.num(ERR_NONICKNAMEGIVEN, &[], "No nickname given");
        };
        let nick = target.split(',').next().unwrap_or("");
        let Some((name, status, intro)) = self.hub.find_online(&self.nick, nick) else {
            return r.num(ERR_NOSUCHNICK, &[nick], "No such nick/channel")
                + &r.num(RPL_ENDOFWHOIS, &[nick], "End of /WHOIS list");
        };
        let (user, host, real, away) = self.who_is(&name, status, &intro);
        let mut out = r.num(RPL_WHOISUSER, &[&name, &user, &host, "*"], &real);
        let mut channels = vec![self.world.lobby.clone()];
        for (group, _, member) in self.hub.groups_with(&name) {
            if member {
                let meta = self.world.channel(&group);
                channels.push(format!("{}#{group}", prefix(&meta, &name)));
            }
        }
        out += &r.num(RPL_WHOISCHANNELS, &[&name], &channels.join(" "));
        out += &r.num(RPL_WHOISSERVER, &[&name, self.server()], "lanchat");
        if away {
            out += &r.num(RPL_AWAY, &[&name], &self.away_text(&name));
        }
        if let Some((_, _, _, signon, idle)) = self.world.details(&name) {
            out += &r.num(
                RPL_WHOISIDLE,
                &[&name, &idle.to_string(), &signon.to_string()],
                "seconds idle, signon time",
            );
        }
        out + &r.num(RPL_ENDOFWHOIS, &[&name], "End of /WHOIS list")
    }

    fn ison(&mut self, m: &Message) -> String {
        let r = self.replies();
        if m.params.is_empty() {
            return r.num(ERR_NEEDMOREPARAMS, &["ISON"], "Not enough parameters");
        }
        let online: Vec<String> = m
            .params
            .iter()
            .flat_map(|p| p.split([' ', ',']))
            .filter(|n| !n.is_empty())
            .filter_map(|n| self.hub.find_online(&self.nick, n).map(|f| f.0))
            .collect();
        r.num(RPL_ISON, &[], &online.join(" "))
    }

    fn userhost(&mut self, m: &Message) -> String {
        let r = self.replies();
        if m.params.is_empty() {
            return r.num(ERR_NEEDMOREPARAMS, &["USERHOST"], "Not enough parameters");
        }
        let found: Vec<String> = m
            .params
            .iter()
            .flat_map(|p| p.split([' ', ',']))
            .filter(|n| !n.is_empty())
            .take(5)
            .filter_map(|n| self.hub.find_online(&self.nick, n))
            .map(|(name, status, intro)| {
                let (user, host, _, away) = self.who_is(&name, status, &intro);
                format!("{name}={}{user}@{host}", if away { '-' } else { '+' })
            })
            .collect();
        r.num(RPL_USERHOST, &[], &found.join(" "))
    }

    /// AWAY :text is lanchat's busy status (with the text for 301); AWAY alone is back.
    fn away(&mut self, m: &Message) -> String {
        let r = self.replies();
        let text = m
            .param(0)
            .filter(|t| !t.is_empty())
            .map(|t| sanitize_text(super::message::truncate(t, 200)));
        let me = self.nick.clone();
        let away = text.is_some();
        self.world.update(&me, self.conn.id, |u| u.away = text);
        if away {
            self.hub.status(&me, Some(Status::Busy));
            r.num(RPL_NOWAWAY, &[], "You have been marked as being away")
        } else {
            self.hub.status(&me, Some(Status::Available));
            r.num(RPL_UNAWAY, &[], "You are no longer marked as being away")
        }
    }

    fn motd(&self) -> String {
        let r = self.replies();
        if self.world.motd.is_empty() {
            return r.num(ERR_NOMOTD, &[], "MOTD File is missing");
        }
        let mut out = r.num(
            RPL_MOTDSTART,
            &[],
            &format!("- {} Message of the day - ", self.server()),
        );
        for line in &self.world.motd {
            out += &r.num(RPL_MOTD, &[], &format!("- {line}"));
        }
        out + &r.num(RPL_ENDOFMOTD, &[], "End of /MOTD command.")
    }

    /// 251, 252, 254, 255, 265, 266. `registering`: this user is not online yet.
    fn lusers(&self, registering: bool) -> String {
        self.lusers_of(&self.hub.visible_online(&self.nick), registering)
    }

    /// [`Session::lusers`] for the users `visible_online` gave.
    fn lusers_of(&self, (visible, total): &Online, registering: bool) -> String {
        let r = self.replies();
        let (visible, total) = (visible, *total);
        let me = usize::from(registering);
        let (visible, total) = (visible.len() + me, total + me);
        let invisible = total.saturating_sub(visible);
        let max = self.world.note_users(total);
        let channels = self.hub.groups_with("").len() + 1;
        let (t, mx) = (total.to_string(), max.to_string());
        r.num(
            RPL_LUSERCLIENT,
            &[],
            &format!("There are {visible} users and {invisible} invisible on 1 servers"),
        ) + &r.num(RPL_LUSEROP, &["0"], "operator(s) online")
            + &r.num(
                RPL_LUSERCHANNELS,
                &[&channels.to_string()],
                "channels formed",
            )
            + &r.num(
                RPL_LUSERME,
                &[],
                &format!("I have {total} clients and 0 servers"),
            )
            + &r.num(
                RPL_LOCALUSERS,
                &[&t, &mx],
                &format!("Current local users {total}, max {max}"),
            )
            + &r.num(
                RPL_GLOBALUSERS,
                &[&t, &mx],
                &format!("Current global users {total}, max {max}"),
            )
    }

    /// LIST, or `LIST #a,#b*`: only the channels matching one of the (masks of) names.
    fn list(&mut self, m: &Message) -> String {
        let r = self.replies();
        let masks: Vec<&str> = m
            .param(0)
            .map(|l| l.split(',').filter(|c| !c.is_empty()).collect())
            .unwrap_or_default();
        let wanted = |c: &str| masks.is_empty() || masks.iter().any(|mk| mask_match(mk, c));
        let mut out = r.num(RPL_LISTSTART, &["Channel"], "Users  Name");
        let everyone = self.hub.visible_online(&self.nick).0.len();
        if wanted(&self.world.lobby) {
            out += &r.num(
                RPL_LIST,
                &[&self.world.lobby, &everyone.to_string()],
                LOBBY_TOPIC,
            );
        }
        for (group, _, _) in self.hub.groups_with(&self.nick) {
            if !wanted(&format!("#{group}")) {
                continue;
            }
            let count = self.members_online(&group).len();
            let topic = self
                .world
                .channel(&group)
                .topic
                .map(|t| t.0)
                .unwrap_or_default();
            out += &r.num(
                RPL_LIST,
                &[&format!("#{group}"), &count.to_string()],
                &topic,
            );
        }
        out + &r.num(RPL_LISTEND, &[], "End of /LIST")
    }

    fn mode(&mut self, m: &Message) -> String {
        let r = self.replies();
        let Some(target) = m.param(0) else {
            return r.num(ERR_NEEDMOREPARAMS, &["MODE"], "Not enough parameters");
        };
        if !target.starts_with('#') {
            return self.user_mode(target, m.param(1));
        }
        let Some(group) = self.resolve(target) else {
            return r.num(ERR_NOSUCHCHANNEL, &[target], "No such channel");
        };
        let shown = match &group {
            Some(g) => format!("#{g}"),
            None => self.world.lobby.clone(),
        };
        let Some(modes) = m.param(1).filter(|s| !s.is_empty()) else {
            let (created, modes) = match &group {
                Some(g) => {
                    let meta = self.world.channel(g);
                    (meta.created, channel_modes(&meta))
                }
                None => (self.world.started, "+nt"),
            };
            return r.num_bare(RPL_CHANNELMODEIS, &[&shown, modes])
                + &r.num_bare(RPL_CREATIONTIME, &[&shown, &created.to_string()]);
        };
        // List queries (bans, exceptions, invite exceptions): always empty here.
        let letters = modes.trim_start_matches('+');
        if m.params.len() == 2 && letters.len() == 1 {
            match letters {
                "b" => return r.num(RPL_BANLIST_END, &[&shown], "End of channel ban list"),
                "e" => {
                    return r.num(
                        RPL_EXCEPTLIST_END,
                        &[&shown],
                        "End of channel exception list",
                    )
                }
                "I" => return r.num(RPL_INVITELIST_END, &[&shown], "End of channel invite list"),
                _ => {}
            }
        }
        let Some(group) = group.filter(|g| self.world.channel(g).ops.contains(&self.nick)) else {
            return r.num(
                ERR_CHANOPRIVSNEEDED,
                &[&shown],
                "You're not channel operator",
            );
        };
        let members = self.members_online(&group);
        let mut args = m.params.iter().skip(2);
        let mut adding = true;
        let mut out = String::new();
        let mut applied: Vec<(char, String)> = Vec::new();
        for c in modes.chars() {
            match c {
                '+' => adding = true,
                '-' => adding = false,
                'o' | 'v' => {
                    let Some(who) = args.next() else {
                        out += &r.num(ERR_NEEDMOREPARAMS, &["MODE"], "Not enough parameters");
                        continue;
                    };
                    let Some(who) = members.iter().find(|n| same_name(n, who)).cloned() else {
                        if self.hub.find_online(&self.nick, who).is_none() {
                            out += &r.num(ERR_NOSUCHNICK, &[who], "No such nick/channel");
                            continue;
                        }
                        out += &r.num(
                            ERR_USERNOTINCHANNEL,
                            &[who, &shown],
                            "They aren't on that channel",
                        );
                        continue;
                    };
                    self.world.update_channel(&group, |meta| {
                        let set = if c == 'o' {
                            &mut meta.ops
                        } else {
                            &mut meta.voices
                        };
                        if adding {
                            set.insert(who.clone());
                        } else {
                            set.remove(&who);
                        }
                    });
                    applied.push((if adding { '+' } else { '-' }, format!("{c} {who}")));
                }
                't' => {
                    let open = !adding;
                    if self.world.channel(&group).open_topic != open {
                        self.world
                            .update_channel(&group, |meta| meta.open_topic = open);
                        applied.push((if adding { '+' } else { '-' }, "t".to_string()));
                    }
                }
                'n' => {}
                other => {
                    out += &r.num(
                        ERR_UNKNOWNMODE,
                        &[&other.to_string()],
                        "is unknown mode char to me",
                    );
                }
            }
        }
        for (sign, change) in applied {
            let (letter, who) = change.split_once(' ').unwrap_or((&change, ""));
            let flag = format!("{sign}{letter}");
            let params: Vec<&str> = [shown.as_str(), &flag, who]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            let line = format(None, Some(&self.my_mask()), "MODE", &params, false);
            self.announce(&group, &line);
            out += &line;
        }
        out
    }

    /// KICK #chan nick[,nick...] [:reason] (or #a,#b with as many nicks): an operator
    /// takes members out of the lanchat group; every IRC member sees the KICK.
    fn kick(&mut self, m: &Message) -> String {
        let r = self.replies();
        let (Some(channels), Some(nicks)) = (
            m.param(0).filter(|c| !c.is_empty()),
            m.param(1).filter(|n| !n.is_empty()),
        ) else {
            return r.num(ERR_NEEDMOREPARAMS, &["KICK"], "Not enough parameters");
        };
        let reason = m
            .param(2)
            .filter(|t| !t.is_empty())
            .map(|t| sanitize_text(super::message::truncate(t, 390)));
        kick_pairs(channels, nicks, KICK_TARGETS)
            .into_iter()
            .map(|(channel, nick)| self.kick_one(channel, nick, reason.as_deref()))
            .collect()
    }

    fn kick_one(&mut self, channel: &str, nick: &str, reason: Option<&str>) -> String {
        let r = self.replies();
        let Some(group) = self.resolve(channel) else {
            return r.num(ERR_NOSUCHCHANNEL, &[channel], "No such channel");
        };
        // The lobby is everyone online: nobody is its operator.
        let Some(group) = group else {
            let lobby = self.world.lobby.clone();
            return if self.enc.in_lobby() {
                r.num(
                    ERR_CHANOPRIVSNEEDED,
                    &[&lobby],
                    "You're not channel operator",
                )
            } else {
                r.num(ERR_NOTONCHANNEL, &[&lobby], "You're not on that channel")
            };
        };
        let shown = format!("#{group}");
        let members = self.members(&group);
        if !members.contains(&self.nick) {
            return r.num(ERR_NOTONCHANNEL, &[&shown], "You're not on that channel");
        }
        if !self.world.channel(&group).ops.contains(&self.nick) {
            return r.num(
                ERR_CHANOPRIVSNEEDED,
                &[&shown],
                "You're not channel operator",
            );
        }
        let found = members
            .iter()
            .find(|n| n.as_str() == nick)
            .or_else(|| members.iter().find(|n| same_name(n, nick)));
        let Some(target) = found.cloned() else {
            if self.hub.find_online(&self.nick, nick).is_none() {
                return r.num(ERR_NOSUCHNICK, &[nick], "No such nick/channel");
            }
            return r.num(
                ERR_USERNOTINCHANNEL,
                &[nick, &shown],
                "They aren't on that channel",
            );
        };
        let me = self.nick.clone();
        let reason = reason.unwrap_or(&me);
        let line = format(
            None,
            Some(&self.my_mask()),
            "KICK",
            &[&shown, &target, reason],
            true,
        );
        // Every IRC member, the target included, while the target is still a member.
        for conn in self.world.conns_of(&members, &me) {
            conn.send_bytes(line.as_bytes());
        }
        self.hub.group_remove_member(&group, &target);
        self.world.left_channel(&group, &target);
        let on_irc = !self.world.conns_of([&target], "").is_empty();
        if !on_irc && target != me {
            self.hub.tell(
                &target,
                &Line::info(
                    "group-kicked",
                    format!("{me} removed you from group {group}: {reason}"),
                ),
            );
        }
        line
    }

    /// INVITE nick #chan: a member tells someone online about a group (natives get an
    /// INFO line naming the `group join` to use); nothing is remembered, as there is no +i.
    fn invite(&mut self, m: &Message) -> String {
        let r = self.replies();
        let (Some(nick), Some(channel)) = (
            m.param(0).filter(|n| !n.is_empty()),
            m.param(1).filter(|c| !c.is_empty()),
        ) else {
            return r.num(ERR_NEEDMOREPARAMS, &["INVITE"], "Not enough parameters");
        };
        let Some((target, _, _)) = self.hub.find_online(&self.nick, nick) else {
            return r.num(ERR_NOSUCHNICK, &[nick], "No such nick/channel");
        };
        let Some(group) = self.resolve(channel) else {
            return r.num(ERR_NOSUCHCHANNEL, &[channel], "No such channel");
        };
        let Some(group) = group else {
            // Everyone online is in the lobby already.
            let lobby = self.world.lobby.clone();
            return if self.enc.in_lobby() {
                r.num(
                    ERR_USERONCHANNEL,
                    &[&target, &lobby],
                    "is already on channel",
                )
            } else {
                r.num(ERR_NOTONCHANNEL, &[&lobby], "You're not on that channel")
            };
        };
        let shown = format!("#{group}");
        let members = self.members(&group);
        if !members.contains(&self.nick) {
            return r.num(ERR_NOTONCHANNEL, &[&shown], "You're not on that channel");
        }
        if members.contains(&target) {
            return r.num(
                ERR_USERONCHANNEL,
                &[&target, &shown],
                "is already on channel",
            );
        }
        let line = format(
            None,
            Some(&self.my_mask()),
            "INVITE",
            &[&target, &shown],
            false,
        );
        let irc = self.world.conns_of([&target], "");
        if irc.is_empty() {
            let me = &self.nick;
            self.hub.tell(
                &target,
                &Line::info(
                    "group-invited",
                    format!("{me} invites you to group {group}; 'group join {group}' joins it."),
                ),
            );
        }
        for conn in irc {
            conn.send_bytes(line.as_bytes());
        }
        r.num_bare(RPL_INVITING, &[&target, &shown])
    }

    fn user_mode(&self, target: &str, modes: Option<&str>) -> String {
        let r = self.replies();
        if !same_name(target, &self.nick) {
            return match self.hub.find_online(&self.nick, target) {
                Some(_) => r.num(ERR_USERSDONTMATCH, &[], "Can't change mode for other users"),
                None => r.num(ERR_NOSUCHNICK, &[target], "No such nick/channel"),
            };
        }
        match modes {
            None => r.num_bare(RPL_UMODEIS, &["+"]),
            Some(ms) if ms.chars().all(|c| "+-iw".contains(c)) => String::new(),
            Some(_) => r.num(ERR_UMODEUNKNOWNFLAG, &[], "Unknown MODE flag"),
        }
    }
}

/// How many nicks one KICK may name (TARGMAX); more are dropped silently.
const KICK_TARGETS: usize = 4;

/// The (channel, nick) pairs of `KICK chans nicks`: one channel for every nick, or the
/// lists paired in order; empty items are skipped, at most `max` pairs.
fn kick_pairs<'a>(channels: &'a str, nicks: &'a str, max: usize) -> Vec<(&'a str, &'a str)> {
    let chans: Vec<&str> = channels.split(',').filter(|c| !c.is_empty()).collect();
    let nicks = nicks.split(',').filter(|n| !n.is_empty());
    match chans.as_slice() {
        [one] => nicks.map(|n| (*one, n)).take(max).collect(),
        _ => chans.into_iter().zip(nicks).take(max).collect(),
    }
}

/// The channel's modes as 324 shows them: `n` always (only members speak), `t` unless
/// an operator opened the topic.
fn channel_modes(meta: &ChannelMeta) -> &'static str {
    if meta.open_topic {
        "+n"
    } else {
        "+nt"
    }
}

/// A `USER` username fit for a mask: no spaces, `!`, `@` or characters that
/// [`sanitize_text`] would escape (controls, bidi overrides, invisible ones), at most 32
/// bytes; the nick if nothing is left.
fn clean_username(username: &str, nick: &str) -> String {
    let clean: String = username
        .chars()
        .filter(|&c| !is_unsafe_char(c) && !matches!(c, ' ' | '!' | '@' | ':'))
        .collect();
    let clean = super::message::truncate(&clean, 32);
    if clean.is_empty() {
        nick.to_string()
    } else {
        clean.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_pairs_one_channel_with_each_nick_or_lists_in_order() {
        assert_eq!(
            kick_pairs("#c", "a,b,,c", 4),
            vec![("#c", "a"), ("#c", "b"), ("#c", "c")]
        );
        assert_eq!(
            kick_pairs("#c,#d", "a,b", 4),
            vec![("#c", "a"), ("#d", "b")]
        );
        assert_eq!(kick_pairs("#c,#d", "a", 4), vec![("#c", "a")]);
        assert_eq!(kick_pairs("#c", "a,b,c,d,e", 4).len(), 4);
        assert!(kick_pairs(",", "a", 4).is_empty());
    }
}
