//! lanchat: a LAN chat server and client, built thread-per-client on blocking `std::net`.
//!
//! The data path, server side:
//!
//! ```text
//! socket ─► server::reader (bounded lines) ─► protocol::parse_command (pure)
//!   (server::door: one listener per door, all leading to the same hub;
//!    the terminal door: server::native reads through server::telnet's filter and writes
//!    server::prose for people, tagged lines for programs that ask;
//!    browsers: server::web serves the page, its WebSocket carries the same lines;
//!    IRC clients: server::irc speaks IRC and calls the same hub operations)
//!        ─► server::session (one thread per connection: login dialogue, dispatch)
//!        ─► server::hub (shared state behind one handle; locks never leave it):
//!            lock, apply a server::rules function (pure: state, now, who, command
//!            -> outcome of typed events and deliveries; directory changes as journal
//!            events), unlock, then journal, deliver and render (server::render: typed
//!            events -> native lines)
//!        ─► store (offline mail: fsync before acknowledging; users.log, the journal
//!                  of the one user directory; history: appended by the hub's one
//!                  history thread)
//!        ─► server::conn (per-recipient outbox; non-blocking writes, one flusher thread)
//! ```
//!
//! [`discovery`] answers UDP "where is the server?" requests on the LAN.
//!
//! The client ([`client`]) is two threads: one reads the socket and renders
//! [`protocol::Line`]s, the other reads the keyboard and sends what is typed.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod discovery;
pub mod net;
pub mod protocol;
pub mod server;
pub mod store;
pub mod terminal;
pub mod tls;
