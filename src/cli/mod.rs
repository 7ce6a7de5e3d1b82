//! The `coedit` command line: argument definitions (their doc comments are the
//! `--help` text) and dispatch to one module per subcommand.

pub mod bench;
pub mod serve;

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collaboration server.
    ///
    /// Example: coedit serve --port 8001 --data-dir ./coedit-data
    Serve(serve::ServeArgs),
    /// Load-test a running server with simulated editors and measure fan-out latency.
    ///
    /// Each client types real Yjs edits at --rate per second; the latency of a
    /// keystroke is measured from its scheduled time to its arrival at each other
    /// editor of the room. Exit code 1 when a --max-p99-ms or --min-delivery-ratio
    /// threshold is missed, 3 when the server cannot be reached.
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
    /// The default log filter when `RUST_LOG` is not set: chatty for the server,
    /// quiet for clients whose stdout is their output.
    pub fn default_log_filter(&self) -> String {
        match &self.command {
            Command::Serve(args) => args.log_level.clone(),
            Command::Bench(_) => "warn".to_owned(),
        }
    }

    pub async fn run(self) -> Result<(), Failure> {
        match self.command {
            Command::Serve(args) => args.run().await,
            Command::Bench(args) => args.run().await,
        }
    }
}

/// Runs the parsed command line and maps the result to an exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("coedit: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
