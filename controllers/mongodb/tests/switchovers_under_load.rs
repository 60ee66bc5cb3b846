//! Acceptance: every write acknowledged during 20 planned switchovers —
//! `w:"majority"` and `w:1` alike — is present afterwards, and nothing was
//! rolled back anywhere (the simulator counts rollbacks, the controller's
//! `Rejoin` reports none).
//!
//! The switchovers run through a coordinator that pauses after every
//! operation (as one journaling each outcome on a loaded machine does), so
//! the test does not depend on the coordinator being fast: with the target's
//! priorities raised before the step-down (the order before), the pause gave
//! the target's priority takeover time to win while the old primary still
//! acknowledged `w:1` writes, and those rolled back.

mod common;

use bson::{doc, Document};
use common::Lab;
use futures::TryStreamExt;
use mongodb::options::WriteConcern;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{Capability, Controller, ObservedState, OpContext, Operation, Outcome};
use switchyard_topology::StoreKind;

/// Longer than the lab's priority takeover delay (one 300 ms election
/// timeout plus up to 15 %), so an order that leaves room for a takeover
/// between two operations loses writes every time, not only under load.
const PAUSE: Duration = Duration::from_millis(500);

/// A coordinator that takes its time between operations.
#[derive(Debug)]
struct Unhurried(Arc<dyn Controller>);

#[async_trait::async_trait]
impl Controller for Unhurried {
    fn store(&self) -> &str {
        self.0.store()
    }
    fn kind(&self) -> StoreKind {
        self.0.kind()
    }
    fn capability(&self) -> Capability {
        self.0.capability()
    }
    async fn observe(&self) -> switchyard_controller::Result<ObservedState> {
        self.0.observe().await
    }
    async fn execute(
        &self,
        op: &Operation,
        ctx: &OpContext,
    ) -> switchyard_controller::Result<Outcome> {
        let out = self.0.execute(op, ctx).await;
        tokio::time::sleep(PAUSE).await;
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_planned_switchovers_lose_no_acknowledged_write() {
    let lab = Lab::start(10_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let coll = lab.coll();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut majority, mut w1, mut failed) = (Vec::new(), Vec::new(), 0u64);
            let mut k: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let is_majority = k % 2 == 0;
                let mut op = coll.insert_one(doc! { "_id": k, "majority": is_majority });
                if is_majority {
                    op = op.write_concern(WriteConcern::majority());
                }
                match op.await {
                    Ok(_) if is_majority => majority.push(k),
                    Ok(_) => w1.push(k),
                    Err(_) => failed += 1,
                }
            }
            (majority, w1, failed)
        })
    };
    let ctx = OpContext {
        execution_id: "twenty".into(),
        token: (1).into(),
    };
    let coordinator = Unhurried(lab.ctl.clone());
    for i in 0..20 {
        let target = if i % 2 == 0 { "west" } else { "east" };
        planned_switchover(&coordinator, target, &ctx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("switchover {i} to {target}: {e}\n{}", lab.sim.describe()));
        assert_eq!(lab.primary_region().await.as_deref(), Some(target));
        // Let the writer make progress on every primary.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (majority, w1, failed) = writer.await.expect("writer");
    assert!(
        majority.len() >= 20 && w1.len() >= 20,
        "the writer made too little progress: {} w:majority, {} w:1",
        majority.len(),
        w1.len()
    );

    let present: HashSet<i64> = lab
        .coll()
        .find(doc! {})
        .await
        .expect("find")
        .try_collect::<Vec<Document>>()
        .await
        .expect("cursor")
        .iter()
        .filter_map(|d| d.get_i64("_id").ok())
        .collect();
    let lost_majority: Vec<i64> = majority
        .iter()
        .copied()
        .filter(|k| !present.contains(k))
        .collect();
    assert!(
        lost_majority.is_empty(),
        "acknowledged w:majority writes lost: {lost_majority:?}"
    );
    let lost_w1: Vec<i64> = w1
        .iter()
        .copied()
        .filter(|k| !present.contains(k))
        .collect();
    let rolled_back = lab.sim.rolled_back_inserts();
    assert!(
        lost_w1.is_empty() && rolled_back == 0,
        "acknowledged w:1 writes lost: {lost_w1:?} ({rolled_back} inserts rolled back)\n{}",
        lab.sim.describe()
    );
    let rejoin = lab
        .ctl
        .execute(&Operation::Rejoin, &ctx)
        .await
        .expect("rejoin");
    assert!(
        rejoin.data_loss.is_none(),
        "the controller reports a loss the simulator did not see: {rejoin:?}"
    );
    println!(
        "20 switchovers: {} w:majority and {} w:1 writes acknowledged, all present, none rolled \
         back; {failed} writes failed during step-downs",
        majority.len(),
        w1.len()
    );
}
