//! What the user sees for each server line: a pure function from [`Line`] to text.
//!
//! The looks follow the course projects: seed 001's `alice: hi <private message>` and
//! `name   intro` lists, seed 000's chat sessions, `[time]` stamps in local time.
//!
//! Every rendered line goes through [`sanitize_text`] before colour is added, so a control
//! character that still reaches the client (from a buggy or hostile server) is shown escaped
//! and never drives the terminal. This module does no I/O and knows nothing of prompts; the
//! only outside input is the UTC offset function, which tests replace.

use crate::clock::{format_utc, parse_utc};
use crate::protocol::{sanitize_text, Kind, Line};

/// Red, for errors.
const RED: &str = "\x1b[31m";
/// Bold, for the sender of a message.
const BOLD: &str = "\x1b[1m";
/// Back to normal.
const RESET: &str = "\x1b[0m";

/// Turns server lines into display text.
#[derive(Clone, Copy, Debug)]
pub struct Renderer {
    /// Whether to add ANSI colours (errors in red, senders in bold).
    pub color: bool,
    /// The local offset from UTC, in seconds, at a given Unix time; used to show the
    /// server's UTC stamps in local time. `|_| 0` shows UTC.
    pub utc_offset: fn(u64) -> i64,
}

impl Renderer {
    /// A renderer using this machine's time zone.
    pub fn new(color: bool) -> Renderer {
        Renderer {
            color,
            utc_offset: |t| super::sys::utc_offset_at(t).unwrap_or(0),
        }
    }

    /// The text shown for `line`, one display line, without a trailing newline.
    pub fn render(&self, line: &Line) -> String {
        let text = line.text.as_str();
        match line.kind {
            Kind::Err => self.error(text),
            Kind::Msg => self.message(line.arg(0), &format!("{text} <private message>")),
            Kind::Bcast => self.message(line.arg(0), &format!("{text} <broadcast message>")),
            Kind::Mail => {
                let stamp = self.local_time(line.arg(1));
                let kind = line.arg(2);
                let (prefix, label) = match kind.strip_prefix("group:") {
                    Some(group) => (format!("[{stamp}] [{group}] "), "offline group message"),
                    None if kind == "broadcast" => {
                        (format!("[{stamp}] "), "offline broadcast message")
                    }
                    None => (format!("[{stamp}] "), "offline private message"),
                };
                format!(
                    "{}{}",
                    sanitize_text(&prefix),
                    self.message(line.arg(0), &format!("{text} <{label}>"))
                )
            }
            Kind::User => self.user(line),
            Kind::Hist => {
                let stamp = self.local_time(line.arg(0));
                let session = match line.arg(1) {
                    "-" | "" => String::new(),
                    id => format!("[chat {id}] "),
                };
                format!(
                    "{}{}",
                    sanitize_text(&format!("[{stamp}] {session}")),
                    self.message(line.arg(2), text)
                )
            }
            Kind::Talk => format!(
                "{}{}",
                sanitize_text(&format!("[chat {}] ", line.arg(0))),
                self.message(line.arg(1), text)
            ),
            Kind::Group => format!(
                "{}{}",
                sanitize_text(&format!("[{}] ", line.arg(0))),
                self.message(line.arg(1), text)
            ),
            // HELLO, ASK, WELCOME, OK, INFO, PRESENCE, PRESENCES, LIST, ENTRY, SESSION, BYE:
            // the text is written for people already (a crowd's summary names who joined and
            // left; its arguments are for programs).
            Kind::Hello
            | Kind::Ask
            | Kind::Welcome
            | Kind::Ok
            | Kind::Info
            | Kind::Presence
            | Kind::Presences
            | Kind::List
            | Kind::Entry
            | Kind::Session
            | Kind::Bye => sanitize_text(text),
            Kind::Addr => self.addr(line),
        }
    }

    /// A direct message received from a peer (seed 002's look): `[private] alice: text`.
    pub fn private(&self, sender: &str, text: &str) -> String {
        format!("[private] {}", self.message(sender, text))
    }

    /// `ADDR <event> <peer> <address> <secret> <text>`: the address exchange for direct
    /// messages. The server's text (seed 002's question for `request`), or, if it sent none,
    /// a default for the event.
    fn addr(&self, line: &Line) -> String {
        if !line.text.trim().is_empty() {
            return sanitize_text(&line.text);
        }
        let peer = line.arg(1);
        let text = match line.arg(0) {
            "request" => format!(
                "User {peer} wants to exchange private messages with you. \
                 Would you like to accept? [y/N]"
            ),
            "granted" => format!("You and {peer} can now send each other private messages."),
            "declined" => format!("{peer} declined to exchange private messages."),
            "expired" => format!("The request from {peer} to exchange addresses expired."),
            "removed" => format!("{peer} removed you from their address book."),
            "gone" => format!("{peer} logged out and left your address book."),
            event => format!("{peer}: {event}"),
        };
        sanitize_text(&text)
    }

    /// A message from the client itself about something that failed: `error: ...`, in red
    /// when colour is on.
    pub fn error(&self, text: &str) -> String {
        self.paint(RED, &sanitize_text(&format!("error: {text}")))
    }

    /// A line whose kind this client does not know, shown as received (escaped).
    pub fn render_unknown(&self, raw: &str) -> String {
        sanitize_text(raw)
    }

    /// `sender: text`, with the sender in bold when colour is on.
    fn message(&self, sender: &str, text: &str) -> String {
        let sender = sanitize_text(sender);
        format!("{}: {}", self.paint(BOLD, &sender), sanitize_text(text))
    }

    /// `USER name status last-seen intro` as `name (marks)   intro`.
    fn user(&self, line: &Line) -> String {
        let name = line.arg(0);
        let mark = match (line.arg(1), line.arg(2)) {
            ("available", _) | ("online", _) => String::new(),
            ("offline", "-") | ("offline", "") => " (offline)".to_string(),
            ("offline", seen) => format!(" (offline, last seen {})", self.local_time(seen)),
            (status, _) => format!(" ({status})"),
        };
        let mut out = format!("{name}{mark}");
        if !line.text.trim().is_empty() {
            out.push_str("   ");
            out.push_str(&line.text);
        }
        sanitize_text(&out)
    }

    /// A server stamp (`2026-11-22T10:15:00Z`) as local `2026-11-22 11:15`; anything that
    /// does not parse is shown as it came.
    pub fn local_time(&self, utc: &str) -> String {
        let Some(secs) = parse_utc(utc) else {
            return utc.to_string();
        };
        let local = secs
            .checked_add_signed((self.utc_offset)(secs))
            .unwrap_or(secs);
        let stamp = format_utc(local);
        // `YYYY-MM-DDTHH:MM:SSZ` -> `YYYY-MM-DD HH:MM`
        format!("{} {}", &stamp[..10], &stamp[11..16])
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Renderer = Renderer {
        color: false,
        utc_offset: |_| 0,
    };

    fn show(wire: &str) -> String {
        PLAIN.render(&Line::parse(wire).expect(wire))
    }

    #[test]
    fn messages_look_like_seed_001() {
        assert_eq!(
            show("MSG alice hi there"),
            "alice: hi there <private message>"
        );
        assert_eq!(show("BCAST alice hi"), "alice: hi <broadcast message>");
    }

    #[test]
    fn mail_carries_its_local_time_and_kind() {
        assert_eq!(
            show("MAIL bob 2026-11-22T10:15:00Z private 1 hi"),
            "[2026-11-22 10:15] bob: hi <offline private message>"
        );
        assert_eq!(
            show("MAIL bob 2026-11-22T10:15:00Z broadcast 2 all"),
            "[2026-11-22 10:15] bob: all <offline broadcast message>"
        );
        assert_eq!(
            show("MAIL bob 2026-11-22T10:15:00Z group:cs101 3 yo"),
            "[2026-11-22 10:15] [cs101] bob: yo <offline group message>"
        );
        let paris = Renderer {
            color: false,
            utc_offset: |_| 3600,
        };
        assert_eq!(paris.local_time("2026-11-22T23:30:00Z"), "2026-11-23 00:30");
        let new_york = Renderer {
            color: false,
            utc_offset: |_| -5 * 3600,
        };
        assert_eq!(
            new_york.local_time("2026-11-22T01:00:00Z"),
            "2026-11-21 20:00"
        );
        assert_eq!(PLAIN.local_time("yesterday"), "yesterday");
    }

    #[test]
    fn users_show_status_marks_and_intro() {
        assert_eq!(show("USER seas available - "), "seas");
        assert_eq!(
            show("USER seas available - The best course ever"),
            "seas   The best course ever"
        );
        assert_eq!(show("USER seas busy - hi"), "seas (busy)   hi");
        assert_eq!(
            show("USER seas offline 2026-11-22T10:15:00Z "),
            "seas (offline, last seen 2026-11-22 10:15)"
        );
    }

    #[test]
    fn history_talk_and_groups() {
        assert_eq!(
            show("HIST 2026-11-22T10:15:00Z 1234 bob hey"),
            "[2026-11-22 10:15] [chat 1234] bob: hey"
        );
        assert_eq!(
            show("HIST 2026-11-22T10:15:00Z - bob hey"),
            "[2026-11-22 10:15] bob: hey"
        );
        assert_eq!(show("TALK 1234 bob hi"), "[chat 1234] bob: hi");
        assert_eq!(show("GROUP cs101 bob hi all"), "[cs101] bob: hi all");
    }

    #[test]
    fn text_kinds_show_their_text() {
        assert_eq!(
            show("OK sent Your message was sent to seas."),
            "Your message was sent to seas."
        );
        assert_eq!(show("INFO no-mail No messages."), "No messages.");
        assert_eq!(
            show("LIST whoelse 1 The currently online users are:"),
            "The currently online users are:"
        );
        assert_eq!(show("ENTRY blocked bob"), "bob");
        assert_eq!(
            show("PRESENCE bob login *** bob has joined the chat ***"),
            "*** bob has joined the chat ***"
        );
        assert_eq!(
            show("PRESENCES bob:login,cy:timeout 0 *** Joined: bob. Left: cy (timed out). ***"),
            "*** Joined: bob. Left: cy (timed out). ***"
        );
        assert_eq!(
            show("SESSION started 12 bob Chat started with bob."),
            "Chat started with bob."
        );
        assert_eq!(
            show("BYE shutdown The server is going down."),
            "The server is going down."
        );
        assert_eq!(show("ASK username Username:"), "Username:");
        assert_eq!(
            show("ERR usage usage: chat USER"),
            "error: usage: chat USER"
        );
    }

    #[test]
    fn address_exchange_and_private_messages() {
        let secret = "ab".repeat(32);
        assert_eq!(
            show("ADDR request alice - - Would you like to accept? [y/N]"),
            "Would you like to accept? [y/N]"
        );
        assert_eq!(
            show("ADDR request alice - - "),
            "User alice wants to exchange private messages with you. \
             Would you like to accept? [y/N]"
        );
        assert_eq!(
            show(&format!("ADDR granted bob 10.0.0.2:4000 {secret} ")),
            "You and bob can now send each other private messages."
        );
        assert_eq!(
            show("ADDR gone bob - -"),
            "bob logged out and left your address book."
        );
        assert_eq!(show("ADDR future bob - - as \x07sent"), "as \\x07sent");
        assert_eq!(show("ADDR future b\x1bb - - "), "b\\x1bb: future");
        assert_eq!(
            PLAIN.private("alice", "hi \x1b[2J"),
            "[private] alice: hi \\x1b[2J"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let color = Renderer {
            color: true,
            utc_offset: |_| 0,
        };
        let err = Line::parse("ERR x bad").unwrap();
        assert_eq!(color.render(&err), "\x1b[31merror: bad\x1b[0m");
        let msg = Line::parse("MSG bob hi").unwrap();
        assert_eq!(
            color.render(&msg),
            "\x1b[1mbob\x1b[0m: hi <private message>"
        );
        assert!(!PLAIN.render(&err).contains('\x1b'));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            show("MSG bob \x1b[2Jgotcha"),
            "bob: \\x1b[2Jgotcha <private message>"
        );
        assert_eq!(show("MSG b\x07b hi"), "b\\x07b: hi <private message>");
        assert_eq!(show("INFO x ring\x07"), "ring\\x07");
        assert_eq!(PLAIN.render_unknown("FUTURE \x1b]0;x"), "FUTURE \\x1b]0;x");
    }

    #[test]
    fn bidi_and_invisible_characters_from_servers_and_peers_are_escaped() {
        // A server that did not escape them (an older one, or a forged one) and a peer's
        // direct message: the renderer is the last line of defence.
        assert_eq!(
            show("MSG bob evil\u{202e}txt.exe"),
            "bob: evil\\u{202e}txt.exe <private message>"
        );
        assert_eq!(
            show("USER seas available - a\u{2066}b\u{200b}"),
            "seas   a\\u{2066}b\\u{200b}"
        );
        assert_eq!(
            PLAIN.private("ali\u{200f}ce", "x\u{202a}y"),
            "[private] ali\\u{200f}ce: x\\u{202a}y"
        );
    }
}
