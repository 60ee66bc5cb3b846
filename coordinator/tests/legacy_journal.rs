//! Journals written by the version before the shared vocabulary (records
//! named by `type`, stages and steps from 0, `epoch` for the fencing token
//! and the store's term) still read, and an execution that version left
//! unfinished resumes after the upgrade. The fixtures under
//! `tests/fixtures/legacy/` were written by that version's `switchyard
//! failover` against the lab's PostgreSQL cluster, crashed on purpose with
//! `SWITCHYARD_CRASH_AT=checkpoint:2` (after the fence) and
//! `checkpoint:1` (after readiness).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use switchyard::executor::{Action, Executor};
use switchyard::journal::{encode_line, parse_journal, Record};
use switchyard::report::ExecutionReport;
use switchyard_controller::{FencingToken, Operation, Term};

const AFTER_FENCE: &str = "20261201T152851814-failover-e1";
const AFTER_READINESS: &str = "20261201T152924433-failover-e1";

fn fixture(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(format!("{id}.jsonl"))
}

#[test]
fn an_old_journal_reads_in_todays_vocabulary() {
    let path = fixture(AFTER_FENCE);
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("{\"type\":\"started\""),
        "not an old journal"
    );
    assert!(text.contains("\"stage\":0,"), "not 0-based");
    let scan = parse_journal(&path.display().to_string(), &bytes);
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
    assert_eq!(scan.records.len(), text.lines().count());

    // Its `epoch` fields are the fencing token and the store's term.
    match &scan.records[0] {
        Record::Started { fencing_token, .. } => assert_eq!(*fencing_token, FencingToken(1)),
        other => panic!("first record {other:?}"),
    }
    let observed: Vec<Option<Term>> = scan
        .records
        .iter()
        .filter_map(|r| match r {
            Record::CheckpointPassed { observed, .. } => Some(observed[0].term),
            _ => None,
        })
        .collect();
    assert_eq!(observed, [Some(Term(1)), Some(Term(1))]);

    // Its 0-based stages are the plan's first stages: the fence is step 1
    // of stage 2 once written today.
    let fence = scan
        .records
        .iter()
        .find(|r| {
            matches!(
                r,
                Record::Intent {
                    op: Operation::Fence,
                    ..
                }
            )
        })
        .unwrap();
    let line = String::from_utf8(encode_line(fence).unwrap()).unwrap();
    assert!(
        line.starts_with("{\"event\":\"intent\",\"seq\":2,\"stage\":2,\"step\":1,"),
        "{line}"
    );
    assert!(line.contains("\"fencing_token\":1,"), "{line}");

    // The state machine picks up where the old process stopped: waiting
    // for the target to replay the position the fence captured.
    let ex = Executor::replay(&scan.records).unwrap();
    match ex.next().as_slice() {
        [Action::Run { id, op, .. }] => {
            assert_eq!((id.stage, id.step), (2, 0));
            assert!(matches!(op, Operation::WaitForPosition { .. }), "{op:?}");
        }
        other => panic!("next {other:?}"),
    }

    // And reports number its stages from 1, with today's field names.
    let report = ExecutionReport::from_records(AFTER_FENCE, &scan.records);
    let stages: Vec<(usize, &str, bool)> = report
        .stages
        .iter()
        .map(|s| (s.stage, s.name.as_str(), s.passed))
        .collect();
    assert_eq!(stages[..2], [(1, "readiness", true), (2, "fence pg", true)]);
    assert!(report.stages[1].ops_duration_ms > 0, "{report:?}");
    assert!(report.stages[1].stage_wall_us > 0, "{report:?}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["stores"][0]["term"], 1);
    assert!(json["stages"][0].get("wall_us").is_none(), "{json}");
}

/// A user upgrades while an execution is unfinished: the new version
/// resumes the old journal on the real cluster, appends in today's
/// vocabulary, and hands out a fencing token above the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_the_old_version_left_unfinished_resumes_after_the_upgrade() {
    let cluster = pg_cluster("pg").await;
    let ws = Workspace::new(cluster.topology());
    let exec = ws.state.join("executions");
    std::fs::create_dir_all(&exec).unwrap();
    let journal = exec.join(format!("{AFTER_READINESS}.jsonl"));
    std::fs::copy(fixture(AFTER_READINESS), &journal).unwrap();
    // The old version kept its counter in `<state-dir>/epoch`.
    std::fs::write(ws.state.join("epoch"), "1\n").unwrap();

    let r = ws.run(&["resume", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let started = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "execution_started")
        .unwrap();
    assert_eq!(started["fencing_token"], 2, "{started}");
    assert_eq!(started["resumed"], true);
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");

    // Old lines stay as they were; every new one speaks today's words.
    let text = read(&journal);
    let old = std::fs::read_to_string(fixture(AFTER_READINESS)).unwrap();
    assert!(text.starts_with(&old));
    let new: Vec<serde_json::Value> = text[old.len()..]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(new[0]["event"], "resumed", "{new:?}");
    assert_eq!(new[0]["fencing_token"], 2);
    assert!(new
        .iter()
        .all(|v| v.get("type").is_none() && v.get("epoch").is_none()));
    let first_stage = new.iter().find_map(|v| v["stage"].as_u64());
    assert_eq!(first_stage, Some(2), "the stage after readiness: {new:?}");
    assert_eq!(new.last().unwrap()["event"], "finished");

    // `show` reads the mixed journal whole.
    let r = ws.run(&["show", AFTER_READINESS, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shown: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(shown["report"]["status"], "succeeded", "{shown}");
    assert_eq!(shown["report"]["processes"], 2);
    let stages: Vec<u64> = shown["report"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_u64().unwrap())
        .collect();
    assert_eq!(stages, [1, 2, 3, 4]);

    // Its start record names no store kinds (the old version kept none):
    // `show` takes them from the topology and still writes the captured
    // position and the wait as PostgreSQL does, `X/Y on timeline N`.
    assert!(!old.contains("store_kinds"));
    let r = ws.run(&["show", AFTER_READINESS, "--output", "text"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(lsn_on_timeline(&r.stdout, "has replayed "), "{}", r.stdout);
    assert!(lsn_on_timeline(&r.stdout, ", position "), "{}", r.stdout);
}
