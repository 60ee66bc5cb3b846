//! A coordinator that lost its leadership cannot keep steering the set:
//! every config change records the execution's fencing token in the members' tags,
//! and mutating operations with an older token are refused.

mod common;

use common::Lab;
use switchyard_controller::{Controller, ErrorKind, OpContext, Operation, PromoteMode};

fn ctx(token: u64) -> OpContext {
    OpContext {
        execution_id: format!("e{token}"),
        token: token.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_tokens_are_refused_after_a_newer_one_changed_the_config() {
    let lab = Lab::start(10_000).await;
    let v0 = lab.ctl.observe().await.unwrap().config_version;
    let sticky = |r: &str| Operation::MakeSticky {
        target_region: r.into(),
        candidate: None,
    };
    // East holds the primary: making it preferred is a config change that
    // moves nothing (west preferred would be refused while east is primary).
    let done = lab.ctl.execute(&sticky("east"), &ctx(5)).await.unwrap();
    assert!(!done.already_done);
    assert!(lab.ctl.observe().await.unwrap().config_version > v0);
    // The same token repeating is harmless.
    assert!(
        lab.ctl
            .execute(&sticky("east"), &ctx(5))
            .await
            .unwrap()
            .already_done
    );
    // Preferring west while east is primary would hand west the primary by
    // priority takeover while east still takes w:1 writes: refused, nothing
    // changes (the move is Promote's).
    let v1 = lab.ctl.observe().await.unwrap().config_version;
    let e = lab
        .ctl
        .execute(&sticky("west"), &ctx(5))
        .await
        .expect_err("make_sticky west with the primary in east");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.message().contains("priority"), "{e}");
    assert_eq!(lab.ctl.observe().await.unwrap().config_version, v1);

    for op in [
        sticky("west"),
        Operation::Promote {
            target_region: "west".into(),
            mode: PromoteMode::Planned,
            candidate: None,
        },
        Operation::Rejoin,
    ] {
        let e = lab
            .ctl
            .execute(&op, &ctx(4))
            .await
            .expect_err("stale token");
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(e.message().contains("token 5"), "{e}");
    }
    // Read-only operations stay available to anyone.
    lab.ctl
        .execute(&Operation::CapturePosition, &ctx(1))
        .await
        .expect("capture with an old token");
    // A newer token proceeds and is recorded; a temporary error (a member
    // changing state) is retried, as the coordinator would.
    let promote = Operation::Promote {
        target_region: "west".into(),
        mode: PromoteMode::Planned,
        candidate: None,
    };
    let mut attempts = 0;
    let moved = loop {
        attempts += 1;
        match lab.ctl.execute(&promote, &ctx(6)).await {
            Ok(o) => break o,
            Err(e) if e.is_temporary() && attempts < 10 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!("promote under token 6: {e}"),
        }
    };
    assert!(moved
        .member
        .as_deref()
        .is_some_and(|m| m.starts_with("west")));
    let e = lab
        .ctl
        .execute(&sticky("east"), &ctx(5))
        .await
        .expect_err("token 5 is stale now");
    assert_eq!(e.kind(), ErrorKind::Refused);
}
