//! The terminal client: `lanchat-client [HOST] [PORT]`.
//!
//! Threads feed one channel of [`Event`]s, and one main loop does everything else:
//!
//! ```text
//!   socket   ─► reader thread (Line::parse)                    ─┐
//!   keyboard ─► input thread (line editor / plain lines /       │
//!               hidden password)                                ├─► events ─► main loop:
//!   peers    ─► direct listener (one thread per connection)     │   render, print, send,
//!   direct::Outbox workers (outcomes of direct sends)           │   decide when to leave
//!   Ctrl-C, SIGTERM, SIGHUP ─► signal handler                  ─┘
//! ```
//!
//! The main loop owns the socket's write half, the screen and the login state: during the
//! login dialogue it asks the input thread for exactly one line per server `ASK` (echo off
//! for a password when standard input is a terminal), and after `WELCOME` lets it read
//! freely. Ctrl-C or end of input sends `logout` and waits briefly for the server's `BYE`.
//! A `BYE` from the server ends the client; a connection that closes without one is an
//! error. Returning from [`run`] ends the client even though the input thread may still be
//! blocked in a read: the process exits when `main` returns.
//!
//! Direct messages ([`direct`], seed 002): after `WELCOME` the client listens for peers and
//! tells the server its port (`p2p PORT`). It handles `private USER TEXT`, `addressbook`
//! and seed 004's `send USER TEXT` itself, keeps the address book from the server's `ADDR`
//! lines, and drops a peer on `removeaddress`. When the server goes away (`BYE shutdown` or
//! a lost connection) while the address book is not empty, the client says so and keeps
//! running for direct messages, `addressbook`, `help` and `logout`.
//!
//! What it deliberately does not do: parse or check the server's commands (the server does,
//! so every alias and error message is the server's), reconnect, or keep any state beyond
//! the session.
//!
//! The terminal may use another charset than the wire's UTF-8 ([`charset`]): typed bytes
//! are decoded and shown text encoded, and the line editor (UTF-8 only) is then not used.
//! Finding a server when no address is given is [`discover`]'s, before any of this starts.

pub mod charset;
pub mod direct;
pub mod discover;
mod input;
pub mod render;
pub mod secure;
mod seen;
mod sys;

use crate::protocol::{parse_command, Command, Kind, Line};
use charset::Charset;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use direct::{Book, Local, Outbox, Peer};
use input::{Keyboard, Request};
use render::Renderer;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use sys::Terminal;

/// The host connected to when none is given.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The port connected to when none is given (seed 001's example port).
pub const DEFAULT_PORT: u16 = 4119;
/// The port listened on for direct messages when none is given: any free port.
pub const DEFAULT_P2P_PORT: u16 = 0;
/// The command prompt shown by the line editor once logged in.
pub const PROMPT: &str = "lanchat> ";
/// How often the client proves it is alive; the server's `heartbeat_timeout_secs` (35 s by
/// default) must be longer.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// How long to wait for the server's `BYE` after sending `logout` on Ctrl-C or Ctrl-D.
const LOGOUT_GRACE: Duration = Duration::from_secs(2);
/// How long one connection attempt may take (an absent LAN host would otherwise take
/// minutes to fail).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest server line read in one piece; a longer one is shown in pieces.
const MAX_LINE_BYTES: u64 = 1 << 20;
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
/// What `help` shows once the server is down.
const OFFLINE_HELP: &[&str] = &[
    "The server is down; these commands still work:",
    "private USER TEXT | send USER TEXT       a private message straight to USER's client",
    "addressbook                              who you can message privately",
    "help                                     this list",
    "logout | exit | quit                     leave (also Ctrl-D, Ctrl-C)",
];

/// When to colour the output (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal, `NO_COLOR` is unset or empty, and `TERM`
    /// is not `dumb`.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// The decision, from its inputs: whether standard output is a terminal and the values
    /// of `NO_COLOR` and `TERM`.
    pub fn enabled(
        self,
        stdout_is_tty: bool,
        no_color: Option<&OsStr>,
        term: Option<&OsStr>,
    ) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                stdout_is_tty
                    && no_color.is_none_or(OsStr::is_empty)
                    && term.is_none_or(|t| t != "dumb")
            }
        }
    }

    /// The decision for this process's standard output and environment.
    pub fn enabled_here(self) -> bool {
        self.enabled(
            io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    }
}

/// What to connect to and how to show things.
#[derive(Clone, Debug)]
pub struct Options {
    /// Server host: an IPv4 or IPv6 address (brackets optional) or a host name.
    pub host: String,
    /// Server TCP port.
    pub port: u16,
    /// When to colour the output.
    pub color: ColorChoice,
    /// How often to send `heartbeat` once logged in (seed 002 sent one every 30 s).
    pub heartbeat: Duration,
    /// The TCP port to listen on for direct messages from peers (0: any free port).
    pub p2p_port: u16,
    /// The terminal's character encoding (the wire is UTF-8).
    pub charset: Charset,
    /// Answers the server's first username question (seed 004's `-u USERNAME`).
    pub username: Option<String>,
    /// TLS: the server's TLS port, an expected fingerprint, where pins are kept.
    pub tls: secure::TlsOptions,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            color: ColorChoice::Auto,
            heartbeat: DEFAULT_HEARTBEAT,
            p2p_port: DEFAULT_P2P_PORT,
            charset: Charset::UTF8,
            username: None,
            tls: secure::TlsOptions::default(),
        }
    }
}

/// How a session that did not fail ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server confirmed a logout (`BYE logout`).
    LoggedOut,
    /// The user left without a confirmed logout: before logging in, with a second Ctrl-C,
    /// when the server did not answer `logout` in time, or when standard output went away.
    Quit,
    /// The server ended the session for another reason: `shutdown`, `timeout`, `blocked`,
    /// `replaced`, ... (the `BYE` reason word).
    Ended {
        /// The reason word of the server's `BYE`.
        reason: String,
    },
}

impl Ending {
    /// The exit status: 0 when the user chose to leave, 1 when the server ended it.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Ending::LoggedOut | Ending::Quit => ExitCode::SUCCESS,
            Ending::Ended { .. } => ExitCode::FAILURE,
        }
    }
}

/// Why the client failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached (name lookup, refused, timed out, ...).
    Connect {
        /// `host:port` as the user gave it.
        target: String,
        /// What the system said.
        source: io::Error,
    },
    /// The server could not prove it is the one pinned or named (`--fingerprint`): why,
    /// and what to check.
    Untrusted(String),
    /// The connection closed without the server saying goodbye.
    Lost,
    /// Something local failed (starting a thread, reading the terminal).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { target, source } => write!(f, "cannot connect to {target}: {source}"),
            Error::Untrusted(why) => f.write_str(why),
            Error::Lost => f.write_str("connection to the server was lost"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Lost | Error::Untrusted(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// Something the main loop reacts to; every thread and the signal handler produce these.
#[derive(Debug)]
pub(crate) enum Event {
    /// A line from the server.
    Server(Line),
    /// A line from the server of a kind this client does not know, as received.
    Unknown(String),
    /// The server closed the connection, or reading from it failed.
    Disconnected(Option<io::Error>),
    /// A line the user typed (without its line ending).
    Typed(String),
    /// The input ended (Ctrl-D on a terminal, or the end of piped input).
    EndOfInput,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// A direct message from a peer in the address book, its MAC checked (text as sent).
    Direct {
        /// The peer.
        from: String,
        /// The message, not yet escaped.
        text: String,
    },
    /// How sending a direct message ended.
    Sent {
        /// The peer.
        to: String,
        /// `Err` says why it was not delivered.
        result: Result<(), String>,
    },
}

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
    let terminal = Terminal::save(editor_mode);
    let (events_tx, events) = crossbeam_channel::unbounded();
    spawn_reader(socket.reader()?, events_tx.clone())?;

    let signals = events_tx.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = signals.send(Event::Interrupted);
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
        outbox: Outbox::new(events_tx.clone()),
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

/// Terminals the line editor cannot drive (rustyline's own list of unsupported ones).
const PLAIN_TERMS: &[&str] = &["dumb", "cons25", "emacs"];

/// Whether to edit lines: on a terminal (standard input and output), in UTF-8 (the editor
/// reads and writes nothing else), whose `TERM` can move a cursor. Otherwise plain lines are
/// read, quietly: a `TERM=dumb` user asked for exactly that.
fn line_editing(on_terminal: bool, utf8: bool, term: Option<&OsStr>) -> bool {
    on_terminal && utf8 && term.is_none_or(|t| !PLAIN_TERMS.iter().any(|p| t == *p))
}

/// A line editor and a printer that writes above its prompt.
fn editor() -> rustyline::Result<(
    Box<dyn rustyline::ExternalPrinter + Send>,
    rustyline::DefaultEditor,
)> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let printer = editor.create_external_printer()?;
    Ok((Box::new(printer), editor))
}

/// Connects over TLS when the server's TLS door answers (see `secure`), else to the plain
/// port; prints what the user must know first (a new fingerprint, an unencrypted link).
fn open(options: &Options) -> Result<secure::Link, Error> {
    let tls_addr = match options.tls.port {
        0 => None,
        port => (
            options.host.trim_start_matches('[').trim_end_matches(']'),
            port,
        )
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next()),
    };
    // The plain port's own error, which names that port.
    let mut plain_error = None;
    let secured = secure::secure(&options.host, tls_addr, &options.tls, || {
        connect(&options.host, options.port).map_err(|e| {
            let source = io::Error::other(e.to_string());
            plain_error = Some(e);
            source
        })
    })
    .map_err(|refusal| match (refusal, plain_error.take()) {
        (secure::Refusal::Untrusted(why), _) => Error::Untrusted(why),
        (secure::Refusal::Io(_), Some(plain)) => plain,
        (secure::Refusal::Io(source), None) => Error::Connect {
            target: secure::pin_key(&options.host, options.tls.port),
            source,
        },
    })?;
    match (&secured.notice, secured.link.is_tls()) {
        (Some(notice), true) => println!("{notice}"),
        // On standard error, like other warnings: what is piped out stays the chat.
        (Some(notice), false) => eprintln!("{notice}"),
        (None, _) => {}
    }
    Ok(secured.link)
}

/// Resolves `host` and connects to the first address that answers.
fn connect(host: &str, port: u16) -> Result<TcpStream, Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let target = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let failed = |source| Error::Connect {
        target: target.clone(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in (bare, port).to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                log::debug!("{addr}: {e}");
                last = e;
            }
        }
    }
    Err(failed(last))
}

/// What the client sends first: the server's tagged lines, please (PROTOCOL.md 1).
const ASK_TAGGED: &[u8] = b"protocol lanchat/1\n";

/// The most lines of prose before `HELLO` kept, to be shown if the server closes before it.
const MAX_PROSE_LINES: usize = 20;

/// Starts the thread that turns the server's bytes into [`Event`]s, ending with
/// [`Event::Disconnected`]. What comes before the first `HELLO` is the prose greeting for
/// people: skipped, unless the server closes before `HELLO` (a refusal), when it is shown.
fn spawn_reader(socket: Box<dyn Read + Send>, events: Sender<Event>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("socket".into())
        .spawn(move || {
            let mut reader = BufReader::new(socket);
            let mut buf = Vec::new();
            let mut prose: Option<Vec<String>> = Some(Vec::new());
            loop {
                buf.clear();
                let event = match (&mut reader)
                    .take(MAX_LINE_BYTES)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) => {
                        for text in prose.take().unwrap_or_default() {
                            let _ = events.send(Event::Unknown(text));
                        }
                        Event::Disconnected(None)
                    }
                    Ok(_) => {
                        let text = trim_line_end(String::from_utf8_lossy(&buf).into_owned());
                        if let Some(skipped) = prose.as_mut() {
                            if !text.starts_with("HELLO ") {
                                if skipped.len() < MAX_PROSE_LINES && !text.trim().is_empty() {
                                    skipped.push(text);
                                }
                                continue;
                            }
                            prose = None;
                        }
                        if text.is_empty() {
                            continue;
                        }
                        match Line::parse(&text) {
                            Some(line) => Event::Server(line),
                            None => Event::Unknown(text),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Event::Disconnected(Some(e)),
                };
                let last = matches!(event, Event::Disconnected(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .map(drop)
}

/// Removes a trailing LF or CRLF.
pub(crate) fn trim_line_end(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Where rendered lines go.
enum Screen {
    /// Standard output, one line at a time.
    Plain,
    /// Above the line editor's prompt, without disturbing what is being typed.
    Editor(Box<dyn rustyline::ExternalPrinter + Send>),
}

impl Screen {
    /// Shows one line, in `charset` when written directly (the editor is used only with
    /// UTF-8).
    fn show(&mut self, text: &str, charset: Charset) -> io::Result<()> {
        match self {
            Screen::Plain => {
                let mut out = io::stdout().lock();
                out.write_all(&charset.encode(text))?;
                out.write_all(b"\n")?;
                out.flush()
            }
            Screen::Editor(printer) => printer
                .print(format!("{text}\n"))
                .map_err(|e| io::Error::other(e.to_string())),
        }
    }
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
    requests: Sender<Request>,
    /// Restores the terminal on the way out, whichever way that is.
    terminal: Terminal,
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
    outbox: Outbox,
    /// For the direct listener, started at login.
    events: Sender<Event>,
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
    fn run(&mut self, events: &Receiver<Event>) -> Result<Ending, Error> {
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

    fn handle(&mut self, event: Event) -> Result<Option<Ending>, Error> {
        match event {
            Event::Server(line) if self.server_down => {
                // `BYE` is the server's last word; a line after it (a peer's `ADDR gone` as
                // the server logs everyone out) must not empty the address book.
                log::debug!("ignored after the server's goodbye: {line}");
            }
            Event::Unknown(_) if self.server_down => {}
            Event::Server(line) => return Ok(self.on_line(&line)),
            Event::Unknown(raw) => {
                let text = self.renderer.render_unknown(&raw);
                self.show(&text);
            }
            Event::Disconnected(e) => {
                if let Some(e) = e {
                    log::debug!("reading from the server: {e}");
                }
                return self.lost();
            }
            Event::Typed(line) if self.server_down => return Ok(self.typed_offline(&line)),
            Event::Typed(line) => {
                if std::mem::take(&mut self.answering) || !self.logged_in {
                    // An answer to the server's question, whatever it looks like.
                    self.send(&line);
                } else {
                    self.typed(&line);
                }
            }
            Event::Direct { from, text } => {
                let text = self.renderer.private(&from, &text);
                self.show(&text);
            }
            Event::Sent { to, result } => match result {
                Ok(()) => self.show(&format!(
                    "Your private message was delivered to {}.",
                    crate::protocol::sanitize_text(&to)
                )),
                Err(e) => self.error(&format!("private message to {to} not delivered: {e}")),
            },
            Event::EndOfInput | Event::Interrupted => {
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
                let _ = self.requests.send(Request::Ask {
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
                let _ = self.requests.send(Request::Free {
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

    /// Starts listening for direct messages and tells the server the port.
    fn start_direct(&mut self) {
        match direct::listen(self.p2p_port, &self.me, &self.book, &self.events) {
            Ok(port) => {
                self.p2p_reply_due = true;
                self.send(&format!("p2p {port}"));
            }
            Err(e) => self.error(&format!(
                "cannot listen for private messages on port {}: {e}; \
                 'private' and 'getaddress' will not work",
                self.p2p_port
            )),
        }
    }

    /// Acts on an `ADDR` line: the address book follows the server.
    fn on_addr(&mut self, line: &Line) {
        let peer = line.arg(1);
        match line.arg(0) {
            "granted" => {
                let Some(secret) = direct::from_hex::<32>(line.arg(3)) else {
                    log::warn!("ADDR granted for {peer} without a valid secret");
                    self.unsent(peer, "the server sent no valid secret");
                    return;
                };
                let server = self.socket.peer_addr().ok().map(|a| a.ip());
                let address = direct::reachable_address(line.arg(2), server);
                self.book.insert(peer, Peer { address, secret });
                for text in self.waiting.remove(peer).unwrap_or_default() {
                    self.private(peer, text);
                }
            }
            "declined" => self.unsent(peer, "no address exchange"),
            "removed" | "gone" => {
                self.book.remove(peer);
                self.unsent(peer, "no address exchange");
            }
            _ => {}
        }
    }

    /// A line typed while the server is up (and not an answer to its question).
    fn typed(&mut self, line: &str) {
        match direct::parse_local(line, self.in_session) {
            None => self.send(line),
            Some(Err(e)) => self.error(&e),
            Some(Ok(Local::Private { to, text })) => self.private(&to, text),
            Some(Ok(Local::Send { to, text })) if self.book.get(&to).is_some() => {
                self.private(&to, text);
            }
            Some(Ok(Local::Send { to, text })) => {
                let waiting = self.waiting.entry(to.clone()).or_default();
                waiting.push(text);
                if waiting.len() == 1 {
                    self.asked.push_back(to.clone());
                    self.send(&format!("getaddress {to}"));
                }
                self.show(&format!(
                    "{to} is not in your address book yet; the message will be sent if {to} \
                     accepts to exchange addresses."
                ));
            }
            Some(Ok(Local::AddressBook)) => self.address_book(),
            Some(Ok(Local::RemoveAddress(name))) => {
                self.book.remove(&name);
                self.send(line);
            }
        }
    }

    /// A line typed after the server went away: only what works without it.
    fn typed_offline(&mut self, line: &str) -> Option<Ending> {
        match direct::parse_local(line, false) {
            Some(Err(e)) => self.error(&e),
            Some(Ok(Local::Private { to, text } | Local::Send { to, text })) => {
                self.private(&to, text);
            }
            Some(Ok(Local::AddressBook)) => self.address_book(),
            Some(Ok(Local::RemoveAddress(_))) | None => match parse_command(line, &self.me) {
                Ok(None) => {}
                Ok(Some(Command::Help)) => {
                    for help in OFFLINE_HELP {
                        self.show(help);
                    }
                }
                Ok(Some(Command::Logout)) => return Some(Ending::LoggedOut),
                _ => self.error(
                    "the server is down; only private, addressbook, help and logout work now",
                ),
            },
        }
        None
    }

    /// Sends a direct message to `to`, who must be in the address book.
    fn private(&mut self, to: &str, text: String) {
        let Some(peer) = self.book.get(to) else {
            return self.error(&format!(
                "{to} is not in your address book; run 'getaddress {to}' first"
            ));
        };
        if let Err(e) = self.outbox.send(to, peer, &self.me, text) {
            self.error(&format!("cannot send the private message to {to}: {e}"));
        }
    }

    /// Drops the texts waiting for `name`'s address, saying so.
    fn unsent(&mut self, name: &str, why: &str) {
        if let Some(texts) = self.waiting.remove(name) {
            let text = match texts.len() {
                1 => format!("your message to {name} was not sent: {why}"),
                n => format!("your {n} messages to {name} were not sent: {why}"),
            };
            self.error(&text);
        }
    }

    /// Shows the address book.
    fn address_book(&mut self) {
        let entries = self.book.entries();
        if entries.is_empty() {
            return self.show(
                "Your address book is empty; 'getaddress USER' asks USER to exchange addresses.",
            );
        }
        self.show(&format!("Your address book ({}):", entries.len()));
        for (name, address) in entries {
            self.show(&crate::protocol::sanitize_text(&format!(
                "{name}   {address}"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_editing_only_where_the_terminal_can_do_it() {
        let term = |t: &'static str| Some(OsStr::new(t));
        assert!(line_editing(true, true, term("xterm-256color")));
        assert!(line_editing(true, true, None));
        assert!(!line_editing(true, true, term("dumb")));
        assert!(!line_editing(true, true, term("emacs")));
        assert!(!line_editing(false, true, term("xterm")));
        assert!(!line_editing(true, false, term("xterm")));
    }

    #[test]
    fn colour_rules() {
        let dumb = Some(OsStr::new("dumb"));
        let xterm = Some(OsStr::new("xterm-256color"));
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(ColorChoice::Auto.enabled(true, None, xterm));
        assert!(ColorChoice::Auto.enabled(true, empty, None));
        assert!(!ColorChoice::Auto.enabled(false, None, xterm));
        assert!(!ColorChoice::Auto.enabled(true, set, xterm));
        assert!(!ColorChoice::Auto.enabled(true, None, dumb));
        assert!(ColorChoice::Always.enabled(false, set, dumb));
        assert!(!ColorChoice::Never.enabled(true, None, xterm));
    }

    #[test]
    fn line_endings() {
        assert_eq!(trim_line_end("a\r\n".into()), "a");
        assert_eq!(trim_line_end("a\n".into()), "a");
        assert_eq!(trim_line_end("a".into()), "a");
        assert_eq!(trim_line_end("a\r".into()), "a\r");
    }

    #[test]
    fn connect_failure_names_the_target() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = connect("127.0.0.1", port).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
        let e = connect("[::1]", port).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to [::1]:{port}: ")),
            "{e}"
        );
    }

    #[test]
    fn connects_over_ipv4_and_ipv6_literals() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(connect("127.0.0.1", port).is_ok());
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let port = v6.local_addr().unwrap().port();
            assert!(connect("::1", port).is_ok());
            assert!(connect("[::1]", port).is_ok());
        }
    }
}
