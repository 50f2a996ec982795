//! Issue 26: the course projects' functions where lanchat differed in function, not only in
//! words (seed 003's room, seed 002's blank answer, seed 004's `list`), and an error that
//! now says what the limit is.

use crate::support::*;
use lanchat::protocol::Kind;
use std::time::Duration;

#[test]
fn list_shows_every_signed_in_user_yourself_included() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob's login", |l| l.kind == Kind::Presence);
    a.send("list");
    let (head, users) = a.expect_list("list");
    assert_eq!(head.text, "Signed in users:");
    let names: Vec<_> = users.iter().map(|u| u.arg(0)).collect();
    assert_eq!(names, ["alice", "bob"]);
    // whoelse still means the others.
    b.send("whoelse");
    let (_, users) = b.expect_list("whoelse");
    let names: Vec<_> = users.iter().map(|u| u.arg(0)).collect();
    assert_eq!(names, ["alice"]);
}

#[test]
fn a_blank_answer_to_an_address_exchange_declines_it() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    for (c, port) in [(&a, 6101), (&b, 6102)] {
        c.send(&format!("p2p {port}"));
        c.expect_ok("p2p");
    }
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    assert_eq!(b.expect_code(Kind::Addr, "request").arg(1), "alice");
    b.send("");
    b.expect_ok("declined");
    assert_eq!(a.expect_code(Kind::Addr, "declined").arg(1), "bob");
    // Nothing is pending any more: a blank line is ignored again, and a new request can be
    // asked at once.
    b.send("   ");
    b.expect_silence(Duration::from_millis(150));
    a.send("getaddress bob");
    a.expect_ok("address-requested");
}

#[test]
fn a_blank_line_leaves_a_newer_chat_request_pending() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    for (c, port) in [(&a, 6111), (&b, 6112)] {
        c.send(&format!("p2p {port}"));
        c.expect_ok("p2p");
    }
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    b.expect_code(Kind::Addr, "request");
    a.send("chat bob");
    a.expect_ok("chat-requested");
    b.expect_code(Kind::Session, "request");
    // The question bob saw last is the chat request: a blank line does not answer it.
    b.send("");
    b.expect_silence(Duration::from_millis(150));
    b.send("accept");
    b.expect_code(Kind::Session, "started");
    a.expect_code(Kind::Session, "started");
}

#[test]
fn in_a_room_a_plain_line_goes_to_everyone_and_back_to_its_sender() {
    let s = TestServer::start_with(|c| c.room = true);
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob's login", |l| l.kind == Kind::Presence);
    a.send("hello everyone");
    let to_bob = b.expect(Kind::Bcast);
    assert_eq!(
        (to_bob.arg(0), to_bob.text.as_str()),
        ("alice", "hello everyone")
    );
    let back = a.expect(Kind::Bcast);
    assert_eq!(
        (back.arg(0), back.text.as_str()),
        ("alice", "hello everyone")
    );
    a.expect_silence(Duration::from_millis(150));
    // Commands are still commands, and a mistyped one is still an error.
    a.send("whoelse");
    a.expect_list("whoelse");
    a.send("/frobnicate");
    a.expect_err("unknown-command");
    b.expect_silence(Duration::from_millis(150));
}

#[test]
fn in_a_room_with_broadcast_echo_the_sender_sees_its_line_once() {
    let s = TestServer::start_with(|c| {
        c.room = true;
        c.broadcast_echo = true;
    });
    let a = s.login("alice");
    a.send("anyone here?");
    assert_eq!(a.expect(Kind::Bcast).text, "anyone here?");
    a.expect_silence(Duration::from_millis(150));
}

#[test]
fn without_a_room_a_plain_line_is_an_unknown_command() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.send("hello everyone");
    a.expect_err("unknown-command");
    b.expect_silence(Duration::from_millis(150));
}

#[test]
fn a_line_too_long_is_refused_with_the_limit_named() {
    let s = TestServer::start_with(|c| c.max_line_bytes = 100);
    let c = s.connect();
    c.send(&"x".repeat(300));
    let err = c.expect_err("line-too-long");
    assert!(err.text.contains("300 bytes"), "{err}");
    assert!(err.text.contains("the limit is 100 bytes"), "{err}");
    let a = s.login("alice");
    a.send(&format!("broadcast {}", "y".repeat(200)));
    let err = a.expect_err("line-too-long");
    assert!(err.text.contains("the limit is 100 bytes"), "{err}");
}
