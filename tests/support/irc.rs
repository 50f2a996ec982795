//! A raw IRC client of the server's IRC door (`TestServer::irc`), every read with a deadline.

use super::client::TIMEOUT;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One IRC connection: lines out with CR LF added, lines in waited for by content.
pub struct IrcClient {
    /// Reading half.
    reader: BufReader<TcpStream>,
    /// Writing half.
    stream: TcpStream,
}

impl IrcClient {
    /// Connects; sends nothing yet.
    pub fn connect(addr: SocketAddr) -> IrcClient {
        IrcClient::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Connects from a chosen loopback address (127.0.0.2 etc.), for rules keyed by the IP.
    pub fn connect_from(addr: SocketAddr, from: &str) -> IrcClient {
        IrcClient::from_stream(super::client::tcp_from(addr, from))
    }

    fn from_stream(stream: TcpStream) -> IrcClient {
        IrcClient {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Connects from `from` and sends NICK and USER (open mode: no PASS); reads nothing.
    pub fn start(addr: SocketAddr, from: &str, nick: &str, realname: &str) -> IrcClient {
        let mut irc = IrcClient::connect_from(addr, from);
        irc.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{realname}"));
        irc
    }

    /// Registers `nick` (open mode) with `realname`; the welcome burst, up to the lobby's
    /// NAMES, is consumed.
    pub fn register(addr: SocketAddr, nick: &str, realname: &str) -> IrcClient {
        let mut irc = IrcClient::start(addr, "127.0.0.1", nick, realname);
        irc.until(" 001 ", TIMEOUT);
        irc.until(" 366 ", TIMEOUT);
        irc
    }

    /// Sends one line (CR LF added).
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    /// Waits (at most [`TIMEOUT`]) for a line that contains `needle`; returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.until(needle, TIMEOUT).pop().unwrap()
    }

    /// The lines up to and including the first that contains `needle`; a panic if it does
    /// not arrive within `limit`.
    pub fn until(&mut self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} within {limit:?}: {lines:?}");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut raw = Vec::new();
            match self.reader.read_until(b'\n', &mut raw) {
                Ok(0) => panic!("closed before {needle:?}: {lines:?}"),
                Ok(_) => {}
                Err(e) => panic!("no {needle:?} within {limit:?} ({e}): {lines:?}"),
            }
            let line = String::from_utf8(raw).expect("the server sends UTF-8");
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// QUIT, and waits for the server's ERROR (it closes the connection).
    pub fn quit(mut self) {
        self.send("QUIT :bye");
        self.expect("ERROR");
    }
}
