//! The cluster's nodes: each beats once a second (a sorted set of instance → last
//! beat, and a hash of what it serves), counts the live ones, and clears up after a
//! node that stopped beating for `DEAD_AFTER`: its users leave every room (the
//! other nodes send `user_left`) and its awareness states are removed.
//!
//! A node that was only cut off from Redis (and so taken for dead) notices when it
//! beats again and puts its users back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::events::{left_notice, room_users, users_field};
use super::{channel, node_rooms_key, users_key, Cluster};
use crate::server::room::durable::now_ms;

const NODES: &str = "coedit:{nodes}";
/// How often a node beats.
const BEAT: Duration = Duration::from_secs(1);
/// A node silent this long is taken for dead: its users leave.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);
/// Beats between two comparisons of a node's presence view with Redis's.
const RESYNC_EVERY: u32 = 5;

fn info_key(instance: &str) -> String {
    format!("coedit:{{nodes}}:node:{instance}")
}

/// One node, as `GET /api/cluster` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub instance: String,
    pub address: String,
    pub rooms: u64,
    pub connections: u64,
    /// When it last beat, in milliseconds since the Unix epoch.
    pub last_heartbeat_ms: i64,
    pub started_ms: i64,
    /// The node that answered.
    pub this_node: bool,
}

pub(super) async fn run(cluster: Cluster, shutdown: CancellationToken) {
    let started = now_ms();
    let mut interval = tokio::time::interval(BEAT);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = 0u32;
    let mut listed = false;
    // Since when this node's beats have reached Redis without a miss. After an
    // outage every node's last beat is old: only once each has had `DEAD_AFTER`
    // to beat again does an old beat mean a dead node.
    let mut beating_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        beats = beats.wrapping_add(1);
        match beat(&cluster, started).await {
            Ok(added) => {
                cluster.report("heartbeat", Ok(()));
                // The persister talks to Redis over the same connection, but only
                // every few seconds per room: a beat that got through shows that
                // its last failure is over.
                cluster.report("persister", Ok(()));
                if added && listed {
                    tracing::warn!(
                        "cluster: this node had been taken for dead; announcing its users again"
                    );
                    announce_users(&cluster).await;
                }
                listed = true;
            }
            Err(error) => {
                cluster.report("heartbeat", Err(error.to_string()));
                beating_since = None;
                continue;
            }
        }
        let since = *beating_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= DEAD_AFTER {
            if let Err(error) = bury_dead(&cluster).await {
                tracing::debug!(%error, "cannot clear up after dead nodes");
            }
        }
        if beats.is_multiple_of(RESYNC_EVERY) {
            resync_presence(&cluster).await;
        }
    }
}

/// Records this node's beat; true when the node was not listed (new, or taken for
/// dead meanwhile).
async fn beat(cluster: &Cluster, started: i64) -> Result<bool, redis::RedisError> {
    let now = now_ms();
    let (rooms, connections) = match cluster.registry() {
        Some(registry) => {
            let rooms = registry.loaded_rooms();
            let connections: usize = rooms.iter().map(|room| room.connection_count()).sum();
            (rooms.len(), connections)
        }
        None => (0, 0),
    };
    let instance = cluster.instance();
    let settings = &cluster.inner.settings;
    let mut conn = cluster.inner.conn.clone();
    let (added, live): (i64, i64) = redis::pipe()
        .cmd("ZADD")
        .arg(NODES)
        .arg(now)
        .arg(instance)
        .cmd("HSET")
        .arg(info_key(instance))
        .arg("node_id")
        .arg(&settings.node_id)
        .arg("address")
        .arg(&settings.address)
        .arg("rooms")
        .arg(rooms)
        .arg("connections")
        .arg(connections)
        .arg("heartbeat")
        .arg(now)
        .arg("started")
        .arg(started)
        .ignore()
        .cmd("PEXPIRE")
        .arg(info_key(instance))
        .arg(60_000)
        .ignore()
        .cmd("ZCOUNT")
        .arg(NODES)
        .arg(now - DEAD_AFTER.as_millis() as i64)
        .arg("+inf")
        .query_async(&mut conn)
        .await?;
    cluster
        .inner
        .live_nodes
        .store(usize::try_from(live).unwrap_or(0).max(1), Ordering::Relaxed);
    Ok(added == 1)
}

/// Clears up after nodes that stopped beating.
async fn bury_dead(cluster: &Cluster) -> Result<(), redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    let cutoff = now_ms() - DEAD_AFTER.as_millis() as i64;
    let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(NODES)
        .arg("-inf")
        .arg(cutoff)
        .query_async(&mut conn)
        .await?;
    for instance in dead {
        if instance == cluster.instance() {
            continue;
        }
        tracing::warn!(node = %instance, "cluster: a node stopped beating; its users leave");
        forget(cluster, &instance).await?;
    }
    Ok(())
}

/// Removes a node from the cluster: its users from every room's list (each node
/// holding the room is told, and sends `user_left`), its entry in the node list.
async fn forget(cluster: &Cluster, instance: &str) -> Result<(), redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    for watched in cluster.watched().values() {
        watched.room.forget_node(instance);
    }
    let rooms: Vec<String> = redis::cmd("SMEMBERS")
        .arg(node_rooms_key(instance))
        .query_async(&mut conn)
        .await?;
    let notice = left_notice(instance);
    for room_id in rooms {
        let users = room_users(&mut conn, &room_id).await?;
        let mut pipe = redis::pipe();
        for (node, user) in users {
            if node == instance {
                pipe.cmd("HDEL")
                    .arg(users_key(&room_id))
                    .arg(users_field(instance, &user.id))
                    .ignore();
            }
        }
        pipe.cmd("PUBLISH")
            .arg(channel(&room_id))
            .arg(&notice)
            .ignore();
        let _: () = pipe.query_async(&mut conn).await?;
    }
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(node_rooms_key(instance))
        .arg(info_key(instance))
        .ignore()
        .cmd("ZREM")
        .arg(NODES)
        .arg(instance)
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Leaves the cluster on shutdown.
pub(super) async fn leave(cluster: &Cluster) {
    if let Err(error) = forget(cluster, cluster.instance()).await {
        tracing::warn!(%error, "cluster: could not leave cleanly; the others will notice in a few seconds");
    }
}

/// Compares every held room's remote users with the lists in Redis; members hear
/// of any difference.
pub(super) async fn resync_presence(cluster: &Cluster) {
    let mut conn = cluster.inner.conn.clone();
    let rooms = cluster.held_rooms();
    for (room_id, room) in rooms {
        match room_users(&mut conn, &room_id).await {
            Ok(users) => room.set_remote_users(
                users
                    .into_iter()
                    .filter(|(node, _)| node != cluster.instance())
                    .collect(),
            ),
            Err(error) => {
                cluster.report("presence", Err(error.to_string()));
                return;
            }
        }
    }
}

/// Writes this node's users back into the rooms' lists (after being taken for dead).
async fn announce_users(cluster: &Cluster) {
    let mut conn = cluster.inner.conn.clone();
    let rooms = cluster.held_rooms();
    let mut pipe = redis::pipe();
    for (room_id, room) in rooms {
        pipe.cmd("SADD")
            .arg(node_rooms_key(cluster.instance()))
            .arg(&room_id)
            .ignore();
        for user in room.local_users() {
            if let Ok(json) = serde_json::to_string(&user) {
                pipe.cmd("HSET")
                    .arg(users_key(&room_id))
                    .arg(users_field(cluster.instance(), &user.id))
                    .arg(json)
                    .ignore();
            }
        }
    }
    let result: Result<(), _> = pipe.query_async(&mut conn).await;
    if let Err(error) = result {
        tracing::debug!(%error, "cannot announce this node's users again");
    }
}

/// Instances that beat within `DEAD_AFTER`.
async fn live(conn: &mut redis::aio::ConnectionManager) -> Result<Vec<String>, redis::RedisError> {
    let cutoff = now_ms() - DEAD_AFTER.as_millis() as i64;
    redis::cmd("ZRANGEBYSCORE")
        .arg(NODES)
        .arg(cutoff)
        .arg("+inf")
        .query_async(conn)
        .await
}

/// Every room some live node holds, sorted.
pub(super) async fn rooms(cluster: &Cluster) -> Result<Vec<String>, redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    let instances = live(&mut conn).await?;
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = instances
        .iter()
        .map(|instance| node_rooms_key(instance))
        .collect();
    let mut rooms: Vec<String> = redis::cmd("SUNION")
        .arg(keys)
        .query_async(&mut conn)
        .await?;
    rooms.sort();
    Ok(rooms)
}

/// The live nodes.
pub(super) async fn list(cluster: &Cluster) -> Result<Vec<NodeInfo>, redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    let instances = live(&mut conn).await?;
    let mut nodes = Vec::with_capacity(instances.len());
    for instance in instances {
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(info_key(&instance))
            .query_async(&mut conn)
            .await?;
        let number = |name: &str| {
            fields
                .get(name)
                .and_then(|value| value.parse::<i64>().ok())
                .unwrap_or(0)
        };
        nodes.push(NodeInfo {
            node_id: fields.get("node_id").cloned().unwrap_or_default(),
            address: fields.get("address").cloned().unwrap_or_default(),
            rooms: number("rooms").max(0) as u64,
            connections: number("connections").max(0) as u64,
            last_heartbeat_ms: number("heartbeat"),
            started_ms: number("started"),
            this_node: instance == cluster.instance(),
            instance,
        });
    }
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(nodes)
}
