//! The store a cluster node's journal and registry use: updates go to the room's
//! Redis stream (the shared log), everything else to MongoDB.
//!
//! An append is one Lua script, atomic in Redis: it numbers the update after the
//! room's last number (never below what MongoDB already holds), and skips an
//! operation this node already appended (a retried batch), so the stream holds
//! every update exactly once. The journal hears "written" only once Redis
//! acknowledged it, so write-ahead relay holds on every node.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;

use super::{
    applied_key, channel, deletions_key, lease_key, lock, log_key, seq_key, users_key, Cluster,
    Opened,
};
use crate::server::store::{
    DurableState, History, RoomParts, Store, StoreError, StoredEntry, VersionData, WriteOp,
};

/// Appends one operation: KEYS log, seq, applied, deletions; ARGV base, instance,
/// local seq, data, client, author, time, channel, deletions known. Returns the
/// update's number, 0 when the operation was appended before, or -1 when the room
/// was deleted since this node opened it (its notice never came): nothing of the
/// deleted room may reach the room of that name that followed it.
///
/// The entry is also published on the room's channel (see `Entry::from_push`), so
/// the nodes holding the room get it pushed instead of each polling every stream;
/// the stream stays the record they catch up from when a push is missed.
const APPEND: &str = r"
if tonumber(redis.call('GET', KEYS[4]) or '0') > tonumber(ARGV[9]) then return -1 end
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if tonumber(ARGV[3]) <= last then return 0 end
if redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], 86400000)
end
local seq = redis.call('INCR', KEYS[2])
local base = tonumber(ARGV[1])
if seq <= base then
  seq = base + 1
  redis.call('SET', KEYS[2], seq)
end
local id = redis.call('XADD', KEYS[1], '*', 's', seq, 'u', ARGV[4], 'n', ARGV[2], 'c', ARGV[5], 'a', ARGV[6], 't', ARGV[7])
local function field(value)
  value = tostring(value)
  return #value .. ':' .. value
end
redis.call('PUBLISH', ARGV[8], '\0' .. field(id) .. field(seq) .. field(ARGV[2])
  .. field(ARGV[5]) .. field(ARGV[6]) .. field(ARGV[7]) .. field(ARGV[4]))
return seq
";

/// The first byte of a log entry pushed on a room's channel; presence events there
/// are JSON, which never starts with it.
pub(super) const PUSHED_ENTRY: u8 = 0;

/// One entry of a room's stream.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub id: String,
    pub seq: u64,
    pub data: Bytes,
    pub node: String,
    pub client: String,
    pub author: Option<String>,
    pub at_ms: i64,
}

impl Entry {
    /// Reads a stream entry as XRANGE/XREAD return it: `[id, [field, value, …]]`.
    pub(super) fn parse(value: &Value) -> Option<Self> {
        let Value::Array(parts) = value else {
            return None;
        };
        let id = text(parts.first()?)?;
        let Value::Array(fields) = parts.get(1)? else {
            return None;
        };
        let mut entry = Entry {
            id,
            seq: 0,
            data: Bytes::new(),
            node: String::new(),
            client: String::new(),
            author: None,
            at_ms: 0,
        };
        for pair in fields.chunks(2) {
            let [name, value] = pair else { continue };
            match text(name)?.as_str() {
                "s" => entry.seq = text(value)?.parse().ok()?,
                "u" => entry.data = bytes(value)?,
                "n" => entry.node = text(value)?,
                "c" => entry.client = text(value)?,
                "a" => entry.author = text(value).filter(|author| !author.is_empty()),
                "t" => entry.at_ms = text(value)?.parse().ok()?,
                _ => {}
            }
        }
        (entry.seq > 0).then_some(entry)
    }

    /// Reads an entry as the append script publishes it, after `PUSHED_ENTRY`:
    /// id, number, node, client, author, time and update, each as `length:bytes`.
    pub(super) fn from_push(mut payload: &[u8]) -> Option<Self> {
        let payload = &mut payload;
        let text = |payload: &mut &[u8]| String::from_utf8(pushed_field(payload)?.to_vec()).ok();
        let id = text(payload)?;
        let seq = text(payload)?.parse().ok()?;
        let node = text(payload)?;
        let client = text(payload)?;
        let author = text(payload)?;
        let at_ms = text(payload)?.parse().ok()?;
        let data = Bytes::copy_from_slice(pushed_field(payload)?);
        Some(Entry {
            id,
            seq,
            data,
            node,
            client,
            author: Some(author).filter(|author| !author.is_empty()),
            at_ms,
        })
        .filter(|entry| entry.seq > 0)
    }
}

/// The next `length:bytes` field of a pushed entry.
fn pushed_field<'a>(payload: &mut &'a [u8]) -> Option<&'a [u8]> {
    let colon = payload.iter().position(|&byte| byte == b':')?;
    let length: usize = std::str::from_utf8(&payload[..colon]).ok()?.parse().ok()?;
    let rest = &payload[colon + 1..];
    let value = rest.get(..length)?;
    *payload = &rest[length..];
    Some(value)
}

fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(data) => Some(Bytes::copy_from_slice(data)),
        Value::SimpleString(data) => Some(Bytes::copy_from_slice(data.as_bytes())),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|data| String::from_utf8(data.to_vec()).ok())
}

/// The entries of a stream from `start` (inclusive), up to `count`.
pub(super) async fn range(
    conn: &mut redis::aio::ConnectionManager,
    room_id: &str,
    start: &str,
    count: usize,
) -> Result<Vec<Entry>, redis::RedisError> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(log_key(room_id))
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    Ok(entries.iter().filter_map(Entry::parse).collect())
}

/// Entries read per `XRANGE` when a whole stream is read: a stream that grew
/// through a long MongoDB outage is read in steps, each well inside the Redis
/// client's response timeout, and none holds Redis up for long.
const PAGE: usize = 1000;

/// Every entry of a stream, read `PAGE` at a time.
async fn whole_stream(
    conn: &mut redis::aio::ConnectionManager,
    room_id: &str,
) -> Result<Vec<Entry>, redis::RedisError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page = range(conn, room_id, &start, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(entries);
        };
        start = next_id(&last.id);
        let full = page.len() == PAGE;
        entries.extend(page);
        if !full {
            return Ok(entries);
        }
    }
}

/// The stream id right after `id`: where a read that has `id` goes on from.
pub(super) fn next_id(id: &str) -> String {
    match id.split_once('-') {
        Some((ms, seq)) => match seq.parse::<u64>() {
            Ok(seq) => format!("{ms}-{}", seq + 1),
            Err(_) => id.to_owned(),
        },
        None => id.to_owned(),
    }
}

/// The room's counter (the highest number Redis gave it) and how many times it
/// was deleted, 0 for none.
async fn counts(
    conn: &mut redis::aio::ConnectionManager,
    room_id: &str,
) -> Result<(u64, u64), StoreError> {
    let (numbered, deletions): (Option<u64>, Option<u64>) = redis::pipe()
        .cmd("GET")
        .arg(seq_key(room_id))
        .cmd("GET")
        .arg(deletions_key(room_id))
        .query_async(conn)
        .await
        .map_err(|error| ClusterStore::unavailable(&error))?;
    Ok((numbered.unwrap_or(0), deletions.unwrap_or(0)))
}

/// Journal and registry store of a cluster node.
pub struct ClusterStore {
    cluster: Cluster,
    append: redis::Script,
}

impl ClusterStore {
    pub(super) fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            append: redis::Script::new(APPEND),
        }
    }

    fn unavailable(error: &redis::RedisError) -> StoreError {
        StoreError::Unavailable(format!("Redis: {error}"))
    }

    async fn append(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        let inner = &self.cluster.inner;
        let mut pipe = redis::pipe();
        let mut rooms: Vec<&str> = Vec::with_capacity(batch.len());
        {
            let bases = lock(&inner.bases);
            let watched = self.cluster.watched();
            for op in batch {
                let (room_id, data, client, author, at_ms) = match op {
                    WriteOp::Append(update) => (
                        &update.room_id,
                        &update.data,
                        update.author.as_deref().unwrap_or(""),
                        update.author.as_deref().unwrap_or(""),
                        update.at_ms,
                    ),
                    // A snapshot is the whole document: as a log entry it is just an
                    // update that holds everything (and the base of a room opened
                    // from a checkpoint).
                    WriteOp::Compact(snapshot) => {
                        (&snapshot.room_id, &snapshot.data, "", "", snapshot.at_ms)
                    }
                    WriteOp::Delete(_) => continue,
                };
                let (base, deletions) = bases.get(room_id.as_str()).copied().unwrap_or((0, 0));
                // The floor is the highest number this node knows the room used: a
                // Redis whose counter went back (restarted without its data, or a
                // replica promoted before it had the last appends) must not hand
                // out numbers the other nodes have merged, or they would skip
                // this update as one they hold.
                let floor = watched.get(room_id.as_str()).map_or(base, |watched| {
                    base.max(watched.applied_seq).max(watched.persisted_seq)
                });
                let mut command = redis::cmd("EVALSHA");
                command
                    .arg(self.append.get_hash())
                    .arg(4)
                    .arg(log_key(room_id))
                    .arg(seq_key(room_id))
                    .arg(applied_key(room_id))
                    .arg(deletions_key(room_id))
                    .arg(floor)
                    .arg(&inner.instance)
                    .arg(op.seq())
                    .arg(data.as_ref())
                    .arg(client)
                    .arg(author)
                    .arg(at_ms)
                    .arg(channel(room_id))
                    .arg(deletions);
                pipe.add_command(command);
                rooms.push(room_id);
            }
        }
        if rooms.is_empty() {
            return Ok(());
        }
        if rooms.len() > 1 {
            // All or none: a command refused while the others ran (Redis still
            // loading its append-only file, out of memory) would leave this node's
            // mark past it, and the retried batch would skip it as appended.
            pipe.atomic();
        }
        let mut conn = inner.conn.clone();
        let result: Result<Vec<i64>, redis::RedisError> = pipe.query_async(&mut conn).await;
        let numbers = match result {
            Ok(numbers) => numbers,
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // Redis restarted and lost its script cache: load it and go again.
                self.append
                    .load_async(&mut conn)
                    .await
                    .map_err(|error| Self::unavailable(&error))?;
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|error| Self::unavailable(&error))?
            }
            Err(error) => return Err(Self::unavailable(&error)),
        };
        // Refused: the room was deleted since this node opened it. Its operations
        // are dropped (as the room's own would be had the notice come) and the
        // room is closed as deleted, off the journal's task.
        let mut deleted: Vec<String> = rooms
            .iter()
            .zip(&numbers)
            .filter(|(_, &number)| number < 0)
            .map(|(room_id, _)| (*room_id).to_owned())
            .collect();
        deleted.dedup();
        if !deleted.is_empty() {
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                for room_id in deleted {
                    cluster.missed_deletion(&room_id);
                }
            });
        }
        inner
            .counters
            .appended
            .fetch_add(rooms.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes a room from MongoDB and from Redis, and tells the other nodes to close
    /// it. MongoDB keeps a fence at the highest number the room used, so what a
    /// node's persister was copying meanwhile and writes afterwards is never read
    /// (`Store::delete_room_fenced`). The fence goes first, at the number Redis
    /// had; numbers the room took before its stream went (in the same atomic step)
    /// move it on. The room's counter stays, as every room's does, so a retried
    /// delete fences as far, and the room's next updates are numbered past the
    /// fence even on a node that read the first one. (It cannot expire: a counter
    /// that vanished under a live room would hand out numbers again.)
    async fn delete(&self, room_id: &str) -> Result<(), StoreError> {
        let inner = &self.cluster.inner;
        let mut conn = inner.conn.clone();
        let unavailable = |error: redis::RedisError| Self::unavailable(&error);
        let (numbered, deletions) = counts(&mut conn, room_id).await?;
        // This deletion's count: MongoDB then refuses compactions from nodes that
        // opened the room before it.
        let deletions = deletions + 1;
        inner
            .shared
            .delete_room_fenced(room_id, numbered, deletions)
            .await?;
        let (last,): (Option<u64>,) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(seq_key(room_id))
            .cmd("DEL")
            .arg(log_key(room_id))
            .arg(applied_key(room_id))
            .arg(users_key(room_id))
            .arg(lease_key(room_id))
            .ignore()
            .cmd("INCR")
            .arg(deletions_key(room_id))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if let Some(last) = last.filter(|&last| last > numbered) {
            inner
                .shared
                .delete_room_fenced(room_id, last, deletions)
                .await?;
        }
        let notice = super::events::deleted_notice(&inner.instance);
        let _: () = redis::cmd("PUBLISH")
            .arg(channel(room_id))
            .arg(notice)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Store for ClusterStore {
    fn writes_held(&self) -> Option<String> {
        self.cluster.inner.shared.writes_held()
    }

    fn backend(&self) -> &'static str {
        "mongodb+redis"
    }

    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        // Appends and deletes keep their order: a delete ends its room's batch.
        let mut start = 0;
        for (index, op) in batch.iter().enumerate() {
            if let WriteOp::Delete(deletion) = op {
                self.append(&batch[start..index]).await?;
                self.delete(&deletion.room_id).await?;
                start = index + 1;
            }
        }
        self.append(&batch[start..]).await
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        let inner = &self.cluster.inner;
        let mut conn = inner.conn.clone();
        // The stream first, then MongoDB: whatever the persister trims in between
        // is in MongoDB by then (it trims only what MongoDB has).
        let entries = whole_stream(&mut conn, room_id)
            .await
            .map_err(|error| Self::unavailable(&error))?;
        let users = super::events::room_users(&mut conn, room_id)
            .await
            .map_err(|error| Self::unavailable(&error))?;
        let (counter, deletions) = counts(&mut conn, room_id).await?;
        let stored = inner.shared.load_durable(room_id).await?;
        // Nothing to load may still be a deleted room's fence: number after it
        // (the Redis counter does too, unless Redis lost it).
        let base = match &stored {
            Some(stored) => stored.last_seq,
            None => inner.shared.fenced_through(room_id).await?,
        };
        lock(&inner.bases).insert(room_id.to_owned(), (base, deletions));
        let last_entry = entries.last().map(|entry| entry.seq).unwrap_or(0);
        let mongo_log = stored
            .as_ref()
            .map_or(0, |stored| stored.updates.len() as u64);
        lock(&inner.opened).insert(
            room_id.to_owned(),
            Opened {
                cursor: entries
                    .last()
                    .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone()),
                applied_seq: base.max(last_entry),
                persisted_seq: base,
                since_compact: mongo_log,
                users,
                deletions,
            },
        );
        if stored.is_none() && entries.is_empty() {
            return Ok(None);
        }
        let stored_anything = stored.is_some();
        let (snapshot, mut updates) = match stored {
            Some(stored) => (stored.snapshot, stored.updates),
            None => (None, Vec::new()),
        };
        // Every entry the stream still holds, even those numbered below what
        // MongoDB holds: a batch stored there in part leaves a hole below its
        // highest number, and merging an entry twice adds nothing. Only a deleted
        // room's fence (`base` when nothing else is stored) is not crossed.
        let floor = if stored_anything { 0 } else { base };
        updates.extend(
            entries
                .into_iter()
                .filter(|entry| entry.seq > floor)
                .map(|entry| entry.data),
        );
        // The room numbers its own operations from here: above every number the
        // room has used anywhere, so a reload never repeats one (see APPEND).
        let last_seq = counter.max(base).max(last_entry);
        Ok(Some(DurableState {
            snapshot,
            updates,
            last_seq,
        }))
    }

    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.cluster
            .inner
            .shared
            .save_checkpoint(room_id, state)
            .await
    }

    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        self.cluster.inner.shared.load_checkpoint(room_id).await
    }

    async fn history(&self, room_id: &str) -> Result<History, StoreError> {
        // What is still only in the stream joins the history now. A node that does
        // not hold the room lets the lease go again at once, or the room's own
        // persister would wait out its TTL.
        let held_here = self.cluster.watched().contains_key(room_id);
        super::persist::persist_room(&self.cluster, room_id, None, !held_here).await;
        self.cluster.inner.shared.history(room_id).await
    }

    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<VersionData>, StoreError> {
        self.cluster.inner.shared.read_version(room_id, seq).await
    }

    // Copying a whole store (dump and restore) works on MongoDB itself, with no
    // server running; through a node it sees what MongoDB has.
    async fn list_rooms(&self) -> Result<Vec<String>, StoreError> {
        self.cluster.inner.shared.list_rooms().await
    }

    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        self.cluster.inner.shared.read_room_parts(room_id).await
    }

    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.cluster
            .inner
            .shared
            .read_entries(room_id, after_seq, limit)
            .await
    }

    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError> {
        self.cluster
            .inner
            .shared
            .write_room_parts(room_id, parts)
            .await
    }

    async fn write_entries(
        &self,
        room_id: &str,
        entries: &[StoredEntry],
    ) -> Result<(), StoreError> {
        self.cluster
            .inner
            .shared
            .write_entries(room_id, entries)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.cluster.inner.conn.clone();
        let _: () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|error| Self::unavailable(&error))?;
        self.cluster.inner.shared.ping().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.cluster.inner.shared.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as the append script builds it: `length:bytes` per field.
    fn frame(fields: &[&[u8]]) -> Vec<u8> {
        let mut frame = Vec::new();
        for field in fields {
            frame.extend_from_slice(field.len().to_string().as_bytes());
            frame.push(b':');
            frame.extend_from_slice(field);
        }
        frame
    }

    #[test]
    fn a_pushed_entry_reads_back_every_field() {
        let update = [0u8, 1, b':', 255, 7];
        let pushed = frame(&[
            b"1700000000000-3",
            b"42",
            b"node-1/ab12cd34",
            b"client: with colon",
            b"",
            b"1700000000000",
            &update,
        ]);
        let entry = Entry::from_push(&pushed).unwrap();
        assert_eq!(entry.id, "1700000000000-3");
        assert_eq!(entry.seq, 42);
        assert_eq!(entry.node, "node-1/ab12cd34");
        assert_eq!(entry.client, "client: with colon");
        assert_eq!(entry.author, None);
        assert_eq!(entry.at_ms, 1_700_000_000_000);
        assert_eq!(&entry.data[..], &update);
    }

    #[test]
    fn a_truncated_or_garbled_push_is_refused() {
        let whole = frame(&[b"1-0", b"1", b"n", b"c", b"a", b"0", b"data"]);
        for cut in 0..whole.len() {
            assert!(Entry::from_push(&whole[..cut]).is_none(), "cut at {cut}");
        }
        assert!(Entry::from_push(&frame(&[b"1-0", b"x", b"n", b"c", b"a", b"0", b"d"])).is_none());
        assert!(Entry::from_push(&frame(&[b"1-0", b"0", b"n", b"c", b"a", b"0", b"d"])).is_none());
        assert!(Entry::from_push(b"99999999999999999999:x").is_none());
    }
}
