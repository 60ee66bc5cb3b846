//! 20 planned switchovers while a writer appends without pause: every
//! append the cluster acknowledged is in the stream afterwards, on the
//! leader and on every follower.

mod common;

use common::Lab;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{ControllerExt, OpContext};

const STREAM: &str = "load";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_planned_switchovers_under_continuous_appends_lose_nothing() {
    let lab = Arc::new(Lab::start(1024 * 1024).await);
    let acked: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (lab, acked, stop) = (lab.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = uuid::Uuid::new_v4();
                // One try per id: an append that errored is not acknowledged
                // and may or may not be in the log; only acks are counted.
                match lab.append_once(STREAM, id).await {
                    Ok(()) => acked.lock().unwrap().push(id),
                    Err(_) => failed += 1,
                }
            }
            failed
        })
    };
    let ctx = OpContext {
        execution_id: "switchovers".into(),
        token: (1).into(),
    };
    let regions = ["west", "south", "east"];
    let mut acks_during = Vec::new();
    for i in 0..20 {
        let target = regions[i % 3];
        let before = acked.lock().unwrap().len();
        planned_switchover(&lab.ctl, target, &ctx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("switchover {i} to {target}: {e}\n{}", lab.sim.describe()));
        let s = lab
            .ctl
            .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
                s.primary_region() == Some(target)
            })
            .await
            .unwrap_or_else(|e| panic!("switchover {i}: no leader in {target}: {e}"));
        assert!(s.term.is_some());
        // Let the writer get some appends in before the next move.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < before + 5 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no appends acknowledged after switchover {i}\n{}",
                lab.sim.describe()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acks_during.push(acked.lock().unwrap().len() - before);
    }
    stop.store(true, Ordering::Relaxed);
    let failed = writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let on_leader = lab.read_ids(STREAM).await.unwrap();
    let missing: Vec<_> = acked.iter().filter(|id| !on_leader.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged appends missing on the leader: {missing:?}",
        missing.len(),
        acked.len()
    );
    // Followers catch up to the same stream.
    let s = lab
        .ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.members
                .iter()
                .all(|m| m.lag.is_some_and(|l| l.bytes == Some(0)))
        })
        .await
        .expect("followers catch up");
    for m in &s.members {
        let ids = lab.sim.stream_ids(&m.name, STREAM).unwrap();
        assert!(
            acked.iter().all(|id| ids.contains(id)),
            "{} misses acknowledged appends",
            m.name
        );
    }
    println!(
        "20 switchovers: {} appends acknowledged, {failed} refused or timed out during elections, acks between switchovers {acks_during:?}",
        acked.len()
    );
}
