//! What a user can ask of the server: the [`Command`] type and the small types its variants
//! carry. Parsing a typed line into one lives in `parse.rs`.

use std::fmt;

/// Who a `broadcast` reaches; the three shapes of seeds 001 and 002.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// `broadcast message TEXT` (seed 001): every other registered user, offline ones by mail.
    Everyone,
    /// `broadcast TEXT` (seed 002): every other user online now.
    Online,
    /// `broadcast user U1 U2 ... message TEXT` (seed 001): the named users.
    Users(Vec<String>),
}

/// A user's availability, shown in presence lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The default: shown as online.
    Available,
    /// Shown as busy; senders are told their message may wait.
    Busy,
    /// Appears offline to everyone else, still receives messages.
    Invisible,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Busy => "busy",
            Status::Invisible => "invisible",
        }
    }

    /// Parses the wire spelling (case-insensitive).
    pub fn parse(word: &str) -> Option<Status> {
        match word.to_ascii_lowercase().as_str() {
            "available" | "online" => Some(Status::Available),
            "busy" | "away" => Some(Status::Busy),
            "invisible" | "hidden" => Some(Status::Invisible),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subcommand of `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAction {
    /// `group create NAME`
    Create(String),
    /// `group join NAME`
    Join(String),
    /// `group leave NAME`
    Leave(String),
    /// `group list`: every group, with member counts and whether you are in it.
    List,
    /// `group members NAME`
    Members(String),
    /// `group send NAME TEXT` (short form `gsend NAME TEXT`)
    Send(String, String),
}

/// One parsed user command. Parsing has no side effects; the session applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help` / `HELP` / `?`
    Help,
    /// `logout`, `log out`, `exit`, `quit`
    Logout,
    /// `whoelse`, `online`, `who`, `users`: the others online
    WhoElse,
    /// `list` (seed 004): everyone signed in, yourself included
    SignedIn,
    /// `wholast N` with N in 0..=60 minutes
    WhoLast(u32),
    /// `message USER TEXT`, `send USER TEXT`, `msg USER TEXT`
    Message {
        /// The recipient's username.
        to: String,
        /// The message, sanitized.
        text: String,
    },
    /// The three `broadcast` shapes.
    Broadcast {
        /// Who receives it.
        audience: Audience,
        /// The message, sanitized.
        text: String,
    },
    /// `personalintro [TEXT]`; `None` means the next line is the intro.
    Intro(Option<String>),
    /// `history USER [N]`, `HISTORY_REQ(me-USER)`, `HISTORY_REQUEST(me-USER)`
    History {
        /// The other party of the conversation.
        with: String,
        /// How many of the most recent lines.
        count: usize,
    },
    /// `chat USER`, `CHAT_REQUEST(me-USER)`
    Chat(String),
    /// `accept [USER]` / `yes` / `y`: answers a pending request (USER's, or the latest).
    Accept(Option<String>),
    /// `decline [USER]` / `no` / `n`
    Decline(Option<String>),
    /// `end [N]`, `END_REQUEST(N)`
    End(Option<u32>),
    /// `snum`, `SNUM`
    SessionNumber,
    /// `block USER`
    Block(String),
    /// `unblock USER`
    Unblock(String),
    /// `blocked`: your blacklist.
    Blocked,
    /// `status [available|busy|invisible]`
    Status(Option<Status>),
    /// `group ...`
    Group(GroupAction),
    /// `log on` (seed 000's client typed it to connect): says you are logged on.
    LogOn,
    /// `heartbeat` / `ping`: proof of life from a client, answered with `OK pong`.
    Heartbeat,
    /// `p2p PORT`: the client's port for direct messages (sent by lanchat-client).
    P2pPort(u16),
    /// `getaddress USER` (seed 002): ask USER to exchange addresses for direct messages.
    GetAddress(String),
    /// `removeaddress USER`: undo an exchange, on both sides.
    RemoveAddress(String),
    /// `addressbook`: who you have exchanged addresses with.
    AddressBook,
    /// `private USER TEXT`: a direct message; only a lanchat client can send one (the server
    /// never carries it), so the server explains that.
    Private,
    /// `say TEXT`: a line to the current chat session partner, even if it starts with a
    /// command word.
    Say(String),
}
