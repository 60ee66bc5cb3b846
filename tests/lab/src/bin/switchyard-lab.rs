//! `switchyard-lab`: run lab clusters in their own process, so a coordinator
//! (demo, crash tests) can be killed and restarted while the stores live on.
//!
//! ```text
//! switchyard-lab postgres up --dir DIR --regions east,west,south
//! switchyard-lab mongodb up --dir DIR --regions east,west,south
//! switchyard-lab cosmosdb up --dir DIR --regions east,west,south
//! switchyard-lab eventstoredb up --dir DIR --regions east,west,south
//! switchyard-lab redis up --dir DIR --regions east,west,south
//! switchyard-lab combined --dir DIR --regions east,west,south
//! switchyard-lab etcd up --dir DIR [--members 3]
//! switchyard-lab consul up --dir DIR
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
    /// The MongoDB replica-set simulator (wire protocol on loopback ports).
    Mongodb {
        #[command(subcommand)]
        cmd: mongodb_cmd::MongoCmd,
    },
    /// The Cosmos DB simulator (ARM, token endpoint, data plane over HTTPS).
    Cosmosdb {
        #[command(subcommand)]
        cmd: cosmosdb_cmd::CosmosCmd,
    },
    /// The EventStoreDB cluster simulator (HTTP/1.1 and h2c gRPC on one
    /// loopback port per node).
    Eventstoredb {
        #[command(subcommand)]
        cmd: esdb_cmd::EsdbCmd,
    },
    /// Real Redis replication with one Sentinel per region.
    Redis {
        #[command(subcommand)]
        cmd: redis_cmd::RedisCmd,
    },
    /// Real etcd (1 or 3 members) for the coordination backend.
    Etcd {
        #[command(subcommand)]
        cmd: etcd_cmd::EtcdCmd,
    },
    /// The Consul simulator (KV, sessions, transactions, blocking queries).
    Consul {
        #[command(subcommand)]
        cmd: consul_cmd::ConsulCmd,
    },
    /// All at once, as the demo runs them: a real PostgreSQL cluster
    /// (`orders`), the MongoDB simulator (`catalog`), the Cosmos DB
    /// simulator (`profiles`) and the EventStoreDB simulator (`ledger`), all
    /// depending on `orders`, and real Redis with Sentinel (`sessions`), over
    /// the same regions, in one topology file.
    Combined {
        /// Directory for `topology.toml` and the PostgreSQL data.
        #[arg(long)]
        dir: PathBuf,
        /// Comma-separated region names; primaries start in the first, the
        /// last hosts MongoDB's arbiter and a PostgreSQL standby.
        #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
        regions: Vec<String>,
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
        /// Give the members hook `extra.controldata`: the controller's
        /// deferred restart of the fenced old primary.
        #[arg(long)]
        deferred_fence: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let shutdown = shutdown_signal()?;
    match cli.store {
        Store::Mongodb { cmd } => mongodb_cmd::run(cmd, shutdown).await?,
        Store::Cosmosdb { cmd } => cosmosdb_cmd::run(cmd, shutdown).await?,
        Store::Eventstoredb { cmd } => esdb_cmd::run(cmd, shutdown).await?,
        Store::Redis { cmd } => redis_cmd::run(cmd, shutdown).await?,
        Store::Etcd { cmd } => etcd_cmd::run(cmd, shutdown).await?,
        Store::Consul { cmd } => consul_cmd::run(cmd, shutdown).await?,
        Store::Combined { dir, regions } => combined(dir, regions, shutdown).await?,
        Store::Postgres {
            cmd:
                PgCmd::Up {
                    dir,
                    regions,
                    store,
                    members_per_region,
                    max_lag_bytes,
                    deferred_fence,
                },
        } => {
            std::fs::create_dir_all(&dir)?;
            let mut spec = PgClusterSpec::new(regions);
            spec.store = store;
            spec.members_per_region = members_per_region;
            spec.max_lag_bytes = Some(max_lag_bytes);
            spec.deferred_fence = deferred_fence;
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
            shutdown.await?;
            drop(cluster);
            eprintln!("switchyard-lab: cluster stopped");
        }
    }
    Ok(())
}

/// Starts both stores and writes one topology in which `catalog` (MongoDB)
/// is promoted only after `orders` (PostgreSQL) passed its checkpoint.
async fn combined(
    dir: PathBuf,
    regions: Vec<String>,
    shutdown: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};
    std::fs::create_dir_all(&dir)?;
    let mut spec = PgClusterSpec::new(regions.clone());
    spec.store = "orders".into();
    spec.max_lag_bytes = Some(8 * 1024 * 1024);
    spec.base_dir = Some(dir.clone());
    let pg = PgCluster::start(spec).await?;
    let mut mspec = MongoSimSpec::for_regions("rs0", "catalog", &regions, 2)?;
    mspec.heartbeat_interval = std::time::Duration::from_millis(100);
    mspec.election_timeout = std::time::Duration::from_millis(1000);
    let mongo = MongoSim::start(mspec).await?;
    mongo
        .wait_for_primary_in(&regions[0], std::time::Duration::from_secs(30))
        .await;
    let names: Vec<&str> = regions.iter().map(String::as_str).collect();
    let cosmos = switchyard_lab::cosmossim::CosmosSim::start(
        switchyard_lab::cosmossim::CosmosSimSpec::for_regions("profiles", &names),
    )
    .await?;
    let esdb = switchyard_lab::esdbsim::EsdbSim::start(
        switchyard_lab::esdbsim::EsdbSimSpec::for_regions("ledger", &regions),
    )
    .await?;
    esdb.wait_for_leader_in(&regions[0], std::time::Duration::from_secs(30))
        .await;
    let mut topology = pg.topology().clone();
    topology.name = "combined-lab".into();
    let mut catalog = mongo.store();
    catalog.depends_on = vec!["orders".into()];
    topology.stores.push(catalog);
    // A Cosmos DB account (ARM + data plane simulator), also after orders.
    let mut profiles = cosmos.store(&dir).await?;
    profiles.depends_on = vec!["orders".into()];
    topology.stores.push(profiles);
    // An EventStoreDB cluster (simulator), also after orders.
    let mut ledger = esdb.store();
    ledger.depends_on = vec!["orders".into()];
    topology.stores.push(ledger);
    // Real Redis with one Sentinel per region; independent of orders.
    let mut rspec = switchyard_lab::redis::RedisClusterSpec::new(regions.clone());
    rspec.store = "sessions".into();
    rspec.base_dir = Some(dir.clone());
    let redis = switchyard_lab::redis::RedisCluster::start(rspec).await?;
    topology.stores.push(redis.store().clone());
    let path = dir.join("topology.toml");
    std::fs::write(&path, topology.to_toml())?;
    println!(
        "{}",
        serde_json::json!({"ready": true, "topology": path, "stores": ["orders", "catalog", "profiles", "ledger", "sessions"]})
    );
    shutdown.await?;
    drop(redis);
    drop(esdb);
    drop(cosmos);
    drop(mongo);
    drop(pg);
    eprintln!("switchyard-lab: combined lab stopped");
    Ok(())
}

/// Registers the SIGTERM/SIGINT handlers at once and returns a future that
/// resolves on either. Registering before "ready" is printed matters: a
/// caller that signals right after reading it would otherwise kill the
/// process with the default action, skipping teardown.
fn shutdown_signal() -> Result<impl std::future::Future<Output = Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

/// Runs until `shutdown`, meanwhile reading fault commands from stdin, one
/// per line, and answering each with one JSON line `{"ok":true,"reply":…}`
/// (`{"ok":true}` for a command with no reply) or `{"ok":false,"error":…}`;
/// then stops reading and drops `held`, what the commands act on, before
/// saying that `what` stopped.
async fn serve_commands<T, Fut>(
    held: std::sync::Arc<T>,
    shutdown: impl std::future::Future<Output = Result<()>>,
    control: impl Fn(std::sync::Arc<T>, String) -> Fut + Send + 'static,
    what: &str,
) -> Result<()>
where
    T: Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<String>>> + Send,
{
    let ctl = held.clone();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            let answer = match control(ctl.clone(), line).await {
                Ok(Some(reply)) => serde_json::json!({"ok": true, "reply": reply}),
                Ok(None) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            };
            println!("{answer}");
        }
    });
    shutdown.await?;
    reader.abort();
    let _ = reader.await;
    drop(held);
    eprintln!("switchyard-lab: {what} stopped");
    Ok(())
}

/// `switchyard-lab mongodb up`, kept apart from the PostgreSQL commands.
mod mongodb_cmd {
    use anyhow::Result;
    use clap::Subcommand;
    use std::path::PathBuf;
    use std::time::Duration;
    use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};

    #[derive(Subcommand)]
    pub enum MongoCmd {
        /// Start the simulated replica set; write DIR/FILE (a topology with
        /// this one store); run until SIGTERM/ctrl-c. Reads fault commands
        /// from stdin: cut/heal REGION, kill/revive MEMBER, lag MEMBER MS.
        Up {
            /// Directory for the topology file.
            #[arg(long)]
            dir: PathBuf,
            /// Regions; with three or more the last holds only an arbiter.
            #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
            regions: Vec<String>,
            /// Store name in the topology.
            #[arg(long, default_value = "orders")]
            store: String,
            /// Replica set name.
            #[arg(long, default_value = "rs0")]
            replica_set: String,
            /// Data-bearing members per data region.
            #[arg(long, default_value_t = 2)]
            members_per_region: usize,
            /// settings.heartbeat_interval_ms of the simulated set.
            #[arg(long, default_value_t = 100)]
            heartbeat_ms: u64,
            /// settings.election_timeout_ms of the simulated set.
            #[arg(long, default_value_t = 1000)]
            election_timeout_ms: u64,
            /// File name inside DIR.
            #[arg(long, default_value = "topology.toml")]
            file: String,
        },
    }

    pub async fn run(
        cmd: MongoCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let MongoCmd::Up {
            dir,
            regions,
            store,
            replica_set,
            members_per_region,
            heartbeat_ms,
            election_timeout_ms,
            file,
        } = cmd;
        std::fs::create_dir_all(&dir)?;
        let mut spec =
            MongoSimSpec::for_regions(&replica_set, &store, &regions, members_per_region)?;
        spec.heartbeat_interval = Duration::from_millis(heartbeat_ms);
        spec.election_timeout = Duration::from_millis(election_timeout_ms);
        let sim = MongoSim::start(spec).await?;
        let primary = sim
            .wait_for_primary_in(
                &regions[0],
                Duration::from_millis(election_timeout_ms * 30 + 5000),
            )
            .await;
        let path = dir.join(file);
        std::fs::write(&path, sim.topology("mongodb-lab").to_toml())?;
        let members: Vec<_> = sim
            .spec()
            .members
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "region": m.region, "host": sim.host(&m.name)}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"ready": true, "topology": path, "uri": sim.uri(), "primary": primary, "members": members})
        );
        // Fault injection for demos: one command per stdin line.
        super::serve_commands(
            std::sync::Arc::new(sim),
            shutdown,
            |sim, line| async move { sim.control(&line).map(Some) },
            "mongodb simulator",
        )
        .await
    }
}

/// `switchyard-lab cosmosdb up`.
mod cosmosdb_cmd {
    use anyhow::Result;
    use clap::Subcommand;
    use std::path::PathBuf;
    use std::time::Duration;
    use switchyard_lab::cosmossim::{Consistency, CosmosSim, CosmosSimSpec};

    #[derive(Subcommand)]
    pub enum CosmosCmd {
        /// Start the simulated account; write DIR/topology.toml (secrets in
        /// files beside it, mode 0600); run until SIGTERM/ctrl-c. Reads
        /// fault commands from stdin: outage/restore REGION, lag REGION MS,
        /// slow MS, throttle N [STATUS], hold, release, ops, state.
        Up {
            /// Directory for the topology file, CA and secret files.
            #[arg(long)]
            dir: PathBuf,
            /// Regions in failover priority order; the first takes writes.
            #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
            regions: Vec<String>,
            /// Store name in the topology.
            #[arg(long, default_value = "catalog")]
            store: String,
            /// Consistency level (Strong, BoundedStaleness, Session, ConsistentPrefix, Eventual).
            #[arg(long, default_value = "Session")]
            consistency: String,
            /// Multi-region writes.
            #[arg(long)]
            multi_write: bool,
            /// Duration of every ARM operation, in milliseconds.
            #[arg(long, default_value_t = 1500)]
            op_ms: u64,
            /// Address to listen on; 0.0.0.0 in a container.
            #[arg(long, default_value = "127.0.0.1")]
            listen: std::net::IpAddr,
            /// Host name the endpoints' URLs and the TLS certificate carry
            /// (required when --listen is 0.0.0.0 or ::).
            #[arg(long)]
            advertise_host: Option<String>,
            /// Fixed ports: ARM on PORT, the global endpoint on PORT+1, the
            /// regional endpoints from PORT+2 in region order (default: free ports).
            #[arg(long, value_name = "PORT")]
            base_port: Option<u16>,
        },
    }

    pub async fn run(
        cmd: CosmosCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let CosmosCmd::Up {
            dir,
            regions,
            store,
            consistency,
            multi_write,
            op_ms,
            listen,
            advertise_host,
            base_port,
        } = cmd;
        std::fs::create_dir_all(&dir)?;
        let names: Vec<&str> = regions.iter().map(String::as_str).collect();
        let mut spec = CosmosSimSpec::for_regions(&store, &names);
        spec.multi_write = multi_write;
        spec.op_duration = Duration::from_millis(op_ms);
        spec.listen = listen;
        spec.advertise_host = advertise_host;
        spec.base_port = base_port;
        spec.consistency = Consistency {
            level: consistency,
            ..Consistency::default()
        };
        let sim = CosmosSim::start(spec).await?;
        let path = dir.join("topology.toml");
        std::fs::write(&path, sim.topology("cosmosdb-lab", &dir).await?.to_toml())?;
        println!(
            "{}",
            serde_json::json!({
                "ready": true,
                "topology": path,
                "arm_endpoint": sim.arm_endpoint(),
                "document_endpoint": sim.document_endpoint(),
                "key": sim.key(),
                "account": sim.account_id(),
                "ca_file": dir.join(format!("{store}-ca.pem")),
            })
        );
        super::serve_commands(
            std::sync::Arc::new(sim),
            shutdown,
            |sim, line| async move { sim.control(&line).await.map(Some) },
            "cosmosdb simulator",
        )
        .await
    }
}

/// `switchyard-lab eventstoredb up`.
mod esdb_cmd {
    use anyhow::{Context, Result};
    use clap::Subcommand;
    use std::path::PathBuf;
    use std::time::Duration;
    use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};

    #[derive(Subcommand)]
    pub enum EsdbCmd {
        /// Start the simulated cluster (one node per region); write
        /// DIR/topology.toml; run until SIGTERM/ctrl-c. Reads fault commands
        /// from stdin: cut/heal REGION, kill/revive/restart NODE, lag NODE MS,
        /// leader, describe.
        Up {
            /// Directory for the topology file.
            #[arg(long)]
            dir: PathBuf,
            /// Regions; the first node's priority is 1, so it leads first.
            #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
            regions: Vec<String>,
            /// Store name in the topology.
            #[arg(long, default_value = "ledger")]
            store: String,
            /// File name inside DIR.
            #[arg(long, default_value = "topology.toml")]
            file: String,
        },
    }

    pub async fn run(
        cmd: EsdbCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let EsdbCmd::Up {
            dir,
            regions,
            store,
            file,
        } = cmd;
        std::fs::create_dir_all(&dir)?;
        let sim = EsdbSim::start(EsdbSimSpec::for_regions(&store, &regions)).await?;
        let leader = sim
            .wait_for_leader_in(&regions[0], Duration::from_secs(30))
            .await
            .context("no leader elected within 30 s")?;
        let path = dir.join(file);
        std::fs::write(&path, sim.topology("eventstoredb-lab").to_toml())?;
        let members: Vec<_> = sim
            .spec()
            .nodes
            .iter()
            .map(|n| serde_json::json!({"name": n.name, "region": n.region, "endpoint": sim.endpoint(&n.name)}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"ready": true, "topology": path, "leader": leader, "connection_string": sim.connection_string(), "members": members})
        );
        super::serve_commands(
            std::sync::Arc::new(sim),
            shutdown,
            |sim, line| async move { sim.control(&line).map(Some) },
            "eventstoredb simulator",
        )
        .await
    }
}

/// `switchyard-lab redis up`.
mod redis_cmd {
    use anyhow::Result;
    use clap::Subcommand;
    use std::path::PathBuf;
    use switchyard_lab::redis::{RedisCluster, RedisClusterSpec};

    #[derive(Subcommand)]
    pub enum RedisCmd {
        /// Start a master, replicas and Sentinels (one per region); write
        /// DIR/FILE (a topology with this one store); run until
        /// SIGTERM/ctrl-c. Reads fault commands from stdin: kill/restart MEMBER.
        Up {
            /// Directory for the topology file and the servers (`DIR/<store>/`).
            #[arg(long)]
            dir: PathBuf,
            /// Comma-separated region names; the master starts in the first.
            #[arg(long, value_delimiter = ',', default_value = "east,west,south")]
            regions: Vec<String>,
            /// Store name in the topology.
            #[arg(long, default_value = "cache")]
            store: String,
            /// Data members per region.
            #[arg(long, default_value_t = 1)]
            members_per_region: usize,
            /// Without Sentinels (Switchyard alone fails the store over).
            #[arg(long)]
            no_sentinels: bool,
            /// File name inside DIR.
            #[arg(long, default_value = "topology.toml")]
            file: String,
        },
    }

    pub async fn run(
        cmd: RedisCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let RedisCmd::Up {
            dir,
            regions,
            store,
            members_per_region,
            no_sentinels,
            file,
        } = cmd;
        std::fs::create_dir_all(&dir)?;
        let mut spec = RedisClusterSpec::new(regions);
        spec.store = store;
        spec.members_per_region = members_per_region;
        spec.sentinels = !no_sentinels;
        spec.base_dir = Some(dir.clone());
        let cluster = std::sync::Arc::new(RedisCluster::start(spec).await?);
        let path = dir.join(file);
        cluster.write_topology(&path)?;
        let members: Vec<_> = cluster
            .nodes()
            .iter()
            .map(|n| {
                serde_json::json!({"name": n.name, "region": n.region, "port": n.port,
                    "sentinel": n.sentinel, "run_id": cluster.run_id(&n.name)})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"ready": true, "topology": path, "members": members})
        );
        super::serve_commands(
            cluster,
            shutdown,
            |ctl, line| async move {
                match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["kill", m] => ctl.kill(m).map(|()| None),
                    ["restart", m] => ctl.restart(m).await.map(|()| None),
                    _ => Err(anyhow::anyhow!(
                        "unknown command {line:?} (kill/restart MEMBER)"
                    )),
                }
            },
            "redis cluster",
        )
        .await
    }
}

/// `switchyard-lab etcd up`.
mod etcd_cmd {
    use anyhow::Result;
    use clap::Subcommand;
    use std::path::PathBuf;
    use switchyard_lab::etcd::EtcdCluster;

    #[derive(Subcommand)]
    pub enum EtcdCmd {
        /// Start real etcd members on free ports under DIR/etcd/, print one
        /// JSON line `{"ready":true,"endpoints":[...],...}`, run until
        /// SIGTERM/ctrl-c. Reads fault commands from stdin: kill MEMBER.
        Up {
            /// Directory for the members' data and logs.
            #[arg(long)]
            dir: PathBuf,
            /// Members: 1, or 3 for a cluster that survives losing one.
            #[arg(long, default_value_t = 1)]
            members: usize,
            /// Address to listen on (a veth end for partition tests).
            #[arg(long, default_value = "127.0.0.1")]
            host: String,
        },
    }

    pub async fn run(
        cmd: EtcdCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let EtcdCmd::Up { dir, members, host } = cmd;
        std::fs::create_dir_all(&dir)?;
        let cluster = std::sync::Arc::new(EtcdCluster::start_on(members, Some(&dir), &host).await?);
        let ms: Vec<_> = cluster
            .members()
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "client": m.client, "peer": m.peer, "pid": cluster.pid(&m.name)}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"ready": true, "endpoints": cluster.endpoints(), "backend": format!("etcd://{}", cluster.endpoints().join(",")), "members": ms})
        );
        super::serve_commands(
            cluster,
            shutdown,
            |ctl, line| async move {
                match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["kill", m] => ctl.kill(m).map(|()| Some(format!("killed {m}"))),
                    _ => Err(anyhow::anyhow!("unknown command {line:?} (kill MEMBER)")),
                }
            },
            "etcd",
        )
        .await
    }
}

/// `switchyard-lab consul up`.
mod consul_cmd {
    use anyhow::Result;
    use clap::Subcommand;
    use std::path::PathBuf;
    use switchyard_lab::consulsim::ConsulSim;

    #[derive(Subcommand)]
    pub enum ConsulCmd {
        /// Start the Consul simulator on a free port, write DIR/consul.json,
        /// print one JSON line `{"ready":true,"address":"HOST:PORT",...}`,
        /// run until SIGTERM/ctrl-c.
        Up {
            /// Directory for `consul.json` (the address, for scripts).
            #[arg(long)]
            dir: PathBuf,
            /// Address to listen on (a veth end for partition tests).
            #[arg(long, default_value = "127.0.0.1")]
            host: String,
        },
    }

    pub async fn run(
        cmd: ConsulCmd,
        shutdown: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let ConsulCmd::Up { dir, host } = cmd;
        std::fs::create_dir_all(&dir)?;
        let sim = ConsulSim::start(&host).await?;
        let line = serde_json::json!({"ready": true, "address": sim.address(), "backend": format!("consul://{}", sim.address()), "pid": std::process::id()});
        std::fs::write(dir.join("consul.json"), format!("{line}\n"))?;
        println!("{line}");
        shutdown.await?;
        drop(sim);
        let _ = std::fs::remove_file(dir.join("consul.json"));
        eprintln!("switchyard-lab: consul simulator stopped");
        Ok(())
    }
}
