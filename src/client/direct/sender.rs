//! Sending direct messages: [`send`] makes one connection for one message, and `PeerOutbox`
//! runs it off the main loop, one worker thread per peer, so a peer's messages arrive in
//! order, a peer that does not answer delays no one else, and each outcome comes back as
//! `ClientEvent::Sent`.
//!
//! What it does not do: retry, or keep a message for a peer that cannot be reached.

use super::wire::{
    check_text, format_private, mac, parse_greeting, parse_reply, read_line_in_time, LineRead,
    SendError, MAX_SHORT_LINE, TIMEOUT,
};
use super::{seal, Peer};
use crate::client::ClientEvent;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};

/// Sends one direct message: connects to `peer`, answers its nonce and reads its verdict.
/// Blocks for up to a few [`TIMEOUT`]s; the client calls it on a `PeerOutbox` worker thread.
pub fn send(peer: &Peer, from: &str, to: &str, text: &str) -> Result<(), SendError> {
    check_text(text)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    let mut stream = None;
    for addr in peer.address.to_socket_addrs().map_err(SendError::Connect)? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(SendError::Connect(last))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(SendError::Io)?;
    let line = |stream: &TcpStream| match read_line_in_time(stream, MAX_SHORT_LINE) {
        Ok(LineRead::Line(bytes)) => String::from_utf8(bytes).map_err(|_| SendError::Protocol),
        Ok(LineRead::TooLong) => Err(SendError::Protocol),
        Ok(LineRead::Closed) => Err(SendError::Io(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(SendError::Io(e)),
    };
    let greeting = line(&stream)?;
    let nonce = parse_greeting(&greeting).ok_or(SendError::Protocol)?;
    let sealed = seal::seal(&peer.secret, nonce, from, to, text);
    let tag = mac(&peer.secret, nonce, from, to, &sealed);
    (&stream)
        .write_all(format_private(from, &tag, &sealed).as_bytes())
        .map_err(SendError::Io)?;
    parse_reply(&line(&stream)?)
}

/// One message for a [`PeerOutbox`] worker.
struct Job {
    /// Where to send it.
    peer: Peer,
    /// This client's user.
    from: String,
    /// The message.
    text: String,
}

/// Sends direct messages off the main loop: one worker thread per peer, started on the
/// first message to that peer, so each peer's messages stay in order.
pub(crate) struct PeerOutbox {
    /// Each peer's worker queue.
    workers: HashMap<String, Sender<Job>>,
    /// Where workers report outcomes ([`ClientEvent::Sent`]).
    events: Sender<ClientEvent>,
}

impl PeerOutbox {
    /// An outbox that reports to `events`.
    pub(crate) fn new(events: Sender<ClientEvent>) -> PeerOutbox {
        PeerOutbox {
            workers: HashMap::new(),
            events,
        }
    }

    /// Queues `text` from `from` to `to` at `peer`; the outcome arrives as [`ClientEvent::Sent`].
    pub(crate) fn send(
        &mut self,
        to: &str,
        peer: Peer,
        from: &str,
        text: String,
    ) -> io::Result<()> {
        let job = Job {
            peer,
            from: from.to_string(),
            text,
        };
        let job = match self.workers.get(to) {
            Some(worker) => match worker.send(job) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (name, events) = (to.to_string(), self.events.clone());
        std::thread::Builder::new()
            .name("direct-out".into())
            .spawn(move || {
                for job in rx {
                    let result = send(&job.peer, &job.from, &name, &job.text);
                    let sent = ClientEvent::Sent {
                        to: name.clone(),
                        result: result.map_err(|e| e.to_string()),
                    };
                    if events.send(sent).is_err() {
                        return;
                    }
                }
            })?;
        tx.send(job).expect("the worker holds the receiver");
        self.workers.insert(to.to_string(), tx);
        Ok(())
    }
}
