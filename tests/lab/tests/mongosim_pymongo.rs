//! A second, independent client (pymongo) against the simulator: discovery,
//! w:"majority" writes, a planned hand-over (replSetFreeze, replSetStepDown
//! with a catch-up period, no w:1 write rolled back), and failover after the
//! primary region is cut.
//! Skipped (with a message) when `python3 -c 'import pymongo'` fails, unless
//! `SWITCHYARD_REQUIRE_PYMONGO=1` (set by scripts/test.sh, which installs
//! pymongo from PyPI), so CI cannot pass this check by skipping it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};

fn pymongo_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pymongo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_discovers_writes_and_fails_over() {
    if !pymongo_available() {
        assert!(
            std::env::var_os("SWITCHYARD_REQUIRE_PYMONGO").is_none(),
            "SWITCHYARD_REQUIRE_PYMONGO is set but `import pymongo` fails"
        );
        eprintln!("SKIPPED: pymongo is not installed (pip install pymongo)");
        return;
    }
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
        .await
        .expect("sim starts");
    let east = sim
        .wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("primary in east");
    // The hand-over pymongo drives: every electable member but west-1
    // frozen, so the step-down must wait for west-1 and hand it the election.
    let other_east = if east == "east-1" { "east-2" } else { "east-1" };
    let frozen = [sim.host(other_east), sim.host("west-2")].map(|h| h.expect("member"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pymongo_check.py");
    let mut child = KillOnDrop(
        Command::new("python3")
            .arg(script)
            .arg(sim.uri())
            .arg(frozen.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::task::spawn_blocking(move || {
        let l = lines.next();
        (l, lines)
    });
    let (line, lines) = first.await.unwrap();
    let phase1: serde_json::Value =
        serde_json::from_str(&line.expect("phase 1 line").expect("read")).expect("json");
    assert_eq!(phase1["set"], "rs0");
    assert_eq!(phase1["count"], 10);
    let primary = phase1["primary"].as_str().expect("primary").to_string();
    assert!(
        [sim.host("east-1"), sim.host("east-2")].contains(&Some(primary.as_str())),
        "pymongo found the east primary: {phase1}"
    );
    let hosts = phase1["hosts"].as_array().expect("hosts").len();
    assert_eq!(hosts, 5, "pymongo discovered every member: {phase1}");

    let next = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        let l = lines.next();
        (l, lines)
    });
    let (line, lines) = next.await.unwrap();
    let handover: serde_json::Value =
        serde_json::from_str(&line.expect("hand-over line").expect("read")).expect("json");
    assert_eq!(
        handover["freeze_on_primary"], 95,
        "replSetFreeze on the primary is NotSecondary: {handover}"
    );
    assert_eq!(
        handover["step_up_frozen"], 125,
        "a frozen member does not step up: {handover}"
    );
    assert_eq!(
        handover["primary"].as_str(),
        sim.host("west-1"),
        "the step-down handed over to the one unfrozen electable member: {handover}"
    );
    assert_eq!(
        handover["handover_count"], 5,
        "every w:1 write before the step-down is on the new primary: {handover}"
    );
    assert_eq!(sim.rolled_back_inserts(), 0, "nothing rolled back");
    assert_eq!(
        handover["unfrozen"],
        serde_json::json!(["unfreezing", "unfreezing"]),
        "{handover}"
    );

    sim.cut_region("west");
    child
        .0
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"cut\n")
        .expect("signal the script");
    let phase2 = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        lines.next()
    })
    .await
    .unwrap();
    let phase2: serde_json::Value =
        serde_json::from_str(&phase2.expect("phase 2 line").expect("read")).expect("json");
    assert_eq!(phase2["written"], true, "{phase2}");
    let new_primary = phase2["primary"].as_str().expect("new primary");
    assert_eq!(
        Some(new_primary),
        sim.host(other_east),
        "pymongo followed the failover to east, to the member it unfroze \
         ({east} is still in its step-down period): {phase2}"
    );
    assert_eq!(phase2["count"], 16);
}
