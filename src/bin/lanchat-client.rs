//! `lanchat-client [HOST] [PORT] [--color auto|always|never] [--p2p-port PORT]`
//!
//! Thin: parses arguments, sets up logging, and runs the library's client.

use clap::Parser;
use lanchat::client::{self, ColorChoice, Options};
use std::process::ExitCode;

/// The lanchat client: log in to a lanchat server and chat.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_long_help = "\
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
     login), the connection failed or was lost
  2  usage error"
)]
struct Args {
    /// Server address: IPv4, IPv6 or a host name.
    #[arg(default_value = client::DEFAULT_HOST)]
    host: String,
    /// Server TCP port.
    #[arg(default_value_t = client::DEFAULT_PORT)]
    port: u16,
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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let options = Options {
        host: args.host,
        port: args.port,
        color: args.color,
        heartbeat: std::time::Duration::from_secs_f64(args.heartbeat.clamp(0.05, 3600.0)),
        p2p_port: args.p2p_port,
    };
    match client::run(&options) {
        Ok(ending) => ending.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
