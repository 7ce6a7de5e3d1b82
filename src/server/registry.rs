//! Room id → room. Loads a room from the store on first use (once, however many
//! clients arrive together), unloads rooms nobody has used for a while, and deletes
//! rooms: a deleted room is loaded again only once its delete is in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::document::DocumentError;
use super::journal::{Journal, WriteWatcher};
use super::metrics::Metrics;
use super::room::durable::{read_stored, Stored};
use super::room::remote::Peers;
use super::room::{Pinned, PresenceLimits, Room, RoomSettings};
use super::store::{RoomDeletion, Store, StoreError, WriteOp};
use super::webhooks::{Event, Webhooks};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("room {room} could not be loaded: {source}")]
    Store { room: String, source: StoreError },
    #[error("room {room} holds an unreadable document: {source}")]
    Document { room: String, source: DocumentError },
}

type Slot = Arc<OnceCell<Room>>;

/// How long opening a room waits for its deletion to reach the store.
const DELETION_WAIT: Duration = Duration::from_secs(5);

/// Cheap to clone; clones share the same rooms.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// `std::sync::Mutex`: held only to find or insert a slot, never while loading;
    /// the slot's `OnceCell` makes concurrent first joins share one load. A slot
    /// leaves the map only filled (its room closed first) or empty and held by
    /// nobody: a slot taken out while a load fills it would hand that load's room
    /// to clients nobody else can reach.
    rooms: Mutex<HashMap<String, Slot>>,
    /// Rooms whose delete is not in the store yet, each with a token cancelled once
    /// it is: loading one waits, or it would be rebuilt from what is being deleted.
    /// `std::sync::Mutex`, like `rooms`.
    deleting: Mutex<HashMap<String, CancellationToken>>,
    store: Arc<dyn Store>,
    journal: Journal,
    metrics: Metrics,
    settings: RoomSettings,
    /// The other nodes of a cluster, when there are any.
    peers: OnceLock<Arc<dyn Peers>>,
    /// Set once at start when webhooks are configured (`attach_webhooks`).
    webhooks: OnceLock<Webhooks>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, journal: Journal, metrics: Metrics, config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms: Mutex::new(HashMap::new()),
                deleting: Mutex::new(HashMap::new()),
                store,
                journal,
                metrics,
                settings: RoomSettings {
                    compact_every: config.compact_every.max(1),
                    reconnect_window: config.reconnect_window,
                    max_document_bytes: config.max_document_bytes,
                    write_ahead: config.durability.write_ahead(),
                    history_retention: config.history_retention,
                    presence: PresenceLimits::from_config(config),
                    max_outbound_bytes: config.max_outbound_bytes,
                },
                peers: OnceLock::new(),
                webhooks: OnceLock::new(),
            }),
        }
    }

    /// Makes every room this registry loads from now on shared with `peers`.
    pub fn set_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.inner.peers.set(peers);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Reports rooms' lives to webhooks from now on (rooms loaded from now on,
    /// so call it before serving).
    pub fn attach_webhooks(&self, webhooks: Webhooks) {
        let _ = self.inner.webhooks.set(webhooks);
    }

    pub fn webhooks(&self) -> Option<&Webhooks> {
        self.inner.webhooks.get()
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

    /// `get_or_load`, kept in memory while the result is held: for REST calls that
    /// write to the room. One unloaded between being looked up and pinned is
    /// loaded again.
    pub async fn get_pinned(&self, room_id: &str) -> Result<Pinned, LoadError> {
        loop {
            if let Some(pinned) = self.get_or_load(room_id).await?.pin() {
                return Ok(pinned);
            }
            tokio::task::yield_now().await;
        }
    }

    /// The room if it is in memory or has anything stored; `None` for a room that
    /// has never existed (so looking one up does not create it).
    pub async fn find(&self, room_id: &str) -> Result<Option<Room>, LoadError> {
        if let Some(room) = self.loaded(room_id) {
            return Ok(Some(room));
        }
        if self.stored(room_id).await?.is_nothing() {
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
        let mut unloaded = Vec::new();
        {
            let mut rooms = self.rooms();
            rooms.retain(|id, slot| match slot.get() {
                Some(room) => {
                    let close = room.close_if_idle(idle);
                    if close {
                        unloaded.push((id.clone(), room.clone()));
                    }
                    !close
                }
                // A load in progress (or one that failed, to be retried) stays.
                None => Arc::strong_count(slot) > 1,
            });
            // Queued (without waiting) before the map is let go: a client that
            // opens the room again right after gets a new room, whose
            // `room.loaded` must follow this `room.unloaded`, not overtake it.
            if let Some(webhooks) = self.webhooks() {
                for (_, room) in &unloaded {
                    webhooks.room_unloaded(room);
                }
            }
        }
        if let Some(peers) = self.inner.peers.get() {
            for (_, room) in &unloaded {
                peers.closed(room);
            }
        }
        unloaded.len()
    }

    /// Another node deleted the room: its connections here are closed as deleted
    /// and it leaves memory; the store was cleared by that node.
    pub fn forget_deleted(&self, room_id: &str) {
        let room = {
            let mut rooms = self.rooms();
            // A slot still being filled stays: the room its load makes is closed
            // when its node finds the deletion count grown (the cluster checks on
            // subscribing). Taken out, the load would fill a slot nobody else can
            // reach, and its clients would edit alone.
            let Some(room) = rooms.get(room_id).and_then(|slot| slot.get().cloned()) else {
                return;
            };
            rooms.remove(room_id);
            room
        };
        room.close_deleted();
        if let Some(webhooks) = self.webhooks() {
            webhooks.room_forgotten(&room);
        }
        if let Some(peers) = self.inner.peers.get() {
            peers.closed(&room);
        }
    }

    /// What the store holds for the room (see `room::durable::read_stored`); a
    /// failure marks the store degraded, a success may clear that.
    async fn stored(&self, room_id: &str) -> Result<Stored, LoadError> {
        let result = read_stored(self.inner.store.as_ref(), room_id).await;
        match result {
            Ok(stored) => {
                self.report_read();
                Ok(stored)
            }
            // The store answered: what it holds for this room is unreadable (an
            // original backend's checkpoint that is not hex). The room cannot open,
            // the store is not degraded for it.
            Err(StoreError::Corrupt(reason)) => {
                self.report_read();
                Err(LoadError::Document {
                    room: room_id.to_owned(),
                    source: DocumentError::Undecodable(reason),
                })
            }
            Err(source) => {
                self.inner.journal.report_failure(&source.to_string());
                Err(LoadError::Store {
                    room: room_id.to_owned(),
                    source,
                })
            }
        }
    }

    /// A read went through: the store is healthy, unless it may not be written
    /// (a MongoDB store waiting for, or refused, the writer lease).
    fn report_read(&self) {
        match self.inner.store.writes_held() {
            Some(reason) => self.inner.journal.report_failure(&reason),
            None => self.inner.journal.report_success(),
        }
    }

    fn deleting(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner
            .deleting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deletes a room: closes its connections, takes it out of memory and has the
    /// journal remove everything stored for it, after the room's own writes.
    /// Returns `None` when the server knows nothing of the room. Waits up to
    /// `wait` for the store; `written` says whether it had the delete by then (if
    /// not, it is written once the store is back, and the room stays unloadable
    /// until it is).
    pub async fn delete(
        &self,
        room_id: &str,
        wait: Duration,
    ) -> Result<Option<Deleted>, LoadError> {
        if self.loaded(room_id).is_none() {
            let nothing = match self.stored(room_id).await {
                Ok(stored) => stored.is_nothing(),
                // Something is stored, if unreadable: it can still be deleted.
                Err(LoadError::Document { .. }) => false,
                Err(error) => return Err(error),
            };
            if nothing {
                return Ok(None);
            }
        }
        // Loading first also waits for a load already under way, which would
        // otherwise finish after the delete with a room built from deleted data.
        let room = match self.get_or_load(room_id).await {
            Ok(room) => Some(room),
            // An unreadable document can still be deleted.
            Err(LoadError::Document { .. }) => None,
            Err(error) => return Err(error),
        };
        let done = CancellationToken::new();
        {
            let mut rooms = self.rooms();
            self.deleting().insert(room_id.to_owned(), done.clone());
            // An unreadable document left its slot empty, and joins may be queued
            // on it: they load again (after the deletion) into that slot, which
            // must stay in the map for them. A filled slot holds the room closed
            // below.
            if room.is_some() {
                rooms.remove(room_id);
            }
        }
        let closed_connections = match &room {
            Some(room) => room.delete(),
            None => {
                self.inner.journal.submit(
                    WriteOp::Delete(RoomDeletion {
                        room_id: room_id.to_owned(),
                        seq: 0,
                    }),
                    Arc::new(Unwatched),
                );
                0
            }
        };
        // After the room is marked deleted: the cluster does not persist it again.
        if let (Some(peers), Some(room)) = (self.inner.peers.get(), &room) {
            peers.closed(room);
        }
        let registry = self.clone();
        let finished = done.clone();
        let id = room_id.to_owned();
        tokio::spawn(async move {
            registry.inner.journal.flush().await;
            let mut deleting = registry.deleting();
            if deleting.get(&id).is_some_and(|token| *token == finished) {
                deleting.remove(&id);
            }
            finished.cancel();
        });
        if let Some(webhooks) = self.webhooks() {
            webhooks.room_deleted(room.as_ref(), room_id, closed_connections);
        }
        let written = tokio::time::timeout(wait, done.cancelled()).await.is_ok();
        tracing::info!(room = room_id, closed_connections, written, "room deleted");
        Ok(Some(Deleted {
            closed_connections,
            written,
        }))
    }

    async fn load(&self, room_id: &str) -> Result<Room, LoadError> {
        let pending = self.deleting().get(room_id).cloned();
        if let Some(deleted) = pending {
            // Bounded: a join waiting here holds its upgrade permit and its place
            // under the connection caps, and reconnecting clients would pile up
            // until every upgrade on the server was refused.
            let waited = tokio::time::timeout(DELETION_WAIT, deleted.cancelled()).await;
            if waited.is_err() {
                return Err(LoadError::Store {
                    room: room_id.to_owned(),
                    source: StoreError::Unavailable(
                        "its deletion is not written yet; retry once the store is back".into(),
                    ),
                });
            }
        }
        let stored = self.stored(room_id).await?;
        let room = Room::new(
            room_id.to_owned(),
            stored,
            self.inner.journal.clone(),
            self.inner.metrics.clone(),
            self.inner.settings,
        )
        .map_err(|source| LoadError::Document {
            room: room_id.to_owned(),
            source,
        })?;
        if let Some(peers) = self.inner.peers.get() {
            room.link_peers(peers.clone());
            peers.opened(&room);
        }
        tracing::debug!(room = room_id, "room loaded");
        if let Some(webhooks) = self.webhooks() {
            room.attach_webhooks(webhooks.clone());
            webhooks.emit(room_id, Event::RoomLoaded);
        }
        Ok(room)
    }
}

/// What `Registry::delete` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub closed_connections: usize,
    /// The store has the delete (otherwise it is queued until the store is back).
    pub written: bool,
}

/// The watcher of a delete no room in memory is waiting for.
struct Unwatched;

impl WriteWatcher for Unwatched {
    fn written(&self, _seq: u64) {}
    fn refused(&self, _reason: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::journal::Journal;
    use crate::server::store::memory::MemoryStore;

    fn registry() -> Registry {
        registry_on(MemoryStore::new())
    }

    fn registry_on(store: MemoryStore) -> Registry {
        let config = crate::server::Config::for_tests();
        let store: Arc<dyn Store> = Arc::new(store);
        let (journal, _task) = Journal::start(store.clone(), config.journal_pace());
        Registry::new(store, journal, Metrics::new(), &config)
    }

    /// Another node's deletion does not take away a slot a load is filling (here:
    /// one waiting for an earlier deletion to be stored): the room that load made
    /// would be nobody's, and a client joining it would edit alone.
    #[tokio::test]
    async fn another_nodes_deletion_leaves_a_slot_a_load_is_filling() {
        let store = MemoryStore::new();
        let registry = registry_on(store.clone());
        registry.get_or_load("r").await.unwrap();
        store.set_failing(true);
        let deleted = registry
            .delete("r", Duration::from_millis(50))
            .await
            .unwrap();
        assert!(deleted.is_some_and(|deleted| !deleted.written));
        let joining = {
            let registry = registry.clone();
            tokio::spawn(async move { registry.get_or_load("r").await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        registry.forget_deleted("r");
        store.set_failing(false);
        let room = joining.await.unwrap().unwrap();
        let registered = registry.loaded("r");
        assert!(
            registered.is_some_and(|registered| registered.same(&room)),
            "the joiner got a room the registry does not hold"
        );
    }

    /// Opening a room whose deletion the store has not taken gives up after a
    /// while instead of waiting for the store.
    #[tokio::test]
    async fn opening_a_room_whose_deletion_is_not_stored_gives_up() {
        let store = MemoryStore::new();
        let registry = registry_on(store.clone());
        registry.get_or_load("r").await.unwrap();
        store.set_failing(true);
        registry
            .delete("r", Duration::from_millis(50))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let opened = registry.get_or_load("r").await;
        assert!(
            matches!(&opened, Err(LoadError::Store { source: StoreError::Unavailable(why), .. }) if why.contains("deletion")),
            "{:?}",
            opened.map(|room| room.id().to_owned())
        );
        assert!(started.elapsed() >= DELETION_WAIT);
        store.set_failing(false);
    }

    /// A REST call's room is not unloaded while it writes to it, and a room that
    /// was unloaded before the call pinned it is loaded again, not written to.
    #[tokio::test]
    async fn a_pinned_room_stays_loaded_and_an_unloaded_one_is_loaded_again() {
        let registry = registry();
        let pinned = registry.get_pinned("r").await.unwrap();
        assert_eq!(registry.unload_idle(Duration::ZERO), 0);
        drop(pinned);
        let before = registry.get_or_load("r").await.unwrap();
        assert_eq!(registry.unload_idle(Duration::ZERO), 1);
        assert!(before.pin().is_none(), "an unloaded room was pinned");
        let again = registry.get_pinned("r").await.unwrap();
        assert!(!again.same(&before), "the unloaded instance came back");
    }
}
