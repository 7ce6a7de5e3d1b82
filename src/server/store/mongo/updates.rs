//! How `room_updates` holds a room's log: one document per entry, or one per run of
//! a room's consecutive entries written together.
//!
//! A cluster's persister moves hundreds of a room's entries into MongoDB at once, and
//! a server pays per document far more than per byte (index keys, storage records,
//! the wire protocol's per-document work): one document per run costs it a small
//! part of what one per entry does. Both shapes are read everywhere, so logs written
//! before runs, by hand or by an import stay readable:
//!
//! - an entry: `{room_id, seq, data, at, size, author?, snapshot?}`;
//! - a run: `{room_id, seq: first, last, size: total, entries: [{seq, data, at, size,
//!   author?}, …]}`. A snapshot kept in the history is always an entry of its own.
//!
//! The unique index on `(room_id, seq)` keys a run by its first number. Two writers
//! copying overlapping stretches (a retried batch, two persisters racing) collide on
//! that key; the one refused writes only what lies past the stored run (`after`).
//! Readers skip any number they already read, so an overlap that slips past the key
//! (a writer paused past its lease and a compaction) is read once.

use std::collections::HashMap;

use bytes::Bytes;
use mongodb::bson::{doc, Bson, Document};

use super::{binary, bytes_field, describe, sequence, to_i64};
use crate::server::store::StoreError;

/// Most entries in one run.
const RUN_ENTRIES: usize = 1000;
/// Most bytes in one run, its entries' authors and field names counted
/// (`weight`): far under MongoDB's 16 MiB per document, so a run never fails where
/// its entries one by one would not.
const RUN_BYTES: usize = 1 << 20;
/// An entry's field names and numbers in a run, beyond its update and author.
const ENTRY_OVERHEAD: usize = 64;

/// What an entry adds to a run's document.
fn weight(item: &Item) -> usize {
    item.data.len() + item.author.map_or(0, str::len) + ENTRY_OVERHEAD
}

/// One log entry to write.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item<'a> {
    pub seq: u64,
    pub data: &'a [u8],
    pub at_ms: i64,
    pub author: Option<&'a str>,
    pub snapshot: bool,
}

/// One document to write: an entry, or a run of a room's consecutive entries.
#[derive(Debug)]
pub(super) struct Piece<'a> {
    room_id: &'a str,
    items: Vec<Item<'a>>,
    /// The items' update bytes.
    bytes: usize,
    /// The items' `weight`, bounded by `RUN_BYTES`.
    weight: usize,
}

/// Packs items into documents: each room's consecutive numbers, in the order given,
/// become runs; a snapshot, or an entry alone, stays an entry.
pub(super) fn pack<'a>(items: impl IntoIterator<Item = (&'a str, Item<'a>)>) -> Vec<Piece<'a>> {
    let mut pieces: Vec<Piece<'a>> = Vec::new();
    // The open run of each room, by index into `pieces`: rooms interleave in a batch.
    let mut open: HashMap<&'a str, usize> = HashMap::new();
    for (room_id, item) in items {
        let joins = open.get(room_id).copied().filter(|&index| {
            let piece = &pieces[index];
            piece.items.last().is_some_and(|last| {
                !item.snapshot
                    && !last.snapshot
                    && item.seq == last.seq + 1
                    && piece.items.len() < RUN_ENTRIES
                    && piece.weight + weight(&item) <= RUN_BYTES
            })
        });
        match joins {
            Some(index) => {
                pieces[index].bytes += item.data.len();
                pieces[index].weight += weight(&item);
                pieces[index].items.push(item);
            }
            None => {
                open.insert(room_id, pieces.len());
                pieces.push(Piece {
                    room_id,
                    bytes: item.data.len(),
                    weight: weight(&item),
                    items: vec![item],
                });
            }
        }
    }
    pieces
}

impl<'a> Piece<'a> {
    pub fn room_id(&self) -> &'a str {
        self.room_id
    }

    /// How many entries the document holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn first(&self) -> u64 {
        self.items.first().map_or(0, |item| item.seq)
    }

    /// What is left to write once the store holds everything through `covered`.
    pub fn after(&self, covered: u64) -> Option<Piece<'a>> {
        let items: Vec<Item<'a>> = self
            .items
            .iter()
            .filter(|item| item.seq > covered)
            .copied()
            .collect();
        (!items.is_empty()).then(|| Piece {
            room_id: self.room_id,
            bytes: items.iter().map(|item| item.data.len()).sum(),
            weight: items.iter().map(weight).sum(),
            items,
        })
    }

    pub fn document(&self) -> Result<Document, StoreError> {
        match self.items.as_slice() {
            [item] => {
                let mut document = entry_document(item)?;
                document.insert("room_id", self.room_id);
                Ok(document)
            }
            items => {
                let entries = items
                    .iter()
                    .map(|item| entry_document(item).map(Bson::Document))
                    .collect::<Result<Vec<Bson>, StoreError>>()?;
                Ok(doc! {
                    "room_id": self.room_id,
                    "seq": to_i64(self.first())?,
                    "last": to_i64(items.last().map_or(0, |item| item.seq))?,
                    "size": self.bytes as i64,
                    "entries": entries,
                })
            }
        }
    }
}

fn entry_document(item: &Item) -> Result<Document, StoreError> {
    let mut document = doc! {
        "seq": to_i64(item.seq)?,
        "data": binary(item.data),
        "at": item.at_ms,
        "size": item.data.len() as i64,
    };
    if let Some(author) = item.author {
        document.insert("author", author);
    }
    if item.snapshot {
        document.insert("snapshot", true);
    }
    Ok(document)
}

/// One stored entry, read from either shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Read {
    pub seq: u64,
    pub at_ms: i64,
    pub size: u64,
    pub author: Option<String>,
    pub snapshot: bool,
    /// `None` when the read left the data out.
    pub data: Option<Bytes>,
}

/// The highest number a stored document holds.
pub(super) fn covered(document: &Document) -> Result<u64, StoreError> {
    if document.contains_key("last") {
        sequence(document, "last")
    } else {
        sequence(document, "seq")
    }
}

/// Filter: documents holding an entry after `seq` (a run may start at or before it).
pub(super) fn holding_after(seq: u64) -> Result<Document, StoreError> {
    let seq = to_i64(seq)?;
    Ok(doc! {"$or": [{"seq": {"$gt": seq}}, {"last": {"$gt": seq}}]})
}

/// Filter: documents all of whose entries are at or below `seq`: what a compaction
/// (or, at one below its floor, the history's pruning) may delete. A run that
/// reaches past it stays until a later one.
pub(super) fn through(seq: i64) -> Document {
    doc! {
        "seq": {"$lte": seq},
        "$or": [{"last": {"$exists": false}}, {"last": {"$lte": seq}}],
    }
}

/// The projection that leaves the updates' data out, for listings.
pub(super) fn without_data() -> Document {
    doc! {
        "_id": 0, "seq": 1, "last": 1, "at": 1, "size": 1, "author": 1, "snapshot": 1,
        "entries.seq": 1, "entries.at": 1, "entries.size": 1, "entries.author": 1,
    }
}

/// Every entry of `documents` (sorted by `seq`) numbered in `after < seq <= through`,
/// in order, each number once. A snapshot kept in the history under the number of
/// an update inside a run stands for that update, as it would have replaced an
/// entry document of that number. `with_data` reads the updates' bytes too.
pub(super) fn unpack(
    documents: &[Document],
    after: u64,
    through: u64,
    with_data: bool,
) -> Result<Vec<Read>, StoreError> {
    let mut read: Vec<Read> = Vec::with_capacity(documents.len());
    let mut push = |entry: &Document| -> Result<(), StoreError> {
        let seq = sequence(entry, "seq")?;
        if seq <= after || seq > through {
            return Ok(());
        }
        let snapshot = entry.get_bool("snapshot").unwrap_or(false);
        let slot = match read.last() {
            Some(last) if last.seq >= seq => match read.binary_search_by_key(&seq, |read| read.seq)
            {
                Ok(index) if snapshot => index,
                _ => return Ok(()),
            },
            _ => read.len(),
        };
        let entry = Read {
            seq,
            at_ms: entry.get_i64("at").unwrap_or(0),
            size: entry.get_i64("size").map_or(0, |size| size.max(0) as u64),
            author: entry.get_str("author").ok().map(str::to_owned),
            snapshot,
            data: if with_data {
                Some(bytes_field(entry, "data")?)
            } else {
                None
            },
        };
        if slot == read.len() {
            read.push(entry);
        } else {
            read[slot] = entry;
        }
        Ok(())
    };
    for document in documents {
        match document.get("entries") {
            None => push(document)?,
            Some(Bson::Array(entries)) => {
                for entry in entries {
                    match entry {
                        Bson::Document(entry) => push(entry)?,
                        _ => {
                            return Err(StoreError::Corrupt(format!(
                                "a run holds something other than entries in {}",
                                describe(document)
                            )))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "entries is not a list in {}",
                    describe(document)
                )))
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, data: &[u8]) -> Item<'_> {
        Item {
            seq,
            data,
            at_ms: seq as i64 * 10,
            author: Some("ann"),
            snapshot: false,
        }
    }

    fn seqs(piece: &Piece) -> Vec<u64> {
        piece.items.iter().map(|item| item.seq).collect()
    }

    #[test]
    fn consecutive_entries_of_a_room_become_one_run_and_rooms_stay_apart() {
        let data = [1u8, 2, 3];
        let pieces = pack([
            ("a", item(1, &data)),
            ("b", item(7, &data)),
            ("a", item(2, &data)),
            ("a", item(3, &data)),
            ("b", item(8, &data)),
            ("a", item(5, &data)),
        ]);
        let shapes: Vec<(&str, Vec<u64>)> = pieces
            .iter()
            .map(|piece| (piece.room_id(), seqs(piece)))
            .collect();
        assert_eq!(
            shapes,
            [("a", vec![1, 2, 3]), ("b", vec![7, 8]), ("a", vec![5])]
        );
    }

    #[test]
    fn a_snapshot_is_never_part_of_a_run() {
        let data = [0u8];
        let mut snapshot = item(2, &data);
        snapshot.snapshot = true;
        let pieces = pack([
            ("a", item(1, &data)),
            ("a", snapshot),
            ("a", item(3, &data)),
        ]);
        assert_eq!(pieces.len(), 3);
        let document = pieces[1].document().unwrap();
        assert_eq!(document.get_bool("snapshot"), Ok(true));
        assert!(!document.contains_key("entries"));
    }

    #[test]
    fn runs_stop_at_their_size_bounds() {
        let big = vec![0u8; RUN_BYTES / 2 + 1];
        let pieces = pack((1..=3).map(|seq| ("a", item(seq, &big))));
        assert_eq!(
            pieces.len(),
            3,
            "two halves and a byte do not fit in one run"
        );
        let small = [0u8];
        let pieces = pack((1..=RUN_ENTRIES as u64 + 1).map(|seq| ("a", item(seq, &small))));
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1].first(), RUN_ENTRIES as u64 + 1);
        // Authors count: a user's long name on every keystroke must not take a run
        // of small updates past what MongoDB stores in one document.
        let name = "n".repeat(32_000);
        let named = (1..=600).map(|seq| {
            (
                "a",
                Item {
                    author: Some(&name),
                    ..item(seq, &small)
                },
            )
        });
        let pieces = pack(named);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            let document = piece.document().unwrap();
            let stored = mongodb::bson::to_vec(&document).unwrap().len();
            assert!(stored < 2 * RUN_BYTES, "{stored} bytes in one document");
        }
    }

    #[test]
    fn a_run_reads_back_as_its_entries_and_overlaps_are_read_once() {
        let data = [9u8, 9];
        let run = pack((1..=4).map(|seq| ("a", item(seq, &data))));
        let run = run[0].document().unwrap();
        assert_eq!(run.get_i64("seq"), Ok(1));
        assert_eq!(run.get_i64("last"), Ok(4));
        assert_eq!(covered(&run).unwrap(), 4);
        // An entry doubled by a writer that slipped past the key, and a later run
        // overlapping the first.
        let single = pack([("a", item(3, &data))])[0].document().unwrap();
        assert_eq!(covered(&single).unwrap(), 3);
        let later = pack((4..=6).map(|seq| ("a", item(seq, &data))))[0]
            .document()
            .unwrap();
        let read = unpack(&[run, single, later], 1, 5, true).unwrap();
        let numbers: Vec<u64> = read.iter().map(|entry| entry.seq).collect();
        assert_eq!(numbers, [2, 3, 4, 5]);
        assert_eq!(read[0].author.as_deref(), Some("ann"));
        assert_eq!(read[0].at_ms, 20);
        assert_eq!(read[0].size, 2);
        assert_eq!(read[0].data.as_deref(), Some(&data[..]));
    }

    #[test]
    fn a_snapshot_kept_inside_a_run_stands_for_its_update() {
        let data = [1u8];
        let run = pack((1..=4).map(|seq| ("a", item(seq, &data))))[0]
            .document()
            .unwrap();
        let mut snapshot = item(2, b"state");
        snapshot.snapshot = true;
        let snapshot = pack([("a", snapshot)])[0].document().unwrap();
        let read = unpack(&[run, snapshot], 0, u64::MAX, true).unwrap();
        let kinds: Vec<(u64, bool)> = read
            .iter()
            .map(|entry| (entry.seq, entry.snapshot))
            .collect();
        assert_eq!(kinds, [(1, false), (2, true), (3, false), (4, false)]);
        assert_eq!(read[1].data.as_deref(), Some(&b"state"[..]));
    }

    #[test]
    fn what_is_left_after_a_stored_run_is_the_tail() {
        let data = [0u8];
        let pieces = pack((10..=15).map(|seq| ("a", item(seq, &data))));
        let rest = pieces[0].after(12).unwrap();
        assert_eq!(seqs(&rest), [13, 14, 15]);
        assert!(pieces[0].after(15).is_none());
    }
}
