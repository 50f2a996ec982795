//! Issue 7 (capacity): a connection thread's stack is small (ten thousand of them fit in
//! little memory), so the deepest thing any connection does must stay far from its end: an
//! overflow would abort the whole server. Every connection of this test's server paints its free stack and
//! reports how deep it went, over an argon2 login, every kind of command, the IRC door and
//! the web door (in a debug build, whose frames are larger than a release build's).

use crate::support::{IrcClient, TestServer, TIMEOUT, USERS};
use lanchat::clock::SystemClock;
use lanchat::config::OptionalPort;
use lanchat::credentials::{hash_password, Credentials};
use lanchat::protocol::Kind;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// A connection thread's stack (`CONNECTION_STACK_BYTES` in src/server/mod.rs).
const STACK_BYTES: usize = 256 * 1024;

#[test]
fn the_deepest_paths_of_a_connection_use_a_small_part_of_its_stack() {
    let hash = hash_password("hashed-pw").unwrap();
    let creds = Credentials::from_pairs(USERS.iter().copied().chain([("hashy", hash.as_str())]));
    let mut server = TestServer::start_full(
        |c| {
            c.web_port = OptionalPort::Any;
            c.irc_port = OptionalPort::Any;
        },
        creds,
        Arc::new(SystemClock),
        None,
    );
    // This server's connection threads only: no other test's server paints its stacks.
    server.stack_gauge.enable();

    // Native: an argon2 login, then a command of every kind.
    let bob = server.login("bob");
    let c = server.connect();
    c.send("hashy");
    c.expect_ask("password");
    c.send("wrong");
    c.expect_err("bad-login");
    c.expect_ask("username");
    c.send("hashy");
    c.expect_ask("password");
    c.send("hashed-pw");
    c.expect(Kind::Welcome);
    for command in [
        "help",
        "whoelse",
        "wholast 5",
        "message bob hello there",
        "message nobody-like-this hi",
        "broadcast hello all",
        "broadcast message to everyone",
        "broadcast user bob alice message hi both",
        "personalintro I test stacks",
        "history bob 5",
        "block alice",
        "blocked",
        "unblock alice",
        "status busy",
        "status",
        "group create stackers",
        "group send stackers hi group",
        "group members stackers",
        "group list",
        "chat bob",
        "getaddress bob",
        "addressbook",
        "snum",
        "heartbeat",
        "ping",
        &"x".repeat(10_000),
    ] {
        c.send(command);
    }
    c.send("logout");
    c.wait_for("BYE logout", |l| l.kind == Kind::Bye);
    bob.logout();

    // IRC: registration, the lobby, a channel, a message, queries.
    let mut irc = IrcClient::connect(server.irc.expect("the IRC door is open"));
    irc.send("PASS pw-carol\r\nNICK carol\r\nUSER carol 0 * :Carol");
    irc.expect(" 001 ");
    irc.send(
        "JOIN #stack\r\nPRIVMSG #stack :hi\r\nWHO #stack\r\nWHOIS carol\r\nLIST\r\nNAMES #stack\r\nMODE #stack\r\nTOPIC #stack :deep\r\nPING :x",
    );
    irc.expect("PONG");
    irc.quit();

    // Web: the page over HTTP.
    let web = server.web.expect("the web door is open");
    let mut page = TcpStream::connect(web).unwrap();
    page.set_read_timeout(Some(TIMEOUT)).unwrap();
    page.write_all(format!("GET / HTTP/1.1\r\nHost: {web}\r\n\r\n").as_bytes())
        .unwrap();
    let mut body = Vec::new();
    let _ = page.read_to_end(&mut body);
    assert!(body.starts_with(b"HTTP/1.1 200"));

    server.stop();
    let deepest = server.stack_gauge.deepest();
    assert!(deepest > 0, "no connection measured its stack");
    assert!(
        deepest < STACK_BYTES / 2,
        "a connection used {deepest} bytes of its {STACK_BYTES}-byte stack"
    );
    eprintln!("deepest connection stack use: {deepest} bytes");
}

#[test]
fn a_stack_gauge_measures_the_connections_of_its_own_server_only() {
    let mut measured = TestServer::start();
    let mut other = TestServer::start();
    measured.stack_gauge.enable();
    for server in [&measured, &other] {
        server.login("alice").logout();
    }
    // Stopping waits for the connection threads, which record their depth as they end.
    measured.stop();
    other.stop();
    assert!(measured.stack_gauge.deepest() > 0, "nothing measured");
    assert_eq!(
        other.stack_gauge.deepest(),
        0,
        "the other server was measured"
    );
}
