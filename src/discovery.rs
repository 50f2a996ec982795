//! Finding a server on the LAN: a one-datagram UDP request, a one-datagram answer.
//!
//! A client that was given no address broadcasts [`REQUEST`] to UDP port
//! [`DEFAULT_PORT`] (`discovery_port`); every lanchat server that hears it answers with an
//! [`Announcement`]: its name, a random id for this run, and one `key=port` field per door
//! it listens on (`tcp=4119`, and `web=`/`irc=` where those listeners exist). A client that
//! does not know a door ignores its field, so adding a listener only adds a field.
//!
//! The format functions here are pure; [`Responder`] is the server's side of the I/O (the
//! client's is `client::discover`), and [`budget`] decides which requests get an answer.
//! PROTOCOL.md section 10 is the reference.

pub mod budget;

use budget::{AnswerBudget, AnswerLimits};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The UDP port servers listen on for discovery requests, whatever their TCP port.
pub const DEFAULT_PORT: u16 = 4119;
/// The first word of every discovery datagram: the protocol and its version.
pub const MAGIC: &str = "LANCHAT/1";
/// The request a client sends.
pub const REQUEST: &str = "LANCHAT/1 DISCOVER";
/// Longest datagram either side reads; answers are far shorter.
pub const MAX_DATAGRAM: usize = 512;
/// Longest server name put in an answer, in characters.
const MAX_NAME_CHARS: usize = 64;
/// How often the responder threads check whether to stop.
const POLL: Duration = Duration::from_millis(200);

/// What a server says about itself in answer to a discovery request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// A name for people (the host name by default): no spaces or control characters.
    pub name: String,
    /// Random per server run, so that one server heard on two addresses is listed once.
    pub id: String,
    /// Where to connect, when the server listens on one address only; otherwise the
    /// client uses the address the answer came from.
    pub host: Option<IpAddr>,
    /// `(door, port)`: `("tcp", 4119)` for the line protocol, then any other listeners.
    pub doors: Vec<(String, u16)>,
    /// The full fingerprint of the server's TLS key (`fp=`), when it has a TLS door: a
    /// client that pinned this server ignores an answer with another one (a spoof).
    pub fingerprint: Option<String>,
}

impl Announcement {
    /// An announcement for `name` (cleaned: see [`clean_name`]) with a fresh random id.
    pub fn new(name: &str, host: Option<IpAddr>, doors: &[(&str, u16)]) -> Announcement {
        Announcement {
            name: clean_name(name),
            id: format!("{:016x}", rand::random::<u64>()),
            host,
            doors: doors.iter().map(|(d, p)| (d.to_string(), *p)).collect(),
            fingerprint: None,
        }
    }

    /// The same announcement, carrying the server's TLS fingerprint.
    pub fn with_fingerprint(mut self, fingerprint: &crate::tls::Fingerprint) -> Announcement {
        self.fingerprint = Some(fingerprint.full());
        self
    }

    /// The answer datagram: `LANCHAT/1 name=N id=I [host=H] door=port... [fp=F]`.
    pub fn to_wire(&self) -> String {
        let mut out = format!("{MAGIC} name={} id={}", self.name, self.id);
        if let Some(host) = self.host {
            out.push_str(&format!(" host={host}"));
        }
        for (door, port) in &self.doors {
            out.push_str(&format!(" {door}={port}"));
        }
        if let Some(fp) = &self.fingerprint {
            out.push_str(&format!(" fp={fp}"));
        }
        out
    }

    /// Parses an answer datagram; `None` if it is not one. Unknown keys whose value is not
    /// a port are skipped, so later versions can add fields.
    pub fn parse(datagram: &[u8]) -> Option<Announcement> {
        let text = std::str::from_utf8(datagram).ok()?;
        let mut words = text.split_ascii_whitespace();
        if words.next()? != MAGIC {
            return None;
        }
        let mut announcement = Announcement {
            name: String::new(),
            id: String::new(),
            host: None,
            doors: Vec::new(),
            fingerprint: None,
        };
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "name" => announcement.name = clean_name(value),
                "id" => announcement.id = value.to_string(),
                "host" => announcement.host = value.parse().ok(),
                "fp" => {
                    announcement.fingerprint = crate::tls::fingerprint::normalize(value)
                        .ok()
                        .map(|_| value.to_string())
                }
                door => {
                    if let Ok(port @ 1..) = value.parse::<u16>() {
                        announcement.doors.push((door.to_string(), port));
                    }
                }
            }
        }
        Some(announcement)
    }

    /// The port of `door` (`"tcp"`, `"web"`, ...), if the server has it.
    pub fn port(&self, door: &str) -> Option<u16> {
        self.doors.iter().find(|(d, _)| d == door).map(|&(_, p)| p)
    }
}

/// Whether `datagram` is a discovery request. Words after [`REQUEST`] are allowed (for
/// later versions) and ignored.
pub fn is_request(datagram: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(datagram) else {
        return false;
    };
    let mut words = text.split_ascii_whitespace();
    words.next() == Some(MAGIC) && words.next() == Some("DISCOVER")
}

/// A name fit for an answer: whitespace, controls and `=` become `_`, at most 64
/// characters, `lanchat` if nothing is left.
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "lanchat".to_string()
    } else {
        cleaned
    }
}

/// This machine's name, for the announcement: the kernel's host name, else `$HOSTNAME`,
/// else `lanchat`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|n| clean_name(&n))
        .unwrap_or_else(|| "lanchat".to_string())
}

/// Whether a server listening on `bind` answers a request from `from`: a server that
/// listens on loopback only answers its own machine, since no one else could connect.
pub fn should_answer(bind: IpAddr, from: IpAddr) -> bool {
    !bind.to_canonical().is_loopback() || from.to_canonical().is_loopback()
}

/// The `host=` of the announcement: the bind address when it is one specific, reachable
/// address (the answer's source address might be another of the machine's addresses).
pub fn announced_host(bind: IpAddr) -> Option<IpAddr> {
    (!bind.is_unspecified() && !bind.to_canonical().is_loopback()).then_some(bind)
}

/// Where the responder's sockets go for a server bound to `bind`: the wildcard of its
/// family, so that broadcasts are heard (a socket bound to one unicast address does not
/// receive them), and for `::` one socket for IPv6 and IPv4 both. `true` = IPv6 only.
pub fn responder_addrs(bind: IpAddr, port: u16) -> Vec<(SocketAddr, bool)> {
    match bind {
        IpAddr::V4(_) => vec![((Ipv4Addr::UNSPECIFIED, port).into(), false)],
        IpAddr::V6(ip) if ip.is_unspecified() => {
            vec![((Ipv6Addr::UNSPECIFIED, port).into(), false)]
        }
        IpAddr::V6(_) => vec![((Ipv6Addr::UNSPECIFIED, port).into(), true)],
    }
}

/// A UDP socket on `addr` that shares its port with other servers on this machine
/// (SO_REUSEADDR and SO_REUSEPORT: each receives every broadcast), with a read timeout.
fn shared_udp(addr: SocketAddr, v6_only: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// The server's discovery responder: a thread per socket answering requests until dropped.
pub struct Responder {
    /// Tells the threads to stop.
    stop: Arc<AtomicBool>,
    /// The answering threads.
    threads: Vec<JoinHandle<()>>,
    /// Where the sockets are bound.
    local: Vec<SocketAddr>,
}

impl Responder {
    /// Starts answering on UDP `port` for a server bound to `bind`.
    pub fn start(bind: IpAddr, port: u16, announcement: &Announcement) -> io::Result<Responder> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut responder = Responder {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            local: Vec::new(),
        };
        let answer = announcement.to_wire();
        for (addr, v6_only) in responder_addrs(bind, port) {
            let socket = match shared_udp(addr, v6_only) {
                // `::` on a machine without IPv6: IPv4 is still worth answering.
                Err(e) if bind.is_unspecified() && addr.is_ipv6() => {
                    log::debug!("discovery over IPv6 unavailable: {e}");
                    shared_udp((Ipv4Addr::UNSPECIFIED, port).into(), false)?
                }
                other => other?,
            };
            responder.local.push(socket.local_addr()?);
            let (stop, answer) = (Arc::clone(&stop), answer.clone());
            let thread = std::thread::Builder::new()
                .name("lanchat-discovery".into())
                .spawn(move || answer_requests(&socket, bind, &answer, &stop))?;
            responder.threads.push(thread);
        }
        Ok(responder)
    }

    /// Where the responder listens.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One responder thread: answers each request with `answer`, within the [`budget`], until
/// `stop`.
fn answer_requests(socket: &UdpSocket, bind: IpAddr, answer: &str, stop: &AtomicBool) {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut budget = AnswerBudget::new(AnswerLimits::DEFAULT, Instant::now());
    while !stop.load(Ordering::Acquire) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                log::debug!("discovery: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if !is_request(&buf[..n]) || !should_answer(bind, from.ip()) {
            continue;
        }
        if !budget.allow(from.ip(), Instant::now()) {
            continue;
        }
        log::debug!("discovery request from {from}");
        if let Err(e) = socket.send_to(answer.as_bytes(), from) {
            log::debug!("discovery answer to {from}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(doors: &[(&str, u16)]) -> Announcement {
        Announcement {
            name: "lab-pc".into(),
            id: "00000000000000ab".into(),
            host: None,
            doors: doors.iter().map(|(d, p)| (d.to_string(), *p)).collect(),
            fingerprint: None,
        }
    }

    #[test]
    fn the_fingerprint_field_round_trips_and_old_parsers_skip_it() {
        let fp = crate::tls::Fingerprint::of_spki(b"key");
        let a = announcement(&[("tcp", 4119), ("tls", 4129)]).with_fingerprint(&fp);
        let wire = a.to_wire();
        assert!(
            wire.ends_with(&format!("tls=4129 fp={}", fp.full())),
            "{wire}"
        );
        let back = Announcement::parse(wire.as_bytes()).unwrap();
        assert_eq!(back.fingerprint, Some(fp.full()));
        assert_eq!(back.doors.len(), 2, "fp= is not a door");
        let bad = Announcement::parse(b"LANCHAT/1 name=x id=1 tcp=1 fp=0000").unwrap();
        assert_eq!(bad.fingerprint, None);
    }

    #[test]
    fn answers_list_every_door_as_key_equals_port() {
        assert_eq!(
            announcement(&[("tcp", 4119)]).to_wire(),
            "LANCHAT/1 name=lab-pc id=00000000000000ab tcp=4119"
        );
        let more = announcement(&[("tcp", 4119), ("web", 8080), ("irc", 6667)]);
        assert_eq!(
            more.to_wire(),
            "LANCHAT/1 name=lab-pc id=00000000000000ab tcp=4119 web=8080 irc=6667"
        );
        let mut bound = announcement(&[("tcp", 5000)]);
        bound.host = Some("10.0.0.5".parse().unwrap());
        assert_eq!(
            bound.to_wire(),
            "LANCHAT/1 name=lab-pc id=00000000000000ab host=10.0.0.5 tcp=5000"
        );
    }

    #[test]
    fn answers_round_trip_and_unknown_fields_are_skipped() {
        let a = announcement(&[("tcp", 4119), ("web", 8080)]);
        assert_eq!(Announcement::parse(a.to_wire().as_bytes()), Some(a.clone()));
        assert_eq!(a.port("tcp"), Some(4119));
        assert_eq!(a.port("web"), Some(8080));
        assert_eq!(a.port("irc"), None);
        let later =
            Announcement::parse(b"LANCHAT/1 name=x id=1 motd=hello tcp=1 v6=[::1] q=0\n").unwrap();
        assert_eq!(later.doors, vec![("tcp".to_string(), 1)]);
        let v6 = Announcement::parse(b"LANCHAT/1 name=x id=1 host=fd00::5 tcp=9").unwrap();
        assert_eq!(v6.host, Some("fd00::5".parse().unwrap()));
        assert_eq!(Announcement::parse(b"LANCHAT/2 name=x tcp=1"), None);
        assert_eq!(Announcement::parse(b"LANCHAT/1 name=x junk"), None);
        assert_eq!(Announcement::parse(b"\xff\xfe"), None);
        assert_eq!(Announcement::parse(b""), None);
    }

    #[test]
    fn requests_are_recognised() {
        assert!(is_request(REQUEST.as_bytes()));
        assert!(is_request(b"LANCHAT/1 DISCOVER\n"));
        assert!(is_request(b"LANCHAT/1 DISCOVER want=web"));
        assert!(!is_request(b"LANCHAT/1 name=x tcp=1"));
        assert!(!is_request(b"LANCHAT/1"));
        assert!(!is_request(b"hello"));
        assert!(!is_request(b"\xff"));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(" Room 101\t"), "Room_101");
        assert_eq!(clean_name("a=b\x1b"), "a_b_");
        assert_eq!(clean_name(""), "lanchat");
        assert_eq!(clean_name(&"x".repeat(100)).len(), 64);
        assert!(!host_name().contains(' '));
    }

    #[test]
    fn loopback_servers_answer_their_own_machine_only() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lan: IpAddr = "10.0.0.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(should_answer(lo, lo));
        assert!(should_answer(lo, mapped));
        assert!(!should_answer(lo, lan));
        assert!(should_answer(any, lan));
        assert!(should_answer("::".parse().unwrap(), lan));
        assert!(!should_answer("::1".parse().unwrap(), lan));
        assert_eq!(announced_host(any), None);
        assert_eq!(announced_host(lo), None);
        assert_eq!(announced_host(lan), Some(lan));
    }

    #[test]
    fn responder_sockets_follow_the_bind_family() {
        let v4 = responder_addrs("127.0.0.1".parse().unwrap(), 9);
        assert_eq!(v4, vec![("0.0.0.0:9".parse().unwrap(), false)]);
        let dual = responder_addrs("::".parse().unwrap(), 9);
        assert_eq!(dual, vec![("[::]:9".parse().unwrap(), false)]);
        let v6 = responder_addrs("::1".parse().unwrap(), 9);
        assert_eq!(v6, vec![("[::]:9".parse().unwrap(), true)]);
    }

    #[test]
    fn two_responders_share_a_port_and_both_answer_a_broadcast() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b) = (
            Announcement::new("a", None, &[("tcp", 1)]),
            Announcement::new("b", None, &[("tcp", 2)]),
        );
        let ra = Responder::start(lo, port, &a).unwrap();
        let rb = Responder::start(lo, port, &b).unwrap();
        assert_eq!(ra.local_addrs()[0].port(), port);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_broadcast(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // Loopback's broadcast address reaches every socket on the port; unicast only one.
        client
            .send_to(REQUEST.as_bytes(), ("127.255.255.255", port))
            .unwrap();
        let mut names = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM];
        while let Ok((n, _)) = client.recv_from(&mut buf) {
            names.push(Announcement::parse(&buf[..n]).unwrap().name);
            if names.len() == 2 {
                break;
            }
        }
        names.sort();
        assert_eq!(names, ["a", "b"]);
        // Not a request: no answer.
        client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        assert!(client.recv_from(&mut buf).is_err());
        drop((ra, rb));
    }
}
