//! The MongoDB store, through the official `mongodb` driver.
//!
//! Three collections in the configured database:
//! - `room_documents`: explicit checkpoints in the original backend's shape
//!   `{room_id, data: hex string, updated_at: ISO-8601 string, size: int32}`, so
//!   documents the original wrote stay readable and ones coedit writes stay readable
//!   by it;
//! - `room_updates`: the update log, one document per entry `{room_id, seq: int64,
//!   data: binary, at: int64 ms, size: int64, author}` or per run of a room's
//!   consecutive entries written together (`updates`), and with history kept the
//!   compactions' snapshots too (`snapshot: true`), as bases for reading old
//!   versions;
//! - `room_snapshots`: compacted state `{room_id, through_seq: int64, data: binary,
//!   updated_at: date}`.
//!
//! Everything is read as a plain `bson::Document` and picked apart leniently: the
//! original backend's documents (and ones edited by hand) must never fail to load
//! because a field has another BSON type than coedit would write.
//!
//! The operations used (createIndexes, insert with ordered:false, update with upsert,
//! delete, find with sort and projection, ping) are the common core that MongoDB and
//! the MongoDB-compatible servers coedit is tested against all support: no
//! transactions and no `bulkWrite` command, so a batch is made harmless to repeat
//! instead of atomic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind};
use mongodb::options::{ClientOptions, IndexOptions, ReadPreference, SelectionCriteria};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod updates;

use updates::{Item, Piece};

use super::{
    DurableState, History, HistoryEntry, RoomParts, Store, StoreError, StoredCheckpoint,
    StoredEntry, StoredSnapshot, VersionData, WriteOp,
};

/// What the cleanup task is asked to do for a room after a compaction: its latest
/// snapshot's sequence number, and the history's retention cut-off if it keeps one.
type Cleanup = (String, i64, Option<i64>);

/// Largest document coedit keeps in MongoDB, in bytes of its Yjs encoding. A room's
/// snapshot is one BSON document and MongoDB refuses documents over 16 MiB, so
/// `coedit serve` lowers `--max-document-bytes` to this on MongoDB and says so.
/// (Checkpoints are stored as hex, twice the size: `persist` of a document over
/// about 8 MiB is refused with that reason.)
pub const MAX_DOCUMENT_BYTES: usize = 15 * 1024 * 1024;

/// The original backend's checkpoint collection.
pub const CHECKPOINTS: &str = "room_documents";
/// The update log: one document per accepted update, or per run of them.
pub const UPDATES: &str = "room_updates";
/// One compacted snapshot per room.
pub const SNAPSHOTS: &str = "room_snapshots";

/// How long the driver looks for a usable server (and waits for a TCP connection)
/// before an operation fails. The driver's own default is 30 s, which would freeze
/// the journal and every room load for that long when MongoDB goes away; 2 s lets an
/// outage show in health at once while riding out a brief hiccup.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on any one operation, including a server that accepted the
/// connection but stopped answering (the driver has no socket timeout of its own).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// MongoDB's duplicate-key error: the log entry is already there (a retried batch).
const DUPLICATE_KEY: i32 = 11000;
/// What the server answers when an index cannot be built as asked: options clash
/// with an existing index on the same keys, or existing documents break uniqueness.
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
/// `load_durable` re-reads when a compaction lands between its reads; more than a
/// few in a row would mean something else is wrong.
const LOAD_ATTEMPTS: usize = 5;

pub struct MongoStore {
    client: Client,
    database: Database,
    checkpoints: Collection<Document>,
    updates: Collection<Document>,
    snapshots: Collection<Document>,
    /// Set once the indexes exist. A server started with `--start-degraded` creates
    /// them on the first operation that reaches MongoDB; the unique log index is
    /// what makes a retried batch harmless, so nothing is written before it exists.
    indexes_ready: AtomicBool,
    /// `host:port` list from the URL, for messages (never the credentials).
    hosts: String,
    /// Log ranges a compaction has covered, for `remove_compacted` to delete.
    /// Deleting is garbage collection, not durability (readers skip covered entries
    /// by sequence number), so it stays off the journal's write path: on a slow
    /// server, deleting hundreds of entries per room would hold up every room's
    /// next group commit. `None` once closing. A `std::sync::Mutex` held only to
    /// send or take, never across an await.
    cleanup: Mutex<Option<mpsc::UnboundedSender<Cleanup>>>,
    cleanup_task: Mutex<Option<JoinHandle<()>>>,
    /// Why nothing may be written yet, if so: a server started degraded writes
    /// only once it holds the database's writer lease (`hold_writes`). A
    /// `std::sync::Mutex`: read at each write, never held across an await.
    held: Mutex<Option<String>>,
}

impl MongoStore {
    /// Builds a client for `url` without contacting the server yet (the driver
    /// connects lazily). Fails only on a malformed URL or an SRV record that does not
    /// resolve.
    pub async fn connect(url: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await.map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot use the MongoDB URL: {}",
                describe_error(&error)
            ))
        })?;
        // What a room reads decides the numbers it gives its next updates: a
        // secondary behind the primary would hand out numbers already used, and
        // the store keeps one update of each number. Reads go to the primary,
        // whatever the URL asks.
        if options.selection_criteria.as_ref().is_some_and(|criteria| {
            !matches!(
                criteria,
                SelectionCriteria::ReadPreference(ReadPreference::Primary)
            )
        }) {
            tracing::warn!(
                "the MongoDB URL's readPreference is not used: coedit reads from the primary"
            );
        }
        options.selection_criteria =
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        // Respect timeouts the URL sets itself; otherwise fail fast (see above).
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        options.app_name.get_or_insert_with(|| "coedit".to_owned());
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::with_options(options).map_err(unavailable)?;
        let database = client.database(database);
        let updates: Collection<Document> = database.collection(UPDATES);
        let (cleanup, queued) = mpsc::unbounded_channel();
        let cleanup_task = tokio::spawn(remove_compacted(
            updates.clone(),
            database.collection(SNAPSHOTS),
            queued,
        ));
        Ok(Self {
            checkpoints: database.collection(CHECKPOINTS),
            updates,
            snapshots: database.collection(SNAPSHOTS),
            database,
            client,
            indexes_ready: AtomicBool::new(false),
            hosts,
            cleanup: Mutex::new(Some(cleanup)),
            cleanup_task: Mutex::new(Some(cleanup_task)),
            held: Mutex::new(None),
        })
    }

    /// Refuses writes (as unavailable, with `reason`) until `release_writes`.
    pub fn hold_writes(&self, reason: &str) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(reason.to_owned());
        }
    }

    /// Lets writes through again (the writer lease is held).
    pub fn release_writes(&self) {
        if let Ok(mut held) = self.held.lock() {
            *held = None;
        }
    }

    /// What every write checks first: its writes are allowed, and the indexes
    /// that make a retried write harmless exist.
    async fn writable(&self) -> Result<(), StoreError> {
        let held = self
            .held
            .lock()
            .map_err(|_| StoreError::Unavailable("store state poisoned".into()))?
            .clone();
        if let Some(reason) = held {
            return Err(StoreError::Unavailable(reason));
        }
        self.ensure_indexes().await
    }

    /// Makes every write wait for MongoDB's journal (`j: true`), so what the store
    /// acknowledges survives a power loss of the database server too.
    pub fn journal_writes(&mut self) {
        let options = mongodb::options::CollectionOptions::builder()
            .write_concern(
                mongodb::options::WriteConcern::builder()
                    .journal(true)
                    .build(),
            )
            .build();
        self.checkpoints = self
            .database
            .collection_with_options(CHECKPOINTS, options.clone());
        self.updates = self
            .database
            .collection_with_options(UPDATES, options.clone());
        self.snapshots = self.database.collection_with_options(SNAPSHOTS, options);
    }

    /// The database this store writes, for the writer lease.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The servers this store talks to, as `host:port[,host:port…]`.
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    /// Whether the database holds any of coedit's collections (or the original
    /// backend's): what tells a store from a mistyped database name. Creates
    /// nothing.
    pub async fn holds_rooms(&self) -> Result<bool, StoreError> {
        let names = bounded(self.database.list_collection_names()).await?;
        Ok(names
            .iter()
            .any(|name| [CHECKPOINTS, UPDATES, SNAPSHOTS].contains(&name.as_str())))
    }

    /// Creates the indexes (once) and checks the server answers: what `open_store`
    /// calls before serving.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await?;
        bounded(self.database.run_command(doc! {"ping": 1})).await?;
        Ok(())
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        if self.indexes_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let indexes = [
            (&self.checkpoints, unique(doc! {"room_id": 1})),
            (&self.updates, unique(doc! {"room_id": 1, "seq": 1})),
            (&self.snapshots, unique(doc! {"room_id": 1})),
        ];
        for (collection, index) in indexes {
            let keys = index.keys.clone();
            match bounded(collection.create_index(index)).await {
                Ok(_) => {}
                // The original backend created no indexes, but an operator may have
                // added one on `room_documents.room_id` with other options, or left
                // duplicate room ids there: the server refuses ours. Upserts by
                // room id work without it, so say so and go on rather than refuse
                // every write forever.
                Err(Failure::Driver(error))
                    if refused_index(&error) && collection.name() == CHECKPOINTS =>
                {
                    tracing::warn!(
                        collection = collection.name(),
                        error = %describe_error(&error),
                        "unique room_id index not created; continuing without it"
                    );
                }
                // coedit's own collections rely on theirs: without it a retried
                // write or two racing cluster nodes would store an update, or a
                // room's snapshot, twice. Writes wait (nothing is dropped) until
                // the operator fixes it.
                Err(Failure::Driver(error)) if refused_index(&error) => {
                    return Err(StoreError::Unavailable(format!(
                        "MongoDB refused the unique index on {} ({}): {}; coedit needs it to \
                         store each update and snapshot once: drop the conflicting index \
                         (or duplicate documents) there",
                        collection.name(),
                        keys,
                        describe_refusal(&error)
                    )));
                }
                Err(failure) => return Err(failure.into()),
            }
        }
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Inserts log entries, skipping ones already there. Unordered, so one duplicate
    /// (from a retried batch) does not stop the entries after it. A run refused
    /// because a document already starts at its first number (a retry, another
    /// persister) writes what lies past that document instead.
    async fn append(&self, mut pieces: Vec<Piece<'_>>) -> Result<(), StoreError> {
        while !pieces.is_empty() {
            let documents = pieces
                .iter()
                .map(Piece::document)
                .collect::<Result<Vec<Document>, StoreError>>()?;
            let refused: Vec<usize> =
                match bounded(self.updates.insert_many(documents).ordered(false)).await {
                    Ok(_) => return Ok(()),
                    Err(Failure::Driver(error)) => match *error.kind {
                        ErrorKind::InsertMany(ref failure)
                            if failure.write_concern_error.is_none()
                                && failure.write_errors.as_ref().is_some_and(|errors| {
                                    errors.iter().all(|error| error.code == DUPLICATE_KEY)
                                }) =>
                        {
                            failure
                                .write_errors
                                .iter()
                                .flatten()
                                .map(|error| error.index)
                                .collect()
                        }
                        _ => return Err(driver_error(error)),
                    },
                    Err(timed_out) => return Err(timed_out.into()),
                };
            let mut rest = Vec::new();
            for index in refused {
                // An entry alone refused is already there; a run may be partly.
                let Some(piece) = pieces.get(index).filter(|piece| piece.len() > 1) else {
                    continue;
                };
                let stored = bounded(
                    self.updates
                        .find_one(doc! {"room_id": piece.room_id(), "seq": to_i64(piece.first())?})
                        .projection(doc! {"_id": 0, "seq": 1, "last": 1}),
                )
                .await?;
                let covered = match stored {
                    Some(stored) => updates::covered(&stored)?,
                    // Deleted since (a compaction): nothing past it is known stored.
                    None => piece.first(),
                };
                rest.extend(piece.after(covered));
            }
            pieces = rest;
        }
        Ok(())
    }

    /// Replaces the room's snapshot, then hands the log entries it covers to the
    /// cleanup task. In that order: a reader between the two sees the new snapshot
    /// and skips the covered entries by sequence number, and entries left behind (a
    /// crash, a failed delete) are removed by the room's next compaction.
    async fn compact(&self, snapshot: &super::Snapshot) -> Result<(), StoreError> {
        let through_seq = to_i64(snapshot.through_seq)?;
        let mut fields = doc! {
            "room_id": &snapshot.room_id,
            "through_seq": through_seq,
            "data": binary(&snapshot.data),
            "updated_at": mongodb::bson::DateTime::from_millis(snapshot.at_ms),
        };
        // A compaction after a deletion's fence (a new room) lifts it, unless it
        // comes from a node that opened the room before that deletion.
        let mut not_stale = doc! {};
        if let Some(deletions) = snapshot.deletions {
            let deletions = to_i64(deletions)?;
            fields.insert("deletions", deletions);
            not_stale = doc! {"$or": [
                {"deletions": {"$exists": false}},
                {"deletions": {"$lte": deletions}},
            ]};
        }
        if snapshot.keep_history_since_ms.is_some() {
            self.keep_replaced_snapshot(snapshot).await?;
        }
        if !self
            .replace_snapshot(
                &snapshot.room_id,
                through_seq,
                fields,
                doc! {"deleted": ""},
                not_stale,
            )
            .await?
        {
            return Ok(());
        }
        if snapshot.keep_history_since_ms.is_some() {
            self.keep_in_history(snapshot, through_seq).await?;
        }
        let queued = self.cleanup.lock().ok().and_then(|sender| {
            sender.as_ref().map(|sender| {
                sender.send((
                    snapshot.room_id.clone(),
                    through_seq,
                    snapshot.keep_history_since_ms,
                ))
            })
        });
        if snapshot.keep_history_since_ms.is_some() {
            // Pruning the history waits for the next compaction when closing.
        } else if !matches!(queued, Some(Ok(()))) {
            // Closing: delete inline rather than leave the entries for later.
            let mut covered = updates::through(through_seq);
            covered.insert("room_id", &snapshot.room_id);
            bounded(self.updates.delete_many(covered)).await?;
        }
        Ok(())
    }

    /// Stores the room's snapshot document (`fields`, with `unset` removed) unless
    /// a newer one is stored: false when one is. An older compaction (a cluster
    /// node that took the room's lease over while its document lagged, or one
    /// paused past its lease) must change nothing, as the newer one already
    /// dropped the entries between them; so must one older than a deletion's
    /// fence. Without transactions: replace one that is not newer, else insert one
    /// if there is none, else (another writer inserted first) try the replace once
    /// more.
    async fn replace_snapshot(
        &self,
        room_id: &str,
        through_seq: i64,
        fields: Document,
        unset: Document,
        also: Document,
    ) -> Result<bool, StoreError> {
        // A fence is newer than anything at its own number.
        let mut not_newer = doc! {"room_id": room_id, "$or": [
            {"through_seq": {"$lt": through_seq}},
            {"through_seq": through_seq, "deleted": {"$ne": true}},
        ]};
        if !also.is_empty() {
            not_newer = doc! {"$and": [not_newer, also]};
        }
        let mut replace = doc! {"$set": fields.clone()};
        if !unset.is_empty() {
            replace.insert("$unset", unset);
        }
        for attempt in 0..2 {
            let replaced = bounded(
                self.snapshots
                    .update_one(not_newer.clone(), replace.clone()),
            )
            .await?;
            if replaced.matched_count > 0 || attempt > 0 {
                return Ok(replaced.matched_count > 0);
            }
            let inserted = bounded(
                self.snapshots
                    .update_one(
                        doc! {"room_id": room_id},
                        doc! {"$setOnInsert": fields.clone()},
                    )
                    .upsert(true),
            )
            .await;
            match inserted {
                Ok(inserted) if inserted.upserted_id.is_some() => return Ok(true),
                Ok(_) => {}
                // Two writers inserted at once and the unique index kept one.
                Err(Failure::Driver(error)) if duplicate_key(&error) => {}
                Err(failure) => return Err(failure.into()),
            }
        }
        Ok(false)
    }

    /// A snapshot written without history (history off then, or an older release)
    /// is not in the log, yet the versions after it need it as their base once a
    /// compaction with history replaces it: it is kept first. A crash before the
    /// replacement leaves it kept and still current, which is harmless.
    async fn keep_replaced_snapshot(&self, snapshot: &super::Snapshot) -> Result<(), StoreError> {
        let Some(stored) =
            bounded(self.snapshots.find_one(doc! {"room_id": &snapshot.room_id})).await?
        else {
            return Ok(());
        };
        let seq = sequence(&stored, "through_seq")?;
        if bare_fence(&stored) || seq >= snapshot.through_seq {
            return Ok(());
        }
        let seq_i64 = to_i64(seq)?;
        let kept = bounded(
            self.updates
                .find_one(doc! {"room_id": &snapshot.room_id, "seq": seq_i64, "snapshot": true}),
        )
        .await?;
        if kept.is_some() {
            return Ok(());
        }
        let replaced = super::Snapshot {
            room_id: snapshot.room_id.clone(),
            through_seq: seq,
            data: bytes_field(&stored, "data")?,
            at_ms: stored
                .get_datetime("updated_at")
                .map_or(0, |at| at.timestamp_millis()),
            keep_history_since_ms: snapshot.keep_history_since_ms,
            deletions: None,
        };
        self.keep_in_history(&replaced, seq_i64).await
    }

    /// Keeps a snapshot in the log as the base of the versions after it, under the
    /// number it was taken at: it stands for the update of that number. Harmless
    /// to write twice. A run that starts at that number (a cluster compacts at an
    /// update's own number) is split first: its other entries are written as a run
    /// of their own, then the snapshot replaces it. A crash in between leaves the
    /// two overlapping, which readers read once; never a hole.
    async fn keep_in_history(
        &self,
        snapshot: &super::Snapshot,
        through_seq: i64,
    ) -> Result<(), StoreError> {
        let at = doc! {"room_id": &snapshot.room_id, "seq": through_seq};
        let stored = bounded(self.updates.find_one(at.clone())).await?;
        if let Some(run) = stored.filter(|stored| stored.contains_key("entries")) {
            let rest = updates::unpack(
                std::slice::from_ref(&run),
                snapshot.through_seq,
                u64::MAX,
                true,
            )?;
            self.append(updates::pack(rest.iter().map(|entry| {
                (
                    snapshot.room_id.as_str(),
                    Item {
                        seq: entry.seq,
                        data: entry.data.as_deref().unwrap_or_default(),
                        at_ms: entry.at_ms,
                        author: entry.author.as_deref(),
                        snapshot: false,
                    },
                )
            })))
            .await?;
        }
        bounded(
            self.updates
                .replace_one(
                    at,
                    doc! {
                        "room_id": &snapshot.room_id,
                        "seq": through_seq,
                        "data": binary(&snapshot.data),
                        "at": snapshot.at_ms,
                        "size": snapshot.data.len() as i64,
                        "snapshot": true,
                    },
                )
                .upsert(true),
        )
        .await?;
        Ok(())
    }

    /// Writes a stretch of a batch that holds no delete.
    async fn write_stretch(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        // Appends go in first, all in one round trip (this is what group commit buys),
        // then compactions in batch order. Moving a compaction after appends that
        // followed it is safe: it deletes only entries at or below its own sequence
        // number, which those later appends are above.
        let appended = batch.iter().filter_map(|op| match op {
            WriteOp::Append(update) => Some((
                update.room_id.as_str(),
                Item {
                    seq: update.seq,
                    data: &update.data,
                    at_ms: update.at_ms,
                    author: update.author.as_deref(),
                    snapshot: false,
                },
            )),
            _ => None,
        });
        self.append(updates::pack(appended)).await?;
        // A room's later compaction replaces all of an earlier one (snapshot and
        // covered range), so only the last per room is written, and different rooms'
        // snapshots go out together.
        let mut last_per_room: HashMap<&str, &super::Snapshot> = HashMap::new();
        for op in batch {
            if let WriteOp::Compact(snapshot) = op {
                last_per_room.insert(&snapshot.room_id, snapshot);
            }
        }
        futures_util::future::try_join_all(
            last_per_room
                .into_values()
                .map(|snapshot| self.compact(snapshot)),
        )
        .await?;
        Ok(())
    }

    /// Removes the room's log, snapshot and checkpoint: the snapshot first, so a
    /// reader in between finds no base and the room's remaining log entries alone
    /// (which are deleted next) rather than a snapshot with its log half gone.
    async fn delete(&self, room_id: &str) -> Result<(), StoreError> {
        // The log first and the snapshot last: a delete cut short leaves the room
        // as an older snapshot, never as log entries without the base they apply to.
        bounded(self.updates.delete_many(doc! {"room_id": room_id})).await?;
        bounded(self.checkpoints.delete_many(doc! {"room_id": room_id})).await?;
        bounded(self.snapshots.delete_many(doc! {"room_id": room_id})).await?;
        Ok(())
    }

    /// The room's snapshot document, if it has one.
    async fn read_snapshot(&self, room_id: &str) -> Result<Option<Base>, StoreError> {
        let Some(snapshot) = bounded(self.snapshots.find_one(doc! {"room_id": room_id})).await?
        else {
            return Ok(None);
        };
        Ok(Some(Base {
            through_seq: sequence(&snapshot, "through_seq")?,
            data: if bare_fence(&snapshot) {
                None
            } else {
                Some(bytes_field(&snapshot, "data")?)
            },
            fence: fence_of(&snapshot)?,
        }))
    }

    /// The number a deletion fenced the room's log at, 0 for none.
    async fn fence(&self, room_id: &str) -> Result<u64, StoreError> {
        let snapshot = bounded(
            self.snapshots
                .find_one(doc! {"room_id": room_id})
                .projection(doc! {"_id": 0, "fence": 1}),
        )
        .await?;
        snapshot.map_or(Ok(0), |snapshot| fence_of(&snapshot))
    }

    /// Log entries after `after`, in order, each number once.
    async fn read_log(&self, room_id: &str, after: u64) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut filter = updates::holding_after(after)?;
        filter.insert("room_id", room_id);
        filter.insert("snapshot", doc! {"$ne": true});
        let cursor = bounded(
            self.updates
                .find(filter)
                .sort(doc! {"seq": 1})
                .projection(doc! {"_id": 0, "seq": 1, "data": 1, "entries": 1}),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        Ok(updates::unpack(&documents, after, u64::MAX, true)?
            .into_iter()
            .filter_map(|entry| Some((entry.seq, entry.data?)))
            .collect())
    }
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        self.writable().await?;
        // A delete ends a stretch of the batch: what came before it is written
        // first, so nothing of the deleted room outlives it.
        let mut rest = batch;
        while let Some(at) = rest.iter().position(|op| matches!(op, WriteOp::Delete(_))) {
            self.write_stretch(&rest[..at]).await?;
            if let WriteOp::Delete(deletion) = &rest[at] {
                self.delete(&deletion.room_id).await?;
            }
            rest = &rest[at + 1..];
        }
        self.write_stretch(rest).await
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        // Without a transaction the snapshot and the log are read at different moments.
        // A compaction landing in between could delete entries newer than the snapshot
        // just read; since it writes its snapshot first, re-reading the snapshot's
        // sequence number afterwards tells whether that happened.
        for _ in 0..LOAD_ATTEMPTS {
            let base = self.read_snapshot(room_id).await?;
            let snapshot_seq = base.as_ref().map_or(0, |base| base.through_seq);
            let entries = self.read_log(room_id, snapshot_seq).await?;
            let seq_now = self
                .read_snapshot(room_id)
                .await?
                .map(|base| base.through_seq);
            if seq_now != base.as_ref().map(|base| base.through_seq) {
                continue;
            }
            let snapshot = base.and_then(|base| base.data);
            // A deleted room's fence alone is no room (`logged_through` has its
            // number, where a cluster numbers the room's next update after).
            if snapshot.is_none() && entries.is_empty() {
                return Ok(None);
            }
            let last_seq = entries.last().map_or(snapshot_seq, |(seq, _)| *seq);
            return Ok(Some(DurableState {
                snapshot,
                updates: entries.into_iter().map(|(_, data)| data).collect(),
                last_seq: last_seq.max(snapshot_seq),
            }));
        }
        Err(StoreError::Unavailable(format!(
            "room {room_id} kept being compacted while it was read"
        )))
    }

    async fn history(&self, room_id: &str) -> Result<History, StoreError> {
        let cursor = bounded(
            self.updates
                .find(doc! {"room_id": room_id})
                .sort(doc! {"seq": 1})
                .projection(updates::without_data()),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        let mut entries: Vec<HistoryEntry> = updates::unpack(&documents, 0, u64::MAX, false)?
            .into_iter()
            .map(|entry| HistoryEntry {
                seq: entry.seq,
                at_ms: entry.at_ms,
                size: entry.size,
                author: entry.author,
                snapshot: entry.snapshot,
            })
            .collect();
        let current = bounded(
            self.snapshots
                .find_one(doc! {"room_id": room_id})
                .projection(
                    doc! {"_id": 0, "through_seq": 1, "updated_at": 1, "deleted": 1, "fence": 1},
                ),
        )
        .await?;
        if let Some(current) = current {
            // After a deletion's fence, only what came after it, read from an empty
            // room at the fence's number.
            let fence = fence_of(&current)?;
            if fence > 0 {
                entries.retain(|entry| entry.seq > fence);
                // The empty room is a base only while the log after it is whole.
                let whole = entries.first().filter(|first| first.seq == fence + 1);
                if let Some(at_ms) = whole.map(|first| first.at_ms) {
                    entries.insert(
                        0,
                        HistoryEntry {
                            seq: fence,
                            at_ms,
                            size: 0,
                            author: None,
                            snapshot: true,
                        },
                    );
                }
            }
            let seq = sequence(&current, "through_seq")?;
            if !bare_fence(&current) && !entries.iter().any(|entry| entry.seq == seq) {
                let at_ms = current
                    .get_datetime("updated_at")
                    .map_or(0, |at| at.timestamp_millis());
                let at = entries.partition_point(|entry| entry.seq < seq);
                entries.insert(
                    at,
                    HistoryEntry {
                        seq,
                        at_ms,
                        size: 0,
                        author: None,
                        snapshot: true,
                    },
                );
            }
        }
        Ok(History { entries })
    }

    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<VersionData>, StoreError> {
        let at = to_i64(seq)?;
        let kept = bounded(
            self.updates
                .find_one(doc! {"room_id": room_id, "snapshot": true, "seq": {"$lte": at}})
                .sort(doc! {"seq": -1}),
        )
        .await?;
        let mut base: Option<(u64, Bytes)> = match &kept {
            Some(entry) => Some((sequence(entry, "seq")?, bytes_field(entry, "data")?)),
            None => None,
        };
        let current = self.read_snapshot(room_id).await?;
        // After a deletion's fence the room started again empty: nothing before it
        // is the room's.
        let fence = current.as_ref().map_or(0, |current| current.fence);
        if seq < fence {
            return Ok(None);
        }
        if base.as_ref().is_some_and(|(kept, _)| *kept <= fence) {
            base = None;
        }
        if let Some(Base {
            through_seq,
            data: Some(data),
            ..
        }) = current
        {
            if through_seq <= seq && base.as_ref().is_none_or(|(kept, _)| *kept < through_seq) {
                base = Some((through_seq, data));
            }
        }
        if base.is_none() {
            // Without a base, the log must start at the room's first update: 1, or
            // the one right after a deletion's fence (not what a compaction left).
            let mut after_fence = updates::holding_after(fence)?;
            after_fence.insert("room_id", room_id);
            let first = bounded(
                self.updates
                    .find_one(after_fence)
                    .sort(doc! {"seq": 1})
                    .projection(doc! {"_id": 0, "seq": 1}),
            )
            .await?;
            let starts_whole = match first {
                Some(first) => sequence(&first, "seq")? == fence + 1,
                None => false,
            };
            if !starts_whole {
                return Ok(None);
            }
        }
        let from = base.as_ref().map_or(fence, |(kept, _)| *kept);
        let mut filter = updates::holding_after(from)?;
        filter.insert("room_id", room_id);
        filter.insert("seq", doc! {"$lte": at});
        filter.insert("snapshot", doc! {"$ne": true});
        let cursor = bounded(
            self.updates
                .find(filter)
                .sort(doc! {"seq": 1})
                .projection(doc! {"_id": 0, "seq": 1, "data": 1, "entries": 1}),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        Ok(Some(VersionData {
            base: base.map(|(_, data)| data),
            updates: updates::unpack(&documents, from, seq, true)?
                .into_iter()
                .filter_map(|entry| entry.data)
                .collect(),
        }))
    }

    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.writable().await?;
        let data = faster_hex::hex_string(state);
        // The original stores `size` as a Python int, which BSON encodes as int32 when
        // it fits; write the same so both backends read each other's documents alike.
        let size = hex_size(&data);
        let updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        bounded(
            self.checkpoints
                .update_one(
                    doc! {"room_id": room_id},
                    doc! {"$set": {
                        "room_id": room_id,
                        "data": data,
                        "updated_at": updated_at,
                        "size": size,
                    }},
                )
                .upsert(true),
        )
        .await?;
        Ok(())
    }

    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        // Only `data` is read: `updated_at` and `size` vary in type between writers
        // (string or date, int32 or int64 or double) and nothing here needs them.
        let found = bounded(
            self.checkpoints
                .find_one(doc! {"room_id": room_id})
                .projection(doc! {"_id": 0, "data": 1}),
        )
        .await?;
        found
            .map(|document| checkpoint_data(&document, room_id))
            .transpose()
    }

    /// The fence is kept in the room's snapshot document (`fence`), which becomes
    /// `deleted` and loses its data, before anything is deleted: from then on
    /// readers skip every number up to it, and an older compaction cannot replace
    /// it. The room's next compaction brings data back but keeps the `fence`, so
    /// a copy that landed late stays unread (until compactions delete it).
    async fn delete_room_fenced(
        &self,
        room_id: &str,
        through_seq: u64,
        deletions: u64,
    ) -> Result<(), StoreError> {
        self.writable().await?;
        let mut through = self.logged_through(room_id).await?.max(through_seq);
        if through == 0 {
            // No number was ever used: nothing to fence.
            return self.delete(room_id).await;
        }
        let mut attempts = 0;
        loop {
            let at = to_i64(through)?;
            let fence = doc! {
                "room_id": room_id,
                "through_seq": at,
                "fence": at,
                "deletions": to_i64(deletions)?,
                "deleted": true,
                "updated_at": mongodb::bson::DateTime::now(),
            };
            if self
                .replace_snapshot(room_id, at, fence, doc! {"data": ""}, doc! {})
                .await?
            {
                break;
            }
            // Something newer got in since the log was read: another deletion's
            // fence, which covers this one once it counts this deletion too, or a
            // compaction of numbers the room took meanwhile, to fence past.
            attempts += 1;
            if attempts == 5 {
                return Err(StoreError::Unavailable(format!(
                    "room {room_id:?} kept being compacted while it was deleted; try again"
                )));
            }
            let Some(stored) = self.read_snapshot(room_id).await? else {
                continue;
            };
            if stored.fence >= through {
                bounded(self.snapshots.update_one(
                    doc! {"room_id": room_id},
                    doc! {"$max": {"deletions": to_i64(deletions)?}},
                ))
                .await?;
                break;
            }
            through = through.max(stored.through_seq);
        }
        let mut covered = updates::through(to_i64(through)?);
        covered.insert("room_id", room_id);
        bounded(self.updates.delete_many(covered)).await?;
        bounded(self.checkpoints.delete_many(doc! {"room_id": room_id})).await?;
        Ok(())
    }

    async fn fenced_through(&self, room_id: &str) -> Result<u64, StoreError> {
        self.fence(room_id).await
    }

    async fn list_rooms(&self) -> Result<Vec<String>, StoreError> {
        let mut rooms = std::collections::BTreeSet::new();
        let distinct = |collection: &Collection<Document>, filter: Document| {
            let collection = collection.clone();
            async move {
                let ids = bounded(collection.distinct("room_id", filter)).await?;
                Ok::<_, StoreError>(ids.into_iter().filter_map(|id| match id {
                    Bson::String(id) => Some(id),
                    _ => None,
                }))
            }
        };
        rooms.extend(distinct(&self.snapshots, doc! {"deleted": {"$ne": true}}).await?);
        rooms.extend(distinct(&self.checkpoints, doc! {}).await?);
        // A deleted room's log entries copied in after its fence are no room: the
        // fences are read in one query, and only a fenced room's log is looked at.
        let cursor = bounded(
            self.snapshots
                .find(doc! {"deleted": true})
                .projection(doc! {"_id": 0, "room_id": 1, "fence": 1}),
        )
        .await?;
        let mut fences = HashMap::new();
        for fence in bounded(cursor.try_collect::<Vec<Document>>()).await? {
            if let Ok(room_id) = fence.get_str("room_id") {
                fences.insert(room_id.to_owned(), fence_of(&fence)?);
            }
        }
        for room_id in distinct(&self.updates, doc! {}).await? {
            let Some(&fence) = fences.get(&room_id) else {
                rooms.insert(room_id);
                continue;
            };
            let mut after = updates::holding_after(fence)?;
            after.insert("room_id", &room_id);
            if bounded(self.updates.find_one(after)).await?.is_some() {
                rooms.insert(room_id);
            }
        }
        Ok(rooms.into_iter().collect())
    }

    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        let checkpoint = match bounded(self.checkpoints.find_one(doc! {"room_id": room_id})).await?
        {
            Some(document) => Some(StoredCheckpoint {
                data: checkpoint_data(&document, room_id)?,
                // The original writes a string; a date (written by other tools) is
                // carried as its RFC 3339 text.
                updated_at: match document.get("updated_at") {
                    Some(Bson::String(text)) => text.clone(),
                    Some(Bson::DateTime(at)) => {
                        chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
                            .unwrap_or_default()
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
                    }
                    _ => String::new(),
                },
            }),
            None => None,
        };
        let snapshot = match bounded(self.snapshots.find_one(doc! {"room_id": room_id})).await? {
            Some(document) if bare_fence(&document) => None,
            Some(document) => Some(StoredSnapshot {
                through_seq: sequence(&document, "through_seq")?,
                at_ms: document
                    .get_datetime("updated_at")
                    .map_or(0, |at| at.timestamp_millis()),
                data: bytes_field(&document, "data")?,
            }),
            None => None,
        };
        Ok(RoomParts {
            checkpoint,
            snapshot,
        })
    }

    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let after_seq = after_seq.max(self.fence(room_id).await?);
        let mut filter = updates::holding_after(after_seq)?;
        filter.insert("room_id", room_id);
        // Documents are read until they reach `limit` entries past `after_seq`
        // (a run holds many: reading `limit` runs for a page of `limit` entries
        // made a dump of a long log quadratic). Overlapping runs count some
        // entries twice, so a shorter page is not the end, only an empty one is.
        let mut cursor = bounded(
            self.updates
                .find(filter)
                .sort(doc! {"seq": 1})
                .batch_size(u32::try_from(limit.clamp(1, 64)).unwrap_or(64)),
        )
        .await?;
        let mut documents: Vec<Document> = Vec::new();
        let mut counted = 0;
        let mut stopped_early = false;
        while let Some(document) = bounded(cursor.try_next()).await? {
            let first = sequence(&document, "seq")?.max(after_seq + 1);
            counted += updates::covered(&document)?.saturating_sub(first) + 1;
            documents.push(document);
            if counted >= limit as u64 {
                stopped_early = true;
                break;
            }
        }
        let mut read = updates::unpack(&documents, after_seq, u64::MAX, true)?;
        read.truncate(limit);
        // Documents come in the order of their first number, so a page that ends
        // inside a batch may not have reached a snapshot kept in the history under
        // the number of one of the batch's updates, which stands for that update.
        let unread_after = match documents.last() {
            Some(last) if stopped_early => sequence(last, "seq")?,
            _ => u64::MAX,
        };
        if let Some(last) = read.last().map(|entry| entry.seq) {
            if last > unread_after {
                let kept = bounded(
                    self.updates
                        .find(doc! {
                            "room_id": room_id,
                            "snapshot": true,
                            "seq": {"$gt": to_i64(unread_after)?, "$lte": to_i64(last)?},
                        })
                        .sort(doc! {"seq": 1}),
                )
                .await?;
                let kept: Vec<Document> = bounded(kept.try_collect()).await?;
                if !kept.is_empty() {
                    documents.extend(kept);
                    read = updates::unpack(&documents, after_seq, last, true)?;
                }
            }
        }
        let mut entries: Vec<StoredEntry> = Vec::with_capacity(read.len());
        for entry in read {
            let Some(data) = entry.data else { continue };
            entries.push(StoredEntry {
                seq: entry.seq,
                at_ms: entry.at_ms,
                author: entry.author,
                snapshot: entry.snapshot,
                data,
            });
        }
        Ok(entries)
    }

    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError> {
        self.writable().await?;
        if let Some(checkpoint) = &parts.checkpoint {
            let data = faster_hex::hex_string(&checkpoint.data);
            bounded(
                self.checkpoints
                    .update_one(
                        doc! {"room_id": room_id},
                        doc! {"$set": {
                            "room_id": room_id,
                            "size": hex_size(&data),
                            "data": data,
                            "updated_at": &checkpoint.updated_at,
                        }},
                    )
                    .upsert(true),
            )
            .await?;
        }
        if let Some(snapshot) = &parts.snapshot {
            // Whole, so a fence a deleted room of that name left goes with it: the
            // copy is the room now.
            bounded(
                self.snapshots
                    .replace_one(
                        doc! {"room_id": room_id},
                        doc! {
                            "room_id": room_id,
                            "through_seq": to_i64(snapshot.through_seq)?,
                            "data": binary(&snapshot.data),
                            "updated_at": mongodb::bson::DateTime::from_millis(snapshot.at_ms),
                        },
                    )
                    .upsert(true),
            )
            .await?;
        }
        Ok(())
    }

    async fn write_entries(
        &self,
        room_id: &str,
        entries: &[StoredEntry],
    ) -> Result<(), StoreError> {
        self.writable().await?;
        self.append(updates::pack(entries.iter().map(|entry| {
            (
                room_id,
                Item {
                    seq: entry.seq,
                    data: &entry.data,
                    at_ms: entry.at_ms,
                    author: entry.author.as_deref(),
                    snapshot: entry.snapshot,
                },
            )
        })))
        .await
    }

    async fn compacted_through(&self, room_id: &str) -> Result<u64, StoreError> {
        let snapshot = bounded(
            self.snapshots
                .find_one(doc! {"room_id": room_id})
                .projection(doc! {"_id": 0, "through_seq": 1}),
        )
        .await?;
        snapshot.map_or(Ok(0), |snapshot| sequence(&snapshot, "through_seq"))
    }

    async fn logged_through(&self, room_id: &str) -> Result<u64, StoreError> {
        // The document with the highest first number, and the run reaching furthest
        // (runs written by racing writers may overlap).
        let mut through = self
            .read_snapshot(room_id)
            .await?
            .map_or(0, |base| base.through_seq);
        for key in ["seq", "last"] {
            let found = bounded(
                self.updates
                    .find_one(doc! {"room_id": room_id})
                    .sort(doc! {key: -1})
                    .projection(doc! {"_id": 0, "seq": 1, "last": 1}),
            )
            .await?;
            if let Some(found) = found {
                through = through.max(updates::covered(&found)?);
            }
        }
        Ok(through)
    }

    fn writes_held(&self) -> Option<String> {
        self.held.lock().ok().and_then(|held| held.clone())
    }

    /// Answers only when the store can be written: a server barred from writing
    /// (waiting for, or refused, the writer lease) is not healthy because MongoDB
    /// answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.writable().await?;
        bounded(self.database.run_command(doc! {"ping": 1})).await?;
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Lets the cleanup task finish what it was given; whatever it cannot delete in
        // time stays behind harmlessly until the room's next compaction.
        if let Ok(mut sender) = self.cleanup.lock() {
            sender.take();
        }
        let task = self
            .cleanup_task
            .lock()
            .ok()
            .and_then(|mut task| task.take());
        if let Some(task) = task {
            if tokio::time::timeout(OPERATION_TIMEOUT, task).await.is_err() {
                tracing::warn!("compacted log entries left for the next compaction");
            }
        }
        // Ends server sessions and closes pooled connections politely; the journal has
        // already written (or given up on) everything by now.
        tokio::time::timeout(OPERATION_TIMEOUT, self.client.clone().shutdown())
            .await
            .map_err(|_| Failure::TimedOut.into())
    }
}

/// Deletes log entries that compactions covered, one room at a time, coalescing
/// ranges queued for the same room. Ends when the store closes and the queue is done.
async fn remove_compacted(
    updates: Collection<Document>,
    snapshots: Collection<Document>,
    mut queued: mpsc::UnboundedReceiver<Cleanup>,
) {
    let mut pending: HashMap<String, (i64, Option<i64>)> = HashMap::new();
    let mut open = true;
    loop {
        if pending.is_empty() {
            match queued.recv().await {
                Some((room, through_seq, since)) => {
                    pending.insert(room, (through_seq, since));
                }
                None => return,
            }
        }
        while open {
            match queued.try_recv() {
                Ok((room, through_seq, since)) => {
                    let entry = pending.entry(room).or_insert((through_seq, since));
                    *entry = (entry.0.max(through_seq), since);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let Some(room) = pending.keys().next().cloned() else {
            continue;
        };
        let Some((through_seq, since)) = pending.remove(&room) else {
            continue;
        };
        if let Some(since) = since {
            prune_history(&updates, &room, since).await;
            continue;
        }
        // Only what the room's snapshot covers now: a room deleted since this was
        // queued has no snapshot (or a new one of its own), and the new room's log
        // restarts at 1, below the old range; or it has a fence, and the new log
        // starts above it.
        let covered = match bounded(snapshots.find_one(doc! {"room_id": &room})).await {
            Ok(Some(snapshot)) => sequence(&snapshot, "through_seq")
                .ok()
                .and_then(|seq| i64::try_from(seq).ok())
                .map(|seq| seq.min(through_seq)),
            Ok(None) => None,
            Err(failure) => {
                tracing::debug!(room, error = %StoreError::from(failure), "compacted log entries not deleted");
                None
            }
        };
        let Some(through_seq) = covered else {
            continue;
        };
        let mut covered = updates::through(through_seq);
        covered.insert("room_id", &room);
        let deleted = bounded(updates.delete_many(covered)).await;
        if let Err(failure) = deleted {
            // Not retried: during an outage that would spin, and the room's next
            // compaction covers these entries again.
            tracing::debug!(room, error = %StoreError::from(failure), "compacted log entries not deleted");
        }
    }
}

/// Drops what has left the history's retention period: everything before the
/// newest kept snapshot older than `since` (the base of the oldest version kept).
async fn prune_history(updates: &Collection<Document>, room: &str, since: i64) {
    let floor = bounded(
        updates
            .find_one(doc! {"room_id": room, "snapshot": true, "at": {"$lt": since}})
            .sort(doc! {"seq": -1})
            .projection(doc! {"_id": 0, "seq": 1}),
    )
    .await;
    let floor = match floor {
        Ok(Some(entry)) => sequence(&entry, "seq")
            .ok()
            .and_then(|seq| i64::try_from(seq).ok()),
        Ok(None) => None,
        Err(failure) => {
            tracing::debug!(room, error = %StoreError::from(failure), "history not pruned");
            None
        }
    };
    let Some(floor) = floor else {
        return;
    };
    let mut gone = updates::through(floor - 1);
    gone.insert("room_id", room);
    if let Err(failure) = bounded(updates.delete_many(gone)).await {
        // The room's next compaction tries again.
        tracing::debug!(room, error = %StoreError::from(failure), "history not pruned");
    }
}

/// A driver call that failed or did not answer in time.
enum Failure {
    Driver(DriverError),
    TimedOut,
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Driver(error) => driver_error(error),
            Failure::TimedOut => StoreError::Unavailable(format!(
                "MongoDB did not answer within {} s",
                OPERATION_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Runs a driver operation with `OPERATION_TIMEOUT`.
async fn bounded<T>(
    operation: impl std::future::IntoFuture<Output = Result<T, DriverError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation.into_future()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Failure::Driver(error)),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// A room's `room_snapshots` document as read.
struct Base {
    through_seq: u64,
    /// None: a deletion's fence, with nothing compacted since.
    data: Option<Bytes>,
    /// Numbers up to this one were a deleted room's (0: none).
    fence: u64,
}

/// Whether a `room_snapshots` document is a deletion's fence with no snapshot since.
fn bare_fence(snapshot: &Document) -> bool {
    snapshot.get_bool("deleted").unwrap_or(false)
}

/// The number a deletion fenced the room's log at, 0 for none.
fn fence_of(snapshot: &Document) -> Result<u64, StoreError> {
    if snapshot.contains_key("fence") {
        sequence(snapshot, "fence")
    } else {
        Ok(0)
    }
}

/// A write refused because a unique index already holds its key.
fn duplicate_key(error: &DriverError) -> bool {
    use mongodb::error::WriteFailure;
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn refused_index(error: &DriverError) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::Command(refusal)
            if [INDEX_OPTIONS_CONFLICT, INDEX_KEY_SPECS_CONFLICT, DUPLICATE_KEY].contains(&refusal.code)
    )
}

/// Undecodable stored data is `Corrupt`; everything else the driver reports (no
/// server, connection lost, timeouts, a command the server refused) is something a
/// retry can get past, so `Unavailable`.
fn driver_error(error: DriverError) -> StoreError {
    if refused_for_good(&error) {
        return StoreError::Rejected(describe_refusal(&error));
    }
    match *error.kind {
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(describe_error(&error)),
        _ => StoreError::Unavailable(describe_error(&error)),
    }
}

/// Server error codes that say the document itself is unacceptable, so the same
/// write will fail however often it is retried: BadValue, InvalidLength,
/// DocumentValidationFailure, BSONObjectTooLarge, and the two "document too large
/// to insert/update" codes.
const REFUSALS: [i32; 6] = [2, 16, 121, 10334, 17419, 17420];

/// The server's own words for a refusal, without the driver's error dump.
fn describe_refusal(error: &DriverError) -> String {
    use mongodb::error::WriteFailure;
    let refusal = match error.kind.as_ref() {
        ErrorKind::Command(command) => Some((command.message.clone(), command.code)),
        ErrorKind::Write(WriteFailure::WriteError(write)) => {
            Some((write.message.clone(), write.code))
        }
        ErrorKind::InsertMany(failure) => failure.write_errors.as_ref().and_then(|errors| {
            errors
                .iter()
                .find(|error| error.code != DUPLICATE_KEY)
                .map(|error| (error.message.clone(), error.code))
        }),
        _ => None,
    };
    match refusal {
        Some((message, code)) => one_line(&format!("MongoDB: {message} (code {code})")),
        None => describe_error(error),
    }
}

/// True when MongoDB (or the driver, before sending) refuses the write as it is.
fn refused_for_good(error: &DriverError) -> bool {
    use mongodb::error::WriteFailure;
    match error.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } | ErrorKind::BsonSerialization(_) => true,
        ErrorKind::Command(command) => REFUSALS.contains(&command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => REFUSALS.contains(&write.code),
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.as_ref().is_some_and(|errors| {
                    errors.iter().any(|error| REFUSALS.contains(&error.code))
                        && errors.iter().all(|error| {
                            error.code == DUPLICATE_KEY || REFUSALS.contains(&error.code)
                        })
                })
        }
        _ => false,
    }
}

fn unavailable(error: DriverError) -> StoreError {
    StoreError::Unavailable(describe_error(&error))
}

/// The driver's error without its labels and source chain, on one line. A
/// server-selection timeout describes the whole topology; what a person needs is
/// why the server could not be used, e.g. "Connection refused".
pub fn describe_error(error: &DriverError) -> String {
    if let ErrorKind::ServerSelection { message, .. } = error.kind.as_ref() {
        let cause = message
            .split("Error: Kind: ")
            .nth(1)
            .and_then(|rest| rest.split(", labels:").next());
        return match cause {
            Some(cause) => one_line(&format!("no server available ({cause})")),
            None => "no server available".to_owned(),
        };
    }
    one_line(&error.kind.to_string())
}

/// Health, logs and the start-up message want one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `room_documents.size`: the hex length, an int32 when it fits, as the original
/// backend (a Python int) writes it.
fn hex_size(data: &str) -> Bson {
    i32::try_from(data.len())
        .map(Bson::Int32)
        .unwrap_or(Bson::Int64(data.len() as i64))
}

/// A checkpoint's document, from its hex `data` (the original's shape) or binary.
fn checkpoint_data(document: &Document, room_id: &str) -> Result<Bytes, StoreError> {
    match document.get("data") {
        Some(Bson::String(hex_data)) => {
            hex::decode(hex_data.trim())
                .map(Bytes::from)
                .map_err(|error| {
                    StoreError::Corrupt(format!("checkpoint of room {room_id} is not hex: {error}"))
                })
        }
        Some(Bson::Binary(binary)) => Ok(Bytes::from(binary.bytes.clone())),
        other => Err(StoreError::Corrupt(format!(
            "checkpoint of room {room_id} has no hex data (found {})",
            other.map_or("nothing".to_owned(), |value| format!(
                "{:?}",
                value.element_type()
            ))
        ))),
    }
}

fn binary(data: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: data.to_vec(),
    }
}

fn to_i64(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("sequence number {seq} does not fit in int64")))
}

/// A sequence number stored as any BSON number (a hand-edited or imported document
/// may hold an int32 or a double).
fn sequence(document: &Document, field: &str) -> Result<u64, StoreError> {
    let value = match document.get(field) {
        Some(Bson::Int64(value)) => Some(*value),
        Some(Bson::Int32(value)) => Some(i64::from(*value)),
        Some(Bson::Double(value)) if value.fract() == 0.0 => Some(*value as i64),
        _ => None,
    };
    value
        .and_then(|value| u64::try_from(value).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{field} is not a non-negative integer in {}",
                describe(document)
            ))
        })
}

fn bytes_field(document: &Document, field: &str) -> Result<Bytes, StoreError> {
    match document.get(field) {
        Some(Bson::Binary(binary)) => Ok(Bytes::from(binary.bytes.clone())),
        _ => Err(StoreError::Corrupt(format!(
            "{field} is not binary data in {}",
            describe(document)
        ))),
    }
}

/// Names a stored document in an error without dumping its (possibly large) data.
fn describe(document: &Document) -> String {
    let room = document.get_str("room_id").unwrap_or("?");
    match document.get("seq") {
        Some(seq) => format!("room {room} entry {seq}"),
        None => format!("room {room}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_read_from_any_integer_type() {
        for value in [Bson::Int32(7), Bson::Int64(7), Bson::Double(7.0)] {
            let document = doc! {"room_id": "r", "seq": value};
            assert_eq!(sequence(&document, "seq").unwrap(), 7);
        }
        for bad in [Bson::Double(7.5), Bson::Int64(-1), Bson::String("7".into())] {
            let document = doc! {"room_id": "r", "seq": bad};
            assert!(matches!(
                sequence(&document, "seq"),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_described_by_its_cause() {
        let store = MongoStore::connect("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", "x")
            .await
            .unwrap();
        match store.ping().await {
            Err(StoreError::Unavailable(reason)) => {
                assert!(reason.starts_with("no server available ("), "{reason}");
                assert!(reason.contains("refused"), "{reason}");
                assert!(!reason.contains("labels"), "{reason}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn multi_line_driver_messages_become_one_line() {
        assert_eq!(
            one_line("Server selection timeout:\n  No available servers.  Topology: {}"),
            "Server selection timeout: No available servers. Topology: {}"
        );
    }
}
