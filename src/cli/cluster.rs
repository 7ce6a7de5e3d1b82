//! `coedit cluster`: the live nodes of a server's cluster, with what each serves.

use clap::Args;

use super::client_args::ClientArgs;
use super::output::{self, print_json};
use super::Failure;
use crate::api::ClusterView;

#[derive(Debug, Args)]
pub struct ClusterArgs {}

impl ClusterArgs {
    pub async fn run(self, options: &ClientArgs) -> Result<(), Failure> {
        let answer = options.client()?.cluster().await?;
        if options.json {
            return print_json(&answer.raw);
        }
        print_nodes(&answer.value)
    }
}

fn print_nodes(view: &ClusterView) -> Result<(), Failure> {
    let mut table = output::table([
        "NODE",
        "ADDRESS",
        "ROOMS",
        "CONNECTIONS",
        "LAST HEARTBEAT",
        "STARTED",
    ]);
    for node in &view.nodes {
        let name = if node.this_node {
            format!("{} (this)", node.node_id)
        } else {
            node.node_id.clone()
        };
        table.add_row(vec![
            name,
            node.address.clone(),
            node.rooms.to_string(),
            node.connections.to_string(),
            output::local_time(&node.last_heartbeat),
            output::local_time(&node.started),
        ]);
    }
    output::align_right(&mut table, &[2, 3]);
    output::print_table(table)
}
