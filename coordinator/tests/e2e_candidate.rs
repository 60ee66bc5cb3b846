//! `--candidate MEMBER` end to end with the real `switchyard` binary: on a
//! real PostgreSQL cluster with two standbys in the target region, the
//! chosen standby becomes primary — also when the run crashed between
//! stages and was resumed — and bad candidates are refused with exit 2
//! before anything is touched; on the MongoDB simulator with two data
//! members in the target region the lower-priority one the operator chose
//! is elected and stays primary.

mod common;

use common::*;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};

/// The candidate fields and the checkpoint expectations of a plan printed
/// as JSON.
fn plan_candidates(json: &str) -> (Vec<String>, Vec<String>) {
    let plan: serde_json::Value = serde_json::from_str(json).expect("plan JSON");
    let stages = plan["stages"].as_array().expect("stages");
    let cands = stages
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap().iter())
        .filter_map(|s| s["candidate"].as_str().map(|c| format!("{} {c}", s["op"])))
        .collect();
    let expects = stages
        .iter()
        .flat_map(|s| s["checkpoint"].as_array().unwrap().iter())
        .flat_map(|c| c["expect"].as_array().unwrap().iter())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    (cands, expects)
}

/// `orders` on real PostgreSQL: a primary and a standby in east, two
/// standbys in west.
async fn two_by_two() -> PgCluster {
    let mut spec = PgClusterSpec::new(["east", "west"]);
    spec.store = "orders".into();
    spec.extra_standbys = vec!["west".into(), "east".into()];
    PgCluster::start(spec).await.expect("lab cluster starts")
}

/// Each command line exits 2 with its words on stderr.
fn refused_as_bad_input(ws: &Workspace, cases: &[(Vec<&str>, &str)]) {
    for (args, want) in cases {
        let r = ws.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_promotes_the_chosen_standby_and_refuses_bad_ones() {
    let cluster = two_by_two().await;
    let ws = Workspace::new(cluster.topology());
    let (p0, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!((p0.as_str(), region.as_str()), ("orders-east-1", "east"));
    pg_write(&cluster, "before").await;

    // Refused as bad input (exit 2), naming the member and why, before
    // anything is observed or journaled.
    refused_as_bad_input(
        &ws,
        &[
        (
            vec!["switchover", "--to", "west", "--candidate", "orders-wset-2", "--yes"],
            "no store has a member named `orders-wset-2` (did you mean `orders-west-2`?)",
        ),
        (
            vec!["failover", "--to", "west", "--candidate", "orders-east-1", "--yes"],
            "member `orders-east-1` of store `orders` is in region `east`, not in the target region `west`",
        ),
        (
            vec!["plan", "failover", "--to", "west", "--candidate", "billing=orders-west-1"],
            "unknown store `billing`",
        ),
        (
            vec![
                "failover", "--to", "west", "--forced", "--candidate", "orders-west-1",
                "--candidate", "orders-west-2", "--yes",
            ],
            "two candidates for store `orders`",
        ),
        ],
    );
    // A member that can never be primary: hidden in a copy of the topology.
    let mut hidden = cluster.topology().clone();
    for m in &mut hidden.stores[0].members {
        if m.name == "orders-west-2" {
            m.hidden = true;
            m.priority = 0.0;
        }
    }
    let ws_hidden = Workspace::new(&hidden);
    let r = ws_hidden.run(&[
        "plan",
        "failover",
        "--to",
        "west",
        "--candidate",
        "orders-west-2",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`orders-west-2` of store `orders` cannot become primary: it is hidden"),
        "{}",
        r.stderr
    );
    assert!(ws.journal_files().is_empty(), "a refusal journaled nothing");
    assert_eq!(pg_primary(&cluster).await.unwrap().0, "orders-east-1");

    // The controller by itself takes the standby holding the most WAL;
    // choose orders-west-1 and check that exactly it is promoted.
    let r = ws.run(&[
        "plan",
        "failover",
        "--to",
        "west",
        "--candidate",
        "orders-west-1",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (cands, expects) = plan_candidates(&r.stdout);
    assert_eq!(
        cands,
        [
            "\"check_readiness\" orders-west-1",
            "\"wait_for_position\" orders-west-1",
            "\"promote\" orders-west-1"
        ],
        "{}",
        r.stdout
    );
    assert!(
        expects.iter().any(|e| e == "primary_is(orders-west-1)"),
        "{expects:?}"
    );
    let r = ws.run(&[
        "plan",
        "failover",
        "--to",
        "west",
        "--candidate",
        "orders-west-1",
    ]);
    assert!(
        r.stdout.contains("promote orders-west-1 in west (planned)"),
        "{}",
        r.stdout
    );

    // Crash after the fence stage's checkpoint, then resume: the journal's
    // plan names the member, so the resumed run promotes it.
    let args = [
        "switchover",
        "--to",
        "west",
        "--candidate",
        "orders-west-1",
        "--yes",
        "--output",
        "json",
    ];
    crash(&ws, &args, "checkpoint:2");
    let r = ws.run(&["resume", "--output", "json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let (p1, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!((p1.as_str(), region.as_str()), ("orders-west-1", "west"));
    assert_eq!(
        pg_tags(&cluster).await,
        ["before"],
        "nothing acknowledged lost"
    );

    // Back east, choosing east's second member this time: not the former
    // primary, which the controller would rejoin and could pick.
    let r = ws.run(&[
        "failover",
        "--to",
        "east",
        "--candidate",
        "orders-east-2",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(pg_primary(&cluster).await.unwrap().0, "orders-east-2");

    // The primary is in east already, on another member than the one
    // chosen: a move within a region is refused, nothing done (exit 5).
    let r = ws.run(&[
        "failover",
        "--to",
        "east",
        "--candidate",
        "orders-east-1",
        "--yes",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "orders-east-2 is already primary in east, not the chosen candidate orders-east-1"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(pg_primary(&cluster).await.unwrap().0, "orders-east-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_elects_the_chosen_member_and_keeps_it() {
    // west-1 outranks west-2: left to itself the set elects west-1.
    let spec = MongoSimSpec {
        set_name: "catalog-rs".into(),
        store_name: "catalog".into(),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        members: vec![
            SimMemberSpec::data("catalog-east-1", "east", 3.0),
            SimMemberSpec::data("catalog-west-1", "west", 2.0),
            SimMemberSpec::data("catalog-west-2", "west", 1.0),
            SimMemberSpec::arbiter("catalog-south-arb", "south"),
        ],
    };
    let mut sim = MongoSim::start(spec).await.expect("simulator starts");
    assert!(sim
        .wait_for_primary_in("east", Duration::from_secs(20))
        .await
        .is_some());
    let ws = Workspace::new(&sim.topology("catalog-lab"));
    let r = ws.run(&[
        "failover",
        "--to",
        "west",
        "--candidate",
        "catalog-south-arb",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is in region `south`"), "{}", r.stderr);

    let r = ws.run(&[
        "switchover",
        "--to",
        "west",
        "--candidate",
        "catalog-west-2",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(
        sim.primary().as_deref(),
        Some("catalog-west-2"),
        "{}",
        sim.describe()
    );
    // Priority takeover would hand it to west-1 within a few election
    // timeouts if the priorities did not put west-2 on top; they do.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.primary().as_deref(),
        Some("catalog-west-2"),
        "{}",
        sim.describe()
    );

    // The same through `switchyard serve`: the body's `candidate`, and the
    // CLI's `--server` mode carrying `--candidate`.
    let tokens = ws.path("tokens");
    let operator = serve::token(&ws, &tokens, "operator");
    let server = serve::Server::start(&ws, &tokens, "n1", &[]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/executions", server.url))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"to": "east", "candidate": "catalog-west-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("member `catalog-west-1` of store `catalog` is in region `west`, not in the target region `east`"),
        "{body}"
    );
    let doc: serde_json::Value = http
        .get(format!("{}/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["components"]["schemas"]["StartBody"]["properties"]["candidate"].is_object(),
        "{}",
        doc["components"]["schemas"]["StartBody"]
    );
    let remote = |args: &[&str]| {
        let o = ws
            .command(&[&["--server", server.url.as_str()], args].concat())
            .env("SWITCHYARD_TOKEN", &operator)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = remote(&[
        "plan",
        "failover",
        "--to",
        "east",
        "--candidate",
        "catalog=catalog-east-1",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let (cands, _) = plan_candidates(&out);
    assert!(
        cands.iter().any(|c| c == "\"promote\" catalog-east-1"),
        "{cands:?}"
    );
    let (code, out, err) = remote(&[
        "failover",
        "--to",
        "east",
        "--candidate",
        "catalog-east-1",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        sim.primary().as_deref(),
        Some("catalog-east-1"),
        "{}",
        sim.describe()
    );
    drop(server);
    sim.shutdown();
}

/// `drill --candidate` promotes the chosen member on the way out, and
/// `rollback --candidate` returns the store to the chosen member of the
/// region it started in — by default to the member it moved from — on a
/// real PostgreSQL cluster with two members in each region; bad candidates
/// are refused with failover's words, exit 2, nothing journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_and_rollback_promote_the_chosen_member() {
    let cluster = two_by_two().await;
    let ws = Workspace::new(cluster.topology());
    assert_eq!(pg_primary(&cluster).await.unwrap().0, "orders-east-1");
    pg_write(&cluster, "before").await;

    refused_as_bad_input(
        &ws,
        &[
        (
            vec!["drill", "--to", "west", "--candidate", "orders-east-2", "--yes"],
            "member `orders-east-2` of store `orders` is in region `east`, not in the target region `west`",
        ),
        (
            vec!["drill", "--to", "west", "--candidate", "orders-wset-2", "--yes"],
            "no store has a member named `orders-wset-2` (did you mean `orders-west-2`?)",
        ),
        (
            vec![
                "drill", "--to", "west", "--candidate", "orders-west-1", "--candidate",
                "orders-west-2", "--yes",
            ],
            "two candidates for store `orders`",
        ),
        ],
    );
    assert!(ws.journal_files().is_empty(), "a refusal journaled nothing");

    // Each west standby in turn, so at least one is not the controller's
    // own pick: the way out promotes exactly it; the way back comes home.
    for chosen in ["orders-west-2", "orders-west-1"] {
        let r = ws.run(&[
            "drill",
            "--to",
            "west",
            "--candidate",
            chosen,
            "--yes",
            "--output",
            "json",
        ]);
        assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        let events = r.events();
        let report = events
            .iter()
            .find(|e| e["event"] == "drill_report")
            .expect("a drill_report");
        assert!(
            report["out"]
                .to_string()
                .contains(&format!("{chosen}@west")),
            "{report}"
        );
        assert_eq!(pg_primary(&cluster).await.unwrap().1, "east");
    }

    // A switchover that crashed after its last step (every member follows
    // west-1, the last checkpoint never ran), rolled back twice: to the
    // chosen member, then by default to the member it moved from.
    let (ops, _) = plan_steps(&ws, "west", &["--candidate", "orders-west-1"]);
    let last = format!("outcome:{}", ops.len());
    let crashed_switchover = |ws: &Workspace| {
        crash(
            ws,
            &[
                "switchover",
                "--to",
                "west",
                "--candidate",
                "orders-west-1",
                "--yes",
                "--output",
                "json",
            ],
            &last,
        )
    };
    let (moved_from, _, _) = pg_primary(&cluster).await.unwrap();
    let other = if moved_from == "orders-east-1" {
        "orders-east-2"
    } else {
        "orders-east-1"
    };
    crashed_switchover(&ws);
    assert_eq!(pg_primary(&cluster).await.unwrap().0, "orders-west-1");
    let r = ws.run(&["rollback", "--candidate", "orders-west-2", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "member `orders-west-2` of store `orders` is in region `west`, not in the target region `east`"
        ),
        "{}",
        r.stderr
    );
    let r = ws.run(&[
        "rollback",
        "--candidate",
        other,
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "back to east, promoting {other} (chosen by --candidate)"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(pg_primary(&cluster).await.unwrap().0, other);

    crashed_switchover(&ws);
    let r = ws.run(&["rollback", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "back to east, promoting {other} (the member it moved from)"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(pg_primary(&cluster).await.unwrap().0, other);
    assert_eq!(
        pg_tags(&cluster).await,
        ["before"],
        "nothing acknowledged lost"
    );
}
