//! One writer per MongoDB database: a lease document that the serving node renews
//! while it runs, so a second single-node `coedit serve` on the same database
//! refuses to start instead of numbering the same rooms' logs a second time.
//!
//! The lease is `{_id: "writer", node_id, instance, pid, renewed_at, expires_at}`
//! in the `coedit_leases` collection, `instance` drawn at random by each process.
//! A node takes it when it is free or its own. Anyone else watches the lease: it
//! refuses as soon as it sees the holder renew it, and takes it over once it has
//! seen no renewal for a whole TTL by its own clock (the times in the lease are the
//! holder's clock, and machines' clocks differ). A holder under the same node id is
//! most likely this server before a crash, so it is watched for two renewals only;
//! but it is watched: two live servers given one `--node-id` (a fixed one in a
//! deployment's settings) both took the lease at once, and both wrote.
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
/// How long a holder under the same node id must be silent to be taken for this
/// server before a restart: two of its renewals.
const SAME_NAME_SILENCE: Duration = Duration::from_secs(2 * RENEW_EVERY.as_secs());
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
    /// This process's mark on the lease (the node id is shared by the nodes of a
    /// cluster, and may be by two servers configured alike).
    instance: String,
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
        let owner = Owner {
            node_id: node_id.to_owned(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            shared,
        };
        let mut watching: Option<(Option<DateTime>, tokio::time::Instant)> = None;
        let deadline = tokio::time::Instant::now() + LEASE_TTL + RENEW_EVERY * 2;
        loop {
            let Some(holder) = try_take(&collection, &owner).await? else {
                break;
            };
            let renewed = holder.get_datetime("renewed_at").ok().copied();
            let holder_id = holder.get_str("node_id").unwrap_or("unknown").to_owned();
            let silence = if holder_id == node_id {
                SAME_NAME_SILENCE
            } else {
                LEASE_TTL
            };
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
                Some((seen, since)) if since.elapsed() >= silence => {
                    // Silent long enough: taken if it is still the lease watched.
                    if take_over(&collection, &owner, &holder_id, seen).await? {
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
            owner.clone(),
            stop.clone(),
            on_lost.clone(),
        ));
        Ok(Self {
            collection,
            node_id: node_id.to_owned(),
            instance: owner.instance,
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
            self.collection.delete_one(
                doc! {"_id": WRITER, "node_id": &self.node_id, "instance": &self.instance},
            ),
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

/// Who holds a lease: a process, or (`shared`) every node under one name.
#[derive(Debug, Clone)]
struct Owner {
    node_id: String,
    instance: String,
    shared: bool,
}

impl Owner {
    /// The lease document as this owner holds it.
    fn held(&self) -> Document {
        if self.shared {
            doc! {"_id": WRITER, "node_id": &self.node_id}
        } else {
            doc! {"_id": WRITER, "node_id": &self.node_id, "instance": &self.instance}
        }
    }
}

/// One attempt: `None` when the lease is now ours (it was free, ours already, or
/// stale by any clock), else the holder's document.
async fn try_take(
    collection: &Collection<Document>,
    owner: &Owner,
) -> Result<Option<Document>, StoreError> {
    let now = DateTime::now();
    let stale = DateTime::from_millis(now.timestamp_millis() - STALE_AFTER.as_millis() as i64);
    let mut ours = owner.held();
    ours.remove("_id");
    let taken = collection
        .update_one(
            doc! {"_id": WRITER, "$or": [
                ours,
                {"expires_at": {"$lt": stale}},
            ]},
            lease_fields(owner, now),
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
    owner: &Owner,
    holder: &str,
    seen: Option<DateTime>,
) -> Result<bool, StoreError> {
    let taken = collection
        .update_one(
            doc! {"_id": WRITER, "node_id": holder, "renewed_at": seen},
            lease_fields(owner, DateTime::now()),
        )
        .await
        .map_err(|error| StoreError::Unavailable(describe_error(&error)))?;
    Ok(taken.matched_count > 0)
}

fn lease_fields(owner: &Owner, now: DateTime) -> Document {
    let expires = DateTime::from_millis(now.timestamp_millis() + LEASE_TTL.as_millis() as i64);
    doc! {"$set": {
        "node_id": &owner.node_id,
        "instance": &owner.instance,
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
    owner: Owner,
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
            .update_one(owner.held(), lease_fields(&owner, DateTime::now()))
            .await;
        match renewed {
            // Gone: expired and taken, or given up by a holder of a shared lease
            // (a node of an earlier version deleted it on leaving). Taken again if
            // it is free.
            Ok(result) if result.matched_count == 0 => match try_take(&collection, &owner).await {
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
            },
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %describe_error(&error), "cannot renew the store lease");
            }
        }
    }
}
