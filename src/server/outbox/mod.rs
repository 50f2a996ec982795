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

use super::rules::ChatEvent;
use super::tls_session::{Opened, TlsSession};
use crate::protocol::{Kind, Line};
use crate::store::Mail;
use burst::Hold;
use flusher::HandOver;
use parking_lot::{Mutex, MutexGuard};
use queue::Outbox;
use std::borrow::Cow;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use write::send_nonblocking;

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
        let Some((mut outbox, sealed)) = self.lock_sealed(bytes) else {
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
        mut outbox: MutexGuard<'_, Outbox>,
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

    /// Locks the outbox and seals `bytes` for it (TLS records, or the bytes themselves):
    /// `None` if the connection is closed, or if the TLS layer would not take them (the
    /// client is then dropped as one that does not read).
    fn lock_sealed<'b>(&self, bytes: &'b [u8]) -> Option<(MutexGuard<'_, Outbox>, Cow<'b, [u8]>)> {
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return None;
        }
        match outbox.seal(bytes) {
            Some(sealed) => Some((outbox, sealed)),
            None => {
                drop(outbox);
                self.drop_non_reader();
                None
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
        let Some((outbox, sealed)) = self.lock_sealed(bytes) else {
            return false;
        };
        if outbox.pending_len() + sealed.len() > self.limits.outbox_bytes {
            drop(outbox);
            self.drop_non_reader();
            return false;
        }
        self.append_locked(outbox, &sealed, mail, hold);
        true
    }

    /// Queues events without writing them yet, so that they are ordered before anything
    /// another thread sends afterwards. Only memory is touched: safe to call under the hub's
    /// lock. [`Conn::flush_now`] (or the flusher) writes them.
    pub fn enqueue_all(self: &Arc<Self>, events: &[ChatEvent]) {
        let encode = |e: &dyn Encoder, out: &mut Vec<u8>| {
            for event in events {
                e.encode_event(event, out);
            }
        };
        self.with_bytes(encode, |bytes| {
            let Some((outbox, sealed)) = self.lock_sealed(bytes) else {
                return;
            };
            // Inside its burst (a login) the burst's end writes it, if nobody did before:
            // no wake-up of the flusher for lines the caller is about to write.
            let hold = outbox.own_burst_hold();
            self.append_locked(outbox, &sealed, None, hold);
        });
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

mod mail;
mod write;

#[cfg(test)]
mod tests;
