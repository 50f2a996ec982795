//! Issue 23, items 11: what a channel PART/QUIT does to group membership (the same rule
//! seen from both doors), and the bounds on what the data directory may hold.

use crate::support::*;
use lanchat::config::{AuthMode, Config, OptionalPort};
use lanchat::protocol::Kind;
use std::net::SocketAddr;

/// A server with its IRC door open on any free port.
fn start_with_irc(tweak: impl Fn(&mut Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(|c| {
        c.irc_port = OptionalPort::Any;
        tweak(c);
    });
    let irc = server.irc.expect("the IRC door is open");
    (server, irc)
}

/// The members of `group` as `client` lists them.
fn members(client: &TestClient, group: &str) -> Vec<String> {
    client.send(&format!("group members {group}"));
    let (_, items) = client.expect_list("members");
    items.into_iter().map(|l| l.text).collect()
}

#[test]
fn an_irc_quit_leaves_the_channels_joined_over_irc_and_keeps_native_memberships() {
    let (s, irc) = start_with_irc(|c| c.auth = AuthMode::Open);
    let alice = s.connect();
    alice.send("alice");
    alice.expect(Kind::Welcome);
    alice.read_mail();
    alice.send("group create proj");
    alice.expect_ok("group-created");
    // bob joins natively first: a lasting membership, as every native one.
    let bob = s.connect();
    bob.send("bob");
    bob.expect(Kind::Welcome);
    bob.read_mail();
    bob.send("group join proj");
    bob.expect_ok("group-joined");
    bob.logout();

    let mut ian = IrcClient::register(irc, "ian", "ian");
    ian.send("JOIN #proj");
    ian.expect(" 366 ");
    ian.send("JOIN #scratch");
    ian.expect(" 366 ");
    // bob comes over IRC: proj is joined again for him, and left alone at his QUIT.
    let bob_irc = IrcClient::register(irc, "bob", "bob");
    assert_eq!(
        members(&alice, "proj"),
        ["alice (online)", "bob (online)", "ian (online)"]
    );
    ian.quit();
    bob_irc.quit();

    // ian is no member any more (he left before his ERROR was sent): nothing is stored
    // for him; bob still is.
    assert_eq!(members(&alice, "proj"), ["alice (online)", "bob"]);
    alice.send("group send proj after the quit");
    let sent = alice.expect_ok("group-sent");
    assert!(sent.text.contains("0 online, 1 will get it"), "{sent}");
    // The channel only ian was in went with him.
    alice.send("group members scratch");
    alice.expect_err("no-such-group");

    // An open-mode nick change ends the old nick's IRC membership: the new nick has it.
    let mut jo = IrcClient::register(irc, "jo", "jo");
    jo.send("JOIN #proj");
    jo.expect(" 366 ");
    jo.send("NICK joanna");
    jo.expect("NICK");
    jo.send("JOIN #proj");
    jo.expect(" 366 ");
    assert_eq!(
        members(&alice, "proj"),
        ["alice (online)", "bob", "joanna (online)"]
    );
}

/// Logs `name` in from `from` in open mode (no password); the mail lines are consumed.
fn open_login(s: &TestServer, from: &str, name: &str) -> TestClient {
    let c = TestClient::connect_from(s.addr, from);
    c.expect(Kind::Hello);
    c.expect_ask("username");
    c.send(name);
    c.expect(Kind::Welcome);
    c.read_mail();
    c
}

#[test]
fn past_max_data_bytes_new_mail_is_refused_and_what_was_stored_is_kept() {
    let s = TestServer::start_with(|c| c.max_data_bytes = 8 * 1024);
    let a = s.login("alice");
    let text = "x".repeat(500);
    let mut queued = 0;
    let refusal = loop {
        assert!(
            queued < 40,
            "8 KiB took {queued} mails of 500 bytes and refused none"
        );
        a.send(&format!("message bob {queued} {text}"));
        let reply = a.next();
        match (reply.kind, reply.arg(0)) {
            (Kind::Ok, "queued") => queued += 1,
            (Kind::Err, "storage-full") => break reply,
            _ => panic!("unexpected {reply}"),
        }
    };
    assert!(refusal.text.contains("not stored"), "{refusal}");
    // Mail and its history share the 8 KiB (history is written a moment later, by its
    // own thread): several fit, and the whole directory stays within the bound.
    assert!(queued >= 3, "only {queued} fit in 8 KiB");
    let dir_bytes: u64 = ["", "mail", "history"]
        .iter()
        .flat_map(|d| std::fs::read_dir(s.data_dir.join(d)).unwrap())
        .filter_map(|e| e.unwrap().metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(dir_bytes <= 8 * 1024, "{dir_bytes} bytes stored");
    // Everything acknowledged is delivered; delivering it makes room again.
    let b = s.connect();
    b.send("bob");
    b.expect_ask("password");
    b.send("pw-bob");
    b.expect(Kind::Welcome);
    let mail = b.read_mail();
    let numbers: Vec<usize> = mail
        .iter()
        .map(|m| m.text.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (0..queued).collect::<Vec<_>>());
    b.logout();
    a.send("message bob room again");
    a.expect_ok("queued");
}

#[test]
fn in_open_mode_one_address_makes_a_bounded_number_of_users_and_groups() {
    let (s, irc) = start_with_irc(|c| {
        c.auth = AuthMode::Open;
        c.max_new_users_per_ip = 3;
        c.max_groups_per_ip = 2;
    });
    for name in ["n1", "n2", "n3"] {
        open_login(&s, "127.0.0.2", name).logout();
    }
    let c = TestClient::connect_from(s.addr, "127.0.0.2");
    c.expect(Kind::Hello);
    c.expect_ask("username");
    c.send("n4");
    let refusal = c.expect_err("user-limit");
    assert!(refusal.text.contains("name used before"), "{refusal}");
    c.expect_ask("username");
    // The IRC door tells the same, with 432 so that the client may try another nick.
    let mut over_irc = IrcClient::start(irc, "127.0.0.2", "n5", "n5");
    let refusal = over_irc.expect(" 432 ");
    assert!(refusal.contains("name used before"), "{refusal}");
    // A name made before still logs in from there, and another address makes its own.
    c.send("n1");
    c.expect(Kind::Welcome);
    c.read_mail();
    open_login(&s, "127.0.0.3", "m1");
    over_irc.send("NICK n2");
    over_irc.expect(" 366 ");

    c.send("group create g1");
    c.expect_ok("group-created");
    c.send("group create g2");
    c.expect_ok("group-created");
    c.send("group create g3");
    let refusal = c.expect_err("group-limit");
    assert!(refusal.text.contains("2 groups"), "{refusal}");
    c.send("group list");
    let (_, groups) = c.expect_list("groups");
    assert_eq!(groups.len(), 2, "{groups:?}");
    // A group deleted (its last member left) no longer counts.
    c.send("group leave g1");
    c.expect_ok("group-left");
    c.send("group create g3");
    c.expect_ok("group-created");
}

#[test]
fn in_open_mode_a_full_data_directory_refuses_new_users_and_groups_but_not_known_users() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let (store, mut directory) = lanchat::store::Store::open(&data, 10).unwrap();
        directory.record(lanchat::store::Event::Seen {
            user: "ann".into(),
            at: 1,
        });
        store.write_journal(|| &mut directory).unwrap();
    }
    let s = TestServer::start_full(
        |c| {
            c.auth = AuthMode::Open;
            c.max_data_bytes = 64;
            c.irc_port = OptionalPort::Any;
        },
        credentials(0),
        std::sync::Arc::new(lanchat::clock::SystemClock),
        Some(data),
    );
    let c = s.connect();
    c.send("newcomer");
    let refusal = c.expect_err("storage-full");
    assert_eq!(
        refusal.to_wire(),
        "ERR storage-full the server's storage is full: no new user can be made now; log in with a name used before\n"
    );
    c.expect_ask("username");
    c.send("ann");
    c.expect(Kind::Welcome);
    c.read_mail();
    c.send("group create g");
    assert_eq!(
        c.expect_err("storage-full").to_wire(),
        "ERR storage-full the server's storage is full: no new group can be made now\n"
    );
    let mut irc = IrcClient::start(s.irc.unwrap(), "127.0.0.1", "other", "other");
    let refusal = irc.expect(" 432 ");
    assert_eq!(
        refusal.trim_end(),
        ":lanchat 432 * other :the server's storage is full: no new user can be made now; log in with a name used before"
    );
}
