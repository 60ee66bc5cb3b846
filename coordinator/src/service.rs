//! The application service: everything Switchyard does — plan, start,
//! resume, abort, drill, state, history — with typed results and a stream of
//! progress events. The CLI (`cli.rs`) and the server are adapters over it:
//! they parse, ask, render; the service decides and runs.
//!
//! A [`Service`] owns what it runs (the topology, shared controllers, the
//! journal store and the lock), so an execution can be spawned as a task of
//! its own: the two-step calls (`prepare_*` then `run`/`launch`) keep the lock
//! held in between, which is where the CLI asks for confirmation and the
//! server answers `202`.

use crate::approval::Identity;
use crate::candidate::Candidates;
use crate::driver::{Driver, DriverError, RunEnd};
use crate::executor::Executor;
use crate::failpoint::Failpoint;
use crate::health;
use crate::journal::{
    format_ms, ledger, now_ms, plan_stores, summarize, ExecutionStatus, FileJournalStore,
    JournalError, JournalStore, LedgerEntry, Record, StoreStatus,
};
use crate::lock::{FileLock, Lock, LockError, LockGuard};
use crate::plan::{Mode, Plan};
use crate::planner::{plan_failover, PlanOptions};
use crate::progress::{ProgressEvent, Reporter};
use crate::registry::{capabilities, controllers_in};
use crate::report::ExecutionReport;
use crate::validate::{load_plan, validate};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_controller::{Controller, FencingToken, Notation, ObservedState};
use switchyard_topology::Topology;
use tokio::sync::broadcast;

/// Every store's controller, by store name, shared by whoever runs.
pub type Controllers = BTreeMap<String, Arc<dyn Controller>>;

/// Every store's observation (or why it failed), by store name.
pub type Observations = Vec<(String, Result<ObservedState, String>)>;

/// What kind of failure a service call ended in; adapters map it to an exit
/// code or a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input or configuration (unknown region, bad plan, unknown id,
    /// an execution that cannot be resumed).
    Usage,
    /// Another execution holds the lock, or an unfinished one must be
    /// resumed or aborted first.
    Locked,
    /// A precondition on the stores refused (e.g. a drill over stores that
    /// are not all primary in one region).
    Refused,
    /// Something was run and did not end where it should (drill verification).
    Failed,
    /// The execution needs a second person's approval: it is journaled as
    /// `pending_approval` and nothing was issued (see [`crate::approval`]).
    PendingApproval,
}

/// A service call that did not happen, or did not end well, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For people: what happened and what to do.
    pub message: String,
}

impl ServiceError {
    /// A usage or configuration error.
    pub fn usage(m: impl Into<String>) -> Self {
        ServiceError {
            kind: ErrorKind::Usage,
            message: m.into(),
        }
    }
    pub(crate) fn new(kind: ErrorKind, m: impl Into<String>) -> Self {
        ServiceError {
            kind,
            message: m.into(),
        }
    }
}

fn usage(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::usage(e.to_string())
}

/// What the service reports while it runs, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ServiceEvent {
    /// Progress of a running execution.
    Progress(ProgressEvent),
    /// A rollback was planned (`switchyard rollback`, or a plan's
    /// `on_failure = "rollback"`): what it does with every store.
    RollbackPlanned {
        /// The execution rolled back.
        execution_id: String,
        /// Per store: (store, what the rollback does).
        stores: Vec<(String, String)>,
    },
    /// An execution ended (for this process): its report from the journal.
    Report {
        /// The report.
        report: ExecutionReport,
        /// Why it did not succeed, with what to do next.
        #[serde(skip)]
        reason: Option<String>,
    },
}

/// Receives a [`ServiceEvent`] stream (the CLI renders it, the server
/// forwards it as Server-Sent Events).
pub trait EventSink: Send + Sync {
    /// Called for every event, in order, before the service goes on.
    fn send(&self, ev: &ServiceEvent);
}

/// Discards events.
#[derive(Debug, Default)]
pub struct Discard;

impl EventSink for Discard {
    fn send(&self, _: &ServiceEvent) {}
}

/// How an execution ended for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every stage passed.
    Succeeded,
    /// A step or checkpoint failed, or the driver stopped; resumable.
    Failed,
    /// A readiness check refused (lag beyond the bound, no candidate).
    Refused,
    /// Aborted.
    Aborted,
}

/// An execution this process ran (or continued) to its end.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    /// Execution id.
    pub id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it did not succeed.
    pub reason: Option<String>,
    /// The report from its journal.
    pub report: ExecutionReport,
}

/// A failover to plan: target region, mode and plan timeouts.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Region every store should end up primary in.
    pub to: String,
    /// Planned, forced, or forced accepting data loss.
    pub mode: Mode,
    /// How long each stage's operations and checkpoint may take.
    pub stage_timeout_ms: u64,
    /// How long a store may take to replay the fenced primary's final position.
    pub catch_up_timeout_ms: u64,
    /// `--candidate` values (`MEMBER` or `STORE=MEMBER`, see
    /// [`crate::candidate`]): the member to promote in those stores.
    pub candidates: Vec<String>,
}

/// What to start.
#[derive(Debug, Clone)]
pub enum StartRequest {
    /// A generated failover plan (`switchyard failover`).
    Failover(PlanRequest),
    /// A plan file, validated against the topology (`switchyard run`).
    PlanFile(PathBuf),
    /// Plan text (TOML or JSON) and what to call it in errors, validated
    /// against the topology (the server's `{"plan": ...}`).
    PlanText {
        /// Name used in error messages in place of a file name.
        source: String,
        /// The plan.
        text: String,
    },
}

/// A validated plan, with the lock held, waiting for approval
/// ([`Service::launch`] or [`Service::run`] starts it; dropping it releases
/// the lock and nothing was done).
pub struct Pending {
    guard: Arc<dyn LockGuard>,
    controllers: Arc<Controllers>,
    plan: Plan,
    kind: &'static str,
    warnings: Vec<String>,
    by: Identity,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("kind", &self.kind)
            .field("plan", &self.plan.name)
            .field("fencing_token", &self.guard.token())
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The plan to be run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// The fencing token it will run with.
    pub fn token(&self) -> FencingToken {
        self.guard.token()
    }
    /// What the operator should know before approving (a damaged execution
    /// a forced failover goes ahead over).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    /// Who starts it (default: the OS user of this process): the journal
    /// and the history name them, and the two-person rule refuses them as
    /// its approver. The server passes the holder of the request's token.
    pub fn started_by(mut self, who: Identity) -> Self {
        self.by = who;
        self
    }
}

/// An execution whose start (or resume) is journaled, ready to drive:
/// [`Launched::run`] drives it to its end. Owns everything it uses, so it
/// can be spawned.
pub struct Launched {
    id: String,
    driver: Driver,
    executor: Executor,
    service: Arc<Inner>,
    sink: Arc<dyn EventSink>,
    /// What `on_failure = "rollback"` needs: the event stream, the lock
    /// and the controllers.
    tee: Arc<Tee>,
    guard: Arc<dyn LockGuard>,
    controllers: Arc<Controllers>,
    kind: String,
    /// Who started it: who an `on_failure = "rollback"` runs on behalf of.
    by: Identity,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Launched {
    /// The execution id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fencing token it runs with.
    pub fn token(&self) -> FencingToken {
        self.guard.token()
    }

    /// Hold its first durable record (the first mutating intent at the
    /// latest) back until `gate` says `Ok`; a failure stops it there,
    /// before anything is issued (see [`crate::journal::Gated`]).
    pub fn durable_after(self, gate: tokio::sync::oneshot::Receiver<Result<(), String>>) -> Self {
        Launched {
            driver: self.driver.with_durable_gate(gate),
            ..self
        }
    }

    /// Drive the execution until it succeeds, fails or is aborted, then
    /// journal its end and report it.
    pub async fn run(self) -> Result<Finished, ServiceError> {
        let Launched {
            id,
            mut driver,
            mut executor,
            service,
            sink,
            tee,
            guard,
            controllers,
            kind,
            by,
        } = self;
        let end = driver.run(&mut executor).await;
        drop(driver);
        let finished = service.finish(&id, end, sink.as_ref())?;
        let plan = executor.plan();
        if finished.outcome == Outcome::Succeeded
            || finished.outcome == Outcome::Aborted
            || plan.on_failure != Some(crate::rollback::OnFailure::Rollback)
            || kind == crate::rollback::KIND
        {
            return Ok(finished);
        }
        // A failure after something changed leaves the execution open (one
        // that changed nothing was closed by `finish`): roll it back, as the
        // plan asked.
        let open = matches!(
            summarize(&id, &service.journals()?.read(&id).map_err(usage)?).status,
            ExecutionStatus::Unfinished | ExecutionStatus::Failed
        );
        if !open {
            return Ok(finished);
        }
        let timeouts = crate::rollback::Timeouts {
            stage_ms: plan
                .stages
                .iter()
                .map(|s| s.timeout_ms)
                .max()
                .unwrap_or(crate::plan::DEFAULT_STAGE_TIMEOUT_MS),
            catch_up_ms: 60_000,
        };
        let planned = service
            .plan_rollback(&controllers, &id, timeouts, &[])
            .await?;
        sink.send(&ServiceEvent::RollbackPlanned {
            execution_id: id.clone(),
            stores: rollback_actions(&planned),
        });
        // The rollback is an execution of its own, so it needs a fencing
        // token of its own (stores refuse an equal token from a different
        // execution): taking the lock again bumps it, as drill's way back does.
        drop(guard);
        let guard = service.lock("rollback")?;
        let rolled =
            Box::pin(service.run_rollback(&guard, &controllers, &id, planned, tee, &by)).await?;
        let ok = rolled
            .as_ref()
            .is_none_or(|r| r.outcome == Outcome::Succeeded);
        Ok(Finished {
            // The plan did not happen: rolled back (or not).
            outcome: if ok {
                Outcome::Aborted
            } else {
                Outcome::Failed
            },
            reason: Some(match &rolled {
                Some(r) if ok => format!("{id} failed and was rolled back by {}", r.id),
                Some(r) => format!("{id} failed and its rollback {} did not succeed", r.id),
                None => format!("{id} failed; every store was where it started, {id} is closed"),
            }),
            ..finished
        })
    }
}

/// An abort decided from the journal and the stores, with the lock held.
pub struct PendingAbort {
    guard: Arc<dyn LockGuard>,
    controllers: Arc<Controllers>,
    by: Identity,
    /// The execution being aborted.
    pub id: String,
    /// What to run, and every store's decision.
    pub planned: crate::abort::AbortPlan,
}

impl PendingAbort {
    /// Who runs the abort (default: the OS user of this process).
    pub fn started_by(mut self, who: Identity) -> Self {
        self.by = who;
        self
    }
}

impl std::fmt::Debug for PendingAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAbort")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A rollback decided from the journal and the stores, with the lock held
/// (see [`crate::rollback`]).
pub struct PendingRollback {
    guard: Arc<dyn LockGuard>,
    controllers: Arc<Controllers>,
    /// The execution being rolled back.
    pub id: String,
    /// What to run, and every store's action.
    pub planned: crate::rollback::RollbackPlan,
}

impl std::fmt::Debug for PendingRollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRollback")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Every store's rollback action, as (store, words).
pub fn rollback_actions(planned: &crate::rollback::RollbackPlan) -> Vec<(String, String)> {
    planned
        .actions
        .iter()
        .map(|(s, a)| (s.clone(), a.to_string()))
        .collect()
}

/// How an abort ended, judged by the stores observed after it.
#[derive(Debug, Clone)]
pub struct Aborted {
    /// The execution aborted.
    pub id: String,
    /// The abort execution, when one ran (none when every store is stuck).
    pub run: Option<Finished>,
    /// Per store: its one writable primary, or what is wrong and the fix.
    pub verdicts: Vec<crate::abort::Verdict>,
    /// What every store showed after the abort.
    pub after: Observations,
    /// Per store, the one-line summary of what it showed after the abort
    /// ([`summary_of`]).
    pub summaries: Vec<(String, String)>,
}

impl Aborted {
    /// Every store has exactly one writable primary and the abort execution
    /// (if one ran) succeeded.
    pub fn ok(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.outcome == Outcome::Succeeded)
            && self.verdicts.iter().all(|v| v.unresolved.is_none())
    }

    /// The summary of `store` as observed after the abort.
    pub fn summary(&self, store: &str) -> String {
        self.summaries
            .iter()
            .find(|(n, _)| n == store)
            .map_or_else(|| "not observed".to_string(), |(_, s)| s.clone())
    }
}

/// A drill planned: where the stores are now, the plan out, the lock held.
pub struct PendingDrill {
    guard: Arc<dyn LockGuard>,
    controllers: Arc<Controllers>,
    /// Region every store is primary in now (and comes back to).
    pub origin: String,
    /// Region to move to.
    pub to: String,
    /// The plan out.
    pub out: Plan,
    /// The way back as planned now, from the state the first leg's
    /// checkpoints expect ([`expected_after`]); the drill plans it again
    /// from what the stores show once they passed.
    pub back: Option<Plan>,
    /// That expected state, per store.
    pub expected: Observations,
    stage_timeout_ms: u64,
    catch_up_timeout_ms: u64,
    observe_time: Duration,
}

impl std::fmt::Debug for PendingDrill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDrill")
            .field("origin", &self.origin)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// How a drill ended.
#[derive(Debug, Clone)]
pub enum Drilled {
    /// The way out did not succeed; nothing came back.
    Stopped(Finished),
    /// Out, verified, and back (the way back may have failed).
    Completed {
        /// Where the stores started and ended.
        origin: String,
        /// Where they went.
        to: String,
        /// Time spent observing outside the executions.
        observe_ms: u64,
        /// Reports of the way out and the way back.
        reports: Vec<ExecutionReport>,
        /// The way back.
        back: Finished,
    },
}

/// What `state` saw.
#[derive(Debug, Clone)]
pub struct StateReport {
    /// The topology observed.
    pub topology: Arc<Topology>,
    /// Per store, in topology order.
    pub stores: Observations,
    /// Per store, the verdict on what was observed (see [`crate::health`]).
    pub health: Vec<(String, Result<health::StoreHealth, String>)>,
    /// The open execution, if any: nothing else should start before it is
    /// resumed or aborted.
    pub unfinished: Option<health::Unfinished>,
}

impl StateReport {
    /// Some store could not be observed.
    pub fn unobservable(&self) -> bool {
        self.stores.iter().any(|(_, s)| s.is_err())
    }
    /// Some store has more than one writable primary.
    pub fn split_brain(&self) -> bool {
        self.stores
            .iter()
            .any(|(_, s)| s.as_ref().is_ok_and(|s| s.primaries().count() > 1))
    }
}

/// One execution's journal as far as it can be read.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Execution id.
    pub id: String,
    /// Records read.
    pub records: Vec<Record>,
    /// Where the journal is damaged.
    pub damage: Vec<crate::journal::Damage>,
    /// The report built from the records.
    pub report: ExecutionReport,
}

/// An execution closed by the operator.
#[derive(Debug, Clone)]
pub struct ClosedExecution {
    /// Execution id.
    pub id: String,
    /// The reason journaled.
    pub reason: String,
    /// The damage it had.
    pub damage: Vec<String>,
}

/// How long an abort keeps observing a store whose state may still be
/// changing on its own (a promotion in flight, an election) before deciding.
const ABORT_SETTLE: Duration = Duration::from_secs(10);

struct Inner {
    topology_file: PathBuf,
    /// Replaced whole by [`Service::reload_topology`]; each call works on
    /// the one it read.
    topology: std::sync::RwLock<Arc<Topology>>,
    state_dir: PathBuf,
    /// Built on first use (a command that lists executions builds none);
    /// shut down by [`Service::shutdown`].
    controllers: Mutex<Option<Arc<Controllers>>>,
    events: broadcast::Sender<Published>,
    /// Set by `serve` on a coordination backend: leadership and journals
    /// come from it instead of the state directory.
    coordination: std::sync::OnceLock<crate::backend::Coordinated>,
}

/// The application service; cheap to clone (shared state).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("topology_file", &self.inner.topology_file)
            .field("state_dir", &self.inner.state_dir)
            .finish_non_exhaustive()
    }
}

/// An event of one execution, as the service's subscribers get it.
#[derive(Debug, Clone)]
pub struct Published {
    /// The execution it belongs to.
    pub execution_id: String,
    /// What happened.
    pub event: ServiceEvent,
}

/// Every event goes to the caller's sink and to the service's subscribers,
/// labelled with the execution it belongs to.
struct Tee {
    sink: Arc<dyn EventSink>,
    events: broadcast::Sender<Published>,
    /// The execution being driven (a drill drives two, one after the other).
    current: Mutex<String>,
}

impl Tee {
    fn driving(&self, id: &str) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = id.to_string();
    }
}

impl EventSink for Tee {
    fn send(&self, ev: &ServiceEvent) {
        self.sink.send(ev);
        let execution_id = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // No subscriber is not an error.
        let _ = self.events.send(Published {
            execution_id,
            event: ev.clone(),
        });
    }
}

impl Reporter for Tee {
    fn event(&self, ev: &ProgressEvent) {
        self.send(&ServiceEvent::Progress(ev.clone()));
    }
}

impl Service {
    /// A service over the topology in `topology_file`, keeping journals, the
    /// lock and the fencing token counter in `state_dir` (default: `.switchyard` next to the
    /// topology file).
    pub fn load(topology_file: &Path, state_dir: Option<&Path>) -> Result<Self, ServiceError> {
        let topology = switchyard_topology::parse_file(topology_file).map_err(usage)?;
        let state_dir = state_dir.map(Path::to_path_buf).unwrap_or_else(|| {
            topology_file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(".switchyard")
        });
        Ok(Self::new(topology_file.to_path_buf(), topology, state_dir))
    }

    /// A service over an already parsed topology.
    pub fn new(topology_file: PathBuf, topology: Topology, state_dir: PathBuf) -> Self {
        let (events, _) = broadcast::channel(1024);
        Service {
            inner: Arc::new(Inner {
                topology_file,
                topology: std::sync::RwLock::new(Arc::new(topology)),
                state_dir,
                controllers: Mutex::new(None),
                events,
                coordination: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Run on a coordination backend from now on (`serve`): every
    /// execution takes this server's leadership and a fresh fencing token
    /// from it, and journals live in the backend. Set once; `false` when it
    /// was set already.
    pub fn coordinate(&self, c: crate::backend::Coordinated) -> bool {
        self.inner.coordination.set(c).is_ok()
    }

    /// The topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.topology()
    }

    /// Read the topology file again and use it from the next call on, once
    /// it parses, validates and every store kind in it has a controller;
    /// otherwise keep the old one and say why. `Ok(false)`: unchanged.
    /// Executions already running keep the topology and controllers they
    /// started with.
    pub fn reload_topology(&self) -> Result<bool, ServiceError> {
        let inner = &self.inner;
        let file = inner.topology_file.display();
        let topology = switchyard_topology::parse_file(&inner.topology_file)
            .map_err(|e| ServiceError::usage(format!("{file}: {e}")))?;
        if *inner.topology() == topology {
            return Ok(false);
        }
        let controllers = controllers_in(&topology, Some(&inner.state_dir))
            .map_err(|e| ServiceError::usage(format!("{file}: {e}")))?;
        *inner.topology.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(topology);
        *inner.controllers.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(controllers));
        Ok(true)
    }

    /// The topology file.
    pub fn topology_file(&self) -> &Path {
        &self.inner.topology_file
    }

    /// The state directory (journals, lock, fencing token counter).
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Every event of every execution this service runs, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.inner.events.subscribe()
    }

    /// Shut every controller built down (see [`Controller::shutdown`]).
    pub async fn shutdown(&self) {
        let built = match self.inner.controllers.lock() {
            Ok(mut c) => c.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(all) = built {
            futures::future::join_all(all.values().map(|c| c.shutdown())).await;
        }
    }

    /// The controllers, built on first use.
    pub fn controllers(&self) -> Result<Arc<Controllers>, ServiceError> {
        self.inner.controllers()
    }

    /// Refuses a target region the topology does not declare, before any
    /// controller is built or any store contacted.
    pub fn target_region(&self, name: &str) -> Result<(), ServiceError> {
        let topology = self.inner.topology();
        if topology.region(name).is_some() {
            return Ok(());
        }
        let known: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
        let guess = switchyard_topology::suggest::did_you_mean(name, known.iter().copied())
            .map_or(String::new(), |g| format!("did you mean `{g}`? "));
        Err(ServiceError::usage(format!(
            "{}: --to: unknown region `{name}`; {guess}the topology declares: {}",
            self.inner.topology_file.display(),
            known.join(", ")
        )))
    }

    /// Resolves `req`'s `--candidate` values against the topology, before
    /// any controller is built or any store contacted: a bad one is a
    /// usage error naming the member and why.
    pub fn candidates(&self, req: &PlanRequest) -> Result<Candidates, ServiceError> {
        crate::candidate::resolve(&self.inner.topology(), &req.to, &req.candidates).map_err(|e| {
            ServiceError::usage(format!("{}: {e}", self.inner.topology_file.display()))
        })
    }

    /// Observe every store (read-only).
    pub async fn state(&self) -> Result<StateReport, ServiceError> {
        let controllers = self.controllers()?;
        let stores = observe_all(&controllers).await;
        // Evidence for the failback gate: who looked, when, and what they saw.
        crate::gate::record_health(&self.inner.state_dir, &self.inner.topology(), &stores);
        let topology = self.topology();
        let health = stores
            .iter()
            .map(|(n, s)| {
                let notation = controllers.get(n).map_or(Notation::PLAIN, |c| c.notation());
                let spec = topology.stores.iter().find(|t| &t.name == n);
                let verdict = s
                    .as_ref()
                    .map(|s| health::assess(s, spec, &notation))
                    .map_err(Clone::clone);
                (n.clone(), verdict)
            })
            .collect();
        Ok(StateReport {
            unfinished: self.inner.open_execution()?,
            topology,
            stores,
            health,
        })
    }

    /// `switchover` moves only what can be fenced and caught up: refused
    /// ([`ErrorKind::Refused`]), naming the store, unless every store has one
    /// reachable, writable primary now. `to` is the requested region, so the
    /// refusal's suggestion is a command the operator can paste.
    pub async fn refuse_unfenceable(&self, to: Option<&str>) -> Result<(), ServiceError> {
        let state = self.state().await?;
        for (store, h) in &state.health {
            let why = match h {
                Err(e) => Some(format!("cannot be observed: {e}")),
                Ok(h) if h.primary.is_none() || h.problem.is_some() => {
                    Some(h.problem.clone().unwrap_or_else(|| "no primary".into()))
                }
                Ok(_) => None,
            };
            if let Some(why) = why {
                return Err(ServiceError::new(
                    ErrorKind::Refused,
                    format!(
                        "switchover refused, nothing was done: store `{store}`: {why}; its old primary cannot be fenced. \
                         If its region is gone: `switchyard failover --to {} --forced`",
                        to.unwrap_or("REGION")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A dry run: the plan a failover would run, `None` when every store is
    /// primary in the target already.
    pub async fn plan(&self, req: &PlanRequest) -> Result<Option<Plan>, ServiceError> {
        self.target_region(&req.to)?;
        self.candidates(req)?;
        let controllers = self.controllers()?;
        self.inner.make_plan(&controllers, req, None).await
    }

    /// Take the lock and plan what `req` asks, refusing while an unfinished
    /// execution exists or a damaged one touched the same stores. `None`:
    /// nothing to do (every store is primary in the target already).
    pub async fn prepare(&self, req: &StartRequest) -> Result<Option<Pending>, ServiceError> {
        let (what, kind) = match req {
            StartRequest::Failover(p) => {
                self.target_region(&p.to)?;
                self.candidates(p)?;
                ("failover", "failover")
            }
            StartRequest::PlanFile(_) | StartRequest::PlanText { .. } => ("run", "run"),
        };
        // Connect to every store while the lock is taken and the journals
        // are read: the plan's observation then finds its sessions open.
        // (Only connecting: nothing is observed before the lock is held.)
        let built = self.controllers();
        let warming = built.as_ref().ok().map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                futures::future::join_all(c.values().map(|c| c.warm_up())).await;
            })
        });
        // The token's fsyncs go on while the journals are read and the
        // stores observed; launch waits for them before the journal exists.
        let guard = self.inner.lock_deferred(what)?;
        self.inner.refuse_unfinished()?;
        let controllers = built?;
        if let Some(w) = warming {
            let _ = w.await;
        }
        let plan = match req {
            StartRequest::Failover(p) => match self.inner.make_plan(&controllers, p, None).await? {
                Some(plan) => plan,
                None => return Ok(None),
            },
            StartRequest::PlanFile(file) => {
                let caps = capabilities(&controllers);
                load_plan(file, &self.inner.topology(), &caps).map_err(|e| {
                    ServiceError::usage(format!("plan rejected, nothing was run:\n{e}"))
                })?
            }
            StartRequest::PlanText { source, text } => {
                let caps = capabilities(&controllers);
                crate::validate::load_plan_text(source, text, &self.inner.topology(), &caps)
                    .map_err(|e| {
                        ServiceError::usage(format!("plan rejected, nothing was run:\n{e}"))
                    })?
            }
        };
        let warnings = self.inner.refuse_damaged(&plan)?;
        Ok(Some(Pending {
            guard,
            controllers,
            plan,
            kind,
            warnings,
            by: crate::approval::os_user(),
        }))
    }

    /// Journal the start of a pending execution; the returned execution is
    /// ready to be driven (or spawned).
    pub fn launch(
        &self,
        pending: Pending,
        sink: Arc<dyn EventSink>,
    ) -> Result<Launched, ServiceError> {
        let Pending {
            guard,
            controllers,
            plan,
            kind,
            by,
            ..
        } = pending;
        self.inner.launch(
            &guard,
            &controllers,
            plan,
            Start { kind, by: &by },
            None,
            self.tee(sink),
        )
    }

    /// Start a pending execution and drive it to its end.
    pub async fn run(
        &self,
        pending: Pending,
        sink: Arc<dyn EventSink>,
    ) -> Result<Finished, ServiceError> {
        self.launch(pending, sink)?.run().await
    }

    /// The unfinished execution, if any (what `resume` and `abort` default to).
    pub fn unfinished(&self) -> Result<Option<String>, ServiceError> {
        self.inner.unfinished()
    }

    /// Take the lock and journal the resume of execution `id` (default: the
    /// unfinished one), refusing one that ended, is damaged, or was
    /// superseded (by a journal here or by a store's recorded fencing token).
    pub async fn resume(
        &self,
        id: Option<String>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Launched, ServiceError> {
        let guard = self.inner.lock("resume")?;
        let controllers = self.controllers()?;
        let id = match id {
            Some(id) => id,
            None => self.inner.unfinished()?.ok_or_else(|| {
                ServiceError::usage(
                    "nothing to resume: every execution has finished or was aborted",
                )
            })?,
        };
        self.inner
            .resume(&controllers, guard, &id, self.tee(sink))
            .await
    }

    /// Take the lock and decide how to end execution `id` (default: the
    /// unfinished one) from its journal and what every store shows now
    /// (see [`crate::abort`]).
    pub async fn prepare_abort(&self, id: Option<String>) -> Result<PendingAbort, ServiceError> {
        let guard = self.inner.lock("abort")?;
        let controllers = self.controllers()?;
        let id = match id {
            Some(id) => id,
            None => self
                .inner
                .unfinished()?
                .ok_or_else(|| ServiceError::usage("nothing to abort: no unfinished execution"))?,
        };
        let planned = self.inner.plan_abort(&controllers, &id).await?;
        Ok(PendingAbort {
            guard,
            controllers,
            id,
            planned,
            by: crate::approval::os_user(),
        })
    }

    /// Run an abort as an execution of its own (closing the aborted one once
    /// its start is durable), then judge it by observing every store.
    pub async fn abort(
        &self,
        pending: PendingAbort,
        sink: Arc<dyn EventSink>,
    ) -> Result<Aborted, ServiceError> {
        let PendingAbort {
            guard,
            controllers,
            id,
            planned,
            by,
        } = pending;
        let inner = &self.inner;
        let decided: Vec<StoreStatus> = planned
            .decisions
            .iter()
            .map(|d| StoreStatus {
                store: d.store.clone(),
                summary: d.decision.to_string(),
            })
            .collect();
        let run = match planned.plan.clone() {
            Some(plan) => {
                let launched = inner.launch(
                    &guard,
                    &controllers,
                    plan,
                    Start {
                        kind: crate::abort::KIND,
                        by: &by,
                    },
                    Some(Supersedes {
                        id: &id,
                        stores: decided,
                    }),
                    self.tee(sink),
                )?;
                Some(launched.run().await?)
            }
            // Every store is stuck: nothing to run, but the execution is over
            // (its stores need the fixes, not a resume).
            None => {
                inner.close(&id, guard.token(), decided)?;
                None
            }
        };
        // The verdict comes from the stores, observed after the abort ran.
        let after = observe_all(&controllers).await;
        let verdicts = planned.verdicts(&after, &id, run.as_ref().map(|r| r.id.as_str()));
        let topology = self.topology();
        let summaries = after
            .iter()
            .map(|(n, s)| {
                let line = match s {
                    Ok(s) => summary_of(s, &topology),
                    Err(e) => format!("cannot observe: {e}"),
                };
                (n.clone(), line)
            })
            .collect();
        Ok(Aborted {
            id,
            run,
            verdicts,
            after,
            summaries,
        })
    }

    /// Take the lock and plan the rollback of execution `id` (default: the
    /// unfinished one) from its journal and what every store shows now;
    /// refused ([`ErrorKind::Refused`]), naming each store and why, when the
    /// way back would lose data.
    pub async fn prepare_rollback(
        &self,
        id: Option<String>,
        timeouts: crate::rollback::Timeouts,
        candidates: &[String],
    ) -> Result<PendingRollback, ServiceError> {
        let guard = self.inner.lock("rollback")?;
        let controllers = self.controllers()?;
        let id = match id {
            Some(id) => id,
            None => self.inner.unfinished()?.ok_or_else(|| {
                ServiceError::usage("nothing to roll back: no unfinished execution")
            })?,
        };
        let planned = self
            .inner
            .plan_rollback(&controllers, &id, timeouts, candidates)
            .await?;
        Ok(PendingRollback {
            guard,
            controllers,
            id,
            planned,
        })
    }

    /// Run a rollback as an execution of its own (closing the rolled-back
    /// one once its start is durable). `None`: nothing to run (every store
    /// was where it started; the execution is closed).
    pub async fn rollback(
        &self,
        pending: PendingRollback,
        sink: Arc<dyn EventSink>,
    ) -> Result<Option<Finished>, ServiceError> {
        let PendingRollback {
            guard,
            controllers,
            id,
            planned,
        } = pending;
        self.inner
            .run_rollback(
                &guard,
                &controllers,
                &id,
                planned,
                self.tee(sink),
                &crate::approval::os_user(),
            )
            .await
    }

    /// `switchyard approve ID`: approve execution `id` as the OS user of this
    /// process, or as the holder of `token` (see [`crate::approval`]).
    pub fn approve(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<crate::approval::ApprovalDecision, ServiceError> {
        let policy = crate::policy::load(&self.inner.topology_file).map_err(usage)?;
        let _guard = self.inner.lock("approve")?;
        let store = self.inner.journals()?;
        crate::approval::approve(&*store, &policy.approvals, id, token).map_err(approve_error)
    }

    /// Approve execution `id` as `who` (the server's caller), or journal
    /// the refusal of someone who may not approve (`Err((who, why))`).
    pub fn approve_as(
        &self,
        id: &str,
        who: Result<Identity, (Identity, String)>,
    ) -> Result<crate::approval::ApprovalDecision, ServiceError> {
        let _guard = self.inner.lock("approve")?;
        let store = self.inner.journals()?;
        crate::approval::approve_as(&*store, id, who).map_err(approve_error)
    }

    /// Take the lock and plan a drill to `to`: every store must be observed
    /// primary in one region, which the drill comes back to.
    pub async fn prepare_drill(
        &self,
        to: &str,
        stage_timeout_ms: u64,
        catch_up_timeout_ms: u64,
        candidates: &[String],
    ) -> Result<PendingDrill, ServiceError> {
        self.target_region(to)?;
        let req = PlanRequest {
            to: to.to_string(),
            mode: Mode::Planned,
            stage_timeout_ms,
            catch_up_timeout_ms,
            // The way out's candidates; the way back chooses as always.
            candidates: candidates.to_vec(),
        };
        // Checked before the lock is taken or anything observed.
        self.candidates(&req)?;
        let inner = &self.inner;
        let guard = inner.lock("drill")?;
        inner.refuse_unfinished()?;
        let controllers = self.controllers()?;
        let refused = |m: String| ServiceError::new(ErrorKind::Refused, m);
        // Where to come back to: the region every store is primary in now.
        let t = std::time::Instant::now();
        let states = observe_all(&controllers).await;
        let observe_time = t.elapsed();
        let mut origins = vec![];
        for (n, s) in &states {
            match s {
                Ok(s) => match s.primary_region() {
                    Some(r) => origins.push((n.clone(), r.to_string())),
                    None => {
                        return Err(refused(format!(
                            "drill refused: store `{n}` has {}",
                            summary_of(s, &self.topology())
                        )))
                    }
                },
                Err(e) => return Err(refused(format!("drill refused: cannot observe `{n}`: {e}"))),
            }
        }
        let origin = origins[0].1.clone();
        if let Some((n, r)) = origins.iter().find(|(_, r)| *r != origin) {
            return Err(refused(format!(
                "drill refused: stores are primary in different regions (`{}` in {origin}, `{n}` in {r})",
                origins[0].0
            )));
        }
        if origin == to {
            return Err(ServiceError::usage(format!(
                "every store is already primary in {to}; drill to another region"
            )));
        }
        let out = inner
            .make_plan(&controllers, &req, Some(&states))
            .await?
            .ok_or_else(|| {
                ServiceError::usage(format!("every store is already primary in {to}"))
            })?;
        // A planned execution: refused, never warned about.
        inner.refuse_damaged(&out)?;
        let expected: Observations = states
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    s.as_ref()
                        .map(|s| expected_after(s, to))
                        .map_err(Clone::clone),
                )
            })
            .collect();
        let back_req = PlanRequest {
            to: origin.clone(),
            candidates: vec![],
            ..req
        };
        let back = inner
            .make_plan(&controllers, &back_req, Some(&expected))
            .await?;
        Ok(PendingDrill {
            guard,
            controllers,
            origin,
            to: to.to_string(),
            out,
            back,
            expected,
            stage_timeout_ms,
            catch_up_timeout_ms,
            observe_time,
        })
    }

    /// Fail over, verify by a fresh observation of every store, fail back.
    pub async fn drill(
        &self,
        pending: PendingDrill,
        sink: Arc<dyn EventSink>,
    ) -> Result<Drilled, ServiceError> {
        let PendingDrill {
            guard,
            controllers,
            origin,
            to,
            out,
            stage_timeout_ms,
            back: _,
            expected: _,
            catch_up_timeout_ms,
            mut observe_time,
        } = pending;
        let inner = &self.inner;
        let tee = self.tee(sink);
        let me = crate::approval::os_user();
        let out = inner
            .launch(
                &guard,
                &controllers,
                out,
                Start {
                    kind: "drill-out",
                    by: &me,
                },
                None,
                tee.clone(),
            )?
            .run()
            .await?;
        if out.outcome != Outcome::Succeeded {
            return Ok(Drilled::Stopped(out));
        }
        let failed = |m: String| ServiceError::new(ErrorKind::Failed, m);
        // Verify independently of the checkpoints: a fresh observation of every store.
        let t = std::time::Instant::now();
        let verified = observe_all(&controllers).await;
        observe_time += t.elapsed();
        for (n, s) in &verified {
            match s {
                Ok(s) if s.primary_region() == Some(to.as_str()) => {}
                Ok(s) => {
                    return Err(failed(format!(
                        "drill verification failed: `{n}` has {}",
                        summary_of(s, &self.topology())
                    )))
                }
                Err(e) => {
                    return Err(failed(format!(
                        "drill verification failed: cannot observe `{n}`: {e}"
                    )))
                }
            }
        }
        let req = PlanRequest {
            to: origin.clone(),
            mode: Mode::Planned,
            stage_timeout_ms,
            catch_up_timeout_ms,
            candidates: vec![],
        };
        let back = inner
            .make_plan(&controllers, &req, Some(&verified))
            .await?
            .ok_or_else(|| {
                ServiceError::usage(format!("every store is already primary in {origin}"))
            })?;
        // The way back is an execution of its own, so it needs a fencing
        // token of its own: stores refuse an equal token from a different
        // execution. Taking the lock again bumps it.
        drop(guard);
        let guard = inner.lock("drill")?;
        let back = inner
            .launch(
                &guard,
                &controllers,
                back,
                Start {
                    kind: "drill-back",
                    by: &me,
                },
                None,
                tee,
            )?
            .run()
            .await?;
        let store = inner.journals()?;
        let reports: Vec<ExecutionReport> = [&out.id, &back.id]
            .iter()
            .filter_map(|id| {
                store
                    .read(id)
                    .ok()
                    .map(|r| ExecutionReport::from_records_in(id, &r, Some(&inner.topology())))
            })
            .collect();
        Ok(Drilled::Completed {
            origin,
            to,
            observe_ms: observe_time.as_millis() as u64,
            reports,
            back,
        })
    }

    /// Every execution, oldest first, with damaged journals and superseded
    /// executions marked.
    pub fn executions(&self) -> Result<Vec<LedgerEntry>, ServiceError> {
        let store = self.inner.journals()?;
        ledger(&*store).map_err(usage)
    }

    /// One execution's journal and report (`latest`: the newest); a damaged
    /// journal is shown as far as it can be read.
    pub fn show(&self, id: &str) -> Result<Shown, ServiceError> {
        let store = self.inner.journals()?;
        let id = if id == "latest" {
            store
                .list()
                .map_err(usage)?
                .pop()
                .ok_or_else(|| ServiceError::usage("no executions yet"))?
        } else {
            id.to_string()
        };
        let scan = store.scan(&id).map_err(usage)?;
        let report =
            ExecutionReport::from_records_in(&id, &scan.records, Some(&self.inner.topology()));
        Ok(Shown {
            id,
            records: scan.records,
            damage: scan.damage,
            report,
        })
    }

    /// End an execution that can be neither resumed nor aborted (damaged,
    /// or superseded), journaling why; nothing is issued to any store.
    pub fn close(&self, id: &str, reason: &str) -> Result<ClosedExecution, ServiceError> {
        let inner = &self.inner;
        let store = inner.journals()?;
        if reason.trim().is_empty() {
            return Err(ServiceError::usage(
                "--reason must say why closing is safe (what was checked on the stores)",
            ));
        }
        let guard = inner.lock("executions close")?;
        let ledger = ledger(&*store).map_err(usage)?;
        let entry = ledger
            .iter()
            .find(|e| e.summary.id == id)
            .ok_or_else(|| ServiceError::usage(format!("no execution `{id}`")))?;
        let status = entry.summary.status;
        let closable = entry.is_damaged()
            || status == ExecutionStatus::Empty
            || (entry.is_open() && entry.superseded_by.is_some());
        if status == ExecutionStatus::Closed {
            return Err(ServiceError::usage(format!(
                "execution {id} is already closed"
            )));
        }
        if !closable {
            return Err(ServiceError::usage(if entry.is_open() {
                format!(
                    "execution {id} is {status}, its journal is whole and nothing superseded it: \
                     `switchyard resume {id}` or `switchyard abort {id}` (close is for damaged or \
                     superseded executions)"
                )
            } else {
                format!("execution {id} has already ended ({status})")
            }));
        }
        let damage: Vec<String> = entry.damage.iter().map(|d| d.to_string()).collect();
        store
            .open(id)
            .and_then(|mut j| {
                j.append(&Record::Closed {
                    fencing_token: guard.token(),
                    at_ms: now_ms(),
                    reason: reason.to_string(),
                    damage: damage.clone(),
                })
            })
            .map_err(usage)?;
        Ok(ClosedExecution {
            id: id.to_string(),
            reason: reason.to_string(),
            damage,
        })
    }

    /// The newest execution journaled as waiting for approval, shown (what
    /// a refused start with [`ErrorKind::PendingApproval`] left behind).
    pub fn newest_pending_approval(&self) -> Option<Shown> {
        let list = self.executions().ok()?;
        let e = list
            .iter()
            .rev()
            .find(|e| e.summary.status == ExecutionStatus::PendingApproval)?;
        self.show(&e.summary.id).ok()
    }

    fn tee(&self, sink: Arc<dyn EventSink>) -> Arc<Tee> {
        Arc::new(Tee {
            sink,
            events: self.inner.events.clone(),
            current: Mutex::new(String::new()),
        })
    }
}

/// An execution that ends another one: the execution `id` being aborted,
/// closed with `stores` once the new execution's start record is durable
/// (so there is never a moment with neither journaled).
struct Supersedes<'a> {
    id: &'a str,
    stores: Vec<StoreStatus>,
}

/// The kind of a new execution and who starts it: both journaled first.
struct Start<'a> {
    kind: &'a str,
    by: &'a Identity,
}

impl Inner {
    fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn controllers(&self) -> Result<Arc<Controllers>, ServiceError> {
        let mut built = self.controllers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = built.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(controllers_in(&self.topology(), Some(&self.state_dir)).map_err(usage)?);
        *built = Some(c.clone());
        Ok(c)
    }

    /// Where journals live: the state directory's files, or the
    /// coordination backend when the service runs in `serve` on one
    /// (written under this server's leadership, read by every server).
    fn journals(&self) -> Result<Arc<dyn JournalStore>, ServiceError> {
        if let Some(c) = self.coordination.get() {
            return Ok(Arc::new(c.journals()));
        }
        Ok(Arc::new(
            FileJournalStore::new(&self.state_dir).map_err(usage)?,
        ))
    }

    /// The right to run one execution, with its fencing token: the state
    /// directory's lock, or — in `serve` — this server's leadership with a
    /// fresh token from the backend (refused on a server that does not lead).
    fn lock(&self, what: &str) -> Result<Arc<dyn LockGuard>, ServiceError> {
        let guard = self.lock_deferred(what)?;
        guard.durable().map_err(|e| usage(format!("{what}: {e}")))?;
        Ok(guard)
    }

    /// [`Inner::lock`], its fencing token possibly not durable yet: for a
    /// caller that observes before it journals, and calls
    /// [`LockGuard::durable`] before anything names the token.
    fn lock_deferred(&self, what: &str) -> Result<Arc<dyn LockGuard>, ServiceError> {
        if let Some(c) = self.coordination.get() {
            return c
                .lock()
                .map(|g| Arc::new(g) as Arc<dyn LockGuard>)
                .map_err(|e| ServiceError::new(ErrorKind::Locked, format!("{what}: {e}")));
        }
        let lock = FileLock::new(&self.state_dir).map_err(usage)?;
        let holder = format!(
            "pid {} `switchyard {what}` since {}",
            std::process::id(),
            format_ms(now_ms())
        );
        lock.try_acquire(&holder)
            .map(Arc::from)
            .map_err(|e| match e {
                LockError::Held { .. } => ServiceError::new(ErrorKind::Locked, e.to_string()),
                other => usage(other),
            })
    }

    /// Plan a failover of every store to `req.to`. Stores observed
    /// (read-only) to be primary there already are left alone; `None` when
    /// that is every store.
    async fn make_plan(
        &self,
        controllers: &Controllers,
        req: &PlanRequest,
        observed: Option<&Observations>,
    ) -> Result<Option<Plan>, ServiceError> {
        let to = req.to.as_str();
        let caps = capabilities(controllers);
        let mut opts = PlanOptions::new(to, req.mode);
        opts.stage_timeout_ms = req.stage_timeout_ms;
        opts.catch_up_timeout_ms = req.catch_up_timeout_ms;
        opts.candidates = crate::candidate::resolve(&self.topology(), to, &req.candidates)
            .map_err(|e| ServiceError::usage(format!("{}: {e}", self.topology_file.display())))?;
        let fresh;
        let observed = match observed {
            Some(o) => o,
            None => {
                fresh = observe_all(controllers).await;
                &fresh
            }
        };
        let mut settled = 0;
        for (name, s) in observed {
            let Ok(s) = s else { continue };
            // With a split brain the primary is the one on the newest history.
            if let (Some(p), Some(c)) = (s.newest_primary(), opts.candidates.get(name)) {
                if p.region == to && &p.name != c {
                    return Err(ServiceError::new(
                        ErrorKind::Refused,
                        format!(
                            "store `{name}`: {}; nothing was done",
                            switchyard_controller::operation::other_primary_in_target(
                                &p.name, to, c
                            )
                        ),
                    ));
                }
            }
            if s.newest_primary().is_some_and(|p| p.region == to) {
                opts.already_there.insert(name.clone());
                let sticky = caps.get(name).is_some_and(|c| c.sticky_priorities);
                // A member back from a loss that only a rejoin restores.
                let rejoin = caps.get(name).is_some_and(|c| c.rejoin)
                    && s.members.iter().any(|m| m.reachable && m.awaits_rejoin);
                if rejoin {
                    opts.rejoin_there.insert(name.clone());
                } else if !sticky || crate::expectation::preferred_in(to).check(s).is_ok() {
                    settled += 1;
                }
            }
            if !s.stale_primaries().is_empty() {
                opts.stale_primaries.insert(name.clone());
            }
        }
        if settled == self.topology().stores.len() && opts.stale_primaries.is_empty() {
            return Ok(None);
        }
        let plan = plan_failover(&self.topology(), &caps, &opts)
            .map_err(|e| ServiceError::usage(format!("cannot plan: {e}")))?;
        validate(&plan, &self.topology(), &caps)
            .map_err(|e| ServiceError::usage(format!("generated plan is invalid (a bug):\n{e}")))?;
        Ok(Some(plan))
    }

    /// The most recent execution that is neither finished nor aborted, nor
    /// superseded by a later one, and whose journal is whole. (A damaged one
    /// is [`Inner::refuse_damaged`]'s business: it blocks only the stores it
    /// touched.)
    fn unfinished(&self) -> Result<Option<String>, ServiceError> {
        let store = self.journals()?;
        let ledger = ledger(&*store).map_err(usage)?;
        Ok(ledger
            .into_iter()
            .rev()
            .find(|e| e.is_open() && e.superseded_by.is_none() && !e.is_damaged())
            .map(|e| e.summary.id))
    }

    /// The open execution `state` leads with: like [`Inner::unfinished`],
    /// but a damaged one is shown too (saying so).
    fn open_execution(&self) -> Result<Option<health::Unfinished>, ServiceError> {
        let store = self.journals()?;
        let ledger = ledger(&*store).map_err(usage)?;
        Ok(ledger
            .into_iter()
            .rev()
            .find(|e| e.is_open() && e.superseded_by.is_none())
            .map(|e| health::Unfinished {
                status: if e.is_damaged() {
                    format!("{}, journal damaged", e.summary.status)
                } else {
                    e.summary.status.to_string()
                },
                id: e.summary.id,
                plan: e.summary.plan,
            }))
    }

    fn refuse_unfinished(&self) -> Result<(), ServiceError> {
        match self.unfinished()? {
            Some(id) => Err(ServiceError::new(
                ErrorKind::Locked,
                format!(
                    "execution {id} is unfinished: `switchyard resume` or `switchyard abort` it first"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuse a new planned execution over a store that a damaged, unclosed,
    /// unfinished execution touched (every store when its plan is
    /// unreadable): that store may be mid-failover and no journal says how
    /// far it got. A forced failover is never refused for it (the region is
    /// gone; waiting helps nobody) — it is warned about.
    fn refuse_damaged(&self, plan: &Plan) -> Result<Vec<String>, ServiceError> {
        let mut warnings = vec![];
        let store = self.journals()?;
        let mine = plan_stores(plan);
        for e in ledger(&*store).map_err(usage)? {
            if !e.blocks() {
                continue;
            }
            let id = &e.summary.id;
            let note = e.damage_note().unwrap_or_default();
            let shared: Vec<&String> = match &e.stores {
                Some(theirs) => mine.intersection(theirs).collect(),
                None => mine.iter().collect(),
            };
            if shared.is_empty() {
                continue;
            }
            let what = match &e.stores {
                Some(_) => format!(
                    "it changed {}",
                    shared
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "its plan is unreadable, so it may have changed any store".into(),
            };
            if plan.mode != Mode::Planned {
                warnings.push(format!(
                    "execution {id} is damaged ({note}) and unfinished; {what}. \
                     Going ahead: a forced failover is not blocked by it."
                ));
                continue;
            }
            return Err(ServiceError::new(
                ErrorKind::Locked,
                format!(
                    "execution {id} is damaged: {note}; it is unfinished and {what}, and no journal \
                     says how far it got. Check those stores (`switchyard state`), then \
                     `switchyard executions close {id} --reason TEXT`. (A forced failover is not \
                     blocked by it.)"
                ),
            ));
        }
        Ok(warnings)
    }

    /// Journal the start of a new execution (closing the one it supersedes
    /// right after), ready to drive.
    fn launch(
        self: &Arc<Self>,
        guard: &Arc<dyn LockGuard>,
        controllers: &Arc<Controllers>,
        plan: Plan,
        start: Start<'_>,
        supersedes: Option<Supersedes<'_>>,
        tee: Arc<Tee>,
    ) -> Result<Launched, ServiceError> {
        let Start { kind, by } = start;
        let store = self.journals()?;
        let id = new_execution_id(kind, guard.token());
        let failpoint = Failpoint::from_env().map_err(ServiceError::usage)?;
        let started = Record::Started {
            execution_id: id.clone(),
            fencing_token: guard.token(),
            at_ms: now_ms(),
            kind: kind.into(),
            topology_file: self.topology_file.display().to_string(),
            store_kinds: crate::journal::plan_store_kinds(&plan, &self.topology()),
            plan: plan.clone(),
        };
        // Read before the journal exists: a bad policy file starts nothing.
        let policy = crate::policy::load(&self.topology_file).map_err(usage)?;
        let reasons = crate::approval::reasons(&policy.approvals, &plan, &self.topology());
        let expire_after_s = policy.approvals.expire_after_s;
        let safety = self.boundaries(
            policy,
            controllers,
            &id,
            kind,
            std::slice::from_ref(&started),
        );
        // The journal names the token, and the first mutating intent hands
        // it to a store: it is durable before either.
        guard.durable().map_err(|e| usage(format!("{kind}: {e}")))?;
        let mut journal = store.create(&id, &started).map_err(usage)?;
        // Durable with the next durable record (an approval request, the
        // first mutating intent): lost only with a journal of nothing done.
        journal
            .append_lazy(&Record::StartedBy {
                at_ms: now_ms(),
                by: by.clone(),
            })
            .map_err(usage)?;
        tee.driving(&id);
        let needs_approval =
            !reasons.is_empty() && kind != crate::abort::KIND && kind != crate::rollback::KIND;
        if supersedes.is_some() || needs_approval {
            // The new journal is durable before it closes the old one, or
            // before another handle appends the approval request to it.
            journal.sync().map_err(usage)?;
        }
        if let Some(old) = supersedes {
            self.close(old.id, guard.token(), old.stores)?;
        }
        // An abort or a rollback is never held back: each ends or undoes an
        // execution that was already allowed to run.
        if needs_approval {
            return Err(request_approval(&*store, &id, reasons, expire_after_s, by)?);
        }
        let driver = Driver::new(
            controllers.clone(),
            journal,
            guard.clone(),
            &id,
            tee.clone(),
            1,
        )
        .with_failpoint(failpoint)
        .with_boundaries(safety);
        tee.event(&ProgressEvent::ExecutionStarted {
            execution_id: id.clone(),
            plan: plan.name.clone(),
            fencing_token: guard.token(),
            resumed: false,
            stages: plan.stages.len(),
        });
        Ok(Launched {
            id,
            driver,
            executor: Executor::new(plan),
            service: self.clone(),
            sink: tee.clone(),
            tee,
            guard: guard.clone(),
            controllers: controllers.clone(),
            kind: kind.to_string(),
            by: by.clone(),
        })
    }

    /// Journal the end of execution `id` (unless it has ended already).
    fn close(
        &self,
        id: &str,
        fencing_token: FencingToken,
        stores: Vec<StoreStatus>,
    ) -> Result<(), ServiceError> {
        let journals = self.journals()?;
        let recs = journals.read(id).map_err(usage)?;
        if matches!(
            summarize(id, &recs).status,
            ExecutionStatus::Aborted | ExecutionStatus::Refused | ExecutionStatus::Succeeded
        ) {
            return Ok(());
        }
        journals
            .open(id)
            .and_then(|mut j| {
                j.append(&Record::Aborted {
                    fencing_token,
                    at_ms: now_ms(),
                    stores,
                })
            })
            .map_err(usage)
    }

    async fn resume(
        self: &Arc<Self>,
        controllers: &Arc<Controllers>,
        guard: Arc<dyn LockGuard>,
        id: &str,
        tee: Arc<Tee>,
    ) -> Result<Launched, ServiceError> {
        let store = self.journals()?;
        let mut recs = store.read(id).map_err(|e| match e {
            JournalError::Corrupt { .. } => ServiceError::usage(format!(
                "{e}\nexecution {id} is damaged and cannot be resumed: a record it depends on is \
                 lost, so nothing of it is issued again. Check its stores (`switchyard state`), \
                 then `switchyard executions close {id} --reason TEXT`."
            )),
            e => usage(e),
        })?;
        match summarize(id, &recs).status {
            ExecutionStatus::Succeeded => {
                return Err(ServiceError::usage(format!(
                    "execution {id} already succeeded"
                )))
            }
            ExecutionStatus::Aborted => {
                return Err(ServiceError::usage(format!("execution {id} was aborted")))
            }
            ExecutionStatus::Refused => {
                return Err(ServiceError::usage(format!(
                    "execution {id} was refused before it changed any store; nothing to resume"
                )))
            }
            ExecutionStatus::Closed => {
                return Err(ServiceError::usage(format!("execution {id} was closed")))
            }
            ExecutionStatus::Empty => {
                return Err(ServiceError::usage(format!(
                    "execution {id} never started (its journal is empty); nothing to resume"
                )))
            }
            _ => {}
        }
        if let Some(state) = crate::approval::ApprovalState::of(&recs) {
            if let Some(why) = state.blocks_start(id, now_ms()) {
                let kind = if state.approved_by.is_none() {
                    ErrorKind::PendingApproval
                } else {
                    ErrorKind::Refused
                };
                return Err(ServiceError::new(kind, why));
            }
        }
        refuse_superseded(&*store, id)?;
        refuse_superseded_on_stores(controllers, &recs, id).await?;
        tee.driving(id);
        let kind = summarize(id, &recs).kind;
        let policy = crate::policy::load(&self.topology_file).map_err(usage)?;
        let safety = self.boundaries(policy, controllers, id, &kind, &recs);
        let next_seq = crate::journal::next_seq(&recs);
        let journal = store.open(id).map_err(usage)?;
        let fencing_token = guard.token();
        let mut driver = Driver::new(
            controllers.clone(),
            journal,
            guard.clone(),
            id,
            tee.clone(),
            next_seq,
        )
        .with_failpoint(Failpoint::from_env().map_err(ServiceError::usage)?)
        .with_boundaries(safety);
        let resumed = Record::Resumed {
            fencing_token,
            at_ms: now_ms(),
        };
        driver.record(&resumed).map_err(usage)?;
        recs.push(resumed);
        let ex = Executor::replay(&recs)
            .ok_or_else(|| ServiceError::usage(format!("journal of {id} has no start record")))?;
        let caps = capabilities(controllers);
        validate(ex.plan(), &self.topology(), &caps).map_err(|e| {
            ServiceError::usage(format!(
                "the journaled plan no longer fits the topology:\n{e}"
            ))
        })?;
        tee.event(&ProgressEvent::ExecutionStarted {
            execution_id: id.into(),
            plan: ex.plan().name.clone(),
            fencing_token,
            resumed: true,
            stages: ex.plan().stages.len(),
        });
        // What earlier processes did, from the journal, before this one
        // goes on live: a resumed execution's progress is the whole of it.
        for ev in crate::progress::before_resume(&recs) {
            tee.event(&ev);
        }
        Ok(Launched {
            id: id.to_string(),
            driver,
            executor: ex,
            service: self.clone(),
            sink: tee.clone(),
            tee,
            guard,
            controllers: controllers.clone(),
            kind,
            by: crate::approval::os_user(),
        })
    }

    async fn plan_abort(
        &self,
        controllers: &Controllers,
        id: &str,
    ) -> Result<crate::abort::AbortPlan, ServiceError> {
        let store = self.journals()?;
        let recs = store.read(id).map_err(usage)?;
        if summarize(id, &recs).status == ExecutionStatus::Succeeded {
            return Err(ServiceError::usage(format!(
                "execution {id} succeeded: there is nothing to abort (fail back with `switchyard failover --to <region>`)"
            )));
        }
        let aborted_plan = Executor::replay(&recs)
            .ok_or_else(|| ServiceError::usage(format!("journal of {id} has no start record")))?
            .plan()
            .clone();
        // Aborting an interrupted abort: what the execution it was aborting
        // may have done counts too (its fences, its first checkpoint's store terms).
        let mut recs = recs;
        if let Some(first) = crate::abort::aborted_by(&aborted_plan) {
            if let Ok(mut earlier) = store.read(first) {
                earlier.append(&mut recs);
                recs = earlier;
            }
        }
        let caps = capabilities(controllers);
        let observed = observe_settled(controllers, &recs, &caps).await;
        let planned =
            crate::abort::plan_abort(&self.topology(), &caps, id, &aborted_plan, &recs, &observed);
        if let Some(plan) = &planned.plan {
            validate(plan, &self.topology(), &caps).map_err(|e| {
                ServiceError::usage(format!(
                    "the abort plan is invalid (a bug), nothing was run:\n{e}"
                ))
            })?;
        }
        Ok(planned)
    }

    /// The safety policy applied to execution `id` (gates and hooks).
    fn boundaries(
        &self,
        policy: crate::policy::Policy,
        controllers: &Arc<Controllers>,
        id: &str,
        kind: &str,
        records: &[Record],
    ) -> Arc<dyn crate::safety::Boundaries> {
        Arc::new(crate::safety::PolicyBoundaries::new(
            policy,
            self.topology(),
            (**controllers).clone(),
            self.state_dir.clone(),
            self.journals().map_err(|e| e.to_string()),
            id,
            kind,
            records,
        ))
    }

    /// Plan the rollback of `id` from its journal and the settled stores.
    async fn plan_rollback(
        &self,
        controllers: &Controllers,
        id: &str,
        timeouts: crate::rollback::Timeouts,
        candidates: &[String],
    ) -> Result<crate::rollback::RollbackPlan, ServiceError> {
        let store = self.journals()?;
        let recs = store.read(id).map_err(usage)?;
        let status = summarize(id, &recs).status;
        if matches!(
            status,
            ExecutionStatus::Aborted
                | ExecutionStatus::Closed
                | ExecutionStatus::Empty
                | ExecutionStatus::PendingApproval
        ) {
            return Err(ServiceError::usage(format!(
                "execution {id} is {status}: there is nothing to roll back"
            )));
        }
        refuse_superseded(&*store, id)?;
        let rolled = Executor::replay(&recs)
            .ok_or_else(|| ServiceError::usage(format!("journal of {id} has no start record")))?
            .plan()
            .clone();
        let topology = self.topology();
        // `--candidate` against where each store goes back to, before
        // anything is observed: a bad one is a usage error naming it.
        let origins = crate::rollback::origins(&recs);
        let moved = crate::journal::plan_stores(&rolled);
        let chosen = crate::candidate::resolve_by(
            &topology,
            &|store| {
                moved
                    .contains(store)
                    .then(|| origins.get(store).cloned())
                    .flatten()
            },
            candidates,
        )
        .map_err(|e| ServiceError::usage(format!("{}: {e}", self.topology_file.display())))?;
        let caps = capabilities(controllers);
        let observed = observe_settled(controllers, &recs, &caps).await;
        let planned = crate::rollback::plan_rollback(
            &topology, &caps, id, &rolled, &recs, &observed, timeouts, &chosen,
        )
        .map_err(|refusals| {
            ServiceError::new(
                ErrorKind::Refused,
                format!(
                    "rollback of {id} refused, nothing was run:\n{}",
                    refusals
                        .iter()
                        .map(|r| format!("  {r}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            )
        })?;
        if let Some(plan) = &planned.plan {
            validate(plan, &topology, &caps).map_err(|e| {
                ServiceError::usage(format!(
                    "the rollback plan is invalid (a bug), nothing was run:\n{e}"
                ))
            })?;
        }
        Ok(planned)
    }

    /// Run a planned rollback of `id` as an execution superseding it.
    async fn run_rollback(
        self: &Arc<Self>,
        guard: &Arc<dyn LockGuard>,
        controllers: &Arc<Controllers>,
        id: &str,
        planned: crate::rollback::RollbackPlan,
        tee: Arc<Tee>,
        by: &Identity,
    ) -> Result<Option<Finished>, ServiceError> {
        let stores: Vec<StoreStatus> = planned
            .actions
            .iter()
            .map(|(s, a)| StoreStatus {
                store: s.clone(),
                summary: format!("rolled back: {a}"),
            })
            .collect();
        let Some(plan) = planned.plan else {
            self.close(id, guard.token(), stores)?;
            return Ok(None);
        };
        let launched = self.launch(
            guard,
            controllers,
            plan,
            Start {
                kind: crate::rollback::KIND,
                by,
            },
            Some(Supersedes { id, stores }),
            tee,
        )?;
        Ok(Some(launched.run().await?))
    }

    fn finish(
        &self,
        id: &str,
        end: Result<RunEnd, DriverError>,
        sink: &dyn EventSink,
    ) -> Result<Finished, ServiceError> {
        let (outcome, reason) = match end {
            Ok(RunEnd::Succeeded) => (Outcome::Succeeded, None),
            Ok(RunEnd::Failed {
                reason, refused, ..
            }) => (
                if refused { Outcome::Refused } else { Outcome::Failed },
                Some(format!("{reason}; the execution is resumable: `switchyard resume {id}` or `switchyard abort {id}`")),
            ),
            Ok(RunEnd::Aborted) => (Outcome::Aborted, None),
            Err(e) => (
                Outcome::Failed,
                Some(format!("{e}; `switchyard resume {id}` continues from the journal")),
            ),
        };
        let journals = self.journals()?;
        let mut recs = journals.read(id).map_err(usage)?;
        // A failure before anything was changed (readiness refused, readiness
        // checkpoint not met) leaves nothing to resume or undo: it is a
        // refusal, closed at once, so the operator can re-plan (e.g. with
        // --accept-data-loss) straight away.
        let mut reason = reason;
        let changed = recs
            .iter()
            .any(|r| matches!(r, Record::Intent { op, .. } if op.is_mutating()));
        // And a refusal (a gate, a hook) after something changed is a
        // resumable failure, not a refusal: the stores are not where they were.
        let outcome = match outcome {
            Outcome::Failed if !changed => Outcome::Refused,
            Outcome::Refused if changed => Outcome::Failed,
            o => o,
        };
        let status = match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Aborted => "aborted",
        };
        if outcome == Outcome::Refused && !changed {
            let closed = Record::Aborted {
                fencing_token: recs
                    .iter()
                    .rev()
                    .find_map(|r| match r {
                        Record::Started { fencing_token, .. }
                        | Record::Resumed { fencing_token, .. } => Some(*fencing_token),
                        _ => None,
                    })
                    .unwrap_or(FencingToken::ADHOC),
                at_ms: now_ms(),
                stores: vec![StoreStatus {
                    store: crate::journal::REFUSED_MARK.into(),
                    summary: "closed automatically: no store was changed".into(),
                }],
            };
            journals
                .open(id)
                .and_then(|mut j| j.append(&closed))
                .map_err(usage)?;
            recs.push(closed);
            reason = reason.map(|r| {
                r.split("; the execution is resumable")
                    .next()
                    .unwrap_or(&r)
                    .to_string()
                    + "; no store was changed and the execution is closed"
            });
        }
        sink.send(&ServiceEvent::Progress(ProgressEvent::ExecutionEnded {
            execution_id: id.into(),
            status: status.into(),
            reason: reason.clone(),
        }));
        let report = ExecutionReport::from_records_in(id, &recs, Some(&self.topology()));
        sink.send(&ServiceEvent::Report {
            report: report.clone(),
            reason: reason.clone(),
        });
        Ok(Finished {
            id: id.to_string(),
            outcome,
            reason,
            report,
        })
    }
}

/// Observe every store; while one may still be changing by itself (a
/// promotion in flight, an election), observe again until it settles or
/// [`ABORT_SETTLE`] passes: decide by observation, not by intent.
async fn observe_settled(
    controllers: &Controllers,
    recs: &[Record],
    caps: &BTreeMap<String, switchyard_controller::Capability>,
) -> Observations {
    let settle_until = std::time::Instant::now() + ABORT_SETTLE;
    let mut observed = observe_all(controllers).await;
    while !crate::abort::unsettled(recs, caps, &observed).is_empty()
        && std::time::Instant::now() < settle_until
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        observed = observe_all(controllers).await;
    }
    observed
}

/// Journal that the new execution `id` needs a second person's approval;
/// the error that says so (nothing runs until `switchyard approve ID` and
/// `switchyard resume ID`).
fn request_approval(
    store: &dyn JournalStore,
    id: &str,
    reasons: Vec<String>,
    expire_after_s: u64,
    requester: &Identity,
) -> Result<ServiceError, ServiceError> {
    let at_ms = now_ms();
    let request = crate::approval::ApprovalRequest {
        at_ms,
        requester: requester.clone(),
        reasons,
        expires_at_ms: at_ms + expire_after_s * 1000,
    };
    store
        .open(id)
        .and_then(|mut j| j.append(&Record::ApprovalRequested(request.clone())))
        .map_err(usage)?;
    Ok(ServiceError::new(
        ErrorKind::PendingApproval,
        format!(
            "execution {id} is pending_approval, nothing was issued: {}. Another person runs \
             `switchyard approve {id}` before {}, then `switchyard resume {id}` runs it.",
            request.reasons.join("; "),
            format_ms(request.expires_at_ms)
        ),
    ))
}

fn approve_error(e: crate::approval::ApproveError) -> ServiceError {
    match e {
        crate::approval::ApproveError::Usage(m) => ServiceError::usage(m),
        crate::approval::ApproveError::Refused(m) => ServiceError::new(ErrorKind::Refused, m),
    }
}

/// `YYYYMMDDTHHMMSSmmm-<kind>-t<fencing token>`.
fn new_execution_id(kind: &str, token: FencingToken) -> String {
    let t: String = format_ms(now_ms())
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    // YYYYMMDDTHHMMSSmmm
    format!("{}-{kind}-t{token}", &t[..t.len().min(18)])
}

/// Refuse to resume an execution a later one superseded: resuming it would
/// re-issue its fence and promote over whatever the later one did (e.g. move
/// the primary back).
fn refuse_superseded(store: &dyn JournalStore, id: &str) -> Result<(), ServiceError> {
    let ledger = ledger(store).map_err(usage)?;
    match ledger
        .iter()
        .find(|e| e.summary.id == id)
        .and_then(|e| e.superseded_by.as_ref())
    {
        Some(later) => Err(ServiceError::usage(format!(
            "execution {id} is superseded by {later}, which started after it; resuming {id} \
             would undo what {later} did, so nothing was run. \
             `switchyard executions close {id} --reason TEXT` ends it."
        ))),
        None => Ok(()),
    }
}

/// Refuse to resume an execution when one of its stores recorded a higher
/// fencing token than any this execution ran with: a later execution acted
/// there, perhaps from another state directory whose journals this one cannot
/// see. A store whose token cannot be read refuses too (it cannot be shown not
/// to be superseded); kinds that record none are judged by the journals alone.
async fn refuse_superseded_on_stores(
    controllers: &Controllers,
    recs: &[Record],
    id: &str,
) -> Result<(), ServiceError> {
    let own = recs
        .iter()
        .filter_map(|r| match r {
            Record::Started { fencing_token, .. } | Record::Resumed { fencing_token, .. } => {
                Some(*fencing_token)
            }
            _ => None,
        })
        .max()
        .unwrap_or(FencingToken::ADHOC);
    let Some(ex) = Executor::replay(recs) else {
        return Ok(());
    };
    let stores: std::collections::BTreeSet<&str> = ex
        .plan()
        .stages
        .iter()
        .flat_map(|st| st.steps.iter().map(|s| s.store.as_str()))
        .collect();
    for name in stores {
        let Some(c) = controllers.get(name) else {
            continue;
        };
        match c.recorded_token().await {
            Ok(Some(seen)) if seen > own => {
                return Err(ServiceError::usage(format!(
                    "execution {id} is superseded on store `{name}`: the store records fencing \
                     token {seen}, higher than {own}, the newest this execution ran with, so a \
                     later execution acted there; resuming {id} would undo it, so nothing was \
                     run. Check `switchyard state`, then \
                     `switchyard executions close {id} --reason TEXT`."
                )))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ServiceError::usage(format!(
                    "execution {id}: cannot tell whether a later execution acted on `{name}` \
                     (its recorded fencing token cannot be read: {e}); nothing was run. \
                     Resume once the store answers."
                )))
            }
        }
    }
    Ok(())
}

/// Observe every store concurrently.
pub async fn observe_all(controllers: &Controllers) -> Observations {
    futures::future::join_all(controllers.iter().map(|(n, c)| {
        let c = c.clone();
        let n = n.clone();
        async move { (n, c.observe().await.map_err(|e| e.to_string())) }
    }))
    .await
}

/// What a store is expected to look like once a planned move to `to` passed
/// its checkpoints: its best member there (reachable, electable by role,
/// furthest position) primary on the next term, every other member
/// following it. Lag is left unmeasured: this is a prediction for a
/// preview, never an observation.
pub fn expected_after(s: &ObservedState, to: &str) -> ObservedState {
    use switchyard_controller::{Role, Term};
    let mut e = s.clone();
    if e.primary_region() == Some(to) {
        return e;
    }
    let next = e
        .members
        .iter()
        .filter(|m| m.region == to && m.reachable && m.role == Role::Secondary && !m.fenced)
        .max_by_key(|m| m.position.map(|p| p.offset))
        .map(|m| m.name.clone());
    let Some(next) = next else {
        return e;
    };
    for m in &mut e.members {
        m.lag = None;
        if m.name == next {
            m.role = Role::Primary;
            m.following = None;
            m.replicating = None;
        } else if matches!(m.role, Role::Primary | Role::Secondary) {
            m.role = Role::Secondary;
            m.fenced = false;
            m.following = Some(next.clone());
            m.replicating = Some(true);
        }
    }
    e.term = e.term.map(|t| Term(t.get() + 1));
    e
}

/// One line about a store: its primary (or what is wrong: none, fenced, a
/// split brain), the store's term, and how many members are healthy, by the
/// same rule as `state` ([`health::assess`]: reachable, replicating from the
/// right upstream right now, within the store's lag bound).
pub fn summary_of(s: &ObservedState, topology: &Topology) -> String {
    let spec = topology.stores.iter().find(|t| t.name == s.store);
    health::assess(s, spec, &crate::registry::notation(s.kind)).summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server spawns must own everything it uses.
    fn spawnable<T: Send + 'static>() {}

    #[test]
    fn executions_are_spawnable_and_the_service_is_shareable() {
        spawnable::<Launched>();
        spawnable::<Pending>();
        spawnable::<PendingAbort>();
        spawnable::<PendingDrill>();
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Service>();
        // Compiles only if driving an execution is a `Send + 'static` future.
        let _ = |l: Launched| tokio::spawn(l.run());
        let _ =
            |s: Service, p: Pending| tokio::spawn(async move { s.run(p, Arc::new(Discard)).await });
    }

    /// The drill's way back is previewed from the state the first leg
    /// expects: the furthest secondary in the target primary on the next
    /// term, everyone else following it, no lag claimed.
    #[test]
    fn the_state_a_move_expects() {
        use switchyard_controller::{History, Lag, MemberState, Position, Role, Term};
        let m = |name: &str, region: &str, role, offset| MemberState {
            position: Some(Position {
                history: History(1),
                offset,
            }),
            role,
            reachable: true,
            detail: None,
            lag: Some(Lag {
                bytes: Some(0),
                millis: Some(0),
            }),
            ..MemberState::unreachable(name, region, "")
        };
        let s = ObservedState {
            store: "orders".into(),
            kind: switchyard_topology::StoreKind::Postgres,
            term: Some(Term(3)),
            config_version: None,
            members: vec![
                m("e", "east", Role::Primary, 10),
                m("w1", "west", Role::Secondary, 8),
                m("w2", "west", Role::Secondary, 9),
            ],
        };
        let e = expected_after(&s, "west");
        assert_eq!(e.primary().map(|p| p.name.as_str()), Some("w2"));
        assert_eq!(e.term, Some(Term(4)));
        for f in ["e", "w1"] {
            let f = e.member(f).unwrap();
            assert_eq!(
                (f.role, f.following.as_deref()),
                (Role::Secondary, Some("w2"))
            );
        }
        assert!(e.members.iter().all(|m| m.lag.is_none()));
        assert_eq!(expected_after(&s, "east"), s);
    }

    /// Abort and drill summaries judge members as `state` does: a standby
    /// past the lag bound, or one replicating from someone else, is not
    /// healthy, and a fenced primary is no primary.
    #[test]
    fn summaries_use_the_health_rule_of_state() {
        use switchyard_controller::{History, Lag, MemberState, Position, Role, Term};
        let topology = switchyard_topology::parse_str(
            "t.toml",
            r#"
name = "t"
[[regions]]
name = "east"
role = "primary"
[[regions]]
name = "west"
role = "secondary"
[[stores]]
name = "orders"
kind = "postgres"
max_lag_bytes = 8388608
[[stores.members]]
name = "a"
host = "127.0.0.1:1"
region = "east"
[[stores.members]]
name = "b"
host = "127.0.0.1:2"
region = "west"
"#,
        )
        .unwrap();
        let member = |name: &str, region: &str, role| MemberState {
            position: Some(Position {
                history: History(1),
                offset: 1,
            }),
            role,
            ..MemberState::unreachable(name, region, "")
        };
        let mut a = member("a", "east", Role::Primary);
        a.reachable = true;
        a.detail = None;
        let mut b = member("b", "west", Role::Secondary);
        b.reachable = true;
        b.detail = None;
        b.following = Some("a".into());
        b.lag = Some(Lag {
            bytes: Some(24 << 20),
            millis: None,
        });
        let mut s = ObservedState {
            store: "orders".into(),
            kind: switchyard_topology::StoreKind::Postgres,
            term: Some(Term(1)),
            config_version: None,
            members: vec![a, b],
        };
        assert_eq!(
            summary_of(&s, &topology),
            "primary a in east, store's timeline 1, 1/2 members healthy"
        );
        s.members[1].lag = Some(Lag {
            bytes: Some(0),
            millis: None,
        });
        assert_eq!(
            summary_of(&s, &topology),
            "primary a in east, store's timeline 1, 2/2 members healthy"
        );
        s.members[0].fenced = true;
        let line = summary_of(&s, &topology);
        assert!(
            line.starts_with("primary a is fenced: nothing accepts writes"),
            "{line}"
        );
    }
}
