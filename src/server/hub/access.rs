//! Logging in and out: the name and password checks with their lockouts, going online
//! with the offline mail, going offline with the rescue of what was not sent. The rules
//! of who may be online are `rules::login`; this is the I/O around them.

use super::*;

/// Key of the failed-login table: the username and, by policy, the client's IP.
pub(super) type LockKey = (String, Option<IpAddr>);

/// What going online leaves to do once the locks are released.
struct Joined {
    /// The connection the login replaced, to close.
    replaced: Option<Arc<Conn>>,
    /// Whom to tell that the user came.
    notify: Vec<Arc<Conn>>,
    /// The replaced connection's chat partners, to tell its session ended.
    partners: Vec<(Arc<Conn>, ChatEvent)>,
    /// Whether the directory changed (a new user in open mode), to be journaled.
    new_user: bool,
}

impl Hub {
    fn lock_key(&self, name: &str, ip: IpAddr) -> LockKey {
        match self.shared.config.lockout_key {
            LockoutKey::UserIp => (name.to_string(), Some(ip)),
            LockoutKey::User => (name.to_string(), None),
        }
    }

    /// First step of a login: is this name acceptable from this IP? (The rule is
    /// `login::check_name`; here the lockout table is read for it.)
    pub fn check_name(&self, name: &str, ip: IpAddr) -> NameCheck {
        let config = &self.shared.config;
        let admission = match config.auth {
            AuthMode::Open => login::LoginMode::Open,
            AuthMode::Allowlist => login::LoginMode::Allowlist(&self.shared.credentials),
            AuthMode::Password => login::LoginMode::Password,
        };
        let locked_for = if valid_username(name) {
            let key = self.lock_key(name, ip);
            self.shared.lockouts.lock().blocked_for(&key, self.now())
        } else {
            None
        };
        let reject_duplicates = config.duplicate_login == DuplicateLogin::Reject;
        login::check_name(name, admission, reject_duplicates, locked_for, || {
            self.shared.state.lock().online.contains_key(name)
        })
    }

    /// Second step: the password, with lockout bookkeeping. The try is reserved before the
    /// password is checked, so checks running at once count against `max_login_attempts`.
    pub fn check_password(&self, name: &str, password: &str, ip: IpAddr) -> PasswordCheck {
        let key = self.lock_key(name, ip);
        let reservation = self.shared.lockouts.lock().reserve(&key, self.now());
        if let Err(refused) = login::password_try(reservation) {
            return refused;
        }
        // Same work for unknown users as for known ones, so timing tells nothing either.
        if self.verify_password(name, password, ip) {
            self.shared.lockouts.lock().succeed(&key);
            return PasswordCheck::Ok;
        }
        let now = self.now();
        let after = {
            let mut lockouts = self.shared.lockouts.lock();
            lockouts.prune(now);
            lockouts.fail(&key, now)
        };
        log::info!("failed login for {name} from {ip}");
        if matches!(after, AfterFailure::Blocked(_))
            && self.shared.config.lockout_key == LockoutKey::User
        {
            self.kick(
                name,
                "locked",
                "Your account was locked after repeated failed logins elsewhere.",
            );
        }
        login::wrong_password(after)
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

    /// Last step: puts the user online and queues WELCOME and what follows it (offline mail
    /// or "no messages"); or says why the login is refused (a lost duplicate race, a bound of
    /// the data directory in open mode).
    pub fn login(&self, name: &str, conn: &Arc<Conn>) -> Result<(), Refusal> {
        // The mailbox is read and the user put online under the store's lock, so a message
        // sent meanwhile is either in this mail or delivered live after it, never stranded,
        // and the offline mail comes right after WELCOME, before any live line. The mail
        // stays in the mailbox until the client's TCP acknowledged it (see `delivery`).
        let read = self.shared.store.read_mail_with(name, |mail| {
            let result = self.go_online(name, conn, &opening_events(mail));
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
                let failed = ChatEvent::Refused(Refusal::MailUnreadable);
                self.go_online(name, conn, &[(failed, None)])
            }
        };
        let joined = result?;
        conn.flush_now();
        deliver(joined.partners);
        if let Some(old) = joined.replaced {
            old.close_with(&Line::bye(
                "replaced",
                "another client has logged into your account; logging you out.",
            ));
            self.rescue_unsent(name, &old);
        }
        if joined.new_user {
            // Journaled once WELCOME is on its way, out of the store's lock that the
            // mailbox read held.
            self.write_journal();
        }
        send_to(
            &joined.notify,
            &ChatEvent::presence(name, PresenceChange::Joined),
        );
        Ok(())
    }

    /// Under the state lock: applies the login rule (which may refuse, or take over the old
    /// session), and queues WELCOME and `opening` (memory only) before anyone else can
    /// address the user.
    fn go_online(
        &self,
        name: &str,
        conn: &Arc<Conn>,
        opening: &[(ChatEvent, Option<String>)],
    ) -> Result<Joined, Refusal> {
        let config = &self.shared.config;
        let open = config.auth == AuthMode::Open;
        let policy = login::LoginPolicy {
            reject_duplicates: config.duplicate_login == DuplicateLogin::Reject,
            new_users_per_address: open.then_some(config.max_new_users_per_ip),
            room_for_new_users: open && self.shared.store.has_room(NEW_RECORD_BYTES),
        };
        let now = self.now();
        let mut state = self.shared.state.lock();
        let arrival = login::arrive(&mut state, now, name, Arc::clone(conn), policy)?;
        let mut events = vec![ChatEvent::Welcome(name.to_string())];
        let mut mail_ids = vec![None];
        for (event, id) in opening {
            events.push(event.clone());
            mail_ids.push(id.clone());
        }
        if arrival.status != Status::Available {
            events.push(ChatEvent::StatusReminder(arrival.status));
            mail_ids.push(None);
        }
        if mail_ids.iter().any(Option::is_some) {
            conn.enqueue_tracked(&events, &mail_ids);
        } else {
            conn.enqueue_all(&events);
        }
        let notify = if arrival.announce {
            self.presence_targets_now(&state, name, &["login"])
        } else {
            Vec::new()
        };
        let new_user = state.directory.has_unwritten();
        drop(state);
        deliver(arrival.book);
        Ok(Joined {
            replaced: arrival.replaced,
            notify,
            partners: arrival.partners,
            new_user,
        })
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
            self.release(state);
            (notify, gone)
        };
        if reason != LogoutReason::Shutdown {
            // At shutdown the pairs stay valid: direct messages go on without the server.
            deliver(gone.book);
        }
        // Anything queued between the rescue above and going offline.
        self.rescue_unsent(name, &gone.conn);
        deliver(gone.partners);
        send_to(
            &notify,
            &ChatEvent::presence(name, PresenceChange::Left(reason)),
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
            let live = live_event(&mail);
            let mail = Arc::new(mail);
            let try_live = || {
                let current = self.shared.state.lock().conn(name);
                current
                    .is_some_and(|c| c.id != conn.id && c.send_event_rescuable(&live, &mail, None))
            };
            if let Err(e) = self.shared.store.requeue(name, &mail, try_live) {
                log::error!("store: could not keep a message for {name}: {e}");
            }
        }
    }
}

/// How a stored message looks when delivered live.
fn live_event(m: &Mail) -> ChatEvent {
    let (from, text) = (m.from.clone(), m.text.clone());
    match &m.kind {
        MailKind::Private => ChatEvent::Message {
            from,
            text,
            notice: false,
        },
        MailKind::Broadcast => ChatEvent::Broadcast {
            from,
            text,
            notice: false,
        },
        MailKind::Group(g) => ChatEvent::GroupMessage {
            group: g.clone(),
            from,
            text,
            notice: false,
        },
    }
}

/// What follows WELCOME: the offline mail (each with the id of the mail it carries), or
/// word that there is none.
fn opening_events(mail: &[Mail]) -> Vec<(ChatEvent, Option<String>)> {
    let mut events = vec![(ChatEvent::OfflineMail(mail.len()), None)];
    events.extend(
        mail.iter()
            .map(|m| (ChatEvent::Mail(m.clone()), Some(m.id.clone()))),
    );
    events
}
