//! Beyond loopback: a server and two clients in two network namespaces joined by a veth pair,
//! exchanging server-relayed and direct (peer-to-peer) messages over real interface
//! addresses. The namespaces are made and removed by the test; where it lacks the rights
//! (not root, no `ip`), it says so and passes without running.

mod common;

use common::{ClientProcess, ServerProcess};
use std::process::Command;

/// Two namespaces `a` (10.251.N.1) and `b` (10.251.N.2) joined by a veth pair; removed on drop.
struct Lab {
    a: String,
    b: String,
    /// The address of `a` as seen from `b`.
    a_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        let id = std::process::id() % 200 + 20;
        let (a, b) = (format!("lc{tag}{id}a"), format!("lc{tag}{id}b"));
        let (va, vb) = (format!("v{tag}{id}a"), format!("v{tag}{id}b"));
        let a_ip = format!("10.251.{id}.1");
        let b_ip = format!("10.251.{id}.2");
        if !ip(&["netns", "add", &a]) {
            return None;
        }
        let lab = Lab {
            a: a.clone(),
            b: b.clone(),
            a_ip: a_ip.clone(),
        };
        let steps: [&[&str]; 10] = [
            &["netns", "add", &b],
            &["link", "add", &va, "type", "veth", "peer", "name", &vb],
            &["link", "set", &va, "netns", &a],
            &["link", "set", &vb, "netns", &b],
            &["-n", &a, "addr", "add", &format!("{a_ip}/24"), "dev", &va],
            &["-n", &b, "addr", "add", &format!("{b_ip}/24"), "dev", &vb],
            &["-n", &a, "link", "set", &va, "up"],
            &["-n", &b, "link", "set", &vb, "up"],
            &["-n", &a, "link", "set", "lo", "up"],
            &["-n", &b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if !ip(step) {
                eprintln!("netns: `ip {}` failed", step.join(" "));
                return None;
            }
        }
        Some(lab)
    }

    fn exec(&self, ns: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), ns.to_string()]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

#[test]
fn two_hosts_chat_and_message_directly_across_a_veth_link() {
    let Some(lab) = Lab::new("p") else {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let in_a = lab.exec(&lab.a);
    let in_b = lab.exec(&lab.b);
    let in_a: Vec<&str> = in_a.iter().map(String::as_str).collect();
    let in_b: Vec<&str> = in_b.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&in_a, "0.0.0.0", dir.path());
    let port = server.port.to_string();

    // bob shares host a with the server; alice is on host b and reaches it over the link.
    let mut bob = ClientProcess::start("bob", &in_a, &["127.0.0.1", &port, "--p2p-port", "7102"]);
    bob.send("bob");
    bob.send("bobpw");
    bob.out.expect("Login successful");
    let mut alice = ClientProcess::start("alice", &in_b, &[&lab.a_ip, &port, "--p2p-port", "7101"]);
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
