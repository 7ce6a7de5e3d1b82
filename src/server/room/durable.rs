//! A room's side of durability: every accepted update goes to the journal with a
//! sequence number, the log is compacted into a snapshot now and then, checkpoints
//! are taken and restored, and an idle room is let go only once all of it is written.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{Room, RoomState};
use crate::server::document::DocumentError;
use crate::server::store::{LoggedUpdate, Snapshot, WriteOp};

impl Room {
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

    pub(super) fn log_update(&self, state: &mut RoomState, delta: Bytes) {
        state.last_seq += 1;
        self.inner.journal.submit(
            WriteOp::Append(LoggedUpdate {
                room_id: self.inner.id.clone(),
                seq: state.last_seq,
                data: delta,
            }),
            self.inner.written_seq.clone(),
        );
        let threshold = compaction_threshold(&self.inner.id, self.inner.settings.compact_every);
        if state.last_seq - state.compacted_seq >= threshold {
            self.compact(state);
        }
    }

    /// Queues a snapshot of the whole document covering every sequence number so far.
    pub(super) fn compact(&self, state: &mut RoomState) {
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

/// Log entries after which `room_id` is compacted: `every` plus up to half of it
/// again, fixed per room. Rooms that are edited at the same pace (a class typing
/// together, a load test) would otherwise all write their snapshots in the same
/// group commit, and that one slow write would delay everyone's durability.
fn compaction_threshold(room_id: &str, every: u64) -> u64 {
    // FNV-1a: stable across runs and platforms, which `DefaultHasher` does not promise.
    let hash = room_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    every + hash % (every / 2 + 1)
}

#[cfg(test)]
mod tests {
    use super::compaction_threshold;

    #[test]
    fn rooms_compact_at_different_points_within_half_again() {
        let thresholds: Vec<u64> = (0..50)
            .map(|index| compaction_threshold(&format!("room-{index}"), 500))
            .collect();
        assert!(thresholds
            .iter()
            .all(|threshold| (500..=750).contains(threshold)));
        let mut distinct = thresholds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 40, "{thresholds:?}");
        assert_eq!(
            compaction_threshold("room-1", 1),
            compaction_threshold("room-1", 1)
        );
        assert!((1..=1).contains(&compaction_threshold("x", 1)));
    }
}
