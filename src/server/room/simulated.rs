//! Simulated users (`POST`/`DELETE /api/simulate/users/{room}`): present in the room
//! for load testing, announced like real users plus `simulated: true`.

use std::time::Instant;

use super::fanout::json_only;
use super::Room;
use crate::api::{CursorPosition, ServerMessage};

/// The original backend's colours for simulated users, in its order.
const COLORS: [&str; 6] = [
    "#F43F5E", "#10B981", "#3B82F6", "#F59E0B", "#8B5CF6", "#EC4899",
];

/// The n-th (from 0) user of one simulate request, as the original made it: named
/// `SimUser-{n+1}` (numbering starts again at 1 with each request, so names repeat
/// across requests while ids do not), coloured in turn, with a cursor at line
/// `n % 20`, column `5n % 80`.
fn simulated_look(n: u32) -> (String, String, CursorPosition) {
    (
        format!("SimUser-{}", n + 1),
        COLORS[n as usize % COLORS.len()].to_owned(),
        CursorPosition::LineColumn {
            line: n % 20,
            column: n.wrapping_mul(5) % 80,
        },
    )
}

/// `sim-` and 8 hex digits, as the original's ids.
fn simulated_id() -> String {
    format!("sim-{:08x}", fastrand::u32(..))
}

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
        for n in 0..count {
            // 32 random bits can repeat in a room of thousands; an id must not.
            let id = loop {
                let id = simulated_id();
                if !state.presence.contains_key(&id) {
                    break id;
                }
            };
            let (name, color, cursor) = simulated_look(n);
            let mut presence = state.new_presence(&id, true);
            presence.user.name = name;
            presence.user.color = color;
            presence.user.cursor_position = Some(cursor);
            presence.joined = true;
            let joined = ServerMessage::UserJoined {
                user_id: id.clone(),
                name: presence.user.name.clone(),
                color: presence.user.color.clone(),
                simulated: true,
            };
            state.presence.insert(id.clone(), presence);
            state.broadcast(self.metrics(), None, json_only(&joined));
            state.publish_present(&id, Some(&joined));
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
            state.publish_gone(id, &left);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_users_look_like_the_originals() {
        let (name, color, cursor) = simulated_look(0);
        assert_eq!((name.as_str(), color.as_str()), ("SimUser-1", "#F43F5E"));
        assert_eq!(cursor, CursorPosition::LineColumn { line: 0, column: 0 });
        let (name, color, cursor) = simulated_look(20);
        assert_eq!((name.as_str(), color.as_str()), ("SimUser-21", "#3B82F6"));
        assert_eq!(
            cursor,
            CursorPosition::LineColumn {
                line: 0,
                column: 20
            }
        );
        let id = simulated_id();
        assert_eq!(id.len(), "sim-".len() + 8, "{id}");
        assert!(id[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
