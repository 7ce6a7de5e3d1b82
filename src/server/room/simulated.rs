//! Simulated users (`POST`/`DELETE /api/simulate/users/{room}`): present in the room
//! for load testing, announced like real users plus `simulated: true`.

use std::time::Instant;

use super::fanout::json_only;
use super::{Room, PALETTE};
use crate::api::ServerMessage;

const NAMES: [&str; 12] = [
    "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan", "Radia",
    "Edsger", "Hedy",
];

impl Room {
    /// Adds `count` simulated users. Returns (added, total users in the room), or
    /// how many more users the room may take when `count` is more than that.
    pub fn add_simulated(&self, count: u32) -> Result<(u64, u64), usize> {
        let mut state = self.lock();
        let room_for = self
            .inner
            .settings
            .presence
            .room_users
            .saturating_sub(state.presence.len());
        if count as usize > room_for {
            return Err(room_for);
        }
        for _ in 0..count {
            let id = format!("sim-{}", uuid::Uuid::new_v4());
            let mut presence = state.new_presence(&id, true);
            let order = presence.order as usize;
            presence.user.name = format!("{} (sim {order})", NAMES[order % NAMES.len()]);
            presence.user.color = PALETTE[order % PALETTE.len()].to_owned();
            presence.joined = true;
            let joined = ServerMessage::UserJoined {
                user_id: id.clone(),
                name: presence.user.name.clone(),
                color: presence.user.color.clone(),
                simulated: true,
            };
            state.presence.insert(id, presence);
            state.broadcast(self.metrics(), None, json_only(&joined));
        }
        let total = state.joined_count();
        drop(state);
        self.metrics().add_event(
            "simulate",
            self.id(),
            "",
            format!("Added {count} simulated users"),
        );
        Ok((u64::from(count), total))
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
            let left = ServerMessage::UserLeft {
                user_id: id.clone(),
            };
            state.broadcast(self.metrics(), None, json_only(&left));
        }
        if state.members.is_empty() {
            state.empty_since = Some(Instant::now());
        }
        drop(state);
        self.metrics().add_event(
            "simulate",
            self.id(),
            "",
            format!("Removed {} simulated users", ids.len()),
        );
        ids.len() as u64
    }
}
