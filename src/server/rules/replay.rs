//! A property of the rules and the store together: after any session of commands, the
//! journal the store wrote replays to the directory the rules hold live.

use super::testing::Fake;
use super::{blacklist, groups, login, LogoutReason, Registry, State};
use crate::protocol::Status;
use crate::store::Store;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// One command of a session, by one of a few users on one of a few groups.
#[derive(Clone, Debug)]
enum Command {
    Login(&'static str),
    Logout(&'static str),
    Block(&'static str, &'static str),
    Unblock(&'static str, &'static str),
    Status(&'static str, Status),
    Intro(&'static str, &'static str),
    Create(&'static str, &'static str),
    Join(&'static str, &'static str),
    Leave(&'static str, &'static str),
    Kick(&'static str, &'static str),
}

fn any_command() -> impl Strategy<Value = Command> {
    let user = || prop::sample::select(vec!["ann", "bob", "cid"]);
    let group = || prop::sample::select(vec!["g", "h"]);
    let status = prop::sample::select(vec![Status::Available, Status::Busy, Status::Invisible]);
    let text = prop::sample::select(vec!["", "hello", "tab\there"]);
    prop_oneof![
        user().prop_map(Command::Login),
        user().prop_map(Command::Logout),
        (user(), user()).prop_map(|(a, b)| Command::Block(a, b)),
        (user(), user()).prop_map(|(a, b)| Command::Unblock(a, b)),
        (user(), status).prop_map(|(a, s)| Command::Status(a, s)),
        (user(), text).prop_map(|(a, t)| Command::Intro(a, t)),
        (user(), group()).prop_map(|(a, g)| Command::Create(a, g)),
        (user(), group()).prop_map(|(a, g)| Command::Join(a, g)),
        (user(), group()).prop_map(|(a, g)| Command::Leave(a, g)),
        (group(), user()).prop_map(|(g, a)| Command::Kick(g, a)),
    ]
}

/// Applies `command` at `now` as the hub would (open mode), with connection `id`.
fn apply(state: &mut State<Fake>, now: u64, id: u64, command: &Command) {
    let open = Registry::Open;
    match *command {
        Command::Login(name) => {
            let conn = Fake {
                id,
                peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)),
            };
            let policy = login::LoginPolicy {
                reject_duplicates: false,
                new_users_per_address: Some(usize::MAX),
                room_for_new_users: true,
            };
            let _ = login::arrive(state, now, name, conn, policy);
        }
        Command::Logout(name) => {
            if let Some(id) = state.online.get(name).map(|o| o.conn.id) {
                let _ = login::depart(state, now, name, id, LogoutReason::Requested);
            }
        }
        Command::Block(me, target) => drop(blacklist::block(state, open, me, target)),
        Command::Unblock(me, target) => drop(blacklist::unblock(state, open, me, target)),
        Command::Status(me, status) => drop(blacklist::set_status(state, me, status)),
        Command::Intro(me, text) => drop(blacklist::set_intro(state, me, text)),
        Command::Create(me, group) => {
            let bounds = groups::NewGroups {
                per_address: 1,
                room: true,
            };
            drop(groups::create(state, me, group, Some(bounds)))
        }
        Command::Join(me, group) => drop(groups::join(state, me, group)),
        Command::Leave(me, group) => drop(groups::leave(state, me, group)),
        Command::Kick(group, target) => drop(groups::remove_member(state, group, target)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_replay_of_the_journal_after_any_session_is_the_live_directory(
        commands in prop::collection::vec(any_command(), 0..80),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (store, directory) = Store::open(tmp.path(), 10).unwrap();
        let mut state = State::<Fake> {
            directory,
            ..State::default()
        };
        for (i, command) in commands.iter().enumerate() {
            apply(&mut state, 1_000 + i as u64, i as u64, command);
            store.write_journal(|| &mut state.directory).unwrap();
        }
        drop(store);
        let (_, replayed) = Store::open(tmp.path(), 10).unwrap();
        prop_assert_eq!(replayed, state.directory);
    }
}
