//! What channel operators and users set: MODE, KICK and INVITE.

use crate::protocol::{sanitize_text, Line};
use crate::server::irc::message::{format, same_name, Message};
use crate::server::irc::numeric::*;
use crate::server::irc::world::ChannelMeta;

use super::Session;

impl Session<'_> {
    pub(super) fn mode(&mut self, m: &Message) -> String {
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
    pub(super) fn kick(&mut self, m: &Message) -> String {
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
            .map(|t| sanitize_text(crate::server::irc::message::truncate(t, 390)));
        kick_pairs(channels, nicks, KICK_TARGETS)
            .into_iter()
            .map(|(channel, nick)| self.kick_one(channel, nick, reason.as_deref()))
            .collect()
    }

    pub(super) fn kick_one(&mut self, channel: &str, nick: &str, reason: Option<&str>) -> String {
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
    pub(super) fn invite(&mut self, m: &Message) -> String {
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

    pub(super) fn user_mode(&self, target: &str, modes: Option<&str>) -> String {
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
