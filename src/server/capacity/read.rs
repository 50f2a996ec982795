//! A waiting read that keeps a connection thread's stack and heap small: it waits with a
//! small buffer on the stack, and only a read that filled it takes more, without waiting,
//! into the connection's heap buffer.

use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;

/// Bytes a waiting read takes at once, in a buffer on the stack: small, because the frames
/// under a waiting connection thread are what ten thousand idle users keep resident (the
/// native door's waiting chain must stay within two stack pages: docs/performance.md).
pub const WAIT_READ_BYTES: usize = 256;
/// Bytes read without waiting, into the heap buffer, when a waiting read came back full
/// (pipelined input): a busy client still gets few read calls.
pub const MORE_READ_BYTES: usize = 4096;

/// Reads what `stream` has into `buf`, waiting (up to the read timeout) for at least one
/// byte: a small read on the stack, then, if that came back full, what else is there at
/// once. Returns the bytes added; 0 at end of file.
pub fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; WAIT_READ_BYTES];
    let n = (&*stream).read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    if n == chunk.len() {
        return Ok(n + read_more(stream, buf));
    }
    Ok(n)
}

/// Appends what `stream` has right now (at most [`MORE_READ_BYTES`]) without waiting.
#[inline(never)]
#[allow(unsafe_code)]
fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> usize {
    buf.reserve(MORE_READ_BYTES);
    let spare = &mut buf.spare_capacity_mut()[..MORE_READ_BYTES];
    let flags = libc::MSG_DONTWAIT;
    loop {
        match socket2::SockRef::from(stream).recv_with_flags(spare, flags) {
            Ok(n) => {
                // SAFETY: recv initialised the first `n` bytes of the spare capacity, which
                // directly follow the vector's `len` initialised bytes.
                unsafe { buf.set_len(buf.len() + n) };
                return n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Nothing more now (or an error the next waiting read will see again).
            Err(_) => return 0,
        }
    }
}
