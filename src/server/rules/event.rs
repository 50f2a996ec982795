//! What the rules say, as typed values: to the user who gave a command, or to others. A
//! door renders them in its own protocol (the native door: `render`); nothing here is wire
//! text.

use crate::protocol::Status;
use crate::store::Mail;

/// Why someone left, as the rules tell others; decides what they are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutReason {
    /// The user asked.
    Requested,
    /// The connection dropped (EOF, reset, or dropped as a stuck reader).
    Dropped,
    /// The idle timeout.
    Timeout,
    /// A client that promised heartbeats went silent.
    Heartbeat,
    /// Disconnected for flooding: it kept sending faster than the rate limit.
    Flood,
    /// The server is shutting down (nobody is told individually).
    Shutdown,
}

impl LogoutReason {
    /// The presence word others see for it.
    pub fn event(self) -> &'static str {
        match self {
            LogoutReason::Requested | LogoutReason::Shutdown => "logout",
            LogoutReason::Dropped | LogoutReason::Flood => "dropped",
            LogoutReason::Timeout | LogoutReason::Heartbeat => "timeout",
        }
    }
}

/// A change of someone's presence that others may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// They came online (or stopped being invisible).
    Joined,
    /// They went offline (or became invisible, which looks the same).
    Left(LogoutReason),
    /// Their status changed while they stayed visible.
    Status(Status),
}

impl PresenceChange {
    /// The presence word (the presence batcher and PROTOCOL.md's `PRESENCE` use it).
    pub fn word(self) -> &'static str {
        match self {
            PresenceChange::Joined => "login",
            PresenceChange::Left(reason) => reason.event(),
            PresenceChange::Status(s) => s.as_str(),
        }
    }
}

/// A command `self`-targeted where that makes no sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfAction {
    /// `block` yourself.
    Block,
    /// `unblock` yourself.
    Unblock,
    /// `chat` with yourself.
    Chat,
    /// `getaddress` yourself.
    Address,
}

/// Why a command, or a login, was refused: each kind is one error code of PROTOCOL.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A username that is not 1-32 letters, digits, `_`, `-` or `.`.
    BadName,
    /// With `auth = "allowlist"`, a name that is not in credentials.txt.
    NotListed,
    /// A name locked out after failed passwords, for this many more seconds (the
    /// connection closes).
    LockedOut(u64),
    /// Every try of a name is being checked at once (the connection closes).
    TooManyChecks,
    /// A wrong username or password, with this many tries left before a lockout.
    WrongPassword {
        /// Tries left.
        tries_left: u32,
    },
    /// A wrong username or password that locked the name out for this many seconds (the
    /// connection closes).
    LockedNow(u64),
    /// In open mode, a new user while the data directory is full (`max_data_bytes`).
    NoRoomForUser,
    /// The command names its own user.
    SelfTarget(SelfAction),
    /// No such user.
    NoSuchUser(String),
    /// A login of a user who is online, with `duplicate_login = "reject"`.
    AlreadyOnline(String),
    /// A new user past the address's share (`max_new_users_per_ip`).
    UserLimit(usize),
    /// A message to a name that is no user (shown as a typo).
    Typo(String),
    /// `message USER` to someone who blocked the sender.
    MessageBlocked(String),
    /// One of the named users of a broadcast blocked the sender.
    CopyBlocked(String),
    /// `block` of someone already blocked.
    AlreadyBlocked(String),
    /// `unblock` of someone not blocked.
    NotBlocked(String),
    /// `chat` while in a session (its number).
    InSession(u32),
    /// `accept` of `requester` while in `session`.
    InSessionAccepting {
        /// The session the user is in.
        session: u32,
        /// Who asked for a new one.
        requester: String,
    },
    /// `chat` with someone offline, busy, invisible, blocking, or already asked.
    ChatUnreachable(String),
    /// `accept`/`decline` with nothing waiting.
    NothingPending,
    /// `accept` of a request whose requester left or is now in another session.
    RequesterGone {
        /// Who asked.
        requester: String,
        /// The request's session number.
        session: u32,
    },
    /// Not in a chat session.
    NoSession,
    /// `end N` of a session the user is not part of.
    NotInSession(u32),
    /// A session line whose partner is gone.
    PartnerGone(String),
    /// `getaddress` of someone who blocked the user.
    AddressBlocked(String),
    /// `getaddress` of someone not (visibly) online.
    NotOnline(String),
    /// `getaddress` of someone whose client takes no direct messages.
    TheirClientNoP2p(String),
    /// `getaddress` from a client that takes no direct messages.
    OwnClientNoP2p,
    /// `getaddress` of someone already in the address book.
    AlreadyPaired(String),
    /// An accepted address exchange whose requester no longer takes direct messages.
    NoLongerP2p(String),
    /// An address exchange answered after its requester left.
    NoLongerOnline(String),
    /// `removeaddress` of someone not in the address book.
    NotPaired(String),
    /// `group create` of an existing group.
    GroupExists(String),
    /// `group create` past the address's share (`max_groups_per_ip`).
    GroupLimit(usize),
    /// In open mode, `group create` while the data directory is full (`max_data_bytes`).
    NoRoomForGroup,
    /// A group that does not exist.
    NoSuchGroup(String),
    /// `group join` of a group the user is in.
    AlreadyMember(String),
    /// `group leave` of a group the user is not in.
    NotMember(String),
    /// `group send` to a group the user is not in.
    SendNotMember(String),
    /// A message for someone offline that could not be kept for them.
    NotKept(NotKept),
    /// At login, the mailbox could not be read (its mail stays there for next time).
    MailUnreadable,
}

/// Why a message for someone offline could not be kept (the store's answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotKept {
    /// Their mailbox holds `limit` messages already.
    MailboxFull {
        /// Whose.
        user: String,
        /// The mailbox limit.
        limit: usize,
    },
    /// The data directory is at its bound (`limit` bytes).
    StorageFull {
        /// The bound.
        limit: u64,
    },
    /// The store failed (logged where it happened).
    Failed,
}

/// One entry of a list of users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// Their name.
    pub name: String,
    /// Their status; unused when `last_seen` is set (they are offline).
    pub status: Status,
    /// When they logged out (unix seconds), for users listed while offline.
    pub last_seen: Option<u64>,
    /// Their intro (may be empty).
    pub intro: String,
}

/// Which list of users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserList {
    /// `whoelse`: the others online.
    WhoElse,
    /// `list`: everyone online, the asker included.
    SignedIn,
    /// `wholast N`: online, or gone in the last N minutes.
    WhoLast(u32),
}

/// What the rules say to a user: the answer to their command, or news from others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    /// The command was refused.
    Refused(Refusal),
    /// The first line of a login.
    Welcome(String),
    /// At login, a status other than available.
    StatusReminder(Status),
    /// At login, before the offline mail: how many messages came while offline.
    OfflineMail(usize),
    /// At login, one message kept in the mailbox while the user was offline.
    Mail(Mail),
    /// `message USER`: delivered now.
    Sent(String),
    /// A message stored for a user who is offline (or looks it).
    Queued(String),
    /// The receiver of a message is busy.
    Busy(String),
    /// `broadcast USERS`: delivered now to one of them.
    Delivered(String),
    /// `broadcast`: how many online users got it, how many were skipped as blocking.
    BroadcastSent {
        /// Delivered to.
        delivered: usize,
        /// Blocked the sender.
        skipped: usize,
    },
    /// `broadcast all`: delivered now, and stored for later.
    BroadcastKept {
        /// Delivered now.
        live: usize,
        /// Stored.
        stored: usize,
    },
    /// `group send`: delivered now, and stored for later.
    GroupSent {
        /// The group.
        group: String,
        /// Delivered now.
        live: usize,
        /// Stored.
        stored: usize,
    },
    /// `block` done.
    Blocked(String),
    /// `unblock` done.
    Unblocked(String),
    /// `blocked`: the blacklist, in order.
    Blacklist(Vec<String>),
    /// The intro was saved (true) or cleared (false).
    IntroSet(bool),
    /// `status`: the status now.
    StatusIs(Status),
    /// `status S`: the new status.
    StatusSet(Status),
    /// A list of users.
    Users {
        /// Which list.
        list: UserList,
        /// Its entries, in name order.
        entries: Vec<UserEntry>,
    },
    /// `chat USER`: asked.
    ChatRequested {
        /// Who was asked.
        with: String,
        /// The session number.
        session: u32,
    },
    /// To the user asked for a chat session.
    SessionRequest {
        /// Its number.
        session: u32,
        /// Who asks.
        from: String,
    },
    /// A chat session started (to both sides).
    SessionStarted {
        /// Its number.
        session: u32,
        /// The other side.
        with: String,
    },
    /// To the requester: their chat request was declined.
    SessionDeclined {
        /// Its number.
        session: u32,
        /// Who declined.
        by: String,
    },
    /// To the one who declined a chat request.
    ChatDeclined(String),
    /// To the other side: the session was ended.
    SessionEndedBy {
        /// Its number.
        session: u32,
        /// Who ended it.
        by: String,
    },
    /// To the one who ended the session.
    SessionEnded {
        /// Its number.
        session: u32,
        /// The other side.
        with: String,
    },
    /// To the other side of a session (or request) whose user logged out.
    SessionPartnerLeft {
        /// Its number.
        session: u32,
        /// Who left.
        who: String,
    },
    /// `snum` in a session.
    SessionNumber {
        /// Its number.
        session: u32,
        /// The other side.
        with: String,
    },
    /// `snum` outside a session.
    NotInASession,
    /// A line said in a chat session.
    Talk {
        /// The session's number.
        session: u32,
        /// Who said it.
        from: String,
        /// What.
        text: String,
        /// Sent as an IRC NOTICE (a door that has notices shows it as one).
        notice: bool,
    },
    /// A private message, delivered live.
    Message {
        /// Who sent it.
        from: String,
        /// What.
        text: String,
        /// Sent as an IRC NOTICE (a door that has notices shows it as one).
        notice: bool,
    },
    /// A broadcast, delivered live.
    Broadcast {
        /// Who sent it.
        from: String,
        /// What.
        text: String,
        /// Sent as an IRC NOTICE.
        notice: bool,
    },
    /// A message to a group, delivered live.
    GroupMessage {
        /// The group.
        group: String,
        /// Who sent it.
        from: String,
        /// What.
        text: String,
        /// Sent as an IRC NOTICE.
        notice: bool,
    },
    /// Someone's presence changed.
    Presence {
        /// Whose.
        who: String,
        /// How.
        change: PresenceChange,
    },
    /// A crowd's presence changes, summed up (see `hub::presence`).
    PresenceSummary {
        /// The changes named, each a user and a presence word (`login-busy`: joined busy).
        changes: Vec<(String, &'static str)>,
        /// How many more changes it only counts.
        more: usize,
    },
    /// `p2p PORT` noted.
    P2pPort(u16),
    /// `getaddress USER`: asked.
    AddressRequested(String),
    /// To the user asked to exchange addresses.
    AddressRequest(String),
    /// To the requester: declined by the user asked.
    AddressDeclined(String),
    /// To the one who declined an address exchange.
    AddressRequestDeclined(String),
    /// To the one who accepted: the requester's address and the pair's secret.
    AddressGranted {
        /// The requester.
        with: String,
        /// Where their client takes direct messages.
        address: String,
        /// The pair's secret.
        secret: String,
    },
    /// To the requester: accepted, with the accepter's address and the pair's secret.
    AddressAccepted {
        /// Who accepted.
        by: String,
        /// Where their client takes direct messages.
        address: String,
        /// The pair's secret.
        secret: String,
    },
    /// `removeaddress USER` done.
    AddressRemoved(String),
    /// To the other side of a removed pair.
    AddressRemovedBy(String),
    /// To the requester: the user asked did not answer in time.
    AddressUnanswered(String),
    /// To the user asked: the request expired.
    AddressExpired(String),
    /// To a pair's other side: the user logged out.
    AddressGone(String),
    /// To a requester: the user asked logged out before answering.
    AddressLeftUnanswered(String),
    /// To the user asked: the requester logged out.
    AddressVoid(String),
    /// `addressbook`: the pairs, in order.
    AddressBook(Vec<String>),
    /// `group create` done.
    GroupCreated(String),
    /// `group join` done.
    GroupJoined(String),
    /// `group leave` done.
    GroupLeft(String),
    /// `group list`: each group with its number of members and whether the user is in it.
    Groups(Vec<(String, usize, bool)>),
    /// `group members`: each member with whether the asker may see them online.
    Members {
        /// The group.
        group: String,
        /// Its members, in order.
        members: Vec<(String, bool)>,
    },
}

impl ChatEvent {
    /// `who`'s presence changed.
    pub fn presence(who: &str, change: PresenceChange) -> ChatEvent {
        ChatEvent::Presence {
            who: who.to_string(),
            change,
        }
    }
}
