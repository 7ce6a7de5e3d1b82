//! One WebSocket connection's life after the upgrade: join the room (loading it if
//! needed), then one loop that reads frames and turns them into room calls —
//! rate-limited and checked against the connection's access — writes what the room
//! queued for the connection, batching frames into one flush, and sends pings.
//!
//! One task serves both directions: it polls the close request, the socket's writes
//! and reads, the outbound queue and a single timer together. An idle connection is
//! then one small task and no buffers (its socket is an `IdleIo`), instead of a
//! reader and a writer task sharing a lock around the socket. While it waits with
//! nothing of its own to write, the task lends its socket to the room's senders,
//! which then write a message straight to it instead of queueing it and waking the
//! task (`direct.rs`); every poll takes the socket back first.
//!
//! Bounds: every frame read counts against the rate limit, control frames
//! included; what the connection holds for its socket (encoded frames, pongs) is
//! reported to its queue, so the byte budget covers all of it. A `Membership`
//! guard leaves the room and fixes the counters however the task ends, and a panic
//! while handling one message closes that connection (1011), not the server.

use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::auth::Access;
use super::direct;
use super::idle_io::{AsidePayload, IdleIo};
use super::limits::{RateLimiter, Reservation, Verdict};
use super::metrics::Metrics;
use super::registry::LoadError;
use super::room::queue::{self, Weigh};
use super::room::{
    close_slow_consumer, CloseReason, ConnectionId, Kick, Member, Origin, Outbound, Protocol, Room,
    UpdateBytes, UpdateFormat, YjsError,
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

/// What a connection was admitted with before its upgrade: its place under the
/// connection caps (held until the task ends) and its handshake slot (held until
/// it has joined its room).
pub struct Admission {
    pub reservation: Reservation,
    pub handshake: OwnedSemaphorePermit,
    /// The client id's place among the room's users, held until it has joined
    /// (boxed: it lives in every connection task's state until then).
    pub user: Option<Box<crate::server::room::UserPlace>>,
}

/// Serves one accepted connection once hyper hands over the upgraded socket. This is
/// the whole task, so everything a connection keeps while idle is in its future.
pub async fn serve_connection(
    upgrade: OnUpgrade,
    app: AppState,
    room_id: String,
    client_id: String,
    protocol: Protocol,
    access: Access,
    admission: Admission,
) {
    let Admission {
        reservation: _reservation,
        handshake,
        mut user,
    } = admission;
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "WebSocket upgrade failed");
            return;
        }
    };
    // The accept loop serves plain TCP, so senders can write to the socket
    // directly (`direct.rs`); anything else is served through the queue alone.
    let (io, writer) = direct::open(upgraded);
    let direct = writer.map(|writer| Box::new(writer) as Box<dyn queue::Direct<Outbound>>);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Data frames go straight into `IdleIo`'s buffer, batched and flushed once;
        // tungstenite writes only control frames, and at once.
        .write_buffer_size(0)
        .max_message_size(Some(app.config.max_message_bytes))
        .max_frame_size(Some(app.config.max_message_bytes));
    // Ready at once (there is no handshake left to do). Not awaited, so the task's
    // state keeps no copy of the stream for an await point that never waits
    // (~100 bytes less per connection).
    let Some(mut socket) =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never()
    else {
        tracing::error!("the WebSocket over an upgraded connection was not ready at once");
        return;
    };
    socket.get_mut().read_aside(app.config.max_message_bytes);

    let connection = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    // Made after the socket, so dropped before it: a queue that can write to the
    // socket is gone before the socket closes.
    let (queue, mut outbound) = queue::channel_with_direct(
        app.config.outbound_queue,
        app.config.max_outbound_bytes,
        direct,
    );
    let kick = Kick::new(app.shutdown.child_token());

    let room = loop {
        let room = match app.registry.get_or_load(&room_id).await {
            Ok(room) => room,
            Err(error) => {
                tracing::error!(%error, "refusing connection");
                app.metrics.record_error();
                let reason = match error {
                    LoadError::Store { .. } => "room unavailable: store unreachable, retry later",
                    LoadError::Document { .. } => {
                        "room unavailable: its stored document is unreadable"
                    }
                };
                close(&mut socket, 1011, reason).await;
                return;
            }
        };
        // A room that was not in memory at the upgrade (or was unloaded or
        // deleted since) had no place taken for this client id: it is taken now,
        // under the same cap.
        if !user.as_ref().is_some_and(|place| place.is_in(&room)) {
            // The old room's place goes first.
            drop(user.take());
            match room.reserve_user(&client_id) {
                Ok(place) => user = place.map(Box::new),
                Err(_) => {
                    app.metrics.record_error();
                    close(
                        &mut socket,
                        1013,
                        "room is at its limit of users; retry later",
                    )
                    .await;
                    return;
                }
            }
        }
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
    // From here on, whatever ends this task leaves the room.
    let membership = Membership::new(room, connection, kick.clone(), &app.metrics, protocol);
    drop(handshake);
    drop(user);
    // The room holds the only sender now, so the queue ends once the room lets go.
    drop(queue);
    tracing::debug!(room = %room_id, %client_id, connection, "connected");

    let peer = Peer {
        room: &membership.room,
        connection,
        client_id: &client_id,
        kick: &kick,
        app: &app,
        protocol,
        access,
    };
    let end = run(&mut socket, &mut outbound, &peer).await;

    // Leave first, so the others hear of it without waiting for the close handshake.
    drop(membership);
    if end == End::Writable {
        finish_started_frame(socket.get_mut(), &mut outbound);
        let reason = kick.reason();
        close(&mut socket, reason.code, reason.reason).await;
    }
    tracing::debug!(room = %room_id, %client_id, connection, "disconnected");
}

/// A connection's membership of its room and of the connection counters. Dropping
/// it — at the end of the task, on an early return, or while a panic unwinds —
/// removes the member (the others get `user_left` and the awareness removal),
/// asks the task to close, and takes the connection off the counters, so the room
/// can unload.
struct Membership {
    room: Room,
    connection: ConnectionId,
    kick: Kick,
    metrics: Metrics,
    protocol: Protocol,
}

impl Membership {
    fn new(
        room: Room,
        connection: ConnectionId,
        kick: Kick,
        metrics: &Metrics,
        protocol: Protocol,
    ) -> Self {
        let counters = metrics.counters();
        counters.active_connections.fetch_add(1, Ordering::Relaxed);
        if protocol == Protocol::Yjs {
            counters
                .active_yjs_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        Self {
            room,
            connection,
            kick,
            metrics: metrics.clone(),
            protocol,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.disconnect(self.connection);
        self.kick.kick(CloseReason::NORMAL);
        let counters = self.metrics.counters();
        counters.active_connections.fetch_sub(1, Ordering::Relaxed);
        if self.protocol == Protocol::Yjs {
            counters
                .active_yjs_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
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
    // Bytes waiting in the socket's write buffer, as last reported to the queue,
    // and the size of the first frame of the batch being written (the head).
    let mut held = 0;
    let mut head = 0;
    // One timer for pings and silence: an incoming frame only moves `last_heard`,
    // and the timer re-checks when it fires, so no timer is re-armed per message.
    let timer = tokio::time::sleep_until(next_ping.into());
    let kicked = peer.kick.token().cancelled();
    tokio::pin!(timer, kicked);

    poll_fn(|cx| {
        // Senders may have been writing to the socket while the task was parked;
        // from here on only the task writes, until it parks again.
        outbound.take_socket();
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
                        match queue_batch(socket.get_mut(), first, outbound) {
                            Ok(largest) => head = largest,
                            Err(_) => return Poll::Ready(End::Broken),
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

            let before_read = socket.get_ref().pending_writes();
            match socket.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    last_heard = Instant::now();
                    let incoming = Incoming::new(message, socket.get_mut());
                    let handled = catch_unwind(AssertUnwindSafe(|| {
                        handle_message(peer, &mut limiter, incoming, last_heard)
                    }));
                    match handled {
                        Ok(ControlFlow::Continue(())) => {}
                        Ok(ControlFlow::Break(())) => return Poll::Ready(End::Writable),
                        Err(_) => {
                            panicked(peer);
                            return Poll::Ready(End::Writable);
                        }
                    }
                    progressed = true;
                }
                Poll::Ready(Some(Err(error))) => {
                    if matches!(error, WsError::Capacity(_)) {
                        tracing::warn!(
                            client_id = %peer.client_id,
                            %error,
                            "message over the size limit: closing"
                        );
                        peer.app.metrics.record_error();
                        peer.kick.kick(CloseReason::TOO_BIG);
                    } else if matches!(error, WsError::Utf8(_)) {
                        not_utf8(peer);
                    }
                    return Poll::Ready(End::Writable);
                }
                Poll::Ready(None) => return Poll::Ready(End::Writable),
                Poll::Pending => {}
            }
            // tungstenite answers a ping while reading, straight into the socket's
            // buffer: a reply that finds the budget used up closes the connection
            // like any other message would.
            if socket.get_ref().pending_writes() > before_read
                && outbound.over_budget(before_read, head)
            {
                close_slow_consumer(peer.kick, &peer.app.metrics, peer.client_id);
                return Poll::Ready(End::Writable);
            }

            if timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                let silent_until = last_heard + silence_limit;
                if now >= silent_until {
                    peer.kick.kick(CloseReason::UNRESPONSIVE);
                    return Poll::Ready(End::Writable);
                }
                if now >= next_ping {
                    // A peer still reading what is pending needs no ping to prove it
                    // is there; one that is not is closed by the silence check.
                    if socket.get_ref().pending_writes() == 0 {
                        let ping = Frame::ping(Bytes::new());
                        if socket.get_mut().queue_frame(ping).is_err() {
                            return Poll::Ready(End::Broken);
                        }
                    }
                    next_ping = now + ping_interval;
                }
                timer.as_mut().reset(next_ping.min(silent_until).into());
                progressed = true;
            }

            if !progressed {
                let pending = socket.get_ref().pending_writes();
                report_held(outbound, pending, &mut held, &mut head);
                if pending == 0 {
                    outbound.lend_socket();
                }
                return Poll::Pending;
            }
        }
        report_held(
            outbound,
            socket.get_ref().pending_writes(),
            &mut held,
            &mut head,
        );
        // Still busy: let other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Tells the queue how many bytes wait in the socket's buffer (`head` of them the
/// batch's largest frame), when that changed, so the room's sends count them
/// against the byte budget.
fn report_held(
    outbound: &queue::Receiver<Outbound>,
    pending: usize,
    held: &mut usize,
    head: &mut usize,
) {
    if pending == 0 {
        *head = 0;
    }
    if pending != *held {
        outbound.set_held(pending, *head);
        *held = pending;
    }
}

/// Handling a message panicked: the room is consistent (its lock survives a panic
/// and the document restores itself), but this connection's state may not be, so
/// it is closed with 1011; its `Membership` then takes it out of the room.
fn panicked(peer: &Peer<'_>) {
    let metrics = &peer.app.metrics;
    metrics
        .counters()
        .panics_caught
        .fetch_add(1, Ordering::Relaxed);
    metrics.record_error();
    tracing::error!(
        room = peer.room.id(),
        client_id = peer.client_id,
        "handling a message panicked; closing the connection"
    );
    peer.kick.kick(CloseReason::INTERNAL);
}

/// Encodes `first` and whatever else is already queued, up to one flush's worth,
/// into the socket's write buffer; returns the weight of the largest message.
/// That one is what the byte budget lets through whole (`report_held`): counting
/// the first instead let a full document sync behind a cursor message fill the
/// budget alone and close an honest client as a slow consumer.
fn queue_batch<S>(
    io: &mut IdleIo<S>,
    first: Outbound,
    outbound: &mut queue::Receiver<Outbound>,
) -> std::io::Result<usize> {
    let mut largest = first.weight();
    queue_message(io, first)?;
    for _ in 1..MAX_FRAMES_PER_FLUSH {
        if io.pending_writes() >= MAX_BYTES_PER_FLUSH {
            break;
        }
        match outbound.try_recv() {
            Ok(message) => {
                largest = largest.max(message.weight());
                queue_message(io, message)?;
            }
            Err(_) => break,
        }
    }
    Ok(largest)
}

/// Before a close frame: the rest of a frame a sender began writing straight to
/// the socket, if it waits at the head of the queue, goes out first. A peer kicked
/// as a slow consumer by the write that cut it short otherwise read the close
/// frame as that frame's payload, and saw a broken stream instead of the reason.
fn finish_started_frame<S>(io: &mut IdleIo<S>, outbound: &mut queue::Receiver<Outbound>) {
    if let Ok(Outbound::Wire(rest)) = outbound.try_recv() {
        io.queue_bytes(&rest);
    }
}

/// Encodes the frame tungstenite would build for the message into the socket's
/// buffer, bypassing tungstenite's own (see `idle_io.rs`); the rest of a frame a
/// sender started writing goes in as it is.
fn queue_message<S>(io: &mut IdleIo<S>, message: Outbound) -> std::io::Result<()> {
    let frame = match message {
        Outbound::Text(text) => Frame::message(text, OpCode::Data(Data::Text), true),
        Outbound::Binary(bytes) => Frame::message(bytes, OpCode::Data(Data::Binary), true),
        Outbound::Wire(bytes) => {
            io.queue_bytes(&bytes);
            return Ok(());
        }
    };
    io.queue_frame(frame)
}

/// A message from the peer, as tungstenite read it or as `IdleIo` read it aside.
enum Incoming {
    Message(Message),
    /// A large text frame, not yet checked as UTF-8.
    LargeText(Vec<u8>),
}

impl Incoming {
    /// `message`, or the frame read aside in its place (an empty data message
    /// stands in for one).
    fn new<S>(message: Message, io: &mut IdleIo<S>) -> Self {
        let empty = match &message {
            Message::Text(text) => text.is_empty(),
            Message::Binary(bytes) => bytes.is_empty(),
            _ => false,
        };
        // Only an empty message can stand in for one, so others never look.
        match empty.then(|| io.take_aside()).flatten() {
            Some(AsidePayload::Text(text)) => Self::LargeText(text),
            Some(AsidePayload::Binary(bytes)) => Self::Message(Message::Binary(bytes.into())),
            None => Self::Message(message),
        }
    }
}

/// A text message that is not UTF-8: tungstenite refuses it, and so does a large
/// one read aside; either closes the connection with 1007.
fn not_utf8(peer: &Peer<'_>) {
    tracing::debug!(client_id = %peer.client_id, "text message not UTF-8: closing");
    peer.app.metrics.record_error();
    peer.kick.kick(CloseReason::NOT_UTF8);
}

/// One frame from the peer. `Break` ends the connection.
fn handle_message(
    peer: &Peer<'_>,
    limiter: &mut RateLimiter,
    incoming: Incoming,
    started: Instant,
) -> ControlFlow<()> {
    let message = match incoming {
        Incoming::Message(message) => message,
        Incoming::LargeText(text) => {
            if let Some(refused) = admit_data(peer, limiter, started, || false) {
                return refused;
            }
            let flow = handle_large_text(peer, text);
            peer.app.metrics.record_message(started.elapsed());
            return flow;
        }
    };
    #[cfg(test)]
    if let Message::Binary(bytes) = &message {
        if bytes.as_ref() == tests::PANIC_FRAME {
            peer.room.panic_while_locked();
        }
    }
    // Control frames cost a read and, for a ping, a reply: they are counted like
    // data. Over the rate they are ignored (tungstenite has already answered a
    // ping, within the byte budget); sustained, the connection is closed.
    if matches!(message, Message::Ping(_) | Message::Pong(_)) {
        if limiter.check(started) == Verdict::Close {
            peer.app.metrics.record_error();
            peer.kick.kick(CloseReason::RATE_LIMITED);
            return ControlFlow::Break(());
        }
        return ControlFlow::Continue(());
    }
    if matches!(message, Message::Text(_) | Message::Binary(_)) {
        let awareness_only =
            || matches!(&message, Message::Binary(frame) if super::room::only_awareness(frame));
        if let Some(refused) = admit_data(peer, limiter, started, awareness_only) {
            return refused;
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
            match peer.room.yjs_message(
                peer.connection,
                peer.client_id,
                &bytes,
                peer.access == Access::ReadWrite,
            ) {
                // Each message past the first counts as a frame of its own.
                Ok(count) => {
                    for _ in 1..count {
                        if let Some(refused) = admit_data(peer, limiter, started, || false) {
                            return refused;
                        }
                    }
                }
                Err(error) => {
                    peer.app.metrics.record_error();
                    tracing::debug!(%error, client_id = peer.client_id, "refused y-protocol frame");
                    // The binary protocol has no error message: a frame we cannot
                    // read or apply means the peer is not speaking it, so close; one
                    // over a bound closes with a reason naming the bound.
                    let reason = match error {
                        YjsError::Refused(reason) => reason,
                        _ => CloseReason::MALFORMED,
                    };
                    peer.kick.kick(reason);
                    return ControlFlow::Break(());
                }
            }
        }
        (Protocol::Yjs, Message::Text(_)) => return text_on_binary_protocol(peer),
        (_, Message::Close(_)) => return ControlFlow::Break(()),
        (_, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
            return ControlFlow::Continue(())
        }
    }
    peer.app.metrics.record_message(started.elapsed());
    ControlFlow::Continue(())
}

/// Counts a data message against the peer's rate: `None` when it may be handled,
/// otherwise what `handle_message` returns instead (`Continue` when only the
/// message is dropped, with an error to a JSON peer; a y-protocol frame is dropped
/// only when `droppable`, asked only then).
fn admit_data(
    peer: &Peer<'_>,
    limiter: &mut RateLimiter,
    started: Instant,
    droppable: impl FnOnce() -> bool,
) -> Option<ControlFlow<()>> {
    match (limiter.check(started), peer.protocol) {
        (Verdict::Accept, _) => None,
        (Verdict::Refuse, Protocol::Json) => {
            peer.refuse("rate limit exceeded: message dropped");
            Some(ControlFlow::Continue(()))
        }
        // Presence alone: dropped, as the JSON protocol's messages are. Providers
        // send back every state they are sent, so a busy room's cursors can take
        // an honest provider over the rate for a while.
        (Verdict::Refuse, Protocol::Yjs) if droppable() => Some(ControlFlow::Continue(())),
        // Dropping a y-protocol update would silently fork the peer's
        // document, so that protocol closes at once.
        (Verdict::Refuse, Protocol::Yjs) | (Verdict::Close, _) => {
            peer.app.metrics.record_error();
            peer.kick.kick(CloseReason::RATE_LIMITED);
            Some(ControlFlow::Break(()))
        }
    }
}

/// Text on the binary y-protocol endpoint: not its protocol, so it closes.
fn text_on_binary_protocol(peer: &Peer<'_>) -> ControlFlow<()> {
    peer.app.metrics.record_error();
    peer.kick.kick(CloseReason::MALFORMED);
    ControlFlow::Break(())
}

/// A large text frame read aside: the original page's full-state `update` is read
/// as hex straight from its bytes (hex is ASCII, so that also proves them UTF-8);
/// anything else is checked as UTF-8 and read like any text.
fn handle_large_text(peer: &Peer<'_>, text: Vec<u8>) -> ControlFlow<()> {
    if peer.protocol == Protocol::Yjs {
        return text_on_binary_protocol(peer);
    }
    if let Some(update) = original_update(&text) {
        handle_update(peer, UpdateBytes::Raw(&update));
        return ControlFlow::Continue(());
    }
    match String::from_utf8(text) {
        Ok(text) => {
            handle_text(peer, &text);
            ControlFlow::Continue(())
        }
        Err(_) => {
            not_utf8(peer);
            ControlFlow::Break(())
        }
    }
}

/// A large JSON-protocol `update`, read in place. The original page sends its whole
/// document state (hex) in one on every keystroke; parsing it as a `ClientMessage`
/// would first copy every field into a buffer, since the tag may come last.
#[derive(Deserialize)]
struct UpdateInPlace<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, default)]
    data: &'a str,
}

/// Texts from this size on are first tried as an `update` read in place.
const IN_PLACE_FROM_BYTES: usize = 4096;

fn handle_update(peer: &Peer<'_>, update: UpdateBytes<'_>) {
    // The original ignores an update without data; so do we.
    if update.is_empty() {
        return;
    }
    if peer.access == Access::ReadOnly {
        peer.refuse(READ_ONLY);
        return;
    }
    let origin = Origin {
        client_id: peer.client_id,
        format: UpdateFormat::JsonHex,
    };
    if let Err(error) = peer.room.apply_update(origin, update) {
        peer.app.metrics.record_error();
        peer.room.reply(
            peer.connection,
            &ServerMessage::Error {
                message: error.to_string(),
            },
        );
    }
}

/// How the original page spells an update (`JSON.stringify({type: 'update', data})`),
/// around its hex.
const ORIGINAL_UPDATE: (&str, &str) = (r#"{"type":"update","data":""#, r#""}"#);

/// The bytes of an update spelled exactly as the original page sends it. Hex has no
/// quotes, escapes or control characters, so text that decodes as hex between
/// these two ends is that JSON object and nothing else; anything else is left to
/// the JSON reader. This spares a full state of a large document the JSON scan
/// over its megabytes (BENCHMARKS.md, "Full states in a large document"), and
/// decodes it before the room is locked.
fn original_update(text: &[u8]) -> Option<Vec<u8>> {
    let (open, close) = ORIGINAL_UPDATE;
    let data = text
        .strip_prefix(open.as_bytes())?
        .strip_suffix(close.as_bytes())?;
    crate::server::document::decode_hex_bytes(data).ok()
}

fn handle_text(peer: &Peer<'_>, text: &str) {
    if text.len() >= IN_PLACE_FROM_BYTES {
        if let Some(update) = original_update(text.as_bytes()) {
            return handle_update(peer, UpdateBytes::Raw(&update));
        }
        // Anything else (another type, escapes in the data, a malformed message)
        // takes the general path below, with its errors.
        if let Ok(UpdateInPlace {
            kind: "update",
            data,
        }) = serde_json::from_str::<UpdateInPlace>(text)
        {
            return handle_update(peer, UpdateBytes::Hex(data));
        }
    }
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
    let presence = matches!(
        message,
        ClientMessage::Join { .. }
            | ClientMessage::Cursor { .. }
            | ClientMessage::Selection { .. }
            | ClientMessage::Awareness { .. }
    );
    // Presence is kept per user (name, colour, selection) or relayed to everyone:
    // its size is bounded like a y-protocol awareness state, by the message's size.
    let limit = app.config.max_awareness_bytes;
    if presence && text.len() > limit {
        peer.refuse(&format!(
            "presence message refused: larger than {limit} bytes"
        ));
        return;
    }
    match message {
        ClientMessage::Join {
            name,
            color,
            avatar_url,
        } => room.join(connection, client_id, name, color, avatar_url),
        ClientMessage::SyncRequest => room.sync_request(connection),
        ClientMessage::Update { data } => handle_update(peer, UpdateBytes::Hex(&data)),
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
pub(crate) mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::server::journal::Journal;
    use crate::server::metrics::Metrics;
    use crate::server::registry::Registry;
    use crate::server::store::{memory::MemoryStore, Store};
    use crate::server::Config;

    /// A binary frame that makes the connection panic while holding its room's
    /// lock. Compiled into unit tests only: no build of the server answers it.
    pub(crate) const PANIC_FRAME: &[u8] = b"coedit unit test: panic while handling this frame";

    /// The task's future is most of what an idle connection costs (10,000 of them
    /// in ~53 MiB): it was 1.8 KiB split in two tasks, it is ~1.4 KiB as one.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let config = Config::for_tests();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (journal, _journal_task) = Journal::start(store.clone(), config.journal_pace());
        let metrics = Metrics::new();
        let registry = Registry::new(store, journal, metrics.clone(), &config);
        let app = AppState::new(config, registry, metrics, CancellationToken::new());
        let admission = Admission {
            reservation: app.caps.reserve("room").unwrap(),
            handshake: app.upgrades.clone().try_acquire_owned().unwrap(),
            user: None,
        };
        let upgrade = hyper::upgrade::on(axum::http::Request::new(()));
        let task = serve_connection(
            upgrade,
            app,
            "room".into(),
            "client".into(),
            Protocol::Json,
            Access::ReadWrite,
            admission,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "a connection's task is {size} bytes");
    }

    type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn client(addr: std::net::SocketAddr, room: &str, id: &str) -> Client {
        let url = format!("ws://{addr}/api/ws/{room}?client_id={id}");
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        while next_json(&mut socket).await["type"] != "users" {}
        socket
    }

    /// The next JSON message, skipping control frames; `Null` on close or timeout.
    async fn next_json(socket: &mut Client) -> serde_json::Value {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
            match next {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(text.as_str()).unwrap()
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                _ => return serde_json::Value::Null,
            }
        }
    }

    async fn metrics(addr: std::net::SocketAddr) -> serde_json::Value {
        reqwest::get(format!("http://{addr}/api/metrics"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn join(socket: &mut Client, name: &str) {
        let join = format!(r##"{{"type":"join","name":"{name}","color":"#111111"}}"##);
        socket.send(Message::text(join)).await.unwrap();
        assert_eq!(next_json(socket).await["type"], "users_list");
    }

    /// A panic while handling a message (here with the room locked) is caught for
    /// that connection alone: it is closed with 1011, the others hear it left, the
    /// counters are right, the room keeps working and unloads once empty.
    #[tokio::test]
    async fn a_panic_while_handling_a_message_leaves_the_room_clean() {
        let mut config = Config::for_tests();
        config.idle_unload = Duration::from_millis(200);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::server::run(listener, config, shutdown.clone()));

        let mut witness = client(addr, "panic", "witness").await;
        join(&mut witness, "Witness").await;
        let mut victim = client(addr, "panic", "victim").await;
        join(&mut victim, "Victim").await;
        assert_eq!(next_json(&mut witness).await["type"], "user_joined");

        victim
            .send(Message::binary(Bytes::from_static(PANIC_FRAME)))
            .await
            .unwrap();
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(5), victim.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame,
                Ok(Some(Ok(_))) => {}
                other => panic!("the victim should get a close frame, got {other:?}"),
            }
        };
        assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1011));
        let left = next_json(&mut witness).await;
        assert_eq!(left["type"], "user_left");
        assert_eq!(left["userId"], "victim");
        let seen = metrics(addr).await;
        assert_eq!(seen["panics_caught"], 1);
        assert_eq!(seen["active_connections"], 1);

        // The room still works: a newcomer joins and gets the witness's edit.
        let mut newcomer = client(addr, "panic", "newcomer").await;
        join(&mut newcomer, "Newcomer").await;
        assert_eq!(next_json(&mut witness).await["type"], "user_joined");
        let doc = yrs::Doc::new();
        let content = doc.get_or_insert_text("content");
        yrs::Text::insert(
            &content,
            &mut yrs::Transact::transact_mut(&doc),
            0,
            "still here",
        );
        let update = yrs::ReadTxn::encode_state_as_update_v1(
            &yrs::Transact::transact(&doc),
            &yrs::StateVector::default(),
        );
        let message = format!(r#"{{"type":"update","data":"{}"}}"#, hex::encode(update));
        witness.send(Message::text(message)).await.unwrap();
        let relayed = next_json(&mut newcomer).await;
        assert_eq!(relayed["type"], "update");
        assert_eq!(relayed["from"], "witness");

        witness.close(None).await.unwrap();
        newcomer.close(None).await.unwrap();
        let mut unloaded = false;
        for _ in 0..100 {
            let seen = metrics(addr).await;
            if seen["active_connections"] == 0 && seen["rooms_loaded"] == 0 {
                unloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(unloaded, "the room did not unload: {}", metrics(addr).await);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
