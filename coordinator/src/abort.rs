//! Aborting an execution: a plan like any other, made from the journal *and*
//! from what the stores show now.
//!
//! The journal says what the execution may have done to each store (a fence
//! whose outcome never reached it, a promotion issued or only intended); an
//! observation of every store says what actually happened. A promotion is
//! decided by observation only — a primary in the target region, or a
//! timeline/term past the one the readiness checkpoint saw — never by a
//! journaled intent. Per store, [`plan_abort`] decides:
//!
//! - **keep**: exactly one writable primary outside the target (or the store
//!   never moved): nothing to undo; the preference is restored where the
//!   execution changed it.
//! - **restore**: no writable primary, the execution fenced it, nothing was
//!   promoted: `unfence` the old primary (the controller also starts it
//!   again where the fence had stopped it).
//! - **forward**: the target holds the writable primary (a promotion
//!   happened): finish what the execution started (make sticky, re-point,
//!   rejoin), so exactly one primary remains.
//! - **stuck**: it cannot (no observation, no primary that this execution
//!   can give back, two writable primaries): it says what it saw and the
//!   command that would fix it.
//!
//! The resulting [`Plan`] runs through the executor and driver like any
//! other (journaled, under the lock and fencing token, with retries), one
//! stage per dependency level, dependencies first. Every store that is not
//! stuck ends in a checkpoint of `one_writable_primary` and where that
//! primary is, so a successful abort is a proven one.

use crate::expectation::{
    all_members_healthy, followers_follow, one_writable_primary, preferred_in, primary_in,
    Expectation,
};
use crate::journal::{OpResult, Record};
use crate::plan::{CheckpointEntry, Mode, Plan, PlanOp, Stage, Step, DEFAULT_STAGE_TIMEOUT_MS};
use crate::planner::dependency_levels;
use std::collections::BTreeMap;
use std::fmt;
use switchyard_controller::{sequence, Capability, MemberState, ObservedState, Operation, Role};
use switchyard_topology::Topology;

/// The `kind` of an abort execution in its journal's start record.
pub const KIND: &str = "abort";

const NAME_PREFIX: &str = "abort of ";

/// The execution an abort plan aborts (its name is `abort of <id>`).
pub fn aborted_by(plan: &Plan) -> Option<&str> {
    plan.name.strip_prefix(NAME_PREFIX)
}

/// What the aborted execution may have done to one store, from its journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// A fence (or an earlier abort's unfence) was journaled as issued,
    /// whether or not its outcome was.
    pub fenced: bool,
    /// A promotion was journaled without a successful outcome: it may or may
    /// not have happened.
    pub promote_unsettled: bool,
    /// Priorities may have been changed (a `make_sticky` was issued).
    pub sticky: bool,
    /// The store's term (timeline, term) at the execution's first checkpoint.
    pub baseline_term: Option<switchyard_controller::Term>,
}

/// Read, per store, what the execution may have done from its records.
pub fn touched(records: &[Record]) -> BTreeMap<String, Touched> {
    let mut out: BTreeMap<String, Touched> = BTreeMap::new();
    let mut promotes: BTreeMap<u64, String> = BTreeMap::new();
    for r in records {
        match r {
            // Records of an aborted abort follow those of the execution it
            // aborted; sequence numbers start again in each journal.
            Record::Started { .. } => promotes.clear(),
            Record::Intent { seq, store, op, .. } => {
                let t = out.entry(store.clone()).or_default();
                match op {
                    Operation::Fence | Operation::Unfence => t.fenced = true,
                    Operation::MakeSticky { .. } => t.sticky = true,
                    Operation::Promote { .. } => {
                        t.promote_unsettled = true;
                        promotes.insert(*seq, store.clone());
                    }
                    _ => {}
                }
            }
            Record::Outcome {
                seq,
                result: OpResult::Ok { .. },
                ..
            } => {
                if let Some(store) = promotes.remove(seq) {
                    let pending = promotes.values().any(|s| *s == store);
                    out.entry(store).or_default().promote_unsettled = pending;
                }
            }
            Record::CheckpointPassed { observed, .. }
            | Record::CheckpointFailed { observed, .. } => {
                for o in observed {
                    let t = out.entry(o.store.clone()).or_default();
                    if t.baseline_term.is_none() {
                        t.baseline_term = o.term;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// What the abort does with one store.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Exactly one writable primary and nothing promoted: nothing to undo
    /// (beyond restoring a changed preference).
    Keep {
        /// The primary kept.
        primary: String,
        /// Its region.
        region: String,
        /// Priorities are set back to prefer `region`.
        restore_preference: bool,
    },
    /// No writable primary, and the execution fenced it: unfence (and where
    /// the fence stopped it, start) the old primary.
    Restore,
    /// The target region holds the writable primary: a promotion happened.
    /// Finish forward so exactly one primary remains.
    Forward {
        /// The promoted member.
        primary: String,
        /// Members back from the loss that only a rejoin restores
        /// (`awaits_rejoin`), rejoined by the abort.
        rejoin: Vec<String>,
        /// After a forced failover: the members the abort cannot rejoin,
        /// each with why (they do not answer) and what brings them back.
        left_out: Vec<String>,
    },
    /// Nothing the abort can do leaves one writable primary.
    Stuck {
        /// What the store showed.
        saw: String,
        /// The command that would fix it.
        fix: String,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Keep {
                primary,
                region,
                restore_preference,
            } => write!(
                f,
                "keep {primary} in {region}: nothing was promoted{}",
                if *restore_preference {
                    format!("; set election priorities so {region} keeps the primary again")
                } else {
                    String::new()
                }
            ),
            Decision::Restore => {
                f.write_str("nothing was promoted: unfence (and start) the old primary")
            }
            Decision::Forward {
                primary,
                rejoin,
                left_out,
            } => {
                write!(
                    f,
                    "{primary} was promoted: finish forward so it is the only primary"
                )?;
                if !rejoin.is_empty() {
                    write!(f, "; rejoin {} (answering again)", rejoin.join(", "))?;
                }
                for l in left_out {
                    write!(f, "; {l}")?;
                }
                Ok(())
            }
            Decision::Stuck { saw, fix } => {
                write!(f, "cannot restore a primary: {saw}; fix: {fix}")
            }
        }
    }
}

/// One store's decision and what it was based on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDecision {
    /// Store name.
    pub store: String,
    /// What the abort does.
    pub decision: Decision,
}

/// The abort of one execution: the plan to run and every store's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortPlan {
    /// Stages to run; `None` when every store is stuck (nothing to run).
    pub plan: Option<Plan>,
    /// Per store, in topology order.
    pub decisions: Vec<StoreDecision>,
}

impl AbortPlan {
    /// The stores that cannot be given exactly one writable primary.
    pub fn stuck(&self) -> impl Iterator<Item = &StoreDecision> {
        self.decisions
            .iter()
            .filter(|d| matches!(d.decision, Decision::Stuck { .. }))
    }
}

/// How one store ended, observed after the abort ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Store name.
    pub store: String,
    /// What the abort decided for it.
    pub decision: Decision,
    /// Its one writable primary (`member@region`), if it has exactly one.
    pub writable_primary: Option<String>,
    /// Without one: what was seen and the command that would fix it.
    pub unresolved: Option<(String, String)>,
}

impl AbortPlan {
    /// Every store's verdict from `after`, an observation made once the
    /// abort plan (execution `abort_id`, if one ran) of execution `id` ended.
    pub fn verdicts(
        &self,
        after: &[(String, Result<ObservedState, String>)],
        id: &str,
        abort_id: Option<&str>,
    ) -> Vec<Verdict> {
        self.decisions
            .iter()
            .map(|d| {
                let seen = after.iter().find(|(n, _)| *n == d.store).map(|(_, s)| s);
                let writable_primary = match seen {
                    Some(Ok(s)) => match writable_primaries(s).as_slice() {
                        [p] => Some(format!("{}@{}", p.name, p.region)),
                        _ => None,
                    },
                    _ => None,
                };
                let unresolved = match &d.decision {
                    Decision::Stuck { saw, fix } => Some((saw.clone(), fix.clone())),
                    other if writable_primary.is_none() => Some((
                        match seen {
                            Some(Ok(s)) => format!(
                                "after `{other}`, no single writable primary ({})",
                                describe(s)
                            ),
                            Some(Err(e)) => format!("after `{other}`, cannot observe: {e}"),
                            None => format!("after `{other}`, not observed"),
                        },
                        format!(
                            "`switchyard abort {}` (re-plans from what the stores show now)",
                            abort_id.unwrap_or(id)
                        ),
                    )),
                    _ => None,
                };
                Verdict {
                    store: d.store.clone(),
                    decision: d.decision.clone(),
                    writable_primary,
                    unresolved,
                }
            })
            .collect()
    }
}

/// Members observed as writable primaries (reachable, primary, unfenced).
pub fn writable_primaries(s: &ObservedState) -> Vec<&MemberState> {
    s.members
        .iter()
        .filter(|m| m.reachable && m.role == Role::Primary && !m.fenced)
        .collect()
}

/// Stores whose observation may still change on its own in a moment: no
/// writable primary while a promotion may be in flight, or while a
/// self-electing store holds an election. The caller observes them again
/// before planning (decide by observation, not by intent).
pub fn unsettled(
    records: &[Record],
    caps: &BTreeMap<String, Capability>,
    observed: &[(String, Result<ObservedState, String>)],
) -> Vec<String> {
    let touched = touched(records);
    observed
        .iter()
        .filter(|(name, s)| {
            let Ok(s) = s else { return false };
            writable_primaries(s).is_empty()
                && (caps.get(name).is_some_and(|c| c.self_electing)
                    || touched.get(name).is_some_and(|t| t.promote_unsettled))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The command line that fails `plan`'s target over by force.
fn forced_command(plan: &Plan) -> String {
    format!(
        "`switchyard failover --to {} --forced{}`",
        plan.target_region,
        if plan.mode == Mode::ForcedAcceptDataLoss {
            " --accept-data-loss"
        } else {
            ""
        }
    )
}

fn describe(s: &ObservedState) -> String {
    let members: Vec<String> = s
        .members
        .iter()
        .map(|m| {
            let state = if m.reachable {
                format!("{}{}", m.role, if m.fenced { ", fenced" } else { "" })
            } else {
                "unreachable".to_string()
            };
            let at = m.position.map_or(String::new(), |p| format!(" at {p}"));
            format!("{} in {} {state}{at}", m.name, m.region)
        })
        .collect();
    members.join("; ")
}

/// After a forced failover, the members an abort cannot bring back (they
/// do not answer), each with what will: the report says so rather than
/// let "aborted" stand for a store that is whole.
fn left_out(s: &ObservedState, target: &str, cap: &Capability) -> Vec<String> {
    s.members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| {
            let why = m
                .detail
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"));
            let then = if cap.self_electing {
                "it rejoins as a follower by itself once it answers".to_string()
            } else {
                format!("once it answers, `switchyard failover --to {target}` rejoins it")
            };
            format!(
                "{} in {} not rejoined: it does not answer{why}; {then}",
                m.name, m.region
            )
        })
        .collect()
}

/// Decide what to do with one store.
fn decide(
    id: &str,
    plan: &Plan,
    store: &str,
    cap: &Capability,
    touched: &Touched,
    observed: &Result<ObservedState, String>,
) -> Decision {
    let target = plan.target_region.as_str();
    let s = match observed {
        Ok(s) => s,
        Err(e) => {
            return Decision::Stuck {
                saw: format!("cannot observe: {e}"),
                fix: format!("`switchyard abort {id}` again once {store} answers"),
            }
        }
    };
    let moving = plan
        .stages
        .iter()
        .flat_map(|st| &st.steps)
        .any(|st| st.store == store && !matches!(st.op, PlanOp::CheckReadiness { .. }));
    let writable = writable_primaries(s);
    match writable.as_slice() {
        [p] if moving && p.region == target => {
            let rejoin = if cap.rejoin {
                s.members
                    .iter()
                    .filter(|m| m.reachable && m.awaits_rejoin)
                    .map(|m| m.name.clone())
                    .collect()
            } else {
                vec![]
            };
            Decision::Forward {
                primary: p.name.clone(),
                rejoin,
                left_out: if plan.mode == Mode::Planned {
                    vec![]
                } else {
                    left_out(s, target, cap)
                },
            }
        }
        [p] => Decision::Keep {
            primary: p.name.clone(),
            region: p.region.clone(),
            restore_preference: cap.sticky_priorities && touched.sticky,
        },
        [] => {
            let bumped = match (touched.baseline_term, s.term) {
                (Some(b), Some(e)) if e > b && !cap.self_electing => Some((b, e)),
                _ => None,
            };
            if let Some((b, e)) = bumped {
                return Decision::Stuck {
                    saw: format!(
                        "no writable primary, and the store term moved from {b} to {e} since the \
                         execution began: a member was promoted but is not a reachable primary \
                         ({})",
                        describe(s)
                    ),
                    fix: format!(
                        "bring the promoted member back (`switchyard state` shows it), then \
                         `switchyard abort {id}` again"
                    ),
                };
            }
            if cap.fencing && touched.fenced {
                return Decision::Restore;
            }
            let saw = format!(
                "no writable primary and nothing this execution fenced to give back ({})",
                describe(s)
            );
            if cap.self_electing {
                Decision::Stuck {
                    saw,
                    fix: format!(
                        "let a majority of {store}'s members reach each other so they elect a \
                         primary, then `switchyard abort {id}` again"
                    ),
                }
            } else {
                Decision::Stuck {
                    saw,
                    fix: forced_command(plan),
                }
            }
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|m| {
                    format!(
                        "{} in {}{}",
                        m.name,
                        m.region,
                        m.position.map_or(String::new(), |p| format!(" at {p}"))
                    )
                })
                .collect();
            Decision::Stuck {
                saw: format!(
                    "{} writable primaries (split brain): {}",
                    many.len(),
                    names.join(", ")
                ),
                fix: format!(
                    "stop the stale primary (the lower timeline/term), then `switchyard abort {id}` again"
                ),
            }
        }
    }
}

/// Plan the abort of execution `id` (whose plan and journal records are
/// given) from every store's observation `observed`.
pub fn plan_abort(
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
    id: &str,
    plan: &Plan,
    records: &[Record],
    observed: &[(String, Result<ObservedState, String>)],
) -> AbortPlan {
    let touched = touched(records);
    let in_plan = plan.named_stores();
    let no_observation = Err("no observation".to_string());
    let none = Capability::none();
    let empty = Touched::default();
    let mut decisions = vec![];
    for store in topology
        .stores
        .iter()
        .filter(|s| in_plan.contains(s.name.as_str()))
    {
        let obs = observed
            .iter()
            .find(|(n, _)| *n == store.name)
            .map_or(&no_observation, |(_, s)| s);
        let cap = caps.get(&store.name).unwrap_or(&none);
        decisions.push(StoreDecision {
            store: store.name.clone(),
            decision: decide(
                id,
                plan,
                &store.name,
                cap,
                touched.get(&store.name).unwrap_or(&empty),
                obs,
            ),
        });
    }

    let levels = dependency_levels(topology).unwrap_or_default();
    let timeout_ms = plan
        .stages
        .iter()
        .map(|s| s.timeout_ms)
        .max()
        .unwrap_or(DEFAULT_STAGE_TIMEOUT_MS);
    let mut by_level: BTreeMap<usize, Vec<&StoreDecision>> = BTreeMap::new();
    for d in &decisions {
        if !matches!(d.decision, Decision::Stuck { .. }) {
            by_level
                .entry(levels.get(&d.store).copied().unwrap_or(0))
                .or_default()
                .push(d);
        }
    }
    let mut stages = vec![];
    for group in by_level.values() {
        let mut steps = vec![];
        let mut checkpoint = vec![];
        for d in group {
            let cap = caps.get(&d.store).unwrap_or(&none);
            let step = |op: PlanOp| Step {
                store: d.store.clone(),
                op,
            };
            let mut expect = vec![one_writable_primary()];
            match &d.decision {
                Decision::Keep {
                    region,
                    restore_preference,
                    ..
                } => {
                    let a = sequence::Abort::Keep {
                        touched_sticky: *restore_preference,
                    };
                    for (op, exp) in sequence::abort(a, cap)
                        .into_iter()
                        .filter_map(|st| abort_step(st, region, None))
                    {
                        steps.push(step(op));
                        expect.extend(exp);
                    }
                    expect.push(primary_in(region.clone()));
                }
                Decision::Restore => {
                    for (op, _) in sequence::abort(sequence::Abort::Restore, cap)
                        .into_iter()
                        .filter_map(|st| abort_step(st, &plan.target_region, None))
                    {
                        steps.push(step(op));
                    }
                    // The old primary, wherever it is: never the target.
                    expect.push(primary_in(plan.target_region.clone()).not());
                }
                Decision::Forward {
                    rejoin, left_out, ..
                } => {
                    let target = plan.target_region.clone();
                    // Finishing the move keeps the member the operator
                    // chose on top (`--candidate`, in the aborted plan).
                    let chosen = plan
                        .stages
                        .iter()
                        .flat_map(|s| &s.steps)
                        .filter(|s| s.store == d.store)
                        .find_map(|s| s.op.candidate());
                    // A forced failover's old primary is gone; it rejoins
                    // later — unless it is back already and only a rejoin
                    // restores it.
                    let a = sequence::Abort::Forward {
                        planned: plan.mode == Mode::Planned,
                        rejoin_healed: !rejoin.is_empty(),
                    };
                    let rejoins = sequence::abort(a, cap).contains(&sequence::Step::Rejoin);
                    for (op, exp) in sequence::abort(a, cap)
                        .into_iter()
                        .filter_map(|st| abort_step(st, &target, chosen))
                    {
                        steps.push(step(op));
                        expect.extend(exp);
                    }
                    expect.push(primary_in(target));
                    if rejoins && !rejoin.is_empty() && left_out.is_empty() {
                        // Proven back, not assumed: no member still left
                        // out where the abort found them all answering.
                        expect.push(all_members_healthy());
                    }
                }
                Decision::Stuck { .. } => continue,
            }
            checkpoint.push(CheckpointEntry {
                store: d.store.clone(),
                expect,
            });
        }
        let names: Vec<&str> = group.iter().map(|d| d.store.as_str()).collect();
        stages.push(Stage {
            name: format!("abort: {}", names.join(", ")),
            timeout_ms,
            steps,
            checkpoint,
        });
    }
    AbortPlan {
        plan: (!stages.is_empty()).then(|| Plan {
            on_failure: None,
            version: plan.version,
            name: format!("{NAME_PREFIX}{id}"),
            topology: plan.topology.clone(),
            target_region: plan.target_region.clone(),
            mode: plan.mode,
            depends_on: plan.depends_on.clone(),
            stages,
        }),
        decisions,
    }
}

/// An abort step as a plan step for `region` (aimed at `candidate` when the
/// aborted plan chose one), with what its checkpoint
/// expects of it. `None` for steps `sequence::abort` never yields (listed,
/// so a new abort step cannot be forgotten here).
fn abort_step(
    st: sequence::Step,
    region: &str,
    candidate: Option<&str>,
) -> Option<(PlanOp, Option<Expectation>)> {
    Some(match st {
        sequence::Step::MakeSticky => (
            PlanOp::MakeSticky {
                target_region: region.to_string(),
                candidate: candidate.map(str::to_string),
            },
            Some(preferred_in(region.to_string())),
        ),
        sequence::Step::RepointFollowers => (PlanOp::RepointFollowers, Some(followers_follow())),
        sequence::Step::Rejoin => (PlanOp::Rejoin, None),
        sequence::Step::Unfence => (PlanOp::Unfence, None),
        sequence::Step::CheckReadiness
        | sequence::Step::Fence
        | sequence::Step::CapturePosition
        | sequence::Step::WaitForCaptured
        | sequence::Step::Promote => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::CheckpointObservation;
    use crate::planner::tests::{caps, topology};
    use crate::planner::{plan_failover, PlanOptions};
    use crate::validate::validate;
    use switchyard_controller::{Outcome, Position};
    use switchyard_topology::StoreKind;

    fn member(name: &str, region: &str, role: Role, fenced: bool) -> MemberState {
        let mut m = MemberState::unreachable(name, region, "");
        m.role = role;
        m.reachable = role != Role::Down;
        m.fenced = fenced;
        m.detail = None;
        m
    }

    fn pg(term: u64, members: Vec<MemberState>) -> (String, Result<ObservedState, String>) {
        (
            "orders".into(),
            Ok(ObservedState {
                store: "orders".into(),
                kind: StoreKind::Postgres,
                term: Some(switchyard_controller::Term(term)),
                config_version: None,
                members,
            }),
        )
    }

    /// `orders` with pg-east as `east` (role, fenced) and pg-west as `west`.
    fn pg_two(
        term: u64,
        east: (Role, bool),
        west: Role,
    ) -> (String, Result<ObservedState, String>) {
        pg(
            term,
            vec![
                member("pg-east", "east", east.0, east.1),
                member("pg-west", "west", west, false),
            ],
        )
    }

    fn mongo(members: Vec<MemberState>) -> (String, Result<ObservedState, String>) {
        (
            "catalog".into(),
            Ok(ObservedState {
                store: "catalog".into(),
                kind: StoreKind::Mongodb,
                term: Some(switchyard_controller::Term(7)),
                config_version: Some(3),
                members,
            }),
        )
    }

    fn mongo_primary_east(preferred_east: bool) -> (String, Result<ObservedState, String>) {
        let mut e = member("m-east", "east", Role::Primary, false);
        let mut w = member("m-west", "west", Role::Secondary, false);
        e.priority = Some(if preferred_east { 2.0 } else { 1.0 });
        w.priority = Some(if preferred_east { 1.0 } else { 2.0 });
        mongo(vec![e, w, member("m-arb", "witness", Role::Arbiter, false)])
    }

    fn planned(mode: Mode) -> Plan {
        plan_failover(&topology(true), &caps(), &PlanOptions::new("west", mode)).unwrap()
    }

    /// Records of `plan` up to (and including) the intent of the first step
    /// of `store` doing `op`, with outcomes for everything before it; the
    /// readiness checkpoint saw term 1 on every store.
    fn crashed_at(plan: &Plan, store: &str, op: &str, with_outcome: bool) -> Vec<Record> {
        let mut recs = vec![];
        let mut seq = 0;
        for (si, st) in plan.stages.iter().enumerate() {
            for (i, step) in st.steps.iter().enumerate() {
                seq += 1;
                recs.push(Record::Intent {
                    seq,
                    stage: si,
                    step: i,
                    store: step.store.clone(),
                    op: step
                        .op
                        .to_operation(Some(Position {
                            history: switchyard_controller::History(1),
                            offset: 1,
                        }))
                        .unwrap(),
                    fencing_token: switchyard_controller::FencingToken(1),
                    at_ms: 0,
                });
                let hit = step.store == store && step.op.name() == op;
                if !hit || with_outcome {
                    recs.push(Record::Outcome {
                        seq,
                        stage: si,
                        step: i,
                        store: step.store.clone(),
                        at_ms: 0,
                        duration_ms: 0,
                        attempts: 1,
                        result: OpResult::Ok {
                            outcome: Outcome::done(),
                        },
                    });
                }
                if hit {
                    return recs;
                }
            }
            recs.push(Record::CheckpointPassed {
                stage: si,
                at_ms: 0,
                duration_ms: 0,
                observe_ms: 0,
                polls: 1,
                stage_wall_us: 0,
                overhead_us: 0,
                observed: st
                    .checkpoint
                    .iter()
                    .map(|c| CheckpointObservation {
                        store: c.store.clone(),
                        expected: String::new(),
                        mismatch: None,
                        primary: None,
                        term: Some(switchyard_controller::Term(1)),
                    })
                    .collect(),
            });
        }
        recs
    }

    fn decision<'a>(a: &'a AbortPlan, store: &str) -> &'a Decision {
        &a.decisions
            .iter()
            .find(|d| d.store == store)
            .unwrap()
            .decision
    }

    fn ops(a: &AbortPlan, store: &str) -> Vec<&'static str> {
        a.plan
            .iter()
            .flat_map(|p| &p.stages)
            .flat_map(|s| &s.steps)
            .filter(|s| s.store == store)
            .map(|s| s.op.name())
            .collect()
    }

    fn expects(a: &AbortPlan, store: &str) -> Vec<String> {
        a.plan
            .iter()
            .flat_map(|p| &p.stages)
            .flat_map(|s| &s.checkpoint)
            .filter(|c| c.store == store)
            .flat_map(|c| c.expect.iter().map(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn fence_without_journaled_outcome_is_undone_by_observation() {
        let plan = planned(Mode::Planned);
        // Crash after the fence ran, before its outcome was journaled: the
        // old primary is fenced in recovery, nothing is writable.
        let recs = crashed_at(&plan, "orders", "fence", false);
        let observed = vec![
            pg_two(1, (Role::Secondary, true), Role::Secondary),
            mongo_primary_east(true),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        assert_eq!(decision(&a, "orders"), &Decision::Restore);
        assert_eq!(ops(&a, "orders"), vec!["unfence"]);
        assert_eq!(
            expects(&a, "orders"),
            vec!["one_writable_primary", "not(primary_in(west))"]
        );
        assert!(matches!(
            decision(&a, "catalog"),
            Decision::Keep {
                restore_preference: false,
                ..
            }
        ));
        assert!(ops(&a, "catalog").is_empty());
        assert_eq!(
            expects(&a, "catalog"),
            vec!["one_writable_primary", "primary_in(east)"]
        );
        // Dependencies first: orders' stage comes before catalog's.
        let plan = a.plan.unwrap();
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.stages[0].name, "abort: orders");
        validate(&plan, &topology(true), &caps()).unwrap();
    }

    #[test]
    fn the_old_primary_stopped_by_the_fence_is_restored_too() {
        let plan = planned(Mode::Planned);
        let recs = crashed_at(&plan, "orders", "fence", false);
        // The stop hook finished after the coordinator died: down, not fenced.
        let observed = vec![
            pg_two(1, (Role::Down, false), Role::Secondary),
            mongo_primary_east(true),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        assert_eq!(decision(&a, "orders"), &Decision::Restore);
    }

    #[test]
    fn a_promotion_is_decided_by_observation_not_by_the_intent() {
        let plan = planned(Mode::Planned);
        // Promote intent journaled, not issued: nothing promoted.
        let recs = crashed_at(&plan, "orders", "promote", false);
        let t = touched(&recs);
        assert!(t["orders"].promote_unsettled && t["orders"].fenced);
        let fenced = vec![
            pg_two(1, (Role::Secondary, true), Role::Secondary),
            mongo_primary_east(true),
        ];
        assert_eq!(unsettled(&recs, &caps(), &fenced), vec!["orders"]);
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &fenced);
        assert_eq!(decision(&a, "orders"), &Decision::Restore);

        // The same journal, but west took over: finish forward.
        let promoted = vec![
            pg_two(2, (Role::Secondary, true), Role::Primary),
            mongo_primary_east(true),
        ];
        assert!(unsettled(&recs, &caps(), &promoted).is_empty());
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &promoted);
        assert_eq!(
            decision(&a, "orders"),
            &Decision::Forward {
                primary: "pg-west".into(),
                rejoin: vec![],
                left_out: vec![],
            }
        );
        assert_eq!(ops(&a, "orders"), vec!["repoint_followers", "rejoin"]);
        assert_eq!(
            expects(&a, "orders"),
            vec![
                "one_writable_primary",
                "followers_follow",
                "primary_in(west)"
            ]
        );
        validate(&a.plan.unwrap(), &topology(true), &caps()).unwrap();

        // A timeline past the readiness checkpoint's with no primary in
        // sight: something was promoted; unfencing would make two.
        let bumped = vec![
            pg_two(2, (Role::Secondary, true), Role::Down),
            mongo_primary_east(true),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &bumped);
        match decision(&a, "orders") {
            Decision::Stuck { saw, .. } => assert!(saw.contains("from 1 to 2"), "{saw}"),
            other => panic!("{other:?}"),
        }
        assert!(ops(&a, "orders").is_empty());
    }

    #[test]
    fn mongodb_preference_is_restored_or_finished() {
        let plan = planned(Mode::Planned);
        // MongoDB promotes, then makes the target preferred: the crash hit
        // make_sticky, and east holds the primary again (the hand-over's
        // frozen members thawed and took it back before the preference
        // stuck). Priorities may have moved: east is made preferred again.
        let recs = crashed_at(&plan, "catalog", "make_sticky", false);
        let observed = vec![
            pg_two(2, (Role::Secondary, false), Role::Primary),
            mongo_primary_east(false),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        assert!(matches!(
            decision(&a, "catalog"),
            Decision::Keep {
                restore_preference: true,
                ..
            }
        ));
        assert_eq!(ops(&a, "catalog"), vec!["make_sticky"]);
        assert_eq!(
            expects(&a, "catalog"),
            vec![
                "one_writable_primary",
                "preferred_in(east)",
                "primary_in(east)"
            ]
        );
        // orders already moved: forward.
        assert!(matches!(decision(&a, "orders"), Decision::Forward { .. }));
    }

    #[test]
    fn abort_of_a_forced_failover_rejoins_a_healed_member_or_says_why_not() {
        let plan = planned(Mode::ForcedAcceptDataLoss);
        let recs = crashed_at(&plan, "orders", "repoint_followers", false);
        // The old primary answers again, left out until a rejoin.
        let (name, mut healed) = pg_two(2, (Role::Secondary, false), Role::Primary);
        if let Ok(s) = &mut healed {
            s.members[0].awaits_rejoin = true;
        }
        let observed = vec![(name, healed), mongo_primary_east(true)];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        assert_eq!(
            decision(&a, "orders"),
            &Decision::Forward {
                primary: "pg-west".into(),
                rejoin: vec!["pg-east".into()],
                left_out: vec![],
            }
        );
        assert_eq!(ops(&a, "orders"), vec!["repoint_followers", "rejoin"]);
        assert!(
            expects(&a, "orders").contains(&"all_members_healthy".to_string()),
            "{:?}",
            expects(&a, "orders")
        );
        validate(&a.plan.unwrap(), &topology(true), &caps()).unwrap();

        // Still gone: nothing to rejoin, and the decision says so and why.
        let observed = vec![
            pg_two(2, (Role::Down, false), Role::Primary),
            mongo_primary_east(true),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        assert_eq!(ops(&a, "orders"), vec!["repoint_followers"]);
        let words = decision(&a, "orders").to_string();
        assert!(
            words.contains("pg-east in east not rejoined: it does not answer")
                && words.contains("`switchyard failover --to west` rejoins it"),
            "{words}"
        );
        assert!(!expects(&a, "orders").contains(&"all_members_healthy".to_string()));
    }

    #[test]
    fn stuck_stores_name_what_they_saw_and_the_fix() {
        let plan = planned(Mode::ForcedAcceptDataLoss);
        let recs = crashed_at(&plan, "orders", "promote", false);
        let observed = vec![
            pg_two(1, (Role::Down, false), Role::Secondary),
            ("catalog".into(), Err("connection refused".into())),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        match decision(&a, "orders") {
            Decision::Stuck { saw, fix } => {
                assert!(saw.contains("pg-east in east unreachable"), "{saw}");
                assert_eq!(
                    fix,
                    "`switchyard failover --to west --forced --accept-data-loss`"
                );
            }
            other => panic!("{other:?}"),
        }
        match decision(&a, "catalog") {
            Decision::Stuck { saw, fix } => {
                assert!(saw.contains("connection refused"), "{saw}");
                assert!(fix.contains("switchyard abort x"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.stuck().count(), 2);
        assert!(a.plan.is_none(), "nothing to run");

        let split = vec![pg_two(2, (Role::Primary, false), Role::Primary)];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &split);
        match decision(&a, "orders") {
            Decision::Stuck { saw, .. } => assert!(saw.contains("split brain"), "{saw}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_aborted_abort_is_planned_with_the_journal_it_was_aborting() {
        let plan = planned(Mode::Planned);
        let mut recs = crashed_at(&plan, "orders", "promote", false);
        let observed = vec![
            pg_two(1, (Role::Secondary, true), Role::Secondary),
            mongo_primary_east(true),
        ];
        let first = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &observed);
        let abort_plan = first.plan.unwrap();
        assert_eq!(aborted_by(&abort_plan), Some("x"));
        // The abort's own journal: its seq 1..n collide with the aborted
        // execution's; an outcome there says nothing about the promote.
        recs.push(Record::Started {
            execution_id: "y".into(),
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 0,
            kind: KIND.into(),
            topology_file: "t".into(),
            store_kinds: Default::default(),
            plan: abort_plan.clone(),
        });
        let promote_seq = recs
            .iter()
            .find_map(|r| match r {
                Record::Intent {
                    seq,
                    op: Operation::Promote { .. },
                    ..
                } => Some(*seq),
                _ => None,
            })
            .unwrap();
        recs.push(Record::Intent {
            seq: promote_seq,
            stage: 0,
            step: 0,
            store: "orders".into(),
            op: Operation::Unfence,
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 0,
        });
        recs.push(Record::Outcome {
            seq: promote_seq,
            stage: 0,
            step: 0,
            store: "orders".into(),
            at_ms: 0,
            duration_ms: 0,
            attempts: 1,
            result: OpResult::Ok {
                outcome: Outcome::done(),
            },
        });
        let t = touched(&recs);
        assert!(t["orders"].promote_unsettled, "{t:?}");
        assert_eq!(
            t["orders"].baseline_term,
            Some(switchyard_controller::Term(1))
        );
        let again = plan_abort(&topology(true), &caps(), "y", &abort_plan, &recs, &observed);
        assert_eq!(decision(&again, "orders"), &Decision::Restore);
    }

    #[test]
    fn the_verdict_comes_from_the_stores_after_the_abort() {
        let plan = planned(Mode::Planned);
        let recs = crashed_at(&plan, "orders", "fence", false);
        let before = vec![
            pg_two(1, (Role::Secondary, true), Role::Secondary),
            ("catalog".into(), Err("connection refused".into())),
        ];
        let a = plan_abort(&topology(true), &caps(), "x", &plan, &recs, &before);
        // The unfence did not take: orders still has no writable primary.
        let v = a.verdicts(&before, "x", Some("y"));
        let orders = v.iter().find(|v| v.store == "orders").unwrap();
        assert_eq!(orders.writable_primary, None);
        let (saw, fix) = orders.unresolved.clone().unwrap();
        assert!(saw.contains("no single writable primary"), "{saw}");
        assert!(saw.contains("pg-east in east secondary, fenced"), "{saw}");
        assert!(fix.contains("switchyard abort y"), "{fix}");
        let catalog = v.iter().find(|v| v.store == "catalog").unwrap();
        assert!(catalog
            .unresolved
            .as_ref()
            .unwrap()
            .0
            .contains("cannot observe"));
        // It did: nothing unresolved for orders.
        let after = vec![pg_two(2, (Role::Primary, false), Role::Secondary)];
        let v = a.verdicts(&after, "x", Some("y"));
        let orders = v.iter().find(|v| v.store == "orders").unwrap();
        assert_eq!(orders.writable_primary.as_deref(), Some("pg-east@east"));
        assert_eq!(orders.unresolved, None);
    }

    #[test]
    fn touched_reads_only_the_journal() {
        let plan = planned(Mode::Planned);
        let recs = crashed_at(&plan, "orders", "promote", true);
        let t = touched(&recs);
        assert!(
            !t["orders"].promote_unsettled,
            "the promote's outcome is journaled"
        );
        assert_eq!(
            t["orders"].baseline_term,
            Some(switchyard_controller::Term(1))
        );
        assert!(!t.get("catalog").is_some_and(|c| c.sticky));
    }
}
