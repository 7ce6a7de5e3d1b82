//! The wire protocols the bench can speak: where to connect, what to say on
//! connecting, how an edit becomes frames, and what a received frame means.
//!
//! Two protocols: coedit's original JSON protocol, and the binary y-protocols that
//! y-websocket providers speak (to coedit's `/api/yjs` or any y-websocket server).

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::protocol::{MSG_SYNC, MSG_SYNC_STEP_2, MSG_SYNC_UPDATE};
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::StateVector;

use super::editor::{Edit, Editor};
use crate::api::ClientMessage;

/// Which protocol the simulated editors speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The original JSON protocol: `update {data: hex}` text frames (spec §7).
    Json,
    /// The y-protocols of y-websocket: binary sync and update messages. The room is
    /// appended to `--url` as a provider does (`--url ws://host:8001/api/yjs` for
    /// coedit, `ws://host:1234` for a y-websocket server).
    Yjs,
}

/// What an edit sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// The whole document state on every keystroke, then a `cursor` message —
    /// exactly what the original browser page sends.
    Full,
    /// Only the keystroke's own update.
    Incremental,
}

/// Who a simulated editor says it is.
pub struct Identity {
    pub client_id: String,
    pub name: String,
    pub color: String,
}

/// A received frame, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A Yjs update (from `update`, `sync` or a binary frame), decoded into the
    /// caller's scratch buffer.
    Document,
    /// The `users` message that ends coedit's greeting.
    Greeting,
    /// A document update that also ends the greeting (y-protocol sync step 2).
    SyncedDocument,
    /// The server reported an error.
    ServerError,
    /// Presence, cursors, pongs: nothing to measure.
    Other,
    /// Not something this protocol can read.
    Malformed,
}

/// A received frame as a light receiver sees it: what it is, without decoding
/// the document update it may carry.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    /// An update relayed from another editor (`update`, a binary update message).
    Update,
    /// The end of the greeting (`users`, y-protocol sync step 2).
    Greeting,
    ServerError,
    /// A room state (`sync`), presence, cursors: nothing a light receiver counts.
    Other,
    Malformed,
}

/// Only the type of a server message: `serde_json` skips the rest, hex included,
/// without decoding it.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
}

/// The fields of a server message the bench reads; everything else is skipped.
/// Hex and message types never contain escapes, so borrowing cannot fail on them.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    data: Option<&'a str>,
}

impl Protocol {
    /// The WebSocket URL of `room` for `client_id` under the server's base URL.
    pub fn room_url(&self, base: &str, room: &str, client_id: &str) -> String {
        match self {
            Protocol::Json => format!(
                "{}/api/ws/{room}?client_id={client_id}",
                base.trim_end_matches('/')
            ),
            Protocol::Yjs => format!("{}/{room}", base.trim_end_matches('/')),
        }
    }

    /// Frames sent right after connecting. The original page sends `join` as soon
    /// as the socket opens, without waiting for the greeting, and so does the bench
    /// — which also lets it work against servers that send no greeting at all.
    pub fn hello(&self, identity: &Identity) -> Vec<Message> {
        match self {
            Protocol::Json => [
                ClientMessage::Join {
                    name: Some(identity.name.clone()),
                    color: Some(identity.color.clone()),
                    avatar_url: None,
                },
                ClientMessage::SyncRequest,
            ]
            .iter()
            .filter_map(|message| serde_json::to_string(message).ok())
            .map(Message::text)
            .collect(),
            // A provider opens with sync step 1; the answer (step 2) ends the greeting.
            Protocol::Yjs => vec![y_frame(YMessage::Sync(SyncMessage::SyncStep1(
                StateVector::default(),
            )))],
        }
    }

    /// Frames that carry `edit` with the given payload, appended to `out`.
    pub fn edit_frames(
        &self,
        payload: Payload,
        editor: &Editor,
        edit: &Edit,
        identity: &Identity,
        out: &mut Vec<Message>,
    ) {
        match (self, payload) {
            (Protocol::Json, Payload::Incremental) => {
                out.push(Message::text(json_update(&edit.update)));
            }
            (Protocol::Json, Payload::Full) => {
                out.push(Message::text(json_update(&editor.full_state())));
                out.push(Message::text(json_cursor(identity, edit.cursor)));
            }
            (Protocol::Yjs, Payload::Incremental) => out.push(y_update(edit.update.to_vec())),
            (Protocol::Yjs, Payload::Full) => out.push(y_update(editor.full_state())),
        }
    }

    /// Frames that bring the server up to date with everything the editor has,
    /// after a reconnect.
    pub fn resync_frames(&self, editor: &Editor) -> Vec<Message> {
        match self {
            Protocol::Json => vec![Message::text(json_update(&editor.full_state()))],
            Protocol::Yjs => vec![y_update(editor.full_state())],
        }
    }

    /// Reads a received frame; a document update is hex-decoded into `scratch`.
    pub fn read(&self, frame: &Message, scratch: &mut Vec<u8>) -> Incoming {
        match (self, frame) {
            (Protocol::Json, Message::Text(text)) => {
                let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(text.as_str()) else {
                    return Incoming::Malformed;
                };
                match (envelope.kind, envelope.data) {
                    ("update" | "sync", Some(data)) => {
                        scratch.clear();
                        scratch.resize(data.len() / 2, 0);
                        match faster_hex::hex_decode(data.as_bytes(), scratch) {
                            Ok(_) => Incoming::Document,
                            Err(_) => Incoming::Malformed,
                        }
                    }
                    ("users", _) => Incoming::Greeting,
                    ("error", _) => Incoming::ServerError,
                    _ => Incoming::Other,
                }
            }
            // The original page treats a binary frame as a raw Yjs update.
            (Protocol::Json, Message::Binary(bytes)) => {
                scratch.clear();
                scratch.extend_from_slice(bytes);
                Incoming::Document
            }
            (Protocol::Yjs, Message::Binary(bytes)) => match YMessage::decode_v1(bytes) {
                Ok(YMessage::Sync(SyncMessage::Update(update))) => {
                    scratch.clear();
                    scratch.extend_from_slice(&update);
                    Incoming::Document
                }
                // Sync step 2 answers our step 1: the room's state, and the end of
                // the greeting. Its content is applied like any update.
                Ok(YMessage::Sync(SyncMessage::SyncStep2(update))) => {
                    scratch.clear();
                    scratch.extend_from_slice(&update);
                    Incoming::SyncedDocument
                }
                Ok(_) => Incoming::Other,
                Err(_) => Incoming::Malformed,
            },
            _ => Incoming::Other,
        }
    }
}

impl Protocol {
    /// What a received frame is, for a light receiver: the message type only, so
    /// an update costs neither a hex decode nor a copy, let alone integration.
    pub fn peek(&self, frame: &Message) -> Peeked {
        match (self, frame) {
            (Protocol::Json, Message::Text(text)) => {
                match serde_json::from_str::<Kind<'_>>(text.as_str()) {
                    Ok(Kind { kind: "update" }) => Peeked::Update,
                    Ok(Kind { kind: "users" }) => Peeked::Greeting,
                    Ok(Kind { kind: "error" }) => Peeked::ServerError,
                    Ok(_) => Peeked::Other,
                    Err(_) => Peeked::Malformed,
                }
            }
            (Protocol::Json, Message::Binary(_)) => Peeked::Update,
            // Message types are lib0 varints, all below 128: one byte each.
            (Protocol::Yjs, Message::Binary(bytes)) => match (bytes.first(), bytes.get(1)) {
                (Some(&MSG_SYNC), Some(&MSG_SYNC_UPDATE)) => Peeked::Update,
                (Some(&MSG_SYNC), Some(&MSG_SYNC_STEP_2)) => Peeked::Greeting,
                (Some(&MSG_SYNC), None) | (None, _) => Peeked::Malformed,
                // Sync step 1, awareness, auth: nothing to count.
                (Some(_), _) => Peeked::Other,
            },
            _ => Peeked::Other,
        }
    }
}

/// `{"type":"update","data":"<hex>"}`, built in one allocation.
pub fn json_update(update: &[u8]) -> String {
    const HEAD: &str = r#"{"type":"update","data":""#;
    const TAIL: &str = r#""}"#;
    let mut json = String::with_capacity(HEAD.len() + update.len() * 2 + TAIL.len());
    json.push_str(HEAD);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in update {
        json.push(DIGITS[(byte >> 4) as usize] as char);
        json.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    json.push_str(TAIL);
    json
}

fn y_frame(message: YMessage) -> Message {
    Message::binary(message.encode_v1())
}

fn y_update(update: Vec<u8>) -> Message {
    y_frame(YMessage::Sync(SyncMessage::Update(update)))
}

fn json_cursor(identity: &Identity, position: u32) -> String {
    let message = ClientMessage::Cursor {
        user_id: Some(identity.client_id.clone()),
        name: Some(identity.name.clone()),
        color: Some(identity.color.clone()),
        position: Some(i64::from(position)),
    };
    // A struct of strings and an integer always serialises.
    serde_json::to_string(&message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_what_the_original_page_sends() {
        let json = json_update(&[0, 1, 0xab]);
        assert_eq!(json, r#"{"type":"update","data":"0001ab"}"#);
        let parsed: ClientMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed,
            ClientMessage::Update {
                data: "0001ab".into()
            }
        );
    }

    #[test]
    fn server_frames_are_classified() {
        let mut scratch = Vec::new();
        let read =
            |text: &str, scratch: &mut Vec<u8>| Protocol::Json.read(&Message::text(text), scratch);
        assert_eq!(
            read(
                r#"{"type":"update","data":"0a0b","from":"x"}"#,
                &mut scratch
            ),
            Incoming::Document
        );
        assert_eq!(scratch, vec![10, 11]);
        assert_eq!(
            read(r#"{"type":"sync","data":"ff"}"#, &mut scratch),
            Incoming::Document
        );
        assert_eq!(
            read(
                r#"{"type":"users","users":[{"id":"a","name":"A"}]}"#,
                &mut scratch
            ),
            Incoming::Greeting
        );
        assert_eq!(
            read(r#"{"type":"cursor","userId":"a"}"#, &mut scratch),
            Incoming::Other
        );
        assert_eq!(
            read(r#"{"type":"error","message":"no"}"#, &mut scratch),
            Incoming::ServerError
        );
        assert_eq!(
            read(r#"{"type":"update","data":"zz"}"#, &mut scratch),
            Incoming::Malformed
        );
        assert_eq!(read("not json", &mut scratch), Incoming::Malformed);
    }

    #[test]
    fn a_peek_tells_updates_from_everything_else() {
        let json = |text: &str| Protocol::Json.peek(&Message::text(text));
        assert_eq!(
            json(r#"{"type":"update","data":"0a0b","from":"x"}"#),
            Peeked::Update
        );
        // A room's state is not a relayed keystroke.
        assert_eq!(json(r#"{"type":"sync","data":"00"}"#), Peeked::Other);
        assert_eq!(json(r#"{"type":"users","users":[]}"#), Peeked::Greeting);
        assert_eq!(
            json(r#"{"type":"error","message":"no"}"#),
            Peeked::ServerError
        );
        assert_eq!(json(r#"{"type":"cursor","userId":"a"}"#), Peeked::Other);
        assert_eq!(json("not json"), Peeked::Malformed);
        assert_eq!(
            Protocol::Json.peek(&Message::binary(vec![0u8, 0])),
            Peeked::Update
        );

        let yjs = |message: YMessage| Protocol::Yjs.peek(&y_frame(message));
        assert_eq!(
            yjs(YMessage::Sync(SyncMessage::Update(vec![0, 0]))),
            Peeked::Update
        );
        assert_eq!(
            yjs(YMessage::Sync(SyncMessage::SyncStep2(vec![0, 0]))),
            Peeked::Greeting
        );
        assert_eq!(
            yjs(YMessage::Sync(SyncMessage::SyncStep1(
                StateVector::default()
            ))),
            Peeked::Other
        );
        assert_eq!(
            Protocol::Yjs.peek(&Message::binary(vec![3u8])),
            Peeked::Other,
            "query awareness"
        );
        assert_eq!(
            Protocol::Yjs.peek(&Message::binary(Vec::<u8>::new())),
            Peeked::Malformed
        );
    }

    #[test]
    fn room_urls_follow_the_original_path() {
        assert_eq!(
            Protocol::Json.room_url("ws://127.0.0.1:8001/", "r1", "c1"),
            "ws://127.0.0.1:8001/api/ws/r1?client_id=c1"
        );
    }
}
