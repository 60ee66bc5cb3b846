//! Forced failover after SIGKILL of the master, on real Redis: the lag
//! guard refuses a candidate that was behind, the loss is estimated and
//! reported when accepted; a former master that comes back as it was is
//! fenced and rejoined, never left as a second master; with Sentinel, the
//! controller goes on from wherever the Sentinels failed over to.

mod common;

use common::{acked_set, RedisFixture};
use std::time::Duration;
use switchyard_controller::direct::forced_failover;
use switchyard_controller::{
    Controller, ControllerExt, ErrorKind, OpContext, Operation, PromoteMode, Role,
};

fn ctx(token: u64) -> OpContext {
    OpContext {
        execution_id: format!("forced-{token}"),
        token: token.into(),
    }
}

const T: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

async fn write_acked(f: &RedisFixture, keys: std::ops::Range<u64>) {
    let addr = f.primary_addr().await.unwrap();
    let mut c = f.conn(&addr).await.unwrap();
    for k in keys {
        assert!(acked_set(&mut c, &format!("forced:{k}"), "1")
            .await
            .unwrap());
    }
}

/// Every `forced:k` of `keys` is on `member`.
async fn assert_present(f: &RedisFixture, member: &str, keys: std::ops::Range<u64>) {
    let mut c = f
        .conn(&f.cluster.node(member).unwrap().addr())
        .await
        .unwrap();
    for k in keys {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("forced:{k}"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(v.is_some(), "acknowledged forced:{k} lost on {member}");
    }
}

/// Until every replica has everything (WAIT 1 is satisfied by one of the two).
async fn caught_up(f: &RedisFixture) {
    f.ctl
        .wait_until(T, POLL, |s| {
            s.members
                .iter()
                .filter(|m| m.role == Role::Secondary)
                .all(|m| m.lag.and_then(|l| l.bytes) == Some(0))
        })
        .await
        .expect("replicas catch up");
}

async fn rejoin(f: &RedisFixture, token: u64) -> switchyard_controller::Outcome {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match f.ctl.execute(&Operation::Rejoin, &ctx(token)).await {
            Ok(o) => return o,
            Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await
            }
            Err(e) => panic!("rejoin: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_reports_the_loss_and_fences_the_returning_master() {
    let f = RedisFixture::start(false).await.expect("lab cluster");
    write_acked(&f, 0..50).await;
    caught_up(&f).await;
    // west stops applying its stream (reachable, but behind): 2 MiB more
    // reach only south.
    f.cluster
        .cmd("cache-west-1", &["CLIENT", "PAUSE", "60000", "WRITE"])
        .unwrap();
    let addr = f.primary_addr().await.unwrap();
    let mut c = f.conn(&addr).await.unwrap();
    redis::cmd("SET")
        .arg("forced:filler")
        .arg("x".repeat(2 << 20))
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    let seen = f
        .ctl
        .wait_until(T, POLL, |s| {
            s.member("cache-west-1")
                .and_then(|m| m.lag)
                .and_then(|l| l.bytes)
                .is_some_and(|b| b >= 2 << 20)
        })
        .await
        .expect("the controller observes west 2 MiB behind");
    assert_eq!(seen.primary().unwrap().name, "cache-east-1");

    f.cluster.kill("cache-east-1").unwrap();
    f.ctl
        .wait_until(T, POLL, |s| {
            s.member("cache-east-1").is_some_and(|m| !m.reachable)
        })
        .await
        .unwrap();
    // Without accepting loss, west is refused: it was behind the bound.
    for op in [
        Operation::CheckReadiness {
            target_region: "west".into(),
            mode: PromoteMode::Forced {
                accept_data_loss: false,
            },
            candidate: None,
        },
        Operation::Promote {
            target_region: "west".into(),
            mode: PromoteMode::Forced {
                accept_data_loss: false,
            },
            candidate: None,
        },
    ] {
        let e = f.ctl.execute(&op, &ctx(7)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LagTooHigh, "{op}: {e}");
        assert_eq!(e.member(), Some("cache-west-1"), "{e}");
    }
    // Accepted: promoted, with the estimate and its basis (west applies
    // again; the estimate is what was observed while the master was up).
    f.cluster
        .cmd("cache-west-1", &["CLIENT", "UNPAUSE"])
        .unwrap();
    let steps = forced_failover(&f.ctl, "west", true, &ctx(7))
        .await
        .unwrap();
    let promote = steps
        .iter()
        .find(|s| matches!(s.op, Operation::Promote { .. }))
        .unwrap();
    let loss = promote.outcome.data_loss.clone().expect("a loss estimate");
    assert!(loss.bytes.is_some_and(|b| b >= 2 << 20), "{loss:?}");
    assert!(loss.note.contains("last observation"), "{loss:?}");
    let s = f
        .ctl
        .wait_until(T, POLL, |s| {
            s.primary().is_some_and(|p| p.name == "cache-west-1")
                && s.member("cache-south-1")
                    .is_some_and(|m| m.following.as_deref() == Some("cache-west-1"))
        })
        .await
        .unwrap();
    assert!(s.term.unwrap().get() >= 1, "term advanced: {s:?}");
    // Acknowledged before the lag: on the new master.
    assert_present(&f, "cache-west-1", 0..50).await;

    // The old master comes back as it was: its own data, ROLE master.
    f.cluster.restart("cache-east-1").await.unwrap();
    let split = f
        .ctl
        .wait_until(T, POLL, |s| {
            s.member("cache-east-1").is_some_and(|m| m.reachable)
        })
        .await
        .unwrap();
    assert_eq!(
        split.primaries().count(),
        2,
        "a returning master is reported as a second primary, not hidden: {split:?}"
    );
    assert!(split.primary().is_none());
    let out = rejoin(&f, 7).await;
    assert!(out.notes.iter().any(|n| n.contains("fenced")), "{out:?}");
    let s = f
        .ctl
        .wait_until(T, POLL, |s| {
            s.primary().is_some_and(|p| p.name == "cache-west-1")
                && s.member("cache-east-1").is_some_and(|m| {
                    m.role == Role::Secondary
                        && m.following.as_deref() == Some("cache-west-1")
                        && !m.fenced
                })
        })
        .await
        .unwrap();
    assert_eq!(f.masters(), vec!["cache-west-1".to_string()], "{s:?}");
    let refused = f.cluster.cmd("cache-east-1", &["SET", "forced:late", "1"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("READONLY")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_goes_on_from_where_the_sentinels_went() {
    let f = RedisFixture::start(true).await.expect("lab cluster");
    // The Sentinels' own choice will be south (west is never their pick).
    f.cluster
        .cmd("cache-west-1", &["CONFIG", "SET", "replica-priority", "0"])
        .unwrap();
    write_acked(&f, 0..50).await;
    caught_up(&f).await;
    f.cluster.kill("cache-east-1").unwrap();
    let south = f.cluster.node("cache-south-1").unwrap().addr();
    let deadline = std::time::Instant::now() + T;
    while !f.sentinel_views().iter().all(|v| *v == south) {
        assert!(
            std::time::Instant::now() < deadline,
            "Sentinels did not fail over: {:?}",
            f.sentinel_views()
        );
        tokio::time::sleep(POLL).await;
    }
    // Forced to west: the controller finds the Sentinels' master in south
    // and moves it on to west without losing what south acknowledged.
    write_acked(&f, 50..60).await;
    let steps = forced_failover(&f.ctl, "west", false, &ctx(3))
        .await
        .unwrap();
    let promote = steps
        .iter()
        .find(|s| matches!(s.op, Operation::Promote { .. }))
        .unwrap();
    assert_eq!(promote.outcome.member.as_deref(), Some("cache-west-1"));
    let west = f.cluster.node("cache-west-1").unwrap().addr();
    assert!(
        f.sentinel_views().iter().all(|v| *v == west),
        "{:?}",
        f.sentinel_views()
    );
    assert_eq!(f.masters(), vec!["cache-west-1".to_string()]);
    assert_present(&f, "cache-west-1", 0..60).await;
    // east returns as it was (ROLE master): fenced and rejoined; every
    // Sentinel and every member agree on west.
    f.cluster.restart("cache-east-1").await.unwrap();
    rejoin(&f, 3).await;
    let s = f
        .ctl
        .wait_until(T, POLL, |s| {
            s.primary().is_some_and(|p| p.name == "cache-west-1")
                && s.members.iter().all(|m| {
                    m.reachable && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
                })
        })
        .await
        .unwrap();
    assert_eq!(f.masters(), vec!["cache-west-1".to_string()], "{s:?}");
    assert!(
        f.sentinel_views().iter().all(|v| *v == west),
        "{:?}",
        f.sentinel_views()
    );
}
