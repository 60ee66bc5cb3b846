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

/// The lab never trusts that a port it picked is still free when the server
/// binds it: given a port something else holds, the member moves to another
/// one, and the topology says where it really is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_replaced_and_the_topology_follows() {
    // Bound and listening, never answering: a bind by postgres fails.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let mut spec = PgClusterSpec::new(["a", "b"]);
    spec.ports = vec![taken];
    let cluster = PgCluster::start(spec).await.unwrap();
    let primary = &cluster.members()[0];
    assert_ne!(primary.port, taken, "the primary moved off the taken port");
    assert_eq!(
        cluster.store().members[0].port(),
        Some(primary.port),
        "the topology names the port the server really has"
    );
    // And the server there is ours: its data directory, over TCP.
    let (c, conn) = tokio_postgres::connect(&primary.conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let dir: String = c
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        std::fs::canonicalize(dir).unwrap(),
        std::fs::canonicalize(primary.data_dir()).unwrap()
    );
    cluster
        .wait_streaming(Duration::from_secs(60))
        .await
        .unwrap();
    drop(squatter);
}

/// A port answered by another lab's server is not taken for ours: that
/// other server's data directory gives it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_on_our_port_is_detected() {
    let mut other = PgClusterSpec::new(["x"]);
    other.store = "other".into();
    let other = PgCluster::start(other).await.unwrap();
    let theirs = other.members()[0].port;
    let mut spec = PgClusterSpec::new(["a"]);
    spec.ports = vec![theirs];
    let cluster = PgCluster::start(spec).await.unwrap();
    assert_ne!(cluster.members()[0].port, theirs);
    let (c, conn) =
        tokio_postgres::connect(&cluster.members()[0].conninfo(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let name: String = c.query_one("SHOW cluster_name", &[]).await.unwrap().get(0);
    assert_eq!(name, "pg-a-1");
    drop(other);
}
