//! The main loop: one thread that owns the connection's write half, the screen and the
//! login state, and reacts to every [`ClientEvent`] the other threads send (see the module doc
//! of `client` for the picture). The server's lines are handled here; what the user types
//! that the client handles itself (direct messages, the address book) is `commands`.
//!
//! What it does not do: read the socket or the keyboard (their threads do), or render
//! (`render` does).

mod commands;

use super::connect::open;
use super::direct::{Book, PeerOutbox};
use super::input::{self, Keyboard, ReadRequest};
use super::reader::spawn_reader;
use super::render::Renderer;
use super::screen::{editor, line_editing, Screen};
use super::sys::SavedTerminal;
use super::{secure, seen, Charset, ClientEvent, Ending, Error, Options, PROMPT};
use crate::protocol::{Kind, Line};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

/// How long to wait for the server's `BYE` after sending `logout` on Ctrl-C or Ctrl-D.
const LOGOUT_GRACE: Duration = Duration::from_secs(2);
/// How long the line editor gets to draw lines already handed to it before the last line is
/// written directly and the process leaves.
const EDITOR_DRAIN: Duration = Duration::from_millis(50);
/// `ERR` codes that answer `getaddress` (PROTOCOL.md 9.1), and the parse errors it can get.
const GETADDRESS_ERRORS: &[&str] = &[
    "self",
    "unknown-user",
    "unreachable",
    "blocked",
    "no-p2p",
    "already-paired",
    "usage",
    "bad-name",
];

/// What the client sends first: the server's tagged lines, please (PROTOCOL.md 1).
const ASK_TAGGED: &[u8] = b"protocol lanchat/1\n";

/// Connects, runs the session until it ends, and puts the terminal back as it was.
///
/// Installs a process-wide Ctrl-C/SIGTERM/SIGHUP handler; if one is installed already
/// (a second call in one process), signals keep their previous behaviour.
pub fn run(options: &Options) -> Result<Ending, Error> {
    let socket = open(options)?;
    // The native door speaks prose to people until a program asks for its tagged lines
    // (PROTOCOL.md 1); the reader skips the prose greeting up to `HELLO`.
    socket.write_all(ASK_TAGGED)?;

    let editor_mode = line_editing(
        io::stdin().is_terminal() && io::stdout().is_terminal(),
        options.charset.is_utf8(),
        std::env::var_os("TERM").as_deref(),
    );
    let terminal = SavedTerminal::save(editor_mode);
    let (events_tx, events) = crossbeam_channel::unbounded();
    spawn_reader(socket.reader()?, events_tx.clone())?;

    let signals = events_tx.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = signals.send(ClientEvent::Interrupted);
    }) {
        log::debug!("signal handler not installed: {e}");
    }

    let (screen, keyboard) = if editor_mode {
        match editor() {
            Ok((printer, editor)) => (Screen::Editor(printer), Keyboard::Editor(Box::new(editor))),
            Err(e) => {
                log::warn!("line editing unavailable ({e}); reading plain lines");
                (
                    Screen::Plain,
                    Keyboard::Plain {
                        tty: true,
                        charset: options.charset,
                    },
                )
            }
        }
    } else {
        (
            Screen::Plain,
            Keyboard::Plain {
                tty: io::stdin().is_terminal(),
                charset: options.charset,
            },
        )
    };
    let (requests, requests_rx) = crossbeam_channel::unbounded();
    input::spawn(keyboard, requests_rx, events_tx.clone())?;

    let mut client = Client {
        socket,
        screen,
        renderer: Renderer::new(options.color.enabled_here()),
        requests,
        terminal,
        logged_in: false,
        answering: false,
        leaving: false,
        deadline: None,
        output_gone: false,
        next_heartbeat: None,
        pongs_due: 0,
        heartbeat_every: options.heartbeat,
        me: String::new(),
        book: Book::default(),
        outbox: PeerOutbox::new(events_tx.clone()),
        events: events_tx,
        p2p_port: options.p2p_port,
        p2p_reply_due: false,
        waiting: HashMap::new(),
        asked: VecDeque::new(),
        in_session: false,
        server_down: false,
        charset: options.charset,
        username: options.username.clone(),
        seen_mail: seen::SeenMail::default(),
    };
    client.run(&events)
}

/// The main loop's state.
struct Client {
    /// The write half of the connection (the reader thread holds a clone).
    socket: secure::Link,
    /// Where output goes.
    screen: Screen,
    /// Line to text.
    renderer: Renderer,
    /// Tells the input thread what to read next.
    requests: Sender<ReadRequest>,
    /// Restores the terminal on the way out, whichever way that is.
    terminal: SavedTerminal,
    /// `WELCOME` has arrived.
    logged_in: bool,
    /// The server asked a question after login (`ASK intro`); the next typed line answers.
    answering: bool,
    /// `logout` was sent because the user is leaving.
    leaving: bool,
    /// When to stop waiting for the server: after `logout`, or after a failed write.
    deadline: Option<Instant>,
    /// Standard output is closed (e.g. piped into `head`): leave quietly.
    output_gone: bool,
    /// When the next heartbeat is due (after login), so the server can tell a client that
    /// is alive but quiet from a laptop that went to sleep (seed 002).
    next_heartbeat: Option<Instant>,
    /// Heartbeats sent whose `OK pong` has not arrived yet; those replies are not shown.
    pongs_due: usize,
    /// The heartbeat interval.
    heartbeat_every: Duration,
    /// The logged-in user (from `WELCOME`): the sender of direct messages.
    me: String,
    /// Who direct messages can go to; shared with the direct listener's threads.
    book: Book,
    /// Sends direct messages on worker threads.
    outbox: PeerOutbox,
    /// For the direct listener, started at login.
    events: Sender<ClientEvent>,
    /// The port to listen on for direct messages (0: any).
    p2p_port: u16,
    /// `p2p PORT` was sent; its `OK p2p` is not shown.
    p2p_reply_due: bool,
    /// Texts typed as `send USER TEXT` while USER was not in the address book, by USER:
    /// sent when the server grants the address, dropped with an error when it does not.
    waiting: HashMap<String, Vec<String>>,
    /// Users asked with `getaddress` on behalf of `send`, whose `OK`/`ERR` has not come yet
    /// (the server answers commands in order).
    asked: VecDeque<String>,
    /// In a chat session lines are conversation: only `/`-commands are handled locally.
    in_session: bool,
    /// The server is gone but the address book is not empty: only direct messages work.
    server_down: bool,
    /// The terminal's encoding, for what is written to standard output.
    charset: Charset,
    /// Given on the command line: answers the first `ASK username` (then `None`).
    username: Option<String>,
    /// Offline mail already shown, so a repeat after a broken delivery is dropped.
    seen_mail: seen::SeenMail,
}

impl Client {
    fn run(&mut self, events: &Receiver<ClientEvent>) -> Result<Ending, Error> {
        loop {
            let wake = match (self.deadline, self.next_heartbeat) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let event = match wake {
                Some(wake) => match events.recv_deadline(wake) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout)
                        if self.next_heartbeat.is_some_and(|t| Instant::now() >= t) =>
                    {
                        self.heartbeat();
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) if self.leaving => {
                        log::info!("the server did not confirm the logout");
                        return Ok(Ending::Quit);
                    }
                    Err(RecvTimeoutError::Timeout) if self.deadline.is_none() => continue,
                    Err(RecvTimeoutError::Timeout) => match self.lost()? {
                        Some(ending) => return Ok(ending),
                        None => continue,
                    },
                    Err(RecvTimeoutError::Disconnected) => return Err(Error::Lost),
                },
                None => events.recv().map_err(|_| Error::Lost)?,
            };
            if let Some(ending) = self.handle(event)? {
                return Ok(ending);
            }
            if self.output_gone {
                if self.logged_in && !self.leaving {
                    self.send("logout");
                }
                return Ok(Ending::Quit);
            }
        }
    }

    fn handle(&mut self, event: ClientEvent) -> Result<Option<Ending>, Error> {
        match event {
            ClientEvent::Server(line) if self.server_down => {
                // `BYE` is the server's last word; a line after it (a peer's `ADDR gone` as
                // the server logs everyone out) must not empty the address book.
                log::debug!("ignored after the server's goodbye: {line}");
            }
            ClientEvent::Unknown(_) if self.server_down => {}
            ClientEvent::Server(line) => return Ok(self.on_line(&line)),
            ClientEvent::Unknown(raw) => {
                let text = self.renderer.render_unknown(&raw);
                self.show(&text);
            }
            ClientEvent::Disconnected(e) => {
                if let Some(e) = e {
                    log::debug!("reading from the server: {e}");
                }
                return self.lost();
            }
            ClientEvent::Typed(line) if self.server_down => return Ok(self.typed_offline(&line)),
            ClientEvent::Typed(line) => {
                if std::mem::take(&mut self.answering) || !self.logged_in {
                    // An answer to the server's question, whatever it looks like.
                    self.send(&line);
                } else {
                    self.typed(&line);
                }
            }
            ClientEvent::Direct { from, text } => {
                let text = self.renderer.private(&from, &text);
                self.show(&text);
            }
            ClientEvent::Sent { to, result } => match result {
                Ok(()) => self.show(&format!(
                    "Your private message was delivered to {}.",
                    crate::protocol::sanitize_text(&to)
                )),
                Err(e) => self.error(&format!("private message to {to} not delivered: {e}")),
            },
            ClientEvent::EndOfInput | ClientEvent::Interrupted => {
                if !self.logged_in || self.leaving || self.server_down {
                    return Ok(Some(Ending::Quit));
                }
                if self.answering {
                    // The server takes the next line as the answer (an intro); give it an
                    // empty one so that `logout` is read as a command.
                    self.send("");
                }
                self.send("logout");
                self.leaving = true;
                self.deadline = Some(Instant::now() + LOGOUT_GRACE);
            }
        }
        Ok(None)
    }

    fn on_line(&mut self, line: &Line) -> Option<Ending> {
        let text = self.renderer.render(line);
        match line.kind {
            Kind::Ask
                if !self.logged_in && line.arg(0) == "username" && self.username.is_some() =>
            {
                // Seed 004's `-u USERNAME`: answered here, shown as if typed.
                let name = self.username.take().unwrap_or_default();
                self.show(&format!("{text} {name}"));
                self.send(&name);
            }
            Kind::Ask if !self.logged_in => {
                if let Screen::Plain = self.screen {
                    // The question as a line of its own, so a transcript reads well.
                    self.show(&text);
                }
                let _ = self.requests.send(ReadRequest::Ask {
                    prompt: format!("{text} "),
                    secret: line.arg(0) == "password",
                });
            }
            Kind::Ask => {
                self.show(&text);
                self.answering = true;
            }
            Kind::Ok if line.arg(0) == "pong" && self.pongs_due > 0 => {
                self.pongs_due -= 1;
            }
            Kind::Ok if line.arg(0) == "p2p" && self.p2p_reply_due => {
                self.p2p_reply_due = false;
            }
            Kind::Ok if line.arg(0) == "address-requested" => {
                self.asked.pop_front();
                self.show(&text);
            }
            Kind::Err if GETADDRESS_ERRORS.contains(&line.arg(0)) && !self.asked.is_empty() => {
                self.show(&text);
                if let Some(name) = self.asked.pop_front() {
                    self.unsent(&name, "the address exchange failed");
                }
            }
            Kind::Welcome => {
                self.logged_in = true;
                self.me = line.arg(0).to_string();
                // Before anything shows that the login worked, so that the port is known
                // to the server by the time anyone can ask for this user's address.
                self.start_direct();
                self.show(&text);
                self.next_heartbeat = Some(Instant::now() + self.heartbeat_every);
                let _ = self.requests.send(ReadRequest::Free {
                    prompt: PROMPT.to_string(),
                });
            }
            Kind::Addr => {
                // The book first: once `granted` is on screen, a message may be on its way.
                self.on_addr(line);
                self.show(&text);
            }
            Kind::Session => {
                match line.arg(0) {
                    "started" => self.in_session = true,
                    "ended" => self.in_session = false,
                    _ => {}
                }
                self.show(&text);
            }
            Kind::Mail => {
                if self.seen_mail.first_time(line.arg(3)) {
                    self.show(&text);
                }
            }
            Kind::Bye if line.arg(0) == "shutdown" && !self.leaving && !self.book.is_empty() => {
                self.show(&text);
                self.server_gone();
            }
            Kind::Bye => {
                self.last_words(&text);
                return Some(match line.arg(0) {
                    "logout" => Ending::LoggedOut,
                    reason => Ending::Ended {
                        reason: reason.to_string(),
                    },
                });
            }
            _ => self.show(&text),
        }
        None
    }

    /// The connection to the server ended without a goodbye (or the server stopped
    /// answering): an error, unless the user is leaving or peers are left to talk to.
    fn lost(&mut self) -> Result<Option<Ending>, Error> {
        if self.server_down {
            Ok(None)
        } else if self.leaving {
            Ok(Some(Ending::Quit))
        } else if self.logged_in && !self.book.is_empty() {
            self.server_gone();
            Ok(None)
        } else {
            Err(Error::Lost)
        }
    }

    /// The server is gone, but peers are left: keep running for direct messages (seed 002).
    fn server_gone(&mut self) {
        self.server_down = true;
        self.next_heartbeat = None;
        self.deadline = None;
        self.in_session = false;
        self.asked.clear();
        let waiting: Vec<String> = self.waiting.keys().cloned().collect();
        for name in waiting {
            self.unsent(&name, "the server is down");
        }
        let names = self.book.names().join(", ");
        self.show(&format!(
            "The server is down. You may still privately chat with: {names}"
        ));
    }

    /// Shows one of the client's own errors.
    fn error(&mut self, text: &str) {
        let text = self.renderer.error(text);
        self.show(&text);
    }

    /// Sends the automatic heartbeat and schedules the next one.
    fn heartbeat(&mut self) {
        self.next_heartbeat = Some(Instant::now() + self.heartbeat_every);
        if self.logged_in && !self.leaving {
            self.pongs_due += 1;
            self.send("heartbeat");
        }
    }

    fn show(&mut self, text: &str) {
        if let Err(e) = self.screen.show(text, self.charset) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.output_gone = true;
            } else {
                log::warn!("cannot write to the terminal: {e}");
            }
        }
    }

    /// Prints the final line. With the editor, lets it draw what it was handed, then puts
    /// the terminal back and writes directly, since the editor thread will not run again.
    fn last_words(&mut self, text: &str) {
        if let Screen::Editor(_) = self.screen {
            std::thread::sleep(EDITOR_DRAIN);
            self.terminal.restore_and_wipe();
            self.screen = Screen::Plain;
        }
        self.show(text);
    }

    /// Sends one line; a failure is noticed here and confirmed by the reader thread's
    /// `Disconnected` (which comes after any `BYE` already received).
    fn send(&mut self, line: &str) {
        let mut wire = String::with_capacity(line.len() + 1);
        wire.push_str(line);
        wire.push('\n');
        if let Err(e) = self.socket.write_all(wire.as_bytes()) {
            log::debug!("writing to the server: {e}");
            self.deadline.get_or_insert(Instant::now() + LOGOUT_GRACE);
        }
    }
}
