//! The results as a picture: one panel per workload, lanchat (both doors) and inspircd side by
//! side as "times better than ngircd" (so above the line is better, whatever the metric), with
//! the loopback limit (the one-thread relay, and the thread-per-client relay) marked across
//! each group. A workload that ngircd did not run (the bare TCP ping-pong, argon2 logins) is
//! drawn in absolute numbers instead, and says so.
//!
//! [`panels`] is the pure part (which numbers go where); [`render`] draws them with plotters'
//! SVG backend, whose text is SVG `<text>`, so no font files are read.

use super::report::{fmt_num, Report, TARGETS};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The targets drawn as bars, with their colours; ngircd is the line at 1.
const BARS: [(&str, RGBColor); 3] = [
    ("lanchat", RGBColor(0x1f, 0x77, 0xb4)),
    ("lanchat-irc", RGBColor(0x6b, 0xae, 0xd6)),
    ("inspircd", RGBColor(0xe6, 0x7e, 0x22)),
];

/// The limits, drawn as a marker across each group: the bare one-thread relay (solid) and the
/// bare thread-per-client relay (dashed).
const LIMITS: [&str; 2] = ["limit", "limit-threads"];

/// Metrics left out of the chart: a setting rather than a result (`background_msgs_per_s`),
/// the same ratio as another (`kib_per_user` is `rss_mib`), or yes/no and counts whose ratio
/// means nothing (`refused_past_max`, `threads_per_user`, where ngircd has none).
const LEFT_OUT: [&str; 4] = [
    "background_msgs_per_s",
    "kib_per_user",
    "refused_past_max",
    "threads_per_user",
];

/// One group of bars: one metric of one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct BarGroup {
    /// The metric's name in the report, e.g. `p99_us`.
    pub metric: String,
    /// Whether more is better (rates) or less (latency, CPU, memory).
    pub higher_is_better: bool,
    /// (target, value) for each of [`BARS`] measured: the factor over ngircd in a relative
    /// panel, the median itself in an absolute one.
    pub bars: Vec<(String, f64)>,
    /// (target, value) for each of [`LIMITS`] measured, on the same scale as `bars`.
    pub limits: Vec<(String, f64)>,
}

/// One workload's panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// The workload, e.g. `fanout 100 x32`.
    pub scenario: String,
    /// Relative to ngircd (true), or absolute medians because ngircd did not run it.
    pub relative: bool,
    /// The metrics, in the report's order.
    pub groups: Vec<BarGroup>,
}

/// Whether more of `metric` is better.
fn higher_is_better(metric: &str) -> bool {
    metric.ends_with("_per_s") || metric == "users_held"
}

/// A metric's name under its group: what it is and which way is good.
fn metric_label(metric: &str, relative: bool) -> String {
    let name = match metric {
        "p50_us" => "p50 latency",
        "p99_us" => "p99 latency",
        "max_us" => "max latency",
        "deliveries_per_s" => "deliveries/s",
        "msgs_per_s" => "messages/s",
        "logins_per_s" => "logins/s",
        "cpu_ms_per_1k" => "CPU/delivery",
        "rss_mib" => "memory",
        "users_held" => "users held",
        other => other,
    };
    if relative {
        name.to_string()
    } else {
        let unit = match metric {
            m if m.ends_with("_us") => " (µs)",
            "rss_mib" => " (MiB)",
            _ => "",
        };
        format!("{name}{unit}")
    }
}

/// The panels of a report: one per workload, in the order measured.
pub fn panels(report: &Report) -> Vec<Panel> {
    let mut scenarios: Vec<String> = Vec::new();
    for s in &report.samples {
        if !scenarios.contains(&s.scenario) {
            scenarios.push(s.scenario.clone());
        }
    }
    scenarios
        .into_iter()
        .map(|scenario| panel(report, &scenario))
        .collect()
}

fn panel(report: &Report, scenario: &str) -> Panel {
    let mut metrics: Vec<String> = Vec::new();
    for s in report.samples.iter().filter(|s| s.scenario == scenario) {
        if !metrics.contains(&s.metric) && !LEFT_OUT.contains(&s.metric.as_str()) {
            metrics.push(s.metric.clone());
        }
    }
    let ngircd = |metric: &str| {
        report
            .median(scenario, "ngircd", metric)
            .filter(|v| *v > 0.0)
    };
    let relative = metrics.iter().any(|m| ngircd(m).is_some());
    let groups = metrics
        .iter()
        .filter(|m| !relative || ngircd(m).is_some())
        .map(|metric| {
            let higher = higher_is_better(metric);
            let value = |target: &str| {
                let v = report.median(scenario, target, metric)?;
                if !relative {
                    return Some(v);
                }
                let base = ngircd(metric)?;
                let factor = if higher { v / base } else { base / v };
                (factor.is_finite() && factor > 0.0).then_some(factor)
            };
            let pick = |targets: &[&str]| {
                targets
                    .iter()
                    .filter_map(|t| value(t).map(|v| (t.to_string(), v)))
                    .collect::<Vec<_>>()
            };
            let bar_targets: Vec<&str> = if relative {
                BARS.iter().map(|(t, _)| *t).collect()
            } else {
                // Absolute: whoever ran it (ngircd did not), limits included as bars.
                TARGETS.iter().copied().filter(|t| *t != "ngircd").collect()
            };
            BarGroup {
                metric: metric.clone(),
                higher_is_better: higher,
                bars: pick(&bar_targets),
                limits: if relative { pick(&LIMITS) } else { Vec::new() },
            }
        })
        .collect();
    Panel {
        scenario: scenario.to_string(),
        relative,
        groups,
    }
}

/// The colour of a target's bar.
fn colour(target: &str) -> RGBColor {
    BARS.iter()
        .find(|(t, _)| *t == target)
        .map(|(_, c)| *c)
        .unwrap_or(match target {
            "limit" => RGBColor(0x33, 0x33, 0x33),
            _ => RGBColor(0x88, 0x88, 0x88),
        })
}

/// Panels per row of the picture.
const COLUMNS: usize = 3;
/// Pixels of one panel.
const PANEL: (u32, u32) = (560, 380);
/// Pixels above the panels: title and legend.
const HEADER: u32 = 120;

/// Draws `report` as an SVG picture; `subtitle` says which run it was (command, date, machine).
pub fn render(report: &Report, subtitle: &str) -> Result<String, String> {
    let panels = panels(report);
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let size = (
        PANEL.0 * COLUMNS as u32,
        HEADER + PANEL.1 * rows as u32 + 10,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (header, body) = root.split_vertically(HEADER);
        draw_header(&header, subtitle).map_err(|e| e.to_string())?;
        let areas = body.split_evenly((rows, COLUMNS));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, panel).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_header(area: &Area<'_>, subtitle: &str) -> DrawResult {
    let title = ("sans-serif", 26).into_font().style(FontStyle::Bold);
    area.draw_text(
        "lanchat against ngircd: how many times better (above 1 = better than ngircd)",
        &title.color(&BLACK),
        (16, 12),
    )?;
    let small = ("sans-serif", 15)
        .into_font()
        .color(&RGBColor(0x44, 0x44, 0x44));
    area.draw_text(subtitle, &small, (16, 46))?;
    area.draw_text(
        "Rates: x / ngircd; latency, CPU and memory: ngircd / x. Log scale. \
         Grey panels: ngircd did not run that workload, absolute medians instead.",
        &small,
        (16, 68),
    )?;
    // The legend: a swatch and a name for each bar, then the two limit markers.
    let mut x = 16;
    let y = 96;
    let label = ("sans-serif", 16).into_font().color(&BLACK);
    for (target, c) in BARS {
        area.draw(&Rectangle::new([(x, y - 6), (x + 22, y + 8)], c.filled()))?;
        area.draw_text(target, &label, (x + 28, y - 6))?;
        x += 40 + 10 * target.len() as i32;
    }
    area.draw(&PathElement::new(
        vec![(x, y), (x + 20, y)],
        BLACK.stroke_width(1),
    ))?;
    area.draw_text("ngircd (= 1)", &label, (x + 28, y - 6))?;
    x += 140;
    area.draw(&PathElement::new(
        vec![(x, y + 1), (x + 24, y + 1)],
        colour("limit").stroke_width(4),
    ))?;
    area.draw_text(
        "limit: bare one-thread relay (the loopback limit)",
        &label,
        (x + 30, y - 6),
    )?;
    x += 410;
    for i in 0..3 {
        let x0 = x + i * 9;
        area.draw(&PathElement::new(
            vec![(x0, y + 1), (x0 + 5, y + 1)],
            colour("limit-threads").stroke_width(4),
        ))?;
    }
    area.draw_text(
        "limit-threads: bare thread-per-client relay",
        &label,
        (x + 30, y - 6),
    )?;
    Ok(())
}

fn draw_panel(area: &Area<'_>, panel: &Panel) -> DrawResult {
    let area = area.margin(6, 6, 8, 8);
    if !panel.relative {
        area.fill(&RGBColor(0xf4, 0xf4, 0xf4))?;
    }
    let n = panel.groups.len().max(1);
    let values = panel
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().chain(&g.limits).map(|(_, v)| *v));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let caption = if panel.relative {
        panel.scenario.clone()
    } else {
        format!("{} (absolute; no ngircd run)", panel.scenario)
    };
    let labels: Vec<String> = panel
        .groups
        .iter()
        .map(|g| metric_label(&g.metric, panel.relative))
        .collect();
    let mut builder = ChartBuilder::on(&area);
    builder
        .caption(
            caption,
            ("sans-serif", 20).into_font().style(FontStyle::Bold),
        )
        .x_label_area_size(30)
        .y_label_area_size(58);
    if panel.relative {
        // Symmetric around 1 so that "twice as good" and "half as good" look alike.
        let span = (if lo < f64::MAX { hi.max(1.0 / lo) } else { 2.0 }).max(1.6) * 1.35;
        let bottom = 1.0 / span;
        let mut chart = builder.build_cartesian_2d(0.0..n as f64, (bottom..span).log_scale())?;
        // Plotters' own ticks on a log axis vary from panel to panel (1..9 in one, decades in
        // the next); the same 1-2-5 steps everywhere read better.
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(0)
            .y_labels(0)
            .y_label_formatter(&|_| String::new())
            .draw()?;
        draw_y_grid(&area, &mut chart, n as f64, &nice_factors(bottom, span))?;
        draw_groups(&mut chart, panel, 1.0, true)?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(1),
        )))?;
        draw_x_labels(&area, &chart, &labels, bottom)?;
    } else {
        let top = if lo < f64::MAX { hi * 1.25 } else { 1.0 };
        let mut chart = builder.build_cartesian_2d(0.0..n as f64, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|y| fmt_num(Some(*y)))
            .y_label_style(("sans-serif", 14))
            .light_line_style(TRANSPARENT)
            .draw()?;
        draw_groups(&mut chart, panel, 0.0, false)?;
        draw_x_labels(&area, &chart, &labels, 0.0)?;
    }
    Ok(())
}

/// The 1-2-5 factors between `lo` and `hi` (only the decades when that would be too many).
fn nice_factors(lo: f64, hi: f64) -> Vec<f64> {
    let mut all = Vec::new();
    for exp in -4..=4 {
        for step in [1.0, 2.0, 5.0] {
            let v = step * 10f64.powi(exp);
            if v >= lo && v <= hi {
                all.push(v);
            }
        }
    }
    if all.len() > 9 {
        all.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    all
}

/// A light line and a label at each of `factors` on a relative panel.
fn draw_y_grid<X, Y>(
    area: &Area<'_>,
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    width: f64,
    factors: &[f64],
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let grid = RGBColor(0xdd, 0xdd, 0xdd).stroke_width(1);
    chart.draw_series(
        factors
            .iter()
            .map(|f| PathElement::new(vec![(0.0, *f), (width, *f)], grid)),
    )?;
    let (base_x, base_y) = area.get_base_pixel();
    let style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for f in factors {
        let (x, y) = chart.backend_coord(&(0.0, *f));
        area.draw_text(
            &format!("{}×", trim(*f)),
            &style,
            (x - base_x - 6, y - base_y),
        )?;
    }
    Ok(())
}

/// Each group's metric name under its bars (placed by hand: the x axis is a plain range so
/// that bars can sit anywhere in a group).
fn draw_x_labels<X, Y>(
    area: &Area<'_>,
    chart: &ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    labels: &[String],
    bottom: f64,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let (base_x, base_y) = area.get_base_pixel();
    let style = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, bottom));
        area.draw_text(label, &style, (x - base_x, y - base_y + 6))?;
    }
    Ok(())
}

/// Bars from `base` to each value, a value label above (or below) each, and the limit markers.
fn draw_groups<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    panel: &Panel,
    base: f64,
    relative: bool,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let value_style = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, group) in panel.groups.iter().enumerate() {
        let slots = group.bars.len().max(1) as f64;
        let width = 0.8 / slots;
        let left = i as f64 + 0.1;
        // The limits first, so that the bars' value labels are drawn over them.
        for (target, v) in &group.limits {
            let (x0, x1) = (i as f64 + 0.04, i as f64 + 0.96);
            let style = colour(target).stroke_width(3);
            if target == "limit" {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, *v), (x1, *v)],
                    style,
                )))?;
            } else {
                let dashes = 8;
                let step = (x1 - x0) / dashes as f64;
                chart.draw_series((0..dashes).map(|d| {
                    let a = x0 + d as f64 * step;
                    PathElement::new(vec![(a, *v), (a + step * 0.55, *v)], style)
                }))?;
            }
        }
        for (j, (target, v)) in group.bars.iter().enumerate() {
            let x0 = left + j as f64 * width;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0 + 0.02, base), (x0 + width - 0.02, *v)],
                colour(target).filled(),
            )))?;
            let text = if relative {
                format!("{}×", trim(*v))
            } else {
                fmt_num(Some(*v))
            };
            let anchor = Pos::new(
                HPos::Center,
                if *v >= base { VPos::Bottom } else { VPos::Top },
            );
            chart.draw_series(std::iter::once(Text::new(
                text,
                (x0 + width / 2.0, *v),
                value_style.clone().pos(anchor),
            )))?;
        }
    }
    Ok(())
}

/// A factor with as few digits as it needs: 12, 3.4, 0.56.
fn trim(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads;

    /// A report with every workload of the full run, each measured on every server that runs
    /// it, with made-up numbers.
    fn fixture() -> Report {
        let mut r = Report::default();
        for w in workloads(false, 10_000, None) {
            let name = w.name();
            let metrics: &[&str] = match name.split(' ').next().unwrap() {
                "fanout" => &["deliveries_per_s", "p99_us", "cpu_ms_per_1k"],
                "pairs" => &["msgs_per_s", "p50_us", "p99_us", "cpu_ms_per_1k"],
                "capacity" => &["users_held", "logins_per_s", "rss_mib", "threads_per_user"],
                "logins" => &["logins_per_s"],
                _ => &["p50_us", "p99_us", "max_us"],
            };
            for (k, target) in TARGETS.iter().enumerate() {
                let runs_it = match name.as_str() {
                    "tcp ping-pong" => *target == "limit",
                    n if n.ends_with("argon2") => *target == "lanchat",
                    _ => true,
                };
                if runs_it {
                    for (m, metric) in metrics.iter().enumerate() {
                        r.add(&name, target, metric, 100.0 * (k + 1) as f64 + m as f64);
                    }
                }
            }
        }
        r
    }

    #[test]
    fn every_workload_gets_a_panel_relative_to_ngircd_where_ngircd_ran() {
        let report = fixture();
        let panels = panels(&report);
        let names: Vec<String> = workloads(false, 10_000, None)
            .iter()
            .map(|w| w.name())
            .collect();
        let drawn: Vec<String> = panels.iter().map(|p| p.scenario.clone()).collect();
        assert_eq!(drawn, names);
        let find = |s: &str| panels.iter().find(|p| p.scenario == s).unwrap();
        let pairs = find("pairs 64");
        assert!(pairs.relative);
        let rate = &pairs.groups[0];
        assert_eq!(rate.metric, "msgs_per_s");
        // lanchat 100 against ngircd 300: a third as fast; inspircd 400: 4/3.
        assert_eq!(rate.bars[0].0, "lanchat");
        assert!((rate.bars[0].1 - 100.0 / 300.0).abs() < 1e-9, "{rate:?}");
        let latency = &pairs.groups[1];
        assert!(!latency.higher_is_better);
        // Less is better: ngircd 301 / lanchat 101.
        assert!(
            (latency.bars[0].1 - 301.0 / 101.0).abs() < 1e-9,
            "{latency:?}"
        );
        let limits: Vec<&str> = latency.limits.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(limits, ["limit", "limit-threads"]);
        // Counts with no meaningful ratio are left out.
        let capacity = find("capacity 10000");
        assert!(capacity
            .groups
            .iter()
            .all(|g| g.metric != "threads_per_user"));
        // No ngircd: absolute medians of whoever ran it.
        let pingpong = find("tcp ping-pong");
        assert!(!pingpong.relative);
        assert_eq!(pingpong.groups[0].bars, vec![("limit".to_string(), 500.0)]);
        assert!(!find("logins 64 argon2").relative);
    }

    /// The text of every `<text>` element of `svg`, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    #[test]
    fn the_chart_has_a_titled_panel_for_every_workload_and_the_limit_marked() {
        let report = fixture();
        let svg = render(&report, "fixture run").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for w in workloads(false, 10_000, None) {
            let name = w.name();
            let absolute = format!("{name} (absolute; no ngircd run)");
            assert!(
                texts.iter().any(|t| *t == name || *t == absolute),
                "no panel titled {name:?} in {texts:?}"
            );
        }
        assert!(texts.contains(&"tcp ping-pong (absolute; no ngircd run)".to_string()));
        assert!(texts.contains(&"fixture run".to_string()));
        assert!(texts
            .iter()
            .any(|t| t.starts_with("limit: bare one-thread relay")));
        assert!(texts.contains(&"messages/s".to_string()));
        // pairs 64: lanchat 100 / ngircd 300 messages/s, labelled as a factor.
        assert!(texts.contains(&"0.33×".to_string()), "{texts:?}");
        // The limit markers: one solid line per relative group, in the limit's colour.
        let limit = format!("stroke=\"#{:02X}{:02X}{:02X}\"", 0x33, 0x33, 0x33);
        assert!(
            svg.matches(&limit).count() >= 10,
            "{}",
            svg.matches(&limit).count()
        );
    }

    #[test]
    fn an_empty_report_still_renders() {
        let svg = render(&Report::default(), "nothing measured").unwrap();
        assert!(svg.contains("nothing measured"));
    }
}
