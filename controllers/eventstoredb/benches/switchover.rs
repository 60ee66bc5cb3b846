//! Planned-switchover time against the simulator, median of 10, for the
//! simulator's default timing (gossip timeout 600 ms, election delay 200 ms,
//! resign grace 100 ms, tick 20 ms). Prints a table; run with
//! `cargo bench -p switchyard-eventstoredb --bench switchover`.

use std::time::{Duration, Instant};
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{OpContext, Operation};
use switchyard_eventstoredb::EsdbController;
use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` passes --bench too; keep that run short.
    let quick = std::env::args().any(|a| a == "--test");
    let runs = if quick { 1 } else { 10 };
    let regions: Vec<String> = ["east", "west", "south"].map(String::from).to_vec();
    let sim = EsdbSim::start(EsdbSimSpec::for_regions("ledger", &regions))
        .await
        .expect("simulator");
    sim.wait_for_leader_in("east", Duration::from_secs(30))
        .await
        .expect("leader in east");
    let ctl = EsdbController::from_store(&sim.store()).expect("controller");
    let ctx = OpContext {
        execution_id: "bench".into(),
        token: (1).into(),
    };
    // Warm-up: clients, the control stream, the first priorities.
    planned_switchover(&ctl, "west", &ctx, Duration::from_secs(120))
        .await
        .expect("warm-up");
    let (mut total, mut promote) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let target = if i % 2 == 0 { "east" } else { "west" };
        let start = Instant::now();
        let steps = planned_switchover(&ctl, target, &ctx, Duration::from_secs(120))
            .await
            .expect("switchover");
        total.push(start.elapsed());
        if let Some(p) = steps
            .iter()
            .find(|s| matches!(s.op, Operation::Promote { .. }))
        {
            promote.push(p.finished - p.started);
        }
    }
    let max = total.iter().max().copied().unwrap_or_default();
    println!(
        "{:>6} {:>18} {:>18} {:>12}",
        "runs", "median switchover", "median promote", "max"
    );
    println!(
        "{:>6} {:>15.1} ms {:>15.1} ms {:>9.1} ms",
        total.len(),
        median(&mut total).as_secs_f64() * 1e3,
        median(&mut promote).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}
