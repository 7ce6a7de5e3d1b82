//! `coedit history ROOM`, `coedit show ROOM` and `coedit restore ROOM`: a room's
//! kept versions, one of them read, or one of them made the live document again.

use std::path::PathBuf;

use clap::Args;

use super::client_args::ClientArgs;
use super::export::{write_out, ExportFormat};
use super::output::{self, finish_operation, operation_failure, print, print_json};
use super::{exit, Failure};
use crate::api::HistoryResponse;
use crate::client::rest::encode;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
    /// Newest versions to list.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
}

impl HistoryArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let answer = client.client()?.history(&self.room, self.limit).await?;
        if client.json {
            return print_json(&answer.raw);
        }
        print_history(&answer.value)
    }
}

fn print_history(history: &HistoryResponse) -> Result<(), Failure> {
    if history.versions.is_empty() {
        return print(format!(
            "Room {} has no readable history (kept for {}).",
            history.room_id,
            humantime::format_duration(std::time::Duration::from_secs(history.retention_seconds))
        ));
    }
    let mut table = output::table(["Seq", "Time", "Edits", "Size", "Authors"]);
    for version in &history.versions {
        table.add_row(vec![
            version.seq.to_string(),
            version.at.clone(),
            version.edits.to_string(),
            output::human_size(version.size),
            version.authors.join(", "),
        ]);
    }
    output::align_right(&mut table, &[0, 2, 3]);
    output::print_table(table)
}

/// Which version: `--seq N` or `--at TIME` (RFC 3339, or a duration ago).
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The version with this sequence number (see `coedit history`).
    #[arg(long, conflicts_with = "at")]
    pub seq: Option<u64>,
    /// The version as of this time: RFC 3339 (2026-01-31T09:00:00Z) or a duration
    /// ago (90m, 2h, 1d).
    #[arg(long)]
    pub at: Option<String>,
}

impl VersionArgs {
    fn query(&self) -> Option<String> {
        match (&self.seq, &self.at) {
            (Some(seq), _) => Some(format!("seq={seq}")),
            (None, Some(at)) => Some(format!("at={}", encode(at))),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
    #[command(flatten)]
    pub version: VersionArgs,
    /// What to write: text unless --json (which means json).
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<ExportFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl ShowArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let format = ExportFormat::chosen(self.format, client.json, ExportFormat::Text)?;
        let body = client
            .client()?
            .document(&self.room, format.name(), self.version.query().as_deref())
            .await?;
        write_out(self.output.as_ref(), &body)
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
    #[command(flatten)]
    pub version: VersionArgs,
}

impl RestoreArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let Some(version) = self.version.query() else {
            return Err(Failure::new(
                exit::USAGE,
                "say which version: --seq N or --at TIME",
            ));
        };
        let answer = client.client()?.restore(&self.room, &version).await?;
        let response = &answer.value;
        let room = &self.room;
        let failure = operation_failure(response.success, &answer.raw, room);
        finish_operation(&answer.raw, client.json, failure, || {
            let mut said = format!("Restored room {room} to version {}", response.seq);
            if !response.skipped_roots.is_empty() {
                said.push_str(&format!(
                    " (left as they are: {})",
                    response.skipped_roots.join(", ")
                ));
            }
            said
        })
    }
}
