//! The wire format, as pure functions: parsing what a user types into a [`Command`], and
//! formatting/parsing what the server sends as a [`Line`]. No I/O happens here.
//!
//! Client to server: one command per line, UTF-8, LF or CRLF. The first word is the command,
//! case-insensitive, optionally prefixed with `/`; each course project's own spelling is an
//! alias (`online`/`who`/`whoelse`, `message`/`send`, `log out`/`exit`/`quit`/`logout`, ...).
//!
//! Server to client: every line is `KIND` followed by a fixed number of space-free arguments
//! for that kind and then free text (possibly empty), e.g. `MSG alice hello there`. The kind
//! and arguments are for programs; the text is for people. `PROTOCOL.md` is the reference.
//!
//! User-provided text is sanitized on the way in ([`sanitize_text`]): control characters are
//! escaped so that nothing a user types can drive another user's terminal.

use std::fmt;

/// Longest username accepted, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Whether `name` is a well-formed username: 1..=32 ASCII letters, digits, `_`, `-` or `.`,
/// starting with a letter, digit or `_`. Names appear as single protocol arguments (where
/// `-` alone means "empty") and as file names, so nothing else is allowed.
pub fn valid_username(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `c` must never reach a terminal or a page as it is: a control character (C0,
/// DEL, C1), a bidirectional override, embedding, isolate or mark (U+061C, U+200E-200F,
/// U+202A-202E, U+2066-2069), which can make a line read backwards or disguise a name, or
/// an invisible one (U+200B-200D, U+2028-2029, U+2060-2064, U+FEFF), which can make two
/// different texts look the same. A zero-width joiner in an emoji sequence is escaped too:
/// one rule for every field is worth more than a family emoji drawn as one glyph.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f | 0x7f..=0x9f | 0x061c | 0x200b..=0x200f | 0x2028..=0x202e
            | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xfeff)
}

/// The one rule for every field that came from a user (messages, intros, names, realnames,
/// channel names, topics, reasons, discovery answers, direct messages), on every door: each
/// [`is_unsafe_char`] becomes a visible escape, except that a tab becomes a space. ESC
/// becomes `\x1b`, U+009B `\u{9b}`, U+202E `\u{202e}`. Escaping is idempotent (an escape
/// is printable), so text may pass through it again on the way out.
///
/// Where it is applied: on input, as a field enters the server (the command parser for the
/// native and web doors; the IRC door's USER, PRIVMSG, TOPIC, AWAY, PART, QUIT and KICK),
/// again where a door echoes what a client sent (IRC numerics) and as intros and history
/// lines are read back from disk, and in lanchat-client's renderer, for anything from a
/// server or a peer.
pub fn sanitize_text(text: &str) -> String {
    sanitize(text).into_owned()
}

/// [`sanitize_text`] without a copy when nothing needs escaping (the usual line).
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    // Printable ASCII is checked a byte at a time (which the compiler vectorises); other
    // text by character.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(is_unsafe_char) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Who a `broadcast` reaches; the three shapes of seeds 001 and 002.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// `broadcast message TEXT` (seed 001): every other registered user, offline ones by mail.
    Everyone,
    /// `broadcast TEXT` (seed 002): every other user online now.
    Online,
    /// `broadcast user U1 U2 ... message TEXT` (seed 001): the named users.
    Users(Vec<String>),
}

/// A user's availability, shown in presence lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The default: shown as online.
    Available,
    /// Shown as busy; senders are told their message may wait.
    Busy,
    /// Appears offline to everyone else, still receives messages.
    Invisible,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Busy => "busy",
            Status::Invisible => "invisible",
        }
    }

    /// Parses the wire spelling (case-insensitive).
    pub fn parse(word: &str) -> Option<Status> {
        match word.to_ascii_lowercase().as_str() {
            "available" | "online" => Some(Status::Available),
            "busy" | "away" => Some(Status::Busy),
            "invisible" | "hidden" => Some(Status::Invisible),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subcommand of `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAction {
    /// `group create NAME`
    Create(String),
    /// `group join NAME`
    Join(String),
    /// `group leave NAME`
    Leave(String),
    /// `group list`: every group, with member counts and whether you are in it.
    List,
    /// `group members NAME`
    Members(String),
    /// `group send NAME TEXT` (short form `gsend NAME TEXT`)
    Send(String, String),
}

/// One parsed user command. Parsing has no side effects; the session applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help` / `HELP` / `?`
    Help,
    /// `logout`, `log out`, `exit`, `quit`
    Logout,
    /// `whoelse`, `online`, `who`, `users`: the others online
    WhoElse,
    /// `list` (seed 004): everyone signed in, yourself included
    SignedIn,
    /// `wholast N` with N in 0..=60 minutes
    WhoLast(u32),
    /// `message USER TEXT`, `send USER TEXT`, `msg USER TEXT`
    Message {
        /// The recipient's username.
        to: String,
        /// The message, sanitized.
        text: String,
    },
    /// The three `broadcast` shapes.
    Broadcast {
        /// Who receives it.
        audience: Audience,
        /// The message, sanitized.
        text: String,
    },
    /// `personalintro [TEXT]`; `None` means the next line is the intro.
    Intro(Option<String>),
    /// `history USER [N]`, `HISTORY_REQ(me-USER)`, `HISTORY_REQUEST(me-USER)`
    History {
        /// The other party of the conversation.
        with: String,
        /// How many of the most recent lines.
        count: usize,
    },
    /// `chat USER`, `CHAT_REQUEST(me-USER)`
    Chat(String),
    /// `accept [USER]` / `yes` / `y`: answers a pending request (USER's, or the latest).
    Accept(Option<String>),
    /// `decline [USER]` / `no` / `n`
    Decline(Option<String>),
    /// `end [N]`, `END_REQUEST(N)`
    End(Option<u32>),
    /// `snum`, `SNUM`
    SessionNumber,
    /// `block USER`
    Block(String),
    /// `unblock USER`
    Unblock(String),
    /// `blocked`: your blacklist.
    Blocked,
    /// `status [available|busy|invisible]`
    Status(Option<Status>),
    /// `group ...`
    Group(GroupAction),
    /// `log on` (seed 000's client typed it to connect): says you are logged on.
    LogOn,
    /// `heartbeat` / `ping`: proof of life from a client, answered with `OK pong`.
    Heartbeat,
    /// `p2p PORT`: the client's port for direct messages (sent by lanchat-client).
    P2pPort(u16),
    /// `getaddress USER` (seed 002): ask USER to exchange addresses for direct messages.
    GetAddress(String),
    /// `removeaddress USER`: undo an exchange, on both sides.
    RemoveAddress(String),
    /// `addressbook`: who you have exchanged addresses with.
    AddressBook,
    /// `private USER TEXT`: a direct message; only a lanchat client can send one (the server
    /// never carries it), so the server explains that.
    Private,
    /// `say TEXT`: a line to the current chat session partner, even if it starts with a
    /// command word.
    Say(String),
}

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

/// The kind of a server line: its first word. Each kind has a fixed number of arguments
/// before the free text; see [`Kind::arity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `HELLO <version> <text>`: first line on connect.
    Hello,
    /// `ASK <field> <text>`: the server waits for one line: `username`, `password`, `intro`.
    Ask,
    /// `WELCOME <user> <text>`: logged in.
    Welcome,
    /// `OK <code> <text>`: a command succeeded.
    Ok,
    /// `ERR <code> <text>`: a command or line failed; the connection stays usable.
    Err,
    /// `INFO <code> <text>`: a notice from the server.
    Info,
    /// `MSG <from> <text>`: a private message relayed by the server.
    Msg,
    /// `BCAST <from> <text>`: a broadcast.
    Bcast,
    /// `MAIL <from> <time> <kind> <id> <text>`: a message stored while you were offline;
    /// `<id>` is the same when it is delivered again (PROTOCOL.md 5.1).
    Mail,
    /// `PRESENCE <user> <event> <text>`: someone logged in, out, timed out, changed status.
    Presence,
    /// `PRESENCES <user:change,...|-> <more> <text>`: in a crowd, the presence changes of a
    /// short window in one line (PROTOCOL.md 5.2).
    Presences,
    /// `LIST <name> <count> <title>`: `count` lines of `USER`, `HIST` or `ENTRY` follow.
    List,
    /// `USER <name> <status> <last-seen|-> <intro>`: one user in a presence list.
    User,
    /// `HIST <time> <session|-> <sender> <text>`: one history line.
    Hist,
    /// `ENTRY <list> <text>`: one line of a simple list (blocked, groups, members).
    Entry,
    /// `SESSION <event> <id> <peer> <text>`: chat-session lifecycle.
    Session,
    /// `TALK <id> <from> <text>`: a line within a chat session.
    Talk,
    /// `ADDR <event> <peer> <address|-> <secret|-> <text>`: the address exchange for direct
    /// messages (request, granted, declined, expired, removed, gone).
    Addr,
    /// `GROUP <group> <from> <text>`: a group message.
    Group,
    /// `BYE <reason> <text>`: the server closes the connection after this line.
    Bye,
}

impl Kind {
    /// Every kind, in the order of the reference table.
    pub const ALL: [Kind; 20] = [
        Kind::Hello,
        Kind::Ask,
        Kind::Welcome,
        Kind::Ok,
        Kind::Err,
        Kind::Info,
        Kind::Msg,
        Kind::Bcast,
        Kind::Mail,
        Kind::Presence,
        Kind::Presences,
        Kind::List,
        Kind::User,
        Kind::Hist,
        Kind::Entry,
        Kind::Session,
        Kind::Talk,
        Kind::Group,
        Kind::Addr,
        Kind::Bye,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Ask => "ASK",
            Kind::Welcome => "WELCOME",
            Kind::Ok => "OK",
            Kind::Err => "ERR",
            Kind::Info => "INFO",
            Kind::Msg => "MSG",
            Kind::Bcast => "BCAST",
            Kind::Mail => "MAIL",
            Kind::Presence => "PRESENCE",
            Kind::Presences => "PRESENCES",
            Kind::List => "LIST",
            Kind::User => "USER",
            Kind::Hist => "HIST",
            Kind::Entry => "ENTRY",
            Kind::Session => "SESSION",
            Kind::Talk => "TALK",
            Kind::Group => "GROUP",
            Kind::Addr => "ADDR",
            Kind::Bye => "BYE",
        }
    }

    /// Number of space-free arguments between the kind and the free text.
    pub fn arity(self) -> usize {
        match self {
            Kind::Hello | Kind::Ask | Kind::Welcome | Kind::Ok | Kind::Err | Kind::Info => 1,
            Kind::Msg | Kind::Bcast | Kind::Entry | Kind::Bye => 1,
            Kind::Presence | Kind::Presences | Kind::List | Kind::Talk | Kind::Group => 2,
            Kind::User | Kind::Hist | Kind::Session => 3,
            Kind::Mail | Kind::Addr => 4,
        }
    }

    /// Looks a wire word up.
    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// One line from the server: a kind, its arguments and free text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// What the line is.
    pub kind: Kind,
    /// Exactly `kind.arity()` arguments, none empty or containing whitespace.
    args: Args,
    /// Free text for people; may be empty.
    pub text: String,
}

/// Bytes of arguments a line keeps inside itself: a code and a username fit, so the usual
/// line (`OK sent`, `MSG alice`) allocates nothing for its arguments (a `Vec<String>` cost
/// two allocations a line, on every relayed message).
const INLINE_ARGS_BYTES: usize = 46;

/// A line's arguments, each followed by one space, in one buffer: inline when short.
#[derive(Clone, PartialEq, Eq)]
enum Args {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ARGS_BYTES],
    },
    Heap(String),
}

impl Args {
    /// No arguments yet.
    fn new() -> Args {
        Args::Inline {
            len: 0,
            bytes: [0; INLINE_ARGS_BYTES],
        }
    }

    /// Appends one argument (not empty, no space in it) and the space after it.
    fn push(&mut self, arg: &str) {
        debug_assert!(!arg.is_empty() && !arg.contains(' '));
        match self {
            Args::Inline { len, bytes } => {
                let at = usize::from(*len);
                let end = at + arg.len() + 1;
                if end <= INLINE_ARGS_BYTES {
                    bytes[at..end - 1].copy_from_slice(arg.as_bytes());
                    bytes[end - 1] = b' ';
                    *len = end as u8;
                } else {
                    let mut heap = String::with_capacity(end + 16);
                    heap.push_str(self.spaced());
                    heap.push_str(arg);
                    heap.push(' ');
                    *self = Args::Heap(heap);
                }
            }
            Args::Heap(heap) => {
                heap.push_str(arg);
                heap.push(' ');
            }
        }
    }

    /// Appends one argument as [`Line::new`] takes it: empty becomes `-`, whitespace `_`.
    fn push_cleaned(&mut self, arg: &str) {
        if arg.is_empty() {
            self.push("-");
        } else if arg.contains(char::is_whitespace) {
            self.push(&arg.replace(char::is_whitespace, "_"));
        } else {
            self.push(arg);
        }
    }

    /// Every argument followed by a space: `"a b "`, or `""` for none.
    fn spaced(&self) -> &str {
        match self {
            // Only whole `str`s and ASCII spaces are ever copied in.
            Args::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Args::Heap(heap) => heap,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.spaced().split_terminator(' ')
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Line {
    /// Builds a line; arguments that are empty become `-` and whitespace inside one becomes
    /// `_` so that the line always parses back.
    pub fn new(kind: Kind, args: &[&str], text: impl Into<String>) -> Line {
        debug_assert_eq!(args.len(), kind.arity(), "{kind:?}");
        let mut spaced = Args::new();
        for a in args {
            spaced.push_cleaned(a);
        }
        Line {
            kind,
            args: spaced,
            text: text.into(),
        }
    }

    /// `OK <code> <text>`
    pub fn ok(code: &str, text: impl Into<String>) -> Line {
        Line::new(Kind::Ok, &[code], text)
    }

    /// `ERR <code> <text>`
    pub fn err(code: &str, text: impl Into<String>) -> Line {
        Line::new(Kind::Err, &[code], text)
    }

    /// `INFO <code> <text>`
    pub fn info(code: &str, text: impl Into<String>) -> Line {
        Line::new(Kind::Info, &[code], text)
    }

    /// `BYE <reason> <text>`
    pub fn bye(reason: &str, text: impl Into<String>) -> Line {
        Line::new(Kind::Bye, &[reason], text)
    }

    /// `ASK <field> <text>`
    pub fn ask(field: &str, text: impl Into<String>) -> Line {
        Line::new(Kind::Ask, &[field], text)
    }

    /// A simple list: `LIST <list> <count> <title>` followed by one `ENTRY <list> <item>`
    /// per item, so the header's count always matches the lines that follow.
    pub fn entry_list(
        list: &str,
        title: impl Into<String>,
        items: impl IntoIterator<Item = String>,
    ) -> Vec<Line> {
        let entries: Vec<Line> = items
            .into_iter()
            .map(|item| Line::new(Kind::Entry, &[list], item))
            .collect();
        let mut lines = Vec::with_capacity(entries.len() + 1);
        lines.push(Line::new(
            Kind::List,
            &[list, &entries.len().to_string()],
            title,
        ));
        lines.extend(entries);
        lines
    }

    /// Argument `i`, or `""` if absent.
    pub fn arg(&self, i: usize) -> &str {
        self.args.iter().nth(i).unwrap_or("")
    }

    /// The arguments, in order.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.args.iter()
    }

    /// Bytes of the arguments on the wire, each with the space after it.
    pub fn args_len(&self) -> usize {
        self.args.spaced().len()
    }

    /// The line as sent, with its trailing LF.
    pub fn to_wire(&self) -> String {
        let mut s = Vec::with_capacity(16 + self.text.len());
        self.write_wire(&mut s);
        // Every part is a `str`, so this never takes the lossy branch.
        String::from_utf8(s).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Appends [`Line::to_wire`]'s bytes to `out` (no string of its own: an outbox or a
    /// send buffer takes them directly).
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.args.spaced().as_bytes());
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'\n');
    }

    /// Parses a line received from a server (without or with its line ending).
    pub fn parse(raw: &str) -> Option<Line> {
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut parts = raw.splitn(2, ' ');
        let kind = Kind::parse(parts.next()?)?;
        let mut rest = parts.next().unwrap_or("");
        let mut args = Args::new();
        for _ in 0..kind.arity() {
            let (arg, tail) = match rest.split_once(' ') {
                Some((a, t)) => (a, t),
                None => (rest, ""),
            };
            if arg.is_empty() {
                return None;
            }
            args.push(arg);
            rest = tail;
        }
        Some(Line {
            kind,
            args,
            text: rest.to_string(),
        })
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        f.write_str(wire.trim_end_matches('\n'))
    }
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
    fn names() {
        assert!(valid_username("columbia"));
        assert!(valid_username("csee4119"));
        assert!(valid_username("Liz"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username("../etc"));
        assert!(!valid_username(".hidden"));
        assert!(!valid_username("-"));
        assert!(!valid_username("-x"));
        assert!(!valid_username(&"x".repeat(33)));
        assert!(!valid_username("a+b"));
    }

    #[test]
    fn sanitize_escapes_controls() {
        assert_eq!(sanitize_text("hi\x1b[31mred"), "hi\\x1b[31mred");
        assert_eq!(sanitize_text("a\tb"), "a b");
        assert_eq!(sanitize_text("bell\x07"), "bell\\x07");
        assert_eq!(sanitize_text("c1\u{9b}x"), "c1\\u{9b}x");
        assert_eq!(sanitize_text("héllo ✓"), "héllo ✓");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(sanitize("héllo ✓"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_makes_bidi_and_invisible_characters_visible() {
        assert_eq!(sanitize_text("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        for c in (0x202a..=0x202e)
            .chain(0x2066..=0x2069)
            .chain(0x200b..=0x200f)
        {
            let c = char::from_u32(c).unwrap();
            assert_eq!(
                sanitize_text(&format!("a{c}b")),
                format!("a\\u{{{:x}}}b", c as u32)
            );
        }
        for c in ['\u{61c}', '\u{2028}', '\u{2029}', '\u{2060}', '\u{feff}'] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        // Neighbours that are ordinary text stay.
        for c in [
            '\u{a0}', '\u{2010}', '\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}', 'é',
        ] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
        // Idempotent: what comes out goes through unchanged.
        let once = sanitize_text("\x1b[2J\u{9b}\u{200b}\u{2066}x\x07");
        assert_eq!(sanitize_text(&once), once);
        assert_eq!(once, "\\x1b[2J\\u{9b}\\u{200b}\\u{2066}x\\x07");
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
    fn line_round_trip() {
        let lines = [
            Line::new(Kind::Msg, &["alice"], "hello there"),
            Line::err("unknown-user", "no such user: zed"),
            Line::new(
                Kind::Mail,
                &["bob", "2026-11-22T10:00:00Z", "private", "0123456789abcdef"],
                "hi",
            ),
            Line::new(Kind::User, &["bob", "available", "-"], ""),
            Line::new(
                Kind::Hist,
                &["2026-11-22T10:00:00Z", "1234", "bob"],
                " x  y",
            ),
            Line::bye("shutdown", "Server is going down"),
        ];
        for l in lines {
            let wire = l.to_wire();
            assert!(wire.ends_with('\n'));
            assert_eq!(Line::parse(&wire), Some(l.clone()), "{wire:?}");
            assert_eq!(Line::parse(wire.trim_end()), Some(l));
        }
        assert_eq!(Line::parse("NOPE x"), None);
        assert_eq!(Line::parse("MAIL bob"), None);
        assert_eq!(
            Line::new(Kind::Entry, &["two words"], "").arg(0),
            "two_words"
        );
        assert_eq!(Line::new(Kind::Entry, &[""], "").arg(0), "-");
    }

    #[test]
    fn arguments_too_long_to_keep_inline_move_to_the_heap_intact() {
        let long = "x".repeat(INLINE_ARGS_BYTES);
        for args in [
            vec!["a", "b", "c", "d"],
            vec!["alice", "10.0.0.1", "4119", &long],
            vec![&long, "b", "c", "d"],
            vec![&long[..INLINE_ARGS_BYTES - 1], "b", "c", "d"],
        ] {
            let line = Line::new(Kind::Addr, &args, "text");
            assert_eq!(line.args().collect::<Vec<_>>(), args);
            assert_eq!(line.arg(3), args[3]);
            assert_eq!(line.arg(4), "");
            assert_eq!(Line::parse(&line.to_wire()), Some(line.clone()));
            assert_eq!(line.to_wire(), format!("ADDR {} text\n", args.join(" ")));
        }
        assert_eq!(Line::new(Kind::Ok, &["sent"], "").to_wire(), "OK sent \n");
        assert_eq!(Line::new(Kind::Ok, &["sent"], "x").args_len(), 5);
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
