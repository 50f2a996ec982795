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
//!   it from one writer thread, a round of entries per write). User events are
//!   fsynced when the caller asks for it.
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

mod mailbox;
pub mod record;
mod repair;
mod usage;

pub use mailbox::{is_mail_id, new_mail_id};

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const USERS_LOG: &str = "users.log";
const USERS_TMP: &str = "users.log.tmp";
const MAIL_DIR: &str = "mail";
const HISTORY_DIR: &str = "history";
const PROBE_FILE: &str = ".write-probe";
/// How much of a history file is read per step when reading it backwards.
const TAIL_CHUNK: u64 = 64 * 1024;
/// Slack before the journal is compacted: `records > 2 * live + SLACK`.
const COMPACT_SLACK: usize = 1000;
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

/// The server's persistent store; shared between client threads by reference
/// (`Arc<Store>`), all methods take `&self`.
pub struct Store {
    /// Root data directory; every file the store touches lives under it.
    dir: PathBuf,
    /// Mailbox counts, the directory copy and the journal size. One lock so a
    /// send racing with the recipient's login can never strand a message.
    inner: Mutex<Inner>,
    /// History files already checked for a torn tail in this process, and the
    /// ones open for appending. A separate lock so history logging never waits
    /// behind a mail fsync; held only to look a file up, never across a write.
    history: Mutex<HistoryFiles>,
    /// Bytes the directory holds, against `max_data_bytes`.
    usage: Arc<usage::Usage>,
}

/// What the store knows of history files in this process.
#[derive(Default)]
struct HistoryFiles {
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

struct Inner {
    /// Maximum number of messages one mailbox may hold.
    mailbox_limit: usize,
    /// Number of messages waiting per user (absent = 0).
    mail_counts: HashMap<String, usize>,
    /// The store's own replayed view of `users.log`, used for compaction.
    directory: Directory,
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

/// How a stored message was addressed, so it can be shown the same way when
/// it is delivered later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// A direct message to the recipient.
    Private,
    /// A message sent to everyone.
    Broadcast,
    /// A message sent to the named group.
    Group(String),
}

/// One message waiting in an offline user's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Username of the sender.
    pub from: String,
    /// When it was sent (unix seconds), shown on delivery.
    pub sent_at: u64,
    /// How it was addressed.
    pub kind: MailKind,
    /// The message text.
    pub text: String,
    /// Stable identity, kept with the mail on disk: a mail delivered again (its first delivery
    /// was never acknowledged by the client's TCP) carries the same id, so clients can drop
    /// the repeat. Empty only for a record written before ids existed (see `mailbox`).
    pub id: String,
}

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

/// One change to user state, journaled in `users.log` and replayed at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `user` was last seen at `at` (unix seconds).
    Seen {
        /// The user.
        user: String,
        /// Unix seconds.
        at: u64,
    },
    /// `user` set their intro; an empty text clears it.
    Intro {
        /// The user.
        user: String,
        /// The intro; empty = cleared.
        text: String,
    },
    /// `user` blacklisted `target`.
    Block {
        /// Who blocks.
        user: String,
        /// Who is blocked.
        target: String,
    },
    /// `user` removed `target` from their blacklist.
    Unblock {
        /// Who unblocks.
        user: String,
        /// Who is unblocked.
        target: String,
    },
    /// `user` set their status; an empty status clears it.
    Status {
        /// The user.
        user: String,
        /// The status; empty = cleared.
        status: String,
    },
    /// `owner` created `group` (and is its first member).
    GroupCreate {
        /// The group name.
        group: String,
        /// The creator.
        owner: String,
    },
    /// `user` joined `group`.
    GroupJoin {
        /// The group name.
        group: String,
        /// The user.
        user: String,
    },
    /// `user` left `group`; the group is deleted when its last member leaves.
    GroupLeave {
        /// The group name.
        group: String,
        /// The user.
        user: String,
    },
}

/// Persistent state of one user, as rebuilt from the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// Last time the user was seen (unix seconds), for "last seen" queries.
    pub last_seen: Option<u64>,
    /// The user's self-introduction, if set.
    pub intro: Option<String>,
    /// Users this user does not want to hear from.
    pub blocked: BTreeSet<String>,
    /// The user's status line, if set.
    pub status: Option<String>,
}

/// A chat group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Who created the group (kept even if they leave).
    pub owner: String,
    /// Current members; never empty for a group in a [`Directory`].
    pub members: BTreeSet<String>,
}

/// All user state, rebuilt by replaying [`Event`]s; the server keeps a copy
/// in memory and the store keeps its own for compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// Per-user state; users whose state is all default are not present.
    pub users: HashMap<String, UserRecord>,
    /// Groups by name.
    pub groups: BTreeMap<String, Group>,
}

impl Directory {
    /// Applies one event. Pure and deterministic, so replaying the journal
    /// rebuilds exactly the state the server had. Events that change nothing
    /// (unblocking someone not blocked, joining a missing group, creating an
    /// existing group, leaving a group one is not in) are no-ops, and a user
    /// whose record becomes all default is removed.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Seen { user, at } => {
                self.users.entry(user.clone()).or_default().last_seen = Some(*at);
            }
            Event::Intro { user, text } => {
                // Escaped again as it is read back: an intro saved before the rule grew, or
                // put in the file by hand, reaches no terminal raw either.
                let value = (!text.is_empty()).then(|| crate::protocol::sanitize_text(text));
                self.update_user(user, |r| r.intro = value);
            }
            Event::Status { user, status } => {
                let value = (!status.is_empty()).then(|| status.clone());
                self.update_user(user, |r| r.status = value);
            }
            Event::Block { user, target } => {
                self.users
                    .entry(user.clone())
                    .or_default()
                    .blocked
                    .insert(target.clone());
            }
            Event::Unblock { user, target } => {
                self.update_user(user, |r| {
                    r.blocked.remove(target);
                });
            }
            Event::GroupCreate { group, owner } => {
                self.groups.entry(group.clone()).or_insert_with(|| Group {
                    owner: owner.clone(),
                    members: BTreeSet::from([owner.clone()]),
                });
            }
            Event::GroupJoin { group, user } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.members.insert(user.clone());
                }
            }
            Event::GroupLeave { group, user } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.members.remove(user);
                    if g.members.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
        }
    }

    /// Changes a user's record (creating it if needed) and drops it again if
    /// it ends up all default, so "cleared" and "never set" compare equal.
    fn update_user(&mut self, user: &str, change: impl FnOnce(&mut UserRecord)) {
        let mut rec = self.users.remove(user).unwrap_or_default();
        change(&mut rec);
        if rec != UserRecord::default() {
            self.users.insert(user.to_owned(), rec);
        }
    }
}

/// Number of events [`snapshot_events`] would produce, without allocating.
fn live_records(dir: &Directory) -> usize {
    let users: usize = dir
        .users
        .values()
        .map(|r| {
            usize::from(r.last_seen.is_some())
                + usize::from(r.intro.is_some())
                + usize::from(r.status.is_some())
                + r.blocked.len()
        })
        .sum();
    let groups: usize = dir
        .groups
        .values()
        .map(|g| {
            let owner_in = g.members.contains(&g.owner);
            1 + g.members.len() - usize::from(owner_in) + usize::from(!owner_in)
        })
        .sum();
    users + groups
}

/// The minimal sequence of events that rebuilds `dir` from nothing.
fn snapshot_events(dir: &Directory) -> Vec<Event> {
    let mut events = Vec::with_capacity(live_records(dir));
    let mut names: Vec<&String> = dir.users.keys().collect();
    names.sort();
    for name in names {
        let rec = &dir.users[name];
        if let Some(at) = rec.last_seen {
            events.push(Event::Seen {
                user: name.clone(),
                at,
            });
        }
        if let Some(text) = &rec.intro {
            events.push(Event::Intro {
                user: name.clone(),
                text: text.clone(),
            });
        }
        if let Some(status) = &rec.status {
            events.push(Event::Status {
                user: name.clone(),
                status: status.clone(),
            });
        }
        for target in &rec.blocked {
            events.push(Event::Block {
                user: name.clone(),
                target: target.clone(),
            });
        }
    }
    for (name, g) in &dir.groups {
        events.push(Event::GroupCreate {
            group: name.clone(),
            owner: g.owner.clone(),
        });
        for m in g.members.iter().filter(|m| **m != g.owner) {
            events.push(Event::GroupJoin {
                group: name.clone(),
                user: m.clone(),
            });
        }
        // Leave only after the others joined, or the group would vanish.
        if !g.members.contains(&g.owner) {
            events.push(Event::GroupLeave {
                group: name.clone(),
                user: g.owner.clone(),
            });
        }
    }
    events
}

fn encode_event(event: &Event) -> String {
    match event {
        Event::Seen { user, at } => record::encode(&["seen", user, &at.to_string()]),
        Event::Intro { user, text } => record::encode(&["intro", user, text]),
        Event::Block { user, target } => record::encode(&["block", user, target]),
        Event::Unblock { user, target } => record::encode(&["unblock", user, target]),
        Event::Status { user, status } => record::encode(&["status", user, status]),
        Event::GroupCreate { group, owner } => record::encode(&["gcreate", group, owner]),
        Event::GroupJoin { group, user } => record::encode(&["gjoin", group, user]),
        Event::GroupLeave { group, user } => record::encode(&["gleave", group, user]),
    }
}

/// Decodes an event record; `None` for unknown tags or malformed fields.
/// Extra trailing fields are ignored (forward compatibility).
fn decode_event(f: &[String]) -> Option<Event> {
    let field = |i: usize| f.get(i).cloned();
    Some(match f.first()?.as_str() {
        "seen" => Event::Seen {
            user: field(1)?,
            at: f.get(2)?.parse().ok()?,
        },
        "intro" => Event::Intro {
            user: field(1)?,
            text: field(2)?,
        },
        "block" => Event::Block {
            user: field(1)?,
            target: field(2)?,
        },
        "unblock" => Event::Unblock {
            user: field(1)?,
            target: field(2)?,
        },
        "status" => Event::Status {
            user: field(1)?,
            status: field(2)?,
        },
        "gcreate" => Event::GroupCreate {
            group: field(1)?,
            owner: field(2)?,
        },
        "gjoin" => Event::GroupJoin {
            group: field(1)?,
            user: field(2)?,
        },
        "gleave" => Event::GroupLeave {
            group: field(1)?,
            user: field(2)?,
        },
        _ => return None,
    })
}

fn encode_mail(mail: &Mail) -> String {
    let kind = match &mail.kind {
        MailKind::Private => "private".to_owned(),
        MailKind::Broadcast => "broadcast".to_owned(),
        MailKind::Group(g) => format!("group:{g}"),
    };
    record::encode(&[
        "mail",
        &mail.from,
        &mail.sent_at.to_string(),
        &kind,
        &mail.text,
        &mail.id,
    ])
}

fn decode_mail(f: &[String]) -> Option<Mail> {
    match f {
        [tag, from, sent_at, kind, text, rest @ ..] if tag == "mail" => Some(Mail {
            from: from.clone(),
            sent_at: sent_at.parse().ok()?,
            kind: match kind.as_str() {
                "private" => MailKind::Private,
                "broadcast" => MailKind::Broadcast,
                k => MailKind::Group(k.strip_prefix("group:")?.to_owned()),
            },
            text: text.clone(),
            // A record from before ids (or a hand-edited one) gets an id when it is read for
            // delivery (`Store::read_mail_with`).
            id: rest
                .first()
                .filter(|id| is_mail_id(id))
                .cloned()
                .unwrap_or_default(),
        }),
        _ => None,
    }
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

/// Refuses names that are not a single safe path component. Names are
/// validated by the protocol layer; this only guards the file system.
fn check_name(name: &str) -> io::Result<()> {
    let bad =
        name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0', '+']);
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid name for storage: {name:?}"),
        ));
    }
    Ok(())
}

/// Makes a directory's entries (created, renamed, removed files) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for fsync here; entries are durable enough.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Appends one encoded record. On any failure the file is truncated back to
/// its previous length, so a half-written line never precedes the next one.
fn append_line(path: &Path, line: &str, durable: bool) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let start = file.metadata()?.len();
    if let Err(e) = write_line(&mut file, path, line, durable, start == 0) {
        if let Err(e2) = file.set_len(start) {
            log::warn!(
                "{}: could not roll back failed append at byte offset {start}: {e2}",
                path.display()
            );
        }
        return Err(e);
    }
    Ok(())
}

fn write_line(
    file: &mut File,
    path: &Path,
    line: &str,
    durable: bool,
    new_file: bool,
) -> io::Result<()> {
    file.write_all(line.as_bytes())?;
    if durable {
        file.sync_data()?;
        if new_file {
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

/// Writes `events` to `tmp`, fsyncs it, renames it over `dir/users.log` and
/// fsyncs `dir`, so a crash leaves either the old or the new journal.
fn write_journal(tmp: &Path, events: &[Event], dir: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(tmp)?);
    for event in events {
        out.write_all(encode_event(event).as_bytes())?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, dir.join(USERS_LOG))?;
    sync_dir(dir)
}

/// Removes a temporary file left by an interrupted rewrite (its original is intact).
fn remove_leftover(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {
            log::warn!("{}: removed an unfinished rewrite", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(repair::at(path)(e)),
    }
}

/// Proves `dir` is writable by creating, writing, fsyncing and removing a file.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let mut file = File::create(&path)?;
    file.write_all(b"probe\n")?;
    file.sync_all()?;
    drop(file);
    fs::remove_file(&path)
}

impl Store {
    /// Creates dirs, proves the dir is writable (create+write+fsync+remove a
    /// probe file; error otherwise), truncates torn tails of users.log and
    /// every mail/*.log with a `log::warn!` naming file and byte offset,
    /// counts each mailbox, replays users.log into a Directory. Returns the
    /// store and a clone of the replayed Directory.
    pub fn open(dir: &Path, mailbox_limit: usize) -> Result<(Store, Directory), StoreError> {
        for d in [dir.to_path_buf(), dir.join(MAIL_DIR), dir.join(HISTORY_DIR)] {
            fs::create_dir_all(&d).map_err(repair::at(&d))?;
        }
        probe(dir).map_err(repair::at(dir))?;

        // A leftover temp file is an interrupted compaction or repair: the file it was to
        // replace is intact.
        let users_path = dir.join(USERS_LOG);
        for tmp in [dir.join(USERS_TMP), repair::repair_tmp(&users_path)] {
            remove_leftover(&tmp)?;
        }

        let mut mail_counts = HashMap::new();
        let mail_dir = dir.join(MAIL_DIR);
        for entry in fs::read_dir(&mail_dir).map_err(repair::at(&mail_dir))? {
            let path = entry.map_err(repair::at(&mail_dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".log.repair") || name.ends_with(".log.tmp") {
                remove_leftover(&path)?;
                continue;
            }
            let Some(user) = name.strip_suffix(".log") else {
                continue;
            };
            if !path.is_file() {
                log::warn!(
                    "{}: not a regular file; mail for {user} cannot be stored until it is moved away",
                    path.display()
                );
                continue;
            }
            // Every intact record stays: what a mailbox record means is the mailbox
            // reader's business (it skips what it does not know); only damage moves.
            if let Some(scan) = repair::load_and_repair(&path, |_| true)? {
                // Mails listed as delivered are not waiting (see `mailbox`).
                let waiting = mailbox::waiting_count(&scan.records);
                if waiting > 0 {
                    mail_counts.insert(user.to_owned(), waiting);
                }
            }
        }

        let mut directory = Directory::default();
        let mut journal_records = 0;
        // An event this server does not know would be dropped by the next compaction:
        // moved aside now instead, where it stays.
        if let Some(scan) = repair::load_and_repair(&users_path, |f| decode_event(f).is_some())? {
            journal_records = scan.records.len();
            for event in scan.records.iter().filter_map(|f| decode_event(f)) {
                directory.apply(&event);
            }
        }

        let store = Store {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                mailbox_limit,
                mail_counts,
                directory: directory.clone(),
                journal_records,
            }),
            history: Mutex::new(HistoryFiles {
                capacity: history_cache_size(),
                ..HistoryFiles::default()
            }),
            usage: Arc::new(usage::Usage::measure(dir)),
        };
        Ok((store, directory))
    }

    fn mail_path(&self, user: &str) -> PathBuf {
        self.dir.join(MAIL_DIR).join(format!("{user}.log"))
    }

    fn history_path(&self, a: &str, b: &str) -> PathBuf {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        self.dir
            .join(HISTORY_DIR)
            .join(format!("{first}+{second}.log"))
    }

    /// Under the store's lock: calls `deliver_online()`; if it returns true,
    /// nothing is stored and Ok(false) is returned. Otherwise appends `mail`
    /// to `to`'s mailbox and fsyncs (file data) before returning Ok(true). If
    /// the mailbox already holds `mailbox_limit` messages, returns
    /// Err(MailboxFull) and stores nothing. This closure-under-lock shape
    /// exists so a login racing with a send can never strand a message:
    /// `read_mail_with` takes the same lock.
    pub fn deliver_or_store(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_inner(to, mail, deliver_online, true)
    }

    /// [`Store::deliver_or_store`] for a message that was already acknowledged to its sender
    /// (taken back from a connection that died): the mailbox limit does not apply, because
    /// refusing now would lose it.
    pub fn requeue(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_inner(to, mail, deliver_online, false)
    }

    fn deliver_or_store_inner(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
        enforce_limit: bool,
    ) -> Result<bool, StoreError> {
        check_name(to)?;
        let mut inner = self.inner.lock();
        if deliver_online() {
            return Ok(false);
        }
        let count = inner.mail_counts.get(to).copied().unwrap_or(0);
        if enforce_limit && count >= inner.mailbox_limit {
            return Err(StoreError::MailboxFull {
                user: to.to_owned(),
                limit: inner.mailbox_limit,
            });
        }
        let line = encode_mail(mail);
        let len = line.len() as u64;
        if !enforce_limit {
            self.usage.add(len);
        } else if !self.usage.reserve(len) {
            return Err(StoreError::StorageFull {
                limit: self.usage.limit(),
            });
        }
        let path = self.mail_path(to);
        if let Err(e) = append_line(&path, &line, true) {
            self.usage.sub(len);
            return Err(repair::at(&path)(e));
        }
        inner.mail_counts.insert(to.to_owned(), count + 1);
        Ok(true)
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

    /// Number of messages waiting for `user`.
    pub fn mailbox_len(&self, user: &str) -> usize {
        self.inner
            .lock()
            .mail_counts
            .get(user)
            .copied()
            .unwrap_or(0)
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

    /// Last `n` good entries of the a/b log, oldest first; missing file ->
    /// empty Vec. Reads backwards from the end in chunks until `n` records are
    /// found, so a large log is never read whole. A torn final line is
    /// ignored; damaged lines are skipped.
    pub fn history_tail(
        &self,
        a: &str,
        b: &str,
        n: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        check_name(a)?;
        check_name(b)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let path = self.history_path(a, b);
        // A writer that locked this log (see `lock_history`) may have delivered its
        // messages already and be about to write them: wait for it, so whoever has seen a
        // message finds it in the history. (Not under the map lock: that writer may need
        // it for another log.)
        let writer = self
            .history
            .lock()
            .open
            .get(&path)
            .map(|(f, _)| Arc::clone(f));
        if let Some(writer) = writer {
            drop(writer.lock());
        }
        // Held so no tail repair truncates the file mid-read. Appends may run
        // meanwhile: they only add past the length read below, and a half-written
        // last line is ignored like a torn one.
        let _guard = self.history.lock();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut pos = file.metadata()?.len();
        // Bytes [pos, pos + acc.len()) not yet consumed. Once `found_end`,
        // `acc` always ends with the LF of a complete, unparsed line.
        let mut acc: Vec<u8> = Vec::new();
        let mut found_end = false;
        let mut newest_first = Vec::new();
        let mut skipped = 0usize;
        let mut take = |line: &[u8], out: &mut Vec<HistoryEntry>| match record::decode_bytes(line)
            .ok()
            .and_then(|f| decode_history(&f))
        {
            Some(entry) => out.push(entry),
            None => skipped += 1,
        };
        // The last line without its LF: a record if intact (a file saved without a final
        // newline), else a torn write or one being appended right now, ignored.
        let take_unterminated = |tail: &[u8], out: &mut Vec<HistoryEntry>| {
            let lines = record::scan(tail);
            let entry = record::records(&lines).find_map(|f| decode_history(f));
            out.extend(entry);
        };
        while newest_first.len() < n {
            if !found_end {
                if let Some(i) = acc.iter().rposition(|&b| b == b'\n') {
                    take_unterminated(&acc[i + 1..], &mut newest_first);
                    acc.truncate(i + 1);
                    found_end = true;
                    continue;
                }
                if pos == 0 {
                    take_unterminated(&acc, &mut newest_first);
                    break;
                }
            } else {
                let body = &acc[..acc.len() - 1];
                if let Some(i) = body.iter().rposition(|&b| b == b'\n') {
                    take(&body[i + 1..], &mut newest_first);
                    acc.truncate(i + 1);
                    continue;
                }
                if pos == 0 {
                    take(body, &mut newest_first);
                    break;
                }
            }
            if pos == 0 {
                break;
            }
            let start = pos.saturating_sub(TAIL_CHUNK);
            let mut chunk = vec![0u8; (pos - start) as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&acc);
            acc = chunk;
            pos = start;
        }
        if skipped > 0 {
            log::warn!(
                "{}: skipped {skipped} damaged history record(s)",
                path.display()
            );
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Appends an event to users.log (fsync when `durable` is true), applies
    /// it to the store's own Directory copy, compacts when the journal is
    /// more than 2x live + 1000 records.
    ///
    /// A failed compaction is logged and retried on a later call, but does
    /// not fail this call: the event itself was recorded.
    pub fn record(&self, event: &Event, durable: bool) -> Result<(), StoreError> {
        let line = encode_event(event);
        let mut inner = self.inner.lock();
        let path = self.dir.join(USERS_LOG);
        append_line(&path, &line, durable).map_err(repair::at(&path))?;
        self.usage.add(line.len() as u64);
        inner.directory.apply(event);
        inner.journal_records += 1;
        if inner.journal_records > 2 * live_records(&inner.directory) + COMPACT_SLACK {
            match self.compact(&inner.directory) {
                Ok(written) => inner.journal_records = written,
                Err(e) => log::warn!("{}: compaction failed: {e}", self.dir.display()),
            }
        }
        Ok(())
    }

    /// Rewrites users.log as the minimal event set for `directory`, via a
    /// fsynced temp file renamed into place. Returns the new record count.
    fn compact(&self, directory: &Directory) -> io::Result<usize> {
        let tmp = self.dir.join(USERS_TMP);
        let events = snapshot_events(directory);
        let size = || fs::metadata(self.dir.join(USERS_LOG)).map_or(0, |m| m.len());
        let before = size();
        let result = write_journal(&tmp, &events, &self.dir);
        if result.is_ok() {
            self.usage.sub(before);
            self.usage.add(size());
        }
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| {
            log::info!(
                "{}: compacted journal to {} record(s)",
                self.dir.display(),
                events.len()
            );
            events.len()
        })
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
    use std::thread::ThreadId;

    #[test]
    fn decimal_formats_like_to_string() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 99, 1_000_000_007, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    /// Captures warnings per thread so a test can assert a warning path ran.
    struct Capture(parking_lot::Mutex<Vec<(ThreadId, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                self.0
                    .lock()
                    .push((std::thread::current().id(), r.args().to_string()));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(parking_lot::Mutex::new(Vec::new()));

    fn capture_logs() {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Warn);
    }

    fn my_warnings() -> Vec<String> {
        let me = std::thread::current().id();
        CAPTURE
            .0
            .lock()
            .iter()
            .filter(|(t, _)| *t == me)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn mail(from: &str, text: &str, kind: MailKind) -> Mail {
        Mail {
            from: from.into(),
            sent_at: 1_700_000_000,
            kind,
            text: text.into(),
            id: new_mail_id(),
        }
    }

    fn entry(i: u64, text: &str) -> HistoryEntry {
        HistoryEntry {
            at: 1_700_000_000 + i,
            session: match i % 2 {
                0 => Some(i as u32),
                _ => None,
            },
            sender: match i % 3 {
                0 => "alice".into(),
                _ => "bob".into(),
            },
            text: text.into(),
        }
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn mail_append_and_take_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mails = vec![
            mail("alice", "hi\tthere\nbob", MailKind::Private),
            mail("carol", "to all", MailKind::Broadcast),
            mail("dave", "group ✓", MailKind::Group("g1".into())),
        ];
        for m in &mails {
            assert!(store.deliver_or_store("bob", m, || false).unwrap());
        }
        assert_eq!(store.mailbox_len("bob"), 3);
        assert_eq!(store.mailbox_len("nobody"), 0);
        assert_eq!(store.take_mail("bob").unwrap(), mails);
        assert_eq!(store.mailbox_len("bob"), 0);
        assert!(store.take_mail("bob").unwrap().is_empty());
        assert!(!tmp.path().join("mail/bob.log").exists());
        assert!(store.take_mail("nobody").unwrap().is_empty());
        assert_eq!(store.dir(), tmp.path());
    }

    #[test]
    fn deliver_online_true_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mut called = false;
        let stored = store
            .deliver_or_store("bob", &mail("a", "x", MailKind::Private), || {
                called = true;
                true
            })
            .unwrap();
        assert!(called);
        assert!(!stored);
        assert_eq!(store.mailbox_len("bob"), 0);
        assert!(!tmp.path().join("mail/bob.log").exists());
    }

    #[test]
    fn mailbox_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let a = mail("a", "1", MailKind::Private);
        let b = mail("a", "2", MailKind::Private);
        store.deliver_or_store("bob", &a, || false).unwrap();
        store.deliver_or_store("bob", &b, || false).unwrap();
        let err = store
            .deliver_or_store("bob", &mail("a", "3", MailKind::Private), || false)
            .unwrap_err();
        assert!(matches!(&err, StoreError::MailboxFull { user, limit: 2 } if user == "bob"));
        assert_eq!(err.to_string(), "mailbox of bob is full (2 messages)");
        assert_eq!(store.mailbox_len("bob"), 2);
        drop(store);
        // The limit survives a restart, and the stored mail is intact.
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        assert!(store
            .deliver_or_store("bob", &mail("a", "3", MailKind::Private), || false)
            .is_err());
        assert_eq!(store.take_mail("bob").unwrap(), vec![a, b]);
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
    fn a_history_read_waits_for_a_writer_that_locked_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let store = Arc::new(store);
        store
            .append_history("alice", "bob", &entry(1, "one"))
            .unwrap();
        // Locked, message delivered, not yet written: a reader who saw it must find it.
        let mut log = store.lock_history("alice", "bob").unwrap();
        let reader = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.history_tail("bob", "alice", 1))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        log.append(&[entry(2, "two").borrowed()]).unwrap();
        drop(log);
        let tail = reader.join().unwrap().unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].text, "two");
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
            let (store, dir) = Store::open(tmp.path(), 10).unwrap();
            assert_eq!(dir, Directory::default());
            store.deliver_or_store("bob", &m, || false).unwrap();
            store
                .append_history("bob", "alice", &entry(1, "one"))
                .unwrap();
            store
                .append_history("alice", "bob", &entry(2, "two"))
                .unwrap();
            for (i, e) in events.iter().enumerate() {
                store.record(e, i % 2 == 0).unwrap();
                expected.apply(e);
            }
        }
        let (store, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir, expected);
        assert_eq!(dir.users["alice"].last_seen, Some(42));
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
    fn torn_mailbox_tail_is_moved_aside_on_reopen() {
        capture_logs();
        let good = mail("a", "good", MailKind::Private);
        let bad_crc = record::encode(&["mail", "a", "1", "private", "badcrc"])
            .replacen("badcrc", "badcrC", 1);
        let tails: [&[u8]; 3] = [
            b"garbage without newline",
            bad_crc.as_bytes(),
            b"line\tdeadbeef\nmore garbage",
        ];
        for tail in tails {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("mail/bob.log");
            // The same text twice: two mails, two ids.
            let again = Mail {
                id: new_mail_id(),
                ..good.clone()
            };
            {
                let (store, _) = Store::open(tmp.path(), 10).unwrap();
                store.deliver_or_store("bob", &good, || false).unwrap();
                store.deliver_or_store("bob", &again, || false).unwrap();
            }
            let good_len = fs::metadata(&path).unwrap().len();
            append_raw(&path, tail);
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            let warned = my_warnings()
                .iter()
                .any(|w| w.contains("bob.log") && w.contains(&format!("byte offset {good_len}")));
            assert!(warned, "no torn-tail warning in {:?}", my_warnings());
            assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
            assert_eq!(store.mailbox_len("bob"), 2);
            let next = mail("c", "after", MailKind::Broadcast);
            store.deliver_or_store("bob", &next, || false).unwrap();
            assert_eq!(
                store.take_mail("bob").unwrap(),
                vec![good.clone(), again, next]
            );
        }
    }

    #[test]
    fn corrupted_middle_mail_record_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mail/bob.log");
        let a = mail("a", "first", MailKind::Private);
        let b = mail("b", "second", MailKind::Private);
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store.deliver_or_store("bob", &a, || false).unwrap();
        }
        append_raw(&path, b"damaged line\n");
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        store.deliver_or_store("bob", &b, || false).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        assert_eq!(store.take_mail("bob").unwrap(), vec![a, b]);
    }

    #[test]
    fn a_damaged_mail_is_moved_aside_with_a_warning_naming_both_paths() {
        capture_logs();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mail/bob.log");
        let a = mail("a", "first", MailKind::Private);
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store.deliver_or_store("bob", &a, || false).unwrap();
        }
        append_raw(&path, b"damaged\tline\t00000000\n");
        append_raw(&path, encode_mail(&a).as_bytes());
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        let side = repair::side_path(&path);
        let named = |w: &String| {
            w.contains(&*path.to_string_lossy()) && w.contains(&*side.to_string_lossy())
        };
        assert!(my_warnings().iter().any(named), "{:?}", my_warnings());
        assert_eq!(fs::read(&side).unwrap(), b"damaged\tline\t00000000\n");
        // The copied line is the same mail twice; the second gets an id of its own (see
        // `mailbox`), so one delivery cannot remove both.
        let taken = store.take_mail("bob").unwrap();
        assert_eq!(taken.len(), 2);
        assert_ne!(taken[0].id, taken[1].id);
        let without_id = |m: &Mail| Mail {
            id: String::new(),
            ..m.clone()
        };
        assert!(taken.iter().all(|m| without_id(m) == without_id(&a)));
    }

    #[test]
    fn history_tail_small_and_large_n() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let all: Vec<_> = (0..20).map(|i| entry(i, &format!("msg {i}"))).collect();
        for e in &all {
            store.append_history("alice", "bob", e).unwrap();
        }
        assert_eq!(store.history_tail("bob", "alice", 5).unwrap(), all[15..]);
        assert_eq!(store.history_tail("alice", "bob", 20).unwrap(), all);
        assert_eq!(store.history_tail("alice", "bob", 100).unwrap(), all);
        assert!(store.history_tail("alice", "bob", 0).unwrap().is_empty());
    }

    #[test]
    fn history_tail_on_5mb_log_reads_backwards() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let path = tmp.path().join("history/alice+bob.log");
        let mut count = 0u64;
        {
            let mut out = BufWriter::new(File::create(&path).unwrap());
            let mut written = 0usize;
            while written < 5 * 1024 * 1024 {
                let line = encode_history(&entry(
                    count,
                    &format!("message number {count} {}", "x".repeat(40)),
                ));
                written += line.len();
                out.write_all(line.as_bytes()).unwrap();
                count += 1;
            }
            // A few lines longer than one read chunk, spanning chunk borders.
            for i in 0..3 {
                let big = "y".repeat(TAIL_CHUNK as usize + 1000 * i);
                out.write_all(encode_history(&entry(count, &big)).as_bytes())
                    .unwrap();
                count += 1;
            }
        }
        let last = entry(count, "the end");
        store.append_history("alice", "bob", &last).unwrap();
        count += 1;

        let tail = store.history_tail("alice", "bob", 5).unwrap();
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[4], last);
        assert_eq!(tail[3].text.len(), TAIL_CHUNK as usize + 2000);
        assert_eq!(tail[0].at, 1_700_000_000 + count - 5);

        let every = store.history_tail("alice", "bob", usize::MAX).unwrap();
        assert_eq!(every.len() as u64, count);
        assert!(every.windows(2).all(|w| w[0].at + 1 == w[1].at));
        assert_eq!(
            every[0],
            entry(0, &format!("message number 0 {}", "x".repeat(40)))
        );
    }

    #[test]
    fn history_torn_tail_is_ignored_then_repaired() {
        capture_logs();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("history/alice+bob.log");
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store
                .append_history("alice", "bob", &entry(1, "a"))
                .unwrap();
            store
                .append_history("alice", "bob", &entry(2, "b"))
                .unwrap();
        }
        let good_len = fs::metadata(&path).unwrap().len();
        append_raw(&path, b"torn half of a rec");
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(
            store.history_tail("alice", "bob", 10).unwrap(),
            vec![entry(1, "a"), entry(2, "b")]
        );
        store
            .append_history("bob", "alice", &entry(3, "c"))
            .unwrap();
        assert!(
            my_warnings()
                .iter()
                .any(|w| w.contains("alice+bob.log")
                    && w.contains(&format!("byte offset {good_len}")))
        );
        assert_eq!(
            store.history_tail("alice", "bob", 10).unwrap(),
            vec![entry(1, "a"), entry(2, "b"), entry(3, "c")]
        );
    }

    #[test]
    fn history_empty_or_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert!(store.history_tail("alice", "bob", 10).unwrap().is_empty());
        File::create(tmp.path().join("history/alice+bob.log")).unwrap();
        assert!(store.history_tail("alice", "bob", 10).unwrap().is_empty());
        fs::write(tmp.path().join("history/alice+carol.log"), b"no newline").unwrap();
        assert!(store.history_tail("alice", "carol", 10).unwrap().is_empty());
    }

    #[test]
    fn directory_apply_every_event() {
        let s = |x: &str| x.to_owned();
        let mut d = Directory::default();
        d.apply(&Event::Seen {
            user: s("al"),
            at: 5,
        });
        d.apply(&Event::Seen {
            user: s("al"),
            at: 7,
        });
        assert_eq!(d.users["al"].last_seen, Some(7));

        d.apply(&Event::Intro {
            user: s("al"),
            text: s("hi"),
        });
        assert_eq!(d.users["al"].intro.as_deref(), Some("hi"));
        d.apply(&Event::Intro {
            user: s("al"),
            text: s(""),
        });
        assert_eq!(d.users["al"].intro, None);

        d.apply(&Event::Status {
            user: s("al"),
            status: s("away"),
        });
        assert_eq!(d.users["al"].status.as_deref(), Some("away"));
        d.apply(&Event::Status {
            user: s("al"),
            status: s(""),
        });
        assert_eq!(d.users["al"].status, None);

        d.apply(&Event::Block {
            user: s("al"),
            target: s("ev"),
        });
        d.apply(&Event::Block {
            user: s("al"),
            target: s("ev"),
        });
        assert_eq!(d.users["al"].blocked, BTreeSet::from([s("ev")]));
        d.apply(&Event::Unblock {
            user: s("al"),
            target: s("ev"),
        });
        assert!(d.users["al"].blocked.is_empty());
        let before = d.clone();
        d.apply(&Event::Unblock {
            user: s("al"),
            target: s("zz"),
        });
        d.apply(&Event::Unblock {
            user: s("ghost"),
            target: s("zz"),
        });
        d.apply(&Event::Intro {
            user: s("ghost"),
            text: s(""),
        });
        assert_eq!(d, before);

        // A record that becomes all default disappears.
        d.apply(&Event::Block {
            user: s("bo"),
            target: s("al"),
        });
        d.apply(&Event::Unblock {
            user: s("bo"),
            target: s("al"),
        });
        assert!(!d.users.contains_key("bo"));

        d.apply(&Event::GroupCreate {
            group: s("g"),
            owner: s("al"),
        });
        assert_eq!(d.groups["g"].owner, "al");
        assert_eq!(d.groups["g"].members, BTreeSet::from([s("al")]));
        d.apply(&Event::GroupCreate {
            group: s("g"),
            owner: s("bo"),
        });
        assert_eq!(d.groups["g"].owner, "al");
        d.apply(&Event::GroupJoin {
            group: s("g"),
            user: s("bo"),
        });
        d.apply(&Event::GroupJoin {
            group: s("nope"),
            user: s("bo"),
        });
        assert!(!d.groups.contains_key("nope"));
        assert_eq!(d.groups["g"].members, BTreeSet::from([s("al"), s("bo")]));
        d.apply(&Event::GroupLeave {
            group: s("g"),
            user: s("al"),
        });
        assert_eq!(d.groups["g"].members, BTreeSet::from([s("bo")]));
        assert_eq!(d.groups["g"].owner, "al");
        d.apply(&Event::GroupLeave {
            group: s("g"),
            user: s("zz"),
        });
        d.apply(&Event::GroupLeave {
            group: s("g"),
            user: s("bo"),
        });
        assert!(d.groups.is_empty());
    }

    fn sample_directory() -> Directory {
        let s = |x: &str| x.to_owned();
        let mut d = Directory::default();
        for e in [
            Event::Seen {
                user: s("al"),
                at: 1,
            },
            Event::Intro {
                user: s("al"),
                text: s("tab\there"),
            },
            Event::Status {
                user: s("bo"),
                status: s("busy"),
            },
            Event::Block {
                user: s("bo"),
                target: s("al"),
            },
            Event::Block {
                user: s("bo"),
                target: s("cy"),
            },
            Event::GroupCreate {
                group: s("g1"),
                owner: s("al"),
            },
            Event::GroupJoin {
                group: s("g1"),
                user: s("bo"),
            },
            Event::GroupJoin {
                group: s("g1"),
                user: s("cy"),
            },
            Event::GroupLeave {
                group: s("g1"),
                user: s("al"),
            },
            Event::GroupCreate {
                group: s("g2"),
                owner: s("cy"),
            },
        ] {
            d.apply(&e);
        }
        d
    }

    #[test]
    fn snapshot_rebuilds_directory() {
        let d = sample_directory();
        let events = snapshot_events(&d);
        assert_eq!(events.len(), live_records(&d));
        let mut rebuilt = Directory::default();
        for e in &events {
            let line = encode_event(e);
            let fields = record::decode(line.trim_end_matches('\n')).unwrap();
            rebuilt.apply(&decode_event(&fields).unwrap());
        }
        assert_eq!(rebuilt, d);
    }

    #[test]
    fn compaction_triggers_and_preserves_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let log_path = tmp.path().join(USERS_LOG);
        let mut expected = Directory::default();
        let mut events = snapshot_events(&sample_directory());
        for at in 0..3000 {
            events.push(Event::Seen {
                user: "al".into(),
                at,
            });
        }
        let mut max_lines = 0;
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            for e in &events {
                store.record(e, false).unwrap();
                expected.apply(e);
                let lines = fs::read(&log_path)
                    .unwrap()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                max_lines = max_lines.max(lines);
                assert_eq!(lines, store.inner.lock().journal_records);
            }
            assert_eq!(store.inner.lock().directory, expected);
        }
        let live = live_records(&expected);
        assert!(max_lines <= 2 * live + COMPACT_SLACK);
        let lines = fs::read_to_string(&log_path).unwrap().lines().count();
        assert!(lines < events.len(), "journal was never compacted");
        assert!(!tmp.path().join(USERS_TMP).exists());
        let (_, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir, expected);
        assert_eq!(dir.users["al"].last_seen, Some(2999));
    }

    #[test]
    fn unknown_and_malformed_events_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut journal = record::encode(&["seen", "al", "3"]);
        journal.push_str(&record::encode(&["future", "x", "y"]));
        journal.push_str(&record::encode(&["seen", "bo", "not-a-number"]));
        journal.push_str(&record::encode(&["status", "al", "here", "extra"]));
        fs::write(tmp.path().join(USERS_LOG), journal).unwrap();
        let (_, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir.users.len(), 1);
        assert_eq!(dir.users["al"].last_seen, Some(3));
        assert_eq!(dir.users["al"].status.as_deref(), Some("here"));
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
