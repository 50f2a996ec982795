//! Offline mail leaves the mailbox when it is delivered, not when it is sent.
//!
//! At login the mailbox is read, sent, and left on disk; the connection notes where each
//! mail's line ends in its output (`Conn::enqueue_tracked`). The janitor calls
//! [`Hub::settle_mail`] every tenth of a second: the mails whose lines the client's TCP has
//! acknowledged are removed from the mailbox by id, gathered for at most [`REMOVE_EVERY`]
//! per connection (at once when the whole delivery is acknowledged or the connection ends),
//! so that a client reading slowly costs an fsync a second, not ten. A connection that ends (logout, reset, a server killed) with mail not yet
//! acknowledged leaves it in the mailbox, and the next login sends it again with the same
//! id, which clients drop if they showed it already.
//!
//! A closed connection stays watched for [`AFTER_CLOSE`]: its socket is still open in the
//! watch list, so the kernel goes on sending what was queued, and the acknowledgements that
//! arrive meanwhile still count (a logout right after the mail arrived would otherwise send
//! it all again next time).

use super::Hub;
use crate::server::outbox::Conn;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a closed connection's late acknowledgements are still waited for.
const AFTER_CLOSE: Duration = Duration::from_secs(10);

/// Longest a delivered mail waits, with the others delivered meanwhile, for its removal.
const REMOVE_EVERY: Duration = Duration::from_secs(1);

/// One connection that sent mailbox mail not yet known to be delivered.
struct Watched {
    /// Whose mailbox the mail is in.
    user: String,
    /// The connection (holding its socket open while watched).
    conn: Arc<Conn>,
    /// When it was first seen closed.
    closed_at: Option<Instant>,
    /// When its delivered mail was last removed (or the watch began).
    removed_at: Instant,
}

/// The connections whose mailbox mail waits for its acknowledgement.
#[derive(Default)]
pub(super) struct Deliveries {
    /// Watched connections; short (one entry per login with mail, until delivered).
    watched: Mutex<Vec<Watched>>,
}

impl Hub {
    /// Watches `conn`, which was just sent `user`'s mailbox, until its mail is delivered.
    pub(super) fn watch_delivery(&self, user: &str, conn: &Arc<Conn>) {
        self.shared.deliveries.watched.lock().push(Watched {
            user: user.to_owned(),
            conn: Arc::clone(conn),
            closed_at: None,
            removed_at: Instant::now(),
        });
    }

    /// Removes from the mailboxes the mail whose delivery was acknowledged since the last
    /// round, and stops watching connections with nothing left to wait for (or closed for
    /// longer than [`AFTER_CLOSE`]). Called by the janitor; cheap when nothing is watched.
    pub fn settle_mail(&self) {
        let watched = std::mem::take(&mut *self.shared.deliveries.watched.lock());
        if watched.is_empty() {
            return;
        }
        let mut still = Vec::with_capacity(watched.len());
        for mut w in watched {
            w.conn.note_delivered_mail();
            let finished = !w.conn.awaits_receipts();
            let due = finished || w.conn.is_closed() || w.removed_at.elapsed() >= REMOVE_EVERY;
            if due {
                self.remove_delivered_now(&w.user, &w.conn);
                w.removed_at = Instant::now();
            }
            if finished {
                continue;
            }
            if w.conn.is_closed() {
                let closed_at = *w.closed_at.get_or_insert_with(Instant::now);
                if closed_at.elapsed() > AFTER_CLOSE {
                    log::info!(
                        "{}: connection {} ended before all offline mail was acknowledged; \
                         the rest is kept for the next login",
                        w.user,
                        w.conn.id
                    );
                    continue;
                }
            }
            still.push(w);
        }
        // Watched meanwhile (a login during this round) go after the ones kept.
        let mut list = self.shared.deliveries.watched.lock();
        still.append(&mut list);
        *list = still;
    }

    /// Removes from `user`'s mailbox the mail `conn` delivered so far (at logout, before a
    /// new login can read the mailbox).
    pub(super) fn remove_delivered(&self, user: &str, conn: &Conn) {
        conn.note_delivered_mail();
        self.remove_delivered_now(user, conn);
    }

    /// Removes from `user`'s mailbox the mails `conn` counted as delivered. They are taken
    /// from the connection under the store's lock, so no login reads them in between.
    fn remove_delivered_now(&self, user: &str, conn: &Conn) {
        if let Err(e) = self
            .shared
            .store
            .remove_mail_with(user, || conn.take_delivered_mail())
        {
            // Kept, so sent again at the next login with the same ids: a repeat, not a loss.
            log::error!("store: could not remove delivered mail of {user}: {e}");
        }
    }
}
