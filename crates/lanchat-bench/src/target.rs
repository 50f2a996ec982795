//! The servers under test, each started fresh for a scenario on 127.0.0.1 and a free port,
//! with its own temporary directory and configuration, pinned to a CPU when asked; and what
//! /proc says about it (read in `proc_stats.rs`).

use super::baseline::{self, Baseline};
use super::net;
use super::proc_stats::{read_proc, ProcStats};
use super::wire::{Dialect, User};
use lanchat::tls::{Fingerprint, Identity, PinVerifier};
use rustls::ClientConfig;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kind of server the benchmark can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// lanchat-server (release binary), its native door.
    Lanchat,
    /// lanchat-server's IRC door (`auth = "open"`, as the IRC peers check no password).
    LanchatIrc,
    /// ngircd from Debian.
    Ngircd,
    /// inspircd from Debian.
    Inspircd,
    /// The bare one-thread relay ([`baseline`]).
    Relay,
    /// The bare thread-per-client relay ([`baseline::serve_threads`]).
    ThreadRelay,
    /// The bare echo server (TCP ping-pong).
    Echo,
}

impl ServerKind {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Lanchat => "lanchat",
            ServerKind::LanchatIrc => "lanchat-irc",
            ServerKind::Ngircd => "ngircd",
            ServerKind::Inspircd => "inspircd",
            ServerKind::Relay | ServerKind::Echo => "limit",
            ServerKind::ThreadRelay => "limit-threads",
        }
    }

    /// How the generator speaks to it.
    pub fn dialect(self) -> Dialect {
        match self {
            ServerKind::Lanchat => Dialect::Lanchat,
            ServerKind::LanchatIrc | ServerKind::Ngircd | ServerKind::Inspircd => Dialect::Irc,
            ServerKind::Relay | ServerKind::Echo | ServerKind::ThreadRelay => Dialect::Relay,
        }
    }

    /// Most logins to keep in flight: ngircd's listen backlog is 10; inspircd finishes a
    /// registration only on its once-a-second timer, so it needs many in flight.
    pub fn login_window(self) -> usize {
        match self {
            ServerKind::Ngircd => 8,
            ServerKind::Inspircd => 512,
            _ => 64,
        }
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Which server.
    pub kind: ServerKind,
    /// The lanchat-server binary.
    pub lanchat_bin: PathBuf,
    /// The bench binary itself (runs the baselines as a separate process).
    pub bench_bin: Option<PathBuf>,
    /// Most clients the server accepts (the capacity scenario sets it to its user count).
    pub max_clients: usize,
    /// Users the server knows (lanchat credentials).
    pub users: usize,
    /// Give lanchat argon2id hashes instead of plaintext passwords.
    pub argon2: bool,
    /// Pin the server to this CPU (`taskset`), if set.
    pub cpu: Option<usize>,
    /// Measure the server's TLS door (lanchat's native one, ngircd's SSL port) instead of
    /// its plain one.
    pub tls: bool,
}

/// A server running for one scenario; stopped and cleaned up when dropped.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How to connect when `addr` is a TLS door: trusting the server's key alone.
    pub tls: Option<Arc<ClientConfig>>,
    /// Its process, for /proc statistics (None for an in-process server).
    pub pid: Option<u32>,
    child: Option<Child>,
    dir: Option<PathBuf>,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first (lanchat says goodbye), SIGKILL if it lingers.
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Running {
    /// A server running inside this process on `thread` (tests): when dropped, `stop` is
    /// called and the thread joined.
    pub fn in_process(
        addr: SocketAddr,
        stop: Box<dyn FnOnce() + Send>,
        thread: std::thread::JoinHandle<()>,
    ) -> Running {
        Running {
            addr,
            tls: None,
            pid: None,
            child: None,
            dir: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The same server, reached over TLS with `config` (its `addr` is a TLS door).
    pub fn with_tls(mut self, config: Arc<ClientConfig>) -> Running {
        self.tls = Some(config);
        self
    }

    /// Memory, threads and CPU time of the server process, if it is one.
    pub fn stats(&self) -> Option<ProcStats> {
        self.pid.and_then(|p| read_proc(p).ok())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }
}

/// A fresh private directory under the system temp dir.
fn temp_dir(kind: ServerKind) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lanchat-bench-{}-{}-{}",
        kind.name(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, child: &mut Child, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(io::Error::other(format!(
                "server exited at start: {status}"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("nothing listens on {addr}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command, under `taskset -c CPU` when pinning.
fn command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) if has_taskset() => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

/// Whether `taskset` is installed.
pub fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a server as described.
pub fn start(spec: &Spec) -> io::Result<Running> {
    let dir = temp_dir(spec.kind)?;
    // The key of a TLS door, made before the server starts (lanchat finds it in its data
    // directory; ngircd is given the files), so the generator can pin it.
    let identity = if spec.tls {
        match tls_identity(&dir.join("data")) {
            Ok(identity) => Some(identity),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
    } else {
        None
    };
    let result = match (spec.kind, spec.tls) {
        (ServerKind::Lanchat, _) | (ServerKind::LanchatIrc, false) => start_lanchat(spec, &dir),
        (ServerKind::Ngircd, _) => start_ngircd(spec, &dir),
        (ServerKind::Inspircd, false) => start_inspircd(spec, &dir),
        (ServerKind::Relay | ServerKind::Echo | ServerKind::ThreadRelay, false) => {
            start_baseline(spec, &dir)
        }
        (kind, true) => Err(io::Error::other(format!(
            "{} has no TLS door here",
            kind.name()
        ))),
    };
    match result {
        Ok((child, addr)) => {
            // Let the server see the start-up probe connection close before anyone counts.
            std::thread::sleep(Duration::from_millis(200));
            Ok(Running {
                addr,
                tls: identity.map(|i| tls_client(&i.fingerprint)),
                pid: Some(child.id()),
                child: Some(child),
                dir: Some(dir),
                stop: None,
                thread: None,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// A TLS key and self-signed certificate made in `dir` (created if needed), as
/// lanchat-server makes its own on first start.
fn tls_identity(dir: &Path) -> io::Result<Identity> {
    std::fs::create_dir_all(dir)?;
    Identity::load_or_create(dir, None).map_err(|e| io::Error::other(e.to_string()))
}

/// The credentials file for `n` benchmark users (`u<i> pw<i>`), plaintext or argon2id.
pub fn credentials_text(n: usize, argon2_hash: Option<&str>) -> String {
    let mut text = String::with_capacity(n * 24);
    for i in 0..n {
        let u = User::numbered(i);
        let _ = match argon2_hash {
            Some(h) => writeln!(text, "{} {h}", u.name),
            None => writeln!(text, "{} {}", u.name, u.password),
        };
    }
    text
}

/// lanchat's configuration for a benchmark: loopback only, the native door alone (no web or
/// IRC door, no discovery answers), no rate limit or idle timeouts, every client from
/// 127.0.0.1 allowed (and, in open mode, free to make as many users and groups as it likes).
pub fn lanchat_config(max_clients: usize) -> String {
    format!(
        "port = 0\nbind = \"127.0.0.1\"\nweb_port = 0\nirc_port = 0\ndiscovery = false\n\
         tls_port = 0\nirc_tls_port = 0\n\
         credentials = \"credentials.txt\"\ndata_dir = \"data\"\n\
         auth = \"password\"\nmax_clients = {max_clients}\nmax_clients_per_ip = {max_clients}\n\
         max_messages_per_sec = 0\nidle_timeout_secs = 0\nheartbeat_timeout_secs = 0\n\
         login_timeout_secs = 120\nslow_reader_timeout_secs = 30\nmax_outbox_bytes = 8388608\n\
         max_login_attempts = 1000\nmax_new_users_per_ip = 0\nmax_groups_per_ip = 0\n"
    )
}

/// lanchat's configuration for a benchmark of its IRC door: [`lanchat_config`] with the IRC
/// door on any free port (the banner names it) and `auth = "open"` (any nick registers
/// without `PASS`, as on ngircd and inspircd, which check no password either).
pub fn lanchat_irc_config(max_clients: usize) -> String {
    lanchat_config(max_clients)
        .replace("irc_port = 0\n", "irc_port = \"any\"\n")
        .replace("auth = \"password\"", "auth = \"open\"")
}

/// lanchat's configuration for a benchmark of its native TLS door: [`lanchat_config`] with
/// the TLS door on any free port (the banner names it; its key in `data`, made there on
/// first start).
pub fn lanchat_tls_config(max_clients: usize) -> String {
    lanchat_config(max_clients).replace("tls_port = 0\n", "tls_port = \"any\"\n")
}

/// The generator's TLS: trusts the key with `fingerprint` alone (as a pinned lanchat-client
/// does), and resumes no session, so every login pays a full handshake like a student's
/// first connection.
pub fn tls_client(fingerprint: &Fingerprint) -> Arc<ClientConfig> {
    let pinned = PinVerifier::new(Some(&fingerprint.full())).client_config();
    let mut config = (*pinned).clone();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The TLS door's port in lanchat-server's `Encrypted (TLS): port N; ...` line.
pub fn tls_port_in(line: &str) -> Option<u16> {
    line.strip_prefix("Encrypted (TLS): port ")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The IRC door's port in lanchat-server's `IRC clients connect to port N (...)` line.
pub fn irc_port_in(line: &str) -> Option<u16> {
    line.strip_prefix("IRC clients connect to port ")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn start_lanchat(spec: &Spec, dir: &Path) -> io::Result<(Child, SocketAddr)> {
    let irc = spec.kind == ServerKind::LanchatIrc;
    let hash = if spec.argon2 {
        // One hash for every user: each login still pays a full argon2id check.
        Some(
            lanchat::credentials::hash_password("pw-argon2")
                .map_err(|e| io::Error::other(format!("hash: {e}")))?,
        )
    } else {
        None
    };
    // The argon2 run logs in with the same password for every user.
    let text = credentials_text(spec.users, hash.as_deref());
    std::fs::write(dir.join("credentials.txt"), text)?;
    let tls = spec.tls && !irc;
    let config = match (irc, tls) {
        (true, _) => lanchat_irc_config(spec.max_clients),
        (false, true) => lanchat_tls_config(spec.max_clients),
        (false, false) => lanchat_config(spec.max_clients),
    };
    std::fs::write(dir.join("configuration.toml"), config)?;
    let mut child = command(&spec.lanchat_bin, spec.cpu)
        .arg("--config")
        .arg(dir.join("configuration.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .transpose()?
        .ok_or_else(|| io::Error::other("lanchat-server printed nothing"))?;
    let mut addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no address in {first:?}")))?;
    // The IRC door's line, or the TLS door's, follows the native door's addresses.
    if irc || tls {
        let (name, port_in): (_, fn(&str) -> Option<u16>) = if irc {
            ("IRC", irc_port_in)
        } else {
            ("TLS", tls_port_in)
        };
        let port = loop {
            let line = lines
                .next()
                .transpose()?
                .ok_or_else(|| io::Error::other(format!("lanchat-server named no {name} port")))?;
            if let Some(port) = port_in(&line) {
                break port;
            }
        };
        addr = SocketAddr::from(([127, 0, 0, 1], port));
    }
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    wait_listening(addr, &mut child, Duration::from_secs(10))?;
    Ok((child, addr))
}

/// ngircd's configuration: loopback only, no flood penalties (`MaxPenaltyTime = 0` and user
/// mode F, or every client is throttled to a few commands per second), no DNS/ident/PAM;
/// with `tls_port`, its SSL port too, with the key and certificate made in `dir`.
pub fn ngircd_config(port: u16, max_clients: usize, dir: &Path, tls_port: Option<u16>) -> String {
    let ssl = match tls_port {
        Some(tls) => format!(
            "[SSL]\nPorts = {tls}\nCertFile = {}\nKeyFile = {}\n",
            dir.join("data")
                .join(lanchat::tls::identity::CERT_FILE)
                .display(),
            dir.join("data")
                .join(lanchat::tls::identity::KEY_FILE)
                .display()
        ),
        None => String::new(),
    };
    format!(
        "[Global]\nName = bench.lanchat\nInfo = lanchat benchmark peer\nListen = 127.0.0.1\n\
         Ports = {port}\nPidFile = {pid}\nMotdPhrase = bench\nServerUID = 0\nServerGID = 0\n\
         [Limits]\nMaxConnections = {max_clients}\nMaxConnectionsIP = 0\nMaxJoins = 0\n\
         MaxNickLength = 16\nMaxPenaltyTime = 0\nPingTimeout = 600\nPongTimeout = 600\n\
         IdleTimeout = 0\nMaxListSize = 100\n\
         [Options]\nDNS = no\nIdent = no\nPAM = no\nDefaultUserModes = F\n",
        pid = dir.join("ngircd.pid").display()
    ) + &ssl
}

fn start_ngircd(spec: &Spec, dir: &Path) -> io::Result<(Child, SocketAddr)> {
    let port = free_port()?;
    let tls_port = if spec.tls { Some(free_port()?) } else { None };
    let conf = dir.join("ngircd.conf");
    std::fs::write(&conf, ngircd_config(port, spec.max_clients, dir, tls_port))?;
    let mut child = command(Path::new("ngircd"), spec.cpu)
        .arg("--nodaemon")
        .arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("ngircd.log"))?)
        .stderr(Stdio::null())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port.unwrap_or(port)));
    wait_listening(addr, &mut child, Duration::from_secs(10))?;
    Ok((child, addr))
}

/// inspircd's configuration: loopback only, one connect class with no flood limits
/// (`fakelag="no"`, a huge `commandrate` and `threshold`), no DNS lookups.
pub fn inspircd_config(port: u16, max_clients: usize, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"<config format="xml">
<server name="bench.lanchat" description="lanchat benchmark peer" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="bench" allow="127.0.0.1" maxchans="20" timeout="60" pingfreq="600"
  hardsendq="64M" softsendq="64M" recvq="1M" threshold="1000000" commandrate="100000000"
  fakelag="no" localmax="{max_clients}" globalmax="{max_clients}" maxconnwarn="no"
  useident="no" resolvehostnames="no" limit="{class_limit}" modes="">
<performance netbuffersize="10240" somaxconn="1024" softlimit="{soft}" clonesonconnect="no"
  timeskipwarn="0" quietbursts="yes">
<security announceinvites="dynamic" hideserver="" hidebans="no" hidewhois="" hidesplits="no"
  maxtargets="20" customversion="" operspywhois="no" restrictbannedusers="yes"
  genericoper="no" userstats="Pu">
<options prefixquit="" suffixquit="" fixedquit="" syntaxhints="no" cyclehostsfromuser="no"
  announcets="yes" allowmismatched="no" defaultbind="auto" hostintopic="yes"
  pingwarning="15" serverpingfreq="1m" splitwhois="no" defaultmodes="nt" xlinemessage="x"
  exemptchanops="" invitebypassmodes="yes" nosnoticestack="no">
<limits maxline="512" maxnick="30" maxchan="64" maxmodes="20" maxident="10" maxhost="64"
  maxquit="255" maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<channels users="20" opers="60">
<pid file="{d}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d}/inspircd.log">
<dns timeout="1">
"#,
        soft = max_clients + 16,
        // inspircd refuses the connection that would reach `limit`, not the one past it.
        class_limit = max_clients + 1
    )
}

fn start_inspircd(spec: &Spec, dir: &Path) -> io::Result<(Child, SocketAddr)> {
    let port = free_port()?;
    let conf = dir.join("inspircd.conf");
    std::fs::write(&conf, inspircd_config(port, spec.max_clients, dir))?;
    let mut child = command(Path::new("inspircd"), spec.cpu)
        .arg("--nofork")
        .arg("--runasroot")
        .arg(format!("--config={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("inspircd.out"))?)
        .stderr(Stdio::null())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut child, Duration::from_secs(10))?;
    Ok((child, addr))
}

fn start_baseline(spec: &Spec, dir: &Path) -> io::Result<(Child, SocketAddr)> {
    let bin = spec
        .bench_bin
        .as_ref()
        .ok_or_else(|| io::Error::other("no bench binary to run the baseline"))?;
    let port = free_port()?;
    let which = match spec.kind {
        ServerKind::Echo => "echo",
        ServerKind::ThreadRelay => "threads",
        _ => "relay",
    };
    let mut child = command(bin, spec.cpu)
        .arg("baseline")
        .arg(which)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("baseline.log"))?)
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut child, Duration::from_secs(10))?;
    Ok((child, addr))
}

/// Runs a baseline server in this process until killed (the `baseline` subcommand).
pub fn run_baseline(kind: Baseline, port: u16) -> io::Result<()> {
    net::raise_fd_limit();
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    baseline::serve(kind, listener, &AtomicBool::new(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_configs() {
        assert_eq!(credentials_text(2, None), "u0 pw0\nu1 pw1\n");
        assert_eq!(credentials_text(1, Some("$argon2id$x")), "u0 $argon2id$x\n");
        let c = lanchat::config::Config::parse(&lanchat_config(10_000)).unwrap();
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.max_messages_per_sec, 0);
        assert!(!c.discovery && c.irc_port == lanchat::config::OptionalPort::Off);
        let c = lanchat::config::Config::parse(&lanchat_irc_config(10)).unwrap();
        assert_eq!(
            (c.irc_port, c.max_clients),
            (lanchat::config::OptionalPort::Any, 10)
        );
        assert!(lanchat_irc_config(10).contains("auth = \"open\""));
        assert_eq!(
            irc_port_in("IRC clients connect to port 6697 (e.g. irssi -c HOST -p 6697)."),
            Some(6697)
        );
        assert_eq!(irc_port_in("Press Ctrl-C to stop the server."), None);
        let n = ngircd_config(6667, 10, Path::new("/tmp/x"), None);
        assert!(!n.contains("[SSL]"));
        let c = lanchat::config::Config::parse(&lanchat_tls_config(10)).unwrap();
        assert_eq!(c.tls_port, lanchat::config::OptionalPort::Any);
        assert_eq!(
            tls_port_in("Encrypted (TLS): port 4130; lanchat-client uses it by itself."),
            Some(4130)
        );
        let s = ngircd_config(6667, 10, Path::new("/tmp/x"), Some(6697));
        assert!(s.contains("[SSL]\nPorts = 6697\nCertFile = /tmp/x/data/tls-cert.pem\n"));
        assert!(n.contains("MaxPenaltyTime = 0") && n.contains("DefaultUserModes = F"));
        assert!(n.contains("Listen = 127.0.0.1"));
        let i = inspircd_config(6667, 10, Path::new("/tmp/x"));
        assert!(i.contains("address=\"127.0.0.1\"") && i.contains("fakelag=\"no\""));
    }
}
