//! Parsing what a user types into a [`Command`]: the command words, their aliases and the
//! usage errors. Pure: no I/O, no state beyond the caller's own name.

use std::fmt;

use super::command::{Audience, Command, GroupAction, Status};
use super::text::{sanitize_text, valid_username};

/// Why a line is not a command. `code` is the machine-readable `ERR` code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Stable code: `unknown-command`, `usage`, `empty-message`, `bad-number`, `bad-name`.
    pub code: &'static str,
    /// What to tell the user.
    pub message: String,
}

impl ParseError {
    fn usage(usage: &str) -> ParseError {
        ParseError {
            code: "usage",
            message: format!("usage: {usage}"),
        }
    }
    fn empty(usage: &str) -> ParseError {
        ParseError {
            code: "empty-message",
            message: format!("empty messages are not sent (usage: {usage})"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Default number of lines `history` shows.
pub const DEFAULT_HISTORY_LINES: usize = 20;

/// Splits off the first whitespace-delimited word; returns (word, rest-trimmed-at-start).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Longer than any command word: a longer first word is no command.
const COMMAND_WORD_BYTES: usize = 24;

/// `word` in ASCII lower case, written into `buf` (every line's first word is looked up
/// this way: no allocation); `""` if it does not fit.
fn ascii_lowercase_in<'b>(word: &str, buf: &'b mut [u8; COMMAND_WORD_BYTES]) -> &'b str {
    let Some(out) = buf.get_mut(..word.len()) else {
        return "";
    };
    out.copy_from_slice(word.as_bytes());
    out.make_ascii_lowercase();
    // ASCII case changes keep UTF-8 valid.
    std::str::from_utf8(out).unwrap_or_default()
}

fn name_arg(word: &str, usage: &str) -> Result<String, ParseError> {
    if word.is_empty() {
        return Err(ParseError::usage(usage));
    }
    if !valid_username(word) {
        return Err(ParseError {
            code: "bad-name",
            message: format!("'{}' is not a valid name", sanitize_text(word)),
        });
    }
    Ok(word.to_string())
}

fn optional_name(rest: &str, usage: &str) -> Result<Option<String>, ParseError> {
    let (word, extra) = split_word(rest);
    if !extra.is_empty() {
        return Err(ParseError::usage(usage));
    }
    if word.is_empty() {
        return Ok(None);
    }
    name_arg(word, usage).map(Some)
}

fn text_arg(rest: &str, usage: &str) -> Result<String, ParseError> {
    let text = rest.trim();
    if text.is_empty() {
        return Err(ParseError::empty(usage));
    }
    Ok(sanitize_text(text))
}

/// Parses seed 000's `NAME(a-b)` forms: returns the part between the parentheses.
fn paren_arg<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let upper_prefix = line.get(..name.len())?;
    if !upper_prefix.eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = line[name.len()..].trim_start();
    let inner = rest.strip_prefix('(')?.trim_end().strip_suffix(')')?;
    Some(inner.trim())
}

/// For `X(me-other)`: the name that is not `me` (the second one when that is ambiguous).
fn other_of_pair(pair: &str, me: &str) -> Option<String> {
    let (a, b) = pair.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    Some(if b == me && a != me { a } else { b }.to_string())
}

/// Parses one line typed by the logged-in user `me` (needed for seed 000's `(me-other)`
/// forms). Returns `Ok(None)` for a blank line, which is ignored.
pub fn parse_command(line: &str, me: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let line = line.strip_prefix('/').unwrap_or(line);

    for (name, is_history) in [
        ("CHAT_REQUEST", false),
        ("HISTORY_REQUEST", true),
        ("HISTORY_REQ", true),
    ] {
        if let Some(pair) = paren_arg(line, name) {
            // `me` is a logged-in name (safe), but the parser does not rely on its caller.
            let usage = format!("{name}({}-USER)", sanitize_text(me));
            let other = other_of_pair(pair, me).ok_or_else(|| ParseError::usage(&usage))?;
            let other = name_arg(&other, &usage)?;
            return Ok(Some(if is_history {
                Command::History {
                    with: other,
                    count: DEFAULT_HISTORY_LINES,
                }
            } else {
                Command::Chat(other)
            }));
        }
    }
    if let Some(num) = paren_arg(line, "END_REQUEST") {
        let n = num
            .parse()
            .map_err(|_| ParseError::usage("END_REQUEST(N)"))?;
        return Ok(Some(Command::End(Some(n))));
    }

    let (word, rest) = split_word(line);
    let mut lower = [0u8; COMMAND_WORD_BYTES];
    let command = match ascii_lowercase_in(word, &mut lower) {
        "help" | "?" | "commands" => Command::Help,
        // Only the bare word: "bye for now" is conversation, not a way to leave.
        "logout" | "exit" | "quit" | "bye" if rest.is_empty() => Command::Logout,
        "log" if rest.eq_ignore_ascii_case("out") => Command::Logout,
        "log" if rest.eq_ignore_ascii_case("on") => Command::LogOn,
        "whoelse" | "online" | "who" | "users" => Command::WhoElse,
        "list" => Command::SignedIn,
        "wholast" => {
            let (n, extra) = split_word(rest);
            if n.is_empty() || !extra.is_empty() {
                return Err(ParseError::usage("wholast MINUTES (0-60)"));
            }
            match n.parse::<u32>() {
                Ok(n) if n <= 60 => Command::WhoLast(n),
                _ => {
                    return Err(ParseError {
                        code: "bad-number",
                        message: "Viewing time should be within 0-60 mins.".into(),
                    })
                }
            }
        }
        "message" | "send" | "msg" | "tell" => {
            let usage = "message USER TEXT";
            let (to, text) = split_word(rest);
            let to = name_arg(to, usage)?;
            Command::Message {
                to,
                text: text_arg(text, usage)?,
            }
        }
        "broadcast" | "bc" | "shout" => parse_broadcast(rest)?,
        // The literal form: TEXT may start with any word (even `message` or `user`).
        "all" => Command::Broadcast {
            audience: Audience::Online,
            text: text_arg(rest, "all TEXT")?,
        },
        "personalintro" | "intro" => {
            let text = rest.trim();
            Command::Intro(if text.is_empty() {
                None
            } else {
                Some(sanitize_text(text))
            })
        }
        "history" => {
            let usage = "history USER [N]";
            let (with, n) = split_word(rest);
            let with = name_arg(with, usage)?;
            let count = if n.is_empty() {
                DEFAULT_HISTORY_LINES
            } else {
                match n.trim().parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => {
                        return Err(ParseError {
                            code: "bad-number",
                            message: "history length should be within 1-1000 lines".into(),
                        })
                    }
                }
            };
            Command::History { with, count }
        }
        "chat" => Command::Chat(name_arg(split_word(rest).0, "chat USER")?),
        "accept" | "yes" | "y" => Command::Accept(optional_name(rest, "accept [USER]")?),
        "decline" | "no" | "n" | "reject" => {
            Command::Decline(optional_name(rest, "decline [USER]")?)
        }
        "end" => {
            if rest.is_empty() {
                Command::End(None)
            } else {
                Command::End(Some(
                    rest.parse()
                        .map_err(|_| ParseError::usage("end [SESSION]"))?,
                ))
            }
        }
        "snum" => Command::SessionNumber,
        "block" => Command::Block(name_arg(split_word(rest).0, "block USER")?),
        "unblock" => Command::Unblock(name_arg(split_word(rest).0, "unblock USER")?),
        "blocked" | "blacklist" => Command::Blocked,
        "status" => {
            if rest.is_empty() {
                Command::Status(None)
            } else {
                Command::Status(Some(Status::parse(rest).ok_or_else(|| {
                    ParseError::usage("status [available|busy|invisible]")
                })?))
            }
        }
        "away" => Command::Status(Some(Status::Busy)),
        "back" => Command::Status(Some(Status::Available)),
        "group" | "g" => parse_group(rest)?,
        "gsend" => {
            let usage = "gsend GROUP TEXT";
            let (group, text) = split_word(rest);
            Command::Group(GroupAction::Send(
                name_arg(group, usage)?,
                text_arg(text, usage)?,
            ))
        }
        "heartbeat" | "ping" => Command::Heartbeat,
        "p2p" => {
            let (port, extra) = split_word(rest);
            match port.parse::<u16>() {
                Ok(p) if p > 0 && extra.is_empty() => Command::P2pPort(p),
                _ => return Err(ParseError::usage("p2p PORT")),
            }
        }
        "getaddress" | "getaddresss" => {
            Command::GetAddress(name_arg(split_word(rest).0, "getaddress USER")?)
        }
        "removeaddress" => {
            Command::RemoveAddress(name_arg(split_word(rest).0, "removeaddress USER")?)
        }
        "addressbook" => Command::AddressBook,
        "private" => Command::Private,
        "say" => Command::Say(text_arg(rest, "say TEXT")?),
        _ => {
            return Err(ParseError {
                code: "unknown-command",
                message: format!(
                    "Command invalid: '{}'. Type 'help' for the list of commands.",
                    sanitize_text(&word.to_ascii_lowercase())
                ),
            })
        }
    };
    Ok(Some(command))
}

/// Inside a chat session most lines are conversation, so only these count as commands: a
/// line starting with `/`, seed 000's forms (`END_REQUEST(n)`, `SNUM`, `HELP`, ...), and the
/// words `end`, `snum`, `help`, `say`, `accept`, `decline`, `logout`, `exit`, `quit`,
/// `log out`. Everything else goes to the partner.
pub fn is_session_command(line: &str) -> bool {
    let line = line.trim();
    if line.starts_with('/') {
        return true;
    }
    // Case-insensitive prefix and word tests without lowercased copies: this runs for
    // every line a logged-in user sends.
    let starts_with_ignore_case = |prefix: &str| {
        line.len() >= prefix.len()
            && line.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if ["END_REQUEST", "CHAT_REQUEST", "HISTORY_REQ"]
        .iter()
        .any(|p| starts_with_ignore_case(p))
    {
        return true;
    }
    let (word, rest) = split_word(line);
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("end") {
        rest.is_empty() || rest.parse::<u32>().is_ok()
    } else if ["snum", "help", "logout", "exit", "quit"]
        .iter()
        .any(|w| is(w))
    {
        rest.is_empty()
    } else if ["say", "accept", "decline"].iter().any(|w| is(w)) {
        true
    } else if is("log") {
        rest.eq_ignore_ascii_case("out")
    } else {
        false
    }
}

/// The broadcast rule: after `broadcast`, a first word `message` means seed 001's broadcast
/// to everyone (offline users by mail); a first word `user` followed by names and then the
/// word `message` means seed 001's list broadcast; anything else is seed 002's broadcast of
/// the whole text to the users online now.
fn parse_broadcast(rest: &str) -> Result<Command, ParseError> {
    let usage = "broadcast TEXT | broadcast message TEXT | broadcast user U1 U2 ... message TEXT";
    let (first, after) = split_word(rest);
    if first.eq_ignore_ascii_case("message") && !after.is_empty() {
        return Ok(Command::Broadcast {
            audience: Audience::Everyone,
            text: text_arg(after, usage)?,
        });
    }
    if first.eq_ignore_ascii_case("user") {
        let mut users = Vec::new();
        let mut cursor = after;
        loop {
            let (word, next) = split_word(cursor);
            if word.is_empty() {
                break;
            }
            if word.eq_ignore_ascii_case("message") && !users.is_empty() {
                return Ok(Command::Broadcast {
                    audience: Audience::Users(users),
                    text: text_arg(next, usage)?,
                });
            }
            users.push(word.to_string());
            cursor = next;
        }
        // No `message` keyword: this is seed 002's plain broadcast of "user ...".
    }
    Ok(Command::Broadcast {
        audience: Audience::Online,
        text: text_arg(rest, usage)?,
    })
}

fn parse_group(rest: &str) -> Result<Command, ParseError> {
    let usage = "group create|join|leave|members NAME, group list, group send NAME TEXT";
    let (action, rest) = split_word(rest);
    let (name, text) = split_word(rest);
    let action = match action.to_ascii_lowercase().as_str() {
        "create" | "new" => GroupAction::Create(name_arg(name, usage)?),
        "join" => GroupAction::Join(name_arg(name, usage)?),
        "leave" | "part" => GroupAction::Leave(name_arg(name, usage)?),
        "list" | "" => GroupAction::List,
        "members" | "who" => GroupAction::Members(name_arg(name, usage)?),
        "send" | "msg" => GroupAction::Send(name_arg(name, usage)?, text_arg(text, usage)?),
        _ => return Err(ParseError::usage(usage)),
    };
    Ok(Command::Group(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Command>, ParseError> {
        parse_command(line, "alice")
    }

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    #[test]
    fn commands_and_aliases() {
        assert_eq!(ok("help"), Command::Help);
        assert_eq!(ok("HELP"), Command::Help);
        assert_eq!(ok("/help"), Command::Help);
        for l in ["logout", "log out", "LOG OUT", "exit", "quit", "/quit"] {
            assert_eq!(ok(l), Command::Logout, "{l}");
        }
        assert_eq!(ok("log on"), Command::LogOn);
        assert_eq!(parse("bye for now").unwrap_err().code, "unknown-command");
        assert_eq!(ok("LOG ON"), Command::LogOn);
        for l in ["whoelse", "online", "who", "WHOELSE"] {
            assert_eq!(ok(l), Command::WhoElse, "{l}");
        }
        assert_eq!(ok("LIST"), Command::SignedIn);
        assert_eq!(ok("wholast 10"), Command::WhoLast(10));
        assert_eq!(parse("wholast 61").unwrap_err().code, "bad-number");
        assert_eq!(parse("wholast").unwrap_err().code, "usage");
        assert_eq!(parse("wholast x").unwrap_err().code, "bad-number");
        let m = Command::Message {
            to: "bob".into(),
            text: "hi there".into(),
        };
        assert_eq!(ok("message bob hi there"), m);
        assert_eq!(ok("send bob hi there"), m);
        assert_eq!(ok("  Message   bob   hi there  "), m);
        assert_eq!(parse("message bob").unwrap_err().code, "empty-message");
        assert_eq!(parse("message bob    ").unwrap_err().code, "empty-message");
        assert_eq!(parse("message").unwrap_err().code, "usage");
        assert_eq!(parse("message b@d hi").unwrap_err().code, "bad-name");
        assert_eq!(ok("personalintro"), Command::Intro(None));
        assert_eq!(
            ok("personalintro The best course"),
            Command::Intro(Some("The best course".into()))
        );
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(parse("frobnicate").unwrap_err().code, "unknown-command");
    }

    #[test]
    fn broadcast_rule() {
        let b = |a: Audience, t: &str| Command::Broadcast {
            audience: a,
            text: t.into(),
        };
        assert_eq!(
            ok("broadcast message hi all"),
            b(Audience::Everyone, "hi all")
        );
        assert_eq!(ok("broadcast hi all"), b(Audience::Online, "hi all"));
        assert_eq!(
            ok("broadcast user bob carol message hey"),
            b(Audience::Users(vec!["bob".into(), "carol".into()]), "hey")
        );
        assert_eq!(ok("broadcast message"), b(Audience::Online, "message"));
        assert_eq!(
            ok("broadcast user is here"),
            b(Audience::Online, "user is here")
        );
        assert_eq!(parse("broadcast").unwrap_err().code, "empty-message");
        assert_eq!(
            ok("all message me later"),
            Command::Broadcast {
                audience: Audience::Online,
                text: "message me later".into()
            }
        );
        assert_eq!(parse("all").unwrap_err().code, "empty-message");
        assert_eq!(
            parse("broadcast user bob message").unwrap_err().code,
            "empty-message"
        );
    }

    #[test]
    fn seed_000_forms() {
        assert_eq!(ok("CHAT_REQUEST(alice-bob)"), Command::Chat("bob".into()));
        assert_eq!(ok("CHAT_REQUEST(bob-alice)"), Command::Chat("bob".into()));
        assert_eq!(
            ok("HISTORY_REQ(alice-bob)"),
            Command::History {
                with: "bob".into(),
                count: 20
            }
        );
        assert_eq!(
            ok("history_request(alice-bob)"),
            Command::History {
                with: "bob".into(),
                count: 20
            }
        );
        assert_eq!(ok("END_REQUEST(1234)"), Command::End(Some(1234)));
        assert_eq!(ok("SNUM"), Command::SessionNumber);
        assert_eq!(ok("end"), Command::End(None));
        assert_eq!(parse("END_REQUEST(x)").unwrap_err().code, "usage");
        assert_eq!(parse("CHAT_REQUEST(bob)").unwrap_err().code, "usage");
    }

    #[test]
    fn session_lines_versus_commands() {
        for l in [
            "end",
            "end 1234",
            "/whoelse",
            "SNUM",
            "END_REQUEST(1234)",
            "log out",
            "say hi",
            "help",
            "quit",
        ] {
            assert!(is_session_command(l), "{l}");
        }
        for l in [
            "bye for now",
            "who is there?",
            "no way!",
            "yes please",
            "end of story",
            "help me",
            "message you later",
        ] {
            assert!(!is_session_command(l), "{l}");
        }
    }

    #[test]
    fn other_commands() {
        assert_eq!(ok("block bob"), Command::Block("bob".into()));
        assert_eq!(ok("p2p 5000"), Command::P2pPort(5000));
        assert_eq!(parse("p2p 0").unwrap_err().code, "usage");
        assert_eq!(ok("getaddress bob"), Command::GetAddress("bob".into()));
        assert_eq!(
            ok("removeaddress bob"),
            Command::RemoveAddress("bob".into())
        );
        assert_eq!(ok("addressbook"), Command::AddressBook);
        assert_eq!(ok("private bob hi"), Command::Private);
        assert_eq!(ok("accept"), Command::Accept(None));
        assert_eq!(ok("Y"), Command::Accept(None));
        assert_eq!(ok("decline bob"), Command::Decline(Some("bob".into())));
        assert_eq!(ok("status busy"), Command::Status(Some(Status::Busy)));
        assert_eq!(ok("status"), Command::Status(None));
        assert_eq!(parse("status sleepy").unwrap_err().code, "usage");
        assert_eq!(
            ok("group send cs101 hello all"),
            Command::Group(GroupAction::Send("cs101".into(), "hello all".into()))
        );
        assert_eq!(
            ok("gsend cs101 hi"),
            Command::Group(GroupAction::Send("cs101".into(), "hi".into()))
        );
        assert_eq!(ok("group list"), Command::Group(GroupAction::List));
        assert_eq!(
            ok("history bob 5"),
            Command::History {
                with: "bob".into(),
                count: 5
            }
        );
    }

    #[test]
    fn message_text_is_sanitized() {
        assert_eq!(
            ok("message bob \x1b[2Jgotcha"),
            Command::Message {
                to: "bob".into(),
                text: "\\x1b[2Jgotcha".into()
            }
        );
    }

    #[test]
    fn the_command_word_is_matched_in_any_case_and_a_long_one_is_no_command() {
        let mut buf = [0u8; COMMAND_WORD_BYTES];
        assert_eq!(ascii_lowercase_in("MeSSaGe", &mut buf), "message");
        assert_eq!(ascii_lowercase_in("ÉCHO", &mut buf), "Écho");
        assert_eq!(
            ascii_lowercase_in(&"m".repeat(COMMAND_WORD_BYTES + 1), &mut buf),
            ""
        );
        let long = "x".repeat(40);
        let err = parse(&format!("{long} hi")).unwrap_err();
        assert_eq!(err.code, "unknown-command");
        assert!(err.message.contains(&long), "{}", err.message);
    }
}
