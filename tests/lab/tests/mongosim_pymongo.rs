//! A second, independent client (pymongo) against the simulator: discovery,
//! w:"majority" writes, and failover after the primary region is cut.
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
    sim.wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("primary in east");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pymongo_check.py");
    let mut child = KillOnDrop(
        Command::new("python3")
            .arg(script)
            .arg(sim.uri())
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

    sim.cut_region("east");
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
    assert!(
        [sim.host("west-1"), sim.host("west-2")].contains(&Some(new_primary)),
        "pymongo followed the failover to west: {phase2}"
    );
    assert_eq!(phase2["count"], 11);
}
