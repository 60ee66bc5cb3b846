//! Resuming interrupted switchovers with a fresh controller (the coordinator
//! crashed and restarted): the store is left in the in-between states an
//! interruption produces, and the remaining operations finish the job.

mod common;

use std::time::Duration;
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{Controller, OpContext, Operation, Role};
use switchyard_postgres::PostgresController;

fn ctx() -> OpContext {
    OpContext {
        execution_id: "resume".into(),
        token: (1).into(),
    }
}

/// Interrupted inside `Fence` after the stop, before the restart: no
/// primary is up. `Fence` again finds the old primary through the
/// standbys' configuration and brings it up fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_resumes_between_stop_and_restart() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .unwrap();
    f.primary_client()
        .await
        .unwrap()
        .execute("INSERT INTO conformance (k) VALUES (1)", &[])
        .await
        .unwrap();
    // What Fence had done before the crash: soft fence, then the stop hook.
    let c = f.cluster.connect("pg-east-1").await.unwrap();
    c.batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await
        .unwrap();
    drop(c);
    f.cluster.stop("pg-east-1").await.unwrap();

    let ctl = PostgresController::from_store(f.cluster.store()).unwrap();
    let s = ctl.observe().await.unwrap();
    assert_eq!(s.member("pg-east-1").unwrap().role, Role::Down);
    assert!(s.primary().is_none());

    let fenced = ctl.execute(&Operation::Fence, &ctx()).await.unwrap();
    assert_eq!(fenced.member.as_deref(), Some("pg-east-1"));
    let s = ctl.observe().await.unwrap();
    let east = s.member("pg-east-1").unwrap();
    assert!(east.fenced && east.role == Role::Secondary, "{east:?}");
    let again = ctl.execute(&Operation::Fence, &ctx()).await.unwrap();
    assert!(again.already_done);

    // The rest of the switchover completes from here.
    planned_switchover(&ctl, "west", &ctx(), Duration::from_secs(60))
        .await
        .unwrap();
    let s = ctl.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some("west"));
    assert!(s
        .members
        .iter()
        .all(|m| m.reachable && !m.fenced && m.role != Role::Down));
    let n: i64 = f
        .primary_client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM conformance WHERE k = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// Interrupted after `Promote`, before re-pointing: a fresh controller's
/// `Promote` is already done (no second timeline), `RepointFollowers` and
/// `Rejoin` finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_promote_with_fresh_controller() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .unwrap();
    let first = PostgresController::from_store(f.cluster.store()).unwrap();
    let target = "south";
    first.execute(&Operation::Fence, &ctx()).await.unwrap();
    let pos = first
        .execute(&Operation::CapturePosition, &ctx())
        .await
        .unwrap()
        .position
        .unwrap();
    first
        .execute(
            &Operation::WaitForPosition {
                target_region: target.into(),
                position: pos,
                timeout_ms: 60_000,
                candidate: None,
            },
            &ctx(),
        )
        .await
        .unwrap();
    let promote = Operation::Promote {
        target_region: target.into(),
        mode: switchyard_controller::PromoteMode::Planned,
        candidate: None,
    };
    first.execute(&promote, &ctx()).await.unwrap();
    let term = first.observe().await.unwrap().term;
    drop(first);

    let second = PostgresController::from_store(f.cluster.store()).unwrap();
    let again = second.execute(&promote, &ctx()).await.unwrap();
    assert!(again.already_done);
    assert_eq!(second.observe().await.unwrap().term, term);
    let r = second
        .execute(&Operation::RepointFollowers, &ctx())
        .await
        .unwrap();
    assert!(!r.already_done, "{r:?}");
    // The deferred fence left the old primary stopped before the fork:
    // RepointFollowers starts it following alongside the re-pointing, so
    // Rejoin finds nothing left to do.
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("pg-east-1: was stopped by the fence")),
        "{r:?}"
    );
    let j = second.execute(&Operation::Rejoin, &ctx()).await.unwrap();
    assert!(j.already_done, "{j:?}");
    let s = second.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some(target));
    for m in s.members.iter().filter(|m| m.role != Role::Primary) {
        assert_eq!(m.role, Role::Secondary, "{m:?}");
        assert_eq!(m.following.as_deref(), Some("pg-south-1"), "{m:?}");
        assert!(!m.fenced, "{m:?}");
    }
}

/// A coordinator whose token is older than one that already acted on the
/// store (it lost its leadership) is refused, and so is one holding the
/// same token for another execution (a second state directory); nothing
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_coordinator_token_is_refused() {
    let f = common::PgFixture::start(&["east", "west"]).await.unwrap();
    let new = OpContext {
        execution_id: "new-leader".into(),
        token: (5).into(),
    };
    planned_switchover(&f.ctl, "west", &new, Duration::from_secs(60))
        .await
        .unwrap();
    let before = f.ctl.observe().await.unwrap();
    let old = OpContext {
        execution_id: "old-leader".into(),
        token: (3).into(),
    };
    let e = f
        .ctl
        .execute(&Operation::Fence, &old)
        .await
        .expect_err("stale token must be refused");
    assert_eq!(e.kind(), switchyard_controller::ErrorKind::Refused, "{e}");
    assert!(!e.is_temporary());
    assert!(
        e.message().contains("fencing token 3") && e.message().contains("token 5"),
        "{e}"
    );
    let twin = OpContext::new("twin-leader", 5);
    let e = f
        .ctl
        .execute(&Operation::Fence, &twin)
        .await
        .expect_err("an equal token from another execution must be refused");
    assert_eq!(e.kind(), switchyard_controller::ErrorKind::Refused, "{e}");
    assert!(e.message().contains("execution new-leader"), "{e}");
    let after = f.ctl.observe().await.unwrap();
    assert_eq!(
        after.primary().map(|m| &m.name),
        before.primary().map(|m| &m.name)
    );
    assert!(after.members.iter().all(|m| !m.fenced));
    // Read-only operations are not fenced by the token.
    f.ctl
        .execute(
            &Operation::CheckReadiness {
                target_region: "east".into(),
                mode: switchyard_controller::PromoteMode::Planned,
                candidate: None,
            },
            &old,
        )
        .await
        .unwrap();
    // The current leader (same token, same execution) carries on.
    planned_switchover(&f.ctl, "east", &new, Duration::from_secs(60))
        .await
        .unwrap();
}

/// The fence is hard (a session overriding every default still cannot
/// write to the fenced member), and `Unfence` aborts the switchover: the
/// fenced member becomes primary again on a new timeline and the standbys
/// follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_is_hard_and_unfence_aborts() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .unwrap();
    let before = f.ctl.observe().await.unwrap();
    let fenced = f.ctl.execute(&Operation::Fence, &ctx()).await.unwrap();
    assert_eq!(fenced.member.as_deref(), Some("pg-east-1"));
    // The fence leaves the old primary stopped (its restart follows the
    // promotion); whatever starts it first, here its plain `start` as an
    // init system would, brings it up in recovery.
    let s = f.ctl.observe().await.unwrap();
    assert_eq!(s.member("pg-east-1").unwrap().role, Role::Down, "{s:?}");
    f.cluster.start_member("pg-east-1").await.unwrap();
    let c = f.cluster.connect("pg-east-1").await.unwrap();
    let err = c
        .batch_execute(
            "SET default_transaction_read_only = off; SET synchronous_commit = local; \
             BEGIN READ WRITE; INSERT INTO conformance (k) VALUES (99); COMMIT",
        )
        .await
        .expect_err("a fenced member accepted a write");
    assert!(
        err.to_string().contains("recovery")
            || err
                .as_db_error()
                .is_some_and(|d| d.message().contains("recovery")),
        "{err:?}"
    );
    // Abort the switchover: the old primary takes writes again.
    let undo = f.ctl.execute(&Operation::Unfence, &ctx()).await.unwrap();
    assert_eq!(undo.member.as_deref(), Some("pg-east-1"));
    let again = f.ctl.execute(&Operation::Unfence, &ctx()).await.unwrap();
    assert!(again.already_done);
    let s = f.ctl.observe().await.unwrap();
    assert_eq!(s.primary().map(|m| m.name.as_str()), Some("pg-east-1"));
    assert!(!s.primary().unwrap().fenced);
    assert_eq!(
        s.term,
        before
            .term
            .map(|e| switchyard_controller::Term(e.get() + 1))
    );
    f.primary_client()
        .await
        .unwrap()
        .execute("INSERT INTO conformance (k) VALUES (100)", &[])
        .await
        .expect("unfenced primary accepts writes");
    // The standbys (cascading from the fenced member meanwhile) follow the
    // new timeline; re-pointing finds nothing to do or finishes it.
    f.ctl
        .execute(&Operation::RepointFollowers, &ctx())
        .await
        .unwrap();
    let s = f.ctl.observe().await.unwrap();
    for m in s.members.iter().filter(|m| m.name != "pg-east-1") {
        assert_eq!(m.following.as_deref(), Some("pg-east-1"), "{m:?}");
        assert_eq!(m.role, Role::Secondary);
    }
}
