//! The one thread that finishes the writes a socket did not take at once: connections are
//! handed over when their outbox is left non-empty, and it `poll`s the full sockets until
//! they drain (or drops a client that stopped reading).

use super::Conn;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a connection hands its outbox to the flusher.
#[derive(Clone)]
pub(super) struct HandOver {
    sender: Sender<Arc<Conn>>,
    /// Interrupts the flusher's wait on full sockets (`None` if no eventfd could be made).
    wake: Option<Arc<FlusherWake>>,
}

impl HandOver {
    pub(super) fn hand_over(&self, conn: &Arc<Conn>) {
        let _ = self.sender.send(Arc::clone(conn));
        if let Some(wake) = &self.wake {
            wake.notify();
        }
    }
}

/// An eventfd in the flusher's `poll` set, written when work is handed over while it waits
/// for full sockets to drain: without it, one client that stopped reading (a laptop on bad
/// Wi-Fi) kept the flusher in a 50 ms `poll` on its socket, and every other client's
/// fan-out waited for that `poll` to end.
struct FlusherWake {
    fd: std::os::fd::OwnedFd,
    /// Set while the flusher is (about to be) in `poll`; only then is the eventfd written.
    polling: AtomicBool,
}

impl FlusherWake {
    #[allow(unsafe_code)]
    fn new() -> Option<Arc<FlusherWake>> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            log::warn!(
                "flusher: no eventfd ({}); a stalled client may delay others' writes by 50 ms",
                io::Error::last_os_error()
            );
            return None;
        }
        Some(Arc::new(FlusherWake {
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            polling: AtomicBool::new(false),
        }))
    }

    /// Called after a hand-over: ends the flusher's `poll` if it is in one; only the first
    /// of a fan-out's thousand hand-overs pays the `write`. (SeqCst pairs with the
    /// flusher's store before it checks its queue: either it sees the new work or this sees
    /// it polling.)
    #[allow(unsafe_code)]
    fn notify(&self) {
        if self.polling.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live local array to a descriptor this owns. A
            // full counter (EAGAIN) means the flusher is being woken already.
            unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    one.as_ptr().cast(),
                    8,
                )
            };
        }
    }

    /// Resets the counter after a `poll`; true if it was written (work was handed over).
    #[allow(unsafe_code)]
    fn clear(&self) -> bool {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local array from a descriptor this
        // owns; non-blocking, so an unset counter just fails with EAGAIN.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                count.as_mut_ptr().cast(),
                8,
            )
        };
        n == 8
    }
}

/// The shared thread that finishes writes which did not fit in a socket's buffer.
pub struct Flusher {
    /// What each connection is given to send its outbox here (and end the flusher's wait
    /// on full sockets).
    pub(super) hand_over: HandOver,
    /// Taken by the flusher thread when it starts.
    receiver: Mutex<Option<Receiver<Arc<Conn>>>>,
    /// The longest it waits on full sockets before trying them again.
    poll_timeout: Duration,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher::new()
    }
}

impl Flusher {
    /// A flusher whose thread has not started yet.
    pub fn new() -> Flusher {
        Flusher::with_poll_timeout(Duration::from_millis(50))
    }

    /// A flusher that waits at most `poll_timeout` on full sockets (tests make it long, so
    /// that only a wake-up can end the wait early).
    pub(super) fn with_poll_timeout(poll_timeout: Duration) -> Flusher {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Flusher {
            hand_over: HandOver {
                sender,
                wake: FlusherWake::new(),
            },
            receiver: Mutex::new(Some(receiver)),
            poll_timeout,
        }
    }

    /// Starts the flusher thread. It runs until `stop` is set and the queue is empty.
    pub fn spawn(&self, stop: Arc<AtomicBool>) -> io::Result<std::thread::JoinHandle<()>> {
        let receiver = self
            .receiver
            .lock()
            .take()
            .ok_or_else(|| io::Error::other("flusher already started"))?;
        let wake = self.hand_over.wake.clone();
        let poll_timeout = self.poll_timeout;
        std::thread::Builder::new()
            .name("lanchat-flusher".into())
            .spawn(move || flush_loop(&receiver, &stop, wake.as_deref(), poll_timeout))
    }
}

fn flush_loop(
    receiver: &Receiver<Arc<Conn>>,
    stop: &AtomicBool,
    wake: Option<&FlusherWake>,
    poll_timeout: Duration,
) {
    let mut waiting: Vec<Arc<Conn>> = Vec::new();
    loop {
        if waiting.is_empty() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match receiver.try_recv() {
                Ok(c) => waiting.push(c),
                Err(_) => match receiver.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => waiting.push(c),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                },
            }
            // A new round: let the threads that queued lines finish the ones they have
            // already read (on a busy core they would wait behind this round), so each
            // client gets them in one send instead of one send per line.
            std::thread::yield_now();
        }
        waiting.extend(receiver.try_iter());
        waiting.sort_by_key(|c| c.id);
        waiting.dedup_by_key(|c| c.id);
        // Write first; wait only for the sockets that did not take everything.
        waiting.retain(|conn| {
            if conn.is_closed() {
                return false;
            }
            match conn.flush_some() {
                Ok(true) => false,
                Ok(false) if conn.stalled() => {
                    log::warn!(
                        "conn {} ({}): no write progress for {:?}; dropping it",
                        conn.id,
                        conn.peer,
                        conn.limits.stall
                    );
                    conn.close();
                    false
                }
                Ok(false) => true,
                Err(e) => {
                    log::debug!("conn {} ({}): flush failed: {e}", conn.id, conn.peer);
                    conn.close();
                    false
                }
            }
        });
        if waiting.is_empty() {
            continue;
        }
        if stop.load(Ordering::Acquire) && waiting.iter().all(|c| c.is_closed()) {
            return;
        }
        if let Some(wake) = wake {
            wake.polling.store(true, Ordering::SeqCst);
            if receiver.is_empty() {
                wait_writable(&waiting, Some(&wake.fd), poll_timeout);
            }
            wake.polling.store(false, Ordering::SeqCst);
            if wake.clear() {
                // As at a new round: let the thread handing work over finish queueing
                // (a fan-out queues for each member in turn) before this round starts.
                std::thread::yield_now();
            }
        } else {
            wait_writable(&waiting, None, poll_timeout);
        }
    }
}

/// Waits until one of the sockets is writable, `wake` is readable, or the timeout passes.
#[allow(unsafe_code)]
fn wait_writable(conns: &[Arc<Conn>], wake: Option<&std::os::fd::OwnedFd>, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .chain(wake.map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }))
        .collect();
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
    // for the duration of the call, and every descriptor stays open because `conns` holds
    // an `Arc` to each connection and the flusher holds its eventfd.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if rc < 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
}
