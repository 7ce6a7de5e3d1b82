//! Which store a command works on: the flags `coedit serve` takes for it, shared
//! with the commands that work on a store directly (`dump`, `restore-dump`).

use std::path::PathBuf;

use clap::Args;

use crate::server::StoreConfig;

/// `--help` heading of the store flags.
pub const STORE: &str = "Store";

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store (used unless --mongo-url is given).
    #[arg(long, env = "COEDIT_DATA_DIR", default_value = "./coedit-data", help_heading = STORE)]
    pub data_dir: PathBuf,

    /// MongoDB connection string; when set, rooms are stored in MongoDB instead of
    /// the embedded store.
    #[arg(long, env = "MONGO_URL", hide_env_values = true, help_heading = STORE)]
    pub mongo_url: Option<String>,

    /// MongoDB database name.
    #[arg(long, env = "DB_NAME", default_value = "coedit", help_heading = STORE)]
    pub db_name: String,
}

impl StoreArgs {
    /// MongoDB when a URL is given, else the embedded store.
    pub fn store_config(&self) -> StoreConfig {
        match &self.mongo_url {
            Some(url) if !url.is_empty() => StoreConfig::Mongo {
                url: url.clone(),
                database: self.db_name.clone(),
            },
            _ => StoreConfig::Embedded {
                data_dir: self.data_dir.clone(),
            },
        }
    }
}
