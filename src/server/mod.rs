//! The server: a listener thread per door (see [`Door`]) that accepts connections and
//! spawns one OS thread per connection (small explicit stack and no std signal stack: see
//! [`thread`]; TCP_NODELAY, keepalive), plus
//! one shared flusher thread for outboxes that could not be written at once (and, on a
//! saturated server, for the lines a burst produced for others) and the hub's history
//! writer thread.
//!
//! [`Server::bind`] opens the store and the sockets; [`Server::run`] accepts until
//! [`ShutdownHandle::shutdown`] is called, then tells every client the server is going
//! down, closes their sockets, waits for their threads and returns.
//! The accepting itself (the loop per door, refusals, socket options, the connection thread,
//! the goodbye at shutdown) is in `accept.rs`.

mod accept;
pub mod capacity;
mod door;
mod encoder;
pub mod hub;
mod irc;
pub mod lockout;
mod native;
mod outbox;
mod panics;
mod policy;
pub mod ports;
mod prose;
pub mod ratelimit;
mod reader;
mod receipts;
mod render;
mod room;
mod rules;
mod session;
mod telnet;
mod tls_session;
mod verifier;
mod web;

pub use capacity::gauge::StackGauge;
pub use door::Door;
pub use panics::PanicCount;
pub use ports::ListenFailure;
pub use session::HELP;
pub use verifier::CheckCount;

use crate::clock::{Clock, SystemClock, SystemTicks, Ticks};
use crate::config::Config;
use crate::credentials::Credentials;
use crate::store::{Store, StoreError};
use crate::tls::{Fingerprint, Identity, IdentityError};
use hub::Hub;
use outbox::{Conn, Flusher};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protocol version announced in HELLO.
pub const PROTOCOL_VERSION: &str = "lanchat/1";

/// Why the server could not start or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The credentials file could not be read or parsed.
    Credentials(String),
    /// The data directory is unusable.
    Store(StoreError),
    /// The listening socket could not be opened.
    Bind(SocketAddr, io::Error),
    /// These doors could not listen (every one of them, with free ports to use instead).
    Listen(Vec<ListenFailure>),
    /// A thread could not be started.
    Spawn(io::Error),
    /// The TLS key or certificate could not be made or read.
    Identity(IdentityError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Credentials(e) => write!(f, "credentials: {e}"),
            ServerError::Store(e) => write!(f, "data directory: {e}"),
            ServerError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServerError::Listen(failures) => {
                let all: Vec<String> = failures.iter().map(ToString::to_string).collect();
                write!(f, "cannot listen: {}", all.join("; "))
            }
            ServerError::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            ServerError::Identity(e) => write!(f, "TLS identity: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// State shared by the listener, the connection threads and shutdown handles.
struct ServerShared {
    /// Set once shutdown begins.
    shutting_down: AtomicBool,
    /// Every open connection (logged in or not), for the shutdown notice and `max_clients`.
    conns: Mutex<Connections>,
    /// Signalled when a connection thread ends (shutdown waits on it).
    conn_ended: Condvar,
    /// Where each door listens, so shutdown can wake every blocked `accept`.
    doors: Vec<(Door, SocketAddr)>,
    /// Tells the flusher thread to stop.
    flusher_stop: Arc<AtomicBool>,
    /// Panics caught on this server's threads.
    panics: PanicCount,
    /// Whether connection threads measure their stack use, and the deepest.
    stack_gauge: StackGauge,
    /// The monotonic clock every session deadline is read on (login, idle, heartbeat,
    /// pace): the real one, or one a test moves.
    ticks: Arc<dyn Ticks>,
}

/// The open connections, counted per IP for `max_clients_per_ip`.
#[derive(Default)]
struct Connections {
    /// By connection id.
    by_id: HashMap<u64, Arc<Conn>>,
    /// Open connections per client IP.
    per_ip: HashMap<IpAddr, usize>,
}

impl Connections {
    fn insert(&mut self, conn: Arc<Conn>) {
        *self.per_ip.entry(conn.peer.ip()).or_default() += 1;
        self.by_id.insert(conn.id, conn);
    }

    fn remove(&mut self, id: u64) {
        if let Some(conn) = self.by_id.remove(&id) {
            let ip = conn.peer.ip();
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    /// One listening socket per door; the native door first.
    listeners: Vec<(Door, TcpListener)>,
    /// What every listener thread shares.
    core: Arc<Core>,
}

/// What the listener threads share.
struct Core {
    /// Shared chat state.
    hub: Hub,
    /// Finishes writes that did not fit.
    flusher: Flusher,
    /// Shared with connection threads and handles.
    shared: Arc<ServerShared>,
    /// Source of connection ids.
    next_id: AtomicU64,
    /// The IRC door's shared state.
    irc: Arc<irc::World>,
    /// The server's TLS identity, when a TLS door is open.
    identity: Option<Identity>,
}

/// Stops a running server from another thread (or a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle {
    /// The server's shared state.
    shared: Arc<ServerShared>,
}

impl ShutdownHandle {
    /// Begins shutdown: `run` stops accepting, tells every client and returns.
    pub fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake each blocked accept() by connecting to ourselves.
        for (_, addr) in &self.shared.doors {
            let _ = TcpStream::connect_timeout(&wake_addr(*addr), Duration::from_secs(1));
        }
    }

    /// Open connections right now (logged in or not).
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().by_id.len()
    }
}

/// The startup warning for a credentials file with plaintext passwords: what it risks and
/// how to hash them. `None` when every password is hashed.
fn plaintext_warning(path: &std::path::Path, credentials: &Credentials) -> Option<String> {
    let plain = credentials.plaintext_count();
    (plain > 0).then(|| {
        format!(
            "{}: {plain} of {} users have a plaintext password: anyone who can read the file \
             can log in as them. Hash each one: replace the password with the output of \
             `lanchat-server hash-password`, or remove the line and run `lanchat-server \
             add-user NAME`.",
            path.display(),
            credentials.len()
        )
    })
}

/// The address to connect to in order to reach a listener bound to `addr`.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

impl Server {
    /// Loads the credentials named in `config`, opens the store and binds.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let credentials =
            Credentials::load(&config.credentials).map_err(ServerError::Credentials)?;
        if let Some(warning) = plaintext_warning(&config.credentials, &credentials) {
            log::warn!("{warning}");
        }
        Server::bind_with(config, credentials, Arc::new(SystemClock))
    }

    /// Binds with explicit credentials and wall clock (tests, embedding).
    pub fn bind_with(
        config: Config,
        credentials: Credentials,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        Server::bind_with_clocks(config, credentials, clock, Arc::new(SystemTicks))
    }

    /// Binds with explicit credentials and both clocks (tests): `clock` is the wall clock of
    /// the rules (lockouts, last seen), `ticks` the monotonic one of the session deadlines
    /// and the rate limit.
    pub fn bind_with_clocks(
        config: Config,
        credentials: Credentials,
        clock: Arc<dyn Clock>,
        ticks: Arc<dyn Ticks>,
    ) -> Result<Server, ServerError> {
        let mut listeners = Vec::new();
        let mut doors = Vec::new();
        let mut failures = Vec::new();
        let configured = Door::configured(&config);
        for &(door, port) in &configured {
            let addr = SocketAddr::new(config.bind, port);
            // Every door is tried, so that one error names every port that needs changing.
            let listener = match crate::net::tcp_listener(addr) {
                Ok(listener) => listener,
                Err(error) => {
                    failures.push(ListenFailure {
                        door,
                        addr,
                        error,
                        free_instead: None,
                    });
                    continue;
                }
            };
            // Linux gives every accepted socket the listener's options: set once here,
            // they cost no syscalls per connection.
            #[cfg(target_os = "linux")]
            accept::set_connection_options(&socket2::SockRef::from(&listener));
            let local = listener
                .local_addr()
                .map_err(|e| ServerError::Bind(addr, e))?;
            listeners.push((door, listener));
            doors.push((door, local));
        }
        if !failures.is_empty() {
            let taken: Vec<u16> = configured.iter().map(|&(_, port)| port).collect();
            ports::suggest_free_ports(&mut failures, &taken);
            return Err(ServerError::Listen(failures));
        }
        // Only now, with every port ours: a second server started by mistake (a clash) must
        // not open, let alone repair or compact, the first one's data directory.
        let (store, directory) = Store::open(&config.data_dir, config.max_offline_messages)
            .map_err(ServerError::Store)?;
        // "Any free port" is now a port: the hub names it to clients refused on plain doors.
        let mut config = config;
        if let Some((_, tls)) = doors.iter().find(|(door, _)| *door == Door::NativeTls) {
            config.tls_port = crate::config::OptionalPort::Port(tls.port());
        }
        if let Some((_, ircs)) = doors.iter().find(|(door, _)| *door == Door::IrcTls) {
            config.irc_tls_port = crate::config::OptionalPort::Port(ircs.port());
        }
        let identity = if doors.iter().any(|(door, _)| door.is_tls()) {
            let configured = config.tls_cert.as_deref().zip(config.tls_key.as_deref());
            let identity = Identity::load_or_create(&config.data_dir, configured)
                .map_err(ServerError::Identity)?;
            log::info!(
                "TLS identity {} ({})",
                identity.fingerprint.full(),
                identity.cert_path.display()
            );
            Some(identity)
        } else {
            None
        };
        // Logged here, not when the accept loops start, so that it comes before the banner
        // a binary prints between `bind` and `run`.
        for (door, local) in &doors {
            log::info!("listening on {local} ({})", door.name());
        }
        let irc = Arc::new(irc::World::new(
            &config.server_name,
            &config.irc_lobby,
            &config.irc_motd,
        ));
        Ok(Server {
            listeners,
            core: Arc::new(Core {
                irc,
                hub: Hub::new(config, credentials, clock, store, directory),
                flusher: Flusher::new(),
                shared: Arc::new(ServerShared {
                    shutting_down: AtomicBool::new(false),
                    conns: Mutex::new(Connections::default()),
                    conn_ended: Condvar::new(),
                    doors,
                    flusher_stop: Arc::new(AtomicBool::new(false)),
                    panics: PanicCount::default(),
                    stack_gauge: StackGauge::default(),
                    ticks,
                }),
                next_id: AtomicU64::new(1),
                identity,
            }),
        })
    }

    /// The address of the native door (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.door_addr(Door::Native)
            .expect("the native door is always open")
    }

    /// Where `door` listens, if it is open.
    pub fn door_addr(&self, door: Door) -> Option<SocketAddr> {
        self.doors()
            .into_iter()
            .find_map(|(d, a)| (d == door).then_some(a))
    }

    /// Every open door and where it listens, the native door first.
    pub fn doors(&self) -> Vec<(Door, SocketAddr)> {
        self.core.shared.doors.clone()
    }

    /// The fingerprint clients pin, when a TLS door is open.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.core.identity.as_ref().map(|i| i.fingerprint)
    }

    /// A live count of the passwords checked so far (for tests and statistics).
    pub fn password_checks(&self) -> CheckCount {
        self.core.hub.password_checks()
    }

    /// A live count of the panics caught on this server's threads (for tests).
    pub fn panics(&self) -> PanicCount {
        self.core.shared.panics.clone()
    }

    /// This server's stack gauge: enable it before clients connect to measure how deep
    /// their connection threads go (tests and diagnostics).
    pub fn stack_gauge(&self) -> StackGauge {
        self.core.shared.stack_gauge.clone()
    }

    /// A handle that stops `run`.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.core.shared),
        }
    }

    /// Accepts connections on every door until shutdown, then closes them all and returns.
    pub fn run(self) -> Result<(), ServerError> {
        let core = self.core;
        let flusher = core
            .flusher
            .spawn(Arc::clone(&core.shared.flusher_stop))
            .map_err(ServerError::Spawn)?;
        let janitor = {
            let (hub, shared) = (core.hub.clone(), Arc::clone(&core.shared));
            std::thread::Builder::new()
                .name("lanchat-janitor".into())
                .spawn(move || {
                    let _watch = shared.panics.watch();
                    janitor(&hub, &shared)
                })
                .map_err(ServerError::Spawn)?
        };
        let mut listeners = self.listeners.into_iter();
        let (main_door, main_listener) = listeners.next().expect("the native door");
        let mut other_doors = Vec::new();
        for (door, listener) in listeners {
            let door_core = Arc::clone(&core);
            let spawned = std::thread::Builder::new()
                .name(format!("lanchat-listen-{}", door.name()))
                .spawn(move || {
                    let _watch = door_core.shared.panics.watch();
                    door_core.accept_loop(door, &listener)
                });
            match spawned {
                Ok(handle) => other_doors.push(handle),
                Err(e) => {
                    let handle = ShutdownHandle {
                        shared: Arc::clone(&core.shared),
                    };
                    handle.shutdown();
                    for started in other_doors {
                        let _ = started.join();
                    }
                    core.shared.flusher_stop.store(true, Ordering::Release);
                    return Err(ServerError::Spawn(e));
                }
            }
        }
        core.accept_loop(main_door, &main_listener);
        for handle in other_doors {
            let _ = handle.join();
        }
        core.stop_all();
        core.hub.flush_history();
        core.shared.flusher_stop.store(true, Ordering::Release);
        let _ = flusher.join();
        let _ = janitor.join();
        log::info!("server stopped");
        Ok(())
    }
}

/// How long an address-exchange request waits for an answer (seed 002 asked at a prompt).
const ADDRESS_REQUEST_SECS: u64 = 60;

/// Until shutdown: every tenth of a second, settles the offline mail clients acknowledged
/// (`Hub::settle_mail`); once a second, declines address requests nobody answered.
fn janitor(hub: &Hub, shared: &ServerShared) {
    let mut last = Instant::now();
    while !shared.shutting_down.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        hub.settle_mail();
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            hub.expire_requests(ADDRESS_REQUEST_SECS);
            capacity::memory::release_free_memory();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_credentials_file_gets_a_warning_that_says_how_to_hash_it() {
        let path = std::path::Path::new("/etc/lanchat/credentials.txt");
        let phc = crate::credentials::hash_password_with(
            "pw",
            crate::credentials::HashParams::CHEAP_FOR_TESTS,
        )
        .unwrap();
        let mixed = Credentials::from_pairs([("alice", phc.as_str()), ("bob", "bobpw")]);
        let warning = plaintext_warning(path, &mixed).unwrap();
        assert!(
            warning.starts_with("/etc/lanchat/credentials.txt: 1 of 2 users"),
            "{warning}"
        );
        assert!(warning.contains("hash-password") && warning.contains("add-user"));
        assert!(!warning.contains("bobpw"), "{warning}");
        let hashed = Credentials::from_pairs([("alice", phc.as_str())]);
        assert_eq!(plaintext_warning(path, &hashed), None);
    }
}
