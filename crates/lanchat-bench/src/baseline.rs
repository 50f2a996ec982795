//! The loopback limit: two servers with no chat logic at all, measured on the same workload
//! as lanchat and the IRC servers, so the results say how far each is from what the machine
//! can do.
//!
//! - [`serve_echo`]: every byte read is written back (TCP ping-pong: the latency floor).
//! - [`serve_relay`]: one thread, one epoll loop; the first line of a client is its name,
//!   then `<to> <text>` relays `M <from> <text>` to `to` and `* <text>` to everyone else.
//!   Writes are gathered per recipient and flushed once per loop turn (as an event-loop IRC
//!   server does): the throughput ceiling.
//! - [`serve_threads`]: the same relay built the way lanchat is, a blocking thread per
//!   client, and answering every message line with `OK sent` as lanchat does: the ceiling
//!   of the thread-per-client design itself, with no chat logic to pay for.

use super::net::{event_buffer, token_and_flags, Poller, IN, OUT};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Bytes back to the sender.
    Echo,
    /// The one-thread relay.
    Relay,
    /// The thread-per-client relay ([`serve_threads`]).
    Threads,
}

/// Token of the listening socket.
const LISTENER: u64 = u64::MAX;

struct EpollClient {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    name: Option<String>,
    dirty: bool,
}

/// Serves `kind` on `listener` until `stop` is set (checked every 100 ms; for
/// [`Baseline::Threads`], after each accept).
pub fn serve(kind: Baseline, listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    if kind == Baseline::Threads {
        return serve_threads(listener, stop);
    }
    let echo = kind == Baseline::Echo;
    listener.set_nonblocking(true)?;
    let poller = Poller::new()?;
    poller.add(listener.as_raw_fd(), LISTENER, IN)?;
    let mut clients: Vec<Option<EpollClient>> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut events = event_buffer(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let n = poller.wait(&mut events, Duration::from_millis(100))?;
        for ev in &events[..n] {
            let (token, flags) = token_and_flags(ev);
            if token == LISTENER {
                accept_all(&listener, &poller, &mut clients)?;
                continue;
            }
            let idx = token as usize;
            if flags & OUT != 0 {
                if let Some(c) = clients[idx].as_mut() {
                    if !c.dirty {
                        c.dirty = true;
                        dirty.push(idx);
                    }
                }
            }
            if flags & !OUT == 0 {
                continue;
            }
            let got = match clients[idx].as_mut() {
                Some(c) => (&c.stream).read(&mut chunk),
                None => continue,
            };
            match got {
                Ok(0) => drop_client(&poller, &mut clients, &mut names, idx),
                Ok(len) if echo => {
                    let c = clients[idx].as_mut().expect("checked");
                    c.wbuf.extend_from_slice(&chunk[..len]);
                    mark(c, idx, &mut dirty);
                }
                Ok(len) => relay_lines(&chunk[..len], idx, &mut clients, &mut names, &mut dirty),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => drop_client(&poller, &mut clients, &mut names, idx),
            }
        }
        for idx in dirty.drain(..) {
            let Some(c) = clients[idx].as_mut() else {
                continue;
            };
            c.dirty = false;
            match (&c.stream).write(&c.wbuf) {
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    c.wbuf.clear();
                }
            }
            let want = if c.wbuf.is_empty() { IN } else { IN | OUT };
            let _ = poller.modify(c.stream.as_raw_fd(), idx as u64, want);
        }
    }
    Ok(())
}

fn mark(c: &mut EpollClient, idx: usize, dirty: &mut Vec<usize>) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(idx);
    }
}

fn accept_all(
    listener: &TcpListener,
    poller: &Poller,
    clients: &mut Vec<Option<EpollClient>>,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                let idx = clients
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(clients.len());
                poller.add(stream.as_raw_fd(), idx as u64, IN)?;
                let client = EpollClient {
                    stream,
                    rbuf: Vec::new(),
                    wbuf: Vec::new(),
                    name: None,
                    dirty: false,
                };
                if idx == clients.len() {
                    clients.push(Some(client));
                } else {
                    clients[idx] = Some(client);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors and the like: try again on the next turn.
            Err(_) => return Ok(()),
        }
    }
}

fn drop_client(
    poller: &Poller,
    clients: &mut [Option<EpollClient>],
    names: &mut HashMap<String, usize>,
    idx: usize,
) {
    if let Some(c) = clients[idx].take() {
        poller.remove(c.stream.as_raw_fd());
        if let Some(name) = c.name {
            if names.get(&name) == Some(&idx) {
                names.remove(&name);
            }
        }
    }
}

/// Splits what `idx` sent into lines and relays each.
fn relay_lines(
    data: &[u8],
    idx: usize,
    clients: &mut [Option<EpollClient>],
    names: &mut HashMap<String, usize>,
    dirty: &mut Vec<usize>,
) {
    let mut buf = std::mem::take(&mut clients[idx].as_mut().expect("caller checked").rbuf);
    buf.extend_from_slice(data);
    let mut start = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
        let line = &buf[start..start + nl];
        start += nl + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = String::from_utf8_lossy(line);
        relay_one(&line, idx, clients, names, dirty);
    }
    buf.drain(..start);
    if let Some(c) = clients[idx].as_mut() {
        c.rbuf = buf;
    }
}

fn relay_one(
    line: &str,
    idx: usize,
    clients: &mut [Option<EpollClient>],
    names: &mut HashMap<String, usize>,
    dirty: &mut Vec<usize>,
) {
    let Some(me) = clients[idx].as_mut() else {
        return;
    };
    let Some(from) = me.name.clone() else {
        me.name = Some(line.to_string());
        names.insert(line.to_string(), idx);
        me.wbuf.extend_from_slice(b"OK\n");
        mark(me, idx, dirty);
        return;
    };
    if line == "PING" {
        me.wbuf.extend_from_slice(b"PONG\n");
        mark(me, idx, dirty);
        return;
    }
    let Some((to, text)) = line.split_once(' ') else {
        return;
    };
    let out = format!("M {from} {text}\n");
    if to == "*" {
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some(c) = c.as_mut().filter(|c| c.name.is_some() && i != idx) {
                c.wbuf.extend_from_slice(out.as_bytes());
                mark(c, i, dirty);
            }
        }
    } else if let Some(&to_idx) = names.get(to) {
        if let Some(c) = clients[to_idx].as_mut() {
            c.wbuf.extend_from_slice(out.as_bytes());
            mark(c, to_idx, dirty);
        }
    }
}

/// One client of the thread-per-client relay, as the other clients' threads see it.
struct ThreadPeer {
    /// Read by the client's own thread, written by any (one descriptor per client, as in
    /// lanchat: a `try_clone` would halve the users the open-files limit allows).
    stream: TcpStream,
    /// Held for each write, so that writes from several threads never interleave.
    writing: parking_lot::Mutex<()>,
}

impl ThreadPeer {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let _one_at_a_time = self.writing.lock();
        (&self.stream).write_all(bytes)
    }
}

type Peers = std::sync::Arc<parking_lot::Mutex<HashMap<String, std::sync::Arc<ThreadPeer>>>>;

/// The acknowledgement of every relayed line, about as long as lanchat's
/// `OK sent Your message was sent to u2.`
const ACK: &[u8] = b"OK sent Your message was relayed to its reader.\n";

/// Serves the relay of [`serve`] with one blocking thread per client (64 KiB stacks), the
/// design lanchat is built on: a thread reads what its client sent, relays each line, writes
/// each recipient what one read produced with one `write`, then answers every message line
/// to its sender with one more (as lanchat answers `OK sent`, or an error for a user who is
/// not there). Runs until `stop` is set, checked after each accept
/// (connect once to wake it).
pub fn serve_threads(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    let peers: Peers = Default::default();
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors and the like: the next accept may work.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peers = std::sync::Arc::clone(&peers);
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve_thread_client(stream, &peers));
        if spawned.is_err() {
            // The process is out of threads: that client is dropped, the rest go on.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// One client's thread: reads until end of file, relays, unregisters.
fn serve_thread_client(stream: TcpStream, peers: &Peers) {
    let me = std::sync::Arc::new(ThreadPeer {
        stream,
        writing: parking_lot::Mutex::new(()),
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let mut name: Option<String> = None;
    // What one read produced for each recipient, and for the sender itself.
    let mut out: Vec<(std::sync::Arc<ThreadPeer>, Vec<u8>)> = Vec::new();
    let mut own = Vec::new();
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match (&me.stream).read(&mut buf[have..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..have]) {
            let line = &buf[start..start + nl];
            start += nl + 1;
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            let Some(from) = &name else {
                peers
                    .lock()
                    .insert(line.to_string(), std::sync::Arc::clone(&me));
                name = Some(line.into_owned());
                own.extend_from_slice(b"OK\n");
                continue;
            };
            if line == "PING" {
                own.extend_from_slice(b"PONG\n");
                continue;
            }
            let Some((to, text)) = line.split_once(' ') else {
                continue;
            };
            let recipients: Vec<std::sync::Arc<ThreadPeer>> = {
                let peers = peers.lock();
                if to == "*" {
                    peers
                        .values()
                        .filter(|p| !std::sync::Arc::ptr_eq(p, &me))
                        .cloned()
                        .collect()
                } else {
                    peers.get(to).cloned().into_iter().collect()
                }
            };
            for peer in recipients {
                let slot = match out
                    .iter()
                    .position(|(p, _)| std::sync::Arc::ptr_eq(p, &peer))
                {
                    Some(i) => i,
                    None => {
                        out.push((peer, Vec::new()));
                        out.len() - 1
                    }
                };
                let bytes = &mut out[slot].1;
                for part in [b"M ", from.as_bytes(), b" ", text.as_bytes(), b"\n"] {
                    bytes.extend_from_slice(part);
                }
            }
            own.extend_from_slice(ACK);
        }
        buf.copy_within(start..have, 0);
        have -= start;
        for (peer, bytes) in out.drain(..) {
            // A recipient that is gone is the benchmark's business, not the relay's.
            let _ = peer.write_all(&bytes);
        }
        if !own.is_empty() {
            let _ = me.write_all(&own);
            own.clear();
        }
    }
    if let Some(name) = name {
        let mut peers = peers.lock();
        if peers
            .get(&name)
            .is_some_and(|p| std::sync::Arc::ptr_eq(p, &me))
        {
            peers.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn the_thread_relay_relays_acknowledges_and_broadcasts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let server = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || serve_threads(listener, &stop))
        };
        let login = |name: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(format!("{name}\n").as_bytes()).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "OK\n");
            (s, r)
        };
        let (mut a, mut a_in) = login("a");
        let (mut b, mut b_in) = login("b");
        let (c, mut c_in) = login("c");
        let read = |r: &mut BufReader<TcpStream>| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            line
        };
        a.write_all(b"b one\nb two\nnobody three\n").unwrap();
        assert_eq!(read(&mut b_in), "M a one\n");
        assert_eq!(read(&mut b_in), "M a two\n");
        for _ in 0..3 {
            assert_eq!(
                read(&mut a_in).as_bytes(),
                ACK,
                "every message line answered"
            );
        }
        b.write_all(b"* all\nPING\n").unwrap();
        assert_eq!(read(&mut a_in), "M b all\n");
        assert_eq!(read(&mut c_in), "M b all\n");
        assert_eq!(read(&mut b_in).as_bytes(), ACK);
        assert_eq!(read(&mut b_in), "PONG\n");
        drop((a, a_in, b, b_in, c, c_in));
        stop.store(true, Ordering::Release);
        drop(TcpStream::connect(addr));
        server.join().unwrap().unwrap();
    }
}
