//! Presence in a crowd: one `PRESENCE` line per login, logout or status change is right for
//! a class (and what PROTOCOL.md 5.2 promises), but every event goes to everyone online, so
//! a crowd logging in costs the square of its size in lines (ten thousand users: fifty
//! million), and nobody can read them anyway.
//!
//! Above `presence_summary_above` users online, events are gathered instead of sent: the
//! first one opens a window of `presence_summary_ms`, and at its end every online user gets
//! one `PRESENCES` line naming the users whose state changed in the window, each once with
//! the net change (a login followed by a logout in the same window is no change at all).
//! The cost is one line per online user per window, whatever the number of events. At most
//! [`LISTED`] changes are named in a line; the rest are counted (`<more>`), and a client that
//! keeps a list of who is online refreshes it with `whoelse` then.
//!
//! Ordering: once a window is open (or a summary being sent), later events join the next
//! window even if the crowd has shrunk, so a per-event line can never overtake a summary
//! of earlier events. Who may see whom (blocks) is read when the summary is sent.
//!
//! Lock order: the hub's `state` -> this module's `pending` (events are taken under the
//! state lock, where the online count is known); the sender takes them one at a time.

use super::{send_to, Hub, Shared};
use crate::server::rules::ChatEvent;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Most changes named in one `PRESENCES` line; the others are only counted.
pub const LISTED: usize = 100;

/// What others see of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visibility {
    Off,
    Available,
    Busy,
}

/// One user's changes in the open window.
struct UserChanges {
    name: String,
    /// Whether others saw the user online before the window.
    was_online: bool,
    /// What they see now.
    now: Visibility,
    /// The last way the user left (`logout`, `timeout`, `dropped`), if they did.
    left: Option<&'static str>,
}

impl UserChanges {
    /// The net change: `login`, `login-busy`, `busy`, `available`, or how they left.
    fn change(&self) -> Option<&'static str> {
        match (self.was_online, self.now) {
            (false, Visibility::Off) => None,
            (false, Visibility::Available) => Some("login"),
            (false, Visibility::Busy) => Some("login-busy"),
            (true, Visibility::Off) => Some(self.left.unwrap_or("logout")),
            (true, Visibility::Available) => Some("available"),
            (true, Visibility::Busy) => Some("busy"),
        }
    }
}

#[derive(Default)]
struct Pending {
    /// Changes of the open window, in the order of each user's first event.
    entries: Vec<UserChanges>,
    /// Index into `entries` by name.
    index: HashMap<String, usize>,
    /// When the window opened.
    since: Option<Instant>,
    /// A summary is being sent: new events wait for the next one.
    sending: bool,
    /// The thread that sends summaries runs (without it, every event is sent at once).
    running: bool,
}

/// Gathers presence events in a crowd and sends the summaries.
pub struct Batcher {
    /// Users online above which events are summarized.
    above: usize,
    /// How long a window stays open.
    window: Duration,
    pending: Mutex<Pending>,
    /// Signalled when a window opens.
    opened: Condvar,
}

impl Batcher {
    pub fn new(above: usize, window: Duration) -> Arc<Batcher> {
        Arc::new(Batcher {
            above,
            window,
            pending: Mutex::new(Pending::default()),
            opened: Condvar::new(),
        })
    }
}

impl Hub {
    /// Under the state lock, with `online` users online: takes `user`'s presence `events`
    /// (`login`, `logout`, `timeout`, `dropped`, `busy`, `available`, in order) into the
    /// open window and returns true, or returns false when they go out one line each now.
    pub(super) fn batch_presence(
        &self,
        online: usize,
        user: &str,
        events: &[&'static str],
    ) -> bool {
        let batcher = &self.shared.presence;
        let mut p = batcher.pending.lock();
        if !p.running || (online <= batcher.above && p.since.is_none() && !p.sending) {
            return false;
        }
        let i = match p.index.get(user) {
            Some(&i) => i,
            None => {
                let was_online = !matches!(events.first(), Some(&"login") | None);
                p.entries.push(UserChanges {
                    name: user.to_string(),
                    was_online,
                    now: if was_online {
                        Visibility::Available
                    } else {
                        Visibility::Off
                    },
                    left: None,
                });
                let i = p.entries.len() - 1;
                p.index.insert(user.to_string(), i);
                i
            }
        };
        let entry = &mut p.entries[i];
        for &event in events {
            match event {
                "login" | "available" => entry.now = Visibility::Available,
                "busy" => entry.now = Visibility::Busy,
                left => {
                    entry.now = Visibility::Off;
                    entry.left = Some(left);
                }
            }
        }
        if p.since.is_none() {
            p.since = Some(Instant::now());
            batcher.opened.notify_one();
        }
        true
    }

    /// Starts the thread that sends the summaries; it ends soon after the hub is dropped.
    pub(super) fn start_presence_thread(&self) {
        let (batcher, hub) = (
            Arc::clone(&self.shared.presence),
            Arc::downgrade(&self.shared),
        );
        let spawned = std::thread::Builder::new()
            .name("lanchat-presence".into())
            .spawn(move || summarize_loop(&batcher, &hub));
        match spawned {
            Ok(_) => self.shared.presence.pending.lock().running = true,
            Err(e) => log::error!("cannot start the presence thread (no summaries): {e}"),
        }
    }

    /// Closes the open window (if any) and sends its summary to everyone online.
    pub(super) fn send_presence_summary(&self) {
        let batcher = &self.shared.presence;
        let entries = {
            let mut p = batcher.pending.lock();
            if p.since.is_none() {
                return;
            }
            p.since = None;
            p.sending = true;
            p.index.clear();
            std::mem::take(&mut p.entries)
        };
        let changes: Vec<(String, &'static str)> = entries
            .into_iter()
            .filter_map(|e| e.change().map(|c| (e.name, c)))
            .collect();
        if !changes.is_empty() {
            self.send_summary(&changes);
        }
        batcher.pending.lock().sending = false;
    }

    fn send_summary(&self, changes: &[(String, &'static str)]) {
        let listed = changes.len().min(LISTED);
        let more = changes.len() - listed;
        let position: HashMap<&str, usize> = changes
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        // Everyone online gets the common line except those it would tell about themselves
        // or about someone who blocked them: they get their own.
        let mut common = Vec::new();
        let mut unlisted_self = Vec::new();
        let mut own: Vec<(Vec<usize>, usize, Vec<Arc<super::Conn>>)> = Vec::new();
        {
            let state = self.shared.state.lock();
            let mut hidden: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, (subject, _)) in changes.iter().enumerate() {
                if let Some(u) = state.directory.user(subject) {
                    for b in &u.blocked {
                        hidden.entry(b.as_str()).or_default().push(i);
                    }
                }
            }
            for (name, online) in state.online.iter() {
                let me = position.get(name.as_str()).copied();
                let blocked_by = hidden.get(name.as_str());
                if blocked_by.is_none() {
                    match me {
                        None => {
                            common.push(Arc::clone(&online.conn));
                            continue;
                        }
                        Some(i) if i >= listed => {
                            unlisted_self.push(Arc::clone(&online.conn));
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                let mut skip: Vec<usize> = blocked_by.cloned().unwrap_or_default();
                skip.extend(me);
                skip.sort_unstable();
                skip.dedup();
                let shown = (0..listed)
                    .filter(|i| skip.binary_search(i).is_err())
                    .collect();
                let unlisted_skipped = skip.iter().filter(|&&i| i >= listed).count();
                own.push((
                    shown,
                    more - unlisted_skipped,
                    vec![Arc::clone(&online.conn)],
                ));
            }
        }
        let all: Vec<usize> = (0..listed).collect();
        if !common.is_empty() {
            send_to(&common, &summary_event(changes, &all, more));
        }
        if !unlisted_self.is_empty() {
            send_to(&unlisted_self, &summary_event(changes, &all, more - 1));
        }
        for (shown, more, conns) in own {
            if !shown.is_empty() || more > 0 {
                send_to(&conns, &summary_event(changes, &shown, more));
            }
        }
    }
}

/// The summary of the `shown` changes, with `more` counted only.
fn summary_event(changes: &[(String, &'static str)], shown: &[usize], more: usize) -> ChatEvent {
    ChatEvent::PresenceSummary {
        changes: shown.iter().map(|&i| changes[i].clone()).collect(),
        more,
    }
}

/// The sender thread: waits for a window to open, sends its summary when it closes; ends
/// with the hub.
fn summarize_loop(batcher: &Batcher, hub: &Weak<Shared>) {
    loop {
        let due = {
            let mut p = batcher.pending.lock();
            if p.since.is_none() {
                batcher.opened.wait_for(&mut p, Duration::from_millis(500));
            }
            p.since.map(|t| t + batcher.window)
        };
        let Some(shared) = hub.upgrade() else { return };
        let Some(due) = due else { continue };
        drop(shared);
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let Some(shared) = hub.upgrade() else { return };
        Hub { shared }.send_presence_summary();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn a_summary_names_each_change_once_and_counts_the_rest() {
        let c = changes(&[("ann", "login"), ("bob", "timeout"), ("cy", "login-busy")]);
        let line = crate::server::render::line(summary_event(&c, &[0, 1, 2], 0));
        assert_eq!(
            line.to_wire(),
            "PRESENCES ann:login,bob:timeout,cy:login-busy 0 *** Joined: ann, cy (busy). Left: bob (timed out). ***\n"
        );
        let line = crate::server::render::line(summary_event(&c, &[1], 4));
        assert_eq!(
            line.to_wire(),
            "PRESENCES bob:timeout 4 *** Left: bob (timed out). 4 more changes; 'whoelse' lists who is online. ***\n"
        );
        let line = crate::server::render::line(summary_event(&c, &[], 1));
        assert_eq!(
            line.to_wire(),
            "PRESENCES - 1 *** 1 change; 'whoelse' lists who is online. ***\n"
        );
    }

    #[test]
    fn net_changes() {
        let e = |was_online, now, left| UserChanges {
            name: "x".into(),
            was_online,
            now,
            left,
        };
        assert_eq!(e(false, Visibility::Off, Some("logout")).change(), None);
        assert_eq!(
            e(false, Visibility::Busy, None).change(),
            Some("login-busy")
        );
        assert_eq!(
            e(true, Visibility::Off, Some("dropped")).change(),
            Some("dropped")
        );
        assert_eq!(
            e(true, Visibility::Available, Some("logout")).change(),
            Some("available")
        );
    }
}
