//! `lanchat-bench`: a load generator that measures lanchat side by side with real IRC servers
//! (ngircd, inspircd) and with the loopback limit (a bare echo and a bare one-thread relay),
//! on the same workloads, in one run. A workspace crate of its own, so the chat library
//! carries none of it; it uses the library only for argon2 credentials (and, in its tests,
//! to run a server in-process).
//!
//! ```text
//! wire      pure: what each dialect sends and expects, payload stamps (stream, seq, time)
//! stats     pure: percentiles, the exactly-once check, medians
//! report    pure: the table, JSON and the issue's targets
//! chart     the same results as an SVG picture, one panel per workload (plotters)
//! saved     a report read back from its JSON, to draw the chart again
//! net       epoll: one thread drives thousands of sockets (the generator must not be the
//!           bottleneck); also pins CPUs and raises the open-files limit
//! crowd     simulated users: bounded logins in flight, keep-alives, payload arrivals
//! scenario  the workloads (latency, fan-out, pairs, capacity, logins, ping-pong; logins
//!           and pairs over TLS too)
//! target    starting each server fresh per scenario
//! proc_stats what /proc says about a server process (memory, threads, CPU time)
//! baseline  the echo and relay servers of the loopback limit
//! ```
//!
//! Every scenario starts a fresh server (pinned to CPU 0 when asked; the generator pins
//! itself to CPU 1), so one server's leftovers never slow the next.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod chart;
pub mod crowd;
pub mod net;
pub mod proc_stats;
pub mod report;
pub mod saved;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod wire;

use report::Report;
use scenario::Measured;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use target::{Running, ServerKind, Spec};

/// One workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// Relay latency with `background` other users sending `rate` messages/s each.
    Latency {
        /// Users chatting meanwhile.
        background: usize,
        /// Messages per second each of them sends.
        rate: f64,
        /// Latency samples.
        samples: usize,
    },
    /// Broadcast to `receivers` with `window` broadcasts in flight.
    Fanout {
        /// Receivers.
        receivers: usize,
        /// Broadcasts in flight.
        window: u64,
        /// How long.
        secs: f64,
    },
    /// `pairs` pairs sending to each other, `window` messages in flight per sender.
    Pairs {
        /// Pairs.
        pairs: usize,
        /// Messages in flight per sender.
        window: u64,
        /// How long.
        secs: f64,
    },
    /// Concurrent logged-in users.
    Capacity {
        /// Users.
        users: usize,
    },
    /// [`Workload::Capacity`] with argon2id credentials (lanchat only): the password check
    /// goes deeper into each connection thread's stack than anything else a user does, and
    /// what an idle user keeps of it shows here.
    Argon2Capacity {
        /// Users.
        users: usize,
    },
    /// Logins with plaintext credentials (each user its own password).
    Plaintext {
        /// Users.
        users: usize,
    },
    /// Logins with argon2id credentials (lanchat only).
    Argon2 {
        /// Users.
        users: usize,
    },
    /// [`Workload::Plaintext`] logins over the server's TLS door: a full handshake each.
    TlsLogins {
        /// Users.
        users: usize,
    },
    /// [`Workload::Pairs`] over the server's TLS door.
    TlsPairs {
        /// Pairs.
        pairs: usize,
        /// Messages in flight per sender.
        window: u64,
        /// How long.
        secs: f64,
    },
    /// Bare TCP ping-pong (the limit only).
    PingPong {
        /// Round trips.
        samples: usize,
    },
}

impl Workload {
    /// The scenario's name in the report.
    pub fn name(&self) -> String {
        match self {
            Workload::Latency { background: 0, .. } => "latency idle".into(),
            Workload::Latency { background, .. } => format!("latency +{background} active"),
            Workload::Fanout {
                receivers, window, ..
            } => format!("fanout {receivers} x{window}"),
            Workload::Pairs { pairs, .. } => format!("pairs {pairs}"),
            Workload::Capacity { users } => format!("capacity {users}"),
            Workload::Argon2Capacity { users } => format!("capacity {users} argon2"),
            Workload::Plaintext { users } => format!("logins {users} plaintext"),
            Workload::Argon2 { users } => format!("logins {users} argon2"),
            Workload::TlsLogins { users } => format!("logins {users} tls"),
            Workload::TlsPairs { pairs, .. } => format!("pairs {pairs} tls"),
            Workload::PingPong { .. } => "tcp ping-pong".into(),
        }
    }

    /// Whether it is measured in every run: the capacity ramp and the argon2 logins take
    /// long and vary little against the gaps they show, so they are measured once.
    pub fn every_run(&self) -> bool {
        !matches!(
            self,
            Workload::Capacity { .. } | Workload::Argon2Capacity { .. } | Workload::Argon2 { .. }
        )
    }

    /// Whether it applies to a server.
    pub fn applies_to(&self, kind: ServerKind) -> bool {
        match self {
            Workload::Argon2 { .. } | Workload::Argon2Capacity { .. } => {
                kind == ServerKind::Lanchat
            }
            Workload::PingPong { .. } => kind == ServerKind::Relay,
            // The servers with a TLS door here: lanchat's native one, ngircd's SSL port.
            Workload::TlsLogins { .. } | Workload::TlsPairs { .. } => {
                matches!(kind, ServerKind::Lanchat | ServerKind::Ngircd)
            }
            _ => true,
        }
    }

    /// Users the server must know.
    fn users(&self) -> usize {
        match self {
            Workload::Latency { background, .. } => background + 2,
            Workload::Fanout { receivers, .. } => receivers + 1,
            Workload::Pairs { pairs, .. } | Workload::TlsPairs { pairs, .. } => pairs * 2,
            Workload::TlsLogins { users } => *users,
            Workload::Capacity { users }
            | Workload::Argon2Capacity { users }
            | Workload::Plaintext { users }
            | Workload::Argon2 { users } => *users,
            Workload::PingPong { .. } => 1,
        }
    }

    /// How to start `kind`'s server for this workload.
    pub fn spec(&self, kind: ServerKind, opts: &RunOptions) -> Spec {
        let users = self.users();
        Spec {
            kind: match self {
                Workload::PingPong { .. } => ServerKind::Echo,
                _ => kind,
            },
            lanchat_bin: opts.lanchat_bin.clone(),
            bench_bin: opts.bench_bin.clone(),
            max_clients: match self {
                Workload::Capacity { users } | Workload::Argon2Capacity { users } => *users,
                _ => (users + 64).max(1000),
            },
            users,
            argon2: matches!(
                self,
                Workload::Argon2 { .. } | Workload::Argon2Capacity { .. }
            ),
            cpu: opts.pin.then_some(0),
            tls: matches!(self, Workload::TlsLogins { .. } | Workload::TlsPairs { .. }),
        }
    }

    /// Runs it against a started server.
    pub fn run(&self, server: &Running, kind: ServerKind) -> io::Result<Measured> {
        match *self {
            Workload::Latency {
                background,
                rate,
                samples,
            } => scenario::latency(server, kind, background, rate, samples),
            Workload::Fanout {
                receivers,
                window,
                secs,
            } => scenario::fanout(
                server,
                kind,
                receivers,
                window,
                Duration::from_secs_f64(secs),
            ),
            Workload::Pairs {
                pairs,
                window,
                secs,
            }
            | Workload::TlsPairs {
                pairs,
                window,
                secs,
            } => scenario::pairs(server, kind, pairs, window, Duration::from_secs_f64(secs)),
            Workload::Capacity { users } => scenario::capacity(server, kind, users, None),
            Workload::Argon2Capacity { users } => {
                scenario::capacity(server, kind, users, Some(ARGON2_PASSWORD))
            }
            Workload::Plaintext { users } | Workload::TlsLogins { users } => {
                scenario::logins(server, kind, users, None)
            }
            Workload::Argon2 { users } => {
                scenario::logins(server, kind, users, Some(ARGON2_PASSWORD))
            }
            Workload::PingPong { samples } => scenario::pingpong(server, samples),
        }
    }
}

/// The password of every user in the argon2 run.
pub const ARGON2_PASSWORD: &str = "pw-argon2";

/// The workloads of `make bench` (`quick = false`) and `make bench-quick`; `users` is the
/// capacity run's size, `secs` overrides how long the rate scenarios run.
pub fn workloads(quick: bool, users: usize, secs: Option<f64>) -> Vec<Workload> {
    let (default_secs, samples, background) = if quick {
        (0.4, 600, 200)
    } else {
        (1.0, 2000, 1000)
    };
    let secs = secs.unwrap_or(default_secs);
    let mut w = vec![
        Workload::PingPong { samples },
        Workload::Latency {
            background: 0,
            rate: 0.0,
            samples,
        },
        Workload::Latency {
            background,
            rate: 10.0,
            samples: samples / 2,
        },
    ];
    for receivers in [100, 1000] {
        for window in [1, 32] {
            // The quick run keeps one 1,000-receiver case.
            if !(quick && receivers == 1000 && window == 1) {
                w.push(Workload::Fanout {
                    receivers,
                    window,
                    secs,
                });
            }
        }
    }
    w.push(Workload::Pairs {
        pairs: 64,
        window: 4,
        secs,
    });
    if !quick {
        w.push(Workload::Pairs {
            pairs: 500,
            window: 4,
            secs,
        });
    }
    w.push(Workload::Capacity { users });
    w.push(Workload::Plaintext { users: 1000 });
    w.push(Workload::Argon2 {
        users: if quick { 16 } else { 64 },
    });
    if !quick {
        w.push(Workload::Argon2Capacity { users: 500 });
    }
    // The cost of TLS: the same logins and pairs as above, over the TLS doors.
    w.push(Workload::TlsLogins { users: 1000 });
    w.push(Workload::TlsPairs {
        pairs: 64,
        window: 4,
        secs,
    });
    w
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Short runs (`make bench-quick`).
    pub quick: bool,
    /// Repetitions of each scenario (medians are reported).
    pub runs: usize,
    /// The servers, in order.
    pub kinds: Vec<ServerKind>,
    /// lanchat-server's binary.
    pub lanchat_bin: PathBuf,
    /// This binary (to run the baselines as their own process).
    pub bench_bin: Option<PathBuf>,
    /// Pin servers to CPU 0 (the generator pins itself to CPU 1).
    pub pin: bool,
    /// Users of the capacity scenario.
    pub users: usize,
    /// The command line, for the report.
    pub command: String,
}

/// Runs every workload `runs` times against every server, one after the other, each on a
/// fresh server; progress goes to `log`.
pub fn run(opts: &RunOptions, workloads: &[Workload], log: &mut dyn FnMut(&str)) -> Report {
    let mut report = Report {
        command: opts.command.clone(),
        runs: opts.runs,
        ..Report::default()
    };
    for run in 1..=opts.runs {
        for w in workloads {
            for &kind in &opts.kinds {
                if !w.applies_to(kind) || (run > 1 && !w.every_run()) {
                    continue;
                }
                let name = w.name();
                let result = target::start(&w.spec(kind, opts)).and_then(|server| {
                    let outcome = w.run(&server, kind);
                    drop(server);
                    outcome
                });
                let line = match result {
                    Ok(outcome) => record(&mut report, &name, kind, &outcome),
                    Err(e) => {
                        let note = format!("{} {name}: failed: {e}", kind.name());
                        report.notes.push(note.clone());
                        note
                    }
                };
                log(&format!("[run {run}/{}] {line}", opts.runs));
            }
        }
    }
    report
}

/// Adds an outcome to the report; returns a progress line.
fn record(report: &mut Report, scenario: &str, kind: ServerKind, outcome: &Measured) -> String {
    let target = kind.name();
    for (metric, value) in &outcome.metrics {
        report.add(scenario, target, metric, *value);
    }
    report
        .delivery
        .entry(target.to_string())
        .or_default()
        .add(outcome.delivery);
    if let Some(note) = &outcome.note {
        report.notes.push(format!("{target} {scenario}: {note}"));
    }
    let metrics: Vec<String> = outcome
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={}", report::fmt_num(Some(*v))))
        .collect();
    let d = outcome.delivery;
    let check = if d.expected == 0 {
        String::new()
    } else if d.exactly_once() {
        format!("; {} deliveries exactly once", d.received)
    } else {
        format!(
            "; {} of {} delivered, {} duplicated, {} out of order",
            d.received, d.expected, d.duplicates, d.gaps
        )
    };
    format!("{target} {scenario}: {}{check}", metrics.join(" "))
}
