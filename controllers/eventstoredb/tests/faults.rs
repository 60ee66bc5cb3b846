//! Region cuts with and without a quorum, and priority drift after a
//! restart, observed and acted on through the controller.

mod common;

use common::{id_for, Lab};
use std::time::Duration;
use switchyard_controller::{
    Controller, ControllerExt, ErrorKind, FencingToken, OpContext, Operation, PromoteMode, Role,
};

fn ctx() -> OpContext {
    OpContext {
        execution_id: "faults".into(),
        token: (1).into(),
    }
}

fn forced(region: &str) -> Operation {
    Operation::Promote {
        target_region: region.into(),
        mode: PromoteMode::Forced {
            accept_data_loss: false,
        },
        candidate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_leaders_region_lets_the_survivors_elect_and_the_controller_reports() {
    let lab = Lab::start(1024 * 1024).await;
    for k in 0..10 {
        lab.append("cut", id_for(k), 32).await.unwrap();
    }
    lab.sim.cut_region("east").unwrap();
    // The survivors hold 2 of 3 votes and elect by themselves.
    let s = lab
        .ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.primary().is_some_and(|p| p.region != "east")
        })
        .await
        .unwrap_or_else(|e| panic!("no leader outside east: {e}\n{}", lab.sim.describe()));
    let east = s.member("ledger-east").unwrap();
    assert!(!east.reachable && east.role == Role::Down, "{east:?}");
    let out = lab
        .ctl
        .execute(&forced("west"), &ctx())
        .await
        .unwrap_or_else(|e| panic!("forced promote to west: {e}\n{}", lab.sim.describe()));
    let loss = out.data_loss.expect("a data-loss estimate");
    assert!(loss.bytes.is_some(), "{loss:?}");
    let s = lab.ctl.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some("west"), "{s:?}");
    let ids = lab.read_ids("cut").await.unwrap();
    assert!(
        (0..10).all(|k| ids.contains(&id_for(k))),
        "acknowledged appends kept"
    );
    // Healing: east rejoins as a follower of the new leader.
    lab.sim.heal_region("east").unwrap();
    let s = lab
        .ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.member("ledger-east")
                .is_some_and(|m| m.reachable && m.role == Role::Secondary)
        })
        .await
        .unwrap_or_else(|e| panic!("east did not rejoin: {e}\n{}", lab.sim.describe()));
    assert_eq!(s.primary_region(), Some("west"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_forced_failover_is_refused_and_says_why() {
    let lab = Lab::start(1024 * 1024).await;
    lab.sim.cut_region("east").unwrap();
    lab.sim.cut_region("west").unwrap();
    lab.ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.members.iter().filter(|m| m.reachable).count() == 1
        })
        .await
        .unwrap();
    for op in [
        forced("south"),
        Operation::CheckReadiness {
            target_region: "south".into(),
            mode: PromoteMode::Forced {
                accept_data_loss: true,
            },
            candidate: None,
        },
    ] {
        let e = lab
            .ctl
            .execute(&op, &ctx())
            .await
            .expect_err("no quorum: refused");
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(
            e.message().contains("only 1 of 3 voting nodes") && e.message().contains("quorum of 2"),
            "{e}"
        );
    }
    // Nothing was elected in south meanwhile.
    let s = lab.ctl.observe().await.unwrap();
    assert!(s.primary().is_none(), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resets_runtime_priority_and_observe_reports_the_drift() {
    let lab = Lab::start(1024 * 1024).await;
    let out = lab
        .ctl
        .execute(
            &Operation::MakeSticky {
                target_region: "west".into(),
                candidate: None,
            },
            &ctx(),
        )
        .await
        .unwrap();
    assert!(!out.already_done);
    let s = lab.ctl.observe().await.unwrap();
    assert!(
        s.members.iter().all(|m| !m
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("priority drift")),
        "no drift right after MakeSticky: {s:?}"
    );
    assert_eq!(s.member("ledger-west").unwrap().priority, Some(10.0));
    // A restart: the node comes back with its configured NodePriority (1).
    lab.sim.kill("ledger-west").unwrap();
    lab.sim.revive("ledger-west").unwrap();
    let s = lab
        .ctl
        .wait_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
            s.member("ledger-west")
                .is_some_and(|m| m.reachable && m.role == Role::Secondary)
        })
        .await
        .unwrap();
    let west = s.member("ledger-west").unwrap();
    assert_eq!(west.priority, Some(1.0), "{west:?}");
    let detail = west.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("priority drift")
            && detail.contains("runtime NodePriority is 1")
            && detail.contains("Switchyard set 10")
            && detail.contains("set NodePriority=10"),
        "{detail}"
    );
    // The leader did not move: a priority change alone elects nobody.
    assert_eq!(s.primary_region(), Some("east"));
    // MakeSticky again repairs it.
    lab.ctl
        .execute(
            &Operation::MakeSticky {
                target_region: "west".into(),
                candidate: None,
            },
            &ctx(),
        )
        .await
        .unwrap();
    let s = lab.ctl.observe().await.unwrap();
    assert_eq!(s.member("ledger-west").unwrap().priority, Some(10.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_fencing_token_in_the_control_stream_refuses_an_older_coordinator() {
    let lab = Lab::start(1024 * 1024).await;
    let newer = OpContext {
        execution_id: "newer".into(),
        token: (7).into(),
    };
    let sticky = Operation::MakeSticky {
        target_region: "east".into(),
        candidate: None,
    };
    assert_eq!(
        lab.ctl.recorded_token().await.unwrap(),
        Some(FencingToken(0))
    );
    lab.ctl.execute(&sticky, &newer).await.unwrap();
    assert_eq!(
        lab.ctl.recorded_token().await.unwrap(),
        Some(FencingToken(7))
    );
    let e = lab
        .ctl
        .execute(&sticky, &ctx())
        .await
        .expect_err("an older token is refused");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.message().contains("fencing token 7"), "{e}");
}
