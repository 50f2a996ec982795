//! The IRC door: any IRC client (irssi, WeeChat, HexChat, a bot library) joins the same
//! server as lanchat-client and telnet users, and every IRC user is a lanchat user.
//!
//! - [`message`]: parsing and formatting IRC lines (pure).
//! - [`numeric`]: the numeric replies.
//! - [`translate`]: what each line the hub pushes becomes for an IRC client (pure).
//! - [`world`]: what this door keeps beside the hub (USER details, away texts, channel
//!   operators and topics).
//! - [`session`]: registration and the command loop of one connection, on the hub's rules;
//!   one file per family of commands (register, messages, channel, queries, modes).
//!
//! PROTOCOL.md's section on the IRC door describes the mapping.

mod message;
mod numeric;
mod session;
mod translate;
mod world;

pub use session::serve;
pub use world::World;

use super::encoder::Encoder;
use super::outbox::Conn;
use crate::protocol::{Kind, Line};
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, OnceLock};
use translate::{People, View};

thread_local! {
    /// Set while this thread hands the hub an IRC NOTICE: the hub knows only messages, and
    /// delivers live ones from the sender's own thread, so the recipients' IRC encoders,
    /// called meanwhile on this thread, can still write NOTICE rather than PRIVMSG.
    static SENDING_NOTICE: Cell<bool> = const { Cell::new(false) };

    /// The IRC bytes of the last line for many that this thread translated: a group
    /// message or broadcast reaching a crowd is translated once, not once per member.
    static SHARED: RefCell<SharedCache> = RefCell::new(SharedCache::default());
}

/// A line for many (see [`translate::shared_source`]) as translated for each distinct view,
/// valid while the world's generation stays the same. A fan-out's recipients come one after
/// the other, so one line is kept, with a few views (clients differ in capabilities).
#[derive(Default)]
struct SharedCache {
    generation: u64,
    line: Option<Line>,
    views: Vec<(ViewKey, Vec<u8>)>,
}

/// What of a client's view the translation of a line for many depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ViewKey {
    is_source: bool,
    in_lobby: bool,
    server_time: bool,
    away_notify: bool,
    notice: bool,
}

/// Most views kept per line.
const SHARED_VIEWS: usize = 4;

impl SharedCache {
    /// The bytes cached for this line, generation and view.
    fn get(&self, generation: u64, line: &Line, key: ViewKey) -> Option<&[u8]> {
        if self.generation != generation || self.line.as_ref() != Some(line) {
            return None;
        }
        self.views
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, b)| b.as_slice())
    }

    fn put(&mut self, generation: u64, line: &Line, key: ViewKey, bytes: &[u8]) {
        if self.generation != generation || self.line.as_ref() != Some(line) {
            self.generation = generation;
            self.line = Some(line.clone());
            self.views.clear();
        }
        if self.views.len() < SHARED_VIEWS {
            self.views.push((key, bytes.to_vec()));
        }
    }
}

/// Appends the bytes `translate` appends for `line` in a view like `key`, translating only
/// if this thread has not just done so for another client of this generation of the world.
fn shared(
    w: &World,
    line: &Line,
    key: ViewKey,
    out: &mut Vec<u8>,
    translate: impl FnOnce(&mut Vec<u8>),
) {
    // Read before translating: a change to the world meanwhile moves it past what is
    // cached, so nothing older than the world is ever reused.
    let generation = w.generation();
    SHARED.with(|cache| {
        if let Some(bytes) = cache.borrow().get(generation, line, key) {
            out.extend_from_slice(bytes);
            return;
        }
        let start = out.len();
        translate(out);
        cache.borrow_mut().put(generation, line, key, &out[start..]);
    });
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
struct WorldPeople<'a>(Option<&'a World>);

impl People for WorldPeople<'_> {
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
        let people = WorldPeople(world);
        let Some(w) = world else {
            translate::translate(line, &view, &people, out);
            return;
        };
        let key = |is_source| ViewKey {
            is_source,
            in_lobby: view.in_lobby,
            server_time: view.server_time,
            away_notify: view.away_notify,
            notice: view.notice,
        };
        if line.kind == Kind::Presences && !translate::summary_names(line, view.nick) {
            // A crowd's summary goes to everyone online: its changes are translated once
            // (a mask looked up and formatted per change per client was a quarter of the
            // server's time in the IRC login ramp), the NOTICE naming the client is not.
            shared(w, line, key(false), out, |out| {
                translate::presences_changes(line, &view, &people, out);
            });
            translate::presences_notice(line, &view, out);
            return;
        }
        let Some(source) = translate::shared_source(line) else {
            translate::translate(line, &view, &people, out);
            return;
        };
        shared(w, line, key(view.nick == source), out, |out| {
            translate::translate(line, &view, &people, out);
        });
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::encoder::NativeEncoder;
    use crate::server::outbox::{Flusher, Limits};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;
    use world::IrcUser;

    fn client(world: &Arc<World>, nick: &str, in_lobby: bool) -> IrcEncoder {
        let e = IrcEncoder::default();
        let _ = e.world.set(Arc::clone(world));
        e.set_nick(nick);
        e.set_in_lobby(in_lobby);
        e
    }

    fn encode(e: &IrcEncoder, line: &Line) -> String {
        let mut out = Vec::new();
        e.encode(line, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn irc_user(conn: &Arc<Conn>, username: &str, host: &str) -> IrcUser {
        IrcUser {
            conn: Arc::clone(conn),
            username: username.into(),
            realname: username.into(),
            host: host.into(),
            signon: 0,
            active: Arc::new(AtomicU64::new(0)),
            away: None,
            quit: None,
            renamed_to: None,
            renaming: false,
        }
    }

    /// A connection (id 7) on a loopback socket, for a user of the world.
    fn loopback_conn() -> Arc<Conn> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let peer = stream.local_addr().unwrap();
        let limits = Limits {
            outbox_bytes: 1 << 16,
            stall: Duration::from_secs(1),
        };
        Conn::new(
            7,
            stream,
            peer,
            &Flusher::new(),
            limits,
            Box::new(NativeEncoder),
        )
    }

    /// A crowd's presence summary is translated once for everyone it does not name, but
    /// each client's NOTICE is addressed to them, the one it names does not see their own
    /// change, and a change to the world is seen at once.
    #[test]
    fn a_presence_summary_is_shared_except_its_notice_and_the_named_client() {
        let world = Arc::new(World::new("srv", "#lanchat", ""));
        let (ann, ben, cy) = (
            client(&world, "ann", true),
            client(&world, "ben", true),
            client(&world, "cy", true),
        );
        let summary = Line::new(Kind::Presences, &["cy:login,dan:logout", "5"], "*** ***");
        let changes = ":cy!cy@srv JOIN #lanchat\r\n:dan!dan@srv QUIT :Left the chat\r\n";
        let notice = |to: &str| {
            format!(
                ":*lanchat!lanchat@srv NOTICE {to} :5 more users joined, left or changed \
                 status; /names #lanchat lists who is here.\r\n"
            )
        };
        assert_eq!(
            encode(&ann, &summary),
            format!("{changes}{}", notice("ann"))
        );
        assert_eq!(
            encode(&ben, &summary),
            format!("{changes}{}", notice("ben"))
        );
        assert_eq!(
            encode(&cy, &summary),
            format!(":dan!dan@srv QUIT :Left the chat\r\n{}", notice("cy"))
        );
        assert_eq!(
            encode(&ann, &summary),
            format!("{changes}{}", notice("ann"))
        );
        let outside = client(&world, "eve", false);
        assert_eq!(
            encode(&outside, &summary),
            ":dan!dan@srv QUIT :Left the chat\r\n",
            "no JOIN or NOTICE outside the lobby"
        );

        let conn = loopback_conn();
        world.register("cy", irc_user(&conn, "cyril", "10.0.0.3"));
        assert_eq!(
            encode(&ben, &summary),
            format!(
                ":cy!cyril@10.0.0.3 JOIN #lanchat\r\n:dan!dan@srv QUIT :Left the chat\r\n{}",
                notice("ben")
            )
        );
    }

    /// A line for many is translated once per fan-out, and what is reused never outlives a
    /// change to the world it was translated from.
    #[test]
    fn a_line_for_many_is_shared_between_clients_and_follows_the_world() {
        let world = Arc::new(World::new("srv", "#lanchat", ""));
        let (ann, ben, bob) = (
            client(&world, "ann", true),
            client(&world, "ben", false),
            client(&world, "bob", true),
        );
        let group = Line::new(Kind::Group, &["cs101", "bob"], "hi");
        let native = ":bob!bob@srv PRIVMSG #cs101 :hi\r\n";
        assert_eq!(encode(&ann, &group), native);
        assert_eq!(encode(&ben, &group), native);
        assert_eq!(encode(&bob, &group), "", "not to its sender");
        assert_eq!(encode(&ann, &group), native);
        assert_eq!(
            as_notice(true, || encode(&ben, &group)),
            ":bob!bob@srv NOTICE #cs101 :hi\r\n"
        );

        // bob comes in over IRC: his mask changes, and the lines with it.
        let conn = loopback_conn();
        world.register("bob", irc_user(&conn, "robert", "10.0.0.9"));
        let irc = ":bob!robert@10.0.0.9 PRIVMSG #cs101 :hi\r\n";
        assert_eq!(encode(&ann, &group), irc);
        assert_eq!(encode(&ben, &group), irc);

        // Broadcasts reach the lobby only.
        let bcast = Line::new(Kind::Bcast, &["bob"], "all");
        let said = ":bob!robert@10.0.0.9 PRIVMSG #lanchat :all\r\n";
        assert_eq!(encode(&ann, &bcast), said);
        assert_eq!(encode(&ben, &bcast), "");
        assert_eq!(encode(&ann, &bcast), said);

        // Away texts, for away-notify, follow their changes.
        ann.set_caps(false, true);
        let busy = Line::new(Kind::Presence, &["bob", "busy"], "*** ***");
        world.update("bob", 7, |u| u.away = Some("lunch".into()));
        assert_eq!(encode(&ann, &busy), ":bob!robert@10.0.0.9 AWAY :lunch\r\n");
        assert_eq!(encode(&ben, &busy), "", "no away-notify");
        world.update("bob", 7, |u| u.away = Some("meeting".into()));
        assert_eq!(
            encode(&ann, &busy),
            ":bob!robert@10.0.0.9 AWAY :meeting\r\n"
        );
        world.unregister("bob", 7);
        assert_eq!(encode(&ann, &group), native);
    }
}
