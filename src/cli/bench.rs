//! `coedit bench`: flags onto `client::bench::BenchConfig`, run, print the report,
//! and turn a run that measured nothing, or a missed threshold, into exit code 1.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::client_args::ClientArgs;
use super::{exit, Failure};
use crate::client::bench::system::Machine;
use crate::client::bench::{
    self, BenchConfig, BenchError, Payload, Protocol, Thresholds, VerifyRooms,
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base WebSocket URL of the server; by default the --server address with
    /// ws:// (ws://127.0.0.1:8001). Give it once per node to spread each room's
    /// clients over the nodes of a cluster, round-robin.
    #[arg(long, value_name = "URL")]
    pub url: Vec<String>,

    /// Number of rooms.
    #[arg(long, default_value_t = BenchConfig::DEFAULT_ROOMS)]
    pub rooms: u32,

    /// Clients (editors) in each room.
    #[arg(long, default_value_t = BenchConfig::DEFAULT_CLIENTS)]
    pub clients: u32,

    /// Edits per second per client; 0 only holds the connections open.
    #[arg(long, default_value_t = BenchConfig::DEFAULT_RATE)]
    pub rate: f64,

    /// How long to measure, e.g. `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long clients type before measuring starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Connections are opened evenly over this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub ramp: Duration,

    /// Longest wait after measuring for keystrokes still on their way.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Wire protocol the simulated editors speak.
    #[arg(long, value_enum, default_value = "json")]
    pub protocol: Protocol,

    /// `full`: the whole document state plus a cursor message on every keystroke,
    /// like the original browser page; `incremental`: only the keystroke's update.
    #[arg(long, value_enum, default_value = "full")]
    pub payload: Payload,

    /// Rooms whose editors integrate, time and compare every delivery: `all`, or
    /// N rooms spread over the run. The other rooms' editors type the same
    /// keystrokes but only count the updates they receive (no latency, no
    /// convergence), so the bench needs less CPU to load the server; with
    /// `--payload full` their full states carry only the sender's own keystrokes.
    #[arg(long, value_name = "N|all", default_value = "all")]
    pub verify_rooms: VerifyRooms,

    /// Room name prefix (rooms are PREFIX-0, PREFIX-1, …); random by default.
    #[arg(long)]
    pub room_prefix: Option<String>,

    /// Seed for the editors' random choices.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Pid of the server, to report its CPU use and memory over the run; give it
    /// once per node of a cluster to report their sum.
    #[arg(long)]
    pub server_pid: Vec<u32>,

    /// Also write the report as one self-contained HTML page with plots (latency
    /// percentiles, latency and deliveries over time, connection times) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Fail (exit 1) when the p99 fan-out latency is above this many milliseconds.
    #[arg(
        long,
        value_name = "MS",
        value_parser = parse_milliseconds,
        allow_negative_numbers = true
    )]
    pub max_p99_ms: Option<f64>,

    /// Fail (exit 1) when fewer than this fraction (0 to 1) of expected deliveries
    /// arrived (and, with --verify-rooms, of the light rooms' updates).
    #[arg(
        long,
        value_name = "RATIO",
        value_parser = parse_ratio,
        allow_negative_numbers = true
    )]
    pub min_delivery_ratio: Option<f64>,
}

impl BenchArgs {
    pub fn config(&self, client: &ClientArgs) -> BenchConfig {
        let mut urls = self.url.clone();
        if urls.is_empty() {
            urls.push(websocket_base(&client.server));
        }
        let url = urls.remove(0);
        BenchConfig {
            url,
            more_urls: urls,
            rooms: self.rooms,
            clients_per_room: self.clients,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            ramp: self.ramp,
            drain: self.drain,
            protocol: self.protocol,
            payload: self.payload,
            room_prefix: self.room_prefix.clone(),
            server_pid: self.server_pid.first().copied(),
            more_server_pids: self.server_pid.iter().skip(1).copied().collect(),
            show_progress: true,
            seed: self.seed,
            token: client.token.clone().filter(|token| !token.is_empty()),
            verify_rooms: self.verify_rooms,
            probe_timeout: client.timeout,
        }
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_p99_ms: self.max_p99_ms,
            min_delivery_ratio: self.min_delivery_ratio,
        }
    }

    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let run = bench::run_detailed(self.config(client))
            .await
            .map_err(|error| match error {
                BenchError::Unreachable { .. } => {
                    Failure::new(exit::UNREACHABLE, error.to_string())
                }
                BenchError::Invalid(_) => Failure::new(exit::USAGE, error.to_string()),
            })?;
        if let Some(path) = &self.report {
            let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
            let page =
                bench::page::render(&run, &self.thresholds(), &Machine::this_one(), &generated);
            std::fs::write(path, page).map_err(|error| {
                Failure::new(
                    exit::FAILED,
                    format!("cannot write the report to {}: {error}", path.display()),
                )
            })?;
            if !client.json {
                eprintln!("report written to {}", path.display());
            }
        }
        let report = run.report;
        let output = if client.json {
            serde_json::to_string_pretty(&report)
                .map(|json| json + "\n")
                .map_err(|error| Failure::new(exit::FAILED, error.to_string()))?
        } else {
            format!("{}\n", report.table())
        };
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = stdout.write_all(output.as_bytes()) {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(Failure::new(exit::FAILED, error.to_string()));
            }
        }
        // The server was reached (else `run` failed above): whatever is wrong now is
        // exit 1, with every reason on one line.
        let mut failures = report.defects();
        failures.extend(self.thresholds().violations(&report));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(exit::FAILED, failures.join("; ")))
        }
    }
}

/// `http://host:port` → `ws://host:port` (and https → wss), for a bench pointed at
/// the same server as the other client commands.
fn websocket_base(server: &str) -> String {
    if let Some(rest) = server.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = server.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        server.to_owned()
    }
}

/// A latency limit: a number of milliseconds above zero. NaN is refused above
/// all: every comparison with it is false, so the gate would never close.
fn parse_milliseconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        _ => Err(format!(
            "{text:?} is not a number of milliseconds above zero"
        )),
    }
}

/// A fraction from 0 to 1; NaN is refused for the same reason as above.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{text:?} is not a ratio from 0 to 1")),
    }
}

/// `250ms`, `10s`, `1.5s`, `2m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_address_becomes_a_websocket_url() {
        assert_eq!(
            websocket_base("http://127.0.0.1:8001"),
            "ws://127.0.0.1:8001"
        );
        assert_eq!(
            websocket_base("https://coedit.example"),
            "wss://coedit.example"
        );
    }

    #[test]
    fn thresholds_are_numbers_that_can_be_missed() {
        assert_eq!(parse_milliseconds("50"), Ok(50.0));
        assert_eq!(parse_milliseconds("0.5"), Ok(0.5));
        for refused in ["nan", "NaN", "inf", "-inf", "0", "-1", "", "fast"] {
            assert!(parse_milliseconds(refused).is_err(), "{refused:?}");
        }
        assert_eq!(parse_ratio("0.99"), Ok(0.99));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert_eq!(parse_ratio("0"), Ok(0.0));
        for refused in ["nan", "inf", "1.01", "-0.1", "99%", ""] {
            assert!(parse_ratio(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
