//! The forced path honours `max_lag_ms` by evidence: a controller built
//! with a state directory keeps what it saw while the primary lived, and a
//! fresh one (another process) judges the candidate by it once no primary
//! is reachable — refused beyond the bound, with the basis and the
//! evidence's age; within it, only the lost majority needs accepting.

mod common;

use bson::doc;
use common::Lab;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_controller::{
    Controller, ControllerExt, ErrorKind, OpContext, Operation, PromoteMode,
};
use switchyard_mongodb::MongoController;

/// A state directory of its own, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("sy-mongo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        StateDir(d)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn readiness(accept_data_loss: bool) -> Operation {
    Operation::CheckReadiness {
        target_region: "west".into(),
        mode: PromoteMode::Forced { accept_data_loss },
        candidate: None,
    }
}

/// West lags `lag` behind while w:1 writes flow; a watcher with `dir`
/// observes; then east and the witness are cut (no primary reachable).
async fn lagging_then_cut(lab: &Lab, lag: Duration, dir: &StateDir) -> MongoController {
    let mut store = lab.sim.store();
    store.max_lag_ms = Some(1000);
    for m in ["west-1", "west-2"] {
        lab.sim.set_lag(m, lag);
    }
    for k in 0..30 {
        lab.coll().insert_one(doc! { "_id": k }).await.expect("w:1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watcher = MongoController::from_store_in(&store, Some(&dir.0)).unwrap();
    let seen = watcher.observe().await.unwrap();
    println!(
        "west-1 lag when last seen: {:?}",
        seen.member("west-1").and_then(|m| m.lag)
    );
    drop(watcher);
    lab.sim.cut_region("east");
    lab.sim.cut_region("witness");
    lab.ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.members.iter().filter(|m| m.reachable).count() == 2 && s.primary().is_none()
        })
        .await
        .expect("only west reachable, no primary");
    MongoController::from_store_in(&store, Some(&dir.0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_beyond_max_lag_ms_is_refused_on_evidence() {
    let lab = Lab::start(1000).await;
    let dir = StateDir::new("beyond");
    let fresh = lagging_then_cut(&lab, Duration::from_secs(2), &dir).await;
    let ctx = OpContext::adhoc();
    let e = fresh
        .execute(&readiness(false), &ctx)
        .await
        .expect_err("beyond max_lag_ms");
    println!("{e}");
    assert_eq!(e.kind(), ErrorKind::LagTooHigh, "{e}");
    assert!(
        e.to_string().contains("(bound: 1000 ms) on evidence"),
        "{e}"
    );
    assert!(e.to_string().contains("last-known state in"), "{e}");
    let ok = fresh.execute(&readiness(true), &ctx).await.unwrap();
    assert!(ok.data_loss.unwrap().note.starts_with("≥ "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_within_max_lag_ms_passes_the_lag_guard_on_evidence() {
    let lab = Lab::start(1000).await;
    let dir = StateDir::new("within");
    let fresh = lagging_then_cut(&lab, Duration::ZERO, &dir).await;
    let ctx = OpContext::adhoc();
    // Still refused — but for the lost majority, not for lag.
    let e = fresh
        .execute(&readiness(false), &ctx)
        .await
        .expect_err("no voting majority");
    assert!(!e.to_string().contains("on evidence"), "{e}");
    let ok = fresh.execute(&readiness(true), &ctx).await.unwrap();
    let note = ok.data_loss.unwrap().note;
    println!("{note}");
    assert!(note.contains("last seen"), "{note}");
    // Without a state directory the same process knows nothing.
    let blind = MongoController::from_store(&lab.sim.store()).unwrap();
    let note = blind
        .execute(&readiness(true), &ctx)
        .await
        .unwrap()
        .data_loss
        .unwrap()
        .note;
    assert!(note.contains("unknown"), "{note}");
}
