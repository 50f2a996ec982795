//! The real binaries as child processes: killed when dropped, their output read line by line
//! with timeouts; the server on port 0 with its ports read from its banner.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long anything may take before a test gives up.
pub const PATIENCE: Duration = super::client::TIMEOUT;

/// A child process that is killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the process to exit, at most `PATIENCE`.
    pub fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines of one output stream, read by a thread and received with timeouts; keeps what
/// was seen so a failure can show the transcript. Lines are kept as bytes (a client may
/// write another charset than UTF-8) and shown as lossy UTF-8.
pub struct Lines {
    name: String,
    rx: Receiver<Vec<u8>>,
    seen: Vec<Vec<u8>>,
}

impl Lines {
    /// Starts reading `stream`.
    pub fn new(name: &str, stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.ends_with(b"\n") {
                    line.pop();
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            name: name.to_string(),
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        let line = self.expect_bytes(needle.as_bytes());
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Waits for a line containing the bytes `needle`; returns it as it came.
    pub fn expect_bytes(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.windows(needle.len().max(1)).any(|w| w == needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line with {:?} in time; saw:\n{}",
                    self.name,
                    String::from_utf8_lossy(needle),
                    self.transcript()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: ended without a line with {:?}; saw:\n{}",
                    self.name,
                    String::from_utf8_lossy(needle),
                    self.transcript()
                ),
            }
        }
    }

    /// Every line seen, up to the end of the stream (the process has exited).
    pub fn rest(&mut self) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => {
                    return self
                        .seen
                        .iter()
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                        .collect()
                }
                Err(RecvTimeoutError::Timeout) => panic!("{}: output did not end", self.name),
            }
        }
    }

    /// The lines that arrive within `wait` from now (there need not be any).
    pub fn during(&mut self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    got.push(String::from_utf8_lossy(&line).into_owned());
                    self.seen.push(line);
                }
                Err(_) => return got,
            }
        }
    }

    fn transcript(&self) -> String {
        let lines: Vec<String> = self
            .seen
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        lines.join("\n")
    }
}

/// A TCP port free on every IPv4 address right now, for a process that must be told its
/// port in advance (`--p2p-port`). It is picked below the kernel's ephemeral range
/// (32768-60999 by default), where the port-0 sockets of the tests running in parallel
/// come from, so none of them takes it before the process binds it.
pub fn fixed_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// The users of [`ServerProcess::start`] and the like, as credentials.txt lines.
pub const PROCESS_USERS: &str = "alice alicepw\nbob bobpw\ncarol carolpw\n";

/// A `lanchat-server` process; `prefix` runs it inside something (e.g. `ip netns exec NS`).
/// Every door it opens is on a port it picks itself (0 or "any"); the banner names them.
pub struct ServerProcess {
    /// The process.
    pub proc: Proc,
    /// Where its native door listens (from the banner).
    pub addr: std::net::SocketAddr,
    /// The TCP port it got.
    pub port: u16,
    /// The web door's port, when it was asked for.
    pub web_port: Option<u16>,
    /// Its standard output after the first line (kept so the pipe stays drained).
    pub stdout: Lines,
    /// Its log.
    pub log: Lines,
}

impl ServerProcess {
    /// Starts the server binary on `bind` and a free port, with `dir` holding its
    /// credentials (`alice alicepw`, `bob bobpw`, `carol carolpw`) and data; no web door.
    pub fn start(prefix: &[&str], bind: &str, dir: &std::path::Path) -> ServerProcess {
        ServerProcess::start_doors(prefix, bind, dir, false)
    }

    /// The same, with the web door open on a free port too.
    pub fn start_with_web(bind: &str, dir: &std::path::Path) -> ServerProcess {
        ServerProcess::start_doors(&[], bind, dir, true)
    }

    /// With the web door, a configuration file (`toml`), and `extra` credentials lines.
    pub fn start_with_web_config(
        bind: &str,
        dir: &std::path::Path,
        toml: &str,
        extra: &str,
    ) -> ServerProcess {
        let config = dir.join("configuration.toml");
        std::fs::write(&config, toml).unwrap();
        let config = config.to_string_lossy().into_owned();
        let users = format!("{PROCESS_USERS}{extra}");
        ServerProcess::start_full(&[], &["--config", &config], bind, dir, true, &users)
    }

    /// On 127.0.0.1 without the web door, knowing only `users` (credentials.txt lines), with
    /// a configuration file (`toml`).
    pub fn start_with_users(dir: &std::path::Path, users: &str, toml: &str) -> ServerProcess {
        let config = dir.join("configuration.toml");
        std::fs::write(&config, toml).unwrap();
        let config = config.to_string_lossy().into_owned();
        ServerProcess::start_full(&[], &["--config", &config], "127.0.0.1", dir, false, users)
    }

    /// With extra command-line options (`--tls-port P` opens the TLS door, closed otherwise).
    pub fn start_with_args(bind: &str, dir: &std::path::Path, args: &[&str]) -> ServerProcess {
        ServerProcess::start_full(&[], args, bind, dir, false, PROCESS_USERS)
    }

    fn start_doors(prefix: &[&str], bind: &str, dir: &std::path::Path, web: bool) -> ServerProcess {
        ServerProcess::start_full(prefix, &[], bind, dir, web, PROCESS_USERS)
    }

    fn start_full(
        prefix: &[&str],
        args: &[&str],
        bind: &str,
        dir: &std::path::Path,
        web: bool,
        users: &str,
    ) -> ServerProcess {
        let credentials = dir.join("credentials.txt");
        std::fs::write(&credentials, users).unwrap();
        let mut command = command(prefix, env!("CARGO_BIN_EXE_lanchat-server"));
        let mut child = command
            .args(args)
            .args(["--web-port", if web { "any" } else { "0" }])
            .args(["--bind", bind, "0", "--irc-port", "0"])
            .args(if args.contains(&"--tls-port") {
                &[][..]
            } else {
                &["--tls-port", "0"][..]
            })
            .arg("--credentials")
            .arg(&credentials)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lanchat-server");
        let mut stdout = Lines::new("server stdout", child.stdout.take().unwrap());
        let log = Lines::new("server log", child.stderr.take().unwrap());
        let proc = Proc(child);
        let first = stdout.expect("lanchat server listening on ");
        let port_of = |line: &str| -> u16 {
            line.rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"))
        };
        let port = port_of(&first);
        let addr = first
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let web_port = web.then(|| port_of(&stdout.expect("lanchat web client listening on ")));
        ServerProcess {
            proc,
            addr,
            port,
            web_port,
            stdout,
            log,
        }
    }
}

/// A `lanchat-client` process with piped standard streams.
pub struct ClientProcess {
    /// The process.
    pub proc: Proc,
    /// Its keyboard.
    pub stdin: Option<ChildStdin>,
    /// What it prints.
    pub out: Lines,
    /// Its errors.
    pub err: Lines,
}

impl ClientProcess {
    /// Starts the client binary with `args`, inside `prefix` if given.
    pub fn start(name: &str, prefix: &[&str], args: &[&str]) -> ClientProcess {
        ClientProcess::start_with_env(name, prefix, args, &[])
    }

    /// Starts the client binary with `args` and extra environment variables. The locale is
    /// `C.UTF-8` unless `env` says otherwise, so the terminal charset does not depend on the
    /// test runner's.
    pub fn start_with_env(
        name: &str,
        prefix: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ClientProcess {
        let mut child = command(prefix, env!("CARGO_BIN_EXE_lanchat-client"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("LANG")
            .env_remove("LC_CTYPE")
            .env("LC_ALL", "C.UTF-8")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lanchat-client");
        ClientProcess {
            stdin: child.stdin.take(),
            out: Lines::new(&format!("{name} stdout"), child.stdout.take().unwrap()),
            err: Lines::new(&format!("{name} stderr"), child.stderr.take().unwrap()),
            proc: Proc(child),
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    /// Types one line of raw bytes (in the client's terminal charset).
    pub fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line).expect("write to the client");
        stdin.write_all(b"\n").expect("write to the client");
        stdin.flush().expect("flush");
    }

    /// Ctrl-D.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit; returns its code.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.proc.wait("lanchat-client").code()
    }
}

/// Client arguments that look for servers on this machine only.
pub fn local_discovery(discovery_port: &str) -> Vec<&str> {
    vec![
        "--discovery-port",
        discovery_port,
        "--discovery-target",
        "127.0.0.1",
        "--discovery-target",
        "127.255.255.255",
    ]
}

/// `program`, or `prefix[0] prefix[1..] program` when a prefix is given.
fn command(prefix: &[&str], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

/// `lines` without lanchat-client's warning that its connection is not encrypted: a
/// client of a server without a TLS door prints it first, whatever the test is about.
pub fn without_unencrypted_warning(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|line| !line.starts_with("Warning: this connection is NOT encrypted"))
        .collect()
}
