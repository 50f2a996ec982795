//! What an IRC client receives for what the hub pushes to a user, as a pure function of
//! it, the client's view (its nick, lobby, negotiated capabilities) and a way to name
//! other users ([`People`]). The hub pushes typed events ([`event`]: messages, presence,
//! chat-session news) and, for the replies to a user's own commands and the login, native
//! lines ([`line`]), which become notices from the lanchat service.
//!
//! | what | IRC |
//! |---|---|
//! | a message, a chat-session line (or `MSG`, `TALK`) | `:from PRIVMSG me :text` (NOTICE if sent as one) |
//! | a broadcast (`BCAST`) | `:from PRIVMSG #lobby :text` |
//! | a group message (`GROUP`) | `:from PRIVMSG #g :text` |
//! | `MAIL from time kind id text` | `:from PRIVMSG me :[time] text` (or `@time=` with server-time) |
//! | a login | `:u JOIN #lobby` |
//! | a logout, timeout, drop | `:u QUIT :reason` (`:u NICK new` for a nick change) |
//! | a status change | `:u AWAY [:text]` with away-notify, else nothing |
//! | a crowd's summary | the lines above for each named change; more than those: a NOTICE pointing to NAMES |
//! | `BYE reason text` | `ERROR :text` |
//! | anything else (replies to `/msg *lanchat`, chat-session notices) | `:*lanchat NOTICE me :text` |

use super::message::{format, overhead, split_text};
use crate::protocol::{Kind, Line};
use crate::server::render;
use crate::server::rules::ChatEvent;
use crate::store::MailKind;

/// The pseudo-user that carries lanchat's own commands and notices: `/msg *lanchat help`.
pub const SERVICE: &str = "*lanchat";

/// How other users look to an IRC client.
pub trait People {
    /// `nick!user@host` of a user.
    fn mask(&self, name: &str) -> String;
    /// The QUIT text a leaving user gave, if any.
    fn quit_reason(&self, name: &str) -> Option<String>;
    /// The new nick of a user who is changing nick.
    fn renamed_to(&self, name: &str) -> Option<String>;
    /// Whether a login is the second half of a nick change (no JOIN for it).
    fn is_renaming(&self, name: &str) -> bool;
    /// An away text, for away-notify.
    fn away(&self, name: &str) -> Option<String>;
}

/// One IRC client's point of view.
pub struct View<'a> {
    /// Its nick.
    pub nick: &'a str,
    /// The server's name.
    pub server: &'a str,
    /// The lobby channel.
    pub lobby: &'a str,
    /// Whether the client is in the lobby (broadcasts and presence go there).
    pub in_lobby: bool,
    /// `server-time` negotiated: stored messages carry `@time=`.
    pub server_time: bool,
    /// `away-notify` negotiated: status changes become AWAY lines.
    pub away_notify: bool,
    /// Today's date (`YYYY-MM-DD`, UTC), to shorten the times of today's stored messages.
    pub today: &'a str,
}

/// Control characters that mean something to IRC clients (CTCP, bold, colour, italics,
/// underline, reverse, reset...). lanchat escapes every control character a user types
/// (`\x01`), which is right for terminals; an IRC client gets these back as the bytes, so
/// `/me` actions and colours survive a trip through the hub. CR, LF and NUL never do.
const IRC_CONTROLS: [u8; 9] = [0x01, 0x02, 0x03, 0x0f, 0x11, 0x16, 0x1d, 0x1e, 0x1f];

/// Undoes lanchat's escaping of [`IRC_CONTROLS`] in a text.
pub fn irc_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("\\x") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|b| IRC_CONTROLS.contains(b));
        match code {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// `@time=` for an RFC 3339 time with whole seconds (`2026-11-22T10:15:00Z`).
fn time_tag(time: &str) -> String {
    match time.strip_suffix('Z') {
        Some(t) => format!("time={t}.000Z"),
        None => format!("time={time}"),
    }
}

/// `[10:15 UTC]` for a time today, `[2026-11-22 10:15 UTC]` otherwise.
pub fn short_time(time: &str, today: &str) -> String {
    let (date, clock) = time.split_once('T').unwrap_or((time, ""));
    let hhmm = clock.get(..5).unwrap_or(clock);
    if date == today {
        format!("[{hhmm} UTC]")
    } else {
        format!("[{date} {hhmm} UTC]")
    }
}

/// Appends `:source COMMAND target :text` lines, as many as a long text needs.
fn say(
    out: &mut Vec<u8>,
    tags: Option<&str>,
    source: &str,
    command: &str,
    target: &str,
    text: &str,
) {
    let text = irc_text(text);
    let room = super::message::MAX_LINE.saturating_sub(overhead(source, command, target));
    for piece in split_text(&text, room) {
        out.extend_from_slice(
            format(tags, Some(source), command, &[target, piece], true).as_bytes(),
        );
    }
}

/// A line for people, as the text of a NOTICE from [`SERVICE`].
fn service_text(line: &Line) -> Option<String> {
    let text = line.text.as_str();
    Some(match line.kind {
        Kind::Info if line.arg(0) == "no-mail" => return None,
        Kind::Err => format!("error: {text}"),
        Kind::List => format!("{text} ({})", line.arg(1)),
        Kind::Entry => format!("  {text}"),
        Kind::User => {
            let seen = match line.arg(2) {
                "-" => String::new(),
                t => format!(", last seen {t}"),
            };
            let intro = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            format!("  {} ({}{seen}){intro}", line.arg(0), line.arg(1))
        }
        Kind::Hist => {
            let session = match line.arg(1) {
                "-" => String::new(),
                s => format!(" (session {s})"),
            };
            format!("  [{}]{session} {}: {text}", line.arg(0), line.arg(2))
        }
        Kind::Session if line.arg(0) == "request" => {
            format!("{text} (On IRC: /msg {SERVICE} accept, or /msg {SERVICE} decline.)")
        }
        _ => text.to_string(),
    })
}

/// For an event many clients get (a group message, a broadcast, a presence change): the
/// user whose nick is the only part of the view's `nick` that [`event`] reads, by comparing
/// the two. Clients whose views differ only in a nick that is not this user's get the same
/// bytes, so a fan-out translates such an event once (events that name the client give
/// `None`).
pub fn shared_source(event: &ChatEvent) -> Option<&str> {
    match event {
        ChatEvent::Broadcast { from, .. } | ChatEvent::GroupMessage { from, .. } => Some(from),
        ChatEvent::Presence { who, .. } => Some(who),
        _ => None,
    }
}

/// Appends what one presence change (its presence word) becomes for this client.
fn presence(user: &str, event: &str, view: &View<'_>, people: &dyn People, out: &mut Vec<u8>) {
    if user == view.nick {
        return;
    }
    let source = people.mask(user);
    let bytes = match event {
        "login" if people.is_renaming(user) => return,
        "login" if view.in_lobby => format(None, Some(&source), "JOIN", &[view.lobby], false),
        "logout" | "timeout" | "dropped" => {
            if let Some(new) = people.renamed_to(user) {
                format(None, Some(&source), "NICK", &[&new], false)
            } else {
                let reason = match (event, people.quit_reason(user)) {
                    (_, Some(r)) => r,
                    ("timeout", None) => "Ping timeout".to_string(),
                    ("dropped", None) => "Connection lost".to_string(),
                    _ => "Left the chat".to_string(),
                };
                format(None, Some(&source), "QUIT", &[&reason], true)
            }
        }
        "busy" if view.away_notify => {
            let text = people.away(user).unwrap_or_else(|| "busy".to_string());
            format(None, Some(&source), "AWAY", &[&text], true)
        }
        "available" if view.away_notify => format(None, Some(&source), "AWAY", &[], false),
        _ => return,
    };
    out.extend_from_slice(bytes.as_bytes());
}

/// Whether a crowd's summary names `nick` among its changes (their own change is left out
/// of what they get, so their bytes differ from everyone else's).
pub fn summary_names(changes: &[(String, &'static str)], nick: &str) -> bool {
    changes.iter().any(|(user, _)| user == nick)
}

/// The changes of a crowd's summary: the JOIN, QUIT and AWAY lines of the changes it
/// names, in one write (as big IRC networks batch joins). The same for every client it
/// does not name that shares the view's lobby and away-notify settings.
pub fn summary_changes(
    changes: &[(String, &'static str)],
    view: &View<'_>,
    people: &dyn People,
    out: &mut Vec<u8>,
) {
    for (user, change) in changes {
        if *change == "login-busy" {
            presence(user, "login", view, people, out);
            presence(user, "busy", view, people, out);
        } else {
            presence(user, change, view, people, out);
        }
    }
}

/// The rest of a crowd's summary: the changes it only counts are told in a NOTICE to the
/// client, and NAMES lists who is there.
pub fn summary_notice(more: usize, view: &View<'_>, out: &mut Vec<u8>) {
    if more != 0 && view.in_lobby {
        let source = format!("{SERVICE}!lanchat@{}", view.server);
        let text = format!(
            "{more} more users joined, left or changed status; /names {} lists who is here.",
            view.lobby
        );
        say(out, None, &source, "NOTICE", view.nick, &text);
    }
}

/// PRIVMSG, or NOTICE for a text sent as one.
fn verb(notice: bool) -> &'static str {
    if notice {
        "NOTICE"
    } else {
        "PRIVMSG"
    }
}

/// A message to the client.
fn private(
    from: &str,
    text: &str,
    notice: bool,
    view: &View<'_>,
    people: &dyn People,
    out: &mut Vec<u8>,
) {
    say(out, None, &people.mask(from), verb(notice), view.nick, text);
}

/// A broadcast: said in the lobby (not to its own sender).
fn lobby(
    from: &str,
    text: &str,
    notice: bool,
    view: &View<'_>,
    people: &dyn People,
    out: &mut Vec<u8>,
) {
    if view.in_lobby && from != view.nick {
        say(
            out,
            None,
            &people.mask(from),
            verb(notice),
            view.lobby,
            text,
        );
    }
}

/// A group message: said in the group's channel (not to its own sender).
fn channel(
    group: &str,
    from: &str,
    text: &str,
    notice: bool,
    view: &View<'_>,
    people: &dyn People,
    out: &mut Vec<u8>,
) {
    if from != view.nick {
        let channel = format!("#{group}");
        say(out, None, &people.mask(from), verb(notice), &channel, text);
    }
}

/// Appends what `event` becomes for this client (possibly nothing). An event with no IRC
/// form of its own (chat-session and address news) is its native text in a NOTICE from
/// the service.
pub fn event(event: &ChatEvent, view: &View<'_>, people: &dyn People, out: &mut Vec<u8>) {
    match event {
        ChatEvent::Message { from, text, notice }
        | ChatEvent::Talk {
            from, text, notice, ..
        } => {
            private(from, text, *notice, view, people, out);
        }
        ChatEvent::Broadcast { from, text, notice } => {
            lobby(from, text, *notice, view, people, out);
        }
        ChatEvent::GroupMessage {
            group,
            from,
            text,
            notice,
        } => channel(group, from, text, *notice, view, people, out),
        ChatEvent::Presence { who, change } => presence(who, change.word(), view, people, out),
        ChatEvent::PresenceSummary { changes, more } => {
            summary_changes(changes, view, people, out);
            summary_notice(*more, view, out);
        }
        ChatEvent::Mail(mail) => {
            let time = crate::clock::format_utc(mail.sent_at);
            let place = match &mail.kind {
                MailKind::Private => None,
                MailKind::Broadcast => Some(view.lobby.to_string()),
                MailKind::Group(g) => Some(format!("#{g}")),
            };
            // Escaped again as it is read back (a mailbox may predate the rule); `say`
            // restores IRC's own control characters, as for a live message.
            let body = crate::protocol::sanitize_text(&mail.text);
            let (tags, text) = if view.server_time {
                let text = match place {
                    Some(p) => format!("[{p}] {}", body),
                    None => body.to_string(),
                };
                (Some(time_tag(&time)), text)
            } else {
                let when = short_time(&time, view.today);
                let text = match place {
                    Some(p) => format!("{} {p}] {}", when.trim_end_matches(']'), body),
                    None => format!("{when} {}", body),
                };
                (None, text)
            };
            say(
                out,
                tags.as_deref(),
                &people.mask(&mail.from),
                "PRIVMSG",
                view.nick,
                &text,
            );
        }
        other => {
            for native in render::render(other.clone()) {
                line(&native, view, out);
            }
        }
    }
}

/// Appends what a native `line` (a reply, a line of the login) becomes for this client
/// (possibly nothing).
pub fn line(line: &Line, view: &View<'_>, out: &mut Vec<u8>) {
    let me = view.nick;
    match line.kind {
        Kind::Bye => {
            let text = format!("Closing Link: {me} ({})", line.text);
            out.extend_from_slice(format(None, None, "ERROR", &[&text], true).as_bytes());
        }
        // WELCOME is replaced by the registration burst, which the encoder keeps ready.
        Kind::Welcome | Kind::Hello => {}
        _ => {
            if let Some(text) = service_text(line) {
                let source = format!("{SERVICE}!lanchat@{}", view.server);
                say(out, None, &source, "NOTICE", me, &text);
            }
        }
    }
}

#[cfg(test)]
mod tests;
