//! The IRC door: any IRC client (irssi, WeeChat, HexChat, a bot library) joins the same
//! server as lanchat-client and telnet users, and every IRC user is a lanchat user.
//!
//! - [`message`]: parsing and formatting IRC lines (pure).
//! - [`numeric`]: the numeric replies.
//! - [`translate`]: what each line the hub pushes becomes for an IRC client (pure).
//! - [`world`]: what this door keeps beside the hub (USER details, away texts, channel
//!   operators and topics).
//! - [`session`]: registration and the command loop of one connection, on the hub's rules.
//!
//! PROTOCOL.md's section on the IRC door describes the mapping.

mod message;
mod numeric;
mod session;
mod translate;
mod world;

pub use session::serve;
pub use world::World;

use super::conn::{Conn, Encoder};
use crate::protocol::{Kind, Line};
use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use translate::{People, View};

thread_local! {
    /// Set while this thread hands the hub an IRC NOTICE: the hub knows only messages, and
    /// delivers live ones from the sender's own thread, so the recipients' IRC encoders,
    /// called meanwhile on this thread, can still write NOTICE rather than PRIVMSG.
    static SENDING_NOTICE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a hub call delivering a user's text) with NOTICE semantics if `notice`.
fn as_notice<T>(notice: bool, f: impl FnOnce() -> T) -> T {
    SENDING_NOTICE.with(|n| n.set(notice));
    let result = f();
    SENDING_NOTICE.with(|n| n.set(false));
    result
}

/// What an IRC connection's encoder knows about its client: set by the session at
/// registration and on NICK, CAP, JOIN and PART; read for every line written.
#[derive(Default)]
struct ClientState {
    /// The client's nick (`*` until registered).
    nick: String,
    /// `server-time` was negotiated.
    server_time: bool,
    /// `away-notify` was negotiated.
    away_notify: bool,
    /// The client is in the lobby channel.
    in_lobby: bool,
    /// The registration burst (001 to the MOTD, lobby JOIN and NAMES), written in place of
    /// the hub's WELCOME so that it comes before the offline mail and any live line.
    welcome: Option<Vec<u8>>,
    /// The partner of a started chat session: PRIVMSGs to them are session lines.
    partner: Option<String>,
}

/// Turns the hub's lines into IRC lines for one client.
#[derive(Default)]
pub struct IrcEncoder {
    /// The server's IRC state, attached when the session starts.
    world: OnceLock<Arc<World>>,
    /// The client's state.
    client: Mutex<ClientState>,
}

impl IrcEncoder {
    /// The IRC encoder of a connection of the IRC door.
    fn of(conn: &Conn) -> Option<&IrcEncoder> {
        conn.encoder().as_any()?.downcast_ref::<IrcEncoder>()
    }

    fn set_nick(&self, nick: &str) {
        self.client.lock().nick = nick.to_string();
    }

    fn partner(&self) -> Option<String> {
        self.client.lock().partner.clone()
    }

    fn clear_partner(&self) {
        self.client.lock().partner = None;
    }

    fn in_lobby(&self) -> bool {
        self.client.lock().in_lobby
    }

    fn set_in_lobby(&self, yes: bool) {
        self.client.lock().in_lobby = yes;
    }

    fn set_caps(&self, server_time: bool, away_notify: bool) {
        let mut c = self.client.lock();
        c.server_time = server_time;
        c.away_notify = away_notify;
    }

    fn set_welcome(&self, burst: Option<Vec<u8>>) {
        self.client.lock().welcome = burst;
    }
}

/// The world as [`People`] for the translation; a connection refused before its session
/// started has none, and shows users by name.
struct Directory<'a>(Option<&'a World>);

impl People for Directory<'_> {
    fn mask(&self, name: &str) -> String {
        match self.0 {
            Some(w) => w.mask(name),
            None => format!("{name}!{name}@lanchat"),
        }
    }
    fn quit_reason(&self, name: &str) -> Option<String> {
        self.0?.quit_reason(name)
    }
    fn renamed_to(&self, name: &str) -> Option<String> {
        self.0?.renamed_to(name)
    }
    fn is_renaming(&self, name: &str) -> bool {
        self.0.is_some_and(|w| w.is_renaming(name))
    }
    fn away(&self, name: &str) -> Option<String> {
        self.0?.away(name)
    }
}

impl Encoder for IrcEncoder {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        let mut client = self.client.lock();
        match line.kind {
            Kind::Welcome => {
                if let Some(burst) = client.welcome.take() {
                    out.extend_from_slice(&burst);
                }
                return;
            }
            Kind::Session => match line.arg(0) {
                "started" => client.partner = Some(line.arg(2).to_string()),
                "ended" | "declined" if client.partner.as_deref() == Some(line.arg(2)) => {
                    client.partner = None;
                }
                _ => {}
            },
            _ => {}
        }
        let world = self.world.get().map(Arc::as_ref);
        let today = if line.kind == Kind::Mail {
            crate::clock::format_utc(world::unix_now())
        } else {
            String::new()
        };
        let nick = if client.nick.is_empty() {
            "*"
        } else {
            &client.nick
        };
        let view = View {
            nick,
            server: world.map_or("lanchat", |w| &w.server_name),
            lobby: world.map_or("#lanchat", |w| &w.lobby),
            in_lobby: client.in_lobby,
            server_time: client.server_time,
            away_notify: client.away_notify,
            today: &today[..10.min(today.len())],
            notice: SENDING_NOTICE.with(Cell::get),
        };
        translate::translate(line, &view, &Directory(world), out);
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
