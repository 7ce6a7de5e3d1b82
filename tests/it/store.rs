//! Every store behaves alike: the shared conformance suite against MongoDB, and the
//! original backend's `room_documents` checkpoints read and written in its shape.

use coedit::api::ServerMessage;
use coedit::server::store::mongo::{MongoStore, CHECKPOINTS, UPDATES};
use coedit::server::store::{
    conformance, dump, DurableState, LoggedUpdate, RoomParts, Snapshot, Store, StoreError,
    StoredSnapshot, VersionData, WriteOp,
};
use coedit::server::{Config, StoreConfig};
use mongodb::bson::{doc, Bson};
use std::sync::Arc;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

use super::common::*;
use super::mongo_env::*;

/// A Yjs full state whose `content` text is `text`, hex-encoded as the original
/// page sends it.
fn hex_state_of(text: &str) -> String {
    let doc = Doc::new();
    let content = doc.get_or_insert_text("content");
    content.insert(&mut doc.transact_mut(), 0, text);
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    hex::encode(state)
}

async fn mongo_store(url: &str, database: &str) -> Arc<MongoStore> {
    let store = MongoStore::connect(url, database).await.unwrap();
    store.prepare().await.unwrap();
    Arc::new(store)
}

fn mongo_config(url: &str, database: &str) -> Config {
    let mut config = Config::for_tests();
    config.store = StoreConfig::Mongo {
        url: url.to_owned(),
        database: database.to_owned(),
    };
    config
}

#[tokio::test]
async fn the_mongodb_store_passes_the_conformance_suite() {
    let Some(url) = mongo_url("the_mongodb_store_passes_the_conformance_suite") else {
        return;
    };
    let database = unique_database("conformance");
    let store = mongo_store(&url, &database).await;
    conformance::run_all(store.as_ref(), "mongo").await.unwrap();

    // A second client on the same database sees the same state: it is in MongoDB,
    // not in the first client's memory.
    let reopened = mongo_store(&url, &database).await;
    let loaded = reopened.load_durable("mongo-log").await.unwrap().unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"all"[..]));
    assert_eq!(loaded.last_seq, 4);
    // The log entries compactions covered are deleted (in the background, off the
    // journal's path), leaving only the snapshot.
    let db = super::mongo_env::database(&url, &database).await;
    let updates = db.collection::<mongodb::bson::Document>(UPDATES);
    assert!(
        eventually(async || updates
            .count_documents(doc! {"room_id": "mongo-log"})
            .await
            .unwrap()
            == 0)
        .await,
        "covered log entries are never deleted"
    );
    reopened.close().await.unwrap();
    store.close().await.unwrap();
    database_handle_drop(&url, &database).await;
}

/// A room's consecutive entries written together are one document, field by field
/// as README's "MongoDB collections" shows; a run refused because a stored one
/// starts at its first number writes only what lies past it; and the room reads
/// back whole, from runs and entries alike.
#[tokio::test]
async fn the_log_goes_into_mongodb_as_runs_and_a_refused_run_writes_its_rest() {
    let Some(url) =
        mongo_url("the_log_goes_into_mongodb_as_runs_and_a_refused_run_writes_its_rest")
    else {
        return;
    };
    let database = unique_database("runs");
    let store = mongo_store(&url, &database).await;
    let append = |seq: u64| {
        WriteOp::Append(LoggedUpdate {
            room_id: "runs".into(),
            seq,
            data: bytes::Bytes::from(format!("u{seq}")),
            at_ms: 1_764_300_000_000 + seq as i64,
            author: Some("ann".into()),
        })
    };
    store
        .write(&(1..=5).map(append).collect::<Vec<_>>())
        .await
        .unwrap();
    // A retry that gathered more, and one entry alone after it.
    store
        .write(&(1..=7).map(append).collect::<Vec<_>>())
        .await
        .unwrap();
    store.write(&[append(8)]).await.unwrap();

    let db = super::mongo_env::database(&url, &database).await;
    let updates = db.collection::<mongodb::bson::Document>(UPDATES);
    let mut cursor = updates
        .find(doc! {"room_id": "runs"})
        .sort(doc! {"seq": 1})
        .await
        .unwrap();
    let mut documents = Vec::new();
    while cursor.advance().await.unwrap() {
        documents.push(cursor.deserialize_current().unwrap());
    }
    assert_eq!(documents.len(), 3, "{documents:?}");
    let run = &documents[0];
    assert_eq!(run.get_i64("seq"), Ok(1));
    assert_eq!(run.get_i64("last"), Ok(5));
    assert_eq!(run.get_i64("size"), Ok(10));
    let entries = run.get_array("entries").unwrap();
    assert_eq!(entries.len(), 5);
    let first = entries[0].as_document().unwrap();
    assert_eq!(first.get_i64("seq"), Ok(1));
    assert_eq!(first.get_binary_generic("data").unwrap(), b"u1");
    assert_eq!(first.get_i64("at"), Ok(1_764_300_000_001));
    assert_eq!(first.get_i64("size"), Ok(2));
    assert_eq!(first.get_str("author"), Ok("ann"));
    let rest = &documents[1];
    assert_eq!((rest.get_i64("seq"), rest.get_i64("last")), (Ok(6), Ok(7)));
    let alone = &documents[2];
    assert_eq!(alone.get_i64("seq"), Ok(8));
    assert_eq!(alone.get_binary_generic("data").unwrap(), b"u8");
    assert!(!alone.contains_key("entries") && !alone.contains_key("last"));

    let loaded = store.load_durable("runs").await.unwrap().unwrap();
    let texts: Vec<&[u8]> = loaded.updates.iter().map(|update| &update[..]).collect();
    assert_eq!(
        texts,
        [&b"u1"[..], b"u2", b"u3", b"u4", b"u5", b"u6", b"u7", b"u8"]
    );
    assert_eq!(loaded.last_seq, 8);
    assert_eq!(store.logged_through("runs").await.unwrap(), 8);
    store.close().await.unwrap();
    database_handle_drop(&url, &database).await;
}

async fn database_handle_drop(url: &str, name: &str) {
    database(url, name).await.drop().await.unwrap();
}

#[tokio::test]
async fn a_room_the_original_backend_persisted_opens_with_its_text() {
    let Some(url) = mongo_url("a_room_the_original_backend_persisted_opens_with_its_text") else {
        return;
    };
    let name = unique_database("original");
    let db = database(&url, &name).await;
    // Exactly what the original's persist endpoint writes (update_one with $set and
    // upsert): hex data, an ISO-8601 string, and the hex length as int32.
    let data = hex_state_of("written by the original backend");
    db.collection::<mongodb::bson::Document>(CHECKPOINTS)
        .update_one(
            doc! {"room_id": "legacy"},
            doc! {"$set": {
                "room_id": "legacy",
                "data": &data,
                "updated_at": "2024-05-01T09:30:00.123456+00:00",
                "size": data.len() as i32,
            }},
        )
        .upsert(true)
        .await
        .unwrap();
    // One written with other field types (a date, an int64 size) must load too.
    let other = hex_state_of("typed differently");
    db.collection::<mongodb::bson::Document>(CHECKPOINTS)
        .insert_one(doc! {
            "room_id": "legacy-typed",
            "data": &other,
            "updated_at": mongodb::bson::DateTime::now(),
            "size": Bson::Int64(other.len() as i64),
        })
        .await
        .unwrap();

    // An operator's own (non-unique) index on room_id must not stop coedit.
    db.collection::<mongodb::bson::Document>(CHECKPOINTS)
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"room_id": 1})
                .build(),
        )
        .await
        .unwrap();

    let server =
        TestServer::start_with(mongo_config(&url, &name), mongo_store(&url, &name).await).await;
    for (room, text) in [
        ("legacy", "written by the original backend"),
        ("legacy-typed", "typed differently"),
    ] {
        let (_client, greeting) = server.connect(room, "reader").await;
        let Some(ServerMessage::Sync { data }) = greeting.first() else {
            panic!("room {room} must greet with its document: {greeting:?}");
        };
        assert_eq!(text_of_hex_state(data), text, "room {room}");
    }
    server.stop().await;
    db.drop().await.unwrap();
}

/// The original backend stored whatever the page sent. An empty checkpoint is an
/// empty room; one that is not hex keeps its room closed, with a reason that says
/// so, and does not report the store as failing (it answered).
#[tokio::test]
async fn odd_original_checkpoints_open_empty_or_are_refused_alone() {
    let Some(url) = mongo_url("odd_original_checkpoints_open_empty_or_are_refused_alone") else {
        return;
    };
    let name = unique_database("odd-checkpoints");
    let db = database(&url, &name).await;
    let checkpoints = db.collection::<mongodb::bson::Document>(CHECKPOINTS);
    for (room, data) in [("blank", ""), ("garbled", "zz not hex")] {
        checkpoints
            .insert_one(doc! {"room_id": room, "data": data, "size": data.len() as i32})
            .await
            .unwrap();
    }
    let server =
        TestServer::start_with(mongo_config(&url, &name), mongo_store(&url, &name).await).await;
    let mut blank = server.join("blank", "bea", "Bea").await;
    blank.type_text(0, "fresh").await;

    let mut garbled = Client::connect(&server.ws_url("garbled", "gus"), "gus").await;
    let frame = garbled.next_frame(EXPECT).await;
    let Some(tokio_tungstenite::tungstenite::Message::Close(Some(close))) = &frame else {
        panic!("expected a close, got {frame:?}");
    };
    assert_eq!(u16::from(close.code), 1011);
    assert!(close.reason.contains("unreadable"), "{}", close.reason);
    let (_, health) = server.get("/health").await;
    assert_eq!(health["status"], "healthy", "{health}");
    // What cannot be read can still be deleted, and the room starts afresh.
    let (status, deleted) = server.send(reqwest::Method::DELETE, "/rooms/garbled").await;
    assert_eq!(status, 200, "{deleted}");
    let (_, greeting) = server.connect("garbled", "gus").await;
    assert!(
        matches!(greeting.as_slice(), [ServerMessage::Users { .. }]),
        "{greeting:?}"
    );
    server.stop().await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn persist_writes_the_original_backends_document_shape() {
    let Some(url) = mongo_url("persist_writes_the_original_backends_document_shape") else {
        return;
    };
    let name = unique_database("persist");
    let db = database(&url, &name).await;
    let server =
        TestServer::start_with(mongo_config(&url, &name), mongo_store(&url, &name).await).await;
    let mut alice = server.join("shape", "alice", "Alice").await;
    alice.type_text(0, "checkpointed").await;
    assert!(
        eventually(async || {
            let (_, room) = server.get("/rooms/shape").await;
            room["doc_size"].as_u64().unwrap_or(0) > 0
        })
        .await
    );
    let (status, body) = server
        .send(reqwest::Method::POST, "/rooms/shape/persist")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");

    let stored = find_room(&db, CHECKPOINTS, "shape")
        .await
        .expect("checkpoint written");
    let data = stored.get_str("data").expect("data is a hex string");
    assert_eq!(text_of_hex_state(data), "checkpointed");
    match stored.get("size") {
        Some(Bson::Int32(size)) => assert_eq!(*size as usize, data.len()),
        other => panic!("size must be an int32 equal to the hex length, got {other:?}"),
    }
    assert_eq!(body["size"].as_u64(), Some(data.len() as u64), "{body}");
    let updated_at = stored
        .get_str("updated_at")
        .expect("updated_at is a string");
    chrono::DateTime::parse_from_rfc3339(updated_at)
        .unwrap_or_else(|error| panic!("updated_at {updated_at:?} is not ISO-8601: {error}"));

    // And `load` reads it back into the live room.
    alice.type_text(12, " and more").await;
    let persisted_size = data.len() as u64 / 2;
    assert!(
        eventually(async || {
            let (_, room) = server.get("/rooms/shape").await;
            room["doc_size"].as_u64().unwrap_or(0) > persisted_size
        })
        .await
    );
    let (status, body) = server.send(reqwest::Method::GET, "/rooms/shape/load").await;
    assert_eq!(status, 200, "{body}");
    let (_bob, greeting) = server.connect("shape", "bob").await;
    let Some(ServerMessage::Sync { data }) = greeting.first() else {
        panic!("expected sync first: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "checkpointed");
    alice.close().await;
    server.stop().await;
    db.drop().await.unwrap();
}

/// A run's size counts its entries' authors: a user with a long name typing fast
/// must not make one batch's run larger than MongoDB stores in a document, which
/// would leave the room's updates unsaved.
#[tokio::test]
async fn a_run_of_small_updates_by_a_long_named_author_is_stored() {
    let Some(url) = mongo_url("a_run_of_small_updates_by_a_long_named_author_is_stored") else {
        return;
    };
    let database = unique_database("long_author");
    let store = mongo_store(&url, &database).await;
    // About the longest name a joined user can have (--max-awareness-bytes).
    let name = "n".repeat(32_000);
    let batch: Vec<WriteOp> = (1..=600u64)
        .map(|seq| {
            WriteOp::Append(LoggedUpdate {
                room_id: "named".into(),
                seq,
                data: bytes::Bytes::from_static(b"u"),
                at_ms: seq as i64,
                author: Some(name.clone()),
            })
        })
        .collect();
    store.write(&batch).await.unwrap();
    let loaded = store.load_durable("named").await.unwrap().unwrap();
    assert_eq!((loaded.updates.len(), loaded.last_seq), (600, 600));
    store.close().await.unwrap();
    database_handle_drop(&url, &database).await;
}

/// A cluster deletes a room with a fence at the highest number it used: a node's
/// persister that was copying the room's log and writes it afterwards (entries,
/// then a compaction) is never read, also once the room exists again and has
/// compacted; and the fence alone is no room.
#[tokio::test]
async fn writes_that_land_after_a_fenced_deletion_are_never_read() {
    let Some(url) = mongo_url("writes_that_land_after_a_fenced_deletion_are_never_read") else {
        return;
    };
    let database = unique_database("fence");
    let store = mongo_store(&url, &database).await;
    let room = "fenced";
    let append = |seq: u64, data: &'static [u8]| {
        WriteOp::Append(LoggedUpdate {
            room_id: room.into(),
            seq,
            data: bytes::Bytes::from_static(data),
            at_ms: seq as i64 * 1000,
            author: Some("ada".into()),
        })
    };
    let snapshot = |seq: u64, data: &'static [u8], since: Option<i64>| Snapshot {
        room_id: room.into(),
        through_seq: seq,
        data: bytes::Bytes::from_static(data),
        at_ms: seq as i64 * 1000,
        keep_history_since_ms: since,
        deletions: Some(1),
    };
    let compact = |seq, data, since| WriteOp::Compact(snapshot(seq, data, since));
    store
        .write(&[append(1, b"one"), append(2, b"two")])
        .await
        .unwrap();
    store.save_checkpoint(room, b"saved").await.unwrap();
    // Numbers 3 and 4 were still only in the room's stream.
    store.delete_room_fenced(room, 4, 1).await.unwrap();
    // A retried delete that knows less keeps the fence where it is.
    store.delete_room_fenced(room, 0, 1).await.unwrap();
    assert_eq!(store.load_durable(room).await.unwrap(), None);
    assert_eq!(store.logged_through(room).await.unwrap(), 4);
    assert_eq!(store.fenced_through(room).await.unwrap(), 4);
    assert_eq!(store.load_checkpoint(room).await.unwrap(), None);

    // The late copy: entries, then a compaction at the fence's own number.
    store
        .write(&[append(3, b"three"), append(4, b"four")])
        .await
        .unwrap();
    store.write(&[compact(4, b"old", None)]).await.unwrap();
    store.write(&[compact(2, b"older", None)]).await.unwrap();
    assert_eq!(store.load_durable(room).await.unwrap(), None);
    assert!(store.history(room).await.unwrap().entries.is_empty());
    assert_eq!(store.read_entries(room, 0, 100).await.unwrap(), Vec::new());
    assert_eq!(store.read_version(room, 3).await.unwrap(), None);
    assert_eq!(store.read_room_parts(room).await.unwrap().snapshot, None);
    assert!(!store.list_rooms().await.unwrap().contains(&room.to_owned()));

    // The room again, numbered after the fence.
    store
        .write(&[append(5, b"five"), append(6, b"six")])
        .await
        .unwrap();
    let again = || {
        vec![
            bytes::Bytes::from_static(b"five"),
            bytes::Bytes::from_static(b"six"),
        ]
    };
    let the_new_room = || {
        Some(DurableState {
            snapshot: None,
            updates: again(),
            last_seq: 6,
        })
    };
    assert_eq!(store.load_durable(room).await.unwrap(), the_new_room());
    assert!(store.list_rooms().await.unwrap().contains(&room.to_owned()));
    // A compaction past the fence from a node that opened the room before the
    // deletion (it counted none) holds the deleted room: refused.
    store
        .write(&[WriteOp::Compact(Snapshot {
            deletions: Some(0),
            ..snapshot(6, b"stale", None)
        })])
        .await
        .unwrap();
    assert_eq!(store.load_durable(room).await.unwrap(), the_new_room());
    let fifth = Some(VersionData {
        base: None,
        updates: again()[..1].to_vec(),
    });
    // Its history starts with the empty room at the fence, and stays so once it
    // compacts with history kept.
    for (compaction, sixth) in [(None, false), (Some(compact(6, b"s6", Some(0))), true)] {
        if let Some(compaction) = compaction {
            store.write(&[compaction]).await.unwrap();
        }
        let history = store.history(room).await.unwrap();
        let listed: Vec<(u64, bool)> = history
            .entries
            .iter()
            .map(|entry| (entry.seq, entry.snapshot))
            .collect();
        assert_eq!(listed, [(4, true), (5, false), (6, sixth)]);
        assert_eq!(history.readable_from(), Some(4));
        assert_eq!(store.read_version(room, 5).await.unwrap(), fifth);
        assert_eq!(store.read_version(room, 3).await.unwrap(), None);
        let copied: Vec<u64> = store
            .read_entries(room, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|entry| entry.seq)
            .collect();
        assert!(copied.iter().all(|&seq| seq > 4), "{copied:?}");
    }
    assert_eq!(
        store.load_durable(room).await.unwrap(),
        Some(DurableState {
            snapshot: Some(bytes::Bytes::from_static(b"s6")),
            updates: Vec::new(),
            last_seq: 6,
        })
    );

    // A room deleted before it used any number leaves nothing behind.
    store.save_checkpoint("unused", b"saved").await.unwrap();
    store.delete_room_fenced("unused", 0, 1).await.unwrap();
    assert_eq!(store.load_durable("unused").await.unwrap(), None);
    assert!(!store
        .list_rooms()
        .await
        .unwrap()
        .contains(&"unused".to_owned()));

    // A copy restored over a fence is the room, whole.
    store.delete_room_fenced(room, 10, 1).await.unwrap();
    store
        .write_room_parts(
            room,
            &RoomParts {
                checkpoint: None,
                snapshot: Some(StoredSnapshot {
                    through_seq: 3,
                    at_ms: 3000,
                    data: bytes::Bytes::from_static(b"s3"),
                }),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.load_durable(room).await.unwrap(),
        Some(DurableState {
            snapshot: Some(bytes::Bytes::from_static(b"s3")),
            updates: Vec::new(),
            last_seq: 3,
        })
    );
    store.close().await.unwrap();
    database_handle_drop(&url, &database).await;
}

/// coedit's own collections rely on their unique indexes (each update and snapshot
/// stored once): an operator's conflicting index there stops the store with the
/// collection named, instead of running without it.
#[tokio::test]
async fn a_conflicting_index_on_the_update_log_is_refused_by_name() {
    let Some(url) = mongo_url("a_conflicting_index_on_the_update_log_is_refused_by_name") else {
        return;
    };
    let name = unique_database("index");
    let db = database(&url, &name).await;
    db.collection::<mongodb::bson::Document>(UPDATES)
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"room_id": 1, "seq": 1})
                .build(),
        )
        .await
        .unwrap();
    let store = MongoStore::connect(&url, &name).await.unwrap();
    let refused = store
        .prepare()
        .await
        .expect_err("a store without its index");
    let message = refused.to_string();
    assert!(
        message.contains("room_updates") && message.contains("unique index"),
        "{message}"
    );
    db.drop().await.unwrap();
}

/// A live lease whose holder's clock is behind this server's (its expiry looks
/// past here) is not taken: the holder renews it, and that is what counts. A
/// lease expired for minutes is taken at once.
#[tokio::test]
async fn a_renewed_lease_is_not_taken_whatever_its_times_say() {
    use coedit::server::store::lease::{LeaseError, WriterLease, LEASES, LEASE_TTL};
    use mongodb::bson::{DateTime, Document};
    let Some(url) = mongo_url("a_renewed_lease_is_not_taken_whatever_its_times_say") else {
        return;
    };
    let name = unique_database("lease-skew");
    let db = mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&name);
    let leases = db.collection::<Document>(LEASES);
    let held = |renewed_ago: i64, expired_ago: i64| {
        let now = DateTime::now().timestamp_millis();
        doc! {
            "_id": "writer",
            "node_id": "behind:1",
            "pid": 1_i64,
            "renewed_at": DateTime::from_millis(now - renewed_ago),
            "expires_at": DateTime::from_millis(now - expired_ago),
        }
    };
    // The holder's clock is 12 s behind: its lease always looks expired here.
    leases.insert_one(held(12_000, 2_000)).await.unwrap();
    let renewer = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                leases
                    .replace_one(doc! {"_id": "writer"}, held(12_000, 2_000))
                    .await
                    .unwrap();
            }
        })
    };
    let taken = WriterLease::acquire(&db, "ahead:2", false).await;
    renewer.abort();
    assert!(
        matches!(taken, Err(LeaseError::InUse(_))),
        "a renewed lease was taken"
    );

    leases
        .replace_one(doc! {"_id": "writer"}, held(600_000, 590_000))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let lease = WriterLease::acquire(&db, "ahead:2", false).await.unwrap();
    // Watching a holder takes at least one TTL; a stale lease is taken in a few
    // round trips. Half a TTL tells the two apart on a slow test server too.
    let took = started.elapsed();
    assert!(
        took < LEASE_TTL / 2,
        "a stale lease was watched for {took:?}"
    );
    lease.release().await;
    db.drop().await.ok();
}

/// A store barred from writing (waiting for the writer lease, or refused it) does
/// not answer the health probe as healthy just because MongoDB answers: a server
/// started degraded next to another holding the lease said "healthy" and stored
/// nothing.
#[tokio::test]
async fn a_store_barred_from_writing_is_not_healthy() {
    let Some(url) = mongo_url("a_store_barred_from_writing_is_not_healthy") else {
        return;
    };
    let name = unique_database("barred");
    let store = mongo_store(&url, &name).await;
    store.ping().await.unwrap();
    store.hold_writes("another coedit server holds the writer lease");
    let refused = store.ping().await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(reason)) if reason.contains("writer lease")),
        "{refused:?}"
    );
    // Reading a room does not make it healthy either.
    let server = TestServer::start_with(mongo_config(&url, &name), store.clone()).await;
    let (_reader, _) = server.connect("anything", "reader").await;
    let (_, health) = server.get("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["store"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("writer lease")),
        "{health}"
    );
    // Let go, it is healthy again.
    store.release_writes();
    store.ping().await.unwrap();
    drop(server);
    database(&url, &name).await.drop().await.ok();
}

/// Two live servers under one node id (a fixed `--node-id` in a deployment's
/// settings) do not both take the lease: the second sees the first renew it and
/// refuses. A holder under the same id that has gone silent (this server before a
/// crash) is taken after two renewals' time, not a whole TTL.
#[tokio::test]
async fn one_node_id_on_two_live_servers_is_refused_and_a_silent_one_is_taken_soon() {
    use coedit::server::store::lease::{LeaseError, WriterLease, LEASE_TTL};
    let Some(url) =
        mongo_url("one_node_id_on_two_live_servers_is_refused_and_a_silent_one_is_taken_soon")
    else {
        return;
    };
    let name = unique_database("lease-same-name");
    let db = mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&name);
    let first = WriterLease::acquire(&db, "app:8001", false).await.unwrap();
    let second = WriterLease::acquire(&db, "app:8001", false).await;
    assert!(
        matches!(second, Err(LeaseError::InUse(_))),
        "two live servers under one node id both took the lease"
    );
    // The first stops renewing without giving the lease up, as a crash would (a
    // renewal already on its way lands first).
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let restarted = WriterLease::acquire(&db, "app:8001", false).await.unwrap();
    let took = started.elapsed();
    assert!(
        took < LEASE_TTL,
        "a silent holder under the same id was watched for {took:?}"
    );
    restarted.release().await;
    db.drop().await.ok();
}

/// A persister that copied numbers taken during a deletion can compact past the
/// fence's number between the deletion reading the log and writing its fence.
/// The deletion then fences past that compaction: when it returns, the room is
/// gone, however the two interleave.
#[tokio::test]
async fn a_deletion_fences_past_a_compaction_racing_it() {
    let Some(url) = mongo_url("a_deletion_fences_past_a_compaction_racing_it") else {
        return;
    };
    let database = unique_database("fence-race");
    let store = Arc::new(mongo_store(&url, &database).await);
    for round in 0..20u64 {
        let room = format!("race-{round}");
        let appends: Vec<WriteOp> = (1..=4)
            .map(|seq| {
                WriteOp::Append(LoggedUpdate {
                    room_id: room.clone(),
                    seq,
                    data: bytes::Bytes::from_static(b"typed"),
                    at_ms: 1000,
                    author: None,
                })
            })
            .collect();
        store.write(&appends).await.unwrap();
        // A node that opened the room before its first deletion compacts at the
        // numbers the room took while the deletion ran.
        let compactions = {
            let store = Arc::clone(&store);
            let room = room.clone();
            tokio::spawn(async move {
                for through_seq in 5..=8 {
                    let snapshot = Snapshot {
                        room_id: room.clone(),
                        through_seq,
                        data: bytes::Bytes::from_static(b"compacted"),
                        at_ms: 2000,
                        keep_history_since_ms: None,
                        deletions: Some(0),
                    };
                    store.write(&[WriteOp::Compact(snapshot)]).await.unwrap();
                }
            })
        };
        store.delete_room_fenced(&room, 4, 1).await.unwrap();
        let deleted = store.load_durable(&room).await.unwrap();
        compactions.await.unwrap();
        assert_eq!(deleted, None, "round {round}: the deleted room loads");
        assert_eq!(
            store.load_durable(&room).await.unwrap(),
            None,
            "round {round}"
        );
    }
}

/// What a deleted room's fence means off the cluster's path: a single server on the
/// same database numbers a new room after it (so its edits are read); a version
/// between the fence and a compaction that dropped it is gone, not an empty room;
/// and a dump restored over a fence is the room.
#[tokio::test]
async fn a_fence_is_respected_by_single_servers_versions_and_restores() {
    let Some(url) = mongo_url("a_fence_is_respected_by_single_servers_versions_and_restores")
    else {
        return;
    };
    let name = unique_database("fenced-single");
    let store = mongo_store(&url, &name).await;
    store.delete_room_fenced("after", 50, 1).await.unwrap();
    // A checkpoint saved after the fence (by a node that had not heard of the
    // deletion) does not bring the room back.
    store.delete_room_fenced("late", 5, 1).await.unwrap();
    let stale = hex::decode(hex_state_of("deleted text")).unwrap();
    store.save_checkpoint("late", &stale).await.unwrap();
    let server = TestServer::start_with(mongo_config(&url, &name), store.clone()).await;
    let (_reader, greeting) = server.connect("late", "reader").await;
    assert!(
        !greeting
            .iter()
            .any(|message| matches!(message, ServerMessage::Sync { .. })),
        "the deleted room came back from a late checkpoint: {greeting:?}"
    );
    let mut alice = server.join("after", "alice", "Alice").await;
    alice.type_text(0, "kept").await;
    let typed = eventually(async || {
        let (_, room) = server.get("/rooms/after").await;
        room["doc_size"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert!(typed, "alice's edit never reached the room");
    server.stop().await;
    // The server closed its client: read with a new one.
    let store = mongo_store(&url, &name).await;
    let loaded = store
        .load_durable("after")
        .await
        .unwrap()
        .expect("the new room");
    assert!(loaded.last_seq > 50, "{loaded:?}");

    // Fence at 2, updates 3 to 5, a compaction at 4 that drops 3.
    let room = "versions";
    let update = |seq: u64| {
        WriteOp::Append(LoggedUpdate {
            room_id: room.into(),
            seq,
            data: bytes::Bytes::from(format!("u{seq}")),
            at_ms: seq as i64 * 1000,
            author: None,
        })
    };
    store.delete_room_fenced(room, 2, 1).await.unwrap();
    for seq in 3..=5 {
        store.write(&[update(seq)]).await.unwrap();
    }
    assert_eq!(
        store.read_version(room, 3).await.unwrap(),
        Some(VersionData {
            base: None,
            updates: vec![bytes::Bytes::from_static(b"u3")],
        })
    );
    store
        .write(&[WriteOp::Compact(Snapshot {
            room_id: room.into(),
            through_seq: 4,
            data: bytes::Bytes::from_static(b"s4"),
            at_ms: 4000,
            keep_history_since_ms: None,
            deletions: None,
        })])
        .await
        .unwrap();
    let gone = eventually(async || store.read_version(room, 3).await.unwrap().is_none()).await;
    assert!(
        gone,
        "a version the compaction dropped is read as something"
    );
    assert_eq!(store.history(room).await.unwrap().readable_from(), Some(4));

    // A dump of a room with entries only, restored where a fence stands.
    let source = coedit::server::store::memory::MemoryStore::new();
    source
        .write(&[WriteOp::Append(LoggedUpdate {
            room_id: "restored".into(),
            seq: 1,
            data: bytes::Bytes::from_static(b"one"),
            at_ms: 1000,
            author: None,
        })])
        .await
        .unwrap();
    let mut file = Vec::new();
    dump::dump(&source, &["restored".to_owned()], &mut file, &dump::Silent)
        .await
        .unwrap();
    let target = mongo_store(&url, &unique_database("fenced-restore")).await;
    target.delete_room_fenced("restored", 10, 1).await.unwrap();
    let mut input = std::io::Cursor::new(&file);
    dump::read_header(&mut input).unwrap();
    dump::restore(target.as_ref(), &mut input, false, &dump::Silent)
        .await
        .unwrap();
    assert_eq!(
        target.load_durable("restored").await.unwrap(),
        Some(DurableState {
            snapshot: None,
            updates: vec![bytes::Bytes::from_static(b"one")],
            last_seq: 1,
        })
    );
    store.close().await.unwrap();
    target.close().await.unwrap();
    database_handle_drop(&url, &name).await;
}
