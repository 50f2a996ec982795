//! `block`, `unblock`, `blocked`, `status` and `intro`: what a user says about themselves
//! in the directory.

use super::{
    addresses, pair_key, ChatEvent, Outcome, PresenceChange, Record, Refusal, Registry, SelfAction,
    State,
};
use crate::protocol::Status;

/// Whom `block` and `unblock` may name: another user others can address.
fn blacklist_target<C: Clone>(
    state: &State<C>,
    registry: Registry<'_>,
    me: &str,
    target: &str,
    action: SelfAction,
) -> Result<(), Refusal> {
    if target == me {
        return Err(Refusal::SelfTarget(action));
    }
    if !state.is_registered(registry, target) {
        return Err(Refusal::NoSuchUser(target.to_string()));
    }
    Ok(())
}

/// `block USER`: `target` can no longer message `me` or see them online; an address pair
/// between them ends.
pub fn block<C: Clone>(
    state: &mut State<C>,
    registry: Registry<'_>,
    me: &str,
    target: &str,
) -> Outcome<C> {
    if let Err(refusal) = blacklist_target(state, registry, me, target, SelfAction::Block) {
        return Outcome::refuse(refusal);
    }
    if state.blocks(me, target) {
        return Outcome::refuse(Refusal::AlreadyBlocked(target.to_string()));
    }
    state.record(Record::Block {
        user: me.to_string(),
        target: target.to_string(),
    });
    let mut out = Outcome::default();
    // Blocking also ends an address exchange: no direct messages from them either.
    if state.pairs.contains(&pair_key(me, target)) {
        let removed = addresses::remove(state, me, target);
        out.deliveries.extend(removed.deliveries);
    }
    out.with_reply(ChatEvent::Blocked(target.to_string()))
}

/// `unblock USER`.
pub fn unblock<C: Clone>(
    state: &mut State<C>,
    registry: Registry<'_>,
    me: &str,
    target: &str,
) -> Outcome<C> {
    if let Err(refusal) = blacklist_target(state, registry, me, target, SelfAction::Unblock) {
        return Outcome::refuse(refusal);
    }
    if !state.blocks(me, target) {
        return Outcome::refuse(Refusal::NotBlocked(target.to_string()));
    }
    state.record(Record::Unblock {
        user: me.to_string(),
        target: target.to_string(),
    });
    Outcome::reply(ChatEvent::Unblocked(target.to_string()))
}

/// `blocked`: `me`'s blacklist, in order.
pub fn blocked<C: Clone>(state: &State<C>, me: &str) -> Outcome<C> {
    let list = state
        .directory
        .user(me)
        .map(|u| u.blocked.iter().cloned().collect())
        .unwrap_or_default();
    Outcome::reply(ChatEvent::Blacklist(list))
}

/// `status`: `me`'s status.
pub fn status<C: Clone>(state: &State<C>, me: &str) -> Outcome<C> {
    Outcome::reply(ChatEvent::StatusIs(state.status_of(me)))
}

/// `status S`: sets `me`'s status; others see them come, go or change as it looks to them.
pub fn set_status<C: Clone>(state: &mut State<C>, me: &str, new: Status) -> Outcome<C> {
    let old = state.status_of(me);
    state.record(Record::Status {
        user: me.to_string(),
        status: new.as_str().to_string(),
    });
    let mut out = Outcome::reply(ChatEvent::StatusSet(new));
    out.presence = status_changes(old, new);
    out
}

/// `intro TEXT`: sets (or, with an empty text, clears) `me`'s intro.
pub fn set_intro<C: Clone>(state: &mut State<C>, me: &str, text: &str) -> Outcome<C> {
    state.record(Record::Intro {
        user: me.to_string(),
        text: text.to_string(),
    });
    Outcome::reply(ChatEvent::IntroSet(!text.is_empty()))
}

/// What others see of a status change from `old` to `new`, in order: an invisible user
/// looks offline.
pub fn status_changes(old: Status, new: Status) -> Vec<PresenceChange> {
    use super::LogoutReason::Requested;
    if old == new {
        Vec::new()
    } else if new == Status::Invisible {
        vec![PresenceChange::Left(Requested)]
    } else if old == Status::Invisible && new == Status::Available {
        vec![PresenceChange::Joined]
    } else if old == Status::Invisible {
        vec![PresenceChange::Joined, PresenceChange::Status(new)]
    } else {
        vec![PresenceChange::Status(new)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{conn, online};
    use super::*;

    #[test]
    fn blocking_someone_records_it_and_hides_me_from_them() {
        let mut state = online(&["ann", "bob"]);
        let out = block(&mut state, Registry::Open, "ann", "bob");
        assert_eq!(out.replies, vec![ChatEvent::Blocked("bob".into())]);
        assert_eq!(
            state.directory.unwritten().last(),
            Some(&Record::Block {
                user: "ann".into(),
                target: "bob".into()
            })
        );
        assert!(state.blocks("ann", "bob"));
        assert!(!state.visible_to("ann", "bob"));
        assert!(state.visible_to("bob", "ann"));
    }

    #[test]
    fn blocking_twice_is_refused_and_records_nothing() {
        let mut state = online(&["ann", "bob"]);
        let _ = block(&mut state, Registry::Open, "ann", "bob");
        let journal = state.directory.unwritten().len();
        let out = block(&mut state, Registry::Open, "ann", "bob");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::AlreadyBlocked("bob".into()))]
        );
        assert_eq!(state.directory.unwritten().len(), journal);
    }

    #[test]
    fn blocking_a_stranger_or_oneself_is_refused() {
        let mut state = online(&["ann"]);
        let out = block(&mut state, Registry::Open, "ann", "zed");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::NoSuchUser("zed".into()))]
        );
        let out = block(&mut state, Registry::Open, "ann", "ann");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::SelfTarget(SelfAction::Block))]
        );
        assert!(!state.directory.blocks_anyone("ann"));
    }

    #[test]
    fn blocking_a_paired_user_ends_the_pair_and_tells_them() {
        let mut state = online(&["ann", "bob"]);
        state.pairs.insert(pair_key("ann", "bob"));
        let out = block(&mut state, Registry::Open, "ann", "bob");
        assert!(state.pairs.is_empty());
        assert_eq!(
            out.deliveries,
            vec![(
                conn(&state, "bob"),
                ChatEvent::AddressRemovedBy("ann".into())
            )]
        );
    }

    #[test]
    fn unblocking_lists_and_records() {
        let mut state = online(&["ann", "bob"]);
        let out = unblock(&mut state, Registry::Open, "ann", "bob");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::NotBlocked("bob".into()))]
        );
        let _ = block(&mut state, Registry::Open, "ann", "bob");
        assert_eq!(
            blocked(&state, "ann").replies,
            vec![ChatEvent::Blacklist(vec!["bob".into()])]
        );
        let out = unblock(&mut state, Registry::Open, "ann", "bob");
        assert_eq!(out.replies, vec![ChatEvent::Unblocked("bob".into())]);
        assert_eq!(
            state.directory.unwritten().last(),
            Some(&Record::Unblock {
                user: "ann".into(),
                target: "bob".into()
            })
        );
        assert!(state.visible_to("ann", "bob"));
    }

    #[test]
    fn going_invisible_looks_like_leaving_and_coming_back_like_joining() {
        let mut state = online(&["ann", "bob"]);
        let out = set_status(&mut state, "ann", Status::Invisible);
        assert_eq!(
            out.presence,
            vec![PresenceChange::Left(super::super::LogoutReason::Requested)]
        );
        assert!(!state.visible_to("ann", "bob"));
        let out = set_status(&mut state, "ann", Status::Busy);
        assert_eq!(
            out.presence,
            vec![PresenceChange::Joined, PresenceChange::Status(Status::Busy)]
        );
        let out = set_status(&mut state, "ann", Status::Busy);
        assert!(out.presence.is_empty());
        assert_eq!(out.replies, vec![ChatEvent::StatusSet(Status::Busy)]);
        assert_eq!(
            status(&state, "ann").replies,
            vec![ChatEvent::StatusIs(Status::Busy)]
        );
    }

    #[test]
    fn an_empty_intro_clears_it() {
        let mut state = online(&["ann"]);
        let out = set_intro(&mut state, "ann", "hello");
        assert_eq!(out.replies, vec![ChatEvent::IntroSet(true)]);
        assert_eq!(state.directory.intro("ann"), Some("hello"));
        let out = set_intro(&mut state, "ann", "");
        assert_eq!(out.replies, vec![ChatEvent::IntroSet(false)]);
        assert_eq!(state.directory.intro("ann"), None);
    }
}
