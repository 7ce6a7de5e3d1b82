//! A plain WebSocket relay: every text or binary frame received on
//! `/api/ws/{room}` goes to the room's other connections, untouched. No CRDT, no
//! JSON, no greeting, no storage. It is the ceiling `coedit serve` is measured
//! against in BENCHMARKS.md: whatever coedit costs beyond this is the price of
//! merging documents, presence and durability.
//!
//! Usage: cargo run --release --example relay -- [--port 8002]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames waiting for one connection; a connection that falls this far behind is
/// closed, as coedit does with a slow consumer.
const QUEUE: usize = 1024;
/// Frames written before one flush.
const MAX_FRAMES_PER_FLUSH: usize = 64;

type Room = Mutex<Vec<(u64, mpsc::Sender<Message>)>>;
type Rooms = Arc<Mutex<HashMap<String, Arc<Room>>>>;

fn websocket_config() -> WebSocketConfig {
    // 8 KiB read buffer instead of the zero-filled 128 KiB default; fed frames stay
    // in the write buffer until the writer flushes its batch.
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .iter()
        .position(|arg| arg == "--port")
        .and_then(|index| args.get(index + 1))
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or(8002);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("relay listening on ws://127.0.0.1:{port}/api/ws/{{room}}");
    let rooms: Rooms = Arc::default();
    let next_id = AtomicU64::new(1);
    loop {
        let (stream, _) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, rooms.clone()));
    }
}

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, id: u64, rooms: Rooms) {
    let _ = stream.set_nodelay(true);
    let mut room_name = None;
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match request.uri().path().strip_prefix("/api/ws/") {
            Some(name) if !name.is_empty() => {
                room_name = Some(name.to_owned());
                Ok(response)
            }
            _ => {
                let mut refusal = ErrorResponse::new(Some("no such path".into()));
                *refusal.status_mut() = StatusCode::NOT_FOUND;
                Err(refusal)
            }
        }
    };
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(websocket_config()))
            .await;
    let (Ok(socket), Some(room_name)) = (accepted, room_name) else {
        return;
    };
    let (queue, mut outbound) = mpsc::channel::<Message>(QUEUE);
    // Joined under the registry lock, so a last member leaving cannot remove the
    // room between our lookup and our joining.
    let room = {
        let mut rooms = rooms.lock().unwrap();
        let room = rooms.entry(room_name.clone()).or_default().clone();
        room.lock().unwrap().push((id, queue));
        room
    };

    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(first) = outbound.recv().await {
            let batch = async {
                sink.feed(first).await?;
                for _ in 1..MAX_FRAMES_PER_FLUSH {
                    match outbound.try_recv() {
                        Ok(message) => sink.feed(message).await?,
                        Err(_) => break,
                    }
                }
                sink.flush().await
            };
            if batch.await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    while let Some(Ok(message)) = stream.next().await {
        if !(message.is_text() || message.is_binary()) {
            continue;
        }
        // Message clones share their bytes: one payload, many queues. A member
        // whose queue is full (or whose writer is gone) is dropped from the room.
        room.lock()
            .unwrap()
            .retain(|(member, queue)| *member == id || queue.try_send(message.clone()).is_ok());
    }

    room.lock().unwrap().retain(|(member, _)| *member != id);
    writer.abort();
    let mut rooms = rooms.lock().unwrap();
    if room.lock().unwrap().is_empty() {
        rooms.remove(&room_name);
    }
}
