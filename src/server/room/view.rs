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
