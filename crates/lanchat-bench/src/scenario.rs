//! The workloads, each against one freshly started server: relay latency (idle and with a
//! background crowd chatting), broadcast fan-out, sustained pair throughput, capacity
//! (concurrent users, memory, threads, the refusal past `max_clients`), login rates, and the
//! bare TCP ping-pong. Every message carries a stamp; every delivery is checked.

use super::crowd::Crowd;
use super::stats::{Delivery, Latencies, SeqCheck};
use super::target::{Running, ServerKind};
use super::wire::{self, Stamp, User};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes of padding in each message text (a realistic chat line of ~40 bytes).
pub const PAD: usize = 16;
/// Longest a batch of logins may take.
const LOGIN_LIMIT: Duration = Duration::from_secs(180);
/// Longest the generator waits for stragglers after a measurement.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// What a scenario measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Named numbers (units in the names).
    pub metrics: Vec<(&'static str, f64)>,
    /// The exactly-once check.
    pub delivery: Delivery,
    /// Anything a reader should know (a refusal line, a failure).
    pub note: Option<String>,
}

/// Users `u<from>`..`u<to - 1>`.
pub fn users(range: std::ops::Range<usize>) -> Vec<User> {
    range.map(User::numbered).collect()
}

/// [`users`], all with `password` if given (the argon2 runs: one hash for every user).
fn users_with_password(range: std::ops::Range<usize>, password: Option<&str>) -> Vec<User> {
    let mut list = users(range);
    if let Some(p) = password {
        for u in &mut list {
            u.password = p.to_string();
        }
    }
    list
}

/// No users yet, for `run`'s server (over TLS when it was started on its TLS door).
fn crowd(run: &Running, kind: ServerKind, epoch: Instant) -> io::Result<Crowd> {
    Ok(Crowd::new(kind.dialect(), run.addr, epoch)?.with_tls(run.tls.clone()))
}

/// Logs in `n` users; fails unless all of them got in.
fn logged_in_crowd(run: &Running, kind: ServerKind, n: usize, epoch: Instant) -> io::Result<Crowd> {
    let mut crowd = crowd(run, kind, epoch)?;
    let report = crowd.login(users(0..n), kind.login_window(), LOGIN_LIMIT)?;
    if report.ok < n {
        return Err(io::Error::other(format!(
            "only {} of {n} users logged in ({})",
            report.ok,
            report.first_refusal.unwrap_or_default()
        )));
    }
    // A barrier: a user's answer comes after everything its login made the server send
    // (lanchat's presence notices to everyone), so the measurement starts on a quiet server.
    crowd.ping_all(Duration::from_secs(60))?;
    crowd.settle(Duration::from_millis(100), Duration::from_secs(60))?;
    Ok(crowd)
}

fn ns_since(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_nanos() as u64
}

/// Sends the next stamped message of stream `from` to user `to`.
fn send_message(crowd: &mut Crowd, seq: &mut [u64], from: usize, to: usize) {
    seq[from] += 1;
    let stamp = Stamp {
        stream: from as u32,
        seq: seq[from],
        sent_ns: crowd.now_ns(),
    };
    let line = wire::message(crowd.dialect(), crowd.name(to), &wire::payload(stamp, PAD));
    crowd.send(from, &line);
}

/// Reads until `check` has `expected` deliveries, or [`DRAIN_LIMIT`].
fn drain(crowd: &mut Crowd, check: &mut SeqCheck, expected: u64) -> io::Result<()> {
    let start = Instant::now();
    while check.counts.received < expected && start.elapsed() < DRAIN_LIMIT {
        crowd.pump(Duration::from_millis(10), |rx, s, _| {
            check.arrive(rx, s.stream, s.seq);
        })?;
    }
    check.counts.expected = expected;
    Ok(())
}

/// Server CPU seconds so far (0 when the server is not a process of its own).
fn cpu(run: &Running) -> f64 {
    run.stats().map_or(0.0, |s| s.cpu_secs)
}

/// One-to-one relay latency: user 0 and user 1 take turns sending to each other, one
/// message in flight, `gap` apart; meanwhile `background` other users in pairs each send
/// `rate` messages a second to their partner.
pub fn latency(
    run: &Running,
    kind: ServerKind,
    background: usize,
    rate: f64,
    samples: usize,
) -> io::Result<Measured> {
    let epoch = Instant::now();
    let total = 2 + background / 2 * 2;
    let mut crowd = logged_in_crowd(run, kind, total, epoch)?;
    let mut check = SeqCheck::default();
    let mut lat = Latencies::default();
    let mut seq = vec![0u64; total];
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = (2..total)
        .map(|u| Reverse((start + period.mul_f64(u as f64 / total as f64), u)))
        .collect();
    let gap = if background > 0 {
        Duration::from_millis(1)
    } else {
        Duration::from_micros(200)
    };
    let limit = Duration::from_secs(60);
    let mut probe_due = start;
    let mut waiting = false;
    let mut done = 0usize;
    let mut bg_sent = 0u64;
    while done < samples && start.elapsed() < limit {
        let now = Instant::now();
        while let Some(&Reverse((due, u))) = heap.peek() {
            if due > now {
                break;
            }
            heap.pop();
            send_message(&mut crowd, &mut seq, u, u ^ 1);
            bg_sent += 1;
            heap.push(Reverse((due + period, u)));
        }
        if !waiting && now >= probe_due {
            let from = done % 2;
            send_message(&mut crowd, &mut seq, from, from ^ 1);
            waiting = true;
        }
        let mut next = heap.peek().map_or(now + gap, |r| r.0 .0);
        if !waiting {
            next = next.min(probe_due);
        }
        let timeout = next.saturating_duration_since(Instant::now());
        crowd.pump(timeout, |rx, s, at| {
            check.arrive(rx, s.stream, s.seq);
            if s.stream < 2 {
                lat.push(ns_since(epoch, at).saturating_sub(s.sent_ns));
                waiting = false;
                done += 1;
                probe_due = at + gap;
            }
        })?;
    }
    let secs = start.elapsed().as_secs_f64();
    drain(&mut crowd, &mut check, seq.iter().sum())?;
    let s = lat.summary();
    let mut metrics = vec![
        ("p50_us", s.p50_us),
        ("p99_us", s.p99_us),
        ("max_us", s.max_us),
    ];
    if background > 0 {
        metrics.push(("background_msgs_per_s", bg_sent as f64 / secs));
    }
    Ok(Measured {
        metrics,
        delivery: check.counts,
        note: (s.count < samples).then(|| format!("only {} of {samples} samples", s.count)),
    })
}

/// Broadcast fan-out: user 0 broadcasts to `receivers` others, keeping `window` broadcasts
/// not yet delivered to everyone in flight, for `duration`.
pub fn fanout(
    run: &Running,
    kind: ServerKind,
    receivers: usize,
    window: u64,
    duration: Duration,
) -> io::Result<Measured> {
    let epoch = Instant::now();
    let mut crowd = logged_in_crowd(run, kind, receivers + 1, epoch)?;
    if !crowd.join_all(Duration::from_secs(60))? {
        return Err(io::Error::other("not every user could join the channel"));
    }
    crowd.settle(Duration::from_millis(100), Duration::from_secs(30))?;
    let mut check = SeqCheck::default();
    let mut lat = Latencies::default();
    let mut arrived: Vec<u32> = vec![0];
    let mut complete = 0u64;
    let mut sent = 0u64;
    let mut in_window = 0u64;
    let span = Window::new(duration);
    let (from, end) = (span.from, span.end);
    let mut cpu0 = None;
    while Instant::now() < end {
        if cpu0.is_none() && Instant::now() >= from {
            cpu0 = Some(cpu(run));
        }
        while sent < complete + window {
            sent += 1;
            arrived.push(0);
            let stamp = Stamp {
                stream: 0,
                seq: sent,
                sent_ns: crowd.now_ns(),
            };
            let line =
                wire::broadcast(crowd.dialect(), &wire::payload(stamp, super::scenario::PAD));
            crowd.send(0, &line);
        }
        crowd.pump(Duration::from_millis(2), |rx, s, at| {
            if check.arrive(rx, s.stream, s.seq) == super::stats::ArrivalVerdict::InOrder {
                if let Some(n) = arrived.get_mut(s.seq as usize) {
                    *n += 1;
                }
            }
            if at >= from && at < end {
                in_window += 1;
                lat.push(ns_since(epoch, at).saturating_sub(s.sent_ns));
            }
        })?;
        while arrived
            .get(complete as usize + 1)
            .is_some_and(|&n| n as usize >= receivers)
        {
            complete += 1;
        }
    }
    let cpu1 = cpu(run);
    drain(&mut crowd, &mut check, sent * receivers as u64)?;
    let s = lat.summary();
    let rate = in_window as f64 / span.secs();
    Ok(Measured {
        metrics: vec![
            ("deliveries_per_s", rate),
            ("p99_us", s.p99_us),
            (
                "cpu_ms_per_1k",
                per_thousand(cpu1 - cpu0.unwrap_or(cpu1), in_window),
            ),
        ],
        delivery: check.counts,
        note: None,
    })
}

/// When a rate scenario measures: after a warm-up (the first lines of a run pay for
/// creating history files, waking every thread, growing buffers), until the end.
struct Window {
    from: Instant,
    end: Instant,
}

impl Window {
    fn new(duration: Duration) -> Window {
        let start = Instant::now();
        let warmup = (duration / 5).min(Duration::from_millis(300));
        Window {
            from: start + warmup,
            end: start + duration,
        }
    }

    fn secs(&self) -> f64 {
        (self.end - self.from).as_secs_f64()
    }
}

/// Server CPU milliseconds per 1,000 deliveries.
fn per_thousand(cpu_secs: f64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        0.0
    } else {
        cpu_secs * 1000.0 / deliveries as f64 * 1000.0
    }
}

/// Sustained throughput: `pairs` pairs, each user sending to its partner with `window`
/// messages in flight, for `duration`.
pub fn pairs(
    run: &Running,
    kind: ServerKind,
    pairs: usize,
    window: u64,
    duration: Duration,
) -> io::Result<Measured> {
    let epoch = Instant::now();
    let total = pairs * 2;
    let mut crowd = logged_in_crowd(run, kind, total, epoch)?;
    let mut check = SeqCheck::default();
    let mut lat = Latencies::default();
    let mut seq = vec![0u64; total];
    let mut got = vec![0u64; total];
    let mut in_window = 0u64;
    let mut refill: Vec<usize> = (0..total).collect();
    let span = Window::new(duration);
    let (from, end) = (span.from, span.end);
    let mut cpu0 = None;
    while Instant::now() < end {
        if cpu0.is_none() && Instant::now() >= from {
            cpu0 = Some(cpu(run));
        }
        for u in refill.drain(..) {
            while seq[u] < got[u] + window {
                send_message(&mut crowd, &mut seq, u, u ^ 1);
            }
        }
        crowd.pump(Duration::from_millis(2), |rx, s, at| {
            check.arrive(rx, s.stream, s.seq);
            let sender = s.stream as usize;
            if let Some(g) = got.get_mut(sender) {
                *g += 1;
                refill.push(sender);
            }
            if at >= from && at < end {
                in_window += 1;
                lat.push(ns_since(epoch, at).saturating_sub(s.sent_ns));
            }
        })?;
    }
    let cpu1 = cpu(run);
    drain(&mut crowd, &mut check, seq.iter().sum())?;
    let s = lat.summary();
    Ok(Measured {
        metrics: vec![
            ("msgs_per_s", in_window as f64 / span.secs()),
            ("p50_us", s.p50_us),
            ("p99_us", s.p99_us),
            (
                "cpu_ms_per_1k",
                per_thousand(cpu1 - cpu0.unwrap_or(cpu1), in_window),
            ),
        ],
        delivery: check.counts,
        note: None,
    })
}

/// Capacity: logs in `n` users (the server's `max_clients` is `n`), checks every one is
/// still answered, reads the server's memory and threads, and checks that one more
/// connection is refused with a line. `password`: every user's, if given (the argon2 run).
pub fn capacity(
    run: &Running,
    kind: ServerKind,
    n: usize,
    password: Option<&str>,
) -> io::Result<Measured> {
    let epoch = Instant::now();
    let mut crowd = crowd(run, kind, epoch)?;
    let list = users_with_password(0..n, password);
    let report = crowd.login(list, kind.login_window(), LOGIN_LIMIT)?;
    crowd.settle(Duration::from_millis(200), Duration::from_secs(120))?;
    let (answered, asked) = crowd.ping_all(Duration::from_secs(60))?;
    // Memory is read once the server has been quiet a moment (what a class logged in sees,
    // not the peak of the login burst: allocators give freed memory back lazily).
    crowd.settle(Duration::from_millis(1500), Duration::from_secs(5))?;
    let stats = run.stats().unwrap_or_default();
    if let Some(secs) = std::env::var("LANCHAT_BENCH_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // For a look at the loaded server (/proc/PID/smaps, perf) before it is stopped.
        eprintln!("holding {n} users for {secs} s (server pid {:?})", run.pid);
        std::thread::sleep(Duration::from_secs(secs));
    }
    let refusal = if matches!(kind, ServerKind::Relay | ServerKind::ThreadRelay) {
        None
    } else {
        Some(one_past_max(run, kind)?)
    };
    let mut metrics = vec![
        ("users_held", answered as f64),
        ("logins_per_s", report.per_sec()),
        ("rss_mib", stats.rss_kib as f64 / 1024.0),
        ("kib_per_user", stats.rss_kib as f64 / n.max(1) as f64),
        ("threads_per_user", stats.threads as f64 / n.max(1) as f64),
    ];
    let mut note = None;
    if let Some((clean, line)) = &refusal {
        metrics.push(("refused_past_max", if *clean { 1.0 } else { 0.0 }));
        note = Some(format!("user {}: {line}", n + 1));
    }
    if answered < asked || report.ok < n {
        note = Some(format!(
            "{} of {n} logged in, {answered} of {asked} answered; {}",
            report.ok,
            report.first_refusal.unwrap_or_default()
        ));
    }
    crowd.fleet.close_all();
    Ok(Measured {
        metrics,
        delivery: Delivery::default(),
        note,
    })
}

/// Connects once more past `max_clients`; (refused cleanly, the line the server sent).
fn one_past_max(run: &Running, kind: ServerKind) -> io::Result<(bool, String)> {
    let mut stream = TcpStream::connect_timeout(&run.addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let user = User::numbered(usize::MAX / 2);
    if let Some(hello) = wire::greeting(kind.dialect(), &user) {
        let _ = stream.write_all(hello.as_bytes());
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut last = String::new();
    for _ in 0..20 {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            // lanchat's refusal is said in prose (nobody could ask for tagged lines yet),
            // then the connection closes before HELLO.
            let refused = kind.dialect() == wire::Dialect::Lanchat && !last.is_empty();
            return Ok(match refused {
                true => (true, last),
                false => (false, "closed without a line".into()),
            });
        }
        let l = line.trim_end();
        last = l.to_string();
        let refused = match kind.dialect() {
            wire::Dialect::Lanchat => false,
            _ => l.starts_with("ERROR") || l.contains(" 465 "),
        };
        let admitted = match kind.dialect() {
            wire::Dialect::Lanchat => l.starts_with("HELLO"),
            _ => l.contains(" 001 "),
        };
        if refused || admitted {
            // A refused connection must then be closed by the server.
            let closed = refused && {
                let mut rest = Vec::new();
                reader
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_secs(2)))?;
                // End of file, or a reset (the server did not read what we sent): closed.
                reader.read_to_end(&mut rest).map_or_else(
                    |e| {
                        !matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        )
                    },
                    |_| true,
                )
            };
            return Ok((refused && closed, l.to_string()));
        }
    }
    Ok((false, line.trim_end().to_string()))
}

/// Logins per second of `n` users, each with its own password or all with `password` (the
/// argon2 run), the server's usual number in flight.
pub fn logins(
    run: &Running,
    kind: ServerKind,
    n: usize,
    password: Option<&str>,
) -> io::Result<Measured> {
    let mut crowd = crowd(run, kind, Instant::now())?;
    let list = users_with_password(0..n, password);
    let report = crowd.login(list, kind.login_window(), LOGIN_LIMIT)?;
    Ok(Measured {
        metrics: vec![("logins_per_s", report.per_sec())],
        delivery: Delivery::default(),
        note: (report.ok < n).then(|| {
            format!(
                "{} of {n} logged in: {}",
                report.ok,
                report.first_refusal.unwrap_or_default()
            )
        }),
    })
}

/// Bare TCP ping-pong against the echo server: the round trip the loopback allows.
pub fn pingpong(run: &Running, samples: usize) -> io::Result<Measured> {
    let mut stream = TcpStream::connect_timeout(&run.addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let msg = wire::payload(
        Stamp {
            stream: 0,
            seq: 0,
            sent_ns: 0,
        },
        PAD,
    ) + "\n";
    let mut buf = vec![0u8; msg.len()];
    let mut lat = Latencies::default();
    for _ in 0..samples {
        let t = Instant::now();
        stream.write_all(msg.as_bytes())?;
        stream.read_exact(&mut buf)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let s = lat.summary();
    Ok(Measured {
        metrics: vec![
            ("p50_us", s.p50_us),
            ("p99_us", s.p99_us),
            ("max_us", s.max_us),
        ],
        delivery: Delivery {
            expected: samples as u64,
            received: s.count as u64,
            ..Delivery::default()
        },
        note: None,
    })
}
