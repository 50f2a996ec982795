//! What the native door says for each [`Refusal`]: its `ERR` code and text (or `BYE` for a
//! lockout), as PROTOCOL.md spells them. The IRC door shows the same text with its own
//! numerics.

use crate::protocol::Line;
use crate::server::rules::{NotKept, Refusal, SelfAction};

/// The line of a refusal: `ERR`, or `BYE` for one that ends the connection (a lockout).
pub fn refusal(r: Refusal) -> Line {
    let bye = |text: String| Line::bye("blocked", text);
    let (code, text) = match r {
        Refusal::BadName => (
            "bad-name",
            "A username is 1-32 letters, digits, '_', '-' or '.', starting with a letter, digit or '_'; please try again.".to_string(),
        ),
        Refusal::NotListed => (
            "unknown-user",
            "Username incorrect, please check.".to_string(),
        ),
        Refusal::LockedOut(secs) => return bye(format!(
            "Im sorry, you are currently blocked, and you need to wait for another {secs} seconds. Logging off."
        )),
        Refusal::TooManyChecks => return bye(
            "Too many passwords for this name are being checked at once; try again in a minute. Logging off.".to_string(),
        ),
        Refusal::WrongPassword { tries_left: n } => (
            "bad-login",
            format!(
                "Username or password incorrect. Please try again; if you fail {n} more time{} you will be blocked for a while",
                if n == 1 { "" } else { "s" }
            ),
        ),
        Refusal::LockedNow(secs) => return bye(format!(
            "Username or password incorrect. You are blocked for {secs} seconds. Logging off."
        )),
        Refusal::NoRoomForUser => (
            "storage-full",
            "the server's storage is full: no new user can be made now; log in with a name used before".to_string(),
        ),
        Refusal::SelfTarget(what) => (
            "self",
            match what {
                SelfAction::Block => "You cannot block yourself.",
                SelfAction::Unblock => "You cannot unblock yourself.",
                SelfAction::Chat => "You cannot chat with yourself.",
                SelfAction::Address => "You cannot exchange addresses with yourself.",
            }
            .to_string(),
        ),
        Refusal::NoSuchUser(name) => ("unknown-user", format!("No such user: {name}")),
        Refusal::AlreadyOnline(name) => (
            "already-online",
            format!("{name} is already logged in; only one login at a time."),
        ),
        Refusal::UserLimit(cap) => (
            "user-limit",
            format!("{cap} new users were already made from your address; log in with a name used before"),
        ),
        Refusal::Typo(to) => (
            "unknown-user",
            format!("(Input includes a typo on receiver names: {to}, not delivered)"),
        ),
        Refusal::MessageBlocked(to) => (
            "blocked",
            format!("{to} has blocked you; your message was not delivered."),
        ),
        Refusal::CopyBlocked(to) => (
            "blocked",
            format!("{to} has blocked you; not delivered to {to}."),
        ),
        Refusal::SendNotMember(name) => (
            "not-member",
            format!("Join group {name} before sending to it."),
        ),
        Refusal::AlreadyBlocked(t) => ("already-blocked", format!("{t} is already blocked.")),
        Refusal::NotBlocked(t) => ("not-blocked", format!("{t} is not blocked.")),
        Refusal::InSession(n) => (
            "in-session",
            format!("You are already in chat session {n}; end it first."),
        ),
        Refusal::InSessionAccepting { session, requester } => (
            "in-session",
            format!(
                "You are already in chat session {session}; end it before accepting {requester}."
            ),
        ),
        Refusal::ChatUnreachable(with) => (
            "unreachable",
            format!("Correspondent unreachable: {with} is offline, busy in another session or not accepting chats."),
        ),
        Refusal::NothingPending => (
            "nothing-pending",
            "There is no request waiting for an answer.".to_string(),
        ),
        Refusal::RequesterGone { requester, session } => (
            "unreachable",
            format!("{requester} is no longer available for session {session}."),
        ),
        Refusal::NoSession => ("no-session", "You are not in a chat session.".to_string()),
        Refusal::NotInSession(n) => ("no-session", format!("You are not part of chat session {n}.")),
        Refusal::PartnerGone(other) => ("unreachable", format!("{other} is no longer connected.")),
        Refusal::AddressBlocked(with) => (
            "blocked",
            format!("{with} has blocked you; you cannot exchange addresses."),
        ),
        Refusal::NotOnline(with) => ("unreachable", format!("{with} is not online.")),
        Refusal::TheirClientNoP2p(with) => (
            "no-p2p",
            format!("{with}'s client does not take direct messages (only lanchat-client does)."),
        ),
        Refusal::OwnClientNoP2p => (
            "no-p2p",
            "Your client does not take direct messages; use lanchat-client for them.".to_string(),
        ),
        Refusal::AlreadyPaired(with) => (
            "already-paired",
            format!("{with} is already in your address book."),
        ),
        Refusal::NoLongerP2p(r) => ("unreachable", format!("{r} no longer takes direct messages.")),
        Refusal::NoLongerOnline(r) => ("unreachable", format!("{r} is no longer online.")),
        Refusal::NotPaired(with) => ("not-paired", format!("{with} is not in your address book.")),
        Refusal::GroupExists(name) => (
            "group-exists",
            format!("Group {name} already exists; 'group join {name}' to join it."),
        ),
        Refusal::GroupLimit(cap) => (
            "group-limit",
            format!("{cap} groups made from your address exist already; join one, or leave one you made"),
        ),
        Refusal::NoRoomForGroup => (
            "storage-full",
            "the server's storage is full: no new group can be made now".to_string(),
        ),
        Refusal::NoSuchGroup(name) => (
            "no-such-group",
            format!("There is no group {name}; 'group list' shows them."),
        ),
        Refusal::AlreadyMember(name) => (
            "already-member",
            format!("You are already in group {name}."),
        ),
        Refusal::NotMember(name) => ("not-member", format!("You are not in group {name}.")),
        Refusal::NotKept(NotKept::MailboxFull { user, limit }) => (
            "mailbox-full",
            format!("{user}'s offline mailbox is full ({limit} messages); not delivered"),
        ),
        Refusal::NotKept(NotKept::StorageFull { limit }) => (
            "storage-full",
            format!("the server's storage is full ({limit} bytes); the message was not stored and will not be delivered"),
        ),
        Refusal::MailUnreadable => (
            "store-failed",
            "your offline messages could not be read; they are kept for next time".to_string(),
        ),
        Refusal::NotKept(NotKept::Failed) => (
            "store-failed",
            "the server could not save the message; it was not delivered".to_string(),
        ),
    };
    Line::err(code, text)
}
