//! Moves rooms' Redis streams into MongoDB, one node per room at a time.
//!
//! A node holding a room takes the room's persister lease (a Redis key with a
//! TTL, renewed while held), copies the stream's new entries into MongoDB's update
//! log under their sequence numbers, and only then trims them from the stream,
//! and only once they are `KEEP_FOR` old: every node reading the stream has long
//! read them by then (one that has not notices the gap in the numbers and reads
//! MongoDB, see `reader`). Entries go in as runs (one MongoDB document per room
//! per move) keyed by their first number; a node that just took the lease starts
//! after what MongoDB holds, and a run refused at its key writes only what lies
//! past the stored one. So two nodes that both believe they hold the lease (one
//! paused past its TTL) never store two different entries under one number and
//! never fewer: nothing is trimmed before MongoDB has it, and readers read each
//! number once. The leaseholder also compacts the room in MongoDB from its own
//! document, which holds every entry it has read.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::log::{next_id, range, Entry};
use super::{deletions_key, lease_key, lock, log_key, Cluster, Watched};
use crate::server::room::durable::{now_ms, room_hash};
use crate::server::room::Room;
use crate::server::store::{LoggedUpdate, Snapshot, WriteOp};

/// Each room is moved in one of this many slots of `--persist-every`, fixed by its
/// name: all rooms at once made a burst of Redis calls and MongoDB writes on every
/// node, which the rooms' relay felt as a latency spike.
const SLOTS: u32 = 10;
/// The shortest a lease outlives its holder's last renewal.
const MIN_LEASE_TTL: Duration = Duration::from_secs(10);
/// Entries copied per MongoDB write.
const CHUNK: usize = 1000;
/// How long an entry stays in the stream after it is in MongoDB: far longer than
/// any node takes to read it.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(30);

/// Takes or renews the lease (KEYS lease, deletions): 1 when this node held it
/// already, 2 when it just took it, 0 when another node holds it; and how many
/// times the room was deleted.
const TAKE: &str = r"
local deletions = tonumber(redis.call('GET', KEYS[2]) or '0')
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, deletions}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, deletions}
end
return {0, deletions}
";

/// Lets the lease go, if it is still this node's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long a lease outlives its holder's last renewal, when rooms are moved every
/// `every`: its holder renews it on each move, so three moves may go by (a slow
/// MongoDB, a busy node) before another node takes the room over.
fn lease_ttl(every: Duration) -> Duration {
    (every * 3).max(MIN_LEASE_TTL)
}

pub(super) async fn run(cluster: Cluster, shutdown: CancellationToken) {
    let every = cluster.inner.settings.persist_every;
    let mut interval = tokio::time::interval(every / SLOTS);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        slot = (slot + 1) % u64::from(SLOTS);
        let rooms: Vec<String> = cluster
            .watched()
            .keys()
            .filter(|room_id| in_slot(room_id, slot))
            .cloned()
            .collect();
        for room_id in rooms {
            persist_room(&cluster, &room_id, None, false).await;
        }
    }
}

/// Whether `room_id` is moved in `slot` of each `--persist-every`.
fn in_slot(room_id: &str, slot: u64) -> bool {
    room_hash(room_id) % u64::from(SLOTS) == slot
}

/// Moves what the room's stream holds into MongoDB if this node may (it holds or
/// takes the lease), compacting the room there when its log has grown. `retired`
/// is the room's state when it already left this node; `release` lets the lease go
/// afterwards.
pub(super) async fn persist_room(
    cluster: &Cluster,
    room_id: &str,
    retired: Option<&Watched>,
    release: bool,
) {
    let inner = &cluster.inner;
    let mut conn = inner.conn.clone();
    let held: Result<(i64, u64), _> = redis::Script::new(TAKE)
        .key(lease_key(room_id))
        .key(deletions_key(room_id))
        .arg(cluster.instance())
        .arg(lease_ttl(inner.settings.persist_every).as_millis() as u64)
        .invoke_async(&mut conn)
        .await;
    let (held, deletions) = match held {
        Ok(answer) => answer,
        Err(error) => {
            cluster.report("persister", Err(error.to_string()));
            return;
        }
    };
    if deleted_since_opened(cluster, room_id, retired, deletions) {
        if held == 2 {
            release_lease(cluster, room_id).await;
        }
        return;
    }
    // Where to copy from: after what this node copied while it held the lease, or
    // the whole stream when it just took it, skipping what MongoDB's snapshot
    // covers. Entries an earlier holder copied are stored again as they are
    // (MongoDB keeps one of each); skipping up to the highest number stored
    // would skip a hole the earlier holder left when a batch went in only in part.
    let copied = match held {
        1 => lock(&inner.persisted_ids).get(room_id).cloned(),
        2 => None,
        _ => return,
    };
    let mut start = copied.as_deref().map_or_else(|| "-".to_owned(), next_id);
    let stored_through = match copied {
        Some(_) => 0,
        None => match inner.shared.compacted_through(room_id).await {
            Ok(through) => through,
            Err(error) => {
                tracing::warn!(room = room_id, %error, "cannot move the room's log to the store yet");
                return;
            }
        },
    };
    let mut persisted_through = None;
    let mut moved = 0u64;
    loop {
        let entries = match range(&mut conn, room_id, &start, CHUNK).await {
            Ok(entries) => entries,
            Err(error) => {
                cluster.report("persister", Err(error.to_string()));
                return;
            }
        };
        let Some(last) = entries.last().cloned() else {
            break;
        };
        let ops: Vec<WriteOp> = entries
            .iter()
            .filter(|entry| entry.seq > stored_through)
            .map(|entry| logged(room_id, entry))
            .collect();
        if let Err(error) = inner.shared.write(&ops).await {
            tracing::warn!(room = room_id, %error, "cannot move the room's log to the store yet");
            return;
        }
        lock(&inner.persisted_ids).insert(room_id.to_owned(), last.id.clone());
        start = next_id(&last.id);
        // Only now may it go: MongoDB has every entry up to `last`. Entries stay
        // `KEEP_FOR` (stream ids begin with their time in milliseconds).
        let old_enough = format!(
            "{}-0",
            now_ms().saturating_sub(KEEP_FOR.as_millis() as i64).max(0)
        );
        let trimmed: Result<u64, _> = redis::cmd("XTRIM")
            .arg(log_key(room_id))
            .arg("MINID")
            .arg(earliest(&next_id(&last.id), &old_enough))
            .query_async(&mut conn)
            .await;
        if let Err(error) = trimmed {
            cluster.report("persister", Err(error.to_string()));
            return;
        }
        cluster.report("persister", Ok(()));
        moved += entries.len() as u64;
        persisted_through = Some(last.seq);
        inner
            .counters
            .persisted_entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if entries.len() < CHUNK {
            break;
        }
    }
    compact_if_due(cluster, room_id, retired, moved, persisted_through).await;
    if release {
        release_lease(cluster, room_id).await;
    }
}

/// Lets the room's lease go, if it is still this node's.
async fn release_lease(cluster: &Cluster, room_id: &str) {
    lock(&cluster.inner.persisted_ids).remove(room_id);
    let mut conn = cluster.inner.conn.clone();
    let _: Result<i64, _> = redis::Script::new(RELEASE)
        .key(lease_key(room_id))
        .arg(cluster.instance())
        .invoke_async(&mut conn)
        .await;
}

/// Whether the room was deleted (`deletions` is Redis' count) since this node
/// opened it, though no notice of it came (the node's subscription was down
/// then). The node then closes the room as deleted, as the notice would have: its
/// document still holds the deleted room, and a compaction from it would write
/// that back past the deletion's fence.
pub(super) fn deleted_since_opened(
    cluster: &Cluster,
    room_id: &str,
    retired: Option<&Watched>,
    deletions: u64,
) -> bool {
    let opened_with = match retired {
        Some(retired) => Some(retired.deletions),
        None => cluster
            .watched()
            .get(room_id)
            .map(|watched| watched.deletions),
    };
    // Only a count that grew: a Redis that lost its data counts from 0 again.
    if opened_with.is_none_or(|opened_with| deletions <= opened_with) {
        return false;
    }
    if retired.is_none() {
        cluster.missed_deletion(room_id);
    }
    true
}

fn logged(room_id: &str, entry: &Entry) -> WriteOp {
    WriteOp::Append(LoggedUpdate {
        room_id: room_id.to_owned(),
        seq: entry.seq,
        data: entry.data.clone(),
        at_ms: entry.at_ms,
        author: entry.author.clone(),
    })
}

/// Writes a MongoDB snapshot of the room once `compact_every` entries were moved
/// since the last one. It covers the entries up to the lowest of what was persisted
/// and what this node's document has merged: everything at or below that number is
/// in the document.
async fn compact_if_due(
    cluster: &Cluster,
    room_id: &str,
    retired: Option<&Watched>,
    moved: u64,
    persisted_through: Option<u64>,
) {
    let settings = &cluster.inner.settings;
    let due: Option<(Room, u64, u64)> = {
        let mut watched = cluster.watched();
        match watched.get_mut(room_id) {
            Some(watched) => {
                watched.since_compact += moved;
                if let Some(through) = persisted_through {
                    watched.persisted_seq = watched.persisted_seq.max(through);
                }
                // Not while the document lacks entries the log has.
                (watched.since_compact >= settings.compact_every && watched.catching_up == 0).then(
                    || {
                        watched.since_compact = 0;
                        (
                            watched.room.clone(),
                            watched.persisted_seq.min(watched.applied_seq),
                            watched.deletions,
                        )
                    },
                )
            }
            None => retired.and_then(|retired| {
                let persisted = persisted_through.unwrap_or(retired.persisted_seq);
                (retired.since_compact + moved >= settings.compact_every
                    && retired.catching_up == 0)
                    .then(|| {
                        (
                            retired.room.clone(),
                            persisted.min(retired.applied_seq),
                            retired.deletions,
                        )
                    })
            }),
        }
    };
    let Some((room, through_seq, deletions)) = due else {
        return;
    };
    // An entry of the log could not be read into the document: no snapshot from
    // it may claim that entry's number.
    if through_seq == 0 || room.keeps_log() {
        return;
    }
    let now = now_ms();
    let retention = settings.history_retention;
    let snapshot = Snapshot {
        room_id: room_id.to_owned(),
        through_seq,
        data: room.state(),
        at_ms: now,
        keep_history_since_ms: (!retention.is_zero())
            .then(|| now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))),
        // A delete that landed after this node read the count refuses it in MongoDB.
        deletions: Some(deletions),
    };
    if let Err(error) = cluster
        .inner
        .shared
        .write(&[WriteOp::Compact(snapshot)])
        .await
    {
        tracing::warn!(room = room_id, %error, "cannot compact the room in the store yet");
    }
}

/// The earlier of two stream ids.
fn earliest(a: &str, b: &str) -> String {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    if parse(a) <= parse(b) { a } else { b }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_starts_right_after_the_last_persisted_entry() {
        assert_eq!(next_id("1700000000000-0"), "1700000000000-1");
        assert_eq!(next_id("5-41"), "5-42");
        assert_eq!(earliest("10-5", "9-7"), "9-7");
        assert_eq!(earliest("10-5", "10-6"), "10-5");
    }

    #[test]
    fn a_lease_outlives_three_moves_and_never_less_than_ten_seconds() {
        assert_eq!(lease_ttl(Duration::from_millis(100)), MIN_LEASE_TTL);
        assert_eq!(lease_ttl(Duration::from_secs(1)), MIN_LEASE_TTL);
        assert_eq!(lease_ttl(Duration::from_secs(10)), Duration::from_secs(30));
    }

    #[test]
    fn every_room_is_moved_once_a_round_and_rooms_spread_over_the_round() {
        let rooms: Vec<String> = (0..50).map(|index| format!("bench-0-{index}")).collect();
        let mut per_slot = [0; SLOTS as usize];
        for room in &rooms {
            let slots: Vec<u64> = (0..u64::from(SLOTS))
                .filter(|&slot| in_slot(room, slot))
                .collect();
            assert_eq!(slots.len(), 1, "{room}: {slots:?}");
            per_slot[slots[0] as usize] += 1;
        }
        assert!(per_slot.iter().all(|&rooms| rooms <= 12), "{per_slot:?}");
    }
}
