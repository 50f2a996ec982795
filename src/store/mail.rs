//! What a stored message is ([`Mail`]), its record in a mailbox file, and putting one in
//! an offline user's mailbox (`mail/<user>.log`). The mail is fsynced (file data, plus the
//! directory when the file is new) before [`Store::deliver_or_store`] returns, so a message
//! the server acknowledged survives a crash or power loss.
//!
//! What it does not do: read or remove delivered mail (`mailbox`), or decide who gets what
//! (the chat rules do).

use super::files::{self, append_line, check_name};
use super::{record, Store, StoreError, MAIL_DIR};
use std::path::PathBuf;

/// How a stored message was addressed, so it can be shown the same way when
/// it is delivered later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// A direct message to the recipient.
    Private,
    /// A message sent to everyone.
    Broadcast,
    /// A message sent to the named group.
    Group(String),
}

/// One message waiting in an offline user's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Username of the sender.
    pub from: String,
    /// When it was sent (unix seconds), shown on delivery.
    pub sent_at: u64,
    /// How it was addressed.
    pub kind: MailKind,
    /// The message text.
    pub text: String,
    /// Stable identity, kept with the mail on disk: a mail delivered again (its first delivery
    /// was never acknowledged by the client's TCP) carries the same id, so clients can drop
    /// the repeat. Empty only for a record written before ids existed (see `mailbox`).
    pub id: String,
}

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

pub(super) fn encode_mail(mail: &Mail) -> String {
    let kind = match &mail.kind {
        MailKind::Private => "private".to_owned(),
        MailKind::Broadcast => "broadcast".to_owned(),
        MailKind::Group(g) => format!("group:{g}"),
    };
    record::encode(&[
        "mail",
        &mail.from,
        &mail.sent_at.to_string(),
        &kind,
        &mail.text,
        &mail.id,
    ])
}

pub(super) fn decode_mail(f: &[String]) -> Option<Mail> {
    match f {
        [tag, from, sent_at, kind, text, rest @ ..] if tag == "mail" => Some(Mail {
            from: from.clone(),
            sent_at: sent_at.parse().ok()?,
            kind: match kind.as_str() {
                "private" => MailKind::Private,
                "broadcast" => MailKind::Broadcast,
                k => MailKind::Group(k.strip_prefix("group:")?.to_owned()),
            },
            text: text.clone(),
            // A record from before ids (or a hand-edited one) gets an id when it is read for
            // delivery (`Store::read_mail_with`).
            id: rest
                .first()
                .filter(|id| is_mail_id(id))
                .cloned()
                .unwrap_or_default(),
        }),
        _ => None,
    }
}

impl Store {
    pub(super) fn mail_path(&self, user: &str) -> PathBuf {
        self.dir.join(MAIL_DIR).join(format!("{user}.log"))
    }

    /// Under the store's lock: calls `deliver_online()`; if it returns true,
    /// nothing is stored and Ok(false) is returned. Otherwise appends `mail`
    /// to `to`'s mailbox and fsyncs (file data) before returning Ok(true). If
    /// the mailbox already holds `mailbox_limit` messages, returns
    /// Err(MailboxFull) and stores nothing. This closure-under-lock shape
    /// exists so a login racing with a send can never strand a message:
    /// `read_mail_with` takes the same lock.
    pub fn deliver_or_store(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_inner(to, mail, deliver_online, true)
    }

    /// [`Store::deliver_or_store`] for a message that was already acknowledged to its sender
    /// (taken back from a connection that died): the mailbox limit does not apply, because
    /// refusing now would lose it.
    pub fn requeue(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_inner(to, mail, deliver_online, false)
    }

    fn deliver_or_store_inner(
        &self,
        to: &str,
        mail: &Mail,
        deliver_online: impl FnOnce() -> bool,
        enforce_limit: bool,
    ) -> Result<bool, StoreError> {
        check_name(to)?;
        let mut inner = self.inner.lock();
        if deliver_online() {
            return Ok(false);
        }
        let count = inner.mail_counts.get(to).copied().unwrap_or(0);
        if enforce_limit && count >= inner.mailbox_limit {
            return Err(StoreError::MailboxFull {
                user: to.to_owned(),
                limit: inner.mailbox_limit,
            });
        }
        let line = encode_mail(mail);
        let len = line.len() as u64;
        if !enforce_limit {
            self.usage.add(len);
        } else if !self.usage.reserve(len) {
            return Err(StoreError::StorageFull {
                limit: self.usage.limit(),
            });
        }
        let path = self.mail_path(to);
        if let Err(e) = append_line(&path, &line, true) {
            self.usage.sub(len);
            return Err(files::at(&path)(e));
        }
        inner.mail_counts.insert(to.to_owned(), count + 1);
        Ok(true)
    }

    /// Number of messages waiting for `user`.
    pub fn mailbox_len(&self, user: &str) -> usize {
        self.inner
            .lock()
            .mail_counts
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{append_raw, capture_logs, mail, my_warnings};
    use std::fs;

    #[test]
    fn mail_append_and_take_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mails = vec![
            mail("alice", "hi\tthere\nbob", MailKind::Private),
            mail("carol", "to all", MailKind::Broadcast),
            mail("dave", "group ✓", MailKind::Group("g1".into())),
        ];
        for m in &mails {
            assert!(store.deliver_or_store("bob", m, || false).unwrap());
        }
        assert_eq!(store.mailbox_len("bob"), 3);
        assert_eq!(store.mailbox_len("nobody"), 0);
        assert_eq!(store.take_mail("bob").unwrap(), mails);
        assert_eq!(store.mailbox_len("bob"), 0);
        assert!(store.take_mail("bob").unwrap().is_empty());
        assert!(!tmp.path().join("mail/bob.log").exists());
        assert!(store.take_mail("nobody").unwrap().is_empty());
        assert_eq!(store.dir(), tmp.path());
    }

    #[test]
    fn deliver_online_true_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        let mut called = false;
        let stored = store
            .deliver_or_store("bob", &mail("a", "x", MailKind::Private), || {
                called = true;
                true
            })
            .unwrap();
        assert!(called);
        assert!(!stored);
        assert_eq!(store.mailbox_len("bob"), 0);
        assert!(!tmp.path().join("mail/bob.log").exists());
    }

    #[test]
    fn mailbox_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        let a = mail("a", "1", MailKind::Private);
        let b = mail("a", "2", MailKind::Private);
        store.deliver_or_store("bob", &a, || false).unwrap();
        store.deliver_or_store("bob", &b, || false).unwrap();
        let err = store
            .deliver_or_store("bob", &mail("a", "3", MailKind::Private), || false)
            .unwrap_err();
        assert!(matches!(&err, StoreError::MailboxFull { user, limit: 2 } if user == "bob"));
        assert_eq!(err.to_string(), "mailbox of bob is full (2 messages)");
        assert_eq!(store.mailbox_len("bob"), 2);
        drop(store);
        // The limit survives a restart, and the stored mail is intact.
        let (store, _) = Store::open(tmp.path(), 2).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        assert!(store
            .deliver_or_store("bob", &mail("a", "3", MailKind::Private), || false)
            .is_err());
        assert_eq!(store.take_mail("bob").unwrap(), vec![a, b]);
    }

    #[test]
    fn torn_mailbox_tail_is_moved_aside_on_reopen() {
        capture_logs();
        let good = mail("a", "good", MailKind::Private);
        let bad_crc = record::encode(&["mail", "a", "1", "private", "badcrc"])
            .replacen("badcrc", "badcrC", 1);
        let tails: [&[u8]; 3] = [
            b"garbage without newline",
            bad_crc.as_bytes(),
            b"line\tdeadbeef\nmore garbage",
        ];
        for tail in tails {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("mail/bob.log");
            // The same text twice: two mails, two ids.
            let again = Mail {
                id: new_mail_id(),
                ..good.clone()
            };
            {
                let (store, _) = Store::open(tmp.path(), 10).unwrap();
                store.deliver_or_store("bob", &good, || false).unwrap();
                store.deliver_or_store("bob", &again, || false).unwrap();
            }
            let good_len = fs::metadata(&path).unwrap().len();
            append_raw(&path, tail);
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            let warned = my_warnings()
                .iter()
                .any(|w| w.contains("bob.log") && w.contains(&format!("byte offset {good_len}")));
            assert!(warned, "no torn-tail warning in {:?}", my_warnings());
            assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
            assert_eq!(store.mailbox_len("bob"), 2);
            let next = mail("c", "after", MailKind::Broadcast);
            store.deliver_or_store("bob", &next, || false).unwrap();
            assert_eq!(
                store.take_mail("bob").unwrap(),
                vec![good.clone(), again, next]
            );
        }
    }

    #[test]
    fn corrupted_middle_mail_record_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mail/bob.log");
        let a = mail("a", "first", MailKind::Private);
        let b = mail("b", "second", MailKind::Private);
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store.deliver_or_store("bob", &a, || false).unwrap();
        }
        append_raw(&path, b"damaged line\n");
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        store.deliver_or_store("bob", &b, || false).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        assert_eq!(store.take_mail("bob").unwrap(), vec![a, b]);
    }

    #[test]
    fn a_damaged_mail_is_moved_aside_with_a_warning_naming_both_paths() {
        capture_logs();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mail/bob.log");
        let a = mail("a", "first", MailKind::Private);
        {
            let (store, _) = Store::open(tmp.path(), 10).unwrap();
            store.deliver_or_store("bob", &a, || false).unwrap();
        }
        append_raw(&path, b"damaged\tline\t00000000\n");
        append_raw(&path, encode_mail(&a).as_bytes());
        let (store, _) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(store.mailbox_len("bob"), 2);
        let side = crate::store::repair::side_path(&path);
        let named = |w: &String| {
            w.contains(&*path.to_string_lossy()) && w.contains(&*side.to_string_lossy())
        };
        assert!(my_warnings().iter().any(named), "{:?}", my_warnings());
        assert_eq!(fs::read(&side).unwrap(), b"damaged\tline\t00000000\n");
        // The copied line is the same mail twice; the second gets an id of its own (see
        // `mailbox`), so one delivery cannot remove both.
        let taken = store.take_mail("bob").unwrap();
        assert_eq!(taken.len(), 2);
        assert_ne!(taken[0].id, taken[1].id);
        let without_id = |m: &Mail| Mail {
            id: String::new(),
            ..m.clone()
        };
        assert!(taken.iter().all(|m| without_id(m) == without_id(&a)));
    }
}
