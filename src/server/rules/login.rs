//! Going online and offline: whether a name may log in and why not, who a login replaces or
//! is refused for, what a logout ends, and whether others are told. Every refusal is a typed
//! [`Refusal`] that each door renders its own way. Checking the password itself, the
//! lockout table and the offline mail are the hub's (I/O, or state behind another lock);
//! the hub hands their answers in.

use super::{addresses, sessions, ChatEvent, Endpoint, LogoutReason, Record, Refusal, State};
use crate::credentials::Credentials;
use crate::protocol::{valid_username, Status};
use crate::server::lockout::{AfterFailure, Reservation};

/// Which names may log in, and how (`auth`).
#[derive(Clone, Copy)]
pub enum LoginMode<'a> {
    /// `auth = "open"`: any well-formed name, no password; an unknown one makes a new user.
    Open,
    /// `auth = "allowlist"`: the names of credentials.txt, no password.
    Allowlist(&'a Credentials),
    /// `auth = "password"`: any name is asked for a password, so whether it exists, or is
    /// online, is told only after a right one (an unknown name and a wrong password look
    /// the same from outside).
    Password,
}

/// The answer to a username.
#[derive(Debug, PartialEq, Eq)]
pub enum NameCheck {
    /// Go on (ask the password, or log in at once when `password_needed` is false).
    Ok {
        /// Whether the auth mode asks for a password.
        password_needed: bool,
    },
    /// Refused; try another name.
    Retry(Refusal),
    /// Refused; close the connection after saying why (a lockout).
    Close(Refusal),
}

/// The answer to a password.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Correct.
    Ok,
    /// Wrong; ask again after saying so.
    Retry(Refusal),
    /// Wrong, or not even tried, and the name is locked out: close after saying why.
    Close(Refusal),
}

/// First step of a login: may `name` log in? `locked_for`: how many seconds the lockout
/// table still blocks the name (from this address, by policy), if it does. `online` says
/// whether the name is online now; it is asked only when a duplicate would be refused
/// then, so the hub takes its lock for no other login.
pub fn check_name(
    name: &str,
    admission: LoginMode<'_>,
    reject_duplicates: bool,
    locked_for: Option<u64>,
    online: impl FnOnce() -> bool,
) -> NameCheck {
    if !valid_username(name) {
        return NameCheck::Retry(Refusal::BadName);
    }
    if let Some(secs) = locked_for {
        return NameCheck::Close(Refusal::LockedOut(secs));
    }
    match admission {
        LoginMode::Password => {
            return NameCheck::Ok {
                password_needed: true,
            }
        }
        LoginMode::Allowlist(credentials) if !credentials.contains(name) => {
            return NameCheck::Retry(Refusal::NotListed);
        }
        LoginMode::Allowlist(_) | LoginMode::Open => {}
    }
    if reject_duplicates && online() {
        return NameCheck::Retry(Refusal::AlreadyOnline(name.to_string()));
    }
    NameCheck::Ok {
        password_needed: false,
    }
}

/// Whether a password may be checked, from the lockout table's reservation of a try.
pub fn password_try(reservation: Reservation) -> Result<(), PasswordCheck> {
    match reservation {
        Reservation::Granted => Ok(()),
        Reservation::Blocked(secs) => Err(PasswordCheck::Close(Refusal::LockedOut(secs))),
        Reservation::Exhausted => Err(PasswordCheck::Close(Refusal::TooManyChecks)),
    }
}

/// What a wrong password leads to, from the lockout table's count of failures.
pub fn wrong_password(after: AfterFailure) -> PasswordCheck {
    match after {
        AfterFailure::TriesLeft(n) => {
            PasswordCheck::Retry(Refusal::WrongPassword { tries_left: n })
        }
        AfterFailure::Blocked(secs) => PasswordCheck::Close(Refusal::LockedNow(secs)),
    }
}

/// The limits a login is checked against.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// `duplicate_login = "reject"`: a second login of an online user is refused (otherwise
    /// it replaces the first).
    pub reject_duplicates: bool,
    /// In open mode, how many new users one address may make (`max_new_users_per_ip`);
    /// `None` in the other modes, whose users are in credentials.txt.
    pub new_users_per_address: Option<usize>,
    /// In open mode, whether the data directory has room for a new user's records.
    pub room_for_new_users: bool,
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

/// Puts `name` online on `conn` at `now`, unless the policy refuses it. In open mode a new
/// user goes into the directory (last seen now), so they can get mail later.
pub fn arrive<C: Endpoint>(
    state: &mut State<C>,
    now: u64,
    name: &str,
    conn: C,
    policy: LoginPolicy,
) -> Result<Arrival<C>, Refusal> {
    let new_user = policy.new_users_per_address.is_some() && !state.directory.knows(name);
    if new_user && !policy.room_for_new_users {
        return Err(Refusal::NoRoomForUser);
    }
    let replaced = match state.online.get(name) {
        Some(_) if policy.reject_duplicates => {
            return Err(Refusal::AlreadyOnline(name.to_string()));
        }
        Some(_) => state.online.remove(name).map(|o| o.conn),
        None => None,
    };
    if let (true, Some(cap)) = (new_user, policy.new_users_per_address) {
        if !state.new_users.try_add(conn.peer_ip(), cap) {
            return Err(Refusal::UserLimit(cap));
        }
    }
    if new_user {
        state.record(Record::Seen {
            user: name.to_string(),
            at: now,
        });
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
    state.put_online(name, conn, new_user);
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
    state.record(Record::Seen {
        user: name.to_string(),
        at: now,
    });
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
    use super::super::testing::{conn, online, put_online, set_status, Fake};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const REPLACE: LoginPolicy = LoginPolicy {
        reject_duplicates: false,
        new_users_per_address: None,
        room_for_new_users: true,
    };

    const OPEN: LoginPolicy = LoginPolicy {
        new_users_per_address: Some(10),
        ..REPLACE
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
        let arrival = arrive(&mut state, 0, "ann", fake(9), REPLACE).unwrap();
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
            arrive(&mut state, 0, "ann", fake(9), policy).err(),
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
        assert!(arrive(&mut state, 0, "ann", fake(1), policy).is_ok());
        assert_eq!(
            arrive(&mut state, 0, "bob", fake(2), policy).err(),
            Some(Refusal::UserLimit(1))
        );
        assert!(depart(&mut state, 5, "ann", 1, LogoutReason::Requested).is_some());
        assert!(arrive(&mut state, 0, "ann", fake(3), policy).is_ok());
    }

    #[test]
    fn leaving_notes_the_time_and_an_invisible_user_leaves_unannounced() {
        let mut state = online(&["ann"]);
        put_online(&mut state, "bob", 2);
        let gone = depart(&mut state, 77, "ann", 1, LogoutReason::Timeout).unwrap();
        assert!(gone.announce);
        assert_eq!(state.directory.user("ann").unwrap().last_seen, Some(77));
        assert!(!state.online.contains_key("ann"));
        set_status(&mut state, "bob", Status::Invisible);
        let gone = depart(&mut state, 78, "bob", 2, LogoutReason::Requested).unwrap();
        assert!(!gone.announce);
        let arrival = arrive(&mut state, 0, "bob", fake(4), REPLACE).unwrap();
        assert_eq!(arrival.status, Status::Invisible);
        assert!(!arrival.announce);
    }

    #[test]
    fn a_name_is_checked_for_form_lockout_list_and_duplicates_in_that_order() {
        let state = online(&["ann"]);
        let check = |name, admission, reject, locked| {
            check_name(name, admission, reject, locked, || {
                state.online.contains_key(name)
            })
        };
        let go = |password_needed| NameCheck::Ok { password_needed };
        assert_eq!(
            check("-bad", LoginMode::Open, false, Some(9)),
            NameCheck::Retry(Refusal::BadName)
        );
        assert_eq!(
            check("ann", LoginMode::Password, true, Some(9)),
            NameCheck::Close(Refusal::LockedOut(9))
        );
        // A password is asked before anything about the name is told.
        assert_eq!(check("ann", LoginMode::Password, true, None), go(true));
        let listed = Credentials::from_pairs([("bob", "pw")]);
        assert_eq!(
            check("ann", LoginMode::Allowlist(&listed), false, None),
            NameCheck::Retry(Refusal::NotListed)
        );
        assert_eq!(
            check("bob", LoginMode::Allowlist(&listed), true, None),
            go(false)
        );
        assert_eq!(
            check("ann", LoginMode::Open, true, None),
            NameCheck::Retry(Refusal::AlreadyOnline("ann".into()))
        );
        assert_eq!(check("ann", LoginMode::Open, false, None), go(false));
    }

    #[test]
    fn the_lockout_tables_answers_become_refusals() {
        assert_eq!(password_try(Reservation::Granted), Ok(()));
        assert_eq!(
            password_try(Reservation::Blocked(5)),
            Err(PasswordCheck::Close(Refusal::LockedOut(5)))
        );
        assert_eq!(
            password_try(Reservation::Exhausted),
            Err(PasswordCheck::Close(Refusal::TooManyChecks))
        );
        assert_eq!(
            wrong_password(AfterFailure::TriesLeft(2)),
            PasswordCheck::Retry(Refusal::WrongPassword { tries_left: 2 })
        );
        assert_eq!(
            wrong_password(AfterFailure::Blocked(60)),
            PasswordCheck::Close(Refusal::LockedNow(60))
        );
    }

    #[test]
    fn in_open_mode_a_new_user_is_journaled_once_and_refused_when_storage_is_full() {
        let mut state = online(&[]);
        let full = LoginPolicy {
            room_for_new_users: false,
            ..OPEN
        };
        assert_eq!(
            arrive(&mut state, 5, "ann", fake(1), full).err(),
            Some(Refusal::NoRoomForUser)
        );
        assert!(state.directory.unwritten().is_empty());
        assert!(arrive(&mut state, 5, "ann", fake(1), OPEN).is_ok());
        let seen = Record::Seen {
            user: "ann".into(),
            at: 5,
        };
        assert_eq!(state.directory.unwritten(), std::slice::from_ref(&seen));
        assert!(depart(&mut state, 6, "ann", 1, LogoutReason::Requested).is_some());
        // A known user returns even when storage is full, and is not journaled again.
        assert!(arrive(&mut state, 7, "ann", fake(2), full).is_ok());
        let gone = Record::Seen {
            user: "ann".into(),
            at: 6,
        };
        assert_eq!(state.directory.unwritten(), [seen, gone]);
    }
}
