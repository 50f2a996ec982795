//! The terminal client: `lanchat-client [HOST] [PORT]`.
//!
//! Threads feed one channel of [`ClientEvent`]s, and one main loop does everything else:
//!
//! ```text
//!   socket   ─► reader thread (Line::parse)                    ─┐
//!   keyboard ─► input thread (line editor / plain lines /       │
//!               hidden password)                                ├─► events ─► main loop:
//!   peers    ─► direct listener (one thread per connection)     │   render, print, send,
//!   direct::PeerOutbox workers (outcomes of direct sends)       │   decide when to leave
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
mod connect;
pub mod direct;
pub mod discover;
mod input;
mod reader;
pub mod render;
mod screen;
pub mod secure;
mod seen;
mod session;
mod sys;

pub use session::run;

use crate::protocol::Line;
use charset::Charset;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

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
pub(crate) enum ClientEvent {
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
}
