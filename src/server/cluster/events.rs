//! Presence across nodes: rooms' `PeerEvent`s go out over Redis pub/sub (one
//! channel per room, subscribed by the nodes that hold it; the room's log entries
//! are pushed on it too and handed to `reader`), and who is in each room
//! is kept in a hash per room (`instance|client id` → user), which late joiners,
//! REST listings and a node that lost touch read back.
//!
//! Pub/sub forgets what it could not deliver; presence does not depend on it: the
//! hash is written before each event is published, and nodes compare their view
//! with it every few seconds (`nodes`) and after reconnecting.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::log::PUSHED_ENTRY;
use super::{channel, deletions_key, lock, room_of, users_key, Cluster};
use crate::api::RoomUser;
use crate::server::room::queue;
use crate::server::room::remote::{PeerEvent, Peers, PresenceChange};

/// What goes over a room's channel.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Wire {
    /// The sending node instance.
    n: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<PeerEvent>,
    /// The room was deleted: every node closes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    /// Node `n` left the cluster (or was taken for dead): its users and awareness
    /// states go.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    left: bool,
    /// Node `n` just opened the room: the others send their clients' awareness.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    query: bool,
    /// Every node removes the room's simulated users it holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unsimulate: bool,
    /// Node `n` wrote its users of the room again: the others read the list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reread: bool,
}

/// Rooms to (un)subscribe.
pub(super) enum Subscription {
    Add(String),
    Remove(String),
}

/// The message that tells every node a room was deleted.
pub(super) fn deleted_notice(instance: &str) -> String {
    serde_json::to_string(&Wire {
        n: instance.to_owned(),
        deleted: true,
        ..Wire::default()
    })
    .unwrap_or_default()
}

/// The message that tells every node holding a room that node `instance` left.
pub(super) fn left_notice(instance: &str) -> String {
    serde_json::to_string(&Wire {
        n: instance.to_owned(),
        left: true,
        ..Wire::default()
    })
    .unwrap_or_default()
}

pub(super) fn users_field(instance: &str, user_id: &str) -> String {
    format!("{instance}|{user_id}")
}

/// Everyone in a room on every node, as (node instance, user).
pub(super) async fn room_users(
    conn: &mut redis::aio::ConnectionManager,
    room_id: &str,
) -> Result<Vec<(String, RoomUser)>, redis::RedisError> {
    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(users_key(room_id))
        .query_async(conn)
        .await?;
    Ok(users_listed(fields))
}

/// A room's presence hash as (node instance, user), skipping what does not parse.
pub(super) fn users_listed(fields: Vec<(String, String)>) -> Vec<(String, RoomUser)> {
    fields
        .into_iter()
        .filter_map(|(field, user)| {
            let (instance, _) = field.rsplit_once('|')?;
            let user: RoomUser = serde_json::from_str(&user).ok()?;
            Some((instance.to_owned(), user))
        })
        .collect()
}

/// Sends rooms' events, batching what queued up meanwhile into one round trip.
pub(super) async fn publish(
    cluster: Cluster,
    mut events: mpsc::Receiver<(String, PeerEvent)>,
    shutdown: CancellationToken,
) {
    let mut conn = cluster.inner.conn.clone();
    let mut batch = Vec::with_capacity(256);
    let mut repair_tick = tokio::time::interval(REPAIR_EVERY);
    repair_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = events.recv_many(&mut batch, 256) => received,
            // Only with nothing queued: an event queued before a lost one is older
            // than what the repair writes, and must not land after it.
            _ = repair_tick.tick(), if events.is_empty() => {
                repair_presence(&cluster, &mut conn).await;
                continue;
            }
        };
        if received == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        let mut presence_rooms = Vec::new();
        for (room_id, event) in batch.drain(..) {
            if event.presence.is_some() {
                presence_rooms.push(room_id.clone());
            }
            match &event.presence {
                Some(PresenceChange::Present { user }) => {
                    if let Ok(json) = serde_json::to_string(user) {
                        pipe.cmd("HSET")
                            .arg(users_key(&room_id))
                            .arg(users_field(cluster.instance(), &user.id))
                            .arg(json)
                            .ignore();
                    }
                }
                Some(PresenceChange::Gone { id }) => {
                    pipe.cmd("HDEL")
                        .arg(users_key(&room_id))
                        .arg(users_field(cluster.instance(), id))
                        .ignore();
                }
                None => {}
            }
            let wire = Wire {
                n: cluster.instance().to_owned(),
                e: Some(event),
                ..Wire::default()
            };
            if let Ok(message) = serde_json::to_string(&wire) {
                pipe.cmd("PUBLISH")
                    .arg(channel(&room_id))
                    .arg(message)
                    .ignore();
            }
        }
        let result: Result<(), redis::RedisError> = pipe.query_async(&mut conn).await;
        let counters = &cluster.inner.counters;
        match result {
            Ok(()) => {
                counters
                    .events_published
                    .fetch_add(received as u64, Ordering::Relaxed);
                cluster.report("events", Ok(()));
            }
            Err(error) => {
                counters
                    .events_dropped
                    .fetch_add(received as u64, Ordering::Relaxed);
                cluster.report("events", Err(error.to_string()));
                lock(&cluster.inner.presence_lost).extend(presence_rooms);
            }
        }
    }
}

/// How often the publisher writes again the lists whose writes were lost.
const REPAIR_EVERY: Duration = Duration::from_secs(1);

/// Writes this node's users of the rooms whose presence writes were lost back
/// into their lists, from memory (who is here now, not what was lost), and tells
/// the other nodes to read them again: without it, a user who left while Redis
/// was unreachable stayed listed everywhere else, and one who came was never
/// listed. Runs in the publisher's task when nothing is queued, so no older write
/// of the same lists can land after it (events are queued under the room's lock,
/// the memory read here takes it too).
async fn repair_presence(cluster: &Cluster, conn: &mut redis::aio::ConnectionManager) {
    let rooms: Vec<String> = lock(&cluster.inner.presence_lost).drain().collect();
    if rooms.is_empty() {
        return;
    }
    let result = rewrite_users(cluster, conn, &rooms).await;
    if let Err(error) = result {
        tracing::debug!(%error, "cannot write this node's users again yet");
        lock(&cluster.inner.presence_lost).extend(rooms);
    }
}

async fn rewrite_users(
    cluster: &Cluster,
    conn: &mut redis::aio::ConnectionManager,
    rooms: &[String],
) -> Result<(), redis::RedisError> {
    let mut read = redis::pipe();
    for room_id in rooms {
        read.cmd("HGETALL").arg(users_key(room_id));
    }
    let listed: Vec<Vec<(String, String)>> = read.query_async(conn).await?;
    let registry = cluster.registry();
    let instance = cluster.instance();
    let reread = serde_json::to_string(&Wire {
        n: instance.to_owned(),
        reread: true,
        ..Wire::default()
    })
    .unwrap_or_default();
    let mut write = redis::pipe();
    for (room_id, fields) in rooms.iter().zip(listed) {
        let here = registry
            .as_ref()
            .and_then(|registry| registry.loaded(room_id))
            .map(|room| room.local_users())
            .unwrap_or_default();
        for (node, user) in users_listed(fields) {
            if node == instance && !here.iter().any(|present| present.id == user.id) {
                write
                    .cmd("HDEL")
                    .arg(users_key(room_id))
                    .arg(users_field(instance, &user.id))
                    .ignore();
            }
        }
        for user in &here {
            if let Ok(json) = serde_json::to_string(user) {
                write
                    .cmd("HSET")
                    .arg(users_key(room_id))
                    .arg(users_field(instance, &user.id))
                    .arg(json)
                    .ignore();
            }
        }
        write
            .cmd("PUBLISH")
            .arg(channel(room_id))
            .arg(&reread)
            .ignore();
    }
    write.query_async(conn).await
}

/// Receives the events of the rooms this node holds.
pub(super) async fn subscribe(
    cluster: Cluster,
    mut changes: mpsc::UnboundedReceiver<Subscription>,
    shutdown: CancellationToken,
) {
    let mut reconnecting = false;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = cluster.inner.client.get_async_pubsub() => connected,
        };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(error) => {
                cluster.report("presence", Err(error.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            }
        };
        let (mut sink, mut messages) = pubsub.split();
        let rooms: Vec<String> = cluster.watched().keys().cloned().collect();
        let mut subscribed: HashSet<String> = HashSet::new();
        let mut failed = false;
        for room_id in rooms {
            if sink.subscribe(channel(&room_id)).await.is_err() {
                failed = true;
                break;
            }
            subscribed.insert(room_id);
        }
        if failed {
            continue;
        }
        cluster.report("presence", Ok(()));
        // Entries appended while no push could reach this node are in the streams,
        // and deletions it missed are in the rooms' counts.
        cluster.inner.read_log.notify_one();
        tokio::spawn(close_missed_deletions(
            cluster.clone(),
            subscribed.iter().cloned().collect(),
        ));
        if reconnecting {
            // Whatever was said while the connection was down is in the hashes.
            super::nodes::resync_presence(&cluster).await;
        }
        reconnecting = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => {
                    let result = match change {
                        None => return,
                        Some(Subscription::Add(room_id)) => {
                            let result = sink.subscribe(channel(&room_id)).await;
                            if result.is_ok() {
                                // What was appended between the room's load and now
                                // came before the pushes this node hears, and so
                                // did a deletion's notice.
                                cluster.inner.read_log.notify_one();
                                tokio::spawn(close_missed_deletions(
                                    cluster.clone(),
                                    vec![room_id.clone()],
                                ));
                                // Not awaited here: this task delivers every
                                // room's pushes, and a slow Redis would hold them.
                                let (asking, room) = (cluster.clone(), room_id.clone());
                                tokio::spawn(async move {
                                    ask_for_awareness(&asking, &room).await;
                                });
                            }
                            subscribed.insert(room_id);
                            result
                        }
                        Some(Subscription::Remove(room_id)) => {
                            // Loaded again meanwhile: keep listening.
                            if cluster.watched().contains_key(&room_id) {
                                continue;
                            }
                            subscribed.remove(&room_id);
                            sink.unsubscribe(channel(&room_id)).await
                        }
                    };
                    if let Err(error) = result {
                        cluster.report("presence", Err(error.to_string()));
                        break;
                    }
                }
                message = messages.next() => {
                    let Some(first) = message else {
                        cluster.report("presence", Err("connection lost".into()));
                        break;
                    };
                    // What has arrived meanwhile is handled with it: one task
                    // delivers every room's pushes, so like the journal it writes
                    // a batch's first messages to sockets itself and leaves the
                    // rest of a large batch (a node falling behind) to the
                    // connections' tasks.
                    let mut ended = false;
                    queue::limit_direct_writes(queue::DIRECT_WRITES_PER_BATCH, || {
                        handle_message(&cluster, &first);
                        for _ in 1..MAX_PUSHES_PER_BATCH {
                            match messages.next().now_or_never() {
                                Some(Some(message)) => handle_message(&cluster, &message),
                                Some(None) => {
                                    ended = true;
                                    break;
                                }
                                None => break,
                            }
                        }
                    });
                    if ended {
                        cluster.report("presence", Err("connection lost".into()));
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Closes those of `rooms` deleted since this node opened them. A deletion counts
/// itself up in Redis before its notice goes out, so a room subscribed to after
/// the notice (opened in the middle of the deletion, or while the subscription
/// was down) finds the count grown here.
async fn close_missed_deletions(cluster: Cluster, rooms: Vec<String>) {
    if rooms.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for room_id in &rooms {
        pipe.cmd("GET").arg(deletions_key(room_id));
    }
    let mut conn = cluster.inner.conn.clone();
    let counts: Vec<Option<u64>> = match pipe.query_async(&mut conn).await {
        Ok(counts) => counts,
        Err(error) => {
            // The persister and the append script read the count too.
            tracing::debug!(%error, "cannot read the rooms' deletion counts");
            return;
        }
    };
    for (room_id, count) in rooms.iter().zip(counts) {
        super::persist::deleted_since_opened(&cluster, room_id, None, count.unwrap_or(0));
    }
}

/// Messages from the channel connection handled as one batch (see `subscribe`).
const MAX_PUSHES_PER_BATCH: usize = 256;

/// One message from a room's channel: a pushed log entry or a presence event.
fn handle_message(cluster: &Cluster, message: &redis::Msg) {
    let Some(room_id) = room_of(message.get_channel_name()) else {
        return;
    };
    let payload = message.get_payload_bytes();
    if let Some(entry) = payload.strip_prefix(&[PUSHED_ENTRY]) {
        super::reader::pushed(cluster, room_id, entry);
    } else if let Ok(payload) = std::str::from_utf8(payload) {
        receive(cluster, room_id, payload);
    }
}

/// Asks the nodes holding a room for their clients' awareness states: y-protocol
/// clients renew theirs only every 15 s, and a node that just opened the room
/// would greet its clients without them until then.
async fn ask_for_awareness(cluster: &Cluster, room_id: &str) {
    let query = Wire {
        n: cluster.instance().to_owned(),
        query: true,
        ..Wire::default()
    };
    let Ok(message) = serde_json::to_string(&query) else {
        return;
    };
    let mut conn = cluster.inner.conn.clone();
    let result: Result<(), redis::RedisError> = redis::cmd("PUBLISH")
        .arg(channel(room_id))
        .arg(message)
        .query_async(&mut conn)
        .await;
    if let Err(error) = result {
        tracing::debug!(%error, room = room_id, "cannot ask for awareness states");
    }
}

fn receive(cluster: &Cluster, room_id: &str, payload: &str) {
    let Ok(wire) = serde_json::from_str::<Wire>(payload) else {
        tracing::debug!(room = room_id, "ignoring an unreadable cluster event");
        return;
    };
    if wire.n == cluster.instance() {
        return;
    }
    cluster
        .inner
        .counters
        .events_received
        .fetch_add(1, Ordering::Relaxed);
    if wire.deleted {
        if let Some(registry) = cluster.registry() {
            registry.forget_deleted(room_id);
        }
        return;
    }
    let room = cluster
        .watched()
        .get(room_id)
        .map(|watched| watched.room.clone());
    let Some(room) = room else {
        return;
    };
    if wire.left {
        room.forget_node(&wire.n);
    } else if wire.reread {
        let cluster = cluster.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move { super::nodes::reread_presence(&cluster, &room_id, &room).await });
    } else if wire.unsimulate {
        room.remove_simulated();
    } else if wire.query {
        if let Some(frame) = room.local_awareness() {
            cluster.publish(
                room_id,
                PeerEvent {
                    from: String::new(),
                    json: None,
                    awareness: Some(hex::encode(frame)),
                    presence: None,
                },
            );
        }
    } else if let Some(event) = wire.e {
        room.peer_event(&wire.n, event);
    }
}

/// Tells every node holding the room to remove the simulated users it holds;
/// returns how many the cluster lists on other nodes.
pub(super) async fn remove_simulated(
    cluster: &Cluster,
    room_id: &str,
) -> Result<u64, redis::RedisError> {
    let mut conn = cluster.inner.conn.clone();
    let elsewhere = room_users(&mut conn, room_id)
        .await?
        .iter()
        .filter(|(node, user)| node != cluster.instance() && user.simulated)
        .count() as u64;
    let notice = Wire {
        n: cluster.instance().to_owned(),
        unsimulate: true,
        ..Wire::default()
    };
    let _: () = redis::cmd("PUBLISH")
        .arg(channel(room_id))
        .arg(serde_json::to_string(&notice).unwrap_or_default())
        .query_async(&mut conn)
        .await?;
    Ok(elsewhere)
}
