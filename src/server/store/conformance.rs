//! The behaviour every `Store` must have, as one suite the tests run against each
//! backend (SQLite, memory, MongoDB), so the backends cannot drift apart.
//!
//! Each check returns an error describing the first broken expectation, so callers
//! can run it against a real external server and report what failed.

use bytes::Bytes;

use super::{DurableState, LoggedUpdate, RoomDeletion, Snapshot, Store, WriteOp};

fn append(room_id: &str, seq: u64, data: &'static [u8]) -> WriteOp {
    WriteOp::Append(LoggedUpdate {
        room_id: room_id.into(),
        seq,
        data: Bytes::from_static(data),
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
