//! The behaviour every `Store` must have, as one suite the tests run against each
//! backend (SQLite, memory, MongoDB), so the backends cannot drift apart.
//!
//! Each check returns an error describing the first broken expectation, so callers
//! can run it against a real external server and report what failed.

use bytes::Bytes;

use super::{DurableState, LoggedUpdate, RoomDeletion, Snapshot, Store, VersionData, WriteOp};

fn append(room_id: &str, seq: u64, data: &'static [u8]) -> WriteOp {
    WriteOp::Append(LoggedUpdate {
        room_id: room_id.into(),
        seq,
        data: Bytes::from_static(data),
        at_ms: seq as i64 * 1000,
        author: Some(format!("user-{}", seq % 2)),
    })
}

fn check(condition: bool, what: &str) -> Result<(), String> {
    condition.then_some(()).ok_or_else(|| what.to_owned())
}

/// Runs every check; `prefix` keeps rooms of concurrent runs on one server apart.
pub async fn run_all(store: &dyn Store, prefix: &str) -> Result<(), String> {
    let room = |name: &str| format!("{prefix}-{name}");
    let failed = |error: super::StoreError| error.to_string();

    store.ping().await.map_err(failed)?;
    check(
        store
            .load_durable(&room("never"))
            .await
            .map_err(failed)?
            .is_none(),
        "a room never written must load as None",
    )?;

    // The log keeps order and survives a retried (duplicated) batch.
    let log_room = room("log");
    let batch = [append(&log_room, 1, b"one"), append(&log_room, 2, b"two")];
    store.write(&batch).await.map_err(failed)?;
    store.write(&batch).await.map_err(failed)?;
    store
        .write(&[append(&log_room, 3, b"three")])
        .await
        .map_err(failed)?;
    let loaded = store.load_durable(&log_room).await.map_err(failed)?;
    check(
        loaded
            == Some(DurableState {
                snapshot: None,
                updates: vec![
                    Bytes::from_static(b"one"),
                    Bytes::from_static(b"two"),
                    Bytes::from_static(b"three"),
                ],
                last_seq: 3,
            }),
        &format!("log must load in order without duplicates, got {loaded:?}"),
    )?;

    // Compaction replaces what it covers and keeps what came after it.
    store
        .write(&[
            WriteOp::Compact(Snapshot {
                room_id: log_room.clone(),
                through_seq: 2,
                data: Bytes::from_static(b"one+two"),
                at_ms: 0,
                keep_history_since_ms: None,
                deletions: None,
            }),
            append(&log_room, 4, b"four"),
        ])
        .await
        .map_err(failed)?;
    let loaded = store.load_durable(&log_room).await.map_err(failed)?;
    check(
        loaded
            == Some(DurableState {
                snapshot: Some(Bytes::from_static(b"one+two")),
                updates: vec![Bytes::from_static(b"three"), Bytes::from_static(b"four")],
                last_seq: 4,
            }),
        &format!("compaction must keep later entries, got {loaded:?}"),
    )?;

    // A compaction covering everything leaves the snapshot alone, with its sequence.
    store
        .write(&[WriteOp::Compact(Snapshot {
            room_id: log_room.clone(),
            through_seq: 4,
            data: Bytes::from_static(b"all"),
            at_ms: 0,
            keep_history_since_ms: None,
            deletions: None,
        })])
        .await
        .map_err(failed)?;
    let loaded = store.load_durable(&log_room).await.map_err(failed)?;
    check(
        loaded
            == Some(DurableState {
                snapshot: Some(Bytes::from_static(b"all")),
                updates: vec![],
                last_seq: 4,
            }),
        &format!("full compaction must leave only the snapshot, got {loaded:?}"),
    )?;

    // Rooms are independent.
    check(
        store
            .load_durable(&room("other"))
            .await
            .map_err(failed)?
            .is_none(),
        "writing one room must not create another",
    )?;

    // Checkpoints are separate from the durable state and overwrite each other.
    let checkpoint_room = room("checkpoint");
    check(
        store
            .load_checkpoint(&checkpoint_room)
            .await
            .map_err(failed)?
            .is_none(),
        "no checkpoint before persist",
    )?;
    store
        .save_checkpoint(&checkpoint_room, &[0, 1, 0xab])
        .await
        .map_err(failed)?;
    store
        .save_checkpoint(&checkpoint_room, &[0, 2, 0xcd])
        .await
        .map_err(failed)?;
    let checkpoint = store
        .load_checkpoint(&checkpoint_room)
        .await
        .map_err(failed)?;
    check(
        checkpoint.as_deref() == Some(&[0, 2, 0xcd][..]),
        &format!("last checkpoint wins, got {checkpoint:?}"),
    )?;
    check(
        store
            .load_durable(&checkpoint_room)
            .await
            .map_err(failed)?
            .is_none(),
        "a checkpoint is not durable state",
    )?;

    // A delete removes log, snapshot and checkpoint, after the writes before it in
    // the batch, and leaves other rooms alone; the room then starts again at 1.
    let deleted_room = room("deleted");
    store
        .save_checkpoint(&deleted_room, &[0, 9])
        .await
        .map_err(failed)?;
    store
        .write(&[
            append(&deleted_room, 1, b"one"),
            WriteOp::Compact(Snapshot {
                room_id: deleted_room.clone(),
                through_seq: 1,
                data: Bytes::from_static(b"snap"),
                at_ms: 0,
                keep_history_since_ms: Some(0),
                deletions: None,
            }),
            append(&deleted_room, 2, b"two"),
            WriteOp::Delete(RoomDeletion {
                room_id: deleted_room.clone(),
                seq: 3,
            }),
        ])
        .await
        .map_err(failed)?;
    check(
        store
            .load_durable(&deleted_room)
            .await
            .map_err(failed)?
            .is_none(),
        "a deleted room has no durable state",
    )?;
    check(
        store
            .load_checkpoint(&deleted_room)
            .await
            .map_err(failed)?
            .is_none(),
        "a deleted room has no checkpoint",
    )?;
    let survivor = store.load_durable(&log_room).await.map_err(failed)?;
    check(
        survivor.is_some_and(|state| state.snapshot.as_deref() == Some(&b"all"[..])),
        "deleting one room must leave the others",
    )?;
    store
        .write(&[append(&deleted_room, 1, b"again")])
        .await
        .map_err(failed)?;
    let reborn = store.load_durable(&deleted_room).await.map_err(failed)?;
    check(
        reborn
            == Some(DurableState {
                snapshot: None,
                updates: vec![Bytes::from_static(b"again")],
                last_seq: 1,
            }),
        &format!("a deleted room starts afresh, got {reborn:?}"),
    )?;
    check(
        store
            .history(&deleted_room)
            .await
            .map_err(failed)?
            .entries
            .iter()
            .map(|entry| entry.seq)
            .eq([1]),
        "a deleted room's history is gone too",
    )?;
    store.delete_room(&deleted_room).await.map_err(failed)?;
    store.delete_room(&deleted_room).await.map_err(failed)?;
    check(
        store
            .load_durable(&deleted_room)
            .await
            .map_err(failed)?
            .is_none(),
        "delete_room removes the room, and deleting twice is harmless",
    )?;
    history(store, &room("history")).await?;
    history_turned_on(store, &room("history-on")).await?;
    regrouped(store, &room("regrouped")).await?;
    compacted_where_a_batch_starts(store, &room("batch-start")).await?;
    older_compaction_changes_nothing(store, &room("older"), None).await?;
    older_compaction_changes_nothing(store, &room("older-history"), Some(0)).await?;
    copy(store, &room("copy-from"), &room("copy-to")).await
}

/// A room read row by row (`read_room_parts`, `read_entries` page by page) and
/// written into another room (`write_room_parts`, `write_entries`) is the same
/// room: same state, history, versions and checkpoint. This is what `coedit dump`
/// and `restore-dump` do between stores.
async fn copy(store: &dyn Store, from: &str, to: &str) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    store
        .write(&[
            append(from, 1, b"u1"),
            append(from, 2, b"u2"),
            compact_at(from, 3, b"s3", Some(0)),
            append(from, 4, b"u4"),
            append(from, 5, b"u5"),
        ])
        .await
        .map_err(failed)?;
    store
        .save_checkpoint(from, b"checkpoint")
        .await
        .map_err(failed)?;
    let parts = store.read_room_parts(from).await.map_err(failed)?;
    check(
        parts.checkpoint.as_ref().map(|c| &c.data[..]) == Some(&b"checkpoint"[..])
            && parts
                .checkpoint
                .as_ref()
                .is_some_and(|c| !c.updated_at.is_empty())
            && parts.snapshot
                == Some(super::StoredSnapshot {
                    through_seq: 3,
                    at_ms: 3000,
                    data: Bytes::from_static(b"s3"),
                }),
        &format!("a room's parts read as stored, got {parts:?}"),
    )?;
    store.write_room_parts(to, &parts).await.map_err(failed)?;
    let rows = read_all_entries(store, from, 2).await?;
    for page in rows.chunks(2) {
        store.write_entries(to, page).await.map_err(failed)?;
    }
    check(
        rows.iter().map(|row| (row.seq, row.snapshot)).eq([
            (1, false),
            (2, false),
            (3, true),
            (4, false),
            (5, false),
        ]),
        &format!("every log row is read once, in order, got {rows:?}"),
    )?;
    check(
        rows.iter().all(|row| {
            row.at_ms == row.seq as i64 * 1000 && (row.snapshot || row.author.is_some())
        }),
        &format!("rows keep their time and author, got {rows:?}"),
    )?;
    let same = |what: &str, a: String, b: String| check(a == b, &format!("{what}: {a} != {b}"));
    same(
        "durable state",
        format!("{:?}", store.load_durable(from).await.map_err(failed)?),
        format!("{:?}", store.load_durable(to).await.map_err(failed)?),
    )?;
    same(
        "history",
        format!("{:?}", store.history(from).await.map_err(failed)?),
        format!("{:?}", store.history(to).await.map_err(failed)?),
    )?;
    for seq in [2, 4, 5] {
        same(
            &format!("version {seq}"),
            format!("{:?}", store.read_version(from, seq).await.map_err(failed)?),
            format!("{:?}", store.read_version(to, seq).await.map_err(failed)?),
        )?;
    }
    same(
        "parts",
        format!("{parts:?}"),
        format!("{:?}", store.read_room_parts(to).await.map_err(failed)?),
    )?;
    let rooms = store.list_rooms().await.map_err(failed)?;
    check(
        rooms.iter().any(|room| room == from)
            && rooms.iter().any(|room| room == to)
            && rooms.windows(2).all(|pair| pair[0] < pair[1]),
        &format!("list_rooms names every room once, sorted, got {rooms:?}"),
    )?;
    store.delete_room(to).await.map_err(failed)?;
    check(
        !store
            .list_rooms()
            .await
            .map_err(failed)?
            .iter()
            .any(|room| room == to),
        "a deleted room is not listed",
    )
}

fn compact_at(room_id: &str, seq: u64, data: &'static [u8], since: Option<i64>) -> WriteOp {
    WriteOp::Compact(Snapshot {
        room_id: room_id.into(),
        through_seq: seq,
        data: Bytes::from_static(data),
        at_ms: seq as i64 * 1000,
        keep_history_since_ms: since,
        deletions: None,
    })
}

/// A room compacted without history (history off then, or written by an older
/// release) keeps its snapshot as the base of the versions that follow it once a
/// compaction with history replaces that snapshot.
async fn history_turned_on(store: &dyn Store, room: &str) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    store
        .write(&[
            append(room, 1, b"u1"),
            append(room, 2, b"u2"),
            append(room, 3, b"u3"),
            compact_at(room, 3, b"s3", None),
            append(room, 4, b"u4"),
            append(room, 5, b"u5"),
            append(room, 6, b"u6"),
        ])
        .await
        .map_err(failed)?;
    // A compaction stands for the update it is numbered after, whichever of the
    // two the store files first.
    store
        .write(&[compact_at(room, 6, b"s6", Some(0))])
        .await
        .map_err(failed)?;
    let kept = store.history(room).await.map_err(failed)?;
    // Entries the old snapshot covered may still be there to read (MongoDB keeps a
    // run of entries whole until a compaction covers all of it).
    let from = kept.entries.iter().position(|entry| entry.seq == 3);
    let after: Vec<(u64, bool)> = from
        .map(|from| {
            kept.entries[from..]
                .iter()
                .map(|entry| (entry.seq, entry.snapshot))
                .collect()
        })
        .unwrap_or_default();
    check(
        after == [(3, true), (4, false), (5, false), (6, true)]
            && from.is_some_and(|from| kept.entries[from].at_ms == 3000),
        &format!("the snapshot history started from is kept as a version, got {kept:?}"),
    )?;
    check(
        kept.readable_from().is_some_and(|first| first <= 3),
        &format!(
            "readable from the old snapshot, got {:?}",
            kept.readable_from()
        ),
    )?;
    for (seq, base, updates) in [
        (3, b"s3", &[][..]),
        (5, b"s3", &[&b"u4"[..], &b"u5"[..]][..]),
        (6, b"s6", &[][..]),
    ] {
        let version = store.read_version(room, seq).await.map_err(failed)?;
        check(
            version
                == Some(VersionData {
                    base: Some(Bytes::from_static(base)),
                    updates: updates
                        .iter()
                        .map(|update| Bytes::copy_from_slice(update))
                        .collect(),
                }),
            &format!("version {seq} after history was turned on, got {version:?}"),
        )?;
    }
    Ok(())
}

/// With history kept, compactions leave the log readable as versions until the
/// retention period drops them; turned off, they drop what they cover again.
async fn history(store: &dyn Store, room: &str) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    let seqs = |history: &super::History| -> Vec<u64> {
        history.entries.iter().map(|entry| entry.seq).collect()
    };
    store
        .write(&[
            append(room, 1, b"u1"),
            append(room, 2, b"u2"),
            append(room, 3, b"u3"),
            append(room, 4, b"u4"),
            compact_at(room, 5, b"s5", Some(0)),
            append(room, 6, b"u6"),
        ])
        .await
        .map_err(failed)?;
    store
        .write(&[append(room, 7, b"u77")])
        .await
        .map_err(failed)?;
    let loaded = store.load_durable(room).await.map_err(failed)?;
    check(
        loaded
            == Some(DurableState {
                snapshot: Some(Bytes::from_static(b"s5")),
                updates: vec![Bytes::from_static(b"u6"), Bytes::from_static(b"u77")],
                last_seq: 7,
            }),
        &format!("a room with history loads as one without, got {loaded:?}"),
    )?;
    let kept = store.history(room).await.map_err(failed)?;
    check(
        seqs(&kept) == [1, 2, 3, 4, 5, 6, 7],
        &format!("every entry is kept, got {kept:?}"),
    )?;
    let seventh = &kept.entries[6];
    check(
        seventh.at_ms == 7000
            && seventh.size == 3
            && seventh.author.as_deref() == Some("user-1")
            && !seventh.snapshot
            && kept.entries[4].snapshot,
        &format!("entries keep time, size, author and kind, got {kept:?}"),
    )?;
    check(kept.readable_from() == Some(1), "readable from the start")?;
    let third = store.read_version(room, 3).await.map_err(failed)?;
    check(
        third
            == Some(VersionData {
                base: None,
                updates: vec![
                    Bytes::from_static(b"u1"),
                    Bytes::from_static(b"u2"),
                    Bytes::from_static(b"u3"),
                ],
            }),
        &format!("version 3 is updates 1 to 3, got {third:?}"),
    )?;
    let sixth = store.read_version(room, 6).await.map_err(failed)?;
    check(
        sixth
            == Some(VersionData {
                base: Some(Bytes::from_static(b"s5")),
                updates: vec![Bytes::from_static(b"u6")],
            }),
        &format!("version 6 is the kept snapshot plus update 6, got {sixth:?}"),
    )?;

    // Retention: what is older than the newest snapshot before the cut-off goes.
    store
        .write(&[compact_at(room, 8, b"s8", Some(6000))])
        .await
        .map_err(failed)?;
    // Pruning may happen after the write returns (MongoDB prunes in the
    // background, off the write path).
    let mut pruned = store.history(room).await.map_err(failed)?;
    for _ in 0..50 {
        if seqs(&pruned) == [5, 6, 7, 8] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        pruned = store.history(room).await.map_err(failed)?;
    }
    check(
        seqs(&pruned) == [5, 6, 7, 8],
        &format!("entries before the retained base go, got {pruned:?}"),
    )?;
    check(
        store.read_version(room, 3).await.map_err(failed)?.is_none(),
        "a version older than the history is not there",
    )?;
    let seventh = store.read_version(room, 7).await.map_err(failed)?;
    check(
        seventh
            == Some(VersionData {
                base: Some(Bytes::from_static(b"s5")),
                updates: vec![Bytes::from_static(b"u6"), Bytes::from_static(b"u77")],
            }),
        &format!("version 7 after pruning, got {seventh:?}"),
    )?;

    // History turned off: a compaction drops what it covers, kept snapshots too.
    store
        .write(&[append(room, 9, b"u9"), compact_at(room, 10, b"s10", None)])
        .await
        .map_err(failed)?;
    let mut off = store.history(room).await.map_err(failed)?;
    for _ in 0..50 {
        if seqs(&off) == [10] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        off = store.history(room).await.map_err(failed)?;
    }
    check(
        seqs(&off) == [10],
        &format!("without history only the snapshot is left, got {off:?}"),
    )?;
    Ok(())
}

const NAMES: [&[u8]; 8] = [b"u1", b"u2", b"u3", b"u4", b"u5", b"u6", b"u7", b"u8"];

fn appends(room: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<WriteOp> {
    seqs.map(|seq| append(room, seq, NAMES[seq as usize - 1]))
        .collect()
}

/// Entries written in one batch and written again grouped otherwise (a retry that
/// gathered more, two writers copying overlapping stretches of one log) are each
/// stored and read once; a compaction with history kept that falls inside a batch
/// reads as it would between batches.
async fn regrouped(store: &dyn Store, room: &str) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    for batch in [1..=5, 1..=7, 3..=8, 1..=2, 6..=6, 7..=8] {
        store.write(&appends(room, batch)).await.map_err(failed)?;
    }
    let every: Vec<Bytes> = NAMES.iter().map(|name| Bytes::from_static(name)).collect();
    let loaded = store.load_durable(room).await.map_err(failed)?;
    check(
        loaded
            == Some(DurableState {
                snapshot: None,
                updates: every.clone(),
                last_seq: 8,
            }),
        &format!("regrouped batches load each entry once, got {loaded:?}"),
    )?;
    let listed = store.history(room).await.map_err(failed)?;
    let seqs: Vec<u64> = listed.entries.iter().map(|entry| entry.seq).collect();
    check(
        seqs == [1, 2, 3, 4, 5, 6, 7, 8],
        &format!("regrouped batches list each entry once, got {seqs:?}"),
    )?;
    let page = store.read_entries(room, 2, 3).await.map_err(failed)?;
    let paged: Vec<(u64, Bytes)> = page
        .iter()
        .map(|entry| (entry.seq, entry.data.clone()))
        .collect();
    check(
        paged
            == [
                (3, every[2].clone()),
                (4, every[3].clone()),
                (5, every[4].clone()),
            ],
        &format!("a page from inside a batch starts after its cursor, got {paged:?}"),
    )?;

    store
        .write(&[compact_at(room, 4, b"s4", Some(0))])
        .await
        .map_err(failed)?;
    loads_as(
        store,
        room,
        (b"s4", &every[4..], 8),
        "a compaction inside a batch keeps what follows it",
    )
    .await?;
    let listed = store.history(room).await.map_err(failed)?;
    let kinds: Vec<(u64, bool)> = listed
        .entries
        .iter()
        .map(|entry| (entry.seq, entry.snapshot))
        .collect();
    let expected = [
        (1, false),
        (2, false),
        (3, false),
        (4, true),
        (5, false),
        (6, false),
        (7, false),
        (8, false),
    ];
    check(
        kinds == expected,
        &format!("the kept snapshot stands for its update, got {kinds:?}"),
    )?;
    // A page can end inside a batch, before the snapshot standing for one of its
    // updates was read; it must still be the snapshot that is paged out.
    let paged: Vec<(u64, bool)> = read_all_entries(store, room, 2)
        .await?
        .iter()
        .map(|entry| (entry.seq, entry.snapshot))
        .collect();
    check(
        paged == expected,
        &format!("paged two at a time, the kept snapshot stands for its update, got {paged:?}"),
    )?;
    let sixth = store.read_version(room, 6).await.map_err(failed)?;
    check(
        sixth
            == Some(VersionData {
                base: Some(Bytes::from_static(b"s4")),
                updates: every[4..6].to_vec(),
            }),
        &format!("version 6 is the snapshot and updates 5 and 6, got {sixth:?}"),
    )?;
    let third = store.read_version(room, 3).await.map_err(failed)?;
    check(
        third
            == Some(VersionData {
                base: None,
                updates: every[..3].to_vec(),
            }),
        &format!("version 3 is updates 1 to 3, got {third:?}"),
    )
}

/// Every entry of `room`, read `limit` at a time as `coedit dump` does.
async fn read_all_entries(
    store: &dyn Store,
    room: &str,
    limit: usize,
) -> Result<Vec<super::StoredEntry>, String> {
    let mut after = 0;
    let mut rows = Vec::new();
    loop {
        let read = store
            .read_entries(room, after, limit)
            .await
            .map_err(|error| error.to_string())?;
        check(read.len() <= limit, "a page holds at most `limit` rows")?;
        let Some(last) = read.last() else {
            return Ok(rows);
        };
        after = last.seq;
        rows.extend(read);
    }
}

/// Checks that `room` loads as `(snapshot, updates, last_seq)`.
async fn loads_as(
    store: &dyn Store,
    room: &str,
    (snapshot, updates, last_seq): (&'static [u8], &[Bytes], u64),
    what: &str,
) -> Result<(), String> {
    let loaded = store
        .load_durable(room)
        .await
        .map_err(|error| error.to_string())?;
    check(
        loaded
            == Some(DurableState {
                snapshot: Some(Bytes::from_static(snapshot)),
                updates: updates.to_vec(),
                last_seq,
            }),
        &format!("{what}, got {loaded:?}"),
    )
}

/// A compaction with history kept at the number of the first update a batch
/// wrote (a cluster's persister compacts at an update's own number): the
/// snapshot stands for that update, and the batch's others still load.
async fn compacted_where_a_batch_starts(store: &dyn Store, room: &str) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    let every: Vec<Bytes> = NAMES.iter().map(|name| Bytes::from_static(name)).collect();
    store.write(&appends(room, 1..=4)).await.map_err(failed)?;
    store
        .write(&[compact_at(room, 1, b"s1", Some(0))])
        .await
        .map_err(failed)?;
    loads_as(
        store,
        room,
        (b"s1", &every[1..4], 4),
        "a compaction where a batch starts keeps the batch's others",
    )
    .await?;
    let third = store.read_version(room, 3).await.map_err(failed)?;
    check(
        third
            == Some(VersionData {
                base: Some(Bytes::from_static(b"s1")),
                updates: every[1..3].to_vec(),
            }),
        &format!("version 3 is the snapshot and updates 2 and 3, got {third:?}"),
    )
}

/// A compaction older than the stored snapshot (a cluster node that took a room's
/// lease over while its document lagged, or one paused past its lease) changes
/// nothing: the newer snapshot stayed, and the entries it dropped are gone, so
/// the older one would lose them.
async fn older_compaction_changes_nothing(
    store: &dyn Store,
    room: &str,
    since: Option<i64>,
) -> Result<(), String> {
    let failed = |error: super::StoreError| error.to_string();
    let every: Vec<Bytes> = NAMES.iter().map(|name| Bytes::from_static(name)).collect();
    store.write(&appends(room, 1..=6)).await.map_err(failed)?;
    // The same number again is a retry: harmless.
    let compactions: [(u64, &'static [u8], &str); 3] = [
        (4, b"s4", "a compaction keeps what follows it"),
        (
            2,
            b"s2",
            "an older compaction must leave the newer snapshot",
        ),
        (4, b"s4", "a compaction written twice must load once"),
    ];
    for (seq, data, what) in compactions {
        store
            .write(&[compact_at(room, seq, data, since)])
            .await
            .map_err(failed)?;
        loads_as(store, room, (b"s4", &every[4..6], 6), what).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::memory::MemoryStore;
    use crate::server::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn memory_store_conforms() {
        run_all(&MemoryStore::new(), "memory").await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_store_conforms() {
        let dir = std::env::temp_dir().join(format!("coedit-conformance-{}", uuid::Uuid::new_v4()));
        let store = SqliteStore::open(&dir).unwrap();
        run_all(&store, "sqlite").await.unwrap();
        // And it is all still there after reopening the file.
        drop(store);
        let reopened = SqliteStore::open(&dir).unwrap();
        let loaded = reopened.load_durable("sqlite-log").await.unwrap().unwrap();
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"all"[..]));
        std::fs::remove_dir_all(&dir).ok();
    }
}
