//! Issue 23, items 2 and 10: the session policy every door follows. A connection that
//! trickles bytes without ever finishing a line is closed at its login or idle deadline on
//! the native, IRC and web doors; lines pasted faster than the rate limit are slowed, none
//! dropped; a client that keeps flooding is disconnected with its reason.

use crate::support::{TestClient, TestServer, TIMEOUT};
use lanchat::config::{Config, OptionalPort};
use lanchat::protocol::Kind;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Time between two trickled bytes: well inside every deadline these tests configure.
const TRICKLE_GAP: Duration = Duration::from_millis(150);
/// How long a trickle goes on at most (the test is bounded even when the server never
/// closes the connection, as before the fix).
const TRICKLE_FOR: Duration = Duration::from_secs(5);
/// A 1 s deadline must close the connection well before this, however busy the machine.
const CLOSED_WITHIN: Duration = Duration::from_millis(3500);

/// A server with the IRC and web doors open too.
fn server_with_every_door(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr, SocketAddr) {
    let server = TestServer::start_with(|c| {
        c.irc_port = OptionalPort::Any;
        c.web_port = OptionalPort::Any;
        tweak(c);
    });
    let irc = server.irc.expect("the IRC door is open");
    let web = server.web.expect("the web door is open");
    (server, irc, web)
}

/// Sends `trickle` one byte every [`TRICKLE_GAP`] (for at most [`TRICKLE_FOR`]) while
/// reading everything the server sends until it closes. Returns what it sent and how long
/// after the trickle began the connection closed.
fn trickle_until_closed(stream: &TcpStream, trickle: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let closed = AtomicBool::new(false);
    let mut received = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut w = stream;
            for &b in trickle.iter().cycle() {
                if closed.load(Ordering::Acquire) || started.elapsed() > TRICKLE_FOR {
                    return;
                }
                if w.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(TRICKLE_GAP);
            }
        });
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut r = stream;
        let mut chunk = [0u8; 4096];
        while started.elapsed() < TRICKLE_FOR + TIMEOUT {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        closed.store(true, Ordering::Release);
    });
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Asserts a trickling connection was closed in time, with `reason` in its last words.
fn assert_closed_in_time(what: &str, (received, took): (String, Duration), reason: &str) {
    assert!(
        took < CLOSED_WITHIN,
        "{what}: closed only after {took:?} of trickling (received {received:?})"
    );
    assert!(
        received.contains(reason),
        "{what}: no {reason:?} in {received:?}"
    );
}

/// An IRC client registered as carol; everything up to the welcome is consumed.
fn irc_register(irc: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(irc).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    (&stream)
        .write_all(b"PASS pw-carol\r\nNICK carol\r\nUSER carol 0 * :Carol\r\n")
        .unwrap();
    read_until(&stream, " 001 ");
    stream
}

/// Reads (one byte at a time, so nothing after it is consumed) until `needle` has arrived.
fn read_until(stream: &TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match (&*stream).read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            other => panic!(
                "no {needle:?} ({other:?}); got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A WebSocket connection past its handshake (the server's 101 consumed).
fn ws_connect(web: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(web).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        &stream,
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: http://{web}\r\n\r\n"
    )
    .unwrap();
    read_until(&stream, "\r\n\r\n");
    stream
}

/// A masked WebSocket text frame carrying `text` (shorter than 126 bytes).
fn ws_text(text: &str) -> Vec<u8> {
    let mask = [0x1b, 0x2c, 0x3d, 0x4e];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The start of a masked text frame announcing 1,000 bytes, which the trickle never
/// finishes: a WebSocket client's way of trickling.
fn ws_endless_frame() -> Vec<u8> {
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend_from_slice(&1000u16.to_be_bytes());
    frame.extend_from_slice(&[0x1b, 0x2c, 0x3d, 0x4e]);
    frame.extend(std::iter::repeat_n(b'x' ^ 0x1b, 1000));
    frame
}

#[test]
fn a_login_trickled_a_byte_at_a_time_is_closed_at_the_login_deadline_on_every_door() {
    let (server, irc, web) = server_with_every_door(|c| c.login_timeout_secs = 1);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let native = TcpStream::connect(server.addr).unwrap();
            assert_closed_in_time(
                "native",
                trickle_until_closed(&native, b"alice"),
                // A person trickling (nc): the prose of BYE timeout.
                "\nLogin timed out. Logging off.\n",
            );
        });
        scope.spawn(|| {
            let irc = TcpStream::connect(irc).unwrap();
            assert_closed_in_time(
                "irc",
                trickle_until_closed(&irc, b"NICK carol"),
                "Registration timed out",
            );
        });
        scope.spawn(|| {
            let ws = ws_connect(web);
            assert_closed_in_time(
                "web",
                trickle_until_closed(&ws, &ws_endless_frame()),
                "BYE timeout Login timed out",
            );
        });
    });
}

#[test]
fn a_user_who_only_trickles_bytes_is_closed_at_the_idle_deadline_on_every_door() {
    let (server, irc, web) = server_with_every_door(|c| c.idle_timeout_secs = 1);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let alice = server.login("alice");
            let native = alice.into_stream();
            assert_closed_in_time(
                "native",
                trickle_until_closed(&native, b"whoelse"),
                "BYE timeout (You are time out)",
            );
        });
        scope.spawn(|| {
            let irc = irc_register(irc);
            assert_closed_in_time(
                "irc",
                trickle_until_closed(&irc, b"PRIVMSG bob :hi"),
                "ERROR :Closing Link: carol (You were idle too long)",
            );
        });
        scope.spawn(|| {
            let ws = ws_connect(web);
            (&ws).write_all(&ws_text("bob")).unwrap();
            (&ws).write_all(&ws_text("pw-bob")).unwrap();
            read_until(&ws, "WELCOME bob");
            assert_closed_in_time(
                "web",
                trickle_until_closed(&ws, &ws_endless_frame()),
                "BYE timeout (You are time out)",
            );
        });
    });
}

#[test]
fn a_pasted_burst_past_the_rate_is_slowed_and_every_line_arrives() {
    const LINES: usize = 100;
    const RATE: u32 = 50;
    const BURST: u32 = 10;
    let s = TestServer::start_with(|c| {
        c.max_messages_per_sec = RATE;
        c.message_burst = BURST;
    });
    let alice = s.login("alice");
    let bob = s.login("bob");
    let paste: String = (0..LINES)
        .map(|i| format!("message bob pasted line {i}\n"))
        .collect();
    let started = Instant::now();
    alice.send_raw(paste.as_bytes());
    for _ in 0..LINES {
        alice.expect_ok("sent");
    }
    let took = started.elapsed();
    for i in 0..LINES {
        let m = bob.expect(Kind::Msg);
        assert_eq!(m.text, format!("pasted line {i}"), "{m}");
    }
    // The lines past the burst came at the sustained rate: slowed, not refused.
    let slowest = Duration::from_secs_f64(f64::from(LINES as u32 - BURST) / f64::from(RATE));
    assert!(
        took >= slowest.mul_f64(0.9),
        "{LINES} lines took only {took:?}: not slowed to {RATE}/s"
    );
    assert!(took < slowest + Duration::from_secs(4), "took {took:?}");
}

#[test]
fn an_irc_paste_past_the_rate_is_slowed_the_same_way_and_every_line_arrives() {
    const LINES: usize = 60;
    let (server, irc, _web) = server_with_every_door(|c| {
        c.max_messages_per_sec = 50;
        c.message_burst = 10;
    });
    let bob = server.login("bob");
    let carol = irc_register(irc);
    let paste: String = (0..LINES)
        .map(|i| format!("PRIVMSG bob :pasted line {i}\r\n"))
        .collect();
    let started = Instant::now();
    (&carol).write_all(paste.as_bytes()).unwrap();
    for i in 0..LINES {
        let m = bob.expect(Kind::Msg);
        assert_eq!(m.text, format!("pasted line {i}"), "{m}");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "not slowed: {took:?}");
}

/// Floods `stream` with `line` until it fails or `done` is set (bounded in time).
fn flood(stream: &TcpStream, line: &[u8], done: &AtomicBool) {
    // Once the server has closed, a write may block rather than fail (its side of the
    // connection lingers in the kernel with a closed window): give up then.
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let chunk = line.repeat(256);
    let mut w = stream;
    while !done.load(Ordering::Acquire) && started.elapsed() < TRICKLE_FOR + TIMEOUT {
        if w.write_all(&chunk).is_err() {
            return;
        }
    }
}

#[test]
fn a_native_client_that_keeps_flooding_is_disconnected_with_its_reason() {
    let s = TestServer::start_with(|c| {
        c.max_messages_per_sec = 20;
        c.message_burst = 5;
        c.flood_disconnect_secs = 1;
    });
    let bob = s.login("bob");
    // Blank lines, and heartbeat lines (which are answered, and once were never limited).
    for (user, line) in [("alice", &b"\n"[..]), ("carol", &b"heartbeat\n"[..])] {
        let flooder = s.login(user);
        let done = AtomicBool::new(false);
        let started = Instant::now();
        let stream = flooder.into_stream();
        let reader = TestClient::from_stream(stream.try_clone().unwrap());
        std::thread::scope(|scope| {
            scope.spawn(|| flood(&stream, line, &done));
            let bye = reader.wait_for("BYE flood", |l| {
                l.kind != Kind::Presence && !(l.kind == Kind::Ok && l.arg(0) == "pong")
            });
            done.store(true, Ordering::Release);
            assert_eq!(
                (bye.kind, bye.arg(0)),
                (Kind::Bye, "flood"),
                "{user}: {bye}"
            );
            assert!(bye.text.contains("20"), "the reason names the rate: {bye}");
        });
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{user}: {took:?}"
        );
        let gone = bob.wait_for("the flooder's PRESENCE", |l| {
            l.kind == Kind::Presence && l.arg(0) == user && l.arg(1) != "login"
        });
        assert_eq!(gone.arg(1), "dropped", "{gone}");
    }
}

#[test]
fn an_irc_client_that_keeps_flooding_is_disconnected_with_excess_flood() {
    let (_server, irc, _web) = server_with_every_door(|c| {
        c.max_messages_per_sec = 20;
        c.message_burst = 5;
        c.flood_disconnect_secs = 1;
    });
    let stream = irc_register(irc);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| flood(&stream, b"PONG :x\r\n", &done));
        read_until(&stream, "ERROR :Closing Link: carol (Excess Flood");
        done.store(true, Ordering::Release);
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
