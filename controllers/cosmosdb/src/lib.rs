//! Switchyard controller for Azure Cosmos DB accounts.
//!
//! # Two planes
//! - **Management (ARM)**: `GET` of the database account (write/read
//!   locations, `failoverPolicies`, consistency, `enableMultipleWriteLocations`,
//!   `provisioningState`) and the actions `failoverPriorityChange`,
//!   `offlineRegion`, `onlineRegion`, each a long-running operation
//!   (`202` + `Azure-AsyncOperation`, polled honouring `Retry-After`), with a
//!   bearer token from Entra ID ([`credential`]).
//! - **Data plane**: `GET /` on every regional endpoint, signed with the
//!   master key ([`data`]), for the regions that actually take writes.
//!
//! A member is one account location; it is primary only when both planes
//! agree ([`observe`]).
//!
//! # How the contract maps onto Cosmos DB
//! - `CheckReadiness` — the topology's locations are the account's; the
//!   target answers; forced: the loss bound of the consistency level
//!   ([`loss`]) against `max_lag_ms` unless data loss is accepted.
//! - `MakeSticky` / `Promote{Planned}` — `failoverPriorityChange` with the
//!   target at priority 0 (every location once, priorities 0..n-1): for a
//!   single-write account the service moves writes without losing any; the
//!   priorities persist, so the move sticks. An offline target is brought
//!   online first.
//! - `Promote{Forced}` — `offlineRegion` of the lost write region (after a
//!   priority change that puts the target next, if it is not); the
//!   estimate says what the consistency level may have lost.
//! - `Rejoin` — `onlineRegion` for every offline location whose endpoint
//!   answers again (failback).
//! - Multi-region-write accounts only ever get priority changes; nothing is
//!   fenced (Cosmos DB has no fence: `fencing`, `positions`, `repoint` are off).
//!
//! Every operation's URL is journaled before it is polled, so a resumed
//! coordinator polls the same operation instead of starting a second one.
//! Master key and client secret come from the environment or files only
//! and are never printed ([`secret::Secret`]).

pub mod arm;
pub mod config;
pub mod credential;
pub mod data;
mod error;
pub mod loss;
pub mod observe;
mod ops;
pub mod secret;

pub use config::CosmosConfig;
pub use error::{CosmosError, ROLE_HINT};
pub use ops::priorities;

use async_trait::async_trait;
use switchyard_controller::{
    Capability, Controller, ObservedState, OpContext, Operation, Outcome, Priorities, Result,
    StoreKind,
};
use switchyard_topology::Store;

/// How long an ARM failover operation is expected to take: stages with one
/// get at least twice this (the planner reads it from the capability).
pub const EXPECTED_OPERATION_MS: u64 = 5 * 60 * 1000;

/// The Cosmos DB controller of one account.
pub struct CosmosController {
    cfg: CosmosConfig,
    arm: arm::Arm,
    data: data::DataPlane,
}

impl std::fmt::Debug for CosmosController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds where secrets are, never their values.
        f.debug_struct("CosmosController")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// An HTTPS client trusting the platform's roots plus `ca_file` (PEM).
pub fn http_client(ca_file: Option<&str>) -> std::result::Result<reqwest::Client, CosmosError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(std::time::Duration::from_secs(10))
        .https_only(false);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            CosmosError::config(
                "connection.tls_ca_file",
                format!("cannot read `{path}`: {e}"),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| CosmosError::config("connection.tls_ca_file", format!("`{path}`: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| {
        CosmosError::config("connection", format!("cannot build the HTTPS client: {e}"))
    })
}

impl CosmosController {
    /// Build from a topology store; validates, does not connect.
    pub fn from_store(store: &Store) -> Result<Self> {
        let cfg = CosmosConfig::from_store(store).map_err(|e| e.into_error(&store.name))?;
        check_declared_priorities(store).map_err(|e| e.into_error(&store.name))?;
        Self::new(cfg)
    }

    /// Build from a validated config.
    pub fn new(cfg: CosmosConfig) -> Result<Self> {
        let http = http_client(cfg.ca_file.as_deref()).map_err(|e| e.into_error(&cfg.store))?;
        let tokens =
            credential::TokenSource::new(cfg.credential.clone(), &cfg.arm_endpoint, http.clone());
        let arm = arm::Arm::new(http.clone(), &cfg.arm_endpoint, &cfg.account_id, tokens);
        Ok(CosmosController {
            cfg,
            arm,
            data: data::DataPlane::new(http),
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &CosmosConfig {
        &self.cfg
    }

    /// What this controller supports.
    pub fn capabilities() -> Capability {
        Capability::none()
            .with_planned_switchover()
            .with_forced_failover()
            .with_rejoin()
            .with_sticky_priorities(Priorities::Durable)
            .with_expected_operation_ms(EXPECTED_OPERATION_MS)
            // One location per region: the chosen member of a region is
            // that region's location, which is what every operation moves.
            .with_chosen_candidate()
    }
}

/// The topology's `failover_priority` values: every location one, unique,
/// exactly 0..n-1 — what `failoverPriorityChange` accepts. Refused before
/// anything runs.
fn check_declared_priorities(store: &Store) -> std::result::Result<(), CosmosError> {
    let n = store.members.len() as u32;
    let mut seen = vec![None::<usize>; store.members.len()];
    for (i, m) in store.members.iter().enumerate() {
        let field = format!("members[{i}].failover_priority");
        let Some(p) = m.failover_priority else {
            return Err(CosmosError::config(
                field,
                format!("location `{}` has none", m.name),
            ));
        };
        if p >= n {
            return Err(CosmosError::config(
                field,
                format!(
                    "{p} is out of range: {n} locations take priorities 0..{}",
                    n - 1
                ),
            ));
        }
        if let Some(j) = seen[p as usize] {
            return Err(CosmosError::config(
                field,
                format!(
                    "priority {p} of `{}` is also that of `{}`: priorities must be unique",
                    m.name, store.members[j].name
                ),
            ));
        }
        seen[p as usize] = Some(i);
    }
    Ok(())
}

/// Cosmos DB exposes no replication position (and observes none): plain
/// numbers, should one ever be printed.
pub const NOTATION: switchyard_controller::Notation = switchyard_controller::Notation::PLAIN;

#[async_trait]
impl Controller for CosmosController {
    fn store(&self) -> &str {
        &self.cfg.store
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Cosmosdb
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
}
