//! Cuts what a document already has out of a v1 update before anyone decodes it.
//!
//! The original browser page sends its whole document state on every keystroke:
//! in a 1 MB document, a megabyte of structs of which one is new. Decoding all of
//! them into `yrs` blocks (allocating each) only for the merge to find it knew
//! them costs milliseconds. A v1 update is a list of struct runs per client, each
//! struct self-contained (its origins are full ids), so the structs a state vector
//! already covers can be stepped over by reading their lengths alone and the rest
//! copied as they are, in front of the untouched delete set. What comes out is a
//! valid update that merges to exactly what the whole one would have. The same
//! goes for the delete set: a client's deletions that arrive exactly as the
//! document already applied them are left out.
//!
//! Reading the structs' clocks also finds the one update yrs would merge wrongly:
//! a client's struct that starts past what the document holds of that client.
//!
//! Only the content kinds a text document uses are stepped over (strings,
//! deletions, formats, embeds, binaries, nested types); an update holding any other
//! kind, or anything malformed, is left whole, so the full decoder sees it exactly
//! as before and gives the same verdict.

use std::collections::HashMap;
use std::ops::Range;

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::{ClientID, StateVector};

// Struct and content kinds of the v1 encoding (lib0's `UpdateEncoderV1`).
const GC: u8 = 0;
const SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
const CONTENT_DELETED: u8 = 1;
const CONTENT_BINARY: u8 = 3;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_TYPE: u8 = 7;
// Type kinds a nested-type struct may carry; only the XML element has a name after it.
const TYPE_ARRAY: u8 = 0;
const TYPE_XML_ELEMENT: u8 = 3;
const TYPE_XML_TEXT: u8 = 6;
const TYPE_XML_HOOK: u8 = 5;
/// Client ids are 53-bit (JavaScript-safe); a larger one is left to the decoder.
const CLIENT_BITS: u32 = 53;

/// A delete set's sections: each client's id and where its ranges are encoded.
type DeleteSections = Vec<(u64, Range<usize>)>;

/// One client's structs that survive the cut.
struct Run {
    count: u32,
    client: u64,
    clock: u32,
    bytes: Range<usize>,
}

/// Upper bound on the delete-set bytes remembered per document: about what one
/// heavily edited megabyte document's delete set takes. Past it the memory starts
/// over, which only costs the next full state its whole delete set again.
const MAX_REMEMBERED_DELETIONS: usize = 4 * 1024 * 1024;

/// The delete-set sections (one per client) a document has applied, as the bytes
/// they arrived in. Deletions are permanent, so a section that arrives again byte
/// for byte deletes nothing new: the full states of the original page repeat the
/// whole delete set on every keystroke, and applying it again means finding every
/// deleted range among the document's items.
#[derive(Debug, Default)]
pub struct AppliedDeletions {
    by_client: HashMap<u64, Vec<u8>>,
    bytes: usize,
}

impl AppliedDeletions {
    /// Remembers the delete-set sections of `cut`, once the document applied it.
    pub fn remember(&mut self, cut: Cut) {
        for (client, section) in cut.deletions {
            if self.bytes + section.len() > MAX_REMEMBERED_DELETIONS {
                self.by_client.clear();
                self.bytes = 0;
            }
            self.bytes += section.len();
            if let Some(old) = self.by_client.insert(client, section) {
                self.bytes -= old.len();
            }
        }
    }

    fn known(&self, client: u64) -> Option<&[u8]> {
        self.by_client.get(&client).map(Vec::as_slice)
    }
}

/// An update with what the document holds cut out.
#[derive(Debug)]
pub struct Cut {
    /// A valid v1 update.
    pub update: Vec<u8>,
    /// Each client's delete-set section as it arrived, for the document to
    /// remember once applied: every range in it is then applied (those left out
    /// of `update` were applied before).
    deletions: Vec<(u64, Vec<u8>)>,
}

/// What reading an update against a document's state found.
#[derive(Debug)]
pub enum Examined {
    /// Apply the update as it is: every struct is new, or it holds something this
    /// module leaves to the full decoder.
    Whole,
    /// Apply the update as it is, and it is all new: each client's structs start
    /// exactly where the document's end (no gap, nothing known) and the delete set
    /// is none the document applied as it stands. Once merged with nothing left
    /// pending, the update is itself what the document gained, and the document's
    /// state vector moves to these ends (client, clock after its last struct).
    Fresh(Vec<(ClientID, u32)>),
    /// Apply this instead: the update without what the document holds.
    Cut(Cut),
    /// A struct of `client` starts past everything the document and the update
    /// before it hold of that client: edits of its in between never arrived
    /// (refused, or dropped over the rate limit). Yjs would keep it pending;
    /// yrs integrates it without moving the state vector and leaves it out of
    /// the transaction's update, so the others would never get it.
    Gap { client: u64 },
}

/// Reads `update` against the document's state vector `known` and the
/// delete-set sections it already applied: what to apply instead, if anything
/// can be cut, or the gap that makes it unapplicable. `walked` is what the last
/// large update read left behind: stretches of `update` that repeat it byte for
/// byte are stepped over without reading their structs again, and a large update
/// read to the end becomes the next one's `walked`.
///
/// A struct that is only partly known is kept whole; merging starts inside it, as
/// it does for any update that overlaps what a document has.
pub fn examine(
    update: &[u8],
    known: &StateVector,
    deletions: &AppliedDeletions,
    walked: &mut Walked,
) -> Examined {
    let mut walk = Walk::new(update.len() >= REMEMBER_FROM);
    let examined = examine_structs(update, known, deletions, walked, &mut walk);
    walked.structs_read = walk.structs_read;
    if let Some(walk) = walk.finished() {
        walked.remember(update, walk);
    }
    examined.unwrap_or(Examined::Whole)
}

fn examine_structs(
    update: &[u8],
    known: &StateVector,
    deletions: &AppliedDeletions,
    walked: &Walked,
    walk: &mut Walk,
) -> Option<Examined> {
    let mut cursor = Cursor::new(update);
    let clients: u32 = cursor.read_var().ok()?;
    let mut runs = Vec::new();
    let mut cut = false;
    // Whether every struct is new and each client's start where the document ends
    // (`Examined::Fresh`), and where each client's structs end.
    let mut fresh = clients > 0;
    let mut ends = Vec::new();
    for _ in 0..clients {
        let count: u32 = cursor.read_var().ok()?;
        let client = read_client(&mut cursor)?;
        let first_clock: u32 = cursor.read_var().ok()?;
        let body = cursor.next;
        let have = known.get(&ClientID::new(client));
        // A client named twice is never relayed as sent: yrs reads both sections,
        // Yjs keeps only the last, so the others could end up with other content.
        fresh &= count > 0
            && first_clock == have
            && !ends.iter().any(|(seen, _)| *seen == ClientID::new(client));
        // How far this client's clock is covered, by the document or by structs
        // before this one; skips cover nothing.
        let mut reach = have;
        let mut run: Option<Run> = None;
        let mut index = 0;
        let mut clock = first_clock;
        let mut marks = Vec::new();
        let remembered = walked.section(client);
        // The next remembered boundary at or past `clock`, and the last index a jump
        // was tried at (once per boundary).
        let mut ahead = 0;
        let mut tried = None;
        while index < count {
            let start = cursor.next;
            if let Some((section, bytes)) = remembered.filter(|_| tried != Some(index)) {
                tried = Some(index);
                let from = if index == 0 {
                    (section.clock == clock).then_some(Mark {
                        offset: 0,
                        index: 0,
                        clock,
                    })
                } else {
                    while section
                        .marks
                        .get(ahead)
                        .is_some_and(|mark| mark.clock < clock)
                    {
                        ahead += 1;
                    }
                    section
                        .marks
                        .get(ahead)
                        .filter(|mark| mark.clock == clock)
                        .copied()
                };
                let jump = from.and_then(|from| {
                    section.jump(bytes, from, &update[start..], count - index, have)
                });
                if let (Some(from), Some((to, between))) = (from, jump) {
                    fresh = false;
                    // Those structs are the remembered ones, which the document
                    // covers: none starts a run, none is a gap, `reach` stays.
                    if walk.recording {
                        for mark in between {
                            add_mark(
                                &mut marks,
                                Mark {
                                    offset: start - body + (mark.offset - from.offset),
                                    index: index + (mark.index - from.index),
                                    clock: mark.clock,
                                },
                            );
                        }
                    }
                    cursor.next = start + (to.offset - from.offset);
                    index += to.index - from.index;
                    clock = to.clock;
                    continue;
                }
            }
            if walk.recording {
                add_mark(
                    &mut marks,
                    Mark {
                        offset: start - body,
                        index,
                        clock,
                    },
                );
            }
            walk.structs_read += 1;
            let (length, skip) = struct_length(&mut cursor)?;
            fresh &= !skip;
            if length > 0 && !skip {
                if clock > reach {
                    return Some(Examined::Gap { client });
                }
                reach = reach.max(clock.checked_add(length)?);
            }
            if run.is_none() && length > 0 && clock.checked_add(length)? > have {
                cut |= index > 0;
                run = Some(Run {
                    count: count - index,
                    client,
                    clock,
                    bytes: start..start,
                });
            }
            clock = clock.checked_add(length)?;
            index += 1;
        }
        if fresh {
            ends.push((ClientID::new(client), clock));
        }
        if walk.recording {
            let end = Mark {
                offset: cursor.next - body,
                index: count,
                clock,
            };
            if marks.last().is_none_or(|last: &Mark| last.index < count) {
                marks.push(end);
            }
            walk.sections.insert(
                client,
                Section {
                    clock: first_clock,
                    body: body..cursor.next,
                    marks,
                },
            );
        }
        match run {
            Some(mut run) => {
                run.bytes.end = cursor.next;
                runs.push(run);
            }
            None => cut |= count > 0,
        }
    }
    let delete_set = cursor.next;
    let sections = match walked.same_delete_set(&update[delete_set..], delete_set) {
        Some(sections) => sections,
        None => delete_set_sections(&mut cursor)?,
    };
    if walk.recording {
        walk.delete_set = Some((delete_set, sections.clone()));
    }
    // Each section as it goes into the cut: whole, or only the ranges the
    // remembered section lacks; a section remembered byte for byte stays out.
    let mut kept: Vec<(u64, Range<usize>, Option<Vec<u8>>)> = Vec::new();
    for (client, range) in &sections {
        let section = &update[range.clone()];
        match deletions.known(*client) {
            Some(known) if known == section => cut = true,
            Some(known) => match ranges_not_in(section, known) {
                Some(fewer) => {
                    cut = true;
                    kept.push((*client, range.clone(), Some(fewer)));
                }
                None => kept.push((*client, range.clone(), None)),
            },
            None => kept.push((*client, range.clone(), None)),
        }
    }
    if !cut {
        return Some(if fresh {
            Examined::Fresh(ends)
        } else {
            Examined::Whole
        });
    }
    let kept_bytes: usize = runs.iter().map(|run| run.bytes.len() + 24).sum::<usize>()
        + kept
            .iter()
            .map(|(_, range, fewer)| fewer.as_ref().map_or(range.len(), Vec::len))
            .sum::<usize>();
    let mut out = Vec::with_capacity(kept_bytes + 8);
    out.write_var(runs.len() as u32);
    for run in &runs {
        out.write_var(run.count);
        out.write_var(run.client);
        out.write_var(run.clock);
        out.write_all(&update[run.bytes.clone()]);
    }
    out.write_var(kept.len() as u32);
    let mut applied = Vec::with_capacity(kept.len());
    for (client, range, fewer) in kept {
        out.write_all(fewer.as_deref().unwrap_or(&update[range.clone()]));
        applied.push((client, update[range].to_vec()));
    }
    Some(Examined::Cut(Cut {
        update: out,
        deletions: applied,
    }))
}

/// Updates from this size on are remembered for the next one to be read against:
/// the original page's full states of a large document. Below it reading is cheap
/// and the copy would cost more than it saves.
const REMEMBER_FROM: usize = if cfg!(test) { 64 } else { 16 * 1024 };
/// A client's struct boundaries are remembered every this many structs: the most a
/// repeated update walks again before the first byte that changed.
const MARK_EVERY: u32 = if cfg!(test) { 2 } else { 32 };

/// Where a struct of a client's section begins: its offset from the section's
/// first struct, its index and its clock.
#[derive(Debug, Clone, Copy)]
struct Mark {
    offset: usize,
    index: u32,
    clock: u32,
}

/// One client's structs in a remembered update.
#[derive(Debug)]
struct Section {
    /// The clock of its first struct (the section header's).
    clock: u32,
    /// Its structs' bytes in the remembered update.
    body: Range<usize>,
    /// Struct boundaries in increasing order, the section's end last.
    marks: Vec<Mark>,
}

impl Section {
    /// The furthest remembered boundary past `from` up to which `rest` (an update's
    /// bytes from a boundary at `from`'s clock) repeats this section's bytes from
    /// `from`, with every struct before it covered by `have` and no more than
    /// `left` structs in between; and the boundaries passed. Bytes are compared
    /// only up to the furthest boundary that could qualify, so a comparison never
    /// outruns what it lets the reader skip by more than one stretch between
    /// boundaries.
    fn jump(
        &self,
        bytes: &[u8],
        from: Mark,
        rest: &[u8],
        left: u32,
        have: u32,
    ) -> Option<(Mark, &[Mark])> {
        let after = self
            .marks
            .partition_point(|mark| mark.offset <= from.offset);
        let marks = &self.marks[after..];
        let usable =
            marks.partition_point(|mark| mark.clock <= have && mark.index - from.index <= left);
        let furthest = marks[..usable].last()?;
        let limit = (furthest.offset - from.offset).min(rest.len());
        let same = common_prefix(&rest[..limit], &bytes[from.offset..from.offset + limit]);
        let reached = marks[..usable].partition_point(|mark| mark.offset - from.offset <= same);
        let to = *marks[..reached].last()?;
        Some((to, &marks[..reached]))
    }
}

/// Adds a boundary to a section being remembered if it is at least `MARK_EVERY`
/// structs past the last one: enough to resume near any change, few enough that
/// boundaries inherited update after update do not pile up.
fn add_mark(marks: &mut Vec<Mark>, mark: Mark) {
    if marks.last().map_or(mark.index >= MARK_EVERY, |last| {
        mark.index >= last.index + MARK_EVERY
    }) {
        marks.push(mark);
    }
}

/// The last large update a document read and where its struct boundaries fell.
///
/// The original page sends its whole state on every keystroke; two in a row differ
/// in a few bytes (the new characters, a changed section header, the delete set's
/// new ranges). Where the next update's section repeats the remembered one byte
/// for byte up to a boundary, the structs before it are the same structs, at the
/// same clocks, and the document holds them if its state vector covers that
/// boundary's clock: they are stepped over by one comparison instead of read.
/// Nothing here depends on the document's state, so it never goes stale; a
/// comparison that fails only means reading as before.
#[derive(Debug, Default)]
pub struct Walked {
    update: Vec<u8>,
    sections: HashMap<u64, Section>,
    /// Where the delete set starts in `update`, and its sections.
    delete_set: Option<(usize, DeleteSections)>,
    /// Structs read (not stepped over) by the last `examine`.
    structs_read: usize,
}

impl Walked {
    /// Structs the last `examine` read one by one.
    pub fn structs_read(&self) -> usize {
        self.structs_read
    }

    /// `client`'s remembered section and its bytes.
    fn section(&self, client: u64) -> Option<(&Section, &[u8])> {
        let section = self.sections.get(&client)?;
        Some((section, &self.update[section.body.clone()]))
    }

    /// The remembered delete set's sections, placed at `start`, if `delete_set` is
    /// the remembered one byte for byte.
    fn same_delete_set(&self, delete_set: &[u8], start: usize) -> Option<DeleteSections> {
        let (from, sections) = self.delete_set.as_ref()?;
        if self.update.get(*from..)? != delete_set {
            return None;
        }
        Some(
            sections
                .iter()
                .map(|(client, range)| {
                    (
                        *client,
                        range.start - from + start..range.end - from + start,
                    )
                })
                .collect(),
        )
    }

    fn remember(&mut self, update: &[u8], walk: FinishedWalk) {
        self.update.clear();
        self.update.extend_from_slice(update);
        self.sections = walk.sections;
        self.delete_set = Some(walk.delete_set);
    }
}

/// What reading one update found out about its layout, to remember.
struct Walk {
    recording: bool,
    sections: HashMap<u64, Section>,
    delete_set: Option<(usize, DeleteSections)>,
    structs_read: usize,
}

struct FinishedWalk {
    sections: HashMap<u64, Section>,
    delete_set: (usize, DeleteSections),
}

impl Walk {
    fn new(recording: bool) -> Self {
        Self {
            recording,
            sections: HashMap::new(),
            delete_set: None,
            structs_read: 0,
        }
    }

    /// The layout, if the update was large and read to its end.
    fn finished(self) -> Option<FinishedWalk> {
        if !self.recording {
            return None;
        }
        Some(FinishedWalk {
            sections: self.sections,
            delete_set: self.delete_set?,
        })
    }
}

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Compared a block at a time (a `memcmp` each), then byte by byte in the first
    // block that differs.
    const BLOCK: usize = 256;
    let len = a.len().min(b.len());
    let mut at = 0;
    while at + BLOCK <= len && a[at..at + BLOCK] == b[at..at + BLOCK] {
        at += BLOCK;
    }
    at + a[at..len]
        .iter()
        .zip(&b[at..len])
        .take_while(|(x, y)| x == y)
        .count()
}

fn read_client(cursor: &mut Cursor<'_>) -> Option<u64> {
    let client: u64 = cursor.read_var().ok()?;
    (client >> CLIENT_BITS == 0).then_some(client)
}

/// `section` (a client's delete-set section) with only the ranges `known` (the
/// same client's section the document applied before) does not hold exactly:
/// deletions are permanent, so those it holds delete nothing new. A full state
/// repeats the sender's whole delete set after each deletion, and finding every
/// range among the document's items again is what applying it costs. `None` when
/// either cannot be read, which leaves the section whole.
fn ranges_not_in(section: &[u8], known: &[u8]) -> Option<Vec<u8>> {
    let read = |bytes: &[u8]| -> Option<(u64, Vec<(u32, u32)>)> {
        let mut cursor = Cursor::new(bytes);
        let client = read_client(&mut cursor)?;
        let count: u32 = cursor.read_var().ok()?;
        let mut ranges = Vec::with_capacity((count as usize).min(bytes.len()));
        for _ in 0..count {
            let clock: u32 = cursor.read_var().ok()?;
            let length: u32 = cursor.read_var().ok()?;
            ranges.push((clock, length));
        }
        Some((client, ranges))
    };
    let (client, ranges) = read(section)?;
    let (_, applied) = read(known)?;
    let applied: std::collections::HashSet<(u32, u32)> = applied.into_iter().collect();
    let new: Vec<&(u32, u32)> = ranges
        .iter()
        .filter(|range| !applied.contains(range))
        .collect();
    let mut out = Vec::with_capacity(section.len());
    out.write_var(client);
    out.write_var(new.len() as u32);
    for (clock, length) in new {
        out.write_var(*clock);
        out.write_var(*length);
    }
    Some(out)
}

/// The delete set's sections, each a client's id and ranges as encoded, which must
/// end the update; a client named twice (the decoder would keep only the last) or
/// anything malformed leaves the update to the decoder.
fn delete_set_sections(cursor: &mut Cursor<'_>) -> Option<DeleteSections> {
    let clients: u32 = cursor.read_var().ok()?;
    let mut sections: Vec<(u64, Range<usize>)> = Vec::new();
    for _ in 0..clients {
        let start = cursor.next;
        let client = read_client(cursor)?;
        let ranges: u32 = cursor.read_var().ok()?;
        for _ in 0..ranges {
            let _clock: u32 = cursor.read_var().ok()?;
            let _length: u32 = cursor.read_var().ok()?;
        }
        if sections.iter().any(|(seen, _)| *seen == client) {
            return None;
        }
        sections.push((client, start..cursor.next));
    }
    (cursor.next == cursor.buf.len()).then_some(sections)
}

/// Steps over one struct and returns how many clock ticks it covers (0 for an
/// empty item, which the decoder drops without moving the clock) and whether it
/// is a skip (a gap the update itself declares), or `None` for anything this
/// module leaves to the full decoder.
fn struct_length(cursor: &mut Cursor<'_>) -> Option<(u32, bool)> {
    let info = cursor.read_u8().ok()?;
    match info {
        GC | SKIP => {
            let length: u32 = cursor.read_var().ok()?;
            (length > 0).then_some((length, info == SKIP))
        }
        _ => {
            if info & HAS_ORIGIN != 0 {
                skip_id(cursor)?;
            }
            if info & HAS_RIGHT_ORIGIN != 0 {
                skip_id(cursor)?;
            }
            if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
                let named: u32 = cursor.read_var().ok()?;
                if named == 1 {
                    cursor.read_string().ok()?;
                } else {
                    skip_id(cursor)?;
                }
                if info & HAS_PARENT_SUB != 0 {
                    cursor.read_string().ok()?;
                }
            }
            Some((content_length(cursor, info & 0b1111)?, false))
        }
    }
}

fn skip_id(cursor: &mut Cursor<'_>) -> Option<()> {
    let _client: u64 = cursor.read_var().ok()?;
    let _clock: u32 = cursor.read_var().ok()?;
    Some(())
}

fn content_length(cursor: &mut Cursor<'_>, kind: u8) -> Option<u32> {
    match kind {
        CONTENT_DELETED => cursor.read_var().ok(),
        CONTENT_STRING => {
            // A clock tick per UTF-16 unit, as Yjs counts; ASCII needs one pass.
            let bytes = cursor.read_buf().ok()?;
            let units = if bytes.is_ascii() {
                bytes.len()
            } else {
                std::str::from_utf8(bytes).ok()?.encode_utf16().count()
            };
            u32::try_from(units).ok()
        }
        CONTENT_BINARY | CONTENT_EMBED => {
            cursor.read_buf().ok()?;
            Some(1)
        }
        CONTENT_FORMAT => {
            cursor.read_string().ok()?;
            cursor.read_string().ok()?;
            Some(1)
        }
        CONTENT_TYPE => {
            let kind = cursor.read_u8().ok()?;
            match kind {
                TYPE_XML_ELEMENT => {
                    cursor.read_string().ok()?;
                }
                TYPE_XML_HOOK => return None,
                TYPE_ARRAY..=TYPE_XML_TEXT => {}
                _ => return None,
            }
            Some(1)
        }
        // JSON, Any and sub-document content: left to the decoder.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{
        Array, Doc, GetString, Map, OffsetKind, Options, ReadTxn, Text, Transact, Update,
        XmlFragment, XmlTextPrelim,
    };

    /// A document indexed in UTF-16 units, as Yjs in a browser is.
    fn doc(client: u64) -> Doc {
        Doc::with_options(Options {
            client_id: ClientID::new(client),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        })
    }

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn sync(from: &Doc, to: &Doc) {
        let update = state(from);
        to.transact_mut()
            .apply_update(Update::decode_v1(&update).expect("decodes"))
            .expect("applies");
    }

    /// The cut, if `examine` makes one; a gap is a failure in these tests.
    fn without_known(
        update: &[u8],
        known: &StateVector,
        deletions: &AppliedDeletions,
    ) -> Option<Cut> {
        without_known_after(update, known, deletions, &mut Walked::default())
    }

    /// `without_known`, reading against (and then remembering in) `walked`.
    fn without_known_after(
        update: &[u8],
        known: &StateVector,
        deletions: &AppliedDeletions,
        walked: &mut Walked,
    ) -> Option<Cut> {
        match examine(update, known, deletions, walked) {
            Examined::Cut(cut) => Some(cut),
            Examined::Whole | Examined::Fresh(_) => None,
            Examined::Gap { client } => panic!("no gap expected, found one of {client}"),
        }
    }

    /// The ends `examine` reports when it finds `update` all new against `known`.
    fn fresh_ends(update: &[u8], known: &StateVector) -> Option<Vec<(ClientID, u32)>> {
        match examine(
            update,
            known,
            &AppliedDeletions::default(),
            &mut Walked::default(),
        ) {
            Examined::Fresh(ends) => Some(ends),
            _ => None,
        }
    }

    #[test]
    fn an_update_that_starts_where_the_document_ends_is_fresh_and_reports_its_ends() {
        let alice = doc(1);
        let text = alice.get_or_insert_text("t");
        text.insert(&mut alice.transact_mut(), 0, "hello");
        // A client the document has never seen starts at 0.
        let first = state(&alice);
        assert_eq!(
            fresh_ends(&first, &StateVector::default()),
            Some(vec![(ClientID::new(1), 5)])
        );
        let known = alice.transact().state_vector();
        text.insert(&mut alice.transact_mut(), 5, " world");
        let keystroke = alice.transact().encode_state_as_update_v1(&known);
        assert_eq!(
            fresh_ends(&keystroke, &known),
            Some(vec![(ClientID::new(1), 11)])
        );
        // The whole state again holds what is known; the keystroke again is known.
        assert_eq!(fresh_ends(&state(&alice), &known), None);
        let now = alice.transact().state_vector();
        assert_eq!(fresh_ends(&keystroke, &now), None);
        // Half of it known: merging starts inside a struct, so not fresh either.
        let mut partly = StateVector::default();
        partly.set_max(ClientID::new(1), 8);
        assert_eq!(fresh_ends(&keystroke, &partly), None);
        // The same client's structs twice over, in two sections: the keystroke is
        // one client count, one section and an empty delete set.
        let section = &keystroke[1..keystroke.len() - 1];
        let mut twice = Vec::new();
        twice.write_var(2u32);
        twice.extend_from_slice(section);
        twice.extend_from_slice(section);
        twice.write_var(0u32);
        assert!(Update::decode_v1(&twice).is_ok());
        assert_eq!(fresh_ends(&twice, &known), None);
        // A deletion alone gains no struct.
        let known = alice.transact().state_vector();
        text.remove_range(&mut alice.transact_mut(), 0, 1);
        let backspace = alice.transact().encode_state_as_update_v1(&known);
        assert_eq!(fresh_ends(&backspace, &known), None);
    }

    fn apply(doc: &Doc, update: &[u8]) -> Vec<u8> {
        let mut txn = doc.transact_mut();
        txn.apply_update(Update::decode_v1(update).expect("decodes"))
            .expect("applies");
        txn.encode_update_v1()
    }

    /// Applies `update` to a copy of `room` whole and cut; both must end equal and
    /// report the same delta, and the cut must be no larger.
    fn check_same(room: &Doc, update: &[u8]) -> Option<usize> {
        let known = room.transact().state_vector();
        let cut = without_known(update, &known, &AppliedDeletions::default())?;
        assert!(cut.update.len() <= update.len());
        let whole_room = doc(999);
        let cut_room = doc(998);
        sync(room, &whole_room);
        sync(room, &cut_room);
        assert_eq!(
            apply(&whole_room, update),
            apply(&cut_room, &cut.update),
            "the same delta"
        );
        assert_eq!(state(&whole_room), state(&cut_room), "the same document");
        Some(cut.update.len())
    }

    /// A room that cuts what it knows and remembers its deletions, beside one that
    /// applies everything whole.
    struct Twins {
        cut: Doc,
        deletions: AppliedDeletions,
        walked: Walked,
        whole: Doc,
    }

    impl Twins {
        fn new() -> Self {
            Self {
                cut: doc(998),
                deletions: AppliedDeletions::default(),
                walked: Walked::default(),
                whole: doc(999),
            }
        }

        /// Applies `update` to both; returns the size the cut room decoded.
        fn apply(&mut self, update: &[u8]) -> usize {
            let known = self.cut.transact().state_vector();
            let (delta, decoded) =
                match without_known_after(update, &known, &self.deletions, &mut self.walked) {
                    Some(cut) => {
                        let delta = apply(&self.cut, &cut.update);
                        let decoded = cut.update.len();
                        self.deletions.remember(cut);
                        (delta, decoded)
                    }
                    None => (apply(&self.cut, update), update.len()),
                };
            assert_eq!(delta, apply(&self.whole, update), "the same delta");
            assert_eq!(state(&self.cut), state(&self.whole), "the same document");
            decoded
        }
    }

    fn typed(client: u64, text: &str) -> Doc {
        let doc = doc(client);
        let content = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        for (index, ch) in text.chars().enumerate() {
            content.insert(&mut txn, index as u32, &ch.to_string());
        }
        drop(txn);
        doc
    }

    #[test]
    fn a_full_state_with_one_new_character_shrinks_to_that_character() {
        let editor = typed(7, "hello wörld, 😀 and more text typed one key at a time");
        let room = doc(1);
        sync(&editor, &room);
        let content = editor.get_or_insert_text("content");
        content.insert(&mut editor.transact_mut(), 5, "X");
        let full = state(&editor);
        let cut = check_same(&room, &full).expect("something is cut");
        assert!(cut < full.len() / 2, "{cut} of {}", full.len());
    }

    #[test]
    fn a_full_state_the_room_holds_cuts_to_its_delete_set() {
        let editor = typed(7, "abcdefghij");
        let content = editor.get_or_insert_text("content");
        content.remove_range(&mut editor.transact_mut(), 2, 3);
        let room = doc(1);
        sync(&editor, &room);
        let full = state(&editor);
        check_same(&room, &full).expect("something is cut");
    }

    #[test]
    fn new_deletions_of_known_items_still_arrive() {
        let editor = typed(7, "abcdefghij");
        let room = doc(1);
        sync(&editor, &room);
        let content = editor.get_or_insert_text("content");
        content.remove_range(&mut editor.transact_mut(), 0, 4);
        let full = state(&editor);
        check_same(&room, &full).expect("something is cut");
        let cut = without_known(
            &full,
            &room.transact().state_vector(),
            &AppliedDeletions::default(),
        )
        .expect("cut");
        apply(&room, &cut.update);
        let text = room.get_or_insert_text("content");
        assert_eq!(text.get_string(&room.transact()), "efghij");
    }

    #[test]
    fn several_clients_and_partly_known_runs_merge_the_same() {
        let alice = typed(11, "alice types here ");
        let bob = typed(12, "bob too ");
        sync(&alice, &bob);
        sync(&bob, &alice);
        let room = doc(1);
        sync(&alice, &room);
        // The room lacks bob's later keys and alice's newest ones, and holds part
        // of a squashed run of alice's.
        let text = alice.get_or_insert_text("content");
        text.push(&mut alice.transact_mut(), "and then some");
        let bob_text = bob.get_or_insert_text("content");
        bob_text.push(&mut bob.transact_mut(), "!!");
        sync(&bob, &alice);
        check_same(&room, &state(&alice)).expect("something is cut");
    }

    #[test]
    fn nested_types_formats_and_embeds_are_stepped_over() {
        let editor = doc(7);
        let text = editor.get_or_insert_text("content");
        let fragment = editor.get_or_insert_xml_fragment("xml");
        {
            let mut txn = editor.transact_mut();
            text.insert(&mut txn, 0, "rich text");
            text.format(&mut txn, 0, 4, [("bold".into(), true.into())].into());
            text.insert_embed(&mut txn, 4, yrs::Any::from("image"));
            fragment.insert(&mut txn, 0, XmlTextPrelim::new("xml text"));
        }
        let room = doc(1);
        sync(&editor, &room);
        text.push(&mut editor.transact_mut(), "!");
        check_same(&room, &state(&editor)).expect("something is cut");
    }

    #[test]
    fn kinds_it_does_not_read_and_garbage_are_left_whole() {
        let editor = doc(7);
        let array = editor.get_or_insert_array("list");
        let map = editor.get_or_insert_map("map");
        {
            let mut txn = editor.transact_mut();
            array.push_back(&mut txn, 1);
            map.insert(&mut txn, "key", "value");
        }
        let room = doc(1);
        sync(&editor, &room);
        let known = room.transact().state_vector();
        let none = AppliedDeletions::default();
        assert!(without_known(&state(&editor), &known, &none).is_none());
        assert!(without_known(&[1, 2, 3, 250, 250, 250], &known, &none).is_none());
        assert!(without_known(&[], &known, &none).is_none());
        let full = state(&typed(7, "abc"));
        assert!(without_known(&full[..full.len() - 3], &known, &none).is_none());
    }

    #[test]
    fn an_update_of_only_new_structs_is_left_as_it_is() {
        let editor = typed(7, "abc");
        let room = doc(1);
        let known = room.transact().state_vector();
        assert!(without_known(&state(&editor), &known, &AppliedDeletions::default()).is_none());
    }

    /// The document missed an editor's paste; the editor's next keystroke, sent on
    /// its own, follows it. yrs would show that keystroke without recording it.
    #[test]
    fn a_struct_after_edits_the_document_never_got_is_a_gap() {
        let editor = typed(12, "ab");
        let room = doc(1);
        sync(&editor, &room);
        let text = editor.get_or_insert_text("content");
        text.insert(&mut editor.transact_mut(), 2, "pasted");
        let after_paste = editor.transact().state_vector();
        text.insert(&mut editor.transact_mut(), 1, "k");
        let keystroke = editor.transact().encode_state_as_update_v1(&after_paste);
        let known = room.transact().state_vector();
        let none = AppliedDeletions::default();
        assert!(matches!(
            examine(&keystroke, &known, &none, &mut Walked::default()),
            Examined::Gap { client: 12 }
        ));
        // With the paste it is whole, and is cut to what is new.
        assert!(matches!(
            examine(&state(&editor), &known, &none, &mut Walked::default()),
            Examined::Cut(_)
        ));
        // Merged with the first two characters, the keystroke sits behind a skip
        // over the paste: still a gap where the paste is missing, none where it is
        // held.
        let first = typed(12, "ab");
        let merged = yrs::merge_updates_v1([state(&first).as_slice(), keystroke.as_slice()])
            .expect("merges");
        assert!(matches!(
            examine(
                &merged,
                &StateVector::default(),
                &none,
                &mut Walked::default()
            ),
            Examined::Gap { client: 12 }
        ));
        let holder = doc(2);
        sync(&editor, &holder);
        assert!(matches!(
            examine(
                &merged,
                &holder.transact().state_vector(),
                &none,
                &mut Walked::default()
            ),
            Examined::Cut(_)
        ));
    }

    #[test]
    fn a_delete_set_applied_once_is_left_out_until_it_changes() {
        let editor = typed(7, "abcdefghijklmnopqrstuvwxyz");
        let text = editor.get_or_insert_text("content");
        for at in [20, 15, 10, 5] {
            text.remove_range(&mut editor.transact_mut(), at, 2);
        }
        let mut room = Twins::new();
        room.apply(&state(&editor));
        text.push(&mut editor.transact_mut(), "1");
        let first = room.apply(&state(&editor));
        text.push(&mut editor.transact_mut(), "2");
        let second = room.apply(&state(&editor));
        assert!(
            second < first,
            "{second} bytes with the delete set left out, {first} before"
        );
        // A new deletion changes the section: it comes whole, and is applied.
        text.remove_range(&mut editor.transact_mut(), 0, 1);
        let third = room.apply(&state(&editor));
        assert!(third > 2, "the changed section is in the cut");
        let text = room.cut.get_or_insert_text("content");
        assert!(text.get_string(&room.cut.transact()).starts_with("bcd"));
    }

    /// Two editors typing into each other's text, one key per transaction, so the
    /// document is hundreds of structs in two sections and a delete set.
    fn interleaved(keys: usize) -> (Doc, Doc) {
        let mut rng = fastrand::Rng::with_seed(7);
        let (alice, bob) = (doc(11), doc(12));
        for key in 0..keys {
            let editor = if key % 2 == 0 { &alice } else { &bob };
            let text = editor.get_or_insert_text("content");
            let mut txn = editor.transact_mut();
            let len = text.len(&txn);
            if len > 10 && key % 7 == 0 {
                text.remove_range(&mut txn, rng.u32(0..len - 1), 1);
            } else {
                text.insert(&mut txn, rng.u32(0..=len), "k");
            }
            drop(txn);
            sync(&alice, &bob);
            sync(&bob, &alice);
        }
        (alice, bob)
    }

    #[test]
    fn a_repeated_full_state_is_read_only_where_it_changed() {
        let (alice, bob) = interleaved(600);
        let mut room = Twins::new();
        room.apply(&state(&alice));
        let everything = room.walked.structs_read();
        assert!(
            everything > 500,
            "{everything} structs in the first full state"
        );
        // Alice types at the end of her section; Bob's full state, next, repeats
        // hers but for what he has not seen yet.
        let text = alice.get_or_insert_text("content");
        text.insert(&mut alice.transact_mut(), 3, "x");
        room.apply(&state(&alice));
        let again = room.walked.structs_read();
        assert!(
            again <= 4 * MARK_EVERY as usize,
            "{again} structs read again"
        );
        sync(&alice, &bob);
        let bob_text = bob.get_or_insert_text("content");
        bob_text.remove_range(&mut bob.transact_mut(), 5, 2);
        room.apply(&state(&bob));
        let other_sender = room.walked.structs_read();
        assert!(
            other_sender < everything / 4,
            "{other_sender} of {everything} structs read for another editor's state"
        );
        let cut_text = room.cut.get_or_insert_text("content");
        assert_eq!(
            cut_text.get_string(&room.cut.transact()),
            bob_text.get_string(&bob.transact())
        );
    }

    #[test]
    fn the_remembered_update_never_vouches_for_what_the_document_lacks() {
        // The memory says where structs are, never that the document holds them:
        // read twice against a document holding only its first half, a full state
        // is cut to the same update both times.
        let (alice, _) = interleaved(200);
        let full = state(&alice);
        let (early, _) = interleaved(100);
        let partial = doc(2);
        sync(&early, &partial);
        let known = partial.transact().state_vector();
        let none = AppliedDeletions::default();
        let mut walked = Walked::default();
        let first = without_known_after(&full, &known, &none, &mut walked).expect("cut");
        let read_first = walked.structs_read();
        let second = without_known_after(&full, &known, &none, &mut walked).expect("cut");
        assert!(
            walked.structs_read() < read_first,
            "the second reading skips"
        );
        assert_eq!(first.update, second.update);
        check_same(&partial, &full).expect("something is cut");
        // Against an empty document nothing is cut, whatever is remembered: all of
        // it is new.
        assert!(matches!(
            examine(&full, &StateVector::default(), &none, &mut walked),
            Examined::Fresh(_)
        ));
    }

    #[test]
    fn common_prefix_finds_the_first_difference_at_any_position() {
        let a: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        for at in [0, 1, 255, 256, 257, 511, 1000, 1999] {
            let mut b = a.clone();
            b[at] ^= 1;
            assert_eq!(common_prefix(&a, &b), at);
        }
        assert_eq!(common_prefix(&a, &a), a.len());
        assert_eq!(common_prefix(&a[..700], &a), 700);
        assert_eq!(common_prefix(&[], &a), 0);
    }

    #[test]
    fn a_changed_delete_set_brings_only_its_new_ranges() {
        let editor = typed(7, &"abcdefghij".repeat(30));
        let text = editor.get_or_insert_text("content");
        for at in (0..50).map(|i| i * 5) {
            text.remove_range(&mut editor.transact_mut(), at, 1);
        }
        let mut room = Twins::new();
        room.apply(&state(&editor));
        // A keystroke: its cut carries the delete set whole, which is remembered.
        text.push(&mut editor.transact_mut(), "!");
        let first = room.apply(&state(&editor));
        text.remove_range(&mut editor.transact_mut(), 1, 1);
        let decoded = room.apply(&state(&editor));
        assert!(
            decoded < 20,
            "{decoded} bytes decoded for one new deletion ({first} the first time)"
        );
        // Unreadable sections are left whole.
        assert_eq!(ranges_not_in(&[0x80], &[1, 0]), None);
        assert_eq!(ranges_not_in(&[1, 0], &[0x80]), None);
    }

    #[test]
    fn random_edit_histories_merge_the_same_cut_or_whole() {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut saved = 0;
        let mut total = 0;
        for _ in 0..100 {
            let editors: Vec<Doc> = (0..3).map(|i| doc(100 + i)).collect();
            let mut room = Twins::new();
            for _ in 0..rng.usize(5..60) {
                let editor = &editors[rng.usize(0..editors.len())];
                let text = editor.get_or_insert_text("content");
                let mut txn = editor.transact_mut();
                let len = text.len(&txn);
                if len > 2 && rng.u8(0..4) == 0 {
                    let at = rng.u32(0..len - 1);
                    text.remove_range(&mut txn, at, rng.u32(1..=(len - at).min(3)));
                } else {
                    let words = ["a", "bc", "é", "😀x", "long word "];
                    text.insert(&mut txn, rng.u32(0..=len), words[rng.usize(0..words.len())]);
                }
                drop(txn);
                if rng.u8(0..3) == 0 {
                    sync(editor, &editors[rng.usize(0..editors.len())]);
                }
                // The original page: the editor's whole state, every time.
                let full = state(editor);
                total += full.len();
                saved += full.len() - room.apply(&full).min(full.len());
            }
        }
        assert!(saved > total / 2, "only {saved} of {total} bytes were cut");
    }
}
