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
//! - Every log entry carries its time and author, and every compaction says from
//!   when the store keeps history (`--history-retention`), so the store alone
//!   decides what of the log to keep; a deleted room writes nothing after its delete.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fanout::{
    broadcast, push, CloseReason, ConnectionId, Member, Outbound, PerProtocol, Protocol,
};
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
}

impl Stored {
    pub fn is_nothing(&self) -> bool {
        matches!(self, Stored::Nothing)
    }
}

/// Reads what the store holds for `room_id`: the durable state, or, for a room only
/// a checkpoint knows, that checkpoint.
pub async fn read_stored(store: &dyn Store, room_id: &str) -> Result<Stored, StoreError> {
    if let Some(durable) = store.load_durable(room_id).await? {
        return Ok(Stored::Durable(durable));
    }
    Ok(match store.load_checkpoint(room_id).await? {
        Some(checkpoint) => Stored::Checkpoint(checkpoint),
        None => Stored::Nothing,
    })
}

/// A message waiting for the store.
enum Held {
    To {
        connection: ConnectionId,
        message: Outbound,
    },
    Broadcast {
        except: Option<String>,
        json: Option<Outbound>,
        yjs: Option<Outbound>,
        /// `Durability::joins` when it was sent: members who joined later get the
        /// document in their greeting and must not get this too, ahead of it.
        joins: u64,
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
    /// its next write is a snapshot, not a log entry.
    needs_base: bool,
    held: VecDeque<(u64, Held)>,
    /// Why the store refuses this room, once it has.
    refused: Option<String>,
    /// The room was deleted: it takes no more edits and writes nothing more.
    deleted: bool,
    /// Connections that have joined the room so far.
    joins: u64,
    /// Connections that joined while messages were held, with their `joins`
    /// number; emptied whenever nothing is held.
    late_joiners: HashMap<ConnectionId, u64>,
}

impl Durability {
    /// The bookkeeping of a room rebuilt from `stored`; the document is the caller's.
    pub(super) fn opened(stored: &Stored, write_ahead: bool) -> Self {
        let (last_seq, log_len, needs_base) = match stored {
            Stored::Durable(durable) => (durable.last_seq, durable.updates.len() as u64, false),
            Stored::Checkpoint(_) => (0, 0, true),
            Stored::Nothing => (0, 0, false),
        };
        Self {
            write_ahead,
            last_seq,
            compacted_seq: last_seq.saturating_sub(log_len),
            written_seq: last_seq,
            visible_seq: last_seq,
            needs_base,
            held: VecDeque::new(),
            refused: None,
            deleted: false,
            joins: 0,
            late_joiners: HashMap::new(),
        }
    }

    /// Log entries since the last snapshot.
    pub(super) fn log_len(&self) -> u64 {
        self.last_seq - self.compacted_seq
    }

    /// True while messages must wait: something a client could see is not written
    /// yet, or earlier messages are still waiting (order is kept).
    fn holding(&self) -> bool {
        self.write_ahead && (self.written_seq < self.visible_seq || !self.held.is_empty())
    }

    /// Everything made is written and nothing waits.
    pub(super) fn settled(&self) -> bool {
        self.written_seq >= self.last_seq && self.held.is_empty()
    }

    pub(super) fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
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

    /// A connection joined: while messages are held, it must get only those sent
    /// after it joined (its greeting already shows what came before).
    pub(super) fn member_joined(&mut self, connection: ConnectionId) {
        self.joins += 1;
        if self.holding() {
            self.late_joiners.insert(connection, self.joins);
        }
    }

    /// Whether a held broadcast sent at `joins` is for `connection`.
    fn was_member(&self, connection: ConnectionId, joins: u64) -> bool {
        self.late_joiners
            .get(&connection)
            .is_none_or(|joined| *joined <= joins)
    }

    /// The store has everything up to `seq`: the held messages that may go now.
    fn written(&mut self, seq: u64) -> Vec<Held> {
        self.written_seq = self.written_seq.max(seq);
        let mut released = Vec::new();
        while let Some((gate, _)) = self.held.front() {
            if *gate > self.written_seq {
                break;
            }
            if let Some((_, held)) = self.held.pop_front() {
                released.push(held);
            }
        }
        released
    }

    /// The store refused the room: its held messages go out (the document in memory
    /// is now the only copy, and its clients must keep agreeing with it).
    fn refuse(&mut self, reason: &str) -> Vec<Held> {
        self.refused = Some(reason.to_owned());
        self.held.drain(..).map(|(_, held)| held).collect()
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
            let gate = self.durability.visible_seq;
            self.durability.held.push_back((
                gate,
                Held::To {
                    connection,
                    message,
                },
            ));
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
        let (mut json, mut yjs, mut recipients) = (None, None, 0);
        for member in self.members.values() {
            if Some(member.client_id.as_str()) == except {
                continue;
            }
            recipients += 1;
            match member.protocol {
                Protocol::Json if json.is_none() => json = Some(message.build(Protocol::Json)),
                Protocol::Yjs if yjs.is_none() => yjs = Some(message.build(Protocol::Yjs)),
                _ => {}
            }
        }
        if recipients > 0 {
            let gate = self.durability.visible_seq;
            self.durability.held.push_back((
                gate,
                Held::Broadcast {
                    except: except.map(str::to_owned),
                    json: json.flatten(),
                    yjs: yjs.flatten(),
                    joins: self.durability.joins,
                },
            ));
        }
        recipients
    }

    /// Sends what the store's progress released, in order, to whoever is still here
    /// (and was when it was sent).
    fn deliver(&mut self, metrics: &Metrics, released: Vec<Held>) {
        for held in released {
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
                    except,
                    json,
                    yjs,
                    joins,
                } => {
                    broadcast(
                        self.members
                            .iter()
                            .filter(|(connection, _)| {
                                self.durability.was_member(**connection, joins)
                            })
                            .map(|(_, member)| member),
                        metrics,
                        except.as_deref(),
                        PerProtocol::new(|| json.clone(), || yjs.clone()),
                    );
                }
            }
        }
        if self.durability.held.is_empty() {
            self.durability.late_joiners.clear();
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
                format: UpdateFormat::YjsSync,
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
                format: UpdateFormat::YjsSync,
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
        state.closed = true;
        if state.durability.deleted {
            return 0;
        }
        state.durability.deleted = true;
        // Nobody is left to receive what was waiting for the store.
        state.durability.held.clear();
        for member in state.members.values() {
            member.kick.kick(ROOM_DELETED);
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
            && state.presence.is_empty()
            && idle_long_enough
            && state.durability.settled()
            && state.durability.refused().is_none();
        if unload {
            state.closed = true;
        }
        unload
    }

    /// Hands an accepted update to the journal: as a log entry, or as the room's
    /// first snapshot when the store holds no base for it yet. Compacts when due.
    pub(super) fn log_update(&self, state: &mut RoomState, delta: Bytes, author: String) {
        if state.durability.needs_base {
            state.durability.needs_base = false;
            self.compact(state);
            state.durability.visible_seq = state.durability.last_seq;
            return;
        }
        state.durability.last_seq += 1;
        let seq = state.durability.last_seq;
        state.durability.visible_seq = seq;
        self.inner.journal.submit(
            WriteOp::Append(LoggedUpdate {
                room_id: self.inner.id.clone(),
                seq,
                data: delta,
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

    /// Queues a snapshot of the whole document covering every sequence number so far.
    pub(super) fn compact(&self, state: &mut RoomState) {
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
        Held::To {
            connection: 1,
            message: Outbound::Text(text.into()),
        }
    }

    fn texts(released: Vec<Held>) -> Vec<String> {
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
        assert!(durability.written(0).is_empty());
        assert_eq!(texts(durability.written(1)), ["a"]);
        assert!(durability.holding());
        assert_eq!(texts(durability.written(2)), ["b", "c"]);
        assert!(!durability.holding());
        assert!(durability.settled());
    }

    #[test]
    fn a_member_who_joins_while_messages_are_held_gets_only_later_broadcasts() {
        let mut durability = Durability::opened(&Stored::Nothing, true);
        durability.member_joined(1);
        durability.last_seq = 1;
        durability.visible_seq = 1;
        let sent_before = durability.joins;
        durability.member_joined(2);
        assert!(durability.was_member(1, sent_before));
        assert!(!durability.was_member(2, sent_before));
        assert!(durability.was_member(2, durability.joins));
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
