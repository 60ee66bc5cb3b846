//! Planned-switchover time against the simulator, median of 10, with the
//! election timing written in the topology (test timing and MongoDB's
//! defaults). Prints a table; run with
//! `cargo bench -p switchyard-mongodb --bench switchover`.

use std::time::{Duration, Instant};
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{OpContext, Operation};
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};
use switchyard_mongodb::MongoController;

struct Row {
    timing: String,
    total: Vec<Duration>,
    promote: Vec<Duration>,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

async fn measure(heartbeat_ms: u64, election_ms: u64, runs: usize) -> Row {
    let mut spec = MongoSimSpec::two_regions_and_arbiter("rs0");
    spec.heartbeat_interval = Duration::from_millis(heartbeat_ms);
    spec.election_timeout = Duration::from_millis(election_ms);
    let sim = MongoSim::start(spec).await.expect("simulator");
    sim.wait_for_primary_in("east", Duration::from_millis(election_ms * 40 + 10_000))
        .await
        .expect("primary in east");
    let ctl = MongoController::from_store(&sim.store()).expect("controller");
    let ctx = OpContext {
        execution_id: "bench".into(),
        token: (1).into(),
    };
    // Warm-up: connections, and the first reconfig.
    planned_switchover(&ctl, "west", &ctx, Duration::from_secs(120))
        .await
        .expect("warm-up");
    let mut row = Row {
        timing: format!("heartbeat {heartbeat_ms} ms, election timeout {election_ms} ms"),
        total: Vec::new(),
        promote: Vec::new(),
    };
    for i in 0..runs {
        let target = if i % 2 == 0 { "east" } else { "west" };
        let start = Instant::now();
        let steps = planned_switchover(&ctl, target, &ctx, Duration::from_secs(120))
            .await
            .expect("switchover");
        row.total.push(start.elapsed());
        if let Some(p) = steps
            .iter()
            .find(|s| matches!(s.op, Operation::Promote { .. }))
        {
            row.promote.push(p.finished - p.started);
        }
    }
    row
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` passes --bench too; keep that run short.
    let quick = std::env::args().any(|a| a == "--test");
    let runs = if quick { 1 } else { 10 };
    let mut rows = vec![measure(50, 300, runs).await];
    if !quick {
        rows.push(measure(2000, 10_000, runs).await);
    }
    println!(
        "{:<46} {:>6} {:>18} {:>18} {:>12}",
        "election timing (topology settings)", "runs", "median switchover", "median promote", "max"
    );
    for mut r in rows {
        let max = r.total.iter().max().copied().unwrap_or_default();
        let n = r.total.len();
        let t = median(&mut r.total);
        let p = median(&mut r.promote);
        println!(
            "{:<46} {:>6} {:>15.1} ms {:>15.1} ms {:>9.1} ms",
            r.timing,
            n,
            t.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
}
