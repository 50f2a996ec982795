//! The direct-message wire format, pure: the greeting, the `PRIVATE` line and its MAC, the
//! reply, hexadecimal, and reading one bounded line within a deadline (see the module doc
//! of `direct` for the exchange).
//!
//! What it does not do: connect or listen (`sender` and `listener` do), or seal the text
//! (`seal` does).

use super::{seal, Secret};
use crate::protocol::{sanitize_text, valid_username};
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
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
pub(super) const MAX_LINE_BYTES: usize = seal::sealed_len(MAX_TEXT_BYTES) + 256;
/// Longest greeting or reply line a sender reads.
pub(super) const MAX_SHORT_LINE: usize = 1024;

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

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineRead {
    /// A whole line, without its LF or CRLF.
    Line(Vec<u8>),
    /// More than the limit without a line end.
    TooLong,
    /// The other side closed before a line end.
    Closed,
}

/// Reads one line of at most `limit` bytes (line end included) and nothing after it (the
/// other side sends nothing more before it hears from us).
pub(super) fn read_line(input: &mut impl Read, limit: usize) -> io::Result<LineRead> {
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
pub(super) struct ReadDeadline<'a> {
    /// The connection.
    pub(super) stream: &'a TcpStream,
    /// When every read must have ended.
    pub(super) by: Instant,
}

impl Read for ReadDeadline<'_> {
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
pub(super) fn read_line_in_time(stream: &TcpStream, limit: usize) -> io::Result<LineRead> {
    read_line(
        &mut ReadDeadline {
            stream,
            by: Instant::now() + TIMEOUT,
        },
        limit,
    )
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
}
