//! Brings other nodes' updates into the rooms this node holds. Each entry appended
//! to a room's stream is also pushed on the room's channel (`log::APPEND`), and the
//! subscriber hands it here (`pushed`): in the common case an update reaches every
//! node in one message, with no per-node read of the stream.
//!
//! The stream is still the record. Entries are numbered without gaps, so a missed
//! push shows as a gap and sends the reader to the stream; it also reads every
//! held stream after the subscription (re)connects or gains a room, and every
//! `SWEEP` in case the last push of a burst went missing. Cursors advance only past
//! entries handled, so an outage delays updates, never drops them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::log::Entry;
use super::{lock, room_of, seq_key, Cluster};

/// How often every held stream is read even when no push asked for it.
const SWEEP: Duration = Duration::from_secs(2);
/// Entries taken per stream per read.
const COUNT: usize = 512;
/// How soon a catch-up the store failed is tried again, doubling up to the last.
const CATCH_UP_FIRST_RETRY: Duration = Duration::from_millis(500);
const CATCH_UP_LAST_RETRY: Duration = Duration::from_secs(30);

pub(super) async fn run(cluster: Cluster, shutdown: CancellationToken) {
    loop {
        let mut sweep = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = cluster.inner.read_log.notified() => false,
            _ = tokio::time::sleep(SWEEP) => true,
        };
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = read_streams(&cluster, std::mem::take(&mut sweep)) => read,
            };
            match read {
                Ok(more) => {
                    cluster.report("reader", Ok(()));
                    if !more {
                        break;
                    }
                }
                Err(error) => {
                    cluster.report("reader", Err(error.to_string()));
                    break;
                }
            }
        }
    }
}

/// An entry pushed on `room_id`'s channel. The next one in the room's order is
/// merged at once; one past a gap (a push went missing) sends the reader to the
/// stream, which holds them all, in order.
pub(super) fn pushed(cluster: &Cluster, room_id: &str, payload: &[u8]) {
    let Some(entry) = Entry::from_push(payload) else {
        tracing::debug!(room = room_id, "ignoring an unreadable pushed log entry");
        return;
    };
    merge(
        cluster,
        room_id,
        std::slice::from_ref(&entry),
        Gap::ReadStream,
    );
}

/// One non-blocking `XREAD` over every held room's stream from its cursor; true
/// when a stream had more than one read takes.
///
/// A `sweep` also reads the rooms' counters first. Entries are numbered and added
/// to the stream in one step, so a room whose counter is still ahead of what it
/// merged once the stream is read lacks entries the persister trimmed before this
/// node read them. A later entry would show that gap; after the last ones of a
/// burst nothing would, so the room is read from MongoDB.
async fn read_streams(cluster: &Cluster, sweep: bool) -> Result<bool, redis::RedisError> {
    let mut pipe = redis::pipe();
    let mut counted: Vec<String> = Vec::new();
    {
        let watched = cluster.watched();
        if watched.is_empty() {
            return Ok(false);
        }
        if sweep {
            for (room_id, _) in watched.iter().filter(|(_, room)| room.catching_up == 0) {
                pipe.cmd("GET").arg(seq_key(room_id));
                counted.push(room_id.clone());
            }
        }
        let command = pipe.cmd("XREAD").arg("COUNT").arg(COUNT).arg("STREAMS");
        // `arg` copies into the command: built under one look at the rooms.
        for watched in watched.values() {
            command.arg(&watched.key);
        }
        for watched in watched.values() {
            command.arg(&watched.cursor);
        }
    }
    let mut conn = cluster.inner.conn.clone();
    let mut replies: Vec<Value> = pipe.query_async(&mut conn).await?;
    let reply = replies.pop().unwrap_or(Value::Nil);
    let mut more = false;
    let mut full: Vec<String> = Vec::new();
    for (key, entries) in streams(reply) {
        let Some(room_id) = room_of(&key) else {
            continue;
        };
        if entries.len() >= COUNT {
            more = true;
            full.push(room_id.to_owned());
        }
        let entries: Vec<Entry> = entries.iter().filter_map(Entry::parse).collect();
        merge(cluster, room_id, &entries, Gap::ReadStore);
    }
    for (room_id, counter) in counted.iter().zip(replies) {
        let counter: Option<u64> = redis::from_redis_value(counter).unwrap_or(None);
        if full.contains(room_id) {
            continue;
        }
        let behind = {
            let mut watched = cluster.watched();
            match watched.get_mut(room_id.as_str()) {
                Some(watched)
                    if watched.catching_up == 0
                        && counter.is_some_and(|counter| counter > watched.applied_seq) =>
                {
                    watched.catching_up += 1;
                    Some(watched.room.clone())
                }
                _ => None,
            }
        };
        if let Some(room) = behind {
            tracing::warn!(
                room = room_id.as_str(),
                "cluster: the room's last entries were trimmed before this node read them; reading it from the store"
            );
            let cluster = cluster.clone();
            let room_id = room_id.clone();
            tokio::spawn(async move { catch_up(&cluster, &room_id, &room).await });
        }
    }
    Ok(more)
}

/// What a gap in a room's numbers means where the entries came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Pushed: a push went missing; the stream has the entries.
    ReadStream,
    /// Read from the stream: the entries were trimmed before this node read them
    /// (it lagged by more than the persister's `KEEP_FOR`); MongoDB has them.
    ReadStore,
}

/// Merges a room's new entries, in order: other nodes' updates go into the document
/// (and to this node's clients); this node's own are only counted past. One merge
/// at a time, so pushes and stream reads never interleave within a room.
fn merge(cluster: &Cluster, room_id: &str, entries: &[Entry], on_gap: Gap) {
    let _merging = lock(&cluster.inner.merging);
    let (room, applied) = {
        let watched = cluster.watched();
        let Some(watched) = watched.get(room_id) else {
            return;
        };
        (watched.room.clone(), watched.applied_seq)
    };
    let instance = cluster.instance();
    let mut highest = applied;
    let mut last_id = None;
    let mut gap = false;
    for entry in entries {
        if entry.seq <= highest {
            // Already in the document (read when the room was loaded, or pushed):
            // the cursor may pass it, so no read returns it again.
            last_id = Some(&entry.id);
            continue;
        }
        if entry.seq > highest + 1 {
            gap = true;
            if on_gap == Gap::ReadStream {
                break;
            }
        }
        if entry.node != instance && !room.apply_remote(&entry.data, &entry.client) {
            // The room closed meanwhile (it is leaving this node): what it did not
            // merge must not count as merged, or its last compaction would claim it.
            break;
        }
        highest = entry.seq;
        last_id = Some(&entry.id);
        if entry.node == instance {
            continue;
        }
        cluster
            .inner
            .counters
            .remote_updates
            .fetch_add(1, Ordering::Relaxed);
    }
    if let Some(watched) = cluster.watched().get_mut(room_id) {
        if gap && on_gap == Gap::ReadStore {
            watched.catching_up += 1;
        }
        watched.applied_seq = watched.applied_seq.max(highest);
        if let Some(id) = last_id {
            if stream_order(id) > stream_order(&watched.cursor) {
                watched.cursor.clone_from(id);
            }
        }
    }
    if !gap {
        return;
    }
    match on_gap {
        Gap::ReadStream => cluster.inner.read_log.notify_one(),
        Gap::ReadStore => {
            tracing::warn!(
                room = room_id,
                "cluster: this node missed entries of the room's log; reading it from the store"
            );
            let cluster = cluster.clone();
            let room_id = room_id.to_owned();
            tokio::spawn(async move { catch_up(&cluster, &room_id, &room).await });
        }
    }
}

/// A stream entry id (`milliseconds-sequence`) as something that orders like it.
fn stream_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Merges everything the store holds for a room (after a gap in its log), trying
/// again until it can: until then the room's document lacks entries, and the room
/// is not compacted from it.
async fn catch_up(cluster: &Cluster, room_id: &str, room: &crate::server::room::Room) {
    let mut wait = CATCH_UP_FIRST_RETRY;
    loop {
        match cluster.inner.shared.load_durable(room_id).await {
            Ok(stored) => {
                for update in stored
                    .iter()
                    .flat_map(|stored| stored.snapshot.iter().chain(&stored.updates))
                {
                    if !room.apply_remote(update, "") {
                        return;
                    }
                }
                if let Some(watched) = cluster.watched().get_mut(room_id) {
                    if watched.room.same(room) {
                        watched.catching_up = watched.catching_up.saturating_sub(1);
                        // Everything MongoDB holds is merged now.
                        let through = stored.as_ref().map_or(0, |stored| stored.last_seq);
                        watched.applied_seq = watched.applied_seq.max(through);
                    }
                }
                return;
            }
            Err(error) => {
                tracing::error!(room = room_id, %error, "cluster: cannot read the room from the store to fill a gap; trying again in {wait:?}");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(CATCH_UP_LAST_RETRY);
        // A room closed meanwhile is read whole from the store when it opens again.
        let held = cluster
            .watched()
            .get(room_id)
            .is_some_and(|watched| watched.room.same(room));
        if !held {
            return;
        }
    }
}

/// XREAD's reply as (stream key, entries); RESP2 answers an array of pairs, RESP3
/// a map, and nothing new is nil.
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
    pairs
        .into_iter()
        .filter_map(|(key, entries)| {
            let key = match key {
                Value::BulkString(key) => String::from_utf8_lossy(&key).into_owned(),
                Value::SimpleString(key) => key,
                _ => return None,
            };
            match entries {
                Value::Array(entries) => Some((key, entries)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(stream_order("1700000000000-2") > stream_order("1700000000000-1"));
        assert!(stream_order("1700000000001-0") > stream_order("1700000000000-9"));
        assert!(stream_order("10-0") > stream_order("9-5"));
        assert!(stream_order("1-0") > stream_order("0-0"));
    }
}
