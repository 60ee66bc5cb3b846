//! Observation: every node's `/gossip` over HTTP, parsed by the controller
//! itself. The official client's gRPC gossip carries no checkpoints, epochs
//! or priorities, and its parser names the state `ReadOnlyLeaderLess` while
//! servers send `ReadOnlyLeaderless`; both spellings are accepted here.

use crate::config::EsdbConfig;
use crate::error::EsdbError;
use serde::Deserialize;
use switchyard_controller::ErrorKind;

/// A node state as gossip reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VNodeState {
    /// Starting.
    Initializing,
    /// Looking for a leader (v21+).
    DiscoverLeader,
    /// In elections.
    Unknown,
    /// Joining a leader.
    PreReplica,
    /// Replicating what it misses.
    CatchingUp,
    /// Cloning (a node beyond the cluster size).
    Clone,
    /// Caught-up follower.
    Follower,
    /// Elected, not yet leading.
    PreLeader,
    /// Accepts writes.
    Leader,
    /// Manager process.
    Manager,
    /// Stopping.
    ShuttingDown,
    /// Stopped.
    Shutdown,
    /// Read-only replica without a leader.
    ReadOnlyLeaderless,
    /// Read-only replica joining.
    PreReadOnlyReplica,
    /// Read-only replica following the leader.
    ReadOnlyReplica,
    /// A leader that is resigning.
    ResigningLeader,
}

impl VNodeState {
    /// Parse a gossip state name (either spelling of `ReadOnlyLeaderless`).
    pub fn parse(s: &str) -> Option<Self> {
        use VNodeState::*;
        Some(match s {
            "Initializing" => Initializing,
            "DiscoverLeader" => DiscoverLeader,
            "Unknown" => Unknown,
            "PreReplica" => PreReplica,
            "CatchingUp" => CatchingUp,
            "Clone" => Clone,
            "Follower" | "Slave" => Follower,
            "PreLeader" | "PreMaster" => PreLeader,
            "Leader" | "Master" => Leader,
            "Manager" => Manager,
            "ShuttingDown" => ShuttingDown,
            "Shutdown" => Shutdown,
            "ReadOnlyLeaderless" | "ReadOnlyLeaderLess" | "ReadOnlyMasterless" => {
                ReadOnlyLeaderless
            }
            "PreReadOnlyReplica" => PreReadOnlyReplica,
            "ReadOnlyReplica" => ReadOnlyReplica,
            "ResigningLeader" => ResigningLeader,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GossipDto {
    members: Vec<MemberDto>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberDto {
    instance_id: String,
    state: String,
    is_alive: bool,
    http_end_point_ip: String,
    http_end_point_port: u16,
    #[serde(default)]
    last_commit_position: i64,
    writer_checkpoint: i64,
    chaser_checkpoint: i64,
    epoch_position: i64,
    epoch_number: i64,
    #[serde(default)]
    node_priority: i64,
    #[serde(default)]
    is_read_only_replica: bool,
}

/// One node's gossip entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// Instance id (new on every start).
    pub instance_id: String,
    /// State (`None`: a name this controller does not know, kept in `state_name`).
    pub state: Option<VNodeState>,
    /// The state as sent.
    pub state_name: String,
    /// `isAlive` in the reporter's view.
    pub is_alive: bool,
    /// Last commit position.
    pub last_commit: i64,
    /// Writer checkpoint (end of the node's transaction log).
    pub writer: i64,
    /// Chaser checkpoint.
    pub chaser: i64,
    /// Epoch number.
    pub epoch_number: i64,
    /// Epoch position.
    pub epoch_position: i64,
    /// Runtime node priority.
    pub priority: i64,
    /// A read-only replica.
    pub read_only: bool,
}

/// What the controller saw of one topology node.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Index into the config's nodes.
    pub idx: usize,
    /// Its own `/gossip` answered.
    pub reachable: bool,
    /// Why not, when unreachable.
    pub error: Option<String>,
    /// Its own entry (fresh) when reachable, else the freshest entry another
    /// node still holds (stale, `is_alive` false).
    pub info: Option<MemberInfo>,
}

/// Gossip of the whole cluster.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every topology node, in order.
    pub nodes: Vec<NodeView>,
}

impl Snapshot {
    /// The nodes that say they lead (Leader, or ResigningLeader when
    /// `resigning`), reachable.
    pub fn leaders(&self, resigning: bool) -> Vec<&NodeView> {
        self.nodes
            .iter()
            .filter(|n| {
                n.reachable
                    && n.info.as_ref().and_then(|i| i.state).is_some_and(|s| {
                        s == VNodeState::Leader || (resigning && s == VNodeState::ResigningLeader)
                    })
            })
            .collect()
    }

    /// The single reachable leader.
    pub fn leader(&self) -> Option<&NodeView> {
        match self.leaders(false).as_slice() {
            [l] => Some(l),
            _ => None,
        }
    }

    /// Reachable voting nodes.
    pub fn reachable_voters(&self, cfg: &EsdbConfig) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.reachable && !cfg.nodes[n.idx].read_only)
            .count()
    }

    /// Writer checkpoint of a node, when known.
    pub fn writer(&self, idx: usize) -> Option<i64> {
        self.nodes[idx].info.as_ref().map(|i| i.writer)
    }
}

fn parse(m: MemberDto) -> MemberInfo {
    MemberInfo {
        instance_id: m.instance_id,
        state: VNodeState::parse(&m.state),
        state_name: m.state,
        is_alive: m.is_alive,
        last_commit: m.last_commit_position,
        writer: m.writer_checkpoint,
        chaser: m.chaser_checkpoint,
        epoch_number: m.epoch_number,
        epoch_position: m.epoch_position,
        priority: m.node_priority,
        read_only: m.is_read_only_replica,
    }
}

/// Read `/gossip` from every node at once.
pub async fn read(cfg: &EsdbConfig, http: &reqwest::Client) -> Snapshot {
    let fetches = cfg.nodes.iter().map(|n| async move {
        let url = format!("{}://{}/gossip", cfg.scheme(), n.host);
        let mut req = http.get(&url).timeout(cfg.timeout);
        if let Some((u, p)) = cfg.credentials() {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| EsdbError::http(&url, e))?
            .error_for_status()
            .map_err(|e| EsdbError::http(&url, e))?;
        resp.json::<GossipDto>()
            .await
            .map_err(|e| EsdbError::new(ErrorKind::Protocol, format!("{url}: {e}")))
    });
    let replies = futures::future::join_all(fetches).await;
    let mut nodes = Vec::new();
    let by_host = |dto: &GossipDto, host: &str| {
        dto.members
            .iter()
            .find(|m| format!("{}:{}", m.http_end_point_ip, m.http_end_point_port) == host)
            .cloned()
    };
    for (idx, n) in cfg.nodes.iter().enumerate() {
        match &replies[idx] {
            Ok(dto) => nodes.push(NodeView {
                idx,
                reachable: true,
                error: None,
                info: by_host(dto, &n.host).map(parse),
            }),
            Err(e) => {
                // The freshest stale entry any reachable node still gossips.
                let stale = replies
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .filter_map(|dto| by_host(dto, &n.host))
                    .map(parse)
                    .max_by_key(|i| i.writer);
                nodes.push(NodeView {
                    idx,
                    reachable: false,
                    error: Some(e.to_string()),
                    info: stale,
                });
            }
        }
    }
    Snapshot { nodes }
}
