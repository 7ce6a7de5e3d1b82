//! The embedded store: one SQLite database file under the data directory, so
//! `coedit serve` needs nothing else installed.
//!
//! rusqlite is synchronous, so calls run on tokio's blocking pool. The one
//! exception is the journal's common case, a small append commit while the
//! connection is free, which the journal's task writes itself (`write_inline`):
//! that is tens of microseconds, about what the two thread hand-offs cost. The
//! connection sits behind a `std::sync::Mutex`: SQLite serialises writers anyway,
//! and the lock is never held across an await (the journal only `try_lock`s it).
//!
//! The journal's appends go to `journal_tail` in arrival order and are folded into
//! the per-room `update_log` in bulk. Inserting each update straight into
//! `update_log` (keyed by room) dirtied one B-tree page per room per commit; with
//! hundreds of busy rooms that was most of a commit's WAL traffic and checkpoint
//! work, and about a fifth of the server's CPU.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    history_floor, DurableState, History, HistoryEntry, RoomParts, Store, StoreError,
    StoredCheckpoint, StoredEntry, StoredSnapshot, VersionData, WriteOp,
};

/// File name of the database inside `--data-dir`.
pub const DATABASE_FILE: &str = "coedit.sqlite3";

const SCHEMA: &str = "
    -- Accepted updates land here first, in arrival order: appending by rowid dirties
    -- only the table's last pages, however many rooms a commit touches.
    CREATE TABLE IF NOT EXISTS journal_tail (
        id INTEGER PRIMARY KEY,
        room_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        at INTEGER NOT NULL DEFAULT 0,
        author TEXT
    );
    -- ...and are folded in here, by room, every FOLD_ROWS updates. With history
    -- kept, compactions' snapshots are kept here too (snapshot = 1), as bases.
    CREATE TABLE IF NOT EXISTS update_log (
        room_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        at INTEGER NOT NULL DEFAULT 0,
        author TEXT,
        snapshot INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, seq)
    ) WITHOUT ROWID;
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

/// Adds the columns an older database lacks.
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let exists: bool = connection.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |row| row.get(0),
        )?;
        if !exists {
            connection.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    Ok(())
}

/// Updates kept in `journal_tail` before they are folded into `update_log`: enough
/// that a fold writes each busy room's log page once for many updates, few enough
/// that a room loaded meanwhile reads the tail quickly.
const FOLD_ROWS: usize = 8192;
/// Largest append written on the journal's own thread (`write_inline`).
const INLINE_WRITE_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Mutex<Inner>>,
    path: PathBuf,
    checkpointer: Arc<Checkpointer>,
    /// Every commit syncs to disk (`synchronous=FULL`).
    fsync: bool,
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

/// Checkpoints the WAL on a thread and connection of its own. SQLite's automatic
/// checkpoint runs inside whichever commit crosses its threshold and syncs the
/// database file there; with write-ahead relay every room waits for that commit,
/// so one slow disk sync became a stall of every room's relay. A passive
/// checkpoint beside the writer never blocks it.
///
/// It checkpoints once enough was written, not on a clock: a checkpoint syncs
/// the WAL and the database file, and the first commit after it syncs the WAL's
/// new header, so checkpointing twice a second cost a lightly used server four
/// disk syncs a second (~0.15 ms of CPU per keystroke of the original page in a
/// large document at 8 keystrokes a second, BENCHMARKS.md).
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Estimated WAL bytes committed since the last checkpoint.
    written: Arc<AtomicU64>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(unavailable)?;
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (stopped, pending) = (stop.clone(), written.clone());
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
                    if let Err(error) =
                        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(%error, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start checkpointer: {error}"))
            })?;
        Ok(Self { stop, written })
    }

    /// Counts a committed transaction of `data` bytes towards the next checkpoint.
    fn committed(&self, data: usize) {
        self.written
            .fetch_add(COMMIT_WAL_BYTES + data as u64, Ordering::Relaxed);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Inner {
    connection: Connection,
    /// Rooms that may have rows in `journal_tail` (a superset after a failed write),
    /// so loading any other room skips reading the tail.
    tail_rooms: HashSet<String>,
    tail_rows: usize,
}

impl Inner {
    /// After a committed fold: nothing is in the tail any more.
    fn tail_folded(&mut self) {
        self.tail_rooms.clear();
        self.tail_rows = 0;
    }
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
        let mut connection = Connection::open(&path).map_err(unavailable)?;
        // WAL with synchronous=NORMAL: a commit is durable against a process crash
        // (kill -9) as soon as it returns (it is in the OS); only a power loss can
        // drop the last few. FULL syncs the WAL to disk on every commit.
        // Checkpoints are the `Checkpointer`'s, never a commit's.
        let synchronous = if fsync { "FULL" } else { "NORMAL" };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=5000;
                 PRAGMA wal_autocheckpoint=0;"
            ))
            .map_err(unavailable)?;
        connection.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate(&connection).map_err(unavailable)?;
        // A tail left by a crash is folded now; the tail starts empty.
        fold_tail_now(&mut connection).map_err(unavailable)?;
        let checkpointer = Checkpointer::start(&path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                connection,
                tail_rooms: HashSet::new(),
                tail_rows: 0,
            })),
            path,
            checkpointer: Arc::new(checkpointer),
            fsync,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_inner<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .lock()
                .map_err(|_| StoreError::Unavailable("database lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("store task failed: {error}")))?
    }

    /// Writes a quiet server's journal batch on the calling thread: one small
    /// append, nothing to sync or fold, and the connection free. Such a commit is
    /// a write to the WAL in the page cache, tens of microseconds, and the two
    /// thread hand-offs it saves cost about as much (10% of the CPU per delivery
    /// at 1,000 keystrokes/s). A busy server's batches still go to the blocking
    /// pool, where the commit runs beside both workers instead of stalling one
    /// (inline, rooms of 20 at their ceiling had a worse p99). None means "use
    /// the pool".
    fn write_inline(&self, batch: &[WriteOp]) -> Option<Result<(), StoreError>> {
        let [WriteOp::Append(update)] = batch else {
            return None;
        };
        if self.fsync || update.data.len() > INLINE_WRITE_BYTES {
            return None;
        }
        let mut inner = self.inner.try_lock().ok()?;
        if inner.tail_rows + batch.len() >= FOLD_ROWS {
            return None;
        }
        Some(write_batch(&mut inner, batch, &self.checkpointer))
    }

    async fn with_connection<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_inner(|inner| work(&mut inner.connection)).await
    }
}

/// Writes one batch of the journal in one transaction.
fn write_batch(
    inner: &mut Inner,
    batch: &[WriteOp],
    checkpointer: &Checkpointer,
) -> Result<(), StoreError> {
    let mut appended = 0;
    for op in batch {
        if let WriteOp::Append(update) = op {
            appended += 1;
            // Before the write: if it fails half-way the set is a superset.
            if !inner.tail_rooms.contains(&update.room_id) {
                inner.tail_rooms.insert(update.room_id.clone());
            }
        }
    }
    inner.tail_rows += appended;
    let fold = inner.tail_rows >= FOLD_ROWS;
    let txn = inner.connection.transaction().map_err(unavailable)?;
    for op in batch {
        match op {
            WriteOp::Append(update) => {
                // Cached: at thousands of keystrokes a second, parsing the
                // statement again for every update was 3% of the server's CPU.
                txn.prepare_cached(
                    "INSERT INTO journal_tail (room_id, seq, data, at, author)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        update.room_id,
                        update.seq as i64,
                        update.data.as_ref(),
                        update.at_ms,
                        update.author
                    ])
                })
                .map_err(unavailable)?;
            }
            WriteOp::Compact(snapshot) => {
                let floor = match snapshot.keep_history_since_ms {
                    None => {
                        txn.execute(
                            "DELETE FROM update_log WHERE room_id = ?1 AND seq <= ?2",
                            params![snapshot.room_id, snapshot.through_seq as i64],
                        )
                        .map_err(unavailable)?;
                        None
                    }
                    Some(since) => {
                        Some(keep_in_history(&txn, snapshot, since).map_err(unavailable)?)
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
                )
                .map_err(unavailable)?;
            }
            WriteOp::Delete(deletion) => {
                // The tail too: a fold after this must not bring rows back.
                for table in ["journal_tail", "update_log", "snapshots", "room_documents"] {
                    txn.execute(
                        &format!("DELETE FROM {table} WHERE room_id = ?1"),
                        params![deletion.room_id],
                    )
                    .map_err(unavailable)?;
                }
            }
        }
    }
    if fold {
        fold_tail(&txn).map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)?;
    let data: usize = batch
        .iter()
        .map(|op| match op {
            WriteOp::Append(update) => update.data.len(),
            WriteOp::Compact(snapshot) => snapshot.data.len(),
            WriteOp::Delete(_) => 0,
        })
        .sum();
    // A fold rewrites many rooms' log pages: checkpoint soon after it.
    let folded = if fold { CHECKPOINT_BYTES as usize } else { 0 };
    checkpointer.committed(data + folded);
    if fold {
        inner.tail_folded();
    }
    Ok(())
}

/// Folds the tail first when `room_id` may have rows in it, so history reads need
/// only `update_log`. History is read rarely; a fold is bounded by `FOLD_ROWS`.
fn fold_room_tail(inner: &mut Inner, room_id: &str) -> Result<(), StoreError> {
    if inner.tail_rooms.contains(room_id) {
        fold_tail_now(&mut inner.connection).map_err(unavailable)?;
        inner.tail_folded();
    }
    Ok(())
}

/// `fold_tail` in a transaction of its own.
fn fold_tail_now(connection: &mut Connection) -> rusqlite::Result<()> {
    let txn = connection.transaction()?;
    fold_tail(&txn)?;
    txn.commit()
}

/// Moves every tail row into `update_log`, sorted so each room's log pages are
/// written once, skipping rows a snapshot already covers (unless the history keeps
/// them).
fn fold_tail(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(
        "INSERT OR REPLACE INTO update_log (room_id, seq, data, at, author)
            SELECT tail.room_id, tail.seq, tail.data, tail.at, tail.author
            FROM journal_tail AS tail
            LEFT JOIN snapshots ON snapshots.room_id = tail.room_id
            WHERE snapshots.through_seq IS NULL OR tail.seq > snapshots.through_seq
                OR tail.seq >= snapshots.history_floor
            ORDER BY tail.room_id, tail.seq, tail.id;
         DELETE FROM journal_tail;",
    )
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

/// Keeps `snapshot` in the room's history and drops what has left the retention
/// period; returns the history's floor (the oldest sequence number it keeps).
fn keep_in_history(
    txn: &rusqlite::Transaction<'_>,
    snapshot: &super::Snapshot,
    since: i64,
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
        let mut statement = txn
            .prepare_cached("SELECT seq, at FROM update_log WHERE room_id = ?1 AND snapshot = 1")?;
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
    let floor = history_floor(&kept, since).map_or(0, |floor| floor as i64);
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
        if let Some(result) = self.write_inline(batch) {
            return result;
        }
        let batch = batch.to_vec();
        let checkpointer = self.checkpointer.clone();
        self.with_inner(move |inner| write_batch(inner, &batch, &checkpointer))
            .await
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        let room_id = room_id.to_owned();
        self.with_inner(move |inner| {
            let read_tail = inner.tail_rooms.contains(&room_id);
            let txn = inner.connection.transaction().map_err(unavailable)?;
            let snapshot: Option<(i64, Vec<u8>)> = txn
                .query_row(
                    "SELECT through_seq, data FROM snapshots WHERE room_id = ?1",
                    params![room_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let snapshot_seq = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
            // By sequence; a tail row replaces a log row, and a later tail row an
            // earlier one, as folding would (a retried batch writes its rows twice).
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
            read("SELECT seq, data FROM update_log WHERE room_id = ?1 AND seq > ?2 AND snapshot = 0")
                .map_err(unavailable)?;
            if read_tail {
                read("SELECT seq, data FROM journal_tail WHERE room_id = ?1 AND seq > ?2 ORDER BY id")
                    .map_err(unavailable)?;
            }
            if snapshot.is_none() && log.is_empty() {
                return Ok(None);
            }
            let last_seq = log.keys().next_back().copied().unwrap_or(0).max(snapshot_seq);
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
        self.with_connection(move |connection| {
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
            .with_connection(move |connection| {
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
        self.with_inner(move |inner| {
            fold_room_tail(inner, &room_id)?;
            let connection = &inner.connection;
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
        self.with_inner(move |inner| {
            fold_room_tail(inner, &room_id)?;
            let connection = &inner.connection;
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
        self.with_connection(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT room_id FROM journal_tail UNION SELECT room_id FROM update_log
                     UNION SELECT room_id FROM snapshots UNION SELECT room_id FROM room_documents
                     ORDER BY 1",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        let room_id = room_id.to_owned();
        self.with_connection(move |connection| {
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
        self.with_inner(move |inner| {
            fold_room_tail(inner, &room_id)?;
            let mut statement = inner
                .connection
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
        self.with_connection(move |connection| {
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
        self.with_connection(move |connection| {
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
        self.with_connection(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.with_inner(|inner| {
            fold_tail_now(&mut inner.connection).map_err(unavailable)?;
            inner.tail_folded();
            inner
                .connection
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::{LoggedUpdate, Snapshot};

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

    fn updates(room_id: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Bytes> {
        seqs.map(|seq| Bytes::from(format!("{room_id}:{seq}")))
            .collect()
    }

    fn count(dir: &Path, table: &str) -> i64 {
        Connection::open(dir.join(DATABASE_FILE))
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn only_small_appends_to_a_free_connection_are_written_inline() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        assert!(matches!(
            store.write_inline(&[append("r", 1)]),
            Some(Ok(()))
        ));
        assert!(matches!(
            store.write_inline(&[append("r", 2)]),
            Some(Ok(()))
        ));
        assert_eq!(count(&dir, "journal_tail"), 2, "written when it returned");
        let busy = [append("r", 3), append("r", 4)];
        assert!(store.write_inline(&busy).is_none(), "a batch of several");

        let large = WriteOp::Append(LoggedUpdate {
            room_id: "r".into(),
            seq: 3,
            data: Bytes::from(vec![0; INLINE_WRITE_BYTES + 1]),
            at_ms: 0,
            author: None,
        });
        assert!(store.write_inline(&[large]).is_none(), "too large");
        let compact = WriteOp::Compact(Snapshot {
            room_id: "r".into(),
            through_seq: 2,
            data: Bytes::from_static(b"r:1..2"),
            at_ms: 0,
            keep_history_since_ms: None,
        });
        assert!(store.write_inline(&[compact]).is_none(), "not an append");
        store.inner.lock().unwrap().tail_rows = FOLD_ROWS - 1;
        assert!(
            store.write_inline(&[append("r", 3)]).is_none(),
            "would fold"
        );
        store.inner.lock().unwrap().tail_rows = 2;

        // The connection busy (a read on the blocking pool): the write waits for
        // it there instead of blocking the caller's thread.
        let (taken, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = std::thread::spawn({
            let inner = store.inner.clone();
            move || {
                let _held = inner.lock().unwrap();
                taken.0.send(()).unwrap();
                release.1.recv().ok();
            }
        });
        taken.1.recv().unwrap();
        assert!(store.write_inline(&[append("r", 3)]).is_none(), "busy");
        let write = tokio::spawn({
            let store = store.clone();
            async move { store.write(&[append("r", 3)]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!write.is_finished());
        release.0.send(()).unwrap();
        holder.join().unwrap();
        write.await.unwrap().unwrap();
        assert_eq!(count(&dir, "journal_tail"), 3);
        drop(store);

        let synced = SqliteStore::open_with(&dir, true).unwrap();
        assert!(synced.write_inline(&[append("r", 4)]).is_none(), "syncs");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_once_enough_was_written_not_on_every_tick() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let db = dir.join(DATABASE_FILE);
        let size = || std::fs::metadata(&db).unwrap().len();
        // A few small commits stay in the WAL past several looks.
        let before = size();
        for seq in 1..=20 {
            store.write(&[append("a", seq)]).await.unwrap();
        }
        tokio::time::sleep(CHECKPOINT_POLL * 3).await;
        assert_eq!(size(), before, "small commits were checkpointed at once");
        // Megabytes are copied into the database file within a look or two, well
        // before the checkpoint every `CHECKPOINT_AT_LEAST_EVERY`.
        let big = Bytes::from(vec![7u8; 1024 * 1024]);
        for room in ["a", "b", "c", "d", "e"] {
            store
                .write(&[WriteOp::Compact(Snapshot {
                    room_id: room.into(),
                    through_seq: 1,
                    data: big.clone(),
                    at_ms: 0,
                    keep_history_since_ms: None,
                })])
                .await
                .unwrap();
        }
        let deadline = Instant::now() + CHECKPOINT_AT_LEAST_EVERY / 2;
        while size() < before + 4 * 1024 * 1024 {
            assert!(Instant::now() < deadline, "5 MiB not checkpointed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn rooms_load_the_same_before_and_after_the_tail_is_folded() {
        let dir = temp_dir();
        let store = SqliteStore::open(&dir).unwrap();
        let rooms = ["a", "b", "c"];
        let per_room = (FOLD_ROWS / rooms.len() + 50) as u64;
        let mut folded_at = None;
        for seq in 1..=per_room {
            let mut batch: Vec<WriteOp> = rooms.iter().map(|room| append(room, seq)).collect();
            if seq == 100 {
                batch.push(WriteOp::Compact(Snapshot {
                    room_id: "b".into(),
                    through_seq: 100,
                    data: Bytes::from_static(b"b:1..100"),
                    at_ms: 0,
                    keep_history_since_ms: None,
                }));
            }
            store.write(&batch).await.unwrap();
            if folded_at.is_none() && count(&dir, "journal_tail") == 0 {
                folded_at = Some(seq);
            }
            if seq % 1000 == 0 || Some(seq) == folded_at {
                let a = store.load_durable("a").await.unwrap().unwrap();
                assert_eq!(a.updates, updates("a", 1..=seq), "room a at {seq}");
                assert_eq!(a.last_seq, seq);
                let b = store.load_durable("b").await.unwrap().unwrap();
                assert_eq!(b.snapshot.as_deref(), Some(&b"b:1..100"[..]));
                assert_eq!(b.updates, updates("b", 101..=seq), "room b at {seq}");
                assert_eq!(b.last_seq, seq);
            }
        }
        let folded_at = folded_at.expect("the tail was never folded");
        assert_eq!(folded_at, (FOLD_ROWS / rooms.len() + 1) as u64);
        // Rows the snapshot covers are not carried into the log.
        assert_eq!(
            count(&dir, "update_log"),
            3 * folded_at as i64 - 100,
            "log rows after the fold"
        );
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
