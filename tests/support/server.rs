//! The server in the test's own process: on 127.0.0.1, every door on port 0, in a temp dir,
//! stopped on drop.

use super::client::TestClient;
use lanchat::clock::{Clock, ManualClock, ManualTicks, SystemClock, SystemTicks, Ticks};
use lanchat::config::{Config, OptionalPort};
use lanchat::credentials::Credentials;
use lanchat::protocol::Kind;
use lanchat::server::{CheckCount, Door, PanicCount, Server, ShutdownHandle, StackGauge};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The users every test server knows.
pub const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("bob", "pw-bob"),
    ("carol", "pw-carol"),
    ("dave", "pw-dave"),
    ("columbia", "116bway"),
    ("seas", "summerisover"),
];

/// A running server; stops (and is joined) on drop.
pub struct TestServer {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Where the web door listens, if it is open.
    pub web: Option<SocketAddr>,
    /// Where the TLS door listens, if it is open (`tls_port`).
    pub tls: Option<SocketAddr>,
    /// Where the IRC door listens, if it is open (`irc_port`).
    pub irc: Option<SocketAddr>,
    /// Where IRC over TLS listens, if it is open (`irc_tls_port`, with `irc_port`).
    pub irc_tls: Option<SocketAddr>,
    /// The server's TLS fingerprint, if a TLS door is open.
    pub fingerprint: Option<lanchat::tls::Fingerprint>,
    /// Stops it.
    pub handle: ShutdownHandle,
    /// How many passwords it has checked so far.
    pub password_checks: CheckCount,
    /// How many of its threads panicked so far.
    pub panics: PanicCount,
    /// Its connection threads' stack use, once enabled.
    pub stack_gauge: StackGauge,
    /// The server thread.
    thread: Option<JoinHandle<()>>,
    /// The data directory (kept for restarts).
    pub data_dir: PathBuf,
    /// Keeps the temp dir alive for the server's lifetime (when the server owns it).
    _tmp: Option<tempfile::TempDir>,
}

/// A config for tests: loopback, port 0, no web door (tests that want it ask for any free
/// port), no rate limit (tests pipeline hundreds of lines).
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        port: 0,
        web_port: OptionalPort::Off,
        bind: "127.0.0.1".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        max_messages_per_sec: 0,
        irc_port: OptionalPort::Off,
        tls_port: OptionalPort::Off,
        irc_tls_port: OptionalPort::Off,
        ..Config::default()
    }
}

/// The default test credentials plus `extra` users named user0..userN.
pub fn credentials(extra: usize) -> Credentials {
    let mut pairs: Vec<(String, String)> = USERS
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect();
    for i in 0..extra {
        pairs.push((format!("user{i}"), format!("pw{i}")));
    }
    Credentials::from_pairs(pairs.iter().map(|(u, p)| (u.as_str(), p.as_str())))
}

impl TestServer {
    /// A server with default test settings.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// A server whose config is adjusted by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_full(tweak, credentials(60), Arc::new(SystemClock), None)
    }

    /// A server with a manual wall clock (lockouts, last seen, address expiry).
    pub fn start_with_clock(clock: &ManualClock, tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_full(tweak, credentials(60), Arc::new(clock.clone()), None)
    }

    /// A server whose session deadlines (login, idle, heartbeat) and rate limit run on
    /// `ticks`, which the test moves: a deadline test advances it past the deadline instead
    /// of sleeping (docs/testing.md).
    pub fn start_with_ticks(ticks: &ManualTicks, tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_clocked(
            tweak,
            credentials(60),
            Arc::new(SystemClock),
            Arc::new(ticks.clone()),
            None,
        )
    }

    /// A server that knows only `users` (name, password), adjusted by `tweak`.
    pub fn start_with_users(users: &[(&str, &str)], tweak: impl FnOnce(&mut Config)) -> TestServer {
        let credentials = Credentials::from_pairs(users.iter().copied());
        TestServer::start_full(tweak, credentials, Arc::new(SystemClock), None)
    }

    /// A server on an existing data directory (a "restart").
    pub fn start_on(data_dir: &Path) -> TestServer {
        TestServer::start_full(
            |_| {},
            credentials(60),
            Arc::new(SystemClock),
            Some(data_dir.to_path_buf()),
        )
    }

    /// Everything explicit but the monotonic clock (the real one).
    pub fn start_full(
        tweak: impl FnOnce(&mut Config),
        credentials: Credentials,
        clock: Arc<dyn Clock>,
        data_dir: Option<PathBuf>,
    ) -> TestServer {
        TestServer::start_clocked(tweak, credentials, clock, Arc::new(SystemTicks), data_dir)
    }

    /// Everything explicit.
    pub fn start_clocked(
        tweak: impl FnOnce(&mut Config),
        credentials: Credentials,
        clock: Arc<dyn Clock>,
        ticks: Arc<dyn Ticks>,
        data_dir: Option<PathBuf>,
    ) -> TestServer {
        let (tmp, data_dir) = match data_dir {
            Some(d) => (None, d),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let d = tmp.path().join("data");
                (Some(tmp), d)
            }
        };
        let mut config = test_config(&data_dir);
        tweak(&mut config);
        let server = Server::bind_with_clocks(config, credentials, clock, ticks).unwrap();
        let addr = server.local_addr();
        let web = server
            .door_addr(Door::Web)
            .or(server.door_addr(Door::WebTls));
        let tls = server.door_addr(Door::NativeTls);
        let irc = server.door_addr(Door::Irc);
        let irc_tls = server.door_addr(Door::IrcTls);
        let fingerprint = server.fingerprint();
        let handle = server.shutdown_handle();
        let password_checks = server.password_checks();
        let panics = server.panics();
        let stack_gauge = server.stack_gauge();
        let thread = std::thread::spawn(move || server.run().unwrap());
        TestServer {
            addr,
            web,
            tls,
            irc,
            irc_tls,
            fingerprint,
            handle,
            password_checks,
            panics,
            stack_gauge,
            thread: Some(thread),
            data_dir,
            _tmp: tmp,
        }
    }

    /// A raw connection (not logged in); HELLO and the username prompt are consumed.
    pub fn connect(&self) -> TestClient {
        let c = TestClient::connect(self.addr);
        c.expect(Kind::Hello);
        c.expect_ask("username");
        c
    }

    /// A logged-in client; the welcome and mail lines are consumed.
    pub fn login(&self, name: &str) -> TestClient {
        let password = USERS
            .iter()
            .find(|(u, _)| *u == name)
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| format!("pw{}", name.trim_start_matches("user")));
        let c = self.connect();
        c.send(name);
        c.expect_ask("password");
        c.send(&password);
        c.expect(Kind::Welcome);
        let mail = c.next();
        assert!(
            mail.kind == Kind::Info && matches!(mail.arg(0), "no-mail" | "mail"),
            "{mail}"
        );
        c
    }

    /// Stops the server and waits for it (bounded).
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}
