//! The conformance suite every controller runs against its own backing (a
//! real cluster, a protocol-level simulator, compose).
//!
//! A backing implements [`Harness`]: it hands out the controller under test
//! and a few things only the backing can do (write a record through the
//! current primary, crash a member, make a region lag). The suite then
//! drives the controller exclusively through [`Controller`], exactly as the
//! coordinator does, with the canonical operation sequences
//! [`planned_switchover`] and [`forced_failover`]. Cases are selected by
//! [`Capability`]; a case the controller cannot support is reported as
//! skipped, never as passed.
//!
//! ```ignore
//! let report = switchyard_controller::conformance::run_all(&harness).await;
//! report.assert_passed();
//! ```
//!
//! Cases leave the store with exactly one primary and every member
//! following it (the forced-failover case leaves the primary in another
//! region), so they can run in any order on one backing.

use crate::capability::Capability;
use crate::controller::{Controller, ControllerExt, OpContext};
use crate::error::{Error, ErrorKind};
use crate::operation::{Operation, Outcome, PromoteMode};
use crate::sequence::{self, Kind, Step as SeqStep};
use crate::state::{ObservedState, Role};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// Errors a harness reports (backing-specific; the suite only prints them).
pub type HarnessError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a backing provides to the suite. Keep implementations small: the
/// suite does everything else through the [`Controller`].
#[async_trait]
pub trait Harness: Send + Sync {
    /// The controller under test. The suite uses this one instance
    /// throughout, so a controller may rely on what it observed earlier
    /// (e.g. the last known lag before a primary died).
    fn controller(&self) -> &dyn Controller;

    /// Write one record with `key` through the current primary and return
    /// once the store acknowledged it (the store's normal durability).
    async fn write(&self, key: u64) -> Result<(), HarnessError>;

    /// Whether the current primary holds the record `key`.
    async fn contains(&self, key: u64) -> Result<bool, HarnessError>;

    /// Crash `member` (SIGKILL or the closest equivalent). It stays down
    /// until [`Harness::restart_member`].
    async fn kill_member(&self, member: &str) -> Result<(), HarnessError>;

    /// Bring a killed member back as it was configured (a host reboot).
    async fn restart_member(&self, member: &str) -> Result<(), HarnessError>;

    /// Make every promotion candidate in `region` lag beyond the store's
    /// bound. `Ok(false)`: this backing cannot (the case is skipped).
    async fn induce_lag(&self, region: &str) -> Result<bool, HarnessError> {
        let _ = region;
        Ok(false)
    }

    /// Undo [`Harness::induce_lag`]; the region catches up afterwards.
    async fn clear_lag(&self, region: &str) -> Result<(), HarnessError> {
        let _ = region;
        Ok(())
    }
}

/// Suite settings.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Context passed with every operation.
    pub ctx: OpContext,
    /// Timeout of `WaitForPosition` and of the suite's own waits.
    pub timeout: Duration,
    /// Poll interval of the suite's waits.
    pub poll: Duration,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            ctx: OpContext {
                execution_id: "conformance".into(),
                token: crate::FencingToken(1),
            },
            timeout: Duration::from_secs(60),
            poll: Duration::from_millis(50),
        }
    }
}

/// A case's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every assertion held.
    Passed,
    /// The case does not apply to this controller (reason).
    Skipped(String),
    /// An assertion failed or an operation errored (what happened).
    Failed(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Case name (the function name).
    pub name: &'static str,
    /// Verdict.
    pub verdict: Verdict,
    /// How long it took.
    pub elapsed: Duration,
}

/// Every case's result.
#[derive(Debug, Clone, Default)]
pub struct SuiteReport {
    /// Results in the order run.
    pub cases: Vec<CaseReport>,
}

impl SuiteReport {
    /// Cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Failed(_)))
    }

    /// Panic with the whole report when any case failed.
    pub fn assert_passed(&self) {
        assert!(
            self.failures().next().is_none(),
            "conformance failed:\n{self}"
        );
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let v = match &c.verdict {
                Verdict::Passed => "passed".to_string(),
                Verdict::Skipped(r) => format!("skipped: {r}"),
                Verdict::Failed(r) => format!("FAILED: {r}"),
            };
            writeln!(f, "{:<40} {:>8.2?}  {v}", c.name, c.elapsed)?;
        }
        Ok(())
    }
}

/// An operation the suite (or a sequence helper) executed and its outcome.
#[derive(Debug, Clone)]
pub struct Step {
    /// The operation.
    pub op: Operation,
    /// What it produced.
    pub outcome: Outcome,
    /// When it was issued.
    pub started: std::time::Instant,
    /// When it returned.
    pub finished: std::time::Instant,
}

type CaseResult = Result<Verdict, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn op_err(op: &Operation, e: Error) -> String {
    format!("{op} failed: {e}")
}

async fn exec(
    c: &dyn Controller,
    op: Operation,
    ctx: &OpContext,
    steps: &mut Vec<Step>,
) -> Result<Outcome, Error> {
    let started = std::time::Instant::now();
    let outcome = c.execute(&op, ctx).await?;
    steps.push(Step {
        op,
        outcome: outcome.clone(),
        started,
        finished: std::time::Instant::now(),
    });
    Ok(outcome)
}

/// Run `kind`'s canonical sequence ([`crate::sequence::steps`], the one
/// the planner lays out) on one store. A planned one stops early
/// (successfully) when readiness reports the target already primary.
async fn run_sequence(
    c: &dyn Controller,
    kind: Kind,
    target_region: &str,
    mode: PromoteMode,
    ctx: &OpContext,
    timeout: Duration,
) -> Result<Vec<Step>, Error> {
    let cap = c.capability();
    let mut steps = Vec::new();
    let mut captured = None;
    for (_, step) in sequence::steps(kind, &cap) {
        let op = step
            .operation(target_region, mode, captured, timeout.as_millis() as u64)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    c.store(),
                    "CapturePosition returned no position to wait for",
                )
            })?;
        let outcome = exec(c, op, ctx, &mut steps).await?;
        match step {
            // A planned move to where the primary already is does nothing
            // more; a forced one still runs (the set may have elected the
            // target itself, and the priorities must follow).
            SeqStep::CheckReadiness if outcome.already_done && kind != Kind::ForcedFailover => {
                return Ok(steps)
            }
            SeqStep::CapturePosition => captured = outcome.position,
            _ => {}
        }
    }
    Ok(steps)
}

/// The canonical planned switchover to `target_region`, selected by the
/// controller's capabilities: readiness → fence → capture → wait → make
/// sticky → promote → re-point followers → rejoin.
pub async fn planned_switchover(
    c: &dyn Controller,
    target_region: &str,
    ctx: &OpContext,
    timeout: Duration,
) -> Result<Vec<Step>, Error> {
    run_sequence(
        c,
        Kind::PlannedSwitchover,
        target_region,
        PromoteMode::Planned,
        ctx,
        timeout,
    )
    .await
}

/// The canonical forced failover to `target_region` with the old primary
/// gone: readiness → promote → make sticky → re-point followers. Rejoining
/// the old primary is a separate, later `Rejoin`.
pub async fn forced_failover(
    c: &dyn Controller,
    target_region: &str,
    accept_data_loss: bool,
    ctx: &OpContext,
) -> Result<Vec<Step>, Error> {
    run_sequence(
        c,
        Kind::ForcedFailover,
        target_region,
        PromoteMode::Forced { accept_data_loss },
        ctx,
        Duration::from_secs(60),
    )
    .await
}

/// Run every case, in an order where destructive ones come last.
pub async fn run_all(h: &dyn Harness) -> SuiteReport {
    run_all_with(h, &SuiteConfig::default()).await
}

/// [`run_all`] with explicit settings.
pub async fn run_all_with(h: &dyn Harness, cfg: &SuiteConfig) -> SuiteReport {
    let mut report = SuiteReport::default();
    macro_rules! case {
        ($f:ident) => {{
            let start = std::time::Instant::now();
            let verdict = match $f(h, cfg).await {
                Ok(v) => v,
                Err(msg) => Verdict::Failed(msg),
            };
            tracing::info!(case = stringify!($f), ?verdict, "conformance case");
            report.cases.push(CaseReport {
                name: stringify!($f),
                verdict,
                elapsed: start.elapsed(),
            });
        }};
    }
    case!(observe);
    case!(readiness_refuses_lagging_target);
    case!(planned_promote_refuses_unfenced_primary);
    case!(planned_switchover_and_back);
    case!(repeated_operations_are_harmless);
    case!(forced_failover_with_primary_gone);
    report
}

/// Wait until the store has exactly one primary and every member is
/// reachable and in a follower role (or the primary).
async fn settle(h: &dyn Harness, cfg: &SuiteConfig) -> Result<ObservedState, String> {
    h.controller()
        .wait_until(cfg.timeout, cfg.poll, healthy)
        .await
        .map_err(|e| format!("store did not settle (one primary, all members following): {e}"))
}

fn healthy(s: &ObservedState) -> bool {
    s.primary().is_some()
        && s.members.iter().all(|m| {
            m.reachable && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
        })
}

/// A region other than the primary's with an electable data-bearing member.
fn other_region(s: &ObservedState) -> Option<String> {
    let primary = s.primary_region()?;
    s.members
        .iter()
        .find(|m| m.role == Role::Secondary && m.region != primary)
        .map(|m| m.region.clone())
}

fn key_base() -> u64 {
    // Distinct keys per case and run, so cases never see each other's records.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn write_keys(h: &dyn Harness, base: u64, n: u64) -> Result<(), String> {
    for k in base..base + n {
        h.write(k)
            .await
            .map_err(|e| format!("write {k} through the primary failed: {e}"))?;
    }
    Ok(())
}

async fn assert_keys(h: &dyn Harness, base: u64, n: u64, when: &str) -> Result<(), String> {
    for k in base..base + n {
        let ok = h
            .contains(k)
            .await
            .map_err(|e| format!("reading {k} from the primary failed: {e}"))?;
        ensure!(
            ok,
            "{when}: acknowledged record {k} is missing on the primary"
        );
    }
    Ok(())
}

/// `observe` reports every member with its region and role, exactly one
/// primary, positions and lag where the controller claims them.
pub async fn observe(h: &dyn Harness, cfg: &SuiteConfig) -> CaseResult {
    let c = h.controller();
    let s = settle(h, cfg).await?;
    let cap = c.capability();
    ensure!(
        s.store == c.store(),
        "state names store {:?}, controller {:?}",
        s.store,
        c.store()
    );
    ensure!(
        s.kind == c.kind(),
        "state kind {} != controller kind {}",
        s.kind,
        c.kind()
    );
    ensure!(!s.members.is_empty(), "no members observed");
    let mut names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    names.dedup();
    ensure!(
        names.len() == s.members.len(),
        "member names repeat: {:?}",
        s.members
    );
    ensure!(
        s.primaries().count() == 1,
        "expected one primary: {:?}",
        s.members
    );
    ensure!(s.primary_region().is_some(), "no primary region");
    ensure!(
        s.members.iter().all(|m| !m.region.is_empty()),
        "member without region"
    );
    if cap.positions {
        ensure!(
            s.members
                .iter()
                .filter(|m| m.role != Role::Arbiter)
                .all(|m| m.position.is_some()),
            "data-bearing member without position: {:?}",
            s.members
        );
    }
    if cap.lag_bound {
        ensure!(
            s.members
                .iter()
                .filter(|m| m.role == Role::Secondary)
                .all(|m| m
                    .lag
                    .is_some_and(|l| l.bytes.is_some() || l.millis.is_some())),
            "secondary without lag: {:?}",
            s.members
        );
    }
    // A position belongs to a history (timeline, term); a store without
    // positions (Cosmos DB) may expose no term at all.
    ensure!(
        s.term.is_some() || !cap.positions,
        "no store term (timeline/term) observed"
    );
    let again = c
        .observe()
        .await
        .map_err(|e| format!("observe failed: {e}"))?;
    ensure!(
        again.primary().map(|m| &m.name) == s.primary().map(|m| &m.name),
        "primary changed between two observations without any operation"
    );
    Ok(Verdict::Passed)
}

/// A readiness check refuses a target region that lags beyond the store's
/// bound, with a `LagTooHigh` error naming the store and the member, and
/// accepts it again once it caught up.
pub async fn readiness_refuses_lagging_target(h: &dyn Harness, cfg: &SuiteConfig) -> CaseResult {
    let c = h.controller();
    if !c.capability().lag_bound {
        return Ok(Verdict::Skipped("controller has no lag bound".into()));
    }
    let s = settle(h, cfg).await?;
    let target = other_region(&s).ok_or("no secondary outside the primary region")?;
    let induced = h
        .induce_lag(&target)
        .await
        .map_err(|e| format!("inducing lag failed: {e}"))?;
    if !induced {
        return Ok(Verdict::Skipped("backing cannot induce lag".into()));
    }
    let op = Operation::CheckReadiness {
        target_region: target.clone(),
        mode: PromoteMode::Planned,
    };
    let refused = c.execute(&op, &cfg.ctx).await;
    let cleared = h.clear_lag(&target).await;
    match refused {
        Ok(o) => return Err(format!("readiness accepted a lagging {target}: {o:?}")),
        Err(e) => {
            ensure!(
                e.kind() == ErrorKind::LagTooHigh,
                "expected LagTooHigh, got {:?}: {e}",
                e.kind()
            );
            ensure!(e.store() == c.store(), "error names store {:?}", e.store());
            ensure!(e.member().is_some(), "error names no member: {e}");
            ensure!(!e.is_temporary(), "LagTooHigh must not be temporary");
        }
    }
    cleared.map_err(|e| format!("clearing lag failed: {e}"))?;
    // Once caught up the same check passes.
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    loop {
        match c.execute(&op, &cfg.ctx).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("readiness still refused after catching up: {e}"))
            }
            Err(_) => tokio::time::sleep(cfg.poll).await,
        }
    }
    settle(h, cfg).await?;
    Ok(Verdict::Passed)
}

/// A planned promotion while the primary is neither fenced nor caught up
/// must be refused and change nothing (stores with explicit promotion;
/// skipped for self-electing stores, whose step-down waits for catch-up).
pub async fn planned_promote_refuses_unfenced_primary(
    h: &dyn Harness,
    cfg: &SuiteConfig,
) -> CaseResult {
    let c = h.controller();
    let cap = c.capability();
    if !(cap.planned_switchover && cap.fencing) {
        return Ok(Verdict::Skipped("no explicit fencing".into()));
    }
    if cap.self_electing {
        // An election step-down waits for catch-up itself; promotion
        // without a prior Fence is legitimate there.
        return Ok(Verdict::Skipped("self-electing store".into()));
    }
    let s = settle(h, cfg).await?;
    let target = other_region(&s).ok_or("no secondary outside the primary region")?;
    let op = Operation::Promote {
        target_region: target,
        mode: PromoteMode::Planned,
    };
    match c.execute(&op, &cfg.ctx).await {
        Ok(o) => return Err(format!("planned promote without a fence succeeded: {o:?}")),
        Err(e) => ensure!(
            matches!(e.kind(), ErrorKind::Refused | ErrorKind::NotReady),
            "expected Refused/NotReady, got {:?}: {e}",
            e.kind()
        ),
    }
    let after = settle(h, cfg).await?;
    ensure!(
        after.primary().map(|m| &m.name) == s.primary().map(|m| &m.name) && after.term == s.term,
        "refused promotion changed the store: {:?} -> {:?}",
        s.primary(),
        after.primary()
    );
    Ok(Verdict::Passed)
}

/// Planned switchover to another region and back: every acknowledged record
/// survives, the store term advances, the new primary accepts writes, every
/// member follows it afterwards.
pub async fn planned_switchover_and_back(h: &dyn Harness, cfg: &SuiteConfig) -> CaseResult {
    let c = h.controller();
    if !c.capability().planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let s0 = settle(h, cfg).await?;
    let origin = s0.primary_region().ok_or("no primary")?.to_string();
    let target = other_region(&s0).ok_or("no secondary outside the primary region")?;
    let base = key_base();
    write_keys(h, base, 20).await?;
    planned_switchover(c, &target, &cfg.ctx, cfg.timeout)
        .await
        .map_err(|e| format!("switchover to {target}: {e}"))?;
    let s1 = settle(h, cfg).await?;
    ensure!(
        s1.primary_region() == Some(target.as_str()),
        "after switchover to {target} the primary is in {:?}",
        s1.primary_region()
    );
    if let (Some(a), Some(b)) = (s0.term, s1.term) {
        ensure!(b > a, "store term did not advance: {a} -> {b}");
    }
    assert_keys(h, base, 20, "after switchover").await?;
    write_keys(h, base + 20, 5).await?;

    planned_switchover(c, &origin, &cfg.ctx, cfg.timeout)
        .await
        .map_err(|e| format!("switchover back to {origin}: {e}"))?;
    let s2 = settle(h, cfg).await?;
    ensure!(
        s2.primary_region() == Some(origin.as_str()),
        "after switching back the primary is in {:?}",
        s2.primary_region()
    );
    assert_keys(h, base, 25, "after switching back").await?;
    write_keys(h, base + 25, 1).await?;
    Ok(Verdict::Passed)
}

/// Every operation of a planned switchover, executed twice in a row: the
/// repeat succeeds, mutating ones report `already_done`, a repeated
/// promotion does not advance the store term again. Switches back afterwards.
pub async fn repeated_operations_are_harmless(h: &dyn Harness, cfg: &SuiteConfig) -> CaseResult {
    let c = h.controller();
    let cap = c.capability();
    if !cap.planned_switchover {
        return Ok(Verdict::Skipped("no planned switchover".into()));
    }
    let s0 = settle(h, cfg).await?;
    let origin = s0.primary_region().ok_or("no primary")?.to_string();
    let target = other_region(&s0).ok_or("no secondary outside the primary region")?;
    let base = key_base();
    write_keys(h, base, 5).await?;
    let ctx = &cfg.ctx;
    let twice = |op: Operation| async move {
        let first = c.execute(&op, ctx).await.map_err(|e| op_err(&op, e))?;
        let second = c
            .execute(&op, ctx)
            .await
            .map_err(|e| format!("repeating {op}: {e}"))?;
        if op.is_mutating() {
            ensure!(
                second.already_done,
                "repeating {op} did work again: {second:?}"
            );
        }
        Ok::<_, String>((first, second))
    };
    // The production sequence, every step twice.
    let mut captured = None;
    let mut e2 = None;
    for (_, step) in sequence::steps(Kind::PlannedSwitchover, &cap) {
        let op = step
            .operation(
                &target,
                PromoteMode::Planned,
                captured,
                cfg.timeout.as_millis() as u64,
            )
            .ok_or("no captured position")?;
        match step {
            SeqStep::CapturePosition => {
                let (a, b) = twice(op).await?;
                ensure!(
                    a.position == b.position && a.position.is_some(),
                    "captured positions differ: {:?} vs {:?}",
                    a.position,
                    b.position
                );
                captured = a.position;
            }
            SeqStep::Promote => {
                let first = c.execute(&op, ctx).await.map_err(|e| op_err(&op, e))?;
                // The preference step before it may have moved the primary
                // already: priority takeover (MongoDB, EventStoreDB), a
                // failover-priority change (Cosmos DB).
                ensure!(
                    !first.already_done || cap.sticky_priorities,
                    "first promote claims already done"
                );
                let e1 = c.observe().await.map_err(|e| e.to_string())?.term;
                let second = c
                    .execute(&op, ctx)
                    .await
                    .map_err(|e| format!("repeating promote: {e}"))?;
                ensure!(
                    second.already_done,
                    "repeated promote did work again: {second:?}"
                );
                let after = c.observe().await.map_err(|e| e.to_string())?.term;
                ensure!(
                    e1 == after,
                    "repeated promote moved the store term {e1:?} -> {after:?}"
                );
                e2 = after;
            }
            _ => {
                twice(op).await?;
            }
        }
    }
    let s1 = settle(h, cfg).await?;
    ensure!(
        s1.primary_region() == Some(target.as_str()),
        "primary in {:?}, expected {target}",
        s1.primary_region()
    );
    ensure!(
        s1.term == e2,
        "store term moved after the repeats: {e2:?} -> {:?}",
        s1.term
    );
    assert_keys(h, base, 5, "after repeated operations").await?;
    planned_switchover(c, &origin, ctx, cfg.timeout)
        .await
        .map_err(|e| format!("switching back to {origin}: {e}"))?;
    settle(h, cfg).await?;
    Ok(Verdict::Passed)
}

/// Kill the primary; a forced failover promotes a member of another region
/// (within the lag bound, so without accepting loss), reports a data-loss
/// estimate, the survivors follow it, and the old primary rejoins as a
/// follower after it comes back.
pub async fn forced_failover_with_primary_gone(h: &dyn Harness, cfg: &SuiteConfig) -> CaseResult {
    let c = h.controller();
    let cap = c.capability();
    if !cap.forced_failover {
        return Ok(Verdict::Skipped("no forced failover".into()));
    }
    let s0 = settle(h, cfg).await?;
    let old = s0.primary().ok_or("no primary")?.clone();
    let target = other_region(&s0).ok_or("no secondary outside the primary region")?;
    let base = key_base();
    write_keys(h, base, 10).await?;
    // Let the target catch up so that no acknowledged record is at risk and
    // the last observation before the crash shows it within the bound.
    if cap.positions {
        c.wait_until(cfg.timeout, cfg.poll, |s| {
            let Some(p) = s.primary().and_then(|p| p.position) else {
                return false;
            };
            s.members
                .iter()
                .filter(|m| m.region == target && m.role == Role::Secondary)
                .any(|m| m.position.is_some_and(|q| q.reached(&p)))
        })
        .await
        .map_err(|e| format!("{target} did not catch up before the crash: {e}"))?;
    }
    h.kill_member(&old.name)
        .await
        .map_err(|e| format!("killing {}: {e}", old.name))?;
    c.wait_until(cfg.timeout, cfg.poll, |s| {
        s.member(&old.name).is_some_and(|m| !m.reachable)
    })
    .await
    .map_err(|e| format!("{} still reachable after kill: {e}", old.name))?;

    let steps = forced_failover(c, &target, false, &cfg.ctx)
        .await
        .map_err(|e| format!("forced failover to {target}: {e}"))?;
    let promoted = steps
        .iter()
        .find(|s| matches!(s.op, Operation::Promote { .. }))
        .ok_or("no promote step")?;
    if cap.lag_bound {
        ensure!(
            promoted.outcome.data_loss.is_some(),
            "forced promotion reported no data-loss estimate: {:?}",
            promoted.outcome
        );
    }
    let s1 = c
        .wait_until(cfg.timeout, cfg.poll, |s| {
            s.primary_region() == Some(target.as_str())
                && s.members.iter().filter(|m| m.name != old.name).all(|m| {
                    m.reachable && matches!(m.role, Role::Primary | Role::Secondary | Role::Arbiter)
                })
        })
        .await
        .map_err(|e| format!("survivors did not follow the new primary in {target}: {e}"))?;
    if let (Some(a), Some(b)) = (s0.term, s1.term) {
        ensure!(b > a, "store term did not advance: {a} -> {b}");
    }
    let new_primary = s1.primary().ok_or("no primary")?.name.clone();
    for m in s1.members.iter().filter(|m| m.role == Role::Secondary) {
        if let Some(f) = &m.following {
            ensure!(
                f == &new_primary,
                "{} follows {f}, not {new_primary}",
                m.name
            );
        }
    }
    assert_keys(h, base, 10, "after forced failover").await?;
    write_keys(h, base + 10, 3).await?;

    h.restart_member(&old.name)
        .await
        .map_err(|e| format!("restarting {}: {e}", old.name))?;
    if cap.rejoin {
        // The restarted member may take a moment to answer; Rejoin handles a
        // member that is still down by its hooks, or reports a temporary error.
        let deadline = tokio::time::Instant::now() + cfg.timeout;
        loop {
            match c.execute(&Operation::Rejoin, &cfg.ctx).await {
                Ok(_) => break,
                Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(cfg.poll).await
                }
                Err(e) => return Err(format!("rejoin of {}: {e}", old.name)),
            }
        }
    }
    let s2 = settle(h, cfg).await?;
    ensure!(
        s2.primary().map(|m| &m.name) == Some(&new_primary),
        "primary changed after rejoin: {:?}",
        s2.primary()
    );
    ensure!(
        s2.member(&old.name)
            .is_some_and(|m| m.role != Role::Primary),
        "{} is primary again after rejoin",
        old.name
    );
    assert_keys(h, base, 13, "after rejoin").await?;
    Ok(Verdict::Passed)
}

impl Capability {
    /// Which conformance cases apply (for printing a plan of the suite).
    pub fn conformance_cases(&self) -> Vec<&'static str> {
        let mut v = vec!["observe"];
        if self.lag_bound {
            v.push("readiness_refuses_lagging_target");
        }
        if self.planned_switchover && self.fencing && !self.self_electing {
            v.push("planned_promote_refuses_unfenced_primary");
        }
        if self.planned_switchover {
            v.push("planned_switchover_and_back");
            v.push("repeated_operations_are_harmless");
        }
        if self.forced_failover {
            v.push("forced_failover_with_primary_gone");
        }
        v
    }
}
