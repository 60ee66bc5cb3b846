//! The coordinator's fencing token lives on the master (hash
//! `switchyard:<store>`), replicates with the data, and a lower token is
//! refused before any mutating step: a coordinator that lost its lock
//! cannot unfence, promote or re-point.

mod common;

use common::RedisFixture;
use std::time::Duration;
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{
    Controller, ErrorKind, FencingToken, OpContext, Operation, PromoteMode,
};

fn ctx(token: u64) -> OpContext {
    OpContext {
        execution_id: format!("exec-{token}"),
        token: token.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_token_is_refused_before_every_mutating_step() {
    let f = RedisFixture::start(false).await.expect("lab cluster");
    f.ctl.execute(&Operation::Fence, &ctx(5)).await.unwrap();
    assert_eq!(
        f.cluster
            .cmd("cache-east-1", &["HGET", "switchyard:cache", "token"])
            .unwrap(),
        "5"
    );
    // A stale coordinator (token 3) can neither unfence nor promote.
    for op in [
        Operation::Unfence,
        Operation::Promote {
            target_region: "west".into(),
            mode: PromoteMode::Planned,
            candidate: None,
        },
        Operation::RepointFollowers,
        Operation::Rejoin,
    ] {
        let e = f.ctl.execute(&op, &ctx(3)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{op}: {e}");
        assert!(e.message().contains("stale coordinator"), "{op}: {e}");
        assert!(e.member().is_some(), "{e}");
    }
    let s = f.ctl.observe().await.unwrap();
    assert!(
        s.primary().unwrap().fenced,
        "the refused Unfence changed nothing"
    );
    // Read-only steps need no token.
    f.ctl
        .execute(&Operation::CapturePosition, &ctx(3))
        .await
        .unwrap();
    f.ctl.execute(&Operation::Unfence, &ctx(5)).await.unwrap();

    // A switchover under token 6: the new master holds it, and so does
    // every replica (it replicates like any key).
    planned_switchover(&f.ctl, "west", &ctx(6), Duration::from_secs(30))
        .await
        .unwrap();
    for n in ["cache-west-1", "cache-east-1", "cache-south-1"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while f
            .cluster
            .cmd(n, &["HGET", "switchyard:cache", "token"])
            .unwrap()
            != "6"
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} never got token 6"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // What resume compares an execution with: the highest token recorded.
    assert_eq!(f.ctl.recorded_token().await.unwrap(), Some(FencingToken(6)));
    let e = f.ctl.execute(&Operation::Fence, &ctx(5)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    // The promotion is recorded beside the token.
    let direct = f
        .cluster
        .cmd("cache-west-1", &["HGET", "switchyard:cache", "promoted"]);
    assert_eq!(direct.unwrap(), "cache-west-1");
}
