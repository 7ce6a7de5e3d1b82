//! A bounded soak of the real binary: editors connect, type, leave politely or
//! vanish, while others send garbage, oversized frames and floods. A checker keeps
//! asking `/api/health`. Every edit the server acknowledged must be in the document,
//! in the store after the rooms unload, and after a restart.
//!
//! Memory: once everyone has left and the rooms have unloaded, the process keeps
//! the allocator's working set (glibc does not hand freed pages back), so RSS does
//! not fall to its value at start. What must hold is that it does not grow: two
//! equal phases on fresh rooms must leave about the same RSS behind.
//!
//! `COEDIT_SOAK_SECS` sets the duration (default 30 s).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coedit::api::{ClientMessage, ServerMessage};
use rand_like::Lcg;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;
use super::mongo_env::{temp_dir, CoeditProcess};

/// Each phase has its own rooms, so the second does not simply work on bigger
/// documents than the first.
const ROOMS: [[&str; 4]; 2] = [
    ["soak-a", "soak-b", "soak-c", "soak/d"],
    ["soak-e", "soak-f", "soak-g", "soak/h"],
];
const WORKERS: usize = 24;

/// A tiny deterministic generator, so a failing run can be replayed by seed.
mod rand_like {
    pub struct Lcg(pub u64);

    impl Lcg {
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }
}

type Accepted = Arc<Mutex<BTreeMap<&'static str, BTreeSet<String>>>>;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn get_json(base: &str, path: &str) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{base}/api{path}"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Waits for the pong that proves every earlier message on this socket was handled.
async fn barrier(client: &mut Client, tag: u64) -> bool {
    let marker = format!("barrier-{tag}");
    let ping = serde_json::json!({"type": "ping", "timestamp": marker});
    if client
        .socket_send(Message::text(ping.to_string()))
        .await
        .is_err()
    {
        return false;
    }
    loop {
        match client.next_frame(Duration::from_secs(10)).await {
            Some(Message::Text(text)) => {
                match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Pong { timestamp }) if timestamp == marker => return true,
                    Ok(ServerMessage::Error { message }) => {
                        panic!("a valid edit was refused: {message}")
                    }
                    Ok(message) => client.apply_if_document(&message),
                    Err(_) => {}
                }
            }
            Some(Message::Binary(bytes)) => client.apply_bytes(&bytes),
            Some(_) => {}
            None => return false,
        }
    }
}

async fn editor(
    base: &str,
    phase: usize,
    worker: usize,
    round: u64,
    random: &mut Lcg,
    accepted: &Accepted,
) {
    let rooms = &ROOMS[phase];
    let room = rooms[random.below(rooms.len() as u64) as usize];
    // Some editors share a client id, like a page with two sockets.
    let client_id = format!("w{}-{}", worker, random.below(3));
    let url = format!("ws://{base}/api/ws/{room}?client_id={client_id}");
    let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await else {
        return;
    };
    let mut client = Client::from_socket(socket, &client_id);
    client
        .send(&ClientMessage::Join {
            name: Some(client_id.clone()),
            color: Some("#F59E0B".into()),
            avatar_url: None,
        })
        .await;
    if !barrier(&mut client, round * 1000).await {
        return;
    }
    let mut typed = Vec::new();
    for edit in 0..(1 + random.below(12)) {
        let token = format!("[{worker}.{round}.{edit}]");
        // Insert between tokens only (after a `]` or at the start), so no token is
        // ever split by another: then "every acknowledged token is in the text" is
        // exactly "no acknowledged edit was lost".
        let content = client.content();
        let boundaries: Vec<u32> = std::iter::once(0)
            .chain(
                content
                    .chars()
                    .enumerate()
                    .filter(|(_, ch)| *ch == ']')
                    .map(|(index, _)| index as u32 + 1),
            )
            .collect();
        let at = boundaries[random.below(boundaries.len() as u64) as usize];
        client.type_text(at, &token).await;
        typed.push(token);
        tokio::time::sleep(Duration::from_millis(random.below(60))).await;
    }
    if barrier(&mut client, round * 1000 + 1).await {
        let mut accepted = accepted.lock().unwrap();
        accepted.entry(room).or_default().extend(typed);
    }
    if random.below(2) == 0 {
        client.close().await;
    } // else: vanish without a close frame.
}

async fn misbehave(base: &str, phase: usize, worker: usize, random: &mut Lcg) {
    let rooms = &ROOMS[phase];
    let room = rooms[random.below(rooms.len() as u64) as usize];
    let url = format!("ws://{base}/api/ws/{room}?client_id=vandal-{worker}");
    let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await else {
        return;
    };
    let mut client = Client::from_socket(socket, "vandal");
    let frames = match random.below(5) {
        0 => vec![Message::text("{not json"); 20],
        1 => vec![Message::text(r#"{"type":"update","data":"00ff00ff00ff"}"#); 20],
        2 => vec![Message::binary(vec![0xff; 512]); 20],
        3 => vec![Message::text(format!(
            r#"{{"type":"update","data":"{}"}}"#,
            "ab".repeat(600_000)
        ))],
        _ => vec![Message::text(r#"{"type":"ping","timestamp":0}"#); 2000],
    };
    for frame in frames {
        if client.socket_send(frame).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(random.below(200))).await;
}

/// What one phase of load saw.
struct Phase {
    health_checks: u64,
    health_failures: Vec<String>,
    peak_rss: u64,
}

/// Runs editors and vandals against `base` until `deadline`, checking health and
/// sampling the server's RSS all along.
async fn run_phase(base: &str, pid: u32, seconds: u64, phase: usize, accepted: &Accepted) -> Phase {
    let seed = 0x5eed + phase as u64 * 0x1000;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let health_failures = Arc::new(Mutex::new(Vec::new()));
    let checker = {
        let base = base.to_owned();
        let failures = health_failures.clone();
        tokio::spawn(async move {
            let mut checks = 0u64;
            while Instant::now() < deadline {
                match get_json(&base, "/health").await {
                    Some(health) if health["status"] == "healthy" => {}
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                checks += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            checks
        })
    };
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let base = base.to_owned();
        let accepted = accepted.clone();
        workers.push(tokio::spawn(async move {
            let mut random = Lcg(seed + worker as u64);
            let mut round = seed * 1000;
            while Instant::now() < deadline {
                round += 1;
                if random.below(10) < 7 {
                    editor(&base, phase, worker, round, &mut random, &accepted).await;
                } else {
                    misbehave(&base, phase, worker, &mut random).await;
                }
            }
        }));
    }
    let mut peak_rss = 0;
    while Instant::now() < deadline {
        peak_rss = peak_rss.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let health_checks = checker.await.unwrap();
    let health_failures = health_failures.lock().unwrap().clone();
    Phase {
        health_checks,
        health_failures,
        peak_rss,
    }
}

/// Waits until nobody is connected and every room has left memory.
async fn drain(base: &str) {
    let drained = eventually_for(Duration::from_secs(20), async || {
        let Some(metrics) = get_json(base, "/metrics").await else {
            return false;
        };
        metrics["active_connections"] == 0 && metrics["rooms_loaded"] == 0
    })
    .await;
    assert!(
        drained,
        "connections or rooms still held: {:?}",
        get_json(base, "/metrics").await
    );
}

/// Every acknowledged token of every room is in the document a new client gets.
async fn check_rooms(base: &str, accepted: &Accepted, when: &str) {
    let accepted = accepted.lock().unwrap().clone();
    for (room, tokens) in &accepted {
        let url = format!("ws://{base}/api/ws/{room}?client_id=checker");
        let (socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut reader = Client::from_socket(socket, "checker");
        let greeting = reader.next_frame(Duration::from_secs(30)).await;
        let Some(Message::Text(text)) = greeting else {
            panic!("{when}: room {room} sent no greeting: {greeting:?}");
        };
        let ServerMessage::Sync { data } = serde_json::from_str(text.as_str()).unwrap() else {
            panic!("{when}: room {room} has no document");
        };
        let text = text_of_hex_state(&data);
        let missing: Vec<&String> = tokens
            .iter()
            .filter(|token| !text.contains(token.as_str()))
            .collect();
        assert!(missing.is_empty(), "{when}: room {room} lost {missing:?}");
        reader.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_soak_loses_no_acknowledged_edit_and_gives_memory_back() {
    let seconds: u64 = std::env::var("COEDIT_SOAK_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(30);
    let data_dir = temp_dir("soak");
    let store_args = vec![
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--idle-unload-secs".to_owned(),
        "1".to_owned(),
        "--max-message-bytes".to_owned(),
        "1048576".to_owned(),
    ];
    let mut server = CoeditProcess::start(&store_args).await;
    let base = server.base();
    let pid = server.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_start = rss_kib(pid);
    let accepted: Accepted = Arc::default();

    // Two equal phases: what the first leaves allocated is the allocator's working
    // set; a leak would make the second leave about as much again on top of it.
    let mut after = Vec::new();
    for phase in [0, 1] {
        let seen = run_phase(&base, pid, seconds / 2, phase, &accepted).await;
        assert!(
            seen.health_failures.is_empty(),
            "phase {phase}: health failed {} of {} times: {:?}",
            seen.health_failures.len(),
            seen.health_checks,
            seen.health_failures
        );
        check_rooms(&base, &accepted, &format!("phase {phase}, live")).await;
        drain(&base).await;
        after.push(rss_kib(pid));
        println!(
            "soak phase {phase}: {} health checks, RSS at start {at_start} KiB, peak {} KiB, after everyone left {} KiB",
            seen.health_checks,
            seen.peak_rss,
            after[after.len() - 1]
        );
        check_rooms(
            &base,
            &accepted,
            &format!("phase {phase}, reloaded from the store"),
        )
        .await;
    }
    let total: usize = accepted.lock().unwrap().values().map(BTreeSet::len).sum();
    assert!(
        total > 50,
        "the soak made too few edits to mean anything: {total}"
    );
    let (first, second) = (after[0], after[1]);
    assert!(
        second <= first + (8 * 1024).max(first / 4),
        "memory grew from one phase to the next: {first} KiB then {second} KiB"
    );

    // The store has it all too: restart on the same data and look again.
    server.stop_gracefully();
    let server = CoeditProcess::start(&store_args).await;
    check_rooms(&server.base(), &accepted, "after a restart").await;
    drop(server);
    std::fs::remove_dir_all(&data_dir).ok();
}

async fn eventually_for(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
