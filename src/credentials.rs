//! `credentials.txt`: one `username password` per line, blank lines and `#` comments allowed.
//!
//! Passwords are compared in constant time. This module never logs a password.

use crate::protocol::valid_username;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// The registered users and their passwords.
#[derive(Clone, Default)]
pub struct Credentials {
    /// username -> password, as written in the file.
    users: HashMap<String, String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print passwords, not even in a debug dump.
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Credentials {
    /// Reads a credentials file.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses credentials text; a malformed line is an error naming its number.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(password), None) = (words.next(), words.next(), words.next())
            else {
                return Err(format!(
                    "line {}: expected `username password`, two words",
                    i + 1
                ));
            };
            if !valid_username(name) {
                return Err(format!(
                    "line {}: `{name}` is not a valid username (1-32 of A-Z a-z 0-9 _ - .)",
                    i + 1
                ));
            }
            if users
                .insert(name.to_string(), password.to_string())
                .is_some()
            {
                return Err(format!("line {}: `{name}` is listed twice", i + 1));
            }
        }
        Ok(Credentials { users })
    }

    /// Builds credentials from pairs (tests and embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Credentials {
        Credentials {
            users: pairs
                .into_iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
        }
    }

    /// Whether `name` is a registered user.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether `password` is `name`'s password. Compares in constant time for a given length.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        match self.users.get(name) {
            Some(expected) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
            None => false,
        }
    }

    /// Every registered username, sorted.
    pub fn usernames(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.keys().cloned().collect();
        names.sort();
        names
    }

    /// Number of registered users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is registered.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Compares two byte strings without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_blanks() {
        let c = Credentials::parse("# users\n\ncolumbia 116bway\n  seas summerisover  \n").unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.verify("columbia", "116bway"));
        assert!(!c.verify("columbia", "116bwa"));
        assert!(!c.verify("columbia", "116bwayy"));
        assert!(!c.verify("nobody", "x"));
        assert!(c.contains("seas"));
    }

    #[test]
    fn malformed_lines_are_named() {
        assert!(Credentials::parse("a\n").unwrap_err().contains("line 1"));
        assert!(Credentials::parse("ok pw\nb c d\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(Credentials::parse("a/b pw\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(Credentials::parse("a x\na y\n")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn shipped_file_has_every_seed_demo_user() {
        let c = Credentials::parse(include_str!("../credentials.txt")).unwrap();
        for (u, p) in [
            ("columbia", "116bway"),
            ("seas", "summerisover"),
            ("sean", "sean"),
            ("Liz", "pw1"),
        ] {
            assert!(c.verify(u, p), "{u}");
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Credentials::from_pairs([("a", "secret")]);
        assert!(!format!("{c:?}").contains("secret"));
    }
}
