//! Issue 26, what a newcomer meets first, with the real binaries: a second server on one
//! machine started with the Makefile's own arguments (`make -n run-server ...`), a port clash
//! that names every busy port and the one command that avoids them, the server's banner
//! ending with "Press Ctrl-C", and the client on a `TERM=dumb` terminal (a real pty) reading
//! plain lines without a warning.

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{Lines, Proc, ServerProcess, PATIENCE};

/// The server binary Cargo built for these tests.
const SERVER: &str = env!("CARGO_BIN_EXE_lanchat-server");

/// A configuration in `dir` for a server on loopback only, without discovery (other tests
/// listen for it), with `alice alicepw` as its one user. Returns its path.
fn loopback_config(dir: &Path) -> String {
    std::fs::write(dir.join("credentials.txt"), "alice alicepw\n").unwrap();
    let config = dir.join("configuration.toml");
    std::fs::write(
        &config,
        "bind = \"127.0.0.1\"\ndiscovery = false\ndata_dir = \"data\"\ntls_port = \"any\"\nirc_tls_port = 0\n",
    )
    .unwrap();
    config.to_string_lossy().into_owned()
}

/// The command `make run-server` runs with `vars`, as make prints it (`make -n`), with the
/// server Cargo built for these tests in place of the release build.
fn make_run_server(vars: &[String]) -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("make")
        .args(["-n", "--no-print-directory", "-C", root, "run-server"])
        .args(vars)
        .env_remove("MAKEFLAGS")
        .output();
    support::require(out.is_ok(), "make", "apt-get install make");
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "make -n run-server: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("./target/release/lanchat-server "))
        .unwrap_or_else(|| panic!("no server command in:\n{stdout}"));
    let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
    words[0] = SERVER.to_string();
    words
}

/// Starts `words` (program first) and waits for its banner's first line.
fn start(words: &[String], dir: &Path) -> (Proc, Lines) {
    let (proc, stdout, _) = start_banner(words, dir);
    (proc, stdout)
}

/// The port at the end of a banner line (`... 127.0.0.1:PORT`, `... port PORT ...`).
fn port_in(line: &str) -> u16 {
    line.split([':', ' '])
        .filter_map(|w| w.trim_end_matches(['.', ')']).parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// [`start`], also reading the ports the banner names: native, web, IRC.
fn start_banner(words: &[String], dir: &Path) -> (Proc, Lines, [u16; 3]) {
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lanchat-server");
    let mut stdout = Lines::new("server stdout", child.stdout.take().unwrap());
    let proc = Proc(child);
    let native = port_in(&stdout.expect("lanchat server listening on 127.0.0.1:"));
    let mut ports = [native, 0, 0];
    if words.iter().any(|w| w == "--web-port") {
        ports[1] = port_in(&stdout.expect("lanchat web client listening on "));
    }
    if words.iter().any(|w| w == "--irc-port") {
        ports[2] = port_in(&stdout.expect("IRC clients connect to port "));
    }
    (proc, stdout, ports)
}

/// Logs in as alice on the native port and returns the welcome line; logs out again and
/// waits for the BYE, so alice is free for the IRC door next (duplicate logins are refused,
/// and a dropped connection may not be noticed before the IRC login arrives).
fn login(port: u16) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    (&stream)
        .write_all(b"protocol lanchat/1\nalice\nalicepw\n")
        .unwrap();
    let mut lines = BufReader::new(&stream).lines();
    let welcome = loop {
        match lines.next() {
            Some(line) if line.as_ref().is_ok_and(|l| l.starts_with("WELCOME")) => {
                break line.unwrap()
            }
            Some(line) => drop(line.expect("a line before the timeout")),
            None => panic!("closed before WELCOME on port {port}"),
        }
    };
    (&stream).write_all(b"logout\n").unwrap();
    for line in lines {
        if line.expect("a line before the timeout").starts_with("BYE") {
            return welcome;
        }
    }
    panic!("closed before BYE on port {port}");
}

/// The first line of an HTTP answer from `port`.
fn http_status(port: u16) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    (&stream)
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    BufReader::new(&stream).read_line(&mut status).unwrap();
    status
}

/// The welcome (001) an IRC client gets after registering on `port`.
fn irc_welcome(port: u16) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    (&stream)
        .write_all(b"PASS alicepw\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n")
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(&stream).lines() {
        let line = line.expect("a line before the timeout");
        if line.contains(" 001 ") {
            return line;
        }
        seen.push(line);
    }
    panic!("no 001 on port {port}; saw {seen:?}");
}

#[test]
fn two_servers_from_the_makefile_run_side_by_side_on_their_own_ports() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path());
    // Each door on any free port (the server binds it; nothing can take it in between), the
    // ports read from the banner: what the test checks is that make passes every variable on.
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for n in 0..2 {
        let words = make_run_server(&[
            "PORT=0".to_string(),
            "WEB_PORT=any".to_string(),
            "IRC_PORT=any".to_string(),
            format!("CONFIG={config}"),
            format!("DATA_DIR={}", dir.path().join(format!("data{n}")).display()),
        ]);
        for (flag, value) in [
            ("--port", "0"),
            ("--web-port", "any"),
            ("--irc-port", "any"),
        ] {
            let at = words.iter().position(|w| w == flag);
            assert_eq!(
                at.and_then(|i| words.get(i + 1)).map(String::as_str),
                Some(value),
                "{flag} in {words:?}"
            );
        }
        let (proc, stdout, bound) = start_banner(&words, dir.path());
        servers.push((proc, stdout));
        ports.push(bound);
    }
    assert_ne!(ports[0], ports[1], "two servers, one set of ports");
    for p in &ports {
        assert!(login(p[0]).contains("alice"), "native door on {}", p[0]);
        assert!(http_status(p[1]).contains(" 200 "), "web door on {}", p[1]);
        assert!(
            irc_welcome(p[2]).contains(" 001 alice "),
            "IRC door on {}",
            p[2]
        );
    }
    // Without DATA_DIR, each PORT gets a data directory of its own.
    let default = make_run_server(&["PORT=4120".into()]);
    assert!(default.ends_with(&["--data-dir".into(), "data-4120".into()]));
    assert!(!make_run_server(&[]).contains(&"--data-dir".to_string()));
}

/// Runs the server on `ports` (native, web, IRC) while all of them are held by others.
fn clash(ports: [u16; 3], config: &str, make: bool) -> Output {
    let mut command = Command::new(SERVER);
    command
        .args(["--config", config, "--port", &ports[0].to_string()])
        .args(["--web-port", &ports[1].to_string()])
        .args(["--irc-port", &ports[2].to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    if make {
        command.env("MAKELEVEL", "1");
    } else {
        command.env_remove("MAKELEVEL");
    }
    command.output().expect("run lanchat-server")
}

#[test]
fn a_port_clash_names_every_busy_port_and_one_command_that_avoids_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path());
    let held: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    let ports: [u16; 3] = std::array::from_fn(|i| held[i].local_addr().unwrap().port());

    let out = clash(ports, &config, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (port, door) in ports.iter().zip(["tcp", "web", "irc"]) {
        assert!(
            stderr.contains(&format!("port {port} ({door}) on 127.0.0.1 is in use")),
            "{door} port {port} not named:\n{stderr}"
        );
    }
    // The clash was found before the data directory was opened: a second server started by
    // mistake never repairs or compacts the first one's files.
    assert!(
        !dir.path().join("data").exists(),
        "the data directory was opened"
    );
    // The suggested command line works as given: its ports were free.
    let suggested = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix(SERVER))
        .unwrap_or_else(|| panic!("no command suggested:\n{stderr}"));
    let mut words = vec![SERVER.to_string()];
    words.extend(suggested.split_whitespace().map(String::from));
    assert!(words.contains(&"--config".to_string()), "{words:?}");
    for port in ports {
        assert!(!words.contains(&port.to_string()), "{port} in {words:?}");
    }
    let (_server, _stdout) = start(&words, dir.path());

    // Started by make, the command is make's.
    let out = clash(ports, &config, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let make = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("make run-server "))
        .unwrap_or_else(|| panic!("no make command suggested:\n{stderr}"));
    for var in ["PORT=", "WEB_PORT=", "IRC_PORT=", "CONFIG="] {
        assert!(make.contains(&format!(" {var}")), "{var} in {make}");
    }
    drop(held);
}

/// Output of a child whose standard output and error share one pipe, in the order written.
fn merged_output(mut command: Command) -> (Proc, std::io::PipeReader) {
    let (reader, writer) = std::io::pipe().unwrap();
    let child = command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .expect("start");
    // Our copies of the writing end are gone with `command`, so EOF comes when it exits.
    drop(command);
    (Proc(child), reader)
}

#[test]
fn the_server_banner_ends_with_how_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path());
    let mut command = Command::new(SERVER);
    command
        .args([
            "--config",
            &config,
            "0",
            "--web-port",
            "any",
            "--irc-port",
            "0",
        ])
        .env("RUST_LOG", "info");
    let (proc, reader) = merged_output(command);
    let mut lines = Lines::new("server output", reader);
    lines.expect("Press Ctrl-C to stop the server.");
    // Anything after it would show up within this long (the listeners start at once).
    std::thread::sleep(Duration::from_millis(300));
    drop(proc);
    let all = lines.rest();
    let last = all.iter().rposition(|l| !l.trim().is_empty()).unwrap();
    assert!(
        all[last].contains("Press Ctrl-C"),
        "output after the banner:\n{}",
        all.join("\n")
    );
    assert_eq!(
        all.iter().filter(|l| l.contains("listening on")).count(),
        5,
        "two banner lines and three INFO lines, one per open door (native, web, TLS):\n{}",
        all.join("\n")
    );
}

/// A pseudo-terminal: the controlling side and the side a program uses as its terminal.
fn openpty() -> (File, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the integers we own and reads nothing
    // else (null name, termios and window size); on success we take ownership of both.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and belong to nobody else.
    unsafe {
        (
            File::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

#[test]
fn on_a_dumb_terminal_the_client_reads_plain_lines_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
    let (mut controller, terminal) = openpty();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lanchat-client"));
    // SAFETY: between fork and exec the closure only makes two async-signal-safe calls:
    // a new session, whose controlling terminal becomes the pty on standard input, as a
    // login shell's would be.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .args(["127.0.0.1", &server.port.to_string()])
        .env("TERM", "dumb")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::from(terminal))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lanchat-client");
    let mut err = Lines::new("client stderr", child.stderr.take().unwrap());
    let mut client = Proc(child);
    let mut screen = Lines::new("client terminal", controller.try_clone().unwrap());
    controller.write_all(b"alice\nalicepw\n").unwrap();
    screen.expect("Login successful");
    controller.write_all(b"logout\n").unwrap();
    screen.expect("Logging off");
    let deadline = Instant::now() + PATIENCE;
    while client.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the client did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = err.rest();
    assert!(
        stderr.iter().all(|l| !l.contains("WARN")),
        "warnings on a dumb terminal:\n{}",
        stderr.join("\n")
    );
}

/// `sh tests/needs.sh skips` in the repository with `env`, as `make test` runs it.
fn needs_skips(env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new("sh")
        .args(["tests/needs.sh", "skips"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CI")
        .envs(env.iter().copied())
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn make_test_reports_a_test_it_cannot_run_as_skipped_and_says_why() {
    let (filter, said) = needs_skips(&[("LANCHAT_CHROMIUM", "/nonexistent/chromium")]);
    assert!(filter.contains("binary(browser)"), "filter: {filter}");
    assert!(
        said.contains("SKIPPED tests/browser.rs: needs /nonexistent/chromium"),
        "{said}"
    );
    // Under CI nothing is skipped: the test runs and fails, naming what is missing.
    let (filter, _) = needs_skips(&[
        ("LANCHAT_CHROMIUM", "/nonexistent/chromium"),
        ("CI", "true"),
    ]);
    assert!(filter.trim().is_empty(), "filter under CI: {filter}");
    // Every test the filters name by name exists, so a rename cannot turn a skip into a
    // failure nobody expected (or the other way round).
    let needs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/needs.sh"))
            .unwrap();
    let named: String = ["tests/irc.rs", "tests/it/tls.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap())
        .collect();
    for name in needs
        .split("test(=")
        .skip(1)
        .filter_map(|s| s.split(')').next())
    {
        let function = name.rsplit("::").next().unwrap_or(name);
        assert!(
            named.contains(&format!("fn {function}()")),
            "{name} is not in tests/irc.rs or tests/it/tls.rs"
        );
    }
}

#[test]
fn no_test_passes_by_returning_early_when_what_it_needs_is_missing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut dirs = vec![root.join("tests"), root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("node_modules") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path != Path::new(file!()) {
                let text = std::fs::read_to_string(&path).unwrap();
                // A test that prints that it skipped itself has passed without running.
                let says_skip =
                    text.contains("SKIPPED") || text.to_lowercase().contains("println!(\"skip");
                if says_skip && !path.ends_with("first_run.rs") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tests that say SKIPPED and pass; use support::require and tests/needs.sh: {offenders:?}"
    );
}
