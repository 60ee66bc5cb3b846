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
        /// Started by an earlier coordinator process of this execution
        /// (replayed from the journal when it resumes); absent: live.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        before_resume: bool,
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
        /// Finished under an earlier coordinator process of this execution
        /// (replayed from the journal when it resumes: not issued again);
        /// absent: live.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        before_resume: bool,
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
        /// Validated by an earlier coordinator process of this execution
        /// (replayed from the journal when it resumes); absent: live.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        before_resume: bool,
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
        crate::output::printed();
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
            ProgressEvent::StageStarted {
                stage,
                name,
                before_resume,
                ..
            } => format!(
                "Stage {stage}: {name}{}",
                earlier(*before_resume, " (before the resume)")
            ),
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
                before_resume,
                ..
            } => {
                let when = earlier(*before_resume, ", before the resume");
                match error {
                    None => format!("  [{stage}] #{seq} {store}: ✓ {op} ({duration_ms} ms{when})"),
                    Some(e) => {
                        format!("  [{stage}] #{seq} {store}: ✗ {op} ({duration_ms} ms{when}): {e}")
                    }
                }
            }
            ProgressEvent::CheckpointStarted { stage } => {
                format!("  [{stage}] validating checkpoint …")
            }
            ProgressEvent::CheckpointFinished {
                stage,
                duration_ms,
                observed,
                before_resume,
                ..
            } => {
                let when = earlier(*before_resume, ", before the resume");
                let mut s = String::new();
                for o in observed {
                    if !s.is_empty() {
                        s.push('\n');
                    }
                    s.push_str(&match &o.mismatch {
                        None => format!(
                            "  [{stage}] {}: ✓ {} ({duration_ms} ms{when})",
                            o.store, o.expected
                        ),
                        Some(m) => format!(
                            "  [{stage}] {}: ✗ expected {}, observed: {m}{when}",
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

/// `mark` for what an earlier process did (replayed on resume), else nothing.
fn earlier(before_resume: bool, mark: &str) -> &str {
    if before_resume {
        mark
    } else {
        ""
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A row per stage and store on a terminal, under its stage's heading, in
/// plan order, while the stage runs; when its checkpoint ends the stage is
/// printed once, in full (every operation with its name and time, the
/// checkpoint, the stage's elapsed time, wrapped to the terminal's width),
/// and its spinners are gone: a failure or the execution's end stops every
/// spinner, never leaving one frozen mid-turn. Live lines are cut to the
/// terminal's width, so a long one never wraps and throws the redraw off.
pub struct Terminal {
    multi: MultiProgress,
    width: usize,
    stages: Mutex<BTreeMap<usize, Stage>>,
}

/// One stage on screen.
struct Stage {
    name: String,
    heading: ProgressBar,
    started: Instant,
    /// Known only from the journal so far: an earlier process of the
    /// execution ran it (this one has not started it).
    before_resume: bool,
    /// Stores in the order the plan names them.
    order: Vec<String>,
    rows: BTreeMap<String, Row>,
}

/// One store's line within a stage.
struct Row {
    bar: ProgressBar,
    done: Vec<String>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").finish_non_exhaustive()
    }
}

impl Default for Terminal {
    fn default() -> Self {
        let multi = MultiProgress::new();
        *lock(&LIVE) = Some(multi.clone());
        Terminal {
            multi,
            width: crate::width::stderr_columns(),
            stages: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        *lock(&LIVE) = None;
    }
}

/// The progress lines on screen now, if any: log lines go above them.
static LIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Where log lines go: stderr, above the live progress lines while a
/// [`Terminal`] draws them. A line written past them would sit inside the
/// area indicatif redraws, and every redraw after it would leave a stale
/// copy of the progress on screen.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One log line on its way to stderr.
#[derive(Debug, Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&line);
            let _ = err.flush();
        };
        let live = lock(&LIVE).clone();
        match live {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine::default()
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
                    before_resume: false,
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
                before_resume: false,
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
                before_resume: false,
            }),
            _ => {}
        }
    }
    out
}

/// What earlier coordinator processes of an execution did, from its
/// journal, as the events they reported, each marked `before_resume`: what
/// a resumed execution shows before it continues live. Every stage they
/// started (once), every operation that finished with its time, attempts
/// and outcome, every checkpoint validated. An operation journaled as
/// issued without an outcome is left out: the resume issues it again, live.
pub fn before_resume(records: &[crate::journal::Record]) -> Vec<ProgressEvent> {
    let mut open: Option<usize> = None;
    let mut out = vec![];
    for mut ev in replay(records) {
        match &mut ev {
            ProgressEvent::StageStarted {
                stage,
                before_resume,
                ..
            } => {
                // Each process journals the stage it starts in again.
                if open == Some(*stage) {
                    continue;
                }
                open = Some(*stage);
                *before_resume = true;
            }
            ProgressEvent::OpFinished { before_resume, .. } => *before_resume = true,
            ProgressEvent::CheckpointFinished { before_resume, .. } => {
                open = None;
                *before_resume = true;
            }
            _ => continue,
        }
        out.push(ev);
    }
    out
}

/// Width of the row prefix (`3. sessions`), padded.
const PREFIX: usize = 16;

impl Terminal {
    /// Lines printed above the live ones, each wrapped to the width.
    fn print(&self, text: &str) {
        let fitted = crate::width::fit_block(text, self.width.saturating_sub(1));
        let _ = self.multi.println(fitted.trim_end_matches('\n'));
    }

    /// A live row's message cut to what is left of the line after the
    /// spinner and the prefix.
    fn show(&self, row: &Row, now: Option<&str>) {
        let mut parts = row.done.clone();
        if let Some(n) = now {
            parts.push(n.to_string());
        }
        let room = self.width.saturating_sub(4 + PREFIX + 2).max(10);
        row.bar
            .set_message(crate::width::truncate(&parts.join(" · "), room));
    }

    fn stage<'a>(
        &self,
        stages: &'a mut BTreeMap<usize, Stage>,
        stage: usize,
        name: &str,
    ) -> &'a mut Stage {
        stages.entry(stage).or_insert_with(|| {
            // Into the multi before anything is set on it: a bar draws on
            // its own (straight to stderr, uncounted by the multi's redraw)
            // until it belongs to one, and each such line stayed on screen.
            let heading = self.multi.add(ProgressBar::hidden());
            heading.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            heading.set_message(crate::width::truncate(
                &format!("Stage {stage}: {name}"),
                self.width.saturating_sub(1),
            ));
            Stage {
                name: name.to_string(),
                heading,
                started: Instant::now(),
                before_resume: false,
                order: Vec::new(),
                rows: BTreeMap::new(),
            }
        })
    }

    fn with_row<R>(&self, stage: usize, store: &str, f: impl FnOnce(&Self, &mut Row) -> R) -> R {
        let mut stages = lock(&self.stages);
        let st = self.stage(&mut stages, stage, "");
        if !st.rows.contains_key(store) {
            // One stage is live at a time (stages run in order), so its
            // rows go at the bottom, under its heading; into the multi
            // first, as the heading.
            let b = self.multi.add(ProgressBar::hidden());
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "  {{spinner:.cyan}} {{prefix:<{PREFIX}}} {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(format!("{stage}. {store}"));
            b.enable_steady_tick(Duration::from_millis(100));
            st.order.push(store.to_string());
            st.rows.insert(
                store.to_string(),
                Row {
                    bar: b,
                    done: Vec::new(),
                },
            );
        }
        let row = st.rows.get_mut(store).expect("inserted above");
        f(self, row)
    }

    /// The stage, done: its live lines replaced by the full record of it.
    fn close(&self, stage: usize, st: Stage, verdict: &str) {
        // A stage an earlier process ran has no elapsed time in this one;
        // its operations carry theirs.
        let mut text = if st.before_resume {
            format!("Stage {stage}: {} — {verdict} before the resume\n", st.name)
        } else {
            format!(
                "Stage {stage}: {} — {verdict} in {:.1} s\n",
                st.name,
                st.started.elapsed().as_secs_f64()
            )
        };
        for store in &st.order {
            if let Some(r) = st.rows.get(store) {
                r.bar.finish_and_clear();
                self.multi.remove(&r.bar);
                let done = if r.done.is_empty() {
                    "nothing done".to_string()
                } else {
                    r.done.join(" · ")
                };
                text.push_str(&crate::width::wrap(
                    &done,
                    &format!("  {:<w$} ", format!("{stage}. {store}"), w = PREFIX + 2),
                    &" ".repeat(PREFIX + 5),
                    self.width.saturating_sub(1),
                ));
            }
        }
        st.heading.finish_and_clear();
        self.multi.remove(&st.heading);
        self.print(&text);
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
                self.print(&format!(
                    "{verb} {plan} — execution {execution_id}, fencing token {fencing_token}"
                ));
            }
            ProgressEvent::StageStarted {
                stage,
                name,
                stores,
                before_resume,
            } => {
                {
                    let mut stages = lock(&self.stages);
                    let st = self.stage(&mut stages, *stage, name);
                    st.name.clone_from(name);
                    if st.before_resume && !before_resume {
                        // This process takes the stage up: its time from now.
                        st.started = Instant::now();
                    }
                    st.before_resume = *before_resume;
                    st.heading.set_message(crate::width::truncate(
                        &format!("Stage {stage}: {name}"),
                        self.width.saturating_sub(1),
                    ));
                }
                for s in stores {
                    self.with_row(*stage, s, |t, r| t.show(r, Some("waiting")));
                }
            }
            ProgressEvent::OpStarted {
                stage,
                store,
                description,
                ..
            } => self.with_row(*stage, store, |t, r| {
                t.show(r, Some(&format!("{description} …")));
            }),
            ProgressEvent::OpFinished {
                stage,
                store,
                op,
                duration_ms,
                error,
                before_resume,
                ..
            } => self.with_row(*stage, store, |t, r| {
                let when = earlier(*before_resume, " (before the resume)");
                r.done.push(match error {
                    Some(e) => format!("✗ {op} failed after {duration_ms} ms{when}: {e}"),
                    None => format!("✓ {op} {duration_ms} ms{when}"),
                });
                t.show(r, None);
            }),
            ProgressEvent::CheckpointStarted { stage } => {
                let stages = lock(&self.stages);
                if let Some(st) = stages.get(stage) {
                    for r in st.rows.values() {
                        self.show(r, Some("validating checkpoint …"));
                    }
                }
            }
            ProgressEvent::CheckpointFinished {
                stage,
                passed,
                duration_ms,
                observed,
                ..
            } => {
                for o in observed {
                    self.with_row(*stage, &o.store, |_, r| {
                        r.done.push(match &o.mismatch {
                            None => format!("✓ {} ({duration_ms} ms)", o.expected),
                            Some(m) => format!("✗ expected {}, observed: {m}", o.expected),
                        });
                    });
                }
                let st = lock(&self.stages).remove(stage);
                if let Some(st) = st {
                    let verdict = if *passed {
                        "checkpoint passed"
                    } else {
                        "checkpoint failed"
                    };
                    self.close(*stage, st, verdict);
                }
            }
            ProgressEvent::ExecutionEnded { status, reason, .. } => {
                // Whatever is still turning stops here, keeping what it did.
                let open = std::mem::take(&mut *lock(&self.stages));
                for (stage, st) in open {
                    self.close(stage, st, &format!("stopped: execution {status}"));
                }
                self.print(&match reason {
                    Some(r) => format!("Execution {status}: {r}"),
                    None => format!("Execution {status}"),
                });
            }
        }
    }
}
