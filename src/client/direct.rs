//! Direct private messages (seed 002's `private USER TEXT`): from one client straight to
//! another, never through the server, so they keep working while the server is down.
//!
//! The server only introduces two users. After both agree (`getaddress USER`, `accept`),
//! each gets an `ADDR granted` line with the other's listening address and a 32-byte secret
//! shared by the pair; the client keeps those in its [`Book`]. One TCP connection carries one
//! message:
//!
//! ```text
//!   receiver: LANCHAT-P2P 1 <nonce: 32 hex digits, fresh for every connection>
//!   sender:   PRIVATE <from> <mac: 64 hex digits> <text>
//!   receiver: OK delivered        or        ERR <code> <text>
//!   both close
//! ```
//!
//! `mac` is keyed BLAKE2b-256 ([`mac`]) with the pair's secret over
//! `lanchat-p2p-v1\n<nonce>\n<from>\n<to>\n<text>`, where `to` is the receiver's own name:
//! without the secret a message cannot be forged, replayed (the nonce changes) or redirected
//! to another peer. A receiver checks it in constant time; an unknown sender or a wrong MAC
//! gets `ERR refused` and a warning in the log with the peer's address (at most one line
//! per [`warnings::WINDOW`], then a summary), and the user sees nothing. A sender's
//! connecting, and each line it reads or writes, has [`TIMEOUT`]; a receiver gives each
//! connection [`listener::DEADLINE`] from its accept to a verified message. The text is one
//! UTF-8 line of at most [`MAX_TEXT_BYTES`] bytes.
//!
//! Threads: the listener ([`listener`]) accepts on `0.0.0.0` and `[::]` and gives each
//! connection it admits ([`admission`]: a cap per address and in all, fairly shared) a
//! short-lived thread, which must get a verified message within [`listener::DEADLINE`] and
//! hands it to the main loop as `Event::Direct`; warnings about refused connections are
//! rate-limited ([`warnings`]). Sending happens on one worker thread per peer
//! (`PeerOutbox`), so messages to one peer arrive in order, a peer that does not answer delays
//! no one else, and the main loop never waits; each outcome comes back as `Event::Sent`.
//!
//! What it does not do: encrypt (anyone on the path can read a private message; the MAC only
//! proves who sent it), keep messages for a peer that cannot be reached, or tell peers that
//! this client is leaving (the server does that with `ADDR gone`).
//!
//! The rooms: [`wire`] (the lines and the MAC, pure), [`command`] (the commands the client
//! handles itself), [`book`] (the address book), [`sender`] (sending, one worker per peer),
//! [`listener`] with [`admission`] and [`warnings`] (receiving), [`seal`] (the text's
//! encryption).

pub mod admission;
pub mod book;
pub mod command;
pub mod listener;
pub mod seal;
pub mod sender;
pub mod warnings;
pub mod wire;

pub use book::{reachable_address, Book, Peer};
pub use command::{parse_local, Local};
pub(crate) use listener::listen;
pub use sender::send;
pub(crate) use sender::PeerOutbox;
pub use wire::{
    check_text, format_private, from_hex, greeting, mac, new_nonce, parse_greeting, parse_private,
    parse_reply, to_hex, verify, Private, SendError, GREETING, MAX_TEXT_BYTES, TIMEOUT,
};

/// The secret a pair of peers shares, from `ADDR granted`.
pub type Secret = [u8; 32];
