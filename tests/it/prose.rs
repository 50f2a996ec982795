//! Issue 26 item 1: a person at telnet or nc reads prose, a program asks for tagged lines
//! (`protocol lanchat/1`), and a telnet client's password is not shown as it is typed.

use crate::support::*;
use lanchat::protocol::Kind;

/// IAC and the telnet commands and options these tests use (RFC 854, 857).
const IAC: u8 = 0xFF;
const WILL: u8 = 0xFB;
const WONT: u8 = 0xFC;
const DO: u8 = 0xFD;
const DONT: u8 = 0xFE;
const ECHO: u8 = 1;
const SGA: u8 = 3;
const TTYPE: u8 = 24;

/// Whether any line of `text` starts with a tagged kind and a space (`HELLO `, `ASK `, ...).
fn tagged_lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .filter(|l| {
            Kind::ALL
                .iter()
                .any(|k| l.starts_with(&format!("{} ", k.as_str())))
        })
        .collect()
}

#[test]
fn a_person_at_nc_reads_prompts_and_prose_and_no_tagged_line() {
    let s = TestServer::start();
    let seas = s.login("seas");
    let mut nc = TestClient::connect_prose(s.addr);
    assert_eq!(
        nc.until("Username: "),
        "Welcome to lanchat. Please log in.\nUsername: "
    );
    // A line that is not UTF-8 (with a 0xFF in it) is refused in prose: nc is never telnet.
    nc.send_raw(b"caf\xe9 \xff\xfe\n");
    assert_eq!(
        nc.until("\n"),
        "That line was not valid UTF-8; it was not sent.\n"
    );
    nc.send("columbia");
    assert_eq!(nc.until("Password: "), "Password: ");
    nc.send("wrong");
    assert_eq!(
        nc.until("Username: "),
        "Username or password incorrect. Please try again; if you fail 2 more times you \
         will be blocked for a while\nUsername: "
    );
    nc.send("columbia");
    nc.until("Password: ");
    nc.send("116bway");
    assert_eq!(
        nc.until("offline.\n"),
        "Login successful, Welcome to lanchat! Type 'help' for the commands.\n\
         No messages received while offline.\n"
    );
    seas.expect(Kind::Presence);
    nc.send("help");
    let help = nc.until("need a leading '/'.\n");
    assert!(
        help.starts_with("Commands:\n  whoelse | online    "),
        "{help}"
    );
    seas.send("message columbia hello");
    seas.expect_ok("sent");
    assert_eq!(nc.until("\n"), "seas: hello <private message>\n");
    seas.logout();
    nc.until("*** seas has left the chat ***\n");
    nc.send("wholast 5");
    let list = nc.until(" UTC)\n");
    assert!(
        list.starts_with(
            "The users that are online in the last 5 minutes are:\n  seas (offline, last seen 20"
        ),
        "{list}"
    );
    nc.send("frobnicate");
    assert!(nc.until("\n").contains("frobnicate"));
    nc.send("logout");
    assert_eq!(nc.rest(), "Logging off. Goodbye!\n");
    let all = String::from_utf8(nc.seen.clone()).unwrap();
    assert_eq!(tagged_lines(&all), Vec::<&str>::new(), "{all}");
    assert!(!nc.seen.contains(&IAC), "a telnet byte reached nc");
}

#[test]
fn protocol_lanchat_1_sent_at_connect_leaves_only_the_prose_greeting_before_hello() {
    let s = TestServer::start();
    let mut program = TestClient::connect_prose(s.addr);
    program.send("protocol lanchat/1");
    assert_eq!(
        program.until("ASK username Username:\n"),
        "Welcome to lanchat. Please log in.\nUsername: \n\
         HELLO lanchat/1 Welcome to lanchat. Please log in.\nASK username Username:\n"
    );
    program.send("alice");
    program.send("pw-alice");
    assert_eq!(
        program.until("offline.\n"),
        "ASK password Password:\nWELCOME alice Login successful, Welcome to lanchat! Type \
         'help' for the commands.\nINFO no-mail No messages received while offline.\n"
    );
    // Asked again: it already speaks them.
    program.send("PROTOCOL LanChat/1");
    assert_eq!(
        program.until("\n"),
        "OK protocol This connection speaks lanchat/1 already.\n"
    );
    program.send("protocol lanchat/2");
    assert_eq!(
        program.until("\n"),
        "ERR unknown-protocol This server speaks lanchat/1, not lanchat/2: send 'protocol \
         lanchat/1' for its tagged lines.\n"
    );
}

#[test]
fn the_switch_works_at_the_password_prompt_and_after_login_and_keeps_the_dialogue() {
    let s = TestServer::start();
    let mut c = TestClient::connect_prose(s.addr);
    c.until("Username: ");
    c.send("protocol irc/3");
    assert_eq!(
        c.until("Username: "),
        "This server speaks lanchat/1, not irc/3: send 'protocol lanchat/1' for its tagged \
         lines.\nUsername: "
    );
    c.send("bob");
    c.until("Password: ");
    // At the password prompt: a fresh line, HELLO, and the password is still asked.
    c.send("protocol lanchat/1");
    assert_eq!(
        c.until("ASK password Password:\n"),
        "\nHELLO lanchat/1 Welcome to lanchat. Please log in.\nASK password Password:\n"
    );
    c.send("pw-bob");
    c.until("WELCOME bob ");

    // After login, from prose (the person pressed Enter: no extra line end).
    let mut d = TestClient::connect_prose(s.addr);
    d.until("Username: ");
    d.send("carol");
    d.until("Password: ");
    d.send("pw-carol");
    d.until("offline.\n");
    d.send("personalintro");
    d.until("Please enter your personal introduction: ");
    d.send("/protocol lanchat/1");
    assert_eq!(
        d.until("ASK intro Please enter your personal introduction:\n"),
        "\nHELLO lanchat/1 Welcome to lanchat.\n\
         ASK intro Please enter your personal introduction:\n"
    );
    d.send("protocol is my hobby");
    assert_eq!(
        d.until("\n"),
        "OK intro Your personal introduction was saved.\n"
    );
    d.send("whoelse");
    assert_eq!(
        d.until("\nUSER bob available - \n"),
        "LIST whoelse 1 The currently online users are:\nUSER bob available - \n"
    );
}

#[test]
fn a_telnet_client_gets_its_password_hidden_and_nc_never_a_telnet_byte() {
    let s = TestServer::start();
    let mut telnet = TestClient::connect_prose(s.addr);
    // What `telnet HOST -4119` sends at once: it asks for SGA and offers TERMINAL-TYPE.
    telnet.send_raw(&[IAC, DO, SGA, IAC, WILL, TTYPE]);
    telnet.until("Username: ");
    telnet.send_raw(b"columbia\r\n");
    let bytes = telnet.until_bytes(b"Password: ");
    // Both refused (as soon as they arrived); then WILL ECHO right before the prompt.
    assert!(
        find(&telnet.seen, &[IAC, WONT, SGA, IAC, DONT, TTYPE]).is_some(),
        "{:?}",
        telnet.seen
    );
    assert!(
        bytes.ends_with(&[&[IAC, WILL, ECHO][..], b"Password: "].concat()),
        "{bytes:?}"
    );
    // The client stops echoing; the user types the password and Enter, which it does
    // not echo: the server says WONT ECHO and ends the line.
    telnet.send_raw(&[IAC, DO, ECHO]);
    telnet.send_raw(b"116bway\r\n");
    assert_eq!(
        telnet.until_bytes(b"Login successful"),
        [&[IAC, WONT, ECHO, b'\r', b'\n'][..], b"Login successful"].concat(),
    );
    // The client's acknowledgement is not answered, and the chat goes on in prose.
    telnet.send_raw(&[IAC, DONT, ECHO]);
    telnet.until("offline.\n");
    telnet.send_raw(b"whoelse\r\n");
    assert_eq!(
        telnet.until("(Not found)\n"),
        "The currently online users are: (Not found)\n"
    );
    let echo_commands = telnet
        .seen
        .windows(2)
        .filter(|w| w[0] == IAC && matches!(w[1], WILL | WONT))
        .count();
    assert_eq!(
        echo_commands, 3,
        "WONT SGA, WILL ECHO, WONT ECHO: {:?}",
        telnet.seen
    );

    // nc: the same login, and not one 0xFF byte back.
    let mut nc = TestClient::connect_prose(s.addr);
    nc.send("seas");
    nc.send("summerisover");
    nc.until("offline.\n");
    nc.send("logout");
    nc.rest();
    assert!(!nc.seen.contains(&IAC), "{:?}", nc.seen);
}

#[test]
fn the_web_door_speaks_tagged_lines_from_the_start_and_a_switch_there_changes_nothing() {
    let s = TestServer::start_with(|c| c.web_port = lanchat::config::OptionalPort::Any);
    let mut page = crate::support::WsClient::connect(s.web.unwrap());
    page.expect(Kind::Hello, "lanchat/1");
    page.expect(Kind::Ask, "username");
    page.send("protocol lanchat/1");
    let already = page.expect(Kind::Ok, "protocol");
    assert_eq!(already.text, "This connection speaks lanchat/1 already.");
    page.send("alice");
    page.expect(Kind::Ask, "password");
}
