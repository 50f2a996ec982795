//! Who is online and who was: `whoelse`, `list` and `wholast N`, each showing a user only
//! to those who may see them (not invisible, not blocking the viewer).

use super::{ChatEvent, Outcome, State, UserEntry, UserList};
use crate::protocol::Status;

/// `whoelse` (without `me`) or `list` (seed 004, with `me`): the online users visible to
/// `me`, in name order.
pub fn online<C: Clone>(state: &State<C>, me: &str, list: UserList) -> Outcome<C> {
    let include_me = list == UserList::SignedIn;
    let mut names: Vec<&String> = state
        .online
        .keys()
        .filter(|n| {
            if n.as_str() == me {
                include_me
            } else {
                state.visible_to(n, me)
            }
        })
        .collect();
    names.sort();
    let entries = names.into_iter().map(|n| entry(state, n, None)).collect();
    Outcome::reply(ChatEvent::Users { list, entries })
}

/// `wholast N` at `now`: users online now (visibly) or who logged out in the last
/// `minutes`, but not those who blocked `me`. An invisible user shows as offline since
/// their last logout; one who never logged out (a new user) does not show.
pub fn last<C: Clone>(state: &State<C>, now: u64, me: &str, minutes: u32) -> Outcome<C> {
    let since = now.saturating_sub(u64::from(minutes) * 60);
    let shown = |name: &String| name != me && !state.blocks(name, me);
    let visibly_online =
        |name: &str| state.online.contains_key(name) && state.status_of(name) != Status::Invisible;
    // Online users (whom the directory may not know yet), then those gone since `since`.
    let mut found: Vec<(&String, Option<u64>)> = state
        .online
        .keys()
        .filter(|n| shown(n) && visibly_online(n))
        .map(|n| (n, None))
        .collect();
    for (name, record) in state.directory.users() {
        if !shown(name) || visibly_online(name) {
            continue;
        }
        if state.online.get(name).is_some_and(|o| o.new_user) {
            // Their last seen is their first login, which invisible users keep to themselves.
            continue;
        }
        if let Some(t) = record.last_seen.filter(|t| *t >= since) {
            found.push((name, Some(t)));
        }
    }
    found.sort();
    let entries = found
        .into_iter()
        .map(|(n, seen)| entry(state, n, seen))
        .collect();
    Outcome::reply(ChatEvent::Users {
        list: UserList::WhoLast(minutes),
        entries,
    })
}

/// The online users `viewer` may see (not invisible, not blocking `viewer`), viewer
/// included, with their status, sorted by name; and how many are online in all.
pub fn visible_online<C: Clone>(state: &State<C>, viewer: &str) -> (Vec<(String, Status)>, usize) {
    let users = state
        .online
        .names_in_order()
        .filter(|(n, seen)| {
            debug_assert_eq!(**seen, state.seen_of(n), "the online list drifted for {n}");
            state.shown_to(n, seen, viewer)
        })
        .map(|(n, seen)| (n.clone(), seen.status))
        .collect();
    (users, state.online.len())
}

/// The online user `viewer` may see whose name is `name`, or equals it ignoring ASCII case
/// (IRC compares names so, lanchat exactly: the exact name is tried first), with their
/// status and intro.
pub fn find_online<C: Clone>(
    state: &State<C>,
    viewer: &str,
    name: &str,
) -> Option<(String, Status, String)> {
    let found = if state.online.contains_key(name) {
        Some(name.to_string())
    } else {
        state
            .online
            .keys()
            .find(|n| n.eq_ignore_ascii_case(name))
            .cloned()
    }?;
    if !state.visible_to(&found, viewer) {
        return None;
    }
    let intro = state
        .directory
        .intro(&found)
        .unwrap_or_default()
        .to_string();
    let status = state.status_of(&found);
    Some((found, status, intro))
}

fn entry<C: Clone>(state: &State<C>, name: &str, last_seen: Option<u64>) -> UserEntry {
    UserEntry {
        name: name.to_string(),
        status: state.status_of(name),
        last_seen,
        intro: state.directory.intro(name).unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{blocks, online as with_online, set_status};
    use super::*;
    use crate::server::rules::LogoutReason;
    use crate::store::Event as Record;

    fn names(out: &Outcome<impl Clone>) -> Vec<(String, Option<u64>)> {
        let ChatEvent::Users { entries, .. } = &out.replies[0] else {
            panic!("not a list");
        };
        entries
            .iter()
            .map(|e| (e.name.clone(), e.last_seen))
            .collect()
    }

    #[test]
    fn whoelse_hides_me_the_invisible_and_those_blocking_me() {
        let mut state = with_online(&["dan", "ann", "bob", "cid"]);
        set_status(&mut state, "bob", Status::Invisible);
        blocks(&mut state, "cid", "ann");
        let out = online(&state, "ann", UserList::WhoElse);
        assert_eq!(names(&out), vec![("dan".into(), None)]);
        let out = online(&state, "ann", UserList::SignedIn);
        assert_eq!(
            names(&out),
            vec![("ann".into(), None), ("dan".into(), None)]
        );
    }

    #[test]
    fn a_door_finds_an_online_user_ignoring_case_unless_hidden_from_the_viewer() {
        let mut state = with_online(&["Ann", "bob"]);
        state.record(Record::Intro {
            user: "Ann".into(),
            text: "hi".into(),
        });
        assert_eq!(
            find_online(&state, "bob", "ann"),
            Some(("Ann".into(), Status::Available, "hi".into()))
        );
        set_status(&mut state, "Ann", Status::Invisible);
        assert_eq!(find_online(&state, "bob", "ann"), None);
        assert_eq!(
            find_online(&state, "Ann", "Ann").map(|f| f.1),
            Some(Status::Invisible)
        );
        assert_eq!(
            visible_online(&state, "bob"),
            (vec![("bob".into(), Status::Available)], 2)
        );
    }

    #[test]
    fn an_invisible_user_shows_offline_since_their_last_logout_and_a_new_one_not_at_all() {
        // Both log in for the first time at 0 (in open mode: the directory learns them).
        let mut state = with_online(&["ann", "bob"]);
        set_status(&mut state, "bob", Status::Invisible);
        assert_eq!(names(&last(&state, 60, "ann", 5)), vec![]);
        let id = state.online["bob"].conn.id;
        let _ = super::super::login::depart(&mut state, 30, "bob", id, LogoutReason::Requested);
        super::super::testing::put_online(&mut state, "bob", 7);
        assert_eq!(
            names(&last(&state, 60, "ann", 5)),
            vec![("bob".into(), Some(30))]
        );
    }

    #[test]
    fn wholast_counts_minutes_back_from_now() {
        let mut state = with_online(&["ann"]);
        for (name, at) in [("old", 1_000), ("new", 1_500)] {
            state.record(Record::Seen {
                user: name.into(),
                at,
            });
        }
        let out = last(&state, 1_600, "ann", 2);
        assert_eq!(names(&out), vec![("new".into(), Some(1_500))]);
        let out = last(&state, 1_600, "ann", 10);
        assert_eq!(
            names(&out),
            vec![("new".into(), Some(1_500)), ("old".into(), Some(1_000))]
        );
    }
}
