//! Registration (CAP, PASS, NICK, USER on the hub's login rules, then the welcome burst) and
//! what a registered client may still change about itself: capabilities, its nick, PING.

use super::{Exit, NickCheck, Registration, Session, CAPS, VERSION};
use crate::clock::Deadline;
use crate::config::AuthMode;
use crate::protocol::{is_unsafe_char, sanitize_text, valid_username, GroupAction};
use crate::server::hub::{LogoutReason, NameCheck, PasswordCheck};
use crate::server::irc::message::{format, parse, same_name, Message};
use crate::server::irc::numeric::*;
use crate::server::irc::world::{unix_now, IrcUser};
use crate::server::policy::{Expiry, SessionLimits, Timers};
use crate::server::reader::{Input, ReadLines};
use crate::server::render;
use crate::server::rules::Refusal;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Session<'_> {
    /// Reads lines until the client is registered (when, on the server's monotonic clock)
    /// or gone (`None`).
    pub(super) fn register(&mut self) -> Option<Instant> {
        let ticks = self.ctx.ticks;
        let timers = Timers::new(SessionLimits::of(self.hub.config()), self.ctx.connected);
        let mut pass: Option<String> = None;
        let mut nick: Option<String> = None;
        let mut user: Option<(String, String)> = None;
        loop {
            let deadline = Deadline::new(ticks, timers.deadline());
            let line = match self.reader.next_line(self.conn, deadline) {
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
                    if timers.expired(ticks.now()) == Some(Expiry::Login) {
                        self.send(
                            &self
                                .replies()
                                .error("Closing Link: * (Registration timed out)"),
                        );
                        return None;
                    }
                    continue;
                }
                Input::Closed => return None,
            };
            if self.ctx.shutting_down.load(Ordering::Acquire) {
                return None;
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
                            return None;
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
                        let realname =
                            sanitize_text(crate::server::irc::message::truncate(realname, 200));
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
                    return None;
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
                Registration::Done(at) => return Some(at),
                Registration::Retry => nick = None,
                Registration::Close => return None,
            }
        }
    }

    /// Whether `nick` may be taken as a lanchat name now (`current`: the nick it replaces).
    pub(super) fn check_nick(&self, nick: &str, current: &str) -> NickCheck {
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
            NameCheck::Retry(Refusal::AlreadyOnline(_)) => {
                return NickCheck::Reply(r.num(
                    ERR_NICKNAMEINUSE,
                    &[nick],
                    "Nickname is already in use",
                ));
            }
            NameCheck::Retry(why) => {
                let text = format!("Erroneous nickname: {}", said(why));
                return NickCheck::Reply(r.num(ERR_ERRONEUSNICKNAME, &[nick], &text));
            }
            NameCheck::Close(why) => return NickCheck::Close(said(why)),
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
    pub(super) fn try_register(
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
                NameCheck::Retry(why) => {
                    self.send(&r.num(ERR_ERRONEUSNICKNAME, &[nick], &said(why)));
                    return Registration::Retry;
                }
                NameCheck::Close(why) => {
                    self.send(&closing(&said(why)));
                    return Registration::Close;
                }
            }
            match self.hub.check_password(nick, pass, self.ip()) {
                PasswordCheck::Ok => {}
                PasswordCheck::Retry(why) | PasswordCheck::Close(why) => {
                    self.send(
                        &(r.num(ERR_PASSWDMISMATCH, &[], "Password incorrect")
                            + &closing(&said(why))),
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
        // Read before the welcome goes out: whatever the client does once it has read it (a
        // test moving the clock too) comes after the idle clock started.
        let registered_at = self.ctx.ticks.now();
        if let Err(why) = self.hub.login(nick, self.conn) {
            self.world.unregister(nick, self.conn.id);
            self.enc.set_welcome(None);
            self.enc.set_nick("");
            self.nick.clear();
            let text = said(why.clone());
            log::info!("IRC login of {nick} refused: {text}");
            let reply = match why {
                Refusal::AlreadyOnline(_) => {
                    self.replies()
                        .num(ERR_NICKNAMEINUSE, &[nick], "Nickname is already in use")
                }
                // A bound of the data directory (`user-limit`, `storage-full`): the text
                // says which, and that a nick used before still works.
                _ => self.replies().num(ERR_ERRONEUSNICKNAME, &[nick], &text),
            };
            self.send(&reply);
            return Registration::Retry;
        }
        self.world.note_users(self.hub.online_count());
        self.rejoin_channels(&BTreeSet::new());
        Registration::Done(registered_at)
    }

    /// 001-005, LUSERS, the MOTD, then the lobby's JOIN, topic and NAMES.
    pub(super) fn welcome_burst(&self, username: &str) -> String {
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
    pub(super) fn rejoin_channels(&self, known: &BTreeSet<String>) {
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

    pub(super) fn pong(&self, m: &Message) -> String {
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
    pub(super) fn cap(&mut self, m: &Message, registered: bool) -> String {
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
    pub(super) fn nick_change(&mut self, m: &Message) -> Option<Exit> {
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
}

/// A `USER` username fit for a mask: no spaces, `!`, `@` or characters that
/// [`sanitize_text`] would escape (controls, bidi overrides, invisible ones), at most 32
/// bytes; the nick if nothing is left.
fn clean_username(username: &str, nick: &str) -> String {
    let clean: String = username
        .chars()
        .filter(|&c| !is_unsafe_char(c) && !matches!(c, ' ' | '!' | '@' | ':'))
        .collect();
    let clean = crate::server::irc::message::truncate(&clean, 32);
    if clean.is_empty() {
        nick.to_string()
    } else {
        clean.to_string()
    }
}

/// What a refused login says, in the words the native door uses (the numeric is the IRC
/// door's own).
fn said(why: Refusal) -> String {
    render::refusal(why).text
}
