//! lanchat-client over TLS (issue 25): it pins the server's key on first use (and shows the
//! fingerprint to compare), refuses a server on the same address with another key and says
//! what to check, and refuses a key that is not the `--fingerprint` it was given. Every
//! client keeps its pins in a temporary directory (`LANCHAT_CONFIG_DIR`).

mod common;

use common::{fixed_port, ClientProcess, ServerProcess};

/// A server with its TLS door on `tls_port` and its own data (so its own key).
fn server(dir: &std::path::Path, tls_port: u16) -> (ServerProcess, String) {
    let port = tls_port.to_string();
    let mut server = ServerProcess::start_with_args("127.0.0.1", dir, &["--tls-port", &port]);
    let line = server.stdout.expect("Server fingerprint: ");
    let short = line.rsplit(' ').next().unwrap().trim().to_string();
    (server, short)
}

fn client(
    server: &ServerProcess,
    tls_port: u16,
    pins: &std::path::Path,
    extra: &[&str],
) -> ClientProcess {
    let (port, tls) = (server.port.to_string(), tls_port.to_string());
    let mut args = vec!["127.0.0.1", port.as_str(), "--tls-port", tls.as_str()];
    args.extend_from_slice(extra);
    ClientProcess::start_with_env(
        "client",
        &[],
        &args,
        &[("LANCHAT_CONFIG_DIR", pins.to_str().unwrap())],
    )
}

#[test]
fn first_use_pins_and_shows_the_fingerprint_then_another_key_on_that_address_is_refused() {
    let (dir_a, dir_b, pins) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let tls_port = fixed_port();
    let (mut real, fingerprint) = server(dir_a.path(), tls_port);
    let mut c = client(&real, tls_port, pins.path(), &[]);
    let first = c.out.expect("First connection to ");
    assert!(
        first.contains(&fingerprint),
        "{first} does not show {fingerprint}"
    );
    c.send("alice");
    c.send("alicepw");
    c.out.expect("Login successful");
    c.close_stdin();
    assert_eq!(c.exit_code(), Some(0));
    let pinned = std::fs::read_to_string(pins.path().join("known_servers")).unwrap();
    assert!(
        pinned.starts_with(&format!("127.0.0.1:{tls_port} {fingerprint}")),
        "{pinned}"
    );
    // The same server again: no first-use notice, straight to the login.
    let mut again = client(&real, tls_port, pins.path(), &[]);
    again.send("bob");
    again.send("bobpw");
    again.out.expect("Login successful");
    drop(again);

    // Another server (another key) takes the address: refused, with what to check.
    real.proc.0.kill().unwrap();
    real.proc.0.wait().unwrap();
    let (impostor, other) = server(dir_b.path(), tls_port);
    assert_ne!(other, fingerprint);
    let mut fooled = client(&impostor, tls_port, pins.path(), &[]);
    let why = fooled.err.expect("its key changed");
    assert!(why.contains(&other) && why.contains(&fingerprint), "{why}");
    assert!(
        why.contains("known_servers") && why.contains("line 1"),
        "{why}"
    );
    assert_eq!(fooled.exit_code(), Some(1));
}

#[test]
fn a_wrong_fingerprint_is_refused_and_the_right_one_logs_in() {
    let (dir, pins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tls_port = fixed_port();
    let (server, fingerprint) = server(dir.path(), tls_port);
    let wrong = "aaaa-bbbb-cccc-dddd";
    let mut refused = client(&server, tls_port, pins.path(), &["--fingerprint", wrong]);
    let why = refused.err.expect("Refusing");
    assert!(why.contains(&fingerprint) && why.contains(wrong), "{why}");
    assert_eq!(refused.exit_code(), Some(1));
    assert!(
        !pins.path().join("known_servers").exists(),
        "a refused key was pinned"
    );
    let mut right = client(
        &server,
        tls_port,
        pins.path(),
        &["--fingerprint", &fingerprint],
    );
    right.send("alice");
    right.send("alicepw");
    right.out.expect("Login successful");
}
