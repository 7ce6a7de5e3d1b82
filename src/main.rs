//! The `coedit` binary: read `.env`, parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Like the original backend, a `.env` in the working directory sets variables
    // that are not already set.
    let _ = dotenvy::dotenv();
    let cli = coedit::cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    coedit::cli::main(cli).await
}
