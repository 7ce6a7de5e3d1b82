//! The journal: every update a room accepts goes through here to the store, in
//! order, written in batches (group commit) by one background task.
//!
//! Rooms hand over writes without waiting (they hold a lock while doing it), so the
//! queue is unbounded: while the store is failing the backlog grows in memory, is
//! reported in health and metrics, and is written once the store is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::store::{Store, WriteOp};

/// Most operations written in one store transaction.
const MAX_BATCH: usize = 2000;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a degraded store with nothing left to write is pinged to find out it
/// is back (with a backlog, the writer's own retries find out).
const RECOVERY_PROBE: Duration = Duration::from_secs(1);

enum Item {
    Write {
        op: WriteOp,
        /// The room's "written through" mark, advanced once `op` is in the store.
        written: Arc<AtomicU64>,
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
    pub fn start(store: Arc<dyn Store>, commit_interval: Duration) -> (Journal, JournalTask) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            backlog: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            state: Mutex::new(StoreState::Healthy),
        });
        let backend = store.backend();
        let handle = tokio::spawn(run_writer(store, receiver, shared.clone(), commit_interval));
        (
            Journal {
                sender,
                shared,
                backend,
            },
            JournalTask { handle },
        )
    }

    /// Queues `op`; `written` is advanced to `op.seq()` once it is stored.
    pub fn submit(&self, op: WriteOp, written: Arc<AtomicU64>) {
        self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(Item::Write { op, written }).is_err() {
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
    pub async fn flush_for_shutdown(&self, deadline: Duration) {
        if tokio::time::timeout(deadline, self.flush()).await.is_err() {
            tracing::error!(
                backlog = self.backlog(),
                "store unavailable at shutdown: updates not written"
            );
        }
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

async fn run_writer(
    store: Arc<dyn Store>,
    mut receiver: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
    commit_interval: Duration,
) {
    let mut pending: VecDeque<Item> = VecDeque::new();
    let mut open = true;
    let mut retry_delay = RETRY_MIN;
    while open || !pending.is_empty() {
        if pending.is_empty() {
            match receiver.recv().await {
                Some(item) => pending.push_back(item),
                None => break,
            }
            // Group commit: let the updates of the next few milliseconds join this
            // transaction instead of paying one store round trip each.
            tokio::time::sleep(commit_interval).await;
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

        let batch_len = pending.len().min(MAX_BATCH);
        let ops: Vec<WriteOp> = pending
            .iter()
            .take(batch_len)
            .filter_map(|item| match item {
                Item::Write { op, .. } => Some(op.clone()),
                Item::Flush(_) => None,
            })
            .collect();
        let result = if ops.is_empty() {
            Ok(())
        } else {
            store.write(&ops).await
        };
        match result {
            Ok(()) => {
                retry_delay = RETRY_MIN;
                for item in pending.drain(..batch_len) {
                    match item {
                        Item::Write { op, written } => {
                            written.fetch_max(op.seq(), Ordering::Release);
                            shared.backlog.fetch_sub(1, Ordering::Relaxed);
                        }
                        Item::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
                // A batch of flush markers alone proves nothing about the store.
                if !ops.is_empty() {
                    set_state(&shared, StoreState::Healthy);
                }
            }
            Err(error) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                set_state(&shared, StoreState::Degraded(error.to_string()));
                tracing::warn!(%error, backlog = pending.len(), ?retry_delay, "store write failed; retrying");
                tokio::time::sleep(retry_delay).await;
                retry_delay = (retry_delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::memory::MemoryStore;
    use crate::server::store::LoggedUpdate;
    use bytes::Bytes;

    fn append(seq: u64) -> WriteOp {
        WriteOp::Append(LoggedUpdate {
            room_id: "r".into(),
            seq,
            data: Bytes::from(vec![seq as u8]),
        })
    }

    #[tokio::test]
    async fn writes_in_order_and_advances_the_written_mark() {
        let store = MemoryStore::new();
        let (journal, task) = Journal::start(Arc::new(store.clone()), Duration::from_millis(1));
        let written = Arc::new(AtomicU64::new(0));
        for seq in 1..=100 {
            journal.submit(append(seq), written.clone());
        }
        journal.flush().await;
        assert_eq!(written.load(Ordering::Acquire), 100);
        assert_eq!(journal.backlog(), 0);
        let state = store.load_durable("r").await.unwrap().unwrap();
        assert_eq!(state.updates.len(), 100);
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn keeps_the_backlog_through_an_outage_and_writes_it_after() {
        let store = MemoryStore::new();
        store.set_failing(true);
        let (journal, task) = Journal::start(Arc::new(store.clone()), Duration::from_millis(1));
        let written = Arc::new(AtomicU64::new(0));
        for seq in 1..=10 {
            journal.submit(append(seq), written.clone());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(journal.backlog(), 10);
        assert!(matches!(journal.state(), StoreState::Degraded(_)));
        assert!(journal.errors() >= 1);

        store.set_failing(false);
        journal.flush().await;
        assert_eq!(journal.backlog(), 0);
        assert_eq!(journal.state(), StoreState::Healthy);
        assert_eq!(store.load_durable("r").await.unwrap().unwrap().last_seq, 10);
        drop(journal);
        assert!(task.finish(Duration::from_secs(5)).await);
    }
}
