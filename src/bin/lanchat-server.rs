//! `lanchat-server [PORT] [--config FILE] [--credentials FILE] [--bind ADDR]`
//!
//! Thin: parses arguments, sets up logging and Ctrl-C, and runs the library's server.

use clap::Parser;
use lanchat::config::Config;
use lanchat::server::Server;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The lanchat server: a LAN chat server for classrooms.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// TCP port to listen on (overrides `port` in the configuration; 0 picks a free one).
    port: Option<u16>,
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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let config = match load_config(&args) {
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
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    print_addresses(addr);
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

fn load_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None if PathBuf::from("configuration.toml").exists() => {
            Config::load(&PathBuf::from("configuration.toml")).map_err(|e| e.to_string())?
        }
        None => Config::default(),
    };
    if let Some(p) = args.port {
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
    Ok(config)
}

/// Prints where students can connect: every non-loopback interface address. A closed
/// stdout is not a reason to stop serving, so write errors are ignored.
fn print_addresses(addr: std::net::SocketAddr) {
    use std::io::Write;
    let port = addr.port();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "lanchat server listening on {addr}");
    let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
    let mut reachable: Vec<String> = ifaces
        .iter()
        .filter(|i| !i.is_loopback())
        .filter(|i| match (addr.ip(), i.ip()) {
            (IpAddr::V4(b), IpAddr::V4(_)) => b.is_unspecified() || b == i.ip(),
            (IpAddr::V6(b), _) => b.is_unspecified() || IpAddr::V6(b) == i.ip(),
            _ => false,
        })
        .map(|i| match i.ip() {
            IpAddr::V6(ip) => format!("  lanchat-client {ip} {port}    ({})", i.name),
            ip => format!("  lanchat-client {ip} {port}    ({})", i.name),
        })
        .collect();
    reachable.dedup();
    if reachable.is_empty() {
        let _ = writeln!(
            out,
            "Connect from this machine with: lanchat-client 127.0.0.1 {port}"
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
    let _ = writeln!(out, "Press Ctrl-C to stop the server.");
    let _ = out.flush();
}
