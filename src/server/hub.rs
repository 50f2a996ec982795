//! The shared state of a running server behind one cheap-to-clone handle: who is online, the
//! directory of users (last seen, intros, blacklists, statuses), chat sessions, groups and
//! failed-login counts.
//!
//! Callers use methods only; the locks never leave this module and are never held across
//! socket I/O: a method copies what it needs (connections to write to, lines to send) out of
//! the lock, releases it, and then queues the lines, which never blocks (see `conn`).
//! Durable changes go to the [`Store`], whose own lock is taken before the hub's when both are
//! needed (the mailbox path), never after.
//!
//! Lock order: `store` (inside `Store`) -> `state` -> `lockouts`.

mod delivery;
mod history;
mod presence;

use super::conn::Conn;
use super::lockout::{AfterFailure, Lockouts, Reservation};
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
use crate::store::{Directory, Event, HistoryRef, Mail, MailKind, Store, StoreError};
use parking_lot::Mutex;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// The rules' state, with connections as the hub's handles.
type State = rules::State<Arc<Conn>>;

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

/// Key of the failed-login table: the username and, by policy, the client's IP.
type LockKey = (String, Option<IpAddr>);

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
    /// Online users, directory, sessions, groups.
    state: Mutex<State>,
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

/// Why a username is refused before the password is asked.
#[derive(Debug, PartialEq, Eq)]
pub enum NameCheck {
    /// Go on (ask the password, or log in at once when `password_needed` is false).
    Ok {
        /// Whether the auth mode asks for a password.
        password_needed: bool,
    },
    /// Refused; try another name. The line says why.
    Retry(Line),
    /// Refused; close the connection after this line (a lockout).
    Close(Line),
}

/// The result of a password attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Correct.
    Ok,
    /// Wrong; ask again after this line.
    Retry(Line),
    /// Wrong and now locked out; close after this line.
    Close(Line),
}

pub use super::rules::LogoutReason;

fn ok(code: &str, text: impl Into<String>) -> Line {
    Line::ok(code, text)
}

fn err(code: &str, text: impl Into<String>) -> Line {
    Line::err(code, text)
}

/// Room a new user's or group's first records take in the data directory, near enough.
const NEW_RECORD_BYTES: u64 = 128;

fn store_error(e: &StoreError) -> Line {
    match e {
        StoreError::MailboxFull { user, limit } => err(
            "mailbox-full",
            format!("{user}'s offline mailbox is full ({limit} messages); not delivered"),
        ),
        StoreError::StorageFull { limit } => err(
            "storage-full",
            format!("the server's storage is full ({limit} bytes); the message was not stored and will not be delivered"),
        ),
        other => {
            log::error!("store: {other}");
            err(
                "store-failed",
                "the server could not save the message; it was not delivered",
            )
        }
    }
}

impl Hub {
    /// Builds the hub from the configuration, the users and the store's replayed directory.
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
                state: Mutex::new(State {
                    users: directory.users.into_iter().collect(),
                    groups: directory.groups,
                    ..State::default()
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

    fn record(&self, event: Event) {
        if let Err(e) = self.shared.store.record(&event, false) {
            log::error!("store: could not record {event:?}: {e}");
        }
    }

    /// Who can be addressed, for the rules.
    fn registry(&self) -> Registry<'_> {
        match self.shared.config.auth {
            AuthMode::Open => Registry::Open,
            _ => Registry::Listed(&self.shared.credentials),
        }
    }

    /// Applies `rule` under the state lock; then, with the lock released, stores, delivers
    /// and renders the answer.
    fn apply(&self, rule: impl FnOnce(&mut State) -> Outcome<Arc<Conn>>) -> Vec<Line> {
        let out = rule(&mut self.shared.state.lock());
        self.finish(out)
    }

    /// [`Hub::apply`] for a rule that always answers in one line.
    fn apply_one(&self, rule: impl FnOnce(&mut State) -> Outcome<Arc<Conn>>) -> Line {
        self.apply(rule).swap_remove(0)
    }

    /// Does what an outcome asks, in order: stores its records, delivers its events, and
    /// returns its answer as native lines. Called without the state lock.
    fn finish(&self, out: Outcome<Arc<Conn>>) -> Vec<Line> {
        for record in out.records {
            self.record(record);
        }
        deliver(out.deliveries);
        let mut lines = Vec::with_capacity(out.replies.len());
        for reply in out.replies {
            render::render_into(reply, &mut lines);
        }
        lines
    }

    /// Whether logging `name` in would make a new user (open mode only: other modes have
    /// their users in credentials.txt).
    fn is_new_user(&self, name: &str) -> bool {
        self.shared.config.auth == AuthMode::Open
            && !self.shared.state.lock().users.contains_key(name)
    }

    /// Whether `name` is a user others can address (registered, or known in open mode).
    fn is_registered(&self, name: &str) -> bool {
        match self.shared.config.auth {
            AuthMode::Open => self.shared.state.lock().users.contains_key(name),
            _ => self.shared.credentials.contains(name),
        }
    }

    /// Every user that can receive mail.
    fn registered_users(&self) -> Vec<String> {
        match self.shared.config.auth {
            AuthMode::Open => self.shared.state.lock().users.keys().cloned().collect(),
            _ => self.shared.credentials.usernames(),
        }
    }

    fn lock_key(&self, name: &str, ip: IpAddr) -> LockKey {
        match self.shared.config.lockout_key {
            LockoutKey::UserIp => (name.to_string(), Some(ip)),
            LockoutKey::User => (name.to_string(), None),
        }
    }

    fn blocked_line(secs: u64) -> Line {
        Line::bye(
            "blocked",
            format!(
                "Im sorry, you are currently blocked, and you need to wait for another {secs} seconds. Logging off."
            ),
        )
    }

    /// First step of a login: is this name acceptable from this IP?
    pub fn check_name(&self, name: &str, ip: IpAddr) -> NameCheck {
        if !valid_username(name) {
            return NameCheck::Retry(err(
                "bad-name",
                "A username is 1-32 letters, digits, '_', '-' or '.', starting with a letter, digit or '_'; please try again.",
            ));
        }
        let mode = self.shared.config.auth;
        let key = self.lock_key(name, ip);
        if let Some(secs) = self.shared.lockouts.lock().blocked_for(&key, self.now()) {
            return NameCheck::Close(Self::blocked_line(secs));
        }
        if mode == AuthMode::Password {
            // Whether the name exists, or is online, is told only after a right password:
            // an unknown name and a wrong password look the same from outside.
            return NameCheck::Ok {
                password_needed: true,
            };
        }
        if mode == AuthMode::Allowlist && !self.shared.credentials.contains(name) {
            return NameCheck::Retry(err("unknown-user", "Username incorrect, please check."));
        }
        if self.shared.config.duplicate_login == DuplicateLogin::Reject
            && self.shared.state.lock().online.contains_key(name)
        {
            return NameCheck::Retry(render::refusal(Refusal::AlreadyOnline(name.to_string())));
        }
        NameCheck::Ok {
            password_needed: false,
        }
    }

    /// Second step: the password, with lockout bookkeeping. The try is reserved before the
    /// password is checked, so checks running at once count against `max_login_attempts`.
    pub fn check_password(&self, name: &str, password: &str, ip: IpAddr) -> PasswordCheck {
        let key = self.lock_key(name, ip);
        match self.shared.lockouts.lock().reserve(&key, self.now()) {
            Reservation::Granted => {}
            Reservation::Blocked(secs) => return PasswordCheck::Close(Self::blocked_line(secs)),
            Reservation::Exhausted => {
                return PasswordCheck::Close(Line::bye(
                    "blocked",
                    "Too many passwords for this name are being checked at once; try again in a minute. Logging off.",
                ))
            }
        }
        // Same work for unknown users as for known ones, so timing tells nothing either.
        if self.verify_password(name, password, ip) {
            self.shared.lockouts.lock().succeed(&key);
            return PasswordCheck::Ok;
        }
        let now = self.now();
        let outcome = {
            let mut lockouts = self.shared.lockouts.lock();
            lockouts.prune(now);
            lockouts.fail(&key, now)
        };
        log::info!("failed login for {name} from {ip}");
        match outcome {
            AfterFailure::TriesLeft(n) => PasswordCheck::Retry(err(
                "bad-login",
                format!(
                    "Username or password incorrect. Please try again; if you fail {n} more time{} you will be blocked for a while",
                    if n == 1 { "" } else { "s" }
                ),
            )),
            AfterFailure::Blocked(secs) => {
                if self.shared.config.lockout_key == LockoutKey::User {
                    self.kick(name, "locked", "Your account was locked after repeated failed logins elsewhere.");
                }
                PasswordCheck::Close(Line::bye(
                    "blocked",
                    format!("Username or password incorrect. You are blocked for {secs} seconds. Logging off."),
                ))
            }
        }
    }

    /// Checks a password; with argon2 in the file, waits for a free slot in `ip`'s turn (a
    /// plaintext-only file's comparison needs no slot).
    fn verify_password(&self, name: &str, password: &str, ip: IpAddr) -> bool {
        let credentials = &self.shared.credentials;
        self.shared.verifier.run(ip, credentials.is_costly(), || {
            credentials.verify_or_dummy(name, password)
        })
    }

    /// How many passwords this server has checked (tests count them to prove the lockout).
    pub fn password_checks(&self) -> CheckCount {
        self.shared.verifier.count()
    }

    /// Logs out `name`'s current connection (if any) with a reason line.
    fn kick(&self, name: &str, reason: &str, text: &str) {
        let conn = self.shared.state.lock().conn(name);
        if let Some(conn) = conn {
            conn.close_with(&Line::bye(reason, text));
        }
    }

    /// Last step: puts the user online and queues WELCOME. Returns the lines that follow it
    /// (offline mail or "no messages"), or a line refusing the login (a lost duplicate race).
    pub fn login(&self, name: &str, conn: &Arc<Conn>) -> Result<(), Line> {
        let now = self.now();
        if self.is_new_user(name) && !self.shared.store.has_room(NEW_RECORD_BYTES) {
            return Err(err(
                "storage-full",
                "the server's storage is full: no new user can be made now; log in with a name used before",
            ));
        }
        // The mailbox is read and the user put online under the store's lock, so a message
        // sent meanwhile is either in this mail or delivered live after it, never stranded,
        // and the offline mail comes right after WELCOME, before any live line. The mail
        // stays in the mailbox until the client's TCP acknowledged it (see `delivery`).
        let read = self.shared.store.read_mail_with(name, |mail| {
            let result = self.go_online(name, conn, &opening_lines(mail));
            (result, !mail.is_empty())
        });
        let result = match read {
            Ok((result, sent_mail)) => {
                if sent_mail && result.is_ok() {
                    self.watch_delivery(name, conn);
                }
                result
            }
            Err(e) => {
                log::error!("store: could not read {name}'s mailbox: {e}");
                let failed = err(
                    "store-failed",
                    "your offline messages could not be read; they are kept for next time",
                );
                self.go_online(name, conn, &[(failed, None)])
            }
        };
        let (replaced, notify, partners) = result?;
        conn.flush_now();
        deliver(partners);
        if let Some(old) = replaced {
            old.close_with(&Line::bye(
                "replaced",
                "another client has logged into your account; logging you out.",
            ));
            self.rescue_unsent(name, &old);
        }
        if self.shared.config.auth == AuthMode::Open {
            // Open mode learns users as they come, so they can get mail later.
            self.record(Event::Seen {
                user: name.to_string(),
                at: now,
            });
        }
        send_to(&notify, &render::presence(name, PresenceChange::Joined));
        Ok(())
    }

    /// Under the state lock: refuses a duplicate (by policy) or takes over the old session,
    /// puts `conn` online and queues WELCOME and `opening` (memory only) before anyone else
    /// can address the user. Returns the replaced connection, who to tell of the login, and
    /// the old session's chat partners.
    #[allow(clippy::type_complexity)]
    fn go_online(
        &self,
        name: &str,
        conn: &Arc<Conn>,
        opening: &[(Line, Option<String>)],
    ) -> Result<
        (
            Option<Arc<Conn>>,
            Vec<Arc<Conn>>,
            Vec<(Arc<Conn>, ChatEvent)>,
        ),
        Line,
    > {
        let policy = login::LoginPolicy {
            reject_duplicates: self.shared.config.duplicate_login == DuplicateLogin::Reject,
            new_users_per_address: (self.shared.config.auth == AuthMode::Open)
                .then_some(self.shared.config.max_new_users_per_ip),
        };
        let mut state = self.shared.state.lock();
        let arrival =
            login::arrive(&mut state, name, Arc::clone(conn), policy).map_err(render::refusal)?;
        let mut lines = vec![render::line(ChatEvent::Welcome(name.to_string()))];
        let mut mail_ids = vec![None];
        for (line, id) in opening {
            lines.push(line.clone());
            mail_ids.push(id.clone());
        }
        if arrival.status != Status::Available {
            lines.push(render::line(ChatEvent::StatusReminder(arrival.status)));
            mail_ids.push(None);
        }
        if mail_ids.iter().any(Option::is_some) {
            conn.enqueue_tracked(&lines, &mail_ids);
        } else {
            conn.enqueue_all(&lines);
        }
        let notify = if arrival.announce {
            self.presence_targets_now(&state, name, &["login"])
        } else {
            Vec::new()
        };
        drop(state);
        deliver(arrival.book);
        Ok((arrival.replaced, notify, arrival.partners))
    }

    /// Takes `name` offline if `conn_id` is still its connection; ends its chat session and
    /// tells the others.
    pub fn logout(&self, name: &str, conn_id: u64, reason: LogoutReason) {
        let now = self.now();
        // Messages that never reached the socket go back to the mailbox while the user still
        // shows as online, so a new login cannot take the mailbox before they are in it.
        let conn = self.shared.state.lock().conn(name);
        if let Some(conn) = conn.filter(|c| c.id == conn_id) {
            self.rescue_unsent(name, &conn);
            // What was acknowledged by now leaves the mailbox before a new login reads it.
            self.remove_delivered(name, &conn);
        }
        let (notify, gone) = {
            let mut state = self.shared.state.lock();
            let Some(gone) = login::depart(&mut state, now, name, conn_id, reason) else {
                return;
            };
            let notify = if gone.announce {
                self.presence_targets_now(&state, name, &[reason.event()])
            } else {
                Vec::new()
            };
            (notify, gone)
        };
        if reason != LogoutReason::Shutdown {
            // At shutdown the pairs stay valid: direct messages go on without the server.
            deliver(gone.book);
        }
        // Anything queued between the rescue above and going offline.
        self.rescue_unsent(name, &gone.conn);
        self.record(Event::Seen {
            user: name.to_string(),
            at: now,
        });
        deliver(gone.partners);
        send_to(
            &notify,
            &render::presence(name, PresenceChange::Left(reason)),
        );
    }

    /// Messages that never reached a departed connection's socket: delivered to the user's
    /// current connection if there is one (a replaced login), else put in the mailbox, past
    /// its limit if need be (their senders were told they were sent).
    fn rescue_unsent(&self, name: &str, conn: &Conn) {
        let unsent = conn.take_unsent_mail();
        if unsent.is_empty() {
            return;
        }
        log::warn!(
            "{name}'s connection {} ended with {} undelivered message(s); keeping them",
            conn.id,
            unsent.len()
        );
        for mail in unsent {
            let live = live_line(&mail);
            let mail = Arc::new(mail);
            let try_live = || {
                let current = self.shared.state.lock().conn(name);
                current.is_some_and(|c| c.id != conn.id && c.send_rescuable(&live, &mail))
            };
            if let Err(e) = self.shared.store.requeue(name, &mail, try_live) {
                log::error!("store: could not keep a message for {name}: {e}");
            }
        }
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

    /// `message USER TEXT`: relayed now, or stored for later if USER is offline.
    pub fn message(&self, me: &str, to: &str, text: String) -> Vec<Line> {
        let registry = self.registry();
        let status = match messaging::private(&self.shared.state.lock(), registry, me, to) {
            Ok(status) => status,
            Err(why) => return vec![render::refusal(why)],
        };
        let now = self.now();
        let live = Line::new(Kind::Msg, &[me], text.as_str());
        let mail = Arc::new(Mail {
            from: me.to_string(),
            sent_at: now,
            kind: MailKind::Private,
            text,
            id: crate::store::new_mail_id(),
        });
        let delivered_now = match self.deliver_or_store_logged(to, &live, &mail, true) {
            Ok(now) => now,
            Err(e) => return vec![store_error(&e)],
        };
        let mut lines = Vec::with_capacity(2);
        for event in messaging::private_answer(me, to, status, delivered_now) {
            render::render_into(event, &mut lines);
        }
        lines
    }

    /// Delivers `live` to `to` if online; otherwise stores `mail` (durably, before returning).
    /// Ok(true) = delivered now, Ok(false) = stored.
    fn deliver_or_store(
        &self,
        to: &str,
        live: &Line,
        mail: &Arc<Mail>,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_logged(to, live, mail, false)
    }

    /// [`Hub::deliver_or_store`] that, if `log`, also appends the private message to the
    /// sender's history log with `to`, once, and only if it is delivered or stored: just
    /// before a live send (so a reply is never logged ahead of it) or right after it is
    /// safely in the mailbox.
    fn deliver_or_store_logged(
        &self,
        to: &str,
        live: &Line,
        mail: &Arc<Mail>,
        log: bool,
    ) -> Result<bool, StoreError> {
        let logged = std::cell::Cell::new(false);
        let log_once = || {
            if log && !logged.replace(true) {
                self.append_history(
                    to,
                    HistoryRef {
                        at: mail.sent_at,
                        session: None,
                        sender: &mail.from,
                        text: &mail.text,
                    },
                );
            }
        };
        let try_live = || {
            let conn = self.shared.state.lock().conn(to);
            conn.is_some_and(|c| {
                log_once();
                c.send_rescuable(live, mail)
            })
        };
        if try_live() {
            return Ok(true);
        }
        let stored = self.shared.store.deliver_or_store(to, mail, try_live)?;
        log_once();
        Ok(!stored)
    }

    /// Logs `entry`, which its sender said to `peer`, in their conversation's history.
    fn append_history(&self, peer: &str, entry: HistoryRef<'_>) {
        // Queued at once, before the line that carries it is in any outbox: whatever is said
        // after it (a reply) is queued after it, and a `history` read by whoever has seen
        // the line waits for it. Inside a corked burst the writer is woken at the burst's
        // end, after its lines left.
        if self.shared.history.queue(peer, entry) && !super::cork::wake_history_later() {
            self.wake_history();
        }
    }

    /// Returns once every history entry queued so far is in its file (a clean shutdown
    /// calls it, so the last lines are not left in memory).
    pub fn flush_history(&self) {
        self.shared.history.wait_written();
    }

    /// Wakes the history writer for what a corked burst queued (see `cork`).
    pub(super) fn wake_history(&self) {
        self.shared.history.wake();
    }

    /// The three broadcasts.
    pub fn broadcast(&self, me: &str, audience: &Audience, text: &str) -> Vec<Line> {
        let live = Line::new(Kind::Bcast, &[me], text);
        let echo = self.shared.config.broadcast_echo;
        match audience {
            Audience::Online => {
                let (targets, skipped) =
                    messaging::online_audience(&self.shared.state.lock(), me, echo);
                let wire = live.to_wire();
                let queue = targets.len() >= FAN_OUT_QUEUED;
                let delivered = targets
                    .iter()
                    .filter(|(c, counted)| send_shared(c, &live, &wire, queue) && *counted)
                    .count();
                vec![render::line(ChatEvent::BroadcastSent {
                    delivered,
                    skipped,
                })]
            }
            Audience::Everyone => {
                let names = self.registered_users();
                let now = self.now();
                let mail = Arc::new(Mail {
                    from: me.to_string(),
                    sent_at: now,
                    kind: MailKind::Broadcast,
                    text: text.to_string(),
                    id: crate::store::new_mail_id(),
                });
                let (mut live_n, mut stored_n, mut failed) = (0, 0, Vec::new());
                for to in names.iter().filter(|n| n.as_str() != me) {
                    let Some(invisible) = messaging::reach(&self.shared.state.lock(), me, to)
                    else {
                        continue;
                    };
                    match self.deliver_or_store(to, &live, &mail) {
                        // Invisible users count as offline, as everywhere else.
                        Ok(true) if invisible => stored_n += 1,
                        Ok(true) => live_n += 1,
                        Ok(false) => stored_n += 1,
                        Err(e) => failed.push(store_error(&e)),
                    }
                }
                if echo {
                    self.shared.state.lock().conn(me).map(|c| c.send(&live));
                }
                let mut lines = vec![render::line(ChatEvent::BroadcastKept {
                    live: live_n,
                    stored: stored_n,
                })];
                lines.extend(failed);
                lines
            }
            Audience::Users(users) => {
                let now = self.now();
                let mail = Arc::new(Mail {
                    from: me.to_string(),
                    sent_at: now,
                    kind: MailKind::Broadcast,
                    text: text.to_string(),
                    id: crate::store::new_mail_id(),
                });
                let mut lines = Vec::new();
                let mut seen = BTreeSet::new();
                for to in users {
                    if !seen.insert(to.as_str()) {
                        continue;
                    }
                    let registry = self.registry();
                    let copy = messaging::named_copy(&self.shared.state.lock(), registry, me, to);
                    let invisible = match copy {
                        Ok(invisible) => invisible,
                        Err(why) => {
                            lines.push(render::refusal(why));
                            continue;
                        }
                    };
                    match self.deliver_or_store(to, &live, &mail) {
                        Ok(true) if invisible => lines.push(offline_ack(to)),
                        Ok(true) => lines.push(render::line(ChatEvent::Delivered(to.clone()))),
                        Ok(false) => lines.push(offline_ack(to)),
                        Err(e) => lines.push(store_error(&e)),
                    }
                }
                lines
            }
        }
    }

    /// Sets (or, with an empty text, clears) `me`'s intro.
    pub fn set_intro(&self, me: &str, text: &str) -> Line {
        self.apply_one(|s| blacklist::set_intro(s, me, text))
    }

    /// `history USER [N]`: the last lines of `me`'s conversation with `with`.
    pub fn history(&self, me: &str, with: &str, count: usize) -> Vec<Line> {
        if !self.is_registered(with) {
            return vec![err("unknown-user", format!("No such user: {with}"))];
        }
        let count = if count == 0 {
            DEFAULT_HISTORY_LINES
        } else {
            count
        };
        // Everything queued (this thread's burst included) is written before the log is read.
        self.shared.history.wait_written();
        match self.shared.store.history_tail(me, with, count) {
            Ok(entries) if entries.is_empty() => {
                vec![Line::info(
                    "no-history",
                    format!("No history with {with} yet."),
                )]
            }
            Ok(entries) => {
                let mut lines = vec![Line::new(
                    Kind::List,
                    &["history", &entries.len().to_string()],
                    format!("Your last {} lines with {with}:", entries.len()),
                )];
                lines.extend(entries.iter().map(|e| {
                    Line::new(
                        Kind::Hist,
                        &[
                            &format_utc(e.at),
                            &e.session.map(|s| s.to_string()).unwrap_or_default(),
                            &e.sender,
                        ],
                        // Escaped again: a line logged before the rule grew reaches no
                        // terminal raw (idempotent for the rest).
                        crate::protocol::sanitize_text(&e.text),
                    )
                }));
                lines
            }
            Err(e) => {
                log::error!("store: history {me}/{with}: {e}");
                vec![err("store-failed", "the history could not be read")]
            }
        }
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
        let found = sessions::partner(&self.shared.state.lock(), me);
        let (n, other, conn) = match found {
            Ok(found) => found,
            Err(why) => return vec![render::refusal(why)],
        };
        let unreachable = || vec![render::refusal(Refusal::PartnerGone(other.clone()))];
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
        );
        let said = ChatEvent::Talk {
            session: n,
            from: me.to_string(),
            text: text.to_string(),
        };
        if !conn.send(&render::line(said)) {
            return unreachable();
        }
        Vec::new()
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
            (out, targets)
        };
        let changes = std::mem::take(&mut out.presence);
        let mut reply = self.finish(out);
        for change in changes {
            send_to(&targets, &render::presence(me, change));
        }
        reply.swap_remove(0)
    }

    /// `group ...`
    pub fn group(&self, me: &str, action: &GroupAction) -> Vec<Line> {
        match action {
            GroupAction::Create(name) => {
                let open = self.shared.config.auth == AuthMode::Open;
                if open && !self.shared.store.has_room(NEW_RECORD_BYTES) {
                    return vec![err(
                        "storage-full",
                        "the server's storage is full: no new group can be made now",
                    )];
                }
                let cap = open.then_some(self.shared.config.max_groups_per_ip);
                self.apply(|s| groups::create(s, me, name, cap))
            }
            GroupAction::Join(name) => self.apply(|s| groups::join(s, me, name)),
            GroupAction::Leave(name) => self.apply(|s| groups::leave(s, me, name)),
            GroupAction::List => self.apply(|s| groups::list(s, me)),
            GroupAction::Members(name) => self.apply(|s| groups::members(s, me, name)),
            GroupAction::Send(name, text) => {
                // Each recipient with, under one lock, whether they count as offline
                // (invisible) and their connection if online.
                let audience = messaging::group_audience(&self.shared.state.lock(), me, name);
                let members = match audience {
                    Ok(members) => members,
                    Err(why) => return vec![render::refusal(why)],
                };
                let live = Line::new(Kind::Group, &[name, me], text.clone());
                let mail = Arc::new(Mail {
                    from: me.to_string(),
                    sent_at: self.now(),
                    kind: MailKind::Group(name.clone()),
                    text: text.clone(),
                    id: crate::store::new_mail_id(),
                });
                // Formatted once for the native clients and, for a crowd, queued for the
                // flusher as broadcasts are; the rescue keeps it if the connection dies
                // first. A member who was offline (or whose connection just closed) takes
                // the mailbox path, which also catches a login racing this send.
                let wire = live.to_wire();
                let queue = members.len() >= FAN_OUT_QUEUED;
                let (mut live_n, mut stored_n, mut lines) = (0, 0, Vec::new());
                for (m, invisible, conn) in &members {
                    let sent = conn
                        .as_ref()
                        .is_some_and(|c| c.send_shared_rescuable(&live, &wire, &mail, queue));
                    let result = if sent {
                        Ok(true)
                    } else {
                        self.deliver_or_store(m, &live, &mail)
                    };
                    match result {
                        // Invisible members count as offline, as everywhere else.
                        Ok(true) if *invisible => stored_n += 1,
                        Ok(true) => live_n += 1,
                        Ok(false) => stored_n += 1,
                        Err(e) => lines.push(store_error(&e)),
                    }
                }
                let sent = ChatEvent::GroupSent {
                    group: name.clone(),
                    live: live_n,
                    stored: stored_n,
                };
                lines.insert(0, render::line(sent));
                lines
            }
        }
    }

    /// Every connection, for a shutdown notice.
    pub fn online_count(&self) -> usize {
        self.shared.state.lock().online.len()
    }
}

/// Read-only views for doors that present the hub in another protocol (the IRC door's
/// NAMES, WHO, WHOIS, ISON, LUSERS and channel lookups). IRC compares names ignoring ASCII
/// case, lanchat exactly, so lookups try the exact name first.
impl Hub {
    /// The online users `viewer` may see (not invisible, not blocking `viewer`), viewer
    /// included, with their status, sorted by name; and how many are online in all.
    pub fn visible_online(&self, viewer: &str) -> (Vec<(String, Status)>, usize) {
        let state = self.shared.state.lock();
        let users = state
            .online
            .names_in_order()
            .filter(|(n, seen)| {
                debug_assert_eq!(**seen, state.seen_of(n), "the online list drifted for {n}");
                state.shown_to(n, seen, viewer)
            })
            .map(|(n, seen)| (n.clone(), seen.status))
            .collect();
        (users, state.online.len())
    }

    /// The online user `viewer` may see whose name is `name` (or equals it ignoring ASCII
    /// case), with their status and intro.
    pub fn find_online(&self, viewer: &str, name: &str) -> Option<(String, Status, String)> {
        let state = self.shared.state.lock();
        let found = if state.online.contains_key(name) {
            Some(name.to_string())
        } else {
            state
                .online
                .keys()
                .find(|n| n.eq_ignore_ascii_case(name))
                .cloned()
        }?;
        if !state.visible_to(&found, viewer) {
            return None;
        }
        let intro = state
            .users
            .get(&found)
            .and_then(|u| u.intro.clone())
            .unwrap_or_default();
        let status = state.status_of(&found);
        Some((found, status, intro))
    }

    /// Whether anyone, visible or not, is online as `name` or a name equal to it ignoring
    /// ASCII case other than `name` itself (for IRC's case-insensitive nicks).
    pub fn online_case_twin(&self, name: &str) -> bool {
        self.shared.state.lock().online.has_case_twin(name)
    }

    /// The group called `name` (or equal to it ignoring ASCII case): its real name and its
    /// members, each with whether `viewer` may see them online.
    pub fn group_view(&self, viewer: &str, name: &str) -> Option<(String, Vec<(String, bool)>)> {
        let state = self.shared.state.lock();
        let (real, group) = match state.groups.get_key_value(name) {
            Some(found) => found,
            None => state
                .groups
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))?,
        };
        let members = group
            .members
            .iter()
            .map(|m| {
                let online = state.online.contains_key(m) && state.visible_to(m, viewer);
                (m.clone(), online)
            })
            .collect();
        Some((real.clone(), members))
    }

    /// Every group: its name, its number of members and whether `user` is one of them.
    pub fn groups_with(&self, user: &str) -> Vec<(String, usize, bool)> {
        let state = self.shared.state.lock();
        state
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), g.members.len(), g.members.contains(user)))
            .collect()
    }
}

fn offline_ack(to: &str) -> Line {
    ok(
        "queued",
        format!("(Receiver {to} is currently offline, message will be delivered when they log in next time)"),
    )
}

fn mail_line(m: &Mail) -> Line {
    let kind = match &m.kind {
        MailKind::Private => "private".to_string(),
        MailKind::Broadcast => "broadcast".to_string(),
        MailKind::Group(g) => format!("group:{g}"),
    };
    Line::new(
        Kind::Mail,
        &[&m.from, &format_utc(m.sent_at), &kind, &m.id],
        // Escaped again as it is read back, like intros and history: a mailbox may predate
        // the rule or have been edited by hand.
        crate::protocol::sanitize_text(&m.text),
    )
}

/// How a stored message looks when delivered live.
fn live_line(m: &Mail) -> Line {
    match &m.kind {
        MailKind::Private => Line::new(Kind::Msg, &[&m.from], m.text.clone()),
        MailKind::Broadcast => Line::new(Kind::Bcast, &[&m.from], m.text.clone()),
        MailKind::Group(g) => Line::new(Kind::Group, &[g, &m.from], m.text.clone()),
    }
}

/// What follows WELCOME: the offline mail (each `MAIL` line with the id of the mail it
/// carries), or word that there is none.
fn opening_lines(mail: &[Mail]) -> Vec<(Line, Option<String>)> {
    if mail.is_empty() {
        return vec![(
            Line::info("no-mail", "No messages received while offline."),
            None,
        )];
    }
    let mut lines = vec![(
        Line::info("mail", format!("Your offline messages ({}):", mail.len())),
        None,
    )];
    lines.extend(mail.iter().map(|m| (mail_line(m), Some(m.id.clone()))));
    lines
}

impl Hub {
    /// Under the state lock: who gets `subject`'s presence `events` one line each now, or
    /// nobody when they are left for a summary (in a crowd, see [`presence`]).
    fn presence_targets_now(
        &self,
        state: &State,
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
fn presence_targets(state: &State, subject: &str) -> Vec<Arc<Conn>> {
    state
        .online
        .iter()
        .filter(|(n, _)| n.as_str() != subject && !state.blocks(subject, n))
        .map(|(_, o)| Arc::clone(&o.conn))
        .collect()
}

fn send_to(conns: &[Arc<Conn>], line: &Line) {
    let wire = line.to_wire();
    let queue = conns.len() >= FAN_OUT_QUEUED;
    for c in conns {
        send_shared(c, line, &wire, queue);
    }
}

/// From this many recipients on, a line for many (a broadcast to everyone online, a
/// presence notice) is queued for the flusher thread instead of written by the sender:
/// lines bound for one client then share a `send`. Fewer recipients are written at once,
/// which is quicker for each of them.
pub(super) const FAN_OUT_QUEUED: usize = 8;

/// One recipient of a line for many: written now, or `queue`d for the flusher.
fn send_shared(conn: &Arc<Conn>, line: &Line, wire: &str, queue: bool) -> bool {
    if queue {
        conn.queue_shared(line, wire)
    } else {
        conn.send_shared(line, wire)
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
        conn.send(&render::line(event));
    }
}

/// Acts on other users for doors whose channels have operators (the IRC door's KICK and
/// INVITE); the native protocol has no such commands.
impl Hub {
    /// Removes `target` from `group` (deleting the group if it empties), as if they had
    /// left; false when there is no such group or they were not in it.
    pub fn group_remove_member(&self, group: &str, target: &str) -> bool {
        let left = groups::remove_member(&mut self.shared.state.lock(), group, target);
        left.map(|record| self.record(record)).is_some()
    }

    /// Sends `line` to `name` if online; whether it was.
    pub fn tell(&self, name: &str, line: &Line) -> bool {
        let conn = self.shared.state.lock().conn(name);
        conn.is_some_and(|c| c.send(line))
    }
}
