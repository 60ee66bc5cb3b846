//! The driver: decide, journal, act, observe.
//!
//! It asks the [`Executor`] what to do, journals an `Intent` (execution id,
//! fencing token, exact operation) and fsyncs it, issues the operation to the
//! store's controller, journals the `Outcome` with timings, and feeds the
//! result back. Checkpoints are validated by polling the controllers until
//! every expectation holds in one round of observations or the stage's
//! timeout passes. Retrying temporary errors lives here, not in the executor
//! or the controllers.

use crate::executor::{Action, Event, Executor};
use crate::failpoint::{Boundary, Failpoint};
use crate::journal::{now_ms, CheckpointObservation, Journal, JournalError, OpResult, Record};
use crate::lock::LockGuard;
use crate::plan::StepId;
use crate::progress::{ProgressEvent, Reporter};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_controller::progress::{ProgressSink, Scope};
use switchyard_controller::{
    Controller, Error, ErrorKind, FencingToken, OpContext, Operation, Outcome,
};
use tokio::sync::{mpsc, oneshot};

/// How temporary operation errors are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt.
    pub initial_backoff: Duration,
    /// Upper bound of a backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl From<switchyard_controller::Backoff> for RetryPolicy {
    fn from(b: switchyard_controller::Backoff) -> Self {
        RetryPolicy {
            max_attempts: b.max_attempts,
            initial_backoff: b.initial,
            max_backoff: b.max,
        }
    }
}

/// How checkpoints are polled.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    /// First interval between observation rounds.
    pub initial: Duration,
    /// Largest interval.
    pub max: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        // Short first: a checkpoint that does not hold on the first look is
        // usually a replication stream reconnecting, which takes a few ms;
        // the interval doubles from there.
        PollPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(500),
        }
    }
}

/// How a run of the driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every stage passed.
    Succeeded,
    /// A step or checkpoint failed; the journal allows `resume`.
    Failed {
        /// 0-based stage.
        stage: usize,
        /// Why.
        reason: String,
        /// A readiness check refused (lag beyond the bound).
        refused: bool,
    },
    /// The execution was aborted.
    Aborted,
}

/// Failures of the driver itself (not of the stores).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The journal could not be written: nothing further may be issued.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The lock was lost: another coordinator may be running.
    #[error(
        "lost the execution lock (fencing token {0}); stopped before issuing anything further"
    )]
    LockLost(FencingToken),
    /// The plan names a store with no controller.
    #[error("no controller for store `{0}`")]
    NoController(String),
}

type OpFuture = Pin<Box<dyn Future<Output = OpDone> + Send>>;

/// Progress a running operation asks the driver to journal.
struct ProgressMsg {
    id: StepId,
    seq: u64,
    store: String,
    token: String,
    durable: oneshot::Sender<Result<(), String>>,
}

/// The [`ProgressSink`] of one issued operation: hands tokens to the driver
/// loop, which journals them durably and then answers.
struct StepSink {
    id: StepId,
    seq: u64,
    store: String,
    tx: mpsc::UnboundedSender<ProgressMsg>,
}

#[async_trait::async_trait]
impl ProgressSink for StepSink {
    async fn record(&self, token: &str) -> Result<(), String> {
        let (durable, rx) = oneshot::channel();
        self.tx
            .send(ProgressMsg {
                id: self.id,
                seq: self.seq,
                store: self.store.clone(),
                token: token.to_string(),
                durable,
            })
            .map_err(|_| "the driver stopped".to_string())?;
        rx.await
            .map_err(|_| "the driver stopped before journaling progress".to_string())?
    }
}

struct OpDone {
    id: StepId,
    seq: u64,
    store: String,
    op_name: &'static str,
    result: Result<Outcome, Error>,
    attempts: u32,
    duration: Duration,
}

/// Drives one execution.
///
/// It owns what it runs (shared controllers, the lock guard, the reporter),
/// so an execution can be spawned as a task of its own (the server does).
pub struct Driver {
    controllers: Arc<BTreeMap<String, Arc<dyn Controller>>>,
    journal: Box<dyn Journal>,
    guard: Arc<dyn LockGuard>,
    ctx: OpContext,
    reporter: Arc<dyn Reporter>,
    failpoint: Failpoint,
    /// `None`: each controller's own error policy decides the backoff.
    retry: Option<RetryPolicy>,
    poll: PollPolicy,
    next_seq: u64,
    boundaries: Option<Arc<dyn crate::safety::Boundaries>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("ctx", &self.ctx)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver appending to `journal` under `guard`'s fencing token. `next_seq` is
    /// one more than the highest sequence number already journaled.
    pub fn new(
        controllers: Arc<BTreeMap<String, Arc<dyn Controller>>>,
        journal: Box<dyn Journal>,
        guard: Arc<dyn LockGuard>,
        execution_id: &str,
        reporter: Arc<dyn Reporter>,
        next_seq: u64,
    ) -> Self {
        let token = guard.token();
        Driver {
            controllers,
            journal,
            guard,
            ctx: OpContext::new(execution_id, token),
            reporter,
            failpoint: Failpoint::none(),
            retry: None,
            poll: PollPolicy::default(),
            next_seq,
            boundaries: None,
        }
    }

    /// Evaluate gates and run hooks at stage and execution boundaries
    /// (see [`crate::safety`]).
    pub fn with_boundaries(mut self, b: Arc<dyn crate::safety::Boundaries>) -> Self {
        self.boundaries = Some(b);
        self
    }

    /// Journal what a boundary decided; its reason to stop, if any. Gate
    /// records alone are appended lazily, made durable by the next durable
    /// record (the intent of the next mutating operation at the latest): a
    /// resume that finds them lost evaluates the gates again, before
    /// anything was issued on their strength. A hook ran something outside,
    /// and a stop ends the run: those are synced at once (once per
    /// boundary, not per record).
    fn boundary(&mut self, verdict: crate::safety::Verdict) -> Result<Option<String>, DriverError> {
        for r in &verdict.records {
            self.record_lazy(r)?;
        }
        let ran_hook = verdict.records.iter().any(|r| matches!(r, Record::Hook(_)));
        if ran_hook || verdict.stop.is_some() {
            self.journal.sync()?;
        }
        Ok(verdict.stop)
    }

    /// Hold the next durable record back until `gate` says `Ok` (see
    /// [`crate::journal::Gated`]).
    pub fn with_durable_gate(self, gate: oneshot::Receiver<Result<(), String>>) -> Self {
        let inner = self.journal;
        let journal = Box::new(crate::journal::Gated::new(
            inner,
            &self.ctx.execution_id,
            gate,
        ));
        Driver { journal, ..self }
    }

    /// Crash deliberately at a boundary (crash-safety tests).
    pub fn with_failpoint(mut self, fp: Failpoint) -> Self {
        self.failpoint = fp;
        self
    }

    /// Override the retry policy of every controller (tests); without it
    /// each controller's `ErrorPolicy` backoff applies.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Override the checkpoint poll policy.
    pub fn with_poll(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Append a record (durable when this returns).
    pub fn record(&mut self, r: &Record) -> Result<(), DriverError> {
        Ok(self.journal.append(r)?)
    }

    /// Append a record a resume can do without; the next durable record
    /// makes it durable too.
    fn record_lazy(&mut self, r: &Record) -> Result<(), DriverError> {
        Ok(self.journal.append_lazy(r)?)
    }

    fn controller(&self, store: &str) -> Result<Arc<dyn Controller>, DriverError> {
        self.controllers
            .get(store)
            .cloned()
            .ok_or_else(|| DriverError::NoController(store.into()))
    }

    /// What the operator reads about `op` while it runs: its description,
    /// with a position to wait for in the store's own notation
    /// (`0/4000060 on timeline 1`, not `67108960@1`).
    fn describe(&self, store: &str, op: &Operation) -> String {
        match self.controllers.get(store) {
            Some(c) => op.describe(&c.notation()),
            None => op.to_string(),
        }
    }

    /// Run until the execution succeeds, fails or is aborted.
    pub async fn run(&mut self, ex: &mut Executor) -> Result<RunEnd, DriverError> {
        let mut in_flight: FuturesUnordered<OpFuture> = FuturesUnordered::new();
        let mut issued_ops: BTreeMap<StepId, Operation> = BTreeMap::new();
        let mut stage_now: Option<usize> = None;
        let mut stage_started = Instant::now();
        let mut waited = Duration::ZERO;
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<ProgressMsg>();
        // A lock that is never lost gets a signal that never fires.
        let lost = self.guard.lost_signal().unwrap_or_default();
        loop {
            let actions = ex.next();
            let stage = ex.current_stage();
            if stage != stage_now {
                if let Some(b) = self.boundaries.clone() {
                    if let Some(prev) = stage_now {
                        self.boundary(b.after_stage(ex.plan(), prev).await)?;
                    }
                    if let Some(s) = stage {
                        if let Some(reason) = self.boundary(b.before_stage(ex.plan(), s).await)? {
                            self.boundary(b.after_execution(ex.plan(), "failed").await)?;
                            return Ok(RunEnd::Failed {
                                stage: s,
                                reason,
                                refused: true,
                            });
                        }
                    }
                }
                if let Some(s) = stage {
                    stage_now = Some(s);
                    stage_started = Instant::now();
                    waited = Duration::ZERO;
                    self.record_lazy(&Record::StageStarted {
                        stage: s,
                        at_ms: now_ms(),
                    })?;
                    let st = &ex.plan().stages[s];
                    let mut stores: Vec<String> = vec![];
                    for n in st
                        .steps
                        .iter()
                        .map(|x| &x.store)
                        .chain(st.checkpoint.iter().map(|c| &c.store))
                    {
                        if !stores.contains(n) {
                            stores.push(n.clone());
                        }
                    }
                    self.reporter.event(&ProgressEvent::StageStarted {
                        stage: s + 1,
                        name: st.name.clone(),
                        stores,
                        before_resume: false,
                    });
                }
            }
            let deadline = stage_started
                + Duration::from_millis(stage.map_or(0, |s| ex.plan().stages[s].timeout_ms));
            let mut wait = false;
            for action in actions {
                match action {
                    Action::Done => {
                        self.record(&Record::Finished { at_ms: now_ms() })?;
                        // The last stage's post-stage hooks ran on the way here.
                        if let Some(b) = self.boundaries.clone() {
                            self.boundary(b.after_execution(ex.plan(), "succeeded").await)?;
                        }
                        return Ok(RunEnd::Succeeded);
                    }
                    Action::Aborted => return Ok(RunEnd::Aborted),
                    Action::Failed {
                        stage,
                        reason,
                        refused,
                    } => {
                        self.journal.sync()?;
                        if let Some(b) = self.boundaries.clone() {
                            self.boundary(b.after_execution(ex.plan(), "failed").await)?;
                        }
                        return Ok(RunEnd::Failed {
                            stage,
                            reason,
                            refused,
                        });
                    }
                    Action::Wait => wait = true,
                    Action::Run { id, store, op } => {
                        if !self.guard.still_held() {
                            return Err(DriverError::LockLost(self.ctx.token));
                        }
                        let ctrl = self.controller(&store)?;
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        let intent = Record::Intent {
                            seq,
                            stage: id.stage,
                            step: id.step,
                            store: store.clone(),
                            op: op.clone(),
                            fencing_token: self.ctx.token,
                            at_ms: now_ms(),
                        };
                        if op.is_mutating() {
                            // Durable before the store sees the operation
                            // (and with it every lazy record before it).
                            // Meanwhile the controller reads what the
                            // operation starts with (read-only): the fsync
                            // and the look at the store overlap instead of
                            // adding up.
                            let prepared = tokio::spawn({
                                let (ctrl, op) = (ctrl.clone(), op.clone());
                                async move { ctrl.prepare(&op).await }
                            });
                            let durable = self.record(&intent);
                            if durable.is_err() {
                                prepared.abort();
                            }
                            let _ = prepared.await;
                            durable?;
                        } else {
                            // A read-only operation changes nothing a
                            // resume must know of: losing its intent only
                            // means it is issued again.
                            self.record_lazy(&intent)?;
                        }
                        ex.apply(Event::Issued { id, op: op.clone() });
                        self.failpoint.hit(Boundary::BeforeIssue, seq);
                        self.reporter.event(&ProgressEvent::OpStarted {
                            stage: id.stage + 1,
                            seq,
                            store: store.clone(),
                            op: op.name().into(),
                            description: self.describe(&store, &op),
                        });
                        issued_ops.insert(id, op.clone());
                        let scope = Scope::new(
                            ex.progress(id).map(String::from),
                            Some(Arc::new(StepSink {
                                id,
                                seq,
                                store: store.clone(),
                                tx: progress_tx.clone(),
                            })),
                        );
                        // The store's own backoff unless the caller set one.
                        let retry = self
                            .retry
                            .unwrap_or_else(|| ctrl.error_policy().backoff.into());
                        in_flight.push(Box::pin(scope.run(run_op(
                            ctrl,
                            op,
                            self.ctx.clone(),
                            id,
                            seq,
                            store,
                            deadline,
                            retry,
                        ))));
                    }
                    Action::ValidateCheckpoint { stage } => {
                        let t = Instant::now();
                        self.checkpoint(ex, stage, deadline, stage_started, waited)
                            .await?;
                        waited += t.elapsed();
                    }
                }
            }
            if wait && in_flight.is_empty() {
                // Only possible when a journal is replayed without a
                // `Resumed` record: intents of a dead process look in flight.
                return Ok(RunEnd::Failed {
                    stage: stage.unwrap_or(0),
                    reason: "operations are journaled as issued by another process; resume the execution first".into(),
                    refused: false,
                });
            }
            if !in_flight.is_empty() {
                let t = Instant::now();
                let next = tokio::select! {
                    // Lease lost: drop (cancel) everything in flight now; a
                    // new leader resumes from the journal.
                    () = lost.cancelled() => {
                        return Err(DriverError::LockLost(self.ctx.token));
                    }
                    done = in_flight.next() => done,
                    Some(p) = progress_rx.recv() => {
                        waited += t.elapsed();
                        let r = Record::Progress {
                            seq: p.seq,
                            stage: p.id.stage,
                            step: p.id.step,
                            store: p.store,
                            at_ms: now_ms(),
                            token: p.token.clone(),
                        };
                        let res = self.record(&r);
                        let _ = p.durable.send(res.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                        res?;
                        ex.apply(Event::Progress { id: p.id, token: p.token });
                        continue;
                    }
                };
                let Some(done) = next else {
                    continue;
                };
                waited += t.elapsed();
                self.failpoint.hit(Boundary::AfterIssue, done.seq);
                let result = match done.result {
                    Ok(o) => OpResult::Ok { outcome: o },
                    Err(e) => OpResult::of_error(&e),
                };
                let duration_ms = done.duration.as_millis() as u64;
                self.record_lazy(&Record::Outcome {
                    seq: done.seq,
                    stage: done.id.stage,
                    step: done.id.step,
                    store: done.store.clone(),
                    at_ms: now_ms(),
                    duration_ms,
                    attempts: done.attempts,
                    result: result.clone(),
                })?;
                self.failpoint.hit(Boundary::AfterOutcome, done.seq);
                self.reporter.event(&ProgressEvent::OpFinished {
                    stage: done.id.stage + 1,
                    seq: done.seq,
                    store: done.store,
                    op: done.op_name.into(),
                    duration_ms,
                    attempts: done.attempts,
                    error: match &result {
                        OpResult::Err { message, .. } => Some(message.clone()),
                        OpResult::Ok { .. } => None,
                    },
                    before_resume: false,
                });
                issued_ops.remove(&done.id);
                ex.apply(match result {
                    OpResult::Ok { outcome } => Event::Succeeded {
                        id: done.id,
                        outcome,
                    },
                    OpResult::Err { kind, message, .. } => Event::Failed {
                        id: done.id,
                        message,
                        kind,
                    },
                });
            }
        }
    }

    async fn checkpoint(
        &mut self,
        ex: &mut Executor,
        stage: usize,
        deadline: Instant,
        stage_started: Instant,
        waited_before: Duration,
    ) -> Result<(), DriverError> {
        self.reporter
            .event(&ProgressEvent::CheckpointStarted { stage: stage + 1 });
        let entries = ex.plan().stages[stage].checkpoint.clone();
        let started = Instant::now();
        let mut polls = 0u32;
        let mut observe_time = Duration::ZERO;
        let mut interval = self.poll.initial;
        let stores: BTreeSet<String> = entries.iter().map(|e| e.store.clone()).collect();
        let mut ctrls = vec![];
        for s in &stores {
            ctrls.push((s.clone(), self.controller(s)?));
        }
        let observed = loop {
            polls += 1;
            let t = Instant::now();
            let states = futures::future::join_all(ctrls.iter().map(|(s, c)| {
                let c = c.clone();
                let s = s.clone();
                async move { (s, c.observe().await) }
            }))
            .await;
            observe_time += t.elapsed();
            let states: BTreeMap<String, _> = states.into_iter().collect();
            let observed: Vec<CheckpointObservation> = entries
                .iter()
                .map(|e| {
                    let exp = e.expectation();
                    let (mismatch, primary, term) = match &states[&e.store] {
                        Ok(st) => (
                            exp.check(st).err(),
                            st.primary().map(|p| format!("{}@{}", p.name, p.region)),
                            st.term,
                        ),
                        Err(err) => (Some(format!("observe failed: {err}")), None, None),
                    };
                    CheckpointObservation {
                        store: e.store.clone(),
                        expected: e
                            .expect
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        mismatch,
                        primary,
                        term,
                    }
                })
                .collect();
            let all_ok = observed.iter().all(|o| o.mismatch.is_none());
            if all_ok || Instant::now() + interval > deadline {
                break observed;
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(self.poll.max);
        };
        let passed = observed.iter().all(|o| o.mismatch.is_none());
        let duration = started.elapsed();
        let stage_wall = stage_started.elapsed();
        let overhead = stage_wall.saturating_sub(waited_before + duration);
        let (duration_ms, observe_ms) =
            (duration.as_millis() as u64, observe_time.as_millis() as u64);
        let rec = if passed {
            Record::CheckpointPassed {
                stage,
                at_ms: now_ms(),
                duration_ms,
                observe_ms,
                polls,
                stage_wall_us: stage_wall.as_micros() as u64,
                overhead_us: overhead.as_micros() as u64,
                observed: observed.clone(),
            }
        } else {
            Record::CheckpointFailed {
                stage,
                at_ms: now_ms(),
                duration_ms,
                observe_ms,
                polls,
                stage_wall_us: stage_wall.as_micros() as u64,
                overhead_us: overhead.as_micros() as u64,
                observed: observed.clone(),
            }
        };
        self.record_lazy(&rec)?;
        if passed {
            self.failpoint
                .hit(Boundary::AfterCheckpoint, stage as u64 + 1);
        }
        self.reporter.event(&ProgressEvent::CheckpointFinished {
            stage: stage + 1,
            passed,
            duration_ms,
            observed: observed.clone(),
            before_resume: false,
        });
        if let Some(ev) = crate::executor::event_of(&rec) {
            ex.apply(ev);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_op(
    ctrl: Arc<dyn Controller>,
    op: Operation,
    ctx: OpContext,
    id: StepId,
    seq: u64,
    store: String,
    deadline: Instant,
    retry: RetryPolicy,
) -> OpDone {
    let started = Instant::now();
    let mut attempts = 0;
    let mut backoff = retry.initial_backoff;
    let deadline = tokio::time::Instant::from_std(deadline);
    let result = loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, ctrl.execute(&op, &ctx)).await {
            Ok(Ok(o)) => break Ok(o),
            Ok(Err(e))
                if e.is_temporary()
                    && attempts < retry.max_attempts
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                // Each retry at INFO; the operation's failure, if it comes
                // to that, is one WARN below (not one per attempt).
                tracing::info!(
                    store = %store,
                    op = op.name(),
                    attempt = attempts,
                    max_attempts = retry.max_attempts,
                    backoff_ms = backoff.as_millis() as u64,
                    error = %e,
                    "temporary error; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                break Err(Error::new(
                    ErrorKind::Timeout,
                    store.clone(),
                    format!("{} did not finish before the stage timeout", op.name()),
                ))
            }
        }
    };
    if let Err(e) = &result {
        tracing::warn!(
            store = %store,
            op = op.name(),
            attempts,
            temporary = e.is_temporary(),
            error = %e,
            "{}",
            if e.is_temporary() && attempts > 1 {
                "operation failed: retries exhausted"
            } else {
                "operation failed"
            }
        );
    }
    OpDone {
        id,
        seq,
        store,
        op_name: op.name(),
        result,
        attempts,
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    //! The driver against an in-memory store whose operations are idempotent
    //! the way the contract demands; real stores are exercised by the e2e
    //! tests in `coordinator/tests`.
    use super::*;
    use crate::journal::JournalError;
    use crate::lock::LockGuard;
    use crate::plan::{Mode, Plan};
    use crate::planner::{plan_failover, PlanOptions};
    use crate::progress::Silent;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use switchyard_controller::{
        Capability, History, Lag, MemberState, ObservedState, Position, Result as CResult, Role,
        Term,
    };
    use switchyard_topology::StoreKind;

    #[derive(Debug)]
    struct Mem {
        name: String,
        kind: StoreKind,
        cap: Capability,
        st: Mutex<MemState>,
    }

    #[derive(Debug, Clone)]
    struct MemState {
        primary: String,
        fenced: bool,
        promotions: u32,
        preferred: String,
        following: String,
    }

    impl Mem {
        fn new(name: &str, kind: StoreKind, cap: Capability) -> Arc<Self> {
            Arc::new(Mem {
                name: name.into(),
                kind,
                cap,
                st: Mutex::new(MemState {
                    primary: "east".into(),
                    fenced: false,
                    promotions: 0,
                    preferred: "east".into(),
                    following: "east".into(),
                }),
            })
        }
        fn state(&self) -> MemState {
            self.st.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Controller for Mem {
        fn store(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> StoreKind {
            self.kind
        }
        fn capability(&self) -> Capability {
            self.cap
        }
        async fn observe(&self) -> CResult<ObservedState> {
            let s = self.state();
            let member = |region: &str| {
                let mut m =
                    MemberState::unreachable(&format!("{}-{region}", self.name), region, "");
                m.reachable = true;
                m.detail = None;
                m.role = if s.primary == region {
                    Role::Primary
                } else {
                    Role::Secondary
                };
                m.fenced = s.fenced && s.primary == region;
                m.priority = Some(if s.preferred == region { 2.0 } else { 1.0 });
                m.lag = Some(Lag {
                    bytes: Some(0),
                    millis: Some(0),
                });
                if s.primary != region {
                    m.following = Some(format!("{}-{}", self.name, s.following));
                }
                m
            };
            Ok(ObservedState {
                store: self.name.clone(),
                kind: self.kind,
                term: Some(Term(1 + u64::from(s.promotions))),
                config_version: None,
                members: vec![member("east"), member("west")],
            })
        }
        async fn execute(&self, op: &Operation, _: &OpContext) -> CResult<Outcome> {
            let mut s = self.st.lock().unwrap();
            Ok(match op {
                Operation::CheckReadiness { .. } | Operation::WaitForPosition { .. } => {
                    Outcome::done()
                }
                Operation::Fence => {
                    s.fenced = true;
                    Outcome::done()
                }
                Operation::CapturePosition => Outcome::done().with_position(Position {
                    history: History(1),
                    offset: 100,
                }),
                Operation::Promote { target_region, .. } => {
                    if s.primary == *target_region {
                        Outcome::already_done()
                    } else {
                        s.primary = target_region.clone();
                        s.fenced = false;
                        s.promotions += 1;
                        Outcome::done()
                    }
                }
                Operation::RepointFollowers | Operation::Rejoin => {
                    s.following = s.primary.clone();
                    Outcome::done()
                }
                Operation::MakeSticky { target_region, .. } => {
                    s.preferred = target_region.clone();
                    Outcome::done()
                }
                _ => Outcome::done(),
            })
        }
    }

    /// A journal in memory that "crashes" (refuses every append) after `limit` records.
    struct MemJournal {
        records: Arc<Mutex<Vec<Record>>>,
        limit: usize,
    }

    impl Journal for MemJournal {
        fn append(&mut self, r: &Record) -> Result<(), JournalError> {
            let mut v = self.records.lock().unwrap();
            if v.len() >= self.limit {
                return Err(JournalError::NotFound("simulated crash".into()));
            }
            v.push(r.clone());
            Ok(())
        }
    }

    struct Guard(u64);
    impl LockGuard for Guard {
        fn token(&self) -> FencingToken {
            FencingToken(self.0)
        }
        fn still_held(&self) -> bool {
            true
        }
    }

    /// A lease-backed guard: its signal is fired by the test.
    struct LeaseGuard(tokio_util::sync::CancellationToken);
    impl LockGuard for LeaseGuard {
        fn token(&self) -> FencingToken {
            FencingToken(3)
        }
        fn still_held(&self) -> bool {
            !self.0.is_cancelled()
        }
        fn lost_signal(&self) -> Option<tokio_util::sync::CancellationToken> {
            Some(self.0.clone())
        }
    }

    /// A store whose fence never returns (a hung store).
    #[derive(Debug)]
    struct Hangs(Arc<Mem>, Arc<std::sync::atomic::AtomicBool>);

    #[async_trait]
    impl Controller for Hangs {
        fn store(&self) -> &str {
            self.0.store()
        }
        fn kind(&self) -> StoreKind {
            self.0.kind()
        }
        fn capability(&self) -> Capability {
            self.0.capability()
        }
        async fn observe(&self) -> CResult<ObservedState> {
            self.0.observe().await
        }
        async fn execute(&self, op: &Operation, ctx: &OpContext) -> CResult<Outcome> {
            if matches!(op, Operation::Fence) {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            self.0.execute(op, ctx).await
        }
    }

    #[tokio::test]
    async fn losing_the_lease_cancels_operations_in_flight() {
        let (plan, mut ctrls, pg, _) = setup();
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        ctrls.insert(
            "orders".into(),
            Arc::new(Hangs(pg.clone(), entered.clone())),
        );
        let records = Arc::new(Mutex::new(vec![started(&plan)]));
        let recs = records.lock().unwrap().clone();
        let mut ex = Executor::replay(&recs).unwrap();
        let lost = tokio_util::sync::CancellationToken::new();
        let j = MemJournal {
            records: records.clone(),
            limit: usize::MAX,
        };
        let mut d = test_driver(
            ctrls,
            Box::new(j),
            Arc::new(LeaseGuard(lost.clone())),
            crate::journal::next_seq(&recs),
        );
        let fire = {
            let entered = entered.clone();
            tokio::spawn(async move {
                while !entered.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                lost.cancel();
            })
        };
        let r = tokio::time::timeout(Duration::from_secs(60), d.run(&mut ex))
            .await
            .expect("the driver stopped instead of waiting for the hung fence");
        assert!(
            matches!(r, Err(DriverError::LockLost(FencingToken(3)))),
            "{r:?}"
        );
        fire.await.unwrap();
        assert_eq!(pg.state().promotions, 0, "nothing issued after the loss");
    }

    type Setup = (
        Plan,
        BTreeMap<String, Arc<dyn Controller>>,
        Arc<Mem>,
        Arc<Mem>,
    );

    fn setup() -> Setup {
        let t = crate::planner::tests::topology(true);
        let caps = crate::planner::tests::caps();
        let plan = plan_failover(&t, &caps, &PlanOptions::new("west", Mode::Planned)).unwrap();
        let pg = Mem::new("orders", StoreKind::Postgres, caps["orders"]);
        let mongo = Mem::new("catalog", StoreKind::Mongodb, caps["catalog"]);
        let mut m: BTreeMap<String, Arc<dyn Controller>> = BTreeMap::new();
        m.insert("orders".into(), pg.clone());
        m.insert("catalog".into(), mongo.clone());
        (plan, m, pg, mongo)
    }

    fn started(plan: &Plan) -> Record {
        Record::Started {
            execution_id: "x".into(),
            fencing_token: FencingToken(1),
            at_ms: 0,
            kind: "test".into(),
            topology_file: "t".into(),
            store_kinds: Default::default(),
            plan: plan.clone(),
        }
    }

    async fn run(
        ctrls: &BTreeMap<String, Arc<dyn Controller>>,
        records: &Arc<Mutex<Vec<Record>>>,
        limit: usize,
        token: u64,
    ) -> Result<RunEnd, DriverError> {
        let recs = records.lock().unwrap().clone();
        let mut ex = Executor::replay(&recs).unwrap();
        let next_seq = crate::journal::next_seq(&recs);
        let guard = Arc::new(Guard(token));
        let j = MemJournal {
            records: records.clone(),
            limit,
        };
        let mut d = test_driver(ctrls.clone(), Box::new(j), guard, next_seq);
        d.run(&mut ex).await
    }

    /// A driver of execution `x` that polls checkpoints every few ms.
    fn test_driver(
        ctrls: BTreeMap<String, Arc<dyn Controller>>,
        journal: Box<dyn Journal>,
        guard: Arc<dyn LockGuard>,
        next_seq: u64,
    ) -> Driver {
        Driver::new(
            Arc::new(ctrls),
            journal,
            guard,
            "x",
            Arc::new(Silent),
            next_seq,
        )
        .with_poll(PollPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
        })
    }

    /// A journal that tells durable records from lazy ones: a lazy record
    /// becomes durable with the next `append` or `sync`, as on disk.
    struct DurabilityJournal {
        /// (record, durable when the driver went on).
        log: Arc<Mutex<Vec<(Record, bool)>>>,
    }

    impl Journal for DurabilityJournal {
        fn append(&mut self, r: &Record) -> Result<(), JournalError> {
            let mut log = self.log.lock().unwrap();
            log.push((r.clone(), true));
            Ok(())
        }
        fn append_lazy(&mut self, r: &Record) -> Result<(), JournalError> {
            self.log.lock().unwrap().push((r.clone(), false));
            Ok(())
        }
        fn sync(&mut self) -> Result<(), JournalError> {
            if let Some(last) = self.log.lock().unwrap().last_mut() {
                last.1 = true;
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn only_mutating_intents_are_synced_before_they_are_issued() {
        let (plan, ctrls, _, _) = setup();
        let recs = vec![started(&plan)];
        let mut ex = Executor::replay(&recs).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut d = test_driver(
            ctrls,
            Box::new(DurabilityJournal { log: log.clone() }),
            Arc::new(Guard(1)),
            crate::journal::next_seq(&recs),
        );
        assert_eq!(d.run(&mut ex).await.unwrap(), RunEnd::Succeeded);
        let log = log.lock().unwrap();
        let (mut mutating, mut read_only) = (0, 0);
        for (r, durable) in log.iter() {
            if let Record::Intent { op, .. } = r {
                // Synced when appended: everything before it is durable too.
                assert_eq!(*durable, op.is_mutating(), "{op}");
                if op.is_mutating() {
                    mutating += 1;
                } else {
                    read_only += 1;
                }
            }
        }
        assert!(mutating > 0 && read_only > 0, "{mutating} / {read_only}");
        assert!(matches!(log.last(), Some((Record::Finished { .. }, true))));
    }

    #[tokio::test]
    async fn runs_a_plan_and_journals_intent_before_outcome() {
        let (plan, ctrls, pg, mongo) = setup();
        let records = Arc::new(Mutex::new(vec![started(&plan)]));
        assert_eq!(
            run(&ctrls, &records, usize::MAX, 1).await.unwrap(),
            RunEnd::Succeeded
        );
        assert_eq!(pg.state().primary, "west");
        assert_eq!(mongo.state().primary, "west");
        assert_eq!(mongo.state().preferred, "west");
        let recs = records.lock().unwrap().clone();
        let mut open = BTreeSet::new();
        for r in &recs {
            match r {
                Record::Intent {
                    seq, fencing_token, ..
                } => {
                    assert_eq!(*fencing_token, FencingToken(1));
                    assert!(open.insert(*seq));
                }
                Record::Outcome { seq, .. } => {
                    assert!(open.remove(seq), "outcome {seq} before intent")
                }
                _ => {}
            }
        }
        assert!(open.is_empty());
        // orders is promoted (and its checkpoint passed) before catalog is.
        let promote_order: Vec<&str> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Intent {
                    store,
                    op: Operation::Promote { .. },
                    ..
                } => Some(store.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(promote_order, vec!["orders", "catalog"]);
        assert!(matches!(recs.last(), Some(Record::Finished { .. })));
    }

    #[tokio::test]
    async fn crash_before_any_record_then_resume_promotes_each_store_once() {
        let (plan, _, _, _) = setup();
        let full = {
            let (_, ctrls, _, _) = setup();
            let records = Arc::new(Mutex::new(vec![started(&plan)]));
            run(&ctrls, &records, usize::MAX, 1).await.unwrap();
            let n = records.lock().unwrap().len();
            n
        };
        for limit in 1..full {
            let (_, ctrls, pg, mongo) = setup();
            let records = Arc::new(Mutex::new(vec![started(&plan)]));
            let first = run(&ctrls, &records, limit, 1).await;
            assert!(
                matches!(first, Err(DriverError::Journal(_))),
                "limit {limit}: {first:?}"
            );
            records.lock().unwrap().push(Record::Resumed {
                fencing_token: FencingToken(2),
                at_ms: 0,
            });
            let second = run(&ctrls, &records, usize::MAX, 2).await.unwrap();
            assert_eq!(second, RunEnd::Succeeded, "limit {limit}");
            assert_eq!(pg.state().promotions, 1, "limit {limit}");
            assert_eq!(mongo.state().promotions, 1, "limit {limit}");
            assert_eq!(pg.state().primary, "west");
            // Nothing with a journaled outcome was issued again.
            let recs = records.lock().unwrap().clone();
            let mut done = BTreeSet::new();
            for r in &recs {
                match r {
                    Record::Intent { stage, step, .. } => {
                        assert!(
                            !done.contains(&(*stage, *step)),
                            "limit {limit}: step {stage}.{step} repeated"
                        )
                    }
                    Record::Outcome { stage, step, .. } => {
                        done.insert((*stage, *step));
                    }
                    _ => {}
                }
            }
        }
    }

    #[tokio::test]
    async fn a_dead_process_intent_is_not_waited_for_forever() {
        let (plan, ctrls, pg, _) = setup();
        let records = Arc::new(Mutex::new(vec![started(&plan)]));
        // The first intent is journaled, then the "process" dies.
        let first = run(&ctrls, &records, 3, 1).await;
        assert!(first.is_err());
        // Replayed without a `Resumed` record: refuse instead of hanging.
        match run(&ctrls, &records, usize::MAX, 1).await.unwrap() {
            RunEnd::Failed { reason, .. } => assert!(reason.contains("resume"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(pg.state().promotions, 0);
    }

    /// Wraps a store so its promotion is a long-running operation: it
    /// records a token, and the first one never finishes (the process
    /// "dies" while it runs).
    #[derive(Debug)]
    struct Lro {
        inner: Arc<Mem>,
        starts: std::sync::atomic::AtomicU32,
        seen: Mutex<Vec<Option<String>>>,
        hang_first: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Controller for Lro {
        fn store(&self) -> &str {
            self.inner.store()
        }
        fn kind(&self) -> StoreKind {
            self.inner.kind()
        }
        fn capability(&self) -> Capability {
            self.inner.capability()
        }
        async fn observe(&self) -> CResult<ObservedState> {
            self.inner.observe().await
        }
        async fn execute(&self, op: &Operation, ctx: &OpContext) -> CResult<Outcome> {
            use std::sync::atomic::Ordering;
            if matches!(op, Operation::Promote { .. }) {
                let token = switchyard_controller::progress::token();
                self.seen.lock().unwrap().push(token.clone());
                if token.is_none() {
                    let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
                    switchyard_controller::progress::record(format!("op-{n}"))
                        .await
                        .map_err(|e| Error::new(ErrorKind::Refused, "orders", e))?;
                    if self.hang_first.swap(false, Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                }
            }
            self.inner.execute(op, ctx).await
        }
    }

    #[tokio::test]
    async fn a_resumed_step_gets_the_progress_token_of_the_dead_process() {
        let (plan, mut ctrls, pg, _) = setup();
        let lro = Arc::new(Lro {
            inner: pg.clone(),
            starts: Default::default(),
            seen: Mutex::new(vec![]),
            hang_first: std::sync::atomic::AtomicBool::new(true),
        });
        ctrls.insert("orders".into(), lro.clone());
        let records = Arc::new(Mutex::new(vec![started(&plan)]));
        // The first process journals the token, then dies mid-operation.
        {
            let first = run(&ctrls, &records, usize::MAX, 1);
            tokio::pin!(first);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                tokio::select! {
                    r = &mut first => panic!("the first run ended: {r:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                let journaled = records
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| matches!(r, Record::Progress { .. }));
                if journaled {
                    break;
                }
                assert!(Instant::now() < deadline, "no progress record");
            }
        }
        let progress: Vec<Record> = records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Record::Progress { .. }))
            .cloned()
            .collect();
        assert!(
            matches!(&progress[..], [Record::Progress { store, token, .. }] if store == "orders" && token == "op-1"),
            "{progress:?}"
        );
        records.lock().unwrap().push(Record::Resumed {
            fencing_token: FencingToken(2),
            at_ms: 0,
        });
        assert_eq!(
            run(&ctrls, &records, usize::MAX, 2).await.unwrap(),
            RunEnd::Succeeded
        );
        // The re-issued promotion saw the dead process's token and started
        // nothing new.
        assert_eq!(
            *lro.seen.lock().unwrap(),
            vec![None, Some("op-1".to_string())]
        );
        assert_eq!(lro.starts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pg.state().promotions, 1);
    }

    #[tokio::test]
    async fn checkpoint_failure_records_expected_and_observed() {
        let (mut plan, ctrls, _, _) = setup();
        plan.stages[0].timeout_ms = 30;
        plan.stages[0].checkpoint[0].expect = vec![crate::expectation::primary_in("west")];
        let records = Arc::new(Mutex::new(vec![started(&plan)]));
        match run(&ctrls, &records, usize::MAX, 1).await.unwrap() {
            RunEnd::Failed { stage, reason, .. } => {
                assert_eq!(stage, 0);
                assert!(
                    reason.contains("orders: primary is orders-east in east"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let recs = records.lock().unwrap().clone();
        let failed = recs
            .iter()
            .find_map(|r| match r {
                Record::CheckpointFailed { observed, .. } => Some(observed.clone()),
                _ => None,
            })
            .unwrap();
        let o = failed.iter().find(|o| o.store == "orders").unwrap();
        assert_eq!(o.expected, "primary_in(west)");
        assert_eq!(o.primary.as_deref(), Some("orders-east@east"));
    }
}
