//! Results: every measurement of every run, reduced to medians, printed as a table with the ratios
//! lanchat/peer, lanchat-irc/ngircd, lanchat/limit and lanchat/limit-threads, as JSON, and checked
//! against the targets. Pure formatting; nothing here touches a socket.

use super::stats::{median, Delivery};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Column order of the table: lanchat's native door, its IRC door, the IRC peers, the limit
/// (the one-thread relay) and the thread-per-client design's own limit.
pub const TARGETS: [&str; 6] = [
    "lanchat",
    "lanchat-irc",
    "ngircd",
    "inspircd",
    "limit",
    "limit-threads",
];

/// The ratio columns of the table, `a/b` each.
pub const RATIOS: [(&str, &str); 5] = [
    ("lanchat", "ngircd"),
    ("lanchat-irc", "ngircd"),
    ("lanchat", "inspircd"),
    ("lanchat", "limit"),
    ("lanchat", "limit-threads"),
];

/// One number measured in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The workload, e.g. `fanout 100 x32`.
    pub scenario: String,
    /// The server: lanchat, lanchat-irc, ngircd, inspircd, limit or limit-threads.
    pub target: String,
    /// What, with its unit, e.g. `deliveries_per_s`.
    pub metric: String,
    /// The value.
    pub value: f64,
}

/// Everything one benchmark run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// Runs of each scenario.
    pub runs: usize,
    /// Every measurement.
    pub samples: Vec<Sample>,
    /// The exactly-once check, summed per target.
    pub delivery: BTreeMap<String, Delivery>,
    /// Refusal lines, failures, shortfalls.
    pub notes: Vec<String>,
}

/// One of the targets, and whether this run met it.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The target.
    pub what: String,
    /// Met, not met, or not measured in this run.
    pub met: Option<bool>,
    /// The numbers behind it.
    pub detail: String,
}

impl Report {
    /// Records one measurement.
    pub fn add(&mut self, scenario: &str, target: &str, metric: &str, value: f64) {
        self.samples.push(Sample {
            scenario: scenario.into(),
            target: target.into(),
            metric: metric.into(),
            value,
        });
    }

    /// The median of a metric over the runs.
    pub fn median(&self, scenario: &str, target: &str, metric: &str) -> Option<f64> {
        let values: Vec<f64> = self
            .values(scenario, target, metric)
            .into_iter()
            .filter(|v| v.is_finite())
            .collect();
        median(&values)
    }

    fn values(&self, scenario: &str, target: &str, metric: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.scenario == scenario && s.target == target && s.metric == metric)
            .map(|s| s.value)
            .collect()
    }

    /// (scenario, metric) pairs in the order first measured.
    fn rows(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for s in &self.samples {
            let key = (s.scenario.clone(), s.metric.clone());
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
        rows
    }

    /// The results as a Markdown table of medians with ratios ([`RATIOS`]).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ratios: Vec<String> = RATIOS.iter().map(|(a, b)| format!("{a}/{b}")).collect();
        let _ = writeln!(
            out,
            "| scenario | metric | {} | {} |",
            TARGETS.join(" | "),
            ratios.join(" | ")
        );
        let _ = writeln!(
            out,
            "|---|---|{}{}",
            "---:|".repeat(TARGETS.len()),
            "---|".repeat(RATIOS.len())
        );
        for (scenario, metric) in self.rows() {
            let cell = |t: &str| self.median(&scenario, t, &metric);
            let ratio = |(a, b): &(&str, &str)| match (cell(a), cell(b)) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {scenario} | {metric} | {} | {} |",
                TARGETS
                    .iter()
                    .map(|t| fmt_num(cell(t)))
                    .collect::<Vec<_>>()
                    .join(" | "),
                RATIOS.iter().map(ratio).collect::<Vec<_>>().join(" | ")
            );
        }
        out
    }

    /// Delivery checks per target, one line each.
    pub fn delivery_lines(&self) -> String {
        let mut out = String::new();
        for (target, d) in &self.delivery {
            let _ = writeln!(
                out,
                "{target}: {} deliveries expected, {} received, {} lost, {} duplicated, {} out of order: {}",
                d.expected,
                d.received,
                d.lost(),
                d.duplicates,
                d.gaps,
                if d.exactly_once() { "exactly once" } else { "NOT exactly once" }
            );
        }
        out
    }

    /// The cost of TLS, one line per server that ran a TLS workload: each metric of a
    /// `... tls` scenario as a ratio to the same scenario on the plain door (`pairs 64 tls`
    /// to `pairs 64`, `logins N tls` to `logins N plaintext`), medians.
    pub fn tls_cost(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for target in TARGETS {
            let mut parts = Vec::new();
            for (scenario, metric) in self.rows() {
                let Some(base) = scenario.strip_suffix(" tls") else {
                    continue;
                };
                let plain = if base.starts_with("logins ") {
                    format!("{base} plaintext")
                } else {
                    base.to_string()
                };
                let tls = self.median(&scenario, target, &metric);
                match (tls, self.median(&plain, target, &metric)) {
                    (Some(t), Some(p)) if p != 0.0 => {
                        parts.push(format!("{base} {metric} {:.2}x", t / p));
                    }
                    _ => {}
                }
            }
            if !parts.is_empty() {
                lines.push(format!(
                    "TLS cost, {target} (TLS door / plain door): {}",
                    parts.join(", ")
                ));
            }
        }
        lines
    }

    /// The targets, judged on the medians (`users` is the capacity run's size).
    pub fn checks(&self, users: usize) -> Vec<Check> {
        let m = |s: &str, t: &str, k: &str| self.median(s, t, k);
        let mut checks = Vec::new();
        let cap = format!("capacity {users}");
        let held = m(&cap, "lanchat", "users_held");
        let rss = m(&cap, "lanchat", "rss_mib");
        let refused = m(&cap, "lanchat", "refused_past_max");
        checks.push(Check {
            what: format!("{users} concurrent users under 200 MiB, the next one refused"),
            met: match (held, rss, refused) {
                (Some(h), Some(r), Some(f)) => Some(h >= users as f64 && r < 200.0 && f >= 1.0),
                _ => None,
            },
            detail: format!(
                "held {}, RSS {} MiB, refused past max: {}",
                fmt_num(held),
                fmt_num(rss),
                refused.map_or("-", |f| if f >= 1.0 { "yes" } else { "no" })
            ),
        });
        let idle = "latency idle";
        let (p50, p50_ng) = (m(idle, "lanchat", "p50_us"), m(idle, "ngircd", "p50_us"));
        checks.push(compare(
            "relay p50 <= 1.0x ngircd (idle)",
            p50,
            p50_ng,
            false,
        ));
        let p99 = m(idle, "lanchat", "p99_us");
        checks.push(Check {
            what: "relay p99 < 100 us (idle)".into(),
            met: p99.map(|v| v < 100.0),
            detail: format!("{} us", fmt_num(p99)),
        });
        let loaded = self
            .rows()
            .into_iter()
            .map(|(s, _)| s)
            .find(|s| s.starts_with("latency +"));
        let p99_loaded = loaded.as_deref().and_then(|s| m(s, "lanchat", "p99_us"));
        checks.push(Check {
            what: format!(
                "relay p99 < 5 ms ({})",
                loaded.as_deref().unwrap_or("latency with active users")
            ),
            met: p99_loaded.map(|v| v < 5000.0),
            detail: format!("{} us", fmt_num(p99_loaded)),
        });
        for (scenario, metric) in self.rows() {
            let rate = metric == "deliveries_per_s" || metric == "msgs_per_s";
            if rate && (scenario.starts_with("fanout") || scenario == "pairs 64") {
                checks.push(compare(
                    &format!("{scenario}: {metric} >= 1.0x ngircd"),
                    m(&scenario, "lanchat", &metric),
                    m(&scenario, "ngircd", &metric),
                    true,
                ));
                checks.push(compare(
                    &format!("{scenario}: CPU per delivery <= ngircd"),
                    m(&scenario, "lanchat", "cpu_ms_per_1k"),
                    m(&scenario, "ngircd", "cpu_ms_per_1k"),
                    false,
                ));
            }
        }
        // Not one of the targets: whether the thread-per-client design itself, with
        // no chat logic (limit-threads), reaches ngircd on the pairs target above.
        let (ceiling, ngircd) = (
            m("pairs 64", "limit-threads", "msgs_per_s"),
            m("pairs 64", "ngircd", "msgs_per_s"),
        );
        if ceiling.is_some() || ngircd.is_some() {
            checks.push(compare_named(
                "(design ceiling) pairs 64: limit-threads msgs_per_s >= 1.0x ngircd",
                ("limit-threads", ceiling),
                ("ngircd", ngircd),
                true,
            ));
        }
        let logins = m(&cap, "lanchat", "logins_per_s");
        let small = m("logins 1000 plaintext", "lanchat", "logins_per_s");
        checks.push(Check {
            what: format!("plaintext logins >= 5,000/s (ramp to {users})"),
            met: logins.map(|v| v >= 5000.0),
            detail: format!(
                "{}/s over the ramp; {}/s for the first 1,000",
                fmt_num(logins),
                fmt_num(small)
            ),
        });
        let all_clean = self.delivery.values().all(Delivery::exactly_once);
        checks.push(Check {
            what: "no message lost or duplicated (every target, every run)".into(),
            met: (!self.delivery.is_empty()).then_some(all_clean),
            detail: self
                .delivery
                .iter()
                .map(|(t, d)| format!("{t}: {} lost, {} dup", d.lost(), d.duplicates))
                .collect::<Vec<_>>()
                .join("; "),
        });
        checks
    }

    /// Everything as JSON: medians, every value, deliveries, notes and the target checks.
    pub fn json(&self, users: usize) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"command\": {},", json_str(&self.command));
        let _ = writeln!(out, "  \"runs\": {},", self.runs);
        out.push_str("  \"results\": [\n");
        let mut first = true;
        for (scenario, metric) in self.rows() {
            for t in TARGETS {
                let values = self.values(&scenario, t, &metric);
                if values.is_empty() {
                    continue;
                }
                if !first {
                    out.push_str(",\n");
                }
                first = false;
                let _ = write!(
                    out,
                    "    {{\"scenario\": {}, \"metric\": {}, \"target\": {}, \"median\": {}, \"values\": [{}]}}",
                    json_str(&scenario),
                    json_str(&metric),
                    json_str(t),
                    json_num(self.median(&scenario, t, &metric)),
                    values.iter().map(|v| json_num(Some(*v))).collect::<Vec<_>>().join(", ")
                );
            }
        }
        out.push_str("\n  ],\n  \"delivery\": {");
        let parts: Vec<String> = self
            .delivery
            .iter()
            .map(|(t, d)| {
                format!(
                    "\n    {}: {{\"expected\": {}, \"received\": {}, \"lost\": {}, \"duplicates\": {}, \"out_of_order\": {}, \"exactly_once\": {}}}",
                    json_str(t),
                    d.expected,
                    d.received,
                    d.lost(),
                    d.duplicates,
                    d.gaps,
                    d.exactly_once()
                )
            })
            .collect();
        out.push_str(&parts.join(","));
        out.push_str("\n  },\n  \"targets\": [");
        let parts: Vec<String> = self
            .checks(users)
            .iter()
            .map(|c| {
                format!(
                    "\n    {{\"target\": {}, \"met\": {}, \"detail\": {}}}",
                    json_str(&c.what),
                    c.met.map_or("null".to_string(), |b| b.to_string()),
                    json_str(&c.detail)
                )
            })
            .collect();
        out.push_str(&parts.join(","));
        out.push_str("\n  ],\n  \"notes\": [");
        let parts: Vec<String> = self
            .notes
            .iter()
            .map(|n| format!("\n    {}", json_str(n)))
            .collect();
        out.push_str(&parts.join(","));
        out.push_str("\n  ]\n}\n");
        out
    }
}

/// "lanchat vs ngircd" where more is better (`higher`) or less is better.
fn compare(what: &str, ours: Option<f64>, theirs: Option<f64>, higher: bool) -> Check {
    compare_named(what, ("lanchat", ours), ("ngircd", theirs), higher)
}

/// "`a` vs `b`", each a target's name and its value, where more is better (`higher`) or less.
fn compare_named(
    what: &str,
    (a_name, a): (&str, Option<f64>),
    (b_name, b): (&str, Option<f64>),
    higher: bool,
) -> Check {
    let met = match (a, b) {
        (Some(a), Some(b)) => Some(if higher { a >= b } else { a <= b }),
        _ => None,
    };
    let ratio = match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!(" ({:.2}x)", a / b),
        _ => String::new(),
    };
    Check {
        what: what.into(),
        met,
        detail: format!("{a_name} {} vs {b_name} {}{ratio}", fmt_num(a), fmt_num(b)),
    }
}

/// A number for the table: thousands separated, fewer decimals as it grows.
pub fn fmt_num(v: Option<f64>) -> String {
    let Some(v) = v else { return "-".into() };
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut s = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                s.push(',');
            }
            s.push(c);
        }
        if n < 0 {
            s.insert(0, '-');
        }
        s
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{}", (v * 1000.0).round() / 1000.0),
        _ => "null".into(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report {
            command: "make bench".into(),
            runs: 3,
            ..Report::default()
        };
        for (v, w) in [(30.0, 40.0), (28.0, 45.0), (35.0, 41.0)] {
            r.add("latency idle", "lanchat", "p50_us", v);
            r.add("latency idle", "ngircd", "p50_us", w);
            r.add("latency idle", "lanchat-irc", "p50_us", v - 2.0);
        }
        r.add("pairs 64", "lanchat", "msgs_per_s", 120_000.0);
        r.add("pairs 64", "ngircd", "msgs_per_s", 100_000.0);
        r.add("pairs 64", "limit-threads", "msgs_per_s", 80_000.0);
        r.delivery.insert(
            "lanchat".into(),
            Delivery {
                expected: 10,
                received: 10,
                ..Delivery::default()
            },
        );
        r
    }

    #[test]
    fn table_has_medians_and_ratios() {
        let t = report().table();
        assert!(
            t.contains(
                "| latency idle | p50_us | 30.0 | 28.0 | 41.0 | - | - | - | 0.73 | 0.68 | - | - | - |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| pairs 64 | msgs_per_s | 120,000 | - | 100,000 |"),
            "{t}"
        );
    }

    #[test]
    fn checks_judge_medians() {
        let checks = report().checks(10_000);
        let find = |w: &str| {
            checks
                .iter()
                .find(|c| c.what.starts_with(w))
                .unwrap()
                .clone()
        };
        assert_eq!(find("relay p50").met, Some(true));
        assert_eq!(find("pairs 64: msgs_per_s").met, Some(true));
        let ceiling = find("(design ceiling) pairs 64");
        assert_eq!(ceiling.met, Some(false));
        assert!(
            ceiling
                .detail
                .starts_with("limit-threads 80,000 vs ngircd 100,000 (0.80x)"),
            "{ceiling:?}"
        );
        assert_eq!(find("10000 concurrent").met, None);
        assert_eq!(find("no message lost").met, Some(true));
    }

    #[test]
    fn json_is_well_formed_enough() {
        let j = report().json(10_000);
        assert!(j.contains("\"median\": 30,"), "{j}");
        assert!(j.contains("\"exactly_once\": true"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
    }

    #[test]
    fn the_cost_of_tls_is_each_tls_scenario_over_its_plain_twin() {
        let mut r = report();
        r.add("pairs 64 tls", "lanchat", "msgs_per_s", 90_000.0);
        r.add("logins 1000 plaintext", "lanchat", "logins_per_s", 8_000.0);
        r.add("logins 1000 tls", "lanchat", "logins_per_s", 2_000.0);
        r.add("logins 1000 tls", "ngircd", "logins_per_s", 1_000.0);
        assert_eq!(
            r.tls_cost(),
            [
                "TLS cost, lanchat (TLS door / plain door): pairs 64 msgs_per_s 0.75x, \
              logins 1000 logins_per_s 0.25x"
            ]
        );
        assert!(report().tls_cost().is_empty());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(Some(1_234_567.4)), "1,234,567");
        assert_eq!(fmt_num(Some(123.4)), "123");
        assert_eq!(fmt_num(Some(12.34)), "12.3");
        assert_eq!(fmt_num(Some(1.234)), "1.23");
        assert_eq!(fmt_num(None), "-");
    }
}
