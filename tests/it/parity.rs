//! Drop-in parity with the original backend, told from the side of a script or a
//! dashboard written against it: answers are read as plain JSON (never through
//! coedit's own types) and compared field by field with the examples of the
//! original's specification (§6–§7) and with what the original did.

use std::collections::HashSet;
use std::sync::Arc;

use coedit::server::store::memory::MemoryStore;
use coedit::server::store::Store;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::common::*;
use super::mongo_env::{free_port, serve_command, temp_dir, terminate, wait_for_port};

/// The user object of spec §5.2 and the `/users` example of §6.
fn spec_user() -> Value {
    json!({"id": "client-uuid", "name": "Alice", "color": "#3B82F6", "cursor_position": 42})
}

/// The room example of spec §6 (`GET /api/rooms` entries and `GET /api/rooms/{id}`),
/// with its users written out as the user object.
fn spec_room() -> Value {
    json!({"id": "abc123", "name": "abc123", "user_count": 3, "doc_size": 1024,
           "users": [spec_user()]})
}

/// Asserts that `actual` has every field of `example`, each of the same JSON type
/// (recursively; array elements against the example's first element). `nullable`
/// fields may also be `null`, as the original wrote unknown values.
fn assert_shape(example: &Value, actual: &Value, nullable: &[&str], at: &str) {
    match (example, actual) {
        (Value::Object(fields), Value::Object(got)) => {
            for (key, expected) in fields {
                let path = format!("{at}.{key}");
                let value = got
                    .get(key)
                    .unwrap_or_else(|| panic!("{path} is missing from {actual}"));
                if value.is_null() && nullable.contains(&key.as_str()) {
                    continue;
                }
                assert_shape(expected, value, nullable, &path);
            }
        }
        (Value::Array(items), Value::Array(got)) => {
            if let Some(first) = items.first() {
                for (index, value) in got.iter().enumerate() {
                    assert_shape(first, value, nullable, &format!("{at}[{index}]"));
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("{at}: expected a value like {example}, got {actual}"),
    }
}

#[tokio::test]
async fn room_listings_carry_every_field_of_the_user_object() {
    let server = TestServer::start().await;
    let _alice = server.join("fields", "alice", "Alice").await;
    let mut bob = server.join("fields", "bob", "Bob").await;
    bob.send_raw(Message::text(
        r##"{"type":"cursor","userId":"bob","name":"Bob","color":"#3B82F6","position":42}"##,
    ))
    .await;
    assert!(
        eventually(async || server.get("/rooms/fields/users").await.1[1]["cursor_position"] == 42)
            .await,
        "bob's cursor never reached the room"
    );

    let (status, users) = server.get("/rooms/fields/users").await;
    assert_eq!(status, 200);
    let (status, rooms) = server.get("/rooms").await;
    assert_eq!(status, 200);
    let (status, room) = server.get("/rooms/fields").await;
    assert_eq!(status, 200);

    assert_shape(&json!([spec_user()]), &users, &["cursor_position"], "users");
    assert_shape(&json!([spec_room()]), &rooms, &["cursor_position"], "rooms");
    assert_shape(&spec_room(), &room, &["cursor_position"], "room");

    // A user who never moved the cursor has it as null, like the original; one who
    // did has the position. Listings and `/users` show the very same objects.
    let expected_users = json!([
        {"id":"alice","name":"Alice","color":"#3B82F6","avatar_url":null,
         "cursor_position":null,"selection":null,"simulated":false},
        {"id":"bob","name":"Bob","color":"#3B82F6","avatar_url":null,
         "cursor_position":42,"selection":null,"simulated":false},
    ]);
    assert_eq!(users, expected_users);
    assert_eq!(room["users"], expected_users);
    assert_eq!(rooms[0]["users"], expected_users);
    assert_eq!(room["user_count"], 2);
}

#[tokio::test]
async fn a_room_nobody_is_in_is_an_empty_room_not_an_error() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start_tweaked(|_| {}, store.clone()).await;

    let (status, room) = server.get("/rooms/nobody-yet").await;
    assert_eq!(status, 200, "{room}");
    assert_shape(&spec_room(), &room, &[], "room");
    assert_eq!(
        room,
        json!({"id":"nobody-yet","name":"nobody-yet","user_count":0,"doc_size":0,"users":[],
               "connections":0,"exists":false})
    );
    let (status, users) = server.get("/rooms/nobody-yet/users").await;
    assert_eq!(status, 200);
    assert_eq!(users, json!([]));

    // Looking it up made nothing: no room in memory, nothing in the store.
    let (_, rooms) = server.get("/rooms").await;
    assert_eq!(rooms, json!([]));
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(metrics["rooms_loaded"], 0, "{metrics}");
    assert!(store.load_durable("nobody-yet").await.unwrap().is_none());
    assert!(store.load_checkpoint("nobody-yet").await.unwrap().is_none());

    // Once someone joins, the same endpoint shows them, and `exists` turns true.
    let _carol = server.join("nobody-yet", "carol", "Carol").await;
    let (_, room) = server.get("/rooms/nobody-yet").await;
    assert_eq!(room["exists"], true);
    assert_eq!(room["user_count"], 1);
    assert_eq!(room["users"][0]["name"], "Carol");

    // Bad ids are still refused.
    let (status, body) = server.get(&format!("/rooms/{}", "r".repeat(200))).await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn cursors_and_selections_count_only_from_joined_users() {
    let server = TestServer::start().await;
    let mut alice = server.join("joined-only", "alice", "Alice").await;

    // Connected but not joined: the original ignored its presence messages.
    let (mut lurker, _) = server.connect("joined-only", "lurker").await;
    lurker
        .send_raw(Message::text(
            r##"{"type":"cursor","userId":"lurker","name":"Ghost","color":"#000000","position":3}"##,
        ))
        .await;
    lurker
        .send_raw(Message::text(
            r#"{"type":"selection","selection":{"start":1,"end":2}}"#,
        ))
        .await;
    alice.expect_silence().await;
    lurker.expect_silence().await;
    let (_, users) = server.get("/rooms/joined-only/users").await;
    let ids: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice"]);

    // After `join`, the same messages are relayed under the joined name.
    lurker
        .send_raw(Message::text(
            r##"{"type":"join","name":"Lurker","color":"#EF4444"}"##,
        ))
        .await;
    assert_eq!(lurker.recv_value().await["type"], "users_list");
    assert_eq!(alice.recv_value().await["type"], "user_joined");
    lurker
        .send_raw(Message::text(
            r##"{"type":"cursor","userId":"lurker","name":"Ghost","color":"#000000","position":3}"##,
        ))
        .await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"cursor","userId":"lurker","name":"Lurker","color":"#EF4444","position":3})
    );
    lurker
        .send_raw(Message::text(
            r#"{"type":"selection","selection":{"start":1,"end":2}}"#,
        ))
        .await;
    assert_eq!(
        alice.recv_value().await,
        json!({"type":"selection","userId":"lurker","selection":{"start":1,"end":2}})
    );
}

#[tokio::test]
async fn simulated_users_look_like_the_originals() {
    let server = TestServer::start().await;
    let mut alice = server.join("sims", "alice", "Alice").await;
    for total in [4, 7] {
        let (status, added) = server
            .send(Method::POST, "/simulate/users/sims?count=3")
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            added,
            json!({"success": true, "simulated_users": 3, "total_users": total})
        );
        for _ in 0..3 {
            assert_eq!(alice.recv_value().await["type"], "user_joined");
        }
    }

    let (_, users) = server.get("/rooms/sims/users").await;
    let simulated: Vec<&Value> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|user| user["simulated"] == true)
        .collect();
    assert_eq!(simulated.len(), 6);
    let colors = ["#F43F5E", "#10B981", "#3B82F6"];
    let mut ids = HashSet::new();
    // Each request numbers its users from 1, as the original did.
    for (index, user) in simulated.iter().enumerate() {
        let n = index % 3;
        assert_eq!(user["name"], format!("SimUser-{}", n + 1), "{user}");
        assert_eq!(user["color"], colors[n], "{user}");
        assert_eq!(
            user["cursor_position"],
            json!({"line": n % 20, "column": (n * 5) % 80}),
            "{user}"
        );
        assert_eq!(user["avatar_url"], Value::Null);
        assert_eq!(user["selection"], Value::Null);
        let id = user["id"].as_str().unwrap();
        let hex = id.strip_prefix("sim-").unwrap_or_else(|| panic!("{id}"));
        assert!(
            hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.insert(id.to_owned()), "{id} given twice");
    }

    // A page joining now sees them in its `users_list`, cursor and all.
    let (mut bob, greeting) = server.connect("sims", "bob").await;
    drop(greeting);
    bob.send_raw(Message::text(
        r##"{"type":"join","name":"Bob","color":"#EF4444"}"##,
    ))
    .await;
    let list = bob.recv_value().await;
    assert_eq!(list["type"], "users_list");
    let first = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["simulated"] == true)
        .unwrap();
    assert_eq!(first["name"], "SimUser-1");
    assert_eq!(first["cursorPosition"], json!({"line": 0, "column": 0}));
}

// ---------------------------------------------------------------------------
// `coedit serve` as an operator starts it: logs, store line, help.

/// `coedit serve` on a free port in a fresh directory, stderr to a file (not a
/// terminal), with `RUST_LOG` as given; stopped with SIGTERM. Returns the log.
async fn serve_log(args: &[&str], rust_log: Option<&str>) -> String {
    let port = free_port();
    let dir = temp_dir("parity-serve");
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let mut command = serve_command(port, &args, &dir);
    command
        .env_remove("RUST_LOG")
        .env_remove("COEDIT_LOG")
        .env_remove("NO_COLOR");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &log).await;
    terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    text
}

#[tokio::test]
async fn logs_into_a_file_have_no_colour_codes_and_name_the_store() {
    let log = serve_log(&[], None).await;
    assert!(!log.contains("\x1b["), "escape codes in a log file:\n{log}");
    let store_line = log
        .lines()
        .find(|line| line.contains("store: SQLite file"))
        .unwrap_or_else(|| panic!("no line names the store:\n{log}"));
    // The absolute path of the data file, so nobody has to guess the working directory.
    let path = store_line
        .split("store: SQLite file ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(path.starts_with('/'), "{store_line}");
    assert!(path.ends_with("coedit-data/coedit.sqlite3"), "{store_line}");
    assert!(log.contains("INFO"), "{log}");
}

#[tokio::test]
async fn an_explicit_log_level_wins_over_rust_log() {
    // RUST_LOG alone still decides when no level is given.
    let quiet = serve_log(&[], Some("error")).await;
    assert!(
        !quiet.contains("store:"),
        "RUST_LOG=error was ignored:\n{quiet}"
    );
    // The flag wins over it.
    let chatty = serve_log(&["--log-level", "info"], Some("error")).await;
    assert!(chatty.contains("store: SQLite file"), "{chatty}");
    // A filter that means nothing is refused, not silently logging nothing.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(["serve", "--log-level", "coedit=loud"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let log = serve_log(&["--log-format", "json"], None).await;
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
    }
    let store = lines
        .iter()
        .find(|line| line["store"] == "sqlite")
        .unwrap_or_else(|| panic!("no store line:\n{log}"));
    assert!(
        store["path"]
            .as_str()
            .is_some_and(|path| path.ends_with("coedit.sqlite3")),
        "{store}"
    );
    assert!(
        lines.iter().any(|line| line["message"] == "coedit serving"),
        "{log}"
    );
}

/// Runs `coedit ARGS` under `script`, so its stderr is a terminal, and returns
/// everything it printed there.
fn on_a_terminal(args: &str, no_color: bool) -> String {
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_coedit"));
    let mut command = std::process::Command::new("script");
    command
        .args(["-qec", &line, "/dev/null"])
        .env_remove("MONGO_URL")
        .env_remove("RUST_LOG")
        .env_remove("COEDIT_LOG")
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let output = command.output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_mongodb_store_line_names_hosts_and_database_but_no_credentials() {
    // Nothing listens on port 1: the server names its store, then gives up at once.
    let args = "serve --port 0 --mongo-url mongodb://ada:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=200 --db-name notes";
    let coloured = on_a_terminal(args, false);
    assert!(
        coloured.contains("store: MongoDB at 127.0.0.1:1, database notes"),
        "{coloured}"
    );
    assert!(!coloured.contains("hunter2"), "{coloured}");
    assert!(!coloured.contains("ada:"), "{coloured}");
    // On a terminal the levels are coloured, unless NO_COLOR says otherwise.
    assert!(coloured.contains("\x1b["), "{coloured:?}");
    let plain = on_a_terminal(args, true);
    assert!(plain.contains("store: MongoDB at"), "{plain}");
    assert!(!plain.contains("\x1b["), "{plain:?}");
}

#[test]
fn serve_help_groups_its_flags() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    // Each heading, with flags that belong under it, in this order.
    let groups: [(&str, &[&str]); 5] = [
        ("Network:", &["--host", "--port", "--cors-origins"]),
        (
            "Store:",
            &[
                "--data-dir",
                "--mongo-url",
                "--db-name",
                "--commit-interval-ms",
            ],
        ),
        (
            "Limits:",
            &["--max-connections", "--max-message-bytes", "--rate-limit"],
        ),
        ("Access control:", &["--admin-token", "--auth-secret"]),
        ("Logging:", &["--log-level", "--log-format"]),
    ];
    let mut sections: Vec<(usize, &str, &[&str])> = groups
        .iter()
        .map(|(heading, flags)| {
            let at = help
                .find(&format!("\n{heading}\n"))
                .unwrap_or_else(|| panic!("no {heading} heading in:\n{help}"));
            (at, *heading, *flags)
        })
        .collect();
    sections.sort_by_key(|(at, _, _)| *at);
    for (index, (start, heading, flags)) in sections.iter().enumerate() {
        let end = sections.get(index + 1).map_or(help.len(), |next| next.0);
        let section = &help[*start..end];
        for flag in *flags {
            assert!(
                section.contains(flag),
                "{flag} is not under {heading}:\n{help}"
            );
        }
    }
}

/// What the specification leaves to defaults, as a page written against the
/// original meets it: a connection without `client_id` gets an id of its own (a
/// UUID), a `ping` without a timestamp is answered with `timestamp: null`, and a
/// `join` without name or colour lists the user under defaults.
#[tokio::test]
async fn defaults_a_page_meets_without_client_id_timestamp_or_name() {
    let server = TestServer::start().await;
    let url = format!("ws://{}/api/ws/defaults", server.addr);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut page = Client::from_socket(socket, "");
    assert_eq!(page.recv_value().await, json!({"type":"users","users":[]}));

    page.send_raw(Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(
        page.recv_value().await,
        json!({"type":"pong","timestamp":null})
    );

    page.send_raw(Message::text(r#"{"type":"join"}"#)).await;
    // The joiner's own `users_list` names the others: nobody yet.
    assert_eq!(
        page.recv_value().await,
        json!({"type":"users_list","users":[]})
    );
    let (_, listed) = server.get("/rooms/defaults/users").await;
    let users = listed.as_array().unwrap();
    assert_eq!(users.len(), 1, "{listed}");
    let id = users[0]["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "a generated id: {listed}"
    );
    assert_eq!(users[0]["name"], "Anonymous", "{listed}");
    assert!(
        users[0]["color"]
            .as_str()
            .is_some_and(|color| color.starts_with('#') && color.len() == 7),
        "{listed}"
    );
}
