//! Room id → room. Loads a room from the store on first use (once, however many
//! clients arrive together), and unloads rooms nobody has used for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::config::Config;
use super::document::DocumentError;
use super::journal::Journal;
use super::metrics::Metrics;
use super::room::{PresenceLimits, Room, RoomSettings};
use super::store::{DurableState, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("room {room} could not be loaded: {source}")]
    Store { room: String, source: StoreError },
    #[error("room {room} holds an unreadable document: {source}")]
    Document { room: String, source: DocumentError },
}

type Slot = Arc<OnceCell<Room>>;

/// Cheap to clone; clones share the same rooms.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// `std::sync::Mutex`: held only to find or insert a slot, never while loading;
    /// the slot's `OnceCell` makes concurrent first joins share one load.
    rooms: Mutex<HashMap<String, Slot>>,
    store: Arc<dyn Store>,
    journal: Journal,
    metrics: Metrics,
    settings: RoomSettings,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, journal: Journal, metrics: Metrics, config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms: Mutex::new(HashMap::new()),
                store,
                journal,
                metrics,
                settings: RoomSettings {
                    compact_every: config.compact_every.max(1),
                    reconnect_window: config.reconnect_window,
                    max_document_bytes: config.max_document_bytes,
                    presence: PresenceLimits::from_config(config),
                },
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The room, loading it from the store if it is not in memory.
    pub async fn get_or_load(&self, room_id: &str) -> Result<Room, LoadError> {
        let slot = self.rooms().entry(room_id.to_owned()).or_default().clone();
        let room = slot.get_or_try_init(|| self.load(room_id)).await?.clone();
        Ok(room)
    }

    /// The room if it is in memory or has anything stored; `None` for a room that
    /// has never existed (so looking one up does not create it).
    pub async fn find(&self, room_id: &str) -> Result<Option<Room>, LoadError> {
        if let Some(room) = self.loaded(room_id) {
            return Ok(Some(room));
        }
        let durable = self.durable_state(room_id).await?;
        if durable.is_none() {
            return Ok(None);
        }
        self.get_or_load(room_id).await.map(Some)
    }

    /// The room if it is in memory right now.
    pub fn loaded(&self, room_id: &str) -> Option<Room> {
        self.rooms()
            .get(room_id)
            .and_then(|slot| slot.get().cloned())
    }

    /// Every room in memory, sorted by id.
    pub fn loaded_rooms(&self) -> Vec<Room> {
        let mut rooms: Vec<Room> = self
            .rooms()
            .values()
            .filter_map(|slot| slot.get().cloned())
            .collect();
        rooms.sort_by(|a, b| a.id().cmp(b.id()));
        rooms
    }

    /// Unloads rooms idle for longer than `idle`; returns how many went.
    pub fn unload_idle(&self, idle: Duration) -> usize {
        let mut rooms = self.rooms();
        let before = rooms.len();
        rooms.retain(|_, slot| match slot.get() {
            Some(room) => !room.close_if_idle(idle),
            // A load in progress (or one that failed, to be retried) stays.
            None => Arc::strong_count(slot) > 1,
        });
        before - rooms.len()
    }

    /// Durable state, or, for a room only the original backend ever saved, its
    /// checkpoint.
    async fn durable_state(&self, room_id: &str) -> Result<Option<DurableState>, LoadError> {
        let store_error = |source| LoadError::Store {
            room: room_id.to_owned(),
            source,
        };
        let result: Result<Option<DurableState>, StoreError> = async {
            if let Some(durable) = self.inner.store.load_durable(room_id).await? {
                return Ok(Some(durable));
            }
            Ok(self
                .inner
                .store
                .load_checkpoint(room_id)
                .await?
                .map(|checkpoint| DurableState {
                    snapshot: Some(checkpoint),
                    updates: Vec::new(),
                    last_seq: 0,
                }))
        }
        .await;
        match &result {
            Ok(_) => self.inner.journal.report_success(),
            Err(error) => self.inner.journal.report_failure(&error.to_string()),
        }
        result.map_err(store_error)
    }

    async fn load(&self, room_id: &str) -> Result<Room, LoadError> {
        let durable = self.durable_state(room_id).await?;
        let room = Room::new(
            room_id.to_owned(),
            durable,
            self.inner.journal.clone(),
            self.inner.metrics.clone(),
            self.inner.settings,
        )
        .map_err(|source| LoadError::Document {
            room: room_id.to_owned(),
            source,
        })?;
        tracing::debug!(room = room_id, "room loaded");
        Ok(room)
    }
}
