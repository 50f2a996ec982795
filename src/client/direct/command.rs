//! The commands the client handles itself instead of sending them to the server:
//! `private`, `send`, `addressbook` and `removeaddress`, recognised by [`parse_local`], pure.
//!
//! What it does not do: act on them (the client's main loop does, `session::commands`).

use super::wire::check_text;
use crate::protocol::{sanitize_text, valid_username};

/// A command the client handles itself instead of sending it to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// `private USER TEXT` (seed 002): a direct message to someone in the address book.
    Private {
        /// The peer.
        to: String,
        /// The message, as typed (trimmed).
        text: String,
    },
    /// `send USER TEXT` (seed 004): a direct message, asking the server for USER's address
    /// first if USER is not in the address book yet.
    Send {
        /// The peer.
        to: String,
        /// The message, as typed (trimmed).
        text: String,
    },
    /// `addressbook`: who can be sent direct messages.
    AddressBook,
    /// `removeaddress USER`: dropped from the book at once, and sent on to the server, which
    /// tells USER.
    RemoveAddress(String),
}

/// Splits off the first word; returns (word, rest trimmed at its start).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Recognises the commands the client handles itself (case-insensitive, optionally with a
/// leading `/`). `None`: the line is for the server. `Some(Err(message))`: a local command
/// used wrongly. In a chat session (`in_session`) only lines starting with `/` count as
/// commands, as on the server.
pub fn parse_local(line: &str, in_session: bool) -> Option<Result<Local, String>> {
    let line = line.trim();
    let bare = match line.strip_prefix('/') {
        Some(bare) => bare,
        None if in_session => return None,
        None => line,
    };
    let (word, rest) = split_word(bare);
    let word = word.to_ascii_lowercase();
    let message = |usage: &str| -> Result<(String, String), String> {
        let (to, text) = split_word(rest);
        if to.is_empty() {
            return Err(format!("usage: {usage}"));
        }
        if !valid_username(to) {
            return Err(format!("'{}' is not a valid name", sanitize_text(to)));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("empty messages are not sent (usage: {usage})"));
        }
        check_text(text).map_err(|e| e.to_string())?;
        Ok((to.to_string(), text.to_string()))
    };
    Some(match word.as_str() {
        "private" => message("private USER TEXT").map(|(to, text)| Local::Private { to, text }),
        "send" => message("send USER TEXT").map(|(to, text)| Local::Send { to, text }),
        "addressbook" => Ok(Local::AddressBook),
        "removeaddress" => {
            let (name, extra) = split_word(rest);
            if !valid_username(name) || !extra.is_empty() {
                // The server explains the usage.
                return None;
            }
            Ok(Local::RemoveAddress(name.to_string()))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_commands() {
        let private = |to: &str, text: &str| {
            Some(Ok(Local::Private {
                to: to.into(),
                text: text.into(),
            }))
        };
        assert_eq!(
            parse_local("private bob hi there", false),
            private("bob", "hi there")
        );
        assert_eq!(
            parse_local("  /PRIVATE  bob   hi  ", false),
            private("bob", "hi")
        );
        assert_eq!(parse_local("/private bob hi", true), private("bob", "hi"));
        assert_eq!(parse_local("private bob hi", true), None);
        assert_eq!(
            parse_local("send bob hi", false),
            Some(Ok(Local::Send {
                to: "bob".into(),
                text: "hi".into()
            }))
        );
        assert_eq!(
            parse_local("addressbook", false),
            Some(Ok(Local::AddressBook))
        );
        assert_eq!(
            parse_local("/AddressBook", false),
            Some(Ok(Local::AddressBook))
        );
        assert_eq!(
            parse_local("removeaddress bob", false),
            Some(Ok(Local::RemoveAddress("bob".into())))
        );
        assert_eq!(parse_local("removeaddress", false), None);
        assert_eq!(parse_local("getaddress bob", false), None);
        assert_eq!(parse_local("message bob hi", false), None);
        assert_eq!(parse_local("privately", false), None);
        assert_eq!(
            parse_local("private", false),
            Some(Err("usage: private USER TEXT".into()))
        );
        assert_eq!(
            parse_local("send bob   ", false),
            Some(Err(
                "empty messages are not sent (usage: send USER TEXT)".into()
            ))
        );
        assert_eq!(
            parse_local("private b\x1b@d hi", false),
            Some(Err("'b\\x1b@d' is not a valid name".into()))
        );
        let long = format!("private bob {}", "x".repeat(70 * 1024));
        assert_eq!(
            parse_local(&long, false),
            Some(Err(
                "private messages are limited to 65536 bytes; this one has 71680".into()
            ))
        );
    }
}
