//! The embedded store: files under the data directory, so `coedit serve` needs
//! nothing else installed.
//!
//! - The *journal* (`journal`, `coedit-journal.log`) takes every accepted update, in
//!   arrival order: one `write` per group commit, however many rooms it touches.
//!   Its rows also stay in memory until they are folded.
//! - The *store* file (`coedit.sqlite3`, SQLite) keeps each room's log
//!   (`update_log`, by room), snapshots and checkpoints. Every `FOLD_ROWS` updates
//!   the journal's rows are folded into the log in bulk, which writes each busy
//!   room's log page once for many updates.
//!
//! The fold and compactions write the store file on a blocking thread while the
//! journal keeps taking appends: SQLite lets one writer at a time into a file, and
//! with write-ahead relay a commit that waited for a fold (10–50 ms at 300 busy
//! rooms) held every room's relay.
//!
//! Compactions are an optimisation (the log holds everything they cover), so a
//! journal batch does not wait for them: they are queued and applied to the store
//! file by the next holder of its connection, before anything reads it. A crash
//! before they are applied leaves the room's previous snapshot and its full log.
//!
//! rusqlite is synchronous, so store-file calls run on tokio's blocking pool. The
//! journal's common case, a write of appends while the journal is free, is made
//! by the journal's task itself (`write_inline`): a `write` to the page cache costs
//! less than the two thread hand-offs would. Each side sits behind a
//! `std::sync::Mutex`, never held across an await; whoever takes both takes the
//! store's first.

mod journal;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

pub use self::journal::{read_dir as read_journal, FOLDING_FILE, JOURNAL_FILE};
use self::journal::{Journal, Record};
use super::{
    history_floor, DurableState, History, HistoryEntry, LoggedUpdate, RoomParts, Snapshot, Store,
    StoreError, StoredCheckpoint, StoredEntry, StoredSnapshot, VersionData, WriteOp,
};

/// File name of the store database inside `--data-dir`.
pub const DATABASE_FILE: &str = "coedit.sqlite3";
/// The journal's file before it was an append-only file of its own: folded into
/// the store file at open and removed.
const SQLITE_JOURNAL_FILE: &str = "coedit-journal.sqlite3";

const SCHEMA: &str = "
    -- Every update, by room, folded in from the journal's tail every FOLD_ROWS
    -- updates. With history kept, compactions' snapshots are kept here too
    -- (snapshot = 1), as bases.
    -- The data last: reading a row's other columns never reads a large row's
    -- overflow pages. Indexes: LOG_INDEXES.
    CREATE TABLE IF NOT EXISTS update_log (
        id INTEGER PRIMARY KEY,
        room_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL DEFAULT 0,
        author TEXT,
        snapshot INTEGER NOT NULL DEFAULT 0,
        data BLOB NOT NULL
    );
    -- history_floor: NULL without history (the log keeps only what follows the
    -- snapshot); otherwise the oldest sequence number the history keeps.
    CREATE TABLE IF NOT EXISTS snapshots (
        room_id TEXT PRIMARY KEY,
        through_seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        history_floor INTEGER
    );
    -- The original backend's checkpoint shape: hex data, ISO-8601 time, hex length.
    CREATE TABLE IF NOT EXISTS room_documents (
        room_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    -- Rooms being deleted: their rows left this file in the same commit, and their
    -- journal rows are deleted next. One still here at open was cut short by a
    -- crash, and its journal rows are deleted then.
    CREATE TABLE IF NOT EXISTS deleted_rooms (
        room_id TEXT PRIMARY KEY
    );
";

/// After `SCHEMA` and the migrations, which an older log may need first: a room's
/// log in order, and the snapshots it keeps (read at every compaction, so finding
/// them does not walk the room's whole history).
const LOG_INDEXES: &str = "
    CREATE UNIQUE INDEX IF NOT EXISTS update_log_by_room ON update_log (room_id, seq);
    CREATE INDEX IF NOT EXISTS update_log_snapshots ON update_log (room_id, seq, at)
        WHERE snapshot = 1;
";

/// Columns added since the first release, for databases created before them.
const ADDED_COLUMNS: [(&str, &str, &str); 6] = [
    ("journal_tail", "at", "INTEGER NOT NULL DEFAULT 0"),
    ("journal_tail", "author", "TEXT"),
    ("update_log", "at", "INTEGER NOT NULL DEFAULT 0"),
    ("update_log", "author", "TEXT"),
    ("update_log", "snapshot", "INTEGER NOT NULL DEFAULT 0"),
    ("snapshots", "history_floor", "INTEGER"),
];

/// Adds the columns an older database lacks (to the tables it has).
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let columns: Vec<String> = connection
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !columns.is_empty() && !columns.iter().any(|name| name == column) {
            connection.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    Ok(())
}

/// Gives the log its indexes, first rebuilding a log kept by an earlier release as
/// a `WITHOUT ROWID` table. There the whole row was the B-tree's key, so finding a
/// place in the log read every large row on the way (a kept snapshot is the
/// whole document) from its overflow pages: after two minutes of rooms of 4,
/// that search was half of each fold. Now the key is `(room_id, seq)` in an index
/// of its own.
fn index_the_log(connection: &mut Connection) -> rusqlite::Result<()> {
    let without_rowid: bool = connection.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master
             WHERE type = 'table' AND name = 'update_log' AND sql LIKE '%WITHOUT ROWID%'",
        [],
        |row| row.get(0),
    )?;
    let started = Instant::now();
    let txn = connection.transaction()?;
    if without_rowid {
        // About a second per 100 MB of store file. The old table's pages stay in
        // the file, free, and are reused as the log grows.
        tracing::info!("rebuilding the rooms' log in the store file's newer layout (once)");
        txn.execute_batch("ALTER TABLE update_log RENAME TO update_log_without_rowid;")?;
        txn.execute_batch(SCHEMA)?;
        txn.execute_batch(
            "INSERT INTO update_log (room_id, seq, at, author, snapshot, data)
                 SELECT room_id, seq, at, author, snapshot, data FROM update_log_without_rowid
                 ORDER BY room_id, seq;
             DROP TABLE update_log_without_rowid;",
        )?;
    }
    txn.execute_batch(LOG_INDEXES)?;
    txn.commit()?;
    if without_rowid {
        tracing::info!(elapsed = ?started.elapsed(), "the rooms' log is rebuilt");
    }
    Ok(())
}

/// Updates kept in the journal before they are folded into `update_log`: enough
/// that a fold writes each busy room's log page once for many updates, few enough
/// that the journal's memory stays small.
const FOLD_ROWS: usize = 8192;
/// Update bytes that make a fold due whatever the rows: the journal keeps its rows
/// in memory until they are folded.
const FOLD_BYTES: usize = 16 << 20;
/// Most update bytes a batch written on the journal's own task may carry
/// (`write_inline`); a large paste goes to the blocking pool.
const INLINE_WRITE_BYTES: usize = 64 * 1024;
/// How long background work waits after failing before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    path: PathBuf,
    /// Every commit syncs to disk (`synchronous=FULL`).
    fsync: bool,
}

struct Shared {
    /// The store file's connection.
    store: Mutex<Connection>,
    journal: Mutex<Journal>,
    /// Compactions written by the journal and not yet applied to the store file,
    /// in order.
    pending: Mutex<Vec<Snapshot>>,
    /// The journal's rows and update bytes not being folded yet (`Journal::len`,
    /// `Journal::bytes`), read without its lock.
    tail_rows: AtomicUsize,
    tail_bytes: AtomicUsize,
    /// A blocking thread is folding or applying compactions.
    maintaining: AtomicBool,
    /// Every commit syncs to disk (`SqliteStore::fsync`).
    fsync: bool,
    /// Background work failed: not tried again before then.
    retry_at: Mutex<Option<Instant>>,
    checkpointer: Checkpointer,
}

/// How often the checkpointer looks at what was written.
const CHECKPOINT_POLL: Duration = Duration::from_millis(500);
/// WAL bytes (estimated) that make the next look checkpoint: a few seconds of a
/// busy server's commits, so the WAL stays small and each checkpoint copies a
/// page once for many commits.
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// The longest the WAL goes without a checkpoint. A checkpoint with nothing new to
/// copy syncs nothing, so this costs an idle server nothing.
const CHECKPOINT_AT_LEAST_EVERY: Duration = Duration::from_secs(10);
/// What one committed transaction is counted as in the WAL, besides its data: a
/// leaf page and a page above it.
const COMMIT_WAL_BYTES: u64 = 2 * 4096;

/// Checkpoints the store file's WAL on a thread and connection of its own. SQLite's
/// automatic checkpoint runs inside whichever commit crosses its threshold and
/// syncs the database file there, holding the store file meanwhile (loads, history
/// reads, deletions wait for it). A passive checkpoint beside the writer never
/// blocks it.
///
/// It checkpoints once enough was written, not on a clock: a checkpoint syncs
/// the WAL and the database file, and the first commit after it syncs the WAL's
/// new header, so checkpointing twice a second cost a lightly used server four
/// disk syncs a second (~0.15 ms of CPU per keystroke of the original page in a
/// large document at 8 keystrokes a second, BENCHMARKS.md).
///
/// A checkpoint beside a writer that never pauses never catches up: it copies
/// what was committed when it began while new commits land behind it, and SQLite
/// starts the WAL over from its beginning only at a commit that finds everything
/// copied (when the journal was a SQLite file, its WAL grew by 14 MB/s at rooms of
/// 4). So after the bulk copy beside the writers, the checkpointer takes the
/// file's own connection for a moment and copies the few commits that came in
/// meanwhile: the next commit starts the WAL over.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Estimated WAL bytes committed since the last checkpoint.
    written: Arc<AtomicU64>,
}

impl Checkpointer {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the thread, with a connection of its own to the store file at
    /// `path`. It holds `shared` weakly: it ends with the store.
    fn start(&self, path: &Path, shared: std::sync::Weak<Shared>) -> Result<(), StoreError> {
        let store = open_connection(path)?;
        let (stopped, pending) = (self.stop.clone(), self.written.clone());
        std::thread::Builder::new()
            .name("coedit-sqlite-checkpoint".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_POLL);
                    if pending.load(Ordering::Relaxed) < CHECKPOINT_BYTES
                        && last.elapsed() < CHECKPOINT_AT_LEAST_EVERY
                    {
                        continue;
                    }
                    pending.store(0, Ordering::Relaxed);
                    last = Instant::now();
                    passive_checkpoint(&store);
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    catch_up(&shared);
                }
            })
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start checkpointer: {error}"))
            })?;
        Ok(())
    }

    /// Counts a committed transaction of `data` bytes towards the next checkpoint.
    fn committed(&self, data: usize) {
        self.written
            .fetch_add(COMMIT_WAL_BYTES + data as u64, Ordering::Relaxed);
    }
}

/// Copies what it can of `connection`'s WAL (its main file's) into the database
/// file without waiting for anyone; a failure is left to the next one.
fn passive_checkpoint(connection: &Connection) {
    if let Err(error) = connection.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    {
        tracing::debug!(%error, "WAL checkpoint failed; retrying");
    }
}

/// Checkpoints the store file through its own connection, so no commit lands while
/// it copies: everything is copied, and the next commit starts the WAL over. What
/// is left after the checkpoint beside the writers is a few commits.
fn catch_up(shared: &Shared) {
    if let Ok(store) = shared.store.lock() {
        passive_checkpoint(&store);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens a connection to one of the store's files, on Unix through SQLite's
/// `unix-excl` VFS (elsewhere its default one). The first use takes the file for
/// this process alone (the data directory's lock already keeps a second server
/// out), so its connections coordinate in memory, with the WAL index on the heap,
/// instead of through `fcntl` locks on the file and its shared memory: about two
/// calls per commit (at rooms of 4, 70,000 in 5 s, a sixth of the server's system
/// calls: BENCHMARKS.md).
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    #[cfg(unix)]
    let opened =
        Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), c"unix-excl");
    #[cfg(not(unix))]
    let opened = Connection::open(path);
    opened.map_err(unavailable)
}

/// Exclusive claim on a data directory for one `coedit serve`: two servers writing
/// one database would each number a room's log on its own and corrupt it. Held
/// until dropped; the operating system releases it when the process dies, however
/// it dies, so a crashed server never blocks its successor.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Name of the lock file inside `--data-dir`.
pub const LOCK_FILE: &str = "coedit.lock";

impl DataDirLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(StoreError::Unavailable(format!(
                    "{} is in use by another coedit server{}; stop it or choose another --data-dir",
                    data_dir.display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot lock {}: {error}",
                    path.display()
                )))
            }
        }
        // The pid is only for the message above; the lock is what counts.
        use std::io::Write;
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self { _file: file })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`; commits survive a
    /// crash of the process.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, false)
    }

    /// `open`, with `fsync` making every commit also survive a power loss.
    pub fn open_with(data_dir: &Path, fsync: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        // WAL with synchronous=NORMAL: a commit is durable against a process crash
        // (kill -9) as soon as it returns (it is in the OS); only a power loss can
        // drop the last few (and the journal's last appends; folds are synced).
        // FULL syncs the WAL to disk on every commit. Checkpoints are the
        // `Checkpointer`'s, never a commit's.
        let synchronous = if fsync { "FULL" } else { "NORMAL" };
        let pragmas = format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=5000;
             PRAGMA wal_autocheckpoint=0;"
        );
        let open = |path: &Path, schema: &str| -> Result<Connection, StoreError> {
            let connection = open_connection(path)?;
            connection.execute_batch(&pragmas).map_err(|error| {
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                    StoreError::Unavailable(format!(
                        "{} is open in another process; close it there (a running server keeps its files to itself)",
                        path.display()
                    ))
                } else {
                    unavailable(error)
                }
            })?;
            connection.execute_batch(schema).map_err(unavailable)?;
            migrate(&connection).map_err(unavailable)?;
            Ok(connection)
        };
        let mut store = open(&path, SCHEMA)?;
        index_the_log(&mut store).map_err(unavailable)?;
        fold_tail_of_one_file(&mut store).map_err(unavailable)?;
        fold_sqlite_journal(&mut store, data_dir, fsync)?;
        let journal = Journal::open(data_dir, fsync)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            journal: Mutex::new(journal),
            pending: Mutex::new(Vec::new()),
            tail_rows: AtomicUsize::new(0),
            tail_bytes: AtomicUsize::new(0),
            maintaining: AtomicBool::new(false),
            fsync,
            retry_at: Mutex::new(None),
            checkpointer: Checkpointer::new(),
        });
        shared.checkpointer.start(&path, Arc::downgrade(&shared))?;
        {
            // What a crash left: deletions to finish, then the journal to fold.
            let mut store = lock(&shared.store)?;
            finish_deletions(&shared, &store)?;
            fold_all(&shared, &mut store)?;
        }
        Ok(Self {
            shared,
            path,
            fsync,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the blocking pool with the store file's connection, once the
    /// compactions written so far are applied.
    async fn with_store<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = lock(&shared.store)?;
            apply_compactions(&shared, &mut store)?;
            work(&shared, &mut store)
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("store task failed: {error}")))?
    }

    /// Writes a batch of appends (and compactions, which only queue) on the calling
    /// task, when there is nothing to sync and the journal is free: one `write` to
    /// the page cache, a few microseconds, less than the two thread hand-offs the
    /// blocking pool costs (those were 10% of the CPU per delivery at 1,000
    /// keystrokes/s, and 9% in rooms of 4). None means "use the pool".
    fn write_inline(&self, batch: &[WriteOp]) -> Option<Result<(), StoreError>> {
        if self.fsync {
            return None;
        }
        let mut bytes = 0;
        for op in batch {
            match op {
                WriteOp::Append(update) => bytes += update.data.len(),
                WriteOp::Compact(_) => {}
                WriteOp::Delete(_) => return None,
            }
        }
        if bytes > INLINE_WRITE_BYTES {
            return None;
        }
        let written = {
            let mut journal = self.shared.journal.try_lock().ok()?;
            write_journal(&self.shared, &mut journal, batch)
        };
        let written = written.and_then(|()| self.shared.queue_compactions(batch));
        self.maintain_when_due();
        Some(written)
    }

    /// Starts folding the tail, or applying compactions, on a blocking thread if
    /// either is due and no thread is at it.
    fn maintain_when_due(&self) {
        let shared = &self.shared;
        if !shared.maintenance_due() {
            return;
        }
        if let Ok(retry_at) = shared.retry_at.lock() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                return;
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = shared.clone();
        runtime.spawn_blocking(move || maintain(&shared));
    }
}

impl Shared {
    /// Notes what the journal holds that is not being folded yet.
    fn count_tail(&self, journal: &Journal) {
        self.tail_rows.store(journal.len(), Ordering::Relaxed);
        self.tail_bytes.store(journal.bytes(), Ordering::Relaxed);
    }

    fn fold_due(&self) -> bool {
        self.tail_rows.load(Ordering::Relaxed) >= FOLD_ROWS
            || self.tail_bytes.load(Ordering::Relaxed) >= FOLD_BYTES
    }

    fn maintenance_due(&self) -> bool {
        self.fold_due() || self.pending.lock().is_ok_and(|pending| !pending.is_empty())
    }

    /// Queues the batch's compactions, except those of rooms it deletes.
    fn queue_compactions(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        let deleted = |room_id: &str| {
            batch
                .iter()
                .any(|op| matches!(op, WriteOp::Delete(deletion) if deletion.room_id == room_id))
        };
        let compactions = batch.iter().filter_map(|op| match op {
            WriteOp::Compact(snapshot) if !deleted(&snapshot.room_id) => Some(snapshot.clone()),
            _ => None,
        });
        lock(&self.pending)?.extend(compactions);
        Ok(())
    }
}

/// The background work: applies queued compactions and folds the tail while
/// either is due. After a failure it leaves the rest to a later write.
fn maintain(shared: &Shared) {
    loop {
        let done = lock(&shared.store).and_then(|mut store| {
            apply_compactions(shared, &mut store)?;
            if shared.fold_due() {
                fold(shared, &mut store)?;
            }
            Ok(())
        });
        shared.maintaining.store(false, Ordering::Release);
        if let Err(error) = done {
            tracing::warn!(%error, "cannot fold the journal or compact rooms yet; retrying");
            if let Ok(mut retry_at) = shared.retry_at.lock() {
                *retry_at = Some(Instant::now() + RETRY_AFTER);
            }
            return;
        }
        if !shared.maintenance_due() || shared.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    mutex
        .lock()
        .map_err(|_| StoreError::Unavailable("database lock poisoned".into()))
}

/// Writes a batch's appends, and its rooms' deletions, to the journal in one write.
/// Compactions are not the journal's.
fn write_journal(
    shared: &Shared,
    journal: &mut Journal,
    batch: &[WriteOp],
) -> Result<(), StoreError> {
    let records: Vec<Record<'_>> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append(update) => Some(Record::Append(Cow::Borrowed(update))),
            WriteOp::Delete(deletion) => Some(Record::Delete {
                room_id: Cow::Borrowed(&deletion.room_id),
            }),
            WriteOp::Compact(_) => None,
        })
        .collect();
    let written = journal.write(&records);
    shared.count_tail(journal);
    written
}

/// Writes a batch that deletes rooms. The store file drops the rooms' rows and
/// marks them deleted in one commit; then the journal records the deletions (with
/// the batch's appends), which drops the rooms' rows there; then the marks go. A
/// crash in between leaves marks that `finish_deletions` completes at the next
/// open, so a deleted room never comes back from the journal.
fn write_deleting(shared: &Shared, batch: &[WriteOp]) -> Result<(), StoreError> {
    let mut store = lock(&shared.store)?;
    apply_compactions(shared, &mut store)?;
    let deleted: Vec<&str> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Delete(deletion) => Some(deletion.room_id.as_str()),
            _ => None,
        })
        .collect();
    // Synced whatever the durability, as the journal's record of it is: a power
    // loss must not bring back rows the journal no longer holds a deletion for.
    synced(&mut store, shared.fsync, |store| {
        let txn = store.transaction().map_err(unavailable)?;
        for room_id in &deleted {
            txn.execute(
                "INSERT OR IGNORE INTO deleted_rooms (room_id) VALUES (?1)",
                params![room_id],
            )
            .map_err(unavailable)?;
            delete_room_rows(&txn, room_id)?;
        }
        txn.commit().map_err(unavailable)
    })?;
    write_journal(shared, &mut *lock(&shared.journal)?, batch)?;
    clear_deletion_marks(&store, &deleted)?;
    shared.queue_compactions(batch)
}

/// Takes the marks of deletions the journal has recorded, and only those: another
/// room's deletion may still be under way.
fn clear_deletion_marks(store: &Connection, rooms: &[impl AsRef<str>]) -> Result<(), StoreError> {
    let mut clear = store
        .prepare_cached("DELETE FROM deleted_rooms WHERE room_id = ?1")
        .map_err(unavailable)?;
    for room_id in rooms {
        clear
            .execute(params![room_id.as_ref()])
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Removes everything the store file holds of a room.
fn delete_room_rows(store: &Connection, room_id: &str) -> Result<(), StoreError> {
    for table in ["update_log", "snapshots", "room_documents"] {
        store
            .execute(
                &format!("DELETE FROM {table} WHERE room_id = ?1"),
                params![room_id],
            )
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Finishes the deletions a crash cut short: the rooms' rows leave the store file
/// again (a fold may have written journal rows back meanwhile), and the journal
/// records the deletions, which drops the rooms' rows there.
fn finish_deletions(shared: &Shared, store: &Connection) -> Result<(), StoreError> {
    let rooms: Vec<String> = store
        .prepare("SELECT room_id FROM deleted_rooms")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(unavailable)?;
    if rooms.is_empty() {
        return Ok(());
    }
    for room_id in &rooms {
        delete_room_rows(store, room_id)?;
    }
    let deletions: Vec<Record<'_>> = rooms
        .iter()
        .map(|room_id| Record::Delete {
            room_id: Cow::Borrowed(room_id.as_str()),
        })
        .collect();
    lock(&shared.journal)?.write(&deletions)?;
    clear_deletion_marks(store, &rooms)
}

/// Applies the queued compactions to the store file, in one transaction. On
/// failure they stay queued, unless SQLite refuses them for good (a snapshot too
/// large): those are dropped, as the log still holds everything they cover.
fn apply_compactions(shared: &Shared, store: &mut Connection) -> Result<(), StoreError> {
    let snapshots = std::mem::take(&mut *lock(&shared.pending)?);
    if snapshots.is_empty() {
        return Ok(());
    }
    let applied = store.transaction().and_then(|txn| {
        for snapshot in &snapshots {
            compact(&txn, snapshot)?;
        }
        txn.commit()
    });
    match applied.map_err(unavailable) {
        Ok(()) => {
            let data = snapshots.iter().map(|snapshot| snapshot.data.len()).sum();
            shared.checkpointer.committed(data);
            Ok(())
        }
        Err(error) if error.is_permanent() => {
            tracing::error!(%error, rooms = snapshots.len(), "compactions refused; the rooms' logs are kept whole");
            Ok(())
        }
        Err(error) => {
            let mut pending = lock(&shared.pending)?;
            let newer = std::mem::replace(&mut *pending, snapshots);
            pending.extend(newer);
            Err(error)
        }
    }
}

/// Replaces the room's snapshot and drops (or, with history, thins out) the log
/// rows it covers.
fn compact(txn: &rusqlite::Transaction<'_>, snapshot: &Snapshot) -> rusqlite::Result<()> {
    // An older compaction than the stored one (a cluster node behind another)
    // changes nothing: the rows the newer one dropped are gone.
    let stored: Option<(i64, Option<i64>)> = txn
        .query_row(
            "SELECT through_seq, history_floor FROM snapshots WHERE room_id = ?1",
            params![snapshot.room_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if stored.is_some_and(|(stored, _)| stored > snapshot.through_seq as i64) {
        return Ok(());
    }
    let floor = match snapshot.keep_history_since_ms {
        None => {
            txn.execute(
                "DELETE FROM update_log WHERE room_id = ?1 AND seq <= ?2",
                params![snapshot.room_id, snapshot.through_seq as i64],
            )?;
            None
        }
        Some(since) => {
            // A snapshot written without history is not in the log: the versions
            // after it need it as their base once this one replaces it, and nothing
            // before it was kept.
            let mut lowest = 0;
            if let Some((stored, None)) = stored {
                if stored < snapshot.through_seq as i64 {
                    let kept = txn.execute(
                        "INSERT OR IGNORE INTO update_log (room_id, seq, data, at, author, snapshot)
                         SELECT room_id, through_seq, data, ?2, NULL, 1 FROM snapshots
                         WHERE room_id = ?1",
                        params![snapshot.room_id, stored_at_ms(txn, &snapshot.room_id)?],
                    )?;
                    // Already a row of the log (a restored dump brings its kept
                    // snapshots and the history around them): nothing below it is
                    // known to be missing.
                    if kept == 1 {
                        lowest = stored;
                    }
                }
            }
            Some(keep_in_history(txn, snapshot, since, lowest)?)
        }
    };
    txn.execute(
        "INSERT OR REPLACE INTO snapshots
                (room_id, through_seq, data, updated_at, history_floor)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            snapshot.room_id,
            snapshot.through_seq as i64,
            snapshot.data.as_ref(),
            iso_of_ms(snapshot.at_ms),
            floor
        ],
    )?;
    Ok(())
}

/// Moves the rows up to id `through` of `source`, a journal table of an earlier
/// release, into `update_log`, sorted so each room's log pages are written once,
/// skipping rows a snapshot already covers (unless the history keeps them). A row
/// written twice (a retried batch, or a fold cut short by a crash) replaces itself.
fn fold_sql(source: &str) -> String {
    format!(
        "INSERT OR REPLACE INTO update_log (room_id, seq, data, at, author)
            SELECT tail.room_id, tail.seq, tail.data, tail.at, tail.author
            FROM {source} AS tail
            LEFT JOIN snapshots ON snapshots.room_id = tail.room_id
            WHERE tail.id <= ?1 AND (snapshots.through_seq IS NULL
                OR tail.seq > snapshots.through_seq OR tail.seq >= snapshots.history_floor)
            ORDER BY tail.room_id, tail.seq, tail.id"
    )
}

/// Folds the journal's rows into the store file's log in one commit, sorted so
/// each room's log pages are written once, skipping rows a snapshot already covers
/// (unless the history keeps them); then the journal drops their file. The
/// journal takes appends into a new file meanwhile (`Journal::rows_to_fold`). Until
/// the journal drops them, the rows are in both, which `load_durable` reads as
/// one, and a fold after a crash writes them again: a row written twice replaces
/// itself. False when there was nothing to fold.
fn fold(shared: &Shared, store: &mut Connection) -> Result<bool, StoreError> {
    let rows = {
        let mut journal = lock(&shared.journal)?;
        let rows = journal.rows_to_fold();
        shared.count_tail(&journal);
        rows?
    };
    let Some(rows) = rows else {
        return Ok(false);
    };
    write_folded(store, &rows, shared.fsync)?;
    // A fold rewrites many rooms' log pages: checkpoint soon after it.
    shared.checkpointer.committed(CHECKPOINT_BYTES as usize);
    let mut journal = lock(&shared.journal)?;
    let folded = journal.folded();
    shared.count_tail(&journal);
    folded.map(|()| true)
}

/// `fold`'s commit to the store file, synced to disk whatever the durability: the
/// journal's file goes once it returns, and its rows may be older than what a
/// power loss is allowed to take. Rows of a room whose deletion is under way (it
/// failed before the journal recorded it) are not written back.
fn write_folded(
    store: &mut Connection,
    rows: &[LoggedUpdate],
    fsync: bool,
) -> Result<(), StoreError> {
    synced(store, fsync, |store| write_folded_rows(store, rows))
}

/// Runs `commit` with every commit synced to disk (`synchronous=FULL`), for work
/// after which a file that still held its rows is removed.
fn synced<T>(
    store: &mut Connection,
    fsync: bool,
    commit: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !fsync {
        store
            .execute_batch("PRAGMA synchronous=FULL")
            .map_err(unavailable)?;
    }
    let committed = commit(store);
    if !fsync {
        store
            .execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(unavailable)?;
    }
    committed
}

fn write_folded_rows(store: &mut Connection, rows: &[LoggedUpdate]) -> Result<(), StoreError> {
    let mut sorted: Vec<&LoggedUpdate> = rows.iter().collect();
    // Stable: a retried batch's later copy of a row still replaces the earlier.
    sorted.sort_by(|a, b| (a.room_id.as_str(), a.seq).cmp(&(b.room_id.as_str(), b.seq)));
    let txn = store.transaction().map_err(unavailable)?;
    {
        let mut covered = txn
            .prepare_cached("SELECT through_seq, history_floor FROM snapshots WHERE room_id = ?1")
            .map_err(unavailable)?;
        let mut deleted = txn
            .prepare_cached("SELECT COUNT(*) > 0 FROM deleted_rooms WHERE room_id = ?1")
            .map_err(unavailable)?;
        // A row written twice replaces itself, but never the history's snapshot
        // at its number: a compaction applied before the fold put it there, and it
        // stands for that update and everything before it.
        let mut insert = txn
            .prepare_cached(
                "INSERT INTO update_log (room_id, seq, data, at, author)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (room_id, seq) DO UPDATE
                 SET data = excluded.data, at = excluded.at, author = excluded.author
                 WHERE update_log.snapshot = 0",
            )
            .map_err(unavailable)?;
        // The room being written, and what the store file holds of it.
        let mut room: Option<(&str, Held)> = None;
        for row in sorted {
            let held = match room {
                Some((room_id, held)) if room_id == row.room_id => held,
                _ => {
                    let held = Held {
                        deleted: deleted
                            .query_row(params![row.room_id], |found| found.get(0))
                            .map_err(unavailable)?,
                        snapshot: covered
                            .query_row(params![row.room_id], |found| {
                                Ok((found.get(0)?, found.get(1)?))
                            })
                            .optional()
                            .map_err(unavailable)?,
                    };
                    room = Some((&row.room_id, held));
                    held
                }
            };
            let seq = row.seq as i64;
            if held.keeps(seq) {
                insert
                    .execute(params![
                        row.room_id,
                        seq,
                        row.data.as_ref(),
                        row.at_ms,
                        row.author
                    ])
                    .map_err(unavailable)?;
            }
        }
    }
    txn.commit().map_err(unavailable)
}

/// What the store file holds of a room, as it decides which journal rows a fold
/// writes.
#[derive(Clone, Copy)]
struct Held {
    /// Its deletion is under way (the journal has not recorded it yet).
    deleted: bool,
    /// Its snapshot's number and history floor.
    snapshot: Option<(i64, Option<i64>)>,
}

impl Held {
    /// A row the snapshot does not cover, or one the history keeps.
    fn keeps(&self, seq: i64) -> bool {
        !self.deleted
            && self.snapshot.is_none_or(|(through, floor)| {
                seq > through || floor.is_some_and(|floor| seq >= floor)
            })
    }
}

/// Folds until the journal is empty, as far as a few folds take it: at open and
/// close, when nothing appends.
fn fold_all(shared: &Shared, store: &mut Connection) -> Result<(), StoreError> {
    for _ in 0..3 {
        if !fold(shared, store)? {
            break;
        }
    }
    Ok(())
}

/// Folds the journal first when `room_id` has rows in it, so history reads need
/// only `update_log`. History is read rarely; a fold is bounded by `FOLD_ROWS`.
fn fold_room_tail(
    shared: &Shared,
    store: &mut Connection,
    room_id: &str,
) -> Result<(), StoreError> {
    // Twice at most: rows being folded after a failed fold, then the rest.
    for _ in 0..2 {
        if !lock(&shared.journal)?.holds(room_id) {
            break;
        }
        fold(shared, store)?;
    }
    Ok(())
}

/// A journal kept by an earlier release in a SQLite file of its own
/// (`coedit-journal.sqlite3`): its rows are folded into the store file, except
/// those of rooms whose deletion a crash cut short, and the file removed. The
/// commit is synced first: the rows may be ones that release had synced.
fn fold_sqlite_journal(
    store: &mut Connection,
    data_dir: &Path,
    fsync: bool,
) -> Result<(), StoreError> {
    let path = data_dir.join(SQLITE_JOURNAL_FILE);
    if !path.exists() {
        return Ok(());
    }
    let attach = path.to_str().ok_or_else(|| {
        StoreError::Unavailable(format!(
            "{} is not valid UTF-8; move the data directory to fold its journal",
            path.display()
        ))
    })?;
    store
        .execute("ATTACH DATABASE ?1 AS sqlite_journal", [attach])
        .map_err(unavailable)?;
    let folded = synced(store, fsync, |store| {
        fold_sqlite_journal_rows(store).map_err(unavailable)
    });
    let detached = store.execute("DETACH DATABASE sqlite_journal", []);
    folded?;
    detached.map_err(unavailable)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = data_dir.join(format!("{SQLITE_JOURNAL_FILE}{suffix}"));
        journal::remove_if_present(&file).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot remove {} once folded: {error}",
                file.display()
            ))
        })?;
    }
    journal::sync_dir(data_dir)?;
    tracing::info!(
        "the journal moved to {JOURNAL_FILE}; its earlier SQLite file was folded and removed"
    );
    Ok(())
}

/// `fold_sqlite_journal`'s commit, with the earlier journal attached.
fn fold_sqlite_journal_rows(store: &mut Connection) -> rusqlite::Result<()> {
    let txn = store.transaction()?;
    let exists: bool = txn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_journal.sqlite_master
             WHERE type = 'table' AND name = 'journal_tail'",
        [],
        |row| row.get(0),
    )?;
    if exists {
        txn.execute(
            "DELETE FROM sqlite_journal.journal_tail
                 WHERE room_id IN (SELECT room_id FROM main.deleted_rooms)",
            [],
        )?;
        txn.execute(&fold_sql("sqlite_journal.journal_tail"), [i64::MAX])?;
    }
    txn.commit()
}

/// A database from before the journal had a file of its own keeps its tail in
/// the store file: folded, and the table dropped.
fn fold_tail_of_one_file(store: &mut Connection) -> rusqlite::Result<()> {
    let txn = store.transaction()?;
    let exists: bool = txn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'journal_tail'",
        [],
        |row| row.get(0),
    )?;
    if exists {
        txn.execute(&fold_sql("main.journal_tail"), [i64::MAX])?;
        txn.execute_batch("DROP TABLE main.journal_tail")?;
    }
    txn.commit()
}

/// A failed SQLite call: refused for good when the data itself is the problem (too
/// big for SQLite, or breaking a constraint), otherwise worth retrying (disk full,
/// I/O error, locked by another process).
fn unavailable(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::TooBig | ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch) => {
            StoreError::Rejected(error.to_string())
        }
        _ => StoreError::Unavailable(error.to_string()),
    }
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn iso_of_ms(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn ms_of_iso(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso).map_or(0, |at| at.timestamp_millis())
}

/// The snapshots a room's history keeps, found through their own index.
const KEPT_SNAPSHOTS: &str = "SELECT seq, at FROM update_log WHERE room_id = ?1 AND snapshot = 1";

/// When the room's stored snapshot was written, in milliseconds.
fn stored_at_ms(txn: &rusqlite::Transaction<'_>, room_id: &str) -> rusqlite::Result<i64> {
    let updated_at: String = txn.query_row(
        "SELECT updated_at FROM snapshots WHERE room_id = ?1",
        params![room_id],
        |row| row.get(0),
    )?;
    Ok(ms_of_iso(&updated_at))
}

/// Keeps `snapshot` in the room's history and drops what has left the retention
/// period or lies below `lowest`; returns the history's floor (the oldest sequence
/// number it keeps).
fn keep_in_history(
    txn: &rusqlite::Transaction<'_>,
    snapshot: &super::Snapshot,
    since: i64,
    lowest: i64,
) -> rusqlite::Result<i64> {
    txn.execute(
        "INSERT OR REPLACE INTO update_log (room_id, seq, data, at, author, snapshot)
         VALUES (?1, ?2, ?3, ?4, NULL, 1)",
        params![
            snapshot.room_id,
            snapshot.through_seq as i64,
            snapshot.data.as_ref(),
            snapshot.at_ms
        ],
    )?;
    let mut kept: Vec<HistoryEntry> = Vec::new();
    {
        let mut statement = txn.prepare_cached(KEPT_SNAPSHOTS)?;
        let rows = statement.query_map(params![snapshot.room_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (seq, at_ms) = row?;
            kept.push(HistoryEntry {
                seq: seq as u64,
                at_ms,
                size: 0,
                author: None,
                snapshot: true,
            });
        }
    }
    let floor = history_floor(&kept, since)
        .map_or(0, |floor| floor as i64)
        .max(lowest);
    txn.execute(
        "DELETE FROM update_log WHERE room_id = ?1 AND seq < ?2",
        params![snapshot.room_id, floor],
    )?;
    Ok(floor)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        if let Some(written) = self.write_inline(batch) {
            return written;
        }
        let shared = self.shared.clone();
        let written = if batch.iter().all(|op| matches!(op, WriteOp::Compact(_))) {
            shared.queue_compactions(batch)
        } else {
            let batch = batch.to_vec();
            tokio::task::spawn_blocking(move || {
                if batch.iter().any(|op| matches!(op, WriteOp::Delete(_))) {
                    return write_deleting(&shared, &batch);
                }
                write_journal(&shared, &mut *lock(&shared.journal)?, &batch)?;
                shared.queue_compactions(&batch)
            })
            .await
            .map_err(|error| StoreError::Unavailable(format!("store task failed: {error}")))
            .and_then(|written| written)
        };
        // Also after a failure: a journal too full to take appends is freed by
        // the fold this starts, and its retries may never be written inline.
        self.maintain_when_due();
        written
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        let room_id = room_id.to_owned();
        self.with_store(move |shared, store| {
            let txn = store.transaction().map_err(unavailable)?;
            let snapshot: Option<(i64, Vec<u8>)> = txn
                .query_row(
                    "SELECT through_seq, data FROM snapshots WHERE room_id = ?1",
                    params![room_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let snapshot_seq = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
            // By sequence; a journal row replaces a log row, and a later journal row
            // an earlier one, as folding would (a retried batch writes its rows twice).
            let mut log = BTreeMap::new();
            let mut read = |sql: &str| -> rusqlite::Result<()> {
                let mut statement = txn.prepare_cached(sql)?;
                let rows = statement.query_map(params![room_id, snapshot_seq], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })?;
                for row in rows {
                    let (seq, data) = row?;
                    log.insert(seq, data);
                }
                Ok(())
            };
            read(
                "SELECT seq, data FROM update_log WHERE room_id = ?1 AND seq > ?2 AND snapshot = 0",
            )
            .map_err(unavailable)?;
            for row in lock(&shared.journal)?.rows() {
                if row.room_id == room_id && row.seq as i64 > snapshot_seq {
                    log.insert(row.seq as i64, row.data.to_vec());
                }
            }
            if snapshot.is_none() && log.is_empty() {
                return Ok(None);
            }
            let last_seq = log
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(snapshot_seq);
            Ok(Some(DurableState {
                snapshot: snapshot.map(|(_, data)| Bytes::from(data)),
                updates: log.into_values().map(Bytes::from).collect(),
                last_seq: last_seq as u64,
            }))
        })
        .await
    }

    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        let room_id = room_id.to_owned();
        let data = faster_hex::hex_string(state);
        self.with_store(move |_, connection| {
            connection
                .execute(
                    "INSERT OR REPLACE INTO room_documents (room_id, data, updated_at, size)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![room_id, data, now_iso(), data.len() as i64],
                )
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        let room_id = room_id.to_owned();
        let data: Option<String> = self
            .with_store(move |_, connection| {
                connection
                    .query_row(
                        "SELECT data FROM room_documents WHERE room_id = ?1",
                        params![room_id],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(unavailable)
            })
            .await?;
        data.map(|hex_data| {
            hex::decode(hex_data)
                .map(Bytes::from)
                .map_err(|error| StoreError::Corrupt(format!("checkpoint is not hex: {error}")))
        })
        .transpose()
    }

    async fn history(&self, room_id: &str) -> Result<History, StoreError> {
        let room_id = room_id.to_owned();
        self.with_store(move |shared, connection| {
            fold_room_tail(shared, connection, &room_id)?;
            let mut entries: BTreeMap<u64, HistoryEntry> = BTreeMap::new();
            let mut statement = connection
                .prepare_cached(
                    "SELECT seq, at, length(data), author, snapshot FROM update_log
                     WHERE room_id = ?1 ORDER BY seq",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![room_id], |row| {
                    Ok(HistoryEntry {
                        seq: row.get::<_, i64>(0)? as u64,
                        at_ms: row.get(1)?,
                        size: row.get::<_, i64>(2)? as u64,
                        author: row.get(3)?,
                        snapshot: row.get::<_, i64>(4)? != 0,
                    })
                })
                .map_err(unavailable)?;
            for row in rows {
                let entry = row.map_err(unavailable)?;
                entries.insert(entry.seq, entry);
            }
            let current: Option<(i64, String, i64)> = connection
                .query_row(
                    "SELECT through_seq, updated_at, length(data) FROM snapshots WHERE room_id = ?1",
                    params![room_id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            if let Some((seq, updated_at, size)) = current {
                entries.entry(seq as u64).or_insert(HistoryEntry {
                    seq: seq as u64,
                    at_ms: ms_of_iso(&updated_at),
                    size: size as u64,
                    author: None,
                    snapshot: true,
                });
            }
            Ok(History {
                entries: entries.into_values().collect(),
            })
        })
        .await
    }

    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<VersionData>, StoreError> {
        let room_id = room_id.to_owned();
        self.with_store(move |shared, connection| {
            fold_room_tail(shared, connection, &room_id)?;
            let seq = seq as i64;
            let kept: Option<(i64, Vec<u8>)> = connection
                .query_row(
                    "SELECT seq, data FROM update_log WHERE room_id = ?1 AND snapshot = 1
                     AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
                    params![room_id, seq],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let current: Option<(i64, Vec<u8>)> = connection
                .query_row(
                    "SELECT through_seq, data FROM snapshots WHERE room_id = ?1 AND through_seq <= ?2",
                    params![room_id, seq],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let base = match (kept, current) {
                (Some(kept), Some(current)) => Some(if current.0 > kept.0 { current } else { kept }),
                (kept, current) => kept.or(current),
            };
            let first: Option<i64> = connection
                .query_row(
                    "SELECT MIN(seq) FROM update_log WHERE room_id = ?1",
                    params![room_id],
                    |row| row.get(0),
                )
                .map_err(unavailable)?;
            // Without a base, the log must start at the room's first update.
            if base.is_none() && first != Some(1) {
                return Ok(None);
            }
            let from = base.as_ref().map_or(0, |(at, _)| *at);
            let mut statement = connection
                .prepare_cached(
                    "SELECT data FROM update_log WHERE room_id = ?1 AND snapshot = 0
                     AND seq > ?2 AND seq <= ?3 ORDER BY seq",
                )
                .map_err(unavailable)?;
            let updates = statement
                .query_map(params![room_id, from, seq], |row| {
                    row.get::<_, Vec<u8>>(0).map(Bytes::from)
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Ok(Some(VersionData {
                base: base.map(|(_, data)| Bytes::from(data)),
                updates,
            }))
        })
        .await
    }

    async fn list_rooms(&self) -> Result<Vec<String>, StoreError> {
        self.with_store(|shared, connection| {
            let mut statement = connection
                .prepare(
                    "SELECT room_id FROM update_log UNION SELECT room_id FROM snapshots
                     UNION SELECT room_id FROM room_documents",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            let mut rooms = rows
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(unavailable)?;
            rooms.extend(lock(&shared.journal)?.rows().map(|row| row.room_id.clone()));
            Ok(rooms.into_iter().collect())
        })
        .await
    }

    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        let room_id = room_id.to_owned();
        self.with_store(move |_, connection| {
            let checkpoint: Option<(String, String)> = connection
                .query_row(
                    "SELECT data, updated_at FROM room_documents WHERE room_id = ?1",
                    params![room_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let checkpoint = match checkpoint {
                Some((hex_data, updated_at)) => Some(StoredCheckpoint {
                    data: hex::decode(hex_data.trim())
                        .map(Bytes::from)
                        .map_err(|error| {
                            StoreError::Corrupt(format!(
                                "checkpoint of room {room_id} is not hex: {error}"
                            ))
                        })?,
                    updated_at,
                }),
                None => None,
            };
            let snapshot = connection
                .query_row(
                    "SELECT through_seq, updated_at, data FROM snapshots WHERE room_id = ?1",
                    params![room_id],
                    |row| {
                        Ok(StoredSnapshot {
                            through_seq: row.get::<_, i64>(0)? as u64,
                            at_ms: ms_of_iso(&row.get::<_, String>(1)?),
                            data: Bytes::from(row.get::<_, Vec<u8>>(2)?),
                        })
                    },
                )
                .optional()
                .map_err(unavailable)?;
            Ok(RoomParts {
                checkpoint,
                snapshot,
            })
        })
        .await
    }

    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let room_id = room_id.to_owned();
        self.with_store(move |shared, connection| {
            fold_room_tail(shared, connection, &room_id)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT seq, at, author, snapshot, data FROM update_log
                     WHERE room_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map(
                    params![
                        room_id,
                        after_seq as i64,
                        limit.min(i64::MAX as usize) as i64
                    ],
                    |row| {
                        Ok(StoredEntry {
                            seq: row.get::<_, i64>(0)? as u64,
                            at_ms: row.get(1)?,
                            author: row.get(2)?,
                            snapshot: row.get::<_, i64>(3)? != 0,
                            data: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                        })
                    },
                )
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError> {
        let room_id = room_id.to_owned();
        let parts = parts.clone();
        self.with_store(move |_, connection| {
            let txn = connection.transaction().map_err(unavailable)?;
            if let Some(checkpoint) = &parts.checkpoint {
                let data = faster_hex::hex_string(&checkpoint.data);
                txn.execute(
                    "INSERT OR REPLACE INTO room_documents (room_id, data, updated_at, size)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![room_id, data, checkpoint.updated_at, data.len() as i64],
                )
                .map_err(unavailable)?;
            }
            if let Some(snapshot) = &parts.snapshot {
                // No history floor: it only steers folding rows the journal
                // appends in the same batch as a compaction, and the next
                // compaction sets it again.
                txn.execute(
                    "INSERT OR REPLACE INTO snapshots
                        (room_id, through_seq, data, updated_at, history_floor)
                     VALUES (?1, ?2, ?3, ?4, NULL)",
                    params![
                        room_id,
                        snapshot.through_seq as i64,
                        snapshot.data.as_ref(),
                        iso_of_ms(snapshot.at_ms)
                    ],
                )
                .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn write_entries(
        &self,
        room_id: &str,
        entries: &[StoredEntry],
    ) -> Result<(), StoreError> {
        let room_id = room_id.to_owned();
        let entries = entries.to_vec();
        self.with_store(move |_, connection| {
            let txn = connection.transaction().map_err(unavailable)?;
            {
                let mut insert = txn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO update_log (room_id, seq, data, at, author, snapshot)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(unavailable)?;
                for entry in &entries {
                    insert
                        .execute(params![
                            room_id,
                            entry.seq as i64,
                            entry.data.as_ref(),
                            entry.at_ms,
                            entry.author,
                            i64::from(entry.snapshot)
                        ])
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_store(|_, connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.with_store(|shared, store| {
            fold_all(shared, store)?;
            store
                .execute_batch("PRAGMA main.wal_checkpoint(TRUNCATE);")
                .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::LoggedUpdate;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("coedit-sqlite-{}", uuid::Uuid::new_v4()))
    }

    fn append(room_id: &str, seq: u64) -> WriteOp {
        WriteOp::Append(LoggedUpdate {
            room_id: room_id.into(),
            seq,
            data: Bytes::from(format!("{room_id}:{seq}")),
            at_ms: 0,
            author: None,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_too_full_for_appends_is_folded_once_the_store_file_is_back() {
        for fsync in [true, false] {
            let dir = temp_dir();
            let store = SqliteStore::open_with(&dir, fsync).unwrap();
            lock(&store.shared.journal)
                .unwrap()
                .limit_unfolded(FOLD_BYTES + 1);
            let read_only = |on: bool| {
                lock(&store.shared.store)
                    .unwrap()
                    .execute_batch(&format!("PRAGMA query_only={}", u8::from(on)))
                    .unwrap();
            };
            // The store file refuses the folds, and the journal fills past its limit.
            read_only(true);
            let large = |room_id: &str, seq: u64, bytes: usize| {
                WriteOp::Append(LoggedUpdate {
                    room_id: room_id.into(),
                    seq,
                    data: Bytes::from(vec![7; bytes]),
                    at_ms: 0,
                    author: None,
                })
            };
            let filling: Vec<WriteOp> = (1..=3)
                .map(|seq| large("big", seq, FOLD_BYTES / 2))
                .collect();
            store.write(&filling).await.unwrap();
            let refused = store.write(&[append("r", 1)]).await.unwrap_err();
            assert!(
                refused.to_string().contains("has not taken yet"),
                "{refused}"
            );
            read_only(false);
            // The server retries its batch; a large one is never written inline, so
            // the refusals themselves must start the fold that frees the journal.
            let retried = [large("r", 1, INLINE_WRITE_BYTES + 1)];
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Err(error) = store.write(&retried).await {
                assert!(
                    Instant::now() < deadline,
                    "fsync {fsync}: still refused: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let big = store.load_durable("big").await.unwrap().unwrap();
            assert_eq!(big.updates.len(), 3, "fsync {fsync}");
            store.close().await.unwrap();
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    fn compaction(room_id: &str, through_seq: u64, data: &'static [u8]) -> WriteOp {
        WriteOp::Compact(Snapshot {
            room_id: room_id.into(),
            through_seq,
            data: Bytes::from_static(data),
            at_ms: 0,
            keep_history_since_ms: None,
            deletions: None,
        })
    }

    fn updates(room_id: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Bytes> {
        seqs.map(|seq| Bytes::from(format!("{room_id}:{seq}")))
            .collect()
    }

    /// Rows in `table` of the store file, or (`journal_tail`) in the journal's
    /// files, deletions applied.
    fn count(dir: &Path, table: &str) -> i64 {
        if table == "journal_tail" {
            return read_journal(dir).unwrap().len() as i64;
        }
        Connection::open(dir.join(DATABASE_FILE))
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    /// Holds `mutex` on another thread until the returned sender is used or dropped.
    fn hold<T: Send + 'static>(
        shared: &Arc<Shared>,
        mutex: fn(&Shared) -> &Mutex<T>,
    ) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
        let (taken, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = std::thread::spawn({
            let shared = shared.clone();
            move || {
                let _held = mutex(&shared).lock().unwrap();
                taken.0.send(()).unwrap();
                release.1.recv().ok();
            }
        });
        taken.1.recv().unwrap();
        (holder, release.0)
    }

    #[tokio::test]
    async fn appends_to_a_free_journal_are_written_inline() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        assert!(matches!(
            store.write_inline(&[append("r", 1)]),
            Some(Ok(()))
        ));
        assert_eq!(count(&dir, "journal_tail"), 1, "written when it returned");
        let busy: Vec<WriteOp> = (0..100)
            .map(|index| append(&format!("room-{index}"), 1))
            .collect();
        assert!(matches!(store.write_inline(&busy), Some(Ok(()))), "many");
        assert_eq!(count(&dir, "journal_tail"), 101);
        // A compaction only queues.
        let compact = compaction("r", 1, b"r:1");
        assert!(matches!(
            store.write_inline(&[append("r", 2), compact]),
            Some(Ok(()))
        ));
        let r = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(r.snapshot.as_deref(), Some(&b"r:1"[..]));
        assert_eq!(r.updates, updates("r", 2..=2));

        let large = |seq| {
            WriteOp::Append(LoggedUpdate {
                room_id: "r".into(),
                seq,
                data: Bytes::from(vec![0; INLINE_WRITE_BYTES / 2 + 1]),
                at_ms: 0,
                author: None,
            })
        };
        assert!(
            store.write_inline(&[large(3), large(4)]).is_none(),
            "too large together"
        );
        let deletion = WriteOp::Delete(super::super::RoomDeletion {
            room_id: "room-1".into(),
            seq: 2,
        });
        assert!(store.write_inline(&[deletion]).is_none(), "a deletion");

        // The journal busy (a fold turning it over): the write waits for it on
        // the blocking pool instead of blocking the caller's thread.
        let (holder, release) = hold(&store.shared, |shared| &shared.journal);
        assert!(store.write_inline(&[append("r", 3)]).is_none(), "busy");
        let write = tokio::spawn({
            let store = store.clone();
            async move { store.write(&[append("r", 3)]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!write.is_finished());
        release.send(()).unwrap();
        holder.join().unwrap();
        write.await.unwrap().unwrap();
        assert_eq!(count(&dir, "journal_tail"), 103);
        drop(store);

        let synced = SqliteStore::open_with(&dir, true).unwrap();
        assert!(synced.write_inline(&[append("r", 4)]).is_none(), "syncs");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn the_journal_commits_while_the_store_file_is_busy() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        store.write(&[append("r", 1)]).await.unwrap();
        // A fold or a compaction holding the store file's connection.
        let (holder, release) = hold(&store.shared, |shared| &shared.store);
        let journal_writes = async {
            store.write(&[append("r", 2)]).await.unwrap();
            store
                .write(&[append("r", 3), append("q", 1)])
                .await
                .unwrap();
            store
                .write(&[append("r", 4), compaction("r", 3, b"r:1..3")])
                .await
                .unwrap();
        };
        tokio::time::timeout(Duration::from_secs(5), journal_writes)
            .await
            .expect("journal writes waited for the store file");
        assert_eq!(count(&dir, "journal_tail"), 5);
        // Reads wait for it, and see the compaction once it is free.
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.load_durable("r").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!read.is_finished());
        release.send(()).unwrap();
        holder.join().unwrap();
        let r = read.await.unwrap().unwrap().unwrap();
        assert_eq!(r.snapshot.as_deref(), Some(&b"r:1..3"[..]));
        assert_eq!(r.updates, updates("r", 4..=4));
        assert_eq!(r.last_seq, 4);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_once_enough_was_written_not_on_every_tick() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let db = dir.join(DATABASE_FILE);
        let size = |path: &Path| std::fs::metadata(path).unwrap().len();
        // A few small commits stay in the WAL past several looks.
        let db_before = size(&db);
        for seq in 1..=20 {
            store
                .write(&[append("a", seq), compaction("a", seq, b"a")])
                .await
                .unwrap();
            store.load_durable("a").await.unwrap();
        }
        tokio::time::sleep(CHECKPOINT_POLL * 3).await;
        assert_eq!(
            size(&db),
            db_before,
            "small commits were checkpointed at once"
        );
        // Megabytes are copied into the database file within a look or two, well
        // before the checkpoint every `CHECKPOINT_AT_LEAST_EVERY`.
        let big = Bytes::from(vec![7u8; 1024 * 1024]);
        for room in ["a", "b", "c", "d", "e"] {
            store
                .write(&[WriteOp::Compact(Snapshot {
                    room_id: room.into(),
                    through_seq: 100,
                    data: big.clone(),
                    at_ms: 0,
                    keep_history_since_ms: None,
                    deletions: None,
                })])
                .await
                .unwrap();
        }
        let deadline = Instant::now() + CHECKPOINT_AT_LEAST_EVERY / 2;
        while size(&db) < db_before + 4 * 1024 * 1024 {
            assert!(Instant::now() < deadline, "5 MiB not checkpointed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn the_journal_starts_a_new_file_at_every_fold() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let journal = dir.join(JOURNAL_FILE);
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        let rounds = 3 * FOLD_ROWS as u64 + 10;
        let mut largest = 0;
        for seq in 1..=rounds {
            store.write(&[append("a", seq)]).await.unwrap();
            largest = largest.max(size(&journal));
        }
        // Each record is under 64 bytes here: a file that never started over
        // would hold all of them.
        assert!(
            largest < 64 * (FOLD_ROWS as u64 + 1024),
            "the journal file reached {largest} bytes"
        );
        let r = store.load_durable("a").await.unwrap().unwrap();
        assert_eq!(r.updates, updates("a", 1..=rounds));
        store.close().await.unwrap();
        assert_eq!(size(&journal), 0, "closed with everything folded");
        assert!(!dir.join(FOLDING_FILE).exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn rooms_load_the_same_before_during_and_after_the_tail_is_folded() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let rooms = ["a", "b", "c"];
        let per_room = (2 * FOLD_ROWS / rooms.len() + 50) as u64;
        let mut folds = 0;
        let mut tail = 0;
        for seq in 1..=per_room {
            let mut batch: Vec<WriteOp> = rooms.iter().map(|room| append(room, seq)).collect();
            if seq == 100 {
                batch.push(compaction("b", 100, b"b:1..100"));
            }
            store.write(&batch).await.unwrap();
            let now = count(&dir, "journal_tail");
            let folded = now < tail;
            if folded {
                folds += 1;
            }
            tail = now;
            // Also right after a fold, when the next may be under way.
            if seq >= 100 && (seq % 500 == 0 || folded) {
                let a = store.load_durable("a").await.unwrap().unwrap();
                assert_eq!(a.updates, updates("a", 1..=seq), "room a at {seq}");
                assert_eq!(a.last_seq, seq);
                let b = store.load_durable("b").await.unwrap().unwrap();
                assert_eq!(b.snapshot.as_deref(), Some(&b"b:1..100"[..]));
                assert_eq!(b.updates, updates("b", 101..=seq), "room b at {seq}");
                assert_eq!(b.last_seq, seq);
            }
        }
        assert!(folds >= 1, "the tail was never folded without a read");
        assert!(
            tail < FOLD_ROWS as i64,
            "the tail outgrew FOLD_ROWS: {tail}"
        );
        store.close().await.unwrap();
        assert_eq!(count(&dir, "journal_tail"), 0);
        // Rows the snapshot covers are not carried into the log.
        assert_eq!(count(&dir, "update_log"), 3 * per_room as i64 - 100);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_synced_store_writes_folds_and_reopens_whole() {
        let dir = temp_dir();
        let store = SqliteStore::open_with(&dir, true).unwrap();
        for seq in 1..=(FOLD_ROWS as u64 + 20) {
            store.write(&[append("r", seq)]).await.unwrap();
        }
        store
            .write(&[WriteOp::Delete(super::super::RoomDeletion {
                room_id: "r".into(),
                seq: FOLD_ROWS as u64 + 21,
            })])
            .await
            .unwrap();
        store
            .write(&[append("r", 1), append("s", 1)])
            .await
            .unwrap();
        // No close(): the process died.
        drop(store);
        let reopened = SqliteStore::open_with(&dir, true).unwrap();
        let r = reopened.load_durable("r").await.unwrap().unwrap();
        assert_eq!(
            r.updates,
            updates("r", 1..=1),
            "only what followed the deletion"
        );
        assert_eq!(reopened.list_rooms().await.unwrap(), ["r", "s"]);
        reopened.close().await.unwrap();
        assert_eq!(count(&dir, "journal_tail"), 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_tail_left_by_a_crash_is_folded_on_open() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let batch: Vec<WriteOp> = (1..=20).map(|seq| append("r", seq)).collect();
        store.write(&batch).await.unwrap();
        // Written twice, as a retry after a lost answer would.
        store.write(&batch[10..]).await.unwrap();
        assert_eq!(count(&dir, "journal_tail"), 30);
        // No close(): the process died.
        drop(store);

        let reopened = SqliteStore::open(&dir).unwrap();
        assert_eq!(count(&dir, "journal_tail"), 0);
        assert_eq!(count(&dir, "update_log"), 20);
        let loaded = reopened.load_durable("r").await.unwrap().unwrap();
        assert_eq!(loaded.updates, updates("r", 1..=20));
        assert_eq!(loaded.last_seq, 20);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_fold_cut_short_by_a_crash_is_folded_again_once() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let batch: Vec<WriteOp> = (1..=20).map(|seq| append("r", seq)).collect();
        store.write(&batch).await.unwrap();
        // The store file's commit happened; the journal did not drop its file.
        {
            let mut connection = lock(&store.shared.store).unwrap();
            let rows = lock(&store.shared.journal).unwrap().rows_to_fold().unwrap();
            write_folded(&mut connection, &rows.unwrap(), false).unwrap();
        }
        assert!(dir.join(FOLDING_FILE).exists());
        drop(store);
        assert_eq!(count(&dir, "journal_tail"), 20);
        assert_eq!(count(&dir, "update_log"), 20);

        let reopened = SqliteStore::open(&dir).unwrap();
        assert_eq!(count(&dir, "journal_tail"), 0);
        assert_eq!(count(&dir, "update_log"), 20);
        let loaded = reopened.load_durable("r").await.unwrap().unwrap();
        assert_eq!(loaded.updates, updates("r", 1..=20));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_deletion_cut_short_by_a_crash_is_finished_on_open() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let batch: Vec<WriteOp> = (1..=5)
            .flat_map(|seq| [append("gone", seq), append("kept", seq)])
            .collect();
        store.write(&batch).await.unwrap();
        // The store file's commit of the deletion happened; the journal's record
        // of it did not, and a fold ran before the crash: it writes nothing of
        // the room back.
        {
            let mut connection = lock(&store.shared.store).unwrap();
            connection
                .execute_batch("INSERT INTO deleted_rooms (room_id) VALUES ('gone')")
                .unwrap();
            assert!(fold(&store.shared, &mut connection).unwrap());
            let left: i64 = connection
                .query_row(
                    "SELECT COUNT(*) FROM update_log WHERE room_id = 'gone'",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(left, 0);
        }
        drop(store);

        let reopened = SqliteStore::open(&dir).unwrap();
        assert_eq!(reopened.load_durable("gone").await.unwrap(), None);
        let kept = reopened.load_durable("kept").await.unwrap().unwrap();
        assert_eq!(kept.updates, updates("kept", 1..=5));
        assert_eq!(count(&dir, "deleted_rooms"), 0);
        assert_eq!(reopened.list_rooms().await.unwrap(), ["kept"]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_deleted_room_is_gone_from_both_files_and_its_compaction_is_not_applied() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        store
            .write(&[append("gone", 1), append("kept", 1)])
            .await
            .unwrap();
        store.close().await.unwrap();
        store
            .write(&[append("gone", 2), append("kept", 2)])
            .await
            .unwrap();
        // A compaction queued before the deletion, and one in its batch.
        store
            .write(&[compaction("gone", 1, b"gone:1")])
            .await
            .unwrap();
        store
            .write(&[
                compaction("gone", 2, b"gone:1..2"),
                WriteOp::Delete(super::super::RoomDeletion {
                    room_id: "gone".into(),
                    seq: 3,
                }),
                append("kept", 3),
            ])
            .await
            .unwrap();
        assert_eq!(store.load_durable("gone").await.unwrap(), None);
        assert_eq!(store.list_rooms().await.unwrap(), ["kept"]);
        assert_eq!(
            store.load_durable("kept").await.unwrap().unwrap().updates,
            updates("kept", 1..=3)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_database_with_its_tail_in_the_store_file_is_folded_on_open() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        // The layout before the journal had a file of its own, without the
        // columns added since.
        {
            let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
            connection
                .execute_batch(
                    "PRAGMA journal_mode=WAL;
                     CREATE TABLE journal_tail (id INTEGER PRIMARY KEY, room_id TEXT NOT NULL,
                         seq INTEGER NOT NULL, data BLOB NOT NULL);
                     CREATE TABLE update_log (room_id TEXT NOT NULL, seq INTEGER NOT NULL,
                         data BLOB NOT NULL, PRIMARY KEY (room_id, seq)) WITHOUT ROWID;
                     CREATE TABLE snapshots (room_id TEXT PRIMARY KEY, through_seq INTEGER NOT NULL,
                         data BLOB NOT NULL, updated_at TEXT NOT NULL);
                     INSERT INTO update_log VALUES ('r', 1, CAST('r:1' AS BLOB)), ('r', 2, CAST('r:2' AS BLOB));
                     INSERT INTO journal_tail (room_id, seq, data) VALUES
                         ('r', 3, CAST('r:3' AS BLOB)), ('s', 1, CAST('s:1' AS BLOB));",
                )
                .unwrap();
        }
        let store = SqliteStore::open(&dir).unwrap();
        let r = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(r.updates, updates("r", 1..=3));
        let s = store.load_durable("s").await.unwrap().unwrap();
        assert_eq!(s.updates, updates("s", 1..=1));
        let declared = |table: &str| -> Option<String> {
            Connection::open(dir.join(DATABASE_FILE))
                .unwrap()
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [table],
                    |row| row.get(0),
                )
                .optional()
                .unwrap()
        };
        assert_eq!(declared("journal_tail"), None, "the old tail table is gone");
        let layout = declared("update_log").unwrap();
        assert!(!layout.contains("WITHOUT ROWID"), "{layout}");
        // The rebuilt log keeps one row per sequence number: a row written again
        // (a retried batch) replaces itself.
        drop(store);
        let store = SqliteStore::open(&dir).unwrap();
        store
            .write(&[append("r", 3), append("r", 4)])
            .await
            .unwrap();
        store.close().await.unwrap();
        let r = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(r.updates, updates("r", 1..=4));
        assert_eq!(count(&dir, "update_log"), 5, "r 1-4 and s 1");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_deletion_takes_only_its_own_rooms_mark() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        // Another room's deletion under way (its journal write failed, to be retried).
        lock(&store.shared.store)
            .unwrap()
            .execute_batch("INSERT INTO deleted_rooms (room_id) VALUES ('pending')")
            .unwrap();
        store.write(&[append("gone", 1)]).await.unwrap();
        store.delete_room("gone").await.unwrap();
        let marks: Vec<String> = lock(&store.shared.store)
            .unwrap()
            .prepare("SELECT room_id FROM deleted_rooms")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(marks, ["pending"]);
        store.close().await.unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_journal_kept_in_a_sqlite_file_is_folded_on_open_and_removed() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        // The store file and journal file an earlier release left after a crash,
        // with a deletion cut short.
        drop(SqliteStore::open(&dir).unwrap());
        Connection::open(dir.join(DATABASE_FILE))
            .unwrap()
            .execute_batch("INSERT INTO deleted_rooms (room_id) VALUES ('gone')")
            .unwrap();
        {
            let connection = Connection::open(dir.join(SQLITE_JOURNAL_FILE)).unwrap();
            connection
                .execute_batch(
                    "PRAGMA journal_mode=WAL;
                     CREATE TABLE journal_tail (id INTEGER PRIMARY KEY, room_id TEXT NOT NULL,
                         seq INTEGER NOT NULL, data BLOB NOT NULL,
                         at INTEGER NOT NULL DEFAULT 0, author TEXT);
                     INSERT INTO journal_tail (room_id, seq, data, at, author) VALUES
                         ('r', 1, CAST('r:1' AS BLOB), 5, 'alice'),
                         ('gone', 1, CAST('gone:1' AS BLOB), 5, NULL),
                         ('r', 2, CAST('r:2' AS BLOB), 6, 'bob');",
                )
                .unwrap();
            // Its rows in its WAL, as a crash leaves them.
            std::mem::forget(connection);
        }
        let store = SqliteStore::open(&dir).unwrap();
        let r = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(r.updates, updates("r", 1..=2));
        assert_eq!(store.load_durable("gone").await.unwrap(), None);
        let history = store.history("r").await.unwrap();
        let authors: Vec<_> = history
            .entries
            .iter()
            .map(|entry| entry.author.clone())
            .collect();
        assert_eq!(authors, [Some("alice".into()), Some("bob".into())]);
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("{SQLITE_JOURNAL_FILE}{suffix}"));
            assert!(!file.exists(), "{} is left", file.display());
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn reading_a_rooms_log_or_its_kept_snapshots_goes_through_an_index() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let connection = store.shared.store.lock().unwrap();
        let plan = |sql: &str| -> String {
            connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(["r"], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("; ")
        };
        // Not a walk through the room's whole history at every compaction.
        assert!(
            plan(KEPT_SNAPSHOTS).contains("INDEX update_log_snapshots"),
            "{}",
            plan(KEPT_SNAPSHOTS)
        );
        let log = "SELECT seq, data FROM update_log WHERE room_id = ?1 ORDER BY seq";
        assert!(
            plan(log).contains("INDEX update_log_by_room"),
            "{}",
            plan(log)
        );
        drop(connection);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn close_folds_the_tail() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        store
            .write(&[append("r", 1), append("r", 2)])
            .await
            .unwrap();
        store.close().await.unwrap();
        assert_eq!(count(&dir, "journal_tail"), 0);
        assert_eq!(count(&dir, "update_log"), 2);
        std::fs::remove_dir_all(&dir).ok();
    }
}
