//! The WebSocket connection itself, below either protocol: pings and the silence
//! limit, the closing handshake, and frames far larger than one socket read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coedit::api::ServerMessage;
use coedit::server::store::memory::MemoryStore;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameSocket;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;

const PING_INTERVAL: Duration = Duration::from_millis(100);

async fn server_with_fast_pings() -> TestServer {
    TestServer::start_tweaked(
        |config| config.ping_interval = PING_INTERVAL,
        Arc::new(MemoryStore::new()),
    )
    .await
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_1001() {
    let server = server_with_fast_pings().await;
    let (silent, _) = server.connect("silence", "silent").await;
    // Read as raw bytes from here on: a WebSocket client would answer the pings.
    let mut tcp = silent.socket.into_inner();
    let started = Instant::now();
    let mut bytes = Vec::new();
    tokio::time::timeout(EXPECT, tcp.read_to_end(&mut bytes))
        .await
        .expect("the server must end the connection")
        .unwrap();
    // Three intervals of silence, checked at the next ping.
    assert!(started.elapsed() >= PING_INTERVAL * 3);

    let mut frames = FrameSocket::new(std::io::Cursor::new(bytes));
    let mut pings = 0;
    let close = loop {
        let frame = frames
            .read(None)
            .unwrap()
            .expect("a close frame before the end");
        match frame.header().opcode {
            OpCode::Control(Control::Ping) => pings += 1,
            OpCode::Control(Control::Close) => break frame.into_payload(),
            other => panic!("expected pings then a close frame, got {other:?}"),
        }
    };
    assert!(pings >= 2, "only {pings} pings before the close");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
    assert_eq!(&close[2..], b"no answer to pings");
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let server = server_with_fast_pings().await;
    let (mut alive, _) = server.connect("pings", "alive").await;
    let mut pings = 0;
    let until = Instant::now() + PING_INTERVAL * 8;
    while let Ok(frame) = tokio::time::timeout_at(until.into(), alive.socket.next()).await {
        // Reading answers each ping with a pong.
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 5, "only {pings} pings in eight intervals");
    alive
        .send_raw(Message::text(r#"{"type":"ping","timestamp":7}"#))
        .await;
    let pong = loop {
        match alive.socket.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected the pong, got {other:?}"),
        }
    };
    let pong: ServerMessage = serde_json::from_str(pong.as_str()).unwrap();
    let ServerMessage::Pong { timestamp } = pong else {
        panic!("expected the pong, got {pong:?}");
    };
    assert_eq!(timestamp, 7);
}

#[tokio::test]
async fn a_clients_close_frame_is_answered() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.connect("goodbye", "alice").await;
    alice.socket.close(None).await.unwrap();
    match tokio::time::timeout(EXPECT, alice.socket.next()).await {
        Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("expected the server's close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_far_larger_than_a_socket_read_arrive_whole_both_ways() {
    let server = TestServer::start().await;
    let mut alice = server.join("large", "alice", "Alice").await;
    let mut bob = server.join("large", "bob", "Bob").await;
    let _ = alice.recv().await; // Bob joined.

    // A ~600 KB text frame in (the full state as hex), its delta out to Bob.
    let text: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let sent = alice.type_text(0, &text).await;
    assert!(sent > 300_000);
    let update = bob.recv().await;
    assert!(matches!(update, ServerMessage::Update { .. }), "{update:?}");
    bob.apply_if_document(&update);
    assert_eq!(bob.content(), text);

    // Many frames in one write, each split across reads.
    for round in 0..20u32 {
        alice.type_text(round, "z").await;
    }
    let mut received = 0;
    while received < 20 {
        let update = bob.recv().await;
        bob.apply_if_document(&update);
        received += 1;
    }
    assert_eq!(bob.content(), alice.content());
    assert_sync_answer(&mut bob, &alice.content()).await;
}

/// Asks for the document and checks its text.
async fn assert_sync_answer(client: &mut Client, content: &str) {
    client
        .socket
        .send(Message::text(r#"{"type":"sync_request"}"#))
        .await
        .unwrap();
    let ServerMessage::Sync { data } = client.recv().await else {
        panic!("expected the sync answer");
    };
    assert_eq!(text_of_hex_state(&data), content);
}

/// A reader that pauses lets the server's writes fill its socket: the frame that
/// fills it goes out in part, the rest and everything after it wait in the
/// connection's queue, and once the reader reads again it gets every update whole
/// and in order.
#[tokio::test]
async fn a_reader_that_pauses_gets_every_frame_whole_once_it_reads_again() {
    let server = TestServer::start_tweaked(
        |config| {
            config.max_outbound_bytes = 64 << 20;
            config.rate_limit_per_sec = 10_000;
            config.rate_limit_burst = 10_000;
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let mut alice = server.join("pause", "alice", "Alice").await;
    let mut bob = server.join("pause", "bob", "Bob").await;
    let _ = alice.recv().await; // Bob joined.

    // 8 MB of updates (32 KB of text each, as hex) while Bob reads nothing: more
    // than loopback's socket buffers hold for an idle reader (a 4 MiB send buffer
    // at most, and a receive buffer that does not grow while nothing is read).
    const ROUNDS: u32 = 128;
    let chunk: String = "0123456789abcdef".repeat(2048);
    for round in 0..ROUNDS {
        alice
            .type_incremental(round * chunk.len() as u32, &chunk)
            .await;
    }

    let mut received = 0;
    while received < ROUNDS {
        let frame = tokio::time::timeout(EXPECT, bob.socket.next()).await;
        let text = match frame {
            Ok(Some(Ok(Message::Text(text)))) => text,
            other => panic!("after {received} updates: {other:?}"),
        };
        match serde_json::from_str::<ServerMessage>(text.as_str()).unwrap() {
            update @ ServerMessage::Update { .. } => {
                bob.apply_if_document(&update);
                received += 1;
            }
            other => panic!("expected only updates, got {other:?}"),
        }
    }
    assert_eq!(bob.content().len(), chunk.len() * ROUNDS as usize);
    assert_eq!(bob.content(), alice.content());
    // The connection is still in order: it answers as usual.
    assert_sync_answer(&mut bob, &alice.content()).await;
}
