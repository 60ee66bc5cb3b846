//! The plan model: ordered stages, each a set of store steps followed by a
//! checkpoint. Plain data, serialised to TOML (for review and git) and JSON
//! (for orchestrators).
//!
//! Within a stage, different stores proceed concurrently and each store's
//! steps run in the order written; the stage's checkpoint is validated once
//! every step has succeeded.

use crate::expectation::Expectation;
use serde::{Deserialize, Serialize};
use std::fmt;
use switchyard_controller::{Need, Operation, Position, PromoteMode};

/// Plan file format version written by this coordinator.
pub const PLAN_VERSION: u32 = 1;

/// Default time a stage's steps and checkpoint may take.
pub const DEFAULT_STAGE_TIMEOUT_MS: u64 = 120_000;

/// A failover plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan format version.
    pub version: u32,
    /// Human title.
    pub name: String,
    /// Name of the topology the plan was made for.
    pub topology: String,
    /// Region every store should end up primary in.
    pub target_region: String,
    /// Planned switchover or forced failover.
    pub mode: Mode,
    /// Extra ordering on top of the topology's `depends_on`: store → stores
    /// that must be promoted before it in this plan.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub depends_on: std::collections::BTreeMap<String, Vec<String>>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// What happens when the execution fails: by default it stops,
    /// resumable; `"rollback"` runs the compensating rollback right away
    /// (see [`crate::rollback`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<crate::rollback::OnFailure>,
}

/// How the plan moves primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Fence, capture, catch up, promote: nothing acknowledged is lost.
    Planned,
    /// The old primary region is gone: promote the best candidate within the lag bound.
    Forced,
    /// Forced, promoting even beyond the lag bound.
    ForcedAcceptDataLoss,
}

impl Mode {
    /// The controller-level promote mode.
    pub fn promote_mode(self) -> PromoteMode {
        match self {
            Mode::Planned => PromoteMode::Planned,
            Mode::Forced => PromoteMode::Forced {
                accept_data_loss: false,
            },
            Mode::ForcedAcceptDataLoss => PromoteMode::Forced {
                accept_data_loss: true,
            },
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Planned => "planned",
            Mode::Forced => "forced",
            Mode::ForcedAcceptDataLoss => "forced_accept_data_loss",
        })
    }
}

/// One stage: steps that may run concurrently across stores, then a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Human name ("readiness", "promote orders").
    pub name: String,
    /// How long the stage's steps and checkpoint may take, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Steps; per store in the order written, stores concurrently.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What every named store must be observed in before the next stage.
    #[serde(default)]
    pub checkpoint: Vec<CheckpointEntry>,
}

fn default_timeout() -> u64 {
    DEFAULT_STAGE_TIMEOUT_MS
}

/// One operation on one store. (Unknown keys are still refused: they reach
/// the flattened [`PlanOp`], which denies them.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// Store name from the topology.
    pub store: String,
    /// What to do.
    #[serde(flatten)]
    pub op: PlanOp,
}

/// The expectations one store must meet at a checkpoint (all must hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEntry {
    /// Store name from the topology.
    pub store: String,
    /// Expectations, all of which must hold.
    pub expect: Vec<Expectation>,
}

impl CheckpointEntry {
    /// The entry's expectations as one.
    pub fn expectation(&self) -> Expectation {
        if self.expect.len() == 1 {
            self.expect[0].clone()
        } else {
            Expectation::And(self.expect.clone())
        }
    }
}

/// Where a `wait_for_position` step takes its position from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PositionSource {
    /// `"captured"`: the position the same store's earlier `capture_position`
    /// step returned in this execution (read from the journal on resume).
    Captured(Captured),
    /// A fixed position written in the plan.
    Fixed(Position),
}

/// The literal `"captured"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Captured {
    /// Use the captured position.
    Captured,
}

/// An operation as written in a plan. Mirrors [`Operation`], except that a
/// wait may refer to a position captured earlier in the same execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "op", deny_unknown_fields)]
pub enum PlanOp {
    /// See [`Operation::CheckReadiness`].
    CheckReadiness {
        /// Region that should become primary.
        target_region: String,
        /// Planned or forced.
        mode: Mode,
        /// The member of `target_region` the operator chose
        /// (`--candidate`); absent: the controller picks the best one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// See [`Operation::Fence`].
    Fence,
    /// See [`Operation::CapturePosition`].
    CapturePosition,
    /// See [`Operation::WaitForPosition`].
    WaitForPosition {
        /// Region whose candidate must catch up.
        target_region: String,
        /// `"captured"` or a fixed `{ history, offset }` (`epoch` in older plans).
        position: PositionSource,
        /// Give up after this many milliseconds.
        timeout_ms: u64,
        /// The member of `target_region` the operator chose
        /// (`--candidate`); absent: the controller picks the best one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// See [`Operation::Promote`].
    Promote {
        /// Region that becomes primary.
        target_region: String,
        /// Planned or forced.
        mode: Mode,
        /// The member of `target_region` the operator chose
        /// (`--candidate`); absent: the controller picks the best one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// See [`Operation::RepointFollowers`].
    RepointFollowers,
    /// See [`Operation::Rejoin`].
    Rejoin,
    /// See [`Operation::MakeSticky`].
    MakeSticky {
        /// Region that should stay primary.
        target_region: String,
        /// The member of `target_region` the operator chose
        /// (`--candidate`); absent: the controller picks the best one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// See [`Operation::Unfence`].
    Unfence,
}

impl PlanOp {
    /// The capability this step needs: [`Operation::need`]'s table, read
    /// through the controller-level mode.
    pub fn need(&self) -> Need {
        match self {
            PlanOp::CheckReadiness { mode, .. } | PlanOp::Promote { mode, .. } => {
                Need::of_mode(&mode.promote_mode())
            }
            PlanOp::Fence | PlanOp::Unfence => Need::Fencing,
            PlanOp::CapturePosition | PlanOp::WaitForPosition { .. } => Need::Positions,
            PlanOp::RepointFollowers => Need::Repoint,
            PlanOp::Rejoin => Need::Rejoin,
            PlanOp::MakeSticky { .. } => Need::StickyPriorities,
        }
    }

    /// Stable short name (same as [`Operation::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            PlanOp::CheckReadiness { .. } => "check_readiness",
            PlanOp::Fence => "fence",
            PlanOp::CapturePosition => "capture_position",
            PlanOp::WaitForPosition { .. } => "wait_for_position",
            PlanOp::Promote { .. } => "promote",
            PlanOp::RepointFollowers => "repoint_followers",
            PlanOp::Rejoin => "rejoin",
            PlanOp::MakeSticky { .. } => "make_sticky",
            PlanOp::Unfence => "unfence",
        }
    }

    /// The member the operator chose for this step (`--candidate`), if any.
    pub fn candidate(&self) -> Option<&str> {
        match self {
            PlanOp::CheckReadiness { candidate, .. }
            | PlanOp::WaitForPosition { candidate, .. }
            | PlanOp::Promote { candidate, .. }
            | PlanOp::MakeSticky { candidate, .. } => candidate.as_deref(),
            _ => None,
        }
    }

    /// Region the step names, if any.
    pub fn region(&self) -> Option<&str> {
        match self {
            PlanOp::CheckReadiness { target_region, .. }
            | PlanOp::WaitForPosition { target_region, .. }
            | PlanOp::Promote { target_region, .. }
            | PlanOp::MakeSticky { target_region, .. } => Some(target_region),
            _ => None,
        }
    }

    /// The controller operation, with a captured position filled in.
    /// `None` when the step waits for a captured position that is not known.
    pub fn to_operation(&self, captured: Option<Position>) -> Option<Operation> {
        Some(match self {
            PlanOp::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => Operation::CheckReadiness {
                target_region: target_region.clone(),
                mode: mode.promote_mode(),
                candidate: candidate.clone(),
            },
            PlanOp::Fence => Operation::Fence,
            PlanOp::CapturePosition => Operation::CapturePosition,
            PlanOp::WaitForPosition {
                target_region,
                position,
                timeout_ms,
                candidate,
            } => Operation::WaitForPosition {
                target_region: target_region.clone(),
                position: match position {
                    PositionSource::Fixed(p) => *p,
                    PositionSource::Captured(_) => captured?,
                },
                timeout_ms: *timeout_ms,
                candidate: candidate.clone(),
            },
            PlanOp::Promote {
                target_region,
                mode,
                candidate,
            } => Operation::Promote {
                target_region: target_region.clone(),
                mode: mode.promote_mode(),
                candidate: candidate.clone(),
            },
            PlanOp::RepointFollowers => Operation::RepointFollowers,
            PlanOp::Rejoin => Operation::Rejoin,
            PlanOp::MakeSticky {
                target_region,
                candidate,
            } => Operation::MakeSticky {
                target_region: target_region.clone(),
                candidate: candidate.clone(),
            },
            PlanOp::Unfence => Operation::Unfence,
        })
    }
}

impl fmt::Display for PlanOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanOp::WaitForPosition {
                target_region,
                position: PositionSource::Captured(_),
                candidate,
                ..
            } => write!(
                f,
                "wait until {} has replayed the captured position",
                switchyard_controller::operation::in_region(candidate, target_region)
            ),
            other => match other.to_operation(None) {
                Some(op) => write!(f, "{op}"),
                None => f.write_str(other.name()),
            },
        }
    }
}

impl Plan {
    /// Serialise as TOML with a header comment. Fails for what TOML cannot
    /// hold: an integer beyond `i64::MAX` (a `timeout_ms` of 2^63 ms or more).
    pub fn to_toml(&self) -> Result<String, PlanTomlError> {
        let body = toml::to_string_pretty(self).map_err(|e| PlanTomlError(e.to_string()))?;
        Ok(format!(
            "# Switchyard plan: {}\n# Review, keep in git, run with `switchyard run <file>`.\n{body}",
            self.name
        ))
    }

    /// Serialise as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan model always serialises")
    }

    /// Every store a step or a checkpoint entry names.
    pub fn named_stores(&self) -> std::collections::BTreeSet<&str> {
        self.stages
            .iter()
            .flat_map(|st| {
                st.steps
                    .iter()
                    .map(|s| s.store.as_str())
                    .chain(st.checkpoint.iter().map(|c| c.store.as_str()))
            })
            .collect()
    }

    /// Every (stage index, step index) pair, in plan order.
    pub fn step_ids(&self) -> impl Iterator<Item = StepId> + '_ {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(s, st)| (0..st.steps.len()).map(move |i| StepId { stage: s, step: i }))
    }

    /// The step at `id`.
    pub fn step(&self, id: StepId) -> &Step {
        &self.stages[id.stage].steps[id.step]
    }

    /// Human-readable listing for dry runs and confirmations.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Plan: {} (topology {}, mode {}, target {})\n",
            self.name, self.topology, self.mode, self.target_region
        );
        for (i, st) in self.stages.iter().enumerate() {
            out.push_str(&format!(
                "\nStage {} — {} (timeout {}s)\n",
                i + 1,
                st.name,
                st.timeout_ms / 1000
            ));
            for s in &st.steps {
                out.push_str(&format!("  {:<12} {}\n", s.store, s.op));
            }
            for c in &st.checkpoint {
                let e: Vec<_> = c.expect.iter().map(|e| e.to_string()).collect();
                out.push_str(&format!("  ✓ {:<10} {}\n", c.store, e.join(", ")));
            }
        }
        out
    }
}

/// A plan that TOML cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plan cannot be written as TOML: {0} (TOML integers, such as `timeout_ms`, are at most {max})", max = i64::MAX)]
pub struct PlanTomlError(pub String);

/// The longest timeout a plan can carry, in milliseconds: what a TOML plan
/// file can hold (`i64::MAX`, about 292 million years).
pub const MAX_TIMEOUT_MS: u64 = i64::MAX as u64;

/// Identifies a step in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId {
    /// Stage index (0-based).
    pub stage: usize,
    /// Step index within the stage (0-based).
    pub step: usize,
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage + 1, self.step + 1)
    }
}
