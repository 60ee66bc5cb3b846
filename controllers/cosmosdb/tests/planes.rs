//! The controller against the simulator, below the coordinator: the window
//! in which both regions take writes, multi-region-write accounts, ARM
//! errors (throttling honoured, a missing role refused with a hint).

mod common;

use common::Lab;
use std::time::Duration;
use switchyard_controller::{Controller, ErrorKind, OpContext, Operation, PromoteMode, Role};
use switchyard_cosmosdb::CosmosController;
use switchyard_lab::cosmossim::{CosmosSimSpec, READER_CLIENT_ID};

fn promote(to: &str) -> Operation {
    Operation::Promote {
        target_region: to.into(),
        mode: PromoteMode::Planned,
        candidate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_primary_while_both_regions_take_writes() {
    let mut spec = CosmosSimSpec::for_regions("catalog", &["east", "west"]);
    spec.op_duration = Duration::from_secs(4);
    let lab = std::sync::Arc::new(Lab::start(spec).await);
    let l = lab.clone();
    let run =
        tokio::spawn(async move { l.ctl.execute(&promote("west"), &OpContext::adhoc()).await });
    // Stop the operation inside the window.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if lab.sim.write_regions().await.unwrap().1.len() == 2 {
            lab.sim.control("hold").await.unwrap();
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no window seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, writable) = lab.sim.write_regions().await.unwrap();
    assert_eq!(writable.len(), 2, "held inside the window: {writable:?}");
    // Writes are accepted through both regions: that is the hazard.
    assert_eq!(lab.write_via("east", "w-east").await, 201);
    assert_eq!(lab.write_via("west", "w-west").await, 201);
    let s = lab.ctl.observe().await.unwrap();
    assert!(
        s.primary().is_none(),
        "a primary while both planes disagree: {s:?}"
    );
    assert!(
        s.members.iter().any(|m| m.role == Role::Unknown
            && m.detail
                .as_deref()
                .is_some_and(|d| d.contains("data plane"))),
        "{s:?}"
    );
    lab.sim.control("release").await.unwrap();
    let out = run.await.unwrap().expect("promote succeeds");
    assert!(!out.already_done);
    let s = lab.ctl.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some("west"), "{s:?}");
    assert!(lab.has("west", "w-east").await && lab.has("west", "w-west").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_region_write_accounts_change_priorities_only() {
    let mut spec = CosmosSimSpec::for_regions("catalog", &["east", "west", "south"]);
    spec.multi_write = true;
    spec.op_duration = Duration::from_millis(600);
    let lab = Lab::start(spec).await;
    let s = lab.ctl.observe().await.unwrap();
    assert_eq!(s.primary_region(), Some("east"), "{s:?}");
    assert!(
        s.members
            .iter()
            .all(|m| m.reachable && m.role != Role::Unknown),
        "{s:?}"
    );
    for region in ["east", "west", "south"] {
        assert_eq!(lab.write_via(region, &format!("mw-{region}")).await, 201);
    }
    let ctx = OpContext::adhoc();
    let r = lab
        .ctl
        .execute(
            &Operation::CheckReadiness {
                target_region: "west".into(),
                mode: PromoteMode::Planned,
                candidate: None,
            },
            &ctx,
        )
        .await
        .unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("only failover priorities change")),
        "{r:?}"
    );
    // Nothing to fence: the controller has no fence.
    let e = lab.ctl.execute(&Operation::Fence, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    lab.ctl.execute(&promote("west"), &ctx).await.unwrap();
    assert_eq!(
        lab.ctl.observe().await.unwrap().primary_region(),
        Some("west")
    );
    // Every region kept taking writes throughout; only priorities moved.
    assert_eq!(lab.sim.write_regions().await.unwrap().1.len(), 3);
    let ops = lab.sim.operations_started().await.unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops.get("failoverPriorityChange"), Some(&1));
    // Forced with the hub down: still priorities only, never offlineRegion.
    lab.sim.control("outage west").await.unwrap();
    lab.ctl
        .execute(
            &Operation::Promote {
                target_region: "south".into(),
                mode: PromoteMode::Forced {
                    accept_data_loss: true,
                },
                candidate: None,
            },
            &ctx,
        )
        .await
        .unwrap();
    let ops = lab.sim.operations_started().await.unwrap();
    assert_eq!(ops.get("offlineRegion"), None, "{ops:?}");
    assert_eq!(ops.get("failoverPriorityChange"), Some(&2), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_errors_are_mapped() {
    let lab = Lab::three("catalog").await;
    let ctx = OpContext::adhoc();
    // 429 with Retry-After, three times: retried, then the move goes ahead.
    lab.sim.control("throttle 3").await.unwrap();
    let before = lab.sim.arm_requests().await.unwrap();
    lab.ctl
        .execute(&promote("west"), &ctx)
        .await
        .expect("throttling is waited out");
    assert!(lab.sim.arm_requests().await.unwrap() >= before + 3);
    assert_eq!(
        lab.sim
            .operations_started()
            .await
            .unwrap()
            .get("failoverPriorityChange"),
        Some(&1)
    );
    // 503 beyond the retries: a temporary error the coordinator retries.
    lab.sim.control("throttle 50 503").await.unwrap();
    let e = lab.ctl.observe().await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("503"), "{e}");
    lab.sim.control("throttle 0").await.unwrap();
    lab.ctl
        .observe()
        .await
        .expect("observe once the throttling ends");

    // An identity with only the reader role: 403, permanent, with the role it needs.
    let mut store = lab.store.clone();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("reader-secret");
    std::fs::write(&secret, lab.sim.client_secret(READER_CLIENT_ID).unwrap()).unwrap();
    let az = store.connection.azure.as_mut().unwrap();
    az.client_id = Some(READER_CLIENT_ID.into());
    az.client_secret_file = Some(secret.display().to_string());
    let reader = CosmosController::from_store(&store).unwrap();
    assert!(reader.observe().await.is_ok(), "the reader can read");
    let e = reader.execute(&promote("east"), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(!e.is_temporary());
    let msg = e.to_string();
    assert!(
        msg.contains("403") && msg.contains("DocumentDB Account Contributor"),
        "{msg}"
    );
    assert!(!format!("{reader:?}").contains(lab.sim.client_secret(READER_CLIENT_ID).unwrap()));

    // A wrong client secret: 401 from the token endpoint, permanent.
    std::fs::write(&secret, "not-the-secret").unwrap();
    let wrong = CosmosController::from_store(&store).unwrap();
    let e = wrong.observe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(!e.to_string().contains("not-the-secret"), "{e}");
}
