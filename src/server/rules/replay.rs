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
enum Step {
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

fn any_command() -> impl Strategy<Value = Step> {
    let user = || prop::sample::select(vec!["ann", "bob", "cid"]);
    let group = || prop::sample::select(vec!["g", "h"]);
    let status = prop::sample::select(vec![Status::Available, Status::Busy, Status::Invisible]);
    let text = prop::sample::select(vec!["", "hello", "tab\there"]);
    prop_oneof![
        user().prop_map(Step::Login),
        user().prop_map(Step::Logout),
        (user(), user()).prop_map(|(a, b)| Step::Block(a, b)),
        (user(), user()).prop_map(|(a, b)| Step::Unblock(a, b)),
        (user(), status).prop_map(|(a, s)| Step::Status(a, s)),
        (user(), text).prop_map(|(a, t)| Step::Intro(a, t)),
        (user(), group()).prop_map(|(a, g)| Step::Create(a, g)),
        (user(), group()).prop_map(|(a, g)| Step::Join(a, g)),
        (user(), group()).prop_map(|(a, g)| Step::Leave(a, g)),
        (group(), user()).prop_map(|(g, a)| Step::Kick(g, a)),
    ]
}

/// Applies `command` at `now` as the hub would (open mode), with connection `id`.
fn apply(state: &mut State<Fake>, now: u64, id: u64, command: &Step) {
    let open = Registry::Open;
    match *command {
        Step::Login(name) => {
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
        Step::Logout(name) => {
            if let Some(id) = state.online.get(name).map(|o| o.conn.id) {
                let _ = login::depart(state, now, name, id, LogoutReason::Requested);
            }
        }
        Step::Block(me, target) => drop(blacklist::block(state, open, me, target)),
        Step::Unblock(me, target) => drop(blacklist::unblock(state, open, me, target)),
        Step::Status(me, status) => drop(blacklist::set_status(state, me, status)),
        Step::Intro(me, text) => drop(blacklist::set_intro(state, me, text)),
        Step::Create(me, group) => {
            let bounds = groups::NewGroups {
                per_address: 1,
                room: true,
            };
            drop(groups::create(state, me, group, Some(bounds)))
        }
        Step::Join(me, group) => drop(groups::join(state, me, group)),
        Step::Leave(me, group) => drop(groups::leave(state, me, group)),
        Step::Kick(group, target) => drop(groups::remove_member(state, group, target)),
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
