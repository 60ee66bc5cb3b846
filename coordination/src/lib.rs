//! Coordination backends for Switchyard: who leads, with which fencing
//! token, and the shared state a new leader needs to resume an execution the
//! old one started.
//!
//! A server that wants to issue operations must hold a [`Leadership`]: won
//! from the backend by [`Coordinator::try_campaign`] (or the looping helper
//! [`Coordinator::campaign`]), carrying the backend's **fencing token**, the
//! **remaining lease**, and a **cancellation signal** that fires the moment
//! the lease is lost or lapses. Everything a leader writes (journal entries,
//! the running-execution record) takes the leadership as an argument and is
//! refused by the backend itself once that leadership has been superseded —
//! a deposed leader cannot write, whatever it believes.
//!
//! The trait is small on purpose (as `object_store` is): a handful of
//! required primitives each backend implements atomically, and provided
//! helpers built only on them. Where to find each concept:
//! - [`leadership`]: [`Leadership`] (token, lease, signal) and the
//!   [`LeaseKeeper`] a backend renews it through.
//! - [`error`]: [`CoordinationError`], typed.
//! - [`etcd`], [`consul`]: the distributed backends (the embedded file
//!   backend for one machine lives in the coordinator, beside the `flock` and
//!   the local journal it wraps).
//! - [`suite`]: the behaviour suite every backend must pass.
//!
//! # Fencing tokens
//! A token is a `u64` the backend hands out with each won election, strictly
//! greater than every token handed out before it **by any server** using the
//! same backend and key prefix: etcd's create revision of the leader key,
//! Consul's `ModifyIndex` of the lock key at acquisition, the file backend's
//! per-directory counter. The coordinator journals it and passes it to every
//! mutating store operation; stores that can hold it refuse lower ones.
//!
//! # Journal
//! Each execution's journal is a sequence of opaque entries (one encoded
//! journal record each), numbered from 1 without gaps. Entry `n` is written
//! with [`Coordinator::append`]`(.., n, ..)`, which succeeds only if entry `n`
//! does not exist yet **and** the writer's leadership is still the current
//! one, checked atomically by the backend. So two writers can never both
//! append entry `n`, and a leader deposed by a partition cannot append even
//! where nobody else has written yet.

#![forbid(unsafe_code)]

pub mod consul;
pub mod error;
pub mod etcd;
pub mod leadership;
pub mod suite;

pub use error::{CoordinationError, ErrorKind};
pub use leadership::{Leadership, LeaseKeeper};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Where the distributed backends keep things, under a prefix: the same
/// layout on etcd and Consul (see their modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (without a trailing `/`).
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The leader key (lock).
    pub(crate) fn leader(&self) -> String {
        self.key("leader")
    }

    /// Journal entry `seq` of `execution`; zero-padded so that key order
    /// is sequence order.
    pub(crate) fn entry(&self, execution: &str, seq: u64) -> String {
        self.key(&format!("executions/{execution}/{seq:020}"))
    }

    /// The prefix of `execution`'s entries.
    pub(crate) fn entries(&self, execution: &str) -> String {
        self.key(&format!("executions/{execution}/"))
    }

    /// The prefix of the execution index.
    pub(crate) fn ids(&self) -> String {
        self.key("execution-ids/")
    }

    /// The key whose writes hand out execution tokens.
    pub(crate) fn token(&self) -> String {
        self.key("token")
    }

    /// The running-execution record.
    pub(crate) fn running(&self) -> String {
        self.key("running")
    }
}

/// Result of a coordination call.
pub type Result<T, E = CoordinationError> = std::result::Result<T, E>;

/// A server taking part in the election: what `GET /v1/leader` reports when
/// it leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable, unique server name (`--node`).
    pub name: String,
    /// Base URL clients and other servers reach it at (`http://10.0.0.5:8080`).
    pub url: String,
}

/// The current leader as the backend records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Who leads.
    pub node: Node,
    /// The fencing token of its leadership.
    pub token: u64,
}

/// The execution the leader is running right now, recorded in the backend so
/// that a new leader knows which execution to resume, and so that a second
/// start is refused (HTTP 409) naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningExecution {
    /// Execution id (the journal it writes).
    pub id: String,
    /// Server that recorded it (the one running it now).
    pub node: String,
    /// Fencing token of that server's leadership.
    pub token: u64,
    /// When the execution started (ms since the Unix epoch).
    pub started_ms: u64,
}

/// A value read together with the backend's version of it, for a later
/// compare-and-set (etcd mod revision, Consul `ModifyIndex`, file counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Opaque version; only ever compared for equality by the same backend.
    pub version: u64,
}

/// A coordination backend: leader election with fencing tokens, the
/// execution journal and the running-execution record, all in one engine so
/// that a new leader finds everything the old one wrote.
///
/// # Contract every implementation keeps (checked by [`suite`])
/// - **One leader.** At most one [`Leadership`] per backend and key prefix is
///   current at any time; a `try_campaign` while another is current returns
///   `Ok(None)`.
/// - **Increasing tokens.** Each won campaign gets a token strictly greater
///   than every earlier one, across all servers and restarts.
/// - **Lease.** A leadership lasts while its lease is renewed; the backend
///   renews it in the background. When a renewal is refused or the lease
///   lapses (the renewal could not reach the backend before the lease's
///   remaining time ran out), the leadership's signal fires
///   ([`Leadership::lost`]) — from the local clock, without waiting for the
///   backend to say so, and never later than the backend can hand the
///   leadership to someone else.
/// - **Fenced writes.** [`append`](Coordinator::append) and
///   [`swap_running`](Coordinator::swap_running) succeed only while the
///   given leadership is the backend's current one, checked in the same
///   atomic operation as the write; otherwise they fail with
///   [`CoordinationError::NotLeader`].
/// - **Typed failures.** A backend that cannot be reached fails with
///   [`CoordinationError::Unavailable`] (temporary), never with a guess.
#[async_trait]
pub trait Coordinator: Send + Sync + fmt::Debug {
    /// The backend as a user wrote it (`etcd://127.0.0.1:2379`,
    /// `consul://127.0.0.1:8500`, `file:/var/lib/switchyard`), for messages
    /// and `/metrics`. Never contains a secret.
    fn describe(&self) -> String;

    /// The lease time-to-live leaderships from this backend get: how long a
    /// leader keeps its leadership without a successful renewal, and so an
    /// upper bound on how long a dead leader blocks the next one (Consul may
    /// take up to twice this; see its module).
    fn lease_ttl(&self) -> Duration;

    /// Try once to become the leader as `me`. `Ok(Some(_))`: we lead, with a
    /// fresh token, and the backend renews the lease until the leadership is
    /// lost, resigned or dropped. `Ok(None)`: someone else leads (or, for
    /// Consul, the lock-delay after an invalidated leader has not passed).
    async fn try_campaign(&self, me: &Node) -> Result<Option<Leadership>>;

    /// Give the leadership up now (revoke the lease / destroy the session /
    /// unlock), so another server need not wait for the lease to lapse.
    /// Dropping a [`Leadership`] does the same, best effort, in the background.
    async fn resign(&self, leadership: Leadership) -> Result<()>;

    /// The current leader as the backend records it, `None` when nobody leads.
    async fn leader(&self) -> Result<Option<LeaderInfo>>;

    /// A fencing token for one execution run under `leadership`: strictly
    /// greater than every token this backend handed out before (leadership
    /// tokens and execution tokens, to any server), obtained with a fenced
    /// write, so a deposed leader gets none ([`CoordinationError::NotLeader`]).
    /// Stores refuse an equal token from a different execution, so each
    /// execution a leader runs needs a token of its own (etcd: the revision
    /// of a write to `P/token`; Consul: that key's `ModifyIndex`; file: the
    /// directory's counter, bumped under the held lock).
    async fn fresh_token(&self, leadership: &Leadership) -> Result<u64>;

    /// Append entry number `seq` (1-based) to `execution`'s journal: succeeds
    /// only if entries `1..seq` exist, entry `seq` does not, and `leadership`
    /// is still current — all checked atomically with the write. Entry 1
    /// creates the execution. Fails with [`CoordinationError::SeqTaken`] when
    /// entry `seq` exists (someone else appended: re-read before deciding
    /// anything), [`CoordinationError::NotLeader`] when deposed.
    ///
    /// An entry is durable in the backend (etcd: committed by a quorum;
    /// Consul: Raft-applied; file: fsync'd) when this returns `Ok`.
    async fn append(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
    ) -> Result<()>;

    /// [`append`](Coordinator::append) of an entry that need not be durable
    /// yet: the next `append` or [`sync`](Coordinator::sync) of the same
    /// execution makes it durable together with itself. For the journal's
    /// records a resume can do without (a read-only operation's intent, an
    /// outcome, a passed checkpoint). The entry is visible to readers at
    /// once. The default is a durable append.
    async fn append_lazy(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
    ) -> Result<()> {
        self.append(leadership, execution, seq, entry).await
    }

    /// Make every entry of `execution` appended so far durable. The
    /// default does nothing: every append of a backend without
    /// [`append_lazy`](Coordinator::append_lazy) of its own is durable.
    async fn sync(&self, leadership: &Leadership, execution: &str) -> Result<()> {
        let _ = (leadership, execution);
        Ok(())
    }

    /// Every entry of `execution`'s journal, in sequence order (index 0 is
    /// entry 1). [`CoordinationError::NotFound`] when it has none.
    async fn entries(&self, execution: &str) -> Result<Vec<Vec<u8>>>;

    /// Every execution id with a journal, in lexical order (ids begin with a
    /// UTC timestamp, so this is start order).
    async fn executions(&self) -> Result<Vec<String>>;

    /// The running-execution record and its version, `None` when no
    /// execution is recorded as running.
    async fn running(&self) -> Result<Option<Versioned<RunningExecution>>>;

    /// Replace the running-execution record: `expected` is the version read
    /// with [`running`](Coordinator::running) (`None`: there must be no
    /// record), `new` the record to write (`None`: delete it). Fails with
    /// [`CoordinationError::Changed`] when the record is no longer at
    /// `expected`, [`CoordinationError::NotLeader`] when deposed.
    async fn swap_running(
        &self,
        leadership: &Leadership,
        expected: Option<u64>,
        new: Option<&RunningExecution>,
    ) -> Result<()>;

    // ---- provided helpers, built only on the primitives above ----

    /// Campaign until we lead: [`try_campaign`](Coordinator::try_campaign)
    /// every `retry` until it wins. Cancel-safe: dropping the future loses
    /// nothing (a leadership is only created when returned).
    async fn campaign(&self, me: &Node, retry: Duration) -> Result<Leadership> {
        loop {
            match self.try_campaign(me).await {
                Ok(Some(l)) => return Ok(l),
                Ok(None) => {}
                // A backend blip must not stop a follower from campaigning.
                Err(e) if e.is_temporary() => {
                    tracing::warn!(backend = %self.describe(), error = %e, "campaign");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Append `entry` after the last one: reads the journal's length and
    /// appends at the next sequence number. For a writer that owns the
    /// execution; a [`CoordinationError::SeqTaken`] means it does not.
    async fn append_next(
        &self,
        leadership: &Leadership,
        execution: &str,
        entry: &[u8],
    ) -> Result<u64> {
        let len = match self.entries(execution).await {
            Ok(e) => e.len() as u64,
            Err(CoordinationError::NotFound { .. }) => 0,
            Err(e) => return Err(e),
        };
        self.append(leadership, execution, len + 1, entry).await?;
        Ok(len + 1)
    }

    /// Record `run` as the running execution, unless another execution is
    /// recorded: then [`CoordinationError::Busy`] naming it (the API's 409).
    /// Re-recording the same execution id (a new leader taking over the
    /// execution, with its own token) succeeds.
    async fn claim_running(&self, leadership: &Leadership, run: &RunningExecution) -> Result<()> {
        let current = self.running().await?;
        if let Some(cur) = &current {
            if cur.value.id != run.id {
                return Err(CoordinationError::Busy {
                    running: cur.value.clone(),
                });
            }
        }
        match self
            .swap_running(leadership, current.map(|c| c.version), Some(run))
            .await
        {
            // Lost a race with another writer: report who won.
            Err(CoordinationError::Changed { .. }) => match self.running().await? {
                Some(cur) if cur.value.id != run.id => {
                    Err(CoordinationError::Busy { running: cur.value })
                }
                _ => Err(CoordinationError::Changed {
                    what: "running-execution record".into(),
                }),
            },
            other => other,
        }
    }

    /// Remove the running-execution record if it names `execution` (the
    /// execution ended); nothing to do when it names none or another.
    async fn clear_running(&self, leadership: &Leadership, execution: &str) -> Result<()> {
        match self.running().await? {
            Some(cur) if cur.value.id == execution => {
                self.swap_running(leadership, Some(cur.version), None).await
            }
            _ => Ok(()),
        }
    }
}
