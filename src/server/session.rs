//! One thread per connection: the login dialogue, then a read-parse-apply loop.
//!
//! ```text
//!   connect ──> HELLO, ASK username
//!   username ──(unknown/in use: ERR, ask again)──> ASK password
//!   password ──(wrong: ERR, ask again; too many: BYE blocked)──> WELCOME, mail
//!   command ... ──> replies; `logout`, EOF, idle timeout, flood or shutdown ──> BYE, close
//!   `protocol lanchat/1`, at any point ──> tagged lines from now on: HELLO (and the ASK
//!                                          that waits), state unchanged (see `native`)
//! ```
//!
//! The thread blocks only on its own socket's read, or pauses before the next line of its
//! own client when that client is over its rate (see `policy`); everything it writes (to
//! itself or to others) goes through non-blocking outboxes, so a slow peer never stalls it.

use super::hub::{Hub, LogoutReason, NameCheck, PasswordCheck};
use super::native::{protocol_request, unknown_protocol, ProtocolRequest, Switch, Terminal};
use super::outbox::Burst;
use super::outbox::Conn;
use super::policy::{Expiry, Heard, Pace, SessionLimits, Silence, Take, Timers};
use super::reader::{Input, ReadLines};
use super::render;
use crate::clock::{Deadline, Ticks};
use crate::protocol::{is_session_command, parse_command, sanitize_text, Command, Kind, Line};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the session needs besides the hub.
pub struct SessionContext<'a> {
    /// The server's monotonic clock: every deadline of the session policy (login, idle,
    /// heartbeat, pace) is read on it.
    pub ticks: &'a dyn Ticks,
    /// When the connection was accepted, on `ticks`: the login deadline counts from here,
    /// whatever the door did first (the web door's HTTP upgrade).
    pub connected: Instant,
    /// Set when the server is shutting down (a dropped read then is not a user's logout).
    pub shutting_down: &'a AtomicBool,
    /// Protocol version string for HELLO.
    pub version: &'a str,
    /// The IRC door's shared state (channels, USER details).
    pub irc: &'a Arc<super::irc::World>,
    /// The door the connection came through (what a refusal tells its user to do).
    pub door: super::door::Door,
    /// The native door's encoder of this connection (prose until the client switches);
    /// `None` on the web door, which speaks tagged lines from the start.
    pub terminal: Option<&'a Terminal>,
}

/// Serves one connection until it ends, reading its lines from `reader`.
pub fn serve(hub: &Hub, conn: &Arc<Conn>, reader: &mut dyn ReadLines, ctx: &SessionContext<'_>) {
    conn.send_all(&[hello(ctx, true), Line::ask("username", "Username:")]);
    if let Some((name, logged_in_at)) = login(hub, conn, reader, ctx) {
        // The password check and the welcome went deeper than waiting for a line goes.
        super::capacity::stack::release_unused_stack();
        log::info!("{name} logged in from {}", conn.peer);
        let (reason, bye) = command_loop(hub, conn, reader, &name, logged_in_at, ctx);
        // Offline first, then BYE: a client that has read BYE knows the others see it gone.
        hub.logout(&name, conn.id, reason);
        if let Some(bye) = bye {
            conn.send(&bye);
        }
        log::info!("{name} logged out ({reason:?})");
    }
    conn.wait_flushed(Duration::from_secs(1));
    conn.close();
    drain_unread(conn);
}

/// Waits until `until` on `ticks` before a line over the rate limit is handled, reading
/// nothing meanwhile so that TCP pushes back on the sender (see `policy`). `until` is the
/// line's arrival, as the rate limit saw it, plus its wait: what the session wrote in
/// between does not delay it. False if the connection was closed meanwhile (shutdown, or
/// dropped as a stuck reader).
pub(super) fn pause(conn: &Conn, ticks: &dyn Ticks, until: Instant) -> bool {
    /// How often a pause looks whether its connection was closed.
    const LOOK_EVERY: Duration = Duration::from_millis(50);
    let look_every = ticks
        .recheck_every()
        .map_or(LOOK_EVERY, |r| r.min(LOOK_EVERY));
    loop {
        if conn.is_closed() {
            return false;
        }
        let left = until.saturating_duration_since(ticks.now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(look_every));
    }
}

/// What to do with an input that is not a line.
enum NotALine {
    /// Tell the client and keep reading.
    Reply(Line),
    /// Nothing arrived; the caller checks its deadline.
    TimedOut,
    /// The connection is gone.
    Closed,
}

/// `limit` is `max_line_bytes`, named in the reply so the user knows how much to cut.
fn classify(input: Input, limit: usize) -> Result<String, NotALine> {
    match input {
        Input::Line(l) => Ok(l),
        Input::TooLong(n) => Err(NotALine::Reply(Line::err(
            "line-too-long",
            format!("That line was {n} bytes; the limit is {limit} bytes. It was not sent."),
        ))),
        Input::BadUtf8 => Err(NotALine::Reply(Line::err(
            "bad-utf8",
            "That line was not valid UTF-8; it was not sent.",
        ))),
        Input::TimedOut => Err(NotALine::TimedOut),
        Input::Closed => Err(NotALine::Closed),
    }
}

/// Runs the login dialogue; returns the logged-in name, and when (on `ctx.ticks`) the login
/// finished.
#[inline(never)]
fn login(
    hub: &Hub,
    conn: &Arc<Conn>,
    reader: &mut dyn ReadLines,
    ctx: &SessionContext<'_>,
) -> Option<(String, Instant)> {
    let ip = conn.peer.ip();
    // A slowloris of half-finished logins must not hold threads for long.
    let timers = Timers::new(SessionLimits::of(hub.config()), ctx.connected);
    let mut pending_name: Option<String> = None;
    // A client that sent its name and password at once gets ASK password, WELCOME and its
    // mail in one send (see `outbox::burst`); one that waits for each prompt, each prompt at once.
    let mut burst = Burst::begin(hub, conn);
    loop {
        burst.before_read();
        let input = reader.next_line(conn, Deadline::new(ctx.ticks, timers.deadline()));
        burst.after_read(reader.has_buffered_line());
        let line = match classify(input, hub.config().max_line_bytes) {
            Ok(l) => l,
            Err(NotALine::Reply(l)) => {
                conn.send(&l);
                continue;
            }
            Err(NotALine::TimedOut) => {
                if timers.expired(ctx.ticks.now()) == Some(Expiry::Login) {
                    conn.send(&Line::bye("timeout", "Login timed out. Logging off."));
                    return None;
                }
                continue;
            }
            Err(NotALine::Closed) => return None,
        };
        if ctx.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        match protocol_request(&line) {
            Some(ProtocolRequest::Tagged) => {
                let asking = match pending_name {
                    Some(_) => Line::ask("password", "Password:"),
                    None => Line::ask("username", "Username:"),
                };
                switch_protocol(conn, ctx, Some(asking), true);
                continue;
            }
            // At the password prompt any other line is the password.
            Some(ProtocolRequest::Unknown(version)) if pending_name.is_none() => {
                conn.send_all(&[
                    unknown_protocol(&version),
                    Line::ask("username", "Username:"),
                ]);
                continue;
            }
            _ => {}
        }
        match pending_name.take() {
            None => {
                let name = line.trim();
                // Seed 000's users typed "log on" to connect: here it just asks again.
                if name.is_empty() || name.eq_ignore_ascii_case("log on") {
                    conn.send(&Line::ask("username", "Username:"));
                    continue;
                }
                match hub.check_name(name, ip) {
                    NameCheck::Ok {
                        password_needed: true,
                    } if hub.config().require_tls && !conn.is_tls() => {
                        conn.send(&tls_required(hub.config(), ctx.door));
                        return None;
                    }
                    NameCheck::Ok {
                        password_needed: true,
                    } => {
                        pending_name = Some(name.to_string());
                        reader.hide_echo(conn);
                        conn.send(&Line::ask("password", "Password:"));
                    }
                    NameCheck::Ok {
                        password_needed: false,
                    } => {
                        if let Some(done) = finish_login(hub, conn, name, ctx.ticks) {
                            return Some(done);
                        }
                    }
                    NameCheck::Retry(why) => {
                        conn.send_all(&[render::refusal(why), Line::ask("username", "Username:")]);
                    }
                    NameCheck::Close(why) => {
                        conn.send(&render::refusal(why));
                        return None;
                    }
                }
            }
            Some(name) => {
                // A telnet client echoes again (and the line its Enter left open ends).
                reader.show_echo(conn);
                match hub.check_password(&name, &line, ip) {
                    PasswordCheck::Ok => {
                        if let Some(done) = finish_login(hub, conn, &name, ctx.ticks) {
                            return Some(done);
                        }
                    }
                    PasswordCheck::Retry(why) => {
                        // Back to the username: the name itself may have been the typo.
                        conn.send_all(&[render::refusal(why), Line::ask("username", "Username:")]);
                    }
                    PasswordCheck::Close(why) => {
                        conn.send(&render::refusal(why));
                        return None;
                    }
                }
            }
        }
    }
}

/// Puts the user online; returns the name and when the login finished. On a lost race for
/// the name, asks for a username again.
fn finish_login(
    hub: &Hub,
    conn: &Arc<Conn>,
    name: &str,
    ticks: &dyn Ticks,
) -> Option<(String, Instant)> {
    // Read before WELCOME goes out: whatever the client does once it has read it (a test
    // moving the clock too) comes after the idle clock started.
    let at = ticks.now();
    match hub.login(name, conn) {
        Ok(()) => Some((name.to_string(), at)),
        Err(why) => {
            conn.send_all(&[render::refusal(why), Line::ask("username", "Username:")]);
            None
        }
    }
}

/// Reads and applies commands until the user leaves; returns why, and the BYE to send once
/// the user is offline.
#[inline(never)]
fn command_loop(
    hub: &Hub,
    conn: &Arc<Conn>,
    reader: &mut dyn ReadLines,
    name: &str,
    logged_in_at: Instant,
    ctx: &SessionContext<'_>,
) -> (LogoutReason, Option<Line>) {
    let limits = SessionLimits::of(hub.config());
    let mut timers = Timers::new(limits, ctx.connected);
    // Heartbeats are checked only for clients that send them (telnet users do not).
    timers.logged_in(logged_in_at, Silence::Heartbeats { promised: false });
    let mut pace = Pace::new(&limits, logged_in_at);
    let mut awaiting_intro = false;
    // Replies and deliveries of a burst of pipelined lines go out together (see `outbox::burst`).
    let mut burst = Burst::begin(hub, conn);
    loop {
        burst.before_read();
        let input = reader.next_line(conn, Deadline::new(ctx.ticks, timers.deadline()));
        burst.after_read(reader.has_buffered_line());
        // One clock reading per line for all of its bookkeeping (a handful of them was 2 %
        // of the server's CPU in pairs 64).
        let now = ctx.ticks.now();
        let line = match classify(input, hub.config().max_line_bytes) {
            Ok(l) => l,
            Err(NotALine::Reply(l)) => {
                timers.heard(now, Heard::Activity);
                conn.send(&l);
                continue;
            }
            Err(NotALine::TimedOut) => match timers.expired(now) {
                Some(Expiry::Silent) => {
                    let bye =
                        Line::bye("timeout", "No heartbeat from your client; logging you off.");
                    return (LogoutReason::Heartbeat, Some(bye));
                }
                Some(Expiry::Idle) => {
                    let bye = Line::bye(
                        "timeout",
                        "(You are time out) You were idle too long. Logging off.",
                    );
                    return (LogoutReason::Timeout, Some(bye));
                }
                _ => continue,
            },
            Err(NotALine::Closed) => return (closed_reason(ctx), None),
        };
        let heartbeat = is_heartbeat(&line);
        timers.heard(
            now,
            if heartbeat {
                Heard::KeepAlive
            } else {
                Heard::Activity
            },
        );
        // Every line counts against the rate, heartbeats too (a flood of them would cost as
        // much as any other); only a logout never waits.
        match pace.take(now) {
            Take::Now => {}
            _ if is_logout(&line) => {}
            Take::After(wait) => {
                // What the lines before this one produced goes out before the wait.
                burst.release();
                if !pause(conn, ctx.ticks, now + wait) {
                    return (closed_reason(ctx), None);
                }
            }
            Take::Flood => {
                let bye = Line::bye("flood", flood_reason(&limits));
                return (LogoutReason::Flood, Some(bye));
            }
        }
        match protocol_request(&line) {
            Some(ProtocolRequest::Tagged) => {
                let asking = awaiting_intro.then(intro_prompt);
                switch_protocol(conn, ctx, asking, false);
                continue;
            }
            // An intro, or a chat line, may begin with the word.
            Some(ProtocolRequest::Unknown(version)) if !awaiting_intro && !hub.in_session(name) => {
                conn.send(&unknown_protocol(&version));
                continue;
            }
            _ => {}
        }
        if heartbeat {
            timers.heartbeat_promised();
            conn.send(&Line::ok("pong", "still here"));
            continue;
        }
        if awaiting_intro {
            awaiting_intro = false;
            conn.send(&hub.set_intro(name, &sanitize_text(line.trim())));
            continue;
        }
        if line.trim().is_empty() {
            if let Some(replies) = hub.decline_address_on_blank(name) {
                conn.send_all(&replies);
            }
            continue;
        }
        if !is_session_command(&line) && hub.in_session(name) {
            conn.send_all(&hub.talk(name, &sanitize_text(line.trim())));
            continue;
        }
        let command = match parse_command(&line, name) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) if e.code == "unknown-command" && hub.in_session(name) => {
                conn.send_all(&hub.talk(name, &sanitize_text(line.trim())));
                continue;
            }
            Err(e) if e.code == "unknown-command" && super::room::is_room_line(hub, &line) => {
                conn.send_all(&super::room::say(hub, name, &line));
                continue;
            }
            Err(e) => {
                conn.send(&Line::err(e.code, e.message));
                continue;
            }
        };
        let replies = match command {
            Command::Logout => {
                let bye = Line::bye("logout", "Logging off. Goodbye!");
                return (LogoutReason::Requested, Some(bye));
            }
            Command::Intro(None) => {
                awaiting_intro = true;
                vec![intro_prompt()]
            }
            Command::Accept(from) | Command::Decline(from)
                if !hub.has_pending(name) && hub.in_session(name) && from.is_none() =>
            {
                // Inside a session "yes"/"no" with nothing to answer is just a chat line.
                hub.talk(name, &sanitize_text(line.trim()))
            }
            other => apply(hub, name, other),
        };
        conn.send_all(&replies);
    }
}

/// `HELLO`: the first tagged line, at connect and after a switch to tagged lines.
fn hello(ctx: &SessionContext<'_>, logging_in: bool) -> Line {
    let text = if logging_in {
        "Welcome to lanchat. Please log in."
    } else {
        "Welcome to lanchat."
    };
    Line::new(Kind::Hello, &[ctx.version], text)
}

/// The question `personalintro` without a text asks.
fn intro_prompt() -> Line {
    Line::ask("intro", "Please enter your personal introduction:")
}

/// Answers `protocol lanchat/1`: switches a native connection to tagged lines and greets
/// it again on a fresh line, repeating the question that waits for an answer (`asking`);
/// a connection that speaks them already (a repeat, or the web door) is told so.
fn switch_protocol(
    conn: &Arc<Conn>,
    ctx: &SessionContext<'_>,
    asking: Option<Line>,
    logging_in: bool,
) {
    match ctx.terminal.map(|t| t.switch_to_tagged()) {
        Some(Switch::Switched { open_prompt }) => {
            if open_prompt {
                conn.send_bytes(b"\n");
            }
            let mut lines = vec![hello(ctx, logging_in)];
            lines.extend(asking);
            conn.send_all(&lines);
        }
        Some(Switch::Already) | None => {
            conn.send(&Line::ok(
                "protocol",
                format!("This connection speaks {} already.", ctx.version),
            ));
        }
    }
}

/// A heartbeat (the client's automatic `heartbeat` line) keeps a connection alive without
/// counting as user activity, and opts the connection in to the heartbeat timeout. A person
/// typing `ping` gets `OK pong` as an ordinary command instead.
fn is_heartbeat(line: &str) -> bool {
    line.trim().eq_ignore_ascii_case("heartbeat")
}

/// Why the connection ended when its read found it closed.
fn closed_reason(ctx: &SessionContext<'_>) -> LogoutReason {
    if ctx.shutting_down.load(Ordering::Acquire) {
        LogoutReason::Shutdown
    } else {
        LogoutReason::Dropped
    }
}

/// What a client disconnected as a flood is told (`BYE flood`, or IRC's `ERROR`).
fn flood_reason(limits: &SessionLimits) -> String {
    format!(
        "You kept sending faster than {} lines a second for {} seconds; disconnecting.",
        limits.rate,
        limits.flood.unwrap_or_default().as_secs()
    )
}

/// Logging out never waits for the rate limit.
fn is_logout(line: &str) -> bool {
    matches!(parse_command(line, ""), Ok(Some(Command::Logout)))
}

/// Applies a command that needs no session-local state.
pub(super) fn apply(hub: &Hub, me: &str, command: Command) -> Vec<Line> {
    match command {
        Command::Help => help(),
        Command::WhoElse => hub.whoelse(me),
        Command::SignedIn => hub.signed_in(me),
        Command::WhoLast(minutes) => hub.wholast(me, minutes),
        Command::Message { to, text } => hub.message(me, &to, text),
        Command::Broadcast { audience, text } => hub.broadcast(me, &audience, &text),
        Command::Intro(text) => vec![hub.set_intro(me, text.as_deref().unwrap_or(""))],
        Command::History { with, count } => hub.history(me, &with, count),
        Command::Chat(with) => hub.chat_request(me, &with),
        Command::Accept(from) => hub.answer(me, from.as_deref(), true),
        Command::Decline(from) => hub.answer(me, from.as_deref(), false),
        Command::P2pPort(port) => vec![hub.set_p2p_port(me, port)],
        Command::GetAddress(user) => hub.get_address(me, &user),
        Command::RemoveAddress(user) => vec![hub.remove_address(me, &user)],
        Command::AddressBook => hub.address_book(me),
        Command::Private => vec![Line::err(
            "client-only",
            "private messages go directly between lanchat clients (lanchat-client); here, use 'message USER TEXT'.",
        )],
        Command::End(id) => hub.end_session(me, id),
        Command::SessionNumber => vec![hub.session_number(me)],
        Command::Say(text) => hub.talk(me, &text),
        Command::Block(user) => vec![hub.block(me, &user)],
        Command::Unblock(user) => vec![hub.unblock(me, &user)],
        Command::Blocked => hub.blocked(me),
        Command::Status(s) => vec![hub.status(me, s)],
        Command::Group(action) => hub.group(me, &action),
        Command::Heartbeat => vec![Line::ok("pong", "still here")],
        Command::LogOn => vec![Line::ok("logged-on", format!("You are logged on as {me}."))],
        Command::Logout => unreachable!("handled by the command loop"),
    }
}

/// The `help` text: every command with its aliases.
pub const HELP: &[&str] = &[
    "whoelse | online                         who else is online (with intros)",
    "list                                     everyone signed in, you included",
    "wholast N                                who was online in the last N (0-60) minutes",
    "message USER TEXT | send USER TEXT       private message via the server (stored if USER is offline)",
    "broadcast TEXT                           to everyone online now",
    "all TEXT                                 the same, TEXT taken as is (may start with 'message')",
    "broadcast message TEXT                   to every user; offline users get it at login",
    "broadcast user U1 U2 ... message TEXT    to the listed users",
    "personalintro [TEXT]                     set your intro (without TEXT: the next line)",
    "history USER [N] | HISTORY_REQ(me-USER)  last N (20) lines of your log with USER",
    "chat USER | CHAT_REQUEST(me-USER)        ask USER for a two-person chat session",
    "accept [USER] | decline [USER]           answer a chat request (also yes / no)",
    "end [N] | END_REQUEST(N)                 end your chat session",
    "snum | SNUM                              your chat session number",
    "say TEXT                                 a session line that starts with a command word",
    "block USER | unblock USER | blocked      your blacklist",
    "status [available|busy|invisible]        show or set your status (also away / back)",
    "group create|join|leave|members NAME     groups; group list shows them all",
    "group send NAME TEXT | gsend NAME TEXT   message a group (offline members get mail)",
    "getaddress USER                          ask USER to exchange addresses for direct messages",
    "private USER TEXT                        direct message (lanchat-client; works without the server)",
    "removeaddress USER | addressbook         your direct-message address book",
    "log on                                   (seed 000) says you are logged on",
    "help | HELP                              this list",
    "logout | log out | exit | quit           leave",
    "Commands are case-insensitive and may start with '/'. In a chat session, lines go to your partner; there, commands other than end, snum, help, say, accept, decline and logout need a leading '/'.",
];

fn help() -> Vec<Line> {
    Line::entry_list("help", "Commands:", HELP.iter().map(|h| h.to_string()))
}

/// The goodbye of a plain door under `require_tls`, before the password is typed: where to
/// connect instead (a browser user is not sent to openssl).
fn tls_required(config: &crate::config::Config, door: super::door::Door) -> Line {
    let text = if door == super::door::Door::Web {
        "This server takes passwords only encrypted, and this page is not: ask the instructor \
         to turn on web_tls and open the page with https://, or use lanchat-client (it uses \
         TLS by itself)."
            .to_string()
    } else {
        let port = config
            .tls_port
            .to_bind()
            .map_or("the TLS port".to_string(), |p| format!("port {p}"));
        format!(
            "This server takes passwords only encrypted. Connect with lanchat-client (it uses \
             TLS by itself), or to {port} with TLS (openssl s_client -connect HOST:PORT)."
        )
    };
    Line::bye("tls-required", text)
}

/// Reads and discards whatever the client sent that was never read, so closing the socket
/// sends FIN rather than RST (an RST could destroy the final BYE line before it is read).
/// Not inlined: its buffer would sit in every caller's frame for the whole connection.
#[inline(never)]
pub(super) fn drain_unread(conn: &Conn) {
    use std::io::Read;
    let stream = conn.stream();
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match (&*stream).read(&mut buf) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
