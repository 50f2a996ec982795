//! The doors into one server. Each door is a listening TCP port whose clients speak one
//! kind of wire format; every door leads to the same hub, so users who came in through
//! different doors see and message each other as if they had used the same one.

use super::encoder::Encoder;
use super::hub::Hub;
use super::irc::{self, IrcEncoder};
use super::native::{NativeReader, Terminal};
use super::outbox::Conn;
use super::session::{self, SessionContext};
use super::web;
use crate::config::{Config, OptionalPort};
use crate::protocol::Line;
use std::sync::Arc;

/// A connection's encoder as its door's session keeps it: the session changes what the
/// encoder does (the native door's switch to tagged lines, the IRC door's nick and
/// capabilities), so it holds the same encoder the connection writes with.
pub(crate) enum DoorEncoder {
    /// The native door's prose or tagged lines.
    Native(Arc<Terminal>),
    /// The IRC door's lines.
    Irc(Arc<IrcEncoder>),
    /// The web door's WebSocket frames (no state).
    Web,
}

impl DoorEncoder {
    /// The encoder for the connection.
    pub(crate) fn for_conn(&self) -> Box<dyn Encoder> {
        match self {
            DoorEncoder::Native(terminal) => Box::new(Arc::clone(terminal)),
            DoorEncoder::Irc(encoder) => Box::new(Arc::clone(encoder)),
            DoorEncoder::Web => Box::new(web::WsEncoder),
        }
    }

    /// The native door's encoder, if it is one.
    pub(crate) fn terminal(&self) -> Option<&Terminal> {
        match self {
            DoorEncoder::Native(terminal) => Some(terminal),
            _ => None,
        }
    }
}

/// One kind of listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Door {
    /// The native line protocol (PROTOCOL.md): prose for telnet and nc, tagged lines for
    /// lanchat-client and other programs that ask (see `native`).
    Native,
    /// IRC (RFC 1459/2812): irssi, WeeChat, HexChat, bots.
    Irc,
    /// HTTP: the browser client's page, and its WebSocket carrying native lines (`web`).
    Web,
    /// The native line protocol over TLS (`tls_port`): lanchat-client, `openssl s_client`.
    NativeTls,
    /// IRC over TLS (`irc_tls_port`): `irssi -c HOST -p 6697 -tls`.
    IrcTls,
    /// The web door over TLS (`web_tls`): HTTPS and WSS on `web_port`.
    WebTls,
}

impl Door {
    /// The short name used in logs and in discovery answers.
    pub fn name(self) -> &'static str {
        match self {
            Door::Native => "tcp",
            Door::Irc => "irc",
            Door::Web => "web",
            Door::NativeTls => "tls",
            Door::IrcTls => "ircs",
            Door::WebTls => "webs",
        }
    }

    /// Whether this door speaks TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Door::NativeTls | Door::IrcTls | Door::WebTls)
    }

    /// The doors `config` opens, with their configured ports. The native door always
    /// exists; its port 0 means "any free port". The optional doors are closed, on a port,
    /// or on any free port (`OptionalPort`).
    pub(crate) fn configured(config: &Config) -> Vec<(Door, u16)> {
        let mut doors = vec![(Door::Native, config.port)];
        doors.extend(config.irc_port.to_bind().map(|port| (Door::Irc, port)));
        if config.irc_port != OptionalPort::Off {
            doors.extend(
                config
                    .irc_tls_port
                    .to_bind()
                    .map(|port| (Door::IrcTls, port)),
            );
        }
        let web = if config.web_tls {
            Door::WebTls
        } else {
            Door::Web
        };
        doors.extend(config.web_port.to_bind().map(|port| (web, port)));
        doors.extend(
            config
                .tls_port
                .to_bind()
                .map(|port| (Door::NativeTls, port)),
        );
        doors
    }

    /// How lines are written to a new client of this door.
    pub(crate) fn encoder(self) -> DoorEncoder {
        match self {
            Door::Native | Door::NativeTls => DoorEncoder::Native(Arc::new(Terminal::new())),
            Door::Irc | Door::IrcTls => DoorEncoder::Irc(Arc::new(IrcEncoder::default())),
            Door::Web | Door::WebTls => DoorEncoder::Web,
        }
    }

    /// Serves one accepted connection of this door until it ends; `encoder` is the one
    /// its connection was given.
    pub(crate) fn serve(
        self,
        hub: &Hub,
        conn: &Arc<Conn>,
        ctx: &SessionContext<'_>,
        encoder: &DoorEncoder,
    ) {
        match encoder {
            DoorEncoder::Native(terminal) => {
                let max = hub.config().max_line_bytes;
                let mut reader = NativeReader::new(max, Arc::clone(terminal));
                session::serve(hub, conn, &mut reader, ctx);
            }
            DoorEncoder::Irc(encoder) => irc::serve(hub, conn, ctx, ctx.irc, encoder),
            DoorEncoder::Web => web::serve(hub, conn, ctx),
        }
    }

    /// The bytes that tell a client of this door it was refused (server full), before its
    /// connection is closed.
    pub(crate) fn refusal(self, reason: &str, text: &str) -> Vec<u8> {
        match self {
            // Before anyone could ask for tagged lines: what a person at telnet reads.
            Door::Native => super::prose::render(&Line::bye(reason, text)).into_bytes(),
            Door::Irc => format!("ERROR :Closing Link: * ({reason}: {text})\r\n").into_bytes(),
            Door::Web => web::refusal(text),
            // Plain bytes would only break the client's handshake: it sees the close.
            Door::NativeTls | Door::IrcTls | Door::WebTls => Vec::new(),
        }
    }
}
