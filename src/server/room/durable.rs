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
        if state.last_seq - state.compacted_seq >= self.inner.settings.compact_every {
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
