//! `coedit serve`: the collaboration server.
//!
//! `run` takes a bound listener, a configuration and a shutdown token, so the binary
//! and the tests start it the same way. It owns the accept loop (HTTP/1 with a
//! header read timeout), the background tasks (journal, idle-room sweeper,
//! metrics-history sampler) and every connection task, and on shutdown closes
//! sockets with 1001, waits for them, and writes everything still queued to the
//! store.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod content;
pub mod dashboard;
pub mod direct;
pub mod document;
pub mod framing;
pub mod history;
pub mod idle_io;
pub mod journal;
pub mod known;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod rest;
pub mod room;
pub mod routes;
pub mod store;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, DurabilityLevel, StoreConfig};
use journal::Journal;
use limits::ConnectionCaps;
use metrics::Metrics;
use registry::Registry;
use store::lease::{LeaseError, WriterLease};
use store::{memory::MemoryStore, mongo::MongoStore, sqlite::SqliteStore, Store, StoreError};

/// How long shutdown waits for connections to close, then for the store to take the
/// last writes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The whole stop, every stage's wait included: inside the 30 s a supervisor such
/// as Kubernetes gives by default before SIGKILL, which would cut a flush short.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(25);
/// What the last stages get even when the budget is spent.
const SHUTDOWN_MOMENT: Duration = Duration::from_secs(1);
/// How often idle rooms are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down; each connection's token is a child.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// WebSocket connections open or opening, against the connection caps.
    pub caps: Arc<ConnectionCaps>,
    /// Upgrades between their accepted handshake and joining the room.
    pub upgrades: Arc<Semaphore>,
    /// The cluster this node belongs to, if any.
    pub cluster: Option<cluster::Cluster>,
}

impl AppState {
    pub fn new(
        config: Config,
        registry: Registry,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            caps: ConnectionCaps::new(config.max_connections, config.max_connections_per_room),
            upgrades: Arc::new(Semaphore::new(config.max_pending_upgrades.max(1))),
            config: Arc::new(config),
            registry,
            metrics,
            shutdown,
            tracker: TaskTracker::new(),
            cluster: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// MongoDB did not answer at start-up (and `start_degraded` was not set).
    #[error("{0}")]
    StoreUnreachable(String),
    /// Another server writes the same store.
    #[error("{0}")]
    StoreInUse(String),
    /// A cluster node cannot start as configured.
    #[error("{0}")]
    Cluster(String),
    /// Stopped with updates the store never took: lost, unless the journal (the
    /// embedded store's, or Redis for a cluster) replays them at the next start.
    #[error(
        "stopped before the store took every update ({0} still queued); what it did not \
         take is lost unless its journal replays it at the next start"
    )]
    Unwritten(u64),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured store. An unreachable MongoDB fails here unless
/// `start_degraded` is set.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match open_store_reporting(config).await {
        Ok(opened) => Ok(opened.store),
        Err(ServeError::Store(error)) => Err(error),
        Err(other) => Err(StoreError::Unavailable(other.to_string())),
    }
}

/// A store held the way a running server holds it (the data directory's lock, or
/// MongoDB's writer lease), for tools that work on a store no server may use at
/// the same time (`coedit dump`, `coedit restore-dump`).
pub struct HeldStore {
    pub store: Arc<dyn Store>,
    _lock: Option<store::sqlite::DataDirLock>,
    lease: Option<WriterLease>,
}

impl HeldStore {
    /// Opens the configured store and takes it as `coedit serve` would: fails with
    /// `ServeError::StoreInUse` while a server (or another tool) holds it, and
    /// with `StoreUnreachable` when MongoDB does not answer. `config.node_id`
    /// names the holder in the lease.
    pub async fn open(config: &Config) -> Result<Self, ServeError> {
        let mut config = config.clone();
        config.start_degraded = false;
        let opened = open_store_reporting(&config)
            .await
            .map_err(|error| match error {
                ServeError::StoreUnreachable(reason) => ServeError::StoreUnreachable(
                    reason
                        .strip_suffix(START_DEGRADED_HINT)
                        .unwrap_or(&reason)
                        .to_owned(),
                ),
                other => other,
            })?;
        Ok(Self {
            store: opened.store,
            _lock: opened._lock,
            lease: opened.lease,
        })
    }

    /// Lets go of the store, writing what it buffers. The lease goes first, while
    /// the store's connection is still open to delete it (a lease left behind
    /// would keep the next server or tool waiting for it to expire).
    pub async fn release(self) -> Result<(), StoreError> {
        if let Some(lease) = self.lease {
            lease.release().await;
        }
        self.store.close().await
    }
}

/// What an unreachable MongoDB's start-up error suggests to `coedit serve`.
const START_DEGRADED_HINT: &str = " (use --start-degraded to start anyway)";

/// A store just opened, and why it could not be reached when the server was told to
/// start anyway.
struct OpenedStore {
    store: Arc<dyn Store>,
    /// The embedded store's directory lock, held while serving.
    _lock: Option<store::sqlite::DataDirLock>,
    /// MongoDB's writer lease, held while serving.
    lease: Option<WriterLease>,
    /// Started degraded on MongoDB: the lease is taken once MongoDB answers, and
    /// nothing is written before (`take_lease_when_back`).
    waiting_lease: Option<tokio::task::JoinHandle<Option<WriterLease>>>,
    /// Why the store could not be reached, shown in health until it can.
    unreachable: Option<String>,
}

/// Who holds MongoDB's writer lease for this server: the nodes of a cluster share
/// the database and take turns per room (through Redis), so they hold it together
/// under one name, and a lone server started on the same database is still
/// refused.
fn lease_holder(config: &Config) -> (String, bool) {
    match &config.redis_url {
        Some(_) => (CLUSTER_LEASE_HOLDER.to_owned(), true),
        None => (config.node_id.clone().unwrap_or_default(), false),
    }
}

/// Takes the writer lease of a server started degraded, once MongoDB answers, and
/// only then lets the store write. Another server holding it keeps this one from
/// ever writing: its rooms' writes wait, and health says why.
async fn take_lease_when_back(
    store: Arc<MongoStore>,
    node_id: String,
    shared: bool,
) -> Option<WriterLease> {
    loop {
        if store.prepare().await.is_ok() {
            match WriterLease::acquire(store.database(), &node_id, shared).await {
                Ok(lease) => {
                    lease.on_lost(hold_writes_on(&store));
                    store.release_writes();
                    tracing::info!(
                        "store: MongoDB is back and this server holds its writer lease; writing"
                    );
                    return Some(lease);
                }
                Err(LeaseError::InUse(reason)) => {
                    tracing::error!("{reason}; this server writes nothing to it");
                    store.hold_writes(&reason);
                    return None;
                }
                Err(LeaseError::Store(error)) => {
                    tracing::debug!(%error, "cannot take the store's writer lease yet");
                }
            }
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// What losing the writer lease does to `store`: it takes no more writes (its
/// rooms hold their messages, and health says why).
fn hold_writes_on(store: &Arc<MongoStore>) -> store::lease::OnLost {
    let store = Arc::downgrade(store);
    Arc::new(move |reason: &str| {
        if let Some(store) = store.upgrade() {
            store.hold_writes(reason);
        }
    })
}

/// How often a server started degraded tries MongoDB for its writer lease.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// Gives up the writer lease, held or still being waited for.
async fn release_lease(
    lease: Option<WriterLease>,
    waiting: Option<tokio::task::JoinHandle<Option<WriterLease>>>,
) {
    let taken = match waiting {
        Some(waiting) if waiting.is_finished() => waiting.await.ok().flatten(),
        Some(waiting) => {
            waiting.abort();
            None
        }
        None => None,
    };
    for lease in lease.into_iter().chain(taken) {
        lease.release().await;
    }
}

async fn open_store_reporting(config: &Config) -> Result<OpenedStore, ServeError> {
    // One line says which store and where, first thing: a MONGO_URL inherited from
    // the environment or a `.env` switches stores without any flag on the command.
    let fsync = config.durability == DurabilityLevel::Fsync;
    let mut lock = None;
    let mut lease = None;
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Embedded { data_dir } => {
            lock = Some(store::sqlite::DataDirLock::acquire(data_dir)?);
            let store = SqliteStore::open_with(data_dir, fsync)?;
            let path = std::path::absolute(store.path()).unwrap_or_else(|_| store.path().into());
            tracing::info!(store = "sqlite", path = %path.display(), "store: SQLite file {}", path.display());
            Arc::new(store)
        }
        StoreConfig::Memory => {
            tracing::info!(
                store = "memory",
                "store: memory only, nothing is kept after exit"
            );
            Arc::new(MemoryStore::new())
        }
        StoreConfig::Mongo { url, database } => {
            let mut store = MongoStore::connect(url, database).await?;
            if fsync {
                store.journal_writes();
            }
            // Host names only: the URL's credentials never reach the log.
            tracing::info!(
                store = "mongodb",
                hosts = store.hosts(),
                database = %database,
                "store: MongoDB at {}, database {database}",
                store.hosts()
            );
            if let Err(error) = store.prepare().await {
                let reason = match &error {
                    StoreError::Unavailable(reason)
                    | StoreError::Corrupt(reason)
                    | StoreError::Rejected(reason) => reason,
                };
                let problem = format!("cannot reach MongoDB at {}: {reason}", store.hosts());
                if !config.start_degraded {
                    close_unused(&store).await;
                    return Err(ServeError::StoreUnreachable(format!(
                        "{problem}{START_DEGRADED_HINT}"
                    )));
                }
                tracing::warn!("{problem}; serving from memory until it is back");
                // Two servers writing one database would number the same rooms'
                // updates twice: nothing is written before the lease is held.
                store.hold_writes("waiting to take the MongoDB database's writer lease");
                let store = Arc::new(store);
                let (node_id, shared) = lease_holder(config);
                let waiting = tokio::spawn(take_lease_when_back(store.clone(), node_id, shared));
                return Ok(OpenedStore {
                    store,
                    _lock: None,
                    lease: None,
                    waiting_lease: Some(waiting),
                    unreachable: Some(problem),
                });
            }
            let (node_id, shared) = lease_holder(config);
            match WriterLease::acquire(store.database(), &node_id, shared).await {
                Ok(held) => lease = Some(held),
                Err(error) => {
                    close_unused(&store).await;
                    return Err(match error {
                        LeaseError::InUse(reason) => ServeError::StoreInUse(reason),
                        LeaseError::Store(error) => ServeError::Store(error),
                    });
                }
            }
            let store = Arc::new(store);
            if let Some(lease) = &lease {
                lease.on_lost(hold_writes_on(&store));
            }
            store
        }
    };
    Ok(OpenedStore {
        store,
        _lock: lock,
        lease,
        waiting_lease: None,
        unreachable: None,
    })
}

/// Closes a store that will not be used after all. Dropped open, MongoDB's driver
/// tasks outlive it and can panic as the runtime shuts down, which would print a
/// backtrace under the one-line refusal.
async fn close_unused(store: &dyn Store) {
    if let Err(error) = store.close().await {
        tracing::debug!(%error, "store close failed");
    }
}

/// The writer-lease holder name every node of a cluster uses.
const CLUSTER_LEASE_HOLDER: &str = "cluster";

/// Serves until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(
    listener: TcpListener,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if config.node_id.is_none() {
        config.node_id = Some(default_node_id(&listener)?);
    }
    if config.redis_url.is_some() && !matches!(config.store, StoreConfig::Mongo { .. }) {
        return Err(ServeError::Cluster(
            "a cluster needs a store every node shares: give --mongo-url (MONGO_URL) with --redis-url"
                .into(),
        ));
    }
    let opened = open_store_reporting(&config).await?;
    serve(listener, config, opened, shutdown).await
}

/// `run` with a store the caller opened (tests use this to share one).
pub async fn run_with_store(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let opened = OpenedStore {
        store,
        _lock: None,
        lease: None,
        waiting_lease: None,
        unreachable: None,
    };
    serve(listener, config, opened, shutdown).await
}

async fn serve(
    listener: TcpListener,
    mut config: Config,
    opened: OpenedStore,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if matches!(config.store, StoreConfig::Mongo { .. })
        && config.max_document_bytes > store::mongo::MAX_DOCUMENT_BYTES
    {
        // A warning only for a limit someone chose: the default is the embedded
        // store's, and every server on MongoDB would otherwise warn at each start.
        if config.max_document_bytes == Config::DEFAULT_MAX_DOCUMENT_BYTES {
            tracing::info!(
                "documents are limited to {} bytes on MongoDB (its 16 MiB document limit)",
                store::mongo::MAX_DOCUMENT_BYTES
            );
        } else {
            tracing::warn!(
                "documents are limited to {} bytes on MongoDB (its 16 MiB document limit), not the {} of --max-document-bytes",
                store::mongo::MAX_DOCUMENT_BYTES,
                config.max_document_bytes
            );
        }
        config.max_document_bytes = store::mongo::MAX_DOCUMENT_BYTES;
    }
    let OpenedStore {
        store,
        _lock,
        lease,
        waiting_lease,
        unreachable,
    } = opened;
    let metrics = Metrics::new();
    let cluster = match &config.redis_url {
        Some(url) => Some(
            match cluster::Cluster::connect(
                cluster::ClusterSettings {
                    redis_url: url.clone(),
                    node_id: config.node_id.clone().unwrap_or_default(),
                    address: listener.local_addr()?.to_string(),
                    compact_every: config.compact_every.max(1),
                    history_retention: config.history_retention,
                    persist_every: config.persist_every,
                    fsync: config.durability == DurabilityLevel::Fsync,
                },
                store.clone(),
            )
            .await
            {
                Ok(cluster) => cluster,
                Err(error) => {
                    release_lease(lease, waiting_lease).await;
                    close_unused(store.as_ref()).await;
                    return Err(ServeError::Cluster(error.to_string()));
                }
            },
        ),
        None => None,
    };
    // A cluster node's journal writes updates to the shared log in Redis.
    let store = match &cluster {
        Some(cluster) => cluster.store(),
        None => store,
    };
    let (journal, journal_task) = Journal::start(store.clone(), config.journal_pace());
    if let Some(problem) = unreachable {
        journal.report_failure(&problem);
    }
    let recovery = tokio::spawn(journal::watch_recovery(
        journal.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let registry = Registry::new(store.clone(), journal, metrics.clone(), &config);
    let cluster_shutdown = CancellationToken::new();
    let cluster_tasks = cluster.as_ref().map(|cluster| {
        registry.set_peers(Arc::new(cluster.clone()));
        cluster.start(registry.clone(), cluster_shutdown.clone())
    });
    let webhooks = webhooks::Webhooks::start(&config, &shutdown).map(|(webhooks, tasks)| {
        registry.attach_webhooks(webhooks);
        tasks
    });
    let header_read_timeout = config.header_read_timeout;
    let mut app = AppState::new(config, registry.clone(), metrics, shutdown.clone());
    app.cluster = cluster;
    let tracker = app.tracker.clone();

    let sampler = tokio::spawn(history::run_sampler(
        app.metrics.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let sweeper = tokio::spawn(sweep_idle_rooms(
        registry.clone(),
        app.config.idle_unload,
        shutdown.clone(),
    ));
    let router = routes::router(app);
    tracing::info!(address = %listener.local_addr()?, store = store.backend(), "coedit serving");
    accept_loop(listener, router, header_read_timeout, &shutdown).await;

    // Each stage waits at most its own grace and what is left of the budget; the
    // journal's last wait and the store's close get a moment whatever is left.
    let stop_by = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
    let left =
        |most: Duration| most.min(stop_by.saturating_duration_since(tokio::time::Instant::now()));
    // Connection tasks saw the same token and are sending their 1001 close frames.
    tracker.close();
    if tokio::time::timeout(left(SHUTDOWN_GRACE), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    let _ = sweeper.await;
    let _ = sampler.await;
    if let Some(webhooks) = webhooks {
        if tokio::time::timeout(left(SHUTDOWN_GRACE), webhooks.finish())
            .await
            .is_err()
        {
            tracing::warn!("webhooks: deliveries still queued at shutdown were dropped");
        }
    }
    let _ = recovery.await;
    let mut written = registry
        .journal()
        .flush_for_shutdown(left(SHUTDOWN_GRACE))
        .await;
    if let Some(tasks) = cluster_tasks {
        // After the journal: what it wrote to the shared log is persisted, and the
        // node leaves the cluster.
        cluster_shutdown.cancel();
        if tokio::time::timeout(left(SHUTDOWN_GRACE), tasks.finish())
            .await
            .is_err()
        {
            tracing::warn!("cluster: could not persist and leave in time; the others take over");
        }
    }
    // Read before the registry goes: the journal stops once nothing holds it.
    let unwritten = registry.journal().backlog();
    drop(registry);
    // A journal that could not flush in the grace period will not now.
    let finish_within = if written {
        left(SHUTDOWN_GRACE).max(SHUTDOWN_MOMENT)
    } else {
        SHUTDOWN_MOMENT
    };
    if !journal_task.finish(finish_within).await {
        tracing::error!("store did not take the last writes before the deadline");
        written = false;
    }
    let closing = async {
        release_lease(lease, waiting_lease).await;
        store.close().await
    };
    match tokio::time::timeout(left(SHUTDOWN_GRACE).max(SHUTDOWN_MOMENT), closing).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "store close failed"),
        Err(_) => tracing::warn!("store did not close in time; its lease is left to expire"),
    }
    tracing::info!("coedit stopped");
    // A supervisor must see that the stop lost something.
    if !written {
        return Err(ServeError::Unwritten(unwritten));
    }
    Ok(())
}

/// `host:port`: unique among live servers, since only one process can listen on a
/// port of a host, and the same again when a server restarts in its place.
fn default_node_id(listener: &TcpListener) -> Result<String, ServeError> {
    let port = listener.local_addr()?.port();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    Ok(format!("{host}:{port}"))
}

/// Accepts HTTP/1 connections until `shutdown`, then lets the requests in flight
/// finish. A client gets `header_read_timeout` to send a request's headers, so
/// connections that trickle bytes (slowloris) are closed rather than held. HTTP/2
/// is not offered: browsers speak it only over TLS, which a proxy in front of
/// coedit terminates.
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    shutdown: &CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // HTTP connections until they end or are upgraded (WebSocket connections then
    // belong to `AppState::tracker`).
    let requests = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of file descriptors, mostly: wait for some to be freed rather
                // than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Editor messages are small and latency-bound: without TCP_NODELAY, Nagle
        // holds back each frame written while an earlier one is unacknowledged, and
        // the peer's delayed ACK turns that into ~40 ms stalls (BENCHMARKS.md).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        requests.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    requests.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, requests.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish in time");
    }
}

async fn sweep_idle_rooms(registry: Registry, idle: Duration, shutdown: CancellationToken) {
    let mut interval =
        tokio::time::interval(SWEEP_INTERVAL.min(idle.max(Duration::from_millis(50))));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let unloaded = registry.unload_idle(idle);
                if unloaded > 0 {
                    tracing::debug!(unloaded, "idle rooms unloaded");
                }
            }
        }
    }
}
