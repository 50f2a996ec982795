//! A small run of the load generator (`lanchat-bench`'s library) against lanchat (its native
//! door, plain and TLS, and its IRC door) and the bare relays (one thread, and a thread per client), each in this process:
//! every message must arrive exactly once, in order. Not a timed test: the numbers are not checked,
//! only the deliveries.

use lanchat::clock::SystemClock;
use lanchat::config::Config;
use lanchat::credentials::Credentials;
use lanchat::server::{Door, Server};
use lanchat_bench::baseline::{self, Baseline};
use lanchat_bench::scenario::{self, Measured};
use lanchat_bench::target::{
    credentials_text, lanchat_config, lanchat_irc_config, lanchat_tls_config, tls_client, Running,
    ServerKind,
};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A lanchat server in this process with `users` benchmark users; stopped when dropped.
fn lanchat(dir: &tempfile::TempDir, users: usize) -> Running {
    let mut config = Config::parse(&lanchat_config(2000)).unwrap();
    config.data_dir = dir.path().join("data");
    let credentials = Credentials::parse(&credentials_text(users, None)).unwrap();
    let server = Server::bind_with(config, credentials, Arc::new(SystemClock)).unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    Running::in_process(addr, Box::new(move || handle.shutdown()), thread)
}

/// A lanchat server in this process with its IRC door open (`auth = "open"`); the returned
/// address is the IRC door's. Stopped when dropped.
fn lanchat_irc(dir: &tempfile::TempDir) -> Running {
    let mut config = Config::parse(&lanchat_irc_config(2000)).unwrap();
    config.data_dir = dir.path().join("data");
    let credentials = Credentials::parse(&credentials_text(1, None)).unwrap();
    let server = Server::bind_with(config, credentials, Arc::new(SystemClock)).unwrap();
    let addr = server.door_addr(Door::Irc).expect("the IRC door is open");
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    Running::in_process(addr, Box::new(move || handle.shutdown()), thread)
}

/// A lanchat server in this process with `users` benchmark users and its native TLS door
/// open; the returned server is reached through that door, trusting its key alone.
fn lanchat_tls(dir: &tempfile::TempDir, users: usize) -> Running {
    let mut config = Config::parse(&lanchat_tls_config(2000)).unwrap();
    config.data_dir = dir.path().join("data");
    let credentials = Credentials::parse(&credentials_text(users, None)).unwrap();
    let server = Server::bind_with(config, credentials, Arc::new(SystemClock)).unwrap();
    let addr = server
        .door_addr(Door::NativeTls)
        .expect("the TLS door is open");
    let fingerprint = server.fingerprint().expect("a TLS identity");
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    Running::in_process(addr, Box::new(move || handle.shutdown()), thread)
        .with_tls(tls_client(&fingerprint))
}

/// The bare relay in this process.
fn relay() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        baseline::serve(Baseline::Relay, listener, &flag).unwrap();
    });
    Running::in_process(
        addr,
        Box::new(move || stop.store(true, Ordering::Release)),
        thread,
    )
}

fn assert_exactly_once(what: &str, outcome: &Measured) {
    let d = outcome.delivery;
    assert!(d.expected > 0, "{what}: nothing was sent: {outcome:?}");
    assert!(d.exactly_once(), "{what}: {d:?} ({:?})", outcome.note);
}

#[test]
fn lanchat_pairs_fanout_and_latency_deliver_exactly_once() {
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat(&dir, 300);
        let out =
            scenario::pairs(&server, ServerKind::Lanchat, 100, 4, Duration::from_secs(1)).unwrap();
        assert_exactly_once("pairs", &out);
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat(&dir, 300);
        let out = scenario::fanout(
            &server,
            ServerKind::Lanchat,
            200,
            8,
            Duration::from_millis(700),
        )
        .unwrap();
        assert_exactly_once("fanout", &out);
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat(&dir, 300);
        let out = scenario::latency(&server, ServerKind::Lanchat, 60, 20.0, 200).unwrap();
        assert_exactly_once("latency", &out);
        assert!(out.note.is_none(), "{:?}", out.note);
    }
}

#[test]
fn lanchat_irc_door_pairs_fanout_and_latency_deliver_exactly_once() {
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat_irc(&dir);
        let out = scenario::pairs(
            &server,
            ServerKind::LanchatIrc,
            30,
            4,
            Duration::from_millis(700),
        )
        .unwrap();
        assert_exactly_once("irc pairs", &out);
    }
    {
        // The lobby (#lanchat) each user is joined to at registration must not be taken
        // for the benchmark channel: the fan-out goes to #bench, a lanchat group.
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat_irc(&dir);
        let out = scenario::fanout(
            &server,
            ServerKind::LanchatIrc,
            60,
            8,
            Duration::from_millis(700),
        )
        .unwrap();
        assert_exactly_once("irc fanout", &out);
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat_irc(&dir);
        let out = scenario::latency(&server, ServerKind::LanchatIrc, 20, 20.0, 100).unwrap();
        assert_exactly_once("irc latency", &out);
        assert!(out.note.is_none(), "{:?}", out.note);
    }
}

#[test]
fn lanchat_tls_door_logins_and_pairs_deliver_exactly_once() {
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat_tls(&dir, 200);
        let out = scenario::logins(&server, ServerKind::Lanchat, 200, None).unwrap();
        assert!(
            out.note.is_none(),
            "not every TLS login went through: {out:?}"
        );
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let server = lanchat_tls(&dir, 100);
        let out = scenario::pairs(
            &server,
            ServerKind::Lanchat,
            50,
            4,
            Duration::from_millis(700),
        )
        .unwrap();
        assert_exactly_once("tls pairs", &out);
    }
}

#[test]
fn lanchat_capacity_refuses_the_one_past_max_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(&lanchat_config(150)).unwrap();
    config.data_dir = dir.path().join("data");
    let credentials = Credentials::parse(&credentials_text(200, None)).unwrap();
    let server = Server::bind_with(config, credentials, Arc::new(SystemClock)).unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    let server = Running::in_process(addr, Box::new(move || handle.shutdown()), thread);
    let out = scenario::capacity(&server, ServerKind::Lanchat, 150, None).unwrap();
    let metric = |name: &str| out.metrics.iter().find(|(k, _)| *k == name).unwrap().1;
    assert_eq!(metric("users_held"), 150.0, "{out:?}");
    assert_eq!(metric("refused_past_max"), 1.0, "{out:?}");
}

/// The bare thread-per-client relay in this process; its client threads end with their
/// connections, its accept loop when stopped.
fn thread_relay() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        baseline::serve_threads(listener, &flag).unwrap();
    });
    let wake = move || {
        stop.store(true, Ordering::Release);
        // The accept loop checks the flag after each connection.
        let _ = std::net::TcpStream::connect(addr);
    };
    Running::in_process(addr, Box::new(wake), thread)
}

/// Pairs and a fan-out through a bare relay, each on a fresh server from `start`.
fn relay_pairs_and_fanout_deliver_exactly_once(start: fn() -> Running, kind: ServerKind) {
    let quick = Duration::from_millis(500);
    let out = scenario::pairs(&start(), kind, 50, 8, quick).unwrap();
    assert_exactly_once(&format!("{} pairs", kind.name()), &out);
    let out = scenario::fanout(&start(), kind, 100, 8, quick).unwrap();
    assert_exactly_once(&format!("{} fanout", kind.name()), &out);
}

#[test]
fn thread_relay_baseline_delivers_exactly_once() {
    relay_pairs_and_fanout_deliver_exactly_once(thread_relay, ServerKind::ThreadRelay);
}

#[test]
fn relay_baseline_delivers_exactly_once() {
    relay_pairs_and_fanout_deliver_exactly_once(relay, ServerKind::Relay);
}
