//! Prometheus `/metrics`, in the text exposition format: executions by
//! outcome, stage and operation durations, observation age and errors per
//! store, leadership. Nothing here carries a secret: labels are store, stage,
//! operation and outcome names only.

use super::observer::Snapshot;
use crate::journal::now_ms;
use crate::progress::ProgressEvent;
use crate::service::{Published, ServiceEvent};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let trimmed = labels.trim_end_matches(',');
        let l = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{{{trimmed}}}")
        };
        let _ = writeln!(out, "{name}_sum{l} {}", self.sum);
        let _ = writeln!(out, "{name}_count{l} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    executions: BTreeMap<String, u64>,
    stages: BTreeMap<String, Histogram>,
    operations: BTreeMap<(String, String), Histogram>,
    observed_ok_ms: BTreeMap<String, u64>,
    observe_errors: BTreeMap<String, u64>,
    leader: bool,
    requests: BTreeMap<(String, u16), u64>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Count an execution's events (operation durations, outcomes, stages).
    pub fn event(&self, p: &Published) {
        self.with(|m| match &p.event {
            // Counted when they happened, not again when a resume replays them.
            ServiceEvent::Progress(ProgressEvent::OpFinished {
                store,
                op,
                duration_ms,
                before_resume: false,
                ..
            }) => m
                .operations
                .entry((store.clone(), op.clone()))
                .or_default()
                .observe(*duration_ms as f64 / 1000.0),
            ServiceEvent::Progress(ProgressEvent::ExecutionEnded { status, .. }) => {
                *m.executions.entry(status.clone()).or_default() += 1;
            }
            ServiceEvent::Report { report, .. } => {
                for s in &report.stages {
                    m.stages
                        .entry(s.name.clone())
                        .or_default()
                        .observe(s.stage_wall_us as f64 / 1e6);
                }
            }
            _ => {}
        })
    }

    /// Record a round of the observer.
    pub fn observed(&self, snap: &Snapshot) {
        self.with(|m| {
            for s in &snap.stores {
                m.observe_errors.entry(s.store.clone()).or_default();
                if s.error.is_some() {
                    *m.observe_errors.entry(s.store.clone()).or_default() += 1;
                } else {
                    m.observed_ok_ms
                        .insert(s.store.clone(), snap.observed_at_ms);
                }
            }
        })
    }

    /// Whether this server leads.
    pub fn leader(&self, leads: bool) {
        self.with(|m| m.leader = leads)
    }

    /// Count a request by route and status.
    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_string(), status)).or_default() += 1)
    }

    /// The text exposition.
    pub fn render(&self, stores: &[String]) -> String {
        let now = now_ms();
        self.with(|m| {
            let mut o = String::new();
            o.push_str("# HELP switchyard_executions_total Executions ended by this server, by outcome.\n# TYPE switchyard_executions_total counter\n");
            for (k, v) in &m.executions {
                let _ = writeln!(o, "switchyard_executions_total{{outcome=\"{}\"}} {v}", esc(k));
            }
            o.push_str("# HELP switchyard_stage_duration_seconds Wall time of execution stages.\n# TYPE switchyard_stage_duration_seconds histogram\n");
            for (k, h) in &m.stages {
                h.render(&mut o, "switchyard_stage_duration_seconds", &format!("stage=\"{}\",", esc(k)));
            }
            o.push_str("# HELP switchyard_operation_duration_seconds Time inside store operations.\n# TYPE switchyard_operation_duration_seconds histogram\n");
            for ((s, op), h) in &m.operations {
                h.render(
                    &mut o,
                    "switchyard_operation_duration_seconds",
                    &format!("store=\"{}\",op=\"{}\",", esc(s), esc(op)),
                );
            }
            o.push_str("# HELP switchyard_observation_age_seconds Age of the last successful observation per store (absent: never observed).\n# TYPE switchyard_observation_age_seconds gauge\n");
            for s in stores {
                if let Some(at) = m.observed_ok_ms.get(s) {
                    let _ = writeln!(
                        o,
                        "switchyard_observation_age_seconds{{store=\"{}\"}} {}",
                        esc(s),
                        now.saturating_sub(*at) as f64 / 1000.0
                    );
                }
            }
            o.push_str("# HELP switchyard_observation_errors_total Failed observations per store.\n# TYPE switchyard_observation_errors_total counter\n");
            for s in stores {
                let _ = writeln!(
                    o,
                    "switchyard_observation_errors_total{{store=\"{}\"}} {}",
                    esc(s),
                    m.observe_errors.get(s).copied().unwrap_or(0)
                );
            }
            o.push_str("# HELP switchyard_leader Whether this server is the leader (1) or not (0).\n# TYPE switchyard_leader gauge\n");
            let _ = writeln!(o, "switchyard_leader {}", u8::from(m.leader));
            o.push_str("# HELP switchyard_http_requests_total Requests by route and status.\n# TYPE switchyard_http_requests_total counter\n");
            for ((r, s), v) in &m.requests {
                let _ = writeln!(
                    o,
                    "switchyard_http_requests_total{{route=\"{}\",status=\"{s}\"}} {v}",
                    esc(r)
                );
            }
            o
        })
    }
}
