//! Follows the Redis streams of the rooms this node holds and merges what other
//! nodes appended. One blocking `XREAD` covers every room, plus a stream of the
//! node's own that wakes the reader when a room is added. Cursors advance only
//! past entries handled, so a lost connection resumes where it stopped: an outage
//! delays updates, never drops them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::log::Entry;
use super::{room_of, wake_key, Cluster};

/// How long one XREAD waits for news.
const BLOCK: Duration = Duration::from_secs(2);
/// Entries taken per stream per read.
const COUNT: usize = 512;

pub(super) async fn run(cluster: Cluster, shutdown: CancellationToken) {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(3)));
    let wake = wake_key(cluster.instance());
    let mut wake_id = "$".to_owned();
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = cluster.inner.client.get_multiplexed_async_connection_with_config(&config) => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(error) => {
                cluster.report("reader", Err(error.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            }
        };
        // Where the wake stream is now: wakes from here on are seen.
        if wake_id == "$" {
            match last_id(&mut conn, &wake).await {
                Ok(id) => wake_id = id,
                Err(error) => {
                    cluster.report("reader", Err(error.to_string()));
                    continue;
                }
            }
        }
        loop {
            // Built straight from the rooms, under one look at them: `arg` copies
            // into the command, so a wake-up allocates nothing per room.
            let mut command = redis::cmd("XREAD");
            command
                .arg("COUNT")
                .arg(COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&wake);
            {
                let watched = cluster.watched();
                for watched in watched.values() {
                    command.arg(&watched.key);
                }
                command.arg(&wake_id);
                for watched in watched.values() {
                    command.arg(&watched.cursor);
                }
            }
            let reply: Result<Value, _> = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = command.query_async(&mut conn) => reply,
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    cluster.report("reader", Err(error.to_string()));
                    break;
                }
            };
            cluster.report("reader", Ok(()));
            for (key, entries) in streams(reply) {
                if key == wake {
                    if let Some(last) = entries.last().and_then(entry_id) {
                        wake_id = last;
                    }
                    continue;
                }
                let Some(room_id) = room_of(&key) else {
                    continue;
                };
                let entries: Vec<Entry> = entries.iter().filter_map(Entry::parse).collect();
                merge(&cluster, room_id, entries);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Merges a room's new entries: other nodes' updates go into the document (and to
/// this node's clients); this node's own are only counted past. Entries are
/// numbered without gaps, so a gap means entries were trimmed before this node read
/// them (it lagged by more than the persister's `KEEP_FOR`): they are in MongoDB,
/// and the room is read again from there.
fn merge(cluster: &Cluster, room_id: &str, entries: Vec<Entry>) {
    let Some(last) = entries.last() else {
        return;
    };
    let (room, applied) = {
        let mut watched = cluster.watched();
        let Some(watched) = watched.get_mut(room_id) else {
            return;
        };
        watched.cursor = last.id.clone();
        (watched.room.clone(), watched.applied_seq)
    };
    let instance = cluster.instance();
    let mut highest = applied;
    let mut gap = false;
    for entry in &entries {
        if entry.seq <= highest {
            // Already in the document (read when the room was loaded).
            continue;
        }
        gap |= entry.seq > highest + 1;
        highest = entry.seq;
        if entry.node == instance {
            continue;
        }
        room.apply_remote(&entry.data, &entry.client);
        cluster
            .inner
            .counters
            .remote_updates
            .fetch_add(1, Ordering::Relaxed);
    }
    if let Some(watched) = cluster.watched().get_mut(room_id) {
        watched.applied_seq = watched.applied_seq.max(highest);
    }
    if gap {
        tracing::warn!(
            room = room_id,
            "cluster: this node missed entries of the room's log; reading it from the store"
        );
        let cluster = cluster.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move { catch_up(&cluster, &room_id, &room).await });
    }
}

/// Merges everything the store holds for a room (after a gap in its log).
async fn catch_up(cluster: &Cluster, room_id: &str, room: &crate::server::room::Room) {
    match cluster.inner.shared.load_durable(room_id).await {
        Ok(Some(stored)) => {
            for update in stored.snapshot.iter().chain(stored.updates.iter()) {
                room.apply_remote(update, "");
            }
        }
        Ok(None) => {}
        Err(error) => {
            tracing::error!(room = room_id, %error, "cluster: cannot read the room from the store to fill a gap");
        }
    }
}

/// The id of a stream's newest entry, or `0-0` for an empty or missing stream.
async fn last_id(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Result<String, redis::RedisError> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(match reply {
        Value::Array(entries) => entries.first().and_then(entry_id),
        _ => None,
    }
    .unwrap_or_else(|| "0-0".to_owned()))
}

fn entry_id(entry: &Value) -> Option<String> {
    match entry {
        Value::Array(parts) => match parts.first()? {
            Value::BulkString(id) => String::from_utf8(id.clone()).ok(),
            Value::SimpleString(id) => Some(id.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// XREAD's reply as (stream key, entries); RESP2 answers an array of pairs, RESP3
/// a map.
fn streams(reply: Value) -> Vec<(String, Vec<Value>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.pop()?;
                    let key = pair.pop()?;
                    Some((key, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut streams = HashMap::new();
    for (key, entries) in pairs {
        let key = match key {
            Value::BulkString(key) => String::from_utf8_lossy(&key).into_owned(),
            Value::SimpleString(key) => key,
            _ => continue,
        };
        if let Value::Array(entries) = entries {
            streams.insert(key, entries);
        }
    }
    streams.into_iter().collect()
}
