//! Offline mail that stays on disk until it is delivered: read at login without being
//! removed, and removed later, mail by mail, by id, once the server knows the client's TCP
//! acknowledged it (see `server::receipts`).
//!
//! Why by id and never by truncating: while a delivery is under way the mailbox can grow
//! (a message kept from a connection that died, a second login), so only the mails that were
//! delivered may go. Removal rewrites the mailbox to a temporary file, fsyncs it and renames
//! it over the old one, so a crash leaves the old or the new mailbox, never a mix; every line
//! that is not a delivered mail (a damaged record included) is copied byte for byte.
//!
//! What it does not do: decide when a mail is delivered (the connection knows), or repair a
//! damaged mailbox (`Store::open` does).

use super::{check_name, decode_mail, encode_mail, record, sync_dir, Mail, Store, StoreError};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Longest id accepted from a mailbox file (the server makes 16 hex digits).
const MAX_ID_LEN: usize = 32;

/// A fresh mail id: 16 hex digits from the thread's random generator, so ids are unique
/// across restarts without a counter on disk (a collision needs about 2^32 mails for one
/// user).
pub fn new_mail_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Whether `id` can be a mail id: 1 to 32 ASCII letters, digits or `-`, so it is one
/// argument on the wire whatever a hand-edited file holds.
pub fn is_mail_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// One line of a mailbox file as the rewrite sees it.
enum MailboxLine<'a> {
    /// An intact mail record.
    Mail(Mail),
    /// Anything else (a damaged record, an unknown tag): kept exactly as it was.
    Other(&'a [u8]),
}

/// The lines of a mailbox file, each with its LF (a final line without one is kept as is).
fn split_lines(bytes: &[u8]) -> Vec<MailboxLine<'_>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|raw| {
            let body = raw.strip_suffix(b"\n").unwrap_or(raw);
            // A mailbox saved by an editor with CRLF ends is still the same mail.
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            match record::decode_bytes(body)
                .ok()
                .and_then(|f| decode_mail(&f))
            {
                Some(mail) if raw.ends_with(b"\n") => MailboxLine::Mail(mail),
                _ => MailboxLine::Other(raw),
            }
        })
        .collect()
}

impl Store {
    /// Reads `user`'s mailbox and hands it to `on_read` while still holding the store's lock
    /// (so a message sent meanwhile is either in it or delivered live after it), without
    /// removing anything: the caller removes each mail once it is delivered
    /// ([`Store::remove_mail`]). A mail stored before ids existed (or whose id another mail
    /// has) is given one here, written back first, so a second delivery carries the same id.
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
        let mut lines = split_lines(&bytes);
        let mut ids = HashSet::new();
        let mut new_ids = false;
        for line in &mut lines {
            if let MailboxLine::Mail(mail) = line {
                // No id, or one another mail has (a copied line in a hand-edited file): one
                // delivery would remove both, and a client would drop the second as a repeat.
                if mail.id.is_empty() || !ids.insert(mail.id.clone()) {
                    mail.id = new_mail_id();
                    ids.insert(mail.id.clone());
                    new_ids = true;
                }
            }
        }
        if new_ids {
            rewrite(&path, &lines)?;
        }
        let mails: Vec<Mail> = lines
            .into_iter()
            .filter_map(|l| match l {
                MailboxLine::Mail(m) => Some(m),
                MailboxLine::Other(_) => None,
            })
            .collect();
        Ok(on_read(&mails))
    }

    /// Removes the mails with these ids from `user`'s mailbox (delivered ones), keeping every
    /// other line as it is; the file goes when nothing is left in it. Returns how many mails
    /// were removed. Ids no longer there (removed by another connection of the same user) are
    /// ignored.
    pub fn remove_mail(&self, user: &str, ids: &[String]) -> Result<usize, StoreError> {
        check_name(user)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inner = self.inner.lock();
        let path = self.mail_path(user);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                inner.mail_counts.remove(user);
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let delivered: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let lines = split_lines(&bytes);
        let before = lines.len();
        let kept: Vec<MailboxLine<'_>> = lines
            .into_iter()
            .filter(|l| !matches!(l, MailboxLine::Mail(m) if delivered.contains(m.id.as_str())))
            .collect();
        let removed = before - kept.len();
        if removed == 0 {
            return Ok(0);
        }
        let left = kept
            .iter()
            .filter(|l| matches!(l, MailboxLine::Mail(_)))
            .count();
        if kept.is_empty() {
            fs::remove_file(&path)?;
            if let Err(e) = sync_dir(&self.dir.join(super::MAIL_DIR)) {
                log::warn!(
                    "{}: directory fsync after removing delivered mail failed: {e}",
                    path.display()
                );
            }
        } else {
            rewrite(&path, &kept)?;
        }
        if left == 0 {
            inner.mail_counts.remove(user);
        } else {
            inner.mail_counts.insert(user.to_owned(), left);
        }
        Ok(removed)
    }
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
