//! Router assembly: every path under `/api`, the dashboard at `/`, CORS, request
//! body limits and request
//! tracing. No logic.

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use super::{auth, dashboard, rest, ws, AppState};

/// Largest request body accepted on any endpoint but import (which takes up to
/// `--max-message-bytes`), in bytes. The others take their input from the path or
/// query; the cap keeps it that way for anything a client sends anyway: 413 on a
/// larger `Content-Length`, and a body that turns out longer is cut off there.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `MAX_BODY_BYTES` on every route of `router`.
fn small_bodies(router: Router<AppState>) -> Router<AppState> {
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
}

pub fn router(app: AppState) -> Router {
    // Open to everyone, as in the original: the page polls metrics and connects.
    let public = Router::new()
        .route("/", get(rest::root))
        .route("/health", get(rest::health))
        .route("/metrics", get(rest::metrics))
        .route("/metrics/prometheus", get(rest::prometheus))
        .route("/metrics/history", get(rest::history))
        .route("/ws/{room_id}", get(ws::upgrade_json))
        .route("/yjs/{*room_id}", get(ws::upgrade_yjs));
    // Behind the admin token when one is configured.
    let admin = Router::new()
        .route("/metrics/events", get(rest::events))
        // Nodes' own addresses and what each serves, like the room listing.
        .route("/cluster", get(rest::cluster))
        .route("/rooms", get(rest::list_rooms))
        .route(
            "/rooms/{room_id}",
            get(rest::get_room).delete(rest::delete_room),
        )
        .route("/rooms/{room_id}/users", get(rest::room_users))
        .route("/rooms/{room_id}/text", get(rest::room_text))
        .route("/rooms/{room_id}/stream", get(rest::room_stream))
        .route("/rooms/{room_id}/persist", post(rest::persist))
        .route("/rooms/{room_id}/load", get(rest::load))
        .route("/rooms/{room_id}/document", get(rest::documents::document))
        .route("/rooms/{room_id}/history", get(rest::history::history))
        .route("/rooms/{room_id}/restore", post(rest::history::restore))
        .route(
            "/simulate/users/{room_id}",
            post(rest::simulate_add).delete(rest::simulate_remove),
        )
        .route_layer(from_fn_with_state(app.clone(), auth::require_admin));
    // The one endpoint that reads a body: a document, as large as a client update
    // may be. Its limit replaces the small one rather than sitting inside it.
    let import_limit = app.config.max_message_bytes;
    let import = Router::new()
        .route("/rooms/{room_id}/import", post(rest::documents::import))
        .route_layer(from_fn_with_state(app.clone(), auth::require_admin))
        .layer(DefaultBodyLimit::max(import_limit))
        .layer(RequestBodyLimitLayer::new(import_limit));
    let api = small_bodies(public.merge(admin)).merge(import);
    let pages = if app.config.dashboard {
        dashboard::router()
    } else {
        Router::new()
    };
    // The original serves its welcome at `/api/`; a nested "/" only matches `/api`.
    small_bodies(pages.route("/api/", get(rest::root)))
        .nest("/api", api)
        .layer(cors(&app.config.cors_origins))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(app)
}

/// Requests are logged by method and path only: the query may carry a room token
/// (`/api/ws/{room}?token=…`), which must not reach the logs.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The original's (Starlette's) CORS: any method and header, credentials allowed,
/// from the configured origins. With `*` and credentials a browser accepts only its
/// own origin named back, which is what Starlette answers such requests too.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true);
    if origins.iter().any(|origin| origin.trim() == "*") {
        return layer.allow_origin(AllowOrigin::mirror_request());
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(allowed))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_spaced_wildcard_among_listed_origins_allows_any_origin() {
        // Building the layer used to panic: " *" missed the wildcard test, then
        // went into the list trimmed, which tower-http refuses.
        let _ = cors(&["https://app.example".into(), " *".into()]);
        let _ = cors(&["https://app.example".into(), " https://b.example ".into()]);
    }

    #[test]
    fn request_logs_name_the_path_but_not_the_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = axum::http::Request::get("/api/ws/notes?client_id=a&token=eyJsecret")
                .body(())
                .unwrap();
            let _entered = request_span(&request).entered();
            tracing::debug!("started processing request");
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("/api/ws/notes"), "{logged}");
        assert!(!logged.contains("eyJsecret"), "{logged}");
    }
}
