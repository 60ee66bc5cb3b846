//! Acceptance: the primary-region-loss scenario with two data-bearing
//! members in each of two regions and an arbiter in a third.

mod common;

use bson::doc;
use common::Lab;
use std::time::Duration;
use switchyard_controller::direct::{forced_failover, planned_switchover};
use switchyard_controller::{Controller, ControllerExt, OpContext, Operation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_region_loss_elects_sticks_and_fails_back_on_request() {
    let lab = Lab::start(10_000).await;
    let ctx = OpContext {
        execution_id: "region-loss".into(),
        token: (1).into(),
    };
    for k in 0..20 {
        lab.write_majority(k).await.expect("majority write");
    }
    // w:1 writes that only east has: west applies nothing while lagging.
    for m in ["west-1", "west-2"] {
        lab.sim.set_lag(m, Duration::from_secs(3600));
    }
    for k in 100..105 {
        lab.coll()
            .insert_one(doc! { "_id": k })
            .await
            .expect("w:1 write on the east primary");
    }

    lab.sim.cut_region("east");
    for m in ["west-1", "west-2"] {
        lab.sim.set_lag(m, Duration::ZERO);
    }
    // The set elects a primary in west by itself; the controller sees it.
    let seen = lab
        .ctl
        .wait_until(Duration::from_secs(60), Duration::from_millis(50), |s| {
            s.primary_region() == Some("west")
        })
        .await
        .unwrap_or_else(|e| panic!("no primary in west: {e}\n{}", lab.sim.describe()));
    assert!(seen
        .members
        .iter()
        .filter(|m| m.region == "east")
        .all(|m| !m.reachable));

    // Make it stick through the coordinator's forced-failover sequence: the
    // promotion is already done by the set, only the priorities change.
    let steps = forced_failover(&lab.ctl, "west", false, &ctx)
        .await
        .expect("forced failover sequence");
    let promote = steps
        .iter()
        .find(|s| matches!(s.op, Operation::Promote { .. }))
        .expect("promote step");
    assert!(promote
        .outcome
        .member
        .as_deref()
        .is_some_and(|m| m.starts_with("west")));
    let sticky = steps
        .iter()
        .find(|s| matches!(s.op, Operation::MakeSticky { .. }))
        .expect("sticky step");
    assert!(!sticky.outcome.already_done, "priorities had to change");
    // West sees 2 of the 3 data-bearing voting members writeMajorityCount
    // needs: a safe reconfig would wait for CurrentConfigNotCommittedYet
    // (308), so the priority-only change is forced on the elected primary.
    assert!(
        sticky
            .outcome
            .notes
            .iter()
            .any(|n| n.contains("priority-only forced reconfig")),
        "{:?}",
        sticky.outcome.notes
    );
    let state = lab.ctl.observe().await.expect("observe");
    let prio = |name: &str| state.member(name).and_then(|m| m.priority).unwrap_or(0.0);
    assert!(prio("west-1") > prio("east-1") && prio("west-2") > prio("east-2"));
    let before_heal = lab.sim.rolled_back_inserts();
    assert_eq!(before_heal, 0);

    // Heal: east rejoins, rolls back its five w:1 writes, and the primary
    // stays in west (priority takeover would have moved it back otherwise).
    lab.sim.heal_region("east");
    lab.ctl
        .wait_until(Duration::from_secs(60), Duration::from_millis(50), |s| {
            s.members.iter().all(|m| m.reachable)
                && s.members
                    .iter()
                    .filter(|m| m.region == "east")
                    .all(|m| m.role == switchyard_controller::Role::Secondary)
        })
        .await
        .unwrap_or_else(|e| panic!("east did not rejoin: {e}\n{}", lab.sim.describe()));
    // Give a takeover every chance: many election timeouts of a healthy set.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        lab.primary_region().await.as_deref(),
        Some("west"),
        "healing the old region moved the primary back:\n{}",
        lab.sim.describe()
    );
    assert_eq!(lab.sim.rolled_back_inserts(), 5, "{}", lab.sim.describe());
    let rejoin = lab
        .ctl
        .execute(&Operation::Rejoin, &ctx)
        .await
        .expect("rejoin");
    let loss = rejoin.data_loss.expect("rolled-back writes are reported");
    assert_eq!(loss.writes, Some(5), "{loss:?}");

    // Failback on request.
    planned_switchover(&lab.ctl, "east", &ctx, Duration::from_secs(60))
        .await
        .expect("failback to east");
    assert_eq!(lab.primary_region().await.as_deref(), Some("east"));
    for k in 0..20 {
        assert!(lab.contains(k).await.unwrap(), "majority write {k} lost");
    }
    for k in 100..105 {
        assert!(
            !lab.contains(k).await.unwrap(),
            "w:1 write {k} should have been rolled back"
        );
    }
    lab.write_majority(1000)
        .await
        .expect("writes after failback");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(lab.primary_region().await.as_deref(), Some("east"));
}
