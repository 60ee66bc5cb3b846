//! Switchyard controller for PostgreSQL streaming replication across regions.
//!
//! Construct it from a topology store with [`PostgresController::from_store`]
//! (or [`PostgresController::builder`] for tuning); validation happens there,
//! the password comes from `connection.password_env`, and `Debug` never shows
//! it. The controller implements [`switchyard_controller::Controller`]:
//!
//! * `observe` — one SQL round trip per member, in parallel
//!   (`pg_is_in_recovery`, timeline, current/replay/receive LSN,
//!   `pg_stat_wal_receiver`, `pg_stat_replication`); unreachable members are
//!   reported as down.
//! * planned switchover — `Fence` (soft fence, then the `stop` hook and the
//!   `start_as_standby` hook with no upstream: the old primary restarts in
//!   recovery, so it cannot acknowledge a write at all), `CapturePosition`
//!   (the fenced member's end of WAL), `WaitForPosition` (tight poll of
//!   `pg_last_wal_replay_lsn` on the target), `Promote` (`pg_promote(wait =>
//!   false)` and a tight poll of `pg_is_in_recovery`), `RepointFollowers`
//!   (`ALTER SYSTEM SET primary_conninfo` + reload; `pg_rewind` via hooks for
//!   a diverged standby), `Rejoin` (the fenced old primary follows the new
//!   timeline after a reload — no restart, no rewind).
//! * forced failover — `Promote{Forced}` of the most advanced standby of the
//!   target region, refused beyond the store's lag bound unless data loss is
//!   accepted, judged by the last-known state (`last_known.rs`: this
//!   process's observations and the state directory's); the outcome
//!   carries the estimate as a range with its basis. A diverged member is
//!   rewound only after the new primary checkpointed, and reported rewound
//!   only once it streams from it.
//!
//! Observation reports `following`, lag and health from live replication
//! state only (the WAL receiver, `pg_stat_replication`): an unknown lag is
//! `None`, a standby that does not stream is `replicating: Some(false)`.
//!
//! Sessions use TLS as `connection.tls` says (`disable`, `prefer`,
//! `require`), verifying the server certificate and host name against
//! `connection.tls_ca_file` when set; standbys' `primary_conninfo` gets the
//! matching `sslmode` (see `tls.rs`).
//!
//! Mutating operations carry the coordinator's fencing token
//! (`OpContext::token`); the highest one that acted is stored in the store
//! (`switchyard.fencing`, see `token.rs`) and the fencing layer of
//! `switchyard-controller` refuses a lower one, so a coordinator that lost
//! its lock cannot keep fencing or promoting.
//!
//! Every operation is idempotent: it first observes, and returns
//! [`Outcome::already_done`] when the store is already where the operation
//! would take it. See docs/postgres.md.

mod config;
mod control_file;
mod error;
mod fence;
mod followers;
mod hooks;
mod last_known;
mod lsn;
mod observe;
mod position;
mod promote;
mod readiness;
mod tls;
mod token;

pub use config::PostgresBuilder;

use crate::config::{ConnSettings, Timing};
use crate::error::PgError;
use async_trait::async_trait;
use observe::Probe;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_controller::{
    Capability, Controller, Error, ErrorKind, LastKnown, ObservedState, OpContext, Operation,
    Outcome, Remembered, Result, TokenRecord,
};
use switchyard_topology::{Member, Store, StoreKind};
use tokio_postgres::Client;

/// The PostgreSQL controller for one store.
pub struct PostgresController {
    store: Store,
    conn: ConnSettings,
    timing: Timing,
    /// Observations with a reachable primary, kept for a forced failover
    /// to judge its candidate by once the primary is gone (`last_known.rs`).
    last_known: Remembered<last_known::Evidence>,
    /// The probe's query of this store's recorded fencing token.
    stamp_sql: String,
    /// Reused observation sessions, per member.
    sessions: Mutex<HashMap<String, Arc<Client>>>,
    /// Final positions of old primaries the fence left stopped, read from
    /// `pg_controldata` (so capture and promotion need not run the hook again).
    final_positions: Mutex<HashMap<String, (switchyard_controller::Position, Instant)>>,
    /// The last probe of every member and when it was taken, while no
    /// mutating operation has run since (see [`PROBE_REUSE`]).
    recent: Mutex<Option<(Instant, Vec<Probe>)>>,
    /// The probe the fencing layer's stamp read just took (see
    /// [`STAMP_PROBE_REUSE`]), for the mutating operation it admits.
    stamp_probe: Mutex<Option<(Instant, Vec<Probe>)>>,
}

/// How old a probe of every member may be and still stand in for a new one
/// in `observe` and in read-only operations: the plan's observation, the
/// readiness step and the readiness checkpoint follow each other within a
/// few milliseconds and would otherwise ask every member the same thing
/// three times. A mutating operation always probes afresh and discards the
/// snapshot, so nothing decides on a state from before a change this
/// controller made.
const PROBE_REUSE: Duration = Duration::from_millis(50);

/// How old the probe taken for a mutating operation may be and still be its
/// look at every member: taken by `prepare` while the coordinator makes the
/// intent durable (or else by the fencing layer's stamp read), it serves the
/// stamp read and then the operation itself, which follow at once — one
/// probe, not two, and none waiting on the fsync. Past this age (a slow
/// journal), or not taken for this operation, the stamp read and the
/// operation probe again.
const STAMP_PROBE_REUSE: Duration = Duration::from_millis(100);

impl fmt::Debug for PostgresController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresController")
            .field("store", &self.store.name)
            .field(
                "members",
                &self
                    .store
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("conn", &self.conn)
            .field("timing", &self.timing)
            .finish()
    }
}

impl PostgresController {
    /// Start building a controller for `store` (validated in `build()`).
    pub fn builder(store: &Store) -> PostgresBuilder {
        PostgresBuilder::new(store)
    }

    /// Build a controller with default settings; fails with a
    /// [`ErrorKind::Config`] error naming the field when the store is invalid.
    pub fn from_store(store: &Store) -> Result<Self> {
        Self::builder(store).build()
    }

    pub(crate) fn new(
        store: Store,
        conn: ConnSettings,
        timing: Timing,
        last_known: LastKnown,
    ) -> Self {
        PostgresController {
            stamp_sql: observe::stamp_sql(&store.name),
            store,
            conn,
            timing,
            last_known: Remembered::new(last_known),
            sessions: Mutex::new(HashMap::new()),
            final_positions: Mutex::new(HashMap::new()),
            recent: Mutex::new(None),
            stamp_probe: Mutex::new(None),
        }
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> Error {
        Error::new(kind, &self.store.name, msg)
    }

    pub(crate) fn member(&self, name: &str) -> Result<&Member> {
        self.store.member(name).ok_or_else(|| {
            self.err(
                ErrorKind::Config,
                format!("no member {name} in the topology"),
            )
        })
    }

    fn pg_config(&self, m: &Member) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(m.hostname().unwrap_or("localhost"))
            .port(m.port().unwrap_or(5432))
            .user(&self.conn.user)
            .dbname(&self.conn.database)
            .application_name("switchyard")
            .ssl_mode(self.conn.tls.mode)
            .connect_timeout(self.conn.connect_timeout);
        if let Some(p) = &self.conn.password {
            c.password(p.0.as_bytes());
        }
        c
    }

    pub(crate) async fn connect(&self, m: &Member) -> std::result::Result<Client, PgError> {
        let config = self.pg_config(m);
        // The connection future's type depends on the connector: spawn per arm.
        let client = match self.conn.tls.connector() {
            None => {
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(PgError::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
            Some(tls) => {
                let (client, conn) = config
                    .connect(tls.clone())
                    .await
                    .map_err(PgError::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
        };
        Ok(client)
    }

    pub(crate) fn cached_session(&self, member: &str) -> Option<Arc<Client>> {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match s.get(member) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                s.remove(member);
                None
            }
            None => None,
        }
    }

    pub(crate) fn keep_session(&self, member: &str, client: Arc<Client>) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.to_string(), client);
    }

    pub(crate) fn forget_session(&self, member: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(member);
    }

    /// Connect, converting the failure to the public error.
    pub(crate) async fn session(&self, m: &Member) -> Result<Client> {
        self.connect(m)
            .await
            .map_err(|e| e.into_error(&self.store.name, &m.name))
    }

    /// The member's observation session (every operation has just probed
    /// every member, so it is open), else a new one, kept for the next use:
    /// the critical path sets up no connection of its own.
    pub(crate) async fn shared_session(&self, m: &Member) -> Result<Arc<Client>> {
        if let Some(c) = self.cached_session(&m.name) {
            return Ok(c);
        }
        let c = Arc::new(self.session(m).await?);
        self.keep_session(&m.name, c.clone());
        Ok(c)
    }

    /// Run statements one by one (a multi-statement string would be one
    /// implicit transaction, where `ALTER SYSTEM` is not allowed).
    pub(crate) async fn exec(&self, client: &Client, m: &Member, sql: &[&str]) -> Result<()> {
        for stmt in sql {
            client
                .batch_execute(stmt)
                .await
                .map_err(|e| PgError::Query(e).into_error(&self.store.name, &m.name))?;
        }
        Ok(())
    }

    /// Run statements as one pipeline: sent together, run by the server in
    /// order, each as its own implicit transaction (so `ALTER SYSTEM` may be
    /// among them), one round trip in all. One result per statement: a
    /// failed one does not stop the ones after it.
    pub(crate) async fn exec_pipelined(
        &self,
        client: &Client,
        m: &Member,
        sql: &[&str],
    ) -> Vec<Result<()>> {
        // tokio-postgres sends each request when its future is first polled;
        // join_all polls them in order, so they reach the server in order.
        futures::future::join_all(sql.iter().map(|stmt| async move {
            client
                .batch_execute(stmt)
                .await
                .map_err(|e| PgError::Query(e).into_error(&self.store.name, &m.name))
        }))
        .await
    }

    pub(crate) async fn scalar(&self, client: &Client, m: &Member, sql: &str) -> Result<String> {
        observe::scalar(client, sql)
            .await
            .map_err(|e| e.into_error(&self.store.name, &m.name))?
            .ok_or_else(|| {
                self.err(ErrorKind::Protocol, format!("{sql:?} returned NULL"))
                    .with_member(&m.name)
            })
    }

    /// Poll until `m` accepts connections and its recovery state is `in_recovery`.
    pub(crate) async fn wait_up(&self, m: &Member, in_recovery: bool) -> Result<Probe> {
        let deadline = Instant::now() + self.timing.start_timeout;
        loop {
            let p = observe::probe_member(self, m).await;
            if p.reachable() && p.in_recovery == in_recovery {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(self
                    .err(
                        ErrorKind::Timeout,
                        format!(
                            "did not come up {} within {:?}: {}",
                            if in_recovery {
                                "in recovery"
                            } else {
                                "as primary"
                            },
                            self.timing.start_timeout,
                            p.error.unwrap_or_else(|| "wrong recovery state".into())
                        ),
                    )
                    .with_member(&m.name));
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    /// The `primary_conninfo` a standby named `app` uses to follow `primary`.
    /// Never carries the password: PostgreSQL logs a changed
    /// `primary_conninfo` in full, so standbys authenticate with their own
    /// `.pgpass`/`passfile` (or certificates, or trust on a private network).
    pub(crate) fn conninfo_for(&self, primary: &Member, app: &str) -> String {
        let q = |v: &str| {
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                v.to_string()
            } else {
                format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        };
        let mut s = format!(
            "host={} port={} user={} application_name={}",
            q(primary.hostname().unwrap_or("localhost")),
            primary.port().unwrap_or(5432),
            q(&self.conn.user),
            q(app)
        );
        s.push(' ');
        s.push_str(&self.conn.tls.conninfo_params(q));
        s
    }

    /// [`Self::candidate`] for the planned paths (readiness, the wait, the
    /// promotion), which all say the same thing when there is none.
    pub(crate) fn unfenced_standby<'a>(
        &self,
        probes: &'a [Probe],
        region: &str,
        chosen: Option<&str>,
    ) -> Result<&'a Probe> {
        self.candidate(
            probes,
            region,
            chosen,
            &format!("no reachable, unfenced standby in region {region}"),
        )
    }

    /// The best promotion candidate in `region`: a reachable, unfenced
    /// standby holding the most WAL — or exactly `chosen`, the operator's
    /// `--candidate`, when it is one. `none` says why there is none when
    /// the controller chooses.
    pub(crate) fn candidate<'a>(
        &self,
        probes: &'a [Probe],
        region: &str,
        chosen: Option<&str>,
        none: &str,
    ) -> Result<&'a Probe> {
        let eligible = |p: &&Probe| {
            p.region == region
                && p.is_standby()
                && !p.fenced
                && self
                    .store
                    .member(&p.name)
                    .is_some_and(|m| m.priority > 0.0 && !m.hidden && !m.read_only_replica)
        };
        let Some(chosen) = chosen else {
            return probes
                .iter()
                .filter(eligible)
                .max_by_key(|p| (p.lsn, p.held_lsn()))
                .ok_or_else(|| self.err(ErrorKind::NotReady, none));
        };
        let p = probes.iter().find(|p| p.name == chosen).ok_or_else(|| {
            self.err(
                ErrorKind::Config,
                format!("the chosen candidate {chosen} is not a member of this store"),
            )
            .with_member(chosen)
        })?;
        if eligible(&p) {
            return Ok(p);
        }
        let why = if p.region != region {
            format!("it is in {}, not in {region}", p.region)
        } else if !p.reachable() {
            format!(
                "it is unreachable ({})",
                p.error.as_deref().unwrap_or("no answer")
            )
        } else if p.fenced {
            "it is fenced".to_string()
        } else if !p.is_standby() {
            "it is not a standby".to_string()
        } else {
            "it is not electable (priority 0, hidden or a read-only replica)".to_string()
        };
        Err(self
            .err(
                ErrorKind::NotReady,
                format!("the chosen candidate {chosen} cannot be promoted: {why}"),
            )
            .with_member(chosen))
    }

    /// Refuses a primary of `region` that is not the operator's choice.
    pub(crate) fn refuse_other_primary(
        &self,
        p: &Probe,
        region: &str,
        chosen: Option<&str>,
    ) -> Result<()> {
        match chosen {
            Some(c) if p.region == region && p.name != c => Err(self
                .err(
                    ErrorKind::Refused,
                    switchyard_controller::operation::other_primary_in_target(&p.name, region, c),
                )
                .with_member(&p.name)),
            _ => Ok(()),
        }
    }

    fn check_region(&self, region: &str) -> Result<()> {
        if self.store.members.iter().any(|m| m.region == region) {
            Ok(())
        } else {
            Err(self.err(
                ErrorKind::Config,
                format!("store has no member in region {region}"),
            ))
        }
    }
}

/// SQL string literal.
pub(crate) fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// PostgreSQL's notation: the WAL location as `pg_current_wal_lsn()` prints
/// it and the timeline (`0/4000060 on timeline 2`).
pub const NOTATION: switchyard_controller::Notation = switchyard_controller::Notation {
    term: "timeline",
    position: |p| {
        format!(
            "{} on timeline {}",
            crate::lsn::format_lsn(p.offset),
            p.history
        )
    },
};

#[async_trait]
impl Controller for PostgresController {
    fn store(&self) -> &str {
        &self.store.name
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn notation(&self) -> switchyard_controller::Notation {
        NOTATION
    }

    fn capability(&self) -> Capability {
        Capability::none()
            .with_planned_switchover()
            .with_forced_failover()
            .with_fencing()
            .with_positions()
            .with_repoint()
            .with_rejoin()
            .with_lag_bound()
            .with_chosen_candidate()
    }

    async fn observe(&self) -> Result<ObservedState> {
        let probes = self.recent_or_probe().await;
        if probes.iter().all(|p| !p.reachable()) {
            // Still a state (every member down), not an error: the caller
            // decides whether that is fatal.
            tracing::warn!(store = %self.store.name, "no member reachable");
        }
        let stopped = self.fence_evidence(&probes).await;
        Ok(self.to_state_with(&probes, &stopped))
    }

    fn token_record(&self) -> Option<&dyn TokenRecord> {
        Some(self)
    }

    async fn warm_up(&self) {
        // Every member's session at once: a connection is a new backend
        // process, the costliest part of a first observation.
        futures::future::join_all(self.store.members.iter().map(|m| async move {
            if self.cached_session(&m.name).is_none() {
                if let Ok(c) = self.connect(m).await {
                    self.keep_session(&m.name, Arc::new(c));
                }
            }
        }))
        .await;
    }

    async fn prepare(&self, op: &Operation) {
        if op.is_mutating() {
            self.probe_for_mutation().await;
        }
    }

    async fn execute(&self, op: &Operation, _: &OpContext) -> Result<Outcome> {
        // One observation per operation (the fencing layer read the token
        // before). A mutating one probes afresh; a read-only one may reuse a
        // snapshot younger than PROBE_REUSE — readiness too: the plan's
        // observation a few milliseconds before is the lag of now for its
        // guard (a candidate far behind), and the position that decides is
        // the one the catch-up waits for before the promotion.
        let probes = if op.is_mutating() {
            self.forget_probes();
            match self.take_stamp_probe() {
                Some(p) => p,
                None => self.probe_all().await,
            }
        } else {
            self.recent_or_probe().await
        };
        // A member refused at the TLS layer is not known to be down: acting
        // as if it were (a forced promotion, say) could make two primaries.
        if let Some(p) = probes.iter().find(|p| p.tls_refused) {
            return Err(self
                .err(
                    ErrorKind::Config,
                    format!(
                        "{}; refusing {op}: the member may be up",
                        p.error.as_deref().unwrap_or("TLS failure")
                    ),
                )
                .with_member(&p.name));
        }
        let outcome = self.dispatch(op, probes).await;
        if op.is_mutating() {
            // Whatever it got through, the stores may have changed.
            self.forget_probes();
        }
        outcome
    }
}

impl PostgresController {
    /// Probe every member for the coming mutating operation: kept for the
    /// fencing layer's stamp read and the operation ([`STAMP_PROBE_REUSE`]).
    pub(crate) async fn probe_for_mutation(&self) -> Vec<Probe> {
        let probes = self.probe_all().await;
        *self.stamp_probe.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), probes.clone()));
        probes
    }

    /// The probe taken for the coming mutating operation, left in place for
    /// the operation itself, if it is young enough.
    pub(crate) fn peek_stamp_probe(&self) -> Option<Vec<Probe>> {
        let guard = self.stamp_probe.lock().unwrap_or_else(|e| e.into_inner());
        let (at, probes) = guard.as_ref()?;
        (at.elapsed() <= STAMP_PROBE_REUSE).then(|| probes.clone())
    }

    /// The stamp read's probe, once, if it is young enough.
    fn take_stamp_probe(&self) -> Option<Vec<Probe>> {
        let (at, probes) = self
            .stamp_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        (at.elapsed() <= STAMP_PROBE_REUSE).then_some(probes)
    }

    async fn dispatch(&self, op: &Operation, probes: Vec<Probe>) -> Result<Outcome> {
        match op {
            Operation::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => {
                self.check_region(target_region)?;
                self.check_readiness(probes, target_region, candidate.as_deref(), *mode)
                    .await
            }
            Operation::Fence => self.fence(probes).await,
            Operation::CapturePosition => self.capture_position(probes).await,
            Operation::WaitForPosition {
                target_region,
                position,
                timeout_ms,
                candidate,
            } => {
                self.check_region(target_region)?;
                self.wait_for_position(
                    probes,
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
                self.promote(probes, target_region, candidate.as_deref(), *mode)
                    .await
            }
            Operation::RepointFollowers => self.repoint_followers(probes).await,
            Operation::Rejoin => self.rejoin(probes).await,
            Operation::Unfence => self.unfence(probes).await,
            // The capability layer answers MakeSticky (no election
            // priorities: nothing to persist).
            other => Err(self.err(
                ErrorKind::Unsupported,
                format!(
                    "{} reached the postgres controller past its capability",
                    other.name()
                ),
            )),
        }
    }
}
