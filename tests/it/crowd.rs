//! Presence in a crowd: up to `presence_summary_above` users online every change is one
//! `PRESENCE` line (PROTOCOL.md 5.2); above it each online user gets one `PRESENCES` summary
//! per window naming every change once.

use crate::support::*;
use lanchat::protocol::{Kind, Line};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A crowd from the third user online on; short windows.
fn crowd_server() -> TestServer {
    TestServer::start_with(|c| {
        c.presence_summary_above = 2;
        c.presence_summary_ms = 150;
    })
}

/// The changes of a `PRESENCES` line, in order.
fn items(line: &Line) -> Vec<(String, String)> {
    assert_eq!(line.kind, Kind::Presences, "{line}");
    assert_eq!(
        line.arg(1),
        "0",
        "everything is named in a small crowd: {line}"
    );
    if line.arg(0) == "-" {
        return Vec::new();
    }
    line.arg(0)
        .split(',')
        .map(|item| {
            let (user, change) = item.split_once(':').expect("user:change");
            (user.to_string(), change.to_string())
        })
        .collect()
}

/// Reads summaries until `want` changes have been named, then a quiet while more; returns
/// every change named, by user, and fails on a `PRESENCE` line or a user named twice.
fn summaries(c: &TestClient, want: usize) -> HashMap<String, String> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = c
            .try_next(left)
            .unwrap_or_else(|| panic!("only {seen:?} of {want} changes named"));
        for (user, change) in items(&line) {
            assert!(
                seen.insert(user.clone(), change).is_none(),
                "{user} named twice: {line}"
            );
        }
    }
    // Nothing more: nobody named again in a later summary.
    while let Some(line) = c.try_next(Duration::from_millis(500)) {
        let extra = items(&line);
        assert!(extra.is_empty(), "named again: {line}");
    }
    seen
}

#[test]
fn a_small_class_gets_one_presence_line_per_event() {
    let s = crowd_server();
    let alice = s.login("alice");
    let _bob = s.login("bob");
    // Two online: at the threshold, not above it.
    let l = alice.expect(Kind::Presence);
    assert_eq!((l.arg(0), l.arg(1)), ("bob", "login"));
    assert_eq!(l.text, "*** bob has joined the chat ***");
}

#[test]
fn a_crowd_gets_summaries_that_name_everyone_once() {
    let s = crowd_server();
    let alice = s.login("alice");
    let bob = s.login("bob");
    assert_eq!(alice.expect(Kind::Presence).arg(0), "bob");
    let crowd: Vec<TestClient> = (0..12).map(|i| s.login(&format!("user{i}"))).collect();
    let seen = summaries(&alice, 12);
    for i in 0..12 {
        assert_eq!(seen[&format!("user{i}")], "login", "{seen:?}");
    }
    assert_eq!(summaries(&bob, 12), seen);
    // Nobody is told of their own login.
    for (i, c) in crowd.iter().enumerate() {
        let me = format!("user{i}");
        while let Some(line) = c.try_next(Duration::from_millis(100)) {
            assert!(items(&line).iter().all(|(u, _)| *u != me), "{me}: {line}");
        }
    }
}

#[test]
fn logouts_status_changes_and_drops_are_summarized() {
    let s = crowd_server();
    let alice = s.login("alice");
    let crowd: Vec<TestClient> = (0..4).map(|i| s.login(&format!("user{i}"))).collect();
    assert_eq!(alice.expect(Kind::Presence).arg(0), "user0");
    summaries(&alice, 3);
    crowd[0].send("status busy");
    crowd[0].expect_ok("status");
    crowd[1].logout();
    let mut crowd = crowd;
    drop(crowd.remove(2));
    let seen = summaries(&alice, 3);
    assert_eq!(seen["user0"], "busy");
    assert_eq!(seen["user1"], "logout");
    assert_eq!(seen["user2"], "dropped");
    assert!(!seen.contains_key("user3"), "{seen:?}");

    // Invisible is a logout; back to busy from invisible is a login, busy.
    let carol = s.login("carol");
    assert_eq!(summaries(&alice, 1)["carol"], "login");
    carol.send("status invisible");
    carol.expect_ok("status");
    assert_eq!(summaries(&alice, 1)["carol"], "logout");
    carol.send("status busy");
    carol.expect_ok("status");
    assert_eq!(summaries(&alice, 1)["carol"], "login-busy");
    drop(crowd);
}

#[test]
fn a_blocked_user_sees_nothing_of_the_blocker_in_a_summary() {
    let s = crowd_server();
    let carol = s.login("carol");
    carol.send("block alice");
    carol.expect_ok("blocked");
    carol.logout();
    let alice = s.login("alice");
    let bob = s.login("bob");
    assert_eq!(alice.expect(Kind::Presence).arg(0), "bob");
    let crowd: Vec<TestClient> = (0..3).map(|i| s.login(&format!("user{i}"))).collect();
    summaries(&alice, 3);
    summaries(&bob, 3);
    // carol comes and goes in the crowd: bob is told, alice is not.
    let carol = s.login("carol");
    crowd[0].send("status busy");
    crowd[0].expect_ok("status");
    let seen = summaries(&bob, 2);
    assert_eq!(seen["carol"], "login");
    let seen = summaries(&alice, 1);
    assert!(!seen.contains_key("carol"), "{seen:?}");
    assert_eq!(seen["user0"], "busy");
    carol.logout();
    assert_eq!(summaries(&bob, 1)["carol"], "logout");
    // alice gets no summary at all: it would name nobody.
    if let Some(line) = alice.try_next(Duration::from_millis(500)) {
        panic!("alice was told: {line}");
    }
}
