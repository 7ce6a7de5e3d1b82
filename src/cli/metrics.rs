//! `coedit metrics [--watch]` and `coedit metrics events`: the server's counters,
//! latencies and recent event log, once or refreshed in place until Ctrl-C.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::client_args::{parse_duration, ClientArgs};
use super::output::{self, print, print_json};
use super::Failure;
use crate::api::{Event, Metrics};
use crate::client::rest::RestClient;

/// How often `--watch` refreshes when no interval is given.
pub const DEFAULT_WATCH_INTERVAL: &str = "2s";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MetricsArgs {
    #[command(subcommand)]
    pub command: Option<MetricsCommand>,

    /// Refresh every INTERVAL (default 2s) until Ctrl-C; with --json, one JSON
    /// document per line per refresh.
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = DEFAULT_WATCH_INTERVAL,
        value_parser = parse_duration
    )]
    pub watch: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Show the server's recent events: joins, leaves, persists, errors.
    ///
    /// Example: coedit metrics events --limit 20
    Events {
        /// How many of the most recent events to show (server default 50, at most 1000).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

impl MetricsArgs {
    pub async fn run(self, options: &ClientArgs) -> Result<(), Failure> {
        let client = options.client()?;
        let json = options.json;
        match (self.command, self.watch) {
            (Some(MetricsCommand::Events { limit }), _) => {
                let answer = client.events(limit).await?;
                if json {
                    return print_json(&answer.raw);
                }
                print_events(&answer.value)
            }
            (None, Some(interval)) => watch(&client, interval, json).await,
            (None, None) => {
                let answer = client.metrics().await?;
                if json {
                    return print_json(&answer.raw);
                }
                output::print_table(metrics_table(&answer.value))
            }
        }
    }
}

/// The metrics as a two-column table, in the order an operator reads them: load,
/// latency, trouble, storage.
fn metrics_table(metrics: &Metrics) -> comfy_table::Table {
    let mut table = output::table(["Metric", "Value"]);
    let rows: Vec<(&str, String)> = vec![
        ("Uptime", output::human_seconds(metrics.uptime_seconds)),
        ("Active connections", metrics.active_connections.to_string()),
        ("Rooms active", metrics.rooms_active.to_string()),
        ("Rooms loaded", metrics.rooms_loaded.to_string()),
        (
            "Messages per second",
            format!("{:.2}", metrics.messages_per_sec),
        ),
        ("Messages received", metrics.total_messages.to_string()),
        ("Messages delivered", metrics.messages_delivered.to_string()),
        ("Latency p50", output::milliseconds(metrics.p50_latency_ms)),
        ("Latency p95", output::milliseconds(metrics.p95_latency_ms)),
        ("Latency p99", output::milliseconds(metrics.p99_latency_ms)),
        ("Latency max", output::milliseconds(metrics.max_latency_ms)),
        ("Errors", metrics.error_count.to_string()),
        ("Reconnects", metrics.reconnect_count.to_string()),
        (
            "Slow consumers disconnected",
            metrics.slow_consumer_disconnects.to_string(),
        ),
        ("Rejected updates", metrics.rejected_updates.to_string()),
        (
            "Documents in memory",
            output::human_size(metrics.total_doc_size_bytes),
        ),
        ("Store backlog", metrics.store_backlog.to_string()),
        ("Store errors", metrics.store_errors.to_string()),
    ];
    for (name, value) in rows {
        table.add_row(vec![name.to_owned(), value]);
    }
    output::align_right(&mut table, &[1]);
    table
}

fn print_events(events: &[Event]) -> Result<(), Failure> {
    if events.is_empty() && output::stdout_is_terminal() {
        return print("No events yet.");
    }
    let mut table = output::table(["Time", "Type", "Room", "User", "Details"]);
    for event in events {
        table.add_row(vec![
            output::local_time(&event.timestamp),
            event.kind.clone(),
            event.room_id.clone(),
            event.user_id.clone(),
            event.details.clone(),
        ]);
    }
    output::print_table(table)
}

/// ANSI: cursor to the top-left corner; erase to the end of the line; erase below.
const CURSOR_HOME: &str = "\x1b[H";
const CLEAR_LINE_END: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";
const CLEAR_SCREEN: &str = "\x1b[2J";

/// Fetches and shows the metrics every `interval` until Ctrl-C, which is success.
/// On a terminal each refresh is drawn over the last (home, redraw, erase what is
/// left) rather than clearing first, so the table does not flicker; elsewhere each
/// refresh is simply printed after the previous one. A failed fetch is shown in
/// place of the table and retried: a watch outlives a server restart.
async fn watch(client: &RestClient, interval: Duration, json: bool) -> Result<(), Failure> {
    // Listening for Ctrl-C from the start replaces the default action (die with
    // 130), so an interrupt at any moment ends the loop below with success.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let in_place = output::stdout_is_terminal() && !json;
    if in_place {
        output::write_stdout(CLEAR_SCREEN)?;
    }
    loop {
        let frame = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            frame = watch_frame(client, interval, json) => frame?,
        };
        if in_place {
            let mut screen = String::from(CURSOR_HOME);
            for line in frame.lines() {
                screen.push_str(line);
                screen.push_str(CLEAR_LINE_END);
                screen.push('\n');
            }
            screen.push_str(CLEAR_BELOW);
            output::write_stdout(&screen)?;
        } else {
            output::write_stdout(&frame)?;
        }
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One refresh: a JSON line, or a heading and the table (or the reason there is none).
async fn watch_frame(
    client: &RestClient,
    interval: Duration,
    json: bool,
) -> Result<String, Failure> {
    let answer = client.metrics().await;
    if json {
        return match answer {
            Ok(answer) => Ok(format!("{}\n", answer.raw)),
            Err(error) => {
                eprintln!("coedit: {error}");
                Ok(String::new())
            }
        };
    }
    let now = chrono::Local::now().format("%H:%M:%S");
    let every = if interval.subsec_millis() == 0 {
        output::human_duration(interval)
    } else {
        format!("{}ms", interval.as_millis())
    };
    let heading = format!("{} every {every} at {now} (Ctrl-C to stop)", client.base());
    let body = match answer {
        Ok(answer) => output::render(&mut metrics_table(&answer.value)),
        Err(error) => format!("coedit: {error}\nRetrying."),
    };
    Ok(format!("{heading}\n\n{body}\n\n"))
}
