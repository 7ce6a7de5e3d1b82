//! Measures what automatic durability costs: drives the real journal and a real
//! store (SQLite or MongoDB) at a fixed rate of Yjs edits spread over many rooms, and
//! reports store writes per second, the time each edit waits until it is durable,
//! and what handing an edit to the journal costs the room.
//!
//! Bounded: it runs for `--seconds` and stops by itself.
//!
//!     cargo run --release --example store_load -- --rooms 50 --rate 1000 --seconds 20
//!     cargo run --release --example store_load -- --mongo-url mongodb://127.0.0.1:27017

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use coedit::server::journal::{Journal, Pace, WriteWatcher};
use coedit::server::store::mongo::MongoStore;
use coedit::server::store::sqlite::SqliteStore;
use coedit::server::store::{
    DurableState, LoggedUpdate, RoomParts, Snapshot, Store, StoreError, StoredEntry, WriteOp,
};
use hdrhistogram::Histogram;
use yrs::{Doc, ReadTxn, StateVector, Text, TextRef, Transact};

/// A load room's "written through" mark, as the journal reports it.
#[derive(Default)]
struct Written(AtomicU64);

impl WriteWatcher for Written {
    fn written(&self, seq: u64) {
        self.0.fetch_max(seq, Ordering::Relaxed);
    }
    fn refused(&self, reason: &str) {
        eprintln!("store refused a room: {reason}");
    }
}

#[derive(Parser)]
struct Args {
    /// Rooms the edits are spread over.
    #[arg(long, default_value_t = 50)]
    rooms: usize,
    /// Edits per second, all rooms together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Group-commit window, as `coedit serve --durability relaxed
    /// --commit-interval-ms`; 0 writes as soon as the previous write returns, as the
    /// write-ahead levels do.
    #[arg(long, default_value_t = 0)]
    commit_interval_ms: u64,
    /// Updates per room between compactions, as `coedit serve --compact-every`.
    #[arg(long, default_value_t = 500)]
    compact_every: u64,
    /// Use MongoDB (a fresh database, dropped afterwards) instead of SQLite.
    #[arg(long)]
    mongo_url: Option<String>,
    /// SQLite data directory (default: a fresh temporary one, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Stats gathered around the real store's `write`.
#[derive(Default)]
struct Recorded {
    /// When each (room, seq) was handed to the journal.
    submitted: HashMap<(String, u64), Instant>,
    /// Submission to durable, microseconds.
    durable: Option<Histogram<u64>>,
    /// One `write` call, microseconds.
    write: Option<Histogram<u64>>,
    writes: u64,
    ops: u64,
}

/// Passes everything to the real store, timing each write.
struct TimedStore {
    inner: Arc<dyn Store>,
    /// `std::sync::Mutex`: held for a few map and histogram updates, never awaited.
    recorded: Mutex<Recorded>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

#[async_trait]
impl Store for TimedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn write(&self, batch: &[WriteOp]) -> Result<(), StoreError> {
        let started = Instant::now();
        self.inner.write(batch).await?;
        let done = Instant::now();
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        recorded.writes += 1;
        recorded.ops += batch.len() as u64;
        let micros = (done - started).as_micros() as u64;
        recorded
            .write
            .get_or_insert_with(histogram)
            .saturating_record(micros.max(1));
        for op in batch {
            if let WriteOp::Append(update) = op {
                let key = (update.room_id.clone(), update.seq);
                if let Some(at) = recorded.submitted.remove(&key) {
                    let waited = (done - at).as_micros() as u64;
                    recorded
                        .durable
                        .get_or_insert_with(histogram)
                        .saturating_record(waited.max(1));
                }
            }
        }
        Ok(())
    }

    async fn load_durable(&self, room_id: &str) -> Result<Option<DurableState>, StoreError> {
        self.inner.load_durable(room_id).await
    }
    async fn save_checkpoint(&self, room_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.inner.save_checkpoint(room_id, state).await
    }
    async fn load_checkpoint(&self, room_id: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.load_checkpoint(room_id).await
    }
    async fn history(&self, room_id: &str) -> Result<coedit::server::store::History, StoreError> {
        self.inner.history(room_id).await
    }
    async fn read_version(
        &self,
        room_id: &str,
        seq: u64,
    ) -> Result<Option<coedit::server::store::VersionData>, StoreError> {
        self.inner.read_version(room_id, seq).await
    }
    async fn list_rooms(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_rooms().await
    }
    async fn read_room_parts(&self, room_id: &str) -> Result<RoomParts, StoreError> {
        self.inner.read_room_parts(room_id).await
    }
    async fn read_entries(
        &self,
        room_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.inner.read_entries(room_id, after_seq, limit).await
    }
    async fn write_room_parts(&self, room_id: &str, parts: &RoomParts) -> Result<(), StoreError> {
        self.inner.write_room_parts(room_id, parts).await
    }
    async fn write_entries(
        &self,
        room_id: &str,
        entries: &[StoredEntry],
    ) -> Result<(), StoreError> {
        self.inner.write_entries(room_id, entries).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// One room's document and journal bookkeeping, as a room keeps it.
struct LoadRoom {
    id: String,
    doc: Doc,
    text: TextRef,
    seq: u64,
    compacted: u64,
    written: Arc<Written>,
}

impl LoadRoom {
    /// One keystroke: the incremental update it produces, as a room logs it.
    fn keystroke(&mut self) -> Bytes {
        let before = self.doc.transact().state_vector();
        let len = self.text.len(&self.doc.transact());
        self.text.insert(&mut self.doc.transact_mut(), len, "x");
        Bytes::from(self.doc.transact().encode_state_as_update_v1(&before))
    }

    fn full_state(&self) -> Bytes {
        Bytes::from(
            self.doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default()),
        )
    }
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut cleanup_dir = None;
    let mut mongo_database = None;
    let inner: Arc<dyn Store> = match &args.mongo_url {
        Some(url) => {
            let name = format!(
                "coedit_load_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let store = MongoStore::connect(url, &name).await?;
            store.prepare().await?;
            mongo_database = Some((url.clone(), name));
            Arc::new(store)
        }
        None => {
            let dir = args.data_dir.clone().unwrap_or_else(|| {
                let dir =
                    std::env::temp_dir().join(format!("coedit-load-{}", uuid::Uuid::new_v4()));
                cleanup_dir = Some(dir.clone());
                dir
            });
            Arc::new(SqliteStore::open(&dir)?)
        }
    };
    let store = Arc::new(TimedStore {
        inner,
        recorded: Mutex::new(Recorded::default()),
    });
    let pace = match args.commit_interval_ms {
        0 => Pace::Natural,
        window => Pace::Window(Duration::from_millis(window)),
    };
    let (journal, task) = Journal::start(store.clone(), pace);

    let mut rooms: Vec<LoadRoom> = (0..args.rooms.max(1))
        .map(|index| {
            let doc = Doc::new();
            let text = doc.get_or_insert_text("content");
            LoadRoom {
                id: format!("load-{index}"),
                doc,
                text,
                seq: 0,
                compacted: 0,
                written: Arc::new(Written::default()),
            }
        })
        .collect();

    let total = args.rate * args.seconds;
    let period = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut submit = histogram();
    let started = Instant::now();
    let mut bytes = 0u64;
    for edit in 0..total {
        // Paced against the start, so a late wake-up catches up instead of drifting.
        let due = started + period.mul_f64(edit as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let room = &mut rooms[edit as usize % args.rooms.max(1)];
        let delta = room.keystroke();
        bytes += delta.len() as u64;
        room.seq += 1;
        let key = (room.id.clone(), room.seq);
        {
            let mut recorded = store.recorded.lock().unwrap_or_else(|e| e.into_inner());
            recorded.submitted.insert(key, Instant::now());
        }
        // What a room pays on its hot path: handing the update over.
        let handed = Instant::now();
        journal.submit(
            WriteOp::Append(LoggedUpdate {
                room_id: room.id.clone(),
                seq: room.seq,
                data: delta,
                at_ms: 0,
                author: None,
            }),
            room.written.clone(),
        );
        if room.seq - room.compacted >= args.compact_every {
            room.compacted = room.seq;
            journal.submit(
                WriteOp::Compact(Snapshot {
                    room_id: room.id.clone(),
                    through_seq: room.seq,
                    data: room.full_state(),
                    at_ms: 0,
                    keep_history_since_ms: None,
                    deletions: None,
                }),
                room.written.clone(),
            );
        }
        submit.saturating_record((handed.elapsed().as_nanos() as u64).max(1));
    }
    let sending = started.elapsed();
    journal.flush().await;
    let elapsed = started.elapsed();
    let backlog_at_end = journal.backlog();
    drop(journal);
    task.finish(Duration::from_secs(30)).await;

    let (writes, ops, durable, write) = {
        let recorded = store.recorded.lock().unwrap_or_else(|e| e.into_inner());
        (
            recorded.writes,
            recorded.ops,
            recorded.durable.clone().unwrap_or_else(histogram),
            recorded.write.clone().unwrap_or_else(histogram),
        )
    };
    println!(
        "store: {} | rooms: {} | target rate: {}/s | commit interval: {} ms",
        store.backend(),
        args.rooms,
        args.rate,
        args.commit_interval_ms
    );
    println!(
        "edits: {total} in {:.2} s (achieved {:.0}/s), {:.1} bytes per update on average",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64(),
        bytes as f64 / total.max(1) as f64
    );
    println!(
        "store writes: {} ({:.1}/s), {} ops, {:.1} ops per write; all written {:.2} s after start; backlog left {}",
        writes,
        writes as f64 / elapsed.as_secs_f64(),
        ops,
        ops as f64 / writes.max(1) as f64,
        elapsed.as_secs_f64(),
        backlog_at_end
    );
    println!(
        "one store write (ms): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        millis(&write, 0.5),
        millis(&write, 0.95),
        millis(&write, 0.99),
        write.max() as f64 / 1000.0
    );
    println!(
        "edit accepted -> durable (ms): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
        millis(&durable, 0.5),
        millis(&durable, 0.95),
        millis(&durable, 0.99),
        durable.max() as f64 / 1000.0,
        durable.len()
    );
    println!(
        "handing an edit to the journal (µs): p50 {:.2}  p99 {:.2}  max {:.2}",
        submit.value_at_quantile(0.5) as f64 / 1000.0,
        submit.value_at_quantile(0.99) as f64 / 1000.0,
        submit.max() as f64 / 1000.0
    );
    let _ = store.close().await;
    if let Some((url, name)) = mongo_database {
        mongodb::Client::with_uri_str(&url)
            .await?
            .database(&name)
            .drop()
            .await?;
    }
    if let Some(dir) = cleanup_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
