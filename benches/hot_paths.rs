//! Micro-benchmarks of the server's per-keystroke work, on the shape of traffic the
//! original browser page produces: a ~10 KB document, and on every keystroke the
//! page's FULL state (hex) with one new character in it.
//!
//! Routines return the room they used, so criterion drops it outside the timed
//! region: tearing down a 10 KB document is not part of handling a keystroke.
//!
//! Run: cargo bench --bench hot_paths

use std::hint::black_box;

use coedit::api::ServerMessage;
use coedit::server::document::{Applied, Document, TEXT_NAME};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact, Update};

/// Target size of the document's full-state encoding.
const DOCUMENT_BYTES: usize = 10 * 1024;

/// An editor's document typed in bursts at scattered places, as people write, until
/// its encoding reaches `DOCUMENT_BYTES`; and the room's document holding the same.
struct Fixture {
    /// The room's state before the keystroke.
    room_state: Vec<u8>,
    /// The editor's full state after typing one more character.
    full_after_keystroke: Vec<u8>,
    /// That keystroke alone.
    keystroke: Vec<u8>,
    /// What the room broadcasts for it.
    delta: Vec<u8>,
}

fn fixture() -> Fixture {
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut rng = fastrand::Rng::with_seed(1);
    let words = "the quick brown fox jumps over the lazy dog ";
    loop {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn);
        let at = rng.u32(0..=len);
        let burst = &words[..rng.usize(1..words.len())];
        text.insert(&mut txn, at, burst);
        drop(txn);
        let size = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
            .len();
        if size >= DOCUMENT_BYTES {
            break;
        }
    }
    let room_state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let keystroke = {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn);
        text.insert(&mut txn, len / 2, "x");
        txn.encode_update_v1()
    };
    let full_after_keystroke = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let mut room = Document::from_state(&room_state).expect("fixture state applies");
    let Ok(Applied::Delta(delta)) = room.apply_update(&full_after_keystroke) else {
        panic!("a new character must produce a delta");
    };
    eprintln!(
        "fixture: full state {} bytes, keystroke update {} bytes, broadcast delta {} bytes",
        full_after_keystroke.len(),
        keystroke.len(),
        delta.len()
    );
    Fixture {
        room_state,
        full_after_keystroke,
        keystroke,
        delta: delta.to_vec(),
    }
}

fn room(fixture: &Fixture) -> Document {
    Document::from_state(&fixture.room_state).expect("fixture state applies")
}

/// The room after one keystroke it has not encoded yet.
fn changed_room(fixture: &Fixture) -> Document {
    let mut room = room(fixture);
    let _ = room.apply_update(&fixture.keystroke);
    room
}

fn document(c: &mut Criterion) {
    let fixture = fixture();
    let full_hex = hex::encode(&fixture.full_after_keystroke);
    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Bytes(fixture.full_after_keystroke.len() as u64));

    group.bench_function("decode_full_state_10kb", |b| {
        b.iter(|| Update::decode_v1(black_box(&fixture.full_after_keystroke)))
    });
    // Decode + merge + delta: what the room does with each keystroke of the page.
    group.bench_function("apply_full_state_10kb_one_new_char", |b| {
        b.iter_batched(
            || room(&fixture),
            |mut room| {
                let applied = room.apply_update(black_box(&fixture.full_after_keystroke));
                (room, applied)
            },
            BatchSize::SmallInput,
        )
    });
    // The same from the wire: hex text as the JSON protocol carries it.
    group.bench_function("apply_hex_full_state_10kb_one_new_char", |b| {
        b.iter_batched(
            || room(&fixture),
            |mut room| {
                let applied = room.apply_hex_update(black_box(&full_hex));
                (room, applied)
            },
            BatchSize::SmallInput,
        )
    });
    // A full state the room already holds: must come out as `Nothing`, cheaply.
    group.bench_function("apply_full_state_10kb_nothing_new", |b| {
        let mut room = room(&fixture);
        let _ = room.apply_update(&fixture.full_after_keystroke);
        b.iter(|| room.apply_update(black_box(&fixture.full_after_keystroke)))
    });
    group.throughput(Throughput::Elements(1));
    // An incremental client sends only this.
    group.bench_function("apply_incremental_one_char", |b| {
        b.iter_batched(
            || room(&fixture),
            |mut room| {
                let applied = room.apply_update(black_box(&fixture.keystroke));
                (room, applied)
            },
            BatchSize::SmallInput,
        )
    });
    // What a joiner is sent, once per change (cached after that).
    group.bench_function("encode_full_state_10kb", |b| {
        b.iter_batched(
            || changed_room(&fixture),
            |mut room| {
                let encoded = room.encoded_state();
                (room, encoded)
            },
            BatchSize::SmallInput,
        )
    });
    // A document's size as `GET /api/metrics` and the room listings report it,
    // right after a keystroke: encoding it (what every poll cost before) against
    // reading the size kept as updates apply.
    group.bench_function("size_after_keystroke_by_encoding", |b| {
        b.iter_batched(
            || changed_room(&fixture),
            |mut room| {
                let size = room.size();
                (room, size)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("size_after_keystroke_kept", |b| {
        b.iter_batched(
            || changed_room(&fixture),
            |room| {
                let size = room.size_estimate();
                (room, size)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Full states of an editor typing one character at a time into a ~1 MB document,
/// with the room's state before the first: each applies exactly one new character.
struct LargeFixture {
    room_state: Vec<u8>,
    keystrokes: Vec<Vec<u8>>,
}

fn large_fixture() -> LargeFixture {
    const LARGE_BYTES: usize = 1024 * 1024;
    const KEYSTROKES: usize = 200;
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut rng = fastrand::Rng::with_seed(2);
    let words = "the quick brown fox jumps over the lazy dog ";
    let mut bursts = 0;
    loop {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn);
        // Mostly where the writer is, now and then somewhere else.
        let at = if rng.u8(0..10) == 0 {
            rng.u32(0..=len)
        } else {
            len
        };
        text.insert(&mut txn, at, &words[..rng.usize(1..words.len())]);
        drop(txn);
        bursts += 1;
        if bursts % 1000 == 0
            && doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default())
                .len()
                >= LARGE_BYTES
        {
            break;
        }
    }
    let room_state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let keystrokes = (0..KEYSTROKES)
        .map(|_| {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, rng.u32(0..=len), "x");
            drop(txn);
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        })
        .collect();
    eprintln!("large fixture: {} bytes, {bursts} bursts", room_state.len());
    LargeFixture {
        room_state,
        keystrokes,
    }
}

/// The original page's keystroke in a 1 MB document: a 2 MB `update` message.
fn large_document(c: &mut Criterion) {
    let fixture = large_fixture();
    let messages: Vec<String> = fixture
        .keystrokes
        .iter()
        .map(|state| format!(r#"{{"type":"update","data":"{}"}}"#, hex::encode(state)))
        .collect();
    let mut group = c.benchmark_group("large_document");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_update_message_1mb", |b| {
        b.iter(|| serde_json::from_str::<coedit::api::ClientMessage>(black_box(&messages[0])))
    });
    // What a keystroke's 2 MB of hex costs to check and decode (the server's own
    // function, into a new buffer).
    group.bench_function("hex_decode_1mb", |b| {
        let data = hex::encode(&fixture.keystrokes[0]);
        b.iter(|| coedit::server::document::decode_hex(black_box(&data)))
    });
    // The greeting (and a `sync_request`'s answer) for the 1 MB document, built
    // under the room's lock whenever the document changed since the last one.
    group.bench_function("sync_message_1mb_through_serde", |b| {
        b.iter(|| {
            ServerMessage::Sync {
                data: hex::encode(black_box(&fixture.room_state)),
            }
            .to_json()
        })
    });
    group.bench_function("sync_message_1mb", |b| {
        b.iter(|| ServerMessage::sync_json(black_box(&fixture.room_state)))
    });
    group.bench_function("decode_full_state_1mb", |b| {
        b.iter(|| Update::decode_v1(black_box(&fixture.keystrokes[0])))
    });
    // Each iteration applies the next keystroke's full state, one new character.
    group.bench_function("apply_hex_full_state_1mb_one_new_char", |b| {
        let hexes: Vec<String> = fixture.keystrokes.iter().map(hex::encode).collect();
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut room =
                    Document::from_state(&fixture.room_state).expect("fixture state applies");
                for hex in hexes.iter().take((iters - done) as usize) {
                    let started = std::time::Instant::now();
                    let applied = room.apply_hex_update(black_box(hex));
                    total += started.elapsed();
                    assert!(matches!(applied, Ok(Applied::Delta(_))));
                    done += 1;
                }
            }
            total
        })
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    let fixture = fixture();
    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(1));
    // Serialised once per keystroke and shared by every recipient.
    group.bench_function("serialise_update_message", |b| {
        b.iter(|| {
            ServerMessage::Update {
                data: hex::encode(black_box(&fixture.delta)),
                from: "0b7e1f62-5a8c-4d61-9a57-3c2f4e8d9b10".to_owned(),
            }
            .to_json()
        })
    });
    group.finish();
}

criterion_group!(benches, document, broadcast, large_document);
criterion_main!(benches);
