//! The user directory: what the server keeps of each user (last seen, intro, blacklist,
//! status) and of each group, rebuilt by replaying [`Event`]s with [`Directory::apply`], a
//! pure function, so the journal (`journal`) replays to exactly the state the server had.
//!
//! What it does not do: read or write files (`journal` does), or decide who may change
//! what (the chat rules do).

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
