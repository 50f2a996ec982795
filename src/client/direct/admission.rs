//! Which incoming direct connections are served: a cap per address, a cap in all, and who
//! makes room when everything is taken.
//!
//! Every incoming connection is unauthenticated until its one `PRIVATE` line is verified,
//! and each one served holds a thread for up to [`super::listener::DEADLINE`]. So that
//! connections held open by someone else cannot keep a paired peer out:
//!
//! - one address (an IPv4 address, or an IPv6 /64, which one host can fill with addresses
//!   of its own) has at most [`AdmissionLimits::per_address`] connections at once; more are closed
//!   at once, before any thread is started for them;
//! - at most [`AdmissionLimits::max_open`] are served at once. When all are taken, a newcomer closes
//!   the oldest connection of the address that holds the most, as long as that address
//!   then still holds at least as many as the newcomer's: the slots are shared fairly
//!   between addresses, and a newcomer from a quiet address always gets one;
//! - a connection from the address of a peer in the address book is never closed to make
//!   room for one from any other address, and may close one of those. The address only
//!   says where a connection comes from, not who sent it (the MAC does that), but a
//!   connection cannot take an address it does not have: the TCP handshake needs answers.
//!
//! Pure: the listener asks and acts (closes, starts threads); this module only decides.

use std::cmp::Reverse;
use std::net::IpAddr;

/// The numbers behind the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections served at once.
    pub max_open: usize,
    /// Connections from one address (IPv6: one /64) served at once.
    pub per_address: usize,
}

impl AdmissionLimits {
    /// The client's limits.
    pub const DEFAULT: AdmissionLimits = AdmissionLimits {
        max_open: 32,
        per_address: 4,
    };
}

/// The key connections are counted under: an IPv4 address, or the /64 an IPv6 address is in.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Identifies one admitted connection.
pub type Ticket = u64;

/// Why a connection was closed without being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address has [`AdmissionLimits::per_address`] connections open already.
    AddressFull,
    /// [`AdmissionLimits::max_open`] are open and none may make room for it.
    AllFull,
}

impl Refused {
    /// For a warning: what happened.
    pub fn describe(self) -> &'static str {
        match self {
            Refused::AddressFull => "too many connections at once from that address",
            Refused::AllFull => "too many connections at once",
        }
    }
}

/// What to do with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it under `ticket`; close the connection `evict` first, if any.
    Admit {
        /// Hand it back to [`Admission::finished`] when the connection ends.
        ticket: Ticket,
        /// A connection to close to make room.
        evict: Option<Ticket>,
    },
    /// Close it at once.
    Refuse(Refused),
}

/// One connection being served.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Its ticket; tickets grow, so the smallest is the oldest.
    ticket: Ticket,
    /// Its [`address_key`].
    key: IpAddr,
    /// Whether it comes from the address of a peer in the address book.
    known: bool,
}

/// The connections being served, and the rules for new ones.
#[derive(Debug)]
pub struct Admission {
    /// The numbers.
    limits: AdmissionLimits,
    /// Every connection being served, oldest first.
    open: Vec<Open>,
    /// The next ticket.
    next: Ticket,
}

impl Admission {
    /// No connections yet.
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            open: Vec::new(),
            next: 0,
        }
    }

    /// Decides on a connection from `ip`; `known` when `ip` is a paired peer's address.
    pub fn admit(&mut self, ip: IpAddr, known: bool) -> Verdict {
        let key = address_key(ip);
        let held = |open: &[Open], key: IpAddr| open.iter().filter(|o| o.key == key).count();
        let mine = held(&self.open, key);
        if mine >= self.limits.per_address {
            return Verdict::Refuse(Refused::AddressFull);
        }
        let mut evict = None;
        if self.open.len() >= self.limits.max_open {
            // The oldest connection of the address holding the most, among those from
            // paired peers' addresses (`true`) or the others (`false`).
            let biggest = |paired: bool| {
                self.open
                    .iter()
                    .filter(|o| o.known == paired)
                    .max_by_key(|o| (held(&self.open, o.key), Reverse(o.ticket)))
            };
            let fair = |o: &&Open| held(&self.open, o.key) > mine + 1;
            let victim = match known {
                // A paired peer's address closes a stranger's connection if there is one.
                true => biggest(false).or_else(|| biggest(true).filter(fair)),
                false => biggest(false).filter(fair),
            };
            let Some(victim) = victim else {
                return Verdict::Refuse(Refused::AllFull);
            };
            evict = Some(victim.ticket);
            self.finished(victim.ticket);
        }
        let ticket = self.next;
        self.next += 1;
        self.open.push(Open { ticket, key, known });
        Verdict::Admit { ticket, evict }
    }

    /// A connection ended (or was closed to make room: then this was done already).
    pub fn finished(&mut self, ticket: Ticket) {
        self.open.retain(|o| o.ticket != ticket);
    }

    /// How many connections are being served.
    pub fn open(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: AdmissionLimits = AdmissionLimits {
        max_open: 6,
        per_address: 3,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ticket(v: Verdict) -> Ticket {
        match v {
            Verdict::Admit { ticket, .. } => ticket,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let mut a = Admission::new(SMALL);
        let first = ticket(a.admit(ip("10.0.0.66"), false));
        for _ in 0..2 {
            ticket(a.admit(ip("10.0.0.66"), false));
        }
        assert_eq!(
            a.admit(ip("10.0.0.66"), false),
            Verdict::Refuse(Refused::AddressFull)
        );
        // Another address is not affected; a finished connection frees its place.
        ticket(a.admit(ip("10.0.0.2"), false));
        a.finished(first);
        ticket(a.admit(ip("10.0.0.66"), false));
        assert_eq!(a.open(), 4);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        assert_eq!(address_key(ip("fd00::1:2:3:4")), ip("fd00::"));
        assert_eq!(address_key(ip("fd00:0:0:1::9")), ip("fd00:0:0:1::"));
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let mut a = Admission::new(SMALL);
        for host in ["fd00::1", "fd00::2", "fd00::3"] {
            ticket(a.admit(ip(host), false));
        }
        assert_eq!(
            a.admit(ip("fd00::4"), false),
            Verdict::Refuse(Refused::AddressFull)
        );
        ticket(a.admit(ip("fd00:0:0:1::4"), false));
    }

    #[test]
    fn when_all_are_taken_the_biggest_holder_makes_room_oldest_first() {
        let mut a = Admission::new(SMALL);
        let crowd: Vec<Ticket> = (0..3)
            .map(|_| ticket(a.admit(ip("10.0.0.66"), false)))
            .collect();
        for _ in 0..2 {
            ticket(a.admit(ip("10.0.0.67"), false));
        }
        ticket(a.admit(ip("10.0.0.68"), false));
        assert_eq!(a.open(), 6);
        // A newcomer from a quiet address: 10.0.0.66 holds 3, its oldest goes.
        assert_eq!(
            a.admit(ip("10.0.0.2"), false),
            Verdict::Admit {
                ticket: 6,
                evict: Some(crowd[0])
            }
        );
        // Now 2, 2, 1, 1: newcomers take from the holders of 2, the oldest first.
        assert_eq!(
            a.admit(ip("10.0.0.3"), false),
            Verdict::Admit {
                ticket: 7,
                evict: Some(crowd[1])
            }
        );
        assert_eq!(
            a.admit(ip("10.0.0.4"), false),
            Verdict::Admit {
                ticket: 8,
                evict: Some(3)
            }
        );
        // One each: no one gives up a place for another newcomer, nor for a second one
        // from an address that has one already.
        assert_eq!(
            a.admit(ip("10.0.0.5"), false),
            Verdict::Refuse(Refused::AllFull)
        );
        assert_eq!(
            a.admit(ip("10.0.0.66"), false),
            Verdict::Refuse(Refused::AllFull)
        );
        assert_eq!(a.open(), 6);
    }

    #[test]
    fn a_paired_peers_address_is_never_closed_for_a_stranger_and_always_gets_in() {
        let limits = AdmissionLimits {
            max_open: 4,
            per_address: 1,
        };
        let mut a = Admission::new(limits);
        let peer = ticket(a.admit(ip("10.0.0.2"), true));
        for last in 66..69 {
            ticket(a.admit(ip(&format!("10.0.0.{last}")), false));
        }
        // Strangers holding one each: a stranger may not close the peer's connection.
        assert_eq!(
            a.admit(ip("10.0.0.70"), false),
            Verdict::Refuse(Refused::AllFull)
        );
        // Another paired peer closes the oldest stranger's.
        match a.admit(ip("10.0.0.3"), true) {
            Verdict::Admit {
                evict: Some(gone), ..
            } => assert_ne!(gone, peer),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.open(), 4);
    }
}
