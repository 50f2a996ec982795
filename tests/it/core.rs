use crate::support::*;
use lanchat::clock::ManualClock;
use lanchat::protocol::Kind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn login_dialogue_and_welcome() {
    let s = TestServer::start();
    let c = TestClient::connect(s.addr);
    let hello = c.expect(Kind::Hello);
    assert_eq!(hello.arg(0), "lanchat/1");
    c.expect_ask("username");
    c.send("columbia");
    c.expect_ask("password");
    c.send("116bway");
    let w = c.expect(Kind::Welcome);
    assert_eq!(w.arg(0), "columbia");
    c.expect_code(Kind::Info, "no-mail");
}

#[test]
fn a_login_sent_before_the_prompts_works() {
    // As a script (or lanchat-bench) does: everything at once, then read.
    let s = TestServer::start();
    let c = TestClient::connect(s.addr);
    c.send_raw(b"nobody\nwrong\ncolumbia\n116bway\nwhoelse\n");
    c.expect(Kind::Hello);
    c.expect_ask("username");
    c.expect_ask("password");
    c.expect_err("bad-login");
    c.expect_ask("username");
    c.expect_ask("password");
    assert_eq!(c.expect(Kind::Welcome).arg(0), "columbia");
    c.expect_code(Kind::Info, "no-mail");
    c.expect_list("whoelse");
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_clear_reply() {
    let s = TestServer::start();
    let c = s.connect();
    c.send("not a name!");
    c.expect_err("bad-name");
    c.expect_ask("username");
    // An unknown name and a wrong password are indistinguishable from outside.
    c.send("nobody");
    c.expect_ask("password");
    c.send("whatever");
    let unknown = c.expect_err("bad-login");
    c.expect_ask("username");
    c.send("alice");
    c.expect_ask("password");
    c.send("wrong");
    let wrong = c.expect_err("bad-login");
    assert_eq!(unknown.text, wrong.text);
    assert!(wrong.text.contains("2 more times"), "{wrong}");
    c.expect_ask("username");
    c.send("alice");
    c.expect_ask("password");
    c.send("pw-alice");
    c.expect(Kind::Welcome);
}

/// A connection from `from` (see [`TestClient::connect_from`]), past HELLO and the prompt.
fn connect_from(addr: SocketAddr, from: &str) -> TestClient {
    let c = TestClient::connect_from(addr, from);
    c.expect(Kind::Hello);
    c.expect_ask("username");
    c
}

#[test]
fn lockout_after_three_failures_per_user_and_ip_then_expires() {
    let clock = ManualClock::new(1_000_000);
    let s = TestServer::start_with_clock(&clock, |_| {});
    let c = connect_from(s.addr, "127.0.0.1");
    for _ in 0..2 {
        c.send("alice");
        c.expect_ask("password");
        c.send("bad");
        c.expect_err("bad-login");
        c.expect_ask("username");
    }
    c.send("alice");
    c.expect_ask("password");
    c.send("bad");
    let bye = c.expect_code(Kind::Bye, "blocked");
    assert!(bye.text.contains("60 seconds"), "{bye}");
    c.expect_closed();

    // Same user, same IP: refused at the username, with the time left.
    clock.advance(20);
    let c = connect_from(s.addr, "127.0.0.1");
    c.send("alice");
    let bye = c.expect_code(Kind::Bye, "blocked");
    assert!(bye.text.contains("40 seconds"), "{bye}");
    c.expect_closed();

    // The right password does not help while blocked... from that IP.
    // Another IP is not blocked (seed 001 keys on user and IP).
    let other = connect_from(s.addr, "127.0.0.2");
    other.send("alice");
    other.expect_ask("password");
    other.send("pw-alice");
    other.expect(Kind::Welcome);
    other.logout();

    // Another user from the blocked IP is fine too.
    let c = connect_from(s.addr, "127.0.0.1");
    c.send("bob");
    c.expect_ask("password");

    // After the block time, alice may log in from the first IP again.
    clock.advance(40);
    let c = connect_from(s.addr, "127.0.0.1");
    c.send("alice");
    c.expect_ask("password");
    c.send("pw-alice");
    c.expect(Kind::Welcome);
}

#[test]
fn second_login_of_an_online_user_is_refused() {
    let s = TestServer::start();
    let _a = s.login("alice");
    let c = s.connect();
    c.send("alice");
    // Only someone who knows the password learns that alice is online.
    c.expect_ask("password");
    c.send("pw-alice");
    c.expect_err("already-online");
    c.expect_ask("username");
}

#[test]
fn whoelse_lists_others_with_intros_and_aliases_work() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob's login", |l| {
        l.kind == Kind::Presence && l.arg(0) == "bob"
    });
    b.send("personalintro The best course ever");
    b.expect_ok("intro");
    for cmd in ["whoelse", "online", "/WHOELSE"] {
        a.send(cmd);
        let (_, users) = a.expect_list("whoelse");
        assert_eq!(users.len(), 1, "{cmd}");
        assert_eq!(users[0].kind, Kind::User);
        assert_eq!(users[0].arg(0), "bob");
        assert_eq!(users[0].arg(1), "available");
        assert_eq!(users[0].text, "The best course ever");
    }
    b.logout();
    a.wait_for("bob's logout", |l| {
        l.kind == Kind::Presence && l.arg(1) == "logout"
    });
    a.send("whoelse");
    let (h, users) = a.expect_list("whoelse");
    assert!(users.is_empty());
    assert!(h.text.contains("Not found"));
}

#[test]
fn personalintro_without_text_takes_the_next_line() {
    let s = TestServer::start();
    let a = s.login("alice");
    a.send("personalintro");
    a.expect_ask("intro");
    a.send("An \u{1b}[31mintro");
    a.expect_ok("intro");
    let b = s.login("bob");
    b.send("whoelse");
    let (_, users) = b.expect_list("whoelse");
    assert_eq!(users[0].text, "An \\x1b[31mintro");
}

#[test]
fn wholast_uses_the_clock_and_bounds() {
    let clock = ManualClock::new(2_000_000);
    let s = TestServer::start_with_clock(&clock, |_| {});
    let a = s.login("alice");
    let b = s.login("bob");
    let c = s.login("carol");
    b.logout();
    clock.advance(5 * 60);
    c.logout();
    a.send("wholast 10");
    let (_, users) = a.expect_list("wholast");
    let names: Vec<_> = users.iter().map(|u| u.arg(0).to_string()).collect();
    assert_eq!(names, ["bob", "carol"]);
    assert!(users
        .iter()
        .all(|u| u.arg(1) == "offline" && u.arg(2).ends_with('Z')));
    a.send("wholast 3");
    let (_, users) = a.expect_list("wholast");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].arg(0), "carol");
    a.send("wholast 61");
    a.expect_err("bad-number");
    a.send("wholast");
    a.expect_err("usage");
    let d = s.login("dave");
    a.send("wholast 0");
    let (_, users) = a.expect_list("wholast");
    assert_eq!(
        users.len(),
        2,
        "dave online now, carol left this second: {users:?}"
    );
    drop(d);
}

#[test]
fn messages_flow_both_ways_with_replies() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.send("message bob hello bob");
    a.expect_ok("sent");
    let m = b.wait_for("msg", |l| l.kind == Kind::Msg);
    assert_eq!((m.arg(0), m.text.as_str()), ("alice", "hello bob"));
    b.send("send alice hi alice");
    b.expect_ok("sent");
    let m = a.wait_for("msg", |l| l.kind == Kind::Msg);
    assert_eq!((m.arg(0), m.text.as_str()), ("bob", "hi alice"));
    a.send("message zed hi");
    a.expect_err("unknown-user");
    a.send("message carol are you there");
    let q = a.expect_ok("queued");
    assert!(q.text.contains("offline"), "{q}");
    a.send("message bob");
    a.expect_err("empty-message");
    a.send("message");
    a.expect_err("usage");
    // Seed 001 allows messaging yourself.
    a.send("message alice note to self");
    a.expect(Kind::Msg);
    a.expect_ok("sent");
}

#[test]
fn two_users_exchange_many_messages_at_once() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob", |l| l.kind == Kind::Presence);
    const N: usize = 300;
    std::thread::scope(|scope| {
        for (other, client) in [("bob", &a), ("alice", &b)] {
            let lines: String = (0..N)
                .map(|i| format!("message {other} seq {i}\n"))
                .collect();
            scope.spawn(move || client.send_raw(lines.as_bytes()));
        }
    });
    for (client, from) in [(&a, "bob"), (&b, "alice")] {
        let (mut got, mut acks) = (Vec::new(), 0);
        while got.len() < N || acks < N {
            let l = client.next();
            match l.kind {
                Kind::Msg => {
                    assert_eq!(l.arg(0), from);
                    got.push(l.text.trim_start_matches("seq ").parse::<usize>().unwrap());
                }
                Kind::Ok => acks += 1,
                _ => panic!("unexpected {l}"),
            }
        }
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "in order, exactly once");
    }
}

/// A burst of pipelined lines is answered together (corked writes): every reply and
/// delivery still arrives, in order, `history` in the same burst already sees the burst's
/// messages, and a `logout` at its end comes after everything else.
#[test]
fn a_pipelined_burst_is_answered_in_order_and_logged_before_it_is_read() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob", |l| l.kind == Kind::Presence);
    const N: usize = 80;
    let mut burst: String = (0..N).map(|i| format!("message bob n{i}\n")).collect();
    burst.push_str("history bob 100\nwhoelse\nlogout\n");
    a.send_raw(burst.as_bytes());
    for _ in 0..N {
        a.expect_ok("sent");
    }
    let (_, h) = a.expect_list("history");
    let logged: Vec<&str> = h.iter().map(|l| l.text.as_str()).collect();
    let said: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    assert_eq!(logged, said, "history read inside the burst has all of it");
    let (_, users) = a.expect_list("whoelse");
    assert_eq!(users.len(), 1);
    a.expect_code(Kind::Bye, "logout");
    a.expect_closed();
    let got: Vec<String> = (0..N).map(|_| b.expect(Kind::Msg).text).collect();
    assert_eq!(got, said, "in order, exactly once");
    b.wait_for("alice's logout", |l| {
        l.kind == Kind::Presence && l.arg(0) == "alice"
    });
}

/// History is written by its own thread a moment after delivery: a reply is still logged
/// after the message it answers, and a `history` read right after a line arrived has it.
#[test]
fn history_keeps_question_before_answer_and_shows_what_just_arrived() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob", |l| l.kind == Kind::Presence);
    const ROUNDS: usize = 40;
    let mut said = Vec::new();
    for i in 0..ROUNDS {
        a.send(&format!("message bob q{i}"));
        a.expect_ok("sent");
        assert_eq!(b.expect(Kind::Msg).text, format!("q{i}"));
        b.send(&format!("message alice a{i}"));
        b.expect_ok("sent");
        assert_eq!(a.expect(Kind::Msg).text, format!("a{i}"));
        said.push(format!("q{i}"));
        said.push(format!("a{i}"));
        if i % 10 == 9 {
            // At once, while the writer may still hold the answer just read.
            a.send("history bob 100");
            let (_, h) = a.expect_list("history");
            let logged: Vec<&str> = h.iter().map(|l| l.text.as_str()).collect();
            assert_eq!(
                logged, said,
                "every line seen so far, questions before answers"
            );
        }
    }
}

#[test]
fn broadcasts_in_all_three_shapes() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let c = s.login("carol");
    a.wait_for("carol", |l| l.kind == Kind::Presence && l.arg(0) == "carol");
    b.wait_for("carol", |l| l.kind == Kind::Presence && l.arg(0) == "carol");

    a.send("broadcast hello online people");
    let ack = a.expect_ok("broadcast");
    assert!(ack.text.contains("2 online users"), "{ack}");
    for x in [&b, &c] {
        let m = x.expect(Kind::Bcast);
        assert_eq!(
            (m.arg(0), m.text.as_str()),
            ("alice", "hello online people")
        );
    }

    a.send("broadcast user bob dave zed message just you two");
    let l1 = a.next();
    let l2 = a.next();
    let l3 = a.next();
    assert_eq!((l1.kind, l1.arg(0)), (Kind::Ok, "sent"));
    assert_eq!((l2.kind, l2.arg(0)), (Kind::Ok, "queued"));
    assert_eq!((l3.kind, l3.arg(0)), (Kind::Err, "unknown-user"));
    assert_eq!(b.expect(Kind::Bcast).text, "just you two");
    c.expect_silence(Duration::from_millis(200));

    a.send("broadcast message to everyone");
    a.expect_ok("broadcast");
    assert_eq!(b.expect(Kind::Bcast).text, "to everyone");
    assert_eq!(c.expect(Kind::Bcast).text, "to everyone");
    a.expect_silence(Duration::from_millis(100));
}

#[test]
fn presence_notices_on_login_and_logout() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "login"));
    drop(b); // EOF is a logout, cleaned up at once
    let p = a.expect(Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "dropped"));
    for cmd in ["log out", "exit", "quit", "logout", "/LOGOUT"] {
        // bob can log in again straight away after each kind of leaving
        let b = s.login("bob");
        assert_eq!(a.expect(Kind::Presence).arg(1), "login");
        b.send(cmd);
        b.expect_code(Kind::Bye, "logout");
        b.expect_closed();
        let p = a.expect(Kind::Presence);
        assert_eq!((p.arg(0), p.arg(1)), ("bob", "logout"), "{cmd}");
    }
}

#[test]
fn help_lists_every_command() {
    let s = TestServer::start();
    let a = s.login("alice");
    for cmd in ["help", "HELP", "/help"] {
        a.send(cmd);
        let (_, items) = a.expect_list("help");
        let all: String = items.iter().map(|l| l.text.clone() + "\n").collect();
        for word in [
            "whoelse",
            "wholast",
            "broadcast",
            "message",
            "personalintro",
            "logout",
        ] {
            assert!(all.contains(word), "{word} missing from help");
        }
    }
}

#[test]
fn bad_input_gets_precise_errors_and_the_connection_survives() {
    let s = TestServer::start_with(|c| c.max_line_bytes = 100);
    let a = s.login("alice");
    let b = s.login("bob");
    a.wait_for("bob", |l| l.kind == Kind::Presence);
    a.send("frobnicate now");
    a.expect_err("unknown-command");
    a.send("");
    a.send("   ");
    a.send(&format!("message bob {}", "x".repeat(5000)));
    a.expect_err("line-too-long");
    a.send_raw(b"message bob \xff\xfe bad\n");
    a.expect_err("bad-utf8");
    a.send_raw(b"message bob crlf works\r\n");
    a.expect_ok("sent");
    assert_eq!(b.expect(Kind::Msg).text, "crlf works");
    a.send("message bob \u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}clear");
    a.expect_ok("sent");
    let m = b.expect(Kind::Msg);
    assert!(!m.text.chars().any(|c| c.is_control()), "{:?}", m.text);
    assert_eq!(m.text, "\\x1b]0;pwned\\x07\\x1b[2J\\u{9b}clear");
    a.send("wholast abc");
    a.expect_err("bad-number");
    a.send("broadcast");
    a.expect_err("empty-message");
    a.send("whoelse");
    a.expect_list("whoelse");
}

#[test]
fn a_client_vanishing_mid_line_is_cleaned_up() {
    let s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    a.expect(Kind::Presence);
    b.send_raw(b"message alice half a li");
    drop(b);
    let p = a.expect(Kind::Presence);
    assert_eq!(p.arg(1), "dropped");
    a.expect_silence(Duration::from_millis(100));
    // A half-finished login vanishing leaves nothing behind either.
    let c = s.connect();
    c.send("carol");
    c.expect_ask("password");
    drop(c);
    let deadline = Instant::now() + TIMEOUT;
    while s.handle.connections() > 1 {
        assert!(Instant::now() < deadline, "connections not cleaned up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn idle_users_are_timed_out_and_others_told() {
    let ticks = lanchat::clock::ManualTicks::new();
    let s = TestServer::start_with_ticks(&ticks, |c| c.idle_timeout_secs = 60);
    let a = s.login("alice");
    let b = s.login("bob");
    a.expect(Kind::Presence);
    // alice types a command half way, bob stays silent.
    ticks.advance(Duration::from_secs(30));
    a.send("whoelse");
    a.expect_list("whoelse");
    ticks.advance(Duration::from_secs(29));
    b.expect_silence(Duration::from_millis(150));
    ticks.advance(Duration::from_secs(2));
    let bye = b.next();
    assert_eq!((bye.kind, bye.arg(0)), (Kind::Bye, "timeout"));
    b.expect_closed();
    let p = a.wait_for("timeout notice", |l| l.kind == Kind::Presence);
    assert_eq!((p.arg(0), p.arg(1)), ("bob", "timeout"));
}

#[test]
fn shutdown_tells_every_client_and_returns_quickly() {
    let mut s = TestServer::start();
    let a = s.login("alice");
    let b = s.login("bob");
    let half = s.connect();
    half.send("carol");
    half.expect_ask("password");
    let took = s.stop();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for c in [&a, &b, &half] {
        let bye = c.wait_for("BYE", |l| l.kind == Kind::Bye);
        assert_eq!(bye.arg(0), "shutdown");
        c.expect_closed();
    }
    assert!(TcpStream::connect(s.addr).is_err(), "listener still open");
}

#[test]
fn connections_past_max_clients_are_refused_with_a_line() {
    let s = TestServer::start_with(|c| c.max_clients = 3);
    let a = s.login("alice");
    let _b = s.login("bob");
    let _c = s.connect();
    // Refused before it could ask for anything: the prose of BYE full, then the close.
    let mut d = TestClient::connect_prose(s.addr);
    assert_eq!(d.rest(), "The server is full; please try again later.\n");
    // Nothing else was disturbed.
    a.send("whoelse");
    a.expect_list("whoelse");
}

#[test]
fn fifty_clients_log_in_and_broadcast_concurrently_exactly_once() {
    const N: usize = 50;
    let s = TestServer::start();
    let clients: Vec<TestClient> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let s = &s;
                scope.spawn(move || s.login(&format!("user{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    std::thread::scope(|scope| {
        for c in &clients {
            scope.spawn(move || {
                // Wait until the server reports N-1 others online, so no broadcast is missed.
                loop {
                    c.send("whoelse");
                    let (_, users) = loop {
                        let l = c.next();
                        if l.kind == Kind::List {
                            let n: usize = l.arg(1).parse().unwrap();
                            break (l, (0..n).map(|_| c.next()).collect::<Vec<_>>());
                        }
                    };
                    if users.len() == N - 1 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    std::thread::scope(|scope| {
        for (i, c) in clients.iter().enumerate() {
            scope.spawn(move || {
                c.send(&format!("broadcast hello from {i}"));
                let mut seen = [0u32; N];
                let mut acked = false;
                let mut got = 0;
                while got < N - 1 || !acked {
                    let l = c.next();
                    match l.kind {
                        Kind::Bcast => {
                            let from: usize = l.text.rsplit(' ').next().unwrap().parse().unwrap();
                            seen[from] += 1;
                            got += 1;
                        }
                        Kind::Ok if l.arg(0) == "broadcast" => acked = true,
                        _ => {}
                    }
                }
                for (from, n) in seen.iter().enumerate() {
                    let expected = u32::from(from != i);
                    assert_eq!(*n, expected, "client {i} got {n} copies from {from}");
                }
                c.expect_silence(Duration::from_millis(50));
            });
        }
    });
}
