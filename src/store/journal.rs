//! `users.log`: the journal of [`Event`]s that rebuilds the [`Directory`] at open, and its
//! compaction. When the journal holds more than 2 × (live records) + 1000 records it is
//! rewritten as the fewest events that rebuild the same directory, through a fsynced
//! temporary file renamed over it, so a crash leaves the old or the new journal, never a
//! mix. Events are fsynced when the caller asks for it.
//!
//! What it does not do: decide what an event means (`directory`) or repair a damaged
//! journal (`repair`, at open).

use super::directory::{Directory, Event, UserRecord};
use super::files::{self, append_line, sync_dir};
use super::{record, repair, Store, StoreError};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::DerefMut;
use std::path::Path;

/// The journal's file name in the data directory.
pub(super) const USERS_LOG: &str = "users.log";
/// The compaction's temporary file.
pub(super) const USERS_TMP: &str = "users.log.tmp";
/// Slack before the journal is compacted: `records > 2 * live + SLACK`.
const COMPACT_SLACK: usize = 1000;

/// The minimal sequence of events that rebuilds `dir` from nothing.
fn snapshot_events(dir: &Directory) -> Vec<Event> {
    let mut events = Vec::with_capacity(dir.live_records());
    let mut users: Vec<(&String, &UserRecord)> = dir.users().collect();
    users.sort_unstable_by_key(|(name, _)| *name);
    for (name, rec) in users {
        if let Some(at) = rec.last_seen {
            events.push(Event::Seen {
                user: name.clone(),
                at,
            });
        }
        if let Some(text) = &rec.intro {
            events.push(Event::Intro {
                user: name.clone(),
                text: text.clone(),
            });
        }
        if let Some(status) = &rec.status {
            events.push(Event::Status {
                user: name.clone(),
                status: status.clone(),
            });
        }
        for target in &rec.blocked {
            events.push(Event::Block {
                user: name.clone(),
                target: target.clone(),
            });
        }
    }
    for (name, g) in dir.groups() {
        events.push(Event::GroupCreate {
            group: name.clone(),
            owner: g.owner.clone(),
        });
        for m in g.members.iter().filter(|m| **m != g.owner) {
            events.push(Event::GroupJoin {
                group: name.clone(),
                user: m.clone(),
            });
        }
        // Leave only after the others joined, or the group would vanish.
        if !g.members.contains(&g.owner) {
            events.push(Event::GroupLeave {
                group: name.clone(),
                user: g.owner.clone(),
            });
        }
    }
    events
}

fn encode_event(event: &Event) -> String {
    match event {
        Event::Seen { user, at } => record::encode(&["seen", user, &at.to_string()]),
        Event::Intro { user, text } => record::encode(&["intro", user, text]),
        Event::Block { user, target } => record::encode(&["block", user, target]),
        Event::Unblock { user, target } => record::encode(&["unblock", user, target]),
        Event::Status { user, status } => record::encode(&["status", user, status]),
        Event::GroupCreate { group, owner } => record::encode(&["gcreate", group, owner]),
        Event::GroupJoin { group, user } => record::encode(&["gjoin", group, user]),
        Event::GroupLeave { group, user } => record::encode(&["gleave", group, user]),
    }
}

/// Decodes an event record; `None` for unknown tags or malformed fields.
/// Extra trailing fields are ignored (forward compatibility).
fn decode_event(f: &[String]) -> Option<Event> {
    let field = |i: usize| f.get(i).cloned();
    Some(match f.first()?.as_str() {
        "seen" => Event::Seen {
            user: field(1)?,
            at: f.get(2)?.parse().ok()?,
        },
        "intro" => Event::Intro {
            user: field(1)?,
            text: field(2)?,
        },
        "block" => Event::Block {
            user: field(1)?,
            target: field(2)?,
        },
        "unblock" => Event::Unblock {
            user: field(1)?,
            target: field(2)?,
        },
        "status" => Event::Status {
            user: field(1)?,
            status: field(2)?,
        },
        "gcreate" => Event::GroupCreate {
            group: field(1)?,
            owner: field(2)?,
        },
        "gjoin" => Event::GroupJoin {
            group: field(1)?,
            user: field(2)?,
        },
        "gleave" => Event::GroupLeave {
            group: field(1)?,
            user: field(2)?,
        },
        _ => return None,
    })
}

/// Replays the journal at `path` (repaired first, see [`repair::load_and_repair`]): the
/// directory it rebuilds and the number of records it holds.
pub(super) fn replay(path: &Path) -> Result<(Directory, usize), StoreError> {
    let mut directory = Directory::default();
    let mut journal_records = 0;
    // An event this server does not know would be dropped by the next compaction:
    // moved aside now instead, where it stays.
    if let Some(scan) = repair::load_and_repair(path, |f| decode_event(f).is_some())? {
        journal_records = scan.records.len();
        for event in scan.records.iter().filter_map(|f| decode_event(f)) {
            directory.apply(&event);
        }
    }
    Ok((directory, journal_records))
}

/// Writes `events` to `tmp`, fsyncs it, renames it over `dir/users.log` and
/// fsyncs `dir`, so a crash leaves either the old or the new journal.
fn write_journal(tmp: &Path, events: &[Event], dir: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(tmp)?);
    for event in events {
        out.write_all(encode_event(event).as_bytes())?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, dir.join(USERS_LOG))?;
    sync_dir(dir)
}

impl Store {
    /// Writes the events the live directory has applied since the last call to users.log, in
    /// the order they were applied, or, when the journal would hold more than
    /// 2 × (live records) + 1000 records, replaces it with a snapshot of the directory.
    ///
    /// `directory` locks the live directory (the chat rules' state, behind the hub's lock);
    /// it is called after the store's own lock is taken (lock order: store, then state) and
    /// held only to take the events, or a snapshot, never across a write. Taking and writing
    /// under the store's lock keeps the journal in the order the events were applied, even
    /// when two threads changed the directory at once. The events are not fsynced.
    ///
    /// A failed compaction is logged and retried on a later call, but does not fail this
    /// call; a failed append loses the events it held (the live directory has them) and is
    /// reported.
    pub fn write_journal<D: DerefMut<Target = Directory>>(
        &self,
        directory: impl FnOnce() -> D,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let (events, snapshot) = {
            let mut dir = directory();
            let events = dir.take_unwritten();
            let records = inner.journal_records + events.len();
            let snapshot =
                (records > 2 * dir.live_records() + COMPACT_SLACK).then(|| snapshot_events(&dir));
            (events, snapshot)
        };
        if let Some(snapshot) = snapshot {
            // The snapshot holds the events just taken: they are written in it.
            match self.compact(&snapshot) {
                Ok(()) => {
                    inner.journal_records = snapshot.len();
                    return Ok(());
                }
                Err(e) => log::warn!("{}: compaction failed: {e}", self.dir.display()),
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let lines: String = events.iter().map(encode_event).collect();
        let path = self.dir.join(USERS_LOG);
        append_line(&path, &lines, false).map_err(files::at(&path))?;
        self.usage.add(lines.len() as u64);
        inner.journal_records += events.len();
        Ok(())
    }

    /// Rewrites users.log as `events`, a snapshot of the directory, via a fsynced temp file
    /// renamed into place.
    fn compact(&self, events: &[Event]) -> io::Result<()> {
        let tmp = self.dir.join(USERS_TMP);
        let size = || fs::metadata(self.dir.join(USERS_LOG)).map_or(0, |m| m.len());
        let before = size();
        let result = write_journal(&tmp, events, &self.dir);
        if result.is_ok() {
            self.usage.sub(before);
            self.usage.add(size());
        }
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| {
            log::info!(
                "{}: compacted journal to {} record(s)",
                self.dir.display(),
                events.len()
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_directory() -> Directory {
        let s = |x: &str| x.to_owned();
        let mut d = Directory::default();
        for e in [
            Event::Seen {
                user: s("al"),
                at: 1,
            },
            Event::Intro {
                user: s("al"),
                text: s("tab\there"),
            },
            Event::Status {
                user: s("bo"),
                status: s("busy"),
            },
            Event::Block {
                user: s("bo"),
                target: s("al"),
            },
            Event::Block {
                user: s("bo"),
                target: s("cy"),
            },
            Event::GroupCreate {
                group: s("g1"),
                owner: s("al"),
            },
            Event::GroupJoin {
                group: s("g1"),
                user: s("bo"),
            },
            Event::GroupJoin {
                group: s("g1"),
                user: s("cy"),
            },
            Event::GroupLeave {
                group: s("g1"),
                user: s("al"),
            },
            Event::GroupCreate {
                group: s("g2"),
                owner: s("cy"),
            },
        ] {
            d.apply(&e);
        }
        d
    }

    #[test]
    fn snapshot_rebuilds_directory() {
        let d = sample_directory();
        let events = snapshot_events(&d);
        assert_eq!(events.len(), d.live_records());
        let mut rebuilt = Directory::default();
        for e in &events {
            let line = encode_event(e);
            let fields = record::decode(line.trim_end_matches('\n')).unwrap();
            rebuilt.apply(&decode_event(&fields).unwrap());
        }
        assert_eq!(rebuilt, d);
    }

    #[test]
    fn compaction_triggers_and_preserves_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let log_path = tmp.path().join(USERS_LOG);
        let mut events = snapshot_events(&sample_directory());
        for at in 0..3000 {
            events.push(Event::Seen {
                user: "al".into(),
                at,
            });
        }
        let mut max_lines = 0;
        let (store, mut live) = Store::open(tmp.path(), 10).unwrap();
        for e in &events {
            live.record(e.clone());
            store.write_journal(|| &mut live).unwrap();
            assert!(!live.has_unwritten());
            let lines = fs::read(&log_path)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            max_lines = max_lines.max(lines);
            assert_eq!(lines, store.inner.lock().journal_records);
        }
        drop(store);
        assert!(max_lines <= 2 * live.live_records() + COMPACT_SLACK);
        let lines = fs::read_to_string(&log_path).unwrap().lines().count();
        assert!(lines < events.len(), "journal was never compacted");
        assert!(!tmp.path().join(USERS_TMP).exists());
        let (_, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir, live);
        assert_eq!(dir.user("al").unwrap().last_seen, Some(2999));
    }

    /// An event about a few users and groups, so that events meet.
    fn any_event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        let name = || prop::sample::select(vec!["al", "bo", "cy"]).prop_map(String::from);
        let text = || prop::sample::select(vec!["", "away", "hi\tthere"]).prop_map(String::from);
        prop_oneof![
            (name(), 0..5u64).prop_map(|(user, at)| Event::Seen { user, at }),
            (name(), text()).prop_map(|(user, text)| Event::Intro { user, text }),
            (name(), text()).prop_map(|(user, status)| Event::Status { user, status }),
            (name(), name()).prop_map(|(user, target)| Event::Block { user, target }),
            (name(), name()).prop_map(|(user, target)| Event::Unblock { user, target }),
            (name(), name()).prop_map(|(group, owner)| Event::GroupCreate { group, owner }),
            (name(), name()).prop_map(|(group, user)| Event::GroupJoin { group, user }),
            (name(), name()).prop_map(|(group, user)| Event::GroupLeave { group, user }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the changes, and however they are batched between writes, the journal
        /// replays to the live directory, and the kept count of live records is a
        /// snapshot's length.
        #[test]
        fn the_journal_replays_to_the_live_directory(
            batches in proptest::collection::vec(
                proptest::collection::vec(any_event(), 0..6), 0..40),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let (store, mut live) = Store::open(tmp.path(), 10).unwrap();
            for batch in batches {
                for e in batch {
                    live.record(e);
                    proptest::prop_assert_eq!(live.live_records(), snapshot_events(&live).len());
                }
                store.write_journal(|| &mut live).unwrap();
            }
            drop(store);
            let (_, replayed) = Store::open(tmp.path(), 10).unwrap();
            proptest::prop_assert_eq!(replayed, live);
        }
    }

    #[test]
    fn threads_changing_the_directory_at_once_journal_it_in_the_order_applied() {
        // Group events do not commute (a join after the last leave is lost): the journal must
        // hold them in the order they were applied, whoever writes them.
        let tmp = tempfile::tempdir().unwrap();
        let (store, live) = Store::open(tmp.path(), 10).unwrap();
        let live = parking_lot::Mutex::new(live);
        std::thread::scope(|scope| {
            for who in ["al", "bo"] {
                let (store, live) = (&store, &live);
                scope.spawn(move || {
                    for _ in 0..300 {
                        for e in [
                            Event::GroupCreate {
                                group: "g".into(),
                                owner: who.into(),
                            },
                            Event::GroupLeave {
                                group: "g".into(),
                                user: who.into(),
                            },
                            Event::GroupJoin {
                                group: "g".into(),
                                user: who.into(),
                            },
                        ] {
                            live.lock().record(e);
                            store.write_journal(|| live.lock()).unwrap();
                        }
                    }
                });
            }
        });
        drop(store);
        let (_, replayed) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(replayed, *live.lock());
    }

    #[test]
    fn unknown_and_malformed_events_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut journal = record::encode(&["seen", "al", "3"]);
        journal.push_str(&record::encode(&["future", "x", "y"]));
        journal.push_str(&record::encode(&["seen", "bo", "not-a-number"]));
        journal.push_str(&record::encode(&["status", "al", "here", "extra"]));
        fs::write(tmp.path().join(USERS_LOG), journal).unwrap();
        let (_, dir) = Store::open(tmp.path(), 10).unwrap();
        assert_eq!(dir.users().count(), 1);
        assert_eq!(dir.user("al").unwrap().last_seen, Some(3));
        assert_eq!(dir.status("al"), Some("here"));
    }
}
