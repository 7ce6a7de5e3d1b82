//! The recorded session of the original browser page (two people typing, full-state
//! updates on every keystroke, a deletion, and a stretch of blind concurrent typing)
//! replayed against coedit: the room must end with the page's own merged text.

use coedit::api::{ClientMessage, ServerMessage};
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;

#[derive(Deserialize)]
struct Recorded {
    from: String,
    msg: Value,
}

struct Session {
    messages: Vec<Recorded>,
    final_text: String,
}

fn session() -> Session {
    let raw = include_str!("../fixtures/original-client-session.jsonl");
    let lines: Vec<Value> = raw
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let last = lines.last().unwrap();
    let messages = lines[1..lines.len() - 1]
        .iter()
        .map(|line| serde_json::from_value(line.clone()).unwrap())
        .collect();
    Session {
        messages,
        final_text: last["final_text"].as_str().unwrap().to_owned(),
    }
}

async fn replay(order: impl Fn(Vec<Recorded>) -> Vec<Recorded>, room: &str) {
    let session = session();
    let server = TestServer::start().await;
    let mut clients = std::collections::HashMap::new();
    for message in order(session.messages) {
        if !clients.contains_key(&message.from) {
            let (client, _) = server.connect(room, &message.from).await;
            clients.insert(message.from.clone(), client);
        }
        let client = clients.get_mut(&message.from).unwrap();
        client
            .send_raw(Message::text(message.msg.to_string()))
            .await;
    }
    // Each socket is ordered, so a pong means all of that page's messages are in.
    for client in clients.values_mut() {
        client
            .send_raw(Message::text(r#"{"type":"ping","timestamp":0}"#))
            .await;
        while !matches!(client.recv().await, ServerMessage::Pong { .. }) {}
    }
    // A sync request after everything, from each page, sees the merged text.
    for client in clients.values_mut() {
        client.send(&ClientMessage::SyncRequest).await;
        let text = loop {
            if let ServerMessage::Sync { data } = client.recv().await {
                break text_of_hex_state(&data);
            }
        };
        assert_eq!(text, session.final_text);
    }
    // And so does a late joiner.
    let (_late, greeting) = server.connect(room, "late").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("expected sync: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), session.final_text);
}

#[tokio::test]
async fn replaying_the_original_page_session_ends_with_its_merged_text() {
    replay(|messages| messages, "recorded").await;
}

#[tokio::test]
async fn the_merge_does_not_depend_on_arrival_order() {
    // All of Bob's messages first, then all of Alice's: the server still converges.
    replay(
        |messages| {
            let (mut bob, alice): (Vec<_>, Vec<_>) = messages
                .into_iter()
                .partition(|message| message.from.starts_with("9d8e"));
            bob.extend(alice);
            bob
        },
        "reordered",
    )
    .await;
}

#[tokio::test]
async fn the_other_page_receives_updates_it_can_apply_to_reach_the_same_text() {
    let session = session();
    let server = TestServer::start().await;
    let (mut sender, _) = server.connect("mirror", "replayer").await;
    let mut watcher = server.join("mirror", "watcher", "Watcher").await;
    let mut expected_updates = 0;
    for message in &session.messages {
        if message.msg["type"] == "update" {
            sender
                .send_raw(Message::text(message.msg.to_string()))
                .await;
            expected_updates += 1;
        }
    }
    sender.send(&ClientMessage::SyncRequest).await;
    let _ = sender.recv().await;
    let mut received = 0;
    while let Some(Message::Text(text)) = watcher.next_frame(QUIET).await {
        let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
        if let ServerMessage::Update { .. } = message {
            received += 1;
            watcher.apply_if_document(&message);
        }
    }
    assert!(received > 0 && received <= expected_updates);
    assert_eq!(watcher.content(), session.final_text);
}
