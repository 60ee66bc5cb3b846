//! Gates and execution/stage hooks on a real PostgreSQL cluster: every
//! refusal happens before any step is issued (the journal has no intent, the
//! store's timeline is unchanged) and names its rule; hooks get the
//! execution's facts, a pre-hook that times out stops the execution cleanly,
//! a failing post-hook does not.

mod common;

use common::*;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn write_policy(ws: &Workspace, text: &str) {
    std::fs::write(ws.path("topology.safety.toml"), text).unwrap();
}

/// Every journal line of the newest execution, as JSON.
fn latest_records(ws: &Workspace) -> Vec<serde_json::Value> {
    let files = ws.journal_files();
    let last = files
        .iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("an execution journal");
    read(last)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn intents(recs: &[serde_json::Value]) -> usize {
    recs.iter().filter(|r| r["event"] == "intent").count()
}

/// What a run told its caller: stderr, and with `--output json` the
/// reason of its `execution_ended` event.
fn said(r: &Run) -> String {
    let mut s = r.stderr.clone();
    for e in r.events() {
        if let Some(reason) = e["reason"].as_str() {
            s.push_str(reason);
            s.push('\n');
        }
    }
    s
}

/// Assert the last run was refused before any step, naming `rule`, and that
/// PostgreSQL is still primary in east on timeline `tli`.
async fn refused_before_any_step(
    ws: &Workspace,
    r: &Run,
    cluster: &switchyard_lab::postgres::PgCluster,
    tli: u32,
    rule: &str,
) -> Vec<serde_json::Value> {
    assert_eq!(
        r.code, 5,
        "{rule}: stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    let said = said(r);
    assert!(
        said.contains(&format!("gate `{rule}` refused before the plan started"))
            || said.contains(&format!("hook `{rule}` failed")),
        "{rule}: {said}"
    );
    assert!(
        said.contains("no store was changed and the execution is closed"),
        "{said}"
    );
    let recs = latest_records(ws);
    assert_eq!(intents(&recs), 0, "{rule}: nothing may be issued: {recs:?}");
    let (_, region, now) = pg_primary(cluster).await.unwrap();
    assert_eq!(
        (region.as_str(), now),
        ("east", tli),
        "{rule}: store untouched"
    );
    // Refused (closed before it changed any store), so the next attempt is
    // not blocked by it.
    let list = ws.run(&["executions", "--output", "json"]);
    let list: serde_json::Value = serde_json::Value::Array(list.events());
    assert_eq!(
        list.as_array().unwrap().last().unwrap()["status"],
        "refused"
    );
    recs
}

/// A one-shot HTTP server on a free port answering every request with
/// `status` and `body`, for the HTTP GET gate (spoken to by the real client).
async fn http_answer(status: &'static str, body: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_gates_and_a_timed_out_pre_hook_stop_before_any_step() {
    let cluster = pg_cluster("orders").await;
    let mut topology = cluster.topology().clone();
    // N+1 capacity: moving away from east leaves west + south 90 for 100.
    for (r, (cap, load)) in
        topology
            .regions
            .iter_mut()
            .zip([(100.0, 60.0), (50.0, 20.0), (40.0, 20.0)])
    {
        r.capacity = Some(cap);
        r.load = Some(load);
    }
    let ws = Workspace::new(&topology);
    let (_, _, tli) = pg_primary(&cluster).await.unwrap();
    let failover = ["failover", "--to", "west", "--yes", "--output", "json"];

    let r = ws.run(&failover);
    let recs = refused_before_any_step(&ws, &r, &cluster, tli, "capacity").await;
    assert!(
        said(&r).contains(
            "moving to west: losing east leaves capacity 90 (west 50 + south 40) for a load of 100 \
             (east 60 + west 20 + south 20): short by 10"
        ),
        "{}",
        r.stderr
    );
    assert!(recs
        .iter()
        .any(|g| g["event"] == "gate" && g["rule"] == "capacity" && g["passed"] == false));

    // Enough capacity now; the other gates, one at a time.
    topology.regions[2].capacity = Some(60.0);
    std::fs::write(&ws.topology, topology.to_toml()).unwrap();
    write_policy(&ws, "[gates]\nmin_healthy_regions = 4\n");
    let r = ws.run(&failover);
    refused_before_any_step(&ws, &r, &cluster, tli, "min_healthy_regions").await;
    assert!(
        said(&r)
            .contains("3 healthy after the move (east, west, south); the policy needs at least 4"),
        "{}",
        r.stderr
    );

    write_policy(
        &ws,
        "[[gates.check]]\nname = \"stream-starts\"\ncommand = \"echo 'starts/s: 12'; echo 'metric dipped' >&2; exit 2\"\n",
    );
    let r = ws.run(&failover);
    refused_before_any_step(&ws, &r, &cluster, tli, "check:stream-starts").await;
    assert!(said(&r).contains("exit 2"), "{}", r.stderr);
    assert!(
        said(&r).contains("stderr: metric dipped; expected exit 0"),
        "{}",
        r.stderr
    );

    let url = http_answer("503 Service Unavailable", "degraded").await;
    write_policy(
        &ws,
        &format!("[[gates.check]]\nname = \"edge\"\nhttp_get = \"{url}\"\nexpect_body = \"ok\"\n"),
    );
    let r = ws.run(&failover);
    refused_before_any_step(&ws, &r, &cluster, tli, "check:edge").await;
    assert!(
        said(&r).contains("status 503, expected 200"),
        "{}",
        r.stderr
    );

    // A pre-execution hook that outlives its timeout: killed, journaled,
    // the execution stops cleanly.
    let marker = ws.path("post-ran");
    write_policy(
        &ws,
        &format!(
            "[[hooks]]\nname = \"drain\"\nat = \"pre_execution\"\ncommand = \"sleep 30\"\ntimeout_ms = 300\n\n\
             [[hooks]]\nname = \"notify\"\nat = \"post_execution\"\ncommand = \"echo $SWITCHYARD_STATUS > {}\"\n",
            marker.display()
        ),
    );
    let r = ws.run(&failover);
    let recs = refused_before_any_step(&ws, &r, &cluster, tli, "drain").await;
    assert!(
        said(&r).contains("pre_execution hook `drain` failed: timed out after 300 ms"),
        "{}",
        r.stderr
    );
    let hook = recs
        .iter()
        .find(|h| h["event"] == "hook" && h["name"] == "drain")
        .expect("the hook is journaled");
    assert_eq!(hook["timed_out"], true);
    assert_eq!(
        read(&marker).trim(),
        "failed",
        "post_execution hooks run after a failure too"
    );
    let show = ws.run(&["show", "latest"]);
    assert!(
        show.stdout
            .contains("pre_execution hook drain FAILED: timed out"),
        "{}",
        show.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_get_the_facts_and_flap_damping_and_failback_delay_hold_the_way_back() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let log = ws.path("hooks.log");
    let l = log.display();
    write_policy(
        &ws,
        &format!(
            "[gates]\nmin_healthy_regions = 2\nflap_damping_s = 3600\n\n\
             [[gates.check]]\nname = \"ok\"\ncommand = \"true\"\n\n\
             [[hooks]]\nat = \"pre_execution\"\ncommand = \"echo pre_execution $SWITCHYARD_EXECUTION_ID $SWITCHYARD_FROM_REGIONS $SWITCHYARD_TO_REGION $SWITCHYARD_STORES $SWITCHYARD_MODE >> {l}\"\n\n\
             [[hooks]]\nat = \"pre_stage\"\ncommand = \"echo pre_stage $SWITCHYARD_STAGE $SWITCHYARD_STAGE_NAME >> {l}\"\n\n\
             [[hooks]]\nname = \"page\"\nat = \"post_stage\"\ncommand = \"echo post_stage $SWITCHYARD_STAGE >> {l}; exit 1\"\n\n\
             [[hooks]]\nat = \"post_execution\"\ncommand = \"echo post_execution $SWITCHYARD_STATUS >> {l}\"\n"
        ),
    );
    let (_, stages) = plan_steps(&ws, "west", &[]);
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(
        r.code, 0,
        "a failing post-stage hook is not fatal:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains("post_stage hook `page` failed: exit 1"),
        "{}",
        r.stderr
    );
    assert_eq!(pg_primary(&cluster).await.unwrap().1, "west");
    let id = r
        .events()
        .iter()
        .find(|e| e["event"] == "execution_started")
        .unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<String> = read(&log).lines().map(String::from).collect();
    assert_eq!(
        lines[0],
        format!("pre_execution {id} east west orders planned")
    );
    // Every stage: pre before post, in order, with the stage's name.
    let pre: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("pre_stage"))
        .collect();
    let post: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("post_stage"))
        .collect();
    assert_eq!((pre.len(), post.len()), (stages, stages), "{lines:?}");
    assert!(pre[0].starts_with("pre_stage 1 "), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "post_execution succeeded");
    let recs = latest_records(&ws);
    let gates: Vec<String> = recs
        .iter()
        .filter(|g| g["event"] == "gate")
        .map(|g| format!("{}@{}", g["rule"].as_str().unwrap(), g["stage"]))
        .collect();
    // Start gates once; the external check again before every later stage.
    assert_eq!(
        gates[..4],
        [
            "regions_left@1",
            "min_healthy_regions@1",
            "flap_damping@1",
            "check:ok@1"
        ]
    );
    assert_eq!(gates.len(), 4 + stages - 1, "{gates:?}");

    // Straight back: flap damping refuses, naming the execution that just ended.
    let (_, _, tli) = pg_primary(&cluster).await.unwrap();
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    assert!(
        said(&r).contains("gate `flap_damping` refused before the plan started"),
        "{}",
        r.stderr
    );
    assert!(
        said(&r).contains(&format!("execution {id} changed stores and ended")),
        "{}",
        r.stderr
    );
    assert_eq!(intents(&latest_records(&ws)), 0);
    let (_, region, now) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), now), ("west", tli));

    // Failing back to the primary region needs it observed healthy for long
    // enough; one `state` sample a moment ago is not that.
    write_policy(&ws, "[gates]\nfailback_delay_s = 3600\n");
    assert_eq!(ws.run(&["state"]).code, 0);
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    assert!(
        said(&r).contains("gate `failback_delay` refused"),
        "{}",
        r.stderr
    );
    assert!(
        said(&r).contains("failing back to east needs it healthy for 3600 s"),
        "{}",
        r.stderr
    );
    assert_eq!(pg_primary(&cluster).await.unwrap().2, tli);
    // A short delay that the samples cover lets it through.
    write_policy(&ws, "[gates]\nfailback_delay_s = 1\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(pg_primary(&cluster).await.unwrap().1, "east");
    assert!(Path::new(&ws.state.join("region-health.jsonl")).exists());
}
