//! `configuration.toml`: every key optional, defaults from the course projects, unknown keys and
//! bad values refused with the key and its line named. Command-line flags override the file.
//!
//! Relative paths in the file (`credentials`, `data_dir`) are resolved against the directory
//! holding the file, so the server behaves the same whatever directory it is started from.

use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How users prove who they are (the seeds disagree, so it is a policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Username and password from credentials.txt (seeds 001-003).
    Password,
    /// Usernames from credentials.txt, no password asked (seed 000's allow-list).
    Allowlist,
    /// Any well-formed name not in use, no password (seed 004).
    Open,
}

/// What failed logins are counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockoutKey {
    /// A username from one IP address (seed 001).
    UserIp,
    /// A username from anywhere; an online session of it is logged out (seed 002).
    User,
}

/// What a second login of an online user does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateLogin {
    /// The new login is refused (seeds 000, 001, 004).
    Reject,
    /// The new login wins; the old session is told and closed (seed 002).
    Replace,
}

/// Where an optional door listens (`web_port`, `irc_port`, `tls_port`, `irc_tls_port`):
/// nowhere, a fixed port, or any free port.
///
/// In `configuration.toml` it is a port number (`0` = off) or the string `"any"`; on the
/// command line the same, as text. "Any free port" lets several servers (and tests) share a
/// machine without guessing a port that might be taken by the time it is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionalPort {
    /// The door is closed.
    Off,
    /// This port.
    Port(u16),
    /// Whatever free port the system gives; the server prints it.
    Any,
}

impl OptionalPort {
    /// The port to bind (0 asks the system for a free one), or `None` when off.
    pub fn to_bind(self) -> Option<u16> {
        match self {
            OptionalPort::Off => None,
            OptionalPort::Port(p) => Some(p),
            OptionalPort::Any => Some(0),
        }
    }
}

/// The port as a person types it: the number, `0` (off) or `any`.
impl fmt::Display for OptionalPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionalPort::Off => f.write_str("0"),
            OptionalPort::Port(p) => write!(f, "{p}"),
            OptionalPort::Any => f.write_str("any"),
        }
    }
}

impl std::str::FromStr for OptionalPort {
    type Err = String;

    fn from_str(s: &str) -> Result<OptionalPort, String> {
        match s.trim() {
            "any" => Ok(OptionalPort::Any),
            "0" | "off" => Ok(OptionalPort::Off),
            n => n
                .parse::<u16>()
                .map(OptionalPort::Port)
                .map_err(|_| format!("`{n}` is not a port (1-65535), 0 (off) or \"any\"")),
        }
    }
}

impl<'de> Deserialize<'de> for OptionalPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OptionalPort, D::Error> {
        /// Accepts an integer or a string, with a message that says which values work.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OptionalPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (0 = off) or \"any\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OptionalPort, E> {
                match u16::try_from(v) {
                    Ok(0) => Ok(OptionalPort::Off),
                    Ok(p) => Ok(OptionalPort::Port(p)),
                    Err(_) => Err(E::custom(format!(
                        "{v} is not a port (1-65535), 0 (off) or \"any\""
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OptionalPort, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OptionalPort, E> {
                match v {
                    "any" => Ok(OptionalPort::Any),
                    _ => Err(E::custom(format!(
                        "\"{v}\" is not a port (1-65535), 0 (off) or \"any\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The server's settings. Field names are the keys of `configuration.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP port of the line protocol.
    pub port: u16,
    /// HTTP port of the web client (the page and its WebSocket); off with 0.
    pub web_port: OptionalPort,
    /// Extra names the web door answers to (besides the address it was reached at,
    /// `localhost` and the machine's host name): a browser's `Host` must name this server,
    /// so that a foreign name re-pointed at it (DNS rebinding) gets nothing.
    pub web_host_names: Vec<String>,
    /// Address to listen on; `0.0.0.0` is every IPv4 interface, `::` IPv6 too.
    pub bind: IpAddr,
    /// Path of the credentials file.
    pub credentials: PathBuf,
    /// Directory of the durable store (offline mail, history, last seen, intros).
    pub data_dir: PathBuf,
    /// How users log in.
    pub auth: AuthMode,
    /// Consecutive failed logins before a block.
    pub max_login_attempts: u32,
    /// How long a block lasts.
    pub block_time_secs: u64,
    /// What failed logins are counted against.
    pub lockout_key: LockoutKey,
    /// What a second login of an online user does.
    pub duplicate_login: DuplicateLogin,
    /// A user who sends nothing for this long is logged out; 0 disables it.
    pub idle_timeout_secs: u64,
    /// A connection that has sent `heartbeat` once and then stays silent this long is
    /// logged out (seed 002's dead-client detection); 0 disables it.
    pub heartbeat_timeout_secs: u64,
    /// A connection must finish logging in within this long; 0 disables it.
    pub login_timeout_secs: u64,
    /// Longest accepted line in bytes, without its line ending.
    pub max_line_bytes: usize,
    /// Most simultaneous connections; past it new ones are refused with a line.
    pub max_clients: usize,
    /// Most simultaneous connections from one IP address (a class behind one NAT shares one).
    pub max_clients_per_ip: usize,
    /// Sustained commands per second one connection may send; 0 disables the limit.
    pub max_messages_per_sec: u32,
    /// Commands one connection may send in a burst above the sustained rate.
    pub message_burst: u32,
    /// A client slowed by the rate limit without a break for this long (its lines kept
    /// coming faster than the rate) is disconnected as a flood; 0 disables it.
    pub flood_disconnect_secs: u64,
    /// Bytes queued for a client that does not read before it is disconnected.
    pub max_outbox_bytes: usize,
    /// How long a client may read nothing while lines wait for it before it is disconnected.
    pub slow_reader_timeout_secs: u64,
    /// Messages a user's offline mailbox holds before senders are told it is full.
    pub max_offline_messages: usize,
    /// Bytes the data directory may hold (mail, history, the user journal); past it new
    /// offline mail is refused (its sender is told) and history is not written. 0 = no bound.
    pub max_data_bytes: u64,
    /// With `auth = "open"`: new users one IP address may create while the server runs
    /// (a script inventing nicks would otherwise fill the directory); 0 = no limit.
    pub max_new_users_per_ip: usize,
    /// With `auth = "open"`: groups created from one IP address that may exist at once;
    /// 0 = no limit.
    pub max_groups_per_ip: usize,
    /// Whether a broadcast is also shown to its sender (seed 003's room did).
    pub broadcast_echo: bool,
    /// Seed 003's chat room: a line that is not a command goes to everyone online (and back
    /// to its sender) instead of being refused as an unknown command.
    pub room: bool,
    /// Up to this many users online, each login, logout and status change is one `PRESENCE`
    /// line to the others; above it they are gathered into `PRESENCES` summaries.
    pub presence_summary_above: usize,
    /// How long a summary gathers changes (milliseconds) before it is sent.
    pub presence_summary_ms: u64,
    /// TCP port of the IRC door; off with 0, any free port with "any".
    pub irc_port: OptionalPort,
    /// The server's name in IRC numerics and PONG.
    pub server_name: String,
    /// The IRC channel every IRC user joins at login; broadcasts are said there.
    pub irc_lobby: String,
    /// The IRC message of the day (lines); empty sends ERR_NOMOTD.
    pub irc_motd: String,
    /// Whether to answer UDP discovery requests, so `lanchat-client` without an address
    /// finds this server.
    pub discovery: bool,
    /// UDP port of discovery requests; the same for every server whatever its TCP port,
    /// since a client that knows nothing must know this one.
    pub discovery_port: u16,
    /// Port of the native line protocol over TLS (the same lines, encrypted); off with 0.
    pub tls_port: OptionalPort,
    /// A PEM certificate (chain) to use instead of the one made in `data_dir`; needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether the web door speaks HTTPS and WSS (with the TLS identity) instead of HTTP.
    pub web_tls: bool,
    /// Port of IRC over TLS, open with the IRC door (`irc_port` not off); off with 0, any
    /// free port with "any".
    pub irc_tls_port: OptionalPort,
    /// Whether a password is refused on a door without TLS (the client is told where to
    /// connect instead).
    pub require_tls: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            port: 4119,
            web_port: OptionalPort::Port(8080),
            web_host_names: Vec::new(),
            bind: IpAddr::from([0, 0, 0, 0]),
            credentials: PathBuf::from("credentials.txt"),
            data_dir: PathBuf::from("data"),
            auth: AuthMode::Password,
            max_login_attempts: 3,
            block_time_secs: 60,
            lockout_key: LockoutKey::UserIp,
            duplicate_login: DuplicateLogin::Reject,
            idle_timeout_secs: 1800,
            heartbeat_timeout_secs: 35,
            login_timeout_secs: 60,
            max_line_bytes: 4096,
            max_clients: 12_000,
            max_clients_per_ip: 256,
            max_messages_per_sec: 20,
            message_burst: 60,
            flood_disconnect_secs: 30,
            max_outbox_bytes: 1 << 20,
            slow_reader_timeout_secs: 10,
            max_offline_messages: 1000,
            max_data_bytes: 1 << 30,
            max_new_users_per_ip: 500,
            max_groups_per_ip: 100,
            broadcast_echo: false,
            room: false,
            presence_summary_above: 200,
            presence_summary_ms: 1000,
            irc_port: OptionalPort::Port(6667),
            server_name: "lanchat".to_string(),
            irc_lobby: "#lanchat".to_string(),
            irc_motd: String::new(),
            discovery: true,
            discovery_port: crate::discovery::DEFAULT_PORT,
            tls_port: OptionalPort::Port(4129),
            tls_cert: None,
            tls_key: None,
            web_tls: false,
            irc_tls_port: OptionalPort::Port(6697),
            require_tls: false,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, if the problem is in one.
    pub path: Option<PathBuf>,
    /// What is wrong, naming the key and line where known.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a configuration file; relative paths in it become relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_path_buf()),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError {
            path: Some(path.to_path_buf()),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.credentials = base.join(&config.credentials);
        config.data_dir = base.join(&config.data_dir);
        config.tls_cert = config.tls_cert.map(|p| base.join(p));
        config.tls_key = config.tls_key.map(|p| base.join(p));
        Ok(config)
    }

    /// Parses configuration text (no path resolution) and validates it.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's message already names the line and column and the offending key.
            e.to_string().trim_end().replace('\n', " ")
        })?;
        config.validate(text)?;
        Ok(config)
    }

    /// Checks values that parse but make no sense, naming the key and its line in `text`.
    fn validate(&self, text: &str) -> Result<(), String> {
        let bad = |key: &str, why: &str| -> Result<(), String> {
            let line = text
                .lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default();
            Err(format!("{line}invalid value for `{key}`: {why}"))
        };
        if self.max_login_attempts == 0 {
            bad("max_login_attempts", "must be at least 1")?;
        }
        if self.max_line_bytes < 64 || self.max_line_bytes > 1 << 20 {
            bad("max_line_bytes", "must be between 64 and 1048576")?;
        }
        if self.max_clients == 0 {
            bad("max_clients", "must be at least 1")?;
        }
        if self.max_clients_per_ip == 0 {
            bad("max_clients_per_ip", "must be at least 1")?;
        }
        if self.max_outbox_bytes < 4096 {
            bad("max_outbox_bytes", "must be at least 4096")?;
        }
        if !(10..=60_000).contains(&self.presence_summary_ms) {
            bad("presence_summary_ms", "must be between 10 and 60000")?;
        }
        if self.slow_reader_timeout_secs == 0 {
            bad("slow_reader_timeout_secs", "must be at least 1")?;
        }
        if self.max_messages_per_sec > 0 && self.message_burst == 0 {
            bad(
                "message_burst",
                "must be at least 1 when max_messages_per_sec is set",
            )?;
        }
        if self.max_offline_messages == 0 {
            bad("max_offline_messages", "must be at least 1")?;
        }
        if self.discovery_port == 0 {
            bad("discovery_port", "must be between 1 and 65535")?;
        }
        if self.block_time_secs > 7 * 24 * 3600 {
            bad("block_time_secs", "must be at most a week (604800)")?;
        }
        if self.web_host_names.iter().any(|n| {
            n.is_empty() || n.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '[' | ']'))
        }) {
            bad(
                "web_host_names",
                "each must be a host name or an address, without a port or a scheme",
            )?;
        }
        if self.irc_port == OptionalPort::Port(self.port) {
            bad("irc_port", "must differ from `port`")?;
        }
        if let OptionalPort::Port(p) = self.tls_port {
            if p == self.port || self.irc_port == OptionalPort::Port(p) {
                bad("tls_port", "must differ from `port` and `irc_port`")?;
            }
        }
        if let (true, OptionalPort::Port(p)) =
            (self.irc_port != OptionalPort::Off, self.irc_tls_port)
        {
            let taken = [
                Some(self.port),
                self.irc_port.to_bind(),
                self.tls_port.to_bind(),
            ];
            if taken.contains(&Some(p)) {
                bad(
                    "irc_tls_port",
                    "must differ from `port`, `irc_port` and `tls_port`",
                )?;
            }
        }
        if self.require_tls && self.tls_port == OptionalPort::Off {
            bad(
                "require_tls",
                "needs a TLS door for the passwords it refuses elsewhere: set `tls_port`",
            )?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bad(
                if self.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                },
                "`tls_cert` and `tls_key` go together: set both, or neither to use the \
                 certificate made in `data_dir`",
            )?;
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 63
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        if !name_ok(&self.server_name) {
            bad(
                "server_name",
                "must be 1-63 letters, digits, '-', '.' or '_' (a host name)",
            )?;
        }
        if !self
            .irc_lobby
            .strip_prefix('#')
            .is_some_and(crate::protocol::valid_username)
        {
            bad(
                "irc_lobby",
                "must be '#' followed by a valid group name, such as \"#lanchat\"",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_seed_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.port, 4119);
        assert_eq!(c.max_login_attempts, 3);
        assert_eq!(c.block_time_secs, 60);
        assert_eq!(c.idle_timeout_secs, 1800);
        assert_eq!(c.auth, AuthMode::Password);
        assert_eq!(c.irc_port, OptionalPort::Port(6667));
        assert_eq!(c.server_name, "lanchat");
        assert_eq!(c.irc_lobby, "#lanchat");
        assert_eq!(c.web_port, OptionalPort::Port(8080));
        assert!(c.discovery);
        assert_eq!(c.discovery_port, 4119);
    }

    #[test]
    fn irc_keys_are_checked() {
        let err = Config::parse("irc_lobby = \"lobby\"\n").unwrap_err();
        assert!(err.contains("irc_lobby") && err.contains("line 1"), "{err}");
        let err = Config::parse("server_name = \"my server\"\n").unwrap_err();
        assert!(err.contains("server_name"), "{err}");
        let err = Config::parse("port = 7000\nirc_port = 7000\n").unwrap_err();
        assert!(err.contains("irc_port") && err.contains("line 2"), "{err}");
        let c = Config::parse("irc_port = 0\nserver_name = \"irc.lan\"\n").unwrap();
        assert_eq!(
            (c.irc_port, c.server_name.as_str()),
            (OptionalPort::Off, "irc.lan")
        );
    }

    #[test]
    fn irc_port_is_a_port_zero_or_any_like_web_port() {
        let port = |text: &str| Config::parse(text).map(|c| c.irc_port);
        assert_eq!(port(""), Ok(OptionalPort::Port(6667)));
        assert_eq!(port("irc_port = 6668"), Ok(OptionalPort::Port(6668)));
        assert_eq!(port("irc_port = 0"), Ok(OptionalPort::Off));
        assert_eq!(port("irc_port = \"any\""), Ok(OptionalPort::Any));
        for bad in ["irc_port = 70000", "irc_port = \"irc\""] {
            let err = Config::parse(bad).unwrap_err();
            assert!(err.contains("irc_port") && err.contains("any"), "{err}");
        }
        // Any free port never clashes with the fixed ones.
        assert!(Config::parse("port = 0\nirc_port = \"any\"\ntls_port = \"any\"\n").is_ok());
    }

    #[test]
    fn tls_keys_default_to_a_door_on_4129_and_cert_and_key_go_together() {
        let c = Config::parse("").unwrap();
        assert_eq!(
            (c.tls_port, c.tls_cert, c.tls_key),
            (OptionalPort::Port(4129), None, None)
        );
        let c = Config::parse("tls_port = \"any\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
        assert_eq!(c.unwrap().tls_port, OptionalPort::Any);
        let err = Config::parse("tls_cert = \"c.pem\"\n").unwrap_err();
        assert!(
            err.contains("tls_key") && err.contains("go together"),
            "{err}"
        );
        let err = Config::parse("require_tls = true\ntls_port = 0\n").unwrap_err();
        assert!(err.contains("require_tls"), "{err}");
        let err = Config::parse("irc_tls_port = 6667\n").unwrap_err();
        assert!(err.contains("irc_tls_port"), "{err}");
        let any = Config::parse("irc_tls_port = \"any\"\n").unwrap();
        assert_eq!(any.irc_tls_port, OptionalPort::Any);
        let off = Config::parse("irc_tls_port = 0\n").unwrap();
        assert_eq!(off.irc_tls_port, OptionalPort::Off);
        let err = Config::parse("port = 5000\ntls_port = 5000\n").unwrap_err();
        assert!(err.contains("tls_port") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn web_port_is_a_port_zero_or_any() {
        let port = |text: &str| Config::parse(text).map(|c| c.web_port);
        assert_eq!(port("web_port = 8081"), Ok(OptionalPort::Port(8081)));
        assert_eq!(port("web_port = 0"), Ok(OptionalPort::Off));
        assert_eq!(port("web_port = \"any\""), Ok(OptionalPort::Any));
        for bad in ["web_port = 70000", "web_port = -1", "web_port = \"http\""] {
            let err = port(bad).unwrap_err();
            assert!(err.contains("web_port") && err.contains("any"), "{err}");
        }
        assert_eq!("any".parse(), Ok(OptionalPort::Any));
        assert_eq!("0".parse(), Ok(OptionalPort::Off));
        assert_eq!("8000".parse(), Ok(OptionalPort::Port(8000)));
        assert!("x".parse::<OptionalPort>().is_err());
    }

    #[test]
    fn shipped_file_parses() {
        let text = include_str!("../configuration.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.port, 4119);
        assert!(c.web_host_names.is_empty());
    }

    #[test]
    fn web_host_names_are_names_without_ports() {
        let c =
            Config::parse("web_host_names = [\"chat.school.example\", \"10.0.2.2\"]\n").unwrap();
        assert_eq!(c.web_host_names, ["chat.school.example", "10.0.2.2"]);
        for bad in ["[\"\"]", "[\"http://x\"]", "[\"a b\"]", "[\"[::1]\"]"] {
            let err = Config::parse(&format!("web_host_names = {bad}\n")).unwrap_err();
            assert!(err.contains("web_host_names"), "{err}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("port = 1\n\nprot = 2\n").unwrap_err();
        assert!(err.contains("prot"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let err = Config::parse("port = 4119\nmax_login_attempts = 0\n").unwrap_err();
        assert!(err.contains("max_login_attempts"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Config::parse("port = 99999\n").unwrap_err();
        assert!(err.contains("port") && err.contains("line 1"), "{err}");
        let err = Config::parse("auth = \"maybe\"\n").unwrap_err();
        assert!(err.contains("maybe") || err.contains("auth"), "{err}");
    }
}
