//! How lines become the bytes one kind of client reads: the [`Encoder`] each connection
//! carries (the native door's prose or tagged lines, the web door's WebSocket frames, the
//! IRC door's lines), so the hub never needs to know which door a client came through.

use crate::protocol::Line;

/// Turns protocol lines into the bytes one kind of client reads.
pub trait Encoder: Send + Sync {
    /// Appends the bytes that carry `line` to `out` (nothing, if this client has no use for
    /// it).
    fn encode(&self, line: &Line, out: &mut Vec<u8>);

    /// Whether [`Encoder::encode`] is exactly [`Line::to_wire`], so that one formatted line
    /// can be shared by many recipients (broadcasts).
    fn is_native(&self) -> bool {
        false
    }

    /// The encoder as `Any`, for a door whose session keeps state in its encoder (the IRC
    /// door's nick and capabilities).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
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

    fn is_native(&self) -> bool {
        true
    }
}
