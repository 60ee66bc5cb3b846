//! Switchyard controller for Redis replication, failed over by Switchyard
//! alone or together with Redis Sentinel, through the `redis` crate.
//!
//! # Construction
//! [`RedisController::from_store`] validates a topology store (see
//! [`RedisConfigBuilder::build`]): data members need `host` = `ip:port`
//! exactly as replicas report their master; members with `sentinel = true`
//! are the store's Sentinels, which monitor the master under
//! `settings.sentinel_master` (default: the store's name). The password
//! comes from `connection.password_env` and never reaches `Debug`.
//!
//! # How the contract maps onto Redis
//! - `observe`: `ROLE`, `INFO replication`, `CONFIG GET
//!   min-replicas-to-write replica-priority` and the controller's record on
//!   every member; `SENTINEL GET-MASTER-ADDR-BY-NAME`/`MASTER`/`REPLICAS`/
//!   `SENTINELS`/`CKQUORUM` on every Sentinel. A Sentinel is healthy
//!   (`arbiter`) only when it names the member whose `ROLE` says master.
//! - `Fence`: record the fencing token, then `CONFIG SET
//!   min-replicas-to-write` to an impossible count (every write is refused
//!   with `-NOREPLICAS`, observable, kept until Unfence/Rejoin) and `CLIENT
//!   PAUSE WRITE` (writers wait instead of failing; bounded, see fence.rs).
//! - `CapturePosition`/`WaitForPosition`: the fenced master's
//!   `master_repl_offset`; the target's `slave_repl_offset`.
//! - `Promote{Planned}`: without Sentinel `FAILOVER TO host port TIMEOUT`;
//!   with Sentinel `replica-priority 0` on every other replica, `SENTINEL
//!   FAILOVER`, and a wait until every Sentinel and every member agree.
//! - `Promote{Forced}`: the replica of the target region with the highest
//!   offset (`REPLICAOF NO ONE`, or with Sentinel the same steering as
//!   planned); when the Sentinels already failed over, from where they went.
//!   Refused beyond `max_lag_bytes` (last observation with the master up)
//!   unless data loss is accepted; the outcome estimates the loss.
//! - `RepointFollowers`/`Rejoin`: `REPLICAOF` the master; a former master
//!   still claiming the role is fenced first, so it never serves as a second
//!   master; fenced replicas get their own `min-replicas-to-write` back.
//! - `MakeSticky` (Sentinel only): `replica-priority` preferring the target
//!   region, so Sentinel's next failover lands there.
//!
//! The coordinator's fencing token is kept on the master in the hash
//! `switchyard:<store>` (written by a script that refuses a lower token),
//! checked before every mutating operation; see token.rs and docs/redis.md.

mod client;
pub mod config;
mod error;
mod fence;
mod followers;
mod observe;
mod promote;
mod readiness;
mod sticky;
mod token;

pub use config::{MemberSpec, RedisConfig, RedisConfigBuilder};

use async_trait::async_trait;
use client::Connections;
use error::RedisError;
use observe::Snapshot;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard_controller::{
    Capability, Controller, Error, ErrorKind, LastKnown, ObservedState, OpContext, Operation,
    Outcome, Priorities, Remembered, Result, StoreKind, TokenRecord,
};
use switchyard_topology::Store;

/// The Redis controller for one store.
pub struct RedisController {
    cfg: RedisConfig,
    conns: Connections,
    /// The last observation with a master up: each replica's lag in bytes
    /// (in memory, and in the state directory when there is one, so a fresh
    /// process deciding a forced failover has it too).
    last_known: Remembered<Evidence>,
}

/// What a forced failover judges a candidate by once the master is gone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Evidence {
    /// The master of that observation.
    pub(crate) master: String,
    /// Bytes each replica following it was behind.
    pub(crate) lag_bytes: BTreeMap<String, u64>,
}

impl std::fmt::Debug for RedisController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // RedisConfig's Debug redacts the password.
        f.debug_struct("RedisController")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RedisController {
    /// Build from a topology store (see the crate docs for what is required).
    pub fn from_store(store: &Store) -> Result<Self> {
        let cfg = RedisConfigBuilder::new(store)
            .build()
            .map_err(|e| e.into_error(&store.name))?;
        Ok(Self::new(cfg))
    }

    /// Like [`RedisController::from_store`], keeping the last-known state
    /// (the evidence of a later forced failover) in `state_dir`.
    pub fn from_store_in(store: &Store, state_dir: Option<&Path>) -> Result<Self> {
        let mut c = Self::from_store(store)?;
        c.last_known = Remembered::new(LastKnown::in_state_dir(state_dir, &store.name));
        Ok(c)
    }

    /// Build from a validated config.
    pub fn new(cfg: RedisConfig) -> Self {
        RedisController {
            conns: Connections::new(&cfg),
            cfg,
            last_known: Remembered::new(LastKnown::none()),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// What a controller for a store with or without Sentinels supports.
    pub fn capabilities(sentinel_managed: bool) -> Capability {
        let c = Capability::none()
            .with_planned_switchover()
            .with_forced_failover()
            .with_fencing()
            .with_positions()
            .with_repoint()
            .with_rejoin()
            .with_lag_bound()
            .with_chosen_candidate();
        // replica-priority steers Sentinel's own failovers (CONFIG REWRITE
        // persists it); without Sentinel nothing reads it.
        if sentinel_managed {
            c.with_sticky_priorities(Priorities::Durable)
        } else {
            c
        }
    }

    pub(crate) fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> Error {
        Error::new(kind, &self.cfg.store, msg)
    }

    /// Run a command on a member or Sentinel, as the public error.
    pub(crate) async fn run_cmd<T: redis::FromRedisValue>(
        &self,
        m: &MemberSpec,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.conns
            .query(m, cmd)
            .await
            .map_err(|e: RedisError| e.into_error(&self.cfg.store))
    }

    /// Observe until `cond` holds, or fail with `Timeout` saying `what`.
    pub(crate) async fn wait_snapshot<F>(
        &self,
        timeout: Duration,
        what: &str,
        cond: F,
    ) -> Result<Snapshot>
    where
        F: Fn(&Snapshot) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.snapshot().await;
            if cond(&snap) {
                return Ok(snap);
            }
            if Instant::now() > deadline {
                return Err(self.err(
                    ErrorKind::Timeout,
                    format!("{what} not reached within {timeout:?}"),
                ));
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    fn check_region(&self, region: &str) -> Result<()> {
        if self.cfg.members.iter().any(|m| m.region == region) {
            Ok(())
        } else {
            Err(self.err(
                ErrorKind::Config,
                format!("store has no data member in region {region}"),
            ))
        }
    }
}

/// Redis's notation: the replication offset (`master_repl_offset`, bytes)
/// and the store's term (Sentinel's config-epoch, or without Sentinel the
/// term Switchyard records with each promotion).
pub const NOTATION: switchyard_controller::Notation = switchyard_controller::Notation {
    term: "term",
    position: |p| format!("repl offset {} in term {}", p.offset, p.history),
};

#[async_trait]
impl Controller for RedisController {
    fn store(&self) -> &str {
        &self.cfg.store
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Redis
    }

    fn notation(&self) -> switchyard_controller::Notation {
        NOTATION
    }

    fn capability(&self) -> Capability {
        Self::capabilities(self.cfg.sentinel_managed())
    }

    async fn observe(&self) -> Result<ObservedState> {
        let snap = self.snapshot().await;
        Ok(self.to_state(&snap))
    }

    fn token_record(&self) -> Option<&dyn TokenRecord> {
        Some(self)
    }

    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome> {
        let snap = self.snapshot().await;
        match op {
            Operation::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => {
                self.check_region(target_region)?;
                self.check_readiness(&snap, target_region, candidate.as_deref(), *mode)
            }
            Operation::Fence => self.fence(&snap, ctx).await,
            Operation::Unfence => self.unfence(&snap, ctx).await,
            Operation::CapturePosition => self.capture_position(&snap),
            Operation::WaitForPosition {
                target_region,
                position,
                timeout_ms,
                candidate,
            } => {
                self.check_region(target_region)?;
                self.wait_for_position(
                    snap,
                    target_region,
                    candidate.as_deref(),
                    *position,
                    Duration::from_millis(*timeout_ms),
                )
                .await
            }
            Operation::Promote {
                target_region,
                mode,
                candidate,
            } => {
                self.check_region(target_region)?;
                self.promote(snap, target_region, candidate.as_deref(), *mode, ctx)
                    .await
            }
            Operation::RepointFollowers => self.repoint_followers(&snap, ctx).await,
            Operation::Rejoin => self.rejoin(&snap, ctx).await,
            Operation::MakeSticky {
                target_region,
                candidate,
            } => {
                // Without Sentinel the capability layer answers (nothing
                // reads replica-priority; a promoted master stays master).
                self.check_region(target_region)?;
                self.make_sticky(&snap, target_region, candidate.as_deref(), ctx)
                    .await
            }
            other => Err(self.err(
                ErrorKind::Unsupported,
                format!("redis controller does not support {}", other.name()),
            )),
        }
    }
}
