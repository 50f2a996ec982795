//! What the IRC door keeps beside the hub: who of the online users came through it (the
//! username, real name and host their `USER` gave, their away text, their connection) and
//! per-channel details IRC has and lanchat groups do not (operators, voices, topic,
//! creation time). Everything else (who is online, groups and their members, statuses,
//! blacklists, mail) stays in the hub, the one source of truth for every door.
//!
//! Lock order: the hub's locks, then a connection's encoder, then this world's lock, which
//! is a leaf: nothing here calls the hub or writes to a connection while holding it
//! (encoders read it while a hub method queues lines).

use super::message::same_name;
use crate::server::outbox::Conn;
use parking_lot::RwLock;
// Maps keyed by user and channel names hash with foldhash, as the hub's do.
use foldhash::HashMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch, for signon and topic times.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One user connected through the IRC door.
pub struct IrcUser {
    /// Their connection (to tell them of JOIN, PART, MODE and TOPIC in their channels).
    pub conn: Arc<Conn>,
    /// The username from `USER`.
    pub username: String,
    /// The real name from `USER`.
    pub realname: String,
    /// Their address as shown in masks.
    pub host: String,
    /// When they registered (Unix seconds).
    pub signon: u64,
    /// When they last sent something other than PING/PONG (Unix seconds), updated by their
    /// own thread without the world's lock.
    pub active: Arc<AtomicU64>,
    /// Their `AWAY` text, while away.
    pub away: Option<String>,
    /// Their `QUIT` text, set just before they leave so others' QUIT lines carry it.
    pub quit: Option<String>,
    /// Set while an open-mode nick change is in flight: the new nick.
    pub renamed_to: Option<String>,
    /// Set while an open-mode nick change is in flight: this entry's login is a rename.
    pub renaming: bool,
}

/// IRC details of one channel (a lanchat group, keyed by its name in lower case).
#[derive(Default, Clone)]
pub struct ChannelMeta {
    /// Channel operators (`@`): the first joiner, and those an operator opped.
    pub ops: BTreeSet<String>,
    /// Voiced users (`+`).
    pub voices: BTreeSet<String>,
    /// The topic, who set it and when.
    pub topic: Option<(String, String, u64)>,
    /// When the channel was first seen by this door (Unix seconds).
    pub created: u64,
    /// `-t`: any member may set the topic (channels start `+t`, operators only).
    pub open_topic: bool,
}

/// The IRC door's shared state for one server.
pub struct World {
    /// `server_name`: the source of numerics, the PONG argument.
    pub server_name: String,
    /// The channel every IRC user joins at login, where broadcasts are said (`irc_lobby`).
    pub lobby: String,
    /// The MOTD lines (`irc_motd`); empty means ERR_NOMOTD.
    pub motd: Vec<String>,
    /// When the server started (Unix seconds), for 003 and the lobby's 329.
    pub started: u64,
    /// The mutable part.
    state: RwLock<WorldState>,
    /// Bumped (under the write lock) by every change to a user's entry, so that a line
    /// translated for one client may be reused for the next while it has not moved: what
    /// [`super::translate::People`] answers depends on nothing else.
    generation: AtomicU64,
}

#[derive(Default)]
struct WorldState {
    /// IRC users by lanchat name.
    users: HashMap<String, IrcUser>,
    /// Channel details by lower-case group name.
    channels: HashMap<String, ChannelMeta>,
    /// Most users seen online at once (265/266).
    max_users: usize,
}

impl World {
    /// A world for a server called `server_name` whose lobby is `lobby`.
    pub fn new(server_name: &str, lobby: &str, motd: &str) -> World {
        World {
            server_name: server_name.to_string(),
            lobby: lobby.to_string(),
            motd: motd.lines().map(str::to_string).collect(),
            started: unix_now(),
            state: RwLock::new(WorldState::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes with every change to the users' entries (see the field).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks a change to the users' entries; called with the write lock held.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `nick!user@host` for any user: the `USER` details of an IRC user, and for a user of
    /// another door their name as username and the server's name as host.
    pub fn mask(&self, name: &str) -> String {
        match self.state.read().users.get(name) {
            Some(u) => format!("{name}!{}@{}", u.username, u.host),
            None => format!("{name}!{name}@{}", self.server_name),
        }
    }

    /// `(username, host, realname, signon, idle seconds)` of an IRC user.
    pub fn details(&self, name: &str) -> Option<(String, String, String, u64, u64)> {
        let now = unix_now();
        self.state.read().users.get(name).map(|u| {
            (
                u.username.clone(),
                u.host.clone(),
                u.realname.clone(),
                u.signon,
                now.saturating_sub(u.active.load(Ordering::Relaxed)),
            )
        })
    }

    /// Adds (or, for a replacing login, replaces) an IRC user.
    pub fn register(&self, name: &str, user: IrcUser) {
        let mut state = self.state.write();
        state.users.insert(name.to_string(), user);
        self.changed();
    }

    /// Removes `name` if `conn_id` is still its connection.
    pub fn unregister(&self, name: &str, conn_id: u64) {
        let mut state = self.state.write();
        if state.users.get(name).is_some_and(|u| u.conn.id == conn_id) {
            state.users.remove(name);
            self.changed();
        }
    }

    /// Runs `f` on `name`'s entry if it belongs to `conn_id`.
    pub fn update(&self, name: &str, conn_id: u64, f: impl FnOnce(&mut IrcUser)) {
        let mut state = self.state.write();
        if let Some(u) = state.users.get_mut(name).filter(|u| u.conn.id == conn_id) {
            f(u);
            self.changed();
        }
    }

    /// An IRC user's away text.
    pub fn away(&self, name: &str) -> Option<String> {
        self.state
            .read()
            .users
            .get(name)
            .and_then(|u| u.away.clone())
    }

    /// An IRC user's quit text, if they are leaving with one.
    pub fn quit_reason(&self, name: &str) -> Option<String> {
        self.state
            .read()
            .users
            .get(name)
            .and_then(|u| u.quit.clone())
    }

    /// The new nick of a user in the middle of a nick change.
    pub fn renamed_to(&self, name: &str) -> Option<String> {
        self.state
            .read()
            .users
            .get(name)
            .and_then(|u| u.renamed_to.clone())
    }

    /// Whether `name` is logging in as the second half of a nick change.
    pub fn is_renaming(&self, name: &str) -> bool {
        self.state
            .read()
            .users
            .get(name)
            .is_some_and(|u| u.renaming)
    }

    /// The connections of those of `names` who use IRC, except `except`.
    pub fn conns_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
        except: &str,
    ) -> Vec<Arc<Conn>> {
        let state = self.state.read();
        names
            .into_iter()
            .filter(|n| n.as_str() != except)
            .filter_map(|n| state.users.get(n.as_str()).map(|u| Arc::clone(&u.conn)))
            .collect()
    }

    /// Records how many users are online now; returns the most ever seen.
    pub fn note_users(&self, online: usize) -> usize {
        let mut state = self.state.write();
        state.max_users = state.max_users.max(online);
        state.max_users
    }

    /// A copy of a channel's details (created on first sight).
    pub fn channel(&self, group: &str) -> ChannelMeta {
        let key = group.to_ascii_lowercase();
        if let Some(c) = self.state.read().channels.get(&key) {
            return c.clone();
        }
        let mut state = self.state.write();
        state
            .channels
            .entry(key)
            .or_insert_with(|| ChannelMeta {
                created: unix_now(),
                ..ChannelMeta::default()
            })
            .clone()
    }

    /// Changes a channel's details.
    pub fn update_channel(&self, group: &str, f: impl FnOnce(&mut ChannelMeta)) {
        let mut state = self.state.write();
        let meta = state
            .channels
            .entry(group.to_ascii_lowercase())
            .or_insert_with(|| ChannelMeta {
                created: unix_now(),
                ..ChannelMeta::default()
            });
        f(meta);
    }

    /// Forgets `name`'s operator and voice status in a channel it left.
    pub fn left_channel(&self, group: &str, name: &str) {
        self.update_channel(group, |c| {
            c.ops.remove(name);
            c.voices.remove(name);
        });
    }

    /// Whether `channel` (with its `#`) is the lobby.
    pub fn is_lobby(&self, channel: &str) -> bool {
        same_name(channel, &self.lobby)
    }
}

/// The `@`/`+` prefix of `name` in a channel.
pub fn prefix(meta: &ChannelMeta, name: &str) -> &'static str {
    if meta.ops.contains(name) {
        "@"
    } else if meta.voices.contains(name) {
        "+"
    } else {
        ""
    }
}
