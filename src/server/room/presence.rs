//! Who is in a room: one presence per client id (however many connections it has),
//! introduced by `join` or a y-protocol awareness state, listed in join order and
//! announced to the others.

use super::fanout::json_only;
use super::RoomState;
use crate::api::{RoomUser, ServerMessage};
use crate::server::metrics::Metrics;

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
        self.presence
            .values()
            .filter(|presence| presence.joined)
            .count() as u64
    }

    /// Joined users in join order, optionally without one client id.
    pub(super) fn listed_users(&self, except: Option<&str>) -> Vec<RoomUser> {
        let mut present: Vec<&Presence> = self
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
    /// it is new or changed. Returns false if the client id is not present.
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
        let changed =
            !presence.joined || presence.user.name != name || presence.user.color != color;
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
        }
        true
    }
}
