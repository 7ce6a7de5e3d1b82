//! One WebSocket connection's life after the upgrade: join the room (loading it if
//! needed), then one loop that reads frames and turns them into room calls —
//! rate-limited and checked against the connection's access — writes what the room
//! queued for the connection, batching frames into one flush, and sends pings.
//!
//! One task serves both directions: it polls the close request, the socket's writes
//! and reads, the outbound queue and a single timer together. An idle connection is
//! then one small task and no buffers (its socket is an `IdleIo`), instead of a
//! reader and a writer task sharing a lock around the socket.

use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::auth::Access;
use super::idle_io::IdleIo;
use super::limits::{RateLimiter, Verdict};
use super::room::queue;
use super::room::{
    CloseReason, ConnectionId, Kick, Member, Origin, Outbound, Protocol, Room, UpdateBytes,
    UpdateFormat,
};
use super::AppState;
use crate::api::{ClientMessage, ServerMessage};

/// Frames written before one flush, so a burst costs one syscall, not one each.
const MAX_FRAMES_PER_FLUSH: usize = 64;
/// Bytes gathered before one flush (BENCHMARKS.md, finding 3): past this a batch is
/// written and the rest waits for the next one, which bounds the write buffer.
const MAX_BYTES_PER_FLUSH: usize = 64 * 1024;
/// Rounds of work one poll of a busy connection does before it yields, so one
/// chatty connection cannot hold a worker thread.
const ROUNDS_PER_POLL: usize = 32;
/// How long a closing connection waits for the peer before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// tungstenite's read buffer, allocated for the whole life of a connection. It only
/// bounds how much tungstenite copies out of `IdleIo` per call (socket reads are
/// `IdleIo`'s, 16 KiB each), so it can be tiny: a few-KB frame then takes tens of
/// in-memory copies, not tens of syscalls. The default (128 KiB, zero-filled on
/// every read) would cost ~1.3 GB for 10,000 idle connections.
const READ_BUFFER_BYTES: usize = 256;

/// A server WebSocket over an `IdleIo`.
type Socket<S> = WebSocketStream<IdleIo<S>>;

/// Serves one accepted connection once hyper hands over the upgraded socket. This is
/// the whole task, so everything a connection keeps while idle is in its future.
pub async fn serve_connection(
    upgrade: OnUpgrade,
    app: AppState,
    room_id: String,
    client_id: String,
    protocol: Protocol,
    access: Access,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "WebSocket upgrade failed");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Data frames go straight into `IdleIo`'s buffer, batched and flushed once;
        // tungstenite writes only control frames, and at once.
        .write_buffer_size(0)
        .max_message_size(Some(app.config.max_message_bytes))
        .max_frame_size(Some(app.config.max_message_bytes));
    let io = IdleIo::new(TokioIo::new(upgraded));
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;

    let connection = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (queue, mut outbound) = queue::channel(app.config.outbound_queue);
    let kick = Kick::new(app.shutdown.child_token());

    let room = loop {
        let room = match app.registry.get_or_load(&room_id).await {
            Ok(room) => room,
            Err(error) => {
                tracing::error!(%error, "refusing connection");
                app.metrics.record_error();
                close(
                    &mut socket,
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
    // The room holds the only sender now, so the queue ends once the room lets go.
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

    let peer = Peer {
        room: &room,
        connection,
        client_id: &client_id,
        kick: &kick,
        app: &app,
        protocol,
        access,
    };
    let end = run(&mut socket, &mut outbound, &peer).await;

    room.disconnect(connection);
    kick.kick(CloseReason::NORMAL);
    if end == End::Writable {
        let reason = kick.reason();
        close(&mut socket, reason.code, reason.reason).await;
    }
    counters.active_connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(count) = protocol_count {
        count.fetch_sub(1, Ordering::Relaxed);
    }
    tracing::debug!(room = %room_id, %client_id, connection, "disconnected");
}

/// One connection's view of its room, for the loop.
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

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The socket may still take a close frame.
    Writable,
    /// Writing failed: nothing more can be sent.
    Broken,
}

/// Serves the connection until it is asked to close, the peer leaves, or the socket
/// fails. Every wake-up polls all of it; nothing here blocks.
async fn run<S>(
    socket: &mut Socket<S>,
    outbound: &mut queue::Receiver<Outbound>,
    peer: &Peer<'_>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &peer.app.config;
    let ping_interval = config.ping_interval;
    // A peer that sends nothing (not even a pong) for three ping intervals is gone.
    let silence_limit = ping_interval * 3;
    let mut limiter = RateLimiter::new(
        config.rate_limit_per_sec,
        config.rate_limit_burst,
        Instant::now(),
    );
    let mut last_heard = Instant::now();
    let mut next_ping = last_heard + ping_interval;
    // One timer for pings and silence: an incoming frame only moves `last_heard`,
    // and the timer re-checks when it fires, so no timer is re-armed per message.
    let timer = tokio::time::sleep_until(next_ping.into());
    let kicked = peer.kick.token().cancelled();
    tokio::pin!(timer, kicked);

    poll_fn(|cx| {
        for _ in 0..ROUNDS_PER_POLL {
            if kicked.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Writable);
            }
            let mut progressed = false;

            // The batch being written is finished before the next one is taken, so a
            // peer that stops reading leaves its queue to fill up, and is closed as a
            // slow consumer.
            if socket.get_ref().pending_writes() > 0 {
                match Pin::new(socket.get_mut()).poll_flush(cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "write failed");
                        return Poll::Ready(End::Broken);
                    }
                    Poll::Pending => {}
                }
            }
            if socket.get_ref().pending_writes() == 0 {
                match outbound.poll_recv(cx) {
                    Poll::Ready(Some(first)) => {
                        if queue_batch(socket.get_mut(), first, outbound).is_err() {
                            return Poll::Ready(End::Broken);
                        }
                        progressed = true;
                    }
                    Poll::Ready(None) => {
                        // The room let go of this connection.
                        peer.kick.kick(CloseReason::SHUTDOWN);
                        return Poll::Ready(End::Writable);
                    }
                    Poll::Pending => {}
                }
            }

            match socket.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    last_heard = Instant::now();
                    if handle_message(peer, &mut limiter, message, last_heard).is_break() {
                        return Poll::Ready(End::Writable);
                    }
                    progressed = true;
                }
                Poll::Ready(Some(Err(error))) => {
                    if matches!(error, WsError::Capacity(_)) {
                        peer.app.metrics.record_error();
                        peer.kick.kick(CloseReason::TOO_BIG);
                    }
                    return Poll::Ready(End::Writable);
                }
                Poll::Ready(None) => return Poll::Ready(End::Writable),
                Poll::Pending => {}
            }

            if timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                let silent_until = last_heard + silence_limit;
                if now >= silent_until {
                    peer.kick.kick(CloseReason::UNRESPONSIVE);
                    return Poll::Ready(End::Writable);
                }
                if now >= next_ping {
                    let ping = Frame::ping(Bytes::new());
                    if socket.get_mut().queue_frame(ping).is_err() {
                        return Poll::Ready(End::Broken);
                    }
                    next_ping = now + ping_interval;
                }
                timer.as_mut().reset(next_ping.min(silent_until).into());
                progressed = true;
            }

            if !progressed {
                return Poll::Pending;
            }
        }
        // Still busy: let other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Encodes `first` and whatever else is already queued, up to one flush's worth,
/// into the socket's write buffer.
fn queue_batch<S>(
    io: &mut IdleIo<S>,
    first: Outbound,
    outbound: &mut queue::Receiver<Outbound>,
) -> std::io::Result<()> {
    io.queue_frame(data_frame(first))?;
    for _ in 1..MAX_FRAMES_PER_FLUSH {
        if io.pending_writes() >= MAX_BYTES_PER_FLUSH {
            break;
        }
        match outbound.try_recv() {
            Ok(message) => io.queue_frame(data_frame(message))?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// The frame tungstenite would build for the message, encoded by the connection so
/// it bypasses tungstenite's write buffer (see `idle_io.rs`).
fn data_frame(outbound: Outbound) -> Frame {
    match outbound {
        Outbound::Text(text) => Frame::message(text, OpCode::Data(Data::Text), true),
        Outbound::Binary(bytes) => Frame::message(bytes, OpCode::Data(Data::Binary), true),
    }
}

/// One frame from the peer. `Break` ends the connection.
fn handle_message(
    peer: &Peer<'_>,
    limiter: &mut RateLimiter,
    message: Message,
    started: Instant,
) -> ControlFlow<()> {
    if matches!(message, Message::Text(_) | Message::Binary(_)) {
        match (limiter.check(started), peer.protocol) {
            (Verdict::Accept, _) => {}
            (Verdict::Refuse, Protocol::Json) => {
                peer.refuse("rate limit exceeded: message dropped");
                return ControlFlow::Continue(());
            }
            // Dropping a y-protocol update would silently fork the peer's
            // document, so that protocol closes at once.
            (Verdict::Refuse, Protocol::Yjs) | (Verdict::Close, _) => {
                peer.app.metrics.record_error();
                peer.kick.kick(CloseReason::RATE_LIMITED);
                return ControlFlow::Break(());
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
                return ControlFlow::Break(());
            }
        }
        (Protocol::Yjs, Message::Text(_)) => {
            peer.app.metrics.record_error();
            peer.kick.kick(CloseReason::MALFORMED);
            return ControlFlow::Break(());
        }
        (_, Message::Close(_)) => return ControlFlow::Break(()),
        (_, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
            return ControlFlow::Continue(())
        }
    }
    peer.app.metrics.record_message(started.elapsed());
    ControlFlow::Continue(())
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
        ClientMessage::Cursor { position, .. } => room.cursor(client_id, position),
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

/// Sends a close frame (or, when the peer closed first, tungstenite's answer to its
/// close frame) and writes out what is still buffered, giving up after
/// `CLOSE_TIMEOUT`.
async fn close<S>(socket: &mut Socket<S>, code: u16, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.send(close).await.is_err() {
            // The peer closed first: tungstenite refuses a second close frame, and
            // its flush queues the answer to the peer's.
            let _ = socket.flush().await;
        }
        // tungstenite stops flushing at `IdleIo` once the handshake is complete.
        let _ = socket.get_mut().flush().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::server::journal::Journal;
    use crate::server::metrics::Metrics;
    use crate::server::registry::Registry;
    use crate::server::store::{memory::MemoryStore, Store};
    use crate::server::Config;

    /// The task's future is most of what an idle connection costs (10,000 of them
    /// in 46 MiB): it was 1.8 KiB split in two tasks, it is ~1.3 KiB as one.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let config = Config::for_tests();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (journal, _journal_task) = Journal::start(store.clone(), config.journal_pace());
        let metrics = Metrics::new();
        let app = AppState {
            registry: Registry::new(store, journal, metrics.clone(), &config),
            config: Arc::new(config),
            metrics,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let upgrade = hyper::upgrade::on(axum::http::Request::new(()));
        let task = serve_connection(
            upgrade,
            app,
            "room".into(),
            "client".into(),
            Protocol::Json,
            Access::ReadWrite,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "a connection's task is {size} bytes");
    }
}
