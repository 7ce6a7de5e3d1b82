//! One writer per MongoDB database: a lease document that the serving node renews
//! while it runs, so a second single-node `coedit serve` on the same database
//! refuses to start instead of numbering the same rooms' logs a second time.
//!
//! The lease is `{_id: "writer", node_id, pid, renewed_at, expires_at}` in the
//! `coedit_leases` collection. A node takes it when it is free or already its own:
//! a node id is `host:port` by default, and a node that could bind that port on
//! that host is the only one alive under that name, so a server restarted after a
//! crash takes its lease back at once. Anyone else watches the lease: it refuses
//! as soon as it sees the holder renew it, and takes it over once it has seen no
//! renewal for a whole TTL by its own clock (the times in the lease are the
//! holder's clock, and machines' clocks differ).
//!
//! The nodes of a cluster hold the lease together, under one shared name: a node
//! that stops leaves it to the others (it is never deleted while one may still
//! renew it), and a holder that finds it gone takes it again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::mongo::describe_error;
use super::StoreError;

/// Collection of the lease document.
pub const LEASES: &str = "coedit_leases";
const WRITER: &str = "writer";
/// How long a lease outlives its last renewal: how long a crashed node on another
/// host or port keeps a successor waiting.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews: several renewals fit in one TTL, so a brief
/// database hiccup does not lose the lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// A lease expired for longer than this is stale whatever the clocks of the
/// servers that wrote and read it say: taken without watching its holder.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// MongoDB's duplicate-key error: the upsert met a lease held by someone else.
const DUPLICATE_KEY: i32 = 11000;

/// What a server does when another takes its lease: it must stop writing.
pub type OnLost = Arc<dyn Fn(&str) + Send + Sync>;

/// A held lease; renewed in the background until `release`.
pub struct WriterLease {
    collection: Collection<Document>,
    node_id: String,
    /// Held together with other nodes (a cluster's): never deleted on release.
    shared: bool,
    stop: CancellationToken,
    renewer: JoinHandle<()>,
    on_lost: Arc<Mutex<Option<OnLost>>>,
}

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    InUse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriterLease {
    /// Takes the lease of `database` for `node_id`, waiting at most one TTL for a
    /// silent holder's lease to run out. A `shared` lease is held by every node
    /// that names the same `node_id`.
    ///
    /// Whether a holder is silent is decided on this server's own clock, by
    /// watching its renewals: the lease's times come from the holder's clock,
    /// and a clock a few seconds ahead made a live lease look expired, so two
    /// servers wrote one database. Only a lease expired for longer than any
    /// plausible skew (`STALE_AFTER`) is taken without watching.
    pub async fn acquire(
        database: &Database,
        node_id: &str,
        shared: bool,
    ) -> Result<Self, LeaseError> {
        let collection: Collection<Document> = database.collection(LEASES);
        let mut watching: Option<(Option<DateTime>, tokio::time::Instant)> = None;
        let deadline = tokio::time::Instant::now() + LEASE_TTL + RENEW_EVERY * 2;
        loop {
            let Some(holder) = try_take(&collection, node_id).await? else {
                break;
            };
            let renewed = holder.get_datetime("renewed_at").ok().copied();
            let holder_id = holder.get_str("node_id").unwrap_or("unknown").to_owned();
            let in_use = || {
                let pid = holder
                    .get_i64("pid")
                    .map(|pid| format!(", pid {pid}"))
                    .unwrap_or_default();
                LeaseError::InUse(format!(
                    "MongoDB database {} is in use by another coedit server (node {holder_id}{pid}); \
                     stop it first, or give this one another --db-name",
                    database.name()
                ))
            };
            match watching {
                Some((seen, _)) if seen != renewed => return Err(in_use()),
                Some((seen, since)) if since.elapsed() >= LEASE_TTL => {
                    // Silent for a whole TTL: taken if it is still the lease watched.
                    if take_over(&collection, node_id, &holder_id, seen).await? {
                        break;
                    }
                    watching = None;
                    continue;
                }
                Some(_) => {}
                None => {
                    tracing::info!(holder = %holder_id, "waiting to see whether the previous server still renews its store lease");
                    watching = Some((renewed, tokio::time::Instant::now()));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(in_use());
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
        let stop = CancellationToken::new();
        let on_lost: Arc<Mutex<Option<OnLost>>> = Arc::default();
        let renewer = tokio::spawn(renew(
            collection.clone(),
            node_id.to_owned(),
            stop.clone(),
            on_lost.clone(),
        ));
        Ok(Self {
            collection,
            node_id: node_id.to_owned(),
            shared,
            stop,
            renewer,
            on_lost,
        })
    }

    /// Called with the reason if another server takes the lease while this one
    /// holds it (it could not renew it for a whole TTL): the caller stops
    /// writing, since two writers would each lose the other's updates.
    pub fn on_lost(&self, lost: OnLost) {
        if let Ok(mut slot) = self.on_lost.lock() {
            *slot = Some(lost);
        }
    }

    /// Stops renewing and gives the lease up, so a successor need not wait; a
    /// shared lease is left to the other holders (or to expire).
    pub async fn release(mut self) {
        self.stop.cancel();
        let _ = (&mut self.renewer).await;
        if self.shared {
            return;
        }
        let released = tokio::time::timeout(
            RENEW_EVERY,
            self.collection
                .delete_one(doc! {"_id": WRITER, "node_id": &self.node_id}),
        )
        .await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::debug!("store lease left to expire");
        }
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        // Dropped without `release` (a failed start): stop renewing, let it expire.
        self.stop.cancel();
    }
}

/// One attempt: `None` when the lease is now ours (it was free, ours already, or
/// stale by any clock), else the holder's document.
async fn try_take(
    collection: &Collection<Document>,
    node_id: &str,
) -> Result<Option<Document>, StoreError> {
    let now = DateTime::now();
    let stale = DateTime::from_millis(now.timestamp_millis() - STALE_AFTER.as_millis() as i64);
    let taken = collection
        .update_one(
            doc! {"_id": WRITER, "$or": [
                {"node_id": node_id},
                {"expires_at": {"$lt": stale}},
            ]},
            lease_fields(node_id, now),
        )
        .upsert(true)
        .await;
    match taken {
        Ok(_) => Ok(None),
        Err(error) if duplicate_key(&error) => {
            let holder = collection
                .find_one(doc! {"_id": WRITER})
                .await
                .map_err(|error| StoreError::Unavailable(describe_error(&error)))?;
            // Gone between the two calls: try again at once.
            Ok(Some(holder.unwrap_or_default()).filter(|holder| !holder.is_empty()))
        }
        Err(error) => Err(StoreError::Unavailable(describe_error(&error))),
    }
}

/// Takes the lease from `holder` if it is still as watched (renewed at `seen`).
async fn take_over(
    collection: &Collection<Document>,
    node_id: &str,
    holder: &str,
    seen: Option<DateTime>,
) -> Result<bool, StoreError> {
    let taken = collection
        .update_one(
            doc! {"_id": WRITER, "node_id": holder, "renewed_at": seen},
            lease_fields(node_id, DateTime::now()),
        )
        .await
        .map_err(|error| StoreError::Unavailable(describe_error(&error)))?;
    Ok(taken.matched_count > 0)
}

fn lease_fields(node_id: &str, now: DateTime) -> Document {
    let expires = DateTime::from_millis(now.timestamp_millis() + LEASE_TTL.as_millis() as i64);
    doc! {"$set": {
        "node_id": node_id,
        "pid": i64::from(std::process::id()),
        "renewed_at": now,
        "expires_at": expires,
    }}
}

fn duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

async fn renew(
    collection: Collection<Document>,
    node_id: String,
    stop: CancellationToken,
    on_lost: Arc<Mutex<Option<OnLost>>>,
) {
    let mut interval = tokio::time::interval(RENEW_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let renewed = collection
            .update_one(
                doc! {"_id": WRITER, "node_id": &node_id},
                lease_fields(&node_id, DateTime::now()),
            )
            .await;
        match renewed {
            // Gone: expired and taken, or given up by a holder of a shared lease
            // (a node of an earlier version deleted it on leaving). Taken again if
            // it is free.
            Ok(result) if result.matched_count == 0 => {
                match try_take(&collection, &node_id).await {
                    Ok(None) => tracing::debug!("store lease taken again"),
                    Ok(Some(holder)) => {
                        let reason = format!(
                        "another coedit server (node {}) took this MongoDB database's writer lease \
                         while this one could not renew it; this server writes nothing more to it",
                        holder.get_str("node_id").unwrap_or("unknown")
                    );
                        tracing::error!("{reason}");
                        let lost = on_lost.lock().ok().and_then(|slot| slot.clone());
                        if let Some(lost) = lost {
                            lost(&reason);
                        }
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "cannot renew the store lease"),
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %describe_error(&error), "cannot renew the store lease");
            }
        }
    }
}
