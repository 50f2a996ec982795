//! The on-disk record format shared by every file the store writes.
//!
//! One record is one line: its fields are escaped (`\` -> `\\`, TAB -> `\t`,
//! LF -> `\n`, CR -> `\r`) and joined with TAB, then a TAB and the CRC32
//! (IEEE) of everything before that TAB follows as 8 lowercase hex digits,
//! then LF. A reader can therefore tell a complete, intact record from a line
//! torn by a crash or damaged on disk.
//!
//! How a line is read (the files are plain text, and people open them in editors):
//! - a CR before the LF (a file saved with CRLF line ends) and a UTF-8 byte-order mark at
//!   the start of the file are not part of any record: the store never writes either, and
//!   a field's own CR is always escaped;
//! - a line ending in TAB and 8 lowercase hex digits is a *checked* record: intact when the
//!   checksum matches, damaged otherwise (a record edited by hand without removing its
//!   checksum reads as damaged too);
//! - any other line is a *hand-written* record: its TAB-separated fields are taken as they
//!   are (same escapes). A hand-written line whose last field is itself 8 hex digits needs
//!   one more TAB at its end (an empty last field, ignored by every reader);
//! - the last line of a file without its LF is a checked record if it is intact (a file
//!   saved without a final newline); anything else there is what a crash mid-append leaves,
//!   a torn write, never a hand-written record (a torn record could read as a shorter one);
//! - a blank line is no record, and harmless.
//!
//! Everything here is pure: no file I/O, no logging, no knowledge of what the
//! fields mean. It deliberately does not version records or describe their
//! fields (the first field is a tag by convention, interpreted by the caller),
//! and it does not repair anything: it says which bytes are which, and the store
//! decides (see `store::repair`).

use std::fmt;

/// CRC32 (IEEE 802.3, the zlib/PNG one) of `bytes`; exposed so callers and
/// tests can build or check records by hand.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Why one line is not an intact record; lets callers log what they skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The file's last line has no LF and is not an intact checked record: a write cut
    /// short by a crash (or power loss).
    Torn,
    /// The checksum does not match the content (damaged or torn line).
    ChecksumMismatch {
        /// The checksum written in the line.
        stored: u32,
        /// The checksum of the content as read.
        computed: u32,
    },
    /// A field holds an escape sequence this format never writes.
    BadEscape,
    /// The line is not valid UTF-8 (only reported by `scan`, which sees bytes).
    InvalidUtf8,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Torn => write!(f, "record was cut short (no newline, no intact checksum)"),
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

/// Whether a record carried its checksum or was typed by hand (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Ended in an intact checksum: written by [`encode`].
    Checked,
    /// No checksum: a line typed by hand.
    HandWritten,
}

/// The checksum at the end of `line` (after its last TAB), if it has one.
fn checksum_of(line: &str) -> Option<(&str, u32)> {
    let (body, sum) = line.rsplit_once('\t')?;
    if sum.len() != 8 || !sum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((body, u32::from_str_radix(sum, 16).ok()?))
}

/// Reads one line (without its LF; a CR before it is ignored) as a record: its fields and
/// whether it was checked or hand-written.
pub fn read_line(line: &str) -> Result<(Vec<String>, Origin), RecordError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (body, origin) = match checksum_of(line) {
        Some((body, stored)) => {
            let computed = crc32(body.as_bytes());
            if stored != computed {
                return Err(RecordError::ChecksumMismatch { stored, computed });
            }
            (body, Origin::Checked)
        }
        None => (line, Origin::HandWritten),
    };
    let fields = body.split('\t').map(unescape).collect::<Result<_, _>>()?;
    Ok((fields, origin))
}

/// Decodes one record line (without its LF) back into its fields: a checked record whose
/// checksum matches, or a hand-written one.
pub fn decode(line: &str) -> Result<Vec<String>, RecordError> {
    read_line(line).map(|(fields, _)| fields)
}

/// Decodes one line given as raw bytes (without its LF).
pub fn decode_bytes(line: &[u8]) -> Result<Vec<String>, RecordError> {
    let text = std::str::from_utf8(line).map_err(|_| RecordError::InvalidUtf8)?;
    decode(text)
}

/// One line of a file as [`scan`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedLine {
    /// Where the line starts in the file.
    pub start: usize,
    /// Just past its LF (or the end of the file, for a last line without one).
    pub end: usize,
    /// Its fields, or why it is not a record. `None` for a blank line (no record, no harm).
    pub read: Option<Result<Vec<String>, RecordError>>,
}

impl ScannedLine {
    /// Whether the line ends with its LF.
    pub fn terminated(&self, bytes: &[u8]) -> bool {
        bytes[..self.end].ends_with(b"\n")
    }
}

/// The UTF-8 byte-order mark some editors put at the start of a text file.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Splits a whole file's bytes into lines and reads each (see the module doc for the
/// rules). Every byte of the file is in exactly one line, except a leading byte-order mark.
pub fn scan(bytes: &[u8]) -> Vec<ScannedLine> {
    let mut lines = Vec::new();
    let mut pos = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    while pos < bytes.len() {
        let (content_end, end) = match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(rel) => (pos + rel, pos + rel + 1),
            None => (bytes.len(), bytes.len()),
        };
        let content = &bytes[pos..content_end];
        let read = if content.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let read = std::str::from_utf8(content)
                .map_err(|_| RecordError::InvalidUtf8)
                .and_then(read_line);
            let torn = end == content_end && !matches!(read, Ok((_, Origin::Checked)));
            Some(match read {
                _ if torn => Err(RecordError::Torn),
                Ok((fields, _)) => Ok(fields),
                Err(e) => Err(e),
            })
        };
        lines.push(ScannedLine {
            start: pos,
            end,
            read,
        });
        pos = end;
    }
    lines
}

/// The records of a scan, in file order (what a reader that repairs nothing uses).
pub fn records(lines: &[ScannedLine]) -> impl Iterator<Item = &Vec<String>> {
    lines
        .iter()
        .filter_map(|l| l.read.as_ref().and_then(|r| r.as_ref().ok()))
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

    /// CRC-32/IEEE by its definition, a bit at a time (reflected polynomial 0xEDB88320,
    /// initial value and final XOR all ones): what every record on disk was checksummed with.
    fn crc32_by_definition(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn records_written_before_crc32fast_keep_their_checksums() {
        // Lines the store wrote with its own table-driven CRC32, before the crate.
        let written: [(&[&str], &str); 4] = [
            (
                &["mail", "alice", "1700000000", "private", "hi\tthere\nbob ✓", "0123456789abcdef"],
                "mail\talice\t1700000000\tprivate\thi\\tthere\\nbob ✓\t0123456789abcdef\tb0e38e0b\n",
            ),
            (
                &["hist", "1700000001", "7", "bob", "a longer line of history, said in a classroom"],
                "hist\t1700000001\t7\tbob\ta longer line of history, said in a classroom\tbe909666\n",
            ),
            (&["seen", "carol", "1700000002"], "seen\tcarol\t1700000002\tc591e387\n"),
            (&["gcreate", "g1", "al"], "gcreate\tg1\tal\t7b8d40fe\n"),
        ];
        for (fields, line) in written {
            assert_eq!(encode(fields), line);
            assert_eq!(
                read_line(line.trim_end_matches('\n')).unwrap(),
                (
                    fields.iter().map(|f| f.to_string()).collect(),
                    Origin::Checked
                )
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn crc32_is_crc32_ieee_by_its_definition(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)
        ) {
            proptest::prop_assert_eq!(crc32(&bytes), crc32_by_definition(&bytes));
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
        let body = "bad\\x";
        let forged = format!("{body}\t{:08x}", crc32(body.as_bytes()));
        assert_eq!(decode(&forged), Err(RecordError::BadEscape));
    }

    #[test]
    fn a_line_without_a_checksum_is_hand_written() {
        assert_eq!(
            read_line("intro\talice\thi there"),
            Ok((
                vec!["intro".into(), "alice".into(), "hi there".into()],
                Origin::HandWritten
            ))
        );
        // A last field that looks like a checksum needs a TAB after it.
        assert!(decode("gjoin\tcs101\tabcdef12").is_err());
        assert_eq!(
            decode("gjoin\tcs101\tabcdef12\t").unwrap(),
            ["gjoin", "cs101", "abcdef12", ""]
        );
        assert_eq!(decode("one field").unwrap(), ["one field"]);
    }

    #[test]
    fn a_cr_before_the_lf_is_no_part_of_the_record() {
        let line = encode(&["a", "b"]);
        let crlf = format!("{}\r", line.trim_end_matches('\n'));
        assert_eq!(
            read_line(&crlf).unwrap(),
            (vec!["a".into(), "b".into()], Origin::Checked)
        );
        assert_eq!(decode("seen\tbob\t3\r").unwrap(), ["seen", "bob", "3"]);
    }

    fn reads(bytes: &[u8]) -> Vec<Option<Result<Vec<String>, RecordError>>> {
        scan(bytes).into_iter().map(|l| l.read).collect()
    }

    #[test]
    fn scan_clean_file() {
        let mut bytes = encode(&["one"]).into_bytes();
        bytes.extend(encode(&["two", "2"]).into_bytes());
        let lines = scan(&bytes);
        assert_eq!(
            records(&lines).collect::<Vec<_>>(),
            [
                &vec!["one".to_string()],
                &vec!["two".to_string(), "2".to_string()]
            ]
        );
        assert_eq!(lines[1].end, bytes.len());
        assert!(lines.iter().all(|l| l.terminated(&bytes)));
    }

    #[test]
    fn scan_empty_file() {
        assert_eq!(scan(b""), Vec::new());
        assert_eq!(scan(BOM), Vec::new());
    }

    #[test]
    fn scan_reads_a_crlf_file_with_a_bom_whole() {
        let lf = format!("{}{}", encode(&["one"]), encode(&["two", "2"]));
        let crlf = format!("\u{feff}{}", lf.replace('\n', "\r\n"));
        let lines = scan(crlf.as_bytes());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].start, 3);
        assert_eq!(records(&lines).count(), 2);
    }

    #[test]
    fn scan_keeps_an_intact_last_record_without_its_newline() {
        let bytes = format!("{}{}", encode(&["one"]), encode(&["two"]).trim_end());
        let lines = scan(bytes.as_bytes());
        assert_eq!(records(&lines).count(), 2);
        assert!(!lines[1].terminated(bytes.as_bytes()));
    }

    #[test]
    fn scan_torn_final_record_without_lf() {
        let good = encode(&["one"]);
        let torn = encode(&["two"]);
        let mut bytes = good.clone().into_bytes();
        bytes.extend_from_slice(&torn.as_bytes()[..torn.len() - 3]);
        let lines = scan(&bytes);
        assert_eq!(lines[1].read, Some(Err(RecordError::Torn)));
        assert_eq!((lines[1].start, lines[1].end), (good.len(), bytes.len()));
        // Even a torn piece that would read as a hand-written record is a torn write.
        assert_eq!(reads(b"intro\tbob\tha"), [Some(Err(RecordError::Torn))]);
    }

    #[test]
    fn scan_damaged_lines_anywhere_and_blank_lines() {
        let a = encode(&["a"]);
        let b = encode(&["bbbb"]).replacen("bbbb", "bxbb", 1);
        let c = encode(&["c"]);
        let mut bytes = format!("{a}\n{b}").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not utf8\n");
        bytes.extend_from_slice(c.as_bytes());
        let got = reads(&bytes);
        assert_eq!(got.len(), 5);
        assert_eq!(got[1], None);
        assert!(matches!(
            got[2],
            Some(Err(RecordError::ChecksumMismatch { .. }))
        ));
        assert_eq!(got[3], Some(Err(RecordError::InvalidUtf8)));
        assert_eq!(records(&scan(&bytes)).count(), 2);
    }
}
