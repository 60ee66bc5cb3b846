//! The versioned JSON API under `/v1`, plus `/healthz`, `/readyz` and
//! `/metrics`. Handlers are adapters over the [`Service`]: they check the
//! caller's role, send mutating requests to the leader, and translate typed
//! results into status codes. See docs/server.md.

use super::auth::{Caller, Role, Tokens};
use super::metrics::Metrics;
use super::observer::{Observer, Snapshot};
use super::problem::Problem;
use super::{commands, views};
use crate::backend::Campaigner;
use crate::journal::ExecutionStatus;
use crate::plan::Mode;
use crate::service::{
    Discard, ErrorKind, Outcome, PlanRequest, Published, Service, ServiceEvent, StartRequest,
};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use switchyard_coordination::{CoordinationError, RunningExecution};
use utoipa::{OpenApi, ToSchema};

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The application.
    pub service: Service,
    /// Accepted bearer tokens (replaced on SIGHUP).
    pub tokens: RwLock<Arc<Tokens>>,
    /// Last-known state of every store.
    pub observer: Arc<Observer>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Who leads: this server's standing in the coordination backend's
    /// election (its leadership, when it leads).
    pub election: Arc<Campaigner>,
    /// Serialises mutating requests, so a second start sees the first one's
    /// execution id (and answers 409 naming it) rather than a half-started one.
    pub gate: tokio::sync::Mutex<()>,
    /// The execution this server is driving now.
    pub running: Mutex<Option<String>>,
    /// How executions this server drove ended (more precise than the
    /// journal for a refused one, which the journal only shows as closed).
    pub outcomes: Mutex<BTreeMap<String, Outcome>>,
    /// Events of the executions this server drove, so a subscriber that
    /// comes late still gets everything from the start.
    pub log: Mutex<EventLog>,
    /// `--anonymous-read`: a request without a token may read (viewer);
    /// anything that changes state still needs a token with its role.
    pub anonymous_read: bool,
}

/// The events of the last few executions, and their live feed.
#[derive(Debug)]
pub struct EventLog {
    by_execution: BTreeMap<String, Vec<ServiceEvent>>,
    feed: tokio::sync::broadcast::Sender<Published>,
}

/// How many executions' events are kept.
const KEPT: usize = 16;

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            by_execution: BTreeMap::new(),
            feed: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl EventLog {
    /// Keep `p` and pass it on to live subscribers (under one lock, so a
    /// subscriber sees each event exactly once: in the backlog or live).
    pub fn push(&mut self, p: Published) {
        if !self.by_execution.contains_key(&p.execution_id) && self.by_execution.len() >= KEPT {
            // Ids start with a UTC timestamp: the first is the oldest.
            let oldest = self.by_execution.keys().next().cloned();
            if let Some(k) = oldest {
                self.by_execution.remove(&k);
            }
        }
        self.by_execution
            .entry(p.execution_id.clone())
            .or_default()
            .push(p.event.clone());
        let _ = self.feed.send(p);
    }

    /// How execution `id` ended, when its report is the last thing
    /// published for it: the job that ran it may still be winding down
    /// (releasing its claim), but the execution itself is over. Anything
    /// after the report (a resume's events) means it runs again.
    fn reported(&self, id: &str) -> Option<ExecutionStatus> {
        match self.by_execution.get(id)?.last()? {
            ServiceEvent::Report { report, .. } if report.id == id => Some(report.status),
            _ => None,
        }
    }
}

impl AppState {
    pub(super) fn authorize(&self, headers: &HeaderMap, need: Role) -> Result<Caller, Problem> {
        let Some(v) = headers.get(header::AUTHORIZATION) else {
            if self.anonymous_read && need == Role::Viewer {
                return Ok(Caller {
                    token: "anonymous".into(),
                    name: "anonymous".into(),
                    role: Role::Viewer,
                });
            }
            return Err(Problem::unauthorized(
                "no bearer token: send `Authorization: Bearer <token>` (`switchyard token create`)",
            ));
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let caller = tokens
            .check(token)
            .ok_or_else(|| Problem::unauthorized("unknown bearer token"))?;
        if caller.role < need {
            return Err(Problem::forbidden(format!(
                "token {} has role {}; this needs {need}",
                caller.token, caller.role
            )));
        }
        Ok(caller)
    }

    /// `None` on the leader; a follower's answer otherwise: 307 to the
    /// leader (same path), or 503 while nobody leads.
    fn leader_only(&self, uri: &Uri) -> Option<Response> {
        if self.election.leads() {
            return None;
        }
        match self.election.leader().map(|l| l.node) {
            Some(l) => {
                let target = format!(
                    "{}{}",
                    l.url.trim_end_matches('/'),
                    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
                );
                Some(
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, target)],
                        Json(json!({"leader": l})),
                    )
                        .into_response(),
                )
            }
            None => Some(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no-leader",
                    format!(
                        "no server leads on {} right now; retry",
                        self.election.describe()
                    ),
                )
                .into_response(),
            ),
        }
    }

    pub(super) fn running(&self) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn busy(&self, id: &str) -> Problem {
        let mut p = Problem::new(
            StatusCode::CONFLICT,
            "busy",
            format!("execution {id} is running; one execution at a time"),
        );
        p.running_execution = Some(id.to_string());
        p
    }

    /// A service error as a problem; a lock conflict names the running
    /// execution when this server runs one.
    pub(super) fn problem(&self, e: crate::service::ServiceError) -> Problem {
        let locked = e.kind == ErrorKind::Locked;
        let mut p = Problem::from(e);
        if locked {
            if let Some(id) = self.running() {
                p.detail = format!("execution {id} is running; {}", p.detail);
                p.running_execution = Some(id);
            }
        }
        p
    }

    /// The execution the backend records as running, read now (not the
    /// cached copy): a start is refused while it names one.
    async fn recorded_running(&self) -> Result<Option<RunningExecution>, Problem> {
        self.election
            .backend()
            .running()
            .await
            .map(|r| r.map(|v| v.value))
            .map_err(|e| backend_problem(&e))
    }

    /// Record `id` (run under `token`) as the backend's running execution,
    /// under our leadership, so a new leader knows what to resume. Refused
    /// (409) when another is recorded, (503) when we no longer lead.
    pub(super) async fn claim(&self, id: &str, token: u64) -> Result<Claim, Problem> {
        let leadership = self.election.leadership().ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-leader",
                format!(
                    "this server lost its leadership on {}; retry",
                    self.election.describe()
                ),
            )
        })?;
        let record = RunningExecution {
            id: id.to_string(),
            node: leadership.node().name.clone(),
            token,
            started_ms: crate::journal::now_ms(),
        };
        match self
            .election
            .backend()
            .claim_running(&leadership, &record)
            .await
        {
            Ok(()) => Ok(Claim {
                leadership,
                id: id.to_string(),
            }),
            Err(CoordinationError::Busy { running }) => Err(self.busy(&running.id)),
            Err(e) => Err(backend_problem(&e)),
        }
    }

    /// The claimed execution ended (whatever the outcome): a new leader has
    /// nothing to take over. Fenced: a deposed leader's record stays for
    /// its successor, which resumes the execution.
    pub(super) async fn release(&self, claim: &Claim) {
        self.clear_record(&claim.leadership, &claim.id).await;
    }

    /// Clear the running record naming `id`, if we lead and it names it.
    pub(super) async fn clear_record(
        &self,
        leadership: &switchyard_coordination::Leadership,
        id: &str,
    ) {
        if let Err(e) = self.election.backend().clear_running(leadership, id).await {
            tracing::warn!(error = %e, execution = %id, "running record not cleared");
        }
    }

    /// Before a new execution starts: take the gate, then refuse (409,
    /// naming it) while this server runs one or the backend records one
    /// (read afresh, not the cached copy) other than `except` — an abort's
    /// own execution, whose leader died. Hold the guard until it runs.
    pub(super) async fn exclusive(
        &self,
        except: Option<&str>,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, Problem> {
        let gate = self.gate.lock().await;
        if let Some(id) = self.running() {
            return Err(self.busy(&id));
        }
        match self.recorded_running().await? {
            Some(r) if Some(r.id.as_str()) != except => Err(self.busy(&r.id)),
            _ => Ok(gate),
        }
    }

    /// Claim `launched` in the backend ([`AppState::claim`]), then drive it
    /// in a task of its own; `running` names it until it ends, and the
    /// record is released when it ends (a crash leaves it, for the next
    /// leader).
    async fn spawn(
        self: &Arc<Self>,
        launched: crate::service::Launched,
    ) -> Result<String, Problem> {
        let id = launched.id().to_string();
        let token = launched.token().get();
        // The claim (its durable write) goes on while the execution's
        // read-only start runs; the execution's first durable record waits
        // for it, so nothing is issued to a store before a new leader could
        // find the record — and nothing at all when the claim is refused.
        let (claimed, gate) = tokio::sync::oneshot::channel();
        let launched = launched.durable_after(gate);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        let (claim_tx, claim_rx) = tokio::sync::oneshot::channel::<Option<Claim>>();
        let state = self.clone();
        tokio::spawn(async move {
            let end = launched.run().await;
            if let Ok(Some(claim)) = claim_rx.await {
                state.release(&claim).await;
            }
            match &end {
                Ok(f) if f.outcome != Outcome::Succeeded => tracing::warn!(
                    execution = %f.id,
                    outcome = ?f.outcome,
                    reason = f.reason.as_deref().unwrap_or(""),
                    "execution ended without succeeding"
                ),
                _ => {}
            }
            let mut running = state.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(f) = &end {
                state
                    .outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(f.id.clone(), f.outcome);
            }
            if let Err(e) = end {
                tracing::error!(error = %e, "execution ended with an error");
            }
            *running = None;
        });
        match self.claim(&id, token).await {
            Ok(claim) => {
                let _ = claimed.send(Ok(()));
                let _ = claim_tx.send(Some(claim));
                Ok(id)
            }
            Err(p) => {
                let _ = claimed.send(Err(format!(
                    "the running-execution record was not written ({}); nothing was issued",
                    p.detail
                )));
                let _ = claim_tx.send(None);
                Err(p)
            }
        }
    }

    /// On becoming leader: resume the execution the backend records as
    /// running (its leader died or was cut off mid-execution), with this
    /// server's own, greater token. Its journal is in the backend, so the
    /// resume issues only what has no journaled outcome, after observing.
    pub async fn take_over(self: &Arc<Self>) {
        let _gate = self.gate.lock().await;
        if self.running().is_some() {
            return;
        }
        let rec = match self.recorded_running().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(p) => {
                tracing::warn!(detail = %p.detail, "take-over: cannot read the running record");
                return;
            }
        };
        tracing::info!(execution = %rec.id, from = %rec.node, "take-over: resuming");
        match self
            .service
            .resume(Some(rec.id.clone()), Arc::new(Discard))
            .await
        {
            Ok(launched) => {
                if let Err(p) = self.spawn(launched).await {
                    tracing::error!(execution = %rec.id, detail = %p.detail, "take-over failed");
                }
            }
            // No leadership any more: the next leader takes over.
            Err(e) if e.kind == ErrorKind::Locked => {
                tracing::warn!(execution = %rec.id, error = %e, "take-over: not leading");
            }
            // Nothing to resume (it had ended; or it needs a person): the
            // record no longer names an execution anyone runs.
            Err(e) => {
                tracing::warn!(execution = %rec.id, error = %e, "take-over: not resumable; record cleared");
                if let Some(l) = self.election.leadership() {
                    let _ = self.election.backend().clear_running(&l, &rec.id).await;
                }
            }
        }
    }

    /// The pinned status of execution `id`, from what this server runs and
    /// the journal.
    fn status_of(&self, id: &str, journal: ExecutionStatus) -> &'static str {
        // The report is the end: a client that saw it and asks at once
        // must not read "running" while the job winds down.
        let reported = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reported(id);
        if let Some(st) = reported {
            return pinned(st);
        }
        if self.running().as_deref() == Some(id) {
            return "running";
        }
        // Recorded as running by the leader (this or another server), and
        // not ended in the journal: a follower, or a leader taking over.
        if self.election.running().is_some_and(|r| r.id == id)
            && matches!(
                journal,
                ExecutionStatus::Unfinished | ExecutionStatus::Failed | ExecutionStatus::Empty
            )
        {
            return "running";
        }
        match self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            Some(Outcome::Succeeded) => return "succeeded",
            Some(Outcome::Failed | Outcome::Refused) => return "failed",
            Some(Outcome::Aborted) => return "aborted",
            None => {}
        }
        pinned(journal)
    }
}

/// The pinned API status of an execution not running here, from its journal.
fn pinned(journal: ExecutionStatus) -> &'static str {
    match journal {
        ExecutionStatus::Succeeded => "succeeded",
        ExecutionStatus::Aborted | ExecutionStatus::Closed => "aborted",
        // The pinned status set has no "refused": it ended without changing a store.
        ExecutionStatus::Refused => "failed",
        ExecutionStatus::PendingApproval => "pending_approval",
        // Unfinished and not running here: interrupted, resumable.
        ExecutionStatus::Unfinished | ExecutionStatus::Failed | ExecutionStatus::Empty => "failed",
    }
}

type Shared = Arc<AppState>;

/// An execution this leader recorded as the backend's running one
/// ([`AppState::claim`]), to release when it ends.
pub(super) struct Claim {
    leadership: Arc<switchyard_coordination::Leadership>,
    id: String,
}

/// A mutating request: the caller needs `role`, and a follower sends it on
/// to the leader (307). `None`: go ahead.
pub(super) fn refuse_or_redirect(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    role: Role,
) -> Option<Response> {
    if let Err(p) = s.authorize(headers, role) {
        return Some(p.into_response());
    }
    s.leader_only(uri)
}

/// The coordination backend failed: 503, saying which and why.
fn backend_problem(e: &CoordinationError) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "backend",
        format!("coordination backend: {e}"),
    )
}

fn reply(r: Result<Response, Problem>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `{"id": ...}`: an execution accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Execution id; `GET /v1/executions/{id}` follows it.
    pub id: Option<String>,
    /// Why nothing was started (every store is primary in the target already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A failover to plan or start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Region every store should end up primary in.
    pub to: Option<String>,
    /// `planned` (default), `forced` (the current primary region is gone),
    /// or `switchover`: planned, and refused (422) unless every store has one
    /// reachable, writable primary to fence now.
    pub mode: Option<String>,
    /// With `forced`: promote even beyond the store's lag bound (needs the
    /// approver role).
    #[serde(default)]
    pub accept_data_loss: bool,
    /// Instead of `to`: a plan (TOML or JSON text) to validate and run.
    pub plan: Option<String>,
    /// How long each stage may take (ms).
    pub stage_timeout_ms: Option<u64>,
    /// How long a store may take to replay the fenced primary's final position (ms).
    pub catch_up_timeout_ms: Option<u64>,
    /// The member to promote (`--candidate`): `"MEMBER"` or
    /// `"STORE=MEMBER"`, or a list of them (one per store). It must be an
    /// electable member of `to`; other stores promote their best member.
    pub candidate: Option<CandidateBody>,
}

/// `"candidate"`: one member, or one per store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CandidateBody {
    /// `"pg-west-2"` or `"orders=pg-west-2"`.
    One(String),
    /// `["orders=pg-west-2", "catalog=m-west-2"]`.
    Many(Vec<String>),
}

impl StartBody {
    fn plan_request(&self) -> Result<PlanRequest, Problem> {
        let bad = |m: String| Problem::new(StatusCode::BAD_REQUEST, "invalid", m);
        let to = self
            .to
            .clone()
            .ok_or_else(|| bad("`to`: the target region is required".into()))?;
        let mode = match (self.mode.as_deref().unwrap_or("planned"), self.accept_data_loss) {
            ("planned" | "switchover", false) => Mode::Planned,
            ("planned" | "switchover", true) => {
                return Err(bad(
                    "`accept_data_loss` needs `\"mode\": \"forced\"` (as --accept-data-loss needs --forced)".into(),
                ))
            }
            ("forced", false) => Mode::Forced,
            ("forced", true) => Mode::ForcedAcceptDataLoss,
            (other, _) => {
                return Err(bad(format!(
                    "`mode`: unknown `{other}`; expected `planned`, `forced` or `switchover`"
                )))
            }
        };
        let timeout = super::commands::timeout;
        Ok(PlanRequest {
            to,
            mode,
            stage_timeout_ms: timeout(
                self.stage_timeout_ms,
                crate::plan::DEFAULT_STAGE_TIMEOUT_MS,
                "stage_timeout_ms",
            )?,
            catch_up_timeout_ms: timeout(self.catch_up_timeout_ms, 60_000, "catch_up_timeout_ms")?,
            candidates: candidates(&self.candidate),
        })
    }
}

/// The `--candidate` values of a request body's `"candidate"`.
pub fn candidates(body: &Option<CandidateBody>) -> Vec<String> {
    match body {
        None => vec![],
        Some(CandidateBody::One(c)) => vec![c.clone()],
        Some(CandidateBody::Many(v)) => v.clone(),
    }
}

/// One execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionView {
    /// Execution id.
    pub id: String,
    /// `pending_approval`, `running`, `succeeded`, `failed` or `aborted`.
    pub status: String,
    /// `failover`, `run`, `abort`, `drill-out`, `drill-back`.
    pub kind: String,
    /// Plan title.
    pub plan: String,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Status as the journal has it (`unfinished`, `failed`, `succeeded`,
    /// `aborted`, `closed`, `empty`; `damaged` for a damaged journal).
    pub journal_status: String,
    /// Can be resumed (unfinished, whole journal, not superseded, not running).
    pub resumable: bool,
    /// The execution as `switchyard executions --output json` prints it
    /// (journal status, damage, the execution that superseded it).
    #[schema(value_type = Object)]
    pub ledger: serde_json::Value,
    /// Who started it: the name of the API token that asked (or the OS user
    /// of the CLI that did); absent when the journal does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// How long it took, from its start to its last journal record (to now
    /// while it runs); absent while it waits for approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// For `pending_approval`: who asked, why, until when, and the refused
    /// attempts (`POST /v1/executions/{id}/approvals` approves).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub approval: Option<serde_json::Value>,
    /// The report from the journal (single-execution view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// Its timeline from the journal, as the progress events the live
    /// stream sends (stage, operation with timing and outcome, checkpoint
    /// with each expectation observed); single-execution view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub timeline: Option<Vec<serde_json::Value>>,
}

/// `GET /v1/leader`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderView {
    /// Base URL of the leader.
    pub url: String,
    /// Its node name.
    pub node: String,
    /// This server leads.
    pub this_server: bool,
}

/// A plan preview.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// The plan (absent when there is nothing to do).
    #[schema(value_type = Option<Object>)]
    pub plan: Option<serde_json::Value>,
    /// The plan rendered for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why there is no plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the CLI shows before it asks, from a fresh observation: per
    /// store the current primary and the candidate, its lag against the
    /// bound, what is fenced, the data-loss estimate with its basis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// The API's OpenAPI 3.1 document, generated from the handlers below.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchyard", description = "Storage failover coordinator API (see docs/server.md)."),
    paths(healthz, readyz, metrics, leader, topology, live_state, state_events, preview, start, list, get_one, events, resume,
          commands::abort, commands::rollback, commands::drill, commands::journal, commands::close, approve),
    components(schemas(Problem, Accepted, StartBody, CandidateBody, ExecutionView, LeaderView, PlanView, Snapshot,
                       commands::RollbackBody, commands::DrillBody, commands::CloseBody,
                       views::AbortPlanned, views::AbortReport, views::AbortStore, views::StoreDecisionView,
                       views::DrillReport, views::DrillPreview, views::RollbackAction, views::RollbackPreview,
                       views::RollbackEnded, views::ClosedView, views::JournalView, views::ExecutionFinished, Approved)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/leader", get(leader))
        .route("/v1/topology", get(topology))
        .route("/v1/state", get(live_state))
        .route("/v1/state/events", get(state_events))
        .route("/v1/plans", post(preview))
        .route("/v1/executions", post(start).get(list))
        .route("/v1/executions/{id}", get(get_one))
        .route("/v1/executions/{id}/events", get(events))
        .route("/v1/executions/{id}/resume", post(resume))
        .route("/v1/executions/{id}/abort", post(commands::abort))
        .route("/v1/executions/{id}/rollback", post(commands::rollback))
        .route("/v1/executions/{id}/close", post(commands::close))
        .route("/v1/executions/{id}/journal", get(commands::journal))
        .route("/v1/drills", post(commands::drill))
        .route("/v1/executions/{id}/approvals", post(approve))
        .merge(super::console::routes())
        .fallback(|uri: Uri| async move {
            Problem::not_found(format!("no route {}", uri.path())).into_response()
        })
        .with_state(state)
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: this process has observed every store once, and a leader is known.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "not ready", body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(s): State<Shared>) -> Response {
    let observed = s.observer.live();
    let leader = s.election.leader().map(|l| l.node);
    if observed && leader.is_some() {
        Json(json!({"status": "ready", "leader": leader, "this_server_leads": s.election.leads()}))
            .into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            if observed {
                format!("no leader on {}", s.election.describe())
            } else {
                "the observer has not completed a round of observations yet".to_string()
            },
        )
        .into_response()
    }
}

/// Prometheus metrics (viewer).
#[utoipa::path(get, path = "/metrics", security(("bearer" = [])), responses(
    (status = 200, description = "text exposition format", content_type = "text/plain"),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        s.metrics.leader(s.election.leads());
        let stores: Vec<String> = s
            .service
            .topology()
            .stores
            .iter()
            .map(|st| st.name.clone())
            .collect();
        Ok((
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            s.metrics.render(&stores),
        )
            .into_response())
    })())
}

/// The leader's URL (every server answers).
#[utoipa::path(get, path = "/v1/leader", security(("bearer" = [])), responses(
    (status = 200, body = LeaderView),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn leader(State(s): State<Shared>, headers: HeaderMap) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        let l = s.election.leader().map(|l| l.node).ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-leader",
                format!("no server leads on {}", s.election.describe()),
            )
        })?;
        Ok(Json(LeaderView {
            url: l.url,
            node: l.name,
            this_server: s.election.leads(),
        })
        .into_response())
    })())
}

/// The topology the server runs with.
#[utoipa::path(get, path = "/v1/topology", security(("bearer" = [])), responses(
    (status = 200, description = "the topology", body = Object),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn topology(State(s): State<Shared>, headers: HeaderMap) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        Ok(Json(&*s.service.topology()).into_response())
    })())
}

/// Every store's last-known state, from the background observer.
#[utoipa::path(get, path = "/v1/state", security(("bearer" = [])), responses(
    (status = 200, body = Snapshot),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn live_state(State(s): State<Shared>, headers: HeaderMap) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        let snap = s.observer.latest().ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-observed",
                "no store has been observed yet",
            )
        })?;
        Ok(Json(state_json(&snap)).into_response())
    })())
}

/// `GET /v1/state`'s body: the last round, with its age.
fn state_json(snap: &Snapshot) -> serde_json::Value {
    let age = crate::journal::now_ms().saturating_sub(snap.observed_at_ms);
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    v["age_ms"] = json!(age);
    v
}

/// Every store's last-known state as Server-Sent Events: `event: state`
/// (the body of `GET /v1/state`) now, and again after every round of the
/// background observer, for as long as the client listens.
#[utoipa::path(get, path = "/v1/state/events", security(("bearer" = [])), responses(
    (status = 200, description = "text/event-stream of `state` events", content_type = "text/event-stream"),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn state_events(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(p) = s.authorize(&headers, Role::Viewer) {
        return p.into_response();
    }
    let mut rx = s.observer.subscribe();
    rx.mark_changed();
    let stream = futures::stream::unfold((rx, s), |(mut rx, s)| async move {
        rx.changed().await.ok()?;
        let ev = match s.observer.latest() {
            Some(snap) => Event::default()
                .event("state")
                .json_data(state_json(&snap))
                .unwrap_or_default(),
            None => Event::default()
                .event("not_observed")
                .data("no store has been observed yet"),
        };
        Some((Ok::<_, Infallible>(ev), (rx, s)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Preview the plan a failover would run (nothing is touched).
#[utoipa::path(post, path = "/v1/plans", security(("bearer" = [])), request_body = StartBody, responses(
    (status = 200, body = PlanView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn preview(State(s): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let r = async {
        s.authorize(&headers, Role::Viewer)?;
        let body = parse_body(&body)?;
        let req = body.plan_request()?;
        if body.mode.as_deref() == Some("switchover") {
            s.service.target_region(&req.to).map_err(|e| s.problem(e))?;
            s.service.candidates(&req).map_err(|e| s.problem(e))?;
            s.service
                .refuse_unfenceable(Some(req.to.as_str()))
                .await
                .map_err(|e| s.problem(e))?;
        }
        Ok(
            match s.service.plan(&req).await.map_err(|e| s.problem(e))? {
                Some(plan) => {
                    let preview = s
                        .service
                        .state()
                        .await
                        .ok()
                        .map(|st| crate::preview::render(&plan, &st.topology, &st.health));
                    Json(PlanView {
                        plan: serde_json::from_str(&plan.to_json()).ok(),
                        text: Some(plan.render()),
                        detail: None,
                        preview,
                    })
                    .into_response()
                }
                None => Json(PlanView {
                    plan: None,
                    text: None,
                    preview: None,
                    detail: Some(format!(
                        "every store is already primary in {}; nothing to do",
                        req.to
                    )),
                })
                .into_response(),
            },
        )
    };
    reply(r.await)
}

fn parse_body(body: &[u8]) -> Result<StartBody, Problem> {
    super::commands::parse_json(body)
}

pub(super) fn accepted(id: String) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/executions/{id}"))],
        Json(Accepted {
            id: Some(id),
            detail: None,
        }),
    )
        .into_response()
}

/// Start an execution: `{"to": "west"}` (with `"mode": "forced"`,
/// `"accept_data_loss": true` as in the CLI), or `{"plan": "<TOML>"}`.
#[utoipa::path(post, path = "/v1/executions", security(("bearer" = [])), request_body = StartBody, responses(
    (status = 202, body = Accepted, description = "started; Location names it"),
    (status = 200, body = Accepted, description = "nothing to do (no id); or, asked with `Accept: text/event-stream`, the execution's events (and its on_failure rollback's), then `execution_finished` (ExecutionFinished) or `error` (Problem)"),
    (status = 307, description = "this server does not lead; Location is the leader's"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "an execution runs (named) or is unfinished")))]
async fn start(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let caller = match s.authorize(&headers, Role::Operator) {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if body.accept_data_loss && caller.role < Role::Approver {
        return Problem::forbidden(format!(
            "token {} has role {}; accepting data loss needs approver",
            caller.token, caller.role
        ))
        .into_response();
    }
    if let Some(r) = s.leader_only(&uri) {
        return r;
    }
    let req = match (&body.plan, &body.to) {
        (Some(text), None) => StartRequest::PlanText {
            source: "request body `plan`".into(),
            text: text.clone(),
        },
        (None, _) => match body.plan_request() {
            Ok(p) => StartRequest::Failover(p),
            Err(p) => return p.into_response(),
        },
        (Some(_), Some(_)) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "give either `to` or `plan`, not both",
            )
            .into_response()
        }
    };
    let _gate = match s.exclusive(None).await {
        Ok(g) => g,
        Err(p) => return p.into_response(),
    };
    if body.mode.as_deref() == Some("switchover") {
        if let StartRequest::Failover(p) = &req {
            if let Err(e) = s.service.target_region(&p.to) {
                return s.problem(e).into_response();
            }
            if let Err(e) = s.service.candidates(p) {
                return s.problem(e).into_response();
            }
        }
        let to = match &req {
            StartRequest::Failover(p) => Some(p.to.as_str()),
            _ => None,
        };
        if let Err(e) = s.service.refuse_unfenceable(to).await {
            return s.problem(e).into_response();
        }
    }
    tracing::info!(token = %caller.token, "start requested");
    match s.service.prepare(&req).await {
        Ok(None) => Json(Accepted {
            id: None,
            detail: Some(match &req {
                StartRequest::Failover(p) => {
                    format!("every store is already primary in {}; nothing to do", p.to)
                }
                _ => "nothing to do".into(),
            }),
        })
        .into_response(),
        Ok(Some(pending)) => {
            let pending = pending.started_by(caller.identity());
            if commands::wants_stream(&headers) {
                commands::run_stream(&s, pending)
            } else {
                match s.service.launch(pending, Arc::new(Discard)) {
                    Ok(launched) => reply(s.spawn(launched).await.map(accepted)),
                    Err(e) => s.problem(e).into_response(),
                }
            }
        }
        Err(e) => s.problem(e).into_response(),
    }
}

fn view(s: &AppState, e: &crate::journal::LedgerEntry) -> ExecutionView {
    let status = s.status_of(&e.summary.id, e.summary.status);
    let sum = &e.summary;
    let duration_ms = match status {
        "pending_approval" => None,
        "running" => Some(crate::journal::now_ms().saturating_sub(sum.started_at_ms)),
        _ => Some(sum.last_at_ms.saturating_sub(sum.started_at_ms)),
    };
    let approval = (status == "pending_approval")
        .then(|| s.service.show(&sum.id).ok())
        .flatten()
        .and_then(|sh| sh.report.approval)
        .and_then(|a| serde_json::to_value(a).ok());
    ExecutionView {
        started_by: sum.started_by.clone(),
        duration_ms,
        approval,
        id: e.summary.id.clone(),
        status: status.to_string(),
        kind: e.summary.kind.clone(),
        plan: e.summary.plan.clone(),
        started_at_ms: e.summary.started_at_ms,
        journal_status: if e.is_damaged() {
            "damaged".into()
        } else {
            e.summary.status.to_string()
        },
        // One waiting for approval is approved, not resumed.
        resumable: status != "running"
            && status != "pending_approval"
            && e.is_open()
            && e.superseded_by.is_none()
            && !e.is_damaged(),
        ledger: serde_json::to_value(e).unwrap_or_default(),
        report: None,
        timeline: None,
    }
}

/// Every execution, oldest first.
#[utoipa::path(get, path = "/v1/executions", security(("bearer" = [])), responses(
    (status = 200, body = Vec<ExecutionView>),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        let rows = s.service.executions().map_err(|e| s.problem(e))?;
        let v: Vec<ExecutionView> = rows.iter().map(|e| view(&s, e)).collect();
        Ok(Json(v).into_response())
    })())
}

pub(super) fn find(s: &AppState, id: &str) -> Result<crate::journal::LedgerEntry, Problem> {
    s.service
        .executions()
        .map_err(|e| s.problem(e))?
        .into_iter()
        .find(|e| e.summary.id == id)
        .ok_or_else(|| Problem::not_found(format!("no execution `{id}`")))
}

/// One execution: `{"id", "status", ...}` with its report.
#[utoipa::path(get, path = "/v1/executions/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), responses(
    (status = 200, body = ExecutionView),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_one(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply((|| {
        s.authorize(&headers, Role::Viewer)?;
        let e = find(&s, &id)?;
        let mut v = view(&s, &e);
        if let Ok(sh) = s.service.show(&id) {
            v.report = serde_json::to_value(&sh.report).ok();
            v.timeline = Some(
                crate::progress::replay(&sh.records)
                    .iter()
                    .filter_map(|ev| serde_json::to_value(ev).ok())
                    .collect(),
            );
        }
        Ok(Json(v).into_response())
    })())
}

/// Live events of an execution as Server-Sent Events: `status` first, then
/// every progress event (named by its `event` field) and the final `report`.
#[utoipa::path(get, path = "/v1/executions/{id}/events", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), responses(
    (status = 200, description = "text/event-stream", content_type = "text/event-stream"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn events(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(p) = s.authorize(&headers, Role::Viewer) {
        return p.into_response();
    }
    let e = match find(&s, &id) {
        Ok(e) => e,
        Err(p) => return p.into_response(),
    };
    // Backlog and subscription under one lock: every event exactly once.
    let (backlog, rx) = {
        let log = s.log.lock().unwrap_or_else(|e| e.into_inner());
        (
            log.by_execution.get(&id).cloned().unwrap_or_default(),
            log.feed.subscribe(),
        )
    };
    let first = view(&s, &e);
    let ended = |ev: &ServiceEvent| matches!(ev, ServiceEvent::Report { .. });
    let live = first.status == "running" && !backlog.iter().any(ended);
    let mut queue: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    queue.push_back(
        Event::default()
            .event("status")
            .json_data(json!({"id": first.id, "status": first.status}))
            .unwrap_or_default(),
    );
    if first.status == "running" {
        queue.extend(backlog.iter().map(sse_event));
    }
    let stream = futures::stream::unfold(
        (queue, rx, live, id),
        |(mut queue, mut rx, live, id)| async move {
            if let Some(ev) = queue.pop_front() {
                return Some((Ok::<_, Infallible>(ev), (queue, rx, live, id)));
            }
            if !live {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(p) if p.execution_id == id => {
                        let last = matches!(p.event, ServiceEvent::Report { .. });
                        return Some((Ok(sse_event(&p.event)), (queue, rx, !last, id)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let ev = Event::default().event("lagged").data(format!(
                            "{n} events were dropped; GET the execution for its state"
                        ));
                        return Some((Ok(ev), (queue, rx, live, id)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One service event as SSE: named by its `event` field (`report` for the report).
pub(super) fn sse_event(ev: &ServiceEvent) -> Event {
    let (name, data) = match ev {
        ServiceEvent::Progress(p) => {
            let v = serde_json::to_value(p).unwrap_or_default();
            (v["event"].as_str().unwrap_or("progress").to_string(), v)
        }
        ServiceEvent::Report { report, .. } => ("report".to_string(), json!({"report": report})),
        ServiceEvent::RollbackPlanned {
            execution_id,
            stores,
        } => (
            "rollback_planned".to_string(),
            json!({"event": "rollback_planned", "execution_id": execution_id, "stores": stores}),
        ),
    };
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_default()
}

/// Resume an interrupted or failed execution from its journal. Asked with
/// `Accept: text/event-stream`, the answer follows it to its very end, as a
/// start's does: a plan's `on_failure = "rollback"` included.
#[utoipa::path(post, path = "/v1/executions/{id}/resume", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), responses(
    (status = 200, description = "asked with `Accept: text/event-stream`: the resumed execution's events (and its on_failure rollback's), then `execution_finished` (ExecutionFinished) or `error` (Problem)", content_type = "text/event-stream"),
    (status = 202, body = Accepted),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn resume(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if let Err(p) = s.authorize(&headers, Role::Operator) {
        return p.into_response();
    }
    if let Some(r) = s.leader_only(&uri) {
        return r;
    }
    let _gate = match s.exclusive(Some(&id)).await {
        Ok(g) => g,
        Err(p) => return p.into_response(),
    };
    if commands::wants_stream(&headers) {
        return commands::resume_stream(&s, id).await;
    }
    match s.service.resume(Some(id), Arc::new(Discard)).await {
        Ok(launched) => reply(s.spawn(launched).await.map(accepted)),
        Err(e) => s.problem(e).into_response(),
    }
}

/// `POST /v1/executions/{id}/approvals`: what was decided.
#[derive(Debug, Serialize, ToSchema)]
pub struct Approved {
    /// The execution approved; `GET /v1/executions/{id}` follows it.
    pub id: String,
    /// Who approved it, as journaled (`name`, `via`, `token_id`).
    #[schema(value_type = Object)]
    pub approver: serde_json::Value,
    /// The approver as the report names them.
    pub approved_by: String,
    /// The server runs it now (as `resume` would).
    pub running: bool,
    /// Why it does not run yet, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Approve an execution that is `pending_approval` (the two-person rule) as
/// the holder of the request's token, which needs the approver role and
/// must not be the requester; then run it, as `resume` would. Every
/// attempt by a token is journaled, refusals too.
#[utoipa::path(post, path = "/v1/executions/{id}/approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "execution id")), responses(
    (status = 202, body = Approved, description = "approved; the execution runs (Location names it)"),
    (status = 200, body = Approved, description = "approved, but it could not be started now (`detail`)"),
    (status = 307, description = "this server does not lead"),
    (status = 400, body = Problem, content_type = "application/problem+json", description = "not waiting for approval (already approved, started, or never asked)"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "the token is not an approver (journaled as refused)"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "an execution runs"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "refused: self-approval, or the request expired (journaled)")))]
async fn approve(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    // Any known token is a person who may try (and is journaled when
    // refused); an anonymous reader is nobody.
    let caller =
        match s.authorize(&headers, Role::Viewer) {
            Ok(_) if headers.get(header::AUTHORIZATION).is_none() => return Problem::unauthorized(
                "approving needs an approver's bearer token: send `Authorization: Bearer <token>`",
            )
            .into_response(),
            Ok(c) => c,
            Err(p) => return p.into_response(),
        };
    if let Some(r) = s.leader_only(&uri) {
        return r;
    }
    if let Err(p) = find(&s, &id) {
        return p.into_response();
    }
    let _gate = s.gate.lock().await;
    if let Some(running) = s.running() {
        return s.busy(&running).into_response();
    }
    let who = caller.identity();
    let forbidden = (caller.role < Role::Approver).then(|| {
        format!(
            "token {} has role {}; approving needs approver",
            caller.token, caller.role
        )
    });
    let attempt = match &forbidden {
        Some(why) => Err((who, why.clone())),
        None => Ok(who),
    };
    tracing::info!(token = %caller.token, execution = %id, "approval requested");
    let decision = match s.service.approve_as(&id, attempt) {
        Ok(d) => d,
        Err(e) => {
            return match forbidden {
                Some(why) if e.kind == ErrorKind::Refused => Problem::forbidden(why),
                _ => s.problem(e),
            }
            .into_response()
        }
    };
    let mut body = Approved {
        id: id.clone(),
        approver: serde_json::to_value(&decision.approver).unwrap_or_default(),
        approved_by: decision.approver.to_string(),
        running: false,
        detail: None,
    };
    match s.service.resume(Some(id.clone()), Arc::new(Discard)).await {
        Ok(launched) => match s.spawn(launched).await {
            Ok(_) => {
                body.running = true;
                (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, format!("/v1/executions/{id}"))],
                    Json(body),
                )
                    .into_response()
            }
            Err(p) => {
                body.detail = Some(format!(
                    "approved, but it could not be started now: {}; `POST /v1/executions/{id}/resume` runs it",
                    p.detail
                ));
                Json(body).into_response()
            }
        },
        Err(e) => {
            body.detail = Some(format!(
                "approved, but it could not be started now: {e}; `POST /v1/executions/{id}/resume` runs it"
            ));
            Json(body).into_response()
        }
    }
}
