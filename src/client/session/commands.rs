//! What the user types that the client handles itself, in the main loop: `private` and
//! `send` (direct messages, see `direct`), `addressbook`, `removeaddress`, the `ADDR`
//! lines that keep the address book, and what still works once the server is gone.
//! Everything else typed goes to the server as it is.
//!
//! What it does not do: parse these commands (`direct::parse_local` does) or send a
//! direct message (the `direct` outbox's threads do).

use super::Client;
use crate::client::direct::{self, Local, Peer};
use crate::client::Ending;
use crate::protocol::{parse_command, Command, Line};

/// What `help` shows once the server is down.
const OFFLINE_HELP: &[&str] = &[
    "The server is down; these commands still work:",
    "private USER TEXT | send USER TEXT       a private message straight to USER's client",
    "addressbook                              who you can message privately",
    "help                                     this list",
    "logout | exit | quit                     leave (also Ctrl-D, Ctrl-C)",
];

impl Client {
    /// Starts listening for direct messages and tells the server the port.
    pub(super) fn start_direct(&mut self) {
        match direct::listen(self.p2p_port, &self.me, &self.book, &self.events) {
            Ok(port) => {
                self.p2p_reply_due = true;
                self.send(&format!("p2p {port}"));
            }
            Err(e) => self.error(&format!(
                "cannot listen for private messages on port {}: {e}; \
                 'private' and 'getaddress' will not work",
                self.p2p_port
            )),
        }
    }

    /// Acts on an `ADDR` line: the address book follows the server.
    pub(super) fn on_addr(&mut self, line: &Line) {
        let peer = line.arg(1);
        match line.arg(0) {
            "granted" => {
                let Some(secret) = direct::from_hex::<32>(line.arg(3)) else {
                    log::warn!("ADDR granted for {peer} without a valid secret");
                    self.unsent(peer, "the server sent no valid secret");
                    return;
                };
                let server = self.socket.peer_addr().ok().map(|a| a.ip());
                let address = direct::reachable_address(line.arg(2), server);
                self.book.insert(peer, Peer { address, secret });
                for text in self.waiting.remove(peer).unwrap_or_default() {
                    self.private(peer, text);
                }
            }
            "declined" => self.unsent(peer, "no address exchange"),
            "removed" | "gone" => {
                self.book.remove(peer);
                self.unsent(peer, "no address exchange");
            }
            _ => {}
        }
    }

    /// A line typed while the server is up (and not an answer to its question).
    pub(super) fn typed(&mut self, line: &str) {
        match direct::parse_local(line, self.in_session) {
            None => self.send(line),
            Some(Err(e)) => self.error(&e),
            Some(Ok(Local::Private { to, text })) => self.private(&to, text),
            Some(Ok(Local::Send { to, text })) if self.book.get(&to).is_some() => {
                self.private(&to, text);
            }
            Some(Ok(Local::Send { to, text })) => {
                let waiting = self.waiting.entry(to.clone()).or_default();
                waiting.push(text);
                if waiting.len() == 1 {
                    self.asked.push_back(to.clone());
                    self.send(&format!("getaddress {to}"));
                }
                self.show(&format!(
                    "{to} is not in your address book yet; the message will be sent if {to} \
                     accepts to exchange addresses."
                ));
            }
            Some(Ok(Local::AddressBook)) => self.address_book(),
            Some(Ok(Local::RemoveAddress(name))) => {
                self.book.remove(&name);
                self.send(line);
            }
        }
    }

    /// A line typed after the server went away: only what works without it.
    pub(super) fn typed_offline(&mut self, line: &str) -> Option<Ending> {
        match direct::parse_local(line, false) {
            Some(Err(e)) => self.error(&e),
            Some(Ok(Local::Private { to, text } | Local::Send { to, text })) => {
                self.private(&to, text);
            }
            Some(Ok(Local::AddressBook)) => self.address_book(),
            Some(Ok(Local::RemoveAddress(_))) | None => match parse_command(line, &self.me) {
                Ok(None) => {}
                Ok(Some(Command::Help)) => {
                    for help in OFFLINE_HELP {
                        self.show(help);
                    }
                }
                Ok(Some(Command::Logout)) => return Some(Ending::LoggedOut),
                _ => self.error(
                    "the server is down; only private, addressbook, help and logout work now",
                ),
            },
        }
        None
    }

    /// Sends a direct message to `to`, who must be in the address book.
    fn private(&mut self, to: &str, text: String) {
        let Some(peer) = self.book.get(to) else {
            return self.error(&format!(
                "{to} is not in your address book; run 'getaddress {to}' first"
            ));
        };
        if let Err(e) = self.outbox.send(to, peer, &self.me, text) {
            self.error(&format!("cannot send the private message to {to}: {e}"));
        }
    }

    /// Drops the texts waiting for `name`'s address, saying so.
    pub(super) fn unsent(&mut self, name: &str, why: &str) {
        if let Some(texts) = self.waiting.remove(name) {
            let text = match texts.len() {
                1 => format!("your message to {name} was not sent: {why}"),
                n => format!("your {n} messages to {name} were not sent: {why}"),
            };
            self.error(&text);
        }
    }

    /// Shows the address book.
    fn address_book(&mut self) {
        let entries = self.book.entries();
        if entries.is_empty() {
            return self.show(
                "Your address book is empty; 'getaddress USER' asks USER to exchange addresses.",
            );
        }
        self.show(&format!("Your address book ({}):", entries.len()));
        for (name, address) in entries {
            self.show(&crate::protocol::sanitize_text(&format!(
                "{name}   {address}"
            )));
        }
    }
}
