//! What the dashboard reads and serves: the page at `/` (or not, when turned off),
//! the per-second history, the last activity of rooms, and a room's text watched
//! without joining it.

use std::sync::Arc;
use std::time::Duration;

use coedit::api::{MetricsHistory, RoomText};
use coedit::server::store::memory::MemoryStore;
use serde_json::Value;

use crate::common::{eventually, TestServer, EXPECT};

async fn get_text(url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn the_page_and_its_files_are_served_from_the_binary_and_can_be_turned_off() {
    let server = TestServer::start().await;
    let root = format!("http://{}/", server.addr);
    let (status, html, headers) = get_text(&root).await;
    assert_eq!(status, 200);
    assert!(html.contains("<title>coedit</title>"), "{html}");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    for (path, kind) in [
        ("dashboard/dashboard.js", "text/javascript"),
        ("dashboard/dashboard.css", "text/css"),
    ] {
        assert!(html.contains(&format!("/{path}")), "the page loads {path}");
        let (status, body, headers) = get_text(&format!("{root}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty());
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
    }
    // Small, and nothing in it reaches beyond the server that serves it.
    let files = [
        include_str!("../../src/server/dashboard/index.html"),
        include_str!("../../src/server/dashboard/dashboard.js"),
        include_str!("../../src/server/dashboard/dashboard.css"),
    ];
    let weight: usize = files.iter().map(|file| file.len()).sum();
    assert!(weight < 64 * 1024, "the page weighs {weight} bytes");
    for file in files {
        // The SVG namespace is a name, not an address the browser fetches.
        let file = file.replace("http://www.w3.org/2000/svg", "");
        assert!(!file.contains("https://") && !file.contains("http://"));
    }
    server.stop().await;

    let server = TestServer::start_tweaked(
        |config| config.dashboard = false,
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (status, _, _) = get_text(&format!("http://{}/", server.addr)).await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200, "the API stays");
    server.stop().await;
}

#[tokio::test]
async fn the_history_gains_a_sample_a_second_and_answers_only_what_is_new() {
    let server = TestServer::start().await;
    let mut alice = server.join("history", "alice", "Alice").await;
    alice.type_text(0, "hello").await;
    let mut history = MetricsHistory {
        interval_seconds: 0,
        capacity: 0,
        samples: Vec::new(),
    };
    assert!(
        eventually(async || {
            let (_, body) = server.get("/metrics/history").await;
            history = serde_json::from_value(body).unwrap();
            // A second's message count and its latencies are taken a moment apart,
            // so the latency may land in the next sample.
            history.samples.iter().any(|sample| sample.messages > 0)
                && history
                    .samples
                    .iter()
                    .any(|sample| sample.p99_latency_ms > 0.0)
                && history.samples.len() >= 2
        })
        .await,
        "{history:?}"
    );
    assert_eq!((history.interval_seconds, history.capacity), (1, 900));
    let newest = history.samples.last().unwrap();
    assert_eq!(newest.connections, 1);
    assert_eq!(newest.rooms, 1);
    let pairs = history.samples.windows(2);
    assert!(pairs.into_iter().all(|pair| {
        let gap = pair[1].timestamp_ms - pair[0].timestamp_ms;
        (500..=1500).contains(&gap)
    }));

    let since = newest.timestamp_ms;
    let (_, body) = server.get(&format!("/metrics/history?since={since}")).await;
    let newer: MetricsHistory = serde_json::from_value(body).unwrap();
    assert!(newer
        .samples
        .iter()
        .all(|sample| sample.timestamp_ms > since));
    let (status, _) = server.get("/metrics/history?since=soon").await;
    assert_eq!(status, 400);
    alice.close().await;
    server.stop().await;
}

#[tokio::test]
async fn rooms_report_their_last_activity() {
    let server = TestServer::start().await;
    let alice = server.join("busy", "alice", "Alice").await;
    let listed = async || -> Value {
        let (_, rooms) = server.get("/rooms").await;
        rooms[0].clone()
    };
    assert!(eventually(async || listed().await["last_activity"].is_string()).await);
    let stamp = listed().await["last_activity"].as_str().unwrap().to_owned();
    let parsed = chrono::DateTime::parse_from_rfc3339(&stamp).unwrap();
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(age.num_seconds().abs() < 5, "{stamp}");
    let (_, room) = server.get("/rooms/busy").await;
    assert_eq!(room["last_activity"], Value::String(stamp));
    alice.close().await;
    server.stop().await;
}

/// Reads server-sent events from `response` until one of type `kind` satisfies
/// `wanted`; returns its data.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    kind: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let read = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if event == kind && wanted(&data) {
                    return data;
                }
            }
            let chunk = response.chunk().await.unwrap().expect("stream ended");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(EXPECT, read)
        .await
        .expect("no such event")
}

#[tokio::test]
async fn a_watcher_sees_the_text_as_it_is_typed_without_joining_the_room() {
    let server = TestServer::start().await;
    let mut alice = server.join("watched", "alice", "Alice").await;
    alice.type_text(0, "Hi").await;

    let mut stream = reqwest::get(server.http("/rooms/watched/stream"))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buffer = String::new();
    let first = next_event(&mut stream, &mut buffer, "text", |_| true).await;
    let first: RoomText = serde_json::from_str(&first).unwrap();
    assert_eq!(first.text, "Hi");
    assert!(first.loaded);
    let users = next_event(&mut stream, &mut buffer, "users", |_| true).await;
    assert!(users.contains("Alice"), "{users}");

    alice.type_text(2, " there").await;
    let typed = next_event(&mut stream, &mut buffer, "text", |data| {
        data.contains("Hi there")
    })
    .await;
    let typed: RoomText = serde_json::from_str(&typed).unwrap();
    assert!(typed.revision > first.revision);
    alice.delete_text(0, 3).await;
    next_event(&mut stream, &mut buffer, "text", |data| {
        data.contains(r#""text":"there""#)
    })
    .await;

    // The watcher is nobody in the room.
    let (_, users) = server.get("/rooms/watched/users").await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    let (_, room) = server.get("/rooms/watched").await;
    assert_eq!(room["connections"], 1);
    alice.expect_silence().await;

    let (status, text) = server.get("/rooms/watched/text").await;
    assert_eq!(status, 200);
    assert_eq!(text["text"], "there");
    let (status, nothing) = server.get("/rooms/never-was/text").await;
    assert_eq!(status, 200);
    assert_eq!(
        (nothing["loaded"].clone(), nothing["text"].clone()),
        (false.into(), "".into())
    );

    // A room that is not in memory is reported as such, and watching does not load it.
    let mut elsewhere = reqwest::get(server.http("/rooms/nowhere/stream"))
        .await
        .unwrap();
    let mut other = String::new();
    let absent = next_event(&mut elsewhere, &mut other, "text", |_| true).await;
    assert!(absent.contains(r#""loaded":false"#), "{absent}");
    let (_, rooms) = server.get("/rooms").await;
    assert_eq!(rooms.as_array().unwrap().len(), 1);

    alice.close().await;
    // Open streams end with the server instead of holding up its shutdown.
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown waited for a watcher");
}

#[tokio::test]
async fn watching_and_history_follow_the_admin_token_rules() {
    let server = TestServer::start_tweaked(
        |config| config.admin_token = Some("k".into()),
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (_, info) = server.get("/").await;
    assert_eq!(info["admin_token_required"], true);
    for path in ["/rooms/a/stream", "/rooms/a/text", "/metrics/events?room=a"] {
        let (status, _) = server.get(path).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = server.get("/metrics/history").await;
    assert_eq!(status, 200, "open, like /api/metrics");
    let response = reqwest::Client::new()
        .get(server.http("/rooms/a/stream"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    server.stop().await;

    let open = TestServer::start().await;
    let (_, info) = open.get("/").await;
    assert_eq!(info["admin_token_required"], false);
    open.stop().await;
}

#[tokio::test]
async fn the_event_log_can_be_read_per_room() {
    let server = TestServer::start().await;
    let alice = server.join("one", "alice", "Alice").await;
    let bob = server.join("two", "bob", "Bob").await;
    let (_, events) = server.get("/metrics/events?room=two").await;
    let events = events.as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|event| event["room_id"] == "two"));
    let (_, limited) = server.get("/metrics/events?room=two&limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["details"], "User Bob joined");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_watcher_is_shown_a_change_only_once_the_store_has_it() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start_with(
        coedit::server::Config::for_tests(),
        store.clone() as Arc<dyn coedit::server::store::Store>,
    )
    .await;
    let mut alice = server.join("durable", "alice", "Alice").await;
    alice.type_text(0, "kept").await;
    let mut stream = reqwest::get(server.http("/rooms/durable/stream"))
        .await
        .unwrap();
    let mut buffer = String::new();
    next_event(&mut stream, &mut buffer, "text", |data| {
        data.contains(r#""text":"kept""#)
    })
    .await;

    store.set_failing(true);
    alice.type_text(4, " unwritten").await;
    let early = tokio::time::timeout(
        Duration::from_millis(600),
        next_event(&mut stream, &mut buffer, "text", |data| {
            data.contains("unwritten")
        }),
    )
    .await;
    assert!(early.is_err(), "shown before the store had it: {early:?}");

    store.set_failing(false);
    next_event(&mut stream, &mut buffer, "text", |data| {
        data.contains("kept unwritten")
    })
    .await;
    alice.close().await;
    server.stop().await;
}
