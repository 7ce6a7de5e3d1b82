//! A room shared with other nodes of a cluster: what this room tells its peers
//! (presence changes, relayed presence messages, awareness) and what it does with
//! theirs (document updates from the shared log, remote users and awareness).
//!
//! The room knows nothing of Redis: it publishes `PeerEvent`s through `Peers`, and
//! the cluster module calls `apply_remote`, `peer_event` and `forget_node` with
//! what arrives. Remote users are listed with the local ones and counted in the
//! room's users, but never keep the room in memory: that is the local members' job.

use std::collections::HashMap;
use std::sync::Arc;
use yrs::encoding::read::Cursor;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use yrs::sync::{Message, MessageReader};
use yrs::updates::decoder::DecoderV1;

use super::fanout::{ConnectionId, Outbound, PerProtocol};
use super::{Room, RoomState};
use crate::api::{RoomUser, ServerMessage};
use crate::server::document::Applied;

/// What a room tells the other nodes holding it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerEvent {
    /// The client id it comes from: its own connections on other nodes are skipped.
    pub from: String,
    /// A JSON-protocol message for every JSON member (`user_joined`, `cursor`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// A y-protocol awareness frame (hex) for every y-protocol member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awareness: Option<String>,
    /// How the room's list of users changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceChange>,
}

/// A user appearing (or changing name, colour, cursor or selection), or leaving.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceChange {
    Present { user: RoomUser },
    Gone { id: String },
}

/// The cluster side of a room: where events go, and where rooms opening and closing
/// are reported so the node follows their shared log.
pub trait Peers: Send + Sync + 'static {
    /// Hands an event to the other nodes; never blocks (dropped when backed up:
    /// presence is renewed by the clients).
    fn publish(&self, room_id: &str, event: PeerEvent);
    /// The room was loaded on this node.
    fn opened(&self, room: &Room);
    /// The room left this node's memory (unloaded or deleted). Naming the room
    /// itself, not its id: a new room of the same id may have opened meanwhile.
    fn closed(&self, room: &Room);
}

/// A room's link to its peers, kept in its state.
#[derive(Clone)]
pub(super) struct PeerLink {
    pub(super) peers: Arc<dyn Peers>,
    pub(super) room_id: Arc<str>,
}

/// A user connected to another node.
#[derive(Debug, Clone)]
pub(super) struct RemoteUser {
    /// The node instance the user is connected to.
    pub(super) node: String,
    pub(super) user: RoomUser,
    pub(super) order: u64,
}

/// The connection id awareness states of another node's clients are kept under:
/// the high bit set, which local connection counters never reach.
pub fn remote_connection(node: &str) -> ConnectionId {
    // FNV-1a, stable across nodes and runs.
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash | (1 << 63)
}

impl RoomState {
    /// Tells the other nodes, if the room is shared.
    pub(super) fn publish(&self, event: impl FnOnce() -> PeerEvent) {
        if let Some(link) = &self.peers {
            link.peers.publish(&link.room_id, event());
        }
    }

    /// Tells the other nodes that `user` is here (joined, or changed).
    pub(super) fn publish_present(&self, user_id: &str, json: Option<&ServerMessage>) {
        if self.peers.is_none() {
            return;
        }
        let Some(presence) = self.presence.get(user_id) else {
            return;
        };
        let user = presence.user.clone();
        self.publish(|| PeerEvent {
            from: user_id.to_owned(),
            json: json.map(ServerMessage::to_json),
            awareness: None,
            presence: Some(PresenceChange::Present { user }),
        });
    }

    /// Tells the other nodes `user_id` left.
    pub(super) fn publish_gone(&self, user_id: &str, json: &ServerMessage) {
        self.publish(|| PeerEvent {
            from: user_id.to_owned(),
            json: Some(json.to_json()),
            awareness: None,
            presence: Some(PresenceChange::Gone {
                id: user_id.to_owned(),
            }),
        });
    }

    /// Users on other nodes, in the order they were first seen here.
    pub(super) fn remote_listed(&self, except: Option<&str>) -> Vec<RoomUser> {
        let mut remote: Vec<&RemoteUser> = self
            .remote_users
            .values()
            .filter(|remote| Some(remote.user.id.as_str()) != except)
            .filter(|remote| !self.presence.contains_key(&remote.user.id))
            .collect();
        remote.sort_by_key(|remote| remote.order);
        remote
            .into_iter()
            .map(|remote| remote.user.clone())
            .collect()
    }
}

impl Room {
    /// Links the room to its peers: what it does from now on is published.
    pub(crate) fn link_peers(&self, peers: Arc<dyn Peers>) {
        self.lock().peers = Some(PeerLink {
            peers,
            room_id: Arc::from(self.id()),
        });
    }

    /// Merges an update another node wrote to the shared log and relays what is new
    /// to this node's members. It is durable already, so nothing is written and
    /// nothing waits for the store; it still queues behind messages this room holds,
    /// so every client sees changes in order. False when the room is closed (it
    /// left this node's memory meanwhile): nothing was merged.
    pub fn apply_remote(&self, update: &[u8], from: &str) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        // Every node checked the update against the same limit; a node whose limit
        // is lower must still converge with the others.
        state.document.set_size_limit(usize::MAX);
        let applied = state.document.apply_update(update);
        state
            .document
            .set_size_limit(self.inner.settings.max_document_bytes);
        let delta = match applied {
            Ok(Applied::Delta(delta)) => delta,
            Ok(Applied::Nothing) => return true,
            Err(error) => {
                // Not in this document, so no snapshot from it may claim it.
                tracing::error!(room = %self.inner.id, %error, "skipping an unreadable update from the shared log; the room's log is kept uncompacted");
                state.durability.keep_log();
                return true;
            }
        };
        state.sync_message = None;
        state.durability.remote_change();
        let json = || {
            Some(Outbound::json(&ServerMessage::Update {
                data: faster_hex::hex_string(&delta),
                from: from.to_owned(),
            }))
        };
        let binary = || Some(super::yjs::update_message(&delta));
        state.broadcast(self.metrics(), Some(from), PerProtocol::new(json, binary));
        true
    }

    /// Applies what another node's room told its peers.
    pub fn peer_event(&self, node: &str, event: PeerEvent) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        // A client that left another node but is connected here (it reconnected
        // to this node, or has a second tab here) has not left the room.
        let left_but_here = matches!(
            &event.presence,
            Some(PresenceChange::Gone { id }) if state.presence.contains_key(id)
        );
        match event.presence {
            Some(PresenceChange::Present { user }) => {
                let order = state.next_order;
                state.next_order += 1;
                let order = state
                    .remote_users
                    .get(&user.id)
                    .map_or(order, |known| known.order);
                state.remote_users.insert(
                    user.id.clone(),
                    RemoteUser {
                        node: node.to_owned(),
                        user,
                        order,
                    },
                );
            }
            Some(PresenceChange::Gone { id })
                if state
                    .remote_users
                    .get(&id)
                    .is_some_and(|known| known.node == node) =>
            {
                state.remote_users.remove(&id);
            }
            Some(PresenceChange::Gone { .. }) => {}
            None => {}
        }
        if let Some(json) = event.json.filter(|_| !left_but_here) {
            let message = Outbound::Text(Utf8Bytes::from(json));
            state.broadcast(
                self.metrics(),
                Some(&event.from),
                PerProtocol::new(move || Some(message.clone()), || None),
            );
        }
        if let Some(frame) = event.awareness.and_then(|hex| hex::decode(hex).ok()) {
            super::yjs::apply_remote_awareness(
                &mut state,
                self.metrics(),
                remote_connection(node),
                &event.from,
                &frame,
            );
        }
    }

    /// Sets the users on other nodes, as the cluster lists them (when the room opens,
    /// or after the node lost touch with its peers); members hear who came and went.
    pub fn set_remote_users(&self, users: Vec<(String, RoomUser)>) {
        let mut state = self.lock();
        let mut known: HashMap<String, RemoteUser> = std::mem::take(&mut state.remote_users);
        for (node, user) in users {
            if state.presence.contains_key(&user.id) {
                continue;
            }
            let order = match known.remove(&user.id) {
                Some(previous) => previous.order,
                None => {
                    let joined = ServerMessage::UserJoined {
                        user_id: user.id.clone(),
                        name: user.name.clone(),
                        color: user.color.clone(),
                        simulated: user.simulated,
                    };
                    state.broadcast(
                        self.metrics(),
                        Some(&user.id),
                        super::fanout::json_only(&joined),
                    );
                    let order = state.next_order;
                    state.next_order += 1;
                    order
                }
            };
            state
                .remote_users
                .insert(user.id.clone(), RemoteUser { node, user, order });
        }
        for gone in known.into_keys() {
            if state.presence.contains_key(&gone) {
                continue;
            }
            let left = ServerMessage::UserLeft { user_id: gone };
            state.broadcast(self.metrics(), None, super::fanout::json_only(&left));
        }
    }

    /// A node died: its users leave (members get `user_left`) and its clients'
    /// awareness states are removed.
    pub fn forget_node(&self, node: &str) {
        let mut state = self.lock();
        let gone: Vec<String> = state
            .remote_users
            .iter()
            .filter(|(_, remote)| remote.node == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            state.remote_users.remove(&id);
            // Reconnected here before its old node was taken for dead.
            if state.presence.contains_key(&id) {
                continue;
            }
            let left = ServerMessage::UserLeft {
                user_id: id.clone(),
            };
            state.broadcast(self.metrics(), Some(&id), super::fanout::json_only(&left));
        }
        super::yjs::forget_connection(&mut state, self.metrics(), remote_connection(node), "");
    }

    /// The users connected to this node (joined ones, simulated included).
    pub fn local_users(&self) -> Vec<RoomUser> {
        let state = self.lock();
        let mut users: Vec<&super::presence::Presence> = state
            .presence
            .values()
            .filter(|presence| presence.joined)
            .collect();
        users.sort_by_key(|presence| presence.order);
        users
            .into_iter()
            .map(|presence| presence.user.clone())
            .collect()
    }

    /// The nodes this room's remote users are on.
    pub fn remote_nodes(&self) -> Vec<String> {
        let state = self.lock();
        let mut nodes: Vec<String> = state
            .remote_users
            .values()
            .map(|remote| remote.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

/// The awareness update inside a y-protocol awareness frame, decoded without limits
/// (the node it came from applied them).
pub(super) fn awareness_of(frame: &[u8]) -> Option<yrs::sync::AwarenessUpdate> {
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    let mut reader = MessageReader::new(&mut decoder);
    match reader.next()? {
        Ok(Message::Awareness(update)) => Some(update),
        _ => None,
    }
}
