//! The IRC door, driven by real IRC clients nobody here wrote: the `irc` package from PyPI
//! (tests/irc/suite.py, one group of checks per test, each against a fresh server) and
//! Debian's irssi, run headless in tmux.
//!
//! Without python3's `irc` package, irssi or tmux these tests fail, naming the install
//! command; `make test-deps` installs them and `make test` reports the tests as skipped
//! where it could not (tests/needs.sh).

mod support;

use lanchat::config::{AuthMode, Config, OptionalPort};
use lanchat::protocol::Kind;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use support::TestServer;

/// The users of every test server.
const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("bob", "pw-bob"),
    ("carol", "pw-carol"),
];

/// A server with its IRC door open (on any free port), stopped on drop.
fn irc_server(auth: AuthMode, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with_users(USERS, |c| {
        c.irc_port = OptionalPort::Any;
        c.auth = auth;
        tweak(c);
    })
}

/// Where its IRC door listens.
fn irc_addr(server: &TestServer) -> SocketAddr {
    server.irc.expect("the IRC door is open")
}

fn have_python_irc() -> bool {
    Command::new("python3")
        .args(["-c", "import irc.client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs one group of tests/irc/suite.py against a fresh server.
fn suite(group: &str, auth: AuthMode) {
    suite_with(group, auth, |_| {});
}

fn suite_with(group: &str, auth: AuthMode, tweak: impl Fn(&mut Config)) {
    support::require(
        have_python_irc(),
        "python3's `irc` package",
        "python3 -m pip install irc",
    );
    let server = irc_server(auth, tweak);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/irc/suite.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(group)
        .args(["--irc", &irc_addr(&server).port().to_string()])
        .args(["--native", &server.addr.port().to_string()])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "suite.py {group} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(&format!("ok {group}")), "{stdout}");
}

#[test]
fn registration_nicks_caps_and_quit() {
    suite("registration", AuthMode::Open);
}

#[test]
fn privmsg_notice_away_and_their_errors() {
    suite("messages", AuthMode::Open);
}

#[test]
fn channels_join_part_names_mode_topic_who() {
    suite("channels", AuthMode::Open);
}

#[test]
fn whois_ison_userhost_who_lusers_motd_ping() {
    suite("queries", AuthMode::Open);
}

#[test]
fn native_and_irc_users_share_one_world() {
    suite("bridge", AuthMode::Open);
}

#[test]
fn kick_and_invite_with_their_errors_for_irc_and_native_targets() {
    suite("kick_invite", AuthMode::Open);
}

#[test]
fn silent_clients_are_pinged_then_dropped_and_others_see_quit() {
    suite_with("timeouts", AuthMode::Open, |c| {
        c.heartbeat_timeout_secs = 1;
        c.login_timeout_secs = 2;
    });
}

#[test]
fn password_mode_pass_is_the_users_password_with_lockout() {
    suite("password", AuthMode::Password);
}

#[test]
fn irssi_in_tmux_talks_with_a_native_client() {
    let have = |tool: &str, flag: &str| {
        Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    support::require(
        have("irssi", "--version") && have("tmux", "-V"),
        "irssi or tmux",
        "apt-get install irssi tmux",
    );
    let server = irc_server(AuthMode::Open, |_| {});
    let home = tempfile::tempdir().unwrap();
    // One window for everything (channels and queries), so the screen shows it all.
    std::fs::write(
        home.path().join("config"),
        "settings = { \"fe-common/core\" = { autocreate_windows = \"no\"; }; };\n",
    )
    .unwrap();
    let tmux = support::Tmux::new(home.path(), "irssi");
    let command = format!(
        "irssi --home={} -n irssiuser -c 127.0.0.1 -p {}",
        home.path().display(),
        irc_addr(&server).port()
    );
    tmux.start(&command, 160, 50);
    let native = server.connect();
    native.send("nate");
    native.expect(Kind::Welcome);
    native.expect_text("PRESENCE irssiuser login");
    // irssi is in the lobby: a native broadcast shows there.
    tmux.wait_for("#lanchat");
    native.send("broadcast hello lobby from native");
    tmux.wait_for("hello lobby from native");
    // Private messages both ways.
    native.send("message irssiuser hello from native");
    native.expect_text("OK sent");
    tmux.wait_for("hello from native");
    tmux.type_line("/msg nate hello from irssi");
    native.expect_text("MSG irssiuser hello from irssi");
    // A group joined from irssi is a lanchat group.
    tmux.type_line("/join #cs101");
    tmux.wait_for("has joined #cs101");
    native.send("group join cs101");
    native.expect_text("OK group-joined");
    native.send("group send cs101 to the group");
    tmux.wait_for("to the group");
    tmux.type_line("/quit leaving now");
    native.expect_text("PRESENCE irssiuser logout");
}
