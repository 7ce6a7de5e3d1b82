//! The journal: every write a room makes goes through here to the store, in order,
//! in batches, by one background task; and once the store has taken a room's write,
//! the room is told, so it can release what it was holding back (write-ahead relay).
//!
//! Group commit comes in two paces. Write-ahead (the default) has no timer: while
//! one write is in flight the next batch collects, so a quiet server writes each
//! update at once and a busy one writes many per round trip. Relaxed waits a fixed
//! window before each write, the pace of servers that relay first and write after.
//!
//! A write the store refuses for good (too large, invalid) is isolated to its room:
//! the room is told and named in health, and every other room keeps being written.
//! Any other failure is retried with backoff, keeping the whole backlog in order.
//!
//! Rooms hand over writes without waiting (they hold a lock while doing it), so the
//! queue is unbounded: while the store is failing the backlog grows in memory, is
//! reported in health and metrics, and is written once the store is back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::room::queue;
use super::store::{Store, StoreError, WriteOp};

/// Most operations written in one store transaction.
const MAX_BATCH: usize = 2000;
/// Most update bytes written in one store transaction (a batch holds at least one
/// operation, however large). A backlog after an outage, or rooms writing whole
/// documents, made batches of hundreds of MB, which a store on a slow link could
/// not take within its operation timeout: retried whole, they never went in.
const MAX_BATCH_BYTES: usize = 8 << 20;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a degraded store with nothing left to write is pinged to find out it
/// is back (with a backlog, the writer's own retries find out).
const RECOVERY_PROBE: Duration = Duration::from_secs(1);

/// How many of the first `pending` items make the next batch: at most `MAX_BATCH`
/// and `MAX_BATCH_BYTES`, at least one.
fn batch_len(pending: &VecDeque<Item>) -> usize {
    let mut bytes = 0;
    let within = pending
        .iter()
        .take(MAX_BATCH)
        .take_while(|item| {
            if let Item::Write { op, .. } = item {
                bytes += op.data_len();
            }
            bytes <= MAX_BATCH_BYTES
        })
        .count();
    within.max(1).min(pending.len())
}

/// Who hears about a write once the store has answered for it: the room that made it.
pub trait WriteWatcher: Send + Sync {
    /// Every write of this room up to `seq` is in the store.
    fn written(&self, seq: u64);
    /// The store refused this room's write for good, for `reason`; nothing of the
    /// room is written any more.
    fn refused(&self, reason: &str);
}

/// How the writer paces its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Write as soon as the previous write returns (write-ahead relay: rooms wait
    /// for the store, so a timer would only add latency).
    Natural,
    /// Gather for this long before each write (relay first, write within the window).
    Window(Duration),
}

enum Item {
    Write {
        op: WriteOp,
        watcher: Arc<dyn WriteWatcher>,
    },
    Flush(oneshot::Sender<()>),
}

/// What the journal knows about the store's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreState {
    Healthy,
    Degraded(String),
}

struct Shared {
    backlog: AtomicU64,
    errors: AtomicU64,
    /// `std::sync::Mutex`: a tiny value read by health checks, never awaited.
    state: Mutex<StoreState>,
    /// Rooms whose writes the store refused for good, with the reason; read by
    /// health and metrics. `std::sync::Mutex` for the same reason as `state`.
    refused: Mutex<BTreeMap<String, String>>,
}

/// Cheap to clone: a sender into the writer task plus shared counters.
#[derive(Clone)]
pub struct Journal {
    sender: mpsc::UnboundedSender<Item>,
    shared: Arc<Shared>,
    backend: &'static str,
}

/// Owned by the server; awaiting it waits for the queue to be written.
pub struct JournalTask {
    handle: JoinHandle<()>,
}

impl Journal {
    /// Starts the writer task. It runs until every `Journal` clone is dropped, then
    /// writes what is left and ends.
    pub fn start(store: Arc<dyn Store>, pace: Pace) -> (Journal, JournalTask) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            backlog: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            state: Mutex::new(StoreState::Healthy),
            refused: Mutex::new(BTreeMap::new()),
        });
        let backend = store.backend();
        let writer = Writer {
            store,
            shared: shared.clone(),
            pace,
        };
        let handle = tokio::spawn(writer.run(receiver));
        (
            Journal {
                sender,
                shared,
                backend,
            },
            JournalTask { handle },
        )
    }

    /// Queues `op`; `watcher` hears once it is stored (or refused).
    pub fn submit(&self, op: WriteOp, watcher: Arc<dyn WriteWatcher>) {
        self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(Item::Write { op, watcher }).is_err() {
            // Only after shutdown has begun; the room is going away with the process.
            self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("journal closed: an update was not written");
        }
    }

    /// Waits until everything submitted before this call is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Item::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// `flush`, giving up after `deadline` (a store that stays down cannot hold
    /// shutdown forever); says in the log what could not be written.
    /// Waits up to `deadline` for everything queued to be written; false (and
    /// logged) when the store did not take it all.
    pub async fn flush_for_shutdown(&self, deadline: Duration) -> bool {
        if tokio::time::timeout(deadline, self.flush()).await.is_err() {
            tracing::error!(
                backlog = self.backlog(),
                "store unavailable at shutdown: updates not written"
            );
            return false;
        }
        true
    }

    pub fn backlog(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn state(&self) -> StoreState {
        self.shared
            .state
            .lock()
            .map(|state| state.clone())
            .unwrap_or_else(|_| StoreState::Degraded("journal state unavailable".into()))
    }

    /// Rooms the store refused for good, by id, with the store's reason.
    pub fn refused_rooms(&self) -> BTreeMap<String, String> {
        self.shared
            .refused
            .lock()
            .map(|refused| refused.clone())
            .unwrap_or_default()
    }

    /// Marks the store degraded from outside the writer (a failed load, persist or
    /// checkpoint read), so health shows it even when no update is pending.
    pub fn report_failure(&self, reason: &str) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        set_state(&self.shared, StoreState::Degraded(reason.to_owned()));
    }

    /// Clears a failure reported with `report_failure` once an operation succeeded
    /// and nothing is waiting to be written.
    pub fn report_success(&self) {
        if self.backlog() == 0 {
            set_state(&self.shared, StoreState::Healthy);
        }
    }
}

impl JournalTask {
    /// Waits for the writer to finish after the last `Journal` clone was dropped, at
    /// most `deadline` (a store that stays down cannot hold shutdown forever).
    pub async fn finish(self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.handle).await.is_ok()
    }
}

/// Clears a degraded state that no write would clear: a store unreachable at start-up
/// (`--start-degraded`) or a failed room load, with nothing queued. Runs until
/// `shutdown`.
pub async fn watch_recovery(journal: Journal, store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(RECOVERY_PROBE);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if journal.backlog() > 0 || journal.state() == StoreState::Healthy {
            continue;
        }
        let ping = tokio::select! {
            _ = shutdown.cancelled() => return,
            ping = store.ping() => ping,
        };
        if ping.is_ok() {
            journal.report_success();
        }
    }
}

fn set_state(shared: &Shared, state: StoreState) {
    if let Ok(mut current) = shared.state.lock() {
        if *current != state {
            match &state {
                StoreState::Healthy => tracing::info!("store healthy again"),
                StoreState::Degraded(reason) => tracing::warn!(%reason, "store degraded"),
            }
            *current = state;
        }
    }
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    pace: Pace,
}

/// How writing one batch went.
enum Outcome {
    /// Every item of the batch is settled (written, or refused for its room).
    Settled,
    /// The store failed for now; the batch is to be retried as it is.
    Retry(StoreError),
}

impl Writer {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Item>) {
        let mut pending: VecDeque<Item> = VecDeque::new();
        let mut open = true;
        let mut retry_delay = RETRY_MIN;
        while open || !pending.is_empty() {
            if pending.is_empty() {
                match receiver.recv().await {
                    Some(item) => pending.push_back(item),
                    None => break,
                }
                match self.pace {
                    // Let the updates of the next few milliseconds join this
                    // transaction instead of paying one store round trip each.
                    Pace::Window(window) => tokio::time::sleep(window).await,
                    // Let the connections this worker has ready to run add their
                    // keystrokes first: on a busy server the batch then carries
                    // several (rooms of 4: a third of the commits, 9% less CPU per
                    // delivery); on a quiet one nothing else is ready and this
                    // costs one poll.
                    Pace::Natural => tokio::task::yield_now().await,
                }
            }
            loop {
                match receiver.try_recv() {
                    Ok(item) => pending.push_back(item),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }

            let batch_len = batch_len(&pending);
            let mut batch: Vec<Item> = pending.drain(..batch_len).collect();
            match self.write(&mut batch).await {
                Outcome::Settled => retry_delay = RETRY_MIN,
                Outcome::Retry(error) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    set_state(&self.shared, StoreState::Degraded(error.to_string()));
                    tracing::warn!(%error, backlog = pending.len() + batch.len(), ?retry_delay, "store write failed; retrying");
                    // What is left of the batch goes back in front, in order.
                    for item in batch.into_iter().rev() {
                        pending.push_front(item);
                    }
                    tokio::time::sleep(retry_delay).await;
                    retry_delay = (retry_delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Writes `batch`; what is settled is removed from it and its watchers told.
    /// A refusal for good is narrowed down to the rooms it belongs to.
    async fn write(&self, batch: &mut Vec<Item>) -> Outcome {
        self.drop_refused(batch);
        let ops = write_ops(batch);
        let result = if ops.is_empty() {
            Ok(())
        } else {
            self.store.write(&ops).await
        };
        match result {
            Ok(()) => {
                // A batch of flush markers alone proves nothing about the store.
                if !ops.is_empty() {
                    set_state(&self.shared, StoreState::Healthy);
                }
                self.settle(std::mem::take(batch));
                Outcome::Settled
            }
            Err(error) if error.is_permanent() => self.write_room_by_room(batch).await,
            Err(error) => Outcome::Retry(error),
        }
    }

    /// After a refusal for good: each room's writes alone, so the room the store
    /// refuses is found and set aside and the others are written.
    async fn write_room_by_room(&self, batch: &mut Vec<Item>) -> Outcome {
        let mut rooms: Vec<String> = Vec::new();
        for item in batch.iter() {
            if let Item::Write { op, .. } = item {
                if !rooms.iter().any(|room| room == op.room_id()) {
                    rooms.push(op.room_id().to_owned());
                }
            }
        }
        for room in rooms {
            let (mine, rest): (Vec<Item>, Vec<Item>) = std::mem::take(batch)
                .into_iter()
                .partition(|item| matches!(item, Item::Write { op, .. } if op.room_id() == room));
            *batch = rest;
            let ops = write_ops(&mine);
            match self.store.write(&ops).await {
                Ok(()) => self.settle(mine),
                Err(error) if error.is_permanent() => {
                    // The room's delete still goes: it is how a refused room's
                    // data is let go of, and its caller is told it was written.
                    let (deletes, refused): (Vec<Item>, Vec<Item>) =
                        mine.into_iter().partition(|item| {
                            matches!(
                                item,
                                Item::Write {
                                    op: WriteOp::Delete(_),
                                    ..
                                }
                            )
                        });
                    self.refuse(&room, &error, refused);
                    if deletes.is_empty() {
                        continue;
                    }
                    match self.store.write(&write_ops(&deletes)).await {
                        Ok(()) => self.settle(deletes),
                        Err(error) if error.is_permanent() => self.refuse(&room, &error, deletes),
                        Err(error) => {
                            let rest = std::mem::take(batch);
                            batch.extend(deletes);
                            batch.extend(rest);
                            return Outcome::Retry(error);
                        }
                    }
                }
                Err(error) => {
                    // Put the room's items back where they were: first.
                    let rest = std::mem::take(batch);
                    batch.extend(mine);
                    batch.extend(rest);
                    return Outcome::Retry(error);
                }
            }
        }
        self.settle(std::mem::take(batch));
        Outcome::Settled
    }

    /// Items of rooms already refused are not written again: they are dropped and
    /// their room told (one loaded again since the refusal has not heard of it,
    /// and would hold its messages for ever).
    fn drop_refused(&self, batch: &mut Vec<Item>) {
        let mut dropped: Vec<(Arc<dyn WriteWatcher>, String)> = Vec::new();
        {
            let Ok(refused) = self.shared.refused.lock() else {
                return;
            };
            if refused.is_empty() {
                return;
            }
            // A delete still goes: it is how a refused room's data is let go of.
            for item in std::mem::take(batch) {
                match item {
                    Item::Write { op, watcher }
                        if refused.contains_key(op.room_id())
                            && !matches!(op, WriteOp::Delete(_)) =>
                    {
                        self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                        if !dropped.iter().any(|(told, _)| Arc::ptr_eq(told, &watcher)) {
                            let reason = refused.get(op.room_id()).cloned().unwrap_or_default();
                            dropped.push((watcher, reason));
                        }
                    }
                    item => batch.push(item),
                }
            }
        }
        for (watcher, reason) in dropped {
            watcher.refused(&reason);
        }
    }

    fn refuse(&self, room: &str, error: &StoreError, items: Vec<Item>) {
        let reason = error.to_string();
        tracing::error!(room, %reason, "the store refused this room's writes; its edits stay in memory only");
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut refused) = self.shared.refused.lock() {
            refused.insert(room.to_owned(), reason.clone());
        }
        let mut told = false;
        for item in items {
            if let Item::Write { watcher, .. } = item {
                self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                if !told {
                    watcher.refused(&reason);
                    told = true;
                }
            }
        }
    }

    /// Tells each room once, with its highest written sequence number, and answers
    /// flush markers.
    fn settle(&self, items: Vec<Item>) {
        let mut written: Vec<(Arc<dyn WriteWatcher>, u64)> = Vec::new();
        let mut index: HashMap<*const (), usize> = HashMap::new();
        let mut flushes = Vec::new();
        for item in items {
            match item {
                Item::Write { op, watcher } => {
                    self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                    if let WriteOp::Delete(deletion) = &op {
                        // Gone from the store: a room of that name starts afresh.
                        if let Ok(mut refused) = self.shared.refused.lock() {
                            refused.remove(&deletion.room_id);
                        }
                    }
                    let key = Arc::as_ptr(&watcher) as *const ();
                    match index.get(&key) {
                        Some(&at) => written[at].1 = written[at].1.max(op.seq()),
                        None => {
                            index.insert(key, written.len());
                            written.push((watcher, op.seq()));
                        }
                    }
                }
                Item::Flush(done) => flushes.push(done),
            }
        }
        // A small batch's messages are written straight to their sockets from
        // here; a large one's beyond that go to their connections' tasks, so the
        // writes spread over the workers instead of all running on this one.
        queue::limit_direct_writes(queue::DIRECT_WRITES_PER_BATCH, || {
            for (watcher, seq) in written {
                watcher.written(seq);
            }
        });
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn write_ops(items: &[Item]) -> Vec<WriteOp> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Write { op, .. } => Some(op.clone()),
            Item::Flush(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::memory::MemoryStore;
    use crate::server::store::LoggedUpdate;
    use bytes::Bytes;

    /// A room's view of the journal: the highest written sequence, and a refusal.
    #[derive(Default)]
    struct Recorder {
        written: AtomicU64,
        refused: Mutex<Option<String>>,
    }

    impl WriteWatcher for Recorder {
        fn written(&self, seq: u64) {
            self.written.fetch_max(seq, Ordering::AcqRel);
        }
        fn refused(&self, reason: &str) {
            *self.refused.lock().unwrap() = Some(reason.to_owned());
        }
    }

    fn append(room: &str, seq: u64) -> WriteOp {
        WriteOp::Append(LoggedUpdate {
            room_id: room.into(),
            seq,
            data: Bytes::from(vec![seq as u8]),
            at_ms: 0,
            author: None,
        })
    }

    #[tokio::test]
    async fn writes_in_order_and_tells_the_room_what_is_written() {
        let store = MemoryStore::new();
        let (journal, task) = Journal::start(Arc::new(store.clone()), Pace::Natural);
        let room = Arc::new(Recorder::default());
        for seq in 1..=100 {
            journal.submit(append("r", seq), room.clone());
        }
        journal.flush().await;
        assert_eq!(room.written.load(Ordering::Acquire), 100);
        assert_eq!(journal.backlog(), 0);
        let state = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(state.updates.len(), 100);
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keystrokes_of_connections_ready_together_go_in_one_batch() {
        let store = MemoryStore::new();
        let (journal, task) = Journal::start(Arc::new(store.clone()), Pace::Natural);
        let room = Arc::new(Recorder::default());
        // The first keystroke wakes the journal; ten connections' tasks with theirs
        // become ready behind it on the same thread before it runs.
        journal.submit(append("r", 1), room.clone());
        let connections: Vec<_> = (2..=11)
            .map(|seq| {
                let (journal, room) = (journal.clone(), room.clone());
                tokio::spawn(async move { journal.submit(append("r", seq), room) })
            })
            .collect();
        for connection in connections {
            connection.await.unwrap();
        }
        journal.flush().await;
        assert_eq!(room.written.load(Ordering::Acquire), 11);
        assert_eq!(store.writes(), 1, "one commit for all of them");
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }

    /// A batch stops at `MAX_BATCH_BYTES` of updates (a backlog of large writes
    /// goes in several), and always holds at least one, however large.
    #[test]
    fn batches_are_bounded_in_bytes_and_never_empty() {
        let sized = |seq: u64, bytes: usize| Item::Write {
            op: WriteOp::Append(LoggedUpdate {
                room_id: "r".into(),
                seq,
                data: Bytes::from(vec![0; bytes]),
                at_ms: 0,
                author: None,
            }),
            watcher: Arc::new(Recorder::default()),
        };
        let quarter = MAX_BATCH_BYTES / 4;
        let pending: VecDeque<Item> = (1..=10).map(|seq| sized(seq, quarter)).collect();
        assert_eq!(batch_len(&pending), 4);
        let pending: VecDeque<Item> = [sized(1, MAX_BATCH_BYTES * 3), sized(2, 1)].into();
        assert_eq!(batch_len(&pending), 1);
        let pending: VecDeque<Item> = (1..=5000).map(|seq| sized(seq, 1)).collect();
        assert_eq!(batch_len(&pending), MAX_BATCH);
    }

    #[tokio::test]
    async fn keeps_the_backlog_through_an_outage_and_writes_it_after() {
        let store = MemoryStore::new();
        store.set_failing(true);
        let (journal, task) = Journal::start(
            Arc::new(store.clone()),
            Pace::Window(Duration::from_millis(1)),
        );
        let room = Arc::new(Recorder::default());
        for seq in 1..=10 {
            journal.submit(append("r", seq), room.clone());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(journal.backlog(), 10);
        assert_eq!(room.written.load(Ordering::Acquire), 0);
        assert!(matches!(journal.state(), StoreState::Degraded(_)));
        assert!(journal.errors() >= 1);

        store.set_failing(false);
        journal.flush().await;
        assert_eq!(journal.backlog(), 0);
        assert_eq!(room.written.load(Ordering::Acquire), 10);
        assert_eq!(journal.state(), StoreState::Healthy);
        assert_eq!(store.load_durable("r").await.unwrap().unwrap().last_seq, 10);
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_room_the_store_refuses_for_good_does_not_hold_up_the_others() {
        let store = MemoryStore::new();
        store.refuse_room("poison");
        let (journal, task) = Journal::start(Arc::new(store.clone()), Pace::Natural);
        let poison = Arc::new(Recorder::default());
        let healthy = Arc::new(Recorder::default());
        for seq in 1..=20 {
            journal.submit(append("poison", seq), poison.clone());
            journal.submit(append("healthy", seq), healthy.clone());
        }
        journal.flush().await;
        assert_eq!(healthy.written.load(Ordering::Acquire), 20);
        assert_eq!(
            store
                .load_durable("healthy")
                .await
                .unwrap()
                .unwrap()
                .updates
                .len(),
            20
        );
        assert_eq!(poison.written.load(Ordering::Acquire), 0);
        assert!(poison.refused.lock().unwrap().is_some());
        assert!(journal.refused_rooms().contains_key("poison"));
        assert_eq!(journal.backlog(), 0);

        // Later writes of the refused room are set aside without a store round trip;
        // the healthy room goes on.
        journal.submit(append("poison", 21), poison.clone());
        journal.submit(append("healthy", 21), healthy.clone());
        journal.flush().await;
        assert_eq!(healthy.written.load(Ordering::Acquire), 21);
        assert_eq!(journal.backlog(), 0);
        // The room loaded again hears it is refused at its first write, instead
        // of waiting for it for ever.
        let reloaded = Arc::new(Recorder::default());
        journal.submit(append("poison", 22), reloaded.clone());
        journal.flush().await;
        assert!(reloaded.refused.lock().unwrap().is_some());
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }

    /// A room's delete in the batch where its writes are refused still goes
    /// through: the room's data is gone when the delete is reported written.
    #[tokio::test]
    async fn a_delete_batched_with_a_refused_write_is_written() {
        let store = MemoryStore::new();
        let (journal, task) = Journal::start(Arc::new(store.clone()), Pace::Natural);
        let room = Arc::new(Recorder::default());
        journal.submit(append("doomed", 1), room.clone());
        journal.flush().await;
        store.refuse_room("doomed");
        journal.submit(append("doomed", 2), room.clone());
        journal.submit(
            WriteOp::Delete(crate::server::store::RoomDeletion {
                room_id: "doomed".into(),
                seq: 3,
            }),
            room.clone(),
        );
        journal.flush().await;
        assert_eq!(store.load_durable("doomed").await.unwrap(), None);
        assert_eq!(room.written.load(Ordering::Acquire), 3);
        assert!(!journal.refused_rooms().contains_key("doomed"));
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }
}
