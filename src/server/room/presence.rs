//! Who is in a room: one presence per client id (however many connections it has),
//! introduced by `join` or a y-protocol awareness state, listed in join order and
//! announced to the others; and the bounds on presence that keep a room's memory
//! proportional to its flags.

use super::fanout::json_only;
use super::{Room, RoomState};
use crate::api::{RoomUser, ServerMessage};
use crate::server::config::Config;
use crate::server::metrics::Metrics;

/// Bounds on what presence may hold in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Yjs client ids one y-protocol connection may hold awareness states for.
    pub ids_per_connection: usize,
    /// Largest awareness state, in bytes of its JSON.
    pub state_bytes: usize,
    /// Users (client ids, simulated ones included) in the room, and awareness
    /// states in the room.
    pub room_users: usize,
}

impl PresenceLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            ids_per_connection: config.max_awareness_ids.max(1),
            state_bytes: config.max_awareness_bytes,
            room_users: config.max_room_users.max(1),
        }
    }
}

impl Default for PresenceLimits {
    fn default() -> Self {
        Self {
            ids_per_connection: Config::DEFAULT_MAX_AWARENESS_IDS,
            state_bytes: Config::DEFAULT_MAX_AWARENESS_BYTES,
            room_users: Config::DEFAULT_MAX_ROOM_USERS,
        }
    }
}

impl Room {
    /// Users present (connected client ids and simulated users).
    pub fn user_count(&self) -> usize {
        self.lock().presence.len()
    }

    /// How many more users the room may take (client ids on their way in count).
    pub fn room_for_users(&self) -> usize {
        let state = self.lock();
        self.inner
            .settings
            .presence
            .room_users
            .saturating_sub(state.presence.len() + state.arriving.len())
    }

    /// Holds a place for `client_id` between its accepted upgrade and its joining,
    /// so a burst of new client ids cannot all pass the user limit before any of
    /// them is counted. `Ok(None)`: the client id is here already (or on its way).
    pub fn reserve_user(&self, client_id: &str) -> Result<Option<UserPlace>, RoomFull> {
        let mut state = self.lock();
        if state.presence.contains_key(client_id) || state.arriving.contains(client_id) {
            return Ok(None);
        }
        if state.presence.len() + state.arriving.len() >= self.inner.settings.presence.room_users {
            return Err(RoomFull);
        }
        state.arriving.insert(client_id.to_owned());
        Ok(Some(UserPlace {
            room: self.clone(),
            client_id: client_id.to_owned(),
        }))
    }

    /// Panics while holding the room's lock, for tests of what a panic leaves.
    #[cfg(test)]
    pub(crate) fn panic_while_locked(&self) {
        let _state = self.lock();
        panic!("panic injected by a test while holding the room lock");
    }
}

/// The room has as many users as it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFull;

/// A place held for a client id on its way into the room; given back when dropped
/// (it has joined, or its upgrade failed).
pub struct UserPlace {
    room: Room,
    client_id: String,
}

impl UserPlace {
    /// Whether the place was taken in `room` (and not in an earlier copy of it,
    /// unloaded or deleted since).
    pub fn is_in(&self, room: &Room) -> bool {
        self.room.same(room)
    }
}

impl Drop for UserPlace {
    fn drop(&mut self) {
        self.room.lock().arriving.remove(&self.client_id);
    }
}

/// A user's presence, per client id.
#[derive(Debug, Clone)]
pub(super) struct Presence {
    pub(super) user: RoomUser,
    /// Open connections of this client id; presence ends when the last one closes.
    pub(super) connections: usize,
    /// Whether the user has introduced itself (`join`, or a y-protocol awareness
    /// state with a name); only those are listed.
    pub(super) joined: bool,
    pub(super) order: u64,
}

impl RoomState {
    pub(super) fn joined_count(&self) -> u64 {
        let local = self
            .presence
            .values()
            .filter(|presence| presence.joined)
            .count();
        (local + self.remote_listed(None).len()) as u64
    }

    /// Joined users in join order, optionally without one client id.
    pub(super) fn listed_users(&self, except: Option<&str>) -> Vec<RoomUser> {
        let mut present: Vec<&Presence> = self
            .presence
            .values()
            .filter(|presence| presence.joined && Some(presence.user.id.as_str()) != except)
            .collect();
        present.sort_by_key(|presence| presence.order);
        let mut users: Vec<RoomUser> = present
            .into_iter()
            .map(|presence| presence.user.clone())
            .collect();
        users.extend(self.remote_listed(except));
        users
    }

    pub(super) fn new_presence(&mut self, id: &str, simulated: bool) -> Presence {
        let order = self.next_order;
        self.next_order += 1;
        Presence {
            user: RoomUser {
                id: id.to_owned(),
                name: String::new(),
                color: String::new(),
                avatar_url: None,
                cursor_position: None,
                selection: None,
                simulated,
            },
            connections: 0,
            joined: false,
            order,
        }
    }

    /// Records a name and colour for `client_id` and announces it to the others when
    /// it is new or changed. Returns true when the user introduced itself for the
    /// first time (false for a renaming, or a client id not present).
    pub(super) fn introduce(
        &mut self,
        metrics: &Metrics,
        client_id: &str,
        name: String,
        color: String,
    ) -> bool {
        let Some(presence) = self.presence.get_mut(client_id) else {
            return false;
        };
        let first = !presence.joined;
        let changed = first || presence.user.name != name || presence.user.color != color;
        presence.joined = true;
        presence.user.name = name.clone();
        presence.user.color = color.clone();
        if changed {
            let joined = ServerMessage::UserJoined {
                user_id: client_id.to_owned(),
                name,
                color,
                simulated: presence.user.simulated,
            };
            self.broadcast(metrics, Some(client_id), json_only(&joined));
            self.publish_present(client_id, Some(&joined));
        }
        first
    }
}
