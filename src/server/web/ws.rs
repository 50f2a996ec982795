//! WebSocket framing (RFC 6455) for the web door. Frame headers go through tungstenite's codec;
//! message assembly, limits and close codes stay ours, since tungstenite's reader owns a socket.
//!
//! Pure functions over bytes: the handshake's accept key, server frames, and a [`Decoder`]
//! that turns what a client sends into whole messages and control frames. It never holds
//! more than one message of the allowed size: a longer message (or any binary one) is thrown
//! away as it arrives and only its length reported.
//!
//! tungstenite's `FrameHeader::parse` and `FrameHeader::format` are used over our own
//! buffers. Its `WebSocket` and `FrameSocket` are not: they read and write the stream
//! themselves, while every byte this server sends goes through the connection's outbox
//! (`Conn`, the only writer of its socket); they also keep a 128 KiB read buffer per
//! connection and end the connection on a message over the limit, where an over-long line
//! here is an error the session survives. The accept key stays a few lines over SHA-1:
//! tungstenite's helper needs its `handshake` feature (three more crates for one hash).

use base64ct::{Base64, Encoding};
use sha1::{Digest, Sha1};
use std::io::Cursor;
use tungstenite::error::{Error, ProtocolError};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Appended to the client's key before hashing (RFC 6455 section 1.3).
const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Control frames carry at most this many payload bytes.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Close codes the server sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// The purpose of the connection has been fulfilled (after `BYE`).
    pub const NORMAL: u16 = 1000;
    /// The peer broke the framing rules.
    pub const PROTOCOL_ERROR: u16 = 1002;
}

/// Whether a peer may send `code` in a close frame (RFC 6455 section 7.4 and the IANA
/// registry): the defined codes, less 1004 (reserved) and 1005, 1006 and 1015 (which name
/// situations and must never be sent), and the ranges for libraries (3000-3999) and
/// applications (4000-4999). Anything else is a protocol error. Not tungstenite's
/// `CloseCode::is_allowed`, which also turns away 1014 (Bad Gateway), a registered code.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client's close frame: no payload (no code), or a valid code and a UTF-8 reason
/// (section 5.5.1). A one-byte payload, an invalid code or a reason that is not UTF-8
/// breaks the rules, and is answered with 1002 instead of being echoed.
fn close_event(payload: &[u8]) -> WsEvent {
    match payload {
        [] => WsEvent::Close(None),
        [_] => WsEvent::Violation("close frame with a one-byte payload"),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !valid_close_code(code) {
                WsEvent::Violation("invalid close code")
            } else if std::str::from_utf8(reason).is_err() {
                WsEvent::Violation("close reason is not UTF-8")
            } else {
                WsEvent::Close(Some(code))
            }
        }
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key.trim().as_bytes());
    sha.update(HANDSHAKE_GUID.as_bytes());
    Base64::encode_string(&sha.finalize())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn valid_key(key: &str) -> bool {
    let mut out = [0u8; 16];
    key.len() == 24 && matches!(Base64::decode(key, &mut out), Ok(b) if b.len() == 16)
}

/// Appends one unfragmented, unmasked (server-to-client) frame to `out`; tungstenite picks
/// the shortest length form, as RFC 6455 section 5.2 asks.
fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        mask: None,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    out.reserve(header.len(len) + payload.len());
    header
        .format(len, out)
        .expect("writing to a Vec does not fail");
    out.extend_from_slice(payload);
}

/// Appends a text frame carrying `text` to `out`.
pub fn text_frame(text: &str, out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Text), text.as_bytes(), out);
}

/// Appends the pong that answers a ping carrying `payload` to `out`.
pub fn pong_frame(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Control(Control::Pong), payload, out);
}

/// A close frame with `code` and a short reason (cut to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    let mut out = Vec::with_capacity(payload.len() + 2);
    encode_frame(OpCode::Control(Control::Close), &payload, &mut out);
    out
}

/// A frame header as read from the client, once it has passed the server's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    /// Last frame of its message.
    fin: bool,
    /// What the frame is.
    opcode: OpCode,
    /// The masking key; every client frame must have one.
    mask: [u8; 4],
    /// Payload length in bytes.
    len: u64,
    /// Bytes the header itself takes.
    size: usize,
}

/// Parses the frame header at the start of `buf`: `Ok(None)` if more bytes are needed,
/// `Err` with a reason if the client broke the framing rules (an unknown opcode, reserved
/// bits, no mask, a fragmented or oversized control frame).
fn parse_header(buf: &[u8]) -> Result<Option<Header>, &'static str> {
    let mut cursor = Cursor::new(buf);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(Error::Protocol(ProtocolError::InvalidOpcode(_))) => return Err("unknown opcode"),
        Err(_) => return Err("malformed frame header"),
    };
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err("reserved bits set");
    }
    let Some(mask) = header.mask else {
        return Err("client frames must be masked");
    };
    if matches!(header.opcode, OpCode::Control(_))
        && (!header.is_final || len > MAX_CONTROL_PAYLOAD)
    {
        return Err("fragmented or oversized control frame");
    }
    Ok(Some(Header {
        fin: header.is_final,
        opcode: header.opcode,
        mask,
        len,
        // At most 14 bytes: what the parser read.
        size: cursor.position() as usize,
    }))
}

/// XORs `payload` with the masking key (masking and unmasking are the same operation;
/// tungstenite keeps its own to itself).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// What the client sent, a message or control frame at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A whole text message.
    Text(String),
    /// A text message longer than the limit, thrown away; its length in bytes.
    TooLong(u64),
    /// A text message that is not valid UTF-8, thrown away.
    BadUtf8,
    /// A binary message, thrown away; its length in bytes.
    Binary(u64),
    /// A ping; the pong must carry this payload.
    Ping(Vec<u8>),
    /// A pong (nothing to do).
    Pong,
    /// The client is closing, with its close code if it gave one.
    Close(Option<u16>),
    /// The client broke the framing rules; the connection must be closed (code 1002).
    Violation(&'static str),
}

/// The data message being received (possibly in several frames).
struct Partial {
    /// Text (or binary).
    text: bool,
    /// Payload so far, unless it is being thrown away.
    data: Vec<u8>,
    /// Payload bytes so far, kept or not.
    len: u64,
    /// Over the limit, or binary: its bytes are dropped as they arrive.
    discarding: bool,
}

/// Reassembles client frames into [`WsEvent`]s. Feed it bytes as they arrive and take events
/// until it returns `None`; after `Close` or `Violation` the connection is over.
pub struct Decoder {
    /// Received bytes not yet decoded.
    buf: Vec<u8>,
    /// Largest text message kept, in bytes.
    max_message: usize,
    /// The data message in progress.
    message: Option<Partial>,
    /// Payload bytes of the current frame still to drop.
    skip: u64,
    /// Whether the frame being dropped ends its message.
    skip_fin: bool,
}

impl Decoder {
    /// A decoder keeping text messages of up to `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            max_message,
            message: None,
            skip: 0,
            skip_fin: false,
        }
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held now (for tests of the memory bound).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<WsEvent> {
        loop {
            if self.skip > 0 {
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.consume(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return None;
                }
                if self.skip_fin {
                    return Some(self.finish());
                }
                continue;
            }
            let header = match parse_header(&self.buf) {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(why) => return Some(WsEvent::Violation(why)),
            };
            let data = match header.opcode {
                OpCode::Control(control) => {
                    let end = header.size + header.len as usize;
                    if self.buf.len() < end {
                        return None;
                    }
                    let mut payload = self.buf[header.size..end].to_vec();
                    self.consume(end);
                    unmask(&mut payload, header.mask);
                    return Some(match control {
                        Control::Ping => WsEvent::Ping(payload),
                        Control::Pong => WsEvent::Pong,
                        Control::Close => close_event(&payload),
                        Control::Reserved(_) => WsEvent::Violation("unknown opcode"),
                    });
                }
                OpCode::Data(Data::Reserved(_)) => {
                    return Some(WsEvent::Violation("unknown opcode"))
                }
                OpCode::Data(data) => data,
            };
            match (data, self.message.is_some()) {
                (Data::Continue, false) => {
                    return Some(WsEvent::Violation("continuation frame without a message"))
                }
                (Data::Text | Data::Binary, true) => {
                    return Some(WsEvent::Violation("new message inside a fragmented one"))
                }
                _ => {}
            }
            let (so_far, discarding) = self
                .message
                .as_ref()
                .map_or((0, data == Data::Binary), |m| (m.len, m.discarding));
            let total = so_far.saturating_add(header.len);
            if discarding || total > self.max_message as u64 {
                // Drop this frame's payload as it arrives, never holding it.
                self.consume(header.size);
                let message = self.message.get_or_insert_with(|| Partial {
                    text: data == Data::Text,
                    data: Vec::new(),
                    len: 0,
                    discarding: true,
                });
                message.discarding = true;
                message.data = Vec::new();
                message.len = total;
                self.skip = header.len;
                self.skip_fin = header.fin;
                if self.skip == 0 && header.fin {
                    return Some(self.finish());
                }
                continue;
            }
            // Within the limit: wait for the whole frame, then keep it.
            let end = header.size + header.len as usize;
            if self.buf.len() < end {
                return None;
            }
            let mut payload = self.buf[header.size..end].to_vec();
            self.consume(end);
            unmask(&mut payload, header.mask);
            let message = self.message.get_or_insert_with(|| Partial {
                text: data == Data::Text,
                data: Vec::new(),
                len: 0,
                discarding: false,
            });
            message.data.extend_from_slice(&payload);
            message.len = total;
            if header.fin {
                return Some(self.finish());
            }
        }
    }

    /// The event for the message that just ended.
    fn finish(&mut self) -> WsEvent {
        let message = self.message.take().expect("a message in progress");
        match (message.text, message.discarding) {
            (false, _) => WsEvent::Binary(message.len),
            (true, true) => WsEvent::TooLong(message.len),
            (true, false) => match String::from_utf8(message.data) {
                Ok(text) => WsEvent::Text(text),
                Err(_) => WsEvent::BadUtf8,
            },
        }
    }

    /// Drops `n` decoded bytes; gives memory back after a big message.
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        if self.buf.is_empty() && self.buf.capacity() > 8192 {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    fn events(decoder: &mut Decoder) -> Vec<WsEvent> {
        std::iter::from_fn(|| decoder.next_event()).collect()
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key("not base64 at all!!!!!!!"));
    }

    #[test]
    fn server_frames_use_the_shortest_length_form_byte_for_byte() {
        // The exact header bytes a browser gets, for each length form and its edges.
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x81, 0]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xFF, 0xFF]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (70000, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ];
        for (len, header) in cases {
            let text = "a".repeat(len);
            let mut out = b"before".to_vec();
            text_frame(&text, &mut out);
            assert_eq!(&out[6..6 + header.len()], header, "length {len}");
            assert_eq!(&out[6 + header.len()..], text.as_bytes(), "length {len}");
        }
        let mut pong = Vec::new();
        pong_frame(b"hb", &mut pong);
        assert_eq!(pong, [0x8A, 2, b'h', b'b']);
        assert_eq!(
            close_frame(1002, "bad"),
            [0x88, 5, 0x03, 0xEA, b'b', b'a', b'd']
        );
        let close = close_frame(1000, &"é".repeat(100));
        assert_eq!(close[0], 0x88);
        assert!(close[1] as usize <= 125);
        assert_eq!(&close[2..4], &1000u16.to_be_bytes());
        assert!(std::str::from_utf8(&close[4..]).is_ok());
    }

    #[test]
    fn text_frames_decode_even_byte_by_byte() {
        let mut wire = client_frame(true, 1, b"whoelse");
        wire.extend(client_frame(true, 1, "h\u{e9}llo".as_bytes()));
        let mut d = Decoder::new(64);
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            got.extend(events(&mut d));
        }
        assert_eq!(
            got,
            [
                WsEvent::Text("whoelse".into()),
                WsEvent::Text("héllo".into())
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn fragments_join_and_control_frames_may_come_between() {
        let mut d = Decoder::new(64);
        d.feed(&client_frame(false, 1, b"mess"));
        d.feed(&client_frame(true, 9, b"hb"));
        d.feed(&client_frame(false, 0, b"age bob "));
        d.feed(&client_frame(true, 0, b"hi"));
        assert_eq!(
            events(&mut d),
            [
                WsEvent::Ping(b"hb".to_vec()),
                WsEvent::Text("message bob hi".into())
            ]
        );
    }

    #[test]
    fn over_long_and_binary_messages_are_dropped_without_buffering() {
        let mut d = Decoder::new(100);
        let big = client_frame(true, 1, &vec![b'x'; 100_000]);
        for chunk in big.chunks(1000) {
            d.feed(chunk);
            assert!(events(&mut d).is_empty() || d.buffered() == 0);
            assert!(d.buffered() <= 1000);
        }
        d.feed(&client_frame(true, 1, b"ok"));
        // The over-long message was reported once its last byte arrived.
        let mut d2 = Decoder::new(100);
        d2.feed(&big);
        d2.feed(&client_frame(true, 1, b"ok"));
        assert_eq!(
            events(&mut d2),
            [WsEvent::TooLong(100_000), WsEvent::Text("ok".into())]
        );
        // Over the limit only once the fragments add up.
        let mut d3 = Decoder::new(10);
        d3.feed(&client_frame(false, 1, b"123456"));
        d3.feed(&client_frame(false, 0, b"789012"));
        d3.feed(&client_frame(true, 0, b"345"));
        d3.feed(&client_frame(true, 2, &[0, 1, 2]));
        d3.feed(&client_frame(true, 1, b"\xff\xfe"));
        assert_eq!(
            events(&mut d3),
            [WsEvent::TooLong(15), WsEvent::Binary(3), WsEvent::BadUtf8]
        );
    }

    #[test]
    fn close_carries_its_code() {
        let mut d = Decoder::new(10);
        d.feed(&client_frame(true, 8, &1001u16.to_be_bytes()));
        d.feed(&client_frame(true, 8, b""));
        d.feed(&client_frame(true, 10, b"x"));
        assert_eq!(
            events(&mut d),
            [
                WsEvent::Close(Some(1001)),
                WsEvent::Close(None),
                WsEvent::Pong
            ]
        );
    }

    #[test]
    fn invalid_close_frames_are_violations() {
        let close = |payload: &[u8]| {
            let mut d = Decoder::new(10);
            d.feed(&client_frame(true, 8, payload));
            d.next_event().unwrap()
        };
        for code in [999u16, 0, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(
                matches!(close(&code.to_be_bytes()), WsEvent::Violation(_)),
                "{code}"
            );
        }
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(close(&code.to_be_bytes()), WsEvent::Close(Some(code)));
        }
        assert!(matches!(close(&[0x03]), WsEvent::Violation(_)));
        assert!(matches!(close(&[0x03, 0xe8, 0xff]), WsEvent::Violation(_)));
        assert_eq!(close(&[0x03, 0xe8, b'o', b'k']), WsEvent::Close(Some(1000)));
    }

    #[test]
    fn framing_violations_are_reported() {
        let cases: [(&[u8], &str); 5] = [
            (&[0x81, 0x02, b'h', b'i'], "masked"),
            (&[0xC1, 0x80, 0, 0, 0, 0], "reserved"),
            (&[0x83, 0x80, 0, 0, 0, 0], "opcode"),
            (&[0x09, 0x80, 0, 0, 0, 0], "control"),
            (&[0x80, 0x80, 0, 0, 0, 0], "continuation"),
        ];
        for (wire, why) in cases {
            let mut d = Decoder::new(10);
            d.feed(wire);
            match d.next_event() {
                Some(WsEvent::Violation(reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{wire:?}: {other:?}"),
            }
        }
        let mut d = Decoder::new(10);
        d.feed(&client_frame(false, 1, b"a"));
        d.feed(&client_frame(true, 1, b"b"));
        assert!(matches!(d.next_event(), Some(WsEvent::Violation(_))));
        let mut d = Decoder::new(10);
        d.feed(&client_frame(true, 9, &[0; 126]));
        assert!(matches!(d.next_event(), Some(WsEvent::Violation(_))));
    }
}
