//! Issue 23, items 1 and 9: the lockout holds against guesses sent all at once, on every door
//! and with either kind of credentials; a wrong password costs the same whoever the name; one
//! address's flood of argon2 logins does not starve another address's login.

use crate::support::WsClient;
use crate::support::{credentials, TestClient, TestServer, TIMEOUT, USERS};
use lanchat::clock::SystemClock;
use lanchat::config::{Config, OptionalPort};
use lanchat::credentials::{hash_password_with, Credentials, HashParams};
use lanchat::protocol::Kind;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

/// argon2 dear enough that 40 checks cannot all finish before the test looks (a few ms each,
/// the hashing crates being optimised in test builds), cheap enough for a test.
const TEST_COST: HashParams = HashParams {
    memory_kib: 4096,
    iterations: 2,
    parallelism: 1,
};

/// The test users, with `hashed` given an argon2 hash of their password.
fn credentials_hashing(hashed: &[&str]) -> Credentials {
    let pairs: Vec<(String, String)> = USERS
        .iter()
        .map(|(u, p)| {
            let secret = if hashed.contains(u) {
                hash_password_with(p, TEST_COST).unwrap()
            } else {
                p.to_string()
            };
            (u.to_string(), secret)
        })
        .collect();
    Credentials::from_pairs(pairs.iter().map(|(u, p)| (u.as_str(), p.as_str())))
}

/// The door a login comes through.
#[derive(Clone, Copy, Debug)]
enum Door {
    Native,
    Web,
    /// IRC: the password travels as `PASS`, before `NICK` and `USER`.
    Irc,
}

/// How a login attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    LoggedIn,
    /// Refused; the line that said so.
    Refused(String),
}

/// A connection that has given its name (IRC: nothing yet) and is about to send a password.
enum Attempt {
    Native(TestClient),
    Web(Box<WsClient>),
    Irc(BufReader<TcpStream>, TcpStream),
}

impl Attempt {
    /// Connects through `door` and gives `name`, up to the password prompt.
    fn open(door: Door, server: &TestServer, irc_port: u16, name: &str) -> Attempt {
        match door {
            Door::Native => {
                let c = server.connect();
                c.send(name);
                c.expect_ask("password");
                Attempt::Native(c)
            }
            Door::Web => {
                let mut c = WsClient::connect(server.web.expect("the web door is open"));
                c.expect(Kind::Hello, "lanchat/1");
                c.expect(Kind::Ask, "username");
                c.send(name);
                c.expect(Kind::Ask, "password");
                Attempt::Web(Box::new(c))
            }
            Door::Irc => {
                let stream = TcpStream::connect(("127.0.0.1", irc_port)).unwrap();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let reader = BufReader::new(stream.try_clone().unwrap());
                Attempt::Irc(reader, stream)
            }
        }
    }

    /// Sends `password` for `name` and reads how it ended.
    fn try_password(&mut self, name: &str, password: &str) -> Outcome {
        match self {
            Attempt::Native(c) => {
                c.send(password);
                let l = c.next();
                match l.kind {
                    Kind::Welcome => Outcome::LoggedIn,
                    _ => Outcome::Refused(l.to_string()),
                }
            }
            Attempt::Web(c) => {
                c.send(password);
                let l = c.next();
                match l.kind {
                    Kind::Welcome => Outcome::LoggedIn,
                    _ => Outcome::Refused(l.to_string()),
                }
            }
            Attempt::Irc(reader, stream) => {
                write!(
                    stream,
                    "PASS {password}\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n"
                )
                .unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    assert!(reader.read_line(&mut line).unwrap() > 0, "closed silently");
                    if line.contains(" 001 ") {
                        return Outcome::LoggedIn;
                    }
                    if line.starts_with("ERROR") {
                        return Outcome::Refused(line.trim_end().to_string());
                    }
                }
            }
        }
    }
}

/// A server with the web and IRC doors open; returns it and its IRC port.
fn server_with(credentials: Credentials, tweak: impl FnOnce(&mut Config)) -> (TestServer, u16) {
    let server = TestServer::start_full(
        |c| {
            c.web_port = OptionalPort::Any;
            c.irc_port = OptionalPort::Any;
            tweak(c);
        },
        credentials,
        Arc::new(SystemClock),
        None,
    );
    let irc_port = server.irc.expect("the IRC door is open").port();
    (server, irc_port)
}

/// For every test user in turn: 40 wrong passwords from one address at the same instant,
/// then the right one while the first checks may still run. Exactly `max_login_attempts` (3)
/// are checked and the right one is refused. (A plaintext check is so quick that a guess
/// rarely slips in while another is checked: the plaintext runs go through 26 users, each
/// one more chance for it.)
fn forty_parallel_guesses_get_three_checks(door: Door, hashed: bool) {
    const EXTRA_PLAINTEXT_USERS: usize = 20;
    let (creds, extra) = if hashed {
        let names: Vec<&str> = USERS.iter().map(|(u, _)| *u).collect();
        (credentials_hashing(&names), 0)
    } else {
        (credentials(EXTRA_PLAINTEXT_USERS), EXTRA_PLAINTEXT_USERS)
    };
    let (server, irc_port) = server_with(creds, |_| {});
    let users = USERS
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .chain((0..extra).map(|i| (format!("user{i}"), format!("pw{i}"))));
    for (name, password) in users {
        forty_parallel_guesses_for(&server, irc_port, door, hashed, &name, &password);
    }
}

/// One user's round of [`forty_parallel_guesses_get_three_checks`].
fn forty_parallel_guesses_for(
    server: &TestServer,
    irc_port: u16,
    door: Door,
    hashed: bool,
    name: &str,
    password: &str,
) {
    const GUESSES: usize = 40;
    let mut guesses: Vec<Attempt> = (0..GUESSES)
        .map(|_| Attempt::open(door, server, irc_port, name))
        .collect();
    let mut right = Attempt::open(door, server, irc_port, name);
    let before = server.password_checks.get();
    let start = Barrier::new(GUESSES);
    let (outcomes, outcome) = mpsc::channel();
    std::thread::scope(|scope| {
        for (i, guess) in guesses.iter_mut().enumerate() {
            let (start, outcome) = (&start, outcomes.clone());
            scope.spawn(move || {
                start.wait();
                let _ = outcome.send(guess.try_password(name, &format!("guess{i}")));
            });
        }
        // The right password goes out once most guesses are answered: those answers come
        // before any check has ended when the tries in flight count, after it otherwise.
        let mut seen: Vec<Outcome> = (0..GUESSES - 3)
            .map(|_| outcome.recv_timeout(TIMEOUT).expect("an answer"))
            .collect();
        let late = right.try_password(name, password);
        seen.extend((0..3).map(|_| outcome.recv_timeout(TIMEOUT).expect("an answer")));
        let checked = server.password_checks.get() - before;
        eprintln!("{door:?} {name}, hashed {hashed}: {checked} checked; the right one: {late:?}");
        assert!(
            !seen.contains(&Outcome::LoggedIn),
            "a wrong password logged in"
        );
        assert_eq!(checked, 3, "passwords checked for {name} at once");
        assert_ne!(
            late,
            Outcome::LoggedIn,
            "the right password after the tries ran out"
        );
    });
    // Every try is spent: the key is blocked, the right password still does not help.
    match door {
        Door::Native => {
            let c = server.connect();
            c.send(name);
            c.expect_code(Kind::Bye, "blocked");
        }
        Door::Web => {
            let mut c = WsClient::connect(server.web.unwrap());
            c.expect(Kind::Hello, "lanchat/1");
            c.expect(Kind::Ask, "username");
            c.send(name);
            c.expect(Kind::Bye, "blocked");
        }
        Door::Irc => {
            let mut c = Attempt::open(door, server, irc_port, name);
            assert_ne!(c.try_password(name, password), Outcome::LoggedIn);
        }
    }
}

#[test]
fn forty_parallel_guesses_on_the_native_door_get_three_argon2_checks() {
    forty_parallel_guesses_get_three_checks(Door::Native, true);
}

#[test]
fn forty_parallel_guesses_on_the_native_door_get_three_plaintext_checks() {
    forty_parallel_guesses_get_three_checks(Door::Native, false);
}

#[test]
fn forty_parallel_guesses_on_the_web_door_get_three_argon2_checks() {
    forty_parallel_guesses_get_three_checks(Door::Web, true);
}

#[test]
fn forty_parallel_guesses_as_irc_pass_get_three_argon2_checks() {
    forty_parallel_guesses_get_three_checks(Door::Irc, true);
}

#[test]
fn forty_parallel_guesses_as_irc_pass_get_three_plaintext_checks() {
    forty_parallel_guesses_get_three_checks(Door::Irc, false);
}

/// The middle of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn a_wrong_password_takes_as_long_for_an_unknown_name_a_plaintext_user_and_a_hashed_user() {
    const ROUNDS: usize = 15;
    // What `add-user` leaves: old plaintext lines beside new hashed ones.
    let (server, _) = server_with(credentials_hashing(&["alice"]), |c| {
        c.max_login_attempts = 1000;
    });
    let names = ["alice", "bob", "nobody"];
    let clients: Vec<TestClient> = names.iter().map(|_| server.connect()).collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    // Alternating rounds, so a busy moment of the machine falls on every kind alike.
    for round in 0..ROUNDS {
        for (i, (name, c)) in names.iter().zip(&clients).enumerate() {
            c.send(name);
            c.expect_ask("password");
            let started = Instant::now();
            c.send(&format!("wrong{round}"));
            c.expect_err("bad-login");
            times[i].push(started.elapsed());
            c.expect_ask("username");
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    eprintln!(
        "median wrong-password reply: hashed alice {:?}, plaintext bob {:?}, unknown {:?}",
        medians[0], medians[1], medians[2]
    );
    let (fastest, slowest) = (medians.iter().min().unwrap(), medians.iter().max().unwrap());
    assert!(
        *slowest < *fastest * 3,
        "one try tells the names apart: {names:?} took {medians:?}"
    );
}

#[test]
fn a_flood_of_unknown_name_logins_from_one_address_does_not_starve_another_address() {
    // What the server allows at once (`max_concurrent_verifies`), to size the flood.
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
    let flooders = 12 * slots + 48;
    let (server, _) = server_with(credentials_hashing(&["columbia"]), |_| {});
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(flooders + 1);
    std::thread::scope(|scope| {
        for f in 0..flooders {
            let (server, stop, ready) = (&server, &stop, &ready);
            scope.spawn(move || {
                let c = TestClient::connect_from(server.addr, "127.0.0.2");
                c.expect(Kind::Hello);
                c.expect_ask("username");
                ready.wait();
                // A fresh unknown name each time: no lockout key ever fills up.
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    c.send(&format!("ghost{f}x{n}"));
                    c.expect_ask("password");
                    c.send("guess");
                    c.expect_err("bad-login");
                    c.expect_ask("username");
                }
            });
        }
        ready.wait();
        let real = TestClient::connect_from(server.addr, "127.0.0.3");
        real.expect(Kind::Hello);
        real.expect_ask("username");
        real.send("columbia");
        real.expect_ask("password");
        // Let the flood fill every slot and queue behind them.
        let warm = server.password_checks.get() + 2 * flooders as u64;
        let deadline = Instant::now() + TIMEOUT;
        while server.password_checks.get() < warm && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = server.password_checks.get();
        let started = Instant::now();
        real.send("116bway");
        real.expect(Kind::Welcome);
        let waited = started.elapsed();
        let checked_meanwhile = server.password_checks.get() - before;
        stop.store(true, Ordering::Relaxed);
        eprintln!(
            "{flooders} flooding connections, {slots} slots: the real login took {waited:?}, \
             {checked_meanwhile} checks started meanwhile"
        );
        assert!(
            checked_meanwhile < flooders as u64 / 3,
            "the real login waited behind the flood: {checked_meanwhile} checks of \
             {flooders} flooders ran first ({waited:?})"
        );
    });
}
