//! `cargo bench` (or `make bench-codec`): the pure, per-message work of the server on its own,
//! in nanoseconds per operation, median of several runs. The load generator
//! (`make bench`, `lanchat-bench`) measures the whole server on real sockets; this shows
//! what parsing, formatting and the on-disk record cost without the kernel in the way, so a
//! change to one of them can be judged before a noisy end-to-end run.
//!
//! No harness crate: each case is timed in batches with `std::time::Instant` and
//! `std::hint::black_box`, and the median batch is reported.

use lanchat::protocol::{parse_command, sanitize_text, Kind, Line};
use lanchat::store::record;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One measured operation and its name.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Timed batches per case; the median is printed.
const BATCHES: usize = 15;

/// Runs `op` in batches of about 20 ms and returns the median nanoseconds per call.
fn median_ns(mut op: impl FnMut()) -> f64 {
    // Calibrate the batch size to ~20 ms.
    let mut per_batch = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..per_batch {
            op();
        }
        if start.elapsed() > Duration::from_millis(20) || per_batch > 1 << 30 {
            break;
        }
        per_batch *= 2;
    }
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[BATCHES / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test`/`nextest` (which list and run every target)
    // get nothing to run here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let text = "see you in the lab at three, bring the printout of section 4.2 please";
    let line = format!("message bob {text}");
    let msg = Line::new(Kind::Msg, &["alice"], text);
    let wire = msg.to_wire();
    let cases: Vec<Case> = vec![
        (
            "parse_command(message bob TEXT)",
            Box::new(|| {
                black_box(parse_command(black_box(&line), "alice").ok());
            }),
        ),
        (
            "sanitize_text(TEXT)",
            Box::new(|| {
                black_box(sanitize_text(black_box(text)));
            }),
        ),
        (
            "Line::new(MSG) + write_wire",
            Box::new(|| {
                let l = Line::new(Kind::Msg, &["alice"], black_box(text));
                let mut out = Vec::with_capacity(128);
                l.write_wire(&mut out);
                black_box(out);
            }),
        ),
        (
            "Line::parse(MSG wire)",
            Box::new(|| {
                black_box(Line::parse(black_box(wire.trim_end())));
            }),
        ),
        (
            "record::encode(history entry)",
            Box::new(|| {
                black_box(record::encode(&[
                    "hist",
                    "1764680000",
                    "-",
                    "alice",
                    black_box(text),
                ]));
            }),
        ),
        (
            "record::crc32(100 bytes)",
            Box::new(|| {
                black_box(record::crc32(black_box(&[0x5a; 100])));
            }),
        ),
    ];
    println!("| operation | ns per call (median of {BATCHES}) |");
    println!("|---|---:|");
    for (name, mut op) in cases {
        println!("| {name} | {:.0} |", median_ns(&mut op));
    }
}
