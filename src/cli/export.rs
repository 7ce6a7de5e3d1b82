//! `coedit export ROOM` and `coedit import ROOM FILE`: a room's document as a file,
//! and a file merged into a live room.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::client_args::ClientArgs;
use super::output::{finish_operation, operation_failure};
use super::{exit, Failure};

/// Forms a document is exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The Yjs update of the whole document (binary, lossless; what import reads).
    Yjs,
    /// The plain text of the document's `content` text.
    Text,
    /// Every root type of the document as JSON.
    Json,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Yjs => "yjs",
            ExportFormat::Text => "text",
            ExportFormat::Json => "json",
        }
    }

    /// The format asked for: `--format`, else `default`. The global `--json`
    /// means `--format json` here; with another `--format` it contradicts it.
    pub(super) fn chosen(
        format: Option<ExportFormat>,
        json: bool,
        default: ExportFormat,
    ) -> Result<ExportFormat, Failure> {
        match (format, json) {
            (None | Some(ExportFormat::Json), true) => Ok(ExportFormat::Json),
            (Some(other), true) => Err(Failure::new(
                exit::USAGE,
                format!(
                    "--json means --format json, which contradicts --format {}",
                    other.name()
                ),
            )),
            (format, false) => Ok(format.unwrap_or(default)),
        }
    }
}

/// Forms a document is imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// A Yjs update (as `coedit export` writes it), merged into the room.
    Yjs,
    /// Plain UTF-8 text, appended to the room's `content` text.
    Text,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Room id.
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
    /// What to write: yjs unless --json (which means json).
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<ExportFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl ExportArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let format = ExportFormat::chosen(self.format, client.json, ExportFormat::Yjs)?;
        if self.output.is_none() && format == ExportFormat::Yjs && std::io::stdout().is_terminal() {
            return Err(Failure::new(
                exit::USAGE,
                "the yjs format is binary: write it to a file with -o FILE, or choose --format text",
            ));
        }
        let body = client
            .client()?
            .document(&self.room, format.name(), None)
            .await?;
        write_out(self.output.as_ref(), &body)
    }
}

/// Writes `body` to `path`, or to standard output.
pub(super) fn write_out(path: Option<&PathBuf>, body: &[u8]) -> Result<(), Failure> {
    match path {
        Some(path) => std::fs::write(path, body).map_err(|error| {
            Failure::new(
                exit::FAILED,
                format!("cannot write {}: {error}", path.display()),
            )
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(body)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Room id (created if it does not exist).
    #[arg(value_parser = super::parse_room_id)]
    pub room: String,
    /// File to import; `-` reads standard input.
    pub file: PathBuf,
    /// What the file holds.
    #[arg(long, short = 'f', value_enum, default_value = "yjs")]
    pub format: ImportFormat,
}

impl ImportArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let body = if self.file.as_os_str() == "-" {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            body
        } else {
            std::fs::read(&self.file).map_err(|error| {
                Failure::new(
                    exit::FAILED,
                    format!("cannot read {}: {error}", self.file.display()),
                )
            })?
        };
        let format = match self.format {
            ImportFormat::Yjs => "yjs",
            ImportFormat::Text => "text",
        };
        let answer = client.client()?.import(&self.room, format, body).await?;
        let room = &self.room;
        let response = &answer.value;
        let failure = operation_failure(response.success, &answer.raw, room);
        finish_operation(&answer.raw, client.json, failure, || {
            if response.changed {
                format!(
                    "Imported into room {room} (document now {} bytes)",
                    response.doc_size
                )
            } else {
                format!("Room {room} already held everything imported")
            }
        })
    }
}
