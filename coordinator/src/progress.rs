//! Live progress: what the driver tells the operator (or the orchestrator)
//! while an execution runs. A [`Reporter`] receives [`ProgressEvent`]s;
//! [`JsonLines`] prints one JSON object per line (non-terminals, `--output
//! json`), [`Terminal`] draws a spinner per stage and store with indicatif.

use crate::journal::CheckpointObservation;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One thing that happened during an execution.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ProgressEvent {
    /// An execution started or resumed.
    ExecutionStarted {
        /// Execution id.
        execution_id: String,
        /// Plan title.
        plan: String,
        /// The coordinator's fencing token for this process of the execution.
        #[schemars(with = "u64")]
        fencing_token: switchyard_controller::FencingToken,
        /// Whether this continues an interrupted execution.
        resumed: bool,
        /// Number of stages.
        stages: usize,
    },
    /// A stage began.
    StageStarted {
        /// 1-based stage number.
        stage: usize,
        /// Stage name.
        name: String,
        /// Stores with steps or checkpoint entries in it.
        stores: Vec<String>,
    },
    /// An operation was journaled and issued.
    OpStarted {
        /// 1-based stage number.
        stage: usize,
        /// Operation sequence number.
        seq: u64,
        /// Store.
        store: String,
        /// Operation name.
        op: String,
        /// Human description.
        description: String,
    },
    /// An operation finished.
    OpFinished {
        /// 1-based stage number.
        stage: usize,
        /// Operation sequence number.
        seq: u64,
        /// Store.
        store: String,
        /// Operation name.
        op: String,
        /// Time inside the controller.
        duration_ms: u64,
        /// Attempts made.
        attempts: u32,
        /// Error, if it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Checkpoint validation began.
    CheckpointStarted {
        /// 1-based stage number.
        stage: usize,
    },
    /// Checkpoint validation ended.
    CheckpointFinished {
        /// 1-based stage number.
        stage: usize,
        /// Whether every expectation held.
        passed: bool,
        /// Validation time.
        duration_ms: u64,
        /// Expected against observed, per store.
        observed: Vec<CheckpointObservation>,
    },
    /// The execution ended (for this process).
    ExecutionEnded {
        /// Execution id.
        execution_id: String,
        /// `succeeded`, `failed`, `refused`, `aborted`.
        status: String,
        /// Why, when not succeeded.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Receives progress events.
pub trait Reporter: Send + Sync {
    /// Called for every event, in order.
    fn event(&self, ev: &ProgressEvent);
}

/// Discards events (tests, benchmarks).
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &ProgressEvent) {}
}

/// One JSON object per line on stdout.
#[derive(Debug, Default)]
pub struct JsonLines;

/// `ev` as one JSON object: `schema`, `ts` (RFC 3339, UTC, when it was
/// reported), then the event's own fields.
pub fn event_json(ev: &ProgressEvent) -> serde_json::Value {
    crate::output::envelope(
        crate::output::EVENT,
        serde_json::to_value(ev).unwrap_or_default(),
    )
}

impl Reporter for JsonLines {
    fn event(&self, ev: &ProgressEvent) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &event_json(ev));
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// Plain lines for people when stdout is not a terminal (`--output text`
/// into a file or a CI log).
#[derive(Debug, Default)]
pub struct Plain;

impl Reporter for Plain {
    fn event(&self, ev: &ProgressEvent) {
        let line = match ev {
            ProgressEvent::ExecutionStarted {
                execution_id,
                plan,
                fencing_token,
                resumed,
                ..
            } => format!(
                "{} {plan} — execution {execution_id}, fencing token {fencing_token}",
                if *resumed { "Resuming" } else { "Executing" }
            ),
            ProgressEvent::StageStarted { stage, name, .. } => format!("Stage {stage}: {name}"),
            ProgressEvent::OpStarted {
                stage,
                seq,
                store,
                description,
                ..
            } => format!("  [{stage}] #{seq} {store}: {description} …"),
            ProgressEvent::OpFinished {
                stage,
                seq,
                store,
                op,
                duration_ms,
                error,
                ..
            } => match error {
                None => format!("  [{stage}] #{seq} {store}: ✓ {op} ({duration_ms} ms)"),
                Some(e) => format!("  [{stage}] #{seq} {store}: ✗ {op} ({duration_ms} ms): {e}"),
            },
            ProgressEvent::CheckpointStarted { stage } => {
                format!("  [{stage}] validating checkpoint …")
            }
            ProgressEvent::CheckpointFinished {
                stage,
                duration_ms,
                observed,
                ..
            } => {
                let mut s = String::new();
                for o in observed {
                    if !s.is_empty() {
                        s.push('\n');
                    }
                    s.push_str(&match &o.mismatch {
                        None => format!(
                            "  [{stage}] {}: ✓ {} ({duration_ms} ms)",
                            o.store, o.expected
                        ),
                        Some(m) => format!(
                            "  [{stage}] {}: ✗ expected {}, observed: {m}",
                            o.store, o.expected
                        ),
                    });
                }
                s
            }
            ProgressEvent::ExecutionEnded { status, reason, .. } => match reason {
                Some(r) => format!("Execution {status}: {r}"),
                None => format!("Execution {status}"),
            },
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A row per stage and store on a terminal, under its stage's heading, in
/// execution order. A row keeps what finished on it (operation and time)
/// and ends — passed, failed, or cut short by the execution's end — with
/// its spinner stopped, never frozen mid-turn.
pub struct Terminal {
    multi: MultiProgress,
    rows: Mutex<BTreeMap<(usize, String), Row>>,
    /// The last line of each stage (heading or row), so rows are placed
    /// under their own stage even when stages overlap in time.
    last: Mutex<BTreeMap<usize, ProgressBar>>,
}

struct Row {
    bar: ProgressBar,
    /// What finished on this row, in order: `✓ fence 412 ms`.
    done: Vec<String>,
    /// When the row's first operation started: its own elapsed time.
    started: Option<Instant>,
}

impl Row {
    fn show(&self, now: Option<&str>) {
        let mut parts = self.done.clone();
        if let Some(n) = now {
            parts.push(n.to_string());
        }
        self.bar.set_message(parts.join(" · "));
    }

    fn elapsed(&self) -> String {
        self.started
            .map(|t| format!("{:.1} s: ", t.elapsed().as_secs_f64()))
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").finish_non_exhaustive()
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal {
            multi: MultiProgress::new(),
            rows: Mutex::new(BTreeMap::new()),
            last: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The events a journal shows happened, as the driver reported them live:
/// the timeline of an execution no process is driving now (the console's
/// Execution view of a finished or interrupted one).
pub fn replay(records: &[crate::journal::Record]) -> Vec<ProgressEvent> {
    use crate::journal::{OpResult, Record};
    let mut out = vec![];
    let mut plan: Option<&crate::plan::Plan> = None;
    let mut ops: BTreeMap<u64, String> = BTreeMap::new();
    for r in records {
        match r {
            Record::Started {
                execution_id,
                fencing_token,
                plan: p,
                ..
            } => {
                plan = Some(p);
                out.push(ProgressEvent::ExecutionStarted {
                    execution_id: execution_id.clone(),
                    plan: p.name.clone(),
                    fencing_token: *fencing_token,
                    resumed: false,
                    stages: p.stages.len(),
                });
            }
            Record::StageStarted { stage, .. } => {
                let st = plan.and_then(|p| p.stages.get(*stage));
                out.push(ProgressEvent::StageStarted {
                    stage: stage + 1,
                    name: st.map(|s| s.name.clone()).unwrap_or_default(),
                    stores: st
                        .map(|s| s.steps.iter().map(|x| x.store.clone()).collect())
                        .unwrap_or_default(),
                });
            }
            Record::Intent {
                seq,
                stage,
                store,
                op,
                ..
            } => {
                ops.insert(*seq, op.name().to_string());
                out.push(ProgressEvent::OpStarted {
                    stage: stage + 1,
                    seq: *seq,
                    store: store.clone(),
                    op: op.name().into(),
                    description: op.to_string(),
                });
            }
            Record::Outcome {
                seq,
                stage,
                store,
                duration_ms,
                attempts,
                result,
                ..
            } => out.push(ProgressEvent::OpFinished {
                stage: stage + 1,
                seq: *seq,
                store: store.clone(),
                op: ops.get(seq).cloned().unwrap_or_default(),
                duration_ms: *duration_ms,
                attempts: *attempts,
                error: match result {
                    OpResult::Err { message, .. } => Some(message.clone()),
                    OpResult::Ok { .. } => None,
                },
            }),
            Record::CheckpointPassed {
                stage,
                duration_ms,
                observed,
                ..
            }
            | Record::CheckpointFailed {
                stage,
                duration_ms,
                observed,
                ..
            } => out.push(ProgressEvent::CheckpointFinished {
                stage: stage + 1,
                passed: matches!(r, Record::CheckpointPassed { .. }),
                duration_ms: *duration_ms,
                observed: observed.clone(),
            }),
            _ => {}
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Terminal {
    /// A line placed after the last line of `stage` (or at the bottom).
    fn place(&self, stage: usize, bar: ProgressBar) -> ProgressBar {
        let mut last = lock(&self.last);
        let bar = match last.get(&stage) {
            Some(after) => self.multi.insert_after(after, bar),
            None => self.multi.add(bar),
        };
        last.insert(stage, bar.clone());
        bar
    }

    fn with_row<R>(&self, stage: usize, store: &str, f: impl FnOnce(&mut Row) -> R) -> R {
        let mut rows = lock(&self.rows);
        let row = rows.entry((stage, store.to_string())).or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("  {spinner:.cyan} {prefix:<16} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(format!("{stage}. {store}"));
            let b = self.place(stage, b);
            b.enable_steady_tick(Duration::from_millis(100));
            Row {
                bar: b,
                done: Vec::new(),
                started: None,
            }
        });
        f(row)
    }
}

impl Reporter for Terminal {
    fn event(&self, ev: &ProgressEvent) {
        match ev {
            ProgressEvent::ExecutionStarted {
                execution_id,
                plan,
                fencing_token,
                resumed,
                ..
            } => {
                let verb = if *resumed { "Resuming" } else { "Executing" };
                let _ = self.multi.println(format!(
                    "{verb} {plan} — execution {execution_id}, fencing token {fencing_token}"
                ));
            }
            ProgressEvent::StageStarted {
                stage,
                name,
                stores,
            } => {
                let heading = ProgressBar::new(0);
                heading.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                let heading = self.place(*stage, heading);
                heading.finish_with_message(format!("Stage {stage}: {name}"));
                for s in stores {
                    self.with_row(*stage, s, |r| r.show(Some("waiting")));
                }
            }
            ProgressEvent::OpStarted {
                stage,
                store,
                description,
                ..
            } => self.with_row(*stage, store, |r| {
                r.started.get_or_insert_with(Instant::now);
                r.show(Some(&format!("{description} …")));
            }),
            ProgressEvent::OpFinished {
                stage,
                store,
                op,
                duration_ms,
                error,
                ..
            } => self.with_row(*stage, store, |r| {
                r.done.push(match error {
                    Some(e) => format!("✗ {op} failed after {duration_ms} ms: {e}"),
                    None => format!("✓ {op} {duration_ms} ms"),
                });
                r.show(None);
            }),
            ProgressEvent::CheckpointStarted { stage } => {
                let rows = lock(&self.rows);
                for ((s, _), r) in rows.iter() {
                    if s == stage && !r.bar.is_finished() {
                        r.show(Some("validating checkpoint …"));
                    }
                }
            }
            ProgressEvent::CheckpointFinished {
                stage,
                passed,
                duration_ms,
                observed,
            } => {
                for o in observed {
                    self.with_row(*stage, &o.store, |r| {
                        r.done.push(match &o.mismatch {
                            None => format!("✓ {} ({duration_ms} ms)", o.expected),
                            Some(m) => format!("✗ expected {}, observed: {m}", o.expected),
                        });
                    });
                }
                let rows = lock(&self.rows);
                for ((s, _), r) in rows.iter() {
                    if s != stage || r.bar.is_finished() {
                        continue;
                    }
                    let msg = format!("{}{}", r.elapsed(), r.done.join(" · "));
                    if *passed {
                        r.bar.finish_with_message(msg);
                    } else {
                        r.bar.abandon_with_message(msg);
                    }
                }
            }
            ProgressEvent::ExecutionEnded { status, reason, .. } => {
                // Whatever is still turning stops here, keeping what it did.
                for r in lock(&self.rows).values() {
                    if !r.bar.is_finished() {
                        // The verdict first: a long error must not push it
                        // off the edge of the terminal.
                        r.bar.abandon_with_message(format!(
                            "stopped: execution {status} · {}{}",
                            r.elapsed(),
                            r.done.join(" · ")
                        ));
                    }
                }
                let _ = self.multi.println(match reason {
                    Some(r) => format!("Execution {status}: {r}"),
                    None => format!("Execution {status}"),
                });
            }
        }
    }
}
