//! The on-disk record format shared by every file the store writes.
//!
//! One record is one line: its fields are escaped (`\` -> `\\`, TAB -> `\t`,
//! LF -> `\n`, CR -> `\r`) and joined with TAB, then a TAB and the CRC32
//! (IEEE) of everything before that TAB follows as 8 lowercase hex digits,
//! then LF. A reader can therefore tell a complete, intact record from a line
//! torn by a crash or damaged on disk, and recover by skipping it.
//!
//! Everything here is pure: no file I/O, no logging, no knowledge of what the
//! fields mean. It deliberately does not version records or describe their
//! fields (the first field is a tag by convention, interpreted by the caller),
//! and it does not try to repair a damaged record: a record is either intact
//! or skipped.

use std::fmt;

/// Lookup tables for the reflected IEEE polynomial, built at compile time: `CRC_TABLES[0]`
/// is the classic byte table, `CRC_TABLES[k]` advances a byte through `k` more zero bytes,
/// so eight bytes are folded in per step ("slicing-by-8", about 4x the byte-wise speed:
/// every history line and mail record is checksummed on the way to disk).
const CRC_TABLES: [[u32; 256]; 8] = make_crc_tables();

const fn make_crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
}

/// CRC32 (IEEE 802.3, the zlib/PNG one) of `bytes`; exposed so callers and
/// tests can build or check records by hand.
pub fn crc32(bytes: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut c = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for ch in &mut chunks {
        let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
        let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Why one line is not an intact record; lets callers log what they skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The line has no TAB-separated 8-digit lowercase hex checksum at its end
    /// (typically a torn write or an empty line).
    MissingChecksum,
    /// The checksum does not match the content (damaged or torn line).
    ChecksumMismatch {
        /// The checksum written in the line.
        stored: u32,
        /// The checksum of the content as read.
        computed: u32,
    },
    /// The checksum matched but a field holds an escape sequence this format
    /// never writes, so the line was not written by `encode`.
    BadEscape,
    /// The line is not valid UTF-8 (only reported by `scan`, which sees bytes).
    InvalidUtf8,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::MissingChecksum => write!(f, "record has no checksum"),
            RecordError::ChecksumMismatch { stored, computed } => write!(
                f,
                "record checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            RecordError::BadEscape => write!(f, "record has an invalid escape sequence"),
            RecordError::InvalidUtf8 => write!(f, "record is not valid utf-8"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Whether `b` must be escaped in a field.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'\\' | b'\t' | b'\n' | b'\r')
}

fn escape_into(out: &mut String, field: &str) {
    // The usual field has nothing to escape: checked without stopping early (which the
    // compiler turns into a few wide compares), then copied whole.
    if !field.bytes().fold(false, |any, b| any | needs_escape(b)) {
        out.push_str(field);
        return;
    }
    let mut rest = field;
    while let Some(i) = rest.bytes().position(needs_escape) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            _ => "\\r",
        });
        // An ASCII byte: the next one starts a character.
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn unescape(field: &str) -> Result<String, RecordError> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            _ => return Err(RecordError::BadEscape),
        }
    }
    Ok(out)
}

/// Encodes `fields` as one complete record line, trailing LF included, ready
/// to be appended to a file with a single write.
///
/// An empty slice encodes the same as `&[""]` (one empty field).
pub fn encode(fields: &[&str]) -> String {
    let mut out = String::with_capacity(fields.iter().map(|f| f.len() + 1).sum::<usize>() + 10);
    encode_into(&mut out, fields);
    out
}

/// [`encode`], appended to `out` (several records for one write, without a String each).
pub fn encode_into(out: &mut String, fields: &[&str]) {
    let start = out.len();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        escape_into(out, field);
    }
    let sum = crc32(&out.as_bytes()[start..]);
    // TAB, eight lowercase hex digits and LF, appended at once.
    let mut tail = *b"\t00000000\n";
    for (i, digit) in tail[1..9].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((sum >> (28 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII was written.
    out.push_str(std::str::from_utf8(&tail).unwrap_or_default());
}

/// Decodes one record line (without its LF) back into its fields, checking
/// the checksum first.
pub fn decode(line: &str) -> Result<Vec<String>, RecordError> {
    let (body, sum) = line.rsplit_once('\t').ok_or(RecordError::MissingChecksum)?;
    if sum.len() != 8 || !sum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RecordError::MissingChecksum);
    }
    let stored = u32::from_str_radix(sum, 16).map_err(|_| RecordError::MissingChecksum)?;
    let computed = crc32(body.as_bytes());
    if stored != computed {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    body.split('\t').map(unescape).collect()
}

/// Decodes one line given as raw bytes (without its LF).
pub fn decode_bytes(line: &[u8]) -> Result<Vec<String>, RecordError> {
    let text = std::str::from_utf8(line).map_err(|_| RecordError::InvalidUtf8)?;
    decode(text)
}

/// The result of reading a whole file's bytes as records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every intact record, in file order; this is what the file means.
    pub records: Vec<Vec<String>>,
    /// Byte offset just past the last intact record: the file should be
    /// truncated to this length so the next append starts on a clean line.
    pub good_len: usize,
    /// Bytes after `good_len` (a torn final write: bytes after the last LF,
    /// and/or final lines that fail to decode); 0 for a clean file.
    pub torn_len: usize,
    /// Damaged lines before `good_len` (followed by intact records), skipped
    /// and counted so the caller can warn about them.
    pub skipped: usize,
}

/// Splits a whole file's bytes into intact records, skipping damaged lines in
/// the middle and reporting a damaged or torn end as a tail to truncate.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut result = Scan::default();
    let mut pos = 0;
    let mut pending_bad = 0;
    while let Some(rel) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let next = pos + rel + 1;
        match decode_bytes(&bytes[pos..pos + rel]) {
            Ok(fields) => {
                result.records.push(fields);
                result.skipped += pending_bad;
                pending_bad = 0;
                result.good_len = next;
            }
            Err(_) => pending_bad += 1,
        }
        pos = next;
    }
    result.torn_len = bytes.len() - result.good_len;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    /// The byte-at-a-time CRC the sliced one must equal.
    fn crc32_bytewise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c = CRC_TABLES[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        !c
    }

    proptest::proptest! {
        #[test]
        fn sliced_crc32_equals_the_bytewise_one(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)
        ) {
            proptest::prop_assert_eq!(crc32(&bytes), crc32_bytewise(&bytes));
        }

        #[test]
        fn encode_into_appends_what_encode_returns(a in ".*", b in ".*") {
            let mut out = String::from("before\n");
            encode_into(&mut out, &[&a, &b]);
            proptest::prop_assert_eq!(out, format!("before\n{}", encode(&[&a, &b])));
        }
    }

    #[test]
    fn round_trip_awkward_fields() {
        let fields = [
            "plain",
            "",
            "tab\there",
            "line\nbreak\r\n",
            "back\\slash\\t not an escape",
            "ünïcødé ✓ 日本語 🦀",
            "\\",
            "",
        ];
        let line = encode(&fields);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let decoded = decode(line.strip_suffix('\n').unwrap()).unwrap();
        assert_eq!(decoded, fields);
    }

    #[test]
    fn checksum_is_lowercase_hex_of_body() {
        let line = encode(&["a", "b"]);
        let (body, sum) = line.trim_end_matches('\n').rsplit_once('\t').unwrap();
        assert_eq!(body, "a\tb");
        assert_eq!(sum, format!("{:08x}", crc32(b"a\tb")));
    }

    #[test]
    fn decode_rejects_damage() {
        let line = encode(&["hello", "world"]);
        let line = line.trim_end_matches('\n');
        let damaged = line.replacen("world", "worle", 1);
        assert!(matches!(
            decode(&damaged),
            Err(RecordError::ChecksumMismatch { .. })
        ));
        assert_eq!(decode("no checksum"), Err(RecordError::MissingChecksum));
        assert_eq!(decode(""), Err(RecordError::MissingChecksum));
        assert_eq!(
            decode(&line[..line.len() - 1]),
            Err(RecordError::MissingChecksum)
        );
        let body = "bad\\x";
        let forged = format!("{body}\t{:08x}", crc32(body.as_bytes()));
        assert_eq!(decode(&forged), Err(RecordError::BadEscape));
    }

    #[test]
    fn scan_clean_file() {
        let mut bytes = encode(&["one"]).into_bytes();
        bytes.extend(encode(&["two", "2"]).into_bytes());
        let s = scan(&bytes);
        assert_eq!(s.records, vec![vec!["one"], vec!["two", "2"]]);
        assert_eq!(s.good_len, bytes.len());
        assert_eq!(s.torn_len, 0);
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn scan_empty_file() {
        assert_eq!(scan(b""), Scan::default());
    }

    #[test]
    fn scan_torn_final_record_without_lf() {
        let good = encode(&["one"]);
        let torn = encode(&["two"]);
        let mut bytes = good.clone().into_bytes();
        bytes.extend_from_slice(&torn.as_bytes()[..torn.len() - 3]);
        let s = scan(&bytes);
        assert_eq!(s.records, vec![vec!["one"]]);
        assert_eq!(s.good_len, good.len());
        assert_eq!(s.torn_len, torn.len() - 3);
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn scan_torn_final_record_bad_checksum() {
        let good = encode(&["one"]);
        let bad = encode(&["two"]).replacen("two", "twx", 1);
        let bytes = format!("{good}{bad}").into_bytes();
        let s = scan(&bytes);
        assert_eq!(s.records, vec![vec!["one"]]);
        assert_eq!(s.good_len, good.len());
        assert_eq!(s.torn_len, bad.len());
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn scan_corrupted_middle_record_is_skipped() {
        let a = encode(&["a"]);
        let b = encode(&["bbbb"]).replacen("bbbb", "bxbb", 1);
        let c = encode(&["c"]);
        let mut bytes = format!("{a}{b}").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not utf8\n");
        bytes.extend_from_slice(c.as_bytes());
        let s = scan(&bytes);
        assert_eq!(s.records, vec![vec!["a"], vec!["c"]]);
        assert_eq!(s.skipped, 2);
        assert_eq!(s.good_len, bytes.len());
        assert_eq!(s.torn_len, 0);
    }

    #[test]
    fn scan_only_garbage() {
        let s = scan(b"garbage\nmore");
        assert!(s.records.is_empty());
        assert_eq!(s.good_len, 0);
        assert_eq!(s.torn_len, 12);
    }
}
