//! `coedit persist ROOM`: write a checkpoint of a room's live document to the store.

use clap::Args;

use super::client_args::ClientArgs;
use super::output::{print, print_json};
use super::{exit, Failure};
use crate::api::PersistResponse;
use crate::client::rest::Answer;

#[derive(Debug, Args)]
pub struct PersistArgs {
    /// Room id.
    pub room: String,

    #[command(flatten)]
    pub client: ClientArgs,
}

impl PersistArgs {
    pub async fn run(self) -> Result<(), Failure> {
        let answer = self.client.client()?.persist(&self.room).await?;
        report(answer, self.client.json, "Saved", &self.room)
    }
}

/// Prints a persist or load answer; `success: false` is exit 1 with the server's
/// reason, after the JSON document when one was asked for.
pub(super) fn report(
    answer: Answer<PersistResponse>,
    json: bool,
    verb: &str,
    room: &str,
) -> Result<(), Failure> {
    if json {
        print_json(&answer.raw)?;
    }
    let response = answer.value;
    if !response.success {
        let reason = response
            .error
            .unwrap_or_else(|| "the server gave no reason".to_owned());
        return Err(Failure::new(exit::FAILED, format!("room {room}: {reason}")));
    }
    if json {
        return Ok(());
    }
    match response.size {
        Some(size) => print(format!("{verb} room {room} ({size} hex chars)")),
        None => print(format!("{verb} room {room}")),
    }
}
