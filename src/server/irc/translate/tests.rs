//! Tests of `translate`: the bytes each case becomes, pinned.

use super::*;
use crate::protocol::Status;
use crate::server::rules::{LogoutReason, PresenceChange};
use PresenceChange::{Joined, Left};

struct Stub;

impl People for Stub {
    fn mask(&self, name: &str) -> String {
        format!("{name}!{name}@h")
    }
    fn quit_reason(&self, name: &str) -> Option<String> {
        (name == "quitter").then(|| "Quit: bye all".to_string())
    }
    fn renamed_to(&self, name: &str) -> Option<String> {
        (name == "old").then(|| "new".to_string())
    }
    fn is_renaming(&self, name: &str) -> bool {
        name == "new"
    }
    fn away(&self, _: &str) -> Option<String> {
        Some("lunch".into())
    }
}

fn view(in_lobby: bool, caps: bool) -> View<'static> {
    View {
        nick: "me",
        server: "srv",
        lobby: "#lanchat",
        in_lobby,
        server_time: caps,
        away_notify: caps,
        today: "2026-11-22",
    }
}

/// What an IRC client gets for what a native client would read as `native`: messages and
/// mail reach the IRC door as events (the same event renders `native` for a native
/// client), replies as lines.
fn run(native: Line, view: &View<'_>) -> String {
    let mut out = Vec::new();
    match as_event(&native) {
        Some(e) => event(&e, view, &Stub, &mut out),
        None => line(&native, view, &mut out),
    }
    String::from_utf8(out).unwrap()
}

/// The event a message or mail line is the native rendering of.
fn as_event(l: &Line) -> Option<ChatEvent> {
    let text = l.text.clone();
    Some(match l.kind {
        Kind::Msg => ChatEvent::Message {
            from: l.arg(0).into(),
            text,
            notice: false,
        },
        Kind::Talk => ChatEvent::Talk {
            session: l.arg(0).parse().unwrap(),
            from: l.arg(1).into(),
            text,
            notice: false,
        },
        Kind::Bcast => ChatEvent::Broadcast {
            from: l.arg(0).into(),
            text,
            notice: false,
        },
        Kind::Group => ChatEvent::GroupMessage {
            group: l.arg(0).into(),
            from: l.arg(1).into(),
            text,
            notice: false,
        },
        Kind::Mail => ChatEvent::Mail(crate::store::Mail {
            from: l.arg(0).into(),
            sent_at: crate::clock::parse_utc(l.arg(1)).unwrap(),
            kind: match l.arg(2) {
                "private" => crate::store::MailKind::Private,
                "broadcast" => crate::store::MailKind::Broadcast,
                g => crate::store::MailKind::Group(g.trim_start_matches("group:").into()),
            },
            id: l.arg(3).into(),
            text,
        }),
        _ => return None,
    })
}

fn run_event(e: &ChatEvent, view: &View<'_>) -> String {
    let mut out = Vec::new();
    event(e, view, &Stub, &mut out);
    String::from_utf8(out).unwrap()
}

fn presence_of(who: &str, change: PresenceChange) -> ChatEvent {
    ChatEvent::presence(who, change)
}

/// The change a presence word names.
fn change(word: &str) -> PresenceChange {
    match word {
        "login" => Joined,
        "logout" => Left(LogoutReason::Requested),
        "timeout" => Left(LogoutReason::Timeout),
        "dropped" => Left(LogoutReason::Dropped),
        "busy" => PresenceChange::Status(Status::Busy),
        _ => PresenceChange::Status(Status::Available),
    }
}

#[test]
fn messages_become_privmsgs() {
    let v = view(true, false);
    assert_eq!(
        run(Line::new(Kind::Msg, &["bob"], "hi there"), &v),
        ":bob!bob@h PRIVMSG me :hi there\r\n"
    );
    assert_eq!(
        run(Line::new(Kind::Talk, &["1234", "bob"], "in session"), &v),
        ":bob!bob@h PRIVMSG me :in session\r\n"
    );
    assert_eq!(
        run(Line::new(Kind::Bcast, &["bob"], "all"), &v),
        ":bob!bob@h PRIVMSG #lanchat :all\r\n"
    );
    assert_eq!(run(Line::new(Kind::Bcast, &["me"], "echo"), &v), "");
    let said = |notice| ChatEvent::Message {
        from: "bob".into(),
        text: "fyi".into(),
        notice,
    };
    assert_eq!(run_event(&said(true), &v), ":bob!bob@h NOTICE me :fyi\r\n");
    assert_eq!(
        run_event(&said(false), &v),
        ":bob!bob@h PRIVMSG me :fyi\r\n"
    );
    let group = ChatEvent::GroupMessage {
        group: "cs101".into(),
        from: "bob".into(),
        text: "g".into(),
        notice: true,
    };
    assert_eq!(run_event(&group, &v), ":bob!bob@h NOTICE #cs101 :g\r\n");
    let talk = ChatEvent::Talk {
        session: 1234,
        from: "bob".into(),
        text: "psst".into(),
        notice: true,
    };
    assert_eq!(run_event(&talk, &v), ":bob!bob@h NOTICE me :psst\r\n");
    assert_eq!(
        run(Line::new(Kind::Bcast, &["bob"], "x"), &view(false, false)),
        ""
    );
    assert_eq!(
        run(Line::new(Kind::Group, &["cs101", "bob"], "g"), &v),
        ":bob!bob@h PRIVMSG #cs101 :g\r\n"
    );
    assert_eq!(
        run(
            Line::new(Kind::Msg, &["bob"], "\\x01ACTION waves\\x01 \\x07"),
            &v
        ),
        ":bob!bob@h PRIVMSG me :\x01ACTION waves\x01 \\x07\r\n"
    );
}

#[test]
fn long_messages_are_split_into_lines_that_fit() {
    let text = "word ".repeat(300);
    let out = run(
        Line::new(Kind::Msg, &["bob"], text.trim_end()),
        &view(true, false),
    );
    let lines: Vec<&str> = out.split_inclusive("\r\n").collect();
    assert!(lines.len() >= 3, "{}", lines.len());
    for l in &lines {
        assert!(
            l.len() <= 512 && l.starts_with(":bob!bob@h PRIVMSG me :"),
            "{l}"
        );
    }
}

#[test]
fn stored_messages_carry_their_time() {
    let mail = |kind: &str, time: &str| Line::new(Kind::Mail, &["bob", time, kind, "1"], "hey");
    let v = view(true, false);
    assert_eq!(
        run(mail("private", "2026-11-22T10:15:00Z"), &v),
        ":bob!bob@h PRIVMSG me :[10:15 UTC] hey\r\n"
    );
    assert_eq!(
        run(mail("group:cs101", "2026-11-21T09:05:00Z"), &v),
        ":bob!bob@h PRIVMSG me :[2026-11-21 09:05 UTC #cs101] hey\r\n"
    );
    assert_eq!(
        run(mail("broadcast", "2026-11-22T10:15:00Z"), &view(true, true)),
        "@time=2026-11-22T10:15:00.000Z :bob!bob@h PRIVMSG me :[#lanchat] hey\r\n"
    );
}

#[test]
fn presence_becomes_join_quit_nick_and_away() {
    let p = |u: &str, word| presence_of(u, change(word));
    let run = |e: ChatEvent, v: &View<'_>| run_event(&e, v);
    let v = view(true, false);
    assert_eq!(run(p("bob", "login"), &v), ":bob!bob@h JOIN #lanchat\r\n");
    assert_eq!(run(p("bob", "login"), &view(false, false)), "");
    assert_eq!(run(p("me", "login"), &v), "");
    assert_eq!(run(p("new", "login"), &v), "");
    assert_eq!(
        run(p("bob", "logout"), &v),
        ":bob!bob@h QUIT :Left the chat\r\n"
    );
    assert_eq!(
        run(p("bob", "timeout"), &v),
        ":bob!bob@h QUIT :Ping timeout\r\n"
    );
    assert_eq!(
        run(p("quitter", "logout"), &v),
        ":quitter!quitter@h QUIT :Quit: bye all\r\n"
    );
    assert_eq!(run(p("old", "logout"), &v), ":old!old@h NICK new\r\n");
    assert_eq!(run(p("bob", "busy"), &v), "");
    assert_eq!(
        run(p("bob", "busy"), &view(true, true)),
        ":bob!bob@h AWAY :lunch\r\n"
    );
    assert_eq!(
        run(p("bob", "available"), &view(true, true)),
        ":bob!bob@h AWAY\r\n"
    );
}

#[test]
fn lines_for_many_read_the_nick_only_to_compare_it_with_their_source() {
    let p = |u: &str, change| presence_of(u, change);
    let group = |notice| ChatEvent::GroupMessage {
        group: "cs101".into(),
        from: "bob".into(),
        text: "hi all".into(),
        notice,
    };
    let bcast = |notice| ChatEvent::Broadcast {
        from: "bob".into(),
        text: "to everyone".into(),
        notice,
    };
    let events = [
        group(false),
        group(true),
        bcast(false),
        bcast(true),
        p("bob", Joined),
        p("bob", Left(LogoutReason::Requested)),
        p("quitter", Left(LogoutReason::Dropped)),
        p("old", Left(LogoutReason::Requested)),
        p("bob", PresenceChange::Status(Status::Busy)),
        p("bob", PresenceChange::Status(Status::Available)),
    ];
    for e in &events {
        let source = shared_source(e).expect("an event for many");
        for (lobby, caps) in [(true, false), (false, true)] {
            let as_nick = |nick| {
                let v = View {
                    nick,
                    ..view(lobby, caps)
                };
                run_event(e, &v)
            };
            assert_eq!(as_nick("me"), as_nick("somebody"), "{e:?}");
            assert_eq!(as_nick(source), "", "{e:?}: not to its own source");
        }
    }
    let private = ChatEvent::Message {
        from: "bob".into(),
        text: "hi".into(),
        notice: false,
    };
    assert_eq!(shared_source(&private), None);
}

#[test]
fn a_summary_becomes_the_lines_of_its_changes() {
    let s = |items: &[(&str, &'static str)], more| ChatEvent::PresenceSummary {
        changes: items.iter().map(|(u, c)| (u.to_string(), *c)).collect(),
        more,
    };
    let run = |e: ChatEvent, v: &View<'_>| run_event(&e, v);
    assert_eq!(
        run(
            s(&[("bob", "login"), ("me", "login"), ("cy", "timeout")], 0),
            &view(true, false)
        ),
        ":bob!bob@h JOIN #lanchat\r\n:cy!cy@h QUIT :Ping timeout\r\n"
    );
    assert_eq!(
        run(
            s(&[("bob", "login-busy"), ("cy", "available")], 0),
            &view(true, true)
        ),
        ":bob!bob@h JOIN #lanchat\r\n:bob!bob@h AWAY :lunch\r\n:cy!cy@h AWAY\r\n"
    );
    assert_eq!(
        run(s(&[], 3), &view(true, false)),
        ":*lanchat!lanchat@srv NOTICE me :3 more users joined, left or changed status; /names #lanchat lists who is here.\r\n"
    );
}

#[test]
fn other_lines_are_notices_from_the_service() {
    let v = view(true, false);
    assert_eq!(
        run(Line::err("unknown-user", "No such user: zed"), &v),
        ":*lanchat!lanchat@srv NOTICE me :error: No such user: zed\r\n"
    );
    assert_eq!(run(Line::info("no-mail", "none"), &v), "");
    let request = run(
        Line::new(
            Kind::Session,
            &["request", "1234", "bob"],
            "bob wants to chat.",
        ),
        &v,
    );
    assert!(request.contains("/msg *lanchat accept"), "{request}");
    assert_eq!(
        run(Line::bye("shutdown", "Server going down"), &v),
        "ERROR :Closing Link: me (Server going down)\r\n"
    );
}

#[test]
fn irc_controls_are_restored_and_nothing_else() {
    assert_eq!(irc_text("plain"), "plain");
    assert_eq!(
        irc_text("\\x02bold\\x02 \\x0304red"),
        "\x02bold\x02 \x0304red"
    );
    assert_eq!(irc_text("\\x0d\\x0a\\x00"), "\\x0d\\x0a\\x00");
    assert_eq!(irc_text("C:\\xyz \\x"), "C:\\xyz \\x");
    assert_eq!(
        short_time("2026-11-22T10:15:00Z", "2026-11-22"),
        "[10:15 UTC]"
    );
}
