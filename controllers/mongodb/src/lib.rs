//! Switchyard controller for MongoDB replica sets, driven through the
//! official `mongodb` driver.
//!
//! # Construction
//! [`MongoController::from_store`] builds a controller from a topology
//! store (validated in [`MongoConfigBuilder::build`]): the replica set name
//! comes from `connection.replica_set`, every member needs `host` =
//! `host:port` exactly as in the replica set config, and the password (for
//! SCRAM, with `connection.user`) is read from the environment variable
//! named by `connection.password_env`. `Debug` output redacts it.
//!
//! # How the contract maps onto MongoDB
//! MongoDB elects its own primary, so the controller steers instead of
//! promoting directly ([`Capability::self_electing`]):
//! - `CheckReadiness` — a reachable electable member in the target region
//!   within `max_lag_ms` (planned), or the forced-failover preconditions.
//! - `MakeSticky` — `replSetReconfig` raising the priorities of the target
//!   region's electable members above every other member, so priority
//!   takeover keeps the primary there (and moves it there when it can).
//! - `Promote{Planned}` — MakeSticky if not yet done, `replSetFreeze: 0` on
//!   the target's candidates (a member stepped down earlier may still be
//!   frozen), `replSetStepDown` with `secondaryCatchUpPeriodSecs` (the
//!   primary refuses writes and waits for an electable secondary to catch
//!   up, which is MongoDB's fence + wait-for-position in one command), wait
//!   for a primary in the target region, then verify a `w:"majority"` write.
//! - `Promote{Forced}` — with no primary reachable, the candidate is judged
//!   against `max_lag_ms` by the last-known state (`last_known.rs`) and
//!   refused beyond it unless `accept_data_loss`; when the reachable
//!   members still hold a voting majority the set elects by itself and the
//!   controller only steers it;
//!   otherwise, and only with `accept_data_loss`, `replSetReconfig` with
//!   `force: true` on a target-region survivor keeping only reachable
//!   members. The outcome estimates what may be lost.
//! - `Rejoin` — re-adds members a forced reconfig removed, one voting
//!   member at a time, and reports oplog entries they rolled back.
//! - `CapturePosition` / `WaitForPosition` — the primary's applied optime
//!   as a [`Position`] (`history` = term, `offset` = `secs << 32 | inc`).
//! - `Fence` / `Unfence` are not offered separately (`fencing: false`):
//!   step-down is the fence and happens inside `Promote`. `RepointFollowers`
//!   is a no-op; secondaries pick their sync source themselves.
//!
//! Every config change records the execution's fencing token and id in the
//! members' `tags.switchyard_token` / `tags.switchyard_execution` (the
//! [`TokenRecord`] hook reads them; an older `tags.switchyard_epoch` still
//! counts); the fencing layer refuses what the rule does not admit, and a
//! config change re-checks on the config it replaces, so a coordinator that
//! lost its leadership cannot keep steering.
//!
//! Every operation is idempotent: repeating it after success observes that
//! the work is done and returns [`Outcome::already_done`] without another
//! election or reconfig.

mod client;
pub mod config;
mod error;
mod handover;
mod last_known;
mod observe;
mod ops;

pub use config::{MemberSpec, MongoConfig, MongoConfigBuilder};
pub use observe::position;

use async_trait::async_trait;
use client::Connections;
use std::path::Path;
use switchyard_controller::{
    Capability, Controller, LastKnown, ObservedState, OpContext, Operation, Outcome, Priorities,
    Remembered, Result, Stamp, StoreKind, TokenRecord,
};
use switchyard_topology::Store;

/// The MongoDB controller for one replica set.
pub struct MongoController {
    cfg: MongoConfig,
    conns: Connections,
    /// Observations with a primary, for a later forced failover to judge
    /// `max_lag_ms` by (`last_known.rs`).
    last_known: Remembered<last_known::Evidence>,
}

impl std::fmt::Debug for MongoController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // MongoConfig's Debug redacts the password.
        f.debug_struct("MongoController")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl MongoController {
    /// Build from a topology store (see the crate docs for what is required).
    pub fn from_store(store: &Store) -> Result<Self> {
        let cfg = MongoConfigBuilder::new(store)
            .build()
            .map_err(|e| e.into_error(&store.name))?;
        Ok(Self::new(cfg))
    }

    /// Like [`MongoController::from_store`], keeping the last-known state
    /// (the evidence a later forced failover judges `max_lag_ms` by) in
    /// `state_dir/last-known/<store>.json` when a directory is given.
    pub fn from_store_in(store: &Store, state_dir: Option<&Path>) -> Result<Self> {
        let mut c = Self::from_store(store)?;
        c.last_known = Remembered::new(LastKnown::in_state_dir(state_dir, &store.name));
        Ok(c)
    }

    /// Build from a validated config.
    pub fn new(cfg: MongoConfig) -> Self {
        let conns = Connections::new(&cfg);
        MongoController {
            cfg,
            conns,
            last_known: Remembered::new(LastKnown::none()),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &MongoConfig {
        &self.cfg
    }

    /// What this controller supports.
    pub fn capabilities() -> Capability {
        Capability::none()
            .with_planned_switchover()
            .with_forced_failover()
            .with_positions()
            .with_rejoin()
            .with_self_electing()
            .with_sticky_priorities(Priorities::Durable)
            // A higher-priority secondary within 2 s of the primary calls
            // an election by itself: priorities change only after the
            // step-down handed the primary over.
            .with_priority_takeover()
            .with_lag_bound()
            .with_chosen_candidate()
    }
}

/// MongoDB's notation: an optime is a timestamp (seconds, increment) and
/// the election term, as `rs.status()` shows them
/// (`Timestamp(1700000000, 3) in term 5`).
pub const NOTATION: switchyard_controller::Notation = switchyard_controller::Notation {
    term: "term",
    position: |p| {
        format!(
            "Timestamp({}, {}) in term {}",
            p.offset >> 32,
            p.offset & 0xffff_ffff,
            p.history
        )
    },
};

#[async_trait]
impl Controller for MongoController {
    fn store(&self) -> &str {
        &self.cfg.store
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Mongodb
    }

    fn notation(&self) -> switchyard_controller::Notation {
        NOTATION
    }

    fn capability(&self) -> Capability {
        Self::capabilities()
    }

    async fn observe(&self) -> Result<ObservedState> {
        let snap = self
            .snapshot()
            .await
            .map_err(|e| e.into_error(&self.cfg.store))?;
        Ok(self.to_state(&snap))
    }

    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome> {
        self.run(op, ctx)
            .await
            .map_err(|e| e.into_error(&self.cfg.store))
    }

    async fn shutdown(&self) {
        self.conns.shutdown().await;
    }

    fn token_record(&self) -> Option<&dyn TokenRecord> {
        Some(self)
    }
}

/// The replica set config's member tags hold the stamp; it is written only
/// with a config change the operation makes anyway (a reconfig just for the
/// stamp would bump the config version on every operation).
#[async_trait]
impl TokenRecord for MongoController {
    async fn read_stamp(&self) -> Result<Option<Stamp>> {
        self.recorded_stamp()
            .await
            .map_err(|e| e.into_error(&self.cfg.store))
    }

    async fn write_stamp(&self, _: &Stamp) -> Result<bool> {
        Ok(false)
    }
}
