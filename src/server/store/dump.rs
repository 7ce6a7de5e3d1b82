//! A whole store as one file, and back: `coedit dump` and `coedit restore-dump`.
//!
//! The file is newline-delimited JSON, written and read one record at a time, so
//! neither side ever holds more than one page of one room's log in memory:
//!
//! ```text
//! {"type":"header","format":"coedit-dump","version":1,"source":"sqlite","created_at":"…","coedit_version":"…"}
//! {"type":"room","room_id":"notes"}
//! {"type":"checkpoint","updated_at":"…","data":"<hex>"}              (if the room has one)
//! {"type":"snapshot","through_seq":500,"at_ms":…,"data":"<hex>"}     (if the room has one)
//! {"type":"entry","seq":1,"at_ms":…,"author":"Ada","snapshot":false,"data":"<hex>"}
//! …                                                                  (every log row, in order)
//! {"type":"end","rooms":3,"entries":1234}
//! ```
//!
//! Records after a `room` belong to it. Every log row is carried with its time and
//! author, kept snapshots included, so the history reads back the same; the
//! checkpoint keeps the original backend's `updated_at` text. The `end` record
//! tells a complete file from a truncated one; a restore checks the whole file
//! before it writes anything.

use std::collections::HashSet;
use std::io::{BufRead, Seek, SeekFrom, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::server::rest::validate_room_id;

use super::{RoomParts, Store, StoreError, StoredCheckpoint, StoredEntry, StoredSnapshot};

/// The `format` of the header line.
pub const FORMAT: &str = "coedit-dump";
/// The version of the file format this build writes and reads.
pub const VERSION: u32 = 1;
/// Log rows read from the store at a time.
const PAGE: usize = 500;
/// A restore writes a room's rows in batches of at most this many rows…
const BATCH_ROWS: usize = 500;
/// …or this many bytes, whichever comes first (a MongoDB batch stays far below
/// its 48 MB message limit).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One line of a dump file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Header {
        format: String,
        version: u32,
        source: String,
        created_at: String,
        #[serde(default)]
        coedit_version: String,
    },
    Room {
        room_id: String,
    },
    Checkpoint {
        updated_at: String,
        data: String,
    },
    Snapshot {
        through_seq: u64,
        at_ms: i64,
        data: String,
    },
    Entry {
        seq: u64,
        at_ms: i64,
        author: Option<String>,
        snapshot: bool,
        data: String,
    },
    End {
        rooms: u64,
        entries: u64,
    },
}

/// What a dump or restore moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub rooms: u64,
    /// Log rows (updates and kept snapshots).
    pub entries: u64,
    /// Bytes of document data (checkpoints, snapshots, log rows), before hex.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a coedit dump: {0}")]
    Format(String),
    #[error("the target store is not empty ({0} rooms); restore into an empty store, or pass --force to replace the rooms the dump holds")]
    NotEmpty(usize),
}

/// Progress reports: called once per room started (with its id) and after every
/// batch, with the running totals.
pub trait Progress {
    fn room(&self, room_id: &str);
    fn advanced(&self, summary: &Summary);
}

/// Reports nowhere.
pub struct Silent;

impl Progress for Silent {
    fn room(&self, _room_id: &str) {}
    fn advanced(&self, _summary: &Summary) {}
}

fn write_record(out: &mut impl Write, record: &Record) -> Result<(), DumpError> {
    serde_json::to_writer(&mut *out, record)
        .map_err(|error| DumpError::Io(std::io::Error::other(error)))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes every room in `rooms` (the store's `list_rooms`, or some of them) with
/// everything stored for it to `out`.
pub async fn dump(
    store: &dyn Store,
    rooms: &[String],
    out: &mut impl Write,
    progress: &dyn Progress,
) -> Result<Summary, DumpError> {
    write_record(
        out,
        &Record::Header {
            format: FORMAT.to_owned(),
            version: VERSION,
            source: store.backend().to_owned(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            coedit_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )?;
    let mut summary = Summary::default();
    for room_id in rooms {
        progress.room(room_id);
        write_record(
            out,
            &Record::Room {
                room_id: room_id.clone(),
            },
        )?;
        let parts = store.read_room_parts(room_id).await?;
        if let Some(checkpoint) = parts.checkpoint {
            summary.bytes += checkpoint.data.len() as u64;
            write_record(
                out,
                &Record::Checkpoint {
                    updated_at: checkpoint.updated_at,
                    data: faster_hex::hex_string(&checkpoint.data),
                },
            )?;
        }
        if let Some(snapshot) = parts.snapshot {
            summary.bytes += snapshot.data.len() as u64;
            write_record(
                out,
                &Record::Snapshot {
                    through_seq: snapshot.through_seq,
                    at_ms: snapshot.at_ms,
                    data: faster_hex::hex_string(&snapshot.data),
                },
            )?;
        }
        let mut after = 0;
        loop {
            let page = store.read_entries(room_id, after, PAGE).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            for entry in page {
                summary.entries += 1;
                summary.bytes += entry.data.len() as u64;
                write_record(
                    out,
                    &Record::Entry {
                        seq: entry.seq,
                        at_ms: entry.at_ms,
                        author: entry.author,
                        snapshot: entry.snapshot,
                        data: faster_hex::hex_string(&entry.data),
                    },
                )?;
            }
            progress.advanced(&summary);
        }
        summary.rooms += 1;
        progress.advanced(&summary);
    }
    write_record(
        out,
        &Record::End {
            rooms: summary.rooms,
            entries: summary.entries,
        },
    )?;
    out.flush()?;
    Ok(summary)
}

/// What the header of a dump says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub source: String,
    pub created_at: String,
}

/// Reads the file's header line.
pub fn read_header(input: &mut impl BufRead) -> Result<Header, DumpError> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(DumpError::Format("the file is empty".into()));
    }
    match serde_json::from_str::<Record>(&line) {
        Ok(Record::Header {
            format,
            version,
            source,
            created_at,
            ..
        }) if format == FORMAT => {
            if version != VERSION {
                return Err(DumpError::Format(format!(
                    "format version {version}, this coedit reads version {VERSION}"
                )));
            }
            Ok(Header { source, created_at })
        }
        _ => Err(DumpError::Format(
            "the first line is not a coedit-dump header".into(),
        )),
    }
}

/// Writes the rooms of a dump (after its header) into `store`. Unless `replace`,
/// the store must hold no rooms at all; with it, each room of the dump replaces
/// the room of that name (rooms the dump does not hold are left alone).
///
/// The whole file is read and checked first, so a truncated or damaged file
/// changes nothing, not even the rooms before the damage.
pub async fn restore<R: BufRead + Seek>(
    store: &dyn Store,
    input: &mut R,
    replace: bool,
    progress: &dyn Progress,
) -> Result<Summary, DumpError> {
    let start = input.stream_position()?;
    replay(None, input, &Silent).await?;
    input.seek(SeekFrom::Start(start))?;
    if !replace {
        let existing = store.list_rooms().await?.len();
        if existing > 0 {
            return Err(DumpError::NotEmpty(existing));
        }
    }
    replay(Some(store), input, progress).await
}

/// Reads a dump's records after its header and, given a `store`, writes them.
/// Without one it only checks them: every line a record in its place, hex data,
/// room ids the server accepts, each room once, each room's rows in order, and
/// nothing but blank lines after an `end` record whose counts match.
async fn replay(
    store: Option<&dyn Store>,
    input: &mut impl BufRead,
    progress: &dyn Progress,
) -> Result<Summary, DumpError> {
    let mut summary = Summary::default();
    let mut room: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_seq = 0;
    let mut pending: Vec<StoredEntry> = Vec::new();
    let mut pending_bytes = 0;
    let mut line = String::new();
    let mut line_number = 1;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Err(DumpError::Format(format!(
                "the file ends at line {line_number} without its end record (truncated?)"
            )));
        }
        line_number += 1;
        let record: Record = serde_json::from_str(&line)
            .map_err(|error| DumpError::Format(format!("line {line_number}: {error}")))?;
        let in_room = |room: &Option<String>| {
            room.clone().ok_or_else(|| {
                DumpError::Format(format!(
                    "line {line_number}: a room's record before any room"
                ))
            })
        };
        let numbered = |seq: u64| {
            i64::try_from(seq).map_err(|_| {
                DumpError::Format(format!(
                    "line {line_number}: sequence number {seq} is too large"
                ))
            })
        };
        match record {
            Record::Header { .. } => {
                return Err(DumpError::Format(format!(
                    "line {line_number}: a second header"
                )))
            }
            Record::Room { room_id } => {
                validate_room_id(&room_id)
                    .map_err(|error| DumpError::Format(format!("line {line_number}: {error}")))?;
                if !seen.insert(room_id.clone()) {
                    return Err(DumpError::Format(format!(
                        "line {line_number}: room {room_id} appears twice"
                    )));
                }
                if let Some(previous) = &room {
                    flush(store, previous, &mut pending, &mut pending_bytes).await?;
                    summary.rooms += 1;
                    progress.advanced(&summary);
                }
                progress.room(&room_id);
                // Without `replace` the store lists no room, but may still hold what
                // a deleted room of that name left (a cluster's fence, copies that
                // landed after it), which would hide the restored one.
                if let Some(store) = store {
                    store.delete_room(&room_id).await?;
                }
                room = Some(room_id);
                last_seq = 0;
            }
            Record::Checkpoint { updated_at, data } => {
                let room_id = in_room(&room)?;
                let data = decode(&data, line_number)?;
                summary.bytes += data.len() as u64;
                if let Some(store) = store {
                    let parts = RoomParts {
                        checkpoint: Some(StoredCheckpoint { data, updated_at }),
                        snapshot: None,
                    };
                    store.write_room_parts(&room_id, &parts).await?;
                }
            }
            Record::Snapshot {
                through_seq,
                at_ms,
                data,
            } => {
                let room_id = in_room(&room)?;
                numbered(through_seq)?;
                let data = decode(&data, line_number)?;
                summary.bytes += data.len() as u64;
                if let Some(store) = store {
                    let parts = RoomParts {
                        checkpoint: None,
                        snapshot: Some(StoredSnapshot {
                            through_seq,
                            at_ms,
                            data,
                        }),
                    };
                    store.write_room_parts(&room_id, &parts).await?;
                }
            }
            Record::Entry {
                seq,
                at_ms,
                author,
                snapshot,
                data,
            } => {
                let room_id = in_room(&room)?;
                numbered(seq)?;
                if seq <= last_seq {
                    return Err(DumpError::Format(format!(
                        "line {line_number}: entry {seq} of room {room_id} follows entry {last_seq}"
                    )));
                }
                last_seq = seq;
                let data = decode(&data, line_number)?;
                summary.entries += 1;
                summary.bytes += data.len() as u64;
                if store.is_none() {
                    continue;
                }
                pending_bytes += data.len();
                pending.push(StoredEntry {
                    seq,
                    at_ms,
                    author,
                    snapshot,
                    data,
                });
                if pending.len() >= BATCH_ROWS || pending_bytes >= BATCH_BYTES {
                    flush(store, &room_id, &mut pending, &mut pending_bytes).await?;
                    progress.advanced(&summary);
                }
            }
            Record::End { rooms, entries } => {
                if let Some(last) = &room {
                    flush(store, last, &mut pending, &mut pending_bytes).await?;
                    summary.rooms += 1;
                }
                if rooms != summary.rooms || entries != summary.entries {
                    return Err(DumpError::Format(format!(
                        "the end record counts {rooms} rooms and {entries} entries, the file holds {} and {}",
                        summary.rooms, summary.entries
                    )));
                }
                // Two dumps run together would otherwise restore the first alone.
                loop {
                    line.clear();
                    if input.read_line(&mut line)? == 0 {
                        break;
                    }
                    line_number += 1;
                    if !line.trim().is_empty() {
                        return Err(DumpError::Format(format!(
                            "line {line_number}: records after the end record"
                        )));
                    }
                }
                progress.advanced(&summary);
                return Ok(summary);
            }
        }
    }
}

async fn flush(
    store: Option<&dyn Store>,
    room_id: &str,
    pending: &mut Vec<StoredEntry>,
    pending_bytes: &mut usize,
) -> Result<(), DumpError> {
    if let Some(store) = store.filter(|_| !pending.is_empty()) {
        store.write_entries(room_id, pending).await?;
        pending.clear();
        *pending_bytes = 0;
    }
    Ok(())
}

fn decode(data: &str, line_number: u64) -> Result<Bytes, DumpError> {
    hex::decode(data)
        .map(Bytes::from)
        .map_err(|error| DumpError::Format(format!("line {line_number}: data is not hex: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::memory::MemoryStore;
    use crate::server::store::{LoggedUpdate, Snapshot, WriteOp};

    async fn filled() -> MemoryStore {
        let store = MemoryStore::new();
        for (room, count) in [("a", 3u64), ("b", 1200)] {
            let batch: Vec<WriteOp> = (1..=count)
                .map(|seq| {
                    WriteOp::Append(LoggedUpdate {
                        room_id: room.into(),
                        seq,
                        data: Bytes::from(format!("{room}{seq}")),
                        at_ms: seq as i64,
                        author: Some("Ada".into()),
                    })
                })
                .collect();
            store.write(&batch).await.unwrap();
        }
        store
            .write(&[WriteOp::Compact(Snapshot {
                room_id: "b".into(),
                through_seq: 700,
                data: Bytes::from_static(b"b-snap"),
                at_ms: 700,
                keep_history_since_ms: Some(0),
                deletions: None,
            })])
            .await
            .unwrap();
        store.save_checkpoint("c", b"checkpoint").await.unwrap();
        store
    }

    async fn dumped(store: &MemoryStore) -> Vec<u8> {
        let rooms = store.list_rooms().await.unwrap();
        let mut file = Vec::new();
        dump(store, &rooms, &mut file, &Silent).await.unwrap();
        file
    }

    /// The dump without its header line (which names the source and the time).
    fn body(file: &[u8]) -> &[u8] {
        let newline = file.iter().position(|byte| *byte == b'\n').unwrap();
        &file[newline + 1..]
    }

    #[tokio::test]
    async fn a_restored_dump_dumps_the_same() {
        let source = filled().await;
        let file = dumped(&source).await;
        let mut input = std::io::Cursor::new(&file);
        let header = read_header(&mut input).unwrap();
        assert_eq!(header.source, "memory");
        let target = MemoryStore::new();
        let summary = restore(&target, &mut input, false, &Silent).await.unwrap();
        assert_eq!(summary.rooms, 3);
        // The snapshot kept at 700 is row 700 of room b's log.
        assert_eq!(summary.entries, 3 + 1200);
        assert_eq!(body(&dumped(&target).await), body(&file));
        assert_eq!(
            target.read_version("b", 900).await.unwrap(),
            source.read_version("b", 900).await.unwrap()
        );
    }

    /// The embedded store's first compaction after a restore keeps the restored
    /// history: the restored snapshot is already a row of the log, and was taken
    /// for one written without history, so everything below it was dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compaction_after_a_restore_keeps_the_restored_history() {
        let file = dumped(&filled().await).await;
        let dir = std::env::temp_dir().join(format!("coedit-restore-{}", uuid::Uuid::new_v4()));
        let target = crate::server::store::sqlite::SqliteStore::open(&dir).unwrap();
        let mut input = std::io::Cursor::new(&file);
        read_header(&mut input).unwrap();
        restore(&target, &mut input, false, &Silent).await.unwrap();
        let restored = target.history("b").await.unwrap();
        assert_eq!(restored.readable_from(), Some(1));
        target
            .write(&[WriteOp::Compact(Snapshot {
                room_id: "b".into(),
                through_seq: 1200,
                data: Bytes::from_static(b"b-snap-2"),
                at_ms: 1200,
                keep_history_since_ms: Some(0),
                deletions: None,
            })])
            .await
            .unwrap();
        let compacted = target.history("b").await.unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(compacted.readable_from(), Some(1));
        assert_eq!(compacted.entries.first().map(|entry| entry.seq), Some(1));
    }

    #[tokio::test]
    async fn a_non_empty_target_is_refused_unless_replacing() {
        let file = dumped(&filled().await).await;
        let target = MemoryStore::new();
        target.save_checkpoint("other", b"x").await.unwrap();
        target.save_checkpoint("a", b"old").await.unwrap();
        let mut input = std::io::Cursor::new(&file);
        read_header(&mut input).unwrap();
        assert!(matches!(
            restore(&target, &mut input, false, &Silent).await,
            Err(DumpError::NotEmpty(2))
        ));
        let mut input = std::io::Cursor::new(&file);
        read_header(&mut input).unwrap();
        restore(&target, &mut input, true, &Silent).await.unwrap();
        // Replaced: room a's checkpoint is gone with the rest of the old room.
        assert_eq!(target.load_checkpoint("a").await.unwrap(), None);
        assert!(target.load_checkpoint("other").await.unwrap().is_some());
    }

    /// Restores `file` into a store holding an older room "a" and another room,
    /// replacing; returns the error and the store.
    async fn restore_over(file: &[u8]) -> (DumpError, MemoryStore) {
        let target = MemoryStore::new();
        target.save_checkpoint("a", b"old").await.unwrap();
        target.save_checkpoint("other", b"x").await.unwrap();
        let mut input = std::io::Cursor::new(file);
        read_header(&mut input).unwrap();
        let error = restore(&target, &mut input, true, &Silent)
            .await
            .unwrap_err();
        (error, target)
    }

    #[tokio::test]
    async fn a_damaged_dump_changes_nothing() {
        let file = dumped(&filled().await).await;
        let text = String::from_utf8(file.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let joined = |lines: &[&str]| format!("{}\n", lines.join("\n")).into_bytes();
        // Cut inside room b's entries (a comes first and would be written first).
        let b = lines
            .iter()
            .position(|line| line.contains(r#""room_id":"b""#))
            .unwrap();
        let with_bad_hex = {
            let mut damaged = lines.clone();
            damaged[b + 10] = r#"{"type":"entry","seq":10,"at_ms":10,"author":null,"snapshot":false,"data":"zz"}"#;
            joined(&damaged)
        };
        let out_of_order = {
            let mut damaged = lines.clone();
            damaged.swap(b + 10, b + 11);
            joined(&damaged)
        };
        let twice = {
            let mut damaged = lines.clone();
            damaged[b] = r#"{"type":"room","room_id":"a"}"#;
            joined(&damaged)
        };
        let bad_id = {
            let mut damaged = lines.clone();
            damaged[b] = r#"{"type":"room","room_id":"tab\tbed"}"#;
            joined(&damaged)
        };
        let too_large = {
            let mut damaged = lines.clone();
            damaged[b + 10] = r#"{"type":"entry","seq":18446744073709551615,"at_ms":10,"author":null,"snapshot":false,"data":"00"}"#;
            joined(&damaged)
        };
        let two_dumps = [file.clone(), file.clone()].concat();
        for (name, damaged) in [
            ("cut", joined(&lines[..b + 20])),
            ("bad hex", with_bad_hex),
            ("out of order", out_of_order),
            ("a room twice", twice),
            ("a bad room id", bad_id),
            ("a number past i64", too_large),
            ("two dumps run together", two_dumps),
        ] {
            let (error, target) = restore_over(&damaged).await;
            assert!(matches!(error, DumpError::Format(_)), "{name}: {error}");
            assert_eq!(
                target.load_checkpoint("a").await.unwrap(),
                Some(Bytes::from_static(b"old")),
                "{name}: room a was replaced"
            );
            assert_eq!(
                target.list_rooms().await.unwrap(),
                ["a", "other"],
                "{name}: rooms were written"
            );
        }
        // Blank lines after the end record are harmless.
        let mut padded = file.clone();
        padded.extend_from_slice(b"\n\n");
        let mut input = std::io::Cursor::new(&padded);
        read_header(&mut input).unwrap();
        restore(&MemoryStore::new(), &mut input, false, &Silent)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_truncated_dump_is_refused() {
        let file = dumped(&filled().await).await;
        let cut = &file[..file.len() - 40];
        let mut input = std::io::Cursor::new(cut);
        read_header(&mut input).unwrap();
        let error = restore(&MemoryStore::new(), &mut input, false, &Silent)
            .await
            .unwrap_err();
        assert!(matches!(error, DumpError::Format(_)), "{error}");
        let mut garbage = std::io::Cursor::new(b"{\"hello\":1}\n".to_vec());
        assert!(matches!(
            read_header(&mut garbage),
            Err(DumpError::Format(_))
        ));
    }
}
