//! What a store supports, and the one rule that says which capability an
//! operation needs ([`Need`], [`Capability::gate`]). The planner, the plan
//! validator, the capability layer and the conformance suite all read these,
//! so a capability is never assumed in one place and denied in another.

use crate::operation::{Operation, PromoteMode};
use serde::{Deserialize, Serialize};

/// Where a store keeps the election priorities that make a move stick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priorities {
    /// No election priorities (or none Switchyard sets).
    #[default]
    None,
    /// Priorities are persisted by the store (MongoDB's replica set config,
    /// Cosmos DB's failover priorities, Sentinel's rewritten config).
    Durable,
    /// Priorities are runtime state that a restart resets (EventStoreDB's
    /// node priority): Switchyard records the preference elsewhere and
    /// reports drift when a restarted node forgot it.
    RuntimeOnly,
}

/// Features a controller supports. Every field defaults to `false`, so a new
/// capability is opt-in for existing controllers. Build one outside this
/// crate with struct-update syntax or the builder methods:
///
/// ```
/// use switchyard_controller::Capability;
/// let a = Capability { fencing: true, ..Capability::none() };
/// let b = Capability::none().with_fencing();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// Zero-loss planned switchover (fence, capture, catch up, promote).
    pub planned_switchover: bool,
    /// Promotion with the old primary unreachable.
    pub forced_failover: bool,
    /// The old primary can be fenced (made to refuse writes) explicitly.
    pub fencing: bool,
    /// A final write position can be captured and waited for.
    pub positions: bool,
    /// Followers must be re-pointed explicitly after a promotion.
    pub repoint: bool,
    /// A former primary can be rejoined as a follower.
    pub rejoin: bool,
    /// Members elect their primary themselves (MongoDB, EventStoreDB).
    pub self_electing: bool,
    /// Preference can be persisted so a move sticks (MongoDB priorities,
    /// Cosmos DB failover priorities).
    pub sticky_priorities: bool,
    /// Where those priorities live: durable, or runtime state a restart
    /// resets. Meaningful only with `sticky_priorities`.
    #[serde(default)]
    pub priorities: Priorities,
    /// A member whose priority exceeds the primary's takes the primary over
    /// by itself (MongoDB's priority takeover), without the old primary
    /// stepping down first, so writes it acknowledged alone roll back.
    /// Such a store's planned sequences raise priorities only once the
    /// target holds the primary (see `sequence`). Meaningful only with
    /// `sticky_priorities`.
    #[serde(default)]
    pub priority_takeover: bool,
    /// Replication lag is observable and a lag bound can be enforced.
    pub lag_bound: bool,
    /// The operator can choose which member of the target region becomes
    /// primary (`--candidate`): readiness judges it, the wait waits for it,
    /// the promotion promotes exactly it and priorities keep it there.
    #[serde(default)]
    pub chosen_candidate: bool,
    /// How long one mutating operation is expected to take, when that is
    /// far beyond a stage's default timeout (Cosmos DB's ARM operations take
    /// minutes). The planner gives every stage with a mutating step for
    /// this store at least [`Capability::stage_timeout_ms`]. `None`:
    /// operations take seconds.
    pub expected_operation_ms: Option<u64>,
}

impl Capability {
    /// A capability set with nothing enabled; add to it with the builder
    /// methods or struct-update syntax.
    pub const fn none() -> Self {
        Capability {
            planned_switchover: false,
            forced_failover: false,
            fencing: false,
            positions: false,
            repoint: false,
            rejoin: false,
            self_electing: false,
            sticky_priorities: false,
            priorities: Priorities::None,
            priority_takeover: false,
            lag_bound: false,
            chosen_candidate: false,
            expected_operation_ms: None,
        }
    }

    /// With zero-loss planned switchover.
    pub const fn with_planned_switchover(mut self) -> Self {
        self.planned_switchover = true;
        self
    }

    /// With forced failover.
    pub const fn with_forced_failover(mut self) -> Self {
        self.forced_failover = true;
        self
    }

    /// With explicit fencing (and unfencing).
    pub const fn with_fencing(mut self) -> Self {
        self.fencing = true;
        self
    }

    /// With capturable and awaitable positions.
    pub const fn with_positions(mut self) -> Self {
        self.positions = true;
        self
    }

    /// With explicit re-pointing of followers.
    pub const fn with_repoint(mut self) -> Self {
        self.repoint = true;
        self
    }

    /// With rejoining a former primary.
    pub const fn with_rejoin(mut self) -> Self {
        self.rejoin = true;
        self
    }

    /// Members elect their primary themselves.
    pub const fn with_self_electing(mut self) -> Self {
        self.self_electing = true;
        self
    }

    /// With priorities that make a move stick, kept as `where_`.
    pub const fn with_sticky_priorities(mut self, where_: Priorities) -> Self {
        self.sticky_priorities = true;
        self.priorities = where_;
        self
    }

    /// Raising a member above the primary's priority makes it take over by
    /// itself ([`Capability::priority_takeover`]).
    pub const fn with_priority_takeover(mut self) -> Self {
        self.priority_takeover = true;
        self
    }

    /// With an observable, enforceable lag bound.
    pub const fn with_lag_bound(mut self) -> Self {
        self.lag_bound = true;
        self
    }

    /// With promotion of a member the operator chose.
    pub const fn with_chosen_candidate(mut self) -> Self {
        self.chosen_candidate = true;
        self
    }

    /// Mutating operations take about `ms` milliseconds.
    pub const fn with_expected_operation_ms(mut self, ms: u64) -> Self {
        self.expected_operation_ms = Some(ms);
        self
    }

    /// The timeout a stage with a mutating step for this store needs, given
    /// the stage's default: twice the expected operation time when that is
    /// longer (one operation plus its checkpoint).
    pub fn stage_timeout_ms(&self, default_ms: u64) -> u64 {
        self.expected_operation_ms
            .map_or(default_ms, |ms| default_ms.max(ms.saturating_mul(2)))
    }

    /// Whether this set provides `need`.
    pub fn has(&self, need: Need) -> bool {
        match need {
            Need::Nothing => true,
            Need::PlannedSwitchover => self.planned_switchover,
            Need::ForcedFailover => self.forced_failover,
            Need::Fencing => self.fencing,
            Need::Positions => self.positions,
            Need::Repoint => self.repoint,
            Need::Rejoin => self.rejoin,
            Need::StickyPriorities => self.sticky_priorities,
            Need::ChosenCandidate => self.chosen_candidate,
        }
    }

    /// What the capability layer does with `op` on a store with this set.
    pub fn gate(&self, op: &Operation) -> Gate {
        let need = op.need();
        if self.has(need) {
            // A chosen member the store cannot honour is refused, never
            // silently replaced by the controller's own choice.
            if op.candidate().is_some() && !self.has(Need::ChosenCandidate) {
                return Gate::Unsupported(Need::ChosenCandidate.what());
            }
            return Gate::Run;
        }
        match need {
            // Nothing to do, rather than nothing possible: the store does
            // by itself what the operation would make it do.
            Need::Repoint if self.self_electing => {
                Gate::NotNeeded("followers choose their sync source themselves")
            }
            Need::StickyPriorities if !self.self_electing => Gate::NotNeeded(
                "no election priorities: a promoted primary stays primary until the next promotion",
            ),
            _ => Gate::Unsupported(need.what()),
        }
    }
}

/// The capability an operation needs. One table, read by the capability
/// layer, the planner, the plan validator and the conformance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Every controller can.
    Nothing,
    /// [`Capability::planned_switchover`].
    PlannedSwitchover,
    /// [`Capability::forced_failover`].
    ForcedFailover,
    /// [`Capability::fencing`].
    Fencing,
    /// [`Capability::positions`].
    Positions,
    /// [`Capability::repoint`].
    Repoint,
    /// [`Capability::rejoin`].
    Rejoin,
    /// [`Capability::sticky_priorities`].
    StickyPriorities,
    /// [`Capability::chosen_candidate`]: needed on top of the step's own
    /// need by every step that names a candidate.
    ChosenCandidate,
}

impl Need {
    /// The capability in words, as error messages name it.
    pub fn what(self) -> &'static str {
        match self {
            Need::Nothing => "nothing",
            Need::PlannedSwitchover => "planned switchover",
            Need::ForcedFailover => "forced failover",
            Need::Fencing => "fencing",
            Need::Positions => "capturing and waiting for positions",
            Need::Repoint => "re-pointing followers",
            Need::Rejoin => "rejoining a former primary",
            Need::StickyPriorities => "sticky priorities",
            Need::ChosenCandidate => "promoting a chosen member (--candidate)",
        }
    }

    /// What a promotion (or its readiness check) in `mode` needs.
    pub fn of_mode(mode: &PromoteMode) -> Need {
        match mode {
            PromoteMode::Planned => Need::PlannedSwitchover,
            PromoteMode::Forced { .. } => Need::ForcedFailover,
        }
    }
}

/// What the capability layer decided for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The controller carries it out.
    Run,
    /// The store does this by itself: succeed as already done, with the note.
    NotNeeded(&'static str),
    /// The store cannot: refuse with [`crate::ErrorKind::Unsupported`],
    /// naming the missing capability.
    Unsupported(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_update_and_builder_agree() {
        let a = Capability {
            planned_switchover: true,
            sticky_priorities: true,
            priorities: Priorities::RuntimeOnly,
            ..Capability::none()
        };
        let b = Capability::none()
            .with_planned_switchover()
            .with_sticky_priorities(Priorities::RuntimeOnly);
        assert_eq!(a, b);
    }

    #[test]
    fn gate_follows_the_need_table() {
        let pg = Capability::none().with_fencing().with_repoint();
        assert_eq!(pg.gate(&Operation::Fence), Gate::Run);
        assert!(matches!(
            pg.gate(&Operation::MakeSticky {
                target_region: "w".into(),
                candidate: Some("pg-w2".into()),
            }),
            Gate::NotNeeded(_)
        ));
        let mongo = Capability::none().with_self_electing();
        assert!(matches!(
            mongo.gate(&Operation::RepointFollowers),
            Gate::NotNeeded(_)
        ));
        assert_eq!(mongo.gate(&Operation::Fence), Gate::Unsupported("fencing"));
        let promote = Operation::Promote {
            target_region: "w".into(),
            mode: PromoteMode::Planned,
            candidate: Some("m-w2".into()),
        };
        let planned = mongo.with_planned_switchover();
        assert_eq!(
            planned.gate(&promote),
            Gate::Unsupported("promoting a chosen member (--candidate)")
        );
        assert_eq!(planned.with_chosen_candidate().gate(&promote), Gate::Run);
        assert_eq!(
            mongo.gate(&Operation::MakeSticky {
                target_region: "w".into(),
                candidate: None,
            }),
            Gate::Unsupported("sticky priorities")
        );
    }
}
