//! One simulated editor's Yjs document: makes real edits with `yrs`, applies what
//! the others send, and says which of the others' keystrokes each received update
//! brought in.
//!
//! Identifying a keystroke needs no change to the protocol: every bench editor's
//! document has a known Yjs client id (the run's base plus its sender index), and
//! every edit inserts exactly one ASCII character, so the Yjs clock of an editor's
//! n-th edit is n. When a received update carries another editor's items with
//! clocks `a..b` that were not there yet (and follow the ones that were, as Yjs
//! requires before it integrates them), its edits `a..b` have just arrived —
//! whether the server sent a delta, a relay forwarded a full state, or a `sync`
//! carried them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

use crate::server::document::TEXT_NAME;

/// The run's Yjs client ids start at a base drawn from its seed, below this many.
/// A room kept from an earlier run (`--room-prefix`) already holds that run's ids
/// with their clocks, and an editor reusing one would type at those clocks, not
/// at its sequence numbers: none of its keystrokes would be recognised. 2^30 keeps
/// ids inside Yjs' 32-bit client ids with room for any number of clients.
const CLIENT_ID_BASES: u64 = 1 << 30;
/// Percent of edits that first move the cursor to a random place, like a click.
const JUMP_PERCENT: u32 = 5;
/// Clicks land in the first this many characters. yrs finds a text index by
/// walking the document's items from the start, so typing anywhere in a long
/// document would make each local keystroke cost the bench more the longer the
/// run (a quarter of its CPU at 8,000 keystrokes/s after 10 s). Where the
/// keystroke lands does not change the server's work: it integrates by item id.
const CLICK_RANGE: u32 = 64;
/// Percent of edits that first delete the character before the cursor (a typo
/// corrected), so deletions travel too. They still insert one character, which is
/// what keeps "clock n is edit n" true.
const CORRECTION_PERCENT: u32 = 10;
const TYPED: &[u8] = b"etaoinshrdlucmfwypvbgkjqxz     ";

/// One keystroke, as made locally.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The editor's sequence number for this edit (its Yjs clock).
    pub seq: u32,
    /// The v1 update holding exactly this edit.
    pub update: Vec<u8>,
    /// Cursor position after the edit, for the `cursor` message.
    pub cursor: u32,
}

/// Another editor's keystrokes that an update brought in: edits `first..end` of
/// sender `sender`. Senders that are not bench editors are not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub sender: usize,
    pub first: u32,
    pub end: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditorError {
    #[error("received update does not decode: {0}")]
    Undecodable(String),
    #[error("received update does not apply: {0}")]
    Unapplicable(String),
    #[error("received update crashed the decoder")]
    Panicked,
}

pub struct Editor {
    doc: Doc,
    text: TextRef,
    client_id: u64,
    /// Client ids of this run's senders, sender 0's first.
    senders: std::ops::Range<u64>,
    cursor: u32,
    next_seq: u32,
    rng: fastrand::Rng,
    /// Received, not yet integrated: ranges of `pending_bytes` and when each
    /// arrived. Kept encoded in one buffer: a decoded `Update` may hold shared
    /// types, which cannot move between the bench's threads, and one buffer is one
    /// allocation for the whole batch.
    pending: Vec<(std::ops::Range<usize>, u64)>,
    pending_bytes: Vec<u8>,
    /// How far each other sender's keystrokes have arrived.
    progress: HashMap<usize, Progress>,
}

/// How far one sender's keystrokes have arrived: all of `..known`, and ranges
/// beyond a gap that count only once the gap is filled — as in a Yjs document,
/// where an item waits until the same client's earlier items are there.
#[derive(Debug, Default)]
struct Progress {
    known: u32,
    ahead: Vec<(u32, u32)>,
}

impl Progress {
    /// Takes in keystrokes `start..end` and reports the ranges that arrived.
    fn add(&mut self, start: u32, end: u32, mut arrived: impl FnMut(u32, u32)) {
        if end <= self.known {
            return;
        }
        if start > self.known {
            self.ahead.push((start, end));
            return;
        }
        arrived(self.known, end);
        self.known = end;
        while let Some(index) = self
            .ahead
            .iter()
            .position(|&(start, _)| start <= self.known)
        {
            let (_, end) = self.ahead.swap_remove(index);
            if end > self.known {
                arrived(self.known, end);
                self.known = end;
            }
        }
    }
}

impl Editor {
    /// The editor of sender `sender` of `senders` in the run with `seed`, with its
    /// own random stream.
    pub fn new(sender: usize, senders: usize, seed: u64) -> Self {
        let base = client_id_base(seed);
        let client_id = base + sender as u64;
        let doc = Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text(TEXT_NAME);
        Self {
            doc,
            text,
            client_id,
            senders: base..base + senders as u64,
            cursor: 0,
            next_seq: 0,
            rng: fastrand::Rng::with_seed(seed ^ client_id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            pending: Vec::new(),
            pending_bytes: Vec::new(),
            progress: HashMap::new(),
        }
    }

    /// Sequence number the next edit will have (= edits made so far).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Types one character at the cursor, sometimes after a click elsewhere or a
    /// backspace. Call [`Editor::catch_up`] first to type into the others' text.
    pub fn edit(&mut self) -> Edit {
        let seq = self.next_seq;
        let mut txn = self.doc.transact_mut();
        let len = self.text.len(&txn);
        let roll = self.rng.u32(0..100);
        // Remote inserts move text under a plain-integer cursor; clamp rather than
        // track, since where exactly the cursor lands does not matter here.
        if roll < JUMP_PERCENT || self.cursor > len {
            self.cursor = self.rng.u32(0..=len.min(CLICK_RANGE));
        }
        if roll >= 100 - CORRECTION_PERCENT && self.cursor > 0 {
            self.text.remove_range(&mut txn, self.cursor - 1, 1);
            self.cursor -= 1;
        }
        let typed = TYPED[self.rng.usize(0..TYPED.len())];
        let typed = [typed];
        // TYPED is ASCII, so this is always valid UTF-8 of length one.
        let typed = std::str::from_utf8(&typed).unwrap_or(" ");
        self.text.insert(&mut txn, self.cursor, typed);
        self.cursor += 1;
        let update = txn.encode_update_v1();
        drop(txn);
        self.next_seq += 1;
        Edit {
            seq,
            update,
            cursor: self.cursor,
        }
    }

    /// The whole document as one v1 update, as the original page sends on every
    /// keystroke (`Y.encodeStateAsUpdate(doc)`).
    pub fn full_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Keeps a v1 update received at `at` (a caller-chosen timestamp) until the
    /// next [`Editor::catch_up`].
    ///
    /// Receiving only copies bytes: a receiver hears from every other editor of its
    /// room between two of its own keystrokes, and decoding and integrating them
    /// together, in one transaction, is what keeps the bench's CPU per delivery
    /// near the server's rather than above it.
    pub fn receive(&mut self, update: &[u8], at: u64) {
        let start = self.pending_bytes.len();
        self.pending_bytes.extend_from_slice(update);
        self.pending.push((start..self.pending_bytes.len(), at));
    }

    /// Integrates everything received since the last call, so the next edit is
    /// typed into (and a full state carries) the text as the others left it, and
    /// reports whose keystrokes each update brought in, with the time it was
    /// received. An update that does not decode or apply is skipped and reported
    /// as the error (the last one, if several failed); the others still count.
    pub fn catch_up(&mut self, mut arrived: impl FnMut(Arrived, u64)) -> Result<(), EditorError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let bytes = std::mem::take(&mut self.pending_bytes);
        let own = self.client_id;
        let senders = self.senders.clone();
        let doc = &self.doc;
        let progress = &mut self.progress;
        let mut failure = None;
        let integrated = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            for (range, at) in &pending {
                let update = match catch_unwind(|| Update::decode_v1(&bytes[range.clone()])) {
                    Ok(Ok(update)) => update,
                    Ok(Err(error)) => {
                        failure = Some(EditorError::Undecodable(error.to_string()));
                        continue;
                    }
                    Err(_) => {
                        failure = Some(EditorError::Panicked);
                        continue;
                    }
                };
                for (client, ranges) in update.insertions(true).iter() {
                    let client = client.get();
                    if client == own || !senders.contains(&client) {
                        continue;
                    }
                    let sender = (client - senders.start) as usize;
                    let progress = progress.entry(sender).or_default();
                    for range in ranges.iter() {
                        progress.add(range.start, range.end, |first, end| {
                            arrived(Arrived { sender, first, end }, *at)
                        });
                    }
                }
                if let Err(error) = txn.apply_update(update) {
                    failure = Some(EditorError::Unapplicable(error.to_string()));
                }
            }
        }));
        // Keep the allocations for the next batch.
        self.pending = pending;
        self.pending.clear();
        self.pending_bytes = bytes;
        self.pending_bytes.clear();
        integrated.map_err(|_| EditorError::Panicked)?;
        failure.map_or(Ok(()), Err)
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Hash and length of the text, to compare editors without keeping their
    /// texts. Call [`Editor::catch_up`] first.
    pub fn fingerprint(&self) -> TextFingerprint {
        let text = self.text();
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        TextFingerprint {
            hash: hasher.finish(),
            len: text.len(),
        }
    }
}

/// Client id of sender 0 for a run with `seed`: hashed, so that runs with nearby
/// seeds do not share ids, and never 0, which is easy to mistake for "unset" when
/// reading a state vector by eye.
fn client_id_base(seed: u64) -> u64 {
    1 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 34) % CLIENT_ID_BASES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFingerprint {
    pub hash: u64,
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(editor: &mut Editor, update: &[u8]) -> Vec<Arrived> {
        let mut seen = Vec::new();
        editor.receive(update, 7);
        editor
            .catch_up(|arrived, at| {
                assert_eq!(at, 7);
                seen.push(arrived)
            })
            .unwrap();
        seen
    }

    fn text(editor: &mut Editor) -> String {
        editor.catch_up(|_, _| {}).unwrap();
        editor.text()
    }

    #[test]
    fn every_incremental_edit_is_recognised_by_sender_and_sequence() {
        let mut alice = Editor::new(0, 3, 7);
        let mut bob = Editor::new(1, 3, 7);
        for seq in 0..200 {
            let edit = alice.edit();
            assert_eq!(edit.seq, seq);
            assert_eq!(
                collect(&mut bob, &edit.update),
                vec![Arrived {
                    sender: 0,
                    first: seq,
                    end: seq + 1
                }]
            );
        }
        assert_eq!(alice.text(), text(&mut bob));
        // Corrections happened, so deletions travelled too.
        assert!(alice.text().len() < 200, "{}", alice.text().len());
    }

    #[test]
    fn a_full_state_reports_only_what_is_new() {
        let mut alice = Editor::new(0, 3, 1);
        let mut carol = Editor::new(2, 3, 1);
        for _ in 0..3 {
            let edit = alice.edit();
            collect(&mut carol, &edit.update);
        }
        for _ in 0..4 {
            alice.edit();
        }
        assert_eq!(
            collect(&mut carol, &alice.full_state()),
            vec![Arrived {
                sender: 0,
                first: 3,
                end: 7
            }]
        );
        assert!(collect(&mut carol, &alice.full_state()).is_empty());
    }

    #[test]
    fn concurrent_editors_converge_and_see_each_other() {
        let mut editors: Vec<Editor> = (0..3).map(|sender| Editor::new(sender, 3, 3)).collect();
        let mut seen = [0u32; 3];
        for round in 0..50 {
            let updates: Vec<Vec<u8>> = editors
                .iter_mut()
                .map(|editor| {
                    editor.catch_up(|_, _| {}).unwrap();
                    editor.edit().update
                })
                .collect();
            for (receiver, editor) in editors.iter_mut().enumerate() {
                for (sender, update) in updates.iter().enumerate() {
                    if sender != receiver {
                        for arrived in collect(editor, update) {
                            assert_eq!(arrived.sender, sender);
                            assert_eq!(arrived.first, round);
                            seen[receiver] += arrived.end - arrived.first;
                        }
                    }
                }
            }
        }
        assert_eq!(seen, [100, 100, 100]);
        let fingerprints: Vec<TextFingerprint> = editors
            .iter_mut()
            .map(|editor| {
                editor.catch_up(|_, _| {}).unwrap();
                editor.fingerprint()
            })
            .collect();
        assert_eq!(fingerprints[0], fingerprints[1]);
        assert_eq!(fingerprints[1], fingerprints[2]);
        assert_eq!(fingerprints[0].len, text(&mut editors[0]).len());
    }

    #[test]
    fn an_edit_waiting_for_an_earlier_one_arrives_with_it() {
        let mut alice = Editor::new(0, 3, 5);
        let mut bob = Editor::new(1, 3, 5);
        let first = alice.edit();
        let second = alice.edit();
        assert!(collect(&mut bob, &second.update).is_empty());
        let both: u32 = collect(&mut bob, &first.update)
            .iter()
            .inspect(|arrived| assert_eq!(arrived.sender, 0))
            .map(|arrived| arrived.end - arrived.first)
            .sum();
        assert_eq!(both, 2);
        assert_eq!(alice.text(), text(&mut bob));
    }

    #[test]
    fn a_caught_up_full_state_carries_everyone_s_text() {
        let mut alice = Editor::new(0, 3, 2);
        let mut bob = Editor::new(1, 3, 2);
        let mut carol = Editor::new(2, 3, 2);
        for _ in 0..5 {
            collect(&mut bob, &alice.edit().update);
        }
        bob.catch_up(|_, _| {}).unwrap();
        bob.edit();
        let arrived = collect(&mut carol, &bob.full_state());
        assert_eq!(arrived.len(), 2, "{arrived:?}");
        assert!(arrived.contains(&Arrived {
            sender: 0,
            first: 0,
            end: 5
        }));
        assert!(arrived.contains(&Arrived {
            sender: 1,
            first: 0,
            end: 1
        }));
        assert_eq!(text(&mut carol), bob.text());
    }

    #[test]
    fn keystrokes_after_a_gap_count_when_the_gap_is_filled() {
        let mut progress = Progress::default();
        let mut seen = Vec::new();
        progress.add(0, 2, |first, end| seen.push((first, end)));
        progress.add(3, 4, |first, end| seen.push((first, end)));
        progress.add(5, 6, |first, end| seen.push((first, end)));
        assert_eq!(seen, vec![(0, 2)]);
        progress.add(2, 3, |first, end| seen.push((first, end)));
        assert_eq!(seen, vec![(0, 2), (2, 3), (3, 4)]);
        progress.add(0, 6, |first, end| seen.push((first, end)));
        assert_eq!(seen, vec![(0, 2), (2, 3), (3, 4), (4, 6)]);
    }

    #[test]
    fn keystrokes_count_in_a_room_an_earlier_run_typed_into() {
        // An earlier run (another seed) left its keystrokes in the room.
        let mut earlier: Vec<Editor> = (0..2).map(|sender| Editor::new(sender, 3, 1)).collect();
        let mut history = Vec::new();
        for _ in 0..5 {
            for editor in &mut earlier {
                history.push(editor.edit().update);
            }
        }
        let mut alice = Editor::new(0, 3, 2);
        let mut bob = Editor::new(1, 3, 2);
        for update in &history {
            alice.receive(update, 0);
            bob.receive(update, 0);
        }
        // The earlier run's senders are strangers to this one.
        alice.catch_up(|arrived, _| panic!("{arrived:?}")).unwrap();
        bob.catch_up(|arrived, _| panic!("{arrived:?}")).unwrap();

        let first = alice.edit();
        assert_eq!(first.seq, 0);
        assert_eq!(
            collect(&mut bob, &first.update),
            [Arrived {
                sender: 0,
                first: 0,
                end: 1
            }]
        );
        assert_eq!(
            collect(&mut bob, &alice.full_state()),
            [],
            "nothing new the second time"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut alice = Editor::new(0, 3, 1);
        let mut bob = Editor::new(1, 3, 1);
        let edit = bob.edit();
        alice.receive(&[0xff, 0xff, 0xff], 1);
        alice.receive(&edit.update, 2);
        let mut seen = Vec::new();
        let caught_up = alice.catch_up(|arrived, at| seen.push((arrived, at)));
        assert!(matches!(caught_up, Err(EditorError::Undecodable(_))));
        // What came after the garbage still counts and applies.
        assert_eq!(
            seen,
            vec![(
                Arrived {
                    sender: 1,
                    first: 0,
                    end: 1
                },
                2
            )]
        );
        assert_eq!(alice.text(), bob.text());
        assert!(alice.catch_up(|_, _| {}).is_ok());
    }
}
