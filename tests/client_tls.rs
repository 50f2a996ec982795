//! lanchat-client over TLS (issue 25): it pins the server's key on first use (and shows the
//! fingerprint to compare), refuses a server on the same address with another key and says
//! what to check, and refuses a key that is not the `--fingerprint` it was given; found by
//! discovery, it uses no answer that contradicts a pin. Every client keeps its pins in a
//! temporary directory (`LANCHAT_CONFIG_DIR`).

mod support;

use lanchat::client::discover;
use lanchat::discovery::{Announcement, MAX_DATAGRAM};
use lanchat::tls::Fingerprint;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{fixed_port, local_discovery, ClientProcess, ServerProcess};

/// A server with its TLS door on `tls_port` and its own data (so its own key).
fn server(dir: &std::path::Path, tls_port: u16) -> (ServerProcess, String) {
    let (server, port, short) = server_on(dir, &tls_port.to_string());
    assert_eq!(port, tls_port);
    (server, short)
}

/// A server with its TLS door on `port` (a number or "any"): the server, the TLS port its
/// banner names, and its short fingerprint.
fn server_on(dir: &std::path::Path, port: &str) -> (ServerProcess, u16, String) {
    let mut server = ServerProcess::start_with_args("127.0.0.1", dir, &["--tls-port", port]);
    let tls_port = tls_port_in(&server.stdout.expect("Encrypted (TLS): port "));
    let line = server.stdout.expect("Server fingerprint: ");
    let short = line.rsplit(' ').next().unwrap().trim().to_string();
    (server, tls_port, short)
}

/// The port in the banner's `Encrypted (TLS): port N; ...` line.
fn tls_port_in(line: &str) -> u16 {
    line.split("Encrypted (TLS): port ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no TLS port in {line:?}"))
}

fn client(
    server: &ServerProcess,
    tls_port: u16,
    pins: &std::path::Path,
    extra: &[&str],
) -> ClientProcess {
    let (port, tls) = (server.port.to_string(), tls_port.to_string());
    let mut args = vec!["127.0.0.1", port.as_str(), "--tls-port", tls.as_str()];
    args.extend_from_slice(extra);
    ClientProcess::start_with_env(
        "client",
        &[],
        &args,
        &[("LANCHAT_CONFIG_DIR", pins.to_str().unwrap())],
    )
}

#[test]
fn first_use_pins_and_shows_the_fingerprint_then_another_key_on_that_address_is_refused() {
    let (dir_a, dir_b, pins) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // The impostor must take the very address the client pinned once the real server is
    // gone: a port told in advance (below the range port-0 sockets come from).
    let tls_port = fixed_port();
    let (mut real, fingerprint) = server(dir_a.path(), tls_port);
    let mut c = client(&real, tls_port, pins.path(), &[]);
    let first = c.out.expect("First connection to ");
    assert!(
        first.contains(&fingerprint),
        "{first} does not show {fingerprint}"
    );
    c.send("alice");
    c.send("alicepw");
    c.out.expect("Login successful");
    c.close_stdin();
    assert_eq!(c.exit_code(), Some(0));
    let pinned = std::fs::read_to_string(pins.path().join("known_servers")).unwrap();
    assert!(
        pinned.starts_with(&format!("127.0.0.1:{tls_port} {fingerprint}")),
        "{pinned}"
    );
    // The same server again: no first-use notice, straight to the login.
    let mut again = client(&real, tls_port, pins.path(), &[]);
    again.send("bob");
    again.send("bobpw");
    again.out.expect("Login successful");
    drop(again);

    // Another server (another key) takes the address: refused, with what to check.
    real.proc.0.kill().unwrap();
    real.proc.0.wait().unwrap();
    let (impostor, other) = server(dir_b.path(), tls_port);
    assert_ne!(other, fingerprint);
    let mut fooled = client(&impostor, tls_port, pins.path(), &[]);
    let why = fooled.err.expect("its key changed");
    assert!(why.contains(&other) && why.contains(&fingerprint), "{why}");
    assert!(
        why.contains("known_servers") && why.contains("line 1"),
        "{why}"
    );
    assert_eq!(fooled.exit_code(), Some(1));
}

#[test]
fn a_wrong_fingerprint_is_refused_and_the_right_one_logs_in() {
    let (dir, pins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server, tls_port, fingerprint) = server_on(dir.path(), "any");
    let wrong = "aaaa-bbbb-cccc-dddd";
    let mut refused = client(&server, tls_port, pins.path(), &["--fingerprint", wrong]);
    let why = refused.err.expect("Refusing");
    assert!(why.contains(&fingerprint) && why.contains(wrong), "{why}");
    assert_eq!(refused.exit_code(), Some(1));
    assert!(
        !pins.path().join("known_servers").exists(),
        "a refused key was pinned"
    );
    let mut right = client(
        &server,
        tls_port,
        pins.path(),
        &["--fingerprint", &fingerprint],
    );
    right.send("alice");
    right.send("alicepw");
    right.out.expect("Login successful");
}

/// A made-up discovery responder on 127.0.0.1 (loopback only): it shares the real
/// server's UDP port (SO_REUSEADDR) and, being bound to the more specific address, gets the
/// requests sent to 127.0.0.1 while the real server's wildcard socket gets those sent to
/// loopback's broadcast address, so the client hears both. It answers every request with
/// `answer` until dropped.
struct FakeResponder {
    stop: Arc<AtomicBool>,
    /// Requests answered.
    answered: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeResponder {
    fn start(port: u16, answer: String) -> FakeResponder {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_reuse_address(true).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        socket.bind(&addr.into()).expect("bind the fake responder");
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (stop, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let thread = {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut buf = [0u8; MAX_DATAGRAM];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        if lanchat::discovery::is_request(&buf[..n])
                            && socket.send_to(answer.as_bytes(), from).is_ok()
                        {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        FakeResponder {
            stop,
            answered,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_spoofed_discovery_answer_for_a_pinned_server_is_not_used_and_the_real_one_is() {
    let (dir, pins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dport = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("configuration.toml");
    std::fs::write(&config, format!("discovery_port = {dport}\n")).unwrap();
    let mut server = ServerProcess::start_with_args(
        "127.0.0.1",
        dir.path(),
        &["--config", config.to_str().unwrap(), "--tls-port", "any"],
    );
    server
        .stdout
        .expect(&format!("Answering discovery on UDP port {dport}"));
    let tls_port = tls_port_in(&server.stdout.expect("Encrypted (TLS): port "));

    // The first connection, by address, pins the server's key.
    let mut first = client(&server, tls_port, pins.path(), &[]);
    first.out.expect("First connection to ");
    first.send("alice");
    first.send("alicepw");
    first.out.expect("Login successful");
    first.close_stdin();
    assert_eq!(first.exit_code(), Some(0));

    // What the real server answers, for the spoofs to copy (name, id, address).
    let broadcast = SocketAddr::from(([127, 255, 255, 255], dport));
    let real = discover::scan(&[broadcast], Duration::from_millis(500)).unwrap();
    assert_eq!(real.len(), 1, "{real:?}");
    let real = real[0].announcement.clone();
    assert!(real.fingerprint.is_some(), "{real:?}");
    let other_key = Fingerprint::of_spki(b"the spoofer's key").full();
    // Where a client fooled by the second spoof would connect: nothing may arrive there.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_tls = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    trap_tls.set_nonblocking(true).unwrap();
    let spoofs = [
        // The same server, address and ports, but another key.
        Announcement {
            fingerprint: Some(other_key.clone()),
            ..real.clone()
        },
        // The same server (name and id) on other ports, with the spoofer's key.
        Announcement {
            doors: vec![
                ("tcp".into(), trap.local_addr().unwrap().port()),
                ("tls".into(), trap_tls.local_addr().unwrap().port()),
            ],
            fingerprint: Some(other_key),
            ..real.clone()
        },
    ];
    let dport = dport.to_string();
    for spoof in spoofs {
        let fake = FakeResponder::start(dport.parse().unwrap(), spoof.to_wire());
        let env = [("LANCHAT_CONFIG_DIR", pins.path().to_str().unwrap())];
        let mut scan = ClientProcess::start_with_env(
            "scan",
            &[],
            &[&["--scan"], &local_discovery(&dport)[..]].concat(),
            &env,
        );
        let why = scan
            .err
            .expect("Ignoring a discovery answer from 127.0.0.1");
        assert!(why.contains(&format!("127.0.0.1:{tls_port}")), "{why}");
        assert_eq!(scan.exit_code(), Some(0));
        let listed = scan.out.rest();
        assert_eq!(listed.len(), 1, "only the real server: {listed:?}");
        assert!(
            listed[0].contains(&format!(" port {}", server.port)),
            "{listed:?}"
        );

        let mut c = ClientProcess::start_with_env("client", &[], &local_discovery(&dport), &env);
        c.err.expect("Ignoring a discovery answer from 127.0.0.1");
        let found = c.out.expect("; connecting.");
        assert!(
            found.contains(&format!("127.0.0.1 port {} ", server.port)),
            "{found}"
        );
        c.send("bob");
        c.send("bobpw");
        c.out.expect("Login successful");
        c.close_stdin();
        assert_eq!(c.exit_code(), Some(0));
        assert!(
            fake.answered.load(Ordering::Relaxed) > 0,
            "the spoof was not heard"
        );
    }
    for socket in [&trap, &trap_tls] {
        assert!(socket.accept().is_err(), "a client connected to the spoof");
    }
}

#[test]
fn a_client_that_knows_no_tls_port_says_its_connection_is_not_encrypted() {
    let (dir, pins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The server on a port of its own (not 4119), the client told no TLS port: it does not
    // guess one, and says what that means and how to ask for TLS.
    let (server, _, _) = server_on(dir.path(), "any");
    let port = server.port.to_string();
    let mut plain = ClientProcess::start_with_env(
        "client",
        &[],
        &["127.0.0.1", port.as_str()],
        &[("LANCHAT_CONFIG_DIR", pins.path().to_str().unwrap())],
    );
    let warning = plain.err.expect("NOT encrypted");
    assert!(warning.contains("--tls-port"), "{warning}");
    plain.send("alice");
    plain.send("alicepw");
    plain.out.expect("Login successful");
}
