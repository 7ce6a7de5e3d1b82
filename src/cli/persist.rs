//! `coedit persist ROOM`: write a checkpoint of a room's live document to the store.

use clap::Args;

use super::client_args::ClientArgs;
use super::output::{finish_operation, operation_failure};
use super::Failure;
use crate::api::PersistResponse;
use crate::client::rest::Answer;

#[derive(Debug, Args)]
pub struct PersistArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
}

impl PersistArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let answer = client.client()?.persist(&self.room).await?;
        report(answer, client.json, "Saved", &self.room)
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
    let response = &answer.value;
    let failure = operation_failure(response.success, &answer.raw, room);
    finish_operation(&answer.raw, json, failure, || match response.size {
        Some(size) => format!("{verb} room {room} ({size} hex chars)"),
        None => format!("{verb} room {room}"),
    })
}
