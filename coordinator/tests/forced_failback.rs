//! The unplanned path end to end, through the real `switchyard` binary on a
//! real PostgreSQL cluster (east primary, standbys in west and south):
//!
//! 1. a writer commits continuously on the primary; `switchyard state` runs
//!    once meanwhile (it leaves the last-known state in the state dir);
//! 2. `kill -9` of the primary's postmaster;
//! 3. `failover --to west --forced --accept-data-loss`: afterwards south's
//!    own `pg_stat_wal_receiver` streams from the new primary and the new
//!    primary's `pg_stat_replication` lists south streaming (asked of the
//!    servers by this test, not of the controller);
//! 4. rows committed on the new primary, then the old primary started as it
//!    was: it accepts a write too — `state` reports the split brain naming
//!    both with their timelines and exits 6;
//! 5. one command, `failover --to east --yes`, with a writer committing on
//!    the new primary until the fence stops it: exactly one writable primary
//!    remains, in east; every row committed on the new primary is there; what
//!    the stale primary took is gone, and the journal says which WAL it
//!    discarded.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_lab::postgres::PgCluster;

/// Insert `(phase, n)` rows on `member` until an insert fails or `stop` is
/// set; returns the highest `n` acknowledged.
async fn writer(
    cluster: &PgCluster,
    member: &str,
    phase: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    let acked = Arc::new(AtomicI64::new(0));
    let c = cluster.connect(member).await.expect("writer connects");
    tokio::spawn(async move {
        let mut n = 0i64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            if c.execute("INSERT INTO load (phase, n) VALUES ($1, $2)", &[&phase, &n])
                .await
                .is_err()
            {
                break;
            }
            acked.store(n, Ordering::Relaxed);
        }
        acked.load(Ordering::Relaxed)
    })
}

async fn count(cluster: &PgCluster, member: &str, phase: &str, upto: i64) -> i64 {
    let c = cluster.connect(member).await.unwrap();
    c.query_one(
        "SELECT count(DISTINCT n) FROM load WHERE phase = $1 AND n <= $2",
        &[&phase, &upto],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_forced_failover_split_brain_and_one_command_failback() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (old, region, tli0) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    cluster
        .connect(&old)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE load (id bigserial PRIMARY KEY, phase text, n bigint)")
        .await
        .unwrap();

    // 1-2. Write load, one observation, SIGKILL.
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&cluster, &old, "before", stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ws.run(&["state"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.kill(&old).unwrap();
    let before = w.await.unwrap();
    assert!(before > 0, "nothing committed before the crash");

    // 3. Forced failover.
    let r = ws.run(&[
        "failover",
        "--to",
        "west",
        "--forced",
        "--accept-data-loss",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    if let Some(rep) = r.events().iter().find(|e| e["event"] == "report") {
        println!("forced failover report: {}", rep["report"]["stores"]);
    }
    let (new, region, tli1) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli1), ("west", tli0 + 1));
    let south = "orders-south-1";
    let new_port = cluster.member(&new).unwrap().port;
    let sc = cluster.connect(south).await.unwrap();
    let row = sc
        .query_one(
            "SELECT status, sender_port, received_tli FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .expect("south has a WAL receiver");
    let (status, port, tli): (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (status.as_str(), port, tli as u32),
        ("streaming", i32::from(new_port), tli1),
        "south's WAL receiver"
    );
    let nc = cluster.connect(&new).await.unwrap();
    let streaming: Vec<String> = nc
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(streaming.iter().any(|a| a == south), "{streaming:?}");
    let present = count(&cluster, &new, "before", before).await;
    println!("committed before the crash: {before}; on the new primary: {present}");

    // 4. Rows on the new primary; the old primary comes back as it was.
    let mut after_forced = 0i64;
    for n in 1..=200i64 {
        nc.execute(
            "INSERT INTO load (phase, n) VALUES ('after-forced', $1)",
            &[&n],
        )
        .await
        .unwrap();
        after_forced = n;
    }
    cluster.start_member(&old).await.unwrap();
    let stale = cluster.connect(&old).await.unwrap();
    stale
        .execute("INSERT INTO load (phase, n) VALUES ('stale', 1)", &[])
        .await
        .expect("the stale primary takes writes: a split brain");
    let r = ws.run(&["state"]);
    println!("$ switchyard state   # exit {}\n{}", r.code, r.stdout);
    assert_eq!(
        r.code, 6,
        "split brain exit code\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains("SPLIT BRAIN"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("{old} in east on timeline {tli0} (stale)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("{new} in west on timeline {tli1} (newest)")),
        "{}",
        r.stdout
    );

    // 5. One command fails back, with a writer on the new primary until the
    // fence ends its session.
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&cluster, &new, "during-failback", stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
    stop.store(true, Ordering::Relaxed);
    let during = w.await.unwrap();
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let (primary, region, _) = pg_primary(&cluster).await.expect("one primary");
    assert_eq!((primary.as_str(), region.as_str()), (old.as_str(), "east"));
    assert_eq!(
        count(&cluster, &old, "after-forced", after_forced).await,
        after_forced,
        "every row committed on the new primary survives the failback"
    );
    assert!(during > 0, "the writer committed nothing before the fence");
    assert_eq!(
        count(&cluster, &old, "during-failback", during).await,
        during,
        "every commit acknowledged during the failback survives it"
    );
    assert_eq!(
        count(&cluster, &old, "stale", 1).await,
        0,
        "the stale primary's own write was discarded by its rewind"
    );
    for (i, f) in ws.journal_files().iter().enumerate() {
        println!("execution {}: {}", i + 1, f.display());
        for l in read(f).lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            if let Some(o) = v.pointer("/result/outcome") {
                println!(
                    "  seq {} {}: {} {}",
                    v["seq"], v["store"], o["notes"], o["data_loss"]
                );
            }
        }
    }
    let journal = read(ws.journal_files().last().unwrap());
    assert!(
        journal.contains(&format!(
            "{old}: stale primary on timeline {tli0} fenced and rewound"
        )),
        "{journal}"
    );
    assert!(journal.contains("discarded WAL"), "{journal}");
    let r = ws.run(&["state"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// A fresh `switchyard failover --forced` (no `--accept-data-loss`) after
/// the primary died goes ahead on the evidence an earlier `switchyard state`
/// left in the state dir; the same command with an empty state dir refuses
/// (exit 5), the lag being unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_process_judges_the_forced_guard_by_the_last_known_state() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (old, _, _) = pg_primary(&cluster).await.unwrap();
    cluster
        .connect(&old)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE load (id bigserial PRIMARY KEY, phase text, n bigint)")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&cluster, &old, "before", stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ws.run(&["state"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    cluster.kill(&old).unwrap();
    w.await.unwrap();

    // Another state dir: no evidence.
    let blind = Workspace::new(cluster.topology());
    let r = blind.run(&[
        "failover", "--to", "west", "--forced", "--yes", "--output", "json",
    ]);
    assert_eq!(
        r.code, 5,
        "no evidence: refused\n{}\n{}",
        r.stdout, r.stderr
    );

    let r = ws.run(&[
        "failover", "--to", "west", "--forced", "--yes", "--output", "json",
    ]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let report = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "report")
        .expect("report");
    let loss = report["report"]["stores"][0]["data_loss"]
        .as_str()
        .unwrap()
        .to_string();
    println!("{loss}");
    assert!(loss.contains("≥ "), "{loss}");
    assert!(loss.contains("last seen"), "{loss}");
    assert!(loss.contains("last-known state in"), "{loss}");
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");
}
