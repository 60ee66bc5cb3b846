//! A leader cut off from its backend by a real network partition: the
//! leader runs in a network namespace that reaches the backend (real etcd,
//! the Consul simulator) over a veth pair; the test takes the link down.
//! Observed: the cut-off leader's signal fires from its own clock and it
//! issues nothing more; every step it issued precedes the moment another
//! server wins the leadership (no overlap); once the link is back, the
//! backend refuses its writes.
//!
//! Needs root and `ip` (iproute2); skipped with a message elsewhere, and
//! required in CI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_coordination::consul::{Consul, ConsulOptions};
use switchyard_coordination::etcd::{Etcd, EtcdOptions};
use switchyard_coordination::{CoordinationError, Coordinator, Node};
use switchyard_lab::netns::Netns;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn open(kind: &str, addr: &str) -> Box<dyn Coordinator> {
    match kind {
        "etcd" => {
            let mut o = EtcdOptions::new(vec![addr.to_string()]);
            o.prefix = "/partition".into();
            o.ttl = Duration::from_secs(3);
            o.request_timeout = Duration::from_secs(2);
            Box::new(Etcd::connect(o).await.expect("etcd"))
        }
        _ => {
            let mut o = ConsulOptions::new(addr);
            o.prefix = "partition".into();
            o.request_timeout = Duration::from_secs(2);
            Box::new(Consul::new(o).expect("consul"))
        }
    }
}

fn node(n: &str) -> Node {
    Node {
        name: n.into(),
        url: format!("http://{n}"),
    }
}

/// The leader inside the namespace (run by the test below through
/// `ip netns exec`; does nothing when run directly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the partition tests"]
async fn partition_holder() {
    let (Ok(kind), Ok(addr)) = (
        std::env::var("SY_HOLDER_KIND"),
        std::env::var("SY_HOLDER_ADDR"),
    ) else {
        return;
    };
    let c = open(&kind, &addr).await;
    let l = c
        .campaign(&node("cut-off"), Duration::from_millis(100))
        .await
        .expect("campaign");
    println!("HOLDER leading {}", l.token());
    let mut n = 0;
    loop {
        // Before each step: enough lease left for it, or stop.
        match l.ensure(Duration::from_millis(500)) {
            Ok(_) => {
                n += 1;
                println!("HOLDER issued {n} {}", now_ms());
            }
            Err(e) => {
                println!("HOLDER stopped {} {e}", now_ms());
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = l.lost() => {}
        }
    }
    // Keep trying one more journal write until the backend answers (the
    // link comes back): it must refuse it.
    for _ in 0..300 {
        match c
            .append(&l, "20261201T000030Z-partition", 1, b"late\n")
            .await
        {
            Ok(()) => {
                println!("HOLDER late-append ACCEPTED");
                return;
            }
            Err(CoordinationError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                println!("HOLDER late-append refused {:?}", e.kind());
                return;
            }
        }
    }
    println!("HOLDER late-append unanswered");
}

async fn partitioned_leader_stops_before_the_next_one_starts(kind: &str, ns: &Netns, addr: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "partition_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SY_HOLDER_KIND", kind)
        .env("SY_HOLDER_ADDR", addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("holder in the namespace");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints `test partition_holder ... ` before the
            // test's own output, on the same line.
            if let Some(i) = line.find("HOLDER ") {
                let _ = tx.send(line[i + "HOLDER ".len()..].to_string());
            }
        }
    });
    let next = |what: &str| -> String {
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("holder: no `{what}` line"))
    };
    let leading = next("leading");
    let old_token: u64 = leading
        .strip_prefix("leading ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{leading}"));
    // Let it issue a few steps, then cut it off from the backend.
    let mut issued = Vec::new();
    while issued.len() < 3 {
        let l = next("issued");
        issued.push(l);
    }
    ns.link(false).expect("cut the link");
    // Another server (outside the namespace) campaigns until it wins.
    let c = open(kind, addr).await;
    let won = tokio::time::timeout(
        Duration::from_secs(120),
        c.campaign(&node("successor"), Duration::from_millis(100)),
    )
    .await
    .expect("a successor within the timeout")
    .expect("campaign");
    let won_at = now_ms();
    assert!(won.token() > old_token, "{} <= {old_token}", won.token());
    // Everything the cut-off leader printed until it stopped.
    let mut stopped = None;
    while stopped.is_none() {
        let l = next("stopped");
        if l.starts_with("stopped") {
            stopped = Some(l);
        } else {
            issued.push(l);
        }
    }
    let last_issue: u64 = issued
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .max()
        .unwrap();
    assert!(
        last_issue < won_at,
        "the cut-off leader issued at {last_issue}, after the successor won at {won_at}"
    );
    // Heal: the old leader's late write reaches the backend and is refused.
    ns.link(true).expect("restore the link");
    let late = next("late-append");
    assert!(late.starts_with("late-append refused"), "{late}");
    assert!(late.contains("NotLeader"), "{late}");
    c.resign(won).await.unwrap();
    let _ = child.wait();
    eprintln!(
        "{kind}: leader (token {old_token}) issued {} steps, then {}; successor won at {won_at}",
        issued.len(),
        stopped.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_partitioned_leader_issues_nothing_after_its_lease() {
    let Some(ns) = Netns::or_skip("e", "169.254.77.1", "169.254.77.2") else {
        return;
    };
    let etcd = switchyard_lab::etcd::EtcdCluster::start_on(1, None, "169.254.77.1")
        .await
        .expect("etcd on the veth address");
    let addr = etcd.endpoints()[0].clone();
    partitioned_leader_stops_before_the_next_one_starts("etcd", &ns, &addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_partitioned_leader_issues_nothing_after_its_lease() {
    let Some(ns) = Netns::or_skip("c", "169.254.78.1", "169.254.78.2") else {
        return;
    };
    let sim = switchyard_lab::consulsim::ConsulSim::start("169.254.78.1")
        .await
        .expect("simulator on the veth address");
    partitioned_leader_stops_before_the_next_one_starts("consul", &ns, &sim.address()).await;
}
