//! A room's document as data over REST: reading it (`GET /api/rooms/{id}/document`
//! as Yjs bytes, plain text or JSON) and merging one in
//! (`POST /api/rooms/{id}/import`) through the same path as a client's update.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::history::{document_version, VersionQuery};
use super::{validate_room_id, ApiError};
use crate::api::ImportResponse;
use crate::server::content::{self, Format};
use crate::server::document::DocumentError;
use crate::server::room::UpdateOutcome;
use crate::server::AppState;

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

/// Reads `format` (or `default`) from a query.
fn format_of(format: Option<&str>, default: Format) -> Result<Format, ApiError> {
    match format {
        None => Ok(default),
        Some(name) => name.parse().map_err(ApiError::BadRequest),
    }
}

impl FormatQuery {
    fn format(&self, default: Format) -> Result<Format, ApiError> {
        format_of(self.format.as_deref(), default)
    }
}

/// The document in `format` (default `yjs`): the Yjs update bytes of the whole
/// document (`application/octet-stream`), the text of `content` (`text/plain`), or
/// every root type as JSON; with `seq=N` or `at=TIME`, as it was then (see
/// `history`). 404 for a room the server knows nothing of.
pub async fn document(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    validate_room_id(&room_id)?;
    let format = format_of(query.format.as_deref(), Format::Yjs)?;
    if query.names_version() {
        return document_version(&app, &room_id, &query, format).await;
    }
    let Some(room) = app.registry.find(&room_id).await? else {
        return Err(ApiError::NotFound(format!(
            "room {room_id} does not exist: nobody is in it and nothing is stored for it"
        )));
    };
    // What clients may see: a change still on its way to the store is exported
    // once it is there (one group commit, normally), as `/text` shows it.
    let state = super::once_stored(
        super::WRITE_WAIT,
        || format!("room {room_id} has changes the store has not taken yet"),
        || Ok(room.written_state()),
    )
    .await?;
    render(&state, format)
}

/// `state` as a response in `format`.
pub(super) fn render(state: &[u8], format: Format) -> Result<Response, ApiError> {
    let unreadable = |error: content::ContentError| {
        ApiError::Unavailable(format!("document unreadable: {error}"))
    };
    Ok(match format {
        Format::Yjs => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            state.to_vec(),
        )
            .into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content::text(state).map_err(unreadable)?,
        )
            .into_response(),
        Format::Json => Json(content::json(state).map_err(unreadable)?).into_response(),
    })
}

/// Merges the body into the live room (created if new) like a client's update, so
/// every connected client gets it: a Yjs update (`format=yjs`, the default), or
/// plain text (`format=text`) appended to `content`. The body may be at most
/// `--max-message-bytes`, and the document stays within `--max-document-bytes`.
pub async fn import(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<FormatQuery>,
    body: Bytes,
) -> Result<Json<ImportResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let format = query.format(Format::Yjs)?;
    let room = app.registry.get_pinned(&room_id).await?;
    let update = match format {
        Format::Yjs => body.to_vec(),
        Format::Text => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::BadRequest("the text is not UTF-8".into()))?;
            content::text_append_update(&room.state(), text)
                .map_err(|error| ApiError::Unavailable(format!("document unreadable: {error}")))?
        }
        Format::Json => {
            return Err(ApiError::BadRequest(
                "import takes a Yjs update (format=yjs) or plain text (format=text)".into(),
            ))
        }
    };
    let outcome = room.import(&update).map_err(refused_update)?;
    super::stored(&room, &room_id, room.latest_seq()).await?;
    app.metrics.add_event(
        "import",
        &room_id,
        "",
        format!("Imported {} bytes ({})", body.len(), format.name()),
    );
    Ok(Json(ImportResponse {
        success: true,
        room_id,
        changed: matches!(outcome, UpdateOutcome::Broadcast(_)),
        doc_size: room.info().doc_size,
    }))
}

/// A refused update as the HTTP client sees it.
pub(super) fn refused_update(error: DocumentError) -> ApiError {
    match error {
        DocumentError::TooLarge { .. } => ApiError::TooLarge(error.to_string()),
        DocumentError::Unstorable(_) => ApiError::Unavailable(error.to_string()),
        _ => ApiError::BadRequest(error.to_string()),
    }
}
