//! PRIVMSG and NOTICE: to nicks, channels, the lobby, and the `*lanchat` service that runs
//! native commands.

use crate::protocol::{
    parse_command, sanitize_text, valid_username, Audience, Command, Line, Status,
};
use crate::server::irc::message::{same_name, Message};
use crate::server::irc::numeric::*;
use crate::server::irc::translate::SERVICE;
use crate::server::render;
use crate::server::rules::{ChatEvent, Refusal};
use crate::server::session::apply;
use ChatEvent::Refused;

use super::Session;

impl Session<'_> {
    /// PRIVMSG / NOTICE to nicks, channels, the lobby or the lanchat service.
    pub(super) fn privmsg(&mut self, m: &Message) -> String {
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

    pub(super) fn say_to(&mut self, target: &str, text: &str, notice: bool) -> String {
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
            let answer = self.hub.broadcast_as(&me, &Audience::Online, text, notice);
            return quiet(self.refusals(&answer));
        }
        if let Some(group) = target.strip_prefix('#') {
            if !valid_username(group) {
                return quiet(r.num(ERR_NOSUCHCHANNEL, &[target], "No such channel"));
            }
            // The exact name first (one hub call, as for a native `gsend`); a channel
            // named in another case is looked up only when that fails.
            let no_such_group =
                |a: &[ChatEvent]| matches!(a.first(), Some(Refused(Refusal::NoSuchGroup(_))));
            let mut answer = self.hub.group_send_as(&me, group, text, notice);
            if no_such_group(&answer) {
                if let Some((real, _)) = self.hub.group_view(&me, group) {
                    answer = self.hub.group_send_as(&me, &real, text, notice);
                }
            }
            return quiet(match answer.first() {
                Some(Refused(Refusal::NoSuchGroup(_))) => {
                    r.num(ERR_NOSUCHCHANNEL, &[target], "No such channel")
                }
                Some(Refused(Refusal::SendNotMember(_))) => r.num(
                    ERR_CANNOTSENDTOCHAN,
                    &[target],
                    "Cannot send to channel (join it first)",
                ),
                _ => self.refusals(&answer),
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
            match self.hub.talk_as(&me, text, notice) {
                Ok(()) => return String::new(),
                Err(Refusal::NoSession | Refusal::NotInSession(_)) => self.enc.clear_partner(),
                Err(_) => {
                    return quiet(r.num(ERR_NOSUCHNICK, &[&partner], "No such nick/channel"));
                }
            }
        }
        let mut to = target.to_string();
        let unknown = |r: &Refusal| matches!(r, Refusal::NoSuchUser(_) | Refusal::Typo(_));
        let mut answer = self.hub.message_as(&me, &to, text.to_string(), notice);
        if matches!(answer.first(), Some(Refused(why)) if unknown(why)) {
            if let Some((real, _, _)) = self.hub.find_online(&me, target).filter(|f| f.0 != target)
            {
                to = real;
                answer = self.hub.message_as(&me, &to, text.to_string(), notice);
            }
        }
        if notice {
            return String::new();
        }
        let mut out = String::new();
        for event in answer {
            out += &match event {
                ChatEvent::Sent(_) => String::new(),
                ChatEvent::Queued(_) => r.notice(&format!(
                    "{to} is not online; they will get your message when they log in."
                )),
                ChatEvent::Busy(_) => r.num(RPL_AWAY, &[&to], &self.away_text(&to)),
                Refused(why) if unknown(&why) => {
                    r.num(ERR_NOSUCHNICK, &[target], "No such nick/channel")
                }
                Refused(Refusal::MessageBlocked(_)) => r.num(
                    ERR_TARGUMODEG,
                    &[&to],
                    "has blocked you; your message was not delivered",
                ),
                other => r.notice(&render::line(other).text),
            };
        }
        out
    }

    /// The refusals in a hub answer, as server notices (the rest says nothing).
    pub(super) fn refusals(&self, answer: &[ChatEvent]) -> String {
        answer
            .iter()
            .filter_map(|e| match e {
                Refused(why) => Some(render::refusal(why.clone())),
                _ => None,
            })
            .map(|l| self.replies().notice(&format!("error: {}", l.text)))
            .collect()
    }

    pub(super) fn away_text(&self, name: &str) -> String {
        self.world
            .away(name)
            .unwrap_or_else(|| "is busy".to_string())
    }

    /// `/msg *lanchat COMMAND`: any native command; replies come back as notices.
    pub(super) fn service(&mut self, text: &str) -> String {
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
    pub(super) fn announce(&self, group: &str, line: &str) {
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
}
