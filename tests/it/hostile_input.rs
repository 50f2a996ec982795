//! Issue 23, items 5 and 6: what a hostile user types. No line of any door costs more than
//! a few milliseconds (IRC wildcard masks), and nothing one user sends reaches another's
//! terminal raw (control characters, bidirectional overrides, zero-width characters).

use crate::support::{IrcClient, TestServer, TIMEOUT};
use lanchat::config::{AuthMode, OptionalPort};
use lanchat::protocol::Kind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A server in open mode (any nick logs in) with the IRC door on a free port.
fn irc_server() -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(|c| {
        c.auth = AuthMode::Open;
        c.irc_port = OptionalPort::Any;
    });
    let irc = server.irc.expect("the IRC door is open");
    (server, irc)
}

/// A mask whose every `*` the old backtracking matcher tried at every position: seconds of
/// CPU against a name of 30 `a`s.
const BAD_MASK: &str = "*a*a*a*a*a*a*a*a*a*a*b";

#[test]
fn wildcard_masks_in_list_and_who_answer_at_once() {
    let (_server, irc) = irc_server();
    let long = "a".repeat(30);
    let mut owner = IrcClient::register(irc, &format!("a{long}"), "owner");
    owner.send(&format!("JOIN #{long}"));
    owner.until(" 366 ", TIMEOUT);
    let mut prober = IrcClient::register(irc, "prober", "prober");
    // Each answer takes milliseconds; the bound leaves room for a loaded machine. The old
    // matcher took seconds for the first LIST alone (in a debug build, tens of seconds).
    let bound = Duration::from_secs(2);

    let started = Instant::now();
    prober.send(&format!("LIST #{BAD_MASK}"));
    let list = prober.until(" 323 ", bound);
    assert!(!list.iter().any(|l| l.contains(" 322 ")), "{list:?}");
    prober.send(&format!("LIST #{long}*,#a?a*"));
    let list = prober.until(" 323 ", bound);
    assert!(
        list.iter().any(|l| l.contains(&format!("#{long}"))),
        "{list:?}"
    );

    prober.send(&format!("WHO {BAD_MASK}"));
    let who = prober.until(" 315 ", bound);
    assert!(!who.iter().any(|l| l.contains(" 352 ")), "{who:?}");
    prober.send("WHO a*a?a");
    let who = prober.until(" 315 ", bound);
    assert!(
        who.iter().any(|l| l.contains(" 352 ") && l.contains(&long)),
        "{who:?}"
    );

    // A whole 510-byte line of such masks.
    let mut line = String::from("LIST ");
    while line.len() + BAD_MASK.len() + 2 <= 510 {
        line.push('#');
        line.push_str(BAD_MASK);
        line.push(',');
    }
    line.pop();
    prober.send(&line);
    prober.until(" 323 ", bound);
    // And the server is free for the next line at once.
    prober.send("PING :still-here");
    prober.until("still-here", bound);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// Characters that must never reach a terminal raw, and how each must arrive instead.
const RAW_AND_ESCAPED: &[(&str, &str)] = &[
    ("\x1b", "\\x1b"),
    ("\x07", "\\x07"),
    ("\u{9b}", "\\u{9b}"),
    ("\u{202e}", "\\u{202e}"),
    ("\u{2066}", "\\u{2066}"),
    ("\u{200b}", "\\u{200b}"),
    ("\u{200f}", "\\u{200f}"),
];

/// A text with every character of [`RAW_AND_ESCAPED`].
fn hostile(prefix: &str) -> String {
    let raw: String = RAW_AND_ESCAPED.iter().map(|(raw, _)| *raw).collect();
    format!("{prefix}{raw}end")
}

/// Asserts `line` carries none of [`RAW_AND_ESCAPED`] raw and all of them escaped.
fn assert_escaped(what: &str, line: &str) {
    for (raw, escaped) in RAW_AND_ESCAPED {
        assert!(!line.contains(raw), "{what}: raw {raw:?} in {line:?}");
        assert!(line.contains(escaped), "{what}: no {escaped} in {line:?}");
    }
}

/// The one line of `lines` that contains `needle`.
fn the_line<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {lines:?}"))
}

#[test]
fn nothing_a_user_sends_reaches_another_terminal_raw_on_any_door() {
    let (server, irc) = irc_server();
    // An IRC realname with ESC, BEL, CTCP, a C1 control and bidi/zero-width characters.
    let mut mallory = IrcClient::register(irc, "mallory", &hostile("\x01VERSION\x01 "));
    let mut viewer = IrcClient::register(irc, "viewer", "viewer");
    let bob = server.connect();
    bob.send("bob");
    bob.expect(Kind::Welcome);
    bob.read_mail();

    viewer.send("WHOIS mallory");
    let whois = viewer.until(" 318 ", TIMEOUT);
    let real = the_line(&whois, " 311 ");
    assert_escaped("WHOIS realname", real);
    assert!(real.contains("\\x01VERSION\\x01"), "{real:?}");
    viewer.send("WHO mallory");
    assert_escaped(
        "WHO realname",
        the_line(&viewer.until(" 315 ", TIMEOUT), " 352 "),
    );

    // A channel name, a nick and a WHO mask are not echoed back raw either.
    viewer.send(&format!("JOIN #{}", hostile("c")));
    assert_escaped(
        "JOIN echo",
        the_line(&viewer.until(" 403 ", TIMEOUT), " 403 "),
    );
    viewer.send(&format!("PRIVMSG {} :hi", hostile("n")));
    assert_escaped(
        "PRIVMSG echo",
        the_line(&viewer.until(" 401 ", TIMEOUT), " 401 "),
    );
    viewer.send(&format!("WHO {}", hostile("m")));
    assert_escaped(
        "WHO echo",
        the_line(&viewer.until(" 315 ", TIMEOUT), " 315 "),
    );
    viewer.send(&format!("CAP REQ :{}", hostile("cap")));
    assert_escaped(
        "CAP echo",
        the_line(&viewer.until(" NAK ", TIMEOUT), " NAK "),
    );

    // A message: IRC formatting (bold) reaches IRC clients, a terminal gets it escaped;
    // ESC, BEL and bidi characters reach nobody raw.
    mallory.send(&format!("PRIVMSG viewer :{}", hostile("\x02bold\x02 ")));
    let privmsg = viewer.until("PRIVMSG viewer", TIMEOUT).pop().unwrap();
    assert_escaped("IRC to IRC", &privmsg);
    assert!(privmsg.contains("\x02bold\x02"), "{privmsg:?}");
    mallory.send(&format!("PRIVMSG bob :{}", hostile("\x02bold\x02 ")));
    let msg = bob.expect(Kind::Msg);
    assert_escaped("IRC to native", &msg.text);
    assert!(msg.text.contains("\\x02bold\\x02"), "{msg}");
    mallory.send(&format!("AWAY :{}", hostile("away")));
    mallory.until(" 306 ", TIMEOUT);
    viewer.send("WHOIS mallory");
    assert_escaped(
        "away text",
        the_line(&viewer.until(" 318 ", TIMEOUT), " 301 "),
    );

    // Native (and web: the same parser) to IRC and native: messages and intros.
    bob.send(&format!("intro {}", hostile("i")));
    bob.expect(Kind::Ok);
    viewer.send("WHOIS bob");
    assert_escaped(
        "native intro",
        the_line(&viewer.until(" 318 ", TIMEOUT), " 311 "),
    );
    bob.send(&format!("message viewer {}", hostile("m")));
    assert_escaped(
        "native to IRC",
        &viewer.until("PRIVMSG viewer", TIMEOUT).pop().unwrap(),
    );
    let carol = server.connect();
    carol.send("carol");
    carol.expect(Kind::Welcome);
    carol.read_mail();
    bob.send(&format!("message carol {}", hostile("m")));
    assert_escaped("native to native", &carol.expect(Kind::Msg).text);
    carol.send("whoelse");
    let (_, people) = carol.expect_list("whoelse");
    let bob_entry = people.iter().find(|l| l.to_wire().contains("bob")).unwrap();
    assert_escaped("intro in whoelse", &bob_entry.to_wire());
}

#[test]
fn an_intro_or_history_stored_raw_on_disk_is_escaped_when_read_back() {
    // Written before the rule grew (or by hand): characters the rule escapes, on disk.
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    {
        let (store, mut directory) = lanchat::store::Store::open(&data_dir, 1000).unwrap();
        directory.record(lanchat::store::Event::Intro {
            user: "bob".into(),
            text: hostile("i"),
        });
        store.write_journal(|| &mut directory).unwrap();
        let said = lanchat::store::HistoryEntry {
            at: 1_700_000_000,
            session: None,
            sender: "bob".into(),
            text: hostile("h"),
        };
        store.append_history("bob", "carol", &said).unwrap();
    }
    let server = TestServer::start_on(&data_dir);
    let _bob = server.login("bob");
    let carol = server.login("carol");
    carol.send("whoelse");
    let (_, people) = carol.expect_list("whoelse");
    let bob = people
        .iter()
        .find(|l| l.arg(0) == "bob")
        .expect("bob is listed");
    assert_escaped("stored intro", &bob.to_wire());
    carol.send("history bob");
    let (_, lines) = carol.expect_list("history");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_escaped("stored history", &lines[0].to_wire());
}
