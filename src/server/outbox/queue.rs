//! The bytes waiting to be written to one socket, with what rides on them: the messages to
//! hand back to the mailbox if they are never written, the mailbox mails awaiting the
//! peer's acknowledgement, and a TLS door's record layer. Memory only: the socket is
//! written by [`super::Conn`].

use super::burst::{BurstState, Hold};
use crate::server::receipts::Receipts;
use crate::server::tls_session::TlsSession;
use crate::store::Mail;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// The most an emptied outbox keeps for its next line.
const KEPT_OUTBOX_BYTES: usize = 256;

/// Bytes waiting to be written to one socket.
#[derive(Default)]
pub(super) struct Outbox {
    /// Unwritten bytes; `buf[start..]` is what is left.
    pub(super) buf: Vec<u8>,
    /// How much of `buf` has been written already.
    pub(super) start: usize,
    /// Bytes taken out by a thread that is sending them now, without the lock (see
    /// [`Conn::flush_some`]); 0 when nobody is.
    pub(super) in_flight: usize,
    /// Whether a thread is sending this outbox's bytes now: the outbox then counts as not
    /// empty, so nobody else writes (lines stay in order) and that thread writes what is
    /// appended meanwhile.
    pub(super) writing: bool,
    /// When the outbox last made progress while non-empty (for the stall deadline).
    pub(super) stalled_since: Option<Instant>,
    /// Bytes ever handed to the kernel (absolute offsets for `rescue`).
    pub(super) written: u64,
    /// Bytes ever queued.
    pub(super) queued: u64,
    /// Messages that must not be lost, with the absolute offset where each one's line ends:
    /// if the connection dies before that offset is written, the message goes back to the
    /// user's offline mailbox.
    pub(super) rescue: VecDeque<(u64, Arc<Mail>)>,
    /// Mailbox mails sent on this connection, until the peer's TCP acknowledged their lines
    /// (`None` until the first one: most connections never send any).
    pub(super) receipts: Option<Receipts>,
    /// A TLS door's record layer: what is queued is encrypted on its way in, so the outbox
    /// holds ciphertext (see `tls_session`).
    pub(super) tls: Option<Box<TlsSession>>,
    /// The connection's burst (see `burst`): under this lock, so a line queued by another
    /// thread sees it either open or closed.
    pub(super) burst: BurstState,
}

impl Outbox {
    /// Bytes not yet handed to the kernel, those being sent now included.
    pub(super) fn pending_len(&self) -> usize {
        self.buf.len() - self.start + self.in_flight
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.buf.len() && !self.writing
    }

    /// The bytes that carry `plain` on the wire: itself, or its TLS records. `None` if the
    /// TLS layer would not take it (too much queued before the handshake ended).
    pub(super) fn seal<'a>(&mut self, plain: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self.tls.as_mut() {
            None => Some(Cow::Borrowed(plain)),
            Some(tls) => {
                let mut out = Vec::with_capacity(plain.len() + 64);
                tls.seal(plain, &mut out).then_some(Cow::Owned(out))
            }
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.queued += bytes.len() as u64;
    }

    /// Takes the pending bytes out for a send without the lock: `(buffer, start)`.
    pub(super) fn take_for_send(&mut self) -> (Vec<u8>, usize) {
        let chunk = std::mem::take(&mut self.buf);
        let start = std::mem::take(&mut self.start);
        self.in_flight = chunk.len() - start;
        self.writing = true;
        (chunk, start)
    }

    /// Puts a taken buffer back after `sent` of its bytes went out: its unsent rest goes in
    /// front of whatever was appended meanwhile, and the rescues now written are dropped.
    pub(super) fn put_back(&mut self, mut chunk: Vec<u8>, start: usize, sent: usize) {
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

impl Outbox {
    /// How bytes queued now for this connection's own client wait: for its open burst's
    /// end, or for the flusher.
    pub(super) fn own_burst_hold(&self) -> Hold<'static> {
        if self.burst.open {
            Hold::Own
        } else {
            Hold::None
        }
    }
}
