//! Acceptance: every `w:"majority"` write acknowledged during 20 planned
//! switchovers is present afterwards; `w:1` writes that were rolled back are
//! counted (by the simulator) and reported (by the controller).

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
use switchyard_controller::{Controller, OpContext, Operation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_planned_switchovers_lose_no_majority_write() {
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
    for i in 0..20 {
        let target = if i % 2 == 0 { "west" } else { "east" };
        planned_switchover(&lab.ctl, target, &ctx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("switchover {i} to {target}: {e}\n{}", lab.sim.describe()));
        assert_eq!(lab.primary_region().await.as_deref(), Some(target));
        // Let the writer make progress on every primary.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (majority, w1, failed) = writer.await.expect("writer");
    assert!(
        majority.len() >= 20,
        "the writer made too little progress: {}",
        majority.len()
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
    let lost_w1 = w1.iter().filter(|k| !present.contains(k)).count() as u64;
    let rolled_back = lab.sim.rolled_back_inserts();
    assert!(
        lost_w1 <= rolled_back,
        "{lost_w1} acknowledged w:1 writes are missing but only {rolled_back} were rolled back"
    );
    let rejoin = lab
        .ctl
        .execute(&Operation::Rejoin, &ctx)
        .await
        .expect("rejoin");
    if rolled_back > 0 {
        assert!(
            rejoin
                .data_loss
                .as_ref()
                .and_then(|d| d.writes)
                .is_some_and(|w| w > 0),
            "rollbacks happened but the controller reported none: {rejoin:?}"
        );
    }
    println!(
        "20 switchovers: {} w:majority acknowledged (all present), {} w:1 acknowledged \
         ({lost_w1} missing, {rolled_back} rolled back), {failed} writes failed during step-downs",
        majority.len(),
        w1.len()
    );
}
