//! Helpers the store's unit tests share: sample mail and history entries, raw appends that
//! bypass the store, and a capture of each thread's warnings (a process has one logger, so
//! it is set up here once for every store test).

use super::{new_mail_id, HistoryEntry, Mail, MailKind};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::thread::ThreadId;

/// Captures warnings per thread so a test can assert a warning path ran.
struct Capture(parking_lot::Mutex<Vec<(ThreadId, String)>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.0
                .lock()
                .push((std::thread::current().id(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(parking_lot::Mutex::new(Vec::new()));

pub(super) fn capture_logs() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Warn);
}

pub(super) fn my_warnings() -> Vec<String> {
    let me = std::thread::current().id();
    CAPTURE
        .0
        .lock()
        .iter()
        .filter(|(t, _)| *t == me)
        .map(|(_, m)| m.clone())
        .collect()
}

pub(super) fn mail(from: &str, text: &str, kind: MailKind) -> Mail {
    Mail {
        from: from.into(),
        sent_at: 1_700_000_000,
        kind,
        text: text.into(),
        id: new_mail_id(),
    }
}

pub(super) fn entry(i: u64, text: &str) -> HistoryEntry {
    HistoryEntry {
        at: 1_700_000_000 + i,
        session: match i % 2 {
            0 => Some(i as u32),
            _ => None,
        },
        sender: match i % 3 {
            0 => "alice".into(),
            _ => "bob".into(),
        },
        text: text.into(),
    }
}

pub(super) fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}
