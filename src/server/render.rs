//! The native door's rendering of the rules' [`ChatEvent`]s: each as the PROTOCOL.md lines
//! the native protocol has always sent for it. Pure; the tests beside it pin the bytes.

use super::rules::{ChatEvent, LogoutReason, PresenceChange, UserList};
use crate::clock::format_utc;
use crate::protocol::{Kind, Line};
use crate::store::{Mail, MailKind};

mod refusal;
pub use refusal::refusal;

/// Appends the lines of `event` to `out`.
pub fn render_into(event: ChatEvent, out: &mut Vec<Line>) {
    match event {
        ChatEvent::Blacklist(list) => {
            let title = if list.is_empty() {
                "You have blocked nobody."
            } else {
                "You have blocked:"
            };
            out.extend(Line::entry_list("blocked", title, list));
        }
        ChatEvent::AddressBook(names) => {
            let title = if names.is_empty() {
                "Your address book is empty; 'getaddress USER' adds someone."
            } else {
                "You can message these users privately:"
            };
            out.extend(Line::entry_list("addressbook", title, names));
        }
        ChatEvent::Groups(groups) => {
            let title = if groups.is_empty() {
                "There are no groups yet; 'group create NAME' makes one."
            } else {
                "Groups (members, * = you are in it):"
            };
            let items = groups.into_iter().map(|(name, members, mine)| {
                let mark = if mine { " *" } else { "" };
                format!("{name} ({members} members){mark}")
            });
            out.extend(Line::entry_list("groups", title, items));
        }
        ChatEvent::Members { group, members } => {
            let items = members
                .into_iter()
                .map(|(m, online)| format!("{m}{}", if online { " (online)" } else { "" }));
            out.extend(Line::entry_list(
                "members",
                format!("Members of {group}:"),
                items,
            ));
        }
        ChatEvent::Users { list, entries } => {
            let (name, title) = match list {
                UserList::WhoElse => ("whoelse", "The currently online users are:".to_string()),
                UserList::SignedIn => ("list", "Signed in users:".to_string()),
                UserList::WhoLast(minutes) => (
                    "wholast",
                    format!("The users that are online in the last {minutes} minutes are:"),
                ),
            };
            let title = if entries.is_empty() {
                format!("{title} (Not found)")
            } else {
                title
            };
            out.push(Line::new(
                Kind::List,
                &[name, &entries.len().to_string()],
                title,
            ));
            for e in entries {
                let status = if e.last_seen.is_some() {
                    "offline"
                } else {
                    e.status.as_str()
                };
                out.push(Line::new(
                    Kind::User,
                    &[
                        &e.name,
                        status,
                        &e.last_seen.map(format_utc).unwrap_or_default(),
                    ],
                    e.intro,
                ));
            }
        }
        other => out.push(line(other)),
    }
}

/// The line of a live event (a message, a chat-session line, a presence change); `None`
/// for the others.
pub fn live_line(event: &ChatEvent) -> Option<Line> {
    Some(match event {
        ChatEvent::Talk {
            session,
            from,
            text,
            notice: _,
        } => Line::new(Kind::Talk, &[&session.to_string(), from], text.as_str()),
        ChatEvent::Message { from, text, .. } => Line::new(Kind::Msg, &[from], text.as_str()),
        ChatEvent::Broadcast { from, text, .. } => Line::new(Kind::Bcast, &[from], text.as_str()),
        ChatEvent::GroupMessage {
            group, from, text, ..
        } => Line::new(Kind::Group, &[group, from], text.as_str()),
        ChatEvent::Presence { who, change } => presence(who, *change),
        ChatEvent::PresenceSummary { changes, more } => summary(changes, *more),
        _ => return None,
    })
}

/// The lines of `events`, in order.
pub fn render_all(events: Vec<ChatEvent>) -> Vec<Line> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        render_into(event, &mut out);
    }
    out
}

/// The lines of `event`.
pub fn render(event: ChatEvent) -> Vec<Line> {
    let mut out = Vec::new();
    render_into(event, &mut out);
    out
}

/// The one line of an event that renders as one line (a list renders as several: use
/// [`render_into`]).
pub fn line(event: ChatEvent) -> Line {
    fn ok(code: &str, text: impl Into<String>) -> Line {
        Line::ok(code, text)
    }
    match event {
        ChatEvent::Refused(r) => refusal(r),
        ChatEvent::Welcome(name) => Line::new(
            Kind::Welcome,
            &[&name],
            "Login successful, Welcome to lanchat! Type 'help' for the commands.",
        ),
        ChatEvent::StatusReminder(status) => Line::info(
            "status",
            format!("Your status is {status} (change it with 'status available')."),
        ),
        ChatEvent::OfflineMail(0) => Line::info("no-mail", "No messages received while offline."),
        ChatEvent::OfflineMail(n) => Line::info("mail", format!("Your offline messages ({n}):")),
        ChatEvent::Mail(m) => mail_line(&m),
        ChatEvent::Sent(to) => ok("sent", format!("Your message was sent to {to}.")),
        ChatEvent::Queued(to) => ok(
            "queued",
            format!("(Receiver {to} is currently offline, message will be delivered when they log in next time)"),
        ),
        ChatEvent::Busy(to) => Line::info("busy", format!("{to} is busy and may answer later.")),
        ChatEvent::Delivered(to) => ok("sent", format!("Delivered to {to}.")),
        ChatEvent::BroadcastSent { delivered, skipped } => {
            let mut text = format!(
                "Your broadcast was sent to {delivered} online user{}.",
                if delivered == 1 { "" } else { "s" }
            );
            if skipped > 0 {
                text.push_str(&format!(
                    " {skipped} user{} did not receive it because they blocked you.",
                    if skipped == 1 { "" } else { "s" }
                ));
            }
            ok("broadcast", text)
        }
        ChatEvent::BroadcastKept { live, stored } => ok(
            "broadcast",
            format!("Your broadcast was sent to {live} online user(s) and will be delivered to {stored} offline user(s) when they log in."),
        ),
        ChatEvent::GroupSent { group, live, stored } => ok(
            "group-sent",
            format!("Sent to group {group}: {live} online, {stored} will get it at their next login."),
        ),
        ChatEvent::Blocked(t) => ok(
            "blocked",
            format!("{t} is blocked: they can no longer message you or see you online."),
        ),
        ChatEvent::Unblocked(t) => ok("unblocked", format!("{t} is unblocked.")),
        ChatEvent::IntroSet(true) => ok("intro", "Your personal introduction was saved."),
        ChatEvent::IntroSet(false) => ok("intro", "Your personal introduction was cleared."),
        ChatEvent::StatusIs(s) => ok("status", format!("Your status is {s}.")),
        ChatEvent::StatusSet(s) => ok("status", format!("Your status is now {s}.")),
        ChatEvent::ChatRequested { with, session } => ok(
            "chat-requested",
            format!("Asked {with} to chat (session {session}); waiting for an answer."),
        ),
        ChatEvent::SessionRequest { session, from } => Line::new(
            Kind::Session,
            &["request", &session.to_string(), &from],
            format!(
                "{from} wants to chat with you (session {session}). Type 'accept' or 'decline'."
            ),
        ),
        ChatEvent::SessionStarted { session, with } => Line::new(
            Kind::Session,
            &["started", &session.to_string(), &with],
            format!("Chat started with {with} (session {session}). Lines you type now go to {with}; 'end' to stop."),
        ),
        ChatEvent::SessionDeclined { session, by } => Line::new(
            Kind::Session,
            &["declined", &session.to_string(), &by],
            format!("{by} declined your chat request."),
        ),
        ChatEvent::ChatDeclined(requester) => ok(
            "declined",
            format!("You declined {requester}'s chat request."),
        ),
        ChatEvent::SessionEndedBy { session, by } => Line::new(
            Kind::Session,
            &["ended", &session.to_string(), &by],
            format!("Chat ended: {by} ended session {session}."),
        ),
        ChatEvent::SessionEnded { session, with } => Line::new(
            Kind::Session,
            &["ended", &session.to_string(), &with],
            format!("Chat ended (session {session} with {with})."),
        ),
        ChatEvent::SessionPartnerLeft { session, who } => Line::new(
            Kind::Session,
            &["ended", &session.to_string(), &who],
            format!("Chat ended: {who} has left."),
        ),
        ChatEvent::SessionNumber { session, with } => ok(
            "snum",
            format!("Current chat session ID: {session} (with {with})"),
        ),
        ChatEvent::NotInASession => Line::info("no-session", "You are not in a chat session."),
        live @ (ChatEvent::Talk { .. }
        | ChatEvent::Message { .. }
        | ChatEvent::Broadcast { .. }
        | ChatEvent::GroupMessage { .. }
        | ChatEvent::Presence { .. }
        | ChatEvent::PresenceSummary { .. }) => {
            live_line(&live).expect("a live event renders without cloning")
        }
        ChatEvent::P2pPort(port) => ok(
            "p2p",
            format!("Direct messages will be accepted on port {port}."),
        ),
        ChatEvent::AddressRequested(with) => ok(
            "address-requested",
            format!("Asked {with} to exchange addresses; waiting for an answer (up to a minute)."),
        ),
        ChatEvent::AddressRequest(from) => addr(
            "request",
            &from,
            "",
            "",
            format!("User {from} wants to exchange private messages with you. Would you like to accept? [y/N]"),
        ),
        ChatEvent::AddressDeclined(by) => addr(
            "declined",
            &by,
            "",
            "",
            format!("{by} declined to exchange addresses with you."),
        ),
        ChatEvent::AddressRequestDeclined(requester) => {
            ok("declined", format!("You declined {requester}'s request."))
        }
        ChatEvent::AddressGranted {
            with,
            address,
            secret,
        } => addr(
            "granted",
            &with,
            &address,
            &secret,
            format!("You and {with} can now send each other private messages."),
        ),
        ChatEvent::AddressAccepted {
            by,
            address,
            secret,
        } => addr(
            "granted",
            &by,
            &address,
            &secret,
            format!("{by} accepted: you can now send 'private {by} TEXT'."),
        ),
        ChatEvent::AddressRemoved(with) => ok(
            "removed",
            format!("{with} was removed from your address book."),
        ),
        ChatEvent::AddressRemovedBy(by) => addr(
            "removed",
            &by,
            "",
            "",
            format!("{by} removed you from their address book."),
        ),
        ChatEvent::AddressUnanswered(to) => addr(
            "declined",
            &to,
            "",
            "",
            format!("{to} did not answer within a minute; no addresses exchanged."),
        ),
        ChatEvent::AddressExpired(from) => addr(
            "expired",
            &from,
            "",
            "",
            format!("{from}'s request to exchange addresses has expired."),
        ),
        ChatEvent::AddressGone(who) => addr(
            "gone",
            &who,
            "",
            "",
            format!("{who} logged out and left your address book."),
        ),
        ChatEvent::AddressLeftUnanswered(who) => addr(
            "declined",
            &who,
            "",
            "",
            format!("{who} left before answering; no addresses exchanged."),
        ),
        ChatEvent::AddressVoid(who) => addr(
            "expired",
            &who,
            "",
            "",
            format!("{who} left; their request to exchange addresses is void."),
        ),
        ChatEvent::GroupCreated(name) => ok(
            "group-created",
            format!("Group {name} created; you are its first member."),
        ),
        ChatEvent::GroupJoined(name) => ok("group-joined", format!("You joined group {name}.")),
        ChatEvent::GroupLeft(name) => ok("group-left", format!("You left group {name}.")),
        list @ (ChatEvent::Blacklist(_)
        | ChatEvent::AddressBook(_)
        | ChatEvent::Groups(_)
        | ChatEvent::Members { .. }
        | ChatEvent::Users { .. }) => {
            // A list is several lines; its header stands for it here.
            render(list).swap_remove(0)
        }
    }
}

fn addr(what: &str, who: &str, address: &str, secret: &str, text: String) -> Line {
    Line::new(Kind::Addr, &[what, who, address, secret], text)
}

/// A `PRESENCE` line.
fn presence(who: &str, change: PresenceChange) -> Line {
    let text = match change {
        PresenceChange::Joined => format!("*** {who} has joined the chat ***"),
        PresenceChange::Status(s) => format!("{who} is now {s}."),
        PresenceChange::Left(LogoutReason::Timeout) => {
            format!("*** {who} has left the chat (timed out) ***")
        }
        PresenceChange::Left(LogoutReason::Dropped) => {
            format!("*** {who} has left the chat (connection lost) ***")
        }
        PresenceChange::Left(LogoutReason::Heartbeat) => {
            format!("*** {who} has left the chat (heartbeat timeout) ***")
        }
        PresenceChange::Left(LogoutReason::Flood) => {
            format!("*** {who} has left the chat (flooding) ***")
        }
        PresenceChange::Left(_) => format!("*** {who} has left the chat ***"),
    };
    Line::new(Kind::Presence, &[who, change.word()], text)
}

/// Most names in a summary's text for people (its arguments name every change listed).
const NAMED_IN_TEXT: usize = 20;

/// `PRESENCES <user:change,...|-> <more> <text>`
fn summary(changes: &[(String, &'static str)], more: usize) -> Line {
    let items: Vec<String> = changes
        .iter()
        .map(|(name, change)| format!("{name}:{change}"))
        .collect();
    let items = if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    };
    Line::new(
        Kind::Presences,
        &[&items, &more.to_string()],
        summary_text(changes, more),
    )
}

/// For people: `*** Joined: ann, bob (busy). Left: cy (timed out). Now busy: dan. 3 more
/// changes; 'whoelse' lists who is online. ***`
fn summary_text(changes: &[(String, &'static str)], more: usize) -> String {
    let mut groups: [(&str, Vec<String>); 4] = [
        ("Joined", Vec::new()),
        ("Left", Vec::new()),
        ("Now busy", Vec::new()),
        ("Now available", Vec::new()),
    ];
    let mut unnamed = more;
    for (k, (name, change)) in changes.iter().enumerate() {
        if k >= NAMED_IN_TEXT {
            unnamed += 1;
            continue;
        }
        let (group, text) = match *change {
            "login" => (0, name.clone()),
            "login-busy" => (0, format!("{name} (busy)")),
            "logout" => (1, name.clone()),
            "timeout" => (1, format!("{name} (timed out)")),
            "dropped" => (1, format!("{name} (connection lost)")),
            "busy" => (2, name.clone()),
            _ => (3, name.clone()),
        };
        groups[group].1.push(text);
    }
    let mut text = String::from("***");
    for (title, names) in &groups {
        if !names.is_empty() {
            text.push_str(&format!(" {title}: {}.", names.join(", ")));
        }
    }
    if unnamed > 0 {
        let s = if unnamed == 1 { "" } else { "s" };
        let and = if changes.is_empty() { "" } else { " more" };
        text.push_str(&format!(
            " {unnamed}{and} change{s}; 'whoelse' lists who is online."
        ));
    }
    text.push_str(" ***");
    text
}

/// `MAIL from time kind id text`: a message kept while its receiver was offline.
fn mail_line(m: &Mail) -> Line {
    let kind = match &m.kind {
        MailKind::Private => "private".to_string(),
        MailKind::Broadcast => "broadcast".to_string(),
        MailKind::Group(g) => format!("group:{g}"),
    };
    Line::new(
        Kind::Mail,
        &[&m.from, &format_utc(m.sent_at), &kind, &m.id],
        // Escaped again as it is read back, like intros and history: a mailbox may predate
        // the rule or have been edited by hand.
        crate::protocol::sanitize_text(&m.text),
    )
}

#[cfg(test)]
mod tests;
