//! Where documents live when they are not in memory: the `Store` trait and its
//! implementations (embedded SQLite by default, MongoDB when configured; an
//! in-memory one for tests).
//!
//! Two records are kept per room, on purpose separate:
//! - the *durable state*: a compacted snapshot plus an append-only log of every
//!   accepted update after it, written in batches by the journal (automatic, and
//!   before any other client sees the update, unless `--durability relaxed`);
//! - the *checkpoint*: what `POST /api/rooms/{id}/persist` saved, in the original
//!   backend's `room_documents` shape, restored by `GET /api/rooms/{id}/load`.
//!
//! `DELETE /api/rooms/{id}` removes both, as a journal write (`WriteOp::Delete`).
//!
//! With history kept (`--history-retention`), a compaction does not drop the log
//! entries it covers: they stay, with their time and author, until they are older
//! than the retention period, and the snapshot is kept among them as a base, so an
//! old version is read from the nearest snapshot before it plus a few updates.

pub mod conformance;
pub mod dump;
pub mod lease;
pub mod memory;
pub mod mongo;
pub mod sqlite;

use async_trait::async_trait;
use bytes::Bytes;

/// A failed store operation. Callers keep their data; what failed for now is retried,
/// what can never succeed is reported and set aside.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The store refuses the write as it is (too large, invalid): retrying the same
    /// write cannot succeed.
    #[error("store refused the write: {0}")]
    Rejected(String),
}

impl StoreError {
    /// True when retrying the same operation cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Rejected(_))
    }
}

/// One accepted update, numbered in its room's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedUpdate {
    pub room_id: String,
    pub seq: u64,
    pub data: Bytes,
    /// When the room accepted it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who made it (a user's name, or a client id), where known.
    pub author: Option<String>,
}

/// A room's compacted snapshot: its full state as of `through_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub room_id: String,
    pub through_seq: u64,
    pub data: Bytes,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// History kept (`--history-retention`): log entries and snapshots from this
    /// time on stay readable as versions, and the snapshot is kept in the history
    /// too. `None`: what the snapshot covers is dropped, as without history.
    pub keep_history_since_ms: Option<i64>,
    /// A cluster node's count of the room's deletions when it opened the room:
    /// a store holding a deletion's fence from a later count refuses the
    /// snapshot (it holds the deleted room). `None` off a cluster.
    pub deletions: Option<u64>,
}

/// One entry of a room's history: an update, or a snapshot the history keeps as a
/// base to read versions from quickly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at_ms: i64,
    /// Bytes of the update (or snapshot).
    pub size: u64,
    pub author: Option<String>,
    pub snapshot: bool,
}

/// What rebuilds a room's document as of one sequence number: `base` (a kept
/// snapshot, or nothing when the history starts at the room's beginning), then
/// `updates` in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionData {
    pub base: Option<Bytes>,
    pub updates: Vec<Bytes>,
}

/// The history a store keeps: entries in sequence order, readable from `readable_from`
/// (the oldest kept snapshot, or 1 when the room's whole log is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
}

impl History {
    /// The first sequence number a version can be read at, if any.
    pub fn readable_from(&self) -> Option<u64> {
        let first = self.entries.first()?;
        if first.seq == 1 || first.snapshot {
            return Some(first.seq);
        }
        self.entries
            .iter()
            .find(|entry| entry.snapshot)
            .map(|entry| entry.seq)
    }
}

/// Which kept entries a compaction with history leaves: everything from the newest
/// kept snapshot older than `since_ms` on (it is the base of the oldest version still
/// inside the retention period); nothing is dropped while no snapshot is that old.
pub fn history_floor(entries: &[HistoryEntry], since_ms: i64) -> Option<u64> {
    entries
        .iter()
        .filter(|entry| entry.snapshot && entry.at_ms < since_ms)
        .map(|entry| entry.seq)
        .max()
}

/// Everything needed to rebuild a room: merge `snapshot` then `updates` in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    pub snapshot: Option<Bytes>,
    /// Log entries after the snapshot, in sequence order.
    pub updates: Vec<Bytes>,
    /// Highest sequence number the room has used; new updates continue after it.
    pub last_seq: u64,
}

/// One write the journal hands to the store, in the order the rooms produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Append(LoggedUpdate),
    /// Replace the snapshot and drop log entries up to its `through_seq`.
    Compact(Snapshot),
    /// Remove everything stored for the room: log, snapshot and checkpoint. Going
    /// through the journal orders it after every write the room made before it;
    /// nothing of the room follows it in a batch (the registry loads a deleted room
    /// again only once its delete is written).
    Delete(RoomDeletion),
}

/// The last write of a deleted room; `seq` follows the room's other writes, so the
/// room hears it was written like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDeletion {
    pub room_id: String,
    pub seq: u64,
}

impl WriteOp {
    pub fn room_id(&self) -> &str {
        match self {
            WriteOp::Append(update) => &update.room_id,
            WriteOp::Compact(snapshot) => &snapshot.room_id,
            WriteOp::Delete(deletion) => &deletion.room_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            WriteOp::Append(update) => update.seq,
            WriteOp::Compact(snapshot) => snapshot.through_seq,
            WriteOp::Delete(deletion) => deletion.seq,
        }
    }

    /// The update or snapshot bytes the operation carries.
    pub fn data_len(&self) -> usize {
        match self {
            WriteOp::Append(update) => update.data.len(),
            WriteOp::Compact(snapshot) => snapshot.data.len(),
            WriteOp::Delete(_) => 0,
        }
    }
}

/// A room's checkpoint as stored: the document and the `updated_at` text the
/// original backend's shape keeps with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub data: Bytes,
    pub updated_at: String,
}

/// A room's current snapshot as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub through_seq: u64,
    pub at_ms: i64,
    pub data: Bytes,
}

/// One row of a room's log as stored: an update, or a snapshot the history keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub at_ms: i64,
    pub author: Option<String>,
    pub snapshot: bool,
    pub data: Bytes,
}

/// What a room holds besides its log, for copying a store (`coedit dump`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomParts {
    pub checkpoint: Option<StoredCheckpoint>,
    pub snapshot: Option<StoredSnapshot>,
}

/// Storage backend. Implementations must apply a batch of `WriteOp`s in order, and
/// must make `load_durable` correct even while a compaction of the same room is in
/// flight (write the snapshot before deleting the log it covers).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite`, `mongodb`, `memory`: shown in health and logs.
    fn backend(&self) -> &'static str;

    /// Why the store takes no writes though it answers reads (MongoDB without
    /// the writer lease), if it does not.
    fn writes_held(&self) -> Option<String> {
        None
    }

    /// Writes a batch of journal operations, all or (on error) possibly some; a
    /// retried batch must be harmless to write twice.
    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError>;

    /// The room's latest durable state, or `None` if it has never been written.
    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError>;

    /// Saves an explicit checkpoint (the `persist` endpoint).
    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError>;

    /// The last explicit checkpoint, including one written by the original backend.
    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError>;

    /// The room's kept history (metadata only), oldest first.
    async fn history(&self, room_id: &str) -> Result<History, StoreError>;

    /// The base and updates that rebuild the room as of `seq`, or `None` when the
    /// history does not reach back that far.
    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<VersionData>, StoreError>;

    /// Removes everything stored for the room (log, snapshot, checkpoint). The
    /// server deletes through the journal instead, to keep the delete in order with
    /// the room's writes; this is the same operation for tools and tests.
    async fn delete_room(&self, room_id: &str) -> Result<(), StoreError> {
        self.write(&[WriteOp::Delete(RoomDeletion {
            room_id: room_id.to_owned(),
            seq: 0,
        })])
        .await
    }

    /// Removes everything stored for the room, like `delete_room`, and keeps its
    /// numbers up to `through_seq` (and any it stored past that) used: writes of
    /// those numbers that land afterwards (a cluster node's persister that was
    /// copying the room's log when it was deleted) are never read, and the room
    /// starts again empty after them (`load_durable` answers the fence's number with
    /// nothing to merge). A store only one server writes has no late writes: by
    /// default this deletes.
    ///
    /// `deletions` is the room's count of deletions, this one included: a
    /// compaction from a writer that counted fewer is refused.
    async fn delete_room_fenced(
        &self,
        room_id: &str,
        through_seq: u64,
        deletions: u64,
    ) -> Result<(), StoreError> {
        let _ = (through_seq, deletions);
        self.delete_room(room_id).await
    }

    /// The number a deletion fenced the room's log at (`delete_room_fenced`), 0
    /// for none: where a cluster numbers a room that has nothing else stored.
    async fn fenced_through(&self, room_id: &str) -> Result<u64, StoreError> {
        let _ = room_id;
        Ok(0)
    }

    /// Every room with anything stored (log, snapshot or checkpoint), sorted by id.
    async fn list_rooms(&self) -> Result<Vec<String>, StoreError>;

    /// The room's checkpoint and current snapshot, as stored.
    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError>;

    /// Up to `limit` rows of the room's log (updates and kept snapshots) after
    /// `after_seq`, in sequence order: a room is read page by page, however large.
    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError>;

    /// Writes the parts that are set, as they are (no compaction, no pruning). For
    /// restoring a copy into a store no server is using.
    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError>;

    /// Writes log rows as they are, straight into the room's log. For restoring a
    /// copy into a store no server is using.
    async fn write_entries(&self, room_id: &str, entries: &[StoredEntry])
        -> Result<(), StoreError>;

    /// The highest number the room's log (or snapshot) holds, 0 for none: where a
    /// writer copying a log from elsewhere starts, so it does not store twice what
    /// an earlier writer stored.
    async fn logged_through(&self, room_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .load_durable(room_id)
            .await?
            .map_or(0, |state| state.last_seq))
    }

    /// The number the room's snapshot covers, 0 for none: every number up to it
    /// is in the snapshot (or behind a deletion's fence), unlike `logged_through`,
    /// which a log with a hole in it (a batch stored in part) can pass.
    async fn compacted_through(&self, room_id: &str) -> Result<u64, StoreError> {
        let _ = room_id;
        Ok(0)
    }

    /// Cheap round trip used to tell when a failing store has come back.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes whatever the backend buffers itself; called once on shutdown.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
