//! Measures what keeping history costs on the embedded store: one room typed into a
//! character at a time, compacted every `--compact-every` edits as the server does,
//! with history off and kept; reports the database's size per 10,000 edits and how
//! long reading an old version takes (the store's read plus rebuilding the document).
//!
//!     cargo run --release --example history_cost -- --edits 10000

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use coedit::server::content;
use coedit::server::store::sqlite::{SqliteStore, DATABASE_FILE};
use coedit::server::store::{LoggedUpdate, Snapshot, Store, WriteOp};
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

#[derive(Parser)]
struct Args {
    /// Edits typed into the room (one character each).
    #[arg(long, default_value_t = 10_000)]
    edits: u64,
    /// Edits between compactions (the server's --compact-every).
    #[arg(long, default_value_t = 500)]
    compact_every: u64,
    /// Reads of each version timed; the median is reported.
    #[arg(long, default_value_t = 7)]
    reads: usize,
}

const SAMPLE: &str = "The quick brown fox jumps over the lazy dog. ";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Types `edits` characters into one room of `store`; returns the last sequence
/// number and, per edit, the sequence number it was logged at.
async fn type_into(store: &SqliteStore, args: &Args, keep_history: bool) -> Vec<u64> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    let mut seq = 0;
    let mut since_compaction = 0;
    let mut edit_seqs = Vec::with_capacity(args.edits as usize);
    let sample: Vec<char> = SAMPLE.chars().collect();
    for edit in 0..args.edits {
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            let letter = sample[edit as usize % sample.len()].to_string();
            text.insert(&mut txn, end, &letter);
        }
        let update = doc.transact().encode_state_as_update_v1(&before);
        seq += 1;
        edit_seqs.push(seq);
        let mut batch = vec![WriteOp::Append(LoggedUpdate {
            room_id: "typed".into(),
            seq,
            data: Bytes::from(update),
            at_ms: now_ms(),
            author: Some("Alice".into()),
        })];
        since_compaction += 1;
        if since_compaction >= args.compact_every {
            since_compaction = 0;
            seq += 1;
            batch.push(WriteOp::Compact(Snapshot {
                room_id: "typed".into(),
                through_seq: seq,
                data: Bytes::from(
                    doc.transact()
                        .encode_state_as_update_v1(&StateVector::default()),
                ),
                at_ms: now_ms(),
                // A week, as the default: nothing typed here is old enough to drop.
                keep_history_since_ms: keep_history.then(|| now_ms() - 7 * 86_400_000),
                deletions: None,
            }));
        }
        store.write(&batch).await.expect("write");
    }
    edit_seqs
}

fn database_bytes(dir: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            std::fs::metadata(dir.join(format!("{DATABASE_FILE}{suffix}")))
                .ok()
                .map(|metadata| metadata.len())
        })
        .sum()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "{} one-character edits in one room, compacted every {} edits\n",
        args.edits, args.compact_every
    );
    println!("| history | database size | per 10,000 edits |");
    println!("|---|---|---|");
    let mut kept_store = None;
    for keep_history in [false, true] {
        let dir =
            std::env::temp_dir().join(format!("coedit-history-cost-{}", uuid::Uuid::new_v4()));
        let store = SqliteStore::open(&dir).expect("open");
        let edit_seqs = type_into(&store, &args, keep_history).await;
        store.close().await.expect("close");
        let bytes = database_bytes(&dir);
        println!(
            "| {} | {} KiB | {} KiB |",
            if keep_history { "kept" } else { "off" },
            bytes / 1024,
            bytes * 10_000 / args.edits.max(1) / 1024
        );
        if keep_history {
            kept_store = Some((dir, store, edit_seqs));
        } else {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    let Some((dir, store, edit_seqs)) = kept_store else {
        return;
    };
    println!("\n| version read | median time (store read + rebuild) |");
    println!("|---|---|");
    for fraction in [0.01, 0.5, 0.999] {
        let index = ((edit_seqs.len() as f64 * fraction) as usize).min(edit_seqs.len() - 1);
        let seq = edit_seqs[index];
        let mut samples = Vec::with_capacity(args.reads);
        for _ in 0..args.reads {
            let started = Instant::now();
            let version = store
                .read_version("typed", seq)
                .await
                .expect("read")
                .expect("kept");
            let state =
                content::rebuild(version.base.as_deref(), &version.updates).expect("rebuild");
            let text = content::text(&state).expect("text");
            assert_eq!(text.chars().count(), index + 1);
            samples.push(started.elapsed());
        }
        println!(
            "| edit {} of {} | {:.2} ms |",
            index + 1,
            edit_seqs.len(),
            median(samples).as_secs_f64() * 1000.0
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
