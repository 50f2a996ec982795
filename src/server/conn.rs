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
use super::receipts::{self, Receipts};
use super::rules::ChatEvent;
use super::tls_session::{Opened, TlsSession};
use crate::protocol::{Kind, Line};
use crate::store::Mail;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, MutexGuard};
use socket2::SockRef;
use std::borrow::Cow;
use std::collections::VecDeque;
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

/// The most an emptied outbox keeps for its next line.
const KEPT_OUTBOX_BYTES: usize = 256;

/// The most a thread's encoding buffer keeps between sends: a chat line or two fit, while
/// ten thousand idle connection threads keep at most this much each.
const KEPT_SCRATCH_BYTES: usize = 512;

thread_local! {
    /// Where this thread encodes lines on their way to an outbox (taken out while in use, so
    /// a nested send simply gets a new one).
    static ENCODE_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Bytes waiting to be written to one socket.
#[derive(Default)]
struct Outbox {
    /// Unwritten bytes; `buf[start..]` is what is left.
    buf: Vec<u8>,
    /// How much of `buf` has been written already.
    start: usize,
    /// Bytes taken out by a thread that is sending them now, without the lock (see
    /// [`Conn::flush_some`]); 0 when nobody is.
    in_flight: usize,
    /// Whether a thread is sending this outbox's bytes now: the outbox then counts as not
    /// empty, so nobody else writes (lines stay in order) and that thread writes what is
    /// appended meanwhile.
    writing: bool,
    /// When the outbox last made progress while non-empty (for the stall deadline).
    stalled_since: Option<Instant>,
    /// Bytes ever handed to the kernel (absolute offsets for `rescue`).
    written: u64,
    /// Bytes ever queued.
    queued: u64,
    /// Messages that must not be lost, with the absolute offset where each one's line ends:
    /// if the connection dies before that offset is written, the message goes back to the
    /// user's offline mailbox.
    rescue: VecDeque<(u64, Arc<Mail>)>,
    /// Mailbox mails sent on this connection, until the peer's TCP acknowledged their lines
    /// (`None` until the first one: most connections never send any).
    receipts: Option<Receipts>,
    /// A TLS door's record layer: what is queued is encrypted on its way in, so the outbox
    /// holds ciphertext (see `tls_session`).
    tls: Option<Box<TlsSession>>,
}

impl Outbox {
    /// Bytes not yet handed to the kernel, those being sent now included.
    fn pending_len(&self) -> usize {
        self.buf.len() - self.start + self.in_flight
    }

    fn is_empty(&self) -> bool {
        self.start == self.buf.len() && !self.writing
    }

    /// The bytes that carry `plain` on the wire: itself, or its TLS records. `None` if the
    /// TLS layer would not take it (too much queued before the handshake ended).
    fn seal<'a>(&mut self, plain: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self.tls.as_mut() {
            None => Some(Cow::Borrowed(plain)),
            Some(tls) => {
                let mut out = Vec::with_capacity(plain.len() + 64);
                tls.seal(plain, &mut out).then_some(Cow::Owned(out))
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.queued += bytes.len() as u64;
    }

    /// Takes the pending bytes out for a send without the lock: `(buffer, start)`.
    fn take_for_send(&mut self) -> (Vec<u8>, usize) {
        let chunk = std::mem::take(&mut self.buf);
        let start = std::mem::take(&mut self.start);
        self.in_flight = chunk.len() - start;
        self.writing = true;
        (chunk, start)
    }

    /// Puts a taken buffer back after `sent` of its bytes went out: its unsent rest goes in
    /// front of whatever was appended meanwhile, and the rescues now written are dropped.
    fn put_back(&mut self, mut chunk: Vec<u8>, start: usize, sent: usize) {
        self.writing = false;
        self.in_flight = 0;
        let appended = std::mem::take(&mut self.buf);
        let rest = start + sent;
        if rest == chunk.len() {
            chunk.clear();
            // Keep whichever buffer holds bytes (or the one with room, if neither does).
            self.buf = if appended.is_empty() { chunk } else { appended };
            self.start = 0;
        } else {
            chunk.extend_from_slice(&appended);
            self.buf = chunk;
            self.start = rest;
        }
        self.written += sent as u64;
        while self
            .rescue
            .front()
            .is_some_and(|(end, _)| *end <= self.written)
        {
            self.rescue.pop_front();
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            // An emptied outbox gives its memory back: a burst (the presence notices of a
            // class logging in) must not leave ten thousand idle users holding buffers
            // (it did at 4 KiB: 3.4 KiB each of 3,000 users held theirs after a login).
            if self.buf.capacity() > KEPT_OUTBOX_BYTES {
                self.buf = Vec::new();
            }
        }
    }
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
    outbox: Mutex<Outbox>,
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
            outbox: Mutex::new(Outbox {
                tls: tls.map(Box::new),
                ..Outbox::default()
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
    /// to `buf`: as `reader::read_some` for a plain connection. For TLS, records are
    /// decrypted and rustls' answers (handshake, alerts) queued; a read that carried no
    /// plaintext yet returns `Interrupted` (read again), end of file `Ok(0)`, a TLS error
    /// `InvalidData` (after its alert was sent).
    pub fn read_plain(self: &Arc<Self>, buf: &mut Vec<u8>) -> io::Result<usize> {
        if !self.tls {
            return super::reader::read_some(&self.stream, buf);
        }
        let mut cipher = Vec::new();
        if super::reader::read_some(&self.stream, &mut cipher)? == 0 {
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

    /// Queues what `event` is for this client; false if the connection is closed.
    pub fn send_event(self: &Arc<Self>, event: &ChatEvent) -> bool {
        self.with_bytes(|e, out| e.encode_event(event, out), |b| self.send_bytes(b))
    }

    /// Queues one event of a fan-out (rendered once per distinct view, see [`FanOut`]); if
    /// `mail`, it must not be lost (as [`Conn::send_event_rescuable`]); if `queue`, the
    /// write is left to the flusher thread: lines that reach one client while its flush is
    /// pending then go out in one `send`, so a broadcaster pays a memory copy per recipient
    /// instead of a syscall, and many broadcasts in flight cost a syscall per recipient per
    /// flusher round, not per line. False if the connection is closed.
    pub fn send_fan_out(
        self: &Arc<Self>,
        fan_out: &FanOut<'_>,
        mail: Option<&Arc<Mail>>,
        queue: bool,
    ) -> bool {
        let mail = mail.map(Arc::clone);
        self.with_bytes(
            |e, out| e.encode_fan_out(fan_out, out),
            |bytes| {
                if queue {
                    self.queue_bytes(bytes, mail)
                } else {
                    self.send_inner(bytes, mail)
                }
            },
        )
    }

    /// Queues several lines with one write attempt.
    pub fn send_all(self: &Arc<Self>, lines: &[Line]) -> bool {
        self.with_encoded(lines, |b| self.send_bytes(b))
    }

    /// Queues a message line that must not be lost: if the connection dies before the line
    /// is written, [`Conn::take_unsent_mail`] hands `mail` back for the offline mailbox.
    pub fn send_rescuable(self: &Arc<Self>, line: &Line, mail: &Arc<Mail>) -> bool {
        let mail = Arc::clone(mail);
        self.with_encoded(std::slice::from_ref(line), |b| {
            self.send_inner(b, Some(mail))
        })
    }

    /// Queues a message that must not be lost (as [`Conn::send_rescuable`]).
    pub fn send_event_rescuable(self: &Arc<Self>, event: &ChatEvent, mail: &Arc<Mail>) -> bool {
        let mail = Arc::clone(mail);
        self.with_bytes(
            |e, out| e.encode_event(event, out),
            |b| self.send_inner(b, Some(mail)),
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
        self.send_inner(bytes, None)
    }

    fn send_inner(self: &Arc<Self>, bytes: &[u8], mail: Option<Arc<Mail>>) -> bool {
        if bytes.is_empty() {
            return !self.is_closed();
        }
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return false;
        }
        let Some(sealed) = outbox.seal(bytes) else {
            drop(outbox);
            self.drop_non_reader();
            return false;
        };
        // Inside a burst (see `cork`), the write waits for the end of the burst.
        let corked = super::cork::is_active();
        let mut rest = &*sealed;
        if outbox.is_empty() && !corked {
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
        self.append_locked(outbox, rest, mail, corked);
        true
    }

    /// Appends bytes to the locked outbox (with the message to rescue if they are never
    /// written) and, if it was empty, hands the connection to whoever finishes the write:
    /// this thread's cork if `corked`, else the flusher (if the flusher is gone, the server
    /// is stopping).
    fn append_locked(
        self: &Arc<Self>,
        mut outbox: MutexGuard<'_, Outbox>,
        bytes: &[u8],
        mail: Option<Arc<Mail>>,
        corked: bool,
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
            if !(corked && super::cork::hold_conn(self)) {
                self.flusher.hand_over(self);
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
    /// the flusher and of corking).
    #[cfg(test)]
    pub fn queue_shared(self: &Arc<Self>, line: &Line, _native_wire: &str) -> bool {
        self.with_encoded(std::slice::from_ref(line), |bytes| {
            self.queue_bytes(bytes, None)
        })
    }

    /// Appends bytes for the flusher to write (see [`Conn::send_fan_out`]), or for the end
    /// of the burst if more of it is waiting (see `cork::holds_fan_out`).
    fn queue_bytes(self: &Arc<Self>, bytes: &[u8], mail: Option<Arc<Mail>>) -> bool {
        if bytes.is_empty() {
            return !self.is_closed();
        }
        let corked = super::cork::holds_fan_out();
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
        self.append_locked(outbox, &sealed, mail, corked);
        true
    }

    /// Queues a line without writing it yet, so that it is ordered before anything another
    /// thread sends afterwards. Only memory is touched: safe to call under the hub's lock.
    /// [`Conn::flush_now`] (or the flusher) writes it.
    pub fn enqueue_all(self: &Arc<Self>, lines: &[Line]) {
        let corked = super::cork::is_active();
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
            // Inside a corked burst (a login) the burst's end writes it, if nobody did
            // before: no wake-up of the flusher for lines the caller is about to write.
            self.append_locked(outbox, &sealed, None, corked);
        });
    }

    /// [`Conn::enqueue_all`] for lines of which some carry mail from the mailbox:
    /// `mail_ids[i]` is the id of the mail `lines[i]` carries, if any. Such a mail stays in the
    /// mailbox until [`Conn::delivered_mail`] reports its line acknowledged. Besides memory,
    /// the first tracked mail of a connection costs two non-blocking syscalls (where the
    /// kernel's count of the socket's bytes stands).
    pub fn enqueue_tracked(self: &Arc<Self>, lines: &[Line], mail_ids: &[Option<String>]) {
        debug_assert_eq!(lines.len(), mail_ids.len());
        let corked = super::cork::is_active();
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
        self.append_locked(outbox, &out, None, corked);
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
    /// take to the flusher (the end of a corked burst).
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

    /// The end of a corked burst: the outbox is written now by the calling thread, or, for
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

    /// Sends a final line and closes (writing it first even inside a corked burst).
    pub fn close_with(self: &Arc<Self>, line: &Line) {
        self.send(line);
        self.flush_now();
        self.close();
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

/// How a connection hands its outbox to the flusher.
#[derive(Clone)]
struct HandOver {
    sender: Sender<Arc<Conn>>,
    /// Interrupts the flusher's wait on full sockets (`None` if no eventfd could be made).
    wake: Option<Arc<FlusherWake>>,
}

impl HandOver {
    fn hand_over(&self, conn: &Arc<Conn>) {
        let _ = self.sender.send(Arc::clone(conn));
        if let Some(wake) = &self.wake {
            wake.notify();
        }
    }
}

/// An eventfd in the flusher's `poll` set, written when work is handed over while it waits
/// for full sockets to drain: without it, one client that stopped reading (a laptop on bad
/// Wi-Fi) kept the flusher in a 50 ms `poll` on its socket, and every other client's
/// fan-out waited for that `poll` to end.
struct FlusherWake {
    fd: std::os::fd::OwnedFd,
    /// Set while the flusher is (about to be) in `poll`; only then is the eventfd written.
    polling: AtomicBool,
}

impl FlusherWake {
    #[allow(unsafe_code)]
    fn new() -> Option<Arc<FlusherWake>> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            log::warn!(
                "flusher: no eventfd ({}); a stalled client may delay others' writes by 50 ms",
                io::Error::last_os_error()
            );
            return None;
        }
        Some(Arc::new(FlusherWake {
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            polling: AtomicBool::new(false),
        }))
    }

    /// Called after a hand-over: ends the flusher's `poll` if it is in one; only the first
    /// of a fan-out's thousand hand-overs pays the `write`. (SeqCst pairs with the
    /// flusher's store before it checks its queue: either it sees the new work or this sees
    /// it polling.)
    #[allow(unsafe_code)]
    fn notify(&self) {
        if self.polling.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live local array to a descriptor this owns. A
            // full counter (EAGAIN) means the flusher is being woken already.
            unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    one.as_ptr().cast(),
                    8,
                )
            };
        }
    }

    /// Resets the counter after a `poll`; true if it was written (work was handed over).
    #[allow(unsafe_code)]
    fn clear(&self) -> bool {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local array from a descriptor this
        // owns; non-blocking, so an unset counter just fails with EAGAIN.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                count.as_mut_ptr().cast(),
                8,
            )
        };
        n == 8
    }
}

/// The shared thread that finishes writes which did not fit in a socket's buffer.
pub struct Flusher {
    /// What each connection is given to send its outbox here (and end the flusher's wait
    /// on full sockets).
    hand_over: HandOver,
    /// Taken by the flusher thread when it starts.
    receiver: Mutex<Option<Receiver<Arc<Conn>>>>,
    /// The longest it waits on full sockets before trying them again.
    poll_timeout: Duration,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher::new()
    }
}

impl Flusher {
    /// A flusher whose thread has not started yet.
    pub fn new() -> Flusher {
        Flusher::with_poll_timeout(Duration::from_millis(50))
    }

    /// A flusher that waits at most `poll_timeout` on full sockets (tests make it long, so
    /// that only a wake-up can end the wait early).
    fn with_poll_timeout(poll_timeout: Duration) -> Flusher {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Flusher {
            hand_over: HandOver {
                sender,
                wake: FlusherWake::new(),
            },
            receiver: Mutex::new(Some(receiver)),
            poll_timeout,
        }
    }

    /// Starts the flusher thread. It runs until `stop` is set and the queue is empty.
    pub fn spawn(&self, stop: Arc<AtomicBool>) -> io::Result<std::thread::JoinHandle<()>> {
        let receiver = self
            .receiver
            .lock()
            .take()
            .ok_or_else(|| io::Error::other("flusher already started"))?;
        let wake = self.hand_over.wake.clone();
        let poll_timeout = self.poll_timeout;
        std::thread::Builder::new()
            .name("lanchat-flusher".into())
            .spawn(move || flush_loop(&receiver, &stop, wake.as_deref(), poll_timeout))
    }
}

fn flush_loop(
    receiver: &Receiver<Arc<Conn>>,
    stop: &AtomicBool,
    wake: Option<&FlusherWake>,
    poll_timeout: Duration,
) {
    let mut waiting: Vec<Arc<Conn>> = Vec::new();
    loop {
        if waiting.is_empty() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match receiver.try_recv() {
                Ok(c) => waiting.push(c),
                Err(_) => match receiver.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => waiting.push(c),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                },
            }
            // A new round: let the threads that queued lines finish the ones they have
            // already read (on a busy core they would wait behind this round), so each
            // client gets them in one send instead of one send per line.
            std::thread::yield_now();
        }
        waiting.extend(receiver.try_iter());
        waiting.sort_by_key(|c| c.id);
        waiting.dedup_by_key(|c| c.id);
        // Write first; wait only for the sockets that did not take everything.
        waiting.retain(|conn| {
            if conn.is_closed() {
                return false;
            }
            match conn.flush_some() {
                Ok(true) => false,
                Ok(false) if conn.stalled() => {
                    log::warn!(
                        "conn {} ({}): no write progress for {:?}; dropping it",
                        conn.id,
                        conn.peer,
                        conn.limits.stall
                    );
                    conn.close();
                    false
                }
                Ok(false) => true,
                Err(e) => {
                    log::debug!("conn {} ({}): flush failed: {e}", conn.id, conn.peer);
                    conn.close();
                    false
                }
            }
        });
        if waiting.is_empty() {
            continue;
        }
        if stop.load(Ordering::Acquire) && waiting.iter().all(|c| c.is_closed()) {
            return;
        }
        if let Some(wake) = wake {
            wake.polling.store(true, Ordering::SeqCst);
            if receiver.is_empty() {
                wait_writable(&waiting, Some(&wake.fd), poll_timeout);
            }
            wake.polling.store(false, Ordering::SeqCst);
            if wake.clear() {
                // As at a new round: let the thread handing work over finish queueing
                // (a fan-out queues for each member in turn) before this round starts.
                std::thread::yield_now();
            }
        } else {
            wait_writable(&waiting, None, poll_timeout);
        }
    }
}

/// Waits until one of the sockets is writable, `wake` is readable, or the timeout passes.
#[allow(unsafe_code)]
fn wait_writable(conns: &[Arc<Conn>], wake: Option<&std::os::fd::OwnedFd>, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .chain(wake.map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }))
        .collect();
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
    // for the duration of the call, and every descriptor stays open because `conns` holds
    // an `Arc` to each connection and the flusher holds its eventfd.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if rc < 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::encoder::NativeEncoder;

    fn mail(text: &str) -> Arc<Mail> {
        Arc::new(Mail {
            from: "alice".into(),
            sent_at: 0,
            kind: crate::store::MailKind::Private,
            text: text.into(),
            id: crate::store::new_mail_id(),
        })
    }

    #[test]
    fn a_send_in_flight_keeps_order_with_what_is_appended_meanwhile() {
        let mut outbox = Outbox::default();
        outbox.push(b"one\n");
        outbox.rescue.push_back((outbox.queued, mail("one")));
        outbox.push(b"two\n");
        outbox.rescue.push_back((outbox.queued, mail("two")));
        let (chunk, start) = outbox.take_for_send();
        assert!(!outbox.is_empty(), "a send in flight counts as pending");
        assert_eq!(outbox.pending_len(), 8);
        // Appended while the bytes are out: goes behind them.
        outbox.push(b"three\n");
        // Only "one\n" and half of "two\n" made it.
        outbox.put_back(chunk, start, 6);
        assert_eq!(&outbox.buf[outbox.start..], b"o\nthree\n");
        assert_eq!(outbox.written, 6);
        let left: Vec<&str> = outbox.rescue.iter().map(|(_, m)| &*m.text).collect();
        assert_eq!(
            left,
            ["two"],
            "the message fully written is no longer rescued"
        );

        // The rest goes out whole: the outbox is empty and its rescues gone.
        let (chunk, start) = outbox.take_for_send();
        let n = chunk.len() - start;
        outbox.put_back(chunk, start, n);
        assert!(outbox.is_empty());
        assert!(outbox.rescue.is_empty());
        assert_eq!(outbox.written, outbox.queued);
    }

    #[test]
    fn a_client_that_stopped_reading_does_not_hold_up_the_flusher_for_the_others() {
        use std::io::Read;
        use std::net::TcpListener;
        // The flusher waits a minute on full sockets here: only its wake-up ends it sooner.
        let flusher = Flusher::with_poll_timeout(Duration::from_secs(60));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = Limits {
            outbox_bytes: 64 << 20,
            stall: Duration::from_secs(120),
        };
        let connect = |id| {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, peer) = listener.accept().unwrap();
            let _ = SockRef::from(&server).set_send_buffer_size(4096);
            let conn = Conn::new(id, server, peer, &flusher, limits, Box::new(NativeEncoder));
            (conn, client)
        };
        let (stalled, _never_read) = connect(1);
        let (other, mut other_client) = connect(2);
        // Far more than the sockets hold: the flusher is left waiting on this one.
        let big = Line::info("n", "x".repeat(4000));
        for _ in 0..1000 {
            assert!(stalled.queue_shared(&big, &big.to_wire()));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            stalled.outbox.lock().pending_len() > 0,
            "the socket is full"
        );

        let line = Line::info("n", "for the others");
        assert!(other.queue_shared(&line, &line.to_wire()));
        other_client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = vec![0u8; 64];
        let n = other_client
            .read(&mut got)
            .expect("written long before the flusher's minute-long wait ends");
        assert_eq!(&got[..n], b"INFO n for the others\n");

        stalled.close();
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
    }

    #[test]
    fn many_threads_queueing_while_the_flusher_sends_lose_and_reorder_nothing() {
        use std::io::{BufRead, BufReader};
        use std::net::TcpListener;
        let flusher = Flusher::new();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // A small send buffer, so sends are partial and would block now and then.
        let _ = SockRef::from(&server).set_send_buffer_size(4096);
        let limits = Limits {
            outbox_bytes: 64 << 20,
            stall: Duration::from_secs(10),
        };
        let conn = Conn::new(9, server, peer, &flusher, limits, Box::new(NativeEncoder));
        const SENDERS: usize = 4;
        const LINES: usize = 3000;
        let senders: Vec<_> = (0..SENDERS)
            .map(|t| {
                let conn = Arc::clone(&conn);
                std::thread::spawn(move || {
                    for i in 0..LINES {
                        let line = Line::info("n", format!("{t} {i}"));
                        // Every path: written at once when nothing waits, queued for the
                        // flusher, or queued and flushed by this thread (as a login does).
                        match i % 3 {
                            0 => assert!(conn.send(&line)),
                            1 => assert!(conn.queue_shared(&line, &line.to_wire())),
                            _ => {
                                conn.enqueue_all(std::slice::from_ref(&line));
                                conn.flush_now();
                            }
                        }
                    }
                })
            })
            .collect();
        let mut reader = BufReader::new(client);
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut next = [0usize; SENDERS];
        let mut line = String::new();
        for _ in 0..SENDERS * LINES {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let mut words = line.split_whitespace().skip(2);
            let t: usize = words.next().unwrap().parse().unwrap();
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(
                i, next[t],
                "sender {t}'s lines in order, none lost or repeated"
            );
            next[t] += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(next, [LINES; SENDERS]);
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
    }
}
