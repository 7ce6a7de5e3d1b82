//! A document's content as data, apart from any room: rendering an encoded Yjs
//! state as plain text or JSON, building the update that adds imported text, and
//! building the update that makes a live document equal to an older state (a
//! restore that is a new change, so every client receives it like any edit).
//!
//! Everything here works on encoded states in documents of its own, never on a
//! room's live document, so no room lock is held while it runs.

use std::collections::BTreeSet;

use std::str::FromStr;

use serde_json::Value;
use yrs::types::text::{Diff, YChange};
use yrs::types::{AsPrelim, Attrs, ToJson};
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, Doc, GetString, In, Map, Out, ReadTxn, Text, Transact, TransactionMut, Update,
};

use super::document::TEXT_NAME;

/// Why content could not be read or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("not a Yjs update: {0}")]
    Undecodable(String),
    #[error("the Yjs update could not be applied: {0}")]
    Unapplicable(String),
}

/// The forms a document can be read and written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Yjs update encoding (v1) of the whole document: lossless.
    Yjs,
    /// The plain text of the `content` text.
    Text,
    /// Every root type rendered as JSON.
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Yjs => "yjs",
            Format::Text => "text",
            Format::Json => "json",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "yjs" | "binary" => Ok(Format::Yjs),
            "text" | "txt" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}: use yjs, text or json")),
        }
    }
}

/// A document of its own holding `state`.
fn decoded(state: &[u8]) -> Result<Doc, ContentError> {
    let doc = Doc::new();
    if state.is_empty() {
        return Ok(doc);
    }
    let update =
        Update::decode_v1(state).map_err(|error| ContentError::Undecodable(error.to_string()))?;
    doc.transact_mut()
        .apply_update(update)
        .map_err(|error| ContentError::Unapplicable(error.to_string()))?;
    Ok(doc)
}

/// The whole-document state rebuilt from a version's base and updates.
pub fn rebuild(base: Option<&[u8]>, updates: &[impl AsRef<[u8]>]) -> Result<Vec<u8>, ContentError> {
    let doc = decoded(base.unwrap_or_default())?;
    {
        let mut txn = doc.transact_mut();
        for update in updates {
            let update = Update::decode_v1(update.as_ref())
                .map_err(|error| ContentError::Undecodable(error.to_string()))?;
            txn.apply_update(update)
                .map_err(|error| ContentError::Unapplicable(error.to_string()))?;
        }
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Ok(state)
}

/// The plain text of the `content` text of `state`.
pub fn text(state: &[u8]) -> Result<String, ContentError> {
    let doc = decoded(state)?;
    let txn = doc.transact();
    Ok(txn
        .get_text(TEXT_NAME)
        .map(|text| text.get_string(&txn))
        .unwrap_or_default())
}

/// What a root type is. An update does not say: roots arrive untyped, and are told
/// apart by what they hold, the way yrs itself infers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Map,
    Array,
    Xml,
}

/// The kind of root `name`, or `None` when it is absent or holds nothing.
fn kind_of<T: ReadTxn>(txn: &T, name: &str) -> Option<Kind> {
    let (_, root) = txn.root_refs().find(|(root, _)| *root == name)?;
    Some(match root {
        Out::YText(_) => Kind::Text,
        Out::YMap(_) => Kind::Map,
        Out::YArray(_) => Kind::Array,
        Out::YXmlFragment(_) | Out::YXmlElement(_) | Out::YXmlText(_) => Kind::Xml,
        other => match other.as_prelim(txn) {
            In::Text(_) => Kind::Text,
            In::Array(_) => Kind::Array,
            In::Map(map) if map.is_empty() => return None,
            In::Map(_) => Kind::Map,
            _ => Kind::Xml,
        },
    })
}

fn root_names<T: ReadTxn>(txn: &T) -> BTreeSet<String> {
    txn.root_refs().map(|(name, _)| name.to_owned()).collect()
}

fn any_to_json(any: &Any) -> Value {
    let mut buffer = String::new();
    any.to_json(&mut buffer);
    serde_json::from_str(&buffer).unwrap_or(Value::Null)
}

/// Every root type of `state` as JSON: text as a string, maps as objects, arrays as
/// arrays, XML as its markup string. Empty roots are left out.
pub fn json(state: &[u8]) -> Result<Value, ContentError> {
    let doc = decoded(state)?;
    let txn = doc.transact();
    let mut rendered = serde_json::Map::new();
    for name in root_names(&txn) {
        let value = match kind_of(&txn, &name) {
            None => continue,
            Some(Kind::Text) => txn
                .get_text(name.as_str())
                .map(|text| Value::String(text.get_string(&txn))),
            Some(Kind::Map) => txn
                .get_map(name.as_str())
                .map(|map| any_to_json(&map.to_json(&txn))),
            Some(Kind::Array) => txn
                .get_array(name.as_str())
                .map(|array| any_to_json(&array.to_json(&txn))),
            Some(Kind::Xml) => txn
                .get_xml_fragment(name.as_str())
                .map(|xml| Value::String(xml.get_string(&txn))),
        };
        if let Some(value) = value {
            rendered.insert(name, value);
        }
    }
    Ok(Value::Object(rendered))
}

/// The update that appends `addition` to the `content` text of `state`, written
/// by a new client of its own.
pub fn text_append_update(state: &[u8], addition: &str) -> Result<Vec<u8>, ContentError> {
    let doc = decoded(state)?;
    let text = doc.get_or_insert_text(TEXT_NAME);
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let end = text.len(&txn);
        text.insert(&mut txn, end, addition);
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    Ok(update)
}

/// What `restore_update` could not bring back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restoration {
    /// The update to apply to the live document.
    pub update: Vec<u8>,
    /// Roots left as they are live: XML fragments, which are not restored.
    pub skipped_roots: Vec<String>,
}

/// The update that makes a document whose state is `live` equal to `target`: for
/// each root, what is there now is deleted and the target's content inserted, as a
/// new change by a client of its own. Applied to the live room it reaches every
/// client like any edit, and edits clients made since `target` cannot merge back,
/// because they are deleted by it rather than forgotten. Text keeps its formatting
/// attributes and embeds; maps and arrays are copied deeply.
pub fn restore_update(live: &[u8], target: &[u8]) -> Result<Restoration, ContentError> {
    let doc = decoded(live)?;
    let old = decoded(target)?;
    let old_txn = old.transact();
    let kinds: Vec<(String, Kind)> = {
        let txn = doc.transact();
        let mut names = root_names(&txn);
        names.extend(root_names(&old_txn));
        names
            .into_iter()
            .filter_map(|name| {
                let kind = kind_of(&old_txn, &name).or_else(|| kind_of(&txn, &name))?;
                Some((name, kind))
            })
            .collect()
    };
    // Refs are taken before the transaction (taking one types the root), and every
    // root changes in one transaction: one update, one change in the history.
    let mut skipped_roots = Vec::new();
    let mut roots = Vec::new();
    for (name, kind) in kinds {
        let root = match kind {
            Kind::Text => Root::Text(doc.get_or_insert_text(name.as_str())),
            Kind::Map => Root::Map(doc.get_or_insert_map(name.as_str())),
            Kind::Array => Root::Array(doc.get_or_insert_array(name.as_str())),
            Kind::Xml => {
                skipped_roots.push(name);
                continue;
            }
        };
        roots.push((name, root));
    }
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        for (name, root) in &roots {
            match root {
                Root::Text(text) => restore_text(&mut txn, text, &old_txn, name),
                Root::Map(map) => {
                    map.clear(&mut txn);
                    if let Some(old_map) = old_txn.get_map(name.as_str()) {
                        for (key, value) in old_map.iter(&old_txn) {
                            map.insert(&mut txn, key, value.as_prelim(&old_txn));
                        }
                    }
                }
                Root::Array(array) => {
                    let len = array.len(&txn);
                    array.remove_range(&mut txn, 0, len);
                    if let Some(old_array) = old_txn.get_array(name.as_str()) {
                        for value in old_array.iter(&old_txn) {
                            array.push_back(&mut txn, value.as_prelim(&old_txn));
                        }
                    }
                }
            }
        }
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    Ok(Restoration {
        update,
        skipped_roots,
    })
}

enum Root {
    Text(yrs::TextRef),
    Map(yrs::MapRef),
    Array(yrs::ArrayRef),
}

fn restore_text<T: ReadTxn>(
    txn: &mut TransactionMut,
    text: &yrs::TextRef,
    old_txn: &T,
    name: &str,
) {
    let len = text.len(txn);
    if len > 0 {
        text.remove_range(txn, 0, len);
    }
    let Some(old_text) = old_txn.get_text(name) else {
        return;
    };
    let chunks: Vec<Diff<YChange>> = old_text.diff(old_txn, YChange::identity);
    for chunk in chunks {
        let at = text.len(txn);
        let attributes: Attrs = chunk
            .attributes
            .map(|attributes| *attributes)
            .unwrap_or_default();
        match chunk.insert {
            Out::Any(Any::String(chunk_text)) => {
                text.insert_with_attributes(txn, at, &chunk_text, attributes);
            }
            Out::Any(embed) => {
                text.insert_embed_with_attributes(txn, at, embed, attributes);
            }
            // Shared types embedded in text (rare outside rich-text editors): maps
            // and arrays are copied; anything else is left out.
            shared => match shared.as_prelim(old_txn) {
                In::Map(map) => {
                    text.insert_embed_with_attributes(txn, at, map, attributes);
                }
                In::Array(array) => {
                    text.insert_embed_with_attributes(txn, at, array, attributes);
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::StateVector;

    fn state_of(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn apply(doc: &Doc, update: &[u8]) {
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
    }

    #[test]
    fn a_restore_is_a_new_change_that_wins_over_later_edits() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        text.insert(&mut doc.transact_mut(), 0, "the good version");
        let bold: Attrs = [("bold".into(), Any::Bool(true))].into_iter().collect();
        text.format(&mut doc.transact_mut(), 4, 4, bold.clone());
        let map = doc.get_or_insert_map("meta");
        map.insert(&mut doc.transact_mut(), "title", "Good");
        let checkpoint = state_of(&doc);

        // Someone wipes the page and adds things.
        let len = text.len(&doc.transact());
        text.remove_range(&mut doc.transact_mut(), 0, len);
        text.insert(&mut doc.transact_mut(), 0, "vandalised");
        map.insert(&mut doc.transact_mut(), "title", "Bad");
        map.insert(&mut doc.transact_mut(), "extra", 1);
        let array = doc.get_or_insert_array("list");
        array.push_back(&mut doc.transact_mut(), "later");
        let live = state_of(&doc);
        assert_eq!(self::text(&live).unwrap(), "vandalised");

        let restoration = restore_update(&live, &checkpoint).unwrap();
        assert!(restoration.skipped_roots.is_empty());
        // A client holding the live state receives it like any update.
        let client = Doc::new();
        apply(&client, &live);
        apply(&client, &restoration.update);
        let restored = state_of(&client);
        assert_eq!(self::text(&restored).unwrap(), "the good version");
        assert_eq!(
            json(&restored).unwrap(),
            // A root added after the checkpoint stays, emptied.
            serde_json::json!({"content": "the good version", "meta": {"title": "Good"}, "list": []})
        );
        let client_text = client.get_or_insert_text(TEXT_NAME);
        let chunks = client_text.diff(&client.transact(), YChange::identity);
        assert!(
            chunks
                .iter()
                .any(|chunk| chunk.attributes.as_deref() == Some(&bold)),
            "formatting is restored: {chunks:?}"
        );
        // Merging the vandal's old state again changes nothing: it is all deleted.
        apply(&client, &live);
        assert_eq!(self::text(&state_of(&client)).unwrap(), "the good version");
        // Restoring the state that is live again keeps it as it is.
        let again = restore_update(&restored, &checkpoint).unwrap();
        apply(&client, &again.update);
        assert_eq!(self::text(&state_of(&client)).unwrap(), "the good version");
    }

    #[test]
    fn imported_text_is_appended_by_a_client_of_its_own() {
        let doc = Doc::new();
        doc.get_or_insert_text(TEXT_NAME)
            .insert(&mut doc.transact_mut(), 0, "first ");
        let live = state_of(&doc);
        let update = text_append_update(&live, "and imported").unwrap();
        apply(&doc, &update);
        assert_eq!(text(&state_of(&doc)).unwrap(), "first and imported");
        assert_eq!(text(&[]).unwrap(), "");
        assert!(matches!(
            text(b"\xff\xff\xff"),
            Err(ContentError::Undecodable(_) | ContentError::Unapplicable(_))
        ));
    }

    #[test]
    fn formats_have_names() {
        assert_eq!("YJS".parse::<Format>(), Ok(Format::Yjs));
        assert_eq!("text".parse::<Format>(), Ok(Format::Text));
        assert!("pdf".parse::<Format>().is_err());
    }
}
