//! The mail a connection carries: messages handed back to the mailbox if their line was
//! never written, and mailbox mails that leave the mailbox only once the peer's TCP
//! acknowledged their line (`receipts`).

use super::Conn;
use crate::server::receipts::{self, Receipts};
use crate::server::rules::ChatEvent;
use crate::store::Mail;
use std::sync::Arc;

impl Conn {
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

    /// [`Conn::enqueue_all`] for events of which some carry mail from the mailbox:
    /// `mail_ids[i]` is the id of the mail `events[i]` carries, if any. Such a mail stays in the
    /// mailbox until [`Conn::delivered_mail`] reports its line acknowledged. Besides memory,
    /// the first tracked mail of a connection costs two non-blocking syscalls (where the
    /// kernel's count of the socket's bytes stands).
    pub fn enqueue_tracked(self: &Arc<Self>, events: &[ChatEvent], mail_ids: &[Option<String>]) {
        debug_assert_eq!(events.len(), mail_ids.len());
        let mut ends = Vec::with_capacity(events.len());
        let mut out = Vec::new();
        let mut outbox = self.outbox.lock();
        if self.is_closed() {
            return;
        }
        // Each event is sealed on its own on a TLS connection, so that where its bytes end
        // on the wire is known (the receipts count wire bytes).
        let mut plain = Vec::new();
        for event in events {
            plain.clear();
            self.encoder.encode_event(event, &mut plain);
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
}
