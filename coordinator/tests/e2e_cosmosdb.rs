//! End to end against the Cosmos DB simulator (ARM, Entra ID token
//! endpoint, data plane over HTTPS), through the real `switchyard` binary:
//! planned failover and back with checkpoints on both planes, a crash in the
//! middle of an ARM long-running operation and a resume that polls the same
//! operation, invalid priorities refused before anything runs, and forced
//! failovers reporting the loss bound of every consistency level.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use switchyard_lab::cosmossim::{Consistency, CosmosSim, CosmosSimSpec};
use switchyard_topology::Topology;

struct Env {
    sim: CosmosSim,
    ws: Arc<Workspace>,
    _files: tempfile::TempDir,
}

async fn env(spec: CosmosSimSpec, edit: impl FnOnce(&mut Topology)) -> Env {
    let sim = CosmosSim::start(spec).await.expect("simulator starts");
    let files = tempfile::tempdir().unwrap();
    let mut t = sim.topology("cosmos-lab", files.path()).await.unwrap();
    edit(&mut t);
    Env {
        sim,
        ws: Arc::new(Workspace::new(&t)),
        _files: files,
    }
}

fn spec() -> CosmosSimSpec {
    let mut s = CosmosSimSpec::for_regions("catalog", &["east", "west", "south"]);
    s.op_duration = Duration::from_millis(1200);
    s
}

/// Run the binary off the runtime's threads (the simulator lives on them).
async fn run(ws: &Arc<Workspace>, args: &[&str]) -> Run {
    let ws = ws.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ws.run(&a)
    })
    .await
    .unwrap()
}

/// `failover --to west --forced --yes --output json`.
async fn forced_to_west(ws: &Arc<Workspace>) -> Run {
    run(
        ws,
        &[
            "failover", "--to", "west", "--forced", "--yes", "--output", "json",
        ],
    )
    .await
}

fn journal(ws: &Workspace, i: usize) -> Vec<serde_json::Value> {
    read(&ws.journal_files()[i])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn assert_checkpoints_passed(r: &Run) -> Vec<serde_json::Value> {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let cps: Vec<_> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "checkpoint_finished")
        .collect();
    assert!(!cps.is_empty(), "{}", r.stdout);
    assert!(cps.iter().all(|c| c["passed"] == true), "{cps:?}");
    cps
}

fn region(s: &str) -> String {
    s.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_failover_and_back_with_checkpoints_on_both_planes() {
    let e = env(spec(), |_| {}).await;
    // The stage with the ARM operation gets a timeout that fits minutes.
    let r = run(
        &e.ws,
        &["plan", "failover", "--to", "west", "--output", "json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let promote = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "promote catalog")
        .expect("a promote stage");
    assert_eq!(promote["timeout_ms"], 600_000, "{promote}");

    for (n, to) in [(0, "west"), (1, "east")] {
        let r = run(
            &e.ws,
            &["failover", "--to", to, "--yes", "--output", "json"],
        )
        .await;
        let cps = assert_checkpoints_passed(&r);
        let last = cps.last().unwrap();
        let obs = &last["observed"][0];
        assert_eq!(obs["primary"], format!("catalog-{to}@{to}"), "{last}");
        // Both planes, as the simulator holds them: ARM's write region and
        // the data plane's only writable region.
        assert_eq!(
            e.sim.write_regions().await.unwrap(),
            (Some(region(to)), vec![region(to)])
        );
        // The operation URL was journaled while it ran, and the outcome says
        // how it ended.
        let recs = journal(&e.ws, n);
        let progress: Vec<_> = recs.iter().filter(|r| r["event"] == "progress").collect();
        assert_eq!(progress.len(), 1, "{recs:?}");
        let token: serde_json::Value =
            serde_json::from_str(progress[0]["token"].as_str().unwrap()).unwrap();
        assert_eq!(token["action"], "failoverPriorityChange");
        let url = token["operation"].as_str().unwrap();
        assert!(url.contains("/operationsStatus/"), "{url}");
        let notes = recs
            .iter()
            .filter(|r| r["event"] == "outcome")
            .flat_map(|r| {
                r["result"]["outcome"]["notes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|n| n.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("Succeeded")
                    && url.starts_with(n.split(' ').nth(2).unwrap_or("-"))),
            "{notes:?}"
        );
    }
    let ops = e.sim.operations().await.unwrap();
    assert_eq!(ops.len(), 2, "one operation per move: {ops:?}");
    assert!(ops
        .iter()
        .all(|o| o.1 == "failoverPriorityChange" && o.2 == "Succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_the_operation_then_resume_polls_the_same_one() {
    let e = env(spec(), |_| {}).await;
    // Operations stay InProgress until released, so the crash lands inside one.
    e.sim.control("hold").await.unwrap();
    let mut child =
        e.ws.command(&["failover", "--to", "west", "--yes", "--output", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    // Wait until the operation is journaled (then the URL is durable).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let journaled = !e.ws.journal_files().is_empty()
            && journal(&e.ws, 0).iter().any(|r| r["event"] == "progress");
        if journaled {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = e.sim.operations().await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    let (id, action, status, polls_before) = before[0].clone();
    assert_eq!(
        (action.as_str(), status.as_str()),
        ("failoverPriorityChange", "InProgress")
    );

    let ws = e.ws.clone();
    let resume = tokio::task::spawn_blocking(move || ws.run(&["resume", "--output", "json"]));
    // The resumed coordinator polls the journaled operation...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while e.sim.operations().await.unwrap()[0].3 <= polls_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operation is not polled again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and starts no other while it runs.
    assert_eq!(e.sim.operations().await.unwrap().len(), 1);
    e.sim.control("release").await.unwrap();
    let r = resume.await.unwrap();
    assert_checkpoints_passed(&r);
    let after = e.sim.operations().await.unwrap();
    assert_eq!(after.len(), 1, "a second operation was started: {after:?}");
    assert_eq!(after[0].0, id);
    assert_eq!(after[0].2, "Succeeded");
    assert_eq!(
        e.sim.write_regions().await.unwrap(),
        (Some(region("west")), vec![region("west")])
    );
    let recs = journal(&e.ws, 0);
    let resumed_note = recs.iter().filter(|r| r["event"] == "outcome").any(|r| {
        r.to_string()
            .contains("resumed polling the journaled failoverPriorityChange operation")
    });
    assert!(resumed_note, "{recs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_priorities_are_refused_before_anything_runs() {
    // Two locations with priority 0.
    let e = env(spec(), |t| {
        t.stores[0].members[1].failover_priority = Some(0);
    })
    .await;
    let r = run(
        &e.ws,
        &["failover", "--to", "west", "--yes", "--output", "json"],
    )
    .await;
    assert_ne!(r.code, 0, "{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("failover_priority"), "{all}");
    assert_eq!(
        e.sim.arm_requests().await.unwrap(),
        0,
        "ARM was called: {all}"
    );
    // On the compose backing the next attach waits until this one is gone.
    drop(e);

    // A location the account does not have: refused by readiness, before
    // any operation.
    let e = env(spec(), |t| {
        let az = t.stores[0].connection.azure.as_mut().unwrap();
        az.locations.insert("south".into(), "Lab Mars".into());
    })
    .await;
    let r = run(
        &e.ws,
        &["failover", "--to", "west", "--yes", "--output", "json"],
    )
    .await;
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("Lab Mars"),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        e.sim.operations().await.unwrap().is_empty(),
        "{:?}",
        e.sim.operations().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_reports_the_loss_bound_of_each_consistency_level() {
    let levels: [(&str, Option<u64>, Option<u64>); 5] = [
        ("Strong", Some(0), Some(0)),
        ("BoundedStaleness", Some(100), Some(5000)),
        ("Session", None, None),
        ("ConsistentPrefix", None, None),
        ("Eventual", None, None),
    ];
    for (level, writes, millis) in levels {
        let mut s = spec();
        s.consistency = Consistency {
            level: level.into(),
            ..Consistency::default()
        };
        let e = env(s, |_| {}).await;
        e.sim.control("outage east").await.unwrap();
        let r = forced_to_west(&e.ws).await;
        assert_checkpoints_passed(&r);
        let recs = journal(&e.ws, 0);
        let promote = recs
            .iter()
            .filter(|r| r["event"] == "outcome")
            .find(|r| {
                !r["result"]["outcome"]["data_loss"].is_null()
                    && r.to_string().contains("offlineRegion")
            })
            .unwrap_or_else(|| panic!("{level}: no promote outcome with an estimate: {recs:?}"));
        let est = &promote["result"]["outcome"]["data_loss"];
        assert_eq!(est["writes"].as_u64(), writes, "{level}: {est}");
        assert_eq!(est["millis"].as_u64(), millis, "{level}: {est}");
        assert!(
            est["note"].as_str().unwrap().contains(level),
            "{level}: {est}"
        );
        let ops = e.sim.operations_started().await.unwrap();
        assert_eq!(ops.get("offlineRegion"), Some(&1), "{level}: {ops:?}");
        assert_eq!(
            e.sim.write_regions().await.unwrap(),
            (Some(region("west")), vec![region("west")])
        );
    }

    // With a declared bound an unknown loss is refused unless accepted.
    let e = env(spec(), |t| t.stores[0].max_lag_ms = Some(1000)).await;
    e.sim.control("outage east").await.unwrap();
    let r = forced_to_west(&e.ws).await;
    assert_eq!(r.code, 5, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(e.sim.operations().await.unwrap().is_empty());
    let r = run(
        &e.ws,
        &[
            "failover",
            "--to",
            "west",
            "--forced",
            "--accept-data-loss",
            "--yes",
            "--output",
            "json",
        ],
    )
    .await;
    assert_checkpoints_passed(&r);
    // Failback: the lost region returns and a planned failover brings it
    // online (onlineRegion) and writes back.
    e.sim.control("restore east").await.unwrap();
    let r = run(
        &e.ws,
        &["failover", "--to", "east", "--yes", "--output", "json"],
    )
    .await;
    assert_checkpoints_passed(&r);
    assert_eq!(
        e.sim.write_regions().await.unwrap(),
        (Some(region("east")), vec![region("east")])
    );
    let ops = e.sim.operations_started().await.unwrap();
    assert_eq!(ops.get("onlineRegion"), Some(&1), "{ops:?}");
}

/// After a forced failover the lost region heals while the account is
/// already primary in the target: the planned path to that target rejoins
/// it — `onlineRegion`, back as a read region in the failover priorities —
/// instead of answering "nothing to do" and leaving it offline for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_region_rejoins_while_the_account_is_already_in_the_target() {
    let e = env(spec(), |_| {}).await;
    e.sim.control("outage east").await.unwrap();
    let r = forced_to_west(&e.ws).await;
    assert_checkpoints_passed(&r);
    let started =
        |ops: &std::collections::BTreeMap<String, usize>| ops.get("onlineRegion").copied();

    // Still lost: nothing can rejoin yet, so there is nothing to do.
    let r = run(&e.ws, &["failover", "--to", "west", "--yes"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    assert_eq!(started(&e.sim.operations_started().await.unwrap()), None);

    e.sim.control("restore east").await.unwrap();
    // East answers again but stays offline until rejoined: observed so.
    let east = east_member(&e.ws).await;
    assert_eq!(east["awaits_rejoin"], true, "{east}");
    assert_eq!(east["role"], "secondary", "{east}");
    let r = run(
        &e.ws,
        &["plan", "failover", "--to", "west", "--output", "json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.trim().is_empty(),
        "a plan, not nothing to do: {}",
        r.stderr
    );
    assert!(
        plan_ops(&r.stdout).contains(&"rejoin".to_string()),
        "the plan rejoins east: {}",
        r.stdout
    );
    let r = run(
        &e.ws,
        &["failover", "--to", "west", "--yes", "--output", "json"],
    )
    .await;
    assert_checkpoints_passed(&r);
    let ops = e.sim.operations_started().await.unwrap();
    assert_eq!(started(&ops), Some(1), "{ops:?}");
    assert_eq!(
        e.sim.write_regions().await.unwrap(),
        (Some(region("west")), vec![region("west")]),
        "writes stay in west"
    );
    // Back as a read region, in the failover order after west.
    let east = east_member(&e.ws).await;
    assert!(east.get("awaits_rejoin").is_none(), "{east}");
    assert_eq!(east["replicating"], true, "{east}");
    let order: Vec<(String, u32)> = e
        .sim
        .state()
        .await
        .unwrap()
        .locations
        .iter()
        .map(|l| (l.region.clone(), l.priority))
        .collect();
    let mut prios: Vec<u32> = order.iter().map(|l| l.1).collect();
    prios.sort_unstable();
    assert_eq!(prios, vec![0, 1, 2], "one priority each: {order:?}");
    assert!(order.contains(&(region("west"), 0)), "{order:?}");
    // Settled now: nothing more to do.
    let r = run(&e.ws, &["failover", "--to", "west", "--yes"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    assert_eq!(started(&e.sim.operations_started().await.unwrap()), Some(1));
}

/// East's member as `switchyard state --output json` observes it.
async fn east_member(ws: &Arc<Workspace>) -> serde_json::Value {
    let r = run(ws, &["state", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("state JSON: {e}: {}\n{}", r.stdout, r.stderr));
    v["stores"][0]["state"]["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["region"] == "east").cloned())
        .unwrap_or_else(|| panic!("no east member: {v}"))
}
