//! Who may do what, and every limit: each refusal is clear and loses nothing.

use std::sync::Arc;
use std::time::Duration;

use coedit::api::{ClientMessage, ServerMessage};
use coedit::server::auth;
use coedit::server::store::memory::MemoryStore;
use coedit::server::Config;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::common::*;

async fn server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_tweaked(tweak, Arc::new(MemoryStore::new())).await
}

/// The HTTP status a WebSocket upgrade was refused with, or 101 if it was accepted.
async fn upgrade_status(url: &str, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

async fn wait_for_close(client: &mut Client) -> Option<u16> {
    while let Some(frame) = client.next_frame(EXPECT).await {
        if let Message::Close(frame) = frame {
            return frame.map(|frame| u16::from(frame.code));
        }
    }
    None
}

#[tokio::test]
async fn the_admin_token_guards_admin_endpoints_and_leaves_the_page_endpoints_open() {
    let server = server_with(|config| config.admin_token = Some("let-me-in".into())).await;
    let client = reqwest::Client::new();
    let guarded = [
        (Method::GET, "/rooms"),
        (Method::GET, "/rooms/r"),
        (Method::GET, "/rooms/r/users"),
        (Method::POST, "/rooms/r/persist"),
        (Method::GET, "/rooms/r/load"),
        (Method::POST, "/simulate/users/r?count=1"),
        (Method::DELETE, "/simulate/users/r"),
        (Method::GET, "/metrics/events"),
        (Method::GET, "/cluster"),
    ];
    for (method, path) in &guarded {
        for token in [None, Some("wrong"), Some("let-me-i")] {
            let mut request = client.request(method.clone(), server.http(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("admin token"));
        }
        let response = client
            .request(method.clone(), server.http(path))
            .bearer_auth("let-me-in")
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 401, "{method} {path} with the token");
    }
    for path in ["/", "/health", "/metrics", "/metrics/prometheus"] {
        assert_eq!(
            reqwest::get(server.http(path)).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let _page = server.join("open", "page", "Page").await;
}

#[tokio::test]
async fn room_tokens_are_checked_before_the_upgrade() {
    let secret = "room-secret";
    let server = server_with(|config| config.auth_secret = Some(secret.into())).await;
    let url = |room: &str, token: &str| format!("{}&token={token}", server.ws_url(room, "u"));
    let hour = Duration::from_secs(3600);

    let good = auth::mint(secret, vec!["notes".into()], false, hour, None).unwrap();
    assert_eq!(upgrade_status(&url("notes", &good), None).await, 101);
    assert_eq!(
        upgrade_status(&server.ws_url("notes", "u"), None).await,
        401,
        "no token"
    );
    assert_eq!(
        upgrade_status(&url("other", &good), None).await,
        403,
        "wrong room"
    );
    let foreign = auth::mint("another-secret", vec!["notes".into()], false, hour, None).unwrap();
    assert_eq!(
        upgrade_status(&url("notes", &foreign), None).await,
        401,
        "wrong key"
    );
    let mut tampered = good.clone();
    tampered.insert(good.len() / 2, 'x');
    assert_eq!(
        upgrade_status(&url("notes", &tampered), None).await,
        401,
        "tampered"
    );

    let expired = auth::mint(secret, vec!["notes".into()], false, Duration::ZERO, None).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        upgrade_status(&url("notes", &expired), None).await,
        401,
        "expired"
    );

    // The y-protocols endpoint is guarded the same way.
    let yjs = format!("ws://{}/api/yjs/notes", server.addr);
    assert_eq!(upgrade_status(&yjs, None).await, 401);
    assert_eq!(
        upgrade_status(&format!("{yjs}?token={good}"), None).await,
        101
    );
}

#[tokio::test]
async fn a_read_only_client_syncs_but_cannot_write() {
    let secret = "room-secret";
    let server = server_with(|config| config.auth_secret = Some(secret.into())).await;
    let hour = Duration::from_secs(3600);
    let writer_token = auth::mint(secret, vec!["*".into()], false, hour, None).unwrap();
    let reader_token = auth::mint(secret, vec!["*".into()], true, hour, None).unwrap();

    let mut writer = Client::connect(
        &format!("{}&token={writer_token}", server.ws_url("ro", "writer")),
        "writer",
    )
    .await;
    let _ = writer.recv().await;
    writer.type_text(0, "official").await;
    writer.send(&ClientMessage::SyncRequest).await;
    let _ = writer.recv().await;

    let mut reader = Client::connect(
        &format!("{}&token={reader_token}", server.ws_url("ro", "reader")),
        "reader",
    )
    .await;
    let ServerMessage::Sync { data } = reader.recv().await else {
        panic!("a read-only client still gets the document");
    };
    assert_eq!(text_of_hex_state(&data), "official");
    let _users = reader.recv().await;
    reader.apply_hex(&data);
    reader.type_text(0, "graffiti ").await;
    assert_eq!(
        reader.recv().await,
        ServerMessage::Error {
            message: "read-only access: updates are not accepted".into()
        }
    );
    writer.expect_silence().await;
    writer.send(&ClientMessage::SyncRequest).await;
    let ServerMessage::Sync { data } = writer.recv().await else {
        panic!("expected sync");
    };
    assert_eq!(text_of_hex_state(&data), "official");
}

#[tokio::test]
async fn websocket_origins_are_checked_when_cors_is_restricted() {
    let server =
        server_with(|config| config.cors_origins = vec!["https://editor.example".into()]).await;
    let url = server.ws_url("origin", "u");
    assert_eq!(
        upgrade_status(&url, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(&url, Some("https://editor.example")).await,
        101
    );
    // Non-browser clients send no Origin; they are not the cross-site threat.
    assert_eq!(upgrade_status(&url, None).await, 101);
    // A page served by the same host and port as the API (behind one proxy, say)
    // is no other site, whatever CORS_ORIGINS lists; a different port is.
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        upgrade_status(&url, Some(&format!("http://{host}"))).await,
        101
    );
    assert_eq!(
        upgrade_status(&url, Some(&format!("https://{host}"))).await,
        101
    );
    assert_eq!(upgrade_status(&url, Some("http://127.0.0.1:1")).await, 403);
}

/// The original's CORS middleware allowed credentials: a page that sends cookies
/// with its requests (`credentials: 'include'`) reads the answers.
#[tokio::test]
async fn cors_allows_credentials_like_the_original() {
    for (origins, page) in [
        (vec!["*".to_owned()], "https://any.example"),
        (
            vec!["https://editor.example".to_owned()],
            "https://editor.example",
        ),
    ] {
        let server = server_with(|config| config.cors_origins = origins.clone()).await;
        let client = reqwest::Client::new();
        let preflight = client
            .request(reqwest::Method::OPTIONS, server.http("/rooms"))
            .header("Origin", page)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type, x-custom")
            .send()
            .await
            .unwrap();
        let headers = preflight.headers();
        assert_eq!(headers["access-control-allow-origin"], page, "{origins:?}");
        assert_eq!(headers["access-control-allow-credentials"], "true");
        let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed_headers.contains("x-custom"), "{allowed_headers}");
        let simple = client
            .get(server.http("/rooms"))
            .header("Origin", page)
            .send()
            .await
            .unwrap();
        assert_eq!(simple.headers()["access-control-allow-origin"], page);
        assert_eq!(simple.headers()["access-control-allow-credentials"], "true");
    }
    // An origin not listed gets no permission.
    let server =
        server_with(|config| config.cors_origins = vec!["https://editor.example".into()]).await;
    let answer = reqwest::Client::new()
        .get(server.http("/rooms"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(answer
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn bad_room_ids_are_refused() {
    let server = TestServer::start().await;
    let long = "x".repeat(129);
    assert_eq!(upgrade_status(&server.ws_url(&long, "u"), None).await, 400);
    assert_eq!(
        upgrade_status(&server.ws_url("tab%09bed", "u"), None).await,
        400
    );
    // Browsers and HTTP clients resolve these as path steps: no URL names them.
    for dots in [".", ".."] {
        assert_eq!(upgrade_status(&server.ws_url(dots, "u"), None).await, 400);
    }
    assert_eq!(upgrade_status(&server.ws_url("...", "u"), None).await, 101);
    assert_eq!(
        upgrade_status(&server.ws_url(&"x".repeat(128), "u"), None).await,
        101
    );
}

#[tokio::test]
async fn connection_caps_refuse_with_503_before_the_upgrade() {
    let server = server_with(|config| {
        config.max_connections = 3;
        config.max_connections_per_room = 2;
    })
    .await;
    let (_a, _) = server.connect("capped", "a").await;
    let (_b, _) = server.connect("capped", "b").await;
    assert_eq!(
        upgrade_status(&server.ws_url("capped", "c"), None).await,
        503
    );
    let (_c, _) = server.connect("elsewhere", "c").await;
    assert_eq!(
        upgrade_status(&server.ws_url("third", "d"), None).await,
        503
    );
}

/// Client ids arriving together at a room not yet in memory are counted against
/// `--max-room-users` once it is loaded: past the limit they are closed with 1013,
/// as the ones arriving at a loaded room are refused with 503 before the upgrade.
#[tokio::test]
async fn the_user_cap_holds_for_a_room_loaded_by_its_first_connections() {
    let server = server_with(|config| config.max_room_users = 2).await;
    let attempts: Vec<_> = (0..10)
        .map(|index| {
            let url = server.ws_url("cold", &format!("user-{index}"));
            tokio::spawn(async move {
                // Refused before the upgrade once the room is in memory.
                let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                    return Some(503);
                };
                // Admitted: greeted with the room's users; refused: closed.
                loop {
                    match tokio::time::timeout(EXPECT, socket.next()).await {
                        Ok(Some(Ok(Message::Close(frame)))) => {
                            return frame.map(|frame| u16::from(frame.code));
                        }
                        Ok(Some(Ok(Message::Text(text)))) if text.contains("\"users\"") => {
                            // Stay connected until every attempt is decided.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            return Some(0);
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => return None,
                    }
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    let admitted = outcomes
        .iter()
        .filter(|outcome| **outcome == Some(0))
        .count();
    let refused = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Some(1013 | 503)))
        .count();
    assert_eq!((admitted, refused), (2, 8), "{outcomes:?}");
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection_and_the_room_is_untouched() {
    let server = server_with(|config| config.max_message_bytes = 64 * 1024).await;
    let mut alice = server.join("frames", "alice", "Alice").await;
    alice.type_text(0, "small").await;
    let mut mallory = server.join("frames", "mallory", "Mallory").await;
    mallory
        .send_raw(Message::text(format!(
            r#"{{"type":"update","data":"{}"}}"#,
            "00".repeat(64 * 1024)
        )))
        .await;
    assert_eq!(wait_for_close(&mut mallory).await, Some(1009));
    alice.send(&ClientMessage::SyncRequest).await;
    let sync = loop {
        if let ServerMessage::Sync { data } = alice.recv().await {
            break data;
        }
    };
    assert_eq!(text_of_hex_state(&sync), "small");
}

#[tokio::test]
async fn a_document_cannot_grow_past_its_limit() {
    let server = server_with(|config| config.max_document_bytes = 4096).await;
    let mut alice = server.join("capped-doc", "alice", "Alice").await;
    let mut bob = server.join("capped-doc", "bob", "Bob").await;
    let _ = alice.recv().await;
    alice.type_text(0, &"a".repeat(1000)).await;
    let first = bob.recv().await;
    bob.apply_if_document(&first);

    alice.type_text(1000, &"b".repeat(5000)).await;
    let ServerMessage::Error { message } = alice.recv().await else {
        panic!("an update past the limit must be refused");
    };
    assert!(message.contains("limit of 4096 bytes"), "{message}");
    bob.expect_silence().await;
    bob.send(&ClientMessage::SyncRequest).await;
    let ServerMessage::Sync { data } = bob.recv().await else {
        panic!("expected sync");
    };
    assert_eq!(text_of_hex_state(&data), "a".repeat(1000));
}

#[tokio::test]
async fn a_flooding_client_is_refused_then_closed() {
    let server = server_with(|config| {
        // One token a second: the burst cannot refill while the test sends.
        config.rate_limit_per_sec = 1;
        config.rate_limit_burst = 5;
    })
    .await;
    let (mut flooder, _) = server.connect("flood", "flooder").await;
    for _ in 0..5 {
        flooder
            .send_raw(Message::text(r#"{"type":"ping","timestamp":1}"#))
            .await;
    }
    for _ in 0..5 {
        assert!(matches!(flooder.recv().await, ServerMessage::Pong { .. }));
    }
    flooder
        .send_raw(Message::text(r#"{"type":"ping","timestamp":1}"#))
        .await;
    assert_eq!(
        flooder.recv().await,
        ServerMessage::Error {
            message: "rate limit exceeded: message dropped".into()
        }
    );
    // Keep going well past the rate: the connection is closed with 1008.
    for _ in 0..200 {
        if flooder
            .socket
            .send(Message::text(r#"{"type":"ping","timestamp":1}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(wait_for_close(&mut flooder).await, Some(1008));
}

#[tokio::test]
async fn pings_count_against_the_rate_limit() {
    let server = server_with(|config| {
        config.rate_limit_per_sec = 1;
        config.rate_limit_burst = 5;
    })
    .await;
    let mut alice = server.join("pinged", "alice", "Alice").await;
    let (mut pinger, _) = server.connect("pinged", "pinger").await;
    // Far past the burst and the refusals tolerated: closed with 1008.
    for _ in 0..200 {
        if pinger
            .socket
            .send(Message::Ping(vec![1; 16].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(wait_for_close(&mut pinger).await, Some(1008));
    // The room is unaffected.
    alice.send(&ClientMessage::SyncRequest).await;
    loop {
        if let ServerMessage::Sync { .. } = alice.recv().await {
            break;
        }
    }
}

#[tokio::test]
async fn simulated_users_stop_at_the_room_limit() {
    let server = server_with(|config| config.max_room_users = 5).await;
    let _alice = server.join("full", "alice", "Alice").await;
    let (status, _) = server
        .send(Method::POST, "/simulate/users/full?count=4")
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .send(Method::POST, "/simulate/users/full?count=1")
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("limit of 5 users"));
    assert_eq!(
        upgrade_status(&server.ws_url("full", "bob"), None).await,
        503
    );
    // Another connection of a user already present is not a new user.
    assert_eq!(
        upgrade_status(&server.ws_url("full", "alice"), None).await,
        101
    );
}

/// Health is open to probes; with an admin token configured, the rooms the store
/// refuses are counted there, and named only for the token's holder.
#[tokio::test]
async fn health_names_refused_rooms_only_to_the_admin() {
    let store = MemoryStore::new();
    let server = TestServer::start_tweaked(
        |config| config.admin_token = Some("let-me-in".into()),
        Arc::new(store.clone()),
    )
    .await;
    store.refuse_room("poison-ivy");
    let mut pia = server.join("poison-ivy", "pia", "Pia").await;
    pia.type_incremental(0, "x").await;
    let health = |token: Option<&'static str>| {
        let url = server.http("/health");
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().text().await.unwrap()
        }
    };
    let refused = eventually(async || health(Some("let-me-in")).await.contains("poison-ivy")).await;
    assert!(refused, "{}", health(Some("let-me-in")).await);
    let open = health(None).await;
    assert!(!open.contains("poison-ivy"), "{open}");
    assert!(
        open.contains("\"degraded\"") && open.contains("1 rooms"),
        "{open}"
    );
}
