//! `switchyard --server URL <command>`: the CLI's commands carried out by a
//! `switchyard serve` over its API, rendered by the same code as local mode,
//! with the same exit codes. The bearer token comes from `SWITCHYARD_TOKEN`
//! (an environment variable, not an argument, so it never shows in `ps`);
//! `SWITCHYARD_CA_CERT` names a PEM file to trust for an HTTPS server.
//!
//! Carried: `state` (the server's last-known observation), `plan failover`,
//! `failover`, `run`, `resume`, `approve` (as the holder of the token, which
//! needs the approver role; the server then runs the execution). The others (`abort`, `drill`, `show`,
//! `executions`) refuse with exit code 2 naming the API to use instead.

use crate::cli::{
    confirm, exit, nothing_to_do, render_state, Command, Exit, PlanKind, PlanOutput, Render,
};
use crate::plan::Plan;
use crate::progress::ProgressEvent;
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
        let mut url = format!("{}{path}", self.base);
        for _ in 0..2 {
            let mut rq = self.http.request(method.clone(), &url);
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
            let detail = v["detail"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(Exit {
                code: code_of_status(status),
                message: detail,
            });
        }
        Ok((status, v))
    }

    /// Follow an execution's events to its end, rendering them; the exit
    /// code comes from how it ended.
    async fn follow(&self, id: &str, sink: Arc<dyn EventSink>) -> Result<i32, Exit> {
        let mut r = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/executions/{id}/events"),
                None,
            )
            .await?;
        if !r.status().is_success() {
            return Err(Exit {
                code: code_of_status(r.status().as_u16()),
                message: format!("events of {id}: HTTP {}", r.status()),
            });
        }
        let mut buf = String::new();
        let (mut name, mut data) = (String::new(), String::new());
        let mut code = None;
        let mut status_seen = None;
        // Local mode prints an execution's reason after its report.
        let mut reason = None;
        loop {
            let chunk = r.chunk().await.map_err(|e| Exit {
                code: exit::FAILED,
                message: format!("events of {id}: {e}"),
            })?;
            let Some(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find('\n') {
                let line = buf[..i].trim_end_matches('\r').to_string();
                buf.drain(..=i);
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                } else if line.is_empty() && !name.is_empty() {
                    let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    match name.as_str() {
                        "status" => status_seen = v["status"].as_str().map(str::to_string),
                        "report" => {
                            if let Ok(report) = serde_json::from_value(v["report"].clone()) {
                                sink.send(&ServiceEvent::Report {
                                    report,
                                    reason: reason.take(),
                                });
                            }
                        }
                        "lagged" => {}
                        _ => {
                            if let Ok(ev) = serde_json::from_value::<ProgressEvent>(v) {
                                if let ProgressEvent::ExecutionEnded {
                                    status, reason: r, ..
                                } = &ev
                                {
                                    code = Some(match status.as_str() {
                                        "succeeded" => exit::OK,
                                        "refused" => exit::REFUSED,
                                        "aborted" => exit::ABORTED,
                                        _ => exit::FAILED,
                                    });
                                    reason = r.clone();
                                }
                                sink.send(&ServiceEvent::Progress(ev));
                            }
                        }
                    }
                    name.clear();
                    data.clear();
                } else if line.is_empty() {
                    data.clear();
                }
            }
        }
        match (code, status_seen.as_deref()) {
            (Some(c), _) => Ok(c),
            // Ended before we looked: its status says how.
            (None, Some("succeeded")) => Ok(exit::OK),
            (None, Some("aborted")) => Ok(exit::ABORTED),
            (None, Some(s)) if s != "running" => Ok(exit::FAILED),
            _ => Err(Exit {
                code: exit::FAILED,
                message: format!("the event stream of {id} ended before the execution did; `switchyard --server {} resume {id}` once it is back", self.base),
            }),
        }
    }
}

/// Carry `command` out on the server at `url`.
pub async fn run(url: &str, command: Command) -> Result<i32, Exit> {
    let remote = Remote::new(url)?;
    match command {
        Command::State { output } => {
            let (_, t) = remote.json(reqwest::Method::GET, "/v1/topology", None).await?;
            let topology: Topology = serde_json::from_value(t).map_err(|e| Exit::usage(format!("server topology: {e}")))?;
            let (_, st) = remote.json(reqwest::Method::GET, "/v1/state", None).await?;
            let stores = st["stores"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    let name = s["store"].as_str().unwrap_or_default().to_string();
                    let obs = match (s.get("state").filter(|v| !v.is_null()), s["error"].as_str()) {
                        (Some(v), _) => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
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
                        .map(|s| {
                            crate::health::assess(s, spec, &crate::registry::notation(s.kind))
                        })
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
        Command::Plan { what: PlanKind::Failover { target, timeouts, output } } => {
            let body = start_body(&target, &timeouts);
            let (_, v) = remote.json(reqwest::Method::POST, "/v1/plans", Some(&body)).await?;
            let Some(plan) = plan_of(&v)? else { return Ok(nothing_to_do(&target.to)) };
            match output {
                PlanOutput::Text => print!("{}", plan.render()),
                PlanOutput::Toml => print!("{}", plan.to_toml().map_err(|e| Exit::usage(e.to_string()))?),
                PlanOutput::Json => crate::output::line(crate::output::PLAN, serde_json::to_value(&plan).unwrap_or_default()),
            }
            Ok(exit::OK)
        }
        Command::Failover { target, timeouts, yes, output } => {
            let body = start_body(&target, &timeouts);
            if !yes {
                let (_, v) = remote.json(reqwest::Method::POST, "/v1/plans", Some(&body)).await?;
                let Some(plan) = plan_of(&v)? else { return Ok(nothing_to_do(&target.to)) };
                confirm(&plan, yes, output, None)?;
            }
            let (_, v) = remote.json(reqwest::Method::POST, "/v1/executions", Some(&body)).await?;
            match v["id"].as_str() {
                Some(id) => remote.follow(id, Render::sink(output)).await,
                None => Ok(nothing_to_do(&target.to)),
            }
        }
        Command::Run { plan, yes, output } => {
            let text = std::fs::read_to_string(&plan).map_err(|e| Exit::usage(format!("{}: {e}", plan.display())))?;
            if !yes {
                let p = crate::validate::parse_plan(&plan.display().to_string(), &text)
                    .map_err(|e| Exit::usage(format!("plan rejected, nothing was run:\n{e}")))?;
                confirm(&p, yes, output, None)?;
            }
            let (_, v) = remote.json(reqwest::Method::POST, "/v1/executions", Some(&json!({"plan": text}))).await?;
            let id = v["id"].as_str().unwrap_or_default().to_string();
            remote.follow(&id, Render::sink(output)).await
        }
        Command::Resume { id, output } => {
            let id = match id {
                Some(id) => id,
                None => {
                    let (_, all) = remote.json(reqwest::Method::GET, "/v1/executions", None).await?;
                    all.as_array()
                        .and_then(|a| a.iter().rev().find(|e| e["resumable"] == json!(true)))
                        .and_then(|e| e["id"].as_str())
                        .map(str::to_string)
                        .ok_or_else(|| Exit::usage("nothing to resume: every execution has finished or was aborted"))?
                }
            };
            let (_, v) = remote
                .json(reqwest::Method::POST, &format!("/v1/executions/{id}/resume"), Some(&json!({})))
                .await?;
            let id = v["id"].as_str().unwrap_or(&id).to_string();
            remote.follow(&id, Render::sink(output)).await
        }
        Command::Approve { id, output } => approve(&remote, &id, output).await,
        other => Err(Exit::usage(format!(
            "`{}` is not carried out with --server yet; use the API (docs/server.md) or run it on the server's machine",
            command_name(&other)
        ))),
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
        println!(
            "{}",
            json!({"execution_id": id, "status": "approved", "approver": v["approver"]})
        );
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
        Command::Abort { .. } => "abort",
        Command::Drill { .. } => "drill",
        Command::Show { .. } => "show",
        Command::Executions { .. } => "executions",
        Command::Serve { .. } => "serve",
        Command::Token { .. } => "token",
        _ => "this command",
    }
}

fn start_body(target: &crate::cli::Target, timeouts: &crate::cli::Timeouts) -> Value {
    json!({
        "to": target.to,
        "mode": if target.forced { "forced" } else { "planned" },
        "accept_data_loss": target.accept_data_loss,
        "stage_timeout_ms": timeouts.stage_timeout_ms,
        "catch_up_timeout_ms": timeouts.catch_up_timeout_ms,
    })
}

fn plan_of(v: &Value) -> Result<Option<Plan>, Exit> {
    match v.get("plan").filter(|p| !p.is_null()) {
        Some(p) => serde_json::from_value(p.clone())
            .map(Some)
            .map_err(|e| Exit::usage(format!("server plan: {e}"))),
        None => Ok(None),
    }
}
