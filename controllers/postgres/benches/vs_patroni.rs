//! Switchyard and Patroni side by side: the measuring half of
//! `scripts/bench-vs-patroni.sh`, which builds both clusters (same shape:
//! one PostgreSQL 15 member per region on loopback) and writes the spec this
//! binary reads from `$VS_PATRONI_SPEC` (JSON):
//!
//! ```json
//! {"rounds": 5,
//!  "tools": [{"name": "Switchyard",
//!             "members": [{"name": "pg-east-1", "region": "east", "port": 5432}],
//!             "command": {"west": ["switchyard", "failover", "--to", "west", "--yes"],
//!                         "east": ["..."]}}]}
//! ```
//!
//! A tool may give `"request"` instead of `"command"`: the switchover is
//! then an HTTP request to a running `switchyard serve` (the server path),
//! timed from the moment the request is sent, and "wall time" ends when
//! `GET /v1/executions/{id}` no longer says `running`:
//!
//! ```json
//! {"name": "Switchyard server", "members": [...],
//!  "request": {"addr": "127.0.0.1:8080", "token": "...",
//!              "west": "{\"to\":\"west\"}", "east": "{\"to\":\"east\"}"}}
//! ```
//!
//! The last tool is the reference the others' ratios are taken against.
//!
//! Each round switches every tool once (interleaved, so load affects all
//! alike), alternating between the first two regions. Per switchover, all
//! timed from the command's process start (or the request):
//! * command → the candidate accepts a write: a session on the candidate
//!   inserts every 2 ms until one commits;
//! * longest gap between acknowledged writes: the writer inserts every
//!   10 ms through a multi-host connection with
//!   `target_session_attrs=read-write`, reconnecting whenever an insert
//!   fails; the longest time between two consecutive acknowledgements
//!   around the switchover;
//! * command → the old primary streams from the new one
//!   (`pg_stat_wal_receiver`: `streaming`, sender port = the candidate's);
//! * the command's wall time;
//! * acknowledged writes lost: at the end, every acknowledged id is looked
//!   up on the final primary.
//!
//! Not a test and not run by CI (`harness = false`; it needs the clusters).

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config, NoTls};

#[derive(Deserialize)]
struct Spec {
    rounds: usize,
    tools: Vec<ToolSpec>,
}

#[derive(Deserialize, Clone)]
struct ToolSpec {
    name: String,
    members: Vec<MemberSpec>,
    /// Target region → argv of the switchover command.
    #[serde(default)]
    command: BTreeMap<String, Vec<String>>,
    /// Or: the switchover as `POST /v1/executions` to a running server.
    request: Option<RequestSpec>,
}

#[derive(Deserialize, Clone)]
struct RequestSpec {
    /// `host:port` of `switchyard serve` (plain HTTP).
    addr: String,
    /// Operator bearer token.
    token: String,
    /// Target region → request body.
    #[serde(flatten)]
    bodies: BTreeMap<String, String>,
}

impl ToolSpec {
    /// Regions this tool can switch to.
    fn targets(&self) -> Vec<String> {
        match &self.request {
            Some(r) => r.bodies.keys().cloned().collect(),
            None => self.command.keys().cloned().collect(),
        }
    }
}

/// One HTTP/1.1 exchange on a new connection: status and body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: bad status line in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

/// The body of a chunked response.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Start the switchover through the server; returns when the execution
/// has ended (`Ok(())` when it succeeded).
async fn through_server(r: &RequestSpec, to: &str) -> anyhow::Result<()> {
    let body = &r.bodies[to];
    let (status, answer) = http(&r.addr, "POST", "/v1/executions", &r.token, body).await?;
    anyhow::ensure!(
        status == 202,
        "POST /v1/executions {body}: {status} {answer}"
    );
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("POST /v1/executions: no id in {answer}"))?
        .to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, answer) = http(
            &r.addr,
            "GET",
            &format!("/v1/executions/{id}"),
            &r.token,
            "",
        )
        .await?;
        anyhow::ensure!(status == 200, "GET /v1/executions/{id}: {status} {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer)?;
        match v["status"].as_str() {
            Some("running") => {}
            Some("succeeded") => return Ok(()),
            other => anyhow::bail!("execution {id} ended {other:?}: {answer}"),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "execution {id} still runs after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Deserialize, Clone)]
struct MemberSpec {
    name: String,
    region: String,
    port: u16,
}

/// One switchover's measurements, in seconds.
#[derive(Debug, Clone, Copy)]
struct Round {
    writable: f64,
    gap: f64,
    streaming: f64,
    wall: f64,
}

const WAIT: Duration = Duration::from_secs(180);

fn config(ports: &[u16]) -> Config {
    let mut c = Config::new();
    for p in ports {
        c.host("127.0.0.1").port(*p);
    }
    c.user("postgres")
        .dbname("postgres")
        .application_name("vs-patroni-bench")
        .connect_timeout(Duration::from_secs(1));
    c
}

async fn connect(c: &Config) -> Option<Client> {
    let (client, conn) = tokio::time::timeout(Duration::from_secs(2), c.connect(NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// The kept session, connected again when it is gone.
async fn reconnect<'a>(cfg: &Config, client: &'a mut Option<Client>) -> Option<&'a Client> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = connect(cfg).await;
    }
    client.as_ref()
}

/// The writer: one insert every 10 ms to whichever member is writable.
struct Writer {
    acks: Arc<Mutex<Vec<(i64, Instant)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(tool: &ToolSpec) -> Writer {
        let mut cfg = config(&tool.members.iter().map(|m| m.port).collect::<Vec<_>>());
        cfg.target_session_attrs(TargetSessionAttrs::ReadWrite);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acks.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut client: Option<Client> = None;
            let mut id: i64 = 0;
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let Some(c) = reconnect(&cfg, &mut client).await else {
                    continue;
                };
                id += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                let ins = c.execute("INSERT INTO bench_writes (id) VALUES ($1)", &params);
                match tokio::time::timeout(Duration::from_secs(2), ins).await {
                    Ok(Ok(_)) => a
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, Instant::now())),
                    _ => client = None,
                }
            }
        });
        Writer { acks, stop, task }
    }

    fn acks(&self) -> Vec<(i64, Instant)> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn stop(self) -> Vec<(i64, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        let acks = self.acks.clone();
        let _ = self.task.await;
        let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
        acks.clone()
    }
}

/// The member out of recovery, when exactly one is.
async fn primary(tool: &ToolSpec) -> Option<MemberSpec> {
    let mut found = Vec::new();
    for m in &tool.members {
        if let Some(c) = connect(&config(&[m.port])).await {
            if let Ok(r) = c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                if !r.get::<_, bool>(0) {
                    found.push(m.clone());
                }
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// Wait until one primary has every other member streaming from it.
async fn healthy(tool: &ToolSpec) -> anyhow::Result<MemberSpec> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(p) = primary(tool).await {
            if let Some(c) = connect(&config(&[p.port])).await {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                        &[],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                if n as usize + 1 == tool.members.len() {
                    return Ok(p);
                }
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: no primary with every standby streaming within {WAIT:?}",
            tool.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds from `t0` until `m` commits an insert (polled every 2 ms).
async fn until_writable(m: MemberSpec, t0: Instant) -> f64 {
    let cfg = config(&[m.port]);
    let mut client: Option<Client> = None;
    loop {
        if let Some(c) = reconnect(&cfg, &mut client).await {
            match c
                .batch_execute("INSERT INTO bench_probe DEFAULT VALUES")
                .await
            {
                Ok(()) => return t0.elapsed().as_secs_f64(),
                Err(e) if e.as_db_error().is_none() => client = None,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Seconds from `t0` until `old` streams from `new` (polled every 5 ms).
async fn until_streaming(old: MemberSpec, new_port: u16, t0: Instant) -> f64 {
    let cfg = config(&[old.port]);
    let mut client: Option<Client> = None;
    loop {
        if let Some(c) = reconnect(&cfg, &mut client).await {
            match c
                .query_opt("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
                .await
            {
                Ok(Some(r)) => {
                    let status: Option<String> = r.get(0);
                    let port: Option<i32> = r.get(1);
                    if status.as_deref() == Some("streaming") && port == Some(i32::from(new_port)) {
                        return t0.elapsed().as_secs_f64();
                    }
                }
                Ok(None) => {}
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The longest time between consecutive acknowledgements, counting from the
/// last one before `t0` to the first at or after `end`.
fn longest_gap(acks: &[(i64, Instant)], t0: Instant, end: Instant) -> f64 {
    let before = acks.iter().rev().find(|(_, at)| *at < t0).map(|a| a.1);
    let mut last = before.unwrap_or(t0);
    let mut gap = Duration::ZERO;
    for (_, at) in acks.iter().filter(|(_, at)| *at >= t0) {
        gap = gap.max(at.duration_since(last));
        last = *at;
        if *at >= end {
            break;
        }
    }
    gap.as_secs_f64()
}

async fn switch_once(tool: &ToolSpec, writer: &Writer) -> anyhow::Result<Round> {
    let old = healthy(tool).await?;
    // The writer settles on the primary first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to = tool
        .targets()
        .into_iter()
        .find(|r| *r != old.region)
        .ok_or_else(|| anyhow::anyhow!("{}: no command to leave {}", tool.name, old.region))?;
    let new = tool
        .members
        .iter()
        .find(|m| m.region == to)
        .ok_or_else(|| anyhow::anyhow!("{}: no member in {to}", tool.name))?
        .clone();
    let t0 = Instant::now();
    let writable = tokio::spawn(until_writable(new.clone(), t0));
    let streaming = tokio::spawn(until_streaming(old.clone(), new.port, t0));
    if let Some(r) = &tool.request {
        through_server(r, &to)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", tool.name))?;
    } else {
        let argv = &tool.command[&to];
        let out = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "{}: {argv:?} failed ({}):\n{}{}",
            tool.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    let writable = tokio::time::timeout(WAIT, writable).await??;
    let streaming = tokio::time::timeout(WAIT, streaming).await??;
    let end = t0 + Duration::from_secs_f64(writable.max(wall));
    // Let the writer find the new primary before judging its gap.
    let deadline = Instant::now() + WAIT;
    while !writer.acks().iter().any(|(_, at)| *at > end) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: the writer never wrote again",
            tool.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gap = longest_gap(&writer.acks(), t0, end);
    let r = Round {
        writable,
        gap,
        streaming,
        wall,
    };
    eprintln!(
        "{:<18} {} → {}: writable {:.3} s, gap {:.3} s, old primary streaming {:.3} s, wall {:.3} s",
        tool.name, old.region, to, r.writable, r.gap, r.streaming, r.wall
    );
    Ok(r)
}

/// Acknowledged ids missing on the final primary.
async fn lost(tool: &ToolSpec, acks: &[(i64, Instant)]) -> anyhow::Result<usize> {
    let p = healthy(tool).await?;
    let c = connect(&config(&[p.port]))
        .await
        .ok_or_else(|| anyhow::anyhow!("{}: cannot reach {}", tool.name, p.name))?;
    let have: HashSet<i64> = c
        .query("SELECT id FROM bench_writes", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(acks.iter().filter(|(id, _)| !have.contains(id)).count())
}

/// A table row: label, (median, max) per tool, the goal for the ratio.
type Row = (&'static str, Vec<(f64, f64)>, Option<f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("VS_PATRONI_SPEC") else {
        eprintln!("vs_patroni: set VS_PATRONI_SPEC (scripts/bench-vs-patroni.sh does); skipping");
        return Ok(());
    };
    let spec: Spec = serde_json::from_slice(&std::fs::read(&path)?)?;
    let mut writers = Vec::new();
    for t in &spec.tools {
        let p = healthy(t).await?;
        let c = connect(&config(&[p.port]))
            .await
            .ok_or_else(|| anyhow::anyhow!("{}: cannot reach {}", t.name, p.name))?;
        c.batch_execute(
            "DROP TABLE IF EXISTS bench_writes, bench_probe;
             CREATE TABLE bench_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now());
             CREATE TABLE bench_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());",
        )
        .await?;
        writers.push(Writer::start(t));
    }
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); spec.tools.len()];
    for _ in 0..spec.rounds {
        for (i, t) in spec.tools.iter().enumerate() {
            rounds[i].push(switch_once(t, &writers[i]).await?);
        }
    }
    let mut lost_n = Vec::new();
    for (t, w) in spec.tools.iter().zip(writers) {
        let acks = w.stop().await;
        lost_n.push((lost(t, &acks).await?, acks.len()));
    }

    let col = |f: fn(&Round) -> f64| -> Vec<(f64, f64)> {
        rounds
            .iter()
            .map(|r| {
                let v: Vec<f64> = r.iter().map(f).collect();
                (median(v.clone()), max(&v))
            })
            .collect()
    };
    let rows: [Row; 4] = [
        (
            "command → candidate accepts a write",
            col(|r| r.writable),
            Some(0.06),
        ),
        (
            "longest gap between acknowledged writes",
            col(|r| r.gap),
            Some(0.08),
        ),
        (
            "command → old primary streams from the new one",
            col(|r| r.streaming),
            Some(0.10),
        ),
        ("command's wall time", col(|r| r.wall), None),
    ];
    let names: Vec<&str> = spec.tools.iter().map(|t| t.name.as_str()).collect();
    println!(
        "\n{} alternating switchovers per tool; median (max) in seconds\n",
        spec.rounds
    );
    // Every tool but the last (the reference) gets a ratio column.
    let reference = names.len().saturating_sub(1);
    let compared = &names[..reference];
    print!("| |");
    for n in &names {
        print!(" {n} |");
    }
    for n in compared {
        print!(" {n} ratio |");
    }
    println!("{}", if compared.is_empty() { "" } else { " goal |" });
    print!("|---|");
    for _ in names.iter().chain(compared) {
        print!("---|");
    }
    println!("{}", if compared.is_empty() { "" } else { "---|" });
    for (label, v, goal) in &rows {
        print!("| {label} |");
        for (m, x) in v {
            print!(" {m:.3} ({x:.3}) |");
        }
        if compared.is_empty() {
            println!();
            continue;
        }
        let mut verdicts = Vec::new();
        for (m, _) in &v[..reference] {
            let r = m / v[reference].0;
            print!(" {r:.3} |");
            if let Some(g) = goal {
                verdicts.push(if r <= *g { "met" } else { "not met" });
            }
        }
        match goal {
            Some(g) => println!(" ≤ {g:.2}: {} |", verdicts.join(" / ")),
            None => println!(" |"),
        }
    }
    print!("| acknowledged writes lost |");
    for (l, n) in &lost_n {
        print!(" {l} of {n} |");
    }
    for _ in compared {
        print!(" |");
    }
    println!("{}", if compared.is_empty() { "" } else { " 0 |" });
    anyhow::ensure!(
        lost_n.iter().all(|(l, _)| *l == 0),
        "acknowledged writes were lost"
    );
    Ok(())
}
