//! `Unfence` gives the old primary back whatever the fence got through, with
//! a fresh controller (the coordinator that fenced died): a member the fence
//! restarted in recovery and that was then stopped comes back through hooks
//! `stop` and `start` and is promoted again; once another member has moved
//! to a later timeline, `Unfence` refuses, because making the old primary
//! writable again would fork the store.

mod common;

use switchyard_controller::{Controller, ErrorKind, OpContext, Operation, PromoteMode, Role};
use switchyard_postgres::PostgresController;

fn ctx() -> OpContext {
    OpContext {
        execution_id: "unfence".into(),
        token: (1).into(),
    }
}

/// Members not in recovery, asked directly.
async fn primaries(f: &common::PgFixture) -> Vec<String> {
    let mut out = vec![];
    for m in f.cluster.members() {
        let Ok(c) = f.cluster.connect(&m.name).await else {
            continue;
        };
        if let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await {
            if !row.get::<_, bool>(0) {
                out.push(m.name.clone());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfence_starts_a_stopped_fenced_primary_and_promotes_it_again() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .unwrap();
    f.primary_client()
        .await
        .unwrap()
        .execute("INSERT INTO conformance (k) VALUES (1)", &[])
        .await
        .unwrap();
    f.ctl.execute(&Operation::Fence, &ctx()).await.unwrap();
    // The fenced member (in recovery, no upstream) goes down as well.
    f.cluster.stop("pg-east-1").await.unwrap();
    assert!(primaries(&f).await.is_empty());

    let ctl = PostgresController::from_store(f.cluster.store()).unwrap();
    let s = ctl.observe().await.unwrap();
    assert_eq!(s.member("pg-east-1").unwrap().role, Role::Down);
    let out = ctl.execute(&Operation::Unfence, &ctx()).await.unwrap();
    assert_eq!(out.member.as_deref(), Some("pg-east-1"));
    assert!(
        out.notes.iter().any(|n| n.contains("started it again")),
        "{out:?}"
    );
    assert_eq!(primaries(&f).await, vec!["pg-east-1"]);
    // It takes writes (the fence marker is gone) and kept every row.
    let c = f.primary_client().await.unwrap();
    c.execute("INSERT INTO conformance (k) VALUES (2)", &[])
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM conformance", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Idempotent: a second Unfence finds the primary serving.
    let again = ctl.execute(&Operation::Unfence, &ctx()).await.unwrap();
    assert!(again.already_done, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfence_refuses_once_another_member_moved_to_a_later_timeline() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .unwrap();
    // The re-point starts a stopped old primary as a standby when it can;
    // without `start_as_standby` on it (or with a coordinator killed in the
    // re-point) it stays fenced on the old timeline while the others move
    // on: the state unfencing must refuse.
    let mut store = f.cluster.store().clone();
    for m in store.members.iter_mut().filter(|m| m.name == "pg-east-1") {
        m.hooks.start_as_standby = None;
    }
    let repoint = switchyard_controller::layered(PostgresController::from_store(&store).unwrap());
    let ctl = &f.ctl;
    ctl.execute(&Operation::Fence, &ctx()).await.unwrap();
    let pos = ctl
        .execute(&Operation::CapturePosition, &ctx())
        .await
        .unwrap()
        .position
        .unwrap();
    ctl.execute(
        &Operation::WaitForPosition {
            target_region: "west".into(),
            position: pos,
            timeout_ms: 60_000,
            candidate: None,
        },
        &ctx(),
    )
    .await
    .unwrap();
    ctl.execute(
        &Operation::Promote {
            target_region: "west".into(),
            mode: PromoteMode::Planned,
            candidate: None,
        },
        &ctx(),
    )
    .await
    .unwrap();
    repoint
        .execute(&Operation::RepointFollowers, &ctx())
        .await
        .unwrap();
    // South streams the new timeline (its WAL receiver is on timeline 2),
    // then the new primary becomes unreachable; the fenced old primary is
    // still on timeline 1.
    let south = f.cluster.connect("pg-south-1").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let tli: Option<i32> = south
            .query_opt("SELECT received_tli FROM pg_stat_wal_receiver", &[])
            .await
            .unwrap()
            .and_then(|r| r.get(0));
        if tli == Some(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "south never reached timeline 2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    f.cluster.stop("pg-west-1").await.unwrap();
    let err = ctl
        .execute(&Operation::Unfence, &ctx())
        .await
        .expect_err("unfencing would fork the store");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(
        err.to_string()
            .contains("pg-south-1 is on timeline 2 but pg-east-1 is on timeline 1"),
        "{err}"
    );
    assert!(err.to_string().contains("would fork the store"), "{err}");
    assert!(primaries(&f).await.is_empty(), "nothing was made primary");
}
