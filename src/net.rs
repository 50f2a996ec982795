//! Listening sockets that behave the same whatever the operating system's defaults.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Pending connections the kernel may queue (it caps this at `somaxconn`): a class logging
/// in at once must not be refused.
const BACKLOG: i32 = 1024;

/// A TCP listener on `addr`. On `::` it takes IPv4 connections too (IPV6_V6ONLY off, where
/// the system allows it), so `--bind ::` serves both families on one port; other IPv6
/// addresses are IPv6 only.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restarted server may rebind while old connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if let SocketAddr::V6(v6) = addr {
        let dual = v6.ip().is_unspecified();
        if let Err(e) = socket.set_only_v6(!dual) {
            log::warn!("cannot set IPV6_V6ONLY={} on {addr}: {e}", !dual);
        }
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn unspecified_ipv6_takes_ipv4_too() {
        // Where IPv6 is off, `make test` skips the tests named *ipv6* (tests/needs.sh).
        let listener = tcp_listener("[::]:0".parse().unwrap()).expect("IPv6 is available");
        let port = listener.local_addr().unwrap().port();
        TcpStream::connect(("127.0.0.1", port)).expect("IPv4 to [::]");
        TcpStream::connect(("::1", port)).expect("IPv6 to [::]");
    }

    #[test]
    fn ipv6_loopback_is_ipv6_only() {
        let listener = tcp_listener("[::1]:0".parse().unwrap()).expect("an IPv6 loopback");
        let port = listener.local_addr().unwrap().port();
        TcpStream::connect(("::1", port)).expect("IPv6 to [::1]");
        let v4 = tcp_listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert_ne!(v4.local_addr().unwrap().port(), 0);
    }
}
