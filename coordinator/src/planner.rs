//! Turning a topology into a failover plan.
//!
//! Stage order: readiness of every store (one concurrent stage) → fence, in
//! reverse dependency order → promote, in dependency order (a store only after
//! everything it depends on passed its checkpoint; independent stores share a
//! stage) → re-point followers and rejoin former primaries. The operations
//! for each store are chosen from its controller's [`Capability`], so a plan
//! never asks a store for something it cannot do.

use crate::candidate::{CandidateError, Candidates};
use crate::expectation::{
    all_members_healthy, fenced, followers_follow, has_primary, healthy_in, lag_below,
    preferred_in, primary_in, primary_is, Expectation,
};
use crate::plan::{
    Captured, CheckpointEntry, Mode, Plan, PlanOp, PositionSource, Stage, Step,
    DEFAULT_STAGE_TIMEOUT_MS, PLAN_VERSION,
};
use crate::validate::find_cycle;
use std::collections::{BTreeMap, BTreeSet};
use switchyard_controller::sequence::{self, Kind, Phase, Step as SeqStep};
use switchyard_controller::{Capability, Need};
use switchyard_topology::{Store, Topology};

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanningError {
    /// The target region is not in the topology.
    #[error("unknown region `{0}` (topology has: {1})")]
    UnknownRegion(String, String),
    /// A store has no electable member in the target region.
    #[error("store `{store}` has no member that can become primary in `{region}`")]
    NoCandidate {
        /// Store name.
        store: String,
        /// Target region.
        region: String,
    },
    /// The topology's `depends_on` has a cycle.
    #[error("dependency cycle: {0}")]
    Cycle(String),
    /// A store depends on a store that is not in the topology.
    #[error("store `{0}` depends on unknown store `{1}`")]
    UnknownDependency(String, String),
    /// The store's controller cannot do what the mode needs.
    #[error("store `{store}` ({kind}) cannot take part in a {mode} failover: its controller does not support {what}")]
    Unsupported {
        /// Store name.
        store: String,
        /// Store kind.
        kind: String,
        /// Plan mode.
        mode: Mode,
        /// Missing capability.
        what: &'static str,
    },
    /// A `--candidate` names a member that cannot be promoted there.
    #[error("{0}")]
    Candidate(#[from] CandidateError),
    /// No capability was given for a store.
    #[error("no controller for store `{0}`")]
    NoController(String),
}

/// Options for [`plan_failover`].
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Region every store should end up primary in.
    pub target_region: String,
    /// Planned, forced, or forced accepting data loss.
    pub mode: Mode,
    /// Per-stage timeout.
    pub stage_timeout_ms: u64,
    /// How long a store may take to catch up to the captured position.
    pub catch_up_timeout_ms: u64,
    /// Stores observed to be primary in the target region already: they get
    /// no operations (fencing a store's new primary would be an outage),
    /// only `primary_in(target)` checkpoints.
    pub already_there: BTreeSet<String>,
    /// Stores observed with a split brain: a writable member besides the
    /// primary on the newest history (an old primary that came back as it
    /// was). Before anything else their stale primaries are fenced,
    /// rewound or re-cloned and made to follow (`Rejoin`); after that a
    /// move to the stale member's region is an ordinary planned switchover.
    pub stale_primaries: BTreeSet<String>,
    /// Stores already primary in the target with a member that is reachable
    /// again but left out until it is rejoined (`awaits_rejoin`: a Cosmos DB
    /// location taken offline by a forced failover that healed). They get a
    /// `Rejoin` in the last stage; without it nothing would ever bring the
    /// member back, the store being where the plan wants it.
    pub rejoin_there: BTreeSet<String>,
    /// The canonical sequence every store runs; `None`: the mode's
    /// ([`Kind::PlannedSwitchover`] or [`Kind::ForcedFailover`]). A
    /// rollback's way back is [`Kind::Rollback`] (with [`Mode::Planned`]).
    pub sequence: Option<Kind>,
    /// The member the operator chose per store (`--candidate`, see
    /// [`crate::candidate`]); stores without one choose as always.
    pub candidates: Candidates,
}

impl PlanOptions {
    /// Defaults for a target and mode.
    pub fn new(target_region: impl Into<String>, mode: Mode) -> Self {
        PlanOptions {
            target_region: target_region.into(),
            mode,
            stage_timeout_ms: DEFAULT_STAGE_TIMEOUT_MS,
            catch_up_timeout_ms: 60_000,
            already_there: BTreeSet::new(),
            stale_primaries: BTreeSet::new(),
            rejoin_there: BTreeSet::new(),
            sequence: None,
            candidates: Candidates::new(),
        }
    }
}

/// Dependency level of every store: 0 for stores without dependencies, else
/// one more than the deepest dependency.
pub fn dependency_levels(topology: &Topology) -> Result<BTreeMap<String, usize>, PlanningError> {
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &topology.stores {
        for d in &s.depends_on {
            if topology.store(d).is_none() {
                return Err(PlanningError::UnknownDependency(s.name.clone(), d.clone()));
            }
            deps.entry(s.name.as_str()).or_default().insert(d.as_str());
        }
    }
    if let Some(c) = find_cycle(&deps) {
        return Err(PlanningError::Cycle(c.join(" → ")));
    }
    fn level<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        memo: &mut BTreeMap<&'a str, usize>,
    ) -> usize {
        if let Some(&l) = memo.get(n) {
            return l;
        }
        let l = deps
            .get(n)
            .into_iter()
            .flatten()
            .map(|d| level(d, deps, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(n, l);
        l
    }
    let mut memo = BTreeMap::new();
    Ok(topology
        .stores
        .iter()
        .map(|s| (s.name.clone(), level(&s.name, &deps, &mut memo)))
        .collect())
}

/// The plan operation of one canonical-sequence step, towards `target` in
/// `mode`, aimed at the operator's `candidate` when there is one (a wait is
/// for the position the sequence captured).
pub fn plan_op(
    st: SeqStep,
    target: &str,
    candidate: Option<&str>,
    mode: Mode,
    catch_up_timeout_ms: u64,
) -> PlanOp {
    let candidate = candidate.map(str::to_string);
    match st {
        SeqStep::CheckReadiness => PlanOp::CheckReadiness {
            target_region: target.into(),
            mode,
            candidate,
        },
        SeqStep::Fence => PlanOp::Fence,
        SeqStep::CapturePosition => PlanOp::CapturePosition,
        SeqStep::WaitForCaptured => PlanOp::WaitForPosition {
            target_region: target.into(),
            position: PositionSource::Captured(Captured::Captured),
            timeout_ms: catch_up_timeout_ms,
            candidate,
        },
        SeqStep::MakeSticky => PlanOp::MakeSticky {
            target_region: target.into(),
            candidate,
        },
        SeqStep::Promote => PlanOp::Promote {
            target_region: target.into(),
            mode,
            candidate,
        },
        SeqStep::RepointFollowers => PlanOp::RepointFollowers,
        SeqStep::Rejoin => PlanOp::Rejoin,
        SeqStep::Unfence => PlanOp::Unfence,
    }
}

/// Make a failover plan for every store of `topology`.
pub fn plan_failover(
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
    opts: &PlanOptions,
) -> Result<Plan, PlanningError> {
    let target = opts.target_region.as_str();
    if topology.region(target).is_none() {
        let names: Vec<_> = topology.regions.iter().map(|r| r.name.as_str()).collect();
        return Err(PlanningError::UnknownRegion(
            target.into(),
            names.join(", "),
        ));
    }
    let levels = dependency_levels(topology)?;
    let planned = opts.mode == Mode::Planned;
    let mut capof = BTreeMap::new();
    for s in &topology.stores {
        let cap = *caps
            .get(&s.name)
            .ok_or_else(|| PlanningError::NoController(s.name.clone()))?;
        let unsupported = |what| PlanningError::Unsupported {
            store: s.name.clone(),
            kind: s.kind.to_string(),
            mode: opts.mode,
            what,
        };
        if planned && !cap.planned_switchover {
            return Err(unsupported("planned switchover"));
        }
        if !planned && !cap.forced_failover {
            return Err(unsupported("forced failover"));
        }
        if !s.members_in(target).any(|m| m.electable()) {
            return Err(PlanningError::NoCandidate {
                store: s.name.clone(),
                region: target.into(),
            });
        }
        if let Some(member) = opts.candidates.get(&s.name) {
            crate::candidate::check(topology, &s.name, member, target)?;
            if !cap.has(Need::ChosenCandidate) {
                return Err(unsupported(Need::ChosenCandidate.what()));
            }
        }
        capof.insert(s.name.as_str(), cap);
    }
    if let Some(store) = opts.candidates.keys().find(|k| topology.store(k).is_none()) {
        return Err(CandidateError::UnknownStore {
            given: format!("{store}={}", opts.candidates[store]),
            store: store.clone(),
            known: topology
                .stores
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    let max_level = levels.values().copied().max().unwrap_or(0);
    // Every store's steps come from the one canonical sequence.
    let kind = opts.sequence.unwrap_or(if planned {
        Kind::PlannedSwitchover
    } else {
        Kind::ForcedFailover
    });
    let phase_of =
        |s: &Store, phase: Phase| sequence::in_phase(kind, &capof[s.name.as_str()], phase);
    let candidate = |s: &Store| opts.candidates.get(&s.name).map(String::as_str);
    let plan_op = |s: &Store, st: SeqStep| {
        plan_op(
            st,
            target,
            candidate(s),
            opts.mode,
            opts.catch_up_timeout_ms,
        )
    };
    // Where the operator chose the member, the checkpoint names it: the
    // region alone would pass with the wrong member promoted.
    let primary_there = |s: &Store| match candidate(s) {
        Some(m) => primary_is(m),
        None => primary_in(target),
    };
    let skip = |s: &Store| opts.already_there.contains(&s.name);
    let at_level = |l: usize| -> Vec<&Store> {
        topology
            .stores
            .iter()
            .filter(|s| levels[&s.name] == l && !skip(s))
            .collect()
    };
    let stage = |name: String, steps: Vec<Step>, checkpoint: Vec<CheckpointEntry>| Stage {
        name,
        timeout_ms: opts.stage_timeout_ms,
        steps,
        checkpoint,
    };
    let step = |store: &Store, op: PlanOp| Step {
        store: store.name.clone(),
        op,
    };
    let entry = |store: &Store, expect: Vec<Expectation>| CheckpointEntry {
        store: store.name.clone(),
        expect,
    };
    let names = |v: &[&Store]| {
        v.iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut stages = vec![];

    // 0. A split brain first: nothing else may run while two members take
    //    writes, and the stale one must follow before it can be a candidate.
    let split: Vec<&Store> = topology
        .stores
        .iter()
        .filter(|s| opts.stale_primaries.contains(&s.name) && capof[s.name.as_str()].rejoin)
        .collect();
    if !split.is_empty() {
        let steps = split.iter().map(|s| step(s, PlanOp::Rejoin)).collect();
        let checks = split
            .iter()
            .map(|s| {
                let mut expect = vec![has_primary()];
                if capof[s.name.as_str()].repoint {
                    expect.push(followers_follow());
                }
                entry(s, expect)
            })
            .collect();
        stages.push(stage(
            format!("fence and rejoin stale primaries of {}", names(&split)),
            steps,
            checks,
        ));
    }

    // 1. Readiness: read-only, every store at once.
    let mut steps = vec![];
    let mut checks = vec![];
    for s in &topology.stores {
        if skip(s) {
            checks.push(entry(s, vec![primary_there(s)]));
            continue;
        }
        for st in phase_of(s, Phase::Readiness) {
            steps.push(step(s, plan_op(s, st)));
        }
        checks.push(entry(
            s,
            if planned {
                vec![has_primary(), healthy_in(target)]
            } else {
                vec![healthy_in(target)]
            },
        ));
    }
    stages.push(stage("readiness".into(), steps, checks));

    // 2. Fence, dependents first, so nothing downstream keeps writing while
    //    what it depends on is already frozen.
    if planned {
        for l in (0..=max_level).rev() {
            let group: Vec<&Store> = at_level(l)
                .into_iter()
                .filter(|s| !phase_of(s, Phase::Fence).is_empty())
                .collect();
            if group.is_empty() {
                continue;
            }
            let mut steps = vec![];
            let mut checks = vec![];
            for s in &group {
                for st in phase_of(s, Phase::Fence) {
                    steps.push(step(s, plan_op(s, st)));
                }
                checks.push(entry(s, vec![fenced()]));
            }
            stages.push(stage(format!("fence {}", names(&group)), steps, checks));
        }
    }

    // 3. Promote, dependencies first. A store already primary in the
    //    target still gets its preference persisted: a region that elected
    //    itself after a cut is otherwise taken back by priority takeover
    //    the moment the old region heals.
    let sticky_there = |l: usize| -> Vec<&Store> {
        topology
            .stores
            .iter()
            .filter(|s| {
                levels[&s.name] == l
                    && skip(s)
                    && !sequence::already_primary(&capof[s.name.as_str()]).is_empty()
            })
            .collect()
    };
    for l in 0..=max_level {
        let group = at_level(l);
        let there = sticky_there(l);
        if group.is_empty() && there.is_empty() {
            continue;
        }
        let mut steps = vec![];
        let mut checks = vec![];
        for s in &there {
            for (_, st) in sequence::already_primary(&capof[s.name.as_str()]) {
                steps.push(step(s, plan_op(s, st)));
            }
            checks.push(entry(s, vec![primary_there(s), preferred_in(target)]));
        }
        let all: Vec<&Store> = group.iter().chain(there.iter()).copied().collect();
        for s in &group {
            let cap = capof[s.name.as_str()];
            // Planned: the preference first, so the election lands in the
            // target (after the promotion where a raised priority would take
            // over by itself); forced: the new primary first (see `sequence`).
            for st in phase_of(s, Phase::Promote) {
                steps.push(step(s, plan_op(s, st)));
            }
            let mut expect = vec![primary_there(s)];
            if cap.sticky_priorities {
                expect.push(preferred_in(target));
            }
            checks.push(entry(s, expect));
        }
        let title = if group.is_empty() {
            format!(
                "keep {target} primary for {} (election priorities)",
                names(&all)
            )
        } else {
            format!("promote {}", names(&all))
        };
        stages.push(stage(title, steps, checks));
    }

    // 4. Re-point followers and rejoin the former primary (planned only: in
    //    a forced failover the old primary is gone and rejoins later).
    let mut steps = vec![];
    let mut checks = vec![];
    for s in &topology.stores {
        let cap = capof[s.name.as_str()];
        if skip(s) && cap.rejoin && opts.rejoin_there.contains(&s.name) {
            steps.push(step(s, PlanOp::Rejoin));
            checks.push(entry(s, vec![primary_in(target), all_members_healthy()]));
            continue;
        }
        if skip(s) {
            checks.push(entry(s, vec![primary_there(s)]));
            continue;
        }
        for st in phase_of(s, Phase::Reconcile) {
            steps.push(step(s, plan_op(s, st)));
        }
        let mut expect = vec![primary_there(s)];
        if cap.repoint {
            expect.push(followers_follow());
        }
        if phase_of(s, Phase::Reconcile).contains(&SeqStep::MakeSticky) {
            expect.push(preferred_in(target));
        }
        if planned {
            expect.push(all_members_healthy());
            if cap.lag_bound {
                if let Some(b) = s.max_lag_bytes.filter(|b| *b > 0) {
                    expect.push(lag_below(b));
                }
            }
        } else {
            expect.push(healthy_in(target));
        }
        checks.push(entry(s, expect));
    }
    stages.push(stage("re-point and rejoin".into(), steps, checks));

    // A stage waits for its slowest operation: stores whose operations take
    // minutes (Cosmos DB's ARM operations) stretch the stage timeout.
    for st in &mut stages {
        let default = st.timeout_ms;
        st.timeout_ms = st
            .steps
            .iter()
            .filter(|x| !matches!(x.op, PlanOp::CheckReadiness { .. }))
            .filter_map(|x| capof.get(x.store.as_str()))
            .map(|c| c.stage_timeout_ms(default))
            .max()
            .unwrap_or(default);
    }

    Ok(Plan {
        on_failure: None,
        version: PLAN_VERSION,
        name: format!(
            "{} to {target}",
            match opts.mode {
                Mode::Planned => "planned switchover",
                Mode::Forced => "forced failover",
                Mode::ForcedAcceptDataLoss => "forced failover (data loss accepted)",
            }
        ),
        topology: topology.name.clone(),
        target_region: target.into(),
        mode: opts.mode,
        depends_on: BTreeMap::new(),
        stages,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::validate::{parse_plan, validate};

    pub(crate) fn topology(mongo_depends_on_pg: bool) -> Topology {
        let dep = if mongo_depends_on_pg {
            "depends_on = [\"orders\"]"
        } else {
            ""
        };
        let text = format!(
            r#"
name = "lab"
[[regions]]
name = "east"
role = "primary"
[[regions]]
name = "west"
role = "secondary"
[[regions]]
name = "witness"
role = "witness"

[[stores]]
name = "orders"
kind = "postgres"
max_lag_bytes = 1048576
[[stores.members]]
name = "pg-east"
region = "east"
[[stores.members]]
name = "pg-west"
region = "west"

[[stores]]
name = "catalog"
kind = "mongodb"
{dep}
[[stores.members]]
name = "m-east"
region = "east"
[[stores.members]]
name = "m-west"
region = "west"
[[stores.members]]
name = "m-arb"
region = "witness"
arbiter = true
"#
        );
        switchyard_topology::parse_str("lab.toml", &text).unwrap()
    }

    pub(crate) fn caps() -> BTreeMap<String, Capability> {
        let mut pg = Capability::none();
        pg.planned_switchover = true;
        pg.forced_failover = true;
        pg.fencing = true;
        pg.positions = true;
        pg.repoint = true;
        pg.rejoin = true;
        pg.lag_bound = true;
        pg.chosen_candidate = true;
        let mut mongo = Capability::none();
        mongo.planned_switchover = true;
        mongo.forced_failover = true;
        mongo.self_electing = true;
        mongo.sticky_priorities = true;
        mongo.priority_takeover = true;
        mongo.lag_bound = true;
        mongo.chosen_candidate = true;
        BTreeMap::from([("orders".into(), pg), ("catalog".into(), mongo)])
    }

    fn shape(p: &Plan) -> Vec<String> {
        p.stages
            .iter()
            .map(|s| {
                let steps: Vec<_> = s
                    .steps
                    .iter()
                    .map(|st| format!("{}:{}", st.store, st.op.name()))
                    .collect();
                format!("{} [{}]", s.name, steps.join(" "))
            })
            .collect()
    }

    #[test]
    fn planned_orders_before_dependent_catalog() {
        let t = topology(true);
        let p = plan_failover(&t, &caps(), &PlanOptions::new("west", Mode::Planned)).unwrap();
        assert_eq!(
            shape(&p),
            vec![
                "readiness [orders:check_readiness catalog:check_readiness]",
                "fence orders [orders:fence orders:capture_position]",
                "promote orders [orders:wait_for_position orders:promote]",
                "promote catalog [catalog:promote catalog:make_sticky]",
                "re-point and rejoin [orders:repoint_followers orders:rejoin]",
            ]
        );
        validate(&p, &t, &caps()).unwrap();
        let last = p.stages.last().unwrap();
        assert_eq!(
            last.checkpoint[0].expectation().to_string(),
            "and(primary_in(west), followers_follow, all_members_healthy, lag_below(1048576))"
        );
    }

    #[test]
    fn independent_stores_share_a_stage() {
        let t = topology(false);
        let p = plan_failover(&t, &caps(), &PlanOptions::new("west", Mode::Planned)).unwrap();
        assert_eq!(
            shape(&p)[2],
            "promote orders, catalog [orders:wait_for_position orders:promote catalog:promote catalog:make_sticky]"
        );
    }

    #[test]
    fn forced_skips_fence_and_rejoin() {
        let t = topology(true);
        let p = plan_failover(
            &t,
            &caps(),
            &PlanOptions::new("west", Mode::ForcedAcceptDataLoss),
        )
        .unwrap();
        assert_eq!(
            shape(&p),
            vec![
                "readiness [orders:check_readiness catalog:check_readiness]",
                "promote orders [orders:promote]",
                "promote catalog [catalog:promote catalog:make_sticky]",
                "re-point and rejoin [orders:repoint_followers]",
            ]
        );
    }

    #[test]
    fn never_emits_an_unsupported_op() {
        let t = topology(true);
        let mut c = caps();
        c.get_mut("catalog").unwrap().planned_switchover = false;
        let e = plan_failover(&t, &c, &PlanOptions::new("west", Mode::Planned)).unwrap_err();
        assert!(e.to_string().contains("catalog"), "{e}");
        let e = plan_failover(&t, &caps(), &PlanOptions::new("mars", Mode::Planned)).unwrap_err();
        assert!(e.to_string().contains("unknown region `mars`"), "{e}");
        let e =
            plan_failover(&t, &caps(), &PlanOptions::new("witness", Mode::Planned)).unwrap_err();
        assert!(matches!(e, PlanningError::NoCandidate { .. }), "{e}");
    }

    #[test]
    fn stores_already_in_the_target_are_left_alone() {
        let t = topology(true);
        let mut o = PlanOptions::new("west", Mode::Planned);
        o.already_there.insert("orders".into());
        let p = plan_failover(&t, &caps(), &o).unwrap();
        assert_eq!(
            shape(&p),
            vec![
                "readiness [catalog:check_readiness]",
                "promote catalog [catalog:promote catalog:make_sticky]",
                "re-point and rejoin []",
            ]
        );
        assert_eq!(p.stages[0].checkpoint[0].expect, vec![primary_in("west")]);
        validate(&p, &t, &caps()).unwrap();
    }

    #[test]
    fn a_store_in_the_target_with_a_member_awaiting_rejoin_gets_a_rejoin() {
        let t = topology(true);
        let mut o = PlanOptions::new("west", Mode::Planned);
        o.already_there.insert("orders".into());
        o.rejoin_there.insert("orders".into());
        let p = plan_failover(&t, &caps(), &o).unwrap();
        assert_eq!(
            shape(&p).last().unwrap(),
            "re-point and rejoin [orders:rejoin]",
            "{:?}",
            shape(&p)
        );
        let last = p.stages.last().unwrap();
        let orders = last
            .checkpoint
            .iter()
            .find(|c| c.store == "orders")
            .unwrap();
        assert_eq!(
            orders.expect,
            vec![primary_in("west"), all_members_healthy()]
        );
        validate(&p, &t, &caps()).unwrap();
    }

    #[test]
    fn a_stale_primary_is_fenced_and_rejoined_before_anything_else() {
        let t = topology(true);
        let mut o = PlanOptions::new("east", Mode::Planned);
        o.stale_primaries.insert("orders".into());
        let p = plan_failover(&t, &caps(), &o).unwrap();
        assert_eq!(
            shape(&p)[..3],
            [
                "fence and rejoin stale primaries of orders [orders:rejoin]",
                "readiness [orders:check_readiness catalog:check_readiness]",
                "fence orders [orders:fence orders:capture_position]",
            ]
        );
        assert_eq!(
            p.stages[0].checkpoint[0].expectation().to_string(),
            "and(has_primary, followers_follow)"
        );
        validate(&p, &t, &caps()).unwrap();
        // The newest primary is already in the target: heal only.
        o.already_there.insert("orders".into());
        o.target_region = "west".into();
        let p = plan_failover(&t, &caps(), &o).unwrap();
        assert_eq!(
            shape(&p)[0],
            "fence and rejoin stale primaries of orders [orders:rejoin]"
        );
        assert!(
            !shape(&p).iter().skip(1).any(|s| s.contains("orders:")),
            "{:?}",
            shape(&p)
        );
    }

    #[test]
    fn a_sticky_store_already_in_the_target_is_still_made_preferred() {
        let t = topology(false);
        for mode in [Mode::Planned, Mode::Forced] {
            let mut o = PlanOptions::new("west", mode);
            o.already_there.insert("catalog".into());
            let p = plan_failover(&t, &caps(), &o).unwrap();
            let s = shape(&p);
            assert!(
                s.iter().any(|st| st.contains("catalog:make_sticky")),
                "{s:?}"
            );
            assert!(!s.iter().any(|st| st.contains("catalog:promote")), "{s:?}");
            let cp: Vec<String> = p
                .stages
                .iter()
                .flat_map(|st| &st.checkpoint)
                .filter(|c| c.store == "catalog")
                .map(|c| c.expectation().to_string())
                .collect();
            assert!(
                cp.contains(&"and(primary_in(west), preferred_in(west))".to_string()),
                "{cp:?}"
            );
            validate(&p, &t, &caps()).unwrap();
        }
    }

    #[test]
    fn long_running_operations_stretch_their_stages_only() {
        let t = topology(true);
        let mut c = caps();
        c.get_mut("catalog").unwrap().expected_operation_ms = Some(300_000);
        let p = plan_failover(&t, &c, &PlanOptions::new("west", Mode::Planned)).unwrap();
        let timeouts: Vec<(String, u64)> = p
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.timeout_ms))
            .collect();
        assert_eq!(
            timeouts,
            vec![
                ("readiness".to_string(), DEFAULT_STAGE_TIMEOUT_MS),
                ("fence orders".to_string(), DEFAULT_STAGE_TIMEOUT_MS),
                ("promote orders".to_string(), DEFAULT_STAGE_TIMEOUT_MS),
                ("promote catalog".to_string(), 600_000),
                ("re-point and rejoin".to_string(), DEFAULT_STAGE_TIMEOUT_MS),
            ]
        );
    }

    #[test]
    fn a_chosen_candidate_rides_on_its_store_steps_and_checkpoints() {
        let t = topology(true);
        let mut o = PlanOptions::new("west", Mode::Planned);
        o.candidates.insert("orders".into(), "pg-west".into());
        let p = plan_failover(&t, &caps(), &o).unwrap();
        let aimed: Vec<String> = p
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter_map(|s| {
                s.op.candidate()
                    .map(|c| format!("{}:{}:{c}", s.store, s.op.name()))
            })
            .collect();
        assert_eq!(
            aimed,
            [
                "orders:check_readiness:pg-west",
                "orders:wait_for_position:pg-west",
                "orders:promote:pg-west"
            ]
        );
        let orders: Vec<String> = p
            .stages
            .iter()
            .flat_map(|s| &s.checkpoint)
            .filter(|c| c.store == "orders")
            .map(|c| c.expectation().to_string())
            .collect();
        assert!(
            orders
                .iter()
                .any(|e| e.starts_with("and(primary_is(pg-west)")),
            "{orders:?}"
        );
        assert!(
            !orders.iter().any(|e| e.contains("primary_in")),
            "{orders:?}"
        );
        validate(&p, &t, &caps()).unwrap();
        let toml = p.to_toml().unwrap();
        assert!(toml.contains("candidate = \"pg-west\""), "{toml}");
        assert_eq!(parse_plan("p.toml", &toml).unwrap(), p);

        // A controller that cannot honour it is named, with what it lacks.
        let mut c = caps();
        c.get_mut("orders").unwrap().chosen_candidate = false;
        let e = plan_failover(&t, &c, &o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "store `orders` (postgres) cannot take part in a planned failover: its controller does not \
             support promoting a chosen member (--candidate)"
        );
        assert!(validate(&p, &t, &c)
            .unwrap_err()
            .to_string()
            .contains("does not support promoting a chosen member"));
        // A member outside the target, and one of another store.
        o.candidates.insert("orders".into(), "pg-east".into());
        let e = plan_failover(&t, &caps(), &o).unwrap_err();
        assert!(e.to_string().contains("is in region `east`"), "{e}");
        o.candidates.insert("orders".into(), "m-west".into());
        let e = plan_failover(&t, &caps(), &o).unwrap_err();
        assert!(
            e.to_string().contains("has no member named `m-west`"),
            "{e}"
        );
    }

    #[test]
    fn toml_and_json_round_trip() {
        let t = topology(true);
        let p = plan_failover(&t, &caps(), &PlanOptions::new("west", Mode::Planned)).unwrap();
        let toml = p.to_toml().unwrap();
        assert!(toml.contains("position = \"captured\""), "{toml}");
        assert_eq!(parse_plan("p.toml", &toml).unwrap(), p);
        assert_eq!(parse_plan("p.json", &p.to_json()).unwrap(), p);
    }
}
