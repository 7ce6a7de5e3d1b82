//! Webhooks: signed JSON POSTs telling other systems what happens to rooms
//! (loaded, unloaded, document changed, user joined or left, deleted).
//!
//! Delivery never holds up editing. An event is serialised once and offered to
//! each URL's bounded queue with `try_send`: a full queue drops it and counts the
//! drop. One task per URL posts its queue's events in order, retrying a failed
//! POST with exponential backoff a bounded number of times, then giving up (and
//! counting that). `document.changed` is debounced per room: an edit only sets the
//! room's flag (one atomic swap); the first edit after a report hands the room to
//! the debouncer, which reports it once `debounce` has passed, with the room's
//! latest sequence number and text length read then.
//!
//! Signature: `X-Coedit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">` with `--webhook-secret`, computed for every attempt, so a
//! receiver can refuse old (replayed) deliveries by their time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::room::Room;

/// Events queued per URL before new ones are dropped: about a megabyte per URL
/// at most (an event is a few hundred bytes; names are cut to `MAX_NAME_CHARS`).
pub const QUEUE_CAPACITY: usize = 1024;
/// Attempts per event and URL before it is given up.
pub const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry; it doubles after each failed attempt (0.5, 1, 2,
/// 4, 8 s: about 15 s from the first attempt to the last).
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long one POST may take, answer included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// User names and colours in payloads are cut to this many characters.
const MAX_NAME_CHARS: usize = 200;

/// What happened to a room, as the payload's `type` and its own fields.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum Event<'a> {
    #[serde(rename = "room.loaded")]
    RoomLoaded,
    #[serde(rename = "room.unloaded")]
    RoomUnloaded,
    /// `seq`: the room's latest sequence number (use it with `document?seq=`);
    /// `text_length`: characters in the `content` text.
    #[serde(rename = "document.changed")]
    DocumentChanged { seq: u64, text_length: usize },
    #[serde(rename = "user.joined")]
    UserJoined {
        user_id: &'a str,
        name: &'a str,
        color: &'a str,
    },
    #[serde(rename = "user.left")]
    UserLeft { user_id: &'a str },
    #[serde(rename = "room.deleted")]
    RoomDeleted { closed_connections: usize },
}

impl Event<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Event::RoomLoaded => "room.loaded",
            Event::RoomUnloaded => "room.unloaded",
            Event::DocumentChanged { .. } => "document.changed",
            Event::UserJoined { .. } => "user.joined",
            Event::UserLeft { .. } => "user.left",
            Event::RoomDeleted { .. } => "room.deleted",
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    #[serde(flatten)]
    event: Event<'a>,
    room_id: &'a str,
    time: String,
    node_id: &'a str,
}

/// One event ready to post, shared by every URL's queue.
struct Delivery {
    id: String,
    kind: &'static str,
    body: Bytes,
}

/// One URL and how its deliveries are going.
struct Target {
    url: reqwest::Url,
    /// `webhook N (host:port)`: how health and logs name it, never with the URL's
    /// path, query or credentials, which often carry a token.
    label: String,
    queue: mpsc::Sender<Arc<Delivery>>,
    /// Why the last attempt failed; `None` once one succeeds. A
    /// `std::sync::Mutex`: set and read in passing, never across an await.
    failing: Mutex<Option<String>>,
}

/// Totals since start.
#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
    abandoned: AtomicU64,
}

/// What health and metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookStatus {
    pub delivered: u64,
    pub failed_attempts: u64,
    /// Events dropped because a URL's queue was full.
    pub dropped: u64,
    /// Events given up after `MAX_ATTEMPTS`.
    pub abandoned: u64,
    /// Events waiting in the queues.
    pub queued: u64,
    /// Why deliveries to some URL are failing now, if they are.
    pub failing: Option<String>,
}

/// Cheap to clone; clones share the queues and counters.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    targets: Vec<Target>,
    counters: Counters,
    /// Rooms whose document changed since they were last reported; each room is
    /// in it at most once (its flag), so it is bounded by the rooms in memory.
    changed: mpsc::UnboundedSender<Room>,
}

/// The background tasks; they stop when the server's shutdown token is
/// cancelled (events still queued then are not delivered).
pub struct WebhookTasks(Vec<JoinHandle<()>>);

impl WebhookTasks {
    pub async fn finish(self) {
        for task in self.0 {
            let _ = task.await;
        }
    }
}

impl Webhooks {
    /// Starts delivery for the configured URLs; `None` when there are none.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Option<(Self, WebhookTasks)> {
        if config.webhook_urls.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coedit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| tracing::error!(%error, "webhooks disabled: no HTTP client"))
            .ok()?;
        let mut targets = Vec::new();
        let mut queues = Vec::new();
        for (index, url) in config.webhook_urls.iter().enumerate() {
            let (queue, queued) = mpsc::channel(QUEUE_CAPACITY);
            let host = url.host_str().unwrap_or("?");
            let label = match url.port_or_known_default() {
                Some(port) => format!("webhook {} ({host}:{port})", index + 1),
                None => format!("webhook {} ({host})", index + 1),
            };
            targets.push(Target {
                url: url.clone(),
                label,
                queue,
                failing: Mutex::new(None),
            });
            queues.push(queued);
        }
        tracing::info!(
            signed = config.webhook_secret.is_some(),
            "webhooks: {}",
            targets
                .iter()
                .map(|target| target.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (changed, changes) = mpsc::unbounded_channel();
        let webhooks = Self {
            inner: Arc::new(Inner {
                node_id: config.node_id.clone().unwrap_or_default(),
                targets,
                counters: Counters::default(),
                changed,
            }),
        };
        let secret: Option<Arc<[u8]>> = config
            .webhook_secret
            .as_ref()
            .map(|secret| Arc::from(secret.as_bytes()));
        let mut tasks: Vec<JoinHandle<()>> = queues
            .into_iter()
            .enumerate()
            .map(|(index, queued)| {
                tokio::spawn(deliver(
                    webhooks.clone(),
                    index,
                    queued,
                    client.clone(),
                    secret.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(debounce(
            webhooks.clone(),
            changes,
            config.webhook_debounce,
            shutdown.clone(),
        )));
        Some((webhooks, WebhookTasks(tasks)))
    }

    /// Queues `event` of `room_id` for every URL, without waiting.
    pub fn emit(&self, room_id: &str, event: Event<'_>) {
        let id = uuid::Uuid::new_v4().to_string();
        let kind = event.kind();
        let payload = Payload {
            id: &id,
            event,
            room_id,
            time: crate::api::timestamp_now(),
            node_id: &self.inner.node_id,
        };
        let body = match serde_json::to_vec(&payload) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::warn!(%error, "webhook event not encoded");
                return;
            }
        };
        let delivery = Arc::new(Delivery { id, kind, body });
        for target in &self.inner.targets {
            if let Err(mpsc::error::TrySendError::Full(_)) = target.queue.try_send(delivery.clone())
            {
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target = %target.label, kind, "webhook queue full; event dropped");
            }
        }
    }

    /// The room's document changed and it was not waiting for a report yet.
    pub fn room_changed(&self, room: Room) {
        let _ = self.inner.changed.send(room);
    }

    /// A user introduced itself in the room for the first time.
    pub fn user_joined(&self, room_id: &str, user_id: &str, name: &str, color: &str) {
        self.emit(
            room_id,
            Event::UserJoined {
                user_id,
                name: cut(name),
                color: cut(color),
            },
        );
    }

    /// The room leaves memory: a change not reported yet is reported first, so a
    /// receiver sees it before the unload.
    pub fn room_unloaded(&self, room: &Room) {
        self.report_change(room);
        self.emit(room.id(), Event::RoomUnloaded);
    }

    /// Another node deleted the room and it left memory here: a change not
    /// reported yet never will be (the room is gone), and it unloads.
    pub fn room_forgotten(&self, room: &Room) {
        room.take_change_notice();
        self.emit(room.id(), Event::RoomUnloaded);
    }

    /// The room was deleted; a change not reported yet never will be.
    pub fn room_deleted(&self, room: Option<&Room>, room_id: &str, closed_connections: usize) {
        if let Some(room) = room {
            room.take_change_notice();
        }
        self.emit(room_id, Event::RoomDeleted { closed_connections });
    }

    fn report_change(&self, room: &Room) {
        if room.take_change_notice() {
            let (seq, text_length) = room.change_summary();
            self.emit(room.id(), Event::DocumentChanged { seq, text_length });
        }
    }

    /// Totals and the state of the URLs, for health and metrics.
    pub fn status(&self) -> WebhookStatus {
        let counters = &self.inner.counters;
        let mut queued = 0;
        let mut failing = Vec::new();
        for target in &self.inner.targets {
            queued += (QUEUE_CAPACITY - target.queue.capacity()) as u64;
            if let Some(reason) = target.failing.lock().ok().and_then(|reason| reason.clone()) {
                failing.push(format!("{}: {reason}", target.label));
            }
        }
        WebhookStatus {
            delivered: counters.delivered.load(Ordering::Relaxed),
            failed_attempts: counters.failed_attempts.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            abandoned: counters.abandoned.load(Ordering::Relaxed),
            queued,
            failing: (!failing.is_empty()).then(|| failing.join("; ")),
        }
    }
}

/// At most `MAX_NAME_CHARS` characters of a user-chosen string.
fn cut(text: &str) -> &str {
    match text.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Posts one URL's events in order until shutdown.
async fn deliver(
    webhooks: Webhooks,
    index: usize,
    mut queued: mpsc::Receiver<Arc<Delivery>>,
    client: reqwest::Client,
    secret: Option<Arc<[u8]>>,
    shutdown: CancellationToken,
) {
    let target = &webhooks.inner.targets[index];
    let counters = &webhooks.inner.counters;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            delivery = queued.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let mut wait = FIRST_RETRY;
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = post(&client, &target.url, secret.as_deref(), &delivery) => outcome,
            };
            match outcome {
                Ok(()) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut failing) = target.failing.lock() {
                        *failing = None;
                    }
                    break;
                }
                Err(reason) => {
                    counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target = %target.label, attempt, %reason, "webhook delivery failed");
                    if let Ok(mut failing) = target.failing.lock() {
                        *failing = Some(reason);
                    }
                    if attempt == MAX_ATTEMPTS {
                        counters.abandoned.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target = %target.label, kind = delivery.kind, "webhook event given up after {MAX_ATTEMPTS} attempts");
                        break;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait *= 2;
                }
            }
        }
    }
}

/// One POST; a 2xx answer is a delivery, anything else a failed attempt, described
/// without the URL.
async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    secret: Option<&[u8]>,
    delivery: &Delivery,
) -> Result<(), String> {
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Coedit-Event", delivery.kind)
        .header("X-Coedit-Delivery", &delivery.id);
    if let Some(secret) = secret {
        let now = chrono::Utc::now().timestamp();
        request = request.header("X-Coedit-Signature", signature(secret, now, &delivery.body));
    }
    match request.body(delivery.body.clone()).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("answered HTTP {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => {
            Err(format!("no answer within {} s", POST_TIMEOUT.as_secs()))
        }
        Err(error) if error.is_connect() => Err("cannot connect".to_owned()),
        Err(error) => Err(error.without_url().to_string()),
    }
}

/// Reports each changed room once `debounce` has passed since its first change
/// after the previous report.
async fn debounce(
    webhooks: Webhooks,
    mut changes: mpsc::UnboundedReceiver<Room>,
    debounce: Duration,
    shutdown: CancellationToken,
) {
    // Rooms wait in the order they changed, and all wait equally long, so the
    // front is always the next one due.
    let mut waiting: VecDeque<(Instant, Room)> = VecDeque::new();
    loop {
        let next_due = waiting.front().map(|(due, _)| *due);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Some(room) => waiting.push_back((Instant::now() + debounce, room)),
                None => return,
            },
            _ = sleep_until(next_due) => {
                while waiting.front().is_some_and(|(due, _)| *due <= Instant::now()) {
                    if let Some((_, room)) = waiting.pop_front() {
                        webhooks.report_change(&room);
                    }
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_an_hmac_of_the_time_and_the_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn payloads_carry_the_type_and_the_events_fields() {
        let payload = Payload {
            id: "id-1",
            event: Event::DocumentChanged {
                seq: 7,
                text_length: 12,
            },
            room_id: "notes",
            time: "2026-01-01T00:00:00.000Z".into(),
            node_id: "host:8001",
        };
        let value = serde_json::to_value(&payload).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": "id-1", "type": "document.changed", "seq": 7,
                "text_length": 12, "room_id": "notes", "time": "2026-01-01T00:00:00.000Z",
                "node_id": "host:8001"})
        );
        let loaded = serde_json::to_value(Payload {
            event: Event::RoomLoaded,
            ..payload
        })
        .unwrap();
        assert_eq!(loaded["type"], "room.loaded");
    }

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_NAME_CHARS + 5);
        assert_eq!(cut(&long).chars().count(), MAX_NAME_CHARS);
        assert_eq!(cut("Ada"), "Ada");
    }
}
