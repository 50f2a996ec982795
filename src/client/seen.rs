//! The offline mail this client has shown, by id, so a mail the server sends again is not
//! shown twice. The server keeps a mail until the client's TCP acknowledged it
//! (PROTOCOL.md 5.1), so a connection that broke mid-delivery, or a server that was
//! killed, sends part of the mail again at the next login, with the same ids.
//!
//! Bounded: the oldest ids are forgotten first. A repeat is always among the last mails
//! shown before the connection broke, which the bound keeps.

use std::collections::{HashSet, VecDeque};

/// Ids remembered: more than a full mailbox (`max_offline_messages`, 1000 by default).
const REMEMBERED: usize = 10_000;

/// Ids of the mails already shown, the oldest first out.
#[derive(Default)]
pub struct SeenMail {
    /// For the lookup.
    ids: HashSet<String>,
    /// In the order they were shown, to forget the oldest.
    order: VecDeque<String>,
}

impl SeenMail {
    /// Whether the mail with `id` is new (and remembers it). A mail without an id (an
    /// older server) is always new.
    pub fn first_time(&mut self, id: &str) -> bool {
        if id.is_empty() || id == "-" {
            return true;
        }
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_id_seen_before_is_dropped_and_the_oldest_are_forgotten() {
        let mut seen = SeenMail::default();
        assert!(seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time(""), "no id: always shown");
        assert!(seen.first_time(""));
        for i in 0..REMEMBERED {
            assert!(seen.first_time(&i.to_string()));
        }
        assert!(
            seen.first_time("a"),
            "forgotten after {REMEMBERED} newer ones"
        );
        assert!(!seen.first_time(&(REMEMBERED - 1).to_string()));
        assert_eq!(seen.ids.len(), REMEMBERED);
    }
}
