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

async fn streaming(cluster: &PgCluster, ws: &Workspace, what: &str) {
    if let Err(e) = cluster.wait_streaming(Duration::from_secs(60)).await {
        panic!("{what}: {e}\n{}", ws.run(&["state"]).stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_a_planned_switchover_then_abort() {
    crash_at_every_boundary_then_abort(pg_cluster("orders").await).await;
}

/// With the deferred fence the old primary is stopped (standby.signal,
/// final position from pg_controldata) until the rejoin: an abort in a new
/// process must find it fenced from its data directory and bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_a_deferred_fence_switchover_then_abort() {
    crash_at_every_boundary_then_abort(pg_cluster_deferred("orders").await).await;
}

async fn crash_at_every_boundary_then_abort(cluster: PgCluster) {
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
        let (from, to, _) = east_west(&cluster).await;
        let tag = format!("row-{i}");
        pg_write(&cluster, &tag).await;
        written.push(tag);
        crash(
            &ws,
            &["failover", "--to", to, "--yes", "--output", "json"],
            point,
        );

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
            &format!("{from} → {to}"),
            &r,
            &format!("one writable primary, {} in {}", seen[0].0, seen[0].1),
        ));
        streaming(&cluster, &ws, point).await;
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
        streaming(&cluster, &ws, point).await;
        // The primary's region is gone (a clean stop: the standbys have
        // every record it wrote, so no row is lost either way).
        cluster.stop(&old).await.unwrap();

        let mut args = vec!["failover", "--to", to, "--yes", "--output", "json"];
        args.extend(forced);
        crash(&ws, &args, point);

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
                &format!("{from} → {to}"),
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
                &format!("{from} → {to}"),
                &r,
                "no primary, `orders` named with the fix; the fix ran: one writable primary",
            )
        };
        rows.push(row);
        assert_eq!(pg_tags(&cluster).await, written, "{point}: rows kept");
        // The old primary comes back as a standby of the new one.
        rejoin_as_standby(&cluster, &old).await;
        streaming(&cluster, &ws, point).await;
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
    // pg_rewind reads the source's timeline from its control file: a fresh
    // promotion is only there after a checkpoint.
    let c = cluster.connect(&primary).await.unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
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
    let ws = Workspace::new(cluster.topology());
    let started = ws.path("stop-hook-started");
    m.hooks.stop = Some(format!(
        "touch '{}' && sleep 3 && {}",
        started.display(),
        m.hooks.stop.as_deref().unwrap()
    ));
    let ws = Workspace {
        topology: ws.path("slow-stop.toml"),
        ..ws
    };
    std::fs::write(&ws.topology, topology.to_toml()).unwrap();
    pg_write(&cluster, "before").await;

    let mut child = ws
        .command(&["failover", "--to", "west", "--yes", "--output", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while the hook sleeps: the soft fence is on, the stop pending.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(child.try_wait().unwrap().is_none(), "failover ended early");
        assert!(
            Instant::now() < deadline,
            "the fence's stop hook never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        cluster.pid(&old).unwrap().is_some(),
        "the old primary was still up when the coordinator died"
    );
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
            "east → west",
            &r,
            "one writable primary, the old one"
        )
    );
}

/// PostgreSQL `orders` and the MongoDB simulator's `catalog` (depending on
/// `orders`), crashed at the boundaries where each store's fate differs:
/// PostgreSQL fenced but not promoted, promoted; MongoDB's preference moved
/// but not its primary, promoted. MongoDB elects by itself, so abort decides
/// by what it observes, and the test checks the primary stays where abort
/// left it (a restored preference means no priority takeover back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_the_boundaries_of_a_combined_plan_then_abort() {
    let pg = pg_cluster("orders").await;
    let mongo = mongo_sim("catalog").await;
    let ws = Workspace::new(&merged(&pg, &mongo, true));
    let (steps, stages) = plan_steps(&ws, "west", &[]);
    let seq = |s: &str| steps.iter().position(|x| x == s).unwrap() + 1;
    let orders_promote = seq("orders promote");
    let catalog_promote = seq("catalog promote");
    let points = [
        format!("after:{}", seq("orders fence")),
        format!("before:{orders_promote}"),
        format!("after:{orders_promote}"),
        format!("outcome:{}", seq("catalog make_sticky")),
        format!("before:{catalog_promote}"),
        format!("after:{catalog_promote}"),
        format!("checkpoint:{stages}"),
    ];
    let mut rows = vec![];
    for point in &points {
        crash(
            &ws,
            &["failover", "--to", "west", "--yes", "--output", "json"],
            point,
        );

        let r = ws.run(&["abort", "--output", "json"]);
        assert_eq!(
            r.code,
            0,
            "{point}: abort failed\nstdout:\n{}\nstderr:\n{}\n{}",
            r.stdout,
            r.stderr,
            mongo.describe()
        );
        let report = abort_report(&r);
        assert_eq!(report["status"], "aborted", "{point}: {report}");

        let pg_expected = if promoted_at(point, orders_promote, 0) {
            "west"
        } else {
            "east"
        };
        let seen = writable(&pg).await;
        assert_eq!(seen.len(), 1, "{point}: orders: {seen:?}");
        assert_eq!(seen[0].1, pg_expected, "{point}: orders");

        // catalog: where abort saw its one writable primary at the end.
        let catalog = report["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["store"] == "catalog")
            .unwrap()
            .clone();
        let decision = catalog["decision"].as_str().unwrap();
        let region = catalog["writable_primary"]
            .as_str()
            .and_then(|p| p.split_once('@'))
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| panic!("{point}: catalog has no writable primary: {catalog}"));
        let region = region.as_str();
        if promoted_at(point, catalog_promote, stages) && point.starts_with("after") {
            assert_eq!(region, "west", "{point}: catalog was promoted: {decision}");
        }
        // Exactly one primary clients can reach, in that region, and it
        // stays there: no priority takeover moves it back.
        for _ in 0..2 {
            assert!(
                mongo
                    .wait_for_primary_in(region, Duration::from_secs(10))
                    .await
                    .is_some(),
                "{point}: catalog primary in {region} ({decision})\n{}",
                mongo.describe()
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        rows.push(matrix_row(
            point,
            "east → west",
            &r,
            &format!(
                "orders primary {} in {}; catalog primary in {region}",
                seen[0].0, seen[0].1
            ),
        ));

        // Back to east for the next case (stores already there are skipped).
        let back = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
        assert_eq!(
            back.code, 0,
            "{point}: back to east\n{}\n{}",
            back.stdout, back.stderr
        );
        assert_eq!(writable(&pg).await[0].1, "east");
        assert!(mongo
            .wait_for_primary_in("east", Duration::from_secs(10))
            .await
            .is_some());
    }
    eprintln!(
        "combined planned switchover ({}):\n{}",
        steps.join(", "),
        rows.join("\n")
    );
}

/// An abort is an execution like any other: crashed itself, it is resumed
/// from its journal, or aborted in turn (re-planned from what the stores
/// show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_abort_is_resumed_or_aborted_again() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (steps, _) = plan_steps(&ws, "west", &[]);
    let fence = steps.iter().position(|s| s == "orders fence").unwrap() + 1;
    pg_write(&cluster, "before").await;
    for (abort_crash, then) in [("before:1", "abort"), ("after:1", "resume")] {
        crash(
            &ws,
            &["failover", "--to", "west", "--yes", "--output", "json"],
            &format!("after:{fence}"),
        );
        // The abort crashes at its own first step (the unfence).
        crash(&ws, &["abort", "--output", "json"], abort_crash);
        let list = ws.run(&["executions", "--output", "json"]);
        // One execution per line.
        let list = serde_json::Value::Array(list.events());
        let last = list.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "abort", "{list}");
        assert_eq!(last["status"], "unfinished", "{list}");

        let r = ws.run(&[then, "--output", "json"]);
        assert_eq!(
            r.code, 0,
            "{abort_crash} then {then}:\n{}\n{}",
            r.stdout, r.stderr
        );
        let seen = writable(&cluster).await;
        assert_eq!(
            seen,
            vec![("orders-east-1".to_string(), "east".to_string())],
            "{abort_crash} then {then}: the old primary takes writes"
        );
        // Nothing is left unfinished: a new failover may start.
        let list = ws.run(&["executions", "--output", "json"]);
        // One execution per line.
        let list = serde_json::Value::Array(list.events());
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|e| e["status"] == "aborted" || e["status"] == "succeeded"),
            "{list}"
        );
        streaming(&cluster, &ws, then).await;
    }
    assert_eq!(pg_tags(&cluster).await, vec!["before"]);
}
