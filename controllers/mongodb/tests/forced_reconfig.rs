//! Forced failover when the voting majority is gone: refused without
//! `accept_data_loss`, a `force` reconfig of the survivors with it, and the
//! lost members re-added (rolling back what only they had) by `Rejoin`.

mod common;

use bson::doc;
use common::Lab;
use std::time::Duration;
use switchyard_controller::{
    Controller, ControllerExt, ErrorKind, OpContext, Operation, PromoteMode, Role,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_reconfig_only_with_accepted_loss_and_rejoin_counts_rollback() {
    let lab = Lab::start(10_000).await;
    let ctx = OpContext {
        execution_id: "forced".into(),
        token: (7).into(),
    };
    for k in 0..10 {
        lab.write_majority(k).await.expect("majority write");
    }
    for m in ["west-1", "west-2"] {
        lab.sim.set_lag(m, Duration::from_secs(3600));
    }
    for k in 100..103 {
        lab.coll().insert_one(doc! { "_id": k }).await.expect("w:1");
    }
    // East and the witness are gone: west holds 2 of 5 votes.
    lab.sim.cut_region("east");
    lab.sim.cut_region("witness");
    for m in ["west-1", "west-2"] {
        lab.sim.set_lag(m, Duration::ZERO);
    }
    lab.ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.members.iter().filter(|m| m.reachable).count() == 2
        })
        .await
        .expect("only west reachable");

    let refused = lab
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
        .expect_err("forced reconfig without accepting loss");
    assert_eq!(refused.kind(), ErrorKind::LagTooHigh, "{refused}");
    assert!(lab.sim.primary().is_none_or(|p| p.starts_with("east")));

    let done = lab
        .ctl
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
        .unwrap_or_else(|e| panic!("forced promote: {e}\n{}", lab.sim.describe()));
    assert!(done
        .member
        .as_deref()
        .is_some_and(|m| m.starts_with("west")));
    let loss = done.data_loss.expect("a data-loss estimate");
    assert!(loss.note.contains("east-1"), "{loss:?}");
    // Repeating it changes nothing.
    let again = lab
        .ctl
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
        .expect("repeat");
    assert!(again.already_done);
    // The two-member config accepts majority writes again.
    lab.write_majority(50)
        .await
        .expect("majority write after force");

    lab.sim.heal_region("east");
    lab.sim.heal_region("witness");
    // Rejoin re-adds east and the arbiter one voting member at a time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rejoin = loop {
        match lab.ctl.execute(&Operation::Rejoin, &ctx).await {
            Ok(o) if !o.already_done => break o,
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("rejoin: {other:?}\n{}", lab.sim.describe()),
        }
    };
    let s = lab
        .ctl
        .wait_until(Duration::from_secs(60), Duration::from_millis(50), |s| {
            s.members.iter().all(|m| {
                m.reachable && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
            }) && s.primary_region() == Some("west")
        })
        .await
        .unwrap_or_else(|e| panic!("set did not settle: {e}\n{}", lab.sim.describe()));
    assert_eq!(s.members.iter().filter(|m| m.votes == Some(1)).count(), 5);
    assert_eq!(lab.sim.rolled_back_inserts(), 3, "{}", lab.sim.describe());
    let rolled = lab
        .ctl
        .execute(&Operation::Rejoin, &ctx)
        .await
        .expect("rejoin report");
    assert_eq!(
        rolled.data_loss.as_ref().and_then(|d| d.writes),
        Some(3),
        "first rejoin {rejoin:?}, second {rolled:?}"
    );
    for k in (0..10).chain([50]) {
        assert!(lab.contains(k).await.unwrap(), "majority write {k} lost");
    }
    for k in 100..103 {
        assert!(!lab.contains(k).await.unwrap(), "w:1 write {k} survived");
    }
}
