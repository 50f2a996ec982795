//! One TLS connection's record layer, kept inside the connection's outbox (see `conn`).
//!
//! Encryption happens where lines are queued, under the outbox's lock: the outbox then
//! holds ciphertext, so the non-blocking sends, the flusher, the outbox limit, the stall
//! deadline and the kernel-acknowledgement receipts all work on the bytes that really cross
//! the wire, and ciphertext leaves in the order its lines were queued. Decryption happens on
//! the connection's own reader thread, which takes the same lock only to feed what it read.
//! No thread is added per connection.

use rustls::{ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;

/// rustls' server side of one connection.
pub struct TlsSession {
    conn: ServerConnection,
}

/// What decrypting a read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The connection goes on (maybe no plaintext yet: handshake records).
    Open,
    /// The client sent close_notify: no more plaintext will come.
    PeerClosed,
}

impl TlsSession {
    /// A new session for an accepted connection; plaintext queued before the handshake is
    /// done waits in rustls, up to `buffer_limit` bytes.
    pub fn new(
        config: Arc<ServerConfig>,
        buffer_limit: usize,
    ) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(buffer_limit));
        Ok(TlsSession { conn })
    }

    /// Encrypts `plain` and appends the records ready for the socket to `out`. False if
    /// rustls would not take it all (more than the buffer limit before the handshake ended).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> bool {
        let mut rest = plain;
        while !rest.is_empty() {
            match self.conn.writer().write(rest) {
                Ok(0) | Err(_) => return false,
                Ok(n) => rest = &rest[n..],
            }
            self.drain(out);
        }
        true
    }

    /// Moves what rustls has to send (records, handshake messages, alerts) to `out`.
    fn drain(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Feeds `cipher` (bytes read from the socket): appends the plaintext it carried to
    /// `plain`, and what rustls answers (handshake, alerts) to `out`. On an error the alert
    /// telling the client why is in `out` already.
    pub fn open(
        &mut self,
        mut cipher: &[u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Opened, rustls::Error> {
        let mut opened = Opened::Open;
        while !cipher.is_empty() {
            if self.conn.read_tls(&mut cipher).is_err() {
                // rustls' buffer is full of unprocessed records, which cannot happen while
                // each read is processed at once.
                return Err(rustls::Error::General("TLS input not processed".into()));
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.drain(out);
                    return Err(e);
                }
            };
            let ready = state.plaintext_bytes_to_read();
            if state.peer_has_closed() {
                opened = Opened::PeerClosed;
            }
            if ready > 0 {
                let start = plain.len();
                plain.resize(start + ready, 0);
                if self.conn.reader().read_exact(&mut plain[start..]).is_err() {
                    plain.truncate(start);
                }
            }
        }
        self.drain(out);
        Ok(opened)
    }
}
