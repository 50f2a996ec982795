//! Issue 8: the web door over real sockets. A raw WebSocket client written here (masked
//! frames, its own handshake) logs in and talks with a native-protocol client; plain HTTP
//! requests get the page or an error and are closed without logging in.

use crate::support::web::{BINARY, CLOSE, PING, PONG, TEXT};
use crate::support::{TestClient, TestServer, WsClient, TIMEOUT};
use lanchat::config::OptionalPort;
use lanchat::protocol::Kind;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A server with the web door on a free port.
fn web_server(tweak: impl FnOnce(&mut lanchat::config::Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(|c| {
        c.web_port = OptionalPort::Any;
        tweak(c);
    });
    let web = server.web.expect("the web door is open");
    (server, web)
}

/// One HTTP request; the whole response (the server closes the connection after it).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the server closes after one response");
    String::from_utf8_lossy(&response).into_owned()
}

/// One request; the response head only (for a response that keeps the connection open).
fn response_head(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn web_and_terminal_users_talk_both_ways() {
    let (server, web) = web_server(|_| {});
    let bob = server.login("bob");
    let mut alice = WsClient::login(web, "alice", "pw-alice");
    bob.expect_code(Kind::Presence, "alice");

    alice.send("whoelse");
    alice.expect(Kind::List, "whoelse");
    alice.expect(Kind::User, "bob");

    alice.send("message bob hi from the browser");
    alice.expect(Kind::Ok, "sent");
    assert_eq!(bob.expect(Kind::Msg).text, "hi from the browser");

    bob.send("message alice <img src=x onerror=alert(1)> back at you");
    bob.expect_ok("sent");
    let msg = alice.expect(Kind::Msg, "bob");
    assert_eq!(msg.text, "<img src=x onerror=alert(1)> back at you");

    // Several lines in one message, and a trailing line ending, are all fine.
    alice.send("snum\r\nbroadcast hello all\n");
    alice.expect(Kind::Info, "no-session");
    alice.expect(Kind::Ok, "broadcast");
    assert_eq!(bob.expect(Kind::Bcast).text, "hello all");

    // Issue 23, item 6: nothing reaches either side raw, controls or bidi characters.
    alice.send("message bob a\x1b[2J\u{202e}b\u{200b}c");
    alice.expect(Kind::Ok, "sent");
    assert_eq!(bob.expect(Kind::Msg).text, "a\\x1b[2J\\u{202e}b\\u{200b}c");
    bob.send("intro \u{2066}x\x07");
    bob.expect_ok("intro");
    alice.send("whoelse");
    alice.expect(Kind::List, "whoelse");
    assert_eq!(alice.expect(Kind::User, "bob").text, "\\u{2066}x\\x07");

    alice.send("logout");
    alice.expect(Kind::Bye, "logout");
    alice.expect_close(1000);
    let gone = bob.expect_code(Kind::Presence, "alice");
    assert_eq!(gone.arg(1), "logout");
}

#[test]
fn the_page_is_served_and_plain_http_never_logs_in() {
    let (server, web) = web_server(|_| {});
    let page = http(web, &format!("GET / HTTP/1.1\r\nHost: {web}\r\n\r\n"));
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("Content-Security-Policy: default-src 'none'"));
    assert!(page.contains("<title>lanchat</title>"));
    let script = http(web, "GET /app.js?v=1 HTTP/1.1\r\n\r\n");
    assert!(script.contains("Content-Type: text/javascript"), "{script}");
    assert!(script.contains("textContent"));
    let head = http(web, "HEAD / HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );

    for (request, status) in [
        ("GET /secret HTTP/1.1\r\n\r\n", "404"),
        ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405"),
        ("GET /ws HTTP/1.1\r\n\r\n", "426"),
        ("hello\r\n\r\n", "400"),
        ("whoelse\n\n", "400"),
        // A header name that is not an HTTP token (httparse's grammar).
        ("GET / HTTP/1.1\r\nBad(name): x\r\n\r\n", "400"),
    ] {
        let response = http(web, request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} -> {response}"
        );
    }
    let cross_site = http(
        web,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:1\r\nOrigin: http://elsewhere.example\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(cross_site.starts_with("HTTP/1.1 403 "), "{cross_site}");

    // Nothing stays open, and nobody logged in.
    let deadline = Instant::now() + TIMEOUT;
    while server.handle.connections() > 0 {
        assert!(Instant::now() < deadline, "HTTP connections stayed open");
        std::thread::sleep(Duration::from_millis(10));
    }
    let carol = server.login("carol");
    carol.send("whoelse");
    let (_, users) = carol.expect_list("whoelse");
    assert!(users.is_empty(), "{users:?}");
}

#[test]
fn control_frames_fragments_and_bad_messages() {
    let (_server, web) = web_server(|c| c.max_line_bytes = 100);
    let mut alice = WsClient::login(web, "alice", "pw-alice");

    alice.send_frame(true, PING, b"are you there");
    assert_eq!(alice.frame(), (PONG, b"are you there".to_vec()));

    // A command in three fragments with a ping in the middle.
    alice.send_frame(false, TEXT, b"who");
    alice.send_frame(true, PING, b"x");
    alice.send_frame(false, 0x0, b"el");
    alice.send_frame(true, 0x0, b"se");
    assert_eq!(alice.frame(), (PONG, b"x".to_vec()));
    alice.expect(Kind::List, "whoelse");

    alice.send_frame(true, BINARY, &[1, 2, 3]);
    alice.expect(Kind::Err, "binary-frame");
    alice.send(&"x".repeat(5000));
    let too_long = alice.expect(Kind::Err, "line-too-long");
    assert!(too_long.text.contains("5000"), "{too_long}");
    alice.send_frame(true, TEXT, b"message bob \xff\xfe");
    alice.expect(Kind::Err, "bad-utf8");
    alice.send("heartbeat");
    alice.expect(Kind::Ok, "pong");

    // Still usable; then a frame without a mask breaks the rules and ends it.
    alice.send("snum");
    alice.expect(Kind::Info, "no-session");
    alice.stream.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    alice.expect_close(1002);
}

#[test]
fn closing_the_tab_drops_the_user_and_the_rules_are_shared() {
    let (server, web) = web_server(|_| {});
    let bob = server.login("bob");
    let mut alice = WsClient::login(web, "alice", "pw-alice");
    bob.expect_code(Kind::Presence, "alice");
    alice.send_frame(true, CLOSE, &1001u16.to_be_bytes());
    alice.expect_close(1001);
    let gone = bob.expect_code(Kind::Presence, "alice");
    assert_eq!(gone.arg(1), "dropped");

    // Failed passwords on the web count against the same lockout as the terminal's.
    let mut web_user = WsClient::connect(web);
    web_user.expect(Kind::Hello, "lanchat/1");
    for _ in 0..2 {
        web_user.expect(Kind::Ask, "username");
        web_user.send("carol");
        web_user.expect(Kind::Ask, "password");
        web_user.send("wrong");
        web_user.expect(Kind::Err, "bad-login");
    }
    web_user.expect(Kind::Ask, "username");
    web_user.send("carol");
    web_user.expect(Kind::Ask, "password");
    web_user.send("wrong again");
    let bye = web_user.expect(Kind::Bye, "blocked");
    assert!(bye.text.contains("60 seconds"), "{bye}");
    web_user.expect_close(1000);
    let terminal = server.connect();
    terminal.send("carol");
    terminal.expect_code(Kind::Bye, "blocked");
}

#[test]
fn web_connections_count_against_max_clients() {
    let (_server, web) = web_server(|c| c.max_clients = 1);
    let mut first = WsClient::connect(web);
    first.expect(Kind::Hello, "lanchat/1");
    let refused = http(web, "GET / HTTP/1.1\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("The server is full"), "{refused}");
}

#[test]
fn heartbeat_timeout_and_shutdown_reach_web_users() {
    let ticks = lanchat::clock::ManualTicks::new();
    let mut server = TestServer::start_with_ticks(&ticks, |c| {
        c.web_port = OptionalPort::Any;
        c.heartbeat_timeout_secs = 35;
    });
    let web = server.web.unwrap();
    let mut quiet = WsClient::login(web, "alice", "pw-alice");
    quiet.send("heartbeat");
    quiet.expect(Kind::Ok, "pong");
    ticks.advance(Duration::from_secs(36));
    let bye = quiet.expect(Kind::Bye, "timeout");
    assert!(bye.text.contains("heartbeat"), "{bye}");
    quiet.expect_close(1000);

    let mut bob = WsClient::login(web, "bob", "pw-bob");
    server.stop();
    bob.expect(Kind::Bye, "shutdown");
    bob.expect_close(1000);
}

#[test]
fn the_web_door_is_off_when_asked() {
    let server = TestServer::start();
    assert_eq!(server.web, None);
    let client: TestClient = server.login("alice");
    client.logout();
}

/// Issue 23, item 12: a head is refused at 8 KiB by count, however its bytes arrive.
#[test]
fn a_request_head_over_8_kib_is_refused_with_431() {
    let (_server, web) = web_server(|_| {});
    // The whole head, its blank line included, of exactly `len` bytes.
    let head = |len: usize| {
        let start = format!("GET / HTTP/1.1\r\nHost: {web}\r\nX-Pad: ");
        format!("{start}{}\r\n\r\n", "a".repeat(len - start.len() - 4))
    };
    let fits = http(web, &head(8 * 1024));
    assert!(fits.starts_with("HTTP/1.1 200 "), "{}", &fits[..60]);
    for len in [8 * 1024 + 1, 9 * 1024, 10 * 1024 - 100] {
        let over = http(web, &head(len));
        assert!(over.starts_with("HTTP/1.1 431 "), "{len}: {over}");
    }
}

/// Issue 23, item 12: a close frame with a code no one may send is a protocol error.
#[test]
fn a_close_with_an_invalid_code_is_answered_with_1002() {
    let (_server, web) = web_server(|_| {});
    for payload in [
        &999u16.to_be_bytes()[..],
        &1005u16.to_be_bytes(),
        &[0x03],
        b"\x03\xe8\xff",
    ] {
        let mut alice = WsClient::login(web, "alice", "pw-alice");
        alice.send_frame(true, CLOSE, payload);
        alice.expect_close(1002);
    }
    // A valid one is echoed.
    let mut alice = WsClient::login(web, "alice", "pw-alice");
    alice.send_frame(true, CLOSE, &4000u16.to_be_bytes());
    alice.expect_close(4000);
}

/// Issue 23, item 12: DNS rebinding. A page whose name was re-pointed at the server has
/// matching Host and Origin; its Host still does not name this server.
#[test]
fn only_hosts_that_name_this_server_get_the_page_or_the_socket() {
    let (_server, web) = web_server(|c| c.web_host_names = vec!["chat.school.example".into()]);
    let upgrade = |host: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let port = web.port();
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("127.0.0.2:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        let socket = response_head(web, &upgrade(&host));
        assert!(socket.starts_with("HTTP/1.1 421 "), "{host}: {socket}");
        let page = http(web, &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert!(page.starts_with("HTTP/1.1 421 "), "{host}: {page}");
        assert!(page.contains("web_host_names"), "{page}");
    }
    let machine = lanchat::discovery::host_name();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost.:{port}"),
        format!("chat.school.example:{port}"),
        format!("{machine}:{port}"),
        format!("{machine}.local"),
    ] {
        let socket = response_head(web, &upgrade(&host));
        assert!(socket.starts_with("HTTP/1.1 101 "), "{host}: {socket}");
    }
}
