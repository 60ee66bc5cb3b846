//! The canonical sequences, defined once: which operations a store runs, in
//! which phase and order, for each kind of execution, selected by its
//! [`Capability`]. The planner lays the phases out as stages across stores
//! (dependency order), abort plans its repairs from the abort sequences,
//! and the conformance suite runs the same lists against one store, so
//! what is certified is what production runs.

use crate::capability::{Capability, Priorities};
use crate::operation::{Operation, PromoteMode};
use crate::state::Position;

/// Kinds of execution with a canonical sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Zero loss: fence, capture, catch up, promote.
    PlannedSwitchover,
    /// The old primary region is gone: promote the best candidate.
    ForcedFailover,
    /// Back to the original region once it healed: a planned switchover.
    Failback,
    /// Undo a finished switchover: a planned switchover back.
    Rollback,
}

/// Where in an execution a step runs. The planner makes one stage (or one
/// per dependency level) of each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Read-only checks, every store at once.
    Readiness,
    /// Freeze the old primary, dependents first.
    Fence,
    /// Make the target primary, dependencies first.
    Promote,
    /// Re-point followers and rejoin the former primary.
    Reconcile,
}

/// One step of a sequence, before a target, mode or position fills it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// [`Operation::CheckReadiness`].
    CheckReadiness,
    /// [`Operation::Fence`].
    Fence,
    /// [`Operation::CapturePosition`].
    CapturePosition,
    /// [`Operation::WaitForPosition`] for the position captured earlier.
    WaitForCaptured,
    /// [`Operation::MakeSticky`].
    MakeSticky,
    /// [`Operation::Promote`].
    Promote,
    /// [`Operation::RepointFollowers`].
    RepointFollowers,
    /// [`Operation::Rejoin`].
    Rejoin,
    /// [`Operation::Unfence`].
    Unfence,
}

impl Step {
    /// The operation, for `target_region` in `mode`, aimed at `candidate`
    /// when the operator chose one. `captured` is what the
    /// sequence's `CapturePosition` returned (`None` before it ran, or for
    /// steps that need none: then `WaitForCaptured` yields `None`).
    pub fn operation(
        self,
        target_region: &str,
        candidate: Option<&str>,
        mode: PromoteMode,
        captured: Option<Position>,
        wait_timeout_ms: u64,
    ) -> Option<Operation> {
        let t = target_region.to_string();
        let candidate = candidate.map(str::to_string);
        Some(match self {
            Step::CheckReadiness => Operation::CheckReadiness {
                target_region: t,
                mode,
                candidate,
            },
            Step::Fence => Operation::Fence,
            Step::CapturePosition => Operation::CapturePosition,
            Step::WaitForCaptured => Operation::WaitForPosition {
                target_region: t,
                position: captured?,
                timeout_ms: wait_timeout_ms,
                candidate,
            },
            Step::MakeSticky => Operation::MakeSticky {
                target_region: t,
                candidate,
            },
            Step::Promote => Operation::Promote {
                target_region: t,
                mode,
                candidate,
            },
            Step::RepointFollowers => Operation::RepointFollowers,
            Step::Rejoin => Operation::Rejoin,
            Step::Unfence => Operation::Unfence,
        })
    }
}

/// The steps of `kind` for a store with `cap`, in order.
pub fn steps(kind: Kind, cap: &Capability) -> Vec<(Phase, Step)> {
    let mut v = vec![(Phase::Readiness, Step::CheckReadiness)];
    match kind {
        Kind::PlannedSwitchover | Kind::Failback | Kind::Rollback => {
            if cap.fencing {
                v.push((Phase::Fence, Step::Fence));
                if cap.positions {
                    v.push((Phase::Fence, Step::CapturePosition));
                    v.push((Phase::Promote, Step::WaitForCaptured));
                }
            }
            // Persist the preference first, so the election the promotion
            // triggers lands in the target and stays there — unless a raised
            // priority moves the primary by itself (priority takeover): then
            // the target would be elected while the old primary still takes
            // writes it has not replicated, and they roll back. Such a store
            // hands over in the promotion (a step-down that waits for the
            // target to catch up) and persists the preference after it.
            let sticky = cap.sticky_priorities;
            if sticky && !cap.priority_takeover {
                v.push((Phase::Promote, Step::MakeSticky));
            }
            v.push((Phase::Promote, Step::Promote));
            if sticky && cap.priority_takeover {
                v.push((Phase::Promote, Step::MakeSticky));
            }
            if cap.repoint {
                v.push((Phase::Reconcile, Step::RepointFollowers));
            }
            if cap.rejoin {
                v.push((Phase::Reconcile, Step::Rejoin));
                // Runtime-only priorities are forgotten by a restart, and
                // rejoining the former primary may restart it: state the
                // preference once more, last (already done when it held).
                if cap.sticky_priorities && cap.priorities == Priorities::RuntimeOnly {
                    v.push((Phase::Reconcile, Step::MakeSticky));
                }
            }
        }
        Kind::ForcedFailover => {
            v.push((Phase::Promote, Step::Promote));
            // The new primary must exist before it can rewrite priorities.
            if cap.sticky_priorities {
                v.push((Phase::Promote, Step::MakeSticky));
            }
            if cap.repoint {
                v.push((Phase::Reconcile, Step::RepointFollowers));
            }
            // The old primary is gone; it rejoins later, by a plan of its own.
        }
    }
    v
}

/// The steps of `kind` in `phase`.
pub fn in_phase(kind: Kind, cap: &Capability, phase: Phase) -> Vec<Step> {
    steps(kind, cap)
        .into_iter()
        .filter(|(p, _)| *p == phase)
        .map(|(_, s)| s)
        .collect()
}

/// A store already primary in the target still gets its preference
/// persisted: a region that elected itself after a cut is otherwise taken
/// back by priority takeover the moment the old region heals.
pub fn already_primary(cap: &Capability) -> Vec<(Phase, Step)> {
    if cap.sticky_priorities {
        vec![(Phase::Promote, Step::MakeSticky)]
    } else {
        vec![]
    }
}

/// What an abort runs on one store, by what it finds there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// One writable primary outside the target: keep it, restoring the
    /// preference this execution moved (`touched_sticky`).
    Keep {
        /// The execution had made the target preferred.
        touched_sticky: bool,
    },
    /// No writable primary, and this execution fenced it: give it back.
    Restore,
    /// The target is already primary: finish the move instead.
    Forward {
        /// The aborted execution was a planned switchover (its old primary
        /// is there to rejoin).
        planned: bool,
        /// A member the execution left out is reachable again and only a
        /// rejoin brings it back (`awaits_rejoin`: a Cosmos DB location a
        /// forced failover took offline, healed since). A forced failover
        /// leaves it to a later plan; an abort is the operator's last word
        /// on the execution, so it rejoins it now, as that plan would.
        rejoin_healed: bool,
    },
}

/// The abort steps for a store with `cap`.
pub fn abort(a: Abort, cap: &Capability) -> Vec<Step> {
    match a {
        Abort::Keep { touched_sticky } => {
            if cap.sticky_priorities && touched_sticky {
                vec![Step::MakeSticky]
            } else {
                vec![]
            }
        }
        Abort::Restore => vec![Step::Unfence],
        Abort::Forward {
            planned,
            rejoin_healed,
        } => {
            let mut v = vec![];
            if cap.sticky_priorities {
                v.push(Step::MakeSticky);
            }
            if cap.repoint {
                v.push(Step::RepointFollowers);
            }
            if cap.rejoin && (planned || rejoin_healed) {
                v.push(Step::Rejoin);
            }
            v
        }
    }
}

/// What a compensating rollback runs on one store, by what it finds there
/// now (the coordinator decides which, from the journal and an observation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// One writable primary where the execution found it: keep it,
    /// restoring the preference the execution moved (`touched_sticky`).
    Stay {
        /// The execution had made its target preferred.
        touched_sticky: bool,
    },
    /// No writable primary, fenced by the execution and never promoted:
    /// give the old primary back.
    Unfence,
    /// Promoted elsewhere: [`Kind::Rollback`], a planned switchover back.
    Back,
}

/// The rollback steps for a store with `cap`, with the phase each runs in.
/// `Back` is the whole [`Kind::Rollback`] sequence; the planner lays it out
/// across stores like any planned switchover.
pub fn rollback(r: Rollback, cap: &Capability) -> Vec<(Phase, Step)> {
    match r {
        Rollback::Stay { touched_sticky } => {
            if cap.sticky_priorities && touched_sticky {
                vec![(Phase::Promote, Step::MakeSticky)]
            } else {
                vec![]
            }
        }
        Rollback::Unfence if cap.fencing => vec![(Phase::Promote, Step::Unfence)],
        Rollback::Unfence => vec![],
        Rollback::Back => steps(Kind::Rollback, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(kind: Kind, cap: &Capability) -> Vec<Step> {
        steps(kind, cap).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn planned_switchover_for_postgres_and_mongodb() {
        let pg = Capability::none()
            .with_fencing()
            .with_positions()
            .with_repoint()
            .with_rejoin();
        assert_eq!(
            ops(Kind::PlannedSwitchover, &pg),
            vec![
                Step::CheckReadiness,
                Step::Fence,
                Step::CapturePosition,
                Step::WaitForCaptured,
                Step::Promote,
                Step::RepointFollowers,
                Step::Rejoin
            ]
        );
        let mongo = Capability::none()
            .with_positions()
            .with_rejoin()
            .with_self_electing()
            .with_sticky_priorities(crate::Priorities::Durable)
            .with_priority_takeover();
        // Promote before MakeSticky: a raised priority would take the
        // primary over before the step-down stops the old primary's writes.
        assert_eq!(
            ops(Kind::PlannedSwitchover, &mongo),
            vec![
                Step::CheckReadiness,
                Step::Promote,
                Step::MakeSticky,
                Step::Rejoin
            ]
        );
        // Without priority takeover (Cosmos DB, Sentinel) the preference
        // goes first, so the election the promotion triggers lands there.
        let cosmos = Capability::none()
            .with_rejoin()
            .with_sticky_priorities(crate::Priorities::Durable);
        assert_eq!(
            ops(Kind::PlannedSwitchover, &cosmos),
            vec![
                Step::CheckReadiness,
                Step::MakeSticky,
                Step::Promote,
                Step::Rejoin
            ]
        );
        assert_eq!(
            ops(Kind::ForcedFailover, &mongo),
            vec![Step::CheckReadiness, Step::Promote, Step::MakeSticky]
        );
        assert_eq!(
            ops(Kind::Rollback, &mongo),
            ops(Kind::PlannedSwitchover, &mongo)
        );
        assert_eq!(rollback(Rollback::Back, &pg), steps(Kind::Rollback, &pg));
        assert_eq!(
            rollback(Rollback::Unfence, &pg),
            vec![(Phase::Promote, Step::Unfence)]
        );
        assert!(rollback(
            Rollback::Stay {
                touched_sticky: true
            },
            &pg
        )
        .is_empty());
        assert_eq!(
            rollback(
                Rollback::Stay {
                    touched_sticky: true
                },
                &mongo
            ),
            vec![(Phase::Promote, Step::MakeSticky)]
        );
        assert!(rollback(
            Rollback::Stay {
                touched_sticky: false
            },
            &mongo
        )
        .is_empty());
    }

    #[test]
    fn abort_of_a_forced_failover_rejoins_only_a_healed_member() {
        let cosmos = Capability::none()
            .with_rejoin()
            .with_sticky_priorities(Priorities::Durable);
        let forward = |planned, rejoin_healed| {
            abort(
                Abort::Forward {
                    planned,
                    rejoin_healed,
                },
                &cosmos,
            )
        };
        assert_eq!(forward(false, false), vec![Step::MakeSticky]);
        assert_eq!(forward(false, true), vec![Step::MakeSticky, Step::Rejoin]);
        assert_eq!(forward(true, false), vec![Step::MakeSticky, Step::Rejoin]);
        // Nothing to rejoin with: no step the controller cannot run.
        let no_rejoin = Capability::none().with_repoint();
        assert_eq!(
            abort(
                Abort::Forward {
                    planned: false,
                    rejoin_healed: true
                },
                &no_rejoin
            ),
            vec![Step::RepointFollowers]
        );
    }

    #[test]
    fn runtime_only_priorities_are_stated_again_after_the_rejoin() {
        let esdb = Capability::none()
            .with_positions()
            .with_rejoin()
            .with_self_electing()
            .with_sticky_priorities(Priorities::RuntimeOnly);
        assert_eq!(
            ops(Kind::PlannedSwitchover, &esdb),
            vec![
                Step::CheckReadiness,
                Step::MakeSticky,
                Step::Promote,
                Step::Rejoin,
                Step::MakeSticky
            ]
        );
        let durable = esdb.with_sticky_priorities(Priorities::Durable);
        assert_eq!(
            in_phase(Kind::PlannedSwitchover, &durable, Phase::Reconcile),
            vec![Step::Rejoin]
        );
    }

    #[test]
    fn every_step_is_covered_by_the_capability_it_came_from() {
        let caps = [
            Capability::none().with_fencing().with_positions(),
            Capability::none().with_sticky_priorities(crate::Priorities::RuntimeOnly),
            Capability::none()
                .with_sticky_priorities(crate::Priorities::Durable)
                .with_priority_takeover(),
            Capability::none().with_repoint().with_rejoin(),
        ];
        for cap in caps {
            let cap = cap.with_planned_switchover().with_forced_failover();
            for kind in [Kind::PlannedSwitchover, Kind::ForcedFailover] {
                for (_, s) in steps(kind, &cap) {
                    let mode = match kind {
                        Kind::ForcedFailover => PromoteMode::Forced {
                            accept_data_loss: false,
                        },
                        _ => PromoteMode::Planned,
                    };
                    let pos = Some(Position {
                        history: crate::History(1),
                        offset: 1,
                    });
                    let op = s.operation("west", None, mode, pos, 1).unwrap();
                    assert!(cap.has(op.need()), "{kind:?} {op} with {cap:?}");
                }
            }
        }
    }
}
