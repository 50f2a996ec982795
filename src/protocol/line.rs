//! What the server sends: a [`Line`] of a [`Kind`], its arguments and free text, formatted
//! for the wire and parsed back. Pure: no I/O.

use std::fmt;

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
    args: LineArgs,
    /// Free text for people; may be empty.
    pub text: String,
}

/// Bytes of arguments a line keeps inside itself: a code and a username fit, so the usual
/// line (`OK sent`, `MSG alice`) allocates nothing for its arguments (a `Vec<String>` cost
/// two allocations a line, on every relayed message).
const INLINE_ARGS_BYTES: usize = 46;

/// A line's arguments, each followed by one space, in one buffer: inline when short.
#[derive(Clone, PartialEq, Eq)]
enum LineArgs {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ARGS_BYTES],
    },
    Heap(String),
}

impl LineArgs {
    /// No arguments yet.
    fn new() -> LineArgs {
        LineArgs::Inline {
            len: 0,
            bytes: [0; INLINE_ARGS_BYTES],
        }
    }

    /// Appends one argument (not empty, no space in it) and the space after it.
    fn push(&mut self, arg: &str) {
        debug_assert!(!arg.is_empty() && !arg.contains(' '));
        match self {
            LineArgs::Inline { len, bytes } => {
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
                    *self = LineArgs::Heap(heap);
                }
            }
            LineArgs::Heap(heap) => {
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
            LineArgs::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            LineArgs::Heap(heap) => heap,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.spaced().split_terminator(' ')
    }
}

impl fmt::Debug for LineArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Line {
    /// Builds a line; arguments that are empty become `-` and whitespace inside one becomes
    /// `_` so that the line always parses back.
    pub fn new(kind: Kind, args: &[&str], text: impl Into<String>) -> Line {
        debug_assert_eq!(args.len(), kind.arity(), "{kind:?}");
        let mut spaced = LineArgs::new();
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
        let mut args = LineArgs::new();
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
}
