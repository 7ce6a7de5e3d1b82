//! A room's durable state, owned in one place: what the store held when the room
//! opened, the sequence numbers of its writes, how far the store has acknowledged
//! them, when the log is compacted, and what the room holds back from its clients
//! until the store has what they would see (write-ahead relay).
//!
//! The rules, each kept here and nowhere else:
//! - Every write a room makes is numbered; the store applies them in order.
//! - A log entry is never written without its base: a room opened from an
//!   original-backend checkpoint (or restored from one) writes a snapshot first.
//! - With write-ahead relay, a message that could show a client anything not yet in
//!   the store waits in the room's hold queue, in the order it was sent, until the
//!   journal reports the write it depends on; then it goes out.
//! - A room is let go only once everything it made is written and nothing is held.
//! - A room the store refuses for good stays in memory, read-only, and says so.
//! - A hold queue that outgrows `HELD_LIMIT` (a long store stall) drops its
//!   broadcasts; once the store has caught up, every client is sent the room afresh
//!   (the full state and who is here) instead of a replay that would overflow its
//!   outbound queue. Messages for one client (a pong, an error) are kept: the
//!   resend does not replace them.
//! - Every log entry carries its time and author, and every compaction says from
//!   when the store keeps history (`--history-retention`), so the store alone
//!   decides what of the log to keep; a deleted room writes nothing after its delete.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fanout::{
    broadcast, push, push_all, CloseReason, ConnectionId, Member, Outbound, PerProtocol, Protocol,
};
use super::queue::Weigh;
use super::{
    lock_state, Origin, Room, RoomInner, RoomState, UpdateBytes, UpdateFormat, UpdateOutcome,
};
use crate::api::ServerMessage;
use crate::server::content::{restore_update, Restoration};
use crate::server::document::DocumentError;
use crate::server::journal::WriteWatcher;
use crate::server::metrics::Metrics;
use crate::server::store::{
    DurableState, LoggedUpdate, RoomDeletion, Snapshot, Store, StoreError, WriteOp,
};

/// The sender named in the `update` JSON clients get for a change the server made
/// itself (a restore, an import over REST).
pub const SERVER_ORIGIN: &str = "server";

/// How the connections of a deleted room are closed. An application-defined code
/// (4000–4999), so a client can tell "this room is gone" from a server restart and
/// stop reconnecting (or start afresh) instead of writing its copy back.
pub const ROOM_DELETED: CloseReason = CloseReason {
    code: 4404,
    reason: "room deleted",
};

/// What the store holds for a room, read when the room opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// coedit's own snapshot and log.
    Durable(DurableState),
    /// Only a checkpoint (`room_documents`), as the original backend leaves a room.
    Checkpoint(Bytes),
    /// Nothing: a new room.
    Nothing,
    /// Nothing but a deleted room's fence (`Store::delete_room_fenced`): a new room
    /// whose numbers continue after it, so they are read.
    Fenced(u64),
}

impl Stored {
    pub fn is_nothing(&self) -> bool {
        matches!(self, Stored::Nothing | Stored::Fenced(_))
    }
}

/// Reads what the store holds for `room_id`: the durable state, or, for a room only
/// a checkpoint knows, that checkpoint; for a deleted room, its fence.
pub async fn read_stored(store: &dyn Store, room_id: &str) -> Result<Stored, StoreError> {
    if let Some(durable) = store.load_durable(room_id).await? {
        return Ok(Stored::Durable(durable));
    }
    // A checkpoint does not outlive a deletion's fence: one saved after it came
    // from a node that had not heard of the deletion yet.
    let fence = store.fenced_through(room_id).await?;
    if fence > 0 {
        return Ok(Stored::Fenced(fence));
    }
    Ok(match store.load_checkpoint(room_id).await? {
        Some(checkpoint) => Stored::Checkpoint(checkpoint),
        None => Stored::Nothing,
    })
}

/// Messages a room holds for the store before it stops holding broadcasts one by
/// one and resends itself whole once the store catches up: far below a
/// connection's outbound queue, so a release never closes anyone as a slow consumer.
const HELD_LIMIT: usize = 256;
/// Messages for one connection (pongs, errors, greetings) a room holds at most. A
/// resend of the room does not replace them, so they are kept past `HELD_LIMIT`; a
/// connection whose next one finds this many waiting (it asks faster than the store
/// writes) is closed, and what was held for it let go.
const HELD_PER_CONNECTION: usize = HELD_LIMIT;

/// A message waiting for the store.
enum Held {
    To {
        connection: ConnectionId,
        message: Outbound,
    },
    /// For the members present when it was sent: one who joined meanwhile is
    /// greeted with the state that already holds it, and must not get it first.
    Broadcast {
        recipients: Vec<ConnectionId>,
        json: Option<Outbound>,
        yjs: Option<Outbound>,
    },
}

/// One room's sequence numbers, acknowledgements and held messages. Lives inside
/// the room's state, under its lock.
pub(super) struct Durability {
    /// Hold messages until the store has what they show (write-ahead relay).
    write_ahead: bool,
    /// Last sequence number handed to the journal.
    last_seq: u64,
    /// Sequence number covered by the last snapshot.
    compacted_seq: u64,
    /// Highest sequence number the store has acknowledged.
    written_seq: u64,
    /// The write the document's current content depends on: messages sent now wait
    /// for it. Compactions do not move it (they add nothing a client could see).
    visible_seq: u64,
    /// The store holds no base for this room yet (it opened from a checkpoint):
    /// its next log entry is the whole document, not the update's delta.
    needs_base: bool,
    held: VecDeque<(u64, Held)>,
    /// How many of `held` are for each connection alone (`Held::To`), and their
    /// bytes.
    held_for: HashMap<ConnectionId, (usize, usize)>,
    /// Bytes held for one connection at most (its outbound budget): a reply can be
    /// a copy of the whole document, so a count alone let one connection that
    /// asked for it a few hundred times hold hundreds of documents.
    held_bytes_per_connection: usize,
    /// The hold queue overflowed and was dropped: once written, every member is
    /// sent the room afresh.
    resync: bool,
    /// Why the store refuses this room, once it has.
    refused: Option<String>,
    /// The room was deleted: it takes no more edits and writes nothing more.
    deleted: bool,
    /// Changes other nodes of a cluster made (already durable in the shared log).
    remote_changes: u64,
    /// A log entry could not be read when the room opened: it is not in the
    /// document, so no snapshot may claim its number (a compaction would delete
    /// the only copy). The log is kept as it is.
    keep_log: bool,
}

/// What the store's progress lets a room send.
enum Released {
    /// These held messages, in order.
    Messages(Vec<Held>),
    /// These messages for single connections, held meanwhile and in order, then
    /// the room afresh to every member (the hold queue had overflowed).
    Resync(Vec<Held>),
}

impl Durability {
    /// Keeps the room's log from being compacted (an entry of it is unreadable).
    pub(super) fn keep_log(&mut self) {
        self.keep_log = true;
    }

    /// The bookkeeping of a room rebuilt from `stored`; the document is the caller's.
    pub(super) fn opened(stored: &Stored, write_ahead: bool) -> Self {
        let (last_seq, log_len, needs_base) = match stored {
            Stored::Durable(durable) => (durable.last_seq, durable.updates.len() as u64, false),
            Stored::Checkpoint(_) => (0, 0, true),
            Stored::Nothing => (0, 0, false),
            Stored::Fenced(fence) => (*fence, 0, false),
        };
        Self {
            write_ahead,
            last_seq,
            compacted_seq: last_seq.saturating_sub(log_len),
            written_seq: last_seq,
            visible_seq: last_seq,
            needs_base,
            held: VecDeque::new(),
            held_for: HashMap::new(),
            held_bytes_per_connection: usize::MAX,
            resync: false,
            keep_log: false,
            refused: None,
            deleted: false,
            remote_changes: 0,
        }
    }

    /// Holds at most `bytes` (and one message past them) for one connection.
    pub(super) fn limit_held_bytes(mut self, bytes: usize) -> Self {
        self.held_bytes_per_connection = bytes;
        self
    }

    /// Another node changed the document (through the shared log).
    pub(super) fn remote_change(&mut self) {
        self.remote_changes += 1;
    }

    /// Log entries since the last snapshot.
    pub(super) fn log_len(&self) -> u64 {
        self.last_seq - self.compacted_seq
    }

    /// True while messages must wait: something a client could see is not written
    /// yet, or earlier messages are still waiting (order is kept).
    fn holding(&self) -> bool {
        self.write_ahead
            && (self.written_seq < self.visible_seq || !self.held.is_empty() || self.resync)
    }

    /// The sequence number of the room's latest edit (compactions aside).
    pub(super) fn latest_seq(&self) -> u64 {
        self.visible_seq
    }

    /// Holds `held` until `visible_seq` is written. A broadcast is dropped when the
    /// room will be resent whole anyway; a message for one connection (a pong, an
    /// error, a greeting) is not part of that resend and waits like any other.
    /// Past `HELD_LIMIT` messages the broadcasts held are dropped and the room will
    /// be resent whole: a replay that long would overflow its clients' queues.
    /// Returns false for a message to a connection that already has
    /// `HELD_PER_CONNECTION` waiting: nothing more is held for it, and it is to be
    /// closed.
    #[must_use]
    fn hold(&mut self, held: Held) -> bool {
        match &held {
            Held::Broadcast { .. } if self.resync => return true,
            Held::Broadcast { .. } => {}
            Held::To {
                connection,
                message,
            } => {
                let connection = *connection;
                let (count, bytes) = self.held_for.entry(connection).or_default();
                if *count >= HELD_PER_CONNECTION || *bytes >= self.held_bytes_per_connection {
                    self.held_for.remove(&connection);
                    self.held.retain(|(_, held)| {
                        !matches!(held, Held::To { connection: to, .. } if *to == connection)
                    });
                    return false;
                }
                *count += 1;
                *bytes += message.weight();
            }
        }
        self.held.push_back((self.visible_seq, held));
        if !self.resync && self.held.len() > HELD_LIMIT {
            self.held
                .retain(|(_, held)| !matches!(held, Held::Broadcast { .. }));
            self.resync = true;
        }
        true
    }

    /// Takes everything held, in order, with the counts that go with it.
    fn take_held(&mut self) -> Vec<Held> {
        self.held_for.clear();
        self.held.drain(..).map(|(_, held)| held).collect()
    }

    /// Everything made is written and nothing waits.
    pub(super) fn settled(&self) -> bool {
        self.written_seq >= self.last_seq && self.held.is_empty()
    }

    pub(super) fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// For watchers of the room (the dashboard): a revision of what clients may
    /// see, moving with every change to it, or `None` while that content still
    /// waits for the store. Watchers follow the write-ahead rule like members do,
    /// so nobody is shown text a crash could take back.
    pub(super) fn watchable_revision(&self) -> Option<u64> {
        let shown =
            !self.write_ahead || self.refused.is_some() || self.written_seq >= self.visible_seq;
        shown.then_some(self.visible_seq + self.remote_changes)
    }

    /// Whether the store holds everything up to `seq`.
    pub(super) fn has_written(&self, seq: u64) -> Result<bool, DocumentError> {
        if self.written_seq >= seq {
            return Ok(true);
        }
        self.check_writable().map(|()| false)
    }

    /// Why the room takes no edits, if it does not.
    pub(super) fn check_writable(&self) -> Result<(), DocumentError> {
        if self.deleted {
            return Err(DocumentError::Unapplicable("the room was deleted".into()));
        }
        match &self.refused {
            Some(reason) => Err(DocumentError::Unstorable(reason.clone())),
            None => Ok(()),
        }
    }

    /// The store has everything up to `seq`: what may go now.
    fn written(&mut self, seq: u64) -> Released {
        self.written_seq = self.written_seq.max(seq);
        if self.resync {
            if self.written_seq < self.visible_seq {
                return Released::Messages(Vec::new());
            }
            self.resync = false;
            // Everything held is now written (`visible_seq` was): none may stay
            // behind to wait for a write that will not come.
            return Released::Resync(self.take_held());
        }
        let mut released = Vec::new();
        while let Some((gate, _)) = self.held.front() {
            if *gate > self.written_seq {
                break;
            }
            if let Some((_, held)) = self.held.pop_front() {
                if let Held::To {
                    connection,
                    message,
                } = &held
                {
                    if let Some((count, bytes)) = self.held_for.get_mut(connection) {
                        *count -= 1;
                        *bytes = bytes.saturating_sub(message.weight());
                        if *count == 0 {
                            self.held_for.remove(connection);
                        }
                    }
                }
                released.push(held);
            }
        }
        Released::Messages(released)
    }

    /// The store refused the room: what it held goes out (the document in memory
    /// is now the only copy, and its clients must keep agreeing with it).
    fn refuse(&mut self, reason: &str) -> Released {
        self.refused = Some(reason.to_owned());
        self.write_ahead = false;
        let held = self.take_held();
        if std::mem::take(&mut self.resync) {
            return Released::Resync(held);
        }
        Released::Messages(held)
    }
}

impl RoomState {
    /// Queues `message` for one connection, or holds it until the store has what
    /// the room has shown so far.
    pub(super) fn send_to(
        &mut self,
        metrics: &Metrics,
        connection: ConnectionId,
        message: Outbound,
    ) {
        if self.durability.holding() {
            let held = self.durability.hold(Held::To {
                connection,
                message,
            });
            if let (false, Some(member)) = (held, self.members.get(&connection)) {
                tracing::warn!(
                    client_id = %member.client_id,
                    "closing a client whose replies wait for the store faster than it writes"
                );
                member.kick.kick(CloseReason::REPLIES_WAITING);
            }
            return;
        }
        if let Some(member) = self.members.get(&connection) {
            push(member, metrics, message);
        }
    }

    /// Queues the right form of `message` for every member not of client id
    /// `except` (or holds it, as `send_to`); returns how many members it is for.
    pub(super) fn broadcast<J, Y>(
        &mut self,
        metrics: &Metrics,
        except: Option<&str>,
        mut message: PerProtocol<J, Y>,
    ) -> usize
    where
        J: FnMut() -> Option<Outbound>,
        Y: FnMut() -> Option<Outbound>,
    {
        if !self.durability.holding() {
            return broadcast(self.members.values(), metrics, except, message);
        }
        let (mut json, mut yjs, mut recipients) = (None, None, Vec::new());
        for (connection, member) in &self.members {
            if Some(member.client_id.as_str()) == except {
                continue;
            }
            recipients.push(*connection);
            match member.protocol {
                Protocol::Json if json.is_none() => json = Some(message.build(Protocol::Json)),
                Protocol::Yjs if yjs.is_none() => yjs = Some(message.build(Protocol::Yjs)),
                _ => {}
            }
        }
        let count = recipients.len();
        if count > 0 {
            let held = self.durability.hold(Held::Broadcast {
                recipients,
                json: json.flatten(),
                yjs: yjs.flatten(),
            });
            debug_assert!(held, "a broadcast is held, or covered by the resend");
        }
        count
    }

    /// Sends what the store's progress released, in order, to whoever is still here.
    fn deliver(&mut self, metrics: &Metrics, released: Released) {
        let (mut released, resync) = match released {
            Released::Messages(released) => (released, false),
            Released::Resync(released) => (released, true),
        };
        if released.len() > 1 {
            self.deliver_together(metrics, released);
        } else if let Some(held) = released.pop() {
            self.deliver_one(metrics, held);
        }
        if resync {
            self.resend_whole(metrics);
        }
    }

    fn deliver_one(&self, metrics: &Metrics, held: Held) {
        match held {
            Held::To {
                connection,
                message,
            } => {
                if let Some(member) = self.members.get(&connection) {
                    push(member, metrics, message);
                }
            }
            Held::Broadcast {
                recipients,
                json,
                yjs,
            } => {
                let present = recipients
                    .iter()
                    .filter_map(|connection| self.members.get(connection));
                broadcast(
                    present,
                    metrics,
                    None,
                    PerProtocol::new(|| json.clone(), || yjs.clone()),
                );
            }
        }
    }

    /// Messages released by one write, gathered per member so that a member's go
    /// out in one write to its socket: a busy room's keystrokes committed together,
    /// or the original page's update and cursor, cost one send per client instead
    /// of one per message (BENCHMARKS.md, "Messages released together").
    fn deliver_together(&self, metrics: &Metrics, released: Vec<Held>) {
        let mut per_member: HashMap<ConnectionId, Vec<Outbound>> = HashMap::new();
        let mut add = |connection: ConnectionId, message: Outbound| {
            per_member.entry(connection).or_default().push(message);
        };
        for held in released {
            match held {
                Held::To {
                    connection,
                    message,
                } => add(connection, message),
                Held::Broadcast {
                    recipients,
                    json,
                    yjs,
                } => {
                    for connection in recipients {
                        let Some(member) = self.members.get(&connection) else {
                            continue;
                        };
                        let message = match member.protocol {
                            Protocol::Json => &json,
                            Protocol::Yjs => &yjs,
                        };
                        if let Some(message) = message {
                            add(connection, message.clone());
                        }
                    }
                }
            }
        }
        for (connection, messages) in per_member {
            if let Some(member) = self.members.get(&connection) {
                push_all(member, metrics, messages);
            }
        }
    }
}

impl RoomState {
    /// Every member is sent the room as a newcomer would be: JSON clients the full
    /// `sync` and the user list, y-protocol clients our sync step 1 (so they send
    /// what we lack), the full state as an update, and the awareness states.
    fn resend_whole(&mut self, metrics: &Metrics) {
        let sync = Outbound::Text(self.sync_message());
        let users = Outbound::json(&ServerMessage::Users {
            users: self.listed_users(None),
        });
        let mut yjs = super::yjs::greeting(self);
        yjs.push(super::yjs::update_message(&self.document.encoded_state()));
        for member in self.members.values() {
            let messages = match member.protocol {
                Protocol::Json => vec![sync.clone(), users.clone()],
                Protocol::Yjs => yjs.clone(),
            };
            for message in messages {
                push(member, metrics, message);
            }
        }
    }
}

impl WriteWatcher for RoomInner {
    fn written(&self, seq: u64) {
        let mut state = lock_state(&self.state);
        let released = state.durability.written(seq);
        state.deliver(&self.metrics, released);
    }

    fn refused(&self, reason: &str) {
        let mut state = lock_state(&self.state);
        let released = state.durability.refuse(reason);
        state.deliver(&self.metrics, released);
        let notice = Outbound::json(&ServerMessage::Error {
            message: unstorable_message(&self.id, reason),
        });
        let members: Vec<&Member> = state
            .members
            .values()
            .filter(|member| member.protocol == Protocol::Json)
            .collect();
        for member in members {
            push(member, &self.metrics, notice.clone());
        }
    }
}

fn unstorable_message(room_id: &str, reason: &str) -> String {
    format!(
        "room {room_id} cannot be saved ({reason}): it is read-only, and edits since its \
         last save live only in the server's memory"
    )
}

impl Room {
    /// The full state to save as a checkpoint, or `None` when the room is empty.
    pub fn checkpoint_state(&self) -> Option<Bytes> {
        let mut state = self.lock();
        (!state.document.is_empty()).then(|| state.document.encoded_state())
    }

    /// The whole document, encoded as one Yjs update (empty document included).
    pub fn state(&self) -> Bytes {
        self.lock().document.encoded_state()
    }

    /// Makes the live document equal to `target` (a checkpoint or an old version)
    /// by applying a new change: every root's current content is deleted and the
    /// target's inserted, and that update goes to every client and into the log
    /// like any edit. Clients show the restored document at once, and nothing they
    /// had merges back (it is deleted, not forgotten). Edits made while the restore
    /// is computed are concurrent with it and kept, as any concurrent edit is.
    pub fn restore(&self, target: &[u8]) -> Result<Restoration, DocumentError> {
        let live = {
            let mut state = self.lock();
            state.durability.check_writable()?;
            state.document.encoded_state()
        };
        let restoration = restore_update(&live, target)
            .map_err(|error| DocumentError::Undecodable(error.to_string()))?;
        self.apply_update(
            Origin {
                client_id: SERVER_ORIGIN,
                format: UpdateFormat::Server,
            },
            UpdateBytes::Raw(&restoration.update),
        )?;
        Ok(restoration)
    }

    /// Merges an update that came over REST (an import), as a client's would be.
    pub fn import(&self, update: &[u8]) -> Result<UpdateOutcome, DocumentError> {
        self.apply_update(
            Origin {
                client_id: SERVER_ORIGIN,
                format: UpdateFormat::Server,
            },
            UpdateBytes::Raw(update),
        )
    }

    /// Deletes the room: it takes no more edits, its connections are closed with
    /// `ROOM_DELETED`, and the journal is handed the delete of everything stored
    /// for it, after every write the room made. The caller takes it out of the
    /// registry. Returns how many connections were closed.
    pub fn delete(&self) -> usize {
        let mut state = self.lock();
        if !Self::shut_for_delete(&mut state) {
            return 0;
        }
        state.durability.last_seq += 1;
        let seq = state.durability.last_seq;
        self.inner.journal.submit(
            WriteOp::Delete(RoomDeletion {
                room_id: self.inner.id.clone(),
                seq,
            }),
            self.watcher(),
        );
        state.members.len()
    }

    /// Whether the room was deleted (here or, in a cluster, on another node).
    pub fn is_deleted(&self) -> bool {
        self.lock().durability.deleted
    }

    /// Closes the room because another node of the cluster deleted it (and the
    /// store with it): its connections are closed as deleted, nothing is written.
    pub fn close_deleted(&self) {
        Self::shut_for_delete(&mut self.lock());
    }

    /// Marks the room deleted and closed and kicks its members; false when it
    /// already was.
    fn shut_for_delete(state: &mut RoomState) -> bool {
        state.closed = true;
        if state.durability.deleted {
            return false;
        }
        state.durability.deleted = true;
        // Nobody is left to receive what was waiting for the store.
        state.durability.take_held();
        for member in state.members.values() {
            member.kick.kick(ROOM_DELETED);
        }
        true
    }

    /// True when the room can leave memory: nobody connected or simulated, empty for
    /// at least `idle`, everything it made written and nothing held, and the store
    /// not refusing it (its memory is then the only copy). On `true` the room is
    /// marked closed, so a connection racing the unload reloads it instead.
    pub fn close_if_idle(&self, idle: Duration) -> bool {
        let mut state = self.lock();
        let idle_long_enough = state
            .empty_since
            .is_some_and(|since| since.elapsed() >= idle);
        let unload = state.members.is_empty()
            && state.pins == 0
            && state.presence.is_empty()
            && idle_long_enough
            && state.durability.settled()
            && state.durability.refused().is_none();
        if unload {
            state.closed = true;
        }
        unload
    }

    /// Keeps the room in memory until the returned handle is dropped; None once
    /// it was unloaded (look it up again).
    pub fn pin(&self) -> Option<super::Pinned> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.pins += 1;
        Some(super::Pinned(self.clone()))
    }

    /// Hands an accepted update to the journal as a log entry; when the store holds
    /// no base for the room yet (it opened from a checkpoint), the entry is the
    /// whole document instead, checkpoint included. Compacts when due.
    ///
    /// The base goes in the log, not as a snapshot: stores may apply a compaction
    /// after its write returned (the log holds everything a compaction covers), and
    /// a crash in between would leave the entries after it without their document.
    pub(super) fn log_update(&self, state: &mut RoomState, delta: Bytes, author: String) {
        let data = if state.durability.needs_base {
            state.durability.needs_base = false;
            state.document.encoded_state()
        } else {
            delta
        };
        state.durability.last_seq += 1;
        let seq = state.durability.last_seq;
        state.durability.visible_seq = seq;
        self.inner.journal.submit(
            WriteOp::Append(LoggedUpdate {
                room_id: self.inner.id.clone(),
                seq,
                data,
                at_ms: now_ms(),
                author: Some(author),
            }),
            self.watcher(),
        );
        let threshold = compaction_threshold(&self.inner.id, self.inner.settings.compact_every);
        if state.durability.log_len() >= threshold {
            self.compact(state);
        }
    }

    /// Whether the room's log is kept uncompacted (an entry of it could not be
    /// read into the document when the room opened).
    pub fn keeps_log(&self) -> bool {
        self.lock().durability.keep_log
    }

    /// Queues a snapshot of the whole document covering every sequence number so far.
    pub(super) fn compact(&self, state: &mut RoomState) {
        if state.durability.keep_log {
            return;
        }
        let now = now_ms();
        let retention = self.inner.settings.history_retention;
        let keep_since = (!retention.is_zero())
            .then(|| now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)));
        state.durability.last_seq += 1;
        state.durability.compacted_seq = state.durability.last_seq;
        self.inner.journal.submit(
            WriteOp::Compact(Snapshot {
                room_id: self.inner.id.clone(),
                through_seq: state.durability.last_seq,
                data: state.document.encoded_state(),
                at_ms: now,
                keep_history_since_ms: keep_since,
                deletions: None,
            }),
            self.watcher(),
        );
    }

    fn watcher(&self) -> Arc<dyn WriteWatcher> {
        self.inner.clone()
    }
}

/// Milliseconds since the Unix epoch: the time history entries are stamped with.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Log entries after which `room_id` is compacted: `every` plus up to half of it
/// again, fixed per room. Rooms that are edited at the same pace (a class typing
/// together, a load test) would otherwise all write their snapshots in the same
/// group commit, and that one slow write would delay everyone's durability.
fn compaction_threshold(room_id: &str, every: u64) -> u64 {
    every + room_hash(room_id) % (every / 2 + 1)
}

/// A room's name hashed, to spread rooms' periodic work: FNV-1a, stable across
/// runs and platforms, which `DefaultHasher` does not promise.
pub fn room_hash(room_id: &str) -> u64 {
    room_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn message(text: &str) -> Held {
        message_to(1, text)
    }

    fn message_to(connection: ConnectionId, text: &str) -> Held {
        Held::To {
            connection,
            message: Outbound::Text(text.into()),
        }
    }

    fn texts(released: Released) -> Vec<String> {
        let Released::Messages(released) = released else {
            panic!("expected messages, not a resync");
        };
        released
            .into_iter()
            .map(|held| match held {
                Held::To {
                    message: Outbound::Text(text),
                    ..
                } => text.to_string(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn held_messages_go_out_in_order_once_their_write_is_acknowledged() {
        let mut durability = Durability::opened(&Stored::Nothing, true);
        assert!(!durability.holding());
        durability.last_seq = 1;
        durability.visible_seq = 1;
        assert!(durability.holding());
        durability.held.push_back((1, message("a")));
        durability.last_seq = 2;
        durability.visible_seq = 2;
        durability.held.push_back((2, message("b")));
        durability.held.push_back((2, message("c")));
        assert!(texts(durability.written(0)).is_empty());
        assert_eq!(texts(durability.written(1)), ["a"]);
        assert!(durability.holding());
        assert_eq!(texts(durability.written(2)), ["b", "c"]);
        assert!(!durability.holding());
        assert!(durability.settled());
    }

    /// A room whose write 1 is pending.
    fn waiting_for_write_1() -> Durability {
        let mut durability = Durability::opened(&Stored::Nothing, true);
        durability.last_seq = 1;
        durability.visible_seq = 1;
        durability
    }

    /// A room whose write 1 is pending and whose hold queue overflowed with `held`.
    fn overflowed(held: impl Fn() -> Held) -> Durability {
        let mut durability = waiting_for_write_1();
        for _ in 0..=HELD_LIMIT {
            assert!(durability.hold(held()));
        }
        durability
    }

    /// The texts of a resync's messages for single connections.
    fn resync_texts(released: Released) -> Vec<String> {
        let Released::Resync(held) = released else {
            panic!("expected the resync");
        };
        held.into_iter()
            .map(|held| match held {
                Held::To {
                    message: Outbound::Text(text),
                    ..
                } => text.to_string(),
                _ => panic!("a broadcast was held through the resync"),
            })
            .collect()
    }

    #[test]
    fn a_hold_queue_that_overflows_turns_into_one_resync_once_written() {
        let mut durability = overflowed(|| broadcast("update"));
        assert!(durability.held.is_empty());
        assert!(durability.resync && durability.holding());
        assert!(durability.hold(broadcast("dropped")));
        assert!(durability.held.is_empty());
        durability.last_seq = 2;
        durability.visible_seq = 2;
        assert!(texts(durability.written(1)).is_empty());
        assert!(resync_texts(durability.written(2)).is_empty());
        assert!(!durability.holding());
    }

    /// The pong a client waits for is not part of the room resent whole: an
    /// overflow drops the broadcasts held around it and keeps it.
    #[test]
    fn an_overflow_keeps_the_messages_for_single_connections() {
        let mut durability = waiting_for_write_1();
        assert!(durability.hold(broadcast("before")));
        assert!(durability.hold(message("pong")));
        for _ in 0..HELD_LIMIT {
            assert!(durability.hold(broadcast("update")));
        }
        assert!(durability.resync);
        assert_eq!(durability.held.len(), 1);
        assert_eq!(resync_texts(durability.written(1)), ["pong"]);
        assert!(durability.settled());
    }

    /// Replies held for one connection are bounded in bytes too (one may be the
    /// whole document): past its budget, plus the one message that crossed it,
    /// the next is refused; released ones free their bytes.
    #[test]
    fn a_connection_past_its_held_bytes_is_refused() {
        let mut durability = waiting_for_write_1().limit_held_bytes(1000);
        let large = |connection| Held::To {
            connection,
            message: Outbound::Text("x".repeat(400).into()),
        };
        for _ in 0..3 {
            assert!(durability.hold(large(1)));
        }
        assert!(!durability.hold(large(1)), "held past its bytes");
        assert!(durability.hold(large(2)), "another connection has its own");
        assert_eq!(texts(durability.written(1)).len(), 1);
        assert!(durability.held_for.is_empty());
    }

    /// Replies alone are not dropped either. A connection with    /// Replies alone are not dropped either. A connection with
    /// `HELD_PER_CONNECTION` waiting is refused its next one (the caller closes it)
    /// and what was held for it is let go; the others' replies stay.
    #[test]
    fn a_connection_past_its_held_replies_is_refused_alone() {
        let mut durability = waiting_for_write_1();
        assert!(durability.hold(message_to(2, "other")));
        for _ in 0..HELD_PER_CONNECTION {
            assert!(durability.hold(message_to(1, "pong")));
        }
        assert!(
            durability.resync,
            "past HELD_LIMIT the room is to be resent"
        );
        assert!(!durability.hold(message_to(1, "one too many")));
        assert!(durability.hold(broadcast("covered by the resync")));
        assert!(durability.hold(message_to(3, "greeting")));
        assert_eq!(resync_texts(durability.written(1)), ["other", "greeting"]);
        assert!(durability.settled() && durability.held_for.is_empty());
    }

    #[test]
    fn released_replies_no_longer_count_against_their_connection() {
        let mut durability = Durability::opened(&Stored::Nothing, true);
        for seq in 1..=3 * HELD_PER_CONNECTION as u64 {
            durability.last_seq = seq;
            durability.visible_seq = seq;
            assert!(durability.hold(message("pong")));
            assert_eq!(texts(durability.written(seq)), ["pong"]);
        }
        assert!(durability.held_for.is_empty());
    }

    fn broadcast(text: &str) -> Held {
        Held::Broadcast {
            recipients: vec![1],
            json: Some(Outbound::Text(text.into())),
            yjs: None,
        }
    }

    /// A greeting or a pong held while a resync is due goes out with it: left in
    /// the queue, it would wait for a write that a quiet room never makes, and the
    /// room would hold everything after it too.
    #[test]
    fn messages_for_one_connection_held_during_a_resync_go_out_with_it() {
        let mut durability = overflowed(|| broadcast("update"));
        assert!(durability.resync);
        assert!(durability.hold(broadcast("covered by the resync")));
        assert!(durability.hold(message("greeting")));
        assert!(durability.hold(message("pong")));
        assert_eq!(resync_texts(durability.written(1)), ["greeting", "pong"]);
        assert!(!durability.holding());
        assert!(durability.settled());
    }

    #[test]
    fn relaxed_durability_never_holds() {
        let mut durability = Durability::opened(&Stored::Nothing, false);
        durability.last_seq = 5;
        durability.visible_seq = 5;
        assert!(!durability.holding());
        assert!(!durability.settled());
    }

    #[test]
    fn a_room_opened_from_a_checkpoint_owes_the_store_its_base() {
        let opened = Durability::opened(&Stored::Checkpoint(Bytes::from_static(b"x")), true);
        assert!(opened.needs_base);
        let durable = Stored::Durable(DurableState {
            snapshot: None,
            updates: vec![Bytes::new(); 3],
            last_seq: 10,
        });
        let opened = Durability::opened(&durable, true);
        assert!(!opened.needs_base);
        assert_eq!((opened.last_seq, opened.log_len()), (10, 3));
        assert!(opened.settled());
    }
}
