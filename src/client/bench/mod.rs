//! `coedit bench`: a load generator that measures real end-to-end fan-out latency —
//! one editor's keystroke to every other editor of the room having it — against a
//! running server.
//!
//! A run: ramp up `rooms × clients` connections over `ramp`; let them type for
//! `warmup`; measure for `duration`; stop typing and drain until every keystroke of
//! the window arrived (or `drain` passes); check that every room's editors hold the
//! same text. Only keystrokes scheduled inside the measured window count.
//!
//! With `--verify-rooms N` only N rooms, spread over the run, are verified that
//! way; the editors of the other (light) rooms type the same keystrokes but only
//! count the update frames they receive, so the bench spends its CPU on the
//! server's load rather than on integrating every delivery.
//!
//! - [`editor`]: one editor's Yjs document and how keystrokes are recognised.
//! - [`client`]: one editor's connection, schedule and receive loop.
//! - [`protocol`]: what goes over the wire.
//! - [`stats`]: shared send times, counters, histograms.
//! - [`report`]: the result, its table and threshold checks.
//! - [`timeline`]: the run second by second, and the distributions behind the report.
//! - [`page`]: the report as one self-contained HTML page with plots (`--report`).
//! - [`plot`]: the SVG line charts that page draws.
//! - [`system`]: CPU and memory of the bench and the server.

pub mod client;
pub mod editor;
pub mod page;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod stats;
pub mod system;
pub mod timeline;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_util::sync::CancellationToken;

use client::{ClientOutcome, ClientPlan, LightRoom};
use protocol::Identity;
pub use protocol::{Payload, Protocol};
use report::{ConnectionReport, CpuUse, LatencySummary, ServerReport};
pub use report::{LightReport, Report, Thresholds};
use stats::{Counters, SendTimes, Shared, Traffic, Window};
use timeline::{RunDetail, Timeline};

/// How often the progress line and the server's memory are looked at.
const TICK: Duration = Duration::from_millis(250);
/// Slack in the send-time table for edits a client makes beyond its share.
const SEND_TABLE_SLACK: usize = 16;
/// After the window closes, clients fold in their last numbers within one flush
/// interval; the drain does not declare victory before that.
const SETTLE: Duration = Duration::from_millis(250);
/// After the stop, clients give up what they were waiting for and close their
/// connections within half a second; one still running after this long is
/// aborted rather than allowed to hold back the report.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Everything a run needs; the CLI fills it from flags, tests build it directly.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Base WebSocket URL of the server, e.g. `ws://127.0.0.1:8001`.
    pub url: String,
    /// More servers (nodes of one cluster): each room's clients are spread over
    /// `url` and these, round-robin.
    pub more_urls: Vec<String>,
    pub rooms: u32,
    /// Clients in each room.
    pub clients_per_room: u32,
    /// Edits per second per client; 0 holds connections open without typing.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    /// Connections are opened evenly over this long.
    pub ramp: Duration,
    /// Longest wait after the window for late deliveries.
    pub drain: Duration,
    pub protocol: Protocol,
    pub payload: Payload,
    /// Room names are `{prefix}-{n}`; a fresh random prefix by default, so runs
    /// never meet each other's documents.
    pub room_prefix: Option<String>,
    /// A server process to watch (CPU, memory).
    pub server_pid: Option<u32>,
    /// More server processes (the other nodes of a cluster): their CPU and memory
    /// are added to `server_pid`'s.
    pub more_server_pids: Vec<u32>,
    pub show_progress: bool,
    /// Seed of the editors' random choices; random by default.
    pub seed: Option<u64>,
    /// Room token for a server started with `--auth-secret` (it must grant every
    /// room of the run, e.g. `--room '*'` or `--room 'PREFIX-*'`).
    pub token: Option<String>,
    /// Which rooms are verified (every delivery integrated, timed and compared);
    /// the others are light rooms.
    pub verify_rooms: VerifyRooms,
    /// Longest wait for the check that the server can be reached at all (name
    /// lookup and TCP connect); an address that drops packets would otherwise
    /// hold the run for the kernel's two minutes of retries.
    pub probe_timeout: Duration,
}

/// How many rooms the bench verifies: `all` (the default), or a sample of N
/// rooms spread evenly over the run, the others being light rooms whose editors
/// only count what they receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyRooms {
    #[default]
    All,
    Sample(NonZeroU32),
}

impl VerifyRooms {
    /// Whether each of `rooms` rooms is verified. A sample takes rooms
    /// `⌊j × rooms / n⌋` for `j` in `0..n`, so it is the same on every run and
    /// spread over the ramp (rooms connect in order); n ≥ rooms means all.
    pub fn pick(self, rooms: u32) -> Vec<bool> {
        match self {
            VerifyRooms::Sample(n) if n.get() < rooms => {
                let n = u64::from(n.get());
                let mut verified = vec![false; rooms as usize];
                for j in 0..n {
                    verified[(j * u64::from(rooms) / n) as usize] = true;
                }
                verified
            }
            _ => vec![true; rooms as usize],
        }
    }
}

impl std::str::FromStr for VerifyRooms {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("all") {
            return Ok(VerifyRooms::All);
        }
        let n: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is neither a number of rooms nor `all`"))?;
        NonZeroU32::new(n).map(VerifyRooms::Sample).ok_or_else(|| {
            "0 rooms verifies nothing, and a run that verifies nothing proves nothing: \
             give at least 1, or `all`"
                .to_owned()
        })
    }
}

impl std::fmt::Display for VerifyRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyRooms::All => f.write_str("all"),
            VerifyRooms::Sample(n) => write!(f, "{n}"),
        }
    }
}

impl BenchConfig {
    /// Every server process watched.
    fn server_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.server_pid
            .into_iter()
            .chain(self.more_server_pids.iter().copied())
    }

    pub const DEFAULT_ROOMS: u32 = 10;
    pub const DEFAULT_CLIENTS: u32 = 10;
    pub const DEFAULT_RATE: f64 = 2.0;
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
    pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
    pub const DEFAULT_RAMP: Duration = Duration::from_secs(2);
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            more_urls: Vec::new(),
            rooms: Self::DEFAULT_ROOMS,
            clients_per_room: Self::DEFAULT_CLIENTS,
            rate: Self::DEFAULT_RATE,
            duration: Self::DEFAULT_DURATION,
            warmup: Self::DEFAULT_WARMUP,
            ramp: Self::DEFAULT_RAMP,
            drain: Self::DEFAULT_DRAIN,
            protocol: Protocol::Json,
            payload: Payload::Full,
            room_prefix: None,
            server_pid: None,
            more_server_pids: Vec::new(),
            show_progress: false,
            seed: None,
            token: None,
            verify_rooms: VerifyRooms::All,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
        }
    }

    fn total_clients(&self) -> usize {
        self.rooms as usize * self.clients_per_room as usize
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid bench settings: {0}")]
    Invalid(String),
    #[error("cannot reach the server at {address}: {reason}")]
    Unreachable { address: String, reason: String },
}

/// Runs the bench and returns its report.
pub async fn run(config: BenchConfig) -> Result<Report, BenchError> {
    run_detailed(config).await.map(|run| run.report)
}

/// A finished run: the report, and what the HTML page plots.
pub struct Run {
    pub report: Report,
    pub detail: RunDetail,
}

/// Runs the bench and returns its report with the run's timeline and distributions.
pub async fn run_detailed(config: BenchConfig) -> Result<Run, BenchError> {
    validate(&config)?;
    let urls: Vec<&str> = std::iter::once(config.url.as_str())
        .chain(config.more_urls.iter().map(String::as_str))
        .collect();
    for url in &urls {
        probe(&socket_address(url)?, config.probe_timeout).await?;
    }
    system::raise_open_file_limit();

    let total = config.total_clients();
    let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
    let prefix = config
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{:08x}", seed as u32));

    // The timeline, relative to one epoch shared by every client.
    let started = Instant::now();
    let ramp_end = started + config.ramp;
    let measure_start = ramp_end + config.warmup;
    let measure_end = measure_start + config.duration;
    let edits_per_client =
        (config.rate * (config.ramp + config.warmup + config.duration).as_secs_f64()).ceil();
    let send_times = SendTimes::new(total, edits_per_client as usize + SEND_TABLE_SLACK);
    let window = Window {
        start_ns: (measure_start - started).as_nanos() as u64,
        end_ns: (measure_end - started).as_nanos() as u64,
    };
    let shared = Arc::new(Shared::new(started, window, send_times));

    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    // Each client task's room, and whether that room is light, in case it has
    // to be aborted.
    let mut tasks = HashMap::with_capacity(total);
    let interval = (config.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / config.rate));
    let mut phases = fastrand::Rng::with_seed(seed);
    let verified = config.verify_rooms.pick(config.rooms);
    let light_rooms: Vec<Option<Arc<LightRoom>>> = verified
        .iter()
        .map(|&verified| (!verified).then(|| Arc::new(LightRoom::new(config.clients_per_room))))
        .collect();
    for index in 0..total {
        let room_index = index / config.clients_per_room as usize;
        let room = format!("{prefix}-{room_index}");
        let client_id = format!(
            "{prefix}-{room_index}-{}",
            index % config.clients_per_room as usize
        );
        // Connections are spread evenly over the ramp and typing starts when the
        // ramp ends, at a random phase so rooms do not type in lockstep. Nobody
        // types before everyone is there: a plain relay has no `sync` to give a
        // late joiner what it missed, and with incremental updates Yjs cannot
        // integrate an editor's later keystrokes without its earlier ones.
        let connect_at = started + config.ramp.mul_f64(index as f64 / total as f64);
        let phase = interval.map_or(Duration::ZERO, |interval| interval.mul_f64(phases.f64()));
        let plan = ClientPlan {
            index,
            room_index,
            member: index % config.clients_per_room as usize,
            url: with_token(
                config.protocol.room_url(
                    urls[(index % config.clients_per_room as usize) % urls.len()],
                    &room,
                    &client_id,
                ),
                config.token.as_deref(),
            ),
            identity: Identity {
                name: format!("bench {index}"),
                color: client::color_for(index),
                client_id,
            },
            connect_at,
            first_edit_at: ramp_end + phase,
            interval,
            stop_editing_at: measure_end,
            protocol: config.protocol,
            payload: config.payload,
            seed,
            light: light_rooms[room_index].clone(),
        };
        let task = clients.spawn(client::run(plan, shared.clone(), stop.clone()));
        tasks.insert(task.id(), (room_index, !verified[room_index]));
    }

    let mut progress = Progress::new(config.show_progress, total);
    let mut timeline = Timeline::new(started);
    let mut server_rss_max = 0u64;
    // CPU times and message counters at the window's edges: the report's CPU
    // use and rates are the differences between them.
    let mut at_start = None;
    let mut at_end = None;
    let mut next_tick = started;
    loop {
        // Wake on the tick, and exactly at the window's edges for their samples.
        next_tick += TICK;
        let mut wake = next_tick;
        if at_start.is_none() {
            wake = wake.min(measure_start);
        }
        if at_end.is_none() {
            wake = wake.min(measure_end);
        }
        tokio::time::sleep_until(wake.into()).await;
        if wake < next_tick {
            next_tick = wake;
        }
        let now = Instant::now();
        if config.server_pid.is_some() {
            let rss: u64 = config
                .server_pids()
                .map(|pid| system::process_rss_bytes(pid).unwrap_or(0))
                .sum();
            server_rss_max = server_rss_max.max(rss);
        }
        if at_start.is_none() && now >= measure_start {
            at_start = Some(EdgeSample::take(&config, &shared.counters));
        }
        if at_end.is_none() && now >= measure_end {
            at_end = Some(EdgeSample::take(&config, &shared.counters));
        }
        let phase = if now < ramp_end {
            "ramp-up"
        } else if now < measure_start {
            "warm-up"
        } else if now < measure_end {
            "measuring"
        } else {
            "draining"
        };
        // Taken once per tick for both the progress line and the timeline.
        let recent = shared.latencies.take_recent();
        timeline.record(now, &recent, &shared.counters);
        progress.show(phase, &shared, &recent);
        if now >= measure_end + SETTLE {
            let counters = &shared.counters;
            let expected = Counters::get(&counters.edits_in_window)
                * u64::from(config.clients_per_room.saturating_sub(1));
            let delivered = Counters::get(&counters.deliveries_in_window);
            // Light rooms: every update frame owed to an editor connected when
            // it was sent.
            let light_expected = Counters::get(&counters.light_updates_owed);
            let light_received = Counters::get(&counters.light_updates_received);
            if (delivered >= expected && light_received >= light_expected)
                || now >= measure_end + config.drain
            {
                break;
            }
        }
    }
    progress.finish();
    stop.cancel();
    let outcomes = join_clients(clients, &tasks, STOP_GRACE).await;

    let measured = at_start.zip(at_end);
    let report = build_report(
        &config,
        &shared,
        &outcomes,
        &verified,
        measured,
        server_rss_max,
    );
    let detail = RunDetail {
        latency_us: shared.latencies.total(),
        connect_us: shared.connect_histogram(),
        timeline: timeline.finish(Instant::now(), &shared.counters),
    };
    Ok(Run { report, detail })
}

/// Every client's outcome once the bench stopped. Clients still running `grace`
/// later are aborted and reported as connected once but not at the end.
async fn join_clients(
    mut clients: JoinSet<ClientOutcome>,
    tasks: &HashMap<tokio::task::Id, (usize, bool)>,
    grace: Duration,
) -> Vec<ClientOutcome> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut outcomes = Vec::with_capacity(clients.len());
    let mut aborted = false;
    loop {
        let joined = if aborted {
            clients.join_next_with_id().await
        } else {
            match tokio::time::timeout_at(deadline, clients.join_next_with_id()).await {
                Ok(joined) => joined,
                Err(_elapsed) => {
                    tracing::warn!(
                        clients = clients.len(),
                        "bench clients still running {grace:?} after the stop; aborting them"
                    );
                    clients.abort_all();
                    aborted = true;
                    continue;
                }
            }
        };
        match joined {
            None => break,
            Some(Ok((_, outcome))) => outcomes.push(outcome),
            Some(Err(error)) if error.is_cancelled() => {
                if let Some(&(room_index, light)) = tasks.get(&error.id()) {
                    outcomes.push(ClientOutcome::abandoned(room_index, light));
                }
            }
            // A client task that died (it should not) never connected as far as
            // the run knows.
            Some(Err(error)) => tracing::error!(%error, "a bench client failed"),
        }
    }
    outcomes
}

/// `url` with `token=TOKEN` added to its query. Room tokens are JWTs: base64url
/// and dots, nothing that needs escaping.
fn with_token(url: String, token: Option<&str>) -> String {
    match token {
        Some(token) if url.contains('?') => format!("{url}&token={token}"),
        Some(token) => format!("{url}?token={token}"),
        None => url,
    }
}

fn validate(config: &BenchConfig) -> Result<(), BenchError> {
    let invalid = |reason: &str| Err(BenchError::Invalid(reason.to_owned()));
    if config.rooms == 0 || config.clients_per_room == 0 {
        return invalid("--rooms and --clients must be at least 1");
    }
    if !config.rate.is_finite() || config.rate < 0.0 {
        return invalid("--rate must be zero or a positive number of edits per second");
    }
    if config.duration.is_zero() {
        return invalid("--duration must be longer than zero");
    }
    // The send-time table holds this many slots per client.
    let edits = config.rate * (config.ramp + config.warmup + config.duration).as_secs_f64();
    if edits * config.total_clients() as f64 > 200_000_000.0 {
        return invalid("rate × clients × run time is above 200 million edits");
    }
    Ok(())
}

/// `host:port` of a `ws://` URL, for the reachability check.
fn socket_address(url: &str) -> Result<String, BenchError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| BenchError::Invalid(format!("--url {url}: {error}")))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => {
            return Err(BenchError::Invalid(
                "wss:// is not supported by the bench; point it at the server's ws:// address"
                    .into(),
            ))
        }
        _ => {
            return Err(BenchError::Invalid(format!(
                "--url {url}: expected ws://HOST:PORT"
            )))
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| BenchError::Invalid(format!("--url {url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Checks that `address` accepts TCP connections, name lookup included, within
/// `timeout`.
async fn probe(address: &str, timeout: Duration) -> Result<(), BenchError> {
    let unreachable = |reason: String| BenchError::Unreachable {
        address: address.to_owned(),
        reason,
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_connection)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_elapsed) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// CPU times and message counters at one edge of the measured window, to take
/// differences over it. Clients fold their counts in every flush interval, so
/// both edges lag by about as much, and the difference is the window's.
#[derive(Debug, Clone, Copy)]
struct EdgeSample {
    at: Instant,
    own: Option<Duration>,
    server: Option<Duration>,
    traffic: Traffic,
}

impl EdgeSample {
    fn take(config: &BenchConfig, counters: &Counters) -> Self {
        let server = config.server_pid.and_then(|_| {
            config
                .server_pids()
                .map(system::process_cpu_time)
                .sum::<Option<Duration>>()
        });
        Self {
            at: Instant::now(),
            own: system::own_cpu_time(),
            server,
            traffic: counters.traffic(),
        }
    }
}

fn cpu_between(start: Option<Duration>, end: Option<Duration>, wall: Duration) -> Option<CpuUse> {
    let seconds = end?.checked_sub(start?)?.as_secs_f64();
    Some(CpuUse {
        seconds,
        cores: seconds / wall.as_secs_f64().max(1e-9),
    })
}

fn build_report(
    config: &BenchConfig,
    shared: &Shared,
    outcomes: &[ClientOutcome],
    verified: &[bool],
    measured: Option<(EdgeSample, EdgeSample)>,
    server_rss_max: u64,
) -> Report {
    let counters = &shared.counters;
    let seconds = config.duration.as_secs_f64();
    // Edits and deliveries are those of verified rooms: light editors do not count them.
    let edits = Counters::get(&counters.edits_in_window);
    let expected = edits * u64::from(config.clients_per_room.saturating_sub(1));
    let deliveries = Counters::get(&counters.deliveries_in_window);
    let missed = expected.saturating_sub(deliveries);
    // 0 of 0 is no evidence of anything: the ratio is absent, and any gate on it
    // fails, rather than 1.0 passing it.
    let delivery_ratio = (expected > 0).then(|| deliveries as f64 / expected as f64);

    // Every verified room's editors that were still connected must hold the same text.
    let mut texts: HashMap<usize, Vec<_>> = HashMap::new();
    for outcome in outcomes {
        if let Some(text) = outcome.text {
            texts.entry(outcome.room_index).or_default().push(text);
        }
    }
    // A room is compared only when at least two of its editors were there at the end.
    let compared: Vec<_> = texts.values().filter(|room| room.len() >= 2).collect();
    let rooms_compared = compared.len() as u32;
    let rooms_diverged = compared
        .iter()
        .filter(|room| room.windows(2).any(|pair| pair[0] != pair[1]))
        .count() as u32;
    // A client task that died (it should not) never connected as far as the run knows.
    let connected = outcomes.iter().filter(|outcome| outcome.connected).count() as u64;
    let never_connected = (config.total_clients() as u64).saturating_sub(connected);
    let lost = outcomes
        .iter()
        .filter(|outcome| outcome.connected && !outcome.connected_at_end)
        .count() as u64;

    let rooms_verified = verified.iter().filter(|&&verified| verified).count() as u32;
    let rooms_light = config.rooms - rooms_verified;
    let light = (rooms_light > 0).then(|| {
        let in_window = Counters::get(&counters.light_updates_in_window);
        LightReport {
            deliveries_in_window: in_window,
            deliveries_per_sec: in_window as f64 / seconds,
            ..light_tally(outcomes)
        }
    });
    // The server's work covers every room: light rooms' deliveries count too.
    let all_deliveries = deliveries + light.as_ref().map_or(0, |light| light.deliveries_in_window);

    let (bench_cpu, server_cpu, traffic_per_second) = match measured {
        Some((start, end)) => {
            let wall = end.at.duration_since(start.at);
            (
                cpu_between(start.own, end.own, wall).unwrap_or_default(),
                cpu_between(start.server, end.server, wall),
                end.traffic.since(start.traffic).per_second(wall),
            )
        }
        // The run loop samples both edges before it ends; nothing to divide.
        None => (CpuUse::default(), None, [0.0; 4]),
    };
    let [messages_sent_per_sec, messages_received_per_sec, bytes_sent_per_sec, bytes_received_per_sec] =
        traffic_per_second;
    let server = config.server_pid.map(|pid| {
        let cpu = server_cpu.unwrap_or_default();
        ServerReport {
            pid,
            cpu_us_per_delivery: if all_deliveries > 0 {
                cpu.seconds * 1e6 / all_deliveries as f64
            } else {
                0.0
            },
            cpu,
            rss_max_bytes: server_rss_max,
        }
    });

    Report {
        url: std::iter::once(config.url.as_str())
            .chain(config.more_urls.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        protocol: config.protocol,
        payload: config.payload,
        rooms: config.rooms,
        clients_per_room: config.clients_per_room,
        rate: config.rate,
        ramp_s: config.ramp.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        duration_s: seconds,
        connections: ConnectionReport {
            attempted: config.total_clients() as u64,
            opened: Counters::get(&counters.connects),
            failed: never_connected,
            lost,
            reconnects: Counters::get(&counters.reconnects),
            greeted: Counters::get(&counters.greeted),
            connect_ms: LatencySummary::from_micros(&shared.connect_histogram()),
            first_error: shared.first_connect_error.get().cloned(),
        },
        latency_ms: LatencySummary::from_micros(&shared.latencies.total()),
        edits,
        expected_deliveries: expected,
        deliveries,
        missed_deliveries: missed,
        delivery_ratio,
        deliveries_per_sec: all_deliveries as f64 / seconds,
        messages_sent_per_sec,
        messages_received_per_sec,
        bytes_sent_per_sec,
        bytes_received_per_sec,
        errors: Counters::get(&counters.errors),
        converged: rooms_compared > 0 && rooms_diverged == 0,
        rooms_compared,
        rooms_diverged,
        rooms_verified,
        rooms_light,
        light,
        bench_cpu,
        server,
    }
}

/// The light rooms' delivery check: each editor connected at the end should have
/// received every update frame the others of its room sent while it was
/// connected. (An editor not connected at the end is a lost connection, a
/// defect of its own.) Counts, not identities: a frame too many can hide one
/// missing, which is why verified rooms exist.
fn light_tally(outcomes: &[ClientOutcome]) -> LightReport {
    let mut rooms: HashMap<usize, Vec<&ClientOutcome>> = HashMap::new();
    for outcome in outcomes {
        if outcome.light.is_some() {
            rooms.entry(outcome.room_index).or_default().push(outcome);
        }
    }
    let mut report = LightReport::default();
    for members in rooms.values() {
        for member in members {
            let Some(tally) = member.light else { continue };
            report.updates_sent += tally.sent;
            if !member.connected_at_end {
                continue;
            }
            let expected = tally.owed;
            report.receivers += 1;
            report.expected_updates += expected;
            report.received_updates += tally.received;
            report.missed_updates += expected.saturating_sub(tally.received);
        }
    }
    report
}

/// The live progress line on stderr (drawn only when stderr is a terminal).
struct Progress {
    bar: ProgressBar,
    total: usize,
    /// When the line was last drawn, with the message counters then.
    last: (Instant, u64, u64),
}

impl Progress {
    fn new(visible: bool, total: usize) -> Self {
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            total,
            last: (Instant::now(), 0, 0),
        }
    }

    fn show(&mut self, phase: &str, shared: &Shared, recent: &hdrhistogram::Histogram<u64>) {
        if self.bar.is_hidden() {
            return;
        }
        let counters = &shared.counters;
        let sent = Counters::get(&counters.messages_sent);
        let received = Counters::get(&counters.messages_received);
        let (then, sent_then, received_then) = self.last;
        let elapsed = then.elapsed().as_secs_f64().max(1e-3);
        let sent_rate = sent.saturating_sub(sent_then) as f64 / elapsed;
        let received_rate = received.saturating_sub(received_then) as f64 / elapsed;
        self.last = (Instant::now(), sent, received);
        let p99 = if recent.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.2} ms", recent.value_at_quantile(0.99) as f64 / 1000.0)
        };
        self.bar.set_message(format!(
            "{phase:<9} | {}/{} open | sent {sent_rate:.0}/s received {received_rate:.0}/s | p99 {p99} | errors {}",
            Counters::get(&counters.open_connections),
            self.total,
            Counters::get(&counters.errors),
        ));
        self.bar.tick();
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_the_address_to_probe() {
        assert_eq!(
            socket_address("ws://127.0.0.1:8001").unwrap(),
            "127.0.0.1:8001"
        );
        assert_eq!(socket_address("ws://localhost").unwrap(), "localhost:80");
        assert_eq!(socket_address("ws://[::1]:9/").unwrap(), "[::1]:9");
        assert!(matches!(
            socket_address("http://x:1"),
            Err(BenchError::Invalid(_))
        ));
        assert!(matches!(
            socket_address("wss://x:1"),
            Err(BenchError::Invalid(_))
        ));
    }

    #[test]
    fn a_sample_of_rooms_is_spread_over_the_run() {
        let sample = |n: u32| VerifyRooms::Sample(NonZeroU32::new(n).unwrap());
        let chosen = |verify: VerifyRooms, rooms: u32| -> Vec<usize> {
            let picked = verify.pick(rooms);
            assert_eq!(picked.len(), rooms as usize);
            (0..picked.len()).filter(|&room| picked[room]).collect()
        };
        assert_eq!(chosen(sample(4), 40), [0, 10, 20, 30]);
        assert_eq!(chosen(sample(1), 3), [0]);
        assert_eq!(chosen(sample(2), 3), [0, 1]);
        assert_eq!(chosen(sample(3), 7), [0, 2, 4]);
        assert_eq!(chosen(sample(3), 3), [0, 1, 2]);
        assert_eq!(
            chosen(sample(9), 3),
            [0, 1, 2],
            "more than there are is all"
        );
        assert_eq!(chosen(VerifyRooms::All, 5), [0, 1, 2, 3, 4]);
        for rooms in 1..50 {
            for n in 1..=rooms {
                assert_eq!(chosen(sample(n), rooms).len(), n as usize);
            }
        }
    }

    #[test]
    fn verify_rooms_reads_a_count_or_all() {
        assert_eq!("all".parse(), Ok(VerifyRooms::All));
        assert_eq!(
            "4".parse(),
            Ok(VerifyRooms::Sample(NonZeroU32::new(4).unwrap()))
        );
        let zero = "0".parse::<VerifyRooms>().unwrap_err();
        assert!(zero.contains("proves nothing"), "{zero}");
        assert!("some".parse::<VerifyRooms>().is_err());
        assert!("-1".parse::<VerifyRooms>().is_err());
        assert_eq!(VerifyRooms::All.to_string(), "all");
        assert_eq!(VerifyRooms::default(), VerifyRooms::All);
    }

    fn outcome(room_index: usize, at_end: bool, sent: u64, received: u64) -> ClientOutcome {
        light_outcome(room_index, at_end, sent, received, received)
    }

    fn light_outcome(
        room_index: usize,
        at_end: bool,
        sent: u64,
        owed: u64,
        received: u64,
    ) -> ClientOutcome {
        ClientOutcome {
            room_index,
            connected: true,
            connected_at_end: at_end,
            text: None,
            light: Some(client::LightTally {
                sent,
                owed,
                received,
            }),
        }
    }

    #[test]
    fn light_receivers_are_owed_what_the_others_sent_while_they_were_there() {
        let tally = light_tally(&[
            // Room 0: three editors, one of them 2 short.
            light_outcome(0, true, 10, 8, 15),
            light_outcome(0, true, 5, 13, 18),
            light_outcome(0, true, 3, 15, 13),
            // Room 1: the second editor left for good, so only the first is
            // checked (the loss is a defect of its own), and a surplus in room 0
            // does not make up for a shortfall here.
            light_outcome(1, true, 4, 7, 6),
            light_outcome(1, false, 7, 4, 0),
        ]);
        assert_eq!(tally.receivers, 4);
        assert_eq!(tally.updates_sent, 29);
        assert_eq!(tally.expected_updates, 8 + 13 + 15 + 7);
        assert_eq!(tally.received_updates, 15 + 18 + 13 + 6);
        assert_eq!(tally.missed_updates, 2 + 1);
        assert_eq!(tally.ratio(), Some(40.0 / 43.0));
    }

    #[tokio::test]
    async fn clients_that_do_not_stop_are_abandoned_and_counted_as_lost() {
        let mut clients = JoinSet::new();
        let mut tasks = HashMap::new();
        let finished = clients.spawn(async { outcome(0, true, 0, 0) });
        tasks.insert(finished.id(), (0, true));
        let stuck = clients.spawn(std::future::pending::<ClientOutcome>());
        tasks.insert(stuck.id(), (1, false));
        let started = Instant::now();
        let outcomes = join_clients(clients, &tasks, Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(outcomes.len(), 2);
        let abandoned = outcomes
            .iter()
            .find(|outcome| outcome.room_index == 1)
            .expect("the stuck client has an outcome");
        assert!(abandoned.connected && !abandoned.connected_at_end);
        assert!(abandoned.light.is_none() && abandoned.text.is_none());
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let mut config = BenchConfig::new("ws://127.0.0.1:1");
        config.clients_per_room = 0;
        assert!(validate(&config).is_err());
        let mut config = BenchConfig::new("ws://127.0.0.1:1");
        config.rate = f64::NAN;
        assert!(validate(&config).is_err());
        assert!(validate(&BenchConfig::new("ws://127.0.0.1:1")).is_ok());
    }
}
