//! The results of the commands that end in a verdict rather than an
//! execution id — abort, drill, rollback, close, show — as typed data. The
//! API answers with these (a job's last Server-Sent Event carries one), and
//! the CLI renders them with one function each, so `switchyard --server URL
//! abort` prints what a local `switchyard abort` prints.

use crate::journal::{Damage, Record};
use crate::report::ExecutionReport;
use crate::service::{Aborted, Drilled, Outcome, PendingAbort};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an abort does with one store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoreDecisionView {
    /// Store name.
    pub store: String,
    /// The decision, in words (`keep …`, `finish forward …`, `stuck …`).
    pub decision: String,
}

/// An abort decided (`event: abort_planned`): every store's decision,
/// before anything runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbortPlanned {
    /// The execution being aborted.
    pub execution_id: String,
    /// Whether there is anything to run (no: every store is stuck).
    pub has_plan: bool,
    /// Per store, in topology order.
    pub decisions: Vec<StoreDecisionView>,
}

impl AbortPlanned {
    /// The decisions of a pending abort.
    pub fn of(p: &PendingAbort) -> Self {
        AbortPlanned {
            execution_id: p.id.clone(),
            has_plan: p.planned.plan.is_some(),
            decisions: p
                .planned
                .decisions
                .iter()
                .map(|d| StoreDecisionView {
                    store: d.store.clone(),
                    decision: d.decision.to_string(),
                })
                .collect(),
        }
    }
}

/// One store after an abort.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbortStore {
    /// Store name.
    pub store: String,
    /// What the abort decided for it.
    pub decision: String,
    /// What was observed after the abort (primary, members).
    pub summary: String,
    /// Its one writable primary (`member@region`), if it has exactly one.
    pub writable_primary: Option<String>,
    /// Without one: what was seen.
    pub saw: Option<String>,
    /// Without one: the command that would fix it.
    pub fix: Option<String>,
}

/// How an abort ended (`event: abort_report`), judged by the stores
/// observed after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbortReport {
    /// The execution aborted.
    pub execution_id: String,
    /// The abort's own execution, when one ran.
    pub abort_execution_id: Option<String>,
    /// Every store has exactly one writable primary and the abort succeeded.
    pub ok: bool,
    /// How the abort's execution ended (absent when none ran).
    #[schema(value_type = Option<String>)]
    pub outcome: Option<Outcome>,
    /// Per store, in topology order.
    pub stores: Vec<AbortStore>,
}

impl AbortReport {
    /// The report of a finished abort.
    pub fn of(a: &Aborted) -> Self {
        AbortReport {
            execution_id: a.id.clone(),
            abort_execution_id: a.run.as_ref().map(|r| r.id.clone()),
            ok: a.ok(),
            outcome: a.run.as_ref().map(|r| r.outcome),
            stores: a
                .verdicts
                .iter()
                .map(|v| AbortStore {
                    store: v.store.clone(),
                    decision: v.decision.to_string(),
                    summary: a.summary(&v.store),
                    writable_primary: v.writable_primary.clone(),
                    saw: v.unresolved.as_ref().map(|(saw, _)| saw.clone()),
                    fix: v.unresolved.as_ref().map(|(_, fix)| fix.clone()),
                })
                .collect(),
        }
    }
}

/// How a drill ended (`event: drill_report`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DrillReport {
    /// Out, verified and back (the way back may have failed); `false`: the
    /// way out did not succeed and nothing came back.
    pub completed: bool,
    /// Where the stores started (and came back to); empty when not completed.
    pub from: String,
    /// Where they went; empty when not completed.
    pub to: String,
    /// Time spent observing outside the executions (ms).
    pub observe_ms: u64,
    /// The way out's report.
    #[schema(value_type = Option<Object>)]
    pub out: Option<ExecutionReport>,
    /// The way back's report.
    #[schema(value_type = Option<Object>)]
    pub back: Option<ExecutionReport>,
    /// How the last execution ended (the way back, or the way out when it stopped).
    #[schema(value_type = String)]
    pub outcome: Outcome,
}

impl DrillReport {
    /// The report of a drill.
    pub fn of(d: &Drilled) -> Self {
        match d {
            Drilled::Stopped(out) => DrillReport {
                completed: false,
                from: String::new(),
                to: String::new(),
                observe_ms: 0,
                out: Some(out.report.clone()),
                back: None,
                outcome: out.outcome,
            },
            Drilled::Completed {
                origin,
                to,
                observe_ms,
                reports,
                back,
            } => DrillReport {
                completed: true,
                from: origin.clone(),
                to: to.clone(),
                observe_ms: *observe_ms,
                out: reports.first().cloned(),
                back: reports.get(1).cloned(),
                outcome: back.outcome,
            },
        }
    }
}

/// What a rollback does with one store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackAction {
    /// Store name.
    pub store: String,
    /// What the rollback does, in words.
    pub action: String,
}

/// A rollback planned (`dry_run`, and `event: rollback_planned`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackPreview {
    /// The execution rolled back.
    pub execution_id: String,
    /// Per store, in topology order.
    pub stores: Vec<RollbackAction>,
    /// The plan the rollback runs (absent: every store is where it started).
    #[schema(value_type = Option<Object>)]
    pub plan: Option<crate::plan::Plan>,
}

/// How a rollback ended (`event: rollback_ended`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackEnded {
    /// The execution rolled back.
    pub execution_id: String,
    /// The rollback's own execution (absent: nothing had to run, and the
    /// execution was closed).
    pub rollback_execution_id: Option<String>,
    /// How it ended (absent when nothing ran).
    #[schema(value_type = Option<String>)]
    pub outcome: Option<Outcome>,
}

/// A drill planned (`dry_run`): where the stores are and the plan out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DrillPreview {
    /// Region every store is primary in now (and comes back to).
    pub from: String,
    /// Region to move to.
    pub to: String,
    /// The plan out.
    #[schema(value_type = Object)]
    pub plan: crate::plan::Plan,
}

/// An execution closed by `POST /v1/executions/{id}/close`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClosedView {
    /// Execution id.
    pub execution_id: String,
    /// Always `closed`.
    pub status: String,
    /// The reason journaled.
    pub reason: String,
    /// The damage its journal had.
    pub damage: Vec<String>,
}

/// One execution's journal and report (`GET /v1/executions/{id}/journal`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JournalView {
    /// Execution id (`latest` resolved).
    pub id: String,
    /// The report built from the records.
    #[schema(value_type = Object)]
    pub report: ExecutionReport,
    /// Every record that could be read, in file order.
    #[schema(value_type = Vec<Object>)]
    pub journal: Vec<Record>,
    /// Where the journal is damaged.
    #[schema(value_type = Vec<Object>)]
    pub damage: Vec<Damage>,
}

/// How an execution started over a stream ended (`event:
/// execution_finished`), after what its plan's `on_failure` ran.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionFinished {
    /// Execution id.
    pub execution_id: String,
    /// How it ended for the server (`aborted`: failed and rolled back).
    #[schema(value_type = String)]
    pub outcome: Outcome,
    /// Why, when it did not succeed.
    pub reason: Option<String>,
}
