//! `switchyard-lab`: run lab clusters in their own process, so a coordinator
//! (demo, crash tests) can be killed and restarted while the stores live on.
//!
//! ```text
//! switchyard-lab postgres up --dir DIR --regions east,west,south
//! ```
//! starts the cluster, writes `DIR/topology.toml`, prints one JSON line
//! `{"ready":true,...}` and stays in the foreground until SIGTERM or ctrl-c,
//! then stops every server and removes the cluster's data.
//!
//! Subcommands are grouped by store (`postgres ...`); other stores add a
//! variant to [`Store`].

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};

#[derive(Parser)]
#[command(name = "switchyard-lab", about = "Run Switchyard lab clusters")]
struct Cli {
    #[command(subcommand)]
    store: Store,
}

/// One subcommand group per store kind.
#[derive(Subcommand)]
enum Store {
    /// Real PostgreSQL streaming-replication clusters.
    Postgres {
        #[command(subcommand)]
        cmd: PgCmd,
    },
}

#[derive(Subcommand)]
enum PgCmd {
    /// Start a primary and streaming standbys; write DIR/topology.toml; run
    /// until SIGTERM/ctrl-c.
    Up {
        /// Directory for the topology file and the cluster (`DIR/<store>/`).
        #[arg(long)]
        dir: PathBuf,
        /// Comma-separated region names; the primary starts in the first.
        #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
        regions: Vec<String>,
        /// Store name in the topology.
        #[arg(long, default_value = "pg")]
        store: String,
        /// Data-bearing members per region.
        #[arg(long, default_value_t = 1)]
        members_per_region: usize,
        /// The store's max_lag_bytes.
        #[arg(long, default_value_t = 8 * 1024 * 1024)]
        max_lag_bytes: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().store {
        Store::Postgres {
            cmd:
                PgCmd::Up {
                    dir,
                    regions,
                    store,
                    members_per_region,
                    max_lag_bytes,
                },
        } => {
            std::fs::create_dir_all(&dir)?;
            let mut spec = PgClusterSpec::new(regions);
            spec.store = store;
            spec.members_per_region = members_per_region;
            spec.max_lag_bytes = Some(max_lag_bytes);
            spec.base_dir = Some(dir.clone());
            let cluster = PgCluster::start(spec).await?;
            let topo = dir.join("topology.toml");
            cluster.write_topology(&topo)?;
            let members: Vec<_> = cluster
                .members()
                .iter()
                .map(|m| serde_json::json!({"name": m.name, "region": m.region, "port": m.port}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"ready": true, "topology": topo, "members": members})
            );
            wait_for_shutdown().await?;
            drop(cluster);
            eprintln!("switchyard-lab: cluster stopped");
        }
    }
    Ok(())
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
