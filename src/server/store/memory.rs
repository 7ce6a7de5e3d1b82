//! A store that keeps everything in process memory. For tests: it can be told to
//! fail, to exercise the journal's retry and backlog paths without a real outage,
//! or to refuse one room's writes for good, as a store refuses an oversized record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    history_floor, DurableState, History, HistoryEntry, RoomParts, Store, StoreError,
    StoredCheckpoint, StoredEntry, StoredSnapshot, VersionData, WriteOp,
};

/// One kept log entry: an update, or (with history) a snapshot kept as a base.
#[derive(Clone)]
struct Entry {
    data: Bytes,
    at_ms: i64,
    author: Option<String>,
    snapshot: bool,
}

impl Entry {
    fn meta(&self, seq: u64) -> HistoryEntry {
        HistoryEntry {
            seq,
            at_ms: self.at_ms,
            size: self.data.len() as u64,
            author: self.author.clone(),
            snapshot: self.snapshot,
        }
    }
}

#[derive(Default)]
struct Rooms {
    logs: HashMap<String, BTreeMap<u64, Entry>>,
    snapshots: HashMap<String, (u64, i64, Bytes)>,
    checkpoints: HashMap<String, StoredCheckpoint>,
}

/// Cloning shares the same contents, so a test can keep a handle to inspect them.
#[derive(Clone, Default)]
pub struct MemoryStore {
    /// A `std::sync::Mutex`: every operation is a few map look-ups, never awaited.
    rooms: Arc<Mutex<Rooms>>,
    failing: Arc<AtomicBool>,
    /// Rooms whose writes are refused as invalid; a `std::sync::Mutex` like `rooms`.
    refused: Arc<Mutex<HashSet<String>>>,
    /// Batches written so far.
    writes: Arc<AtomicUsize>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many batches were written (one store round trip each).
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }

    /// While set, every operation fails as an unreachable store would.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on, a batch holding a write of `room_id` is refused for good (its
    /// deletion goes through, as a database's document rules let deletes by).
    pub fn refuse_room(&self, room_id: &str) {
        if let Ok(mut refused) = self.refused.lock() {
            refused.insert(room_id.to_owned());
        }
    }

    fn rooms(&self) -> Result<std::sync::MutexGuard<'_, Rooms>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory store told to fail".into()));
        }
        self.rooms
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Ok(refused) = self.refused.lock() {
            let refused_write =
                |op: &&WriteOp| !matches!(op, WriteOp::Delete(_)) && refused.contains(op.room_id());
            if let Some(op) = batch.iter().find(refused_write) {
                return Err(StoreError::Rejected(format!(
                    "memory store refuses room {}",
                    op.room_id()
                )));
            }
        }
        let mut rooms = self.rooms()?;
        for op in batch {
            match op {
                WriteOp::Append(update) => {
                    let log = rooms.logs.entry(update.room_id.clone()).or_default();
                    // A retried append never replaces the history's snapshot at its
                    // number, which stands for it and everything before it.
                    if !log.get(&update.seq).is_some_and(|entry| entry.snapshot) {
                        log.insert(
                            update.seq,
                            Entry {
                                data: update.data.clone(),
                                at_ms: update.at_ms,
                                author: update.author.clone(),
                                snapshot: false,
                            },
                        );
                    }
                }
                WriteOp::Compact(snapshot) => {
                    // An older compaction than the stored one changes nothing.
                    let stored = rooms.snapshots.get(&snapshot.room_id);
                    if stored.is_some_and(|(through_seq, _, _)| *through_seq > snapshot.through_seq)
                    {
                        continue;
                    }
                    let replaced = rooms.snapshots.insert(
                        snapshot.room_id.clone(),
                        (snapshot.through_seq, snapshot.at_ms, snapshot.data.clone()),
                    );
                    let log = rooms.logs.entry(snapshot.room_id.clone()).or_default();
                    match snapshot.keep_history_since_ms {
                        None => log.retain(|seq, _| *seq > snapshot.through_seq),
                        Some(since) => {
                            // A snapshot written without history is the base of the
                            // versions after it; nothing before it was kept.
                            if let Some((seq, at_ms, data)) = replaced.filter(|(seq, _, _)| {
                                *seq < snapshot.through_seq
                                    && !log.get(seq).is_some_and(|entry| entry.snapshot)
                            }) {
                                log.retain(|kept, _| *kept >= seq);
                                log.insert(
                                    seq,
                                    Entry {
                                        data,
                                        at_ms,
                                        author: None,
                                        snapshot: true,
                                    },
                                );
                            }
                            log.insert(
                                snapshot.through_seq,
                                Entry {
                                    data: snapshot.data.clone(),
                                    at_ms: snapshot.at_ms,
                                    author: None,
                                    snapshot: true,
                                },
                            );
                            let entries: Vec<HistoryEntry> =
                                log.iter().map(|(seq, entry)| entry.meta(*seq)).collect();
                            if let Some(floor) = history_floor(&entries, since) {
                                log.retain(|seq, _| *seq >= floor);
                            }
                        }
                    }
                }
                WriteOp::Delete(deletion) => {
                    rooms.logs.remove(&deletion.room_id);
                    rooms.snapshots.remove(&deletion.room_id);
                    rooms.checkpoints.remove(&deletion.room_id);
                }
            }
        }
        Ok(())
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        let rooms = self.rooms()?;
        let snapshot = rooms.snapshots.get(room_id).cloned();
        let snapshot_seq = snapshot.as_ref().map_or(0, |(seq, _, _)| *seq);
        let log: Vec<(u64, Bytes)> = rooms
            .logs
            .get(room_id)
            .map(|log| {
                log.range(snapshot_seq + 1..)
                    .map(|(seq, entry)| (*seq, entry.data.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if snapshot.is_none() && log.is_empty() {
            return Ok(None);
        }
        let last_seq = log.last().map_or(snapshot_seq, |(seq, _)| *seq);
        Ok(Some(DurableState {
            snapshot: snapshot.map(|(_, _, data)| data),
            updates: log.into_iter().map(|(_, data)| data).collect(),
            last_seq,
        }))
    }

    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.rooms()?.checkpoints.insert(
            room_id.to_owned(),
            StoredCheckpoint {
                data: Bytes::copy_from_slice(state),
                updated_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            },
        );
        Ok(())
    }

    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .rooms()?
            .checkpoints
            .get(room_id)
            .map(|checkpoint| checkpoint.data.clone()))
    }

    async fn history(&self, room_id: &str) -> Result<History, StoreError> {
        let rooms = self.rooms()?;
        let mut entries: BTreeMap<u64, HistoryEntry> = rooms
            .logs
            .get(room_id)
            .map(|log| {
                log.iter()
                    .map(|(seq, entry)| (*seq, entry.meta(*seq)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((seq, at_ms, data)) = rooms.snapshots.get(room_id) {
            entries.entry(*seq).or_insert(HistoryEntry {
                seq: *seq,
                at_ms: *at_ms,
                size: data.len() as u64,
                author: None,
                snapshot: true,
            });
        }
        Ok(History {
            entries: entries.into_values().collect(),
        })
    }

    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<VersionData>, StoreError> {
        let rooms = self.rooms()?;
        let empty = BTreeMap::new();
        let log = rooms.logs.get(room_id).unwrap_or(&empty);
        let mut base: Option<(u64, Bytes)> = log
            .range(..=seq)
            .rev()
            .find(|(_, entry)| entry.snapshot)
            .map(|(at, entry)| (*at, entry.data.clone()));
        if let Some((snapshot_seq, _, data)) = rooms.snapshots.get(room_id) {
            if *snapshot_seq <= seq && base.as_ref().is_none_or(|(at, _)| at < snapshot_seq) {
                base = Some((*snapshot_seq, data.clone()));
            }
        }
        let from = base.as_ref().map_or(1, |(at, _)| at + 1);
        // Without a base, the log must start at the room's first update.
        if base.is_none() && log.keys().next().is_some_and(|first| *first != 1) {
            return Ok(None);
        }
        if base.is_none() && log.is_empty() {
            return Ok(None);
        }
        Ok(Some(VersionData {
            base: base.map(|(_, data)| data),
            updates: log
                .range(from..)
                .take_while(|(at, _)| **at <= seq)
                .filter(|(_, entry)| !entry.snapshot)
                .map(|(_, entry)| entry.data.clone())
                .collect(),
        }))
    }

    async fn list_rooms(&self) -> Result<Vec<String>, StoreError> {
        let rooms = self.rooms()?;
        let mut ids: Vec<String> = rooms
            .logs
            .iter()
            .filter(|(_, log)| !log.is_empty())
            .map(|(id, _)| id)
            .chain(rooms.snapshots.keys())
            .chain(rooms.checkpoints.keys())
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        let rooms = self.rooms()?;
        Ok(RoomParts {
            checkpoint: rooms.checkpoints.get(room_id).cloned(),
            snapshot: rooms
                .snapshots
                .get(room_id)
                .map(|(through_seq, at_ms, data)| StoredSnapshot {
                    through_seq: *through_seq,
                    at_ms: *at_ms,
                    data: data.clone(),
                }),
        })
    }

    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rooms = self.rooms()?;
        Ok(rooms
            .logs
            .get(room_id)
            .map(|log| {
                log.range(after_seq.saturating_add(1)..)
                    .take(limit)
                    .map(|(seq, entry)| StoredEntry {
                        seq: *seq,
                        at_ms: entry.at_ms,
                        author: entry.author.clone(),
                        snapshot: entry.snapshot,
                        data: entry.data.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError> {
        let mut rooms = self.rooms()?;
        if let Some(checkpoint) = &parts.checkpoint {
            rooms
                .checkpoints
                .insert(room_id.to_owned(), checkpoint.clone());
        }
        if let Some(snapshot) = &parts.snapshot {
            rooms.snapshots.insert(
                room_id.to_owned(),
                (snapshot.through_seq, snapshot.at_ms, snapshot.data.clone()),
            );
        }
        Ok(())
    }

    async fn write_entries(
        &self,
        room_id: &str,
        entries: &[StoredEntry],
    ) -> Result<(), StoreError> {
        let mut rooms = self.rooms()?;
        let log = rooms.logs.entry(room_id.to_owned()).or_default();
        for entry in entries {
            log.insert(
                entry.seq,
                Entry {
                    data: entry.data.clone(),
                    at_ms: entry.at_ms,
                    author: entry.author.clone(),
                    snapshot: entry.snapshot,
                },
            );
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.rooms().map(|_| ())
    }
}
