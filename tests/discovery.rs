//! Finding the server: real `lanchat-server` processes answering UDP discovery on a free
//! port, and `lanchat-client` started without an address (or with `--scan`).
//!
//! Every request here goes to this machine only (`--discovery-target` 127.0.0.1 and
//! loopback's broadcast address): a test must not broadcast onto the network it runs on.
//! The namespace test (tests/netns.rs) covers real broadcasts across a bridge.

mod common;

use common::{ClientProcess, ServerProcess};
use std::net::UdpSocket;

/// A UDP port free right now, for the servers' `discovery_port`.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A server on 127.0.0.1 answering discovery on `discovery_port`.
fn server(discovery_port: u16) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("configuration.toml"),
        format!("discovery_port = {discovery_port}\n"),
    )
    .unwrap();
    let mut server = ServerProcess::start(&[], "127.0.0.1", dir.path());
    server
        .stdout
        .expect(&format!("Answering discovery on UDP port {discovery_port}"));
    (server, dir)
}

/// Client arguments that look for servers on this machine only.
fn local_discovery(discovery_port: &str) -> Vec<&str> {
    vec![
        "--discovery-port",
        discovery_port,
        "--discovery-target",
        "127.0.0.1",
        "--discovery-target",
        "127.255.255.255",
    ]
}

#[test]
fn one_server_is_found_and_joined_without_an_address() {
    let dport = free_udp_port();
    let (server, _dir) = server(dport);
    let dport = dport.to_string();
    let mut alice = ClientProcess::start("alice", &[], &local_discovery(&dport));
    alice.out.expect("Looking for lanchat servers");
    let found = alice.out.expect("; connecting.");
    assert!(
        found.contains(&format!("127.0.0.1 port {}", server.port)),
        "{found}"
    );
    alice.out.expect("Username:");
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");

    let mut scan = ClientProcess::start(
        "scan",
        &[],
        &[&["--scan"], &local_discovery(&dport)[..]].concat(),
    );
    let line = scan.out.expect("1)");
    assert!(line.contains(&format!("port {}", server.port)), "{line}");
    assert_eq!(scan.exit_code(), Some(0));
    assert_eq!(scan.out.rest().len(), 1, "one server, listed once");
}

#[test]
fn two_servers_on_one_machine_are_both_listed_and_one_is_chosen() {
    let dport = free_udp_port();
    let (first, _d1) = server(dport);
    let (second, _d2) = server(dport);
    let dport = dport.to_string();

    let mut scan = ClientProcess::start(
        "scan",
        &[],
        &[&["--scan"], &local_discovery(&dport)[..]].concat(),
    );
    assert_eq!(scan.exit_code(), Some(0));
    let listed = scan.out.rest();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for port in [first.port, second.port] {
        assert!(
            listed.iter().any(|l| l.ends_with(&format!(" port {port}"))),
            "{port} not in {listed:?}"
        );
    }

    // bob is on the second server; alice picks it from the list and finds him there.
    let mut bob = ClientProcess::start("bob", &[], &["127.0.0.1", &second.port.to_string()]);
    bob.send("bob");
    bob.send("bobpw");
    bob.out.expect("Login successful");
    let mut alice = ClientProcess::start("alice", &[], &local_discovery(&dport));
    alice.out.expect("2 lanchat servers answered:");
    let one = alice.out.expect("1)");
    let two = alice.out.expect("2)");
    let pick = if two.ends_with(&format!(" port {}", second.port)) {
        "2"
    } else {
        assert!(one.ends_with(&format!(" port {}", second.port)), "{one}");
        "1"
    };
    alice.out.expect("Which server? [1-2]");
    alice.send("7");
    alice.out.expect("Please type a number from 1 to 2.");
    alice.send(pick);
    alice.out.expect("Username:");
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    alice.send("whoelse");
    alice.out.expect("bob");
    alice.send("message bob found you");
    bob.out.expect("alice: found you <private message>");
}

#[test]
fn nothing_answering_means_this_machine_and_scan_says_so() {
    let dport = free_udp_port().to_string();
    let mut scan = ClientProcess::start(
        "scan",
        &[],
        &[&["--scan"], &local_discovery(&dport)[..]].concat(),
    );
    scan.out
        .expect(&format!("No lanchat server answered on UDP port {dport}."));
    assert_eq!(scan.exit_code(), Some(1));

    // A server with discovery off is not found; the client falls back to this machine on
    // the port given with seed 004's -sp, and gets there.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("configuration.toml"), "discovery = false\n").unwrap();
    let quiet = ServerProcess::start(&[], "127.0.0.1", dir.path());
    let port = quiet.port.to_string();
    let mut alice = ClientProcess::start(
        "alice",
        &[],
        &[&["-sp", &port, "-u", "alice"], &local_discovery(&dport)[..]].concat(),
    );
    alice.out.expect(&format!(
        "No lanchat server answered; trying this machine (127.0.0.1 port {port})."
    ));
    alice.out.expect("Username: alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");
}
