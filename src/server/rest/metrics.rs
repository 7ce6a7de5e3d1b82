//! The observability endpoints: health (with the store's state), the metrics of
//! spec §6 plus coedit's additions, the event log, and the same figures in the
//! Prometheus text format.

use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PrometheusRegistry;
use serde::Deserialize;

use super::{bounded, redis_unavailable, ApiError};
use crate::api::{
    ClusterHealth, ClusterNode, ClusterView, Event, Health, Metrics, MetricsHistory, RefusedRoom,
    StoreHealth, WebhooksHealth,
};
use crate::server::history::{HISTORY_CAPACITY, SAMPLE_INTERVAL};
use crate::server::journal::StoreState;
use crate::server::AppState;

/// Default and largest `limit` for the event log.
pub const DEFAULT_EVENT_LIMIT: usize = 50;
pub const MAX_EVENT_LIMIT: usize = 1000;

pub async fn health(State(app): State<AppState>, headers: HeaderMap) -> Json<Health> {
    let journal = app.registry.journal();
    let mut refused_rooms: Vec<RefusedRoom> = journal
        .refused_rooms()
        .into_iter()
        .map(|(room, reason)| RefusedRoom { room, reason })
        .collect();
    // Health is open to probes; room names are for whoever may list rooms.
    let named = crate::server::auth::is_admin(app.config.admin_token.as_deref(), &headers);
    let refused = if named {
        format!(
            "room {}",
            refused_rooms
                .iter()
                .map(|refused| refused.room.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("{} rooms (named with the admin token)", refused_rooms.len())
    };
    let (state, reason) = match journal.state() {
        StoreState::Degraded(reason) => ("degraded", Some(reason)),
        StoreState::Healthy if !refused_rooms.is_empty() => (
            "degraded",
            Some(format!(
                "the store refuses to write {refused}: it is read-only and held in memory"
            )),
        ),
        StoreState::Healthy => ("healthy", None),
    };
    let cluster = app.cluster.as_ref().map(|cluster| {
        let problem = cluster.problem();
        ClusterHealth {
            node_id: cluster.node_id().to_owned(),
            state: if problem.is_some() {
                "degraded"
            } else {
                "healthy"
            }
            .into(),
            reason: problem,
            live_nodes: cluster.live_nodes() as u64,
        }
    });
    let webhooks = app.registry.webhooks().map(|webhooks| {
        let status = webhooks.status();
        WebhooksHealth {
            state: if status.failing.is_some() {
                "degraded"
            } else {
                "healthy"
            }
            .into(),
            reason: status.failing,
            queued: status.queued,
            delivered: status.delivered,
            failed_attempts: status.failed_attempts,
            dropped: status.dropped,
            abandoned: status.abandoned,
        }
    });
    let degraded = webhooks
        .as_ref()
        .is_some_and(|webhooks| webhooks.state == "degraded")
        || cluster
            .as_ref()
            .is_some_and(|cluster| cluster.state != "healthy");
    if !named {
        refused_rooms.clear();
    }
    Json(Health {
        status: if degraded { "degraded" } else { state }.into(),
        timestamp: crate::api::timestamp_now(),
        store: Some(StoreHealth {
            backend: journal.backend().into(),
            state: state.into(),
            reason,
            backlog: journal.backlog(),
            refused_rooms,
        }),
        cluster,
        webhooks,
    })
}

/// `GET /api/cluster`: the live nodes of this node's cluster; a lone server lists
/// itself.
pub async fn cluster(State(app): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let rfc3339 = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let Some(cluster) = &app.cluster else {
        let rooms = app.registry.loaded_rooms();
        let connections = rooms
            .iter()
            .map(|room| room.connection_count() as u64)
            .sum();
        let node_id = app.config.node_id.clone().unwrap_or_default();
        let now = crate::server::room::durable::now_ms();
        let started = now - app.metrics.uptime().as_millis() as i64;
        return Ok(Json(ClusterView {
            node_id: node_id.clone(),
            nodes: vec![ClusterNode {
                instance: node_id.clone(),
                node_id,
                address: String::new(),
                rooms: rooms.len() as u64,
                connections,
                last_heartbeat: rfc3339(now),
                started: rfc3339(started),
                this_node: true,
            }],
        }));
    };
    let nodes = cluster.nodes().await.map_err(redis_unavailable)?;
    Ok(Json(ClusterView {
        node_id: cluster.node_id().to_owned(),
        nodes: nodes
            .into_iter()
            .map(|node| ClusterNode {
                node_id: node.node_id,
                instance: node.instance,
                address: node.address,
                rooms: node.rooms,
                connections: node.connections,
                last_heartbeat: rfc3339(node.last_heartbeat_ms),
                started: rfc3339(node.started_ms),
                this_node: node.this_node,
            })
            .collect(),
    }))
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
    let webhooks = app
        .registry
        .webhooks()
        .map(|webhooks| webhooks.status())
        .unwrap_or_default();
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
        store_refused_rooms: journal.refused_rooms().len() as u64,
        yjs_connections: counters.active_yjs_connections.load(Ordering::Relaxed),
        rooms_loaded: rooms.len() as u64,
        node: app
            .cluster
            .as_ref()
            .map(|cluster| cluster.node_id().to_owned()),
        live_nodes: app
            .cluster
            .as_ref()
            .map(|cluster| cluster.live_nodes() as u64),
        webhooks_delivered: webhooks.delivered,
        webhooks_failed_attempts: webhooks.failed_attempts,
        webhooks_dropped: webhooks.dropped,
        webhooks_abandoned: webhooks.abandoned,
        webhooks_queued: webhooks.queued,
    }
}

pub async fn metrics(State(app): State<AppState>) -> Json<Metrics> {
    Json(metrics_snapshot(&app))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    limit: Option<String>,
    /// Only this room's events (added by coedit).
    room: Option<String>,
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
    Ok(Json(match query.room {
        Some(room_id) => app.metrics.recent_room_events(&room_id, limit),
        None => app.metrics.recent_events(limit),
    }))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Only samples newer than this (milliseconds since the Unix epoch), so a page
    /// that polls gets what it has not seen.
    since: Option<String>,
}

/// The last 15 minutes, second by second. Open like `/api/metrics`: the same
/// figures, over time.
pub async fn history(
    State(app): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<MetricsHistory>, ApiError> {
    let since = match query.since.as_deref() {
        None => None,
        Some(raw) => Some(raw.trim().parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "since must be milliseconds since the Unix epoch, got {raw:?}"
            ))
        })?),
    };
    Ok(Json(MetricsHistory {
        interval_seconds: SAMPLE_INTERVAL.as_secs(),
        capacity: HISTORY_CAPACITY,
        samples: app.metrics.history().since(since),
    }))
}

/// The same figures as `/api/metrics`, in the Prometheus text format.
pub async fn prometheus(State(app): State<AppState>) -> Response {
    let snapshot = metrics_snapshot(&app);
    // In a cluster every series carries the node, so one scrape config covers all.
    let mut registry = match &app.cluster {
        Some(cluster) => PrometheusRegistry::with_prefix_and_labels(
            "coedit",
            [(
                std::borrow::Cow::Borrowed("node"),
                std::borrow::Cow::Owned(cluster.node_id().to_owned()),
            )]
            .into_iter(),
        ),
        None => PrometheusRegistry::with_prefix("coedit"),
    };
    if let Some(live) = snapshot.live_nodes {
        let metric = Gauge::<i64>::default();
        metric.set(live as i64);
        registry.register("cluster_live_nodes", "Live nodes of the cluster", metric);
    }
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
    gauge(
        &mut registry,
        "store_refused_rooms",
        "Rooms whose writes the store refuses for good",
        snapshot.store_refused_rooms,
    );
    gauge(
        &mut registry,
        "webhooks_queued",
        "Webhook events waiting to be delivered",
        snapshot.webhooks_queued,
    );
    for (name, help, value) in [
        (
            "webhooks_delivered",
            "Webhook events delivered",
            snapshot.webhooks_delivered,
        ),
        (
            "webhooks_failed_attempts",
            "Webhook POSTs that failed",
            snapshot.webhooks_failed_attempts,
        ),
        (
            "webhooks_dropped",
            "Webhook events dropped on a full queue",
            snapshot.webhooks_dropped,
        ),
        (
            "webhooks_abandoned",
            "Webhook events given up after every retry",
            snapshot.webhooks_abandoned,
        ),
    ] {
        counter(&mut registry, name, help, value);
    }
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
