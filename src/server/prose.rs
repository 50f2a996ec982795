//! What a person at `telnet` or `nc` reads: every server [`Line`] as human text, as a pure
//! function. The native door speaks this until a program asks for the tagged lines of
//! PROTOCOL.md (see `native`).
//!
//! The looks follow the course projects, which were used from telnet: prompts that wait on
//! the same line (`Username: `, `Password: `), seed 001's `alice: hi <private message>` and
//! `name   intro` lists, seed 000's chat sessions; the texts the server writes for people
//! (`OK`, `ERR`, `INFO`, presence, `BYE`) as they are. They match what `lanchat-client`
//! shows, except that times are in UTC (the server does not know the reader's zone) and
//! nothing is coloured.
//!
//! What it does not do: decide anything. The arguments of a line are for programs; only
//! the ones a person needs (who sent a message, when) appear, and the same rules apply as
//! everywhere: every piece that came from a user is escaped ([`sanitize`]) again on its way
//! out, so no byte of the output but the final line end is a control character.

use crate::clock::{format_utc, parse_utc};
use crate::protocol::{sanitize, Kind, Line};

/// How the prose of one line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProseEnd {
    /// With a line end.
    Line,
    /// With `": "` and no line end: a prompt, the answer is typed after it.
    Prompt,
}

/// Appends the prose for `line` to `out`; says whether it left a prompt open.
pub fn write(line: &Line, out: &mut Vec<u8>) -> ProseEnd {
    let text = line.text.as_str();
    let shown = match line.kind {
        Kind::Ask => {
            out.extend_from_slice(sanitize(text.trim_end()).as_bytes());
            out.push(b' ');
            return ProseEnd::Prompt;
        }
        Kind::Msg => message(line.arg(0), text, " <private message>"),
        Kind::Bcast => message(line.arg(0), text, " <broadcast message>"),
        Kind::Mail => {
            let (group, label) = match line.arg(2).strip_prefix("group:") {
                Some(group) => (Some(group), " <offline group message>"),
                None if line.arg(2) == "broadcast" => (None, " <offline broadcast message>"),
                None => (None, " <offline private message>"),
            };
            let mut s = format!("[{}] ", time(line.arg(1)));
            if let Some(group) = group {
                s.push_str(&format!("[{group}] "));
            }
            s + &message(line.arg(0), text, label)
        }
        Kind::User => user(line),
        Kind::Hist => {
            let session = match line.arg(1) {
                "-" | "" => String::new(),
                id => format!("[chat {id}] "),
            };
            format!(
                "  [{}] {session}{}",
                time(line.arg(0)),
                message(line.arg(2), text, "")
            )
        }
        Kind::Entry => format!("  {text}"),
        Kind::Talk => format!("[chat {}] {}", line.arg(0), message(line.arg(1), text, "")),
        Kind::Group => format!("[{}] {}", line.arg(0), message(line.arg(1), text, "")),
        Kind::Addr if text.trim().is_empty() => format!("{}: {}", line.arg(1), line.arg(0)),
        // The text is written for people already: a prompt's answer, a reply, a notice, a
        // list's title, a goodbye.
        Kind::Hello
        | Kind::Welcome
        | Kind::Ok
        | Kind::Err
        | Kind::Info
        | Kind::Presence
        | Kind::Presences
        | Kind::List
        | Kind::Session
        | Kind::Addr
        | Kind::Bye => text.to_string(),
    };
    out.extend_from_slice(sanitize(&shown).as_bytes());
    out.push(b'\n');
    ProseEnd::Line
}

/// The prose for `line` as a string, line end or prompt space included.
pub fn render(line: &Line) -> String {
    let mut out = Vec::new();
    write(line, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `sender: text` and a label (seed 001's ` <private message>`).
fn message(sender: &str, text: &str, label: &str) -> String {
    format!("{sender}: {text}{label}")
}

/// `USER name status last-seen intro` as `  name (marks)   intro`.
fn user(line: &Line) -> String {
    let mark = match (line.arg(1), line.arg(2)) {
        ("available", _) => String::new(),
        ("offline", "-" | "") => " (offline)".to_string(),
        ("offline", seen) => format!(" (offline, last seen {})", time(seen)),
        (status, _) => format!(" ({status})"),
    };
    let mut out = format!("  {}{mark}", line.arg(0));
    if !line.text.trim().is_empty() {
        out.push_str("   ");
        out.push_str(&line.text);
    }
    out
}

/// A wire time (`2026-12-04T00:28:07Z`) as `2026-12-04 00:28 UTC`; anything else as it is.
fn time(stamp: &str) -> String {
    match parse_utc(stamp) {
        Some(secs) => {
            let s = format_utc(secs);
            format!("{} {} UTC", &s[..10], &s[11..16])
        }
        None => stamp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::session::HELP;

    fn show(wire: &str) -> String {
        render(&Line::parse(wire).unwrap_or_else(|| panic!("{wire}")))
    }

    #[test]
    fn the_greeting_and_prompts_wait_on_the_same_line() {
        assert_eq!(
            show("HELLO lanchat/1 Welcome to lanchat. Please log in."),
            "Welcome to lanchat. Please log in.\n"
        );
        let mut out = Vec::new();
        let ask = Line::ask("username", "Username:");
        assert_eq!(write(&ask, &mut out), ProseEnd::Prompt);
        assert_eq!(out, b"Username: ");
        assert_eq!(show("ASK password Password:"), "Password: ");
        assert_eq!(
            show("ASK intro Please enter your personal introduction:"),
            "Please enter your personal introduction: "
        );
        assert_eq!(
            write(&Line::ok("sent", "Sent."), &mut Vec::new()),
            ProseEnd::Line
        );
    }

    #[test]
    fn replies_errors_and_notices_are_their_text() {
        assert_eq!(
            show("WELCOME columbia Login successful, Welcome to lanchat!"),
            "Login successful, Welcome to lanchat!\n"
        );
        assert_eq!(
            show("OK sent Your message was sent to seas."),
            "Your message was sent to seas.\n"
        );
        assert_eq!(
            show("ERR bad-login Username or password incorrect."),
            "Username or password incorrect.\n"
        );
        assert_eq!(
            show("INFO no-mail No messages received while offline."),
            "No messages received while offline.\n"
        );
        assert_eq!(
            show("PRESENCE seas login *** seas has joined the chat ***"),
            "*** seas has joined the chat ***\n"
        );
        assert_eq!(
            show("PRESENCES ann:login,bob:timeout 0 *** Joined: ann. Left: bob (timed out). ***"),
            "*** Joined: ann. Left: bob (timed out). ***\n"
        );
        assert_eq!(
            show("SESSION started 6387 seas Chat started with seas (session 6387)."),
            "Chat started with seas (session 6387).\n"
        );
        assert_eq!(
            show("BYE logout Logging off. Goodbye!"),
            "Logging off. Goodbye!\n"
        );
        assert_eq!(show("OK x "), "\n");
    }

    #[test]
    fn messages_look_like_seed_001() {
        assert_eq!(
            show("MSG columbia hello"),
            "columbia: hello <private message>\n"
        );
        assert_eq!(
            show("BCAST columbia hi all"),
            "columbia: hi all <broadcast message>\n"
        );
        assert_eq!(show("TALK 6387 seas hi"), "[chat 6387] seas: hi\n");
        assert_eq!(show("GROUP cs101 seas hi all"), "[cs101] seas: hi all\n");
    }

    #[test]
    fn offline_mail_carries_its_time_in_utc_and_its_kind() {
        assert_eq!(
            show("MAIL columbia 2026-11-22T00:51:59Z private 3f9c0e1d2a4b5c6d are you there"),
            "[2026-11-22 00:51 UTC] columbia: are you there <offline private message>\n"
        );
        assert_eq!(
            show("MAIL columbia 2026-11-22T00:52:03Z broadcast 0a1b hi everyone"),
            "[2026-11-22 00:52 UTC] columbia: hi everyone <offline broadcast message>\n"
        );
        assert_eq!(
            show("MAIL columbia 2026-11-22T00:54:07Z group:cs101 9e8d while you are out"),
            "[2026-11-22 00:54 UTC] [cs101] columbia: while you are out <offline group message>\n"
        );
    }

    #[test]
    fn lists_are_a_title_and_indented_items() {
        assert_eq!(
            show("LIST whoelse 2 The currently online users are:"),
            "The currently online users are:\n"
        );
        assert_eq!(show("USER sean available - "), "  sean\n");
        assert_eq!(
            show("USER seas busy - my intro"),
            "  seas (busy)   my intro\n"
        );
        assert_eq!(
            show("USER seas offline 2026-12-04T00:28:07Z "),
            "  seas (offline, last seen 2026-12-04 00:28 UTC)\n"
        );
        assert_eq!(show("USER ghost offline - "), "  ghost (offline)\n");
        assert_eq!(
            show("HIST 2026-11-22T00:55:52Z 1111 seas hi columbia"),
            "  [2026-11-22 00:55 UTC] [chat 1111] seas: hi columbia\n"
        );
        assert_eq!(
            show("HIST 2026-11-22T00:51:58Z - columbia hello there"),
            "  [2026-11-22 00:51 UTC] columbia: hello there\n"
        );
        assert_eq!(show("ENTRY blocked bob"), "  bob\n");
        // The help list reads as a table.
        let help = Line::entry_list("help", "Commands:", HELP.iter().map(|h| h.to_string()));
        let text: String = help.iter().map(render).collect();
        assert!(
            text.starts_with("Commands:\n  whoelse | online    "),
            "{text}"
        );
        assert_eq!(text.lines().count(), HELP.len() + 1);
        assert!(!text.contains("ENTRY") && !text.contains("LIST"));
    }

    #[test]
    fn the_address_exchange_shows_its_text_and_never_the_secret() {
        let secret = "ab".repeat(32);
        assert_eq!(
            show(&format!(
                "ADDR granted bob 10.0.0.2:4000 {secret} You and bob can now send each other private messages."
            )),
            "You and bob can now send each other private messages.\n"
        );
        assert_eq!(show("ADDR gone bob - - "), "bob: gone\n");
    }

    #[test]
    fn no_kind_leaves_a_tag_and_every_kind_ends_in_one_line_or_a_prompt() {
        for kind in Kind::ALL {
            let args: Vec<&str> = (0..kind.arity()).map(|_| "x").collect();
            let line = Line::new(kind, &args, "some text");
            let mut out = Vec::new();
            let ending = write(&line, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.starts_with(kind.as_str()), "{kind:?}: {text:?}");
            match ending {
                ProseEnd::Line => assert_eq!(text.matches('\n').count(), 1, "{text:?}"),
                ProseEnd::Prompt => assert!(!text.contains('\n'), "{text:?}"),
            }
            assert!(
                text.ends_with('\n') == (ending == ProseEnd::Line),
                "{text:?}"
            );
        }
    }

    #[test]
    fn control_characters_from_users_are_escaped_again() {
        // The server sanitizes on the way in; this is the second line of defence.
        assert_eq!(
            show("MSG bob \x1b[2Jgotcha\u{202e}"),
            "bob: \\x1b[2Jgotcha\\u{202e} <private message>\n"
        );
        assert_eq!(show("USER seas available - a\x07b"), "  seas   a\\x07b\n");
        assert_eq!(show("ASK intro Say\x1b:"), "Say\\x1b: ");
        assert_eq!(show("ERR x a\rb"), "a\\x0db\n");
    }
}
