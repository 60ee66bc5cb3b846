//! The shared conformance suite against the EventStoreDB controller on the
//! cluster simulator.

mod common;

use async_trait::async_trait;
use common::{id_for, Lab};
use std::time::Duration;
use switchyard::conformance::{self, Harness, HarnessError, SuiteConfig};

const STREAM: &str = "conformance";

struct SimHarness {
    lab: Lab,
}

#[async_trait]
impl Harness for SimHarness {
    fn store(&self) -> switchyard_topology::Store {
        self.lab.store.clone()
    }

    async fn write(&self, key: u64) -> Result<(), HarnessError> {
        Ok(self.lab.append(STREAM, id_for(key), 16).await?)
    }

    async fn contains(&self, key: u64) -> Result<bool, HarnessError> {
        Ok(self.lab.read_ids(STREAM).await?.contains(&id_for(key)))
    }

    async fn kill_member(&self, member: &str) -> Result<(), HarnessError> {
        Ok(self.lab.sim.kill(member)?)
    }

    async fn restart_member(&self, member: &str) -> Result<(), HarnessError> {
        Ok(self.lab.sim.revive(member)?)
    }

    async fn induce_lag(&self, region: &str) -> Result<bool, HarnessError> {
        if !self.lab.sim.can_set_lag() {
            // SWITCHYARD_BACKING=compose: a real node has no delay to set.
            return Ok(false);
        }
        for n in self.lab.sim.spec().nodes.clone() {
            if n.region == region {
                self.lab.sim.set_lag(&n.name, Duration::from_secs(3600))?;
            }
        }
        // Lag is in bytes: write past the bound while the region stays behind.
        for _ in 0..8 {
            self.lab
                .append("filler", uuid::Uuid::new_v4(), 1024)
                .await?;
        }
        Ok(true)
    }

    async fn clear_lag(&self, region: &str) -> Result<(), HarnessError> {
        for n in self.lab.sim.spec().nodes.clone() {
            if n.region == region {
                self.lab.sim.set_lag(&n.name, Duration::ZERO)?;
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_the_simulator() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let h = SimHarness {
        // Two nodes in south: the `--candidate` case promotes the one the
        // controller would not have chosen.
        lab: Lab::start_with(4096, true).await,
    };
    let report = conformance::run_all_with(&h, &SuiteConfig::default()).await;
    println!("{report}");
    if report.failures().next().is_some() {
        println!("{}", h.lab.sim.describe());
    }
    report.assert_passed();
}
