//! Planned-switchover timing on real Redis (a master and 2 replicas over
//! 3 regions), with one Sentinel per region and without Sentinel, split
//! into phases, median of N runs (default 10) while a writer sets keys
//! continuously (acknowledged with `WAIT 1`). Not a test: it prints a table.
//!
//! ```text
//! cargo bench -p switchyard-redis --bench switchover
//! SWITCHYARD_BENCH_RUNS=20 cargo bench -p switchyard-redis --bench switchover
//! ```
//!
//! Phases are each operation from its issue to its return; "writes
//! blocked" is the writer's longest gap between two acknowledged writes
//! during the switchover (it follows the master through `ROLE`); "total"
//! is the whole canonical sequence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{OpContext, Operation};
use switchyard_lab::redis::{RedisCluster, RedisClusterSpec};
use switchyard_redis::RedisController;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn master_port(ports: &[u16]) -> Option<redis::aio::MultiplexedConnection> {
    for p in ports {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{p}/")) else {
            continue;
        };
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_secs(2));
        let Ok(mut c) = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        else {
            continue;
        };
        if let Ok(redis::Value::Array(v)) = redis::cmd("ROLE").query_async(&mut c).await {
            if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"master") {
                return Some(c);
            }
        }
    }
    None
}

async fn bench(sentinels: bool, runs: usize) -> anyhow::Result<()> {
    let mut spec = RedisClusterSpec::new(["east", "west", "south"]);
    spec.sentinels = sentinels;
    let cluster = RedisCluster::start(spec).await?;
    let ctl = RedisController::from_store(cluster.store())?;
    let ports: Vec<u16> = cluster.data_members().map(|n| n.port).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let writer = {
        let (stop, acks, ports) = (stop.clone(), acks.clone(), ports.clone());
        tokio::spawn(async move {
            let mut conn = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = master_port(&ports).await;
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                }
                let c = conn.as_mut().expect("connected");
                i += 1;
                let set: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("bench:{i}"))
                    .arg(i)
                    .query_async(c)
                    .await;
                let ok = match set {
                    Ok(()) => redis::cmd("WAIT")
                        .arg(1)
                        .arg(1000)
                        .query_async::<i64>(c)
                        .await
                        .is_ok_and(|n| n >= 1),
                    Err(_) => false,
                };
                if ok {
                    acks.lock().unwrap().push(Instant::now());
                } else {
                    conn = None;
                }
            }
        })
    };
    let phases = [
        "readiness",
        "fence",
        "capture",
        "catch-up",
        "make sticky",
        "promote",
        "re-point followers",
        "rejoin",
        "writes blocked",
        "total",
    ];
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let regions = ["west", "south", "east"];
    for i in 0..runs {
        let target = regions[i % 3];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ctx = OpContext {
            execution_id: format!("bench-{i}"),
            token: (i as u64 + 1).into(),
        };
        let start = Instant::now();
        let steps = planned_switchover(&ctl, target, &ctx, Duration::from_secs(60)).await?;
        let total = start.elapsed();
        for s in &steps {
            let name = match &s.op {
                Operation::CheckReadiness { .. } => "readiness",
                Operation::Fence => "fence",
                Operation::CapturePosition => "capture",
                Operation::WaitForPosition { .. } => "catch-up",
                Operation::MakeSticky { .. } => "make sticky",
                Operation::Promote { .. } => "promote",
                Operation::RepointFollowers => "re-point followers",
                Operation::Rejoin => "rejoin",
                _ => continue,
            };
            samples
                .entry(name)
                .or_default()
                .push(ms(s.finished - s.started));
        }
        samples.entry("total").or_default().push(ms(total));
        // Let the writer find the new master before measuring its gap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = acks.lock().unwrap().clone();
        let end = Instant::now();
        let mut around: Vec<Instant> = a
            .into_iter()
            .filter(|t| *t + Duration::from_millis(200) >= start && *t <= end)
            .collect();
        around.sort();
        let gap = around
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(end - start);
        samples.entry("writes blocked").or_default().push(ms(gap));
        eprintln!("run {}/{runs} -> {target}: {:.1} ms", i + 1, ms(total));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    println!(
        "\nplanned switchover, Redis lab (master + 2 replicas, 3 regions, {}), {runs} runs, writer running",
        if sentinels { "3 Sentinels" } else { "no Sentinel" }
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10}",
        "phase", "median ms", "min ms", "max ms"
    );
    for p in phases {
        if let Some(v) = samples.get_mut(p) {
            let m = median(v);
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!("{p:<20} {m:>10.1} {lo:>10.1} {hi:>10.1}");
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("SWITCHYARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    bench(false, runs).await?;
    bench(true, runs).await?;
    Ok(())
}
