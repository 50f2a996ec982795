//! Direct (peer-to-peer) private messages end to end: a real `lanchat-server` and real
//! `lanchat-client` processes on 127.0.0.1, each client listening for peers on a port of its
//! own (`--p2p-port`). Covers the address exchange (accept, decline, `send`'s implicit
//! request), `private` both ways, the address book following `removeaddress` and logouts,
//! private messages while the server is down, a spoofed message, and the size limit.
//!
//! Each test has its own server, directory and ports, so the tests run in parallel; every
//! process is killed when its guard drops and every read has a timeout (`common`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{fixed_port, without_unencrypted_warning, ClientProcess, ServerProcess};

/// A server with the users alice, bob and carol.
struct Net {
    server: ServerProcess,
    _dir: tempfile::TempDir,
}

/// A logged-in client and the port it takes direct messages on.
struct Peer {
    client: ClientProcess,
    p2p_port: u16,
}

impl Peer {
    fn send(&mut self, line: &str) {
        self.client.send(line);
    }

    /// Waits for an output line containing `needle`; returns it.
    fn expect(&mut self, needle: &str) -> String {
        self.client.out.expect(needle)
    }

    /// Waits for the process to exit; returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        self.client.proc.wait("lanchat-client").code()
    }
}

impl Net {
    fn start() -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
        Net { server, _dir: dir }
    }

    /// A client logged in as `user` (password `<user>pw`), listening on a free port.
    fn login(&self, user: &str) -> Peer {
        let p2p_port = fixed_port();
        let args = [
            "127.0.0.1".to_string(),
            self.server.port.to_string(),
            "--p2p-port".to_string(),
            p2p_port.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut client = ClientProcess::start(user, &[], &args);
        client.send(user);
        client.send(&format!("{user}pw"));
        client.out.expect("Login successful");
        // The client sent `p2p PORT` right after logging in; the server answers in order,
        // so once this is answered, others can ask for this user's address.
        client.send("heartbeat");
        client.out.expect("still here");
        Peer { client, p2p_port }
    }

    /// Sends SIGTERM to the server, as `kill` or a service manager would.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.server.proc.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

/// `a` asks for `b`'s address and `b` accepts; both have each other in their books.
fn pair(a: &mut Peer, a_name: &str, b: &mut Peer, b_name: &str) {
    a.send(&format!("getaddress {b_name}"));
    a.expect(&format!("Asked {b_name} to exchange addresses"));
    assert_eq!(
        b.expect("wants to exchange private messages"),
        format!(
            "User {a_name} wants to exchange private messages with you. \
             Would you like to accept? [y/N]"
        )
    );
    b.send("y");
    b.expect(&format!(
        "You and {a_name} can now send each other private messages."
    ));
    a.expect(&format!("{b_name} accepted"));
}

#[test]
fn accepted_exchange_then_private_both_ways() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    alice.send("private bob hi");
    assert_eq!(bob.expect("[private]"), "[private] alice: hi");
    alice.expect("Your private message was delivered to bob.");
    bob.send("/PRIVATE alice hello   back");
    assert_eq!(alice.expect("[private]"), "[private] bob: hello   back");

    alice.send("addressbook");
    alice.expect("Your address book (1):");
    assert_eq!(
        alice.expect("bob"),
        format!("bob   127.0.0.1:{}", bob.p2p_port)
    );
    bob.send("addressbook");
    bob.expect("Your address book (1):");
    assert!(bob.expect("alice").starts_with("alice   127.0.0.1:"));
}

#[test]
fn declined_exchange_and_private_without_an_address() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    alice.send("getaddress bob");
    bob.expect("wants to exchange private messages");
    bob.send("n");
    alice.expect("bob declined to exchange addresses with you.");
    alice.send("private bob hi");
    assert_eq!(
        alice.expect("not in your address book"),
        "error: bob is not in your address book; run 'getaddress bob' first"
    );
    alice.send("addressbook");
    alice.expect("Your address book is empty");
}

#[test]
fn private_messages_outlive_the_server() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    let mut carol = net.login("carol");
    pair(&mut alice, "alice", &mut bob, "bob");
    pair(&mut carol, "carol", &mut alice, "alice");

    net.terminate();
    alice.expect("The server is going down");
    assert_eq!(
        alice.expect("The server is down."),
        "The server is down. You may still privately chat with: bob, carol"
    );
    assert_eq!(
        bob.expect("The server is down."),
        "The server is down. You may still privately chat with: alice"
    );

    alice.send("private bob still here?");
    assert_eq!(bob.expect("[private]"), "[private] alice: still here?");
    bob.send("private alice yes");
    assert_eq!(alice.expect("[private]"), "[private] bob: yes");
    carol.send("send alice me too");
    assert_eq!(alice.expect("[private]"), "[private] carol: me too");

    alice.send("whoelse");
    alice.expect("error: the server is down");
    alice.send("help");
    alice.expect("these commands still work");
    alice.send("addressbook");
    alice.expect("Your address book (2):");

    alice.send("logout");
    assert_eq!(alice.exit_code(), Some(0));
    bob.client.stdin = None; // Ctrl-D
    assert_eq!(bob.exit_code(), Some(0));
}

/// Reads one line from a raw direct connection.
fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a line");
    line.trim_end().to_string()
}

#[test]
fn a_spoofed_private_message_is_refused_and_shown_nowhere() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    let mallory = TcpStream::connect(("127.0.0.1", bob.p2p_port)).expect("connect to bob");
    mallory
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(mallory.try_clone().unwrap());
    let greeting = read_line(&mut reader);
    assert!(greeting.starts_with("LANCHAT-P2P 2 "), "{greeting:?}");
    assert_eq!(greeting.len(), "LANCHAT-P2P 2 ".len() + 32, "{greeting:?}");
    writeln!(&mallory, "PRIVATE alice {} hi", "0".repeat(64)).unwrap();
    let reply = read_line(&mut reader);
    assert!(reply.starts_with("ERR refused"), "{reply:?}");
    bob.client
        .err
        .expect("refused a direct message from 127.0.0.1:");

    alice.send("private bob the real one");
    assert_eq!(bob.expect("[private]"), "[private] alice: the real one");
    bob.send("whoelse");
    bob.expect("online users");
}

#[test]
fn removeaddress_ends_the_pair_on_both_sides() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    alice.send("removeaddress bob");
    alice.expect("bob was removed from your address book.");
    bob.expect("alice removed you from their address book.");
    alice.send("private bob hi");
    assert_eq!(
        alice.expect("not in your address book"),
        "error: bob is not in your address book; run 'getaddress bob' first"
    );
    bob.send("private alice hi");
    assert_eq!(
        bob.expect("not in your address book"),
        "error: alice is not in your address book; run 'getaddress alice' first"
    );
}

#[test]
fn a_peer_that_logs_out_leaves_the_address_book() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    bob.send("logout");
    assert_eq!(bob.exit_code(), Some(0));
    alice.expect("bob logged out and left your address book.");
    alice.send("addressbook");
    alice.expect("Your address book is empty");
    alice.send("private bob are you there?");
    alice.expect("error: bob is not in your address book");
}

#[test]
fn send_asks_for_the_address_first_and_then_delivers() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");

    alice.send("send bob hello via seed 004");
    alice.expect("bob is not in your address book yet");
    bob.expect("User alice wants to exchange private messages with you.");
    bob.send("accept alice");
    assert_eq!(
        bob.expect("[private]"),
        "[private] alice: hello via seed 004"
    );
    alice.expect("Your private message was delivered to bob.");
    // Now paired: `send` goes directly.
    alice.send("send bob again");
    assert_eq!(bob.expect("[private]"), "[private] alice: again");

    // And a request that fails says so.
    alice.send("send nobody hi");
    alice.expect("error: your message to nobody was not sent");
}

#[test]
fn big_messages_arrive_whole_and_too_big_ones_are_refused_before_sending() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    let big = "0123456789abcdef".repeat(60 * 1024 / 16);
    alice.send(&format!("private bob {big}"));
    let got = bob.expect("[private]");
    assert_eq!(got.len(), "[private] alice: ".len() + 60 * 1024);
    assert_eq!(got, format!("[private] alice: {big}"));

    alice.send(&format!("private bob {}", "y".repeat(70 * 1024)));
    assert_eq!(
        alice.expect("limited"),
        "error: private messages are limited to 65536 bytes; this one has 71680"
    );
    alice.send("private bob small");
    assert_eq!(bob.expect("[private]"), "[private] alice: small");
}

/// Someone at 127.0.0.2 (not a peer's address) who keeps `slots` connections open to
/// `port` and sends nothing, opening a new one within 20 ms of one being closed;
/// returns how many it opened in all.
fn hold_connections_open(
    port: u16,
    slots: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use socket2::{Domain, Socket, Type};
    let connect = move || -> Option<TcpStream> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .ok()?;
        socket
            .connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)).into(),
                Duration::from_secs(1),
            )
            .ok()?;
        let stream: TcpStream = socket.into();
        stream.set_nonblocking(true).ok()?;
        Some(stream)
    };
    std::thread::spawn(move || {
        let mut open: Vec<Option<TcpStream>> = (0..slots).map(|_| None).collect();
        let mut opened = 0;
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            for slot in open.iter_mut() {
                let closed = match slot {
                    None => true,
                    Some(stream) => match stream.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *slot = connect();
                    opened += usize::from(slot.is_some());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        opened
    })
}

#[test]
fn forty_idle_connections_do_not_keep_a_paired_peers_message_out() {
    let net = Net::start();
    let mut alice = net.login("alice");
    let mut bob = net.login("bob");
    pair(&mut alice, "alice", &mut bob, "bob");

    let stop = Arc::new(AtomicBool::new(false));
    let flood = hold_connections_open(bob.p2p_port, 40, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    let mut took = Vec::new();
    for i in 0..3 {
        let sent = Instant::now();
        alice.send(&format!("private bob through the crowd {i}"));
        assert_eq!(
            bob.expect("[private]"),
            format!("[private] alice: through the crowd {i}")
        );
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "message {i} took {:?}",
            sent.elapsed()
        );
        took.push(sent.elapsed());
        alice.expect("Your private message was delivered to bob.");
    }
    // Keep the crowd up for a while: its connections time out and come back.
    let warnings = without_unencrypted_warning(bob.client.err.during(Duration::from_secs(4)));
    stop.store(true, Ordering::Relaxed);
    let opened = flood.join().unwrap();
    assert!(opened >= 40, "the crowd was there: {opened} connections");
    assert!(!warnings.is_empty(), "bob was told nothing of the crowd");
    assert!(
        warnings.len() <= 3,
        "{} warning lines in about 5 s: {:?}",
        warnings.len(),
        &warnings[..warnings.len().min(5)]
    );
    assert!(
        warnings.iter().all(|w| w.contains("127.0.0.2")),
        "{warnings:?}"
    );
    eprintln!(
        "{opened} connections opened by the crowd; alice's messages took {took:?}; \
         bob's warnings: {warnings:#?}"
    );
    bob.send("whoelse");
    bob.expect("online users");
}
