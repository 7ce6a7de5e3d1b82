//! `coedit dump` and `coedit restore-dump`: a whole store to one file and back,
//! working on the store directly (no server), holding it as a server would so
//! none can use it meanwhile.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::output::{human_size, print, print_json};
use super::store_args::StoreArgs;
use super::{exit, Failure};
use crate::server::store::dump::{self, DumpError, Progress, Summary};
use crate::server::store::mongo::{MongoStore, CHECKPOINTS, SNAPSHOTS, UPDATES};
use crate::server::store::sqlite::DATABASE_FILE;
use crate::server::store::StoreError;
use crate::server::{Config, HeldStore, ServeError, StoreConfig};

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// File to write (newline-delimited JSON; written beside it as FILE.partial
    /// and renamed when complete).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RestoreDumpArgs {
    /// A file written by `coedit dump`.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,

    /// Restore into a store that already holds rooms: each room of the dump
    /// replaces the room of that name (deleted first); other rooms stay.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    file: &'a Path,
    source: &'a str,
    target: &'a str,
    #[serde(flatten)]
    summary: &'a Summary,
}

impl DumpArgs {
    pub async fn run(&self, json: bool) -> Result<(), Failure> {
        // Opening the embedded store creates it: a mistyped --data-dir would
        // otherwise give an empty dump and a new directory.
        if let StoreConfig::Embedded { data_dir } = self.store.store_config() {
            if !data_dir.join(DATABASE_FILE).exists() {
                return Err(Failure::new(
                    exit::FAILED,
                    format!(
                        "cannot dump: there is no embedded store in {} (no {DATABASE_FILE})",
                        data_dir.display()
                    ),
                ));
            }
        }
        if let StoreConfig::Mongo { url, database } = self.store.store_config() {
            let unusable =
                |error: StoreError| Failure::new(exit::FAILED, format!("cannot dump: {error}"));
            let store = MongoStore::connect(&url, &database)
                .await
                .map_err(unusable)?;
            if !store.holds_rooms().await.map_err(unusable)? {
                return Err(Failure::new(
                    exit::FAILED,
                    format!(
                        "cannot dump: database {database} on {} holds none of coedit's collections ({CHECKPOINTS}, {UPDATES}, {SNAPSHOTS})",
                        store.hosts()
                    ),
                ));
            }
        }
        let held = hold(&self.store, "dump").await?;
        let result = self.write(&held).await;
        release(held).await;
        let summary = result?;
        finish(
            json,
            &Report {
                file: &self.output,
                source: &summary.1,
                target: "file",
                summary: &summary.0,
            },
            format!(
                "dumped {} from the {} store to {}",
                totals(&summary.0),
                summary.1,
                self.output.display()
            ),
        )
    }

    async fn write(&self, held: &HeldStore) -> Result<(Summary, String), Failure> {
        let store = held.store.as_ref();
        let rooms = store
            .list_rooms()
            .await
            .map_err(|error| failed("dump")(error.into()))?;
        let partial = partial_path(&self.output);
        let file = File::create(&partial).map_err(|error| {
            Failure::new(
                exit::FAILED,
                format!("cannot write {}: {error}", partial.display()),
            )
        })?;
        let bar = Bar::new(Some(rooms.len() as u64));
        let mut out = BufWriter::new(file);
        let written = dump::dump(store, &rooms, &mut out, &bar).await;
        bar.finish();
        let summary = match written {
            Ok(summary) => summary,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(failed("dump")(error));
            }
        };
        // Flushed and synced before the rename: a file under the final name is
        // whole, also after a power loss.
        let cannot_write = |error: std::io::Error| {
            let _ = std::fs::remove_file(&partial);
            Failure::new(
                exit::FAILED,
                format!("cannot write {}: {error}", partial.display()),
            )
        };
        out.into_inner()
            .map_err(|error| cannot_write(error.into_error()))?
            .sync_all()
            .map_err(cannot_write)?;
        std::fs::rename(&partial, &self.output).map_err(|error| {
            Failure::new(
                exit::FAILED,
                format!("cannot rename {}: {error}", partial.display()),
            )
        })?;
        Ok((summary, store.backend().to_owned()))
    }
}

impl RestoreDumpArgs {
    pub async fn run(&self, json: bool) -> Result<(), Failure> {
        let file = File::open(&self.input).map_err(|error| {
            Failure::new(
                exit::FAILED,
                format!("cannot read {}: {error}", self.input.display()),
            )
        })?;
        let mut input = BufReader::new(file);
        let header = dump::read_header(&mut input).map_err(failed("restore"))?;
        let held = hold(&self.store, "restore-dump").await?;
        let bar = Bar::new(None);
        let restored = dump::restore(held.store.as_ref(), &mut input, self.force, &bar).await;
        bar.finish();
        let target = held.store.backend();
        release(held).await;
        let summary = restored.map_err(failed("restore"))?;
        finish(
            json,
            &Report {
                file: &self.input,
                source: &header.source,
                target,
                summary: &summary,
            },
            format!(
                "restored {} into the {target} store, as dumped from the {} store at {}",
                totals(&summary),
                header.source,
                header.created_at
            ),
        )
    }
}

/// Opens the store and holds it as a server would, or says who holds it.
async fn hold(store: &StoreArgs, command: &str) -> Result<HeldStore, Failure> {
    let mut config = Config::new(store.store_config());
    config.node_id = Some(format!("coedit-{command}-{}", std::process::id()));
    HeldStore::open(&config).await.map_err(|error| {
        let reason = match error {
            ServeError::StoreInUse(reason) | ServeError::StoreUnreachable(reason) => reason,
            other => other.to_string(),
        };
        Failure::new(exit::FAILED, format!("cannot {command}: {reason}"))
    })
}

async fn release(held: HeldStore) {
    if let Err(error) = held.release().await {
        tracing::warn!(%error, "store close failed");
    }
}

fn failed(command: &'static str) -> impl Fn(DumpError) -> Failure {
    move |error| Failure::new(exit::FAILED, format!("cannot {command}: {error}"))
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn totals(summary: &Summary) -> String {
    format!(
        "{} rooms ({} log entries, {} of documents)",
        summary.rooms,
        summary.entries,
        human_size(summary.bytes)
    )
}

fn finish(json: bool, report: &Report<'_>, line: String) -> Result<(), Failure> {
    if json {
        let value = serde_json::to_value(report)
            .map_err(|error| Failure::new(exit::FAILED, format!("cannot encode JSON: {error}")))?;
        print_json(&value)
    } else {
        print(line)
    }
}

/// Progress on stderr, drawn only when it is a terminal (indicatif hides it
/// otherwise): rooms done (of all, for a dump), entries and bytes so far.
struct Bar(ProgressBar);

impl Bar {
    fn new(rooms: Option<u64>) -> Self {
        let bar = match rooms {
            Some(rooms) => ProgressBar::new(rooms).with_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} rooms  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {pos} rooms  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn room(&self, room_id: &str) {
        self.0.set_message(room_id.to_owned());
    }

    fn advanced(&self, summary: &Summary) {
        self.0.set_position(summary.rooms);
        self.0.set_message(format!(
            "{} entries, {}",
            summary.entries,
            human_size(summary.bytes)
        ));
    }
}
