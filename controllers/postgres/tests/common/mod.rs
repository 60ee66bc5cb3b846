//! Shared test fixtures: a lab cluster with a controller, and the
//! conformance harness for it.
#![allow(dead_code)]

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use switchyard::conformance::{Harness, HarnessError};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};
use switchyard_postgres::PostgresController;
use tokio_postgres::Client;

pub struct PgFixture {
    pub cluster: PgCluster,
    /// The controller inside the standard layers, as the coordinator runs it.
    pub ctl: std::sync::Arc<dyn switchyard_controller::Controller>,
    /// The store as a topology declares it (what the conformance suite
    /// builds its own controller from).
    pub store: switchyard_topology::Store,
}

impl PgFixture {
    /// Primary + one standby per further region.
    pub async fn start(regions: &[&str]) -> Result<PgFixture> {
        Self::start_with(regions, &[]).await
    }

    /// [`PgFixture::start`] with one more standby in each of `extra`.
    pub async fn start_with(regions: &[&str], extra: &[&str]) -> Result<PgFixture> {
        // The controller's tests run the deferred restart (hook
        // `extra.controldata`); the coordinator's run the restart path.
        let mut spec = PgClusterSpec::new(regions.iter().copied());
        spec.deferred_fence = true;
        spec.extra_standbys = extra.iter().map(|r| r.to_string()).collect();
        let cluster = PgCluster::start(spec).await?;
        let ctl = switchyard_controller::layered(PostgresController::from_store(cluster.store())?);
        let store = cluster.store().clone();
        let f = PgFixture {
            cluster,
            ctl,
            store,
        };
        let c = f.primary_client().await?;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS conformance (k bigint PRIMARY KEY); \
             CREATE TABLE IF NOT EXISTS ballast (x text)",
        )
        .await?;
        Ok(f)
    }

    /// A session on whichever member currently accepts writes.
    pub async fn primary_client(&self) -> Result<Client> {
        for m in self.cluster.members() {
            let Ok(c) = self.cluster.connect(&m.name).await else {
                continue;
            };
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')",
                    &[],
                )
                .await;
            if let Ok(row) = row {
                let (rec, ro): (bool, String) = (row.get(0), row.get(1));
                if !rec && ro == "off" {
                    return Ok(c);
                }
            }
        }
        Err(anyhow!("no writable primary"))
    }
}

#[async_trait]
impl Harness for PgFixture {
    fn store(&self) -> switchyard_topology::Store {
        self.store.clone()
    }

    async fn write(&self, key: u64) -> Result<(), HarnessError> {
        let c = self.primary_client().await?;
        c.execute("INSERT INTO conformance (k) VALUES ($1)", &[&(key as i64)])
            .await?;
        Ok(())
    }

    async fn contains(&self, key: u64) -> Result<bool, HarnessError> {
        let c = self.primary_client().await?;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM conformance WHERE k = $1",
                &[&(key as i64)],
            )
            .await?
            .get(0);
        Ok(n == 1)
    }

    async fn kill_member(&self, member: &str) -> Result<(), HarnessError> {
        self.cluster.kill(member)?;
        Ok(())
    }

    async fn restart_member(&self, member: &str) -> Result<(), HarnessError> {
        self.cluster.start_member(member).await?;
        Ok(())
    }

    async fn induce_lag(&self, region: &str) -> Result<bool, HarnessError> {
        for m in self.cluster.members().iter().filter(|m| m.region == region) {
            let c = self.cluster.connect(&m.name).await?;
            let rec: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0);
            if rec {
                c.batch_execute("SELECT pg_wal_replay_pause()").await?;
            }
        }
        // More WAL than the store's bound, so replay falls behind it.
        let bound = self.cluster.store().max_lag_bytes.unwrap_or(8 << 20);
        let rows = (bound / 1000) * 3 / 2 + 1000;
        let c = self.primary_client().await?;
        c.batch_execute(&format!(
            "INSERT INTO ballast SELECT repeat('x', 1000) FROM generate_series(1, {rows})"
        ))
        .await
        .context("writing ballast")?;
        Ok(true)
    }

    async fn clear_lag(&self, region: &str) -> Result<(), HarnessError> {
        for m in self.cluster.members().iter().filter(|m| m.region == region) {
            let c = self.cluster.connect(&m.name).await?;
            let rec: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0);
            if rec {
                c.batch_execute("SELECT pg_wal_replay_resume()").await?;
            }
        }
        Ok(())
    }
}
