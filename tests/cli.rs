//! The binaries' command lines, run as real processes: `hash-password`, `add-user`, a bad
//! `--config`, `--help`, and each course project's spelling (seed 004's `-sp PORT` for the
//! server, `-u USERNAME -sip SERVER_IP -sp SERVER_PORT` for the client). Passwords come in
//! on a pipe, as a script would send them; the terminal (hidden-input) path needs a TTY and
//! is checked by hand.

mod support;

use lanchat::credentials::Credentials;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;
use support::{ClientProcess, Lines, Proc, ServerProcess};

/// The server binary Cargo built for these tests.
const BIN: &str = env!("CARGO_BIN_EXE_lanchat-server");

/// Runs the server binary in `dir` with `args`, writes `stdin` to it and waits.
fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lanchat-server");
    // The tool may exit before reading (e.g. a refused name): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for lanchat-server")
}

/// Standard output and error as text, for assertions and failure messages.
fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failure with `code` and exactly one `error:` line on stderr, which is returned.
fn expect_error(out: &Output, code: i32) -> String {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr}");
    errors[0].to_string()
}

#[test]
fn hash_password_prints_a_phc_string_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["hash-password"], "correct horse\n");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let phc = stdout.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$m="), "{phc}");
    assert!(!stdout.contains("correct horse") && !stderr.contains("correct horse"));

    let users = Credentials::parse(&format!("alice {phc}\n")).unwrap();
    // How long one login costs with the default parameters, for docs/hardening.md: the fastest
    // of three, so that a busy machine skews it less.
    let fastest = (0..3)
        .map(|_| {
            let started = Instant::now();
            assert!(users.verify("alice", "correct horse"));
            started.elapsed()
        })
        .min()
        .unwrap();
    eprintln!("verify of a default-params hash took {fastest:?}");
    assert!(!users.verify("alice", "correct horse\n"));
    assert!(!users.verify("alice", "correct hors"));
}

#[test]
fn hash_password_keeps_inner_spaces_and_drops_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["hash-password"], " two  words \r\n");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stderr: {stderr}");
    let users = Credentials::parse(&format!("bob {}", stdout.trim_end())).unwrap();
    assert!(users.verify("bob", " two  words "));
}

#[test]
fn hash_password_refuses_an_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["hash-password"], "\n");
    assert!(out.stdout.is_empty());
    assert!(expect_error(&out, 1).contains("empty password"));
}

#[test]
fn add_user_appends_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.txt");
    // An existing file without a final newline: the new line must not be glued to it.
    std::fs::write(&file, "# class of 2025\nolduser oldpw").unwrap();
    let file_arg = file.to_str().unwrap();

    let out = run(
        dir.path(),
        &["add-user", "newuser", "--credentials", file_arg],
        "new-pw\n",
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(!stderr.contains("new-pw"), "{stderr}");
    let users = Credentials::load(&file).unwrap();
    assert_eq!(users.usernames(), ["newuser", "olduser"]);
    assert!(users.verify("newuser", "new-pw"));
    assert!(users.verify("olduser", "oldpw"));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("\nnewuser $argon2id$"), "{written}");

    let before = std::fs::read_to_string(&file).unwrap();
    let out = run(
        dir.path(),
        &["add-user", "newuser", "--credentials", file_arg],
        "other-pw\n",
    );
    let error = expect_error(&out, 1);
    assert!(
        error.contains("newuser") && error.contains("already"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn add_user_checks_the_name_and_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["add-user", "../etc"], "pw\n");
    assert!(expect_error(&out, 2).contains("not a valid username"));

    // With no --credentials, the configuration's `credentials` path (relative to it) is used.
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/lanchat.toml"),
        "credentials = \"class.txt\"\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["add-user", "carol", "--config", "conf/lanchat.toml"],
        "carol-pw\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let users = Credentials::load(&dir.path().join("conf/class.txt")).unwrap();
    assert!(users.verify("carol", "carol-pw"));
}

#[test]
fn bad_config_exits_2_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "# comment\nport = 4119\nno_such_key = 1\n",
    )
    .unwrap();
    let out = run(dir.path(), &["--config", "bad.toml"], "");
    let error = expect_error(&out, 2);
    assert!(error.contains("no_such_key"), "{error}");
    assert!(error.contains("line 3"), "{error}");
}

#[test]
fn help_exits_0_and_lists_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--help"], "");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for word in [
        "[PORT]",
        "--config",
        "--credentials",
        "hash-password",
        "add-user",
    ] {
        assert!(stdout.contains(word), "{word} missing from:\n{stdout}");
    }
}

#[test]
fn a_tool_with_server_arguments_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["4119", "hash-password"], "pw\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// Starts the server binary with `args` in `dir` (with a credentials file and no
/// discovery) and returns it with the port it says it listens on.
fn server_with(dir: &Path, args: &[&str]) -> (Proc, u16, Lines) {
    std::fs::write(dir.join("credentials.txt"), "alice alicepw\n").unwrap();
    std::fs::write(
        dir.join("configuration.toml"),
        // No door on a fixed port: a server already running on this machine (make
        // run-server holds 8080) must not make these tests fail.
        "discovery = false\nirc_port = 0\nweb_port = 0\ntls_port = 0\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--bind", "127.0.0.1"])
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lanchat-server");
    let mut out = Lines::new("server", child.stdout.take().unwrap());
    let proc = Proc(child);
    let line = out.expect("lanchat server listening on 127.0.0.1:");
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    (proc, port, out)
}

#[test]
fn server_port_0_in_every_spelling_prints_the_port_it_got() {
    for args in [&["0"][..], &["--port", "0"], &["-sp", "0"], &["--sp", "0"]] {
        let dir = tempfile::tempdir().unwrap();
        let (_proc, port, mut out) = server_with(dir.path(), args);
        assert_ne!(port, 0, "{args:?}");
        out.expect(&format!("lanchat-client 127.0.0.1 {port}"));
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the printed port listens");
    }
}

#[test]
fn server_port_given_twice_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["4119", "-sp", "4120"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn client_takes_seed_004s_flags_and_answers_the_username_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
    let port = server.port.to_string();
    let mut alice = ClientProcess::start(
        "alice",
        &[],
        &["-u", "alice", "-sip", "127.0.0.1", "-sp", &port],
    );
    alice.out.expect("Username: alice");
    alice.out.expect("Password:");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    alice.send("logout");
    assert_eq!(alice.exit_code(), Some(0));

    // The long spellings, and a wrong password: the username is asked again, of the user.
    let mut bob = ClientProcess::start(
        "bob",
        &[],
        &["--user", "bob", "--sip", "127.0.0.1", "--sp", &port],
    );
    bob.out.expect("Username: bob");
    bob.send("wrong");
    bob.out.expect("incorrect");
    bob.out.expect("Username:");
    bob.send("bob");
    bob.send("bobpw");
    bob.out.expect("Login successful");
}

#[test]
fn client_host_given_twice_is_a_usage_error() {
    let mut c = ClientProcess::start("c", &[], &["127.0.0.1", "-sip", "127.0.0.2"]);
    assert_eq!(c.exit_code(), Some(2));
    let mut c = ClientProcess::start("c", &[], &["--encoding", "klingon", "127.0.0.1"]);
    c.err.expect("unknown encoding `klingon`");
    assert_eq!(c.exit_code(), Some(2));
}

#[test]
fn client_help_names_discovery_encoding_and_seed_004s_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_lanchat-client"))
        .arg("--help")
        .output()
        .expect("run lanchat-client --help");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for word in [
        "--scan",
        "--discovery-port",
        "--encoding",
        "--sip",
        "--sp",
        "-u, --user",
        "-sip SERVER_IP",
    ] {
        assert!(stdout.contains(word), "{word} missing from:\n{stdout}");
    }
}

/// A thread per user wants glibc's per-thread malloc caches small (issue 7's 10,000 users):
/// the server starts itself again with the tunable, keeping its process id, arguments and
/// name.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_server_runs_with_small_per_thread_malloc_caches() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, port, _out) = server_with(dir.path(), &["0"]);
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens");
    let pid = proc.0.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ
            .split('\0')
            .any(|v| v.starts_with("GLIBC_TUNABLES=") && v.contains("glibc.malloc.tcache_max=128")),
        "{environ}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with(BIN.as_bytes()), "{cmdline:?}");
    // `ps`, `top` and `pkill lanchat-server` go by this name, not by the `exe` of
    // /proc/self/exe that the second start was run from.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "lanchat-server");
}

#[test]
fn a_plaintext_credentials_file_gets_one_startup_warning_saying_how_to_hash_it() {
    let dir = tempfile::tempdir().unwrap();
    let hashed = lanchat::credentials::hash_password_with(
        "bobpw",
        lanchat::credentials::HashParams::CHEAP_FOR_TESTS,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("credentials.txt"),
        format!("alice alicepw\nbob {hashed}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("configuration.toml"),
        "discovery = false\nirc_port = 0\nweb_port = 0\ntls_port = 0\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["0", "--bind", "127.0.0.1"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lanchat-server");
    let mut out = Lines::new("stdout", child.stdout.take().unwrap());
    let mut err = Lines::new("stderr", child.stderr.take().unwrap());
    let mut proc = Proc(child);
    out.expect("lanchat server listening on 127.0.0.1:");
    proc.0.kill().unwrap();
    proc.0.wait().unwrap();
    let stderr = err.rest();
    let warnings: Vec<&String> = stderr.iter().filter(|l| l.contains("plaintext")).collect();
    assert_eq!(warnings.len(), 1, "{stderr:?}");
    let warning = warnings[0];
    assert!(
        warning.contains("credentials.txt: 1 of 2 users")
            && warning.contains("lanchat-server hash-password")
            && warning.contains("add-user"),
        "{warning}"
    );
    assert!(!warning.contains("alicepw"), "{warning}");
}
