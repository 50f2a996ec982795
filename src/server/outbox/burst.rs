//! Bursts: while a session thread works through lines its client has already sent, what it
//! queues for that client waits and goes out at the end of the burst, in one `send`.
//!
//! A client that pipelines (a login's name and password sent at once, a paste, a script)
//! has several lines in its read buffer at once; inside a burst the replies are appended to
//! memory and written when the buffer runs dry (or after [`MAX_BURST_LINES`]), before the
//! thread blocks on its next read. A lone line's replies go out as soon as it is handled.
//! It earns its place on the login rows: with it off, `logins 1000` fell 11 % (plaintext)
//! and 18 % (TLS), medians of five alternating runs (docs/performance.md).
//!
//! The burst is the connection's own state (its `BurstState`, under its outbox's lock),
//! opened and closed by its own session thread through a [`Burst`]: a line queued for a
//! connection whose burst is open, by whichever thread, waits for the burst's end; nothing
//! depends on which thread sends. A connection that dies with held lines hands its
//! undelivered messages back to the mailbox like any other unwritten line (see
//! `Conn::take_unsent_mail`).

use super::Conn;
use std::sync::Arc;

/// Lines handled in one burst before its writes go out anyway, so a long paste cannot hold
/// its replies back.
pub const MAX_BURST_LINES: usize = 32;

/// One connection's burst, kept in its outbox (under the outbox's lock, so a line queued by
/// another thread either sees the burst open, and is written at its end, or closed).
#[derive(Default)]
pub(super) struct BurstState {
    /// Whether the connection's thread is handling a line of its client's (lines for the
    /// connection wait).
    pub(super) open: bool,
    /// Whether another line of the burst was already received when this one was read.
    pub(super) more_coming: bool,
}

/// A session thread's hold on its connection's burst, alive for its command loop, released
/// at the end of each burst. Dropping it closes the burst and writes what it held.
pub struct Burst<'a> {
    /// The connection this thread serves.
    own: &'a Arc<Conn>,
    /// Lines handled since the last release.
    lines: usize,
}

impl<'a> Burst<'a> {
    /// Opens `own`'s burst (the login dialogue's first line may be pipelined with the
    /// next) until the returned value is dropped.
    pub fn begin(own: &'a Arc<Conn>) -> Burst<'a> {
        own.set_burst(true, false);
        Burst { own, lines: 0 }
    }

    /// Called before each read of the next line: closes the burst for the read (nothing
    /// waits while the thread blocks, and a reader may answer a WebSocket ping) and writes
    /// what it held, unless a further line was already waiting when the last one was read
    /// (see [`Burst::after_read`]) and the burst is still short.
    pub fn before_read(&mut self) {
        self.lines += 1;
        let release = !self.own.burst_more_coming() || self.lines > MAX_BURST_LINES;
        // Closed before the release writes: a line another thread queues from now on is
        // written by that thread or, behind bytes still waiting, by the release below; one
        // queued while the burst was open is in the outbox the release writes.
        self.own.set_burst(false, false);
        if release {
            self.release();
        }
    }

    /// Called once the read returned: opens the burst again for handling the line;
    /// `more_coming` if the reader holds another complete line already.
    pub fn after_read(&mut self, more_coming: bool) {
        self.own.set_burst(true, more_coming);
    }

    /// Writes what the burst held (what the socket does not take goes to the flusher).
    pub fn release(&mut self) {
        self.lines = 0;
        self.own.flush_or_hand_over();
    }
}

impl Drop for Burst<'_> {
    fn drop(&mut self) {
        self.own.set_burst(false, false);
        self.release();
    }
}

/// The burst of a connection, as its own session thread drives it.
impl Conn {
    /// Opens (`open`) or closes this connection's burst; `more_coming`: another line of
    /// its client's is already received.
    fn set_burst(&self, open: bool, more_coming: bool) {
        let mut outbox = self.outbox.lock();
        outbox.burst.open = open;
        outbox.burst.more_coming = more_coming;
    }

    /// Whether another line of the burst was already received when this one was read.
    fn burst_more_coming(&self) -> bool {
        self.outbox.lock().burst.more_coming
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Kind, Line};
    use crate::server::encoder::NativeEncoder;
    use crate::server::outbox::{Flusher, Limits};
    use std::io::{ErrorKind, Read};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A connection whose other end the test reads.
    fn conn_pair(flusher: &Flusher) -> (Arc<Conn>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let limits = Limits {
            outbox_bytes: 1 << 20,
            stall: Duration::from_secs(5),
        };
        let conn = Conn::new(1, server, peer, flusher, limits, Box::new(NativeEncoder));
        client.set_nonblocking(true).unwrap();
        (conn, client)
    }

    fn readable(client: &mut TcpStream) -> String {
        let mut buf = [0u8; 4096];
        match client.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => String::new(),
            Err(e) => panic!("{e}"),
        }
    }

    fn read_until(client: &mut TcpStream, lines: usize) -> String {
        let mut got = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.matches('\n').count() < lines {
            assert!(std::time::Instant::now() < deadline, "only got {got:?}");
            got.push_str(&readable(client));
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn lines_for_a_connection_in_its_burst_wait_for_the_release_and_leave_in_order() {
        let flusher = Flusher::new(); // never started: only the burst may write
        let (conn, mut client) = conn_pair(&flusher);
        let mut burst = Burst::begin(&conn);
        for i in 0..3 {
            assert!(conn.send(&Line::info("n", format!("line {i}"))));
        }
        // Another thread's line for it waits too (the burst is the connection's state).
        let other = Arc::clone(&conn);
        std::thread::spawn(move || assert!(other.send(&Line::info("n", "from elsewhere"))))
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(readable(&mut client), "", "nothing leaves inside the burst");
        burst.before_read();
        let got = read_until(&mut client, 4);
        assert_eq!(
            got,
            "INFO n line 0\nINFO n line 1\nINFO n line 2\nINFO n from elsewhere\n"
        );

        // Between bursts (the thread reading), a line goes out at once (no flusher needed).
        assert!(conn.send(&Line::new(Kind::Info, &["n"], "now")));
        assert_eq!(read_until(&mut client, 1), "INFO n now\n");
    }

    #[test]
    fn a_burst_with_more_lines_waiting_holds_its_replies_until_the_last_one() {
        let flusher = Flusher::new(); // never started
        let (conn, mut client) = conn_pair(&flusher);
        let mut burst = Burst::begin(&conn);
        for (i, more) in [true, true, false].into_iter().enumerate() {
            burst.after_read(more);
            assert!(conn.send(&Line::info("n", format!("reply {i}"))));
            burst.before_read();
            if more {
                std::thread::sleep(Duration::from_millis(5));
                assert_eq!(readable(&mut client), "", "held while lines wait");
            }
        }
        let got = read_until(&mut client, 3);
        assert_eq!(got, "INFO n reply 0\nINFO n reply 1\nINFO n reply 2\n");
    }

    #[test]
    fn lines_other_threads_send_while_bursts_open_and_close_all_arrive() {
        let flusher = Flusher::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher_thread = flusher.spawn(Arc::clone(&stop)).unwrap();
        let (conn, mut client) = conn_pair(&flusher);
        let (senders, per_sender) = (4, 500);
        let owner = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || {
                let mut burst = Burst::begin(&conn);
                for i in 0..5_000 {
                    burst.after_read(i % 3 != 0);
                    std::hint::spin_loop();
                    burst.before_read();
                }
            })
        };
        let threads: Vec<_> = (0..senders)
            .map(|t| {
                let conn = Arc::clone(&conn);
                std::thread::spawn(move || {
                    for i in 0..per_sender {
                        assert!(conn.send(&Line::info("n", format!("{t} {i}"))));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        owner.join().unwrap();
        // The owner is now between bursts, as a thread blocked in its read is: every line
        // must have left without it.
        let got = read_until(&mut client, senders * per_sender);
        assert_eq!(got.lines().count(), senders * per_sender);
        stop.store(true, std::sync::atomic::Ordering::Release);
        flusher_thread.join().unwrap();
    }

    #[test]
    fn a_closing_line_is_written_even_inside_a_burst() {
        let flusher = Flusher::new();
        let (conn, mut client) = conn_pair(&flusher);
        conn.set_burst(true, false);
        conn.send(&Line::info("n", "before"));
        conn.close_with(&Line::bye("kicked", "bye"));
        let got = read_until(&mut client, 2);
        assert_eq!(got, "INFO n before\nBYE kicked bye\n");
    }
}
