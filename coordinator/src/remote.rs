//! `switchyard --server URL <command>`: the CLI's commands carried out by a
//! `switchyard serve` over its API, rendered by the same code as local mode,
//! with the same exit codes. The bearer token comes from `SWITCHYARD_TOKEN`
//! (an environment variable, not an argument, so it never shows in `ps`);
//! `SWITCHYARD_CA_CERT` names a PEM file to trust for an HTTPS server.
//!
//! Every command that makes sense remotely is carried: `state` (the
//! server's last-known observation), `plan failover`, `failover`,
//! `switchover`, `run`, `resume`, `abort`, `rollback`, `drill`, `show`,
//! `executions` (and `close`). Abort, rollback and drill read the job's
//! event stream (`Accept: text/event-stream`) to its last event, a typed
//! report ([`crate::server::views`]) rendered by the same function as local
//! mode. `approve` posts to the approvals endpoint (approver role); `serve`, `token`,
//! `completions` and `man` are local by nature.

use crate::cli::{
    confirm, exit, nothing_to_do, render_abort_planned, render_abort_report, render_closed,
    render_drill, render_executions, render_show, render_state, rolled_back_nothing, Command,
    ExecutionsAction, Exit, Output, PlanKind, PlanOutput, Render,
};
use crate::journal::LedgerEntry;
use crate::plan::Plan;
use crate::progress::ProgressEvent;
use crate::server::views::{
    AbortPlanned, AbortReport, ClosedView, DrillPreview, DrillReport, ExecutionFinished,
    JournalView, RollbackEnded, RollbackPreview,
};
use crate::service::Outcome;
use crate::service::{EventSink, ServiceEvent, StateReport};
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_topology::Topology;

/// A server to send commands to.
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The exit code a problem's HTTP status stands for (the server maps the
/// service's error kinds to these statuses; this maps them back).
fn code_of_status(status: u16) -> i32 {
    match status {
        409 => exit::LOCKED,
        422 => exit::REFUSED,
        400..=499 => exit::USAGE,
        _ => exit::FAILED,
    }
}

impl Remote {
    /// A client of the server at `url`.
    pub fn new(url: &str) -> Result<Self, Exit> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Ok(ca) = std::env::var("SWITCHYARD_CA_CERT") {
            let pem = std::fs::read(&ca)
                .map_err(|e| Exit::usage(format!("SWITCHYARD_CA_CERT {ca}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Exit::usage(format!("SWITCHYARD_CA_CERT {ca}: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            token: std::env::var("SWITCHYARD_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            http: b.build().map_err(|e| Exit::usage(e.to_string()))?,
        })
    }

    /// Send a request; a follower's 307 is followed once (with the token,
    /// which a generic redirect would drop on the way to another port).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, Exit> {
        self.send_accepting(method, path, body, "application/json")
            .await
    }

    /// [`Remote::send`] asking for `accept` (`text/event-stream`: a job's events).
    async fn send_accepting(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        accept: &str,
    ) -> Result<reqwest::Response, Exit> {
        let mut url = format!("{}{path}", self.base);
        for _ in 0..2 {
            let mut rq = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::ACCEPT, accept);
            if let Some(t) = &self.token {
                rq = rq.bearer_auth(t);
            }
            if let Some(b) = body {
                rq = rq.json(b);
            }
            let r = rq.send().await.map_err(|e| Exit {
                code: exit::FAILED,
                message: format!("server {}: {e}", self.base),
            })?;
            if r.status() == reqwest::StatusCode::TEMPORARY_REDIRECT {
                if let Some(loc) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
                    url = loc.to_string();
                    continue;
                }
            }
            return Ok(r);
        }
        Err(Exit {
            code: exit::FAILED,
            message: format!("server {}: redirected more than once", self.base),
        })
    }

    /// A JSON answer, or the problem's detail as an [`Exit`].
    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Exit> {
        let r = self.send(method, path, body).await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            return Err(problem_exit(status, &v));
        }
        Ok((status, v))
    }

    /// A typed JSON answer.
    async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Exit> {
        let (_, v) = self.json(method, path, body).await?;
        serde_json::from_value(v).map_err(|e| Exit {
            code: exit::FAILED,
            message: format!("server {}: {path}: unexpected answer: {e}", self.base),
        })
    }

    /// Every execution the server's journal holds, oldest first.
    async fn ledger(&self) -> Result<Vec<LedgerEntry>, Exit> {
        let (_, all) = self
            .json(reqwest::Method::GET, "/v1/executions", None)
            .await?;
        all.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                serde_json::from_value(e["ledger"].clone()).map_err(|e| Exit {
                    code: exit::FAILED,
                    message: format!(
                        "server {}: /v1/executions: unexpected answer: {e}",
                        self.base
                    ),
                })
            })
            .collect()
    }

    /// `id`, or the unfinished execution (what `resume`, `abort` and
    /// `rollback` default to, as locally): the newest open one, whole and
    /// not superseded.
    async fn unfinished_or(&self, id: Option<String>, none: &str) -> Result<String, Exit> {
        if let Some(id) = id {
            return Ok(id);
        }
        self.ledger()
            .await?
            .into_iter()
            .rev()
            .find(|e| e.is_open() && e.superseded_by.is_none() && !e.is_damaged())
            .map(|e| e.summary.id)
            .ok_or_else(|| Exit::usage(none))
    }

    /// Run a job (abort, rollback, drill) and render its events to `sink`
    /// until its last event, which is returned (an `error` event as the
    /// [`Exit`] its problem stands for). `note` gets the events that say
    /// what the job decided before running anything.
    async fn job(
        &self,
        path: &str,
        body: &Value,
        sink: &dyn EventSink,
        note: &mut dyn FnMut(&str, &Value),
    ) -> Result<(String, Value), Exit> {
        let r = self
            .send_accepting(reqwest::Method::POST, path, Some(body), "text/event-stream")
            .await?;
        let status = r.status().as_u16();
        if status >= 400 {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            return Err(problem_exit(status, &v));
        }
        self.read_job(path, r, sink, note).await
    }

    /// A job's events, rendered to `sink`, to its last event.
    async fn read_job(
        &self,
        path: &str,
        r: reqwest::Response,
        sink: &dyn EventSink,
        note: &mut dyn FnMut(&str, &Value),
    ) -> Result<(String, Value), Exit> {
        let mut events = Sse::new(r);
        let mut reason = None;
        while let Some((name, v)) = events.next().await.map_err(|e| Exit {
            code: exit::FAILED,
            message: format!("server {}: {path}: {e}", self.base),
        })? {
            match name.as_str() {
                "abort_report" | "rollback_ended" | "drill_report" | "execution_finished" => {
                    return Ok((name, v))
                }
                "error" => {
                    return Err(problem_exit(v["status"].as_u64().unwrap_or(500) as u16, &v))
                }
                "abort_planned" => note(&name, &v),
                other => {
                    render_event(other, v, sink, &mut reason);
                }
            }
        }
        Err(Exit {
            code: exit::FAILED,
            message: format!(
                "server {}: the event stream of {path} ended before the job did; `switchyard --server {} executions` shows where it stands",
                self.base, self.base
            ),
        })
    }

    /// Start a failover (`body` as `POST /v1/executions` takes it), asking
    /// first over the server's plan preview unless `yes`, and follow it.
    async fn start(
        &self,
        body: &Value,
        to: &str,
        yes: bool,
        output: Option<Output>,
    ) -> Result<i32, Exit> {
        if !yes {
            let (_, v) = self
                .json(reqwest::Method::POST, "/v1/plans", Some(body))
                .await?;
            let Some(plan) = plan_of(&v)? else {
                return Ok(nothing_to_do(to));
            };
            confirm(&plan, yes, None)?;
        }
        self.run_streamed("/v1/executions", body, Some(to), output)
            .await
    }

    /// `POST path` (`/v1/executions`, or an execution's `resume`) with
    /// `body`, followed on its own stream to the very end (a plan's
    /// `on_failure` rollback included); `to`: say so when there is nothing
    /// to do.
    async fn run_streamed(
        &self,
        path: &str,
        body: &Value,
        to: Option<&str>,
        output: Option<Output>,
    ) -> Result<i32, Exit> {
        let r = self
            .send_accepting(reqwest::Method::POST, path, Some(body), "text/event-stream")
            .await?;
        let status = r.status().as_u16();
        let is_stream = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            // Refused, or nothing to do: a JSON answer.
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status >= 400 {
                return Err(problem_exit(status, &v));
            }
            return Ok(match to {
                Some(to) => nothing_to_do(to),
                None => exit::OK,
            });
        }
        let sink = Later::new(output);
        let (_, v) = self.read_job(path, r, &sink, &mut |_, _| {}).await?;
        let f: ExecutionFinished = decode(self, v)?;
        // As locally: a plan that failed and was rolled back says so.
        if let (Outcome::Aborted, Some(r)) = (f.outcome, &f.reason) {
            eprintln!("switchyard: {r}");
        }
        Ok(crate::cli::code_of(f.outcome))
    }
}

/// The [`Exit`] a problem document with `status` stands for.
fn problem_exit(status: u16, v: &Value) -> Exit {
    Exit {
        code: code_of_status(status),
        message: v["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}")),
    }
}

/// Server-Sent Events read off a response: `(event name, data as JSON)`.
struct Sse {
    r: reqwest::Response,
    buf: String,
}

impl Sse {
    fn new(r: reqwest::Response) -> Self {
        Sse {
            r,
            buf: String::new(),
        }
    }

    /// The next named event; `None` when the stream ends.
    async fn next(&mut self) -> Result<Option<(String, Value)>, reqwest::Error> {
        loop {
            while let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // A block with no name is a keep-alive comment.
                if !name.is_empty() {
                    return Ok(Some((
                        name,
                        serde_json::from_str(&data).unwrap_or(Value::Null),
                    )));
                }
            }
            match self.r.chunk().await? {
                Some(chunk) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

/// Render one event of an execution the way local mode does; an
/// `execution_ended` gives the exit code of how it ended.
fn render_event(
    name: &str,
    v: Value,
    sink: &dyn EventSink,
    reason: &mut Option<String>,
) -> Option<i32> {
    match name {
        "report" => {
            if let Ok(report) = serde_json::from_value(v["report"].clone()) {
                sink.send(&ServiceEvent::Report {
                    report,
                    reason: reason.take(),
                });
            }
            None
        }
        "rollback_planned" => {
            let stores = serde_json::from_value(v["stores"].clone()).unwrap_or_default();
            sink.send(&ServiceEvent::RollbackPlanned {
                execution_id: v["execution_id"].as_str().unwrap_or_default().to_string(),
                stores,
            });
            None
        }
        "lagged" => None,
        _ => {
            let ev = serde_json::from_value::<ProgressEvent>(v).ok()?;
            let code = if let ProgressEvent::ExecutionEnded {
                status, reason: r, ..
            } = &ev
            {
                *reason = r.clone();
                Some(match status.as_str() {
                    "succeeded" => exit::OK,
                    "refused" => exit::REFUSED,
                    "aborted" => exit::ABORTED,
                    _ => exit::FAILED,
                })
            } else {
                None
            };
            sink.send(&ServiceEvent::Progress(ev));
            code
        }
    }
}

/// Carry `command` out on the server at `url`.
pub async fn run(url: &str, command: Command) -> Result<i32, Exit> {
    let remote = Remote::new(url)?;
    match command {
        Command::State { output } => {
            let (_, t) = remote
                .json(reqwest::Method::GET, "/v1/topology", None)
                .await?;
            let topology: Topology = serde_json::from_value(t)
                .map_err(|e| Exit::usage(format!("server topology: {e}")))?;
            let (_, st) = remote.json(reqwest::Method::GET, "/v1/state", None).await?;
            let stores = st["stores"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    let name = s["store"].as_str().unwrap_or_default().to_string();
                    let obs = match (s.get("state").filter(|v| !v.is_null()), s["error"].as_str()) {
                        (Some(v), _) => {
                            serde_json::from_value(v.clone()).map_err(|e| e.to_string())
                        }
                        (None, Some(e)) => Err(e.to_string()),
                        (None, None) => Err("not observed".to_string()),
                    };
                    (name, obs)
                })
                .collect();
            // The verdicts by the same rules as a local `state`, on what the
            // server observed.
            let stores: crate::service::Observations = stores;
            let health = stores
                .iter()
                .map(|(n, s)| {
                    let spec = topology.stores.iter().find(|t| &t.name == n);
                    let verdict = s
                        .as_ref()
                        .map(|s| crate::health::assess(s, spec, &crate::registry::notation(s.kind)))
                        .map_err(Clone::clone);
                    (n.clone(), verdict)
                })
                .collect();
            Ok(render_state(
                &StateReport {
                    topology: Arc::new(topology),
                    stores,
                    health,
                    unfinished: None,
                },
                output,
            ))
        }
        Command::Plan {
            what:
                PlanKind::Failover {
                    target,
                    timeouts,
                    output,
                },
        } => {
            let body = start_body(&target, &timeouts);
            let (_, v) = remote
                .json(reqwest::Method::POST, "/v1/plans", Some(&body))
                .await?;
            let Some(plan) = plan_of(&v)? else {
                return Ok(nothing_to_do(&target.to));
            };
            match output {
                PlanOutput::Text => print!("{}", plan.render()),
                PlanOutput::Toml => print!(
                    "{}",
                    plan.to_toml().map_err(|e| Exit::usage(e.to_string()))?
                ),
                PlanOutput::Json => crate::output::line(
                    crate::output::PLAN,
                    serde_json::to_value(&plan).unwrap_or_default(),
                ),
            }
            Ok(exit::OK)
        }
        Command::Failover {
            target,
            timeouts,
            yes,
            output,
        } => {
            let body = start_body(&target, &timeouts);
            remote.start(&body, &target.to, yes, output).await
        }
        Command::Run { plan, yes, output } => {
            let text = std::fs::read_to_string(&plan)
                .map_err(|e| Exit::usage(format!("{}: {e}", plan.display())))?;
            if !yes {
                let p = crate::validate::parse_plan(&plan.display().to_string(), &text)
                    .map_err(|e| Exit::usage(format!("plan rejected, nothing was run:\n{e}")))?;
                confirm(&p, yes, None)?;
            }
            remote
                .run_streamed("/v1/executions", &json!({"plan": text}), None, output)
                .await
        }
        Command::Resume { id, output } => {
            let id = remote
                .unfinished_or(
                    id,
                    "nothing to resume: every execution has finished or was aborted",
                )
                .await?;
            // Streamed to its very end, as a start is: a plan's
            // `on_failure = "rollback"` included, as local `resume` runs it.
            remote
                .run_streamed(
                    &format!("/v1/executions/{id}/resume"),
                    &json!({}),
                    None,
                    output,
                )
                .await
        }
        Command::Switchover {
            to,
            candidate,
            timeouts,
            yes,
            output,
        } => {
            let target = crate::cli::Target {
                to,
                forced: false,
                accept_data_loss: false,
                candidate,
            };
            let mut body = start_body(&target, &timeouts);
            body["mode"] = json!("switchover");
            remote.start(&body, &target.to, yes, output).await
        }
        Command::Abort { id, output } => {
            let id = remote
                .unfinished_or(id, "nothing to abort: no unfinished execution")
                .await?;
            let sink = Later::new(Some(output));
            let mut note = |_: &str, v: &Value| {
                if let Ok(p) = serde_json::from_value::<AbortPlanned>(v.clone()) {
                    render_abort_planned(&p, output);
                }
            };
            let (_, v) = remote
                .job(
                    &format!("/v1/executions/{id}/abort"),
                    &json!({}),
                    &sink,
                    &mut note,
                )
                .await?;
            Ok(render_abort_report(
                &decode::<AbortReport>(&remote, v)?,
                output,
            ))
        }
        Command::Rollback {
            id,
            candidate,
            timeouts,
            yes,
            output,
        } => {
            let id = remote
                .unfinished_or(id, "nothing to roll back: no unfinished execution")
                .await?;
            let path = format!("/v1/executions/{id}/rollback");
            let mut body = json!({
                "stage_timeout_ms": timeouts.stage_timeout_ms,
                "catch_up_timeout_ms": timeouts.catch_up_timeout_ms,
            });
            // Only when given: a server from before `candidate` refuses it.
            if !candidate.is_empty() {
                body["candidate"] = json!(candidate);
            }
            let sink = Later::new(output);
            // Without --yes: what the rollback does, shown and asked first.
            let shown = if yes {
                false
            } else {
                body["dry_run"] = json!(true);
                let p: RollbackPreview = remote
                    .typed(reqwest::Method::POST, &path, Some(&body))
                    .await?;
                body["dry_run"] = json!(false);
                sink.send(&ServiceEvent::RollbackPlanned {
                    execution_id: p.execution_id.clone(),
                    stores: p
                        .stores
                        .iter()
                        .map(|a| (a.store.clone(), a.action.clone()))
                        .collect(),
                });
                if let Some(plan) = &p.plan {
                    if !crate::cli::json_mode(output) {
                        print!("{}", plan.render());
                    }
                    confirm(plan, yes, None)?;
                }
                true
            };
            // The stream starts with the plan just shown: not twice.
            sink.skip.store(shown, std::sync::atomic::Ordering::SeqCst);
            let (_, v) = remote.job(&path, &body, &sink, &mut |_, _| {}).await?;
            let ended: RollbackEnded = decode(&remote, v)?;
            Ok(match ended.outcome {
                Some(o) => crate::cli::code_of(o),
                None => rolled_back_nothing(&id, output),
            })
        }
        Command::Drill {
            to,
            candidate,
            timeouts,
            yes,
            output,
        } => {
            let mut body = json!({
                "to": to,
                "stage_timeout_ms": timeouts.stage_timeout_ms,
                "catch_up_timeout_ms": timeouts.catch_up_timeout_ms,
            });
            if !candidate.is_empty() {
                body["candidate"] = json!(candidate);
            }
            if !yes {
                body["dry_run"] = json!(true);
                let p: DrillPreview = remote
                    .typed(reqwest::Method::POST, "/v1/drills", Some(&body))
                    .await?;
                body["dry_run"] = json!(false);
                confirm(&p.plan, yes, None)?;
            }
            let sink = Later::new(output);
            let (_, v) = remote
                .job("/v1/drills", &body, &sink, &mut |_, _| {})
                .await?;
            Ok(render_drill(&decode::<DrillReport>(&remote, v)?, output))
        }
        Command::Show { id, wide, output } => {
            let j: JournalView = remote
                .typed(
                    reqwest::Method::GET,
                    &format!("/v1/executions/{id}/journal"),
                    None,
                )
                .await?;
            let shown = crate::service::Shown {
                id: j.id,
                records: j.journal,
                damage: j.damage,
                report: j.report,
            };
            Ok(render_show(&shown, output, wide))
        }
        Command::Executions {
            action:
                Some(ExecutionsAction::Close {
                    id,
                    reason,
                    output: after,
                }),
            output,
        } => {
            let output = after.unwrap_or(output);
            let c: ClosedView = remote
                .typed(
                    reqwest::Method::POST,
                    &format!("/v1/executions/{id}/close"),
                    Some(&json!({"reason": reason})),
                )
                .await?;
            let closed = crate::service::ClosedExecution {
                id: c.execution_id,
                reason: c.reason,
                damage: c.damage,
            };
            Ok(render_closed(&closed, output))
        }
        Command::Executions {
            action: None,
            output,
        } => {
            let rows = remote.ledger().await?;
            Ok(render_executions(
                &rows,
                output,
                &format!("no executions on {}", remote.base),
            ))
        }
        Command::Approve { id, output } => approve(&remote, &id, output).await,
        other => Err(Exit::usage(format!(
            "`{}` is not carried out with --server; run it where it is needed (it does not talk to a server)",
            command_name(&other),
        ))),
    }
}

/// The typed last event of a job.
fn decode<T: serde::de::DeserializeOwned>(remote: &Remote, v: Value) -> Result<T, Exit> {
    serde_json::from_value(v).map_err(|e| Exit {
        code: exit::FAILED,
        message: format!("server {}: unexpected report: {e}", remote.base),
    })
}

/// The renderer of a job's events, made at its first event (as local mode
/// makes it once the job was planned, so its note on stderr comes after a
/// refusal, not before); it can pass over the first `rollback_planned`,
/// when that was shown before asking.
struct Later {
    output: Option<Output>,
    render: std::sync::OnceLock<Arc<dyn EventSink>>,
    skip: std::sync::atomic::AtomicBool,
}

impl Later {
    fn new(output: Option<Output>) -> Self {
        Later {
            output,
            render: std::sync::OnceLock::new(),
            skip: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl EventSink for Later {
    fn send(&self, ev: &ServiceEvent) {
        if matches!(ev, ServiceEvent::RollbackPlanned { .. })
            && self.skip.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        self.render
            .get_or_init(|| Render::sink(self.output))
            .send(ev);
    }
}

/// `switchyard --server URL approve ID`: the same lines and exit codes as a
/// local `approve` (0 approved, 5 refused, 2 nothing to approve, 3 another
/// execution runs); a token that is not an approver's is refused like an
/// approver token the policy does not list (5).
async fn approve(remote: &Remote, id: &str, output: crate::cli::Output) -> Result<i32, Exit> {
    let path = format!("/v1/executions/{id}/approvals");
    let r = remote
        .send(reqwest::Method::POST, &path, Some(&json!({})))
        .await?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        return Err(Exit {
            code: if status == 403 {
                exit::REFUSED
            } else {
                code_of_status(status)
            },
            message: v["detail"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_string),
        });
    }
    let by = v["approved_by"].as_str().unwrap_or("?");
    if output == crate::cli::Output::Json {
        crate::output::execution_line(crate::output::ExecutionLine::Approved(
            crate::output::ApprovedLine {
                execution_id: id.to_string(),
                status: "approved",
                approver: v["approver"].clone(),
            },
        ));
    } else {
        println!(
            "Execution {id} approved by {by}; {}",
            match v["detail"].as_str() {
                None => format!(
                    "the server runs it now (GET {}/v1/executions/{id})",
                    remote.base
                ),
                Some(d) => d.to_string(),
            }
        );
    }
    Ok(exit::OK)
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Approve { .. } => "approve",
        Command::Serve { .. } => "serve",
        Command::Token { .. } => "token",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
        _ => "this command",
    }
}

fn start_body(target: &crate::cli::Target, timeouts: &crate::cli::Timeouts) -> Value {
    let mut body = json!({
        "to": target.to,
        "mode": if target.forced { "forced" } else { "planned" },
        "accept_data_loss": target.accept_data_loss,
        "stage_timeout_ms": timeouts.stage_timeout_ms,
        "catch_up_timeout_ms": timeouts.catch_up_timeout_ms,
    });
    // Only when given: a server from before `candidate` refuses the field.
    if !target.candidate.is_empty() {
        body["candidate"] = json!(target.candidate);
    }
    body
}

fn plan_of(v: &Value) -> Result<Option<Plan>, Exit> {
    match v.get("plan").filter(|p| !p.is_null()) {
        Some(p) => serde_json::from_value(p.clone())
            .map(Some)
            .map_err(|e| Exit::usage(format!("server plan: {e}"))),
        None => Ok(None),
    }
}
