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
mod quota;

use super::conn::Conn;
use super::lockout::{AfterFailure, Lockouts, Reservation};
use super::verifier::{CheckCount, Verifier};
use crate::clock::{format_utc, Clock};
use crate::config::{AuthMode, Config, DuplicateLogin, LockoutKey};
use crate::credentials::Credentials;
use crate::protocol::{
    valid_username, Audience, GroupAction, Kind, Line, Status, DEFAULT_HISTORY_LINES,
};
use crate::store::{Directory, Event, HistoryRef, Mail, MailKind, Store, StoreError, UserRecord};
use parking_lot::Mutex;
use rand::Rng;
// The hub's maps, keyed by user names, hash with foldhash (seeded per process) instead of
// std's SipHash, which cost about 160 instructions per name, five names per private
// message (callgrind, pairs 64).
use foldhash::{HashMap, HashSet};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// A logged-in user.
struct Online {
    /// Where their lines go.
    conn: Arc<Conn>,
    /// Their chat session, if any (its number).
    session: Option<u32>,
    /// The port their client takes direct messages on (`p2p PORT`), if it does.
    p2p_port: Option<u16>,
}

/// The logged-in users, by name, in name order and by ASCII-folded name: a lobby's NAMES
/// lists them all in order, and an IRC nick must not differ from an online one only in
/// case; sorting them, and scanning them for a case twin, per IRC login was most of what a
/// login cost in a crowd. Reads go through `Deref` to the map; changes go through
/// [`OnlineUsers::insert`] and [`OnlineUsers::remove`], which keep the three in step.
#[derive(Default)]
struct OnlineUsers {
    by_name: HashMap<String, Online>,
    /// With what others may see of each (a copy of their directory record's status and
    /// whether they block anyone, kept by [`State::refresh_seen`]): a NAMES reads only this.
    in_order: std::collections::BTreeMap<String, Seen>,
    /// How many online names fold to each lowercase name.
    folded: HashMap<String, usize>,
}

/// A user's status as their directory record has it (no record, or none set: available).
fn status_in(record: Option<&UserRecord>) -> Status {
    record
        .and_then(|u| u.status.as_deref())
        .and_then(Status::parse)
        .unwrap_or(Status::Available)
}

/// What decides whether an online user is shown to others, from their directory record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    status: Status,
    blocks_anyone: bool,
}

impl OnlineUsers {
    fn insert(&mut self, name: &str, user: Online, seen: Seen) {
        if self.by_name.insert(name.to_string(), user).is_none() {
            *self.folded.entry(name.to_ascii_lowercase()).or_default() += 1;
        }
        self.in_order.insert(name.to_string(), seen);
    }

    /// Records what others may see of `name`, if online.
    fn set_seen(&mut self, name: &str, seen: Seen) {
        if let Some(s) = self.in_order.get_mut(name) {
            *s = seen;
        }
    }

    fn remove(&mut self, name: &str) -> Option<Online> {
        let user = self.by_name.remove(name)?;
        self.in_order.remove(name);
        let fold = name.to_ascii_lowercase();
        if let Some(n) = self.folded.get_mut(&fold) {
            *n -= 1;
            if *n == 0 {
                self.folded.remove(&fold);
            }
        }
        Some(user)
    }

    /// Whether a name other than `name` that equals it ignoring ASCII case is online.
    fn has_case_twin(&self, name: &str) -> bool {
        let same_fold = self
            .folded
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0);
        same_fold > usize::from(self.by_name.contains_key(name))
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Online> {
        self.by_name.get_mut(name)
    }

    /// Every name, in order, with what others may see of them.
    fn names_in_order(&self) -> impl Iterator<Item = (&String, &Seen)> {
        self.in_order.iter()
    }
}

impl std::ops::Deref for OnlineUsers {
    type Target = HashMap<String, Online>;

    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

/// A two-person chat session (seed 000).
#[derive(Clone, Debug)]
struct ChatSession {
    /// Who asked.
    from: String,
    /// Who was asked.
    to: String,
    /// False while waiting for `to` to accept.
    started: bool,
    /// Order of requests, so a bare `accept` answers the most recent one.
    asked: u64,
}

/// Everything behind the main lock.
#[derive(Default)]
struct State {
    /// Logged-in users by name.
    online: OnlineUsers,
    /// What is known of every user who ever logged in (mirrors the store's journal).
    users: HashMap<String, UserRecord>,
    /// Chat sessions by number, requested or started.
    sessions: HashMap<u32, ChatSession>,
    /// Groups by name.
    groups: std::collections::BTreeMap<String, crate::store::Group>,
    /// Counter for [`ChatSession::asked`] and address requests: the order of all requests.
    requests: u64,
    /// Address-exchange requests waiting for an answer: (from, to) -> (order, unix time).
    addr_requests: HashMap<(String, String), (u64, u64)>,
    /// Users who exchanged addresses, each pair as (smaller name, larger name).
    pairs: HashSet<(String, String)>,
    /// In open mode: users created per address (`max_new_users_per_ip`).
    new_users: quota::PerAddress,
    /// In open mode: groups existing now per creating address (`max_groups_per_ip`), and
    /// which address created each, to count it down when the group is deleted.
    groups_made: quota::PerAddress,
    /// The creating address of each group counted in `groups_made`.
    group_origin: HashMap<String, IpAddr>,
}

impl State {
    fn status_of(&self, name: &str) -> Status {
        status_in(self.users.get(name))
    }

    /// Whether `owner` has blocked `other`.
    fn blocks(&self, owner: &str, other: &str) -> bool {
        self.users
            .get(owner)
            .is_some_and(|u| u.blocked.contains(other))
    }

    /// What others may see of `name`, from their record.
    fn seen_of(&self, name: &str) -> Seen {
        let record = self.users.get(name);
        Seen {
            status: status_in(record),
            blocks_anyone: record.is_some_and(|u| !u.blocked.is_empty()),
        }
    }

    /// Whether `viewer` may see that `subject`, of whom others see `seen`, is online: the
    /// one rule for it. The directory is read only if `subject` blocks someone.
    fn shown_to(&self, subject: &str, seen: &Seen, viewer: &str) -> bool {
        subject == viewer
            || (seen.status != Status::Invisible
                && !(seen.blocks_anyone && self.blocks(subject, viewer)))
    }

    /// Copies a change of `name`'s status or blacklist to the online list (a no-op if
    /// they are offline): every change of either goes through here.
    fn refresh_seen(&mut self, name: &str) {
        let seen = self.seen_of(name);
        self.online.set_seen(name, seen);
    }

    /// Whether `viewer` may see that `subject` is online.
    fn visible_to(&self, subject: &str, viewer: &str) -> bool {
        self.shown_to(subject, &self.seen_of(subject), viewer)
    }

    fn conn(&self, name: &str) -> Option<Arc<Conn>> {
        self.online.get(name).map(|o| Arc::clone(&o.conn))
    }

    /// Takes `member` out of `group`, deleting the group when it empties (and counting it
    /// down for the address that made it); whether they were a member.
    fn leave_group(&mut self, group: &str, member: &str) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        let left = g.members.remove(member);
        if g.members.is_empty() {
            self.groups.remove(group);
            if let Some(ip) = self.group_origin.remove(group) {
                self.groups_made.remove(ip);
            }
        }
        left
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

/// Why a logout happened; decides what others are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutReason {
    /// The user asked.
    Requested,
    /// The connection dropped (EOF, reset, or dropped as a stuck reader).
    Dropped,
    /// The idle timeout.
    Timeout,
    /// A client that promised heartbeats went silent.
    Heartbeat,
    /// Disconnected for flooding: it kept sending faster than the rate limit.
    Flood,
    /// The server is shutting down (nobody is told individually).
    Shutdown,
}

impl LogoutReason {
    fn event(self) -> &'static str {
        match self {
            LogoutReason::Requested | LogoutReason::Shutdown => "logout",
            LogoutReason::Dropped | LogoutReason::Flood => "dropped",
            LogoutReason::Timeout | LogoutReason::Heartbeat => "timeout",
        }
    }
}

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
            return NameCheck::Retry(err(
                "already-online",
                format!("{name} is already logged in; only one login at a time."),
            ));
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
        tell_partners(&partners, name);
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
        let presence = Line::new(
            Kind::Presence,
            &[name, "login"],
            format!("*** {name} has joined the chat ***"),
        );
        send_to(&notify, &presence);
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
    ) -> Result<(Option<Arc<Conn>>, Vec<Arc<Conn>>, Vec<(u32, Arc<Conn>)>), Line> {
        let mut state = self.shared.state.lock();
        let replaced = match state.online.get(name) {
            Some(_) if self.shared.config.duplicate_login == DuplicateLogin::Reject => {
                return Err(err(
                    "already-online",
                    format!("{name} is already logged in; only one login at a time."),
                ));
            }
            Some(_) => state.online.remove(name).map(|o| o.conn),
            None => None,
        };
        let cap = self.shared.config.max_new_users_per_ip;
        if self.shared.config.auth == AuthMode::Open
            && !state.users.contains_key(name)
            && !state.new_users.try_add(conn.peer.ip(), cap)
        {
            return Err(err(
                "user-limit",
                format!("{cap} new users were already made from your address; log in with a name used before"),
            ));
        }
        let (partners, book) = if replaced.is_some() {
            // The new client has an empty address book: the old pairs are gone.
            (
                end_session_locked(&mut state, name),
                forget_addresses_locked(&mut state, name),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let seen = state.seen_of(name);
        state.online.insert(
            name,
            Online {
                conn: Arc::clone(conn),
                session: None,
                p2p_port: None,
            },
            seen,
        );
        state.users.entry(name.to_string()).or_default();
        let mut lines = vec![Line::new(
            Kind::Welcome,
            &[name],
            "Login successful, Welcome to lanchat! Type 'help' for the commands.",
        )];
        let mut mail_ids = vec![None];
        for (line, id) in opening {
            lines.push(line.clone());
            mail_ids.push(id.clone());
        }
        let status = state.status_of(name);
        if status != Status::Available {
            lines.push(Line::info(
                "status",
                format!("Your status is {status} (change it with 'status available')."),
            ));
            mail_ids.push(None);
        }
        if mail_ids.iter().any(Option::is_some) {
            conn.enqueue_tracked(&lines, &mail_ids);
        } else {
            conn.enqueue_all(&lines);
        }
        let notify = if replaced.is_none() && status != Status::Invisible {
            self.presence_targets_now(&state, name, &["login"])
        } else {
            Vec::new()
        };
        drop(state);
        send_each(&book);
        Ok((replaced, notify, partners))
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
        let (notify, partner, conn) = {
            let mut state = self.shared.state.lock();
            if state.online.get(name).map(|o| o.conn.id) != Some(conn_id) {
                return;
            }
            let partner = end_session_locked(&mut state, name);
            let book = forget_addresses_locked(&mut state, name);
            let conn = state.online.remove(name).map(|o| o.conn);
            state.users.entry(name.to_string()).or_default().last_seen = Some(now);
            let notify =
                if reason != LogoutReason::Shutdown && state.status_of(name) != Status::Invisible {
                    self.presence_targets_now(&state, name, &[reason.event()])
                } else {
                    Vec::new()
                };
            (notify, (partner, book), conn)
        };
        let (partner, book) = partner;
        if reason != LogoutReason::Shutdown {
            // At shutdown the pairs stay valid: direct messages go on without the server.
            send_each(&book);
        }
        if let Some(conn) = conn {
            // Anything queued between the rescue above and going offline.
            self.rescue_unsent(name, &conn);
        }
        self.record(Event::Seen {
            user: name.to_string(),
            at: now,
        });
        tell_partners(&partner, name);
        let text = match reason {
            LogoutReason::Timeout => format!("*** {name} has left the chat (timed out) ***"),
            LogoutReason::Dropped => format!("*** {name} has left the chat (connection lost) ***"),
            LogoutReason::Heartbeat => {
                format!("*** {name} has left the chat (heartbeat timeout) ***")
            }
            LogoutReason::Flood => format!("*** {name} has left the chat (flooding) ***"),
            _ => format!("*** {name} has left the chat ***"),
        };
        send_to(
            &notify,
            &Line::new(Kind::Presence, &[name, reason.event()], text),
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
        self.online_users(me, false, "whoelse", "The currently online users are:")
    }

    /// `list` (seed 004): every signed-in user visible to `me`, `me` included.
    pub fn signed_in(&self, me: &str) -> Vec<Line> {
        self.online_users(me, true, "list", "Signed in users:")
    }

    /// The online users visible to `me`, as list `name`, with `me` or without.
    fn online_users(&self, me: &str, include_me: bool, name: &str, title: &str) -> Vec<Line> {
        let state = self.shared.state.lock();
        let mut names: Vec<&String> = state
            .online
            .keys()
            .filter(|n| {
                if n.as_str() == me {
                    include_me
                } else {
                    state.visible_to(n, me)
                }
            })
            .collect();
        names.sort();
        let mut lines = vec![Line::new(
            Kind::List,
            &[name, &names.len().to_string()],
            if names.is_empty() {
                format!("{title} (Not found)")
            } else {
                title.to_string()
            },
        )];
        for n in names {
            lines.push(user_line(&state, n, None));
        }
        lines
    }

    /// `wholast N`: users online now or who logged out in the last `minutes`.
    pub fn wholast(&self, me: &str, minutes: u32) -> Vec<Line> {
        let since = self.now().saturating_sub(u64::from(minutes) * 60);
        let state = self.shared.state.lock();
        let mut entries: Vec<(&String, Option<u64>)> = Vec::new();
        for (name, record) in &state.users {
            if name == me || state.blocks(name, me) {
                continue;
            }
            let visibly_online =
                state.online.contains_key(name) && state.status_of(name) != Status::Invisible;
            if visibly_online {
                entries.push((name, None));
            } else if let Some(t) = record.last_seen.filter(|t| *t >= since) {
                entries.push((name, Some(t)));
            }
        }
        entries.sort();
        let mut lines = vec![Line::new(
            Kind::List,
            &["wholast", &entries.len().to_string()],
            format!(
                "The users that are online in the last {minutes} minutes are:{}",
                if entries.is_empty() {
                    " (Not found)"
                } else {
                    ""
                }
            ),
        )];
        for (name, seen) in entries {
            lines.push(user_line(&state, name, seen));
        }
        lines
    }

    /// `message USER TEXT`: relayed now, or stored for later if USER is offline.
    pub fn message(&self, me: &str, to: &str, text: String) -> Vec<Line> {
        if !self.is_registered(to) {
            return vec![err(
                "unknown-user",
                format!("(Input includes a typo on receiver names: {to}, not delivered)"),
            )];
        }
        let (blocked, status) = {
            let state = self.shared.state.lock();
            (state.blocks(to, me), state.status_of(to))
        };
        if blocked {
            return vec![err(
                "blocked",
                format!("{to} has blocked you; your message was not delivered."),
            )];
        }
        let now = self.now();
        let live = Line::new(Kind::Msg, &[me], text.as_str());
        let mail = Arc::new(Mail {
            from: me.to_string(),
            sent_at: now,
            kind: MailKind::Private,
            text,
            id: crate::store::new_mail_id(),
        });
        let mut lines = match self.deliver_or_store_logged(to, &live, &mail, true) {
            Ok(true) if status == Status::Invisible && to != me => vec![offline_ack(to)],
            Ok(true) => vec![ok("sent", format!("Your message was sent to {to}."))],
            Ok(false) => vec![offline_ack(to)],
            Err(e) => return vec![store_error(&e)],
        };
        if status == Status::Busy && to != me {
            lines.push(Line::info(
                "busy",
                format!("{to} is busy and may answer later."),
            ));
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
                // Each target with whether it shows in the count: not the sender's own echo,
                // and not invisible users (who must look offline).
                let (targets, skipped) = {
                    let state = self.shared.state.lock();
                    let mut skipped = 0;
                    let mut targets: Vec<(Arc<Conn>, bool)> = Vec::new();
                    for (n, o) in state.online.iter() {
                        let visible = n != me && state.status_of(n) != Status::Invisible;
                        if n == me && !echo {
                            continue;
                        }
                        if state.blocks(n, me) {
                            skipped += usize::from(visible);
                            continue;
                        }
                        targets.push((Arc::clone(&o.conn), visible));
                    }
                    (targets, skipped)
                };
                let wire = live.to_wire();
                let queue = targets.len() >= FAN_OUT_QUEUED;
                let delivered = targets
                    .iter()
                    .filter(|(c, counted)| send_shared(c, &live, &wire, queue) && *counted)
                    .count();
                let mut text = format!(
                    "Your broadcast was sent to {delivered} online user{}.",
                    if delivered == 1 { "" } else { "s" }
                );
                if skipped > 0 {
                    text.push_str(&format!(
                        " {skipped} user{} did not receive it because they blocked you.",
                        if skipped == 1 { "" } else { "s" }
                    ));
                }
                vec![ok("broadcast", text)]
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
                    let (blocked, invisible) = {
                        let state = self.shared.state.lock();
                        (
                            state.blocks(to, me),
                            state.status_of(to) == Status::Invisible,
                        )
                    };
                    if blocked {
                        continue;
                    }
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
                let mut lines = vec![ok(
                    "broadcast",
                    format!(
                        "Your broadcast was sent to {live_n} online user(s) and will be delivered to {stored_n} offline user(s) when they log in."
                    ),
                )];
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
                    if !valid_username(to) || !self.is_registered(to) {
                        lines.push(err(
                            "unknown-user",
                            format!(
                                "(Input includes a typo on receiver names: {}, not delivered)",
                                crate::protocol::sanitize_text(to)
                            ),
                        ));
                        continue;
                    }
                    let (blocked, invisible) = {
                        let state = self.shared.state.lock();
                        (
                            state.blocks(to, me),
                            state.status_of(to) == Status::Invisible,
                        )
                    };
                    if blocked {
                        lines.push(err(
                            "blocked",
                            format!("{to} has blocked you; not delivered to {to}."),
                        ));
                        continue;
                    }
                    match self.deliver_or_store(to, &live, &mail) {
                        Ok(true) if invisible => lines.push(offline_ack(to)),
                        Ok(true) => lines.push(ok("sent", format!("Delivered to {to}."))),
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
        {
            let mut state = self.shared.state.lock();
            let user = state.users.entry(me.to_string()).or_default();
            user.intro = (!text.is_empty()).then(|| text.to_string());
        }
        self.record(Event::Intro {
            user: me.to_string(),
            text: text.to_string(),
        });
        if text.is_empty() {
            ok("intro", "Your personal introduction was cleared.")
        } else {
            ok("intro", "Your personal introduction was saved.")
        }
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
        if with == me {
            return vec![err("self", "You cannot chat with yourself.")];
        }
        if !self.is_registered(with) {
            return vec![err("unknown-user", format!("No such user: {with}"))];
        }
        let unreachable = || {
            vec![err(
                "unreachable",
                format!("Correspondent unreachable: {with} is offline, busy in another session or not accepting chats."),
            )]
        };
        let (id, target) = {
            let mut state = self.shared.state.lock();
            let my_session = state.online.get(me).and_then(|o| o.session);
            if let Some(id) = my_session {
                return vec![err(
                    "in-session",
                    format!("You are already in chat session {id}; end it first."),
                )];
            }
            let Some(target) = state.online.get(with) else {
                return unreachable();
            };
            if target.session.is_some()
                || state.blocks(with, me)
                || state.status_of(with) == Status::Invisible
                || state
                    .sessions
                    .values()
                    .any(|s| !s.started && ((s.from == me && s.to == with) || s.from == with))
            {
                return unreachable();
            }
            let target = Arc::clone(&target.conn);
            let id = new_session_id(&state);
            state.requests += 1;
            let asked = state.requests;
            state.sessions.insert(
                id,
                ChatSession {
                    from: me.to_string(),
                    to: with.to_string(),
                    started: false,
                    asked,
                },
            );
            (id, target)
        };
        target.send(&Line::new(
            Kind::Session,
            &["request", &id.to_string(), me],
            format!("{me} wants to chat with you (session {id}). Type 'accept' or 'decline'."),
        ));
        vec![ok(
            "chat-requested",
            format!("Asked {with} to chat (session {id}); waiting for an answer."),
        )]
    }

    /// `accept` / `decline`: answers the most recent request to `me` (from `from`, if
    /// given), a chat request or an address exchange.
    pub fn answer(&self, me: &str, from: Option<&str>, accept: bool) -> Vec<Line> {
        match self.newest_address_request(me, from) {
            Some(requester) => self.answer_address(me, &requester, accept),
            None => self.answer_chat(me, from, accept),
        }
    }

    /// Seed 002: a blank line answers `[y/N]` with no, so it declines the newest pending
    /// request to `me` when that is an address exchange; `None` (and the line is ignored)
    /// otherwise.
    pub fn decline_address_on_blank(&self, me: &str) -> Option<Vec<Line>> {
        let requester = self.newest_address_request(me, None)?;
        Some(self.answer_address(me, &requester, false))
    }

    /// Who sent the address exchange that `accept`/`decline` would answer now: the newest
    /// pending request to `me` (from `from`, if given), if it is an address exchange rather
    /// than a chat request.
    fn newest_address_request(&self, me: &str, from: Option<&str>) -> Option<String> {
        let state = self.shared.state.lock();
        let chat = state
            .sessions
            .values()
            .filter(|s| !s.started && s.to == me && from.is_none_or(|f| s.from == f))
            .map(|s| s.asked)
            .max();
        let address = state
            .addr_requests
            .iter()
            .filter(|((f, t), _)| t == me && from.is_none_or(|x| f == x))
            .max_by_key(|(_, (asked, _))| *asked)
            .map(|((f, _), (asked, _))| (f.clone(), *asked));
        match (chat, address) {
            (Some(c), Some((f, a))) if a > c => Some(f),
            (None, Some((f, _))) => Some(f),
            _ => None,
        }
    }

    /// `accept` / `decline` of a pending chat request to `me` (from `from`, or the latest).
    fn answer_chat(&self, me: &str, from: Option<&str>, accept: bool) -> Vec<Line> {
        let (id, requester, conn) = {
            let mut state = self.shared.state.lock();
            let pending = state
                .sessions
                .iter()
                .filter(|(_, s)| !s.started && s.to == me && from.is_none_or(|f| s.from == f))
                .max_by_key(|(_, s)| s.asked)
                .map(|(id, s)| (*id, s.from.clone()));
            let Some((id, requester)) = pending else {
                return vec![err(
                    "nothing-pending",
                    "There is no request waiting for an answer.",
                )];
            };
            let requester_online = state
                .online
                .get(&requester)
                .map(|o| (o.session, Arc::clone(&o.conn)));
            let my_session = state.online.get(me).and_then(|o| o.session);
            if let (true, Some(n)) = (accept, my_session) {
                // The request stays pending: it can be accepted once this session ends.
                return vec![err(
                    "in-session",
                    format!(
                        "You are already in chat session {n}; end it before accepting {requester}."
                    ),
                )];
            }
            match requester_online {
                Some((None, conn)) => {
                    if accept {
                        if let Some(s) = state.sessions.get_mut(&id) {
                            s.started = true;
                        }
                        for n in [me, requester.as_str()] {
                            if let Some(o) = state.online.get_mut(n) {
                                o.session = Some(id);
                            }
                        }
                    } else {
                        state.sessions.remove(&id);
                    }
                    (id, requester, conn)
                }
                _ => {
                    state.sessions.remove(&id);
                    return vec![err(
                        "unreachable",
                        format!("{requester} is no longer available for session {id}."),
                    )];
                }
            }
        };
        let id_s = id.to_string();
        if accept {
            conn.send(&Line::new(
                Kind::Session,
                &["started", &id_s, me],
                format!("Chat started with {me} (session {id}). Lines you type now go to {me}; 'end' to stop."),
            ));
            vec![Line::new(
                Kind::Session,
                &["started", &id_s, &requester],
                format!("Chat started with {requester} (session {id}). Lines you type now go to {requester}; 'end' to stop."),
            )]
        } else {
            conn.send(&Line::new(
                Kind::Session,
                &["declined", &id_s, me],
                format!("{me} declined your chat request."),
            ));
            vec![ok(
                "declined",
                format!("You declined {requester}'s chat request."),
            )]
        }
    }

    /// `end [N]`: ends `me`'s session (or withdraws a pending request).
    pub fn end_session(&self, me: &str, id: Option<u32>) -> Vec<Line> {
        let ended = {
            let mut state = self.shared.state.lock();
            let current = state.online.get(me).and_then(|o| o.session);
            let target = match (id, current) {
                (Some(n), _) => Some(n),
                (None, Some(n)) => Some(n),
                (None, None) => state
                    .sessions
                    .iter()
                    .find(|(_, s)| !s.started && s.from == me)
                    .map(|(id, _)| *id),
            };
            let Some(n) = target else {
                return vec![err("no-session", "You are not in a chat session.")];
            };
            match state.sessions.get(&n) {
                Some(s) if s.from == me || s.to == me => {}
                _ => {
                    return vec![err(
                        "no-session",
                        format!("You are not part of chat session {n}."),
                    )]
                }
            }
            let s = state.sessions.remove(&n).expect("checked above");
            let other = if s.from == me { s.to } else { s.from };
            for who in [me, other.as_str()] {
                if let Some(o) = state.online.get_mut(who).filter(|o| o.session == Some(n)) {
                    o.session = None;
                }
            }
            (n, other.clone(), state.conn(&other))
        };
        let (n, other, conn) = ended;
        let n_s = n.to_string();
        if let Some(conn) = conn {
            conn.send(&Line::new(
                Kind::Session,
                &["ended", &n_s, me],
                format!("Chat ended: {me} ended session {n}."),
            ));
        }
        vec![Line::new(
            Kind::Session,
            &["ended", &n_s, &other],
            format!("Chat ended (session {n} with {other})."),
        )]
    }

    /// `snum`: the current session number.
    pub fn session_number(&self, me: &str) -> Line {
        let state = self.shared.state.lock();
        match state.online.get(me).and_then(|o| o.session) {
            Some(n) => {
                let s = &state.sessions[&n];
                let other = if s.from == me { &s.to } else { &s.from };
                Line::ok(
                    "snum",
                    format!("Current chat session ID: {n} (with {other})"),
                )
            }
            None => Line::info("no-session", "You are not in a chat session."),
        }
    }

    /// Whether someone is waiting for `me` to accept or decline.
    pub fn has_pending(&self, me: &str) -> bool {
        let state = self.shared.state.lock();
        state.sessions.values().any(|s| !s.started && s.to == me)
            || state.addr_requests.keys().any(|(_, to)| to == me)
    }

    /// `p2p PORT`: where `me`'s client takes direct messages.
    pub fn set_p2p_port(&self, me: &str, port: u16) -> Line {
        if let Some(o) = self.shared.state.lock().online.get_mut(me) {
            o.p2p_port = Some(port);
        }
        ok(
            "p2p",
            format!("Direct messages will be accepted on port {port}."),
        )
    }

    /// `getaddress USER` (seed 002): asks USER to exchange addresses with `me`.
    pub fn get_address(&self, me: &str, with: &str) -> Vec<Line> {
        if with == me {
            return vec![err("self", "You cannot exchange addresses with yourself.")];
        }
        if !self.is_registered(with) {
            return vec![err("unknown-user", format!("No such user: {with}"))];
        }
        let now = self.now();
        let target = {
            let mut state = self.shared.state.lock();
            if state.blocks(with, me) {
                return vec![err(
                    "blocked",
                    format!("{with} has blocked you; you cannot exchange addresses."),
                )];
            }
            let Some(target) = state
                .online
                .get(with)
                .filter(|_| state.visible_to(with, me))
            else {
                return vec![err("unreachable", format!("{with} is not online."))];
            };
            if target.p2p_port.is_none() {
                return vec![err(
                    "no-p2p",
                    format!(
                        "{with}'s client does not take direct messages (only lanchat-client does)."
                    ),
                )];
            }
            if state.online.get(me).and_then(|o| o.p2p_port).is_none() {
                return vec![err(
                    "no-p2p",
                    "Your client does not take direct messages; use lanchat-client for them.",
                )];
            }
            if state.pairs.contains(&pair_key(me, with)) {
                return vec![err(
                    "already-paired",
                    format!("{with} is already in your address book."),
                )];
            }
            let target = Arc::clone(&target.conn);
            state.requests += 1;
            let asked = state.requests;
            state
                .addr_requests
                .insert((me.to_string(), with.to_string()), (asked, now));
            target
        };
        target.send(&Line::new(
            Kind::Addr,
            &["request", me, "", ""],
            format!("User {me} wants to exchange private messages with you. Would you like to accept? [y/N]"),
        ));
        vec![ok(
            "address-requested",
            format!("Asked {with} to exchange addresses; waiting for an answer (up to a minute)."),
        )]
    }

    /// Answers `requester`'s address request to `me`.
    fn answer_address(&self, me: &str, requester: &str, accept: bool) -> Vec<Line> {
        let key = (requester.to_string(), me.to_string());
        let found = {
            let mut state = self.shared.state.lock();
            if state.addr_requests.remove(&key).is_none() {
                return vec![err(
                    "nothing-pending",
                    "There is no request waiting for an answer.",
                )];
            }
            let both = (state.online.get(me), state.online.get(requester));
            match both {
                (Some(a), Some(b)) if accept => {
                    let (Some(port_a), Some(port_b)) = (a.p2p_port, b.p2p_port) else {
                        return vec![err(
                            "unreachable",
                            format!("{requester} no longer takes direct messages."),
                        )];
                    };
                    let mine = direct_address(&a.conn, port_a, &b.conn);
                    let theirs = direct_address(&b.conn, port_b, &a.conn);
                    let (conn_a, conn_b) = (Arc::clone(&a.conn), Arc::clone(&b.conn));
                    state.pairs.insert(pair_key(me, requester));
                    Some((conn_a, conn_b, mine, theirs))
                }
                (_, Some(b)) if !accept => {
                    b.conn.send(&Line::new(
                        Kind::Addr,
                        &["declined", me, "", ""],
                        format!("{me} declined to exchange addresses with you."),
                    ));
                    None
                }
                _ => {
                    return vec![err(
                        "unreachable",
                        format!("{requester} is no longer online."),
                    )]
                }
            }
        };
        let Some((conn_me, conn_requester, my_addr, their_addr)) = found else {
            return vec![ok(
                "declined",
                format!("You declined {requester}'s request."),
            )];
        };
        let secret = new_pairing_secret();
        // The accepting side first: the requester may send a direct message at once, and
        // the accepting client should know the secret by the time it arrives.
        conn_me.send(&Line::new(
            Kind::Addr,
            &["granted", requester, &their_addr, &secret],
            format!("You and {requester} can now send each other private messages."),
        ));
        conn_requester.send(&Line::new(
            Kind::Addr,
            &["granted", me, &my_addr, &secret],
            format!("{me} accepted: you can now send 'private {me} TEXT'."),
        ));
        Vec::new()
    }

    /// `removeaddress USER`: removes the pair on both sides.
    pub fn remove_address(&self, me: &str, with: &str) -> Line {
        let conn = {
            let mut state = self.shared.state.lock();
            if !state.pairs.remove(&pair_key(me, with)) {
                return err("not-paired", format!("{with} is not in your address book."));
            }
            state.conn(with)
        };
        if let Some(conn) = conn {
            conn.send(&Line::new(
                Kind::Addr,
                &["removed", me, "", ""],
                format!("{me} removed you from their address book."),
            ));
        }
        ok(
            "removed",
            format!("{with} was removed from your address book."),
        )
    }

    /// `addressbook`: who `me` has exchanged addresses with.
    pub fn address_book(&self, me: &str) -> Vec<Line> {
        let state = self.shared.state.lock();
        let mut names: Vec<&str> = state
            .pairs
            .iter()
            .filter_map(|(a, b)| {
                if a == me {
                    Some(b.as_str())
                } else if b == me {
                    Some(a.as_str())
                } else {
                    None
                }
            })
            .collect();
        names.sort_unstable();
        let title = if names.is_empty() {
            "Your address book is empty; 'getaddress USER' adds someone."
        } else {
            "You can message these users privately:"
        };
        Line::entry_list("addressbook", title, names.iter().map(|n| n.to_string()))
    }

    /// Declines address requests nobody answered within `max_age_secs` (seed 002's prompt
    /// does not wait forever). Called about once a second by the server.
    pub fn expire_requests(&self, max_age_secs: u64) {
        let now = self.now();
        let mut notices: Vec<(Arc<Conn>, Line)> = Vec::new();
        {
            let mut state = self.shared.state.lock();
            let expired: Vec<(String, String)> = state
                .addr_requests
                .iter()
                .filter(|(_, (_, at))| now >= at + max_age_secs)
                .map(|(k, _)| k.clone())
                .collect();
            for (from, to) in expired {
                state.addr_requests.remove(&(from.clone(), to.clone()));
                if let Some(c) = state.conn(&from) {
                    notices.push((
                        c,
                        Line::new(
                            Kind::Addr,
                            &["declined", &to, "", ""],
                            format!("{to} did not answer within a minute; no addresses exchanged."),
                        ),
                    ));
                }
                if let Some(c) = state.conn(&to) {
                    notices.push((
                        c,
                        Line::new(
                            Kind::Addr,
                            &["expired", &from, "", ""],
                            format!("{from}'s request to exchange addresses has expired."),
                        ),
                    ));
                }
            }
        }
        send_each(&notices);
    }

    /// Whether `me` is in a started chat session.
    pub fn in_session(&self, me: &str) -> bool {
        let state = self.shared.state.lock();
        state.online.get(me).is_some_and(|o| o.session.is_some())
    }

    /// A line typed inside a chat session: relayed to the partner and logged.
    pub fn talk(&self, me: &str, text: &str) -> Vec<Line> {
        let found = {
            let state = self.shared.state.lock();
            state.online.get(me).and_then(|o| o.session).and_then(|n| {
                let s = state.sessions.get(&n)?;
                let other = if s.from == me { &s.to } else { &s.from };
                Some((n, other.clone(), state.conn(other)))
            })
        };
        let Some((n, other, conn)) = found else {
            return vec![err("no-session", "You are not in a chat session.")];
        };
        let unreachable = || {
            vec![err(
                "unreachable",
                format!("{other} is no longer connected."),
            )]
        };
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
        if !conn.send(&Line::new(Kind::Talk, &[&n.to_string(), me], text)) {
            return unreachable();
        }
        Vec::new()
    }

    /// `block USER`
    pub fn block(&self, me: &str, target: &str) -> Line {
        if target == me {
            return err("self", "You cannot block yourself.");
        }
        if !self.is_registered(target) {
            return err("unknown-user", format!("No such user: {target}"));
        }
        let inserted = {
            let mut state = self.shared.state.lock();
            let user = state.users.entry(me.to_string()).or_default();
            let inserted = user.blocked.insert(target.to_string());
            state.refresh_seen(me);
            inserted
        };
        if !inserted {
            return err("already-blocked", format!("{target} is already blocked."));
        }
        // Blocking also ends an address exchange: no direct messages from them either.
        if self
            .shared
            .state
            .lock()
            .pairs
            .contains(&pair_key(me, target))
        {
            self.remove_address(me, target);
        }
        self.record(Event::Block {
            user: me.to_string(),
            target: target.to_string(),
        });
        ok(
            "blocked",
            format!("{target} is blocked: they can no longer message you or see you online."),
        )
    }

    /// `unblock USER`
    pub fn unblock(&self, me: &str, target: &str) -> Line {
        if target == me {
            return err("self", "You cannot unblock yourself.");
        }
        if !self.is_registered(target) {
            return err("unknown-user", format!("No such user: {target}"));
        }
        let removed = {
            let mut state = self.shared.state.lock();
            let removed = state
                .users
                .get_mut(me)
                .is_some_and(|u| u.blocked.remove(target));
            state.refresh_seen(me);
            removed
        };
        if !removed {
            return err("not-blocked", format!("{target} is not blocked."));
        }
        self.record(Event::Unblock {
            user: me.to_string(),
            target: target.to_string(),
        });
        ok("unblocked", format!("{target} is unblocked."))
    }

    /// `blocked`: `me`'s blacklist.
    pub fn blocked(&self, me: &str) -> Vec<Line> {
        let state = self.shared.state.lock();
        let list: Vec<String> = state
            .users
            .get(me)
            .map(|u| u.blocked.iter().cloned().collect())
            .unwrap_or_default();
        let title = if list.is_empty() {
            "You have blocked nobody."
        } else {
            "You have blocked:"
        };
        Line::entry_list("blocked", title, list)
    }

    /// `status [S]`: shows or changes `me`'s status, telling others what they may see.
    pub fn status(&self, me: &str, new: Option<Status>) -> Line {
        let Some(new) = new else {
            let s = self.shared.state.lock().status_of(me);
            return ok("status", format!("Your status is {s}."));
        };
        let (events, targets) = {
            let mut state = self.shared.state.lock();
            let old = state.status_of(me);
            state.users.entry(me.to_string()).or_default().status = Some(new.as_str().to_string());
            state.refresh_seen(me);
            let events = status_events(old, new);
            let targets = if events.is_empty() {
                Vec::new()
            } else {
                self.presence_targets_now(&state, me, &events)
            };
            (events, targets)
        };
        self.record(Event::Status {
            user: me.to_string(),
            status: new.as_str().to_string(),
        });
        for event in events {
            let text = match event {
                "logout" => format!("*** {me} has left the chat ***"),
                "login" => format!("*** {me} has joined the chat ***"),
                _ => format!("{me} is now {new}."),
            };
            send_to(&targets, &Line::new(Kind::Presence, &[me, event], text));
        }
        ok("status", format!("Your status is now {new}."))
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
                {
                    let mut state = self.shared.state.lock();
                    if state.groups.contains_key(name) {
                        return vec![err(
                            "group-exists",
                            format!("Group {name} already exists; 'group join {name}' to join it."),
                        )];
                    }
                    if let Some(refused) = self.claim_new_group(&mut state, me, name) {
                        return vec![refused];
                    }
                    let mut group = crate::store::Group {
                        owner: me.to_string(),
                        ..Default::default()
                    };
                    group.members.insert(me.to_string());
                    state.groups.insert(name.clone(), group);
                }
                self.record(Event::GroupCreate {
                    group: name.clone(),
                    owner: me.to_string(),
                });
                self.record(Event::GroupJoin {
                    group: name.clone(),
                    user: me.to_string(),
                });
                vec![ok(
                    "group-created",
                    format!("Group {name} created; you are its first member."),
                )]
            }
            GroupAction::Join(name) => {
                let joined = {
                    let mut state = self.shared.state.lock();
                    match state.groups.get_mut(name) {
                        None => return vec![no_group(name)],
                        Some(g) => g.members.insert(me.to_string()),
                    }
                };
                if !joined {
                    return vec![err(
                        "already-member",
                        format!("You are already in group {name}."),
                    )];
                }
                self.record(Event::GroupJoin {
                    group: name.clone(),
                    user: me.to_string(),
                });
                vec![ok("group-joined", format!("You joined group {name}."))]
            }
            GroupAction::Leave(name) => {
                let left = {
                    let mut state = self.shared.state.lock();
                    if !state.groups.contains_key(name) {
                        return vec![no_group(name)];
                    }
                    state.leave_group(name, me)
                };
                if !left {
                    return vec![err("not-member", format!("You are not in group {name}."))];
                }
                self.record(Event::GroupLeave {
                    group: name.clone(),
                    user: me.to_string(),
                });
                vec![ok("group-left", format!("You left group {name}."))]
            }
            GroupAction::List => {
                let state = self.shared.state.lock();
                let title = if state.groups.is_empty() {
                    "There are no groups yet; 'group create NAME' makes one."
                } else {
                    "Groups (members, * = you are in it):"
                };
                let items = state.groups.iter().map(|(name, g)| {
                    let mark = if g.members.contains(me) { " *" } else { "" };
                    format!("{name} ({} members){mark}", g.members.len())
                });
                Line::entry_list("groups", title, items)
            }
            GroupAction::Members(name) => {
                let state = self.shared.state.lock();
                let Some(g) = state.groups.get(name) else {
                    return vec![no_group(name)];
                };
                let items = g.members.iter().map(|m| {
                    let online = state.online.contains_key(m) && state.visible_to(m, me);
                    format!("{m}{}", if online { " (online)" } else { "" })
                });
                Line::entry_list("members", format!("Members of {name}:"), items)
            }
            GroupAction::Send(name, text) => {
                // Each recipient with, under one lock, whether they count as offline
                // (invisible) and their connection if online.
                let members: Vec<(String, bool, Option<Arc<Conn>>)> = {
                    let state = self.shared.state.lock();
                    let Some(g) = state.groups.get(name) else {
                        return vec![no_group(name)];
                    };
                    if !g.members.contains(me) {
                        return vec![err(
                            "not-member",
                            format!("Join group {name} before sending to it."),
                        )];
                    }
                    // One look-up of each member's record for both the blacklist and the
                    // status (a crowd's group costs a cache miss or two per look-up).
                    g.members
                        .iter()
                        .filter(|m| m.as_str() != me)
                        .filter_map(|m| {
                            let record = state.users.get(m);
                            if record.is_some_and(|u| u.blocked.contains(me)) {
                                return None;
                            }
                            let status = record
                                .and_then(|u| u.status.as_deref())
                                .and_then(Status::parse);
                            let invisible = status == Some(Status::Invisible);
                            Some((m.clone(), invisible, state.conn(m)))
                        })
                        .collect()
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
                lines.insert(
                    0,
                    ok(
                        "group-sent",
                        format!("Sent to group {name}: {live_n} online, {stored_n} will get it at their next login."),
                    ),
                );
                lines
            }
        }
    }

    /// In open mode, counts a group `me` is about to create against their address
    /// (`max_groups_per_ip`); the refusal when it has made its share.
    fn claim_new_group(&self, state: &mut State, me: &str, name: &str) -> Option<Line> {
        if self.shared.config.auth != AuthMode::Open {
            return None;
        }
        let ip = state.conn(me)?.peer.ip();
        let cap = self.shared.config.max_groups_per_ip;
        if !state.groups_made.try_add(ip, cap) {
            return Some(err(
                "group-limit",
                format!("{cap} groups made from your address exist already; join one, or leave one you made"),
            ));
        }
        state.group_origin.insert(name.to_string(), ip);
        None
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

fn no_group(name: &str) -> Line {
    err(
        "no-such-group",
        format!("There is no group {name}; 'group list' shows them."),
    )
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

/// `USER <name> <status> <last-seen|-> <intro>`
fn user_line(state: &State, name: &str, last_seen: Option<u64>) -> Line {
    let status = if last_seen.is_some() {
        "offline".to_string()
    } else {
        state.status_of(name).as_str().to_string()
    };
    let intro = state
        .users
        .get(name)
        .and_then(|u| u.intro.clone())
        .unwrap_or_default();
    Line::new(
        Kind::User,
        &[
            name,
            &status,
            &last_seen.map(format_utc).unwrap_or_default(),
        ],
        intro,
    )
}

/// The `PRESENCE` events of a status change from `old` to `new`, in order.
fn status_events(old: Status, new: Status) -> Vec<&'static str> {
    if old == new {
        Vec::new()
    } else if new == Status::Invisible {
        vec!["logout"]
    } else if old == Status::Invisible && new == Status::Available {
        vec!["login"]
    } else if old == Status::Invisible {
        vec!["login", new.as_str()]
    } else {
        vec![new.as_str()]
    }
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

/// Removes `name`'s started session and pending requests; returns every counterpart to
/// tell (session number and connection).
fn end_session_locked(state: &mut State, name: &str) -> Vec<(u32, Arc<Conn>)> {
    let ids: Vec<u32> = state
        .sessions
        .iter()
        .filter(|(_, s)| s.from == name || s.to == name)
        .map(|(id, _)| *id)
        .collect();
    let mut partners = Vec::new();
    for id in ids {
        let s = state.sessions.remove(&id).expect("listed above");
        let other = if s.from == name { s.to } else { s.from };
        if let Some(o) = state.online.get_mut(&other) {
            if o.session == Some(id) {
                o.session = None;
            }
            partners.push((id, Arc::clone(&o.conn)));
        }
    }
    if let Some(o) = state.online.get_mut(name) {
        o.session = None;
    }
    partners
}

/// A pair of names in a fixed order, for the `pairs` set.
fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Where `conn`'s client takes direct messages, as told to `viewer`: the address the server
/// sees it connect from (so it works across a LAN) and the port it announced. A client on
/// the server's own machine connects over loopback, which other machines cannot reach: them
/// we give the server's address on the viewer's own connection, the same machine.
fn direct_address(conn: &Conn, port: u16, viewer: &Conn) -> String {
    let ip = conn.peer.ip().to_canonical();
    let ip = if ip.is_loopback() && !viewer.peer.ip().to_canonical().is_loopback() {
        viewer.local_ip().unwrap_or(ip)
    } else {
        ip
    };
    std::net::SocketAddr::new(ip, port).to_string()
}

/// A fresh random 256-bit pairing secret, as 64 hex digits.
fn new_pairing_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes every address pair and pending address request involving `name`; returns what
/// to tell the others.
fn forget_addresses_locked(state: &mut State, name: &str) -> Vec<(Arc<Conn>, Line)> {
    let mut notices = Vec::new();
    let pairs: Vec<(String, String)> = state
        .pairs
        .iter()
        .filter(|(a, b)| a == name || b == name)
        .cloned()
        .collect();
    for pair in pairs {
        state.pairs.remove(&pair);
        let other = if pair.0 == name { &pair.1 } else { &pair.0 };
        if let Some(c) = state.conn(other) {
            notices.push((
                c,
                Line::new(
                    Kind::Addr,
                    &["gone", name, "", ""],
                    format!("{name} logged out and left your address book."),
                ),
            ));
        }
    }
    let requests: Vec<(String, String)> = state
        .addr_requests
        .keys()
        .filter(|(f, t)| f == name || t == name)
        .cloned()
        .collect();
    for (from, to) in requests {
        state.addr_requests.remove(&(from.clone(), to.clone()));
        if to == name {
            if let Some(c) = state.conn(&from) {
                notices.push((
                    c,
                    Line::new(
                        Kind::Addr,
                        &["declined", name, "", ""],
                        format!("{name} left before answering; no addresses exchanged."),
                    ),
                ));
            }
        } else if let Some(c) = state.conn(&to) {
            notices.push((
                c,
                Line::new(
                    Kind::Addr,
                    &["expired", name, "", ""],
                    format!("{name} left; their request to exchange addresses is void."),
                ),
            ));
        }
    }
    notices
}

/// Sends each line to its connection.
fn send_each(notices: &[(Arc<Conn>, Line)]) {
    for (conn, line) in notices {
        conn.send(line);
    }
}

/// Tells each counterpart of a departed user that their session or request is over.
fn tell_partners(partners: &[(u32, Arc<Conn>)], name: &str) {
    for (id, conn) in partners {
        conn.send(&Line::new(
            Kind::Session,
            &["ended", &id.to_string(), name],
            format!("Chat ended: {name} has left."),
        ));
    }
}

/// A random session number in 1000..=9999 not in use (seed 000's range), or a higher one
/// when that range is crowded.
fn new_session_id(state: &State) -> u32 {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let id = rng.random_range(1000..=9999);
        if !state.sessions.contains_key(&id) {
            return id;
        }
    }
    (10_000..)
        .find(|id| !state.sessions.contains_key(id))
        .unwrap_or(0)
}

/// Acts on other users for doors whose channels have operators (the IRC door's KICK and
/// INVITE); the native protocol has no such commands.
impl Hub {
    /// Removes `target` from `group` (deleting the group if it empties), as if they had
    /// left; false when there is no such group or they were not in it.
    pub fn group_remove_member(&self, group: &str, target: &str) -> bool {
        let removed = self.shared.state.lock().leave_group(group, target);
        if removed {
            self.record(Event::GroupLeave {
                group: group.to_string(),
                user: target.to_string(),
            });
        }
        removed
    }

    /// Sends `line` to `name` if online; whether it was.
    pub fn tell(&self, name: &str, line: &Line) -> bool {
        let conn = self.shared.state.lock().conn(name);
        conn.is_some_and(|c| c.send(line))
    }
}
