//! Server configuration: one struct with named defaults. `coedit serve`'s flags and
//! environment variables map onto it; tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

/// Where documents are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite file under this directory (the default).
    Embedded { data_dir: PathBuf },
    /// MongoDB at `url`, database `database`.
    Mongo { url: String, database: String },
    /// Nothing outlives the process; for tests only.
    Memory,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    /// Allowed CORS origins; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// Messages a connection may have queued before it counts as a slow consumer and
    /// is closed. Large enough to ride out a GC pause or a slow network burst.
    pub outbound_queue: usize,
    /// How long the journal gathers accepted updates before writing them in one
    /// store transaction (group commit): the most a `kill -9` can lose.
    pub commit_interval: Duration,
    /// Log entries after which a room's log is compacted into its snapshot.
    pub compact_every: u64,
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
}

impl Config {
    pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
    pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(10);
    pub const DEFAULT_COMPACT_EVERY: u64 = 500;
    pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(300);
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
    /// 8 MiB: far above any text document's update, far below what hurts memory.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
    pub const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_SIMULATED: u32 = 1000;

    pub fn new(store: StoreConfig) -> Self {
        Self {
            store,
            cors_origins: vec!["*".into()],
            outbound_queue: Self::DEFAULT_OUTBOUND_QUEUE,
            commit_interval: Self::DEFAULT_COMMIT_INTERVAL,
            compact_every: Self::DEFAULT_COMPACT_EVERY,
            idle_unload: Self::DEFAULT_IDLE_UNLOAD,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            reconnect_window: Self::DEFAULT_RECONNECT_WINDOW,
            max_simulated_per_request: Self::DEFAULT_MAX_SIMULATED,
            start_degraded: false,
        }
    }

    /// A configuration for tests: in-memory store, everything else default.
    pub fn for_tests() -> Self {
        Self::new(StoreConfig::Memory)
    }
}
