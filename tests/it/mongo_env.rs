//! Where the MongoDB tests find their server, and how they run the `coedit` binary
//! and MongoDB-compatible daemons of their own.
//!
//! `scripts/test.sh` starts a shared MongoDB-compatible server (secantusdb's
//! `secantusd-py`) and exports `COEDIT_TEST_MONGO_URL` for it, plus
//! `COEDIT_TEST_MONGOD`, the daemon's path, for tests that need a server they may
//! stop. `MONGO_URL` is accepted too, for running `cargo test` by hand against a
//! server of one's own; the script does not export it, because every `coedit serve`
//! a test spawns would inherit it and switch to MongoDB.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::Document;

/// How long a daemon or a `coedit serve` process may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// What to do when a MongoDB test has no server: under CI that is a broken set-up
/// and fails the test; by hand it is a skip with a note.
fn missing(test: &str, what: &str) {
    if under_ci() {
        panic!("{test}: {what} is not set; under CI the MongoDB tests must run (scripts/test.sh sets it)");
    }
    eprintln!(
        "skipping {test}: {what} is not set (scripts/test.sh starts a MongoDB-compatible server)"
    );
}

/// The shared test server's URL, or `None` (after printing why) when the test
/// should be skipped.
pub fn mongo_url(test: &str) -> Option<String> {
    let url = variable("COEDIT_TEST_MONGO_URL").or_else(|| variable("MONGO_URL"));
    if url.is_none() {
        missing(test, "COEDIT_TEST_MONGO_URL (or MONGO_URL)");
    }
    url
}

/// The MongoDB-compatible daemon to start private instances of, or `None` (after
/// printing why) when the test should be skipped.
pub fn mongod_program(test: &str) -> Option<PathBuf> {
    let program = variable("COEDIT_TEST_MONGOD").map(PathBuf::from);
    if program.is_none() {
        missing(test, "COEDIT_TEST_MONGOD");
    }
    program
}

/// A database name no other test or run uses.
pub fn unique_database(purpose: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("coedit_test_{purpose}_{}", &id[..12])
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(purpose: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coedit-{purpose}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "process exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listening on {port} after {START_TIMEOUT:?}");
}

/// Sends SIGTERM and waits for the process to end (SIGKILL after 15 s).
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private MongoDB-compatible daemon on its own port and storage directory, which
/// a test may stop and start again (same port, same data).
pub struct MongoDaemon {
    program: PathBuf,
    pub port: u16,
    storage: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl MongoDaemon {
    pub async fn start(program: PathBuf) -> Self {
        let mut daemon = Self::not_started(program);
        daemon.resume().await;
        daemon
    }

    /// Chooses its port and storage without starting it, so a test can point coedit
    /// at it first.
    pub fn not_started(program: PathBuf) -> Self {
        let dir = temp_dir("mongod");
        Self {
            program,
            port: free_port(),
            storage: dir.join("data"),
            log: dir.join("daemon.log"),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and storage.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(&self.program)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--storage-path")
            .arg(&self.storage)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.program.display()));
        wait_for_port(self.port, &mut child, &self.log).await;
        self.child = Some(child);
    }

    /// Stops it the way an operator would (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

impl Drop for MongoDaemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.storage.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `coedit serve` process (the real binary), killed on drop.
pub struct CoeditProcess {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl CoeditProcess {
    /// Starts `coedit serve --port <free> <store_args>` and waits until it listens.
    pub async fn start(store_args: &[String]) -> Self {
        Self::start_on(free_port(), store_args).await
    }

    /// `start` on a given port: a server restarted in another's place.
    pub async fn start_on(port: u16, store_args: &[String]) -> Self {
        let dir = temp_dir("serve");
        let log = dir.join("serve.log");
        let output = std::fs::File::create(&log).unwrap();
        let mut child = serve_command(port, store_args, &dir)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log).await;
        Self { port, child, log }
    }

    pub fn base(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait: the graceful shutdown an operator would do.
    pub fn stop_gracefully(&mut self) {
        terminate(&mut self.child);
    }

    /// Sends SIGTERM; with `again`, a second one `again` later. Returns the exit
    /// status and how long after the first signal it came, if within `within`.
    pub fn terminate_twice(
        &mut self,
        again: Duration,
        within: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let term = |pid: u32| {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        };
        let started = Instant::now();
        term(self.child.id());
        let mut sent_again = false;
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            if !sent_again && started.elapsed() >= again {
                term(self.child.id());
                sent_again = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `kill -9`: no graceful shutdown, no final flush.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CoeditProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `coedit serve` on `port` with only the given store flags, run in `dir`: variables
/// that would pick another store (or a `.env` in the test's working directory) are
/// kept out.
pub fn serve_command(port: u16, store_args: &[String], dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coedit"));
    command
        .arg("serve")
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .args(store_args)
        .env_remove("MONGO_URL")
        .env_remove("DB_NAME")
        .env_remove("COEDIT_DATA_DIR")
        .env_remove("COEDIT_START_DEGRADED")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// A driver handle on `database` of the server at `url`.
pub async fn database(url: &str, database: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(url)
        .await
        .unwrap()
        .database(database)
}

/// The one document of `collection` whose `room_id` is `room`.
pub async fn find_room(db: &mongodb::Database, collection: &str, room: &str) -> Option<Document> {
    db.collection::<Document>(collection)
        .find_one(mongodb::bson::doc! {"room_id": room})
        .await
        .unwrap()
}
