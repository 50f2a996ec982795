//! A real terminal for a program, in a tmux server of the test's own.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own (its socket in a test's temp dir, so the default server and
/// other tests' are never touched), with one session: a real terminal for a program.
pub struct Tmux {
    /// The server's socket.
    socket: std::path::PathBuf,
    /// The session's name.
    target: String,
}

impl Tmux {
    /// A tmux whose socket is in `dir`, for a session named `target` (not started yet).
    pub fn new(dir: &std::path::Path, target: &str) -> Tmux {
        Tmux {
            socket: dir.join("tmux.sock"),
            target: target.to_string(),
        }
    }

    /// Starts the session running `command` in a `width` x `height` terminal.
    pub fn start(&self, command: &str, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            &self.target,
            "-x",
            &w,
            "-y",
            &h,
            command,
        ]);
    }

    /// Runs a tmux command on this server; its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the session's window shows (and its scrollback).
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-200", "-t", &self.target])
    }

    /// Waits until the window shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{} never showed {needle:?}; screen:\n{screen}",
                self.target
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", &self.target, "-l", line]);
        self.run(&["send-keys", "-t", &self.target, "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}
