//! The coordinator's own overhead during a drill on the lab.
//!
//! Runs `switchyard drill` (the real binary) against the lab's real
//! PostgreSQL cluster several times and prints, per stage, the wall time, the
//! time spent inside store operations and checkpoint validation, and what is
//! left: the coordinator's own work (journal fsyncs, decisions, scheduling).
//!
//! ```text
//! cargo bench -p switchyard --bench overhead            # 3 drills
//! SWITCHYARD_BENCH_RUNS=5 cargo bench -p switchyard --bench overhead
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};
use switchyard_topology::Topology;

#[derive(Default)]
struct Acc {
    wall_us: u64,
    ops_ms: u64,
    checkpoint_ms: u64,
    overhead_us: u64,
    n: u64,
}

fn main() {
    let runs: usize = std::env::var("SWITCHYARD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.store = "orders".into();
    let cluster: PgCluster = rt
        .block_on(PgCluster::start(spec))
        .expect("lab cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");

    // PostgreSQL alone.
    let topo = dir.path().join("pg.toml");
    cluster.write_topology(&topo).expect("topology written");
    scenario("PostgreSQL (orders)", &topo, runs);

    // PostgreSQL + the MongoDB simulator, catalog depending on orders. The
    // simulator runs on this process's runtime; the coordinator reaches it
    // over TCP with the real driver.
    let sim = rt.block_on(async {
        let spec = MongoSimSpec {
            set_name: "catalog-rs".into(),
            store_name: "catalog".into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            members: vec![
                SimMemberSpec::data("catalog-east-1", "east", 2.0),
                SimMemberSpec::data("catalog-west-1", "west", 1.0),
                SimMemberSpec::arbiter("catalog-south-arb", "south"),
            ],
        };
        let sim = MongoSim::start(spec).await.expect("simulator starts");
        sim.wait_for_primary_in("east", Duration::from_secs(20))
            .await
            .expect("simulated primary in east");
        sim
    });
    let mut t: Topology = cluster.topology().clone();
    let mut m = sim.store();
    m.depends_on = vec!["orders".into()];
    t.stores.push(m);
    let topo = dir.path().join("combined.toml");
    std::fs::write(&topo, t.to_toml()).expect("topology written");
    let _guard = rt.enter();
    scenario(
        "PostgreSQL (orders) + MongoDB simulator (catalog → orders)",
        &topo,
        runs,
    );
    drop(sim);
    drop(cluster);
}

fn scenario(label: &str, topo: &Path, runs: usize) {
    let mut per_stage: BTreeMap<(String, usize, String), Acc> = BTreeMap::new();
    let (mut total_process_us, mut total_stage_wall_us, mut total_overhead_us) = (0u64, 0u64, 0u64);
    let mut total_drill_observe_ms = 0u64;
    for run in 0..runs {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--topology", topo.to_str().unwrap()])
            .args(["drill", "--to", "west", "--yes", "--output", "json"])
            .stdin(Stdio::null())
            .output()
            .expect("switchyard runs");
        let process_us = t.elapsed().as_micros() as u64;
        assert!(
            out.status.success(),
            "drill {run} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let drill: serde_json::Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "drill_report")
            .expect("a drill report");
        total_process_us += process_us;
        total_drill_observe_ms += drill["observe_ms"].as_u64().unwrap_or(0);
        for dir in ["out", "back"] {
            let r = &drill[dir];
            total_stage_wall_us += r["stage_wall_us"].as_u64().unwrap_or(0);
            total_overhead_us += r["overhead_us"].as_u64().unwrap_or(0);
            for s in r["stages"].as_array().into_iter().flatten() {
                let key = (
                    dir.to_string(),
                    s["stage"].as_u64().unwrap_or(0) as usize,
                    s["name"].as_str().unwrap_or("").to_string(),
                );
                let a = per_stage.entry(key).or_default();
                a.wall_us += s["stage_wall_us"].as_u64().unwrap_or(0);
                a.ops_ms += s["ops_duration_ms"].as_u64().unwrap_or(0);
                a.checkpoint_ms += s["checkpoint_duration_ms"].as_u64().unwrap_or(0);
                a.overhead_us += s["overhead_us"].as_u64().unwrap_or(0);
                a.n += 1;
            }
        }
    }
    println!("\n== {label}: {runs} drills (east → west → east), mean per drill\n");
    println!(
        "{:<5} {:<5} {:<26} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "dir", "stage", "name", "wall ms", "ops ms", "checkpt ms", "overhead ms", "ovh %"
    );
    for ((dir, stage, name), a) in &per_stage {
        let n = a.n.max(1) as f64;
        let wall = a.wall_us as f64 / 1000.0 / n;
        let ovh = a.overhead_us as f64 / 1000.0 / n;
        println!(
            "{:<5} {:<5} {:<26} {:>10.1} {:>10.1} {:>12.1} {:>12.2} {:>7.2}%",
            dir,
            stage,
            name,
            wall,
            a.ops_ms as f64 / n,
            a.checkpoint_ms as f64 / n,
            ovh,
            if wall > 0.0 { 100.0 * ovh / wall } else { 0.0 }
        );
    }
    let r = runs as f64;
    let process_ms = total_process_us as f64 / 1000.0 / r;
    let stages_ms = total_stage_wall_us as f64 / 1000.0 / r;
    let ovh_ms = total_overhead_us as f64 / 1000.0 / r;
    let observe_ms = total_drill_observe_ms as f64 / r;
    let outside_ms = process_ms - stages_ms - observe_ms;
    println!();
    println!("drill wall time (whole process)             {process_ms:>9.1} ms");
    println!("  inside stages                             {stages_ms:>9.1} ms");
    println!(
        "    coordinator overhead inside stages      {ovh_ms:>9.2} ms ({:.2}% of the drill)",
        100.0 * ovh_ms / process_ms
    );
    println!("  drill's own observations (origin, verify) {observe_ms:>9.1} ms");
    println!(
        "  outside stages: process start, lock, planning, journal set-up, reports {outside_ms:>7.1} ms ({:.2}%)",
        100.0 * outside_ms / process_ms
    );
    println!(
        "  coordinator overhead, all of it           {:>9.2} ms ({:.2}% of the drill)",
        ovh_ms + outside_ms,
        100.0 * (ovh_ms + outside_ms) / process_ms
    );
}
