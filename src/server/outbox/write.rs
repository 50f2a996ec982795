//! Writing a connection's queue to its socket: by the thread that queued (at once, or at
//! its burst's end), by the flusher, or, for a last line, before the socket closes. A send
//! never blocks; what the socket does not take is left to the flusher.

use super::Conn;
use socket2::SockRef;
use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Conn {
    /// Writes what is queued now, from the calling thread, as far as the socket takes it
    /// (after any send another thread has in flight for it: a closing line goes out last).
    pub fn flush_now(self: &Arc<Self>) {
        // Twice at most: a writer that started between the wait and our attempt has our
        // bytes too; waiting for it once more tells whether they went out.
        for _ in 0..2 {
            self.wait_for_writer();
            match self.flush_some() {
                Ok(true) => {}
                Ok(false) => {
                    // The socket is full: the flusher finishes (whoever writes an outbox
                    // and meets a full socket hands it over, as others let it write).
                    self.flusher.hand_over(self);
                    return;
                }
                Err(e) => {
                    log::debug!("conn {} ({}): flush failed: {e}", self.id, self.peer);
                    self.close();
                    return;
                }
            }
            self.wait_for_writer();
            if self.outbox.lock().is_empty() {
                return;
            }
        }
    }

    /// Waits (a few microseconds: one send) while another thread sends this outbox's bytes.
    pub(super) fn wait_for_writer(&self) {
        let deadline = Instant::now() + Duration::from_millis(100);
        while self.outbox.lock().writing && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// Writes what is queued now from the calling thread, and hands what the socket does not
    /// take to the flusher (the end of a burst).
    pub fn flush_or_hand_over(self: &Arc<Self>) {
        match self.flush_some() {
            Ok(true) => {}
            Ok(false) => {
                self.flusher.hand_over(self);
            }
            Err(e) => {
                log::debug!("conn {} ({}): flush failed: {e}", self.id, self.peer);
                self.close();
            }
        }
    }

    /// The end of a burst: the outbox is written now by the calling thread, or, for
    /// a fan-out's many outboxes (`to_flusher`), left to the flusher so the sender gets back
    /// to its own client at once.
    ///
    /// A burst for one or a few recipients is always written by its sender: handing it to
    /// the flusher when the server was busy saved sends but made the one flusher thread,
    /// which the scheduler gives no more time than any session thread, the queue every
    /// private message waited in (docs/performance.md, "Writes batched on a busy server,
    /// then not").
    pub fn release_burst(self: &Arc<Self>, to_flusher: bool) {
        if to_flusher {
            self.flusher.hand_over(self);
        } else {
            self.flush_or_hand_over();
        }
    }

    /// Writes as much of the outbox as the socket takes now. Returns `Ok(true)` when the
    /// outbox is empty, or when another thread is sending it now (that thread also writes
    /// what is appended meanwhile). On `Ok(false)` (the socket is full) the caller must leave
    /// the outbox to the flusher: nobody else will, since others saw it being written.
    ///
    /// The send itself runs without the outbox's lock: the pending bytes are taken out and
    /// put back after, so the threads queueing lines for this client (a broadcast to a
    /// thousand) never wait for a syscall, or for a preempted flusher holding their lock.
    pub(super) fn flush_some(&self) -> io::Result<bool> {
        let mut outbox = self.outbox.lock();
        if outbox.writing {
            return Ok(true);
        }
        while !outbox.is_empty() {
            let (chunk, start) = outbox.take_for_send();
            drop(outbox);
            let result = send_nonblocking(&self.stream, &chunk[start..]);
            outbox = self.outbox.lock();
            let sent = *result.as_ref().unwrap_or(&0);
            outbox.put_back(chunk, start, sent);
            match result {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => outbox.stalled_since = Some(Instant::now()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        outbox.stalled_since = None;
        Ok(true)
    }

    /// Whether the outbox has been stuck for longer than its limit.
    pub(super) fn stalled(&self) -> bool {
        self.outbox
            .lock()
            .stalled_since
            .is_some_and(|t| t.elapsed() > self.limits.stall)
    }

    /// Waits (briefly) until everything queued has been handed to the kernel, so a final
    /// line is not lost when the connection closes right after it.
    pub fn wait_flushed(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.is_closed() && !self.outbox.lock().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A send that never blocks, whatever mode the socket is in.
pub(super) fn send_nonblocking(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match SockRef::from(stream).send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
