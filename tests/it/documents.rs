//! Documents as data: deleting a room (its clients closed, nothing of it left in
//! the store, also after a restart).

use std::sync::Arc;
use std::time::Duration;

use coedit::api::ServerMessage;
use coedit::server::store::memory::MemoryStore;
use coedit::server::store::mongo::{MongoStore, CHECKPOINTS, SNAPSHOTS, UPDATES};
use coedit::server::store::sqlite::{read_journal, SqliteStore, DATABASE_FILE};
use coedit::server::store::Store;
use coedit::server::{Config, StoreConfig};
use futures_util::StreamExt;
use mongodb::bson::doc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;
use super::mongo_env::*;

/// Reads frames until the server closes the socket; returns the close code and reason.
pub(super) async fn close_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    loop {
        match tokio::time::timeout(EXPECT, socket.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Rows the room still has in the embedded store's journal and in each table of
/// its store file.
fn sqlite_rows(data_dir: &std::path::Path, room: &str) -> Vec<(&'static str, i64)> {
    let journal = read_journal(data_dir)
        .unwrap()
        .iter()
        .filter(|row| row.room_id == room)
        .count() as i64;
    let connection = rusqlite::Connection::open(data_dir.join(DATABASE_FILE)).unwrap();
    let mut rows = vec![("journal", journal)];
    rows.extend(
        ["update_log", "snapshots", "room_documents"]
            .into_iter()
            .map(|table| {
                let count = connection
                    .query_row(
                        &format!("SELECT COUNT(*) FROM {table} WHERE room_id = ?1"),
                        [room],
                        |row| row.get(0),
                    )
                    .unwrap();
                (table, count)
            }),
    );
    rows
}

fn embedded(data_dir: &std::path::Path) -> impl Fn(&mut Config) + Copy + '_ {
    move |config: &mut Config| {
        config.store = StoreConfig::Embedded {
            data_dir: data_dir.to_path_buf(),
        }
    }
}

/// Alice (JSON) and a y-websocket client edit a room that also has a checkpoint;
/// the room is deleted. Returns the server and the room's clients after the delete.
async fn delete_a_busy_room(server: &TestServer, room: &str) {
    let mut alice = server.join(room, "alice", "Alice").await;
    for (index, word) in ["private ", "customer ", "data"].iter().enumerate() {
        alice.type_text((index * 8) as u32, word).await;
    }
    let (status, persisted) = server
        .send(reqwest::Method::POST, &format!("/rooms/{room}/persist"))
        .await;
    assert_eq!((status, &persisted["success"]), (200, &true.into()));
    alice.type_text(0, "more ").await;
    let (mut yjs, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/yjs/{room}", server.addr))
            .await
            .unwrap();

    let (status, answer) = server
        .send(reqwest::Method::DELETE, &format!("/rooms/{room}"))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["room_id"], room);
    assert_eq!(answer["closed_connections"], 2);

    for (code, reason) in [
        close_frame(&mut alice.socket).await,
        close_frame(&mut yjs).await,
    ] {
        assert_eq!((code, reason.as_str()), (4404, "room deleted"));
    }
    assert_ne!(CloseCode::from(4404), CloseCode::Normal);

    // Reconnecting starts an empty room: no sync in the greeting, no checkpoint.
    let (_bob, greeting) = server.connect(room, "bob").await;
    assert!(
        matches!(greeting.as_slice(), [ServerMessage::Users { .. }]),
        "a deleted room must come back empty: {greeting:?}"
    );
    let (_, loaded) = server.get(&format!("/rooms/{room}/load")).await;
    assert_eq!(loaded["success"], false, "{loaded}");
}

#[tokio::test]
async fn a_deleted_room_closes_its_clients_and_leaves_nothing_in_the_embedded_store() {
    let data_dir = temp_dir("delete-sqlite");
    let open = || Arc::new(SqliteStore::open(&data_dir).unwrap());
    let server = TestServer::start_tweaked(embedded(&data_dir), open()).await;
    let mut neighbour = server.join("neighbour", "carol", "Carol").await;
    neighbour.type_text(0, "stays").await;
    delete_a_busy_room(&server, "doomed").await;
    assert!(
        sqlite_rows(&data_dir, "doomed")
            .iter()
            .all(|(_, count)| *count == 0),
        "rows left: {:?}",
        sqlite_rows(&data_dir, "doomed")
    );
    server.stop().await;

    // After a restart nothing of it is served; the other room is intact.
    let server = TestServer::start_tweaked(embedded(&data_dir), open()).await;
    let (_, info) = server.get("/rooms/doomed").await;
    assert_eq!(info["exists"], false, "{info}");
    let (_dave, greeting) = server.connect("doomed", "dave").await;
    assert!(matches!(greeting.as_slice(), [ServerMessage::Users { .. }]));
    let (_erin, greeting) = server.connect("neighbour", "erin").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("the other room must survive: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "stays");
    server.stop().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test]
async fn a_deleted_room_leaves_nothing_in_mongodb() {
    let Some(url) = mongo_url("a_deleted_room_leaves_nothing_in_mongodb") else {
        return;
    };
    let database = unique_database("delete");
    let store = MongoStore::connect(&url, &database).await.unwrap();
    store.prepare().await.unwrap();
    let mongo = |config: &mut Config| {
        config.store = StoreConfig::Mongo {
            url: url.clone(),
            database: database.clone(),
        };
        // Compact often, so the room has a snapshot as well as log entries.
        config.compact_every = 2;
    };
    let server = TestServer::start_tweaked(mongo, Arc::new(store)).await;
    delete_a_busy_room(&server, "doomed").await;
    let db = database_handle(&url, &database).await;
    for collection in [UPDATES, SNAPSHOTS, CHECKPOINTS] {
        let left = db
            .collection::<mongodb::bson::Document>(collection)
            .count_documents(doc! {"room_id": "doomed"})
            .await
            .unwrap();
        assert_eq!(left, 0, "{collection} still holds the deleted room");
    }
    server.stop().await;

    let store = MongoStore::connect(&url, &database).await.unwrap();
    let server = TestServer::start_tweaked(mongo, Arc::new(store)).await;
    let (_, info) = server.get("/rooms/doomed").await;
    assert_eq!(info["exists"], false, "{info}");
    server.stop().await;
    db.drop().await.unwrap();
}

async fn database_handle(url: &str, name: &str) -> mongodb::Database {
    database(url, name).await
}

#[tokio::test]
async fn edits_still_waiting_for_the_store_do_not_bring_a_deleted_room_back() {
    let store = MemoryStore::new();
    let server = TestServer::start_with(Config::for_tests(), Arc::new(store.clone())).await;
    let mut alice = server.join("queued", "alice", "Alice").await;
    alice.type_text(0, "written").await;
    let written = eventually(async || {
        store
            .load_durable("queued")
            .await
            .is_ok_and(|state| state.is_some())
    })
    .await;
    assert!(written);

    // The store goes away; these edits wait in the journal, ahead of the delete.
    store.set_failing(true);
    alice.type_text(7, " and queued").await;
    alice.type_text(0, "more ").await;
    let deleting = {
        let url = server.http("/rooms/queued");
        tokio::spawn(async move {
            reqwest::Client::new()
                .delete(url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Someone reconnects while the delete waits for the store: they must not get
    // the old document back.
    let reconnect = {
        let url = server.ws_url("queued", "bob");
        tokio::spawn(async move {
            let mut bob = Client::connect(&url, "bob").await;
            bob.recv().await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.set_failing(false);
    assert_eq!(deleting.await.unwrap(), 200);
    let greeting = reconnect.await.unwrap();
    assert!(
        matches!(greeting, ServerMessage::Users { .. }),
        "the reconnecting client got the deleted document: {greeting:?}"
    );
    assert_eq!(store.load_durable("queued").await.unwrap(), None);
    assert_eq!(store.load_checkpoint("queued").await.unwrap(), None);
}

#[tokio::test]
async fn deleting_a_room_nobody_knows_is_a_404_and_needs_the_admin_token() {
    let server = TestServer::start_tweaked(
        |config| config.admin_token = Some("sesame".into()),
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (status, _) = server
        .send(reqwest::Method::DELETE, "/rooms/anything")
        .await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .delete(server.http("/rooms/never-made"))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{body}"
    );
}

/// A Yjs update that sets `key` in the root map `meta`, as an application's
/// non-text state would.
fn map_update(key: &str, value: &str) -> Vec<u8> {
    use yrs::{Map, ReadTxn, StateVector, Transact};
    let doc = yrs::Doc::new();
    let meta = doc.get_or_insert_map("meta");
    meta.insert(&mut doc.transact_mut(), key, value);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

async fn post_body(server: &TestServer, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(server.http(path))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn document(server: &TestServer, room: &str, format: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::get(server.http(&format!("/rooms/{room}/document?format={format}")))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn an_exported_document_imports_into_another_room_identically() {
    let server = TestServer::start().await;
    let mut alice = server.join("source", "alice", "Alice").await;
    alice.type_text(0, "exported words").await;
    let (status, _) = post_body(
        &server,
        "/rooms/source/import",
        map_update("title", "Notes"),
    )
    .await;
    assert_eq!(status, 200);

    let (status, kind, text) = document(&server, "source", "text").await;
    assert_eq!((status, kind.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(String::from_utf8(text).unwrap(), "exported words");
    let (_, kind, json) = document(&server, "source", "json").await;
    assert_eq!(kind, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"content": "exported words", "meta": {"title": "Notes"}})
    );
    let (_, kind, yjs) = document(&server, "source", "yjs").await;
    assert_eq!(kind, "application/octet-stream");

    // Someone is already in the target room: the import reaches them as an update,
    // also one whose client chose the id the server's own changes are sent under.
    let mut bob = server.join("copy", "bob", "Bob").await;
    let mut namesake = server.join("copy", "server", "Namesake").await;
    let _ = bob.recv().await; // the namesake joined
    let (status, imported) = post_body(&server, "/rooms/copy/import", yjs.clone()).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["changed"], true);
    let update = bob.recv().await;
    bob.apply_if_document(&update);
    assert_eq!(bob.content(), "exported words");
    let update = namesake.recv().await;
    namesake.apply_if_document(&update);
    assert_eq!(namesake.content(), "exported words");
    let (_, _, copy_json) = document(&server, "copy", "json").await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&copy_json).unwrap(),
        json
    );
    let (_, _, copy_yjs) = document(&server, "copy", "yjs").await;
    assert_eq!(
        copy_yjs, yjs,
        "the copy is the same document, byte for byte"
    );

    // Importing it again changes nothing; plain text is appended to `content`.
    let (_, again) = post_body(&server, "/rooms/copy/import", yjs).await;
    assert_eq!(again["changed"], false);
    let (status, _) = post_body(
        &server,
        "/rooms/copy/import?format=text",
        " plus a note".as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, text) = document(&server, "copy", "text").await;
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "exported words plus a note"
    );
    let update = bob.recv().await;
    bob.apply_if_document(&update);
    assert_eq!(bob.content(), "exported words plus a note");
}

#[tokio::test]
async fn imports_are_checked_like_client_updates() {
    let server = TestServer::start_tweaked(
        |config| config.max_message_bytes = 4096,
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (status, _) = post_body(&server, "/rooms/r/import", vec![0xff; 100]).await;
    assert_eq!(status, 400, "garbage is not a Yjs update");
    let (status, _) = post_body(&server, "/rooms/r/import?format=text", vec![b'a'; 8192]).await;
    assert_eq!(status, 413, "the body limit is --max-message-bytes");
    let (status, _) = post_body(&server, "/rooms/r/import?format=pdf", vec![]).await;
    assert_eq!(status, 400);
    let (status, _, _) = document(&server, "never-made", "text").await;
    assert_eq!(status, 404);
}

/// An import answers once the store has it, so a success survives a crash; while
/// the store fails it answers 503 (the change stays in the room and is written
/// when the store is back), and an export shows only what the store has.
#[tokio::test]
async fn imports_answer_once_stored_and_exports_show_only_what_is_stored() {
    let store = MemoryStore::new();
    let server = TestServer::start_with(Config::for_tests(), Arc::new(store.clone())).await;
    let (status, _) = post_body(&server, "/rooms/w/import?format=text", b"hello".to_vec()).await;
    assert_eq!(status, 200);
    assert!(
        store.load_durable("w").await.unwrap().is_some(),
        "the import answered before the store had it"
    );

    store.set_failing(true);
    let (import, export) = tokio::join!(
        post_body(&server, "/rooms/w/import?format=text", b" world".to_vec()),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            document(&server, "w", "text").await
        }
    );
    assert_eq!(import.0, 503, "{}", import.1);
    assert!(
        import.1["error"]
            .as_str()
            .is_some_and(|error| error.contains("written when the store is back")),
        "{}",
        import.1
    );
    assert_eq!(export.0, 503, "exported a change the store does not have");

    store.set_failing(false);
    let (status, _, text) = document(&server, "w", "text").await;
    assert_eq!((status, text.as_slice()), (200, &b"hello world"[..]));
    let (status, _) = post_body(&server, "/rooms/w/import?format=text", b"!".to_vec()).await;
    assert_eq!(status, 200);
}

/// A log entry that cannot be read when its room opens is skipped, and stays in
/// the store: the room is not compacted over it, since a snapshot claiming its
/// number would delete the only copy of an edit people once saw.
#[tokio::test]
async fn an_unreadable_log_entry_is_never_compacted_away() {
    use coedit::server::store::{LoggedUpdate, WriteOp};
    use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

    let store = MemoryStore::new();
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text("content");
    text.insert(&mut doc.transact_mut(), 0, "kept");
    let first = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let entry = |seq: u64, data: Vec<u8>| {
        WriteOp::Append(LoggedUpdate {
            room_id: "scarred".into(),
            seq,
            data: data.into(),
            at_ms: 1,
            author: None,
        })
    };
    store
        .write(&[entry(1, first), entry(2, b"not a yjs update".to_vec())])
        .await
        .unwrap();
    let server = TestServer::start_tweaked(
        |config| {
            config.compact_every = 4;
            config.history_retention = Duration::ZERO;
        },
        Arc::new(store.clone()),
    )
    .await;
    let mut alice = server.join("scarred", "alice", "Alice").await;
    for index in 0..12 {
        alice.type_incremental(4 + index, "!").await;
    }
    let typed = eventually(async || {
        let stored = store.load_durable("scarred").await.unwrap().unwrap();
        stored.last_seq >= 14
    })
    .await;
    assert!(typed, "the keystrokes were not stored");
    let stored = store.load_durable("scarred").await.unwrap().unwrap();
    assert!(
        stored.snapshot.is_none(),
        "the room was compacted over an entry it could not read"
    );
    assert!(
        stored
            .updates
            .iter()
            .any(|update| &update[..] == b"not a yjs update"),
        "the unreadable entry is gone"
    );
}

/// A stop that leaves updates the store never took says so: a supervisor sees a
/// failure, not exit 0 after "updates not written" in the log.
#[tokio::test]
async fn a_stop_with_updates_the_store_never_took_is_a_failure() {
    let store = MemoryStore::new();
    let server = TestServer::start_with(Config::for_tests(), Arc::new(store.clone())).await;
    let mut alice = server.join("late", "alice", "Alice").await;
    store.set_failing(true);
    alice.type_incremental(0, "unsaved").await;
    let waiting = eventually(async || server.get("/health").await.1["store"]["backlog"] != 0).await;
    assert!(waiting, "{}", server.get("/health").await.1);
    let stopped = server.stopped().await;
    assert!(
        matches!(stopped, Err(coedit::server::ServeError::Unwritten(count)) if count > 0),
        "{stopped:?}"
    );
}

#[tokio::test]
async fn documents_larger_than_other_request_bodies_import() {
    let server = TestServer::start_tweaked(|_| {}, Arc::new(MemoryStore::new())).await;
    // Far past the 64 KiB every other endpoint accepts, well inside the default
    // --max-message-bytes.
    let text = "a large document typed over months. ".repeat(30_000);
    assert!(text.len() > 1024 * 1024);
    let (status, imported) = post_body(
        &server,
        "/rooms/big/import?format=text",
        text.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    let (_, _, yjs) = document(&server, "big", "yjs").await;
    assert!(yjs.len() > 1024 * 1024);
    let (status, copied) = post_body(&server, "/rooms/copy/import", yjs).await;
    assert_eq!(status, 200, "{copied}");
    let (_, _, copy) = document(&server, "copy", "text").await;
    assert_eq!(String::from_utf8(copy).unwrap(), text);
    // Other endpoints keep the small limit.
    let (status, _) = post_body(&server, "/rooms/big/persist", vec![b'x'; 100 * 1024]).await;
    assert_eq!(status, 413);
}

async fn text_at(server: &TestServer, room: &str, version: &str) -> (u16, String) {
    let response =
        reqwest::get(server.http(&format!("/rooms/{room}/document?format=text&{version}")))
            .await
            .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Alice types "abcd" one letter at a time; every step is a readable version, and
/// restoring "ab" reaches her as a new change. Returns the sequence number of "abc".
async fn history_story(server: &TestServer, room: &str) -> u64 {
    let mut alice = server.join(room, "alice", "Alice").await;
    for (index, letter) in ["a", "b", "c", "d"].iter().enumerate() {
        alice.type_text(index as u32, letter).await;
    }
    let typed = eventually(async || {
        let (_, text) = text_at(server, room, "").await;
        text == "abcd"
    })
    .await;
    assert!(typed);

    let (status, history) = server.get(&format!("/rooms/{room}/history")).await;
    assert_eq!(status, 200, "{history}");
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(
        versions.len(),
        1,
        "edits within a minute are one version: {history}"
    );
    assert_eq!(versions[0]["edits"], 4, "{history}");
    assert_eq!(versions[0]["authors"], serde_json::json!(["Alice"]));
    assert!(history["retention_seconds"].as_u64().unwrap() > 0);
    let first = history["readable_from"].as_u64().unwrap();
    let last = versions[0]["seq"].as_u64().unwrap();

    // Every step can be read back; snapshots in between repeat a step.
    let mut steps: Vec<(u64, String)> = Vec::new();
    for seq in first..=last {
        let (status, text) = text_at(server, room, &format!("seq={seq}")).await;
        assert_eq!(status, 200, "version {seq}: {text}");
        if steps.last().is_none_or(|(_, previous)| *previous != text) {
            steps.push((seq, text));
        }
    }
    let texts: Vec<&str> = steps.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(texts, ["a", "ab", "abc", "abcd"]);
    let (status, _) = text_at(server, room, &format!("seq={}", last + 100)).await;
    assert_eq!(status, 404);
    let (status, _) = text_at(server, room, "at=2000-01-01T00:00:00Z").await;
    assert_eq!(status, 404, "the history starts after 2000");
    let (status, text) = text_at(server, room, "at=0s").await;
    assert_eq!(
        (status, text.as_str()),
        (200, "abcd"),
        "now is the latest version"
    );

    // Restore "ab": Alice sees it at once, as a change by the server.
    let (status, restored) = server
        .send(
            reqwest::Method::POST,
            &format!("/rooms/{room}/restore?seq={}", steps[1].0),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["seq"], steps[1].0);
    loop {
        let message = alice.recv().await;
        alice.apply_if_document(&message);
        if alice.content() == "ab" {
            break;
        }
    }
    // The restore is itself in the history, so it can be undone by another.
    let (_, history) = server.get(&format!("/rooms/{room}/history")).await;
    assert_eq!(
        history["versions"][0]["authors"],
        serde_json::json!(["Alice", "server"]),
        "{history}"
    );
    let (_, now) = text_at(server, room, "at=0s").await;
    assert_eq!(now, "ab");
    steps[2].0
}

fn with_history(config: &mut Config) {
    config.compact_every = 3;
}

#[tokio::test]
async fn every_edit_is_a_readable_version_on_sqlite_also_after_a_restart() {
    let data_dir = temp_dir("history-sqlite");
    let open = || Arc::new(SqliteStore::open(&data_dir).unwrap());
    let tweak = |config: &mut Config| {
        embedded(&data_dir)(config);
        with_history(config);
    };
    let server = TestServer::start_tweaked(tweak, open()).await;
    let abc = history_story(&server, "diary").await;
    server.stop().await;

    let server = TestServer::start_tweaked(tweak, open()).await;
    let (status, text) = text_at(&server, "diary", &format!("seq={abc}")).await;
    assert_eq!((status, text.as_str()), (200, "abc"));
    let (status, restored) = server
        .send(
            reqwest::Method::POST,
            &format!("/rooms/diary/restore?seq={abc}"),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    let (_, greeting) = server.connect("diary", "bob").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("expected sync: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "abc");
    server.stop().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test]
async fn every_edit_is_a_readable_version_on_mongodb() {
    let Some(url) = mongo_url("every_edit_is_a_readable_version_on_mongodb") else {
        return;
    };
    let database = unique_database("history");
    let store = MongoStore::connect(&url, &database).await.unwrap();
    store.prepare().await.unwrap();
    let mongo = |config: &mut Config| {
        config.store = StoreConfig::Mongo {
            url: url.clone(),
            database: database.clone(),
        };
        with_history(config);
    };
    let server = TestServer::start_tweaked(mongo, Arc::new(store)).await;
    history_story(&server, "diary").await;
    server.stop().await;
    database_handle(&url, &database).await.drop().await.unwrap();
}

#[tokio::test]
async fn without_history_only_the_latest_snapshot_and_its_log_are_kept() {
    let server = TestServer::start_tweaked(
        |config| {
            config.compact_every = 3;
            config.history_retention = Duration::ZERO;
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let mut alice = server.join("fleeting", "alice", "Alice").await;
    for (index, letter) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        alice.type_text(index as u32, letter).await;
    }
    let typed = eventually(async || text_at(&server, "fleeting", "").await.1 == "abcdef").await;
    assert!(typed);
    let (_, history) = server.get("/rooms/fleeting/history").await;
    assert_eq!(history["retention_seconds"], 0);
    let first = history["readable_from"].as_u64().unwrap();
    assert!(first > 1, "the first edits are gone: {history}");
    let (status, _) = text_at(&server, "fleeting", "seq=1").await;
    assert_eq!(status, 404);
}
