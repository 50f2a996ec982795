//! One client connection's write side: a bounded outbox in front of the socket, so that a
//! sender never blocks on a recipient who reads slowly or not at all.
//!
//! Any thread may queue a line for any connection with [`Conn::send`]. The line is written
//! at once with a non-blocking send (`MSG_DONTWAIT`) if nothing is waiting ahead of it; what
//! does not fit stays in the outbox, and the [`Flusher`] thread finishes the write when
//! `poll(2)` says the socket is writable. Lines that arrive while bytes are waiting are
//! appended, so a busy recipient gets many lines per `send` syscall. A connection whose
//! outbox grows past its limit, or stays stuck past a deadline, is closed: its own thread
//! then wakes from its blocking read and logs the user out.
//!
//! What goes on the wire for a [`Line`] depends on the door the client came through: an
//! [`Encoder`] per connection turns lines into bytes (the native door's prose or tagged lines, or
//! framed/translated for other kinds of client), so the hub never needs to know.
//!
//! Each connection owns exactly one file descriptor (the `TcpStream` inside an `Arc<Conn>`,
//! never `try_clone`d) and the only per-connection thread is its reader.

use super::encoder::{Encoder, FanOut};
mod burst;
mod flusher;
mod queue;

pub use burst::{AfterBurst, Burst};
pub use flusher::Flusher;

use super::receipts::{self, Receipts};
use super::rules::ChatEvent;
use super::tls_session::{Opened, TlsSession};
use crate::protocol::{Kind, Line};
use crate::store::Mail;
use flusher::HandOver;
use parking_lot::{Mutex, MutexGuard};
use queue::Queue;
use socket2::SockRef;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a connection counts as stuck.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes the outbox may hold.
    pub outbox_bytes: usize,
    /// Longest time the outbox may stay non-empty without progress.
    pub stall: Duration,
}

/// From this many recipients on, a line for many (a broadcast to everyone online, a
/// presence notice) is queued for the flusher thread instead of written by the sender:
/// lines bound for one client then share a `send`. Fewer recipients are written at once,
/// which is quicker for each of them.
pub const FAN_OUT_QUEUED: usize = 8;

/// The most a thread's encoding buffer keeps between sends: a chat line or two fit, while
/// ten thousand idle connection threads keep at most this much each.
const KEPT_SCRATCH_BYTES: usize = 512;

thread_local! {
    /// Where this thread encodes lines on their way to an outbox (taken out while in use, so
    /// a nested send simply gets a new one).
    static ENCODE_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A connected client: its socket, address and outbox.
pub struct Conn {
    /// Unique per server run; lets a logout ignore a connection that was already replaced.
    pub id: u64,
    /// The client's address as the server sees it (lockouts are keyed by its IP).
    pub peer: SocketAddr,
    /// The one descriptor of this connection, read by its thread and written by anyone.
    stream: TcpStream,
    /// Bytes that could not be written yet.
    outbox: Mutex<Queue>,
    /// Set once the connection is being torn down; later sends are refused.
    closed: AtomicBool,
    /// Set once a `BYE` line was queued: the web door's encoder follows it with a WebSocket
    /// close, so the reader must not answer the browser's reply with a second one.
    said_bye: AtomicBool,
    /// Where to register for a flush when a write would block.
    flusher: HandOver,
    /// When the connection counts as stuck.
    limits: Limits,
    /// How lines become bytes for this client.
    encoder: Box<dyn Encoder>,
    /// Whether this connection is TLS (its record layer is in the outbox).
    tls: bool,
}

impl Conn {
    /// Wraps an accepted stream.
    pub fn new(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        flusher: &Flusher,
        limits: Limits,
        encoder: Box<dyn Encoder>,
    ) -> Arc<Conn> {
        Conn::new_tls(id, stream, peer, flusher, limits, encoder, None)
    }

    /// Wraps an accepted stream of a TLS door (`tls`: its server side, handshake not begun;
    /// `None` for a plain door).
    pub fn new_tls(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        flusher: &Flusher,
        limits: Limits,
        encoder: Box<dyn Encoder>,
        tls: Option<TlsSession>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            id,
            peer,
            stream,
            tls: tls.is_some(),
            outbox: Mutex::new(Queue {
                tls: tls.map(Box::new),
                ..Queue::default()
            }),
            closed: AtomicBool::new(false),
            said_bye: AtomicBool::new(false),
            flusher: flusher.hand_over.clone(),
            limits,
            encoder,
        })
    }

    /// Whether this connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Reads what the socket has (waiting up to its read timeout) and appends the plaintext
    /// to `buf`: as `capacity::read::read_some` for a plain connection. For TLS, records are
    /// decrypted and rustls' answers (handshake, alerts) queued; a read that carried no
    /// plaintext yet returns `Interrupted` (read again), end of file `Ok(0)`, a TLS error
    /// `InvalidData` (after its alert was sent).
    pub fn read_plain(self: &Arc<Self>, buf: &mut Vec<u8>) -> io::Result<usize> {
        if !self.tls {
            return super::capacity::read::read_some(&self.stream, buf);
        }
        let mut cipher = Vec::new();
        if super::capacity::read::read_some(&self.stream, &mut cipher)? == 0 {
            return Ok(0);
        }
        let before = buf.len();
        let mut answer = Vec::new();
        let mut outbox = self.outbox.lock();
        let opened = match outbox.tls.as_mut() {
            Some(tls) => tls.open(&cipher, buf, &mut answer),
            None => Ok(Opened::Open),
        };
        let was_empty = outbox.is_empty();
        if !answer.is_empty() && !self.is_closed() {
            outbox.push(&answer);
            if was_empty {
                outbox.stalled_since = Some(Instant::now());
            }
            drop(outbox);
            if was_empty {
                self.flush_or_hand_over();
            }
        } else {
            drop(outbox);
        }
        match opened {
            Err(e) => {
                log::debug!("conn {} ({}): TLS: {e}", self.id, self.peer);
                self.flush_now();
                Err(io::Error::new(ErrorKind::InvalidData, e))
            }
            Ok(_) if buf.len() > before => Ok(buf.len() - before),
            Ok(Opened::PeerClosed) => Ok(0),
            Ok(Opened::Open) => Err(ErrorKind::Interrupted.into()),
        }
    }

    /// The server's own address on this connection (which interface the client reached).
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.stream.local_addr().ok().map(|a| a.ip().to_canonical())
    }

    /// The socket, for this connection's own reader thread.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Calls `then` with the bytes that carry `lines` to this client, encoded into this
    /// thread's scratch buffer.
    fn with_encoded<R>(&self, lines: &[Line], then: impl FnOnce(&[u8]) -> R) -> R {
        self.with_bytes(
            |encoder, out| {
                for line in lines {
                    if line.kind == Kind::Bye {
                        self.said_bye.store(true, Ordering::Release);
                    }
                    encoder.encode(line, out);
                }
            },
            then,
        )
    }

    /// Calls `then` with the bytes `encode` appends with this client's encoder, in this
    /// thread's scratch buffer (a fresh `Vec` per send was one more allocation per message,
    /// and a fan-out to a thousand IRC clients grew a buffer per member).
    fn with_bytes<R>(
        &self,
        encode: impl FnOnce(&dyn Encoder, &mut Vec<u8>),
        then: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let mut out = ENCODE_SCRATCH.with(|s| s.take());
        encode(&*self.encoder, &mut out);
        let result = then(&out);
        out.clear();
        // A thread that once sent a long list does not keep its buffer.
        if out.capacity() <= KEPT_SCRATCH_BYTES {
            ENCODE_SCRATCH.with(|s| s.set(out));
        }
        result
    }

    /// Queues one protocol line; false if the connection is closed (the line was not sent).
    pub fn send(self: &Arc<Self>, line: &Line) -> bool {
        self.with_encoded(std::slice::from_ref(line), |b| self.send_bytes(b))
    }

    /// Queues what `event` is for this client; `from`: the connection whose client's line
    /// caused it (its open burst holds the write, see `burst`). False if the connection is
    /// closed.
    pub fn send_event(self: &Arc<Self>, event: &ChatEvent, from: Option<&Arc<Conn>>) -> bool {
        self.with_bytes(
            |e, out| e.encode_event(event, out),
            |b| self.send_inner(b, None, from),
        )
    }

    /// Queues one event of a fan-out (rendered once per distinct view, see [`FanOut`]); if
    /// `mail`, it must not be lost (as [`Conn::send_event_rescuable`]); if `queue`, the
    /// write is left to the flusher thread: lines that reach one client while its flush is
    /// pending then go out in one `send`, so a broadcaster pays a memory copy per recipient
    /// instead of a syscall, and many broadcasts in flight cost a syscall per recipient per
    /// flusher round, not per line. `from`: the sender's connection (its open burst holds
    /// the write, see `burst`). False if the connection is closed.
    pub fn send_fan_out(
        self: &Arc<Self>,
        fan_out: &FanOut<'_>,
        mail: Option<&Arc<Mail>>,
        queue: bool,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        let mail = mail.map(Arc::clone);
        self.with_bytes(
            |e, out| e.encode_fan_out(fan_out, out),
            |bytes| {
                if queue {
                    self.queue_bytes(bytes, mail, from)
                } else {
                    self.send_inner(bytes, mail, from)
                }
            },
        )
    }

    /// Queues one line delivered on behalf of `from`'s client, as [`Conn::send_event`]
    /// does (tests of bursts).
    #[cfg(test)]
    pub fn deliver(self: &Arc<Self>, line: &Line, from: Option<&Arc<Conn>>) -> bool {
        self.with_encoded(std::slice::from_ref(line), |b| {
            self.send_inner(b, None, from)
        })
    }

    /// Queues several lines with one write attempt.
    pub fn send_all(self: &Arc<Self>, lines: &[Line]) -> bool {
        self.with_encoded(lines, |b| self.send_bytes(b))
    }

    /// Queues a message line that must not be lost: if the connection dies before the line
    /// is written, [`Conn::take_unsent_mail`] hands `mail` back for the offline mailbox.
    /// `from`: the sender's connection (its open burst holds the write, see `burst`).
    pub fn send_rescuable(
        self: &Arc<Self>,
        line: &Line,
        mail: &Arc<Mail>,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        let mail = Arc::clone(mail);
        self.with_encoded(std::slice::from_ref(line), |b| {
            self.send_inner(b, Some(mail), from)
        })
    }

    /// Queues a message that must not be lost (as [`Conn::send_rescuable`]).
    /// `from`: the sender's connection (its open burst holds the write, see `burst`).
    pub fn send_event_rescuable(
        self: &Arc<Self>,
        event: &ChatEvent,
        mail: &Arc<Mail>,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        let mail = Arc::clone(mail);
        self.with_bytes(
            |e, out| e.encode_event(event, out),
            |b| self.send_inner(b, Some(mail), from),
        )
    }

    /// Messages queued with [`Conn::send_rescuable`] whose lines were never written.
    pub fn take_unsent_mail(&self) -> Vec<Mail> {
        // A send in flight may have delivered some of them: let it account for them first.
        self.wait_for_writer();
        let mut outbox = self.outbox.lock();
        outbox
            .rescue
            .drain(..)
            .map(|(_, m)| Arc::unwrap_or_clone(m))
            .collect()
    }

    /// Queues raw bytes, already in this client's wire format (no encoder applied).
    pub fn send_bytes(self: &Arc<Self>, bytes: &[u8]) -> bool {
        self.send_inner(bytes, None, None)
    }

    /// Queues bytes, written at once unless a burst holds them: this connection's own (its
    /// thread writes them at its end) or, for a delivery, the sender's (`from`).
    fn send_inner(
        self: &Arc<Self>,
        bytes: &[u8],
        mail: Option<Arc<Mail>>,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        if bytes.is_empty() {
            return !self.is_closed();
        }
        let from = from.filter(|f| f.id != self.id && f.burst_open());
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return false;
        }
        let Some(sealed) = outbox.seal(bytes) else {
            drop(outbox);
            self.drop_non_reader();
            return false;
        };
        // Inside a burst, the write waits for the end of the burst.
        let hold = match from {
            _ if outbox.burst.open => Hold::Own,
            Some(from) => Hold::Sender(from),
            None => Hold::None,
        };
        let mut rest = &*sealed;
        if outbox.is_empty() && matches!(hold, Hold::None) {
            match send_nonblocking(&self.stream, rest) {
                Ok(n) if n == rest.len() => {
                    outbox.written += n as u64;
                    outbox.queued += n as u64;
                    return true;
                }
                Ok(n) => {
                    outbox.written += n as u64;
                    outbox.queued += n as u64;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => {
                    drop(outbox);
                    log::debug!("conn {} ({}): write failed: {e}", self.id, self.peer);
                    self.close();
                    return false;
                }
            }
        }
        if outbox.pending_len() + rest.len() > self.limits.outbox_bytes {
            drop(outbox);
            self.drop_non_reader();
            return false;
        }
        self.append_locked(outbox, rest, mail, hold);
        true
    }

    /// Appends bytes to the locked outbox (with the message to rescue if they are never
    /// written) and, if it was empty, hands the connection to whoever finishes the write:
    /// as `hold` says: this connection's own burst, the sender's, or the flusher (if the
    /// flusher is gone, the server is stopping).
    fn append_locked(
        self: &Arc<Self>,
        mut outbox: MutexGuard<'_, Queue>,
        bytes: &[u8],
        mail: Option<Arc<Mail>>,
        hold: Hold<'_>,
    ) {
        let was_empty = outbox.is_empty();
        outbox.push(bytes);
        if let Some(mail) = mail {
            let end = outbox.queued;
            outbox.rescue.push_back((end, mail));
        }
        if was_empty {
            outbox.stalled_since = Some(Instant::now());
            drop(outbox);
            match hold {
                Hold::Own => {}
                Hold::Sender(from) => {
                    if !from.hold_for_burst(self) {
                        self.flusher.hand_over(self);
                    }
                }
                Hold::None => self.flusher.hand_over(self),
            }
        }
    }

    /// Closes a connection whose outbox would pass its limit: its client does not read.
    fn drop_non_reader(&self) {
        log::warn!(
            "conn {} ({}): outbox over {} bytes; dropping a client that does not read",
            self.id,
            self.peer,
            self.limits.outbox_bytes
        );
        self.close();
    }

    /// Queues a line for the flusher to write, as a fan-out with `queue` does (tests of
    /// the flusher and of bursts); `from` as for [`Conn::send_fan_out`].
    #[cfg(test)]
    pub fn queue_shared(
        self: &Arc<Self>,
        line: &Line,
        _native_wire: &str,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        self.with_encoded(std::slice::from_ref(line), |bytes| {
            self.queue_bytes(bytes, None, from)
        })
    }

    /// Appends bytes for the flusher to write (see [`Conn::send_fan_out`]), or for the end
    /// of the sender's burst if more of it is waiting (see `burst`).
    fn queue_bytes(
        self: &Arc<Self>,
        bytes: &[u8],
        mail: Option<Arc<Mail>>,
        from: Option<&Arc<Conn>>,
    ) -> bool {
        if bytes.is_empty() {
            return !self.is_closed();
        }
        let hold = match from {
            Some(from) if from.id != self.id && from.burst_holds_fan_out() => Hold::Sender(from),
            _ => Hold::None,
        };
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return false;
        }
        let sealed = outbox.seal(bytes);
        let Some(sealed) =
            sealed.filter(|b| outbox.pending_len() + b.len() <= self.limits.outbox_bytes)
        else {
            drop(outbox);
            self.drop_non_reader();
            return false;
        };
        self.append_locked(outbox, &sealed, mail, hold);
        true
    }

    /// Queues a line without writing it yet, so that it is ordered before anything another
    /// thread sends afterwards. Only memory is touched: safe to call under the hub's lock.
    /// [`Conn::flush_now`] (or the flusher) writes it.
    pub fn enqueue_all(self: &Arc<Self>, lines: &[Line]) {
        self.with_encoded(lines, |bytes| {
            let mut outbox = self.outbox.lock();
            if self.is_closed() {
                return;
            }
            let Some(sealed) = outbox.seal(bytes) else {
                drop(outbox);
                self.drop_non_reader();
                return;
            };
            // Inside its burst (a login) the burst's end writes it, if nobody did before:
            // no wake-up of the flusher for lines the caller is about to write.
            let hold = outbox.own_burst_hold();
            self.append_locked(outbox, &sealed, None, hold);
        });
    }

    /// [`Conn::enqueue_all`] for lines of which some carry mail from the mailbox:
    /// `mail_ids[i]` is the id of the mail `lines[i]` carries, if any. Such a mail stays in the
    /// mailbox until [`Conn::delivered_mail`] reports its line acknowledged. Besides memory,
    /// the first tracked mail of a connection costs two non-blocking syscalls (where the
    /// kernel's count of the socket's bytes stands).
    pub fn enqueue_tracked(self: &Arc<Self>, lines: &[Line], mail_ids: &[Option<String>]) {
        debug_assert_eq!(lines.len(), mail_ids.len());
        let mut ends = Vec::with_capacity(lines.len());
        let mut out = Vec::new();
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return;
        }
        // Each line is sealed on its own on a TLS connection, so that where its bytes end
        // on the wire is known (the receipts count wire bytes).
        let mut plain = Vec::new();
        for line in lines {
            plain.clear();
            self.encoder.encode(line, &mut plain);
            let Some(sealed) = outbox.seal(&plain) else {
                drop(outbox);
                self.drop_non_reader();
                return;
            };
            out.extend_from_slice(&sealed);
            ends.push(out.len() as u64);
        }
        let base = outbox.queued;
        let written = outbox.written;
        for (end, id) in ends.iter().zip(mail_ids) {
            if let Some(id) = id {
                outbox
                    .receipts
                    .get_or_insert_with(|| Receipts::new(&self.stream, written))
                    .expect(base + end, id.clone());
            }
        }
        let hold = outbox.own_burst_hold();
        self.append_locked(outbox, &out, None, hold);
    }

    /// Asks the kernel how much of the stream the peer's TCP has acknowledged, and counts
    /// the mailbox mails sent here whose lines that covers as delivered (see `receipts`).
    /// No syscall when none is waiting.
    pub fn note_delivered_mail(&self) {
        if !self.awaits_receipts() {
            return;
        }
        // Read outside the lock: the count only grows, so a late read only delays.
        if let Some(acked) = receipts::acknowledged(&self.stream) {
            if let Some(r) = self.outbox.lock().receipts.as_mut() {
                r.note_acknowledged(acked);
            }
        }
    }

    /// Takes the ids of the mails counted as delivered since the last call (for their
    /// removal from the mailbox).
    pub fn take_delivered_mail(&self) -> Vec<String> {
        self.outbox
            .lock()
            .receipts
            .as_mut()
            .map(Receipts::take_delivered)
            .unwrap_or_default()
    }

    /// Whether mailbox mails sent here still wait for their acknowledgement.
    pub fn awaits_receipts(&self) -> bool {
        self.outbox
            .lock()
            .receipts
            .as_ref()
            .is_some_and(Receipts::awaiting)
    }

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
    fn wait_for_writer(&self) {
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
    /// A burst for one or a few recipients is always written by its sender: handing it to the
    /// flusher when the server was busy (bursts ending less than 40 us apart) saved sends
    /// (0.62 -> 0.44 per message in pairs of 64) but made the one flusher thread, which the
    /// scheduler gives no more time than any session thread, the queue every private
    /// message waited in: pairs 64, alternating runs of both binaries, 82.4k -> 94.3k
    /// messages/s (median of 5) and p50 4.1 -> 2.3 ms once it was gone.
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
    fn flush_some(&self) -> io::Result<bool> {
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
    fn stalled(&self) -> bool {
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

    /// Whether a `BYE` line was queued for this client (its last word).
    pub fn said_bye(&self) -> bool {
        self.said_bye.load(Ordering::Acquire)
    }

    /// Whether the connection is being torn down.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Shuts the socket down both ways: queued bytes already in the kernel still go out, the
    /// connection's reader wakes with end-of-file, and later sends are refused.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// Sends a final line and closes (writing it first even inside a burst).
    pub fn close_with(self: &Arc<Self>, line: &Line) {
        self.send(line);
        self.flush_now();
        self.close();
    }
}

/// Who writes bytes appended to an empty outbox.
enum Hold<'a> {
    /// This connection's own thread, at the end of its open burst.
    Own,
    /// The sender's thread, at the end of the sender's open burst.
    Sender(&'a Arc<Conn>),
    /// The flusher.
    None,
}

impl Queue {
    /// How bytes queued now for this connection's own client wait: for its open burst's
    /// end, or for the flusher.
    fn own_burst_hold(&self) -> Hold<'static> {
        if self.burst.open {
            Hold::Own
        } else {
            Hold::None
        }
    }
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
    fn burst_open(&self) -> bool {
        self.outbox.lock().burst.open
    }

    /// Whether another line of the burst was already received when this one was read.
    fn burst_more_coming(&self) -> bool {
        self.outbox.lock().burst.more_coming
    }

    /// Whether a fan-out this connection's client causes now waits for its burst's end.
    fn burst_holds_fan_out(&self) -> bool {
        let outbox = self.outbox.lock();
        outbox.burst.open && outbox.burst.more_coming
    }

    /// Remembers `other`, whose outbox a delivery of this burst left waiting, for the end of
    /// the burst.
    /// False if the burst is no longer open (its release may be over: the caller hands
    /// `other` to the flusher instead).
    fn hold_for_burst(&self, other: &Arc<Conn>) -> bool {
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

/// A send that never blocks, whatever mode the socket is in.
fn send_nonblocking(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match SockRef::from(stream).send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
