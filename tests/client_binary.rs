//! End to end: the real `lanchat-server` binary on a free port, and real `lanchat-client`
//! processes speaking to it through piped standard input and output.
//!
//! Every process is killed when its guard drops (also when a test panics), every read has a
//! timeout (a thread forwards each output line over a channel), and each test has its own
//! server, directories and port, so the tests run in parallel.

mod support;

use std::process::Command;
use support::{without_unencrypted_warning, ClientProcess, ServerProcess};

/// A `lanchat-server` on 127.0.0.1 and a free port, with its own credentials and data.
struct ServerInDir {
    /// The process, its port and its log.
    server: ServerProcess,
    /// Working directory (configuration.toml, credentials and data).
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for ServerInDir {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl std::ops::DerefMut for ServerInDir {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}

impl ServerInDir {
    fn start() -> ServerInDir {
        ServerInDir::start_with_config("")
    }

    /// A server whose working directory holds a `configuration.toml` with `config`.
    fn start_with_config(config: &str) -> ServerInDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("configuration.toml"), config).expect("config");
        let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
        ServerInDir { server, _dir: dir }
    }

    /// A client connected to this server, not logged in yet.
    fn client(&self, name: &str) -> ClientProcess {
        self.client_with(name, &[])
    }

    /// A client with extra command-line options.
    fn client_with(&self, name: &str, extra: &[&str]) -> ClientProcess {
        let port = self.port.to_string();
        let mut args = vec!["127.0.0.1", port.as_str()];
        args.extend_from_slice(extra);
        ClientProcess::start(name, &[], &args)
    }

    /// A client that has logged in as `user` (password `<user>pw`).
    fn logged_in(&self, user: &str) -> ClientProcess {
        let mut c = self.client(user);
        c.send(user);
        c.send(&format!("{user}pw"));
        c.out.expect("Login successful");
        c
    }

    /// Sends SIGTERM, as `kill` or a service manager would.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.proc.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

#[test]
fn private_message_reaches_the_other_client() {
    let server = ServerInDir::start();
    let mut alice = server.logged_in("alice");
    let mut bob = server.logged_in("bob");
    alice.out.expect("*** bob has joined the chat ***");

    alice.send("message bob hello");
    alice.out.expect("Your message was sent to bob.");
    assert_eq!(bob.out.expect("hello"), "alice: hello <private message>");

    bob.send("logout");
    bob.out.expect("Logging off. Goodbye!");
    assert_eq!(bob.exit_code(), Some(0));
    alice.out.expect("*** bob has left the chat ***");
    assert_eq!(
        without_unencrypted_warning(bob.err.rest()),
        Vec::<String>::new(),
        "bob wrote to stderr"
    );
}

#[test]
fn login_dialogue_is_readable_when_piped() {
    let server = ServerInDir::start();
    let mut alice = server.client("alice");
    alice.out.expect("Welcome to lanchat");
    alice.out.expect("Username:");
    alice.send("alice");
    alice.out.expect("Password:");
    alice.send("wrong");
    let err = alice.out.expect("Username or password incorrect");
    assert!(err.starts_with("error: "), "{err}");
    alice.out.expect("Username:");
    alice.send("alice");
    alice.out.expect("Password:");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    alice.send("frobnicate");
    let err = alice.out.expect("frobnicate");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains('\x1b'), "coloured although piped: {err:?}");
}

#[test]
fn connection_refused_is_one_error_line_and_status_1() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut client = ClientProcess::start("client", &[], &["127.0.0.1", &port.to_string()]);
    assert_eq!(client.exit_code(), Some(1));
    let err = client.err.rest();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(&format!("error: cannot connect to 127.0.0.1:{port}: ")),
        "{err:?}"
    );
    assert_eq!(client.out.rest(), Vec::<String>::new());
}

#[test]
fn a_refusal_before_hello_is_shown_as_the_server_wrote_it() {
    use std::io::{BufRead, BufReader, Write};
    // A full server: one line of prose, then the close, never a HELLO.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .write_all(b"The server is full; please try again later.\n")
            .unwrap();
        let mut asked = String::new();
        BufReader::new(&stream).read_line(&mut asked).unwrap();
        assert_eq!(asked, "protocol lanchat/1\n");
    });
    let mut client = ClientProcess::start("client", &[], &["127.0.0.1", &port.to_string()]);
    assert_eq!(client.exit_code(), Some(1));
    let out = client.out.rest();
    assert!(
        out.iter()
            .any(|l| l == "The server is full; please try again later."),
        "{out:?}"
    );
    server.join().unwrap();
}

#[test]
fn usage_errors_exit_with_status_2() {
    let mut client = ClientProcess::start("client", &[], &["--color", "sometimes"]);
    assert_eq!(client.exit_code(), Some(2));
    let mut client = ClientProcess::start("client", &[], &["127.0.0.1", "not-a-port"]);
    assert_eq!(client.exit_code(), Some(2));
    let mut help = ClientProcess::start("client", &[], &["--help"]);
    assert_eq!(help.exit_code(), Some(0));
    let text = help.out.rest().join("\n");
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn end_of_input_logs_out_cleanly() {
    let mut server = ServerInDir::start();
    let mut alice = server.logged_in("alice");
    let mut bob = server.logged_in("bob");
    alice.close_stdin();
    alice.out.expect("Logging off. Goodbye!");
    assert_eq!(alice.exit_code(), Some(0));
    server.log.expect("alice logged out (Requested)");
    assert_eq!(
        bob.out.expect("alice has left"),
        "*** alice has left the chat ***"
    );
}

#[test]
fn server_shutdown_reaches_every_client() {
    let server = ServerInDir::start();
    let mut alice = server.logged_in("alice");
    let mut bob = server.logged_in("bob");
    server.terminate();
    for client in [&mut alice, &mut bob] {
        client.out.expect("The server is going down");
        assert_eq!(client.exit_code(), Some(1));
    }
}

#[test]
fn lost_connection_is_an_error() {
    let server = ServerInDir::start();
    let mut alice = server.logged_in("alice");
    let ServerInDir { server, .. } = server;
    drop(server.proc); // SIGKILL: no goodbye
    assert_eq!(alice.exit_code(), Some(1));
    let err = without_unencrypted_warning(alice.err.rest());
    assert_eq!(err, ["error: connection to the server was lost"]);
}

#[test]
fn heartbeats_keep_a_quiet_client_logged_in_without_showing_anything() {
    let server = ServerInDir::start_with_config("heartbeat_timeout_secs = 1\n");
    let mut alice = server.client_with("alice", &["--heartbeat", "0.2"]);
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    // Quiet for well past the server's heartbeat timeout.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    alice.send("whoelse");
    alice.out.expect("The currently online users are");
    // The laptop sleeps: the client stops, so do its heartbeats, and the server notices.
    let pid = alice.proc.0.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    signal("-CONT");
    alice.out.expect("No heartbeat from your client");
    assert_eq!(alice.exit_code(), Some(1));
    let rest = alice.out.rest();
    assert!(
        rest.iter()
            .all(|l| !l.contains("pong") && !l.contains("still here")),
        "{rest:?}"
    );
}

#[test]
fn a_killed_client_process_is_logged_out_at_once() {
    let server = ServerInDir::start();
    let mut alice = server.logged_in("alice");
    let bob = server.logged_in("bob");
    alice.out.expect("*** bob has joined the chat ***");
    drop(bob); // SIGKILL of the client process, mid-session
    alice
        .out
        .expect("*** bob has left the chat (connection lost) ***");
    alice.send("whoelse");
    alice.out.expect("(Not found)");
}

#[test]
fn a_mail_delivered_again_with_the_same_id_is_shown_once() {
    use std::io::{BufRead, BufReader, Write};
    // A scripted server: the login, then mail of which one comes again with its id (as after
    // a delivery that was cut off), then a logout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        // The prose for people first; the client asks for tagged lines and skips it.
        writer.write_all(b"Hi, person.\nUsername: ").unwrap();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "protocol lanchat/1\n");
        writer
            .write_all(b"\nHELLO lanchat/1 hi\nASK username Username:\n")
            .unwrap();
        reader.read_line(&mut line).unwrap();
        writer.write_all(b"ASK password Password:\n").unwrap();
        reader.read_line(&mut line).unwrap();
        writer
            .write_all(
                b"WELCOME bob Login successful\n\
                  INFO mail Your offline messages (3):\n\
                  MAIL alice 2026-11-22T10:00:00Z private 00000000000000a1 first note\n\
                  MAIL alice 2026-11-22T10:00:01Z private 00000000000000a2 second note\n\
                  MAIL alice 2026-11-22T10:00:00Z private 00000000000000a1 first note\n\
                  MAIL alice 2026-11-22T10:00:02Z private 00000000000000a3 third note\n\
                  BYE logout Goodbye\n",
            )
            .unwrap();
        // Until the client hangs up.
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {}
    });
    let mut bob = ClientProcess::start("bob", &[], &["127.0.0.1", &port]);
    bob.send("bob");
    bob.send("pw");
    bob.out.expect("third note");
    bob.close_stdin();
    let shown = bob.out.rest();
    assert!(!shown.iter().any(|l| l.contains("person")), "{shown:?}");
    let firsts = shown.iter().filter(|l| l.contains("first note")).count();
    assert_eq!(firsts, 1, "the repeat was shown: {shown:?}");
    assert!(shown.iter().any(|l| l.contains("second note")), "{shown:?}");
    server.join().unwrap();
}
