//! Which of the servers that answered discovery to list, and which to connect to: the pure
//! rules of [`super`]'s choice, apart from its sockets.
//!
//! Nothing proves who sent an answer (answers that contradict a pinned key are dropped
//! before these rules: `client::secure::spoofed_answers`), so the choice is the
//! user's whenever answers disagree: two answers are one server only when they say the same
//! thing and lead to the same place ([`add`]), every other answer is listed, answers that
//! claim the same server id from different places are pointed out ([`same_id_warnings`]),
//! and with more than one server the client asks instead of connecting ([`pick`]). Every
//! field of an answer is printed escaped ([`Found::describe`]), as any other text from the
//! network.

use crate::discovery::Announcement;
use crate::protocol::sanitize_text;
use std::net::IpAddr;

/// Most servers listed from one scan: a host sending many made-up answers fills no more.
pub const MAX_LISTED: usize = 32;

/// A server that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where to connect: the announced host, else where the answer came from.
    pub host: IpAddr,
    /// Where the answer came from.
    pub from: IpAddr,
    /// What it said.
    pub announcement: Announcement,
}

impl Found {
    /// From an answer datagram received from `from`; `None` if it is not an answer.
    pub fn from_answer(datagram: &[u8], from: IpAddr) -> Option<Found> {
        let announcement = Announcement::parse(datagram)?;
        let from = from.to_canonical();
        Some(Found {
            host: announcement.host.unwrap_or(from),
            from,
            announcement,
        })
    }

    /// The TCP port of the line protocol.
    pub fn tcp_port(&self) -> Option<u16> {
        self.announcement.port("tcp")
    }

    /// One line for a list: `name  host port N  (web 8080, irc 6667)`, then `answered from
    /// ADDR` when the answer named another host than its own. Every field from the answer
    /// is escaped ([`sanitize_text`]).
    pub fn describe(&self) -> String {
        let a = &self.announcement;
        let mut out = format!(
            "{}  {} port {}",
            sanitize_text(&a.name),
            self.host,
            self.tcp_port().map_or("?".to_string(), |p| p.to_string())
        );
        let others: Vec<String> = a
            .doors
            .iter()
            .filter(|(d, _)| d != "tcp")
            .map(|(d, p)| format!("{} {p}", sanitize_text(d)))
            .collect();
        if !others.is_empty() {
            out.push_str(&format!("  ({})", others.join(", ")));
        }
        if self.from != self.host {
            out.push_str(&format!("  answered from {}", self.from));
        }
        out
    }
}

/// Adds the answer `new` to the servers `found` so far, unless it is one of them; `false`
/// when it was left out because [`MAX_LISTED`] servers are listed already.
///
/// Two answers are one server only when their announcements are identical and they lead
/// to the same host, or to two addresses of `this_machine` (a server on this machine heard
/// on loopback and on a LAN address: loopback is kept, since it keeps working when the LAN
/// address changes). Answers that differ in anything, the address included, are never
/// merged: one of them may be an impostor repeating the real server's id, and only the
/// user can tell which is which.
pub fn add(found: &mut Vec<Found>, new: Found, this_machine: &[IpAddr]) -> bool {
    let here = |ip: IpAddr| this_machine.contains(&ip.to_canonical());
    let same = |f: &Found| {
        f.announcement == new.announcement
            && (f.host == new.host || (here(f.host) && here(new.host)))
    };
    let full = found.len() >= MAX_LISTED;
    match found.iter_mut().find(|f| same(f)) {
        Some(old) => {
            if new.host.is_loopback() && !old.host.is_loopback() {
                *old = new;
            }
            true
        }
        None if full => false,
        None => {
            found.push(new);
            true
        }
    }
}

/// A warning for each server id that more than one listed answer claims: `Answers 1 and 2
/// claim to be the same server (id X) ...`, numbered as in [`numbered`].
pub fn same_id_warnings(found: &[Found]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let id = &f.announcement.id;
        let claimed_before = found[..i].iter().any(|g| &g.announcement.id == id);
        if id.is_empty() || claimed_before {
            continue;
        }
        let numbers: Vec<String> = found
            .iter()
            .enumerate()
            .filter(|(_, g)| &g.announcement.id == id)
            .map(|(j, _)| (j + 1).to_string())
            .collect();
        if let [first @ .., last] = numbers.as_slice() {
            if first.is_empty() {
                continue;
            }
            warnings.push(format!(
                "Answers {} and {last} claim to be the same server (id {}) but differ: at most \
                 one of them is that server. Ask whoever runs it which address is right.",
                first.join(", "),
                sanitize_text(id)
            ));
        }
    }
    warnings
}

/// What to do after a scan, when no server address was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Connect here.
    Server(IpAddr, u16),
    /// Nothing answered: try this machine.
    Fallback,
    /// This many servers answered and none was chosen (the input ended): connect nowhere.
    Undecided(usize),
}

/// Chooses among the servers `found` (those with TCP port `port`, if given): one is taken,
/// several are listed with `say` (with [`same_id_warnings`]) and chosen by number through
/// `ask` (asked again until the answer is a valid number; `None` from `ask` is the end of
/// input, and then no server is chosen).
pub fn pick(
    found: &[Found],
    port: Option<u16>,
    mut ask: impl FnMut(&str) -> Option<String>,
    mut say: impl FnMut(&str),
) -> Pick {
    let found: Vec<&Found> = found
        .iter()
        .filter(|f| port.is_none() || f.tcp_port() == port)
        .collect();
    let target = |f: &Found| Pick::Server(f.host, f.tcp_port().unwrap_or_default());
    match found.as_slice() {
        [] => Pick::Fallback,
        [one] => {
            say(&format!("Found {}; connecting.", one.describe()));
            target(one)
        }
        several => {
            say(&format!("{} lanchat servers answered:", several.len()));
            let owned: Vec<Found> = several.iter().map(|&f| f.clone()).collect();
            for line in numbered(&owned) {
                say(&line);
            }
            for warning in same_id_warnings(&owned) {
                say(&warning);
            }
            loop {
                let Some(typed) = ask(&format!("Which server? [1-{}]", several.len())) else {
                    return Pick::Undecided(several.len());
                };
                match parse_choice(&typed, several.len()) {
                    Some(i) => return target(several[i]),
                    None => say(&format!(
                        "Please type a number from 1 to {}.",
                        several.len()
                    )),
                }
            }
        }
    }
}

/// The numbered list shown when several servers answered.
pub fn numbered(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .enumerate()
        .map(|(i, f)| format!("  {}) {}", i + 1, f.describe()))
        .collect()
}

/// The index chosen by a typed answer to "which server?" among `n`: a number 1..=n.
pub fn parse_choice(typed: &str, n: usize) -> Option<usize> {
    match typed.trim().parse::<usize>() {
        Ok(k) if (1..=n).contains(&k) => Some(k - 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(host: &str, id: &str, port: u16) -> Found {
        Found {
            host: host.parse().unwrap(),
            from: host.parse().unwrap(),
            announcement: Announcement {
                name: "pc".into(),
                id: id.into(),
                host: None,
                doors: vec![("tcp".into(), port)],
                fingerprint: None,
            },
        }
    }

    #[test]
    fn answers_become_servers_at_their_source_or_announced_host() {
        let f = Found::from_answer(
            b"LANCHAT/1 name=pc id=1 tcp=5000",
            "10.0.0.2".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(f.host, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(f.tcp_port(), Some(5000));
        let f = Found::from_answer(
            b"LANCHAT/1 name=pc id=1 host=10.0.0.9 tcp=5000",
            "10.0.0.2".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(f.host, "10.0.0.9".parse::<IpAddr>().unwrap());
        let mapped = Found::from_answer(b"LANCHAT/1 tcp=1", "::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(mapped.unwrap().host, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            Found::from_answer(b"hello", "10.0.0.2".parse().unwrap()),
            None
        );
    }

    #[test]
    fn lists_show_every_door() {
        let mut f = found("10.0.0.2", "1", 4119);
        assert_eq!(f.describe(), "pc  10.0.0.2 port 4119");
        f.announcement.doors.push(("web".into(), 8080));
        f.announcement.doors.push(("irc".into(), 6667));
        assert_eq!(f.describe(), "pc  10.0.0.2 port 4119  (web 8080, irc 6667)");
        assert_eq!(
            numbered(&[f.clone(), found("::1", "2", 5)]),
            [
                "  1) pc  10.0.0.2 port 4119  (web 8080, irc 6667)",
                "  2) pc  ::1 port 5"
            ]
        );
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn one_server_heard_on_two_addresses_of_this_machine_is_listed_once_preferring_loopback() {
        let here = ips(&["10.0.0.2", "127.0.0.1"]);
        let mut all = Vec::new();
        assert!(add(&mut all, found("10.0.0.2", "a", 4119), &here));
        assert!(add(&mut all, found("127.0.0.1", "a", 4119), &here));
        assert!(add(&mut all, found("10.0.0.2", "a", 4119), &here));
        assert_eq!(all, [found("127.0.0.1", "a", 4119)]);
        add(&mut all, found("127.0.0.1", "b", 4120), &here);
        add(&mut all, found("10.0.0.3", "c", 4119), &here);
        assert_eq!(all.len(), 3);
        // Another machine heard twice (a broadcast and a subnet broadcast): once.
        add(&mut all, found("10.0.0.3", "c", 4119), &here);
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn answers_that_disagree_are_never_merged() {
        let real = found("10.0.0.2", "a", 4119);
        let variants = [
            // The real server's id and port from another host: the impostor of issue 23.
            found("10.0.0.66", "a", 4119),
            // Another address of this machine that is not one of its interfaces' own.
            found("127.0.0.2", "a", 4119),
            // The same host and id, but another port, name or door.
            found("10.0.0.2", "a", 4120),
            Found {
                announcement: Announcement {
                    name: "other".into(),
                    ..real.announcement.clone()
                },
                ..real.clone()
            },
            Found {
                announcement: Announcement {
                    doors: vec![("tcp".into(), 4119), ("web".into(), 80)],
                    ..real.announcement.clone()
                },
                ..real.clone()
            },
            // No id, the same host and port.
            found("10.0.0.2", "", 4119),
        ];
        let here = ips(&["10.0.0.2", "127.0.0.1"]);
        for variant in variants {
            let mut all = vec![real.clone()];
            add(&mut all, variant.clone(), &here);
            assert_eq!(all, [real.clone(), variant]);
        }
    }

    #[test]
    fn a_flood_of_made_up_answers_lists_a_bounded_number() {
        let mut all = Vec::new();
        let added = (0..40u16)
            .filter(|&i| add(&mut all, found("10.0.0.9", "x", 1000 + i), &[]))
            .count();
        assert_eq!((added, all.len()), (MAX_LISTED, MAX_LISTED));
    }

    #[test]
    fn answers_claiming_one_id_are_pointed_out() {
        let list = [
            found("10.0.0.2", "a", 4119),
            found("10.0.0.3", "b", 4119),
            found("10.0.0.66", "a", 4119),
        ];
        assert_eq!(
            same_id_warnings(&list),
            [
                "Answers 1 and 3 claim to be the same server (id a) but differ: at most one of \
              them is that server. Ask whoever runs it which address is right."
            ]
        );
        let three = [list[0].clone(), list[2].clone(), found("10.0.0.67", "a", 1)];
        assert!(same_id_warnings(&three)[0].starts_with("Answers 1, 2 and 3 claim"));
        assert!(same_id_warnings(&list[..2]).is_empty());
        let mut hostile = found("10.0.0.2", "\x1b[2J", 1);
        hostile.announcement.id = "\x1b[2J".into();
        let warnings = same_id_warnings(&[hostile.clone(), hostile]);
        let escaped = format!("(id {})", sanitize_text("\x1b[2J"));
        assert!(warnings[0].contains(&escaped), "{warnings:?}");
        assert!(!warnings[0].contains('\x1b'), "{warnings:?}");
    }

    #[test]
    fn every_printed_field_of_an_answer_is_escaped() {
        let mut f = found("10.0.0.2", "1", 4119);
        f.announcement.name = "pc\x1b]0;owned\x07".into();
        f.announcement
            .doors
            .push(("\x1b[2J\x1b[31mweb".into(), 8080));
        assert_eq!(
            f.describe(),
            format!(
                "{}  10.0.0.2 port 4119  ({} 8080)",
                sanitize_text("pc\x1b]0;owned\x07"),
                sanitize_text("\x1b[2J\x1b[31mweb")
            )
        );
        assert!(!f.describe().contains(['\x1b', '\x07']), "{}", f.describe());
        let parsed = Found::from_answer(
            b"LANCHAT/1 name=pc id=1 tcp=1 \x1b[31mirc=2",
            "10.0.0.2".parse().unwrap(),
        )
        .unwrap();
        assert!(!parsed.describe().contains('\x1b'), "{}", parsed.describe());
    }

    #[test]
    fn an_answer_naming_another_host_says_where_it_came_from() {
        let f = Found::from_answer(
            b"LANCHAT/1 name=pc id=1 host=10.0.0.9 tcp=5000",
            "10.0.0.66".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            f.describe(),
            "pc  10.0.0.9 port 5000  answered from 10.0.0.66"
        );
    }

    #[test]
    fn one_server_is_taken_several_are_asked_none_falls_back() {
        let (a, b) = (found("10.0.0.2", "a", 4119), found("10.0.0.3", "b", 5000));
        let mut said = Vec::new();
        let no_questions = |_: &str| -> Option<String> { panic!("asked") };
        assert_eq!(
            pick(std::slice::from_ref(&a), None, no_questions, |l| said
                .push(l.to_string())),
            Pick::Server("10.0.0.2".parse().unwrap(), 4119)
        );
        assert_eq!(said, ["Found pc  10.0.0.2 port 4119; connecting."]);
        assert_eq!(pick(&[], None, no_questions, |_| {}), Pick::Fallback);
        // A port given on the command line narrows the choice.
        assert_eq!(
            pick(&[a.clone(), b.clone()], Some(5000), no_questions, |_| {}),
            Pick::Server("10.0.0.3".parse().unwrap(), 5000)
        );
        assert_eq!(
            pick(std::slice::from_ref(&a), Some(1), no_questions, |_| {}),
            Pick::Fallback
        );

        let mut answers = vec!["x".to_string(), "2".to_string()].into_iter();
        let said = std::cell::RefCell::new(Vec::new());
        let chosen = pick(
            &[a.clone(), b.clone()],
            None,
            |q| {
                said.borrow_mut().push(q.to_string());
                answers.next()
            },
            |l| said.borrow_mut().push(l.to_string()),
        );
        let said = said.into_inner();
        assert_eq!(chosen, Pick::Server("10.0.0.3".parse().unwrap(), 5000));
        assert_eq!(
            said,
            [
                "2 lanchat servers answered:",
                "  1) pc  10.0.0.2 port 4119",
                "  2) pc  10.0.0.3 port 5000",
                "Which server? [1-2]",
                "Please type a number from 1 to 2.",
                "Which server? [1-2]",
            ]
        );
        assert_eq!(pick(&[a, b], None, |_| None, |_| {}), Pick::Undecided(2));
    }

    #[test]
    fn an_impostor_beside_the_real_server_makes_the_client_ask() {
        let real = found("10.0.0.2", "a", 4119);
        let impostor = found("10.0.0.66", "a", 4119);
        let mut all = Vec::new();
        for answer in [impostor, real] {
            add(&mut all, answer, &[]);
        }
        let said = std::cell::RefCell::new(Vec::new());
        let chosen = pick(
            &all,
            Some(4119),
            |q| {
                said.borrow_mut().push(q.to_string());
                None
            },
            |l| said.borrow_mut().push(l.to_string()),
        );
        assert_eq!(chosen, Pick::Undecided(2));
        let said = said.into_inner();
        assert_eq!(said[0], "2 lanchat servers answered:");
        assert!(said[3].starts_with("Answers 1 and 2 claim"), "{said:?}");
        assert_eq!(said[4], "Which server? [1-2]");
    }

    #[test]
    fn choices_are_numbers_in_range() {
        assert_eq!(parse_choice("1", 2), Some(0));
        assert_eq!(parse_choice(" 2 \n", 2), Some(1));
        assert_eq!(parse_choice("3", 2), None);
        assert_eq!(parse_choice("0", 2), None);
        assert_eq!(parse_choice("one", 2), None);
    }
}
