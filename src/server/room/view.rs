//! Read-only looks into a room for people watching it (the dashboard's room page):
//! the document's text and a revision that tells whether it changed. A viewer is
//! never a member: it holds no outbound queue, is not listed and is not announced;
//! like a member, it sees a change only once the store has it.

use super::Room;

/// Where a room's activity stands: equal marks mean nothing happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityMark {
    /// `None` while a change waits for the store, which is activity too.
    pub revision: Option<u64>,
    pub connections: usize,
    pub users: u64,
}

impl Room {
    /// The text and its revision when the revision is not `seen`; `None` when
    /// nothing changed (so a watcher polling an idle room copies nothing) or while
    /// the latest change is not yet in the store (it is shown once it is). The
    /// revision comes from the durability bookkeeping: one short lock, no encoding.
    pub fn text_if_changed(&self, seen: Option<u64>) -> Option<(u64, String)> {
        let state = self.lock();
        let revision = state.durability.watchable_revision()?;
        if seen == Some(revision) {
            return None;
        }
        Some((revision, state.document.text()))
    }

    /// The whole document as clients may see it: `None` while a change to it
    /// still waits for the store (exports follow the write-ahead rule too).
    pub fn written_state(&self) -> Option<bytes::Bytes> {
        let mut state = self.lock();
        state.durability.watchable_revision()?;
        Some(state.document.encoded_state())
    }

    /// The number of the room's latest change, for `has_written`.
    pub fn latest_seq(&self) -> u64 {
        self.lock().durability.latest_seq()
    }

    /// Whether the store holds the room's changes up to `seq`: an error when it
    /// never will (it refuses the room, or the room was deleted).
    pub fn has_written(&self, seq: u64) -> Result<bool, super::DocumentError> {
        self.lock().durability.has_written(seq)
    }

    /// The document revision, connections and listed users, for "last activity".
    pub fn activity_mark(&self) -> ActivityMark {
        let state = self.lock();
        ActivityMark {
            revision: state.durability.watchable_revision(),
            connections: state.members.len(),
            users: state.joined_count(),
        }
    }
}
