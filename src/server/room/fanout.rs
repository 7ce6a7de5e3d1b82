//! How messages leave a room: each connection's bounded outbound queue, the close
//! request its task watches, and broadcast that serialises a message once per
//! protocol and shares it by reference count.
//!
//! Nothing here waits: a connection whose queue is full (in messages or in bytes)
//! is a slow consumer and is asked to close, so one stalled client never holds up
//! a room. `push` is the one way anything reaches a member's queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::queue::{self, TrySendError, Weigh};
use crate::api::ServerMessage;
use crate::server::metrics::Metrics;

/// Identifies one WebSocket connection (a client id may hold several).
pub type ConnectionId = u64;

/// One frame waiting in a connection's outbound queue. Clones share the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// The rest of a frame whose start was written straight to the socket
    /// (`queue::Direct`): raw bytes, written as they are.
    Wire(Bytes),
}

impl Outbound {
    pub fn json(message: &ServerMessage) -> Self {
        Outbound::Text(Utf8Bytes::from(message.to_json()))
    }
}

/// The longest header of an unmasked (server) WebSocket frame.
pub const FRAME_HEADER_BYTES: usize = 10;

impl Weigh for Outbound {
    /// The bytes the frame will take on the wire.
    fn weight(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len() + FRAME_HEADER_BYTES,
            Outbound::Binary(bytes) => bytes.len() + FRAME_HEADER_BYTES,
            Outbound::Wire(bytes) => bytes.len(),
        }
    }
}

/// Which protocol a connection speaks, and so which form of a message it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The original JSON protocol at `/api/ws/{room}`.
    Json,
    /// The binary y-protocols (y-websocket) at `/api/yjs/{room}`.
    Yjs,
}

/// Why a connection is being closed by the server, as a WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 1013,
        reason: "slow consumer: outbound budget exceeded",
    };
    /// The store is behind and this client's replies (pongs, errors) already fill
    /// what a room holds for it: try again once the store caught up.
    pub const REPLIES_WAITING: CloseReason = CloseReason {
        code: 1013,
        reason: "too many replies waiting for the store",
    };
    /// Handling one of the connection's messages panicked; the server is fine.
    pub const INTERNAL: CloseReason = CloseReason {
        code: 1011,
        reason: "internal error while handling a message",
    };
    pub const AWARENESS_IDS: CloseReason = CloseReason {
        code: 1008,
        reason: "awareness: too many client ids on one connection",
    };
    pub const AWARENESS_BYTES: CloseReason = CloseReason {
        code: 1008,
        reason: "awareness: state too large",
    };
    pub const AWARENESS_ROOM: CloseReason = CloseReason {
        code: 1008,
        reason: "awareness: too many users in the room",
    };
    pub const SHUTDOWN: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// The client went away first; the frame is only sent if its socket still works.
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "",
    };
    pub const UNRESPONSIVE: CloseReason = CloseReason {
        code: 1001,
        reason: "no answer to pings",
    };
    pub const RATE_LIMITED: CloseReason = CloseReason {
        code: 1008,
        reason: "rate limit exceeded",
    };
    pub const TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: "message too big",
    };
    pub const PACKED_FRAME: CloseReason = CloseReason {
        code: 1008,
        reason: "too many y-protocol messages in one frame",
    };
    pub const MALFORMED: CloseReason = CloseReason {
        code: 1007,
        reason: "malformed y-protocol message",
    };
    pub const NOT_UTF8: CloseReason = CloseReason {
        code: 1007,
        reason: "text message is not UTF-8",
    };
}

/// Asks a connection to close: its task watches the token.
#[derive(Debug, Clone, Default)]
pub struct Kick {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
    /// Set by `kick`: read on every message queued for the connection, where the
    /// token's own check (a mutex) showed in profiles.
    kicked: Arc<AtomicBool>,
}

impl Kick {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            reason: Arc::default(),
            kicked: Arc::default(),
        }
    }

    pub fn kick(&self, reason: CloseReason) {
        // A token already cancelled by its parent means shutdown; keep that reason.
        if !self.token.is_cancelled() {
            let _ = self.reason.set(reason);
        }
        self.kicked.store(true, Ordering::Relaxed);
        self.token.cancel();
    }

    /// Whether `kick` was called: the connection is closing and gets nothing more.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Relaxed)
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The reason given to `kick`, or a shutdown when the parent token fired.
    pub fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::SHUTDOWN)
    }
}

/// A connection's handle as the room holds it.
pub struct Member {
    pub client_id: String,
    pub protocol: Protocol,
    pub queue: queue::Sender<Outbound>,
    pub kick: Kick,
}

/// A message in the form each protocol needs, built at most once per protocol and
/// only if some recipient speaks it.
pub struct PerProtocol<J, Y> {
    json: J,
    yjs: Y,
    json_built: Option<Option<Outbound>>,
    yjs_built: Option<Option<Outbound>>,
}

impl<J, Y> PerProtocol<J, Y>
where
    J: FnMut() -> Option<Outbound>,
    Y: FnMut() -> Option<Outbound>,
{
    pub fn new(json: J, yjs: Y) -> Self {
        Self {
            json,
            yjs,
            json_built: None,
            yjs_built: None,
        }
    }

    /// The message in `protocol`'s form (built on first use), or `None` when that
    /// protocol does not get it.
    pub fn build(&mut self, protocol: Protocol) -> Option<Outbound> {
        match protocol {
            Protocol::Json => self.json_built.get_or_insert_with(&mut self.json).clone(),
            Protocol::Yjs => self.yjs_built.get_or_insert_with(&mut self.yjs).clone(),
        }
    }
}

/// A JSON-protocol message; y-protocol clients cannot read JSON and do not get it.
pub fn json_only(
    message: &ServerMessage,
) -> PerProtocol<impl FnMut() -> Option<Outbound>, impl FnMut() -> Option<Outbound>> {
    let outbound = Outbound::json(message);
    PerProtocol::new(move || Some(outbound.clone()), || None)
}

/// Queues `message` for one member; a queue over its message cap or byte budget
/// closes it as a slow consumer (1013, counted in `slow_consumer_disconnects`).
pub fn push(member: &Member, metrics: &Metrics, message: Outbound) -> bool {
    if member.kick.is_kicked() {
        return false;
    }
    match member.queue.try_send(message) {
        Ok(()) => {
            metrics
                .counters()
                .messages_delivered
                .fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Full(_)) => {
            close_slow_consumer(&member.kick, metrics, &member.client_id);
            false
        }
        // The connection's task is gone; its own cleanup will remove it.
        Err(TrySendError::Closed(_)) => false,
    }
}

/// `push` for several messages to one member, in order: a socket lent to the queue
/// takes them in one write.
pub fn push_all(member: &Member, metrics: &Metrics, messages: Vec<Outbound>) -> usize {
    if member.kick.is_kicked() {
        return 0;
    }
    let (accepted, refused) = member.queue.try_send_all(messages);
    metrics
        .counters()
        .messages_delivered
        .fetch_add(accepted as u64, Ordering::Relaxed);
    if let Some(TrySendError::Full(_)) = refused {
        close_slow_consumer(&member.kick, metrics, &member.client_id);
    }
    accepted
}

/// Closes a connection whose pending output went over its budget, once, counting
/// it in `slow_consumer_disconnects`.
pub fn close_slow_consumer(kick: &Kick, metrics: &Metrics, client_id: &str) {
    if kick.is_kicked() || kick.token().is_cancelled() {
        return;
    }
    metrics
        .counters()
        .slow_consumer_disconnects
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(client_id, "closing slow consumer");
    kick.kick(CloseReason::SLOW_CONSUMER);
}

/// Queues the right form of `message` for every member not belonging to client id
/// `except`; returns how many members it was queued for.
pub fn broadcast<'a, J, Y>(
    members: impl Iterator<Item = &'a Member>,
    metrics: &Metrics,
    except: Option<&str>,
    mut message: PerProtocol<J, Y>,
) -> usize
where
    J: FnMut() -> Option<Outbound>,
    Y: FnMut() -> Option<Outbound>,
{
    let mut sent = 0;
    for member in members {
        if Some(member.client_id.as_str()) == except {
            continue;
        }
        if let Some(outbound) = message.build(member.protocol) {
            if push(member, metrics, outbound) {
                sent += 1;
            }
        }
    }
    sent
}
