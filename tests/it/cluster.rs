//! Several `coedit serve` nodes (the real binary) sharing rooms through a real Redis
//! (Debian's `redis-server`, with its append-only file, which it writes before it
//! answers, so a `kill -9` of Redis loses nothing acknowledged) and
//! the MongoDB-compatible test server: clients spread over nodes, nodes and Redis
//! killed under them.
//!
//! `scripts/test.sh` installs Redis when missing and exports `COEDIT_TEST_REDIS`;
//! under CI these tests fail rather than skip without it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coedit::api::{ClientMessage, ServerMessage};
use coedit::server::store::mongo::MongoStore;
use coedit::server::store::Store;
use mongodb::bson::{doc, Document};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::common::*;
use super::documents::close_frame;
use super::durability::{join, synced_text, type_slowly, until_text};
use super::mongo_env::*;
use super::write_ahead::{exits, mongo_args};
use super::yjs::YClient;

/// How long a change may take to cross nodes, or a node to recover, on a machine
/// that may be busy building.
const CROSS: Duration = Duration::from_secs(30);
/// For tests that wait for a room's log to reach MongoDB: moved every second, so
/// within `EXPECT`, instead of every 10 s by default.
const PERSIST_SOON: [&str; 2] = ["--persist-every", "1s"];

/// Redis to start private servers of, or `None` (after saying why) to skip.
fn redis_program(test: &str) -> Option<PathBuf> {
    let program = std::env::var("COEDIT_TEST_REDIS")
        .ok()
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
        });
    if program.is_none() {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{test}: redis-server not found; under CI the cluster tests must run (scripts/test.sh installs it)");
        }
        eprintln!("skipping {test}: redis-server not found (scripts/test.sh installs it)");
    }
    program
}

/// A private Redis on its own port and directory, which a test may kill and start
/// again on the same append-only file.
struct Redis {
    program: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    async fn start(program: PathBuf) -> Self {
        let mut redis = Self {
            program,
            port: free_port(),
            dir: temp_dir("redis"),
            child: None,
        };
        redis.resume().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn resume(&mut self) {
        let log = self.dir.join("redis.log");
        let mut child = Command::new(&self.program)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("everysec")
            .arg("--save")
            .arg("")
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(self.port, &mut child, &log).await;
        self.child = Some(child);
    }

    /// `kill -9`: what it acknowledged must come back from its append-only file.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis, a MongoDB database and the flags that make a node of them.
struct Setup {
    redis: Redis,
    mongo_url: String,
    database: String,
}

impl Setup {
    async fn new(test: &str) -> Option<Self> {
        let program = redis_program(test)?;
        let mongo_url = mongo_url(test)?;
        Some(Self {
            redis: Redis::start(program).await,
            mongo_url,
            database: unique_database("cluster"),
        })
    }

    fn args(&self, node: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--mongo-url",
            &self.mongo_url,
            "--db-name",
            &self.database,
            "--redis-url",
            &self.redis.url(),
            "--node-id",
            node,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    async fn node(&self, name: &str, extra: &[&str]) -> CoeditProcess {
        CoeditProcess::start(&self.args(name, extra)).await
    }

    async fn node_on(&self, port: u16, name: &str, extra: &[&str]) -> CoeditProcess {
        CoeditProcess::start_on(port, &self.args(name, extra)).await
    }

    async fn db(&self) -> mongodb::Database {
        database(&self.mongo_url, &self.database).await
    }

    /// Two nodes, alice on the first and bob on the second in `room`, and `text`
    /// typed by alice that bob has seen.
    async fn two_editors(
        &self,
        room: &str,
        text: &str,
    ) -> (CoeditProcess, CoeditProcess, Client, Client) {
        let n1 = self.node("n1", &[]).await;
        let n2 = self.node("n2", &[]).await;
        let mut alice = join(&n1.base(), room, "alice").await;
        let mut bob = join(&n2.base(), room, "bob").await;
        type_slowly(&mut alice, text).await;
        until_text(&mut bob, text).await;
        (n1, n2, alice, bob)
    }
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The JSON answer to a `method` request to `url`.
async fn call(method: reqwest::Method, url: &str) -> Value {
    reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Reads `client`'s messages (applying document ones) until one matches.
async fn until_message(client: &mut Client, what: &str, matches: impl Fn(&ServerMessage) -> bool) {
    let deadline = Instant::now() + CROSS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_frame(left).await {
            Some(Message::Text(text)) => {
                let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
                client.apply_if_document(&message);
                if matches(&message) {
                    return;
                }
            }
            Some(Message::Binary(bytes)) => client.apply_bytes(&bytes),
            Some(_) => {}
            None => panic!("{} never got {what}", client.id),
        }
    }
}

/// The ids `/users` on the node at `base` lists for `room`, sorted.
async fn user_ids(base: &str, room: &str) -> Vec<String> {
    let users = get_json(&format!("http://{base}/api/rooms/{room}/users")).await;
    let mut ids: Vec<String> = users
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {users}"))
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Reads both clients until they hold the same text of `len` characters.
async fn until_converged(a: &mut Client, b: &mut Client, len: usize) -> String {
    until_converged_seeing(a, b, len, &mut Vec::new()).await
}

/// `until_converged`, keeping every JSON message the two were sent in `seen`.
async fn until_converged_seeing(
    a: &mut Client,
    b: &mut Client,
    len: usize,
    seen: &mut Vec<ServerMessage>,
) -> String {
    let deadline = Instant::now() + CROSS;
    loop {
        if a.content() == b.content() && a.content().chars().count() == len {
            return a.content();
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {:?} vs {:?}",
            a.content(),
            b.content()
        );
        for client in [&mut *a, &mut *b] {
            match client.next_frame(Duration::from_millis(50)).await {
                Some(Message::Text(text)) => {
                    let message: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
                    client.apply_if_document(&message);
                    seen.push(message);
                }
                Some(Message::Binary(bytes)) => client.apply_bytes(&bytes),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_rooms_edits_presence_and_listings() {
    let Some(setup) = Setup::new("three_nodes_share_rooms_edits_presence_and_listings").await
    else {
        return;
    };
    let n1 = setup.node("n1", &[]).await;
    let n2 = setup.node("n2", &[]).await;
    let n3 = setup.node("n3", &[]).await;
    let room = "shared";

    let mut alice = join(&n1.base(), room, "alice").await;
    let mut bob = join(&n2.base(), room, "bob").await;
    until_message(
        &mut alice,
        "bob's user_joined from another node",
        |message| matches!(message, ServerMessage::UserJoined { user_id, .. } if user_id == "bob"),
    )
    .await;

    // Typing on two nodes at once converges.
    let (_, _) = tokio::join!(
        type_slowly(&mut alice, "abcde"),
        type_slowly(&mut bob, "vwxyz")
    );
    let text = until_converged(&mut alice, &mut bob, 10).await;
    for character in "abcdevwxyz".chars() {
        assert!(text.contains(character), "{text:?}");
    }

    // Cursors cross nodes under the sender's identity.
    alice
        .send(&ClientMessage::Cursor {
            user_id: None,
            name: None,
            color: None,
            position: Some(3),
        })
        .await;
    until_message(&mut bob, "alice's cursor", |message| {
        matches!(message, ServerMessage::Cursor { user_id, position, .. } if user_id == "alice" && *position == 3)
    })
    .await;

    // A node that never held the room lists everyone on every node, with the
    // holders' size and connections, and without loading the room…
    let on_n3 = async || -> Value {
        let listed = get_json(&format!("http://{}/api/rooms", n3.base())).await;
        let shared = listed
            .as_array()
            .and_then(|rooms| rooms.iter().find(|info| info["id"] == room))
            .cloned();
        shared.unwrap_or(Value::Null)
    };
    let on_n1 = format!("http://{}/api/rooms/{room}", n1.base());
    let described = eventually(async || {
        let shared = on_n3().await;
        let alice = shared["users"]
            .as_array()
            .and_then(|users| users.iter().find(|user| user["id"] == "alice"))
            .cloned()
            .unwrap_or(Value::Null);
        shared["connections"] == 2
            && alice["cursor_position"] == 3
            && shared["last_activity"].is_string()
            && shared["doc_size"] == get_json(&on_n1).await["doc_size"]
    })
    .await;
    let shared = on_n3().await;
    assert!(described, "{shared} against {}", get_json(&on_n1).await);
    assert_eq!(shared["user_count"], 2, "{shared}");
    assert_eq!(shared["exists"], true, "{shared}");
    assert!(shared["doc_size"].as_u64() > Some(10), "{shared}");
    assert_eq!(user_ids(&n3.base(), room).await, ["alice", "bob"]);
    let n3_metrics = get_json(&format!("http://{}/api/metrics", n3.base())).await;
    assert_eq!(n3_metrics["rooms_active"], 0, "{n3_metrics}");
    // A holder counts the other holders' connections with its own.
    let counted = eventually(async || get_json(&on_n1).await["connections"] == 2).await;
    assert!(counted, "{}", get_json(&on_n1).await);

    // …and a late joiner there gets the whole document.
    assert_eq!(synced_text(&n3.base(), room).await, text);

    // A y-websocket client on the third node edits with the JSON clients.
    let mut editor = YClient::synced_at(&n3.base(), room).await;
    assert_eq!(editor.content(), text);
    editor.type_text(0, "Y").await;
    let expected = format!("Y{text}");
    until_text(&mut alice, &expected).await;
    until_text(&mut bob, &expected).await;
    bob.type_text(0, "B").await;
    let expected = format!("BY{text}");
    while editor.content() != expected {
        editor.recv_update().await;
    }

    // Simulated users added on one node are listed on another; a checkpoint saved
    // on one node is loaded on another.
    let simulate_url = format!("http://{}/api/simulate/users/{room}?count=2", n3.base());
    let added = call(reqwest::Method::POST, &simulate_url).await;
    assert_eq!(added["success"], true, "{added}");
    let room_url = format!("http://{}/api/rooms/{room}", n1.base());
    let listed = eventually(async || get_json(&room_url).await["user_count"] == 4).await;
    assert!(listed, "{}", get_json(&room_url).await);
    // …and removed through yet another node, everywhere.
    let remove_url = format!("http://{}/api/simulate/users/{room}", n2.base());
    let removed = call(reqwest::Method::DELETE, &remove_url).await;
    assert_eq!(removed["removed"], 2, "{removed}");
    for node in [&n1, &n2, &n3] {
        let room_url = format!("http://{}/api/rooms/{room}", node.base());
        let gone = eventually(async || get_json(&room_url).await["user_count"] == 2).await;
        assert!(gone, "{}", get_json(&room_url).await);
    }
    let persist_url = format!("http://{}/api/rooms/{room}/persist", n2.base());
    let persisted = call(reqwest::Method::POST, &persist_url).await;
    assert_eq!(persisted["success"], true, "{persisted}");
    let loaded = get_json(&format!("http://{}/api/rooms/{room}/load", n3.base())).await;
    assert_eq!(loaded["success"], true, "{loaded}");
    assert_eq!(synced_text(&n1.base(), room).await, expected);

    // The node list shows all three, each with its connections.
    let cluster = get_json(&format!("http://{}/api/cluster", n2.base())).await;
    let nodes = cluster["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes
        .iter()
        .map(|node| node["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{cluster}");
    // …and so does `coedit cluster`, as a table and as JSON.
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_coedit"))
            .args(["--server", &format!("http://{}", n3.base())])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let table = cli(&["cluster"]);
    for name in ["n1", "n2", "n3 (this)"] {
        assert!(table.contains(name), "{table}");
    }
    let listed: Value = serde_json::from_str(&cli(&["cluster", "--json"])).unwrap();
    assert_eq!(listed["node_id"], "n3");
    assert_eq!(
        listed["nodes"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );

    let metrics_url = format!("http://{}/api/metrics", n1.base());
    // Counted at each heartbeat (once a second).
    let counted = eventually(async || get_json(&metrics_url).await["live_nodes"] == 3).await;
    let metrics = get_json(&metrics_url).await;
    assert!(counted, "{metrics}");
    assert_eq!(metrics["node"], "n1");
    let prometheus = reqwest::get(format!("http://{}/api/metrics/prometheus", n1.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        prometheus.contains("coedit_cluster_live_nodes{node=\"n1\"} 3"),
        "{prometheus}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_right_after_a_cross_node_relay_loses_nothing() {
    let Some(setup) =
        Setup::new("killing_every_node_right_after_a_cross_node_relay_loses_nothing").await
    else {
        return;
    };
    let n1 = setup.node("n1", &PERSIST_SOON).await;
    let n2 = setup.node("n2", &PERSIST_SOON).await;
    let port = n1.port;
    let mut writer = join(&n1.base(), "kill-all", "writer").await;
    let mut watcher = join(&n2.base(), "kill-all", "watcher").await;
    let text = "every keystroke seen on another node survives";
    type_slowly(&mut writer, text).await;
    // The moment the other node's client holds it all, both nodes die.
    until_text(&mut watcher, text).await;
    n1.kill_hard();
    n2.kill_hard();

    let restarted = setup.node_on(port, "n1", &PERSIST_SOON).await;
    assert_eq!(synced_text(&restarted.base(), "kill-all").await, text);

    // The restarted node moves the log into MongoDB (and trims it from Redis once
    // it is old enough).
    let db = setup.db().await;
    let updates = db.collection::<Document>("room_updates");
    let mut conn = setup.redis.connection().await;
    let seq: u64 = redis::cmd("GET")
        .arg("coedit:{kill-all}:seq")
        .query_async(&mut conn)
        .await
        .unwrap();
    let expected: Vec<i64> = (1..=seq as i64).collect();
    let moved = eventually(async || stored_numbers(&updates, "kill-all").await == expected).await;
    assert!(moved, "the log was not moved into MongoDB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_health_and_every_edit_converges_after_it() {
    let Some(mut setup) =
        Setup::new("a_redis_outage_degrades_health_and_every_edit_converges_after_it").await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("outage", "before ").await;

    setup.redis.kill();
    let killed = Instant::now();
    let health_url = format!("http://{}/api/health", n1.base());
    let degraded = eventually(async || {
        let health = get_json(&health_url).await;
        health["status"] == "degraded"
            && health["cluster"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("Redis"))
    })
    .await;
    assert!(degraded, "{}", get_json(&health_url).await);

    // Both keep typing while Redis is down; nobody reconnects.
    type_slowly(&mut alice, "A").await;
    type_slowly(&mut bob, "B").await;
    // Longer than a node may miss its beats: the nodes' beats are all stale when
    // Redis is back, yet none of them died.
    tokio::time::sleep((killed + Duration::from_secs(7)).saturating_duration_since(Instant::now()))
        .await;
    setup.redis.resume().await;

    let mut seen = Vec::new();
    let text = until_converged_seeing(&mut alice, &mut bob, "before AB".len(), &mut seen).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for client in [&mut alice, &mut bob] {
            if let Some(Message::Text(text)) = client.next_frame(Duration::from_millis(50)).await {
                seen.push(serde_json::from_str(text.as_str()).unwrap());
            }
        }
    }
    let left: Vec<&ServerMessage> = seen
        .iter()
        .filter(|message| matches!(message, ServerMessage::UserLeft { .. }))
        .collect();
    assert!(left.is_empty(), "nobody left: {left:?}");
    assert!(text.starts_with("before "), "{text:?}");
    assert!(text.contains('A') && text.contains('B'), "{text:?}");
    let healthy = eventually(async || get_json(&health_url).await["status"] == "healthy").await;
    assert!(healthy, "{}", get_json(&health_url).await);
    // What Redis acknowledged before it was killed came back from its AOF.
    assert_eq!(synced_text(&n2.base(), "outage").await, text);
}

/// Joins and leaves while Redis is unreachable reach the other nodes once it is
/// back: the node they happened on writes its users into the room's list again,
/// and the others read it. Before, a user who left stayed listed everywhere else
/// and one who came was never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_during_a_redis_outage_reach_the_other_nodes_after_it() {
    let Some(mut setup) =
        Setup::new("joins_and_leaves_during_a_redis_outage_reach_the_other_nodes_after_it").await
    else {
        return;
    };
    let (n1, n2, mut alice, bob) = setup.two_editors("ghost", "hi ").await;
    // Redis syncs its append-only file every second: bob's entry in the list is
    // on disk before it goes down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup.redis.kill();
    let health_url = format!("http://{}/api/health", n2.base());
    let degraded = eventually(async || get_json(&health_url).await["status"] == "degraded").await;
    assert!(degraded, "{}", get_json(&health_url).await);

    let carol = join(&n2.base(), "ghost", "carol").await;
    bob.close().await;
    // The node has tried, and failed, to write both.
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.redis.resume().await;

    let listed =
        eventually(async || user_ids(&n1.base(), "ghost").await == ["alice", "carol"]).await;
    assert!(listed, "{:?}", user_ids(&n1.base(), "ghost").await);
    until_message(
        &mut alice,
        "bob's user_left",
        |message| matches!(message, ServerMessage::UserLeft { user_id, .. } if user_id == "bob"),
    )
    .await;
    assert_eq!(user_ids(&n2.base(), "ghost").await, ["alice", "carol"]);

    // A node's list of the rooms it holds is made right again too, whatever was
    // lost of it: here a room it holds is missing and one it let go is listed.
    let mut redis = setup.redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("coedit:{nodes}:rooms:n2*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let () = redis::pipe()
        .cmd("SREM")
        .arg(&keys[0])
        .arg("ghost")
        .cmd("SADD")
        .arg(&keys[0])
        .arg("let-go")
        .query_async(&mut redis)
        .await
        .unwrap();
    // Nodes compare every 5 s.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut listed: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        listed = redis::cmd("SMEMBERS")
            .arg(&keys[0])
            .query_async(&mut redis)
            .await
            .unwrap();
        if listed == ["ghost"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, ["ghost"]);
    drop(carol);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_cross_nodes_when_their_pushes_are_cut_off() {
    let Some(setup) = Setup::new("edits_cross_nodes_when_their_pushes_are_cut_off").await else {
        return;
    };
    let (_n1, n2, mut alice, mut bob) = setup.two_editors("cut", "start ").await;
    let mut redis = setup.redis.connection().await;
    // Every node's subscription (where entries are pushed) is dropped while both
    // type; what was appended meanwhile is only in the streams.
    for (who, letter) in [("alice", "a"), ("bob", "b"), ("alice", "c"), ("bob", "d")] {
        // Both nodes subscribed again since the last cut.
        let resubscribed = eventually(async || {
            let subscribers: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut redis)
                .await
                .unwrap();
            subscribers.lines().count() >= 2
        })
        .await;
        assert!(resubscribed, "the nodes never subscribed again");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(killed >= 2, "each node subscribes: {killed}");
        let client = if who == "alice" { &mut alice } else { &mut bob };
        type_slowly(client, letter).await;
    }
    let text = until_converged(&mut alice, &mut bob, "start abcd".len()).await;
    assert_eq!(synced_text(&n2.base(), "cut").await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_appended_without_its_push_is_read_from_the_stream() {
    let Some(setup) =
        Setup::new("an_entry_appended_without_its_push_is_read_from_the_stream").await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("unpushed", "abc").await;
    // Updates appended the way a node appends them, but never pushed (as a node of
    // an earlier version would, during a rolling upgrade).
    let mut redis = setup.redis.connection().await;
    append_unpushed(&mut redis, "unpushed", 4242, "Z").await;
    // Nobody types after it: each node finds it in its sweep of the streams.
    until_text(&mut alice, "Zabc").await;
    until_text(&mut bob, "Zabc").await;
    // Typed right after one: the next push shows the gap, and the stream fills it.
    append_unpushed(&mut redis, "unpushed", 4243, "Y").await;
    type_slowly(&mut bob, "!").await;
    let text = until_converged(&mut alice, &mut bob, "YZabc!".len()).await;
    for node in [&n1, &n2] {
        assert_eq!(synced_text(&node.base(), "unpushed").await, text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_writes_everything_and_exits_at_once() {
    let Some(setup) =
        Setup::new("a_node_stopped_gracefully_writes_everything_and_exits_at_once").await
    else {
        return;
    };
    let (mut n1, n2, _alice, _bob) = setup.two_editors("stop", "typed before the stop").await;
    let stopping = Instant::now();
    n1.stop_gracefully();
    let log = n1.log();
    // The journal closes once its rooms are gone; waiting out the grace period
    // instead would log that writes were lost.
    assert!(!log.contains("did not take the last writes"), "{log}");
    assert!(stopping.elapsed() < Duration::from_secs(8), "{log}");
    assert_eq!(
        synced_text(&n2.base(), "stop").await,
        "typed before the stop"
    );

    // The nodes hold MongoDB's writer lease together: the one that stopped left it
    // to the other, which keeps renewing it (a few renewals, RENEW_EVERY = 2 s),
    // so a lone server on the same database is still refused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dir = temp_dir("lone-server");
    let lone = serve_command(
        free_port(),
        &mongo_args(&setup.mongo_url, &setup.database),
        &dir,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (status, stderr) = exits(lone, Duration::from_secs(40)).await;
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        !status.success(),
        "a lone server started beside the cluster: {stderr}"
    );
    assert!(
        stderr.contains("in use by another coedit server"),
        "{stderr}"
    );
    let log = n2.log();
    assert!(!log.contains("taken over"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_before_a_node_read_them_are_read_from_the_store() {
    let Some(setup) =
        Setup::new("entries_trimmed_before_a_node_read_them_are_read_from_the_store").await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("trimmed", "abc").await;
    // An entry persisted to MongoDB and trimmed from the stream before either node
    // read it, and one after it that both read from the stream: each node finds the
    // gap in its sweep and reads the room from MongoDB.
    let mut redis = setup.redis.connection().await;
    let seq: i64 = redis::cmd("INCRBY")
        .arg("coedit:{trimmed}:seq")
        .arg(2)
        .query_async(&mut redis)
        .await
        .unwrap();
    store_entry(&setup, "trimmed", seq - 1, &prepended(4242, "X")).await;
    add_entry(&mut redis, "trimmed", seq, prepended(4343, "Y")).await;
    let text = until_converged(&mut alice, &mut bob, "XYabc".len()).await;
    assert!(text.contains('X') && text.contains('Y'), "{text:?}");
    for node in [&n1, &n2] {
        assert_eq!(synced_text(&node.base(), "trimmed").await, text);
    }
}

/// The last entries of a burst persisted and trimmed before a node read them (its
/// subscription was down, or it lagged), with nothing after them to show the gap:
/// each node's sweep finds the room's counter ahead of what it merged and reads
/// the room from MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_entries_trimmed_before_a_node_read_them_are_read_from_the_store() {
    let Some(setup) =
        Setup::new("the_last_entries_trimmed_before_a_node_read_them_are_read_from_the_store")
            .await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("last-trimmed", "abc").await;
    let mut redis = setup.redis.connection().await;
    let seq: i64 = redis::cmd("INCR")
        .arg("coedit:{last-trimmed}:seq")
        .query_async(&mut redis)
        .await
        .unwrap();
    store_entry(&setup, "last-trimmed", seq, &prepended(4242, "X")).await;
    let text = until_converged(&mut alice, &mut bob, "Xabc".len()).await;
    assert_eq!(text, "Xabc");
    for node in [&n1, &n2] {
        assert_eq!(synced_text(&node.base(), "last-trimmed").await, text);
    }
}

/// Redis' counter for a room goes back (a replica promoted before it had the last
/// appends, or Redis restarted without its data): a node numbers its next update
/// past every number it has seen, so the other nodes do not skip it as one they
/// hold, and it reaches MongoDB under a number of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_went_back_numbers_past_what_the_nodes_merged() {
    let Some(setup) =
        Setup::new("a_counter_that_went_back_numbers_past_what_the_nodes_merged").await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("regress", "abc").await;
    let mut redis = setup.redis.connection().await;
    let counter: i64 = redis::cmd("GET")
        .arg("coedit:{regress}:seq")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(counter >= 3, "{counter}");
    let _: () = redis::cmd("SET")
        .arg("coedit:{regress}:seq")
        .arg(counter - 2)
        .query_async(&mut redis)
        .await
        .unwrap();
    type_slowly(&mut alice, "X").await;
    let text = until_converged(&mut alice, &mut bob, "abcX".len()).await;
    for node in [&n1, &n2] {
        assert_eq!(synced_text(&node.base(), "regress").await, text);
    }
}

/// A room whose stream grew long (MongoDB was away, so nothing was moved out of
/// it) opens whole: the stream is read in pages, none lost or read twice at their
/// edges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_a_long_stream_opens_whole() {
    let Some(setup) = Setup::new("a_room_with_a_long_stream_opens_whole").await else {
        return;
    };
    let mut redis = setup.redis.connection().await;
    let appended = 2_345;
    for client in 0..appended {
        append_unpushed(&mut redis, "long", 10_000 + client, "a").await;
    }
    let node = setup.node("n1", &[]).await;
    let text = synced_text(&node.base(), "long").await;
    assert_eq!(text, "a".repeat(appended as usize));
}

/// A move into MongoDB that went in only in part (its later run stored, its earlier
/// one not) and a persister that died before trying again: the node that opens
/// the room next merges the whole stream, and, taking the lease over, stores the
/// missing entry instead of skipping everything below the highest number stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stored_in_part_is_completed_by_the_next_persister() {
    let Some(setup) = Setup::new("a_move_stored_in_part_is_completed_by_the_next_persister").await
    else {
        return;
    };
    let mut redis = setup.redis.connection().await;
    let updates: Vec<Vec<u8>> = [(7001, "A"), (7002, "B"), (7003, "C")]
        .iter()
        .map(|(client, text)| prepended(*client, text))
        .collect();
    for update in &updates {
        let seq: i64 = redis::cmd("INCR")
            .arg("coedit:{holed}:seq")
            .query_async(&mut redis)
            .await
            .unwrap();
        add_entry(&mut redis, "holed", seq, update.clone()).await;
    }
    for (seq, update) in [(2, &updates[1]), (3, &updates[2])] {
        store_entry(&setup, "holed", seq, update).await;
    }
    let stored = setup.db().await.collection::<Document>("room_updates");
    let node = setup.node("n1", &["--persist-every", "200ms"]).await;
    let text = synced_text(&node.base(), "holed").await;
    assert_eq!(text.chars().count(), 3, "{text:?}");
    let completed = eventually(async || {
        stored
            .count_documents(doc! {"room_id": "holed", "$or": [{"seq": 1}, {"entries.seq": 1}]})
            .await
            .unwrap()
            > 0
    })
    .await;
    assert!(completed, "the entry missing from MongoDB was never stored");
}

/// Stores an update in MongoDB's log of `room` under `seq`, as a persister would
/// have moved it there, with nothing of it in the room's stream.
async fn store_entry(setup: &Setup, room: &str, seq: i64, update: &[u8]) {
    setup
        .db()
        .await
        .collection::<Document>("room_updates")
        .insert_one(doc! {
            "room_id": room,
            "seq": seq,
            "data": mongodb::bson::Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Generic,
                bytes: update.to_vec(),
            },
            "at": 0_i64,
            "size": update.len() as i64,
        })
        .await
        .unwrap();
}

/// A Yjs update of client `client` that puts `text` at the start of the document.
fn prepended(client: u64, text: &str) -> Vec<u8> {
    use yrs::{Doc, Text, Transact};
    let doc = Doc::with_client_id(client);
    let content = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    content.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

/// Appends to `room`'s log, numbered as a node numbers it, an update of Yjs client
/// `client` that puts `text` at the start, without the push a node sends with it.
async fn append_unpushed(
    redis: &mut redis::aio::MultiplexedConnection,
    room: &str,
    client: u64,
    text: &str,
) {
    let seq: i64 = redis::cmd("INCR")
        .arg(format!("coedit:{{{room}}}:seq"))
        .query_async(redis)
        .await
        .unwrap();
    add_entry(redis, room, seq, prepended(client, text)).await;
}

/// Adds `update` to `room`'s stream under number `seq`, as a node of an earlier
/// version appends it.
async fn add_entry(
    redis: &mut redis::aio::MultiplexedConnection,
    room: &str,
    seq: i64,
    update: Vec<u8>,
) {
    let _: String = redis::cmd("XADD")
        .arg(format!("coedit:{{{room}}}:log"))
        .arg("*")
        .arg("s")
        .arg(seq)
        .arg("u")
        .arg(update)
        .arg("n")
        .arg("an-older-node/0")
        .arg("c")
        .arg("")
        .arg("a")
        .arg("")
        .arg("t")
        .arg(0)
        .query_async(redis)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_leave_and_its_clients_carry_on_elsewhere() {
    let Some(setup) =
        Setup::new("a_dead_nodes_users_leave_and_its_clients_carry_on_elsewhere").await
    else {
        return;
    };
    let n1 = setup.node("n1", &[]).await;
    let n2 = setup.node("n2", &[]).await;
    let mut alice = join(&n1.base(), "failover", "alice").await;
    let mut bob = join(&n2.base(), "failover", "bob").await;
    until_message(
        &mut alice,
        "bob joining",
        |message| matches!(message, ServerMessage::UserJoined { user_id, .. } if user_id == "bob"),
    )
    .await;
    type_slowly(&mut bob, "typed on n2").await;
    until_text(&mut alice, "typed on n2").await;

    let killed_at = Instant::now();
    n2.kill_hard();
    until_message(
        &mut alice,
        "bob leaving",
        |message| matches!(message, ServerMessage::UserLeft { user_id } if user_id == "bob"),
    )
    .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(15), "user_left after {took:?}");
    let users = get_json(&format!("http://{}/api/rooms/failover/users", n1.base())).await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // Bob's client reconnects to the surviving node: nothing he typed is lost.
    drop(bob);
    let mut bob = join(&n1.base(), "failover", "bob").await;
    assert_eq!(bob.content(), "typed on n2");
    type_slowly(&mut bob, "!").await;
    until_text(&mut alice, "typed on n2!").await;
}

/// A client whose node died reconnects to another node before the dead one is
/// taken for dead: its old node's burial must not announce it as gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_another_node_before_its_old_node_is_buried_stays_listed() {
    let Some(setup) =
        Setup::new("a_client_back_on_another_node_before_its_old_node_is_buried_stays_listed")
            .await
    else {
        return;
    };
    let n1 = setup.node("n1", &[]).await;
    let n2 = setup.node("n2", &[]).await;
    let mut alice = join(&n1.base(), "back", "alice").await;
    let bob = join(&n2.base(), "back", "bob").await;
    until_message(
        &mut alice,
        "bob joining",
        |message| matches!(message, ServerMessage::UserJoined { user_id, .. } if user_id == "bob"),
    )
    .await;

    n2.kill_hard();
    drop(bob);
    let _bob = join(&n1.base(), "back", "bob").await;
    // Past the burial of n2 (5 s without beats, found within a beat or two).
    let until = Instant::now() + Duration::from_secs(9);
    let mut seen = Vec::new();
    while Instant::now() < until {
        if let Some(Message::Text(text)) = alice.next_frame(Duration::from_millis(100)).await {
            seen.push(serde_json::from_str::<ServerMessage>(text.as_str()).unwrap());
        }
    }
    let left: Vec<&ServerMessage> = seen
        .iter()
        .filter(|message| matches!(message, ServerMessage::UserLeft { .. }))
        .collect();
    assert!(left.is_empty(), "bob is here: {left:?}");
    assert_eq!(user_ids(&n1.base(), "back").await, ["alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_persisting_one_room_store_every_entry_once() {
    let Some(setup) = Setup::new("two_nodes_persisting_one_room_store_every_entry_once").await
    else {
        return;
    };
    let extra = ["--compact-every", "5", "--persist-every", "1s"];
    let n1 = setup.node("n1", &extra).await;
    let n2 = setup.node("n2", &extra).await;
    let mut a = join(&n1.base(), "race", "a").await;
    let mut b = join(&n2.base(), "race", "b").await;
    for round in 0..10 {
        type_slowly(&mut a, &format!("a{round}")).await;
        type_slowly(&mut b, &format!("b{round}")).await;
    }
    let text = until_converged(&mut a, &mut b, 40).await;

    // Whichever node persists the room dies mid-way; the other takes over once its
    // lease runs out, and keeps going.
    let mut conn = setup.redis.connection().await;
    let mut holder: Option<String> = None;
    let leased = eventually(async || {
        holder = redis::cmd("GET")
            .arg("coedit:{race}:persister")
            .query_async(&mut conn)
            .await
            .unwrap();
        holder.is_some()
    })
    .await;
    assert!(leased, "nobody took the room's persister lease");
    let holder = holder.unwrap_or_default();
    let (survivor, survivor_name, mut client) = if holder.starts_with("n1/") {
        n1.kill_hard();
        (n2, "n2/", b)
    } else {
        n2.kill_hard();
        (n1, "n1/", a)
    };
    type_slowly(&mut client, "z").await;
    let text = format!("{text}z");
    // Seen by another client: it is in Redis.
    let mut watcher = join(&survivor.base(), "race", "watcher").await;
    until_text(&mut watcher, &text).await;
    let took_over = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let holder: Option<String> = redis::cmd("GET")
                .arg("coedit:{race}:persister")
                .query_async(&mut conn)
                .await
                .unwrap();
            if holder.is_some_and(|holder| holder.starts_with(survivor_name)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(took_over.is_ok(), "the survivor never took the lease over");

    let db = setup.db().await;
    let updates = db.collection::<Document>("room_updates");
    // Once the survivor holds the lease, the stream goes into MongoDB: every
    // number Redis gave out is there exactly once (history is kept, so compaction
    // drops nothing), with no gap.
    let mut seqs: Vec<i64>;
    let mut seq: u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        seq = redis::cmd("GET")
            .arg("coedit:{race}:seq")
            .query_async(&mut conn)
            .await
            .unwrap();
        seqs = stored_numbers(&updates, "race").await;
        if seqs.len() as u64 == seq || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: Vec<i64> = (1..=seq as i64).collect();
    assert_eq!(seqs, expected);

    // MongoDB alone rebuilds the room: Redis forgets everything, a new node starts.
    drop(client);
    drop(watcher);
    drop(survivor);
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let fresh = setup.node("n3", &extra).await;
    assert_eq!(synced_text(&fresh.base(), "race").await, text);
}

/// Every entry number the room's log holds in MongoDB, sorted, duplicates kept: an
/// entry document is numbered by `seq`; a run holds its entries under `entries`,
/// from `seq` to `last`. A snapshot kept in the history (`snapshot: true`) stands
/// for the update of its number, which it replaced when that update was a document
/// of its own and sits beside when the update is inside a run.
async fn stored_numbers(updates: &mongodb::Collection<Document>, room: &str) -> Vec<i64> {
    let mut numbers = Vec::new();
    let mut snapshots = Vec::new();
    let mut cursor = updates.find(doc! {"room_id": room}).await.unwrap();
    while cursor.advance().await.unwrap() {
        let document = cursor.deserialize_current().unwrap();
        let seq = document.get_i64("seq").unwrap();
        let Ok(entries) = document.get_array("entries") else {
            if document.get_bool("snapshot").unwrap_or(false) {
                snapshots.push(seq);
            } else {
                numbers.push(seq);
            }
            continue;
        };
        let run: Vec<i64> = entries
            .iter()
            .map(|entry| entry.as_document().unwrap().get_i64("seq").unwrap())
            .collect();
        assert_eq!(run.first(), Some(&seq), "{document}");
        assert_eq!(
            run.last(),
            document.get_i64("last").ok().as_ref(),
            "{document}"
        );
        numbers.extend(run);
    }
    let replaced: Vec<i64> = snapshots
        .into_iter()
        .filter(|seq| !numbers.contains(seq))
        .collect();
    numbers.extend(replaced);
    numbers.sort_unstable();
    numbers
}

/// A node that forgets a room another node deleted reports it unloaded, and a
/// change it had not reported yet (debounced) is never reported after the
/// deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_deleted_elsewhere_unloads_here_and_reports_no_change_after_its_deletion() {
    let Some(setup) = Setup::new(
        "a_room_deleted_elsewhere_unloads_here_and_reports_no_change_after_its_deletion",
    )
    .await
    else {
        return;
    };
    let receiver = super::webhooks::Receiver::start(200).await;
    let hooks = [
        "--webhook-url",
        &receiver.url(),
        "--webhook-debounce-ms",
        "2000",
    ];
    let n1 = setup.node("n1", &hooks).await;
    let n2 = setup.node("n2", &hooks).await;
    let mut alice = join(&n1.base(), "forgotten", "alice").await;
    let mut bob = join(&n2.base(), "forgotten", "bob").await;
    type_slowly(&mut bob, "typed just before").await;
    until_text(&mut alice, "typed just before").await;
    let answer = call(
        reqwest::Method::DELETE,
        &format!("http://{}/api/rooms/forgotten", n1.base()),
    )
    .await;
    assert_eq!(answer["success"], true, "{answer}");
    // Past n2's debounce.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events: Vec<String> = receiver
        .accepted()
        .iter()
        .filter(|received| received.json()["room_id"] == "forgotten")
        .map(|received| received.event.clone())
        .collect();
    let deleted = events
        .iter()
        .position(|event| event == "room.deleted")
        .unwrap_or_else(|| panic!("no room.deleted: {events:?}"));
    assert!(
        !events[deleted..]
            .iter()
            .any(|event| event == "document.changed"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|event| event == "room.unloaded"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_on_one_node_closes_it_on_every_node_and_removes_it_everywhere() {
    let Some(setup) =
        Setup::new("deleting_a_room_on_one_node_closes_it_on_every_node_and_removes_it_everywhere")
            .await
    else {
        return;
    };
    let (n1, n2, mut alice, mut bob) = setup.two_editors("doomed", "secret").await;

    let delete_url = format!("http://{}/api/rooms/doomed", n2.base());
    let answer = call(reqwest::Method::DELETE, &delete_url).await;
    assert_eq!(answer["success"], true, "{answer}");
    // Both nodes close their clients as deleted.
    for client in [&mut alice, &mut bob] {
        let (code, reason) = close_frame(&mut client.socket).await;
        assert_eq!((code, reason.as_str()), (4404, "room deleted"));
    }
    // Nothing of it is left in Redis or MongoDB but the fence at its last number
    // (so a copy that lands late is never read), and a new client on either node
    // starts an empty room.
    let mut conn = setup.redis.connection().await;
    let db = setup.db().await;
    let gone = eventually(async || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("coedit:{doomed}:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut stored = 0;
        for collection in ["room_updates", "room_documents"] {
            stored += db
                .collection::<Document>(collection)
                .count_documents(doc! {"room_id": "doomed"})
                .await
                .unwrap();
        }
        // The users hash may hold the new readers below; the log must be gone.
        !keys.iter().any(|key| key.ends_with(":log")) && stored == 0
    })
    .await;
    assert!(gone, "the deleted room is still stored");
    let fence = db
        .collection::<Document>("room_snapshots")
        .find_one(doc! {"room_id": "doomed"})
        .await
        .unwrap()
        .expect("a fence");
    assert_eq!(fence.get_bool("deleted"), Ok(true), "{fence}");
    let fenced_at = fence.get_i64("fence").unwrap();
    assert!(fenced_at >= 1, "{fence}");
    assert!(!fence.contains_key("data"), "{fence}");
    // The fence is no room: the room is unknown on either node.
    for node in [&n1, &n2] {
        let document = reqwest::get(format!("http://{}/api/rooms/doomed/document", node.base()))
            .await
            .unwrap()
            .status();
        assert_eq!(document.as_u16(), 404, "a deleted room's document");
    }
    let again = reqwest::Client::new()
        .delete(format!("http://{}/api/rooms/doomed", n1.base()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(again.as_u16(), 404, "deleting a deleted room again");
    let mut fresh_clients = Vec::new();
    for node in [&n1, &n2] {
        let url = format!("ws://{}/api/ws/doomed?client_id=fresh", node.base());
        let mut fresh = Client::connect(&url, "fresh").await;
        assert!(
            matches!(fresh.recv().await, ServerMessage::Users { .. }),
            "a new client of a deleted room is greeted with no document"
        );
        fresh_clients.push(fresh);
    }
    // The room's updates are numbered past the fence, so they are read.
    fresh_clients[0].type_text(0, "anew").await;
    let numbered_past = eventually(async || {
        let numbered: i64 = redis::cmd("GET")
            .arg("coedit:{doomed}:seq")
            .query_async(&mut conn)
            .await
            .unwrap();
        numbered > fenced_at
    })
    .await;
    assert!(
        numbered_past,
        "the room's next update is numbered past its fence"
    );
}

/// Deletes `room` as another node would while this test's nodes' subscriptions are
/// down (the notice is never sent): the fence in MongoDB, the stream and the count
/// in Redis. Waits for at least `typed` numbers to be used first.
async fn delete_missing_the_notice(setup: &Setup, room: &str, typed: u64) {
    let mut redis = setup.redis.connection().await;
    let mut numbered = 0;
    let appended = eventually(async || {
        let counter: Option<u64> = redis::cmd("GET")
            .arg(format!("coedit:{{{room}}}:seq"))
            .query_async(&mut redis)
            .await
            .unwrap();
        numbered = counter.unwrap_or(0);
        numbered >= typed
    })
    .await;
    assert!(appended, "the room's edits never reached Redis");
    let store = MongoStore::connect(&setup.mongo_url, &setup.database)
        .await
        .unwrap();
    Store::delete_room_fenced(&store, room, numbered, 1)
        .await
        .unwrap();
    let key = |name: &str| format!("coedit:{{{room}}}:{name}");
    let _: () = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(key("log"))
        .arg(key("applied"))
        .arg(key("users"))
        .arg(key("persister"))
        .ignore()
        .cmd("INCR")
        .arg(key("deletions"))
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();
    Store::close(&store).await.unwrap();
}

/// A node whose subscription was down when another node deleted a room never
/// hears of it. Its persister finds the room's deletion count grown, closes the
/// room as deleted, and writes nothing of it back over the deletion's fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_deletion_closes_the_room_and_writes_nothing_back() {
    let Some(setup) =
        Setup::new("a_node_that_missed_a_deletion_closes_the_room_and_writes_nothing_back").await
    else {
        return;
    };
    let node = setup.node("n1", &["--persist-every", "200ms"]).await;
    let mut alice = join(&node.base(), "missed", "alice").await;
    type_slowly(&mut alice, "secret").await;
    delete_missing_the_notice(&setup, "missed", 1).await;
    let (code, reason) = close_frame(&mut alice.socket).await;
    assert_eq!((code, reason.as_str()), (4404, "room deleted"));
    // Several persist intervals later the fence still stands alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = setup.db().await;
    let fence = db
        .collection::<Document>("room_snapshots")
        .find_one(doc! {"room_id": "missed"})
        .await
        .unwrap()
        .expect("the fence");
    assert_eq!(fence.get_bool("deleted"), Ok(true), "{fence}");
    let copied = db
        .collection::<Document>("room_updates")
        .count_documents(doc! {"room_id": "missed"})
        .await
        .unwrap();
    assert_eq!(copied, 0, "the deleted room's log was copied back");
}

/// The same node, its persister far off: its clients type on, and the room
/// compacts itself into its stream every few edits. Redis refuses those appends
/// (the node's count is behind), the node closes the room, and the room that
/// follows holds nothing of the deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_of_a_node_that_missed_a_deletion_are_refused() {
    let Some(setup) = Setup::new("appends_of_a_node_that_missed_a_deletion_are_refused").await
    else {
        return;
    };
    let node = setup
        .node("n1", &["--persist-every", "60s", "--compact-every", "5"])
        .await;
    let mut alice = join(&node.base(), "stale", "alice").await;
    type_slowly(&mut alice, "secret").await;
    delete_missing_the_notice(&setup, "stale", 6).await;
    type_slowly(&mut alice, "abcdefgh").await;
    let (code, reason) = close_frame(&mut alice.socket).await;
    assert_eq!((code, reason.as_str()), (4404, "room deleted"));
    let url = format!("ws://{}/api/ws/stale?client_id=fresh", node.base());
    let mut fresh = Client::connect(&url, "fresh").await;
    let greeting = fresh.recv().await;
    assert!(
        matches!(greeting, ServerMessage::Users { .. }),
        "the deleted room came back: {greeting:?}"
    );
}

/// A node whose subscription was down when a room it holds was deleted checks
/// the room's deletion count as soon as it subscribes again, and closes the room
/// then: not at its next persisting, nor at its clients' next edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_deletion_closes_the_room_when_it_subscribes_again() {
    let Some(setup) =
        Setup::new("a_node_that_missed_a_deletion_closes_the_room_when_it_subscribes_again").await
    else {
        return;
    };
    let node = setup.node("n1", &["--persist-every", "60s"]).await;
    let mut alice = join(&node.base(), "resubscribed", "alice").await;
    type_slowly(&mut alice, "secret").await;
    delete_missing_the_notice(&setup, "resubscribed", 6).await;
    let mut redis = setup.redis.connection().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the node subscribes once");
    let (code, reason) = close_frame(&mut alice.socket).await;
    assert_eq!((code, reason.as_str()), (4404, "room deleted"));
}

#[test]
fn a_persist_interval_below_100ms_or_unreadable_is_refused() {
    for every in ["50ms", "0s", "soon"] {
        let output = Command::new(env!("CARGO_BIN_EXE_coedit"))
            .args(["serve", "--persist-every", every])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{every}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--persist-every"), "{every}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_without_a_shared_store_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--data-dir",
            temp_dir("cluster-alone").to_str().unwrap(),
            "--redis-url",
            "redis://127.0.0.1:1",
        ])
        .env_remove("MONGO_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--mongo-url"), "{stderr}");
}
