//! 20 planned switchovers back and forth under a continuous writer that
//! commits increasing sequence numbers. Checks, on real servers:
//! * every acknowledged commit is present on the final primary;
//! * no write is acknowledged by a fenced primary: a write *issued* after
//!   `Fence` returned is never acknowledged by the member that was fenced;
//! * a session that explicitly asks for a read-write transaction cannot
//!   write to a fenced member (the fence is not just a default);
//! * each switchover moves the primary and advances the timeline once.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::{Controller, OpContext, Operation};
use tokio_postgres::config::TargetSessionAttrs;

/// One acknowledged commit.
#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: i64,
    port: u16,
    issued: Instant,
}

fn writer_config(ports: &[u16]) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for p in ports {
        c.host("127.0.0.1").port(*p);
    }
    c.user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(1))
        .target_session_attrs(TargetSessionAttrs::ReadWrite);
    c
}

async fn writer(
    cfg: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<u64>>,
) {
    let mut seq: i64 = 0;
    let mut client: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    client = Some(c);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        seq += 1;
        let issued = Instant::now();
        match c
            .query_one(
                "INSERT INTO seq (n) VALUES ($1) RETURNING inet_server_port()",
                &[&seq],
            )
            .await
        {
            Ok(row) => {
                let port: i32 = row.get(0);
                acks.lock().unwrap().push(Ack {
                    seq,
                    port: port as u16,
                    issued,
                });
            }
            Err(_) => {
                // Outcome unknown (fenced, shut down, read-only): the number
                // is never reused, so an unacknowledged commit that did land
                // cannot be mistaken for an acknowledged one.
                *errors.lock().unwrap() += 1;
                client = None;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_planned_switchovers_under_load_lose_nothing() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .expect("lab cluster");
    f.primary_client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE seq (n bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        .await
        .unwrap();
    let port_of: BTreeMap<String, u16> = f
        .cluster
        .members()
        .iter()
        .map(|m| (m.name.clone(), m.port))
        .collect();
    let ports: Vec<u16> = port_of.values().copied().collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let w = tokio::spawn(writer(
        writer_config(&ports),
        stop.clone(),
        acks.clone(),
        errors.clone(),
    ));

    let ctx = OpContext {
        execution_id: "load".into(),
        token: (1).into(),
    };
    // (fenced member's port, when Fence returned)
    let mut fences: Vec<(u16, Instant)> = Vec::new();
    // (promoted member's port, when Promote was issued)
    let mut promotions: Vec<(u16, Instant)> = Vec::new();
    let targets = ["west", "east", "south", "east"];
    let mut last_term = f.ctl.observe().await.unwrap().term.unwrap();
    for i in 0..20 {
        let target = targets[i % targets.len()];
        // Let the writer commit on the current primary first.
        let before = acks.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap().len() < before + 20 {
            assert!(Instant::now() < deadline, "writer made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let steps = planned_switchover(&f.ctl, target, &ctx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("switchover {i} to {target}: {e}"));
        let fence = steps
            .iter()
            .find(|s| s.op == Operation::Fence)
            .expect("fence step");
        let fenced = fence.outcome.member.clone().expect("fenced member");
        // A planned switchover never needs pg_rewind: the fenced primary's
        // WAL ends where the new timeline forks, and no standby is ahead.
        for st in &steps {
            assert!(
                st.outcome.notes.iter().all(|n| !n.contains("rewound")),
                "switchover {i}: {} rewound a member: {:?}",
                st.op,
                st.outcome.notes
            );
        }
        fences.push((port_of[&fenced], fence.finished));
        let promote = steps
            .iter()
            .find(|s| matches!(s.op, Operation::Promote { .. }))
            .expect("promote step");
        let promoted = promote.outcome.member.clone().expect("promoted member");
        promotions.push((port_of[&promoted], promote.started));

        // The fenced member refuses a write even when a session asks for
        // read-write explicitly (it is in recovery, not just read-only by
        // default). It has been rejoined by now and is a standby.
        let c = f.cluster.connect(&fenced).await.unwrap();
        let r = c
            .batch_execute("BEGIN READ WRITE; INSERT INTO seq (n) VALUES (-1); COMMIT")
            .await;
        assert!(r.is_err(), "fenced member {fenced} accepted a write");

        let s = f.ctl.observe().await.unwrap();
        assert_eq!(s.primary_region(), Some(target), "switchover {i}");
        let term = s.term.unwrap();
        assert_eq!(
            term.get(),
            last_term.get() + 1,
            "timeline must advance exactly once"
        );
        last_term = term;
    }
    // Some commits on the final primary, then stop the writer.
    let before = acks.lock().unwrap().len();
    while acks.lock().unwrap().len() < before + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();

    let acks = acks.lock().unwrap().clone();
    let final_rows: std::collections::HashSet<i64> = f
        .primary_client()
        .await
        .unwrap()
        .query("SELECT n FROM seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<i64> = acks
        .iter()
        .map(|a| a.seq)
        .filter(|n| !final_rows.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged commits missing on the final primary: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // No acknowledgement of a write issued while its server was fenced:
    // after Fence returned and before that member's next promotion.
    let mut violations = Vec::new();
    for a in &acks {
        for (port, fenced_at) in &fences {
            if a.port != *port || a.issued < *fenced_at {
                continue;
            }
            let repromoted = promotions
                .iter()
                .any(|(p, at)| p == port && at > fenced_at && *at <= a.issued);
            if !repromoted {
                violations.push(a.seq);
            }
        }
    }
    assert!(
        violations.is_empty(),
        "writes acknowledged by a fenced primary: {violations:?}"
    );
    let per_port: BTreeMap<u16, usize> = acks.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.port).or_default() += 1;
        m
    });
    println!(
        "{} acknowledged commits ({} failed attempts) over 20 switchovers; acks per port: {per_port:?}",
        acks.len(),
        errors.lock().unwrap()
    );
    assert!(per_port.len() == 3, "every member should have been primary");
}
