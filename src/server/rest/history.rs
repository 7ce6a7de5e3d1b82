//! A room's history over REST: the versions it holds
//! (`GET /api/rooms/{id}/history`), one of them read (`GET
//! /api/rooms/{id}/document?seq=N|at=TIME`) or restored as a new change
//! (`POST /api/rooms/{id}/restore?seq=N|at=TIME`).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::documents::render;
use super::{bounded, validate_room_id, ApiError};
use crate::api::{HistoryResponse, HistoryVersion, RestoreResponse};
use crate::server::content::{self, Format};
use crate::server::document::DocumentError;
use crate::server::store::{History, HistoryEntry};
use crate::server::AppState;

/// Edits within this long of a version's first edit belong to that version.
const VERSION_WINDOW_MS: i64 = 60_000;
/// Versions listed when no `limit` is given, and the most that may be asked for.
const DEFAULT_VERSIONS: u32 = 100;
const MAX_VERSIONS: u32 = 10_000;
/// How long a history read waits for the room's latest edits to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    pub format: Option<String>,
    pub seq: Option<String>,
    pub at: Option<String>,
    pub limit: Option<String>,
}

impl VersionQuery {
    /// True when the query names a version rather than the live document.
    pub fn names_version(&self) -> bool {
        self.seq.is_some() || self.at.is_some()
    }
}

/// The store's history of a room, after waiting (briefly) for its latest edits
/// to be written; 404 for a room with nothing stored.
async fn stored_history(app: &AppState, room_id: &str) -> Result<History, ApiError> {
    validate_room_id(room_id)?;
    let _ = tokio::time::timeout(FLUSH_WAIT, app.registry.journal().flush()).await;
    let history = app
        .registry
        .store()
        .history(room_id)
        .await
        .map_err(|error| ApiError::Unavailable(format!("store error: {error}")))?;
    if history.entries.is_empty() && app.registry.find(room_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "room {room_id} does not exist: nobody is in it and nothing is stored for it"
        )));
    }
    Ok(history)
}

fn iso(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Groups the readable updates of `history` into versions, oldest first.
fn versions(history: &History) -> Vec<HistoryVersion> {
    let from = history.readable_from().unwrap_or(u64::MAX);
    let mut versions: Vec<(i64, HistoryVersion)> = Vec::new();
    let updates = history
        .entries
        .iter()
        .filter(|entry| !entry.snapshot && entry.seq >= from);
    for entry in updates {
        let author = entry.author.clone();
        match versions.last_mut() {
            Some((started, version)) if entry.at_ms - *started < VERSION_WINDOW_MS => {
                version.seq = entry.seq;
                version.at = iso(entry.at_ms);
                version.edits += 1;
                version.size += entry.size;
                if let Some(author) = author {
                    if !version.authors.contains(&author) {
                        version.authors.push(author);
                    }
                }
            }
            _ => versions.push((
                entry.at_ms,
                HistoryVersion {
                    seq: entry.seq,
                    at: iso(entry.at_ms),
                    edits: 1,
                    size: entry.size,
                    authors: author.into_iter().collect(),
                },
            )),
        }
    }
    versions.into_iter().map(|(_, version)| version).collect()
}

/// The versions of a room, newest first (`limit`, default 100).
pub async fn history(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let limit = bounded(
        "limit",
        query.limit.as_deref(),
        DEFAULT_VERSIONS,
        1..=MAX_VERSIONS,
    )?;
    let history = stored_history(&app, &room_id).await?;
    let mut versions = versions(&history);
    versions.reverse();
    versions.truncate(limit as usize);
    Ok(Json(HistoryResponse {
        room_id,
        retention_seconds: app.config.history_retention.as_secs(),
        readable_from: history.readable_from(),
        versions,
    }))
}

/// When `at` names: an RFC 3339 time, or a duration meaning that long ago (`2h`).
fn parse_time(at: &str) -> Result<i64, ApiError> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(at.trim()) {
        return Ok(time.timestamp_millis());
    }
    let ago = humantime::parse_duration(at.trim()).map_err(|_| {
        ApiError::BadRequest(format!(
            "at must be an RFC 3339 time (2026-01-31T09:00:00Z) or a duration ago (2h), got {at:?}"
        ))
    })?;
    let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
    Ok(chrono::Utc::now().timestamp_millis().saturating_sub(ago))
}

/// The sequence number `query` names, checked against what the history holds.
fn resolve(history: &History, query: &VersionQuery) -> Result<u64, ApiError> {
    let readable_from = history.readable_from();
    let last = history.entries.last().map(|entry| entry.seq);
    let (Some(from), Some(last)) = (readable_from, last) else {
        return Err(ApiError::NotFound(
            "this room has no readable history".into(),
        ));
    };
    let seq = match (&query.seq, &query.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("give seq or at, not both".into()));
        }
        (Some(seq), None) => bounded("seq", Some(seq), 0, 1..=u64::MAX)?,
        (None, Some(at)) => {
            let at_ms = parse_time(at)?;
            let found: Option<&HistoryEntry> = history
                .entries
                .iter()
                .rev()
                .find(|entry| entry.seq >= from && entry.at_ms <= at_ms);
            match found {
                Some(entry) => entry.seq,
                None => {
                    return Err(ApiError::NotFound(format!(
                        "the history of this room starts after {at} (it starts at {})",
                        history
                            .entries
                            .iter()
                            .find(|entry| entry.seq >= from)
                            .map_or_else(String::new, |entry| iso(entry.at_ms))
                    )))
                }
            }
        }
        (None, None) => return Err(ApiError::BadRequest("give seq or at".into())),
    };
    if seq < from || seq > last {
        return Err(ApiError::NotFound(format!(
            "no version {seq}: the history holds {from} to {last}"
        )));
    }
    Ok(seq)
}

/// The whole document as of the version `query` names, with its sequence number.
async fn version_state(
    app: &AppState,
    room_id: &str,
    query: &VersionQuery,
) -> Result<(u64, Vec<u8>), ApiError> {
    let history = stored_history(app, room_id).await?;
    let seq = resolve(&history, query)?;
    let data = app
        .registry
        .store()
        .read_version(room_id, seq)
        .await
        .map_err(|error| ApiError::Unavailable(format!("store error: {error}")))?
        .ok_or_else(|| ApiError::NotFound(format!("version {seq} is no longer kept")))?;
    let state = content::rebuild(data.base.as_deref(), &data.updates)
        .map_err(|error| ApiError::Unavailable(format!("version {seq} is unreadable: {error}")))?;
    Ok((seq, state))
}

/// `GET /api/rooms/{id}/document?seq=N|at=TIME`: a version, in `format`.
pub async fn document_version(
    app: &AppState,
    room_id: &str,
    query: &VersionQuery,
    format: Format,
) -> Result<Response, ApiError> {
    let (_, state) = version_state(app, room_id, query).await?;
    render(&state, format)
}

/// Makes the live room equal to a version of its history, as a new change every
/// client receives (see `Room::restore`); the restore is itself a new version.
pub async fn restore(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<RestoreResponse>, ApiError> {
    let (seq, state) = version_state(&app, &room_id, &query).await?;
    let room = app.registry.get_pinned(&room_id).await?;
    let restoration = room.restore(&state).map_err(|error| match error {
        DocumentError::Unstorable(_) => ApiError::Unavailable(error.to_string()),
        _ => super::documents::refused_update(error),
    })?;
    super::stored(&room, &room_id, room.latest_seq()).await?;
    app.metrics
        .add_event("restore", &room_id, "", format!("Restored version {seq}"));
    Ok(Json(RestoreResponse {
        success: true,
        room_id,
        seq,
        skipped_roots: restoration.skipped_roots,
    }))
}
