//! Beyond loopback: real hosts, made of network namespaces. Each host is a namespace with
//! one interface `eth0` at 10.251.N.(i+1)/24, cabled by a veth pair to a bridge in a
//! namespace of its own (the switch), so nothing is added to the machine's own network and
//! broadcasts stay on the lab's wire. The namespaces are made and removed by each test;
//! where it lacks the rights (not root, no `ip`), it fails (`make test` reports it as
//! skipped).
//!
//! Two hosts: server-relayed and direct (peer-to-peer) messages. Three hosts: discovery by
//! broadcast, login, messages both ways, broadcast, presence, the failed-login lockout keyed
//! by the real client IP, and a host whose cable is pulled.

mod support;

use std::process::Command;
use support::{ClientProcess, ServerProcess};

/// Why a lab cannot be built; `make test` skips these tests where that is so.
const NO_NETNS: &str = "cannot create network namespaces here: these tests need root and \
    iproute2 (apt-get install iproute2); `make test` reports them as skipped instead";

/// Hosts on one switch; every namespace is removed on drop.
struct Lab {
    /// The switch's namespace (bridge `br0`, one port `pI` per host).
    switch: String,
    /// The hosts, in order.
    hosts: Vec<Host>,
}

/// One host of a [`Lab`].
struct Host {
    /// Its namespace.
    ns: String,
    /// Its address on the lab's wire.
    ip: String,
    /// `ip netns exec NS`: the prefix that runs a program on this host.
    exec: Vec<String>,
}

impl Host {
    fn prefix(&self) -> Vec<&str> {
        self.exec.iter().map(String::as_str).collect()
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Lab {
    /// `n` hosts on a bridge; `tag` keeps the namespace names of concurrent tests apart
    /// (the process id keeps those of concurrent test runs apart).
    fn new(tag: &str, n: usize) -> Option<Lab> {
        let pid = std::process::id();
        let net = pid % 200 + 20;
        let switch = format!("lc{tag}{pid}sw");
        if !ip(&["netns", "add", &switch]) {
            return None;
        }
        let mut lab = Lab {
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        let bridge: [&[&str]; 3] = [
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
            &["-n", &switch, "link", "set", "br0", "up"],
            &["-n", &switch, "link", "set", "lo", "up"],
        ];
        for step in bridge {
            if !ip(step) {
                eprintln!("netns: `ip {}` failed", step.join(" "));
                return None;
            }
        }
        for i in 0..n {
            let ns = format!("lc{tag}{pid}h{i}");
            if !ip(&["netns", "add", &ns]) {
                eprintln!("netns: cannot add {ns}");
                return None;
            }
            let host_ip = format!("10.251.{net}.{}", i + 1);
            lab.hosts.push(Host {
                ns: ns.clone(),
                ip: host_ip.clone(),
                exec: ["ip", "netns", "exec", &ns].map(String::from).to_vec(),
            });
            let port = format!("p{i}");
            let address = format!("{host_ip}/24");
            let steps: [&[&str]; 6] = [
                &[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                    "netns", &switch,
                ],
                // `brd +`: a broadcast address, as DHCP gives one.
                &[
                    "-n", &ns, "addr", "add", &address, "brd", "+", "dev", "eth0",
                ],
                &["-n", &ns, "link", "set", "eth0", "up"],
                &["-n", &ns, "link", "set", "lo", "up"],
                &["-n", &switch, "link", "set", &port, "master", "br0"],
                &["-n", &switch, "link", "set", &port, "up"],
            ];
            for step in steps {
                if !ip(step) {
                    eprintln!("netns: `ip {}` failed", step.join(" "));
                    return None;
                }
            }
        }
        Some(lab)
    }

    /// Pulls host `i`'s cable out of the switch: its packets go nowhere from now on.
    fn cut(&self, i: usize) {
        let port = format!("p{i}");
        assert!(
            ip(&["-n", &self.switch, "link", "set", &port, "down"]),
            "cannot take {port} down"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces, and so each veth pair and the bridge.
        for host in &self.hosts {
            ip(&["netns", "del", &host.ns]);
        }
        ip(&["netns", "del", &self.switch]);
    }
}

#[test]
fn two_hosts_chat_and_message_directly_across_a_veth_link() {
    let Some(lab) = Lab::new("p", 2) else {
        panic!("{NO_NETNS}");
    };
    let dir = tempfile::tempdir().unwrap();
    let (in_a, in_b) = (lab.hosts[0].prefix(), lab.hosts[1].prefix());
    let server = ServerProcess::start(&in_a, "0.0.0.0", dir.path());
    let port = server.port.to_string();

    // bob shares host a with the server; alice is on host b and reaches it over the link.
    let mut bob = ClientProcess::start("bob", &in_a, &["127.0.0.1", &port, "--p2p-port", "7102"]);
    bob.send("bob");
    bob.send("bobpw");
    bob.out.expect("Login successful");
    let mut alice = ClientProcess::start(
        "alice",
        &in_b,
        &[&lab.hosts[0].ip, &port, "--p2p-port", "7101"],
    );
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");
    bob.out.expect("alice has joined");

    alice.send("message bob relayed over the link");
    bob.out.expect("relayed over the link");

    // Direct messages: bob's client must reach alice on host b's address, not loopback.
    alice.send("getaddress bob");
    bob.out.expect("wants to exchange private messages");
    bob.send("y");
    bob.out.expect("can now send each other private messages");
    alice.out.expect("accepted");
    alice.send("private bob straight across");
    bob.out.expect("[private] alice: straight across");
    bob.send("private alice and back");
    alice.out.expect("[private] bob: and back");
}

#[test]
fn three_hosts_find_the_server_chat_lock_out_by_ip_and_lose_a_host() {
    let Some(lab) = Lab::new("t", 3) else {
        panic!("{NO_NETNS}");
    };
    let (host_a, host_b, host_c) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let dir = tempfile::tempdir().unwrap();
    // Small timeouts so that a lost host is noticed within a second or two.
    std::fs::write(
        dir.path().join("configuration.toml"),
        "heartbeat_timeout_secs = 1\nmax_login_attempts = 2\nblock_time_secs = 60\n\
         lockout_key = \"user_ip\"\n",
    )
    .unwrap();
    let mut server = ServerProcess::start(&host_a.prefix(), "0.0.0.0", dir.path());
    let port = server.port.to_string();
    // The server names the address students type.
    server
        .stdout
        .expect(&format!("lanchat-client {} {port}    (eth0)", host_a.ip));
    server.stdout.expect("Answering discovery on UDP port 4119");

    // alice on host B gives no address: the broadcast finds the server on host A.
    let hb = ["--heartbeat", "0.2"];
    let mut alice = ClientProcess::start("alice", &host_b.prefix(), &hb);
    let found = alice.out.expect("; connecting.");
    assert!(
        found.contains(&format!("{} port {port}", host_a.ip)),
        "{found}"
    );
    alice.send("alice");
    alice.send("alicepw");
    alice.out.expect("Login successful");

    // Someone on host B guesses carol's password: carol is locked out from host B...
    let server_args = [&host_a.ip, "-sp", &port];
    let mut guesser = ClientProcess::start(
        "guesser",
        &host_b.prefix(),
        &[&["-u", "carol", "-sip"], &server_args[..]].concat(),
    );
    guesser.send("guess1");
    guesser.out.expect("if you fail 1 more time");
    guesser.send("carol");
    guesser.send("guess2");
    guesser.out.expect("You are blocked for 60 seconds");
    assert_eq!(guesser.exit_code(), Some(1));
    let mut again = ClientProcess::start(
        "carol on B",
        &host_b.prefix(),
        &[&["-u", "carol", "-sip"], &server_args[..]].concat(),
    );
    again.send("carolpw");
    again.out.expect("you are currently blocked");
    // ... but not from host C, where carol really is.
    let carol_args = [&["-u", "carol", "-sip"], &server_args[..], &hb[..]].concat();
    let mut carol = ClientProcess::start("carol", &host_c.prefix(), &carol_args);
    carol.send("carolpw");
    carol.out.expect("Login successful");
    alice.out.expect("*** carol has joined the chat ***");

    let bob_args = [&["-u", "bob", "-sip"], &server_args[..], &hb[..]].concat();
    let mut bob = ClientProcess::start("bob", &host_c.prefix(), &bob_args);
    bob.send("bobpw");
    bob.out.expect("Login successful");
    alice.out.expect("*** bob has joined the chat ***");
    carol.out.expect("*** bob has joined the chat ***");

    // Messages both ways between the hosts, and a broadcast to both others.
    alice.send("message bob from host B");
    bob.out.expect("alice: from host B <private message>");
    bob.send("message alice from host C");
    alice.out.expect("bob: from host C <private message>");
    alice.send("broadcast hello room");
    bob.out.expect("alice: hello room <broadcast message>");
    carol.out.expect("alice: hello room <broadcast message>");
    alice.send("whoelse");
    alice.out.expect("bob");

    // Host C's cable is pulled: no FIN, no RST, just silence. The missing heartbeats tell
    // the server, which tells alice. (A client opts in to the heartbeat timeout with its
    // first heartbeat: give bob's and carol's time to send a few first.)
    std::thread::sleep(std::time::Duration::from_millis(800));
    lab.cut(2);
    let mut gone = vec![
        alice.out.expect("has left the chat (heartbeat timeout)"),
        alice.out.expect("has left the chat (heartbeat timeout)"),
    ];
    gone.sort();
    assert_eq!(
        gone,
        [
            "*** bob has left the chat (heartbeat timeout) ***",
            "*** carol has left the chat (heartbeat timeout) ***"
        ]
    );
    alice.send("whoelse");
    alice.out.expect("(Not found)");
}
