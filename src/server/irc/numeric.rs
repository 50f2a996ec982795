//! The numeric replies this door sends, named as in RFC 2812 and the modern IRC
//! documentation, and [`Replies`], which writes them with the right source and client.

use super::message::format;
use crate::protocol::sanitize;
use std::borrow::Cow;

pub const RPL_WELCOME: &str = "001";
pub const RPL_YOURHOST: &str = "002";
pub const RPL_CREATED: &str = "003";
pub const RPL_MYINFO: &str = "004";
pub const RPL_ISUPPORT: &str = "005";
pub const RPL_UMODEIS: &str = "221";
pub const RPL_LUSERCLIENT: &str = "251";
pub const RPL_LUSEROP: &str = "252";
pub const RPL_LUSERCHANNELS: &str = "254";
pub const RPL_LUSERME: &str = "255";
pub const RPL_LOCALUSERS: &str = "265";
pub const RPL_GLOBALUSERS: &str = "266";
pub const RPL_AWAY: &str = "301";
pub const RPL_USERHOST: &str = "302";
pub const RPL_ISON: &str = "303";
pub const RPL_UNAWAY: &str = "305";
pub const RPL_NOWAWAY: &str = "306";
pub const RPL_WHOISUSER: &str = "311";
pub const RPL_WHOISSERVER: &str = "312";
pub const RPL_ENDOFWHO: &str = "315";
pub const RPL_WHOISIDLE: &str = "317";
pub const RPL_ENDOFWHOIS: &str = "318";
pub const RPL_WHOISCHANNELS: &str = "319";
pub const RPL_LISTSTART: &str = "321";
pub const RPL_LIST: &str = "322";
pub const RPL_LISTEND: &str = "323";
pub const RPL_CHANNELMODEIS: &str = "324";
pub const RPL_CREATIONTIME: &str = "329";
pub const RPL_NOTOPIC: &str = "331";
pub const RPL_TOPIC: &str = "332";
pub const RPL_TOPICWHOTIME: &str = "333";
pub const RPL_INVITING: &str = "341";
pub const RPL_WHOREPLY: &str = "352";
pub const RPL_NAMREPLY: &str = "353";
pub const RPL_ENDOFNAMES: &str = "366";
pub const RPL_BANLIST_END: &str = "368";
pub const RPL_EXCEPTLIST_END: &str = "349";
pub const RPL_INVITELIST_END: &str = "347";
pub const RPL_MOTD: &str = "372";
pub const RPL_MOTDSTART: &str = "375";
pub const RPL_ENDOFMOTD: &str = "376";
pub const ERR_NOSUCHNICK: &str = "401";
pub const ERR_NOSUCHCHANNEL: &str = "403";
pub const ERR_CANNOTSENDTOCHAN: &str = "404";
pub const ERR_NORECIPIENT: &str = "411";
pub const ERR_NOTEXTTOSEND: &str = "412";
pub const ERR_INPUTTOOLONG: &str = "417";
pub const ERR_UNKNOWNCOMMAND: &str = "421";
pub const ERR_NOMOTD: &str = "422";
pub const ERR_NONICKNAMEGIVEN: &str = "431";
pub const ERR_ERRONEUSNICKNAME: &str = "432";
pub const ERR_NICKNAMEINUSE: &str = "433";
pub const ERR_USERNOTINCHANNEL: &str = "441";
pub const ERR_NOTONCHANNEL: &str = "442";
pub const ERR_USERONCHANNEL: &str = "443";
pub const ERR_NONICKCHANGE: &str = "447";
pub const ERR_NOTREGISTERED: &str = "451";
pub const ERR_NEEDMOREPARAMS: &str = "461";
pub const ERR_ALREADYREGISTRED: &str = "462";
pub const ERR_PASSWDMISMATCH: &str = "464";
pub const ERR_UNKNOWNMODE: &str = "472";
pub const ERR_CHANOPRIVSNEEDED: &str = "482";
pub const ERR_UMODEUNKNOWNFLAG: &str = "501";
pub const ERR_USERSDONTMATCH: &str = "502";
pub const ERR_TARGUMODEG: &str = "716";

/// Writes numerics and server notices for one client: source = the server's name, first
/// parameter = the client's nick (`*` before it has one).
///
/// Numerics echo what a client sent (a channel or nick that does not exist, a WHO mask) and
/// show what other users set (realnames, away texts, topics), so every parameter goes
/// through [`sanitize`]: stored fields were escaped when they came in, and an echo of this
/// client's own line must not drive its terminal either.
pub struct Replies<'a> {
    /// The server's name (`server_name`).
    pub server: &'a str,
    /// The client's nick, or `*`.
    pub nick: &'a str,
}

/// `first` and then `rest`, each escaped by [`sanitize`].
fn escaped<'a>(first: &'a str, rest: &[&'a str]) -> Vec<Cow<'a, str>> {
    std::iter::once(first)
        .chain(rest.iter().copied())
        .map(sanitize)
        .collect()
}

/// Formats with every parameter escaped.
fn line(server: &str, command: &str, params: &[Cow<'_, str>], trailing: bool) -> String {
    let params: Vec<&str> = params.iter().map(|p| p.as_ref()).collect();
    format(None, Some(server), command, &params, trailing)
}

impl Replies<'_> {
    /// `:server CODE nick middle... :text`
    pub fn num(&self, code: &str, middle: &[&str], text: &str) -> String {
        let mut params = escaped(self.nick, middle);
        params.push(sanitize(text));
        line(self.server, code, &params, true)
    }

    /// `:server CODE nick middle...` with no text (the last parameter is a value, such as
    /// 324's modes or 303's nick list, written as trailing only when it must be).
    pub fn num_bare(&self, code: &str, middle: &[&str]) -> String {
        line(self.server, code, &escaped(self.nick, middle), false)
    }

    /// `:server NOTICE nick :text`
    pub fn notice(&self, text: &str) -> String {
        line(self.server, "NOTICE", &escaped(self.nick, &[text]), true)
    }

    /// `ERROR :text`, the last line before the server closes the connection.
    pub fn error(&self, text: &str) -> String {
        format(None, None, "ERROR", &[&sanitize(text)], true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_carry_the_client_first() {
        let r = Replies {
            server: "irc.test",
            nick: "al",
        };
        assert_eq!(
            r.num(ERR_NOSUCHNICK, &["bob"], "No such nick/channel"),
            ":irc.test 401 al bob :No such nick/channel\r\n"
        );
        assert_eq!(
            r.num_bare(RPL_CHANNELMODEIS, &["#c", "+nt"]),
            ":irc.test 324 al #c +nt\r\n"
        );
        assert_eq!(r.num_bare(RPL_ISON, &[""]), ":irc.test 303 al :\r\n");
        assert_eq!(r.error("bye now"), "ERROR :bye now\r\n");
        // What a client sent comes back escaped.
        assert_eq!(
            r.num(ERR_NOSUCHCHANNEL, &["#a\x1b[2Jb"], "No such channel"),
            ":irc.test 403 al #a\\x1b[2Jb :No such channel\r\n"
        );
        assert_eq!(
            r.num(
                RPL_WHOISUSER,
                &["bob", "b", "h", "*"],
                "\x01ACTION\x07 \u{202e}x"
            ),
            ":irc.test 311 al bob b h * :\\x01ACTION\\x07 \\u{202e}x\r\n"
        );
        assert_eq!(
            r.error("Closing Link: a\x1bb (Bad)"),
            "ERROR :Closing Link: a\\x1bb (Bad)\r\n"
        );
        let star = Replies {
            server: "irc.test",
            nick: "*",
        };
        assert_eq!(
            star.num(ERR_NOTREGISTERED, &[], "You have not registered"),
            ":irc.test 451 * :You have not registered\r\n"
        );
    }
}
