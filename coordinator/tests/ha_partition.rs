//! A leading `switchyard serve` cut off by a real network partition in the
//! middle of an execution, against a real PostgreSQL lab.
//!
//! Server `a` runs in a network namespace reaching the host over a veth
//! pair: the backend (real etcd; the Consul simulator) and, through TCP
//! forwarders on both sides of the link, the PostgreSQL members. Servers `b`
//! and `c` run on the host. `a` leads and starts a failover; a `pre_stage`
//! hook in `a`'s own safety policy holds it after the fence, before the
//! promotion. The test takes the link down: `a`'s lease lapses on its own
//! clock, `b` or `c` takes over, resumes the execution from the journal in
//! the backend and finishes it. The link comes back and `a`'s hook is
//! released: `a` stops with its leadership lost and issues nothing — one
//! promotion (timeline + 1), and an independent writer that wrote all along
//! lost no acknowledged commit.
//!
//! Needs root and `ip` (iproute2); skipped with a message elsewhere, and
//! required in CI.

mod common;

use common::serve::{read, token, Server};
use common::{pg_primary, until, Workspace, WAIT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_lab::netns::Netns;
use switchyard_lab::postgres::PgCluster;
use tokio::time::Instant;

/// The forwarders inside the namespace: `127.0.0.1:PORT` → `SY_FWD_TO:PORT`
/// for every port in `SY_FWD_PORTS` (run by the test below through
/// `ip netns exec`; does nothing when run directly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the partition tests"]
async fn forwarder_in_the_namespace() {
    let (Ok(to), Ok(ports)) = (std::env::var("SY_FWD_TO"), std::env::var("SY_FWD_PORTS")) else {
        return;
    };
    for p in ports.split(',') {
        let l = tokio::net::TcpListener::bind(format!("127.0.0.1:{p}"))
            .await
            .unwrap();
        tokio::spawn(forward(l, format!("{to}:{p}")));
    }
    println!("FORWARDING");
    // Until the test kills us.
    std::future::pending::<()>().await;
}

/// Accept on `l`, copy both ways to `to`.
async fn forward(l: tokio::net::TcpListener, to: String) {
    loop {
        let Ok((mut a, _)) = l.accept().await else {
            continue;
        };
        let to = to.clone();
        tokio::spawn(async move {
            if let Ok(mut b) = tokio::net::TcpStream::connect(&to).await {
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
        });
    }
}

/// A child process, killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(url: &str, tok: &str) -> Option<Value> {
    let r = client().get(url).bearer_auth(tok).send().await.ok()?;
    r.json().await.ok()
}

/// Writes a row every few milliseconds to whichever member is primary, and
/// remembers each one the primary acknowledged (committed).
async fn writer(cluster: Arc<PgCluster>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<i64>>>) {
    let mut n = 0i64;
    // Tries every member: a standby refuses the write, the primary commits
    // it; anything failing (a member restarting) is simply not acknowledged.
    let names: Vec<String> = cluster.members().iter().map(|m| m.name.clone()).collect();
    while !stop.load(Ordering::SeqCst) {
        for m in &names {
            n += 1;
            let Ok(c) = cluster.connect(m).await else {
                continue;
            };
            if c.execute("INSERT INTO sy_writer (n) VALUES ($1)", &[&n])
                .await
                .is_ok()
            {
                acked.lock().unwrap().push(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn partitioned_leader_stops(kind: &str, tag: &str, outer: &str, inner: &str) {
    let Some(ns) = Netns::or_skip(tag, outer, inner) else {
        return;
    };
    let etcd;
    let sim;
    let backend = if kind == "etcd" {
        etcd = switchyard_lab::etcd::EtcdCluster::start_on(1, None, outer)
            .await
            .expect("etcd on the veth address");
        vec![
            "--backend".to_string(),
            format!("etcd://{}", etcd.endpoints()[0]),
            "--lease-ttl".into(),
            "3".into(),
        ]
    } else {
        sim = switchyard_lab::consulsim::ConsulSim::start(outer)
            .await
            .expect("simulator on the veth address");
        vec![
            "--backend".to_string(),
            format!("consul://{}", sim.address()),
        ]
    };
    let backend: Vec<&str> = backend.iter().map(String::as_str).collect();
    let cluster = Arc::new(common::pg_cluster("orders").await);
    // `a`'s topology runs the lab's host commands (pg_ctl and friends) in
    // the host's network namespace, as they would run on the database
    // hosts: a postmaster started from `a`'s namespace would listen there.
    let host = std::process::id();
    let mut escaped = cluster.topology().clone();
    for st in &mut escaped.stores {
        for m in &mut st.members {
            let h = &mut m.hooks;
            for cmd in [
                &mut h.stop,
                &mut h.start,
                &mut h.start_as_standby,
                &mut h.rewind,
            ]
            .into_iter()
            .flatten()
            .chain(h.extra.values_mut())
            {
                *cmd = format!("nsenter --net=/proc/{host}/ns/net {cmd}");
            }
        }
    }
    let ws = [
        Workspace::new(&escaped),
        Workspace::new(cluster.topology()),
        Workspace::new(cluster.topology()),
    ];
    let tokens = ws[0].path("tokens");
    let viewer = token(&ws[0], &tokens, "viewer");
    let operator = token(&ws[0], &tokens, "operator");

    // PostgreSQL through the link: host side O:PORT → 127.0.0.1:PORT,
    // namespace side 127.0.0.1:PORT → O:PORT.
    let ports: Vec<String> = cluster
        .members()
        .iter()
        .map(|m| m.port.to_string())
        .collect();
    for p in &ports {
        let l = tokio::net::TcpListener::bind(format!("{outer}:{p}"))
            .await
            .unwrap();
        tokio::spawn(forward(l, format!("127.0.0.1:{p}")));
    }
    let mut fwd = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "forwarder_in_the_namespace",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SY_FWD_TO", outer)
        .env("SY_FWD_PORTS", ports.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("forwarder in the namespace");
    let mut line = String::new();
    let mut out = BufReader::new(fwd.stdout.take().unwrap());
    while !line.contains("FORWARDING") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "forwarder ended");
    }
    let _fwd = Killed(fwd);

    // `a`'s own policy holds its execution before the promotion stage until
    // `go` exists.
    let reached = ws[0].path("reached");
    let go = ws[0].path("go");
    std::fs::write(
        ws[0].dir.path().join("topology.safety.toml"),
        format!(
            "[[hooks]]\nname = \"hold\"\nat = \"pre_stage\"\ntimeout_ms = 600000\ncommand = '''\
             case \"$SWITCHYARD_STAGE_NAME\" in *promote*) touch {r}; \
             while [ ! -f {g} ]; do sleep 0.1; done;; esac'''\n",
            r = reached.display(),
            g = go.display()
        ),
    )
    .unwrap();

    // `a` in the namespace, alone first, so it leads.
    let a_stderr = ws[0].path("a.stderr");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name])
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--topology", ws[0].topology.to_str().unwrap()])
        .args(["--state-dir", ws[0].state.to_str().unwrap()])
        .args(["serve", "--listen", &format!("{inner}:0"), "--node", "a"])
        .args(["--tokens-file", tokens.to_str().unwrap()])
        .args(["--observe-interval-ms", "500"])
        .args(&backend)
        .env_remove("SWITCHYARD_CRASH_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&a_stderr).unwrap());
    let mut a = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(a.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let a_url = serde_json::from_str::<Value>(&line)
        .unwrap_or_else(|e| panic!("a: {line:?}: {e}; {}", read(&a_stderr)))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let _a = Killed(a);
    until("a leads and is ready", || async {
        let v = get(&format!("{a_url}/v1/leader"), &viewer).await?;
        let ready = client()
            .get(format!("{a_url}/readyz"))
            .send()
            .await
            .ok()?
            .status()
            == 200;
        (v["this_server"] == json!(true) && ready).then_some(())
    })
    .await;
    let b = Server::start(&ws[1], &tokens, "b", &backend);
    let c = Server::start(&ws[2], &tokens, "c", &backend);

    // The independent writer.
    let primary = cluster
        .connect(&pg_primary(&cluster).await.unwrap().0)
        .await
        .unwrap();
    primary
        .batch_execute("CREATE TABLE sy_writer (n bigint PRIMARY KEY)")
        .await
        .unwrap();
    let (_, from, tli0) = pg_primary(&cluster).await.unwrap();
    let to = if from == "east" { "west" } else { "east" };
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = tokio::spawn(writer(cluster.clone(), stop.clone(), acked.clone()));
    until("the writer commits", || async {
        (!acked.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    let r = client()
        .post(format!("{a_url}/v1/executions"))
        .bearer_auth(&operator)
        .json(&json!({"to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let held = until("a is held before the promotion (or ends)", || async {
        if reached.exists() {
            return Some(None);
        }
        let v = get(&format!("{a_url}/v1/executions/{id}"), &viewer).await?;
        (v["status"] != json!("running")).then_some(Some(v))
    })
    .await;
    assert!(
        held.is_none(),
        "a's execution ended before the hook: {held:?}\n{}",
        read(&a_stderr)
    );

    // Cut `a` off.
    ns.link(false).expect("cut the link");
    let survivors = [&b, &c];
    let new = until("b or c leads", || async {
        for s in survivors {
            let v = get(&format!("{}/v1/leader", s.url), &viewer).await?;
            if v["this_server"] == json!(true) {
                return Some(s.url.clone());
            }
        }
        None
    })
    .await;
    until("the new leader finishes the execution", || async {
        let v = get(&format!("{new}/v1/executions/{id}"), &viewer).await?;
        (v["status"] == json!("succeeded")).then_some(())
    })
    .await;
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), (to, tli0 + 1), "one promotion");

    // Heal and release `a`: it finds its leadership gone and stops.
    ns.link(true).expect("restore the link");
    std::fs::write(&go, "").unwrap();
    let deadline = Instant::now() + WAIT;
    let said = loop {
        let e = read(&a_stderr);
        if let Some(l) = e.lines().find(|l| {
            l.contains(&id)
                && (l.contains("execution ended without succeeding")
                    || l.contains("execution ended with an error"))
        }) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "a never said its execution stopped:\n{e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        said.contains("leader") || said.contains("lost") || said.contains("lease"),
        "{said}"
    );
    until("a follows", || async {
        let v = get(&format!("{a_url}/v1/leader"), &viewer).await?;
        (v["this_server"] == json!(false) && v["url"] == json!(new)).then_some(())
    })
    .await;
    // Nothing more happened to the store: still one promotion.
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), (to, tli0 + 1), "a issued nothing");

    stop.store(true, Ordering::SeqCst);
    w.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let p = cluster
        .connect(&pg_primary(&cluster).await.unwrap().0)
        .await
        .unwrap();
    let kept: Vec<i64> = p
        .query("SELECT n FROM sy_writer ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i64> = acked.iter().filter(|n| !kept.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    eprintln!(
        "{kind}: {} acknowledged commits kept; a stopped: {said}",
        acked.len()
    );
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_partitioned_leader_stops_and_the_next_finishes() {
    partitioned_leader_stops("etcd", "he", "169.254.87.1", "169.254.87.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_partitioned_leader_stops_and_the_next_finishes() {
    partitioned_leader_stops("consul", "hc", "169.254.88.1", "169.254.88.2").await;
}
