//! Compensating rollback: the plan that returns every store an execution
//! moved to the region it started in, built — like an abort — from the
//! execution's journal *and* what the stores show now, and run as an
//! execution of its own (journaled, checkpointed, resumable). Jet's FCC had
//! no rollback and said so; this is one, with its limits stated.
//!
//! Per store of the rolled-back plan ([`plan_rollback`]):
//!
//! - where it started is the primary the execution's first checkpoint
//!   observed (`member@region` in the journal), never a guess;
//! - **stay**: one writable primary in that region (it never moved): nothing
//!   to do but restore a preference the execution changed;
//! - **unfence**: no writable primary, the execution fenced it and nothing
//!   was promoted (the store term did not move): unfence the old primary;
//! - **back**: the one writable primary is elsewhere (a promotion happened):
//!   a planned, fenced switchover back — the canonical rollback sequence
//!   (`sequence::Kind::Rollback`: readiness, fence, capture, wait until the
//!   origin replayed it, promote, re-point, rejoin), laid out by the planner
//!   in dependency order, priorities restored to the origin.
//!
//! The steps of every action come from `switchyard_controller::sequence`
//! (`sequence::rollback`), the one definition the planner, abort and the
//! conformance suite share; this module only decides which action a store
//! gets. When no member in
//!   the origin follows the current primary yet (the old primary was fenced
//!   and never rejoined), it is rejoined first — only when the journal shows
//!   the execution had the target replay the old primary's final position
//!   before promoting it, so the rejoin discards nothing;
//! - **refuse**: anything else, naming the store and why: the store cannot
//!   be observed, has no single writable primary, or the way back would lose
//!   data (the old primary was never caught up — a forced failover — so
//!   rejoining it would throw away what it had not shipped, and promoting it
//!   as it is would throw away what the new primary took since).
//!
//! A refusal of any store refuses the whole rollback: half a rollback leaves
//! the system split across regions, which is what it was meant to end.

use crate::abort::{touched, writable_primaries};
use crate::expectation::{one_writable_primary, preferred_in, primary_in};
use crate::journal::{OpResult, Record};
use crate::plan::{CheckpointEntry, Mode, Plan, PlanOp, Stage, Step};
use crate::planner::{plan_failover, plan_op, PlanOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use switchyard_controller::sequence;
use switchyard_controller::{Capability, ObservedState, Operation, Role};
use switchyard_topology::Topology;

/// The `kind` of a rollback execution in its journal's start record.
pub const KIND: &str = "rollback";

const NAME_PREFIX: &str = "rollback of ";

/// The execution a rollback plan rolls back (its name is `rollback of <id>`).
pub fn rolled_back(plan: &Plan) -> Option<&str> {
    plan.name.strip_prefix(NAME_PREFIX)
}

/// A plan's `on_failure` option.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Roll the failed execution back (`switchyard rollback ID`), at once.
    Rollback,
}

/// What the rollback does with one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Already primary where it started.
    Stay {
        /// The region.
        region: String,
        /// Priorities go back to prefer it.
        restore_preference: bool,
    },
    /// Fenced by the execution, nothing promoted: unfence it where it started.
    Unfence {
        /// The region it started in.
        region: String,
    },
    /// Promoted elsewhere: a planned switchover back.
    Back {
        /// The current primary (`member@region`).
        from: String,
        /// The region it started in.
        to: String,
        /// The member promoted there: the operator's `--candidate`, else
        /// the one the execution moved from (where the controller can
        /// promote a chosen member and it answers); `None`: the controller
        /// chooses.
        candidate: Option<Chosen>,
        /// The old primary is rejoined as a follower first.
        rejoin_first: bool,
        /// The store keeps election priorities, which are set back too.
        restore_priorities: bool,
    },
}

impl Action {
    /// The region the store ends up primary in: where it started.
    pub fn region(&self) -> &str {
        match self {
            Action::Stay { region, .. } | Action::Unfence { region } => region,
            Action::Back { to, .. } => to,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Stay {
                region,
                restore_preference,
            } => write!(
                f,
                "stays primary in {region}, where it started{}",
                if *restore_preference {
                    "; its priorities prefer it again"
                } else {
                    ""
                }
            ),
            Action::Unfence { region } => {
                write!(
                    f,
                    "fenced, never promoted: unfence the old primary in {region}"
                )
            }
            Action::Back {
                from,
                to,
                candidate,
                rejoin_first,
                restore_priorities,
            } => write!(
                f,
                "promoted to {from}: {}planned switchover back to {to}{}{}",
                if *rejoin_first {
                    "rejoin the old primary (it replayed everything before the promotion), then "
                } else {
                    ""
                },
                match candidate {
                    Some(Chosen {
                        member,
                        by_operator: true,
                    }) => format!(", promoting {member} (chosen by --candidate)"),
                    Some(Chosen { member, .. }) => {
                        format!(", promoting {member} (the member it moved from)")
                    }
                    None => String::new(),
                },
                if *restore_priorities {
                    ", priorities restored"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The member a rollback returns a store to, and who chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The member.
    pub member: String,
    /// `--candidate` named it (else: the member the execution moved from).
    pub by_operator: bool,
}

/// A store the rollback refuses to touch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Store name.
    pub store: String,
    /// Why, in words that name what was seen.
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store `{}`: {}", self.store, self.why)
    }
}

/// The rollback of one execution.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackPlan {
    /// Stages to run; `None` when every store is where it started already.
    pub plan: Option<Plan>,
    /// Per store, in topology order.
    pub actions: Vec<(String, Action)>,
}

/// Where each store started: the region of the primary the execution's first
/// checkpoint that names one observed.
pub fn origins(records: &[Record]) -> BTreeMap<String, String> {
    origin_primaries(records)
        .into_iter()
        .map(|(store, (_, region))| (store, region))
        .collect()
}

/// Per store, the primary (member, region) the execution's first checkpoint
/// observed: the member it moved from.
pub fn origin_primaries(records: &[Record]) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for r in records {
        if let Record::CheckpointPassed { observed, .. }
        | Record::CheckpointFailed { observed, .. } = r
        {
            for o in observed {
                if let Some((member, region)) =
                    o.primary.as_deref().and_then(|p| p.rsplit_once('@'))
                {
                    out.entry(o.store.clone())
                        .or_insert_with(|| (member.to_string(), region.to_string()));
                }
            }
        }
    }
    out
}

/// Stores whose target replayed the fenced primary's final position before
/// the promotion (a successful `wait_for_position` outcome): their old
/// primary holds nothing the new one lacks.
fn caught_up(records: &[Record]) -> BTreeSet<String> {
    let mut waits: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for r in records {
        match r {
            Record::Started { .. } => waits.clear(),
            Record::Intent {
                seq,
                store,
                op: Operation::WaitForPosition { .. },
                ..
            } => {
                waits.insert(*seq, store.clone());
            }
            Record::Outcome {
                seq,
                result: OpResult::Ok { .. },
                ..
            } => {
                if let Some(s) = waits.remove(seq) {
                    out.insert(s);
                }
            }
            _ => {}
        }
    }
    out
}

/// Timeouts of the plan back.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Per stage.
    pub stage_ms: u64,
    /// How long the origin may take to replay the fenced primary's position.
    pub catch_up_ms: u64,
}

/// Plan the rollback of execution `id` (`plan`, journal `records`) from
/// every store's observation `observed`; refuse, naming each store and why,
/// when any store cannot be returned without losing data. `chosen`: the
/// member the operator chose per store (`--candidate`, resolved against
/// each store's origin); a store moved back without one returns to the
/// member it moved from where its controller can promote a chosen member.
#[allow(clippy::too_many_arguments)]
pub fn plan_rollback(
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
    id: &str,
    plan: &Plan,
    records: &[Record],
    observed: &[(String, Result<ObservedState, String>)],
    timeouts: Timeouts,
    chosen: &crate::candidate::Candidates,
) -> Result<RollbackPlan, Vec<Refusal>> {
    let origins = origins(records);
    let moved_from = origin_primaries(records);
    let touched = touched(records);
    let caught_up = caught_up(records);
    let moved = crate::journal::plan_stores(plan);
    let none = Capability::none();
    let mut actions = vec![];
    let mut refusals = vec![];
    for store in topology.stores.iter().filter(|s| moved.contains(&s.name)) {
        let name = store.name.as_str();
        let refuse = |why: String| Refusal {
            store: name.to_string(),
            why,
        };
        let cap = caps.get(name).unwrap_or(&none);
        let Some(origin) = origins.get(name) else {
            refusals.push(refuse(format!(
                "where it started is not in the journal of {id}: no checkpoint observed its primary before it was changed"
            )));
            continue;
        };
        let s = match observed.iter().find(|(n, _)| n == name).map(|(_, s)| s) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                refusals.push(refuse(format!("cannot be observed: {e}")));
                continue;
            }
            None => {
                refusals.push(refuse("was not observed".into()));
                continue;
            }
        };
        let t = touched.get(name).cloned().unwrap_or_default();
        let writable = writable_primaries(s);
        let operator = chosen.get(name);
        match writable.as_slice() {
            [p] if p.region == *origin => {
                if let Some(c) = operator.filter(|c| **c != p.name) {
                    refusals.push(refuse(format!(
                        "--candidate {c}: {} is primary in {origin} already, where it started; a rollback does not move a store within its region",
                        p.name
                    )));
                    continue;
                }
                actions.push((
                    name.to_string(),
                    Action::Stay {
                        region: origin.clone(),
                        restore_preference: cap.sticky_priorities && t.sticky,
                    },
                ))
            }
            [p] => {
                let follows = s.members.iter().any(|m| {
                    m.region == *origin
                        && m.reachable
                        && m.role == Role::Secondary
                        && m.replicating == Some(true)
                });
                let rejoin_first = !follows;
                if rejoin_first && !(plan.mode == Mode::Planned && caught_up.contains(name)) {
                    refusals.push(refuse(format!(
                        "going back to {origin} would lose data: no member there follows the current primary {}@{}, and the journal of {id} does not show {} replaying the old primary's final position before the promotion ({}), so rejoining the old primary would discard what it had not shipped and promoting it as it is would discard what {} took since. Check both, then fail over by hand (`switchyard failover --to {origin}` once a member in {origin} follows)",
                        p.name,
                        p.region,
                        p.region,
                        if plan.mode == Mode::Planned { "no completed wait_for_position" } else { "a forced failover" },
                        p.name
                    )));
                    continue;
                }
                if !cap.planned_switchover {
                    refusals.push(refuse(format!(
                        "its controller cannot do a planned switchover back to {origin}"
                    )));
                    continue;
                }
                // The member it moved from, where the controller can
                // promote a chosen one and it answers; else its own choice.
                let candidate = match operator {
                    Some(c) => Some(Chosen {
                        member: c.clone(),
                        by_operator: true,
                    }),
                    None => moved_from
                        .get(name)
                        .map(|(m, _)| m)
                        .filter(|m| {
                            // Rejoined first, or following now: a member
                            // streaming from elsewhere cannot be judged.
                            let follows_now = s.member(m).is_some_and(|o| {
                                o.reachable
                                    && o.role == Role::Secondary
                                    && o.replicating == Some(true)
                                    && o.following.as_deref() == Some(p.name.as_str())
                            });
                            cap.chosen_candidate
                                && (rejoin_first || follows_now)
                                && topology
                                    .store(name)
                                    .and_then(|st| st.member(m))
                                    .is_some_and(|m| {
                                        m.region == *origin
                                            && crate::candidate::not_electable(m).is_none()
                                    })
                        })
                        .map(|m| Chosen {
                            member: m.clone(),
                            by_operator: false,
                        }),
                };
                actions.push((
                    name.to_string(),
                    Action::Back {
                        from: format!("{}@{}", p.name, p.region),
                        to: origin.clone(),
                        candidate,
                        rejoin_first,
                        restore_priorities: cap.sticky_priorities,
                    },
                ));
            }
            [] => {
                let bumped = matches!((t.baseline_term, s.term), (Some(b), Some(e)) if e > b);
                let old = moved_from.get(name).map(|(m, _)| m);
                if let Some(c) = operator.filter(|c| t.fenced && !bumped && Some(*c) != old) {
                    refusals.push(refuse(format!(
                        "--candidate {c}: nothing was promoted, so the rollback gives the fenced primary {} back; it promotes no other member",
                        old.map_or("", |m| m.as_str())
                    )));
                    continue;
                }
                if t.fenced && cap.fencing && !bumped {
                    actions.push((
                        name.to_string(),
                        Action::Unfence {
                            region: origin.clone(),
                        },
                    ));
                } else if bumped {
                    refusals.push(refuse(format!(
                        "no writable primary, and its store term moved from {} to {} since {id} began: a member was promoted but is not a reachable primary; bring it back (`switchyard state`), then roll back again",
                        t.baseline_term.unwrap_or_default(),
                        s.term.unwrap_or_default()
                    )));
                } else {
                    refusals.push(refuse(
                        "no writable primary and nothing this execution fenced to give back".into(),
                    ));
                }
            }
            many => refusals.push(refuse(format!(
                "{} writable primaries (split brain: {}); stop the stale one first",
                many.len(),
                many.iter()
                    .map(|m| format!("{}@{}", m.name, m.region))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }

    // Stay and unfence: one stage, so every store that never moved has its
    // primary back before anything else is switched over.
    let mut stages = vec![];
    let mut steps = vec![];
    let mut checkpoint = vec![];
    for (store, a) in &actions {
        let cap = caps.get(store).unwrap_or(&none);
        let (region, r) = match a {
            Action::Stay {
                region,
                restore_preference,
            } => (
                region,
                sequence::Rollback::Stay {
                    touched_sticky: *restore_preference,
                },
            ),
            Action::Unfence { region } => (region, sequence::Rollback::Unfence),
            Action::Back { .. } => continue,
        };
        let ops: Vec<PlanOp> = sequence::rollback(r, cap)
            .into_iter()
            .map(|(_, st)| plan_op(st, region, None, Mode::Planned, timeouts.catch_up_ms))
            .collect();
        let restores_preference = ops.iter().any(|o| matches!(o, PlanOp::MakeSticky { .. }));
        steps.extend(ops.into_iter().map(|op| Step {
            store: store.clone(),
            op,
        }));
        let mut expect = vec![one_writable_primary(), primary_in(region.clone())];
        if restores_preference {
            expect.push(preferred_in(region.clone()));
        }
        checkpoint.push(CheckpointEntry {
            store: store.clone(),
            expect,
        });
    }
    if !steps.is_empty() {
        stages.push(Stage {
            name: "rollback: give back the primaries that never moved".into(),
            timeout_ms: timeouts.stage_ms,
            steps,
            checkpoint,
        });
    }

    // Back: the planner's planned switchover, per origin region, over only
    // the stores that go back there (dependencies first, as always).
    let mut by_origin: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (store, a) in &actions {
        if let Action::Back { to, .. } = a {
            by_origin
                .entry(to.as_str())
                .or_default()
                .push(store.as_str());
        }
    }
    for (origin, stores) in by_origin {
        let mut sub = topology.clone();
        sub.stores.retain(|s| stores.contains(&s.name.as_str()));
        for s in &mut sub.stores {
            s.depends_on.retain(|d| stores.contains(&d.as_str()));
        }
        // Every store goes back by the canonical rollback sequence.
        let mut opts = PlanOptions::new(origin, Mode::Planned);
        opts.sequence = Some(sequence::Kind::Rollback);
        opts.stage_timeout_ms = timeouts.stage_ms;
        opts.catch_up_timeout_ms = timeouts.catch_up_ms;
        for (store, a) in &actions {
            if let Action::Back {
                rejoin_first,
                candidate,
                ..
            } = a
            {
                if *rejoin_first {
                    opts.stale_primaries.insert(store.clone());
                }
                if let Some(c) = candidate {
                    opts.candidates.insert(store.clone(), c.member.clone());
                }
            }
        }
        let back = plan_failover(&sub, caps, &opts).map_err(|e| {
            vec![Refusal {
                store: stores.join(", "),
                why: format!("no planned switchover back to {origin}: {e}"),
            }]
        })?;
        for mut st in back.stages {
            st.name = format!("rollback: {}", st.name);
            stages.push(st);
        }
    }
    // The plan's target: where the stores that move go back to.
    let target = actions
        .iter()
        .find(|(_, a)| matches!(a, Action::Back { .. }))
        .or(actions.first())
        .map(|(_, a)| a.region().to_string())
        .unwrap_or_default();
    Ok(RollbackPlan {
        plan: (!stages.is_empty()).then(|| Plan {
            version: plan.version,
            name: format!("{NAME_PREFIX}{id}"),
            topology: plan.topology.clone(),
            target_region: target,
            mode: Mode::Planned,
            depends_on: BTreeMap::new(),
            on_failure: None,
            stages,
        }),
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::CheckpointObservation;
    use switchyard_controller::MemberState;

    fn plan(mode: Mode) -> Plan {
        Plan {
            version: 1,
            name: "failover to west".into(),
            topology: "t".into(),
            target_region: "west".into(),
            mode,
            depends_on: BTreeMap::new(),
            on_failure: None,
            stages: vec![Stage {
                name: "promote orders".into(),
                timeout_ms: 1000,
                steps: vec![Step {
                    store: "orders".into(),
                    op: PlanOp::Promote {
                        target_region: "west".into(),
                        mode,
                        candidate: None,
                    },
                }],
                checkpoint: vec![],
            }],
        }
    }

    fn records(p: &Plan) -> Vec<Record> {
        vec![
            Record::Started {
                execution_id: "x".into(),
                fencing_token: switchyard_controller::FencingToken(1),
                at_ms: 0,
                kind: "failover".into(),
                topology_file: "t.toml".into(),
                store_kinds: Default::default(),
                plan: p.clone(),
            },
            Record::CheckpointPassed {
                stage: 0,
                at_ms: 1,
                duration_ms: 0,
                observe_ms: 0,
                polls: 1,
                stage_wall_us: 0,
                overhead_us: 0,
                observed: vec![CheckpointObservation {
                    store: "orders".into(),
                    expected: "has_primary".into(),
                    mismatch: None,
                    primary: Some("pg-east@east".into()),
                    term: Some(switchyard_controller::Term(1)),
                }],
            },
        ]
    }

    fn observed() -> Vec<(String, Result<ObservedState, String>)> {
        let mut west = MemberState::unreachable("pg-west", "west", "");
        west.reachable = true;
        west.role = Role::Primary;
        let east = MemberState::unreachable("pg-east", "east", "stopped");
        vec![(
            "orders".into(),
            Ok(ObservedState {
                store: "orders".into(),
                kind: switchyard_topology::StoreKind::Postgres,
                term: Some(switchyard_controller::Term(2)),
                config_version: None,
                members: vec![east, west],
            }),
        )]
    }

    fn topology() -> Topology {
        switchyard_topology::parse_str(
            "t.toml",
            "name = \"t\"\n[[regions]]\nname = \"east\"\nrole = \"primary\"\n[[regions]]\nname = \"west\"\nrole = \"secondary\"\n\
             [[stores]]\nname = \"orders\"\nkind = \"postgres\"\n\
             [[stores.members]]\nname = \"pg-east\"\nhost = \"e:5432\"\nregion = \"east\"\n\
             [[stores.members]]\nname = \"pg-west\"\nhost = \"w:5432\"\nregion = \"west\"\n",
        )
        .unwrap()
    }

    #[test]
    fn the_way_back_from_a_forced_failover_would_lose_data_and_is_refused() {
        let p = plan(Mode::Forced);
        let caps = BTreeMap::from([("orders".to_string(), Capability::none())]);
        let t = Timeouts {
            stage_ms: 1000,
            catch_up_ms: 1000,
        };
        let r = plan_rollback(
            &topology(),
            &caps,
            "x",
            &p,
            &records(&p),
            &observed(),
            t,
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].store, "orders");
        assert!(
            r[0].why.starts_with("going back to east would lose data: no member there follows the current primary pg-west@west"),
            "{}",
            r[0].why
        );
        assert!(r[0].why.contains("(a forced failover)"), "{}", r[0].why);
        // The same store without a journaled origin is refused for that.
        let no_origin = &records(&p)[..1];
        let r = plan_rollback(
            &topology(),
            &caps,
            "x",
            &p,
            no_origin,
            &observed(),
            t,
            &Default::default(),
        )
        .unwrap_err();
        assert!(
            r[0].why.contains("where it started is not in the journal"),
            "{}",
            r[0].why
        );
    }

    #[test]
    fn the_way_back_is_the_canonical_rollback_sequence() {
        let p = plan(Mode::Planned);
        let cap = Capability::none()
            .with_planned_switchover()
            .with_fencing()
            .with_positions()
            .with_repoint()
            .with_rejoin();
        let caps = BTreeMap::from([("orders".to_string(), cap)]);
        let mut obs = observed();
        if let Ok(s) = &mut obs[0].1 {
            // The old primary follows the new one: nothing to rejoin first.
            let east = &mut s.members[0];
            east.reachable = true;
            east.role = Role::Secondary;
            east.replicating = Some(true);
        }
        let t = Timeouts {
            stage_ms: 1000,
            catch_up_ms: 1000,
        };
        let r = plan_rollback(
            &topology(),
            &caps,
            "x",
            &p,
            &records(&p),
            &obs,
            t,
            &Default::default(),
        )
        .unwrap();
        let ops: Vec<String> = r
            .plan
            .unwrap()
            .stages
            .iter()
            .flat_map(|s| s.steps.iter().map(|st| st.op.to_string()))
            .collect();
        let canonical: Vec<String> = sequence::rollback(sequence::Rollback::Back, &cap)
            .into_iter()
            .map(|(_, st)| plan_op(st, "east", None, Mode::Planned, 1000).to_string())
            .collect();
        assert_eq!(ops, canonical);
        assert_eq!(canonical.len(), 7, "{canonical:?}");
    }

    #[test]
    fn the_way_back_returns_to_the_member_it_moved_from_unless_one_is_chosen() {
        let p = plan(Mode::Planned);
        let mut cap = Capability::none()
            .with_planned_switchover()
            .with_fencing()
            .with_positions()
            .with_repoint()
            .with_rejoin();
        cap.chosen_candidate = true;
        let caps = BTreeMap::from([("orders".to_string(), cap)]);
        let mut obs = observed();
        if let Ok(s) = &mut obs[0].1 {
            let east = &mut s.members[0];
            east.reachable = true;
            east.role = Role::Secondary;
            east.replicating = Some(true);
            east.following = Some("pg-west".into());
        }
        let t = Timeouts {
            stage_ms: 1000,
            catch_up_ms: 1000,
        };
        let promoted = |r: &RollbackPlan| -> Vec<Option<String>> {
            r.plan
                .iter()
                .flat_map(|p| &p.stages)
                .flat_map(|s| &s.steps)
                .filter(|s| matches!(s.op, PlanOp::Promote { .. }))
                .map(|s| s.op.candidate().map(str::to_string))
                .collect()
        };
        let r = plan_rollback(
            &topology(),
            &caps,
            "x",
            &p,
            &records(&p),
            &obs,
            t,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(promoted(&r), vec![Some("pg-east".to_string())]);
        assert!(
            r.actions[0]
                .1
                .to_string()
                .contains("back to east, promoting pg-east (the member it moved from)"),
            "{}",
            r.actions[0].1
        );
        // Following nobody: the controller chooses.
        if let Ok(s) = &mut obs[0].1 {
            s.members[0].following = None;
        }
        let r = plan_rollback(
            &topology(),
            &caps,
            "x",
            &p,
            &records(&p),
            &obs,
            t,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(promoted(&r), vec![None]);
        // A candidate for a store that stays where it started, on another
        // member, is refused.
        let stay = vec![(
            "orders".to_string(),
            Ok(ObservedState {
                store: "orders".into(),
                kind: switchyard_topology::StoreKind::Postgres,
                term: Some(switchyard_controller::Term(1)),
                config_version: None,
                members: vec![{
                    let mut e = MemberState::unreachable("pg-east", "east", "");
                    e.reachable = true;
                    e.role = Role::Primary;
                    e
                }],
            }),
        )];
        let chosen = BTreeMap::from([("orders".to_string(), "pg-east-2".to_string())]);
        let e = plan_rollback(&topology(), &caps, "x", &p, &records(&p), &stay, t, &chosen)
            .unwrap_err();
        assert!(
            e[0].why.contains("pg-east is primary in east already"),
            "{}",
            e[0].why
        );
    }
}
