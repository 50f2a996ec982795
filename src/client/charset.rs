//! The terminal's character encoding (`--encoding`, or the locale's): the wire is UTF-8
//! always, so typed bytes are decoded from the terminal's charset and shown text is encoded
//! into it. Seed 003's client asked for the encoding; lanchat keeps the wire fixed so that
//! users with different terminals can still read each other.
//!
//! Pure functions of their inputs; [`Charset::detect`] alone reads the environment.

use encoding_rs::{EncoderResult, Encoding, UTF_8};
use std::fmt;

/// A terminal encoding that can be both decoded and encoded (not UTF-16, whose bytes
/// include line feeds and NULs in the middle of characters).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Charset(&'static Encoding);

impl fmt::Debug for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for Charset {
    fn default() -> Charset {
        Charset::UTF8
    }
}

impl Charset {
    /// UTF-8: bytes pass through.
    pub const UTF8: Charset = Charset(UTF_8);

    /// The charset called `name` (any WHATWG label: `utf-8`, `latin1`, `iso-8859-15`,
    /// `windows-1251`, `koi8-r`, `shift_jis`, `gbk`, ...). `latin1` and `iso-8859-1` mean
    /// windows-1252, its superset.
    pub fn for_name(name: &str) -> Result<Charset, String> {
        let encoding = Encoding::for_label(name.trim().as_bytes()).ok_or_else(|| {
            format!(
                "unknown encoding `{name}` (try utf-8, latin1, iso-8859-15, windows-1251, \
                 koi8-r, shift_jis, gbk)"
            )
        })?;
        // UTF-16 and `replacement` encode as UTF-8 (their output encoding): not usable.
        if encoding.output_encoding() != encoding {
            return Err(format!(
                "`{name}` ({}) cannot be a terminal encoding",
                encoding.name()
            ));
        }
        Ok(Charset(encoding))
    }

    /// The charset named by the locale variables, looked at in the C library's order
    /// (`LC_ALL`, then `LC_CTYPE`, then `LANG`; the first that is set and not empty
    /// decides): the part after `.` of e.g. `de_DE.ISO-8859-1@euro`. `None` when that
    /// locale names no charset or one this client does not know.
    pub fn from_locale(
        lc_all: Option<&str>,
        lc_ctype: Option<&str>,
        lang: Option<&str>,
    ) -> Option<Charset> {
        let locale = [lc_all, lc_ctype, lang]
            .into_iter()
            .flatten()
            .find(|v| !v.is_empty())?;
        let codeset = locale.split_once('.')?.1;
        let codeset = codeset.split('@').next()?;
        // glibc's spellings that are not WHATWG labels.
        let codeset = match codeset.to_ascii_lowercase().as_str() {
            "eucjp" => "euc-jp",
            "euckr" => "euc-kr",
            "sjis" => "shift_jis",
            _ => codeset,
        };
        Charset::for_name(codeset).ok()
    }

    /// From the environment: the locale's charset, else UTF-8.
    pub fn detect() -> Charset {
        let var = |k| std::env::var(k).ok();
        let (all, ctype, lang) = (var("LC_ALL"), var("LC_CTYPE"), var("LANG"));
        Charset::from_locale(all.as_deref(), ctype.as_deref(), lang.as_deref())
            .unwrap_or(Charset::UTF8)
    }

    /// The charset's canonical name, e.g. `windows-1252`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Whether this is UTF-8 (no conversion at all).
    pub fn is_utf8(self) -> bool {
        self.0 == UTF_8
    }

    /// Text from bytes typed in this charset; malformed bytes become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> String {
        if self.is_utf8() {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        self.0.decode_without_bom_handling(bytes).0.into_owned()
    }

    /// `text` in this charset; characters it cannot represent become `?`.
    pub fn encode(self, text: &str) -> Vec<u8> {
        if self.is_utf8() {
            return text.as_bytes().to_vec();
        }
        let mut encoder = self.0.new_encoder();
        let mut out = Vec::with_capacity(text.len() + 16);
        let mut rest = text;
        loop {
            let room = encoder
                .max_buffer_length_from_utf8_without_replacement(rest.len())
                .unwrap_or(rest.len() * 4 + 16);
            out.reserve(room);
            let (result, read) =
                encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
            rest = &rest[read..];
            match result {
                EncoderResult::InputEmpty => return out,
                EncoderResult::OutputFull => {}
                EncoderResult::Unmappable(_) => out.push(b'?'),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latin1() -> Charset {
        Charset::for_name("latin1").unwrap()
    }

    #[test]
    fn names_resolve_and_unusable_ones_are_refused() {
        assert_eq!(latin1().name(), "windows-1252");
        assert_eq!(Charset::for_name("ISO-8859-1").unwrap(), latin1());
        assert_eq!(Charset::for_name("utf8").unwrap(), Charset::UTF8);
        assert_eq!(
            Charset::for_name("ISO-8859-15").unwrap().name(),
            "ISO-8859-15"
        );
        assert!(Charset::for_name("klingon")
            .unwrap_err()
            .contains("klingon"));
        assert!(Charset::for_name("utf-16le").is_err());
        assert!(Charset::for_name("iso-2022-kr").is_err());
    }

    #[test]
    fn latin1_round_trips_and_unmappable_becomes_a_question_mark() {
        let l = latin1();
        assert_eq!(l.decode(b"caf\xe9"), "café");
        assert_eq!(l.encode("naïve"), b"na\xefve");
        assert_eq!(l.encode("€5"), b"\x805");
        assert_eq!(l.encode("日本 ok"), b"?? ok");
        assert_eq!(l.encode("a😀b"), b"a?b");
        assert_eq!(l.encode(""), b"");
        let cyrillic = Charset::for_name("koi8-r").unwrap();
        assert_eq!(cyrillic.decode(&cyrillic.encode("привет")), "привет");
    }

    #[test]
    fn utf8_passes_through_and_bad_bytes_are_replaced() {
        assert_eq!(Charset::UTF8.encode("naïve"), "naïve".as_bytes());
        assert_eq!(Charset::UTF8.decode("café".as_bytes()), "café");
        assert_eq!(Charset::UTF8.decode(b"caf\xe9"), "caf\u{fffd}");
    }

    #[test]
    fn the_locale_names_the_charset() {
        let pick = |all, ctype, lang| Charset::from_locale(all, ctype, lang).map(Charset::name);
        assert_eq!(
            pick(None, None, Some("de_DE.ISO-8859-1")),
            Some("windows-1252")
        );
        assert_eq!(
            pick(None, None, Some("de_DE.ISO-8859-15@euro")),
            Some("ISO-8859-15")
        );
        assert_eq!(pick(None, None, Some("en_US.UTF-8")), Some("UTF-8"));
        assert_eq!(
            pick(Some("ru_RU.KOI8-R"), None, Some("en_US.UTF-8")),
            Some("KOI8-R")
        );
        assert_eq!(pick(Some(""), Some("ja_JP.eucJP"), None), Some("EUC-JP"));
        assert_eq!(pick(None, None, Some("C")), None);
        assert_eq!(pick(None, None, Some("xx_XX.nonsense")), None);
        assert_eq!(pick(None, None, None), None);
    }
}
