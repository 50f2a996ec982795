//! Questions about users and the server: WHO, WHOIS, ISON, USERHOST, AWAY, MOTD, LUSERS and
//! LIST, answered with numerics.

use super::{Session, VisibleOnline, LOBBY_TOPIC};
use crate::protocol::{sanitize_text, Status};
use crate::server::irc::message::{mask_match, Message};
use crate::server::irc::numeric::*;
use crate::server::irc::world::prefix;

impl Session<'_> {
    /// `(username, host, realname, away)` of an online user.
    pub(super) fn who_is(
        &self,
        name: &str,
        status: Status,
        intro: &str,
    ) -> (String, String, String, bool) {
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

    pub(super) fn who(&mut self, m: &Message) -> String {
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

    pub(super) fn whois(&mut self, m: &Message) -> String {
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

    pub(super) fn ison(&mut self, m: &Message) -> String {
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

    pub(super) fn userhost(&mut self, m: &Message) -> String {
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
    pub(super) fn away(&mut self, m: &Message) -> String {
        let r = self.replies();
        let text = m
            .param(0)
            .filter(|t| !t.is_empty())
            .map(|t| sanitize_text(crate::server::irc::message::truncate(t, 200)));
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

    pub(super) fn motd(&self) -> String {
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
    pub(super) fn lusers(&self, registering: bool) -> String {
        self.lusers_of(&self.hub.visible_online(&self.nick), registering)
    }

    /// [`Session::lusers`] for the users `visible_online` gave.
    pub(super) fn lusers_of(&self, (visible, total): &VisibleOnline, registering: bool) -> String {
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
    pub(super) fn list(&mut self, m: &Message) -> String {
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
}
