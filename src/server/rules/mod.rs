//! The chat rules as a state machine: a [`State`] changed by one function per command, each
//! returning an [`Outcome`] (what to answer, what to deliver to whom), as typed values; what
//! a rule changes in the user directory it changes with [`State::record`], as the journal
//! event a replay will apply. No lock, no socket, no clock: the hub takes its lock, applies
//! a rule, releases the lock, and then does the I/O (the journal among it); a test applies a
//! rule to a `State` it built.
//!
//! The rules are split by feature: [`login`] (going online and offline), [`messaging`]
//! (whom a message may reach, what its sender is told), [`blacklist`] (blacklists, status,
//! intro), [`sessions`] (two-person chat sessions), [`addresses`] (direct-message address
//! exchange), [`directory`] (who is online, who was) and [`groups`]. The delivery of messages and
//! offline mail stays in the hub: it is interleaved with the store's mailbox lock.
//!
//! A connection is an opaque handle `C` ([`Endpoint`]): the rules copy it into deliveries
//! and read its addresses, nothing more. The hub uses `Arc<Conn>`; tests use a plain value.

pub mod addresses;
pub mod blacklist;
pub mod directory;
mod event;
pub mod groups;
pub mod login;
pub mod messaging;
pub mod quota;
#[cfg(test)]
mod replay;
pub mod sessions;
mod state;

pub use event::{
    ChatEvent, LogoutReason, NotKept, PresenceChange, Refusal, SelfAction, UserEntry, UserList,
};
pub use state::{ChatSession, State};

use crate::credentials::Credentials;
use crate::store::Event as Record;
use std::net::IpAddr;

/// What the rules need of a connection handle.
pub trait Endpoint: Clone {
    /// Which connection it is (unique per server run).
    fn id(&self) -> u64;
    /// The client's address as the server sees it.
    fn peer_ip(&self) -> IpAddr;
    /// The server's own address on this connection (which interface the client reached).
    fn local_ip(&self) -> Option<IpAddr>;
}

/// Who can be addressed: in open mode, whoever the directory knows; otherwise the users
/// of credentials.txt.
#[derive(Clone, Copy)]
pub enum Registry<'a> {
    /// `auth = "open"`: users are learnt as they log in.
    Open,
    /// The users of credentials.txt.
    Listed(&'a Credentials),
}

impl<C> State<C> {
    /// Whether `name` is a user others can address.
    pub fn is_registered(&self, registry: Registry<'_>, name: &str) -> bool {
        match registry {
            Registry::Open => self.directory.knows(name),
            Registry::Listed(credentials) => credentials.contains(name),
        }
    }
}

/// What applying a rule asks the driver to do, in this order: deliver to others, answer
/// the caller. (What the rule changed in the directory waits in it for the journal, see
/// [`State::record`].)
#[must_use]
pub struct Outcome<C> {
    /// Events for other users' connections, in order.
    pub deliveries: Vec<(C, ChatEvent)>,
    /// The caller's own presence changes, for whoever may see them (the driver picks who,
    /// and whether in a summary).
    pub presence: Vec<PresenceChange>,
    /// The answer to the caller, in order.
    pub replies: Vec<ChatEvent>,
}

impl<C> Default for Outcome<C> {
    fn default() -> Self {
        Outcome {
            deliveries: Vec::new(),
            presence: Vec::new(),
            replies: Vec::new(),
        }
    }
}

impl<C> Outcome<C> {
    /// An outcome that only answers the caller.
    pub fn reply(event: ChatEvent) -> Self {
        Outcome {
            replies: vec![event],
            ..Outcome::default()
        }
    }

    /// An outcome that refuses the command.
    pub fn refuse(why: Refusal) -> Self {
        Outcome::reply(ChatEvent::Refused(why))
    }

    /// Adds an event for another connection.
    pub fn deliver(mut self, to: C, event: ChatEvent) -> Self {
        self.deliveries.push((to, event));
        self
    }

    /// Adds an answer to the caller.
    pub fn with_reply(mut self, event: ChatEvent) -> Self {
        self.replies.push(event);
        self
    }
}

/// A pair of names in a fixed order, for the `pairs` set.
pub fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A `State` to apply rules to, with users online on made-up addresses.

    use super::{Endpoint, Record, State};
    use crate::protocol::Status;
    use std::net::{IpAddr, Ipv4Addr};

    /// A connection handle: a number and the addresses it claims.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fake {
        /// Which connection.
        pub id: u64,
        /// The client's address.
        pub peer: IpAddr,
        /// The server's address on it.
        pub local: IpAddr,
    }

    impl Endpoint for Fake {
        fn id(&self) -> u64 {
            self.id
        }

        fn peer_ip(&self) -> IpAddr {
            self.peer
        }

        fn local_ip(&self) -> Option<IpAddr> {
            Some(self.local)
        }
    }

    /// A state with `names` online, connection ids 1, 2, ... on 10.0.0.1, 10.0.0.2, ...
    pub fn online(names: &[&str]) -> State<Fake> {
        let mut state = State::default();
        for (i, name) in names.iter().enumerate() {
            put_online(&mut state, name, i as u64 + 1);
        }
        state
    }

    /// Logs `name` in on connection `id` (peer 10.0.0.`id`) at time 0, as in open mode:
    /// the directory knows them from then on.
    pub fn put_online(state: &mut State<Fake>, name: &str, id: u64) {
        let conn = Fake {
            id,
            peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)),
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)),
        };
        let open = super::login::LoginPolicy {
            reject_duplicates: false,
            new_users_per_address: Some(usize::MAX),
            room_for_new_users: true,
        };
        assert!(super::login::arrive(state, 0, name, conn, open).is_ok());
    }

    /// Makes `owner` block `other` (as `block` would, without its checks).
    pub fn blocks(state: &mut State<Fake>, owner: &str, other: &str) {
        state.record(Record::Block {
            user: owner.to_string(),
            target: other.to_string(),
        });
    }

    /// Sets `name`'s status (as `status` would, without telling anyone).
    pub fn set_status(state: &mut State<Fake>, name: &str, status: Status) {
        state.record(Record::Status {
            user: name.to_string(),
            status: status.as_str().to_string(),
        });
    }

    /// The connection of `name`, who must be online.
    pub fn conn(state: &State<Fake>, name: &str) -> Fake {
        state.online[name].conn
    }
}
