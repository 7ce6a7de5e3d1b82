//! Everything that crosses the wire: REST bodies and WebSocket messages, defined once
//! and used by the server, the command-line clients, the bench and the tests.
//!
//! Field names are the original backend's (spec §6–§7), camelCase and snake_case
//! mixed exactly as it had them; fields we add are marked "added by coedit".

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Timestamps as the original wrote them: ISO-8601 in UTC.
pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /api/`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiInfo {
    pub message: String,
    /// Added by coedit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Added by coedit: whether the admin endpoints want `Authorization: Bearer`,
    /// so a page can ask for the token before calling them rather than after a 401.
    #[serde(default)]
    pub admin_token_required: bool,
}

/// `GET /api/health`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `healthy`, or `degraded` while the store is failing (added states by coedit).
    pub status: String,
    pub timestamp: String,
    /// Added by coedit: the store's own state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreHealth>,
    /// Added by coedit: this node's view of its cluster, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
    /// Added by coedit: webhook delivery, when webhooks are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhooksHealth>,
}

/// Added by coedit: whether a cluster node reaches Redis, and how many nodes live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterHealth {
    pub node_id: String,
    /// `healthy` or `degraded`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub live_nodes: u64,
}

/// `GET /api/cluster` (added by coedit): the live nodes of this node's cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterView {
    /// The node that answered.
    pub node_id: String,
    pub nodes: Vec<ClusterNode>,
}

/// One live node of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterNode {
    pub node_id: String,
    /// The node's process: its id plus a part that changes on restart.
    pub instance: String,
    pub address: String,
    pub rooms: u64,
    pub connections: u64,
    /// When it last beat (RFC 3339).
    pub last_heartbeat: String,
    pub started: String,
    /// True for the node that answered.
    pub this_node: bool,
}

/// Added by coedit: whether webhook deliveries are getting through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhooksHealth {
    /// `healthy`, or `degraded` while the last attempt to some URL failed.
    pub state: String,
    /// Which URLs are failing and why (a URL is named by its number and host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Events waiting to be delivered.
    pub queued: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    /// Events dropped because a URL's queue was full.
    pub dropped: u64,
    /// Events given up after every retry failed.
    pub abandoned: u64,
}

/// Added by coedit: which store is in use and whether it is keeping up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreHealth {
    /// `sqlite` or `mongodb`.
    pub backend: String,
    /// `healthy` or `degraded`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Accepted updates not yet written to the store.
    #[serde(default)]
    pub backlog: u64,
    /// Rooms whose writes the store refuses for good (too large, invalid); they are
    /// read-only and kept in memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_rooms: Vec<RefusedRoom>,
}

/// Added by coedit: a room the store refuses to write, and the store's reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusedRoom {
    pub room: String,
    pub reason: String,
}

/// `GET /api/metrics`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub active_connections: u64,
    pub messages_per_sec: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    /// Added by coedit.
    #[serde(default)]
    pub p99_latency_ms: f64,
    /// Added by coedit.
    #[serde(default)]
    pub max_latency_ms: f64,
    pub error_count: u64,
    pub reconnect_count: u64,
    pub total_doc_size_bytes: u64,
    pub uptime_seconds: f64,
    pub total_messages: u64,
    pub rooms_active: u64,
    /// Added by coedit: messages sent to clients, counting each recipient.
    #[serde(default)]
    pub messages_delivered: u64,
    /// Added by coedit: connections closed because they stopped reading.
    #[serde(default)]
    pub slow_consumer_disconnects: u64,
    /// Added by coedit: updates refused as malformed.
    #[serde(default)]
    pub rejected_updates: u64,
    /// Added by coedit: panics in decoding or merging untrusted data, caught and
    /// answered with an error (the room was rebuilt from its last good state).
    #[serde(default)]
    pub panics_caught: u64,
    /// Added by coedit: failed store operations since start.
    #[serde(default)]
    pub store_errors: u64,
    /// Added by coedit: accepted updates waiting to be written to the store.
    #[serde(default)]
    pub store_backlog: u64,
    /// Added by coedit: rooms whose writes the store refuses for good.
    #[serde(default)]
    pub store_refused_rooms: u64,
    /// Added by coedit: of `active_connections`, those on the y-protocols endpoint.
    #[serde(default)]
    pub yjs_connections: u64,
    /// Added by coedit: rooms held in memory, with or without connections.
    #[serde(default)]
    pub rooms_loaded: u64,
    /// Added by coedit, in a cluster: this node's id (the figures above are its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Added by coedit, in a cluster: nodes alive as of the last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_nodes: Option<u64>,
    /// Added by coedit: webhook events delivered (a 2xx answer), per URL.
    #[serde(default)]
    pub webhooks_delivered: u64,
    /// Added by coedit: webhook POSTs that failed (each retry counts).
    #[serde(default)]
    pub webhooks_failed_attempts: u64,
    /// Added by coedit: webhook events dropped because a URL's queue was full.
    #[serde(default)]
    pub webhooks_dropped: u64,
    /// Added by coedit: webhook events given up after every retry failed.
    #[serde(default)]
    pub webhooks_abandoned: u64,
    /// Added by coedit: webhook events waiting to be delivered.
    #[serde(default)]
    pub webhooks_queued: u64,
}

/// One entry of `GET /api/metrics/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub room_id: String,
    pub user_id: String,
    pub details: String,
}

/// `GET /api/rooms` entries and `GET /api/rooms/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomInfo {
    pub id: String,
    pub name: String,
    pub user_count: u64,
    /// Bytes of the document's full-state encoding.
    pub doc_size: u64,
    /// Each user with every field of the user object, as in `/users`.
    pub users: Vec<RoomUser>,
    /// Added by coedit: open WebSocket connections (a user may hold several).
    #[serde(default)]
    pub connections: u64,
    /// Added by coedit: false when the server holds nothing for this room (nobody
    /// connected, no simulated users, nothing stored). The original answered such a
    /// room as an empty one, and so does coedit; this says it is only that.
    #[serde(default = "yes")]
    pub exists: bool,
    /// Added by coedit: when the document last changed or someone came or went
    /// (ISO-8601, to the second); absent until that has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
}

/// `GET /api/metrics/history`: the server second by second, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsHistory {
    /// Seconds between samples.
    pub interval_seconds: u64,
    /// How many samples the server keeps (15 minutes' worth).
    pub capacity: usize,
    pub samples: Vec<MetricsSample>,
}

/// One second of the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsSample {
    /// End of the second, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Client messages processed in that second.
    pub messages: u64,
    /// Messages queued to recipients in that second.
    pub deliveries: u64,
    /// Processing latency of that second's messages (0 when there were none).
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Open WebSocket connections at the end of the second.
    pub connections: u64,
    /// Rooms in memory at the end of the second.
    pub rooms: u64,
}

/// `GET /api/rooms/{id}/text` and the `text` event of `GET /api/rooms/{id}/stream`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomText {
    pub room_id: String,
    /// `getText('content')` of the room's document.
    pub text: String,
    /// Changes whenever the document does; equal revisions mean equal text.
    pub revision: u64,
    /// False when the room is not in memory (the text is then empty).
    pub loaded: bool,
}

/// A string field that may be `null`, read as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}

impl RoomInfo {
    /// What the original answers for a room it has never seen: no users, no document.
    pub fn empty(room_id: &str) -> Self {
        Self {
            id: room_id.to_owned(),
            name: room_id.to_owned(),
            user_count: 0,
            doc_size: 0,
            users: Vec::new(),
            connections: 0,
            exists: false,
            last_activity: None,
        }
    }
}

/// Where a user's cursor is. The original page sends a character offset; the
/// original backend gave its simulated users a line and a column.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CursorPosition {
    Offset(i64),
    LineColumn { line: u32, column: u32 },
}

impl std::fmt::Display for CursorPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorPosition::Offset(offset) => write!(f, "{offset}"),
            CursorPosition::LineColumn { line, column } => write!(f, "{line}:{column}"),
        }
    }
}

/// A user's presence: `GET /api/rooms/{id}/users`, the users of a room summary, and
/// the `users` WebSocket message. Every field is always present, `null` when unknown,
/// as the original wrote its user objects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomUser {
    pub id: String,
    pub name: String,
    pub color: String,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// `null` until the user has sent a cursor.
    #[serde(default)]
    pub cursor_position: Option<CursorPosition>,
    #[serde(default)]
    pub selection: Option<Value>,
    #[serde(default)]
    pub simulated: bool,
}

/// `POST /api/rooms/{id}/persist` and `GET /api/rooms/{id}/load`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersistResponse {
    pub success: bool,
    /// Length of the hex encoding, as the original stored it in `room_documents.size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `DELETE /api/rooms/{id}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeleteRoomResponse {
    pub success: bool,
    pub room_id: String,
    /// Connections that were open in the room and were closed.
    pub closed_connections: u64,
}

/// `GET /api/rooms/{id}/history`: the versions a room's history holds, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryResponse {
    pub room_id: String,
    /// How long the server keeps history (`--history-retention`), in seconds.
    pub retention_seconds: u64,
    /// The oldest sequence number a version can be read at, if any.
    pub readable_from: Option<u64>,
    pub versions: Vec<HistoryVersion>,
}

/// Edits made close together (within a minute of the first), as one version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryVersion {
    /// Read or restore this version with `seq=`.
    pub seq: u64,
    /// When its last edit was made (RFC 3339).
    pub at: String,
    /// Edits in it.
    pub edits: u64,
    /// Bytes of its edits.
    pub size: u64,
    /// Users (or client ids) whose edits it holds.
    pub authors: Vec<String>,
}

/// `POST /api/rooms/{id}/restore`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestoreResponse {
    pub success: bool,
    pub room_id: String,
    /// The version restored.
    pub seq: u64,
    /// Root types left as they are (XML is not restored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_roots: Vec<String>,
}

/// `POST /api/rooms/{id}/import`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImportResponse {
    pub success: bool,
    pub room_id: String,
    /// False when the document already held everything imported.
    pub changed: bool,
    /// Size of the room's document afterwards, bytes of its Yjs encoding.
    pub doc_size: u64,
}

/// `POST /api/simulate/users/{id}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimulateAddResponse {
    pub success: bool,
    pub simulated_users: u64,
    pub total_users: u64,
}

/// `DELETE /api/simulate/users/{id}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimulateRemoveResponse {
    pub success: bool,
    pub removed: u64,
}

/// Body of every 4xx/5xx answer coedit itself produces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub success: bool,
    pub error: String,
}

/// Messages a client sends over `/api/ws/{room_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        color: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar_url: Option<String>,
    },
    SyncRequest,
    Update {
        /// The original ignored an update without data, `null` included.
        #[serde(default, deserialize_with = "null_as_empty")]
        data: String,
    },
    Cursor {
        #[serde(default, rename = "userId", skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
        #[serde(default)]
        position: Option<i64>,
    },
    Selection {
        #[serde(default)]
        selection: Value,
    },
    /// Relayed to the other members as is, with the sender's id added.
    Awareness {
        #[serde(flatten)]
        fields: serde_json::Map<String, Value>,
    },
    Ping {
        #[serde(default)]
        timestamp: Value,
    },
    /// Any other `type`; answered with an `error`, the connection stays open.
    #[serde(other)]
    Unknown,
}

/// An entry of the `users_list` message (note `cursorPosition`, camelCase, unlike the
/// REST user list).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListedUser {
    pub id: String,
    pub name: String,
    pub color: String,
    /// `null` until the user has sent a cursor, as the original sent it.
    #[serde(rename = "cursorPosition", default)]
    pub cursor_position: Option<CursorPosition>,
    #[serde(default)]
    pub simulated: bool,
}

/// Messages the server sends over `/api/ws/{room_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Sync {
        data: String,
    },
    Users {
        users: Vec<RoomUser>,
    },
    UsersList {
        users: Vec<ListedUser>,
    },
    Update {
        data: String,
        from: String,
    },
    Cursor {
        #[serde(rename = "userId")]
        user_id: String,
        name: String,
        color: String,
        position: i64,
    },
    Selection {
        #[serde(rename = "userId")]
        user_id: String,
        selection: Value,
    },
    Awareness {
        #[serde(flatten)]
        fields: serde_json::Map<String, Value>,
    },
    UserJoined {
        #[serde(rename = "userId")]
        user_id: String,
        name: String,
        color: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        simulated: bool,
    },
    UserLeft {
        #[serde(rename = "userId")]
        user_id: String,
    },
    Pong {
        timestamp: Value,
    },
    Error {
        message: String,
    },
}

impl ServerMessage {
    /// Serialises to the text of one WebSocket frame.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every key is a string and no value is a
        // map with non-string keys.
        serde_json::to_string(self).expect("server messages always serialise")
    }

    /// The `sync` message for a document's full state: what `to_json` makes of
    /// `Sync { data: hex(state) }`, written directly. Hex needs no JSON escaping,
    /// so the text is the two fixed ends around it; for a large document this
    /// spares the room's lock a slow per-byte encoding and a scan of the copy.
    pub fn sync_json(state: &[u8]) -> String {
        const START: &str = r#"{"type":"sync","data":""#;
        const END: &str = r#""}"#;
        let mut text = vec![0; START.len() + 2 * state.len() + END.len()];
        text[..START.len()].copy_from_slice(START.as_bytes());
        let hex_end = START.len() + 2 * state.len();
        faster_hex::hex_encode(state, &mut text[START.len()..hex_end])
            .expect("the hex buffer is exactly twice the state");
        text[hex_end..].copy_from_slice(END.as_bytes());
        String::from_utf8(text).expect("ASCII around lowercase hex")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sync_written_directly_is_the_serialised_message() {
        for state in [
            vec![],
            vec![0u8, 1, 0xab, 0xff],
            (0..=255u8).cycle().take(5000).collect(),
        ] {
            let expected = ServerMessage::Sync {
                data: hex::encode(&state),
            }
            .to_json();
            assert_eq!(ServerMessage::sync_json(&state), expected);
        }
    }

    #[test]
    fn original_client_messages_parse() {
        let join: ClientMessage =
            serde_json::from_value(json!({"type":"join","name":"Alice","color":"#F43F5E"}))
                .unwrap();
        assert!(matches!(join, ClientMessage::Join { name: Some(n), .. } if n == "Alice"));
        let cursor: ClientMessage = serde_json::from_value(
            json!({"type":"cursor","userId":"u","name":"A","color":"#fff","position":3}),
        )
        .unwrap();
        assert!(matches!(
            cursor,
            ClientMessage::Cursor {
                position: Some(3),
                ..
            }
        ));
        let unknown: ClientMessage = serde_json::from_value(json!({"type":"dance"})).unwrap();
        assert_eq!(unknown, ClientMessage::Unknown);
    }

    #[test]
    fn server_messages_use_the_original_field_names() {
        let joined = ServerMessage::UserJoined {
            user_id: "u".into(),
            name: "A".into(),
            color: "#fff".into(),
            simulated: false,
        };
        assert_eq!(
            serde_json::to_value(&joined).unwrap(),
            json!({"type":"user_joined","userId":"u","name":"A","color":"#fff"})
        );
        let list = ServerMessage::UsersList {
            users: vec![ListedUser {
                id: "b".into(),
                name: "Bob".into(),
                color: "#000".into(),
                cursor_position: Some(CursorPosition::Offset(4)),
                simulated: false,
            }],
        };
        assert_eq!(
            serde_json::to_value(&list).unwrap()["users"][0]["cursorPosition"],
            json!(4)
        );
    }
}
