//! What runs at the boundaries of an execution and of its stages: gates
//! ([`crate::gate`]) and then hooks ([`crate::stage_hook`]), as the safety
//! policy ([`crate::policy`]) says. The driver calls a [`Boundaries`] before
//! each stage, after each stage and after the execution, journals what it
//! returns, and stops when it says so; the driver stays a state machine that
//! knows nothing of policies.

use crate::gate::{self, Move, Observations};
use crate::journal::{JournalStore, Record};
use crate::plan::{Mode, Plan};
use crate::policy::Policy;
use crate::stage_hook::{run_hook, Facts, HookPoint};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use switchyard_controller::Controller;
use switchyard_topology::Topology;

/// What a boundary decided: records to journal (durably, in order) and,
/// when the execution must stop before the boundary, why.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Gate and hook records.
    pub records: Vec<Record>,
    /// The reason to stop, naming the rule or hook.
    pub stop: Option<String>,
}

/// The driver's view of the safety layer.
#[async_trait::async_trait]
pub trait Boundaries: Send + Sync {
    /// Before stage `stage` (0-based) issues anything; stopping here is
    /// clean: nothing of the stage has been issued.
    async fn before_stage(&self, plan: &Plan, stage: usize) -> Verdict;
    /// After stage `stage`'s checkpoint passed; never stops.
    async fn after_stage(&self, plan: &Plan, stage: usize) -> Verdict;
    /// After the execution ended with `status` (`succeeded`, `failed`);
    /// never stops.
    async fn after_execution(&self, plan: &Plan, status: &str) -> Verdict;
}

/// The safety policy applied to one execution.
pub struct PolicyBoundaries {
    policy: Policy,
    topology: Arc<Topology>,
    controllers: BTreeMap<String, Arc<dyn Controller>>,
    state_dir: PathBuf,
    /// The execution history the gates read: the service's journal store
    /// (on a coordination backend, the backend's), or why it cannot be read.
    journals: Result<Arc<dyn JournalStore>, String>,
    kind: String,
    /// Pre-hooks already journaled as passed, as (point, stage, name): a
    /// resumed execution does not run them again.
    done: Vec<(HookPoint, Option<usize>, String)>,
    facts: Mutex<Facts>,
    /// The regions being left were journaled already (a resume).
    had_regions_left: bool,
}

/// The informational gate record naming the regions an execution leaves
/// (its `SWITCHYARD_FROM_REGIONS`), journaled once before the first stage.
pub const REGIONS_LEFT: &str = "regions_left";

impl std::fmt::Debug for PolicyBoundaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyBoundaries")
            .field("kind", &self.kind)
            .field("policy", &self.policy.file)
            .finish_non_exhaustive()
    }
}

impl PolicyBoundaries {
    /// The boundaries of execution `execution_id` (of `kind`), given what it
    /// journaled so far (`records`: its start record, and on resume the rest).
    /// `journals` is where the history-based gates read earlier executions.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: Policy,
        topology: Arc<Topology>,
        controllers: BTreeMap<String, Arc<dyn Controller>>,
        state_dir: PathBuf,
        journals: Result<Arc<dyn JournalStore>, String>,
        execution_id: &str,
        kind: &str,
        records: &[Record],
    ) -> Self {
        let mut done = vec![];
        let mut from = vec![];
        let mut had_regions_left = false;
        for r in records {
            match r {
                Record::Hook(h) if h.passed && h.point.fatal() => {
                    done.push((h.point, h.stage, h.name.clone()))
                }
                Record::Gate(g) if g.rule == REGIONS_LEFT => {
                    had_regions_left = true;
                    from = g
                        .detail
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                _ => {}
            }
        }
        let plan = records.iter().find_map(|r| match r {
            Record::Started { plan, .. } => Some(plan),
            _ => None,
        });
        let facts = Facts {
            execution_id: execution_id.into(),
            kind: kind.into(),
            mode: plan.map_or(String::new(), |p| p.mode.to_string()),
            from_regions: from,
            to_region: plan.map_or(String::new(), |p| p.target_region.clone()),
            stores: plan.map_or(vec![], |p| {
                crate::journal::plan_stores(p).into_iter().collect()
            }),
        };
        PolicyBoundaries {
            policy,
            topology,
            controllers,
            state_dir,
            journals,
            kind: kind.into(),
            done,
            facts: Mutex::new(facts),
            had_regions_left,
        }
    }

    fn facts(&self) -> Facts {
        match self.facts.lock() {
            Ok(f) => f.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn observe(&self) -> Observations {
        futures::future::join_all(self.controllers.iter().map(|(n, c)| {
            let c = c.clone();
            let n = n.clone();
            async move { (n, c.observe().await.map_err(|e| e.to_string())) }
        }))
        .await
    }

    /// Run the hooks at `point` (stage hooks with their stage); records and
    /// the first fatal failure.
    async fn hooks(
        &self,
        point: HookPoint,
        stage: Option<(usize, &str)>,
        status: Option<&str>,
        out: &mut Verdict,
    ) {
        let facts = self.facts();
        for h in self.policy.hooks.iter().filter(|h| h.at == point) {
            let key = (point, stage.map(|s| s.0), h.label().to_string());
            if self.done.contains(&key) {
                continue;
            }
            let env = facts.env(point.as_str(), stage, status);
            let rec = run_hook(h, &env, stage.map(|s| s.0)).await;
            let failed = !rec.passed;
            let detail = rec.detail.clone();
            out.records.push(Record::Hook(rec));
            if failed && point.fatal() {
                out.stop = Some(format!(
                    "{} hook `{}` failed: {detail}",
                    point.as_str(),
                    h.label()
                ));
                return;
            }
            if failed {
                eprintln!(
                    "switchyard: warning: {} hook `{}` failed: {detail} (not fatal)",
                    point.as_str(),
                    h.label()
                );
            }
        }
    }
}

fn stop_on_gates(records: &[gate::GateRecord]) -> Option<String> {
    records.iter().find(|g| !g.passed).map(|g| {
        format!(
            "gate `{}` refused{}: {}",
            g.rule,
            if g.stage == 0 {
                " before the plan started".to_string()
            } else {
                format!(" before stage {}", g.stage + 1)
            },
            g.detail
        )
    })
}

#[async_trait::async_trait]
impl Boundaries for PolicyBoundaries {
    async fn before_stage(&self, plan: &Plan, stage: usize) -> Verdict {
        let mut v = Verdict::default();
        let journals = match &self.journals {
            Ok(j) => j.clone(),
            Err(e) => {
                v.stop = Some(format!("cannot read the journals for the gates: {e}"));
                return v;
            }
        };
        // An abort is the way out of a bad state: no gate may hold it back
        // (it proves itself with its own checkpoints). Hooks still run.
        let gates = if self.kind == crate::abort::KIND {
            vec![]
        } else if stage == 0 {
            let observed = self.observe().await;
            let stores: Vec<String> = crate::journal::plan_stores(plan).into_iter().collect();
            let from =
                gate::source_regions(&self.topology, &observed, &stores, &plan.target_region);
            if let Ok(mut f) = self.facts.lock() {
                if f.from_regions.is_empty() {
                    f.from_regions = from.clone();
                }
            }
            let facts = self.facts();
            // The regions being left, journaled once, so that a resumed
            // execution's hooks are told the same facts.
            if !self.had_regions_left {
                v.records.push(Record::Gate(gate::GateRecord {
                    at_ms: crate::journal::now_ms(),
                    stage: 0,
                    rule: REGIONS_LEFT.into(),
                    passed: true,
                    detail: facts.from_regions.join(","),
                }));
            }
            let mv = Move {
                to: plan.target_region.clone(),
                from: facts.from_regions.clone(),
                forced: plan.mode != Mode::Planned,
                stores,
            };
            let env = facts.env("gate", Some((0, &plan.stages[0].name)), None);
            gate::before_start(
                &self.policy.gates,
                &self.topology,
                &observed,
                &mv,
                &self.kind,
                &facts.execution_id,
                journals.as_ref(),
                &self.state_dir,
                &env,
            )
            .await
        } else {
            let env = self
                .facts()
                .env("gate", Some((stage, &plan.stages[stage].name)), None);
            gate::between_stages(&self.policy.gates, stage, &env).await
        };
        v.stop = stop_on_gates(&gates);
        v.records.extend(gates.into_iter().map(Record::Gate));
        if v.stop.is_some() {
            return v;
        }
        if stage == 0 {
            self.hooks(HookPoint::PreExecution, None, None, &mut v)
                .await;
            if v.stop.is_some() {
                return v;
            }
        }
        let name = plan.stages[stage].name.clone();
        self.hooks(HookPoint::PreStage, Some((stage, &name)), None, &mut v)
            .await;
        v
    }

    async fn after_stage(&self, plan: &Plan, stage: usize) -> Verdict {
        let mut v = Verdict::default();
        let name = plan.stages[stage].name.clone();
        self.hooks(HookPoint::PostStage, Some((stage, &name)), None, &mut v)
            .await;
        v
    }

    async fn after_execution(&self, _plan: &Plan, status: &str) -> Verdict {
        let mut v = Verdict::default();
        self.hooks(HookPoint::PostExecution, None, Some(status), &mut v)
            .await;
        v
    }
}

/// One timeline line for a safety record (gate, hook, approval).
pub fn describe(r: &Record) -> String {
    match r {
        Record::Gate(g) if g.rule == REGIONS_LEFT => {
            format!(
                "leaving {}",
                if g.detail.is_empty() {
                    "no region"
                } else {
                    &g.detail
                }
            )
        }
        Record::Gate(g) => format!(
            "gate {} {}{}: {}",
            g.rule,
            if g.passed { "held" } else { "REFUSED" },
            if g.stage == 0 {
                String::new()
            } else {
                format!(" before stage {}", g.stage + 1)
            },
            g.detail
        ),
        Record::Hook(h) => format!(
            "{} hook {}{} {}: {}",
            h.point.as_str(),
            h.name,
            h.stage
                .map_or(String::new(), |s| format!(" (stage {})", s + 1)),
            if h.passed { "ok" } else { "FAILED" },
            h.detail
        ),
        Record::ApprovalRequested(a) => format!(
            "approval requested by {}: {} (expires {})",
            a.requester,
            a.reasons.join("; "),
            crate::journal::format_ms(a.expires_at_ms)
        ),
        Record::Approval(a) if a.approved => format!("approved by {}", a.approver),
        Record::Approval(a) => format!("approval by {} REFUSED: {}", a.approver, a.refused_because),
        other => format!("{other:?}"),
    }
}
