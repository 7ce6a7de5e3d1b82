//! The WebSocket endpoints: the original JSON protocol at
//! `/api/ws/{room_id}?client_id=` and the binary y-protocols at `/api/yjs/{room}`
//! (what y-websocket's `WebsocketProvider` connects to). Everything that can refuse
//! a connection is checked here, before the upgrade; `connection.rs` runs it after.
//!
//! The upgrade is done here rather than with axum's `WebSocketUpgrade` so that
//! `connection.rs` can put the socket in an `IdleIo` before tungstenite sees it:
//! that is what lets an idle connection hold no read or write buffer.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::server::create_response;

use super::auth::{self, Access, AuthError};
use super::connection::{serve_connection, Admission};
use super::rest::{validate_room_id, ApiError};
use super::room::Protocol;
use super::AppState;

#[derive(Debug, Deserialize)]
pub struct ConnectParams {
    client_id: Option<String>,
    /// Room token, required when the server has an auth secret.
    token: Option<String>,
}

/// `GET /api/ws/{room_id}`: the original JSON protocol.
pub async fn upgrade_json(
    Path(room_id): Path<String>,
    Query(params): Query<ConnectParams>,
    State(app): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    upgrade(request, room_id, params, app, Protocol::Json)
}

/// `GET /api/yjs/{*room}`: the y-protocols. Room names arrive unencoded and may
/// contain `/`, hence the wildcard.
pub async fn upgrade_yjs(
    Path(room_id): Path<String>,
    Query(params): Query<ConnectParams>,
    State(app): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    upgrade(request, room_id, params, app, Protocol::Yjs)
}

/// Everything that can refuse a connection, checked before the upgrade so a refusal
/// is a plain HTTP answer with a JSON reason: the room id, the page's origin and
/// the room token. Capacity is taken in `reserve`.
fn admit(
    app: &AppState,
    room_id: &str,
    params: &ConnectParams,
    headers: &HeaderMap,
) -> Result<Access, ApiError> {
    validate_room_id(room_id)?;
    let origins = &app.config.cors_origins;
    if !origins.iter().any(|origin| origin.trim() == "*") {
        // Browsers always send Origin on a WebSocket upgrade; checking it stops other
        // sites' pages from opening sockets with their visitors' cookies.
        if let Some(origin) = headers.get(ORIGIN).and_then(|value| value.to_str().ok()) {
            if !origins.iter().any(|allowed| allowed.trim() == origin)
                && !same_origin(origin, headers)
            {
                return Err(ApiError::Forbidden(format!(
                    "origin {origin} is not allowed"
                )));
            }
        }
    }
    let access = match &app.config.auth_secret {
        None => Access::ReadWrite,
        Some(secret) => {
            auth::verify(secret, params.token.as_deref(), room_id).map_err(|error| match error {
                AuthError::WrongRoom(_) => ApiError::Forbidden(error.to_string()),
                _ => ApiError::Unauthorized(error.to_string()),
            })?
        }
    };
    Ok(access)
}

/// Whether a page's `Origin` names the host and port it asked for (`Host`): a page
/// served beside the API, behind one proxy, is no other site even when
/// `CORS_ORIGINS` lists only the origins of development servers.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Takes the connection's places — a handshake slot, then its place under the
/// connection caps — in one step each, so concurrent upgrades cannot pass a cap
/// between a check and a count. A client id new to a full room is refused too.
fn reserve(app: &AppState, room_id: &str, client_id: &str) -> Result<Admission, ApiError> {
    let handshake = app.upgrades.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable("too many connections being opened at once; retry later".into())
    })?;
    let reservation = app
        .caps
        .reserve(room_id)
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    let user = match app.registry.loaded(room_id) {
        Some(room) => room
            .reserve_user(client_id)
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "room is at its limit of {} users; retry later",
                    app.config.max_room_users
                ))
            })?
            .map(Box::new),
        None => None,
    };
    Ok(Admission {
        reservation,
        handshake,
        user,
    })
}

fn upgrade(
    request: Request,
    room_id: String,
    params: ConnectParams,
    app: AppState,
    protocol: Protocol,
) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    let mut head = Request::from_parts(parts, ());
    // Checks the upgrade headers and computes `Sec-WebSocket-Accept`.
    let accepted = create_response(&head)
        .map_err(|error| ApiError::BadRequest(format!("not a WebSocket upgrade: {error}")))?;
    let access = admit(&app, &room_id, &params, head.headers())?;
    let client_id = params
        .client_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if client_id.len() > 256 {
        return Err(ApiError::BadRequest(
            "client_id is longer than 256 bytes".into(),
        ));
    }
    let admission = reserve(&app, &room_id, &client_id)?;
    let on_upgrade = hyper::upgrade::on(&mut head);
    app.tracker.clone().spawn(serve_connection(
        on_upgrade, app, room_id, client_id, protocol, access, admission,
    ));
    Ok(accepted.map(|()| Body::empty()))
}
