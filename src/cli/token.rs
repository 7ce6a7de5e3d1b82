//! `coedit token`: mints a room token for servers started with `--auth-secret`.

use std::time::Duration;

use clap::Args;

use super::output::print;
use super::{exit, Failure};
use crate::server::auth;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Room the token grants; repeat for several. `prefix/*` grants every room
    /// under a prefix, `*` all rooms.
    #[arg(long = "room", required = true)]
    pub rooms: Vec<String>,

    /// The bearer may read and show presence but not change documents.
    #[arg(long)]
    pub read_only: bool,

    /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// Who the token is for (shown in server logs).
    #[arg(long)]
    pub subject: Option<String>,

    /// The server's auth secret.
    #[arg(long, env = "COEDIT_AUTH_SECRET", hide_env_values = true)]
    pub secret: String,
}

impl TokenArgs {
    pub fn run(self, json: bool) -> Result<(), Failure> {
        if json {
            return Err(Failure::new(
                exit::USAGE,
                "token prints the bare token, which has no JSON form: drop --json",
            ));
        }
        let token = auth::mint(
            &self.secret,
            self.rooms,
            self.read_only,
            self.ttl,
            self.subject,
        )
        .map_err(|error| Failure::new(exit::FAILED, error.to_string()))?;
        print(token)
    }
}
