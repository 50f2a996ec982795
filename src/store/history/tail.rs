//! Reading the last entries of a conversation log: backwards from the end, a chunk at a
//! time, so a long log is never read whole. A torn final line is ignored, damaged lines
//! are skipped with a warning.
//!
//! What it does not do: repair the file (the first append in this process does, see
//! `Store::lock_history`).

use super::decode_history;
use super::HistoryEntry;
use crate::store::files::check_name;
use crate::store::{record, Store, StoreError};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

/// How much of a history file is read per step when reading it backwards.
const TAIL_CHUNK: u64 = 64 * 1024;

impl Store {
    /// Last `n` good entries of the a/b log, oldest first; missing file ->
    /// empty Vec. Reads backwards from the end in chunks until `n` records are
    /// found, so a large log is never read whole. A torn final line is
    /// ignored; damaged lines are skipped.
    pub fn history_tail(
        &self,
        a: &str,
        b: &str,
        n: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        check_name(a)?;
        check_name(b)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let path = self.history_path(a, b);
        // A writer that locked this log (see `lock_history`) may have delivered its
        // messages already and be about to write them: wait for it, so whoever has seen a
        // message finds it in the history. (Not under the map lock: that writer may need
        // it for another log.)
        let writer = self
            .history
            .lock()
            .open
            .get(&path)
            .map(|(f, _)| Arc::clone(f));
        if let Some(writer) = writer {
            drop(writer.lock());
        }
        // Held so no tail repair truncates the file mid-read. Appends may run
        // meanwhile: they only add past the length read below, and a half-written
        // last line is ignored like a torn one.
        let _guard = self.history.lock();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut pos = file.metadata()?.len();
        // Bytes [pos, pos + acc.len()) not yet consumed. Once `found_end`,
        // `acc` always ends with the LF of a complete, unparsed line.
        let mut acc: Vec<u8> = Vec::new();
        let mut found_end = false;
        let mut newest_first = Vec::new();
        let mut skipped = 0usize;
        let mut take = |line: &[u8], out: &mut Vec<HistoryEntry>| match record::decode_bytes(line)
            .ok()
            .and_then(|f| decode_history(&f))
        {
            Some(entry) => out.push(entry),
            None => skipped += 1,
        };
        // The last line without its LF: a record if intact (a file saved without a final
        // newline), else a torn write or one being appended right now, ignored.
        let take_unterminated = |tail: &[u8], out: &mut Vec<HistoryEntry>| {
            let lines = record::scan(tail);
            let entry = record::records(&lines).find_map(|f| decode_history(f));
            out.extend(entry);
        };
        while newest_first.len() < n {
            if !found_end {
                if let Some(i) = acc.iter().rposition(|&b| b == b'\n') {
                    take_unterminated(&acc[i + 1..], &mut newest_first);
                    acc.truncate(i + 1);
                    found_end = true;
                    continue;
                }
                if pos == 0 {
                    take_unterminated(&acc, &mut newest_first);
                    break;
                }
            } else {
                let body = &acc[..acc.len() - 1];
                if let Some(i) = body.iter().rposition(|&b| b == b'\n') {
                    take(&body[i + 1..], &mut newest_first);
                    acc.truncate(i + 1);
                    continue;
                }
                if pos == 0 {
                    take(body, &mut newest_first);
                    break;
                }
            }
            if pos == 0 {
                break;
            }
            let start = pos.saturating_sub(TAIL_CHUNK);
            let mut chunk = vec![0u8; (pos - start) as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&acc);
            acc = chunk;
            pos = start;
        }
        if skipped > 0 {
            log::warn!(
                "{}: skipped {skipped} damaged history record(s)",
                path.display()
            );
        }
        newest_first.reverse();
        Ok(newest_first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::encode_history;
    use crate::store::test_support::{append_raw, capture_logs, entry, my_warnings};
    use std::fs;
    use std::io::{BufWriter, Write};

    #[test]
    fn a_history_read_waits_for_a_writer_that_locked_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let store = Arc::new(store);
        store
            .append_history("alice", "bob", &entry(1, "one"))
            .unwrap();
        // Locked, message delivered, not yet written: a reader who saw it must find it.
        let mut log = store.lock_history("alice", "bob").unwrap();
        let reader = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.history_tail("bob", "alice", 1))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        log.append(&[entry(2, "two").borrowed()]).unwrap();
        drop(log);
        let tail = reader.join().unwrap().unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].text, "two");
    }

    #[test]
    fn history_tail_small_and_large_n() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let all: Vec<_> = (0..20).map(|i| entry(i, &format!("msg {i}"))).collect();
        for e in &all {
            store.append_history("alice", "bob", e).unwrap();
        }
        assert_eq!(store.history_tail("bob", "alice", 5).unwrap(), all[15..]);
        assert_eq!(store.history_tail("alice", "bob", 20).unwrap(), all);
        assert_eq!(store.history_tail("alice", "bob", 100).unwrap(), all);
        assert!(store.history_tail("alice", "bob", 0).unwrap().is_empty());
    }

    #[test]
    fn history_tail_on_5mb_log_reads_backwards() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let path = tmp.path().join("history/alice+bob.log");
        let mut count = 0u64;
        {
            let mut out = BufWriter::new(File::create(&path).unwrap());
            let mut written = 0usize;
            while written < 5 * 1024 * 1024 {
                let line = encode_history(&entry(
                    count,
                    &format!("message number {count} {}", "x".repeat(40)),
                ));
                written += line.len();
                out.write_all(line.as_bytes()).unwrap();
                count += 1;
            }
            // A few lines longer than one read chunk, spanning chunk borders.
            for i in 0..3 {
                let big = "y".repeat(TAIL_CHUNK as usize + 1000 * i);
                out.write_all(encode_history(&entry(count, &big)).as_bytes())
                    .unwrap();
                count += 1;
            }
        }
        let last = entry(count, "the end");
        store.append_history("alice", "bob", &last).unwrap();
        count += 1;

        let tail = store.history_tail("alice", "bob", 5).unwrap();
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[4], last);
        assert_eq!(tail[3].text.len(), TAIL_CHUNK as usize + 2000);
        assert_eq!(tail[0].at, 1_700_000_000 + count - 5);

        let every = store.history_tail("alice", "bob", usize::MAX).unwrap();
        assert_eq!(every.len() as u64, count);
        assert!(every.windows(2).all(|w| w[0].at + 1 == w[1].at));
        assert_eq!(
            every[0],
            entry(0, &format!("message number 0 {}", "x".repeat(40)))
        );
    }

    #[test]
    fn history_torn_tail_is_ignored_then_repaired() {
        capture_logs();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("history/alice+bob.log");
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store
                .append_history("alice", "bob", &entry(1, "a"))
                .unwrap();
            store
                .append_history("alice", "bob", &entry(2, "b"))
                .unwrap();
        }
        let good_len = fs::metadata(&path).unwrap().len();
        append_raw(&path, b"torn half of a rec");
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(
            store.history_tail("alice", "bob", 10).unwrap(),
            vec![entry(1, "a"), entry(2, "b")]
        );
        store
            .append_history("bob", "alice", &entry(3, "c"))
            .unwrap();
        assert!(
            my_warnings()
                .iter()
                .any(|w| w.contains("alice+bob.log")
                    && w.contains(&format!("byte offset {good_len}")))
        );
        assert_eq!(
            store.history_tail("alice", "bob", 10).unwrap(),
            vec![entry(1, "a"), entry(2, "b"), entry(3, "c")]
        );
    }

    #[test]
    fn history_empty_or_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert!(store.history_tail("alice", "bob", 10).unwrap().is_empty());
        File::create(tmp.path().join("history/alice+bob.log")).unwrap();
        assert!(store.history_tail("alice", "bob", 10).unwrap().is_empty());
        fs::write(tmp.path().join("history/alice+carol.log"), b"no newline").unwrap();
        assert!(store.history_tail("alice", "carol", 10).unwrap().is_empty());
    }
}
