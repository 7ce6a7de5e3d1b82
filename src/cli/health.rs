//! `coedit health`: whether the server is up and its store (and webhook
//! deliveries, when configured) keeping up, as an exit code a readiness probe can
//! use.

use clap::Args;

use super::client_args::ClientArgs;
use super::output::{finish, print, print_json};
use super::{exit, Failure};
use crate::api::Health;

#[derive(Debug, Args)]
pub struct HealthArgs {}

impl HealthArgs {
    pub async fn run(self, client: &ClientArgs) -> Result<(), Failure> {
        let answer = client.client()?.health().await?;
        let written = if client.json {
            print_json(&answer.raw)
        } else {
            print(summary(&answer.value))
        };
        finish(written, verdict(answer.value, &client.server))
    }
}

/// Exit 0 when healthy; otherwise exit 1 with every reason the server gave.
fn verdict(health: Health, server: &str) -> Result<(), Failure> {
    if health.status == "healthy" {
        return Ok(());
    }
    let reason = [
        health.store.and_then(|store| store.reason),
        health.cluster.and_then(|cluster| cluster.reason),
        health
            .webhooks
            .and_then(|webhooks| webhooks.reason)
            .map(|reason| format!("webhooks failing: {reason}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ");
    let reason = if reason.is_empty() {
        "no reason given".to_owned()
    } else {
        reason
    };
    Err(Failure::new(
        exit::FAILED,
        format!("{server} is {}: {reason}", health.status),
    ))
}

/// One line: `healthy (store sqlite healthy, backlog 0)`.
fn summary(health: &Health) -> String {
    let mut summary = match &health.store {
        Some(store) => format!(
            "{} (store {} {}, backlog {})",
            health.status, store.backend, store.state, store.backlog
        ),
        None => health.status.clone(),
    };
    if let Some(cluster) = &health.cluster {
        summary.push_str(&format!(
            "; cluster node {} {}, {} live nodes",
            cluster.node_id, cluster.state, cluster.live_nodes
        ));
    }
    summary
}
