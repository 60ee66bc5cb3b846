//! The lab itself: a real cluster starts, streams, writes a topology that
//! parses, survives kill/start/stop of members, and leaves no process
//! behind; the binary runs a cluster until SIGTERM.

use std::io::BufRead;
use std::time::Duration;
use switchyard_lab::postgres::{PgCluster, PgClusterSpec};

fn postmaster_alive(pid: u32) -> bool {
    // A zombie has no cmdline; a running postmaster does.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_streams_and_tears_down() {
    let cluster = PgCluster::start(PgClusterSpec::new(["a", "b"]))
        .await
        .unwrap();
    let names: Vec<String> = cluster.members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(names, ["pg-a-1", "pg-b-1"]);

    // The topology file parses with the real parser and matches the cluster.
    let path = cluster.root().join("topology.toml");
    cluster.write_topology(&path).unwrap();
    let topo = switchyard_topology::parse_file(&path).unwrap();
    let store = topo.store("pg").unwrap();
    assert_eq!(store.members.len(), 2);
    assert_eq!(store.members[1].port(), Some(cluster.members()[1].port));
    assert!(store.members[0].hooks.stop.is_some());

    // Replication works: a row written on the primary shows up on the standby.
    let p = cluster.connect("pg-a-1").await.unwrap();
    p.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    let s = cluster.connect("pg-b-1").await.unwrap();
    let mut seen = false;
    for _ in 0..500 {
        if let Ok(r) = s.query("SELECT x FROM t", &[]).await {
            if r.len() == 1 {
                seen = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "standby never replayed the row");

    // kill -9, start again, stop.
    let pid = cluster.pid("pg-b-1").unwrap().unwrap();
    cluster.kill("pg-b-1").unwrap();
    assert!(!postmaster_alive(pid));
    cluster.start_member("pg-b-1").await.unwrap();
    cluster
        .wait_streaming(Duration::from_secs(30))
        .await
        .unwrap();
    cluster.stop("pg-b-1").await.unwrap();
    assert!(cluster.pid("pg-b-1").unwrap().is_none());
    cluster.stop("pg-b-1").await.unwrap(); // idempotent

    let primary_pid = cluster.pid("pg-a-1").unwrap().unwrap();
    let root = cluster.root().to_path_buf();
    drop(cluster);
    assert!(!postmaster_alive(primary_pid), "primary survived teardown");
    assert!(!root.exists(), "cluster directory survived teardown");
}

#[test]
fn binary_runs_until_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-lab-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(["postgres", "up", "--dir"])
        .arg(dir.path())
        .args(["--regions", "x,y"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true, "{line}");
    let topo = switchyard_topology::parse_file(&dir.path().join("topology.toml")).unwrap();
    assert_eq!(topo.stores[0].members.len(), 2);
    let pidfile = dir.path().join("pg/pg-x-1/data/postmaster.pid");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(postmaster_alive(pid));

    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!postmaster_alive(pid), "postmaster survived the lab binary");
    assert!(!dir.path().join("pg").exists());
    assert!(dir.path().join("topology.toml").exists());
}
