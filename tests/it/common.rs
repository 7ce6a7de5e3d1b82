//! Test harness: a real server in-process on 127.0.0.1:0, and a WebSocket client
//! that speaks the original JSON protocol the way the original browser page does.

// Each test module uses a different part of the harness.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coedit::api::{ClientMessage, ServerMessage};
use coedit::server::store::memory::MemoryStore;
use coedit::server::store::Store;
use coedit::server::{self, Config};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// How long a test waits for a message that should come.
pub const EXPECT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a message does not come.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), server::ServeError>>>,
}

impl TestServer {
    /// A server on the in-memory store with default settings.
    pub async fn start() -> Self {
        Self::start_with(Config::for_tests(), Arc::new(MemoryStore::new())).await
    }

    pub async fn start_with(config: Config, store: Arc<dyn Store>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run_with_store(
            listener,
            config,
            store,
            shutdown.clone(),
        ));
        Self {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Starts with `Config::for_tests()` changed by `tweak`, on `store`.
    pub async fn start_tweaked(tweak: impl FnOnce(&mut Config), store: Arc<dyn Store>) -> Self {
        let mut config = Config::for_tests();
        tweak(&mut config);
        Self::start_with(config, store).await
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}/api{}", self.addr, path)
    }

    pub fn ws_url(&self, room: &str, client_id: &str) -> String {
        format!("ws://{}/api/ws/{}?client_id={}", self.addr, room, client_id)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(self.http(path)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .request(method, self.http(path))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A client connected to `room` that has read its greeting (`sync` if any, then
    /// `users`). Returns the client and the greeting.
    pub async fn connect(&self, room: &str, client_id: &str) -> (Client, Vec<ServerMessage>) {
        let mut client = Client::connect(&self.ws_url(room, client_id), client_id).await;
        let mut greeting = Vec::new();
        loop {
            let message = client.recv().await;
            let done = matches!(message, ServerMessage::Users { .. });
            greeting.push(message);
            if done {
                break;
            }
        }
        (client, greeting)
    }

    /// `connect`, then `join` with a name and colour, reading the `users_list`.
    pub async fn join(&self, room: &str, client_id: &str, name: &str) -> Client {
        let (mut client, greeting) = self.connect(room, client_id).await;
        for message in &greeting {
            client.apply_if_document(message);
        }
        client
            .send(&ClientMessage::Join {
                name: Some(name.into()),
                color: Some("#3B82F6".into()),
                avatar_url: None,
            })
            .await;
        let list = client.recv().await;
        assert!(
            matches!(list, ServerMessage::UsersList { .. }),
            "got {list:?}"
        );
        client
    }

    /// Graceful shutdown, waiting for the server to finish.
    pub async fn stop(self) {
        self.stopped().await.unwrap();
    }

    /// Graceful shutdown; what the server's run ended with.
    pub async fn stopped(mut self) -> Result<(), coedit::server::ServeError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A WebSocket client holding its own Yjs document, like the original page.
pub struct Client {
    pub id: String,
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub doc: Doc,
    pub text: TextRef,
}

impl Client {
    pub async fn connect(url: &str, id: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self::from_socket(socket, id)
    }

    /// A client over a socket the caller opened.
    pub fn from_socket(socket: WebSocketStream<MaybeTlsStream<TcpStream>>, id: &str) -> Self {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        Self {
            id: id.to_owned(),
            socket,
            doc,
            text,
        }
    }

    /// Sends a frame, reporting failure instead of panicking (for clients that
    /// expect to be cut off).
    pub async fn socket_send(
        &mut self,
        message: Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.socket.send(message).await
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.socket.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// The next frame within `wait`, whatever it is (pings answered and skipped:
    /// they do not extend the wait).
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(None) => return None,
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return Some(message),
            }
        }
    }

    /// The next JSON message; panics if none comes within `EXPECT`.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_frame(EXPECT).await {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str())
                .unwrap_or_else(|error| panic!("{} got unparsable {text}: {error}", self.id)),
            other => panic!("{} expected a JSON message, got {other:?}", self.id),
        }
    }

    /// The next JSON message as a raw value (to check exact field names).
    pub async fn recv_value(&mut self) -> Value {
        match self.next_frame(EXPECT).await {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("{} expected a JSON message, got {other:?}", self.id),
        }
    }

    /// Asserts nothing but pings arrives for `QUIET`.
    pub async fn expect_silence(&mut self) {
        if let Some(message) = self.next_frame(QUIET).await {
            panic!("{} expected silence, got {message:?}", self.id);
        }
    }

    /// Types `insert` at `index` and sends the full state, as the original page does
    /// on every keystroke. Returns the size of the full state sent.
    pub async fn type_text(&mut self, index: u32, insert: &str) -> usize {
        self.text
            .insert(&mut self.doc.transact_mut(), index, insert);
        self.send_full_state().await
    }

    /// Types `insert` and sends only the edit's own update (as y-websocket clients do).
    pub async fn type_incremental(&mut self, index: u32, insert: &str) {
        let before = self.doc.transact().state_vector();
        self.text
            .insert(&mut self.doc.transact_mut(), index, insert);
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send(&ClientMessage::Update {
            data: hex::encode(update),
        })
        .await;
    }

    /// Deletes and sends only the edit's own update.
    pub async fn delete_incremental(&mut self, index: u32, len: u32) {
        let before = self.doc.transact().state_vector();
        self.text
            .remove_range(&mut self.doc.transact_mut(), index, len);
        // A deletion does not move the state vector: send the delete set too.
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send(&ClientMessage::Update {
            data: hex::encode(update),
        })
        .await;
    }

    pub async fn delete_text(&mut self, index: u32, len: u32) -> usize {
        self.text
            .remove_range(&mut self.doc.transact_mut(), index, len);
        self.send_full_state().await
    }

    /// Inserts into the local document without sending anything.
    pub fn text_mut_insert(&mut self, index: u32, insert: &str) {
        self.text
            .insert(&mut self.doc.transact_mut(), index, insert);
    }

    /// The local document's full state, as the original page encodes it.
    pub fn full_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    pub async fn send_full_state(&mut self) -> usize {
        let state = self.full_state();
        let len = state.len();
        self.send(&ClientMessage::Update {
            data: hex::encode(state),
        })
        .await;
        len
    }

    pub fn apply_hex(&mut self, data: &str) {
        let bytes = hex::decode(data).unwrap();
        self.apply_bytes(&bytes);
    }

    pub fn apply_bytes(&mut self, bytes: &[u8]) {
        let update = Update::decode_v1(bytes).unwrap();
        self.doc.transact_mut().apply_update(update).unwrap();
    }

    /// Applies a `sync` or `update` message to this client's document.
    pub fn apply_if_document(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Sync { data } | ServerMessage::Update { data, .. } => {
                self.apply_hex(data)
            }
            _ => {}
        }
    }

    pub fn content(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// Text of a Yjs full state (hex), read the way the original page reads it.
pub fn text_of_hex_state(data: &str) -> String {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    let update = Update::decode_v1(&hex::decode(data).unwrap()).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
    let content = text.get_string(&doc.transact());
    content
}

/// Polls `condition` until it holds or `EXPECT` passes.
pub async fn eventually(mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + EXPECT;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
