//! Measuring how deep connection threads go (tests and diagnostics; off by default, as it
//! touches every page of every connection's stack), per server ([`StackGauge`]): a thread
//! paints its free stack with a pattern when it starts and, when it ends, finds the lowest
//! word that changed.
//!
//! A page only probed (`or $0`, as a frame larger than a page is entered) keeps its
//! pattern, so the depth found can be short of the true one by less than a page.

use super::stack::{set_painted, stack_bounds, stack_pointer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const PATTERN: u64 = 0x5a5a_a5a5_5a5a_a5a5;
/// Left unpainted under the painter's own frame.
const MARGIN: usize = 512;

/// One server's switch and result: whether its connection threads measure their stack
/// use, and the deepest use measured so far.
#[derive(Clone, Debug, Default)]
pub struct StackGauge(Arc<(AtomicBool, AtomicUsize)>);

impl StackGauge {
    /// Makes this server's connection threads started from now on measure their stack.
    pub fn enable(&self) {
        self.0 .0.store(true, Ordering::Release);
    }

    /// Whether this server's connection threads measure their stack use.
    pub fn enabled(&self) -> bool {
        self.0 .0.load(Ordering::Acquire)
    }

    /// The deepest stack use of one of this server's connection threads that has ended,
    /// in bytes from the top of its stack (what the thread library keeps there
    /// included); 0 if none was measured.
    pub fn deepest(&self) -> usize {
        self.0 .1.load(Ordering::Acquire)
    }

    /// Records one thread's depth.
    pub(crate) fn record(&self, depth: usize) {
        self.0 .1.fetch_max(depth, Ordering::AcqRel);
    }
}

/// A painted stack, measured when [`Painted::finish`] is called.
pub struct Painted {
    low: usize,
    high: usize,
}

/// Paints the calling thread's free stack if `gauge` is enabled.
#[inline(never)]
#[allow(unsafe_code)]
pub fn paint(gauge: &StackGauge) -> Option<Painted> {
    if !gauge.enabled() {
        return None;
    }
    let (low, high) = stack_bounds()?;
    let low = low.next_multiple_of(8);
    let end = (stack_pointer().checked_sub(MARGIN)?) & !7;
    let mut at = low;
    while at < end {
        // SAFETY: [low, end) is this thread's own stack below this call's frame (and
        // the margin): unused, writable memory.
        unsafe { std::ptr::write_volatile(at as *mut u64, PATTERN) };
        at += 8;
    }
    set_painted(true);
    Some(Painted { low, high })
}

impl Painted {
    /// How deep the thread went since it painted.
    #[allow(unsafe_code)]
    pub fn finish(self) -> usize {
        let mut at = self.low;
        // SAFETY: the same painted range, below the frames still live.
        while at < self.high && unsafe { std::ptr::read_volatile(at as *const u64) } == PATTERN {
            at += 8;
        }
        set_painted(false);
        self.high - at
    }
}
