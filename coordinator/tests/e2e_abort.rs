//! `abort` after a crash at every boundary, on a real PostgreSQL cluster:
//! of a planned switchover, of a forced failover, and with the fence's stop
//! hook still running when the coordinator was killed. After each abort the
//! test asks every member itself (`pg_is_in_recovery()` and a plain write
//! over its own connections) whether the store has exactly one writable
//! primary — the old one where nothing was promoted, the new one where a
//! promotion happened — or checks that abort exited non-zero naming the
//! store and that the command it printed fixes it.
//!
//! One cluster serves every boundary: each case starts from whatever the
//! previous one left, with every standby streaming again.
//!
//! `cargo test -p switchyard --test e2e_abort -- --nocapture` prints the
//! crash/abort matrix recorded in docs/abort.md.

mod common;

use common::*;
use std::time::{Duration, Instant};
use switchyard_lab::postgres::PgCluster;

/// The steps of the plan `switchyard plan failover` makes (as `store op`,
/// in sequence order) and its number of stages.
fn plan_steps(ws: &Workspace, to: &str, extra: &[&str]) -> (Vec<String>, usize) {
    let mut args = vec!["plan", "failover", "--to", to, "--output", "json"];
    args.extend(extra);
    let r = ws.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let steps = stages
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .map(|s| {
            format!(
                "{} {}",
                s["store"].as_str().unwrap(),
                s["op"].as_str().unwrap()
            )
        })
        .collect();
    (steps, stages.len())
}

/// Every crash boundary of a plan with `steps` steps and `stages` stages.
fn boundaries(steps: usize, stages: usize) -> Vec<String> {
    let mut points = vec![];
    for n in 1..=steps {
        for kind in ["before", "after", "outcome"] {
            points.push(format!("{kind}:{n}"));
        }
    }
    for n in 1..=stages {
        points.push(format!("checkpoint:{n}"));
    }
    points
}

/// Whether the crash at `point` comes after the promotion (step `seq`, in
/// 1-based `stage`) was carried out.
fn promoted_at(point: &str, seq: usize, stage: usize) -> bool {
    let (kind, n) = point.split_once(':').unwrap();
    let n: usize = n.parse().unwrap();
    match kind {
        "before" => n > seq,
        "after" | "outcome" => n >= seq,
        _ => n >= stage,
    }
}

/// Members that answer `pg_is_in_recovery() = false` and take a plain write
/// (no explicit `READ WRITE`, so a fence marker refuses it), asked over the
/// test's own connections, with their regions.
async fn writable(cluster: &PgCluster) -> Vec<(String, String)> {
    let mut out = vec![];
    for m in cluster.members() {
        let Ok(c) = cluster.connect(&m.name).await else {
            continue;
        };
        let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await else {
            continue;
        };
        if row.get::<_, bool>(0) {
            continue;
        }
        let wrote = c
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS sy_probe (at timestamptz); \
                 INSERT INTO sy_probe VALUES (now())",
            )
            .await;
        if wrote.is_ok() {
            out.push((m.name.clone(), m.region.clone()));
        }
    }
    out
}

/// The `abort_report` event of `abort --output json`.
fn abort_report(r: &Run) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "abort_report")
        .unwrap_or_else(|| panic!("no abort report:\n{}\n{}", r.stdout, r.stderr))
}

/// One row of the matrix: what abort decided and issued, and the result.
fn matrix_row(point: &str, r: &Run, result: &str) -> String {
    let issued: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "op_started")
        .map(|e| {
            format!(
                "{} {}",
                e["store"].as_str().unwrap_or("?"),
                e["op"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let report = abort_report(r);
    let decisions: Vec<String> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s["store"].as_str().unwrap(),
                s["decision"].as_str().unwrap()
            )
        })
        .collect();
    format!(
        "| `{point}` | {} | {} | exit {}: {result} |",
        decisions.join("; "),
        if issued.is_empty() {
            "checkpoint only".to_string()
        } else {
            issued.join(", ")
        },
        r.code
    )
}

async fn streaming(cluster: &PgCluster, what: &str) {
    cluster
        .wait_streaming(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_a_planned_switchover_then_abort() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (steps, stages) = plan_steps(&ws, "west", &[]);
    let promote = steps.iter().position(|s| s == "orders promote").unwrap() + 1;
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let promote_stage = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["name"].as_str().unwrap().starts_with("promote"))
        .unwrap()
        + 1;
    let mut written = vec![];
    let mut rows = vec![];
    for (i, point) in boundaries(steps.len(), stages).iter().enumerate() {
        let (_, from, _) = pg_primary(&cluster)
            .await
            .expect("a primary before the run");
        let to = if from == "east" { "west" } else { "east" };
        let tag = format!("row-{i}");
        pg_write(&cluster, &tag).await;
        written.push(tag);

        let r = ws.run_env(
            &["failover", "--to", to, "--yes", "--output", "json"],
            "SWITCHYARD_CRASH_AT",
            point,
        );
        assert_eq!(r.code, -1, "{point}: the failpoint aborts:\n{}", r.stderr);

        let r = ws.run(&["abort", "--output", "json"]);
        let expected = if promoted_at(point, promote, promote_stage) {
            to
        } else {
            from.as_str()
        };
        assert_eq!(
            r.code, 0,
            "{point}: abort failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        let report = abort_report(&r);
        assert_eq!(report["status"], "aborted", "{point}: {report}");
        let seen = writable(&cluster).await;
        assert_eq!(
            seen.len(),
            1,
            "{point}: exactly one writable primary, saw {seen:?}\n{}",
            r.stdout
        );
        assert_eq!(
            seen[0].1,
            expected,
            "{point}: the {} primary\n{}",
            if expected == to { "new" } else { "old" },
            r.stdout
        );
        assert_eq!(
            pg_tags(&cluster).await,
            written,
            "{point}: every acknowledged row kept"
        );
        rows.push(matrix_row(
            point,
            &r,
            &format!("one writable primary, {} in {}", seen[0].0, seen[0].1),
        ));
        streaming(&cluster, point).await;
    }
    eprintln!(
        "planned switchover ({}):\n{}",
        steps.join(", "),
        rows.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_a_forced_failover_then_abort() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let forced = ["--forced", "--accept-data-loss"];
    let (steps, stages) = plan_steps(&ws, "west", &forced);
    let promote = steps.iter().position(|s| s == "orders promote").unwrap() + 1;
    let regions = ["east", "west", "south"];
    let mut written = vec![];
    let mut rows = vec![];
    for (i, point) in boundaries(steps.len(), stages).iter().enumerate() {
        let (old, from, _) = pg_primary(&cluster)
            .await
            .expect("a primary before the run");
        let next = (regions.iter().position(|r| *r == from).unwrap() + 1) % regions.len();
        let to = regions[next];
        let tag = format!("row-{i}");
        pg_write(&cluster, &tag).await;
        written.push(tag);
        streaming(&cluster, point).await;
        // The primary's region is gone (a clean stop: the standbys have
        // every record it wrote, so no row is lost either way).
        cluster.stop(&old).await.unwrap();

        let mut args = vec!["failover", "--to", to, "--yes", "--output", "json"];
        args.extend(forced);
        let r = ws.run_env(&args, "SWITCHYARD_CRASH_AT", point);
        assert_eq!(r.code, -1, "{point}: the failpoint aborts:\n{}", r.stderr);

        let r = ws.run(&["abort", "--output", "json"]);
        let row = if promoted_at(point, promote, 2) {
            assert_eq!(
                r.code, 0,
                "{point}: abort failed\nstdout:\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            );
            assert_eq!(abort_report(&r)["status"], "aborted");
            let seen = writable(&cluster).await;
            assert_eq!(seen.len(), 1, "{point}: {seen:?}\n{}", r.stdout);
            assert_eq!(seen[0].1, to, "{point}: the promoted primary stays");
            matrix_row(
                point,
                &r,
                &format!("one writable primary, {} in {}", seen[0].0, seen[0].1),
            )
        } else {
            // Nothing was promoted and the old primary is gone: abort cannot
            // give the store a primary. It says so, naming the store, and
            // prints the command that fixes it.
            assert_eq!(r.code, 1, "{point}:\n{}\n{}", r.stdout, r.stderr);
            let report = abort_report(&r);
            assert_eq!(report["status"], "failed", "{point}: {report}");
            assert!(
                !r.stdout.contains("\"status\":\"aborted\""),
                "{point}: never `aborted` over a store without a primary: {}",
                r.stdout
            );
            let fix = format!("`switchyard failover --to {to} --forced --accept-data-loss`");
            assert!(
                r.stderr.contains("orders: ") && r.stderr.contains(&fix),
                "{point}: names the store and the fix:\n{}",
                r.stderr
            );
            assert!(writable(&cluster).await.is_empty(), "{point}");
            let mut fix_args = vec!["failover", "--to", to, "--yes", "--output", "json"];
            fix_args.extend(forced);
            let fixed = ws.run(&fix_args);
            assert_eq!(
                fixed.code, 0,
                "{point}: the printed fix works\n{}\n{}",
                fixed.stdout, fixed.stderr
            );
            let seen = writable(&cluster).await;
            assert_eq!(seen.len(), 1, "{point}: after the fix: {seen:?}");
            assert_eq!(seen[0].1, to);
            matrix_row(
                point,
                &r,
                "no primary, `orders` named with the fix; the fix ran: one writable primary",
            )
        };
        rows.push(row);
        assert_eq!(pg_tags(&cluster).await, written, "{point}: rows kept");
        // The old primary comes back as a standby of the new one.
        rejoin_as_standby(&cluster, &old).await;
        streaming(&cluster, point).await;
    }
    eprintln!(
        "forced failover ({}):\n{}",
        steps.join(", "),
        rows.join("\n")
    );
}

/// Rewind a stopped former primary from the current primary and start it
/// as its standby, through the lab's own host script (test set-up, not
/// what is under test).
async fn rejoin_as_standby(cluster: &PgCluster, member: &str) {
    let (primary, _, _) = pg_primary(cluster).await.expect("a primary");
    let port = cluster.member(&primary).unwrap().port.to_string();
    for cmd in ["rewind", "start-standby"] {
        let out = tokio::process::Command::new(cluster.script())
            .args([cmd, member, "127.0.0.1", &port])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd} {member}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_the_coordinator_died_during_the_fence_stop_hook() {
    let cluster = pg_cluster("orders").await;
    let (old, _, _) = pg_primary(&cluster).await.unwrap();
    // A slow stop hook on the primary: the coordinator is killed while it
    // runs, and the hook finishes afterwards (the old primary ends stopped,
    // never restarted in recovery).
    let mut topology = cluster.topology().clone();
    let m = topology.stores[0]
        .members
        .iter_mut()
        .find(|m| m.name == old)
        .unwrap();
    m.hooks.stop = Some(format!("sleep 3 && {}", m.hooks.stop.as_deref().unwrap()));
    let ws = Workspace::new(&topology);
    pg_write(&cluster, "before").await;

    let mut child = ws
        .command(&["failover", "--to", "west", "--yes", "--output", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fencing = ws.journal_files().first().is_some_and(|f| {
            read(f)
                .lines()
                .any(|l| l.contains("\"type\":\"intent\"") && l.contains("\"op\":\"fence\""))
        });
        if fencing {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "failover ended early");
        assert!(Instant::now() < deadline, "the fence never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Inside the hook's sleep: the soft fence is on, the stop is pending.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.pid(&old).unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the orphaned stop hook never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writable(&cluster).await.is_empty(), "no writable primary");

    let r = ws.run(&["abort", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = abort_report(&r);
    assert_eq!(report["status"], "aborted", "{report}");
    let seen = writable(&cluster).await;
    assert_eq!(
        seen,
        vec![(old.clone(), "east".to_string())],
        "the old primary is back and takes writes\n{}",
        r.stdout
    );
    pg_write(&cluster, "after").await;
    assert_eq!(pg_tags(&cluster).await, vec!["before", "after"]);
    eprintln!(
        "{}",
        matrix_row(
            "kill -9 during the fence's stop hook",
            &r,
            "one writable primary, the old one"
        )
    );
}
