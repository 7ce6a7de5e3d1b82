//! Watching a room without joining it, for the dashboard's room page: its text
//! now (`GET /api/rooms/{id}/text`) and as it changes, with its users and their
//! cursors (`GET /api/rooms/{id}/stream`, server-sent events). A watcher is not a
//! member of the room: it is not listed, announced, or sent any room traffic.
//!
//! The stream looks at the room every `TEXT_EVERY` and copies the text only when
//! the room's revision moved, so an idle room costs one short lock per look and a
//! busy one never has its document re-encoded for a watcher. Like every client, a
//! watcher is shown a change only once the store has it (write-ahead relay).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};

use super::{known_room, validate_room_id, ApiError};
use crate::api::RoomText;
use crate::server::AppState;

/// How often the stream looks for new text: fast enough to look live as people type.
const TEXT_EVERY: Duration = Duration::from_millis(100);
/// Users and cursors are looked at every this many text looks.
const USERS_EVERY_LOOKS: u32 = 3;
/// How long `/text` waits for the store to take the latest change.
const TEXT_WAIT: Duration = Duration::from_secs(2);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The room's text once the store has it; an empty, not-loaded answer for a room
/// the server knows nothing about (as `GET /api/rooms/{id}` answers it).
pub async fn room_text(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<RoomText>, ApiError> {
    let Some(room) = known_room(&app, &room_id).await? else {
        return Ok(Json(RoomText {
            room_id,
            text: String::new(),
            revision: 0,
            loaded: false,
        }));
    };
    // A change still on its way to the store is shown once it is there: one
    // group commit, normally. A store that keeps failing makes this an error.
    let (revision, text) = super::once_stored(
        TEXT_WAIT,
        || format!("room {room_id} has changes the store has not taken yet"),
        || Ok(room.text_if_changed(None)),
    )
    .await?;
    Ok(Json(RoomText {
        room_id,
        text,
        revision,
        loaded: true,
    }))
}

/// Server-sent events: `text` (a `RoomText`) whenever the document changes and
/// `users` (the `/users` listing) whenever someone comes, goes or moves a cursor.
/// A room that is not in memory is reported once with `loaded: false`; it is not
/// loaded for the watcher's sake, so watching never keeps a room in memory.
pub async fn room_stream(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    validate_room_id(&room_id)?;
    let mut ticker = tokio::time::interval(TEXT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        app,
        room_id,
        ticker,
        looks: 0,
        seen_revision: None,
        seen_loaded: None,
        seen_users: None,
        pending: VecDeque::new(),
    };
    let events = stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(event) = watch.pending.pop_front() {
                return Some((Ok(event), watch));
            }
            // Ends with the server, so a watcher never holds up a graceful shutdown.
            tokio::select! {
                _ = watch.app.shutdown.cancelled() => return None,
                _ = watch.ticker.tick() => watch.look(),
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

struct Watch {
    app: AppState,
    room_id: String,
    ticker: tokio::time::Interval,
    looks: u32,
    seen_revision: Option<u64>,
    seen_loaded: Option<bool>,
    /// The last `users` event's JSON, to send only changes.
    seen_users: Option<String>,
    pending: VecDeque<Event>,
}

impl Watch {
    fn look(&mut self) {
        let room = self.app.registry.loaded(&self.room_id);
        let loaded = room.is_some();
        if self.seen_loaded != Some(loaded) {
            // A room loaded afresh starts from its own revision numbers.
            self.seen_revision = None;
            self.seen_users = None;
            self.looks = 0;
        }
        let Some(room) = room else {
            if self.seen_loaded != Some(false) {
                self.seen_loaded = Some(false);
                self.send_text(String::new(), 0, false);
                self.send_users("[]".into());
            }
            return;
        };
        self.seen_loaded = Some(true);
        if let Some((revision, text)) = room.text_if_changed(self.seen_revision) {
            self.seen_revision = Some(revision);
            self.send_text(text, revision, true);
        }
        if self.looks.is_multiple_of(USERS_EVERY_LOOKS) {
            match serde_json::to_string(&room.users()) {
                Ok(users) => self.send_users(users),
                Err(error) => tracing::error!(%error, "cannot encode a room's users"),
            }
        }
        self.looks = self.looks.wrapping_add(1);
    }

    fn send_text(&mut self, text: String, revision: u64, loaded: bool) {
        let body = RoomText {
            room_id: self.room_id.clone(),
            text,
            revision,
            loaded,
        };
        match Event::default().event("text").json_data(&body) {
            Ok(event) => self.pending.push_back(event),
            Err(error) => tracing::error!(%error, "cannot encode a room's text"),
        }
    }

    fn send_users(&mut self, users: String) {
        if self.seen_users.as_deref() == Some(users.as_str()) {
            return;
        }
        self.pending
            .push_back(Event::default().event("users").data(users.clone()));
        self.seen_users = Some(users);
    }
}
