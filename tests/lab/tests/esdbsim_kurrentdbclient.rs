//! An independent client (kurrentdbclient from PyPI) against the EventStoreDB
//! simulator: discovery through gossip, appends on the leader, reads from a
//! follower, resign and re-election over the HTTP admin API, nothing lost.
//! Skipped (with a message) when `python3 -c 'import kurrentdbclient'` fails,
//! unless `SWITCHYARD_REQUIRE_KURRENTDBCLIENT=1` (set by scripts/test.sh,
//! which installs it), so CI cannot pass this check by skipping it.

use std::process::{Command, Stdio};
use std::time::Duration;
use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrentdbclient_discovers_appends_reads_from_a_follower_and_survives_a_resign() {
    if !switchyard_lab::python_client::available(
        "import kurrentdbclient",
        "SWITCHYARD_REQUIRE_KURRENTDBCLIENT",
        "kurrentdbclient",
    ) {
        return;
    }
    let regions: Vec<String> = ["east", "west", "south"].map(String::from).to_vec();
    let sim = EsdbSim::start(EsdbSimSpec::for_regions("ledger", &regions))
        .await
        .expect("sim starts");
    let leader0 = sim
        .wait_for_leader_in("east", Duration::from_secs(30))
        .await
        .expect("leader in east");
    let seeds: Vec<String> = sim
        .spec()
        .nodes
        .iter()
        .map(|n| sim.endpoint(&n.name).unwrap())
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kurrentdbclient_check.py");
    let seeds = seeds.join(",");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", "python3", script, &seeds])
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed\nstdout:\n{stdout}\nstderr:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sim.describe()
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let (p1, p2, p3) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(p1["members"], 3, "{p1}");
    assert_eq!(p1["count"], 10, "{p1}");
    assert_eq!(
        p1["leader"].as_str(),
        sim.endpoint(&leader0).as_deref(),
        "the client found the leader through gossip: {p1}"
    );
    // The resigning leader lost the tie; the raised priority decided.
    assert_eq!(p2["leader"], p2["preferred"], "{p2}");
    let now = sim.leader().expect("a leader");
    assert_eq!(p2["leader"].as_str(), sim.endpoint(&now).as_deref(), "{p2}");
    assert_eq!(p2["count"], 15, "{p2}");
    // The batch (Streams.BatchAppend) landed whole, after the 15, and the
    // one at a wrong expected position did not.
    assert_eq!(p3["count"], 20, "{p3}");
    assert!(
        p3["wrong_version"].as_str().unwrap().contains("19"),
        "the refusal names the current position: {p3}"
    );
    let stream = p2["stream"].as_str().unwrap();
    let last = sim.stream_ids(&now, stream).unwrap();
    assert_eq!(last.len(), 20, "{}", sim.describe());
    for n in &sim.spec().nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sim.stream_ids(&n.name, stream).unwrap().len() < 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} holds {} of 20 events\n{}",
                n.name,
                sim.stream_ids(&n.name, stream).unwrap().len(),
                sim.describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
