//! `coedit rooms list|show|users`: the rooms a server holds and who is in them.

use clap::{Args, Subcommand};

use super::client_args::ClientArgs;
use super::output::{self, print, print_json};
use super::Failure;
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
        room: String,
    },
    /// List the users present in a room, with their colour and cursor.
    ///
    /// Example: coedit rooms users my-room --json
    Users {
        /// Room id.
        room: String,
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
        }
    }
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
