//! Password checks: a bounded number at once, shared fairly between client addresses, and
//! counted.
//!
//! An argon2 check takes a CPU and ~19 MiB for ~25 ms, so only a few run at once and the
//! rest wait. Waiting in one line would let one address starve everybody: a script that
//! opens 1,000 logins from one machine would put a real student's login behind all of them
//! (seconds). Instead every address has its own line and a freed slot goes to the next
//! address in turn ([`FairQueue`], pure, with its tests), so a login waits for at most one
//! check per other address that is waiting, however many each of them sent.
//!
//! This module does not decide whether a password is right (`credentials` does) nor whether
//! it may be checked at all (`lockout` does); it only schedules and counts the work.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;

/// Who runs next: waiters queued per address, addresses served round-robin. Pure: no
/// threads, no clock; `W` is whatever identifies a waiter to its driver.
#[derive(Debug)]
pub struct FairQueue<W> {
    /// Checks allowed to run at once.
    slots: usize,
    /// Checks running now.
    running: usize,
    /// Addresses with someone waiting, in the order they are served next.
    turns: VecDeque<IpAddr>,
    /// Each waiting address's waiters, oldest first.
    waiting: HashMap<IpAddr, VecDeque<W>>,
}

impl<W> FairQueue<W> {
    /// An idle queue allowing `slots` (at least 1) checks at once.
    pub fn new(slots: usize) -> Self {
        FairQueue {
            slots: slots.max(1),
            running: 0,
            turns: VecDeque::new(),
            waiting: HashMap::new(),
        }
    }

    /// A check from `ip` wants to run: `Some(waiter)` back means it runs now (a slot is
    /// taken); `None` means it was queued and will be returned by a later [`finish`].
    ///
    /// [`finish`]: FairQueue::finish
    pub fn arrive(&mut self, ip: IpAddr, waiter: W) -> Option<W> {
        if self.running < self.slots && self.turns.is_empty() {
            self.running += 1;
            return Some(waiter);
        }
        let line = self.waiting.entry(ip).or_default();
        if line.is_empty() {
            self.turns.push_back(ip);
        }
        line.push_back(waiter);
        None
    }

    /// A running check finished: frees its slot and returns the waiter that takes it, if any
    /// (the oldest waiter of the address whose turn it is).
    pub fn finish(&mut self) -> Option<W> {
        self.running = self.running.saturating_sub(1);
        let ip = self.turns.pop_front()?;
        let line = self.waiting.get_mut(&ip)?;
        let next = line.pop_front();
        if line.is_empty() {
            self.waiting.remove(&ip);
        } else {
            self.turns.push_back(ip);
        }
        if next.is_some() {
            self.running += 1;
        }
        next
    }

    /// Checks running now.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running
    }

    /// Checks waiting for a slot.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

/// How many password checks a server has run (a test and statistics handle; cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct CheckCount(Arc<AtomicU64>);

impl CheckCount {
    /// Checks run so far (started, whether finished or not).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A waiter as the driver knows it: a ticket (to tell it was admitted) and its thread (to
/// wake it, and only it).
struct Waiter {
    /// Unique per wait.
    ticket: u64,
    /// Unparked when admitted.
    thread: Thread,
}

/// What the blocking driver keeps under its lock.
struct DriverState {
    /// The schedule.
    queue: FairQueue<Waiter>,
    /// Tickets admitted but whose thread has not noticed yet.
    admitted: Vec<u64>,
    /// The next ticket.
    next_ticket: u64,
}

/// Runs password checks on the calling threads, at most `slots` at once, fairly between
/// addresses (see the module doc).
pub struct Verifier {
    /// The schedule and its bookkeeping.
    state: Mutex<DriverState>,
    /// Every check run, costly or not.
    count: CheckCount,
}

impl Verifier {
    /// A verifier allowing `slots` costly checks at once.
    pub fn new(slots: usize) -> Verifier {
        Verifier {
            state: Mutex::new(DriverState {
                queue: FairQueue::new(slots),
                admitted: Vec::new(),
                next_ticket: 0,
            }),
            count: CheckCount::default(),
        }
    }

    /// The count of checks run (shared, live).
    pub fn count(&self) -> CheckCount {
        self.count.clone()
    }

    /// Runs `check` for a client at `ip`. A `costly` check (argon2) first waits for a slot,
    /// its address's turn; a cheap one (a plaintext comparison) runs at once.
    pub fn run<T>(&self, ip: IpAddr, costly: bool, check: impl FnOnce() -> T) -> T {
        if !costly {
            self.count.add_one();
            return check();
        }
        self.wait_for_slot(ip);
        // The slot is given back even if `check` panics, or every later check would wait.
        let _slot = Slot(self);
        self.count.add_one();
        check()
    }

    /// Blocks until a check from `ip` holds a slot.
    fn wait_for_slot(&self, ip: IpAddr) {
        let mut state = self.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let waiter = Waiter {
            ticket,
            thread: std::thread::current(),
        };
        if state.queue.arrive(ip, waiter).is_some() {
            return;
        }
        loop {
            if let Some(i) = state.admitted.iter().position(|&t| t == ticket) {
                state.admitted.swap_remove(i);
                return;
            }
            // Unparked by `finish` once admitted; a spurious wake just looks again.
            drop(state);
            std::thread::park();
            state = self.state.lock();
        }
    }

    /// Gives a slot back and wakes the waiter that takes it.
    fn finish(&self) {
        let mut state = self.state.lock();
        if let Some(next) = state.queue.finish() {
            state.admitted.push(next.ticket);
            drop(state);
            next.thread.unpark();
        }
    }
}

/// A held slot; dropping it gives the slot to the next waiter.
struct Slot<'a>(&'a Verifier);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn runs_at_once_while_slots_are_free() {
        let mut q = FairQueue::new(2);
        assert_eq!(q.arrive(ip(1), 'a'), Some('a'));
        assert_eq!(q.arrive(ip(1), 'b'), Some('b'));
        assert_eq!(q.arrive(ip(1), 'c'), None);
        assert_eq!((q.running(), q.waiting()), (2, 1));
        assert_eq!(q.finish(), Some('c'));
        assert_eq!(q.finish(), None);
        assert_eq!(q.finish(), None);
        assert_eq!((q.running(), q.waiting()), (0, 0));
    }

    #[test]
    fn a_flooding_address_waits_its_turn_like_any_other() {
        let mut q = FairQueue::new(1);
        assert!(q.arrive(ip(1), 0).is_some());
        // Address 1 queues a hundred checks, then address 2 queues one.
        for n in 1..=100 {
            assert!(q.arrive(ip(1), n).is_none());
        }
        assert!(q.arrive(ip(2), 1000).is_none());
        assert_eq!(q.finish(), Some(1));
        assert_eq!(q.finish(), Some(1000), "address 2 runs second, not 101st");
        assert_eq!(q.finish(), Some(2));
        assert_eq!(q.finish(), Some(3));
    }

    #[test]
    fn addresses_take_turns_and_each_keeps_its_own_order() {
        let mut q = FairQueue::new(1);
        q.arrive(ip(9), 'x');
        for w in ['a', 'b', 'c'] {
            q.arrive(ip(1), w);
        }
        for w in ['A', 'B'] {
            q.arrive(ip(2), w);
        }
        let order: String = std::iter::from_fn(|| q.finish()).collect();
        assert_eq!(order, "aAbBc");
    }

    #[test]
    fn a_newcomer_does_not_jump_the_queue() {
        let mut q = FairQueue::new(1);
        q.arrive(ip(1), 1);
        q.arrive(ip(2), 2);
        q.finish();
        // A slot is taken by 2; 3 must wait even though 1 finished before it arrived.
        assert_eq!(q.arrive(ip(3), 3), None);
        assert_eq!(q.finish(), Some(3));
    }

    #[test]
    fn the_verifier_never_runs_more_than_its_slots_and_counts_every_check() {
        let verifier = Arc::new(Verifier::new(2));
        let running = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..12u8)
            .map(|i| {
                let (verifier, running, most) = (verifier.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    verifier.run(ip(i % 3), true, || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        verifier.run(ip(1), false, || ());
        assert_eq!(verifier.count().get(), 13);
        let state = verifier.state.lock();
        assert_eq!((state.queue.running(), state.queue.waiting()), (0, 0));
    }
}
