//! The session's lines from a WebSocket: [`WsReader`] reads frames off the socket, answers
//! pings and closes itself, and hands each line of each text message to the session, so a
//! browser is served by exactly the same login dialogue and command loop as `nc`.

use super::ws::{self, close_code, Decoder, WsEvent};
use crate::clock::{Deadline, Wait};
use crate::protocol::Line;
use crate::server::capacity::stack::IdleStack;
use crate::server::outbox::Conn;
use crate::server::reader::{Input, ReadLines};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;

/// Reads native protocol lines carried in WebSocket text messages.
pub struct WsReader {
    /// Frames to events.
    decoder: Decoder,
    /// Longest line, as for the native door.
    max_line: usize,
    /// Lines decoded but not yet returned (a message may carry several).
    ready: VecDeque<Input>,
    /// The client closed, or broke the framing rules: only `Closed` from now on.
    ended: bool,
    /// Gives back the stack pages a command touched before a long wait.
    stack: IdleStack,
}

impl WsReader {
    /// A reader for lines of up to `max_line` bytes; `early` are bytes that arrived with
    /// the handshake request.
    pub fn new(max_line: usize, early: &[u8]) -> WsReader {
        // Room for a line ending, which a client may send and which is not part of the line.
        let mut decoder = Decoder::new(max_line + 2);
        decoder.feed(early);
        WsReader {
            decoder,
            max_line,
            ready: VecDeque::new(),
            ended: false,
            stack: IdleStack::default(),
        }
    }

    /// Acts on one decoded event: lines are queued, control frames answered.
    fn handle(&mut self, conn: &Arc<Conn>, event: WsEvent) {
        match event {
            WsEvent::Text(text) => self.ready.extend(lines_of(&text, self.max_line)),
            WsEvent::TooLong(n) => self
                .ready
                .push_back(Input::TooLong(usize::try_from(n).unwrap_or(usize::MAX))),
            WsEvent::BadUtf8 => self.ready.push_back(Input::BadUtf8),
            WsEvent::Binary(n) => {
                conn.send(&Line::err(
                    "binary-frame",
                    format!("That was a binary WebSocket message ({n} bytes); lines are text messages. It was not sent."),
                ));
            }
            WsEvent::Ping(payload) => {
                let mut pong = Vec::with_capacity(payload.len() + 2);
                ws::pong_frame(&payload, &mut pong);
                conn.send_bytes(&pong);
            }
            WsEvent::Pong => {}
            WsEvent::Close(code) => {
                // Echo the close (RFC 6455 section 5.5.1; the decoder let only valid codes
                // through); the session then ends as a drop. After a `BYE` the server's own
                // close already went out, and this is the browser's answer to it: a second
                // close would break the protocol (Chromium: "Close received after close").
                if !conn.said_bye() {
                    let code = code.unwrap_or(close_code::NORMAL);
                    conn.send_bytes(&ws::close_frame(code, ""));
                }
                self.ended = true;
            }
            WsEvent::Violation(why) => {
                log::debug!("conn {} ({}): websocket: {why}", conn.id, conn.peer);
                conn.send_bytes(&ws::close_frame(close_code::PROTOCOL_ERROR, why));
                self.ended = true;
            }
        }
    }
}

impl ReadLines for WsReader {
    fn next_line(&mut self, conn: &Arc<Conn>, deadline: Deadline<'_>) -> Input {
        loop {
            if let Some(input) = self.ready.pop_front() {
                self.stack.used();
                return input;
            }
            if self.ended {
                return Input::Closed;
            }
            if let Some(event) = self.decoder.next_event() {
                self.handle(conn, event);
                continue;
            }
            let left = match deadline.wait() {
                Wait::Forever => None,
                Wait::Upto(left) => Some(left),
                Wait::Passed => return Input::TimedOut,
            };
            self.stack.before_wait();
            let stream = conn.stream();
            let _ = stream.set_read_timeout(left);
            let mut bytes = Vec::new();
            match conn.read_plain(&mut bytes) {
                Ok(0) => self.ended = true,
                Ok(_) => self.decoder.feed(&bytes),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The wait ended (or one slice of it, on a manual clock): the loop looks at
                // the deadline again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.ended = true,
            }
        }
    }
}

/// The lines one text message carries: usually one, without a line ending; several if the
/// client joined them with LF (or CRLF). A final line ending adds no empty line.
pub fn lines_of(text: &str, max_line: usize) -> Vec<Input> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.len() > max_line {
                Input::TooLong(line.len())
            } else {
                Input::Line(line.to_string())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemTicks;
    use crate::server::outbox::{Flusher, Limits};
    use crate::server::web::WsEncoder;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// A web-door connection on real loopback sockets: the server's `Conn` and the client.
    fn ws_pair(flusher: &Flusher) -> (Arc<Conn>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let limits = Limits {
            outbox_bytes: 1 << 20,
            stall: Duration::from_secs(10),
        };
        let conn = Conn::new(1, server, peer, flusher, limits, Box::new(WsEncoder));
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        (conn, client)
    }

    /// Everything the client receives until the line goes quiet.
    fn received(client: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return got
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A masked close frame with code 1000, as a browser sends it.
    const CLIENT_CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];

    /// The number of close frames among the server's (unmasked, short) frames in `bytes`.
    fn close_frames(mut bytes: &[u8]) -> usize {
        let mut closes = 0;
        while bytes.len() >= 2 {
            let len = usize::from(bytes[1] & 0x7f);
            assert!(len < 126, "short frames only here");
            closes += usize::from(bytes[0] & 0x0f == 0x8);
            bytes = &bytes[(2 + len).min(bytes.len())..];
        }
        closes
    }

    #[test]
    fn a_browsers_close_is_echoed_once() {
        let flusher = Flusher::new();
        let (conn, mut client) = ws_pair(&flusher);
        client.write_all(&CLIENT_CLOSE).unwrap();
        let mut reader = WsReader::new(100, &[]);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            reader.next_line(&conn, Deadline::new(&SystemTicks, Some(deadline))),
            Input::Closed
        ));
        assert_eq!(close_frames(&received(&mut client)), 1);
    }

    #[test]
    fn the_browsers_answer_to_the_servers_close_after_bye_is_not_closed_again() {
        let flusher = Flusher::new();
        let (conn, mut client) = ws_pair(&flusher);
        conn.send(&Line::bye("shutdown", "The server is going down."));
        assert_eq!(close_frames(&received(&mut client)), 1, "BYE then close");
        // The browser answers the server's close, as RFC 6455 asks...
        client.write_all(&CLIENT_CLOSE).unwrap();
        let mut reader = WsReader::new(100, &[]);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            reader.next_line(&conn, Deadline::new(&SystemTicks, Some(deadline))),
            Input::Closed
        ));
        // ...and must not get a second close (Chromium: "Close received after close").
        assert_eq!(close_frames(&received(&mut client)), 0);
    }

    #[test]
    fn a_message_is_a_line_or_several() {
        let line = |s: &str| Input::Line(s.to_string());
        assert_eq!(lines_of("whoelse", 10), [line("whoelse")]);
        assert_eq!(lines_of("whoelse\r\n", 10), [line("whoelse")]);
        assert_eq!(lines_of("", 10), [line("")]);
        assert_eq!(
            lines_of("a\nb\r\n\nc", 10),
            [line("a"), line("b"), line(""), line("c")]
        );
        assert_eq!(
            lines_of("short\n0123456789x", 10),
            [line("short"), Input::TooLong(11)]
        );
    }
}
