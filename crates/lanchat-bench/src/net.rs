//! The generator's event loop: one epoll set over many non-blocking sockets, so one thread
//! drives ten thousand simulated users (a thread per user would compete with the server
//! for the same cores and become the bottleneck). The baseline servers use it too. A
//! connection may be TLS (rustls, driven by hand over the same non-blocking socket): the
//! fleet then encrypts what is sent and decrypts what is read, and the rest is unchanged.
#![allow(unsafe_code)]

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Readable.
pub const IN: u32 = libc::EPOLLIN as u32;
/// Writable.
pub const OUT: u32 = libc::EPOLLOUT as u32;
/// Hung up or failed.
const HUP: u32 = (libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32;

/// An epoll set.
pub struct Poller {
    fd: OwnedFd,
}

impl Poller {
    /// A new, empty set.
    pub fn new() -> io::Result<Poller> {
        // SAFETY: a plain system call with no pointer arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just created for us and owned by nothing else.
        Ok(Poller {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event that outlives the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for `events`, reporting it as `token`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Waits up to `timeout` (rounded up to a millisecond unless zero); fills `buf` and
    /// returns how many entries are events. [`token_and_flags`] reads one.
    pub fn wait(&self, buf: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ms = if timeout.is_zero() {
            0
        } else {
            timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
        };
        // SAFETY: `buf` is a valid, exclusively borrowed buffer of `buf.len()` entries.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len() as libc::c_int,
                ms,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(rc as usize)
    }
}

/// A buffer for [`Poller::wait`].
pub fn event_buffer(n: usize) -> Vec<libc::epoll_event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

/// The token and event flags of one epoll event.
pub fn token_and_flags(ev: &libc::epoll_event) -> (u64, u32) {
    (ev.u64, ev.events)
}

/// Pins the calling thread to one CPU (best effort; false if it could not).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bit set initialised by CPU_ZERO before use, and the call only
    // reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Clock ticks per second of /proc's CPU times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Raises the soft open-files limit to the hard limit (ten thousand users need it).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: `lim` is a valid rlimit struct for both calls.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

/// One client socket of the fleet.
pub struct FleetPeer {
    stream: TcpStream,
    /// The TLS session over `stream`, for a TLS connection: plaintext goes in and out of it,
    /// and only its records cross the socket.
    tls: Option<Box<ClientConnection>>,
    /// A partial line.
    rbuf: Vec<u8>,
    /// Bytes not yet accepted by the socket.
    wbuf: Vec<u8>,
    /// Whether the socket is still usable.
    pub open: bool,
}

/// What happened on a peer.
#[derive(Debug)]
pub enum FleetEvent<'a> {
    /// A complete line, without LF or CRLF.
    Line(&'a [u8]),
    /// The server closed the connection (or it failed).
    Closed,
}

/// Lines to send, gathered while handling received ones: (peer, bytes).
pub type Outgoing = Vec<(usize, String)>;

/// Many client connections behind one epoll set.
pub struct Fleet {
    poller: Poller,
    /// The connections, by index (their epoll token).
    pub peers: Vec<FleetPeer>,
    ready: Vec<libc::epoll_event>,
    chunk: Vec<u8>,
    /// Plaintext decrypted from one read of a TLS peer.
    plain: Vec<u8>,
    /// Records a TLS session has ready to send.
    records: Vec<u8>,
    /// Bytes received in all (on the wire: TLS records included).
    pub bytes_in: u64,
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> io::Result<Fleet> {
        Ok(Fleet {
            poller: Poller::new()?,
            peers: Vec::new(),
            ready: event_buffer(1024),
            chunk: vec![0; 256 * 1024],
            plain: Vec::new(),
            records: Vec::new(),
            bytes_in: 0,
        })
    }

    /// Connects one more client (over TLS with `tls`: its handshake starts at once, and what
    /// is sent before it ends waits in the session); returns its index.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> io::Result<usize> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from("lanchat").expect("a valid name");
                let mut conn =
                    ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                // A window of messages may be written before the handshake ends.
                conn.set_buffer_limit(None);
                Some(Box::new(conn))
            }
            None => None,
        };
        let idx = self.peers.len();
        self.poller.add(stream.as_raw_fd(), idx as u64, IN)?;
        self.peers.push(FleetPeer {
            stream,
            tls,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            open: true,
        });
        self.send_records(idx);
        Ok(idx)
    }

    /// Sends bytes to peer `idx` (queued if the socket is full; encrypted on TLS).
    pub fn send(&mut self, idx: usize, bytes: &[u8]) {
        match self.peers[idx].tls.as_mut() {
            Some(conn) => {
                if conn.writer().write_all(bytes).is_err() {
                    self.close(idx);
                    return;
                }
                self.send_records(idx);
            }
            None => self.send_raw(idx, bytes),
        }
    }

    /// Sends whatever TLS records peer `idx`'s session has ready (handshake, data, alerts).
    fn send_records(&mut self, idx: usize) {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        if let Some(conn) = self.peers[idx].tls.as_mut() {
            while conn.wants_write() {
                if conn.write_tls(&mut records).is_err() {
                    break;
                }
            }
        }
        if !records.is_empty() {
            self.send_raw(idx, &records);
        }
        self.records = records;
    }

    /// Sends bytes on peer `idx`'s socket as they are (queued if the socket is full).
    fn send_raw(&mut self, idx: usize, bytes: &[u8]) {
        let p = &mut self.peers[idx];
        if !p.open {
            return;
        }
        if !p.wbuf.is_empty() {
            p.wbuf.extend_from_slice(bytes);
            return;
        }
        match (&p.stream).write(bytes) {
            Ok(n) if n == bytes.len() => return,
            Ok(n) => p.wbuf.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => p.wbuf.extend_from_slice(bytes),
            Err(_) => {
                self.close(idx);
                return;
            }
        }
        let fd = p.stream.as_raw_fd();
        let _ = self.poller.modify(fd, idx as u64, IN | OUT);
    }

    /// Closes peer `idx`.
    pub fn close(&mut self, idx: usize) {
        let p = &mut self.peers[idx];
        if p.open {
            p.open = false;
            self.poller.remove(p.stream.as_raw_fd());
            let _ = p.stream.shutdown(Shutdown::Both);
        }
    }

    /// Closes every peer (the server sees them all leave).
    pub fn close_all(&mut self) {
        for i in 0..self.peers.len() {
            self.close(i);
        }
    }

    fn flush(&mut self, idx: usize) {
        let p = &mut self.peers[idx];
        while !p.wbuf.is_empty() {
            match (&p.stream).write(&p.wbuf) {
                Ok(n) => {
                    p.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close(idx);
                    return;
                }
            }
        }
        let fd = p.stream.as_raw_fd();
        let _ = self.poller.modify(fd, idx as u64, IN);
    }

    /// Waits up to `timeout` for something to happen and hands each complete line (and each
    /// close) to `on_event` with the time it was read. Lines pushed to `out` are sent
    /// afterwards. Returns the number of lines.
    pub fn poll(
        &mut self,
        timeout: Duration,
        out: &mut Outgoing,
        mut on_event: impl FnMut(usize, FleetEvent<'_>, Instant, &mut Outgoing),
    ) -> io::Result<usize> {
        let mut ready = std::mem::take(&mut self.ready);
        let n = self.poller.wait(&mut ready, timeout)?;
        let mut lines = 0;
        for ev in &ready[..n] {
            let (token, flags) = token_and_flags(ev);
            let idx = token as usize;
            if !self.peers[idx].open {
                continue;
            }
            if flags & OUT != 0 {
                self.flush(idx);
            }
            if flags & (IN | HUP) != 0 {
                lines += self.read_ready(idx, out, &mut on_event);
            }
        }
        self.ready = ready;
        for (idx, line) in out.drain(..) {
            self.send(idx, line.as_bytes());
        }
        Ok(lines)
    }

    /// One read from a ready peer, split into lines.
    fn read_ready(
        &mut self,
        idx: usize,
        out: &mut Outgoing,
        on_event: &mut impl FnMut(usize, FleetEvent<'_>, Instant, &mut Outgoing),
    ) -> usize {
        let n = match (&self.peers[idx].stream).read(&mut self.chunk) {
            Ok(0) => {
                self.close(idx);
                on_event(idx, FleetEvent::Closed, Instant::now(), out);
                return 0;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return 0
            }
            Err(_) => {
                self.close(idx);
                on_event(idx, FleetEvent::Closed, Instant::now(), out);
                return 0;
            }
        };
        let now = Instant::now();
        self.bytes_in += n as u64;
        let data = if self.peers[idx].tls.is_some() {
            match self.decrypt(idx, n) {
                Ok(()) => &self.plain[..],
                Err(_) => {
                    self.close(idx);
                    on_event(idx, FleetEvent::Closed, now, out);
                    return 0;
                }
            }
        } else {
            &self.chunk[..n]
        };
        let peer = &mut self.peers[idx];
        let mut lines = 0;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let piece = &data[start..nl];
            start = nl + 1;
            lines += 1;
            if peer.rbuf.is_empty() {
                on_event(idx, FleetEvent::Line(trim_cr(piece)), now, out);
            } else {
                let mut whole = std::mem::take(&mut peer.rbuf);
                whole.extend_from_slice(piece);
                on_event(idx, FleetEvent::Line(trim_cr(&whole)), now, out);
            }
        }
        peer.rbuf.extend_from_slice(&data[start..]);
        lines
    }
}

impl Fleet {
    /// Feeds the `n` bytes just read into peer `idx`'s TLS session, leaves the plaintext it
    /// yields in `self.plain`, and sends what the session has to answer (handshake).
    fn decrypt(&mut self, idx: usize, n: usize) -> io::Result<()> {
        self.plain.clear();
        let conn = self.peers[idx].tls.as_mut().expect("a TLS peer");
        let mut rest = &self.chunk[..n];
        while !rest.is_empty() {
            conn.read_tls(&mut rest)?;
            let state = conn.process_new_packets().map_err(io::Error::other)?;
            let mut want = state.plaintext_bytes_to_read();
            while want > 0 {
                let start = self.plain.len();
                self.plain.resize(start + want, 0);
                let got = conn.reader().read(&mut self.plain[start..])?;
                self.plain.truncate(start + got);
                if got == 0 {
                    break;
                }
                want -= got;
            }
        }
        self.send_records(idx);
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
