//! Offline mail that stays on disk until it is delivered: read at login without being
//! removed, and removed later, by id, once the server knows the client's TCP acknowledged it
//! (see `server::receipts`).
//!
//! Why by id and never by truncating: while a delivery is under way the mailbox can grow
//! (a message kept from a connection that died, a second login), so only the mails that were
//! delivered may go. A removal appends a `delivered` record listing their ids (fsynced), so
//! a slow delivery costs writes in proportion to what was delivered, not a rewrite of the
//! whole mailbox each time; when every mail of the file is delivered the file goes. The next
//! read compacts: it rewrites the mailbox without the delivered mails and their records (to
//! a temporary file, fsynced, renamed over the old one: a crash leaves the old or the new
//! mailbox, never a mix), copying every other line (a damaged record included) byte for byte.
//!
//! What it does not do: decide when a mail is delivered (the connection knows), or repair a
//! damaged mailbox (`Store::open` does).

use super::files::{self, append_line, check_name, remove_leftover, sync_dir};
use super::mail::{decode_mail, encode_mail, is_mail_id, new_mail_id};
use super::{record, repair, Mail, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Tag of a record listing the ids of mails delivered since the mailbox was last rewritten.
const DELIVERED: &str = "delivered";

/// Most ids in one `delivered` record (a long delivery appends several).
const IDS_PER_RECORD: usize = 256;

/// One line of a mailbox file as the rewrite sees it.
enum MailboxLine<'a> {
    /// An intact mail record.
    Mail(Mail),
    /// A `delivered` record: these mails are gone.
    Delivered,
    /// Anything else (a damaged record, an unknown tag): kept exactly as it was.
    Other(&'a [u8]),
}

/// A mailbox file read: its lines, and the ids its `delivered` records list.
struct Parsed<'a> {
    lines: Vec<MailboxLine<'a>>,
    delivered: HashSet<String>,
}

impl Parsed<'_> {
    /// Whether the mail is still waiting (not listed as delivered).
    fn waiting(&self, line: &MailboxLine<'_>) -> bool {
        matches!(line, MailboxLine::Mail(m) if m.id.is_empty() || !self.delivered.contains(&m.id))
    }
}

/// The ids a `delivered` record lists, if `fields` is one.
fn delivered_ids(fields: &[String]) -> Option<impl Iterator<Item = &String>> {
    let (tag, ids) = fields.split_first()?;
    (tag == DELIVERED).then(|| ids.iter().filter(|id| is_mail_id(id)))
}

/// The lines of a mailbox file, each with its LF, read by the store's one line reader
/// ([`record::scan`]: CRLF, a byte-order mark, hand-typed records and an intact last line
/// without LF are what they are); blank lines are dropped, anything unreadable is kept raw.
fn parse(bytes: &[u8]) -> Parsed<'_> {
    let mut delivered = HashSet::new();
    let mut lines = Vec::new();
    for scanned in record::scan(bytes) {
        let raw = &bytes[scanned.start..scanned.end];
        let line = match scanned.read {
            None => continue,
            Some(Err(_)) => MailboxLine::Other(raw),
            Some(Ok(fields)) => {
                if let Some(ids) = delivered_ids(&fields) {
                    delivered.extend(ids.cloned());
                    MailboxLine::Delivered
                } else {
                    match decode_mail(&fields) {
                        Some(mail) => MailboxLine::Mail(mail),
                        None => MailboxLine::Other(raw),
                    }
                }
            }
        };
        lines.push(line);
    }
    Parsed { lines, delivered }
}

/// How many mails are waiting among a mailbox's intact records (`Store::open` counts each
/// mailbox with it).
pub(super) fn waiting_count(records: &[Vec<String>]) -> usize {
    let delivered: HashSet<&String> = records
        .iter()
        .filter_map(|f| delivered_ids(f))
        .flatten()
        .collect();
    records
        .iter()
        .filter_map(|f| decode_mail(f))
        .filter(|m| m.id.is_empty() || !delivered.contains(&m.id))
        .count()
}

/// Counts the mail waiting in each mailbox of `mail_dir` at open, repairing each file first
/// (see [`repair::load_and_repair`]) and removing rewrites a crash left unfinished.
pub(super) fn count_mailboxes(mail_dir: &Path) -> Result<HashMap<String, usize>, StoreError> {
    let mut mail_counts = HashMap::new();
    for entry in fs::read_dir(mail_dir).map_err(files::at(mail_dir))? {
        let path = entry.map_err(files::at(mail_dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".log.repair") || name.ends_with(".log.tmp") {
            remove_leftover(&path)?;
            continue;
        }
        let Some(user) = name.strip_suffix(".log") else {
            continue;
        };
        if !path.is_file() {
            log::warn!(
                "{}: not a regular file; mail for {user} cannot be stored until it is moved away",
                path.display()
            );
            continue;
        }
        // Every intact record stays: what a mailbox record means is the mailbox
        // reader's business (it skips what it does not know); only damage moves.
        if let Some(scan) = repair::load_and_repair(&path, |_| true)? {
            // Mails listed as delivered are not waiting (see `mailbox`).
            let waiting = waiting_count(&scan.records);
            if waiting > 0 {
                mail_counts.insert(user.to_owned(), waiting);
            }
        }
    }
    Ok(mail_counts)
}

impl Store {
    /// Reads `user`'s mailbox and hands it to `on_read` while still holding the store's lock
    /// (so a message sent meanwhile is either in it or delivered live after it), without
    /// removing anything: the caller removes each mail once it is delivered
    /// ([`Store::remove_mail`]). The file is compacted first if mails were delivered since it
    /// was last written; a mail stored before ids existed (or whose id another mail has) is
    /// given one, written back, so a second delivery carries the same id.
    pub fn read_mail_with<R>(
        &self,
        user: &str,
        on_read: impl FnOnce(&[Mail]) -> R,
    ) -> Result<R, StoreError> {
        check_name(user)?;
        let mut inner = self.inner.lock();
        if !inner.mail_counts.contains_key(user) {
            // No count, no mail: a login (the common case) touches no file.
            return Ok(on_read(&[]));
        }
        let path = self.mail_path(user);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                inner.mail_counts.remove(user);
                return Ok(on_read(&[]));
            }
            Err(e) => return Err(e.into()),
        };
        let parsed = parse(&bytes);
        let before = parsed.lines.len();
        let mut lines: Vec<MailboxLine<'_>> = Vec::with_capacity(before);
        let mut rewrite_needed = false;
        let mut ids = HashSet::new();
        for line in &parsed.lines {
            match line {
                MailboxLine::Mail(_) if !parsed.waiting(line) => rewrite_needed = true,
                MailboxLine::Delivered => rewrite_needed = true,
                MailboxLine::Mail(mail) => {
                    let mut mail = mail.clone();
                    // No id, or one another mail has (a copied line in a hand-edited file):
                    // one delivery would remove both, and a client would drop the second.
                    if mail.id.is_empty() || !ids.insert(mail.id.clone()) {
                        mail.id = new_mail_id();
                        ids.insert(mail.id.clone());
                        rewrite_needed = true;
                    }
                    lines.push(MailboxLine::Mail(mail));
                }
                MailboxLine::Other(raw) => lines.push(MailboxLine::Other(raw)),
            }
        }
        if rewrite_needed {
            if lines.is_empty() {
                remove_mailbox(&path)?;
            } else {
                rewrite(&path, &lines)?;
            }
            self.count_resized(&path, bytes.len());
        }
        let mails: Vec<Mail> = lines
            .into_iter()
            .filter_map(|l| match l {
                MailboxLine::Mail(m) => Some(m),
                _ => None,
            })
            .collect();
        if mails.is_empty() {
            inner.mail_counts.remove(user);
        } else {
            inner.mail_counts.insert(user.to_owned(), mails.len());
        }
        Ok(on_read(&mails))
    }

    /// Removes the mails with these ids from `user`'s mailbox (delivered ones): a `delivered`
    /// record listing them is appended and fsynced; when no mail is left waiting, the file
    /// goes instead (or keeps only its lines that are not mail). Returns how many mails were removed. Ids no longer there (removed by another
    /// connection of the same user) are ignored.
    pub fn remove_mail(&self, user: &str, ids: &[String]) -> Result<usize, StoreError> {
        self.remove_mail_with(user, || ids.to_vec())
    }

    /// [`Store::remove_mail`] of the ids `take` returns, called under the store's lock: ids
    /// taken from a connection are removed before any login can read the mailbox again.
    pub fn remove_mail_with(
        &self,
        user: &str,
        take: impl FnOnce() -> Vec<String>,
    ) -> Result<usize, StoreError> {
        check_name(user)?;
        let mut inner = self.inner.lock();
        let ids = take();
        if ids.is_empty() {
            return Ok(0);
        }
        let path = self.mail_path(user);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                inner.mail_counts.remove(user);
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let parsed = parse(&bytes);
        let waiting: HashSet<&str> = parsed
            .lines
            .iter()
            .filter(|l| parsed.waiting(l))
            .filter_map(|l| match l {
                MailboxLine::Mail(m) if !m.id.is_empty() => Some(m.id.as_str()),
                _ => None,
            })
            .collect();
        let removing: HashSet<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| waiting.contains(id))
            .collect();
        if removing.is_empty() {
            return Ok(0);
        }
        let removed = removing.len();
        let left = parsed.lines.iter().filter(|l| parsed.waiting(l)).count() - removed;
        let only_mail = parsed
            .lines
            .iter()
            .all(|l| !matches!(l, MailboxLine::Other(_)));
        if left == 0 && only_mail {
            remove_mailbox(&path)?;
        } else if left == 0 {
            // Only lines that are not mail are left (damaged ones): kept, alone.
            let others: Vec<MailboxLine<'_>> = parsed
                .lines
                .iter()
                .filter_map(|l| match l {
                    MailboxLine::Other(raw) => Some(MailboxLine::Other(raw)),
                    _ => None,
                })
                .collect();
            rewrite(&path, &others)?;
        } else {
            let mut removing: Vec<&str> = removing.into_iter().collect();
            removing.sort_unstable();
            let records: String = removing
                .chunks(IDS_PER_RECORD)
                .map(|chunk| {
                    let mut fields = vec![DELIVERED];
                    fields.extend_from_slice(chunk);
                    record::encode(&fields)
                })
                .collect();
            append_line(&path, &records, true)?;
        }
        self.count_resized(&path, bytes.len());
        if left == 0 {
            inner.mail_counts.remove(user);
        } else {
            inner.mail_counts.insert(user.to_owned(), left);
        }
        Ok(removed)
    }
}

impl Store {
    /// Tells the data directory's byte count (`max_data_bytes`) that the mailbox at `path`,
    /// `before` bytes long, was rewritten, appended to or removed.
    fn count_resized(&self, path: &Path, before: usize) {
        let after = fs::metadata(path).map_or(0, |m| m.len());
        self.usage.sub(before as u64);
        self.usage.add(after);
    }
}

/// Removes a mailbox whose every mail was delivered (and makes that durable).
fn remove_mailbox(path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        if let Err(e) = sync_dir(dir) {
            log::warn!(
                "{}: directory fsync after removing delivered mail failed: {e}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Replaces the mailbox at `path` with `lines`: written to a temporary file next to it,
/// fsynced, renamed over it, and the directory fsynced.
fn rewrite(path: &Path, lines: &[MailboxLine<'_>]) -> Result<(), StoreError> {
    let tmp = path.with_extension("log.tmp");
    let result = (|| {
        let mut file = io::BufWriter::new(File::create(&tmp)?);
        for line in lines {
            match line {
                MailboxLine::Mail(mail) => file.write_all(encode_mail(mail).as_bytes())?,
                MailboxLine::Other(raw) => file.write_all(raw)?,
                MailboxLine::Delivered => {}
            }
        }
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok::<(), io::Error>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("{}: could not rewrite mailbox: {e}", path.display()),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailKind;

    fn mail(text: &str) -> Mail {
        Mail {
            from: "alice".into(),
            sent_at: 1_700_000_000,
            kind: MailKind::Private,
            text: text.into(),
            id: new_mail_id(),
        }
    }

    fn read(store: &Store, user: &str) -> Vec<Mail> {
        store.read_mail_with(user, <[Mail]>::to_vec).unwrap()
    }

    #[test]
    fn reading_keeps_the_mail_and_removal_goes_by_id() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mails = [mail("one"), mail("two"), mail("three")];
        for m in &mails {
            store.deliver_or_store("bob", m, || false).unwrap();
        }
        assert_eq!(
            read(&store, "bob"),
            mails,
            "read twice, same mail, same ids"
        );
        assert_eq!(read(&store, "bob"), mails);

        // A mail arriving during the delivery is not touched by the removal.
        let late = mail("late");
        store.deliver_or_store("bob", &late, || false).unwrap();
        let ids = [mails[0].id.clone(), mails[2].id.clone(), "gone".into()];
        assert_eq!(store.remove_mail("bob", &ids).unwrap(), 2);
        assert_eq!(read(&store, "bob"), [mails[1].clone(), late.clone()]);
        assert_eq!(store.mailbox_len("bob"), 2);

        assert_eq!(
            store
                .remove_mail("bob", &[mails[1].id.clone(), late.id.clone()])
                .unwrap(),
            2
        );
        assert_eq!(store.mailbox_len("bob"), 0);
        assert!(!tmp.path().join("mail/bob.log").exists());
        assert_eq!(store.remove_mail("bob", &[late.id]).unwrap(), 0);
    }

    #[test]
    fn a_mail_stored_before_ids_gets_one_that_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        fs::create_dir_all(&dir).unwrap();
        let old = record::encode(&["mail", "carol", "1700000000", "private", "old one"]);
        fs::write(dir.join("bob.log"), format!("garbage line\n{old}")).unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let first = read(&store, "bob");
        assert_eq!(first.len(), 1);
        assert!(is_mail_id(&first[0].id));
        assert_eq!(read(&store, "bob"), first, "the id was written back");
        let file = fs::read_to_string(dir.join("bob.log")).unwrap();
        assert!(
            file.starts_with("garbage line\n"),
            "a damaged line is kept as it was: {file:?}"
        );
        store.remove_mail("bob", &[first[0].id.clone()]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("bob.log")).unwrap(),
            "garbage line\n",
            "never deleted with the mail around it"
        );
    }

    #[test]
    fn a_removal_appends_the_ids_and_the_next_read_compacts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mail/bob.log");
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mails: Vec<Mail> = (0..5).map(|i| mail(&format!("m{i}"))).collect();
        for m in &mails {
            store.deliver_or_store("bob", m, || false).unwrap();
        }
        let full = fs::read(&path).unwrap();
        let ids: Vec<String> = mails[..3].iter().map(|m| m.id.clone()).collect();
        assert_eq!(store.remove_mail("bob", &ids).unwrap(), 3);
        assert_eq!(store.remove_mail("bob", &ids).unwrap(), 0, "already gone");
        let after = fs::read(&path).unwrap();
        assert!(
            after.starts_with(&full),
            "appended, the mail itself untouched"
        );
        assert!(
            after.len() - full.len() < 100,
            "{} bytes appended",
            after.len() - full.len()
        );
        assert_eq!(store.mailbox_len("bob"), 2);

        // A restart counts what is still waiting.
        drop(store);
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        assert_eq!(read(&store, "bob"), mails[3..]);
        let compacted = fs::read_to_string(&path).unwrap();
        assert_eq!(compacted.lines().count(), 2, "{compacted}");
        assert!(!compacted.contains(DELIVERED));
    }

    #[test]
    fn a_copied_line_gets_an_id_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        store
            .deliver_or_store("bob", &mail("one"), || false)
            .unwrap();
        let path = tmp.path().join("mail/bob.log");
        let line = fs::read_to_string(&path).unwrap();
        fs::write(&path, line.repeat(2)).unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let both = read(&store, "bob");
        assert_eq!(both.len(), 2);
        assert_ne!(both[0].id, both[1].id);
        assert_eq!(read(&store, "bob"), both, "the new id was written back");
        store.remove_mail("bob", &[both[0].id.clone()]).unwrap();
        assert_eq!(read(&store, "bob"), [both[1].clone()]);
    }

    #[test]
    fn ids_from_a_hand_edited_file_are_checked() {
        assert!(is_mail_id(&new_mail_id()));
        assert!(is_mail_id("abc-123"));
        assert!(!is_mail_id(""));
        assert!(!is_mail_id("a b"));
        assert!(!is_mail_id("\x1b[31m"));
        assert!(!is_mail_id(&"a".repeat(33)));
    }
}
