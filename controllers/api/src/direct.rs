//! A canonical sequence ([`crate::sequence::steps`], the one the planner
//! lays out) run directly on one store, without the coordinator: for a
//! controller's own tests and benchmarks (a switchover under load, the
//! time one switchover takes). It certifies nothing: the conformance suite
//! (`switchyard::conformance`) runs every sequence through the
//! coordinator's service, executor and driver, as production does.

use crate::controller::{Controller, OpContext};
use crate::error::{Error, ErrorKind};
use crate::operation::{Operation, Outcome, PromoteMode};
use crate::sequence::{self, Kind, Step as SeqStep};
use std::time::Duration;

/// An operation a sequence executed and its outcome.
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
    candidate: Option<&str>,
    mode: PromoteMode,
    ctx: &OpContext,
    timeout: Duration,
) -> Result<Vec<Step>, Error> {
    let cap = c.capability();
    let mut steps = Vec::new();
    let mut captured = None;
    for (_, step) in sequence::steps(kind, &cap) {
        let op = step
            .operation(
                target_region,
                candidate,
                mode,
                captured,
                timeout.as_millis() as u64,
            )
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
    planned_switchover_of(c, target_region, None, ctx, timeout).await
}

/// [`planned_switchover`] promoting exactly `candidate` (a member of
/// `target_region`) when it is `Some`, as `--candidate` does.
pub async fn planned_switchover_of(
    c: &dyn Controller,
    target_region: &str,
    candidate: Option<&str>,
    ctx: &OpContext,
    timeout: Duration,
) -> Result<Vec<Step>, Error> {
    run_sequence(
        c,
        Kind::PlannedSwitchover,
        target_region,
        candidate,
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
        None,
        PromoteMode::Forced { accept_data_loss },
        ctx,
        Duration::from_secs(60),
    )
    .await
}
