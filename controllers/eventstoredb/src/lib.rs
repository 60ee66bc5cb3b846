//! Switchyard controller for EventStoreDB (KurrentDB) clusters, through the
//! official Rust client (`kurrentdb`) and the HTTP API.
//!
//! # How the contract maps onto EventStoreDB
//! The cluster elects its leader by itself ([`Capability::self_electing`]):
//! the best candidate by epoch number and checkpoints, then a node that is
//! not resigning, then node priority. A priority change alone elects nobody,
//! resigning a follower is ignored, and a resigning leader loses only ties.
//! So the controller steers:
//! - `observe` — every node's `/gossip` (state, isAlive, writer and chaser
//!   checkpoints, epoch, node priority, read-only replica); lag is the
//!   leader's writer checkpoint minus the member's, in bytes. Runtime
//!   priorities that differ from what Switchyard set are reported as drift.
//! - `CheckReadiness` — a reachable, electable follower in the target region
//!   within `max_lag_bytes` and a quorum of voting nodes reachable (planned);
//!   a quorum of survivors (forced), otherwise refused with the reason.
//! - `CapturePosition` / `WaitForPosition` — the leader's writer checkpoint
//!   ([`Position`]: `history` = epoch number, `offset` = log position).
//! - `MakeSticky` — `SetNodePriority` on every node (target region 10, the
//!   others 0) through one client per node, recorded in the metadata of
//!   the controller's stream. Runtime only: a restarted node takes its
//!   configured `NodePriority` again, which `observe` reports.
//! - `Promote{Planned}` — MakeSticky, wait until the target's best candidate
//!   holds the leader's writer checkpoint, `ResignNode` on the leader, wait
//!   for a leader in the target region (resign again when the old leader won
//!   because the candidate was not caught up), then append to and read back
//!   from the controller's stream.
//! - `Promote{Forced}` — the survivors elect by themselves when they hold a
//!   quorum; the controller steers priorities toward the target, waits,
//!   checks, and estimates what may be lost: bytes past the new epoch's
//!   position that the lost leader last gossiped. Without a quorum it
//!   refuses: EventStoreDB cannot be made to elect without one.
//! - `Rejoin` — a restarted node rejoins by itself (truncating what it held
//!   past the new leader's log); the controller waits and reports.
//! - `Fence`, `Unfence`, `RepointFollowers` are not offered: a resigning
//!   leader refuses writes until the election, and followers follow the
//!   elected leader by themselves.
//!
//! # Fencing
//! Every mutating step first checks the coordinator's fencing token recorded
//! in the metadata of stream [`control::CONTROL_STREAM`] and refuses when a
//! newer one is there (see [`control::guard`]). Resign guarantees that the
//! resigning leader stops accepting writes and that a caught-up node wins
//! the following election; it does not stop an old coordinator's client
//! from writing to whichever node is leader.

pub mod config;
pub mod control;
mod error;
pub mod gossip;
mod ops;

pub use config::{EsdbConfig, NodeSpec};
pub use error::EsdbError;

use async_trait::async_trait;
use switchyard_controller::{
    Capability, Controller, History, Lag, MemberState, ObservedState, OpContext, Operation,
    Outcome, Position, Priorities, Result, Role, Stamp, StoreKind, Term, TokenRecord,
};
use switchyard_topology::Store;
use tokio::sync::OnceCell;

/// Runtime priority of the preferred region's nodes after `MakeSticky`.
pub const PREFERRED_PRIORITY: i64 = 10;
/// Runtime priority of every other node after `MakeSticky`.
pub const OTHER_PRIORITY: i64 = 0;

/// The EventStoreDB controller for one cluster.
pub struct EsdbController {
    cfg: EsdbConfig,
    http: reqwest::Client,
    cluster: tokio::sync::Mutex<Option<std::sync::Arc<kurrentdb::Client>>>,
    nodes: OnceCell<Vec<kurrentdb::operations::Client>>,
}

impl std::fmt::Debug for EsdbController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // EsdbConfig's Debug redacts the password.
        f.debug_struct("EsdbController")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl EsdbController {
    /// Build from a topology store; validates, does not connect.
    pub fn from_store(store: &Store) -> Result<Self> {
        let cfg = EsdbConfig::from_store(store).map_err(|e| e.into_error(&store.name))?;
        Ok(Self::new(cfg))
    }

    /// Build from a validated config.
    pub fn new(cfg: EsdbConfig) -> Self {
        EsdbController {
            cfg,
            http: reqwest::Client::new(),
            cluster: tokio::sync::Mutex::new(None),
            nodes: OnceCell::new(),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &EsdbConfig {
        &self.cfg
    }

    /// What this controller supports.
    pub fn capabilities() -> Capability {
        // Node priority is runtime state: a restarted node forgets it
        // (the control stream keeps what Switchyard set; drift is reported).
        Capability::none()
            .with_planned_switchover()
            .with_forced_failover()
            .with_positions()
            .with_rejoin()
            .with_self_electing()
            .with_sticky_priorities(Priorities::RuntimeOnly)
            .with_lag_bound()
            .with_chosen_candidate()
    }

    /// A client discovering the leader through gossip (appends, reads and
    /// the control stream go to the leader).
    pub(crate) async fn cluster(
        &self,
    ) -> std::result::Result<std::sync::Arc<kurrentdb::Client>, EsdbError> {
        let mut slot = self.cluster.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let hosts: Vec<&str> = self
            .cfg
            .nodes
            .iter()
            .filter(|n| !n.read_only)
            .map(|n| n.host.as_str())
            .collect();
        let s = self.cfg.connection_string(&hosts);
        let settings = s.parse().map_err(|e| {
            EsdbError::config(format!("stores.{}.members", self.cfg.store), format!("{e}"))
        })?;
        let c = std::sync::Arc::new(kurrentdb::Client::new(settings).map_err(|e| {
            EsdbError::new(switchyard_controller::ErrorKind::Config, e.to_string())
        })?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Run `f` with the cluster client; after a temporary failure the client
    /// is dropped so the next call discovers the leader afresh. (kurrentdb
    /// 1.2 re-selects a node only after a not-leader error: after a server
    /// or connection error it keeps the channel to the node that failed.)
    pub(crate) async fn with_cluster<T, F, Fut>(&self, f: F) -> std::result::Result<T, EsdbError>
    where
        F: FnOnce(std::sync::Arc<kurrentdb::Client>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, EsdbError>>,
    {
        let c = self.cluster().await?;
        let r = f(c).await;
        if r.as_ref().is_err_and(|e| e.kind().is_temporary()) {
            *self.cluster.lock().await = None;
        }
        r
    }

    /// One operations client per node: `SetNodePriority` and `ResignNode`
    /// act on the node the client is connected to.
    pub(crate) async fn node_client(
        &self,
        idx: usize,
    ) -> std::result::Result<&kurrentdb::operations::Client, EsdbError> {
        let all = self
            .nodes
            .get_or_try_init(|| async {
                self.cfg
                    .nodes
                    .iter()
                    .map(|n| {
                        let s = self.cfg.connection_string(&[n.host.as_str()]);
                        let settings = s.parse().map_err(|e| {
                            EsdbError::config(
                                format!("stores.{}.members.{}.host", self.cfg.store, n.name),
                                format!("{e}"),
                            )
                        })?;
                        kurrentdb::operations::Client::new(settings).map_err(|e| {
                            EsdbError::new(switchyard_controller::ErrorKind::Config, e.to_string())
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .await?;
        Ok(&all[idx])
    }

    /// Gossip of every node.
    pub async fn snapshot(&self) -> gossip::Snapshot {
        gossip::read(&self.cfg, &self.http).await
    }

    /// Turn a gossip snapshot (and, when readable, the control metadata)
    /// into the common observed state.
    pub fn to_state(
        &self,
        snap: &gossip::Snapshot,
        control: Option<&control::Control>,
    ) -> ObservedState {
        let leader = snap
            .leaders(true)
            .into_iter()
            .max_by_key(|l| l.info.as_ref().map_or(-1, |i| i.epoch_number));
        let leader_writer = leader.and_then(|l| l.info.as_ref()).map(|i| i.writer);
        let leader_name = leader.map(|l| self.cfg.nodes[l.idx].name.clone());
        let members = snap
            .nodes
            .iter()
            .map(|v| {
                let spec = &self.cfg.nodes[v.idx];
                let Some(info) = v.info.as_ref().filter(|_| v.reachable) else {
                    let mut m = MemberState::unreachable(
                        &spec.name,
                        &spec.region,
                        v.error.clone().unwrap_or_else(|| "not in gossip".into()),
                    );
                    if let Some(stale) = &v.info {
                        m.detail = Some(format!(
                            "{}; last gossiped {} with writer checkpoint {}",
                            m.detail.unwrap_or_default(),
                            stale.state_name,
                            stale.writer
                        ));
                    }
                    return m;
                };
                use gossip::VNodeState as S;
                let role = match info.state {
                    Some(S::Leader | S::ResigningLeader) => Role::Primary,
                    Some(S::Follower | S::CatchingUp | S::PreReplica | S::Clone) => Role::Secondary,
                    Some(S::ReadOnlyReplica | S::ReadOnlyLeaderless | S::PreReadOnlyReplica) => {
                        Role::ReadOnly
                    }
                    _ => Role::Unknown,
                };
                let mut detail = vec![format!(
                    "state {} epoch {}@{} writer {} chaser {} commit {}",
                    info.state_name,
                    info.epoch_number,
                    info.epoch_position,
                    info.writer,
                    info.chaser,
                    info.last_commit
                )];
                if let Some(c) = control {
                    if let Some(&want) = c.priorities.get(&spec.name) {
                        if want != info.priority {
                            detail.push(format!(
                                "priority drift: runtime NodePriority is {}, Switchyard set {want} to keep the leader in {} (a restart resets runtime priorities to the configured NodePriority); set NodePriority={want} in this node's configuration to make it stick",
                                info.priority,
                                c.preferred_region.as_deref().unwrap_or("?")
                            ));
                        }
                    }
                }
                let following = match role {
                    Role::Secondary | Role::ReadOnly => leader_name.clone(),
                    _ => None,
                };
                // Gossip says whether a follower is attached to a leader; a
                // read-only replica without one receives nothing.
                let replicating = match info.state {
                    Some(S::ReadOnlyLeaderless) => Some(false),
                    Some(
                        S::Follower
                        | S::CatchingUp
                        | S::PreReplica
                        | S::Clone
                        | S::ReadOnlyReplica
                        | S::PreReadOnlyReplica,
                    ) => Some(leader_name.is_some()),
                    _ => None,
                };
                MemberState {
                    name: spec.name.clone(),
                    region: spec.region.clone(),
                    role,
                    reachable: true,
                    position: u64::try_from(info.writer).ok().map(|offset| Position {
                        history: History(u64::try_from(info.epoch_number).unwrap_or(0)),
                        offset,
                    }),
                    lag: leader_writer.map(|lw| Lag {
                        bytes: Some(lw.saturating_sub(info.writer).max(0) as u64),
                        millis: None,
                    }),
                    following,
                    replicating,
                    fenced: info.state == Some(S::ResigningLeader),
                    fence_evidence: None,
                    priority: Some(info.priority as f64),
                    votes: Some(u32::from(!spec.read_only)),
                    detail: Some(detail.join("; ")),
                    awaits_rejoin: false,
                }
            })
            .collect();
        ObservedState {
            store: self.cfg.store.clone(),
            kind: StoreKind::Eventstoredb,
            // EventStoreDB's own word for its term is "epoch".
            term: leader
                .and_then(|l| l.info.as_ref())
                .and_then(|i| u64::try_from(i.epoch_number).ok())
                .map(Term),
            config_version: None,
            members,
        }
    }
}

/// EventStoreDB's notation, as its gossip writes it: the writer checkpoint
/// (a byte position in the transaction log) and the epoch number.
pub const NOTATION: switchyard_controller::Notation = switchyard_controller::Notation {
    term: "epoch",
    position: |p| format!("writer checkpoint {} in epoch {}", p.offset, p.history),
};

#[async_trait]
impl Controller for EsdbController {
    fn store(&self) -> &str {
        &self.cfg.store
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Eventstoredb
    }

    fn notation(&self) -> switchyard_controller::Notation {
        NOTATION
    }

    fn capability(&self) -> Capability {
        Self::capabilities()
    }

    async fn observe(&self) -> Result<ObservedState> {
        let snap = self.snapshot().await;
        if snap.nodes.iter().all(|n| !n.reachable) {
            return Err(EsdbError::new(
                switchyard_controller::ErrorKind::Unreachable,
                "no node answered /gossip",
            )
            .into_error(&self.cfg.store));
        }
        // Drift needs the control metadata, readable only through a leader.
        let control = if snap.leader().is_some() {
            self.with_cluster(|c| async move { control::read(&c).await })
                .await
                .ok()
        } else {
            None
        };
        Ok(self.to_state(&snap, control.as_ref()))
    }

    fn token_record(&self) -> Option<&dyn TokenRecord> {
        Some(self)
    }

    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome> {
        self.run(op, ctx)
            .await
            .map_err(|e| e.into_error(&self.cfg.store))
    }
}

/// The stamp lives in the metadata of [`control::CONTROL_STREAM`], read and
/// written through the leader, retried while the cluster elects.
#[async_trait]
impl TokenRecord for EsdbController {
    async fn read_stamp(&self) -> Result<Option<Stamp>> {
        // Readable only through a leader, and without a quorum there is
        // none: say so rather than time out reading.
        if let Some(e) = self.no_quorum(&self.snapshot().await) {
            return Err(e.into_error(&self.cfg.store));
        }
        self.retry(self.cfg.catch_up, || {
            self.with_cluster(|c| async move { control::read(&c).await })
        })
        .await
        .map(|c| c.stamp())
        .map_err(|e| e.into_error(&self.cfg.store))
    }

    async fn write_stamp(&self, stamp: &Stamp) -> Result<bool> {
        let ctx = OpContext::new(stamp.execution.clone(), stamp.token);
        let ctx = &ctx;
        self.retry(self.cfg.catch_up, || {
            self.with_cluster(|c| async move { control::record(&c, ctx).await })
        })
        .await
        .map(|_| true)
        .map_err(|e| e.into_error(&self.cfg.store))
    }
}
