//! What the chat rules change: who is online, the directory (last seen, intros, blacklists,
//! statuses, groups: the store's [`Directory`], the one copy there is), chat sessions and
//! pending requests. Plain data with the queries every rule shares; no lock (the hub holds
//! it) and no socket (a connection is an opaque handle `C` that the rules only copy into
//! their outcome).

use super::quota;
use crate::protocol::Status;
use crate::store::{Directory, Event as Record};
// The maps, keyed by user names, hash with foldhash (seeded per process) instead of std's
// SipHash, which cost about 160 instructions per name, five names per private message.
use foldhash::{HashMap, HashSet};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A logged-in user.
pub struct Online<C> {
    /// Where their lines go.
    pub conn: C,
    /// Their chat session, if any (its number).
    pub session: Option<u32>,
    /// The port their client takes direct messages on (`p2p PORT`), if it does.
    pub p2p_port: Option<u16>,
    /// Whether this login made them a user (open mode): their last seen is then this
    /// login's time, not a logout's, and `wholast` does not show it while they are online.
    pub new_user: bool,
}

/// The logged-in users, by name, in name order and by ASCII-folded name: a lobby's NAMES
/// lists them all in order, and an IRC nick must not differ from an online one only in
/// case; sorting them, and scanning them for a case twin, per IRC login was most of what a
/// login cost in a crowd. Reads go through `Deref` to the map; changes go through
/// [`OnlineUsers::insert`] and [`OnlineUsers::remove`], which keep the three in step.
pub struct OnlineUsers<C> {
    /// Each online user by name.
    by_name: HashMap<String, Online<C>>,
    /// With what others may see of each (a copy of their directory record's status and
    /// whether they block anyone, kept by [`State::refresh_seen`]): a NAMES reads only this.
    in_order: BTreeMap<String, Seen>,
    /// How many online names fold to each lowercase name.
    folded: HashMap<String, usize>,
}

impl<C> Default for OnlineUsers<C> {
    fn default() -> Self {
        OnlineUsers {
            by_name: HashMap::default(),
            in_order: BTreeMap::new(),
            folded: HashMap::default(),
        }
    }
}

/// A user's status as the directory has it (no record, or none set: available).
pub fn status_in(directory: &Directory, name: &str) -> Status {
    directory
        .status(name)
        .and_then(Status::parse)
        .unwrap_or(Status::Available)
}

/// What decides whether an online user is shown to others, from their directory record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Their status.
    pub status: Status,
    /// Whether their blacklist is not empty (only then is it read).
    pub blocks_anyone: bool,
}

impl<C> OnlineUsers<C> {
    /// Puts `name` online (replacing an entry of the same name).
    pub fn insert(&mut self, name: &str, user: Online<C>, seen: Seen) {
        if self.by_name.insert(name.to_string(), user).is_none() {
            *self.folded.entry(name.to_ascii_lowercase()).or_default() += 1;
        }
        self.in_order.insert(name.to_string(), seen);
    }

    /// Records what others may see of `name`, if online.
    fn set_seen(&mut self, name: &str, seen: Seen) {
        if let Some(s) = self.in_order.get_mut(name) {
            *s = seen;
        }
    }

    /// Takes `name` offline; their entry, if they were online.
    pub fn remove(&mut self, name: &str) -> Option<Online<C>> {
        let user = self.by_name.remove(name)?;
        self.in_order.remove(name);
        let fold = name.to_ascii_lowercase();
        if let Some(n) = self.folded.get_mut(&fold) {
            *n -= 1;
            if *n == 0 {
                self.folded.remove(&fold);
            }
        }
        Some(user)
    }

    /// Whether a name other than `name` that equals it ignoring ASCII case is online.
    pub fn has_case_twin(&self, name: &str) -> bool {
        let same_fold = self
            .folded
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0);
        same_fold > usize::from(self.by_name.contains_key(name))
    }

    /// `name`'s entry, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Online<C>> {
        self.by_name.get_mut(name)
    }

    /// Every name, in order, with what others may see of them.
    pub fn names_in_order(&self) -> impl Iterator<Item = (&String, &Seen)> {
        self.in_order.iter()
    }
}

impl<C> std::ops::Deref for OnlineUsers<C> {
    type Target = HashMap<String, Online<C>>;

    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

/// A two-person chat session (seed 000).
#[derive(Clone, Debug)]
pub struct ChatSession {
    /// Who asked.
    pub from: String,
    /// Who was asked.
    pub to: String,
    /// False while waiting for `to` to accept.
    pub started: bool,
    /// Order of requests, so a bare `accept` answers the most recent one.
    pub asked: u64,
}

/// Everything the rules change, kept behind the hub's main lock.
pub struct State<C> {
    /// Logged-in users by name.
    pub online: OnlineUsers<C>,
    /// What is kept of users and groups across restarts. Read it freely; change it only
    /// with [`State::record`], so every change reaches the journal.
    pub directory: Directory,
    /// Chat sessions by number, requested or started.
    pub sessions: HashMap<u32, ChatSession>,
    /// Counter for [`ChatSession::asked`] and address requests: the order of all requests.
    pub requests: u64,
    /// Address-exchange requests waiting for an answer: (from, to) -> (order, unix time).
    pub addr_requests: HashMap<(String, String), (u64, u64)>,
    /// Users who exchanged addresses, each pair as (smaller name, larger name).
    pub pairs: HashSet<(String, String)>,
    /// In open mode: users created per address (`max_new_users_per_ip`).
    pub new_users: quota::PerAddress,
    /// In open mode: groups existing now per creating address (`max_groups_per_ip`), and
    /// which address created each, to count it down when the group is deleted.
    pub groups_made: quota::PerAddress,
    /// The creating address of each group counted in `groups_made`.
    pub group_origin: HashMap<String, IpAddr>,
}

impl<C> Default for State<C> {
    fn default() -> Self {
        State {
            online: OnlineUsers::default(),
            directory: Directory::default(),
            sessions: HashMap::default(),
            requests: 0,
            addr_requests: HashMap::default(),
            pairs: HashSet::default(),
            new_users: quota::PerAddress::default(),
            groups_made: quota::PerAddress::default(),
            group_origin: HashMap::default(),
        }
    }
}

impl<C> State<C> {
    /// Changes the directory: applies `event` as a replay of the journal will, queues it for
    /// the journal (the hub writes it once the lock is released), and keeps what is derived
    /// from the directory in step (the online list's view of a user, the count of groups an
    /// address made).
    pub fn record(&mut self, event: Record) {
        let (seen, group) = match &event {
            Record::Status { user, .. }
            | Record::Block { user, .. }
            | Record::Unblock { user, .. } => (Some(user.clone()), None),
            Record::GroupLeave { group, .. } => (None, Some(group.clone())),
            _ => (None, None),
        };
        self.directory.record(event);
        if let Some(user) = seen {
            self.refresh_seen(&user);
        }
        if let Some(group) = group.filter(|g| self.directory.group(g).is_none()) {
            if let Some(ip) = self.group_origin.remove(&group) {
                self.groups_made.remove(ip);
            }
        }
    }

    /// `name`'s status (available when unknown or unset).
    pub fn status_of(&self, name: &str) -> Status {
        status_in(&self.directory, name)
    }

    /// Whether `owner` has blocked `other`.
    pub fn blocks(&self, owner: &str, other: &str) -> bool {
        self.directory.blocks(owner, other)
    }

    /// What others may see of `name`, from their record.
    pub fn seen_of(&self, name: &str) -> Seen {
        Seen {
            status: self.status_of(name),
            blocks_anyone: self.directory.blocks_anyone(name),
        }
    }

    /// Copies a change of `name`'s status or blacklist to the online list (a no-op if
    /// they are offline): [`State::record`] calls it for every change of either.
    fn refresh_seen(&mut self, name: &str) {
        let seen = self.seen_of(name);
        self.online.set_seen(name, seen);
    }
}

impl<C: Clone> State<C> {
    /// Puts `name` online on `conn`, with no chat session or direct-message port yet;
    /// `new_user` when this login made them a user.
    pub fn put_online(&mut self, name: &str, conn: C, new_user: bool) {
        let seen = self.seen_of(name);
        self.online.insert(
            name,
            Online {
                conn,
                session: None,
                p2p_port: None,
                new_user,
            },
            seen,
        );
    }

    /// Whether `viewer` may see that `subject`, of whom others see `seen`, is online: the
    /// one rule for it. The directory is read only if `subject` blocks someone.
    pub fn shown_to(&self, subject: &str, seen: &Seen, viewer: &str) -> bool {
        subject == viewer
            || (seen.status != Status::Invisible
                && !(seen.blocks_anyone && self.blocks(subject, viewer)))
    }

    /// Whether `viewer` may see that `subject` is online.
    pub fn visible_to(&self, subject: &str, viewer: &str) -> bool {
        self.shown_to(subject, &self.seen_of(subject), viewer)
    }

    /// `name`'s connection, if online.
    pub fn conn(&self, name: &str) -> Option<C> {
        self.online.get(name).map(|o| o.conn.clone())
    }

    /// `name`'s started chat session, if any.
    pub fn session_of(&self, name: &str) -> Option<u32> {
        self.online.get(name).and_then(|o| o.session)
    }
}
