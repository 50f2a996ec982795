//! Accepting connections: one loop per door, the limits that refuse a connection before it
//! gets a thread, the socket options every connection has, the connection thread itself, and
//! the goodbye at shutdown.

use super::door::Door;
use super::encoder::Encoder;
use super::hub::Hub;
use super::irc::IrcEncoder;
use super::native::{NativeReader, Terminal};
use super::outbox::{self, Conn};
use super::session::SessionContext;
use super::tls_session::TlsSession;
use super::{capacity, irc, session, Core, ServerShared, PROTOCOL_VERSION};
use super::{prose, web};
use crate::protocol::Line;
use socket2::{SockRef, TcpKeepalive};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack of each connection thread: enough for the session code, small enough that ten
/// thousand users cost little memory.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// Kernel send buffer per connection (Linux doubles it for bookkeeping).
const SEND_BUFFER_BYTES: usize = 128 * 1024;
/// How long shutdown waits for connection threads to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl Core {
    /// Accepts connections on one door until shutdown.
    pub(super) fn accept_loop(&self, door: Door, listener: &TcpListener) {
        loop {
            // accept() hands back the peer's address: no getpeername per connection.
            let accepted = listener.accept();
            if self.shared.shutting_down.load(Ordering::Acquire) {
                break;
            }
            match accepted {
                Ok((stream, peer)) => self.start_connection(door, stream, peer),
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    fn start_connection(&self, door: Door, stream: TcpStream, peer: SocketAddr) {
        #[cfg(not(target_os = "linux"))]
        set_connection_options(&SockRef::from(&stream));
        let config = self.hub.config();
        let (total, from_ip) = {
            let conns = self.shared.conns.lock();
            let from_ip = conns.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            (conns.by_id.len(), from_ip)
        };
        if total >= config.max_clients {
            log::warn!(
                "refusing {peer}: max_clients ({}) reached",
                config.max_clients
            );
            refuse(
                stream,
                &refusal(door, "full", "The server is full; please try again later."),
            );
            return;
        }
        if from_ip >= config.max_clients_per_ip {
            log::warn!(
                "refusing {peer}: max_clients_per_ip ({}) reached",
                config.max_clients_per_ip
            );
            refuse(
                stream,
                &refusal(
                    door,
                    "full",
                    "Too many connections from your address; please try again later.",
                ),
            );
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let limits = outbox::Limits {
            outbox_bytes: config.max_outbox_bytes,
            stall: Duration::from_secs(config.slow_reader_timeout_secs),
        };
        let tls = match (door.is_tls(), &self.identity) {
            (true, Some(identity)) => {
                match TlsSession::new(Arc::clone(&identity.config), limits.outbox_bytes) {
                    Ok(session) => Some(session),
                    Err(e) => {
                        log::warn!("refusing {peer}: cannot start TLS: {e}");
                        return;
                    }
                }
            }
            _ => None,
        };
        let encoder = DoorEncoder::for_door(door);
        let conn = Conn::new_tls(
            id,
            stream,
            peer,
            &self.flusher,
            limits,
            encoder.for_conn(),
            tls,
        );
        self.shared.conns.lock().insert(Arc::clone(&conn));
        let hub = self.hub.clone();
        let shared = Arc::clone(&self.shared);
        let irc = Arc::clone(&self.irc);
        let spawned =
            capacity::thread::spawn_detached(&format!("conn-{id}"), CONNECTION_STACK_BYTES, {
                let conn = Arc::clone(&conn);
                move || {
                    let _watch = shared.panics.watch();
                    connection_thread(door, &encoder, &hub, &conn, &shared, &irc)
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for {peer}: {e}");
            self.shared.conns.lock().remove(id);
            conn.close_with(&Line::bye(
                "busy",
                "The server cannot take more users right now.",
            ));
        }
    }

    /// Tells every connection the server is going down and waits for their threads.
    pub(super) fn stop_all(&self) {
        let conns: Vec<Arc<Conn>> = self.shared.conns.lock().by_id.values().cloned().collect();
        log::info!("shutting down: notifying {} connection(s)", conns.len());
        let bye = Line::bye("shutdown", "The server is going down. Goodbye!");
        for c in &conns {
            c.send(&bye);
        }
        for c in &conns {
            c.wait_flushed(Duration::from_millis(200));
            c.close();
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut guard = self.shared.conns.lock();
        while !guard.by_id.is_empty() {
            if self
                .shared
                .conn_ended
                .wait_until(&mut guard, deadline)
                .timed_out()
            {
                log::warn!(
                    "{} connection thread(s) still running at exit",
                    guard.by_id.len()
                );
                break;
            }
        }
    }
}

/// The body of a connection's thread: serves it, then forgets it. Not inlined into the
/// thread's start, so that the frames under a waiting connection stay small (see
/// [`memory`]).
#[inline(never)]
fn connection_thread(
    door: Door,
    encoder: &DoorEncoder,
    hub: &Hub,
    conn: &Arc<Conn>,
    shared: &ServerShared,
    irc: &Arc<irc::World>,
) {
    let painted = capacity::gauge::paint(&shared.stack_gauge);
    let ctx = session::SessionContext {
        ticks: &*shared.ticks,
        connected: shared.ticks.now(),
        shutting_down: &shared.shutting_down,
        version: PROTOCOL_VERSION,
        irc,
        door,
        terminal: encoder.terminal(),
    };
    encoder.serve(hub, conn, &ctx);
    if let Some(painted) = painted {
        shared.stack_gauge.record(painted.finish());
    }
    shared.conns.lock().remove(conn.id);
    shared.conn_ended.notify_all();
}

/// TCP_NODELAY, keepalive, and a fixed kernel send buffer: bounded memory per user
/// (autotuning could give each stuck client megabytes), and a client that stops reading
/// shows up in its outbox quickly, where the slow-reader rules can see it.
pub(super) fn set_connection_options(sock: &SockRef<'_>) {
    let _ = sock.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_send_buffer_size(SEND_BUFFER_BYTES);
}

/// Writes a refusal to a connection that will not get a thread, and closes it. What the
/// client sent already (a program's `protocol lanchat/1`, sent as it connects) is read
/// first: closing with it unread would reset the connection, which can destroy the refusal
/// before the client has read it.
fn refuse(mut stream: TcpStream, refusal: &[u8]) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(refusal);
    if stream.set_nonblocking(true).is_ok() {
        let mut buf = [0u8; 1024];
        for _ in 0..4 {
            match std::io::Read::read(&mut stream, &mut buf) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A connection's encoder as its door's session keeps it: the session changes what the
/// encoder does (the native door's switch to tagged lines, the IRC door's nick and
/// capabilities), so it holds the same encoder the connection writes with.
enum DoorEncoder {
    /// The native door's prose or tagged lines.
    Native(Arc<Terminal>),
    /// The IRC door's lines.
    Irc(Arc<IrcEncoder>),
    /// The web door's WebSocket frames (no state).
    Web,
}

impl DoorEncoder {
    /// How lines are written to a new client of this door.
    fn for_door(door: Door) -> DoorEncoder {
        match door {
            Door::Native | Door::NativeTls => DoorEncoder::Native(Arc::new(Terminal::new())),
            Door::Irc | Door::IrcTls => DoorEncoder::Irc(Arc::new(IrcEncoder::default())),
            Door::Web | Door::WebTls => DoorEncoder::Web,
        }
    }

    /// Serves one accepted connection of this door until it ends (this is the encoder its
    /// connection was given).
    fn serve(&self, hub: &Hub, conn: &Arc<Conn>, ctx: &SessionContext<'_>) {
        match self {
            DoorEncoder::Native(terminal) => {
                let max = hub.config().max_line_bytes;
                let mut reader = NativeReader::new(max, Arc::clone(terminal));
                session::serve(hub, conn, &mut reader, ctx);
            }
            DoorEncoder::Irc(encoder) => irc::serve(hub, conn, ctx, ctx.irc, encoder),
            DoorEncoder::Web => web::serve(hub, conn, ctx),
        }
    }

    /// The encoder for the connection.
    fn for_conn(&self) -> Box<dyn Encoder> {
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

/// The bytes that tell a client of this door it was refused (server full), before its
/// connection is closed.
fn refusal(door: Door, reason: &str, text: &str) -> Vec<u8> {
    match door {
        // Before anyone could ask for tagged lines: what a person at telnet reads.
        Door::Native => prose::render(&Line::bye(reason, text)).into_bytes(),
        Door::Irc => format!("ERROR :Closing Link: * ({reason}: {text})\r\n").into_bytes(),
        Door::Web => web::refusal(text),
        // Plain bytes would only break the client's handshake: it sees the close.
        Door::NativeTls | Door::IrcTls | Door::WebTls => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Config;
    use crate::credentials::Credentials;
    use crate::server::Server;
    use std::net::IpAddr;

    #[test]
    fn accepted_connections_have_the_connection_options() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            port: 0,
            web_port: crate::config::OptionalPort::Off,
            irc_port: crate::config::OptionalPort::Off,
            discovery: false,
            bind: IpAddr::from([127, 0, 0, 1]),
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let server =
            Server::bind_with(config, Credentials::default(), Arc::new(SystemClock)).unwrap();
        let addr = server.local_addr();
        let (_, listener) = &server.listeners[0];
        let _client = TcpStream::connect(addr).unwrap();
        let (stream, _) = listener.accept().unwrap();
        #[cfg(not(target_os = "linux"))]
        set_connection_options(&SockRef::from(&stream));
        let sock = SockRef::from(&stream);
        assert!(sock.nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(60));
        // Linux reports twice the size asked (its bookkeeping).
        #[cfg(target_os = "linux")]
        assert_eq!(sock.send_buffer_size().unwrap(), 2 * SEND_BUFFER_BYTES);
    }
}
