//! Corking: while a session thread works through lines its client has already sent, what it
//! writes waits and goes out at the end of the burst, one `send` per recipient instead of
//! one per line.
//!
//! A client that pipelines (a paste, a script, a busy chat) has several lines in its read
//! buffer at once. Each `message USER TEXT` used to cost three syscalls (the line to `USER`,
//! the history append, `OK sent` to the sender); inside a burst they are now appended to
//! memory and written when the buffer runs dry (or after [`MAX_BURST_LINES`]), before the
//! thread blocks on its next read. A lone line's writes go out as soon as it is handled, so
//! an idle relay is quicker too. History entries are queued for the history writer as each
//! line is handled (before its line is in any outbox); the writer is woken at the burst's
//! end.
//!
//! The cork is per thread (like `TCP_CORK` is per socket): [`Conn`] sends made by a thread
//! holding a [`Cork`] are appended to the recipient's outbox and remembered here instead of
//! written; sends from other threads are not affected. Order is kept: an outbox is appended
//! in the order lines were produced, and a history entry is queued before its line reaches
//! any outbox, so nobody's answer can be logged ahead of the message it answers (even when
//! the flusher writes a corked line early, for an outbox it was already writing).
//! A fan-out (a line for many, which goes to the flusher) is held as well while more lines
//! of the burst have been received, and handed to the flusher at the burst's end.
//! A connection that dies with corked lines in its outbox hands its undelivered messages
//! back to the mailbox like any other unwritten line (see `Conn::take_unsent_mail`).

use super::conn::Conn;
use super::hub::{Hub, FAN_OUT_QUEUED};
use std::cell::RefCell;
use std::sync::Arc;

/// Lines handled in one burst before its writes go out anyway, so a long paste cannot hold
/// everyone's lines back.
pub const MAX_BURST_LINES: usize = 32;

/// History entries and connections with corked bytes, of the current thread's burst.
#[derive(Default)]
struct Held {
    /// Whether a [`Cork`] is alive on this thread.
    active: bool,
    /// Connections whose outbox went from empty to non-empty inside the burst: they are this
    /// thread's to write (nobody else was told to).
    conns: Vec<Arc<Conn>>,
    /// Whether the burst queued history entries for a sleeping history writer, which is
    /// woken once the burst's lines left.
    wake_history: bool,
    /// Whether another line of the burst was already received when this one was read.
    more_coming: bool,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// Whether sends from this thread are corked.
pub fn is_active() -> bool {
    HELD.with(|h| h.borrow().active)
}

/// Whether sends from this thread are corked and the burst has lines after the current one
/// already received: a fan-out is then held for the burst's end, so each recipient gets the
/// burst's lines in one send (a sender working through 32 pipelined group lines used to
/// wake the flusher with the first, which then wrote each member a line or two at a time).
/// The last or only line of a burst hands its fan-out to the flusher at once.
pub fn holds_fan_out() -> bool {
    HELD.with(|h| {
        let h = h.borrow();
        h.active && h.more_coming
    })
}

/// Takes charge of writing `conn`'s outbox at the end of the burst. Called by a corked send
/// that found the outbox empty; false if this thread holds no cork (the caller then hands
/// the connection to the flusher as usual).
pub fn hold_conn(conn: &Arc<Conn>) -> bool {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.active {
            h.conns.push(Arc::clone(conn));
        }
        h.active
    })
}

/// Leaves the history writer's wake-up to the end of the burst; false if this thread holds
/// no cork (the caller wakes it now).
pub fn wake_history_later() -> bool {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.active {
            h.wake_history = true;
        }
        h.active
    })
}

/// A session thread's cork: alive for its command loop, released at the end of each burst.
/// Dropping it releases what is held and uncorks the thread.
pub struct Cork<'a> {
    hub: &'a Hub,
    /// The id of the connection this thread serves: its own client's replies are always
    /// written at the burst's end (nobody else adds to them, so waiting gains nothing).
    own: u64,
    /// Lines handled since the last release.
    lines: usize,
}

impl<'a> Cork<'a> {
    /// Corks the current thread's sends until the returned value is dropped; `own` is the
    /// connection the thread serves.
    pub fn begin(hub: &'a Hub, own: &Conn) -> Cork<'a> {
        debug_assert!(!is_active(), "one cork per thread");
        set_active(true);
        HELD.with(|h| h.borrow_mut().more_coming = false);
        Cork {
            hub,
            own: own.id,
            lines: 0,
        }
    }

    /// Called before each read of the next line: releases the burst unless a further line was
    /// already waiting when the last one was read (see [`Cork::after_read`]; the reader is
    /// not touched in between) and the burst is still short, and uncorks the thread for the
    /// read itself, so nothing stays held while it blocks (a reader may answer a WebSocket
    /// ping).
    pub fn before_read(&mut self) {
        self.lines += 1;
        let more_waiting = HELD.with(|h| h.borrow().more_coming);
        if !more_waiting || self.lines > MAX_BURST_LINES {
            self.release();
        }
        set_active(false);
    }

    /// Called once the read returned: corks the thread again for handling the line;
    /// `more_coming` if the reader holds another complete line already.
    pub fn after_read(&mut self, more_coming: bool) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.active = true;
            h.more_coming = more_coming;
        });
    }

    /// Writes what the burst held: every connection's outbox is written now by this thread,
    /// except a held fan-out's, which go to the flusher (this thread's own client's outbox
    /// always written here); then the history writer is woken for the entries the burst
    /// queued.
    pub fn release(&mut self) {
        self.lines = 0;
        let (conns, wake_writer) = HELD.with(|h| {
            let mut h = h.borrow_mut();
            (
                std::mem::take(&mut h.conns),
                std::mem::take(&mut h.wake_history),
            )
        });
        if !conns.is_empty() {
            // A held fan-out's many outboxes go to the flusher, as a lone line's do (see
            // `holds_fan_out`).
            for conn in &conns {
                conn.release_burst(left_to_flusher(conns.len(), conn.id == self.own));
            }
        }
        if wake_writer {
            self.hub.wake_history();
        }
    }
}

impl Drop for Cork<'_> {
    fn drop(&mut self) {
        self.release();
        set_active(false);
    }
}

/// Whether one of the `held` outboxes of a burst is left to the flusher: only a fan-out's
/// (the sender gets back to its own client at once), and never the thread's `own` client's.
/// A conversation's are written by the sender (see `Conn::release_burst` for why).
fn left_to_flusher(held: usize, own: bool) -> bool {
    held >= FAN_OUT_QUEUED && !own
}

fn set_active(active: bool) {
    HELD.with(|h| h.borrow_mut().active = active);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Kind, Line};
    use crate::server::conn::{Flusher, Limits};
    use crate::server::encoder::NativeEncoder;
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
    fn corked_sends_wait_for_the_release_and_leave_in_order() {
        let flusher = Flusher::new(); // never started: only the cork may write
        let (conn, mut client) = conn_pair(&flusher);
        set_active(true);
        for i in 0..3 {
            assert!(conn.send(&Line::info("n", format!("line {i}"))));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(readable(&mut client), "", "nothing leaves while corked");
        let held = HELD.with(|h| std::mem::take(&mut h.borrow_mut().conns));
        assert_eq!(held.len(), 1, "held once, however many lines");
        set_active(false);
        for c in held {
            c.flush_or_hand_over();
        }
        let got = read_until(&mut client, 3);
        assert_eq!(got, "INFO n line 0\nINFO n line 1\nINFO n line 2\n");

        // Uncorked, a line goes out at once (no flusher needed).
        assert!(conn.send(&Line::new(Kind::Info, &["n"], "now")));
        assert_eq!(read_until(&mut client, 1), "INFO n now\n");
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
        let (busy, mut busy_client) = conn_pair(&flusher);
        let (quiet, mut quiet_client) = conn_pair(&flusher);
        set_active(true);
        for i in 0..3 {
            busy.send(&Line::info("n", format!("busy {i}")));
            quiet.send(&Line::info("n", format!("quiet {i}")));
        }
        let held = HELD.with(|h| std::mem::take(&mut h.borrow_mut().conns));
        set_active(false);
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
        let (member, mut member_client) = conn_pair(&flusher);
        let (other, mut other_client) = conn_pair(&flusher);
        let shared = |text: &str| {
            let line = Line::info("n", text);
            (line.to_wire(), line)
        };
        // Lines 1 and 2 of a burst of 3: the fan-out waits in this thread's cork.
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.active = true;
            h.more_coming = true;
        });
        for text in ["one", "two"] {
            let (wire, line) = shared(text);
            assert!(member.queue_shared(&line, &wire));
        }
        assert_eq!(HELD.with(|h| h.borrow().conns.len()), 1, "held once");
        // The burst's last line: no more coming, so its fan-out is the flusher's at once.
        HELD.with(|h| h.borrow_mut().more_coming = false);
        let (wire, line) = shared("three");
        assert!(member.queue_shared(&line, &wire));
        assert!(other.queue_shared(&line, &wire));
        let held = HELD.with(|h| std::mem::take(&mut h.borrow_mut().conns));
        set_active(false);
        assert_eq!(held.len(), 1, "the last line's new recipient was not held");
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
        set_active(true);
        conn.send(&Line::info("n", "before"));
        conn.close_with(&Line::bye("kicked", "bye"));
        set_active(false);
        HELD.with(|h| h.borrow_mut().conns.clear());
        let got = read_until(&mut client, 2);
        assert_eq!(got, "INFO n before\nBYE kicked bye\n");
    }
}
