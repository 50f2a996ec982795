//! The loopback limit: two servers with no chat logic at all, measured on the same workload
//! as lanchat and the IRC servers, so the results say how far each is from what the machine
//! can do.
//!
//! - [`serve_echo`]: every byte read is written back (TCP ping-pong: the latency floor).
//! - [`serve_relay`]: one thread, one epoll loop; the first line of a client is its name,
//!   then `<to> <text>` relays `M <from> <text>` to `to` and `* <text>` to everyone else.
//!   Writes are gathered per recipient and flushed once per loop turn (as an event-loop IRC
//!   server does): the throughput ceiling.

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
}

/// Token of the listening socket.
const LISTENER: u64 = u64::MAX;

struct Client {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    name: Option<String>,
    dirty: bool,
}

/// Serves `kind` on `listener` until `stop` is set (checked every 100 ms).
pub fn serve(kind: Baseline, listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poller = Poller::new()?;
    poller.add(listener.as_raw_fd(), LISTENER, IN)?;
    let mut clients: Vec<Option<Client>> = Vec::new();
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
                Ok(len) => match kind {
                    Baseline::Echo => {
                        let c = clients[idx].as_mut().expect("checked");
                        c.wbuf.extend_from_slice(&chunk[..len]);
                        mark(c, idx, &mut dirty);
                    }
                    Baseline::Relay => {
                        relay_lines(&chunk[..len], idx, &mut clients, &mut names, &mut dirty)
                    }
                },
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

fn mark(c: &mut Client, idx: usize, dirty: &mut Vec<usize>) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(idx);
    }
}

fn accept_all(
    listener: &TcpListener,
    poller: &Poller,
    clients: &mut Vec<Option<Client>>,
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
                let client = Client {
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
    clients: &mut [Option<Client>],
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
    clients: &mut [Option<Client>],
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
    clients: &mut [Option<Client>],
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
