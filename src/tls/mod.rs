//! TLS for lanchat: the server's identity (key, certificate, fingerprint) and the pieces
//! both ends share. The server's per-connection TLS state lives with its outbox (see
//! `server::tls_session`).

pub mod fingerprint;
pub mod identity;
pub mod known;
pub mod pin;

pub use fingerprint::Fingerprint;
pub use identity::{Identity, IdentityError};
pub use pin::PinVerifier;
