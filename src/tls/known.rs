//! `known_servers`: the fingerprints a client has pinned, like ssh's `known_hosts`.
//!
//! One server a line, `ADDRESS FINGERPRINT` (the address as `host:port` of its TLS door,
//! the full fingerprint); `#` starts a comment. The file lives in the user's configuration
//! directory: `$LANCHAT_CONFIG_DIR` if set (tests), else `$XDG_CONFIG_HOME/lanchat`, else
//! `$HOME/.config/lanchat`. What to do with a server is decided here, apart from any I/O
//! on the network, so the rules can be tested alone.

use super::fingerprint::{self, Fingerprint};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name in the configuration directory.
pub const FILE_NAME: &str = "known_servers";

/// Where `known_servers` is for this user, from the environment; `None` if no directory is
/// known (no `$HOME`).
pub fn default_path() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("LANCHAT_CONFIG_DIR")
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("lanchat")))
        .or_else(|| var("HOME").map(|d| d.join(".config").join("lanchat")))?;
    Some(dir.join(FILE_NAME))
}

/// What the client should do with the key a server presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Trust {
    /// Pinned already, and it matches.
    Known,
    /// Never seen: show it for the user to compare, and pin it (trust on first use).
    FirstUse,
    /// Pinned with another key: refuse, with [`changed_explanation`].
    Changed {
        /// The fingerprint pinned before (full form).
        pinned: String,
        /// Its line in the file.
        line: usize,
    },
}

/// The pinned servers, as read from one file.
#[derive(Debug)]
pub struct KnownServers {
    path: PathBuf,
    /// `(address, fingerprint characters, line number)`.
    entries: Vec<(String, String, usize)>,
}

impl KnownServers {
    /// Reads `path`; a missing file is an empty list. A line that is not `ADDRESS
    /// FINGERPRINT` is an error naming the file and line (a hand-edited file must not be
    /// half-understood).
    pub fn load(path: &Path) -> Result<KnownServers, String> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(address), Some(fp), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "{}:{}: expected `ADDRESS FINGERPRINT`, found `{line}`",
                    path.display(),
                    n + 1
                ));
            };
            let fp = fingerprint::normalize(fp)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
            entries.push((address.to_string(), fp, n + 1));
        }
        Ok(KnownServers {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Whether `typed` (any form) is the fingerprint pinned for `address`.
    pub fn matches(&self, address: &str, typed: &str) -> bool {
        let Ok(typed) = fingerprint::normalize(typed) else {
            return false;
        };
        self.entries.iter().any(|(a, fp, _)| {
            a == address && (fp.starts_with(&typed) || typed.starts_with(fp.as_str()))
        })
    }

    /// Whether a fingerprint is pinned for `address`.
    pub fn is_pinned(&self, address: &str) -> bool {
        self.entries.iter().any(|(a, _, _)| a == address)
    }

    /// What to do with `seen` from the server at `address` (`host:port`).
    pub fn check(&self, address: &str, seen: &Fingerprint) -> Trust {
        match self.entries.iter().find(|(a, _, _)| a == address) {
            None => Trust::FirstUse,
            Some((_, fp, _)) if seen.matches(fp) => Trust::Known,
            Some((_, fp, line)) => Trust::Changed {
                pinned: fp.clone(),
                line: *line,
            },
        }
    }

    /// Pins `fp` for `address`: appended to the file (its directory made if needed).
    pub fn pin(&mut self, address: &str, fp: &Fingerprint) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        writeln!(file, "{address} {}", fp.full()).map_err(fail)?;
        let line = self.entries.last().map_or(1, |e| e.2 + 1);
        let chars = fp.full().replace('-', "");
        self.entries.push((address.to_string(), chars, line));
        Ok(())
    }

    /// The file these entries came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a connection is refused when a pinned server shows another key, and what to check.
pub fn changed_explanation(
    address: &str,
    pinned: &str,
    line: usize,
    seen: &Fingerprint,
    path: &Path,
) -> String {
    let pinned_short: String = pinned.chars().take(fingerprint::SHORT_CHARS).collect();
    format!(
        "Refusing {address}: its key changed. It showed fingerprint {}, but {} line {line} \
         pinned {}. Someone on the network may be pretending to be the server, or the \
         server got a new key. Ask the instructor for the fingerprint the server prints at \
         start; if it is {} (the new one), delete line {line} of {} and connect again.",
        seen.short(),
        path.display(),
        group_short(&pinned_short),
        seen.short(),
        path.display()
    )
}

fn group_short(chars: &str) -> String {
    let parts: Vec<String> = chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_pins_then_the_same_key_is_known_and_another_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let (real, fake) = (Fingerprint::of_spki(b"real"), Fingerprint::of_spki(b"fake"));
        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("10.0.0.5:4129", &real), Trust::FirstUse);
        known.pin("10.0.0.5:4129", &real).unwrap();
        let known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("10.0.0.5:4129", &real), Trust::Known);
        assert_eq!(known.check("10.0.0.6:4129", &fake), Trust::FirstUse);
        let Trust::Changed { pinned, line } = known.check("10.0.0.5:4129", &fake) else {
            panic!("a changed key must be refused");
        };
        assert_eq!(line, 1);
        let why = changed_explanation("10.0.0.5:4129", &pinned, line, &fake, known.path());
        assert!(
            why.contains(&fake.short()) && why.contains(&real.short()),
            "{why}"
        );
        assert!(why.contains("line 1") && why.contains(FILE_NAME), "{why}");
    }

    #[test]
    fn a_hand_damaged_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "# mine\nhost:1 abcdabcdabcdabcd\nhost:2\n").unwrap();
        let err = KnownServers::load(&path).unwrap_err();
        assert!(err.contains(":3:"), "{err}");
        fs::write(&path, "host:1 abcd-0000\n").unwrap();
        let err = KnownServers::load(&path).unwrap_err();
        assert!(err.contains(":1:") && err.contains("`0`"), "{err}");
    }
}
