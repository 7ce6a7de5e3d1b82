//! `coedit bench --report FILE.html`: the run as one self-contained HTML page a
//! person can open anywhere and paste into a review — the verdict, the latency
//! distribution as an HDR percentile curve, latency and deliveries over time,
//! connection times, the parameters and the machine. Inline SVG and CSS only:
//! no script, nothing fetched. `--json` stays the interface for programs.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::plot::{escape, nice_ceiling, Chart, Series};
use super::report::{LatencySummary, Report, Thresholds};
use super::system::Machine;
use super::Run;

/// How finely the percentile curve is drawn: points per decade of "nines".
const CURVE_POINTS_PER_DECADE: u32 = 40;
/// The curve goes out to at most six nines (99.9999%).
const MAX_NINES: f64 = 6.0;

const STYLE: &str = r#"
:root { color-scheme: light dark; --bg:#f6f7f9; --panel:#fff; --text:#1c2128; --muted:#5b6470; --line:#dde1e6;
  --s0:#2563eb; --s1:#dc2626; --s2:#7c3aed; --s3:#059669; --good:#15803d; --bad:#b91c1c; --warn:#a16207;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
@media (prefers-color-scheme: dark) { :root { --bg:#0f1419; --panel:#171d24; --text:#e6e9ed; --muted:#9aa4b0;
  --line:#2b333d; --s0:#60a5fa; --s1:#f87171; --s2:#c084fc; --s3:#34d399; --good:#4ade80; --bad:#f87171; --warn:#fbbf24; } }
body { margin:0; background:var(--bg); color:var(--text); }
main { max-width:1100px; margin:0 auto; padding:20px; }
h1 { font-size:1.45rem; margin:0 0 4px; } h2 { font-size:1.05rem; margin:0 0 10px; }
.muted { color:var(--muted); }
.panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin-bottom:16px; }
.verdict { border-left:6px solid var(--muted); }
.verdict.passed { border-left-color:var(--good); } .verdict.failed { border-left-color:var(--bad); } .verdict.warn { border-left-color:var(--warn); }
.verdict h2 { font-size:1.2rem; } .passed h2 { color:var(--good); } .failed h2 { color:var(--bad); } .warn h2 { color:var(--warn); }
ul.checks { list-style:none; padding:0; margin:8px 0 0; } ul.checks li { padding:2px 0; }
.ok::before { content:"✓ "; color:var(--good); font-weight:700; } .no::before { content:"✗ "; color:var(--bad); font-weight:700; }
.figures { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:12px; margin:0; }
.figures dt { color:var(--muted); font-size:.8rem; } .figures dd { margin:2px 0 0; font-size:1.3rem; font-weight:600; font-variant-numeric:tabular-nums; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:16px; }
figure { margin:0; } figcaption { font-weight:600; margin-bottom:4px; }
.key { font-weight:400; font-size:.85rem; margin-left:10px; white-space:nowrap; }
.key i { display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }
.plot { width:100%; height:auto; display:block; }
.plot .grid { stroke:var(--line); stroke-width:1; } .plot .tick, .plot .axis-label { fill:var(--muted); font-size:12px; }
.plot .band { fill:var(--s0); opacity:.07; } .plot .band-label { fill:var(--muted); font-size:11px; }
.plot .line { fill:none; stroke-width:2; stroke-linejoin:round; } .plot .s2 .line { stroke-dasharray:5 3; }
.s0 { stroke:var(--s0); fill:var(--s0); } .s1 { stroke:var(--s1); fill:var(--s1); } .s2 { stroke:var(--s2); fill:var(--s2); } .s3 { stroke:var(--s3); fill:var(--s3); }
.key .s0 { background:var(--s0); } .key .s1 { background:var(--s1); } .key .s2 { background:var(--s2); } .key .s3 { background:var(--s3); }
.empty { color:var(--muted); font-style:italic; }
table { border-collapse:collapse; width:100%; font-size:.9rem; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; width:38%; } td { font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
.tables { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:0 16px; }
pre { overflow:auto; font-size:.8rem; }
"#;

/// What the page says about the run as a whole.
struct Verdict {
    class: &'static str,
    headline: String,
    reasons: Vec<String>,
}

/// The whole page.
pub fn render(run: &Run, thresholds: &Thresholds, machine: &Machine, generated_at: &str) -> String {
    let report = &run.report;
    let detail = &run.detail;
    let checks = checks(report);
    let verdict = verdict(report, thresholds, &checks);

    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><title>coedit bench: {} — {}</title><style>{STYLE}</style></head><body><main>"#,
        escape(&report.url),
        escape(&verdict.headline)
    );
    let _ = write!(
        page,
        r#"<h1>coedit bench</h1><p class="muted">{} · {} rooms × {} editors × {} edits/s · {} payload, {} protocol · {}</p>"#,
        escape(&report.url),
        report.rooms,
        report.clients_per_room,
        report.rate,
        format!("{:?}", report.payload).to_lowercase(),
        format!("{:?}", report.protocol).to_lowercase(),
        escape(generated_at)
    );

    let _ = write!(
        page,
        r#"<section class="panel verdict {}" aria-labelledby="verdict"><h2 id="verdict">{}</h2>"#,
        verdict.class,
        escape(&verdict.headline)
    );
    for reason in &verdict.reasons {
        let _ = write!(page, "<p>{}</p>", escape(reason));
    }
    page.push_str(r#"<ul class="checks">"#);
    for (holds, text) in &checks {
        let _ = write!(
            page,
            r#"<li class="{}">{}</li>"#,
            if *holds { "ok" } else { "no" },
            escape(text)
        );
    }
    page.push_str("</ul></section>");

    let latency = &report.latency_ms;
    page.push_str(r#"<section class="panel" aria-labelledby="figures"><h2 id="figures">Fan-out latency and throughput</h2><dl class="figures">"#);
    for (name, value) in [
        ("p50", ms(latency.p50)),
        ("p99", ms(latency.p99)),
        ("p99.9", ms(latency.p999)),
        ("max", ms(latency.max)),
        (
            "deliveries per second",
            format!("{:.0}", report.deliveries_per_sec),
        ),
        (
            "delivery ratio",
            report
                .delivery_ratio
                .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.6}")),
        ),
    ] {
        let _ = write!(page, "<div><dt>{name}</dt><dd>{value}</dd></div>");
    }
    page.push_str("</dl></section>");

    page.push_str(r#"<section class="panel" aria-labelledby="plots"><h2 id="plots">Plots</h2><div class="charts">"#);
    page.push_str(&figure(
        "Fan-out latency by percentile",
        percentile_chart(
            "Fan-out latency by percentile",
            &detail.latency_us,
            "fan-out latency",
        ),
        &[("s0", "keystroke → every other editor")],
    ));
    let (latency_chart, rate_chart) = timeline_charts(run);
    page.push_str(&figure(
        "Latency over time",
        latency_chart,
        &[("s0", "p50"), ("s1", "p99"), ("s2", "max")],
    ));
    page.push_str(&figure(
        "Deliveries per second over time",
        rate_chart,
        &[("s0", "timed deliveries"), ("s3", "all messages received")],
    ));
    page.push_str(&figure(
        "Connection time by percentile",
        percentile_chart(
            "Connection time by percentile",
            &detail.connect_us,
            "connect + handshake",
        ),
        &[("s3", "TCP connect + WebSocket handshake")],
    ));
    page.push_str("</div></section>");

    page.push_str(r#"<div class="tables">"#);
    page.push_str(&table("Parameters", &parameters(report, thresholds)));
    page.push_str(&table("Results", &results(report)));
    page.push_str(&table("Machine", &machine_rows(machine)));
    page.push_str("</div>");

    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    let _ = write!(
        page,
        r#"<details class="panel"><summary>The JSON report (<code>--json</code>)</summary><pre>{}</pre></details>"#,
        escape(&json)
    );
    page.push_str("</main></body></html>\n");
    page
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.2} ms")
    }
}

fn checks(report: &Report) -> Vec<(bool, String)> {
    // With light rooms, say which rooms the first two checks cover.
    let (every, scope) = if report.light.is_some() {
        (
            "Every verified room's",
            format!(
                " in the {} verified rooms of {}",
                report.rooms_verified, report.rooms
            ),
        )
    } else {
        ("Every room's", String::new())
    };
    let mut checks = vec![
        (
            report.converged,
            if report.rooms_compared == 0 {
                "No room ended with two editors connected, so nothing was compared.".to_owned()
            } else if report.converged {
                format!(
                    "{every} editors ended with the same text ({} rooms compared).",
                    report.rooms_compared
                )
            } else {
                format!(
                    "{} of {} rooms ended with editors holding different text.",
                    report.rooms_diverged, report.rooms_compared
                )
            },
        ),
        (
            report.missed_deliveries == 0 && report.expected_deliveries > 0,
            format!(
                "{} of {} expected deliveries arrived{scope} ({} missed).",
                report.deliveries, report.expected_deliveries, report.missed_deliveries
            ),
        ),
        (
            report.connections.failed == 0 && report.connections.lost == 0,
            format!(
                "{} of {} connections opened, {} lost by the end ({} reconnects).",
                report.connections.opened,
                report.connections.attempted,
                report.connections.lost,
                report.connections.reconnects
            ),
        ),
        (
            report.errors == 0,
            format!(
                "{} errors reported by the server or the editors.",
                report.errors
            ),
        ),
    ];
    if let Some(light) = &report.light {
        checks.insert(
            2,
            (
                light.missed_updates == 0,
                format!(
                    "Light rooms ({} of {}, counted only): {} of {} updates arrived ({} missed).",
                    report.rooms_light,
                    report.rooms,
                    light.expected_updates - light.missed_updates,
                    light.expected_updates,
                    light.missed_updates
                ),
            ),
        );
    }
    checks
}

/// The same judgement as the exit code: a run that proves nothing or misses a
/// threshold fails.
fn verdict(report: &Report, thresholds: &Thresholds, checks: &[(bool, String)]) -> Verdict {
    let mut missed = report.defects();
    missed.extend(thresholds.violations(report));
    let mut limits = Vec::new();
    if let Some(limit) = thresholds.max_p99_ms {
        limits.push(format!("p99 at most {limit} ms"));
    }
    if let Some(limit) = thresholds.min_delivery_ratio {
        limits.push(format!("delivery ratio at least {limit}"));
    }
    if !missed.is_empty() {
        return Verdict {
            class: "failed",
            headline: "Failed".into(),
            reasons: missed,
        };
    }
    let all_hold = checks.iter().all(|(holds, _)| *holds);
    match (limits.is_empty(), all_hold) {
        (false, _) => Verdict {
            class: if all_hold { "passed" } else { "warn" },
            headline: "Passed".into(),
            reasons: vec![format!("Within the thresholds: {}.", limits.join(", "))],
        },
        (true, true) => Verdict {
            class: "passed",
            headline: "Completed, every check holds".into(),
            reasons: vec!["No thresholds were set (--max-p99-ms, --min-delivery-ratio).".into()],
        },
        (true, false) => Verdict {
            class: "warn",
            headline: "Completed with problems".into(),
            reasons: vec!["No thresholds were set (--max-p99-ms, --min-delivery-ratio).".into()],
        },
    }
}

fn figure(title: &str, svg: Option<String>, keys: &[(&str, &str)]) -> String {
    let mut html = format!("<figure><figcaption>{}", escape(title));
    for (class, name) in keys {
        let _ = write!(
            html,
            r#"<span class="key"><i class="{class}"></i>{}</span>"#,
            escape(name)
        );
    }
    html.push_str("</figcaption>");
    match svg {
        Some(svg) => html.push_str(&svg),
        None => html.push_str(r#"<p class="empty">Nothing was measured.</p>"#),
    }
    html.push_str("</figure>");
    html
}

/// The HDR-style curve: x is log₁₀(1 / (1 − q)), so 90%, 99%, 99.9%… are evenly
/// spaced and the tail gets the room it deserves.
fn percentile_chart(title: &str, micros: &Histogram<u64>, name: &str) -> Option<String> {
    if micros.is_empty() {
        return None;
    }
    // Beyond 1/count the histogram only repeats its maximum.
    let nines = (micros.len() as f64).log10().ceil().clamp(1.0, MAX_NINES);
    let steps = (nines * f64::from(CURVE_POINTS_PER_DECADE)) as u32;
    let mut points: Vec<Option<(f64, f64)>> = (0..steps)
        .map(|step| {
            let x = nines * f64::from(step) / f64::from(steps);
            let quantile = 1.0 - 10f64.powf(-x);
            Some((x, micros.value_at_quantile(quantile) as f64 / 1000.0))
        })
        .collect();
    points.push(Some((nines, micros.max() as f64 / 1000.0)));
    let mut ticks = vec![(0.0, "0%".to_owned()), (2f64.log10(), "50%".to_owned())];
    for nine in 1..=nines as usize {
        let label = match nine {
            1 => "90%".to_owned(),
            2 => "99%".to_owned(),
            _ => format!("99.{}%", "9".repeat(nine - 2)),
        };
        ticks.push((nine as f64, label));
    }
    Some(
        Chart {
            title: title.into(),
            x_label: "percentile (log scale of 1 / (1 − p))".into(),
            y_label: "milliseconds".into(),
            x_range: (0.0, nines),
            x_ticks: ticks,
            series: vec![Series {
                name: name.into(),
                class: if name.starts_with("connect") {
                    "s3"
                } else {
                    "s0"
                },
                points,
            }],
            band: None,
        }
        .svg(),
    )
}

fn timeline_charts(run: &Run) -> (Option<String>, Option<String>) {
    let timeline = &run.detail.timeline;
    let Some(last) = timeline.last() else {
        return (None, None);
    };
    let report = &run.report;
    let end = last.end_s.max(1.0);
    let step = nice_ceiling(end / 8.0);
    let ticks: Vec<(f64, String)> = (0..)
        .map(|index| f64::from(index) * step)
        .take_while(|second| *second <= end + 1e-9)
        .map(|second| (second, format!("{second:.0}")))
        .collect();
    let measured_from = report.ramp_s + report.warmup_s;
    let band = Some((
        measured_from,
        measured_from + report.duration_s,
        "measured".to_owned(),
    ));
    let series = |name: &str, class: &'static str, value: &dyn Fn(usize) -> Option<f64>| Series {
        name: name.into(),
        class,
        points: (0..timeline.len())
            .map(|index| value(index).map(|y| (timeline[index].end_s, y)))
            .collect(),
    };
    let chart = |title: &str, y_label: &str, series: Vec<Series>| {
        Chart {
            title: title.into(),
            x_label: "seconds since the bench started".into(),
            y_label: y_label.into(),
            x_range: (0.0, end),
            x_ticks: ticks.clone(),
            series,
            band: band.clone(),
        }
        .svg()
    };
    let latency = chart(
        "Latency over time",
        "milliseconds",
        // Drawn max first, so p99 stays visible where the two meet.
        vec![
            series("max", "s2", &|index| timeline[index].max_ms),
            series("p99", "s1", &|index| timeline[index].p99_ms),
            series("p50", "s0", &|index| timeline[index].p50_ms),
        ],
    );
    let rates = chart(
        "Deliveries per second over time",
        "per second",
        vec![
            series("timed deliveries", "s0", &|index| {
                Some(timeline[index].deliveries_per_sec)
            }),
            series("all messages received", "s3", &|index| {
                Some(timeline[index].messages_received_per_sec)
            }),
        ],
    );
    (Some(latency), Some(rates))
}

fn table(title: &str, rows: &[(String, String)]) -> String {
    let mut html = format!(
        r#"<section class="panel"><h2>{}</h2><table><tbody>"#,
        escape(title)
    );
    for (name, value) in rows {
        let _ = write!(
            html,
            r#"<tr><th scope="row">{}</th><td>{}</td></tr>"#,
            escape(name),
            escape(value)
        );
    }
    html.push_str("</tbody></table></section>");
    html
}

fn summary(latency: &LatencySummary) -> String {
    format!(
        "p50 {:.2}, p95 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ms ({} samples)",
        latency.p50, latency.p95, latency.p99, latency.p999, latency.max, latency.count
    )
}

fn parameters(report: &Report, thresholds: &Thresholds) -> Vec<(String, String)> {
    let offered = f64::from(report.rooms)
        * f64::from(report.clients_per_room)
        * f64::from(report.clients_per_room.saturating_sub(1))
        * report.rate;
    let threshold = |value: Option<f64>| value.map_or("none".to_owned(), |v| v.to_string());
    vec![
        ("server".into(), report.url.clone()),
        (
            "protocol, payload".into(),
            format!("{:?}, {:?}", report.protocol, report.payload).to_lowercase(),
        ),
        (
            "rooms".into(),
            if report.light.is_some() {
                format!(
                    "{} ({} verified, {} light)",
                    report.rooms, report.rooms_verified, report.rooms_light
                )
            } else {
                report.rooms.to_string()
            },
        ),
        (
            "editors per room".into(),
            report.clients_per_room.to_string(),
        ),
        (
            "edits per second per editor".into(),
            report.rate.to_string(),
        ),
        (
            "offered deliveries per second".into(),
            format!("{offered:.0}"),
        ),
        (
            "timing".into(),
            format!(
                "ramp {:.1} s, warm-up {:.1} s, measured {:.1} s",
                report.ramp_s, report.warmup_s, report.duration_s
            ),
        ),
        ("--max-p99-ms".into(), threshold(thresholds.max_p99_ms)),
        (
            "--min-delivery-ratio".into(),
            threshold(thresholds.min_delivery_ratio),
        ),
    ]
}

fn results(report: &Report) -> Vec<(String, String)> {
    let mut rows = vec![
        ("fan-out latency".into(), summary(&report.latency_ms)),
        (
            "connect time".into(),
            summary(&report.connections.connect_ms),
        ),
        (
            "deliveries".into(),
            format!(
                "{} of {}, {:.0} per second",
                report.deliveries, report.expected_deliveries, report.deliveries_per_sec
            ),
        ),
        (
            "messages per second".into(),
            format!(
                "sent {:.0}, received {:.0}",
                report.messages_sent_per_sec, report.messages_received_per_sec
            ),
        ),
        (
            "bench CPU".into(),
            format!(
                "{:.2} s ({:.2} cores)",
                report.bench_cpu.seconds, report.bench_cpu.cores
            ),
        ),
    ];
    if let Some(server) = &report.server {
        rows.push((
            "server CPU".into(),
            format!(
                "{:.2} s ({:.2} cores), {:.2} µs per delivery",
                server.cpu.seconds, server.cpu.cores, server.cpu_us_per_delivery
            ),
        ));
        rows.push((
            "server memory (max)".into(),
            format!("{:.1} MiB", server.rss_max_bytes as f64 / 1024.0 / 1024.0),
        ));
    }
    rows
}

fn machine_rows(machine: &Machine) -> Vec<(String, String)> {
    let mut rows = vec![
        ("cores".into(), machine.cores.to_string()),
        ("operating system".into(), machine.os.clone()),
    ];
    if let Some(kernel) = &machine.kernel {
        rows.push(("kernel".into(), kernel.clone()));
    }
    if let Some(cpu) = &machine.cpu {
        rows.push(("CPU".into(), cpu.clone()));
    }
    rows.push((
        "coedit".into(),
        format!("version {}", env!("CARGO_PKG_VERSION")),
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::bench::report::tests::sample_report;
    use crate::client::bench::report::LightReport;
    use crate::client::bench::stats::new_histogram;
    use crate::client::bench::timeline::{RunDetail, TimelinePoint};

    fn sample_run() -> Run {
        let mut latency = new_histogram();
        let mut connect = new_histogram();
        for micros in 1..=10_000u64 {
            latency.record(200 + micros % 900).unwrap();
        }
        latency.record(25_000).unwrap();
        for micros in [800, 900, 1200] {
            connect.record(micros).unwrap();
        }
        let timeline = (1..=4)
            .map(|second| TimelinePoint {
                end_s: f64::from(second),
                deliveries_per_sec: 6.0,
                messages_received_per_sec: 12.0,
                p50_ms: (second > 1).then_some(0.5),
                p99_ms: (second > 1).then_some(1.0),
                max_ms: (second > 1).then_some(2.0),
            })
            .collect();
        Run {
            report: Report {
                url: "ws://127.0.0.1:1/<script>".into(),
                ..sample_report()
            },
            detail: RunDetail {
                latency_us: latency,
                connect_us: connect,
                timeline,
            },
        }
    }

    fn machine() -> Machine {
        Machine {
            cores: 2,
            os: "Debian GNU/Linux 12 (bookworm) (x86_64)".into(),
            kernel: Some("6.1.0".into()),
            cpu: None,
        }
    }

    #[test]
    fn the_page_holds_four_plots_the_verdict_and_the_machine_and_fetches_nothing() {
        let thresholds = Thresholds {
            max_p99_ms: Some(50.0),
            min_delivery_ratio: Some(1.0),
        };
        let html = render(
            &sample_run(),
            &thresholds,
            &machine(),
            "2026-11-27 12:00 UTC",
        );
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert!(html.contains("verdict passed"));
        assert!(
            html.contains("99.99%"),
            "the curve reaches four nines for 10,001 samples"
        );
        assert!(html.contains("Debian GNU/Linux 12"));
        assert!(html.contains("<td>2</td>"), "cores");
        // Input is text, never markup.
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;"));
        let without_namespace = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"));
        assert!(!html.contains(" src="), "nothing is loaded from elsewhere");
    }

    #[test]
    fn light_rooms_are_a_check_of_their_own() {
        let mut run = sample_run();
        let all_verified = render(&run, &Thresholds::default(), &machine(), "now");
        assert!(!all_verified.contains("Light rooms"));
        assert!(all_verified.contains("Every room&#39;s editors ended with the same text"));
        run.report.rooms = 3;
        run.report.rooms_verified = 1;
        run.report.rooms_light = 2;
        run.report.light = Some(LightReport {
            receivers: 6,
            updates_sent: 20,
            expected_updates: 40,
            received_updates: 37,
            missed_updates: 3,
            deliveries_in_window: 30,
            deliveries_per_sec: 15.0,
        });
        let html = render(&run, &Thresholds::default(), &machine(), "now");
        assert!(html.contains("verdict failed"), "a light room lost updates");
        assert!(html.contains("Every verified room&#39;s editors ended with the same text"));
        assert!(html.contains("6 of 6 expected deliveries arrived in the 1 verified rooms of 3"));
        assert!(html.contains(
            r#"<li class="no">Light rooms (2 of 3, counted only): 37 of 40 updates arrived (3 missed).</li>"#
        ));
        assert!(html.contains("3 (1 verified, 2 light)"));
    }

    #[test]
    fn a_missed_threshold_is_the_headline() {
        let thresholds = Thresholds {
            max_p99_ms: Some(1.0),
            min_delivery_ratio: None,
        };
        let html = render(&sample_run(), &thresholds, &machine(), "now");
        assert!(html.contains("verdict failed"));
        assert!(html.contains("is above --max-p99-ms 1"));
    }

    #[test]
    fn a_run_that_measured_nothing_says_so_instead_of_plotting() {
        let mut run = sample_run();
        run.detail.latency_us = new_histogram();
        run.detail.timeline.clear();
        let html = render(&run, &Thresholds::default(), &machine(), "now");
        assert_eq!(html.matches("<svg").count(), 1, "only the connection times");
        assert_eq!(html.matches("Nothing was measured").count(), 3);
    }
}
