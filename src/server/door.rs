//! The doors into one server. Each door is a listening TCP port whose clients speak one
//! kind of wire format; every door leads to the same hub, so users who came in through
//! different doors see and message each other as if they had used the same one.

use super::conn::{Conn, Encoder, NativeEncoder};
use super::hub::Hub;
use super::reader::LineReader;
use super::session::{self, SessionContext};
use crate::config::Config;
use crate::protocol::Line;
use std::sync::Arc;

/// One kind of listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Door {
    /// The native line protocol (PROTOCOL.md): lanchat-client, telnet, nc.
    Native,
}

impl Door {
    /// The short name used in logs and in discovery answers.
    pub fn name(self) -> &'static str {
        match self {
            Door::Native => "tcp",
        }
    }

    /// The doors `config` opens, with their configured ports. The native door always
    /// exists; its port 0 means "any free port".
    pub(crate) fn configured(config: &Config) -> Vec<(Door, u16)> {
        vec![(Door::Native, config.port)]
    }

    /// How lines are written to a client of this door.
    pub(crate) fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Door::Native => Box::new(NativeEncoder),
        }
    }

    /// Serves one accepted connection of this door until it ends.
    pub(crate) fn serve(self, hub: &Hub, conn: &Arc<Conn>, ctx: &SessionContext<'_>) {
        match self {
            Door::Native => {
                let mut reader = LineReader::new(hub.config().max_line_bytes);
                session::serve(hub, conn, &mut reader, ctx);
            }
        }
    }

    /// The bytes that tell a client of this door it was refused (server full), before its
    /// connection is closed.
    pub(crate) fn refusal(self, reason: &str, text: &str) -> Vec<u8> {
        match self {
            Door::Native => Line::bye(reason, text).to_wire().into_bytes(),
        }
    }
}
