//! What survives: edits accepted a moment before a `kill -9` (SQLite and MongoDB),
//! a MongoDB outage while people keep typing (relayed once written), and starting
//! with MongoDB unreachable.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coedit::api::{ClientMessage, ServerMessage};
use coedit::server::store::mongo::MongoStore;
use coedit::server::store::Store;
use coedit::server::{Config, StoreConfig};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

use super::common::*;
use super::mongo_env::*;

/// How long a client may take to see text that another one typed, or a store to
/// come back: generous, since the machine may be busy building.
const CONVERGE: Duration = Duration::from_secs(30);
/// Pause after the last accepted edit before the `kill -9`: well past the default
/// 10 ms group-commit window, far below anything a person would notice.
const BEFORE_KILL: Duration = Duration::from_millis(150);

/// A client in `room` of the server at `base` (`host:port`) that has joined and
/// applied the room's greeting.
pub(super) async fn join(base: &str, room: &str, client_id: &str) -> Client {
    let url = format!("ws://{base}/api/ws/{room}?client_id={client_id}");
    let mut client = Client::connect(&url, client_id).await;
    loop {
        let message = client.recv().await;
        client.apply_if_document(&message);
        if matches!(message, ServerMessage::Users { .. }) {
            break;
        }
    }
    client
        .send(&ClientMessage::Join {
            name: Some(client_id.into()),
            color: Some("#10B981".into()),
            avatar_url: None,
        })
        .await;
    client
}

/// Reads (and applies) messages until the client's text is `expected`.
pub(super) async fn until_text(client: &mut Client, expected: &str) {
    let deadline = Instant::now() + CONVERGE;
    while client.content() != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_frame(left).await {
            Some(Message::Text(text)) => {
                let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
                client.apply_if_document(&message);
            }
            Some(Message::Binary(bytes)) => client.apply_bytes(&bytes),
            Some(_) => {}
            None => panic!(
                "{} has {:?}, never saw {expected:?}",
                client.id,
                client.content()
            ),
        }
    }
}

/// Types `text` one keystroke at a time at the end, as a person does.
pub(super) async fn type_slowly(client: &mut Client, text: &str) {
    for character in text.chars() {
        let end = client.content().chars().count() as u32;
        client.type_text(end, &character.to_string()).await;
    }
}

/// The text a new client receives in its `sync` greeting from `base`'s `room`.
pub(super) async fn synced_text(base: &str, room: &str) -> String {
    let url = format!(
        "ws://{base}/api/ws/{room}?client_id=reader-{}",
        uuid::Uuid::new_v4()
    );
    let mut client = Client::connect(&url, "reader").await;
    match client.recv().await {
        ServerMessage::Sync { data } => text_of_hex_state(&data),
        other => panic!("room {room} has no document: first message {other:?}"),
    }
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Edits in two rooms through the real binary, `kill -9` 150 ms after the last one
/// was accepted, start again on the same store: a new client sees every edit.
async fn edits_survive_kill_9(store_args: Vec<String>) {
    // Compacting every 20 updates makes the edits span a snapshot and the log after it.
    let mut args = store_args;
    args.extend(["--compact-every".to_owned(), "20".to_owned()]);
    let server = CoeditProcess::start(&args).await;
    let base = server.base();

    // Two editors take turns in one room; each turn is accepted once the other sees it.
    let mut alice = join(&base, "crash-story", "alice").await;
    let mut bob = join(&base, "crash-story", "bob").await;
    let first = "Alice wrote this line. ";
    type_slowly(&mut alice, first).await;
    until_text(&mut bob, first).await;
    let both = format!("{first}Bob answered.");
    type_slowly(&mut bob, "Bob answered.").await;
    until_text(&mut alice, &both).await;

    // Another room with a deletion, which lives in the delete set, not the state vector.
    let mut carol = join(&base, "crash-notes", "carol").await;
    let mut dave = join(&base, "crash-notes", "dave").await;
    type_slowly(&mut carol, "keep this, drop THIS").await;
    carol.delete_text(15, 5).await;
    until_text(&mut dave, "keep this, drop").await;

    tokio::time::sleep(BEFORE_KILL).await;
    server.kill_hard();
    drop((alice, bob, carol, dave));

    let restarted = CoeditProcess::start(&args).await;
    assert_eq!(synced_text(&restarted.base(), "crash-story").await, both);
    assert_eq!(
        synced_text(&restarted.base(), "crash-notes").await,
        "keep this, drop"
    );
}

#[tokio::test]
async fn edits_accepted_before_a_kill_9_survive_on_sqlite() {
    let data_dir = temp_dir("crash-sqlite");
    edits_survive_kill_9(vec!["--data-dir".into(), data_dir.display().to_string()]).await;
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test]
async fn edits_accepted_before_a_kill_9_survive_on_mongodb() {
    let Some(url) = mongo_url("edits_accepted_before_a_kill_9_survive_on_mongodb") else {
        return;
    };
    let name = unique_database("crash");
    edits_survive_kill_9(vec![
        "--mongo-url".into(),
        url.clone(),
        "--db-name".into(),
        name.clone(),
    ])
    .await;
    database(&url, &name).await.drop().await.unwrap();
}

/// A fresh yrs document rebuilt from what the store holds for `room`.
async fn stored_text(store: &MongoStore, room: &str) -> String {
    let durable = store.load_durable(room).await.unwrap().unwrap_or_default();
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    {
        let mut txn = doc.transact_mut();
        for bytes in durable.snapshot.iter().chain(durable.updates.iter()) {
            txn.apply_update(Update::decode_v1(bytes).unwrap()).unwrap();
        }
    }
    let content = text.get_string(&doc.transact());
    content
}

/// With the store down, a graceful stop waits for it (and then exits 1, saying
/// how many updates it could not write); a second SIGTERM ends it at once.
#[tokio::test]
async fn a_second_signal_ends_a_stop_that_waits_for_the_store() {
    let test = "a_second_signal_ends_a_stop_that_waits_for_the_store";
    let Some(program) = mongod_program(test) else {
        return;
    };
    let mut daemon = MongoDaemon::start(program).await;
    let mut server = CoeditProcess::start(&[
        "--mongo-url".into(),
        daemon.url(),
        "--db-name".into(),
        unique_database("second-signal"),
    ])
    .await;
    let mut alice = join(&server.base(), "stop", "alice").await;
    type_slowly(&mut alice, "saved").await;
    daemon.stop();
    type_slowly(&mut alice, " and not").await;
    let backlog = format!("http://{}/api/metrics", server.base());
    let waiting =
        eventually(async || get_json(&backlog).await.1["store_backlog"].as_u64() > Some(0)).await;
    assert!(waiting, "{}", server.log());
    let (status, took) = server
        .terminate_twice(Duration::from_secs(1), Duration::from_secs(8))
        .unwrap_or_else(|| panic!("still running: {}", server.log()));
    assert_eq!(status.code(), Some(130), "{}", server.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn editing_goes_on_through_a_mongodb_outage_and_is_written_after_it() {
    let test = "editing_goes_on_through_a_mongodb_outage_and_is_written_after_it";
    let Some(program) = mongod_program(test) else {
        return;
    };
    let mut daemon = MongoDaemon::start(program).await;
    let name = unique_database("outage");
    let config = |url: String| {
        let mut config = Config::for_tests();
        config.store = StoreConfig::Mongo {
            url,
            database: name.clone(),
        };
        // Compactions pile up in the backlog too, and must be written in order.
        config.compact_every = 8;
        config
    };
    let store = MongoStore::connect(&daemon.url(), &name).await.unwrap();
    store.prepare().await.unwrap();
    let server = TestServer::start_with(config(daemon.url()), Arc::new(store)).await;
    let health = server.http("/health");
    let metrics = server.http("/metrics");

    let mut alice = server.join("outage", "alice", "Alice").await;
    let mut bob = server.join("outage", "bob", "Bob").await;
    type_slowly(&mut alice, "before. ").await;
    until_text(&mut bob, "before. ").await;
    assert!(
        eventually(async || get_json(&metrics).await.1["store_backlog"] == 0).await,
        "the first edits are written while MongoDB is up"
    );

    daemon.stop();
    // People keep typing; what they type reaches the others only once it is
    // written (write-ahead relay), so each sees only their own edits meanwhile.
    // More keystrokes than a room holds one by one: it resends itself whole after.
    let typed = "during the outage. ".repeat(15);
    type_slowly(&mut alice, &typed).await;
    bob.type_text(0, "Bob too. ").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(frame) = bob.next_frame(Duration::from_millis(100)).await {
        if let Message::Text(text) = frame {
            let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
            bob.apply_if_document(&message);
        }
    }
    assert_eq!(
        bob.content(),
        "Bob too. before. ",
        "an edit reached another client before the store had it"
    );
    let during = format!("Bob too. before. {typed}");
    let during = during.as_str();

    let deadline = Instant::now() + CONVERGE;
    loop {
        let (_, body) = get_json(&health).await;
        if body["status"] == "degraded" {
            let reason = body["store"]["reason"].as_str().unwrap_or("");
            assert!(!reason.is_empty(), "a degraded store says why: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never said degraded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, counters) = get_json(&metrics).await;
    assert!(counters["store_errors"].as_u64().unwrap() > 0, "{counters}");
    assert!(
        counters["store_backlog"].as_u64().unwrap() > 0,
        "{counters}"
    );
    // A room that is not in memory cannot be loaded meanwhile, and says so.
    let (status, _) = get_json(&server.http("/rooms/never-loaded")).await;
    assert_eq!(status, 503);

    daemon.resume().await;
    // Once the store is back, everything typed meanwhile is written and relayed:
    // both converge without reconnecting.
    until_text(&mut alice, during).await;
    until_text(&mut bob, during).await;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (_, body) = get_json(&health).await;
        let (_, counters) = get_json(&metrics).await;
        if body["status"] == "healthy" && counters["store_backlog"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "store never recovered: {body} {counters}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What the journal wrote after the outage is in MongoDB, read by another client.
    let reader = MongoStore::connect(&daemon.url(), &name).await.unwrap();
    assert_eq!(stored_text(&reader, "outage").await, during);

    alice.close().await;
    bob.close().await;
    server.stop().await;
    let store = MongoStore::connect(&daemon.url(), &name).await.unwrap();
    store.prepare().await.unwrap();
    let restarted = TestServer::start_with(config(daemon.url()), Arc::new(store)).await;
    let (_reader, greeting) = restarted.connect("outage", "carol").await;
    let Some(ServerMessage::Sync { data }) = greeting.first() else {
        panic!("expected the document after restart: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), during);
    restarted.stop().await;
    database(&daemon.url(), &name).await.drop().await.unwrap();
}

/// A URL where nothing listens.
fn dead_mongo_url() -> String {
    format!("mongodb://127.0.0.1:{}", free_port())
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_unreachable_mongodb_with_one_line() {
    let url = dead_mongo_url();
    let dir = temp_dir("unreachable");
    let started = Instant::now();
    let mut child = serve_command(
        free_port(),
        &[
            "--mongo-url".into(),
            url.clone(),
            "--db-name".into(),
            "unreachable".into(),
        ],
        &dir,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("coedit serve still running 15 s after start with MongoDB unreachable");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    let host = url.trim_start_matches("mongodb://");
    assert!(
        lines[0].starts_with("coedit: ")
            && lines[0].contains(&format!("cannot reach MongoDB at {host}"))
            && lines[0].contains("--start-degraded"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn serve_with_start_degraded_serves_and_reports_the_store_degraded() {
    let server = CoeditProcess::start(&[
        "--mongo-url".into(),
        dead_mongo_url(),
        "--db-name".into(),
        "degraded".into(),
        "--start-degraded".into(),
    ])
    .await;
    let (status, health) = get_json(&format!("http://{}/api/health", server.base())).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["backend"], "mongodb", "{health}");
    assert!(
        health["store"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("cannot reach MongoDB at 127.0.0.1")),
        "{health}"
    );
    // Rooms cannot be loaded while the store is away: refused, not served empty.
    let (status, _) = get_json(&format!("http://{}/api/rooms/anything", server.base())).await;
    assert_eq!(status, 503, "{}", server.log());
}

#[tokio::test]
async fn a_server_started_degraded_recovers_when_mongodb_comes_up() {
    let Some(program) = mongod_program("a_server_started_degraded_recovers_when_mongodb_comes_up")
    else {
        return;
    };
    let mut daemon = MongoDaemon::not_started(program);
    let name = unique_database("late");
    let server = CoeditProcess::start(&[
        "--mongo-url".into(),
        daemon.url(),
        "--db-name".into(),
        name.clone(),
        "--start-degraded".into(),
    ])
    .await;
    let base = server.base();
    let health = format!("http://{base}/api/health");
    assert_eq!(get_json(&health).await.1["status"], "degraded");

    daemon.resume().await;
    let deadline = Instant::now() + CONVERGE;
    while get_json(&health).await.1["status"] != "healthy" {
        assert!(Instant::now() < deadline, "never healthy: {}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Now rooms load and edits are kept, across a kill -9 too.
    let mut alice = join(&base, "late", "alice").await;
    let mut bob = join(&base, "late", "bob").await;
    type_slowly(&mut alice, "finally stored").await;
    until_text(&mut bob, "finally stored").await;
    // It writes as the database's one writer: it took the lease once MongoDB
    // answered, so a second server is refused as at any start.
    let port = base.rsplit(':').next().unwrap().to_owned();
    let lease = database(&daemon.url(), &name)
        .await
        .collection::<mongodb::bson::Document>("coedit_leases")
        .find_one(mongodb::bson::doc! {"_id": "writer"})
        .await
        .unwrap();
    assert!(
        lease
            .as_ref()
            .and_then(|lease| lease.get_str("node_id").ok())
            .is_some_and(|holder| holder.ends_with(&format!(":{port}"))),
        "{lease:?}"
    );
    tokio::time::sleep(BEFORE_KILL).await;
    server.kill_hard();
    let args = [
        "--mongo-url".into(),
        daemon.url(),
        "--db-name".into(),
        name.clone(),
    ];
    let restarted = CoeditProcess::start(&args).await;
    assert_eq!(
        synced_text(&restarted.base(), "late").await,
        "finally stored"
    );
    database(&daemon.url(), &name).await.drop().await.unwrap();
}
