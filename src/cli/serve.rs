//! `coedit serve`: flags and environment variables onto `server::Config`, bind,
//! serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::logging::{self, LogFormat, LogSettings};
use super::store_args::{StoreArgs, STORE};
use super::{exit, Failure};
use crate::server::{self, Config, DurabilityLevel};

// `coedit serve --help` groups its flags under these headings.
const NETWORK: &str = "Network";
const LIMITS: &str = "Limits";
const AUTH: &str = "Access control";
const LOGGING: &str = "Logging";
const CLUSTER: &str = "Cluster";
const WEBHOOKS: &str = "Webhooks";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    // Not plain `HOST`: some shells and CI images export it as the machine's name.
    #[arg(long, env = "COEDIT_HOST", default_value = "0.0.0.0", help_heading = NETWORK)]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8001, help_heading = NETWORK)]
    pub port: u16,

    /// Allowed CORS origins, comma-separated; `*` allows any.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", value_delimiter = ',', help_heading = NETWORK)]
    pub cors_origins: Vec<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// With --mongo-url: start even if MongoDB cannot be reached, serving from
    /// memory until it can (the embedded store must open).
    #[arg(long, env = "COEDIT_START_DEGRADED", value_parser = clap::builder::BoolishValueParser::new(), help_heading = STORE)]
    pub start_degraded: bool,

    /// When an edit is relayed relative to being stored: `write-ahead` relays once
    /// the store has it (survives a crash), `fsync` once it is also on disk
    /// (survives power loss), `relaxed` at once, writing within --commit-interval-ms.
    #[arg(
        long,
        env = "COEDIT_DURABILITY",
        value_enum,
        default_value = "write-ahead",
        help_heading = STORE
    )]
    pub durability: DurabilityLevel,

    /// With --durability relaxed: milliseconds accepted updates are gathered before
    /// one store write (the most a crash can lose). The write-ahead levels need no
    /// window: the next batch gathers while a write is in flight.
    #[arg(long, env = "COEDIT_COMMIT_INTERVAL_MS", default_value_t = Config::DEFAULT_COMMIT_INTERVAL.as_millis() as u64, help_heading = STORE)]
    pub commit_interval_ms: u64,

    /// Updates logged for a room before its log is compacted into one snapshot.
    #[arg(long, env = "COEDIT_COMPACT_EVERY", default_value_t = Config::DEFAULT_COMPACT_EVERY, help_heading = STORE)]
    pub compact_every: u64,

    /// How long every edit stays readable as history (`7d`, `12h`, `30m`; `0` keeps
    /// none): old versions can be listed, read and restored within it.
    #[arg(long, env = "COEDIT_HISTORY_RETENTION", default_value = "7d", value_parser = parse_retention, help_heading = STORE)]
    pub history_retention: std::time::Duration,

    /// Seconds a room with no connections stays in memory before it is unloaded.
    #[arg(long, env = "COEDIT_IDLE_UNLOAD_SECS", default_value_t = Config::DEFAULT_IDLE_UNLOAD.as_secs(), help_heading = STORE)]
    pub idle_unload_secs: u64,

    /// Messages queued for one connection before it is closed as a slow consumer
    /// (with --max-outbound-bytes, whichever comes first).
    #[arg(long, env = "COEDIT_OUTBOUND_QUEUE", default_value_t = Config::DEFAULT_OUTBOUND_QUEUE, help_heading = LIMITS)]
    pub outbound_queue: usize,

    /// Bytes the server may hold for one connection's socket (queued messages,
    /// pongs, close frames); a connection that finds it used up is closed with 1013
    /// as a slow consumer. Keep it above twice the largest document served to JSON
    /// clients (their sync is hex).
    #[arg(long, env = "COEDIT_MAX_OUTBOUND_BYTES", default_value_t = Config::DEFAULT_MAX_OUTBOUND_BYTES, help_heading = LIMITS)]
    pub max_outbound_bytes: usize,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "COEDIT_MAX_MESSAGE_BYTES", default_value_t = Config::DEFAULT_MAX_MESSAGE_BYTES, help_heading = LIMITS)]
    pub max_message_bytes: usize,

    /// Require `Authorization: Bearer TOKEN` on the admin endpoints: room listings,
    /// events, the cluster, and every REST call that reads or changes a room's
    /// document (persist, load, simulate, text, stream, export, import, history,
    /// restore, delete).
    #[arg(long, env = "COEDIT_ADMIN_TOKEN", hide_env_values = true, help_heading = AUTH)]
    pub admin_token: Option<String>,

    /// Require WebSocket clients to present a room token signed with this secret
    /// (mint them with `coedit token`).
    #[arg(long, env = "COEDIT_AUTH_SECRET", hide_env_values = true, help_heading = AUTH)]
    pub auth_secret: Option<String>,

    /// Open WebSocket connections allowed in total; more get HTTP 503.
    #[arg(long, env = "COEDIT_MAX_CONNECTIONS", default_value_t = Config::DEFAULT_MAX_CONNECTIONS, help_heading = LIMITS)]
    pub max_connections: usize,

    /// Open WebSocket connections allowed per room; more get HTTP 503.
    #[arg(long, env = "COEDIT_MAX_CONNECTIONS_PER_ROOM", default_value_t = Config::DEFAULT_MAX_CONNECTIONS_PER_ROOM, help_heading = LIMITS)]
    pub max_connections_per_room: usize,

    /// Largest document a room may grow to, in bytes of its Yjs encoding.
    #[arg(long, env = "COEDIT_MAX_DOCUMENT_BYTES", default_value_t = Config::DEFAULT_MAX_DOCUMENT_BYTES, help_heading = LIMITS)]
    pub max_document_bytes: usize,

    /// Yjs client ids one y-protocol connection may hold awareness states for; more
    /// closes it with 1008.
    #[arg(long, env = "COEDIT_MAX_AWARENESS_IDS", default_value_t = Config::DEFAULT_MAX_AWARENESS_IDS, help_heading = LIMITS)]
    pub max_awareness_ids: usize,

    /// Largest awareness state (y-protocols: closed with 1008) or presence message
    /// (JSON join, cursor, selection, awareness: refused with `error`), in bytes.
    #[arg(long, env = "COEDIT_MAX_AWARENESS_BYTES", default_value_t = Config::DEFAULT_MAX_AWARENESS_BYTES, help_heading = LIMITS)]
    pub max_awareness_bytes: usize,

    /// Users (client ids, simulated ones included) and awareness states one room may
    /// hold; a new client id beyond it gets HTTP 503.
    #[arg(long, env = "COEDIT_MAX_ROOM_USERS", default_value_t = Config::DEFAULT_MAX_ROOM_USERS, help_heading = LIMITS)]
    pub max_room_users: usize,

    /// Seconds an HTTP client may take to send a request's headers before its
    /// connection is closed.
    #[arg(long, env = "COEDIT_HEADER_READ_TIMEOUT_SECS", default_value_t = Config::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64(), help_heading = LIMITS)]
    pub header_read_timeout_secs: f64,

    /// WebSocket upgrades being set up at once (answered, room not yet joined);
    /// more get HTTP 503.
    #[arg(long, env = "COEDIT_MAX_PENDING_UPGRADES", default_value_t = Config::DEFAULT_MAX_PENDING_UPGRADES, help_heading = LIMITS)]
    pub max_pending_upgrades: usize,

    /// Messages per second one connection may send on average (control frames
    /// included).
    #[arg(long, env = "COEDIT_RATE_LIMIT", default_value_t = Config::DEFAULT_RATE_LIMIT_PER_SEC, help_heading = LIMITS)]
    pub rate_limit: u32,

    /// Messages one connection may send in a burst.
    #[arg(long, env = "COEDIT_RATE_BURST", default_value_t = Config::DEFAULT_RATE_LIMIT_BURST, help_heading = LIMITS)]
    pub rate_burst: u32,

    /// Join a cluster through this Redis (`redis://host:6379`): rooms are shared
    /// with every node on the same Redis and MongoDB. Needs --mongo-url.
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true, help_heading = CLUSTER)]
    pub redis_url: Option<String>,

    /// This node's name in logs, metrics and `coedit cluster` [default: host:port]
    #[arg(long, env = "COEDIT_NODE_ID", value_name = "NAME", help_heading = CLUSTER, value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// How often a room's Redis log is moved into MongoDB (`10s`, `1m`; at least
    /// `100ms`). Updates are durable in Redis first; a node that dies holding a
    /// room's move is replaced after three of these (at least 10 s).
    #[arg(long, env = "COEDIT_PERSIST_EVERY", value_name = "DURATION", default_value_t = Config::DEFAULT_PERSIST_EVERY.into(), value_parser = parse_persist_every, help_heading = CLUSTER)]
    pub persist_every: humantime::Duration,
    /// URL to POST signed JSON events to (room loaded or unloaded, document
    /// changed, user joined or left, room deleted); give it again for more URLs.
    #[arg(
        long = "webhook-url",
        env = "COEDIT_WEBHOOK_URLS",
        hide_env_values = true,
        value_name = "URL",
        value_delimiter = ',',
        value_parser = parse_webhook_url,
        help_heading = WEBHOOKS
    )]
    pub webhook_urls: Vec<reqwest::Url>,

    /// Signs every webhook delivery: `X-Coedit-Signature: t=<unix seconds>,v1=<hex
    /// HMAC-SHA256 of "<t>.<body>">`.
    #[arg(long, env = "COEDIT_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET", help_heading = WEBHOOKS)]
    pub webhook_secret: Option<String>,

    /// At most one `document.changed` event per room this often, in milliseconds.
    #[arg(long, env = "COEDIT_WEBHOOK_DEBOUNCE_MS", value_name = "MS", default_value_t = Config::DEFAULT_WEBHOOK_DEBOUNCE.as_millis() as u64, help_heading = WEBHOOKS)]
    pub webhook_debounce_ms: u64,

    /// Do not serve the dashboard at `/` (the REST API and WebSockets are unchanged).
    #[arg(long, env = "COEDIT_NO_DASHBOARD", value_parser = clap::builder::BoolishValueParser::new(), help_heading = NETWORK)]
    pub no_dashboard: bool,

    /// Log filter, e.g. `info` or `coedit=debug`; given here (or in COEDIT_LOG) it
    /// wins over RUST_LOG. Default: RUST_LOG if set, else `info`.
    #[arg(
        long,
        env = "COEDIT_LOG",
        value_name = "FILTER",
        value_parser = logging::parse_filter,
        help_heading = LOGGING
    )]
    pub log_level: Option<String>,

    /// `text` for people (coloured only on a terminal without NO_COLOR), `json` for
    /// log shippers: one object per line.
    #[arg(
        long,
        env = "COEDIT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = LOGGING
    )]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// What the server logs: `info` unless told otherwise.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            explicit: self.log_level.clone(),
            default: "info",
            format: self.log_format,
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::new(self.store.store_config());
        // `a, b` is as good as `a,b`; a stray ` *` must still mean any origin.
        config.cors_origins = self
            .cors_origins
            .iter()
            .map(|origin| origin.trim().to_owned())
            .filter(|origin| !origin.is_empty())
            .collect();
        config.start_degraded = self.start_degraded;
        config.durability = self.durability;
        config.commit_interval = Duration::from_millis(self.commit_interval_ms);
        config.idle_unload = Duration::from_secs(self.idle_unload_secs);
        config.compact_every = self.compact_every.max(1);
        config.history_retention = self.history_retention;
        config.outbound_queue = self.outbound_queue.max(1);
        config.max_outbound_bytes = self.max_outbound_bytes.max(1);
        config.max_awareness_ids = self.max_awareness_ids.max(1);
        config.max_awareness_bytes = self.max_awareness_bytes;
        config.max_room_users = self.max_room_users.max(1);
        config.header_read_timeout = Duration::try_from_secs_f64(self.header_read_timeout_secs)
            .ok()
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(Config::DEFAULT_HEADER_READ_TIMEOUT);
        config.max_pending_upgrades = self.max_pending_upgrades.max(1);
        config.max_message_bytes = self.max_message_bytes;
        config.admin_token = self.admin_token.clone().filter(|token| !token.is_empty());
        config.auth_secret = self.auth_secret.clone().filter(|secret| !secret.is_empty());
        config.max_connections = self.max_connections;
        config.max_connections_per_room = self.max_connections_per_room;
        config.max_document_bytes = self.max_document_bytes;
        config.rate_limit_per_sec = self.rate_limit;
        config.rate_limit_burst = self.rate_burst;
        config.dashboard = !self.no_dashboard;
        config.redis_url = self.redis_url.clone().filter(|url| !url.is_empty());
        config.node_id = self.node_id.clone().filter(|id| !id.is_empty());
        config.persist_every = self.persist_every.into();
        config.webhook_urls = self.webhook_urls.clone();
        config.webhook_secret = self
            .webhook_secret
            .clone()
            .filter(|secret| !secret.is_empty());
        config.webhook_debounce = Duration::from_millis(self.webhook_debounce_ms);
        config
    }

    pub async fn run(self) -> Result<(), Failure> {
        let config = self.config();
        let address = format!("{}:{}", self.host, self.port);
        let address: SocketAddr = match tokio::net::lookup_host(&address).await {
            Ok(mut addresses) => addresses.next().ok_or_else(|| {
                Failure::new(
                    exit::USAGE,
                    format!("listen address {address} names no address"),
                )
            })?,
            // A name that does not resolve (yet: DNS not up at boot) is not a typo.
            Err(error) => {
                return Err(Failure::new(
                    exit::FAILED,
                    format!("cannot resolve listen address {address}: {error}"),
                ))
            }
        };
        let listener = TcpListener::bind(address).await.map_err(|error| {
            Failure::new(exit::FAILED, format!("cannot listen on {address}: {error}"))
        })?;

        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        server::run(listener, config, shutdown)
            .await
            .map_err(|error| Failure::new(exit::FAILED, error.to_string()))
    }
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM. A second one ends the process
/// at once (exit 130), for an operator who will not wait out the graceful stop:
/// what the store has not taken by then is left to the journal's replay.
async fn cancel_on_signal(shutdown: CancellationToken) {
    stop_signal().await;
    tracing::info!("shutting down (a second signal stops at once)");
    shutdown.cancel();
    stop_signal().await;
    tracing::warn!("second signal: stopping now, without waiting for the graceful stop");
    std::process::exit(130);
}

/// The next SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `--webhook-url`: an http or https URL.
fn parse_webhook_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|error| error.to_string())?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

/// `--persist-every`: a duration of at least 100 ms.
fn parse_persist_every(raw: &str) -> Result<humantime::Duration, String> {
    let every = humantime::parse_duration(raw.trim()).map_err(|error| error.to_string())?;
    if every < std::time::Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(every.into())
}

/// `--history-retention`: a duration, or `0` / `off` for none.
fn parse_retention(raw: &str) -> Result<std::time::Duration, String> {
    match raw.trim() {
        "0" | "off" | "none" => Ok(std::time::Duration::ZERO),
        other => humantime::parse_duration(other).map_err(|error| error.to_string()),
    }
}

/// A node's name goes into Prometheus label values and Redis keys as it is: no
/// quotes, backslashes or control characters, at most 128 bytes.
fn parse_node_id(raw: &str) -> Result<String, String> {
    if raw.len() > 128 {
        return Err("at most 128 bytes".into());
    }
    if raw.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err("no quotes, backslashes or control characters".into());
    }
    Ok(raw.to_owned())
}
