//! The simulated cluster: every node's transaction log, checkpoints, epochs,
//! gossip view and election state, advanced by [`World::tick`].
//!
//! What follows EventStoreDB (see docs/esdbsim.md for the sources):
//! - one transaction log per node; the writer checkpoint is the end of the
//!   log, the chaser checkpoint what the node has indexed (equal here);
//! - a new leader writes an epoch record, so the epoch number a node reports
//!   is the one of the last epoch record it holds;
//! - an election needs a quorum (`cluster_size / 2 + 1`) of voting nodes
//!   without a leader; the winner is the best by epoch number, last commit
//!   position, writer and chaser checkpoints, then a non-resigning node, then
//!   node priority, then instance id. While a leader is alive no election
//!   runs, so a priority change alone elects nobody;
//! - an append is acknowledged once a quorum of voting nodes holds it;
//! - a node that rejoins a leader whose log diverges from its own truncates
//!   the divergent tail (EventStoreDB does this with an offline truncation).

use super::proto::common;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

/// Node states, numbered as in the gossip protocol's `VNodeState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// No leader known: elections.
    Unknown,
    /// Joined a leader, replicating what it misses.
    CatchingUp,
    /// Caught up and acknowledging the leader's writes.
    Follower,
    /// Accepts writes.
    Leader,
    /// A leader that was asked to resign: refuses writes until the election.
    ResigningLeader,
    /// A read-only replica following the leader.
    ReadOnlyReplica,
    /// A read-only replica with no leader.
    ReadOnlyLeaderless,
    /// Stopped (killed); never reported by the node itself.
    Shutdown,
}

impl NodeState {
    /// The name the HTTP gossip and `/info` use (`ReadOnlyLeaderless`, not
    /// `ReadOnlyLeaderLess`).
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Unknown => "Unknown",
            NodeState::CatchingUp => "CatchingUp",
            NodeState::Follower => "Follower",
            NodeState::Leader => "Leader",
            NodeState::ResigningLeader => "ResigningLeader",
            NodeState::ReadOnlyReplica => "ReadOnlyReplica",
            NodeState::ReadOnlyLeaderless => "ReadOnlyLeaderless",
            NodeState::Shutdown => "Shutdown",
        }
    }

    /// The gRPC `VNodeState` number.
    pub fn grpc(self) -> i32 {
        match self {
            NodeState::Unknown => 2,
            NodeState::CatchingUp => 4,
            NodeState::Follower => 6,
            NodeState::Leader => 8,
            NodeState::Shutdown => 11,
            NodeState::ReadOnlyLeaderless => 12,
            NodeState::ReadOnlyReplica => 14,
            NodeState::ResigningLeader => 15,
        }
    }
}

/// One record of the transaction log.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An event appended by a client.
    Event(EventRecord),
    /// The epoch record a new leader writes.
    Epoch {
        /// Epoch number.
        number: i64,
        /// Epoch id.
        id: Uuid,
    },
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Stream name.
    pub stream: String,
    /// Event number within the stream.
    pub number: u64,
    /// Client-chosen event id (idempotency key).
    pub id: Uuid,
    /// Event type.
    pub event_type: String,
    /// `content-type` metadata.
    pub content_type: String,
    /// User metadata bytes.
    pub custom_metadata: Vec<u8>,
    /// Data bytes.
    pub data: Vec<u8>,
    /// Creation time, .NET ticks since the Unix epoch (as the server reports).
    pub created: i64,
}

/// A record with its place in the log.
#[derive(Debug, Clone)]
pub struct Record {
    /// Log position where the record starts (prepare = commit position).
    pub position: u64,
    /// Size in the log.
    pub size: u64,
    /// Unique record id (divergence detection).
    pub rid: Uuid,
    /// What it holds.
    pub payload: Payload,
    /// When the leader wrote it (replication lag is counted from here).
    pub written_at: Instant,
}

impl Record {
    /// Position just past the record.
    pub fn end(&self) -> u64 {
        self.position + self.size
    }
}

/// What a node last knew about another (gossip is stale for the unreachable).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// State.
    pub state: NodeState,
    /// Writer checkpoint.
    pub writer: u64,
    /// Chaser checkpoint.
    pub chaser: u64,
    /// Last commit position.
    pub commit: u64,
    /// Epoch number (-1 before the first epoch).
    pub epoch_number: i64,
    /// Epoch position.
    pub epoch_position: i64,
    /// Epoch id.
    pub epoch_id: Uuid,
    /// Node priority.
    pub priority: i32,
    /// Time of the snapshot.
    pub at: SystemTime,
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Port (HTTP and gRPC).
    pub port: u16,
    /// Instance id, new on every start.
    pub instance_id: Uuid,
    /// `NodePriority` from the node's configuration.
    pub configured_priority: i32,
    /// Runtime priority (`SetNodePriority`), reset to the configured one on restart.
    pub priority: i32,
    /// Read-only replica: never votes, never leads.
    pub read_only: bool,
    /// Process running.
    pub alive: bool,
    /// State.
    pub state: NodeState,
    /// Leader followed.
    pub leader: Option<usize>,
    /// Transaction log.
    pub log: Vec<Record>,
    /// Last commit position known to the node.
    pub commit: u64,
    /// Replication delay.
    pub lag: Duration,
    /// Resigned and not yet replaced.
    pub resigning: bool,
    /// When the node last heard from its leader (or, for a leader, held a quorum).
    pub contact: Instant,
    /// When the node became leaderless.
    pub leaderless_since: Instant,
    /// When a resignation started.
    pub resign_started: Option<Instant>,
    /// Events dropped from this node's log by truncation, in total.
    pub truncated_events: u64,
    /// Gossip view: what this node last saw of every node.
    pub seen: Vec<Option<Snapshot>>,
}

impl Node {
    /// A started node with an empty log, leaderless, in a cluster of `count`.
    pub fn new(
        name: &str,
        region: &str,
        port: u16,
        priority: i32,
        read_only: bool,
        count: usize,
        now: Instant,
    ) -> Self {
        Node {
            name: name.to_string(),
            region: region.to_string(),
            port,
            instance_id: Uuid::new_v4(),
            configured_priority: priority,
            priority,
            read_only,
            alive: true,
            state: if read_only {
                NodeState::ReadOnlyLeaderless
            } else {
                NodeState::Unknown
            },
            leader: None,
            log: Vec::new(),
            commit: 0,
            lag: Duration::ZERO,
            resigning: false,
            contact: now,
            leaderless_since: now,
            resign_started: None,
            truncated_events: 0,
            seen: vec![None; count],
        }
    }

    /// Writer checkpoint: the end of the log.
    pub fn writer(&self) -> u64 {
        self.log.last().map_or(0, Record::end)
    }

    /// The last epoch record held: (number, position, id).
    pub fn epoch(&self) -> (i64, i64, Uuid) {
        self.log
            .iter()
            .rev()
            .find_map(|r| match r.payload {
                Payload::Epoch { number, id } => Some((number, r.position as i64, id)),
                Payload::Event(_) => None,
            })
            .unwrap_or((-1, -1, Uuid::nil()))
    }

    fn snapshot(&self) -> Snapshot {
        let (epoch_number, epoch_position, epoch_id) = self.epoch();
        Snapshot {
            state: self.state,
            writer: self.writer(),
            chaser: self.writer(),
            commit: self.commit,
            epoch_number,
            epoch_position,
            epoch_id,
            priority: self.priority,
            at: SystemTime::now(),
        }
    }

    /// Whether the node is a leader (resigning or not).
    pub fn leads(&self) -> bool {
        matches!(self.state, NodeState::Leader | NodeState::ResigningLeader)
    }

    fn go_leaderless(&mut self, now: Instant) {
        self.leader = None;
        self.state = if self.read_only {
            NodeState::ReadOnlyLeaderless
        } else {
            NodeState::Unknown
        };
        self.leaderless_since = now;
    }
}

/// Timing of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A peer unheard of for this long is dead (gossip timeout).
    pub dead_after: Duration,
    /// Leaderless nodes wait this long before electing.
    pub election_delay: Duration,
    /// A resigning leader waits this long for in-flight replication.
    pub resign_grace: Duration,
}

/// Result of an append.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendResult {
    /// Written (or found already written with the same ids): revision of
    /// the last event and its log position.
    Success {
        /// Stream revision of the last event.
        revision: u64,
        /// Log position of the last event.
        position: u64,
        /// End of the last record (what must be committed before acknowledging).
        end: u64,
        /// Whether nothing new was written (idempotent repeat).
        idempotent: bool,
    },
    /// The expected revision did not hold: current revision (None = no stream).
    WrongExpectedVersion {
        /// Current last event number, `None` when the stream has no events.
        current: Option<u64>,
    },
}

/// What the client asked the stream's revision to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expected {
    /// Any state.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must have events.
    StreamExists,
    /// The last event number must be this.
    Revision(u64),
}

/// An event proposed by a client.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// Event id.
    pub id: Uuid,
    /// Type.
    pub event_type: String,
    /// Content type.
    pub content_type: String,
    /// User metadata.
    pub custom_metadata: Vec<u8>,
    /// Data.
    pub data: Vec<u8>,
}

/// The whole cluster.
#[derive(Debug)]
pub struct World {
    /// Every node, in spec order.
    pub nodes: Vec<Node>,
    /// Regions cut off from the others.
    pub cut: BTreeSet<String>,
    /// Timing.
    pub timing: Timing,
    /// Acknowledged appends, in total (for tests).
    pub acknowledged: u64,
}

/// .NET ticks (100 ns) since the Unix epoch, as EventStoreDB's `created`.
fn ticks_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| (d.as_nanos() / 100) as i64)
}

/// A uuid in the gRPC `UUID` message's string form.
pub fn grpc_uuid(id: Uuid) -> common::Uuid {
    common::Uuid {
        value: Some(common::uuid::Value::String(id.to_string())),
    }
}

impl World {
    /// A new cluster; every node starts leaderless.
    pub fn new(nodes: Vec<Node>, timing: Timing) -> Self {
        World {
            nodes,
            cut: BTreeSet::new(),
            timing,
            acknowledged: 0,
        }
    }

    /// Voting nodes in the cluster.
    pub fn cluster_size(&self) -> usize {
        self.nodes.iter().filter(|n| !n.read_only).count()
    }

    /// Votes needed to elect or to commit.
    pub fn quorum(&self) -> usize {
        self.cluster_size() / 2 + 1
    }

    /// Whether `a` and `b` can talk (both running, not separated by a cut).
    pub fn linked(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.nodes[a], &self.nodes[b]);
        x.alive
            && y.alive
            && (a == b
                || x.region == y.region
                || (!self.cut.contains(&x.region) && !self.cut.contains(&y.region)))
    }

    /// Whether a client (outside every region) can reach node `i`.
    pub fn client_reachable(&self, i: usize) -> bool {
        self.nodes[i].alive && !self.cut.contains(&self.nodes[i].region)
    }

    /// The leader node `i` follows or is, if any.
    pub fn leader_of(&self, i: usize) -> Option<usize> {
        if self.nodes[i].leads() {
            Some(i)
        } else {
            self.nodes[i].leader.filter(|&l| self.nodes[l].leads())
        }
    }

    /// Advance the cluster: failure detection, resignation, elections,
    /// replication, commit positions and gossip views.
    pub fn tick(&mut self, now: Instant) {
        let n = self.nodes.len();
        let quorum = self.quorum();
        // Failure detection.
        for i in 0..n {
            if !self.nodes[i].alive {
                continue;
            }
            if self.nodes[i].leads() {
                let voters = (0..n)
                    .filter(|&j| !self.nodes[j].read_only && self.linked(i, j))
                    .count();
                if voters >= quorum {
                    self.nodes[i].contact = now;
                } else if now - self.nodes[i].contact > self.timing.dead_after {
                    self.step_down(i, now);
                }
            } else if let Some(l) = self.nodes[i].leader {
                if self.linked(i, l) && self.nodes[l].leads() {
                    self.nodes[i].contact = now;
                } else if now - self.nodes[i].contact > self.timing.dead_after {
                    self.nodes[i].go_leaderless(now);
                }
            }
        }
        // Resignation: after the grace period the leader gives up its role.
        for i in 0..n {
            if let Some(t) = self.nodes[i].resign_started {
                if self.nodes[i].state == NodeState::ResigningLeader
                    && now - t >= self.timing.resign_grace
                {
                    self.nodes[i].resign_started = None;
                    self.step_down(i, now);
                }
            }
        }
        self.elect(now);
        self.replicate(now);
        self.update_views();
    }

    /// A leader gives up its role; its followers learn it at once (the
    /// real cluster tells them through the election messages).
    fn step_down(&mut self, i: usize, now: Instant) {
        self.nodes[i].go_leaderless(now);
        for j in 0..self.nodes.len() {
            if self.nodes[j].leader == Some(i) && self.linked(i, j) {
                self.nodes[j].go_leaderless(now);
            }
        }
    }

    /// Elections among leaderless nodes that can reach one another.
    fn elect(&mut self, now: Instant) {
        let n = self.nodes.len();
        let quorum = self.quorum();
        let mut done = vec![false; n];
        for i in 0..n {
            if done[i] || !self.nodes[i].alive {
                continue;
            }
            let comp: Vec<usize> = (0..n).filter(|&j| self.linked(i, j)).collect();
            for &j in &comp {
                done[j] = true;
            }
            let leaders: Vec<usize> = comp
                .iter()
                .copied()
                .filter(|&j| self.nodes[j].leads())
                .collect();
            if let Some(&l) = leaders.iter().max_by_key(|&&j| self.nodes[j].epoch().0) {
                // Two leaders meeting after a heal: the older epoch steps down.
                for &o in &leaders {
                    if o != l {
                        self.step_down(o, now);
                    }
                }
                // Leaderless nodes join a leader they can reach.
                for &j in &comp {
                    if self.nodes[j].leader.is_none() && !self.nodes[j].leads() {
                        self.follow(j, l, now);
                    }
                }
                continue;
            }
            let electors: Vec<usize> = comp
                .iter()
                .copied()
                .filter(|&j| !self.nodes[j].read_only && self.nodes[j].state == NodeState::Unknown)
                .collect();
            if electors.len() < quorum {
                continue;
            }
            let ready = electors
                .iter()
                .all(|&j| now - self.nodes[j].leaderless_since >= self.timing.election_delay);
            if !ready {
                continue;
            }
            let best = *electors
                .iter()
                .max_by_key(|&&j| {
                    let nd = &self.nodes[j];
                    (
                        nd.epoch().0,
                        nd.commit,
                        nd.writer(),
                        nd.writer(),
                        !nd.resigning,
                        nd.priority,
                        nd.instance_id,
                    )
                })
                .expect("a quorum is not empty");
            self.become_leader(best, now);
            for &j in &comp {
                self.nodes[j].resigning = false;
                if j != best {
                    self.follow(j, best, now);
                }
            }
        }
    }

    fn become_leader(&mut self, i: usize, now: Instant) {
        let number = self
            .nodes
            .iter()
            .map(|n| n.epoch().0)
            .max()
            .unwrap_or(-1)
            .max(self.nodes[i].epoch().0)
            + 1;
        let node = &mut self.nodes[i];
        let position = node.writer();
        node.log.push(Record {
            position,
            size: 128,
            rid: Uuid::new_v4(),
            payload: Payload::Epoch {
                number,
                id: Uuid::new_v4(),
            },
            written_at: now,
        });
        node.state = NodeState::Leader;
        node.leader = None;
        node.contact = now;
        node.resigning = false;
        node.resign_started = None;
    }

    fn follow(&mut self, j: usize, leader: usize, now: Instant) {
        let node = &mut self.nodes[j];
        node.leader = Some(leader);
        node.contact = now;
        node.state = if node.read_only {
            NodeState::ReadOnlyReplica
        } else {
            NodeState::CatchingUp
        };
    }

    /// Followers copy what their leader wrote (after their lag), truncating
    /// a divergent tail first; then the leader's commit position advances to
    /// what a quorum of voting nodes holds.
    pub fn replicate(&mut self, now: Instant) {
        let n = self.nodes.len();
        for j in 0..n {
            let Some(l) = self.nodes[j].leader else {
                continue;
            };
            if !self.linked(j, l) || !self.nodes[l].leads() {
                continue;
            }
            let common = {
                let (a, b) = (&self.nodes[j].log, &self.nodes[l].log);
                a.iter()
                    .zip(b.iter())
                    .take_while(|(x, y)| x.rid == y.rid)
                    .count()
            };
            let lag = self.nodes[j].lag;
            let copy: Vec<Record> = self.nodes[l].log[common..]
                .iter()
                .take_while(|r| r.written_at + lag <= now)
                .cloned()
                .collect();
            let caught_up = common + copy.len() == self.nodes[l].log.len();
            let node = &mut self.nodes[j];
            if node.log.len() > common {
                let dropped = node.log[common..]
                    .iter()
                    .filter(|r| matches!(r.payload, Payload::Event(_)))
                    .count() as u64;
                node.truncated_events += dropped;
                node.log.truncate(common);
            }
            node.log.extend(copy);
            if caught_up && node.state == NodeState::CatchingUp {
                node.state = NodeState::Follower;
            }
        }
        for l in 0..n {
            if !self.nodes[l].leads() {
                continue;
            }
            let mut held: Vec<u64> = (0..n)
                .filter(|&j| {
                    !self.nodes[j].read_only
                        && self.linked(l, j)
                        && (j == l || self.nodes[j].leader == Some(l))
                })
                .map(|j| self.nodes[j].writer())
                .collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(&c) = held.get(self.quorum() - 1) {
                let c = c.max(self.nodes[l].commit);
                self.nodes[l].commit = c;
                for j in 0..n {
                    if self.nodes[j].leader == Some(l) && self.linked(l, j) {
                        let w = self.nodes[j].writer();
                        self.nodes[j].commit = c.min(w);
                    }
                }
            }
        }
    }

    fn update_views(&mut self) {
        let n = self.nodes.len();
        let snaps: Vec<Snapshot> = self.nodes.iter().map(Node::snapshot).collect();
        for i in 0..n {
            for (j, snap) in snaps.iter().enumerate() {
                if self.linked(i, j) {
                    self.nodes[i].seen[j] = Some(snap.clone());
                }
            }
        }
    }

    /// Fresh gossip as node `i` sees it: (node index, alive, snapshot).
    pub fn gossip(&self, i: usize) -> Vec<(usize, bool, Option<Snapshot>)> {
        (0..self.nodes.len())
            .map(|j| {
                let alive = self.linked(i, j);
                let snap = if alive {
                    Some(self.nodes[j].snapshot())
                } else {
                    self.nodes[i].seen[j].clone()
                };
                (j, alive, snap)
            })
            .collect()
    }

    /// Events of `stream` as held by node `i`, in order.
    pub fn events(&self, i: usize, stream: &str) -> Vec<(u64, EventRecord)> {
        self.nodes[i]
            .log
            .iter()
            .filter_map(|r| match &r.payload {
                Payload::Event(e) if e.stream == stream => Some((r.position, e.clone())),
                _ => None,
            })
            .collect()
    }

    /// Append on leader `l`, with EventStoreDB's expected-revision and
    /// idempotency rules: events whose ids are already the stream's events
    /// at the place they would be written succeed without being written again.
    pub fn append(
        &mut self,
        l: usize,
        stream: &str,
        expected: Expected,
        events: Vec<Proposed>,
        now: Instant,
    ) -> AppendResult {
        let existing = self.events(l, stream);
        let current = existing.last().map(|(_, e)| e.number);
        // Idempotency: the proposed ids already follow the expected revision.
        if let Some(first) = events.first() {
            if let Some(k) = existing.iter().position(|(_, e)| e.id == first.id) {
                let start_ok = match expected {
                    Expected::Any | Expected::StreamExists => true,
                    Expected::NoStream => k == 0,
                    Expected::Revision(r) => k as u64 == r + 1,
                };
                let run = existing[k..]
                    .iter()
                    .zip(&events)
                    .take_while(|((_, e), p)| e.id == p.id)
                    .count();
                if start_ok && run == events.len() {
                    let (pos, last) = &existing[k + run - 1];
                    let end = self.nodes[l]
                        .log
                        .iter()
                        .find(|r| r.position == *pos)
                        .map_or(*pos, Record::end);
                    return AppendResult::Success {
                        revision: last.number,
                        position: *pos,
                        end,
                        idempotent: true,
                    };
                }
            }
        }
        let ok = match expected {
            Expected::Any => true,
            Expected::NoStream => current.is_none(),
            Expected::StreamExists => current.is_some(),
            Expected::Revision(r) => current == Some(r),
        };
        if !ok {
            return AppendResult::WrongExpectedVersion { current };
        }
        let first_number = current.map_or(0, |c| c + 1);
        let node = &mut self.nodes[l];
        let mut last = (0, 0, 0);
        for (number, p) in (first_number..).zip(events) {
            let position = node.writer();
            let size = 100 + (p.data.len() + p.custom_metadata.len() + p.event_type.len()) as u64;
            node.log.push(Record {
                position,
                size,
                rid: Uuid::new_v4(),
                payload: Payload::Event(EventRecord {
                    stream: stream.to_string(),
                    number,
                    id: p.id,
                    event_type: p.event_type,
                    content_type: p.content_type,
                    custom_metadata: p.custom_metadata,
                    data: p.data,
                    created: ticks_now(),
                }),
                written_at: now,
            });
            last = (number, position, position + size);
        }
        if last.2 == 0 {
            // An empty append: nothing to write, report the current revision.
            return AppendResult::Success {
                revision: current.unwrap_or(u64::MAX),
                position: node.writer(),
                end: 0,
                idempotent: true,
            };
        }
        self.replicate(now);
        AppendResult::Success {
            revision: last.0,
            position: last.1,
            end: last.2,
            idempotent: false,
        }
    }

    /// Whether the record ending at `end` written on `l` is committed by a
    /// current leader (`Some(true)`), still pending (`Some(false)`) or lost
    /// with its leader's role (`None`).
    pub fn committed(&self, l: usize, end: u64) -> Option<bool> {
        let node = &self.nodes[l];
        if !node.alive || !node.leads() {
            return None;
        }
        Some(node.commit >= end)
    }

    /// Stop node `i`.
    pub fn kill(&mut self, i: usize, now: Instant) {
        let was_leader = self.nodes[i].leads();
        let node = &mut self.nodes[i];
        node.alive = false;
        node.state = NodeState::Shutdown;
        node.leader = None;
        node.resigning = false;
        node.resign_started = None;
        if was_leader {
            // Followers notice through the gossip timeout, not at once.
            let _ = now;
        }
    }

    /// Restart node `i`: a new instance id, runtime priority back to the
    /// configured `NodePriority`, log kept.
    pub fn revive(&mut self, i: usize, now: Instant) {
        let node = &mut self.nodes[i];
        if node.alive {
            return;
        }
        node.alive = true;
        node.instance_id = Uuid::new_v4();
        node.priority = node.configured_priority;
        node.go_leaderless(now);
    }

    /// `ResignNode` on node `i`: a leader starts resigning; anything else
    /// ignores it (as the server does).
    pub fn resign(&mut self, i: usize, now: Instant) -> bool {
        let node = &mut self.nodes[i];
        if node.state != NodeState::Leader {
            return false;
        }
        node.state = NodeState::ResigningLeader;
        node.resigning = true;
        node.resign_started = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        dead_after: Duration::from_millis(300),
        election_delay: Duration::from_millis(100),
        resign_grace: Duration::from_millis(40),
    };

    fn world(priorities: &[i32]) -> (World, Instant) {
        let now = Instant::now();
        let regions = ["east", "west", "south", "north", "central"];
        let nodes = priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let mut n = Node::new(
                    &format!("n{i}"),
                    regions[i],
                    0,
                    p,
                    false,
                    priorities.len(),
                    now,
                );
                n.instance_id = Uuid::from_u128(i as u128 + 1);
                n
            })
            .collect();
        (World::new(nodes, T), now)
    }

    /// Tick every 10 ms for `ms` milliseconds from `*now`.
    fn run(w: &mut World, now: &mut Instant, ms: u64) {
        for _ in 0..ms / 10 {
            *now += Duration::from_millis(10);
            w.tick(*now);
        }
    }

    fn leaders(w: &World) -> Vec<usize> {
        (0..w.nodes.len()).filter(|&i| w.nodes[i].leads()).collect()
    }

    fn write(w: &mut World, l: usize, now: Instant) -> u64 {
        let ev = Proposed {
            id: Uuid::new_v4(),
            event_type: "t".into(),
            content_type: "application/json".into(),
            custom_metadata: vec![],
            data: vec![1; 10],
        };
        match w.append(l, "s", Expected::Any, vec![ev], now) {
            AppendResult::Success { end, .. } => end,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_highest_priority_wins_when_checkpoints_tie() {
        let (mut w, mut now) = world(&[1, 5, 0]);
        run(&mut w, &mut now, 300);
        assert_eq!(leaders(&w), vec![1]);
        assert_eq!(w.nodes[1].epoch().0, 0);
    }

    #[test]
    fn a_priority_change_alone_elects_nobody() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        assert_eq!(leaders(&w), vec![0]);
        w.nodes[1].priority = 100;
        run(&mut w, &mut now, 2000);
        assert_eq!(leaders(&w), vec![0]);
        assert_eq!(w.nodes[0].epoch().0, 0, "no new epoch");
    }

    #[test]
    fn resigning_a_follower_is_ignored() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        assert!(!w.resign(1, now));
        run(&mut w, &mut now, 1000);
        assert_eq!(leaders(&w), vec![0]);
        assert_eq!(w.nodes[0].epoch().0, 0);
    }

    #[test]
    fn a_resigning_leader_loses_ties_and_priority_picks_the_successor() {
        let (mut w, mut now) = world(&[5, 1, 3]);
        run(&mut w, &mut now, 300);
        write(&mut w, 0, now);
        run(&mut w, &mut now, 50);
        assert!(w.resign(0, now));
        assert_eq!(w.nodes[0].state, NodeState::ResigningLeader);
        run(&mut w, &mut now, 500);
        assert_eq!(
            leaders(&w),
            vec![2],
            "caught up, not resigning, higher priority"
        );
        assert_eq!(w.nodes[2].epoch().0, 1);
        assert!(w.nodes.iter().all(|n| !n.resigning));
    }

    #[test]
    fn a_resigning_leader_ahead_of_everyone_is_elected_again() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        // Both followers lag: the leader's last write reaches nobody in time.
        w.nodes[1].lag = Duration::from_secs(60);
        w.nodes[2].lag = Duration::from_secs(60);
        write(&mut w, 0, now);
        w.resign(0, now);
        run(&mut w, &mut now, 500);
        assert_eq!(leaders(&w), vec![0], "checkpoints come before resigning");
        assert_eq!(w.nodes[0].epoch().0, 1, "a new epoch all the same");
    }

    #[test]
    fn an_append_commits_only_once_a_quorum_holds_it() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        w.nodes[1].lag = Duration::from_secs(60);
        w.nodes[2].lag = Duration::from_secs(60);
        let end = write(&mut w, 0, now);
        run(&mut w, &mut now, 100);
        assert_eq!(w.committed(0, end), Some(false));
        w.nodes[2].lag = Duration::ZERO;
        run(&mut w, &mut now, 30);
        assert_eq!(w.committed(0, end), Some(true));
    }

    #[test]
    fn without_a_quorum_nobody_is_elected() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        w.cut.insert("east".into());
        w.cut.insert("west".into());
        run(&mut w, &mut now, 2000);
        assert!(
            leaders(&w).is_empty(),
            "{:?}",
            w.nodes.iter().map(|n| n.state).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_cut_leader_steps_down_and_truncates_what_it_alone_wrote_on_return() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        w.cut.insert("east".into());
        // Written on the cut leader only: never committed, never acknowledged.
        let end = write(&mut w, 0, now);
        assert_eq!(w.committed(0, end), Some(false));
        run(&mut w, &mut now, 1000);
        let l = leaders(&w);
        assert_eq!(l.len(), 1);
        assert_ne!(l[0], 0);
        assert!(!w.nodes[0].leads(), "the cut leader stepped down");
        w.cut.clear();
        run(&mut w, &mut now, 500);
        assert_eq!(w.nodes[0].state, NodeState::Follower);
        assert_eq!(w.nodes[0].truncated_events, 1);
        assert_eq!(w.nodes[0].writer(), w.nodes[l[0]].writer());
    }

    #[test]
    fn appends_are_idempotent_by_event_id_and_check_the_expected_revision() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        let p = |id: u128| Proposed {
            id: Uuid::from_u128(id),
            event_type: "t".into(),
            content_type: "application/json".into(),
            custom_metadata: vec![],
            data: vec![],
        };
        let first = w.append(0, "s", Expected::NoStream, vec![p(1), p(2)], now);
        assert!(
            matches!(
                first,
                AppendResult::Success {
                    revision: 1,
                    idempotent: false,
                    ..
                }
            ),
            "{first:?}"
        );
        let again = w.append(0, "s", Expected::NoStream, vec![p(1), p(2)], now);
        assert!(
            matches!(
                again,
                AppendResult::Success {
                    revision: 1,
                    idempotent: true,
                    ..
                }
            ),
            "{again:?}"
        );
        assert_eq!(w.events(0, "s").len(), 2);
        let wrong = w.append(0, "s", Expected::Revision(5), vec![p(3)], now);
        assert_eq!(
            wrong,
            AppendResult::WrongExpectedVersion { current: Some(1) }
        );
        let none = w.append(0, "s", Expected::NoStream, vec![p(3)], now);
        assert_eq!(
            none,
            AppendResult::WrongExpectedVersion { current: Some(1) }
        );
        let ok = w.append(0, "s", Expected::Revision(1), vec![p(3)], now);
        assert!(
            matches!(ok, AppendResult::Success { revision: 2, .. }),
            "{ok:?}"
        );
        let exists = w.append(0, "t", Expected::StreamExists, vec![p(4)], now);
        assert_eq!(exists, AppendResult::WrongExpectedVersion { current: None });
    }

    #[test]
    fn a_restart_resets_the_runtime_priority() {
        let (mut w, mut now) = world(&[5, 1, 1]);
        run(&mut w, &mut now, 300);
        w.nodes[1].priority = 50;
        let id = w.nodes[1].instance_id;
        w.kill(1, now);
        w.revive(1, now);
        assert_eq!(w.nodes[1].priority, 1);
        assert_ne!(w.nodes[1].instance_id, id);
        run(&mut w, &mut now, 300);
        assert_eq!(w.nodes[1].state, NodeState::Follower);
    }
}
