//! Read-only looks into a room for people watching it (the dashboard's room page):
//! the document's text and a revision that tells whether it changed. A viewer is
//! never a member: it holds no outbound queue, is not listed and is not announced.

use super::Room;

/// Where a room's activity stands: equal marks mean nothing happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityMark {
    pub revision: u64,
    pub connections: usize,
    pub users: u64,
}

impl Room {
    /// Changes whenever the document does. It is the journal's sequence number,
    /// which every merged update and every restore advances, so reading it costs
    /// one short lock and no encoding.
    pub fn revision(&self) -> u64 {
        self.lock().last_seq
    }

    /// The text and its revision when the revision is not `seen`; `None` when
    /// nothing changed, so a watcher polling an idle room copies nothing.
    pub fn text_if_changed(&self, seen: Option<u64>) -> Option<(u64, String)> {
        let state = self.lock();
        if seen == Some(state.last_seq) {
            return None;
        }
        Some((state.last_seq, state.document.text()))
    }

    /// The document revision, connections and listed users, for "last activity".
    pub fn activity_mark(&self) -> ActivityMark {
        let state = self.lock();
        ActivityMark {
            revision: state.last_seq,
            connections: state.members.len(),
            users: state.joined_count(),
        }
    }
}
