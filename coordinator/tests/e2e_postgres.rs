//! End to end on a real PostgreSQL cluster (three regions, streaming
//! replication) started by the lab: the real `switchyard` binary drills,
//! crashes at every operation boundary and resumes, refuses a second
//! execution, and rejects bad plans before touching anything.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn step_count(ws: &Workspace, to: &str) -> (usize, usize) {
    let r = ws.run(&["plan", "failover", "--to", to, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let steps = stages
        .iter()
        .map(|s| s["steps"].as_array().map_or(0, |v| v.len()))
        .sum();
    (steps, stages.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_moves_postgres_and_back_with_every_checkpoint_validated() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (_, region, tli0) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    pg_write(&cluster, "before-drill").await;

    let r = ws.run(&["drill", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let events = r.events();
    let checkpoints: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "checkpoint_finished")
        .collect();
    let (_, stages) = step_count(&ws, "west");
    assert_eq!(
        checkpoints.len(),
        2 * stages,
        "one checkpoint per stage, both ways"
    );
    assert!(checkpoints.iter().all(|c| c["passed"] == true));
    // Promote checkpoints name the target region in each direction, in order.
    let promote_primaries: Vec<String> = checkpoints
        .iter()
        .filter(|c| {
            c["observed"][0]["expected"]
                .as_str()
                .unwrap()
                .starts_with("primary_in(")
        })
        .map(|c| c["observed"][0]["primary"].as_str().unwrap().to_string())
        .collect();
    assert!(
        promote_primaries.first().unwrap().ends_with("@west"),
        "{promote_primaries:?}"
    );
    assert!(
        promote_primaries.last().unwrap().ends_with("@east"),
        "{promote_primaries:?}"
    );
    let report = events
        .iter()
        .find(|e| e["event"] == "drill_report")
        .expect("drill report");
    assert_eq!(report["status"], "succeeded");
    assert!(
        report["out"]["stores"][0]["rto_ms"].as_u64().is_some(),
        "{report}"
    );
    assert!(
        report["back"]["stores"][0]["rto_ms"].as_u64().is_some(),
        "{report}"
    );

    // On the store: back in east, two promotions, nothing acknowledged lost.
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    assert_eq!(tli, tli0 + 2, "one promotion each way");
    assert_eq!(pg_tags(&cluster).await, vec!["before-drill"]);

    // Both executions are listed and shown.
    let r = ws.run(&["executions", "--output", "json"]);
    // One execution per line.
    let list = serde_json::Value::Array(r.events());
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "succeeded"));
    let r = ws.run(&["show", "latest"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("finished: every checkpoint passed"),
        "{}",
        r.stdout
    );

    // Failing over to where every store already is changes nothing.
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    assert_eq!(ws.journal_files().len(), 2);
    assert_eq!(pg_primary(&cluster).await.unwrap().2, tli0 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_then_resume_promotes_exactly_once() {
    crash_at_every_boundary_then_resume(pg_cluster("orders").await).await;
}

/// The deferred fence leaves the old primary stopped between the fence and
/// the rejoin: a resume in a new process must see it fenced from its data
/// directory (pg_controldata, standby.signal), not from a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_the_deferred_fence_then_resume_promotes_exactly_once() {
    crash_at_every_boundary_then_resume(pg_cluster_deferred("orders").await).await;
}

async fn crash_at_every_boundary_then_resume(cluster: switchyard_lab::postgres::PgCluster) {
    let ws = Workspace::new(cluster.topology());
    let (steps, stages) = step_count(&ws, "west");
    let mut points = vec![];
    for kind in ["before", "after", "outcome"] {
        for n in 1..=steps {
            points.push(format!("{kind}:{n}"));
        }
    }
    for n in 1..=stages {
        points.push(format!("checkpoint:{n}"));
    }
    let mut written = vec![];
    for (i, point) in points.iter().enumerate() {
        let (_, to, tli0) = east_west(&cluster).await;
        let tag = format!("row-{i}");
        pg_write(&cluster, &tag).await;
        written.push(tag);
        crash(
            &ws,
            &["failover", "--to", to, "--yes", "--output", "json"],
            point,
        );

        // A new failover is refused until the interrupted one is resumed.
        let refused = ws.run(&["failover", "--to", to, "--yes"]);
        assert_eq!(refused.code, 3, "{point}: {}", refused.stderr);
        assert!(refused.stderr.contains("unfinished"), "{}", refused.stderr);

        let r = ws.run(&["resume", "--output", "json"]);
        assert_eq!(
            r.code, 0,
            "{point}: resume failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        let (_, region, tli) = pg_primary(&cluster).await.expect("a primary after resume");
        assert_eq!(region, to, "{point}: primary in the target region");
        assert_eq!(
            tli,
            tli0 + 1,
            "{point}: exactly one promotion (timeline advanced once)"
        );
        assert_eq!(
            pg_tags(&cluster).await,
            written,
            "{point}: acknowledged writes kept"
        );

        // Resume re-issued only what had no journaled outcome.
        let journal = read(ws.journal_files().last().unwrap());
        let count = |t: &str| {
            let needle = format!("\"event\":\"{t}\"");
            journal.lines().filter(|l| l.contains(&needle)).count()
        };
        let reissued = match point.split_once(':').unwrap() {
            ("before", _) | ("after", _) => 1,
            _ => 0,
        };
        assert_eq!(
            count("intent"),
            steps + reissued,
            "{point}: journal:\n{journal}"
        );
        assert_eq!(count("outcome"), steps, "{point}: journal:\n{journal}");
        assert_eq!(count("finished"), 1, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_execution_is_refused_while_one_holds_the_lock() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    // A plan whose checkpoint cannot be met keeps its execution (and the
    // lock) busy for its stage timeout.
    let plan = ws.path("slow.toml");
    std::fs::write(
        &plan,
        common::hold_the_lock_plan(&cluster.topology().name, 30000),
    )
    .unwrap();
    let mut first = ws
        .command(&["run", plan.to_str().unwrap(), "--yes", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = ws
            .journal_files()
            .first()
            .is_some_and(|f| read(f).contains("\"event\":\"outcome\""));
        if busy {
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            panic!("first execution ended early: {status}");
        }
        assert!(Instant::now() < deadline, "first execution never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = Kill(first);

    let second = ws.run(&["failover", "--to", "west", "--yes"]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("another execution holds the lock"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("`switchyard run`"),
        "names the holder: {}",
        second.stderr
    );
    assert_eq!(
        ws.journal_files().len(),
        1,
        "the refused command journaled nothing"
    );

    drop(first);
    // The killed execution is unfinished: abort it; the store never moved.
    let r = ws.run(&["abort"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("primary orders-east-1 in east"),
        "{}",
        r.stdout
    );
    let (_, region, tli0) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    // Two `failover` commands started at the same instant: one executes,
    // the other is refused by the lock (or, had the first already finished,
    // finds nothing to do). Either way: one execution, one promotion.
    let spawn = || {
        ws.command(&["failover", "--to", "west", "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    eprintln!("concurrent failovers exited with {codes:?}");
    let loser = if a.status.code() == Some(0) && b.status.code() != Some(0) {
        &b
    } else {
        &a
    };
    let loser_err = String::from_utf8_lossy(&loser.stderr);
    match codes {
        [Some(0), Some(3)] => assert!(
            loser_err.contains("another execution holds the lock"),
            "{loser_err}"
        ),
        [Some(0), Some(0)] => {
            let errs = format!(
                "{}{}",
                String::from_utf8_lossy(&a.stderr),
                String::from_utf8_lossy(&b.stderr)
            );
            assert!(errs.contains("nothing to do"), "{errs}");
        }
        other => panic!(
            "unexpected exit codes {other:?}:\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    }
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(
        (region.as_str(), tli),
        ("west", tli0 + 1),
        "exactly one promotion"
    );
    assert_eq!(
        ws.journal_files().len(),
        3,
        "the aborted run, the abort, and one failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_are_rejected_naming_the_line_before_anything_runs() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (_, _, tli0) = pg_primary(&cluster).await.unwrap();
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let good = r.stdout;

    let cases = [
        // A typo'd store.
        (
            good.replacen(
                "store = \"orders\"\nop = \"promote\"",
                "store = \"ordres\"\nop = \"promote\"",
                1,
            ),
            "ordres",
            "unknown store `ordres`",
        ),
        // An expectation PostgreSQL cannot report.
        (
            good.replacen(
                "\"primary_in(west)\",",
                "\"primary_in(west)\",\n    \"preferred_in(west)\",",
                1,
            ),
            "preferred_in(west)",
            "cannot express `preferred_in(west)`",
        ),
        // A dependency cycle introduced by the plan.
        (
            good.replacen(
                "mode = \"planned\"\n",
                "mode = \"planned\"\n\n[depends_on]\norders = [\"orders\"]\n",
                1,
            ),
            "orders = [\"orders\"]",
            "dependency cycle",
        ),
    ];
    for (i, (text, needle, message)) in cases.iter().enumerate() {
        assert_ne!(text, &good, "case {i} changed nothing");
        let file = ws.path(&format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let r = ws.run(&["run", file.to_str().unwrap(), "--yes"]);
        assert_eq!(r.code, 2, "case {i}: {}", r.stderr);
        let expected = format!("{}:{line}:", file.display());
        assert!(
            r.stderr.contains(&expected),
            "case {i}: expected {expected} in:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains(message), "case {i}: {}", r.stderr);
        assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    }
    // No --yes and no terminal to ask on: declined, exit 4.
    let r = ws.run(&["failover", "--to", "west"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    assert!(ws.journal_files().is_empty(), "no execution was started");
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(
        (region.as_str(), tli),
        ("east", tli0),
        "the store was not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_with_the_primary_region_down() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (old, region, tli0) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    pg_write(&cluster, "before-outage").await;
    // Give the standbys a moment to replay the write before the region dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.stop(&old).await.unwrap();

    // A planned switchover cannot fence a primary that is gone.
    let r = ws.run(&[
        "plan", "failover", "--to", "west", "--forced", "--output", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ops = plan_ops(&r.stdout);
    assert!(
        !ops.iter().any(|o| o == "fence" || o == "rejoin"),
        "{ops:?}"
    );

    // The controller never saw the standbys' lag while the primary was up,
    // so a forced promotion without accepting data loss is refused (exit 5),
    // and nothing changes.
    let r = ws.run(&[
        "failover", "--to", "west", "--forced", "--yes", "--output", "json",
    ]);
    assert_eq!(r.code, 5, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let ended = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "execution_ended")
        .unwrap();
    assert_eq!(ended["status"], "refused");
    assert!(
        ended["reason"].as_str().unwrap().contains("LagTooHigh"),
        "{ended}"
    );
    assert!(pg_primary(&cluster).await.is_none(), "still no primary");

    let r = ws.run(&[
        "failover",
        "--to",
        "west",
        "--forced",
        "--accept-data-loss",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let report = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "report")
        .expect("final report");
    let store = &report["report"]["stores"][0];
    assert!(store["rto_ms"].as_u64().is_some(), "{report}");
    assert!(store["data_loss"].as_str().is_some(), "{report}");
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");
    assert_eq!(tli, tli0 + 1);
    assert_eq!(pg_tags(&cluster).await, vec!["before-outage"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_fence_unfences_and_reports_every_store() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (primary, _, tli0) = pg_primary(&cluster).await.unwrap();
    pg_write(&cluster, "before").await;
    // Crash right after the fence's outcome is journaled: the old primary
    // refuses writes and nothing has been promoted.
    let r = ws.run_env(
        &["failover", "--to", "west", "--yes", "--output", "json"],
        "SWITCHYARD_CRASH_AT",
        "outcome:2",
    );
    assert_eq!(r.code, -1, "{}", r.stderr);
    assert!(
        pg_primary(&cluster).await.is_none(),
        "fenced: no writable primary"
    );

    let r = ws.run(&["abort", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let events = r.events();
    let v = events
        .iter()
        .find(|e| e["event"] == "abort_report")
        .expect("an abort report");
    assert_eq!(v["status"], "aborted");
    assert!(
        v["stores"][0]["decision"]
            .as_str()
            .unwrap()
            .contains("unfence"),
        "{v}"
    );
    // The abort ran as an execution: its unfence went through the driver.
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "op_started" && e["op"] == "unfence"),
        "{}",
        r.stdout
    );
    assert!(
        v["stores"][0]["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("primary {primary} in east")),
        "{v}"
    );
    // The same member serves writes again. (PostgreSQL's controller fences
    // by restarting the primary in recovery, so unfencing it ends recovery,
    // which may open a new timeline on that same member.)
    let (p, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((p.as_str(), region.as_str()), (primary.as_str(), "east"));
    assert!(tli == tli0 || tli == tli0 + 1, "{tli0} → {tli}");
    pg_write(&cluster, "after").await;
    assert_eq!(pg_tags(&cluster).await, vec!["before", "after"]);

    // Aborted executions are not resumable, and new ones may start.
    let r = ws.run(&["resume"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = ws.run(&["executions", "--output", "json"]);
    // One execution per line.
    let list = serde_json::Value::Array(r.events());
    assert_eq!(list[0]["status"], "aborted");
    assert_eq!(list[1]["kind"], "abort");
    assert_eq!(list[1]["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checkpoint_records_expected_and_observed_and_resumes() {
    use switchyard_controller::{Controller, OpContext, Operation};
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    // Promote west, then demand that followers follow it without ever
    // re-pointing them: the checkpoint cannot hold.
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "toml"]);
    let full = r.stdout;
    let cut = full
        .find("[[stages]]\nname = \"re-point and rejoin\"")
        .unwrap();
    let text = full[..cut].replacen(
        "expect = [\"primary_in(west)\"]",
        "expect = [\n    \"primary_in(west)\",\n    \"followers_follow\",\n]",
        1,
    );
    let text = text.replace(
        "name = \"promote orders\"\ntimeout_ms = 120000",
        "name = \"promote orders\"\ntimeout_ms = 3000",
    );
    assert!(
        text.contains("followers_follow") && text.contains("timeout_ms = 3000"),
        "{text}"
    );
    let plan = ws.path("strict.toml");
    std::fs::write(&plan, &text).unwrap();

    let r = ws.run(&["run", plan.to_str().unwrap(), "--yes", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let failed = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "checkpoint_finished" && e["passed"] == false)
        .expect("a failed checkpoint");
    let mismatch = failed["observed"][0]["mismatch"].as_str().unwrap();
    assert!(mismatch.contains("orders-south-1 follows"), "{mismatch}");
    let show = ws.run(&["show", "latest"]);
    assert!(show.stdout.contains("NOT reached"), "{}", show.stdout);
    assert!(
        show.stdout
            .contains("expected primary_in(west), followers_follow; observed:"),
        "{}",
        show.stdout
    );

    // An operator re-points the followers and rejoins the old primary by
    // hand; resume validates the
    // checkpoint again without repeating the promotion.
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");
    let ctrl =
        switchyard_postgres::PostgresController::from_store(&cluster.topology().stores[0]).unwrap();
    for op in [Operation::RepointFollowers, Operation::Rejoin] {
        ctrl.execute(&op, &OpContext::adhoc()).await.unwrap();
    }
    let r = ws.run(&["resume", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let issued = r
        .events()
        .iter()
        .filter(|e| e["event"] == "op_started")
        .count();
    assert_eq!(issued, 0, "nothing re-issued: {}", r.stdout);
    assert_eq!(
        pg_primary(&cluster).await.unwrap().2,
        tli,
        "no second promotion"
    );
}
