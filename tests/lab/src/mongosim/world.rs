//! The replica set as a state machine: members, their oplogs, terms, votes
//! and configs. It does no I/O (raft-rs style): the server tasks and the
//! ticker call into it under one lock, and it reports what changed.
//!
//! Rules follow MongoDB's documented protocol version 1 behaviour:
//! elections need a majority of the configured votes among reachable
//! voters; a voter refuses a candidate whose term is stale, whose config is
//! older, whose oplog is behind its own, or when it already voted in that
//! term; a dry run precedes the real election (except for step-up after a
//! step-down hand-off); a primary that cannot see a majority for an election
//! timeout steps down; a caught-up member of higher priority takes over from
//! a lower-priority primary; frozen (or recently stepped-down) members,
//! arbiters, hidden and priority-0 members never stand.

use bson::{doc, oid::ObjectId, Bson, DateTime, Document, Timestamp};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Documented server limits for replica set configs.
pub const MAX_MEMBERS: usize = 50;
/// At most seven voting members.
pub const MAX_VOTING: usize = 7;
/// Priorities range from 0 to 1000.
pub const MAX_PRIORITY: f64 = 1000.0;

/// A command failure, rendered as `{ok: 0, errmsg, code, codeName}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdError {
    /// Server error code.
    pub code: i32,
    /// Server code name.
    pub code_name: &'static str,
    /// Message.
    pub msg: String,
}

impl CmdError {
    /// A new error.
    pub fn new(code: i32, code_name: &'static str, msg: impl Into<String>) -> Self {
        CmdError {
            code,
            code_name,
            msg: msg.into(),
        }
    }
    /// NotWritablePrimary (10107).
    pub fn not_primary() -> Self {
        CmdError::new(10107, "NotWritablePrimary", "not primary")
    }
    /// InvalidReplicaSetConfig (93).
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        CmdError::new(93, "InvalidReplicaSetConfig", msg)
    }
    /// BadValue (2).
    pub fn bad_value(msg: impl Into<String>) -> Self {
        CmdError::new(2, "BadValue", msg)
    }
}

/// One entry of `members` in a replica set config.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberConfig {
    /// `_id`.
    pub id: i32,
    /// `host:port`.
    pub host: String,
    /// Election priority.
    pub priority: f64,
    /// 0 or 1.
    pub votes: i32,
    /// Arbiter.
    pub arbiter_only: bool,
    /// Hidden.
    pub hidden: bool,
    /// Free-form string tags.
    pub tags: Document,
}

impl MemberConfig {
    /// May stand for election.
    pub fn electable(&self) -> bool {
        self.priority > 0.0 && !self.arbiter_only && !self.hidden && self.votes > 0
    }
}

/// A replica set configuration document.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplConfig {
    /// `_id` (the set name).
    pub set_name: String,
    /// `version`.
    pub version: i64,
    /// `term` of the primary that wrote it (-1 after a forced reconfig).
    pub term: i64,
    /// Members.
    pub members: Vec<MemberConfig>,
    /// `settings.heartbeatIntervalMillis`.
    pub heartbeat_ms: u64,
    /// `settings.electionTimeoutMillis`.
    pub election_timeout_ms: u64,
    /// `settings.replicaSetId`.
    pub replica_set_id: ObjectId,
}

impl ReplConfig {
    /// The member entry for `host`.
    pub fn member(&self, host: &str) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.host == host)
    }
    /// Sum of votes.
    pub fn total_votes(&self) -> i32 {
        self.members.iter().map(|m| m.votes).sum()
    }
    /// Votes needed to win an election.
    pub fn majority_votes(&self) -> i32 {
        self.total_votes() / 2 + 1
    }
    /// `ConfigVersionAndTerm` order (`repl_set_config.h`): term first, then
    /// version — unless either term is -1 (a forced config), when only the
    /// versions count, so a forced config wins with its high version.
    pub fn newer_than(&self, other: &ReplConfig) -> bool {
        if self.term == -1 || other.term == -1 {
            self.version > other.version
        } else {
            (self.term, self.version) > (other.term, other.version)
        }
    }
    /// `ConfigVersionAndTerm` equality (same -1 rule as [`Self::newer_than`]).
    pub fn same_version_and_term(&self, other: &ReplConfig) -> bool {
        if self.term == -1 || other.term == -1 {
            self.version == other.version
        } else {
            (self.term, self.version) == (other.term, other.version)
        }
    }
    /// Members that must have a write for `w: "majority"`: the smaller of the
    /// voting majority and the number of data-bearing voting members.
    pub fn write_majority(&self) -> usize {
        let data_voting = self
            .members
            .iter()
            .filter(|m| m.votes > 0 && !m.arbiter_only)
            .count();
        (self.majority_votes() as usize).min(data_voting)
    }

    /// Render as the document `replSetGetConfig` returns.
    pub fn to_document(&self) -> Document {
        let members: Vec<Bson> = self
            .members
            .iter()
            .map(|m| {
                Bson::Document(doc! {
                    "_id": m.id,
                    "host": &m.host,
                    "arbiterOnly": m.arbiter_only,
                    "buildIndexes": true,
                    "hidden": m.hidden,
                    "priority": m.priority,
                    "tags": m.tags.clone(),
                    "secondaryDelaySecs": 0i64,
                    "votes": m.votes,
                })
            })
            .collect();
        doc! {
            "_id": &self.set_name,
            "version": self.version as i32,
            "term": self.term as i32,
            "protocolVersion": 1i64,
            "writeConcernMajorityJournalDefault": true,
            "members": members,
            "settings": {
                "chainingAllowed": true,
                "heartbeatIntervalMillis": self.heartbeat_ms as i64,
                "heartbeatTimeoutSecs": 10,
                "electionTimeoutMillis": self.election_timeout_ms as i64,
                "catchUpTimeoutMillis": -1i64,
                "catchUpTakeoverDelayMillis": 30000i64,
                "getLastErrorModes": {},
                "getLastErrorDefaults": { "w": 1, "wtimeout": 0 },
                "replicaSetId": self.replica_set_id,
            },
        }
    }

    /// Parse and validate a config submitted to `replSetReconfig`, keeping
    /// settings the document leaves out from `current`.
    pub fn from_document(d: &Document, current: &ReplConfig) -> Result<ReplConfig, CmdError> {
        let set_name = d
            .get_str("_id")
            .map_err(|_| CmdError::invalid_config("config is missing the string field _id"))?
            .to_string();
        let version = num(d.get("version"))
            .ok_or_else(|| CmdError::invalid_config("config is missing a numeric version"))?;
        let term = num(d.get("term")).unwrap_or(current.term);
        let arr = d
            .get_array("members")
            .map_err(|_| CmdError::invalid_config("config is missing the members array"))?;
        let mut members = Vec::new();
        for (i, m) in arr.iter().enumerate() {
            let m = m.as_document().ok_or_else(|| {
                CmdError::invalid_config(format!("members.{i} is not a document"))
            })?;
            let id = num(m.get("_id")).ok_or_else(|| {
                CmdError::invalid_config(format!("members.{i} is missing a numeric _id"))
            })? as i32;
            let host = m
                .get_str("host")
                .map_err(|_| CmdError::invalid_config(format!("members.{i} is missing host")))?
                .to_string();
            let arbiter_only = m.get_bool("arbiterOnly").unwrap_or(false);
            let hidden = m.get_bool("hidden").unwrap_or(false);
            let votes = num(m.get("votes")).unwrap_or(1) as i32;
            let priority = match m.get("priority") {
                Some(b) => numf(Some(b)).ok_or_else(|| {
                    CmdError::invalid_config(format!("members.{i}.priority is not a number"))
                })?,
                None if arbiter_only => 0.0,
                None => 1.0,
            };
            let tags = m.get_document("tags").cloned().unwrap_or_default();
            if let Some((k, _)) = tags.iter().find(|(_, v)| !matches!(v, Bson::String(_))) {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}.tags.{k} must be a string"
                )));
            }
            members.push(MemberConfig {
                id,
                host,
                priority,
                votes,
                arbiter_only,
                hidden,
                tags,
            });
        }
        let settings = d.get_document("settings").ok();
        let get = |k: &str| settings.and_then(|s| num(s.get(k)));
        let cfg = ReplConfig {
            set_name,
            version,
            term,
            members,
            heartbeat_ms: get("heartbeatIntervalMillis")
                .map(|v| v as u64)
                .unwrap_or(current.heartbeat_ms),
            election_timeout_ms: get("electionTimeoutMillis")
                .map(|v| v as u64)
                .unwrap_or(current.election_timeout_ms),
            replica_set_id: current.replica_set_id,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The member-level limits documented for replica set configs.
    pub fn validate(&self) -> Result<(), CmdError> {
        if self.members.is_empty() {
            return Err(CmdError::invalid_config(
                "a config needs at least one member",
            ));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(CmdError::invalid_config(format!(
                "{} members exceed the limit of {MAX_MEMBERS}",
                self.members.len()
            )));
        }
        let voting = self.members.iter().filter(|m| m.votes > 0).count();
        if voting > MAX_VOTING {
            return Err(CmdError::invalid_config(format!(
                "{voting} voting members exceed the limit of {MAX_VOTING}"
            )));
        }
        if voting == 0 {
            return Err(CmdError::invalid_config("a config needs a voting member"));
        }
        let mut ids = HashSet::new();
        let mut hosts = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if !ids.insert(m.id) {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}._id {} is not unique",
                    m.id
                )));
            }
            if !hosts.insert(m.host.clone()) {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}.host {} is not unique",
                    m.host
                )));
            }
            if m.votes != 0 && m.votes != 1 {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}.votes must be 0 or 1"
                )));
            }
            if !(0.0..=MAX_PRIORITY).contains(&m.priority) {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}.priority must be between 0 and {MAX_PRIORITY}"
                )));
            }
            if m.arbiter_only && m.priority != 0.0 {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}: arbiters must have priority 0"
                )));
            }
            if m.votes == 0 && m.priority != 0.0 {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}: non-voting members must have priority 0"
                )));
            }
            if m.hidden && m.priority != 0.0 {
                return Err(CmdError::invalid_config(format!(
                    "members.{i}: hidden members must have priority 0"
                )));
            }
        }
        if !self.members.iter().any(|m| m.electable()) {
            return Err(CmdError::invalid_config(
                "a config needs at least one electable member",
            ));
        }
        Ok(())
    }
}

/// Numeric field as i64 (int32, int64 or double).
pub fn num(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        Bson::Boolean(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// Numeric field as f64.
pub fn numf(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::Double(v) => Some(*v),
        _ => None,
    }
}

/// Member state as reported by `replSetGetStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// PRIMARY (1).
    Primary,
    /// SECONDARY (2).
    Secondary,
    /// ARBITER (7).
    Arbiter,
    /// REMOVED (10): not in its own config.
    Removed,
}

impl NodeState {
    /// Numeric state and its name.
    pub fn code(self, alive: bool) -> (i32, &'static str) {
        if !alive {
            return (8, "(not reachable/healthy)");
        }
        match self {
            NodeState::Primary => (1, "PRIMARY"),
            NodeState::Secondary => (2, "SECONDARY"),
            NodeState::Arbiter => (7, "ARBITER"),
            NodeState::Removed => (10, "REMOVED"),
        }
    }
}

/// What an oplog entry did.
#[derive(Debug, Clone)]
pub enum Op {
    /// A no-op (new primary, heartbeat).
    Noop(String),
    /// An insert into `ns`.
    Insert {
        /// `db.collection`.
        ns: String,
        /// The document.
        doc: Document,
        /// Retryable-write identity (lsid bytes, txnNumber, statement index).
        txn: Option<TxnKey>,
    },
}

/// Identity of one statement of a retryable write.
pub type TxnKey = (Vec<u8>, i64, i32);

/// One oplog entry. Entries are identified by `(ts, t)`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Timestamp.
    pub ts: Timestamp,
    /// Term of the primary that wrote it.
    pub t: i64,
    /// Wall clock time it was written.
    pub wall: DateTime,
    /// Monotonic time it was written (replication lag is measured on this).
    pub at: Instant,
    /// The operation.
    pub op: Op,
}

impl Entry {
    fn same(&self, other: &Entry) -> bool {
        self.ts == other.ts && self.t == other.t
    }
}

/// Timestamp as a single monotonic number (secs << 32 | inc).
pub fn ts_u64(ts: Timestamp) -> u64 {
    (u64::from(ts.time) << 32) | u64::from(ts.increment)
}

/// A collection's documents in natural (insertion) order.
#[derive(Debug, Default, Clone)]
pub struct Collection {
    /// Documents by the timestamp of their insert.
    pub docs: BTreeMap<u64, Document>,
    /// `_id` (as canonical bytes) to insert timestamp.
    pub ids: HashMap<Vec<u8>, u64>,
}

/// Canonical bytes of an `_id` value, for uniqueness.
pub fn id_key(v: &Bson) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = doc! { "k": v.clone() }.to_writer(&mut out);
    out
}

/// One member (a mongod or an arbiter).
#[derive(Debug)]
pub struct Node {
    /// Member name (from the topology).
    pub name: String,
    /// Region.
    pub region: String,
    /// `127.0.0.1:port`.
    pub host: String,
    /// Process running (false after `kill`).
    pub alive: bool,
    /// Current state.
    pub state: NodeState,
    /// Current term.
    pub term: i64,
    /// Vote cast in a term.
    pub voted: Option<(i64, String)>,
    /// Installed config.
    pub config: ReplConfig,
    /// The oplog (never truncated except by rollback).
    pub oplog: Vec<Entry>,
    /// Entries `[0, commit_len)` are majority committed as far as this member knows.
    pub commit_len: usize,
    /// Materialised collections.
    pub data: HashMap<String, Collection>,
    /// Executed retryable-write statements and the oplog index they wrote.
    pub txns: HashMap<TxnKey, usize>,
    /// Replication delay applied to entries from the sync source.
    pub lag: Duration,
    /// Last time a primary was visible (election timer).
    pub last_primary_seen: Instant,
    /// Last time a primary saw a voting majority (liveness).
    pub last_majority_seen: Instant,
    /// Will not stand for election before this instant (freeze, step-down).
    pub frozen_until: Option<Instant>,
    /// Refusing writes while a step-down waits for catch-up.
    pub stepping_down: bool,
    /// A priority takeover condition held since.
    pub takeover_since: Option<Instant>,
    /// The stepped-down primary asked this member to stand now.
    pub step_up_requested: bool,
    /// `topologyVersion.processId`.
    pub process_id: ObjectId,
    /// `topologyVersion.counter`.
    pub tv_counter: i64,
    /// Bumped whenever client connections must be dropped.
    pub conn_gen: u64,
    /// Oplog entries this member rolled back.
    pub rolled_back_ops: u64,
    /// Random part of the election timeout.
    pub offset: Duration,
    /// Host it replicates from.
    pub sync_source: Option<String>,
    /// When each peer last answered a heartbeat.
    pub last_heartbeat: HashMap<String, DateTime>,
    /// When this member last won an election.
    pub election_date: Option<DateTime>,
    /// Oplog length covering this primary's first entry of its term (the
    /// "new primary" no-op): mongod's `_firstOpTimeOfMyTerm`.
    pub first_op_len: usize,
    /// Commit point (as an oplog length) when the current config was
    /// installed here: mongod's `_lastCommittedInPrevConfig`.
    pub committed_in_prev_config: usize,
}

impl Node {
    /// This member's entry in its own config.
    pub fn me(&self) -> Option<&MemberConfig> {
        self.config.member(&self.host)
    }
    /// Holds data (not an arbiter).
    pub fn data_bearing(&self) -> bool {
        !self.me().is_some_and(|m| m.arbiter_only)
    }
    /// Last applied entry's optime.
    pub fn last_optime(&self) -> (Timestamp, i64) {
        self.oplog.last().map(|e| (e.ts, e.t)).unwrap_or((
            Timestamp {
                time: 0,
                increment: 0,
            },
            -1,
        ))
    }
    /// Majority-committed optime.
    pub fn commit_optime(&self) -> (Timestamp, i64) {
        if self.commit_len == 0 {
            return (
                Timestamp {
                    time: 0,
                    increment: 0,
                },
                -1,
            );
        }
        let e = &self.oplog[self.commit_len - 1];
        (e.ts, e.t)
    }
    /// `electionId` for this member's term: ObjectId 7fffffff + term.
    pub fn election_id(&self) -> ObjectId {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        b[4..12].copy_from_slice(&self.term.to_be_bytes());
        ObjectId::from_bytes(b)
    }

    fn apply(&mut self, idx: usize) {
        let e = &self.oplog[idx];
        if let Op::Insert { ns, doc, txn } = &e.op {
            let key = ts_u64(e.ts);
            let coll = self.data.entry(ns.clone()).or_default();
            if let Some(id) = doc.get("_id") {
                coll.ids.insert(id_key(id), key);
            }
            coll.docs.insert(key, doc.clone());
            if let Some(t) = txn {
                self.txns.insert(t.clone(), idx);
            }
        }
    }

    fn rebuild(&mut self) {
        self.data.clear();
        self.txns.clear();
        for i in 0..self.oplog.len() {
            self.apply(i);
        }
    }

    fn touch(&mut self) {
        self.tv_counter += 1;
    }
}

/// Longest common prefix of two oplogs (entries are unique by optime, so a
/// shared entry implies a shared history up to it).
pub fn common_prefix(a: &[Entry], b: &[Entry]) -> usize {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0;
    }
    if a[n - 1].same(&b[n - 1]) {
        return n;
    }
    let mut k = n;
    while k > 0 && !a[k - 1].same(&b[k - 1]) {
        k -= 1;
    }
    k
}

/// The whole simulated deployment.
#[derive(Debug)]
pub struct World {
    /// Members, in spec order.
    pub nodes: Vec<Node>,
    /// Regions currently cut off.
    pub cut: HashSet<String>,
    /// Inserts rolled back on any member, ever (distinct writes: the same
    /// insert rolled back on two members counts once).
    pub rolled_back_inserts: u64,
    rolled_back_ids: HashSet<(u64, i64)>,
    last_ts: (u32, u32),
    rng: u64,
    next_heartbeat: Instant,
}

/// Result of one insert batch on a primary.
#[derive(Debug)]
pub struct InsertResult {
    /// Documents inserted (or found already inserted by a retry).
    pub n: i32,
    /// `(index, code, message)` per failed document.
    pub write_errors: Vec<(i32, i32, String)>,
    /// Oplog length covering every write of this batch.
    pub wait_len: usize,
    /// Term the writes happened in.
    pub term: i64,
}

impl InsertResult {
    /// What a write concern must wait for: the batch's last entry, by
    /// position *and* optime, taken on `node` (the primary that ran it).
    pub fn mark(&self, node: &Node) -> WriteMark {
        WriteMark {
            len: self.wait_len,
            optime: self
                .wait_len
                .checked_sub(1)
                .map(|k| (node.oplog[k].ts, node.oplog[k].t)),
        }
    }
}

/// The oplog entry a write concern waits for. A length alone is not enough:
/// a primary that steps down may roll the entry back and then replay a new
/// primary's entries past that length, so an entry counts only where the
/// same optime (`ts`, `t`) still sits at the same position — an entry never
/// moves, it is only ever truncated away (mongod waits on the `OpTime` and
/// fails every waiter when the node steps down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteMark {
    /// Oplog length covering the write.
    pub len: usize,
    /// Optime of the entry at `len - 1` (`None` when `len` is 0).
    pub optime: Option<(Timestamp, i64)>,
}

impl WriteMark {
    /// `node` holds the write (and, entries being unique by optime, all
    /// history before it).
    pub fn held_by(&self, node: &Node) -> bool {
        match self.optime {
            None => true,
            Some((ts, t)) => node
                .oplog
                .get(self.len - 1)
                .is_some_and(|e| e.ts == ts && e.t == t),
        }
    }

    /// `node` holds the write and knows it is majority committed.
    pub fn committed_on(&self, node: &Node) -> bool {
        node.commit_len >= self.len && self.held_by(node)
    }
}

impl World {
    /// A world whose nodes share `config`; everybody starts as secondary.
    pub fn new(nodes: Vec<(String, String, String)>, config: ReplConfig) -> World {
        let now = Instant::now();
        let mut w = World {
            nodes: Vec::new(),
            cut: HashSet::new(),
            rolled_back_inserts: 0,
            rolled_back_ids: HashSet::new(),
            last_ts: (0, 0),
            rng: 0x9E37_79B9_7F4A_7C15,
            next_heartbeat: now,
        };
        for (name, region, host) in nodes {
            let arbiter = config.member(&host).is_some_and(|m| m.arbiter_only);
            let node = Node {
                name,
                region,
                host,
                alive: true,
                state: if arbiter {
                    NodeState::Arbiter
                } else {
                    NodeState::Secondary
                },
                term: 0,
                voted: None,
                config: config.clone(),
                oplog: Vec::new(),
                commit_len: 0,
                data: HashMap::new(),
                txns: HashMap::new(),
                lag: Duration::ZERO,
                last_primary_seen: now,
                last_majority_seen: now,
                frozen_until: None,
                stepping_down: false,
                takeover_since: None,
                step_up_requested: false,
                process_id: ObjectId::new(),
                tv_counter: 0,
                conn_gen: 0,
                rolled_back_ops: 0,
                offset: Duration::ZERO,
                sync_source: None,
                last_heartbeat: HashMap::new(),
                election_date: None,
                first_op_len: 0,
                committed_in_prev_config: 0,
            };
            w.nodes.push(node);
        }
        for i in 0..w.nodes.len() {
            w.nodes[i].offset = w.random_offset(&config);
        }
        w
    }

    fn random_offset(&mut self, cfg: &ReplConfig) -> Duration {
        // xorshift; MongoDB adds up to 15% of the election timeout at random.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let limit = (cfg.election_timeout_ms * 15 / 100).max(1);
        Duration::from_millis(self.rng % limit)
    }

    /// Index of the member with `host`.
    pub fn by_host(&self, host: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.host == host)
    }

    /// Index of the member named `name`.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Whether `i` and `j` can exchange traffic.
    pub fn reachable(&self, i: usize, j: usize) -> bool {
        let (a, b) = (&self.nodes[i], &self.nodes[j]);
        if !a.alive || !b.alive {
            return false;
        }
        a.region == b.region || (!self.cut.contains(&a.region) && !self.cut.contains(&b.region))
    }

    /// Whether clients (which live outside every region) can reach `i`.
    pub fn client_reachable(&self, i: usize) -> bool {
        self.nodes[i].alive && !self.cut.contains(&self.nodes[i].region)
    }

    /// Drop every client connection of member `i`.
    pub fn drop_connections(&mut self, i: usize) {
        self.nodes[i].conn_gen += 1;
    }

    /// Next cluster-wide timestamp (a single clock stands in for synchronised hosts).
    pub fn next_ts(&mut self) -> Timestamp {
        let secs = DateTime::now().timestamp_millis().max(0) as u64 / 1000;
        let secs = secs as u32;
        self.last_ts = if secs > self.last_ts.0 {
            (secs, 1)
        } else {
            (self.last_ts.0, self.last_ts.1 + 1)
        };
        Timestamp {
            time: self.last_ts.0,
            increment: self.last_ts.1,
        }
    }

    /// The primary member `i` can see (highest term), if any.
    pub fn visible_primary(&self, i: usize) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&j| {
                self.reachable(i, j)
                    && self.nodes[j].state == NodeState::Primary
                    && self.nodes[j].term >= self.nodes[i].term
            })
            .max_by_key(|&j| self.nodes[j].term)
    }

    /// Step member `i` down to secondary; `freeze` keeps it from standing.
    pub fn step_down(&mut self, i: usize, now: Instant, freeze: Option<Duration>) {
        let n = &mut self.nodes[i];
        if n.state == NodeState::Primary {
            n.state = NodeState::Secondary;
            n.touch();
        }
        n.stepping_down = false;
        n.last_primary_seen = now;
        if let Some(f) = freeze {
            n.frozen_until = Some(now + f);
        }
    }

    /// Whether member `i` is frozen (`replSetFreeze`, or stepped down) at `now`.
    pub fn frozen(&self, i: usize, now: Instant) -> bool {
        self.nodes[i].frozen_until.is_some_and(|t| t > now)
    }

    /// Run an election for candidate `c`. Returns whether it won.
    pub fn run_election(&mut self, c: usize, now: Instant, dry_run_first: bool) -> bool {
        let term = self.nodes[c].term + 1;
        let cfg = self.nodes[c].config.clone();
        let (c_ts, c_t) = self.nodes[c].last_optime();
        let voters: Vec<usize> = cfg
            .members
            .iter()
            .filter(|m| m.votes > 0)
            .filter_map(|m| self.by_host(&m.host))
            .filter(|&v| self.reachable(c, v))
            .collect();
        let grants = |w: &World, v: usize, dry: bool| -> bool {
            let n = &w.nodes[v];
            if n.state == NodeState::Removed || n.config.set_name != cfg.set_name {
                return false;
            }
            // The candidate's config must not be older (version and term).
            if n.config.newer_than(&cfg) {
                return false;
            }
            if dry {
                if n.term >= term {
                    return false;
                }
            } else {
                if n.term > term {
                    return false;
                }
                if let Some((t, who)) = &n.voted {
                    if *t == term && who != &w.nodes[c].host {
                        return false;
                    }
                }
            }
            if n.data_bearing() {
                let (v_ts, v_t) = n.last_optime();
                if (v_t, v_ts) > (c_t, c_ts) {
                    return false;
                }
            }
            true
        };
        let count = |w: &World, dry: bool| -> i32 {
            voters
                .iter()
                .filter(|&&v| grants(w, v, dry))
                .map(|&v| cfg.member(&w.nodes[v].host).map_or(0, |m| m.votes))
                .sum()
        };
        if dry_run_first && count(self, true) < cfg.majority_votes() {
            return false;
        }
        let granted: Vec<usize> = voters
            .iter()
            .copied()
            .filter(|&v| grants(self, v, false))
            .collect();
        // Every voter that saw the request learns the new term.
        self.nodes[c].term = term;
        self.nodes[c].voted = Some((term, self.nodes[c].host.clone()));
        let votes: i32 = granted
            .iter()
            .map(|&v| cfg.member(&self.nodes[v].host).map_or(0, |m| m.votes))
            .sum();
        let chost = self.nodes[c].host.clone();
        for &v in &granted {
            if self.nodes[v].term < term {
                self.nodes[v].term = term;
                if self.nodes[v].state == NodeState::Primary {
                    self.step_down(v, now, None);
                }
            }
            self.nodes[v].voted = Some((term, chost.clone()));
        }
        if votes < cfg.majority_votes() {
            return false;
        }
        // Won: write the new-term no-op so the commit point can move in this term.
        let ts = self.next_ts();
        let n = &mut self.nodes[c];
        n.state = NodeState::Primary;
        n.stepping_down = false;
        n.last_majority_seen = now;
        n.election_date = Some(DateTime::now());
        n.touch();
        n.oplog.push(Entry {
            ts,
            t: term,
            wall: DateTime::now(),
            at: now,
            op: Op::Noop("new primary".into()),
        });
        n.first_op_len = n.oplog.len();
        // Step-up reconfig (`signalDrainComplete`): the config takes the new
        // term, same version — unless it came from a forced reconfig (-1).
        if n.config.term != -1 {
            n.config.term = term;
        }
        n.committed_in_prev_config = n.commit_len;
        self.next_heartbeat = now;
        true
    }

    /// Config commitment (`awaitConfigCommitment`, `$configMajority`): a
    /// majority of the voting members — arbiters included — that `i` can
    /// reach hold `i`'s config (same version and term).
    pub fn config_committed(&self, i: usize) -> bool {
        let cfg = &self.nodes[i].config;
        let have = cfg
            .members
            .iter()
            .filter(|m| m.votes > 0)
            .filter_map(|m| self.by_host(&m.host))
            .filter(|&j| j == i || self.reachable(i, j))
            .filter(|&j| self.nodes[j].config.same_version_and_term(cfg))
            .count();
        have as i32 >= cfg.majority_votes()
    }

    /// The oplog length that must be majority-committed in the current
    /// config before another reconfig (`getConfigOplogCommitmentOpTime`:
    /// the later of the commit point when the config was installed and the
    /// primary's first entry of its term).
    pub fn oplog_commitment_len(&self, i: usize) -> usize {
        let n = &self.nodes[i];
        n.committed_in_prev_config.max(n.first_op_len)
    }

    /// Whether the first `len` entries of `i`'s oplog are on the write
    /// majority (`$majority`: data-bearing voting members, arbiters never
    /// count) of `i`'s current config, by the members' last known positions.
    pub fn oplog_committed(&self, i: usize, len: usize) -> bool {
        let cfg = &self.nodes[i].config;
        let have = cfg
            .members
            .iter()
            .filter(|m| m.votes > 0 && !m.arbiter_only)
            .filter_map(|m| self.by_host(&m.host))
            .filter(|&j| common_prefix(&self.nodes[j].oplog, &self.nodes[i].oplog) >= len)
            .count();
        have >= cfg.write_majority()
    }

    /// `replSetGetConfig {commitmentStatus: true}` on primary `i`: the
    /// config and the oplog commitment conditions both hold.
    pub fn commitment_status(&self, i: usize) -> bool {
        self.config_committed(i) && self.oplog_committed(i, self.oplog_commitment_len(i))
    }

    /// Run the next heartbeat round at once: mongod restarts its heartbeats
    /// right after a reconfig, an election win or a step-down, so configs
    /// and terms spread without waiting a whole interval.
    pub fn heartbeat_now(&mut self) {
        self.next_heartbeat = Instant::now();
    }

    /// Heartbeat round: learn terms and configs from reachable peers, keep
    /// primaries honest about their majority, and start elections.
    pub fn heartbeat_tick(&mut self, now: Instant) -> bool {
        if now < self.next_heartbeat {
            return false;
        }
        let hb_ms = self
            .nodes
            .iter()
            .map(|n| n.config.heartbeat_ms)
            .min()
            .unwrap_or(2000)
            .max(1);
        self.next_heartbeat = now + Duration::from_millis(hb_ms);
        let n = self.nodes.len();
        let mut changed = false;
        // 1. terms and configs travel with heartbeats.
        for i in 0..n {
            if !self.nodes[i].alive {
                continue;
            }
            for j in 0..n {
                if i == j || !self.reachable(i, j) {
                    continue;
                }
                let host_j = self.nodes[j].host.clone();
                self.nodes[i].last_heartbeat.insert(host_j, DateTime::now());
                if self.nodes[j].config.set_name == self.nodes[i].config.set_name
                    && self.nodes[j].config.newer_than(&self.nodes[i].config)
                {
                    self.nodes[i].config = self.nodes[j].config.clone();
                    self.nodes[i].touch();
                    changed = true;
                }
                if self.nodes[j].term > self.nodes[i].term {
                    self.nodes[i].term = self.nodes[j].term;
                    if self.nodes[i].state == NodeState::Primary {
                        self.step_down(i, now, None);
                    }
                    changed = true;
                }
            }
            // Membership follows the installed config.
            let me = self.nodes[i].me().cloned();
            let want = match me {
                None => NodeState::Removed,
                Some(m) if m.arbiter_only => NodeState::Arbiter,
                Some(_) => match self.nodes[i].state {
                    NodeState::Primary => NodeState::Primary,
                    _ => NodeState::Secondary,
                },
            };
            if want != self.nodes[i].state {
                if self.nodes[i].state == NodeState::Primary {
                    self.step_down(i, now, None);
                }
                self.nodes[i].state = want;
                self.nodes[i].last_primary_seen = now;
                self.nodes[i].touch();
                changed = true;
            }
        }
        // 2. primaries that lost their majority step down.
        for i in 0..n {
            if !self.nodes[i].alive || self.nodes[i].state != NodeState::Primary {
                continue;
            }
            let cfg = &self.nodes[i].config;
            let seen: i32 = cfg
                .members
                .iter()
                .filter_map(|m| self.by_host(&m.host).map(|j| (j, m.votes)))
                .filter(|&(j, _)| self.reachable(i, j))
                .map(|(_, v)| v)
                .sum();
            if seen >= cfg.majority_votes() {
                self.nodes[i].last_majority_seen = now;
            } else if now.duration_since(self.nodes[i].last_majority_seen)
                >= Duration::from_millis(cfg.election_timeout_ms)
            {
                self.step_down(i, now, None);
                changed = true;
            }
        }
        // 3. elections and priority takeover.
        for i in 0..n {
            if !self.nodes[i].alive || self.nodes[i].state != NodeState::Secondary {
                continue;
            }
            let Some(me) = self.nodes[i].me().cloned() else {
                continue;
            };
            if !me.electable() || self.frozen(i, now) {
                self.nodes[i].step_up_requested = false;
                self.nodes[i].takeover_since = None;
                if self.visible_primary(i).is_some() {
                    self.nodes[i].last_primary_seen = now;
                }
                continue;
            }
            if self.nodes[i].step_up_requested {
                self.nodes[i].step_up_requested = false;
                if self.run_election(i, now, false) {
                    changed = true;
                    continue;
                }
            }
            let timeout = Duration::from_millis(self.nodes[i].config.election_timeout_ms);
            match self.visible_primary(i) {
                Some(p) => {
                    self.nodes[i].last_primary_seen = now;
                    if self.priority_takeover_due(i, p, &me, now, timeout) {
                        self.nodes[i].takeover_since = None;
                        if self.run_election(i, now, true) {
                            changed = true;
                        }
                    }
                }
                None => {
                    self.nodes[i].takeover_since = None;
                    if now.duration_since(self.nodes[i].last_primary_seen)
                        >= timeout + self.nodes[i].offset
                    {
                        if self.run_election(i, now, true) {
                            changed = true;
                        }
                        self.nodes[i].last_primary_seen = now;
                        let cfg = self.nodes[i].config.clone();
                        self.nodes[i].offset = self.random_offset(&cfg);
                    }
                }
            }
        }
        changed
    }

    /// Priority takeover (`TopologyCoordinator`, `getPriorityTakeoverDelay`):
    /// a member with a higher priority than the primary whose last applied
    /// write is within `priorityTakeoverFreshnessWindowSeconds` (2 s) of the
    /// primary's stands after `(rank + 1) × electionTimeout` plus the random
    /// election offset, where rank counts members of higher priority, so the
    /// most preferred member goes first.
    fn priority_takeover_due(
        &mut self,
        i: usize,
        p: usize,
        me: &MemberConfig,
        now: Instant,
        timeout: Duration,
    ) -> bool {
        let cfg = &self.nodes[i].config;
        let p_prio = cfg.member(&self.nodes[p].host).map_or(0.0, |m| m.priority);
        let wall = |n: &Node| n.oplog.last().map_or(0, |e| e.wall.timestamp_millis());
        let fresh = wall(&self.nodes[p]) - wall(&self.nodes[i]) <= 2000;
        if me.priority <= p_prio || !fresh {
            self.nodes[i].takeover_since = None;
            return false;
        }
        let rank = cfg
            .members
            .iter()
            .filter(|m| m.priority > me.priority)
            .count() as u32;
        let since = *self.nodes[i].takeover_since.get_or_insert(now);
        now.duration_since(since) >= timeout * (rank + 1) + self.nodes[i].offset
    }

    /// Replication round: secondaries roll back divergent history, then
    /// apply what their primary wrote at least `lag` ago; primaries move
    /// their commit point. Returns whether anything changed.
    pub fn replicate_tick(&mut self, now: Instant) -> bool {
        let n = self.nodes.len();
        let mut changed = false;
        for s in 0..n {
            let node = &self.nodes[s];
            if !node.alive || node.state != NodeState::Secondary || !node.data_bearing() {
                continue;
            }
            let Some(p) = self.visible_primary(s) else {
                if self.nodes[s].sync_source.take().is_some() {
                    changed = true;
                }
                continue;
            };
            let (src_log_len, src_commit, src_term) = {
                let pn = &self.nodes[p];
                (pn.oplog.len(), pn.commit_len, pn.term)
            };
            let common = common_prefix(&self.nodes[s].oplog, &self.nodes[p].oplog);
            let phost = self.nodes[p].host.clone();
            let sn = &mut self.nodes[s];
            if sn.sync_source.as_deref() != Some(phost.as_str()) {
                sn.sync_source = Some(phost);
                changed = true;
            }
            if src_term > sn.term {
                sn.term = src_term;
            }
            if common < sn.oplog.len() {
                let gone: Vec<Entry> = sn.oplog.drain(common..).collect();
                let inserts = gone
                    .iter()
                    .filter(|e| matches!(e.op, Op::Insert { .. }))
                    .count() as u64;
                let ids: Vec<(u64, i64)> = gone
                    .iter()
                    .filter(|e| matches!(e.op, Op::Insert { .. }))
                    .map(|e| (ts_u64(e.ts), e.t))
                    .collect();
                sn.rolled_back_ops += gone.len() as u64;
                sn.commit_len = sn.commit_len.min(common);
                sn.rebuild();
                self.rolled_back_ids.extend(ids);
                self.rolled_back_inserts = self.rolled_back_ids.len() as u64;
                tracing::info!(member = %self.nodes[s].name, entries = gone.len(), inserts, "rollback");
                changed = true;
            }
            let lag = self.nodes[s].lag;
            while self.nodes[s].oplog.len() < src_log_len {
                let next = self.nodes[p].oplog[self.nodes[s].oplog.len()].clone();
                if now.duration_since(next.at) < lag {
                    break;
                }
                let sn = &mut self.nodes[s];
                sn.oplog.push(next);
                let idx = sn.oplog.len() - 1;
                sn.apply(idx);
                changed = true;
            }
            let sn = &mut self.nodes[s];
            let c = sn.commit_len.max(src_commit.min(sn.oplog.len()));
            if c != sn.commit_len {
                sn.commit_len = c;
                changed = true;
            }
        }
        for p in 0..n {
            let pn = &self.nodes[p];
            if !pn.alive || pn.state != NodeState::Primary {
                continue;
            }
            let cfg = &pn.config;
            let mut matched: Vec<usize> = cfg
                .members
                .iter()
                .filter(|m| m.votes > 0 && !m.arbiter_only)
                .filter_map(|m| self.by_host(&m.host))
                .map(|j| common_prefix(&self.nodes[j].oplog, &pn.oplog))
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            let k = cfg.write_majority();
            if k == 0 || matched.len() < k {
                continue;
            }
            let cand = matched[k - 1];
            if cand > pn.commit_len && pn.oplog[cand - 1].t == pn.term {
                self.nodes[p].commit_len = cand;
                changed = true;
            }
        }
        changed
    }

    /// Insert `docs` into `ns` on primary `i`.
    pub fn insert(
        &mut self,
        i: usize,
        ns: &str,
        docs: Vec<Document>,
        ordered: bool,
        txn: Option<(Vec<u8>, i64)>,
    ) -> Result<InsertResult, CmdError> {
        let now = Instant::now();
        {
            let n = &self.nodes[i];
            if n.state != NodeState::Primary || n.stepping_down {
                return Err(CmdError::not_primary());
            }
        }
        let mut res = InsertResult {
            n: 0,
            write_errors: Vec::new(),
            wait_len: self.nodes[i].oplog.len(),
            term: self.nodes[i].term,
        };
        for (k, mut d) in docs.into_iter().enumerate() {
            let key = txn.as_ref().map(|(l, t)| (l.clone(), *t, k as i32));
            if let Some(idx) = key.as_ref().and_then(|key| self.nodes[i].txns.get(key)) {
                // A retry of a statement that already executed.
                res.n += 1;
                res.wait_len = res.wait_len.max(idx + 1);
                continue;
            }
            if !d.contains_key("_id") {
                let mut nd = doc! { "_id": ObjectId::new() };
                nd.extend(d);
                d = nd;
            }
            let idk = id_key(d.get("_id").expect("_id set above"));
            if self.nodes[i]
                .data
                .get(ns)
                .is_some_and(|c| c.ids.contains_key(&idk))
            {
                res.write_errors.push((
                    k as i32,
                    11000,
                    format!(
                        "E11000 duplicate key error collection: {ns} index: _id_ dup key: {{ _id: {} }}",
                        d.get("_id").expect("_id set above")
                    ),
                ));
                if ordered {
                    break;
                }
                continue;
            }
            let ts = self.next_ts();
            let node = &mut self.nodes[i];
            node.oplog.push(Entry {
                ts,
                t: node.term,
                wall: DateTime::now(),
                at: now,
                op: Op::Insert {
                    ns: ns.to_string(),
                    doc: d,
                    txn: key,
                },
            });
            let idx = node.oplog.len() - 1;
            node.apply(idx);
            res.n += 1;
            res.wait_len = idx + 1;
        }
        Ok(res)
    }

    /// Whether a `w:"majority"` wait for `mark`, written in `term` on `i`, is
    /// done (`Some(Ok)`), failed (`Some(Err)`) or still pending (`None`).
    /// Done only while `i` still holds that very entry inside its commit
    /// point; a step-down that is seen first fails the wait, as mongod
    /// interrupts write-concern waiters when it leaves the primary state.
    pub fn majority_status(
        &self,
        i: usize,
        mark: &WriteMark,
        term: i64,
    ) -> Option<Result<(), CmdError>> {
        let n = &self.nodes[i];
        if mark.committed_on(n) {
            return Some(Ok(()));
        }
        self.stepped_down_status(i, term)
    }

    /// Whether a `w: N` wait for `mark`, written in `term` on `i`, is done,
    /// failed or pending: done once `need` data-bearing members hold the
    /// entry itself (not merely as many entries).
    pub fn w_status(
        &self,
        i: usize,
        mark: &WriteMark,
        term: i64,
        need: usize,
    ) -> Option<Result<(), CmdError>> {
        let have = self
            .nodes
            .iter()
            .filter(|o| o.data_bearing() && mark.held_by(o))
            .count();
        if have >= need && mark.held_by(&self.nodes[i]) {
            return Some(Ok(()));
        }
        self.stepped_down_status(i, term)
    }

    /// `Some(Err(11602))` once `i` is no longer the primary of `term`.
    fn stepped_down_status(&self, i: usize, term: i64) -> Option<Result<(), CmdError>> {
        let n = &self.nodes[i];
        if !n.alive || n.state != NodeState::Primary || n.term != term {
            return Some(Err(CmdError::new(
                11602,
                "InterruptedDueToReplStateChange",
                "operation was interrupted because the node stepped down while waiting for write concern",
            )));
        }
        None
    }

    /// Reset volatile state after a restart.
    pub fn revive(&mut self, i: usize, now: Instant) {
        let n = &mut self.nodes[i];
        n.alive = true;
        n.state = match n.me() {
            None => NodeState::Removed,
            Some(m) if m.arbiter_only => NodeState::Arbiter,
            Some(_) => NodeState::Secondary,
        };
        n.stepping_down = false;
        n.frozen_until = None;
        n.last_primary_seen = now;
        n.takeover_since = None;
        n.process_id = ObjectId::new();
        n.tv_counter = 0;
    }

    /// Stop a member's process (its data survives, as with a journaled mongod).
    pub fn kill(&mut self, i: usize, now: Instant) {
        self.step_down(i, now, None);
        let n = &mut self.nodes[i];
        n.alive = false;
        n.sync_source = None;
        n.touch();
        n.conn_gen += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two data-bearing members in east and in west, an arbiter in a third
    /// region (the acceptance layout), all reachable, nobody primary yet.
    fn world() -> World {
        let specs = [
            ("east-1", "east", false),
            ("east-2", "east", false),
            ("west-1", "west", false),
            ("west-2", "west", false),
            ("witness-1", "witness", true),
        ];
        let members = specs
            .iter()
            .enumerate()
            .map(|(k, (name, _, arbiter))| MemberConfig {
                id: k as i32,
                host: format!("{name}:27017"),
                priority: if *arbiter { 0.0 } else { 1.0 },
                votes: 1,
                arbiter_only: *arbiter,
                hidden: false,
                tags: Document::new(),
            })
            .collect();
        let config = ReplConfig {
            set_name: "rs0".into(),
            version: 1,
            term: 0,
            members,
            heartbeat_ms: 50,
            election_timeout_ms: 300,
            replica_set_id: ObjectId::new(),
        };
        let nodes = specs
            .iter()
            .map(|(name, region, _)| {
                (
                    name.to_string(),
                    region.to_string(),
                    format!("{name}:27017"),
                )
            })
            .collect();
        World::new(nodes, config)
    }

    fn insert(w: &mut World, p: usize, id: i64) -> (WriteMark, i64) {
        let res = w
            .insert(p, "app.records", vec![doc! { "_id": id }], true, None)
            .expect("insert on the primary");
        (res.mark(&w.nodes[p]), res.term)
    }

    /// The mechanism behind the lost `w:"majority"` write: the primary
    /// writes, the write reaches nobody, another member wins an election
    /// (as a priority takeover under load does), the old primary rolls the
    /// write back, replays the new primary's entries past the same oplog
    /// length and learns a commit point beyond it — all before the waiter
    /// looks again. A wait keyed on the length alone then acknowledged a
    /// write that no member has.
    #[test]
    fn a_rolled_back_write_is_never_majority_acknowledged() {
        let mut w = world();
        let now = Instant::now();
        assert!(
            w.run_election(0, now, false),
            "east-1 wins the first election"
        );
        w.replicate_tick(now);
        w.replicate_tick(now);
        assert_eq!(
            w.nodes[0].commit_len, 1,
            "the new-primary no-op is committed"
        );

        let (committed, term) = insert(&mut w, 0, 1);
        w.replicate_tick(now);
        w.replicate_tick(now);
        assert_eq!(w.majority_status(0, &committed, term), Some(Ok(())));

        // The next write stays on east-1 alone.
        let (lost, term) = insert(&mut w, 0, 2);
        assert_eq!(w.majority_status(0, &lost, term), None, "still waiting");
        assert!(
            w.run_election(2, now, false),
            "west-1 wins without the write"
        );
        w.heartbeat_tick(now);
        assert_eq!(
            w.nodes[0].state,
            NodeState::Secondary,
            "east-1 saw the new term"
        );
        w.replicate_tick(now);
        w.replicate_tick(now);
        let e1 = &w.nodes[0];
        assert!(
            e1.commit_len >= lost.len && !lost.held_by(e1),
            "the scenario: east-1 rolled the write back and its commit point passed its old length"
        );
        assert_eq!(w.rolled_back_inserts, 1);
        assert!(
            !w.nodes.iter().any(|n| lost.held_by(n)),
            "no member has the write"
        );

        match w.majority_status(0, &lost, term) {
            Some(Err(e)) => assert_eq!(e.code, 11602),
            other => panic!("a rolled-back write was answered {other:?}"),
        }
        match w.w_status(0, &lost, term, 2) {
            Some(Err(e)) => assert_eq!(e.code, 11602),
            other => panic!("a rolled-back write was answered {other:?} for w:2"),
        }
        // What was committed before the election stays acknowledged.
        assert!(committed.committed_on(&w.nodes[0]));
        assert!(committed.committed_on(&w.nodes[2]));
    }
}
