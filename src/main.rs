//! The `coedit` binary: read `.env`, parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Like the original backend, a `.env` in the working directory (not a parent's)
    // sets variables that are not already set. One that cannot be read whole is
    // refused: dotenvy stops at the first bad line, and the variables after it
    // (an admin token, say) would be left unset without a word.
    match dotenvy::from_path(".env") {
        Ok(()) => {}
        Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            eprintln!("error: cannot read .env: {error}");
            return ExitCode::from(2);
        }
    }
    let cli = coedit::cli::Cli::parse();
    coedit::cli::logging::init(&cli.log_settings());
    coedit::cli::main(cli).await
}
