use crate::support::*;
use lanchat::protocol::{Kind, Line};
use std::io::Read;
use std::time::{Duration, Instant};

#[test]
fn a_client_that_stops_heartbeating_is_logged_out_and_others_told() {
    let ticks = lanchat::clock::ManualTicks::new();
    let s = TestServer::start_with_ticks(&ticks, |c| c.heartbeat_timeout_secs = 35);
    let a = s.login("alice");
    let b = s.login("bob");
    a.expect(Kind::Presence);
    b.send("heartbeat");
    b.expect_ok("pong");
    // bob's "laptop sleeps": no more heartbeats.
    ticks.advance(Duration::from_secs(34));
    b.expect_silence(Duration::from_millis(150));
    ticks.advance(Duration::from_secs(2));
    let bye = b.expect_code(Kind::Bye, "timeout");
    assert!(bye.text.contains("heartbeat"), "{bye}");
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "timeout"));
    assert!(p.text.contains("heartbeat"));
    // alice never sent a heartbeat (a telnet user): not subject to it.
    a.send("whoelse");
    a.expect_list("whoelse");
}

#[test]
fn heartbeats_do_not_count_as_activity_for_the_idle_timeout() {
    let ticks = lanchat::clock::ManualTicks::new();
    let s = TestServer::start_with_ticks(&ticks, |c| c.idle_timeout_secs = 60);
    let a = s.login("alice");
    // Heartbeats every 20 s (well within heartbeat_timeout_secs): answered, yet idle at 60 s.
    for _ in 0..3 {
        a.send("heartbeat");
        a.expect_ok("pong");
        ticks.advance(Duration::from_secs(20));
    }
    let bye = a.expect_code(Kind::Bye, "timeout");
    assert!(bye.text.contains("idle"), "{bye}");
}

/// On the real clock, unlike the other deadline tests: the production wiring of the
/// monotonic clock (a 1 s login deadline, really waited for).
#[test]
fn half_finished_logins_are_closed_at_the_login_deadline() {
    let s = TestServer::start_with(|c| c.login_timeout_secs = 1);
    let silent = s.connect();
    let half = s.connect();
    half.send("alice");
    half.expect_ask("password");
    for c in [&silent, &half] {
        c.expect_code(Kind::Bye, "timeout");
        c.expect_closed();
    }
}

#[test]
fn connections_past_the_per_ip_cap_are_refused() {
    let s = TestServer::start_with(|c| c.max_clients_per_ip = 2);
    let a = TestClient::connect_from(s.addr, "127.0.0.1");
    let b = TestClient::connect_from(s.addr, "127.0.0.1");
    a.expect(Kind::Hello);
    b.expect(Kind::Hello);
    let c = TestClient::connect_from(s.addr, "127.0.0.1");
    // Refused before HELLO: the prose of BYE full, then the close.
    assert!(c.try_next(TIMEOUT).is_none(), "no HELLO when refused");
    let other = TestClient::connect_from(s.addr, "127.0.0.3");
    other.expect(Kind::Hello);
    drop(a);
    // A freed slot can be used again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let d = TestClient::connect_from(s.addr, "127.0.0.1");
        if d.try_next(TIMEOUT).is_some_and(|l| l.kind == Kind::Hello) {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_flood_is_slowed_and_logout_still_works_right_after_it() {
    let s = TestServer::start_with(|c| {
        c.max_messages_per_sec = 20;
        c.message_burst = 5;
    });
    let a = s.login("alice");
    let b = s.login("bob");
    let mut flood: String = (0..25)
        .map(|i| format!("message bob flood {i}\n"))
        .collect();
    flood.push_str("logout\n");
    a.send_raw(flood.as_bytes());
    for _ in 0..25 {
        a.expect_ok("sent");
    }
    a.expect_code(Kind::Bye, "logout");
    for i in 0..25 {
        assert_eq!(b.expect(Kind::Msg).text, format!("flood {i}"));
    }
}

/// One client that never reads, 20 that broadcast: the 20 get everything promptly, the
/// stuck one is dropped, and private messages it never got go to its mailbox.
#[test]
fn a_client_that_never_reads_stalls_nobody_and_loses_no_private_message() {
    const TALKERS: usize = 20;
    const EACH: usize = 60;
    const PRIVATE: usize = 300;
    let s = TestServer::start_with(|c| {
        // Big enough that the stall deadline, not the size cap, drops the stuck client, with
        // private messages still waiting in its outbox.
        c.max_outbox_bytes = 8 << 20;
        c.slow_reader_timeout_secs = 2;
    });
    // The stuck client: a tiny receive buffer, and it never reads.
    let mut stuck = connect_with_small_window(s.addr);
    use std::io::Write;
    stuck
        .write_all(format!("{ASK_TAGGED}dave\npw-dave\n").as_bytes())
        .unwrap();
    // (It has not read its own welcome: that is the point.)
    let talkers: Vec<TestClient> = (0..TALKERS).map(|i| s.login(&format!("user{i}"))).collect();
    let sender = s.login("carol");
    let padding = "x".repeat(2000);
    let started = Instant::now();
    let worst = std::thread::scope(|scope| {
        let handles: Vec<_> = talkers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padding = &padding;
                scope.spawn(move || {
                    let mut worst = Duration::ZERO;
                    let mut got = 0;
                    let mut acks = 0;
                    for n in 0..EACH {
                        c.send(&format!("broadcast {i} {n} {padding}"));
                    }
                    let mut last = Instant::now();
                    while got < (TALKERS - 1) * EACH || acks < EACH {
                        let l = c.next();
                        worst = worst.max(last.elapsed());
                        last = Instant::now();
                        match l.kind {
                            Kind::Bcast => got += 1,
                            Kind::Ok => acks += 1,
                            _ => panic!("unexpected {l}"),
                        }
                    }
                    worst
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    });
    eprintln!(
        "slow reader: {} broadcasts to {TALKERS} talkers in {:?}, worst gap {worst:?}",
        TALKERS * EACH,
        started.elapsed()
    );
    assert!(
        worst < Duration::from_secs(5),
        "a talker stalled for {worst:?}"
    );

    // Now dave's socket buffers are full: private messages queue in his outbox (or, once he
    // is cut off, go straight to his mailbox). None may be lost.
    for i in 0..PRIVATE {
        sender.send(&format!("message dave p{i} {padding}"));
        let l = sender.wait_for("ack", |l| l.kind == Kind::Ok || l.kind == Kind::Err);
        assert_eq!(l.kind, Kind::Ok, "{l}");
    }

    // The stuck client is dropped (its outbox overflowed or stalled).
    let observer = s.login("bob");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        observer.send("whoelse");
        let (_, users) = observer.expect_list("whoelse");
        if users.iter().all(|u| u.arg(0) != "dave") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck client was never dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What reached dave's socket, plus his mailbox, is every private message exactly once.
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    let _ = stuck.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    let mut seen: Vec<usize> = text
        .split_terminator('\n')
        .filter_map(Line::parse)
        .filter(|l| l.kind == Kind::Msg)
        .filter_map(|l| l.text.split(' ').next()?.strip_prefix('p')?.parse().ok())
        .collect();
    let on_socket = seen.len();
    drop(sender);
    let d = s.connect();
    d.send("dave");
    d.expect_ask("password");
    d.send("pw-dave");
    d.expect(Kind::Welcome);
    for l in d.read_mail() {
        if l.arg(2) == "private" {
            seen.push(l.text.split(' ').next().unwrap()[1..].parse().unwrap());
        }
    }
    eprintln!(
        "slow reader: {on_socket} private messages on the socket, {} from the mailbox",
        seen.len() - on_socket
    );
    assert!(seen.len() > on_socket, "the rescue path was not exercised");
    seen.sort();
    assert_eq!(
        seen,
        (0..PRIVATE).collect::<Vec<_>>(),
        "lost or duplicated messages"
    );
}

/// A group big enough for its messages to be queued for the flusher, one member who never
/// reads: every group message reaches that member exactly once, on the socket or, for what
/// was queued but never written when the connection was dropped, from the mailbox.
#[test]
fn a_group_member_who_never_reads_loses_no_group_message() {
    const READERS: usize = 9;
    const SENT: usize = 300;
    let s = TestServer::start_with(|c| {
        c.max_outbox_bytes = 8 << 20;
        c.slow_reader_timeout_secs = 2;
    });
    let sender = s.login("carol");
    sender.send("group create cs101");
    sender.expect_ok("group-created");
    let readers: Vec<TestClient> = (0..READERS)
        .map(|i| {
            let c = s.login(&format!("user{i}"));
            c.send("group join cs101");
            c.expect_ok("group-joined");
            c
        })
        .collect();
    let mut stuck = connect_with_small_window(s.addr);
    use std::io::Write;
    stuck
        .write_all(format!("{ASK_TAGGED}dave\npw-dave\ngroup join cs101\n").as_bytes())
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        sender.send("group members cs101");
        let (_, members) = sender.expect_list("members");
        if members.iter().any(|m| m.text == "dave (online)") {
            break;
        }
        assert!(Instant::now() < deadline, "dave never joined");
        std::thread::sleep(Duration::from_millis(50));
    }
    let padding = "x".repeat(2000);
    std::thread::scope(|scope| {
        for r in &readers {
            scope.spawn(move || {
                for n in 0..SENT {
                    let l = r.wait_for("a group message", |l| l.kind == Kind::Group);
                    assert!(l.text.starts_with(&format!("p{n} ")), "{l}");
                }
            });
        }
        for n in 0..SENT {
            sender.send(&format!("gsend cs101 p{n} {padding}"));
            sender.expect_ok("group-sent");
        }
    });

    // dave is dropped (his outbox stalled or overflowed).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        sender.send("whoelse");
        let (_, users) = sender.expect_list("whoelse");
        if users.iter().all(|u| u.arg(0) != "dave") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck member was never dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    let _ = stuck.read_to_end(&mut received);
    let number = |text: &str| -> usize { text.split(' ').next().unwrap()[1..].parse().unwrap() };
    // Only whole lines count: a line cut off by the drop was not delivered (its message
    // went to the mailbox).
    let whole = received
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let mut seen: Vec<usize> = String::from_utf8_lossy(&received[..whole])
        .split_terminator('\n')
        .filter_map(Line::parse)
        .filter(|l| l.kind == Kind::Group)
        .map(|l| number(&l.text))
        .collect();
    let on_socket = seen.len();
    let d = s.connect();
    d.send("dave");
    d.expect_ask("password");
    d.send("pw-dave");
    d.expect(Kind::Welcome);
    seen.extend(
        d.read_mail()
            .iter()
            .filter(|l| l.arg(2) == "group:cs101")
            .map(|l| number(&l.text)),
    );
    eprintln!(
        "stuck member: {on_socket} group messages on the socket, {} from the mailbox",
        seen.len() - on_socket
    );
    assert!(seen.len() > on_socket, "nothing went to the mailbox");
    seen.sort();
    assert_eq!(
        seen,
        (0..SENT).collect::<Vec<_>>(),
        "lost or duplicated messages"
    );
}

#[test]
fn a_password_guesser_is_locked_out_and_the_real_user_still_logs_in() {
    let clock = lanchat::clock::ManualClock::new(5_000_000);
    let s = TestServer::start_with_clock(&clock, |_| {});
    let guesser = TestClient::connect_from(s.addr, "127.0.0.5");
    guesser.expect(Kind::Hello);
    guesser.expect_ask("username");
    let mut tried = 0;
    let bye = loop {
        guesser.send("alice");
        let l = guesser.next();
        if l.kind == Kind::Bye {
            break l;
        }
        assert_eq!((l.kind, l.arg(0)), (Kind::Ask, "password"));
        guesser.send(&format!("guess{tried}"));
        tried += 1;
        let l = guesser.next();
        if l.kind == Kind::Bye {
            break l;
        }
        assert_eq!(l.arg(0), "bad-login");
        guesser.expect_ask("username");
    };
    assert_eq!(bye.arg(0), "blocked");
    assert_eq!(tried, 3, "three guesses, then blocked");
    // Reconnecting does not buy more guesses: refused at the username until the block ends.
    for _ in 0..5 {
        let again = TestClient::connect_from(s.addr, "127.0.0.5");
        again.expect(Kind::Hello);
        again.expect_ask("username");
        again.send("alice");
        again.expect_code(Kind::Bye, "blocked");
    }
    // The real alice, from her own machine, is not affected.
    let real = TestClient::connect_from(s.addr, "127.0.0.6");
    real.expect(Kind::Hello);
    real.expect_ask("username");
    real.send("alice");
    real.expect_ask("password");
    real.send("pw-alice");
    real.expect(Kind::Welcome);
    clock.advance(61);
    let after = TestClient::connect_from(s.addr, "127.0.0.5");
    after.expect(Kind::Hello);
    after.expect_ask("username");
    after.send("alice");
    after.expect_ask("password");
}

/// The server's own thread count and resident memory (the tests run in the same process).
fn threads_and_rss_kib() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> usize {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    (field("Threads:"), field("VmRSS:"))
}

/// In each of five rounds 201 "present" users log in, message another user
/// (present, or absent and so queued), read what was sent to them, and vanish abruptly (FIN
/// mid-line, RST, half close). Afterwards the server's connections and threads are gone,
/// memory is back near where it started, every queued message is in its mailbox exactly
/// once, and a new client logs in.
#[test]
fn two_hundred_clients_vanishing_abruptly_leave_nothing_behind() {
    // 268 users, 201 of them present each round.
    const USERS: usize = 268;
    const ROUNDS: usize = 5;
    let present = |i: usize| i % 4 != 3;
    let partner = |i: usize, round: usize| (i + 7 * (round + 1)) % USERS;
    let sender_of = |i: usize, round: usize| (i + USERS * 4 - 7 * (round + 1)) % USERS;
    let s = TestServer::start_full(
        |c| c.max_messages_per_sec = 0,
        credentials(USERS),
        std::sync::Arc::new(lanchat::clock::SystemClock),
        None,
    );
    let settle = |s: &TestServer| {
        let deadline = Instant::now() + TIMEOUT;
        while s.handle.connections() > 0 {
            assert!(Instant::now() < deadline, "connections left behind");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (threads_before, rss_before) = threads_and_rss_kib();
    let queued = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    let active = (0..USERS).filter(|i| present(*i)).count();
    for round in 0..ROUNDS {
        let all_sent = std::sync::Barrier::new(active);
        std::thread::scope(|scope| {
            for i in (0..USERS).filter(|i| present(*i)) {
                let (s, queued, all_sent) = (&s, &queued, &all_sent);
                scope.spawn(move || {
                    let me = format!("user{i}");
                    let to = format!("user{}", partner(i, round));
                    let c = s.login(&me);
                    all_sent.wait(); // everyone present is online before anyone sends
                    let text = format!("r{round} from {me}");
                    c.send(&format!("message {to} {text}"));
                    let mut expected = usize::from(present(sender_of(i, round)));
                    let mut acked = false;
                    while !acked || expected > 0 {
                        let l = c.next();
                        match (l.kind, l.arg(0)) {
                            (Kind::Ok, "queued") => {
                                queued.lock().unwrap().push((to.clone(), text.clone()));
                                acked = true;
                            }
                            (Kind::Ok, "sent") => acked = true,
                            (Kind::Msg, _) => expected -= 1,
                            _ => panic!("unexpected {l}"),
                        }
                    }
                    let stream = c.into_stream();
                    match i % 3 {
                        0 => {
                            use std::io::Write;
                            let _ = (&stream).write_all(b"message user1 half a li");
                        }
                        1 => {
                            let sock = socket2::SockRef::from(&stream);
                            let _ = sock.set_linger(Some(Duration::ZERO));
                        }
                        _ => {
                            let _ = stream.shutdown(std::net::Shutdown::Write);
                        }
                    }
                    drop(stream);
                });
            }
        });
        settle(&s);
    }
    let elapsed = started.elapsed();
    // A connection thread leaves the server's table just before it exits: give the last
    // ones a moment to finish before counting.
    let deadline = Instant::now() + TIMEOUT;
    let (threads_after, rss_after) = loop {
        let (threads, rss) = threads_and_rss_kib();
        if threads <= threads_before + 2 || Instant::now() >= deadline {
            break (threads, rss);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "soak: {ROUNDS} rounds x {active} clients in {elapsed:?}; threads {threads_before} -> {threads_after}, RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        threads_after <= threads_before + 2,
        "threads {threads_before} -> {threads_after}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );

    // Every queued message is in its mailbox exactly once, in order.
    let mut queued = queued.into_inner().unwrap();
    let mut mail: Vec<(String, String)> = Vec::new();
    for i in (0..USERS).filter(|i| !present(*i)) {
        let me = format!("user{i}");
        let c = s.connect();
        c.send(&me);
        c.expect_ask("password");
        c.send(&format!("pw{i}"));
        c.expect(Kind::Welcome);
        mail.extend(c.read_mail().into_iter().map(|m| (me.clone(), m.text)));
    }
    eprintln!(
        "soak: {} messages queued for absent users, {} in their mailboxes",
        queued.len(),
        mail.len()
    );
    queued.sort();
    mail.sort();
    assert_eq!(
        mail, queued,
        "mailboxes differ from what was acknowledged as queued"
    );
}
