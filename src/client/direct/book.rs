//! The address book: the peers this client may exchange direct messages with, each with
//! its address and the secret of the pair, kept from the server's `ADDR` lines; and where
//! to reach a peer the server gave a loopback address for.
//!
//! What it does not do: ask for addresses (the server introduces peers) or send.

use super::Secret;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where to reach a peer whose address the server gave as `address`, when this client
/// reaches the server at `server`. The server hands out the IP it sees a client connect
/// from; a loopback IP means the peer runs on the server's own machine, which this client
/// reaches at `server` (unless this client is on that machine too).
pub fn reachable_address(address: &str, server: Option<std::net::IpAddr>) -> String {
    match (address.parse::<SocketAddr>(), server) {
        (Ok(peer), Some(server)) if peer.ip().is_loopback() && !server.is_loopback() => {
            SocketAddr::new(server, peer.port()).to_string()
        }
        _ => address.to_string(),
    }
}

/// Where a peer listens and the secret shared with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `host:port` or `[v6]:port`, as the server gave it.
    pub address: String,
    /// The pair's secret.
    pub secret: Secret,
}

/// The address book: who this client may exchange direct messages with. A cheap handle
/// shared by the main loop (which changes it on the server's `ADDR` lines) and the
/// listener's threads (which look senders up); the lock never leaves this type.
#[derive(Clone, Debug, Default)]
pub struct Book {
    /// Peers by username.
    peers: Arc<Mutex<BTreeMap<String, Peer>>>,
}

impl Book {
    /// Adds or replaces a peer.
    pub fn insert(&self, name: &str, peer: Peer) {
        self.peers.lock().insert(name.to_string(), peer);
    }

    /// Drops a peer; whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        self.peers.lock().remove(name).is_some()
    }

    /// A peer's address and secret.
    pub fn get(&self, name: &str) -> Option<Peer> {
        self.peers.lock().get(name).cloned()
    }

    /// Every peer's name and address, sorted by name.
    pub fn entries(&self) -> Vec<(String, String)> {
        let peers = self.peers.lock();
        peers
            .iter()
            .map(|(name, peer)| (name.clone(), peer.address.clone()))
            .collect()
    }

    /// Whether a peer in the book listens at `ip`: a connection from there is probably
    /// that peer's (the MAC still decides), so [`admission`](super::admission) lets it in first.
    pub fn has_peer_at(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.peers.lock().values().any(|peer| {
            peer.address
                .parse::<SocketAddr>()
                .is_ok_and(|addr| addr.ip().to_canonical() == ip)
        })
    }

    /// Every peer's name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.peers.lock().keys().cloned().collect()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: Secret = [7u8; 32];

    #[test]
    fn a_peer_on_the_server_machine_is_reached_where_the_server_is() {
        let lan: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            reachable_address("127.0.0.1:4000", Some(lan)),
            "10.0.0.1:4000"
        );
        assert_eq!(reachable_address("[::1]:4000", Some(lan)), "10.0.0.1:4000");
        assert_eq!(
            reachable_address("127.0.0.1:4000", Some(local)),
            "127.0.0.1:4000"
        );
        assert_eq!(
            reachable_address("10.0.0.7:4000", Some(lan)),
            "10.0.0.7:4000"
        );
        assert_eq!(
            reachable_address("[fe80::1]:4000", Some(lan)),
            "[fe80::1]:4000"
        );
        assert_eq!(reachable_address("127.0.0.1:4000", None), "127.0.0.1:4000");
        assert_eq!(reachable_address("host:4000", Some(lan)), "host:4000");
    }

    #[test]
    fn book_is_shared_by_its_handles() {
        let book = Book::default();
        let other = book.clone();
        assert!(book.is_empty());
        let peer = Peer {
            address: "127.0.0.1:9".into(),
            secret: SECRET,
        };
        other.insert("carol", peer.clone());
        other.insert("bob", peer.clone());
        assert_eq!(book.names(), ["bob", "carol"]);
        assert_eq!(book.get("bob"), Some(peer));
        assert!(book.remove("bob"));
        assert!(!other.remove("bob"));
        assert_eq!(
            other.entries(),
            [("carol".to_string(), "127.0.0.1:9".to_string())]
        );
    }
}
