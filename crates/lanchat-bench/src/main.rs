//! `lanchat-bench`: measures lanchat (its native and its IRC door) against ngircd, inspircd
//! and the loopback limit on the same workloads (see the `lanchat_bench` library beside it).
//! `make bench` / `make bench-quick` run it.
//!
//! Thin: parses arguments, pins itself to CPU 1, runs the benchmark library, prints the
//! table, the delivery checks and the targets, and writes the JSON and the SVG chart;
//! `lanchat-bench chart FILE` draws the chart again from a saved JSON.

use clap::{Parser, Subcommand, ValueEnum};
use lanchat_bench::{self as bench, baseline::Baseline, net, target::ServerKind, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Load generator and benchmark for lanchat.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct BenchArgs {
    /// Run a baseline server, or draw a saved report, instead of measuring.
    #[command(subcommand)]
    command: Option<Sub>,
    /// Short runs with fewer users (under a minute).
    #[arg(long)]
    quick: bool,
    /// Repetitions of every scenario; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Servers to measure, in order [default:
    /// lanchat,lanchat-irc,ngircd,inspircd,limit,limit-threads; with --quick,
    /// lanchat,ngircd,inspircd,limit, to stay under a minute].
    #[arg(long, value_delimiter = ',')]
    targets: Vec<TargetChoice>,
    /// Users in the capacity scenario (default 10000, 1000 with --quick).
    #[arg(long)]
    users: Option<usize>,
    /// Seconds each fan-out and pairs scenario runs (default 1.0, 0.4 with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Only scenarios whose name contains this (e.g. "fanout").
    #[arg(long)]
    only: Option<String>,
    /// The lanchat-server binary (default: beside this one).
    #[arg(long, value_name = "FILE")]
    server: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, value_name = "FILE", default_value = "target/bench.json")]
    json: PathBuf,
    /// Where to write the chart (SVG): one panel per workload, relative to ngircd.
    #[arg(long, value_name = "FILE", default_value = "target/bench.svg")]
    chart: PathBuf,
    /// Do not pin the servers to CPU 0 and the generator to CPU 1.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Serve a loopback baseline on 127.0.0.1:PORT until killed.
    Baseline {
        /// echo, relay or threads.
        which: Which,
        /// Port.
        port: u16,
    },
    /// Draw the chart again from a JSON report a run saved (e.g. target/bench.json).
    Chart {
        /// The JSON report.
        file: PathBuf,
        /// Where to write the SVG [default: FILE with the extension .svg].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A line added under the title, e.g. how noisy the machine was.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    Echo,
    Relay,
    /// The relay with a blocking thread per client.
    Threads,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetChoice {
    Lanchat,
    /// lanchat's IRC door.
    LanchatIrc,
    Ngircd,
    Inspircd,
    Limit,
    /// The bare relay built like lanchat: a blocking thread per client.
    LimitThreads,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    if let Some(Sub::Chart { file, out, note }) = &args.command {
        let out = out.clone().unwrap_or_else(|| file.with_extension("svg"));
        return redraw(file, &out, note.as_deref());
    }
    if let Some(Sub::Baseline { which, port }) = args.command {
        let kind = match which {
            Which::Echo => Baseline::Echo,
            Which::Relay => Baseline::Relay,
            Which::Threads => Baseline::Threads,
        };
        return match bench::target::run_baseline(kind, port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let limit = net::raise_fd_limit();
    let me = std::env::current_exe().ok();
    let server = args.server.clone().or_else(|| {
        me.as_ref()
            .and_then(|m| m.parent())
            .map(|d| d.join("lanchat-server"))
    });
    // Absolute: the server runs in a temporary directory of its own.
    let Some(server) = server.and_then(|s| std::fs::canonicalize(s).ok()) else {
        eprintln!(
            "error: lanchat-server not found; build it (cargo build --release) or pass --server"
        );
        return ExitCode::from(2);
    };
    let pin = !args.no_pin && bench::target::has_taskset() && num_cpus() >= 2;
    if pin && !net::pin_to_cpu(1) {
        eprintln!("warning: could not pin the generator to CPU 1");
    }
    let users = args.users.unwrap_or(if args.quick { 1000 } else { 10_000 });
    let targets = if !args.targets.is_empty() {
        args.targets.clone()
    } else if args.quick {
        vec![
            TargetChoice::Lanchat,
            TargetChoice::Ngircd,
            TargetChoice::Inspircd,
            TargetChoice::Limit,
        ]
    } else {
        vec![
            TargetChoice::Lanchat,
            TargetChoice::LanchatIrc,
            TargetChoice::Ngircd,
            TargetChoice::Inspircd,
            TargetChoice::Limit,
            TargetChoice::LimitThreads,
        ]
    };
    let mut kinds = Vec::new();
    for t in &targets {
        let kind = match t {
            TargetChoice::Lanchat => ServerKind::Lanchat,
            TargetChoice::LanchatIrc => ServerKind::LanchatIrc,
            TargetChoice::Ngircd => ServerKind::Ngircd,
            TargetChoice::Inspircd => ServerKind::Inspircd,
            TargetChoice::Limit => ServerKind::Relay,
            TargetChoice::LimitThreads => ServerKind::ThreadRelay,
        };
        let program = match kind {
            ServerKind::Ngircd => Some("ngircd"),
            ServerKind::Inspircd => Some("inspircd"),
            _ => None,
        };
        if program.is_some_and(|p| !on_path(p)) {
            eprintln!("note: {} is not installed; skipping it", kind.name());
            continue;
        }
        kinds.push(kind);
    }
    let opts = RunOptions {
        quick: args.quick,
        runs: args.runs.max(1),
        kinds,
        lanchat_bin: server,
        bench_bin: me,
        pin,
        users,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut workloads = bench::workloads(args.quick, users, args.secs);
    if let Some(only) = &args.only {
        workloads.retain(|w| w.name().contains(only.as_str()));
    }
    eprintln!(
        "lanchat-bench: {} run(s), servers {}, open-files limit {limit}, pinned: {}",
        opts.runs,
        opts.kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        if pin {
            "server CPU 0, generator CPU 1"
        } else {
            "no"
        }
    );
    let report = bench::run(&opts, &workloads, &mut |line| eprintln!("{line}"));
    println!("\n{}", report.table());
    println!("{}", report.delivery_lines());
    for line in report.tls_cost() {
        println!("{line}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    println!("\nTargets:");
    for c in report.checks(users) {
        let verdict = match c.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!("  [{verdict}] {}: {}", c.what, c.detail);
    }
    if let Some(dir) = args.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&args.json, report.json(users)) {
        Ok(()) => println!("\nJSON: {}", args.json.display()),
        Err(e) => eprintln!("error: cannot write {}: {e}", args.json.display()),
    }
    let when = std::time::SystemTime::now();
    match write_chart(&report, &args.chart, &subtitle(&report, when, None)) {
        Ok(()) => println!("Chart: {}", args.chart.display()),
        Err(e) => eprintln!("error: {e}"),
    }
    ExitCode::SUCCESS
}

/// `lanchat-bench chart FILE`: the chart of a saved report, dated by the file's time.
fn redraw(file: &std::path::Path, out: &std::path::Path, note: Option<&str>) -> ExitCode {
    let read = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
        .and_then(|text| {
            bench::saved::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
        });
    let report = match read {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let when = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now());
    match write_chart(&report, out, &subtitle(&report, when, note)) {
        Ok(()) => {
            println!("Chart: {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The line under the chart's title: which command, how many runs, when, and `note`.
fn subtitle(
    report: &bench::report::Report,
    when: std::time::SystemTime,
    note: Option<&str>,
) -> String {
    let secs = when
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut line = format!(
        "{} ({} run{}, medians), measured {}",
        report.command,
        report.runs,
        if report.runs == 1 { "" } else { "s" },
        lanchat::clock::format_utc(secs),
    );
    if let Some(note) = note {
        line.push_str(". ");
        line.push_str(note);
    }
    line
}

fn write_chart(
    report: &bench::report::Report,
    out: &std::path::Path,
    subtitle: &str,
) -> Result<(), String> {
    let svg = bench::chart::render(report, subtitle)
        .map_err(|e| format!("cannot draw the chart: {e}"))?;
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(out, svg).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
