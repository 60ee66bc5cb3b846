//! The words patronictl users expect, against a real PostgreSQL cluster:
//! `switchover` is the planned move and refuses when the old primary cannot
//! be fenced; `failover` keeps working as before (planned, or `--forced`).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_is_planned_and_refuses_without_a_primary_to_fence() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    pg_write(&cluster, "before").await;
    let r = ws.run(&["switchover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ops = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "op_started")
        .map(|e| e["op"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(ops.contains(&"fence".to_string()), "{ops:?}");
    let (p, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");

    // The new primary dies: nothing to fence, so no switchover.
    cluster.kill(&p).unwrap();
    let r = ws.run(&["switchover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("switchover refused, nothing was done: store `orders`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("failover --to east --forced"),
        "{}",
        r.stderr
    );
    assert!(ws.journal_files().len() == 1, "no execution started");
    // `failover` works as it always did.
    let r = ws.run(&[
        "failover",
        "--to",
        "east",
        "--forced",
        "--accept-data-loss",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
