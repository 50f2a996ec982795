//! `lanchat-server [PORT] [--config FILE] [--credentials FILE] [--bind ADDR] [--data-dir DIR]
//! [--web-port PORT]` (or seed 004's `-sp PORT`) runs the server; `lanchat-server hash-password` prints an argon2id PHC string for
//! `credentials.txt`; `lanchat-server add-user NAME [--credentials FILE] [--config FILE]`
//! appends a user with a hashed password.
//!
//! Thin: parses arguments, sets up logging and Ctrl-C, and runs the library's server. The one
//! unsafe function turns terminal echo off while a password is typed. Passwords are never
//! printed or logged.

use clap::{Parser, Subcommand};
use lanchat::config::{Config, OptionalPort};
use lanchat::credentials::{hash_password, Credentials};
use lanchat::discovery::{self, Announcement, Responder};
use lanchat::protocol::valid_username;
use lanchat::server::{ports, Door, Server, ServerError};
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The lanchat server: a LAN chat server for classrooms.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct ServerArgs {
    /// Password tools instead of running the server.
    #[command(subcommand)]
    command: Option<Tool>,
    /// TCP port to listen on (overrides `port` in the configuration; 0 picks a free one).
    port: Option<u16>,
    /// The same as PORT; seed 004's `-sp PORT` works too.
    #[arg(
        long = "port",
        visible_alias = "sp",
        value_name = "PORT",
        conflicts_with = "port"
    )]
    port_flag: Option<u16>,
    /// Configuration file (default: configuration.toml in the current directory, if any).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Credentials file (overrides `credentials` in the configuration).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Address to listen on (overrides `bind`): 0.0.0.0, ::, 127.0.0.1, ...
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Port of the IRC door (overrides `irc_port`): a number, 0 (off) or "any".
    #[arg(long, value_name = "PORT")]
    irc_port: Option<OptionalPort>,
    /// Port of the web client (overrides `web_port`): a number, 0 (off) or "any".
    #[arg(long, value_name = "PORT")]
    web_port: Option<OptionalPort>,
    /// Port of the native protocol over TLS (overrides `tls_port`): a number, 0 (off) or
    /// "any".
    #[arg(long, value_name = "PORT")]
    tls_port: Option<OptionalPort>,
    /// Port of IRC over TLS (overrides `irc_tls_port`): a number, 0 (off) or "any".
    #[arg(long, value_name = "PORT")]
    irc_tls_port: Option<OptionalPort>,
}

/// The password tools.
#[derive(Subcommand, Debug)]
enum Tool {
    /// Print the argon2id hash of a password, for credentials.txt
    ///
    /// The password is read from standard input: hidden on a terminal, one line from a pipe.
    /// The hash is printed as one line, ready to paste after a username.
    HashPassword,
    /// Add a user with a hashed password to the credentials file
    ///
    /// The password is read from standard input: hidden and asked twice on a terminal, one
    /// line from a pipe. Appends `NAME <argon2id hash>`; restart the server to pick it up.
    AddUser {
        /// The new user's name: 1-32 letters, digits, '_', '-' or '.'
        name: String,
        /// Credentials file (default: `credentials` of the configuration, else
        /// credentials.txt).
        #[arg(long, value_name = "FILE")]
        credentials: Option<PathBuf>,
        /// Configuration file whose `credentials` path to use (default: configuration.toml
        /// in the current directory, if any).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// How a run ended: the exit code and, for failures, the one `error:` line.
enum Failure {
    /// A bad argument or configuration: exit code 2.
    Usage(String),
    /// Anything else: exit code 1.
    Failed(String),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = ServerArgs::parse_from(lanchat::cli::single_dash_long_flags(
        std::env::args_os(),
        &["sp"],
    ));
    let result = match &args.command {
        Some(Tool::HashPassword) => hash_password_tool(),
        Some(Tool::AddUser {
            name,
            credentials,
            config,
        }) => add_user(name, credentials.as_deref(), config.as_deref()),
        None => {
            // Before any thread starts: a thread per user wants glibc's small caches.
            lanchat::server::capacity::memory::restart_with_small_thread_caches();
            return serve(&args);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server until Ctrl-C.
fn serve(args: &ServerArgs) -> ExitCode {
    let config = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::bind(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            if let ServerError::Listen(failures) = &e {
                let from_make = std::env::var_os("MAKELEVEL").is_some();
                let argv = std::env::args().collect();
                let command = ports::ports_instead(&config, failures)
                    .map(|p| ports::avoiding_command(from_make, argv, args.config.as_deref(), &p));
                if let Some(command) = command {
                    eprintln!("Another server may be running here; this one can start with:");
                    eprintln!("  {command}");
                }
            }
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    // Dropped (and so stopped) when this function returns, after the server has stopped.
    let doors: Vec<(&str, u16)> = server
        .doors()
        .iter()
        .map(|(door, addr)| (door.name(), addr.port()))
        .collect();
    let discovery = config
        .discovery
        .then(|| discovery(&config, &doors, server.fingerprint()))
        .flatten();
    print_addresses(
        addr,
        server
            .door_addr(Door::Web)
            .map(|a| (a, false))
            .or(server.door_addr(Door::WebTls).map(|a| (a, true))),
        server.door_addr(Door::Irc),
        discovery.as_ref().map(|(_, note)| note.as_str()),
        &encryption_lines(&server),
    );
    let handle = server.shutdown_handle();
    if let Err(e) = ctrlc::set_handler(move || handle.shutdown()) {
        eprintln!("error: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file given, else ./configuration.toml if present, else the defaults.
fn base_config(path: Option<&Path>) -> Result<Config, String> {
    let default = Path::new("configuration.toml");
    match path {
        Some(path) => Config::load(path).map_err(|e| e.to_string()),
        None if default.exists() => Config::load(default).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn load_config(args: &ServerArgs) -> Result<Config, String> {
    let mut config = base_config(args.config.as_deref())?;
    if let Some(p) = args.port.or(args.port_flag) {
        config.port = p;
    }
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if let Some(c) = &args.credentials {
        config.credentials = c.clone();
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(p) = args.irc_port {
        config.irc_port = p;
    }
    if let Some(w) = args.web_port {
        config.web_port = w;
    }
    if let Some(t) = args.tls_port {
        config.tls_port = t;
    }
    if let Some(t) = args.irc_tls_port {
        config.irc_tls_port = t;
    }
    Ok(config)
}

/// `hash-password`: one password in, one PHC string out.
fn hash_password_tool() -> Result<(), Failure> {
    let password = read_password(false)?;
    let phc = hash_password(&password).map_err(Failure::Failed)?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{phc}").and_then(|()| out.flush()) {
        // A closed pipe (`... | head -c0`) is not worth an error line.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Failed(format!("cannot write the hash: {e}")))
        }
        _ => Ok(()),
    }
}

/// `add-user NAME`: checks the name, reads the password and appends the line.
fn add_user(name: &str, credentials: Option<&Path>, config: Option<&Path>) -> Result<(), Failure> {
    if !valid_username(name) {
        return Err(Failure::Usage(format!(
            "`{}` is not a valid username (1-32 of A-Z a-z 0-9 _ - ., not starting with .)",
            name.escape_debug()
        )));
    }
    let path = match credentials {
        Some(p) => p.to_path_buf(),
        None => base_config(config).map_err(Failure::Usage)?.credentials,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::Failed(format!(
                "{}: cannot read: {e}",
                path.display()
            )))
        }
    };
    let users = Credentials::parse(&existing)
        .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))?;
    if users.contains(name) {
        return Err(Failure::Failed(format!(
            "{}: `{name}` is already a user",
            path.display()
        )));
    }
    let password = read_password(true)?;
    let phc = hash_password(&password).map_err(Failure::Failed)?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // A file created here holds only hashes, but still: readable by its owner alone.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let appended = options.open(&path).and_then(|mut f| {
        f.write_all(format!("{separator}{name} {phc}\n").as_bytes())?;
        f.sync_all()
    });
    appended.map_err(|e| Failure::Failed(format!("{}: cannot write: {e}", path.display())))?;
    eprintln!(
        "Added {name} to {}; restart the server to let them log in.",
        path.display()
    );
    Ok(())
}

/// Reads a password from standard input: on a terminal with a prompt and echo off (twice if
/// `confirm`), otherwise one line from the pipe. Empty passwords are refused.
fn read_password(confirm: bool) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        if confirm && prompt_hidden("Password again: ")? != first {
            return Err(Failure::Failed("the passwords do not match".into()));
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::Failed(format!("cannot read the password: {e}")))?;
        strip_line_ending(line)
    };
    if password.is_empty() {
        return Err(Failure::Failed("empty password".into()));
    }
    Ok(password)
}

/// Drops one trailing LF or CRLF; every other character is part of the password.
fn strip_line_ending(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Prompts on stderr and reads one line from the terminal with echo off (the newline is
/// still echoed, so the next output starts on a line of its own).
fn prompt_hidden(prompt: &str) -> Result<String, Failure> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let echo = hide_echo();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo);
    if !line.ends_with('\n') {
        // End of input (Ctrl-D): the terminal echoed no newline.
        eprintln!();
    }
    read.map_err(|e| Failure::Failed(format!("cannot read the password: {e}")))?;
    Ok(strip_line_ending(line))
}

/// Terminal echo switched off on standard input until the guard is dropped (or Ctrl-C is
/// pressed, which restores it and exits with 130); `None` (echo stays on) if standard
/// input's settings cannot be read or changed.
#[cfg(unix)]
fn hide_echo() -> Option<lanchat::terminal::EchoOff> {
    let saved = lanchat::terminal::Settings::of_stdin().ok()?;
    // Ctrl-C while echo is off must not leave the terminal silent. A handler can only be
    // installed once; the second prompt of add-user reuses the first one's.
    let _ = ctrlc::set_handler(move || {
        let _ = saved.apply();
        eprintln!();
        std::process::exit(130);
    });
    lanchat::terminal::EchoOff::on_stdin().ok()
}

#[cfg(not(unix))]
fn hide_echo() {
    eprintln!("(warning: the password will be visible as you type it)");
}

/// The address a person types into a browser to reach the web door.
fn web_url(ip: IpAddr, port: u16, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}/"),
        v4 => format!("{scheme}://{v4}:{port}/"),
    }
}

/// Starts answering discovery requests and says so; a failure is only a warning, since
/// students can still type an address.
/// `doors` are every port the server listens on, by door name (`tcp`, `web`, ...): each
/// becomes a `name=port` field of the answer.
fn discovery(
    config: &Config,
    doors: &[(&str, u16)],
    fingerprint: Option<lanchat::tls::Fingerprint>,
) -> Option<(Responder, String)> {
    let mut announcement = Announcement::new(
        &discovery::host_name(),
        discovery::announced_host(config.bind),
        doors,
    );
    if let Some(fingerprint) = fingerprint {
        announcement = announcement.with_fingerprint(&fingerprint);
    }
    match Responder::start(config.bind, config.discovery_port, &announcement) {
        Ok(responder) => {
            let note = format!(
                "Answering discovery on UDP port {} as `{}`: `lanchat-client` with no \
                 address finds this server.",
                config.discovery_port, announcement.name
            );
            Some((responder, note))
        }
        Err(e) => {
            log::warn!(
                "discovery off: cannot listen on UDP port {}: {e}",
                config.discovery_port
            );
            None
        }
    }
}

/// Prints where students can connect: every non-loopback interface address (IPv6 ones too
/// when bound to `::`), for the client and (if open) the web page, and the discovery note.
/// A closed stdout is not a reason to stop serving, so write errors are ignored.
fn print_addresses(
    addr: std::net::SocketAddr,
    web: Option<(std::net::SocketAddr, bool)>,
    irc: Option<std::net::SocketAddr>,
    discovery: Option<&str>,
    encryption: &[String],
) {
    use std::io::Write;
    let port = addr.port();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "lanchat server listening on {addr}");
    if let Some((web, _)) = web {
        let _ = writeln!(out, "lanchat web client listening on {web}");
    }
    let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
    let reachable_ips = |bound: IpAddr| -> Vec<(IpAddr, String)> {
        ifaces
            .iter()
            .filter(|i| !i.is_loopback() && !is_link_local_v6(i.ip()))
            .filter(|i| match (bound, i.ip()) {
                (IpAddr::V4(b), IpAddr::V4(_)) => b.is_unspecified() || b == i.ip(),
                (IpAddr::V6(b), _) => b.is_unspecified() || IpAddr::V6(b) == i.ip(),
                _ => false,
            })
            .map(|i| (i.ip(), i.name.clone()))
            .collect()
    };
    let mut reachable: Vec<String> = reachable_ips(addr.ip())
        .into_iter()
        .map(|(ip, name)| format!("  lanchat-client {ip} {port}    ({name})"))
        .collect();
    reachable.dedup();
    if reachable.is_empty() {
        let here = match addr.ip() {
            ip if ip.is_loopback() => ip,
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        };
        let _ = writeln!(
            out,
            "Connect from this machine with: lanchat-client {here} {port}"
        );
    } else {
        let _ = writeln!(
            out,
            "Students connect with (or `make run-client HOST=<address> PORT={port}`):"
        );
        for r in reachable {
            let _ = writeln!(out, "{r}");
        }
    }
    if let Some((web, tls)) = web {
        let mut urls: Vec<String> = reachable_ips(web.ip())
            .into_iter()
            .map(|(ip, name)| format!("  {}    ({name})", web_url(ip, web.port(), tls)))
            .collect();
        urls.dedup();
        if urls.is_empty() {
            urls.push(format!("  {}", web_url(web.ip(), web.port(), tls)));
        }
        let _ = writeln!(out, "Or in a web browser, nothing to install:");
        for u in urls {
            let _ = writeln!(out, "{u}");
        }
    }
    if let Some(irc) = irc {
        let p = irc.port();
        let _ = writeln!(
            out,
            "IRC clients connect to port {p} (e.g. irssi -c HOST -p {p})."
        );
    }
    if let Some(note) = discovery {
        let _ = writeln!(out, "{note}");
    }
    for line in encryption {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "Press Ctrl-C to stop the server.");
    let _ = out.flush();
}

/// Which doors are encrypted and the fingerprint students compare (the short form, big
/// enough to read off a projector; the full one is in the log).
fn encryption_lines(server: &Server) -> Vec<String> {
    let plain: Vec<String> = server
        .doors()
        .iter()
        .filter(|(door, _)| !door.is_tls())
        .map(|(door, addr)| format!("{} {}", door.name(), addr.port()))
        .collect();
    match (server.door_addr(Door::NativeTls), server.fingerprint()) {
        (Some(tls), Some(fingerprint)) => vec![
            format!(
                "Encrypted (TLS): port {}; lanchat-client uses it by itself.{}",
                tls.port(),
                server
                    .door_addr(Door::IrcTls)
                    .map(|a| format!(" IRC over TLS: port {}.", a.port()))
                    .unwrap_or_default()
            ),
            format!("Server fingerprint: {}", fingerprint.short()),
            format!(
                "Not encrypted (anyone on the LAN can read them): {}",
                plain.join(", ")
            ),
        ],
        _ => vec![
            "No door is encrypted (tls_port = 0): anyone on the LAN can read passwords and \
             messages."
                .to_string(),
        ],
    }
}

/// An IPv6 link-local address (fe80::/10) needs its interface named to be typed
/// (`fe80::1%eth0`), which the client cannot take: not worth printing.
fn is_link_local_v6(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}
