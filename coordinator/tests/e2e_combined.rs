//! End to end with two stores of different kinds: a real PostgreSQL cluster
//! and the MongoDB wire-protocol simulator (reached by the real `mongodb`
//! driver inside the `switchyard` binary), three regions, one store depending
//! on the other — in both directions.

mod common;

use common::*;
use std::time::Duration;

fn promote_order(ws: &Workspace, journal_index: usize) -> Vec<String> {
    let files = ws.journal_files();
    read(&files[journal_index])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "intent" && r["op"]["op"] == "promote")
        .map(|r| r["store"].as_str().unwrap().to_string())
        .collect()
}

async fn drill(mongo_depends_on_pg: bool) {
    let pg = pg_cluster("orders").await;
    let mongo = mongo_sim("catalog").await;
    let ws = Workspace::new(&merged(&pg, &mongo, mongo_depends_on_pg));
    let (_, _, tli0) = pg_primary(&pg).await.unwrap();
    let term0 = mongo.term(&mongo.primary().unwrap());

    let r = ws.run(&["drill", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let events = r.events();
    let checkpoints: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "checkpoint_finished")
        .collect();
    assert!(!checkpoints.is_empty());
    assert!(checkpoints.iter().all(|c| c["passed"] == true));
    let report = events
        .iter()
        .find(|e| e["event"] == "drill_report")
        .unwrap();
    assert_eq!(report["status"], "succeeded");
    for dir in ["out", "back"] {
        for s in report[dir]["stores"].as_array().unwrap() {
            assert!(s["rto_ms"].as_u64().is_some(), "{dir}: {s}");
        }
    }

    // Dependency order in both directions.
    let first = if mongo_depends_on_pg {
        "orders"
    } else {
        "catalog"
    };
    let second = if mongo_depends_on_pg {
        "catalog"
    } else {
        "orders"
    };
    for j in 0..2 {
        assert_eq!(promote_order(&ws, j), vec![first, second], "execution {j}");
    }

    // On the stores: both back in east, each promoted once per direction.
    let (_, region, tli) = pg_primary(&pg).await.unwrap();
    assert_eq!((region.as_str(), tli), ("east", tli0 + 2));
    let primary = mongo
        .wait_for_primary_in("east", Duration::from_secs(5))
        .await
        .expect("catalog primary back in east");
    assert!(mongo.term(&primary) > term0, "elections happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_mongodb_depending_on_postgres() {
    drill(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_postgres_depending_on_mongodb() {
    drill(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_of_the_combined_plan_then_resume() {
    let pg = pg_cluster("orders").await;
    let mongo = mongo_sim("catalog").await;
    let ws = Workspace::new(&merged(&pg, &mongo, true));
    let r = ws.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap().len();
    let steps: usize = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["steps"].as_array().unwrap().len())
        .sum();
    let mut points = vec![];
    for kind in ["before", "after", "outcome"] {
        for n in 1..=steps {
            points.push(format!("{kind}:{n}"));
        }
    }
    for n in 1..=stages {
        points.push(format!("checkpoint:{n}"));
    }
    for point in &points {
        let (_, to, tli0) = east_west(&pg).await;
        let mongo_primary0 = mongo.primary().expect("a MongoDB primary");
        let term0 = mongo.term(&mongo_primary0);
        crash(
            &ws,
            &["failover", "--to", to, "--yes", "--output", "json"],
            point,
        );
        let r = ws.run(&["resume", "--output", "json"]);
        assert_eq!(r.code, 0, "{point}:\n{}\n{}", r.stdout, r.stderr);
        let (_, region, tli) = pg_primary(&pg).await.unwrap();
        assert_eq!(
            (region.as_str(), tli),
            (to, tli0 + 1),
            "{point}: PostgreSQL promoted once"
        );
        let p = mongo.primary().expect("a MongoDB primary");
        assert!(p.contains(to), "{point}: catalog primary {p} in {to}");
        // One election per failover: the term (MongoDB's epoch) moved by one.
        assert_eq!(
            mongo.term(&p),
            term0 + 1,
            "{point}: catalog elected once\n{}",
            mongo.describe()
        );
        let journal = read(ws.journal_files().last().unwrap());
        assert_eq!(
            journal.matches("\"event\":\"finished\"").count(),
            1,
            "{point}"
        );
    }
}
