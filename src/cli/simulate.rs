//! `coedit simulate add|remove ROOM`: simulated users, to see presence and load
//! without opening editors.

use clap::{Args, Subcommand};

use super::client_args::ClientArgs;
use super::output::finish_operation;
use super::Failure;

/// The server's default, sent explicitly so the output can say what was asked for.
pub const DEFAULT_COUNT: u32 = 10;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub command: SimulateCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Add simulated users to a room (creating the room if needed).
    ///
    /// Example: coedit simulate add my-room --count 5
    Add {
        /// Room id.
        #[arg(value_parser = super::parse_room_id)]
        room: String,
        /// How many users to add.
        #[arg(
            long,
            short = 'n',
            value_name = "N",
            default_value_t = DEFAULT_COUNT,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        count: u32,
    },
    /// Remove every simulated user from a room.
    ///
    /// Example: coedit simulate remove my-room
    Remove {
        /// Room id.
        #[arg(value_parser = super::parse_room_id)]
        room: String,
    },
}

impl SimulateArgs {
    pub async fn run(self, options: &ClientArgs) -> Result<(), Failure> {
        let client = options.client()?;
        let json = options.json;
        match self.command {
            SimulateCommand::Add { room, count } => {
                let answer = client.simulate_add(&room, count).await?;
                let response = &answer.value;
                let failure = (!response.success)
                    .then(|| format!("room {room}: the server did not add users"));
                finish_operation(&answer.raw, json, failure, || {
                    format!(
                        "Added {} simulated users to room {room} ({} users now)",
                        response.simulated_users, response.total_users
                    )
                })
            }
            SimulateCommand::Remove { room } => {
                let answer = client.simulate_remove(&room).await?;
                let response = &answer.value;
                let failure = (!response.success)
                    .then(|| format!("room {room}: the server did not remove users"));
                finish_operation(&answer.raw, json, failure, || {
                    format!(
                        "Removed {} simulated users from room {room}",
                        response.removed
                    )
                })
            }
        }
    }
}
