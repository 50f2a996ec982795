//! How what the hub pushes becomes the bytes one kind of client reads: the [`Encoder`] each
//! connection carries (the native door's prose or tagged lines, the web door's WebSocket
//! frames, the IRC door's lines), so the hub never needs to know which door a client came
//! through.
//!
//! The hub pushes two things: typed [`ChatEvent`]s (what the rules say: messages, presence,
//! chat-session news), which each door renders its own way, and native [`Line`]s already
//! rendered (the replies to a user's own command, the login dialogue). An event for many
//! travels as a [`FanOut`], which keeps each distinct rendering it was given, so a door
//! renders it once per distinct view of its clients rather than once per client.

use super::render;
use super::rules::ChatEvent;
use crate::protocol::Line;
use std::cell::RefCell;

/// Turns protocol lines into the bytes one kind of client reads.
pub trait Encoder: Send + Sync {
    /// Appends the bytes that carry `line` to `out` (nothing, if this client has no use for
    /// it).
    fn encode(&self, line: &Line, out: &mut Vec<u8>);

    /// Appends the bytes that carry `event` (by default, its native lines as
    /// [`Encoder::encode`] writes them).
    fn encode_event(&self, event: &ChatEvent, out: &mut Vec<u8>) {
        if let Some(line) = render::live_line(event) {
            return self.encode(&line, out);
        }
        for line in render::render(event.clone()) {
            self.encode(&line, out);
        }
    }

    /// Appends the bytes that carry an event many clients get, reusing what `fan_out` kept
    /// for a client with the same view (by default, nothing is shared).
    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        self.encode_event(fan_out.event(), out);
    }
}

/// A door whose session keeps state in its encoder (the native door's prose or tagged
/// mode, the IRC door's nick and capabilities) keeps an `Arc` of it, and gives the
/// connection another.
impl<T: Encoder + ?Sized> Encoder for std::sync::Arc<T> {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        (**self).encode(line, out);
    }

    fn encode_event(&self, event: &ChatEvent, out: &mut Vec<u8>) {
        (**self).encode_event(event, out);
    }

    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        (**self).encode_fan_out(fan_out, out);
    }
}

/// The tagged lines as PROTOCOL.md spells them, always (the native door itself starts in
/// prose: see `native::Terminal`); for tests of connections.
#[cfg(test)]
pub struct NativeEncoder;

#[cfg(test)]
impl Encoder for NativeEncoder {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        line.write_wire(out);
    }

    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        fan_out.shared(NATIVE_VIEW, out, |out| {
            self.encode_event(fan_out.event(), out)
        });
    }
}

/// The view key of the tagged native lines, the same for every client that reads them.
pub const NATIVE_VIEW: u64 = u64::MAX;

/// The view key of the web door's frames, the same for every browser.
pub const WEB_VIEW: u64 = u64::MAX - 1;

/// Most distinct renderings a [`FanOut`] keeps (clients of one door differ in a few
/// settings; the IRC door's in capabilities and whether they are in the lobby).
const FAN_OUT_VIEWS: usize = 8;

/// One event on its way to many connections, with the renderings made so far, each under
/// the key of the view it was made for. It lives on the stack of the thread that fans the
/// event out, for that one fan-out: nothing outlives it.
pub struct FanOut<'a> {
    /// The event.
    event: &'a ChatEvent,
    /// `(view key, bytes)` of each rendering kept.
    views: RefCell<Vec<(u64, Vec<u8>)>>,
}

impl<'a> FanOut<'a> {
    /// A fan-out of `event`, nothing rendered yet.
    pub fn new(event: &'a ChatEvent) -> FanOut<'a> {
        FanOut {
            event,
            views: RefCell::new(Vec::new()),
        }
    }

    /// The event.
    pub fn event(&self) -> &'a ChatEvent {
        self.event
    }

    /// How many renderings it keeps.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.views.borrow().len()
    }

    /// Appends the bytes kept for the view `key`, or those `render` appends, which are kept
    /// for the next client with this view. An encoder picks keys that name everything its
    /// rendering depends on besides the event ([`NATIVE_VIEW`] for the tagged lines).
    pub fn shared(&self, key: u64, out: &mut Vec<u8>, render: impl FnOnce(&mut Vec<u8>)) {
        if let Some((_, bytes)) = self.views.borrow().iter().find(|(k, _)| *k == key) {
            out.extend_from_slice(bytes);
            return;
        }
        let start = out.len();
        render(out);
        let mut views = self.views.borrow_mut();
        if views.len() < FAN_OUT_VIEWS {
            views.push((key, out[start..].to_vec()));
        }
    }
}
