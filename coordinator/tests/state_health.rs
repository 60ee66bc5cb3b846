//! `switchyard state` against a real PostgreSQL cluster: health is what was
//! observed (reachable, replicating from the primary, within the lag bound),
//! with the reason when not; an unfinished execution and a store without a
//! writable primary come first; region headings follow today's primaries.

mod common;

use common::*;
use std::time::Duration;

fn member_line<'a>(out: &'a str, member: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(member))
        .unwrap_or_else(|| panic!("no line for {member}:\n{out}"))
}

/// Wait (generously) until `state` reports what `done` looks for.
fn state_until(ws: &Workspace, done: impl Fn(&Run) -> bool) -> Run {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = ws.run(&["state"]);
        if done(&r) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_unreachable_standbys_are_not_healthy_and_say_why() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    pg_write(&cluster, "warm-up").await;
    let r = state_until(&ws, |r| r.code == 0);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(
        out.starts_with("east — primary of every store (topology role: primary)\n"),
        "{out}"
    );
    assert!(out.contains("west — primary of no store (topology role: secondary)"));
    assert!(
        member_line(out, "orders-west-1").contains("secondary  healthy"),
        "{out}"
    );
    // Positions as PostgreSQL writes them, with the store's own timeline.
    assert!(
        out.contains("at 0/") && out.contains(" on timeline 1"),
        "{out}"
    );
    assert!(
        out.contains(
            "orders     primary orders-east-1 in east, store's timeline 1, 3/3 members healthy"
        ),
        "{out}"
    );

    // West stops replaying while the primary writes 8 MiB more than the bound.
    let west = cluster.connect("orders-west-1").await.unwrap();
    west.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let primary = cluster.connect("orders-east-1").await.unwrap();
    primary
        .batch_execute(
            "CREATE TABLE bulk AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 20000)",
        )
        .await
        .unwrap();
    let r = state_until(&ws, |r| r.stdout.contains("over the 8.0 MiB bound"));
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    let line = member_line(&r.stdout, "orders-west-1");
    assert!(line.contains("secondary  unhealthy: "), "{line}");
    assert!(
        line.contains("MiB behind, over the 8.0 MiB bound (max_lag_bytes)"),
        "{line}"
    );
    assert!(
        r.stdout.contains("store says: replay paused"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("2/3 members healthy"), "{}", r.stdout);
    west.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();

    // South goes away: unreachable, and the reason is the connection error.
    cluster.stop("orders-south-1").await.unwrap();
    let r = state_until(&ws, |r| {
        r.stdout.contains("unhealthy: unreachable") && !r.stdout.contains("over the")
    });
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    assert!(
        member_line(&r.stdout, "orders-south-1").contains("down       unhealthy: unreachable"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("2/3 members healthy"), "{}", r.stdout);

    // The unreachable member is logged: without colour into a pipe, and as
    // one JSON object per line with --log-format json.
    let r = ws.run_env(&["state"], "RUST_LOG", "debug");
    assert!(!r.stderr.is_empty(), "no log lines at debug");
    assert!(!r.stderr.contains('\u{1b}'), "{}", r.stderr);
    let r = ws.run_env(&["--log-format", "json", "state"], "RUST_LOG", "debug");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_execution_and_a_fenced_primary_come_first() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    pg_write(&cluster, "before").await;
    // Crash right after the fence's outcome is journaled: nothing writable.
    let r = ws.run_env(
        &["failover", "--to", "west", "--yes", "--output", "json"],
        "SWITCHYARD_CRASH_AT",
        "outcome:2",
    );
    assert_eq!(r.code, -1, "{}", r.stderr);
    let r = ws.run(&["state"]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    let first = r.stdout.lines().next().unwrap();
    assert!(first.starts_with("UNFINISHED EXECUTION "), "{}", r.stdout);
    assert!(first.contains("-failover-"), "{first}");
    assert!(
        first.contains("`switchyard resume` or `switchyard abort`"),
        "{first}"
    );
    assert!(
        r.stdout
            .contains("orders     no primary: nothing accepts writes")
            || r.stdout.contains("is fenced: nothing accepts writes"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("3/3 members healthy"), "{}", r.stdout);
    // Right under it, before any region: the store nothing can write to.
    let second = r.stdout.lines().nth(1).unwrap();
    assert!(
        second.starts_with("orders: NO PRIMARY: ")
            || second.starts_with("orders: NO WRITABLE PRIMARY: "),
        "{}",
        r.stdout
    );

    // JSON: one compact object on one line, with its schema and time.
    let r = ws.run(&["state", "--output", "json"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["schema"], "switchyard.state/v1");
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    assert!(v["unfinished_execution"]["id"]
        .as_str()
        .unwrap()
        .contains("-failover-"));
    assert!(v["stores"][0]["health"]["problem"].is_string(), "{v}");

    // Finish the move: the headings follow the primary to west.
    let r = ws.run(&["resume", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = state_until(&ws, |r| r.code == 0);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("east — primary of no store (topology role: primary)\n"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("west — primary of every store (topology role: secondary)"));
    assert!(r.stdout.contains("store's timeline 2"), "{}", r.stdout);
}
