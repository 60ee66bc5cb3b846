//! `switchyard serve`: what the API and the background observer cost.
//!
//! 1. API latency to start an execution: `POST /v1/executions` with
//!    `{"to": …}` → `202`, against a real `switchyard serve` over the lab's
//!    real PostgreSQL cluster, alternating east and west (each answer waits
//!    for the execution to end before the next request). The 202 comes
//!    after the lock, a fresh observation of every store, the plan and the
//!    journaled start (fsync), so this is the time an orchestrator waits.
//! 2. Observer cost for 1,000 simulated MongoDB members: 200 replica sets of
//!    five members (the lab's MongoDB wire-protocol simulator, real sockets,
//!    the real driver) observed by a real `switchyard serve` every 100 ms;
//!    the server's own CPU time per round (from /proc) and the time a round
//!    takes.
//!
//! ```text
//! cargo bench -p switchyard --bench server
//! SWITCHYARD_BENCH_STARTS=20 SWITCHYARD_BENCH_SETS=200 cargo bench -p switchyard --bench server
//! ```

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A `switchyard serve` child, killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(tokens: &Path, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["token", "create", "--role", role, "--tokens-file"])
        .arg(tokens)
        .output()
        .expect("token create runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn serve(dir: &Path, topology: &Path, tokens: &Path, interval_ms: u64) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--topology")
        .arg(topology)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(tokens)
        .args(["--observe-interval-ms", &interval_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("serve.stderr")).expect("stderr file"))
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("serve's first line");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "serve's first line {line:?}: {e}; stderr: {}",
            std::fs::read_to_string(dir.join("serve.stderr")).unwrap_or_default()
        )
    });
    Serve {
        child,
        url: v["url"].as_str().expect("url").to_string(),
    }
}

/// utime + stime of `pid`, in ms (from /proc; clock ticks are 100 Hz on Linux).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks * 10.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let starts = env_or("SWITCHYARD_BENCH_STARTS", 10);
    if starts > 0 {
        start_latency(&rt, &http, starts);
    }
    let sets = env_or("SWITCHYARD_BENCH_SETS", 200);
    if sets > 0 {
        observer_cost(&rt, &http, sets);
    }
}

fn start_latency(rt: &tokio::runtime::Runtime, http: &reqwest::Client, starts: usize) {
    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.store = "orders".into();
    let cluster: PgCluster = rt
        .block_on(PgCluster::start(spec))
        .expect("lab cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let topo = dir.path().join("pg.toml");
    cluster.write_topology(&topo).expect("topology written");
    let tokens = dir.path().join("tokens");
    let op = token(&tokens, "operator");
    let s = serve(dir.path(), &topo, &tokens, 5000);
    let mut lat = vec![];
    rt.block_on(async {
        for i in 0..starts {
            let to = if i % 2 == 0 { "west" } else { "east" };
            let t = Instant::now();
            let r = http
                .post(format!("{}/v1/executions", s.url))
                .bearer_auth(&op)
                .json(&json!({"to": to}))
                .send()
                .await
                .expect("POST answers");
            let took = t.elapsed();
            assert_eq!(r.status(), 202, "{:?}", r.text().await);
            let id = r.json::<Value>().await.expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string();
            lat.push(took.as_secs_f64() * 1000.0);
            // Wait for it to end before the next start (one at a time).
            loop {
                let v: Value = http
                    .get(format!("{}/v1/executions/{id}", s.url))
                    .bearer_auth(&op)
                    .send()
                    .await
                    .expect("GET answers")
                    .json()
                    .await
                    .expect("json");
                match v["status"].as_str() {
                    Some("running") => tokio::time::sleep(Duration::from_millis(100)).await,
                    Some("succeeded") => break,
                    other => panic!("{id} ended {other:?}: {v}"),
                }
            }
        }
    });
    lat.sort_by(f64::total_cmp);
    println!("\n== API latency to start an execution: POST /v1/executions {{\"to\"}} → 202");
    println!("   (lab PostgreSQL, 3 regions; {starts} starts alternating west/east)\n");
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}",
        "starts", "min ms", "median ms", "p90 ms", "max ms"
    );
    println!(
        "{:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        starts,
        lat[0],
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        lat[lat.len() - 1]
    );
}

fn observer_cost(rt: &tokio::runtime::Runtime, http: &reqwest::Client, sets: usize) {
    let _enter = rt.enter();
    let sims: Vec<MongoSim> = rt.block_on(async {
        let mut v = vec![];
        for i in 0..sets {
            let spec = MongoSimSpec {
                set_name: format!("rs{i}"),
                store_name: format!("catalog{i}"),
                // Slow heartbeats: the simulators' own work is not what is measured.
                heartbeat_interval: Duration::from_secs(2),
                election_timeout: Duration::from_secs(10),
                members: vec![
                    SimMemberSpec::data("east-1", "east", 2.0),
                    SimMemberSpec::data("east-2", "east", 2.0),
                    SimMemberSpec::data("west-1", "west", 1.0),
                    SimMemberSpec::data("west-2", "west", 1.0),
                    SimMemberSpec::arbiter("witness-1", "witness"),
                ],
            };
            v.push(MongoSim::start(spec).await.expect("simulator starts"));
        }
        for s in &v {
            s.wait_for_primary_in("east", Duration::from_secs(60))
                .await
                .expect("a simulated primary in east");
        }
        v
    });
    let members: usize = sims.iter().map(|s| s.spec().members.len()).sum();
    let mut topology = sims[0].topology("observer-bench");
    topology.stores.clear();
    for s in &sims {
        let mut store = s.store();
        // The topology default (the lab's 1 s is for tests on idle sockets).
        store.connection.connect_timeout_ms = Some(5000);
        topology.stores.push(store);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let topo = dir.path().join("mongo.toml");
    std::fs::write(&topo, topology.to_toml()).expect("topology written");
    let tokens = dir.path().join("tokens");
    let viewer = token(&tokens, "viewer");
    let interval_ms = 100u64;
    let s = serve(dir.path(), &topo, &tokens, interval_ms);
    let pid = s.child.id();
    let poll = |url: String, viewer: String| async move {
        http.get(format!("{url}/v1/state"))
            .bearer_auth(&viewer)
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let (rounds, window, cpu, observed, errors) = rt.block_on(async {
        // The first round (controllers built, connections opened) is not the
        // steady state: wait for it, and for a second one.
        let t0 = Instant::now();
        let mut first = None;
        let mut seen = vec![];
        while seen.len() < 2 {
            assert!(t0.elapsed() < Duration::from_secs(300), "no rounds");
            if let Some(v) = poll(s.url.clone(), viewer.clone()).await {
                if let Some(at) = v["observed_at_ms"].as_u64() {
                    if !v["persisted"].as_bool().unwrap_or(true) && !seen.contains(&at) {
                        first.get_or_insert(t0.elapsed());
                        seen.push(at);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("first round after {:?}", first.unwrap_or_default());
        // Steady state: count rounds over a window, and the CPU they took.
        let (cpu0, sims0, t) = (cpu_ms(pid), cpu_ms(std::process::id()), Instant::now());
        let mut last = *seen.last().unwrap_or(&0);
        let mut stamps = vec![last];
        let mut observed = 0;
        let mut errors = 0;
        while stamps.len() < 4 && t.elapsed() < Duration::from_secs(180) {
            if let Some(v) = poll(s.url.clone(), viewer.clone()).await {
                let at = v["observed_at_ms"].as_u64().unwrap_or(0);
                if at > last {
                    last = at;
                    stamps.push(at);
                    let stores = v["stores"].as_array().cloned().unwrap_or_default();
                    observed = stores.iter().filter(|s| s["error"].is_null()).count();
                    errors = stores.len() - observed;
                    if let Some(e) = stores.iter().find(|s| !s["error"].is_null()) {
                        eprintln!("e.g. {}: {}", e["store"], e["error"]);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu = cpu_ms(pid) - cpu0;
        eprintln!(
            "the simulators (this process) used {:.0} ms of CPU meanwhile",
            cpu_ms(std::process::id()) - sims0
        );
        let window = (stamps[stamps.len() - 1] - stamps[0]) as f64;
        ((stamps.len() - 1) as f64, window, cpu, observed, errors)
    });
    let round_ms = window / rounds - interval_ms as f64;
    println!(
        "\n== Observer cost: {members} simulated MongoDB members ({sets} replica sets of 5), \
         observed every {interval_ms} ms\n"
    );
    println!(
        "{:>8} {:>8} {:>14} {:>16} {:>12} {:>10}",
        "members", "rounds", "round wall ms", "server CPU/round", "CPU % core", "RSS MiB"
    );
    println!(
        "{:>8} {:>8} {:>14.1} {:>13.1} ms {:>11.1}% {:>10.1}",
        members,
        rounds,
        round_ms,
        cpu / rounds,
        100.0 * cpu / window,
        rss_mib(pid)
    );
    println!("stores observed in the last round: {observed} ({errors} could not be)");
    drop(s);
    drop(sims);
}
