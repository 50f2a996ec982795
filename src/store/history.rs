//! Conversation history: one append-only log per pair of users
//! (`history/<a>+<b>.log`), its record, and the writer. History is not fsynced: it is
//! never acknowledged and losing its last seconds is acceptable (the server appends it from
//! one writer thread, a round of entries per write). The most recently used logs stay open
//! (see [`MAX_OPEN_HISTORY`]), each with its own lock, so a chat line costs one `write(2)`
//! and appends to different conversations run side by side.
//!
//! What it does not do: read a log (`tail`), or decide what is logged (the chat rules do).

mod tail;

use super::files::check_name;
use super::{record, repair, usage, Store, StoreError, HISTORY_DIR};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bound on the set of history files already checked for a torn tail; when
/// exceeded the set is cleared (re-checking is harmless, just one extra read).
const MAX_CHECKED_HISTORY: usize = 4096;
/// Most history files kept open for appending, so a chat line costs one
/// `write(2)` instead of open, stat, write and close under a lock every sender
/// shares. A class of 1,000 chatting in pairs has 500 conversations going: they
/// all fit, where a smaller cache reopened a file for nearly every line. The
/// least recently used file is closed when the cache is full, and the cache
/// takes at most a sixteenth of the process's open-files limit (one descriptor
/// per connection comes first).
pub const MAX_OPEN_HISTORY: usize = 1024;
/// The fewest history files kept open, whatever the open-files limit.
const MIN_OPEN_HISTORY: usize = 16;

/// One line of a two-person conversation log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When it was said (unix seconds).
    pub at: u64,
    /// The server session (connection) id it came from, if known.
    pub session: Option<u32>,
    /// Username of the speaker.
    pub sender: String,
    /// The message text.
    pub text: String,
}

/// A history entry by reference: what the history writer appends, straight from the
/// message it shares with the delivery (no copy of the names and text per line).
#[derive(Clone, Copy, Debug)]
pub struct HistoryRef<'a> {
    /// When it was said (unix seconds).
    pub at: u64,
    /// The server session (connection) id it came from, if known.
    pub session: Option<u32>,
    /// Username of the speaker.
    pub sender: &'a str,
    /// The message text.
    pub text: &'a str,
}

impl HistoryEntry {
    /// The entry by reference.
    pub fn borrowed(&self) -> HistoryRef<'_> {
        HistoryRef {
            at: self.at,
            session: self.session,
            sender: &self.sender,
            text: &self.text,
        }
    }
}

/// What the store knows of history files in this process.
#[derive(Default)]
pub(super) struct HistoryFiles {
    /// Checked for a torn tail (bounded by [`MAX_CHECKED_HISTORY`]).
    checked: HashSet<PathBuf>,
    /// Open for appending (bounded by [`history_cache_size`]), each with when it
    /// was last used; each file has its own lock, so appends to different
    /// conversations run side by side.
    open: HashMap<PathBuf, (Arc<Mutex<File>>, u64)>,
    /// Counts uses, to find the least recently used open file.
    uses: u64,
    /// Most files kept open.
    capacity: usize,
}

impl HistoryFiles {
    /// Nothing checked or open yet; keeps at most [`history_cache_size`] files open.
    pub(super) fn new() -> HistoryFiles {
        HistoryFiles {
            capacity: history_cache_size(),
            ..HistoryFiles::default()
        }
    }

    /// The open file for `path`, marked as just used.
    fn get(&mut self, path: &Path) -> Option<Arc<Mutex<File>>> {
        self.uses += 1;
        let uses = self.uses;
        self.open.get_mut(path).map(|(file, used)| {
            *used = uses;
            Arc::clone(file)
        })
    }

    /// Keeps `file` open for `path`, closing the least recently used one if full.
    /// A writer still holding the closed one finishes its append (the file is in
    /// append mode), so nothing is lost.
    fn insert(&mut self, path: PathBuf, file: Arc<Mutex<File>>) {
        if self.open.len() >= self.capacity {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                self.open.remove(&oldest);
            }
        }
        self.uses += 1;
        self.open.insert(path, (file, self.uses));
    }
}

/// One conversation log, locked for appending (see [`Store::lock_history`]).
pub struct HistoryLog {
    file: parking_lot::ArcMutexGuard<parking_lot::RawMutex, File>,
    path: PathBuf,
    /// The store's byte count: history is not written past the bound.
    usage: Arc<usage::Usage>,
}

impl HistoryLog {
    /// Appends entries, in order, with one write. No fsync (history is not acknowledged),
    /// but a write that fails halfway is cut off again.
    pub fn append(&mut self, entries: &[HistoryRef<'_>]) -> Result<(), StoreError> {
        let mut bytes = String::with_capacity(entries.iter().map(|e| e.text.len() + 48).sum());
        for entry in entries {
            encode_history_into(&mut bytes, *entry);
        }
        self.append_encoded(bytes.as_bytes())
    }

    /// Appends record lines already encoded with [`encode_history_into`], with one write,
    /// cut off again if the write fails halfway (a full disk), so the log never ends in half
    /// a record.
    pub fn append_encoded(&mut self, records: &[u8]) -> Result<(), StoreError> {
        debug_assert!(records.is_empty() || records.ends_with(b"\n"));
        let len = records.len() as u64;
        if !self.usage.reserve(len) {
            // Never acknowledged to anyone: past the bound it is left out, with a warning
            // (once until a write fits again); the messages themselves were delivered.
            if self.usage.first_refusal() {
                log::warn!(
                    "{}: the data directory holds max_data_bytes ({} bytes); history is not written until there is room",
                    self.path.display(),
                    self.usage.limit()
                );
            }
            return Ok(());
        }
        append_or_roll_back(&mut self.file, records, &self.path).inspect_err(|_| {
            self.usage.sub(len);
        })
    }
}

/// Appends `bytes` to a file opened in append mode; if only part of them could be written
/// (a full disk), cuts that part off again, so the file never ends in half a record. The
/// length is read only on failure: a chat line costs one `write(2)`.
fn append_or_roll_back(file: &mut File, bytes: &[u8], path: &Path) -> Result<(), StoreError> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => {
                return Err(roll_back(
                    file,
                    written,
                    io::ErrorKind::WriteZero.into(),
                    path,
                ))
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(roll_back(file, written, e, path)),
        }
    }
    Ok(())
}

/// Removes the last `written` bytes of a failed append; returns the append's error.
fn roll_back(file: &mut File, written: usize, error: io::Error, path: &Path) -> StoreError {
    if written > 0 {
        let cut = file
            .metadata()
            .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)));
        if let Err(e2) = cut {
            log::warn!(
                "{}: could not roll back {written} bytes of a failed append: {e2}",
                path.display()
            );
        }
    }
    error.into()
}

/// How many history files to keep open: a sixteenth of the open-files limit,
/// between [`MIN_OPEN_HISTORY`] and [`MAX_OPEN_HISTORY`].
#[allow(unsafe_code)]
fn history_cache_size() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (soft / 16).clamp(MIN_OPEN_HISTORY, MAX_OPEN_HISTORY)
}

#[cfg(test)]
fn encode_history(entry: &HistoryEntry) -> String {
    let mut out = String::new();
    encode_history_into(&mut out, entry.borrowed());
    out
}

/// Appends the record line (ending in LF) a history log stores for `entry` (the history
/// writer's callers encode their entries themselves, see `HistoryLog::append_encoded`).
pub fn encode_history_into(out: &mut String, entry: HistoryRef<'_>) {
    // Numbers formatted on the stack: the history writer encodes every line said.
    let (mut at, mut session) = ([0u8; 20], [0u8; 20]);
    let session = match entry.session {
        Some(s) => decimal(u64::from(s), &mut session),
        None => "-",
    };
    record::encode_into(
        out,
        &[
            "hist",
            decimal(entry.at, &mut at),
            session,
            entry.sender,
            entry.text,
        ],
    );
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

fn decode_history(f: &[String]) -> Option<HistoryEntry> {
    match f {
        [tag, at, session, sender, text, ..] if tag == "hist" => Some(HistoryEntry {
            at: at.parse().ok()?,
            session: match session.as_str() {
                "-" => None,
                s => Some(s.parse().ok()?),
            },
            sender: sender.clone(),
            text: text.clone(),
        }),
        _ => None,
    }
}

impl Store {
    fn history_path(&self, a: &str, b: &str) -> PathBuf {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        self.dir
            .join(HISTORY_DIR)
            .join(format!("{first}+{second}.log"))
    }

    /// Appends one entry to the a/b conversation log (order of a,b
    /// irrelevant). No fsync (history is not acknowledged), but a torn tail
    /// left by a crash is truncated before the first append to that file in
    /// this process.
    pub fn append_history(&self, a: &str, b: &str, entry: &HistoryEntry) -> Result<(), StoreError> {
        self.append_history_all(a, b, std::slice::from_ref(entry))
    }

    /// Appends several entries to the a/b conversation log, in order, with one write (a
    /// session thread's burst of messages to one partner).
    pub fn append_history_all(
        &self,
        a: &str,
        b: &str,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let refs: Vec<HistoryRef<'_>> = entries.iter().map(HistoryEntry::borrowed).collect();
        self.append_history_refs(a, b, &refs)
    }

    /// [`Store::append_history_all`] for entries by reference.
    pub fn append_history_refs(
        &self,
        a: &str,
        b: &str,
        entries: &[HistoryRef<'_>],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.lock_history(a, b)?.append(entries)
    }

    /// The a/b conversation log, locked for appending: other appends to it wait until the
    /// returned value is dropped. Lets a caller fix a message's place in the log, deliver
    /// it, and only then pay for the write, with no reply able to be logged ahead of it.
    /// A thread locking several logs takes them in the order of their sorted name pairs
    /// (`(min(a, b), max(a, b))`), so two threads can never wait for each other.
    pub fn lock_history(&self, a: &str, b: &str) -> Result<HistoryLog, StoreError> {
        check_name(a)?;
        check_name(b)?;
        let path = self.history_path(a, b);
        let file = {
            let mut files = self.history.lock();
            if !files.checked.contains(&path) {
                repair::repair_tail(&path)?;
                if files.checked.len() >= MAX_CHECKED_HISTORY {
                    files.checked.clear();
                }
                files.checked.insert(path.clone());
            }
            match files.get(&path) {
                Some(file) => file,
                None => {
                    let file = OpenOptions::new().create(true).append(true).open(&path)?;
                    let file = Arc::new(Mutex::new(file));
                    files.insert(path.clone(), Arc::clone(&file));
                    file
                }
            }
        };
        Ok(HistoryLog {
            file: file.lock_arc(),
            path,
            usage: Arc::clone(&self.usage),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::entry;
    use std::collections::BTreeSet;
    use std::fs;

    #[test]
    fn decimal_formats_like_to_string() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 99, 1_000_000_007, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn history_of_many_conversations_from_many_threads_is_complete() {
        // More conversations than files kept open, written from several threads at once.
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        const KEPT: usize = 8;
        store.history.lock().capacity = KEPT;
        let store = Arc::new(store);
        let peers = KEPT * 3;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for round in 0..5u64 {
                        for p in 0..peers {
                            let text = format!("t{t} r{round}");
                            store
                                .append_history("alice", &format!("p{p}"), &entry(round, &text))
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for p in 0..peers {
            let tail = store.history_tail(&format!("p{p}"), "alice", 100).unwrap();
            assert_eq!(tail.len(), 20, "p{p}");
            for t in 0..4 {
                let mine: Vec<&str> = tail
                    .iter()
                    .map(|e| e.text.as_str())
                    .filter(|x| x.starts_with(&format!("t{t} ")))
                    .collect();
                let want: Vec<String> = (0..5).map(|r| format!("t{t} r{r}")).collect();
                assert_eq!(mine, want, "p{p}: each thread's lines once, in order");
            }
        }
        assert!(store.history.lock().open.len() <= KEPT);
    }

    #[test]
    fn a_failed_append_cuts_off_what_it_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        append_or_roll_back(&mut file, b"whole line\n", &path).unwrap();
        file.write_all(b"half a li").unwrap(); // then the disk filled up
        let e = roll_back(&mut file, 9, io::ErrorKind::StorageFull.into(), &path);
        assert!(matches!(e, StoreError::Io(_)), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"whole line\n");
        roll_back(&mut file, 0, io::ErrorKind::StorageFull.into(), &path);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"whole line\n",
            "nothing written, nothing cut"
        );
    }

    #[test]
    fn a_locked_log_keeps_its_place_ahead_of_later_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let store = Arc::new(store);
        let mut log = store.lock_history("alice", "bob").unwrap();
        let reply = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.append_history("bob", "alice", &entry(2, "reply")))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reply.is_finished(), "the reply waits for the locked log");
        log.append(&[
            entry(1, "question").borrowed(),
            entry(1, "and more").borrowed(),
        ])
        .unwrap();
        drop(log);
        reply.join().unwrap().unwrap();
        let texts: Vec<String> = store
            .history_tail("alice", "bob", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(texts, ["question", "and more", "reply"]);
    }

    #[test]
    fn the_least_recently_used_history_file_is_the_one_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        assert!((MIN_OPEN_HISTORY..=MAX_OPEN_HISTORY).contains(&store.history.lock().capacity));
        store.history.lock().capacity = 2;
        let say = |peer: &str| store.append_history("alice", peer, &entry(1, "x")).unwrap();
        say("bob");
        say("carol");
        say("bob"); // carol is now the least recently used
        say("dave");
        let open: BTreeSet<String> = store
            .history
            .lock()
            .open
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            open,
            BTreeSet::from(["alice+bob.log".to_string(), "alice+dave.log".to_string()])
        );
        assert_eq!(store.history_tail("alice", "bob", 10).unwrap().len(), 2);
        assert_eq!(store.history_tail("carol", "alice", 10).unwrap().len(), 1);
    }
}
