//! The executor: a pure state machine over a plan. It does no I/O.
//!
//! The [`crate::driver`] asks it what to do next ([`Executor::next`]), journals
//! and carries that out, and feeds the results back ([`Executor::apply`]).
//! Resuming is replaying the journal into a fresh executor
//! ([`Executor::replay`]): operations with an outcome are done, an operation
//! that was issued but has no outcome is issued again (controllers guarantee
//! idempotency), and a captured position comes from the journaled outcome.

use crate::journal::{OpResult, Record};
use crate::plan::{Plan, PlanOp, StepId};
use std::collections::BTreeMap;
use switchyard_controller::{ErrorKind, Operation, Outcome, Position};

/// State of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    /// Not issued yet (or to be issued again after a resume).
    Pending,
    /// Intent journaled, no outcome yet.
    Issued {
        /// The operation as issued.
        op: Operation,
    },
    /// Succeeded.
    Done(Outcome),
    /// Failed; the message and whether the readiness guard refused it.
    Failed {
        /// Error text.
        message: String,
        /// Error class.
        kind: ErrorKind,
    },
}

/// State of one stage's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointState {
    /// Not validated yet.
    Pending,
    /// Every expectation held.
    Passed,
    /// Timed out; what was seen.
    Failed(String),
}

/// Something that happened, fed back into the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The intent for a step was journaled with this exact operation.
    Issued {
        /// Step.
        id: StepId,
        /// Operation.
        op: Operation,
    },
    /// A step succeeded.
    Succeeded {
        /// Step.
        id: StepId,
        /// Its outcome.
        outcome: Outcome,
    },
    /// A step failed.
    Failed {
        /// Step.
        id: StepId,
        /// Error text.
        message: String,
        /// Error class.
        kind: ErrorKind,
    },
    /// A stage's checkpoint held.
    CheckpointPassed {
        /// Stage index.
        stage: usize,
    },
    /// A stage's checkpoint did not hold in time.
    CheckpointFailed {
        /// Stage index.
        stage: usize,
        /// Expected against observed.
        detail: String,
    },
    /// A coordinator took over the execution: unfinished and failed work
    /// becomes pending again.
    Resumed,
    /// A running step journaled progress (see [`Executor::progress`]).
    Progress {
        /// Step.
        id: StepId,
        /// The controller's token.
        token: String,
    },
    /// An operator ended the execution.
    Aborted,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Journal an intent for this step, then issue `op` to `store`.
    Run {
        /// Step.
        id: StepId,
        /// Store.
        store: String,
        /// Exact operation.
        op: Operation,
    },
    /// Every step of `stage` succeeded: validate its checkpoint.
    ValidateCheckpoint {
        /// Stage index.
        stage: usize,
    },
    /// Operations are in flight: wait for one to finish.
    Wait,
    /// Every stage passed.
    Done,
    /// The execution stopped; resumable.
    Failed {
        /// Stage the failure happened in.
        stage: usize,
        /// Why.
        reason: String,
        /// A readiness check refused (e.g. lag beyond the bound).
        refused: bool,
    },
    /// The execution was aborted.
    Aborted,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Executor {
    plan: Plan,
    steps: BTreeMap<StepId, StepState>,
    checkpoints: Vec<CheckpointState>,
    aborted: bool,
    progress: BTreeMap<StepId, String>,
}

impl Executor {
    /// A fresh execution of `plan`.
    pub fn new(plan: Plan) -> Self {
        let steps = plan.step_ids().map(|id| (id, StepState::Pending)).collect();
        let checkpoints = vec![CheckpointState::Pending; plan.stages.len()];
        Executor {
            plan,
            steps,
            checkpoints,
            aborted: false,
            progress: BTreeMap::new(),
        }
    }

    /// Rebuild from journal records (the plan is in the `Started` record).
    /// Returns `None` when the records hold no `Started` record.
    pub fn replay(records: &[Record]) -> Option<Self> {
        let plan = records.iter().find_map(|r| match r {
            Record::Started { plan, .. } => Some(plan.clone()),
            _ => None,
        })?;
        let mut ex = Executor::new(plan);
        for r in records {
            if let Some(ev) = event_of(r) {
                ex.apply(ev);
            }
        }
        Some(ex)
    }

    /// The plan being executed.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// State of a step.
    pub fn step_state(&self, id: StepId) -> &StepState {
        &self.steps[&id]
    }

    /// Index of the first stage whose checkpoint has not passed.
    pub fn current_stage(&self) -> Option<usize> {
        self.checkpoints
            .iter()
            .position(|c| *c != CheckpointState::Passed)
    }

    /// Whether a stage's checkpoint passed.
    pub fn stage_passed(&self, stage: usize) -> bool {
        self.checkpoints.get(stage) == Some(&CheckpointState::Passed)
    }

    /// Feed one event.
    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Issued { id, op } => {
                self.steps.insert(id, StepState::Issued { op });
            }
            Event::Succeeded { id, outcome } => {
                self.steps.insert(id, StepState::Done(outcome));
            }
            Event::Failed { id, message, kind } => {
                self.steps.insert(id, StepState::Failed { message, kind });
            }
            Event::CheckpointPassed { stage } => {
                if let Some(c) = self.checkpoints.get_mut(stage) {
                    *c = CheckpointState::Passed;
                }
            }
            Event::CheckpointFailed { stage, detail } => {
                if let Some(c) = self.checkpoints.get_mut(stage) {
                    *c = CheckpointState::Failed(detail);
                }
            }
            Event::Resumed => {
                for s in self.steps.values_mut() {
                    if matches!(s, StepState::Issued { .. } | StepState::Failed { .. }) {
                        *s = StepState::Pending;
                    }
                }
                for c in &mut self.checkpoints {
                    if matches!(c, CheckpointState::Failed(_)) {
                        *c = CheckpointState::Pending;
                    }
                }
            }
            Event::Progress { id, token } => {
                self.progress.insert(id, token);
            }
            Event::Aborted => self.aborted = true,
        }
    }

    /// The last progress token journaled for a step: handed back to the
    /// controller when the step is issued again, so it continues the same
    /// long-running operation (survives `Resumed`, which re-issues steps).
    pub fn progress(&self, id: StepId) -> Option<&str> {
        self.progress.get(&id).map(String::as_str)
    }

    /// The position captured for `store` by the latest `capture_position`
    /// step before `before` that succeeded.
    fn captured(&self, store: &str, before: StepId) -> Option<Position> {
        self.plan
            .step_ids()
            .take_while(|id| *id < before)
            .filter(|id| {
                let s = self.plan.step(*id);
                s.store == store && s.op == PlanOp::CapturePosition
            })
            .filter_map(|id| match &self.steps[&id] {
                StepState::Done(o) => o.position,
                _ => None,
            })
            .last()
    }

    /// What to do now. Several `Run`s may be returned: they are for different
    /// stores and may run concurrently. `Run`s for steps already issued are
    /// never returned.
    pub fn next(&self) -> Vec<Action> {
        if self.aborted {
            return vec![Action::Aborted];
        }
        let Some(stage) = self.current_stage() else {
            return vec![Action::Done];
        };
        let ids: Vec<StepId> = self
            .plan
            .step_ids()
            .filter(|id| id.stage == stage)
            .collect();
        let in_flight = ids
            .iter()
            .any(|id| matches!(self.steps[id], StepState::Issued { .. }));
        if let Some((id, message, kind)) = ids.iter().find_map(|id| match &self.steps[id] {
            StepState::Failed { message, kind } => Some((*id, message, kind)),
            _ => None,
        }) {
            if in_flight {
                return vec![Action::Wait];
            }
            let step = self.plan.step(id);
            return vec![Action::Failed {
                stage,
                reason: format!(
                    "step {id} ({} {}) failed: {message}",
                    step.store,
                    step.op.name()
                ),
                // The lag guard refused, whichever step ran into it.
                refused: *kind == ErrorKind::LagTooHigh,
            }];
        }
        let mut actions = vec![];
        let mut seen_stores: Vec<&str> = vec![];
        for id in &ids {
            let step = self.plan.step(*id);
            if seen_stores.contains(&step.store.as_str()) {
                continue;
            }
            match &self.steps[id] {
                StepState::Done(_) => continue,
                StepState::Issued { .. } => {}
                StepState::Pending => {
                    let captured = self.captured(&step.store, *id);
                    match step.op.to_operation(captured) {
                        Some(op) => actions.push(Action::Run {
                            id: *id,
                            store: step.store.clone(),
                            op,
                        }),
                        None => {
                            return vec![Action::Failed {
                                stage,
                                reason: format!(
                                "step {id} ({}) needs a captured position but none was captured",
                                step.store
                            ),
                                refused: false,
                            }]
                        }
                    }
                }
                StepState::Failed { .. } => unreachable!("handled above"),
            }
            // Later steps of this store wait for this one.
            seen_stores.push(step.store.as_str());
        }
        if !actions.is_empty() {
            return actions;
        }
        if in_flight {
            return vec![Action::Wait];
        }
        match &self.checkpoints[stage] {
            CheckpointState::Failed(detail) => vec![Action::Failed {
                stage,
                reason: format!(
                    "checkpoint of stage {} ({}) not reached: {detail}",
                    stage + 1,
                    self.plan.stages[stage].name
                ),
                refused: false,
            }],
            _ => vec![Action::ValidateCheckpoint { stage }],
        }
    }
}

/// The executor event a journal record stands for.
pub fn event_of(r: &Record) -> Option<Event> {
    Some(match r {
        Record::Intent {
            stage, step, op, ..
        } => Event::Issued {
            id: StepId {
                stage: *stage,
                step: *step,
            },
            op: op.clone(),
        },
        Record::Outcome {
            stage,
            step,
            result,
            ..
        } => {
            let id = StepId {
                stage: *stage,
                step: *step,
            };
            match result {
                OpResult::Ok { outcome } => Event::Succeeded {
                    id,
                    outcome: outcome.clone(),
                },
                OpResult::Err { kind, message, .. } => Event::Failed {
                    id,
                    message: message.clone(),
                    kind: *kind,
                },
            }
        }
        Record::CheckpointPassed { stage, .. } => Event::CheckpointPassed { stage: *stage },
        Record::CheckpointFailed {
            stage, observed, ..
        } => Event::CheckpointFailed {
            stage: *stage,
            detail: observed
                .iter()
                .filter_map(|o| o.mismatch.as_ref().map(|m| format!("{}: {m}", o.store)))
                .collect::<Vec<_>>()
                .join("; "),
        },
        Record::Resumed { .. } => Event::Resumed,
        Record::Progress {
            stage, step, token, ..
        } => Event::Progress {
            id: StepId {
                stage: *stage,
                step: *step,
            },
            token: token.clone(),
        },
        Record::Aborted { .. } => Event::Aborted,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;
    use crate::planner::{plan_failover, PlanOptions};

    fn plan() -> Plan {
        let t = crate::planner::tests::topology(true);
        plan_failover(
            &t,
            &crate::planner::tests::caps(),
            &PlanOptions::new("west", Mode::Planned),
        )
        .unwrap()
    }

    fn runs(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Run { id, store, op } => format!("{id} {store} {}", op.name()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Drive an executor to completion, recording every action as a real
    /// driver would, with `pos` as the captured position.
    fn drive(ex: &mut Executor, pos: Position) -> Vec<String> {
        let mut log = vec![];
        for _ in 0..100 {
            let actions = ex.next();
            for a in &actions {
                match a {
                    Action::Run { id, op, .. } => {
                        log.push(format!("{id} {}", op.name()));
                        ex.apply(Event::Issued {
                            id: *id,
                            op: op.clone(),
                        });
                        let outcome = if *op == Operation::CapturePosition {
                            Outcome::done().with_position(pos)
                        } else {
                            Outcome::done()
                        };
                        ex.apply(Event::Succeeded { id: *id, outcome });
                    }
                    Action::ValidateCheckpoint { stage } => {
                        log.push(format!("checkpoint {}", stage + 1));
                        ex.apply(Event::CheckpointPassed { stage: *stage });
                    }
                    Action::Done => return log,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        panic!("did not finish: {log:?}");
    }

    #[test]
    fn runs_stores_concurrently_and_steps_in_order() {
        let ex = Executor::new(plan());
        assert_eq!(
            runs(&ex.next()),
            vec!["1.1 orders check_readiness", "1.2 catalog check_readiness"]
        );
        let mut ex = ex;
        let log = drive(
            &mut ex,
            Position {
                history: switchyard_controller::History(1),
                offset: 42,
            },
        );
        assert_eq!(
            log,
            vec![
                "1.1 check_readiness",
                "1.2 check_readiness",
                "checkpoint 1",
                "2.1 fence",
                "2.2 capture_position",
                "checkpoint 2",
                "3.1 wait_for_position",
                "3.2 promote",
                "checkpoint 3",
                "4.1 promote",
                "4.2 make_sticky",
                "checkpoint 4",
                "5.1 repoint_followers",
                "5.2 rejoin",
                "checkpoint 5",
            ]
        );
    }

    #[test]
    fn wait_uses_the_captured_position() {
        let mut ex = Executor::new(plan());
        let pos = Position {
            history: switchyard_controller::History(3),
            offset: 777,
        };
        for s in 0..2 {
            while let Some(Action::Run { id, op, .. }) = ex.next().into_iter().next() {
                ex.apply(Event::Issued { id, op: op.clone() });
                let o = if op == Operation::CapturePosition {
                    Outcome::done().with_position(pos)
                } else {
                    Outcome::done()
                };
                ex.apply(Event::Succeeded { id, outcome: o });
            }
            ex.apply(Event::CheckpointPassed { stage: s });
        }
        match &ex.next()[0] {
            Action::Run {
                op: Operation::WaitForPosition { position, .. },
                ..
            } => assert_eq!(*position, pos),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn in_flight_steps_are_not_reissued_and_failure_waits_for_them() {
        let mut ex = Executor::new(plan());
        let a = ex.next();
        for act in &a {
            if let Action::Run { id, op, .. } = act {
                ex.apply(Event::Issued {
                    id: *id,
                    op: op.clone(),
                });
            }
        }
        assert_eq!(ex.next(), vec![Action::Wait]);
        ex.apply(Event::Failed {
            id: StepId { stage: 0, step: 0 },
            message: "lag 9 MB beyond bound".into(),
            kind: ErrorKind::LagTooHigh,
        });
        assert_eq!(ex.next(), vec![Action::Wait], "catalog still in flight");
        ex.apply(Event::Succeeded {
            id: StepId { stage: 0, step: 1 },
            outcome: Outcome::done(),
        });
        match &ex.next()[0] {
            Action::Failed {
                refused, reason, ..
            } => {
                assert!(*refused);
                assert!(reason.contains("orders check_readiness"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        ex.apply(Event::Resumed);
        assert_eq!(runs(&ex.next()), vec!["1.1 orders check_readiness"]);
    }

    #[test]
    fn replay_reissues_intent_without_outcome_only() {
        let p = plan();
        let promote = Operation::Promote {
            target_region: "west".into(),
            mode: switchyard_controller::PromoteMode::Planned,
            candidate: None,
        };
        let mut records = vec![Record::Started {
            execution_id: "x".into(),
            fencing_token: switchyard_controller::FencingToken(1),
            at_ms: 0,
            kind: "run".into(),
            topology_file: "t".into(),
            store_kinds: Default::default(),
            plan: p.clone(),
        }];
        let mut seq = 0;
        let mut push_done =
            |records: &mut Vec<Record>, stage, step, op: Operation, out: Outcome| {
                seq += 1;
                records.push(Record::Intent {
                    seq,
                    stage,
                    step,
                    store: "orders".into(),
                    op,
                    fencing_token: switchyard_controller::FencingToken(1),
                    at_ms: 0,
                });
                records.push(Record::Outcome {
                    seq,
                    stage,
                    step,
                    store: "orders".into(),
                    at_ms: 0,
                    duration_ms: 0,
                    attempts: 1,
                    result: OpResult::Ok { outcome: out },
                });
            };
        let pos = Position {
            history: switchyard_controller::History(1),
            offset: 9,
        };
        push_done(&mut records, 0, 0, Operation::Fence, Outcome::done());
        push_done(&mut records, 0, 1, Operation::Fence, Outcome::done());
        records.push(Record::CheckpointPassed {
            stage: 0,
            at_ms: 0,
            duration_ms: 0,
            observe_ms: 0,
            polls: 1,
            stage_wall_us: 0,
            overhead_us: 0,
            observed: vec![],
        });
        push_done(&mut records, 1, 0, Operation::Fence, Outcome::done());
        push_done(
            &mut records,
            1,
            1,
            Operation::CapturePosition,
            Outcome::done().with_position(pos),
        );
        records.push(Record::CheckpointPassed {
            stage: 1,
            at_ms: 0,
            duration_ms: 0,
            observe_ms: 0,
            polls: 1,
            stage_wall_us: 0,
            overhead_us: 0,
            observed: vec![],
        });
        push_done(
            &mut records,
            2,
            0,
            Operation::WaitForPosition {
                target_region: "west".into(),
                position: pos,
                timeout_ms: 1,
                candidate: None,
            },
            Outcome::done(),
        );
        // Crash after the promote intent was journaled.
        records.push(Record::Intent {
            seq: 99,
            stage: 2,
            step: 1,
            store: "orders".into(),
            op: promote.clone(),
            fencing_token: switchyard_controller::FencingToken(1),
            at_ms: 0,
        });
        let ex = Executor::replay(&records).unwrap();
        assert_eq!(
            ex.next(),
            vec![Action::Wait],
            "before resume the intent is in flight"
        );
        records.push(Record::Resumed {
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 0,
        });
        let ex = Executor::replay(&records).unwrap();
        assert_eq!(runs(&ex.next()), vec!["3.2 orders promote"]);
    }

    #[test]
    fn checkpoint_failure_is_resumable() {
        let mut ex = Executor::new(plan());
        for a in ex.next() {
            if let Action::Run { id, op, .. } = a {
                ex.apply(Event::Issued { id, op });
                ex.apply(Event::Succeeded {
                    id,
                    outcome: Outcome::done(),
                });
            }
        }
        assert_eq!(ex.next(), vec![Action::ValidateCheckpoint { stage: 0 }]);
        ex.apply(Event::CheckpointFailed {
            stage: 0,
            detail: "orders: no primary observed".into(),
        });
        assert!(
            matches!(&ex.next()[0], Action::Failed { reason, .. } if reason.contains("no primary"))
        );
        ex.apply(Event::Resumed);
        assert_eq!(ex.next(), vec![Action::ValidateCheckpoint { stage: 0 }]);
        ex.apply(Event::Aborted);
        assert_eq!(ex.next(), vec![Action::Aborted]);
    }
}
