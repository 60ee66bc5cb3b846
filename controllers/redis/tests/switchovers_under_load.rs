//! 20 planned switchovers under a continuous writer, with and without
//! Sentinel: no acknowledged write is lost (a write is acknowledged when
//! `WAIT 1` confirmed a replica has it), and after every switchover exactly
//! one member says ROLE master, it is in the target region, and every
//! Sentinel names it.

mod common;

use common::{acked_set, connect, RedisFixture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_controller::direct::planned_switchover;
use switchyard_controller::OpContext;

/// Where a client would write now: the Sentinels' master, or without
/// Sentinel the member that says ROLE master.
async fn discover(addrs: &[String], sentinels: &[String], name: &str) -> Option<String> {
    for s in sentinels {
        let Ok(mut c) = connect(s).await else {
            continue;
        };
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name)
            .query_async(&mut c)
            .await
            .ok()?;
        return addr.map(|(h, p)| format!("{h}:{p}"));
    }
    for p in addrs {
        let Ok(mut c) = connect(p).await else {
            continue;
        };
        let role: Result<redis::Value, _> = redis::cmd("ROLE").query_async(&mut c).await;
        if let Ok(redis::Value::Array(v)) = role {
            if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"master") {
                return Some(p.clone());
            }
        }
    }
    None
}

async fn run(sentinels: bool, switchovers: u64) {
    let f = RedisFixture::start(sentinels).await.expect("lab cluster");
    let addrs: Vec<String> = f.cluster.data_members().map(|n| n.addr()).collect();
    let saddrs: Vec<String> = f
        .cluster
        .nodes()
        .iter()
        .filter(|n| n.sentinel)
        .map(|n| n.addr())
        .collect();
    let name = f.cluster.store().name.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    if let Some(p) = discover(&addrs, &saddrs, &name).await {
                        conn = connect(&p).await.ok();
                    }
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
                i += 1;
                let c = conn.as_mut().expect("connected");
                match acked_set(c, &format!("load:{i}"), &i.to_string()).await {
                    Ok(true) => acked.lock().unwrap().push(i),
                    // Not acknowledged: may or may not survive; not counted.
                    Ok(false) => {}
                    // NOREPLICAS (fenced), READONLY (demoted), link killed.
                    Err(_) => {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        })
    };
    let regions = ["east", "west", "south"];
    for k in 0..switchovers {
        let target = regions[((k + 1) % 3) as usize];
        let before = acked.lock().unwrap().len();
        // Let the writer get some writes in on this master first.
        while acked.lock().unwrap().len() < before + 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ctx = OpContext {
            execution_id: format!("load-{k}"),
            token: (k + 1).into(),
        };
        planned_switchover(&f.ctl, target, &ctx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("switchover {k} to {target}: {e}"));
        let masters = f.masters();
        assert_eq!(
            masters.len(),
            1,
            "switchover {k}: ROLE master on {masters:?}"
        );
        let m = f.cluster.node(&masters[0]).unwrap().clone();
        assert_eq!(m.region, target, "switchover {k}");
        if sentinels {
            let views = f.sentinel_views();
            let want = m.addr();
            assert!(
                views.iter().all(|v| *v == want),
                "switchover {k}: Sentinels name {views:?}, ROLE says {want}"
            );
        }
    }
    // The writer keeps going on the last master, then stops.
    let before = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < before + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 > 20 * switchovers,
        "writer made too little progress: {}",
        acked.len()
    );
    let master = f.cluster.node(&f.masters()[0]).unwrap().addr();
    let mut c = connect(&master).await.unwrap();
    let mut lost = vec![];
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("load:{i}")).collect();
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .unwrap();
        for (i, v) in chunk.iter().zip(vals) {
            if v.as_deref() != Some(i.to_string().as_str()) {
                lost.push(*i);
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
    println!(
        "{switchovers} switchovers (sentinel: {sentinels}): {} acknowledged writes, none lost",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_switchovers_with_sentinel_lose_no_acknowledged_write() {
    run(true, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_switchovers_without_sentinel_lose_no_acknowledged_write() {
    run(false, 20).await;
}
