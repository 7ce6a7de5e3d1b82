//! The room's CRDT document: a `yrs::Doc` that merges every update it is given and
//! reports exactly what each update added, so the room can broadcast only that.
//!
//! No sockets, no locks, no clocks: plain bytes in, plain bytes out, so the merge and
//! delta logic is testable (and benchmarkable) on its own.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

/// Name of the shared text type the original browser client edits
/// (`doc.getText('content')`).
pub const TEXT_NAME: &str = "content";

/// Why an update was refused. The document is unchanged whenever one is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("update is not valid hex")]
    InvalidHex,
    #[error("update could not be decoded: {0}")]
    Undecodable(String),
    #[error("update could not be applied: {0}")]
    Unapplicable(String),
    #[error("update crashed the decoder and was discarded")]
    Panicked,
    #[error("update refused: the document would exceed its limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The store refuses this room's writes for good; the room is read-only.
    #[error("update refused: this room cannot be saved ({0}), so it is read-only")]
    Unstorable(String),
}

/// What applying one update did to the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The update held nothing the document did not already have.
    Nothing,
    /// The update added items or deletions; this is the v1 encoding of exactly those,
    /// which is what the other members of the room need.
    Delta(Bytes),
}

/// A Yjs document plus a cache of its full-state encoding.
///
/// The original browser client sends the whole document state on every keystroke and
/// every joiner is sent the whole state, so both the encoding and its size are asked
/// for far more often than the document changes; the cache is dropped on change.
pub struct Document {
    doc: Doc,
    encoded: Option<Bytes>,
    /// Bytes of the full-state encoding as of the last encode.
    size: usize,
    /// `size` plus the deltas applied since: an upper bound on the real size that
    /// costs nothing to keep, so the exact size is only computed near the limit.
    estimate: usize,
    max_bytes: usize,
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

impl Document {
    pub fn new() -> Self {
        Self {
            doc: Doc::new(),
            encoded: None,
            size: 0,
            estimate: 0,
            max_bytes: usize::MAX,
        }
    }

    /// Refuse updates that would make the full-state encoding larger than `max_bytes`.
    pub fn set_size_limit(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// A document holding the state encoded in `state` (a v1 update), as written by
    /// the store or by the original backend. An empty slice gives an empty document.
    pub fn from_state(state: &[u8]) -> Result<Self, DocumentError> {
        let mut document = Self::new();
        if !state.is_empty() {
            document.apply_update(state)?;
        }
        Ok(document)
    }

    /// Hex-decodes and applies an update from the JSON protocol.
    pub fn apply_hex_update(&mut self, hex_update: &str) -> Result<Applied, DocumentError> {
        // faster-hex refuses odd lengths and non-hex digits as `hex` does, and
        // decodes the multi-kilobyte full states the original page sends on every
        // keystroke an order of magnitude faster (BENCHMARKS.md, finding 2).
        let mut bytes = vec![0; hex_update.len() / 2];
        faster_hex::hex_decode(hex_update.as_bytes(), &mut bytes)
            .map_err(|_| DocumentError::InvalidHex)?;
        self.apply_update(&bytes)
    }

    /// Merges a v1-encoded update (a full state or an incremental one).
    ///
    /// The delta is the transaction's own update — new items *and* new deletions. A
    /// state-vector comparison would miss deletions, which do not move the state vector.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<Applied, DocumentError> {
        // Decoding is pure: a panic here cannot have touched the document.
        let decoded = catch_unwind(|| Update::decode_v1(update))
            .map_err(|_| DocumentError::Panicked)?
            .map_err(|error| DocumentError::Undecodable(error.to_string()))?;

        // Near the limit, keep the current state so an update that crosses it can be
        // undone; far from it, the estimate proves it cannot.
        let near_limit = self.estimate.saturating_add(update.len()) > self.max_bytes;
        let before = near_limit.then(|| self.encoded_state());

        let doc = &self.doc;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            txn.apply_update(decoded)
                .map_err(|error| DocumentError::Unapplicable(error.to_string()))?;
            txn.commit();
            let changed = !txn.delete_set().is_empty() || txn.after_state() != txn.before_state();
            Ok(changed.then(|| txn.encode_update_v1()))
        }));

        match outcome {
            Ok(Ok(Some(delta))) => {
                self.encoded = None;
                self.estimate = self.estimate.saturating_add(delta.len());
                if let Some(before) = before {
                    if self.size() > self.max_bytes {
                        let limit = self.max_bytes;
                        self.restore_unchecked(&before);
                        return Err(DocumentError::TooLarge { limit });
                    }
                }
                Ok(Applied::Delta(Bytes::from(delta)))
            }
            Ok(Ok(None)) => Ok(Applied::Nothing),
            Ok(Err(error)) => {
                // yrs validates while integrating, so a refused update may have left a
                // partial transaction behind; rebuild from the last good state.
                self.rebuild();
                Err(error)
            }
            Err(_) => {
                self.rebuild();
                Err(DocumentError::Panicked)
            }
        }
    }

    /// Replaces the whole document with `state` (the explicit `load` endpoint: restore
    /// a checkpoint, not merge it).
    pub fn replace(&mut self, state: &[u8]) -> Result<(), DocumentError> {
        let mut replacement = Self::from_state(state)?;
        replacement.max_bytes = self.max_bytes;
        *self = replacement;
        Ok(())
    }

    /// Goes back to `state`, a full state this document had before.
    fn restore_unchecked(&mut self, state: &Bytes) {
        let max_bytes = self.max_bytes;
        self.encoded = Some(state.clone());
        self.rebuild();
        self.max_bytes = max_bytes;
        self.encoded = Some(state.clone());
        self.size = state.len();
        self.estimate = state.len();
    }

    /// The full state as a v1 update, encoded at most once per change.
    pub fn encoded_state(&mut self) -> Bytes {
        if let Some(encoded) = &self.encoded {
            return encoded.clone();
        }
        let encoded = Bytes::from(
            self.doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default()),
        );
        self.size = encoded.len();
        self.estimate = encoded.len();
        self.encoded = Some(encoded.clone());
        encoded
    }

    /// The document's state vector (for the y-protocol's sync step 1).
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// Everything the document has that a peer with `remote` lacks (sync step 2).
    pub fn diff(&mut self, remote: &StateVector) -> Bytes {
        if remote.is_empty() {
            return self.encoded_state();
        }
        Bytes::from(self.doc.transact().encode_state_as_update_v1(remote))
    }

    /// Size in bytes of the full-state encoding.
    pub fn size(&mut self) -> usize {
        if self.encoded.is_none() {
            self.encoded_state();
        }
        self.size
    }

    /// True when the document holds no content at all (nothing to `sync`).
    pub fn is_empty(&self) -> bool {
        self.doc.transact().state_vector().is_empty()
    }

    /// The text the original client edits; for tests, logs and the bench's checks.
    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        let txn = self.doc.transact();
        text.get_string(&txn)
    }

    /// After a failed or panicked apply, start again from the last cached encoding,
    /// or, failing that, from whatever the document can still encode.
    fn rebuild(&mut self) {
        let state = match self.encoded.clone() {
            Some(state) => state.to_vec(),
            None => catch_unwind(AssertUnwindSafe(|| {
                self.doc
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default())
            }))
            .unwrap_or_default(),
        };
        let mut fresh = Self::new();
        if !state.is_empty() {
            let doc = &fresh.doc;
            let restored = catch_unwind(AssertUnwindSafe(|| {
                Update::decode_v1(&state).map(|update| doc.transact_mut().apply_update(update))
            }));
            if !matches!(restored, Ok(Ok(Ok(())))) {
                tracing::error!(
                    "document could not be rebuilt after a failed update; starting empty"
                );
                fresh = Self::new();
            }
        }
        *self = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Text, TextRef};

    fn editor(client_id: u64) -> (Doc, TextRef) {
        let doc = Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text(TEXT_NAME);
        (doc, text)
    }

    fn full_state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn full_state_updates_merge_and_yield_small_deltas() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        text.insert(&mut alice.transact_mut(), 0, &"x".repeat(5000));
        assert!(matches!(
            room.apply_update(&full_state(&alice)).unwrap(),
            Applied::Delta(_)
        ));

        text.insert(&mut alice.transact_mut(), 5000, "!");
        let full = full_state(&alice);
        let Applied::Delta(delta) = room.apply_update(&full).unwrap() else {
            panic!("a new character must produce a delta");
        };
        assert!(
            delta.len() < 64,
            "delta {} bytes for a full state of {}",
            delta.len(),
            full.len()
        );
        assert_eq!(room.text().len(), 5001);
    }

    #[test]
    fn repeated_state_adds_nothing() {
        let (alice, text) = editor(1);
        text.insert(&mut alice.transact_mut(), 0, "hello");
        let mut room = Document::new();
        room.apply_update(&full_state(&alice)).unwrap();
        assert_eq!(
            room.apply_update(&full_state(&alice)).unwrap(),
            Applied::Nothing
        );
    }

    #[test]
    fn deletions_are_deltas_even_though_the_state_vector_does_not_move() {
        let (alice, text) = editor(1);
        text.insert(&mut alice.transact_mut(), 0, "hello");
        let mut room = Document::new();
        room.apply_update(&full_state(&alice)).unwrap();
        // Bob has seen "hello" through the room.
        let (bob, bob_text) = editor(2);
        let hello = room.encoded_state();
        bob.transact_mut()
            .apply_update(Update::decode_v1(&hello).unwrap())
            .unwrap();

        text.remove_range(&mut alice.transact_mut(), 4, 1);
        let Applied::Delta(delta) = room.apply_update(&full_state(&alice)).unwrap() else {
            panic!("a backspace must produce a delta");
        };
        assert_eq!(room.text(), "hell");
        bob.transact_mut()
            .apply_update(Update::decode_v1(&delta).unwrap())
            .unwrap();
        assert_eq!(bob_text.get_string(&bob.transact()), "hell");
    }

    #[test]
    fn an_update_past_the_size_limit_is_refused_and_undone() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        room.set_size_limit(1000);
        text.insert(&mut alice.transact_mut(), 0, &"a".repeat(500));
        room.apply_update(&full_state(&alice)).unwrap();
        text.insert(&mut alice.transact_mut(), 500, &"b".repeat(600));
        assert_eq!(
            room.apply_update(&full_state(&alice)),
            Err(DocumentError::TooLarge { limit: 1000 })
        );
        assert_eq!(room.text(), "a".repeat(500));
        assert!(room.size() <= 1000);
        // Small edits still fit.
        let (bob, bob_text) = editor(2);
        bob.transact_mut()
            .apply_update(Update::decode_v1(&room.encoded_state()).unwrap())
            .unwrap();
        bob_text.insert(&mut bob.transact_mut(), 0, "ok ");
        room.apply_update(&full_state(&bob)).unwrap();
        assert!(room.text().starts_with("ok "));
    }

    #[test]
    fn garbage_is_refused_and_the_document_is_untouched() {
        let (alice, text) = editor(1);
        text.insert(&mut alice.transact_mut(), 0, "keep me");
        let mut room = Document::new();
        room.apply_update(&full_state(&alice)).unwrap();

        for bad in ["zz", "0", "000", "0g", "00 00"] {
            assert_eq!(
                room.apply_hex_update(bad),
                Err(DocumentError::InvalidHex),
                "{bad}"
            );
        }
        // Both cases of hex digits are accepted, as the original backend did.
        let state = full_state(&alice);
        assert!(room.apply_hex_update(&hex::encode_upper(&state)).is_ok());
        assert!(room.apply_update(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(room.apply_update(&[1, 1, 200, 1, 0, 4, 1, 7]).is_err());
        assert_eq!(room.text(), "keep me");

        text.insert(&mut alice.transact_mut(), 7, "!");
        room.apply_update(&full_state(&alice)).unwrap();
        assert_eq!(room.text(), "keep me!");
    }
}
