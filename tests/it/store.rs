use crate::support::*;
use lanchat::clock::SystemClock;
use lanchat::protocol::{Kind, Line};
use lanchat::server::Server;
use std::sync::Arc;
use std::time::Duration;

/// Logs in and returns the client plus the mail it was given at login.
pub(crate) fn login_with_mail(
    s: &TestServer,
    name: &str,
    password: &str,
) -> (TestClient, Vec<Line>) {
    let c = s.connect();
    c.send(name);
    c.expect_ask("password");
    c.send(password);
    c.expect(Kind::Welcome);
    let mail = c.read_mail();
    (c, mail)
}

#[test]
fn offline_mail_survives_a_restart_and_arrives_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let s = TestServer::start_on(&data);
        let a = s.login("alice");
        for i in 0..5 {
            a.send(&format!("message bob note {i}"));
            let ack = a.expect_ok("queued");
            assert!(ack.text.contains("delivered when they log in"));
        }
        a.send("broadcast user bob message via list");
        a.expect_ok("queued");
        a.send("broadcast message to all");
        a.expect_ok("broadcast");
        a.send("broadcast only online people");
        a.expect_ok("broadcast");
    }
    let s = TestServer::start_on(&data);
    let (b, mail) = login_with_mail(&s, "bob", "pw-bob");
    let texts: Vec<_> = mail.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["note 0", "note 1", "note 2", "note 3", "note 4", "via list", "to all"]
    );
    assert!(mail
        .iter()
        .all(|m| m.arg(0) == "alice" && m.arg(1).ends_with('Z')));
    assert_eq!(mail[0].arg(2), "private");
    assert_eq!(mail[6].arg(2), "broadcast");
    b.logout();
    let (_, again) = login_with_mail(&s, "bob", "pw-bob");
    assert!(again.is_empty(), "mail delivered twice: {again:?}");
}

#[test]
fn history_wholast_and_intros_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let s = TestServer::start_on(&data);
        let a = s.login("alice");
        let b = s.login("bob");
        a.send("personalintro I sit in the front row");
        a.expect_ok("intro");
        a.send("message bob one");
        a.expect_ok("sent");
        b.expect(Kind::Msg);
        b.send("message alice two");
        b.expect_ok("sent");
        a.expect(Kind::Msg);
        a.send("history bob 1");
        let (_, h) = a.expect_list("history");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].text, "two");
        b.logout();
        a.logout();
    }
    let s = TestServer::start_on(&data);
    let c = s.login("carol");
    c.send("wholast 5");
    let (_, users) = c.expect_list("wholast");
    let names: Vec<_> = users.iter().map(|u| u.arg(0)).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users[0].text, "I sit in the front row");
    let a = s.login("alice");
    c.send("whoelse");
    let (_, users) = c.expect_list("whoelse");
    assert_eq!(users[0].text, "I sit in the front row");
    for cmd in [
        "history bob",
        "HISTORY_REQ(alice-bob)",
        "HISTORY_REQUEST(alice-bob)",
    ] {
        a.send(cmd);
        let (_, h) = a.expect_list("history");
        let lines: Vec<_> = h.iter().map(|l| (l.arg(2), l.text.as_str())).collect();
        assert_eq!(lines, [("alice", "one"), ("bob", "two")], "{cmd}");
        assert!(h.iter().all(|l| l.kind == Kind::Hist && l.arg(1) == "-"));
    }
    // No history yet is a clear reply, never an error; unknown users are errors.
    a.send("history dave");
    a.expect_code(Kind::Info, "no-history");
    a.send("history zed");
    a.expect_err("unknown-user");
    // Carol cannot read alice and bob's log: her history with bob is her own (empty).
    c.send("HISTORY_REQ(alice-bob)");
    c.expect_code(Kind::Info, "no-history");
}

#[test]
fn a_full_mailbox_refuses_new_mail_and_keeps_the_old() {
    let s = TestServer::start_with(|c| c.max_offline_messages = 3);
    let a = s.login("alice");
    for i in 0..3 {
        a.send(&format!("message bob m{i}"));
        a.expect_ok("queued");
    }
    a.send("message bob one too many");
    let e = a.expect_err("mailbox-full");
    assert!(e.text.contains("bob"), "{e}");
    let (_, mail) = login_with_mail(&s, "bob", "pw-bob");
    let texts: Vec<_> = mail.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);
}

#[test]
fn an_unusable_data_dir_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let config = test_config(&file.join("data"));
    let result = Server::bind_with(config, credentials(0), Arc::new(SystemClock));
    assert!(result.is_err());
}

#[test]
fn a_failed_store_write_is_reported_to_the_sender() {
    let s = TestServer::start();
    // Make bob's mailbox impossible to write: a directory where the file should be.
    std::fs::create_dir_all(s.data_dir.join("mail").join("bob.log")).unwrap();
    let a = s.login("alice");
    a.send("message bob will this be saved");
    a.expect_err("store-failed");
    a.send("message carol but this one is");
    a.expect_ok("queued");
}

/// The real server binary (killed with SIGKILL on drop if still running), knowing alice and
/// bob, with no rate limit: the streams below are faster than a person types.
pub(crate) fn server_process(dir: &std::path::Path) -> ServerProcess {
    ServerProcess::start_with_users(
        dir,
        "alice pw-alice\nbob pw-bob\n",
        "max_messages_per_sec = 0\n",
    )
}

pub(crate) fn raw_login(addr: std::net::SocketAddr, name: &str, password: &str) -> TestClient {
    let c = TestClient::connect(addr);
    c.expect(Kind::Hello);
    c.expect_ask("username");
    c.send(name);
    c.expect_ask("password");
    c.send(password);
    c.expect(Kind::Welcome);
    c
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_process(tmp.path());
    let a = raw_login(server.addr, "alice", "pw-alice");
    a.expect_code(Kind::Info, "no-mail");
    const SENT: usize = 2000;
    const KILL_AFTER: usize = 150;
    let mut server = server;
    let mut acked = 0;
    std::thread::scope(|scope| {
        let a = &a;
        scope.spawn(move || {
            let all: String = (0..SENT)
                .map(|i| format!("message bob seq {i}\n"))
                .collect();
            // The write may fail once the server is killed; that is the point.
            let _ = a.try_send_raw(all.as_bytes());
        });
        while let Some(l) = a.try_next(Duration::from_secs(10)) {
            assert_eq!((l.kind, l.arg(0)), (Kind::Ok, "queued"), "{l}");
            acked += 1;
            if acked == KILL_AFTER {
                server.proc.0.kill().unwrap();
                server.proc.0.wait().unwrap();
            }
        }
    });
    assert!(acked >= KILL_AFTER, "only {acked} acknowledged");
    drop(server);

    let server = server_process(tmp.path());
    let b = raw_login(server.addr, "bob", "pw-bob");
    let header = b.next();
    assert_eq!(header.arg(0), "mail", "{header}");
    let mut got = Vec::new();
    while let Some(l) = b.try_next(Duration::from_millis(500)) {
        assert_eq!(l.kind, Kind::Mail, "{l}");
        let n: usize = l.text.strip_prefix("seq ").unwrap().parse().unwrap();
        got.push(n);
    }
    // Every acknowledged message arrived, whole, in order, exactly once; at most the few in
    // flight at the kill (stored but not yet acknowledged) come after them.
    assert!(got.len() >= acked, "acked {acked}, delivered {}", got.len());
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
}

/// Leaves alice with an intro, a group and a blacklist, and bob with three offline messages;
/// returns the data directory's users.log and bob's mailbox paths.
fn data_dir_with_state(data: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let s = TestServer::start_on(data);
    let a = s.login("alice");
    a.send("personalintro edited by hand later");
    a.expect_ok("intro");
    a.send("group create cs101");
    a.expect_ok("group-created");
    a.send("block dave");
    a.expect_ok("blocked");
    for i in 0..3 {
        a.send(&format!("message bob mail {i}"));
        a.expect_ok("queued");
    }
    a.logout();
    (data.join("users.log"), data.join("mail").join("bob.log"))
}

/// What alice and bob find after a restart: alice's intro (as carol sees it), her groups
/// and blacklist, and bob's mail texts.
fn state_seen_through_the_socket(data: &std::path::Path) -> (String, Vec<String>, Vec<String>) {
    let s = TestServer::start_on(data);
    let c = s.login("carol");
    c.send("wholast 60");
    let (_, users) = c.expect_list("wholast");
    let intro = users
        .iter()
        .find(|u| u.arg(0) == "alice")
        .map(|u| u.text.clone())
        .unwrap_or_default();
    let a = s.login("alice");
    a.send("group list");
    let (_, groups) = a.expect_list("groups");
    a.send("blocked");
    let (_, blocked) = a.expect_list("blocked");
    let mut seen: Vec<String> = groups.iter().map(|g| g.text.clone()).collect();
    seen.extend(blocked.iter().map(|b| format!("blocked {}", b.text)));
    let (_, mail) = login_with_mail(&s, "bob", "pw-bob");
    (intro, seen, mail.iter().map(|m| m.text.clone()).collect())
}

#[test]
fn files_saved_by_an_editor_with_crlf_and_no_final_newline_load_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (users, mailbox) = data_dir_with_state(&data);
    for path in [&users, &mailbox] {
        let text = std::fs::read_to_string(path).unwrap();
        let edited = text.replace('\n', "\r\n");
        // Saved with CRLF line ends and without the final line end, as some editors do.
        std::fs::write(path, edited.trim_end()).unwrap();
    }
    let (intro, groups, mail) = state_seen_through_the_socket(&data);
    assert_eq!(intro, "edited by hand later");
    assert_eq!(groups, ["cs101 (1 members) *", "blocked dave"]);
    assert_eq!(mail, ["mail 0", "mail 1", "mail 2"]);
    assert!(!data.join("users.log.rejected").exists());
}

#[test]
fn a_damaged_record_is_moved_aside_and_hand_written_ones_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (users, mailbox) = data_dir_with_state(&data);
    // A record edited without its checksum being fixed, in the middle of the journal, and
    // a record typed by hand (no checksum) at its end.
    let journal = std::fs::read_to_string(&users).unwrap();
    let mut lines: Vec<String> = journal.lines().map(str::to_string).collect();
    let intro = lines.iter().position(|l| l.starts_with("intro\t")).unwrap();
    let damaged = lines[intro].replace("edited by hand later", "edited by hand, checksum kept");
    lines[intro] = damaged.clone();
    lines.push("intro\tcarol\ttyped by hand".to_string());
    std::fs::write(&users, lines.join("\n") + "\n").unwrap();
    // A damaged mail in the middle of bob's mailbox.
    let mail = std::fs::read_to_string(&mailbox).unwrap();
    let broken = mail.replacen("mail 1", "mail !", 1);
    std::fs::write(&mailbox, &broken).unwrap();

    let (alice_intro, groups, mail) = state_seen_through_the_socket(&data);
    assert_eq!(alice_intro, "", "the damaged intro record is not applied");
    assert_eq!(groups, ["cs101 (1 members) *", "blocked dave"]);
    assert_eq!(mail, ["mail 0", "mail 2"]);
    // Nothing is deleted: the damaged lines wait, as they were, next to their files.
    let side = std::fs::read_to_string(data.join("users.log.rejected")).unwrap();
    assert_eq!(side, format!("{damaged}\n"));
    let side = std::fs::read_to_string(data.join("mail").join("bob.log.rejected")).unwrap();
    assert!(side.contains("mail !"), "{side}");
    // The hand-written intro loaded: dave sees it.
    let s = TestServer::start_on(&data);
    let d = s.login("dave");
    d.send("wholast 60");
    let (_, users) = d.expect_list("wholast");
    assert!(
        users
            .iter()
            .any(|u| u.arg(0) == "carol" && u.text == "typed by hand"),
        "{users:?}"
    );
}

#[test]
fn a_directory_where_a_data_file_should_be_is_named_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("users.log")).unwrap();
    let config = test_config(&data);
    let error = match Server::bind_with(config, credentials(0), Arc::new(SystemClock)) {
        Ok(_) => panic!("a server started over a directory named users.log"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&*data.join("users.log").to_string_lossy()),
        "{error}"
    );
}

/// Logs `name` in on a server in open mode (no password), its mail read.
fn open_login(s: &TestServer, name: &str) -> TestClient {
    let c = s.connect();
    c.send(name);
    c.expect(Kind::Welcome);
    c.read_mail();
    c
}

#[test]
fn in_open_mode_the_journal_learns_a_user_at_their_first_login_only() {
    let s = TestServer::start_with(|c| c.auth = lanchat::config::AuthMode::Open);
    let seen_records = || {
        std::fs::read_to_string(s.data_dir.join("users.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("seen\t"))
            .count()
    };
    // A reply to a command proves the login, and what it journaled, is done.
    let settled = |c: &TestClient| {
        c.send("status");
        c.expect_ok("status");
    };
    let ann = open_login(&s, "ann");
    settled(&ann);
    assert_eq!(
        seen_records(),
        1,
        "a new user is journaled, to get mail later"
    );
    ann.logout();
    assert_eq!(seen_records(), 2, "a logout notes the time");
    let ann = open_login(&s, "ann");
    settled(&ann);
    assert_eq!(seen_records(), 2, "a known user's login journals nothing");
}

#[test]
fn what_users_see_of_the_directory_is_the_same_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let clock = lanchat::clock::ManualClock::new(1_800_000_000);
    let start = || {
        TestServer::start_full(
            |c| c.auth = lanchat::config::AuthMode::Open,
            credentials(0),
            Arc::new(clock.clone()),
            Some(data.clone()),
        )
    };
    // Everything a user can find of the directory, as observer "obs" and each user see it.
    let seen = |s: &TestServer| {
        let mut seen = Vec::new();
        let obs = open_login(s, "obs");
        for cmd in [
            "wholast 60",
            "group list",
            "group members g",
            "group members h",
        ] {
            obs.send(cmd);
            let name = cmd.split(' ').nth(1).filter(|_| cmd.starts_with("group"));
            let list = match name {
                Some("list") => "groups",
                Some(_) => "members",
                None => "wholast",
            };
            let (_, items) = obs.expect_list(list);
            seen.extend(
                items
                    .iter()
                    .map(|l| format!("{cmd}: {}", l.to_wire().trim_end())),
            );
        }
        obs.logout();
        for name in ["ann", "bob", "cid"] {
            let c = open_login(s, name);
            c.send("status");
            // A status other than available is recalled at login, before the answer.
            let mut line = c.next();
            while line.kind != Kind::Ok {
                seen.push(format!("{name} at login: {}", line.text));
                line = c.next();
            }
            seen.push(format!("{name}: {}", line.text));
            c.send("blocked");
            let (_, items) = c.expect_list("blocked");
            seen.extend(items.iter().map(|l| format!("{name} blocked: {}", l.text)));
            c.logout();
        }
        seen
    };
    let before = {
        let s = start();
        let [ann, bob, cid] = ["ann", "bob", "cid"].map(|n| open_login(&s, n));
        let run = |c: &TestClient, cmd: &str, code: &str| {
            c.send(cmd);
            c.expect_ok(code);
        };
        run(&ann, "personalintro front row", "intro");
        run(&ann, "status busy", "status");
        run(&ann, "block cid", "blocked");
        run(&bob, "group create g", "group-created");
        run(&bob, "group create h", "group-created");
        run(&ann, "group join g", "group-joined");
        run(&cid, "group join g", "group-joined");
        run(&cid, "group join h", "group-joined");
        // The owner leaves; the group stays with its other members.
        run(&bob, "group leave g", "group-left");
        run(&cid, "status invisible", "status");
        run(&cid, "block bob", "blocked");
        run(&cid, "unblock bob", "unblocked");
        run(&bob, "group leave h", "group-left");
        clock.advance(60);
        for c in [&ann, &bob, &cid] {
            c.logout();
        }
        seen(&s)
    };
    assert!(
        before
            .iter()
            .any(|l| l.contains("ann busy") || l.contains("front row")),
        "{before:#?}"
    );
    assert!(
        before.contains(&"ann blocked: cid".to_string()),
        "{before:#?}"
    );
    let after = seen(&start());
    assert_eq!(before, after);
}
