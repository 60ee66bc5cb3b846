//! An EventStoreDB cluster simulator: N nodes on loopback, each serving on
//! one cleartext port both HTTP/1.1 (`/gossip`, `/info`,
//! `POST /admin/node/priority/{n}`, `POST /admin/node/resign`) and gRPC over
//! h2c (`Gossip.Read`, `Streams.Append`, `Streams.BatchAppend`, `Streams.Read`,
//! `ServerFeatures.GetSupportedMethods`,
//! `Operations.SetNodePriority`, `Operations.ResignNode`), so the official
//! clients talk to it as to an insecure cluster. What is modelled and what
//! is not: docs/esdbsim.md.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::esdbsim::{EsdbSim, EsdbSimSpec};
//! let sim = EsdbSim::start(EsdbSimSpec::for_regions("ledger", &["east".into(), "west".into(), "south".into()])).await?;
//! let leader = sim.wait_for_leader(std::time::Duration::from_secs(10)).await;
//! println!("{leader:?} at {}", sim.endpoint("ledger-east").unwrap());
//! # Ok(()) }
//! ```
//!
//! On `SWITCHYARD_BACKING=compose`, [`EsdbSim::start`] attaches to
//! docker-compose.yml's real EventStoreDB nodes instead ([`compose`]).

mod batch_append;
pub mod compose;
mod proto;
mod server;
pub mod world;

use anyhow::{bail, Context};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use switchyard_topology::{Connection, Member, Settings, Store, StoreKind, Topology};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use world::{Node, NodeState, Timing, World};

/// The server version the simulator reports (`esVersion`).
pub const ES_VERSION: &str = "24.10.0-switchyard-sim";

/// One node to simulate.
#[derive(Debug, Clone)]
pub struct EsdbNodeSpec {
    /// Node name (topology member name).
    pub name: String,
    /// Region.
    pub region: String,
    /// Configured `NodePriority`.
    pub priority: i32,
    /// Read-only replica.
    pub read_only: bool,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct EsdbSimSpec {
    /// Store name in the topology.
    pub store_name: String,
    /// Nodes.
    pub nodes: Vec<EsdbNodeSpec>,
    /// Gossip timeout: a peer unheard of this long is dead.
    pub dead_after: Duration,
    /// Election delay after losing the leader.
    pub election_delay: Duration,
    /// How long a resigning leader waits for in-flight replication.
    pub resign_grace: Duration,
    /// Tick interval (gossip, replication).
    pub tick: Duration,
}

impl EsdbSimSpec {
    /// One node per region, `STORE-REGION`; the first region's node has
    /// `NodePriority` 2 (so the first leader is there), the others 1.
    pub fn for_regions(store: &str, regions: &[String]) -> Self {
        EsdbSimSpec {
            store_name: store.into(),
            nodes: regions
                .iter()
                .enumerate()
                .map(|(k, r)| EsdbNodeSpec {
                    name: format!("{store}-{r}"),
                    region: r.clone(),
                    priority: 1 + i32::from(k == 0),
                    read_only: false,
                })
                .collect(),
            dead_after: Duration::from_millis(600),
            election_delay: Duration::from_millis(200),
            resign_grace: Duration::from_millis(100),
            tick: Duration::from_millis(20),
        }
    }
}

/// World state with a change signal.
#[derive(Debug)]
pub struct Shared {
    world: Mutex<World>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// Lock the world.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the world and wake waiters.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_modify(|v| *v += 1);
        r
    }

    /// Wait until `f` returns `Some`, re-checking on every change.
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        f: impl Fn(&World) -> Option<R>,
    ) -> Option<R> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = f(&self.lock()) {
                return Some(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return f(&self.lock()),
            }
        }
    }
}

/// A running simulated cluster. Dropping it closes every port.
#[derive(Debug)]
pub struct EsdbSim {
    spec: EsdbSimSpec,
    /// `host:port` per node.
    hosts: Vec<String>,
    /// The simulated world; `None` when attached to compose.
    shared: Option<Arc<Shared>>,
    compose: Option<compose::Attached>,
    tasks: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<Vec<tokio::task::AbortHandle>>>>,
}

impl EsdbSim {
    /// Bind a port per node and start the cluster; the first leader is
    /// elected after the election delay (see [`EsdbSim::wait_for_leader`]).
    pub async fn start(spec: EsdbSimSpec) -> anyhow::Result<EsdbSim> {
        if spec.nodes.iter().filter(|n| !n.read_only).count() == 0 {
            bail!("a cluster needs at least one node that is not a read-only replica");
        }
        if let Some(project) = crate::backing::Backing::compose()? {
            let attached = compose::attach(project, &spec).await?;
            return Ok(EsdbSim {
                hosts: (0..spec.nodes.len())
                    .map(|i| attached.addr(i).to_string())
                    .collect(),
                spec,
                shared: None,
                compose: Some(attached),
                tasks: Vec::new(),
                conns: Arc::default(),
            });
        }
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for n in &spec.nodes {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.set_reuseaddr(true)?;
            sock.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let l = sock
                .listen(128)
                .with_context(|| format!("binding a port for node {}", n.name))?;
            ports.push(l.local_addr()?.port());
            listeners.push(l);
        }
        let now = Instant::now();
        let count = spec.nodes.len();
        let nodes = spec
            .nodes
            .iter()
            .zip(&ports)
            .map(|(n, &port)| {
                Node::new(
                    &n.name,
                    &n.region,
                    port,
                    n.priority,
                    n.read_only,
                    count,
                    now,
                )
            })
            .collect();
        let timing = Timing {
            dead_after: spec.dead_after,
            election_delay: spec.election_delay,
            resign_grace: spec.resign_grace,
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(nodes, timing)),
            changed: tokio::sync::watch::channel(0).0,
        });
        let conns: Arc<Mutex<Vec<Vec<tokio::task::AbortHandle>>>> =
            Arc::new(Mutex::new(vec![Vec::new(); count]));
        let mut tasks = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let conns = conns.clone();
            let port = ports[i];
            let tick = spec.tick;
            tasks.push(tokio::spawn(async move {
                let mut listener = Some(l);
                loop {
                    // A stopped or cut-off node refuses connections: its
                    // port is closed until it is back, then bound again.
                    if !shared.lock().client_reachable(i) {
                        listener = None;
                        tokio::time::sleep(tick).await;
                        continue;
                    }
                    let l = match &listener {
                        Some(l) => l,
                        None => match rebind(port) {
                            Ok(l) => listener.insert(l),
                            Err(_) => {
                                tokio::time::sleep(tick).await;
                                continue;
                            }
                        },
                    };
                    let accepted = tokio::select! {
                        a = l.accept() => a,
                        _ = tokio::time::sleep(tick) => continue,
                    };
                    let Ok((stream, _)) = accepted else {
                        continue;
                    };
                    if !shared.lock().client_reachable(i) {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let h = tokio::spawn(server::serve(shared.clone(), i, stream));
                    let mut c = conns.lock().unwrap_or_else(|p| p.into_inner());
                    c[i].retain(|a| !a.is_finished());
                    c[i].push(h.abort_handle());
                }
            }));
        }
        let ticker = shared.clone();
        let tick = spec.tick;
        tasks.push(tokio::spawn(async move {
            let mut iv = tokio::time::interval(tick);
            loop {
                iv.tick().await;
                ticker.mutate(|w| w.tick(Instant::now()));
            }
        }));
        Ok(EsdbSim {
            spec,
            hosts: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            shared: Some(shared),
            compose: None,
            tasks,
            conns,
        })
    }

    /// The spec it runs.
    pub fn spec(&self) -> &EsdbSimSpec {
        &self.spec
    }

    /// The shared world (for tests that look inside; the simulator's only:
    /// panics on compose, where [`EsdbSim::epoch`] and the other accessors
    /// ask the real nodes).
    pub fn shared(&self) -> &Arc<Shared> {
        self.shared
            .as_ref()
            .unwrap_or_else(|| panic!("{}", compose::Attached::refuse("the simulated world")))
    }

    /// A node's epoch number (EventStoreDB's election counter), as the
    /// simulator holds it or, on compose, as the node gossips it.
    pub fn epoch(&self, name: &str) -> anyhow::Result<i64> {
        let i = self.idx(name)?;
        match &self.compose {
            Some(c) => c.epoch(i),
            None => Ok(self.shared().lock().nodes[i].epoch().0),
        }
    }

    fn idx(&self, name: &str) -> anyhow::Result<usize> {
        self.spec
            .nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("no simulated node named {name}"))
    }

    /// `HOST:PORT` of a node (127.0.0.1 in the lab).
    pub fn endpoint(&self, name: &str) -> Option<String> {
        let i = self.idx(name).ok()?;
        Some(self.hosts[i].clone())
    }

    /// A `kurrentdb://` connection string with every node as a gossip seed.
    pub fn connection_string(&self) -> String {
        format!("kurrentdb://{}?tls=false", self.hosts.join(","))
    }

    fn drop_connections(&self, i: usize) {
        let mut c = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for a in c[i].drain(..) {
            a.abort();
        }
    }

    /// Stop a node's process (its log survives for [`EsdbSim::revive`]).
    pub fn kill(&self, name: &str) -> anyhow::Result<()> {
        let i = self.idx(name)?;
        if let Some(c) = &self.compose {
            return c.kill(i);
        }
        self.shared().mutate(|w| w.kill(i, Instant::now()));
        self.drop_connections(i);
        Ok(())
    }

    /// Start a stopped node again: new instance id, priority back to its
    /// configured `NodePriority`.
    pub fn revive(&self, name: &str) -> anyhow::Result<()> {
        let i = self.idx(name)?;
        if let Some(c) = &self.compose {
            return c.revive(i);
        }
        self.shared().mutate(|w| w.revive(i, Instant::now()));
        Ok(())
    }

    /// Cut a region off from the other regions and from clients.
    pub fn cut_region(&self, region: &str) -> anyhow::Result<()> {
        if !self.spec.nodes.iter().any(|n| n.region == region) {
            bail!("no region named {region}");
        }
        if let Some(c) = &self.compose {
            return c.region(region, true);
        }
        self.shared().mutate(|w| w.cut.insert(region.to_string()));
        for (i, n) in self.spec.nodes.iter().enumerate() {
            if n.region == region {
                self.drop_connections(i);
            }
        }
        Ok(())
    }

    /// Undo [`EsdbSim::cut_region`].
    pub fn heal_region(&self, region: &str) -> anyhow::Result<()> {
        if !self.spec.nodes.iter().any(|n| n.region == region) {
            bail!("no region named {region}");
        }
        if let Some(c) = &self.compose {
            return c.region(region, false);
        }
        self.shared().mutate(|w| w.cut.remove(region));
        Ok(())
    }

    /// Whether [`EsdbSim::set_lag`] works here (the simulator's only).
    pub fn can_set_lag(&self) -> bool {
        self.compose.is_none()
    }

    /// Replication delay of a node.
    pub fn set_lag(&self, name: &str, lag: Duration) -> anyhow::Result<()> {
        let i = self.idx(name)?;
        if self.compose.is_some() {
            return Err(compose::Attached::refuse("set_lag"));
        }
        self.shared().mutate(|w| w.nodes[i].lag = lag);
        Ok(())
    }

    /// The leader a client can reach, if exactly one.
    pub fn leader(&self) -> Option<String> {
        if let Some(c) = &self.compose {
            return match c.leaders().as_slice() {
                [l] => Some(self.spec.nodes[*l].name.clone()),
                _ => None,
            };
        }
        leader_name(&self.shared().lock())
    }

    /// Wait for a reachable leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<String> {
        if self.compose.is_some() {
            return self.wait_compose(timeout, None).await;
        }
        self.shared().wait_for(timeout, leader_name).await
    }

    /// On compose: poll the nodes' gossip until one leader (in `region`,
    /// when given) is the only one.
    async fn wait_compose(&self, timeout: Duration, region: Option<&str>) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                let in_region = self
                    .spec
                    .nodes
                    .iter()
                    .any(|n| n.name == l && region.is_none_or(|r| n.region == r));
                if in_region {
                    return Some(l);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Wait for a reachable leader in `region`.
    pub async fn wait_for_leader_in(&self, region: &str, timeout: Duration) -> Option<String> {
        if self.compose.is_some() {
            return self.wait_compose(timeout, Some(region)).await;
        }
        self.shared()
            .wait_for(timeout, |w| {
                leader_name(w)
                    .filter(|l| w.nodes.iter().any(|n| &n.name == l && n.region == region))
            })
            .await
    }

    /// Event ids of `stream` as held by node `name`, in order.
    pub fn stream_ids(&self, name: &str, stream: &str) -> anyhow::Result<Vec<uuid::Uuid>> {
        let i = self.idx(name)?;
        if let Some(c) = &self.compose {
            return c.stream_ids(i, stream);
        }
        Ok(self
            .shared()
            .lock()
            .events(i, stream)
            .into_iter()
            .map(|(_, e)| e.id)
            .collect())
    }

    /// Appends acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        if self.compose.is_some() {
            panic!("{}", compose::Attached::refuse("acknowledged"));
        }
        self.shared().lock().acknowledged
    }

    /// One line per node, for failure messages.
    pub fn describe(&self) -> String {
        if let Some(c) = &self.compose {
            return c.describe(&self.spec);
        }
        let w = self.shared().lock();
        w.nodes
            .iter()
            .map(|n| {
                format!(
                    "{} {} alive={} epoch={} writer={} commit={} prio={}/{} lag={:?} truncated={}\n",
                    n.name,
                    n.state.name(),
                    n.alive,
                    n.epoch().0,
                    n.writer(),
                    n.commit,
                    n.priority,
                    n.configured_priority,
                    n.lag,
                    n.truncated_events
                )
            })
            .collect()
    }

    /// Apply one control command as `switchyard-lab eventstoredb up` reads
    /// them from stdin: `cut REGION`, `heal REGION`, `kill NODE`,
    /// `revive NODE`, `restart NODE`, `lag NODE MILLIS`, `leader`, `describe`.
    pub fn control(&self, line: &str) -> anyhow::Result<String> {
        if self.compose.is_some() {
            return Err(compose::Attached::refuse(&format!(
                "the control command {line:?}"
            )));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["cut", r] => self.cut_region(r)?,
            ["heal", r] => self.heal_region(r)?,
            ["kill", n] => self.kill(n)?,
            ["revive", n] => self.revive(n)?,
            ["restart", n] => {
                self.kill(n)?;
                self.revive(n)?;
            }
            ["lag", n, ms] => {
                let ms: u64 = ms.parse().context("lag needs milliseconds")?;
                self.set_lag(n, Duration::from_millis(ms))?;
            }
            ["leader"] => return Ok(self.leader().unwrap_or_else(|| "none".into())),
            ["describe"] => return Ok(self.describe()),
            _ => bail!(
                "unknown command {line:?} (cut/heal REGION, kill/revive/restart NODE, lag NODE MS, leader, describe)"
            ),
        }
        Ok("ok".into())
    }

    /// The topology store describing this cluster.
    pub fn store(&self) -> Store {
        Store {
            tags: Vec::new(),
            name: self.spec.store_name.clone(),
            kind: StoreKind::Eventstoredb,
            depends_on: Vec::new(),
            max_lag_bytes: Some(1024 * 1024),
            max_lag_ms: None,
            connection: Connection {
                endpoint: Some(format!("http://{}", self.hosts[0])),
                connect_timeout_ms: Some(1000),
                ..Connection::default()
            },
            settings: Settings {
                election_timeout_ms: Some(self.spec.election_delay.as_millis() as u64),
                heartbeat_interval_ms: Some(self.spec.tick.as_millis() as u64),
                catch_up_secs: Some(10),
                ..Settings::default()
            },
            members: self
                .spec
                .nodes
                .iter()
                .zip(&self.hosts)
                .map(|(n, h)| Member {
                    name: n.name.clone(),
                    host: Some(h.clone()),
                    region: n.region.clone(),
                    priority: f64::from(n.priority),
                    votes: u32::from(!n.read_only),
                    arbiter: false,
                    hidden: false,
                    read_only_replica: n.read_only,
                    failover_priority: None,
                    sentinel: false,
                    hooks: Default::default(),
                })
                .collect(),
        }
    }

    /// A topology holding just this store; the first region primary.
    pub fn topology(&self, name: &str) -> Topology {
        let mut regions: Vec<String> = Vec::new();
        for n in &self.spec.nodes {
            if !regions.contains(&n.region) {
                regions.push(n.region.clone());
            }
        }
        Topology {
            capacity_margin_percent: None,
            name: name.into(),
            regions: crate::regions_first_primary(&regions),
            stores: vec![self.store()],
        }
    }

    /// Stop every task and close every port.
    pub fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if self.shared.is_some() {
            for i in 0..self.hosts.len() {
                self.drop_connections(i);
            }
        }
        // Attached: the services stay up for the next test, which resets them.
        self.compose = None;
    }
}

/// Bind `port` again after a node comes back.
fn rebind(port: u16) -> std::io::Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    sock.listen(128)
}

fn leader_name(w: &World) -> Option<String> {
    let ls: Vec<usize> = (0..w.nodes.len())
        .filter(|&i| w.client_reachable(i) && w.nodes[i].state == NodeState::Leader)
        .collect();
    match ls.as_slice() {
        [l] => Some(w.nodes[*l].name.clone()),
        _ => None,
    }
}

impl Drop for EsdbSim {
    fn drop(&mut self) {
        self.shutdown();
    }
}
