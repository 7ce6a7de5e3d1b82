//! The binary y-protocols as a room speaks them to y-websocket clients: sync step 1
//! and 2, document updates, awareness states and awareness queries.
//!
//! Protocol details stock clients depend on: one protocol message per frame
//! (y-websocket 2.x/3.x reads only the first message of a frame); a provider counts
//! as synced only after sync step 2; every awareness change is relayed, renewals
//! included, since a browser provider closes a socket silent for 30 s; a client's
//! awareness states are removed with a null-state update when it disconnects.
//!
//! Awareness is bounded (`PresenceLimits`): Yjs client ids per connection, bytes
//! per state, states per room. A frame over a bound is refused whole and the
//! connection closed with 1008 and a reason saying which bound.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::IgnoredAny;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::fanout::{CloseReason, ConnectionId, Outbound, PerProtocol};
use super::{Origin, PresenceLimits, Room, RoomState, UpdateBytes, UpdateFormat};
use crate::server::document::DocumentError;
use crate::server::metrics::Metrics;

/// Awareness state JSON of a client that has gone.
const NULL_STATE: &str = "null";

/// Why a y-protocol frame was refused. The connection is closed for `Malformed`;
/// the room is untouched either way.
#[derive(Debug, thiserror::Error)]
pub enum YjsError {
    #[error("malformed y-protocol message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Update(#[from] DocumentError),
    /// Over an awareness bound; the connection is closed with this reason.
    #[error("{}", .0.reason)]
    Refused(CloseReason),
}

#[derive(Debug, Clone)]
struct Entry {
    clock: u32,
    json: Arc<str>,
    connection: ConnectionId,
}

/// The latest awareness state of every y-protocol client in the room, by Yjs
/// client id. A removed state is kept as `null` with its clock, so an older update
/// arriving late cannot bring it back.
#[derive(Debug, Default)]
pub(super) struct AwarenessStates {
    entries: HashMap<u64, Entry>,
}

impl AwarenessStates {
    /// Whether `entry` replaces what is known of `id`: a newer clock, or a removal
    /// at the same clock. Older news is ignored (clients echo what they receive).
    fn is_newer(&self, id: ClientID, entry: &AwarenessUpdateEntry) -> bool {
        let is_null = &*entry.json == NULL_STATE;
        match self.entries.get(&id.get()) {
            None => !is_null,
            Some(known) => {
                known.clock < entry.clock
                    || (known.clock == entry.clock && is_null && &*known.json != NULL_STATE)
            }
        }
    }

    /// Keeps the entries of `update` that are news, as `connection`'s; returns them.
    fn record(
        &mut self,
        update: AwarenessUpdate,
        connection: ConnectionId,
    ) -> HashMap<ClientID, AwarenessUpdateEntry> {
        let mut accepted = HashMap::new();
        for (id, entry) in update.clients {
            if !self.is_newer(id, &entry) {
                continue;
            }
            // Another node's client that left: that node relays its states in
            // order, so no older state of it can follow, and a marker kept for
            // every client that ever left there would grow until the node dies.
            if connection & REMOTE_BIT != 0 && &*entry.json == NULL_STATE {
                self.entries.remove(&id.get());
                accepted.insert(id, entry);
                continue;
            }
            self.entries.insert(
                id.get(),
                Entry {
                    clock: entry.clock,
                    json: entry.json.clone(),
                    connection,
                },
            );
            accepted.insert(id, entry);
        }
        accepted
    }

    /// Current non-null states as one awareness update, or `None` if there are none.
    fn current(&self) -> Option<AwarenessUpdate> {
        self.current_where(|_| true)
    }

    /// `current`, only of the states kept under connections `keep` accepts.
    fn current_where(&self, keep: impl Fn(ConnectionId) -> bool) -> Option<AwarenessUpdate> {
        let clients: HashMap<ClientID, AwarenessUpdateEntry> = self
            .entries
            .iter()
            .filter(|(_, entry)| &*entry.json != NULL_STATE && keep(entry.connection))
            .map(|(id, entry)| {
                (
                    ClientID::new(*id),
                    AwarenessUpdateEntry {
                        clock: entry.clock,
                        json: entry.json.clone(),
                    },
                )
            })
            .collect();
        (!clients.is_empty()).then_some(AwarenessUpdate { clients })
    }
}

fn binary(message: &Message) -> Outbound {
    Outbound::Binary(Bytes::from(message.encode_v1()))
}

/// A document update as y-protocol clients receive it.
pub(super) fn update_message(delta: &[u8]) -> Outbound {
    binary(&Message::Sync(SyncMessage::Update(delta.to_vec())))
}

/// What a y-protocol client is sent on connecting: our sync step 1, so it sends
/// what we lack, and the awareness states of everyone already here.
pub(super) fn greeting(state: &RoomState) -> Vec<Outbound> {
    let mut greeting = vec![binary(&Message::Sync(SyncMessage::SyncStep1(
        state.document.state_vector(),
    )))];
    if let Some(current) = state.awareness.current() {
        greeting.push(binary(&Message::Awareness(current)));
    }
    greeting
}

/// Removes the awareness states a closing connection owned and tells the other
/// y-protocol clients, with the null-state update they expect.
pub(super) fn forget_connection(
    state: &mut RoomState,
    metrics: &Metrics,
    connection: ConnectionId,
    client_id: &str,
) {
    let mut removed = HashMap::new();
    state.awareness.entries.retain(|id, entry| {
        if entry.connection != connection {
            return true;
        }
        // A client that said goodbye (a null state) was already announced as gone;
        // announcing it again would make editors show the departure twice.
        if &*entry.json == NULL_STATE {
            return false;
        }
        removed.insert(
            ClientID::new(*id),
            AwarenessUpdateEntry {
                clock: entry.clock.wrapping_add(1),
                json: Arc::from(NULL_STATE),
            },
        );
        false
    });
    if removed.is_empty() {
        return;
    }
    let message = binary(&Message::Awareness(AwarenessUpdate { clients: removed }));
    if connection & REMOTE_BIT == 0 {
        publish_awareness(state, client_id, &message);
    }
    state.broadcast(metrics, Some(client_id), yjs_only(message));
}

/// Connection ids with this bit hold the awareness states of another node's clients.
const REMOTE_BIT: ConnectionId = 1 << 63;

impl Room {
    /// The awareness states of this node's own y-protocol clients, as one frame,
    /// for a node that just opened the room.
    pub fn local_awareness(&self) -> Option<Bytes> {
        let update = self
            .lock()
            .awareness
            .current_where(|connection| connection & REMOTE_BIT == 0)?;
        Some(Bytes::from(Message::Awareness(update).encode_v1()))
    }
}

/// Tells the other nodes of a cluster about an awareness change made here.
fn publish_awareness(state: &RoomState, client_id: &str, frame: &Outbound) {
    if let Outbound::Binary(frame) = frame {
        state.publish(|| super::remote::PeerEvent {
            from: client_id.to_owned(),
            json: None,
            awareness: Some(hex::encode(frame)),
            presence: None,
        });
    }
}

/// Applies an awareness frame another node relayed: its states are kept under
/// `connection` (that node's), and what is news goes to this node's y-protocol
/// members.
pub(super) fn apply_remote_awareness(
    state: &mut RoomState,
    metrics: &Metrics,
    connection: ConnectionId,
    from: &str,
    frame: &[u8],
) {
    let Some(update) = super::remote::awareness_of(frame) else {
        return;
    };
    let accepted = state.awareness.record(update, connection);
    if accepted.is_empty() {
        return;
    }
    let relay = binary(&Message::Awareness(AwarenessUpdate { clients: accepted }));
    state.broadcast(metrics, Some(from), yjs_only(relay));
}

fn yjs_only(
    message: Outbound,
) -> PerProtocol<impl FnMut() -> Option<Outbound>, impl FnMut() -> Option<Outbound>> {
    PerProtocol::new(|| None, move || Some(message.clone()))
}

/// Most protocol messages one frame may hold. y-websocket's clients and server
/// send one per frame; each message past the first counts against the sender's
/// rate limit as a frame of its own (`yjs_message` says how many there were).
/// Without a bound, one frame of one-byte awareness queries or tiny updates was
/// millions of messages: past the rate limit, handled in one go under the room's
/// lock, and decoded into a list many times the frame's size.
pub const MAX_MESSAGES_PER_FRAME: usize = 8;

/// Decodes the protocol messages in a frame, at most `MAX_MESSAGES_PER_FRAME`;
/// a panic in the decoder counts as malformed input.
/// Whether a frame holds awareness messages only: over the rate limit such a frame
/// may be dropped (a provider renews its state every 15 s and sends back every
/// state it is sent), where dropping a document update would fork the sender.
pub fn only_awareness(frame: &[u8]) -> bool {
    decode(frame).is_ok_and(|messages| {
        messages
            .iter()
            .all(|message| matches!(message, Message::Awareness(_)))
    })
}

fn decode(frame: &[u8]) -> Result<Vec<Message>, YjsError> {
    // y-websocket's server skips a message kind it does not know (a newer
    // client's, or another library's custom one) and keeps the connection; so do
    // we, for a frame that starts with one. The kinds it knows: sync (0, with its
    // steps 0–2), awareness (1), auth (2) and the awareness query (3).
    match frame {
        [kind, ..] if *kind > 3 => return Ok(Vec::new()),
        [0, step, ..] if *step > 2 => return Ok(Vec::new()),
        _ => {}
    }
    let messages = catch_unwind(AssertUnwindSafe(|| {
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let mut messages = Vec::new();
        for message in MessageReader::new(&mut decoder) {
            if messages.len() == MAX_MESSAGES_PER_FRAME {
                return Err(YjsError::Refused(CloseReason::PACKED_FRAME));
            }
            messages.push(message.map_err(|error| YjsError::Malformed(error.to_string()))?);
        }
        Ok(messages)
    }))
    .map_err(|_| YjsError::Malformed("decoder crashed".into()))??;
    if messages.is_empty() {
        return Err(YjsError::Malformed("empty frame".into()));
    }
    Ok(messages)
}

/// What a y-protocol connection does about an update the room refused. The
/// protocol has no error message, and a provider sends the same edits again in
/// its step 2 at every reconnection: closing for an update that is well formed but
/// cannot be taken (the room is read-only because the store refuses it, the
/// document would pass its size limit, a step 2 continues edits the room never
/// got) would only make the client reconnect, be closed again, and flap in and
/// out of every member's presence. Such an update is dropped, as a read-only
/// token's are; only one that cannot be read closes the connection.
fn refuse_quietly(
    metrics: &Metrics,
    client_id: &str,
    error: DocumentError,
) -> Result<(), YjsError> {
    match error {
        DocumentError::TooLarge { .. }
        | DocumentError::Unstorable(_)
        | DocumentError::MissingEdits { .. } => {
            // The others are counted where the document refused them.
            if matches!(error, DocumentError::Unstorable(_)) {
                metrics
                    .counters()
                    .rejected_updates
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::debug!(client_id, %error, "dropping a y-protocol update the room cannot take");
            Ok(())
        }
        _ => Err(error.into()),
    }
}

impl Room {
    /// Handles one binary frame from a y-protocol connection; returns how many
    /// protocol messages it held. Without `may_write` (a read-only token) updates
    /// are ignored: the client still syncs and shows presence, but cannot change
    /// the document.
    pub fn yjs_message(
        &self,
        connection: ConnectionId,
        client_id: &str,
        frame: &[u8],
        may_write: bool,
    ) -> Result<usize, YjsError> {
        let messages = decode(frame)?;
        let count = messages.len();
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(remote)) => {
                    let mut state = self.lock();
                    let diff = state.document.diff(&remote);
                    let reply = binary(&Message::Sync(SyncMessage::SyncStep2(diff.to_vec())));
                    state.send_to(self.metrics(), connection, reply);
                }
                Message::Sync(SyncMessage::SyncStep2(_) | SyncMessage::Update(_)) if !may_write => {
                    tracing::debug!(client_id, "ignoring an update from a read-only client");
                }
                Message::Sync(SyncMessage::Update(update)) => {
                    let origin = Origin {
                        client_id,
                        format: UpdateFormat::YjsSync,
                    };
                    match self.apply_update(origin, UpdateBytes::Raw(&update)) {
                        Ok(_) => {}
                        // It follows edits this room lacks: typed offline, or sent
                        // before the client answered the server's step 1. Rather
                        // than close, the room asks for everything it lacks; the
                        // client's step 2 brings the gap and this update together.
                        Err(DocumentError::MissingEdits { .. }) => {
                            let mut state = self.lock();
                            let step1 = binary(&Message::Sync(SyncMessage::SyncStep1(
                                state.document.state_vector(),
                            )));
                            state.send_to(self.metrics(), connection, step1);
                        }
                        Err(error) => refuse_quietly(self.metrics(), client_id, error)?,
                    }
                }
                // A step 2 answers the room's own step 1: one with a gap still has
                // edits missing on the client's side too, and asking again would
                // only bring the same.
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    let origin = Origin {
                        client_id,
                        format: UpdateFormat::YjsSync,
                    };
                    if let Err(error) = self.apply_update(origin, UpdateBytes::Raw(&update)) {
                        refuse_quietly(self.metrics(), client_id, error)?;
                    }
                }
                Message::Awareness(update) => {
                    self.apply_awareness(connection, client_id, update)?
                }
                Message::AwarenessQuery => {
                    let mut state = self.lock();
                    if let Some(current) = state.awareness.current() {
                        state.send_to(
                            self.metrics(),
                            connection,
                            binary(&Message::Awareness(current)),
                        );
                    }
                }
                // Authentication is not part of this endpoint; unknown message kinds
                // are ignored so newer clients keep working.
                Message::Auth(_) | Message::Custom(..) => {}
            }
        }
        Ok(count)
    }

    fn apply_awareness(
        &self,
        connection: ConnectionId,
        client_id: &str,
        mut update: AwarenessUpdate,
    ) -> Result<(), YjsError> {
        let limits = self.inner.settings.presence;
        // A state that is not JSON would make every provider that is sent it
        // throw while applying the update, losing the other states in it.
        update
            .clients
            .retain(|_, entry| serde_json::from_str::<IgnoredAny>(&entry.json).is_ok());
        let mut state = self.lock();
        check_awareness(&state.awareness, connection, &update, limits)?;
        let accepted = state.awareness.record(update, connection);
        let introduced = accepted
            .values()
            .filter(|entry| &*entry.json != NULL_STATE)
            .find_map(|entry| user_of(&entry.json));
        if accepted.is_empty() {
            return Ok(());
        }
        let relay = binary(&Message::Awareness(AwarenessUpdate { clients: accepted }));
        publish_awareness(&state, client_id, &relay);
        // The sender too, as y-websocket's server does: a provider alone in a room
        // hears nothing else, and one that hears nothing for 30 s reconnects. It
        // ignores its own state at a clock it already has.
        state.broadcast(self.metrics(), None, yjs_only(relay));
        if let Some((name, color)) = introduced {
            if state.introduce(self.metrics(), client_id, name.clone(), color.clone()) {
                drop(state);
                self.report_joined(client_id, &name, &color);
            }
        }
        Ok(())
    }
}

/// Refuses an awareness update that would take a state over the size bound, this
/// connection over its client ids, or the room over its states. Checked before
/// anything changes, so a refused update leaves no trace.
fn check_awareness(
    states: &AwarenessStates,
    connection: ConnectionId,
    update: &AwarenessUpdate,
    limits: PresenceLimits,
) -> Result<(), YjsError> {
    if update
        .clients
        .iter()
        .any(|(id, entry)| entry.json.len() > limits.state_bytes && states.is_newer(*id, entry))
    {
        return Err(YjsError::Refused(CloseReason::AWARENESS_BYTES));
    }
    // States count, not the markers of clients that left.
    let live = |entry: &&Entry| &*entry.json != NULL_STATE;
    let mut owned = states
        .entries
        .values()
        .filter(live)
        .filter(|entry| entry.connection == connection)
        .count();
    let mut total = states.entries.values().filter(live).count();
    for (id, entry) in &update.clients {
        if !states.is_newer(*id, entry) {
            continue;
        }
        if &*entry.json == NULL_STATE {
            continue;
        }
        match states.entries.get(&id.get()) {
            Some(known) if known.connection == connection && &*known.json != NULL_STATE => {}
            // Taking over a state (a newer clock) makes it this connection's.
            Some(known) if &*known.json != NULL_STATE => owned += 1,
            Some(_) | None => {
                owned += 1;
                total += 1;
            }
        }
    }
    if owned > limits.ids_per_connection {
        return Err(YjsError::Refused(CloseReason::AWARENESS_IDS));
    }
    if total > limits.room_users {
        return Err(YjsError::Refused(CloseReason::AWARENESS_ROOM));
    }
    Ok(())
}

/// The `user: {name, color}` y-websocket editors put in their awareness state.
fn user_of(json: &str) -> Option<(String, String)> {
    let state: serde_json::Value = serde_json::from_str(json).ok()?;
    let user = state.get("user")?;
    let name = user.get("name")?.as_str()?.to_owned();
    let color = user
        .get("color")
        .and_then(|color| color.as_str())
        .unwrap_or(super::PALETTE[0])
        .to_owned();
    Some((name, color))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_are_not_y_protocol_are_malformed() {
        assert!(matches!(decode(&[]), Err(YjsError::Malformed(_))));
        // A sync step or message kind the protocol does not define is skipped.
        assert!(decode(&[0, 9, 1]).is_ok_and(|messages| messages.is_empty()));
        assert!(decode(&[7, 200, 1]).is_ok_and(|messages| messages.is_empty()));
        assert!(matches!(
            decode(&[0, 0, 200, 200, 200]),
            Err(YjsError::Malformed(_))
        ));
        let step1 = Message::Sync(SyncMessage::SyncStep1(Default::default())).encode_v1();
        assert_eq!(decode(&step1).unwrap().len(), 1);
    }

    fn update(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: entries
                .iter()
                .map(|&(id, clock, json)| {
                    (
                        ClientID::new(id),
                        AwarenessUpdateEntry {
                            clock,
                            json: Arc::from(json),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Clients that left another node leave no marker behind, and markers never
    /// count as states: a room whose clients came and went for long is not full.
    #[test]
    fn clients_that_left_do_not_fill_the_room() {
        let limits = PresenceLimits {
            ids_per_connection: 2,
            state_bytes: 1024,
            room_users: 3,
        };
        let other_node = REMOTE_BIT | 7;
        let mut states = AwarenessStates::default();
        for id in 1..=10 {
            states.record(update(&[(id, 1, "{}")]), other_node);
            let left = states.record(update(&[(id, 2, NULL_STATE)]), other_node);
            assert_eq!(left.len(), 1, "the departure is relayed");
        }
        assert!(states.entries.is_empty(), "{:?}", states.entries);
        // A local client that said goodbye keeps its marker, which is no state.
        states.record(update(&[(20, 1, "{}")]), 1);
        states.record(update(&[(20, 2, NULL_STATE)]), 1);
        assert!(states.record(update(&[(20, 1, "{}")]), 1).is_empty());
        states.record(update(&[(21, 1, "{}"), (22, 1, "{}")]), 2);
        let joining = update(&[(30, 1, "{}")]);
        assert!(check_awareness(&states, 3, &joining, limits).is_ok());
        states.record(joining, 3);
        assert!(matches!(
            check_awareness(&states, 4, &update(&[(40, 1, "{}")]), limits),
            Err(YjsError::Refused(CloseReason::AWARENESS_ROOM))
        ));
        // A connection may say goodbye for its ids whatever the room holds.
        assert!(check_awareness(&states, 2, &update(&[(21, 2, NULL_STATE)]), limits).is_ok());
    }

    #[test]
    fn user_names_come_from_the_awareness_user_field() {
        assert_eq!(
            user_of(r##"{"user":{"name":"Ada","color":"#30bced"}}"##),
            Some(("Ada".into(), "#30bced".into()))
        );
        assert_eq!(user_of(r#"{"cursor":null}"#), None);
        assert_eq!(user_of("not json"), None);
    }
}
