use crate::support::*;
use lanchat::clock::ManualClock;
use lanchat::protocol::Kind;

/// Logs `name` in and announces a direct-message port, as lanchat-client does.
fn login_p2p(s: &TestServer, name: &str, port: u16) -> TestClient {
    let c = s.login(name);
    c.send(&format!("p2p {port}"));
    c.expect_ok("p2p");
    c
}

/// alice asks bob, bob accepts; returns the shared secret.
fn pair(a: &TestClient, b: &TestClient) -> String {
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    let req = b.expect_code(Kind::Addr, "request");
    assert_eq!(req.arg(1), "alice");
    b.send("y");
    let to_bob = b.expect_code(Kind::Addr, "granted");
    let to_alice = a.expect_code(Kind::Addr, "granted");
    assert_eq!((to_alice.arg(1), to_bob.arg(1)), ("bob", "alice"));
    assert_eq!(
        to_alice.arg(2),
        "127.0.0.1:6002",
        "bob's address as the server sees it"
    );
    assert_eq!(to_bob.arg(2), "127.0.0.1:6001");
    assert_eq!(to_alice.arg(3), to_bob.arg(3));
    let secret = to_alice.arg(3).to_string();
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    secret
}

#[test]
fn exchange_with_accept_gives_both_the_address_and_one_fresh_secret() {
    let s = TestServer::start();
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    let first = pair(&a, &b);
    for c in [&a, &b] {
        c.send("addressbook");
        let (_, entries) = c.expect_list("addressbook");
        assert_eq!(entries.len(), 1);
    }
    a.send("getaddress bob");
    a.expect_err("already-paired");
    a.send("removeaddress bob");
    a.expect_ok("removed");
    let removed = b.expect_code(Kind::Addr, "removed");
    assert_eq!(removed.arg(1), "alice");
    b.send("addressbook");
    let (_, entries) = b.expect_list("addressbook");
    assert!(entries.is_empty());
    a.send("removeaddress bob");
    a.expect_err("not-paired");
    let second = pair(&a, &b);
    assert_ne!(first, second, "every pairing gets a new secret");
}

#[test]
fn exchange_errors_and_decline() {
    let s = TestServer::start();
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    let telnet = s.login("carol");
    a.send("getaddress alice");
    a.expect_err("self");
    a.send("getaddress zed");
    a.expect_err("unknown-user");
    a.send("getaddress dave");
    a.expect_err("unreachable");
    a.send("getaddress carol");
    a.expect_err("no-p2p");
    telnet.send("getaddress alice");
    telnet.expect_err("no-p2p");
    telnet.send("private alice hi");
    telnet.expect_err("client-only");
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    b.expect_code(Kind::Addr, "request");
    b.send("n");
    b.expect_ok("declined");
    assert_eq!(a.expect_code(Kind::Addr, "declined").arg(1), "bob");
    b.send("block alice");
    b.expect_ok("blocked");
    a.send("getaddress bob");
    a.expect_err("blocked");
}

#[test]
fn an_unanswered_request_is_declined_after_a_minute() {
    let clock = ManualClock::new(7_000_000);
    let s = TestServer::start_with_clock(&clock, |_| {});
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    b.expect_code(Kind::Addr, "request");
    clock.advance(61);
    assert_eq!(a.expect_code(Kind::Addr, "declined").arg(1), "bob");
    assert_eq!(b.expect_code(Kind::Addr, "expired").arg(1), "alice");
    b.send("accept");
    b.expect_err("nothing-pending");
}

#[test]
fn logout_and_blocking_end_the_pair() {
    let s = TestServer::start();
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    pair(&a, &b);
    b.logout();
    assert_eq!(a.expect_code(Kind::Addr, "gone").arg(1), "bob");
    a.send("addressbook");
    let (_, entries) = a.expect_list("addressbook");
    assert!(entries.is_empty());
    let b = login_p2p(&s, "bob", 6002);
    pair(&a, &b);
    a.send("block bob");
    a.expect_ok("blocked");
    assert_eq!(b.expect_code(Kind::Addr, "removed").arg(1), "alice");
    b.send("addressbook");
    let (_, entries) = b.expect_list("addressbook");
    assert!(entries.is_empty());
}

#[test]
fn accept_answers_the_newest_request_of_either_kind() {
    let s = TestServer::start();
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    let c = login_p2p(&s, "carol", 6003);
    c.send("chat bob");
    c.expect_ok("chat-requested");
    b.expect_code(Kind::Session, "request");
    a.send("getaddress bob");
    a.expect_ok("address-requested");
    b.expect_code(Kind::Addr, "request");
    b.send("accept");
    b.expect_code(Kind::Addr, "granted");
    a.expect_code(Kind::Addr, "granted");
    b.send("accept");
    b.expect_code(Kind::Session, "started");
    c.expect_code(Kind::Session, "started");
}

#[test]
fn a_server_shutdown_leaves_pairs_intact() {
    let mut s = TestServer::start();
    let a = login_p2p(&s, "alice", 6001);
    let b = login_p2p(&s, "bob", 6002);
    pair(&a, &b);
    s.stop();
    for c in [&a, &b] {
        // Only the goodbye: no "gone" that would empty the clients' address books.
        assert_eq!(c.expect(Kind::Bye).arg(0), "shutdown");
        c.expect_closed();
    }
}
