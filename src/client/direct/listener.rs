//! The receiving side of direct messages: the listener, its per-connection threads, and
//! the reporter thread that rate-limits their warnings.
//!
//! ```text
//!   accept (0.0.0.0 and [::]) ─► Admission: refused ─► closed at once, a Note
//!                                 │ admitted (maybe closing an older one to make room)
//!                                 ▼
//!                               one thread: greeting, PRIVATE line, MAC ─► ClientEvent::Direct
//!                                 │ all within DEADLINE of the accept; refusals, time-outs
//!                                 ▼
//!                               Notes ─► reporter thread (Warnings) ─► log::warn!, rate-limited
//! ```
//!
//! Every connection is unauthenticated until its one line is verified, so each is bounded:
//! [`DEADLINE`] from accept to a verified message, and [`admission`](super::admission)'s
//! caps on how many are served at once, per address and in all. The accept loop never
//! waits on a connection.

use super::admission::{Admission, AdmissionLimits, Ticket, Verdict};
use super::warnings::Warnings;
use super::wire::{
    greeting, new_nonce, parse_private, read_line, verify, LineRead, ReadDeadline, MAX_LINE_BYTES,
};
use super::Book;
use crate::client::ClientEvent;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an incoming connection has, from its accept, to deliver a verified message. A
/// peer on the LAN needs a few milliseconds; someone holding connections open gets this.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// How long a served connection may spend draining after its answer (see [`drain`]).
const DRAIN: Duration = Duration::from_secs(1);
/// Warnings waiting for the reporter; past this they are dropped (the flood is counted
/// well enough without them).
const NOTES_QUEUED: usize = 1024;
/// How often the reporter checks whether a summary is due when nothing happens.
const REPORT_TICK: Duration = Duration::from_secs(1);

/// Something to warn the user about, for the reporter.
struct Note {
    /// Where the connection came from.
    from: SocketAddr,
    /// The line, if it is shown on its own.
    line: String,
    /// Why, for a summary.
    reason: &'static str,
}

/// The connections being served, and how to close one to make room.
struct Slots {
    /// The rules.
    admission: Admission,
    /// A handle on each served connection, to shut it down when it must make room.
    streams: HashMap<Ticket, TcpStream>,
}

/// What the accept loops and connection threads share.
struct ListenerShared {
    /// This client's user: the `to` of every MAC.
    me: String,
    /// Who may send, and with which secret.
    book: Book,
    /// Where verified messages go.
    events: Sender<ClientEvent>,
    /// The connections being served.
    slots: Mutex<Slots>,
    /// Warnings for the reporter thread.
    notes: Sender<Note>,
}

impl ListenerShared {
    /// Queues a warning; dropped when the reporter is far behind.
    fn note(&self, from: SocketAddr, line: String, reason: &'static str) {
        let _ = self.notes.try_send(Note { from, line, reason });
    }
}

/// Gives a connection's slot back when its thread ends (or was never started).
struct ConnectionSlot {
    /// The listener's state.
    shared: Arc<ListenerShared>,
    /// The connection's ticket.
    ticket: Ticket,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut slots = self.shared.slots.lock();
        slots.admission.finished(self.ticket);
        slots.streams.remove(&self.ticket);
    }
}

/// An IPv6-only listener on `[::]:port`, so it can share the port with the IPv4 one.
fn bind_v6(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

/// Starts listening for direct messages to `me` on `port` (0: any free port) on every IPv4
/// address and, when the system allows, every IPv6 address; returns the port. Verified
/// messages arrive on `events` as [`ClientEvent::Direct`].
pub(crate) fn listen(
    port: u16,
    me: &str,
    book: &Book,
    events: &Sender<ClientEvent>,
) -> io::Result<u16> {
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    let port = v4.local_addr()?.port();
    let mut listeners = vec![v4];
    match bind_v6(port) {
        Ok(v6) => listeners.push(v6),
        Err(e) => log::debug!("direct messages over IPv6 unavailable: {e}"),
    }
    let (notes, reports) = crossbeam_channel::bounded(NOTES_QUEUED);
    std::thread::Builder::new()
        .name("direct-warnings".into())
        .spawn(move || report(&reports))?;
    let shared = Arc::new(ListenerShared {
        me: me.to_string(),
        book: book.clone(),
        events: events.clone(),
        slots: Mutex::new(Slots {
            admission: Admission::new(AdmissionLimits::DEFAULT),
            streams: HashMap::new(),
        }),
        notes,
    });
    for listener in listeners {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("direct-listen".into())
            .spawn(move || accept_loop(&listener, &shared))?;
    }
    Ok(port)
}

/// The reporter: shows the warnings [`Warnings`] lets through, and its summaries when due.
fn report(notes: &Receiver<Note>) {
    let mut warnings = Warnings::new();
    loop {
        let shown = match notes.recv_timeout(REPORT_TICK) {
            Ok(note) => warnings.note(Instant::now(), note.from.ip(), note.line, note.reason),
            Err(RecvTimeoutError::Timeout) => warnings.flush(Instant::now()),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if let Some(line) = shown {
            log::warn!("{line}");
        }
    }
}

/// Accepts connections for as long as the process runs; each admitted one gets a thread.
fn accept_loop(listener: &TcpListener, shared: &Arc<ListenerShared>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, or the peer gave up already: try again shortly.
                log::debug!("accepting a direct connection: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let accepted = Instant::now();
        let Ok(from) = stream.peer_addr() else {
            continue;
        };
        if let Some(slot) = admit(shared, &stream, from) {
            let shared = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("direct-in".into())
                .spawn(move || {
                    let _slot = slot;
                    serve(stream, &shared, from, accepted + DEADLINE);
                });
            if let Err(e) = spawned {
                log::warn!("cannot start a thread for a direct connection: {e}");
            }
        }
    }
}

/// Asks [`Admission`] about a new connection from `from`: its slot, or `None` when it is
/// refused (and then closed by the caller). Closes the connection it displaces, if any.
fn admit(
    shared: &Arc<ListenerShared>,
    stream: &TcpStream,
    from: SocketAddr,
) -> Option<ConnectionSlot> {
    let known = shared.book.has_peer_at(from.ip());
    let mut slots = shared.slots.lock();
    let (ticket, evict) = match slots.admission.admit(from.ip(), known) {
        Verdict::Admit { ticket, evict } => (ticket, evict),
        Verdict::Refuse(why) => {
            drop(slots);
            let line = format!(
                "refused a direct connection from {from}: {}",
                why.describe()
            );
            shared.note(from, line, why.describe());
            return None;
        }
    };
    let evicted = evict.and_then(|gone| slots.streams.remove(&gone));
    let admitted = match stream.try_clone() {
        Ok(handle) => {
            slots.streams.insert(ticket, handle);
            true
        }
        Err(e) => {
            log::debug!("direct connection from {from}: {e}");
            slots.admission.finished(ticket);
            false
        }
    };
    drop(slots);
    if let Some(evicted) = evicted {
        // Its thread's read returns at once, and the thread gives the slot back.
        let _ = evicted.shutdown(Shutdown::Both);
        if let Ok(peer) = evicted.peer_addr() {
            let reason = "closed to make room for connections from other addresses";
            shared.note(
                peer,
                format!("closed a direct connection from {peer}: {reason}"),
                reason,
            );
        }
    }
    admitted.then(|| ConnectionSlot {
        shared: Arc::clone(shared),
        ticket,
    })
}

/// Why an incoming message was not accepted.
enum DirectRefusal {
    /// Answer `ERR <code> <reply>`; warn with `why`.
    Refuse {
        code: &'static str,
        reply: &'static str,
        why: String,
    },
    /// The connection failed, or its time ran out; nothing to answer.
    Io(io::Error),
}

impl DirectRefusal {
    fn refuse(code: &'static str, reply: &'static str, why: impl Into<String>) -> DirectRefusal {
        DirectRefusal::Refuse {
            code,
            reply,
            why: why.into(),
        }
    }
}

/// The receiving side of one connection, up to a verified message, all by `by`: greets,
/// reads the `PRIVATE` line, looks the sender up in `book` and checks the MAC for `me`.
fn receive(
    stream: &TcpStream,
    me: &str,
    book: &Book,
    by: Instant,
) -> Result<(String, String), DirectRefusal> {
    let left = by
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(left))
        .map_err(DirectRefusal::Io)?;
    let nonce = new_nonce();
    (&*stream)
        .write_all(greeting(&nonce).as_bytes())
        .map_err(DirectRefusal::Io)?;
    let mut input = ReadDeadline { stream, by };
    let bytes = match read_line(&mut input, MAX_LINE_BYTES).map_err(DirectRefusal::Io)? {
        LineRead::Line(bytes) => bytes,
        LineRead::TooLong => {
            return Err(DirectRefusal::refuse(
                "too-long",
                "the line is too long",
                "a line over the size limit",
            ))
        }
        LineRead::Closed => return Err(DirectRefusal::Io(io::ErrorKind::UnexpectedEof.into())),
    };
    let bad = || {
        DirectRefusal::refuse(
            "bad-request",
            "expected PRIVATE FROM MAC TEXT",
            "a malformed line",
        )
    };
    let line = String::from_utf8(bytes).map_err(|_| bad())?;
    let private = parse_private(&line).ok_or_else(bad)?;
    let refused = "not in the address book, or a bad signature";
    // Both sides learn of a new pairing from the server at about the same moment; give our
    // own `ADDR granted` a moment (within the deadline) to arrive before refusing a sender
    // we do not know yet.
    let wait_until = (Instant::now() + Duration::from_secs(1)).min(by);
    let mut known = book.get(private.from);
    while known.is_none() && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(50));
        known = book.get(private.from);
    }
    let Some(peer) = known else {
        return Err(DirectRefusal::refuse(
            "refused",
            refused,
            format!("{} is not in the address book", private.from),
        ));
    };
    if !verify(
        &peer.secret,
        &nonce,
        private.from,
        me,
        private.text,
        &private.mac,
    ) {
        return Err(DirectRefusal::refuse(
            "refused",
            refused,
            format!("a wrong MAC for {}", private.from),
        ));
    }
    let Some(text) = super::seal::open(&peer.secret, &nonce, private.from, me, private.text) else {
        return Err(DirectRefusal::refuse(
            "refused",
            refused,
            format!("a message from {} that does not open", private.from),
        ));
    };
    Ok((private.from.to_string(), text))
}

/// Whether `e` is a read or write that ran out of time.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Serves one incoming connection from `from`, which must deliver its message `by`, and
/// closes it.
fn serve(stream: TcpStream, shared: &ListenerShared, from: SocketAddr, by: Instant) {
    match receive(&stream, &shared.me, &shared.book, by) {
        Ok((sender, text)) => {
            let _ = shared
                .events
                .send(ClientEvent::Direct { from: sender, text });
            if let Err(e) = (&stream).write_all(b"OK delivered\n") {
                log::debug!("direct message from {from}: answering: {e}");
            }
        }
        Err(DirectRefusal::Refuse { code, reply, why }) => {
            let line = format!("refused a direct message from {from}: {why}");
            shared.note(from, line, "messages refused");
            let _ = (&stream).write_all(format!("ERR {code} {reply}\n").as_bytes());
        }
        Err(DirectRefusal::Io(e)) if timed_out(&e) => {
            let reason = "no message within the time allowed";
            let line = format!(
                "closed a direct connection from {from}: {reason} ({} s)",
                DEADLINE.as_secs()
            );
            shared.note(from, line, reason);
        }
        Err(DirectRefusal::Io(e)) => log::debug!("direct connection from {from}: {e}"),
    }
    drain(&stream);
}

/// Says we are done and reads what the peer sent that was never read (a line cut off at the
/// limit), briefly, so closing sends FIN rather than RST, which could destroy our reply
/// before the peer reads it.
fn drain(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut input = ReadDeadline {
        stream,
        by: Instant::now() + DRAIN,
    };
    let mut sink = [0u8; 8192];
    let mut left = 2 * MAX_LINE_BYTES;
    while left > 0 {
        match input.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests;
