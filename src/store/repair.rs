//! Loading a record file at open, and repairing it without ever deleting a byte.
//!
//! What a file holds after [`load_and_repair`]: the lines its reader understands, each
//! ending in LF (a missing final newline is added). Every other line (damaged, torn by a
//! crash, or a record this server cannot use) is *moved aside*: appended, exactly as it
//! was, to `<file>.rejected` next to it, fsynced there before the file is rewritten without
//! it (through a temporary file renamed over it), with a warning naming both paths. A
//! person can read the side file, fix a line and paste it back.
//!
//! The reading rules themselves (CRLF, byte-order mark, hand-written lines, torn tails)
//! are [`record`]'s; this module only decides what to keep and does the file work.

use super::files::{at, sync_dir};
use super::{record, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where the lines moved out of `path` go.
pub fn side_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rejected");
    PathBuf::from(name)
}

/// The temporary file a repaired `path` is written to before it replaces `path`.
pub fn repair_tmp(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".repair");
    PathBuf::from(name)
}

/// What [`load_and_repair`] kept of a file.
#[derive(Debug)]
pub struct Loaded {
    /// Every record kept, in file order.
    pub records: Vec<Vec<String>>,
}

/// Reads `path` whole and returns its records (those `understood` accepts), first moving
/// every other line aside (see the module doc). `None` if the file does not exist.
pub fn load_and_repair(
    path: &Path,
    understood: impl Fn(&[String]) -> bool,
) -> Result<Option<Loaded>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(at(path)(e)),
    };
    let lines = record::scan(&bytes);
    let mut records = Vec::new();
    let mut keep = Vec::with_capacity(bytes.len());
    let mut rejected = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut first_offset = None;
    let mut missing_newline = false;
    for line in &lines {
        let raw = &bytes[line.start..line.end];
        let outcome = match &line.read {
            None => Ok(None),
            Some(Ok(fields)) if understood(fields) => Ok(Some(fields)),
            Some(Ok(fields)) => Err(format!(
                "a {:?} record this server cannot use",
                fields.first().map_or("", String::as_str)
            )),
            Some(Err(e)) => Err(e.to_string()),
        };
        match outcome {
            Ok(fields) => {
                records.extend(fields.cloned());
                keep.extend_from_slice(raw);
                if !raw.ends_with(b"\n") {
                    keep.push(b'\n');
                    missing_newline = fields.is_some();
                }
            }
            Err(reason) => {
                first_offset.get_or_insert(line.start);
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
                rejected.extend_from_slice(raw);
                if !raw.ends_with(b"\n") {
                    rejected.push(b'\n');
                }
            }
        }
    }
    if let Some(offset) = first_offset {
        let side = side_path(path);
        append_durably(&side, &rejected).map_err(at(&side))?;
        replace_durably(path, &keep)?;
        log::warn!(
            "{}: moved {} line(s) it could not use ({}; the first at byte offset {offset}) to {}",
            path.display(),
            rejected.iter().filter(|&&b| b == b'\n').count(),
            reasons.join("; "),
            side.display()
        );
    } else if missing_newline {
        append_durably(path, b"\n").map_err(at(path))?;
        log::warn!(
            "{}: its last record had no final newline; added one",
            path.display()
        );
    }
    Ok(Some(Loaded { records }))
}

/// Appends `bytes` to `path` (created if missing) and fsyncs it.
fn append_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path`'s content with `bytes` through a fsynced temporary file renamed over
/// it, so a crash leaves the old file or the new one, never a mix.
fn replace_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = repair_tmp(path);
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(at(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(at(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(at(parent))?;
    }
    Ok(())
}

/// Offset of the last LF in the first `len` bytes of `file`, read backwards.
fn last_lf(file: &mut File, len: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut pos = len;
    let mut buf = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        buf.resize((pos - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        pos = start;
    }
    Ok(None)
}

/// Before appending to a log that is never read whole (history): if `path` does not end
/// with LF, its last line gets its LF when it is an intact record, and is otherwise (a torn
/// write) moved to the side file and cut off, so the next append starts a fresh line.
pub fn repair_tail(path: &Path) -> Result<(), StoreError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(path)(e)),
    };
    let len = file.metadata().map_err(at(path))?.len();
    let tail_start = match last_lf(&mut file, len).map_err(at(path))? {
        Some(i) if i + 1 == len => return Ok(()),
        Some(i) => i + 1,
        None if len == 0 => return Ok(()),
        None => 0,
    };
    let mut tail = vec![0u8; (len - tail_start) as usize];
    file.seek(SeekFrom::Start(tail_start))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(at(path))?;
    let lines = record::scan(&tail);
    if lines.iter().all(|l| matches!(l.read, None | Some(Ok(_)))) {
        file.seek(SeekFrom::End(0))
            .and_then(|_| file.write_all(b"\n"))
            .map_err(at(path))?;
        return Ok(());
    }
    let side = side_path(path);
    tail.push(b'\n');
    append_durably(&side, &tail).map_err(at(&side))?;
    file.set_len(tail_start).map_err(at(path))?;
    log::warn!(
        "{}: moved a torn last line of {} byte(s) at byte offset {tail_start} to {}",
        path.display(),
        len - tail_start,
        side.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_all(path: &Path) -> Vec<Vec<String>> {
        load_and_repair(path, |_| true).unwrap().unwrap().records
    }

    #[test]
    fn a_crlf_file_loads_whole_and_is_left_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        let text = format!("{}{}", record::encode(&["a"]), record::encode(&["b"]));
        let crlf = text.replace('\n', "\r\n");
        fs::write(&path, &crlf).unwrap();
        assert_eq!(load_all(&path), [["a"], ["b"]]);
        assert_eq!(fs::read_to_string(&path).unwrap(), crlf);
        assert!(!side_path(&path).exists());
    }

    #[test]
    fn a_missing_final_newline_keeps_the_record_and_gets_its_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        let text = format!("{}{}", record::encode(&["a"]), record::encode(&["b"]));
        fs::write(&path, text.trim_end()).unwrap();
        assert_eq!(load_all(&path), [["a"], ["b"]]);
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn bad_lines_go_to_the_side_file_in_order_and_the_rest_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        let (a, c) = (record::encode(&["a"]), record::encode(&["c"]));
        let bad = record::encode(&["bbbb"]).replacen("bbbb", "bxbb", 1);
        let unknown = record::encode(&["zzz"]);
        let torn = "half a rec";
        fs::write(&path, format!("{a}{bad}{c}{unknown}{torn}")).unwrap();
        let got = load_and_repair(&path, |f| f[0] != "zzz")
            .unwrap()
            .unwrap()
            .records;
        assert_eq!(got, [["a"], ["c"]]);
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{a}{c}"));
        assert_eq!(
            fs::read_to_string(side_path(&path)).unwrap(),
            format!("{bad}{unknown}{torn}\n")
        );
        assert!(!repair_tmp(&path).exists());
        // Loading again changes nothing more.
        assert_eq!(load_all(&path), [["a"], ["c"]]);
        assert_eq!(
            fs::read_to_string(side_path(&path))
                .unwrap()
                .lines()
                .count(),
            3
        );
    }

    #[test]
    fn a_directory_where_the_file_should_be_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.log");
        fs::create_dir(&path).unwrap();
        let e = load_and_repair(&path, |_| true).unwrap_err();
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }

    #[test]
    fn repair_tail_adds_a_newline_to_an_intact_record_and_moves_a_torn_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.log");
        let (a, b) = (record::encode(&["a"]), record::encode(&["b"]));
        fs::write(&path, format!("{a}{}", b.trim_end())).unwrap();
        repair_tail(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{a}{b}"));
        fs::write(&path, format!("{a}torn half")).unwrap();
        repair_tail(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), a);
        assert_eq!(fs::read_to_string(side_path(&path)).unwrap(), "torn half\n");
    }
}
