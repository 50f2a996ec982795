//! Direct private messages (seed 002's `private USER TEXT`): from one client straight to
//! another, never through the server, so they keep working while the server is down.
//!
//! The server only introduces two users. After both agree (`getaddress USER`, `accept`),
//! each gets an `ADDR granted` line with the other's listening address and a 32-byte secret
//! shared by the pair; the client keeps those in its [`Book`]. One TCP connection carries one
//! message:
//!
//! ```text
//!   receiver: LANCHAT-P2P 1 <nonce: 32 hex digits, fresh for every connection>
//!   sender:   PRIVATE <from> <mac: 64 hex digits> <text>
//!   receiver: OK delivered        or        ERR <code> <text>
//!   both close
//! ```
//!
//! `mac` is keyed BLAKE2b-256 ([`mac`]) with the pair's secret over
//! `lanchat-p2p-v1\n<nonce>\n<from>\n<to>\n<text>`, where `to` is the receiver's own name:
//! without the secret a message cannot be forged, replayed (the nonce changes) or redirected
//! to another peer. A receiver checks it in constant time; an unknown sender or a wrong MAC
//! gets `ERR refused` and a warning in the log with the peer's address (at most one line
//! per [`warnings::WINDOW`], then a summary), and the user sees nothing. A sender's
//! connecting, and each line it reads or writes, has [`TIMEOUT`]; a receiver gives each
//! connection [`listener::DEADLINE`] from its accept to a verified message. The text is one
//! UTF-8 line of at most [`MAX_TEXT_BYTES`] bytes.
//!
//! Threads: the listener ([`listener`]) accepts on `0.0.0.0` and `[::]` and gives each
//! connection it admits ([`admission`]: a cap per address and in all, fairly shared) a
//! short-lived thread, which must get a verified message within [`listener::DEADLINE`] and
//! hands it to the main loop as `Event::Direct`; warnings about refused connections are
//! rate-limited ([`warnings`]). Sending happens on one worker thread per peer
//! (`Outbox`), so messages to one peer arrive in order, a peer that does not answer delays
//! no one else, and the main loop never waits; each outcome comes back as `Event::Sent`.
//!
//! What it does not do: encrypt (anyone on the path can read a private message; the MAC only
//! proves who sent it), keep messages for a peer that cannot be reached, or tell peers that
//! this client is leaving (the server does that with `ADDR gone`).

pub mod admission;
pub mod listener;
pub mod seal;
pub mod warnings;

pub(crate) use listener::listen;

use super::Event;
use crate::protocol::{sanitize_text, valid_username};
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest private message text, in bytes (UTF-8).
pub const MAX_TEXT_BYTES: usize = 65536;
/// How long connecting to a peer, and reading or writing one line, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The first word of the receiver's greeting and the protocol version after it.
pub const GREETING: &str = "LANCHAT-P2P 2";
/// What the MAC input starts with, so a MAC made for something else never fits.
const MAC_CONTEXT: &[u8] = b"lanchat-p2p-v1\n";
/// Longest line a receiver reads: the text plus room for `PRIVATE`, a name, the MAC and a
/// CRLF.
const MAX_LINE_BYTES: usize = seal::sealed_len(MAX_TEXT_BYTES) + 256;
/// Longest greeting or reply line a sender reads.
const MAX_SHORT_LINE: usize = 1024;

/// The secret a pair of peers shares, from `ADDR granted`.
pub type Secret = [u8; 32];

/// Lowercase hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Decodes exactly `N` bytes of hexadecimal (either case); `None` for anything else.
pub fn from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let hex = hex.as_bytes();
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Keyed BLAKE2b-256 that has absorbed the signed bytes of one message.
fn mac_state(secret: &Secret, nonce: &str, from: &str, to: &str, text: &str) -> Blake2bMac<U32> {
    let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(secret)
        .expect("BLAKE2b takes keys of up to 64 bytes");
    for part in [
        MAC_CONTEXT,
        nonce.as_bytes(),
        b"\n",
        from.as_bytes(),
        b"\n",
        to.as_bytes(),
        b"\n",
        text.as_bytes(),
    ] {
        mac.update(part);
    }
    mac
}

/// The MAC of a message from `from` to `to`, answering the receiver's `nonce`.
pub fn mac(secret: &Secret, nonce: &str, from: &str, to: &str, text: &str) -> [u8; 32] {
    mac_state(secret, nonce, from, to, text)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `tag` is the MAC of that message; compared in constant time.
pub fn verify(secret: &Secret, nonce: &str, from: &str, to: &str, text: &str, tag: &[u8]) -> bool {
    mac_state(secret, nonce, from, to, text)
        .verify_slice(tag)
        .is_ok()
}

/// A fresh random nonce: 16 bytes as 32 hex digits.
pub fn new_nonce() -> String {
    to_hex(&rand::random::<[u8; 16]>())
}

/// The receiver's first line, with its line ending.
pub fn greeting(nonce: &str) -> String {
    format!("{GREETING} {nonce}\n")
}

/// The nonce in a receiver's greeting (without its line ending); `None` if the line is not a
/// version-1 greeting with 32 hex digits.
pub fn parse_greeting(line: &str) -> Option<&str> {
    let nonce = line.strip_prefix(GREETING)?.strip_prefix(' ')?;
    from_hex::<16>(nonce).map(|_| nonce)
}

/// A sender's `PRIVATE` line, parsed; the text is as sent (not yet escaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Private<'a> {
    /// Who says they sent it; believed only once the MAC is checked.
    pub from: &'a str,
    /// The MAC the sender computed.
    pub mac: [u8; 32],
    /// The message.
    pub text: &'a str,
}

/// The sender's line, with its line ending. `text` must be one line.
pub fn format_private(from: &str, mac: &[u8; 32], text: &str) -> String {
    format!("PRIVATE {from} {} {text}\n", to_hex(mac))
}

/// Parses a `PRIVATE` line (without its line ending): a valid username, 64 hex digits and a
/// text that is neither empty nor longer than [`MAX_TEXT_BYTES`]. `None` for anything else.
pub fn parse_private(line: &str) -> Option<Private<'_>> {
    let rest = line.strip_prefix("PRIVATE ")?;
    let mut parts = rest.splitn(3, ' ');
    let from = parts.next()?;
    let mac = from_hex::<32>(parts.next()?)?;
    let text = parts.next()?;
    if !valid_username(from) || text.is_empty() || text.len() > seal::sealed_len(MAX_TEXT_BYTES) {
        return None;
    }
    Some(Private { from, mac, text })
}

/// What a receiver's reply line (without its line ending) means to the sender.
pub fn parse_reply(line: &str) -> Result<(), SendError> {
    if line == "OK" || line.starts_with("OK ") {
        return Ok(());
    }
    match line.strip_prefix("ERR ") {
        Some(rest) => {
            let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
            Err(SendError::Refused {
                code: code.to_string(),
                text: text.to_string(),
            })
        }
        None => Err(SendError::Protocol),
    }
}

/// Why a direct message was not delivered.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The text is longer than [`MAX_TEXT_BYTES`] (its length in bytes).
    TooLong(usize),
    /// The text is empty or has a line break in it.
    BadText,
    /// No connection could be made to the peer's address.
    Connect(io::Error),
    /// The connection failed or timed out after it was made.
    Io(io::Error),
    /// The peer answered something that is not this protocol.
    Protocol,
    /// The peer refused the message (`ERR <code> <text>`).
    Refused {
        /// The peer's error code, e.g. `refused`.
        code: String,
        /// The peer's explanation.
        text: String,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLong(n) => write!(
                f,
                "private messages are limited to {MAX_TEXT_BYTES} bytes; this one has {n}"
            ),
            SendError::BadText => f.write_str("a private message is one line, not empty"),
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Io(e) => write!(f, "connection failed: {e}"),
            SendError::Protocol => f.write_str("the peer does not speak lanchat's direct protocol"),
            SendError::Refused { code, text } => {
                write!(
                    f,
                    "refused by the peer ({}): {}",
                    sanitize_text(code),
                    sanitize_text(text)
                )
            }
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) | SendError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Checks a text before anything is sent: one line, not empty, not too long.
pub fn check_text(text: &str) -> Result<(), SendError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(SendError::TooLong(text.len()));
    }
    if text.is_empty() || text.contains(['\n', '\r']) {
        return Err(SendError::BadText);
    }
    Ok(())
}

/// A command the client handles itself instead of sending it to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// `private USER TEXT` (seed 002): a direct message to someone in the address book.
    Private {
        /// The peer.
        to: String,
        /// The message, as typed (trimmed).
        text: String,
    },
    /// `send USER TEXT` (seed 004): a direct message, asking the server for USER's address
    /// first if USER is not in the address book yet.
    Send {
        /// The peer.
        to: String,
        /// The message, as typed (trimmed).
        text: String,
    },
    /// `addressbook`: who can be sent direct messages.
    AddressBook,
    /// `removeaddress USER`: dropped from the book at once, and sent on to the server, which
    /// tells USER.
    RemoveAddress(String),
}

/// Splits off the first word; returns (word, rest trimmed at its start).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Recognises the commands the client handles itself (case-insensitive, optionally with a
/// leading `/`). `None`: the line is for the server. `Some(Err(message))`: a local command
/// used wrongly. In a chat session (`in_session`) only lines starting with `/` count as
/// commands, as on the server.
pub fn parse_local(line: &str, in_session: bool) -> Option<Result<Local, String>> {
    let line = line.trim();
    let bare = match line.strip_prefix('/') {
        Some(bare) => bare,
        None if in_session => return None,
        None => line,
    };
    let (word, rest) = split_word(bare);
    let word = word.to_ascii_lowercase();
    let message = |usage: &str| -> Result<(String, String), String> {
        let (to, text) = split_word(rest);
        if to.is_empty() {
            return Err(format!("usage: {usage}"));
        }
        if !valid_username(to) {
            return Err(format!("'{}' is not a valid name", sanitize_text(to)));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("empty messages are not sent (usage: {usage})"));
        }
        check_text(text).map_err(|e| e.to_string())?;
        Ok((to.to_string(), text.to_string()))
    };
    Some(match word.as_str() {
        "private" => message("private USER TEXT").map(|(to, text)| Local::Private { to, text }),
        "send" => message("send USER TEXT").map(|(to, text)| Local::Send { to, text }),
        "addressbook" => Ok(Local::AddressBook),
        "removeaddress" => {
            let (name, extra) = split_word(rest);
            if !valid_username(name) || !extra.is_empty() {
                // The server explains the usage.
                return None;
            }
            Ok(Local::RemoveAddress(name.to_string()))
        }
        _ => return None,
    })
}

/// Where to reach a peer whose address the server gave as `address`, when this client
/// reaches the server at `server`. The server hands out the IP it sees a client connect
/// from; a loopback IP means the peer runs on the server's own machine, which this client
/// reaches at `server` (unless this client is on that machine too).
pub fn reachable_address(address: &str, server: Option<std::net::IpAddr>) -> String {
    match (address.parse::<SocketAddr>(), server) {
        (Ok(peer), Some(server)) if peer.ip().is_loopback() && !server.is_loopback() => {
            SocketAddr::new(server, peer.port()).to_string()
        }
        _ => address.to_string(),
    }
}

/// Where a peer listens and the secret shared with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `host:port` or `[v6]:port`, as the server gave it.
    pub address: String,
    /// The pair's secret.
    pub secret: Secret,
}

/// The address book: who this client may exchange direct messages with. A cheap handle
/// shared by the main loop (which changes it on the server's `ADDR` lines) and the
/// listener's threads (which look senders up); the lock never leaves this type.
#[derive(Clone, Debug, Default)]
pub struct Book {
    /// Peers by username.
    peers: Arc<Mutex<BTreeMap<String, Peer>>>,
}

impl Book {
    /// Adds or replaces a peer.
    pub fn insert(&self, name: &str, peer: Peer) {
        self.peers.lock().insert(name.to_string(), peer);
    }

    /// Drops a peer; whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        self.peers.lock().remove(name).is_some()
    }

    /// A peer's address and secret.
    pub fn get(&self, name: &str) -> Option<Peer> {
        self.peers.lock().get(name).cloned()
    }

    /// Every peer's name and address, sorted by name.
    pub fn entries(&self) -> Vec<(String, String)> {
        let peers = self.peers.lock();
        peers
            .iter()
            .map(|(name, peer)| (name.clone(), peer.address.clone()))
            .collect()
    }

    /// Whether a peer in the book listens at `ip`: a connection from there is probably
    /// that peer's (the MAC still decides), so [`admission`] lets it in first.
    pub fn has_peer_at(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.peers.lock().values().any(|peer| {
            peer.address
                .parse::<SocketAddr>()
                .is_ok_and(|addr| addr.ip().to_canonical() == ip)
        })
    }

    /// Every peer's name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.peers.lock().keys().cloned().collect()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.lock().is_empty()
    }
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A whole line, without its LF or CRLF.
    Line(Vec<u8>),
    /// More than the limit without a line end.
    TooLong,
    /// The other side closed before a line end.
    Closed,
}

/// Reads one line of at most `limit` bytes (line end included) and nothing after it (the
/// other side sends nothing more before it hears from us).
fn read_line(input: &mut impl Read, limit: usize) -> io::Result<LineRead> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let want = chunk.len().min(limit - line.len());
        let n = match input.read(&mut chunk[..want]) {
            Ok(0) => return Ok(LineRead::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let start = line.len();
        line.extend_from_slice(&chunk[..n]);
        if let Some(i) = line[start..].iter().position(|&b| b == b'\n') {
            line.truncate(start + i);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(LineRead::Line(line));
        }
        if line.len() >= limit {
            return Ok(LineRead::TooLong);
        }
    }
}

/// A stream whose reads all end by one deadline, so a peer that trickles bytes cannot hold
/// a thread for longer than [`TIMEOUT`] per line.
struct Deadline<'a> {
    stream: &'a TcpStream,
    by: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.by.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

/// Reads one line from `stream` within [`TIMEOUT`].
fn read_line_in_time(stream: &TcpStream, limit: usize) -> io::Result<LineRead> {
    read_line(
        &mut Deadline {
            stream,
            by: Instant::now() + TIMEOUT,
        },
        limit,
    )
}

/// Sends one direct message: connects to `peer`, answers its nonce and reads its verdict.
/// Blocks for up to a few [`TIMEOUT`]s; the client calls it on an `Outbox` worker thread.
pub fn send(peer: &Peer, from: &str, to: &str, text: &str) -> Result<(), SendError> {
    check_text(text)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    let mut stream = None;
    for addr in peer.address.to_socket_addrs().map_err(SendError::Connect)? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(SendError::Connect(last))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(SendError::Io)?;
    let line = |stream: &TcpStream| match read_line_in_time(stream, MAX_SHORT_LINE) {
        Ok(LineRead::Line(bytes)) => String::from_utf8(bytes).map_err(|_| SendError::Protocol),
        Ok(LineRead::TooLong) => Err(SendError::Protocol),
        Ok(LineRead::Closed) => Err(SendError::Io(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(SendError::Io(e)),
    };
    let greeting = line(&stream)?;
    let nonce = parse_greeting(&greeting).ok_or(SendError::Protocol)?;
    let sealed = seal::seal(&peer.secret, nonce, from, to, text);
    let tag = mac(&peer.secret, nonce, from, to, &sealed);
    (&stream)
        .write_all(format_private(from, &tag, &sealed).as_bytes())
        .map_err(SendError::Io)?;
    parse_reply(&line(&stream)?)
}

/// One message for an [`Outbox`] worker.
struct Job {
    /// Where to send it.
    peer: Peer,
    /// This client's user.
    from: String,
    /// The message.
    text: String,
}

/// Sends direct messages off the main loop: one worker thread per peer, started on the
/// first message to that peer, so each peer's messages stay in order.
pub(crate) struct Outbox {
    /// Each peer's worker queue.
    workers: HashMap<String, Sender<Job>>,
    /// Where workers report outcomes ([`Event::Sent`]).
    events: Sender<Event>,
}

impl Outbox {
    /// An outbox that reports to `events`.
    pub(crate) fn new(events: Sender<Event>) -> Outbox {
        Outbox {
            workers: HashMap::new(),
            events,
        }
    }

    /// Queues `text` from `from` to `to` at `peer`; the outcome arrives as [`Event::Sent`].
    pub(crate) fn send(
        &mut self,
        to: &str,
        peer: Peer,
        from: &str,
        text: String,
    ) -> io::Result<()> {
        let job = Job {
            peer,
            from: from.to_string(),
            text,
        };
        let job = match self.workers.get(to) {
            Some(worker) => match worker.send(job) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (name, events) = (to.to_string(), self.events.clone());
        std::thread::Builder::new()
            .name("direct-out".into())
            .spawn(move || {
                for job in rx {
                    let result = send(&job.peer, &job.from, &name, &job.text);
                    let sent = Event::Sent {
                        to: name.clone(),
                        result: result.map_err(|e| e.to_string()),
                    };
                    if events.send(sent).is_err() {
                        return;
                    }
                }
            })?;
        tx.send(job).expect("the worker holds the receiver");
        self.workers.insert(to.to_string(), tx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: Secret = [7u8; 32];
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0x00, 0x7f, 0xab, 0xff]), "007fabff");
        assert_eq!(from_hex::<4>("007fabff"), Some([0x00, 0x7f, 0xab, 0xff]));
        assert_eq!(from_hex::<4>("007FABFF"), Some([0x00, 0x7f, 0xab, 0xff]));
        assert_eq!(from_hex::<4>("007fab"), None);
        assert_eq!(from_hex::<4>("007fabfff"), None);
        assert_eq!(from_hex::<2>("0g00"), None);
        assert_eq!(from_hex::<2>("+1ab"), None);
        assert_eq!(from_hex::<1>("é"), None);
        let bytes: [u8; 32] = rand::random();
        assert_eq!(from_hex::<32>(&to_hex(&bytes)), Some(bytes));
    }

    #[test]
    fn mac_is_keyed_blake2b_256_over_the_documented_bytes() {
        // Computed independently, with Python's hashlib:
        //   blake2b(b"lanchat-p2p-v1\n" + NONCE + b"\nalice\nbob\nhi",
        //           key=bytes([7] * 32), digest_size=32).hexdigest()
        let tag = mac(&SECRET, NONCE, "alice", "bob", "hi");
        assert_eq!(
            to_hex(&tag),
            "007b1eafc031db9fbf3bef54e50569cd0a715a383b97b33ed30a1757b556ef32"
        );
        assert!(verify(&SECRET, NONCE, "alice", "bob", "hi", &tag));
    }

    #[test]
    fn mac_covers_every_field() {
        let tag = mac(&SECRET, NONCE, "alice", "bob", "hi");
        assert!(!verify(&SECRET, NONCE, "alice", "bob", "hi!", &tag));
        assert!(!verify(&SECRET, NONCE, "alice", "carol", "hi", &tag));
        assert!(!verify(&SECRET, NONCE, "mallory", "bob", "hi", &tag));
        let other_nonce = "ffeeddccbbaa99887766554433221100";
        assert!(!verify(&SECRET, other_nonce, "alice", "bob", "hi", &tag));
        assert!(!verify(&[8u8; 32], NONCE, "alice", "bob", "hi", &tag));
        assert!(!verify(&SECRET, NONCE, "alice", "bob", "hi", &tag[..31]));
        assert!(!verify(&SECRET, NONCE, "alice", "bob", "hi", &[0u8; 32]));
        // The separators matter: moving a byte from one field to the next changes the MAC.
        assert!(!verify(&SECRET, NONCE, "alic", "ebob", "hi", &tag));
    }

    #[test]
    fn greetings() {
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 32);
        assert_ne!(nonce, new_nonce());
        let line = greeting(&nonce);
        assert_eq!(line, format!("LANCHAT-P2P 2 {nonce}\n"));
        assert_eq!(parse_greeting(line.trim_end()), Some(nonce.as_str()));
        // A version-1 receiver would get the text unencrypted: not sent to.
        assert_eq!(
            parse_greeting("LANCHAT-P2P 1 00112233445566778899aabbccddeeff"),
            None
        );
        assert_eq!(parse_greeting("LANCHAT-P2P 2 0011"), None);
        assert_eq!(parse_greeting("LANCHAT-P2P 2"), None);
        assert_eq!(parse_greeting("HELLO 1 welcome"), None);
    }

    #[test]
    fn private_lines() {
        let tag = mac(&SECRET, NONCE, "alice", "bob", "hi  there ");
        let line = format_private("alice", &tag, "hi  there ");
        assert!(line.ends_with('\n'));
        let parsed = parse_private(line.trim_end_matches('\n')).unwrap();
        assert_eq!(
            parsed,
            Private {
                from: "alice",
                mac: tag,
                text: "hi  there "
            }
        );
        let zeros = "0".repeat(64);
        assert!(parse_private(&format!("PRIVATE alice {zeros} hi")).is_some());
        assert_eq!(parse_private(&format!("PRIVATE alice {zeros} ")), None);
        assert_eq!(parse_private(&format!("PRIVATE alice {zeros}")), None);
        assert_eq!(parse_private(&format!("PRIVATE al/ce {zeros} hi")), None);
        assert_eq!(
            parse_private(&format!("PRIVATE alice {} hi", "0".repeat(63))),
            None
        );
        assert_eq!(parse_private(&format!("private alice {zeros} hi")), None);
        assert_eq!(parse_private("PRIVATE"), None);
        let long = "x".repeat(seal::sealed_len(MAX_TEXT_BYTES) + 1);
        assert_eq!(
            parse_private(&format!("PRIVATE alice {zeros} {long}")),
            None
        );
        let longest = &long[1..];
        assert!(parse_private(&format!("PRIVATE alice {zeros} {longest}")).is_some());
    }

    #[test]
    fn replies() {
        assert!(parse_reply("OK delivered").is_ok());
        match parse_reply("ERR refused not in the address book") {
            Err(SendError::Refused { code, text }) => {
                assert_eq!(code, "refused");
                assert_eq!(text, "not in the address book");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_reply("ERR busy"),
            Err(SendError::Refused { .. })
        ));
        assert!(matches!(parse_reply("HELLO"), Err(SendError::Protocol)));
        assert!(matches!(parse_reply(""), Err(SendError::Protocol)));
    }

    #[test]
    fn texts_are_checked_before_sending() {
        assert!(check_text("hi").is_ok());
        assert!(check_text(&"x".repeat(MAX_TEXT_BYTES)).is_ok());
        let e = check_text(&"x".repeat(MAX_TEXT_BYTES + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "private messages are limited to 65536 bytes; this one has 65537"
        );
        assert!(matches!(check_text(""), Err(SendError::BadText)));
        assert!(matches!(check_text("a\nb"), Err(SendError::BadText)));
    }

    #[test]
    fn local_commands() {
        let private = |to: &str, text: &str| {
            Some(Ok(Local::Private {
                to: to.into(),
                text: text.into(),
            }))
        };
        assert_eq!(
            parse_local("private bob hi there", false),
            private("bob", "hi there")
        );
        assert_eq!(
            parse_local("  /PRIVATE  bob   hi  ", false),
            private("bob", "hi")
        );
        assert_eq!(parse_local("/private bob hi", true), private("bob", "hi"));
        assert_eq!(parse_local("private bob hi", true), None);
        assert_eq!(
            parse_local("send bob hi", false),
            Some(Ok(Local::Send {
                to: "bob".into(),
                text: "hi".into()
            }))
        );
        assert_eq!(
            parse_local("addressbook", false),
            Some(Ok(Local::AddressBook))
        );
        assert_eq!(
            parse_local("/AddressBook", false),
            Some(Ok(Local::AddressBook))
        );
        assert_eq!(
            parse_local("removeaddress bob", false),
            Some(Ok(Local::RemoveAddress("bob".into())))
        );
        assert_eq!(parse_local("removeaddress", false), None);
        assert_eq!(parse_local("getaddress bob", false), None);
        assert_eq!(parse_local("message bob hi", false), None);
        assert_eq!(parse_local("privately", false), None);
        assert_eq!(
            parse_local("private", false),
            Some(Err("usage: private USER TEXT".into()))
        );
        assert_eq!(
            parse_local("send bob   ", false),
            Some(Err(
                "empty messages are not sent (usage: send USER TEXT)".into()
            ))
        );
        assert_eq!(
            parse_local("private b\x1b@d hi", false),
            Some(Err("'b\\x1b@d' is not a valid name".into()))
        );
        let long = format!("private bob {}", "x".repeat(70 * 1024));
        assert_eq!(
            parse_local(&long, false),
            Some(Err(
                "private messages are limited to 65536 bytes; this one has 71680".into()
            ))
        );
    }

    #[test]
    fn lines_are_bounded() {
        let read = |bytes: &[u8], limit| read_line(&mut io::Cursor::new(bytes.to_vec()), limit);
        assert_eq!(
            read(b"abc\r\nmore", 10).unwrap(),
            LineRead::Line(b"abc".to_vec())
        );
        assert_eq!(read(b"abc\n", 4).unwrap(), LineRead::Line(b"abc".to_vec()));
        assert_eq!(read(b"abcd\n", 4).unwrap(), LineRead::TooLong);
        assert_eq!(read(b"abc", 10).unwrap(), LineRead::Closed);
        assert_eq!(read(b"", 10).unwrap(), LineRead::Closed);
    }

    #[test]
    fn a_peer_on_the_server_machine_is_reached_where_the_server_is() {
        let lan: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            reachable_address("127.0.0.1:4000", Some(lan)),
            "10.0.0.1:4000"
        );
        assert_eq!(reachable_address("[::1]:4000", Some(lan)), "10.0.0.1:4000");
        assert_eq!(
            reachable_address("127.0.0.1:4000", Some(local)),
            "127.0.0.1:4000"
        );
        assert_eq!(
            reachable_address("10.0.0.7:4000", Some(lan)),
            "10.0.0.7:4000"
        );
        assert_eq!(
            reachable_address("[fe80::1]:4000", Some(lan)),
            "[fe80::1]:4000"
        );
        assert_eq!(reachable_address("127.0.0.1:4000", None), "127.0.0.1:4000");
        assert_eq!(reachable_address("host:4000", Some(lan)), "host:4000");
    }

    #[test]
    fn book_is_shared_by_its_handles() {
        let book = Book::default();
        let other = book.clone();
        assert!(book.is_empty());
        let peer = Peer {
            address: "127.0.0.1:9".into(),
            secret: SECRET,
        };
        other.insert("carol", peer.clone());
        other.insert("bob", peer.clone());
        assert_eq!(book.names(), ["bob", "carol"]);
        assert_eq!(book.get("bob"), Some(peer));
        assert!(book.remove("bob"));
        assert!(!other.remove("bob"));
        assert_eq!(
            other.entries(),
            [("carol".to_string(), "127.0.0.1:9".to_string())]
        );
    }
}
