use crate::store::{login_with_mail, raw_login, server_process};
use crate::support::*;
use lanchat::protocol::{Kind, Line};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Queues mails `range` for bob from `alice` (pipelined) and returns the numbers the server
/// answered `OK queued` for. Each mail's text starts with `m<number>` and is padded to about
/// `size` bytes.
fn queue_for_bob(alice: &TestClient, range: std::ops::Range<usize>, size: usize) -> Vec<usize> {
    let pad = "x".repeat(size);
    let all: String = range
        .clone()
        .map(|i| format!("message bob m{i} {pad}\n"))
        .collect();
    alice.send_raw(all.as_bytes());
    let mut queued = Vec::new();
    for i in range {
        let reply = alice.next();
        if reply.kind == Kind::Ok && reply.arg(0) == "queued" {
            queued.push(i);
        } else {
            panic!("m{i} not queued: {reply}");
        }
    }
    queued
}

/// The mail number in a `MAIL` line's text (`m<number> ...`).
fn number(mail: &Line) -> usize {
    mail.text
        .split(' ')
        .next()
        .and_then(|w| w.strip_prefix('m'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not one of ours: {mail}"))
}

/// Every mail a client was shown, across its logins: a mail shown twice must carry the same
/// id the second time (so the client can drop it), and never twice in one login.
#[derive(Default)]
struct Shown {
    /// Mail number -> the id it came with.
    ids: BTreeMap<usize, String>,
    /// Mails shown again, in a later login, with their first id.
    repeats: usize,
}

impl Shown {
    fn login(&mut self, mails: &[Line]) {
        let mut this_login = BTreeSet::new();
        for mail in mails {
            assert_eq!(mail.kind, Kind::Mail, "{mail}");
            let n = number(mail);
            assert!(this_login.insert(n), "m{n} twice in one login");
            match self.ids.get(&n) {
                Some(id) => {
                    assert_eq!(mail.arg(3), id, "m{n} came again with another id");
                    self.repeats += 1;
                }
                None => {
                    self.ids.insert(n, mail.arg(3).to_string());
                }
            }
        }
    }

    fn missing(&self, acknowledged: &[usize]) -> Vec<usize> {
        acknowledged
            .iter()
            .copied()
            .filter(|n| !self.ids.contains_key(n))
            .collect()
    }
}

/// Sends the login of `name` on a raw stream; the lines that answer it are left unread.
fn send_login(stream: &TcpStream, name: &str, password: &str) {
    (&*stream)
        .write_all(format!("{ASK_TAGGED}{name}\n{password}\n").as_bytes())
        .unwrap();
}

/// The `MAIL` lines among complete lines of `bytes` (a torn last line is not counted: the
/// client never had it whole).
fn mail_lines(bytes: &[u8]) -> Vec<Line> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
        .filter_map(|l| Line::parse(&String::from_utf8_lossy(l)))
        .filter(|l| l.kind == Kind::Mail)
        .collect()
}

/// How many mails the `INFO mail` line among `bytes` announces (0 if it did not arrive).
fn announced(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| Line::parse(&String::from_utf8_lossy(l)))
        .find(|l| l.kind == Kind::Info && l.arg(0) == "mail")
        .and_then(|l| {
            let count = l.text.rsplit('(').next()?.strip_suffix("):")?;
            count.parse().ok()
        })
        .unwrap_or(0)
}

/// Logs in again after a reset: until the server has noticed the reset (on a loaded
/// machine its session thread may not have run yet), the old login still counts and a new
/// one is refused with `already-online`, as a user retrying would see.
fn login_once_the_reset_is_seen(
    s: &TestServer,
    name: &str,
    password: &str,
) -> (TestClient, Vec<Line>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let c = s.connect();
        c.send(name);
        c.expect_ask("password");
        c.send(password);
        let answer = c.next();
        if answer.kind == Kind::Welcome {
            let mail = c.read_mail();
            return (c, mail);
        }
        assert!(
            answer.kind == Kind::Err
                && answer.arg(0) == "already-online"
                && Instant::now() < deadline,
            "expected Welcome, got: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn offline_mail_cut_off_by_a_reset_mid_delivery_arrives_at_the_next_login() {
    const MAILS: usize = 1000;
    let s = TestServer::start();
    let alice = s.login("alice");
    let queued = queue_for_bob(&alice, 0..MAILS, 1000);

    // Bob logs in with a small window, reads 100 KB and stops; his machine has then
    // acknowledged what he read plus what fills its receive buffer, nothing more.
    let stream = connect_with_small_window(s.addr);
    send_login(&stream, "bob", "pw-bob");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut read = Vec::new();
    while read.len() < 100 * 1024 {
        let before = read.len();
        reader.read_until(b'\n', &mut read).unwrap();
        assert!(
            read.len() > before,
            "connection closed after {before} bytes"
        );
    }
    // What his machine holds unread counts as received too (its TCP acknowledged it):
    // peeked once it stops growing (his window is shut then).
    read.extend_from_slice(reader.buffer());
    stream.set_nonblocking(true).unwrap();
    let mut held = vec![0u8; 1 << 20];
    let mut in_buffer = 0;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let now = match stream.peek(&mut held) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(e) => panic!("peek: {e}"),
        };
        if now == in_buffer && now > 0 || Instant::now() > deadline {
            break;
        }
        in_buffer = now;
    }
    read.extend_from_slice(&held[..in_buffer]);
    let mut shown = Shown::default();
    shown.login(&mail_lines(&read));
    let first = shown.ids.len();
    assert!(first < MAILS / 2, "the reset must cut the delivery short");
    // The reset.
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reader);
    drop(stream);

    let (bob, mail) = login_once_the_reset_is_seen(&s, "bob", "pw-bob");
    shown.login(&mail);
    let missing = shown.missing(&queued);
    assert!(
        missing.is_empty(),
        "{} of {MAILS} acknowledged mails lost ({first} received before the reset): {:?}...",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Delivered now: the next login has nothing left.
    bob.logout();
    let (_again, mail) = login_with_mail(&s, "bob", "pw-bob");
    assert!(mail.is_empty(), "delivered mail was kept");
    eprintln!(
        "reset after 100 KB: {first} of {MAILS} received before it, 0 lost, {} shown again",
        shown.repeats
    );
}

#[test]
fn a_server_killed_at_random_points_of_deliveries_loses_no_acknowledged_mail() {
    const ROUNDS: usize = 20;
    // More than the server's socket buffer holds (256 KiB), so the first delivery is still
    // partly in the server's memory when it is killed; then a few more each round.
    const BACKLOG: usize = 400;
    const PER_ROUND: usize = 20;
    let mut rng = StdRng::seed_from_u64(23);
    let tmp = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    let mut shown = Shown::default();
    let mut cut_short = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut server = server_process(tmp.path());
        let alice = raw_login(server.addr, "alice", "pw-alice");
        alice.next();
        let first = acknowledged.len();
        let count = if round == 0 { BACKLOG } else { PER_ROUND };
        acknowledged.extend(queue_for_bob(&alice, first..first + count, 1000));

        // Bob reads slowly; the server is killed at a random moment of his delivery.
        let stream = connect_with_small_window(server.addr);
        stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        send_login(&stream, "bob", "pw-bob");
        let give_up = Instant::now() + TIMEOUT;
        let kill_at = Instant::now() + Duration::from_millis(rng.random_range(0..300));
        let mut killed = false;
        let mut received = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            if !killed && Instant::now() >= kill_at {
                server.proc.0.kill().unwrap();
                server.proc.0.wait().unwrap();
                killed = true;
            }
            // After the kill, its kernel still sends what the server had handed it, then
            // closes: read to the end.
            match (&stream).read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    assert!(Instant::now() < give_up, "round {round}: no end of stream");
                }
                Err(e) => panic!("round {round}: read: {e}"),
            }
            if !killed {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let mail = mail_lines(&received);
        if mail.len() < announced(&received) {
            cut_short += 1;
        }
        shown.login(&mail);
        drop(server);
    }

    let server = server_process(tmp.path());
    let bob = raw_login(server.addr, "bob", "pw-bob");
    shown.login(&bob.read_mail());
    let missing = shown.missing(&acknowledged);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged mails lost over {ROUNDS} kills: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
    // The kills must land inside deliveries often enough to prove anything.
    assert!(
        cut_short >= ROUNDS / 3,
        "only {cut_short} of {ROUNDS} kills cut a delivery short"
    );
    eprintln!(
        "{ROUNDS} kills ({cut_short} mid-delivery) in {:?}: {} mails acknowledged, 0 lost, \
         {} shown again with their id",
        started.elapsed(),
        acknowledged.len(),
        shown.repeats
    );
}

#[test]
fn mail_a_quiet_client_received_leaves_the_mailbox_without_a_word_from_it() {
    let s = TestServer::start();
    let alice = s.login("alice");
    queue_for_bob(&alice, 0..20, 100);
    let mailbox = s.data_dir.join("mail/bob.log");
    assert!(mailbox.exists());

    // Bob reads his mail and then says nothing at all: his machine's acknowledgements are
    // enough, no command, no logout.
    let (bob, mail) = login_with_mail(&s, "bob", "pw-bob");
    assert_eq!(mail.len(), 20);
    let deadline = Instant::now() + TIMEOUT;
    while mailbox.exists() {
        assert!(
            Instant::now() < deadline,
            "delivered mail still in {mailbox:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Mail that arrives for him later and stays unread is not touched by that removal.
    bob.logout();
    queue_for_bob(&alice, 20..25, 100);
    let (_again, mail) = login_with_mail(&s, "bob", "pw-bob");
    let mail: Vec<usize> = mail.iter().map(number).collect();
    assert_eq!(mail, (20..25).collect::<Vec<_>>());
}
