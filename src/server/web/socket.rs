//! The session's lines from a WebSocket: [`WsReader`] reads frames off the socket, answers
//! pings and closes itself, and hands each line of each text message to the session, so a
//! browser is served by exactly the same login dialogue and command loop as `nc`.

use super::ws::{self, close_code, Decoder, Event, Opcode};
use crate::protocol::Line;
use crate::server::conn::Conn;
use crate::server::memory::IdleStack;
use crate::server::reader::{Input, ReadLines};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    fn handle(&mut self, conn: &Arc<Conn>, event: Event) {
        match event {
            Event::Text(text) => self.ready.extend(lines_of(&text, self.max_line)),
            Event::TooLong(n) => self
                .ready
                .push_back(Input::TooLong(usize::try_from(n).unwrap_or(usize::MAX))),
            Event::BadUtf8 => self.ready.push_back(Input::BadUtf8),
            Event::Binary(n) => {
                conn.send(&Line::err(
                    "binary-frame",
                    format!("That was a binary WebSocket message ({n} bytes); lines are text messages. It was not sent."),
                ));
            }
            Event::Ping(payload) => {
                let mut pong = Vec::with_capacity(payload.len() + 2);
                ws::encode_frame(Opcode::Pong, &payload, &mut pong);
                conn.send_bytes(&pong);
            }
            Event::Pong => {}
            Event::Close(code) => {
                // Echo the close (RFC 6455 section 5.5.1; the decoder let only valid codes
                // through); the session then ends as a drop.
                let code = code.unwrap_or(close_code::NORMAL);
                conn.send_bytes(&ws::close_frame(code, ""));
                self.ended = true;
            }
            Event::Violation(why) => {
                log::debug!("conn {} ({}): websocket: {why}", conn.id, conn.peer);
                conn.send_bytes(&ws::close_frame(close_code::PROTOCOL_ERROR, why));
                self.ended = true;
            }
        }
    }
}

impl ReadLines for WsReader {
    fn next_line(&mut self, conn: &Arc<Conn>, deadline: Option<Instant>) -> Input {
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
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left.max(Duration::from_millis(1))),
                    _ => return Input::TimedOut,
                },
                None => None,
            };
            self.stack.before_wait();
            let stream = conn.stream();
            let _ = stream.set_read_timeout(left);
            let mut bytes = Vec::new();
            match conn.read_plain(&mut bytes) {
                Ok(0) => self.ended = true,
                Ok(_) => self.decoder.feed(&bytes),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Input::TimedOut
                }
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
