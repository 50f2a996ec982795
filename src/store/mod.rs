//! Durable state of the chat server: offline mailboxes, conversation history
//! and the user directory (last seen, intros, blacklists, statuses, groups).
//!
//! Design choices:
//! - Plain `std::fs` file I/O. The data is small, per-user and append-mostly;
//!   an embedded database (SQLite, sled, ...) would add a large dependency, a
//!   build step or unsafe code, and an opaque file format, for features
//!   (queries, transactions across files) the server does not need. Files
//!   here can be read with `less` and repaired with a text editor.
//! - Every file is a sequence of append-only, checksummed line records (see
//!   [`record`], which also reads CRLF files, a missing final newline and
//!   records typed by hand). A crash can only tear the last line; readers detect
//!   that by the checksum. A repair never deletes: a torn tail, or any line that
//!   is damaged or not understood, is moved to `<file>.rejected` at open (before
//!   the next append, for history), see [`repair`].
//! - Mail is fsynced (file data, plus the directory when the file is new)
//!   before `deliver_or_store` returns, so a message the server acknowledged
//!   survives a crash or power loss. History is not fsynced: it is never
//!   acknowledged and losing its last seconds is acceptable (the server appends
//!   it from one writer thread, a round of entries per write). User events are not
//!   fsynced either: losing a last-seen time or a status set a moment before a crash is
//!   acceptable.
//! - `users.log` is a journal replayed at open. When it holds more than
//!   2 × (live records) + 1000 records it is compacted by writing the minimal
//!   set of events to `users.log.tmp`, fsyncing it, renaming it over
//!   `users.log` and fsyncing the directory, so a crash leaves either the old
//!   or the new journal, never a mix.
//!
//! What it deliberately does not do: validate usernames or group names (the
//! protocol layer does; names are only checked to be safe path components),
//! enforce permissions (who may join a group, ...), encrypt anything, or keep
//! many file handles open between calls (mail and the journal are opened,
//! appended and closed per call; at most [`MAX_OPEN_HISTORY`] of the most
//! recently used history files stay open, and no more than a sixteenth of the
//! open-files limit, so the number of open files never grows with the number
//! of users).
//!
//! The rooms, one job each:
//! - [`record`]: the line format every file uses (escapes, CRC32, torn and hand-written lines);
//! - `repair`: loading a file at open and moving damaged lines aside;
//! - `files`: the name check, durable appends that roll back, directory fsync;
//! - `directory` and `journal`: the user directory and `users.log`, its journal;
//! - `mail` and `mailbox`: storing offline mail, then reading it and removing what was
//!   delivered;
//! - `history` (and `history::tail`): the conversation logs, written and read backwards;
//! - `usage`: the bytes held against `max_data_bytes`.
//!
//! This file keeps the [`Store`] handle: opening the directory and the locks.

mod directory;
mod files;
mod history;
mod journal;
mod mail;
mod mailbox;
pub mod record;
mod repair;
#[cfg(test)]
mod test_support;
mod usage;

pub use directory::{Directory, Event, Group, UserRecord};
pub use history::{encode_history_into, HistoryEntry, HistoryLog, HistoryRef, MAX_OPEN_HISTORY};
pub use mail::{is_mail_id, new_mail_id};
pub use mail::{Mail, MailKind};

use files::{probe, remove_leftover};
use history::HistoryFiles;
use journal::{USERS_LOG, USERS_TMP};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The mailboxes' directory under the data directory.
const MAIL_DIR: &str = "mail";
/// The conversation logs' directory under the data directory.
const HISTORY_DIR: &str = "history";

/// The server's persistent store; shared between client threads by reference
/// (`Arc<Store>`), all methods take `&self`.
pub struct Store {
    /// Root data directory; every file the store touches lives under it.
    dir: PathBuf,
    /// Mailbox counts and the journal size. One lock so a send racing with the
    /// recipient's login can never strand a message, and so the journal is written in
    /// the order the directory changed (see [`Store::write_journal`]).
    inner: Mutex<StoreState>,
    /// History files already checked for a torn tail in this process, and the
    /// ones open for appending. A separate lock so history logging never waits
    /// behind a mail fsync; held only to look a file up, never across a write.
    history: Mutex<HistoryFiles>,
    /// Bytes the directory holds, against `max_data_bytes`.
    usage: Arc<usage::Usage>,
}

/// What the store's main lock guards.
struct StoreState {
    /// Maximum number of messages one mailbox may hold.
    mailbox_limit: usize,
    /// Number of messages waiting per user (absent = 0).
    mail_counts: HashMap<String, usize>,
    /// Number of records currently in `users.log` (including skipped ones).
    journal_records: usize,
}

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The recipient's mailbox already holds `limit` messages; nothing was
    /// stored, so the sender can be told.
    MailboxFull {
        /// The recipient whose mailbox is full.
        user: String,
        /// The configured mailbox limit.
        limit: usize,
    },
    /// The data directory holds `max_data_bytes`: nothing was stored, so the sender can
    /// be told.
    StorageFull {
        /// The configured bound in bytes.
        limit: u64,
    },
    /// A file system operation failed; the operation did not take effect
    /// (appends are rolled back where possible).
    Io(io::Error),
    /// A file system operation on `path` failed (a directory where a file should be, no
    /// permission, a full disk...); the operation did not take effect.
    File {
        /// The file or directory it failed on.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::MailboxFull { user, limit } => {
                write!(f, "mailbox of {user} is full ({limit} messages)")
            }
            StoreError::StorageFull { limit } => {
                write!(f, "the data directory is full ({limit} bytes)")
            }
            StoreError::Io(e) => write!(f, "storage error: {e}"),
            StoreError::File { path, error } => {
                write!(f, "storage error: {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) | StoreError::File { error: e, .. } => Some(e),
            StoreError::MailboxFull { .. } | StoreError::StorageFull { .. } => None,
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl Store {
    /// Creates dirs, proves the dir is writable (create+write+fsync+remove a
    /// probe file; error otherwise), truncates torn tails of users.log and
    /// every mail/*.log with a `log::warn!` naming file and byte offset,
    /// counts each mailbox, replays users.log into a Directory. Returns the
    /// store and the directory, the one the server keeps (in the chat rules' state) and
    /// changes through [`Directory::record`]; the store keeps no copy.
    pub fn open(dir: &Path, mailbox_limit: usize) -> Result<(Store, Directory), StoreError> {
        for d in [dir.to_path_buf(), dir.join(MAIL_DIR), dir.join(HISTORY_DIR)] {
            fs::create_dir_all(&d).map_err(files::at(&d))?;
        }
        probe(dir).map_err(files::at(dir))?;

        // A leftover temp file is an interrupted compaction or repair: the file it was to
        // replace is intact.
        let users_path = dir.join(USERS_LOG);
        for tmp in [dir.join(USERS_TMP), repair::repair_tmp(&users_path)] {
            remove_leftover(&tmp)?;
        }

        let mail_counts = mailbox::count_mailboxes(&dir.join(MAIL_DIR))?;
        let (directory, journal_records) = journal::replay(&users_path)?;

        let store = Store {
            dir: dir.to_path_buf(),
            inner: Mutex::new(StoreState {
                mailbox_limit,
                mail_counts,
                journal_records,
            }),
            history: Mutex::new(HistoryFiles::new()),
            usage: Arc::new(usage::Usage::measure(dir)),
        };
        Ok((store, directory))
    }

    /// Reads `user`'s mailbox and removes what it read (a message that arrives in between
    /// stays). For tools and tests: the server removes mail only once it is delivered (see
    /// `mailbox`).
    pub fn take_mail(&self, user: &str) -> Result<Vec<Mail>, StoreError> {
        let mail = self.read_mail_with(user, <[Mail]>::to_vec)?;
        let ids: Vec<String> = mail.iter().map(|m| m.id.clone()).collect();
        self.remove_mail(user, &ids)?;
        Ok(mail)
    }

    /// The data directory (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bounds the bytes the data directory may hold (`max_data_bytes`; 0 = no bound): past
    /// it new mail is refused with [`StoreError::StorageFull`] and history is not written.
    pub fn set_max_bytes(&self, max: u64) {
        self.usage.set_limit(max);
    }

    /// Whether `bytes` more fit under `max_data_bytes` (a new user or group in open mode is
    /// refused when not even a record fits).
    pub fn has_room(&self, bytes: u64) -> bool {
        self.usage.admits(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{entry, mail};

    #[test]
    fn bad_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let m = mail("a", "1", MailKind::Private);
        for name in ["", ".", "..", "../x", "a/b", "a+b"] {
            assert!(store.deliver_or_store(name, &m, || false).is_err());
            assert!(store.take_mail(name).is_err());
            assert!(store.append_history(name, "x", &entry(1, "t")).is_err());
        }
    }

    #[test]
    fn persistence_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let m = mail("alice", "offline msg", MailKind::Group("grp".into()));
        let events = [
            Event::Seen {
                user: "alice".into(),
                at: 42,
            },
            Event::Intro {
                user: "alice".into(),
                text: "hello\nworld".into(),
            },
            Event::Block {
                user: "alice".into(),
                target: "eve".into(),
            },
            Event::GroupCreate {
                group: "grp".into(),
                owner: "alice".into(),
            },
            Event::GroupJoin {
                group: "grp".into(),
                user: "bob".into(),
            },
        ];
        let mut expected = Directory::default();
        {
            let (store, mut dir) = Store::open(tmp.path(), 10).unwrap();
            assert_eq!(dir, Directory::default());
            store.deliver_or_store("bob", &m, || false).unwrap();
            store
                .append_history("bob", "alice", &entry(1, "one"))
                .unwrap();
            store
                .append_history("alice", "bob", &entry(2, "two"))
                .unwrap();
            for e in &events {
                dir.record(e.clone());
                store.write_journal(|| &mut dir).unwrap();
                expected.apply(e);
            }
        }
        let (store, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir, expected);
        assert_eq!(dir.user("alice").unwrap().last_seen, Some(42));
        assert_eq!(store.mailbox_len("bob"), 1);
        assert_eq!(
            store.history_tail("alice", "bob", 10).unwrap(),
            vec![entry(1, "one"), entry(2, "two")]
        );
        assert!(tmp.path().join("history/alice+bob.log").exists());
        assert_eq!(store.take_mail("bob").unwrap(), vec![m]);
        drop(store);
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(store.mailbox_len("bob"), 0);
    }

    #[test]
    fn open_unwritable_dir_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("regular");
        fs::write(&file, b"x").unwrap();
        let err = Store::open(&file.join("data"), 10).err().unwrap();
        assert!(matches!(err, StoreError::File { .. }));
        assert!(err.to_string().starts_with("storage error"));
        // The message names the path that is in the way.
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        assert!(Store::open(&file, 10).is_err());
    }

    #[test]
    fn leftover_compaction_temp_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(USERS_TMP), b"half written").unwrap();
        let (_, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir, Directory::default());
        assert!(!tmp.path().join(USERS_TMP).exists());
    }
}
