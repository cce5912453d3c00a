//! An SVG chart of one run: throughput per second, p50 and p99 per second, and the latency
//! distribution (latency against percentile on a log scale of 1/(1-p), as HDR plots show it).
//! Self-contained SVG, no scripts, so it opens in any browser.

use std::fmt::Write;

use crate::stats::Report;

const WIDTH: f64 = 720.0;
const PANEL_HEIGHT: f64 = 200.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_TOP: f64 = 40.0;
const GAP: f64 = 70.0;

/// One panel's series: (label, colour, points in data units).
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// The chart for `report`.
pub fn svg(report: &Report) -> String {
    let height = MARGIN_TOP + 3.0 * (PANEL_HEIGHT + GAP);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">zinc-bench {} against {}: {:.0} ops/s, p99 {} us</text>\n",
        escape(&report.workload),
        escape(&report.servers.join(",")),
        report.ops_per_s,
        report.latency_us.p99
    );
    let seconds = |f: fn(&crate::stats::Point) -> f64| -> Vec<(f64, f64)> {
        report
            .timeline
            .iter()
            .map(|p| (p.second as f64 + 1.0, f(p)))
            .collect()
    };
    panel(
        &mut out,
        0,
        "throughput (ops/s) by second",
        &[Series {
            label: "ops/s",
            colour: "#1f77b4",
            points: seconds(|p| p.ops as f64),
        }],
    );
    panel(
        &mut out,
        1,
        "latency (ms) by second",
        &[
            Series {
                label: "p50",
                colour: "#2ca02c",
                points: seconds(|p| p.p50_us as f64 / 1e3),
            },
            Series {
                label: "p99",
                colour: "#d62728",
                points: seconds(|p| p.p99_us as f64 / 1e3),
            },
        ],
    );
    panel(
        &mut out,
        2,
        "latency (ms) by percentile; x = log10(1/(1-p)): 1 = p90, 2 = p99, 3 = p99.9",
        &[Series {
            label: "latency",
            colour: "#9467bd",
            points: distribution(report),
        }],
    );
    out.push_str("</svg>\n");
    out
}

fn distribution(report: &Report) -> Vec<(f64, f64)> {
    let Some(histogram) = &report.histogram else {
        return Vec::new();
    };
    if histogram.is_empty() {
        return Vec::new();
    }
    (0..=50)
        .map(|step| {
            let x = f64::from(step) / 10.0; // up to 1/(1-p) = 10^5
            let quantile = 1.0 - 10f64.powf(-x);
            (x, histogram.value_at_quantile(quantile) as f64 / 1e3)
        })
        .collect()
}

fn panel(out: &mut String, index: usize, title: &str, series: &[Series]) {
    let top = MARGIN_TOP + index as f64 * (PANEL_HEIGHT + GAP);
    let width = WIDTH - MARGIN_LEFT - 20.0;
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN_LEFT}\" y=\"{}\">{}</text>\n\
         <rect x=\"{MARGIN_LEFT}\" y=\"{top}\" width=\"{width}\" height=\"{PANEL_HEIGHT}\" fill=\"none\" stroke=\"#888\"/>",
        top - 8.0,
        escape(title)
    );
    for tick in 0..=4 {
        let value = y_max * f64::from(tick) / 4.0;
        let y = top + PANEL_HEIGHT - PANEL_HEIGHT * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            MARGIN_LEFT - 6.0,
            y + 4.0,
            short_number(value)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        MARGIN_LEFT + width,
        top + PANEL_HEIGHT + 16.0,
        short_number(x_max)
    );
    for (number, one) in series.iter().enumerate() {
        let points: Vec<String> = one
            .points
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    MARGIN_LEFT + width * x / x_max,
                    top + PANEL_HEIGHT - PANEL_HEIGHT * y / y_max
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            one.colour,
            points.join(" "),
            MARGIN_LEFT + 10.0 + 70.0 * number as f64,
            top + 16.0,
            one.colour,
            escape(one.label)
        );
    }
}

fn short_number(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 100.0 => format!("{v:.0}"),
        v => format!("{v:.2}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Interval, Percentiles, Point};

    #[test]
    fn chart_has_three_panels_with_data() {
        let mut interval = Interval::default();
        for value in 1..=100 {
            interval.latency_us.record(value * 10).expect("in bounds");
        }
        interval.ops = 100;
        let report = Report {
            workload: "get<&>".into(),
            servers: vec!["127.0.0.1:2181".into()],
            threads: 1,
            sessions: 1,
            inflight: 1,
            value_bytes: 100,
            rate: None,
            warmup_s: 0.0,
            duration_s: 2.0,
            ops: 200,
            ops_per_s: 100.0,
            latency_us: Percentiles::of(&interval.latency_us),
            errors: Default::default(),
            notes: Vec::new(),
            timeline: vec![
                Point::of(0, false, &interval),
                Point::of(1, false, &interval),
            ],
            histogram: Some(interval.latency_us.clone()),
        };
        let svg = svg(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("get&lt;&amp;&gt;"));
        // The distribution has all 51 points; the highest reaches the histogram's maximum.
        assert!(svg.contains(&format!(
            "{:.1},",
            MARGIN_LEFT + (WIDTH - MARGIN_LEFT - 20.0)
        )));
        assert_eq!(short_number(31_000.0), "31k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
    }
}
