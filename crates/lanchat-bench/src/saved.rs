//! Reading a saved report back (`target/bench.json`, as [`Report::json`] writes it), so that
//! `lanchat-bench chart FILE` draws the chart again without measuring again.

use super::report::Report;
use serde::Deserialize;

/// The parts of the JSON the chart needs.
#[derive(Deserialize)]
struct Saved {
    command: String,
    runs: usize,
    results: Vec<SavedResult>,
    #[serde(default)]
    notes: Vec<String>,
}

/// One (scenario, metric, target) with every run's value.
#[derive(Deserialize)]
struct SavedResult {
    scenario: String,
    metric: String,
    target: String,
    /// `null` where a run measured nothing usable.
    values: Vec<Option<f64>>,
}

/// The report saved in `json`: every value of every run, the command and the notes (the
/// delivery counts are not read back; the chart does not draw them).
pub fn parse(json: &str) -> Result<Report, String> {
    let saved: Saved = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut report = Report {
        command: saved.command,
        runs: saved.runs,
        notes: saved.notes,
        ..Report::default()
    };
    for r in saved.results {
        for v in r.values {
            report.add(&r.scenario, &r.target, &r.metric, v.unwrap_or(f64::NAN));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_reads_back_with_the_same_medians() {
        let mut r = Report {
            command: "lanchat-bench --quick".into(),
            runs: 3,
            ..Report::default()
        };
        for v in [30.0, 28.0, 35.0] {
            r.add("latency idle", "lanchat", "p50_us", v);
            r.add("latency idle", "ngircd", "p50_us", v + 10.0);
        }
        r.add("pairs 64", "lanchat", "msgs_per_s", f64::NAN);
        r.add("pairs 64", "lanchat", "msgs_per_s", 120_000.0);
        r.notes.push("a \"quoted\" note".into());
        let back = parse(&r.json(10_000)).unwrap();
        assert_eq!(back.command, r.command);
        assert_eq!(back.runs, 3);
        assert_eq!(back.notes, r.notes);
        assert_eq!(back.median("latency idle", "lanchat", "p50_us"), Some(30.0));
        assert_eq!(back.median("latency idle", "ngircd", "p50_us"), Some(40.0));
        assert_eq!(
            back.median("pairs 64", "lanchat", "msgs_per_s"),
            Some(120_000.0)
        );
    }

    #[test]
    fn anything_else_is_a_precise_error() {
        let e = parse("{\"command\": 1}").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        assert!(parse("not json").is_err());
    }
}
