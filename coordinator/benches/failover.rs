//! Leader failover: `kill -9` the leading `switchyard serve`, and time until
//! another of the three servers leads and is ready (`GET /v1/leader` says
//! `this_server`, `/readyz` answers 200), on real etcd and on the lab's
//! Consul simulator, against the lab's real PostgreSQL cluster. Prints a
//! table; the killed server is restarted as a follower before the next run.
//!
//! ```text
//! cargo bench -p switchyard --bench failover            # 3 runs per backend
//! SWITCHYARD_BENCH_RUNS=5 cargo bench -p switchyard --bench failover
//! ```
//!
//! What bounds it: the lease TTL (etcd: the lease lapses `TTL` after the
//! last keep-alive; Consul: the session is invalidated after up to twice
//! the TTL, then the lock-delay), plus one campaign poll.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn switchyard(dir: &Path, node: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.args(["--topology", dir.join("topology.toml").to_str().unwrap()])
        .args(["--state-dir", dir.join(node).to_str().unwrap()])
        .env_remove("SWITCHYARD_CRASH_AT")
        .stdin(Stdio::null());
    c
}

fn start(dir: &Path, node: &str, backend: &[String]) -> Server {
    let mut c = switchyard(dir, node);
    c.args(["serve", "--listen", "127.0.0.1:0", "--node", node])
        .args(["--tokens-file", dir.join("tokens").to_str().unwrap()])
        .args(["--observe-interval-ms", "500"])
        .args(backend)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("{node}.stderr"))).unwrap());
    let mut child = c.spawn().expect("switchyard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("serve's first line");
    Server {
        child,
        url: v["url"].as_str().unwrap().to_string(),
    }
}

async fn leads_and_ready(http: &reqwest::Client, url: &str, viewer: &str) -> bool {
    let leads = match http
        .get(format!("{url}/v1/leader"))
        .bearer_auth(viewer)
        .send()
        .await
    {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["this_server"] == serde_json::json!(true)),
        Err(_) => false,
    };
    leads
        && http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
}

/// Index of the one server that leads and is ready, waiting for it.
async fn leader(http: &reqwest::Client, servers: &[Option<Server>], viewer: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        for (i, s) in servers.iter().enumerate() {
            if let Some(s) = s {
                if leads_and_ready(http, &s.url, viewer).await {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader within 300 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    backend: String,
    ttl: String,
    ms: Vec<u128>,
}

async fn measure(
    dir: &Path,
    backend: &str,
    ttl: &str,
    args: Vec<String>,
    runs: usize,
    viewer: &str,
) -> Row {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let names = ["a", "b", "c"];
    let mut servers: Vec<Option<Server>> = names
        .iter()
        .map(|n| Some(start(dir, &format!("{backend}-{n}"), &args)))
        .collect();
    let mut ms = vec![];
    for _ in 0..runs {
        let l = leader(&http, &servers, viewer).await;
        // SIGKILL: no resignation, the lease must lapse.
        let killed = servers[l].take().unwrap();
        let t0 = Instant::now();
        drop(killed);
        let next = leader(&http, &servers, viewer).await;
        ms.push(t0.elapsed().as_millis());
        assert_ne!(next, l);
        servers[l] = Some(start(dir, &format!("{backend}-{}", names[l]), &args));
    }
    Row {
        backend: backend.into(),
        ttl: ttl.into(),
        ms,
    }
}

fn main() {
    let runs: usize = std::env::var("SWITCHYARD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.store = "orders".into();
    let cluster: PgCluster = rt
        .block_on(PgCluster::start(spec))
        .expect("lab cluster starts");
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    std::fs::write(dir.join("topology.toml"), cluster.topology().to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["token", "create", "--role", "viewer", "--tokens-file"])
        .arg(dir.join("tokens"))
        .output()
        .unwrap();
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rows = rt.block_on(async {
        let etcd = switchyard_lab::etcd::EtcdCluster::start(1, None)
            .await
            .expect("etcd lab");
        let sim = switchyard_lab::consulsim::ConsulSim::start("127.0.0.1")
            .await
            .expect("Consul simulator");
        let etcd_backend = format!("etcd://{}", etcd.endpoints().join(","));
        let mut rows = vec![];
        for ttl in ["3", "10"] {
            rows.push(
                measure(
                    &dir,
                    "etcd",
                    ttl,
                    vec![
                        "--backend".into(),
                        etcd_backend.clone(),
                        "--lease-ttl".into(),
                        ttl.into(),
                    ],
                    runs,
                    &viewer,
                )
                .await,
            );
        }
        rows.push(
            measure(
                &dir,
                "consul",
                "10",
                vec!["--backend".into(), format!("consul://{}", sim.address())],
                runs,
                &viewer,
            )
            .await,
        );
        rows
    });
    println!("leader failover: kill -9 the leader -> another leads and /readyz is 200");
    println!(
        "{:<8} {:>8} {:>5} {:>9} {:>9} {:>9}",
        "backend", "ttl (s)", "runs", "min (ms)", "med (ms)", "max (ms)"
    );
    for r in rows {
        let mut v = r.ms.clone();
        v.sort_unstable();
        println!(
            "{:<8} {:>8} {:>5} {:>9} {:>9} {:>9}",
            r.backend,
            r.ttl,
            v.len(),
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}
