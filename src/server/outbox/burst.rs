//! Bursts: while a session thread works through lines its client has already sent, what it
//! writes waits and goes out at the end of the burst, one `send` per recipient instead of
//! one per line.
//!
//! A client that pipelines (a paste, a script, a busy chat) has several lines in its read
//! buffer at once. Each `message USER TEXT` used to cost three syscalls (the line to `USER`,
//! the history append, `OK sent` to the sender); inside a burst they are appended to memory
//! and written when the buffer runs dry (or after [`MAX_BURST_LINES`]), before the thread
//! blocks on its next read. A lone line's writes go out as soon as it is handled. Both
//! halves below were measured against their removal and stay (docs/performance.md, "Each
//! tuning trick, measured").
//!
//! The burst is the state of one connection (its [`BurstState`], kept under its outbox's
//! lock), opened and closed by that connection's own session thread through a [`Burst`]:
//! - a line queued for a connection whose burst is open waits for that burst's end (its own
//!   thread writes it then), whoever sent it;
//! - a delivery made while handling a client's line names that client's connection as its
//!   sender (the `from` of `Conn::send_event`, `send_event_rescuable`, `send_fan_out`): if
//!   the sender's burst is open, the
//!   recipient's outbox is remembered in the sender's state and written at its end, so a
//!   pipelined conversation reaches its recipient in one `send`;
//! - a fan-out (a line for many, which goes to the flusher) is held the same way while more
//!   lines of the sender's burst have been received, and handed to the flusher at its end.
//!
//! Order is kept: an outbox is appended in the order lines were produced, and a history
//! entry is queued before its line reaches any outbox, so nobody's answer can be logged
//! ahead of the message it answers. A connection that dies with held lines hands its
//! undelivered messages back to the mailbox like any other unwritten line (see
//! `Conn::take_unsent_mail`).

use super::{Conn, FAN_OUT_QUEUED};
use std::sync::Arc;

/// Lines handled in one burst before its writes go out anyway, so a long paste cannot hold
/// everyone's lines back.
pub const MAX_BURST_LINES: usize = 32;

/// One connection's burst, kept in its outbox (under the outbox's lock, so a line queued by
/// another thread either sees the burst open, and is written at its end, or closed).
#[derive(Default)]
pub(super) struct BurstState {
    /// Whether the connection's thread is handling a line of its client's (sends to it wait).
    pub(super) open: bool,
    /// Whether another line of the burst was already received when this one was read: a
    /// fan-out is then held for the burst's end too.
    pub(super) more_coming: bool,
    /// Other connections whose outbox went from empty to non-empty with a delivery this
    /// burst made: they are this thread's to write at the end (nobody else was told to).
    pub(super) held: Vec<Arc<Conn>>,
    /// Whether the burst queued history entries for a sleeping history writer, which is
    /// woken once the burst's lines left.
    pub(super) wake_history: bool,
}

/// What the end of a burst owes the rest of the server: the hub wakes its history writer
/// when the burst queued entries for it.
pub trait AfterBurst {
    /// Called at the end of a burst that queued history entries.
    fn wake_history(&self);
}

/// A session thread's hold on its connection's burst, alive for its command loop, released
/// at the end of each burst. Dropping it releases what is held and closes the burst.
pub struct Burst<'a> {
    after: &'a dyn AfterBurst,
    /// The connection this thread serves.
    own: &'a Arc<Conn>,
    /// Lines handled since the last release.
    lines: usize,
}

impl<'a> Burst<'a> {
    /// Opens `own`'s burst (the login dialogue's first line may be pipelined with the
    /// next) until the returned value is dropped.
    pub fn begin(after: &'a dyn AfterBurst, own: &'a Arc<Conn>) -> Burst<'a> {
        own.set_burst(true, false);
        Burst {
            after,
            own,
            lines: 0,
        }
    }

    /// Called before each read of the next line: releases the burst unless a further line was
    /// already waiting when the last one was read (see [`Burst::after_read`]; the reader is
    /// not touched in between) and the burst is still short, and closes it for the read
    /// itself, so nothing waits while the thread blocks (a reader may answer a WebSocket
    /// ping).
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

    /// Writes what the burst held: this thread's own client's outbox and every outbox its
    /// deliveries left waiting are written now by this thread, except a held fan-out's,
    /// which go to the flusher; then the history writer is woken for the entries the burst
    /// queued.
    pub fn release(&mut self) {
        self.lines = 0;
        let (held, wake_history) = self.own.take_burst_held();
        for conn in &held {
            if conn.id != self.own.id {
                conn.release_burst(left_to_flusher(held.len(), false));
            }
        }
        self.own.release_burst(false);
        if wake_history {
            self.after.wake_history();
        }
    }
}

impl Drop for Burst<'_> {
    fn drop(&mut self) {
        self.own.set_burst(false, false);
        self.release();
    }
}

/// Whether one of the `held` outboxes of a burst is left to the flusher: only a fan-out's
/// (the sender gets back to its own client at once), and never the thread's `own` client's.
/// A conversation's are written by the sender (see `Conn::release_burst` for why).
fn left_to_flusher(held: usize, own: bool) -> bool {
    held >= FAN_OUT_QUEUED && !own
}

/// Who writes bytes appended to an empty outbox.
pub(super) enum Hold<'a> {
    /// This connection's own thread, at the end of its open burst.
    Own,
    /// The sender's thread, at the end of the sender's open burst.
    Sender(&'a Arc<Conn>),
    /// The flusher.
    None,
}

/// The burst of a connection, as its own session thread drives it (see `burst`).
impl Conn {
    /// Opens (`open`) or closes this connection's burst; `more_coming`: another line of
    /// its client's is already received.
    fn set_burst(&self, open: bool, more_coming: bool) {
        let mut outbox = self.outbox.lock();
        outbox.burst.open = open;
        outbox.burst.more_coming = more_coming;
    }

    /// Whether this connection's burst is open.
    pub(super) fn burst_open(&self) -> bool {
        self.outbox.lock().burst.open
    }

    /// Whether another line of the burst was already received when this one was read.
    fn burst_more_coming(&self) -> bool {
        self.outbox.lock().burst.more_coming
    }

    /// Whether a fan-out this connection's client causes now waits for its burst's end.
    pub(super) fn burst_holds_fan_out(&self) -> bool {
        let outbox = self.outbox.lock();
        outbox.burst.open && outbox.burst.more_coming
    }

    /// Remembers `other`, whose outbox a delivery of this burst left waiting, for the end of
    /// the burst.
    /// False if the burst is no longer open (its release may be over: the caller hands
    /// `other` to the flusher instead).
    pub(super) fn hold_for_burst(&self, other: &Arc<Conn>) -> bool {
        let mut outbox = self.outbox.lock();
        if outbox.burst.open {
            outbox.burst.held.push(Arc::clone(other));
        }
        outbox.burst.open
    }

    /// Takes what the burst held: the outboxes it left waiting, and whether the history
    /// writer is owed a wake-up.
    fn take_burst_held(&self) -> (Vec<Arc<Conn>>, bool) {
        let mut outbox = self.outbox.lock();
        (
            std::mem::take(&mut outbox.burst.held),
            std::mem::take(&mut outbox.burst.wake_history),
        )
    }

    /// Leaves the history writer's wake-up to the end of this connection's burst; false if
    /// the burst is not open (the caller wakes it now).
    pub fn wake_history_after_burst(&self) -> bool {
        let mut outbox = self.outbox.lock();
        outbox.burst.wake_history |= outbox.burst.open;
        outbox.burst.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Kind, Line};
    use crate::server::encoder::NativeEncoder;
    use crate::server::outbox::{Flusher, Limits};
    use std::cell::Cell;
    use std::io::{ErrorKind, Read};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A connection (with an id of its own) whose other end the test reads.
    fn conn_pair(flusher: &Flusher) -> (Arc<Conn>, TcpStream) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let limits = Limits {
            outbox_bytes: 1 << 20,
            stall: Duration::from_secs(5),
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::new(id, server, peer, flusher, limits, Box::new(NativeEncoder));
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

    /// Counts the history writer's wake-ups.
    #[derive(Default)]
    struct Wakes(Cell<usize>);

    impl AfterBurst for Wakes {
        fn wake_history(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn lines_for_a_connection_in_its_burst_wait_for_the_release_and_leave_in_order() {
        let flusher = Flusher::new(); // never started: only the burst may write
        let (conn, mut client) = conn_pair(&flusher);
        let wakes = Wakes::default();
        let mut burst = Burst::begin(&wakes, &conn);
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
        assert_eq!(wakes.0.get(), 0, "no history queued, no wake-up");

        // Between bursts (the thread reading), a line goes out at once (no flusher needed).
        assert!(conn.send(&Line::new(Kind::Info, &["n"], "now")));
        assert_eq!(read_until(&mut client, 1), "INFO n now\n");
    }

    #[test]
    fn a_delivery_waits_for_its_senders_burst_only_when_it_names_the_sender() {
        let flusher = Flusher::new(); // never started
        let (sender, _sender_client) = conn_pair(&flusher);
        let (to, mut to_client) = conn_pair(&flusher);
        let wakes = Wakes::default();
        let mut burst = Burst::begin(&wakes, &sender);
        burst.after_read(true);
        for i in 0..3 {
            assert!(to.deliver(&Line::info("n", format!("held {i}")), Some(&sender)));
        }
        assert!(
            sender.wake_history_after_burst(),
            "the burst owes a wake-up"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(readable(&mut to_client), "", "held for the sender's burst");
        burst.after_read(false);
        burst.before_read();
        let got = read_until(&mut to_client, 3);
        assert_eq!(got, "INFO n held 0\nINFO n held 1\nINFO n held 2\n");
        assert_eq!(
            wakes.0.get(),
            1,
            "the history writer woken once, at the end"
        );

        // The same thread, naming no sender: written at once, whatever burst is open.
        burst.after_read(true);
        assert!(to.deliver(&Line::info("n", "unheld"), None));
        assert_eq!(read_until(&mut to_client, 1), "INFO n unheld\n");
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
                let wakes = Wakes::default();
                let mut burst = Burst::begin(&wakes, &conn);
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
    fn only_a_fan_outs_outboxes_other_than_the_senders_own_are_left_to_the_flusher() {
        assert!(
            !left_to_flusher(1, false),
            "a private message: the sender writes it"
        );
        assert!(!left_to_flusher(FAN_OUT_QUEUED - 1, false), "a small group");
        assert!(left_to_flusher(FAN_OUT_QUEUED, false), "a fan-out");
        assert!(
            !left_to_flusher(FAN_OUT_QUEUED, true),
            "the sender's own client"
        );
    }

    #[test]
    fn a_burst_left_to_the_flusher_waits_for_it_and_one_written_at_once_does_not() {
        // Flusher not started: a handed-over burst must wait for it.
        let flusher = Flusher::new();
        let (sender, _sender_client) = conn_pair(&flusher);
        let (busy, mut busy_client) = conn_pair(&flusher);
        let (quiet, mut quiet_client) = conn_pair(&flusher);
        sender.set_burst(true, false);
        for i in 0..3 {
            busy.deliver(&Line::info("n", format!("busy {i}")), Some(&sender));
            quiet.deliver(&Line::info("n", format!("quiet {i}")), Some(&sender));
        }
        let (held, _) = sender.take_burst_held();
        sender.set_burst(false, false);
        assert_eq!(held.len(), 2);
        busy.release_burst(true);
        quiet.release_burst(false);
        let got = read_until(&mut quiet_client, 3);
        assert_eq!(got, "INFO n quiet 0\nINFO n quiet 1\nINFO n quiet 2\n");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(readable(&mut busy_client), "", "only the flusher writes it");

        // Once the flusher runs, the handed-over burst leaves whole and in order.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
        let got = read_until(&mut busy_client, 3);
        assert_eq!(got, "INFO n busy 0\nINFO n busy 1\nINFO n busy 2\n");
        stop.store(true, std::sync::atomic::Ordering::Release);
        thread.join().unwrap();
    }

    #[test]
    fn a_fan_out_is_held_while_the_burst_goes_on_and_its_last_line_goes_to_the_flusher() {
        let flusher = Flusher::new(); // started below: until then nothing may be written
        let (sender, _sender_client) = conn_pair(&flusher);
        let (member, mut member_client) = conn_pair(&flusher);
        let (other, mut other_client) = conn_pair(&flusher);
        let shared = |text: &str| {
            let line = Line::info("n", text);
            (line.to_wire(), line)
        };
        // Lines 1 and 2 of a burst of 3: the fan-out waits in the sender's burst.
        sender.set_burst(true, true);
        for text in ["one", "two"] {
            let (wire, line) = shared(text);
            assert!(member.queue_shared(&line, &wire, Some(&sender)));
        }
        let (held, _) = sender.take_burst_held();
        assert_eq!(held.len(), 1, "held once");
        // The burst's last line: no more coming, so its fan-out is the flusher's at once.
        sender.set_burst(true, false);
        let (wire, line) = shared("three");
        assert!(member.queue_shared(&line, &wire, Some(&sender)));
        assert!(other.queue_shared(&line, &wire, Some(&sender)));
        let (more, _) = sender.take_burst_held();
        sender.set_burst(false, false);
        assert!(
            more.is_empty(),
            "the last line's new recipient was not held"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(readable(&mut member_client), "");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
        assert_eq!(read_until(&mut other_client, 1), "INFO n three\n");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            readable(&mut member_client),
            "",
            "held until the burst's end"
        );
        for c in held {
            c.release_burst(true);
        }
        let got = read_until(&mut member_client, 3);
        assert_eq!(got, "INFO n one\nINFO n two\nINFO n three\n");
        stop.store(true, std::sync::atomic::Ordering::Release);
        thread.join().unwrap();
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
