//! REST handlers under `/api` (spec §6), with the original's JSON shapes, and the one
//! error type every handler answers failures with. Health and metrics are in
//! `metrics`.

mod metrics;

pub use metrics::{events, health, metrics, prometheus};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::registry::LoadError;
use super::AppState;
use crate::api::{
    ApiInfo, ErrorBody, PersistResponse, RoomInfo, RoomUser, SimulateAddResponse,
    SimulateRemoveResponse,
};

/// Longest room id accepted, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 128;
/// Default `count` for the simulate endpoint (the original's).
pub const DEFAULT_SIMULATE_COUNT: u32 = 10;

/// A failure as the HTTP client sees it: a status and `{"success":false,"error":…}`.
/// Bad input is shown as is; internal details stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = ErrorBody {
            success: false,
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        tracing::error!(%error, "room load failed");
        ApiError::Unavailable(error.to_string())
    }
}

/// Room ids: 1 to `MAX_ROOM_ID_BYTES` bytes, no control characters.
pub fn validate_room_id(room_id: &str) -> Result<(), ApiError> {
    if room_id.is_empty() {
        return Err(ApiError::BadRequest("room id must not be empty".into()));
    }
    if room_id.len() > MAX_ROOM_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "room id is longer than {MAX_ROOM_ID_BYTES} bytes"
        )));
    }
    if room_id.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "room id contains control characters".into(),
        ));
    }
    Ok(())
}

/// Parses an optional integer query parameter within `range`, naming it on failure.
pub(super) fn bounded<T>(
    name: &str,
    raw: Option<&str>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be an integer from {} to {}, got {raw:?}",
            range.start(),
            range.end()
        ))),
    }
}

pub async fn root() -> Json<ApiInfo> {
    Json(ApiInfo {
        message: "CoEdit - Real-time Collaborative Editor API".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

pub async fn list_rooms(State(app): State<AppState>) -> Json<Vec<RoomInfo>> {
    Json(
        app.registry
            .loaded_rooms()
            .iter()
            .map(|room| room.info())
            .collect(),
    )
}

async fn existing_room(app: &AppState, room_id: &str) -> Result<super::room::Room, ApiError> {
    validate_room_id(room_id)?;
    app.registry
        .find(room_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Room {room_id} not found")))
}

pub async fn get_room(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<RoomInfo>, ApiError> {
    Ok(Json(existing_room(&app, &room_id).await?.info()))
}

pub async fn room_users(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<Vec<RoomUser>>, ApiError> {
    Ok(Json(existing_room(&app, &room_id).await?.users()))
}

pub async fn persist(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<PersistResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let failure = |error: &str| PersistResponse {
        success: false,
        size: None,
        error: Some(error.to_owned()),
    };
    let Some(room) = app.registry.find(&room_id).await? else {
        return Ok(Json(failure("No document found")));
    };
    let Some(state) = room.checkpoint_state() else {
        return Ok(Json(failure("No document found")));
    };
    match app.registry.store().save_checkpoint(&room_id, &state).await {
        Ok(()) => {
            app.metrics.add_event(
                "persist",
                &room_id,
                "",
                format!("Saved {} bytes", state.len()),
            );
            Ok(Json(PersistResponse {
                success: true,
                size: Some(state.len() as u64 * 2),
                error: None,
            }))
        }
        Err(error) => {
            app.registry.journal().report_failure(&error.to_string());
            tracing::error!(%error, room = %room_id, "persist failed");
            Ok(Json(failure(&format!("Store error: {error}"))))
        }
    }
}

pub async fn load(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<PersistResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let failure = |error: String| {
        Json(PersistResponse {
            success: false,
            size: None,
            error: Some(error),
        })
    };
    let checkpoint = match app.registry.store().load_checkpoint(&room_id).await {
        Ok(Some(checkpoint)) => checkpoint,
        Ok(None) => return Ok(failure("No saved document found".into())),
        Err(error) => {
            app.registry.journal().report_failure(&error.to_string());
            return Ok(failure(format!("Store error: {error}")));
        }
    };
    let room = app.registry.get_or_load(&room_id).await?;
    if let Err(error) = room.restore(&checkpoint) {
        return Ok(failure(format!("Saved document is unreadable: {error}")));
    }
    app.metrics.add_event(
        "load",
        &room_id,
        "",
        format!("Restored {} bytes", checkpoint.len()),
    );
    Ok(Json(PersistResponse {
        success: true,
        size: Some(checkpoint.len() as u64 * 2),
        error: None,
    }))
}

#[derive(Debug, Deserialize)]
pub struct SimulateQuery {
    count: Option<String>,
}

pub async fn simulate_add(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<SimulateQuery>,
) -> Result<Json<SimulateAddResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let count = bounded(
        "count",
        query.count.as_deref(),
        DEFAULT_SIMULATE_COUNT,
        1..=app.config.max_simulated_per_request,
    )?;
    let room = app.registry.get_or_load(&room_id).await?;
    let (added, total) = room.add_simulated(count).map_err(|room_for| {
        ApiError::BadRequest(format!(
            "room is at its limit of {} users: {room_for} more can be added",
            app.config.max_room_users
        ))
    })?;
    Ok(Json(SimulateAddResponse {
        success: true,
        simulated_users: added,
        total_users: total,
    }))
}

pub async fn simulate_remove(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<SimulateRemoveResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let removed = match app.registry.loaded(&room_id) {
        Some(room) => room.remove_simulated(),
        None => 0,
    };
    Ok(Json(SimulateRemoveResponse {
        success: true,
        removed,
    }))
}
