//! The client's side of discovery (`lanchat-client` with no HOST, `--scan`): broadcast a
//! request, collect the answers for a second, and list or pick a server.
//!
//! Requests go to every IPv4 interface's broadcast address, to 255.255.255.255, and to this
//! machine (127.0.0.1 and loopback's broadcast address 127.255.255.255, which reaches every
//! server on this machine while a unicast reaches only one of those sharing the port). The
//! answer format is in [`crate::discovery`]; this module adds the sockets, and [`choose`]
//! the rules for listing answers and picking a server (answers that disagree are never
//! merged; with several servers the user is asked).

pub mod choose;

pub use choose::{add, numbered, parse_choice, pick, same_id_warnings, Found, Pick, MAX_LISTED};

use crate::discovery::{MAX_DATAGRAM, REQUEST};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long answers are collected.
pub const WAIT: Duration = Duration::from_secs(1);
/// When the request is sent again, in case a datagram was lost.
const RESEND_AFTER: Duration = Duration::from_millis(300);
/// How long one read waits before the other socket gets its turn.
const SLICE: Duration = Duration::from_millis(50);
/// This machine's own addresses (every interface's, loopback included), for [`add`].
pub fn this_machine() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip().to_canonical())
        .collect()
}

/// The request's destinations on `port`, given each interface's IPv4 broadcast address:
/// 255.255.255.255, those broadcast addresses, and this machine.
pub fn targets(broadcasts: &[Ipv4Addr], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut add = |ip: Ipv4Addr| {
        let addr = SocketAddr::from((ip, port));
        if !out.contains(&addr) {
            out.push(addr);
        }
    };
    add(Ipv4Addr::BROADCAST);
    for &b in broadcasts {
        add(b);
    }
    add(Ipv4Addr::LOCALHOST);
    add(Ipv4Addr::new(127, 255, 255, 255));
    out
}

/// The broadcast address of `ip`'s subnet, for an interface that has none configured;
/// `None` for /31 and /32 (point-to-point) subnets.
pub fn subnet_broadcast(ip: Ipv4Addr, netmask: Ipv4Addr) -> Option<Ipv4Addr> {
    let mask = u32::from(netmask);
    (mask.leading_ones() < 31 && mask != 0).then(|| Ipv4Addr::from(u32::from(ip) | !mask))
}

/// [`targets`] for this machine's interfaces.
pub fn default_targets(port: u16) -> Vec<SocketAddr> {
    let broadcasts: Vec<Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) => v4
                .broadcast
                .filter(|b| !b.is_unspecified())
                .or_else(|| subnet_broadcast(v4.ip, v4.netmask)),
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect();
    targets(&broadcasts, port)
}

/// Sends the request to every target and collects answers for `wait`; the servers in the
/// order they answered, each once ([`add`]), at most [`MAX_LISTED`].
pub fn scan(targets: &[SocketAddr], wait: Duration) -> io::Result<Vec<Found>> {
    let mut sockets = Vec::new();
    if targets.iter().any(SocketAddr::is_ipv4) {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        v4.set_broadcast(true)?;
        sockets.push(v4);
    }
    if targets.iter().any(SocketAddr::is_ipv6) {
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) {
            Ok(v6) => sockets.push(v6),
            Err(e) => log::debug!("discovery over IPv6 unavailable: {e}"),
        }
    }
    let send_all = |sockets: &[UdpSocket]| {
        for target in targets {
            let socket = sockets.iter().find(|s| {
                s.local_addr()
                    .is_ok_and(|a| a.is_ipv4() == target.is_ipv4())
            });
            if let Some(socket) = socket {
                // An interface without a route for this target is not worth failing for.
                if let Err(e) = socket.send_to(REQUEST.as_bytes(), target) {
                    log::debug!("discovery request to {target}: {e}");
                }
            }
        }
    };
    send_all(&sockets);
    let started = Instant::now();
    let mut resent = false;
    let mut found = Vec::new();
    let mut unlisted = 0usize;
    let here = this_machine();
    let mut buf = [0u8; MAX_DATAGRAM];
    while started.elapsed() < wait {
        if !resent && started.elapsed() >= RESEND_AFTER {
            resent = true;
            send_all(&sockets);
        }
        for socket in &sockets {
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left.min(SLICE)))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => match Found::from_answer(&buf[..n], from.ip()) {
                    Some(f) if f.tcp_port().is_some() => {
                        if !add(&mut found, f, &here) {
                            unlisted += 1;
                        }
                    }
                    _ => log::debug!("not a discovery answer from {from}"),
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                // e.g. ICMP port unreachable from 127.0.0.1 reported on the next read.
                Err(e) => log::debug!("discovery: {e}"),
            }
        }
    }
    if unlisted > 0 {
        log::warn!("{unlisted} more discovery answers were not listed (at most {MAX_LISTED})");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_cover_broadcast_interfaces_and_this_machine() {
        let t = targets(
            &["10.0.0.255".parse().unwrap(), "10.0.0.255".parse().unwrap()],
            9,
        );
        let t: Vec<String> = t.iter().map(ToString::to_string).collect();
        assert_eq!(
            t,
            [
                "255.255.255.255:9",
                "10.0.0.255:9",
                "127.0.0.1:9",
                "127.255.255.255:9"
            ]
        );
    }

    #[test]
    fn a_subnet_without_a_configured_broadcast_address_gets_one() {
        let b = |ip: &str, mask: &str| subnet_broadcast(ip.parse().unwrap(), mask.parse().unwrap());
        assert_eq!(
            b("10.1.2.3", "255.255.255.0"),
            Some("10.1.2.255".parse().unwrap())
        );
        assert_eq!(
            b("172.16.5.1", "255.255.240.0"),
            Some("172.16.15.255".parse().unwrap())
        );
        assert_eq!(b("10.0.0.1", "255.255.255.254"), None);
        assert_eq!(b("10.0.0.1", "255.255.255.255"), None);
        assert_eq!(b("10.0.0.1", "0.0.0.0"), None);
    }

    #[test]
    fn a_scan_of_this_machine_finds_a_responder_once() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let a = crate::discovery::Announcement::new("here", None, &[("tcp", 4242)]);
        let _responder =
            crate::discovery::Responder::start("127.0.0.1".parse().unwrap(), port, &a).unwrap();
        // Loopback targets only: a test must not broadcast onto a real network.
        let targets = [
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([127, 255, 255, 255], port)),
        ];
        let found = scan(&targets, Duration::from_millis(400)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].tcp_port(), Some(4242));
        assert_eq!(found[0].host, "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
