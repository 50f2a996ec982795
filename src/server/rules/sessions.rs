//! Two-person chat sessions (seed 000): `chat USER`, `accept`/`decline`, `end [N]`, `snum`,
//! the lines said inside one, and what a logout ends.

use super::{ChatEvent, ChatSession, Outcome, Refusal, Registry, SelfAction, State};
use crate::protocol::Status;

/// `chat USER`: asks `with` for a session; `draw` gives candidate numbers in 1000..=9999.
pub fn request<C: Clone>(
    state: &mut State<C>,
    registry: Registry<'_>,
    me: &str,
    with: &str,
    draw: impl FnMut() -> u32,
) -> Outcome<C> {
    if with == me {
        return Outcome::refuse(Refusal::SelfTarget(SelfAction::Chat));
    }
    if !state.is_registered(registry, with) {
        return Outcome::refuse(Refusal::NoSuchUser(with.to_string()));
    }
    if let Some(id) = state.session_of(me) {
        return Outcome::refuse(Refusal::InSession(id));
    }
    let unreachable = || Outcome::refuse(Refusal::ChatUnreachable(with.to_string()));
    let Some(target) = state.online.get(with) else {
        return unreachable();
    };
    if target.session.is_some()
        || state.blocks(with, me)
        || state.status_of(with) == Status::Invisible
        || state
            .sessions
            .values()
            .any(|s| !s.started && ((s.from == me && s.to == with) || s.from == with))
    {
        return unreachable();
    }
    let target = target.conn.clone();
    let id = new_session_id(state, draw);
    state.requests += 1;
    let asked = state.requests;
    state.sessions.insert(
        id,
        ChatSession {
            from: me.to_string(),
            to: with.to_string(),
            started: false,
            asked,
        },
    );
    Outcome::reply(ChatEvent::ChatRequested {
        with: with.to_string(),
        session: id,
    })
    .deliver(
        target,
        ChatEvent::SessionRequest {
            session: id,
            from: me.to_string(),
        },
    )
}

/// `accept` / `decline` of a pending chat request to `me` (from `from`, or the latest).
pub fn answer<C: Clone>(
    state: &mut State<C>,
    me: &str,
    from: Option<&str>,
    accept: bool,
) -> Outcome<C> {
    let pending = state
        .sessions
        .iter()
        .filter(|(_, s)| !s.started && s.to == me && from.is_none_or(|f| s.from == f))
        .max_by_key(|(_, s)| s.asked)
        .map(|(id, s)| (*id, s.from.clone()));
    let Some((id, requester)) = pending else {
        return Outcome::refuse(Refusal::NothingPending);
    };
    let requester_online = state
        .online
        .get(&requester)
        .map(|o| (o.session, o.conn.clone()));
    if let (true, Some(n)) = (accept, state.session_of(me)) {
        // The request stays pending: it can be accepted once this session ends.
        return Outcome::refuse(Refusal::InSessionAccepting {
            session: n,
            requester,
        });
    }
    let Some((None, conn)) = requester_online else {
        state.sessions.remove(&id);
        return Outcome::refuse(Refusal::RequesterGone {
            requester,
            session: id,
        });
    };
    if !accept {
        state.sessions.remove(&id);
        return Outcome::reply(ChatEvent::ChatDeclined(requester)).deliver(
            conn,
            ChatEvent::SessionDeclined {
                session: id,
                by: me.to_string(),
            },
        );
    }
    if let Some(s) = state.sessions.get_mut(&id) {
        s.started = true;
    }
    for n in [me, requester.as_str()] {
        if let Some(o) = state.online.get_mut(n) {
            o.session = Some(id);
        }
    }
    Outcome::reply(ChatEvent::SessionStarted {
        session: id,
        with: requester,
    })
    .deliver(
        conn,
        ChatEvent::SessionStarted {
            session: id,
            with: me.to_string(),
        },
    )
}

/// `end [N]`: ends `me`'s session (or withdraws a pending request).
pub fn end<C: Clone>(state: &mut State<C>, me: &str, id: Option<u32>) -> Outcome<C> {
    let target = match (id, state.session_of(me)) {
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) => state
            .sessions
            .iter()
            .find(|(_, s)| !s.started && s.from == me)
            .map(|(id, _)| *id),
    };
    let Some(n) = target else {
        return Outcome::refuse(Refusal::NoSession);
    };
    match state.sessions.get(&n) {
        Some(s) if s.from == me || s.to == me => {}
        _ => return Outcome::refuse(Refusal::NotInSession(n)),
    }
    let s = state.sessions.remove(&n).expect("checked above");
    let other = if s.from == me { s.to } else { s.from };
    for who in [me, other.as_str()] {
        if let Some(o) = state.online.get_mut(who).filter(|o| o.session == Some(n)) {
            o.session = None;
        }
    }
    let mut out = Outcome::reply(ChatEvent::SessionEnded {
        session: n,
        with: other.clone(),
    });
    if let Some(conn) = state.conn(&other) {
        out = out.deliver(
            conn,
            ChatEvent::SessionEndedBy {
                session: n,
                by: me.to_string(),
            },
        );
    }
    out
}

/// `snum`: the current session number.
pub fn number<C: Clone>(state: &State<C>, me: &str) -> Outcome<C> {
    Outcome::reply(match state.session_of(me) {
        Some(n) => {
            let s = &state.sessions[&n];
            let other = if s.from == me { &s.to } else { &s.from };
            ChatEvent::SessionNumber {
                session: n,
                with: other.clone(),
            }
        }
        None => ChatEvent::NotInASession,
    })
}

/// Whether someone is waiting for `me` to accept or decline (a chat or an address).
pub fn has_pending<C>(state: &State<C>, me: &str) -> bool {
    state.sessions.values().any(|s| !s.started && s.to == me)
        || state.addr_requests.keys().any(|(_, to)| to == me)
}

/// For a line `me` says in their session: its number, the partner, and the partner's
/// connection if they are online.
pub fn partner<C: Clone>(state: &State<C>, me: &str) -> Result<(u32, String, Option<C>), Refusal> {
    state
        .session_of(me)
        .and_then(|n| {
            let s = state.sessions.get(&n)?;
            let other = if s.from == me { &s.to } else { &s.from };
            Some((n, other.clone(), state.conn(other)))
        })
        .ok_or(Refusal::NoSession)
}

/// Removes `name`'s started session and pending requests (they are leaving); tells every
/// counterpart online.
pub fn end_all<C: Clone>(state: &mut State<C>, name: &str) -> Vec<(C, ChatEvent)> {
    let ids: Vec<u32> = state
        .sessions
        .iter()
        .filter(|(_, s)| s.from == name || s.to == name)
        .map(|(id, _)| *id)
        .collect();
    let mut partners = Vec::new();
    for id in ids {
        let s = state.sessions.remove(&id).expect("listed above");
        let other = if s.from == name { s.to } else { s.from };
        if let Some(o) = state.online.get_mut(&other) {
            if o.session == Some(id) {
                o.session = None;
            }
            partners.push((
                o.conn.clone(),
                ChatEvent::SessionPartnerLeft {
                    session: id,
                    who: name.to_string(),
                },
            ));
        }
    }
    if let Some(o) = state.online.get_mut(name) {
        o.session = None;
    }
    partners
}

/// A session number not in use: one of 64 draws (seed 000's range), or a number above that
/// range when it is crowded.
fn new_session_id<C>(state: &State<C>, mut draw: impl FnMut() -> u32) -> u32 {
    for _ in 0..64 {
        let id = draw();
        if !state.sessions.contains_key(&id) {
            return id;
        }
    }
    (10_000..)
        .find(|id| !state.sessions.contains_key(id))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{blocks, conn, online, set_status};
    use super::*;

    fn always(n: u32) -> impl FnMut() -> u32 {
        move || n
    }

    #[test]
    fn a_request_accepted_starts_the_session_on_both_sides() {
        let mut state = online(&["ann", "bob"]);
        let out = request(&mut state, Registry::Open, "ann", "bob", always(1234));
        assert_eq!(
            out.replies,
            vec![ChatEvent::ChatRequested {
                with: "bob".into(),
                session: 1234
            }]
        );
        assert_eq!(
            out.deliveries,
            vec![(
                conn(&state, "bob"),
                ChatEvent::SessionRequest {
                    session: 1234,
                    from: "ann".into()
                }
            )]
        );
        assert!(has_pending(&state, "bob"));
        let out = answer(&mut state, "bob", None, true);
        assert_eq!(
            out.replies,
            vec![ChatEvent::SessionStarted {
                session: 1234,
                with: "ann".into()
            }]
        );
        assert_eq!(state.session_of("ann"), Some(1234));
        assert_eq!(
            partner(&state, "bob"),
            Ok((1234, "ann".into(), Some(conn(&state, "ann"))))
        );
        assert_eq!(
            number(&state, "ann").replies,
            vec![ChatEvent::SessionNumber {
                session: 1234,
                with: "bob".into()
            }]
        );
    }

    #[test]
    fn a_busy_draw_takes_another_number_and_a_full_range_one_above_it() {
        let mut state = online(&["ann", "bob", "cid", "dan"]);
        let _ = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        let mut draws = [1000, 1001].into_iter();
        let out = request(&mut state, Registry::Open, "cid", "dan", || {
            draws.next().unwrap()
        });
        assert!(matches!(
            out.replies[0],
            ChatEvent::ChatRequested { session: 1001, .. }
        ));
        let _ = end(&mut state, "cid", None);
        let out = request(&mut state, Registry::Open, "cid", "dan", always(1000));
        assert!(matches!(
            out.replies[0],
            ChatEvent::ChatRequested {
                session: 10_000,
                ..
            }
        ));
    }

    #[test]
    fn an_invisible_or_blocking_or_offline_user_is_unreachable() {
        let mut state = online(&["ann", "bob"]);
        let unreachable = vec![ChatEvent::Refused(Refusal::ChatUnreachable("bob".into()))];
        set_status(&mut state, "bob", Status::Invisible);
        let out = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        assert_eq!(out.replies, unreachable);
        set_status(&mut state, "bob", Status::Available);
        blocks(&mut state, "bob", "ann");
        let out = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        assert_eq!(out.replies, unreachable);
        state.record(crate::store::Event::Unblock {
            user: "bob".into(),
            target: "ann".into(),
        });
        state.online.remove("bob");
        let out = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        assert_eq!(out.replies, unreachable);
        assert!(state.sessions.is_empty());
    }

    #[test]
    fn a_declined_request_is_gone_and_the_requester_is_told() {
        let mut state = online(&["ann", "bob"]);
        let _ = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        let out = answer(&mut state, "bob", Some("ann"), false);
        assert_eq!(out.replies, vec![ChatEvent::ChatDeclined("ann".into())]);
        assert_eq!(
            out.deliveries,
            vec![(
                conn(&state, "ann"),
                ChatEvent::SessionDeclined {
                    session: 1000,
                    by: "bob".into()
                }
            )]
        );
        assert!(state.sessions.is_empty());
        let out = answer(&mut state, "bob", None, true);
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::NothingPending)]
        );
    }

    #[test]
    fn ending_tells_the_other_side_and_leaving_ends_everything() {
        let mut state = online(&["ann", "bob", "cid"]);
        let _ = request(&mut state, Registry::Open, "ann", "bob", always(1000));
        let _ = answer(&mut state, "bob", None, true);
        let out = end(&mut state, "bob", None);
        assert_eq!(
            out.deliveries,
            vec![(
                conn(&state, "ann"),
                ChatEvent::SessionEndedBy {
                    session: 1000,
                    by: "bob".into()
                }
            )]
        );
        assert_eq!(state.session_of("ann"), None);
        assert_eq!(
            end(&mut state, "bob", None).replies,
            vec![ChatEvent::Refused(Refusal::NoSession)]
        );
        let _ = request(&mut state, Registry::Open, "cid", "ann", always(2000));
        let told = end_all(&mut state, "ann");
        assert_eq!(
            told,
            vec![(
                conn(&state, "cid"),
                ChatEvent::SessionPartnerLeft {
                    session: 2000,
                    who: "ann".into()
                }
            )]
        );
        assert!(state.sessions.is_empty());
    }
}
