//! Issue 23, items 5 and 6: what a hostile user types. No line of any door costs more than
//! a few milliseconds (IRC wildcard masks), and nothing one user sends reaches another's
//! terminal raw (control characters, bidirectional overrides, zero-width characters).

use crate::support::{free_port, TestServer, TIMEOUT};
use lanchat::config::AuthMode;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A server in open mode (any nick logs in) with the IRC door on a free port.
fn irc_server() -> (TestServer, SocketAddr) {
    let irc_port = free_port();
    let server = TestServer::start_with(|c| {
        c.auth = AuthMode::Open;
        c.irc_port = irc_port;
    });
    (server, SocketAddr::from(([127, 0, 0, 1], irc_port)))
}

/// A raw IRC client whose every read has a deadline.
struct Irc {
    /// Reading half.
    reader: BufReader<TcpStream>,
    /// Writing half.
    stream: TcpStream,
}

impl Irc {
    /// Connects and registers as `nick` with `realname`; the welcome burst is consumed.
    fn register(addr: SocketAddr, nick: &str, realname: &str) -> Irc {
        let stream = TcpStream::connect(addr).unwrap();
        let mut irc = Irc {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        irc.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{realname}"));
        irc.until(" 001 ", TIMEOUT);
        // The end of the burst: the lobby's NAMES.
        irc.until(" 366 ", TIMEOUT);
        irc
    }

    /// Sends one line (CR LF added).
    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    /// The lines up to and including the first that contains `needle`; a panic if it does
    /// not arrive within `limit`.
    fn until(&mut self, needle: &str, limit: Duration) -> Vec<String> {
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
}

/// A mask whose every `*` the old backtracking matcher tried at every position: seconds of
/// CPU against a name of 30 `a`s.
const BAD_MASK: &str = "*a*a*a*a*a*a*a*a*a*a*b";

#[test]
fn wildcard_masks_in_list_and_who_answer_at_once() {
    let (_server, irc) = irc_server();
    let long = "a".repeat(30);
    let mut owner = Irc::register(irc, &format!("a{long}"), "owner");
    owner.send(&format!("JOIN #{long}"));
    owner.until(" 366 ", TIMEOUT);
    let mut prober = Irc::register(irc, "prober", "prober");
    let bound = Duration::from_secs(1);

    let started = Instant::now();
    prober.send(&format!("LIST #{BAD_MASK}"));
    let list = prober.until(" 323 ", bound);
    assert!(!list.iter().any(|l| l.contains(" 322 ")), "{list:?}");
    prober.send(&format!("LIST #{long}*,#a?a*"));
    let list = prober.until(" 323 ", bound);
    assert!(
        list.iter().any(|l| l.contains(&format!("#{long}"))),
        "{list:?}"
    );

    prober.send(&format!("WHO {BAD_MASK}"));
    let who = prober.until(" 315 ", bound);
    assert!(!who.iter().any(|l| l.contains(" 352 ")), "{who:?}");
    prober.send("WHO a*a?a");
    let who = prober.until(" 315 ", bound);
    assert!(
        who.iter().any(|l| l.contains(" 352 ") && l.contains(&long)),
        "{who:?}"
    );

    // A whole 510-byte line of such masks.
    let mut line = String::from("LIST ");
    while line.len() + BAD_MASK.len() + 2 <= 510 {
        line.push('#');
        line.push_str(BAD_MASK);
        line.push(',');
    }
    line.pop();
    prober.send(&line);
    prober.until(" 323 ", bound);
    // And the server is free for the next line at once.
    prober.send("PING :still-here");
    prober.until("still-here", bound);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
