//! Operations as data: what the coordinator journals, prints in a dry run and
//! hands to a controller to carry out.

use crate::capability::Need;
use crate::state::Position;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Planned (zero loss, old primary cooperates) or forced (old primary gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum PromoteMode {
    /// The old primary was fenced and the target caught up to its final position.
    Planned,
    /// The old primary is unreachable; promote the best candidate available.
    Forced {
        /// Promote even when the candidate lags beyond the store's bound.
        accept_data_loss: bool,
    },
}

/// One step a controller can carry out. Every operation must be idempotent:
/// repeating it after it succeeded (a coordinator resuming after a crash)
/// changes nothing and succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "op")]
#[non_exhaustive]
pub enum Operation {
    /// Check that `target_region` can take over: a healthy candidate exists,
    /// within the lag bound unless `accept_data_loss`. Changes nothing.
    CheckReadiness {
        /// Region that should become primary.
        target_region: String,
        /// Planned switchover or forced failover.
        mode: PromoteMode,
        /// The member to judge (the one to be promoted), chosen by the operator (`--candidate`);
        /// `None`: the controller picks the best one of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// Make the current primary refuse new writes and end its write sessions.
    Fence,
    /// Read the fenced primary's final position (returned in [`Outcome::position`]).
    CapturePosition,
    /// Wait until the promotion candidate in `target_region` has replayed `position`.
    WaitForPosition {
        /// Region whose candidate must catch up.
        target_region: String,
        /// The position captured from the fenced primary.
        position: Position,
        /// Give up after this many milliseconds.
        timeout_ms: u64,
        /// The member that must catch up, chosen by the operator (`--candidate`);
        /// `None`: the controller picks the best one of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// Make a member of `target_region` primary.
    Promote {
        /// Region that becomes primary.
        target_region: String,
        /// Planned or forced.
        mode: PromoteMode,
        /// The member to promote, chosen by the operator (`--candidate`);
        /// `None`: the controller picks the best one of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// Point every other follower at the new primary.
    RepointFollowers,
    /// Turn the former primary(ies) into followers of the current primary;
    /// a stale primary still taking writes (a split brain) is fenced first.
    Rejoin,
    /// Persist the preference for `target_region` (priorities) so the move sticks.
    MakeSticky {
        /// Region that should stay primary.
        target_region: String,
        /// The member that must outrank the rest of the region, chosen by the operator (`--candidate`);
        /// `None`: the controller picks the best one of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<String>,
    },
    /// Undo a fence on the current primary (abort of a planned switchover).
    Unfence,
}

impl Operation {
    /// Short stable name, used in journals, progress lines and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::CheckReadiness { .. } => "check_readiness",
            Operation::Fence => "fence",
            Operation::CapturePosition => "capture_position",
            Operation::WaitForPosition { .. } => "wait_for_position",
            Operation::Promote { .. } => "promote",
            Operation::RepointFollowers => "repoint_followers",
            Operation::Rejoin => "rejoin",
            Operation::MakeSticky { .. } => "make_sticky",
            Operation::Unfence => "unfence",
        }
    }

    /// The capability this operation needs (the one table of
    /// [`crate::capability`]).
    pub fn need(&self) -> Need {
        match self {
            Operation::CheckReadiness { mode, .. } | Operation::Promote { mode, .. } => {
                Need::of_mode(mode)
            }
            Operation::Fence | Operation::Unfence => Need::Fencing,
            Operation::CapturePosition | Operation::WaitForPosition { .. } => Need::Positions,
            Operation::RepointFollowers => Need::Repoint,
            Operation::Rejoin => Need::Rejoin,
            Operation::MakeSticky { .. } => Need::StickyPriorities,
        }
    }

    /// The member the operator chose for this step (`--candidate`), if any.
    pub fn candidate(&self) -> Option<&str> {
        match self {
            Operation::CheckReadiness { candidate, .. }
            | Operation::WaitForPosition { candidate, .. }
            | Operation::Promote { candidate, .. }
            | Operation::MakeSticky { candidate, .. } => candidate.as_deref(),
            _ => None,
        }
    }

    /// Whether the operation changes the store (read-only ones are not
    /// fenced: any coordinator may look).
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Operation::CheckReadiness { .. }
                | Operation::CapturePosition
                | Operation::WaitForPosition { .. }
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => {
                write!(
                    f,
                    "check readiness of {} ({})",
                    in_region(candidate, target_region),
                    mode_str(mode)
                )
            }
            Operation::Fence => f.write_str("fence the current primary"),
            Operation::CapturePosition => f.write_str("capture the final position"),
            Operation::WaitForPosition {
                target_region,
                position,
                candidate,
                ..
            } => write!(
                f,
                "wait until {} has replayed {position}",
                in_region(candidate, target_region)
            ),
            Operation::Promote {
                target_region,
                mode,
                candidate,
            } => {
                write!(
                    f,
                    "promote {} ({})",
                    in_region(candidate, target_region),
                    mode_str(mode)
                )
            }
            Operation::RepointFollowers => f.write_str("re-point followers"),
            Operation::Rejoin => f.write_str("rejoin the former primary as a follower"),
            Operation::MakeSticky {
                target_region,
                candidate,
            } => {
                // What it is for, in the operator's words: the old region
                // must not take the primary back when it heals.
                write!(
                    f,
                    "set election priorities so {} keeps the primary",
                    in_region(candidate, target_region)
                )
            }
            Operation::Unfence => f.write_str("unfence the primary"),
        }
    }
}

impl Operation {
    /// The operation's on-screen words with any position in the store's
    /// own `notation` (`wait until west has replayed 0/4000060 on timeline
    /// 1`, not `67108960@1`): the live progress and `show` alike.
    pub fn describe(&self, notation: &crate::Notation) -> String {
        let text = self.to_string();
        match self {
            Operation::WaitForPosition { position, .. } => {
                text.replace(&position.to_string(), &notation.position(position))
            }
            _ => text,
        }
    }
}

/// Whether a member `name` of `region` is what a step towards
/// `target_region` aims at: any member of the region, or exactly the
/// operator's `candidate` when there is one.
pub fn is_target(name: &str, region: &str, target_region: &str, candidate: Option<&str>) -> bool {
    region == target_region && candidate.is_none_or(|c| c == name)
}

/// Why a primary found in the target region is not the operator's choice:
/// Switchyard moves primaries between regions, not within one.
pub fn other_primary_in_target(primary: &str, region: &str, candidate: &str) -> String {
    format!(
        "{primary} is already primary in {region}, not the chosen candidate {candidate}; \
         a move within a region is not a failover (choose {primary}, or no candidate)"
    )
}

/// `west`, or `pg-west-2 in west` when the operator chose the member.
pub fn in_region(candidate: &Option<String>, region: &str) -> String {
    match candidate {
        Some(c) => format!("{c} in {region}"),
        None => region.to_string(),
    }
}

fn mode_str(mode: &PromoteMode) -> &'static str {
    match mode {
        PromoteMode::Planned => "planned",
        PromoteMode::Forced {
            accept_data_loss: true,
        } => "forced, data loss accepted",
        PromoteMode::Forced {
            accept_data_loss: false,
        } => "forced",
    }
}

/// How much data a forced promotion may have lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataLossEstimate {
    /// Bytes of WAL/oplog the promoted member was behind at last observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Time window of writes that may be lost, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    /// Number of writes known to be rolled back, when countable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<u64>,
    /// Human explanation of the estimate.
    pub note: String,
}

/// What an operation produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Captured position (from `CapturePosition`) or position reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Member the operation acted on (the promoted member, the fenced primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Data-loss estimate of a forced promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLossEstimate>,
    /// True when the operation found its work already done (idempotent repeat).
    #[serde(default)]
    pub already_done: bool,
    /// Notes for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Outcome {
    /// An outcome with nothing to report.
    pub fn done() -> Self {
        Outcome::default()
    }

    /// The work was already done; nothing changed.
    pub fn already_done() -> Self {
        Outcome {
            already_done: true,
            ..Outcome::default()
        }
    }

    /// Attach the member acted upon.
    pub fn with_member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }

    /// Attach a position.
    pub fn with_position(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    /// Attach a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}
