//! REST handlers under `/api` (spec §6), with the original's JSON shapes, and the one
//! error type every handler answers failures with. Health and metrics are in
//! `metrics`.

pub mod documents;
pub mod history;
mod metrics;
mod watch;

pub use metrics::{cluster, events, health, history, metrics, prometheus};
pub use watch::{room_stream, room_text};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::server::document::DocumentError;

use super::registry::LoadError;
use super::AppState;
use crate::api::{
    ApiInfo, DeleteRoomResponse, ErrorBody, PersistResponse, RoomInfo, RoomUser,
    SimulateAddResponse, SimulateRemoveResponse,
};

/// Longest room id accepted, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 128;
/// How long `DELETE /api/rooms/{id}` waits for the store to have the delete.
pub const DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long an import, load or restore waits for the store to take its change
/// before answering: a success means the change survives a crash.
pub const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
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
    #[error("{0}")]
    TooLarge(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
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

/// Room ids: 1 to `MAX_ROOM_ID_BYTES` bytes, no control characters, not `.` or `..`.
pub fn validate_room_id(room_id: &str) -> Result<(), ApiError> {
    if room_id.is_empty() {
        return Err(ApiError::BadRequest("room id must not be empty".into()));
    }
    if room_id.len() > MAX_ROOM_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "room id is longer than {MAX_ROOM_ID_BYTES} bytes"
        )));
    }
    if room_id == "." || room_id == ".." {
        // A URL path cannot name them: clients resolve them as steps in the path.
        return Err(ApiError::BadRequest(format!(
            "room id must not be {room_id:?}: a URL cannot name it"
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

pub async fn root(State(app): State<AppState>) -> Json<ApiInfo> {
    Json(ApiInfo {
        message: "CoEdit - Real-time Collaborative Editor API".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        admin_token_required: app.config.admin_token.is_some(),
    })
}

/// The rooms in memory; in a cluster, the rooms in memory on any node. A room
/// only other nodes hold is described from what they keep in Redis, not loaded
/// here: polled through a load balancer, a listing would otherwise keep every
/// room of the cluster in memory on every node.
pub async fn list_rooms(State(app): State<AppState>) -> Result<Json<Vec<RoomInfo>>, ApiError> {
    let loaded = app.registry.loaded_rooms();
    let Some(cluster) = &app.cluster else {
        return Ok(Json(
            loaded.iter().map(|room| room_info(&app, room)).collect(),
        ));
    };
    let mut rooms = cluster.rooms_elsewhere().await.map_err(redis_unavailable)?;
    rooms.extend(loaded.iter().map(|room| room.id().to_owned()));
    rooms.sort();
    rooms.dedup();
    let described = cluster.describe(&rooms).await.map_err(redis_unavailable)?;
    Ok(Json(
        described
            .into_iter()
            .map(|elsewhere| cluster_room_info(&app, elsewhere))
            .collect(),
    ))
}

pub(super) fn redis_unavailable(error: redis::RedisError) -> ApiError {
    ApiError::Unavailable(format!("Redis: {error}"))
}

/// A room some node of the cluster holds: this node's own view when it holds the
/// room too, with the other nodes' connections added; otherwise what the others
/// say of it.
fn cluster_room_info(app: &AppState, elsewhere: RoomInfo) -> RoomInfo {
    let Some(room) = app.registry.loaded(&elsewhere.id) else {
        return elsewhere;
    };
    let mut info = room_info(app, &room);
    info.connections += elsewhere.connections;
    if elsewhere.last_activity > info.last_activity {
        info.last_activity = elsewhere.last_activity;
    }
    info
}

/// One room's summary; `None` for a room nobody has joined and nothing is stored
/// for. In a cluster, a room another node holds is described as `list_rooms`
/// does.
async fn describe_room(app: &AppState, room_id: &str) -> Result<Option<RoomInfo>, ApiError> {
    validate_room_id(room_id)?;
    if let Some(cluster) = &app.cluster {
        let held = app.registry.loaded(room_id).is_some()
            || cluster
                .rooms_elsewhere()
                .await
                .map_err(redis_unavailable)?
                .iter()
                .any(|held| held == room_id);
        if held {
            let described = cluster
                .describe(&[room_id.to_owned()])
                .await
                .map_err(redis_unavailable)?;
            if let Some(room) = described.into_iter().next() {
                return Ok(Some(cluster_room_info(app, room)));
            }
        }
    }
    Ok(app
        .registry
        .find(room_id)
        .await?
        .map(|room| room_info(app, &room)))
}

/// A room's summary with when it was last active, which only the metrics
/// sampler knows.
fn room_info(app: &AppState, room: &super::room::Room) -> RoomInfo {
    let mut info = room.info();
    info.last_activity = app.metrics.history().last_activity(room.id());
    info
}

/// The room if the server holds anything for it; `None` for a room nobody has
/// joined and nothing is stored for (looking it up creates nothing).
async fn known_room(app: &AppState, room_id: &str) -> Result<Option<super::room::Room>, ApiError> {
    validate_room_id(room_id)?;
    if let Some(room) = app.registry.find(room_id).await? {
        return Ok(Some(room));
    }
    // In a cluster a room another node holds may have users and no content yet.
    if let Some(cluster) = &app.cluster {
        let held = cluster.rooms_elsewhere().await.map_err(redis_unavailable)?;
        if held.iter().any(|held| held == room_id) {
            return Ok(Some(app.registry.get_or_load(room_id).await?));
        }
    }
    Ok(None)
}

/// One room. A room the server knows nothing about is an empty room with
/// `exists: false`, not a 404: the original answered that way, and dashboards poll
/// a room before anyone has joined it.
pub async fn get_room(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<RoomInfo>, ApiError> {
    Ok(Json(
        describe_room(&app, &room_id)
            .await?
            .unwrap_or_else(|| RoomInfo::empty(&room_id)),
    ))
}

/// The users of a room; `[]` for a room the server knows nothing about.
pub async fn room_users(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<Vec<RoomUser>>, ApiError> {
    Ok(Json(
        describe_room(&app, &room_id)
            .await?
            .map(|room| room.users)
            .unwrap_or_default(),
    ))
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
            // A checkpoint the store refuses as it is (too large) says nothing about
            // the store's health; anything else does.
            if !error.is_permanent() {
                app.registry.journal().report_failure(&error.to_string());
            }
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
    let room = app.registry.get_pinned(&room_id).await?;
    // A new change that every client receives, not a rewind (see `Room::restore`).
    if let Err(error) = room.restore(&checkpoint) {
        return Ok(failure(match error {
            DocumentError::Unstorable(_) | DocumentError::TooLarge { .. } => error.to_string(),
            _ => format!("Saved document is unreadable: {error}"),
        }));
    }
    if let Err(error) = stored(&room, &room_id, room.latest_seq()).await {
        return Ok(failure(error.to_string()));
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

/// Deletes a room: its connections are closed (code 4404, "room deleted"), it
/// leaves memory, and everything stored for it is removed. 404 for a room the
/// server knows nothing of; 503 when the store did not confirm in time (the delete
/// stays queued, and the room cannot be opened until it is written).
pub async fn delete_room(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<DeleteRoomResponse>, ApiError> {
    validate_room_id(&room_id)?;
    let Some(deleted) = app.registry.delete(&room_id, DELETE_WAIT).await? else {
        return Err(ApiError::NotFound(format!(
            "room {room_id} does not exist: nobody is in it and nothing is stored for it"
        )));
    };
    app.metrics.add_event(
        "delete",
        &room_id,
        "",
        format!("Deleted; closed {} connections", deleted.closed_connections),
    );
    if !deleted.written {
        return Err(ApiError::Unavailable(format!(
            "room {room_id} is closed, but the store has not confirmed the delete yet: it \
             is written once the store is back, and the room cannot be opened until then"
        )));
    }
    Ok(Json(DeleteRoomResponse {
        success: true,
        room_id,
        closed_connections: deleted.closed_connections as u64,
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
    let room = app.registry.get_pinned(&room_id).await?;
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
    let mut removed = match app.registry.loaded(&room_id) {
        Some(room) => room.remove_simulated(),
        None => 0,
    };
    // In a cluster, those another node added go too, whichever node is asked.
    if let Some(cluster) = &app.cluster {
        removed += cluster.remove_simulated(&room_id).await.map_err(|error| {
            ApiError::Unavailable(format!(
                "removed {removed} simulated users here; cannot reach the other nodes: {error}"
            ))
        })?;
    }
    Ok(Json(SimulateRemoveResponse {
        success: true,
        removed,
    }))
}

/// Polls `ready` until it gives a value, or answers `Unavailable` with `late()`
/// once `wait` has passed: how a REST answer waits for the store to take a
/// room's latest change.
pub(super) async fn once_stored<T>(
    wait: std::time::Duration,
    late: impl FnOnce() -> String,
    mut ready: impl FnMut() -> Result<Option<T>, ApiError>,
) -> Result<T, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Unavailable(late()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until the store holds `room`'s changes up to `seq` (a REST write's own),
/// so its success answer means what a client's write-ahead relay means. Unavailable
/// when the store has not taken it within `WRITE_WAIT`: the change stays in the
/// room and is written once the store is back.
pub(super) async fn stored(
    room: &crate::server::room::Room,
    room_id: &str,
    seq: u64,
) -> Result<(), ApiError> {
    once_stored(
        WRITE_WAIT,
        || format!("room {room_id} took the change, but the store has not yet: it is written when the store is back"),
        || match room.has_written(seq) {
            Ok(written) => Ok(written.then_some(())),
            Err(error) => Err(ApiError::Unavailable(error.to_string())),
        },
    )
    .await
}
