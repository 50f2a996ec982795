//! When offline mail counts as delivered: when the client's TCP has acknowledged every byte
//! of its line. Handing the line to the kernel is not enough: a connection reset (or a
//! server killed) with the line still in the socket's send queue loses it, and the client
//! never saw it.
//!
//! A connection keeps, per mail it sent from the mailbox, the offset in its output stream at
//! which the mail's line ends ([`Receipts`], in the connection's outbox); the mail is
//! delivered once the peer acknowledged that many bytes. The kernel's count of acknowledged
//! bytes is `tcpi_bytes_acked` of `TCP_INFO`. Unlike `bytes written - SIOCOUTQ`, it survives
//! a reset: Linux empties the send queue when a RST arrives, and `SIOCOUTQ` then says 0 as if
//! everything had been acknowledged.
//!
//! What it does not do: remove mail from the store (the hub does, by id) or know what the
//! client's program did with the bytes (a mail acknowledged by the client machine's TCP but
//! never read by a crashed client is not sent again; PROTOCOL.md says so).

use std::collections::VecDeque;
use std::net::TcpStream;

/// The mails a connection sent from the mailbox and that are not known to be delivered yet.
#[derive(Debug)]
pub struct Receipts {
    /// Bytes the kernel had been handed for this socket before the connection's own count
    /// started (nothing, unless someone wrote to the socket before it got its outbox): the
    /// outbox's offsets plus this are the socket's.
    before: u64,
    /// `(end, id)`: mail `id` is delivered once `end` bytes of the outbox's stream are
    /// acknowledged. In stream order.
    pending: VecDeque<(u64, String)>,
    /// Ids of mails delivered and not yet removed from the mailbox.
    delivered: Vec<String>,
}

impl Receipts {
    /// Receipts for a connection on `stream`, whose outbox has handed `written` bytes to the
    /// kernel so far (called under the outbox's lock: a send in flight can only make the
    /// start larger, which delays a delivery, never advances one).
    pub fn new(stream: &TcpStream, written: u64) -> Receipts {
        Receipts {
            before: handed_to_kernel(stream).map_or(0, |all| all.saturating_sub(written)),
            pending: VecDeque::new(),
            delivered: Vec::new(),
        }
    }

    /// Receipts that count from the stream's first byte (for tests).
    #[cfg(test)]
    fn counting_from_zero() -> Receipts {
        Receipts {
            before: 0,
            pending: VecDeque::new(),
            delivered: Vec::new(),
        }
    }

    /// Remembers that mail `id`'s line ends at offset `end` of the outbox's stream.
    pub fn expect(&mut self, end: u64, id: String) {
        debug_assert!(self.pending.back().is_none_or(|(last, _)| *last <= end));
        self.pending.push_back((end, id));
    }

    /// Whether any mail waits for its acknowledgement.
    pub fn awaiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Counts as delivered the mails whose lines are within the first `acked` bytes the
    /// socket ever carried (as the kernel counts them).
    pub fn note_acknowledged(&mut self, acked: u64) {
        let acked = acked.saturating_sub(self.before);
        while self.pending.front().is_some_and(|(end, _)| *end <= acked) {
            if let Some((_, id)) = self.pending.pop_front() {
                self.delivered.push(id);
            }
        }
    }

    /// Takes the ids of the mails delivered since the last call, for their removal.
    pub fn take_delivered(&mut self) -> Vec<String> {
        std::mem::take(&mut self.delivered)
    }
}

/// Bytes of this socket's stream the peer has acknowledged; `None` if the kernel does not
/// say (then nothing counts as delivered and the mail stays for the next login).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn acknowledged(stream: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live, writable tcp_info and `len` says its size; the kernel writes
    // at most `len` bytes and stores how many it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    (rc == 0 && len as usize >= needed).then_some(info.tcpi_bytes_acked)
}

/// Without `TCP_INFO`'s byte count, nothing is known to be delivered.
#[cfg(not(target_os = "linux"))]
pub fn acknowledged(_stream: &TcpStream) -> Option<u64> {
    None
}

/// Bytes ever handed to the kernel for this socket: acknowledged plus still queued. The queue
/// is read first, so an acknowledgement arriving in between makes the sum larger, never
/// smaller (a larger start only delays a delivery).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn handed_to_kernel(stream: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer it is given.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc != 0 {
        return None;
    }
    Some(acknowledged(stream)? + u64::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn handed_to_kernel(_stream: &TcpStream) -> Option<u64> {
    Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn a_mail_is_delivered_once_every_byte_of_its_line_is_acknowledged() {
        let mut receipts = Receipts::counting_from_zero();
        receipts.expect(10, "a".into());
        receipts.expect(25, "b".into());
        receipts.expect(40, "c".into());
        receipts.note_acknowledged(9);
        assert!(receipts.take_delivered().is_empty());
        receipts.note_acknowledged(25);
        receipts.note_acknowledged(39);
        assert_eq!(receipts.take_delivered(), ["a", "b"]);
        assert!(receipts.awaiting());
        receipts.note_acknowledged(1000);
        assert!(!receipts.awaiting());
        assert_eq!(receipts.take_delivered(), ["c"]);
        assert!(receipts.take_delivered().is_empty());
    }

    #[test]
    fn bytes_written_before_the_count_started_are_not_taken_for_mail() {
        let mut receipts = Receipts {
            before: 100,
            ..Receipts::counting_from_zero()
        };
        receipts.expect(10, "a".into());
        receipts.note_acknowledged(100);
        assert!(receipts.take_delivered().is_empty());
        receipts.note_acknowledged(110);
        assert_eq!(receipts.take_delivered(), ["a"]);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn wait_for(mut what: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !what() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_counts_acknowledged_bytes_and_keeps_the_count_after_a_reset() {
        let (mut server, mut client) = pair();
        assert_eq!(acknowledged(&server), Some(0));
        assert_eq!(handed_to_kernel(&server), Some(0));
        server.write_all(&[b'x'; 1000]).unwrap();
        assert!(wait_for(|| acknowledged(&server) == Some(1000)));
        let mut got = [0u8; 1000];
        client.read_exact(&mut got).unwrap();

        // The client stops reading: the kernel's buffers fill, the rest stays unacknowledged.
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut written = 1000u64;
        let chunk = [b'y'; 65536];
        while let Ok(n) = server.write(&chunk) {
            written += n as u64;
        }
        assert_eq!(handed_to_kernel(&server), Some(written));
        std::thread::sleep(Duration::from_millis(50));
        let acked = acknowledged(&server).unwrap();
        assert!(acked < written, "{acked} of {written}");

        // A reset empties the send queue; the acknowledged count does not move.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let mut probe = [0u8; 1];
        assert!(wait_for(|| matches!(
            (&server).read(&mut probe),
            Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset
        )));
        assert_eq!(acknowledged(&server), Some(acked));
    }
}
