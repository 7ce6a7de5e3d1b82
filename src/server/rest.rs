//! REST handlers under `/api` (spec §6), with the original's JSON shapes, and the one
//! error type every handler answers failures with.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PrometheusRegistry;
use serde::Deserialize;

use super::journal::StoreState;
use super::registry::LoadError;
use super::AppState;
use crate::api::{
    ApiInfo, ErrorBody, Event, Health, Metrics, PersistResponse, RoomInfo, RoomUser,
    SimulateAddResponse, SimulateRemoveResponse, StoreHealth,
};

/// Longest room id accepted, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 128;
/// Default and largest `limit` for the event log.
pub const DEFAULT_EVENT_LIMIT: usize = 50;
pub const MAX_EVENT_LIMIT: usize = 1000;
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
fn bounded<T>(
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

pub async fn health(State(app): State<AppState>) -> Json<Health> {
    let journal = app.registry.journal();
    let (state, reason) = match journal.state() {
        StoreState::Healthy => ("healthy", None),
        StoreState::Degraded(reason) => ("degraded", Some(reason)),
    };
    Json(Health {
        status: state.into(),
        timestamp: crate::api::timestamp_now(),
        store: Some(StoreHealth {
            backend: journal.backend().into(),
            state: state.into(),
            reason,
            backlog: journal.backlog(),
        }),
    })
}

fn metrics_snapshot(app: &AppState) -> Metrics {
    let counters = app.metrics.counters();
    let latency = app.metrics.latency();
    let rooms = app.registry.loaded_rooms();
    let mut rooms_active = 0;
    let mut total_doc_size = 0;
    for room in &rooms {
        let info = room.info();
        if info.connections > 0 || info.user_count > 0 {
            rooms_active += 1;
        }
        total_doc_size += info.doc_size;
    }
    let journal = app.registry.journal();
    Metrics {
        active_connections: counters.active_connections.load(Ordering::Relaxed),
        messages_per_sec: (app.metrics.messages_per_sec() * 100.0).round() / 100.0,
        p50_latency_ms: latency.p50_ms,
        p95_latency_ms: latency.p95_ms,
        p99_latency_ms: latency.p99_ms,
        max_latency_ms: latency.max_ms,
        error_count: counters.error_count.load(Ordering::Relaxed),
        reconnect_count: counters.reconnect_count.load(Ordering::Relaxed),
        total_doc_size_bytes: total_doc_size,
        uptime_seconds: (app.metrics.uptime().as_secs_f64() * 10.0).round() / 10.0,
        total_messages: counters.total_messages.load(Ordering::Relaxed),
        rooms_active,
        messages_delivered: counters.messages_delivered.load(Ordering::Relaxed),
        slow_consumer_disconnects: counters.slow_consumer_disconnects.load(Ordering::Relaxed),
        rejected_updates: counters.rejected_updates.load(Ordering::Relaxed),
        panics_caught: counters.panics_caught.load(Ordering::Relaxed),
        store_errors: journal.errors(),
        store_backlog: journal.backlog(),
        yjs_connections: counters.active_yjs_connections.load(Ordering::Relaxed),
        rooms_loaded: rooms.len() as u64,
    }
}

pub async fn metrics(State(app): State<AppState>) -> Json<Metrics> {
    Json(metrics_snapshot(&app))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    limit: Option<String>,
}

pub async fn events(
    State(app): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = bounded(
        "limit",
        query.limit.as_deref(),
        DEFAULT_EVENT_LIMIT,
        1..=MAX_EVENT_LIMIT,
    )?;
    Ok(Json(app.metrics.recent_events(limit)))
}

/// The same figures as `/api/metrics`, in the Prometheus text format.
pub async fn prometheus(State(app): State<AppState>) -> Response {
    let snapshot = metrics_snapshot(&app);
    let mut registry = PrometheusRegistry::with_prefix("coedit");
    let gauge = |registry: &mut PrometheusRegistry, name: &str, help: &str, value: u64| {
        let metric = Gauge::<i64>::default();
        metric.set(value as i64);
        registry.register(name, help, metric);
    };
    let float = |registry: &mut PrometheusRegistry, name: &str, help: &str, value: f64| {
        let metric = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        metric.set(value);
        registry.register(name, help, metric);
    };
    let counter = |registry: &mut PrometheusRegistry, name: &str, help: &str, value: u64| {
        let metric = Counter::<u64>::default();
        metric.inc_by(value);
        registry.register(name, help, metric);
    };
    gauge(
        &mut registry,
        "active_connections",
        "Open WebSocket connections",
        snapshot.active_connections,
    );
    gauge(
        &mut registry,
        "yjs_connections",
        "Open connections on the y-protocols endpoint",
        snapshot.yjs_connections,
    );
    gauge(
        &mut registry,
        "rooms_active",
        "Rooms with connections or users",
        snapshot.rooms_active,
    );
    gauge(
        &mut registry,
        "rooms_loaded",
        "Rooms held in memory",
        snapshot.rooms_loaded,
    );
    gauge(
        &mut registry,
        "doc_size_bytes",
        "Sum of loaded documents' encoded sizes",
        snapshot.total_doc_size_bytes,
    );
    gauge(
        &mut registry,
        "store_backlog",
        "Accepted updates not yet written to the store",
        snapshot.store_backlog,
    );
    float(
        &mut registry,
        "messages_per_second",
        "Client messages per second, last 10 s",
        snapshot.messages_per_sec,
    );
    float(
        &mut registry,
        "latency_p50_ms",
        "Message processing latency, median",
        snapshot.p50_latency_ms,
    );
    float(
        &mut registry,
        "latency_p95_ms",
        "Message processing latency, 95th percentile",
        snapshot.p95_latency_ms,
    );
    float(
        &mut registry,
        "latency_p99_ms",
        "Message processing latency, 99th percentile",
        snapshot.p99_latency_ms,
    );
    float(
        &mut registry,
        "latency_max_ms",
        "Message processing latency, maximum",
        snapshot.max_latency_ms,
    );
    float(
        &mut registry,
        "uptime_seconds",
        "Seconds since start",
        snapshot.uptime_seconds,
    );
    counter(
        &mut registry,
        "messages",
        "Client messages processed",
        snapshot.total_messages,
    );
    counter(
        &mut registry,
        "messages_delivered",
        "Messages queued to recipients",
        snapshot.messages_delivered,
    );
    counter(
        &mut registry,
        "errors",
        "Errors answered to clients",
        snapshot.error_count,
    );
    counter(
        &mut registry,
        "reconnects",
        "Client ids seen again in a room",
        snapshot.reconnect_count,
    );
    counter(
        &mut registry,
        "slow_consumer_disconnects",
        "Connections closed for not reading",
        snapshot.slow_consumer_disconnects,
    );
    counter(
        &mut registry,
        "panics_caught",
        "Panics in decoding untrusted data, caught",
        snapshot.panics_caught,
    );
    counter(
        &mut registry,
        "rejected_updates",
        "Malformed updates refused",
        snapshot.rejected_updates,
    );
    counter(
        &mut registry,
        "store_errors",
        "Failed store operations",
        snapshot.store_errors,
    );

    let mut body = String::new();
    if let Err(error) = encode(&mut body, &registry) {
        tracing::error!(%error, "prometheus encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
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
    let (added, total) = room.add_simulated(count);
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
