//! Finding the server: real `lanchat-server` processes answering UDP discovery on a free
//! port, and `lanchat-client` started without an address (or with `--scan`).
//!
//! Every request here goes to this machine only (`--discovery-target` 127.0.0.1 and
//! loopback's broadcast address): a test must not broadcast onto the network it runs on.
//! The namespace test (tests/netns.rs) covers real broadcasts across a bridge.

mod support;

use lanchat::client::discover::scan;
use lanchat::discovery::{Announcement, Responder, MAX_DATAGRAM, REQUEST};
use lanchat::protocol::sanitize_text;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{local_discovery, ClientProcess, ServerProcess};

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

/// Requests sent to `port` on 127.0.0.1 from 127.0.0.2 (another address of this machine,
/// so another sender), `per_tick` every 5 ms until `stop`; returns (sent, answers heard).
fn flood_from_another_address(
    port: u16,
    per_tick: u32,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    let socket = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    socket.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let (mut sent, mut heard) = (0u64, 0u64);
        let mut buf = [0u8; MAX_DATAGRAM];
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..per_tick {
                if socket
                    .send_to(REQUEST.as_bytes(), ("127.0.0.1", port))
                    .is_ok()
                {
                    sent += 1;
                }
            }
            while socket.recv_from(&mut buf).is_ok() {
                heard += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        while socket.recv_from(&mut buf).is_ok() {
            heard += 1;
        }
        (sent, heard)
    })
}

#[test]
fn a_flood_of_requests_from_one_address_leaves_answers_for_everyone_else() {
    let port = free_udp_port();
    let announcement = Announcement::new("real", None, &[("tcp", 4242)]);
    let _responder = Responder::start("127.0.0.1".parse().unwrap(), port, &announcement).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // About 2,000 requests a second, as the spoofing student sent.
    let flood = flood_from_another_address(port, 10, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let target = [SocketAddr::from(([127, 0, 0, 1], port))];
    for round in 0..3 {
        let found = scan(&target, Duration::from_millis(700)).unwrap();
        assert_eq!(found.len(), 1, "scan {round} during the flood: {found:?}");
        assert_eq!(found[0].tcp_port(), Some(4242));
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, heard) = flood.join().unwrap();
    let secs = started.elapsed().as_secs_f64() + 0.4;
    eprintln!("{sent} requests from 127.0.0.2 in {secs:.1} s, {heard} answered");
    assert!(
        sent as f64 >= 1000.0 * secs,
        "the flood was a flood: {sent} in {secs:.1} s"
    );
    // The flooder's own address (a spoofed victim's, in real life) gets its share (a burst,
    // then 200 a second), not an answer per request.
    let bound = 200.0 + 200.0 * secs + 20.0;
    assert!(
        (heard as f64) <= bound,
        "{heard} answers to one address in {secs:.1} s (at most {bound:.0} expected)"
    );
}

/// A host that answers discovery as if it were the real server: the real server's name and
/// id, the real TCP port, but its own address (127.0.0.2), and a door name with an escape
/// code in it. It shares the discovery port (as a second server on one machine would), so
/// it hears the same broadcasts.
struct Impostor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    fn start(discovery_port: u16, answer: String) -> Impostor {
        use socket2::{Domain, Protocol, Socket, Type};
        let listen = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        listen.set_reuse_address(true).unwrap();
        listen.set_reuse_port(true).unwrap();
        listen
            .bind(&SocketAddr::from(([0, 0, 0, 0], discovery_port)).into())
            .unwrap();
        let listen: UdpSocket = listen.into();
        listen
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let speak = UdpSocket::bind("127.0.0.2:0").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; MAX_DATAGRAM];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((n, from)) = listen.recv_from(&mut buf) {
                    if lanchat::discovery::is_request(&buf[..n]) {
                        let _ = speak.send_to(answer.as_bytes(), from);
                    }
                }
            }
        });
        Impostor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn an_impostor_with_the_real_servers_id_is_listed_beside_it_and_the_client_asks() {
    let dport = free_udp_port();
    let (server, _dir) = server(dport);
    let target = [SocketAddr::from(([127, 0, 0, 1], dport))];
    let real = scan(&target, Duration::from_millis(500)).unwrap();
    assert_eq!(real.len(), 1, "{real:?}");
    let real = &real[0].announcement;
    // Where the impostor would take the password: its own address, the real port.
    let trap = TcpListener::bind(("127.0.0.2", server.port)).expect("bind 127.0.0.2");
    trap.set_nonblocking(true).unwrap();
    let _impostor = Impostor::start(
        dport,
        format!(
            "LANCHAT/1 name={} id={} tcp={} \x1b[2J\x1b[31mweb=8080",
            real.name, real.id, server.port
        ),
    );

    let dport = dport.to_string();
    let mut alice = ClientProcess::start("alice", &[], &local_discovery(&dport));
    alice.out.expect("2 lanchat servers answered:");
    let listed = [alice.out.expect("1)"), alice.out.expect("2)")];
    for host in ["127.0.0.1", "127.0.0.2"] {
        let entry = format!("{host} port {}", server.port);
        assert!(
            listed.iter().any(|l| l.contains(&entry)),
            "{entry} not in {listed:?}"
        );
    }
    let door = format!("{} 8080", sanitize_text("\x1b[2J\x1b[31mweb"));
    assert!(
        listed.iter().any(|l| l.contains(&door)),
        "the door name is shown escaped: {listed:?}"
    );
    alice.out.expect(&format!(
        "1 and 2 claim to be the same server (id {})",
        real.id
    ));
    alice.out.expect("Which server? [1-2]");
    // No answer (the end of the input): the client connects to neither.
    alice.close_stdin();
    let error = alice.err.expect("error:");
    assert!(
        error.contains("lanchat-client HOST [PORT]"),
        "the error says how to choose: {error}"
    );
    assert_eq!(alice.exit_code(), Some(1));
    let rest = alice.out.rest();
    assert!(
        rest.iter().all(|l| !l.contains('\x1b')),
        "no raw escape code reached the terminal: {rest:?}"
    );
    assert!(
        !rest.iter().any(|l| l.contains("Username:")),
        "connected to a server no one chose: {rest:?}"
    );
    assert_eq!(
        trap.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the impostor got a connection"
    );
}
