//! The real `telnet` (Debian's inetutils-telnet) in a real terminal (tmux), against the
//! server binary: a person reads prose, and a telnet that negotiates does not show the
//! password as it is typed (issue 26 item 1).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use support::{ServerProcess, Tmux};

/// Logs `name` in on a raw socket as a program does (tagged lines); returns the stream.
fn program_login(port: u16, name: &str, password: &str) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(support::PATIENCE)).unwrap();
    (&stream)
        .write_all(format!("protocol lanchat/1\n{name}\n{password}\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while !line.starts_with("WELCOME ") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed before WELCOME"
        );
    }
    stream
}

/// The screen without the spaces at the ends of its lines.
fn trimmed(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    lines.join("\n")
}

#[test]
fn telnet_in_tmux_reads_prose_and_a_negotiating_telnet_hides_the_password() {
    let have = |tool: &str, flag: &str| {
        Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    support::require(
        have("telnet", "--version") && have("tmux", "-V"),
        "telnet or tmux",
        "apt-get install telnet tmux",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&[], "127.0.0.1", dir.path());
    let port = server.port;

    // A port written with a leading '-' makes telnet negotiate (`--` ends its options).
    let negotiating = Tmux::new(dir.path(), "telnet");
    negotiating.start(&format!("telnet 127.0.0.1 -- -{port}; sleep 60"), 120, 40);
    negotiating.wait_for("Username: ");
    negotiating.type_line("alice");
    negotiating.wait_for("Password: ");
    negotiating.type_line("alicepw");
    let screen = trimmed(&negotiating.wait_for("No messages received while offline."));
    assert!(
        screen.contains(
            "Welcome to lanchat. Please log in.\nUsername: alice\nPassword:\nLogin successful"
        ),
        "{screen}"
    );
    assert!(
        !screen.contains("alicepw"),
        "the password was shown:\n{screen}"
    );

    let bob = program_login(port, "bob", "bobpw");
    negotiating.wait_for("*** bob has joined the chat ***");
    (&bob)
        .write_all(b"message alice hi from a program\n")
        .unwrap();
    negotiating.wait_for("bob: hi from a program <private message>");
    negotiating.type_line("whoelse");
    negotiating.wait_for("The currently online users are:\n  bob");
    negotiating.type_line("logout");
    let screen = negotiating.wait_for("Logging off. Goodbye!");
    for tag in [
        "HELLO ",
        "ASK ",
        "WELCOME ",
        "LIST ",
        "USER ",
        "MSG ",
        "PRESENCE ",
    ] {
        assert!(
            !screen.lines().any(|l| l.starts_with(tag)),
            "a tagged line:\n{screen}"
        );
    }

    // Plain `telnet HOST PORT` does not negotiate: it is nc to the server, which cannot
    // hide the password; the prose is the same.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Tmux::new(plain_dir.path(), "plain");
    plain.start(&format!("telnet 127.0.0.1 {port}; sleep 60"), 120, 40);
    plain.wait_for("Username: ");
    plain.type_line("carol");
    plain.wait_for("Password: ");
    plain.type_line("carolpw");
    let screen = trimmed(&plain.wait_for("No messages received while offline."));
    assert!(
        screen.contains("Password: carolpw\nLogin successful"),
        "{screen}"
    );
    drop(bob);
}
