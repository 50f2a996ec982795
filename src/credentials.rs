//! `credentials.txt`: one `username secret` per line, blank lines and `#` comments allowed.
//!
//! The secret is either a plaintext password (the course projects' format, and the seeds') or
//! an argon2 PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, as printed by
//! `lanchat-server hash-password`. Both kinds may be mixed in one file.
//!
//! Comparisons are constant time: argon2's own verification for hashes (which compares its
//! output in constant time), [`constant_time_eq`] for plaintext. Verifying an unknown user or a
//! plaintext one does the same work as verifying a hashed one (see
//! [`Credentials::verify_or_dummy`]).
//!
//! This module never logs or prints a password or a hash, not even through `Debug`.

use crate::protocol::valid_username;
use argon2::password_hash::PasswordVerifier;
use argon2::{Argon2, PasswordHash, PasswordHasher};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// What a credentials line holds after the username.
#[derive(Clone)]
enum StoredSecret {
    /// A plaintext password, as written.
    Plain(String),
    /// A parsed argon2 PHC string; its parameters and salt drive verification. Boxed: a
    /// parsed hash is ~300 bytes, a plaintext entry 24.
    Hash(Box<PasswordHash>),
}

impl StoredSecret {
    /// Reads the second word of a line: a PHC string if it starts with `$argon2`, else a
    /// plaintext password.
    fn parse(word: &str) -> Result<StoredSecret, String> {
        if !word.starts_with("$argon2") {
            return Ok(StoredSecret::Plain(word.to_string()));
        }
        let hash = PasswordHash::new(word).map_err(|e| format!("not a valid PHC string ({e})"))?;
        argon2::Algorithm::try_from(hash.algorithm.as_str())
            .map_err(|_| format!("unknown algorithm `{}`", hash.algorithm))?;
        if let Some(v) = hash.version {
            argon2::Version::try_from(v).map_err(|_| format!("unknown argon2 version {v}"))?;
        }
        argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters ({e})"))?;
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err("the PHC string has no salt or no hash".into());
        }
        Ok(StoredSecret::Hash(Box::new(hash)))
    }
}

/// The registered users and their passwords or password hashes.
#[derive(Clone, Default)]
pub struct Credentials {
    /// username -> secret, as written in the file.
    users: HashMap<String, StoredSecret>,
    /// The first argon2 hash of the file, if any: an unknown user's password is verified
    /// against it (and the result ignored) so that a miss costs as much as a hit.
    dummy: Option<Box<PasswordHash>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print passwords or hashes, not even in a debug dump.
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish()
    }
}

/// The cost of an argon2id hash made by [`hash_password_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (`m=`); at least 8 per lane.
    pub memory_kib: u32,
    /// Passes over the memory (`t=`); at least 1.
    pub iterations: u32,
    /// Lanes (`p=`); at least 1.
    pub parallelism: u32,
}

impl HashParams {
    /// The argon2 crate's defaults (OWASP's recommendation: m=19456, t=2, p=1), used by
    /// `lanchat-server hash-password`.
    pub const DEFAULT: HashParams = HashParams {
        memory_kib: argon2::Params::DEFAULT_M_COST,
        iterations: argon2::Params::DEFAULT_T_COST,
        parallelism: argon2::Params::DEFAULT_P_COST,
    };

    /// Cheap parameters for tests only (m=256 KiB, t=1, p=1): they verify in about a
    /// millisecond even in debug builds. Never use them for real passwords.
    pub const CHEAP_FOR_TESTS: HashParams = HashParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for HashParams {
    fn default() -> HashParams {
        HashParams::DEFAULT
    }
}

/// Hashes `password` with argon2id, the default parameters and a fresh random salt; returns
/// the PHC string to put after a username in `credentials.txt`.
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_password_with(password, HashParams::DEFAULT)
}

/// Like [`hash_password`] with explicit parameters (tests use
/// [`HashParams::CHEAP_FOR_TESTS`]). Verification always uses the parameters stored in the
/// PHC string, so hashes of any cost can share a file.
pub fn hash_password_with(password: &str, params: HashParams) -> Result<String, String> {
    let params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| format!("bad argon2 parameters: {e}"))?;
    let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon2
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

impl Credentials {
    /// Reads a credentials file.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses credentials text; a malformed line (including a malformed `$argon2` PHC
    /// string) is an error naming its number.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut users = HashMap::new();
        let mut dummy = None;
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
            let secret = StoredSecret::parse(password)
                .map_err(|e| format!("line {}: `{name}`'s password hash: {e}", i + 1))?;
            if let (None, StoredSecret::Hash(h)) = (&dummy, &secret) {
                dummy = Some(h.clone());
            }
            if users.insert(name.to_string(), secret).is_some() {
                return Err(format!("line {}: `{name}` is listed twice", i + 1));
            }
        }
        Ok(Credentials { users, dummy })
    }

    /// Builds credentials from pairs of username and plaintext password or PHC string (tests
    /// and embedding). A `$argon2` string that does not parse is kept as a plaintext password.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Credentials {
        let mut dummy = None;
        let users = pairs
            .into_iter()
            .map(|(u, p)| {
                let secret =
                    StoredSecret::parse(p).unwrap_or_else(|_| StoredSecret::Plain(p.to_string()));
                if let (None, StoredSecret::Hash(h)) = (&dummy, &secret) {
                    dummy = Some(h.clone());
                }
                (u.to_string(), secret)
            })
            .collect();
        Credentials { users, dummy }
    }

    /// Whether `name` is a registered user.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether `password` is `name`'s password; the same as [`Credentials::verify_or_dummy`],
    /// so an unknown user costs as much as a known one.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        self.verify_or_dummy(name, password)
    }

    /// Whether `password` is `name`'s password, taking about as long whoever `name` is
    /// (known with a hash, known with a plaintext password, unknown), so that timing does not
    /// tell which usernames exist nor which of them have a plaintext password.
    ///
    /// If the file holds any argon2 hash, every check runs argon2 once: a hashed user's own
    /// hash; for a plaintext user or an unknown name, the first hash of the file (the
    /// parameters `add-user` gives every line; the result is thrown away), plus a constant-time
    /// comparison with the plaintext password (or a fixed dummy string). A plaintext-only file
    /// costs a comparison whoever asks.
    pub fn verify_or_dummy(&self, name: &str, password: &str) -> bool {
        let expected = match self.users.get(name) {
            Some(StoredSecret::Hash(hash)) => return argon2_matches(hash, password),
            Some(StoredSecret::Plain(expected)) => Some(expected.as_str()),
            None => None,
        };
        if let Some(dummy) = &self.dummy {
            std::hint::black_box(argon2_matches(dummy, password));
        }
        let same = constant_time_eq(
            expected.unwrap_or(DUMMY_PASSWORD).as_bytes(),
            password.as_bytes(),
        );
        expected.is_some() && std::hint::black_box(same)
    }

    /// Whether a password check runs argon2 (true for every name as soon as the file holds
    /// one hash, see [`Credentials::verify_or_dummy`]): seconds of CPU and megabytes of memory
    /// in a crowd, where a plaintext-only file costs nothing.
    pub fn is_costly(&self) -> bool {
        self.dummy.is_some()
    }

    /// How many users have a plaintext password (anyone who can read the file can log in as
    /// them; the server warns about it at startup).
    pub fn plaintext_count(&self) -> usize {
        self.users
            .values()
            .filter(|s| matches!(s, StoredSecret::Plain(_)))
            .count()
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

/// What an unknown user's password is compared with in a plaintext-only file: about as long
/// as a typical password, and not one anybody types.
const DUMMY_PASSWORD: &str = "\u{0}lanchat-no-such-user\u{0}";

/// Argon2 verification with the algorithm, version, parameters and salt stored in `hash`;
/// the outputs are compared in constant time by the argon2 crate.
fn argon2_matches(hash: &PasswordHash, password: &str) -> bool {
    #[cfg(test)]
    tests::ARGON2_RUNS.with(|runs| runs.set(runs.get() + 1));
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
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
    use std::cell::Cell;

    thread_local! {
        /// argon2 verifications run on this thread (tests count work instead of timing it).
        pub(super) static ARGON2_RUNS: Cell<u32> = const { Cell::new(0) };
    }

    /// How many argon2 verifications `check` ran.
    fn argon2_runs(check: impl FnOnce() -> bool) -> u32 {
        let before = ARGON2_RUNS.with(Cell::get);
        check();
        ARGON2_RUNS.with(Cell::get) - before
    }

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

    /// A cheap hash: tests never pay for the default parameters.
    fn cheap(password: &str) -> String {
        hash_password_with(password, HashParams::CHEAP_FOR_TESTS).unwrap()
    }

    #[test]
    fn phc_line_parses_and_verifies() {
        let phc = cheap("hunter2");
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        let c = Credentials::parse(&format!("alice {phc}\n")).unwrap();
        assert!(c.verify("alice", "hunter2"));
        assert!(!c.verify("alice", "hunter"));
        assert!(!c.verify("alice", "hunter22"));
        assert!(!c.verify("alice", ""));
        // The literal PHC string is not a password.
        assert!(!c.verify("alice", &phc));
    }

    #[test]
    fn hashes_are_salted() {
        assert_ne!(cheap("same"), cheap("same"));
    }

    #[test]
    fn mixed_file() {
        let text = format!(
            "# mixed\nplain pw-plain\nhashed {}\nother {}\n",
            cheap("pw-hashed"),
            cheap("pw-other")
        );
        let c = Credentials::parse(&text).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c.verify("plain", "pw-plain"));
        assert!(c.verify("hashed", "pw-hashed"));
        assert!(c.verify("other", "pw-other"));
        assert!(!c.verify("plain", "pw-hashed"));
        assert!(!c.verify("hashed", "pw-plain"));
        assert!(!c.verify("hashed", "pw-other"));
    }

    #[test]
    fn bad_phc_strings_are_named() {
        for bad in [
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2x$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$",
        ] {
            let e = Credentials::parse(&format!("ok pw\nbob {bad}\n")).unwrap_err();
            assert!(e.contains("line 2") && e.contains("bob"), "{bad}: {e}");
            assert!(!e.contains(bad), "the error repeats the hash: {e}");
        }
    }

    #[test]
    fn unknown_users_are_refused_after_dummy_work() {
        let phc = cheap("pw");
        let hashed = Credentials::parse(&format!("alice {phc}\n")).unwrap();
        // Even the right password of another user fails for an unknown name.
        assert!(!hashed.verify_or_dummy("mallory", "pw"));
        assert!(!hashed.verify_or_dummy("mallory", "x"));
        assert!(!hashed.verify("mallory", "pw"));
        let plain = Credentials::parse("alice pw\n").unwrap();
        assert!(!plain.verify_or_dummy("mallory", "pw"));
        assert!(!plain.verify_or_dummy("mallory", DUMMY_PASSWORD));
        assert!(!Credentials::default().verify_or_dummy("x", ""));
    }

    #[test]
    fn dummy_work_is_comparable_to_a_real_check() {
        // A file with (cheap) hashes: a miss must run argon2 too, not return at once.
        let c = Credentials::parse(&format!("alice {}\n", cheap("pw"))).unwrap();
        assert_eq!(argon2_runs(|| c.verify_or_dummy("alice", "wrong")), 1);
        assert_eq!(argon2_runs(|| c.verify_or_dummy("mallory", "wrong")), 1);
    }

    #[test]
    fn debug_hides_hashes() {
        let phc = cheap("pw");
        let c = Credentials::parse(&format!("alice {phc}\nbob plain\n")).unwrap();
        let dump = format!("{c:?}");
        assert!(
            !dump.contains("argon2") && !dump.contains("plain"),
            "{dump}"
        );
        let hash_part = phc.rsplit('$').next().unwrap();
        assert!(!dump.contains(hash_part), "{dump}");
    }

    #[test]
    fn from_pairs_accepts_hashes() {
        let phc = cheap("pw");
        let c = Credentials::from_pairs([("alice", phc.as_str()), ("bob", "bobpw")]);
        assert!(c.verify("alice", "pw"));
        assert!(c.verify("bob", "bobpw"));
        assert!(!c.verify("alice", &phc));
    }

    #[test]
    fn checks_are_costly_as_soon_as_one_line_is_hashed() {
        let plain = Credentials::from_pairs([("bob", "bobpw")]);
        assert!(!plain.is_costly());
        assert_eq!(plain.plaintext_count(), 1);
        let phc = cheap("pw");
        let mixed = Credentials::from_pairs([("alice", phc.as_str()), ("bob", "bobpw")]);
        // bob's and unknown names' checks run argon2 too, so they cost what alice's does.
        assert!(mixed.is_costly());
        assert_eq!(mixed.plaintext_count(), 1);
        assert!(mixed.verify("bob", "bobpw"));
        assert!(!mixed.verify("bob", "pw"));
    }

    #[test]
    fn plaintext_users_cost_an_argon2_check_in_a_mixed_file() {
        // Counted, not timed: one argon2 run with the file's own parameters for every name,
        // whatever its kind (the dummy is the file's first hash).
        let c = Credentials::parse(&format!("alice {}\nbob bobpw\n", cheap("pw"))).unwrap();
        for (name, password) in [
            ("alice", "wrong"),
            ("alice", "pw"),
            ("bob", "wrong"),
            ("bob", "bobpw"),
            ("mallory", "x"),
        ] {
            assert_eq!(
                argon2_runs(|| c.verify_or_dummy(name, password)),
                1,
                "{name}"
            );
        }
        assert!(c.verify_or_dummy("bob", "bobpw") && c.verify_or_dummy("alice", "pw"));
        assert!(!c.verify_or_dummy("mallory", "x"));
        // A plaintext-only file costs a comparison, whoever asks.
        let plain = Credentials::parse("bob bobpw\n").unwrap();
        assert_eq!(argon2_runs(|| plain.verify_or_dummy("mallory", "x")), 0);
        assert_eq!(argon2_runs(|| plain.verify_or_dummy("bob", "bobpw")), 0);
    }
}
