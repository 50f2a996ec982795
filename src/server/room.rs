//! Seed 003's chat room (`room = true` in the configuration): a line that is not a command
//! is said to everyone online and shown back to its sender, as the room showed every line to
//! everyone. It is a chat line, not a command, so success has no `OK` (the sender's own line
//! is the confirmation); a failure is answered as `broadcast TEXT` would answer it.
//!
//! Deciding what is "not a command" stays with the session (an unknown command word outside
//! a chat session); this module only says it to the room.

use super::hub::Hub;
use crate::protocol::{sanitize_text, Audience, Kind, Line};

/// Whether a line that is not a command is said to the room: only with `room` on, and not
/// when it starts with `/`, which marks a mistyped command rather than something to say.
pub(super) fn is_room_line(hub: &Hub, line: &str) -> bool {
    hub.config().room && !line.trim_start().starts_with('/')
}

/// Says `line` to everyone online as `me`; returns what `me` is to be sent.
pub(super) fn say(hub: &Hub, me: &str, line: &str) -> Vec<Line> {
    let text = sanitize_text(line.trim());
    let replies = hub.broadcast(me, &Audience::Online, &text);
    if replies.iter().any(|r| r.kind != Kind::Ok) {
        return replies;
    }
    if hub.config().broadcast_echo {
        // The hub has already shown it to `me` along with everyone else.
        Vec::new()
    } else {
        vec![Line::new(Kind::Bcast, &[me], text)]
    }
}
