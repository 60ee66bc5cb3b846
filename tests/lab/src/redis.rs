//! Real Redis replication on loopback: a master, replicas and (optionally)
//! Sentinels per region, each its own `redis-server` / `redis-sentinel`
//! process on a free port with its own directory and config file.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::redis::{RedisCluster, RedisClusterSpec};
//! let cluster = RedisCluster::start(RedisClusterSpec::new(["east", "west", "south"])).await?;
//! let topology = cluster.topology().clone();  // matching switchyard topology
//! cluster.kill("cache-east-1")?;              // SIGKILL the server
//! cluster.restart("cache-east-1").await?;     // start it again from its config file
//! drop(cluster);                              // every process stopped, dirs removed
//! # let _ = topology; Ok(()) }
//! ```
//!
//! Every server is verified to be the process the lab started (`INFO
//! server` `process_id` and `run_id`), so a Debian `redis-server` service
//! on 6379, or anything else on a port, is never mistaken for a member.
//! Sentinel timings are shortened for tests (`down-after-milliseconds`
//! 5000, long enough that a stall of a loaded test machine is not taken
//! for a dead master, and `SENTINEL DEBUG info-period 100`: Sentinel reads its
//! replicas' INFO, and so their `replica-priority`, every 100 ms instead of
//! 10 s); the controller itself assumes nothing about them. The hello
//! period stays at its 2 s default: a Sentinel that has not heard of a
//! failover turns the promoted replica back after four hello periods, so
//! shortening it races the propagation of the new configuration. A
//! Sentinel whose timer ran late by 2 s (a stalled `fsync` of its config on
//! a loaded test machine) enters TILT and acts on nothing for 30 s; the lab
//! shortens that to 1 s (`tilt-period`), a production Sentinel does not.

use crate::postgres::{free_port, tail};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_topology::{Connection, Member, Settings, Store, StoreKind, Topology};

/// What to start.
#[derive(Debug, Clone)]
pub struct RedisClusterSpec {
    /// Store name; members are `<store>-<region>-<n>`, Sentinels
    /// `<store>-sentinel-<region>`.
    pub store: String,
    /// Region names; the master starts in the first.
    pub regions: Vec<String>,
    /// Data members per region.
    pub members_per_region: usize,
    /// Regions that get one more replica each: two promotion candidates
    /// in a region, for `--candidate`.
    pub extra_replicas: Vec<String>,
    /// One Sentinel per region when true.
    pub sentinels: bool,
    /// The store's `max_lag_bytes`.
    pub max_lag_bytes: Option<u64>,
    /// Base directory; a fresh temporary directory when `None`.
    pub base_dir: Option<PathBuf>,
    /// Sentinel `down-after-milliseconds`.
    pub down_after_ms: u64,
}

impl RedisClusterSpec {
    /// One member and one Sentinel per region, store `cache`, 1 MiB lag bound.
    pub fn new<I, S>(regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisClusterSpec {
            store: "cache".into(),
            regions: regions.into_iter().map(Into::into).collect(),
            members_per_region: 1,
            extra_replicas: Vec::new(),
            sentinels: true,
            max_lag_bytes: Some(1 << 20),
            base_dir: None,
            down_after_ms: 5000,
        }
    }
}

/// One process of the lab.
#[derive(Debug, Clone)]
pub struct RedisNode {
    /// Member name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Where it listens: 127.0.0.1 in the lab; on the compose backing the
    /// service's address (see [`crate::backing::Service::addr`]).
    pub host: String,
    /// TCP port on [`RedisNode::host`].
    pub port: u16,
    /// Its directory (config file, log, data).
    pub dir: PathBuf,
    /// A Sentinel rather than a data member.
    pub sentinel: bool,
}

impl RedisNode {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    /// Its config file (Sentinel and `CONFIG REWRITE` rewrite it).
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }
    /// Its log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("log")
    }
}

/// A running lab cluster. Dropping it stops every process and removes its files.
#[derive(Debug)]
pub struct RedisCluster {
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    nodes: Vec<RedisNode>,
    topology: Topology,
    children: Mutex<HashMap<String, Child>>,
    run_ids: Mutex<HashMap<String, String>>,
    /// Attached to docker-compose services instead of started (see
    /// [`crate::backing`]): node name → service, and the lock held while
    /// this test uses them.
    compose: Option<(
        crate::backing::Compose,
        HashMap<String, String>,
        std::fs::File,
    )>,
}

/// Send one command over a plain socket (RESP), so the lab needs no
/// client library of its own. Returns the reply as text (array elements
/// one per line, nil as empty); an error reply is an `Err`.
pub fn command(addr: &str, args: &[&str], timeout: Duration) -> Result<String> {
    let mut replies = commands(addr, &[args], timeout)?;
    replies.remove(0)
}

/// Send several commands on one connection, in order (so `WAIT` counts
/// the writes before it); one reply per command.
pub fn commands(addr: &str, cmds: &[&[&str]], timeout: Duration) -> Result<Vec<Result<String>>> {
    use std::io::{BufRead, BufReader, Write};
    use std::net::ToSocketAddrs;
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = String::new();
    for args in cmds {
        req.push_str(&format!("*{}\r\n", args.len()));
        for a in *args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
    }
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    /// Ok(Err(..)) is an error reply; Err(..) a broken exchange.
    fn read_one(r: &mut impl BufRead, out: &mut String) -> Result<Result<(), String>> {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        let line = line.trim_end_matches("\r\n");
        let (t, rest) = line.split_at(1.min(line.len()));
        match t {
            "+" | ":" => out.push_str(rest),
            "-" => return Ok(Err(rest.to_string())),
            "$" => {
                let n: i64 = rest.parse()?;
                if n >= 0 {
                    let mut buf = vec![0; n as usize + 2];
                    r.read_exact(&mut buf)?;
                    out.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                for i in 0..n.max(0) {
                    if i > 0 {
                        out.push('\n');
                    }
                    if let Err(e) = read_one(r, out)? {
                        return Ok(Err(e));
                    }
                }
            }
            other => bail!("unexpected RESP type {other:?}"),
        }
        Ok(Ok(()))
    }
    let mut replies = vec![];
    for _ in cmds {
        let mut out = String::new();
        replies.push(
            read_one(&mut r, &mut out)?
                .map(|()| out)
                .map_err(|e| anyhow!(e)),
        );
    }
    Ok(replies)
}

/// `SET key value` then `WAIT 1 timeout` on one connection: whether a
/// replica acknowledged the write.
pub fn acked_set(addr: &str, key: &str, value: &str) -> Result<bool> {
    let r = commands(
        addr,
        &[&["SET", key, value], &["WAIT", "1", "5000"]],
        Duration::from_secs(10),
    )?;
    let mut r = r.into_iter();
    r.next().ok_or_else(|| anyhow!("no reply to SET"))??;
    let n: i64 = r
        .next()
        .ok_or_else(|| anyhow!("no reply to WAIT"))??
        .parse()?;
    Ok(n >= 1)
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(str::to_string)
}

impl RedisCluster {
    /// Start every server and Sentinel, wait until the replicas stream and
    /// every Sentinel knows every replica and every other Sentinel. A port
    /// taken by someone else between choosing it and binding it (another
    /// test's cluster) is detected, and the start is retried on new ports.
    pub async fn start(spec: RedisClusterSpec) -> Result<RedisCluster> {
        if let Some(project) = crate::backing::Backing::compose()? {
            return Self::attach(project, spec).await;
        }
        let mut attempt = 0;
        loop {
            match Self::start_once(spec.clone()).await {
                Err(e) if attempt < 3 && is_port_clash(&e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, "port clash, starting the Redis lab again on new ports");
                }
                other => return other,
            }
        }
    }

    async fn start_once(spec: RedisClusterSpec) -> Result<RedisCluster> {
        if spec.regions.is_empty() || spec.members_per_region == 0 {
            bail!("a lab cluster needs at least one region and one member per region");
        }
        for bin in ["redis-server", "redis-sentinel"] {
            if Command::new(bin).arg("--version").output().is_err() {
                bail!(
                    "{bin} not found (install the Debian packages redis-server and redis-sentinel)"
                );
            }
        }
        let (tmp, base) = match &spec.base_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("switchyard-redis-")
                    .tempdir_in("/tmp")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let root = std::fs::canonicalize(&base)?.join(&spec.store);
        if root.exists() {
            bail!(
                "{} already exists; refusing to reuse a cluster directory",
                root.display()
            );
        }
        let mut nodes = vec![];
        for region in &spec.regions {
            let extra = spec.extra_replicas.iter().filter(|r| *r == region).count();
            for n in 1..=spec.members_per_region + extra {
                nodes.push(RedisNode {
                    name: format!("{}-{region}-{n}", spec.store),
                    region: region.clone(),
                    host: "127.0.0.1".into(),
                    port: free_port()?,
                    dir: root.join(format!("{}-{region}-{n}", spec.store)),
                    sentinel: false,
                });
            }
        }
        if spec.sentinels {
            for region in &spec.regions {
                nodes.push(RedisNode {
                    name: format!("{}-sentinel-{region}", spec.store),
                    region: region.clone(),
                    host: "127.0.0.1".into(),
                    port: free_port()?,
                    dir: root.join(format!("{}-sentinel-{region}", spec.store)),
                    sentinel: true,
                });
            }
        }
        let master_port = nodes[0].port;
        let sentinels = nodes.iter().filter(|n| n.sentinel).count();
        let quorum = sentinels / 2 + 1;
        for (i, n) in nodes.iter().enumerate() {
            std::fs::create_dir_all(&n.dir)?;
            let conf = if n.sentinel {
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\nprotected-mode no\n\
                     sentinel resolve-hostnames no\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                     sentinel down-after-milliseconds {name} {down}\n\
                     sentinel failover-timeout {name} 10000\n\
                     sentinel parallel-syncs {name} 5\n",
                    port = n.port,
                    dir = n.dir.display(),
                    log = n.log_file().display(),
                    name = spec.store,
                    down = spec.down_after_ms,
                )
            } else {
                let mut c = format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\nprotected-mode no\n\
                     save \"\"\nappendonly yes\nappendfsync everysec\n\
                     repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n\
                     repl-backlog-size 64mb\n",
                    port = n.port,
                    dir = n.dir.display(),
                    log = n.log_file().display(),
                );
                if i > 0 {
                    c.push_str(&format!("replicaof 127.0.0.1 {master_port}\n"));
                }
                c
            };
            std::fs::write(n.config_file(), conf)?;
        }
        let topology = build_topology(&spec, &nodes, quorum as u32);
        let cluster = RedisCluster {
            root,
            _tmp: tmp,
            nodes,
            topology,
            children: Mutex::new(HashMap::new()),
            run_ids: Mutex::new(HashMap::new()),
            compose: None,
        };
        for n in cluster.nodes.iter().filter(|n| !n.sentinel) {
            cluster.spawn(n).await?;
        }
        cluster.wait_replicating(Duration::from_secs(60)).await?;
        for n in cluster.nodes.iter().filter(|n| n.sentinel) {
            cluster.spawn(n).await?;
            sentinel_debug(n)?;
        }
        cluster.wait_sentinels(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// The compose backing: reset docker-compose.yml's `cache-*` services (a
    /// master in east, a replica in west and south, a Sentinel per region)
    /// from empty volumes and return the same handle, its members named as
    /// the lab names them (which are the service names), its topology built
    /// as the lab's from the services' addresses. Sentinel gets the lab's
    /// timings at run time (`SENTINEL DEBUG`, `failover-timeout`); without
    /// Sentinel, compose's Sentinels are stopped. What the compose file
    /// cannot provide fails with [`crate::backing::Unsupported`].
    async fn attach(
        project: &crate::backing::Compose,
        spec: RedisClusterSpec,
    ) -> Result<RedisCluster> {
        use crate::backing::{ServiceKind, Unsupported};
        let unsupported = |what: String| -> Result<RedisCluster> { Err(Unsupported(what).into()) };
        if spec.regions != ["east", "west", "south"]
            || spec.members_per_region != 1
            || !spec.extra_replicas.is_empty()
        {
            return unsupported(format!(
                "Redis with {} member(s) per region in {:?}; docker-compose.yml has one in each of east, west, south",
                spec.members_per_region, spec.regions
            ));
        }
        if spec.base_dir.is_some() {
            return unsupported("a Redis cluster in a chosen directory".into());
        }
        let services = project.services().await?;
        let lock = project.lock("redis")?;
        let mut nodes = Vec::new();
        let mut names = HashMap::new();
        let kinds: &[(ServiceKind, bool)] = if spec.sentinels {
            &[(ServiceKind::Redis, false), (ServiceKind::Sentinel, true)]
        } else {
            &[(ServiceKind::Redis, false)]
        };
        for &(kind, sentinel) in kinds {
            for region in &spec.regions {
                let found = services.in_region(kind, region);
                let [svc] = found.as_slice() else {
                    return unsupported(format!(
                        "{} {kind:?} services in {region}, expected one",
                        found.len()
                    ));
                };
                let name = if sentinel {
                    format!("{}-sentinel-{region}", spec.store)
                } else {
                    format!("{}-{region}-1", spec.store)
                };
                names.insert(name.clone(), svc.name.clone());
                nodes.push(RedisNode {
                    name,
                    region: region.clone(),
                    host: svc.host().to_string(),
                    port: svc.port(),
                    dir: PathBuf::from("/data"),
                    sentinel,
                });
            }
        }
        let all: Vec<&str> = names.values().map(String::as_str).collect();
        if !spec.sentinels {
            // Without Sentinel: compose's Sentinels are stopped, or they
            // would fail over behind the test's back.
            let mut stop = vec!["stop"];
            let sentinels = services.of(ServiceKind::Sentinel);
            stop.extend(sentinels.iter().map(|s| s.name.as_str()));
            project.run(&stop, Duration::from_secs(120)).await?;
        }
        project.reset(&all).await?;
        let topology = build_topology(&spec, &nodes, 2);
        let cluster = RedisCluster {
            root: project.dir(),
            _tmp: None,
            nodes,
            topology,
            children: Mutex::new(HashMap::new()),
            run_ids: Mutex::new(HashMap::new()),
            compose: Some((project.clone(), names, lock)),
        };
        cluster.wait_replicating(Duration::from_secs(120)).await?;
        // compose/redis/entry.sh (sentinel) monitors `cache`; a test's store of
        // another name is monitored under that name instead (Sentinel's
        // own runtime commands), with the lab's timings.
        // Sentinel is told the master's home address (what it announces).
        let master_home = services.in_region(ServiceKind::Redis, "east")[0]
            .home
            .clone();
        let down = spec.down_after_ms.to_string();
        for n in cluster.nodes.iter().filter(|n| n.sentinel) {
            sentinel_debug(n)?;
            let mut cmds: Vec<Vec<&str>> = Vec::new();
            if spec.store != "cache" {
                cmds.push(vec!["SENTINEL", "REMOVE", "cache"]);
                cmds.push(vec![
                    "SENTINEL",
                    "MONITOR",
                    &spec.store,
                    &master_home,
                    "6379",
                    "2",
                ]);
            }
            cmds.push(vec![
                "SENTINEL",
                "SET",
                &spec.store,
                "down-after-milliseconds",
                &down,
            ]);
            cmds.push(vec![
                "SENTINEL",
                "SET",
                &spec.store,
                "failover-timeout",
                "10000",
            ]);
            cmds.push(vec!["SENTINEL", "SET", &spec.store, "parallel-syncs", "5"]);
            for c in &cmds {
                command(&n.addr(), c, Duration::from_secs(5))
                    .with_context(|| format!("{} on {}", c.join(" "), n.name))?;
            }
        }
        cluster.wait_sentinels(Duration::from_secs(120)).await?;
        Ok(cluster)
    }

    /// The compose service of a node, when attached.
    fn service(&self, name: &str) -> Option<(&crate::backing::Compose, &str)> {
        let (project, names, _) = self.compose.as_ref()?;
        names.get(name).map(|s| (project, s.as_str()))
    }

    /// Start a node's process from its config file; verify that the server
    /// answering its port is that process.
    async fn spawn(&self, n: &RedisNode) -> Result<()> {
        let bin = if n.sentinel {
            "redis-sentinel"
        } else {
            "redis-server"
        };
        let child = Command::new(bin)
            .arg(n.config_file())
            .current_dir(&n.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin} for {}", n.name))?;
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n.name.clone(), child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = self
                .children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&n.name)
                .map(|c| c.try_wait().ok().flatten());
            if let Some(Some(status)) = exited {
                self.children
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&n.name);
                bail!(
                    "{bin} for {} exited ({status}); log:\n{}",
                    n.name,
                    tail(&n.log_file())
                );
            }
            if let Ok(info) = command(&n.addr(), &["INFO", "server"], Duration::from_secs(2)) {
                let seen = info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok());
                if seen != Some(pid) {
                    bail!(
                        "port {} of {} is answered by process {seen:?}, not the {bin} the lab started ({pid})",
                        n.port,
                        n.name
                    );
                }
                let run_id = info_field(&info, "run_id").unwrap_or_default();
                self.run_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(n.name.clone(), run_id);
                if n.sentinel {
                    return Ok(());
                }
                // A restarted member replays its AOF before serving.
                if let Ok(p) = command(&n.addr(), &["INFO", "persistence"], Duration::from_secs(2))
                {
                    if info_field(&p, "loading").as_deref() == Some("0") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within 30s; log:\n{}",
                    n.name,
                    tail(&n.log_file())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_replicating(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let data: Vec<&RedisNode> = self.nodes.iter().filter(|n| !n.sentinel).collect();
        loop {
            let info = command(
                &data[0].addr(),
                &["INFO", "replication"],
                Duration::from_secs(2),
            )?;
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online + 1 >= data.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("replicas not online within {timeout:?}:\n{info}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_sentinels(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let sentinels: Vec<&RedisNode> = self.nodes.iter().filter(|n| n.sentinel).collect();
        let replicas = self.nodes.iter().filter(|n| !n.sentinel).count() - 1;
        loop {
            let mut ok = true;
            let mut last = String::new();
            for s in &sentinels {
                let m = command(
                    &s.addr(),
                    &["SENTINEL", "MASTER", &self.store().name],
                    Duration::from_secs(2),
                )?;
                let kv: HashMap<&str, &str> = m
                    .lines()
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0], c[1]))
                    .collect();
                let slaves: usize = kv
                    .get("num-slaves")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let others: usize = kv
                    .get("num-other-sentinels")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if slaves < replicas || others + 1 < sentinels.len() {
                    ok = false;
                    last = format!(
                        "{} knows {slaves} replicas and {others} other sentinels",
                        s.name
                    );
                }
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("Sentinels not converged within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The matching topology (one store, kind redis).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The store of the topology.
    pub fn store(&self) -> &Store {
        &self.topology.stores[0]
    }

    /// Every node: data members first (master first, as started), then Sentinels.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// Data members.
    pub fn data_members(&self) -> impl Iterator<Item = &RedisNode> {
        self.nodes.iter().filter(|n| !n.sentinel)
    }

    /// Look a node up by name.
    pub fn node(&self, name: &str) -> Result<&RedisNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("no lab node {name}"))
    }

    /// The `run_id` of the process the lab last started for `name`.
    pub fn run_id(&self, name: &str) -> Option<String> {
        self.run_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Send a command to a node (after checking it is still the process
    /// the lab started).
    pub fn cmd(&self, name: &str, args: &[&str]) -> Result<String> {
        let n = self.node(name)?;
        command(&n.addr(), args, Duration::from_secs(5))
    }

    /// The directory holding the cluster.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write the topology to `path` as TOML.
    pub fn write_topology(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.topology.to_toml())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// SIGKILL a node's process and reap it.
    pub fn kill(&self, name: &str) -> Result<()> {
        if let Some((project, service)) = self.service(name) {
            return project.kill(service);
        }
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let mut child = children
            .remove(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Whether the lab's process for `name` is running.
    pub fn is_running(&self, name: &str) -> bool {
        if let Some((project, service)) = self.service(name) {
            return project.is_running(service);
        }
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Start a killed node again from its config file, as it was configured
    /// when it died (a host reboot).
    pub async fn restart(&self, name: &str) -> Result<()> {
        if self.is_running(name) {
            bail!("{name} is running");
        }
        let n = self.node(name)?.clone();
        if let Some((project, service)) = self.service(name) {
            project.start(service)?;
            return self.wait_serving(&n, Duration::from_secs(60)).await;
        }
        self.spawn(&n).await
    }

    /// Wait until an attached node answers (a data member: its AOF replayed).
    async fn wait_serving(&self, n: &RedisNode, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let probe = if n.sentinel { "server" } else { "persistence" };
            match command(&n.addr(), &["INFO", probe], Duration::from_secs(2)) {
                Ok(info) if n.sentinel || info_field(&info, "loading").as_deref() == Some("0") => {
                    return Ok(())
                }
                other if Instant::now() > deadline => {
                    bail!(
                        "{} ({}) does not serve within {timeout:?}: {other:?}",
                        n.name,
                        n.addr()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Stop everything now (also done by `Drop`).
    pub fn teardown(&mut self) {
        if self.compose.take().is_some() {
            // The services stay up for the next test (which resets them);
            // the lock is released. `root` is the repository: never removed.
            return;
        }
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (_, mut c) in children.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(children);
        if std::env::var_os("SWITCHYARD_LAB_KEEP").is_some() {
            if let Some(t) = self._tmp.take() {
                eprintln!("switchyard-lab: kept {}", t.keep().display());
            }
        } else if self._tmp.is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The lab's Sentinel timings (see the module comment), set at run time.
fn sentinel_debug(n: &RedisNode) -> Result<()> {
    command(
        &n.addr(),
        &[
            "SENTINEL",
            "DEBUG",
            "info-period",
            "100",
            "tilt-period",
            "1000",
        ],
        Duration::from_secs(5),
    )
    .with_context(|| format!("SENTINEL DEBUG on {}", n.name))
    .map(drop)
}

fn is_port_clash(e: &anyhow::Error) -> bool {
    let s = format!("{e:#}");
    s.contains("is answered by process") || s.contains("Address already in use")
}

fn build_topology(spec: &RedisClusterSpec, nodes: &[RedisNode], quorum: u32) -> Topology {
    let regions = crate::regions_first_primary(&spec.regions);
    let members = nodes
        .iter()
        .map(|n| Member {
            name: n.name.clone(),
            host: Some(n.addr()),
            region: n.region.clone(),
            // The first region's members are preferred, as the master
            // starts there (topocheck: primary-priority-elsewhere).
            priority: if n.sentinel {
                0.0
            } else if n.region == spec.regions[0] {
                2.0
            } else {
                1.0
            },
            votes: 1,
            arbiter: false,
            hidden: false,
            read_only_replica: false,
            failover_priority: None,
            sentinel: n.sentinel,
            hooks: Default::default(),
        })
        .collect();
    let sentinels = spec.sentinels;
    Topology {
        capacity_margin_percent: None,
        name: format!("{}-lab", spec.store),
        regions,
        stores: vec![Store {
            tags: Vec::new(),
            name: spec.store.clone(),
            kind: StoreKind::Redis,
            depends_on: vec![],
            max_lag_bytes: spec.max_lag_bytes,
            max_lag_ms: None,
            connection: Connection {
                connect_timeout_ms: Some(2000),
                ..Connection::default()
            },
            settings: Settings {
                sentinel_master: sentinels.then(|| spec.store.clone()),
                sentinel_quorum: sentinels.then_some(quorum),
                ..Settings::default()
            },
            members,
        }],
    }
}
