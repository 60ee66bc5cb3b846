//! End to end through the `switchyard` binary against the EventStoreDB
//! cluster simulator: a crash at every operation boundary, then resume,
//! moves the leader exactly once and keeps every acknowledged append.

mod common;

use common::*;
use kurrentdb::{AppendToStreamOptions, Client, EventData, StreamState};
use std::time::Duration;
use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};

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

/// Append one event and return once the leader acknowledged it; a fresh
/// client per try, since kurrentdb 1.2 keeps its channel to a node that failed.
async fn append(sim: &EsdbSim, id: uuid::Uuid) {
    for _ in 0..200 {
        let client = Client::new(sim.connection_string().parse().unwrap()).unwrap();
        let ev = EventData::binary("test", b"x".to_vec().into()).id(id);
        let opts = AppendToStreamOptions::default().stream_state(StreamState::Any);
        if client.append_to_stream("e2e", &opts, ev).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("append {id} never acknowledged:\n{}", sim.describe());
}

fn leader_epoch(sim: &EsdbSim) -> (String, String, i64) {
    let name = sim.leader().expect("a leader");
    let region = sim
        .spec()
        .nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap()
        .region
        .clone();
    let epoch = sim.epoch(&name).unwrap();
    (name, region, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_then_resume_moves_the_leader_exactly_once() {
    let regions: Vec<String> = ["east", "west", "south"].map(String::from).to_vec();
    let sim = EsdbSim::start(EsdbSimSpec::for_regions("ledger", &regions))
        .await
        .unwrap();
    sim.wait_for_leader_in("east", Duration::from_secs(30))
        .await
        .expect("a leader in east");
    let ws = Workspace::new(&sim.topology("esdb-e2e"));
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
    for point in &points {
        let (_, from, epoch0) = leader_epoch(&sim);
        let to = if from == "east" { "west" } else { "east" };
        let id = uuid::Uuid::new_v4();
        append(&sim, id).await;
        written.push(id);

        let r = ws.run_env(
            &["failover", "--to", to, "--yes", "--output", "json"],
            "SWITCHYARD_CRASH_AT",
            point,
        );
        assert_eq!(
            r.code, -1,
            "{point}: expected the failpoint to abort; stderr:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("failpoint"), "{point}: {}", r.stderr);
        let refused = ws.run(&["failover", "--to", to, "--yes"]);
        assert_eq!(refused.code, 3, "{point}: {}", refused.stderr);

        let r = ws.run(&["resume", "--output", "json"]);
        assert_eq!(
            r.code,
            0,
            "{point}: resume failed\nstdout:\n{}\nstderr:\n{}\n{}",
            r.stdout,
            r.stderr,
            sim.describe()
        );
        let (leader, region, epoch) = leader_epoch(&sim);
        assert_eq!(region, to, "{point}: leader in the target region");
        assert_eq!(
            epoch,
            epoch0 + 1,
            "{point}: exactly one election\n{}",
            sim.describe()
        );
        let ids = sim.stream_ids(&leader, "e2e").unwrap();
        assert_eq!(ids, written, "{point}: acknowledged appends kept, in order");

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
