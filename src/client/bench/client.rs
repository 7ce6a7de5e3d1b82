//! One simulated editor: connects, says hello, types on a fixed schedule, applies
//! what the others type and times each of their keystrokes, reconnects when
//! dropped, and at the end reports the text it holds.
//!
//! An editor of a light room types the same way but only counts the update frames
//! it receives: its document holds its own keystrokes and nothing else.
//!
//! Sending is open-loop: edit n is due at `first_edit + n / rate` whatever happened
//! before, and its latency is measured from that due time. A server (or a bench)
//! that falls behind therefore shows up as latency instead of as a quietly lower
//! send rate (coordinated omission).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::editor::{Arrived, Editor, TextFingerprint};
use super::protocol::{Identity, Incoming, Payload, Peeked, Protocol};
use super::stats::{LocalStats, Shared};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Editor messages are small; a bigger read buffer is zero-filled on every read
/// for nothing (tokio-tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Frames of one edit are fed and then flushed together; nothing needs to wait in
/// the write buffer beyond that.
const WRITE_BUFFER_BYTES: usize = 0;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts before a client that never connected gives up.
const FIRST_CONNECT_ATTEMPTS: u32 = 3;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Local numbers are folded into the shared ones at least this often, which is
/// also how fresh the progress display is.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A client that only holds its connection has little to fold in; 10,000 of them
/// waking ten times a second cost the bench a fifth of a core.
const IDLE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
const COLORS: [&str; 6] = [
    "#3B82F6", "#EF4444", "#10B981", "#F59E0B", "#8B5CF6", "#EC4899",
];

/// What one client is told to do.
pub struct ClientPlan {
    /// Global index; also the sender index in the send-time table.
    pub index: usize,
    pub room_index: usize,
    /// Its place among its room's editors, from 0.
    pub member: usize,
    /// Full WebSocket URL of its room.
    pub url: String,
    pub identity: Identity,
    pub connect_at: Instant,
    /// Due time of edit 0; later edits follow every `interval`.
    pub first_edit_at: Instant,
    /// None when the client only holds its connection open.
    pub interval: Option<Duration>,
    /// No edit is due at or after this.
    pub stop_editing_at: Instant,
    pub protocol: Protocol,
    pub payload: Payload,
    pub seed: u64,
    /// The room's shared state when it is a light room; None when it is verified.
    pub light: Option<Arc<LightRoom>>,
}

/// What the editors of one light room share: which of them are connected, and
/// what each is owed. An update is owed to the others connected when it is sent:
/// not to a late joiner before it connected, nor to one reconnecting, and still
/// to those that stayed when another is gone for good.
#[derive(Debug)]
pub struct LightRoom {
    members: Box<[LightMember]>,
}

#[derive(Debug, Default)]
struct LightMember {
    open: AtomicBool,
    /// Update frames the others sent while this one was connected.
    owed: AtomicU64,
}

impl LightRoom {
    pub fn new(members: u32) -> Self {
        Self {
            members: (0..members).map(|_| LightMember::default()).collect(),
        }
    }

    fn set_open(&self, member: usize, open: bool) {
        if let Some(member) = self.members.get(member) {
            member.open.store(open, Ordering::Relaxed);
        }
    }

    /// Counts an update `sender` just sent as owed to every other editor
    /// connected now; returns to how many.
    fn owe_others(&self, sender: usize) -> u64 {
        let mut owed_to = 0;
        for (index, member) in self.members.iter().enumerate() {
            if index != sender && member.open.load(Ordering::Relaxed) {
                member.owed.fetch_add(1, Ordering::Relaxed);
                owed_to += 1;
            }
        }
        owed_to
    }

    /// Update frames the others sent while `member` was connected.
    fn owed(&self, member: usize) -> u64 {
        self.members
            .get(member)
            .map_or(0, |member| member.owed.load(Ordering::Relaxed))
    }
}

/// A light editor's update frames over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LightTally {
    /// Sent while at least one other editor of the room was connected.
    pub sent: u64,
    /// Sent by the others while this editor was connected: what it should
    /// have received.
    pub owed: u64,
    /// Received from the others, whenever they were sent.
    pub received: u64,
}

/// What a client reports when the bench stops.
pub struct ClientOutcome {
    pub room_index: usize,
    /// Whether it ever connected.
    pub connected: bool,
    /// Whether it was connected when the bench stopped.
    pub connected_at_end: bool,
    /// Its text, when it was connected at the end and its room is verified.
    pub text: Option<TextFingerprint>,
    /// Its update frames, when its room is light.
    pub light: Option<LightTally>,
}

impl ClientOutcome {
    /// A client that was still running well after the bench stopped and was
    /// aborted. Every wait before a connection is opened gives way to the stop,
    /// so it must have connected; it was not there at the end in any useful sense.
    pub fn abandoned(room_index: usize, light: bool) -> Self {
        Self {
            room_index,
            connected: true,
            connected_at_end: false,
            text: None,
            light: light.then(LightTally::default),
        }
    }
}

/// The WebSocket settings of every bench connection.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
}

struct Client {
    plan: ClientPlan,
    shared: Arc<Shared>,
    stop: CancellationToken,
    editor: Editor,
    local: LocalStats,
    scratch: Vec<u8>,
    frames: Vec<Message>,
    greeted: bool,
    tally: LightTally,
}

/// Runs one simulated editor until `stop` is cancelled.
pub async fn run(plan: ClientPlan, shared: Arc<Shared>, stop: CancellationToken) -> ClientOutcome {
    let editor = Editor::new(plan.index, shared.send_times.senders(), plan.seed);
    let mut client = Client {
        plan,
        shared,
        stop,
        editor,
        local: LocalStats::default(),
        scratch: Vec::new(),
        frames: Vec::new(),
        greeted: false,
        tally: LightTally::default(),
    };
    let outcome = client.run().await;
    client.local.flush(&client.shared, client.plan.index);
    outcome
}

impl Client {
    async fn run(&mut self) -> ClientOutcome {
        let never = ClientOutcome {
            room_index: self.plan.room_index,
            connected: false,
            connected_at_end: false,
            text: None,
            light: self.plan.light.as_ref().map(|_| LightTally::default()),
        };
        tokio::select! {
            _ = self.stop.cancelled() => return never,
            _ = tokio::time::sleep_until(self.plan.connect_at.into()) => {}
        }
        let Some(mut socket) = self.first_connect().await else {
            return never;
        };
        self.count_open(true);
        let mut connected_at_end = true;
        loop {
            match self.session(&mut socket).await {
                SessionEnd::Stopped => break,
                SessionEnd::Dropped => {
                    self.count_open(false);
                    match self.reconnect().await {
                        Some(fresh) => {
                            socket = fresh;
                            self.count_open(true);
                        }
                        None => {
                            connected_at_end = false;
                            break;
                        }
                    }
                }
            }
        }
        if connected_at_end {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
            self.count_open(false);
        }
        self.catch_up();
        // Nothing is typed after the stop, so what this editor is owed is final.
        let light = self.plan.light.as_ref().map(|room| LightTally {
            owed: room.owed(self.plan.member),
            ..self.tally
        });
        let text = (connected_at_end && light.is_none()).then(|| self.editor.fingerprint());
        ClientOutcome {
            room_index: self.plan.room_index,
            connected: true,
            connected_at_end,
            text,
            light,
        }
    }

    /// Counts a connection opening or closing, for the progress line and, in a
    /// light room, for its senders.
    fn count_open(&self, open: bool) {
        let counter = &self.shared.counters.open_connections;
        if open {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(room) = &self.plan.light {
            room.set_open(self.plan.member, open);
        }
    }

    async fn first_connect(&mut self) -> Option<Socket> {
        for attempt in 0..FIRST_CONNECT_ATTEMPTS {
            if attempt > 0 {
                tokio::select! {
                    _ = self.stop.cancelled() => return None,
                    _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
                }
            }
            if let Some(socket) = self.connect().await {
                self.shared
                    .counters
                    .connects
                    .fetch_add(1, Ordering::Relaxed);
                return Some(socket);
            }
        }
        self.shared
            .counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Reconnects until it works or the bench stops; then brings the server up to
    /// date with everything typed meanwhile, as a page would with its next update.
    async fn reconnect(&mut self) -> Option<Socket> {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            }
            if let Some(mut socket) = self.connect().await {
                self.shared
                    .counters
                    .reconnects
                    .fetch_add(1, Ordering::Relaxed);
                self.catch_up();
                let frames = self.plan.protocol.resync_frames(&self.editor);
                match self.send_all(&mut socket, frames).await {
                    Ok(()) => return Some(socket),
                    Err(SendError::Stopped) => return None,
                    Err(SendError::Failed) => {}
                }
            }
        }
    }

    /// One connection attempt: handshake, then the protocol's hello.
    async fn connect(&mut self) -> Option<Socket> {
        let started = Instant::now();
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(
                self.plan.url.as_str(),
                Some(websocket_config()),
                true,
            ),
        );
        let connected = tokio::select! {
            _ = self.stop.cancelled() => return None,
            connected = attempt => connected,
        };
        match connected {
            Ok(Ok((mut socket, _response))) => {
                self.shared
                    .record_connect_time(started.elapsed().as_micros() as u64);
                let hello = self.plan.protocol.hello(&self.plan.identity);
                self.send_all(&mut socket, hello).await.ok()?;
                Some(socket)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, url = %self.plan.url, "connect failed");
                self.shared.note_connect_error(|| error.to_string());
                self.local.errors += 1;
                None
            }
            Err(_elapsed) => {
                tracing::debug!(url = %self.plan.url, "connect timed out");
                self.shared.note_connect_error(|| {
                    format!("no WebSocket handshake within {CONNECT_TIMEOUT:?}")
                });
                self.local.errors += 1;
                None
            }
        }
    }

    /// Types and listens on one connection until the bench stops or the
    /// connection drops.
    async fn session(&mut self, socket: &mut Socket) -> SessionEnd {
        let mut flush = tokio::time::interval(if self.plan.interval.is_some() {
            FLUSH_INTERVAL
        } else {
            IDLE_FLUSH_INTERVAL
        });
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer re-armed per edit, not a new one per received frame.
        let next_edit = tokio::time::sleep_until(self.plan.stop_editing_at.into());
        tokio::pin!(next_edit);
        let mut armed_for = None;
        // One cancellation future for the session: making a new one per frame
        // registers and unregisters a waiter each time.
        let stop = self.stop.clone();
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            let due = self.next_edit_due();
            if due != armed_for {
                if let Some(due) = due {
                    next_edit.as_mut().reset(due.into());
                }
                armed_for = due;
            }
            tokio::select! {
                biased;
                _ = &mut stopped => return SessionEnd::Stopped,
                _ = flush.tick() => {
                    self.catch_up();
                    self.local.flush(&self.shared, self.plan.index);
                }
                _ = &mut next_edit, if due.is_some() => {
                    match self.type_one(socket, due.unwrap_or_else(Instant::now)).await {
                        Ok(()) => {}
                        Err(SendError::Stopped) => return SessionEnd::Stopped,
                        Err(SendError::Failed) => return SessionEnd::Dropped,
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(frame)) => self.receive(frame),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "connection dropped");
                        self.local.errors += 1;
                        return SessionEnd::Dropped;
                    }
                    None => return SessionEnd::Dropped,
                },
            }
            if self.local.wants_flush() {
                self.local.flush(&self.shared, self.plan.index);
            }
        }
    }

    /// Due time of the next edit, or None when this client has no more to make.
    fn next_edit_due(&self) -> Option<Instant> {
        let interval = self.plan.interval?;
        let due = self.plan.first_edit_at + interval * self.editor.next_seq();
        (due < self.plan.stop_editing_at
            && (self.editor.next_seq() as usize) < self.shared.send_times.capacity())
        .then_some(due)
    }

    async fn type_one(&mut self, socket: &mut Socket, due: Instant) -> Result<(), SendError> {
        let due_ns = due.saturating_duration_since(self.shared.epoch).as_nanos() as u64;
        self.catch_up();
        let edit = self.editor.edit();
        if self.plan.light.is_none() {
            self.shared
                .send_times
                .record(self.plan.index, edit.seq, due_ns);
            if self.shared.window.contains(due_ns) {
                self.local.edits_in_window += 1;
            }
        }
        let mut frames = std::mem::take(&mut self.frames);
        self.plan.protocol.edit_frames(
            self.plan.payload,
            &self.editor,
            &edit,
            &self.plan.identity,
            &mut frames,
        );
        let sent = self.send_all(socket, frames.drain(..)).await;
        self.frames = frames;
        // In a light room a sent edit is owed to the others connected now: one
        // update frame (plus a cursor message with a full payload), which each
        // of them receives as one update.
        if let (Some(room), Ok(())) = (&self.plan.light, sent) {
            let owed_to = room.owe_others(self.plan.member);
            if owed_to > 0 {
                self.tally.sent += 1;
                self.local.light_updates_owed += owed_to;
            }
        }
        sent
    }

    /// Feeds every frame and flushes once, or gives up when the bench stops: a
    /// server that stopped reading leaves a send waiting for ever once the socket
    /// buffers are full, and the bench must still end and report.
    async fn send_all(
        &mut self,
        socket: &mut Socket,
        frames: impl IntoIterator<Item = Message>,
    ) -> Result<(), SendError> {
        let local = &mut self.local;
        let sending = async {
            for frame in frames {
                local.messages_sent += 1;
                local.bytes_sent += frame.len() as u64;
                if let Err(error) = socket.feed(frame).await {
                    tracing::debug!(%error, "send failed");
                    local.errors += 1;
                    return Err(SendError::Failed);
                }
            }
            socket.flush().await.map_err(|error| {
                tracing::debug!(%error, "flush failed");
                local.errors += 1;
                SendError::Failed
            })
        };
        tokio::select! {
            _ = self.stop.cancelled() => Err(SendError::Stopped),
            sent = sending => sent,
        }
    }

    /// Integrates what was received since the last catch-up and times every
    /// keystroke of the measurement window it brought in; a failure counts as an
    /// error (the room's documents will then not converge either).
    fn catch_up(&mut self) {
        let shared = &self.shared;
        let local = &mut self.local;
        let caught_up = self
            .editor
            .catch_up(|arrived, received_ns| record_arrivals(shared, local, arrived, received_ns));
        if let Err(error) = caught_up {
            tracing::debug!(%error, "received updates do not apply");
            self.local.errors += 1;
        }
    }

    fn receive(&mut self, frame: Message) {
        if matches!(
            frame,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_)
        ) {
            return;
        }
        self.local.messages_received += 1;
        self.local.bytes_received += frame.len() as u64;
        if self.plan.light.is_some() {
            self.count(&frame);
            return;
        }
        let incoming = self.plan.protocol.read(&frame, &mut self.scratch);
        if matches!(incoming, Incoming::Greeting | Incoming::SyncedDocument) {
            self.note_greeting();
        }
        match incoming {
            Incoming::Document | Incoming::SyncedDocument => {
                self.editor.receive(&self.scratch, self.shared.now_ns());
            }
            Incoming::Greeting => {}
            Incoming::ServerError | Incoming::Malformed => self.local.errors += 1,
            Incoming::Other => {}
        }
    }

    /// A light receiver's whole handling of a frame: what kind it is, counted.
    /// Nothing reaches the editor's document.
    fn count(&mut self, frame: &Message) {
        match self.plan.protocol.peek(frame) {
            Peeked::Update => {
                self.tally.received += 1;
                self.local.light_updates_received += 1;
                if self.shared.window.contains(self.shared.now_ns()) {
                    self.local.light_updates_in_window += 1;
                }
            }
            Peeked::Greeting => self.note_greeting(),
            Peeked::ServerError | Peeked::Malformed => self.local.errors += 1,
            Peeked::Other => {}
        }
    }

    fn note_greeting(&mut self) {
        if !self.greeted {
            self.greeted = true;
            self.shared.counters.greeted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum SessionEnd {
    Stopped,
    Dropped,
}

/// Why frames were not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendError {
    /// The connection failed.
    Failed,
    /// The bench stopped while the send waited.
    Stopped,
}

/// Times every keystroke of the measurement window that just arrived.
fn record_arrivals(shared: &Shared, local: &mut LocalStats, arrived: Arrived, now_ns: u64) {
    for seq in arrived.first..arrived.end {
        let Some(sent_ns) = shared.send_times.get(arrived.sender, seq) else {
            continue;
        };
        if shared.window.contains(sent_ns) {
            local.deliveries_in_window += 1;
            local
                .latencies_us
                .push(now_ns.saturating_sub(sent_ns) / 1000);
        }
    }
}

/// A colour from a small palette, so rooms look like the original page's.
pub fn color_for(index: usize) -> String {
    COLORS[index % COLORS.len()].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::bench::protocol::json_update;
    use crate::client::bench::stats::{SendTimes, Window};

    /// Editor 1 of a two-editor room, verified or light, not connected anywhere:
    /// only its handling of received frames is exercised.
    fn receiver(light: bool) -> Client {
        let now = Instant::now();
        let window = Window {
            start_ns: 0,
            end_ns: u64::MAX,
        };
        let shared = Arc::new(Shared::new(now, window, SendTimes::new(2, 4)));
        let plan = ClientPlan {
            index: 1,
            room_index: 0,
            member: 1,
            url: "ws://127.0.0.1:1/api/ws/r?client_id=c".into(),
            identity: Identity {
                client_id: "c".into(),
                name: "bench 1".into(),
                color: color_for(1),
            },
            connect_at: now,
            first_edit_at: now,
            interval: None,
            stop_editing_at: now,
            protocol: Protocol::Json,
            payload: Payload::Incremental,
            seed: 1,
            light: light.then(|| Arc::new(LightRoom::new(2))),
        };
        Client {
            editor: Editor::new(plan.index, 2, plan.seed),
            plan,
            shared,
            stop: CancellationToken::new(),
            local: LocalStats::default(),
            scratch: Vec::new(),
            frames: Vec::new(),
            greeted: false,
            tally: LightTally::default(),
        }
    }

    #[test]
    fn a_light_receiver_counts_updates_without_integrating_them() {
        let mut sender = Editor::new(0, 2, 1);
        let keystroke = sender.edit();
        let frames = [
            Message::text(r#"{"type":"users","users":[]}"#),
            Message::text(json_update(&keystroke.update)),
            Message::text(r#"{"type":"cursor","userId":"a","position":1}"#),
        ];
        let mut verified = receiver(false);
        let mut light = receiver(true);
        verified.shared.send_times.record(0, keystroke.seq, 0);
        light.shared.send_times.record(0, keystroke.seq, 0);
        for client in [&mut verified, &mut light] {
            for frame in &frames {
                client.receive(frame.clone());
            }
            client.catch_up();
            assert!(client.greeted);
            assert_eq!(client.local.messages_received, 3);
            assert_eq!(client.local.errors, 0);
        }

        // The verified editor has the keystroke in its document and timed it.
        assert_eq!(verified.editor.text(), sender.text());
        assert_eq!(verified.local.deliveries_in_window, 1);
        assert_eq!(verified.local.latencies_us.len(), 1);
        assert_eq!(verified.tally, LightTally::default());

        // The light editor counted one update and nothing reached its document:
        // after a catch-up it still holds no text, and it timed nothing.
        assert_eq!(light.editor.text(), "");
        assert_eq!(
            light.tally,
            LightTally {
                sent: 0,
                owed: 0,
                received: 1
            }
        );
        assert_eq!(light.local.light_updates_received, 1);
        assert_eq!(light.local.light_updates_in_window, 1);
        assert_eq!(light.local.deliveries_in_window, 0);
        assert!(light.local.latencies_us.is_empty());
    }

    #[test]
    fn a_light_update_is_owed_to_the_editors_connected_when_it_is_sent() {
        let room = LightRoom::new(3);
        let owed = |room: &LightRoom| [0, 1, 2].map(|member| room.owed(member));
        assert_eq!(room.owe_others(0), 0, "nobody is there yet");
        room.set_open(0, true);
        room.set_open(1, true);
        assert_eq!(room.owe_others(0), 1);
        // The late joiner is owed only what is sent after it connected.
        room.set_open(2, true);
        assert_eq!(room.owe_others(0), 2);
        assert_eq!(owed(&room), [0, 2, 1]);
        // Editor 1 is gone for good: the two that stayed still owe each other.
        room.set_open(1, false);
        assert_eq!(room.owe_others(2), 1);
        assert_eq!(room.owe_others(0), 1);
        assert_eq!(owed(&room), [1, 2, 2]);
        assert_eq!(room.owed(7), 0);
    }
}
