//! The binary y-protocols endpoint `/api/yjs/{room}`, driven by a client built on
//! yrs's own protocol types; the JavaScript provider itself is exercised by the
//! interop tests under `tests/interop`.

use std::collections::HashMap;
use std::sync::Arc;

use coedit::api::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

use super::common::*;

pub(super) struct YClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    doc: Doc,
    text: TextRef,
}

impl YClient {
    async fn connect(server: &TestServer, room: &str) -> Self {
        Self::connect_to(&server.addr.to_string(), room).await
    }

    /// Connects to the server at `base` (`host:port`).
    pub(super) async fn connect_to(base: &str, room: &str) -> Self {
        let url = format!("ws://{base}/api/yjs/{room}");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        Self { socket, doc, text }
    }

    async fn send(&mut self, message: Message) {
        self.socket
            .send(Frame::binary(message.encode_v1()))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Message {
        loop {
            match tokio::time::timeout(EXPECT, self.socket.next()).await {
                Ok(Some(Ok(Frame::Binary(bytes)))) => return Message::decode_v1(&bytes).unwrap(),
                Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => continue,
                other => panic!("expected a y-protocol frame, got {other:?}"),
            }
        }
    }

    /// Connects and completes the handshake the way y-websocket does.
    async fn synced(server: &TestServer, room: &str) -> Self {
        Self::synced_at(&server.addr.to_string(), room).await
    }

    /// `synced` against the server at `base` (`host:port`).
    pub(super) async fn synced_at(base: &str, room: &str) -> Self {
        let mut client = Self::connect_to(base, room).await;
        let Message::Sync(SyncMessage::SyncStep1(_)) = client.recv().await else {
            panic!("the server must open with sync step 1");
        };
        let sv = client.doc.transact().state_vector();
        client.send(Message::Sync(SyncMessage::SyncStep1(sv))).await;
        loop {
            if let Message::Sync(SyncMessage::SyncStep2(update)) = client.recv().await {
                client.apply(&update);
                return client;
            }
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).unwrap();
        self.doc.transact_mut().apply_update(update).unwrap();
    }

    pub(super) async fn type_text(&mut self, index: u32, insert: &str) {
        let before = self.doc.transact().state_vector();
        self.text
            .insert(&mut self.doc.transact_mut(), index, insert);
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update))).await;
    }

    pub(super) async fn recv_update(&mut self) {
        loop {
            if let Message::Sync(SyncMessage::Update(update)) = self.recv().await {
                self.apply(&update);
                return;
            }
        }
    }

    pub(super) fn content(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }
}

pub(super) fn awareness(id: u64, clock: u32, json: &str) -> Message {
    let mut clients = HashMap::new();
    clients.insert(
        ClientID::new(id),
        AwarenessUpdateEntry {
            clock,
            json: Arc::from(json),
        },
    );
    Message::Awareness(AwarenessUpdate { clients })
}

#[tokio::test]
async fn a_late_provider_gets_the_document_in_sync_step_2() {
    let server = TestServer::start().await;
    let mut writer = YClient::synced(&server, "ydoc").await;
    writer.type_text(0, "from yjs").await;
    // Wait until the room has it: a second client's step 2 carries it.
    let mut reader = YClient::synced(&server, "ydoc").await;
    if reader.content().is_empty() {
        reader.recv_update().await;
    }
    assert_eq!(reader.content(), "from yjs");

    writer.type_text(8, "!").await;
    reader.recv_update().await;
    assert_eq!(reader.content(), "from yjs!");
}

/// A paste of 100 KB arrives as one binary frame large enough to be read aside
/// (not through the WebSocket library); it reaches the other provider and the
/// keystrokes around it stay in order.
#[tokio::test]
async fn a_large_binary_update_reaches_the_other_provider_in_order() {
    let server = TestServer::start().await;
    let mut writer = YClient::synced(&server, "ypaste").await;
    let mut reader = YClient::synced(&server, "ypaste").await;
    let paste: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    writer.type_text(0, "<").await;
    writer.type_text(1, &paste).await;
    writer.type_text(1 + paste.len() as u32, ">").await;
    let expected = format!("<{paste}>");
    while reader.content() != expected {
        reader.recv_update().await;
    }
    let late = YClient::synced(&server, "ypaste").await;
    assert_eq!(late.content(), expected);
}

#[tokio::test]
async fn json_clients_and_y_protocol_clients_share_one_document() {
    let server = TestServer::start().await;
    let mut page = server.join("mixed", "page", "Page").await;
    let mut provider = YClient::synced(&server, "mixed").await;

    page.type_text(0, "json ").await;
    provider.recv_update().await;
    assert_eq!(provider.content(), "json ");

    provider.type_text(5, "and yjs").await;
    let update = loop {
        match page.recv().await {
            update @ ServerMessage::Update { .. } => break update,
            _ => continue,
        }
    };
    page.apply_if_document(&update);
    assert_eq!(page.content(), "json and yjs");
}

#[tokio::test]
async fn awareness_is_relayed_listed_and_removed_on_disconnect() {
    let server = TestServer::start().await;
    let mut ada = YClient::synced(&server, "aware").await;
    let mut bob = YClient::synced(&server, "aware").await;

    ada.send(awareness(
        11,
        1,
        r##"{"user":{"name":"Ada","color":"#30bced"}}"##,
    ))
    .await;
    let Message::Awareness(update) = bob.recv().await else {
        panic!("expected Ada's awareness");
    };
    assert_eq!(
        &*update.clients[&ClientID::new(11)].json,
        r##"{"user":{"name":"Ada","color":"#30bced"}}"##
    );
    let (_, users) = server.get("/rooms/aware/users").await;
    assert_eq!(users[0]["name"], "Ada");

    // A renewal (same state, newer clock) is relayed too: it is the provider's keep-alive.
    ada.send(awareness(
        11,
        2,
        r##"{"user":{"name":"Ada","color":"#30bced"}}"##,
    ))
    .await;
    assert!(matches!(bob.recv().await, Message::Awareness(_)));
    // An older clock is not.
    ada.send(awareness(11, 1, r#"{"stale":true}"#)).await;

    // A newcomer gets the current states; a query gets them too.
    let mut carol = YClient::connect(&server, "aware").await;
    let _step1 = carol.recv().await;
    let Message::Awareness(current) = carol.recv().await else {
        panic!("a newcomer must be sent the awareness states");
    };
    assert_eq!(current.clients[&ClientID::new(11)].clock, 2);
    carol.send(Message::AwarenessQuery).await;
    assert!(matches!(carol.recv().await, Message::Awareness(_)));

    drop(ada);
    let removed = loop {
        if let Message::Awareness(update) = bob.recv().await {
            break update;
        }
    };
    let entry = &removed.clients[&ClientID::new(11)];
    assert_eq!((&*entry.json, entry.clock), ("null", 3));
}

#[tokio::test]
async fn room_names_may_contain_slashes() {
    let server = TestServer::start().await;
    let mut writer = YClient::synced(&server, "team/notes/today").await;
    writer.type_text(0, "nested").await;
    let (status, room) = server.get("/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(room[0]["id"], "team/notes/today");
}

#[tokio::test]
async fn malformed_frames_close_the_connection_and_leave_the_room_intact() {
    let server = TestServer::start().await;
    let mut writer = YClient::synced(&server, "broken").await;
    writer.type_text(0, "intact").await;

    let mut vandal = YClient::synced(&server, "broken").await;
    vandal
        .socket
        .send(Frame::binary(vec![0, 2, 50, 1, 2, 3]))
        .await
        .unwrap();
    let close = loop {
        match tokio::time::timeout(EXPECT, vandal.socket.next()).await {
            Ok(Some(Ok(Frame::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1007));

    let reader = YClient::synced(&server, "broken").await;
    assert_eq!(reader.content(), "intact");
}

#[tokio::test]
async fn a_restored_checkpoint_reaches_both_protocols_as_a_new_change() {
    let server = TestServer::start().await;
    let mut page = server.join("restore", "page", "Page").await;
    let mut provider = YClient::synced(&server, "restore").await;
    page.type_text(0, "the good version").await;
    while provider.content() != "the good version" {
        provider.recv_update().await;
    }
    let (_, persisted) = server
        .send(reqwest::Method::POST, "/rooms/restore/persist")
        .await;
    assert_eq!(persisted["success"], true);

    // Someone wipes the page and writes something else.
    page.delete_text(0, 16).await;
    page.type_text(0, "wiped").await;
    while provider.content() != "wiped" {
        provider.recv_update().await;
    }

    let (_, loaded) = server.get("/rooms/restore/load").await;
    assert_eq!(loaded["success"], true, "{loaded}");
    // Both see the checkpoint at once, as an edit by the server.
    let update = loop {
        let message = page.recv().await;
        if matches!(message, ServerMessage::Update { .. }) {
            break message;
        }
    };
    assert!(
        matches!(&update, ServerMessage::Update { from, .. } if from == "server"),
        "{update:?}"
    );
    page.apply_if_document(&update);
    assert_eq!(page.content(), "the good version");
    provider.recv_update().await;
    assert_eq!(provider.content(), "the good version");

    // They keep editing; what they had before the restore does not come back
    // (the page sends its whole state with every keystroke).
    page.type_text(16, "!").await;
    provider.recv_update().await;
    assert_eq!(provider.content(), "the good version!");
    provider.type_text(0, ">").await;
    let mut seen = page.content();
    while seen != ">the good version!" {
        let message = page.recv().await;
        page.apply_if_document(&message);
        seen = page.content();
    }
    let (_late, greeting) = server.connect("restore", "late").await;
    let ServerMessage::Sync { data } = &greeting[0] else {
        panic!("expected sync: {greeting:?}");
    };
    assert_eq!(text_of_hex_state(data), ">the good version!");
}

/// The original page sends its full state and then its cursor on every keystroke.
/// What one commit releases for a client goes out in one write to its socket; every
/// other client, of either protocol, still gets each keystroke whole and in order,
/// the JSON ones with its cursor right after it.
#[tokio::test]
async fn keystrokes_and_cursors_sent_back_to_back_reach_both_protocols_in_order() {
    let server = TestServer::start().await;
    let mut page = server.join("together", "page", "Page").await;
    let mut reader = server.join("together", "reader", "Reader").await;
    let mut provider = YClient::synced(&server, "together").await;
    // The page hears of the reader joining.
    let _ = page.recv().await;

    let typed = "released together";
    for (index, letter) in typed.chars().enumerate() {
        page.type_text(index as u32, &letter.to_string()).await;
        page.send(&ClientMessage::Cursor {
            user_id: None,
            name: None,
            color: None,
            position: Some(index as i64 + 1),
        })
        .await;
    }

    for index in 0..typed.len() {
        let update = reader.recv().await;
        let ServerMessage::Update { from, .. } = &update else {
            panic!("keystroke {index}: expected an update, got {update:?}");
        };
        assert_eq!(from, "page");
        reader.apply_if_document(&update);
        assert_eq!(reader.content(), typed[..=index]);
        let cursor = reader.recv().await;
        let ServerMessage::Cursor {
            user_id, position, ..
        } = &cursor
        else {
            panic!("keystroke {index}: expected its cursor, got {cursor:?}");
        };
        assert_eq!((user_id.as_str(), *position), ("page", index as i64 + 1));

        provider.recv_update().await;
        assert_eq!(provider.content(), typed[..=index]);
    }
    reader.expect_silence().await;
}

/// y-websocket's server sends every awareness change to every connection, the
/// sender's own included: a provider alone in a room hears nothing else, and one
/// that hears nothing for 30 s closes and reconnects.
#[tokio::test]
async fn a_provider_alone_in_a_room_hears_its_own_awareness_back() {
    let server = TestServer::start().await;
    let mut ada = YClient::synced(&server, "alone").await;
    for clock in 1..=2 {
        ada.send(awareness(11, clock, r#"{"user":{"name":"Ada"}}"#))
            .await;
        let Message::Awareness(echo) = ada.recv().await else {
            panic!("expected Ada's own awareness back");
        };
        assert_eq!(echo.clients[&ClientID::new(11)].clock, clock);
    }
}

/// Providers send back every awareness state they are sent, so in a busy room an
/// honest provider goes over the rate limit with presence alone. Those frames are
/// dropped, not the connection; a document update over the rate still closes it.
#[tokio::test]
async fn presence_over_the_rate_is_dropped_and_updates_over_it_close() {
    let server = TestServer::start_tweaked(
        |config| {
            config.rate_limit_per_sec = 5;
            config.rate_limit_burst = 5;
        },
        Arc::new(coedit::server::store::memory::MemoryStore::new()),
    )
    .await;
    let mut ada = YClient::synced(&server, "busy").await;
    for clock in 1..=30 {
        ada.send(awareness(11, clock, r#"{"cursor":1}"#)).await;
    }
    // Still open and heard once the rate allows again.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut bob = YClient::synced(&server, "busy").await;
    ada.type_text(0, "still here").await;
    bob.recv_update().await;
    assert_eq!(bob.content(), "still here");

    for n in 0..30 {
        ada.type_text(0, &n.to_string()).await;
    }
    let closed = loop {
        match tokio::time::timeout(EXPECT, ada.socket.next()).await {
            Ok(Some(Ok(Frame::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        closed.map(|frame| u16::from(frame.code)),
        Some(1008),
        "updates over the rate close the connection"
    );
}

/// As y-websocket's server does: a message of a kind it does not know is skipped
/// and the connection kept; an awareness state that is not JSON is not kept or
/// relayed (every provider sent it would throw, losing the other states with it).
#[tokio::test]
async fn unknown_kinds_are_skipped_and_states_that_are_not_json_are_dropped() {
    let server = TestServer::start().await;
    let mut ada = YClient::synced(&server, "lenient").await;
    for frame in [vec![7, 200, 1], vec![0, 3, 1, 2], vec![5, 0xff, 1]] {
        ada.socket.send(Frame::binary(frame)).await.unwrap();
    }
    let mut states = HashMap::new();
    for (id, json) in [(11, "{"), (12, r#"{"user":{"name":"Ada"}}"#)] {
        states.insert(
            ClientID::new(id),
            AwarenessUpdateEntry {
                clock: 1,
                json: Arc::from(json),
            },
        );
    }
    ada.send(Message::Awareness(AwarenessUpdate { clients: states }))
        .await;
    let Message::Awareness(echo) = ada.recv().await else {
        panic!("expected the awareness update back");
    };
    assert_eq!(
        echo.clients.keys().copied().collect::<Vec<_>>(),
        [ClientID::new(12)],
        "only the state that is JSON"
    );
    ada.type_text(0, "still open").await;
    let reader = YClient::synced(&server, "lenient").await;
    assert_eq!(reader.content(), "still open");
}

/// A provider back from offline editing may send a keystroke before it answered
/// the server's step 1: the keystroke follows edits the room lacks. The room asks
/// for them (a step 1) instead of closing, and the client's step 2 brings both.
#[tokio::test]
async fn an_update_after_edits_the_room_lacks_is_answered_with_a_step_1() {
    let server = TestServer::start().await;
    let mut ada = YClient::connect(&server, "offline").await;
    let Message::Sync(SyncMessage::SyncStep1(_)) = ada.recv().await else {
        panic!("the server must open with sync step 1");
    };
    // Typed offline, never sent.
    ada.text
        .insert(&mut ada.doc.transact_mut(), 0, "typed offline, ");
    // Then a keystroke that follows it, sent at once.
    ada.type_text(15, "then online").await;
    let step1 = loop {
        match ada.recv().await {
            Message::Sync(SyncMessage::SyncStep1(server_has)) => break server_has,
            Message::Awareness(_) => continue,
            other => panic!("expected the room to ask for what it lacks, got {other:?}"),
        }
    };
    let missing = ada.doc.transact().encode_state_as_update_v1(&step1);
    ada.send(Message::Sync(SyncMessage::SyncStep2(missing)))
        .await;
    let late = YClient::synced(&server, "offline").await;
    assert_eq!(late.content(), "typed offline, then online");
}

/// Updates the room cannot take (the document would pass its size limit; the
/// room is read-only because the store refuses it) are dropped, not answered by
/// closing: a provider sends the same edits in its step 2 at every reconnection,
/// and was closed, reconnected and closed again for good.
#[tokio::test]
async fn updates_the_room_cannot_take_are_dropped_and_the_provider_stays() {
    use coedit::server::store::memory::MemoryStore;

    /// The connection is open: a step 1 is still answered.
    async fn still_open(client: &mut YClient) {
        let empty = yrs::StateVector::default();
        client
            .send(Message::Sync(SyncMessage::SyncStep1(empty)))
            .await;
        loop {
            if let Message::Sync(SyncMessage::SyncStep2(_)) = client.recv().await {
                return;
            }
        }
    }

    let store = MemoryStore::new();
    let server = TestServer::start_tweaked(
        |config| config.max_document_bytes = 4096,
        Arc::new(store.clone()),
    )
    .await;
    let mut pasting = YClient::synced(&server, "small").await;
    pasting.type_text(0, &"x".repeat(10_000)).await;
    still_open(&mut pasting).await;
    let mut reader = YClient::synced(&server, "small").await;
    assert_eq!(reader.content(), "", "the room took what is over its limit");
    still_open(&mut reader).await;

    store.refuse_room("frozen");
    let mut pia = server.join("frozen", "pia", "Pia").await;
    pia.type_incremental(0, "x").await;
    let refused =
        eventually(async || server.get("/health").await.1.to_string().contains("frozen")).await;
    assert!(refused, "{}", server.get("/health").await.1);
    let mut provider = YClient::synced(&server, "frozen").await;
    // A provider answers the room's step 1 with its own step 2, empty or not.
    provider
        .send(Message::Sync(SyncMessage::SyncStep2(vec![0, 0])))
        .await;
    provider.type_text(0, "y").await;
    still_open(&mut provider).await;
}
