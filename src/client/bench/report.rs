//! The bench's result: one serde struct printed as JSON for scripts or as a table
//! for people, and the threshold checks that turn it into an exit code.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::protocol::{Payload, Protocol};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub url: String,
    pub protocol: Protocol,
    pub payload: Payload,
    pub rooms: u32,
    pub clients_per_room: u32,
    /// Edits per second per client.
    pub rate: f64,
    pub ramp_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connections: ConnectionReport,
    /// Keystroke to another editor's document, measured from the keystroke's
    /// scheduled time, over every (edit, receiver) pair of the measurement window
    /// in verified rooms.
    pub latency_ms: LatencySummary,
    /// Edits of verified rooms scheduled in the measurement window.
    pub edits: u64,
    /// `edits × (clients_per_room − 1)`: every other editor should get each one.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub missed_deliveries: u64,
    /// `deliveries / expected_deliveries`; `null` when nothing was expected (0 of
    /// 0 proves nothing, so it cannot pass a threshold).
    pub delivery_ratio: Option<f64>,
    /// Deliveries per second in every room: the timed ones of verified rooms plus
    /// the update frames light rooms' editors received during the window.
    pub deliveries_per_sec: f64,
    /// This and the next three: every frame of every room, sent or received
    /// during the measurement window, per second of it.
    pub messages_sent_per_sec: f64,
    pub messages_received_per_sec: f64,
    pub bytes_sent_per_sec: f64,
    pub bytes_received_per_sec: f64,
    /// Errors the server reported, frames the bench could not read, failed sends.
    pub errors: u64,
    /// Every compared room's connected editors hold the same text at the end, and
    /// at least one room was compared.
    pub converged: bool,
    /// Rooms with at least two editors connected at the end, whose texts were
    /// compared.
    pub rooms_compared: u32,
    pub rooms_diverged: u32,
    /// Rooms whose editors integrate, time and compare every delivery: all of
    /// them unless `--verify-rooms` chose a sample.
    #[serde(default)]
    pub rooms_verified: u32,
    /// Rooms whose editors only count the update frames they receive.
    #[serde(default)]
    pub rooms_light: u32,
    /// What the light rooms' editors counted; absent when every room is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light: Option<LightReport>,
    /// CPU the bench itself used during the measurement window.
    pub bench_cpu: CpuUse,
    /// The server process, when its pid was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerReport>,
}

/// Light rooms' deliveries, as counts of update frames: no latency, no
/// convergence (their editors' documents hold only their own keystrokes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LightReport {
    /// Light editors connected at the end, whose counts are checked.
    pub receivers: u64,
    /// Update frames light editors sent while at least one other editor of
    /// their room was connected.
    pub updates_sent: u64,
    /// For each receiver, the updates the others of its room sent while it was
    /// connected, summed.
    pub expected_updates: u64,
    pub received_updates: u64,
    /// For each receiver, expected minus received when short, summed.
    pub missed_updates: u64,
    /// Update frames received during the measurement window.
    pub deliveries_in_window: u64,
    pub deliveries_per_sec: f64,
}

impl LightReport {
    /// Received over expected (a receiver's surplus does not make up for
    /// another's loss); `None` when nothing was expected.
    pub fn ratio(&self) -> Option<f64> {
        (self.expected_updates > 0).then(|| {
            (self.expected_updates - self.missed_updates) as f64 / self.expected_updates as f64
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionReport {
    pub attempted: u64,
    /// Connections that completed the WebSocket handshake (first connects only).
    pub opened: u64,
    /// Clients that never got connected.
    pub failed: u64,
    /// Clients that connected but were not connected when the bench stopped:
    /// dropped and never let back in, or still stuck in a send to a server that
    /// stopped reading, and abandoned.
    #[serde(default)]
    pub lost: u64,
    /// Connections re-opened after dropping.
    pub reconnects: u64,
    /// Connections that received a `users` greeting (coedit sends one; a plain
    /// relay does not).
    pub greeted: u64,
    /// TCP connect plus WebSocket handshake.
    pub connect_ms: LatencySummary,
    /// Why the first failed connection attempt failed (e.g. `HTTP error: 401
    /// Unauthorized` from a server that wants a room token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    /// User plus system CPU seconds.
    pub seconds: f64,
    /// `seconds` divided by wall-clock seconds: 1.0 is one core kept busy.
    pub cores: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerReport {
    pub pid: u32,
    pub cpu: CpuUse,
    /// Server CPU per delivered keystroke, in microseconds.
    pub cpu_us_per_delivery: f64,
    /// Highest resident memory seen while the bench ran.
    pub rss_max_bytes: u64,
}

impl Report {
    /// Why this run proves nothing, whatever the thresholds: nobody connected, no
    /// keystroke was measured, nothing was compared for convergence, or the load
    /// was not the one asked for. One line each; empty when the run measured what
    /// it was asked to.
    pub fn defects(&self) -> Vec<String> {
        let connections = &self.connections;
        if connections.opened == 0 {
            let reason = connections
                .first_error
                .as_deref()
                .map_or(String::new(), |error| format!(": {error}"));
            return vec![format!(
                "no client connected ({} attempted){reason}",
                connections.attempted
            )];
        }
        let mut defects = Vec::new();
        if connections.failed > 0 {
            defects.push(format!(
                "{} of {} clients never connected",
                connections.failed, connections.attempted
            ));
        }
        // What a lost editor should have received, and what the others should
        // have got from it, is not there: the run did not carry its load.
        if connections.lost > 0 {
            defects.push(format!(
                "{} of {} clients lost their connection and were not connected at the end",
                connections.lost, connections.attempted
            ));
        }
        if self.rate > 0.0 && self.latency_ms.count == 0 {
            defects.push(if self.clients_per_room < 2 {
                "no keystroke was measured: with one client per room nobody receives one"
                    .to_owned()
            } else {
                format!(
                    "no keystroke was measured: {} edits in the window, none reached another editor",
                    self.edits
                )
            });
        }
        if self.rooms_compared == 0 {
            defects.push(
                "nothing was compared for convergence: no room ended with two editors connected"
                    .to_owned(),
            );
        } else if self.rooms_diverged > 0 {
            defects.push(format!(
                "{} of {} rooms ended with different documents",
                self.rooms_diverged, self.rooms_compared
            ));
        }
        // In light rooms a missing update is what a diverged document is in
        // verified ones.
        if let Some(light) = self.light.as_ref().filter(|light| light.missed_updates > 0) {
            defects.push(format!(
                "{} of {} updates never reached their light rooms' editors",
                light.missed_updates, light.expected_updates
            ));
        }
        defects
    }
}

/// Limits that make the bench fail (exit code 1) when missed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    pub max_p99_ms: Option<f64>,
    pub min_delivery_ratio: Option<f64>,
}

impl Thresholds {
    /// One line per missed threshold; empty when the run passed.
    pub fn violations(&self, report: &Report) -> Vec<String> {
        let mut missed = Vec::new();
        if let Some(limit) = self.max_p99_ms {
            if report.latency_ms.count == 0 {
                missed.push(format!(
                    "no keystroke was measured, so --max-p99-ms {limit} cannot be checked"
                ));
            } else if report.latency_ms.p99 > limit {
                missed.push(format!(
                    "p99 latency {:.3} ms is above --max-p99-ms {limit}",
                    report.latency_ms.p99
                ));
            }
        }
        if let Some(limit) = self.min_delivery_ratio {
            match report.delivery_ratio {
                None => missed.push(format!(
                    "no delivery was expected, so --min-delivery-ratio {limit} cannot be checked"
                )),
                Some(ratio) if ratio < limit => missed.push(format!(
                    "delivery ratio {ratio:.6} is below --min-delivery-ratio {limit} ({} of {} missed)",
                    report.missed_deliveries, report.expected_deliveries
                )),
                Some(_) => {}
            }
            match report.light.as_ref().map(LightReport::ratio) {
                // Every room verified: nothing more to check.
                None => {}
                Some(None) => missed.push(format!(
                    "no light-room update was expected, so --min-delivery-ratio {limit} \
                     cannot be checked for light rooms"
                )),
                Some(Some(ratio)) if ratio < limit => missed.push(format!(
                    "light rooms' update ratio {ratio:.6} is below --min-delivery-ratio {limit}"
                )),
                Some(Some(_)) => {}
            }
        }
        missed
    }
}

impl Report {
    /// The summary table printed for people.
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["", "value"]);
        let latency = |summary: &LatencySummary| {
            format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                summary.p50, summary.p95, summary.p99, summary.p999, summary.max
            )
        };
        let mut rows: Vec<(&str, String)> = vec![
            (
                "target",
                format!(
                    "{} ({:?}, {:?} payload)",
                    self.url, self.protocol, self.payload
                ),
            ),
            (
                "load",
                format!(
                    "{} rooms × {} clients × {} edits/s ({:.0} deliveries/s offered)",
                    self.rooms,
                    self.clients_per_room,
                    self.rate,
                    f64::from(self.rooms)
                        * f64::from(self.clients_per_room)
                        * f64::from(self.clients_per_room.saturating_sub(1))
                        * self.rate
                ),
            ),
            (
                "timing",
                format!(
                    "ramp {:.1}s, warm-up {:.1}s, measured {:.1}s",
                    self.ramp_s, self.warmup_s, self.duration_s
                ),
            ),
            (
                "connections",
                format!(
                    "{} of {} opened, {} failed, {} lost, {} reconnects, {} greeted",
                    self.connections.opened,
                    self.connections.attempted,
                    self.connections.failed,
                    self.connections.lost,
                    self.connections.reconnects,
                    self.connections.greeted
                ),
            ),
            ("connect time (ms)", latency(&self.connections.connect_ms)),
            ("fan-out latency (ms)", latency(&self.latency_ms)),
            (
                "deliveries",
                format!(
                    "{} of {} ({} missed, ratio {}), {:.0}/s{}",
                    self.deliveries,
                    self.expected_deliveries,
                    self.missed_deliveries,
                    self.delivery_ratio
                        .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.6}")),
                    self.deliveries_per_sec,
                    if self.light.is_some() {
                        " (counts: verified rooms; per second: all rooms)"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "messages/s",
                format!(
                    "sent {:.0}, received {:.0}",
                    self.messages_sent_per_sec, self.messages_received_per_sec
                ),
            ),
            (
                "bytes/s",
                format!(
                    "sent {}, received {}",
                    human_bytes(self.bytes_sent_per_sec),
                    human_bytes(self.bytes_received_per_sec)
                ),
            ),
            ("errors", self.errors.to_string()),
        ];
        if let Some(light) = &self.light {
            rows.push((
                "rooms",
                format!(
                    "{} verified, {} light (updates counted only: no latency, no convergence)",
                    self.rooms_verified, self.rooms_light
                ),
            ));
            rows.push((
                "light rooms' updates",
                format!(
                    "{} of {} ({} missed), {:.0}/s",
                    light.expected_updates - light.missed_updates,
                    light.expected_updates,
                    light.missed_updates,
                    light.deliveries_per_sec
                ),
            ));
        }
        rows.extend([
            (
                "converged",
                if self.rooms_compared == 0 {
                    "not checked: no room ended with two editors".to_owned()
                } else if self.converged {
                    format!("yes ({} rooms compared)", self.rooms_compared)
                } else {
                    format!(
                        "NO: {} of {} rooms differ",
                        self.rooms_diverged, self.rooms_compared
                    )
                },
            ),
            (
                "bench CPU",
                format!(
                    "{:.2} s ({:.2} cores)",
                    self.bench_cpu.seconds, self.bench_cpu.cores
                ),
            ),
        ]);
        if let Some(server) = &self.server {
            rows.push((
                "server CPU",
                format!(
                    "{:.2} s ({:.2} cores), {:.2} µs per delivery",
                    server.cpu.seconds, server.cpu.cores, server.cpu_us_per_delivery
                ),
            ));
            rows.push(("server RSS (max)", human_bytes(server.rss_max_bytes as f64)));
        }
        for (name, value) in rows {
            table.add_row(vec![
                Cell::new(name).set_alignment(CellAlignment::Right),
                Cell::new(value),
            ]);
        }
        table
    }
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_report() -> Report {
        Report {
            url: "ws://127.0.0.1:1".into(),
            protocol: Protocol::Json,
            payload: Payload::Full,
            rooms: 1,
            clients_per_room: 3,
            rate: 1.0,
            ramp_s: 0.0,
            warmup_s: 0.0,
            duration_s: 1.0,
            connections: ConnectionReport {
                attempted: 3,
                opened: 3,
                failed: 0,
                lost: 0,
                reconnects: 0,
                greeted: 3,
                connect_ms: LatencySummary::default(),
                first_error: None,
            },
            latency_ms: LatencySummary {
                count: 6,
                p99: 4.0,
                ..LatencySummary::default()
            },
            edits: 3,
            expected_deliveries: 6,
            deliveries: 6,
            missed_deliveries: 0,
            delivery_ratio: Some(1.0),
            deliveries_per_sec: 6.0,
            messages_sent_per_sec: 0.0,
            messages_received_per_sec: 0.0,
            bytes_sent_per_sec: 0.0,
            bytes_received_per_sec: 0.0,
            errors: 0,
            converged: true,
            rooms_compared: 1,
            rooms_diverged: 0,
            rooms_verified: 1,
            rooms_light: 0,
            light: None,
            bench_cpu: CpuUse::default(),
            server: None,
        }
    }

    #[test]
    fn thresholds_pass_and_fail_on_the_right_side() {
        let report = sample_report();
        let lenient = Thresholds {
            max_p99_ms: Some(4.0),
            min_delivery_ratio: Some(1.0),
        };
        assert!(lenient.violations(&report).is_empty());
        let strict = Thresholds {
            max_p99_ms: Some(3.9),
            min_delivery_ratio: None,
        };
        assert_eq!(strict.violations(&report).len(), 1);

        let lossy = Report {
            deliveries: 5,
            missed_deliveries: 1,
            delivery_ratio: Some(5.0 / 6.0),
            ..sample_report()
        };
        let wanted = Thresholds {
            max_p99_ms: None,
            min_delivery_ratio: Some(0.99),
        };
        assert!(wanted.violations(&lossy)[0].contains("1 of 6 missed"));
        assert!(Thresholds::default().violations(&lossy).is_empty());
    }

    #[test]
    fn nothing_delivered_fails_a_latency_threshold() {
        let silent = Report {
            latency_ms: LatencySummary::default(),
            deliveries: 0,
            missed_deliveries: 6,
            delivery_ratio: Some(0.0),
            ..sample_report()
        };
        let limit = Thresholds {
            max_p99_ms: Some(50.0),
            min_delivery_ratio: None,
        };
        assert_eq!(limit.violations(&silent).len(), 1);
    }

    fn with_light_rooms(missed_updates: u64) -> Report {
        Report {
            rooms: 3,
            rooms_verified: 1,
            rooms_light: 2,
            light: Some(LightReport {
                receivers: 6,
                updates_sent: 20,
                expected_updates: 40,
                received_updates: 40 - missed_updates,
                missed_updates,
                deliveries_in_window: 30,
                deliveries_per_sec: 30.0,
            }),
            ..sample_report()
        }
    }

    #[test]
    fn light_rooms_are_shown_and_their_losses_fail_the_run() {
        let whole = with_light_rooms(0);
        assert!(whole.defects().is_empty(), "{:?}", whole.defects());
        let text = whole.table().to_string();
        assert!(text.contains("1 verified, 2 light"), "{text}");
        assert!(text.contains("40 of 40 (0 missed)"), "{text}");
        assert!(!sample_report().table().to_string().contains("light"));
        let ratio = Thresholds {
            max_p99_ms: None,
            min_delivery_ratio: Some(0.99),
        };
        assert!(ratio.violations(&whole).is_empty());

        // Verified rooms perfect, light rooms lossy: the run fails all the same.
        let lossy = with_light_rooms(4);
        assert_eq!(
            lossy.defects(),
            ["4 of 40 updates never reached their light rooms' editors"]
        );
        let violations = ratio.violations(&lossy);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("light rooms' update ratio 0.900000"));

        // Light rooms where nothing was owed prove nothing about delivery.
        let silent = Report {
            light: Some(LightReport {
                receivers: 0,
                expected_updates: 0,
                received_updates: 0,
                missed_updates: 0,
                ..with_light_rooms(0).light.unwrap_or_default()
            }),
            ..with_light_rooms(0)
        };
        let violations = ratio.violations(&silent);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("cannot be checked for light rooms"),
            "{violations:?}"
        );
    }

    #[test]
    fn editors_lost_before_the_end_fail_the_run() {
        let lost = Report {
            connections: ConnectionReport {
                lost: 1,
                ..sample_report().connections
            },
            ..sample_report()
        };
        assert_eq!(
            lost.defects(),
            ["1 of 3 clients lost their connection and were not connected at the end"]
        );
        assert!(lost.table().to_string().contains("0 failed, 1 lost"));
    }

    #[test]
    fn the_table_shows_the_key_figures() {
        let text = sample_report().table().to_string();
        assert!(text.contains("p99 4.00"), "{text}");
        assert!(text.contains("6 of 6"), "{text}");
    }

    #[test]
    fn a_run_that_measured_nothing_cannot_pass() {
        let refused = Report {
            connections: ConnectionReport {
                opened: 0,
                failed: 3,
                greeted: 0,
                first_error: Some("HTTP error: 401 Unauthorized".into()),
                ..sample_report().connections
            },
            latency_ms: LatencySummary::default(),
            edits: 0,
            expected_deliveries: 0,
            deliveries: 0,
            delivery_ratio: None,
            converged: false,
            rooms_compared: 0,
            ..sample_report()
        };
        assert_eq!(
            refused.defects(),
            ["no client connected (3 attempted): HTTP error: 401 Unauthorized"]
        );
        let both = Thresholds {
            max_p99_ms: Some(50.0),
            min_delivery_ratio: Some(0.5),
        };
        assert_eq!(both.violations(&refused).len(), 2, "0 of 0 passes nothing");
        assert!(sample_report().defects().is_empty());

        let alone = Report {
            clients_per_room: 1,
            latency_ms: LatencySummary::default(),
            expected_deliveries: 0,
            deliveries: 0,
            delivery_ratio: None,
            converged: false,
            rooms_compared: 0,
            ..sample_report()
        };
        let defects = alone.defects();
        assert_eq!(defects.len(), 2, "{defects:?}");
        assert!(defects[0].contains("no keystroke was measured"));
        assert!(defects[1].contains("nothing was compared"));

        let diverged = Report {
            converged: false,
            rooms_diverged: 1,
            ..sample_report()
        };
        assert_eq!(
            diverged.defects(),
            ["1 of 1 rooms ended with different documents"]
        );
    }
}
