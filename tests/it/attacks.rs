//! Attacks on the real binary, one per resource: each runs next to honest clients in
//! the same room and checks the bound (closed, refused, RSS under the budget
//! computed from the flags, SECURITY.md) and that the honest clients keep working.
//! The last one runs the attackers together with honest editors for a while.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coedit::api::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message as YMessage};
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::common::*;
use super::mongo_env::{temp_dir, CoeditProcess};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The flags that enter the memory budget, as passed to the server.
#[derive(Clone, Copy)]
struct Limits {
    outbound: u64,
    message: u64,
    document: u64,
}

impl Limits {
    const SMALL: Limits = Limits {
        outbound: 256 * KIB,
        message: 256 * KIB,
        document: 2 * MIB,
    };

    fn args(&self) -> Vec<String> {
        [
            ("--max-outbound-bytes", self.outbound),
            ("--max-message-bytes", self.message),
            ("--max-document-bytes", self.document),
        ]
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect()
    }

    /// SECURITY.md's formula: per connection, its outbound budget plus one
    /// message (at most a JSON sync, twice the document) plus one incoming message
    /// plus fixed costs; per room, the document at its limit (live structure,
    /// encoding, cached sync) and the last large update it read. Presence is left
    /// out: these tests keep it small.
    fn budget_kib(&self, baseline_kib: u64, connections: u64, rooms: u64) -> u64 {
        let per_connection =
            self.outbound + 2 * self.document.max(self.message) + self.message + 64 * KIB;
        let per_room = 28 * self.document + self.message;
        // Threads, allocator arenas and fragmentation of a busy process.
        let slack = 48 * MIB;
        baseline_kib + (connections * per_connection + rooms * per_room + slack) / KIB
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples the server's RSS every 50 ms until dropped; `peak` is the highest seen.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak_seen, stopped) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                peak_seen.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn serve(limits: Limits, extra: &[&str]) -> (CoeditProcess, std::path::PathBuf) {
    let data_dir = temp_dir("attack");
    let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    args.extend(limits.args());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let server = CoeditProcess::start(&args).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    (server, data_dir)
}

async fn metrics(base: &str) -> serde_json::Value {
    reqwest::get(format!("http://{base}/api/metrics"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket whose receive buffer is as small as the kernel allows, so a client
/// that stops reading makes the server hold its output soon.
async fn tiny_window_socket(base: &str, path: &str) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(base.parse().unwrap()).await.unwrap();
    let url = format!("ws://{base}{path}");
    let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    socket
}

/// Two honest editors in `room`, joined, with `alice` holding the document.
async fn honest_pair(base: &str, room: &str) -> (Client, Client) {
    let mut alice = honest(base, room, "alice").await;
    let bob = honest(base, room, "bob").await;
    let _ = alice.recv().await; // bob's user_joined
    (alice, bob)
}

async fn honest(base: &str, room: &str, id: &str) -> Client {
    let url = format!("ws://{base}/api/ws/{room}?client_id={id}");
    let mut client = Client::connect(&url, id).await;
    loop {
        let message = client.recv().await;
        client.apply_if_document(&message);
        if matches!(message, ServerMessage::Users { .. }) {
            break;
        }
    }
    client
        .send(&ClientMessage::Join {
            name: Some(id.into()),
            color: Some("#10B981".into()),
            avatar_url: None,
        })
        .await;
    // Others may already be typing: what they send meanwhile is part of the text.
    loop {
        let message = client.recv().await;
        client.apply_if_document(&message);
        if matches!(message, ServerMessage::UsersList { .. }) {
            return client;
        }
    }
}

/// `from` types `token` at the start; `to` must receive it and hold the same text.
async fn edit_reaches(from: &mut Client, to: &mut Client, token: &str) {
    from.type_incremental(0, token).await;
    let deadline = Instant::now() + EXPECT;
    while !to.content().contains(token) {
        assert!(Instant::now() < deadline, "{} never got {token}", to.id);
        let message = to.recv().await;
        to.apply_if_document(&message);
    }
    assert_eq!(from.content(), to.content());
}

/// `from` types `token`; `to` must receive it (others may be typing too).
async fn token_reaches(from: &mut Client, to: &mut Client, token: &str) {
    from.type_incremental(0, token).await;
    let deadline = Instant::now() + EXPECT;
    while !to.content().contains(token) {
        assert!(Instant::now() < deadline, "{} never got {token}", to.id);
        let message = to.recv().await;
        to.apply_if_document(&message);
    }
}

async fn close_code(socket: &mut Socket) -> Option<u16> {
    close_code_within(socket, Duration::from_secs(10)).await
}

/// The close code the server sends within `limit`, reading past other frames.
async fn close_code_within(socket: &mut Socket, limit: Duration) -> Option<u16> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_without_reading_is_closed_within_the_byte_budget() {
    // The rate limit is lifted so that only the byte budget bounds the pongs.
    let limits = Limits::SMALL;
    let (server, data_dir) = serve(
        limits,
        &["--rate-limit", "1000000", "--rate-burst", "1000000"],
    )
    .await;
    let (base, pid) = (server.base(), server.pid());
    let budget = limits.budget_kib(rss_kib(pid), 3, 1);
    let (mut alice, mut bob) = honest_pair(&base, "pings").await;
    let sampler = RssSampler::start(pid);

    let mut flooder = tiny_window_socket(&base, "/api/ws/pings?client_id=flooder").await;
    let ping = Bytes::from(vec![7u8; 125]);
    let started = Instant::now();
    let mut sent = 0u64;
    let cut_off = loop {
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        let mut failed = false;
        for _ in 0..100 {
            if flooder.feed(Message::Ping(ping.clone())).await.is_err() {
                failed = true;
                break;
            }
            sent += 1;
        }
        let flushed = tokio::time::timeout(Duration::from_secs(1), flooder.flush()).await;
        if failed || matches!(flushed, Ok(Err(_))) {
            break true;
        }
        if sent.is_multiple_of(20_000) {
            edit_reaches(&mut alice, &mut bob, &format!("[during {sent}]")).await;
        }
    };
    let took = started.elapsed();
    edit_reaches(&mut bob, &mut alice, "[after the flood]").await;
    let seen = metrics(&base).await;
    let peak = sampler.peak();
    println!(
        "ping flood: {sent} pings in {took:?}, cut off: {cut_off}, RSS peak {peak} KiB, budget {budget} KiB"
    );
    assert!(cut_off, "a flooder that never reads was not closed in 20 s");
    assert!(
        seen["slow_consumer_disconnects"].as_u64().unwrap() >= 1,
        "{seen}"
    );
    assert!(
        peak <= budget,
        "RSS peak {peak} KiB over the budget {budget} KiB"
    );
    assert_eq!(seen["active_connections"], 2, "{seen}");
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_a_large_document_is_closed_with_1013() {
    let limits = Limits {
        document: 8 * MIB,
        ..Limits::SMALL
    };
    let (server, data_dir) = serve(limits, &[]).await;
    let (base, pid) = (server.base(), server.pid());
    let budget = limits.budget_kib(rss_kib(pid), 3, 1);
    let (mut alice, mut bob) = honest_pair(&base, "large").await;
    let mut stalled = tiny_window_socket(&base, "/api/ws/large?client_id=stalled").await;
    let sampler = RssSampler::start(pid);

    // Alice pastes 40 KB chunks; the stalled reader is sent every one of them (as
    // hex) and reads nothing.
    let mut chunks = 0;
    let chunk = "lorem ipsum ".repeat(3400);
    while metrics(&base).await["slow_consumer_disconnects"] == 0 {
        assert!(chunks < 150, "the stalled reader was never closed");
        let at = alice.content().chars().count() as u32;
        alice.type_incremental(at, &chunk).await;
        eprintln!(
            "DEBUG chunk {chunks} alice {} bob {} metrics {}",
            alice.content().len(),
            bob.content().len(),
            metrics(&base).await
        );
        chunks += 1;
        // Bob keeps up with everything (he reads).
        while bob.content().chars().count() < alice.content().chars().count() {
            let message = bob.recv().await;
            bob.apply_if_document(&message);
        }
    }
    // Now it reads: what was already in flight, then the close frame.
    assert_eq!(close_code(&mut stalled).await, Some(1013));
    edit_reaches(&mut alice, &mut bob, "[after the stall]").await;
    let peak = sampler.peak();
    println!(
        "stalled reader: closed after {chunks} chunks of {} bytes, RSS peak {peak} KiB, budget {budget} KiB",
        chunk.len()
    );
    assert!(
        peak <= budget,
        "RSS peak {peak} KiB over the budget {budget} KiB"
    );
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

fn awareness_frame(ids: impl Iterator<Item = u64>, json: &str) -> Message {
    let clients = ids
        .map(|id| {
            (
                ClientID::new(id),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: Arc::from(json),
                },
            )
        })
        .collect();
    Message::binary(YMessage::Awareness(AwarenessUpdate { clients }).encode_v1())
}

/// Reads y-protocol frames until one is an awareness update naming `id`.
async fn sees_awareness_of(socket: &mut Socket, id: u64) -> bool {
    let deadline = Instant::now() + EXPECT;
    while Instant::now() < deadline {
        match tokio::time::timeout(EXPECT, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                if let Ok(YMessage::Awareness(update)) =
                    <YMessage as yrs::updates::decoder::Decode>::decode_v1(&bytes)
                {
                    if update.clients.contains_key(&ClientID::new(id)) {
                        return true;
                    }
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
    false
}

/// One frame holding many y-protocol messages: thousands of tiny awareness
/// updates in one frame would each be relayed to the room (overflowing honest
/// members' queues) and were charged to the rate limit as one message. Past a
/// handful per frame the sender is closed; a few per frame are accepted, each
/// counted against the rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_packing_many_protocol_messages_is_refused() {
    let (server, data_dir) =
        serve(Limits::SMALL, &["--rate-limit", "1", "--rate-burst", "20"]).await;
    let base = server.base();
    let yjs = |id: &str| format!("ws://{base}/api/yjs/packed?client_id={id}");
    let (mut watcher, _) = tokio_tungstenite::connect_async(yjs("watcher"))
        .await
        .unwrap();
    let state = r##"{"user":{"name":"Packer","color":"#30bced"}}"##;
    let awareness = |id: u64, clock: u32| {
        let clients = [(
            ClientID::new(id),
            AwarenessUpdateEntry {
                clock,
                json: Arc::from(state),
            },
        )]
        .into_iter()
        .collect();
        YMessage::Awareness(AwarenessUpdate { clients }).encode_v1()
    };

    let (mut packer, _) = tokio_tungstenite::connect_async(yjs("packer"))
        .await
        .unwrap();
    let packed: Vec<u8> = (1..=5_000).flat_map(|clock| awareness(77, clock)).collect();
    packer.send(Message::binary(packed)).await.unwrap();
    let closed = loop {
        match tokio::time::timeout(EXPECT, packer.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("the packed frame's sender was not closed: {other:?}"),
        }
    };
    let closed = closed.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
    assert_eq!(
        closed,
        Some((1008, "too many y-protocol messages in one frame".to_owned()))
    );
    // The watcher heard at most what one frame may hold, and is still served.
    let (mut other, _) = tokio_tungstenite::connect_async(yjs("other"))
        .await
        .unwrap();
    other
        .send(awareness_frame([88].into_iter(), state))
        .await
        .unwrap();
    assert!(sees_awareness_of(&mut watcher, 88).await);

    // A few messages per frame are fine, and each counts: three frames of eight
    // are past a burst of twenty.
    let (mut batcher, _) = tokio_tungstenite::connect_async(yjs("batcher"))
        .await
        .unwrap();
    let eight: Vec<u8> = (1..=8).flat_map(|clock| awareness(99, clock)).collect();
    batcher.send(Message::binary(eight.clone())).await.unwrap();
    assert!(sees_awareness_of(&mut watcher, 99).await);
    for _ in 0..2 {
        batcher.send(Message::binary(eight.clone())).await.unwrap();
    }
    assert_eq!(close_code(&mut batcher).await, Some(1008));
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_spam_is_refused_and_honest_presence_still_flows() {
    let (server, data_dir) = serve(
        Limits::SMALL,
        &[
            "--max-awareness-ids",
            "4",
            "--max-awareness-bytes",
            "2048",
            "--max-room-users",
            "6",
        ],
    )
    .await;
    let base = server.base();
    let yjs = |id: &str| format!("ws://{base}/api/yjs/presence?client_id={id}");
    let (mut watcher, _) = tokio_tungstenite::connect_async(yjs("watcher"))
        .await
        .unwrap();
    let (mut honest, _) = tokio_tungstenite::connect_async(yjs("honest"))
        .await
        .unwrap();
    let state = r##"{"user":{"name":"Honest","color":"#30bced"}}"##;
    honest
        .send(awareness_frame([1].into_iter(), state))
        .await
        .unwrap();
    assert!(sees_awareness_of(&mut watcher, 1).await);

    // Many client ids on one connection.
    let (mut spammer, _) = tokio_tungstenite::connect_async(yjs("spammer"))
        .await
        .unwrap();
    spammer
        .send(awareness_frame(1000..1050, r#"{"user":{"name":"x"}}"#))
        .await
        .unwrap();
    assert_eq!(close_code(&mut spammer).await, Some(1008));
    // One huge state.
    let (mut bloater, _) = tokio_tungstenite::connect_async(yjs("bloater"))
        .await
        .unwrap();
    let huge = format!(r#"{{"user":{{"name":"{}"}}}}"#, "x".repeat(4096));
    bloater
        .send(awareness_frame([2000].into_iter(), &huge))
        .await
        .unwrap();
    assert_eq!(close_code(&mut bloater).await, Some(1008));
    // The closed connections leave the room once the server has seen them close.
    let room_url = format!("http://{base}/api/rooms/presence");
    let left = eventually(async || {
        let room: serde_json::Value = reqwest::get(&room_url).await.unwrap().json().await.unwrap();
        room["connections"] == 2
    })
    .await;
    assert!(left, "the refused connections are still in the room");
    // Client ids beyond the room's users are refused before the upgrade…
    let mut refused = 0;
    let mut held = Vec::new();
    for index in 0..8u64 {
        match tokio_tungstenite::connect_async(yjs(&format!("spread-{index}"))).await {
            Ok((socket, _)) => held.push(socket),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(
        held.len(),
        4,
        "watcher and honest plus four make --max-room-users"
    );
    assert_eq!(refused, 4);
    // …and awareness states beyond it, spread over connections, are refused too:
    // 1 + 2 + 2 states fit, the two connections that come next with 2 more each
    // would make 7.
    for (index, socket) in held.iter_mut().enumerate() {
        let ids = (3000 + index as u64 * 2)..(3000 + index as u64 * 2 + 2);
        socket
            .send(awareness_frame(ids, r#"{"user":{"name":"s"}}"#))
            .await
            .unwrap();
    }
    let mut closed = 0;
    for socket in &mut held {
        if close_code_within(socket, Duration::from_secs(2)).await == Some(1008) {
            closed += 1;
        }
    }
    assert_eq!(closed, 2);

    // Nothing of the refused updates reached the watcher; honest presence does.
    honest
        .send(Message::binary(
            YMessage::Awareness(AwarenessUpdate {
                clients: [(
                    ClientID::new(1),
                    AwarenessUpdateEntry {
                        clock: 2,
                        json: Arc::from(r##"{"user":{"name":"Honest 2","color":"#30bced"}}"##),
                    },
                )]
                .into_iter()
                .collect(),
            })
            .encode_v1(),
        ))
        .await
        .unwrap();
    let mut saw_spam = false;
    let mut saw_honest = false;
    let deadline = Instant::now() + EXPECT;
    while !saw_honest && Instant::now() < deadline {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(EXPECT, watcher.next()).await else {
            break;
        };
        if let Message::Binary(bytes) = frame {
            if let Ok(YMessage::Awareness(update)) =
                <YMessage as yrs::updates::decoder::Decode>::decode_v1(&bytes)
            {
                saw_spam |= update
                    .clients
                    .keys()
                    .any(|id| (1000..1050).contains(&id.get()) || id.get() == 2000);
                saw_honest |= update
                    .clients
                    .get(&ClientID::new(1))
                    .is_some_and(|entry| entry.clock == 2);
            }
        }
    }
    assert!(saw_honest, "honest presence stopped flowing");
    assert!(!saw_spam, "a refused awareness update was relayed");

    // JSON presence is bounded the same way, with an `error`.
    let (mut alice, mut bob) = honest_pair(&base, "presence-json").await;
    alice
        .send_raw(Message::text(format!(
            r#"{{"type":"selection","selection":"{}"}}"#,
            "s".repeat(4096)
        )))
        .await;
    let ServerMessage::Error { message } = alice.recv().await else {
        panic!("an oversized presence message must be refused");
    };
    assert!(message.contains("2048 bytes"), "{message}");
    edit_reaches(&mut alice, &mut bob, "[presence ok]").await;
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_never_passes_the_connection_caps() {
    let (server, data_dir) = serve(
        Limits::SMALL,
        &[
            "--max-connections",
            "24",
            "--max-connections-per-room",
            "12",
        ],
    )
    .await;
    let base = server.base();
    let (mut alice, mut bob) = honest_pair(&base, "storm-0").await;
    let deadline = Instant::now() + Duration::from_secs(6);
    let refused = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let mut stormers = Vec::new();
    for worker in 0..60u64 {
        let (base, refused, opened) = (base.clone(), refused.clone(), opened.clone());
        stormers.push(tokio::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                let url = format!(
                    "ws://{base}/api/ws/storm-{}?client_id=s{worker}-{round}",
                    worker % 3
                );
                match tokio_tungstenite::connect_async(&url).await {
                    Ok((mut socket, _)) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(worker % 7 * 5)).await;
                        if round.is_multiple_of(2) {
                            let _ = socket.close(None).await;
                        } // else: vanish
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut peak_total = 0;
    let mut peak_room = 0;
    let mut samples = 0;
    let mut edits = 0;
    while Instant::now() < deadline {
        let seen = metrics(&base).await;
        peak_total = peak_total.max(seen["active_connections"].as_u64().unwrap());
        for room in ["storm-0", "storm-1", "storm-2"] {
            let (status, info) = get(&base, &format!("/rooms/{room}")).await;
            if status == 200 {
                peak_room = peak_room.max(info["connections"].as_u64().unwrap_or(0));
            }
        }
        samples += 1;
        if samples % 10 == 0 {
            edits += 1;
            edit_reaches(&mut alice, &mut bob, &format!("[storm {edits}]")).await;
        }
    }
    for stormer in stormers {
        stormer.await.unwrap();
    }
    let (refused, opened) = (
        refused.load(Ordering::Relaxed),
        opened.load(Ordering::Relaxed),
    );
    println!(
        "storm: {opened} opened, {refused} refused, {samples} samples, peak {peak_total} in total, {peak_room} in a room"
    );
    assert!(
        samples > 20 && opened > 100 && refused > 0,
        "the storm did not reach the caps"
    );
    assert!(peak_total <= 24, "{peak_total} connections open, cap 24");
    assert!(peak_room <= 12, "{peak_room} connections in a room, cap 12");
    edit_reaches(&mut bob, &mut alice, "[after the storm]").await;
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

async fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://{base}/api{path}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Opens a connection that sends an HTTP request's headers one byte at a time and
/// never finishes them; returns how long the server kept it open.
async fn slowloris(base: &str, limit: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(base).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: coedit\r\n")
        .await
        .ok()?;
    let mut buffer = [0u8; 256];
    while started.elapsed() < limit {
        if stream.write_all(b"X").await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {
                // An answer (408) is fine; the close follows.
            }
            Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_closed_after_the_header_timeout() {
    let (server, data_dir) = serve(Limits::SMALL, &["--header-read-timeout-secs", "1"]).await;
    let base = server.base();
    let (mut alice, mut bob) = honest_pair(&base, "slow").await;
    let lorises: Vec<_> = (0..20)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { slowloris(&base, Duration::from_secs(10)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the API and the room work.
    assert_eq!(get(&base, "/health").await.0, 200);
    edit_reaches(&mut alice, &mut bob, "[during slowloris]").await;
    for loris in lorises {
        let held = loris.await.unwrap();
        let held = held.expect("a slowloris connection was held for 10 s");
        assert!(held < Duration::from_secs(4), "held for {held:?}");
    }
    // A request body over the limit is refused before it is read.
    let response = reqwest::Client::new()
        .post(format!("http://{base}/api/rooms/slow/persist"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    edit_reaches(&mut bob, &mut alice, "[after slowloris]").await;
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

/// Honest editors type tokens with a barrier after each burst; attackers of every
/// kind run alongside. Every acknowledged token must be in every editor's copy,
/// the copies must converge, no editor may be cut off, and RSS stays under budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attackers_and_honest_editors_together() {
    let seconds: u64 = std::env::var("COEDIT_ATTACK_SOAK_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let limits = Limits {
        document: MIB,
        ..Limits::SMALL
    };
    let (server, data_dir) = serve(
        limits,
        &[
            "--max-connections",
            "60",
            "--max-connections-per-room",
            "60",
            "--header-read-timeout-secs",
            "1",
        ],
    )
    .await;
    let (base, pid) = (server.base(), server.pid());
    let budget = limits.budget_kib(rss_kib(pid), 60, 1);
    let sampler = RssSampler::start(pid);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let accepted: Arc<Mutex<BTreeSet<String>>> = Arc::default();

    let mut editors = Vec::new();
    for index in 0..4 {
        // Connected before the storm starts, so the caps are not theirs to fight for.
        let mut editor = honest(&base, "soak", &format!("editor-{index}")).await;
        let accepted = accepted.clone();
        editors.push(tokio::spawn(async move {
            let mut round = 0;
            while Instant::now() < deadline {
                round += 1;
                let token = format!("[{index}.{round}]");
                editor.type_incremental(0, &token).await;
                let marker = format!("barrier-{index}-{round}");
                editor
                    .send(&ClientMessage::Ping {
                        timestamp: serde_json::Value::String(marker.clone()),
                    })
                    .await;
                loop {
                    match editor.recv().await {
                        ServerMessage::Pong { timestamp } if timestamp == marker => break,
                        ServerMessage::Error { message } => panic!("editor refused: {message}"),
                        message => editor.apply_if_document(&message),
                    }
                }
                accepted.lock().unwrap().insert(token);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            editor
        }));
    }

    let attackers = spawn_attackers(&base, "soak", "soak", deadline).await;
    let mut finished = Vec::new();
    for editor in editors {
        finished.push(editor.await.expect("an honest editor failed"));
    }
    // The deadline has passed: what an attacker is still doing (a flooder's send
    // into a socket the server has closed can block for minutes) is cut off.
    for attacker in attackers {
        attacker.abort();
    }
    let peak = sampler.peak();
    // Everyone settles on one text holding every acknowledged token.
    let accepted = accepted.lock().unwrap().clone();
    let mut reader = honest(&base, "soak", "checker").await;
    reader.send(&ClientMessage::SyncRequest).await;
    let text = loop {
        if let ServerMessage::Sync { data } = reader.recv().await {
            break text_of_hex_state(&data);
        }
    };
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|token| !text.contains(token.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged edits lost: {missing:?}");
    for mut editor in finished {
        let deadline = Instant::now() + Duration::from_secs(10);
        while editor.content() != text {
            assert!(Instant::now() < deadline, "{} did not converge", editor.id);
            match editor.next_frame(Duration::from_secs(2)).await {
                Some(Message::Text(body)) => {
                    let message: ServerMessage = serde_json::from_str(body.as_str()).unwrap();
                    editor.apply_if_document(&message);
                }
                Some(_) => {}
                None => {
                    editor.send(&ClientMessage::SyncRequest).await;
                }
            }
        }
    }
    let seen = metrics(&base).await;
    println!(
        "attack soak: {} s, {} tokens acknowledged, RSS peak {peak} KiB, budget {budget} KiB, slow consumers {}, errors {}",
        seconds,
        accepted.len(),
        seen["slow_consumer_disconnects"],
        seen["error_count"]
    );
    assert!(accepted.len() > 40, "too few edits to mean anything");
    assert!(
        peak <= budget,
        "RSS peak {peak} KiB over the budget {budget} KiB"
    );
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

/// Every kind of attacker, running until `deadline`: ping flooders that never
/// read, readers that stop reading, a paster making traffic for them in
/// `paste_room`, awareness spammers, a reconnect storm and slowloris clients. The
/// WebSocket attackers go to `room`.
async fn spawn_attackers(
    base: &str,
    room: &str,
    paste_room: &str,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (base, room) = (base.to_owned(), room.to_owned());
    let mut attackers = Vec::new();
    // Ping flooders that never read (default rate limit: closed, then back).
    for worker in 0..2 {
        let (base, room) = (base.clone(), room.clone());
        attackers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let path = format!("/api/ws/{room}?client_id=pinger-{worker}");
                let mut socket = tiny_window_socket(&base, &path).await;
                let ping = Bytes::from(vec![1u8; 125]);
                while Instant::now() < deadline {
                    if socket.send(Message::Ping(ping.clone())).await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    // Readers that stop reading.
    for worker in 0..2 {
        let (base, room) = (base.clone(), room.clone());
        attackers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while Instant::now() < deadline {
                let path = format!("/api/ws/{room}?client_id=stalled-{worker}-{}", held.len());
                held.push(tiny_window_socket(&base, &path).await);
                if held.len() > 2 {
                    held.remove(0);
                }
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
        }));
    }
    // A paster making the document large, so stalled readers have much to hold.
    {
        let mut paster = honest(&base, paste_room, "paster").await;
        attackers.push(tokio::spawn(async move {
            // Pasted and removed in turn: much traffic, a document that stays small.
            let chunk = "paste ".repeat(4000) + "|";
            let mut round = 0;
            while Instant::now() < deadline {
                round += 1;
                // Yjs deletes the items found here, wherever others' edits have
                // moved them by the time the server merges the deletion.
                match paster.content().find(&chunk) {
                    Some(at) if round % 2 == 0 => {
                        paster
                            .delete_incremental(at as u32, chunk.len() as u32)
                            .await
                    }
                    _ => paster.type_incremental(0, &chunk).await,
                }
                // Reads what arrives for a while (it is no slow consumer), then pastes.
                let until = Instant::now() + Duration::from_millis(50);
                while let Some(wait) = until.checked_duration_since(Instant::now()) {
                    let Some(frame) = paster.next_frame(wait).await else {
                        break;
                    };
                    if let Message::Text(text) = frame {
                        if let Ok(message) = serde_json::from_str(text.as_str()) {
                            paster.apply_if_document(&message);
                        }
                    }
                }
            }
        }));
    }
    // Awareness spammers and a reconnect storm.
    for worker in 0..2u64 {
        let (base, room) = (base.clone(), room.clone());
        attackers.push(tokio::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                let url = format!("ws://{base}/api/yjs/{room}?client_id=aw-{worker}-{round}");
                if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await {
                    let ids = (round * 100)..(round * 100 + 40);
                    let _ = socket
                        .send(awareness_frame(ids, r#"{"user":{"name":"a"}}"#))
                        .await;
                    let _ = close_code(&mut socket).await;
                }
            }
        }));
    }
    for worker in 0..10u64 {
        let (base, room) = (base.clone(), room.clone());
        attackers.push(tokio::spawn(async move {
            let mut round = 0;
            while Instant::now() < deadline {
                round += 1;
                let url = format!("ws://{base}/api/ws/{room}?client_id=storm-{worker}-{round}");
                if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await {
                    let _ = socket.close(None).await;
                }
            }
        }));
    }
    for _ in 0..3 {
        let base = base.clone();
        attackers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let _ = slowloris(&base, Duration::from_secs(5)).await;
            }
        }));
    }

    attackers
}

/// A `coedit serve` binary given by `COEDIT_BIN` (the release build, for
/// BENCHMARKS.md), with default flags except `extra`.
struct Release {
    child: std::process::Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Release {
    async fn start(binary: &str, port: u16, extra: &[&str]) -> Self {
        let dir = temp_dir("release");
        let child = std::process::Command::new(binary)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--log-level", "error"])
            .args(extra)
            .env_remove("MONGO_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if TcpStream::connect(&base).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Self { child, base, dir }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// `coedit bench` at load 1 (BENCHMARKS.md) against `base`, in fresh rooms
/// `{prefix}-N`: its p99 in ms.
fn load_1_p99(binary: &str, base: &str, prefix: &str) -> f64 {
    let output = std::process::Command::new(binary)
        .args(["bench", "--url", &format!("ws://{base}")])
        .args(["--json", "--rooms", "10", "--clients", "10", "--rate", "2"])
        .args(["--duration", "10s", "--warmup", "2s", "--ramp", "2s"])
        .args(["--payload", "full", "--room-prefix", prefix])
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "bench said {error}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    eprintln!(
        "bench: {} of {} deliveries",
        report
            .pointer("/latency_ms/count")
            .unwrap_or(&serde_json::Value::Null),
        report["expected_deliveries"]
    );
    if report["latency_ms"]["count"] == 0 {
        eprintln!("bench report: {}", report["connections"]);
    }
    let p99 = report
        .pointer("/latency_ms/p99")
        .or_else(|| report.pointer("/latency/p99_ms"));
    p99.and_then(|value| value.as_f64())
        .unwrap_or_else(|| panic!("no p99 in {report}"))
}

/// The figures of BENCHMARKS.md's attack section, on the release binary with the
/// default flags: the server's RSS peak under each attack (10 s each, next to an
/// honest pair), then load 1's p99 without and with every attacker running.
/// Run: cargo build --release && COEDIT_BIN=target/release/coedit \
///   cargo test --test it attacks::release_binary_figures -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes a minute and wants the release binary in COEDIT_BIN"]
async fn release_binary_figures() {
    let binary = std::env::var("COEDIT_BIN").expect("COEDIT_BIN: path to the release binary");
    let port = super::mongo_env::free_port();
    let seconds = Duration::from_secs(10);

    // One attack at a time, each against a fresh server.
    let attacks = [
        "ping flood",
        "stalled readers",
        "awareness spam",
        "reconnect storm",
        "slowloris",
        "all together",
    ];
    // COEDIT_FIGURES=load measures load 1 only.
    let only_load = std::env::var("COEDIT_FIGURES").as_deref() == Ok("load");
    for attack in attacks.into_iter().filter(|_| !only_load) {
        let server = Release::start(&binary, port, &[]).await;
        let base = server.base.clone();
        let pid = server.child.id();
        let at_start = rss_kib(pid);
        let (mut alice, mut bob) = honest_pair(&base, "victims").await;
        let sampler = RssSampler::start(pid);
        let deadline = Instant::now() + seconds;
        let attackers = match attack {
            "all together" => spawn_attackers(&base, "victims", "pasted", deadline).await,
            _ => spawn_one(&base, "victims", deadline, attack).await,
        };
        let mut edits = 0;
        while Instant::now() < deadline {
            edits += 1;
            // Alice takes in what others typed before she types (a paster may be
            // in the room).
            let until = Instant::now() + Duration::from_millis(50);
            while let Some(wait) = until.checked_duration_since(Instant::now()) {
                match alice.next_frame(wait).await {
                    Some(Message::Text(text)) => {
                        if let Ok(message) = serde_json::from_str(text.as_str()) {
                            alice.apply_if_document(&message);
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            token_reaches(&mut alice, &mut bob, &format!("[{edits}]")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for attacker in attackers {
            attacker.abort();
        }
        let seen = metrics(&base).await;
        println!(
            "| {attack} | {at_start} | {} | {edits} | {} | {} |",
            sampler.peak(),
            seen["slow_consumer_disconnects"],
            seen["error_count"]
        );
    }

    // Load 1 without, then with, every attacker, against one server.
    let server = Release::start(&binary, port, &[]).await;
    let base = server.base.clone();
    let pid = server.child.id();
    let sampler = RssSampler::start(pid);
    let quiet = {
        let (binary, base) = (binary.clone(), base.clone());
        tokio::task::spawn_blocking(move || load_1_p99(&binary, &base, "quiet"))
            .await
            .unwrap()
    };
    let quiet_peak = sampler.peak();
    let deadline = Instant::now() + Duration::from_secs(17);
    let attackers = spawn_attackers(&base, "attacked-0", "attack-paste", deadline).await;
    let attacked = {
        let (binary, base) = (binary.clone(), base.clone());
        tokio::task::spawn_blocking(move || load_1_p99(&binary, &base, "attacked"))
            .await
            .unwrap()
    };
    for attacker in attackers {
        attacker.abort();
    }
    println!(
        "load 1 p99: {quiet:.2} ms without attackers (RSS peak {quiet_peak} KiB), {attacked:.2} ms with them (RSS peak {} KiB)",
        sampler.peak()
    );
    drop(server);
}

/// One kind of attacker from `spawn_attackers`, alone.
async fn spawn_one(
    base: &str,
    room: &str,
    deadline: Instant,
    attack: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (base, room) = (base.to_owned(), room.to_owned());
    let mut attackers = Vec::new();
    for worker in 0..4u64 {
        let (base, room, attack) = (base.clone(), room.clone(), attack.to_owned());
        attackers.push(tokio::spawn(async move {
            let mut round = 0u64;
            let mut held = Vec::new();
            while Instant::now() < deadline {
                round += 1;
                match attack.as_str() {
                    "ping flood" => {
                        let path = format!("/api/ws/{room}?client_id=pinger-{worker}");
                        let mut socket = tiny_window_socket(&base, &path).await;
                        let ping = Bytes::from(vec![1u8; 125]);
                        while Instant::now() < deadline {
                            if socket.send(Message::Ping(ping.clone())).await.is_err() {
                                break;
                            }
                        }
                    }
                    "stalled readers" => {
                        let path = format!("/api/ws/{room}?client_id=stalled-{worker}-{round}");
                        held.push(tiny_window_socket(&base, &path).await);
                        if worker == 0 {
                            // Traffic for them to hold: 48 KB pasted and removed.
                            let mut paster = honest(&base, &room, &format!("paster-{round}")).await;
                            let chunk = "paste ".repeat(8000);
                            for _ in 0..20 {
                                paster.type_incremental(0, &chunk).await;
                                paster.delete_incremental(0, chunk.len() as u32).await;
                            }
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    "awareness spam" => {
                        let url =
                            format!("ws://{base}/api/yjs/{room}?client_id=aw-{worker}-{round}");
                        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await {
                            let ids = (round * 1000)..(round * 1000 + 200);
                            let _ = socket
                                .send(awareness_frame(ids, r#"{"user":{"name":"a"}}"#))
                                .await;
                            let _ = close_code(&mut socket).await;
                        }
                    }
                    "reconnect storm" => {
                        for _ in 0..10 {
                            let url =
                                format!("ws://{base}/api/ws/{room}?client_id=s-{worker}-{round}");
                            if let Ok((mut socket, _)) =
                                tokio_tungstenite::connect_async(&url).await
                            {
                                let _ = socket.close(None).await;
                            }
                        }
                    }
                    _ => {
                        let _ = slowloris(&base, Duration::from_secs(15)).await;
                    }
                }
            }
        }));
    }
    attackers
}
