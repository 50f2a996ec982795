//! The IRC door: any IRC client (irssi, WeeChat, HexChat, a bot library) joins the same
//! server as lanchat-client and telnet users, and every IRC user is a lanchat user.
//!
//! - [`message`]: parsing and formatting IRC lines (pure).
//! - [`numeric`]: the numeric replies.
//! - [`translate`]: what each event (or native line) the hub pushes becomes for an IRC
//!   client (pure).
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

use super::encoder::{Encoder, FanOut};
use super::rules::ChatEvent;
use crate::protocol::{Kind, Line};
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use translate::{People, View};

/// The key of a client's view of an event for many, for a [`FanOut`]: everything of the
/// view the translation depends on besides the nick (see [`translate::shared_source`]), and
/// the world's generation, so that what is reused never outlives a change to the world.
fn view_key(generation: u64, is_source: bool, view: &View<'_>) -> u64 {
    let flags = u64::from(is_source)
        | u64::from(view.in_lobby) << 1
        | u64::from(view.server_time) << 2
        | u64::from(view.away_notify) << 3;
    // Generations count changes to the world: far below 2^59.
    (generation << 4) | flags
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

/// Turns what the hub pushes into IRC lines for one client.
#[derive(Default)]
pub struct IrcEncoder {
    /// The server's IRC state, attached when the session starts.
    world: OnceLock<Arc<World>>,
    /// The client's state.
    client: Mutex<ClientState>,
}

impl IrcEncoder {
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

impl IrcEncoder {
    /// Calls `f` with the client's view (as of now) and the world's people, under the
    /// client's lock; `today` is for stored messages only (empty for the rest).
    fn with_view<R>(
        &self,
        client: &ClientState,
        today: &str,
        f: impl FnOnce(&View<'_>, &WorldPeople<'_>) -> R,
    ) -> R {
        let world = self.world.get().map(Arc::as_ref);
        let view = View {
            nick: if client.nick.is_empty() {
                "*"
            } else {
                &client.nick
            },
            server: world.map_or("lanchat", |w| &w.server_name),
            lobby: world.map_or("#lanchat", |w| &w.lobby),
            in_lobby: client.in_lobby,
            server_time: client.server_time,
            away_notify: client.away_notify,
            today,
        };
        f(&view, &WorldPeople(world))
    }
}

/// Follows the client's chat session from the events that start and end it.
fn follow_session(client: &mut ClientState, event: &ChatEvent) {
    match event {
        ChatEvent::SessionStarted { with, .. } => client.partner = Some(with.clone()),
        ChatEvent::SessionDeclined { by: other, .. }
        | ChatEvent::SessionEndedBy { by: other, .. }
        | ChatEvent::SessionEnded { with: other, .. }
        | ChatEvent::SessionPartnerLeft { who: other, .. }
            if client.partner.as_ref() == Some(other) =>
        {
            client.partner = None;
        }
        _ => {}
    }
}

impl Encoder for IrcEncoder {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        let mut client = self.client.lock();
        // The replies to the client's own `accept`, `end` and `decline`.
        if line.kind == Kind::Session {
            match line.arg(0) {
                "started" => client.partner = Some(line.arg(2).to_string()),
                "ended" | "declined" if client.partner.as_deref() == Some(line.arg(2)) => {
                    client.partner = None;
                }
                _ => {}
            }
        }
        self.with_view(&client, "", |view, _| translate::line(line, view, out));
    }

    fn encode_event(&self, event: &ChatEvent, out: &mut Vec<u8>) {
        let mut client = self.client.lock();
        // WELCOME is replaced by the registration burst, which the encoder keeps ready.
        if let ChatEvent::Welcome(_) = event {
            if let Some(burst) = client.welcome.take() {
                out.extend_from_slice(&burst);
            }
            return;
        }
        follow_session(&mut client, event);
        // Today's date shortens the times of today's stored messages.
        let today = match event {
            ChatEvent::Mail(_) => crate::clock::format_utc(world::unix_now()),
            _ => String::new(),
        };
        self.with_view(&client, &today[..10.min(today.len())], |view, people| {
            translate::event(event, view, people, out);
        });
    }

    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        let event = fan_out.event();
        let Some(w) = self.world.get() else {
            return self.encode_event(event, out);
        };
        let mut client = self.client.lock();
        follow_session(&mut client, event);
        // Read before translating: a change to the world meanwhile moves it past what is
        // kept, so nothing older than the world is ever reused.
        let generation = w.generation();
        self.with_view(&client, "", |view, people| match event {
            ChatEvent::PresenceSummary { changes, more }
                if !translate::summary_names(changes, view.nick) =>
            {
                // A crowd's summary goes to everyone online: its changes are translated
                // once (a mask looked up and formatted per change per client was a
                // quarter of the server's time in the IRC login ramp), the NOTICE naming
                // the client is not.
                fan_out.shared(view_key(generation, false, view), out, |out| {
                    translate::summary_changes(changes, view, people, out);
                });
                translate::summary_notice(*more, view, out);
            }
            _ => match translate::shared_source(event) {
                Some(source) => {
                    let key = view_key(generation, view.nick == source, view);
                    fan_out.shared(key, out, |out| translate::event(event, view, people, out));
                }
                None => translate::event(event, view, people, out),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use crate::server::encoder::NativeEncoder;
    use crate::server::outbox::{Conn, Flusher, Limits};
    use crate::server::rules::PresenceChange;
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

    /// What `e`'s client gets of an event for many.
    fn encode(e: &IrcEncoder, fan_out: &FanOut<'_>) -> String {
        let mut out = Vec::new();
        e.encode_fan_out(fan_out, &mut out);
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
        let summary = ChatEvent::PresenceSummary {
            changes: vec![("cy".into(), "login"), ("dan".into(), "logout")],
            more: 5,
        };
        let summary = FanOut::new(&summary);
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
        assert_eq!(summary.kept(), 1, "translated once for ann and ben");
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
        let group = |notice| ChatEvent::GroupMessage {
            group: "cs101".into(),
            from: "bob".into(),
            text: "hi".into(),
            notice,
        };
        let (said, noticed) = (group(false), group(true));
        let group = FanOut::new(&said);
        let native = ":bob!bob@srv PRIVMSG #cs101 :hi\r\n";
        assert_eq!(encode(&ann, &group), native);
        assert_eq!(encode(&ben, &group), native);
        assert_eq!(encode(&bob, &group), "", "not to its sender");
        assert_eq!(encode(&ann, &group), native);
        assert_eq!(
            encode(&ben, &FanOut::new(&noticed)),
            ":bob!bob@srv NOTICE #cs101 :hi\r\n"
        );

        // bob comes in over IRC: his mask changes, and the lines with it.
        let conn = loopback_conn();
        world.register("bob", irc_user(&conn, "robert", "10.0.0.9"));
        let irc = ":bob!robert@10.0.0.9 PRIVMSG #cs101 :hi\r\n";
        assert_eq!(encode(&ann, &group), irc);
        assert_eq!(encode(&ben, &group), irc);

        // Broadcasts reach the lobby only.
        let bcast = ChatEvent::Broadcast {
            from: "bob".into(),
            text: "all".into(),
            notice: false,
        };
        let bcast = FanOut::new(&bcast);
        let said = ":bob!robert@10.0.0.9 PRIVMSG #lanchat :all\r\n";
        assert_eq!(encode(&ann, &bcast), said);
        assert_eq!(encode(&ben, &bcast), "");
        assert_eq!(encode(&ann, &bcast), said);

        // Away texts, for away-notify, follow their changes.
        ann.set_caps(false, true);
        let busy = ChatEvent::presence("bob", PresenceChange::Status(Status::Busy));
        let busy = FanOut::new(&busy);
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
