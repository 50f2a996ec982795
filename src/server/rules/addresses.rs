//! The address exchange for direct messages (seed 002): `p2p PORT`, `getaddress USER`, its
//! answer, `removeaddress USER`, `addressbook`, and what a request's expiry or a logout
//! does to pairs and requests.

use super::{pair_key, ChatEvent, Endpoint, Outcome, Refusal, Registry, SelfAction, State};

/// `p2p PORT`: where `me`'s client takes direct messages.
pub fn set_p2p_port<C: Clone>(state: &mut State<C>, me: &str, port: u16) -> Outcome<C> {
    if let Some(o) = state.online.get_mut(me) {
        o.p2p_port = Some(port);
    }
    Outcome::reply(ChatEvent::P2pPort(port))
}

/// `getaddress USER` at `now`: asks `with` to exchange addresses with `me`.
pub fn request<C: Clone>(
    state: &mut State<C>,
    registry: Registry<'_>,
    now: u64,
    me: &str,
    with: &str,
) -> Outcome<C> {
    let refuse = Outcome::refuse;
    if with == me {
        return refuse(Refusal::SelfTarget(SelfAction::Address));
    }
    if !state.is_registered(registry, with) {
        return refuse(Refusal::NoSuchUser(with.to_string()));
    }
    if state.blocks(with, me) {
        return refuse(Refusal::AddressBlocked(with.to_string()));
    }
    let Some(target) = state
        .online
        .get(with)
        .filter(|_| state.visible_to(with, me))
    else {
        return refuse(Refusal::NotOnline(with.to_string()));
    };
    if target.p2p_port.is_none() {
        return refuse(Refusal::TheirClientNoP2p(with.to_string()));
    }
    if state.online.get(me).and_then(|o| o.p2p_port).is_none() {
        return refuse(Refusal::OwnClientNoP2p);
    }
    if state.pairs.contains(&pair_key(me, with)) {
        return refuse(Refusal::AlreadyPaired(with.to_string()));
    }
    let target = target.conn.clone();
    state.requests += 1;
    let asked = state.requests;
    state
        .addr_requests
        .insert((me.to_string(), with.to_string()), (asked, now));
    Outcome::reply(ChatEvent::AddressRequested(with.to_string()))
        .deliver(target, ChatEvent::AddressRequest(me.to_string()))
}

/// Who sent the address exchange that `accept`/`decline` would answer now: the newest
/// pending request to `me` (from `from`, if given), if it is an address exchange rather
/// than a chat request.
pub fn newest_request<C>(state: &State<C>, me: &str, from: Option<&str>) -> Option<String> {
    let chat = state
        .sessions
        .values()
        .filter(|s| !s.started && s.to == me && from.is_none_or(|f| s.from == f))
        .map(|s| s.asked)
        .max();
    let address = state
        .addr_requests
        .iter()
        .filter(|((f, t), _)| t == me && from.is_none_or(|x| f == x))
        .max_by_key(|(_, (asked, _))| *asked)
        .map(|((f, _), (asked, _))| (f.clone(), *asked));
    match (chat, address) {
        (Some(c), Some((f, a))) if a > c => Some(f),
        (None, Some((f, _))) => Some(f),
        _ => None,
    }
}

/// Answers `requester`'s address request to `me`; an accepted one tells both sides each
/// other's address and a fresh `secret` (the accepting side first: the requester may send
/// a direct message at once, and the accepting client should know the secret by then).
pub fn answer<C: Endpoint>(
    state: &mut State<C>,
    me: &str,
    requester: &str,
    accept: bool,
    secret: impl FnOnce() -> String,
) -> Outcome<C> {
    let key = (requester.to_string(), me.to_string());
    if state.addr_requests.remove(&key).is_none() {
        return Outcome::refuse(Refusal::NothingPending);
    }
    match (state.online.get(me), state.online.get(requester)) {
        (Some(a), Some(b)) if accept => {
            let (Some(port_a), Some(port_b)) = (a.p2p_port, b.p2p_port) else {
                return Outcome::refuse(Refusal::NoLongerP2p(requester.to_string()));
            };
            let mine = direct_address(&a.conn, port_a, &b.conn);
            let theirs = direct_address(&b.conn, port_b, &a.conn);
            let (conn_a, conn_b) = (a.conn.clone(), b.conn.clone());
            state.pairs.insert(pair_key(me, requester));
            let secret = secret();
            Outcome::default()
                .deliver(
                    conn_a,
                    ChatEvent::AddressGranted {
                        with: requester.to_string(),
                        address: theirs,
                        secret: secret.clone(),
                    },
                )
                .deliver(
                    conn_b,
                    ChatEvent::AddressAccepted {
                        by: me.to_string(),
                        address: mine,
                        secret,
                    },
                )
        }
        (_, Some(b)) if !accept => {
            Outcome::reply(ChatEvent::AddressRequestDeclined(requester.to_string()))
                .deliver(b.conn.clone(), ChatEvent::AddressDeclined(me.to_string()))
        }
        _ => Outcome::refuse(Refusal::NoLongerOnline(requester.to_string())),
    }
}

/// `removeaddress USER`: removes the pair on both sides.
pub fn remove<C: Clone>(state: &mut State<C>, me: &str, with: &str) -> Outcome<C> {
    if !state.pairs.remove(&pair_key(me, with)) {
        return Outcome::refuse(Refusal::NotPaired(with.to_string()));
    }
    let mut out = Outcome::reply(ChatEvent::AddressRemoved(with.to_string()));
    if let Some(conn) = state.conn(with) {
        out = out.deliver(conn, ChatEvent::AddressRemovedBy(me.to_string()));
    }
    out
}

/// `addressbook`: who `me` has exchanged addresses with, in order.
pub fn book<C: Clone>(state: &State<C>, me: &str) -> Outcome<C> {
    let mut names: Vec<String> = state
        .pairs
        .iter()
        .filter_map(|(a, b)| {
            if a == me {
                Some(b.clone())
            } else if b == me {
                Some(a.clone())
            } else {
                None
            }
        })
        .collect();
    names.sort_unstable();
    Outcome::reply(ChatEvent::AddressBook(names))
}

/// Declines, at `now`, the address requests nobody answered within `max_age_secs`.
pub fn expire<C: Clone>(state: &mut State<C>, now: u64, max_age_secs: u64) -> Outcome<C> {
    let expired: Vec<(String, String)> = state
        .addr_requests
        .iter()
        .filter(|(_, (_, at))| now >= at + max_age_secs)
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Outcome::default();
    for (from, to) in expired {
        state.addr_requests.remove(&(from.clone(), to.clone()));
        if let Some(c) = state.conn(&from) {
            out = out.deliver(c, ChatEvent::AddressUnanswered(to.clone()));
        }
        if let Some(c) = state.conn(&to) {
            out = out.deliver(c, ChatEvent::AddressExpired(from));
        }
    }
    out
}

/// Removes every address pair and pending address request involving `name` (who is
/// leaving); the deliveries tell the others.
pub fn forget<C: Clone>(state: &mut State<C>, name: &str) -> Vec<(C, ChatEvent)> {
    let mut notices = Vec::new();
    let pairs: Vec<(String, String)> = state
        .pairs
        .iter()
        .filter(|(a, b)| a == name || b == name)
        .cloned()
        .collect();
    for pair in pairs {
        state.pairs.remove(&pair);
        let other = if pair.0 == name { &pair.1 } else { &pair.0 };
        if let Some(c) = state.conn(other) {
            notices.push((c, ChatEvent::AddressGone(name.to_string())));
        }
    }
    let requests: Vec<(String, String)> = state
        .addr_requests
        .keys()
        .filter(|(f, t)| f == name || t == name)
        .cloned()
        .collect();
    for (from, to) in requests {
        state.addr_requests.remove(&(from.clone(), to.clone()));
        if to == name {
            if let Some(c) = state.conn(&from) {
                notices.push((c, ChatEvent::AddressLeftUnanswered(name.to_string())));
            }
        } else if let Some(c) = state.conn(&to) {
            notices.push((c, ChatEvent::AddressVoid(name.to_string())));
        }
    }
    notices
}

/// Where `conn`'s client takes direct messages, as told to `viewer`: the address the server
/// sees it connect from (so it works across a LAN) and the port it announced. A client on
/// the server's own machine connects over loopback, which other machines cannot reach: them
/// we give the server's address on the viewer's own connection, the same machine.
fn direct_address<C: Endpoint>(conn: &C, port: u16, viewer: &C) -> String {
    let ip = conn.peer_ip().to_canonical();
    let ip = if ip.is_loopback() && !viewer.peer_ip().to_canonical().is_loopback() {
        viewer.local_ip().unwrap_or(ip)
    } else {
        ip
    };
    std::net::SocketAddr::new(ip, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{conn, online, Fake};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    /// `ann` and `bob` online, both taking direct messages.
    fn two_with_p2p() -> State<Fake> {
        let mut state = online(&["ann", "bob"]);
        let _ = set_p2p_port(&mut state, "ann", 7001);
        let _ = set_p2p_port(&mut state, "bob", 7002);
        state
    }

    #[test]
    fn an_accepted_request_gives_each_side_the_others_address_and_one_secret() {
        let mut state = two_with_p2p();
        let out = request(&mut state, Registry::Open, 100, "ann", "bob");
        assert_eq!(out.replies, vec![ChatEvent::AddressRequested("bob".into())]);
        assert_eq!(
            out.deliveries,
            vec![(conn(&state, "bob"), ChatEvent::AddressRequest("ann".into()))]
        );
        assert_eq!(newest_request(&state, "bob", None).as_deref(), Some("ann"));
        let out = answer(&mut state, "bob", "ann", true, || "s3cret".into());
        assert!(out.replies.is_empty());
        assert_eq!(
            out.deliveries,
            vec![
                (
                    conn(&state, "bob"),
                    ChatEvent::AddressGranted {
                        with: "ann".into(),
                        address: "10.0.0.1:7001".into(),
                        secret: "s3cret".into()
                    }
                ),
                (
                    conn(&state, "ann"),
                    ChatEvent::AddressAccepted {
                        by: "bob".into(),
                        address: "10.0.0.2:7002".into(),
                        secret: "s3cret".into()
                    }
                ),
            ]
        );
        assert_eq!(
            book(&state, "ann").replies,
            vec![ChatEvent::AddressBook(vec!["bob".into()])]
        );
        let out = request(&mut state, Registry::Open, 101, "ann", "bob");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::AlreadyPaired("bob".into()))]
        );
    }

    #[test]
    fn a_client_on_loopback_is_given_the_servers_address_on_the_viewers_side() {
        let mut state = two_with_p2p();
        state.online.get_mut("ann").unwrap().conn.peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _ = request(&mut state, Registry::Open, 100, "ann", "bob");
        let out = answer(&mut state, "bob", "ann", true, || "s".into());
        let ChatEvent::AddressGranted { address, .. } = &out.deliveries[0].1 else {
            panic!("{:?}", out.deliveries);
        };
        assert_eq!(address, "10.0.0.254:7001");
    }

    #[test]
    fn a_request_is_refused_without_p2p_on_either_side() {
        let mut state = online(&["ann", "bob"]);
        let out = request(&mut state, Registry::Open, 0, "ann", "bob");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::TheirClientNoP2p("bob".into()))]
        );
        let _ = set_p2p_port(&mut state, "bob", 7002);
        let out = request(&mut state, Registry::Open, 0, "ann", "bob");
        assert_eq!(
            out.replies,
            vec![ChatEvent::Refused(Refusal::OwnClientNoP2p)]
        );
        assert!(state.addr_requests.is_empty());
    }

    #[test]
    fn a_declined_request_tells_the_requester() {
        let mut state = two_with_p2p();
        let _ = request(&mut state, Registry::Open, 0, "ann", "bob");
        let out = answer(&mut state, "bob", "ann", false, || unreachable!());
        assert_eq!(
            out.replies,
            vec![ChatEvent::AddressRequestDeclined("ann".into())]
        );
        assert_eq!(
            out.deliveries,
            vec![(
                conn(&state, "ann"),
                ChatEvent::AddressDeclined("bob".into())
            )]
        );
        assert!(state.pairs.is_empty());
    }

    #[test]
    fn a_request_expires_after_its_time_and_not_before() {
        let mut state = two_with_p2p();
        let _ = request(&mut state, Registry::Open, 100, "ann", "bob");
        assert!(expire(&mut state, 159, 60).deliveries.is_empty());
        let out = expire(&mut state, 160, 60);
        assert_eq!(
            out.deliveries,
            vec![
                (
                    conn(&state, "ann"),
                    ChatEvent::AddressUnanswered("bob".into())
                ),
                (conn(&state, "bob"), ChatEvent::AddressExpired("ann".into())),
            ]
        );
        assert!(state.addr_requests.is_empty());
    }

    #[test]
    fn leaving_ends_pairs_and_requests_and_tells_the_others() {
        let mut state = online(&["ann", "bob", "cid"]);
        for n in ["ann", "bob", "cid"] {
            let _ = set_p2p_port(&mut state, n, 7000);
        }
        state.pairs.insert(pair_key("ann", "bob"));
        let _ = request(&mut state, Registry::Open, 0, "cid", "ann");
        let mut notices = forget(&mut state, "ann");
        notices.sort_by_key(|(c, _)| c.id);
        assert_eq!(
            notices,
            vec![
                (conn(&state, "bob"), ChatEvent::AddressGone("ann".into())),
                (
                    conn(&state, "cid"),
                    ChatEvent::AddressLeftUnanswered("ann".into())
                ),
            ]
        );
        assert!(state.pairs.is_empty() && state.addr_requests.is_empty());
    }
}
