//! Groups: `group create|join|leave|list|members`, and a member removed by a channel
//! operator (the IRC door's KICK). Sending to a group is still the hub's: it delivers or
//! stores for each member under the store's lock.

use super::{ChatEvent, Outcome, Record, Refusal, State};

/// In open mode, the bounds on making a group (anyone may, so a script could fill the disk).
#[derive(Clone, Copy, Debug)]
pub struct NewGroups {
    /// How many groups existing now may have been made from one address
    /// (`max_groups_per_ip`).
    pub per_address: usize,
    /// Whether the data directory has room for a new group's records (`max_data_bytes`).
    pub room: bool,
}

/// `group create NAME`: `me` makes it and is its first member, within `bounds` in open mode.
pub fn create<C: super::Endpoint>(
    state: &mut State<C>,
    me: &str,
    name: &str,
    bounds: Option<NewGroups>,
) -> Outcome<C> {
    if bounds.is_some_and(|b| !b.room) {
        return Outcome::refuse(Refusal::NoRoomForGroup);
    }
    if state.directory.group(name).is_some() {
        return Outcome::refuse(Refusal::GroupExists(name.to_string()));
    }
    if let Some(cap) = bounds.map(|b| b.per_address) {
        if let Some(ip) = state.conn(me).map(|c| c.peer_ip()) {
            if !state.groups_made.try_add(ip, cap) {
                return Outcome::refuse(Refusal::GroupLimit(cap));
            }
            state.group_origin.insert(name.to_string(), ip);
        }
    }
    state.record(Record::GroupCreate {
        group: name.to_string(),
        owner: me.to_string(),
    });
    // The creation makes the owner a member; the journal has said so in a join of its own
    // since groups began, which a replay finds changes nothing.
    state.record(Record::GroupJoin {
        group: name.to_string(),
        user: me.to_string(),
    });
    Outcome::reply(ChatEvent::GroupCreated(name.to_string()))
}

/// `group join NAME`.
pub fn join<C: Clone>(state: &mut State<C>, me: &str, name: &str) -> Outcome<C> {
    let Some(g) = state.directory.group(name) else {
        return Outcome::refuse(Refusal::NoSuchGroup(name.to_string()));
    };
    if g.members.contains(me) {
        return Outcome::refuse(Refusal::AlreadyMember(name.to_string()));
    }
    state.record(Record::GroupJoin {
        group: name.to_string(),
        user: me.to_string(),
    });
    Outcome::reply(ChatEvent::GroupJoined(name.to_string()))
}

/// `group leave NAME`; the group goes with its last member.
pub fn leave<C: Clone>(state: &mut State<C>, me: &str, name: &str) -> Outcome<C> {
    let Some(g) = state.directory.group(name) else {
        return Outcome::refuse(Refusal::NoSuchGroup(name.to_string()));
    };
    if !g.members.contains(me) {
        return Outcome::refuse(Refusal::NotMember(name.to_string()));
    }
    state.record(Record::GroupLeave {
        group: name.to_string(),
        user: me.to_string(),
    });
    Outcome::reply(ChatEvent::GroupLeft(name.to_string()))
}

/// Removes `target` from `group` as if they had left; false when there is no such group or
/// they were not in it.
pub fn remove_member<C: Clone>(state: &mut State<C>, group: &str, target: &str) -> bool {
    let member = state
        .directory
        .group(group)
        .is_some_and(|g| g.members.contains(target));
    if member {
        state.record(Record::GroupLeave {
            group: group.to_string(),
            user: target.to_string(),
        });
    }
    member
}

/// `group list`: every group with its size and whether `me` is in it.
pub fn list<C: Clone>(state: &State<C>, me: &str) -> Outcome<C> {
    let groups = state
        .directory
        .groups()
        .iter()
        .map(|(name, g)| (name.clone(), g.members.len(), g.members.contains(me)))
        .collect();
    Outcome::reply(ChatEvent::Groups(groups))
}

/// `group members NAME`: each member, and whether `me` may see them online.
pub fn members<C: Clone>(state: &State<C>, me: &str, name: &str) -> Outcome<C> {
    let Some(g) = state.directory.group(name) else {
        return Outcome::refuse(Refusal::NoSuchGroup(name.to_string()));
    };
    let members = g
        .members
        .iter()
        .map(|m| {
            let online = state.online.contains_key(m) && state.visible_to(m, me);
            (m.clone(), online)
        })
        .collect();
    Outcome::reply(ChatEvent::Members {
        group: name.to_string(),
        members,
    })
}

/// The group called `name`, or equal to it ignoring ASCII case (IRC channel names): its
/// real name and its members, each with whether `viewer` may see them online.
pub fn view<C: Clone>(
    state: &State<C>,
    viewer: &str,
    name: &str,
) -> Option<(String, Vec<(String, bool)>)> {
    let groups = state.directory.groups();
    let (real, group) = match groups.get_key_value(name) {
        Some(found) => found,
        None => groups.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?,
    };
    let members = group
        .members
        .iter()
        .map(|m| {
            let online = state.online.contains_key(m) && state.visible_to(m, viewer);
            (m.clone(), online)
        })
        .collect();
    Some((real.clone(), members))
}

/// Every group: its name, its number of members and whether `user` is one of them.
pub fn all_with<C: Clone>(state: &State<C>, user: &str) -> Vec<(String, usize, bool)> {
    state
        .directory
        .groups()
        .iter()
        .map(|(n, g)| (n.clone(), g.members.len(), g.members.contains(user)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{online, set_status};
    use super::*;
    use crate::protocol::Status;

    /// Open mode's bounds: `cap` groups per address, room on disk.
    fn capped(cap: usize) -> Option<NewGroups> {
        Some(NewGroups {
            per_address: cap,
            room: true,
        })
    }

    #[test]
    fn a_group_lives_from_its_creation_to_its_last_member_leaving() {
        let mut state = online(&["ann", "bob"]);
        let out = create(&mut state, "ann", "g", None);
        assert_eq!(out.replies, vec![ChatEvent::GroupCreated("g".into())]);
        assert_eq!(
            state.directory.unwritten()[2..],
            [
                Record::GroupCreate {
                    group: "g".into(),
                    owner: "ann".into()
                },
                Record::GroupJoin {
                    group: "g".into(),
                    user: "ann".into()
                }
            ]
        );
        let out = create(&mut state, "bob", "g", None);
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::GroupExists("g".into()))]
        );
        assert_eq!(
            join(&mut state, "bob", "g").replies,
            vec![ChatEvent::GroupJoined("g".into())]
        );
        assert_eq!(
            join(&mut state, "bob", "g").replies,
            vec![ChatEvent::Refused(Refusal::AlreadyMember("g".into()))]
        );
        assert_eq!(
            list(&state, "bob").replies,
            vec![ChatEvent::Groups(vec![("g".into(), 2, true)])]
        );
        let _ = leave(&mut state, "ann", "g");
        assert!(!remove_member(&mut state, "g", "ann"));
        assert!(remove_member(&mut state, "g", "bob"));
        assert!(state.directory.groups().is_empty());
        assert_eq!(
            leave(&mut state, "bob", "g").replies,
            vec![ChatEvent::Refused(Refusal::NoSuchGroup("g".into()))]
        );
    }

    #[test]
    fn an_address_makes_groups_up_to_its_cap_and_gets_one_back_when_one_goes() {
        let mut state = online(&["ann"]);
        let _ = create(&mut state, "ann", "a", capped(2));
        let _ = create(&mut state, "ann", "b", capped(2));
        let journal = state.directory.unwritten().len();
        let out = create(&mut state, "ann", "c", capped(2));
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::GroupLimit(2))]
        );
        assert_eq!(state.directory.unwritten().len(), journal);
        let _ = leave(&mut state, "ann", "a");
        let out = create(&mut state, "ann", "c", capped(2));
        assert_eq!(out.replies, vec![ChatEvent::GroupCreated("c".into())]);
        let full = Some(NewGroups {
            per_address: 2,
            room: false,
        });
        assert_eq!(
            create(&mut state, "ann", "d", full).replies,
            vec![ChatEvent::Refused(Refusal::NoRoomForGroup)]
        );
    }

    #[test]
    fn a_channel_name_finds_its_group_ignoring_case() {
        let mut state = online(&["ann"]);
        let _ = create(&mut state, "ann", "Team", None);
        assert_eq!(
            view(&state, "ann", "team"),
            Some(("Team".into(), vec![("ann".into(), true)]))
        );
        assert_eq!(view(&state, "ann", "other"), None);
        assert_eq!(all_with(&state, "bob"), vec![("Team".into(), 1, false)]);
    }

    #[test]
    fn members_show_online_only_to_those_who_may_see_it() {
        let mut state = online(&["ann", "bob"]);
        let _ = create(&mut state, "ann", "g", None);
        let _ = join(&mut state, "bob", "g");
        let _ = join(&mut state, "zed", "g");
        set_status(&mut state, "bob", Status::Invisible);
        assert_eq!(
            members(&state, "ann", "g").replies,
            vec![ChatEvent::Members {
                group: "g".into(),
                members: vec![
                    ("ann".into(), true),
                    ("bob".into(), false),
                    ("zed".into(), false)
                ]
            }]
        );
    }
}
