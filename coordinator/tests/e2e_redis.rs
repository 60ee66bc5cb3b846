//! End to end on real Redis with Sentinel (a master and two replicas over
//! three regions, one Sentinel per region) started by the lab: the real
//! `switchyard` binary crashes at every boundary of a planned switchover
//! and resumes; afterwards exactly one member says ROLE master, in the
//! target region, every Sentinel names it, the Sentinels failed over
//! exactly once, and no acknowledged write (WAIT 1 ≥ 1) is lost.

mod common;

use common::*;
use std::time::Duration;
use switchyard_lab::redis::{acked_set, command, RedisCluster, RedisClusterSpec};

fn step_count(ws: &Workspace, to: &str) -> (usize, usize) {
    let r = ws.run(&["plan", "failover", "--to", to, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let steps = stages
        .iter()
        .map(|s| s["steps"].as_array().map_or(0, |v| v.len()))
        .sum();
    (steps, stages.len())
}

/// (member, region) of the only member saying ROLE master.
fn master(c: &RedisCluster) -> (String, String, String) {
    let m: Vec<_> = c
        .data_members()
        .filter(|n| {
            command(&n.addr(), &["ROLE"], Duration::from_secs(2))
                .is_ok_and(|r| r.starts_with("master"))
        })
        .collect();
    assert_eq!(
        m.len(),
        1,
        "ROLE master on {:?}",
        m.iter().map(|n| &n.name).collect::<Vec<_>>()
    );
    (m[0].name.clone(), m[0].region.clone(), m[0].addr())
}

/// What every Sentinel names, and the highest config-epoch they report.
fn sentinels(c: &RedisCluster) -> (Vec<String>, u64) {
    let name = &c.store().name;
    let mut views = vec![];
    let mut epoch = 0;
    for s in c.nodes().iter().filter(|n| n.sentinel) {
        let t = Duration::from_secs(2);
        views.push(
            command(&s.addr(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name], t)
                .unwrap()
                .replace('\n', ":"),
        );
        let m = command(&s.addr(), &["SENTINEL", "MASTER", name], t).unwrap();
        let lines: Vec<&str> = m.lines().collect();
        let e = lines
            .chunks(2)
            .find(|kv| kv[0] == "config-epoch")
            .and_then(|kv| kv[1].parse::<u64>().ok())
            .unwrap();
        epoch = epoch.max(e);
    }
    (views, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_boundary_then_resume_fails_over_exactly_once() {
    let mut spec = RedisClusterSpec::new(["east", "west", "south"]);
    spec.store = "sessions".into();
    let cluster = RedisCluster::start(spec).await.expect("lab Redis starts");
    let ws = Workspace::new(cluster.topology());
    let (steps, stages) = step_count(&ws, "west");
    let mut points = vec![];
    for kind in ["before", "after", "outcome"] {
        for n in 1..=steps {
            points.push(format!("{kind}:{n}"));
        }
    }
    for n in 1..=stages {
        points.push(format!("checkpoint:{n}"));
    }
    let mut written = vec![];
    for (i, point) in points.iter().enumerate() {
        let (_, from, port) = master(&cluster);
        let to = if from == "east" { "west" } else { "east" };
        let (_, epoch0) = sentinels(&cluster);
        let key = format!("acked-{i}");
        assert!(
            acked_set(&port, &key, "1").unwrap(),
            "{point}: write not acknowledged"
        );
        written.push(key);

        let r = ws.run_env(
            &["failover", "--to", to, "--yes", "--output", "json"],
            "SWITCHYARD_CRASH_AT",
            point,
        );
        assert_eq!(
            r.code, -1,
            "{point}: expected the failpoint to abort; stderr:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("failpoint"), "{point}: {}", r.stderr);
        let r = ws.run(&["resume", "--output", "json"]);
        assert_eq!(
            r.code, 0,
            "{point}: resume failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );

        let (name, region, port) = master(&cluster);
        assert_eq!(region, to, "{point}: master {name} in the target region");
        let (views, epoch) = sentinels(&cluster);
        let want = port.clone();
        assert!(
            views.iter().all(|v| *v == want),
            "{point}: Sentinels name {views:?}, ROLE says {want}"
        );
        assert_eq!(epoch, epoch0 + 1, "{point}: exactly one Sentinel failover");
        for k in &written {
            let v = command(&port, &["GET", k], Duration::from_secs(2)).unwrap();
            assert_eq!(v, "1", "{point}: acknowledged {k} lost");
        }
        let journal = read(ws.journal_files().last().unwrap());
        let count = |t: &str| {
            let needle = format!("\"event\":\"{t}\"");
            journal.lines().filter(|l| l.contains(&needle)).count()
        };
        assert_eq!(count("outcome"), steps, "{point}: journal:\n{journal}");
        assert_eq!(count("finished"), 1, "{point}");
    }
}
