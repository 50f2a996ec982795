//! Clients of an in-process or binary server: the native door's tagged lines
//! ([`TestClient`]) and the prose a person at `nc` reads ([`Prose`]).

use lanchat::protocol::{Kind, Line};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single expected line may take to arrive.
pub const TIMEOUT: Duration = Duration::from_secs(10);

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
        TestClient::tagged(tcp_from(addr, from))
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

    /// Skips lines (presence notices too) until one whose wire form contains `needle`.
    pub fn expect_text(&self, needle: &str) -> Line {
        self.wait_for(needle, |l| l.to_string().contains(needle))
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

/// A TCP connection to `addr` from the local address `from` (127.0.0.2 etc. all reach
/// 127.0.0.1 on Linux), for rules keyed by the client's IP.
pub fn tcp_from(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    TcpStream::from(socket)
}

/// A connection whose receive buffer is a few KiB, so the server's writes soon wait on it.
pub fn connect_with_small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}
