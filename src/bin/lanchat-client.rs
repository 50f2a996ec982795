//! `lanchat-client [HOST] [PORT] [-u USERNAME] [-sip SERVER_IP] [-sp SERVER_PORT]
//! [--color auto|always|never] [--encoding NAME] [--p2p-port PORT] [--scan]`
//!
//! Thin: parses arguments, sets up logging, finds a server when no address was given, and
//! runs the library's client.

use clap::Parser;
use lanchat::client::charset::Charset;
use lanchat::client::discover::{self, Found, Pick};
use lanchat::client::{self, ColorChoice, Options};
use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

/// The lanchat client: log in to a lanchat server and chat.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_long_help = "\
With no HOST (and no -sip), the client looks for lanchat servers on the LAN for a second
(a UDP broadcast to --discovery-port): one found, it connects; several, it lists them and
asks which (and connects to none if the input ends first); none, it tries this machine.
--scan only lists them. Nothing proves which answer came from the real server: answers
that differ in anything are listed apart, and answers that claim the same server from
different addresses are pointed out; ask whoever runs the server which address is right.
An answer that contradicts a pinned server (another fingerprint, or its id with other ports
or another address) is not used, with a warning.

Seed 004's spelling works too: lanchat-client -u USERNAME -sip SERVER_IP -sp SERVER_PORT
(-u answers the username question; the server still asks for a password if it wants one).

The terminal's encoding comes from --encoding, else from LC_ALL/LC_CTYPE/LANG, else UTF-8;
messages on the wire are UTF-8 whatever it is. Characters the terminal's encoding cannot
show are printed as '?'.

The server asks for a username and a password (typed without echo on a terminal); then type
'help' for the commands. Incoming messages appear above the prompt.

Ctrl-D or Ctrl-C logs out. Standard input may be a pipe: its lines answer the login questions
and are then sent as commands; the end of the input logs out.

Private messages go directly from client to client, not through the server. After login the
client listens on a TCP port of its own (any free one, or --p2p-port) and tells the server.
'getaddress USER' asks USER to exchange addresses; once USER accepts, 'private USER TEXT'
sends a message straight to USER's client, with a signature only the two of you can make.
'send USER TEXT' does both: it asks first when USER is not in your address book yet.
'addressbook' lists who you can message privately; 'removeaddress USER' ends it on both
sides. If the server goes down while your address book is not empty, the client keeps
running for private messages until you log out.

Exit status:
  0  you logged out (logout, Ctrl-D, Ctrl-C) or left before logging in, also after the
     server went down while you kept chatting privately
  1  the server ended the session (shutdown, idle timeout, blocked login, replaced by another
     login), the connection failed or was lost, or several servers answered discovery and
     none was chosen
  2  usage error"
)]
struct ClientArgs {
    /// Server address: IPv4, IPv6 or a host name (none: look for servers on the LAN).
    host: Option<String>,
    /// Server TCP port [default: 4119, or what the server found announces].
    port: Option<u16>,
    /// The server's address, as seed 004 spelled it (`-sip` works too).
    #[arg(long = "sip", value_name = "SERVER_IP", conflicts_with = "host")]
    server_ip: Option<String>,
    /// The server's port, as seed 004 spelled it (`-sp` works too).
    #[arg(long = "sp", value_name = "SERVER_PORT", conflicts_with = "port")]
    server_port: Option<u16>,
    /// Answer the server's username question with USERNAME (seed 004).
    #[arg(short = 'u', long = "user", value_name = "USERNAME")]
    user: Option<String>,
    /// List the lanchat servers that answer on the LAN, and exit.
    #[arg(long)]
    scan: bool,
    /// UDP port that servers answer discovery requests on.
    #[arg(long, value_name = "PORT", default_value_t = lanchat::discovery::DEFAULT_PORT)]
    discovery_port: u16,
    /// Send discovery requests to ADDR only (repeatable), instead of every broadcast
    /// address and this machine: a subnet's broadcast address, or one host.
    #[arg(long = "discovery-target", value_name = "ADDR")]
    discovery_targets: Vec<IpAddr>,
    /// The terminal's character encoding (utf-8, latin1, iso-8859-15, koi8-r, ...)
    /// [default: from LC_ALL/LC_CTYPE/LANG, else utf-8].
    #[arg(long, value_name = "NAME")]
    encoding: Option<String>,
    /// When to use colours (auto: on a terminal, unless NO_COLOR is set or TERM=dumb).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Seconds between the automatic heartbeats that tell the server this client is alive.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    heartbeat: f64,
    /// TCP port to listen on for private messages from other clients (0: any free port).
    /// Open it in the firewall if peers cannot reach you.
    #[arg(long, value_name = "PORT", default_value_t = client::DEFAULT_P2P_PORT)]
    p2p_port: u16,
    /// The server's TLS port, used whenever it answers (0: plain port only) [default: 4129,
    /// or what the server found announces].
    #[arg(long, value_name = "PORT")]
    tls_port: Option<u16>,
    /// The server's fingerprint as the server printed it (the instructor's board): any
    /// other key is refused, even on a first connection.
    #[arg(long, value_name = "FP", value_parser = parse_fingerprint)]
    fingerprint: Option<String>,
}

/// Checks a `--fingerprint` value's form (letters a-z, digits 2-7, dashes; 16-52 of them).
fn parse_fingerprint(text: &str) -> Result<String, String> {
    lanchat::tls::fingerprint::normalize(text).map(|_| text.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = ClientArgs::parse_from(lanchat::cli::single_dash_long_flags(
        std::env::args_os(),
        &["sip", "sp"],
    ));
    let charset = match args.encoding.as_deref().map(Charset::for_name) {
        None => Charset::detect(),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let port = args.server_port.or(args.port);
    if args.scan {
        return scan(&args, charset);
    }
    // The TLS port a discovery answer announced, if the server was found that way.
    let (host, port, announced_tls) = match args.server_ip.clone().or(args.host.clone()) {
        Some(host) => (host, port.unwrap_or(client::DEFAULT_PORT), None),
        None => match find_server(&args, port, charset) {
            Ok(target) => target,
            Err(code) => return code,
        },
    };
    let options = Options {
        host,
        port,
        color: args.color,
        heartbeat: std::time::Duration::from_secs_f64(args.heartbeat.clamp(0.05, 3600.0)),
        p2p_port: args.p2p_port,
        charset,
        username: args.user,
        tls: client::secure::TlsOptions {
            // A server on its default port has its TLS door on the default TLS port; one
            // moved elsewhere may not, and a guess could reach another server.
            port: args
                .tls_port
                .or(announced_tls)
                .unwrap_or(if port == client::DEFAULT_PORT {
                    client::secure::DEFAULT_TLS_PORT
                } else {
                    0
                }),
            fingerprint: args.fingerprint.clone(),
            ..client::secure::TlsOptions::default()
        },
    };
    match client::run(&options) {
        Ok(ending) => ending.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one line in the terminal's encoding.
fn say(charset: Charset, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&charset.encode(text));
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Asks for the discovery answers (nothing found when the sockets fail).
fn servers(args: &ClientArgs) -> Vec<Found> {
    let targets: Vec<SocketAddr> = if args.discovery_targets.is_empty() {
        discover::default_targets(args.discovery_port)
    } else {
        args.discovery_targets
            .iter()
            .map(|&ip| SocketAddr::new(ip, args.discovery_port))
            .collect()
    };
    let mut found = discover::scan(&targets, discover::WAIT).unwrap_or_else(|e| {
        log::warn!("cannot look for servers: {e}");
        Vec::new()
    });
    let known = lanchat::tls::known::default_path()
        .and_then(|path| lanchat::tls::known::KnownServers::load(&path).ok());
    if let Some(known) = known {
        let verdicts = client::secure::spoofed_answers(&known, &found);
        let mut verdicts = verdicts.into_iter();
        found.retain(|_| match verdicts.next().flatten() {
            Some(why) => {
                eprintln!("warning: {why}");
                false
            }
            None => true,
        });
    }
    found
}

/// `--scan`: lists the servers; exit status 1 when none answered.
fn scan(args: &ClientArgs, charset: Charset) -> ExitCode {
    let found = servers(args);
    if found.is_empty() {
        say(
            charset,
            &format!(
                "No lanchat server answered on UDP port {}.",
                args.discovery_port
            ),
        );
        return ExitCode::FAILURE;
    }
    for line in discover::numbered(&found) {
        say(charset, &line);
    }
    for warning in discover::same_id_warnings(&found) {
        say(charset, &warning);
    }
    ExitCode::SUCCESS
}

/// No address given: the server found on the LAN, one chosen by the user, or this machine.
/// Several servers answered and the input ended before one was chosen: no server, and the
/// exit status to leave with.
fn find_server(
    args: &ClientArgs,
    port: Option<u16>,
    charset: Charset,
) -> Result<(String, u16, Option<u16>), ExitCode> {
    say(
        charset,
        &format!(
            "Looking for lanchat servers (UDP port {})...",
            args.discovery_port
        ),
    );
    let found = servers(args);
    let ask = |question: &str| {
        let mut out = std::io::stdout().lock();
        // Piped input is not echoed: the question then gets a line of its own.
        let end = if std::io::stdin().is_terminal() {
            " "
        } else {
            "\n"
        };
        let _ = out.write_all(&charset.encode(&format!("{question}{end}")));
        let _ = out.flush();
        drop(out);
        // Through the process-wide buffered stdin, so lines typed ahead stay for the chat.
        let mut line = Vec::new();
        match std::io::stdin().lock().read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(charset.decode(&line)),
        }
    };
    match discover::pick(&found, port, ask, |line| say(charset, line)) {
        Pick::Server(ip, port) => {
            let tls = found
                .iter()
                .find(|f| f.host == ip && f.tcp_port() == Some(port))
                .and_then(|f| f.announcement.port("tls"));
            Ok((ip.to_string(), port, tls))
        }
        Pick::Undecided(n) => {
            eprintln!(
                "error: {n} lanchat servers answered and none was chosen, so none was \
                 connected to; to choose one, run lanchat-client HOST [PORT] with its address"
            );
            Err(ExitCode::FAILURE)
        }
        Pick::Fallback => {
            let port = port.unwrap_or(client::DEFAULT_PORT);
            say(
                charset,
                &format!(
                    "No lanchat server answered; trying this machine ({} port {port}).",
                    client::DEFAULT_HOST
                ),
            );
            Ok((client::DEFAULT_HOST.to_string(), port, None))
        }
    }
}
