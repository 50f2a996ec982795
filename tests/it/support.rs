//! Shared test helpers: a server on 127.0.0.1:0 in a temp dir that shuts down on Drop, and a
//! line-protocol client whose every read has a timeout.

use lanchat::clock::{Clock, ManualClock, SystemClock};
use lanchat::config::{Config, OptionalPort};
use lanchat::credentials::Credentials;
use lanchat::protocol::{Kind, Line};
use lanchat::server::{CheckCount, Door, Server, ShutdownHandle};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single expected line may take to arrive.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The users every test server knows.
pub const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("bob", "pw-bob"),
    ("carol", "pw-carol"),
    ("dave", "pw-dave"),
    ("columbia", "116bway"),
    ("seas", "summerisover"),
];

/// A port that was free a moment ago, for doors that take no "any free port" setting
/// (`irc_tls_port`). Another process could take it first; none does on a test machine.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    /// The server's TLS fingerprint, if a TLS door is open.
    pub fingerprint: Option<lanchat::tls::Fingerprint>,
    /// Stops it.
    pub handle: ShutdownHandle,
    /// How many passwords it has checked so far.
    pub password_checks: CheckCount,
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
        irc_tls_port: 0,
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

    /// A server with a manual clock.
    pub fn start_with_clock(clock: &ManualClock, tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_full(tweak, credentials(60), Arc::new(clock.clone()), None)
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

    /// Everything explicit.
    pub fn start_full(
        tweak: impl FnOnce(&mut Config),
        credentials: Credentials,
        clock: Arc<dyn Clock>,
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
        let server = Server::bind_with(config, credentials, clock).unwrap();
        let addr = server.local_addr();
        let web = server
            .door_addr(Door::Web)
            .or(server.door_addr(Door::WebTls));
        let tls = server.door_addr(Door::NativeTls);
        let irc = server.door_addr(Door::Irc);
        let fingerprint = server.fingerprint();
        let handle = server.shutdown_handle();
        let password_checks = server.password_checks();
        let thread = std::thread::spawn(move || server.run().unwrap());
        TestServer {
            addr,
            web,
            tls,
            irc,
            fingerprint,
            handle,
            password_checks,
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

/// The line a program sends first on the native door to get tagged lines (PROTOCOL.md 1).
pub const ASK_TAGGED: &str = "protocol lanchat/1\n";

/// A protocol client with timeouts on every read.
pub struct TestClient {
    /// Reading half (a clone of the stream).
    reader: parking_lot::Mutex<BufReader<TcpStream>>,
    /// Writing half.
    writer: parking_lot::Mutex<TcpStream>,
    /// Whether the prose before the first `HELLO` is still to be skipped.
    before_hello: std::sync::atomic::AtomicBool,
}

impl TestClient {
    /// Connects as a program does: asks for tagged lines at once (and skips the prose
    /// greeting before `HELLO`), reading nothing yet.
    pub fn connect(addr: SocketAddr) -> TestClient {
        TestClient::tagged(TcpStream::connect(addr).unwrap())
    }

    /// Connects as `nc` does: the stream, in prose (see [`Prose`]).
    pub fn connect_prose(addr: SocketAddr) -> Prose {
        Prose::new(TcpStream::connect(addr).unwrap())
    }

    /// Connects from a chosen loopback address (127.0.0.2 etc. all reach 127.0.0.1 on
    /// Linux), to test rules keyed by the client's IP. Asks for tagged lines; reads nothing.
    pub fn connect_from(addr: SocketAddr, from: &str) -> TestClient {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
            .unwrap();
        socket.connect(&addr.into()).unwrap();
        TestClient::tagged(TcpStream::from(socket))
    }

    /// Wraps a new connection to the native door: sends `protocol lanchat/1` and skips what
    /// comes before `HELLO`.
    pub fn tagged(stream: TcpStream) -> TestClient {
        let c = TestClient::from_stream(stream);
        c.send_raw(ASK_TAGGED.as_bytes());
        c.before_hello
            .store(true, std::sync::atomic::Ordering::Relaxed);
        c
    }

    /// Reads `INFO no-mail`, or `INFO mail` and its `MAIL` lines (what follows WELCOME).
    pub fn read_mail(&self) -> Vec<Line> {
        let header = self.expect(Kind::Info);
        if header.arg(0) == "no-mail" {
            return Vec::new();
        }
        assert_eq!(header.arg(0), "mail", "{header}");
        let n: usize = header
            .text
            .rsplit('(')
            .next()
            .and_then(|t| t.trim_end_matches("):").parse().ok())
            .unwrap_or_else(|| panic!("no count in {header}"));
        (0..n).map(|_| self.expect(Kind::Mail)).collect()
    }

    /// Wraps an open stream.
    pub fn from_stream(stream: TcpStream) -> TestClient {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        TestClient {
            reader: parking_lot::Mutex::new(BufReader::new(stream.try_clone().unwrap())),
            writer: parking_lot::Mutex::new(stream),
            before_hello: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sends one line (LF added).
    pub fn send(&self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.try_send_raw(bytes).unwrap();
    }

    /// Sends bytes, reporting a failed write instead of panicking.
    pub fn try_send_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.lock().write_all(bytes)
    }

    /// The next line that is not a presence notice or summary (those arrive whenever
    /// others come and go), or a panic after the timeout.
    pub fn next(&self) -> Line {
        loop {
            let l = self.next_any();
            if !matches!(l.kind, Kind::Presence | Kind::Presences) {
                return l;
            }
        }
    }

    /// The next line of any kind, or a panic after the timeout.
    pub fn next_any(&self) -> Line {
        self.try_next(TIMEOUT)
            .unwrap_or_else(|| panic!("no line within {TIMEOUT:?}"))
    }

    /// The next line within `timeout`, or None (timeout or EOF).
    pub fn try_next(&self, timeout: Duration) -> Option<Line> {
        let mut reader = self.reader.lock();
        reader.get_ref().set_read_timeout(Some(timeout)).unwrap();
        let mut raw = String::new();
        if self.before_hello.load(std::sync::atomic::Ordering::Relaxed) {
            // The prose greeting, up to the tagged one (PROTOCOL.md 1).
            loop {
                raw.clear();
                match reader.read_line(&mut raw) {
                    Ok(n) if n > 0 && !raw.starts_with("HELLO ") => continue,
                    _ => break,
                }
            }
            if raw.starts_with("HELLO ") {
                self.before_hello
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                return Some(Line::parse(&raw).unwrap());
            }
            return None;
        }
        match reader.read_line(&mut raw) {
            Ok(0) => None,
            Ok(_) => Some(Line::parse(&raw).unwrap_or_else(|| panic!("unparseable line {raw:?}"))),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionReset
                ) =>
            {
                None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// The next line, which must be of `kind` (presence notices are skipped unless `kind`
    /// is `Presence`).
    pub fn expect(&self, kind: Kind) -> Line {
        let l = if matches!(kind, Kind::Presence | Kind::Presences) {
            self.next_any()
        } else {
            self.next()
        };
        assert_eq!(l.kind, kind, "expected {kind:?}, got: {l}");
        l
    }

    /// The next line, which must be `kind` with first argument `code`.
    pub fn expect_code(&self, kind: Kind, code: &str) -> Line {
        let l = if kind == Kind::Presence {
            self.next_any()
        } else {
            self.next()
        };
        assert!(
            l.kind == kind && l.arg(0) == code,
            "expected {} {code}, got: {l}",
            kind.as_str()
        );
        l
    }

    /// `ASK <field>`.
    pub fn expect_ask(&self, field: &str) -> Line {
        self.expect_code(Kind::Ask, field)
    }

    /// `ERR <code>`.
    pub fn expect_err(&self, code: &str) -> Line {
        self.expect_code(Kind::Err, code)
    }

    /// `OK <code>`.
    pub fn expect_ok(&self, code: &str) -> Line {
        self.expect_code(Kind::Ok, code)
    }

    /// Skips lines until one matches (presence notices and the like may come first).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Lines that keep coming must not outlast the deadline (nor reach a zero timeout).
            assert!(!left.is_zero(), "timed out waiting for {what}");
            match self.try_next(left) {
                Some(l) if pred(&l) => return l,
                Some(_) => continue,
                None => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Reads a `LIST` header and its items.
    pub fn expect_list(&self, name: &str) -> (Line, Vec<Line>) {
        let header = self.expect_code(Kind::List, name);
        let n: usize = header.arg(1).parse().unwrap();
        let items = (0..n).map(|_| self.next()).collect();
        (header, items)
    }

    /// Asserts nothing but presence notices arrives for `quiet`.
    pub fn expect_silence(&self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while let Some(l) = self.try_next(deadline.saturating_duration_since(Instant::now())) {
            assert!(
                matches!(l.kind, Kind::Presence | Kind::Presences),
                "expected silence, got: {l}"
            );
        }
    }

    /// Asserts the server closes the connection (EOF) soon.
    pub fn expect_closed(&self) {
        assert!(
            self.try_next(TIMEOUT).is_none(),
            "expected the connection to close"
        );
    }

    /// The underlying socket, for tests that end a connection in unusual ways.
    pub fn into_stream(self) -> TcpStream {
        self.writer.into_inner()
    }

    /// Logs out and waits for the BYE.
    pub fn logout(&self) {
        self.send("logout");
        self.wait_for("BYE logout", |l| l.kind == Kind::Bye);
    }
}

/// A connection as a person at `nc` has it: bytes in prose, read with timeouts.
pub struct Prose {
    /// The connection.
    stream: TcpStream,
    /// Everything received so far.
    pub seen: Vec<u8>,
    /// Where the last [`Prose::until`] match ended in `seen`.
    mark: usize,
}

impl Prose {
    /// Wraps a new connection; reads nothing yet.
    pub fn new(stream: TcpStream) -> Prose {
        Prose {
            stream,
            seen: Vec::new(),
            mark: 0,
        }
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Types one line (LF added).
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Reads until what arrived after the previous match contains `needle`; returns what
    /// arrived from the previous match to the end of this one.
    pub fn until(&mut self, needle: &str) -> String {
        String::from_utf8_lossy(&self.until_bytes(needle.as_bytes())).into_owned()
    }

    /// [`Prose::until`], in bytes (telnet commands are not UTF-8).
    pub fn until_bytes(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = find(&self.seen[self.mark..], needle) {
                let (from, end) = (self.mark, self.mark + at + needle.len());
                self.mark = end;
                return self.seen[from..end].to_vec();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {:?} in time; got: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.seen)
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut self.stream, &mut buf) {
                Ok(0) => panic!(
                    "closed before {needle:?}; got: {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads what arrives until the server closes the connection (bounded); returns what
    /// arrived after the last match.
    pub fn rest(&mut self) -> String {
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let _ = std::io::Read::read_to_end(&mut self.stream, &mut self.seen);
        let from = std::mem::replace(&mut self.mark, self.seen.len());
        String::from_utf8_lossy(&self.seen[from..]).into_owned()
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len().max(1)).position(|w| w == needle)
}
