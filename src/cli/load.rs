//! `coedit load ROOM`: restore a room's live document to its last checkpoint.

use clap::Args;

use super::client_args::ClientArgs;
use super::persist::report;
use super::Failure;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
}

impl LoadArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let answer = client.client()?.load(&self.room).await?;
        report(answer, client.json, "Loaded", &self.room)
    }
}
