//! The room's CRDT document: a `yrs::Doc` that merges every update it is given and
//! reports exactly what each update added, so the room can broadcast only that.
//!
//! No sockets, no locks, no clocks: plain bytes in, plain bytes out, so the merge and
//! delta logic is testable (and benchmarkable) on its own.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use super::known::{self, AppliedDeletions, Examined, Walked};

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
    /// The update continues edits of `client` the room never received (an earlier
    /// update was refused or dropped); merged, it would show text no one else gets.
    #[error(
        "update refused: it follows edits of client {client} this room does not have; \
         send the whole document state"
    )]
    MissingEdits { client: u64 },
    #[error("update refused: the document would exceed its limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The store refuses this room's writes for good; the room is read-only.
    #[error("update refused: this room cannot be saved ({0}), so it is read-only")]
    Unstorable(String),
}

/// At most how many bytes applying `decoded` (`len` bytes encoded) adds to the
/// document's full encoding. Not just `len`: where an update inserts into or
/// deletes part of an existing item, that item is split in two, and each new
/// piece is encoded with its own origins. A delete set spends 2–4 bytes on a
/// range that can cost a few tens: one update deleting every other character of
/// a text grew the encoding by four times its length and past the room's limit.
fn growth_bound(len: usize, decoded: &Update) -> usize {
    /// A split piece's header and two origin ids (client and clock varints), twice.
    const SPLITS_PER_RANGE: usize = 2 * 32;
    let ranges: usize = decoded
        .delete_set()
        .iter()
        .map(|(_, ranges)| ranges.len())
        .sum();
    len.saturating_mul(2)
        .saturating_add(ranges.saturating_mul(SPLITS_PER_RANGE))
}

/// Decodes an update's hex. faster-hex refuses odd lengths and non-hex digits as
/// `hex` does, and decodes the multi-kilobyte full states the original page sends
/// on every keystroke an order of magnitude faster (BENCHMARKS.md, finding 2);
/// since 1.0 it checks and decodes in one pass.
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, DocumentError> {
    decode_hex_bytes(hex.as_bytes())
}

/// `decode_hex` of bytes not known to be UTF-8: anything but hex digits is refused.
pub fn decode_hex_bytes(hex: &[u8]) -> Result<Vec<u8>, DocumentError> {
    faster_hex::hex_decode_vec(hex).map_err(|_| DocumentError::InvalidHex)
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

/// Deltas may pile up after the last full encoding until they pass this fraction
/// of it; then the document is encoded again. That bounds both the memory the
/// deltas hold and how far the size estimate can be off, at the cost of one
/// encoding per eighth of the document's size in updates: a constant cost per
/// byte of update.
const FOLD_FRACTION: usize = 8;
/// ...or until they pass this many bytes, whichever is more. Without it a small
/// document was encoded after almost every update: in rooms of 4 typing small
/// texts that was ~5% of the server's CPU. Listings still get a small document's
/// exact size (`listed_size`).
const FOLD_AT_LEAST: usize = 8 * 1024;

/// A Yjs document, its last full-state encoding, and the deltas applied since.
///
/// The encoding plus the deltas is always exactly the document, without encoding
/// it: that is what a refused or panicking update is undone to, and what a large
/// document's size in metrics and listings is read from (the encoding's length
/// plus the deltas', within an eighth of it), so no large document is encoded per
/// poll (`listed_size`).
/// The original browser client sends the whole state on every keystroke and every
/// joiner is sent it, so the encoding is asked for far more often than it changes.
pub struct Document {
    doc: Doc,
    /// The full state as last encoded.
    base: Bytes,
    /// Deltas applied since `base`, in order.
    since: Vec<Bytes>,
    since_bytes: usize,
    /// How much the encoding may have grown since `base`, at most (`growth_bound`):
    /// what the limit check counts, where `since_bytes` can fall far short.
    since_growth: usize,
    max_bytes: usize,
    /// Delete-set sections `doc` has applied, so full states need not repeat them.
    applied_deletions: AppliedDeletions,
    /// The last large update read, so the next one's repeated stretches are
    /// stepped over (`known::Walked`).
    walked: Walked,
    /// `doc`'s state vector, kept from each transaction: reading it from yrs walks
    /// every client's blocks, and every update needs it (`known::examine`).
    state: StateVector,
    /// Makes the next apply panic after changing the document, for tests.
    #[cfg(test)]
    panic_after_apply: bool,
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

impl Document {
    pub fn new() -> Self {
        let doc = Doc::new();
        // An empty document still encodes to a valid update (no structs, an empty
        // delete set), which is what a peer asking for everything must get.
        let base = Bytes::from(
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default()),
        );
        Self {
            doc,
            base,
            since: Vec::new(),
            since_bytes: 0,
            since_growth: 0,
            max_bytes: usize::MAX,
            applied_deletions: AppliedDeletions::default(),
            walked: Walked::default(),
            state: StateVector::default(),
            #[cfg(test)]
            panic_after_apply: false,
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
            document.apply_stored(state)?;
        }
        Ok(document)
    }

    /// Hex-decodes and applies an update from the JSON protocol.
    pub fn apply_hex_update(&mut self, hex_update: &str) -> Result<Applied, DocumentError> {
        self.apply_update(&decode_hex(hex_update)?)
    }

    /// Merges a v1-encoded update (a full state or an incremental one).
    ///
    /// The delta is the transaction's own update — new items *and* new deletions. A
    /// state-vector comparison would miss deletions, which do not move the state vector.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<Applied, DocumentError> {
        self.apply(update, true)
    }

    /// `apply_update` for what a store holds (snapshots, log entries, the original
    /// backend's checkpoints): merged even past a gap, as before gaps were refused,
    /// so a room saved with one still opens whole.
    pub fn apply_stored(&mut self, update: &[u8]) -> Result<Applied, DocumentError> {
        self.apply(update, false)
    }

    fn apply(&mut self, update: &[u8], refuse_gaps: bool) -> Result<Applied, DocumentError> {
        // A full state (the original page sends one per keystroke) is mostly what
        // the document holds: only the rest is decoded. The same reading refuses
        // what yrs would merge wrongly (`known`).
        let mut fresh = None;
        let cut = match known::examine(
            update,
            &self.state,
            &self.applied_deletions,
            &mut self.walked,
        ) {
            Examined::Whole => None,
            Examined::Fresh(ends) => {
                fresh = Some(ends);
                None
            }
            Examined::Cut(cut) => Some(cut),
            Examined::Gap { client } if refuse_gaps => {
                return Err(DocumentError::MissingEdits { client })
            }
            Examined::Gap { .. } => None,
        };
        let sent = update;
        // The limit check below keeps measuring the update as sent.
        let whole_len = update.len();
        let update = cut.as_ref().map_or(update, |cut| &cut.update[..]);
        // Decoding is pure: a panic here cannot have touched the document.
        let decoded = catch_unwind(|| Update::decode_v1(update))
            .map_err(|_| DocumentError::Panicked)?
            .map_err(|error| DocumentError::Undecodable(error.to_string()))?;

        // Near the limit the exact size is checked after applying; far from it, the
        // bound proves the update cannot cross it.
        let growth = growth_bound(update.len(), &decoded);
        let near_limit = (self.base.len() + self.since_growth)
            .saturating_add(growth.max(whole_len))
            > self.max_bytes;
        if near_limit {
            // `base` is then exactly the state to go back to.
            self.encoded_state();
        }

        let doc = &self.doc;
        #[cfg(test)]
        let panic_after_apply = std::mem::take(&mut self.panic_after_apply);
        let state = &mut self.state;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = write(doc);
            let settled = |txn: &yrs::TransactionMut| {
                txn.store().pending_update().is_none() && txn.store().pending_ds().is_none()
            };
            // An update all new, merged with nothing waiting before or after it, is
            // exactly what the document gained: relayed as sent, with the state
            // vector moved to its ends. Reading the gain back from yrs walks every
            // client's blocks three times (its state vectors before and after, and
            // the encoding), a third of a keystroke's merge.
            let fresh = fresh.filter(|_| settled(&txn));
            txn.apply_update(decoded)
                .map_err(|error| DocumentError::Unapplicable(error.to_string()))?;
            txn.commit();
            #[cfg(test)]
            if panic_after_apply {
                panic!("panic injected by a test after applying an update");
            }
            if let Some(ends) = fresh.filter(|_| settled(&txn)) {
                for (client, end) in ends {
                    state.set_max(client, end);
                }
                debug_assert_eq!(state, txn.after_state(), "a fresh update's ends");
                return Ok(Some(sent.to_vec()));
            }
            let grew = txn.after_state() != txn.before_state();
            let changed = grew || !txn.delete_set().is_empty();
            if grew {
                state.clone_from(txn.after_state());
            }
            Ok(changed.then(|| txn.encode_update_v1()))
        }));

        if let (Some(cut), Ok(Ok(_))) = (cut, &outcome) {
            self.applied_deletions.remember(cut);
        }
        match outcome {
            Ok(Ok(Some(mut delta))) => {
                // yrs' encoder starts with a buffer far larger than a keystroke's
                // delta, and `since` keeps the delta: without this, 300 rooms of 4
                // held 140 MiB more.
                delta.shrink_to_fit();
                let delta = Bytes::from(delta);
                if near_limit {
                    let encoded = self.encode();
                    if encoded.len() > self.max_bytes {
                        let limit = self.max_bytes;
                        self.restore(&[]);
                        return Err(DocumentError::TooLarge { limit });
                    }
                    self.base = encoded;
                } else {
                    self.since_bytes += delta.len();
                    self.since_growth += growth;
                    self.since.push(delta.clone());
                    if self.since_bytes > (self.base.len() / FOLD_FRACTION).max(FOLD_AT_LEAST) {
                        self.encoded_state();
                    }
                }
                Ok(Applied::Delta(delta))
            }
            Ok(Ok(None)) => Ok(Applied::Nothing),
            Ok(Err(error)) => {
                // yrs validates while integrating, so a refused update may have left a
                // partial transaction behind; rebuild from the last good state.
                self.restore_last_good();
                Err(error)
            }
            Err(_) => {
                self.restore_last_good();
                Err(DocumentError::Panicked)
            }
        }
    }

    /// Rebuilds the document from `base` and the deltas since it: exactly its state
    /// before the update that failed.
    fn restore_last_good(&mut self) {
        let since = std::mem::take(&mut self.since);
        self.since_bytes = 0;
        self.since_growth = 0;
        self.restore(&since);
    }

    /// Replaces the live document with `base` plus `deltas`, keeping the size limit.
    /// Those are states this document had, so they apply; if one did not, what
    /// could be applied is kept and the failure logged.
    fn restore(&mut self, deltas: &[Bytes]) {
        let doc = Doc::new();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            for update in std::iter::once(&self.base).chain(deltas) {
                if update.is_empty() {
                    continue;
                }
                let update = Update::decode_v1(update).map_err(|error| error.to_string())?;
                txn.apply_update(update)
                    .map_err(|error| error.to_string())?;
            }
            Ok::<(), String>(())
        }));
        if !matches!(applied, Ok(Ok(()))) {
            tracing::error!("document could not be fully rebuilt after a failed update");
        }
        self.state = doc.transact().state_vector();
        self.doc = doc;
        // What the old document applied says nothing certain about the new one.
        self.applied_deletions = AppliedDeletions::default();
        self.since.clear();
        self.since_bytes = 0;
        self.since_growth = 0;
        if !deltas.is_empty() {
            self.encoded_state_uncached();
        }
    }

    /// The full state as a v1 update, encoded at most once per change.
    pub fn encoded_state(&mut self) -> Bytes {
        if self.since.is_empty() {
            return self.base.clone();
        }
        self.encoded_state_uncached()
    }

    fn encode(&self) -> Bytes {
        Bytes::from(
            self.doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default()),
        )
    }

    fn encoded_state_uncached(&mut self) -> Bytes {
        let encoded = self.encode();
        self.base = encoded.clone();
        self.since.clear();
        self.since_bytes = 0;
        self.since_growth = 0;
        encoded
    }

    /// The document's state vector (for the y-protocol's sync step 1).
    pub fn state_vector(&self) -> StateVector {
        self.state.clone()
    }

    /// Everything the document has that a peer with `remote` lacks (sync step 2).
    pub fn diff(&mut self, remote: &StateVector) -> Bytes {
        if remote.is_empty() {
            return self.encoded_state();
        }
        Bytes::from(self.doc.transact().encode_state_as_update_v1(remote))
    }

    /// Exact size in bytes of the full-state encoding (encodes if it changed).
    pub fn size(&mut self) -> usize {
        self.encoded_state().len()
    }

    /// Size of the full-state encoding without encoding anything: exact right after
    /// an encoding, otherwise its length plus the deltas' since, at most an eighth
    /// of it or `FOLD_AT_LEAST`.
    pub fn size_estimate(&self) -> usize {
        self.base.len() + self.since_bytes
    }

    /// The size metrics and listings show: exact for a small document (encoding it
    /// is cheap), the estimate for a large one.
    pub fn listed_size(&mut self) -> usize {
        if self.size_estimate() <= FOLD_AT_LEAST * FOLD_FRACTION {
            self.size()
        } else {
            self.size_estimate()
        }
    }

    /// True when the document holds no content at all (nothing to `sync`).
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// The text the original client edits; for tests, logs and the bench's checks.
    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        let txn = self.doc.transact();
        text.get_string(&txn)
    }
}

/// A write transaction on a document only its `Document` touches, so the lock is
/// always free: yrs' blocking acquire would set up a wait-queue listener first,
/// every time (~1% of a cluster node's CPU).
fn write(doc: &Doc) -> yrs::TransactionMut<'_> {
    doc.try_transact_mut()
        .unwrap_or_else(|_| doc.transact_mut())
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
    fn an_all_new_keystroke_is_relayed_as_sent() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        text.insert(&mut alice.transact_mut(), 0, "hello");
        room.apply_update(&full_state(&alice)).unwrap();
        let before = alice.transact().state_vector();
        text.insert(&mut alice.transact_mut(), 5, "!");
        let keystroke = alice.transact().encode_state_as_update_v1(&before);
        assert_eq!(
            room.apply_update(&keystroke).unwrap(),
            Applied::Delta(Bytes::from(keystroke))
        );
        assert_eq!(room.state_vector(), alice.transact().state_vector());
        assert_eq!(room.text(), "hello!");
    }

    #[test]
    fn an_update_waiting_for_another_clients_edit_is_relayed_once_that_arrives() {
        // Bob typed after Alice's "hello", which reached him but not yet the room.
        let (alice, alice_text) = editor(1);
        alice_text.insert(&mut alice.transact_mut(), 0, "hello");
        let (bob, bob_text) = editor(2);
        bob.transact_mut()
            .apply_update(Update::decode_v1(&full_state(&alice)).unwrap())
            .unwrap();
        let before = bob.transact().state_vector();
        bob_text.insert(&mut bob.transact_mut(), 5, "!");
        let bobs = bob.transact().encode_state_as_update_v1(&before);

        let mut room = Document::new();
        // yrs keeps it pending: nothing gained yet, nothing to relay.
        assert_eq!(room.apply_update(&bobs).unwrap(), Applied::Nothing);
        assert_eq!(room.state_vector(), room.doc.transact().state_vector());
        // Alice's edit brings Bob's with it: both are in the delta.
        let Applied::Delta(delta) = room.apply_update(&full_state(&alice)).unwrap() else {
            panic!("alice's edit must produce a delta");
        };
        assert_eq!(room.state_vector(), bob.transact().state_vector());
        let listener = Document::from_state(&delta).unwrap();
        assert_eq!(listener.text(), "hello!");
        assert_eq!(room.text(), "hello!");
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

    /// Deleting every other character splits one item into thousands: the update
    /// is a short delete set, the document's encoding grows by several times its
    /// length. The limit still holds.
    #[test]
    fn deletions_that_split_the_text_cannot_grow_it_past_the_limit() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        room.set_size_limit(30_000);
        text.insert(&mut alice.transact_mut(), 0, &"ab".repeat(4000));
        room.apply_update(&full_state(&alice)).unwrap();
        let before = alice.transact().state_vector();
        {
            let mut txn = alice.transact_mut();
            for index in (0..4000).rev() {
                text.remove_range(&mut txn, index * 2 + 1, 1);
            }
        }
        let update = alice.transact().encode_state_as_update_v1(&before);
        let refused = room.apply_update(&update).is_err();
        let size = room.size();
        assert!(
            size <= 30_000,
            "{size} bytes after an update of {} bytes (refused: {refused})",
            update.len()
        );
        assert!(refused, "an update that would pass the limit was taken");
        assert_eq!(
            room.text(),
            "ab".repeat(4000),
            "the refused update left traces"
        );
    }

    /// Alice types `count` keystrokes, each sent as its own incremental update.
    fn keystrokes(room: &mut Document, alice: &Doc, text: &TextRef, count: u32) {
        for index in 0..count {
            let before = alice.transact().state_vector();
            text.insert(&mut alice.transact_mut(), index, "k");
            let update = alice.transact().encode_state_as_update_v1(&before);
            room.apply_update(&update).unwrap();
        }
    }

    /// An update that applies, then panics inside the transaction: the document has
    /// changed when the panic comes, as in a decoder or integration bug.
    fn panicking_insert(room: &mut Document, alice: &Doc, text: &TextRef) {
        let before = alice.transact().state_vector();
        text.insert(&mut alice.transact_mut(), 0, "never");
        let update = alice.transact().encode_state_as_update_v1(&before);
        room.panic_after_apply = true;
        assert_eq!(room.apply_update(&update), Err(DocumentError::Panicked));
    }

    #[test]
    fn a_panicking_update_leaves_exactly_the_last_good_state_with_deltas_pending() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        text.insert(&mut alice.transact_mut(), 0, &"x".repeat(10_000));
        room.apply_update(&full_state(&alice)).unwrap();
        for index in 0..10 {
            keystrokes_from(&mut room, &alice, &text, 10_000 + index);
        }
        assert!(!room.since.is_empty(), "the deltas are not folded yet");
        let (text_before, vector_before) = (room.text(), room.state_vector());

        let (mallory, mallory_text) = editor(9);
        panicking_insert(&mut room, &mallory, &mallory_text);
        assert_eq!(room.text(), text_before);
        assert_eq!(room.state_vector(), vector_before);
        // The restored document still merges: Alice's next keystroke applies.
        keystrokes_from(&mut room, &alice, &text, 10_010);
        assert_eq!(room.text(), "x".repeat(10_000) + &"k".repeat(11));
    }

    /// One more keystroke at `index`.
    fn keystrokes_from(room: &mut Document, alice: &Doc, text: &TextRef, index: u32) {
        let before = alice.transact().state_vector();
        text.insert(&mut alice.transact_mut(), index, "k");
        let update = alice.transact().encode_state_as_update_v1(&before);
        room.apply_update(&update).unwrap();
    }

    #[test]
    fn a_panicking_update_leaves_exactly_the_last_good_state_with_an_encoding_cached() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        keystrokes(&mut room, &alice, &text, 40);
        let encoded = room.encoded_state();
        assert!(room.since.is_empty());
        let (mallory, mallory_text) = editor(9);
        panicking_insert(&mut room, &mallory, &mallory_text);
        assert_eq!(room.text(), "k".repeat(40));
        assert_eq!(room.encoded_state(), encoded);
    }

    #[test]
    fn the_size_limit_survives_a_panicking_and_a_refused_update() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        room.set_size_limit(2000);
        keystrokes(&mut room, &alice, &text, 20);
        let (mallory, mallory_text) = editor(9);
        panicking_insert(&mut room, &mallory, &mallory_text);
        for attempt in 0..2 {
            mallory_text.insert(&mut mallory.transact_mut(), 0, &"m".repeat(3000));
            assert_eq!(
                room.apply_update(&full_state(&mallory)),
                Err(DocumentError::TooLarge { limit: 2000 }),
                "attempt {attempt}"
            );
            assert_eq!(room.text(), "k".repeat(20));
        }
        keystrokes_from(&mut room, &alice, &text, 20);
        assert_eq!(room.text(), "k".repeat(21));
    }

    #[test]
    fn the_size_estimate_follows_updates_without_encoding() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        text.insert(&mut alice.transact_mut(), 0, &"x".repeat(100_000));
        room.apply_update(&full_state(&alice)).unwrap();
        let mut applied = 1;
        let mut folds = 0;
        for index in 0..3000 {
            let had_deltas = !room.since.is_empty();
            keystrokes_from(&mut room, &alice, &text, 100_000 + index);
            applied += 1;
            if had_deltas && room.since.is_empty() {
                folds += 1;
            }
            let estimate = room.size_estimate();
            let exact = full_state(&alice).len();
            let slack = (exact / FOLD_FRACTION).max(FOLD_AT_LEAST) + 64;
            assert!(
                estimate.abs_diff(exact) <= slack,
                "estimate {estimate}, exact {exact}"
            );
        }
        // An encoding per eighth of the document in updates, not one per update.
        assert!(
            folds * 20 < applied,
            "{folds} encodings for {applied} updates"
        );
    }

    #[test]
    fn a_small_document_is_not_encoded_after_every_update_yet_listed_exactly() {
        let (alice, text) = editor(1);
        let mut room = Document::new();
        let mut encodings = 0;
        for index in 0..300 {
            let had_deltas = !room.since.is_empty();
            keystrokes_from(&mut room, &alice, &text, index);
            if had_deltas && room.since.is_empty() {
                encodings += 1;
            }
        }
        assert!(encodings <= 1, "{encodings} encodings for 300 keystrokes");
        assert!(!room.since.is_empty());
        assert_eq!(room.listed_size(), full_state(&alice).len());
    }

    #[test]
    fn an_empty_document_encodes_to_a_valid_update() {
        let mut room = Document::new();
        assert!(Update::decode_v1(&room.encoded_state()).is_ok());
        assert_eq!(room.size(), room.size_estimate());
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

    /// Editors send what the original page and y-websocket send (full states, and
    /// incremental updates that carry the whole delete set), pasting and deleting
    /// large chunks; a listener that only ever applies the room's deltas must hold
    /// every dependency of what it was sent and end equal to the room.
    #[test]
    fn relayed_deltas_alone_rebuild_the_document() {
        relayed_deltas_rebuild(usize::MAX);
    }

    /// The same with a size limit the pastes keep running into: an editor's later
    /// keystrokes then follow edits the room refused, and must be refused too.
    #[test]
    fn relayed_deltas_alone_rebuild_the_document_when_updates_are_refused() {
        relayed_deltas_rebuild(12_000);
    }

    fn relayed_deltas_rebuild(limit: usize) {
        let mut rng = fastrand::Rng::with_seed(9);
        for round in 0..100 {
            let mut room = Document::new();
            room.set_size_limit(limit);
            let listener = Doc::with_client_id(1);
            let editors: Vec<(Doc, TextRef)> = (0..3).map(|i| editor(10 + i)).collect();
            for _ in 0..60 {
                let (doc, text) = &editors[rng.usize(0..editors.len())];
                let before = doc.transact().state_vector();
                {
                    let mut txn = doc.transact_mut();
                    let len = text.len(&txn);
                    match rng.u8(0..4) {
                        0 if len > 10 => {
                            let at = rng.u32(0..len - 5);
                            text.remove_range(&mut txn, at, rng.u32(1..=(len - at).min(300)));
                        }
                        1 => text.insert(&mut txn, rng.u32(0..=len), &"paste ".repeat(150)),
                        _ => text.insert(&mut txn, rng.u32(0..=len), "k"),
                    }
                }
                let update = if rng.bool() {
                    full_state(doc)
                } else {
                    doc.transact().encode_state_as_update_v1(&before)
                };
                let applied = room.apply_update(&update);
                assert_eq!(
                    room.state_vector(),
                    room.doc.transact().state_vector(),
                    "round {round}: the kept state vector is yrs' own"
                );
                if let Ok(Applied::Delta(delta)) = applied {
                    let mut txn = listener.transact_mut();
                    txn.apply_update(Update::decode_v1(&delta).unwrap())
                        .unwrap();
                    assert!(
                        txn.store().pending_update().is_none(),
                        "round {round}: a delta depends on something never relayed"
                    );
                }
                // Editors hear each other now and then, as over a network.
                if rng.u8(0..3) == 0 {
                    let state = room.encoded_state();
                    let (doc, _) = &editors[rng.usize(0..editors.len())];
                    doc.transact_mut()
                        .apply_update(Update::decode_v1(&state).unwrap())
                        .unwrap();
                }
            }
            let listener_state = listener
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            assert_eq!(
                Document::from_state(&listener_state).unwrap().text(),
                room.text(),
                "round {round}"
            );
        }
    }
}
