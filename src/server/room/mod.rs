//! A room: its CRDT document, who is present, and the outbound queues of its
//! connections. Everything a client message does to a room happens here, through
//! plain method calls; sockets and HTTP stay in `ws.rs`, `yjs.rs` and `rest.rs`.
//!
//! - `fanout`: outbound queues, close requests, broadcast per protocol;
//! - `queue`: the bounded outbound queue itself, which holds no memory when empty;
//! - `presence`: who is here, per client id;
//! - `durable`: the journal, compaction, checkpoints, unloading;
//! - `simulated`: the load-testing users of `/api/simulate`;
//! - `view`: read-only looks for the dashboard (text, revision), never a member;
//! - `yjs`: the binary y-protocols (sync steps, awareness) for y-websocket clients.

pub mod durable;
mod fanout;
mod presence;
pub mod queue;
pub mod remote;
mod simulated;
mod view;
mod yjs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use fanout::{
    close_slow_consumer, CloseReason, ConnectionId, Kick, Member, Outbound, Protocol,
    FRAME_HEADER_BYTES,
};
use fanout::{json_only, PerProtocol};
pub use presence::{PresenceLimits, UserPlace};
pub use view::ActivityMark;
pub use yjs::{only_awareness, YjsError};

use super::document::{Applied, Document, DocumentError};
use super::journal::Journal;
use super::metrics::Metrics;
use super::webhooks::Webhooks;
use crate::api::{CursorPosition, ListedUser, RoomInfo, RoomUser, ServerMessage};
use durable::{Durability, Stored};

/// How an update arrived, and so how JSON-protocol members get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateFormat {
    /// `{"type":"update","data":hex}`: JSON members get `{"type":"update",…,"from"}`.
    JsonHex,
    /// Raw Yjs bytes in a binary frame (the original's binary path): JSON members
    /// get the delta as a binary frame too.
    RawBinary,
    /// A y-protocol sync message: JSON members get the JSON `update`.
    YjsSync,
    /// A change the server made itself (a restore, an import over REST): every
    /// member gets it, JSON members as an `update` from `server`, whatever ids
    /// clients chose.
    Server,
}

/// An update as it arrived: hex text from the JSON protocol or raw bytes.
#[derive(Debug, Clone, Copy)]
pub enum UpdateBytes<'a> {
    Hex(&'a str),
    Raw(&'a [u8]),
}

impl UpdateBytes<'_> {
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Hex(hex) => hex.is_empty(),
            Self::Raw(raw) => raw.is_empty(),
        }
    }
}

/// Where an update came from, for the broadcast that follows it.
pub struct Origin<'a> {
    pub client_id: &'a str,
    pub format: UpdateFormat,
}

/// Result of an update sent by a client.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Merged; this many other connections were sent the delta.
    Broadcast(usize),
    /// Nothing new in it; nothing was sent.
    NothingNew,
}

/// Per-room settings, from the server's `Config`.
#[derive(Debug, Clone, Copy)]
pub struct RoomSettings {
    /// Log entries after which the room's log is compacted into its snapshot.
    pub compact_every: u64,
    /// A client id seen again within this window counts as a reconnect.
    pub reconnect_window: Duration,
    /// Largest full-state encoding the document may grow to.
    pub max_document_bytes: usize,
    /// Hold what clients would see until the store has it (write-ahead relay).
    pub write_ahead: bool,
    /// How long the store keeps the room's history; zero keeps none.
    pub history_retention: Duration,
    /// Bounds on users and awareness states.
    pub presence: PresenceLimits,
    /// A connection's outbound budget: with one full sync, also what the room
    /// holds for it at most while the store catches up.
    pub max_outbound_bytes: usize,
}

/// Colours given to users who did not choose one.
const PALETTE: [&str; 8] = [
    "#3B82F6", "#EF4444", "#10B981", "#F59E0B", "#8B5CF6", "#EC4899", "#14B8A6", "#F97316",
];

use presence::Presence;

/// A room held in memory while a REST call writes to it (`Registry::get_pinned`).
/// Without it, the idle sweep could unload the room between the call looking it up
/// and writing to it; the write then went to an instance no later load reads, and
/// the next load numbered its own updates over it.
pub struct Pinned(Room);

impl std::ops::Deref for Pinned {
    type Target = Room;

    fn deref(&self) -> &Room {
        &self.0
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.pins = state.pins.saturating_sub(1);
    }
}

struct RoomState {
    document: Document,
    /// Cached `sync` message for the current document, dropped on change.
    sync_message: Option<Utf8Bytes>,
    members: HashMap<ConnectionId, Member>,
    presence: HashMap<String, Presence>,
    awareness: yjs::AwarenessStates,
    next_order: u64,
    /// Sequence numbers, acknowledgements, and messages held until written.
    durability: Durability,
    /// Client ids that left recently, to count reconnects.
    departed: HashMap<String, Instant>,
    /// When the last connection left (None while anyone is connected).
    empty_since: Option<Instant>,
    /// Set when the registry unloads the room; a late joiner must load it afresh.
    closed: bool,
    /// REST calls writing to the room (`Pinned`): it is not unloaded under them.
    pins: u32,
    /// Client ids between their accepted upgrade and joining (see `reserve_user`).
    arriving: std::collections::HashSet<String>,
    /// Users connected to other nodes of the cluster, by client id.
    remote_users: HashMap<String, remote::RemoteUser>,
    /// Where this room's events go in a cluster; `None` on a single node.
    peers: Option<remote::PeerLink>,
}

impl RoomState {
    fn sync_message(&mut self) -> Utf8Bytes {
        if let Some(message) = &self.sync_message {
            return message.clone();
        }
        let message = Utf8Bytes::from(ServerMessage::sync_json(&self.document.encoded_state()));
        self.sync_message = Some(message.clone());
        message
    }
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
    journal: Journal,
    metrics: Metrics,
    settings: RoomSettings,
    /// Set once, by the registry, when webhooks are configured: the hot path
    /// checks it with one atomic load.
    webhooks: OnceLock<Webhooks>,
    /// The document changed since webhooks were last told: set by the first edit
    /// after a report (which hands the room to the debouncer), cleared by the
    /// report.
    change_unreported: AtomicBool,
}

impl Room {
    /// A room rebuilt from what the store holds for it.
    pub fn new(
        id: String,
        stored: Stored,
        journal: Journal,
        metrics: Metrics,
        settings: RoomSettings,
    ) -> Result<Self, DocumentError> {
        let mut document = Document::new();
        // A newcomer's greeting can be the whole document (a JSON sync is twice
        // its size) and waits with its other replies: the budget covers one such
        // message beside the connection's own, as SECURITY.md's formula does.
        let mut durability = Durability::opened(&stored, settings.write_ahead).limit_held_bytes(
            settings
                .max_outbound_bytes
                .saturating_add(settings.max_document_bytes.saturating_mul(2)),
        );
        match &stored {
            Stored::Durable(durable) => {
                if let Some(snapshot) = &durable.snapshot {
                    document.apply_stored(snapshot)?;
                }
                for update in &durable.updates {
                    // A log entry that no longer decodes is skipped, not fatal: the
                    // rest of the document is still worth serving. It stays in the
                    // store: the room is not compacted over it.
                    if let Err(error) = document.apply_stored(update) {
                        tracing::error!(room = %id, %error, "skipping unreadable log entry; the room's log is kept uncompacted");
                        durability.keep_log();
                    }
                }
            }
            // The original backend saved whatever the page sent; an empty one is
            // an empty document.
            Stored::Checkpoint(checkpoint) if checkpoint.is_empty() => {}
            Stored::Checkpoint(checkpoint) => {
                document.apply_stored(checkpoint)?;
            }
            Stored::Nothing | Stored::Fenced(_) => {}
        }
        // Set after loading: what is stored is kept even if the limit was lowered.
        document.set_size_limit(settings.max_document_bytes);
        let compact_every = settings.compact_every;
        let log_len = durability.log_len();
        let room = Self {
            inner: Arc::new(RoomInner {
                id,
                state: Mutex::new(RoomState {
                    document,
                    sync_message: None,
                    members: HashMap::new(),
                    presence: HashMap::new(),
                    awareness: yjs::AwarenessStates::default(),
                    next_order: 0,
                    durability,
                    departed: HashMap::new(),
                    empty_since: Some(Instant::now()),
                    closed: false,
                    pins: 0,
                    arriving: std::collections::HashSet::new(),
                    remote_users: HashMap::new(),
                    peers: None,
                }),
                journal,
                metrics,
                settings,
                webhooks: OnceLock::new(),
                change_unreported: AtomicBool::new(false),
            }),
        };
        if log_len >= compact_every {
            let mut state = room.lock();
            room.compact(&mut state);
        }
        Ok(room)
    }

    /// Whether both handles are the same room in memory (not a later load of it).
    pub fn same(&self, other: &Room) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        lock_state(&self.inner.state)
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Adds a connection and queues its greeting — JSON: `sync` (if the room has
    /// content) then `users`; y-protocol: our sync step 1 and the awareness states.
    /// Returns `false` when the room was unloaded meanwhile and the caller must
    /// fetch it from the registry again.
    pub fn connect(&self, connection: ConnectionId, member: Member) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let client_id = member.client_id.clone();
        let protocol = member.protocol;
        let now = Instant::now();
        let window = self.inner.settings.reconnect_window;
        state
            .departed
            .retain(|_, left| now.duration_since(*left) < window);
        let returning = state.departed.remove(&client_id).is_some()
            || state
                .presence
                .get(&client_id)
                .is_some_and(|p| p.connections > 0);
        if returning {
            self.metrics()
                .counters()
                .reconnect_count
                .fetch_add(1, Ordering::Relaxed);
        }
        if !state.presence.contains_key(&client_id) {
            let presence = state.new_presence(&client_id, false);
            state.presence.insert(client_id.clone(), presence);
        }
        if let Some(presence) = state.presence.get_mut(&client_id) {
            presence.connections += 1;
        }
        state.empty_since = None;
        state.members.insert(connection, member);

        let greeting = match protocol {
            Protocol::Json => {
                let mut greeting = Vec::with_capacity(2);
                if !state.document.is_empty() {
                    greeting.push(Outbound::Text(state.sync_message()));
                }
                greeting.push(Outbound::json(&ServerMessage::Users {
                    users: state.listed_users(None),
                }));
                greeting
            }
            Protocol::Yjs => yjs::greeting(&state),
        };
        for message in greeting {
            state.send_to(self.metrics(), connection, message);
        }
        drop(state);
        self.metrics()
            .add_event("connect", &self.inner.id, &client_id, "WebSocket connected");
        true
    }

    /// Removes a connection (idempotent). When it was its client id's last one, the
    /// user leaves and the others get `user_left`; its awareness states are removed.
    pub fn disconnect(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let Some(member) = state.members.remove(&connection) else {
            return;
        };
        let client_id = member.client_id;
        yjs::forget_connection(&mut state, self.metrics(), connection, &client_id);
        let last = match state.presence.get_mut(&client_id) {
            Some(presence) => {
                presence.connections = presence.connections.saturating_sub(1);
                presence.connections == 0
            }
            None => true,
        };
        let mut joined = false;
        if last {
            joined = state
                .presence
                .remove(&client_id)
                .is_some_and(|presence| presence.joined);
            state.departed.insert(client_id.clone(), Instant::now());
            let left = ServerMessage::UserLeft {
                user_id: client_id.clone(),
            };
            state.broadcast(self.metrics(), Some(&client_id), json_only(&left));
            state.publish_gone(&client_id, &left);
        }
        if state.members.is_empty() {
            state.empty_since = Some(Instant::now());
        }
        drop(state);
        if joined {
            if let Some(webhooks) = self.inner.webhooks.get() {
                webhooks.emit(
                    &self.inner.id,
                    super::webhooks::Event::UserLeft {
                        user_id: &client_id,
                    },
                );
            }
        }
        self.metrics().add_event(
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
        let name = name.unwrap_or_else(|| "Anonymous".into());
        let color = color.unwrap_or_else(|| PALETTE[0].into());
        if let Some(presence) = state.presence.get_mut(client_id) {
            presence.user.avatar_url = avatar_url;
        }
        let others = ServerMessage::UsersList {
            users: state
                .listed_users(Some(client_id))
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
        state.send_to(self.metrics(), connection, Outbound::json(&others));
        let first = state.introduce(self.metrics(), client_id, name.clone(), color.clone());
        drop(state);
        if first {
            self.report_joined(client_id, &name, &color);
        }
        self.metrics().add_event(
            "join",
            &self.inner.id,
            client_id,
            format!("User {name} joined"),
        );
    }

    /// `sync_request`: the merged document, to this connection only.
    pub fn sync_request(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let sync = Outbound::Text(state.sync_message());
        state.send_to(self.metrics(), connection, sync);
    }

    /// Merges an update and broadcasts what was new in it to every connection of
    /// every other client id, in each one's protocol. Nothing changes when it is
    /// refused.
    pub fn apply_update(
        &self,
        origin: Origin<'_>,
        update: UpdateBytes<'_>,
    ) -> Result<UpdateOutcome, DocumentError> {
        let mut state = self.lock();
        state.durability.check_writable()?;
        let applied = match update {
            UpdateBytes::Hex(hex_update) => state.document.apply_hex_update(hex_update),
            UpdateBytes::Raw(raw) => state.document.apply_update(raw),
        };
        let delta = match applied {
            Ok(Applied::Delta(delta)) => delta,
            Ok(Applied::Nothing) => return Ok(UpdateOutcome::NothingNew),
            Err(error) => {
                let counters = self.metrics().counters();
                counters.rejected_updates.fetch_add(1, Ordering::Relaxed);
                if error == DocumentError::Panicked {
                    counters.panics_caught.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        room = %self.inner.id,
                        client_id = origin.client_id,
                        "an update panicked the Yjs decoder; refused, room restored"
                    );
                }
                return Err(error);
            }
        };
        state.sync_message = None;
        let author = state
            .presence
            .get(origin.client_id)
            .filter(|presence| presence.joined)
            .map_or_else(
                || origin.client_id.to_owned(),
                |presence| presence.user.name.clone(),
            );
        self.log_update(&mut state, delta.clone(), author);
        self.notice_change();
        let json = || {
            Some(match origin.format {
                UpdateFormat::RawBinary => Outbound::Binary(delta.clone()),
                UpdateFormat::JsonHex | UpdateFormat::YjsSync | UpdateFormat::Server => {
                    Outbound::json(&ServerMessage::Update {
                        data: faster_hex::hex_string(&delta),
                        from: origin.client_id.to_owned(),
                    })
                }
            })
        };
        let binary = || Some(yjs::update_message(&delta));
        let sender = (origin.format != UpdateFormat::Server).then_some(origin.client_id);
        let sent = state.broadcast(self.metrics(), sender, PerProtocol::new(json, binary));
        Ok(UpdateOutcome::Broadcast(sent))
    }

    /// `cursor`: remembers the position and relays it under the sender's identity.
    /// Ignored until the client has sent `join`, as the original did: presence comes
    /// from joined users only, never from a nameless connection.
    pub fn cursor(&self, client_id: &str, position: Option<i64>) {
        let mut state = self.lock();
        let Some(presence) = state
            .presence
            .get_mut(client_id)
            .filter(|presence| presence.joined)
        else {
            return;
        };
        if let Some(position) = position {
            presence.user.cursor_position = Some(CursorPosition::Offset(position));
        }
        let user = &presence.user;
        let message = ServerMessage::Cursor {
            user_id: client_id.to_owned(),
            name: user.name.clone(),
            color: user.color.clone(),
            position: match user.cursor_position {
                Some(CursorPosition::Offset(offset)) => offset,
                _ => 0,
            },
        };
        state.broadcast(self.metrics(), Some(client_id), json_only(&message));
        state.publish_present(client_id, Some(&message));
    }

    /// `selection`: remembers the range and relays it; ignored before `join`, like
    /// `cursor`.
    pub fn selection(&self, client_id: &str, selection: Value) {
        let mut state = self.lock();
        let Some(presence) = state
            .presence
            .get_mut(client_id)
            .filter(|presence| presence.joined)
        else {
            return;
        };
        presence.user.selection = Some(selection.clone());
        let message = ServerMessage::Selection {
            user_id: client_id.to_owned(),
            selection,
        };
        state.broadcast(self.metrics(), Some(client_id), json_only(&message));
        state.publish_present(client_id, Some(&message));
    }

    /// JSON `awareness`: relayed to the other JSON members as sent, with the
    /// sender's id added.
    pub fn awareness(&self, client_id: &str, mut fields: serde_json::Map<String, Value>) {
        fields.insert("userId".into(), Value::String(client_id.to_owned()));
        let message = ServerMessage::Awareness { fields };
        let mut state = self.lock();
        state.broadcast(self.metrics(), Some(client_id), json_only(&message));
        state.publish(|| remote::PeerEvent {
            from: client_id.to_owned(),
            json: Some(message.to_json()),
            awareness: None,
            presence: None,
        });
    }

    /// Queues a JSON message for one connection (pong, error).
    pub fn reply(&self, connection: ConnectionId, message: &ServerMessage) {
        let outbound = Outbound::json(message);
        self.lock().send_to(self.metrics(), connection, outbound);
    }

    pub fn info(&self) -> RoomInfo {
        let mut state = self.lock();
        let users = state.listed_users(None);
        RoomInfo {
            id: self.inner.id.clone(),
            name: self.inner.id.clone(),
            user_count: users.len() as u64,
            doc_size: state.document.listed_size() as u64,
            users,
            connections: state.members.len() as u64,
            exists: true,
            // The room keeps no clock; the REST layer fills this in from the
            // metrics sampler, which watches every room's `revision`.
            last_activity: None,
        }
    }

    /// Has webhooks report this room's events (set once, when it is loaded).
    pub fn attach_webhooks(&self, webhooks: Webhooks) {
        let _ = self.inner.webhooks.set(webhooks);
    }

    /// Marks the document changed for webhooks; the first change after a report
    /// hands the room to the debouncer. One atomic load when webhooks are off.
    fn notice_change(&self) {
        if let Some(webhooks) = self.inner.webhooks.get() {
            if !self.inner.change_unreported.swap(true, Ordering::AcqRel) {
                webhooks.room_changed(self.clone());
            }
        }
    }

    /// Whether a change was waiting to be reported; clears it.
    pub fn take_change_notice(&self) -> bool {
        self.inner.change_unreported.swap(false, Ordering::AcqRel)
    }

    /// The room's latest sequence number and the length of its `content` text in
    /// characters, for `document.changed`.
    pub fn change_summary(&self) -> (u64, usize) {
        let state = self.lock();
        (
            state.durability.latest_seq(),
            state.document.text().chars().count(),
        )
    }

    fn report_joined(&self, client_id: &str, name: &str, color: &str) {
        if let Some(webhooks) = self.inner.webhooks.get() {
            webhooks.user_joined(&self.inner.id, client_id, name, color);
        }
    }

    /// Open connections in this room.
    pub fn connection_count(&self) -> usize {
        self.lock().members.len()
    }

    /// `doc_size` and `connections` of `info`, without listing the users.
    pub fn size_and_connections(&self) -> (u64, u64) {
        let mut state = self.lock();
        (
            state.document.listed_size() as u64,
            state.members.len() as u64,
        )
    }

    pub fn users(&self) -> Vec<RoomUser> {
        self.lock().listed_users(None)
    }

    /// The document text (`getText('content')`), for tests and diagnostics.
    pub fn text(&self) -> String {
        self.lock().document.text()
    }
}

fn lock_state(state: &Mutex<RoomState>) -> MutexGuard<'_, RoomState> {
    // A panic while holding the lock cannot leave the document half-merged
    // (`Document` catches its own), so the data is still consistent.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
