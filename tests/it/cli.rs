//! The admin subcommands, told from the operator's side: the real `coedit` binary
//! run as a separate process against a server started in the test, its tables read
//! the way `awk` would, its `--json` compared with the REST API, its exit codes
//! checked for each kind of failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::{Generator, Shell};
use coedit::api::{ClientMessage, RoomInfo};
use coedit::server::store::memory::MemoryStore;
use serde_json::Value;

use super::common::*;

/// What one run of `coedit` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with everything the command said unless it exited with `code`.
    fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not one JSON document ({error}): {self:#?}"))
    }

    /// The rows of a table printed to a pipe: columns are at least two spaces
    /// apart, cells never contain two spaces in a row.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                line.split("  ")
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    /// The row whose first cell is `first`.
    fn row(&self, first: &str) -> Vec<String> {
        self.rows()
            .into_iter()
            .find(|row| row.first().map(String::as_str) == Some(first))
            .unwrap_or_else(|| panic!("no row starting with {first:?} in:\n{}", self.stdout))
    }
}

/// A `coedit` command with a clean environment: no server, token or colour
/// preference leaking in from the machine running the tests.
fn coedit_command(args: &[&str]) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("coedit"));
    command
        .args(args)
        .env_remove("COEDIT_SERVER")
        .env_remove("COEDIT_TOKEN")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs `coedit ARGS` to completion off the runtime's threads, so the in-process
/// server keeps answering while the test waits for the child.
async fn coedit(args: &[&str]) -> Run {
    let mut command = coedit_command(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `coedit ARGS --server <this test's server>`.
async fn coedit_at(server: &TestServer, args: &[&str]) -> Run {
    let url = format!("http://{}", server.addr);
    let mut all = args.to_vec();
    all.extend(["--server", url.as_str()]);
    coedit(&all).await
}

/// A room "notes" with two editors, some text, a cursor, and two simulated users.
async fn furnished_room(server: &TestServer) -> (Client, Client) {
    let mut alice = server.join("notes", "alice", "Alice").await;
    let bob = server.join("notes", "bob", "Bob").await;
    alice.type_text(0, "hello from the terminal").await;
    alice
        .send(&ClientMessage::Cursor {
            user_id: None,
            name: None,
            color: None,
            position: Some(5),
        })
        .await;
    let (status, _) = server
        .send(reqwest::Method::POST, "/simulate/users/notes?count=2")
        .await;
    assert_eq!(status, 200);
    let settled = eventually(async || {
        let (_, users) = server.get("/rooms/notes/users").await;
        let (_, room) = server.get("/rooms/notes").await;
        users.as_array().is_some_and(|users| {
            users
                .iter()
                .any(|user| user["name"] == "Alice" && user["cursor_position"] == 5)
        }) && room["doc_size"].as_u64().unwrap_or(0) > 20
    })
    .await;
    assert!(settled, "the room never showed Alice's text and cursor");
    (alice, bob)
}

async fn room_info(server: &TestServer, room: &str) -> RoomInfo {
    let (status, body) = server.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_list_shows_each_room_with_its_users_and_document_size() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let info = room_info(&server, "notes").await;
    assert!(info.doc_size < 1024, "sizes below 1 KiB print as bytes");

    let run = coedit_at(&server, &["rooms", "list"]).await.expect_code(0);
    assert_eq!(
        run.rows()[0],
        ["Room", "Users", "Connections", "Size", "User names"]
    );
    let row = run.row("notes");
    assert_eq!(row[1], "4", "two editors and two simulated users");
    assert_eq!(row[2], "2", "two open sockets");
    assert_eq!(row[3], format!("{} B", info.doc_size));
    assert!(row[4].starts_with("Alice, Bob, "), "{row:?}");
    assert!(run.stderr.is_empty(), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_show_and_users_describe_one_room_and_its_people() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let info = room_info(&server, "notes").await;

    let show = coedit_at(&server, &["rooms", "show", "notes"])
        .await
        .expect_code(0);
    assert_eq!(show.row("Room"), ["Room", "notes"]);
    assert_eq!(show.row("Users"), ["Users", "4 (2 simulated)"]);
    assert_eq!(show.row("Connections"), ["Connections", "2"]);
    assert_eq!(
        show.row("Document size")[1],
        format!("{0} B ({0} bytes)", info.doc_size)
    );
    let bob = show.row("Bob");
    assert_eq!(bob[1..3], ["#3B82F6", "no"]);

    let users = coedit_at(&server, &["rooms", "users", "notes"])
        .await
        .expect_code(0);
    assert_eq!(
        users.rows()[0],
        ["Name", "Color", "Cursor", "Simulated", "Id"]
    );
    let alice = users.row("Alice");
    assert_eq!(alice[1..4], ["#3B82F6", "5", "no"]);
    let simulated: Vec<_> = users
        .rows()
        .into_iter()
        .filter(|row| row.get(3).map(String::as_str) == Some("yes"))
        .collect();
    assert_eq!(simulated.len(), 2, "{}", users.stdout);
    assert!(simulated.iter().all(|row| row[4].starts_with("sim-")));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_table_shows_counters_latencies_in_ms_and_a_human_uptime() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let (_, expected) = server.get("/metrics").await;

    let run = coedit_at(&server, &["metrics"]).await.expect_code(0);
    assert_eq!(run.row("Metric"), ["Metric", "Value"]);
    assert_eq!(run.row("Active connections")[1], "2");
    assert_eq!(
        run.row("Rooms loaded")[1],
        expected["rooms_loaded"].to_string()
    );
    assert_eq!(
        run.row("Messages received")[1],
        expected["total_messages"].to_string()
    );
    assert_eq!(
        run.row("Documents in memory")[1],
        format!("{} B", expected["total_doc_size_bytes"])
    );
    for name in ["Latency p50", "Latency p95", "Latency p99", "Latency max"] {
        let value = &run.row(name)[1];
        let number = value
            .strip_suffix(" ms")
            .unwrap_or_else(|| panic!("{value}"));
        assert!(number.parse::<f64>().is_ok(), "{name}: {value}");
    }
    // A fresh server has been up for seconds, printed as "12s", not "12.3".
    let uptime = &run.row("Uptime")[1];
    let seconds = uptime
        .strip_suffix('s')
        .unwrap_or_else(|| panic!("{uptime}"));
    assert!(seconds.parse::<u32>().is_ok(), "{uptime}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_events_lists_the_latest_events_in_the_servers_order() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let (_, events) = server.get("/metrics/events?limit=3").await;
    let events = events.as_array().unwrap().clone();
    assert_eq!(events.len(), 3);

    let run = coedit_at(&server, &["metrics", "events", "--limit", "3"])
        .await
        .expect_code(0);
    let rows = run.rows();
    assert_eq!(rows[0], ["Time", "Type", "Room", "User", "Details"]);
    assert_eq!(rows.len(), 4, "a header and three events:\n{}", run.stdout);
    for (row, event) in rows[1..].iter().zip(&events) {
        // Time is local "YYYY-MM-DD HH:MM:SS": two cells when split on double spaces
        // would be wrong, so the whole line must hold the other fields in order.
        let line = row.join("  ");
        for field in ["type", "room_id", "user_id", "details"] {
            let value = event[field].as_str().unwrap();
            assert!(
                line.contains(value),
                "{field} {value:?} missing from {line:?}"
            );
        }
        assert_eq!(row[0].len(), "2024-05-01 12:03:04".len(), "{row:?}");
    }
}

/// Drops what legitimately differs between two reads of the same endpoint.
fn without(mut value: Value, volatile: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in volatile {
            object.remove(*key);
        }
    }
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_is_the_servers_own_document_and_nothing_else() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;

    // Reads: the same document as a direct REST call.
    let reads: [(&[&str], &str, &[&str]); 6] = [
        (&["rooms", "list", "--json"], "/rooms", &[]),
        (&["rooms", "show", "notes", "--json"], "/rooms/notes", &[]),
        (
            &["rooms", "users", "notes", "--json"],
            "/rooms/notes/users",
            &[],
        ),
        (&["metrics", "events", "--json"], "/metrics/events", &[]),
        (&["health", "--json"], "/health", &["timestamp"]),
        (
            &["metrics", "--json"],
            "/metrics",
            &["uptime_seconds", "messages_per_sec"],
        ),
    ];
    for (args, path, volatile) in reads {
        let run = coedit_at(&server, args).await.expect_code(0);
        let (status, expected) = server.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(
            without(run.json(), volatile),
            without(expected, volatile),
            "coedit {args:?} differs from GET {path}"
        );
    }

    // Persist and load of an unchanged document answer the same each time.
    let persisted = coedit_at(&server, &["persist", "notes", "--json"])
        .await
        .expect_code(0)
        .json();
    let (_, again) = server
        .send(reqwest::Method::POST, "/rooms/notes/persist")
        .await;
    assert_eq!(persisted, again);
    assert_eq!(persisted["success"], true);
    let loaded = coedit_at(&server, &["load", "notes", "--json"])
        .await
        .expect_code(0)
        .json();
    let (_, again) = server.get("/rooms/notes/load").await;
    assert_eq!(loaded, again);

    // Simulate changes the room, so compare with what the room says afterwards.
    let added = coedit_at(&server, &["simulate", "add", "notes", "-n", "3", "--json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(added["success"], true);
    assert_eq!(added["simulated_users"], 3);
    assert_eq!(
        added["total_users"],
        room_info(&server, "notes").await.user_count
    );
    let removed = coedit_at(&server, &["simulate", "remove", "notes", "--json"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(
        removed,
        serde_json::json!({"success": true, "removed": 5}),
        "two simulated users from the start and three just added"
    );
    let (_, again) = server
        .send(reqwest::Method::DELETE, "/simulate/users/notes")
        .await;
    assert_eq!(again, serde_json::json!({"success": true, "removed": 0}));
}

#[tokio::test(flavor = "multi_thread")]
async fn persist_load_and_simulate_say_what_they_did() {
    let server = TestServer::start().await;
    let mut alice = server.join("draft", "alice", "Alice").await;
    let state_bytes = alice.type_text(0, "first draft").await;
    assert!(eventually(async || room_info(&server, "draft").await.doc_size > 0).await);

    let saved = coedit_at(&server, &["persist", "draft"])
        .await
        .expect_code(0);
    let (_, body) = server
        .send(reqwest::Method::POST, "/rooms/draft/persist")
        .await;
    let size = body["size"].as_u64().unwrap();
    assert!(size >= state_bytes as u64, "hex is twice the bytes");
    assert_eq!(
        saved.stdout.trim(),
        format!("Saved room draft ({size} hex chars)")
    );
    let loaded = coedit_at(&server, &["load", "draft"]).await.expect_code(0);
    assert_eq!(
        loaded.stdout.trim(),
        format!("Loaded room draft ({size} hex chars)")
    );

    let added = coedit_at(&server, &["simulate", "add", "draft", "--count", "2"])
        .await
        .expect_code(0);
    assert_eq!(
        added.stdout.trim(),
        "Added 2 simulated users to room draft (3 users now)"
    );
    let removed = coedit_at(&server, &["simulate", "remove", "draft"])
        .await
        .expect_code(0);
    assert_eq!(
        removed.stdout.trim(),
        "Removed 2 simulated users from room draft"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_class_has_its_exit_code_and_a_reason_on_stderr() {
    let server = TestServer::start().await;

    // Healthy: 0, and a one-line summary.
    let healthy = coedit_at(&server, &["health"]).await.expect_code(0);
    assert!(healthy.stdout.starts_with("healthy"), "{healthy:#?}");

    // A room nobody is in: the API answers an empty room (as the original did), so
    // the command succeeds and says the room is empty.
    let missing = coedit_at(&server, &["rooms", "show", "nope"])
        .await
        .expect_code(0);
    assert_eq!(missing.row("Users"), ["Users", "0 (0 simulated)"]);
    assert!(
        missing
            .stdout
            .contains("Nobody is in room nope and nothing is stored for it."),
        "{missing:#?}"
    );
    assert!(missing.stderr.is_empty(), "{missing:#?}");

    // success:false: a room with an editor but nothing typed has no document.
    let _idle = server.join("empty", "idle", "Idle").await;
    let empty = coedit_at(&server, &["persist", "empty"])
        .await
        .expect_code(1);
    assert!(empty.stderr.contains("No document found"), "{empty:#?}");
    assert!(empty.stdout.is_empty(), "{empty:#?}");
    // With --json the document still goes to stdout for the script to read.
    let empty = coedit_at(&server, &["persist", "empty", "--json"])
        .await
        .expect_code(1);
    assert_eq!(empty.json()["success"], false);
    assert!(empty.stderr.contains("No document found"), "{empty:#?}");
    let never_saved = coedit_at(&server, &["load", "empty"]).await.expect_code(1);
    assert!(
        never_saved.stderr.contains("No saved document found"),
        "{never_saved:#?}"
    );

    // Bad input the server refuses (a count above its limit): 1 with its reason.
    let too_many = coedit_at(&server, &["simulate", "add", "x", "--count", "100000"])
        .await
        .expect_code(1);
    assert!(too_many.stderr.contains("count must be"), "{too_many:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_exit_3_naming_the_url() {
    // A port that was just free: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{closed}");
    for args in [
        &["health"][..],
        &["rooms", "list"],
        &["metrics", "events"],
        &["persist", "notes", "--json"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        let run = coedit(&all).await.expect_code(3);
        assert!(
            run.stderr.contains(&format!("{url}/api/")),
            "the message must name the URL tried: {run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }

    // A server that accepts the connection and never answers: the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let run = coedit(&["health", "--server", &silent_url, "--timeout", "300ms"])
        .await
        .expect_code(3);
    assert!(run.stderr.contains("timed out"), "{run:#?}");
    assert!(run.stderr.contains(&silent_url), "{run:#?}");
    drop(silent);

    // The server address from the environment is used too.
    let mut command = coedit_command(&["health"]);
    command.env("COEDIT_SERVER", &url);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&url));
}

/// Accepts one HTTP request, answers it with a healthy `/api/health` body, and
/// returns the request's head as received.
async fn answer_one_request(listener: tokio::net::TcpListener) -> String {
    let body = r#"{"status":"healthy","timestamp":"2024-05-01T12:03:04.000Z"}"#;
    answer_one_request_with(listener, body).await
}

/// Accepts one HTTP request, answers it `200 OK` with `body`, and returns the
/// request's head as received.
async fn answer_one_request_with(listener: tokio::net::TcpListener, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the client hung up mid-request");
        head.extend_from_slice(&buffer[..read]);
    };
    // Read the request's body too: closing with it unread would reset the
    // connection, and the client might lose the answer.
    let length = String::from_utf8_lossy(&head[..head_end])
        .to_lowercase()
        .lines()
        .find_map(|line| line.strip_prefix("content-length:")?.trim().parse().ok())
        .unwrap_or(0usize);
    while head.len() < head_end + length {
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the client hung up mid-request");
        head.extend_from_slice(&buffer[..read]);
    }
    head.truncate(head_end);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&head).to_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_sent_as_a_bearer_header_from_the_flag_or_the_environment() {
    for from_environment in [false, true] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let request = tokio::spawn(answer_one_request(listener));
        let mut command = coedit_command(&["health", "--server", &url]);
        if from_environment {
            command.env("COEDIT_TOKEN", "s3cret-env");
        } else {
            command.args(["--token", "s3cret-flag"]);
        }
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let head = request.await.unwrap();
        let expected = if from_environment {
            "authorization: bearer s3cret-env"
        } else {
            "authorization: bearer s3cret-flag"
        };
        assert!(head.contains(expected), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_exit_1_with_the_reason_while_the_store_is_failing() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start_tweaked(|_| {}, store.clone()).await;
    let mut alice = server.join("doomed", "alice", "Alice").await;
    alice.type_text(0, "unsaved").await;
    assert!(eventually(async || room_info(&server, "doomed").await.doc_size > 0).await);

    store.set_failing(true);
    let (_, body) = server
        .send(reqwest::Method::POST, "/rooms/doomed/persist")
        .await;
    assert_eq!(body["success"], false, "{body}");
    assert!(
        eventually(async || server.get("/health").await.1["status"] == "degraded").await,
        "the failed write never showed in /api/health"
    );

    let degraded = coedit_at(&server, &["health"]).await.expect_code(1);
    assert!(degraded.stdout.starts_with("degraded"), "{degraded:#?}");
    assert!(
        degraded.stderr.contains("memory store told to fail"),
        "the store's reason must be shown: {degraded:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_are_exit_2_before_any_request() {
    for args in [
        &["frobnicate"][..],
        &["rooms"],
        &["rooms", "show"],
        &["rooms", "list", "--timeout", "0"],
        &["rooms", "list", "--timeout", "soon"],
        &["rooms", "list", "--server", "ftp://example"],
        &["simulate", "add", "room", "--count", "0"],
        &["metrics", "events", "--limit", "many"],
        &["completions", "tcsh"],
        // Room ids the server refuses, or no URL can name.
        &["export", ".", "--format", "text"],
        &["rooms", "delete", "..", "--yes"],
        &["show", ""],
        // A node name goes into Prometheus label values as it is.
        &["serve", "--node-id", "eu \"1\""],
    ] {
        let run = coedit(args).await;
        assert_eq!(run.code, 2, "coedit {args:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "coedit {args:?}: {run:#?}");
        // clap's own words: an `error:` line, or the usage when a subcommand is missing.
        assert!(
            run.stderr.contains("error:") || run.stderr.contains("Usage: coedit"),
            "coedit {args:?}: {run:#?}"
        );
    }
}

/// Switches set in the environment take what people write there (`1`, `yes`),
/// not only `true`; and `--help` never shows a connection string, which may hold
/// a password.
#[test]
fn switches_read_from_the_environment_and_urls_stay_out_of_help() {
    let help = coedit_command(&["serve", "--help"])
        .env("MONGO_URL", "mongodb://coedit:hunter2@db.example")
        .env("REDIS_URL", "redis://:hunter3@cache.example")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    assert!(!text.contains("hunter"), "{text}");

    let data = std::env::temp_dir().join(format!("coedit-switches-{}", std::process::id()));
    let mut server = coedit_command(&["serve", "--host", "127.0.0.1", "--port", "0"])
        .arg("--data-dir")
        .arg(&data)
        .env("COEDIT_NO_DASHBOARD", "1")
        .env("COEDIT_START_DEGRADED", "yes")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .take(50)
        .find(|line| line.contains("coedit serving") || line.contains("error"));
    server.kill().ok();
    server.wait().ok();
    std::fs::remove_dir_all(&data).ok();
    assert!(
        serving
            .as_deref()
            .is_some_and(|line| line.contains("coedit serving")),
        "{serving:?}"
    );
}

/// A `.env` with a line dotenvy cannot parse is refused before anything runs:
/// the variables after that line were left unset without a word.
#[test]
fn an_unreadable_env_file_is_a_usage_error() {
    let directory = std::env::temp_dir().join(format!("coedit-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(
        directory.join(".env"),
        "CORS_ORIGINS=https://a.example, https://b.example\nCOEDIT_ADMIN_TOKEN=secret\n",
    )
    .unwrap();
    let output = coedit_command(&["token", "--room", "r", "--secret", "s"])
        .current_dir(&directory)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&directory).ok();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(".env"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_early_is_not_an_error() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let url = format!("http://{}", server.addr);
    // The reading end closes before the command has its answer, so every write
    // meets a closed pipe.
    let run = coedit_into_a_closed_pipe(&["rooms", "list", "--server", &url]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// Runs `coedit ARGS` with its standard output closed before it writes a byte,
/// as `coedit ARGS | true` does.
async fn coedit_into_a_closed_pipe(args: &[&str]) -> Run {
    let mut command = coedit_command(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_early_does_not_hide_a_failure() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start_tweaked(|_| {}, store.clone()).await;
    let url = format!("http://{}", server.addr);
    let _idle = server.join("empty", "idle", "Idle").await;
    // success:false in a 200 answer, with and without --json.
    for args in [&["persist", "empty"][..], &["persist", "empty", "--json"]] {
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        let run = coedit_into_a_closed_pipe(&all).await.expect_code(1);
        assert!(run.stderr.contains("No document found"), "{run:#?}");
    }

    // `coedit health | true` under pipefail, against a degraded server.
    let mut alice = server.join("doomed", "alice", "Alice").await;
    alice.type_text(0, "unsaved").await;
    assert!(eventually(async || room_info(&server, "doomed").await.doc_size > 0).await);
    store.set_failing(true);
    let (_, body) = server
        .send(reqwest::Method::POST, "/rooms/doomed/persist")
        .await;
    assert_eq!(body["success"], false, "{body}");
    assert!(eventually(async || server.get("/health").await.1["status"] == "degraded").await);
    for args in [&["health"][..], &["health", "--json"]] {
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        let run = coedit_into_a_closed_pipe(&all).await.expect_code(1);
        assert!(run.stderr.contains("degraded"), "{run:#?}");
    }

    // With nothing failed, a closed pipe is still success, and never a panic.
    let token = coedit_into_a_closed_pipe(&["token", "--room", "r", "--secret", "s"])
        .await
        .expect_code(0);
    assert!(token.stderr.is_empty(), "{token:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_means_the_json_format_where_there_is_one_and_is_refused_elsewhere() {
    let server = TestServer::start().await;
    let _editors = furnished_room(&server).await;
    let expected = serde_json::json!({"content": "hello from the terminal"});
    for command in ["export", "show"] {
        let run = coedit_at(&server, &[command, "notes", "--json"])
            .await
            .expect_code(0);
        assert_eq!(run.json(), expected, "{command}: {run:#?}");
        let run = coedit_at(&server, &[command, "notes", "--json", "--format", "json"])
            .await
            .expect_code(0);
        assert_eq!(run.json(), expected, "{command}: {run:#?}");
        let run = coedit_at(&server, &[command, "notes", "--json", "--format", "text"])
            .await
            .expect_code(2);
        assert!(run.stderr.contains("--format text"), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    let token = coedit(&["token", "--room", "r", "--secret", "s", "--json"])
        .await
        .expect_code(2);
    assert!(token.stdout.is_empty(), "{token:#?}");
    assert!(token.stderr.contains("--json"), "{token:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operation_the_server_says_failed_is_exit_1_even_in_a_200_answer() {
    let dir = std::env::temp_dir().join(format!("coedit-refused-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("part.txt");
    std::fs::write(&file, "more text").unwrap();
    let file = file.display().to_string();
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["rooms", "delete", "r", "--yes"],
            r#"{"success":false,"room_id":"r","closed_connections":0,"error":"store unavailable"}"#,
            "room r: store unavailable",
        ),
        (
            &["import", "r", &file, "--format", "text"],
            r#"{"success":false,"room_id":"r","changed":false,"doc_size":0,"error":"store unavailable"}"#,
            "room r: store unavailable",
        ),
        (
            &["restore", "r", "--seq", "1"],
            r#"{"success":false,"room_id":"r","seq":1}"#,
            "room r: the server gave no reason",
        ),
    ];
    for (args, body, reason) in cases {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answered = tokio::spawn(answer_one_request_with(listener, body));
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        let run = coedit(&all).await.expect_code(1);
        assert!(run.stderr.contains(reason), "{args:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
        answered.await.unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_watch_prints_each_refresh_until_interrupted() {
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    for json in [false, true] {
        let mut args = vec!["metrics", "--watch", "100ms", "--server", &url];
        if json {
            args.push("--json");
        }
        let mut command = coedit_command(&args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let finished = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            // Three refreshes, then Ctrl-C.
            let mut refreshes = 0;
            let mut lines = stdout.lines();
            while refreshes < 3 {
                let line = lines.next().expect("the watch stopped printing").unwrap();
                if json {
                    let value: Value = serde_json::from_str(&line).unwrap();
                    assert!(value["uptime_seconds"].is_number(), "{line}");
                    refreshes += 1;
                } else if line.starts_with("Uptime") {
                    refreshes += 1;
                }
                assert!(
                    !line.contains('\x1b'),
                    "no ANSI codes into a pipe: {line:?}"
                );
            }
            let interrupt = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(interrupt.success());
            drop(lines);
            child.wait_with_output().unwrap()
        });
        let output = tokio::time::timeout(Duration::from_secs(20), finished)
            .await
            .expect("the watch did not stop on Ctrl-C")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "json={json}: {stderr}");
    }
}

#[test]
fn completions_are_up_to_date() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::PowerShell,
        Shell::Elvish,
    ] {
        let mut generated = Vec::new();
        clap_complete::generate(
            shell,
            &mut coedit::cli::Cli::command(),
            "coedit",
            &mut generated,
        );
        let file = directory.join(shell.file_name("coedit"));
        let committed = std::fs::read(&file).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale or missing for {shell}: run scripts/update-completions.sh and commit the result",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_subcommand_prints_the_committed_script() {
    let run = coedit(&["completions", "bash"]).await.expect_code(0);
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/coedit.bash"),
    )
    .unwrap();
    assert_eq!(run.stdout, committed);
    assert!(run.stdout.contains("rooms"));
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let path = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            let long = sub
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            if about.is_empty() || about.contains('\n') || !long.contains("Example: coedit") {
                missing.push(path.clone());
            }
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&coedit::cli::Cli::command(), "coedit", &mut missing);
    assert!(
        missing.is_empty(),
        "these need a one-line doc comment and an `Example:` line: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn global_options_work_before_and_after_the_subcommand() {
    let store = Arc::new(MemoryStore::new());
    let server =
        TestServer::start_tweaked(|config| config.admin_token = Some("t0ken".into()), store).await;
    let mut alice = server.join("notes", "alice", "Alice").await;
    alice.type_text(0, "global").await;
    let url = format!("http://{}", server.addr);
    let authorized = async |path: &str| {
        reqwest::Client::new()
            .get(server.http(path))
            .bearer_auth("t0ken")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // The listing to compare against once the room has applied the keystroke (its
    // size changes then): the request can arrive before it.
    let mut expected = Value::Null;
    let applied = eventually(async || {
        let text = authorized("/rooms/notes/text").await;
        expected = authorized("/rooms").await;
        text["text"] == "global"
    })
    .await;
    assert!(applied, "the keystroke never reached the room");

    let u = url.as_str();
    let orders: [&[&str]; 5] = [
        &["--server", u, "--token", "t0ken", "rooms", "list", "--json"],
        &["--json", "--server", u, "rooms", "list", "--token", "t0ken"],
        &["rooms", "--server", u, "--json", "list", "--token", "t0ken"],
        &["rooms", "list", "--json", "--server", u, "--token", "t0ken"],
        &[
            "--timeout",
            "5s",
            "--token",
            "t0ken",
            "--json",
            "rooms",
            "list",
            "--server",
            u,
        ],
    ];
    for args in orders {
        let run = coedit(args).await;
        assert_eq!(run.code, 0, "coedit {args:?}: {run:#?}");
        assert_eq!(run.json(), expected, "coedit {args:?}");
    }

    // The token really is sent from the front position: without it, 401 and exit 1.
    let refused = coedit(&["--server", u, "rooms", "list"])
        .await
        .expect_code(1);
    assert!(refused.stderr.contains("401"), "{refused:#?}");

    // Every client subcommand takes them in front.
    for args in [
        &["--server", u, "health"][..],
        &[
            "--server", u, "--token", "t0ken", "metrics", "events", "--limit", "1",
        ],
        &["--server", u, "--token", "t0ken", "rooms", "users", "notes"],
        &[
            "--server", u, "--token", "t0ken", "simulate", "add", "notes", "-n", "1",
        ],
        &["--server", u, "--token", "t0ken", "persist", "notes"],
    ] {
        let run = coedit(args).await;
        assert_eq!(run.code, 0, "coedit {args:?}: {run:#?}");
    }

    // A global option given in front reaches even a value that has a default
    // (--timeout): a silent server times out after 300 ms, not the default 10 s.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let run = coedit(&["--timeout", "300ms", "--server", &silent_url, "health"])
        .await
        .expect_code(3);
    assert!(run.stderr.contains("timed out"), "{run:#?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn rooms_delete_asks_first_and_scripts_say_yes() {
    let server = TestServer::start().await;
    let mut alice = server.join("old", "alice", "Alice").await;
    alice.type_text(0, "to be removed").await;

    // Input that is not a terminal is never a yes.
    let refused = coedit_at(&server, &["rooms", "delete", "old"])
        .await
        .expect_code(2);
    assert!(refused.stderr.contains("--yes"), "{refused:#?}");
    let (_, info) = server.get("/rooms/old").await;
    assert_eq!(info["exists"], true, "refusing must not delete: {info}");

    let deleted = coedit_at(&server, &["rooms", "delete", "old", "--yes", "--json"])
        .await
        .expect_code(0);
    assert_eq!(deleted.json()["closed_connections"], 1);
    let (_, info) = server.get("/rooms/old").await;
    assert_eq!(info["exists"], false, "{info}");

    let missing = coedit_at(&server, &["rooms", "delete", "old", "--yes"])
        .await
        .expect_code(1);
    assert!(missing.stderr.contains("does not exist"), "{missing:#?}");
}

#[tokio::test]
async fn export_to_a_file_and_import_it_into_another_room() {
    let server = TestServer::start().await;
    let mut alice = server.join("original", "alice", "Alice").await;
    alice.type_text(0, "worth keeping").await;
    let dir = std::env::temp_dir().join(format!("coedit-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("original.yjs");
    let file_arg = file.display().to_string();

    coedit_at(&server, &["export", "original", "-o", &file_arg])
        .await
        .expect_code(0);
    let text = coedit_at(&server, &["export", "original", "--format", "text"])
        .await
        .expect_code(0);
    assert_eq!(text.stdout, "worth keeping");

    let imported = coedit_at(&server, &["import", "copy", &file_arg, "--json"])
        .await
        .expect_code(0);
    assert_eq!(imported.json()["changed"], true, "{imported:#?}");
    let copy = coedit_at(&server, &["export", "copy", "--format", "json"])
        .await
        .expect_code(0);
    assert_eq!(copy.json(), serde_json::json!({"content": "worth keeping"}));
    let exported_again = dir.join("copy.yjs");
    coedit_at(
        &server,
        &[
            "export",
            "copy",
            "-o",
            &exported_again.display().to_string(),
        ],
    )
    .await
    .expect_code(0);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&exported_again).unwrap()
    );

    let missing = coedit_at(&server, &["export", "nobody-here", "--format", "text"])
        .await
        .expect_code(1);
    assert!(missing.stderr.contains("does not exist"), "{missing:#?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn history_show_and_restore_from_the_terminal() {
    let server = TestServer::start().await;
    let mut alice = server.join("story", "alice", "Alice").await;
    alice.type_text(0, "first").await;
    alice.type_text(5, " second").await;
    let typed =
        eventually(async || coedit_at(&server, &["show", "story"]).await.stdout == "first second")
            .await;
    assert!(typed);

    let history = coedit_at(&server, &["history", "story", "--json"])
        .await
        .expect_code(0);
    let versions = history.json()["versions"].clone();
    assert_eq!(versions[0]["authors"], serde_json::json!(["Alice"]));
    let table = coedit_at(&server, &["history", "story"])
        .await
        .expect_code(0);
    let last = versions[0]["seq"].as_u64().unwrap().to_string();
    assert!(
        table.row(&last).iter().any(|cell| cell == "Alice"),
        "{table:#?}"
    );

    let first = coedit_at(&server, &["show", "story", "--seq", "1"])
        .await
        .expect_code(0);
    assert_eq!(first.stdout, "first");
    let restored = coedit_at(&server, &["restore", "story", "--seq", "1"])
        .await
        .expect_code(0);
    assert!(restored.stdout.contains("version 1"), "{restored:#?}");
    assert_eq!(coedit_at(&server, &["show", "story"]).await.stdout, "first");
    coedit_at(&server, &["restore", "story"])
        .await
        .expect_code(2);
    let too_old = coedit_at(&server, &["show", "story", "--at", "2000-01-01T00:00:00Z"])
        .await
        .expect_code(1);
    assert!(too_old.stderr.contains("starts after"), "{too_old:#?}");
}
