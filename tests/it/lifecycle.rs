//! A room's life beyond its connections: unloading when idle, loading again on the
//! next join, and surviving a graceful restart on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use coedit::api::ServerMessage;
use coedit::server::store::memory::MemoryStore;
use coedit::server::store::sqlite::SqliteStore;
use coedit::server::StoreConfig;

use super::common::*;

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("coedit-{name}-{}", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn an_idle_room_is_unloaded_and_loads_again_with_its_text() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start_tweaked(
        |config| config.idle_unload = Duration::from_millis(50),
        store,
    )
    .await;
    let mut alice = server.join("idle", "alice", "Alice").await;
    alice.type_text(0, "kept while away").await;
    alice.close().await;

    let unloaded = eventually(async || {
        let (_, metrics) = server.get("/metrics").await;
        metrics["rooms_loaded"] == 0
    })
    .await;
    assert!(unloaded, "an idle room must leave memory");

    let (_bob, greeting) = server.connect("idle", "bob").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("the reloaded room must sync: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "kept while away");
}

#[tokio::test]
async fn a_graceful_restart_on_the_embedded_store_keeps_every_room() {
    let data_dir = temp_dir("restart");
    let open = || Arc::new(SqliteStore::open(&data_dir).unwrap());
    let embedded = |config: &mut coedit::server::Config| {
        config.store = StoreConfig::Embedded {
            data_dir: data_dir.clone(),
        }
    };

    let server = TestServer::start_tweaked(embedded, open()).await;
    let mut alice = server.join("restart", "alice", "Alice").await;
    for (index, word) in ["one ", "two ", "three"].iter().enumerate() {
        alice.type_text((index * 4) as u32, word).await;
    }
    // Bob's edit is the last thing before shutdown, with no time to spare.
    let mut bob = server.join("restart", "bob", "Bob").await;
    bob.type_text(0, ">> ").await;
    bob.send(&coedit::api::ClientMessage::SyncRequest).await;
    let _ = bob.recv().await;
    let expected = {
        let (_, greeting) = server.connect("restart", "observer").await;
        match &greeting[0] {
            ServerMessage::Sync { data } => text_of_hex_state(data),
            other => panic!("expected sync, got {other:?}"),
        }
    };
    server.stop().await;

    let server = TestServer::start_tweaked(embedded, open()).await;
    let (_carol, greeting) = server.connect("restart", "carol").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("the room must come back after a restart: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), expected);
    server.stop().await;
    std::fs::remove_dir_all(&data_dir).ok();
}
