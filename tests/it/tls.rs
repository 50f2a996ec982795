//! TLS on the native door (issue 25): a relay between client and server reads passwords
//! and messages over the plain door and nothing over the TLS door; `openssl s_client` logs
//! in; a client pinned to another fingerprint is refused; the identity survives a restart.

use crate::support::{tls_stream, TestClient, TestServer, TlsClient, TIMEOUT};
use lanchat::config::OptionalPort;
use lanchat::protocol::Kind;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn start_with_tls() -> TestServer {
    TestServer::start_with(|c| c.tls_port = OptionalPort::Any)
}

/// A TCP relay for one connection that keeps a copy of every byte either way: what a
/// classmate between the client and the server (ARP spoofing, a rogue access point) sees.
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn to(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let seen = Arc::clone(&seen);
            move || {
                let (client, _) = listener.accept().unwrap();
                let server = TcpStream::connect(target).unwrap();
                let up = copy(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    &seen,
                );
                copy(server, client, &seen).join().unwrap();
                up.join().unwrap();
            }
        });
        Relay {
            addr,
            seen,
            thread: Some(thread),
        }
    }

    /// Everything that crossed it so far.
    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies `from` to `to` until either ends (bounded by a read timeout), keeping a copy.
fn copy(mut from: TcpStream, mut to: TcpStream, seen: &Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    let seen = Arc::clone(seen);
    std::thread::spawn(move || {
        from.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            seen.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const SECRET: &str = "the exam answers are in room 42";

#[test]
fn a_relay_reads_the_password_and_messages_on_the_plain_door_and_nothing_over_tls() {
    let server = start_with_tls();
    let bob = server.login("bob");
    let fingerprint = server
        .fingerprint
        .expect("a TLS door has a fingerprint")
        .full();

    // Plain door: the relay sees everything (so this test can fail).
    let plain_relay = Relay::to(server.addr);
    let alice = TestClient::connect(plain_relay.addr);
    alice.expect(Kind::Hello);
    alice.expect_ask("username");
    alice.send("alice");
    alice.expect_ask("password");
    alice.send("pw-alice");
    alice.expect(Kind::Welcome);
    alice.read_mail();
    alice.send(&format!("message bob {SECRET}"));
    alice.expect_ok("sent");
    assert_eq!(bob.expect(Kind::Msg).text, SECRET);
    alice.logout();
    drop(alice);
    let seen_plain = {
        let relay = plain_relay;
        let deadline = Instant::now() + TIMEOUT;
        while !contains(&relay.seen(), SECRET) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        relay.seen()
    };
    assert!(
        contains(&seen_plain, "pw-alice"),
        "the plain door hid the password?"
    );
    assert!(contains(&seen_plain, SECRET));

    // TLS door: the same conversation, and the relay sees neither.
    let tls_relay = Relay::to(server.tls.unwrap());
    let mut carol = TlsClient::connect_native(tls_relay.addr, &fingerprint).unwrap();
    carol.expect(Kind::Hello);
    carol.expect(Kind::Ask);
    carol.send("carol");
    carol.expect(Kind::Ask);
    carol.send("pw-carol");
    carol.expect(Kind::Welcome);
    carol.send(&format!("message bob {SECRET}"));
    let mut reply = carol.next();
    while reply.kind == Kind::Info {
        reply = carol.next();
    }
    assert_eq!((reply.kind, reply.arg(0)), (Kind::Ok, "sent"), "{reply}");
    let msg = bob.expect(Kind::Msg);
    assert_eq!((msg.arg(0), msg.text.as_str()), ("carol", SECRET));
    // Bob answers over the plain door; carol reads it decrypted, the relay does not.
    bob.send(&format!("message carol re: {SECRET}"));
    let answer = carol.expect(Kind::Msg);
    assert_eq!(answer.text, format!("re: {SECRET}"));
    let seen_tls = tls_relay.seen();
    assert!(seen_tls.len() > 500, "too little went through the relay");
    assert!(
        !contains(&seen_tls, "pw-carol"),
        "the password crossed in clear"
    );
    assert!(!contains(&seen_tls, SECRET), "a message crossed in clear");
    assert!(
        !contains(&seen_tls, "carol"),
        "even the username crossed in clear"
    );
    carol.send("logout");
    drop(carol);
}

#[test]
fn openssl_s_client_logs_in_on_the_tls_door() {
    let server = start_with_tls();
    let bob = server.login("bob");
    let tls = server.tls.unwrap();
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(tls.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed (tests/needs.sh)");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // The lines openssl prints, read on a thread so a silent server cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |prefix: &str| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("openssl printed no `{prefix}` line"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    };
    // A person at openssl reads prose, as at telnet: the prompts wait on their line, so
    // the greeting is the only whole line before the name is typed.
    expect("Welcome to lanchat. Please log in.");
    stdin.write_all(b"alice\n").unwrap();
    stdin.write_all(b"pw-alice\n").unwrap();
    expect("Username: Password: Login successful");
    stdin
        .write_all(format!("message bob {SECRET}\n").as_bytes())
        .unwrap();
    expect("Your message was sent to bob.");
    assert_eq!(bob.expect(Kind::Msg).text, SECRET);
    stdin.write_all(b"logout\n").unwrap();
    expect("Logging off. Goodbye!");
    drop(stdin);
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
}

#[test]
fn a_client_pinned_to_another_fingerprint_is_refused_and_the_identity_survives_a_restart() {
    let mut server = start_with_tls();
    let fingerprint = server.fingerprint.unwrap();
    let other = lanchat::tls::Fingerprint::of_spki(b"some other key").full();
    let err = TlsClient::connect_native(server.tls.unwrap(), &other)
        .err()
        .expect("a wrong fingerprint must be refused");
    assert!(err.contains(&fingerprint.short()), "{err}");
    // The short form is enough to pin.
    let mut ok = TlsClient::connect_native(server.tls.unwrap(), &fingerprint.short()).unwrap();
    ok.expect(Kind::Hello);
    drop(ok);
    let data_dir = server.data_dir.clone();
    server.stop();
    let again = TestServer::start_full(
        |c| c.tls_port = OptionalPort::Any,
        crate::support::credentials(0),
        Arc::new(lanchat::clock::SystemClock),
        Some(data_dir),
    );
    assert_eq!(again.fingerprint, Some(fingerprint));
}

#[test]
fn bytes_that_are_not_tls_on_the_tls_door_close_that_connection_only() {
    let server = start_with_tls();
    let bob = server.login("bob");
    let mut garbage = TcpStream::connect(server.tls.unwrap()).unwrap();
    garbage.set_read_timeout(Some(TIMEOUT)).unwrap();
    garbage.write_all(b"alice\npw-alice\n").unwrap();
    // An alert, then the end of the stream (a reset counts as closed too).
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = garbage.read_to_end(&mut rest);
    assert!(started.elapsed() < TIMEOUT, "the connection stayed open");
    assert!(
        !contains(&rest, "HELLO") && !contains(&rest, "Welcome"),
        "plain lines on the TLS door"
    );
    bob.send("who");
    assert_ne!(bob.next().kind, Kind::Bye);
}

#[test]
fn require_tls_refuses_a_password_on_the_plain_door_and_says_where_to_go() {
    let server = TestServer::start_with(|c| {
        c.tls_port = OptionalPort::Any;
        c.require_tls = true;
    });
    let tls_port = server.tls.unwrap().port();
    let plain = server.connect();
    plain.send("alice");
    let bye = plain.expect(Kind::Bye);
    assert_eq!(bye.arg(0), "tls-required", "{bye}");
    assert!(bye.text.contains(&format!("port {tls_port}")), "{bye}");
    plain.expect_closed();
    let mut secure =
        TlsClient::connect_native(server.tls.unwrap(), &server.fingerprint.unwrap().short())
            .unwrap();
    secure.expect(Kind::Hello);
    secure.expect(Kind::Ask);
    secure.send("alice");
    secure.expect(Kind::Ask);
    secure.send("pw-alice");
    secure.expect(Kind::Welcome);
}

#[test]
fn require_tls_on_the_plain_web_page_sends_its_user_to_https_not_to_openssl() {
    let server = TestServer::start_with(|c| {
        c.tls_port = OptionalPort::Any;
        c.web_port = OptionalPort::Any;
        c.require_tls = true;
    });
    let mut page = crate::support::WsClient::connect(server.web.expect("the web door is open"));
    page.send("alice");
    let bye = loop {
        let line = page.next();
        if line.kind == Kind::Bye {
            break line;
        }
    };
    assert_eq!(bye.arg(0), "tls-required", "{bye}");
    assert!(
        bye.text.contains("https://") && !bye.text.contains("openssl"),
        "{bye}"
    );
}

/// Reads IRC lines until one contains `what` (bounded by the stream's read timeout).
fn irc_until(reader: &mut impl BufRead, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(1..) if line.contains(what) => return line,
            Ok(1..) => seen.push(line),
            other => panic!("no `{what}` ({other:?}); saw {seen:?}"),
        }
    }
}

#[test]
fn irc_over_tls_registers_and_plain_irc_under_require_tls_is_told_the_tls_port() {
    let server = TestServer::start_with(|c| {
        c.tls_port = OptionalPort::Any;
        c.irc_port = OptionalPort::Any;
        c.irc_tls_port = OptionalPort::Any;
        c.require_tls = true;
    });
    let irc_tls_port = server.irc_tls.expect("the IRC TLS door is open").port();
    let fingerprint = server.fingerprint.unwrap().short();
    let relay = Relay::to(SocketAddr::new(server.addr.ip(), irc_tls_port));
    let mut secure = TlsClient::connect(relay.addr, &fingerprint).unwrap();
    secure
        .stream
        .get_mut()
        .write_all(b"PASS pw-alice\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n")
        .unwrap();
    secure.stream.get_mut().flush().unwrap();
    assert!(irc_until(&mut secure.stream, " 001 ").contains("alice"));
    assert!(
        !contains(&relay.seen(), "pw-alice"),
        "the IRC password crossed in clear"
    );
    drop(secure);

    let plain = TcpStream::connect(server.irc.expect("the IRC door is open")).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    (&plain)
        .write_all(b"PASS pw-bob\r\nNICK bob\r\nUSER bob 0 * :Bob\r\n")
        .unwrap();
    let refusal = irc_until(&mut BufReader::new(&plain), "TLS");
    assert!(
        refusal.contains(&format!("port {irc_tls_port}")),
        "{refusal}"
    );
}

#[test]
fn web_tls_serves_the_page_over_https_and_logs_in_over_wss_through_a_blind_relay() {
    let server = TestServer::start_with(|c| {
        c.web_port = OptionalPort::Any;
        c.web_tls = true;
        c.require_tls = true;
        c.tls_port = OptionalPort::Any;
    });
    let web = server.web.expect("the web door is open");
    let fingerprint = server.fingerprint.unwrap().full();
    // Bob on the TLS door (require_tls refuses passwords on the plain one).
    let mut bob = TlsClient::connect_native(server.tls.unwrap(), &fingerprint).unwrap();
    bob.expect(Kind::Hello);
    bob.expect(Kind::Ask);
    bob.send("bob");
    bob.expect(Kind::Ask);
    bob.send("pw-bob");
    bob.expect(Kind::Welcome);
    bob.expect(Kind::Info);

    let mut page = tls_stream(web, &fingerprint);
    write!(
        page,
        "GET / HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = page.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.contains("<html") || response.contains("<!DOCTYPE"),
        "no page"
    );

    let relay = Relay::to(web);
    let ws = crate::support::WsClient::connect_over(tls_stream(relay.addr, &fingerprint), web);
    let mut alice = crate::support::WsClient::login_on(ws, "alice", "pw-alice");
    alice.send(&format!("message bob {SECRET}"));
    alice.expect(Kind::Ok, "sent");
    assert_eq!(bob.expect(Kind::Msg).text, SECRET);
    let seen = relay.seen();
    assert!(
        !contains(&seen, "pw-alice") && !contains(&seen, SECRET),
        "clear text over WSS"
    );
    assert!(
        !contains(&seen, "Upgrade"),
        "the WebSocket handshake crossed in clear"
    );

    // Plain HTTP on the HTTPS door gets nothing in clear.
    let mut plain = TcpStream::connect(web).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The door may already have closed on these bytes (a reset makes the write fail): that
    // too is "nothing in clear".
    let _ = write!(plain, "GET / HTTP/1.1\r\nHost: {web}\r\n\r\n");
    let mut back = Vec::new();
    let _ = plain.read_to_end(&mut back);
    assert!(
        !contains(&back, "HTTP/1.1"),
        "an HTTP answer on the HTTPS door"
    );
}

#[test]
fn mail_delivered_over_tls_leaves_the_mailbox_once_the_client_has_it() {
    let server = start_with_tls();
    let alice = server.login("alice");
    for i in 0..30 {
        alice.send(&format!("message bob note {i} {}", "x".repeat(200)));
        alice.expect_code(Kind::Ok, "queued");
    }
    let mailbox = server.data_dir.join("mail/bob.log");
    assert!(mailbox.exists());
    let fingerprint = server.fingerprint.unwrap().full();
    let mut bob = TlsClient::connect_native(server.tls.unwrap(), &fingerprint).unwrap();
    bob.expect(Kind::Hello);
    bob.expect(Kind::Ask);
    bob.send("bob");
    bob.expect(Kind::Ask);
    bob.send("pw-bob");
    bob.expect(Kind::Welcome);
    assert_eq!(bob.expect(Kind::Info).arg(0), "mail");
    for i in 0..30 {
        assert!(bob
            .expect(Kind::Mail)
            .text
            .starts_with(&format!("note {i} ")));
    }
    // The receipts count wire bytes (ciphertext): once bob's TCP acknowledged them, the
    // mailbox goes, without a word from him.
    let deadline = Instant::now() + TIMEOUT;
    while mailbox.exists() {
        assert!(
            Instant::now() < deadline,
            "delivered mail still in {mailbox:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    bob.send("logout");
    drop(bob);
}
