//! Forced failover after `kill -9` of the primary, with a writer running:
//! a standby of the target region is promoted, the survivor follows it,
//! the outcome carries a data-loss estimate; a controller that never saw
//! the primary alive refuses unless data loss is accepted; the killed
//! primary, restarted as it was configured (a second primary on the old
//! timeline), is rewound and rejoined as a standby.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_controller::{
    Controller, ControllerExt, ErrorKind, OpContext, Operation, PromoteMode, Role,
};
use switchyard_postgres::PostgresController;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_after_kill_9() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .expect("lab cluster");
    let ctx = OpContext::adhoc();
    let old = f.ctl.observe().await.unwrap();
    let old_primary = old.primary().unwrap().name.clone();
    assert_eq!(old.primary_region(), Some("east"));

    // A writer on the primary until it dies.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let w = {
        let c = f.primary_client().await.unwrap();
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if c.execute("INSERT INTO conformance (k) VALUES ($1)", &[&n])
                    .await
                    .is_err()
                {
                    break;
                }
                acked.store(n, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The controller's last look before the crash: lag known and small. A
    // second controller (another process, as `switchyard state` would be)
    // keeps what it saw in a state directory.
    f.ctl.observe().await.unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let watcher = PostgresController::builder(f.cluster.store())
        .state_dir(state_dir.path())
        .build()
        .unwrap();
    let seen = watcher.observe().await.unwrap();
    let west = seen.member("pg-west-1").unwrap();
    assert_eq!(
        west.following.as_deref(),
        Some(old_primary.as_str()),
        "{west:?}"
    );
    assert_eq!(west.replicating, Some(true), "{west:?}");
    assert!(west.lag.and_then(|l| l.bytes).is_some(), "{west:?}");
    drop(watcher);
    let file = switchyard_controller::LastKnown::in_dir(state_dir.path(), &f.cluster.store().name);
    assert!(file.path().unwrap().exists(), "{file:?}");
    f.cluster.kill(&old_primary).unwrap();
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > 0, "writer acknowledged nothing before the crash");

    let s = f
        .ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
            s.member(&old_primary).is_some_and(|m| m.role == Role::Down)
        })
        .await
        .unwrap();
    assert!(s.primary().is_none());

    // A planned switchover cannot proceed without the old primary.
    let planned = f
        .ctl
        .execute(
            &Operation::Promote {
                target_region: "west".into(),
                mode: PromoteMode::Planned,
                candidate: None,
            },
            &ctx,
        )
        .await;
    assert!(
        planned.is_err(),
        "planned promote without a fence: {planned:?}"
    );

    let forced_readiness = |accept_data_loss| Operation::CheckReadiness {
        target_region: "west".into(),
        mode: PromoteMode::Forced { accept_data_loss },
        candidate: None,
    };
    // A fresh controller never saw the lag: it refuses unless loss is accepted.
    let fresh = PostgresController::from_store(f.cluster.store()).unwrap();
    let refuse = fresh
        .execute(&forced_readiness(false), &ctx)
        .await
        .expect_err("unknown lag must be refused under a bound");
    assert_eq!(refuse.kind(), ErrorKind::LagTooHigh, "{refuse}");
    assert_eq!(refuse.member(), Some("pg-west-1"));
    let accepted = fresh.execute(&forced_readiness(true), &ctx).await.unwrap();
    assert!(accepted.data_loss.unwrap().note.contains("unknown"));

    // A fresh controller with the state directory has the evidence: the
    // candidate's lag when the primary was last seen, and its own received
    // WAL now. Within the bound, no data loss needs accepting.
    let informed = PostgresController::builder(f.cluster.store())
        .state_dir(state_dir.path())
        .build()
        .unwrap();
    let judged = informed
        .execute(&forced_readiness(false), &ctx)
        .await
        .expect("evidence within the bound");
    let est = judged.data_loss.expect("estimate");
    println!("fresh process with the last-known state: {}", est.note);
    assert!(est.note.starts_with("≥ "), "{}", est.note);
    assert!(est.note.contains("last seen"), "{}", est.note);
    assert!(est.note.contains("last-known state in"), "{}", est.note);

    // The controller that watched the primary knows the lag was within bound.
    let promoted = f
        .ctl
        .execute(
            &Operation::Promote {
                target_region: "west".into(),
                mode: PromoteMode::Forced {
                    accept_data_loss: false,
                },
                candidate: None,
            },
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(promoted.member.as_deref(), Some("pg-west-1"));
    let loss = promoted.data_loss.expect("data-loss estimate");
    println!("forced promotion: {:?}; estimate: {loss:?}", promoted.notes);
    assert!(loss.bytes.is_some());
    f.ctl
        .execute(&Operation::RepointFollowers, &ctx)
        .await
        .unwrap();
    let s = f.ctl.observe().await.unwrap();
    assert_eq!(s.primary().map(|m| m.name.as_str()), Some("pg-west-1"));
    let south = s.member("pg-south-1").unwrap();
    assert_eq!(south.role, Role::Secondary);
    assert_eq!(south.following.as_deref(), Some("pg-west-1"));
    // Asked of the servers themselves, not of the controller.
    let west_port = f.cluster.member("pg-west-1").unwrap().port;
    let sc = f.cluster.connect("pg-south-1").await.unwrap();
    let row = sc
        .query_one("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
        .await
        .unwrap();
    let (status, port): (String, i32) = (row.get(0), row.get(1));
    assert_eq!((status.as_str(), port), ("streaming", i32::from(west_port)));
    assert!(s.term.unwrap() > old.term.unwrap());

    // How much was really lost (async replication): reported, not asserted.
    let c = f.primary_client().await.unwrap();
    let present: i64 = c
        .query_one("SELECT count(*) FROM conformance WHERE k <= $1", &[&acked])
        .await
        .unwrap()
        .get(0);
    println!("acknowledged before the crash: {acked}, present on the new primary: {present}");
    c.execute("INSERT INTO conformance (k) VALUES (-42)", &[])
        .await
        .expect("new primary accepts writes");

    // The old primary comes back as it was configured: a second primary.
    f.cluster.start_member(&old_primary).await.unwrap();
    let split = f.ctl.observe().await.unwrap();
    assert_eq!(split.primaries().count(), 2, "{:?}", split.members);
    let rejoin = f.ctl.execute(&Operation::Rejoin, &ctx).await.unwrap();
    assert!(!rejoin.already_done);
    let s = f.ctl.observe().await.unwrap();
    let back = s.member(&old_primary).unwrap();
    assert_eq!(back.role, Role::Secondary, "{back:?}");
    assert_eq!(back.following.as_deref(), Some("pg-west-1"));
    assert_eq!(s.primaries().count(), 1);
    let again = f.ctl.execute(&Operation::Rejoin, &ctx).await.unwrap();
    assert!(again.already_done, "{again:?}");
}

/// The case pg_rewind gets wrong unless the new primary checkpoints first:
/// a survivor holds more WAL than the promoted standby. West stops
/// receiving (its `primary_conninfo` emptied), east commits rows that only
/// south receives, east is killed and west promoted with data loss
/// accepted. South must be rewound — the report says so with the WAL it
/// discarded, and south's own WAL receiver streams from west afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_ahead_of_the_new_primary_is_really_rewound() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .expect("lab cluster");
    let ctx = OpContext::adhoc();
    let ctl = PostgresController::builder(f.cluster.store())
        .follow_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let west = f.cluster.connect("pg-west-1").await.unwrap();
    for sql in [
        "ALTER SYSTEM SET primary_conninfo = ''",
        "SELECT pg_reload_conf()",
    ] {
        west.batch_execute(sql).await.unwrap();
    }
    let s = ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
            s.member("pg-west-1")
                .is_some_and(|m| m.replicating == Some(false) && m.following.is_none())
        })
        .await
        .expect("west stops streaming, and the observation says so");
    let w = s.member("pg-west-1").unwrap();
    assert!(
        w.detail.as_deref().unwrap_or("").contains("not streaming"),
        "{w:?}"
    );
    // Only south receives these.
    let c = f.primary_client().await.unwrap();
    for k in 1..=200i64 {
        c.execute("INSERT INTO conformance (k) VALUES ($1)", &[&k])
            .await
            .unwrap();
    }
    let south = f.cluster.connect("pg-south-1").await.unwrap();
    let end: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let caught: bool = south
            .query_one(
                "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn",
                &[&end],
            )
            .await
            .unwrap()
            .get(0);
        if caught {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "south never received {end}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctl.observe().await.unwrap();
    f.cluster.kill("pg-east-1").unwrap();
    ctl.wait_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
        s.member("pg-east-1").is_some_and(|m| m.role == Role::Down)
    })
    .await
    .unwrap();

    let promoted = ctl
        .execute(
            &Operation::Promote {
                target_region: "west".into(),
                mode: PromoteMode::Forced {
                    accept_data_loss: true,
                },
                candidate: None,
            },
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(promoted.member.as_deref(), Some("pg-west-1"));
    // Before the re-point: south is ahead of the new primary on the old
    // timeline — its lag is unknown, not 0, and it follows nothing.
    let s = ctl.observe().await.unwrap();
    let so = s.member("pg-south-1").unwrap();
    assert_eq!(so.lag.and_then(|l| l.bytes), None, "{so:?}");
    assert_eq!(so.following, None, "{so:?}");
    let repoint = ctl
        .execute(&Operation::RepointFollowers, &ctx)
        .await
        .expect("south rewound and streaming");
    println!("{:?}", repoint.notes);
    let note = repoint
        .notes
        .iter()
        .find(|n| n.starts_with("pg-south-1:"))
        .expect("a note for south");
    assert!(note.contains("diverged on timeline 1, rewound"), "{note}");
    assert!(note.contains("discarded WAL"), "{note}");
    let row = south_after(&f).await;
    let west_port = i32::from(f.cluster.member("pg-west-1").unwrap().port);
    assert_eq!((row.0.as_str(), row.1, row.2), ("streaming", west_port, 2));
    // What south alone had received is gone; the new primary's history is all there is.
    let n: i64 = f
        .primary_client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM conformance WHERE k BETWEEN 1 AND 200",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "west never received those rows");
}

/// South's own `pg_stat_wal_receiver`: status, sender port, received timeline.
async fn south_after(f: &common::PgFixture) -> (String, i32, i32) {
    let c = f.cluster.connect("pg-south-1").await.unwrap();
    let r = c
        .query_one(
            "SELECT status, sender_port, received_tli FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .expect("south has a WAL receiver");
    (r.get(0), r.get(1), r.get(2))
}
