//! Issue 23, items 2 and 10: the session policy every door follows. A connection that
//! trickles bytes without ever finishing a line is closed at its login or idle deadline on
//! the native (plain and TLS), IRC and web doors; lines pasted faster than the rate limit
//! are slowed, none dropped; a client that keeps flooding is disconnected with its reason.
//!
//! The deadlines and the rate run on the server's manual monotonic clock (issue 24, item 8):
//! a test moves it past a deadline instead of sleeping through it, and the server acts
//! within a few real milliseconds (docs/testing.md).

use crate::support::{TestServer, TlsClient, TIMEOUT};
use lanchat::clock::ManualTicks;
use lanchat::config::{Config, OptionalPort};
use lanchat::protocol::Kind;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test watches a connection that must stay open and quiet: the server acts on
/// a moved clock within a few milliseconds, so a deadline enforced early shows up here.
const QUIET: Duration = Duration::from_millis(150);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A server on `ticks` with the IRC, web and native TLS doors open too.
fn server_with_every_door(ticks: &ManualTicks, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with_ticks(ticks, |c| {
        c.irc_port = OptionalPort::Any;
        c.web_port = OptionalPort::Any;
        c.tls_port = OptionalPort::Any;
        tweak(c);
    })
}

/// One door's connection that trickles bytes, and everything the server sent it.
struct Trickler {
    /// Which door, for messages.
    door: &'static str,
    /// The connection (TLS or not).
    stream: Box<dyn crate::support::Duplex>,
    /// The socket under it, for read timeouts.
    socket: TcpStream,
    /// The bytes it trickles, in a cycle.
    trickle: Vec<u8>,
    /// How many of them were sent.
    sent: usize,
    /// Everything received.
    received: Vec<u8>,
}

impl Trickler {
    fn plain(door: &'static str, stream: TcpStream, trickle: &[u8]) -> Trickler {
        Trickler {
            door,
            socket: stream.try_clone().unwrap(),
            stream: Box::new(stream),
            trickle: trickle.to_vec(),
            sent: 0,
            received: Vec::new(),
        }
    }

    fn tls(tls: TlsClient, trickle: &[u8]) -> Trickler {
        let socket = tls.stream.get_ref().sock.try_clone().unwrap();
        Trickler {
            door: "tls",
            socket,
            stream: Box::new(tls.stream.into_inner()),
            trickle: trickle.to_vec(),
            sent: 0,
            received: Vec::new(),
        }
    }

    /// Sends the next byte of the trickle, which never finishes a line.
    fn byte(&mut self) {
        let b = self.trickle[self.sent % self.trickle.len()];
        self.stream.write_all(&[b]).unwrap();
        self.stream.flush().unwrap();
        self.sent += 1;
    }

    /// Reads what arrives within `wait`; true at end of file.
    fn read_for(&mut self, wait: Duration) -> bool {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                // A reset, or TLS without close_notify: closed all the same.
                Err(_) => return true,
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// The connection is open and nothing in it says `reason` yet.
    fn assert_open(&mut self, reason: &str) {
        let door = self.door;
        assert!(
            !self.read_for(ms(1)),
            "{door}: closed early: {:?}",
            self.text()
        );
        assert!(
            !self.text().contains(reason),
            "{door}: early: {:?}",
            self.text()
        );
    }

    /// The server closes the connection soon, with `reason` in its last words.
    fn assert_closed_with(&mut self, reason: &str) {
        let door = self.door;
        assert!(
            self.read_for(TIMEOUT),
            "{door}: still open: {:?}",
            self.text()
        );
        assert!(
            self.text().contains(reason),
            "{door}: no {reason:?} in {:?}",
            self.text()
        );
    }
}

/// Runs the trickle on every connection: a byte each, then the clock moves `step`; `steps`
/// times.
fn trickle(conns: &mut [(Trickler, &str)], ticks: &ManualTicks, steps: usize, step: Duration) {
    for _ in 0..steps {
        for (c, _) in conns.iter_mut() {
            c.byte();
        }
        ticks.advance(step);
    }
}

/// Trickles past 59 s of a 60 s deadline (each connection open and quiet), then past it
/// (each closed with its reason).
fn trickle_through_a_60_s_deadline(conns: &mut [(Trickler, &str)], ticks: &ManualTicks) {
    trickle(conns, ticks, 59, secs(1));
    std::thread::sleep(QUIET);
    for (c, reason) in conns.iter_mut() {
        c.assert_open(reason);
    }
    trickle(conns, ticks, 2, secs(1));
    for (c, reason) in conns.iter_mut() {
        c.assert_closed_with(reason);
    }
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

/// Reads (one byte at a time, so nothing after it is consumed) until `needle` has arrived.
fn read_until(stream: &TcpStream, needle: &str) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
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

/// An IRC client registered as carol; everything up to the end of the welcome burst is
/// consumed.
fn irc_register(irc: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(irc).unwrap();
    (&stream)
        .write_all(b"PASS pw-carol\r\nNICK carol\r\nUSER carol 0 * :Carol\r\n")
        .unwrap();
    read_until(&stream, " 366 ");
    stream
}

/// A WebSocket connection past its handshake (the server's 101 consumed).
fn ws_connect(web: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(web).unwrap();
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

#[test]
fn a_login_trickled_a_byte_at_a_time_is_closed_at_the_login_deadline_on_every_door() {
    let ticks = ManualTicks::new();
    let server = server_with_every_door(&ticks, |c| c.login_timeout_secs = 60);
    let fingerprint = server.fingerprint.unwrap().short();
    // Each connection's thread has read the clock once its first answer arrived.
    let native = TcpStream::connect(server.addr).unwrap();
    read_until(&native, "Username:");
    let tls = TlsClient::connect_native(server.tls.unwrap(), &fingerprint).unwrap();
    let irc = TcpStream::connect(server.irc.unwrap()).unwrap();
    (&irc).write_all(b"PING :started\r\n").unwrap();
    read_until(&irc, "started");
    let web = ws_connect(server.web.unwrap());
    let mut conns = [
        // A person trickling (nc): the prose of BYE timeout.
        (
            Trickler::plain("native", native, b"alice"),
            "\nLogin timed out. Logging off.\n",
        ),
        (Trickler::tls(tls, b"alice"), "BYE timeout Login timed out"),
        (
            Trickler::plain("irc", irc, b"NICK carol"),
            "Registration timed out",
        ),
        (
            Trickler::plain("web", web, &ws_endless_frame()),
            "BYE timeout Login timed out",
        ),
    ];
    trickle_through_a_60_s_deadline(&mut conns, &ticks);
}

#[test]
fn a_user_who_only_trickles_bytes_is_closed_at_the_idle_deadline_on_every_door() {
    let ticks = ManualTicks::new();
    let server = server_with_every_door(&ticks, |c| c.idle_timeout_secs = 60);
    let fingerprint = server.fingerprint.unwrap().short();
    // Each login's idle clock started before its welcome was sent.
    let native = server.login("alice").into_stream();
    let mut tls = TlsClient::connect_native(server.tls.unwrap(), &fingerprint).unwrap();
    tls.send("dave");
    tls.send("pw-dave");
    while tls.next().kind != Kind::Welcome {}
    let irc = irc_register(server.irc.unwrap());
    let web = ws_connect(server.web.unwrap());
    (&web).write_all(&ws_text("bob")).unwrap();
    (&web).write_all(&ws_text("pw-bob")).unwrap();
    read_until(&web, "WELCOME bob");
    let mut conns = [
        (
            Trickler::plain("native", native, b"whoelse"),
            "BYE timeout (You are time out)",
        ),
        (
            Trickler::tls(tls, b"whoelse"),
            "BYE timeout (You are time out)",
        ),
        (
            // Silent past heartbeat_timeout_secs (35), it is pinged too; idle comes first.
            Trickler::plain("irc", irc, b"PRIVMSG bob :hi"),
            "ERROR :Closing Link: carol (You were idle too long)",
        ),
        (
            Trickler::plain("web", web, &ws_endless_frame()),
            "BYE timeout (You are time out)",
        ),
    ];
    trickle_through_a_60_s_deadline(&mut conns, &ticks);
}

#[test]
fn an_irc_client_silent_for_the_heartbeat_timeout_is_pinged_then_dropped() {
    let ticks = ManualTicks::new();
    let server = TestServer::start_with_ticks(&ticks, |c| {
        c.irc_port = OptionalPort::Any;
        c.heartbeat_timeout_secs = 30;
    });
    let carol = irc_register(server.irc.unwrap());
    ticks.advance(secs(31));
    read_until(&carol, "PING :");
    // Any line answers; the PING that follows proves the PONG was read before the clock
    // moves again.
    (&carol).write_all(b"PONG :x\r\nPING :sync\r\n").unwrap();
    read_until(&carol, "sync");
    ticks.advance(secs(29));
    let mut watch = Trickler::plain("irc", carol.try_clone().unwrap(), b"");
    std::thread::sleep(QUIET);
    watch.assert_open("PING :");
    ticks.advance(secs(1));
    read_until(&carol, "PING :");
    // Unanswered, it is dropped at twice the limit.
    ticks.advance(secs(29));
    std::thread::sleep(QUIET);
    watch.assert_open("ERROR");
    ticks.advance(secs(1));
    read_until(
        &carol,
        "ERROR :Closing Link: carol (Ping timeout: 60 seconds)",
    );
}

/// Lines past the burst wait for the clock, one interval each: `released(i)` checks that
/// line `i` (from 0) was handled, `quiet()` that nothing more was. Nothing past the burst is
/// handled before the clock moves, nor when it moved only half an interval.
fn paced(
    ticks: &ManualTicks,
    lines: usize,
    (rate, burst): (u32, u32),
    released: impl Fn(usize),
    quiet: impl Fn(),
) {
    let interval = Duration::from_secs(1) / rate;
    let burst = burst as usize;
    for i in 0..burst {
        released(i);
    }
    quiet();
    ticks.advance(interval / 2);
    quiet();
    ticks.advance(interval - interval / 2);
    released(burst);
    for i in burst + 1..lines {
        ticks.advance(interval);
        released(i);
    }
    quiet();
}

#[test]
fn a_pasted_burst_past_the_rate_is_slowed_and_every_line_arrives() {
    const LINES: usize = 20;
    const RATE: u32 = 10;
    const BURST: u32 = 5;
    let ticks = ManualTicks::new();
    let s = TestServer::start_with_ticks(&ticks, |c| {
        c.max_messages_per_sec = RATE;
        c.message_burst = BURST;
    });
    let alice = s.login("alice");
    let bob = s.login("bob");
    let paste: String = (0..LINES)
        .map(|i| format!("message bob pasted line {i}\n"))
        .collect();
    alice.send_raw(paste.as_bytes());
    paced(
        &ticks,
        LINES,
        (RATE, BURST),
        |i| {
            alice.expect_ok("sent");
            let m = bob.expect(Kind::Msg);
            assert_eq!(m.text, format!("pasted line {i}"), "{m}");
        },
        || alice.expect_silence(QUIET),
    );
}

#[test]
fn an_irc_paste_past_the_rate_is_slowed_the_same_way_and_every_line_arrives() {
    const LINES: usize = 20;
    const RATE: u32 = 10;
    const BURST: u32 = 5;
    let ticks = ManualTicks::new();
    let server = TestServer::start_with_ticks(&ticks, |c| {
        c.irc_port = OptionalPort::Any;
        c.max_messages_per_sec = RATE;
        c.message_burst = BURST;
    });
    let bob = server.login("bob");
    let carol = irc_register(server.irc.unwrap());
    let paste: String = (0..LINES)
        .map(|i| format!("PRIVMSG bob :pasted line {i}\r\n"))
        .collect();
    (&carol).write_all(paste.as_bytes()).unwrap();
    paced(
        &ticks,
        LINES,
        (RATE, BURST),
        |i| {
            let m = bob.expect(Kind::Msg);
            assert_eq!(m.text, format!("pasted line {i}"), "{m}");
        },
        || bob.expect_silence(QUIET),
    );
}

/// Moves the clock one interval of `rate` at a time while the client floods; `answered`
/// reads the client's next line: true for the answer to one more slowed line, false for its
/// disconnection. Returns how many slowed lines were answered first. The client's lines are
/// all received before the first is handled, so the server reads the clock for each next
/// line before the answer to the last one leaves (see `cork`): the clock never moves in
/// between, and the slowing is never broken.
fn slowed_lines_until_flood(
    ticks: &ManualTicks,
    rate: u32,
    mut answered: impl FnMut() -> bool,
) -> u32 {
    let interval = Duration::from_secs(1) / rate;
    let mut slowed = 0;
    loop {
        ticks.advance(interval);
        if !answered() {
            return slowed;
        }
        slowed += 1;
        assert!(slowed <= 3 * rate, "still connected after 3 s of flooding");
    }
}

#[test]
fn a_native_client_that_keeps_flooding_is_disconnected_with_its_reason() {
    const RATE: u32 = 10;
    const BURST: usize = 3;
    let ticks = ManualTicks::new();
    let s = TestServer::start_with_ticks(&ticks, |c| {
        c.max_messages_per_sec = RATE;
        c.message_burst = BURST as u32;
        c.flood_disconnect_secs = 1;
    });
    let bob = s.login("bob");
    // Blank lines count against the rate (they are not answered, so they once escaped it):
    // after a burst of them, a heartbeat waits for the clock.
    let alice = s.login("alice");
    alice.send_raw(&b"\n".repeat(BURST));
    alice.send("heartbeat");
    alice.expect_silence(QUIET);
    ticks.advance(Duration::from_secs(1) / RATE);
    alice.expect_ok("pong");
    // Heartbeat lines, which are answered (and once were never limited), sent all at once.
    let carol = s.login("carol");
    carol.send_raw(&b"heartbeat\n".repeat(40));
    for _ in 0..BURST {
        carol.expect_ok("pong");
    }
    let slowed = slowed_lines_until_flood(&ticks, RATE, || {
        let l = carol.next();
        if l.kind == Kind::Bye {
            assert_eq!(l.arg(0), "flood", "{l}");
            assert!(
                l.text.contains("10 lines a second"),
                "the reason names the rate: {l}"
            );
            return false;
        }
        assert_eq!((l.kind, l.arg(0)), (Kind::Ok, "pong"), "{l}");
        true
    });
    // Slowed from the first line past the burst, at the rate: a flood once that went on
    // for 1 s, not before.
    assert_eq!(slowed, RATE, "disconnected after {slowed} slowed lines");
    let gone = bob.wait_for("carol's PRESENCE", |l| {
        l.kind == Kind::Presence && l.arg(0) == "carol" && l.arg(1) != "login"
    });
    assert_eq!(gone.arg(1), "dropped", "{gone}");
}

#[test]
fn an_irc_client_that_keeps_flooding_is_disconnected_with_excess_flood() {
    const RATE: u32 = 10;
    const BURST: usize = 3;
    let ticks = ManualTicks::new();
    let server = TestServer::start_with_ticks(&ticks, |c| {
        c.irc_port = OptionalPort::Any;
        c.max_messages_per_sec = RATE;
        c.message_burst = BURST as u32;
        c.flood_disconnect_secs = 1;
    });
    let carol = irc_register(server.irc.unwrap());
    let flood: String = (0..40).map(|i| format!("PING :n{i}\r\n")).collect();
    (&carol).write_all(flood.as_bytes()).unwrap();
    for i in 0..BURST {
        read_until(&carol, &format!(":n{i}\r\n"));
    }
    let mut next = BURST;
    let slowed = slowed_lines_until_flood(&ticks, RATE, || {
        let got = read_until(&carol, "\r\n");
        if got.contains("ERROR :Closing Link: carol (Excess Flood)") {
            return false;
        }
        assert!(
            got.contains(" PONG ") && got.ends_with(&format!(":n{next}\r\n")),
            "{got}"
        );
        next += 1;
        true
    });
    assert_eq!(slowed, RATE, "disconnected after {slowed} slowed lines");
}
