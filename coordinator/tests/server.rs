//! `switchyard serve` against a real PostgreSQL lab: the pinned API (202 +
//! id + Location, status values, 409 naming the running execution, leader),
//! auth (401/403, hashed tokens), SSE, metrics, the OpenAPI document checked
//! against the running server, a follower's 307, SIGHUP reload, TLS.

mod common;

use common::serve::{read, token, Server};
use common::{pg_cluster, pg_primary, Workspace};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn get(url: &str, tok: &str) -> (u16, Value) {
    let r = client().get(url).bearer_auth(tok).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(url: &str, tok: &str, body: Value) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Poll `GET /v1/executions/{id}` until its status is not `running`.
async fn until_done(url: &str, tok: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (code, v) = get(&format!("{url}/v1/executions/{id}"), tok).await;
        assert_eq!(code, 200, "{v}");
        let s = v["status"].as_str().unwrap().to_string();
        assert!(
            [
                "pending_approval",
                "running",
                "succeeded",
                "failed",
                "aborted"
            ]
            .contains(&s.as_str()),
            "{v}"
        );
        if s != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "{id} still running: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_failovers_with_auth_events_metrics_and_openapi() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let tokens = ws.path("tokens");
    let viewer = token(&ws, &tokens, "viewer");
    let operator = token(&ws, &tokens, "operator");
    let approver = token(&ws, &tokens, "approver");
    let stored = read(&tokens);
    assert!(
        !stored.contains(&viewer) && !stored.contains(&operator),
        "tokens are stored hashed: {stored}"
    );
    let s = Server::start(&ws, &tokens, "a", &[]);
    let url = s.url.clone();

    // Liveness without a token; everything else needs one.
    let r = client().get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{url}/v1/topology"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert!(r.headers().contains_key("www-authenticate"));
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 401, "{p}");
    let (code, _) = get(&format!("{url}/v1/topology"), "sy_not-a-token").await;
    assert_eq!(code, 401);
    let r = post(
        &format!("{url}/v1/executions"),
        &viewer,
        json!({"to": "west"}),
    )
    .await;
    assert_eq!(r.status(), 403, "a viewer cannot start");
    let r = post(
        &format!("{url}/v1/executions"),
        &operator,
        json!({"to": "west", "mode": "forced", "accept_data_loss": true}),
    )
    .await;
    assert_eq!(r.status(), 403, "accepting data loss needs an approver");
    let r = post(
        &format!("{url}/v1/executions"),
        &operator,
        json!({"to": "mars"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("mars"), "{p}");

    // Ready once the observer has seen every store.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready: {}", s.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, st) = get(&format!("{url}/v1/state"), &viewer).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["stores"][0]["store"], "orders");
    assert!(
        st["stores"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("in east"),
        "{st}"
    );
    assert!(ws.state.join("last-known-state.json").exists());
    let (code, l) = get(&format!("{url}/v1/leader"), &viewer).await;
    assert_eq!((code, l["url"].as_str().unwrap()), (200, url.as_str()));
    let (code, t) = get(&format!("{url}/v1/topology"), &viewer).await;
    assert_eq!((code, &t["name"]), (200, &json!(cluster.topology().name)));

    // Plan preview: nothing is touched.
    let r = post(&format!("{url}/v1/plans"), &viewer, json!({"to": "west"})).await;
    assert_eq!(r.status(), 200);
    let pv: Value = r.json().await.unwrap();
    assert!(!pv["plan"]["stages"].as_array().unwrap().is_empty(), "{pv}");

    // A slow execution: 202 + id + Location; live events; a second start
    // answers 409 naming it.
    let r = post(
        &format!("{url}/v1/executions"),
        &operator,
        json!({"plan": common::hold_the_lock_plan(&cluster.topology().name, 20000)}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let id1 = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(loc, format!("/v1/executions/{id1}"));
    let events = client()
        .get(format!("{url}/v1/executions/{id1}/events"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let (code, v) = get(&format!("{url}/v1/executions/{id1}"), &viewer).await;
    assert_eq!(
        (code, v["status"].as_str().unwrap()),
        (200, "running"),
        "{v}"
    );
    let r = post(
        &format!("{url}/v1/executions"),
        &operator,
        json!({"to": "west"}),
    )
    .await;
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["running_execution"], json!(id1), "{p}");
    assert!(p["detail"].as_str().unwrap().contains(&id1), "{p}");
    let body = tokio::time::timeout(Duration::from_secs(120), events.text())
        .await
        .expect("the event stream ends with the execution")
        .unwrap();
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"status"), "{body}");
    for want in [
        "stage_started",
        "checkpoint_finished",
        "execution_ended",
        "report",
    ] {
        assert!(names.contains(&want), "no {want} in:\n{body}");
    }
    // The stream ended with the report: the execution is over, and a
    // client asking at once (the console does) reads how it ended.
    let (_, v) = get(&format!("{url}/v1/executions/{id1}"), &viewer).await;
    assert_eq!(v["status"], "failed", "{v}");
    let v = until_done(&url, &viewer, &id1).await;
    assert_eq!(v["status"], "failed", "{v}");

    // The real failover.
    let (_, _, tli0) = pg_primary(&cluster).await.unwrap();
    let r = post(
        &format!("{url}/v1/executions"),
        &approver,
        json!({"to": "west"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let id2 = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = until_done(&url, &viewer, &id2).await;
    assert_eq!(v["status"], "succeeded", "{v}\n{}", s.stderr());
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), ("west", tli0 + 1));
    let (code, all) = get(&format!("{url}/v1/executions"), &viewer).await;
    assert_eq!(code, 200);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id1.as_str()) && ids.contains(&id2.as_str()),
        "{all}"
    );
    // Already there: nothing to start.
    let r = post(
        &format!("{url}/v1/executions"),
        &operator,
        json!({"to": "west"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], Value::Null);

    // Metrics.
    let r = client()
        .get(format!("{url}/metrics"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = r.text().await.unwrap();
    for want in [
        "switchyard_executions_total{outcome=\"succeeded\"} 1",
        "switchyard_executions_total{outcome=\"refused\"} 1",
        "switchyard_leader 1",
        "switchyard_observation_age_seconds{store=\"orders\"}",
        "switchyard_operation_duration_seconds_count{store=\"orders\",op=\"promote\"} 1",
    ] {
        assert!(m.contains(want), "no `{want}` in:\n{m}");
    }
    for secret in [&viewer, &operator, &approver] {
        assert!(!m.contains(secret.as_str()) && !s.stderr().contains(secret.as_str()));
    }

    // The OpenAPI document, checked against this server: every documented
    // parameterless GET answers with one of its documented statuses.
    let r = client()
        .get(format!("{url}/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/executions",
        "/v1/executions/{id}",
        "/v1/executions/{id}/events",
        "/v1/executions/{id}/resume",
        "/v1/executions/{id}/abort",
        "/v1/leader",
        "/v1/state",
        "/v1/topology",
        "/v1/plans",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} not documented");
    }
    assert!(paths["/v1/executions"]["post"]["responses"]["202"].is_object());
    assert!(paths["/v1/executions"]["post"]["responses"]["409"].is_object());
    for (path, ops) in paths {
        let Some(op) = ops.get("get") else { continue };
        let path = path.replace("{id}", &id2);
        let r = client()
            .get(format!("{url}{path}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16().to_string();
        assert!(
            op["responses"].get(&code).is_some(),
            "GET {path} answered {code}, not documented: {}",
            op["responses"]
        );
    }
    let r = client()
        .get(format!("{url}/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A second server on the same state directory follows: it answers
    // reads, names the leader, and redirects mutating requests to it.
    let b = Server::start(&ws, &tokens, "b", &[]);
    let (code, l) = get(&format!("{}/v1/leader", b.url), &viewer).await;
    assert_eq!(
        (code, l["url"].as_str().unwrap()),
        (200, url.as_str()),
        "{l}"
    );
    let r = post(
        &format!("{}/v1/executions", b.url),
        &operator,
        json!({"to": "east"}),
    )
    .await;
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{url}/v1/executions")
    );
    drop(b);

    // TLS: the same API over HTTPS with a certificate the client trusts.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (crt, key) = (ws.path("tls.crt"), ws.path("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let c = Server::start(
        &ws,
        &tokens,
        "c",
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = tls
        .get(format!("{}/v1/leader", c.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["url"], json!(url));
    drop(c);

    // `--server URL`: the CLI's output and exit codes, carried out remotely.
    let remote = |args: &[&str], tok: &str| {
        let mut c = ws.command(&[&["--server", url.as_str()], args].concat());
        c.env("SWITCHYARD_TOKEN", tok);
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let local = ws.run(&["plan", "failover", "--to", "east", "--output", "json"]);
    let (code, out, err) = remote(
        &["plan", "failover", "--to", "east", "--output", "json"],
        &viewer,
    );
    // The same document but for the moment it was printed (`ts`).
    let without_ts = |s: &str| -> Value {
        let mut v: Value = serde_json::from_str(s.trim()).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("ts");
        }
        v
    };
    assert_eq!(
        (code, without_ts(&out)),
        (local.code, without_ts(&local.stdout)),
        "{err}"
    );
    assert!(
        out.trim().lines().count() == 1 && out.contains("\"ts\":"),
        "{out}"
    );
    let (code, _, err) = remote(&["failover", "--to", "east", "--yes"], &viewer);
    assert_eq!(code, 2, "a viewer is refused like a usage error: {err}");
    assert!(err.contains("needs operator"), "{err}");
    let (code, _, err) = remote(&["abort"], &operator);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = remote(
        &["failover", "--to", "east", "--yes", "--output", "json"],
        &operator,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"execution_started"), "{out}");
    assert_eq!(kinds.last(), Some(&"report"), "{out}");
    assert!(kinds.contains(&"execution_ended"), "{out}");
    let (_, region, tli2) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli2), ("east", tli0 + 2));
    let (code, _, err) = remote(&["failover", "--to", "east", "--yes"], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already primary in east"), "{err}");
    // Last-known state through the same renderer: the same summary lines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let local = ws.run(&["state"]);
    let (code, out, err) = remote(&["state"], &viewer);
    assert_eq!(code, local.code, "{err}");
    let summary = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("orders "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&out),
        summary(&local.stdout),
        "remote:\n{out}\nlocal:\n{}",
        local.stdout
    );

    // SIGHUP: a bad topology is refused and the old one kept.
    let good = read(&ws.topology);
    std::fs::write(&ws.topology, "name = \"broken\"\n[[stores]]\nkind = 7\n").unwrap();
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.stderr().contains("keeping the old topology") {
        assert!(
            Instant::now() < deadline,
            "no reload message: {}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = s.stderr();
    assert!(
        err.contains(ws.topology.to_str().unwrap()),
        "names the file: {err}"
    );
    let (code, t) = get(&format!("{url}/v1/topology"), &viewer).await;
    assert_eq!((code, &t["name"]), (200, &json!(cluster.topology().name)));
    std::fs::write(&ws.topology, good).unwrap();
}

#[test]
fn serve_refuses_a_backend_it_cannot_use() {
    for (backend, says) in [
        ("etcd://", "HOST:PORT"),
        ("consul://a:1,b:2", "one agent"),
        ("zookeeper://x:1", "expected `file`"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "serve",
                "--backend",
                backend,
                "--tokens-file",
                "/nonexistent",
            ])
            .env_remove("SWITCHYARD_TOPOLOGY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(backend) && err.contains(says), "{err}");
    }
}
