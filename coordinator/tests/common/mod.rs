//! Helpers for end-to-end tests: run the real `switchyard` binary against a
//! lab cluster and look at the stores directly.

#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};
use switchyard_topology::Topology;

/// A finished `switchyard` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            // A failpoint abort has no exit code (killed by SIGABRT).
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// JSON objects printed one per line.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The operation names of a plan printed by `plan failover --output json`,
/// in plan order.
pub fn plan_ops(json: &str) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(json).expect("plan JSON");
    plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .flat_map(|s| s["steps"].as_array().expect("steps").iter())
        .map(|s| s["op"].as_str().expect("op").to_string())
        .collect()
}

/// A topology file plus a state dir in a temp dir.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub topology: PathBuf,
    pub state: PathBuf,
}

impl Workspace {
    pub fn new(topology: &Topology) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.toml");
        std::fs::write(&path, topology.to_toml()).unwrap();
        let state = dir.path().join("state");
        Workspace {
            dir,
            topology: path,
            state,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        c.args(["--topology", self.topology.to_str().unwrap()])
            .args(["--state-dir", self.state.to_str().unwrap()])
            .args(args)
            .env_remove("SWITCHYARD_CRASH_AT")
            .env_remove("SWITCHYARD_TOPOLOGY")
            .env_remove("SWITCHYARD_STATE_DIR")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    pub fn run_env(&self, args: &[&str], key: &str, value: &str) -> Run {
        Run::from(self.command(args).env(key, value).output().unwrap())
    }

    pub fn journal_files(&self) -> Vec<PathBuf> {
        let dir = self.state.join("executions");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return vec![];
        };
        let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        v.sort();
        v
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Start a three-region PostgreSQL cluster (primary in `east`).
pub async fn pg_cluster(store: &str) -> PgCluster {
    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.store = store.into();
    PgCluster::start(spec)
        .await
        .expect("lab PostgreSQL cluster starts")
}

/// [`pg_cluster`] whose members have hook `extra.controldata`: the
/// controller's deferred fence (stopped with `standby.signal`, restarted
/// after the promotion).
pub async fn pg_cluster_deferred(store: &str) -> PgCluster {
    let mut spec = PgClusterSpec::new(["east", "west", "south"]);
    spec.store = store.into();
    spec.deferred_fence = true;
    PgCluster::start(spec)
        .await
        .expect("lab PostgreSQL cluster starts")
}

/// The member that is primary right now, asked of every member directly
/// (`pg_is_in_recovery()`), and its timeline from its current WAL file name.
pub async fn pg_primary(cluster: &PgCluster) -> Option<(String, String, u32)> {
    let mut found = None;
    for m in cluster.members() {
        let Ok(c) = cluster.connect(&m.name).await else {
            continue;
        };
        let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await else {
            continue;
        };
        let recovering: bool = row.get(0);
        if !recovering {
            let row = c
                .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
                .await
                .unwrap();
            let wal: String = row.get(0);
            let tli = u32::from_str_radix(&wal[..8], 16).unwrap();
            assert!(found.is_none(), "two primaries: {found:?} and {}", m.name);
            found = Some((m.name.clone(), m.region.clone(), tli));
        }
    }
    found
}

/// Write a row on the current primary; returns its id.
pub async fn pg_write(cluster: &PgCluster, tag: &str) -> i64 {
    let (primary, _, _) = pg_primary(cluster).await.expect("a primary");
    let c = cluster.connect(&primary).await.unwrap();
    c.batch_execute("CREATE TABLE IF NOT EXISTS sy_ack (id bigserial PRIMARY KEY, tag text)")
        .await
        .unwrap();
    let row = c
        .query_one("INSERT INTO sy_ack (tag) VALUES ($1) RETURNING id", &[&tag])
        .await
        .unwrap();
    row.get(0)
}

/// Every tag on the current primary.
pub async fn pg_tags(cluster: &PgCluster) -> Vec<String> {
    let (primary, _, _) = pg_primary(cluster).await.expect("a primary");
    let c = cluster.connect(&primary).await.unwrap();
    c.query("SELECT tag FROM sy_ack ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Where the primary is now, and the other of east/west to fail over to.
pub async fn east_west(cluster: &PgCluster) -> (String, &'static str, u32) {
    let (_, from, tli) = pg_primary(cluster).await.expect("a primary before the run");
    let to = if from == "east" { "west" } else { "east" };
    (from, to, tli)
}

/// Run `switchyard` with `SWITCHYARD_CRASH_AT=point` and check the
/// failpoint aborted it.
pub fn crash(ws: &Workspace, args: &[&str], point: &str) {
    let r = ws.run_env(args, "SWITCHYARD_CRASH_AT", point);
    assert_eq!(
        r.code, -1,
        "{point}: expected the failpoint to abort; stderr:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("failpoint"), "{point}: {}", r.stderr);
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The steps of the plan `switchyard plan failover` makes (as `store op`,
/// in sequence order) and its number of stages.
pub fn plan_steps(ws: &Workspace, to: &str, extra: &[&str]) -> (Vec<String>, usize) {
    let mut args = vec!["plan", "failover", "--to", to, "--output", "json"];
    args.extend(extra);
    let r = ws.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let steps = stages
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .map(|s| {
            format!(
                "{} {}",
                s["store"].as_str().unwrap(),
                s["op"].as_str().unwrap()
            )
        })
        .collect();
    (steps, stages.len())
}

/// Members that answer `pg_is_in_recovery() = false` and take a plain write
/// (no explicit `READ WRITE`, so a fence marker refuses it), asked over the
/// test's own connections, with their regions.
pub async fn writable(cluster: &PgCluster) -> Vec<(String, String)> {
    let mut out = vec![];
    for m in cluster.members() {
        let Ok(c) = cluster.connect(&m.name).await else {
            continue;
        };
        let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await else {
            continue;
        };
        if row.get::<_, bool>(0) {
            continue;
        }
        let wrote = c
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS sy_probe (at timestamptz); \
                 INSERT INTO sy_probe VALUES (now())",
            )
            .await;
        if wrote.is_ok() {
            out.push((m.name.clone(), m.region.clone()));
        }
    }
    out
}

/// The `abort_report` event of `abort --output json`.
pub fn abort_report(r: &Run) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "abort_report")
        .unwrap_or_else(|| panic!("no abort report:\n{}\n{}", r.stdout, r.stderr))
}

/// One row of the matrix: what abort decided and issued, and the result.
pub fn matrix_row(point: &str, direction: &str, r: &Run, result: &str) -> String {
    let issued: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "op_started")
        .map(|e| {
            format!(
                "{} {}",
                e["store"].as_str().unwrap_or("?"),
                e["op"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let report = abort_report(r);
    let decisions: Vec<String> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s["store"].as_str().unwrap(),
                s["decision"].as_str().unwrap()
            )
        })
        .collect();
    format!(
        "| `{point}` | {direction} | {} | {} | exit {}: {result} |",
        decisions.join("; "),
        if report["abort_execution_id"].is_null() {
            "nothing to run".to_string()
        } else if issued.is_empty() {
            "checkpoint only".to_string()
        } else {
            issued.join(", ")
        },
        r.code
    )
}

/// A simulated MongoDB replica set: data members in east (preferred) and
/// west, an arbiter in south; waits for the primary in east.
pub async fn mongo_sim(store: &str) -> MongoSim {
    let spec = MongoSimSpec {
        set_name: format!("{store}-rs"),
        store_name: store.into(),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        members: vec![
            SimMemberSpec::data(&format!("{store}-east-1"), "east", 2.0),
            SimMemberSpec::data(&format!("{store}-west-1"), "west", 1.0),
            SimMemberSpec::arbiter(&format!("{store}-south-arb"), "south"),
        ],
    };
    let sim = MongoSim::start(spec).await.expect("simulator starts");
    let p = sim
        .wait_for_primary_in("east", Duration::from_secs(20))
        .await;
    assert!(
        p.is_some(),
        "simulated replica set elects a primary in east"
    );
    sim
}

/// PostgreSQL `orders` and MongoDB `catalog` in one topology.
pub fn merged(pg: &PgCluster, mongo: &MongoSim, mongo_depends_on_pg: bool) -> Topology {
    let mut t = pg.topology().clone();
    t.name = "combined-lab".into();
    let mut m = mongo.store();
    if mongo_depends_on_pg {
        m.depends_on = vec!["orders".into()];
    } else {
        t.stores[0].depends_on = vec!["catalog".into()];
    }
    t.stores.push(m);
    t
}

/// A plan whose readiness checkpoint (`orders` primary in `south`) cannot be
/// met: it holds the lock for `timeout_ms`, changes nothing, and fails.
pub fn hold_the_lock_plan(topology: &str, timeout_ms: u64) -> String {
    format!(
        r#"version = 1
name = "hold the lock"
topology = "{topology}"
target_region = "west"
mode = "planned"

[[stages]]
name = "readiness"
timeout_ms = {timeout_ms}

[[stages.steps]]
store = "orders"
op = "check_readiness"
target_region = "west"
mode = "planned"

[[stages.checkpoint]]
store = "orders"
expect = ["primary_in(south)"]
"#
    )
}

/// Bound on every wait of the HA tests: a loaded two-core CI machine is
/// slow, a hang is not.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Poll `f` every 200 ms until it answers `Some`, within [`WAIT`]; the
/// panic says what was waited for.
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Validate every line of `out` against `docs/schemas/<file>` with Python's
/// `jsonschema` (draft 2020-12), a validator nobody here wrote.
pub fn validate(out: &str, file: &str) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas/").to_string() + file;
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines.jsonl");
    std::fs::write(&lines, out).unwrap();
    let script = "import json,sys,jsonschema\n\
        s=json.load(open(sys.argv[1]))\n\
        v=jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker())\n\
        n=0\n\
        for l in open(sys.argv[2]):\n    v.validate(json.loads(l)); n+=1\n\
        print(n)";
    let o = std::process::Command::new("python3")
        .args(["-c", script, &schema])
        .arg(&lines)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "{file}: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    let n: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert_eq!(n, out.lines().count());
}

/// Whether `text` has `after` and each one is followed by a position in
/// PostgreSQL's notation, `X/Y on timeline N` (hexadecimal `X/Y`, as
/// `pg_current_wal_lsn()` prints it), not a raw offset.
pub fn lsn_on_timeline(text: &str, after: &str) -> bool {
    text.contains(after)
        && text.split(after).skip(1).all(|rest| {
            let mut w = rest.split_whitespace();
            let lsn = w.next().unwrap_or("");
            lsn.split_once('/').is_some_and(|(hi, lo)| {
                !hi.is_empty()
                    && !lo.is_empty()
                    && hi.chars().chain(lo.chars()).all(|c| c.is_ascii_hexdigit())
            }) && w.next() == Some("on")
                && w.next() == Some("timeline")
        })
}
