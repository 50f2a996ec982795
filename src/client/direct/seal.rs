//! Encryption of direct messages: the text of a `PRIVATE` line is sealed with
//! ChaCha20-Poly1305, so a classmate capturing the LAN sees no text (the MAC alone, in
//! version 1, only proved who sent it).
//!
//! The key is fresh for every connection: keyed BLAKE2b-256 of the receiver's nonce under
//! the pair's secret. Each key seals exactly one message, so the AEAD nonce can be all
//! zeros, and a sealed text recorded on one connection opens on no other (replays are
//! refused, as the MAC already refused them). The sender and receiver names are the
//! associated data: a sealed text cannot be re-addressed.

use super::Secret;
use base64ct::{Base64, Encoding};
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// What the key derivation absorbs first (domain separation from the MAC).
const KEY_CONTEXT: &[u8] = b"lanchat-p2p-v2 seal\n";

/// Bytes the Poly1305 tag adds.
const TAG_BYTES: usize = 16;

/// The longest sealed text for a text of `text_bytes` bytes (base64 of text and tag).
pub const fn sealed_len(text_bytes: usize) -> usize {
    (text_bytes + TAG_BYTES).div_ceil(3) * 4
}

/// This connection's key: BLAKE2b-MAC(secret, context + nonce).
fn key(secret: &Secret, nonce: &str) -> LessSafeKey {
    let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(secret)
        .expect("BLAKE2b takes keys of up to 64 bytes");
    mac.update(KEY_CONTEXT);
    mac.update(nonce.as_bytes());
    let bytes: [u8; 32] = mac.finalize().into_bytes().into();
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 32-byte key");
    LessSafeKey::new(unbound)
}

fn associated(from: &str, to: &str) -> Vec<u8> {
    format!("{from}\n{to}").into_bytes()
}

/// `text` from `from` to `to`, sealed for the connection whose greeting carried `nonce`:
/// base64 (standard alphabet, padded) of the ciphertext and its tag.
pub fn seal(secret: &Secret, nonce: &str, from: &str, to: &str, text: &str) -> String {
    let mut data = text.as_bytes().to_vec();
    key(secret, nonce)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(associated(from, to)),
            &mut data,
        )
        .expect("a message far below ChaCha20-Poly1305's limit");
    Base64::encode_string(&data)
}

/// The text of a sealed message, or `None` if it was not sealed by the pair's secret for
/// this connection, these names, unchanged, or is not UTF-8.
pub fn open(secret: &Secret, nonce: &str, from: &str, to: &str, sealed: &str) -> Option<String> {
    let mut data = Base64::decode_vec(sealed).ok()?;
    let plain = key(secret, nonce)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(associated(from, to)),
            &mut data,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: Secret = [7; 32];
    const NONCE: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn a_sealed_text_hides_the_text_and_opens_only_where_it_was_sealed_for() {
        let sealed = seal(&SECRET, NONCE, "alice", "bob", "meet at the library");
        assert!(!sealed.contains("library"));
        assert!(sealed.len() <= sealed_len("meet at the library".len()));
        let open_with = |secret: &Secret, nonce: &str, from: &str, to: &str| {
            open(secret, nonce, from, to, &sealed)
        };
        assert_eq!(
            open_with(&SECRET, NONCE, "alice", "bob").as_deref(),
            Some("meet at the library")
        );
        // Replayed on another connection (another nonce): refused.
        assert_eq!(
            open_with(&SECRET, "ffffffffffffffffffffffffffffffff", "alice", "bob"),
            None
        );
        // Another pair's secret, or re-addressed: refused.
        assert_eq!(open_with(&[8; 32], NONCE, "alice", "bob"), None);
        assert_eq!(open_with(&SECRET, NONCE, "mallory", "bob"), None);
        assert_eq!(open_with(&SECRET, NONCE, "alice", "carol"), None);
        // One flipped bit: refused.
        let mut bytes = Base64::decode_vec(&sealed).unwrap();
        bytes[0] ^= 1;
        assert_eq!(
            open(
                &SECRET,
                NONCE,
                "alice",
                "bob",
                &Base64::encode_string(&bytes)
            ),
            None
        );
    }
}
