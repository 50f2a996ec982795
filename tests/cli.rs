//! The `lanchat-server` binary's command line, run as a real process: `hash-password`,
//! `add-user`, a bad `--config` and `--help`. Passwords come in on a pipe, as a script would
//! send them; the terminal (hidden-input) path needs a TTY and is checked by hand.

use lanchat::credentials::Credentials;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

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
    // How long one login costs with the default parameters, for the README: the fastest
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
