//! The client's connection: TLS to the server's TLS door whenever it answers, pinned like
//! ssh pins hosts (`tls::known`), else the plain port with a warning.
//!
//! One rustls connection serves two threads (the reader thread and the main loop's
//! writes): it sits behind a mutex that is never held across a blocking read, so a write
//! never waits for the server to speak.

use crate::tls::known::{self, KnownServers, Trust};
use crate::tls::PinVerifier;
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one connection attempt may take, TLS door or plain port (an absent LAN host
/// would otherwise take minutes to fail).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS door's port when nothing else is said (the server's `tls_port` default).
pub const DEFAULT_TLS_PORT: u16 = 4129;

/// How the client secures its connection.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// The server's TLS port; 0: plain only (a server without TLS).
    pub port: u16,
    /// The fingerprint the server must show (`--fingerprint`, from the board).
    pub fingerprint: Option<String>,
    /// Where pinned fingerprints are kept (`None`: nowhere; nothing is pinned).
    pub known_servers: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions {
            port: DEFAULT_TLS_PORT,
            fingerprint: None,
            known_servers: known::default_path(),
        }
    }
}

/// A connection to the server, encrypted or not.
#[derive(Clone)]
pub enum Link {
    /// The plain port.
    Plain(Arc<TcpStream>),
    /// The TLS door.
    Tls(Arc<TlsLink>),
}

/// A TLS connection shared by the reader thread and the writer.
pub struct TlsLink {
    conn: Mutex<ClientConnection>,
    socket: TcpStream,
}

/// What [`secure`] decided, for the user to read before the session starts.
pub struct Secured {
    /// The connection.
    pub link: Link,
    /// A line to show first (the fingerprint on first use, or the plain-port warning).
    pub notice: Option<String>,
}

/// Why no connection was made.
#[derive(Debug)]
pub enum TlsRefusal {
    /// The server's key is not the one pinned or given: the explanation.
    Untrusted(String),
    /// The network failed.
    Io(io::Error),
}

/// Connects securely to `host` (`addr` is its TLS door): the handshake, then the pinning
/// rules. `plain` is called when the TLS door does not answer at all and nothing demands
/// TLS (no pin, no `--fingerprint`).
pub fn secure(
    host: &str,
    tls_addr: Option<SocketAddr>,
    options: &TlsOptions,
    plain: impl FnOnce() -> io::Result<TcpStream>,
) -> Result<Secured, TlsRefusal> {
    let known = match (&options.known_servers, tls_addr) {
        (Some(path), Some(_)) => Some(KnownServers::load(path).map_err(TlsRefusal::Untrusted)?),
        _ => None,
    };
    let pinned_key = tls_addr.map(|a| pin_key(host, a.port()));
    let pinned = match (&known, &pinned_key) {
        (Some(k), Some(key)) => k.is_pinned(key),
        _ => false,
    };
    let socket = match tls_addr.map(|a| TcpStream::connect_timeout(&a, CONNECT_TIMEOUT)) {
        Some(Ok(socket)) => socket,
        result => {
            if pinned || options.fingerprint.is_some() {
                let why = match result {
                    Some(Err(e)) => e.to_string(),
                    _ => "no TLS port".to_string(),
                };
                return Err(TlsRefusal::Untrusted(format!(
                    "{host}'s TLS door does not answer ({why}), and this server's key is pinned \
                     (or --fingerprint was given): refusing to fall back to the unencrypted port."
                )));
            }
            let socket = plain().map_err(TlsRefusal::Io)?;
            let why = match tls_addr {
                Some(a) => format!("no TLS door answered on port {}", a.port()),
                // A server on a port of its own was not asked (a guessed port could be
                // another server's): say how to ask.
                None => "no TLS port is known for this server; give it with --tls-port \
                         (make run-client TLS_PORT=...)"
                    .to_string(),
            };
            let notice = Some(format!(
                "Warning: this connection is NOT encrypted ({why}): anyone on the network can \
                 read your password and messages."
            ));
            return Ok(Secured {
                link: Link::Plain(Arc::new(socket)),
                notice,
            });
        }
    };
    let verifier = PinVerifier::new(options.fingerprint.as_deref());
    let name = ServerName::try_from("lanchat").expect("a valid name");
    let mut conn = ClientConnection::new(verifier.client_config(), name)
        .map_err(|e| TlsRefusal::Io(io::Error::other(e)))?;
    let _ = socket.set_read_timeout(Some(CONNECT_TIMEOUT));
    let mut handshake = &socket;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut handshake) {
            return Err(match (verifier.seen(), &options.fingerprint) {
                (Some(seen), Some(expected)) if !seen.matches(expected) => {
                    TlsRefusal::Untrusted(format!(
                        "Refusing {host}: it showed fingerprint {}, not the {expected} given \
                         with --fingerprint. Someone on the network may be pretending to be \
                         the server; check the fingerprint the server printed at start.",
                        seen.short()
                    ))
                }
                _ => TlsRefusal::Io(e),
            });
        }
    }
    let _ = socket.set_read_timeout(None);
    let seen = verifier
        .seen()
        .ok_or_else(|| TlsRefusal::Untrusted(format!("{host} presented no certificate")))?;
    let key = pinned_key.unwrap_or_default();
    let notice = match known {
        None => None,
        Some(mut known) => match known.check(&key, &seen) {
            Trust::Known => None,
            Trust::Changed { pinned, line } => {
                return Err(TlsRefusal::Untrusted(known::changed_explanation(
                    &key,
                    &pinned,
                    line,
                    &seen,
                    known.path(),
                )));
            }
            Trust::FirstUse => {
                let pinned_now = known.pin(&key, &seen);
                Some(format!(
                    "First connection to {key}: the server's fingerprint is {}. Compare it with \
                     the one the server printed at start (the instructor's board). {}",
                    seen.short(),
                    match pinned_now {
                        Ok(()) => format!("Remembered in {}.", known.path().display()),
                        Err(e) => format!("It could not be remembered: {e}."),
                    }
                ))
            }
        },
    };
    Ok(Secured {
        link: Link::Tls(Arc::new(TlsLink {
            conn: Mutex::new(conn),
            socket,
        })),
        notice,
    })
}

/// How `known_servers` names a server: the host as typed and its TLS port.
pub fn pin_key(host: &str, port: u16) -> String {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

impl Link {
    /// The socket underneath.
    fn socket(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(t) => &t.socket,
        }
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket().peer_addr()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Link::Tls(_))
    }

    /// The reading half, for the reader thread.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Link::Plain(s) => Box::new(s.try_clone()?),
            Link::Tls(t) => Box::new(TlsReader(Arc::clone(t))),
        })
    }

    /// Writes all of `bytes` (encrypted on a TLS link).
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(s) => (&**s).write_all(bytes),
            Link::Tls(t) => {
                let mut conn = t.conn.lock();
                conn.writer().write_all(bytes)?;
                while conn.wants_write() {
                    conn.write_tls(&mut &t.socket)?;
                }
                Ok(())
            }
        }
    }
}

/// The reader thread's side of a TLS link.
struct TlsReader(Arc<TlsLink>);

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let link = &self.0;
        let mut cipher = [0u8; 4096];
        loop {
            {
                let mut conn = link.conn.lock();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Outside the lock: the writer must not wait for the server to speak.
            let n = (&link.socket).read(&mut cipher)?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = link.conn.lock();
            let mut rest = &cipher[..n];
            while !rest.is_empty() {
                conn.read_tls(&mut rest)?;
                conn.process_new_packets().map_err(io::Error::other)?;
            }
            while conn.wants_write() {
                conn.write_tls(&mut &link.socket)?;
            }
        }
    }
}

/// Why a discovery answer must not be used, if it must not: it names a server whose key is
/// pinned (its host and TLS door) but carries another fingerprint, or none. Answers prove
/// nothing by themselves; this only stops one that contradicts what the user already
/// trusts (a classmate answering for the real server).
pub fn spoofed_answer(known: &KnownServers, found: &super::discover::Found) -> Option<String> {
    let tls = found.announcement.port("tls")?;
    let key = pin_key(&found.host.to_string(), tls);
    if !known.is_pinned(&key) {
        return None;
    }
    let claimed = found.announcement.fingerprint.as_deref();
    let trusted = claimed.is_some_and(|fp| known.matches(&key, fp));
    (!trusted).then(|| {
        format!(
            "Ignoring a discovery answer from {} for {key}: it does not carry the \
             fingerprint pinned for that server in {} (someone may be answering in its name).",
            found.from,
            known.path().display()
        )
    })
}

/// Why each of the discovery answers `found` must not be used, if it must not: those
/// [`spoofed_answer`] stops, and those that repeat the id of an answer that carries its
/// pinned fingerprint (the real server, this run) without being that answer: other doors,
/// another fingerprint or another address. A server's id is random for each run, so
/// another server never has it; an answer repeating it can only be answering in its name.
pub fn spoofed_answers(
    known: &KnownServers,
    found: &[super::discover::Found],
) -> Vec<Option<String>> {
    let verdicts: Vec<Option<String>> = found.iter().map(|f| spoofed_answer(known, f)).collect();
    // The answers that proved nothing wrong for a pinned server: `(answer, pin key)`.
    let vouched: Vec<(&super::discover::Found, String)> = found
        .iter()
        .zip(&verdicts)
        .filter(|(_, why)| why.is_none())
        .filter_map(|(f, _)| {
            let key = pin_key(&f.host.to_string(), f.announcement.port("tls")?);
            known.is_pinned(&key).then_some((f, key))
        })
        .collect();
    found
        .iter()
        .zip(verdicts)
        .map(|(f, why)| {
            why.or_else(|| {
                let id = &f.announcement.id;
                let (_, key) = vouched.iter().find(|(real, _)| {
                    !id.is_empty() && &real.announcement.id == id && *real != f
                })?;
                Some(format!(
                    "Ignoring a discovery answer from {}: it repeats the id of the server pinned \
                     as {key} in {}, but not what that server announced (other doors, another \
                     fingerprint or address): someone may be answering in its name.",
                    f.from,
                    known.path().display()
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::discover::Found;
    use crate::tls::Fingerprint;

    #[test]
    fn an_answer_for_a_pinned_server_with_another_or_no_fingerprint_is_spoofed() {
        let dir = tempfile::tempdir().unwrap();
        let mut known = KnownServers::load(&dir.path().join("known_servers")).unwrap();
        let real = Fingerprint::of_spki(b"real");
        known.pin("10.0.0.5:4129", &real).unwrap();
        let answer =
            |text: String| Found::from_answer(text.as_bytes(), [10, 0, 0, 9].into()).unwrap();
        let base = "LANCHAT/1 name=lab id=1 host=10.0.0.5 tcp=4119 tls=4129";
        let genuine = answer(format!("{base} fp={}", real.full()));
        assert_eq!(spoofed_answer(&known, &genuine), None);
        let fake = Fingerprint::of_spki(b"fake").full();
        let why = spoofed_answer(&known, &answer(format!("{base} fp={fake}"))).unwrap();
        assert!(
            why.contains("10.0.0.5:4129") && why.contains("10.0.0.9"),
            "{why}"
        );
        assert!(spoofed_answer(&known, &answer(base.to_string())).is_some());
        // A server never pinned is the user's to judge (its fingerprint is shown on connect).
        let other = answer(format!(
            "LANCHAT/1 name=x id=2 host=10.0.0.7 tcp=4119 tls=4129 fp={fake}"
        ));
        assert_eq!(spoofed_answer(&known, &other), None);
    }

    #[test]
    fn an_answer_repeating_the_id_of_a_pinned_server_that_answered_is_spoofed() {
        let dir = tempfile::tempdir().unwrap();
        let mut known = KnownServers::load(&dir.path().join("known_servers")).unwrap();
        let real = Fingerprint::of_spki(b"real").full();
        known
            .pin("10.0.0.5:4129", &Fingerprint::of_spki(b"real"))
            .unwrap();
        let fake = Fingerprint::of_spki(b"fake").full();
        let answer =
            |text: &str| Found::from_answer(text.as_bytes(), [10, 0, 0, 5].into()).unwrap();
        let genuine = answer(&format!(
            "LANCHAT/1 name=lab id=1 tcp=4119 tls=4129 fp={real}"
        ));
        let spoofs = [
            // Other doors with another key, or with the real key copied, or no TLS at all.
            answer(&format!(
                "LANCHAT/1 name=lab id=1 tcp=5000 tls=5001 fp={fake}"
            )),
            answer(&format!(
                "LANCHAT/1 name=lab id=1 tcp=5000 tls=5001 fp={real}"
            )),
            answer("LANCHAT/1 name=lab id=1 tcp=5000"),
            // The same answer from another address.
            Found::from_answer(
                format!("LANCHAT/1 name=lab id=1 tcp=4119 tls=4129 fp={real}").as_bytes(),
                [10, 0, 0, 66].into(),
            )
            .unwrap(),
        ];
        for spoof in spoofs {
            let why = spoofed_answers(&known, &[spoof.clone(), genuine.clone()]);
            assert!(
                why[0].as_ref().is_some_and(|w| w.contains("10.0.0.5:4129")),
                "{spoof:?}: {why:?}"
            );
            assert_eq!(why[1], None);
        }
        // Another server on the same machine (its own id) is the user's to choose.
        let second = answer(&format!(
            "LANCHAT/1 name=lab id=2 tcp=5000 tls=5001 fp={fake}"
        ));
        assert_eq!(
            spoofed_answers(&known, &[second.clone(), genuine]),
            [None, None]
        );
        // Without the real server's answer, nothing vouches for the id.
        let alone = answer(&format!(
            "LANCHAT/1 name=lab id=1 tcp=5000 tls=5001 fp={fake}"
        ));
        assert_eq!(spoofed_answers(&known, &[alone]), [None]);
    }
}
