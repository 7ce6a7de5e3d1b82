//! Server configuration: one struct with named defaults. `coedit serve`'s flags and
//! environment variables map onto it; tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

/// Where documents are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite files under this directory (the default).
    Embedded { data_dir: PathBuf },
    /// MongoDB at `url`, database `database`.
    Mongo { url: String, database: String },
    /// Nothing outlives the process; for tests only.
    Memory,
}

/// When an accepted update counts as safe, and so when other clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityLevel {
    /// Relay at once and write within `commit_interval`: a crash can lose the last
    /// window of edits, including ones other clients already saw.
    Relaxed,
    /// Relay once the store has the update (SQLite: committed to its write-ahead log
    /// in the OS; MongoDB: insert acknowledged): whatever anyone saw survives a
    /// crash of the server.
    WriteAhead,
    /// As `write-ahead`, and the store syncs to disk before acknowledging (SQLite
    /// `synchronous=FULL`, MongoDB journaled writes): survives power loss too.
    Fsync,
}

impl DurabilityLevel {
    /// Whether rooms hold messages until the store has what they show.
    pub fn write_ahead(self) -> bool {
        !matches!(self, DurabilityLevel::Relaxed)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    /// Allowed CORS origins; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// Messages a connection may have queued before it counts as a slow consumer and
    /// is closed. Large enough to ride out a GC pause or a slow network burst.
    pub outbound_queue: usize,
    /// Bytes the server may hold for one connection's socket — queued messages,
    /// encoded frames, pongs, close frames. A message or control frame that finds
    /// the budget used up closes the connection as a slow consumer, so one
    /// connection holds less than the budget plus one message.
    pub max_outbound_bytes: usize,
    /// Yjs client ids one y-protocol connection may hold awareness states for.
    pub max_awareness_ids: usize,
    /// Largest awareness state (y-protocols) or presence message (JSON `join`,
    /// `cursor`, `selection`, `awareness`) accepted, in bytes.
    pub max_awareness_bytes: usize,
    /// Users (client ids, simulated ones included) and awareness states one room
    /// may hold.
    pub max_room_users: usize,
    /// How long an HTTP client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// WebSocket upgrades being set up at once (handshake answered, room not yet
    /// joined); more get 503.
    pub max_pending_upgrades: usize,
    /// This server's name in logs, metrics, cluster listings and the store's writer
    /// lease; `host:port` when not set.
    pub node_id: Option<String>,
    /// Redis of the cluster this node joins (`--redis-url`); `None` serves alone.
    pub redis_url: Option<String>,
    /// When an accepted update is relayed relative to being written.
    pub durability: DurabilityLevel,
    /// With `DurabilityLevel::Relaxed` only: how long the journal gathers accepted
    /// updates before writing them in one store transaction (the most a `kill -9`
    /// can lose). Write-ahead levels write as soon as the previous write returns.
    pub commit_interval: Duration,
    /// Log entries after which a room's log is compacted into its snapshot.
    pub compact_every: u64,
    /// How long the log and snapshots are kept as readable history; zero keeps
    /// only what rebuilding the room needs.
    pub history_retention: Duration,
    /// In a cluster: how often the node holding a room's persister lease moves the
    /// room's Redis log into MongoDB.
    pub persist_every: Duration,
    /// A room with no connections is unloaded from memory after this long.
    pub idle_unload: Duration,
    /// WebSocket ping interval; a peer silent for three intervals is dropped.
    pub ping_interval: Duration,
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// A client id seen again in a room within this window counts as a reconnect.
    pub reconnect_window: Duration,
    /// Largest `count` accepted by the simulate endpoint.
    pub max_simulated_per_request: u32,
    /// Start even when the store cannot be reached, serving from memory.
    pub start_degraded: bool,
    /// When set, admin and mutating REST endpoints require `Bearer <token>`.
    pub admin_token: Option<String>,
    /// When set, WebSocket clients must present a room token signed with it.
    pub auth_secret: Option<String>,
    /// Open WebSocket connections allowed in total; more are refused with 503.
    pub max_connections: usize,
    /// Open WebSocket connections allowed per room; more are refused with 503.
    pub max_connections_per_room: usize,
    /// Largest document a room may grow to (bytes of its Yjs encoding).
    pub max_document_bytes: usize,
    /// Messages per second a connection may send on average…
    pub rate_limit_per_sec: u32,
    /// …and in a burst.
    pub rate_limit_burst: u32,
    /// Serve the dashboard at `/`.
    pub dashboard: bool,
    /// URLs that receive signed webhook events (none: webhooks are off).
    pub webhook_urls: Vec<reqwest::Url>,
    /// Signs webhook deliveries (HMAC-SHA256) when set.
    pub webhook_secret: Option<String>,
    /// At most one `document.changed` per room this often.
    pub webhook_debounce: Duration,
}

impl Config {
    pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
    /// 4 MiB: hundreds of typical relayed messages, and what 1,000 stalled readers
    /// may cost at most is 4 GiB, which the connection caps bring down further.
    pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 4 * 1024 * 1024;
    /// An editor's provider holds one id; a page with a few documents a few.
    pub const DEFAULT_MAX_AWARENESS_IDS: usize = 16;
    /// 32 KiB: a name, a colour and a cursor are a few hundred bytes.
    pub const DEFAULT_MAX_AWARENESS_BYTES: usize = 32 * 1024;
    pub const DEFAULT_MAX_ROOM_USERS: usize = 1_000;
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_PENDING_UPGRADES: usize = 512;
    pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(10);
    pub const DEFAULT_COMPACT_EVERY: u64 = 500;
    /// A week: long enough to notice on Monday what went wrong on Friday, short
    /// enough that a busy room's history stays a small multiple of its document.
    pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(300);
    /// Updates are durable in Redis (its append-only file) before anyone sees them;
    /// MongoDB is the long-term copy, so moving them there need not be prompt. Each
    /// move costs a lease call, a read, a MongoDB write and a trim per room, which
    /// once a second was a tenth of a busy node's CPU (BENCHMARKS.md).
    pub const DEFAULT_PERSIST_EVERY: Duration = Duration::from_secs(10);
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
    /// 8 MiB: far above any text document's update, far below what hurts memory.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
    pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_SIMULATED: u32 = 1000;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
    pub const DEFAULT_MAX_CONNECTIONS_PER_ROOM: usize = 1_000;
    /// 64 MiB: a very long text document with its history is a few MiB.
    pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;
    /// Fast typing in the original page is ~20 keys/s, two messages each.
    pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 100;
    pub const DEFAULT_RATE_LIMIT_BURST: u32 = 300;
    /// Two seconds: a search index or a notifier hears of a typing burst once,
    /// soon after it starts, not per keystroke.
    pub const DEFAULT_WEBHOOK_DEBOUNCE: Duration = Duration::from_secs(2);

    pub fn new(store: StoreConfig) -> Self {
        Self {
            store,
            cors_origins: vec!["*".into()],
            outbound_queue: Self::DEFAULT_OUTBOUND_QUEUE,
            node_id: None,
            redis_url: None,
            durability: DurabilityLevel::WriteAhead,
            max_outbound_bytes: Self::DEFAULT_MAX_OUTBOUND_BYTES,
            max_awareness_ids: Self::DEFAULT_MAX_AWARENESS_IDS,
            max_awareness_bytes: Self::DEFAULT_MAX_AWARENESS_BYTES,
            max_room_users: Self::DEFAULT_MAX_ROOM_USERS,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_pending_upgrades: Self::DEFAULT_MAX_PENDING_UPGRADES,
            commit_interval: Self::DEFAULT_COMMIT_INTERVAL,
            compact_every: Self::DEFAULT_COMPACT_EVERY,
            history_retention: Self::DEFAULT_HISTORY_RETENTION,
            persist_every: Self::DEFAULT_PERSIST_EVERY,
            idle_unload: Self::DEFAULT_IDLE_UNLOAD,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            reconnect_window: Self::DEFAULT_RECONNECT_WINDOW,
            max_simulated_per_request: Self::DEFAULT_MAX_SIMULATED,
            start_degraded: false,
            admin_token: None,
            auth_secret: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_room: Self::DEFAULT_MAX_CONNECTIONS_PER_ROOM,
            max_document_bytes: Self::DEFAULT_MAX_DOCUMENT_BYTES,
            rate_limit_per_sec: Self::DEFAULT_RATE_LIMIT_PER_SEC,
            rate_limit_burst: Self::DEFAULT_RATE_LIMIT_BURST,
            dashboard: true,
            webhook_urls: Vec::new(),
            webhook_secret: None,
            webhook_debounce: Self::DEFAULT_WEBHOOK_DEBOUNCE,
        }
    }

    /// How the journal paces its writes at this durability level.
    pub fn journal_pace(&self) -> crate::server::journal::Pace {
        use crate::server::journal::Pace;
        if self.durability.write_ahead() {
            Pace::Natural
        } else {
            Pace::Window(self.commit_interval)
        }
    }

    /// A configuration for tests: in-memory store, everything else default.
    pub fn for_tests() -> Self {
        Self::new(StoreConfig::Memory)
    }
}
