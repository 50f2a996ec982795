//! The terminal client: `lanchat-client [HOST] [PORT]`.
//!
//! Three threads feed one channel of [`Event`]s, and one main loop does everything else:
//!
//! ```text
//!   socket   ─► reader thread (Line::parse)                    ─┐
//!   keyboard ─► input thread (line editor / plain lines /       ├─► events ─► main loop:
//!               hidden password)                                │   render, print, send,
//!   Ctrl-C, SIGTERM, SIGHUP ─► signal handler                  ─┘   decide when to leave
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
//! What it deliberately does not do: parse or check commands (the server does, so every
//! alias and error message is the server's), reconnect, or keep any state beyond the
//! connection. Peer-to-peer messages, text encodings and server discovery would be new
//! event sources feeding the same loop.

mod input;
pub mod render;
mod sys;

use crate::protocol::{Kind, Line};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use input::{Keyboard, Request};
use render::Renderer;
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
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            color: ColorChoice::Auto,
            heartbeat: DEFAULT_HEARTBEAT,
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
    /// The connection closed without the server saying goodbye.
    Lost,
    /// Something local failed (starting a thread, reading the terminal).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { target, source } => write!(f, "cannot connect to {target}: {source}"),
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
            Error::Lost => None,
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
}

/// Connects, runs the session until it ends, and puts the terminal back as it was.
///
/// Installs a process-wide Ctrl-C/SIGTERM/SIGHUP handler; if one is installed already
/// (a second call in one process), signals keep their previous behaviour.
pub fn run(options: &Options) -> Result<Ending, Error> {
    let socket = connect(&options.host, options.port)?;
    let _ = socket.set_nodelay(true);

    let editor_mode = io::stdin().is_terminal() && io::stdout().is_terminal();
    let terminal = Terminal::save(editor_mode);
    let (events_tx, events) = crossbeam_channel::unbounded();
    spawn_reader(socket.try_clone()?, events_tx.clone())?;

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
                (Screen::Plain, Keyboard::Plain { tty: true })
            }
        }
    } else {
        (
            Screen::Plain,
            Keyboard::Plain {
                tty: io::stdin().is_terminal(),
            },
        )
    };
    let (requests, requests_rx) = crossbeam_channel::unbounded();
    input::spawn(keyboard, requests_rx, events_tx)?;

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
    };
    client.run(&events)
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
            Ok(s) => return Ok(s),
            Err(e) => {
                log::debug!("{addr}: {e}");
                last = e;
            }
        }
    }
    Err(failed(last))
}

/// Starts the thread that turns the server's bytes into [`Event`]s, ending with
/// [`Event::Disconnected`].
fn spawn_reader(socket: TcpStream, events: Sender<Event>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("socket".into())
        .spawn(move || {
            let mut reader = BufReader::new(socket);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let event = match (&mut reader)
                    .take(MAX_LINE_BYTES)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) => Event::Disconnected(None),
                    Ok(_) => {
                        let text = trim_line_end(String::from_utf8_lossy(&buf).into_owned());
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
    fn show(&mut self, text: &str) -> io::Result<()> {
        match self {
            Screen::Plain => {
                let mut out = io::stdout().lock();
                writeln!(out, "{text}")?;
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
    socket: TcpStream,
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
                    Err(_) => return Err(Error::Lost),
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
            Event::Server(line) => return Ok(self.on_line(&line)),
            Event::Unknown(raw) => {
                let text = self.renderer.render_unknown(&raw);
                self.show(&text);
            }
            Event::Disconnected(e) => {
                if let Some(e) = e {
                    log::debug!("reading from the server: {e}");
                }
                return if self.leaving {
                    Ok(Some(Ending::Quit))
                } else {
                    Err(Error::Lost)
                };
            }
            Event::Typed(line) => {
                self.answering = false;
                self.send(&line);
            }
            Event::EndOfInput | Event::Interrupted => {
                if !self.logged_in || self.leaving {
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
            Kind::Welcome => {
                self.show(&text);
                self.logged_in = true;
                self.next_heartbeat = Some(Instant::now() + self.heartbeat_every);
                let _ = self.requests.send(Request::Free {
                    prompt: PROMPT.to_string(),
                });
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

    /// Sends the automatic heartbeat and schedules the next one.
    fn heartbeat(&mut self) {
        self.next_heartbeat = Some(Instant::now() + self.heartbeat_every);
        if self.logged_in && !self.leaving {
            self.pongs_due += 1;
            self.send("heartbeat");
        }
    }

    fn show(&mut self, text: &str) {
        if let Err(e) = self.screen.show(text) {
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
