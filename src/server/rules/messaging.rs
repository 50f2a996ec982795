//! Who a message may reach and what its sender is told: `message USER`, the three
//! broadcasts and `group send`. The delivery itself (live, or into the mailbox under the
//! store's lock) is the hub's; these rules decide before it and count after it.

use super::{ChatEvent, Refusal, Registry, State};
use crate::protocol::{sanitize_text, valid_username, Status};

/// `message USER`: whether `me` may write to `to`; their status if so.
pub fn private<C: Clone>(
    state: &State<C>,
    registry: Registry<'_>,
    me: &str,
    to: &str,
) -> Result<Status, Refusal> {
    if !state.is_registered(registry, to) {
        return Err(Refusal::Typo(to.to_string()));
    }
    if state.blocks(to, me) {
        return Err(Refusal::MessageBlocked(to.to_string()));
    }
    Ok(state.status_of(to))
}

/// What `me` is told of a private message to `to` (whose status was `status`), delivered
/// now or stored: an invisible user looks offline, a busy one may answer later.
pub fn private_answer(me: &str, to: &str, status: Status, delivered_now: bool) -> Vec<ChatEvent> {
    let mut answer = vec![
        if delivered_now && (status != Status::Invisible || to == me) {
            ChatEvent::Sent(to.to_string())
        } else {
            ChatEvent::Queued(to.to_string())
        },
    ];
    if status == Status::Busy && to != me {
        answer.push(ChatEvent::Busy(to.to_string()));
    }
    answer
}

/// `broadcast`: everyone online to send to (the sender too if `echo`), each with whether
/// they show in the count (not the sender's echo, not invisible users, who must look
/// offline); and how many who would show were skipped because they blocked `me`.
pub fn online_audience<C: Clone>(
    state: &State<C>,
    me: &str,
    echo: bool,
) -> (Vec<(C, bool)>, usize) {
    let mut skipped = 0;
    let mut targets = Vec::new();
    for (n, o) in state.online.iter() {
        let visible = n != me && state.status_of(n) != Status::Invisible;
        if n == me && !echo {
            continue;
        }
        if state.blocks(n, me) {
            skipped += usize::from(visible);
            continue;
        }
        targets.push((o.conn.clone(), visible));
    }
    (targets, skipped)
}

/// Whether a copy from `me` may go to `to` (`None`: they blocked `me`), and if so whether
/// it counts as offline (`to` is invisible).
pub fn reach<C: Clone>(state: &State<C>, me: &str, to: &str) -> Option<bool> {
    (!state.blocks(to, me)).then(|| state.status_of(to) == Status::Invisible)
}

/// `broadcast USERS`: whether `to`, one of the named users, may get a copy from `me`;
/// whether it counts as offline if so.
pub fn named_copy<C: Clone>(
    state: &State<C>,
    registry: Registry<'_>,
    me: &str,
    to: &str,
) -> Result<bool, Refusal> {
    if !valid_username(to) || !state.is_registered(registry, to) {
        return Err(Refusal::Typo(sanitize_text(to)));
    }
    reach(state, me, to).ok_or_else(|| Refusal::CopyBlocked(to.to_string()))
}

/// `group send NAME`: each member but `me` who did not block them, with whether they count
/// as offline (invisible) and their connection if online.
#[allow(clippy::type_complexity)]
pub fn group_audience<C: Clone>(
    state: &State<C>,
    me: &str,
    group: &str,
) -> Result<Vec<(String, bool, Option<C>)>, Refusal> {
    let Some(g) = state.directory.group(group) else {
        return Err(Refusal::NoSuchGroup(group.to_string()));
    };
    if !g.members.contains(me) {
        return Err(Refusal::SendNotMember(group.to_string()));
    }
    // One look-up of each member's record for both the blacklist and the status (a crowd's
    // group costs a cache miss or two per look-up).
    Ok(g.members
        .iter()
        .filter(|m| m.as_str() != me)
        .filter_map(|m| {
            let record = state.directory.user(m);
            if record.is_some_and(|u| u.blocked.contains(me)) {
                return None;
            }
            let status = record
                .and_then(|u| u.status.as_deref())
                .and_then(Status::parse);
            let invisible = status == Some(Status::Invisible);
            Some((m.clone(), invisible, state.conn(m)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{blocks, conn, online, set_status};
    use super::*;

    #[test]
    fn a_message_to_a_stranger_or_a_blocker_is_refused() {
        let mut state = online(&["ann", "bob"]);
        assert_eq!(
            private(&state, Registry::Open, "ann", "zed"),
            Err(Refusal::Typo("zed".into()))
        );
        blocks(&mut state, "bob", "ann");
        assert_eq!(
            private(&state, Registry::Open, "ann", "bob"),
            Err(Refusal::MessageBlocked("bob".into()))
        );
        assert_eq!(
            private(&state, Registry::Open, "bob", "ann"),
            Ok(Status::Available)
        );
    }

    #[test]
    fn an_invisible_receiver_looks_offline_and_a_busy_one_may_answer_later() {
        assert_eq!(
            private_answer("ann", "bob", Status::Invisible, true),
            vec![ChatEvent::Queued("bob".into())]
        );
        assert_eq!(
            private_answer("ann", "ann", Status::Invisible, true),
            vec![ChatEvent::Sent("ann".into())]
        );
        assert_eq!(
            private_answer("ann", "bob", Status::Busy, false),
            vec![
                ChatEvent::Queued("bob".into()),
                ChatEvent::Busy("bob".into())
            ]
        );
    }

    #[test]
    fn a_broadcast_skips_blockers_and_counts_only_the_visible() {
        let mut state = online(&["ann", "bob", "cid", "dan"]);
        set_status(&mut state, "bob", Status::Invisible);
        blocks(&mut state, "cid", "ann");
        let (mut targets, skipped) = online_audience(&state, "ann", true);
        targets.sort_by_key(|(c, _)| c.id);
        assert_eq!(skipped, 1);
        assert_eq!(
            targets,
            vec![
                (conn(&state, "ann"), false),
                (conn(&state, "bob"), false),
                (conn(&state, "dan"), true)
            ]
        );
        let (targets, _) = online_audience(&state, "ann", false);
        assert_eq!(targets.len(), 2);
    }

    #[test]
    fn a_named_copy_checks_the_name_before_the_blacklist() {
        let mut state = online(&["ann", "bob"]);
        blocks(&mut state, "bob", "ann");
        assert_eq!(
            named_copy(&state, Registry::Open, "ann", "a\u{7}b"),
            Err(Refusal::Typo(sanitize_text("a\u{7}b")))
        );
        assert_eq!(
            named_copy(&state, Registry::Open, "ann", "bob"),
            Err(Refusal::CopyBlocked("bob".into()))
        );
        assert_eq!(named_copy(&state, Registry::Open, "bob", "ann"), Ok(false));
    }

    #[test]
    fn a_group_send_needs_membership_and_skips_the_sender_and_blockers() {
        let mut state = online(&["ann", "bob"]);
        let _ = super::super::groups::create(&mut state, "ann", "g", None);
        assert_eq!(
            group_audience(&state, "bob", "g"),
            Err(Refusal::SendNotMember("g".into()))
        );
        for m in ["bob", "cid", "dan"] {
            let _ = super::super::groups::join(&mut state, m, "g");
        }
        blocks(&mut state, "dan", "ann");
        assert_eq!(
            group_audience(&state, "ann", "g"),
            Ok(vec![
                ("bob".into(), false, Some(conn(&state, "bob"))),
                ("cid".into(), false, None)
            ])
        );
    }
}
