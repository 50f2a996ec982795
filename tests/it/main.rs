//! Integration tests: a real server on 127.0.0.1:0 per test, spoken to over TCP the way
//! telnet or the client would.

/// TestServer / TestClient and the rest shared by every test binary (docs/testing.md).
#[path = "../support/mod.rs"]
mod support;

/// Issue 2: login, lockout, presence, messages, broadcasts, intros, limits, shutdown.
mod core;

/// Issue 3: offline mail, history, last seen and intros survive restarts and crashes.
mod store;

/// Issue 23: a channel QUIT leaves the group; the data directory is bounded.
mod bounds;
/// Issue 23 item 3: offline mail leaves the mailbox only once the client's TCP acknowledged
/// it; a re-delivery carries the same id.
mod mail_delivery;

/// Issue 4: chat sessions, blacklists, statuses, groups, auth modes and policies.
mod conversations;

/// Issue 6: heartbeats, login deadline, per-IP cap, rate limit, slow readers.
mod hardening;

/// Issue 5, server side: the address exchange behind direct (peer-to-peer) messages.
mod addresses;

/// Issue 8: the web door (HTTP page, WebSocket carrying the native lines).
mod web;

/// Issue 7: presence in a crowd (`PRESENCES` summaries above `presence_summary_above`).
mod crowd;

/// Issue 7: connection threads stay far from the end of their small stacks.
mod memory;

/// Issue 26 item 1: prose for telnet and nc, tagged lines for programs, telnet echo.
mod prose;

/// Issue 23: hostile input: cheap wildcard masks, nothing reaches a terminal raw.
mod hostile_input;
/// Issue 23 (items 1, 9): lockout against parallel guesses, equal-cost and fair logins.
mod login;
/// Issue 26: seed 003's room, seed 002's blank answer, seed 004's `list`, limits named.
mod newcomer;
/// Issue 23: deadlines that trickled bytes cannot move, flood control that slows; on the
/// server's manual monotonic clock (issue 24 item 8), moved instead of slept through.
mod pace;

// TLS on the native door: what a relay sees, an independent client, pinning (issue 25).
mod tls;
