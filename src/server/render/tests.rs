//! Tests of `render`: the bytes each case becomes, pinned.

use super::super::rules::{NotKept, Refusal, SelfAction, UserEntry, UserList};
use super::*;
use crate::protocol::Status;

/// The bytes an event sends to a native client.
fn wire(event: ChatEvent) -> String {
    render(event).iter().map(Line::to_wire).collect()
}

#[test]
fn user_lists_are_the_protocol_examples_byte_for_byte() {
    let entry = |name: &str, status, last_seen, intro: &str| UserEntry {
        name: name.into(),
        status,
        last_seen,
        intro: intro.into(),
    };
    assert_eq!(
        wire(ChatEvent::Users {
            list: UserList::WhoElse,
            entries: vec![
                entry("sean", Status::Available, None, ""),
                entry("seas", Status::Busy, None, "my intro line"),
            ]
        }),
        "LIST whoelse 2 The currently online users are:\n\
         USER sean available - \n\
         USER seas busy - my intro line\n"
    );
    assert_eq!(
        wire(ChatEvent::Users {
            list: UserList::WhoLast(5),
            entries: vec![
                entry("sean", Status::Available, None, ""),
                entry("seas", Status::Busy, Some(1_795_308_814), ""),
            ]
        }),
        "LIST wholast 2 The users that are online in the last 5 minutes are:\n\
         USER sean available - \n\
         USER seas offline 2026-11-22T00:53:34Z \n"
    );
    assert_eq!(
        wire(ChatEvent::Users {
            list: UserList::SignedIn,
            entries: vec![]
        }),
        "LIST list 0 Signed in users: (Not found)\n"
    );
}

#[test]
fn session_events_are_the_protocol_examples_byte_for_byte() {
    assert_eq!(
        wire(ChatEvent::SessionPartnerLeft {
            session: 6387,
            who: "seas".into()
        }),
        "SESSION ended 6387 seas Chat ended: seas has left.\n"
    );
    assert_eq!(
        wire(ChatEvent::SessionNumber {
            session: 9332,
            with: "columbia".into()
        }),
        "OK snum Current chat session ID: 9332 (with columbia)\n"
    );
    assert_eq!(
        wire(ChatEvent::Talk {
            session: 9332,
            from: "sean".into(),
            text: "hi there".into(),
            notice: false
        }),
        "TALK 9332 sean hi there\n"
    );
}

#[test]
fn a_presence_change_says_why_someone_left() {
    assert_eq!(
        presence("seas", PresenceChange::Left(LogoutReason::Heartbeat)).to_wire(),
        "PRESENCE seas timeout *** seas has left the chat (heartbeat timeout) ***\n"
    );
    assert_eq!(
        presence("seas", PresenceChange::Joined).to_wire(),
        "PRESENCE seas login *** seas has joined the chat ***\n"
    );
    assert_eq!(
        presence("seas", PresenceChange::Status(Status::Busy)).to_wire(),
        "PRESENCE seas busy seas is now busy.\n"
    );
    assert_eq!(
        presence("seas", PresenceChange::Left(LogoutReason::Shutdown)).to_wire(),
        "PRESENCE seas logout *** seas has left the chat ***\n"
    );
}

#[test]
fn address_lines_fill_empty_fields_as_the_protocol_does() {
    assert_eq!(
        wire(ChatEvent::AddressRequest("alice".into())),
        "ADDR request alice - - User alice wants to exchange private messages with you. Would you like to accept? [y/N]\n"
    );
    assert_eq!(
        wire(ChatEvent::AddressAccepted {
            by: "seas".into(),
            address: "10.0.0.2:7002".into(),
            secret: "ab".into()
        }),
        "ADDR granted seas 10.0.0.2:7002 ab seas accepted: you can now send 'private seas TEXT'.\n"
    );
}

#[test]
fn lists_of_names_are_entry_lists() {
    assert_eq!(
        wire(ChatEvent::Blacklist(vec![])),
        "LIST blocked 0 You have blocked nobody.\n"
    );
    assert_eq!(
        wire(ChatEvent::Groups(vec![
            ("g".into(), 2, true),
            ("h".into(), 1, false)
        ])),
        "LIST groups 2 Groups (members, * = you are in it):\n\
         ENTRY groups g (2 members) *\n\
         ENTRY groups h (1 members)\n"
    );
    assert_eq!(
        wire(ChatEvent::Members {
            group: "g".into(),
            members: vec![("ann".into(), true), ("bob".into(), false)]
        }),
        "LIST members 2 Members of g:\nENTRY members ann (online)\nENTRY members bob\n"
    );
}

#[test]
fn a_refusal_is_an_err_line_with_its_kind() {
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::SelfTarget(SelfAction::Chat))),
        "ERR self You cannot chat with yourself.\n"
    );
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::GroupLimit(3))),
        "ERR group-limit 3 groups made from your address exist already; join one, or leave one you made\n"
    );
    assert_eq!(
        refusal(Refusal::LockedNow(60)).to_wire(),
        "BYE blocked Username or password incorrect. You are blocked for 60 seconds. Logging off.\n"
    );
    assert_eq!(
        refusal(Refusal::WrongPassword { tries_left: 1 }).to_wire(),
        "ERR bad-login Username or password incorrect. Please try again; if you fail 1 more time you will be blocked for a while\n"
    );
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::RequesterGone {
            requester: "sean".into(),
            session: 1234
        })),
        "ERR unreachable sean is no longer available for session 1234.\n"
    );
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::NotKept(NotKept::MailboxFull {
            user: "bob".into(),
            limit: 500
        }))),
        "ERR mailbox-full bob's offline mailbox is full (500 messages); not delivered\n"
    );
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::NotKept(NotKept::StorageFull { limit: 9 }))),
        "ERR storage-full the server's storage is full (9 bytes); the message was not stored and will not be delivered\n"
    );
    assert_eq!(
        wire(ChatEvent::Refused(Refusal::NoRoomForGroup)),
        "ERR storage-full the server's storage is full: no new group can be made now\n"
    );
}
