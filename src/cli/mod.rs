//! The `coedit` command line: argument definitions (their doc comments are the
//! `--help` text) and dispatch to one module per subcommand.

pub mod bench;
pub mod client_args;
pub mod cluster;
pub mod completions;
pub mod dump;
pub mod export;
pub mod health;
pub mod history;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod persist;
pub mod rooms;
pub mod serve;
pub mod simulate;
pub mod store_args;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in the README and `--help`.
pub mod exit {
    /// The command did what it was asked.
    pub const SUCCESS: u8 = 0;
    /// The server answered but the operation failed.
    pub const FAILED: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server could not be reached.
    pub const UNREACHABLE: u8 = 3;
}

/// Real-time collaboration server for Yjs documents, and its command-line clients.
#[derive(Debug, Parser)]
#[command(name = "coedit", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success; 1 the server answered but the operation failed; \
2 usage error; 3 the server could not be reached."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub client: client_args::ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collaboration server.
    ///
    /// Example: coedit serve --port 8001 --data-dir ./coedit-data
    Serve(Box<serve::ServeArgs>),

    /// List and inspect the rooms of a running server.
    ///
    /// Example: coedit rooms list
    Rooms(rooms::RoomsArgs),

    /// Show a running server's metrics, once or refreshed in place.
    ///
    /// Example: coedit metrics --watch 5s
    Metrics(metrics::MetricsArgs),

    /// Save a checkpoint of a room's document in the server's store.
    ///
    /// Example: coedit persist my-room
    Persist(persist::PersistArgs),

    /// Restore a room's document to its last saved checkpoint.
    ///
    /// Example: coedit load my-room
    Load(load::LoadArgs),

    /// Write a room's document to a file: Yjs (lossless), plain text or JSON.
    ///
    /// Example: coedit export my-room --format text -o my-room.txt
    Export(export::ExportArgs),

    /// Merge a file into a live room, as an edit every connected client receives:
    /// a Yjs update (as export writes it) or plain text appended to the document.
    ///
    /// Example: coedit import other-room my-room.yjs
    Import(export::ImportArgs),

    /// List the versions a room's history keeps (edits within a minute are one
    /// version), newest first.
    ///
    /// Example: coedit history my-room --limit 50
    History(history::HistoryArgs),

    /// Print a room's document, now or as it was: --seq N or --at TIME.
    ///
    /// Example: coedit show my-room --at 2h --format text
    Show(history::ShowArgs),

    /// Make a room's document what it was at a version of its history, as a new
    /// change every connected client receives (undo it with another restore).
    ///
    /// Example: coedit restore my-room --seq 1234
    Restore(history::RestoreArgs),

    /// Write every room of a store, with its history and checkpoint, to one file.
    ///
    /// Works on the store directly, with the same store flags as `serve`; refuses
    /// while a server (or another dump or restore) holds the store. --json prints
    /// the totals for scripts.
    ///
    /// Example: coedit dump -o coedit.dump --data-dir ./coedit-data
    Dump(dump::DumpArgs),

    /// Write the rooms of a `coedit dump` file into a store (empty, unless --force).
    ///
    /// Works on the store directly, with the same store flags as `serve`; refuses
    /// while a server holds the store. Moving from the embedded store to MongoDB
    /// is a dump of one and a restore into the other.
    ///
    /// Example: coedit restore-dump coedit.dump --mongo-url mongodb://localhost:27017
    RestoreDump(dump::RestoreDumpArgs),

    /// Add or remove simulated users in a room.
    ///
    /// Example: coedit simulate add my-room --count 5
    Simulate(simulate::SimulateArgs),

    /// List the live nodes of a server's cluster (a lone server lists itself), with
    /// their rooms, connections and last heartbeat.
    ///
    /// Example: coedit cluster --server http://127.0.0.1:8001 --json
    Cluster(cluster::ClusterArgs),

    /// Check that a server is up and healthy (exit 0), degraded (1) or unreachable (3).
    ///
    /// Example: coedit health --server http://127.0.0.1:8001 --timeout 2s
    Health(health::HealthArgs),

    /// Print a shell completion script.
    ///
    /// Example: coedit completions bash > ~/.local/share/bash-completion/completions/coedit
    Completions(completions::CompletionsArgs),

    /// Mint a room token for a server started with --auth-secret.
    ///
    /// Example: coedit token --room notes --read-only --ttl 8h --secret "$COEDIT_AUTH_SECRET"
    Token(token::TokenArgs),

    /// Load-test a running server with simulated editors and measure fan-out latency.
    ///
    /// Each client types real Yjs edits at --rate per second; the latency of a
    /// keystroke is measured from its scheduled time to its arrival at each other
    /// editor of the room. Exit code 3 when the server cannot be reached (within
    /// --timeout); 1 when a --max-p99-ms or --min-delivery-ratio threshold is
    /// missed, or when the run proves nothing: a client never connected or was not
    /// connected at the end, no keystroke was measured, no room could be compared
    /// for convergence, or rooms ended with different documents.
    /// A server started with --auth-secret needs --token with a room token granting
    /// every room of the run (`coedit token --room '*'`).
    ///
    /// Example: coedit bench --url ws://127.0.0.1:8001 --rooms 10 --clients 10 --rate 2
    Bench(bench::BenchArgs),
}

/// A failed command: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl Cli {
    /// How this command logs: the server at `info` unless told otherwise; clients
    /// at `warn` (or `RUST_LOG`), since their stdout is their output.
    pub fn log_settings(&self) -> logging::LogSettings {
        match &self.command {
            Command::Serve(args) => args.log_settings(),
            // Clients' stdout is their output; only trouble belongs on stderr.
            Command::Rooms(_)
            | Command::Metrics(_)
            | Command::Persist(_)
            | Command::Load(_)
            | Command::Export(_)
            | Command::Import(_)
            | Command::History(_)
            | Command::Show(_)
            | Command::Restore(_)
            | Command::Dump(_)
            | Command::RestoreDump(_)
            | Command::Simulate(_)
            | Command::Health(_)
            | Command::Cluster(_)
            | Command::Completions(_)
            | Command::Token(_)
            | Command::Bench(_) => logging::LogSettings {
                explicit: None,
                default: "warn",
                format: logging::LogFormat::Text,
            },
        }
    }

    pub async fn run(self) -> Result<(), Failure> {
        match self.command {
            Command::Serve(args) => args.run().await,
            Command::Rooms(args) => args.run(&self.client).await,
            Command::Metrics(args) => args.run(&self.client).await,
            Command::Persist(args) => args.run(&self.client).await,
            Command::Load(args) => args.run(&self.client).await,
            Command::Export(args) => args.run(&self.client).await,
            Command::Import(args) => args.run(&self.client).await,
            Command::History(args) => args.run(&self.client).await,
            Command::Show(args) => args.run(&self.client).await,
            Command::Restore(args) => args.run(&self.client).await,
            Command::Dump(args) => args.run(self.client.json).await,
            Command::RestoreDump(args) => args.run(self.client.json).await,
            Command::Simulate(args) => args.run(&self.client).await,
            Command::Health(args) => args.run(&self.client).await,
            Command::Cluster(args) => args.run(&self.client).await,
            Command::Completions(args) => args.run(),
            Command::Token(args) => args.run(self.client.json),
            Command::Bench(args) => args.run(&self.client).await,
        }
    }
}

/// Runs the parsed command line and maps the result to an exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (see `output`) ends a command early but successfully.
        Err(failure) if failure.code == exit::SUCCESS => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("coedit: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A room id argument, held to the server's rules: one it would refuse (or that no
/// URL can name, like `.`) is a usage error here rather than a request elsewhere.
fn parse_room_id(raw: &str) -> Result<String, String> {
    crate::server::rest::validate_room_id(raw)
        .map(|()| raw.to_owned())
        .map_err(|error| error.to_string())
}
