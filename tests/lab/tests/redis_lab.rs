//! The Redis lab: real redis-server and redis-sentinel processes on free
//! ports, verified to be the processes the lab started, stopped on drop;
//! and `switchyard-lab redis up`.

use std::io::BufRead;
use std::time::Duration;
use switchyard_lab::redis::{command, RedisCluster, RedisClusterSpec};

fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn info(addr: &str, key: &str) -> Option<String> {
    let s = command(addr, &["INFO", "server"], Duration::from_secs(2)).ok()?;
    s.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicates_is_watched_by_sentinels_and_stops_on_drop() {
    let cluster = RedisCluster::start(RedisClusterSpec::new(["a", "b"]))
        .await
        .unwrap();
    let store = cluster.store().clone();
    assert_eq!(store.members.iter().filter(|m| m.sentinel).count(), 2);
    let master = cluster.nodes()[0].clone();
    let replica = cluster.nodes()[1].clone();
    // The server on each port is the process the lab started.
    assert_eq!(info(&master.addr(), "run_id"), cluster.run_id(&master.name));
    command(&master.addr(), &["SET", "k", "v"], Duration::from_secs(2)).unwrap();
    // (WAIT counts per connection, and each `command` is its own: poll.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while command(&replica.addr(), &["GET", "k"], Duration::from_secs(2)).unwrap() != "v" {
        assert!(std::time::Instant::now() < deadline, "replica never got k");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = cluster.nodes().iter().find(|n| n.sentinel).unwrap();
    let addr = command(
        &s.addr(),
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &store.name],
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(addr, format!("127.0.0.1\n{}", master.port));

    // Kill and restart: a new process, the data back from its AOF.
    let old = cluster.run_id(&replica.name);
    cluster.kill(&replica.name).unwrap();
    assert!(command(&replica.addr(), &["PING"], Duration::from_millis(500)).is_err());
    cluster.restart(&replica.name).await.unwrap();
    assert_ne!(cluster.run_id(&replica.name), old);
    assert_eq!(
        info(&replica.addr(), "run_id"),
        cluster.run_id(&replica.name)
    );

    let pid: u32 = info(&master.addr(), "process_id").unwrap().parse().unwrap();
    let root = cluster.root().to_path_buf();
    drop(cluster);
    assert!(!alive(pid), "redis-server survived teardown");
    assert!(!root.exists(), "cluster directory survived teardown");
}

#[test]
fn binary_redis_up_runs_until_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-lab-redis-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(["redis", "up", "--dir"])
        .arg(dir.path())
        .args(["--regions", "x,y,z"])
        .stdin(std::process::Stdio::null())
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
    assert_eq!(topo.stores[0].kind, switchyard_topology::StoreKind::Redis);
    assert_eq!(topo.stores[0].members.len(), 6);
    let text = std::fs::read_to_string(dir.path().join("topology.toml")).unwrap();
    let report = switchyard_topology::check_text(
        "topology.toml",
        &text,
        &switchyard_topology::CheckOptions::default(),
    );
    assert!(
        report.diagnostics.is_empty(),
        "lab topology fails topocheck: {:?}",
        report.diagnostics
    );
    let port = ready["members"][0]["port"].as_u64().unwrap() as u16;
    let pid: u32 = info(&format!("127.0.0.1:{port}"), "process_id")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        info(&format!("127.0.0.1:{port}"), "run_id").as_deref(),
        ready["members"][0]["run_id"].as_str()
    );
    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!alive(pid), "redis-server survived the lab binary");
    assert!(!dir.path().join("cache").exists());
}
