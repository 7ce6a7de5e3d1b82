//! A store that keeps everything in process memory. For tests: it can be told to
//! fail, to exercise the journal's retry and backlog paths without a real outage,
//! or to refuse one room's writes for good, as a store refuses an oversized record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{DurableState, Store, StoreError, WriteOp};

#[derive(Default)]
struct Rooms {
    logs: HashMap<String, BTreeMap<u64, Bytes>>,
    snapshots: HashMap<String, (u64, Bytes)>,
    checkpoints: HashMap<String, Bytes>,
}

/// Cloning shares the same contents, so a test can keep a handle to inspect them.
#[derive(Clone, Default)]
pub struct MemoryStore {
    /// A `std::sync::Mutex`: every operation is a few map look-ups, never awaited.
    rooms: Arc<Mutex<Rooms>>,
    failing: Arc<AtomicBool>,
    /// Rooms whose writes are refused as invalid; a `std::sync::Mutex` like `rooms`.
    refused: Arc<Mutex<HashSet<String>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While set, every operation fails as an unreachable store would.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on, a batch holding a write of `room_id` is refused for good.
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
        if let Ok(refused) = self.refused.lock() {
            if let Some(op) = batch.iter().find(|op| refused.contains(op.room_id())) {
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
                    rooms
                        .logs
                        .entry(update.room_id.clone())
                        .or_default()
                        .insert(update.seq, update.data.clone());
                }
                WriteOp::Compact(snapshot) => {
                    rooms.snapshots.insert(
                        snapshot.room_id.clone(),
                        (snapshot.through_seq, snapshot.data.clone()),
                    );
                    if let Some(log) = rooms.logs.get_mut(&snapshot.room_id) {
                        log.retain(|seq, _| *seq > snapshot.through_seq);
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
        let snapshot_seq = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        let log: Vec<(u64, Bytes)> = rooms
            .logs
            .get(room_id)
            .map(|log| {
                log.range(snapshot_seq + 1..)
                    .map(|(seq, data)| (*seq, data.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if snapshot.is_none() && log.is_empty() {
            return Ok(None);
        }
        let last_seq = log.last().map_or(snapshot_seq, |(seq, _)| *seq);
        Ok(Some(DurableState {
            snapshot: snapshot.map(|(_, data)| data),
            updates: log.into_iter().map(|(_, data)| data).collect(),
            last_seq,
        }))
    }

    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.rooms()?
            .checkpoints
            .insert(room_id.to_owned(), Bytes::copy_from_slice(state));
        Ok(())
    }

    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.rooms()?.checkpoints.get(room_id).cloned())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.rooms().map(|_| ())
    }
}
