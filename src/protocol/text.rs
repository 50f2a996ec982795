//! Usernames and user text: which names are well formed, and the one escaping rule that keeps
//! a user's bytes from driving another user's terminal.

/// Longest username accepted, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Whether `name` is a well-formed username: 1..=32 ASCII letters, digits, `_`, `-` or `.`,
/// starting with a letter, digit or `_`. Names appear as single protocol arguments (where
/// `-` alone means "empty") and as file names, so nothing else is allowed.
pub fn valid_username(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `c` must never reach a terminal or a page as it is: a control character (C0,
/// DEL, C1), a bidirectional override, embedding, isolate or mark (U+061C, U+200E-200F,
/// U+202A-202E, U+2066-2069), which can make a line read backwards or disguise a name, or
/// an invisible one (U+200B-200D, U+2028-2029, U+2060-2064, U+FEFF), which can make two
/// different texts look the same. A zero-width joiner in an emoji sequence is escaped too:
/// one rule for every field is worth more than a family emoji drawn as one glyph.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f | 0x7f..=0x9f | 0x061c | 0x200b..=0x200f | 0x2028..=0x202e
            | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xfeff)
}

/// The one rule for every field that came from a user (messages, intros, names, realnames,
/// channel names, topics, reasons, discovery answers, direct messages), on every door: each
/// [`is_unsafe_char`] becomes a visible escape, except that a tab becomes a space. ESC
/// becomes `\x1b`, U+009B `\u{9b}`, U+202E `\u{202e}`. Escaping is idempotent (an escape
/// is printable), so text may pass through it again on the way out.
///
/// Where it is applied: on input, as a field enters the server (the command parser for the
/// native and web doors; the IRC door's USER, PRIVMSG, TOPIC, AWAY, PART, QUIT and KICK),
/// again where a door echoes what a client sent (IRC numerics) and as intros and history
/// lines are read back from disk, and in lanchat-client's renderer, for anything from a
/// server or a peer.
pub fn sanitize_text(text: &str) -> String {
    sanitize(text).into_owned()
}

/// [`sanitize_text`] without a copy when nothing needs escaping (the usual line).
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    // Printable ASCII is checked a byte at a time (which the compiler vectorises); other
    // text by character.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(is_unsafe_char) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_username("columbia"));
        assert!(valid_username("csee4119"));
        assert!(valid_username("Liz"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username("../etc"));
        assert!(!valid_username(".hidden"));
        assert!(!valid_username("-"));
        assert!(!valid_username("-x"));
        assert!(!valid_username(&"x".repeat(33)));
        assert!(!valid_username("a+b"));
    }

    #[test]
    fn sanitize_escapes_controls() {
        assert_eq!(sanitize_text("hi\x1b[31mred"), "hi\\x1b[31mred");
        assert_eq!(sanitize_text("a\tb"), "a b");
        assert_eq!(sanitize_text("bell\x07"), "bell\\x07");
        assert_eq!(sanitize_text("c1\u{9b}x"), "c1\\u{9b}x");
        assert_eq!(sanitize_text("héllo ✓"), "héllo ✓");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(sanitize("héllo ✓"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_makes_bidi_and_invisible_characters_visible() {
        assert_eq!(sanitize_text("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        for c in (0x202a..=0x202e)
            .chain(0x2066..=0x2069)
            .chain(0x200b..=0x200f)
        {
            let c = char::from_u32(c).unwrap();
            assert_eq!(
                sanitize_text(&format!("a{c}b")),
                format!("a\\u{{{:x}}}b", c as u32)
            );
        }
        for c in ['\u{61c}', '\u{2028}', '\u{2029}', '\u{2060}', '\u{feff}'] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        // Neighbours that are ordinary text stay.
        for c in [
            '\u{a0}', '\u{2010}', '\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}', 'é',
        ] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
        // Idempotent: what comes out goes through unchanged.
        let once = sanitize_text("\x1b[2J\u{9b}\u{200b}\u{2066}x\x07");
        assert_eq!(sanitize_text(&once), once);
        assert_eq!(once, "\\x1b[2J\\u{9b}\\u{200b}\\u{2066}x\\x07");
    }
}
