//! The doors into one server. Each door is a listening TCP port whose clients speak one
//! kind of wire format; every door leads to the same hub, so users who came in through
//! different doors see and message each other as if they had used the same one.

use crate::config::{Config, OptionalPort};

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
}
