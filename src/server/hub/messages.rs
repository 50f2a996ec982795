//! Messages and their delivery: private messages, the three broadcasts, group sends and
//! the conversation history. Each is delivered live or stored in the mailbox under the
//! store's lock (see `Store::deliver_or_store`); whom a message may reach and what its
//! sender is told are `rules::messaging`.

use super::*;
use crate::server::rules::NotKept;

impl Hub {
    /// `message USER TEXT`: relayed now, or stored for later if USER is offline.
    pub fn message(&self, me: &str, to: &str, text: String) -> Vec<Line> {
        render::render_all(self.message_as(me, to, text, false))
    }

    /// [`Hub::message`], as an IRC NOTICE if `notice` (a live message shows it); the answer
    /// as events.
    pub fn message_as(&self, me: &str, to: &str, text: String, notice: bool) -> Vec<ChatEvent> {
        let registry = self.registry();
        let (allowed, from) = {
            let state = self.shared.state.lock();
            (messaging::private(&state, registry, me, to), state.conn(me))
        };
        let status = match allowed {
            Ok(status) => status,
            Err(why) => return vec![ChatEvent::Refused(why)],
        };
        let live = ChatEvent::Message {
            from: me.to_string(),
            text: text.clone(),
            notice,
        };
        let mail = self.new_mail(me, MailKind::Private, text);
        let delivered_now =
            match self.deliver_or_store_logged(to, &live, &mail, true, from.as_ref()) {
                Ok(now) => now,
                Err(e) => return vec![not_kept(&e)],
            };
        messaging::private_answer(me, to, status, delivered_now)
    }

    /// Delivers `live` to `to` if online; otherwise stores `mail` (durably, before returning).
    /// Ok(true) = delivered now, Ok(false) = stored. `from`: the sender's connection (its
    /// burst holds the live line, see `outbox::burst`).
    pub(super) fn deliver_or_store(
        &self,
        to: &str,
        live: &ChatEvent,
        mail: &Arc<Mail>,
        from: Option<&Arc<Conn>>,
    ) -> Result<bool, StoreError> {
        self.deliver_or_store_logged(to, live, mail, false, from)
    }

    /// [`Hub::deliver_or_store`] that, if `log`, also appends the private message to the
    /// sender's history log with `to`, once, and only if it is delivered or stored: just
    /// before a live send (so a reply is never logged ahead of it) or right after it is
    /// safely in the mailbox.
    fn deliver_or_store_logged(
        &self,
        to: &str,
        live: &ChatEvent,
        mail: &Arc<Mail>,
        log: bool,
        from: Option<&Arc<Conn>>,
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
                    from,
                );
            }
        };
        let try_live = || {
            let conn = self.shared.state.lock().conn(to);
            conn.is_some_and(|c| {
                log_once();
                c.send_event_rescuable(live, mail, from)
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
    /// `from`: the sender's connection.
    pub(super) fn append_history(
        &self,
        peer: &str,
        entry: HistoryRef<'_>,
        from: Option<&Arc<Conn>>,
    ) {
        // Queued at once, before the line that carries it is in any outbox: whatever is said
        // after it (a reply) is queued after it, and a `history` read by whoever has seen
        // the line waits for it. Inside the sender's burst the writer is woken at the
        // burst's end, after its lines left.
        if self.shared.history.queue(peer, entry)
            && !from.is_some_and(|f| f.wake_history_after_burst())
        {
            self.shared.history.wake();
        }
    }

    /// A message from `from` as the mailbox keeps it, stamped now with a fresh id.
    fn new_mail(&self, from: &str, kind: MailKind, text: impl Into<String>) -> Arc<Mail> {
        Arc::new(Mail {
            from: from.to_string(),
            sent_at: self.now(),
            kind,
            text: text.into(),
            id: crate::store::new_mail_id(),
        })
    }

    /// Returns once every history entry queued so far is in its file (a clean shutdown
    /// calls it, so the last lines are not left in memory).
    pub fn flush_history(&self) {
        self.shared.history.wait_written();
    }

    /// The three broadcasts.
    pub fn broadcast(&self, me: &str, audience: &Audience, text: &str) -> Vec<Line> {
        render::render_all(self.broadcast_as(me, audience, text, false))
    }

    /// [`Hub::broadcast`], as an IRC NOTICE if `notice`; the answer as events.
    pub fn broadcast_as(
        &self,
        me: &str,
        audience: &Audience,
        text: &str,
        notice: bool,
    ) -> Vec<ChatEvent> {
        let live = ChatEvent::Broadcast {
            from: me.to_string(),
            text: text.to_string(),
            notice,
        };
        let echo = self.shared.config.broadcast_echo;
        match audience {
            Audience::Online => {
                let ((targets, skipped), from) = {
                    let state = self.shared.state.lock();
                    (messaging::online_audience(&state, me, echo), state.conn(me))
                };
                let fan_out = FanOut::new(&live);
                let queue = targets.len() >= FAN_OUT_QUEUED;
                let delivered = targets
                    .iter()
                    .filter(|(c, counted)| {
                        c.send_fan_out(&fan_out, None, queue, from.as_ref()) && *counted
                    })
                    .count();
                vec![ChatEvent::BroadcastSent { delivered, skipped }]
            }
            Audience::Everyone => {
                let names = self.registered_users();
                let mail = self.new_mail(me, MailKind::Broadcast, text);
                let (mut live_n, mut stored_n, mut failed) = (0, 0, Vec::new());
                let from = self.shared.state.lock().conn(me);
                for to in names.iter().filter(|n| n.as_str() != me) {
                    let Some(invisible) = messaging::reach(&self.shared.state.lock(), me, to)
                    else {
                        continue;
                    };
                    match self.deliver_or_store(to, &live, &mail, from.as_ref()) {
                        // Invisible users count as offline, as everywhere else.
                        Ok(true) if invisible => stored_n += 1,
                        Ok(true) => live_n += 1,
                        Ok(false) => stored_n += 1,
                        Err(e) => failed.push(not_kept(&e)),
                    }
                }
                // The sender's own copy, on the connection looked up for the deliveries.
                if echo {
                    if let Some(own) = &from {
                        own.send_event(&live, None);
                    }
                }
                let mut answer = vec![ChatEvent::BroadcastKept {
                    live: live_n,
                    stored: stored_n,
                }];
                answer.extend(failed);
                answer
            }
            Audience::Users(users) => {
                let mail = self.new_mail(me, MailKind::Broadcast, text);
                let mut answer = Vec::new();
                let mut seen = BTreeSet::new();
                let from = self.shared.state.lock().conn(me);
                for to in users {
                    if !seen.insert(to.as_str()) {
                        continue;
                    }
                    let registry = self.registry();
                    let copy = messaging::named_copy(&self.shared.state.lock(), registry, me, to);
                    let invisible = match copy {
                        Ok(invisible) => invisible,
                        Err(why) => {
                            answer.push(ChatEvent::Refused(why));
                            continue;
                        }
                    };
                    answer.push(
                        match self.deliver_or_store(to, &live, &mail, from.as_ref()) {
                            // Invisible users count as offline, as everywhere else.
                            Ok(true) if invisible => ChatEvent::Queued(to.clone()),
                            Ok(true) => ChatEvent::Delivered(to.clone()),
                            Ok(false) => ChatEvent::Queued(to.clone()),
                            Err(e) => not_kept(&e),
                        },
                    );
                }
                answer
            }
        }
    }

    /// `history USER [N]`: the last lines of `me`'s conversation with `with`.
    pub fn history(&self, me: &str, with: &str, count: usize) -> Vec<Line> {
        let registry = self.registry();
        if !self.shared.state.lock().is_registered(registry, with) {
            return vec![render::refusal(Refusal::NoSuchUser(with.to_string()))];
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

    /// Every user that can receive mail.
    fn registered_users(&self) -> Vec<String> {
        match self.shared.config.auth {
            AuthMode::Open => {
                let state = self.shared.state.lock();
                state.directory.users().map(|(n, _)| n.clone()).collect()
            }
            _ => self.shared.credentials.usernames(),
        }
    }

    /// `group send NAME TEXT`: delivered to each member online, stored for the others; as
    /// an IRC NOTICE if `notice`. The answer as events.
    pub fn group_send_as(&self, me: &str, name: &str, text: &str, notice: bool) -> Vec<ChatEvent> {
        // Each recipient with, under one lock, whether they count as offline
        // (invisible) and their connection if online.
        let (audience, from) = {
            let state = self.shared.state.lock();
            (messaging::group_audience(&state, me, name), state.conn(me))
        };
        let from = from.as_ref();
        let members = match audience {
            Ok(members) => members,
            Err(why) => return vec![ChatEvent::Refused(why)],
        };
        let live = ChatEvent::GroupMessage {
            group: name.to_string(),
            from: me.to_string(),
            text: text.to_string(),
            notice,
        };
        let mail = self.new_mail(me, MailKind::Group(name.to_string()), text);
        // Rendered once per view and, for a crowd, queued for the flusher as
        // broadcasts are; the rescue keeps it if the connection dies first. A member
        // who was offline (or whose connection just closed) takes the mailbox path,
        // which also catches a login racing this send.
        let fan_out = FanOut::new(&live);
        let queue = members.len() >= FAN_OUT_QUEUED;
        let (mut live_n, mut stored_n, mut failed) = (0, 0, Vec::new());
        for (m, invisible, conn) in &members {
            let sent = conn
                .as_ref()
                .is_some_and(|c| c.send_fan_out(&fan_out, Some(&mail), queue, from));
            let result = if sent {
                Ok(true)
            } else {
                self.deliver_or_store(m, &live, &mail, from)
            };
            match result {
                // Invisible members count as offline, as everywhere else.
                Ok(true) if *invisible => stored_n += 1,
                Ok(true) => live_n += 1,
                Ok(false) => stored_n += 1,
                Err(e) => failed.push(not_kept(&e)),
            }
        }
        let mut answer = vec![ChatEvent::GroupSent {
            group: name.to_string(),
            live: live_n,
            stored: stored_n,
        }];
        answer.extend(failed);
        answer
    }
}

/// What the sender of a message the store could not keep is told.
fn not_kept(e: &StoreError) -> ChatEvent {
    ChatEvent::Refused(Refusal::NotKept(match e {
        StoreError::MailboxFull { user, limit } => NotKept::MailboxFull {
            user: user.clone(),
            limit: *limit,
        },
        StoreError::StorageFull { limit } => NotKept::StorageFull { limit: *limit },
        other => {
            log::error!("store: {other}");
            NotKept::Failed
        }
    }))
}
