//! The user directory: what the server keeps of each user (last seen, intro, blacklist,
//! status) and of each group. There is one, owned by the store's rules of change: it is
//! built by replaying `users.log` at open and then lives in the chat rules' state, where the
//! rules read it through the queries below and change it only with [`Directory::record`].
//! That applies an [`Event`] with [`Directory::apply`], the pure function replay uses, and
//! queues it for the journal, so the live directory and a replay of the journal cannot
//! disagree.
//!
//! What it does not do: read or write files (`journal` does, taking the queued events in
//! the order they were applied), or decide who may change what (the chat rules do).

use std::collections::{BTreeMap, BTreeSet};
// Users are looked up by name several times per message (blacklists, statuses): foldhash,
// seeded per process, is a few times cheaper than std's SipHash for short names.
use foldhash::HashMap;

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

impl UserRecord {
    /// The events a snapshot of this record takes.
    fn weight(&self) -> usize {
        usize::from(self.last_seen.is_some())
            + usize::from(self.intro.is_some())
            + usize::from(self.status.is_some())
            + self.blocked.len()
    }
}

/// A chat group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Who created the group (kept even if they leave).
    pub owner: String,
    /// Current members; never empty for a group in a [`Directory`].
    pub members: BTreeSet<String>,
}

impl Group {
    /// The events a snapshot of this group takes: its creation, a join for each member but
    /// the owner, and the owner's leave if they left.
    fn weight(&self) -> usize {
        let owner_in = self.members.contains(&self.owner);
        1 + self.members.len() - usize::from(owner_in) + usize::from(!owner_in)
    }
}

/// All user state, rebuilt by replaying [`Event`]s. Changed only through
/// [`Directory::record`] (and, at open, the replay), so every change is in the journal.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Per-user state; users whose state is all default are not present.
    users: HashMap<String, UserRecord>,
    /// Groups by name, in name order (`group list` shows them so).
    groups: BTreeMap<String, Group>,
    /// Events applied but not yet in the journal, in the order they were applied.
    unwritten: Vec<Event>,
    /// The number of events a snapshot of this directory takes (see `journal`), kept as
    /// events apply so the journal can tell when to compact without a walk of every user.
    live: usize,
}

/// Two directories are equal when they hold the same users and groups, whatever is still to
/// be written of them.
impl PartialEq for Directory {
    fn eq(&self, other: &Self) -> bool {
        self.users == other.users && self.groups == other.groups
    }
}

impl Eq for Directory {}

impl Directory {
    /// Changes the directory: applies `event` and queues it for the journal (the store
    /// writes the queue in order, see `Store::write_journal`).
    pub fn record(&mut self, event: Event) {
        self.apply(&event);
        self.unwritten.push(event);
    }

    /// Whether events wait to be written to the journal.
    pub fn has_unwritten(&self) -> bool {
        !self.unwritten.is_empty()
    }

    /// The events waiting to be written to the journal, oldest first.
    pub fn unwritten(&self) -> &[Event] {
        &self.unwritten
    }

    /// Takes the events waiting for the journal, oldest first.
    pub(super) fn take_unwritten(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.unwritten)
    }

    /// The number of events a snapshot of the directory takes.
    pub(super) fn live_records(&self) -> usize {
        self.live
    }

    /// `name`'s record, if the directory has anything of them.
    pub fn user(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(name)
    }

    /// Whether the directory has anything of `name` (in open mode: whether they are a user).
    pub fn knows(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Every user with a record, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = (&String, &UserRecord)> {
        self.users.iter()
    }

    /// `name`'s status as set, if set.
    pub fn status(&self, name: &str) -> Option<&str> {
        self.users.get(name)?.status.as_deref()
    }

    /// `name`'s intro, if set.
    pub fn intro(&self, name: &str) -> Option<&str> {
        self.users.get(name)?.intro.as_deref()
    }

    /// Whether `owner` has blocked `other`.
    pub fn blocks(&self, owner: &str, other: &str) -> bool {
        self.users
            .get(owner)
            .is_some_and(|u| u.blocked.contains(other))
    }

    /// Whether `owner` has blocked anyone.
    pub fn blocks_anyone(&self, owner: &str) -> bool {
        self.users.get(owner).is_some_and(|u| !u.blocked.is_empty())
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Every group, in name order.
    pub fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }

    /// Applies one event. Pure and deterministic, so replaying the journal
    /// rebuilds exactly the state the server had. Events that change nothing
    /// (unblocking someone not blocked, joining a missing group, creating an
    /// existing group, leaving a group one is not in) are no-ops, and a user
    /// whose record becomes all default is removed.
    pub(super) fn apply(&mut self, event: &Event) {
        let before = self.weight(event);
        self.change(event);
        self.live = self.live + self.weight(event) - before;
    }

    /// The snapshot events of the one user or group `event` is about.
    fn weight(&self, event: &Event) -> usize {
        match event {
            Event::Seen { user, .. }
            | Event::Intro { user, .. }
            | Event::Status { user, .. }
            | Event::Block { user, .. }
            | Event::Unblock { user, .. } => self.users.get(user).map_or(0, UserRecord::weight),
            Event::GroupCreate { group, .. }
            | Event::GroupJoin { group, .. }
            | Event::GroupLeave { group, .. } => self.groups.get(group).map_or(0, Group::weight),
        }
    }

    fn change(&mut self, event: &Event) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
