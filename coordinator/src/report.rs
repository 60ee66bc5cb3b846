//! Reports computed from a journal: the timeline (`switchyard show`), the
//! final report of an execution (RTO per store, data-loss estimate), and the
//! coordinator's own overhead per stage.

use crate::journal::{format_ms, summarize, ExecutionStatus, OpResult, Record};
use crate::plan::{Mode, PlanOp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchyard_controller::{DataLossEstimate, Position};
use switchyard_topology::{StoreKind, Topology};

/// Timing of one stage, summed over every process that worked on it. Each
/// field is named after the journal field it sums, unit included (reports
/// before the shared vocabulary said `wall_us`, `ops_ms`, `checkpoint_ms`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StageTiming {
    /// 1-based stage number.
    pub stage: usize,
    /// Stage name.
    pub name: String,
    /// Wall time of the stage (µs), as measured by the driver: the sum of
    /// its checkpoints' `stage_wall_us`.
    #[serde(alias = "wall_us")]
    pub stage_wall_us: u64,
    /// Time inside store operations: the sum of the operations'
    /// `duration_ms` (concurrent operations overlap, so this can exceed the
    /// wall time).
    #[serde(alias = "ops_ms")]
    pub ops_duration_ms: u64,
    /// Checkpoint validation time (observing and waiting for the stores):
    /// the sum of the checkpoints' `duration_ms`.
    #[serde(alias = "checkpoint_ms")]
    pub checkpoint_duration_ms: u64,
    /// Time inside `observe` calls during checkpoint validation.
    pub observe_ms: u64,
    /// The coordinator's own time: journaling, deciding, scheduling (µs).
    pub overhead_us: u64,
    /// Whether the checkpoint passed.
    pub passed: bool,
}

/// What happened to one store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StoreOutcome {
    /// Store name.
    pub store: String,
    /// From the first mutating operation on the store to the checkpoint that
    /// confirmed its new primary (ms). `None` when it never got there.
    pub rto_ms: Option<u64>,
    /// Member promoted, as the controller reported it.
    pub promoted: Option<String>,
    /// Primary observed at the last checkpoint (`member@region`).
    pub primary: Option<String>,
    /// The store's own term (timeline, term) at the last checkpoint.
    #[serde(alias = "epoch")]
    #[schemars(with = "Option<u64>")]
    pub term: Option<switchyard_controller::Term>,
    /// Promote operations whose outcome was journaled (1 for a clean run;
    /// re-issues after a crash are counted too).
    pub promotions_journaled: u32,
    /// Data-loss estimate, with its basis.
    pub data_loss: String,
    /// Store kind, when known (for positions and terms in its notation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub kind: Option<StoreKind>,
}

/// The final report of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ExecutionReport {
    /// Execution id.
    pub id: String,
    /// Plan title.
    pub plan: String,
    /// Outcome.
    pub status: ExecutionStatus,
    /// First to last record (ms).
    pub total_ms: u64,
    /// Coordinator processes that worked on it (1 + resumes).
    pub processes: u32,
    /// Per stage.
    pub stages: Vec<StageTiming>,
    /// Per store.
    pub stores: Vec<StoreOutcome>,
    /// Sum of stage overheads (µs).
    pub overhead_us: u64,
    /// Sum of stage wall times (µs).
    #[serde(alias = "wall_us")]
    pub stage_wall_us: u64,
    /// Who asked for approval and who gave it, when the policy wanted one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Box<crate::approval::ApprovalState>>,
}

impl ExecutionReport {
    /// Build from an execution's journal.
    pub fn from_records(id: &str, records: &[Record]) -> Self {
        Self::from_records_in(id, records, None)
    }

    /// Build from an execution's journal, writing positions and terms in
    /// each store's notation (the kinds come from `topology`).
    /// The journal's own record of the kinds comes first; `topology`
    /// serves journals written before it was kept.
    pub fn from_records_in(id: &str, records: &[Record], topology: Option<&Topology>) -> Self {
        let journaled = crate::journal::journaled_store_kinds(records);
        let kind_of = |store: &str| {
            journaled.get(store).copied().or_else(|| {
                topology.and_then(|t| t.stores.iter().find(|s| s.name == store).map(|s| s.kind))
            })
        };
        let summary = summarize(id, records);
        let plan = records.iter().find_map(|r| match r {
            Record::Started { plan, .. } => Some(plan.clone()),
            _ => None,
        });
        let mut stages: Vec<StageTiming> = plan
            .as_ref()
            .map(|p| {
                p.stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StageTiming {
                        stage: i + 1,
                        name: s.name.clone(),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut stores: BTreeMap<String, StoreOutcome> = BTreeMap::new();
        if let Some(p) = &plan {
            for st in &p.stages {
                for s in st
                    .steps
                    .iter()
                    .map(|x| &x.store)
                    .chain(st.checkpoint.iter().map(|c| &c.store))
                {
                    stores.entry(s.clone()).or_insert_with(|| StoreOutcome {
                        store: s.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        let mut first_mutation: BTreeMap<String, u64> = BTreeMap::new();
        let mut promote_stage: BTreeMap<String, usize> = BTreeMap::new();
        let mut losses: BTreeMap<String, DataLossEstimate> = BTreeMap::new();
        // What was done to each store, to say how a planned promotion was
        // made safe (or that the store's own switchover did it, unfenced).
        let mut ops_done: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        let mut reached: BTreeMap<String, Position> = BTreeMap::new();
        let mut promote_notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut processes = 0;
        for r in records {
            match r {
                Record::Started { .. } | Record::Resumed { .. } => processes += 1,
                Record::Intent {
                    store,
                    op,
                    at_ms,
                    stage,
                    ..
                } => {
                    if op.is_mutating() {
                        first_mutation.entry(store.clone()).or_insert(*at_ms);
                    }
                    if op.name() == "promote" {
                        promote_stage.insert(store.clone(), *stage);
                    }
                }
                Record::Outcome {
                    stage,
                    step,
                    store,
                    duration_ms,
                    result,
                    ..
                } => {
                    if let Some(t) = stages.get_mut(*stage) {
                        t.ops_duration_ms += duration_ms;
                    }
                    let op = plan.as_ref().and_then(|p| {
                        p.stages
                            .get(*stage)
                            .and_then(|s| s.steps.get(*step))
                            .map(|s| s.op.name())
                    });
                    if let (Some(op), OpResult::Ok { outcome }) = (op, result) {
                        ops_done.entry(store.clone()).or_default().push(op);
                        if op == "wait_for_position" {
                            if let Some(p) = outcome.position {
                                reached.insert(store.clone(), p);
                            }
                        }
                        if op == "promote" {
                            promote_notes.insert(store.clone(), outcome.notes.clone());
                        }
                    }
                    let is_promote = plan.as_ref().is_some_and(|p| {
                        matches!(
                            p.stages
                                .get(*stage)
                                .and_then(|s| s.steps.get(*step))
                                .map(|s| &s.op),
                            Some(PlanOp::Promote { .. })
                        )
                    });
                    if let (true, OpResult::Ok { outcome }) = (is_promote, result) {
                        let so = stores.entry(store.clone()).or_default();
                        so.promotions_journaled += 1;
                        if outcome.member.is_some() {
                            so.promoted = outcome.member.clone();
                        }
                        if let Some(d) = &outcome.data_loss {
                            losses.insert(store.clone(), d.clone());
                        }
                    }
                }
                Record::CheckpointPassed {
                    stage,
                    at_ms,
                    duration_ms,
                    observe_ms,
                    stage_wall_us,
                    overhead_us,
                    observed,
                    ..
                }
                | Record::CheckpointFailed {
                    stage,
                    at_ms,
                    duration_ms,
                    observe_ms,
                    stage_wall_us,
                    overhead_us,
                    observed,
                    ..
                } => {
                    let passed = matches!(r, Record::CheckpointPassed { .. });
                    if let Some(t) = stages.get_mut(*stage) {
                        t.stage_wall_us += stage_wall_us;
                        t.checkpoint_duration_ms += duration_ms;
                        t.observe_ms += observe_ms;
                        t.overhead_us += overhead_us;
                        t.passed = passed;
                    }
                    for o in observed {
                        let so = stores.entry(o.store.clone()).or_default();
                        so.store = o.store.clone();
                        so.primary = o.primary.clone();
                        so.term = o.term;
                        if passed
                            && promote_stage.get(&o.store) == Some(stage)
                            && so.rto_ms.is_none()
                        {
                            so.rto_ms = first_mutation
                                .get(&o.store)
                                .map(|t0| at_ms.saturating_sub(*t0));
                        }
                    }
                }
                _ => {}
            }
        }
        let mode = plan.as_ref().map(|p| p.mode);
        for (name, so) in stores.iter_mut() {
            let done = ops_done.get(name).map(Vec::as_slice).unwrap_or(&[]);
            so.data_loss = match (losses.get(name), mode) {
                (Some(d), _) => describe_loss(d),
                (None, Some(Mode::Planned)) if so.promotions_journaled > 0 => planned_loss(
                    done,
                    reached
                        .get(name)
                        .map(|p| notation(kind_of(name)).position(p)),
                    promote_notes.get(name).map(Vec::as_slice).unwrap_or(&[]),
                ),
                (None, Some(_)) if so.promotions_journaled > 0 => {
                    "unknown: the controller gave no estimate".into()
                }
                _ => "none: not promoted".into(),
            };
            so.kind = kind_of(name);
        }
        let first = records
            .first()
            .map(crate::journal::record_time)
            .unwrap_or(0);
        let last = records.last().map(crate::journal::record_time).unwrap_or(0);
        ExecutionReport {
            id: id.into(),
            plan: summary.plan,
            status: summary.status,
            total_ms: last.saturating_sub(first),
            processes,
            overhead_us: stages.iter().map(|s| s.overhead_us).sum(),
            stage_wall_us: stages.iter().map(|s| s.stage_wall_us).sum(),
            approval: crate::approval::ApprovalState::of(records).map(Box::new),
            stages,
            stores: stores.into_values().collect(),
        }
    }

    /// Human rendering that fits 80 columns (long values wrap, indented).
    pub fn render(&self) -> String {
        self.render_width(false)
    }

    /// Human rendering with one line per stage and per store, however long
    /// (`switchyard show --wide`).
    pub fn render_wide(&self) -> String {
        self.render_width(true)
    }

    fn render_width(&self, wide: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Execution {}", self.id);
        // With more than one process the time from start to end includes
        // the gap before each resume, which no stage's wall time holds:
        // say which is which, so the head and the table agree.
        let total = self.total_ms as f64 / 1000.0;
        let head = if self.processes > 1 {
            format!(
                "{} — {} {total:.1} s after it started ({:.1} s in its stages), {} coordinator processes",
                self.plan,
                self.status,
                self.stage_wall_us as f64 / 1e6,
                self.processes,
            )
        } else {
            format!(
                "{} — {} in {total:.1} s, 1 coordinator process",
                self.plan, self.status,
            )
        };
        out.push_str(&wrap(&head, "  ", "    ", wide));
        if let Some(a) = &self.approval {
            let _ = writeln!(out, "{}", a.render());
        }
        let name_w = if wide {
            self.stages
                .iter()
                .map(|s| s.name.chars().count())
                .max()
                .unwrap_or(5)
                .max(5)
        } else {
            30
        };
        let _ = writeln!(
            out,
            "\n  {:>2} {:<name_w$} {:>9} {:>9} {:>10} {:>7}",
            "#", "stage", "wall ms", "ops Σ ms", "checkpt ms", "own ms"
        );
        let mut unfinished = false;
        for s in &self.stages {
            // A stage's wall time is measured when its checkpoint ends: one
            // that never got there has none to show (not 0), and one that
            // never started is not a stage that failed.
            let ran = s.passed || s.ops_duration_ms > 0 || s.checkpoint_duration_ms > 0;
            unfinished |= !s.passed;
            let measured = s.passed || s.stage_wall_us > 0;
            let num = |v: String| if ran { v } else { "-".to_string() };
            let _ = writeln!(
                out,
                "  {:>2} {:<name_w$} {:>9} {:>9} {:>10} {:>7} {}",
                s.stage,
                if wide {
                    s.name.clone()
                } else {
                    truncate(&s.name, name_w)
                },
                if measured {
                    format!("{:.1}", s.stage_wall_us as f64 / 1000.0)
                } else {
                    "-".to_string()
                },
                num(s.ops_duration_ms.to_string()),
                num(s.checkpoint_duration_ms.to_string()),
                if measured {
                    format!("{:.2}", s.overhead_us as f64 / 1000.0)
                } else {
                    "-".to_string()
                },
                match (s.passed, ran) {
                    (true, _) => "✓",
                    (false, true) => "✗",
                    (false, false) => "·",
                }
            );
        }
        if unfinished {
            let _ = writeln!(
                out,
                "  ✓ checkpoint passed  ✗ did not pass  · not run  - not measured"
            );
        }
        let pct = if self.stage_wall_us > 0 {
            100.0 * self.overhead_us as f64 / self.stage_wall_us as f64
        } else {
            0.0
        };
        if self.stage_wall_us > 0 {
            let _ = writeln!(
                out,
                "  coordinator's own time: {:.2} ms of {:.1} ms wall ({pct:.2}%)",
                self.overhead_us as f64 / 1000.0,
                self.stage_wall_us as f64 / 1000.0
            );
        } else {
            let _ = writeln!(
                out,
                "  coordinator's own time: not measured (no stage reached its checkpoint's end)"
            );
        }
        let _ = writeln!(out);
        let sw = self
            .stores
            .iter()
            .map(|s| s.store.chars().count())
            .max()
            .unwrap_or(0);
        for s in &self.stores {
            let primary = match s.primary.as_deref().and_then(|p| p.split_once('@')) {
                Some((m, r)) => format!("primary {m} in {r}"),
                None => match s.primary.as_deref() {
                    Some(p) => format!("primary {p}"),
                    None => "no primary observed".to_string(),
                },
            };
            let term = s
                .term
                .map(|t| format!(", store's {}", notation(s.kind).term(t)))
                .unwrap_or_default();
            let rto = format!(
                "RTO {}, {} promotion{} journaled",
                s.rto_ms.map_or("-".into(), |r| format!("{r} ms")),
                s.promotions_journaled,
                if s.promotions_journaled == 1 { "" } else { "s" }
            );
            if wide {
                let _ = writeln!(
                    out,
                    "  {:<sw$}  {primary}{term}; {rto}; data loss: {}",
                    s.store, s.data_loss
                );
            } else {
                let pad = " ".repeat(sw + 4);
                out.push_str(&wrap(
                    &format!("{:<sw$}  {primary}{term}", s.store),
                    "  ",
                    &pad,
                    false,
                ));
                out.push_str(&wrap(&rto, &pad, &pad, false));
                out.push_str(&wrap(
                    &format!("data loss: {}", s.data_loss),
                    &pad,
                    &format!("{pad}  "),
                    false,
                ));
            }
        }
        let _ = writeln!(out);
        for line in FOOTER {
            out.push_str(&wrap(line, "  ", "    ", wide));
        }
        out
    }
}

/// What every term of the report means; docs/glossary.md says the same at
/// more length.
pub const FOOTER: &[&str] = &[
    "RTO: from the store's first mutating operation to the checkpoint that confirmed its new primary.",
    "wall ms: the stage's elapsed time. ops Σ ms: time inside store operations, summed (concurrent operations overlap, so it can exceed wall). checkpt ms: observing until the stage's expected state held. own ms: the coordinator's journaling and deciding.",
    "coordinator process: the one that started the execution, plus one per resume.",
    "store's timeline / term: the store's own term (EventStoreDB: its epoch), bumped by each promotion; not switchyard's fencing token.",
    "data loss: what the promotion may have lost, and on what basis. More: docs/glossary.md.",
];

/// `text` wrapped at 80 columns: first line after `first`, the rest after
/// `rest` (no wrapping when `wide`). Words longer than a line stay whole.
fn wrap(text: &str, first: &str, rest: &str, wide: bool) -> String {
    if wide {
        return format!("{first}{text}\n");
    }
    crate::width::wrap(text, first, rest, 80)
}

fn notation(kind: Option<StoreKind>) -> switchyard_controller::Notation {
    kind.map_or(
        switchyard_controller::Notation::PLAIN,
        crate::registry::notation,
    )
}

/// What made a planned promotion lose nothing, from what was done: a fence
/// and a wait for the final position where the store can be fenced, the
/// store's own planned switchover (as its controller described it) where
/// it cannot. Never "fenced" for a store nobody fenced.
fn planned_loss(done: &[&str], reached: Option<String>, notes: &[String]) -> String {
    let fenced = done.contains(&"fence");
    let waited = done.contains(&"wait_for_position");
    match (fenced, waited) {
        (true, true) => format!(
            "none: old primary fenced, target replayed its final position{}, then promoted",
            reached.map_or(String::new(), |p| format!(" ({p})"))
        ),
        (true, false) => "none expected: old primary fenced before the promotion; no final position was captured to compare".into(),
        (false, true) => format!(
            "none expected: target replayed the captured position{} before promotion; the old primary was not fenced",
            reached.map_or(String::new(), |p| format!(" ({p})"))
        ),
        (false, false) if notes.is_empty() => {
            "none expected: the store's own planned switchover (not fenced by switchyard)".into()
        }
        (false, false) => format!(
            "none expected: the store's own planned switchover, not fenced by switchyard: {}",
            notes.join("; ")
        ),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn describe_loss(d: &DataLossEstimate) -> String {
    let mut parts = vec![];
    if let Some(b) = d.bytes {
        parts.push(crate::health::bytes(b));
    }
    if let Some(m) = d.millis {
        parts.push(format!("{m} ms of writes"));
    }
    if let Some(w) = d.writes {
        parts.push(format!("{w} writes"));
    }
    // "0 writes (none: …)" says nothing twice: the note alone says it once.
    let zero = [d.bytes, d.millis, d.writes]
        .iter()
        .all(|v| v.is_none_or(|v| v == 0));
    if zero && d.note.starts_with("none") {
        return d.note.clone();
    }
    let head = if parts.is_empty() {
        "estimate".to_string()
    } else {
        // Not "up to": a forced promotion's figures are what was seen, and
        // the note says whether any bound holds (usually only a lower one).
        format!("estimate {}", parts.join(", "))
    };
    if d.note.is_empty() {
        head
    } else {
        format!("{head} ({})", d.note)
    }
}

/// The journal as a human timeline (`switchyard show`), every position in
/// its store's notation: the kinds the journal records, else `kinds`
/// (from the topology, for journals written before they were recorded).
pub fn timeline(records: &[Record], kinds: &BTreeMap<String, StoreKind>) -> String {
    let mut out = String::new();
    let journaled = crate::journal::journaled_store_kinds(records);
    let notation_of = |store: &str| notation(journaled.get(store).or(kinds.get(store)).copied());
    let plan = records.iter().find_map(|r| match r {
        Record::Started { plan, .. } => Some(plan),
        _ => None,
    });
    let t0 = records
        .first()
        .map(crate::journal::record_time)
        .unwrap_or(0);
    for r in records {
        let at = crate::journal::record_time(r);
        let rel = format!("+{:>8.3}s", at.saturating_sub(t0) as f64 / 1000.0);
        let line = match r {
            Record::Started {
                execution_id,
                fencing_token,
                kind,
                plan,
                ..
            } => format!(
                "started {kind} {execution_id} (fencing token {fencing_token}): {}",
                plan.name
            ),
            Record::Resumed { fencing_token, .. } => {
                format!("resumed with fencing token {fencing_token}")
            }
            Record::StageStarted { stage, .. } => format!(
                "stage {} {}",
                stage + 1,
                plan.and_then(|p| p.stages.get(*stage))
                    .map_or(String::new(), |s| s.name.clone())
            ),
            Record::Intent {
                seq,
                store,
                op,
                fencing_token,
                ..
            } => format!(
                "  #{seq:<3} {store:<12} → {} (fencing token {fencing_token})",
                op.describe(&notation_of(store))
            ),
            Record::Outcome {
                seq,
                store,
                duration_ms,
                attempts,
                result,
                ..
            } => match result {
                OpResult::Ok { outcome } => format!(
                    "  #{seq:<3} {store:<12} ✓ {duration_ms} ms{}{}{}{}",
                    if *attempts > 1 {
                        format!(", {attempts} attempts")
                    } else {
                        String::new()
                    },
                    outcome
                        .member
                        .as_ref()
                        .map_or(String::new(), |m| format!(", member {m}")),
                    outcome.position.map_or(String::new(), |p| format!(
                        ", position {}",
                        notation_of(store).position(&p)
                    )),
                    if outcome.already_done {
                        ", already done"
                    } else {
                        ""
                    }
                ),
                OpResult::Err { message, .. } => {
                    format!("  #{seq:<3} {store:<12} ✗ {duration_ms} ms: {message}")
                }
            },
            Record::CheckpointPassed {
                stage,
                duration_ms,
                polls,
                observed,
                ..
            } => {
                let mut s = format!(
                    "checkpoint {} passed in {duration_ms} ms ({polls} observation round{})",
                    stage + 1,
                    if *polls == 1 { "" } else { "s" }
                );
                for o in observed {
                    let _ = write!(s, "\n{:>12}    ✓ {:<12} {}", "", o.store, o.expected);
                }
                s
            }
            Record::CheckpointFailed {
                stage,
                duration_ms,
                observed,
                ..
            } => {
                let mut s = format!(
                    "checkpoint {} NOT reached after {duration_ms} ms",
                    stage + 1
                );
                for o in observed {
                    match &o.mismatch {
                        None => {
                            let _ = write!(s, "\n{:>12}    ✓ {:<12} {}", "", o.store, o.expected);
                        }
                        Some(m) => {
                            let _ = write!(
                                s,
                                "\n{:>12}    ✗ {:<12} expected {}; observed: {m}",
                                "", o.store, o.expected
                            );
                        }
                    }
                }
                s
            }
            Record::ExtraIntent {
                store,
                op,
                fencing_token,
                ..
            } => {
                format!(
                    "       {store:<12} → {} (outside the plan, fencing token {fencing_token})",
                    op.describe(&notation_of(store))
                )
            }
            Record::ExtraOutcome {
                store,
                duration_ms,
                result,
                ..
            } => match result {
                OpResult::Ok { .. } => format!("       {store:<12} ✓ {duration_ms} ms"),
                OpResult::Err { message, .. } => {
                    format!("       {store:<12} ✗ {duration_ms} ms: {message}")
                }
            },
            Record::Progress { store, token, .. } => {
                format!("       {store:<12} … {token}")
            }
            Record::Finished { .. } => "finished: every checkpoint passed".into(),
            Record::Aborted {
                fencing_token,
                stores,
                ..
            } => {
                // The record that closes a refused execution is an
                // `aborted` one marked `*`: it was refused, not aborted.
                let refused = stores.len() == 1 && stores[0].store == crate::journal::REFUSED_MARK;
                let mut s = format!(
                    "{} (fencing token {fencing_token})",
                    if refused { "refused" } else { "aborted" }
                );
                for st in stores
                    .iter()
                    .filter(|st| st.store != crate::journal::REFUSED_MARK)
                {
                    let _ = write!(s, "\n{:>12}    {:<12} {}", "", st.store, st.summary);
                }
                s
            }
            Record::Closed {
                fencing_token,
                reason,
                damage,
                ..
            } => {
                let mut s =
                    format!("closed by an operator (fencing token {fencing_token}): {reason}");
                for d in damage {
                    let _ = write!(s, "\n{:>12}    damaged: {d}", "");
                }
                s
            }
            Record::StartedBy { by, .. } => format!("started by {by}"),
            // Gates, hooks, approvals: described where they are defined.
            other => crate::safety::describe(other),
        };
        let _ = writeln!(out, "{rel}  {line}");
    }
    if let Some(first) = records.first() {
        let _ = writeln!(
            out,
            "(started {})",
            format_ms(crate::journal::record_time(first))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_line_within_80_columns() {
        let long = "none: old primary fenced, target replayed its final position (0/4000060 on timeline 1), then promoted and a good deal more text to wrap";
        let w = wrap(long, "  ", "      ", false);
        assert!(w.lines().count() > 1);
        for l in w.lines() {
            assert!(l.chars().count() <= 80, "{l}");
        }
        assert_eq!(
            w.split_whitespace().collect::<Vec<_>>(),
            long.split(' ').collect::<Vec<_>>()
        );
        assert_eq!(wrap(long, "  ", "", true).lines().count(), 1);
    }

    #[test]
    fn a_planned_promotion_says_what_made_it_safe() {
        let pos = Some("0/4000060 on timeline 1".to_string());
        assert!(planned_loss(
            &["fence", "capture_position", "wait_for_position", "promote"],
            pos,
            &[]
        )
        .starts_with("none: old primary fenced, target replayed its final position (0/4000060"));
        let mongo = planned_loss(
            &["check_readiness", "promote"],
            None,
            &["stepped down east-1 with a 10 s catch-up period".into()],
        );
        assert!(!mongo.contains("fenced,"), "{mongo}");
        assert!(
            mongo.contains("not fenced by switchyard: stepped down east-1"),
            "{mongo}"
        );
    }
}
