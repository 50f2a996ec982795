//! Channels as lanchat groups: JOIN, PART, TOPIC and NAMES, and the lines a client gets on
//! joining.

use super::{Session, VisibleOnline, LOBBY_TOPIC};
use crate::protocol::{sanitize_text, valid_username, GroupAction};
use crate::server::irc::message::{format, Message, MAX_LINE};
use crate::server::irc::numeric::*;
use crate::server::irc::world::{prefix, unix_now};
use crate::server::rules::{ChatEvent::Refused, Refusal};
use std::collections::BTreeSet;

impl Session<'_> {
    /// The JOIN, topic and NAMES a client gets on joining `channel` (`group`: its lanchat
    /// group; `None` for the lobby).
    pub(super) fn joined(&self, channel: &str, group: Option<&str>) -> String {
        self.joined_with(channel, group, None)
    }

    /// [`Session::joined`], given the lobby's users if they were just read.
    pub(super) fn joined_with(
        &self,
        channel: &str,
        group: Option<&str>,
        online: Option<VisibleOnline>,
    ) -> String {
        let mut out = format(None, Some(&self.my_mask()), "JOIN", &[channel], false);
        out += &self.topic_lines(channel, group, false);
        out += &self.names_lines_with(channel, group, online);
        out += &self
            .replies()
            .num(RPL_ENDOFNAMES, &[channel], "End of /NAMES list");
        out
    }

    /// 332 (+333), or 331 when `always` and there is no topic.
    pub(super) fn topic_lines(&self, channel: &str, group: Option<&str>, always: bool) -> String {
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
    pub(super) fn names_lines(&self, channel: &str, group: Option<&str>) -> String {
        self.names_lines_with(channel, group, None)
    }

    /// [`Session::names_lines`], given the lobby's users if they were just read.
    pub(super) fn names_lines_with(
        &self,
        channel: &str,
        group: Option<&str>,
        online: Option<VisibleOnline>,
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
    pub(super) fn members(&self, group: &str) -> Vec<String> {
        self.hub
            .group_view(&self.nick, group)
            .map(|(_, members)| members.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default()
    }

    /// The members of `group` online and visible to this user.
    pub(super) fn members_online(&self, group: &str) -> Vec<String> {
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
    pub(super) fn resolve(&self, channel: &str) -> Option<Option<String>> {
        if self.world.is_lobby(channel) {
            return Some(None);
        }
        let group = channel.strip_prefix('#').filter(|g| valid_username(g))?;
        self.hub
            .group_view(&self.nick, group)
            .map(|(real, _)| Some(real))
    }

    pub(super) fn is_member(&self, group: &str) -> bool {
        self.hub
            .group_view(&self.nick, group)
            .is_some_and(|(_, m)| m.iter().any(|(n, _)| *n == self.nick))
    }

    pub(super) fn join(&mut self, m: &Message) -> String {
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

    pub(super) fn join_one(&mut self, channel: &str, retry: bool) -> String {
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
                let answer = self.hub.group_events(&me, &GroupAction::Join(real.clone()));
                if matches!(answer.first(), Some(Refused(_))) {
                    return self.refusals(&answer);
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
                let answer = self
                    .hub
                    .group_events(&me, &GroupAction::Create(name.to_string()));
                match answer.first() {
                    Some(Refused(Refusal::GroupExists(_))) if retry => {
                        return self.join_one(channel, false);
                    }
                    Some(Refused(_)) => return self.refusals(&answer),
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

    pub(super) fn part(&mut self, m: &Message) -> String {
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

    pub(super) fn part_line(&self, channel: &str, reason: Option<&str>) -> String {
        let mask = self.my_mask();
        match reason {
            Some(text) => format(None, Some(&mask), "PART", &[channel, text], true),
            None => format(None, Some(&mask), "PART", &[channel], false),
        }
    }

    pub(super) fn part_one(&mut self, channel: &str, reason: Option<&str>) -> String {
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
                let answer = self
                    .hub
                    .group_events(&self.nick, &GroupAction::Leave(group.clone()));
                self.world.left_channel(&group, &self.nick);
                self.joined_here.remove(&group);
                line + &self.refusals(&answer)
            }
        }
    }

    /// JOIN 0: leaves every channel (the lanchat groups too).
    pub(super) fn part_all(&mut self) -> String {
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

    pub(super) fn topic(&mut self, m: &Message) -> String {
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
        let text = sanitize_text(crate::server::irc::message::truncate(text, 390));
        let me = self.nick.clone();
        self.world.update_channel(&group, |c| {
            c.topic = (!text.is_empty()).then(|| (text.clone(), me.clone(), unix_now()));
        });
        let line = format(None, Some(&self.my_mask()), "TOPIC", &[&shown, &text], true);
        self.announce(&group, &line);
        line
    }

    pub(super) fn names(&mut self, m: &Message) -> String {
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
}
