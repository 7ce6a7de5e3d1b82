//! Every REST endpoint of spec §6, with the original's field names.

use std::sync::Arc;

use coedit::api::ServerMessage;
use coedit::server::store::memory::MemoryStore;
use reqwest::Method;
use serde_json::json;

use super::common::*;

#[tokio::test]
async fn root_and_health() {
    let server = TestServer::start().await;
    let (status, root) = server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(
        root["message"],
        "CoEdit - Real-time Collaborative Editor API"
    );

    let (status, health) = server.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    let timestamp = health["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "{timestamp}"
    );
    assert_eq!(health["store"]["state"], "healthy");
}

#[tokio::test]
async fn metrics_have_every_original_field_and_count_what_happened() {
    let server = TestServer::start().await;
    let mut alice = server.join("metrics", "alice", "Alice").await;
    let _bob = server.join("metrics", "bob", "Bob").await;
    let _ = alice.recv().await;
    let state_len = alice.type_text(0, "measured").await;
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"ping"}"#,
        ))
        .await;
    let _ = alice.recv().await;

    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for field in [
        "active_connections",
        "messages_per_sec",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "max_latency_ms",
        "error_count",
        "reconnect_count",
        "total_doc_size_bytes",
        "uptime_seconds",
        "total_messages",
        "rooms_active",
    ] {
        assert!(
            metrics.get(field).is_some_and(|v| v.is_number()),
            "{field} missing: {metrics}"
        );
    }
    assert_eq!(metrics["active_connections"], 2);
    assert_eq!(metrics["rooms_active"], 1);
    assert!(metrics["total_messages"].as_u64().unwrap() >= 4);
    assert!(metrics["p50_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        metrics["max_latency_ms"].as_f64().unwrap() >= metrics["p99_latency_ms"].as_f64().unwrap()
    );
    assert_eq!(
        metrics["total_doc_size_bytes"].as_u64().unwrap(),
        state_len as u64
    );
}

#[tokio::test]
async fn prometheus_export_carries_the_same_figures() {
    let server = TestServer::start().await;
    let _alice = server.join("prom", "alice", "Alice").await;
    let response = reqwest::get(server.http("/metrics/prometheus"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("coedit_active_connections 1"), "{body}");
    assert!(body.contains("coedit_messages_total"), "{body}");
    assert!(body.contains("coedit_latency_p99_ms"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
}

#[tokio::test]
async fn events_are_logged_and_limit_is_validated() {
    let server = TestServer::start().await;
    let alice = server.join("events", "alice", "Alice").await;
    alice.close().await;
    let (status, events) = server.get("/metrics/events?limit=2").await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    for key in ["id", "timestamp", "type", "room_id", "user_id", "details"] {
        assert!(events[0].get(key).is_some(), "{key} missing");
    }
    let (_, all) = server.get("/metrics/events").await;
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"connect") && kinds.contains(&"join"),
        "{kinds:?}"
    );

    for bad in ["0", "-1", "abc", "100000"] {
        let (status, body) = server.get(&format!("/metrics/events?limit={bad}")).await;
        assert_eq!(status, 400, "limit={bad}");
        assert_eq!(body["success"], false);
        assert!(body["error"].as_str().unwrap().contains("limit"));
    }
}

#[tokio::test]
async fn rooms_are_listed_with_their_users_and_bad_room_ids_are_400() {
    let server = TestServer::start().await;
    let mut alice = server.join("listed", "alice", "Alice").await;
    let state_len = alice.type_text(0, "abc").await;

    let alice_json = json!({"id":"alice","name":"Alice","color":"#3B82F6","avatar_url":null,
                            "cursor_position":null,"selection":null,"simulated":false});
    let (status, rooms) = server.get("/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(
        rooms,
        json!([{"id":"listed","name":"listed","user_count":1,"doc_size":state_len,
                "users":[alice_json.clone()],
                "connections":1,"exists":true}])
    );
    let (status, room) = server.get("/rooms/listed").await;
    assert_eq!(status, 200);
    assert_eq!(room, rooms[0]);

    let (status, users) = server.get("/rooms/listed/users").await;
    assert_eq!(status, 200);
    assert_eq!(users, json!([alice_json]));

    let long = "r".repeat(200);
    let (status, _) = server.get(&format!("/rooms/{long}")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn persist_then_load_restores_exactly_the_checkpoint() {
    let server = TestServer::start().await;
    let mut alice = server.join("checkpoint", "alice", "Alice").await;
    alice.type_text(0, "saved").await;

    let (status, persisted) = server.send(Method::POST, "/rooms/checkpoint/persist").await;
    assert_eq!(status, 200);
    assert_eq!(persisted["success"], true);
    let size = persisted["size"].as_u64().unwrap();
    assert!(size > 0 && size % 2 == 0, "size is the hex length: {size}");

    alice.type_text(5, " and then more").await;
    // The restore is a change like any other: an edit still on its way would be
    // concurrent with it and kept, so wait until the room has this one.
    let arrived = eventually(async || {
        let text = reqwest::get(server.http("/rooms/checkpoint/document?format=text"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text == "saved and then more"
    })
    .await;
    assert!(arrived);
    let (status, loaded) = server.send(Method::GET, "/rooms/checkpoint/load").await;
    assert_eq!(status, 200);
    assert_eq!(loaded, json!({"success": true, "size": size}));

    // A client connecting now is synced to exactly the checkpoint, not a merge.
    let (_bob, greeting) = server.connect("checkpoint", "bob").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("expected sync: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), "saved");
}

#[tokio::test]
async fn persist_and_load_say_success_false_when_there_is_nothing() {
    let server = TestServer::start().await;
    let (status, body) = server.send(Method::POST, "/rooms/empty/persist").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": false, "error": "No document found"})
    );
    let (_, body) = server.send(Method::GET, "/rooms/empty/load").await;
    assert_eq!(body["success"], false);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("No saved document"));
}

#[tokio::test]
async fn simulated_users_are_announced_listed_and_removed() {
    let server = TestServer::start().await;
    let mut alice = server.join("sim", "alice", "Alice").await;

    let (status, added) = server
        .send(Method::POST, "/simulate/users/sim?count=3")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        added,
        json!({"success": true, "simulated_users": 3, "total_users": 4})
    );
    let mut simulated_ids = Vec::new();
    for _ in 0..3 {
        let joined = alice.recv_value().await;
        assert_eq!(joined["type"], "user_joined");
        assert_eq!(joined["simulated"], true);
        assert!(joined["name"].is_string() && joined["color"].is_string());
        simulated_ids.push(joined["userId"].as_str().unwrap().to_owned());
    }
    let (_, users) = server.get("/rooms/sim/users").await;
    assert_eq!(
        users
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["simulated"] == true)
            .count(),
        3
    );

    let (status, removed) = server.send(Method::DELETE, "/simulate/users/sim").await;
    assert_eq!(status, 200);
    assert_eq!(removed, json!({"success": true, "removed": 3}));
    let mut left = Vec::new();
    for _ in 0..3 {
        let message = alice.recv_value().await;
        assert_eq!(message["type"], "user_left");
        left.push(message["userId"].as_str().unwrap().to_owned());
    }
    left.sort();
    simulated_ids.sort();
    assert_eq!(left, simulated_ids);
}

#[tokio::test]
async fn simulate_count_is_validated() {
    let store = Arc::new(MemoryStore::new());
    let server =
        TestServer::start_tweaked(|config| config.max_simulated_per_request = 50, store).await;
    for bad in ["0", "51", "-3", "ten"] {
        let (status, body) = server
            .send(Method::POST, &format!("/simulate/users/r?count={bad}"))
            .await;
        assert_eq!(status, 400, "count={bad}");
        assert!(body["error"].as_str().unwrap().contains("count"), "{body}");
    }
    let (status, body) = server.send(Method::POST, "/simulate/users/r").await;
    assert_eq!(status, 200);
    assert_eq!(body["simulated_users"], 10, "the original's default count");
}
