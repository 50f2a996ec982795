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
//! [`Encoder`] per connection turns lines into bytes (the native line protocol as is, or
//! framed/translated for other kinds of client), so the hub never needs to know.
//!
//! Each connection owns exactly one file descriptor (the `TcpStream` inside an `Arc<Conn>`,
//! never `try_clone`d) and the only per-connection thread is its reader.

use crate::protocol::Line;
use crate::store::Mail;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, MutexGuard};
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Bytes waiting to be written to one socket.
#[derive(Default)]
struct Outbox {
    /// Unwritten bytes; `buf[start..]` is what is left.
    buf: Vec<u8>,
    /// How much of `buf` has been written already.
    start: usize,
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
}

impl Outbox {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.queued += bytes.len() as u64;
    }

    fn consume(&mut self, n: usize) {
        self.written += n as u64;
        while self
            .rescue
            .front()
            .is_some_and(|(end, _)| *end <= self.written)
        {
            self.rescue.pop_front();
        }
        self.start += n;
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

/// Turns protocol lines into the bytes one kind of client reads.
pub trait Encoder: Send + Sync {
    /// Appends the bytes that carry `line` to `out` (nothing, if this client has no use for
    /// it).
    fn encode(&self, line: &Line, out: &mut Vec<u8>);

    /// Whether [`Encoder::encode`] is exactly [`Line::to_wire`], so that one formatted line
    /// can be shared by many recipients (broadcasts).
    fn is_native(&self) -> bool {
        false
    }

    /// The encoder as `Any`, for a door whose session keeps state in its encoder (the IRC
    /// door's nick and capabilities).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// The native line protocol: each line as PROTOCOL.md spells it.
pub struct NativeEncoder;

impl Encoder for NativeEncoder {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        line.write_wire(out);
    }

    fn is_native(&self) -> bool {
        true
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
    /// Where to register for a flush when a write would block.
    flusher: Sender<Arc<Conn>>,
    /// Whether the server is busy enough that a burst's writes should wait for the flusher.
    pace: Arc<Pace>,
    /// When the connection counts as stuck.
    limits: Limits,
    /// How lines become bytes for this client.
    encoder: Box<dyn Encoder>,
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
        Arc::new(Conn {
            id,
            peer,
            stream,
            outbox: Mutex::new(Outbox::default()),
            closed: AtomicBool::new(false),
            flusher: flusher.sender.clone(),
            pace: Arc::clone(&flusher.pace),
            limits,
            encoder,
        })
    }

    /// The server's own address on this connection (which interface the client reached).
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.stream.local_addr().ok().map(|a| a.ip().to_canonical())
    }

    /// The socket, for this connection's own reader thread.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// How lines become bytes for this client.
    pub fn encoder(&self) -> &dyn Encoder {
        &*self.encoder
    }

    /// The bytes that carry `lines` to this client.
    fn encode(&self, lines: &[Line]) -> Vec<u8> {
        // Sized for the usual encoding at once (it used to grow four times per message).
        let estimate: usize = lines
            .iter()
            .map(|l| l.text.len() + l.args.iter().map(|a| a.len() + 1).sum::<usize>() + 16)
            .sum();
        let mut out = Vec::with_capacity(estimate);
        for line in lines {
            self.encoder.encode(line, &mut out);
        }
        out
    }

    /// Queues one protocol line; false if the connection is closed (the line was not sent).
    pub fn send(self: &Arc<Self>, line: &Line) -> bool {
        self.send_bytes(&self.encode(std::slice::from_ref(line)))
    }

    /// Queues one line that many recipients get, given its native wire form already
    /// formatted once by the caller.
    pub fn send_shared(self: &Arc<Self>, line: &Line, native_wire: &str) -> bool {
        if self.encoder.is_native() {
            self.send_bytes(native_wire.as_bytes())
        } else {
            self.send(line)
        }
    }

    /// Queues several lines with one write attempt.
    pub fn send_all(self: &Arc<Self>, lines: &[Line]) -> bool {
        self.send_bytes(&self.encode(lines))
    }

    /// Queues a message line that must not be lost: if the connection dies before the line
    /// is written, [`Conn::take_unsent_mail`] hands `mail` back for the offline mailbox.
    pub fn send_rescuable(self: &Arc<Self>, line: &Line, mail: &Arc<Mail>) -> bool {
        let mail = Arc::clone(mail);
        self.send_inner(&self.encode(std::slice::from_ref(line)), Some(mail))
    }

    /// Messages queued with [`Conn::send_rescuable`] whose lines were never written.
    pub fn take_unsent_mail(&self) -> Vec<Mail> {
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
        // Inside a burst (see `cork`), the write waits for the end of the burst.
        let corked = super::cork::is_active();
        let mut rest = bytes;
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
        if outbox.pending().len() + rest.len() > self.limits.outbox_bytes {
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
                let _ = self.flusher.send(Arc::clone(self));
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

    /// Like [`Conn::send_shared`], but leaves the write to the flusher thread: for fan-out.
    /// Lines that reach one client while its flush is pending then go out in one `send`, so
    /// a broadcaster pays a memory copy per recipient instead of a syscall, and many
    /// broadcasts in flight cost a syscall per recipient per flusher round, not per line.
    /// The outbox limit applies as for [`Conn::send`]. False if the connection is closed.
    pub fn queue_shared(self: &Arc<Self>, line: &Line, native_wire: &str) -> bool {
        self.queue_bytes(&self.encode_shared(line, native_wire), None)
    }

    /// A line for many that must not be lost (a group message): like
    /// [`Conn::send_rescuable`], but given its native wire form formatted once by the
    /// caller, and left to the flusher if `queue` (as [`Conn::queue_shared`] does).
    pub fn send_shared_rescuable(
        self: &Arc<Self>,
        line: &Line,
        native_wire: &str,
        mail: &Arc<Mail>,
        queue: bool,
    ) -> bool {
        let bytes = self.encode_shared(line, native_wire);
        let mail = Some(Arc::clone(mail));
        if queue {
            self.queue_bytes(&bytes, mail)
        } else {
            self.send_inner(&bytes, mail)
        }
    }

    /// This client's bytes for a line whose native form is `native_wire`.
    fn encode_shared<'a>(&self, line: &Line, native_wire: &'a str) -> std::borrow::Cow<'a, [u8]> {
        if self.encoder.is_native() {
            native_wire.as_bytes().into()
        } else {
            self.encode(std::slice::from_ref(line)).into()
        }
    }

    /// Appends bytes for the flusher to write (see [`Conn::queue_shared`]).
    fn queue_bytes(self: &Arc<Self>, bytes: &[u8], mail: Option<Arc<Mail>>) -> bool {
        if bytes.is_empty() {
            return !self.is_closed();
        }
        let outbox = self.outbox.lock();
        if self.is_closed() {
            return false;
        }
        if outbox.pending().len() + bytes.len() > self.limits.outbox_bytes {
            drop(outbox);
            self.drop_non_reader();
            return false;
        }
        self.append_locked(outbox, bytes, mail, false);
        true
    }

    /// Queues a line without writing it yet, so that it is ordered before anything another
    /// thread sends afterwards. Only memory is touched: safe to call under the hub's lock.
    /// [`Conn::flush_now`] (or the flusher) writes it.
    pub fn enqueue_all(self: &Arc<Self>, lines: &[Line]) {
        let corked = super::cork::is_active();
        let outbox = self.outbox.lock();
        if self.is_closed() {
            return;
        }
        // Inside a corked burst (a login) the burst's end writes it, if nobody did before:
        // no wake-up of the flusher for lines the caller is about to write itself.
        self.append_locked(outbox, &self.encode(lines), None, corked);
    }

    /// Writes what is queued now, from the calling thread, as far as the socket takes it.
    pub fn flush_now(&self) {
        if let Err(e) = self.flush_some() {
            log::debug!("conn {} ({}): flush failed: {e}", self.id, self.peer);
            self.close();
        }
    }

    /// Writes what is queued now from the calling thread, and hands what the socket does not
    /// take to the flusher (the end of a corked burst).
    pub fn flush_or_hand_over(self: &Arc<Self>) {
        match self.flush_some() {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.flusher.send(Arc::clone(self));
            }
            Err(e) => {
                log::debug!("conn {} ({}): flush failed: {e}", self.id, self.peer);
                self.close();
            }
        }
    }

    /// The end of a corked burst: writes the outbox now if the server is quiet, or leaves it
    /// to the flusher if it is busy (see [`Pace`]), so that what other threads add to it
    /// meanwhile leaves in the same `send`.
    pub fn release_burst(self: &Arc<Self>, busy: bool) {
        if busy {
            let _ = self.flusher.send(Arc::clone(self));
        } else {
            self.flush_or_hand_over();
        }
    }

    /// Whether the server counts as busy for the burst ending now (see [`Pace`]).
    pub fn burst_ends_busy(&self) -> bool {
        self.pace.burst_ends()
    }

    /// Writes as much of the outbox as the socket takes now. Returns `Ok(true)` when the
    /// outbox is empty.
    fn flush_some(&self) -> io::Result<bool> {
        let mut outbox = self.outbox.lock();
        while !outbox.is_empty() {
            match send_nonblocking(&self.stream, outbox.pending()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    outbox.consume(n);
                    outbox.stalled_since = Some(Instant::now());
                }
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

/// How busy the server is, for where a burst's writes go.
///
/// A session thread that writes its own burst pays one `send` per recipient per burst. When
/// many clients talk at once (a class chatting hard, the pairs benchmark), bursts follow
/// each other back to back on the same cores and most recipients get lines from several of
/// them: left to the flusher, which runs once the senders' threads have had their turn,
/// each recipient's lines from all of them leave in one `send` (pairs of 64: 0.8 sends per
/// message -> 0.3, measured with `perf stat`). On a quieter server the hand-over only adds
/// the flusher's wake-up to a line's way (p50 with 1,000 users chatting at 10,000
/// messages/s: 110 -> 250 us, measured), so a burst is written at once unless bursts have
/// been ending less than [`BUSY_GAP_NS`] apart on average.
#[derive(Debug)]
pub struct Pace {
    /// When the last burst ended, in nanoseconds since `epoch`.
    last_burst_ns: AtomicU64,
    /// A moving average of the time between burst ends (weight 1/8 for the newest).
    average_gap_ns: AtomicU64,
    /// The clock's origin.
    epoch: Instant,
}

/// Bursts ending this close together on average mean the cores are busy with nothing but
/// bursts one after another (each costs 10-30 us of CPU here): the server is saturated and
/// batching writes is worth a wake-up.
pub const BUSY_GAP_NS: u64 = 40_000;

/// Gaps count as at most this long, so that a burst of traffic after a quiet hour counts as
/// busy within a few dozen bursts.
const MAX_GAP_NS: u64 = 1_000_000;

impl Pace {
    fn new() -> Pace {
        Pace {
            last_burst_ns: AtomicU64::new(0),
            average_gap_ns: AtomicU64::new(MAX_GAP_NS),
            epoch: Instant::now(),
        }
    }

    /// Records that a burst ends now; true if the server counts as busy. The updates race
    /// between threads; an average that is a little off only moves one burst's writes.
    fn burst_ends(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let gap = now.saturating_sub(self.last_burst_ns.swap(now, Ordering::Relaxed));
        let average = self.average_gap_ns.load(Ordering::Relaxed);
        let average = average - average / 8 + gap.min(MAX_GAP_NS) / 8;
        self.average_gap_ns.store(average, Ordering::Relaxed);
        average < BUSY_GAP_NS
    }
}

/// The shared thread that finishes writes which did not fit in a socket's buffer.
pub struct Flusher {
    /// Connections with bytes waiting are sent here.
    sender: Sender<Arc<Conn>>,
    /// Shared with every connection: how busy the server is.
    pace: Arc<Pace>,
    /// Taken by the flusher thread when it starts.
    receiver: Mutex<Option<Receiver<Arc<Conn>>>>,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher::new()
    }
}

impl Flusher {
    /// A flusher whose thread has not started yet.
    pub fn new() -> Flusher {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Flusher {
            sender,
            pace: Arc::new(Pace::new()),
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Starts the flusher thread. It runs until `stop` is set and the queue is empty.
    pub fn spawn(&self, stop: Arc<AtomicBool>) -> io::Result<std::thread::JoinHandle<()>> {
        let receiver = self
            .receiver
            .lock()
            .take()
            .ok_or_else(|| io::Error::other("flusher already started"))?;
        std::thread::Builder::new()
            .name("lanchat-flusher".into())
            .spawn(move || flush_loop(&receiver, &stop))
    }
}

fn flush_loop(receiver: &Receiver<Arc<Conn>>, stop: &AtomicBool) {
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
        wait_writable(&waiting, Duration::from_millis(50));
    }
}

/// Waits until one of the sockets is writable, or the timeout passes.
#[allow(unsafe_code)]
fn wait_writable(conns: &[Arc<Conn>], timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
    // for the duration of the call, and every descriptor stays open because `conns` holds
    // an `Arc` to each connection.
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

    #[test]
    fn bursts_back_to_back_count_as_busy_and_spaced_ones_do_not() {
        let pace = Pace::new();
        // Spaced well apart (a conversation, a quiet class): written at once.
        for _ in 0..20 {
            assert!(!pace.burst_ends(), "a quiet server writes bursts itself");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Back to back (a saturated core): after a few, left to the flusher.
        let busy = (0..200).filter(|_| pace.burst_ends()).count();
        assert!(
            busy > 150,
            "only {busy} of 200 back-to-back bursts counted as busy"
        );
        // And quiet again once the bursts are spaced out.
        for _ in 0..40 {
            pace.burst_ends();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!pace.burst_ends());
    }
}
