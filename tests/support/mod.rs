//! What every test binary shares (docs/testing.md says which part to call). Each binary
//! includes it with `mod support;` (tests/it: `#[path = "../support/mod.rs"] mod support;`)
//! and uses what it needs.
//!
//! - [`server`]: the server in the test's process ([`TestServer`]), every door on port 0.
//! - [`client`]: native-door clients ([`TestClient`] for tagged lines, [`Prose`] for `nc`).
//! - [`irc`]: a raw IRC client of the IRC door ([`IrcClient`]).
//! - [`web`]: a WebSocket client of the web door ([`WsClient`]).
//! - [`tls`]: a client of the TLS doors pinned to one key ([`TlsClient`]).
//! - [`process`]: the real binaries as child processes ([`ServerProcess`], [`ClientProcess`]).
//! - [`tmux`]: a real terminal ([`Tmux`]).
//! - [`needs`]: a missing tool fails the test ([`require`]; tests/needs.sh).
#![allow(dead_code, unused_imports)] // each test binary uses a different part

pub mod client;
pub mod irc;
pub mod needs;
pub mod process;
pub mod server;
pub mod tls;
pub mod tmux;
pub mod web;

pub use client::*;
pub use irc::*;
pub use needs::*;
pub use process::*;
pub use server::*;
pub use tls::*;
pub use tmux::*;
pub use web::{Duplex, WsClient};
