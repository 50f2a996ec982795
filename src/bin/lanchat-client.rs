//! `lanchat-client [HOST] [PORT] [--color auto|always|never]`
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

Exit status:
  0  you logged out (logout, Ctrl-D, Ctrl-C) or left before logging in
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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let options = Options {
        host: args.host,
        port: args.port,
        color: args.color,
        heartbeat: std::time::Duration::from_secs_f64(args.heartbeat.clamp(0.05, 3600.0)),
    };
    match client::run(&options) {
        Ok(ending) => ending.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
