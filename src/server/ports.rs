//! Why the server could not open its doors, all at once: every port that failed, and for each
//! port in use one that was free when checked, so a second server on the same machine can be
//! started with one command instead of three tries that each name one clash.
//!
//! It only finds and reports; spelling the command (`make run-server ...` or the binary's
//! flags) is the binary's business, since only it knows how it was started.

use super::door::Door;
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// How far past a busy port to look for a free one.
const SEARCH_SPAN: u16 = 200;

/// One door that could not listen.
#[derive(Debug)]
pub struct ListenFailure {
    /// Which door.
    pub door: Door,
    /// The address it was to listen on.
    pub addr: SocketAddr,
    /// What the operating system said.
    pub error: io::Error,
    /// For a port in use: a port on the same address that was free when checked (and is
    /// none of the other doors' ports), to use instead.
    pub free_instead: Option<u16>,
}

impl ListenFailure {
    /// Whether another program (often another lanchat server) holds the port.
    pub fn in_use(&self) -> bool {
        self.error.kind() == io::ErrorKind::AddrInUse
    }
}

impl fmt::Display for ListenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (door, port, ip) = (self.door.name(), self.addr.port(), self.addr.ip());
        if self.in_use() {
            write!(f, "port {port} ({door}) on {ip} is in use")?;
        } else {
            write!(f, "port {port} ({door}) on {ip}: {}", self.error)?;
        }
        if let Some(free) = self.free_instead {
            write!(f, " ({free} is free)")?;
        }
        Ok(())
    }
}

/// Fills in `free_instead` for every port in use: the first port above it that can be
/// listened on now and is not in `taken` (the doors' own ports) nor given to another door.
pub(super) fn suggest_free_ports(failures: &mut [ListenFailure], taken: &[u16]) {
    let mut avoid: Vec<u16> = taken.to_vec();
    for failure in failures.iter_mut().filter(|f| f.in_use()) {
        let start = failure.addr.port();
        let free = (1..=SEARCH_SPAN)
            .filter_map(|step| start.checked_add(step))
            .filter(|port| !avoid.contains(port))
            .find(|port| {
                // Dropped at once: only whether it could be opened matters.
                crate::net::tcp_listener(SocketAddr::new(failure.addr.ip(), *port)).is_ok()
            });
        if let Some(port) = free {
            avoid.push(port);
        }
        failure.free_instead = free;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn busy(door: Door, addr: SocketAddr) -> ListenFailure {
        ListenFailure {
            door,
            addr,
            error: io::Error::from(io::ErrorKind::AddrInUse),
            free_instead: None,
        }
    }

    #[test]
    fn each_busy_port_gets_its_own_free_port_that_no_door_uses() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = held.local_addr().unwrap();
        let mut failures = [busy(Door::Native, addr), busy(Door::Web, addr)];
        let web_port = addr.port().wrapping_add(1);
        suggest_free_ports(&mut failures, &[addr.port(), web_port]);
        let (a, b) = (failures[0].free_instead, failures[1].free_instead);
        assert!(a.is_some() && b.is_some(), "{failures:?}");
        assert_ne!(a, b);
        for port in [a, b].into_iter().flatten() {
            assert!(port != addr.port() && port != web_port);
        }
        assert!(failures[0].to_string().contains("is in use"));
    }

    #[test]
    fn other_errors_get_no_suggestion() {
        let mut failures = [ListenFailure {
            door: Door::Web,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 80)),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
            free_instead: None,
        }];
        suggest_free_ports(&mut failures, &[]);
        assert_eq!(failures[0].free_instead, None);
        assert!(failures[0]
            .to_string()
            .starts_with("port 80 (web) on 127.0.0.1: "));
    }
}
