//! One simulated editor's Yjs document: makes real edits with `yrs`, applies what
//! the others send, and says which of the others' keystrokes each received update
//! brought in.
//!
//! Identifying a keystroke needs no change to the protocol: every bench editor's
//! document has a known Yjs client id (its sender index plus one), and every edit
//! inserts exactly one ASCII character, so the Yjs clock of an editor's n-th edit
//! is n. When applying an update integrates another editor's items with clocks
//! `a..b`, its edits `a..b` have just arrived — whether the server sent a delta, a
//! relay forwarded a full state, or a `sync` carried them.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

use crate::server::document::TEXT_NAME;

/// Yjs client id of sender index 0; id 0 is avoided because it is easy to mistake
/// for "unset" when reading a state vector by eye.
const CLIENT_ID_OFFSET: u64 = 1;
/// Percent of edits that first move the cursor to a random place, like a click.
const JUMP_PERCENT: u32 = 5;
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
    cursor: u32,
    next_seq: u32,
    rng: fastrand::Rng,
}

impl Editor {
    /// The editor of sender `sender`, with its own random stream.
    pub fn new(sender: usize, seed: u64) -> Self {
        let client_id = sender as u64 + CLIENT_ID_OFFSET;
        let doc = Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text(TEXT_NAME);
        Self {
            doc,
            text,
            client_id,
            cursor: 0,
            next_seq: 0,
            rng: fastrand::Rng::with_seed(seed ^ client_id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// Sequence number the next edit will have (= edits made so far).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Types one character at the cursor, sometimes after a click elsewhere or a
    /// backspace.
    pub fn edit(&mut self) -> Edit {
        let seq = self.next_seq;
        let mut txn = self.doc.transact_mut();
        let len = self.text.len(&txn);
        let roll = self.rng.u32(0..100);
        // Remote inserts move text under a plain-integer cursor; clamp rather than
        // track, since where exactly the cursor lands does not matter here.
        if roll < JUMP_PERCENT || self.cursor > len {
            self.cursor = self.rng.u32(0..=len);
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

    /// Applies a received v1 update and reports whose edits it brought in.
    pub fn apply_remote(
        &mut self,
        update: &[u8],
        mut arrived: impl FnMut(Arrived),
    ) -> Result<(), EditorError> {
        let decoded = catch_unwind(|| Update::decode_v1(update))
            .map_err(|_| EditorError::Panicked)?
            .map_err(|error| EditorError::Undecodable(error.to_string()))?;
        let doc = &self.doc;
        let own = self.client_id;
        catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            txn.apply_update(decoded)
                .map_err(|error| EditorError::Unapplicable(error.to_string()))?;
            // Exactly the items integrated by this transaction, per client: cheaper
            // than comparing state vectors (which walks every client of the
            // document twice), and right even when the update completes an earlier
            // one that was waiting for a missing dependency.
            for (client, ranges) in txn.insert_set().iter() {
                let client = client.get();
                if client == own || client < CLIENT_ID_OFFSET {
                    continue;
                }
                for range in ranges.iter() {
                    arrived(Arrived {
                        sender: (client - CLIENT_ID_OFFSET) as usize,
                        first: range.start,
                        end: range.end,
                    });
                }
            }
            Ok(())
        }))
        .map_err(|_| EditorError::Panicked)?
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Hash and length of the text, to compare editors without keeping their texts.
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
        editor
            .apply_remote(update, |arrived| seen.push(arrived))
            .unwrap();
        seen
    }

    #[test]
    fn every_incremental_edit_is_recognised_by_sender_and_sequence() {
        let mut alice = Editor::new(0, 7);
        let mut bob = Editor::new(1, 7);
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
        assert_eq!(alice.text(), bob.text());
        // Corrections happened, so deletions travelled too.
        assert!(alice.text().len() < 200, "{}", alice.text().len());
    }

    #[test]
    fn a_full_state_reports_only_what_is_new() {
        let mut alice = Editor::new(0, 1);
        let mut carol = Editor::new(2, 1);
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
        let mut editors: Vec<Editor> = (0..3).map(|sender| Editor::new(sender, 3)).collect();
        let mut seen = [0u32; 3];
        for round in 0..50 {
            let updates: Vec<Vec<u8>> = editors.iter_mut().map(|e| e.edit().update).collect();
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
        assert_eq!(editors[0].fingerprint(), editors[1].fingerprint());
        assert_eq!(editors[1].fingerprint(), editors[2].fingerprint());
    }

    #[test]
    fn an_edit_waiting_for_an_earlier_one_arrives_with_it() {
        let mut alice = Editor::new(0, 5);
        let mut bob = Editor::new(1, 5);
        let first = alice.edit();
        let second = alice.edit();
        assert!(collect(&mut bob, &second.update).is_empty());
        let both: u32 = collect(&mut bob, &first.update)
            .iter()
            .inspect(|arrived| assert_eq!(arrived.sender, 0))
            .map(|arrived| arrived.end - arrived.first)
            .sum();
        assert_eq!(both, 2);
        assert_eq!(alice.text(), bob.text());
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut alice = Editor::new(0, 1);
        assert!(alice.apply_remote(&[0xff, 0xff, 0xff], |_| {}).is_err());
    }
}
