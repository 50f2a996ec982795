//! Why the server could not open its doors, all at once: every port that failed, and for each
//! port in use one that was free when checked, so a second server on the same machine can be
//! started with one command instead of three tries that each name one clash.
//!
//! Finding the ports is pure I/O on this machine; spelling the command (`make run-server
//! ...` when make started the binary, else its own command line with new port options) is
//! pure text, from what the binary knows about how it was started.

use super::door::Door;
use crate::config::Config;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

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

/// Every door's port with each busy one replaced by the free port found for it; `None` if a
/// door failed for another reason or no free port was found (no command would help then).
pub fn ports_instead(config: &Config, failures: &[ListenFailure]) -> Option<Vec<(Door, u16)>> {
    let mut ports = Door::configured(config);
    for failure in failures {
        let free = failure.free_instead.filter(|_| failure.in_use())?;
        for (door, port) in &mut ports {
            if *door == failure.door {
                *port = free;
            }
        }
    }
    Some(ports)
}

/// The one command that starts this server on `ports`: `make run-server PORT=...` when make
/// started it (with CONFIG= when `config` is not the Makefile's), else `argv` (the command
/// line it was started with) with its port options replaced.
pub fn avoiding_command(
    from_make: bool,
    argv: Vec<String>,
    config: Option<&Path>,
    ports: &[(Door, u16)],
) -> String {
    let mut words: Vec<String> = if from_make {
        vec!["make".into(), "run-server".into()]
    } else {
        without_port_options(argv)
    };
    for (door, port) in ports {
        let (make_var, flag) = match door {
            Door::Web | Door::WebTls => ("WEB_PORT", "--web-port"),
            Door::Irc => ("IRC_PORT", "--irc-port"),
            Door::NativeTls => ("TLS_PORT", "--tls-port"),
            Door::IrcTls => ("IRC_TLS_PORT", "--irc-tls-port"),
            Door::Native => ("PORT", "--port"),
        };
        if from_make {
            words.push(format!("{make_var}={port}"));
        } else {
            words.extend([flag.to_string(), port.to_string()]);
        }
    }
    match config {
        Some(config) if from_make && config != Path::new("configuration.toml") => {
            words.push(format!("CONFIG={}", config.display()));
        }
        _ => {}
    }
    words.join(" ")
}

/// `argv` without the options that set a port (`4119`, `--port 4119`, `-sp 4119`,
/// `--web-port=8080`, ...), whose values are about to be replaced.
fn without_port_options(argv: Vec<String>) -> Vec<String> {
    const PORT_FLAGS: &[&str] = &[
        "--port",
        "--sp",
        "-sp",
        "--web-port",
        "--irc-port",
        "--tls-port",
        "--irc-tls-port",
    ];
    const VALUE_FLAGS: &[&str] = &["--config", "-c", "--credentials", "--bind", "--data-dir"];
    let mut kept = Vec::new();
    let mut words = argv.into_iter();
    if let Some(program) = words.next() {
        kept.push(program);
    }
    while let Some(word) = words.next() {
        if PORT_FLAGS.contains(&word.as_str()) {
            words.next();
        } else if VALUE_FLAGS.contains(&word.as_str()) {
            kept.push(word);
            kept.extend(words.next());
        } else if !(PORT_FLAGS
            .iter()
            .any(|f| word.starts_with(&format!("{f}=")))
            || word.parse::<u16>().is_ok())
        {
            kept.push(word);
        }
    }
    kept
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

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(String::from).collect()
    }

    #[test]
    fn port_options_go_and_the_rest_stays() {
        let argv = words(
            "srv 4119 --config c.toml --web-port=8080 -sp 1 --bind 127.0.0.1 --irc-port 6667 \
             --data-dir 4120",
        );
        let argv: Vec<String> = argv.into_iter().filter(|w| !w.is_empty()).collect();
        assert_eq!(
            without_port_options(argv),
            words("srv --config c.toml --bind 127.0.0.1 --data-dir 4120")
        );
    }

    #[test]
    fn the_command_is_make_run_server_from_make_else_the_binary_with_new_ports() {
        let ports = [(Door::Native, 4120), (Door::Web, 8081), (Door::Irc, 6668)];
        let argv = words("lanchat-server 4119 --config other.toml");
        assert_eq!(
            avoiding_command(true, argv.clone(), Some(Path::new("other.toml")), &ports),
            "make run-server PORT=4120 WEB_PORT=8081 IRC_PORT=6668 CONFIG=other.toml"
        );
        assert_eq!(
            avoiding_command(false, argv, Some(Path::new("other.toml")), &ports[..2]),
            "lanchat-server --config other.toml --port 4120 --web-port 8081"
        );
    }
}
