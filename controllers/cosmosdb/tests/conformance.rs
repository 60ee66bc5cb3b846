//! The shared conformance suite against the Cosmos DB controller on the
//! ARM + data-plane simulator.

mod common;

use async_trait::async_trait;
use common::Lab;
use switchyard::conformance::{self, Harness, HarnessError, SuiteConfig};

struct SimHarness {
    lab: Lab,
}

impl SimHarness {
    fn region_of(&self, member: &str) -> Result<String, HarnessError> {
        self.lab
            .store
            .member(member)
            .map(|m| m.region.clone())
            .ok_or_else(|| format!("no member {member}").into())
    }
}

#[async_trait]
impl Harness for SimHarness {
    fn store(&self) -> switchyard_topology::Store {
        self.lab.store.clone()
    }

    async fn write(&self, key: u64) -> Result<(), HarnessError> {
        let region = self.lab.write_region().await;
        match self.lab.write_via(&region, &key.to_string()).await {
            201 => Ok(()),
            s => Err(format!("write of {key} through {region} answered {s}").into()),
        }
    }

    async fn contains(&self, key: u64) -> Result<bool, HarnessError> {
        Ok(self
            .lab
            .has(&self.lab.write_region().await, &key.to_string())
            .await)
    }

    async fn kill_member(&self, member: &str) -> Result<(), HarnessError> {
        self.lab
            .sim
            .control(&format!("outage {}", self.region_of(member)?))
            .await?;
        Ok(())
    }

    async fn restart_member(&self, member: &str) -> Result<(), HarnessError> {
        self.lab
            .sim
            .control(&format!("restore {}", self.region_of(member)?))
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_the_simulator() {
    let h = SimHarness {
        lab: Lab::three("catalog").await,
    };
    let report = conformance::run_all_with(&h, &SuiteConfig::default()).await;
    println!("{report}");
    println!("operations: {:?}", h.lab.sim.operations().await.unwrap());
    report.assert_passed();
    // What ran at ARM: priority changes for the planned moves, and for
    // each of the two forced failovers one offlineRegion and one
    // onlineRegion — the second by the abort of the stopped one, once the
    // region it took offline answered again.
    let ops = h.lab.sim.operations_started().await.unwrap();
    assert_eq!(ops.get("offlineRegion"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("onlineRegion"), Some(&2), "{ops:?}");
    assert!(
        ops.get("failoverPriorityChange").is_some_and(|n| *n >= 4),
        "{ops:?}"
    );
}
