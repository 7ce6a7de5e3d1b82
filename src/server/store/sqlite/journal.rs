//! The embedded store's journal: a file every accepted update is appended to, in
//! arrival order, before any client is shown it.
//!
//! A group commit is one `write` of its records (and, for `--durability fsync`, one
//! `fdatasync`), whatever rooms it touches. The rows also stay in memory until the
//! store folds them into the rooms' log in `coedit.sqlite3`, so a room loaded
//! meanwhile reads them from here, and the file is only ever read after a crash.
//!
//! It replaced a SQLite file that took each group commit as a transaction. That
//! wrote whole pages (4 KiB and the frame headers, several calls a commit) to a
//! WAL that had to be checkpointed and then read back by the fold: at rooms of 4,
//! ~14 MB a second to disk for ~1 MB of updates (BENCHMARKS.md).
//!
//! Files, in the data directory:
//! - `coedit-journal.log` takes appends;
//! - `coedit-journal.folding.log` is the previous file while its rows are folded;
//!   it is removed once the store file has committed them.
//!
//! A fold turns the file over (`turn_over`): its rows move to `folding`, the file is
//! renamed and a new one started, so appends never wait for the store file. At
//! open both are replayed, the folding file first.
//!
//! Each record is `length (u32 LE) | CRC-32 of the body (u32 LE) | body`. A power
//! loss can cut the last record of the file being appended to short: replay stops
//! at the first record that is incomplete or fails its checksum. At the end of
//! that file, that is a record whose write never returned, so no client was shown
//! it. A file that stops early is also copied aside (`….damaged`) before it is
//! replaced, so damage anywhere else can still be looked into. When the folding
//! file stops early, the later file is set aside unread as well: a power loss can
//! keep later writes and lose earlier ones, and a log with a hole in it would hold
//! updates whose predecessors are gone. Deletions are synced at every durability.
//!
//! The rows wait in memory while the store file cannot take them; past
//! `MAX_UNFOLDED_BYTES` the journal refuses appends (the rooms hold their
//! messages, as when any store is unavailable) rather than grow without end; the
//! store starts a fold at every refused write, and deletions still get through.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::server::store::{LoggedUpdate, StoreError};

/// The file appends go to, inside `--data-dir`.
pub const JOURNAL_FILE: &str = "coedit-journal.log";
/// The previous file while the store folds its rows.
pub const FOLDING_FILE: &str = "coedit-journal.folding.log";

const APPEND: u8 = 1;
const DELETE: u8 = 2;
/// No author: a length no author can have (authors are bounded far below it).
const NO_AUTHOR: u32 = u32::MAX;
/// Longest record body the journal writes and replay accepts: past the store's
/// own limits, so a length read from a damaged header never makes replay allocate
/// gigabytes. Lower in tests, which write one past it.
const MAX_RECORD: u32 = if cfg!(test) { 32 << 20 } else { 1 << 30 };
/// Bytes the journal holds in memory and the store file does not (being folded or
/// not) before it refuses appends, counted with `ROW_OVERHEAD` per row.
const MAX_UNFOLDED_BYTES: usize = 256 << 20;
/// What a row held in memory costs besides its update, room id and author: the
/// row itself and its update's allocation. Keystrokes are smaller than this.
const ROW_OVERHEAD: usize = 128;

/// What `row` is counted as in memory.
fn row_bytes(row: &LoggedUpdate) -> usize {
    ROW_OVERHEAD + row.data.len() + row.room_id.len() + row.author.as_ref().map_or(0, String::len)
}

fn rows_bytes(rows: &[LoggedUpdate]) -> usize {
    rows.iter().map(row_bytes).sum()
}

/// What the journal holds that the store file may not: a room's appends, or its
/// deletion (which drops the room's earlier appends on replay). Borrowed when
/// written, so a batch's updates are copied once, into the rows kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Append(Cow<'a, LoggedUpdate>),
    Delete { room_id: Cow<'a, str> },
}

/// The journal file being appended to, and the rows not yet folded.
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes of whole records in `file`: the next write goes there, so a write that
    /// failed half-way is overwritten by the next one.
    len: u64,
    fsync: bool,
    /// Appends since the file was last turned over, in order.
    rows: Vec<LoggedUpdate>,
    rows_bytes: usize,
    /// The rows of the file being folded, until the store file has them.
    folding: Option<Arc<Vec<LoggedUpdate>>>,
    folding_bytes: usize,
    /// Why appends are refused: a failure left the files in a state this process
    /// cannot vouch for. Opening the store again replays them.
    broken: Option<String>,
    /// `MAX_UNFOLDED_BYTES`, lower in tests.
    max_unfolded: usize,
}

impl Journal {
    /// Opens the journal in `dir` and replays what a previous run left: the rows of
    /// both files, in order, deletions applied, as rows to fold (`rows_to_fold`).
    pub fn open(dir: &Path, fsync: bool) -> Result<Self, StoreError> {
        let mut rows = Vec::new();
        let mut stopped = false;
        for name in [FOLDING_FILE, JOURNAL_FILE] {
            let path = dir.join(name);
            // The current file's records came after the folding file's: past damage
            // in the folding file they would leave a hole in their rooms' logs (a
            // power loss can keep later writes and lose earlier ones), so the log
            // stops where the damage is.
            if stopped {
                if path.exists() {
                    let aside = set_aside(dir, name)?;
                    // Emptied for good before the folding file is rewritten below:
                    // once that one is whole again, nothing would stop these rows
                    // from being replayed after it at the next open, with the hole.
                    let later = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_error)?;
                    later
                        .set_len(0)
                        .and_then(|()| later.sync_all())
                        .map_err(io_error)?;
                    tracing::warn!(
                        path = %path.display(),
                        copy = %aside.display(),
                        "the journal's earlier file is damaged; this later one is not replayed"
                    );
                }
                continue;
            }
            if !replay(&path, &mut rows)? {
                stopped = true;
                let aside = set_aside(dir, name)?;
                tracing::warn!(
                    path = %path.display(),
                    copy = %aside.display(),
                    "the journal stops at a damaged record; what follows it is not replayed (a power loss cuts only the last record short)"
                );
            }
        }
        let (current, folding) = (dir.join(JOURNAL_FILE), dir.join(FOLDING_FILE));
        let file = open_append(&current)?;
        let left = file.metadata().map_err(io_error)?.len() > 0 || folding.exists();
        if left {
            // What was left becomes one folding file holding exactly the rows
            // replayed, and appends start on an empty file. Until the rename, the
            // files are as they were; after it, replaying the old file again on top
            // adds the same rows in the same order. Synced whatever the durability:
            // the old files' rows may be older than any power loss would take.
            let mut records = Vec::new();
            for row in &rows {
                encode(&Record::Append(Cow::Borrowed(row)), &mut records);
            }
            let replacing = dir.join(format!("{FOLDING_FILE}.new"));
            let mut new = File::create(&replacing).map_err(io_error)?;
            new.write_all(&records)
                .and_then(|()| new.sync_data())
                .map_err(io_error)?;
            std::fs::rename(&replacing, &folding).map_err(io_error)?;
            sync_dir(dir)?;
            file.set_len(0).map_err(io_error)?;
        } else if fsync {
            // The file may be new: its name must survive what its appends do.
            sync_dir(dir)?;
        }
        let len = 0;
        let folding_bytes = rows_bytes(&rows);
        let folding = left.then(|| Arc::new(rows));
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            len,
            fsync,
            rows: Vec::new(),
            rows_bytes: 0,
            folding,
            folding_bytes,
            broken: None,
            max_unfolded: MAX_UNFOLDED_BYTES,
        })
    }

    #[cfg(test)]
    pub fn limit_unfolded(&mut self, bytes: usize) {
        self.max_unfolded = bytes;
    }

    /// Appends a group commit's records in one write; durable against a crash of
    /// the process when it returns (and against a power loss with `fsync`). Appends
    /// are refused while more than `MAX_UNFOLDED_BYTES` wait to be folded.
    pub fn write(&mut self, records: &[Record<'_>]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(reason) = &self.broken {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        // Deletions only free memory, and a deletion left to finish at open must
        // get through even when the journal is full.
        let appends = records
            .iter()
            .any(|record| matches!(record, Record::Append(_)));
        let appends_only = records
            .iter()
            .all(|record| matches!(record, Record::Append(_)));
        if appends && self.bytes() > self.max_unfolded {
            return Err(StoreError::Unavailable(format!(
                "the journal holds {} MiB the store file has not taken yet",
                self.bytes() >> 20
            )));
        }
        let mut buffer = Vec::new();
        for record in records {
            let start = buffer.len();
            encode(record, &mut buffer);
            if buffer.len() - start - 8 > MAX_RECORD as usize {
                // Replay would take it for damage and stop there.
                return Err(StoreError::Rejected(format!(
                    "an update of {} MiB is more than the journal takes ({} MiB)",
                    (buffer.len() - start) >> 20,
                    MAX_RECORD >> 20
                )));
            }
        }
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&buffer))
            .and_then(|()| {
                // A deletion is synced at every durability: the store file forgets
                // the room's deletion mark once it returns, and a fold's synced
                // commit could otherwise outlive it and bring the room back.
                if self.fsync || !appends_only {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(error) = written {
            // The next write goes to `len`; what this one left past it must go, or
            // a replay could read whole records of it that were never acknowledged.
            if let Err(truncating) = self.file.set_len(self.len) {
                self.broken = Some(format!(
                    "journal file: a write failed ({error}) and what it left cannot be removed ({truncating}); restart the server"
                ));
            }
            return Err(io_error(error));
        }
        self.len += buffer.len() as u64;
        for record in records {
            match record {
                Record::Append(update) => {
                    self.rows_bytes += row_bytes(update);
                    self.rows.push(update.as_ref().clone());
                }
                Record::Delete { room_id } => self.forget(room_id),
            }
        }
        Ok(())
    }

    /// Drops a deleted room's rows from memory; the file's rows are dropped on
    /// replay by the deletion's record.
    fn forget(&mut self, room_id: &str) {
        self.rows.retain(|row| row.room_id != room_id);
        self.rows_bytes = rows_bytes(&self.rows);
        if let Some(folding) = &mut self.folding {
            if folding.iter().any(|row| row.room_id == room_id) {
                let kept: Vec<LoggedUpdate> = folding
                    .iter()
                    .filter(|row| row.room_id != room_id)
                    .cloned()
                    .collect();
                self.folding_bytes = rows_bytes(&kept);
                *folding = Arc::new(kept);
            }
        }
    }

    /// Rows not folded yet, including those being folded.
    pub fn len(&self) -> usize {
        self.rows.len() + self.folding.as_ref().map_or(0, |rows| rows.len())
    }

    /// Their update bytes.
    pub fn bytes(&self) -> usize {
        self.rows_bytes + self.folding_bytes
    }

    /// The rows to fold: those of the file being folded, after turning the file
    /// over if none is. None when there is nothing to fold.
    pub fn rows_to_fold(&mut self) -> Result<Option<Arc<Vec<LoggedUpdate>>>, StoreError> {
        if self.folding.is_none() && !self.rows.is_empty() {
            self.turn_over()?;
        }
        Ok(self.folding.clone())
    }

    /// Starts a new file; the current one, and its rows, become the folding ones.
    fn turn_over(&mut self) -> Result<(), StoreError> {
        // A failed turn-over that could not be undone may have left the folding
        // file holding rows: renaming over it again would lose them.
        if let Some(reason) = &self.broken {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        let (current, folding) = (self.dir.join(JOURNAL_FILE), self.dir.join(FOLDING_FILE));
        std::fs::rename(&current, &folding).map_err(io_error)?;
        let file = open_append(&current).and_then(|file| {
            if self.fsync {
                sync_dir(&self.dir)?;
            }
            Ok(file)
        });
        let file = match file {
            Ok(file) => file,
            Err(error) => {
                // Appends go on into the file they were going to.
                if let Err(renaming) = std::fs::rename(&folding, &current) {
                    self.broken = Some(format!(
                        "journal file: turning it over failed ({error}) and so did undoing it ({renaming}); restart the server"
                    ));
                }
                return Err(error);
            }
        };
        self.file = file;
        self.len = 0;
        self.folding_bytes = std::mem::take(&mut self.rows_bytes);
        self.folding = Some(Arc::new(std::mem::take(&mut self.rows)));
        Ok(())
    }

    /// The store file has committed the folding rows: their file goes.
    pub fn folded(&mut self) -> Result<(), StoreError> {
        self.folding = None;
        self.folding_bytes = 0;
        remove_if_present(&self.dir.join(FOLDING_FILE)).map_err(io_error)
    }

    /// Every row not yet folded, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = &LoggedUpdate> {
        self.folding
            .iter()
            .flat_map(|rows| rows.iter())
            .chain(&self.rows)
    }

    /// Whether `room_id` has rows here (so its history must be folded first).
    pub fn holds(&self, room_id: &str) -> bool {
        self.rows().any(|row| row.room_id == room_id)
    }
}

/// Reads the journal files left in `dir` without opening a store: the rows a
/// store opened there would fold, deletions applied. For tools and tests.
pub fn read_dir(dir: &Path) -> Result<Vec<LoggedUpdate>, StoreError> {
    let mut rows = Vec::new();
    for name in [FOLDING_FILE, JOURNAL_FILE] {
        // As `open`: past damage nothing later is replayed.
        if !replay(&dir.join(name), &mut rows)? {
            break;
        }
    }
    Ok(rows)
}

/// Copies a journal file to `….damaged` beside it (`….damaged.1`, … when an
/// earlier copy is there: each is kept); returns the copy's path.
fn set_aside(dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let mut aside = dir.join(format!("{name}.damaged"));
    let mut earlier = 0;
    while aside.exists() {
        earlier += 1;
        aside = dir.join(format!("{name}.damaged.{earlier}"));
    }
    std::fs::copy(dir.join(name), &aside).map_err(io_error)?;
    Ok(aside)
}

/// Adds the rows of the journal file at `path` (if any) to `rows`; false if it
/// stopped at a record cut short or damaged.
fn replay(path: &Path, rows: &mut Vec<LoggedUpdate>) -> Result<bool, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes).map_err(io_error)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(io_error(error)),
    };
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some((record, after)) = decode(rest) else {
            return Ok(false);
        };
        match record {
            Record::Append(update) => rows.push(update.into_owned()),
            Record::Delete { room_id } => rows.retain(|row| row.room_id != room_id),
        }
        rest = after;
    }
    Ok(true)
}

fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    match record {
        Record::Append(update) => {
            out.push(APPEND);
            put_str(out, &update.room_id);
            out.extend_from_slice(&update.seq.to_le_bytes());
            out.extend_from_slice(&update.at_ms.to_le_bytes());
            match &update.author {
                Some(author) => put_str(out, author),
                None => out.extend_from_slice(&NO_AUTHOR.to_le_bytes()),
            }
            out.extend_from_slice(&update.data);
        }
        Record::Delete { room_id } => {
            out.push(DELETE);
            put_str(out, room_id);
        }
    }
    let body = &out[start + 8..];
    let (len, crc) = (body.len() as u32, crc32fast::hash(body));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The record at the start of `bytes` and what follows it; None if it is cut short
/// or damaged.
fn decode(bytes: &[u8]) -> Option<(Record<'static>, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(8..8 + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let mut reader = Reader(body);
    let record = match reader.u8()? {
        APPEND => {
            let room_id = reader.string()?;
            let seq = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
            let at_ms = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
            let author = reader.optional_string()?;
            Record::Append(Cow::Owned(LoggedUpdate {
                room_id,
                seq,
                data: Bytes::copy_from_slice(reader.0),
                at_ms,
                author,
            }))
        }
        DELETE => Record::Delete {
            room_id: Cow::Owned(reader.string()?),
        },
        _ => return None,
    };
    Some((record, &bytes[8 + len as usize..]))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|byte| byte[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn optional_string(&mut self) -> Option<Option<String>> {
        match self.u32()? {
            NO_AUTHOR => Some(None),
            len => String::from_utf8(self.take(len as usize)?.to_vec())
                .ok()
                .map(Some),
        }
    }
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(io_error)
}

/// Removes the file at `path`, if there is one.
pub(super) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    }
}

/// Makes a rename, creation or removal in `dir` survive a power loss.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal file: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coedit-journal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(room_id: &str, seq: u64, author: Option<&str>) -> Record<'static> {
        Record::Append(Cow::Owned(LoggedUpdate {
            room_id: room_id.into(),
            seq,
            data: Bytes::from(format!("update {seq} of {room_id}")),
            at_ms: 1_700_000_000_000 + seq as i64,
            author: author.map(Into::into),
        }))
    }

    /// The journal file of `dir` once a run appended room a's 1 and 2 to it.
    fn two_appends_written(dir: &Path) -> PathBuf {
        let mut journal = Journal::open(dir, false).unwrap();
        journal
            .write(&[append("a", 1, None), append("a", 2, None)])
            .unwrap();
        dir.join(JOURNAL_FILE)
    }

    fn seqs(rows: &[LoggedUpdate]) -> Vec<(String, u64)> {
        rows.iter()
            .map(|row| (row.room_id.clone(), row.seq))
            .collect()
    }

    #[test]
    fn records_read_back_as_written() {
        let records = [
            append("a", 1, Some("alice")),
            append("b", 1, None),
            Record::Delete {
                room_id: "x".into(),
            },
            append("a", 2, Some("")),
        ];
        let mut bytes = Vec::new();
        for record in &records {
            encode(record, &mut bytes);
        }
        let mut rest = bytes.as_slice();
        for record in &records {
            let (read, after) = decode(rest).expect("a whole record");
            assert_eq!(&read, record);
            rest = after;
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_replay_there() {
        let dir = temp_dir();
        let path = two_appends_written(&dir);
        let whole = std::fs::read(&path).unwrap();
        // Cut inside the second record: the first survives.
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 1)]);
        // A flipped byte in the second record's body: the same.
        let mut damaged = whole.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 1)]);
        // A length no record has is not trusted either.
        let mut huge = whole[..whole.len() / 2].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(read_dir(&dir).unwrap().len() <= 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_deletion_drops_the_rooms_earlier_rows_in_memory_and_on_replay() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        journal
            .write(&[append("a", 1, None), append("b", 1, None)])
            .unwrap();
        assert!(journal.rows_to_fold().unwrap().is_some(), "turned over");
        journal.write(&[append("a", 2, None)]).unwrap();
        journal
            .write(&[
                Record::Delete {
                    room_id: "a".into(),
                },
                append("a", 1, None),
            ])
            .unwrap();
        let in_memory: Vec<_> = journal.rows().cloned().collect();
        assert_eq!(seqs(&in_memory), [("b".into(), 1), ("a".into(), 1)]);
        drop(journal);
        // A crash before the fold finished: both files are replayed, in order.
        assert_eq!(seqs(&read_dir(&dir).unwrap()), seqs(&in_memory));
        let reopened = Journal::open(&dir, false).unwrap();
        let replayed: Vec<_> = reopened.rows().cloned().collect();
        assert_eq!(replayed, in_memory, "the same rows, data and all");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn turning_over_keeps_appending_and_a_fold_removes_only_the_folded_file() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, true).unwrap();
        journal.write(&[append("a", 1, None)]).unwrap();
        let folding = journal.rows_to_fold().unwrap().expect("rows to fold");
        assert_eq!(seqs(&folding), [("a".into(), 1)]);
        assert_eq!(journal.len(), 1, "rows being folded still count");
        journal.write(&[append("a", 2, None)]).unwrap();
        // Until it is folded, asking again gives the same rows.
        let again = journal.rows_to_fold().unwrap().expect("still folding");
        assert_eq!(seqs(&again), [("a".into(), 1)]);
        journal.folded().unwrap();
        assert!(!dir.join(FOLDING_FILE).exists());
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 2)]);
        assert_eq!(
            seqs(&journal.rows_to_fold().unwrap().unwrap()),
            [("a".into(), 2)]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_damaged_file_is_replayed_up_to_the_damage_and_kept_aside() {
        let dir = temp_dir();
        let path = two_appends_written(&dir);
        let mut damaged = std::fs::read(&path).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        let journal = Journal::open(&dir, false).unwrap();
        let replayed: Vec<_> = journal.rows().cloned().collect();
        assert_eq!(seqs(&replayed), [("a".into(), 1)]);
        let aside = dir.join(format!("{JOURNAL_FILE}.damaged"));
        assert_eq!(std::fs::read(aside).unwrap(), damaged);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn past_damage_in_the_folding_file_the_later_file_is_set_aside_too() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        journal
            .write(&[append("a", 1, None), append("a", 2, None)])
            .unwrap();
        journal.rows_to_fold().unwrap().expect("rows to fold");
        journal.write(&[append("a", 3, None)]).unwrap();
        drop(journal);
        // A power loss kept the later file's record and cut the earlier one's last.
        let folding = dir.join(FOLDING_FILE);
        let kept = std::fs::read(&folding).unwrap();
        std::fs::write(&folding, &kept[..kept.len() - 1]).unwrap();
        let later = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
        let journal = Journal::open(&dir, false).unwrap();
        let replayed: Vec<_> = journal.rows().cloned().collect();
        assert_eq!(seqs(&replayed), [("a".into(), 1)], "no hole at 2");
        let aside = |name: &str| std::fs::read(dir.join(format!("{name}.damaged"))).unwrap();
        assert_eq!(aside(FOLDING_FILE), &kept[..kept.len() - 1]);
        assert_eq!(aside(JOURNAL_FILE), later);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_record_replay_would_not_take_is_refused_for_good() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        let too_large = Record::Append(Cow::Owned(LoggedUpdate {
            room_id: "a".into(),
            seq: 1,
            data: Bytes::from(vec![0; MAX_RECORD as usize]),
            at_ms: 0,
            author: None,
        }));
        let refused = journal.write(&[too_large]).unwrap_err();
        assert!(refused.is_permanent(), "{refused}");
        journal.write(&[append("a", 1, None)]).unwrap();
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 1)]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rows_in_memory_count_what_they_hold_besides_their_updates() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        journal.write(&[append("a", 1, Some("ann"))]).unwrap();
        let update = "update 1 of a".len();
        assert_eq!(
            journal.bytes(),
            ROW_OVERHEAD + update + "a".len() + "ann".len()
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failed_turn_over_that_could_not_be_undone_is_not_tried_again() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        journal.write(&[append("a", 1, None)]).unwrap();
        journal.broken = Some("turning it over failed".into());
        assert!(journal.rows_to_fold().is_err());
        assert!(!dir.join(FOLDING_FILE).exists());
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 1)]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_damaged_copy_is_kept() {
        let dir = temp_dir();
        let path = two_appends_written(&dir);
        let first = set_aside(&dir, JOURNAL_FILE).unwrap();
        std::fs::write(&path, b"later damage").unwrap();
        let second = set_aside(&dir, JOURNAL_FILE).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(second).unwrap(), b"later damage");
        assert!(std::fs::read(first).unwrap().len() > b"later damage".len());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn appends_are_refused_while_too_much_waits_to_be_folded() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        // Room for one row and a little: the second append is taken, the third not.
        let limit = ROW_OVERHEAD + 20;
        journal.limit_unfolded(limit);
        journal.write(&[append("a", 1, None)]).unwrap();
        journal.write(&[append("a", 2, None)]).unwrap();
        assert!(journal.bytes() > limit);
        let refused = journal.write(&[append("a", 3, None)]).unwrap_err();
        assert!(
            refused.to_string().contains("has not taken yet"),
            "{refused}"
        );
        // A deletion still gets through: it only frees memory, and one a crash
        // left to finish is written at open, with everything replayed unfolded.
        journal
            .write(&[Record::Delete {
                room_id: "gone".into(),
            }])
            .unwrap();
        // Once folded, appends go on.
        journal.rows_to_fold().unwrap();
        journal.folded().unwrap();
        journal.write(&[append("a", 3, None)]).unwrap();
        assert_eq!(seqs(&read_dir(&dir).unwrap()), [("a".into(), 3)]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_write_that_failed_half_way_is_overwritten_by_the_next() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, false).unwrap();
        journal.write(&[append("a", 1, None)]).unwrap();
        // What a failed write leaves: bytes past the last whole record.
        journal.file.seek(SeekFrom::End(0)).unwrap();
        journal.file.write_all(b"half a record").unwrap();
        journal.write(&[append("a", 2, None)]).unwrap();
        assert_eq!(
            seqs(&read_dir(&dir).unwrap()),
            [("a".into(), 1), ("a".into(), 2)]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
