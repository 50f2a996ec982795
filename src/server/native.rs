//! The native door's two ways of speaking: prose for a person at `telnet` or `nc`, tagged
//! lines (PROTOCOL.md) for a program.
//!
//! ```text
//!   connect ──> prose ("Welcome to lanchat. Please log in." / "Username: ")
//!     a line `protocol lanchat/1` (any case), at any point ──> tagged for the rest of the
//!     connection: a line end if a prompt was open, then HELLO (and the current ASK)
//! ```
//!
//! A program sends `protocol lanchat/1` as soon as it connects and skips what comes before
//! the first line that starts with `HELLO `: the prose greeting and nothing else, since the
//! server reads the request before it writes anything more. The web door's WebSocket and
//! the IRC door have their own encoders and are not affected.
//!
//! [`Terminal`] is the native door's encoder; [`NativeReader`] its line reader, which takes
//! telnet commands out of the input (see `telnet`) and hides a typed password from a telnet
//! client.

use super::encoder::{Encoder, FanOut, NATIVE_VIEW};
use super::outbox::Conn;
use super::prose::{self, ProseEnd};
use super::reader::{ByteSource, Input, LineReader, ReadLines};
use super::telnet::Telnet;
use crate::clock::Deadline;
use crate::protocol::Line;
use std::cell::RefCell;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The one version of the tagged lines, as a client names it in `protocol`.
pub const TAGGED_VERSION: &str = super::PROTOCOL_VERSION;

/// The connection speaks tagged lines.
const TAGGED: u8 = 1;
/// The last prose written was a prompt: the cursor is after it, not at a line start.
const AT_PROMPT: u8 = 2;

/// The native door's encoder: prose until the client asks for tagged lines.
///
/// Lines for one connection may be encoded by several threads at once (its own, and a
/// sender's); the mode is one atomic, read once per line. A line another thread encodes at
/// the very moment of a switch after login may still come out as prose after `HELLO`; at
/// login, when a program switches, nobody else writes to the connection.
#[derive(Debug, Default)]
pub struct Terminal {
    /// [`TAGGED`] and [`AT_PROMPT`].
    state: AtomicU8,
}

/// What [`Terminal::switch_to_tagged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// The connection spoke prose until now; `open_prompt`: a prose prompt was the last
    /// thing written, so the tagged lines must start on a fresh line.
    Switched {
        /// Whether a line end is owed first.
        open_prompt: bool,
    },
    /// It spoke tagged lines already.
    Already,
}

impl Terminal {
    /// A new connection's encoder: prose.
    pub fn new() -> Terminal {
        Terminal::default()
    }

    /// Whether the connection speaks tagged lines.
    pub fn is_tagged(&self) -> bool {
        self.state.load(Ordering::Acquire) & TAGGED != 0
    }

    /// From now on, tagged lines.
    pub fn switch_to_tagged(&self) -> Switch {
        let before = self.state.fetch_or(TAGGED, Ordering::AcqRel);
        if before & TAGGED != 0 {
            return Switch::Already;
        }
        Switch::Switched {
            open_prompt: before & AT_PROMPT != 0,
        }
    }

    /// The client sent a line: a person's Enter, echoed by their terminal, ended the line
    /// an open prompt left, so the next prose starts on a fresh line by itself.
    pub fn heard_line(&self) {
        self.state.fetch_and(!AT_PROMPT, Ordering::AcqRel);
    }
}

impl Encoder for Terminal {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        let state = self.state.load(Ordering::Acquire);
        if state & TAGGED != 0 {
            line.write_wire(out);
            return;
        }
        if state & AT_PROMPT != 0 {
            // Something arrives while a prompt waits for its answer: a line of its own.
            out.push(b'\n');
        }
        match prose::write(line, out) {
            ProseEnd::Prompt => self.state.fetch_or(AT_PROMPT, Ordering::AcqRel),
            ProseEnd::Line => self.state.fetch_and(!AT_PROMPT, Ordering::AcqRel),
        };
    }

    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        if self.is_tagged() {
            fan_out.shared(NATIVE_VIEW, out, |out| {
                self.encode_event(fan_out.event(), out)
            });
        } else {
            // Prose depends on where this person's cursor is: not shared.
            self.encode_event(fan_out.event(), out);
        }
    }
}

/// What a `protocol ...` line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolRequest {
    /// `protocol lanchat/1`: tagged lines.
    Tagged,
    /// `protocol <anything else>`: a version this server does not speak.
    Unknown(String),
}

/// Reads a `protocol VERSION` line: exactly two words, the first `protocol` (any case,
/// optionally `/protocol`), the version compared without regard to case. A lone `protocol`
/// is not one (it is a well-formed username).
pub fn protocol_request(line: &str) -> Option<ProtocolRequest> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    // Every line is asked this: the first word decides at once for nearly all of them.
    if !first
        .strip_prefix('/')
        .unwrap_or(first)
        .eq_ignore_ascii_case("protocol")
    {
        return None;
    }
    let version = words.next()?;
    if words.next().is_some() {
        return None;
    }
    Some(if version.eq_ignore_ascii_case(TAGGED_VERSION) {
        ProtocolRequest::Tagged
    } else {
        ProtocolRequest::Unknown(version.to_string())
    })
}

/// The answer to a `protocol` line naming a version this server does not speak.
pub fn unknown_protocol(version: &str) -> Line {
    Line::err(
        "unknown-protocol",
        format!(
            "This server speaks {TAGGED_VERSION}, not {}: send 'protocol {TAGGED_VERSION}' for its tagged lines.",
            crate::protocol::sanitize(version)
        ),
    )
}

/// The native door's lines: a [`LineReader`] over the connection, with telnet commands
/// taken out of the bytes first.
pub struct NativeReader {
    /// Splits lines.
    lines: LineReader,
    /// The telnet state; borrowed by [`Filtered`] during a read.
    telnet: RefCell<Telnet>,
    /// The connection's encoder: a person's Enter ends an open prompt.
    terminal: Arc<Terminal>,
}

impl NativeReader {
    /// A reader accepting lines up to `max` bytes, for the connection `terminal` encodes.
    pub fn new(max: usize, terminal: Arc<Terminal>) -> NativeReader {
        NativeReader {
            lines: LineReader::new(max),
            telnet: RefCell::new(Telnet::default()),
            terminal,
        }
    }
}

impl ReadLines for NativeReader {
    fn next_line(&mut self, conn: &Arc<Conn>, deadline: Deadline<'_>) -> Input {
        let source = Filtered {
            conn,
            telnet: &self.telnet,
        };
        let input = self.lines.next(&source, deadline);
        // In prose, every line ends with the person's Enter, except the switch, which a
        // program sends.
        if !self.terminal.is_tagged() {
            let entered = match &input {
                Input::Line(line) => protocol_request(line) != Some(ProtocolRequest::Tagged),
                Input::TooLong(_) | Input::BadUtf8 => true,
                Input::TimedOut | Input::Closed => false,
            };
            if entered {
                self.terminal.heard_line();
            }
        }
        input
    }

    fn has_buffered_line(&self) -> bool {
        self.lines.has_buffered_line()
    }

    fn hide_echo(&mut self, conn: &Arc<Conn>) {
        let bytes = self.telnet.get_mut().hide_echo();
        conn.send_bytes(bytes);
    }

    fn show_echo(&mut self, conn: &Arc<Conn>) {
        let bytes = self.telnet.get_mut().show_echo();
        conn.send_bytes(bytes);
    }
}

/// The connection's bytes with telnet commands taken out; the negotiation's answers are
/// sent as they arise.
struct Filtered<'a> {
    conn: &'a Arc<Conn>,
    telnet: &'a RefCell<Telnet>,
}

impl ByteSource for Filtered<'_> {
    fn socket(&self) -> &TcpStream {
        self.conn.stream()
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let before = buf.len();
        let n = self.conn.read_plain(buf)?;
        let mut telnet = self.telnet.borrow_mut();
        if n == 0 || !telnet.needs_filter(&buf[before..]) {
            return Ok(n);
        }
        let read = buf.split_off(before);
        let mut replies = Vec::new();
        telnet.filter(&read, buf, &mut replies);
        drop(telnet);
        self.conn.send_bytes(&replies);
        // Commands only (no data yet): read again, the deadline still holds.
        match buf.len() - before {
            0 => Err(io::ErrorKind::Interrupted.into()),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Kind;

    #[test]
    fn protocol_requests() {
        let tagged = Some(ProtocolRequest::Tagged);
        assert_eq!(protocol_request("protocol lanchat/1"), tagged);
        assert_eq!(protocol_request("  PROTOCOL  LanChat/1 "), tagged);
        assert_eq!(protocol_request("/protocol lanchat/1"), tagged);
        assert_eq!(
            protocol_request("protocol lanchat/2"),
            Some(ProtocolRequest::Unknown("lanchat/2".into()))
        );
        assert_eq!(protocol_request("protocol"), None, "a username");
        assert_eq!(protocol_request("protocol lanchat/1 now"), None);
        assert_eq!(protocol_request("protocols lanchat/1"), None);
        assert!(unknown_protocol("x\x1b")
            .text
            .contains("speaks lanchat/1, not x\\x1b"));
    }

    #[test]
    fn prose_until_the_switch_then_tagged_on_a_fresh_line() {
        let t = Terminal::new();
        let mut out = Vec::new();
        assert!(!t.is_tagged());
        t.encode(&Line::new(Kind::Hello, &["lanchat/1"], "Hi."), &mut out);
        t.encode(&Line::ask("username", "Username:"), &mut out);
        assert_eq!(out, b"Hi.\nUsername: ");
        assert_eq!(t.switch_to_tagged(), Switch::Switched { open_prompt: true });
        assert_eq!(t.switch_to_tagged(), Switch::Already);
        assert!(t.is_tagged());
        out.clear();
        t.encode(&Line::ask("username", "Username:"), &mut out);
        assert_eq!(out, b"ASK username Username:\n");
    }

    #[test]
    fn a_line_that_arrives_at_an_open_prompt_starts_a_line_of_its_own() {
        let t = Terminal::new();
        let mut out = Vec::new();
        t.encode(&Line::ask("intro", "Intro:"), &mut out);
        t.encode(&Line::new(Kind::Msg, &["bob"], "hi"), &mut out);
        t.encode(&Line::ok("x", "done"), &mut out);
        assert_eq!(out, b"Intro: \nbob: hi <private message>\ndone\n");
        // After the person's Enter, no extra line end.
        out.clear();
        t.encode(&Line::ask("password", "Password:"), &mut out);
        t.heard_line();
        t.encode(&Line::ok("x", "done"), &mut out);
        assert_eq!(out, b"Password: done\n");
        assert_eq!(
            t.switch_to_tagged(),
            Switch::Switched { open_prompt: false }
        );
    }
}
