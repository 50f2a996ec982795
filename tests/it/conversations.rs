use crate::support::*;
use lanchat::clock::SystemClock;
use lanchat::config::{AuthMode, DuplicateLogin, LockoutKey};
use lanchat::protocol::Kind;
use std::sync::Arc;
use std::time::Duration;

/// alice asks bob for a session and bob accepts; returns the session number.
fn start_session(a: &TestClient, b: &TestClient) -> String {
    a.send("chat bob");
    a.expect_ok("chat-requested");
    let req = b.expect_code(Kind::Session, "request");
    assert_eq!(req.arg(2), "alice");
    b.send("accept");
    let started_b = b.expect_code(Kind::Session, "started");
    let started_a = a.expect_code(Kind::Session, "started");
    assert_eq!(started_a.arg(1), started_b.arg(1));
    assert_eq!((started_a.arg(2), started_b.arg(2)), ("bob", "alice"));
    let id = started_a.arg(1).to_string();
    let n: u32 = id.parse().unwrap();
    assert!((1000..=9999).contains(&n));
    id
}

#[test]
fn a_chat_session_carries_lines_both_ways_and_is_logged() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let id = start_session(&a, &b);
    a.send("");
    a.send("   ");
    a.send("hello there, bob");
    let t = b.expect(Kind::Talk);
    assert_eq!(
        (t.arg(0), t.arg(1), t.text.as_str()),
        (id.as_str(), "alice", "hello there, bob")
    );
    b.send("hi alice");
    assert_eq!(a.expect(Kind::Talk).text, "hi alice");
    b.send("say block party tonight");
    assert_eq!(a.expect(Kind::Talk).text, "block party tonight");
    b.send("yes");
    assert_eq!(
        a.expect(Kind::Talk).text,
        "yes",
        "'yes' with nothing pending is a chat line"
    );
    for cmd in ["snum", "SNUM"] {
        a.send(cmd);
        assert!(a.expect_ok("snum").text.contains(&id));
    }
    // Inside a session, lines that merely start with a command word are conversation...
    a.send("who is there? bye for now");
    assert_eq!(b.expect(Kind::Talk).text, "who is there? bye for now");
    // ...and commands need a leading '/' (except end, snum, help, say, accept, decline, logout).
    a.send("/whoelse");
    a.expect_list("whoelse");
    a.send(&format!("END_REQUEST({id})"));
    a.expect_code(Kind::Session, "ended");
    let ended = b.expect_code(Kind::Session, "ended");
    assert_eq!(ended.arg(1), id);
    a.send("snum");
    a.expect_code(Kind::Info, "no-session");
    // Outside a session a plain line is an unknown command again.
    a.send("hello?");
    a.expect_err("unknown-command");
    a.send("history bob");
    let (_, h) = a.expect_list("history");
    let logged: Vec<_> = h
        .iter()
        .map(|l| (l.arg(1), l.arg(2), l.text.as_str()))
        .collect();
    assert_eq!(
        logged,
        [
            (id.as_str(), "alice", "hello there, bob"),
            (id.as_str(), "bob", "hi alice"),
            (id.as_str(), "bob", "block party tonight"),
            (id.as_str(), "bob", "yes"),
            (id.as_str(), "alice", "who is there? bye for now"),
        ]
    );
}

#[test]
fn sessions_end_from_either_side_and_on_disconnect() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    start_session(&a, &b);
    b.send("end");
    b.expect_code(Kind::Session, "ended");
    a.expect_code(Kind::Session, "ended");

    let id = start_session(&a, &b);
    drop(b);
    let ended = a.expect_code(Kind::Session, "ended");
    assert_eq!((ended.arg(1), ended.arg(2)), (id.as_str(), "bob"));
    a.send("snum");
    a.expect_code(Kind::Info, "no-session");

    let b = s.login("bob");
    start_session(&a, &b);
    a.send("log out");
    b.expect_code(Kind::Session, "ended");
    b.send("snum");
    b.expect_code(Kind::Info, "no-session");
}

#[test]
fn chat_requests_that_cannot_start_say_why() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let c = s.login("carol");
    a.send("chat dave");
    a.expect_err("unreachable");
    a.send("CHAT_REQUEST(alice-zed)");
    a.expect_err("unknown-user");
    a.send("chat alice");
    a.expect_err("self");
    start_session(&a, &b);
    c.send("chat bob");
    c.expect_err("unreachable");
    c.send("chat alice");
    c.expect_err("unreachable");
    a.send("/chat carol");
    a.expect_err("in-session");
    // Declining.
    c.send("decline");
    c.expect_err("nothing-pending");
    let d = s.login("dave");
    d.send("CHAT_REQUEST(dave-carol)");
    d.expect_ok("chat-requested");
    c.expect_code(Kind::Session, "request");
    c.send("decline");
    c.expect_ok("declined");
    d.expect_code(Kind::Session, "declined");
    // Blocked: carol blocks dave, dave cannot open a session.
    c.send("block dave");
    c.expect_ok("blocked");
    d.send("chat carol");
    d.expect_err("unreachable");
    c.expect_silence(Duration::from_millis(100));
}

#[test]
fn blacklist_commands_and_their_errors() {
    let s = TestServer::start();
    let a = s.login("alice");
    a.send("block alice");
    a.expect_err("self");
    a.send("block zed");
    a.expect_err("unknown-user");
    a.send("block bob");
    a.expect_ok("blocked");
    a.send("block bob");
    a.expect_err("already-blocked");
    a.send("blocked");
    let (_, list) = a.expect_list("blocked");
    assert_eq!(list[0].text, "bob");
    a.send("unblock carol");
    a.expect_err("not-blocked");
    a.send("unblock bob");
    a.expect_ok("unblocked");
    a.send("blocked");
    let (_, list) = a.expect_list("blocked");
    assert!(list.is_empty());
    a.send("unblock bob");
    a.expect_err("not-blocked");
}

#[test]
fn every_blacklist_effect_and_it_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let s = TestServer::start_on(&data);
        let a = s.login("alice");
        a.send("block bob");
        a.expect_ok("blocked");
    }
    let s = TestServer::start_on(&data);
    let b = s.login("bob");
    let c = s.login("carol");
    let a = s.login("alice");
    // bob sees no presence of alice; carol does.
    let p = c.expect(Kind::Presence);
    assert_eq!(p.arg(0), "alice");
    b.expect_silence(Duration::from_millis(150));
    // bob cannot message alice, and is told.
    b.send("message alice hi");
    b.expect_err("blocked");
    b.send("broadcast user alice message hi");
    b.expect_err("blocked");
    // bob's broadcasts skip alice.
    b.send("broadcast hello all");
    assert!(b.expect_ok("broadcast").text.contains("blocked you"));
    assert_eq!(c.expect(Kind::Bcast).text, "hello all");
    a.expect_silence(Duration::from_millis(150));
    // alice is hidden from bob's whoelse / online / wholast.
    for cmd in ["whoelse", "online"] {
        b.send(cmd);
        let (_, users) = b.expect_list("whoelse");
        let names: Vec<_> = users.iter().map(|u| u.arg(0)).collect();
        assert_eq!(names, ["carol"], "{cmd}");
    }
    b.send("list");
    let (_, users) = b.expect_list("list");
    let names: Vec<_> = users.iter().map(|u| u.arg(0)).collect();
    assert_eq!(names, ["bob", "carol"]);
    b.send("wholast 60");
    let (_, users) = b.expect_list("wholast");
    assert!(users.iter().all(|u| u.arg(0) != "alice"));
    // alice can still message bob.
    a.send("message bob you cannot answer");
    a.expect_ok("sent");
    assert_eq!(b.expect(Kind::Msg).arg(0), "alice");
    // No logout notice for bob either.
    drop(a);
    assert_eq!(c.expect(Kind::Presence).arg(0), "alice");
    b.expect_silence(Duration::from_millis(150));
}

#[test]
fn busy_and_invisible_statuses() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    assert_eq!(a.expect(Kind::Presence).arg(1), "login");
    a.send("status");
    assert!(a.expect_ok("status").text.contains("available"));
    b.send("status busy");
    b.expect_ok("status");
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "busy"));
    a.send("whoelse");
    let (_, users) = a.expect_list("whoelse");
    assert_eq!(users[0].arg(1), "busy");
    a.send("message bob are you there");
    a.expect_ok("sent");
    a.expect_code(Kind::Info, "busy");
    b.expect(Kind::Msg);

    b.send("status invisible");
    b.expect_ok("status");
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "logout"));
    a.send("whoelse");
    let (_, users) = a.expect_list("whoelse");
    assert!(users.is_empty());
    // Still receives messages, while the sender is told what an offline user would get.
    a.send("message bob still there?");
    a.expect_ok("queued");
    assert_eq!(b.expect(Kind::Msg).text, "still there?");
    a.send("broadcast user bob message listed");
    a.expect_ok("queued");
    assert_eq!(b.expect(Kind::Bcast).text, "listed");
    a.send("broadcast message everyone");
    let ack = a.expect_ok("broadcast");
    assert!(ack.text.contains("sent to 0 online"), "{ack}");
    assert_eq!(b.expect(Kind::Bcast).text, "everyone");
    a.send("chat bob");
    a.expect_err("unreachable");
    // Invisible users' logouts and logins are not announced.
    b.logout();
    a.expect_silence(Duration::from_millis(150));
    let b = s.login("bob");
    b.expect_code(Kind::Info, "status");
    a.expect_silence(Duration::from_millis(150));
    b.send("status available");
    b.expect_ok("status");
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "login"));
    b.send("status sleepy");
    b.expect_err("usage");
}

#[test]
fn groups_with_an_offline_member_who_gets_mail_at_login() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let s = TestServer::start_on(&data);
        let a = s.login("alice");
        let b = s.login("bob");
        let c = s.login("carol");
        a.send("group create cs101");
        a.expect_ok("group-created");
        a.send("group create cs101");
        a.expect_err("group-exists");
        b.send("group join cs101");
        b.expect_ok("group-joined");
        b.send("group join cs101");
        b.expect_err("already-member");
        c.send("group join cs101");
        c.expect_ok("group-joined");
        c.send("group join nope");
        c.expect_err("no-such-group");
        c.logout();
        b.send("group members cs101");
        let (_, members) = b.expect_list("members");
        let names: Vec<_> = members.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(names, ["alice (online)", "bob (online)", "carol"]);
        b.send("group list");
        let (_, groups) = b.expect_list("groups");
        assert_eq!(groups[0].text, "cs101 (3 members) *");
        b.send("group send cs101 exam moved to friday");
        assert!(b
            .expect_ok("group-sent")
            .text
            .contains("1 online, 1 will get it"));
        let g = a.expect(Kind::Group);
        assert_eq!(
            (g.arg(0), g.arg(1), g.text.as_str()),
            ("cs101", "bob", "exam moved to friday")
        );
        let d = s.login("dave");
        d.send("gsend cs101 let me in");
        d.expect_err("not-member");
        d.send("group leave cs101");
        d.expect_err("not-member");
    }
    // Groups persist; carol gets the group message at login.
    let s = TestServer::start_on(&data);
    let c = s.connect();
    c.send("carol");
    c.expect_ask("password");
    c.send("pw-carol");
    c.expect(Kind::Welcome);
    c.expect_code(Kind::Info, "mail");
    let m = c.expect(Kind::Mail);
    assert_eq!(
        (m.arg(0), m.arg(2), m.text.as_str()),
        ("bob", "group:cs101", "exam moved to friday")
    );
    c.send("group leave cs101");
    c.expect_ok("group-left");
    c.send("group members cs101");
    let (_, members) = c.expect_list("members");
    assert_eq!(members.len(), 2);
}

#[test]
fn allowlist_mode_asks_no_password_and_refuses_strangers() {
    let s = TestServer::start_with(|c| c.auth = AuthMode::Allowlist);
    let c = s.connect();
    c.send("stranger");
    c.expect_err("unknown-user");
    c.expect_ask("username");
    c.send("alice");
    c.expect(Kind::Welcome);
    c.expect_code(Kind::Info, "no-mail");
    let d = s.connect();
    d.send("alice");
    d.expect_err("already-online");
}

#[test]
fn open_mode_takes_any_well_formed_new_name() {
    let s = TestServer::start_with(|c| c.auth = AuthMode::Open);
    let c = s.connect();
    c.send("bad name!");
    c.expect_err("bad-name");
    c.expect_ask("username");
    c.send("newcomer");
    c.expect(Kind::Welcome);
    c.expect_code(Kind::Info, "no-mail");
    let d = s.connect();
    d.send("newcomer");
    d.expect_err("already-online");
    d.expect_ask("username");
    d.send("other");
    d.expect(Kind::Welcome);
    d.expect_code(Kind::Info, "no-mail");
    d.send("message newcomer hi");
    d.expect_ok("sent");
    assert_eq!(c.expect(Kind::Msg).text, "hi");
    d.send("message neverseen hi");
    d.expect_err("unknown-user");
    // A user seen before can get offline mail.
    c.logout();
    d.send("message newcomer later");
    d.expect_ok("queued");
}

#[test]
fn lockout_key_user_blocks_everywhere_and_kicks_the_online_session() {
    // Seed 002's pair of policies: lockouts per user, and a new login may take over.
    let s = TestServer::start_with(|c| {
        c.lockout_key = LockoutKey::User;
        c.duplicate_login = DuplicateLogin::Replace;
    });
    let online = s.login("alice");
    let guesser = s.connect();
    for _ in 0..2 {
        guesser.send("alice");
        guesser.expect_ask("password");
        guesser.send("guess");
        guesser.expect_err("bad-login");
        guesser.expect_ask("username");
    }
    guesser.send("alice");
    guesser.expect_ask("password");
    guesser.send("guess");
    guesser.expect_code(Kind::Bye, "blocked");
    let kicked = online.expect_code(Kind::Bye, "locked");
    assert!(!kicked.text.is_empty());
    online.expect_closed();
    let again = s.connect();
    again.send("alice");
    again.expect_code(Kind::Bye, "blocked");
}

#[test]
fn duplicate_login_replace_logs_the_old_session_out() {
    let s = TestServer::start_with(|c| c.duplicate_login = DuplicateLogin::Replace);
    let other = s.login("bob");
    let old = s.login("alice");
    other.expect(Kind::Presence);
    let new = s.login("alice");
    let bye = old.expect_code(Kind::Bye, "replaced");
    assert!(bye.text.contains("another client"));
    old.expect_closed();
    other.send("message alice to the new one");
    other.expect_ok("sent");
    assert_eq!(new.expect(Kind::Msg).text, "to the new one");
    other.expect_silence(Duration::from_millis(150));
}

#[test]
fn broadcast_echo_policy() {
    let s = TestServer::start_with(|c| c.broadcast_echo = true);
    let a = s.login("alice");
    let b = s.login("bob");
    a.send("broadcast room message");
    let echo = a.expect(Kind::Bcast);
    assert_eq!(echo.arg(0), "alice");
    assert!(a.expect_ok("broadcast").text.contains("1 online user"));
    assert_eq!(b.expect(Kind::Bcast).text, "room message");
    let quiet = TestServer::start();
    let a = quiet.login("alice");
    let _b = quiet.login("bob");
    a.send("broadcast no echo");
    a.expect_ok("broadcast");
    a.expect_silence(Duration::from_millis(100));
}

#[test]
fn every_project_spelling_is_accepted() {
    let s = TestServer::start_full(|_| {}, credentials(0), Arc::new(SystemClock), None);
    let a = s.login("alice");
    let b = s.login("bob");
    // seed 000
    let c = s.connect();
    c.send("log on");
    c.expect_ask("username");
    a.send("log on");
    a.expect_ok("logged-on");
    a.send("HELP");
    a.expect_list("help");
    a.send("CHAT_REQUEST(alice-bob)");
    a.expect_ok("chat-requested");
    b.expect_code(Kind::Session, "request");
    b.send("decline");
    b.expect_ok("declined");
    a.expect_code(Kind::Session, "declined");
    a.send("HISTORY_REQUEST(alice-bob)");
    a.expect_code(Kind::Info, "no-history");
    // seed 001 / 002 / 004
    for (cmd, kind, code) in [
        ("whoelse", Kind::List, "whoelse"),
        ("online", Kind::List, "whoelse"),
        ("list", Kind::List, "list"),
        ("wholast 5", Kind::List, "wholast"),
        ("message bob m", Kind::Ok, "sent"),
        ("send bob s", Kind::Ok, "sent"),
        ("broadcast message everyone", Kind::Ok, "broadcast"),
        ("broadcast online ones", Kind::Ok, "broadcast"),
        ("personalintro hi", Kind::Ok, "intro"),
        ("block bob", Kind::Ok, "blocked"),
        ("unblock bob", Kind::Ok, "unblocked"),
        ("help", Kind::List, "help"),
    ] {
        a.send(cmd);
        let l = a.next();
        assert_eq!((l.kind, l.arg(0)), (kind, code), "{cmd}: {l}");
        if kind == Kind::List {
            let n: usize = l.arg(1).parse().unwrap();
            (0..n).for_each(|_| drop(a.next()));
        }
    }
    a.send("exit");
    a.expect_code(Kind::Bye, "logout");
}

#[test]
fn a_replaced_login_ends_its_session_and_tells_the_partner() {
    let s = TestServer::start_with(|c| c.duplicate_login = DuplicateLogin::Replace);
    let a = s.login("alice");
    let b = s.login("bob");
    let id = start_session(&a, &b);
    let _a2 = s.login("alice");
    a.expect_code(Kind::Bye, "replaced");
    let ended = b.expect_code(Kind::Session, "ended");
    assert_eq!((ended.arg(1), ended.arg(2)), (id.as_str(), "alice"));
}

#[test]
fn accepting_while_in_a_session_keeps_the_request_for_later() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let c = s.login("carol");
    c.send("chat bob");
    c.expect_ok("chat-requested");
    b.expect_code(Kind::Session, "request");
    a.send("chat bob");
    a.expect_ok("chat-requested");
    b.expect_code(Kind::Session, "request");
    b.send("accept alice");
    b.expect_code(Kind::Session, "started");
    a.expect_code(Kind::Session, "started");
    b.send("accept carol");
    b.expect_err("in-session");
    b.send("end");
    b.expect_code(Kind::Session, "ended");
    a.expect_code(Kind::Session, "ended");
    b.send("accept");
    assert_eq!(b.expect_code(Kind::Session, "started").arg(2), "carol");
    assert_eq!(c.expect_code(Kind::Session, "started").arg(2), "bob");
}

#[test]
fn leaving_invisibility_for_busy_announces_both() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.expect(Kind::Presence);
    b.send("status invisible");
    b.expect_ok("status");
    assert_eq!(a.expect(Kind::Presence).arg(1), "logout");
    b.send("status busy");
    b.expect_ok("status");
    assert_eq!(a.expect(Kind::Presence).arg(1), "login");
    assert_eq!(a.expect(Kind::Presence).arg(1), "busy");
}
