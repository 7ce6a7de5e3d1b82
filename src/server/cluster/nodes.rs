//! The cluster's nodes: each beats once a second (a sorted set of instance → last
//! beat, a hash of what it serves, and a summary of each room it holds), counts the
//! live ones, and clears up after a node that stopped beating for `DEAD_AFTER`: its
//! users leave every room (the other nodes send `user_left`) and its awareness
//! states are removed.
//!
//! The rooms' summaries and presence lists let any node describe a room another
//! node holds (`describe`) without loading it: a dashboard polling `GET
//! /api/rooms` through a load balancer would otherwise keep every room of the
//! cluster in memory on every node, each merging every keystroke.
//!
//! A node that was only cut off from Redis (and so taken for dead) notices when it
//! beats again and puts its users back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::events::{left_notice, room_users, users_field, users_listed};
use super::{channel, node_rooms_key, users_key, Cluster};
use crate::api::RoomInfo;
use crate::server::history::History;
use crate::server::room::durable::now_ms;
use crate::server::room::Room;

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

/// A node's summaries of the rooms it holds: room id → `Summary` as JSON.
pub(super) fn summaries_key(instance: &str) -> String {
    format!("coedit:{{nodes}}:summaries:{instance}")
}

/// What a node says of a room it holds, as of its last beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    doc_size: u64,
    connections: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_activity: Option<String>,
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
    // The summaries Redis holds for this node, as last written.
    let mut summarised: HashMap<String, String> = HashMap::new();
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
                if added {
                    // Burying this node deleted its summaries.
                    summarised.clear();
                }
                listed = true;
            }
            Err(error) => {
                cluster.report("heartbeat", Err(error.to_string()));
                beating_since = None;
                continue;
            }
        }
        if let Err(error) = summarise(&cluster, &mut summarised).await {
            // Part of the pipeline may have landed: everything is written again.
            summarised.clear();
            tracing::debug!(%error, "cannot write the summaries of this node's rooms");
        }
        let since = *beating_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= DEAD_AFTER {
            if let Err(error) = bury_dead(&cluster).await {
                tracing::debug!(%error, "cannot clear up after dead nodes");
            }
        }
        if beats.is_multiple_of(RESYNC_EVERY) {
            resync_presence(&cluster).await;
            if let Err(error) = relist_rooms(&cluster).await {
                tracing::debug!(%error, "cannot compare this node's listed rooms with Redis");
            }
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

/// Writes the summaries of this node's rooms that changed since the last beat and
/// removes those of rooms it let go; `written` is what Redis holds.
async fn summarise(
    cluster: &Cluster,
    written: &mut HashMap<String, String>,
) -> Result<(), redis::RedisError> {
    let Some(registry) = cluster.registry() else {
        return Ok(());
    };
    let history = registry.metrics().history();
    let mut now = HashMap::new();
    for room in registry.loaded_rooms() {
        if let Some(json) = summary_of(&room, history) {
            now.insert(room.id().to_owned(), json);
        }
    }
    let key = summaries_key(cluster.instance());
    let mut conn = cluster.inner.conn.clone();
    if written.is_empty() {
        // After a failure (or at the start) what Redis holds is not known: a room
        // let go meanwhile may still have its summary there.
        let held: Vec<String> = redis::cmd("HKEYS").arg(&key).query_async(&mut conn).await?;
        for room_id in held {
            written.insert(room_id, String::new());
        }
    }
    let mut pipe = redis::pipe();
    let changed: Vec<(&String, &String)> = now
        .iter()
        .filter(|(room_id, json)| written.get(*room_id) != Some(json))
        .collect();
    if !changed.is_empty() {
        pipe.cmd("HSET").arg(&key).arg(changed).ignore();
    }
    let gone: Vec<&String> = written.keys().filter(|id| !now.contains_key(*id)).collect();
    if !gone.is_empty() {
        pipe.cmd("HDEL").arg(&key).arg(gone).ignore();
    }
    // Outlives a node that died without being buried by no more than its info.
    pipe.cmd("PEXPIRE").arg(&key).arg(60_000).ignore();
    let () = pipe.query_async(&mut conn).await?;
    *written = now;
    Ok(())
}

/// A room's `Summary` as this node writes it.
pub(super) fn summary_of(room: &Room, history: &History) -> Option<String> {
    let (doc_size, connections) = room.size_and_connections();
    let last_activity = history.last_activity(room.id());
    serde_json::to_string(&Summary {
        doc_size,
        connections,
        last_activity,
    })
    .ok()
}

/// Describes `rooms` as the other live nodes hold them, without loading them
/// here: their users (this node's included) from the rooms' presence lists, their size, connections and
/// last activity from the summaries of the nodes that list them (as of their last
/// beat, at most a second old; a node's summary of a room it no longer lists is
/// left out). In the order of `rooms`.
pub(super) async fn describe(
    cluster: &Cluster,
    rooms: &[String],
) -> Result<Vec<RoomInfo>, redis::RedisError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = cluster.inner.conn.clone();
    let instances = live(&mut conn).await?;
    let others: Vec<&String> = instances
        .iter()
        .filter(|instance| *instance != cluster.instance())
        .collect();
    let mut summaries_pipe = redis::pipe();
    for instance in &others {
        summaries_pipe
            .cmd("HMGET")
            .arg(summaries_key(instance))
            .arg(rooms)
            .cmd("SMISMEMBER")
            .arg(node_rooms_key(instance))
            .arg(rooms);
    }
    let replies: Vec<(Vec<Option<String>>, Vec<bool>)> = if others.is_empty() {
        Vec::new()
    } else {
        let flat: Vec<redis::Value> = summaries_pipe.query_async(&mut conn).await?;
        let mut pairs = Vec::with_capacity(others.len());
        for pair in flat.chunks(2) {
            let [texts, listed] = pair else {
                continue;
            };
            pairs.push((
                redis::from_redis_value(texts.clone())?,
                redis::from_redis_value(listed.clone())?,
            ));
        }
        pairs
    };
    // Per other node, its summary of each room it lists.
    let summaries: Vec<Vec<Option<Summary>>> = replies
        .into_iter()
        .map(|(texts, listed)| {
            texts
                .into_iter()
                .zip(listed)
                .map(|(text, listed)| serde_json::from_str(&text.filter(|_| listed)?).ok())
                .collect()
        })
        .collect();
    let mut users_pipe = redis::pipe();
    for room_id in rooms {
        users_pipe.cmd("HGETALL").arg(users_key(room_id));
    }
    let users: Vec<Vec<(String, String)>> = users_pipe.query_async(&mut conn).await?;
    let live: HashSet<&str> = instances.iter().map(String::as_str).collect();
    Ok(rooms
        .iter()
        .zip(users)
        .enumerate()
        .map(|(index, (room_id, fields))| {
            let mut info = RoomInfo::empty(room_id);
            info.exists = true;
            for summary in summaries
                .iter()
                .filter_map(|node| node.get(index)?.as_ref())
            {
                // Every holder has the whole document, give or take what is in
                // flight: the largest is the newest.
                info.doc_size = info.doc_size.max(summary.doc_size);
                info.connections += summary.connections;
                if summary.last_activity > info.last_activity {
                    info.last_activity.clone_from(&summary.last_activity);
                }
            }
            let mut seen = HashSet::new();
            for (instance, user) in users_listed(fields) {
                // A user connected to two nodes is listed once.
                if live.contains(instance.as_str()) && seen.insert(user.id.clone()) {
                    info.users.push(user);
                }
            }
            // Redis keeps no join order; a steady one spares dashboards jumping rows.
            info.users.sort_by(|a, b| a.id.cmp(&b.id));
            info.user_count = info.users.len() as u64;
            info
        })
        .collect())
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
        .arg(summaries_key(instance))
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

/// Makes this node's list of rooms in Redis what it holds: a room announced or
/// retired while Redis was unreachable was missing from every listing, or listed
/// (and loaded by whichever node was asked about it) for good. A room opened or
/// closed meanwhile may be listed wrongly until the next comparison.
async fn relist_rooms(cluster: &Cluster) -> Result<(), redis::RedisError> {
    let key = node_rooms_key(cluster.instance());
    let mut conn = cluster.inner.conn.clone();
    let listed: HashSet<String> = redis::cmd("SMEMBERS")
        .arg(&key)
        .query_async(&mut conn)
        .await?;
    let held: HashSet<String> = cluster.watched().keys().cloned().collect();
    let mut pipe = redis::pipe();
    let gone: Vec<&String> = listed.difference(&held).collect();
    if !gone.is_empty() {
        pipe.cmd("SREM").arg(&key).arg(gone).ignore();
    }
    let missing: Vec<&String> = held.difference(&listed).collect();
    if !missing.is_empty() {
        pipe.cmd("SADD").arg(&key).arg(missing).ignore();
    }
    pipe.query_async(&mut conn).await
}

/// Compares every held room's remote users with the lists in Redis; members hear
/// of any difference.
pub(super) async fn resync_presence(cluster: &Cluster) {
    for (room_id, room) in cluster.held_rooms() {
        if !reread_presence(cluster, &room_id, &room).await {
            return;
        }
    }
}

/// Sets a room's remote users from its list in Redis; false when Redis could not
/// be read.
pub(super) async fn reread_presence(cluster: &Cluster, room_id: &str, room: &Room) -> bool {
    match room_users(&mut cluster.inner.conn.clone(), room_id).await {
        Ok(users) => {
            room.set_remote_users(
                users
                    .into_iter()
                    .filter(|(node, _)| node != cluster.instance())
                    .collect(),
            );
            true
        }
        Err(error) => {
            cluster.report("presence", Err(error.to_string()));
            false
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

/// Every room the other live nodes hold, sorted.
pub(super) async fn rooms_elsewhere(cluster: &Cluster) -> Result<Vec<String>, redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    let keys: Vec<String> = live(&mut conn)
        .await?
        .iter()
        .filter(|instance| *instance != cluster.instance())
        .map(|instance| node_rooms_key(instance))
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
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
