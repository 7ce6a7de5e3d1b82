//! A room: its CRDT document, who is present, and the outbound queues of its
//! connections. Everything a client message does to a room happens here, through
//! plain method calls; sockets and HTTP stay in `ws.rs` and `rest.rs`.
//!
//! Fan-out never waits on a client: each connection has a bounded queue drained by
//! its own writer task, a broadcast is serialised once and shared by reference
//! count, and a connection whose queue is full is closed as a slow consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::document::{Applied, Document, DocumentError};
use super::journal::Journal;
use super::metrics::Metrics;
use super::store::{DurableState, LoggedUpdate, Snapshot, WriteOp};
use crate::api::{ListedUser, RoomInfo, RoomUser, ServerMessage, UserSummary};

/// Identifies one WebSocket connection (a client id may hold several).
pub type ConnectionId = u64;

/// One frame waiting in a connection's outbound queue. Clones share the payload.
#[derive(Debug, Clone)]
pub enum Outbound {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Outbound {
    fn message(message: &ServerMessage) -> Self {
        Outbound::Text(Utf8Bytes::from(message.to_json()))
    }
}

/// Why a connection is being closed by the server, as a WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 1013,
        reason: "slow consumer: outbound queue full",
    };
    pub const SHUTDOWN: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// The client went away first; the frame is only sent if its socket still works.
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "",
    };
    pub const UNRESPONSIVE: CloseReason = CloseReason {
        code: 1001,
        reason: "no answer to pings",
    };
}

/// Asks a connection to close: its reader and writer both watch the token.
#[derive(Debug, Clone, Default)]
pub struct Kick {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Kick {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            reason: Arc::default(),
        }
    }

    pub fn kick(&self, reason: CloseReason) {
        // A token already cancelled by its parent means shutdown; keep that reason.
        if !self.token.is_cancelled() {
            let _ = self.reason.set(reason);
        }
        self.token.cancel();
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The reason given to `kick`, or a shutdown when the parent token fired.
    pub fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::SHUTDOWN)
    }
}

/// How a connection wants document updates delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateFormat {
    /// `{"type":"update","data":hex,"from":…}` text frames (the original protocol).
    JsonHex,
    /// Raw Yjs update bytes in a binary frame (the original's binary path).
    RawBinary,
}

/// A connection's handle as the room holds it.
pub struct Member {
    pub client_id: String,
    pub queue: mpsc::Sender<Outbound>,
    pub kick: Kick,
}

/// A user's presence, per client id.
#[derive(Debug, Clone)]
struct Presence {
    user: RoomUser,
    /// Open connections of this client id; presence ends when the last one closes.
    connections: usize,
    /// Whether the client sent `join` (only joined users are listed).
    joined: bool,
    order: u64,
}

/// Where an update came from, for the broadcast that follows it.
pub struct Origin<'a> {
    pub client_id: &'a str,
    pub format: UpdateFormat,
}

struct RoomState {
    document: Document,
    /// Cached `sync` message for the current document, dropped on change.
    sync_message: Option<Utf8Bytes>,
    members: HashMap<ConnectionId, Member>,
    presence: HashMap<String, Presence>,
    next_order: u64,
    /// Last sequence number handed to the journal.
    last_seq: u64,
    /// Sequence number covered by the last compaction.
    compacted_seq: u64,
    /// Client ids that left recently, to count reconnects.
    departed: HashMap<String, Instant>,
    /// When the last connection left (None while anyone is connected).
    empty_since: Option<Instant>,
    /// Set when the registry unloads the room; a late joiner must load it afresh.
    closed: bool,
}

/// Cheap to clone; clones share one room.
#[derive(Clone)]
pub struct Room {
    inner: Arc<RoomInner>,
}

struct RoomInner {
    id: String,
    /// `std::sync::Mutex`: critical sections are a CRDT merge plus non-blocking
    /// queue pushes, microseconds long and never held across an await; an async
    /// mutex would only add wake-ups to the hot path.
    state: Mutex<RoomState>,
    /// Highest sequence number the journal has written for this room.
    written_seq: Arc<AtomicU64>,
    journal: Journal,
    metrics: Metrics,
    compact_every: u64,
    reconnect_window: Duration,
}

/// Result of an update sent by a client.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Merged; this many other connections were sent the delta.
    Broadcast(usize),
    /// Nothing new in it; nothing was sent.
    NothingNew,
}

const SIMULATED_NAMES: [&str; 12] = [
    "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan", "Radia",
    "Edsger", "Hedy",
];
const PALETTE: [&str; 8] = [
    "#3B82F6", "#EF4444", "#10B981", "#F59E0B", "#8B5CF6", "#EC4899", "#14B8A6", "#F97316",
];

impl Room {
    /// A room rebuilt from its durable state (or empty when `durable` is `None`).
    pub fn new(
        id: String,
        durable: Option<DurableState>,
        journal: Journal,
        metrics: Metrics,
        compact_every: u64,
        reconnect_window: Duration,
    ) -> Result<Self, DocumentError> {
        let mut document = Document::new();
        let mut last_seq = 0;
        let mut log_len = 0;
        if let Some(durable) = durable {
            if let Some(snapshot) = &durable.snapshot {
                document.apply_update(snapshot)?;
            }
            for update in &durable.updates {
                // A log entry that no longer decodes is skipped, not fatal: the rest of
                // the document is still worth serving.
                if let Err(error) = document.apply_update(update) {
                    tracing::error!(room = %id, %error, "skipping unreadable log entry");
                }
            }
            last_seq = durable.last_seq;
            log_len = durable.updates.len() as u64;
        }
        let room = Self {
            inner: Arc::new(RoomInner {
                id,
                state: Mutex::new(RoomState {
                    document,
                    sync_message: None,
                    members: HashMap::new(),
                    presence: HashMap::new(),
                    next_order: 0,
                    last_seq,
                    compacted_seq: last_seq.saturating_sub(log_len),
                    departed: HashMap::new(),
                    empty_since: Some(Instant::now()),
                    closed: false,
                }),
                written_seq: Arc::new(AtomicU64::new(last_seq)),
                journal,
                metrics,
                compact_every,
                reconnect_window,
            }),
        };
        if log_len >= compact_every {
            let mut state = room.lock();
            room.compact(&mut state);
        }
        Ok(room)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock cannot leave the document half-merged
        // (`Document` catches its own), so the data is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection and queues its greeting: `sync` (if the room has content)
    /// then `users`. Returns `false` when the room was unloaded meanwhile and the
    /// caller must fetch it from the registry again.
    pub fn connect(&self, connection: ConnectionId, member: Member) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let client_id = member.client_id.clone();
        let now = Instant::now();
        let window = self.inner.reconnect_window;
        state
            .departed
            .retain(|_, left| now.duration_since(*left) < window);
        let returning = state.departed.remove(&client_id).is_some()
            || state
                .presence
                .get(&client_id)
                .is_some_and(|p| p.connections > 0);
        if returning {
            self.inner
                .metrics
                .counters()
                .reconnect_count
                .fetch_add(1, Ordering::Relaxed);
        }
        let order = state.next_order;
        let presence = state
            .presence
            .entry(client_id.clone())
            .or_insert_with(|| Presence {
                user: RoomUser {
                    id: client_id.clone(),
                    name: String::new(),
                    color: String::new(),
                    avatar_url: None,
                    cursor_position: 0,
                    selection: None,
                    simulated: false,
                },
                connections: 0,
                joined: false,
                order,
            });
        presence.connections += 1;
        if presence.order == order {
            state.next_order += 1;
        }
        state.empty_since = None;

        let greeting_sync = if state.document.is_empty() {
            None
        } else {
            Some(Outbound::Text(sync_message(&mut state)))
        };
        let users = Outbound::message(&ServerMessage::Users {
            users: listed_users(&state, None),
        });
        state.members.insert(connection, member);
        if let Some(sync) = greeting_sync {
            send_to(&mut state, &self.inner.metrics, connection, sync);
        }
        send_to(&mut state, &self.inner.metrics, connection, users);
        self.inner
            .metrics
            .add_event("connect", &self.inner.id, &client_id, "WebSocket connected");
        true
    }

    /// Removes a connection (idempotent). When it was its client id's last one, the
    /// user leaves and the others get `user_left`.
    pub fn disconnect(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let Some(member) = state.members.remove(&connection) else {
            return;
        };
        let client_id = member.client_id;
        let last = match state.presence.get_mut(&client_id) {
            Some(presence) => {
                presence.connections = presence.connections.saturating_sub(1);
                presence.connections == 0
            }
            None => true,
        };
        if last {
            state.presence.remove(&client_id);
            state.departed.insert(client_id.clone(), Instant::now());
            let left = Outbound::message(&ServerMessage::UserLeft {
                user_id: client_id.clone(),
            });
            broadcast(&mut state, &self.inner.metrics, Some(&client_id), left);
        }
        if state.members.is_empty() {
            state.empty_since = Some(Instant::now());
        }
        drop(state);
        self.inner.metrics.add_event(
            "disconnect",
            &self.inner.id,
            &client_id,
            "WebSocket disconnected",
        );
    }

    /// `join`: records the user's name and colour, answers with `users_list` (the
    /// others), and announces the user to everyone else.
    pub fn join(
        &self,
        connection: ConnectionId,
        client_id: &str,
        name: Option<String>,
        color: Option<String>,
        avatar_url: Option<String>,
    ) {
        let mut state = self.lock();
        let Some(presence) = state.presence.get_mut(client_id) else {
            return;
        };
        let name = name.unwrap_or_else(|| "Anonymous".into());
        let color = color.unwrap_or_else(|| PALETTE[0].into());
        let changed =
            !presence.joined || presence.user.name != name || presence.user.color != color;
        presence.joined = true;
        presence.user.name = name.clone();
        presence.user.color = color.clone();
        presence.user.avatar_url = avatar_url;

        let others = ServerMessage::UsersList {
            users: listed_users(&state, Some(client_id))
                .into_iter()
                .map(|user| ListedUser {
                    id: user.id,
                    name: user.name,
                    color: user.color,
                    cursor_position: user.cursor_position,
                    simulated: user.simulated,
                })
                .collect(),
        };
        send_to(
            &mut state,
            &self.inner.metrics,
            connection,
            Outbound::message(&others),
        );
        if changed {
            let joined = Outbound::message(&ServerMessage::UserJoined {
                user_id: client_id.to_owned(),
                name: name.clone(),
                color,
                simulated: false,
            });
            broadcast(&mut state, &self.inner.metrics, Some(client_id), joined);
        }
        drop(state);
        self.inner.metrics.add_event(
            "join",
            &self.inner.id,
            client_id,
            format!("User {name} joined"),
        );
    }

    /// `sync_request`: the merged document, to this connection only.
    pub fn sync_request(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let sync = Outbound::Text(sync_message(&mut state));
        send_to(&mut state, &self.inner.metrics, connection, sync);
    }

    /// Merges an update and broadcasts what was new in it to every connection of
    /// every other client id. Nothing changes when it is refused.
    pub fn apply_update(
        &self,
        origin: Origin<'_>,
        update: UpdateBytes<'_>,
    ) -> Result<UpdateOutcome, DocumentError> {
        let mut state = self.lock();
        let applied = match update {
            UpdateBytes::Hex(hex_update) => state.document.apply_hex_update(hex_update),
            UpdateBytes::Raw(raw) => state.document.apply_update(raw),
        };
        let delta = match applied {
            Ok(Applied::Delta(delta)) => delta,
            Ok(Applied::Nothing) => return Ok(UpdateOutcome::NothingNew),
            Err(error) => {
                self.inner
                    .metrics
                    .counters()
                    .rejected_updates
                    .fetch_add(1, Ordering::Relaxed);
                if error == DocumentError::Panicked {
                    self.inner
                        .metrics
                        .counters()
                        .panics_caught
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Err(error);
            }
        };
        state.sync_message = None;
        self.log_update(&mut state, delta.clone());
        let message = match origin.format {
            UpdateFormat::JsonHex => Outbound::message(&ServerMessage::Update {
                data: hex::encode(&delta),
                from: origin.client_id.to_owned(),
            }),
            UpdateFormat::RawBinary => Outbound::Binary(delta),
        };
        let sent = broadcast(
            &mut state,
            &self.inner.metrics,
            Some(origin.client_id),
            message,
        );
        Ok(UpdateOutcome::Broadcast(sent))
    }

    /// `cursor`: remembers the position and relays it under the sender's identity.
    pub fn cursor(
        &self,
        client_id: &str,
        name: Option<String>,
        color: Option<String>,
        position: Option<i64>,
    ) {
        let mut state = self.lock();
        let (name, color, position) = match state.presence.get_mut(client_id) {
            Some(presence) => {
                if let Some(position) = position {
                    presence.user.cursor_position = position;
                }
                let user = &presence.user;
                (
                    non_empty(&user.name).or(name).unwrap_or_default(),
                    non_empty(&user.color).or(color).unwrap_or_default(),
                    user.cursor_position,
                )
            }
            None => (
                name.unwrap_or_default(),
                color.unwrap_or_default(),
                position.unwrap_or(0),
            ),
        };
        let message = Outbound::message(&ServerMessage::Cursor {
            user_id: client_id.to_owned(),
            name,
            color,
            position,
        });
        broadcast(&mut state, &self.inner.metrics, Some(client_id), message);
    }

    /// `selection`: remembers the range and relays it.
    pub fn selection(&self, client_id: &str, selection: Value) {
        let mut state = self.lock();
        if let Some(presence) = state.presence.get_mut(client_id) {
            presence.user.selection = Some(selection.clone());
        }
        let message = Outbound::message(&ServerMessage::Selection {
            user_id: client_id.to_owned(),
            selection,
        });
        broadcast(&mut state, &self.inner.metrics, Some(client_id), message);
    }

    /// `awareness`: relayed to the others as sent, with the sender's id added.
    pub fn awareness(&self, client_id: &str, mut fields: serde_json::Map<String, Value>) {
        fields.insert("userId".into(), Value::String(client_id.to_owned()));
        let message = Outbound::message(&ServerMessage::Awareness { fields });
        let mut state = self.lock();
        broadcast(&mut state, &self.inner.metrics, Some(client_id), message);
    }

    /// Queues a message for one connection (pong, error).
    pub fn reply(&self, connection: ConnectionId, message: &ServerMessage) {
        let outbound = Outbound::message(message);
        let mut state = self.lock();
        send_to(&mut state, &self.inner.metrics, connection, outbound);
    }

    /// Adds `count` simulated users, announced like real ones plus `simulated: true`.
    /// Returns (added, total users).
    pub fn add_simulated(&self, count: u32) -> (u64, u64) {
        let mut state = self.lock();
        for index in 0..count {
            let id = format!("sim-{}", uuid::Uuid::new_v4());
            let order = state.next_order;
            state.next_order += 1;
            let name = format!(
                "{} (sim {})",
                SIMULATED_NAMES[(order as usize + index as usize) % SIMULATED_NAMES.len()],
                order
            );
            let color = PALETTE[order as usize % PALETTE.len()].to_owned();
            let user = RoomUser {
                id: id.clone(),
                name: name.clone(),
                color: color.clone(),
                avatar_url: None,
                cursor_position: 0,
                selection: None,
                simulated: true,
            };
            state.presence.insert(
                id.clone(),
                Presence {
                    user,
                    connections: 0,
                    joined: true,
                    order,
                },
            );
            let joined = Outbound::message(&ServerMessage::UserJoined {
                user_id: id,
                name,
                color,
                simulated: true,
            });
            broadcast(&mut state, &self.inner.metrics, None, joined);
        }
        let total = joined_count(&state);
        drop(state);
        self.inner.metrics.add_event(
            "simulate",
            &self.inner.id,
            "",
            format!("Added {count} simulated users"),
        );
        (u64::from(count), total)
    }

    /// Removes every simulated user with a `user_left` each; returns how many.
    pub fn remove_simulated(&self) -> u64 {
        let mut state = self.lock();
        let ids: Vec<String> = state
            .presence
            .values()
            .filter(|presence| presence.user.simulated)
            .map(|presence| presence.user.id.clone())
            .collect();
        for id in &ids {
            state.presence.remove(id);
            let left = Outbound::message(&ServerMessage::UserLeft {
                user_id: id.clone(),
            });
            broadcast(&mut state, &self.inner.metrics, None, left);
        }
        if state.members.is_empty() {
            state.empty_since = Some(Instant::now());
        }
        drop(state);
        self.inner.metrics.add_event(
            "simulate",
            &self.inner.id,
            "",
            format!("Removed {} simulated users", ids.len()),
        );
        ids.len() as u64
    }

    pub fn info(&self) -> RoomInfo {
        let mut state = self.lock();
        let users = listed_users(&state, None);
        RoomInfo {
            id: self.inner.id.clone(),
            name: self.inner.id.clone(),
            user_count: users.len() as u64,
            doc_size: state.document.size() as u64,
            users: users
                .into_iter()
                .map(|user| UserSummary {
                    id: user.id,
                    name: user.name,
                    color: user.color,
                    simulated: user.simulated,
                })
                .collect(),
            connections: state.members.len() as u64,
        }
    }

    pub fn users(&self) -> Vec<RoomUser> {
        listed_users(&self.lock(), None)
    }

    pub fn doc_size(&self) -> usize {
        self.lock().document.size()
    }

    pub fn connection_count(&self) -> usize {
        self.lock().members.len()
    }

    /// The document text (`getText('content')`), for tests and diagnostics.
    pub fn text(&self) -> String {
        self.lock().document.text()
    }

    /// The full state to save as a checkpoint, or `None` when the room is empty.
    pub fn checkpoint_state(&self) -> Option<Bytes> {
        let mut state = self.lock();
        (!state.document.is_empty()).then(|| state.document.encoded_state())
    }

    /// Restores a checkpoint: the live document becomes exactly `checkpoint`, and the
    /// durable state is replaced with it too (not merged).
    pub fn restore(&self, checkpoint: &[u8]) -> Result<(), DocumentError> {
        let mut state = self.lock();
        state.document.replace(checkpoint)?;
        state.sync_message = None;
        self.compact(&mut state);
        Ok(())
    }

    /// True when the room can leave memory: nobody connected or simulated, empty for
    /// at least `idle`, and everything it accepted already written. On `true` the room
    /// is marked closed, so a connection racing the unload reloads it instead.
    pub fn close_if_idle(&self, idle: Duration) -> bool {
        let mut state = self.lock();
        let idle_long_enough = state
            .empty_since
            .is_some_and(|since| since.elapsed() >= idle);
        let unload = state.members.is_empty()
            && state.presence.is_empty()
            && idle_long_enough
            && self.inner.written_seq.load(Ordering::Acquire) >= state.last_seq;
        if unload {
            state.closed = true;
        }
        unload
    }

    fn log_update(&self, state: &mut RoomState, delta: Bytes) {
        state.last_seq += 1;
        self.inner.journal.submit(
            WriteOp::Append(LoggedUpdate {
                room_id: self.inner.id.clone(),
                seq: state.last_seq,
                data: delta,
            }),
            self.inner.written_seq.clone(),
        );
        if state.last_seq - state.compacted_seq >= self.inner.compact_every {
            self.compact(state);
        }
    }

    /// Queues a snapshot of the whole document covering every sequence number so far.
    fn compact(&self, state: &mut RoomState) {
        state.last_seq += 1;
        state.compacted_seq = state.last_seq;
        self.inner.journal.submit(
            WriteOp::Compact(Snapshot {
                room_id: self.inner.id.clone(),
                through_seq: state.last_seq,
                data: state.document.encoded_state(),
            }),
            self.inner.written_seq.clone(),
        );
    }
}

/// An update as it arrived: hex text from the JSON protocol or raw bytes.
#[derive(Debug, Clone, Copy)]
pub enum UpdateBytes<'a> {
    Hex(&'a str),
    Raw(&'a [u8]),
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn sync_message(state: &mut RoomState) -> Utf8Bytes {
    if let Some(message) = &state.sync_message {
        return message.clone();
    }
    let data = hex::encode(state.document.encoded_state());
    let message = Utf8Bytes::from(ServerMessage::Sync { data }.to_json());
    state.sync_message = Some(message.clone());
    message
}

fn joined_count(state: &RoomState) -> u64 {
    state
        .presence
        .values()
        .filter(|presence| presence.joined)
        .count() as u64
}

/// Joined users in join order, optionally without one client id.
fn listed_users(state: &RoomState, except: Option<&str>) -> Vec<RoomUser> {
    let mut present: Vec<&Presence> = state
        .presence
        .values()
        .filter(|presence| presence.joined && Some(presence.user.id.as_str()) != except)
        .collect();
    present.sort_by_key(|presence| presence.order);
    present
        .into_iter()
        .map(|presence| presence.user.clone())
        .collect()
}

/// Queues `message` for one connection; a full queue closes it as a slow consumer.
fn send_to(state: &mut RoomState, metrics: &Metrics, connection: ConnectionId, message: Outbound) {
    if let Some(member) = state.members.get(&connection) {
        push(member, metrics, message);
    }
}

/// Queues `message` for every connection not belonging to `except`; returns how
/// many connections it was queued for.
fn broadcast(
    state: &mut RoomState,
    metrics: &Metrics,
    except: Option<&str>,
    message: Outbound,
) -> usize {
    let mut sent = 0;
    for member in state.members.values() {
        if Some(member.client_id.as_str()) == except {
            continue;
        }
        if push(member, metrics, message.clone()) {
            sent += 1;
        }
    }
    sent
}

fn push(member: &Member, metrics: &Metrics, message: Outbound) -> bool {
    if member.kick.token().is_cancelled() {
        return false;
    }
    match member.queue.try_send(message) {
        Ok(()) => {
            metrics
                .counters()
                .messages_delivered
                .fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics
                .counters()
                .slow_consumer_disconnects
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_id = %member.client_id, "closing slow consumer");
            member.kick.kick(CloseReason::SLOW_CONSUMER);
            false
        }
        // The writer is gone; the connection's own cleanup will remove it.
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}
