//! Moving between stores: `coedit dump` from the embedded store, `coedit
//! restore-dump` into MongoDB, a server on MongoDB serving every room and its
//! history as before, and back again; both refuse a store a server holds, and a
//! restore refuses a store that already holds rooms.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::common::*;
use super::mongo_env::*;

/// Runs the real binary with only the given arguments (no store picked by the
/// environment).
fn coedit(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args(args)
        .env_remove("MONGO_URL")
        .env_remove("DB_NAME")
        .env_remove("COEDIT_DATA_DIR")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// A command that must succeed; its `--json` summary.
fn succeeds(args: &[String]) -> Value {
    let output = coedit(args);
    assert!(
        output.status.success(),
        "coedit {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "coedit {args:?} printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A command that must fail with exit 1 and one line on stderr holding `reason`.
fn refuses(args: &[String], reason: &str) {
    let output = coedit(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "coedit {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(reason), "expected {reason:?} in {stderr}");
}

async fn get(server: &CoeditProcess, path: &str) -> Value {
    let response = reqwest::get(format!("http://{}/api{path}", server.base()))
        .await
        .unwrap();
    assert!(response.status().is_success(), "GET {path}: {response:?}");
    let body = response.text().await.unwrap();
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

async fn post(server: &CoeditProcess, path: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api{path}", server.base()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "POST {path}: {response:?}");
    response.json().await.unwrap()
}

/// A JSON client that has joined `room` under `name` (its client id too).
async fn join(server: &CoeditProcess, room: &str, name: &str) -> Client {
    super::durability::join(&server.base(), room, name).await
}

/// Types `text` one keystroke (one update) at a time, at the end.
async fn type_slowly(client: &mut Client, text: &str) {
    for character in text.chars() {
        let end = client.content().chars().count() as u32;
        client.type_incremental(end, &character.to_string()).await;
    }
}

/// Everything a reader sees of a room: its text, its history listing, and its
/// text at every version the listing names.
async fn observed(server: &CoeditProcess, room: &str) -> Value {
    let text = get(server, &format!("/rooms/{room}/document?format=text")).await;
    let history = get(server, &format!("/rooms/{room}/history?limit=10000")).await;
    let mut versions = Vec::new();
    for version in history["versions"].as_array().unwrap() {
        let seq = &version["seq"];
        versions.push(
            get(
                server,
                &format!("/rooms/{room}/document?format=text&seq={seq}"),
            )
            .await,
        );
    }
    // And one edit in the middle of a version, below the first compaction.
    let third = get(server, &format!("/rooms/{room}/document?format=json&seq=3")).await;
    serde_json::json!({"text": text, "history": history, "versions": versions, "third": third})
}

/// The dump without its header (which names the source store and the time).
fn body(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    assert!(header.contains("\"coedit-dump\""), "{header}");
    body.to_owned()
}

#[tokio::test]
async fn a_store_moves_from_sqlite_to_mongodb_and_back_with_every_room_and_its_history() {
    let test = "a_store_moves_from_sqlite_to_mongodb_and_back_with_every_room_and_its_history";
    let Some(url) = mongo_url(test) else {
        return;
    };
    let work = temp_dir("dump");
    let sqlite_dir = work.join("sqlite");
    let database = unique_database("dump");
    let sqlite_store = strings(&["--data-dir", &path(&sqlite_dir)]);
    let mongo_store = strings(&["--mongo-url", &url, "--db-name", &database]);
    let tuned = |store: &[String]| {
        let mut args = store.to_vec();
        // Compactions (kept as history snapshots) after a few edits, and rooms
        // unloaded soon after their last client leaves.
        args.extend(strings(&[
            "--compact-every",
            "6",
            "--idle-unload-secs",
            "1",
        ]));
        args
    };

    let mut sqlite = CoeditProcess::start(&tuned(&sqlite_store)).await;
    // Alpha: typed, restored to an old version (a version of its own), typed
    // again, and checkpointed.
    let mut ada = join(&sqlite, "alpha", "Ada").await;
    type_slowly(&mut ada, "hello, stores").await;
    assert!(
        eventually(
            async || get(&sqlite, "/rooms/alpha/document?format=text").await == "hello, stores"
        )
        .await
    );
    let restored = post(&sqlite, "/rooms/alpha/restore?seq=5").await;
    assert_eq!(restored["success"], true, "{restored}");
    // Grace joins after the restore: the document she is sent is the old one.
    let mut grace = join(&sqlite, "alpha", "Grace").await;
    assert_eq!(grace.content(), "hello");
    type_slowly(&mut grace, " again").await;
    assert_eq!(post(&sqlite, "/rooms/alpha/persist").await["success"], true);
    // Beta: typed by Bob, who leaves; the room is unloaded.
    let mut bob = join(&sqlite, "beta", "Bob").await;
    type_slowly(&mut bob, "notes from bob").await;
    assert!(
        eventually(
            async || get(&sqlite, "/rooms/beta/document?format=text").await == "notes from bob"
        )
        .await
    );
    bob.close().await;
    assert!(
        eventually(async || !get(&sqlite, "/rooms")
            .await
            .to_string()
            .contains("\"beta\""))
        .await,
        "beta never unloaded"
    );
    // Gamma: a short document whose editor is still there when the server stops.
    let mut cy = join(&sqlite, "gamma", "Cy").await;
    type_slowly(&mut cy, "xyz").await;
    assert!(
        eventually(async || get(&sqlite, "/rooms/gamma/document?format=text").await == "xyz").await
    );

    // While the server holds the store, neither command touches it.
    let dump_file = work.join("sqlite.dump");
    let dump_sqlite = [
        strings(&["dump", "--json", "-o", &path(&dump_file)]),
        sqlite_store.clone(),
    ]
    .concat();
    refuses(&dump_sqlite, "in use by another coedit server");
    assert!(!dump_file.exists(), "a refused dump leaves no file");
    // (A dump of a directory that holds no store is refused, not an empty file.)
    let empty_file = work.join("empty.dump");
    refuses(
        &strings(&[
            "dump",
            "-o",
            &path(&empty_file),
            "--data-dir",
            &path(&work.join("none")),
        ]),
        "there is no embedded store",
    );
    // Nor is a MongoDB database that holds none of coedit's collections (a
    // mistyped --db-name), which is left as it was: not created.
    let mistyped = unique_database("mistyped");
    refuses(
        &strings(&[
            "dump",
            "-o",
            &path(&empty_file),
            "--mongo-url",
            &url,
            "--db-name",
            &mistyped,
        ]),
        "holds none of coedit's collections",
    );
    assert!(!empty_file.exists());
    let databases = mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .list_database_names()
        .await
        .unwrap();
    assert!(!databases.contains(&mistyped), "{databases:?}");
    std::fs::write(
        &empty_file,
        "{\"type\":\"header\",\"format\":\"coedit-dump\",\"version\":1,\"source\":\"sqlite\",\"created_at\":\"2026-01-01T00:00:00Z\"}\n\
         {\"type\":\"end\",\"rooms\":0,\"entries\":0}\n",
    )
    .unwrap();
    refuses(
        &[
            strings(&["restore-dump", &path(&empty_file)]),
            sqlite_store.clone(),
        ]
        .concat(),
        "in use by another coedit server",
    );

    let mut expected = Vec::new();
    for room in ["alpha", "beta", "gamma"] {
        expected.push(observed(&sqlite, room).await);
    }
    assert_eq!(expected[0]["text"], "hello again");
    assert!(
        expected[0]["history"]["versions"][0]["authors"]
            .to_string()
            .contains("Grace"),
        "{}",
        expected[0]["history"]
    );
    drop((ada, grace, cy));
    sqlite.stop_gracefully();

    // SQLite → file → MongoDB.
    let dumped = succeeds(&dump_sqlite);
    assert_eq!(dumped["rooms"], 3, "{dumped}");
    assert_eq!(dumped["source"], "sqlite");
    let entries = dumped["entries"].as_u64().unwrap();
    // Every keystroke, and the restore.
    assert!(entries > 13 + 6 + 14 + 3, "{dumped}");
    let restore_mongo = [
        strings(&["restore-dump", "--json", &path(&dump_file)]),
        mongo_store.clone(),
    ]
    .concat();
    let restored = succeeds(&restore_mongo);
    assert_eq!(
        (
            &restored["rooms"],
            &restored["entries"],
            &restored["bytes"],
            &restored["target"]
        ),
        (
            &dumped["rooms"],
            &dumped["entries"],
            &dumped["bytes"],
            &"mongodb".into()
        ),
        "{restored}"
    );
    // The restore gave its writer lease back: nothing after it waits for it.
    let leases = super::mongo_env::database(&url, &database)
        .await
        .collection::<mongodb::bson::Document>(coedit::server::store::lease::LEASES)
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(leases, 0, "the writer lease was left behind");

    // A server on MongoDB serves every room as the SQLite one did. (It must
    // write nothing here, for the dumps to compare below: no compaction when a
    // room is opened.)
    let mut mongo_args = mongo_store.clone();
    mongo_args.extend(strings(&["--compact-every", "100000"]));
    let mut mongo = CoeditProcess::start(&mongo_args).await;
    for (room, expected) in ["alpha", "beta", "gamma"].into_iter().zip(&expected) {
        assert_eq!(&observed(&mongo, room).await, expected, "room {room}");
    }
    // Neither a restore into the store the server holds nor a dump of it runs.
    let mongo_file = work.join("mongo.dump");
    let dump_mongo = [
        strings(&["dump", "--json", "-o", &path(&mongo_file)]),
        mongo_store.clone(),
    ]
    .concat();
    refuses(&restore_mongo, "in use by another coedit server");
    refuses(&dump_mongo, "in use by another coedit server");
    assert!(!mongo_file.exists(), "a refused dump leaves no file");
    mongo.stop_gracefully();

    // Into a store that holds rooms: refused, unless --force.
    refuses(&restore_mongo, "not empty");

    // MongoDB → file → a fresh SQLite directory → file: the same three files.
    assert_eq!(succeeds(&dump_mongo)["source"], "mongodb");
    let back_dir = work.join("back");
    let back_store = strings(&["--data-dir", &path(&back_dir)]);
    succeeds(
        &[
            strings(&["restore-dump", "--json", &path(&mongo_file)]),
            back_store.clone(),
        ]
        .concat(),
    );
    let back_file = work.join("back.dump");
    succeeds(
        &[
            strings(&["dump", "--json", "-o", &path(&back_file)]),
            back_store.clone(),
        ]
        .concat(),
    );
    assert_eq!(body(&mongo_file), body(&dump_file), "SQLite → MongoDB");
    assert_eq!(body(&back_file), body(&dump_file), "MongoDB → SQLite");

    // --force replaces the rooms the dump holds and leaves the others.
    let forced = succeeds(
        &[
            strings(&["restore-dump", "--json", "--force", &path(&dump_file)]),
            back_store.clone(),
        ]
        .concat(),
    );
    assert_eq!(forced["rooms"], 3);
    succeeds(
        &[
            strings(&["dump", "--json", "-o", &path(&back_file)]),
            back_store,
        ]
        .concat(),
    );
    assert_eq!(body(&back_file), body(&dump_file), "after --force");

    super::mongo_env::database(&url, &database)
        .await
        .drop()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
