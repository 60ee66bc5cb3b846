//! The API of the commands that are more than one execution or end in a
//! verdict — abort, rollback, drill — and of `show` and `executions close`,
//! so `switchyard --server URL` carries every command the CLI has.
//!
//! Abort, rollback and drill run as a *job*: a task that drives the service
//! call with a sink of its own. Asked with `Accept: text/event-stream`, the
//! request's answer is that job's event stream — every progress event of
//! every execution it runs, with the same JSON as `--output json`, and a
//! last event that says how it ended (`abort_report`, `rollback_ended`,
//! `drill_report`, or `error`, an RFC 9457 problem). Without it, the answer
//! is `202` with the id of the first execution the job started.

use super::api::{accepted, find, refuse_or_redirect, sse_event, AppState};
use super::auth::Role;
use super::problem::Problem;
use super::views::{
    AbortPlanned, AbortReport, ClosedView, DrillPreview, DrillReport, ExecutionFinished,
    JournalView, RollbackAction, RollbackEnded, RollbackPreview,
};
use crate::progress::ProgressEvent;
use crate::service::{EventSink, Outcome, ServiceEvent};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc;
use utoipa::ToSchema;

type Shared = Arc<AppState>;

/// What a job sends its requester, in order.
#[derive(Debug)]
enum JobEvent {
    /// An event of one of the job's executions.
    Service(ServiceEvent),
    /// What the job decided before running anything: its SSE name and data.
    Note(&'static str, Value),
    /// The last event: its SSE name and data.
    End(&'static str, Value),
}

impl JobEvent {
    fn end(name: &'static str, data: impl Serialize) -> Self {
        JobEvent::End(name, serde_json::to_value(data).unwrap_or_default())
    }

    fn error(p: Problem) -> Self {
        Self::end("error", p)
    }
}

/// The job's sink: forwards every event to the requester (who may have
/// gone away: the job goes on), and keeps the server's view of what runs.
struct JobSink {
    tx: mpsc::UnboundedSender<JobEvent>,
    state: Shared,
}

impl EventSink for JobSink {
    fn send(&self, ev: &ServiceEvent) {
        match ev {
            ServiceEvent::Progress(ProgressEvent::ExecutionStarted { execution_id, .. }) => {
                *self.state.running.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(execution_id.clone());
            }
            ServiceEvent::Progress(ProgressEvent::ExecutionEnded {
                execution_id,
                status,
                ..
            }) => {
                let outcome = match status.as_str() {
                    "succeeded" => Outcome::Succeeded,
                    "refused" => Outcome::Refused,
                    "aborted" => Outcome::Aborted,
                    _ => Outcome::Failed,
                };
                self.state
                    .outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(execution_id.clone(), outcome);
            }
            _ => {}
        }
        let _ = self.tx.send(JobEvent::Service(ev.clone()));
    }
}

/// A job's channel and the sink that feeds it.
type JobChannel = (
    mpsc::UnboundedSender<JobEvent>,
    mpsc::UnboundedReceiver<JobEvent>,
    Arc<dyn EventSink>,
);

fn job_channel(s: &Shared) -> JobChannel {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(JobSink {
        tx: tx.clone(),
        state: s.clone(),
    });
    (tx, rx, sink)
}

/// Run `work` as a job; `running` names what runs until its first
/// execution starts. The job's last event is what `work` returns.
fn spawn_job<F, Fut>(
    s: &Shared,
    running: Option<String>,
    note: Option<JobEvent>,
    work: F,
) -> mpsc::UnboundedReceiver<JobEvent>
where
    F: FnOnce(Arc<dyn EventSink>) -> Fut,
    Fut: std::future::Future<Output = JobEvent> + Send + 'static,
{
    let (tx, rx, sink) = job_channel(s);
    if let Some(n) = note {
        let _ = tx.send(n);
    }
    if let Some(id) = running {
        *s.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }
    drive_job(s, tx, work(sink));
    rx
}

/// Drive a job's work in a task of its own; its last event is what the
/// work returns.
fn drive_job(
    s: &Shared,
    tx: mpsc::UnboundedSender<JobEvent>,
    fut: impl std::future::Future<Output = JobEvent> + Send + 'static,
) {
    let state = s.clone();
    tokio::spawn(async move {
        let end = fut.await;
        *state.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let JobEvent::End("error", v) = &end {
            tracing::error!(detail = %v["detail"], "job ended with an error");
        }
        let _ = tx.send(end);
    });
}

/// The requester asked for the job's event stream.
pub(super) fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The job's events as Server-Sent Events, ending with its last event.
fn stream(rx: mpsc::UnboundedReceiver<JobEvent>) -> Response {
    let events = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let ev = rx.recv().await?;
        let (event, last) = match ev {
            JobEvent::Service(ev) => (sse_event(&ev), false),
            JobEvent::Note(name, data) => (
                Event::default()
                    .event(name)
                    .json_data(data)
                    .unwrap_or_default(),
                false,
            ),
            JobEvent::End(name, data) => (
                Event::default()
                    .event(name)
                    .json_data(data)
                    .unwrap_or_default(),
                true,
            ),
        };
        Some((Ok::<_, Infallible>(event), (rx, last)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Without a stream: `202` with the first execution the job started, or, if
/// it ended before starting one, its last event (`200`, or the problem).
async fn first_answer(mut rx: mpsc::UnboundedReceiver<JobEvent>) -> Response {
    while let Some(ev) = rx.recv().await {
        match ev {
            JobEvent::Service(ServiceEvent::Progress(ProgressEvent::ExecutionStarted {
                execution_id,
                ..
            })) => return accepted(execution_id),
            JobEvent::Service(_) | JobEvent::Note(..) => {}
            JobEvent::End("error", v) => {
                return (
                    StatusCode::from_u16(v["status"].as_u64().unwrap_or(500) as u16)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    v.to_string(),
                )
                    .into_response()
            }
            JobEvent::End(_, v) => return Json(v).into_response(),
        }
    }
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "failed",
        "the job ended without a word",
    )
    .into_response()
}

/// Run a prepared execution as a job whose stream follows it to its very
/// end: with a plan's `on_failure = "rollback"`, through the rollback's own
/// execution too, ending with `execution_finished` ([`ExecutionFinished`]).
pub(super) fn run_stream(s: &Shared, pending: crate::service::Pending) -> Response {
    let state = s.clone();
    let rx = spawn_job(s, None, None, move |sink| {
        let launched = state.service.launch(pending, sink);
        async move {
            match launched {
                Ok(l) => run_launched(state, l).await,
                Err(e) => JobEvent::error(state.problem(e)),
            }
        }
    });
    stream(rx)
}

/// `POST /v1/executions/{id}/resume` asked for a stream: resume `id` as a
/// job followed to its very end, as [`run_stream`] follows a start — with a
/// plan's `on_failure = "rollback"`, through the rollback too, so the
/// server's resume does what local `resume` does. A resume that is refused
/// answers the problem, as without a stream.
pub(super) async fn resume_stream(s: &Shared, id: String) -> Response {
    let (tx, rx, sink) = job_channel(s);
    match s.service.resume(Some(id), sink).await {
        Ok(l) => {
            drive_job(s, tx, run_launched(s.clone(), l));
            stream(rx)
        }
        Err(e) => s.problem(e).into_response(),
    }
}

/// Drive a launched execution to its very end, recorded in the backend
/// like any start (so a new leader resumes it if this one dies
/// mid-execution); the job's last event is `execution_finished`.
async fn run_launched(state: Shared, l: crate::service::Launched) -> JobEvent {
    *state.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(l.id().to_string());
    let finished = match state.claim(l.id(), l.token().get()).await {
        Ok(claim) => {
            let f = l.run().await;
            state.release(&claim).await;
            f
        }
        Err(p) => return JobEvent::error(p),
    };
    match finished {
        Ok(f) => JobEvent::end(
            "execution_finished",
            ExecutionFinished {
                execution_id: f.id,
                outcome: f.outcome,
                reason: f.reason,
            },
        ),
        Err(e) => JobEvent::error(state.problem(e)),
    }
}

async fn answer(headers: &HeaderMap, rx: mpsc::UnboundedReceiver<JobEvent>) -> Response {
    if wants_stream(headers) {
        stream(rx)
    } else {
        first_answer(rx).await
    }
}

/// Abort an execution: planned from its journal and what the stores show
/// now, run as an execution of its own. Without a stream, answers `202`
/// once the abort is decided (`id` is the aborted execution's).
#[utoipa::path(post, path = "/v1/executions/{id}/abort", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), responses(
    (status = 202, body = super::api::Accepted, description = "the abort runs; the id is the aborted execution's"),
    (status = 200, content_type = "text/event-stream", description = "with `Accept: text/event-stream`: `abort_planned` (AbortPlanned), the abort's progress events and report, then `abort_report` (AbortReport) or `error` (Problem)"),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn abort(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse_or_redirect(&s, &headers, &uri, Role::Operator) {
        return r;
    }
    let caller = match s.authorize(&headers, Role::Operator) {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    // The aborted execution itself may be the recorded one (its leader
    // died): anything else recorded is running elsewhere.
    let _gate = match s.exclusive(Some(&id)).await {
        Ok(g) => g,
        Err(p) => return p.into_response(),
    };
    let pending = match s.service.prepare_abort(Some(id.clone())).await {
        Ok(p) => p.started_by(caller.identity()),
        Err(e) => return s.problem(e).into_response(),
    };
    let note = JobEvent::Note(
        "abort_planned",
        serde_json::to_value(AbortPlanned::of(&pending)).unwrap_or_default(),
    );
    let state = s.clone();
    let aborted = id.clone();
    let rx = spawn_job(&s, Some(id.clone()), Some(note), move |sink| async move {
        let r = state.service.abort(pending, sink).await;
        // The aborted execution ended: if it was recorded as running (its
        // leader died), no leader is to resume it.
        if let Some(l) = state.election.leadership() {
            state.clear_record(&l, &aborted).await;
        }
        match r {
            Ok(done) => JobEvent::end("abort_report", AbortReport::of(&done)),
            Err(e) => JobEvent::error(state.problem(e)),
        }
    });
    if wants_stream(&headers) {
        stream(rx)
    } else {
        accepted(id)
    }
}

/// Plan timeouts, and whether only to plan.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// How long each stage may take (ms).
    pub stage_timeout_ms: Option<u64>,
    /// How long the origin may take to replay the fenced primary's final position (ms).
    pub catch_up_timeout_ms: Option<u64>,
    /// The member to return to (`--candidate`): `"MEMBER"` or
    /// `"STORE=MEMBER"`, or a list (one per store); an electable member of
    /// the region the store started in. Default: the member the execution
    /// moved from.
    pub candidate: Option<super::api::CandidateBody>,
    /// Only plan: answer `200` with the preview, run nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A drill to plan or run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillBody {
    /// Region to move to and back from.
    pub to: String,
    /// How long each stage may take (ms).
    pub stage_timeout_ms: Option<u64>,
    /// How long a store may take to replay the fenced primary's final position (ms).
    pub catch_up_timeout_ms: Option<u64>,
    /// The member to promote on the way out (`--candidate`), as in
    /// `POST /v1/executions`; the way back chooses as always.
    pub candidate: Option<super::api::CandidateBody>,
    /// Only plan: answer `200` with the plan out, run nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A request body as `T`; a bad one is a 400 naming what is wrong.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("request body: {e}"),
        )
    })
}

/// [`parse_json`], where an empty body means every default.
fn body_of<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}

/// A timeout field of a request: `default` when absent, a 400 outside
/// what a plan allows.
pub(super) fn timeout(v: Option<u64>, default: u64, field: &str) -> Result<u64, Problem> {
    match v {
        None => Ok(default),
        Some(v) if (1..=crate::plan::MAX_TIMEOUT_MS).contains(&v) => Ok(v),
        Some(v) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "`{field}`: {v} is outside 1..={}",
                crate::plan::MAX_TIMEOUT_MS
            ),
        )),
    }
}

/// Roll an execution back: every store it moved returns to the region it
/// started in, planned from its journal and what the stores show now, run
/// as an execution of its own; `422` naming the store when the way back
/// would lose data.
#[utoipa::path(post, path = "/v1/executions/{id}/rollback", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), request_body = RollbackBody, responses(
    (status = 200, body = RollbackPreview, description = "`dry_run`: the plan; or, without a stream, nothing had to run (RollbackEnded); with `Accept: text/event-stream`: `rollback_planned` (as a plan's on_failure rollback sends it), progress events and report, then `rollback_ended` (RollbackEnded) or `error`"),
    (status = 202, body = super::api::Accepted, description = "the rollback's execution runs"),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn rollback(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse_or_redirect(&s, &headers, &uri, Role::Operator) {
        return r;
    }
    let r = async {
        let b: RollbackBody = body_of(&body)?;
        let t = crate::rollback::Timeouts {
            stage_ms: timeout(
                b.stage_timeout_ms,
                crate::plan::DEFAULT_STAGE_TIMEOUT_MS,
                "stage_timeout_ms",
            )?,
            catch_up_ms: timeout(b.catch_up_timeout_ms, 60_000, "catch_up_timeout_ms")?,
        };
        let _gate = match s.exclusive(None).await {
            Ok(g) => g,
            Err(p) => return Err(p),
        };
        let pending = s
            .service
            .prepare_rollback(Some(id.clone()), t, &super::api::candidates(&b.candidate))
            .await
            .map_err(|e| s.problem(e))?;
        let preview = RollbackPreview {
            execution_id: pending.id.clone(),
            stores: crate::service::rollback_actions(&pending.planned)
                .into_iter()
                .map(|(store, action)| RollbackAction { store, action })
                .collect(),
            plan: pending.planned.plan.clone(),
        };
        if b.dry_run {
            return Ok(Json(preview).into_response());
        }
        let state = s.clone();
        let subject = id.clone();
        // The same event a plan's `on_failure = "rollback"` sends.
        let note = JobEvent::Service(ServiceEvent::RollbackPlanned {
            execution_id: pending.id.clone(),
            stores: crate::service::rollback_actions(&pending.planned),
        });
        let rx = spawn_job(&s, Some(id.clone()), Some(note), move |sink| async move {
            match state.service.rollback(pending, sink).await {
                Ok(done) => JobEvent::end(
                    "rollback_ended",
                    RollbackEnded {
                        execution_id: subject,
                        rollback_execution_id: done.as_ref().map(|f| f.id.clone()),
                        outcome: done.map(|f| f.outcome),
                    },
                ),
                Err(e) => JobEvent::error(state.problem(e)),
            }
        });
        Ok(answer(&headers, rx).await)
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

/// A drill: fail every store over to `to`, verify by a fresh observation,
/// fail back; both legs are executions of their own.
#[utoipa::path(post, path = "/v1/drills", security(("bearer" = [])), request_body = DrillBody, responses(
    (status = 200, body = DrillPreview, description = "`dry_run`: the plan out; with `Accept: text/event-stream`: the progress events and reports of both legs, then `drill_report` (DrillReport) or `error`"),
    (status = 202, body = super::api::Accepted, description = "the way out runs"),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn drill(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse_or_redirect(&s, &headers, &uri, Role::Operator) {
        return r;
    }
    let r = async {
        let b: DrillBody = parse_json(&body)?;
        let stage = timeout(
            b.stage_timeout_ms,
            crate::plan::DEFAULT_STAGE_TIMEOUT_MS,
            "stage_timeout_ms",
        )?;
        let catch_up = timeout(b.catch_up_timeout_ms, 60_000, "catch_up_timeout_ms")?;
        let _gate = match s.exclusive(None).await {
            Ok(g) => g,
            Err(p) => return Err(p),
        };
        let pending = s
            .service
            .prepare_drill(
                &b.to,
                stage,
                catch_up,
                &super::api::candidates(&b.candidate),
            )
            .await
            .map_err(|e| s.problem(e))?;
        if b.dry_run {
            return Ok(Json(DrillPreview {
                from: pending.origin.clone(),
                to: pending.to.clone(),
                plan: pending.out.clone(),
            })
            .into_response());
        }
        let state = s.clone();
        let rx = spawn_job(&s, None, None, move |sink| async move {
            match state.service.drill(pending, sink).await {
                Ok(d) => JobEvent::end("drill_report", DrillReport::of(&d)),
                Err(e) => JobEvent::error(state.problem(e)),
            }
        });
        Ok(answer(&headers, rx).await)
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

/// One execution's journal, as far as it can be read, and its report
/// (`latest`: the newest execution).
#[utoipa::path(get, path = "/v1/executions/{id}/journal", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id, or `latest`")), responses(
    (status = 200, body = JournalView),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn journal(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = (|| {
        s.authorize(&headers, Role::Viewer)?;
        if id != "latest" {
            find(&s, &id)?;
        }
        let shown = s.service.show(&id).map_err(|e| s.problem(e))?;
        Ok(Json(JournalView {
            id: shown.id,
            report: shown.report,
            journal: shown.records,
            damage: shown.damage,
        })
        .into_response())
    })();
    r.unwrap_or_else(|p: Problem| p.into_response())
}

/// Why closing is safe.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// What was checked on the stores (journaled).
    pub reason: String,
}

/// End an execution that can be neither resumed nor aborted (its journal is
/// damaged, or a later execution superseded it), journaling why; nothing is
/// issued to any store.
#[utoipa::path(post, path = "/v1/executions/{id}/close", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), request_body = CloseBody, responses(
    (status = 200, body = ClosedView),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn close(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse_or_redirect(&s, &headers, &uri, Role::Operator) {
        return r;
    }
    let r = async {
        let b: CloseBody = parse_json(&body)?;
        let _gate = s.gate.lock().await;
        let closed = s.service.close(&id, &b.reason).map_err(|e| s.problem(e))?;
        Ok(Json(ClosedView {
            execution_id: closed.id,
            status: "closed".into(),
            reason: closed.reason,
            damage: closed.damage,
        })
        .into_response())
    };
    r.await.unwrap_or_else(|p: Problem| p.into_response())
}
