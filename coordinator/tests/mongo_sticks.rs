//! MongoDB (wire-protocol simulator, real driver inside the `switchyard`
//! binary): the primary's region is cut, the surviving majority elects a
//! primary in west by itself, and `switchyard failover --to west` — a store
//! already primary there — still persists the preference (`make_sticky`,
//! checkpoint `preferred_in(west)`). When east heals, the primary stays:
//! watched over many priority-takeover delays of the simulator, never timed.

mod common;

use common::*;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_elected_itself_keeps_the_primary_when_the_old_one_heals() {
    let election_timeout = Duration::from_millis(300);
    let spec = MongoSimSpec {
        set_name: "catalog-rs".into(),
        store_name: "catalog".into(),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout,
        members: vec![
            SimMemberSpec::data("catalog-east-1", "east", 2.0),
            SimMemberSpec::data("catalog-east-2", "east", 2.0),
            SimMemberSpec::data("catalog-west-1", "west", 1.0),
            SimMemberSpec::data("catalog-west-2", "west", 1.0),
            SimMemberSpec::arbiter("catalog-south-arb", "south"),
        ],
    };
    let members = spec.members.len() as u32;
    let sim = MongoSim::start(spec).await.expect("simulator starts");
    assert!(sim
        .wait_for_primary_in("east", Duration::from_secs(20))
        .await
        .is_some());
    let ws = Workspace::new(&sim.topology("sticky-lab"));
    let r = ws.run(&["state"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // East is cut off; west + the witness are a majority and elect.
    sim.cut_region("east");
    assert!(
        sim.wait_for_primary_in("west", Duration::from_secs(30))
            .await
            .is_some(),
        "{}",
        sim.describe()
    );

    // The store is already primary in west: the plan still makes it stick.
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(plan_ops(&r.stdout), vec!["make_sticky"], "{}", r.stdout);
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let checked: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "checkpoint_finished")
        .inspect(|e| assert_eq!(e["passed"], true, "{e}"))
        .map(|e| e.to_string())
        .collect();
    assert!(!checked.is_empty());
    let journal = read(ws.journal_files().last().unwrap());
    assert!(journal.contains("preferred_in(west)"), "{journal}");

    // Heal, and wait until east is back as fresh secondaries: from then on
    // a priority takeover would be due within (rank + 1) election timeouts.
    sim.heal_region("east");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = ws.run(&["state", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        let members = v
            .pointer("/stores/0/state/members")
            .and_then(|m| m.as_array());
        let back = members.is_some_and(|ms| {
            ms.iter().all(|m| m["reachable"] == true)
                && ms.iter().filter(|m| m["region"] == "east").all(|m| {
                    m["role"] == "secondary"
                        && m["lag"]["millis"].as_u64().is_some_and(|l| l <= 2000)
                })
        });
        if back {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "east never rejoined:\n{}\n{}",
            r.stdout,
            sim.describe()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Watch for four times the slowest takeover the set could stage.
    let window = election_timeout * (members + 1) * 4;
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        let p = sim.primary();
        assert!(
            p.as_deref().is_none_or(|p| p.starts_with("catalog-west")),
            "the healed region took the primary back: {p:?}\n{}",
            sim.describe()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let p = sim.primary().expect("a primary after the window");
    assert!(p.starts_with("catalog-west"), "{p}");
}
