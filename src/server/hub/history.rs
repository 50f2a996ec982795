//! The conversation logs' writer: one thread appends every history entry, so that no
//! session thread ever waits for the disk on a message's way.
//!
//! Every private message and chat-session line is logged to `history/<a>+<b>.log`. Written
//! by the sender's thread, that `write(2)` was a third of its syscalls, and when ext4 was
//! busy (a journal commit, writeback) it held the sender's next line for up to a few
//! hundred milliseconds: the worst latencies with 1,000 users chatting. Here a session
//! thread only queues the entry (a memory copy) before its line is delivered; the writer
//! wakes, takes everything queued and writes each conversation's entries with one `write`,
//! so a busy server pays one syscall per conversation per round instead of one per burst.
//!
//! Order and visibility: an entry is queued before the line that carries it is put in any
//! outbox, and entries are written in queue order, so a reply is never logged ahead of the
//! message it answers. [`HistoryWriter::wait_written`] returns once everything queued
//! before it is in the files: a `history` read calls it first, so whoever has seen a
//! message finds it in the history. A clean shutdown writes what is queued; `kill -9`
//! loses at most the round in progress (history is a record, not an acknowledgement:
//! nothing is fsynced, as before).

use crate::store::{HistoryRef, Mail, Store};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One entry waiting for its log: the line, and who it was said to (the conversation is
/// the sender's and `peer`'s).
pub struct Pending {
    /// The other side of the conversation.
    pub peer: String,
    /// When it was said (unix seconds).
    pub at: u64,
    /// The chat session it was said in, if any.
    pub session: Option<u32>,
    /// Who said what.
    pub said: Said,
}

/// Who said what, in a pending entry.
pub enum Said {
    /// A private message: its mail, shared with the delivery (nothing copied).
    Mail(Arc<Mail>),
    /// A chat-session line.
    Line {
        /// Username of the speaker.
        sender: String,
        /// The line.
        text: String,
    },
}

impl Pending {
    /// Who said it.
    pub fn sender(&self) -> &str {
        match &self.said {
            Said::Mail(mail) => &mail.from,
            Said::Line { sender, .. } => sender,
        }
    }

    /// The entry as the log stores it.
    fn entry(&self) -> HistoryRef<'_> {
        let (sender, text) = match &self.said {
            Said::Mail(mail) => (&*mail.from, &*mail.text),
            Said::Line { sender, text } => (&**sender, &**text),
        };
        HistoryRef {
            at: self.at,
            session: self.session,
            sender,
            text,
        }
    }
}

/// What the writer has been given and how far it got.
#[derive(Default)]
struct Queue {
    /// Entries not yet taken by the writer, in the order they were said.
    entries: Vec<Pending>,
    /// Entries ever queued.
    queued: u64,
    /// Entries ever written (or failed and logged).
    written: u64,
    /// Set when the writer should write what is left and stop.
    stop: bool,
    /// Whether the writer is waiting for entries (and must be woken for the next one).
    idle: bool,
    /// `wait_written` callers waiting now: the writer does not linger for more entries.
    readers: usize,
}

/// How long the writer lets entries gather once the first one is queued: one `write` per
/// conversation per round, and one wake-up of the writer per round, not per line. A
/// `history` read does not wait for it. 10 ms rather than 2: pairs 64 spent a tenth of the
/// server's CPU in this thread, most of it ext4's cost per `write`; side by side, 2.4 % more
/// messages relayed at 2.2 % less CPU each. A `kill -9` loses at most this much history.
const ROUND: Duration = Duration::from_millis(10);

struct Inner {
    queue: Mutex<Queue>,
    /// The writer waits here for entries.
    work: Condvar,
    /// `wait_written` callers wait here for the writer's progress.
    progress: Condvar,
}

/// The history writer thread and its queue (see the module doc).
pub struct HistoryWriter {
    inner: Arc<Inner>,
    store: Arc<Store>,
    /// `None` if the thread could not be started: entries are then written by the caller.
    thread: Option<JoinHandle<()>>,
}

impl HistoryWriter {
    /// Starts the writer thread for `store`'s history files.
    pub fn start(store: Arc<Store>) -> HistoryWriter {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let thread = {
            let (inner, store) = (Arc::clone(&inner), Arc::clone(&store));
            std::thread::Builder::new()
                .name("lanchat-history".into())
                .spawn(move || write_loop(&inner, &store))
                .map_err(|e| log::error!("cannot start the history writer (writing inline): {e}"))
                .ok()
        };
        HistoryWriter {
            inner,
            store,
            thread,
        }
    }

    /// Queues an entry for its log (entries are written in the order queued); true if the
    /// writer sleeps and must be woken with [`HistoryWriter::wake`]. A corked session
    /// thread wakes it only after its lines have left: on a quiet server the writer's
    /// wake-up would otherwise run (and switch the core) between a message and its delivery.
    pub fn queue(&self, entry: Pending) -> bool {
        if self.thread.is_none() {
            write_round(&self.store, vec![entry]);
            return false;
        }
        let mut q = self.inner.queue.lock();
        q.queued += 1;
        q.entries.push(entry);
        std::mem::replace(&mut q.idle, false)
    }

    /// Wakes the writer for what [`HistoryWriter::queue`] left it.
    pub fn wake(&self) {
        self.inner.work.notify_one();
    }

    /// Returns once every entry queued before this call is written to its file.
    pub fn wait_written(&self) {
        let mut q = self.inner.queue.lock();
        let target = q.queued;
        if q.written >= target || self.thread.is_none() {
            return;
        }
        q.readers += 1;
        self.inner.work.notify_one();
        while q.written < target {
            self.inner.progress.wait(&mut q);
        }
        q.readers -= 1;
    }
}

impl Drop for HistoryWriter {
    /// Writes what is still queued, then stops the thread.
    fn drop(&mut self) {
        self.inner.queue.lock().stop = true;
        self.inner.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(inner: &Inner, store: &Store) {
    loop {
        let (entries, upto) = {
            let mut q = inner.queue.lock();
            while q.entries.is_empty() {
                if q.stop {
                    return;
                }
                q.idle = true;
                inner.work.wait(&mut q);
            }
            q.idle = false;
            if !q.stop && q.readers == 0 {
                // Woken early (by a reader or shutdown) is fine: it only ends the round.
                inner.work.wait_for(&mut q, ROUND);
            }
            (std::mem::take(&mut q.entries), q.queued)
        };
        write_round(store, entries);
        inner.queue.lock().written = upto;
        inner.progress.notify_all();
    }
}

/// Writes one round's entries: each conversation's with one append, in the order said.
fn write_round(store: &Store, entries: Vec<Pending>) {
    for ((a, b), said) in by_conversation(entries) {
        let lines: Vec<HistoryRef<'_>> = said.iter().map(Pending::entry).collect();
        if let Err(e) = store.append_history_refs(&a, &b, &lines) {
            log::error!("store: history {a}/{b}: {e}");
        }
    }
}

/// Entries grouped by conversation (its sorted name pair), each conversation's in the order
/// they were said, conversations in the order of their first entry. Grouped through a hash
/// of the name pair: sorting a round of a busy server's entries by name pair was a third of
/// this thread's time (users named alike compare long prefixes). No entry's names are
/// copied (two Strings per conversation, none per line). The writer locks one log at a time,
/// so the order of conversations does not matter.
fn by_conversation(entries: Vec<Pending>) -> Vec<((String, String), Vec<Pending>)> {
    fn pair(p: &Pending) -> (&str, &str) {
        let (a, b) = (p.sender(), p.peer.as_str());
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    }
    // Which group each entry goes to, found while the entries are still borrowed.
    let mut group_of_entry = Vec::with_capacity(entries.len());
    let mut names: Vec<(String, String)> = Vec::new();
    {
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for p in &entries {
            let key = pair(p);
            let next = index.len();
            let group = *index.entry(key).or_insert_with(|| {
                names.push((key.0.to_string(), key.1.to_string()));
                next
            });
            group_of_entry.push(group);
        }
    }
    let mut groups: Vec<((String, String), Vec<Pending>)> =
        names.into_iter().map(|n| (n, Vec::new())).collect();
    for (p, group) in entries.into_iter().zip(group_of_entry) {
        groups[group].1.push(p);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line `sender` said to `peer`.
    fn pending(peer: &str, (at, sender, text): (u64, &str, &str)) -> Pending {
        Pending {
            peer: peer.into(),
            at,
            session: None,
            said: Said::Line {
                sender: sender.into(),
                text: text.into(),
            },
        }
    }

    fn entry<'a>(at: u64, sender: &'a str, text: &'a str) -> (u64, &'a str, &'a str) {
        (at, sender, text)
    }

    #[test]
    fn entries_are_grouped_by_conversation_in_the_order_said() {
        let groups = by_conversation(vec![
            pending("alice", entry(1, "bob", "one")),
            pending("alice", entry(2, "carol", "two")),
            pending("bob", entry(3, "alice", "three")),
        ]);
        let texts: Vec<(String, Vec<&str>)> = groups
            .iter()
            .map(|((a, b), l)| {
                (
                    format!("{a}+{b}"),
                    l.iter().map(|p| p.entry().text).collect(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                ("alice+bob".to_string(), vec!["one", "three"]),
                ("alice+carol".to_string(), vec!["two"]),
            ]
        );
    }

    #[test]
    fn what_is_queued_is_readable_after_wait_written_and_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 100).unwrap();
        let store = Arc::new(store);
        let writer = HistoryWriter::start(Arc::clone(&store));
        for i in 0..200 {
            if writer.queue(pending("bob", entry(i, "alice", &format!("m{i}")))) {
                writer.wake();
            }
        }
        writer.wait_written();
        let tail = store.history_tail("bob", "alice", 500).unwrap();
        assert_eq!(
            tail.len(),
            200,
            "every entry queued before the wait is written"
        );
        assert!(tail
            .iter()
            .enumerate()
            .all(|(i, e)| e.text == format!("m{i}")));

        // Queued without a wake-up: dropping the writer still writes it.
        writer.queue(pending("bob", entry(7, "carol", "last")));
        drop(writer);
        let tail = store.history_tail("bob", "carol", 5).unwrap();
        assert_eq!(tail.len(), 1, "a dropped writer writes what was queued");
    }
}
