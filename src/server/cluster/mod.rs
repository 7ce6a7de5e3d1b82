//! Several coedit nodes serving the same rooms, through Redis (`--redis-url`) and a
//! shared MongoDB store. The design, after y-redis (docs/cluster.md has the whole
//! argument and the failure analysis):
//!
//! - `log`: every accepted update is appended to its room's Redis stream before any
//!   client on any node sees it (the journal writes there instead of the store, so
//!   write-ahead relay holds across nodes). Redis numbers the room's updates.
//! - `reader`: each node merges what other nodes appended to the rooms it holds,
//!   pushed with each append over pub/sub and read from the streams when a push was
//!   missed; it relays what is new to its own clients.
//! - `persist`: the node holding a room's lease moves its stream into MongoDB, in
//!   order, idempotently (by sequence number), then trims what MongoDB has.
//! - `events`: presence, cursors and awareness go over Redis pub/sub; who is in
//!   which room is also kept in a hash per room, for late joiners and REST.
//! - `nodes`: heartbeats, the list of live nodes, and the clean-up after a node
//!   that stopped beating.
//!
//! Keys carry the room id as a hash tag (`coedit:{room}:…`), so a Redis Cluster
//! keeps each room's keys on one shard; the node list is tagged `{nodes}`.

mod events;
mod log;
mod nodes;
mod persist;
mod reader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use super::room::remote::{PeerEvent, Peers};
use super::room::Room;
use super::store::Store;
use crate::api::{RoomInfo, RoomUser};

pub use log::ClusterStore;
pub use nodes::NodeInfo;

/// Settings a node needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub redis_url: String,
    pub node_id: String,
    /// Where this node serves, shown in the node list.
    pub address: String,
    /// Log entries after which the persisting node compacts a room in MongoDB.
    pub compact_every: u64,
    pub history_retention: Duration,
    /// How often the room's leaseholder moves its stream into MongoDB.
    pub persist_every: Duration,
    /// `--durability fsync`: Redis must sync its append-only file on every write.
    pub fsync: bool,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach Redis at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("invalid --redis-url: {0}")]
    InvalidUrl(String),
}

/// Counters of what the node did for its cluster, shown in metrics.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub appended: AtomicU64,
    pub remote_updates: AtomicU64,
    pub events_published: AtomicU64,
    pub events_dropped: AtomicU64,
    pub events_received: AtomicU64,
    pub persisted_entries: AtomicU64,
}

/// A room this node holds, as its cluster tasks follow it.
struct Watched {
    room: Room,
    /// The room's stream, as the reader names it in its `XREAD`s.
    key: String,
    /// Last stream entry id merged (or skipped as this node's own).
    cursor: String,
    /// Highest sequence number the room's document is known to hold everything up to.
    applied_seq: u64,
    /// Highest sequence number MongoDB is known to hold the room's log up to.
    persisted_seq: u64,
    /// Stream entries moved to MongoDB since its last compaction there.
    since_compact: u64,
    /// Reads of the room from MongoDB under way (`reader::catch_up`), each for
    /// entries trimmed from the stream before this node read them: the room's
    /// document lacks them until every one has merged, so it is not compacted
    /// from meanwhile. A count, so the first read to finish does not clear a
    /// later gap's.
    catching_up: u32,
    /// How many times the room had been deleted when this node opened it: a
    /// higher count later means it was deleted since, and this node missed the
    /// notice (`persist::persist_room` closes it then).
    deletions: u64,
}

/// What reading a room's stored state left for `Peers::opened`.
#[derive(Default)]
struct Opened {
    cursor: String,
    applied_seq: u64,
    persisted_seq: u64,
    since_compact: u64,
    users: Vec<(String, RoomUser)>,
    deletions: u64,
}

/// Cheap to clone; clones share one node.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClusterSettings,
    /// This process: the node id plus a random part, so entries and presence of a
    /// node restarted under the same id are never taken for its own.
    instance: String,
    client: redis::Client,
    conn: ConnectionManager,
    /// MongoDB: where the shared log is persisted.
    shared: Arc<dyn Store>,
    /// Set by `start`, taken back by `ClusterTasks::finish`: the registry holds this
    /// node too, and the cycle would keep the rooms, and so the journal, open past
    /// shutdown.
    registry: Mutex<Option<Registry>>,
    /// `std::sync::Mutex`s: held for map lookups only, never across an await.
    watched: Mutex<HashMap<String, Watched>>,
    opened: Mutex<HashMap<String, Opened>>,
    /// Per room, when it was read: its MongoDB sequence number, the floor of the
    /// numbers Redis gives its updates (a Redis that lost its data must not reuse
    /// them); and how many times it had been deleted, past which Redis refuses
    /// this node's appends to it.
    bases: Mutex<HashMap<String, (u64, u64)>>,
    /// The last stream entry this node copied to MongoDB per room, while it holds
    /// the room's persister lease.
    persisted_ids: Mutex<HashMap<String, String>>,
    events: mpsc::Sender<(String, PeerEvent)>,
    events_rx: Mutex<Option<mpsc::Receiver<(String, PeerEvent)>>>,
    subscriptions: mpsc::UnboundedSender<events::Subscription>,
    subscriptions_rx: Mutex<Option<mpsc::UnboundedReceiver<events::Subscription>>>,
    /// Why Redis cannot be used right now, per task that noticed.
    problems: Mutex<HashMap<&'static str, String>>,
    /// Asks the reader to read every held stream (a missed push, a new or
    /// resubscribed room).
    read_log: tokio::sync::Notify,
    /// Held while entries are merged, so pushed and read entries of a room go into
    /// it in order. Taken before `watched`, never under a room's lock.
    merging: Mutex<()>,
    live_nodes: AtomicUsize,
    counters: ClusterCounters,
    /// Rooms where a presence write of this node's users never reached Redis (it
    /// was unreachable, or the publisher backed up): their lists are written
    /// again from memory once Redis answers (`events::publish`).
    presence_lost: Mutex<std::collections::HashSet<String>>,
}

/// Events waiting for the publisher before new ones are dropped.
const EVENT_QUEUE: usize = 8192;

impl Cluster {
    /// Connects to Redis. Fails when it cannot be reached, so a misconfigured node
    /// says so at once instead of serving alone.
    pub async fn connect(
        settings: ClusterSettings,
        shared: Arc<dyn Store>,
    ) -> Result<Self, ClusterError> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|error| ClusterError::InvalidUrl(error.to_string()))?;
        let host = redis_host(&client);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let unreachable = |error: redis::RedisError| ClusterError::Unreachable {
            host: host.clone(),
            reason: error.to_string(),
        };
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| ClusterError::Unreachable {
            host: host.clone(),
            reason: "timed out".into(),
        })?
        .map_err(unreachable)?;
        let _: () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unreachable)?;
        warn_without_aof(&mut conn, settings.fsync).await;
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (subscriptions, subscriptions_rx) = mpsc::unbounded_channel();
        let instance = format!(
            "{}/{}",
            settings.node_id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        tracing::info!(redis = %host, node = %settings.node_id, %instance, "cluster: joined through Redis at {host}");
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                instance,
                client,
                conn,
                shared,
                registry: Mutex::new(None),
                watched: Mutex::new(HashMap::new()),
                opened: Mutex::new(HashMap::new()),
                bases: Mutex::new(HashMap::new()),
                persisted_ids: Mutex::new(HashMap::new()),
                events,
                events_rx: Mutex::new(Some(events_rx)),
                subscriptions,
                subscriptions_rx: Mutex::new(Some(subscriptions_rx)),
                problems: Mutex::new(HashMap::new()),
                read_log: tokio::sync::Notify::new(),
                merging: Mutex::new(()),
                live_nodes: AtomicUsize::new(1),
                counters: ClusterCounters::default(),
                presence_lost: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// The store the journal and registry use on this node: Redis for updates,
    /// MongoDB for everything else.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::new(ClusterStore::new(self.clone()))
    }

    /// Starts the node's cluster tasks for `registry`; they stop with `shutdown`.
    pub fn start(&self, registry: Registry, shutdown: CancellationToken) -> ClusterTasks {
        *lock(&self.inner.registry) = Some(registry);
        let events_rx = lock(&self.inner.events_rx).take();
        let subscriptions_rx = lock(&self.inner.subscriptions_rx).take();
        let mut handles = vec![
            tokio::spawn(reader::run(self.clone(), shutdown.clone())),
            tokio::spawn(persist::run(self.clone(), shutdown.clone())),
            tokio::spawn(nodes::run(self.clone(), shutdown.clone())),
        ];
        if let (Some(events_rx), Some(subscriptions_rx)) = (events_rx, subscriptions_rx) {
            handles.push(tokio::spawn(events::publish(
                self.clone(),
                events_rx,
                shutdown.clone(),
            )));
            handles.push(tokio::spawn(events::subscribe(
                self.clone(),
                subscriptions_rx,
                shutdown.clone(),
            )));
        }
        ClusterTasks {
            cluster: self.clone(),
            handles,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.inner.settings.node_id
    }

    /// This process's name in the cluster.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn counters(&self) -> &ClusterCounters {
        &self.inner.counters
    }

    /// Live nodes, this one included, as of the last heartbeat.
    pub fn live_nodes(&self) -> usize {
        self.inner.live_nodes.load(Ordering::Relaxed)
    }

    /// Why Redis cannot be used right now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let problems = lock(&self.inner.problems);
        let mut reasons: Vec<&String> = problems.values().collect();
        reasons.sort();
        reasons.dedup();
        (!reasons.is_empty()).then(|| {
            reasons
                .into_iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn report(&self, task: &'static str, result: Result<(), String>) {
        let mut problems = lock(&self.inner.problems);
        match result {
            Ok(()) => {
                if problems.remove(task).is_some() {
                    tracing::info!(task, "cluster: Redis is reachable again");
                }
            }
            Err(reason) => {
                let reason = format!("Redis unreachable: {reason}");
                if problems.insert(task, reason.clone()).is_none() {
                    tracing::warn!(task, "cluster: {reason}");
                }
            }
        }
    }

    /// Removes the room's simulated users on every other node; returns how many
    /// the cluster listed there.
    pub async fn remove_simulated(&self, room_id: &str) -> Result<u64, redis::RedisError> {
        events::remove_simulated(self, room_id).await
    }

    /// Every room the other live nodes hold, sorted. This node's own are in its
    /// registry; its list in Redis may still name a room it is retiring.
    pub async fn rooms_elsewhere(&self) -> Result<Vec<String>, redis::RedisError> {
        nodes::rooms_elsewhere(self).await
    }

    /// `rooms` as the other live nodes hold them, without loading any here.
    pub async fn describe(&self, rooms: &[String]) -> Result<Vec<RoomInfo>, redis::RedisError> {
        nodes::describe(self, rooms).await
    }

    /// The live nodes, with what each serves.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, redis::RedisError> {
        nodes::list(self).await
    }

    fn registry(&self) -> Option<Registry> {
        lock(&self.inner.registry).clone()
    }

    /// Closes a room that was deleted on another node while this node's
    /// subscription was down (the notice never came), as the notice would have.
    fn missed_deletion(&self, room_id: &str) {
        tracing::warn!(
            room = room_id,
            "cluster: the room was deleted on another node and this node missed the notice; closing it"
        );
        if let Some(registry) = self.registry() {
            registry.forget_deleted(room_id);
        }
    }

    fn watched(&self) -> MutexGuard<'_, HashMap<String, Watched>> {
        lock(&self.inner.watched)
    }

    /// The rooms this node holds, with their ids.
    fn held_rooms(&self) -> Vec<(String, Room)> {
        self.watched()
            .iter()
            .map(|(id, watched)| (id.clone(), watched.room.clone()))
            .collect()
    }
}

impl Peers for Cluster {
    fn publish(&self, room_id: &str, event: PeerEvent) {
        let presence = event.presence.is_some();
        if self
            .inner
            .events
            .try_send((room_id.to_owned(), event))
            .is_err()
        {
            self.inner
                .counters
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
            if presence {
                lock(&self.inner.presence_lost).insert(room_id.to_owned());
            }
        }
    }

    fn opened(&self, room: &Room) {
        let id = room.id().to_owned();
        let opened = lock(&self.inner.opened).remove(&id).unwrap_or_default();
        room.set_remote_users(
            opened
                .users
                .into_iter()
                .filter(|(node, _)| *node != self.inner.instance)
                .collect(),
        );
        self.watched().insert(
            id.clone(),
            Watched {
                room: room.clone(),
                key: log_key(&id),
                cursor: if opened.cursor.is_empty() {
                    "0-0".into()
                } else {
                    opened.cursor
                },
                applied_seq: opened.applied_seq,
                persisted_seq: opened.persisted_seq,
                since_compact: opened.since_compact,
                catching_up: 0,
                deletions: opened.deletions,
            },
        );
        let _ = self
            .inner
            .subscriptions
            .send(events::Subscription::Add(id.clone()));
        let cluster = self.clone();
        tokio::spawn(async move { cluster.announce_room(&id).await });
    }

    fn closed(&self, room: &Room) {
        let room_id = room.id();
        let removed = {
            let mut watched = self.watched();
            // A room opened again since is watched under the same id: it stays.
            match watched.get(room_id) {
                Some(held) if held.room.same(room) => watched.remove(room_id),
                _ => None,
            }
        };
        if removed.is_none() {
            return;
        }
        lock(&self.inner.bases).remove(room_id);
        let _ = self
            .inner
            .subscriptions
            .send(events::Subscription::Remove(room_id.to_owned()));
        if let Some(watched) = removed {
            let cluster = self.clone();
            let id = room_id.to_owned();
            tokio::spawn(async move {
                cluster.retire_room(&id, watched).await;
            });
        }
    }
}

impl Cluster {
    /// Lists the room as held here, with its summary: other nodes describe it
    /// from that at once, not only after this node's next beat.
    async fn announce_room(&self, room_id: &str) {
        let mut pipe = redis::pipe();
        // The summary first: a room listed without one is described as empty.
        let room = self
            .watched()
            .get(room_id)
            .map(|watched| watched.room.clone());
        let summary = room
            .zip(self.registry())
            .and_then(|(room, registry)| nodes::summary_of(&room, registry.metrics().history()));
        if let Some(summary) = summary {
            pipe.cmd("HSET")
                .arg(nodes::summaries_key(&self.inner.instance))
                .arg(room_id)
                .arg(summary)
                .ignore();
        }
        pipe.cmd("SADD")
            .arg(node_rooms_key(&self.inner.instance))
            .arg(room_id)
            .ignore();
        let result: Result<(), redis::RedisError> =
            pipe.query_async(&mut self.inner.conn.clone()).await;
        if let Err(error) = result {
            tracing::debug!(%error, room = room_id, "cannot announce a room");
        }
    }

    /// A room left this node: its stream is persisted one last time (if this node
    /// may), and it is no longer listed as held here.
    async fn retire_room(&self, room_id: &str, watched: Watched) {
        // A deleted room's stream went with it: nothing is persisted again.
        if !watched.room.is_deleted() {
            persist::persist_room(self, room_id, Some(&watched), true).await;
        }
        let _: Result<(), _> = redis::pipe()
            .cmd("SREM")
            .arg(node_rooms_key(&self.inner.instance))
            .arg(room_id)
            .ignore()
            .cmd("HDEL")
            .arg(nodes::summaries_key(&self.inner.instance))
            .arg(room_id)
            .ignore()
            .query_async::<()>(&mut self.inner.conn.clone())
            .await;
        // Opened here again while the last persist ran: its announcement went
        // out before this removal, so it is made again.
        if self.watched().contains_key(room_id) {
            self.announce_room(room_id).await;
        }
    }
}

/// The node's cluster tasks, stopped and cleaned up at shutdown.
pub struct ClusterTasks {
    cluster: Cluster,
    handles: Vec<JoinHandle<()>>,
}

impl ClusterTasks {
    /// Waits for the tasks (their token was cancelled), persists what this node may,
    /// and leaves the cluster: its users and its entry in the node list go.
    pub async fn finish(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
        let rooms: Vec<String> = self.cluster.watched().keys().cloned().collect();
        for room_id in rooms {
            persist::persist_room(&self.cluster, &room_id, None, true).await;
        }
        nodes::leave(&self.cluster).await;
        // The rooms hold the journal open; the server is closing it next.
        self.cluster.watched().clear();
        lock(&self.cluster.inner.registry).take();
    }
}

fn log_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:log")
}

fn seq_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:seq")
}

fn applied_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:applied")
}

fn users_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:users")
}

fn lease_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:persister")
}

/// How many times the room was deleted (kept, like its counter).
fn deletions_key(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:deletions")
}

fn channel(room_id: &str) -> String {
    format!("coedit:{{{room_id}}}:events")
}

fn node_rooms_key(instance: &str) -> String {
    format!("coedit:{{nodes}}:rooms:{instance}")
}

/// The room id in a key or channel made by the functions above.
fn room_of(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key.rfind('}')?;
    (close > open).then(|| &key[open + 1..close])
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The URL's host and port, never its password.
fn redis_host(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => other.to_string(),
    }
}

/// Redis keeps what it acknowledged across its own crash only with its append-only
/// file on (it writes it before answering), and across a power loss only when it
/// also syncs it on every write; say so at start when it falls short of the
/// durability level.
async fn warn_without_aof(conn: &mut ConnectionManager, fsync: bool) {
    let settings: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    let Ok(settings) = settings else {
        return;
    };
    let value = |name: &str| {
        settings
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1).cloned())
    };
    let aof = value("appendonly").unwrap_or_default();
    let sync = value("appendfsync").unwrap_or_default();
    if aof != "yes" {
        tracing::warn!(
            appendonly = %aof,
            "Redis runs without its append-only file (appendonly no): a Redis crash loses edits it acknowledged"
        );
    } else if fsync && sync != "always" {
        tracing::warn!(
            appendfsync = %sync,
            "--durability fsync, but Redis does not sync its append-only file on every write (appendfsync always): a power loss can lose up to a second of edits"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_room_as_a_hash_tag() {
        assert_eq!(log_key("a"), "coedit:{a}:log");
        assert_eq!(room_of(&log_key("doc-1")), Some("doc-1"));
        assert_eq!(room_of(&channel("x{y}z")), Some("x{y}z"));
        assert_eq!(room_of("coedit:nodes"), None);
    }
}
