//! One WebSocket connection's life after the upgrade: join the room (loading it if
//! needed), then a reader loop that turns frames into room calls — rate-limited and
//! checked against the connection's access — and a writer task that drains the
//! connection's outbound queue, batching frames into one flush, and sends pings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::auth::Access;
use super::limits::{RateLimiter, Verdict};
use super::room::{
    CloseReason, ConnectionId, Kick, Member, Origin, Outbound, Protocol, Room, UpdateBytes,
    UpdateFormat,
};
use super::AppState;
use crate::api::{ClientMessage, ServerMessage};

/// Frames written before one flush, so a burst costs one syscall, not one each.
const MAX_FRAMES_PER_FLUSH: usize = 64;
/// How long a closing writer waits for the peer before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

pub async fn serve_connection(
    socket: WebSocket,
    app: AppState,
    room_id: String,
    client_id: String,
    protocol: Protocol,
    access: Access,
) {
    let connection = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (sink, stream) = socket.split();
    let (queue, outbound) = mpsc::channel(app.config.outbound_queue);
    let kick = Kick::new(app.shutdown.child_token());

    let room = loop {
        let room = match app.registry.get_or_load(&room_id).await {
            Ok(room) => room,
            Err(error) => {
                tracing::error!(%error, "refusing connection");
                app.metrics.record_error();
                close_now(
                    sink,
                    1011,
                    "room unavailable: store unreachable, retry later",
                )
                .await;
                return;
            }
        };
        let member = Member {
            client_id: client_id.clone(),
            protocol,
            queue: queue.clone(),
            kick: kick.clone(),
        };
        if room.connect(connection, member) {
            break room;
        }
    };
    // The room holds the only sender now, so the writer ends once the room lets go.
    drop(queue);

    let counters = app.metrics.counters();
    let protocol_count = match protocol {
        Protocol::Json => None,
        Protocol::Yjs => Some(&counters.active_yjs_connections),
    };
    counters.active_connections.fetch_add(1, Ordering::Relaxed);
    if let Some(count) = protocol_count {
        count.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(room = %room_id, %client_id, connection, "connected");

    let writer = tokio::spawn(write_loop(
        sink,
        outbound,
        kick.clone(),
        app.config.ping_interval,
    ));
    let peer = Peer {
        room: &room,
        connection,
        client_id: &client_id,
        kick: &kick,
        app: &app,
        protocol,
        access,
    };
    read_loop(stream, &peer).await;

    room.disconnect(connection);
    kick.kick(CloseReason::NORMAL);
    let _ = writer.await;
    counters.active_connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(count) = protocol_count {
        count.fetch_sub(1, Ordering::Relaxed);
    }
    tracing::debug!(room = %room_id, %client_id, connection, "disconnected");
}

/// One connection's view of its room, for the reader loop.
struct Peer<'a> {
    room: &'a Room,
    connection: ConnectionId,
    client_id: &'a str,
    kick: &'a Kick,
    app: &'a AppState,
    protocol: Protocol,
    access: Access,
}

impl Peer<'_> {
    fn refuse(&self, message: &str) {
        self.app.metrics.record_error();
        self.room.reply(
            self.connection,
            &ServerMessage::Error {
                message: message.to_owned(),
            },
        );
    }
}

const READ_ONLY: &str = "read-only access: updates are not accepted";

async fn read_loop(mut stream: SplitStream<WebSocket>, peer: &Peer<'_>) {
    // A peer that sends nothing (not even a pong) for three ping intervals is gone.
    let silence_limit = peer.app.config.ping_interval * 3;
    let config = &peer.app.config;
    let mut limiter = RateLimiter::new(
        config.rate_limit_per_sec,
        config.rate_limit_burst,
        Instant::now(),
    );
    loop {
        let frame = tokio::select! {
            _ = peer.kick.token().cancelled() => return,
            frame = tokio::time::timeout(silence_limit, stream.next()) => frame,
        };
        let message = match frame {
            Err(_elapsed) => {
                peer.kick.kick(CloseReason::UNRESPONSIVE);
                return;
            }
            Ok(Some(Err(error))) => {
                if is_too_big(error) {
                    peer.app.metrics.record_error();
                    peer.kick.kick(CloseReason::TOO_BIG);
                }
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(message))) => message,
        };
        let started = Instant::now();
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            match (limiter.check(started), peer.protocol) {
                (Verdict::Accept, _) => {}
                (Verdict::Refuse, Protocol::Json) => {
                    peer.refuse("rate limit exceeded: message dropped");
                    continue;
                }
                // Dropping a y-protocol update would silently fork the peer's
                // document, so that protocol closes at once.
                (Verdict::Refuse, Protocol::Yjs) | (Verdict::Close, _) => {
                    peer.app.metrics.record_error();
                    peer.kick.kick(CloseReason::RATE_LIMITED);
                    return;
                }
            }
        }
        match (peer.protocol, message) {
            (Protocol::Json, Message::Text(text)) => handle_text(peer, text.as_str()),
            (Protocol::Json, Message::Binary(_)) if peer.access == Access::ReadOnly => {
                peer.refuse(READ_ONLY)
            }
            (Protocol::Json, Message::Binary(bytes)) => {
                let origin = Origin {
                    client_id: peer.client_id,
                    format: UpdateFormat::RawBinary,
                };
                if let Err(error) = peer.room.apply_update(origin, UpdateBytes::Raw(&bytes)) {
                    peer.app.metrics.record_error();
                    peer.room.reply(
                        peer.connection,
                        &ServerMessage::Error {
                            message: error.to_string(),
                        },
                    );
                }
            }
            (Protocol::Yjs, Message::Binary(bytes)) => {
                if let Err(error) = peer.room.yjs_message(
                    peer.connection,
                    peer.client_id,
                    &bytes,
                    peer.access == Access::ReadWrite,
                ) {
                    peer.app.metrics.record_error();
                    tracing::debug!(%error, client_id = peer.client_id, "refused y-protocol frame");
                    // The binary protocol has no error message: a frame we cannot
                    // read or apply means the peer is not speaking it, so close.
                    peer.kick.kick(CloseReason::MALFORMED);
                    return;
                }
            }
            (Protocol::Yjs, Message::Text(_)) => {
                peer.app.metrics.record_error();
                peer.kick.kick(CloseReason::MALFORMED);
                return;
            }
            (_, Message::Close(_)) => return,
            (_, Message::Ping(_) | Message::Pong(_)) => continue,
        }
        peer.app.metrics.record_message(started.elapsed());
    }
}

fn handle_text(peer: &Peer<'_>, text: &str) {
    let (room, connection, client_id, app) = (peer.room, peer.connection, peer.client_id, peer.app);
    let message = match serde_json::from_str::<ClientMessage>(text) {
        Ok(message) => message,
        Err(error) => {
            app.metrics.record_error();
            let message = if serde_json::from_str::<serde_json::Value>(text).is_err() {
                "Invalid JSON".to_owned()
            } else {
                format!("Invalid message: {error}")
            };
            room.reply(connection, &ServerMessage::Error { message });
            return;
        }
    };
    match message {
        ClientMessage::Join {
            name,
            color,
            avatar_url,
        } => room.join(connection, client_id, name, color, avatar_url),
        ClientMessage::SyncRequest => room.sync_request(connection),
        ClientMessage::Update { data } => {
            // The original ignores an update without data; so do we.
            if data.is_empty() {
                return;
            }
            if peer.access == Access::ReadOnly {
                peer.refuse(READ_ONLY);
                return;
            }
            let origin = Origin {
                client_id,
                format: UpdateFormat::JsonHex,
            };
            if let Err(error) = room.apply_update(origin, UpdateBytes::Hex(&data)) {
                app.metrics.record_error();
                room.reply(
                    connection,
                    &ServerMessage::Error {
                        message: error.to_string(),
                    },
                );
            }
        }
        ClientMessage::Cursor {
            name,
            color,
            position,
            ..
        } => room.cursor(client_id, name, color, position),
        ClientMessage::Selection { selection } => room.selection(client_id, selection),
        ClientMessage::Awareness { fields } => room.awareness(client_id, fields),
        ClientMessage::Ping { timestamp } => {
            room.reply(connection, &ServerMessage::Pong { timestamp })
        }
        ClientMessage::Unknown => {
            app.metrics.record_error();
            let kind = serde_json::from_str::<TypeOnly>(text)
                .map(|typed| typed.kind)
                .unwrap_or_default();
            room.reply(
                connection,
                &ServerMessage::Error {
                    message: format!("Unknown message type: {kind}"),
                },
            );
        }
    }
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type", default)]
    kind: String,
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    kick: Kick,
    ping_interval: Duration,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        let first = tokio::select! {
            biased;
            _ = kick.token().cancelled() => break,
            message = outbound.recv() => match message {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
        };
        // Drain what else is waiting and flush once: under load most of the cost of a
        // delivery is the syscall, not the bytes.
        let written = async {
            sink.feed(to_message(first)).await?;
            for _ in 1..MAX_FRAMES_PER_FLUSH {
                match outbound.try_recv() {
                    Ok(message) => sink.feed(to_message(message)).await?,
                    Err(_) => break,
                }
            }
            sink.flush().await
        };
        let result = tokio::select! {
            // A peer that stopped reading can block the write forever; a kick wins.
            _ = kick.token().cancelled() => break,
            result = written => result,
        };
        if result.is_err() {
            return;
        }
    }
    let reason = kick.reason();
    let close = Message::Close(Some(CloseFrame {
        code: reason.code,
        reason: reason.reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close)).await;
}

async fn close_now(mut sink: SplitSink<WebSocket, Message>, code: u16, reason: &'static str) {
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close)).await;
}

/// Whether a read failed because the peer sent more than `max_message_bytes`.
fn is_too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|error| matches!(error, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

fn to_message(outbound: Outbound) -> Message {
    match outbound {
        Outbound::Text(text) => Message::Text(text),
        Outbound::Binary(bytes) => Message::Binary(bytes),
    }
}
