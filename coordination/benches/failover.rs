//! Leader failover, measured: a leader process is `kill -9`ed (or resigns)
//! and another client campaigns until it leads; the time from the kill to
//! the new leadership is the failover time. Real etcd (3 members, from the
//! lab) and the Consul simulator, with the backends' default TTLs.
//!
//! ```text
//! cargo bench -p switchyard-coordination --bench failover --profile dev
//! ```
//! (the dev profile is enough: the time is the lease, not the code). Prints
//! a table; docs/ha.md has the figures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_coordination::consul::{Consul, ConsulOptions};
use switchyard_coordination::etcd::{Etcd, EtcdOptions};
use switchyard_coordination::{Coordinator, Node};

const ROUNDS: usize = 3;

async fn open(kind: &str, addr: &str) -> Arc<dyn Coordinator> {
    match kind {
        "etcd" => {
            let mut o = EtcdOptions::new(addr.split(',').map(str::to_string).collect());
            o.prefix = "/bench".into();
            Arc::new(Etcd::connect(o).await.expect("etcd"))
        }
        _ => {
            let mut o = ConsulOptions::new(addr);
            o.prefix = "bench".into();
            Arc::new(Consul::new(o).expect("consul"))
        }
    }
}

fn node(n: &str) -> Node {
    Node {
        name: n.into(),
        url: format!("http://{n}"),
    }
}

/// The child: lead, say so, and hold until killed.
async fn holder(kind: &str, addr: &str) {
    let c = open(kind, addr).await;
    let l = c
        .campaign(&node("victim"), Duration::from_millis(50))
        .await
        .expect("campaign");
    println!("leading {}", l.token());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    drop(l);
}

async fn take_over(c: &Arc<dyn Coordinator>, after: u64) -> (Duration, u64) {
    let t0 = Instant::now();
    let l = c
        .campaign(&node("successor"), Duration::from_millis(50))
        .await
        .expect("campaign");
    let took = t0.elapsed();
    assert!(l.token() > after, "token {} after {after}", l.token());
    let t = l.token();
    c.resign(l).await.expect("resign");
    (took, t)
}

async fn kill_rounds(kind: &str, addr: &str) -> Vec<Duration> {
    let me = std::env::current_exe().expect("own path");
    let c = open(kind, addr).await;
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        let mut child = Command::new(&me)
            .args(["holder", kind, addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("holder line");
        let token: u64 = line
            .trim()
            .strip_prefix("leading ")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("holder said {line:?}"));
        child.kill().expect("kill -9");
        let killed = Instant::now();
        child.wait().expect("reaped");
        let (_, t) = take_over(&c, token).await;
        assert!(t > token);
        out.push(killed.elapsed());
    }
    out
}

async fn resign_rounds(kind: &str, addr: &str) -> Vec<Duration> {
    let a = open(kind, addr).await;
    let b = open(kind, addr).await;
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        let l = a
            .campaign(&node("a"), Duration::from_millis(50))
            .await
            .expect("campaign");
        let token = l.token();
        let t0 = Instant::now();
        a.resign(l).await.expect("resign");
        take_over(&b, token).await;
        out.push(t0.elapsed());
    }
    out
}

fn ms(v: &[Duration]) -> String {
    let mut v: Vec<u128> = v.iter().map(Duration::as_millis).collect();
    v.sort();
    format!("{} / {} / {}", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) == Some("holder") {
        rt.block_on(holder(&args[1], &args[2]));
        return;
    }
    rt.block_on(async {
        let etcd = switchyard_lab::etcd::EtcdCluster::start(3, None)
            .await
            .expect("etcd lab");
        let consul = switchyard_lab::consulsim::ConsulSim::start("127.0.0.1")
            .await
            .expect("consul simulator");
        let backends = [
            ("etcd", etcd.endpoints().join(","), "TTL 10 s"),
            ("consul", consul.address(), "TTL 10 s, lock-delay 1 s"),
        ];
        println!("leader failover, {ROUNDS} rounds each, min / median / max in ms");
        println!("| backend | lease | kill -9 → new leader | resign → new leader |");
        println!("|---|---|---|---|");
        for (kind, addr, lease) in &backends {
            let killed = kill_rounds(kind, addr).await;
            let resigned = resign_rounds(kind, addr).await;
            println!("| {kind} | {lease} | {} | {} |", ms(&killed), ms(&resigned));
        }
    });
}
