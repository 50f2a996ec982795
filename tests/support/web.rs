//! A minimal WebSocket client of the web door (`TestServer::web`), as a browser speaks it.

use super::client::TIMEOUT;
use lanchat::protocol::{Kind, Line};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// The opcodes this client sends and reads.
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A byte stream both ways: a socket, or TLS over one (WSS).
pub trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A WebSocket connection past its handshake, one protocol line per text frame.
pub struct WsClient {
    /// The connection, for tests that write raw bytes (an unmasked frame).
    pub stream: Box<dyn Duplex>,
    /// Received bytes not yet parsed.
    buf: Vec<u8>,
}

impl WsClient {
    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr) -> WsClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        WsClient::connect_over(Box::new(stream), addr)
    }

    /// Completes the handshake over `stream` (already connected to `addr`).
    pub fn connect_over(mut stream: Box<dyn Duplex>, addr: SocketAddr) -> WsClient {
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://{addr}\r\n\r\n"
        )
        .unwrap();
        let mut client = WsClient {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            client.fill();
        };
        let head = String::from_utf8(client.buf.drain(..end).collect()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        client
    }

    /// Reads more bytes; panics at EOF or timeout.
    pub fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed; unparsed: {:?}", self.buf),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mask = [0xa1, 0x5e, 0x03, 0x77];
        let mut frame = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// Sends one line as a text message.
    pub fn send(&mut self, line: &str) {
        self.send_frame(true, TEXT, line.as_bytes());
    }

    /// The next frame: opcode and payload. Server frames must be unmasked and final.
    pub fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                assert_eq!(self.buf[0] & 0xF0, 0x80, "server frames are final");
                let (len, start) = match self.buf[1] {
                    126 if self.buf.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    ),
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n if n < 126 => (usize::from(n), 2),
                    _ => (usize::MAX, 0),
                };
                if start > 0 && self.buf.len() >= start + len {
                    let opcode = self.buf[0] & 0x0F;
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return (opcode, payload);
                }
            }
            self.fill();
        }
    }

    /// The next protocol line (each text frame is one), presence notices skipped.
    pub fn next(&mut self) -> Line {
        loop {
            let line = self.next_any();
            if line.kind != Kind::Presence {
                return line;
            }
        }
    }

    /// The next protocol line of any kind.
    pub fn next_any(&mut self) -> Line {
        let (opcode, payload) = self.frame();
        assert_eq!(
            opcode, TEXT,
            "expected a text frame, got {opcode:#x} {payload:?}"
        );
        let text = String::from_utf8(payload).expect("text frames are UTF-8");
        assert!(!text.contains('\n'), "one line per frame, no LF: {text:?}");
        Line::parse(&text).unwrap_or_else(|| panic!("unparseable line {text:?}"))
    }

    /// The next line, which must be `kind` with first argument `code`.
    pub fn expect(&mut self, kind: Kind, code: &str) -> Line {
        let line = if kind == Kind::Presence {
            self.next_any()
        } else {
            self.next()
        };
        assert!(
            line.kind == kind && line.arg(0) == code,
            "expected {} {code}, got: {line}",
            kind.as_str()
        );
        line
    }

    /// Expects a close frame with `code`, then the end of the connection.
    pub fn expect_close(&mut self, code: u16) {
        let (opcode, payload) = self.frame();
        assert_eq!(opcode, CLOSE, "expected a close frame, got {payload:?}");
        assert_eq!(payload.get(..2), Some(&code.to_be_bytes()[..]));
        let deadline = Instant::now() + TIMEOUT;
        let mut chunk = [0u8; 64];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => assert!(Instant::now() < deadline, "data after the close frame"),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("no end of connection after the close frame: {e}"),
            }
        }
    }

    /// Logs in as a test user; the welcome and mail lines are consumed.
    pub fn login(addr: SocketAddr, name: &str, password: &str) -> WsClient {
        WsClient::login_on(WsClient::connect(addr), name, password)
    }

    /// Logs in on an open WebSocket (WSS too).
    pub fn login_on(mut c: WsClient, name: &str, password: &str) -> WsClient {
        c.expect(Kind::Hello, "lanchat/1");
        c.expect(Kind::Ask, "username");
        c.send(name);
        c.expect(Kind::Ask, "password");
        c.send(password);
        c.expect(Kind::Welcome, name);
        c.expect(Kind::Info, "no-mail");
        c
    }
}
