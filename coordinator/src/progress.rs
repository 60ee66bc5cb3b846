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
use std::time::Duration;

/// One thing that happened during an execution.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ProgressEvent {
    /// An execution started or resumed.
    ExecutionStarted {
        /// Execution id.
        execution_id: String,
        /// Plan title.
        plan: String,
        /// Fencing epoch.
        epoch: u64,
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

impl Reporter for JsonLines {
    fn event(&self, ev: &ProgressEvent) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, ev);
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
                epoch,
                resumed,
                ..
            } => format!(
                "{} {plan} — execution {execution_id}, fencing epoch {epoch}",
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

/// A spinner per stage and store on a terminal.
pub struct Terminal {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<(usize, String), ProgressBar>>,
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
            bars: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Terminal {
    fn bar(&self, stage: usize, store: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry((stage, store.to_string()))
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template(
                        "  {spinner:.cyan} {prefix:<16} {wide_msg} {elapsed:>4}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix(format!("{stage}. {store}"));
                b.enable_steady_tick(Duration::from_millis(100));
                b
            })
            .clone()
    }
}

impl Reporter for Terminal {
    fn event(&self, ev: &ProgressEvent) {
        match ev {
            ProgressEvent::ExecutionStarted {
                execution_id,
                plan,
                epoch,
                resumed,
                ..
            } => {
                let verb = if *resumed { "Resuming" } else { "Executing" };
                let _ = self.multi.println(format!(
                    "{verb} {plan} — execution {execution_id}, fencing epoch {epoch}"
                ));
            }
            ProgressEvent::StageStarted {
                stage,
                name,
                stores,
            } => {
                let _ = self.multi.println(format!("Stage {stage}: {name}"));
                for s in stores {
                    self.bar(*stage, s).set_message("waiting");
                }
            }
            ProgressEvent::OpStarted {
                stage,
                store,
                description,
                ..
            } => self
                .bar(*stage, store)
                .set_message(format!("{description} …")),
            ProgressEvent::OpFinished {
                stage,
                store,
                op,
                duration_ms,
                error,
                ..
            } => {
                let b = self.bar(*stage, store);
                match error {
                    Some(e) => b.set_message(format!("✗ {op} failed after {duration_ms} ms: {e}")),
                    None => b.set_message(format!("✓ {op} ({duration_ms} ms)")),
                }
            }
            ProgressEvent::CheckpointStarted { stage } => {
                let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                for ((s, _), b) in bars.iter() {
                    if s == stage {
                        b.set_message("validating checkpoint …");
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
                    let b = self.bar(*stage, &o.store);
                    let msg = match &o.mismatch {
                        None => format!("✓ {} ({duration_ms} ms)", o.expected),
                        Some(m) => format!("✗ expected {}, observed: {m}", o.expected),
                    };
                    if *passed {
                        b.finish_with_message(msg);
                    } else {
                        b.abandon_with_message(msg);
                    }
                }
                let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                for ((s, _), b) in bars.iter() {
                    if s == stage && !b.is_finished() {
                        b.finish();
                    }
                }
            }
            ProgressEvent::ExecutionEnded { status, reason, .. } => {
                let _ = self.multi.println(match reason {
                    Some(r) => format!("Execution {status}: {r}"),
                    None => format!("Execution {status}"),
                });
            }
        }
    }
}
