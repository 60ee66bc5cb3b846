//! `--output json` of every command against a real PostgreSQL cluster: one
//! compact object per line, each with `schema` and `ts` (RFC 3339, UTC); a
//! plan printed that way runs back with `run`.

mod common;

use common::*;
use serde_json::Value;

/// Every line of `out` as a JSON object carrying `schema` and `ts`, valid
/// against its schema in docs/schemas/.
fn lines(out: &str, schema: &str) -> Vec<Value> {
    let file = schema
        .strip_prefix("switchyard.")
        .and_then(|s| s.strip_suffix("/v1"))
        .map(|k| format!("{k}.schema.json"))
        .unwrap();
    validate(out, &file);
    assert!(!out.is_empty(), "no output");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["schema"], schema, "{l}");
            let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {l}"));
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
                "{ts}"
            );
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_one_object_per_line_with_schema_and_ts() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());

    let r = ws.run(&["state", "--output", "json"]);
    assert_eq!(lines(&r.stdout, "switchyard.state/v1").len(), 1);

    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = lines(&r.stdout, "switchyard.plan/v1");
    assert_eq!(plan.len(), 1);
    let file = ws.path("plan.json");
    std::fs::write(&file, &r.stdout).unwrap();

    // The printed plan runs back as it is.
    let r = ws.run(&["run", file.to_str().unwrap(), "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let events = lines(&r.stdout, "switchyard.event/v1");
    assert!(events.iter().any(|e| e["event"] == "op_started"));
    let report = events
        .iter()
        .find(|e| e["event"] == "report")
        .expect("report");
    assert_eq!(report["report"]["status"], "succeeded");
    // Stages are 1-based in events and reports alike.
    let first = events
        .iter()
        .find(|e| e["event"] == "stage_started")
        .unwrap();
    assert_eq!(first["stage"], 1);
    assert_eq!(report["report"]["stages"][0]["stage"], 1);

    let r = ws.run(&["executions", "--output", "json"]);
    let rows = lines(&r.stdout, "switchyard.execution/v1");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "succeeded");

    let r = ws.run(&["show", "latest", "--output", "json"]);
    let shown = lines(&r.stdout, "switchyard.show/v1");
    assert_eq!(shown.len(), 1);
    assert!(shown[0]["journal"]
        .as_array()
        .is_some_and(|j| !j.is_empty()));

    // Not a terminal and no --output: JSON, and it says so on stderr.
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("stdout is not a terminal: printing JSON lines"),
        "{}",
        r.stderr
    );
    lines(&r.stdout, "switchyard.event/v1");

    // A command that prints nothing of its own still prints one object:
    // nothing to do, an error, a command line that does not parse.
    let r = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let res = lines(&r.stdout, "switchyard.result/v1");
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["outcome"], "ok");
    assert!(
        res[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to do")),
        "{}",
        r.stdout
    );
    let r = ws.run(&["failover", "--to", "wset", "--yes", "--output", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let res = lines(&r.stdout, "switchyard.result/v1");
    assert_eq!(
        (res[0]["exit_code"].as_i64(), &res[0]["outcome"]),
        (Some(2), &"usage".into())
    );
    assert!(r.stderr.contains("did you mean `west`?"), "{}", r.stderr);
    let r = ws.run(&[
        "executions",
        "close",
        "nosuch",
        "--reason",
        "x",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(lines(&r.stdout, "switchyard.result/v1").len(), 1);
    let r = ws.run(&["plan", "--to", "west", "--output", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let res = lines(&r.stdout, "switchyard.result/v1");
    assert!(
        res[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("plan failover --to west")),
        "{}",
        r.stdout
    );
}
