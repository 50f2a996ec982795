//! Terminals that are not UTF-8: the real client under `--encoding latin1` (and under a
//! Latin-1 locale) with a pipe for a keyboard, against a UTF-8 user. The wire is UTF-8
//! either way.

mod support;

use support::{ClientProcess, ServerProcess};

#[test]
fn a_latin1_terminal_sends_and_receives_non_ascii_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
    let port = server.port.to_string();

    let mut alice =
        ClientProcess::start("alice", &[], &["127.0.0.1", &port, "--encoding", "latin1"]);
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    let mut bob = ClientProcess::start("bob", &[], &["127.0.0.1", &port]);
    bob.send("bob");
    bob.send("bobpw");
    bob.out.expect("Login successful");

    // Typed in Latin-1 ("café" is 63 61 66 E9), read by bob in UTF-8.
    alice.send_bytes(b"message bob caf\xe9 cr\xe8me");
    assert_eq!(bob.out.expect("caf"), "alice: café crème <private message>");
    // Sent in UTF-8, shown to alice in Latin-1 (ï is EF); what Latin-1 lacks becomes '?'.
    bob.send("message alice naïve – 日本");
    let line = alice.out.expect_bytes(b"na");
    assert_eq!(line, b"bob: na\xefve \x96 ?? <private message>".to_vec());

    // No --encoding: the locale's charset.
    let mut carol = ClientProcess::start_with_env(
        "carol",
        &[],
        &["127.0.0.1", &port],
        &[("LC_ALL", "fr_FR.ISO-8859-1")],
    );
    carol.send("carol");
    carol.send("carolpw");
    carol.out.expect("Login successful");
    carol.send_bytes(b"broadcast d\xe9j\xe0 vu");
    assert_eq!(bob.out.expect("vu"), "carol: déjà vu <broadcast message>");
    alice.out.expect_bytes(b"carol: d\xe9j\xe0 vu");
}
