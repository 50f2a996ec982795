//! The conversation logs' writer: one thread appends every history entry, so that no
//! session thread ever waits for the disk on a message's way.
//!
//! Every private message and chat-session line is logged to `history/<a>+<b>.log`. Written by the
//! sender's thread, that `write(2)` was a third of its syscalls, and when ext4 was busy (a journal
//! commit, writeback) it held the sender's next line for up to a few hundred milliseconds: the
//! worst latencies with 1,000 users chatting. Here a session thread only queues the entry before
//! its line is delivered: it encodes the record line itself (the text is in its cache), then,
//! holding the queue's lock only for the copy, appends it to the round being gathered, a buffer
//! shared by all. The writer wakes, swaps that buffer for an empty one, groups the round's records
//! by conversation and writes each conversation's with one `write`, so a busy server pays one
//! syscall per conversation per round instead of one per burst. A round is two growing buffers
//! reused round after round: no allocation per entry (each session thread reuses its scratch
//! buffer), nothing freed by another thread than the one that allocated it. (Entries used to be a
//! struct per line holding the message's `Arc`, a copied peer name and its own strings: the writer
//! then spent a fifth of its time on cache misses reading names another core had written, a sixth
//! freeing, and SipHash on every line's name pair.)
//!
//! Order and visibility: an entry is queued before the line that carries it is put in any
//! outbox, and entries are written in queue order, so a reply is never logged ahead of the
//! message it answers. [`HistoryWriter::wait_written`] returns once everything queued
//! before it is in the files: a `history` read calls it first, so whoever has seen a
//! message finds it in the history. A clean shutdown writes what is queued; `kill -9`
//! loses at most the round in progress (history is a record, not an acknowledgement:
//! nothing is fsynced, as before).

use crate::store::{self, HistoryRef, Store};
use foldhash::HashMap;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The entries of one round: each one's conversation (its two names, sorted) and record
/// line, back to back in one buffer, in the order they were queued.
#[derive(Default)]
struct Round {
    /// For each entry: the smaller name, the larger name, then the encoded record (ending
    /// in LF).
    bytes: String,
    /// Where each entry's parts lie in `bytes`.
    entries: Vec<EntrySpan>,
}

/// One entry's place in [`Round::bytes`]: names `start..a_end` and `a_end..b_end`, record
/// `b_end..end`.
#[derive(Clone, Copy)]
struct EntrySpan {
    start: usize,
    a_end: usize,
    b_end: usize,
    end: usize,
}

impl EntrySpan {
    /// The entry written from `start` to `end`, its names `names` bytes long.
    fn at(start: usize, (a_len, b_len): (usize, usize), end: usize) -> EntrySpan {
        EntrySpan {
            start,
            a_end: start + a_len,
            b_end: start + a_len + b_len,
            end,
        }
    }
}

/// Appends `entry`, which its sender said to `peer`, to `out` as a round holds it: the
/// smaller name, the larger name, the record line. Returns the names' lengths.
fn encode_entry(out: &mut String, peer: &str, entry: HistoryRef<'_>) -> (usize, usize) {
    let (a, b) = if entry.sender <= peer {
        (entry.sender, peer)
    } else {
        (peer, entry.sender)
    };
    out.push_str(a);
    out.push_str(b);
    store::encode_history_into(out, entry);
    (a.len(), b.len())
}

/// A round that grew past this many bytes (a burst) is given back once written, so the
/// writer does not keep the burst's peak for good.
const KEPT_ROUND_BYTES: usize = 1 << 20;

/// A session thread's encoding buffer keeps at most this much between entries (a long
/// line's is given back).
const KEPT_SCRATCH_BYTES: usize = 512;

thread_local! {
    /// Where a session thread encodes its entry before it takes the queue's lock.
    static ENTRY_SCRATCH: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

impl Round {
    /// Appends `entry`, which its sender said to `peer`.
    fn push(&mut self, peer: &str, entry: HistoryRef<'_>) {
        let start = self.bytes.len();
        let names = encode_entry(&mut self.bytes, peer, entry);
        self.entries
            .push(EntrySpan::at(start, names, self.bytes.len()));
    }

    /// Appends an entry [`encode_entry`] wrote, whose names are `names` bytes long.
    fn push_encoded(&mut self, encoded: &str, names: (usize, usize)) {
        let start = self.bytes.len();
        self.bytes.push_str(encoded);
        self.entries
            .push(EntrySpan::at(start, names, self.bytes.len()));
    }

    fn names(&self, e: &EntrySpan) -> (&str, &str) {
        (&self.bytes[e.start..e.a_end], &self.bytes[e.a_end..e.b_end])
    }

    fn record(&self, e: &EntrySpan) -> &str {
        &self.bytes[e.b_end..e.end]
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the round for reuse, keeping its buffers unless a burst made them large.
    fn clear(&mut self) {
        if self.bytes.capacity() > KEPT_ROUND_BYTES {
            *self = Round::default();
        } else {
            self.bytes.clear();
            self.entries.clear();
        }
    }

    /// The round's entries grouped by conversation: its names and the indices of its
    /// entries, in the order said; conversations in the order of their first entry. The
    /// writer locks one log at a time, so the order of conversations does not matter.
    fn by_conversation(&self) -> Vec<((&str, &str), Vec<usize>)> {
        let mut index: HashMap<(&str, &str), usize> = HashMap::default();
        let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let names = self.names(e);
            let next = groups.len();
            let group = *index.entry(names).or_insert(next);
            if group == next {
                groups.push((names, Vec::new()));
            }
            groups[group].1.push(i);
        }
        groups
    }
}

/// What the writer has been given and how far it got.
#[derive(Default)]
struct Queue {
    /// Entries not yet taken by the writer.
    round: Round,
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
/// `history` read does not wait for it. Writing at once instead costs pairs 64 much of
/// its throughput (docs/performance.md). A `kill -9` loses at most this much history.
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

    /// Queues `entry`, which its sender said to `peer`, for their conversation's log
    /// (entries are written in the order queued); true if the writer sleeps and must be
    /// woken with [`HistoryWriter::wake`]. A session thread in a burst wakes it only after its
    /// lines have left: on a quiet server the writer's wake-up would otherwise run (and
    /// switch the core) between a message and its delivery.
    pub fn queue(&self, peer: &str, entry: HistoryRef<'_>) -> bool {
        if self.thread.is_none() {
            let mut round = Round::default();
            round.push(peer, entry);
            write_round(&self.store, &round);
            return false;
        }
        // Encoded before the lock is taken, so the lock is held for a copy: with a thousand
        // threads on a core, a thread preempted while encoding under the lock held up every
        // sender behind it (pairs 500: nearly every futex wait of the server was here).
        let mut scratch = ENTRY_SCRATCH.with(|s| s.take());
        let names = encode_entry(&mut scratch, peer, entry);
        let wake = {
            let mut q = self.inner.queue.lock();
            q.queued += 1;
            q.round.push_encoded(&scratch, names);
            std::mem::replace(&mut q.idle, false)
        };
        scratch.clear();
        if scratch.capacity() <= KEPT_SCRATCH_BYTES {
            ENTRY_SCRATCH.with(|s| s.set(scratch));
        }
        wake
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
    // The round being written; swapped with the queue's, so both buffers are reused.
    let mut round = Round::default();
    loop {
        let upto = {
            let mut q = inner.queue.lock();
            while q.round.is_empty() {
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
            std::mem::swap(&mut q.round, &mut round);
            q.queued
        };
        write_round(store, &round);
        round.clear();
        inner.queue.lock().written = upto;
        inner.progress.notify_all();
    }
}

/// Writes one round's entries: each conversation's with one append, in the order said.
fn write_round(store: &Store, round: &Round) {
    let mut bytes = String::new();
    for ((a, b), entries) in round.by_conversation() {
        bytes.clear();
        for &i in &entries {
            bytes.push_str(round.record(&round.entries[i]));
        }
        let appended = store
            .lock_history(a, b)
            .and_then(|mut log| log.append_encoded(bytes.as_bytes()));
        if let Err(e) = appended {
            log::error!("store: history {a}/{b}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(at: u64, sender: &'a str, text: &'a str) -> HistoryRef<'a> {
        HistoryRef {
            at,
            session: None,
            sender,
            text,
        }
    }

    #[test]
    fn entries_are_grouped_by_conversation_in_the_order_said() {
        let mut round = Round::default();
        round.push("alice", entry(1, "bob", "one"));
        round.push("alice", entry(2, "carol", "two"));
        round.push("bob", entry(3, "alice", "three"));
        let groups: Vec<(String, Vec<String>)> = round
            .by_conversation()
            .iter()
            .map(|((a, b), l)| {
                let records = l.iter().map(|&i| round.record(&round.entries[i]));
                let texts =
                    records.map(|r| store::record::decode(r.trim_end()).unwrap()[4].clone());
                (format!("{a}+{b}"), texts.collect())
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("alice+bob".to_string(), vec!["one".into(), "three".into()]),
                ("alice+carol".to_string(), vec!["two".into()]),
            ]
        );
        assert_eq!(round.names(&round.entries[2]), ("alice", "bob"));

        // Reused after a round: empty, and grouping starts afresh.
        round.clear();
        assert!(round.is_empty() && round.by_conversation().is_empty());
        round.push("dave", entry(4, "carol", "four"));
        assert_eq!(round.by_conversation()[0].0, ("carol", "dave"));

        // A burst's round is given back once written; an ordinary one keeps its buffers.
        let kept = round.bytes.capacity();
        round.clear();
        assert_eq!(round.bytes.capacity(), kept);
        let long = "x".repeat(4096);
        for i in 0..300 {
            round.push("bob", entry(i, "alice", &long));
        }
        round.clear();
        assert_eq!(round.bytes.capacity(), 0, "over {KEPT_ROUND_BYTES} bytes");
    }

    #[test]
    fn an_entry_encoded_outside_the_round_is_the_same_entry() {
        let (mut pushed, mut copied) = (Round::default(), Round::default());
        let mut scratch = String::new();
        for (peer, e) in [
            ("bob", entry(1, "alice", "one")),
            ("al", entry(2, "bob", "tab\there")),
        ] {
            pushed.push(peer, e);
            scratch.clear();
            let names = encode_entry(&mut scratch, peer, e);
            copied.push_encoded(&scratch, names);
        }
        assert_eq!(pushed.bytes, copied.bytes);
        for (p, c) in pushed.entries.iter().zip(&copied.entries) {
            assert_eq!(pushed.names(p), copied.names(c));
            assert_eq!(pushed.record(p), copied.record(c));
        }
        assert_eq!(copied.names(&copied.entries[1]), ("al", "bob"));
        assert!(copied.record(&copied.entries[1]).contains("tab\\there"));
    }

    #[test]
    fn what_is_queued_is_readable_after_wait_written_and_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 100).unwrap();
        let store = Arc::new(store);
        let writer = HistoryWriter::start(Arc::clone(&store));
        for i in 0..200 {
            if writer.queue("bob", entry(i, "alice", &format!("m{i}"))) {
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
        writer.queue("bob", entry(7, "carol", "last"));
        drop(writer);
        let tail = store.history_tail("bob", "carol", 5).unwrap();
        assert_eq!(tail.len(), 1, "a dropped writer writes what was queued");
    }
}
