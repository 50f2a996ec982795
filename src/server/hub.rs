//! The shared state of a running server behind one cheap-to-clone handle: who is online, the
//! directory of users (last seen, intros, blacklists, statuses), chat sessions, groups and
//! failed-login counts.
//!
//! The hub drives the chat rules (`rules`): a command takes the lock, applies its rule to
//! the state, releases the lock, and then does what the outcome asks: write what the rule
//! changed in the directory to the journal, deliver its events, answer the caller, each
//! rendered as native lines (`render`). Here:
//! that driver and the commands that are only a rule; `access` (login and logout, with the
//! lockouts and the offline mail), `messages` (delivery of messages, live or to the
//! mailbox, and the history), `delivery` (mail receipts), `history` (the history writer),
//! `presence` (presence summaries in a crowd).
//!
//! Callers use methods only; the locks never leave this module and are never held across
//! socket I/O: a method copies what it needs (connections to write to, lines to send) out of
//! the lock, releases it, and then queues the lines, which never blocks (see `conn`).
//! Durable changes go to the [`Store`], whose own lock is taken before the hub's when both are
//! needed (the mailbox path, and the journal: the store takes the directory's unwritten
//! events under both), never after.
//!
//! Lock order: `store` (inside `Store`) -> `state` -> `lockouts`.

mod access;
mod delivery;
mod history;
mod messages;
mod presence;

pub use super::rules::login::{NameCheck, PasswordCheck};
use access::LockKey;

use super::encoder::FanOut;
use super::lockout::{AfterFailure, Lockouts};
use super::outbox::{AfterBurst, Conn, FAN_OUT_QUEUED};
use super::render;
use super::rules::{
    self, addresses, blacklist, directory, groups, login, messaging, sessions, ChatEvent, Outcome,
    PresenceChange, Refusal, Registry, UserList,
};
use super::verifier::{CheckCount, Verifier};
use crate::clock::{format_utc, Clock};
use crate::config::{AuthMode, Config, DuplicateLogin, LockoutKey};
use crate::credentials::Credentials;
use crate::protocol::{
    valid_username, Audience, GroupAction, Kind, Line, Status, DEFAULT_HISTORY_LINES,
};
use crate::store::{Directory, HistoryRef, Mail, MailKind, Store, StoreError};
use parking_lot::Mutex;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// The rules' state, with connections as the hub's handles.
type ChatState = rules::State<Arc<Conn>>;

impl rules::Endpoint for Arc<Conn> {
    fn id(&self) -> u64 {
        self.id
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer.ip()
    }

    fn local_ip(&self) -> Option<IpAddr> {
        Conn::local_ip(self)
    }
}

/// Fixed parts of the hub.
struct Shared {
    /// Policies and limits.
    config: Config,
    /// Registered users.
    credentials: Credentials,
    /// "Now", injectable for tests.
    clock: Arc<dyn Clock>,
    /// What survives a restart.
    store: Arc<Store>,
    /// Appends conversation history off the session threads (see `history`).
    history: history::HistoryWriter,
    /// Online users, the directory (the only copy: see [`Directory`]), sessions, groups.
    state: Mutex<ChatState>,
    /// Failed logins.
    lockouts: Mutex<Lockouts<LockKey>>,
    /// Runs password checks: a few at once (an argon2 check takes ~19 MiB and a CPU for
    /// ~25 ms, so a crowd of guessers must queue rather than exhaust memory), taking turns
    /// between client addresses so one address's flood cannot starve another's login.
    verifier: Verifier,
    /// Presence events gathered into summaries in a crowd.
    presence: Arc<presence::Batcher>,
    /// Connections whose offline mail waits for the client's acknowledgement.
    deliveries: delivery::Deliveries,
}

/// Most password checks at once. Worked out once: `available_parallelism` reads cgroup
/// files under /proc and /sys (a dozen syscalls), too dear for every login.
fn max_concurrent_verifies() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 2))
}

/// The handle every connection thread holds.
#[derive(Clone)]
pub struct Hub {
    /// Shared by all clones.
    shared: Arc<Shared>,
}

pub use super::rules::LogoutReason;

fn err(code: &str, text: impl Into<String>) -> Line {
    Line::err(code, text)
}

/// Room a new user's or group's first records take in the data directory, near enough.
const NEW_RECORD_BYTES: u64 = 128;

impl Hub {
    /// Builds the hub from the configuration, the users and the store's replayed directory,
    /// which it keeps (in the rules' state) from then on.
    pub fn new(
        config: Config,
        credentials: Credentials,
        clock: Arc<dyn Clock>,
        store: Store,
        directory: Directory,
    ) -> Hub {
        store.set_max_bytes(config.max_data_bytes);
        let lockouts = Lockouts::new(config.max_login_attempts, config.block_time_secs);
        let presence = presence::Batcher::new(
            config.presence_summary_above,
            std::time::Duration::from_millis(config.presence_summary_ms),
        );
        let store = Arc::new(store);
        let history = history::HistoryWriter::start(Arc::clone(&store));
        let hub = Hub {
            shared: Arc::new(Shared {
                config,
                credentials,
                clock,
                store,
                history,
                state: Mutex::new(ChatState {
                    directory,
                    ..ChatState::default()
                }),
                lockouts: Mutex::new(lockouts),
                verifier: Verifier::new(max_concurrent_verifies()),
                presence,
                deliveries: delivery::Deliveries::default(),
            }),
        };
        hub.start_presence_thread();
        hub
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// Writes what the rules changed in the directory to the journal, in the order they
    /// changed it (the store takes the events from the state under its own lock). Called
    /// without the state lock, after a rule that changed the directory.
    fn write_journal(&self) {
        let state = || parking_lot::MutexGuard::map(self.shared.state.lock(), |s| &mut s.directory);
        if let Err(e) = self.shared.store.write_journal(state) {
            log::error!("store: could not write the user journal: {e}");
        }
    }

    /// Releases the state lock, then writes the journal if the rule applied under it changed
    /// the directory.
    fn release(&self, state: parking_lot::MutexGuard<'_, ChatState>) {
        let changed = state.directory.has_unwritten();
        drop(state);
        if changed {
            self.write_journal();
        }
    }

    /// Who can be addressed, for the rules.
    fn registry(&self) -> Registry<'_> {
        match self.shared.config.auth {
            AuthMode::Open => Registry::Open,
            _ => Registry::Listed(&self.shared.credentials),
        }
    }

    /// Applies `rule` under the state lock; then, with the lock released, journals what it
    /// changed, delivers and renders the answer.
    fn apply(&self, rule: impl FnOnce(&mut ChatState) -> Outcome<Arc<Conn>>) -> Vec<Line> {
        let mut state = self.shared.state.lock();
        let out = rule(&mut state);
        self.release(state);
        self.finish(out)
    }

    /// [`Hub::apply`] for a rule that always answers in one line.
    fn apply_one(&self, rule: impl FnOnce(&mut ChatState) -> Outcome<Arc<Conn>>) -> Line {
        self.apply(rule).swap_remove(0)
    }

    /// Does what an outcome asks, in order: delivers its events, and returns its answer as
    /// native lines. Called without the state lock.
    fn finish(&self, out: Outcome<Arc<Conn>>) -> Vec<Line> {
        render::render_all(self.finish_events(out))
    }

    /// [`Hub::finish`], returning the answer as events.
    fn finish_events(&self, out: Outcome<Arc<Conn>>) -> Vec<ChatEvent> {
        deliver(out.deliveries);
        out.replies
    }

    /// [`Hub::apply`], returning the answer as events.
    fn apply_events(
        &self,
        rule: impl FnOnce(&mut ChatState) -> Outcome<Arc<Conn>>,
    ) -> Vec<ChatEvent> {
        let mut state = self.shared.state.lock();
        let out = rule(&mut state);
        self.release(state);
        self.finish_events(out)
    }

    /// `whoelse`: the other online users visible to `me`, with status and intro.
    pub fn whoelse(&self, me: &str) -> Vec<Line> {
        self.apply(|s| directory::online(s, me, UserList::WhoElse))
    }

    /// `list` (seed 004): every signed-in user visible to `me`, `me` included.
    pub fn signed_in(&self, me: &str) -> Vec<Line> {
        self.apply(|s| directory::online(s, me, UserList::SignedIn))
    }

    /// `wholast N`: users online now or who logged out in the last `minutes`.
    pub fn wholast(&self, me: &str, minutes: u32) -> Vec<Line> {
        let now = self.now();
        self.apply(|s| directory::last(s, now, me, minutes))
    }

    /// Sets (or, with an empty text, clears) `me`'s intro.
    pub fn set_intro(&self, me: &str, text: &str) -> Line {
        self.apply_one(|s| blacklist::set_intro(s, me, text))
    }

    /// `chat USER`: asks USER for a session.
    pub fn chat_request(&self, me: &str, with: &str) -> Vec<Line> {
        let registry = self.registry();
        self.apply(|s| {
            sessions::request(s, registry, me, with, || {
                rand::rng().random_range(1000..=9999)
            })
        })
    }

    /// `accept` / `decline`: answers the most recent request to `me` (from `from`, if
    /// given), a chat request or an address exchange.
    pub fn answer(&self, me: &str, from: Option<&str>, accept: bool) -> Vec<Line> {
        self.apply(|s| match addresses::newest_request(s, me, from) {
            Some(requester) => addresses::answer(s, me, &requester, accept, new_pairing_secret),
            None => sessions::answer(s, me, from, accept),
        })
    }

    /// Seed 002: a blank line answers `[y/N]` with no, so it declines the newest pending
    /// request to `me` when that is an address exchange; `None` (and the line is ignored)
    /// otherwise.
    pub fn decline_address_on_blank(&self, me: &str) -> Option<Vec<Line>> {
        let out = {
            let mut state = self.shared.state.lock();
            let requester = addresses::newest_request(&state, me, None)?;
            addresses::answer(&mut state, me, &requester, false, new_pairing_secret)
        };
        Some(self.finish(out))
    }

    /// `end [N]`: ends `me`'s session (or withdraws a pending request).
    pub fn end_session(&self, me: &str, id: Option<u32>) -> Vec<Line> {
        self.apply(|s| sessions::end(s, me, id))
    }

    /// `snum`: the current session number.
    pub fn session_number(&self, me: &str) -> Line {
        self.apply_one(|s| sessions::number(s, me))
    }

    /// Whether someone is waiting for `me` to accept or decline.
    pub fn has_pending(&self, me: &str) -> bool {
        sessions::has_pending(&self.shared.state.lock(), me)
    }

    /// `p2p PORT`: where `me`'s client takes direct messages.
    pub fn set_p2p_port(&self, me: &str, port: u16) -> Line {
        self.apply_one(|s| addresses::set_p2p_port(s, me, port))
    }

    /// `getaddress USER` (seed 002): asks USER to exchange addresses with `me`.
    pub fn get_address(&self, me: &str, with: &str) -> Vec<Line> {
        let (registry, now) = (self.registry(), self.now());
        self.apply(|s| addresses::request(s, registry, now, me, with))
    }

    /// `removeaddress USER`: removes the pair on both sides.
    pub fn remove_address(&self, me: &str, with: &str) -> Line {
        self.apply_one(|s| addresses::remove(s, me, with))
    }

    /// `addressbook`: who `me` has exchanged addresses with.
    pub fn address_book(&self, me: &str) -> Vec<Line> {
        self.apply(|s| addresses::book(s, me))
    }

    /// Declines address requests nobody answered within `max_age_secs` (seed 002's prompt
    /// does not wait forever). Called about once a second by the server.
    pub fn expire_requests(&self, max_age_secs: u64) {
        let now = self.now();
        self.apply(|s| addresses::expire(s, now, max_age_secs));
    }

    /// Whether `me` is in a started chat session.
    pub fn in_session(&self, me: &str) -> bool {
        self.shared.state.lock().session_of(me).is_some()
    }

    /// A line typed inside a chat session: relayed to the partner and logged.
    pub fn talk(&self, me: &str, text: &str) -> Vec<Line> {
        match self.talk_as(me, text, false) {
            Ok(()) => Vec::new(),
            Err(why) => vec![render::refusal(why)],
        }
    }

    /// [`Hub::talk`], as an IRC NOTICE if `notice`; why it was not relayed, if it was not.
    pub fn talk_as(&self, me: &str, text: &str, notice: bool) -> Result<(), Refusal> {
        let (found, from) = {
            let state = self.shared.state.lock();
            (sessions::partner(&state, me), state.conn(me))
        };
        let (n, other, conn) = found?;
        let unreachable = || Err(Refusal::PartnerGone(other.clone()));
        let Some(conn) = conn else {
            return unreachable();
        };
        // Logged before it is delivered, so a reply can never be logged ahead of it.
        self.append_history(
            &other,
            HistoryRef {
                at: self.now(),
                session: Some(n),
                sender: me,
                text,
            },
            from.as_ref(),
        );
        let said = ChatEvent::Talk {
            session: n,
            from: me.to_string(),
            text: text.to_string(),
            notice,
        };
        if !conn.send_event(&said, from.as_ref()) {
            return unreachable();
        }
        Ok(())
    }

    /// `block USER`
    pub fn block(&self, me: &str, target: &str) -> Line {
        let registry = self.registry();
        self.apply_one(|s| blacklist::block(s, registry, me, target))
    }

    /// `unblock USER`
    pub fn unblock(&self, me: &str, target: &str) -> Line {
        let registry = self.registry();
        self.apply_one(|s| blacklist::unblock(s, registry, me, target))
    }

    /// `blocked`: `me`'s blacklist.
    pub fn blocked(&self, me: &str) -> Vec<Line> {
        self.apply(|s| blacklist::blocked(s, me))
    }

    /// `status [S]`: shows or changes `me`'s status, telling others what they may see.
    pub fn status(&self, me: &str, new: Option<Status>) -> Line {
        let Some(new) = new else {
            return self.apply_one(|s| blacklist::status(s, me));
        };
        let (mut out, targets) = {
            let mut state = self.shared.state.lock();
            let out = blacklist::set_status(&mut state, me, new);
            let words: Vec<&'static str> = out.presence.iter().map(|c| c.word()).collect();
            let targets = if words.is_empty() {
                Vec::new()
            } else {
                self.presence_targets_now(&state, me, &words)
            };
            self.release(state);
            (out, targets)
        };
        let changes = std::mem::take(&mut out.presence);
        let mut reply = self.finish(out);
        for change in changes {
            send_to(&targets, &ChatEvent::presence(me, change));
        }
        reply.swap_remove(0)
    }

    /// `group ...`
    pub fn group(&self, me: &str, action: &GroupAction) -> Vec<Line> {
        render::render_all(self.group_events(me, action))
    }

    /// [`Hub::group`], the answer as events.
    pub fn group_events(&self, me: &str, action: &GroupAction) -> Vec<ChatEvent> {
        match action {
            GroupAction::Create(name) => {
                let open = self.shared.config.auth == AuthMode::Open;
                let bounds = open.then(|| groups::NewGroups {
                    per_address: self.shared.config.max_groups_per_ip,
                    room: self.shared.store.has_room(NEW_RECORD_BYTES),
                });
                self.apply_events(|s| groups::create(s, me, name, bounds))
            }
            GroupAction::Join(name) => self.apply_events(|s| groups::join(s, me, name)),
            GroupAction::Leave(name) => self.apply_events(|s| groups::leave(s, me, name)),
            GroupAction::List => self.apply_events(|s| groups::list(s, me)),
            GroupAction::Members(name) => self.apply_events(|s| groups::members(s, me, name)),
            GroupAction::Send(name, text) => self.group_send_as(me, name, text, false),
        }
    }

    /// Every connection, for a shutdown notice.
    pub fn online_count(&self) -> usize {
        self.shared.state.lock().online.len()
    }
}

/// Read-only views for doors that present the hub in another protocol (the IRC door's
/// NAMES, WHO, WHOIS, ISON, LUSERS and channel lookups): see `rules::directory` and
/// `rules::groups`.
impl Hub {
    /// The online users `viewer` may see (not invisible, not blocking `viewer`), viewer
    /// included, with their status, sorted by name; and how many are online in all.
    pub fn visible_online(&self, viewer: &str) -> (Vec<(String, Status)>, usize) {
        directory::visible_online(&self.shared.state.lock(), viewer)
    }

    /// The online user `viewer` may see whose name is `name` (or equals it ignoring ASCII
    /// case), with their status and intro.
    pub fn find_online(&self, viewer: &str, name: &str) -> Option<(String, Status, String)> {
        directory::find_online(&self.shared.state.lock(), viewer, name)
    }

    /// Whether anyone, visible or not, is online as `name` or a name equal to it ignoring
    /// ASCII case other than `name` itself (for IRC's case-insensitive nicks).
    pub fn online_case_twin(&self, name: &str) -> bool {
        self.shared.state.lock().online.has_case_twin(name)
    }

    /// The group called `name` (or equal to it ignoring ASCII case): its real name and its
    /// members, each with whether `viewer` may see them online.
    pub fn group_view(&self, viewer: &str, name: &str) -> Option<(String, Vec<(String, bool)>)> {
        groups::view(&self.shared.state.lock(), viewer, name)
    }

    /// Every group: its name, its number of members and whether `user` is one of them.
    pub fn groups_with(&self, user: &str) -> Vec<(String, usize, bool)> {
        groups::all_with(&self.shared.state.lock(), user)
    }
}

impl Hub {
    /// Under the state lock: who gets `subject`'s presence `events` one line each now, or
    /// nobody when they are left for a summary (in a crowd, see [`presence`]).
    fn presence_targets_now(
        &self,
        state: &ChatState,
        subject: &str,
        events: &[&'static str],
    ) -> Vec<Arc<Conn>> {
        if self.batch_presence(state.online.len(), subject, events) {
            Vec::new()
        } else {
            presence_targets(state, subject)
        }
    }
}

/// The online users who may see `subject`'s presence changes.
fn presence_targets(state: &ChatState, subject: &str) -> Vec<Arc<Conn>> {
    state
        .online
        .iter()
        .filter(|(n, _)| n.as_str() != subject && !state.blocks(subject, n))
        .map(|(_, o)| Arc::clone(&o.conn))
        .collect()
}

/// An event for many from no session's burst (a presence notice), rendered once per
/// distinct view: written now, or queued for the flusher for a crowd.
fn send_to(conns: &[Arc<Conn>], event: &ChatEvent) {
    let fan_out = FanOut::new(event);
    let queue = conns.len() >= FAN_OUT_QUEUED;
    for c in conns {
        c.send_fan_out(&fan_out, None, queue, None);
    }
}

/// A fresh random 256-bit pairing secret, as 64 hex digits.
fn new_pairing_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends each event to its connection.
fn deliver(deliveries: Vec<(Arc<Conn>, ChatEvent)>) {
    for (conn, event) in deliveries {
        conn.send_event(&event, None);
    }
}

/// The end of a session's burst wakes the history writer for the entries it queued.
impl AfterBurst for Hub {
    fn wake_history(&self) {
        self.shared.history.wake();
    }
}

/// Acts on other users for doors whose channels have operators (the IRC door's KICK and
/// INVITE); the native protocol has no such commands.
impl Hub {
    /// Removes `target` from `group` (deleting the group if it empties), as if they had
    /// left; false when there is no such group or they were not in it.
    pub fn group_remove_member(&self, group: &str, target: &str) -> bool {
        let mut state = self.shared.state.lock();
        let left = groups::remove_member(&mut state, group, target);
        self.release(state);
        left
    }

    /// Sends `line` to `name` if online; whether it was.
    pub fn tell(&self, name: &str, line: &Line) -> bool {
        let conn = self.shared.state.lock().conn(name);
        conn.is_some_and(|c| c.send(line))
    }
}
