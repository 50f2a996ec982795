//! IPv6: the real server and clients over `::1`, relayed and direct (peer-to-peer) private
//! messages, and a server on `::` that takes IPv4 and IPv6 clients on one port. Where this
//! machine has no IPv6 loopback, the tests fail (`make test` reports them as skipped).

mod support;

use support::{ClientProcess, ServerProcess};

/// Fails the test where `::1` does not work (`make test` skips these there instead).
fn require_ipv6() {
    support::require(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "an IPv6 loopback (::1)",
        "sysctl -w net.ipv6.conf.lo.disable_ipv6=0",
    );
}

/// A client logged in as `user` (password `<user>pw`) to `host`:`port`.
fn logged_in(user: &str, host: &str, port: u16) -> ClientProcess {
    let mut c = ClientProcess::start(user, &[], &[host, &port.to_string()]);
    c.send(user);
    c.send(&format!("{user}pw"));
    c.out.expect("Login successful");
    c
}

#[test]
fn login_messages_and_direct_messages_over_ipv6_loopback() {
    require_ipv6();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&[], "::1", dir.path());
    server
        .stdout
        .expect(&format!("lanchat-client ::1 {}", server.port));
    let mut alice = logged_in("alice", "::1", server.port);
    let mut bob = logged_in("bob", "[::1]", server.port);
    alice.out.expect("bob has joined");

    alice.send("message bob over six");
    bob.out.expect("alice: over six <private message>");
    bob.send("broadcast and back");
    alice.out.expect("bob: and back <broadcast message>");

    // The server hands each client the other's IPv6 address; the message goes direct.
    alice.send("getaddress bob");
    bob.out.expect("wants to exchange private messages");
    bob.send("y");
    alice.out.expect("bob accepted");
    alice.send("addressbook");
    alice.out.expect("[::1]:");
    alice.send("private bob straight over ::1");
    bob.out.expect("[private] alice: straight over ::1");
    bob.send("private alice likewise");
    alice.out.expect("[private] bob: likewise");
}

#[test]
fn a_server_on_the_ipv6_wildcard_takes_ipv4_and_ipv6_clients() {
    require_ipv6();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&[], "::", dir.path());
    let mut alice = logged_in("alice", "127.0.0.1", server.port);
    let mut bob = logged_in("bob", "::1", server.port);
    alice.out.expect("bob has joined");
    bob.send("message alice from six to four");
    alice.out.expect("bob: from six to four <private message>");
    alice.send("message bob from four to six");
    bob.out.expect("alice: from four to six <private message>");

    // Direct messages between the families: alice's address is handed out as IPv4.
    bob.send("getaddress alice");
    alice.out.expect("wants to exchange private messages");
    alice.send("y");
    bob.out.expect("alice accepted");
    bob.send("addressbook");
    bob.out.expect("127.0.0.1:");
    bob.send("private alice mixed families");
    alice.out.expect("[private] bob: mixed families");
}
