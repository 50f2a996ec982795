//! Going online and offline: who a login replaces or is refused for, what a logout ends,
//! and whether others are told. The password, the lockouts and the offline mail are the
//! hub's (they are I/O or policy outside the state).

use super::{addresses, sessions, ChatEvent, Endpoint, LogoutReason, Refusal, State};
use crate::protocol::Status;

/// The limits a login is checked against.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// `duplicate_login = "reject"`: a second login of an online user is refused (otherwise
    /// it replaces the first).
    pub reject_duplicates: bool,
    /// In open mode, how many new users one address may make (`max_new_users_per_ip`).
    pub new_users_per_address: Option<usize>,
}

/// What a login changed.
pub struct Arrival<C> {
    /// The connection it replaced, if the user was online.
    pub replaced: Option<C>,
    /// The replaced connection's address pairs and requests, ended: whom to tell.
    pub book: Vec<(C, ChatEvent)>,
    /// The replaced connection's chat sessions and requests, ended: whom to tell.
    pub partners: Vec<(C, ChatEvent)>,
    /// The user's status.
    pub status: Status,
    /// Whether others are told the user came (a fresh login of a visible user).
    pub announce: bool,
}

/// Puts `name` online on `conn`, unless the policy refuses it.
pub fn arrive<C: Endpoint>(
    state: &mut State<C>,
    name: &str,
    conn: C,
    policy: LoginPolicy,
) -> Result<Arrival<C>, Refusal> {
    let replaced = match state.online.get(name) {
        Some(_) if policy.reject_duplicates => {
            return Err(Refusal::AlreadyOnline(name.to_string()));
        }
        Some(_) => state.online.remove(name).map(|o| o.conn),
        None => None,
    };
    if let Some(cap) = policy.new_users_per_address {
        if !state.users.contains_key(name) && !state.new_users.try_add(conn.peer_ip(), cap) {
            return Err(Refusal::UserLimit(cap));
        }
    }
    let (partners, book) = if replaced.is_some() {
        // The new client has an empty address book: the old pairs are gone.
        (
            sessions::end_all(state, name),
            addresses::forget(state, name),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    state.put_online(name, conn);
    let status = state.status_of(name);
    let announce = replaced.is_none() && status != Status::Invisible;
    Ok(Arrival {
        replaced,
        book,
        partners,
        status,
        announce,
    })
}

/// What a logout changed.
pub struct Departure<C> {
    /// The connection that went offline.
    pub conn: C,
    /// Its address pairs and requests, ended: whom to tell.
    pub book: Vec<(C, ChatEvent)>,
    /// Its chat sessions and requests, ended: whom to tell.
    pub partners: Vec<(C, ChatEvent)>,
    /// Whether others are told the user left (not at shutdown, not if invisible).
    pub announce: bool,
}

/// Takes `name` offline at `now` if `conn_id` is still their connection (a replaced
/// connection's late logout changes nothing).
pub fn depart<C: Endpoint>(
    state: &mut State<C>,
    now: u64,
    name: &str,
    conn_id: u64,
    reason: LogoutReason,
) -> Option<Departure<C>> {
    if state.online.get(name).map(|o| o.conn.id()) != Some(conn_id) {
        return None;
    }
    let partners = sessions::end_all(state, name);
    let book = addresses::forget(state, name);
    let conn = state.online.remove(name)?.conn;
    state.users.entry(name.to_string()).or_default().last_seen = Some(now);
    let announce = reason != LogoutReason::Shutdown && state.status_of(name) != Status::Invisible;
    Some(Departure {
        conn,
        book,
        partners,
        announce,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{conn, online, put_online, Fake};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const REPLACE: LoginPolicy = LoginPolicy {
        reject_duplicates: false,
        new_users_per_address: None,
    };

    fn fake(id: u64) -> Fake {
        Fake {
            id,
            peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)),
        }
    }

    #[test]
    fn a_second_login_replaces_the_first_and_ends_its_session_quietly() {
        let mut state = online(&["ann", "bob"]);
        let _ = sessions::request(
            &mut state,
            super::super::Registry::Open,
            "ann",
            "bob",
            || 1000,
        );
        let _ = sessions::answer(&mut state, "bob", None, true);
        let old = conn(&state, "ann");
        let arrival = arrive(&mut state, "ann", fake(9), REPLACE).unwrap();
        assert_eq!(arrival.replaced, Some(old));
        assert!(!arrival.announce);
        assert_eq!(
            arrival.partners,
            vec![(
                conn(&state, "bob"),
                ChatEvent::SessionPartnerLeft {
                    session: 1000,
                    who: "ann".into()
                }
            )]
        );
        assert_eq!(conn(&state, "ann").id, 9);
        // The old connection's logout comes late and changes nothing.
        assert!(depart(&mut state, 5, "ann", old.id, LogoutReason::Dropped).is_none());
        assert!(state.online.contains_key("ann"));
    }

    #[test]
    fn a_duplicate_is_refused_by_policy() {
        let mut state = online(&["ann"]);
        let policy = LoginPolicy {
            reject_duplicates: true,
            ..REPLACE
        };
        assert_eq!(
            arrive(&mut state, "ann", fake(9), policy).err(),
            Some(Refusal::AlreadyOnline("ann".into()))
        );
        assert_eq!(conn(&state, "ann").id, 1);
    }

    #[test]
    fn an_address_makes_new_users_up_to_its_cap_but_known_ones_always_return() {
        let mut state = online(&[]);
        let policy = LoginPolicy {
            new_users_per_address: Some(1),
            ..REPLACE
        };
        assert!(arrive(&mut state, "ann", fake(1), policy).is_ok());
        assert_eq!(
            arrive(&mut state, "bob", fake(2), policy).err(),
            Some(Refusal::UserLimit(1))
        );
        assert!(depart(&mut state, 5, "ann", 1, LogoutReason::Requested).is_some());
        assert!(arrive(&mut state, "ann", fake(3), policy).is_ok());
    }

    #[test]
    fn leaving_notes_the_time_and_an_invisible_user_leaves_unannounced() {
        let mut state = online(&["ann"]);
        put_online(&mut state, "bob", 2);
        let gone = depart(&mut state, 77, "ann", 1, LogoutReason::Timeout).unwrap();
        assert!(gone.announce);
        assert_eq!(state.users["ann"].last_seen, Some(77));
        assert!(!state.online.contains_key("ann"));
        state.users.get_mut("bob").unwrap().status = Some("invisible".into());
        let gone = depart(&mut state, 78, "bob", 2, LogoutReason::Requested).unwrap();
        assert!(!gone.announce);
        let arrival = arrive(&mut state, "bob", fake(4), REPLACE).unwrap();
        assert_eq!(arrival.status, Status::Invisible);
        assert!(!arrival.announce);
    }
}
