//! Planned-switchover timing on a real lab cluster (primary + 2 standbys,
//! 3 regions), split into phases, median of N runs (default 10) while a
//! writer commits continuously. Not a test: it prints a table.
//!
//! ```text
//! cargo bench -p switchyard-postgres --bench switchover
//! SWITCHYARD_BENCH_RUNS=20 cargo bench -p switchyard-postgres --bench switchover
//! ```
//!
//! Phases (each from its operation's issue to its return):
//! readiness, fence, capture, catch-up (WaitForPosition), promote,
//! re-point followers, rejoin. Derived:
//! * first write: from the start of the switchover until a fresh session
//!   on the new primary committed a row (issued right after Promote returned);
//! * writes blocked: the continuous writer's gap between its last commit on
//!   the old primary and its first commit on the new one;
//! * total: the whole sequence including re-pointing and rejoin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{OpContext, Operation};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};
use switchyard_postgres::PostgresController;
use tokio_postgres::config::TargetSessionAttrs;

#[derive(Clone, Copy)]
struct Ack {
    port: u16,
    at: Instant,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("SWITCHYARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cluster = PgCluster::start(PgClusterSpec::new(["east", "west", "south"])).await?;
    let ctl = PostgresController::from_store(cluster.store())?;
    let ports: BTreeMap<String, u16> = cluster
        .members()
        .iter()
        .map(|m| (m.name.clone(), m.port))
        .collect();
    cluster
        .connect(&cluster.members()[0].name)
        .await?
        .batch_execute("CREATE TABLE bench (n bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        .await?;

    // Continuous writer: reconnects to whichever member accepts writes.
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let writer = {
        let mut cfg = tokio_postgres::Config::new();
        for p in ports.values() {
            cfg.host("127.0.0.1").port(*p);
        }
        cfg.user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(1))
            .target_session_attrs(TargetSessionAttrs::ReadWrite);
        let (stop, acks) = (stop.clone(), acks.clone());
        tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            while !stop.load(Ordering::Relaxed) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    match cfg.connect(tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = client.as_ref() else { continue };
                match c
                    .query_one(
                        "INSERT INTO bench DEFAULT VALUES RETURNING inet_server_port()",
                        &[],
                    )
                    .await
                {
                    Ok(r) => {
                        let port: i32 = r.get(0);
                        acks.lock().unwrap().push(Ack {
                            port: port as u16,
                            at: Instant::now(),
                        });
                    }
                    Err(_) => client = None,
                }
            }
        })
    };

    let ctx = OpContext {
        execution_id: "bench".into(),
        token: (1).into(),
    };
    let phases = [
        "readiness",
        "fence",
        "capture",
        "catch-up",
        "promote",
        "first write",
        "writes blocked",
        "re-point followers",
        "rejoin",
        "total",
    ];
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for i in 0..runs {
        let target = if i % 2 == 0 { "west" } else { "east" };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old_port = *ports
            .get(ctl_primary(&ctl).await?.as_str())
            .expect("primary port");
        let start = Instant::now();
        // Same sequence as planned_switchover, but with a write probe right
        // after Promote: run the helper up to Promote by hand.
        let steps = run_with_probe(&ctl, target, &ctx, &ports).await?;
        let total = start.elapsed();
        let mut by: BTreeMap<&str, Duration> = BTreeMap::new();
        let mut first_write = None;
        let mut new_port = 0;
        for (s, probe) in &steps {
            let name = match &s.op {
                Operation::CheckReadiness { .. } => "readiness",
                Operation::Fence => "fence",
                Operation::CapturePosition => "capture",
                Operation::WaitForPosition { .. } => "catch-up",
                Operation::Promote { .. } => "promote",
                Operation::RepointFollowers => "re-point followers",
                Operation::Rejoin => "rejoin",
                _ => continue,
            };
            by.insert(name, s.finished - s.started);
            if let Some((at, port)) = probe {
                first_write = Some(*at - start);
                new_port = *port;
            }
        }
        for (k, v) in by {
            samples.entry(k).or_default().push(ms(v));
        }
        samples
            .entry("first write")
            .or_default()
            .push(ms(first_write.expect("probe")));
        samples.entry("total").or_default().push(ms(total));
        // Writer gap: last ack on the old primary → first ack on the new.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = acks.lock().unwrap().clone();
        let last_old = a
            .iter()
            .filter(|x| x.port == old_port && x.at >= start)
            .map(|x| x.at)
            .max();
        let first_new = a
            .iter()
            .filter(|x| x.port == new_port && x.at >= start)
            .map(|x| x.at)
            .min();
        if let (Some(o), Some(n)) = (last_old, first_new) {
            samples
                .entry("writes blocked")
                .or_default()
                .push(ms(n.saturating_duration_since(o)));
        }
        eprintln!("run {}/{runs} -> {target}: {:.1} ms", i + 1, ms(total));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;

    println!("\nplanned switchover, PostgreSQL lab (primary + 2 standbys, 3 regions), {runs} runs, writer running");
    println!(
        "{:<20} {:>10} {:>10} {:>10}",
        "phase", "median ms", "min ms", "max ms"
    );
    for p in phases {
        if let Some(v) = samples.get_mut(p) {
            let (mn, mx) = (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(0.0, f64::max),
            );
            println!("{p:<20} {:>10.1} {mn:>10.1} {mx:>10.1}", median(v));
        }
    }
    Ok(())
}

async fn ctl_primary(ctl: &PostgresController) -> anyhow::Result<String> {
    use switchyard_controller::Controller;
    let s = ctl.observe().await?;
    Ok(s.primary()
        .ok_or_else(|| anyhow::anyhow!("no primary"))?
        .name
        .clone())
}

type ProbedStep = (switchyard_controller::direct::Step, Option<(Instant, u16)>);

/// `planned_switchover`, plus a write probe on the new primary issued the
/// moment Promote returns (what "first write accepted" means here).
async fn run_with_probe(
    ctl: &PostgresController,
    target: &str,
    ctx: &OpContext,
    ports: &BTreeMap<String, u16>,
) -> anyhow::Result<Vec<ProbedStep>> {
    use switchyard_controller::{Controller, PromoteMode};
    let _ = planned_switchover; // same order as the canonical helper
    let mut out = Vec::new();
    let run = |op: Operation| async move {
        let started = Instant::now();
        let outcome = ctl.execute(&op, ctx).await?;
        Ok::<_, anyhow::Error>(switchyard_controller::direct::Step {
            op,
            outcome,
            started,
            finished: Instant::now(),
        })
    };
    let t = target.to_string();
    out.push((
        run(Operation::CheckReadiness {
            target_region: t.clone(),
            mode: PromoteMode::Planned,
            candidate: None,
        })
        .await?,
        None,
    ));
    out.push((run(Operation::Fence).await?, None));
    let cap = run(Operation::CapturePosition).await?;
    let position = cap.outcome.position.expect("position");
    out.push((cap, None));
    out.push((
        run(Operation::WaitForPosition {
            target_region: t.clone(),
            position,
            timeout_ms: 60_000,
            candidate: None,
        })
        .await?,
        None,
    ));
    let promote = run(Operation::Promote {
        target_region: t.clone(),
        mode: PromoteMode::Planned,
        candidate: None,
    })
    .await?;
    let member = promote.outcome.member.clone().expect("promoted member");
    let port = ports[&member];
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    c.execute("INSERT INTO bench DEFAULT VALUES", &[]).await?;
    let probe = Some((Instant::now(), port));
    out.push((promote, probe));
    out.push((run(Operation::RepointFollowers).await?, None));
    out.push((run(Operation::Rejoin).await?, None));
    Ok(out)
}
