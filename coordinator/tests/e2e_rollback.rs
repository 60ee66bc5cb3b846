//! Compensating rollback on a real PostgreSQL cluster: a planned switchover
//! east → west fails at every stage (the coordinator dies after each stage's
//! checkpoint, and right after the promotion is issued), and
//! `switchyard rollback ID` returns the store to east — unfencing what was
//! only fenced, rejoining and switching back what was promoted — with every
//! checkpoint of the rollback passed, one writable primary, and every
//! acknowledged write still there. A plan with `on_failure = "rollback"`
//! rolls itself back when a stage fails.

mod common;

use common::*;

/// The execution id of the newest journal.
fn latest_id(ws: &Workspace) -> String {
    ws.journal_files()
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".jsonl")
                .map(String::from)
        })
        .next_back()
        .expect("an execution")
}

/// Roll `id` back and check what the issue asks of a rollback.
async fn roll_back_and_check(
    ws: &Workspace,
    cluster: &switchyard_lab::postgres::PgCluster,
    id: &str,
    case: &str,
    tags: &[String],
) -> String {
    let r = ws.run(&["rollback", id, "--yes", "--output", "json"]);
    assert_eq!(
        r.code, 0,
        "{case}: stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    let events = r.events();
    let planned = events
        .iter()
        .find(|e| e["event"] == "rollback_planned")
        .unwrap_or_else(|| panic!("{case}: no preview: {}", r.stdout));
    let action = planned["stores"][0]["action"].as_str().unwrap().to_string();
    let checkpoints: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "checkpoint_finished")
        .collect();
    assert!(
        checkpoints.iter().all(|c| c["passed"] == true),
        "{case}: {checkpoints:?}"
    );
    let (_, region, _) = pg_primary(cluster).await.expect("a primary after rollback");
    assert_eq!(region, "east", "{case}: back where it started");
    let w = writable(cluster).await;
    assert_eq!(w.len(), 1, "{case}: one writable primary: {w:?}");
    assert_eq!(
        &pg_tags(cluster).await,
        tags,
        "{case}: nothing acknowledged lost"
    );
    // The rolled-back execution is closed; nothing is left unfinished.
    let list = ws.run(&["executions", "--output", "json"]);
    let list: serde_json::Value = serde_json::Value::Array(list.events());
    let rows = list.as_array().unwrap();
    let row = |id: &str| rows.iter().find(|e| e["execution_id"] == id).unwrap()["status"].clone();
    assert_eq!(row(id), "aborted", "{case}");
    assert!(
        rows.iter()
            .all(|e| e["status"] != "unfinished" && e["status"] != "failed"),
        "{case}: {rows:?}"
    );
    format!(
        "| {case} | {action} | {} checkpoints passed |",
        checkpoints.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_failure_at_every_stage_returns_to_east_with_checkpoints() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (steps, stages) = plan_steps(&ws, "west", &[]);
    let promote = steps
        .iter()
        .position(|s| s == "orders promote")
        .expect("a promote step")
        + 1;
    let mut points: Vec<String> = (1..=stages).map(|k| format!("checkpoint:{k}")).collect();
    points.insert(2, format!("after:{promote}"));
    let mut tags = vec![];
    let mut matrix = vec![];
    let mut rolled = vec![];
    for point in &points {
        let tag = format!("before-{point}");
        pg_write(&cluster, &tag).await;
        tags.push(tag);
        crash(
            &ws,
            &["failover", "--to", "west", "--yes", "--output", "json"],
            point,
        );
        let id = latest_id(&ws);
        matrix.push(roll_back_and_check(&ws, &cluster, &id, point, &tags).await);
        rolled.push(id);
    }
    eprintln!("{}", matrix.join("\n"));
    // A rolled-back execution is closed: rolling it back again is refused.
    let r = ws.run(&["rollback", &rolled[1], "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("there is nothing to roll back"),
        "{}",
        r.stderr
    );
    // The store was changed at every point after the first: the actions say so.
    assert!(matrix[0].contains("stays primary in east"), "{matrix:?}");
    assert!(
        matrix[1].contains("unfence the old primary in east"),
        "{matrix:?}"
    );
    assert!(matrix[2].contains("rejoin the old primary"), "{matrix:?}");
    assert!(
        matrix
            .last()
            .unwrap()
            .contains("planned switchover back to east"),
        "{matrix:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_on_failure_rollback_rolls_itself_back() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    pg_write(&cluster, "before").await;
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = ws.path("plan.toml");
    std::fs::write(&plan, format!("on_failure = \"rollback\"\n{}", r.stdout)).unwrap();
    // The stage after the fence fails before it is issued: the store is fenced.
    std::fs::write(
        ws.path("topology.safety.toml"),
        "[[hooks]]\nname = \"change-window\"\nat = \"pre_stage\"\n\
         command = \"[ \\\"$SWITCHYARD_STAGE\\\" != 3 ] || { echo 'change window closed' >&2; exit 1; }\"\n",
    )
    .unwrap();
    let r = ws.run(&["run", plan.to_str().unwrap(), "--yes", "--output", "json"]);
    assert_eq!(
        r.code, 4,
        "rolled back: stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains("failed and was rolled back by"),
        "{}",
        r.stderr
    );
    let planned = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "rollback_planned")
        .expect("the rollback is previewed");
    assert!(
        planned["stores"][0]["action"]
            .as_str()
            .unwrap()
            .contains("unfence the old primary in east"),
        "{planned}"
    );
    let events = r.events();
    let ended: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "execution_ended")
        .collect();
    assert_eq!(ended.len(), 2, "the run, then its rollback: {ended:?}");
    assert!(
        ended[0]["reason"]
            .as_str()
            .unwrap()
            .contains("pre_stage hook `change-window` failed: exit 1"),
        "{ended:?}"
    );
    assert_eq!(ended[1]["status"], "succeeded");
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    assert_eq!(writable(&cluster).await.len(), 1);
    assert_eq!(pg_tags(&cluster).await, vec!["before"]);
}
