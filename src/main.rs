//! The `coedit` binary: read `.env`, parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Like the original backend, a `.env` in the working directory sets variables
    // that are not already set.
    let _ = dotenvy::dotenv();
    let cli = coedit::cli::Cli::parse();
    coedit::cli::logging::init(&cli.log_settings());
    coedit::cli::main(cli).await
}
