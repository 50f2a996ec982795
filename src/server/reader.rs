//! Reads protocol lines from a socket without ever buffering more than `max_line_bytes` of
//! one line: a longer line is discarded as it arrives and reported once it ends, and the
//! connection stays usable.

use super::capacity::read::read_some;
use super::capacity::stack::IdleStack;
use super::outbox::Conn;
use crate::clock::{Deadline, Wait};
use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Where a session's lines come from: the native socket, or a framing layer (such as a
/// WebSocket) that unwraps the same lines. The connection is passed so a framing layer can
/// answer control frames itself.
pub trait ReadLines {
    /// Waits until `deadline` (on the server's monotonic clock; maybe never) for the
    /// client's next complete line. Returns [`Input::TimedOut`] once the deadline has passed
    /// without one, however many bytes trickled in meanwhile: a deadline is not a per-read
    /// timeout.
    fn next_line(&mut self, conn: &Arc<Conn>, deadline: Deadline<'_>) -> Input;

    /// Whether a complete line has been received already, so [`ReadLines::next_line`]
    /// returns without waiting (lets a session batch its writes over a burst of input).
    fn has_buffered_line(&self) -> bool {
        false
    }

    /// Called before a password prompt: hide what the user types where the client's own
    /// protocol allows it (a telnet client; see `telnet`). Nothing by default.
    fn hide_echo(&mut self, _conn: &Arc<Conn>) {}

    /// Called once the password line has arrived: undoes [`ReadLines::hide_echo`].
    fn show_echo(&mut self, _conn: &Arc<Conn>) {}
}

/// Where a [`LineReader`] gets bytes: a bare socket, or a connection (which decrypts, on a
/// TLS door).
pub trait ByteSource {
    /// The socket (for its read timeout).
    fn socket(&self) -> &TcpStream;
    /// As [`read_some`]; `Interrupted` means "read again".
    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl ByteSource for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        read_some(self, buf)
    }
}

impl ByteSource for Arc<Conn> {
    fn socket(&self) -> &TcpStream {
        self.stream()
    }

    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.read_plain(buf)
    }
}

impl ReadLines for LineReader {
    fn next_line(&mut self, conn: &Arc<Conn>, deadline: Deadline<'_>) -> Input {
        self.next(conn, deadline)
    }

    fn has_buffered_line(&self) -> bool {
        self.buf.contains(&b'\n')
    }
}

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A complete line, without its LF or CRLF, valid UTF-8.
    Line(String),
    /// A line longer than the limit was skipped; its length in bytes.
    TooLong(usize),
    /// A complete line that is not valid UTF-8 was skipped.
    BadUtf8,
    /// The deadline passed without a complete line.
    TimedOut,
    /// The peer closed the connection (or it was shut down); a partial last line is dropped.
    Closed,
}

/// The most an empty read buffer keeps for the next line (a command or chat line is short).
const KEPT_BUFFER_BYTES: usize = 256;

/// A bounded line splitter over a blocking socket.
pub struct LineReader {
    /// Received bytes not yet returned; `buf[..len]` is valid.
    buf: Vec<u8>,
    /// Longest accepted line.
    max: usize,
    /// Bytes of an over-long line thrown away so far (0 when not discarding).
    discarding: usize,
    /// Whether a line that is not UTF-8 is returned with U+FFFD for its bad bytes (IRC
    /// clients may still send Latin-1) instead of being refused.
    lossy: bool,
    /// Gives back the stack pages a command touched before a long wait.
    stack: IdleStack,
    /// The read timeout last set on the socket (`None`: never set), so a busy connection
    /// does not pay a `setsockopt` per read for a deadline that barely moved.
    timeout_set: Option<Option<Duration>>,
}

/// How much shorter than asked a read timeout already set may be and still be kept: the
/// read then wakes a little early and the reader simply reads again.
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// Whether a read timeout `set` earlier serves for `wanted` now: it must not wait longer
/// (a deadline would be missed), and may end only slightly sooner.
fn timeout_serves(set: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (set, wanted) {
        (None, None) => true,
        (Some(set), Some(wanted)) => set <= wanted && wanted - set <= TIMEOUT_SLACK,
        _ => false,
    }
}

impl LineReader {
    /// A reader accepting lines up to `max` bytes.
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            max,
            discarding: 0,
            lossy: false,
            stack: IdleStack::default(),
            timeout_set: None,
        }
    }

    /// The same reader, returning non-UTF-8 lines decoded lossily instead of refusing them.
    pub fn lossy(mut self) -> LineReader {
        self.lossy = true;
        self
    }

    /// Waits until `deadline` for the next line; see [`ReadLines::next_line`].
    pub fn next(&mut self, source: &impl ByteSource, deadline: Deadline<'_>) -> Input {
        let stream = source.socket();
        // A line already buffered (pipelined input) needs no read, hence no clock or
        // timeout syscall.
        if let Some(input) = self.take_buffered() {
            return input;
        }
        self.stack.before_wait();
        loop {
            if let Some(input) = self.take_buffered() {
                return input;
            }
            // Each read may wait only for what is left of the deadline: bytes that do not
            // finish a line must not buy the client more time.
            let wanted = match deadline.wait() {
                Wait::Forever => None,
                Wait::Upto(left) => Some(left),
                Wait::Passed => return Input::TimedOut,
            };
            if !self
                .timeout_set
                .is_some_and(|set| timeout_serves(set, wanted))
            {
                self.timeout_set = stream.set_read_timeout(wanted).ok().map(|()| wanted);
            }
            match source.read_into(&mut self.buf) {
                Ok(0) => return Input::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A read timeout set a little short (see `TIMEOUT_SLACK`), or one slice of
                // the wait on a manual clock, ends early: the loop checks the deadline itself.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Input::Closed,
            }
        }
    }

    /// Returns a line already in the buffer, or handles an over-long partial line.
    fn take_buffered(&mut self) -> Option<Input> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let mut line = if nl + 1 == self.buf.len() {
                    // The usual read holds one line: the buffer itself becomes it (no copy;
                    // the next read starts a new buffer).
                    std::mem::take(&mut self.buf)
                } else {
                    self.buf.drain(..=nl).collect()
                };
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.shrink();
                self.stack.used();
                if self.discarding > 0 {
                    let total = self.discarding + line.len();
                    self.discarding = 0;
                    return Some(Input::TooLong(total));
                }
                if line.len() > self.max {
                    return Some(Input::TooLong(line.len()));
                }
                Some(match String::from_utf8(line) {
                    Ok(s) => Input::Line(s),
                    Err(e) if self.lossy => {
                        Input::Line(String::from_utf8_lossy(e.as_bytes()).into_owned())
                    }
                    Err(_) => Input::BadUtf8,
                })
            }
            None if self.buf.len() > self.max => {
                self.discarding += self.buf.len();
                self.buf.clear();
                self.shrink();
                None
            }
            None => None,
        }
    }

    /// Gives memory back after a big line or a burst, so ten thousand idle users stay small.
    fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEPT_BUFFER_BYTES {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualTicks, SystemTicks, Ticks};
    use crate::server::capacity::read::{MORE_READ_BYTES, WAIT_READ_BYTES};
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A deadline `ms` milliseconds from now on the real clock.
    fn in_ms(ms: u64) -> Deadline<'static> {
        Deadline::new(
            &SystemTicks,
            Some(Instant::now() + Duration::from_millis(ms)),
        )
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn splits_lines_and_handles_crlf() {
        let (mut tx, rx) = pair();
        tx.write_all(b"one\r\ntwo\nthr").unwrap();
        let mut r = LineReader::new(64);
        let t = in_ms(5000);
        assert_eq!(r.next(&rx, t), Input::Line("one".into()));
        assert_eq!(r.next(&rx, t), Input::Line("two".into()));
        assert_eq!(r.next(&rx, in_ms(20)), Input::TimedOut);
        tx.write_all(b"ee\n").unwrap();
        assert_eq!(r.next(&rx, t), Input::Line("three".into()));
        drop(tx);
        assert_eq!(r.next(&rx, t), Input::Closed);
    }

    #[test]
    fn over_long_lines_are_skipped_without_buffering_them() {
        let (mut tx, rx) = pair();
        let big = vec![b'x'; 100_000];
        let writer = std::thread::spawn(move || {
            tx.write_all(&big).unwrap();
            tx.write_all(b"\nok\n\xff\xfe\n").unwrap();
            tx
        });
        let mut r = LineReader::new(100);
        let t = in_ms(5000);
        assert_eq!(r.next(&rx, t), Input::TooLong(100_000));
        assert!(r.buf.capacity() <= 4096 + 2048);
        assert_eq!(r.next(&rx, t), Input::Line("ok".into()));
        assert_eq!(r.next(&rx, t), Input::BadUtf8);
        writer.join().unwrap();
    }

    #[test]
    fn pipelined_input_longer_than_a_waiting_read_comes_in_few_reads_and_whole() {
        let (mut tx, rx) = pair();
        let mut sent = Vec::new();
        for i in 0..300 {
            sent.extend_from_slice(format!("line number {i}\n").as_bytes());
        }
        assert!(sent.len() > WAIT_READ_BYTES + MORE_READ_BYTES);
        let (mut tx2, rx2) = pair();
        tx2.write_all(&sent).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = Vec::new();
        let n = read_some(&rx2, &mut buf).unwrap();
        assert_eq!(n, WAIT_READ_BYTES + MORE_READ_BYTES, "one wait, one more");
        assert_eq!(buf, sent[..n]);
        tx.write_all(&sent).unwrap();
        let mut r = LineReader::new(100);
        let t = in_ms(5000);
        for i in 0..300 {
            assert_eq!(r.next(&rx, t), Input::Line(format!("line number {i}")));
        }
        assert!(
            r.buf.capacity() <= KEPT_BUFFER_BYTES,
            "{}",
            r.buf.capacity()
        );
        drop(tx);
        assert_eq!(r.next(&rx, t), Input::Closed);
    }

    #[test]
    fn a_read_timeout_is_set_again_only_when_it_would_be_wrong() {
        let s = |ms| Some(Duration::from_millis(ms));
        assert!(timeout_serves(None, None));
        assert!(timeout_serves(s(1_800_000), s(1_800_000)));
        assert!(
            timeout_serves(s(1_799_700), s(1_800_000)),
            "a little early is fine"
        );
        assert!(!timeout_serves(s(1_799_000), s(1_800_000)), "too early");
        assert!(!timeout_serves(s(1_800_001), s(1_800_000)), "never late");
        assert!(!timeout_serves(None, s(5)));
        assert!(!timeout_serves(s(5), None));

        // A reader keeps the deadline it is given: a 20 ms read after one allowed 5 s
        // (which a line ended early) times out after about 20 ms, not 5 s.
        let (mut tx, rx) = pair();
        let mut r = LineReader::new(64);
        tx.write_all(b"hi\n").unwrap();
        assert_eq!(r.next(&rx, in_ms(5_000)), Input::Line("hi".into()));
        let started = Instant::now();
        assert_eq!(r.next(&rx, in_ms(20)), Input::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn bytes_that_never_finish_a_line_do_not_move_the_deadline() {
        let (tx, rx) = pair();
        let trickler = std::thread::spawn(move || {
            let mut tx = tx;
            for _ in 0..40 {
                if tx.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        let mut r = LineReader::new(64);
        let started = Instant::now();
        assert_eq!(r.next(&rx, in_ms(200)), Input::TimedOut);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_millis(700), "{took:?}");
        drop(rx);
        trickler.join().unwrap();
    }

    #[test]
    fn a_read_waiting_on_a_manual_clock_ends_once_the_clock_is_moved_past_its_deadline() {
        let (mut tx, rx) = pair();
        let ticks = ManualTicks::new();
        let mover = ticks.clone();
        let at = Some(ticks.now() + Duration::from_secs(3600));
        let (got, results) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = LineReader::new(64);
            for _ in 0..2 {
                got.send(r.next(&rx, Deadline::new(&ticks, at))).unwrap();
            }
        });
        // A line before the deadline is a line; bytes that never finish one are not.
        tx.write_all(b"before\npart").unwrap();
        let wait = Duration::from_secs(10);
        assert_eq!(results.recv_timeout(wait), Ok(Input::Line("before".into())));
        mover.advance(Duration::from_secs(3600));
        // Without short slices, the read would sleep for the real hour it was first given.
        assert_eq!(results.recv_timeout(wait), Ok(Input::TimedOut));
        reader.join().unwrap();
    }

    #[test]
    fn on_the_real_clock_a_read_waits_for_the_whole_deadline_and_on_a_manual_one_in_slices() {
        let hour = Duration::from_secs(3600);
        let (mut tx, rx) = pair();
        tx.write_all(b"one\n").unwrap();
        // The real clock: one socket timeout of (nearly) the hour, no extra wake-ups.
        let mut r = LineReader::new(64);
        let real = Deadline::new(&SystemTicks, Some(Instant::now() + hour));
        assert_eq!(r.next(&rx, real), Input::Line("one".into()));
        let set = r.timeout_set.flatten().expect("a read timeout");
        assert!(set > hour - Duration::from_secs(60), "{set:?}");
        // A manual clock: short slices, so a moved clock is seen.
        let ticks = ManualTicks::new();
        let mut r = LineReader::new(64);
        tx.write_all(b"two\n").unwrap();
        let manual = Deadline::new(&ticks, Some(ticks.now() + hour));
        assert_eq!(r.next(&rx, manual), Input::Line("two".into()));
        assert_eq!(
            r.timeout_set,
            Some(Some(crate::clock::MANUAL_RECHECK)),
            "sliced"
        );
    }

    #[test]
    fn a_lossy_reader_keeps_non_utf8_lines() {
        let (mut tx, rx) = pair();
        tx.write_all(b"caf\xe9\r\nok\n").unwrap();
        let mut r = LineReader::new(100).lossy();
        let t = in_ms(5000);
        assert_eq!(r.next(&rx, t), Input::Line("caf\u{fffd}".into()));
        assert_eq!(r.next(&rx, t), Input::Line("ok".into()));
    }
}
