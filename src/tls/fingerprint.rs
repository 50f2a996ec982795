//! The server's fingerprint: what a student compares with the one on the projector.
//!
//! It is the SHA-256 of the certificate's SubjectPublicKeyInfo (the key, not the
//! certificate: a renewed certificate for the same key keeps its fingerprint), written in
//! lowercase RFC 4648 base32 (`a`-`z`, `2`-`7`: no 0/O or 1/l to confuse on a screen) in
//! groups of four joined by `-`. The short form is the first 16 characters (80 bits); the
//! full form all 52. Comparison ignores case, dashes and spaces, and accepts any prefix of
//! at least [`MIN_PREFIX_CHARS`] characters, so the short form is enough to pin.

use sha2::{Digest, Sha256};
use std::fmt;

/// Characters of the short form (80 bits: far beyond what a classmate can brute-force).
pub const SHORT_CHARS: usize = 16;
/// The fewest characters a typed fingerprint may have to count as a match.
pub const MIN_PREFIX_CHARS: usize = SHORT_CHARS;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The SHA-256 of a server's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki_der).into())
    }

    /// All 52 base32 characters, without dashes.
    fn chars(&self) -> String {
        let mut out = String::with_capacity(52);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &byte in &self.0 {
            acc = (acc << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    /// The short form for banners: `abcd-efgh-ijkl-mnop`.
    pub fn short(&self) -> String {
        group(&self.chars()[..SHORT_CHARS])
    }

    /// The full form, for files and `--fingerprint`.
    pub fn full(&self) -> String {
        group(&self.chars())
    }

    /// Whether `typed` (a short or full form, any case, dashes or spaces anywhere) names
    /// this fingerprint. Fewer than [`MIN_PREFIX_CHARS`] characters never match.
    pub fn matches(&self, typed: &str) -> bool {
        match normalize(typed) {
            Ok(typed) => self.chars().starts_with(&typed),
            Err(_) => false,
        }
    }
}

/// Checks a typed fingerprint's form: its canonical characters, or why it is not one.
pub fn normalize(typed: &str) -> Result<String, String> {
    let chars: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if let Some(bad) = chars
        .chars()
        .find(|c| !ALPHABET.contains(&(*c as u8)) || !c.is_ascii())
    {
        return Err(format!(
            "a fingerprint has only the letters a-z and digits 2-7 (and dashes); `{bad}` is not one"
        ));
    }
    if chars.len() < MIN_PREFIX_CHARS || chars.len() > 52 {
        return Err(format!(
            "a fingerprint has {MIN_PREFIX_CHARS} to 52 characters besides dashes; this one has {}",
            chars.len()
        ));
    }
    Ok(chars)
}

fn group(chars: &str) -> String {
    let groups: Vec<&str> = chars
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    groups.join("-")
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_of_a_known_digest() {
        // SHA-256("") = e3b0c442...; its base32 (RFC 4648) is 4oymiquy7qobjgx3...
        let fp = Fingerprint::of_spki(b"");
        assert_eq!(fp.short(), "4oym-iquy-7qob-jgx3");
        assert_eq!(fp.full().replace('-', "").len(), 52);
    }

    #[test]
    fn short_form_case_and_dashes_match_and_short_prefixes_do_not() {
        let fp = Fingerprint::of_spki(b"key");
        assert!(fp.matches(&fp.short()));
        assert!(fp.matches(&fp.full().to_uppercase()));
        assert!(fp.matches(&fp.short().replace('-', " ")));
        assert!(!fp.matches(&fp.short()[..14]));
        assert!(!Fingerprint::of_spki(b"other").matches(&fp.short()));
        assert!(normalize("abcd-efgh-ijkl-mn0p")
            .unwrap_err()
            .contains("`0`"));
    }
}
