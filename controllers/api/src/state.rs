//! Observed state: what a controller saw when it last looked at a store.

use serde::{Deserialize, Serialize};
use std::fmt;
use switchyard_topology::StoreKind;

/// The role a member was observed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// Data-bearing follower that can be promoted.
    Secondary,
    /// Votes, holds no data, never primary.
    Arbiter,
    /// Follower that never votes and is never promoted.
    ReadOnly,
    /// Known to be down / unreachable.
    Down,
    /// Reachable but in a state the controller cannot classify.
    Unknown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Arbiter => "arbiter",
            Role::ReadOnly => "read-only",
            Role::Down => "down",
            Role::Unknown => "unknown",
        })
    }
}

/// A store's own term: the number its replication bumps on every promotion
/// (PostgreSQL's timeline, MongoDB's and Redis's term, EventStoreDB's epoch
/// number — EventStoreDB's own word). Never the coordinator's
/// [`crate::FencingToken`], which comes from the lock, not the store.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Term(pub u64);

impl Term {
    /// The number, for stores and messages that keep it as one.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A position's history: the term its data was written in (a PostgreSQL
/// LSN's timeline, a MongoDB optime's `t`). The same number space as the
/// store's [`Term`], but a property of the position: a standby still on an
/// old history reports it while the store's term has moved on.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct History(pub u64);

impl History {
    /// The number, for stores and messages that keep it as one.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The history a position written in term `t` belongs to.
    pub fn of(t: Term) -> Self {
        History(t.0)
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A replication position: WAL LSN, oplog optime, writer checkpoint.
///
/// `history` is the term it was written in; `offset` grows monotonically
/// across histories for every store we support, so "has replayed at least X"
/// is `offset >= X.offset`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct Position {
    /// The term the position was written in (journals written before the
    /// rename call it `epoch`).
    #[serde(alias = "epoch")]
    pub history: History,
    /// Monotonic offset (bytes for WAL, encoded timestamp for oplog).
    pub offset: u64,
}

impl Position {
    /// Whether `self` has reached (replayed at least) `target`.
    pub fn reached(&self, target: &Position) -> bool {
        self.offset >= target.offset
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.offset, self.history)
    }
}

/// How far a member is behind its primary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Bytes of WAL/oplog not yet replayed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Time behind the primary in milliseconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

impl Lag {
    /// Whether this lag is within both bounds (an absent bound always holds,
    /// an unknown measurement never satisfies a present bound).
    pub fn within(&self, max_bytes: Option<u64>, max_millis: Option<u64>) -> bool {
        let ok = |bound: Option<u64>, seen: Option<u64>| match bound {
            None => true,
            Some(b) => seen.is_some_and(|s| s <= b),
        };
        ok(max_bytes, self.bytes) && ok(max_millis, self.millis)
    }
}

/// One member as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    /// Member name from the topology.
    pub name: String,
    /// Region from the topology.
    pub region: String,
    /// Role as observed.
    pub role: Role,
    /// Whether the controller could talk to it.
    pub reachable: bool,
    /// Last replayed / written position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Lag behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
    /// Member it replicates from right now, observed on the live
    /// replication stream (never the configured upstream alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<String>,
    /// Follower: whether its replication stream is live right now
    /// (PostgreSQL: the WAL receiver streams from the primary). `Some(false)`
    /// is a reachable follower that receives nothing: not healthy. `None`:
    /// the store cannot tell, or the member is not a follower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating: Option<bool>,
    /// Refuses writes because Switchyard (or an operator) fenced it. For an
    /// unreachable member only together with [`MemberState::fence_evidence`]:
    /// "cannot be reached" alone proves nothing (it may be taking writes
    /// behind a partition).
    #[serde(default)]
    pub fenced: bool,
    /// Why a member that cannot be reached over its protocol is known to be
    /// fenced: durable state the controller read just now through another
    /// path (PostgreSQL: its data directory, through the host's
    /// `extra.controldata` hook, shows a clean shutdown and
    /// `standby.signal`, so it is stopped and can only start read-only).
    /// `None` for reachable members, whose `fenced` is observed directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_evidence: Option<String>,
    /// Election priority, where the store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    /// Votes, where the store has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<u32>,
    /// Free-form detail for operators (state string, error text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Reachable again, but the store leaves it out until a `Rejoin` brings
    /// it back (Cosmos DB: a location taken offline by a forced failover
    /// whose endpoint answers again). Observed, never assumed: the planner
    /// rejoins such a member even when the store is already primary in the
    /// target, where it would otherwise find nothing to do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaits_rejoin: bool,
}

impl MemberState {
    /// A member that could not be reached.
    pub fn unreachable(name: &str, region: &str, detail: impl Into<String>) -> Self {
        MemberState {
            name: name.to_string(),
            region: region.to_string(),
            role: Role::Down,
            reachable: false,
            position: None,
            lag: None,
            following: None,
            replicating: None,
            fenced: false,
            fence_evidence: None,
            priority: None,
            votes: None,
            detail: Some(detail.into()),
            awaits_rejoin: false,
        }
    }
}

/// A store as observed at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedState {
    /// Store name from the topology.
    pub store: String,
    /// Kind of store.
    pub kind: StoreKind,
    /// The store's own term (timeline, term): bumps on every promotion.
    /// Older output calls it `epoch`.
    #[serde(default, alias = "epoch", skip_serializing_if = "Option::is_none")]
    pub term: Option<Term>,
    /// Configuration version (MongoDB replica set config version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
    /// Every member in topology order.
    pub members: Vec<MemberState>,
}

impl ObservedState {
    /// Members observed as primary (more than one means split brain).
    pub fn primaries(&self) -> impl Iterator<Item = &MemberState> {
        self.members.iter().filter(|m| m.role == Role::Primary)
    }

    /// The single primary, if exactly one is observed.
    pub fn primary(&self) -> Option<&MemberState> {
        let mut it = self.primaries();
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// The primary every other member must follow: with more than one
    /// writable member (a split brain) the one whose position is on the
    /// highest history (timeline, term), then the furthest. The others are
    /// stale.
    pub fn newest_primary(&self) -> Option<&MemberState> {
        self.primaries()
            .max_by_key(|m| m.position.map(|p| (p.history, p.offset)))
    }

    /// Primaries other than [`ObservedState::newest_primary`]: writable
    /// members left over from an earlier history (empty without a split brain).
    pub fn stale_primaries(&self) -> Vec<&MemberState> {
        let newest = self.newest_primary().map(|m| m.name.as_str());
        self.primaries()
            .filter(|m| Some(m.name.as_str()) != newest)
            .collect()
    }

    /// Region of the single primary.
    pub fn primary_region(&self) -> Option<&str> {
        self.primary().map(|m| m.region.as_str())
    }

    /// Look a member up by name.
    pub fn member(&self, name: &str) -> Option<&MemberState> {
        self.members.iter().find(|m| m.name == name)
    }
}
