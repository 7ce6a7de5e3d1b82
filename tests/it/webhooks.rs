//! Webhooks against a real HTTP receiver in the test: a room's life arrives as
//! signed events, `document.changed` is debounced, and a receiver that is down
//! neither slows editing nor loses the events once it is back.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use coedit::api::ServerMessage;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message as Frame;
use yrs::updates::encoder::Encode;

use super::common::*;
use super::durability::join;
use super::mongo_env::*;

const SECRET: &str = "whsec-test-secret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) event: String,
    delivery: String,
    signature: String,
    body: Bytes,
    /// The status the receiver answered with.
    accepted: bool,
}

impl Received {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server on 127.0.0.1 that records every POST and answers with the
/// status it is told to.
#[derive(Clone)]
pub(super) struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    port: u16,
}

async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let status = StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).unwrap();
    receiver.received.lock().unwrap().push(Received {
        event: header("x-coedit-event"),
        delivery: header("x-coedit-delivery"),
        signature: header("x-coedit-signature"),
        body,
        accepted: status.is_success(),
    });
    status
}

impl Receiver {
    pub(super) async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(status)),
            port: listener.local_addr().unwrap().port(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub(super) fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/hook?token=kept-out-of-health",
            self.port
        )
    }

    /// The events accepted so far (answered 2xx), in arrival order.
    pub(super) fn accepted(&self) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received.iter().filter(|r| r.accepted).cloned().collect()
    }

    fn accepted_of(&self, kind: &str) -> Vec<Value> {
        self.accepted()
            .iter()
            .filter(|received| received.event == kind)
            .map(Received::json)
            .collect()
    }

    /// Waits up to `within` for `condition` on the accepted events.
    async fn wait_for(&self, within: Duration, condition: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if condition(&self.accepted()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Checks the signature header against `secret`: `t=<secs>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`, computed here from the received bytes.
fn signed_with(received: &Received, secret: &str) -> bool {
    let Some((t, v1)) = received
        .signature
        .split_once(",v1=")
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1)))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.body);
    let Ok(claimed) = hex::decode(v1) else {
        return false;
    };
    mac.verify_slice(&claimed).is_ok()
}

fn webhook_server_args(dir: &std::path::Path, urls: &[String]) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--webhook-secret".to_owned(),
        SECRET.to_owned(),
        "--idle-unload-secs".to_owned(),
        "1".to_owned(),
    ];
    for url in urls {
        args.push("--webhook-url".to_owned());
        args.push(url.clone());
    }
    args
}

async fn get(server: &CoeditProcess, path: &str) -> Value {
    let response = reqwest::get(format!("http://{}/api{path}", server.base()))
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

#[tokio::test]
async fn a_rooms_life_arrives_as_signed_events_and_typing_is_debounced() {
    let receiver = Receiver::start(200).await;
    let dir = temp_dir("webhooks");
    let server = CoeditProcess::start(&webhook_server_args(&dir, &[receiver.url()])).await;
    let base = server.base();

    // Ada joins and types 50 keystrokes as fast as the socket takes them.
    let mut ada = join(&base, "hooked", "Ada").await;
    let typing = Instant::now();
    for index in 0..50 {
        ada.type_incremental(index, "x").await;
    }
    let typed_in = typing.elapsed();
    assert!(
        eventually(
            async || get(&server, "/rooms/hooked/document?format=text").await == "x".repeat(50)
        )
        .await
    );
    let latest = get(&server, "/rooms/hooked/history").await["versions"][0]["seq"]
        .as_u64()
        .unwrap();
    // The last `document.changed` carries the final sequence number and length;
    // with the default 2 s debounce, 50 keystrokes make one to three of them.
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |events| events.iter().any(
                |event| { event.event == "document.changed" && event.json()["seq"] == latest }
            ))
            .await,
        "no document.changed with seq {latest}: {:?}",
        receiver.accepted_of("document.changed")
    );
    let changed = receiver.accepted_of("document.changed");
    assert!(
        (1..=3).contains(&changed.len()),
        "typed in {typed_in:?}: {changed:?}"
    );
    let last = changed.last().unwrap();
    assert_eq!(
        (&last["seq"], &last["text_length"]),
        (&latest.into(), &50.into())
    );

    // A y-websocket editor introduces itself through its awareness state.
    let (mut yan, _) = tokio_tungstenite::connect_async(format!("ws://{base}/api/yjs/hooked"))
        .await
        .unwrap();
    let state = r##"{"user":{"name":"Yan","color":"#30bced"}}"##;
    yan.send(Frame::binary(
        super::yjs::awareness(77, 1, state).encode_v1(),
    ))
    .await
    .unwrap();
    let is_yan = |event: &Received| event.event == "user.joined" && event.json()["name"] == "Yan";
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |events| events.iter().any(is_yan))
            .await,
        "no user.joined for a y-websocket user"
    );
    let yan_id = receiver
        .accepted()
        .into_iter()
        .find(is_yan)
        .map(|event| event.json()["user_id"].clone())
        .unwrap();
    assert_eq!(
        receiver.accepted().into_iter().find(is_yan).unwrap().json()["color"],
        "#30bced"
    );
    yan.close(None).await.unwrap();
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |events| events.iter().any(
                |event| { event.event == "user.left" && event.json()["user_id"] == yan_id }
            ))
            .await,
        "no user.left for the y-websocket user {yan_id}"
    );

    // Ada leaves; the room is unloaded a second later.
    ada.close().await;
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |events| events
                .iter()
                .any(|event| event.event == "room.unloaded"))
            .await,
        "no room.unloaded"
    );

    // Bob's room is deleted while he is in it.
    let mut bob = join(&base, "doomed", "Bob").await;
    bob.type_incremental(0, "gone soon").await;
    assert!(
        eventually(
            async || get(&server, "/rooms/doomed/document?format=text").await == "gone soon"
        )
        .await
    );
    let deleted = reqwest::Client::new()
        .delete(format!("http://{base}/api/rooms/doomed"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |events| events
                .iter()
                .any(|event| event.event == "room.deleted"))
            .await
    );

    let events = receiver.accepted();
    let hooked: Vec<(String, Value)> = events
        .iter()
        .map(|event| (event.event.clone(), event.json()))
        .filter(|(_, body)| body["room_id"] == "hooked")
        .collect();
    let kinds: Vec<&str> = hooked.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"room.loaded"), "{kinds:?}");
    assert_eq!(kinds.get(1), Some(&"user.joined"), "{kinds:?}");
    let tail: Vec<&str> = kinds[kinds.len() - 2..].to_vec();
    assert_eq!(tail, ["user.left", "room.unloaded"], "{kinds:?}");
    let joined = &hooked[1].1;
    assert_eq!(
        (&joined["user_id"], &joined["name"], &joined["color"]),
        (&"Ada".into(), &"Ada".into(), &"#10B981".into())
    );
    assert_eq!(hooked[kinds.len() - 2].1["user_id"], "Ada");
    let doomed = receiver.accepted_of("room.deleted");
    assert_eq!(
        (&doomed[0]["room_id"], &doomed[0]["closed_connections"]),
        (&"doomed".into(), &1.into())
    );

    // Every delivery: signed with the secret (and not with another), timestamped
    // now, its headers agreeing with its body.
    let now = chrono::Utc::now().timestamp();
    for event in &events {
        assert!(signed_with(event, SECRET), "{event:?}");
        assert!(!signed_with(event, "another secret"), "{event:?}");
        let t: i64 = event.signature[2..event.signature.find(',').unwrap()]
            .parse()
            .unwrap();
        assert!((now - t).abs() < 120, "timestamp {t} vs now {now}");
        let body = event.json();
        assert_eq!(body["type"], event.event.as_str());
        assert_eq!(body["id"], event.delivery.as_str());
        assert!(uuid::Uuid::parse_str(&event.delivery).is_ok(), "{event:?}");
        assert!(!body["node_id"].as_str().unwrap().is_empty(), "{body}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["time"].as_str().unwrap()).is_ok(),
            "{body}"
        );
    }
    let status = get(&server, "/health").await;
    assert_eq!(status["webhooks"]["state"], "healthy", "{status}");
    // Counted once the receiver's answer is in, so possibly a moment later.
    assert!(
        eventually(
            async || get(&server, "/metrics").await["webhooks_delivered"]
                == receiver.accepted().len()
        )
        .await
    );
    assert_eq!(get(&server, "/metrics").await["webhooks_dropped"], 0);
    drop(bob);
}

#[tokio::test]
async fn a_receiver_that_is_down_slows_nothing_and_gets_its_events_once_back() {
    let receiver = Receiver::start(500).await;
    // A second URL where nothing listens: it fails on its own.
    let closed_port = free_port();
    let dir = temp_dir("webhooks-down");
    let server = CoeditProcess::start(&webhook_server_args(
        &dir,
        &[
            receiver.url(),
            format!("http://127.0.0.1:{closed_port}/hook"),
        ],
    ))
    .await;
    let base = server.base();
    let mut ada = join(&base, "down", "Ada").await;
    let mut bob = join(&base, "down", "Bob").await;

    // Every keystroke reaches Bob promptly while every delivery fails.
    let mut slowest = Duration::ZERO;
    for index in 0..20 {
        let sent = Instant::now();
        ada.type_incremental(index, "y").await;
        loop {
            let message = bob.recv().await;
            bob.apply_if_document(&message);
            if matches!(message, ServerMessage::Update { .. }) {
                break;
            }
        }
        slowest = slowest.max(sent.elapsed());
    }
    assert_eq!(bob.content(), "y".repeat(20));
    // Generous for a loaded 2-core machine; a relay waiting on a webhook POST
    // would take the 5 s POST timeout or the retry backoff.
    assert!(
        slowest < Duration::from_millis(1000),
        "slowest relay {slowest:?}"
    );

    // Health names both failing URLs by number and host, never their paths.
    let mut health = Value::Null;
    assert!(
        eventually(async || {
            health = get(&server, "/health").await;
            let reason = health["webhooks"]["reason"].as_str().unwrap_or_default();
            reason.contains("webhook 1") && reason.contains("webhook 2")
        })
        .await,
        "{health}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["webhooks"]["state"], "degraded", "{health}");
    assert_eq!(health["store"]["state"], "healthy", "{health}");
    let reason = health["webhooks"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", receiver.port)),
        "{reason}"
    );
    assert!(reason.contains("answered HTTP 500"), "{reason}");
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(!reason.contains("token"), "{reason}");
    let metrics = get(&server, "/metrics").await;
    assert!(
        metrics["webhooks_failed_attempts"].as_u64().unwrap() >= 2,
        "{metrics}"
    );
    let prometheus = get(&server, "/metrics/prometheus").await;
    assert!(
        prometheus
            .as_str()
            .unwrap()
            .contains("coedit_webhooks_failed_attempts_total"),
        "{prometheus}"
    );

    // The receiver comes back: the retries deliver what waited, in order.
    receiver.status.store(200, Ordering::SeqCst);
    assert!(
        receiver
            .wait_for(Duration::from_secs(20), |events| events.iter().any(
                |event| { event.event == "document.changed" && event.json()["text_length"] == 20 }
            ))
            .await,
        "pending events never delivered: {:?}",
        receiver.received.lock().unwrap().len()
    );
    let kinds: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|event| event.event.clone())
        .collect();
    assert_eq!(
        kinds[..3],
        ["room.loaded", "user.joined", "user.joined"],
        "{kinds:?}"
    );
    let health = get(&server, "/health").await;
    let reason = health["webhooks"]["reason"].as_str().unwrap_or_default();
    assert!(
        !reason.contains("webhook 1") && reason.contains("webhook 2"),
        "{health}"
    );
    drop((ada, bob));
}
