//! `coedit rooms list|show|users|delete`: the rooms a server holds, who is in them,
//! and deleting one.

use clap::{Args, Subcommand};

use super::client_args::ClientArgs;
use super::output::{self, finish_operation, operation_failure, print, print_json};
use super::{exit, Failure};
use crate::api::{RoomInfo, RoomUser};

#[derive(Debug, Args)]
pub struct RoomsArgs {
    #[command(subcommand)]
    pub command: RoomsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// List the rooms the server holds in memory, with their users and document size.
    ///
    /// Example: coedit rooms list --server http://127.0.0.1:8001
    List,
    /// Show one room: its users, connections and document size.
    ///
    /// Example: coedit rooms show my-room
    Show {
        /// Room id.
        #[arg(value_parser = super::parse_room_id)]
        room: String,
    },
    /// List the users present in a room, with their colour and cursor.
    ///
    /// Example: coedit rooms users my-room --json
    Users {
        /// Room id.
        #[arg(value_parser = super::parse_room_id)]
        room: String,
    },
    /// Delete a room: its connections are closed, and its document, history and
    /// checkpoint are removed from the server's store. Cannot be undone.
    ///
    /// Asks for confirmation on a terminal; scripts pass --yes (without it, a
    /// command whose input is not a terminal refuses, exit 2).
    ///
    /// Example: coedit rooms delete old-room --yes
    Delete {
        /// Room id.
        #[arg(value_parser = super::parse_room_id)]
        room: String,
        /// Delete without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

impl RoomsArgs {
    pub async fn run(self, options: &ClientArgs) -> Result<(), Failure> {
        let client = options.client()?;
        let json = options.json;
        match self.command {
            RoomsCommand::List => {
                let answer = client.rooms().await?;
                if json {
                    return print_json(&answer.raw);
                }
                print_rooms(&answer.value)
            }
            RoomsCommand::Show { room } => {
                let answer = client.room(&room).await?;
                if json {
                    return print_json(&answer.raw);
                }
                print_room(&answer.value)
            }
            RoomsCommand::Users { room } => {
                let answer = client.room_users(&room).await?;
                if json {
                    return print_json(&answer.raw);
                }
                print_users(&answer.value)
            }
            RoomsCommand::Delete { room, yes } => {
                if !yes && !confirm_delete(&room).await? {
                    return Err(Failure::new(
                        exit::FAILED,
                        format!("room {room} not deleted"),
                    ));
                }
                let answer = client.delete_room(&room).await?;
                let closed = answer.value.closed_connections;
                let failure = operation_failure(answer.value.success, &answer.raw, &room);
                finish_operation(&answer.raw, json, failure, || {
                    format!("Deleted room {room} (closed {closed} connections)")
                })
            }
        }
    }
}

/// Asks on the terminal whether to delete `room`. Input that is not a terminal is
/// never taken as a yes: a script must say --yes.
async fn confirm_delete(room: &str) -> Result<bool, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            exit::USAGE,
            format!("not deleting room {room} without confirmation: input is not a terminal; pass --yes"),
        ));
    }
    let question = format!(
        "Delete room {room}? Its connections are closed and its document, history and \
         checkpoint are removed for good. [y/N] "
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "{question}");
        let _ = stderr.flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|error| Failure::new(exit::FAILED, format!("cannot read the answer: {error}")))?
    .map_err(|error| Failure::new(exit::FAILED, format!("cannot read the answer: {error}")))?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

fn user_names(room: &RoomInfo) -> String {
    room.users
        .iter()
        .map(|user| user.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_rooms(rooms: &[RoomInfo]) -> Result<(), Failure> {
    if rooms.is_empty() && output::stdout_is_terminal() {
        return print("No rooms loaded.");
    }
    let mut table = output::table(["Room", "Users", "Connections", "Size", "User names"]);
    for room in rooms {
        table.add_row(vec![
            room.id.clone(),
            room.user_count.to_string(),
            room.connections.to_string(),
            output::human_size(room.doc_size),
            user_names(room),
        ]);
    }
    output::align_right(&mut table, &[1, 2, 3]);
    output::print_table(table)
}

fn print_room(room: &RoomInfo) -> Result<(), Failure> {
    let simulated = room.users.iter().filter(|user| user.simulated).count();
    let mut details = output::table(["Room", &room.id]);
    details.add_row(vec!["Name".to_owned(), room.name.clone()]);
    details.add_row(vec![
        "Users".to_owned(),
        format!("{} ({simulated} simulated)", room.user_count),
    ]);
    details.add_row(vec!["Connections".to_owned(), room.connections.to_string()]);
    details.add_row(vec![
        "Document size".to_owned(),
        format!(
            "{} ({} bytes)",
            output::human_size(room.doc_size),
            room.doc_size
        ),
    ]);
    output::print_table(details)?;
    if !room.exists {
        // The API answers such a room as an empty one, as the original did; a person
        // deserves to know that is all it is (a typo in the name looks the same).
        print("")?;
        return print(format!(
            "Nobody is in room {} and nothing is stored for it.",
            room.id
        ));
    }
    if room.users.is_empty() {
        return Ok(());
    }
    let mut users = output::table(["Name", "Color", "Simulated", "Id"]);
    for user in &room.users {
        users.add_row(vec![
            comfy_table::Cell::new(&user.name),
            output::colour_cell(&user.color),
            comfy_table::Cell::new(output::yes_no(user.simulated)),
            comfy_table::Cell::new(&user.id),
        ]);
    }
    print("")?;
    output::print_table(users)
}

fn print_users(users: &[RoomUser]) -> Result<(), Failure> {
    if users.is_empty() && output::stdout_is_terminal() {
        return print("No users in this room.");
    }
    let mut table = output::table(["Name", "Color", "Cursor", "Simulated", "Id"]);
    for user in users {
        table.add_row(vec![
            comfy_table::Cell::new(&user.name),
            output::colour_cell(&user.color),
            comfy_table::Cell::new(
                user.cursor_position
                    .map_or_else(|| "-".to_owned(), |cursor| cursor.to_string()),
            ),
            comfy_table::Cell::new(output::yes_no(user.simulated)),
            comfy_table::Cell::new(&user.id),
        ]);
    }
    output::align_right(&mut table, &[2]);
    output::print_table(table)
}
