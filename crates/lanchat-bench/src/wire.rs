//! What the load generator says and expects, per server dialect, as pure functions: the
//! login dialogue, the lines that send a message or a broadcast, and how to find a
//! benchmark payload (with its sequence number and send time) in a received line.
//!
//! Three dialects share one payload format, so every server is measured on the same
//! workload: lanchat's own protocol, IRC (ngircd, inspircd) and the bare relay baseline.

/// How a server is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// lanchat's line protocol (PROTOCOL.md): `message USER TEXT`, `broadcast TEXT`.
    Lanchat,
    /// IRC (RFC 1459/2812): `PRIVMSG nick :text`, a channel for broadcasts.
    Irc,
    /// The bare relay baseline ([`crate::baseline`]): `<to> <text>`, `* <text>`.
    Relay,
}

/// The IRC channel every simulated user joins for the fan-out scenarios.
pub const CHANNEL: &str = "#bench";

/// Where a login dialogue is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginState {
    /// Connected; nothing answered yet.
    Started,
    /// The username was sent.
    SentName,
    /// The password was sent.
    SentPassword,
    /// Username and password were sent on connecting, before the server asked (lanchat;
    /// as IRC clients send NICK and USER at once): the prompts need no answer.
    SentAll,
    /// Logged in: messages flow.
    Done,
    /// Refused or closed.
    Failed,
}

/// What to do with a line received during login.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this and keep waiting.
    Reply(String),
    /// Nothing to send; keep waiting.
    Wait,
    /// Logged in.
    Done,
    /// Refused; the line says why.
    Refused(String),
}

/// A simulated user's credentials.
#[derive(Clone, Debug)]
pub struct User {
    /// Username or nickname.
    pub name: String,
    /// Password (lanchat only).
    pub password: String,
}

impl User {
    /// User number `i` of a benchmark run: `u<i>` with password `pw<i>`.
    pub fn numbered(i: usize) -> User {
        User {
            name: format!("u{i}"),
            password: format!("pw{i}"),
        }
    }
}

/// What the client sends first, before the server says anything (IRC speaks first).
pub fn greeting(dialect: Dialect, user: &User) -> Option<String> {
    match dialect {
        // A scripted client (or `printf 'name\npw\n' | nc`) sends its whole login at once,
        // as IRC clients do: one round trip, like theirs (PROTOCOL.md 3.1); first of all,
        // that it wants the tagged lines, not the prose for people (PROTOCOL.md 1).
        Dialect::Lanchat => Some(format!(
            "protocol lanchat/1\n{}\n{}\n",
            user.name, user.password
        )),
        Dialect::Irc => Some(format!("NICK {0}\r\nUSER {0} 0 * :{0}\r\n", user.name)),
        Dialect::Relay => Some(format!("{}\n", user.name)),
    }
}

/// The state of a login once [`greeting`] is sent.
pub fn first_state(dialect: Dialect) -> LoginState {
    match dialect {
        Dialect::Lanchat => LoginState::SentAll,
        Dialect::Irc | Dialect::Relay => LoginState::Started,
    }
}

/// The next step of a login, given the state and a line from the server.
pub fn login_step(dialect: Dialect, state: LoginState, line: &str, user: &User) -> LoginStep {
    match dialect {
        Dialect::Lanchat => {
            let kind = line.split(' ').next().unwrap_or("");
            if state == LoginState::SentAll {
                // Every failure says ERR or BYE before asking again.
                return match kind {
                    "WELCOME" => LoginStep::Done,
                    "ERR" | "BYE" => LoginStep::Refused(line.to_string()),
                    _ => LoginStep::Wait,
                };
            }
            match kind {
                "ASK" if line.starts_with("ASK username") && state == LoginState::Started => {
                    LoginStep::Reply(format!("{}\n", user.name))
                }
                "ASK" if line.starts_with("ASK password") => {
                    LoginStep::Reply(format!("{}\n", user.password))
                }
                "WELCOME" => LoginStep::Done,
                "ERR" | "BYE" | "ASK" => LoginStep::Refused(line.to_string()),
                _ => LoginStep::Wait,
            }
        }
        Dialect::Irc => {
            if let Some(token) = irc_ping(line) {
                return LoginStep::Reply(format!("PONG :{token}\r\n"));
            }
            match irc_command(line) {
                "001" => LoginStep::Done,
                "ERROR" | "432" | "433" | "436" | "465" => LoginStep::Refused(line.to_string()),
                _ => LoginStep::Wait,
            }
        }
        Dialect::Relay => match line {
            "OK" => LoginStep::Done,
            _ => LoginStep::Refused(line.to_string()),
        },
    }
}

/// The state after a login step's reply was sent.
pub fn next_state(dialect: Dialect, state: LoginState, line: &str) -> LoginState {
    match (dialect, state) {
        (Dialect::Lanchat, LoginState::SentAll) => state,
        (Dialect::Lanchat, _) if line.starts_with("ASK password") => LoginState::SentPassword,
        (Dialect::Lanchat, LoginState::Started) if line.starts_with("ASK username") => {
            LoginState::SentName
        }
        (_, s) => s,
    }
}

/// Lines a logged-in user sends once to take part in broadcasts (IRC joins the channel).
pub fn join(dialect: Dialect) -> Option<String> {
    match dialect {
        Dialect::Irc => Some(format!("JOIN {CHANNEL}\r\n")),
        Dialect::Lanchat | Dialect::Relay => None,
    }
}

/// Whether a line confirms a [`join`] (IRC: the end of [`CHANNEL`]'s NAMES list, numeric
/// 366; not another channel's, such as the lobby lanchat's IRC door joins at registration).
pub fn joined(dialect: Dialect, line: &str) -> bool {
    dialect == Dialect::Irc && irc_command(line) == "366" && line.split(' ').nth(3) == Some(CHANNEL)
}

/// A private message to `to`.
pub fn message(dialect: Dialect, to: &str, payload: &str) -> String {
    match dialect {
        Dialect::Lanchat => format!("message {to} {payload}\n"),
        Dialect::Irc => format!("PRIVMSG {to} :{payload}\r\n"),
        Dialect::Relay => format!("{to} {payload}\n"),
    }
}

/// A message to everyone (lanchat: everyone online; IRC: the channel).
pub fn broadcast(dialect: Dialect, payload: &str) -> String {
    match dialect {
        Dialect::Lanchat => format!("broadcast {payload}\n"),
        Dialect::Irc => format!("PRIVMSG {CHANNEL} :{payload}\r\n"),
        Dialect::Relay => format!("* {payload}\n"),
    }
}

/// A request the server must answer (to check a user is still served).
pub fn ping(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Lanchat => "ping\n",
        Dialect::Irc => "PING :bench\r\n",
        Dialect::Relay => "PING\n",
    }
}

/// What a received line (without its line ending) is to the generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A relayed message; the text as its sender wrote it.
    Payload(&'a str),
    /// The server checks we are alive; answer with this line.
    Ping(String),
    /// The answer to [`ping`].
    Pong,
    /// Anything else (acknowledgements, presence, numerics).
    Other,
}

/// Classifies a line received after login.
pub fn incoming(dialect: Dialect, line: &str) -> Incoming<'_> {
    match dialect {
        Dialect::Lanchat => {
            let rest = line
                .strip_prefix("MSG ")
                .or_else(|| line.strip_prefix("BCAST "));
            match rest.and_then(|r| r.split_once(' ')) {
                Some((_from, text)) => Incoming::Payload(text),
                None if line.starts_with("OK pong") => Incoming::Pong,
                None => Incoming::Other,
            }
        }
        Dialect::Irc => {
            if let Some(token) = irc_ping(line) {
                return Incoming::Ping(format!("PONG :{token}\r\n"));
            }
            match irc_command(line) {
                "PRIVMSG" => match line.split_once(" :").map(|(_, t)| t) {
                    // The first " :" after the prefix starts the trailing text.
                    Some(text) => Incoming::Payload(text),
                    None => Incoming::Other,
                },
                "PONG" => Incoming::Pong,
                _ => Incoming::Other,
            }
        }
        Dialect::Relay => match line.strip_prefix("M ").and_then(|r| r.split_once(' ')) {
            Some((_from, text)) => Incoming::Payload(text),
            None if line == "PONG" => Incoming::Pong,
            None => Incoming::Other,
        },
    }
}

/// The token of a server's `PING :token` (or `PING token`).
fn irc_ping(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("PING ")?;
    Some(rest.strip_prefix(':').unwrap_or(rest))
}

/// The command (or numeric) of an IRC line, after an optional `:prefix`.
fn irc_command(line: &str) -> &str {
    let rest = match line.strip_prefix(':') {
        Some(r) => r.split_once(' ').map_or("", |(_, c)| c),
        None => line,
    };
    rest.split(' ').next().unwrap_or("")
}

/// What every benchmark message carries: which stream (sender) it belongs to, its sequence
/// number in that stream, and when it was sent (nanoseconds since the generator's epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sending stream (one per simulated sender).
    pub stream: u32,
    /// 1, 2, 3, ... per stream.
    pub seq: u64,
    /// Send time in nanoseconds since the generator started.
    pub sent_ns: u64,
}

/// The payload text for a stamp: `b <stream> <seq> <ns>`, padded with `pad` bytes of `x`
/// so messages have a realistic size. Starts with a word that is no lanchat keyword.
pub fn payload(stamp: Stamp, pad: usize) -> String {
    let mut s = format!("b {} {} {}", stamp.stream, stamp.seq, stamp.sent_ns);
    if pad > 0 {
        s.push(' ');
        s.extend(std::iter::repeat_n('x', pad));
    }
    s
}

/// Reads a stamp back from a payload text; `None` for a text that is not one.
pub fn parse_stamp(text: &str) -> Option<Stamp> {
    let mut words = text.split(' ');
    if words.next()? != "b" {
        return None;
    }
    Some(Stamp {
        stream: words.next()?.parse().ok()?,
        seq: words.next()?.parse().ok()?,
        sent_ns: words.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User::numbered(7)
    }

    #[test]
    fn lanchat_login_dialogue() {
        let u = alice();
        let d = Dialect::Lanchat;
        assert_eq!(
            login_step(d, LoginState::Started, "HELLO lanchat/1 Welcome", &u),
            LoginStep::Wait
        );
        let ask = "ASK username Username:";
        assert_eq!(
            login_step(d, LoginState::Started, ask, &u),
            LoginStep::Reply("u7\n".into())
        );
        assert_eq!(
            next_state(d, LoginState::Started, ask),
            LoginState::SentName
        );
        let ask = "ASK password Password:";
        assert_eq!(
            login_step(d, LoginState::SentName, ask, &u),
            LoginStep::Reply("pw7\n".into())
        );
        assert_eq!(
            login_step(d, LoginState::SentPassword, "WELCOME u7 hi", &u),
            LoginStep::Done
        );
        assert!(matches!(
            login_step(d, LoginState::Started, "BYE full The server is full", &u),
            LoginStep::Refused(_)
        ));
        // A second ASK username means the login failed.
        assert!(matches!(
            login_step(d, LoginState::SentPassword, "ASK username Username:", &u),
            LoginStep::Refused(_)
        ));
    }

    #[test]
    fn lanchat_login_sent_at_once() {
        let u = alice();
        let d = Dialect::Lanchat;
        assert_eq!(greeting(d, &u).unwrap(), "protocol lanchat/1\nu7\npw7\n");
        let s = first_state(d);
        assert_eq!(s, LoginState::SentAll);
        for line in ["HELLO lanchat/1 Hi", "ASK username U:", "ASK password P:"] {
            assert_eq!(login_step(d, s, line, &u), LoginStep::Wait, "{line}");
            assert_eq!(next_state(d, s, line), s, "{line}");
        }
        assert_eq!(login_step(d, s, "WELCOME u7 hi", &u), LoginStep::Done);
        assert!(matches!(
            login_step(d, s, "ERR bad-login Username or password incorrect.", &u),
            LoginStep::Refused(_)
        ));
    }

    #[test]
    fn irc_login_answers_pings_and_ends_at_001() {
        let u = alice();
        let d = Dialect::Irc;
        assert_eq!(greeting(d, &u).unwrap(), "NICK u7\r\nUSER u7 0 * :u7\r\n");
        assert_eq!(
            login_step(d, LoginState::Started, "PING :12345", &u),
            LoginStep::Reply("PONG :12345\r\n".into())
        );
        assert_eq!(
            login_step(d, LoginState::Started, ":irc.local NOTICE * :hi", &u),
            LoginStep::Wait
        );
        assert_eq!(
            login_step(d, LoginState::Started, ":irc.local 001 u7 :Welcome", &u),
            LoginStep::Done
        );
        assert!(matches!(
            login_step(d, LoginState::Started, "ERROR :Server full", &u),
            LoginStep::Refused(_)
        ));
    }

    #[test]
    fn payloads_are_found_in_each_dialect() {
        let stamp = Stamp {
            stream: 3,
            seq: 42,
            sent_ns: 123_456,
        };
        let text = payload(stamp, 4);
        assert_eq!(text, "b 3 42 123456 xxxx");
        assert_eq!(parse_stamp(&text), Some(stamp));
        assert_eq!(
            message(Dialect::Lanchat, "u2", &text),
            format!("message u2 {text}\n")
        );
        let lines = [
            (Dialect::Lanchat, format!("MSG u1 {text}")),
            (Dialect::Lanchat, format!("BCAST u1 {text}")),
            (
                Dialect::Irc,
                format!(":u1!~u1@localhost PRIVMSG u2 :{text}"),
            ),
            (
                Dialect::Irc,
                format!(":u1!u1@127.0.0.1 PRIVMSG #bench :{text}"),
            ),
            (Dialect::Relay, format!("M u1 {text}")),
        ];
        for (d, line) in &lines {
            match incoming(*d, line) {
                Incoming::Payload(t) => assert_eq!(parse_stamp(t), Some(stamp), "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_lines_are_classified() {
        assert_eq!(
            incoming(Dialect::Lanchat, "OK sent Your message was sent to u2."),
            Incoming::Other
        );
        assert_eq!(
            incoming(Dialect::Lanchat, "OK pong still here"),
            Incoming::Pong
        );
        assert_eq!(
            incoming(Dialect::Irc, "PING :abc"),
            Incoming::Ping("PONG :abc\r\n".into())
        );
        assert_eq!(
            incoming(Dialect::Irc, ":irc.local PONG irc.local :bench"),
            Incoming::Pong
        );
        assert_eq!(incoming(Dialect::Relay, "PONG"), Incoming::Pong);
        assert!(joined(
            Dialect::Irc,
            ":irc.local 366 u1 #bench :End of NAMES list"
        ));
        assert!(!joined(Dialect::Irc, ":irc.local 353 u1 = #bench :u1"));
        assert!(!joined(
            Dialect::Irc,
            ":lanchat 366 u1 #lanchat :End of /NAMES list."
        ));
        assert_eq!(parse_stamp("hello there"), None);
        assert_eq!(parse_stamp("b 1 x 3"), None);
    }
}
