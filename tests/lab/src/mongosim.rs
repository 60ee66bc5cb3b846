//! A MongoDB replica-set simulator that speaks the wire protocol on real
//! loopback ports, for tests that cannot run `mongod`.
//!
//! Each member listens on its own `127.0.0.1` port and answers `hello`,
//! `replSetGetStatus`, `replSetReconfig`, `replSetStepDown`, `insert`,
//! `find` … as documented for MongoDB 7.0 (see docs/mongosim.md for what
//! is and is not modelled). All members share one in-process [`world`]
//! behind a lock; a ticker runs heartbeats, elections and replication.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};
//! let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0")).await?;
//! let uri = sim.uri(); // mongodb://127.0.0.1:…/?replicaSet=rs0
//! sim.cut_region("east");
//! # Ok(()) }
//! ```
//!
//! On `SWITCHYARD_BACKING=compose`, [`MongoSim::start`] lays the spec onto
//! docker-compose.yml's real `mongod` servers instead ([`compose`]): the same
//! handle, the same tests, answered by the real set.

pub mod commands;
pub mod compose;
pub mod server;
pub mod wire;
pub mod world;

use anyhow::{bail, Context};
use bson::oid::ObjectId;
use server::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_topology::{
    Connection, Member, Region, RegionRole, Settings, Store, StoreKind, Topology,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use world::{MemberConfig, NodeState, ReplConfig, World};

/// One member to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMemberSpec {
    /// Member name (as in the topology).
    pub name: String,
    /// Region it lives in.
    pub region: String,
    /// Election priority.
    pub priority: f64,
    /// Votes (0 or 1).
    pub votes: u32,
    /// Arbiter.
    pub arbiter: bool,
    /// Hidden.
    pub hidden: bool,
    /// Port to listen on (0 = any free port).
    pub port: u16,
}

impl SimMemberSpec {
    /// A data-bearing, voting member.
    pub fn data(name: &str, region: &str, priority: f64) -> Self {
        SimMemberSpec {
            name: name.into(),
            region: region.into(),
            priority,
            votes: 1,
            arbiter: false,
            hidden: false,
            port: 0,
        }
    }

    /// An arbiter.
    pub fn arbiter(name: &str, region: &str) -> Self {
        SimMemberSpec {
            arbiter: true,
            priority: 0.0,
            ..SimMemberSpec::data(name, region, 0.0)
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoSimSpec {
    /// Replica set name.
    pub set_name: String,
    /// Store name used by [`MongoSim::store`].
    pub store_name: String,
    /// `settings.heartbeatIntervalMillis`.
    pub heartbeat_interval: Duration,
    /// `settings.electionTimeoutMillis`.
    pub election_timeout: Duration,
    /// Members in config order.
    pub members: Vec<SimMemberSpec>,
}

impl MongoSimSpec {
    /// The acceptance layout: two data-bearing members in `east` (preferred,
    /// priority 2) and two in `west` (priority 1), an arbiter in `witness`;
    /// fast test timing (heartbeat 50 ms, election timeout 300 ms).
    pub fn two_regions_and_arbiter(set_name: &str) -> Self {
        MongoSimSpec {
            set_name: set_name.into(),
            store_name: "orders".into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            members: vec![
                SimMemberSpec::data("east-1", "east", 2.0),
                SimMemberSpec::data("east-2", "east", 2.0),
                SimMemberSpec::data("west-1", "west", 1.0),
                SimMemberSpec::data("west-2", "west", 1.0),
                SimMemberSpec::arbiter("witness-1", "witness"),
            ],
        }
    }

    /// A spec from a topology store: members, priorities, votes, election
    /// timing and (when `host` has one) the port to listen on.
    pub fn from_store(store: &Store) -> anyhow::Result<Self> {
        if store.kind != StoreKind::Mongodb {
            bail!("store {} is {}, not mongodb", store.name, store.kind);
        }
        Ok(MongoSimSpec {
            set_name: store
                .connection
                .replica_set
                .clone()
                .unwrap_or_else(|| store.name.clone()),
            store_name: store.name.clone(),
            heartbeat_interval: Duration::from_millis(
                store.settings.heartbeat_interval_ms.unwrap_or(2000),
            ),
            election_timeout: Duration::from_millis(
                store.settings.election_timeout_ms.unwrap_or(10_000),
            ),
            members: store
                .members
                .iter()
                .map(|m| SimMemberSpec {
                    name: m.name.clone(),
                    region: m.region.clone(),
                    priority: if m.arbiter { 0.0 } else { m.priority },
                    votes: m.votes,
                    arbiter: m.arbiter,
                    hidden: m.hidden,
                    port: m.port().unwrap_or(0),
                })
                .collect(),
        })
    }
}

impl MongoSimSpec {
    /// The layout `switchyard-lab mongodb up --regions ...` runs: with three
    /// or more regions the last one is a witness holding one arbiter and the
    /// others hold `per_region` data-bearing members each (the first region
    /// preferred with priority 2); with fewer, every region holds data and
    /// there is no arbiter.
    pub fn for_regions(
        set_name: &str,
        store_name: &str,
        regions: &[String],
        per_region: usize,
    ) -> anyhow::Result<Self> {
        if regions.is_empty() || per_region == 0 {
            bail!("need at least one region and one member per region");
        }
        let witness = (regions.len() >= 3).then(|| regions[regions.len() - 1].clone());
        let mut members = Vec::new();
        for (i, r) in regions.iter().enumerate() {
            if Some(r) == witness.as_ref() {
                members.push(SimMemberSpec::arbiter(&format!("{r}-arbiter"), r));
                continue;
            }
            for k in 1..=per_region {
                let prio = if i == 0 { 2.0 } else { 1.0 };
                members.push(SimMemberSpec::data(&format!("{r}-{k}"), r, prio));
            }
        }
        Ok(MongoSimSpec {
            set_name: set_name.into(),
            store_name: store_name.into(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            members,
        })
    }
}

/// A running simulated replica set. Dropping it closes every port.
#[derive(Debug)]
pub struct MongoSim {
    spec: MongoSimSpec,
    hosts: Vec<String>,
    /// The simulated world; `None` when attached to compose.
    shared: Option<Arc<Shared>>,
    tasks: Vec<JoinHandle<()>>,
    compose: Option<compose::Attached>,
}

impl MongoSim {
    /// Bind a port per member and start the set. No primary exists until
    /// the first election (one election timeout); see [`MongoSim::wait_for_primary`].
    pub async fn start(spec: MongoSimSpec) -> anyhow::Result<MongoSim> {
        if spec.members.is_empty() {
            bail!("a replica set needs members");
        }
        if let Some(project) = crate::backing::Backing::compose()? {
            let mut spec = spec;
            let (attached, hosts) = compose::attach(project, &mut spec).await?;
            return Ok(MongoSim {
                spec,
                hosts,
                shared: None,
                tasks: Vec::new(),
                compose: Some(attached),
            });
        }
        let mut listeners = Vec::new();
        let mut hosts = Vec::new();
        for m in &spec.members {
            let l = TcpListener::bind(("127.0.0.1", m.port))
                .await
                .with_context(|| format!("binding a port for member {}", m.name))?;
            hosts.push(format!("127.0.0.1:{}", l.local_addr()?.port()));
            listeners.push(l);
        }
        let config = ReplConfig {
            set_name: spec.set_name.clone(),
            version: 1,
            term: 0,
            members: spec
                .members
                .iter()
                .zip(&hosts)
                .enumerate()
                .map(|(i, (m, h))| MemberConfig {
                    id: i as i32,
                    host: h.clone(),
                    priority: m.priority,
                    votes: m.votes as i32,
                    arbiter_only: m.arbiter,
                    hidden: m.hidden,
                    tags: bson::Document::new(),
                })
                .collect(),
            heartbeat_ms: spec.heartbeat_interval.as_millis() as u64,
            election_timeout_ms: spec.election_timeout.as_millis() as u64,
            replica_set_id: ObjectId::new(),
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid replica set spec: {}", e.msg))?;
        let world = World::new(
            spec.members
                .iter()
                .zip(&hosts)
                .map(|(m, h)| (m.name.clone(), m.region.clone(), h.clone()))
                .collect(),
            config,
        );
        let shared = Shared::new(world);
        let mut tasks = vec![tokio::spawn(server::ticker(shared.clone()))];
        for (i, l) in listeners.into_iter().enumerate() {
            tasks.push(tokio::spawn(server::serve_member(shared.clone(), i, l)));
        }
        Ok(MongoSim {
            spec,
            hosts,
            shared: Some(shared),
            tasks,
            compose: None,
        })
    }

    /// The spec it runs.
    pub fn spec(&self) -> &MongoSimSpec {
        &self.spec
    }

    /// `host:port` of a member.
    pub fn host(&self, name: &str) -> Option<&str> {
        let i = self.spec.members.iter().position(|m| m.name == name)?;
        Some(&self.hosts[i])
    }

    /// A replica-set connection string (seed list of every member).
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?replicaSet={}",
            self.hosts.join(","),
            self.spec.set_name
        )
    }

    /// The topology store describing this simulator (hosts filled in).
    pub fn store(&self) -> Store {
        Store {
            tags: Vec::new(),
            name: self.spec.store_name.clone(),
            kind: StoreKind::Mongodb,
            depends_on: Vec::new(),
            max_lag_bytes: None,
            max_lag_ms: Some(10_000),
            connection: Connection {
                replica_set: Some(self.spec.set_name.clone()),
                connect_timeout_ms: Some(1000),
                ..Connection::default()
            },
            settings: Settings {
                election_timeout_ms: Some(self.spec.election_timeout.as_millis() as u64),
                heartbeat_interval_ms: Some(self.spec.heartbeat_interval.as_millis() as u64),
                catch_up_secs: Some(10),
                ..Settings::default()
            },
            members: self
                .spec
                .members
                .iter()
                .zip(&self.hosts)
                .map(|(m, h)| Member {
                    name: m.name.clone(),
                    host: Some(h.clone()),
                    region: m.region.clone(),
                    priority: m.priority,
                    votes: m.votes,
                    arbiter: m.arbiter,
                    hidden: m.hidden,
                    read_only_replica: false,
                    failover_priority: None,
                    sentinel: false,
                    hooks: Default::default(),
                })
                .collect(),
        }
    }

    /// A whole topology holding just this store; regions in member order,
    /// the first primary, a region with only arbiters a witness.
    pub fn topology(&self, name: &str) -> Topology {
        let mut regions: Vec<Region> = Vec::new();
        for m in &self.spec.members {
            if regions.iter().any(|r| r.name == m.region) {
                continue;
            }
            let data = self
                .spec
                .members
                .iter()
                .any(|o| o.region == m.region && !o.arbiter);
            let role = match (regions.is_empty(), data) {
                (_, false) => RegionRole::Witness,
                (true, true) => RegionRole::Primary,
                (false, true) => RegionRole::Secondary,
            };
            regions.push(Region {
                capacity: None,
                load: None,
                name: m.region.clone(),
                role,
            });
        }
        Topology {
            capacity_margin_percent: None,
            name: name.into(),
            regions,
            stores: vec![self.store()],
        }
    }

    /// The simulated world (every method answers from the compose set
    /// first when attached, so this is reached on the lab only).
    fn sim(&self) -> &Shared {
        self.shared
            .as_deref()
            .expect("a compose-attached replica set has no simulated world")
    }

    fn idx(&self, name: &str) -> usize {
        self.spec
            .members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no simulated member named {name}"))
    }

    /// Stop a member's process: connections reset, it neither votes nor
    /// replicates. Its data survives for [`MongoSim::revive`].
    pub fn kill(&self, name: &str) {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.kill(i);
        }
        self.sim().mutate(|w| w.kill(i, Instant::now()));
    }

    /// Restart a killed member (it comes back as a secondary).
    pub fn revive(&self, name: &str) {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.revive(i);
        }
        self.sim().mutate(|w| w.revive(i, Instant::now()));
    }

    /// Cut a region off: no traffic in or out (members inside still see
    /// each other); client connections to its members are reset.
    pub fn cut_region(&self, region: &str) {
        if let Some(c) = &self.compose {
            return c.region(region, true);
        }
        self.sim().mutate(|w| {
            w.cut.insert(region.to_string());
            for i in 0..w.nodes.len() {
                if w.nodes[i].region == region {
                    w.drop_connections(i);
                }
            }
        });
    }

    /// Undo [`MongoSim::cut_region`].
    pub fn heal_region(&self, region: &str) {
        if let Some(c) = &self.compose {
            return c.region(region, false);
        }
        self.sim().mutate(|w| {
            w.cut.remove(region);
        });
    }

    /// Whether [`MongoSim::set_lag`] can set `lag` here: any delay on the
    /// simulator; on compose only zero and a stall of an hour or more.
    pub fn can_set_lag(&self, lag: Duration) -> bool {
        self.compose.is_none() || lag.is_zero() || lag >= Duration::from_secs(3600)
    }

    /// Delay with which `name` applies its sync source's oplog entries.
    pub fn set_lag(&self, name: &str, lag: Duration) {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.set_lag(i, lag);
        }
        self.sim().mutate(|w| w.nodes[i].lag = lag);
    }

    /// Name of the primary with the highest term among running members.
    pub fn primary(&self) -> Option<String> {
        if let Some(c) = &self.compose {
            let p = c.primaries().into_iter().max_by_key(|(_, t)| *t)?;
            return Some(self.spec.members[p.0].name.clone());
        }
        let w = self.sim().lock();
        w.nodes
            .iter()
            .filter(|n| n.alive && n.state == NodeState::Primary)
            .max_by_key(|n| n.term)
            .map(|n| n.name.clone())
    }

    /// Wait until some member is primary; `None` after `timeout`.
    pub async fn wait_for_primary(&self, timeout: Duration) -> Option<String> {
        if self.compose.is_some() {
            return self.wait_compose(timeout, None).await;
        }
        self.sim()
            .wait_for(timeout, |w| {
                w.nodes
                    .iter()
                    .filter(|n| n.alive && n.state == NodeState::Primary)
                    .max_by_key(|n| n.term)
                    .map(|n| n.name.clone())
            })
            .await
    }

    /// Wait until a member of `region` is primary (and the only primary
    /// clients can reach).
    pub async fn wait_for_primary_in(&self, region: &str, timeout: Duration) -> Option<String> {
        if self.compose.is_some() {
            return self.wait_compose(timeout, Some(region)).await;
        }
        self.sim()
            .wait_for(timeout, |w| {
                let ps: Vec<usize> = (0..w.nodes.len())
                    .filter(|&i| w.client_reachable(i) && w.nodes[i].state == NodeState::Primary)
                    .collect();
                match ps.as_slice() {
                    [p] if w.nodes[*p].region == region => Some(w.nodes[*p].name.clone()),
                    _ => None,
                }
            })
            .await
    }

    /// Inserts rolled back on any member so far (w:1 writes that never
    /// reached a majority before their primary lost its role).
    pub fn rolled_back_inserts(&self) -> u64 {
        if self.compose.is_some() {
            compose::Attached::refuse("rolled_back_inserts");
        }
        self.sim().lock().rolled_back_inserts
    }

    /// On compose: poll the members until one primary (in `region`, when
    /// given) is the only one.
    async fn wait_compose(&self, timeout: Duration, region: Option<&str>) -> Option<String> {
        let c = self.compose.as_ref()?;
        let deadline = Instant::now() + timeout;
        loop {
            let ps = c.primaries();
            if let [(i, _)] = ps.as_slice() {
                let m = &self.spec.members[*i];
                if region.is_none_or(|r| m.region == r) {
                    return Some(m.name.clone());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(compose::Attached::POLL).await;
        }
    }

    /// Current term of a member.
    pub fn term(&self, name: &str) -> i64 {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.term(i);
        }
        self.sim().lock().nodes[i].term
    }

    /// Installed config version of a member.
    pub fn config_version(&self, name: &str) -> i64 {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.config_version(i);
        }
        self.sim().lock().nodes[i].config.version
    }

    /// Number of documents `name` holds in `db.coll`.
    pub fn count_docs(&self, name: &str, ns: &str) -> usize {
        let i = self.idx(name);
        if let Some(c) = &self.compose {
            return c.count_docs(i, ns);
        }
        self.sim().lock().nodes[i]
            .data
            .get(ns)
            .map_or(0, |c| c.docs.len())
    }

    /// One line per member (state, term, oplog, commit point, config
    /// version, sync source), for test failure messages.
    pub fn describe(&self) -> String {
        if let Some(c) = &self.compose {
            let names: Vec<String> = self.spec.members.iter().map(|m| m.name.clone()).collect();
            return c.describe(&names);
        }
        let w = self.sim().lock();
        w.nodes
            .iter()
            .map(|n| {
                format!(
                    "{} {:?} alive={} term={} oplog={} commit={} cfg=v{}t{} sync={:?} frozen={}\n",
                    n.name,
                    n.state,
                    n.alive,
                    n.term,
                    n.oplog.len(),
                    n.commit_len,
                    n.config.version,
                    n.config.term,
                    n.sync_source,
                    n.frozen_until.is_some_and(|t| t > Instant::now()),
                )
            })
            .collect()
    }

    /// Apply one control command, as `switchyard-lab mongodb up` reads them
    /// from stdin: `cut REGION`, `heal REGION`, `kill MEMBER`,
    /// `revive MEMBER`, `lag MEMBER MILLIS`, `primary`, `describe`.
    /// Returns the reply line.
    pub fn control(&self, line: &str) -> anyhow::Result<String> {
        if self.compose.is_some() {
            return Err(crate::backing::Unsupported(format!(
                "the simulator's control command {line:?} on compose's real mongod"
            ))
            .into());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let member = |n: &str| -> anyhow::Result<()> {
            if self.spec.members.iter().any(|m| m.name == n) {
                Ok(())
            } else {
                bail!("no member named {n}")
            }
        };
        let region = |r: &str| -> anyhow::Result<()> {
            if self.spec.members.iter().any(|m| m.region == r) {
                Ok(())
            } else {
                bail!("no region named {r}")
            }
        };
        match words.as_slice() {
            ["cut", r] => region(r).map(|_| self.cut_region(r)),
            ["heal", r] => region(r).map(|_| self.heal_region(r)),
            ["kill", m] => member(m).map(|_| self.kill(m)),
            ["revive", m] => member(m).map(|_| self.revive(m)),
            ["lag", m, ms] => {
                member(m)?;
                let ms: u64 = ms.parse().context("lag needs milliseconds")?;
                self.set_lag(m, Duration::from_millis(ms));
                Ok(())
            }
            ["primary"] => return Ok(self.primary().unwrap_or_else(|| "none".into())),
            ["describe"] => return Ok(self.describe()),
            _ => bail!(
                "unknown command {line:?} (cut/heal REGION, kill/revive MEMBER, lag MEMBER MS, primary, describe)"
            ),
        }?;
        Ok("ok".into())
    }

    /// Stop every task and close every port.
    pub fn shutdown(&mut self) {
        if let Some(shared) = &self.shared {
            shared.shutdown.send_replace(true);
        }
        // Attached: the services stay up for the next test, which resets
        // them; the lock goes with the attachment.
        self.compose = None;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for MongoSim {
    fn drop(&mut self) {
        self.shutdown();
    }
}
