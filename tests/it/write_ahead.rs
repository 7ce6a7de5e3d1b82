//! Nothing anyone has seen is lost: an edit reaches other clients only once the
//! store has it (a `kill -9` the instant a watcher holds it loses nothing, on both
//! stores and both protocols); a room opened from an original-backend checkpoint
//! keeps its text through unloads and restarts; a room the store refuses does not
//! hold up the others; and one store has one writer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coedit::api::{ClientMessage, ServerMessage};
use coedit::server::store::memory::MemoryStore;
use coedit::server::store::Store;
use futures_util::{SinkExt, StreamExt};
use mongodb::bson::doc;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::common::*;
use super::durability::{join, synced_text, type_slowly, until_text};
use super::mongo_env::*;

/// Keystrokes typed in one crash round.
const KEYSTROKES: usize = 30;

fn sqlite_args(dir: &std::path::Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

pub(super) fn mongo_args(url: &str, database: &str) -> Vec<String> {
    vec![
        "--mongo-url".into(),
        url.to_owned(),
        "--db-name".into(),
        database.to_owned(),
    ]
}

/// A full Yjs state whose `content` is `text`.
fn state_of(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let content = doc.get_or_insert_text("content");
    content.insert(&mut doc.transact_mut(), 0, text);
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    state
}

/// What a watching client holds of the room: the JSON protocol or y-protocols.
enum Watcher {
    Json(Client),
    Yjs {
        socket: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        doc: Doc,
    },
}

impl Watcher {
    async fn yjs(base: &str, room: &str) -> Self {
        let url = format!("ws://{base}/api/yjs/{room}");
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let doc = Doc::new();
        doc.get_or_insert_text("content");
        let step1 = Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()));
        socket.send(Frame::binary(step1.encode_v1())).await.unwrap();
        let mut watcher = Watcher::Yjs { socket, doc };
        // Synced once the server's sync step 2 is applied.
        while !watcher.next(EXPECT).await {}
        watcher
    }

    /// Reads one frame and applies it; true when it was the y-protocol sync step 2
    /// (the JSON watcher returns true for any document message).
    async fn next(&mut self, wait: Duration) -> bool {
        match self {
            Watcher::Json(client) => match client.next_frame(wait).await {
                Some(Frame::Text(text)) => {
                    let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
                    client.apply_if_document(&message);
                    matches!(
                        message,
                        ServerMessage::Update { .. } | ServerMessage::Sync { .. }
                    )
                }
                Some(Frame::Binary(bytes)) => {
                    client.apply_bytes(&bytes);
                    true
                }
                Some(_) => false,
                None => panic!("the JSON watcher heard nothing for {wait:?}"),
            },
            Watcher::Yjs { socket, doc } => {
                let frame = tokio::time::timeout(wait, socket.next())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("the y-protocol watcher heard nothing for {wait:?}")
                    });
                let Some(Ok(Frame::Binary(bytes))) = frame else {
                    return false;
                };
                match Message::decode_v1(&bytes) {
                    Ok(Message::Sync(SyncMessage::SyncStep2(update))) => {
                        apply(doc, &update);
                        true
                    }
                    Ok(Message::Sync(SyncMessage::Update(update))) => {
                        apply(doc, &update);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn content(&self) -> String {
        match self {
            Watcher::Json(client) => client.content(),
            Watcher::Yjs { doc, .. } => doc
                .get_or_insert_text("content")
                .get_string(&doc.transact()),
        }
    }
}

fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
}

/// The text a new client is greeted with; empty when the room has no document.
async fn served_text(base: &str, room: &str) -> String {
    let url = format!(
        "ws://{base}/api/ws/{room}?client_id=reader-{}",
        fastrand::u64(..)
    );
    let mut client = Client::connect(&url, "reader").await;
    match client.recv().await {
        ServerMessage::Sync { data } => text_of_hex_state(&data),
        _ => String::new(),
    }
}

fn kill_9(pid: u32) {
    // SAFETY: kill(2) with a pid this test spawned and still owns (not yet reaped).
    let result = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(result, 0, "kill -9 {pid} failed");
}

/// Rounds of: a writer types a burst of keystrokes; a watcher (JSON or y-protocol,
/// alternating) kills the server with SIGKILL from inside its read loop the moment
/// it holds every keystroke (or, every third round, a random number of them); the
/// server restarts on the same store and port; what the watcher saw must be served.
/// Returns the number of keystrokes lost over all rounds.
async fn crash_at_the_instant_of_relay(store_args: Vec<String>, rounds: usize) -> usize {
    let port = free_port();
    let room = "seen-then-crashed";
    let mut expected = String::new();
    let mut lost = 0;
    for round in 0..rounds {
        let server = CoeditProcess::start_on(port, &store_args).await;
        let base = server.base();
        let mut writer = join(&base, room, &format!("writer-{round}")).await;
        until_text(&mut writer, &expected).await;
        let mut watcher = if round % 2 == 0 {
            let mut client = join(&base, room, &format!("watcher-{round}")).await;
            until_text(&mut client, &expected).await;
            Watcher::Json(client)
        } else {
            Watcher::yjs(&base, room).await
        };
        assert_eq!(watcher.content(), expected, "round {round}: greeting");

        let burst: String = (0..KEYSTROKES)
            .map(|index| char::from(b'a' + ((round + index) % 26) as u8))
            .collect();
        let kill_after = if round % 3 == 2 {
            fastrand::usize(1..KEYSTROKES)
        } else {
            KEYSTROKES
        };
        let target = expected.chars().count() + kill_after;
        let typing = tokio::spawn(async move {
            for character in burst.chars() {
                let end = writer.content().chars().count() as u32;
                writer.type_incremental(end, &character.to_string()).await;
            }
            writer
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while watcher.content().chars().count() < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: the watcher never saw the burst"
            );
            watcher.next(EXPECT).await;
        }
        kill_9(server.pid());
        let seen = watcher.content();
        let _ = typing.await;
        drop(server);

        let restarted = CoeditProcess::start_on(port, &store_args).await;
        let served = served_text(&restarted.base(), room).await;
        if !served.starts_with(&seen) {
            let missing = seen.chars().count().saturating_sub(
                served
                    .chars()
                    .zip(seen.chars())
                    .take_while(|(a, b)| a == b)
                    .count(),
            );
            eprintln!("round {round}: watcher saw {seen:?}, restarted server serves {served:?}");
            lost += missing.max(1);
        }
        expected = served;
        drop(restarted);
    }
    eprintln!("{rounds} crash rounds, {lost} keystrokes seen and lost");
    lost
}

#[tokio::test]
async fn nothing_a_client_saw_is_lost_to_a_kill_9_on_sqlite() {
    let dir = temp_dir("seen-sqlite");
    let lost = crash_at_the_instant_of_relay(sqlite_args(&dir), 12).await;
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(lost, 0, "keystrokes seen by a client and lost to a crash");
}

#[tokio::test]
async fn nothing_a_client_saw_is_lost_to_a_kill_9_on_mongodb() {
    let Some(url) = mongo_url("nothing_a_client_saw_is_lost_to_a_kill_9_on_mongodb") else {
        return;
    };
    let name = unique_database("seen");
    let lost = crash_at_the_instant_of_relay(mongo_args(&url, &name), 6).await;
    database(&url, &name).await.drop().await.ok();
    assert_eq!(lost, 0, "keystrokes seen by a client and lost to a crash");
}

/// Is the room gone from memory (`/api/rooms` no longer lists it)?
async fn unloaded(base: &str, room: &str) -> bool {
    let rooms: Value = reqwest::get(format!("http://{base}/api/rooms"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    !rooms
        .as_array()
        .unwrap()
        .iter()
        .any(|listed| listed["id"] == room)
}

async fn wait_unloaded(base: &str, room: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !unloaded(base, room).await {
        assert!(Instant::now() < deadline, "room {room} never unloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One person's session: join, check the text, type `typed` at the end, leave.
async fn session(base: &str, room: &str, who: &str, sees: &str, typed: &str) -> String {
    let mut client = join(base, room, who).await;
    until_text(&mut client, sees).await;
    type_slowly(&mut client, typed).await;
    let text = format!("{sees}{typed}");
    // Once another client has it, it is written (write-ahead relay).
    let mut witness = join(base, room, &format!("{who}-witness")).await;
    until_text(&mut witness, &text).await;
    drop((client, witness));
    text
}

/// The migration path: a room only the original backend ever saved (a
/// `room_documents` record and nothing else) is edited, unloaded, edited again and
/// the server restarted; every edit and the original text stay.
async fn legacy_room_keeps_its_text(store_args: Vec<String>) {
    let mut args = store_args;
    args.extend(["--idle-unload-secs".to_owned(), "1".to_owned()]);
    let room = "legacy-room";
    let server = CoeditProcess::start(&args).await;
    let base = server.base();
    let text = session(&base, room, "first", "legacy-text", " new-edit-1").await;
    wait_unloaded(&base, room).await;
    let text = session(&base, room, "second", &text, " new-edit-2").await;
    wait_unloaded(&base, room).await;
    drop(server);
    let restarted = CoeditProcess::start(&args).await;
    assert_eq!(
        synced_text(&restarted.base(), room).await,
        "legacy-text new-edit-1 new-edit-2"
    );
    let text = session(&restarted.base(), room, "third", &text, " new-edit-3").await;
    assert_eq!(text, "legacy-text new-edit-1 new-edit-2 new-edit-3");
}

/// A checkpoint restored with `load`, then edited, unloaded and restarted: the
/// restored text and every edit after it stay.
async fn restored_room_keeps_its_text(store_args: Vec<String>) {
    let mut args = store_args;
    args.extend(["--idle-unload-secs".to_owned(), "1".to_owned()]);
    let room = "restored-room";
    let server = CoeditProcess::start(&args).await;
    let base = server.base();
    session(&base, room, "author", "", "saved").await;
    let http = reqwest::Client::new();
    let persisted: Value = http
        .post(format!("http://{base}/api/rooms/{room}/persist"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(persisted["success"], true, "{persisted}");
    session(&base, room, "author", "saved", " and then more").await;
    wait_unloaded(&base, room).await;
    let loaded: Value = http
        .get(format!("http://{base}/api/rooms/{room}/load"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(loaded["success"], true, "{loaded}");
    let text = session(&base, room, "editor", "saved", " after").await;
    wait_unloaded(&base, room).await;
    drop(server);
    let restarted = CoeditProcess::start(&args).await;
    assert_eq!(synced_text(&restarted.base(), room).await, text);
    assert_eq!(text, "saved after");
}

/// Writes a `room_documents` row exactly as the original backend did, into the
/// SQLite file `coedit serve --data-dir dir` opens.
fn seed_sqlite_checkpoint(dir: &std::path::Path, room: &str, text: &str) {
    let connection = rusqlite::Connection::open(dir.join("coedit.sqlite3")).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS room_documents (
                room_id TEXT PRIMARY KEY, data TEXT NOT NULL,
                updated_at TEXT NOT NULL, size INTEGER NOT NULL)",
        )
        .unwrap();
    let data = hex::encode(state_of(text));
    connection
        .execute(
            "INSERT INTO room_documents (room_id, data, updated_at, size) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![room, data, "2024-01-01T00:00:00.000000", data.len() as i64],
        )
        .unwrap();
}

#[tokio::test]
async fn a_room_only_the_original_backend_saved_keeps_its_text_on_sqlite() {
    let dir = temp_dir("legacy-sqlite");
    seed_sqlite_checkpoint(&dir, "legacy-room", "legacy-text");
    legacy_room_keeps_its_text(sqlite_args(&dir)).await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A room opened from a checkpoint: its first write holds the checkpoint too, and
/// what the server acknowledged must survive a `kill -9` from the journal file
/// alone, whatever the store file had taken by then. (Compactions reach the store
/// file after the journal's write returns, so a base written as one was lost to a
/// crash in between, and the edits after it were left without their document.)
#[tokio::test]
async fn a_room_opened_from_a_checkpoint_survives_a_kill_9_from_the_journal_alone() {
    use coedit::server::store::sqlite::read_journal;
    let dir = temp_dir("legacy-crash");
    seed_sqlite_checkpoint(&dir, "legacy-room", "legacy-text");
    let server = CoeditProcess::start(&sqlite_args(&dir)).await;
    let text = session(
        &server.base(),
        "legacy-room",
        "first",
        "legacy-text",
        " new",
    )
    .await;
    let doc = Doc::new();
    let content = doc.get_or_insert_text("content");
    for row in read_journal(&dir).unwrap() {
        assert_eq!(row.room_id, "legacy-room");
        let update = Update::decode_v1(&row.data).unwrap();
        doc.transact_mut().apply_update(update).unwrap();
    }
    assert_eq!(content.get_string(&doc.transact()), text);
    server.kill_hard();
    let restarted = CoeditProcess::start(&sqlite_args(&dir)).await;
    assert_eq!(synced_text(&restarted.base(), "legacy-room").await, text);
    drop(restarted);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_room_only_the_original_backend_saved_keeps_its_text_on_mongodb() {
    let Some(url) = mongo_url("a_room_only_the_original_backend_saved_keeps_its_text_on_mongodb")
    else {
        return;
    };
    let name = unique_database("legacy");
    let db = database(&url, &name).await;
    // The original's shape: hex string, ISO-8601 string, int32 hex length.
    let data = hex::encode(state_of("legacy-text"));
    db.collection::<mongodb::bson::Document>("room_documents")
        .insert_one(doc! {
            "room_id": "legacy-room",
            "data": &data,
            "updated_at": "2024-01-01T00:00:00.000000",
            "size": data.len() as i32,
        })
        .await
        .unwrap();
    legacy_room_keeps_its_text(mongo_args(&url, &name)).await;
    db.drop().await.ok();
}

#[tokio::test]
async fn a_room_restored_with_load_keeps_its_text_on_sqlite() {
    let dir = temp_dir("restored-sqlite");
    restored_room_keeps_its_text(sqlite_args(&dir)).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_room_restored_with_load_keeps_its_text_on_mongodb() {
    let Some(url) = mongo_url("a_room_restored_with_load_keeps_its_text_on_mongodb") else {
        return;
    };
    let name = unique_database("restored");
    restored_room_keeps_its_text(mongo_args(&url, &name)).await;
    database(&url, &name).await.drop().await.ok();
}

/// Alice and Bob in `room` of a server on a memory store that has just started
/// failing (rate limits lifted, so that only the hold queue's bounds apply).
async fn stalled_pair(room: &str) -> (TestServer, MemoryStore, Client, Client) {
    let store = MemoryStore::new();
    let server = TestServer::start_tweaked(
        |config| {
            config.rate_limit_per_sec = 100_000;
            config.rate_limit_burst = 100_000;
        },
        Arc::new(store.clone()),
    )
    .await;
    let alice = server.join(room, "alice", "Alice").await;
    let bob = server.join(room, "bob", "Bob").await;
    store.set_failing(true);
    (server, store, alice, bob)
}

/// A store stall long enough to overflow a room's hold queue: once the store is
/// back, the room is resent whole and everyone converges, someone who connected
/// during the stall is greeted, and so is someone who comes after it, when the
/// room has gone quiet and no write is coming to release anything.
#[tokio::test]
async fn after_a_stall_that_overflows_the_hold_queue_the_room_is_resent_and_greets_newcomers() {
    let (server, store, mut alice, mut bob) = stalled_pair("stalled").await;
    // More keystrokes than the room holds broadcasts for.
    for index in 0..300 {
        alice.type_incremental(index, "x").await;
    }
    // The server has applied them (and dropped what it held) before carol comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let carol = {
        let url = server.ws_url("stalled", "carol");
        tokio::spawn(async move {
            let mut carol = Client::connect(&url, "carol").await;
            loop {
                let message = carol.recv().await;
                carol.apply_if_document(&message);
                if matches!(message, ServerMessage::Users { .. }) {
                    return carol;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.set_failing(false);
    let typed = "x".repeat(300);
    // The held keystrokes were dropped: bob is sent the room whole instead.
    let resent = bob.recv().await;
    assert!(
        matches!(resent, ServerMessage::Sync { .. }),
        "expected the room resent whole, got {resent:?}"
    );
    bob.apply_if_document(&resent);
    until_text(&mut bob, &typed).await;
    let mut carol = carol.await.unwrap();
    until_text(&mut carol, &typed).await;
    // Nobody types any more: a newcomer's greeting must not wait for a write.
    assert_eq!(
        synced_text(&server.addr.to_string(), "stalled").await,
        typed
    );
    assert_eq!(alice.content(), typed);
}

/// A reply the room held for the store is still owed when the hold queue overflows
/// behind it: the room resent whole covers what everyone sees, not the pong one
/// client is waiting for.
#[tokio::test]
async fn a_pong_held_when_the_hold_queue_overflows_still_arrives() {
    let (_server, store, mut alice, mut bob) = stalled_pair("stalled-pong").await;
    alice.type_incremental(0, "x").await;
    // The keystroke is applied and waits for the store: bob's pong waits behind it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.send(&ClientMessage::Ping {
        timestamp: Value::String("held".into()),
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // More keystrokes than the room holds broadcasts for.
    for index in 1..300 {
        alice.type_incremental(index, "x").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.set_failing(false);
    let mut ponged = false;
    while !ponged {
        match bob.recv().await {
            ServerMessage::Pong { timestamp } => {
                assert_eq!(timestamp, "held");
                ponged = true;
            }
            message => bob.apply_if_document(&message),
        }
    }
    until_text(&mut bob, &"x".repeat(300)).await;
}

/// A client that keeps asking while the store is down: its pongs wait, up to what a
/// room holds for single connections, then it is closed with 1013 and a reason; the
/// others stay and converge once the store is back.
#[tokio::test]
async fn a_client_whose_replies_outgrow_the_hold_queue_is_closed() {
    let (server, store, mut alice, mut bob) = stalled_pair("asking").await;
    alice.type_incremental(0, "x").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ping = serde_json::to_string(&ClientMessage::Ping {
        timestamp: Value::String("again".into()),
    })
    .unwrap();
    let mut closed = None;
    for _ in 0..2000 {
        if bob.socket.send(Frame::text(ping.clone())).await.is_err() {
            break;
        }
    }
    let deadline = Instant::now() + EXPECT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, bob.socket.next()).await {
            Ok(Some(Ok(Frame::Close(frame)))) => {
                closed = frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    assert_eq!(
        closed,
        Some((1013, "too many replies waiting for the store".to_owned()))
    );
    store.set_failing(false);
    alice.type_incremental(1, "y").await;
    // A newcomer is greeted with everything, once the store has it.
    assert_eq!(synced_text(&server.addr.to_string(), "asking").await, "xy");
}

/// The store refuses one room's writes for good: its clients are told and it turns
/// read-only, health names it, and the other rooms go on being written.
#[tokio::test]
async fn a_room_the_store_refuses_does_not_hold_up_the_others() {
    let store = MemoryStore::new();
    let server = TestServer::start_tweaked(|_| {}, Arc::new(store.clone())).await;
    let mut healthy = server.join("healthy", "h1", "Hana").await;
    healthy.type_incremental(0, "before").await;

    store.refuse_room("poison");
    let mut poisoned = server.join("poison", "p1", "Pia").await;
    let mut other = server.join("poison", "p2", "Paul").await;
    poisoned.type_incremental(0, "x").await;
    // Pia's edit is refused by the store: the room says so to its clients.
    let deadline = Instant::now() + EXPECT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no error reached the room's clients"
        );
        if let ServerMessage::Error { message } = other.recv().await {
            assert!(message.contains("cannot be saved"), "{message}");
            break;
        }
    }
    let (_, health) = server.get("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["store"]["refused_rooms"][0]["room"] == "poison",
        "{health}"
    );
    // Further edits of that room are refused at once, with the reason.
    poisoned.type_incremental(1, "y").await;
    let deadline = Instant::now() + EXPECT;
    loop {
        assert!(Instant::now() < deadline, "the second edit was not refused");
        if let ServerMessage::Error { message } = poisoned.recv().await {
            if message.contains("read-only") {
                break;
            }
        }
    }

    // Every other room is still written, edit after edit.
    for (index, word) in [" and", " after"].into_iter().enumerate() {
        let end = healthy.content().chars().count() as u32;
        healthy.type_incremental(end, word).await;
        let expected = format!("before{}", [" and", " and after"][index]);
        let written = eventually(async || {
            let durable = store.load_durable("healthy").await.unwrap();
            let doc = Doc::new();
            let text = doc.get_or_insert_text("content");
            if let Some(durable) = durable {
                let mut txn = doc.transact_mut();
                for update in durable.snapshot.iter().chain(durable.updates.iter()) {
                    txn.apply_update(Update::decode_v1(update).unwrap())
                        .unwrap();
                }
            }
            let stored = text.get_string(&doc.transact());
            stored == expected
        })
        .await;
        assert!(written, "the healthy room's edit {word:?} was not written");
    }
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(metrics["store_refused_rooms"], 1, "{metrics}");
}

/// Waits for a process to exit; its status and what it printed.
pub(super) async fn exits(
    mut child: std::process::Child,
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                pipe.read_to_string(&mut stderr).unwrap();
            }
            return (status, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "the second server is still running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A second server on the same store refuses to start with one line; the first
/// keeps serving and writing.
async fn one_writer_per_store(store_args: Vec<String>, within: Duration) {
    let first = CoeditProcess::start(&store_args).await;
    let mut editor = join(&first.base(), "one-writer", "editor").await;
    type_slowly(&mut editor, "first").await;

    let dir = temp_dir("second-server");
    let second = serve_command(free_port(), &store_args, &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = exits(second, within).await;
    std::fs::remove_dir_all(&dir).ok();
    assert!(!status.success(), "the second server started: {stderr}");
    assert!(
        stderr.contains("in use by another coedit server"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|line| line.contains("in use"))
            .count(),
        1,
        "{stderr}"
    );

    // The first server still takes edits and relays them (so it still writes).
    type_slowly(&mut editor, " still here").await;
    let mut witness = join(&first.base(), "one-writer", "witness").await;
    until_text(&mut witness, "first still here").await;
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = temp_dir("one-writer-sqlite");
    one_writer_per_store(sqlite_args(&dir), Duration::from_secs(20)).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[tokio::test]
async fn a_running_server_holds_its_sqlite_files_against_other_processes() {
    use coedit::server::store::sqlite::DATABASE_FILE;
    let dir = temp_dir("held-sqlite");
    let server = CoeditProcess::start(&sqlite_args(&dir)).await;
    let mut editor = join(&server.base(), "held", "editor").await;
    type_slowly(&mut editor, "kept").await;
    // SQLite's own locks are the process's (the `unix-excl` VFS): another process,
    // here the test's, can neither read nor write the store file, so the server's
    // commits need no file locking of their own.
    let connection = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    let read = connection.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    });
    let busy = read
        .as_ref()
        .err()
        .and_then(rusqlite::Error::sqlite_error_code)
        == Some(rusqlite::ErrorCode::DatabaseBusy);
    assert!(busy, "{read:?}");
    drop(connection);
    // Once it has stopped, it opens as any SQLite file does.
    drop(editor);
    drop(server);
    let connection = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    let tables: i64 = connection
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
        .unwrap();
    assert!(tables > 0);
    // While another process has them open, a server refuses to start, and says why.
    let refused = serve_command(free_port(), &sqlite_args(&dir), &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("open in another process"), "{stderr}");
    drop(connection);
    let restarted = CoeditProcess::start(&sqlite_args(&dir)).await;
    assert_eq!(synced_text(&restarted.base(), "held").await, "kept");
    drop(restarted);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn on_mongodb_the_document_limit_is_lowered_with_a_warning_only_for_a_chosen_one() {
    let Some(url) =
        mongo_url("on_mongodb_the_document_limit_is_lowered_with_a_warning_only_for_a_chosen_one")
    else {
        return;
    };
    let warning = "limited to 15728640 bytes on MongoDB";
    let name = unique_database("document_limit");
    let mut args = mongo_args(&url, &name);
    // The default is the embedded store's: lowered without a warning (the tests'
    // servers log at `warn`). Health answers once the server is past that point.
    let server = CoeditProcess::start(&args).await;
    let health = reqwest::get(format!("http://{}/api/health", server.base()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(!server.log().contains(warning), "{}", server.log());
    drop(server);
    // A limit someone chose above MongoDB's is lowered too, and the server says so.
    args.extend(["--max-document-bytes".to_owned(), "20000000".to_owned()]);
    let server = CoeditProcess::start(&args).await;
    let health = reqwest::get(format!("http://{}/api/health", server.base()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let log = server.log();
    assert!(
        log.contains(warning) && log.contains("not the 20000000"),
        "{log}"
    );
    drop(server);
    database(&url, &name).await.drop().await.ok();
}

#[tokio::test]
async fn a_second_server_on_the_same_mongodb_database_refuses_to_start() {
    let Some(url) = mongo_url("a_second_server_on_the_same_mongodb_database_refuses_to_start")
    else {
        return;
    };
    let name = unique_database("one_writer");
    one_writer_per_store(mongo_args(&url, &name), Duration::from_secs(40)).await;
    database(&url, &name).await.drop().await.ok();
}

/// A server whose writer lease another server took (it could not renew it for a
/// whole TTL) stops writing: its next write is refused, health says why, and
/// nothing of it reaches the database the other server now writes.
#[tokio::test]
async fn a_server_that_lost_its_writer_lease_stops_writing() {
    let Some(url) = mongo_url("a_server_that_lost_its_writer_lease_stops_writing") else {
        return;
    };
    let name = unique_database("lost_lease");
    let server = CoeditProcess::start(&mongo_args(&url, &name)).await;
    let base = server.base();
    let text = session(&base, "kept", "editor", "", "before").await;
    assert_eq!(text, "before");

    let db = database(&url, &name).await;
    let leases = db.collection::<mongodb::bson::Document>(coedit::server::store::lease::LEASES);
    let intruder = || {
        let now = mongodb::bson::DateTime::now();
        doc! {"_id": "writer", "node_id": "intruder:1", "pid": 1_i64, "renewed_at": now,
        "expires_at": mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 10_000)}
    };
    leases
        .replace_one(doc! {"_id": "writer"}, intruder())
        .await
        .unwrap();
    // The server notices at its next renewal.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = || async {
        db.collection::<mongodb::bson::Document>("room_updates")
            .count_documents(doc! {"room_id": "kept"})
            .await
            .unwrap()
    };
    let before = stored().await;
    let mut editor = join(&base, "kept", "late-editor").await;
    until_text(&mut editor, "before").await;
    editor.type_incremental(6, " after").await;
    let health = format!("http://{base}/api/health");
    let refused = eventually(async || {
        let health: Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
        health["store"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("took this MongoDB database's writer lease"))
    })
    .await;
    assert!(refused, "{}", server.log());
    assert_eq!(
        stored().await,
        before,
        "the server wrote after losing its lease"
    );
    db.drop().await.ok();
}

/// The same through the real binary on MongoDB, with a crash: the database refuses
/// one room's documents (a validator, as an operator's schema rule or an oversized
/// record would), that room turns read-only and is named in health, and the other
/// room's edits, seen by a watcher the instant before a `kill -9`, survive.
#[tokio::test]
async fn a_room_mongodb_refuses_does_not_hold_up_the_others_through_a_crash() {
    let Some(url) = mongo_url("a_room_mongodb_refuses_does_not_hold_up_the_others_through_a_crash")
    else {
        return;
    };
    let name = unique_database("refused");
    let db = database(&url, &name).await;
    for collection in ["room_updates", "room_snapshots"] {
        db.create_collection(collection)
            .validator(doc! {"room_id": {"$ne": "poison"}})
            .await
            .unwrap();
    }
    let args = mongo_args(&url, &name);
    let port = free_port();
    let server = CoeditProcess::start_on(port, &args).await;
    let base = server.base();

    let mut poisoned = join(&base, "poison", "pia").await;
    let mut other = join(&base, "poison", "paul").await;
    poisoned.type_incremental(0, "never stored").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no error reached the room's clients"
        );
        if let Some(Frame::Text(text)) = other.next_frame(EXPECT).await {
            if let ServerMessage::Error { message } = serde_json::from_str(text.as_str()).unwrap() {
                assert!(message.contains("cannot be saved"), "{message}");
                break;
            }
        }
    }
    let health: Value = reqwest::get(format!("http://{base}/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["store"]["refused_rooms"][0]["room"], "poison",
        "{health}"
    );

    let mut writer = join(&base, "healthy", "writer").await;
    let mut watcher = Watcher::Json(join(&base, "healthy", "watcher").await);
    let burst = "still written after the refusal";
    let typing = tokio::spawn(async move {
        for character in burst.chars() {
            let end = writer.content().chars().count() as u32;
            writer.type_incremental(end, &character.to_string()).await;
        }
        writer
    });
    while watcher.content() != burst {
        watcher.next(Duration::from_secs(30)).await;
    }
    kill_9(server.pid());
    let _ = typing.await;
    drop(server);

    let restarted = CoeditProcess::start_on(port, &args).await;
    assert_eq!(served_text(&restarted.base(), "healthy").await, burst);
    drop(restarted);
    db.drop().await.ok();
}
