//! The two-person rule on a real PostgreSQL cluster: a failover the policy
//! wants approved is journaled `pending_approval` and touches nothing; the
//! requester cannot approve it (as the same OS user, or with a token in
//! their own name); an approver token of someone else can; only then does
//! `resume` run it; an expired request cannot be approved. Who asked and who
//! approved is in the journal and the report.

mod common;

use common::*;
use switchyard_lab::postgres::PgCluster;

const BOB_TOKEN: &str = "bob-approves-failovers";

fn sha256(s: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn me() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn policy(ws: &Workspace, expire_after_s: u64) {
    std::fs::write(
        ws.path("topology.safety.toml"),
        format!(
            "[approvals]\ntags = [\"payments\"]\nexpire_after_s = {expire_after_s}\n\n\
             [[approvals.approver]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\n\n\
             [[approvals.approver]]\nname = \"{}\"\ntoken_sha256 = \"{}\"\n",
            sha256(BOB_TOKEN),
            me(),
            sha256("my-own-token"),
        ),
    )
    .unwrap();
}

fn status_of(ws: &Workspace, id: &str) -> String {
    let r = ws.run(&["executions", "--output", "json"]);
    let list: serde_json::Value = serde_json::Value::Array(r.events());
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["execution_id"] == id)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn journal(ws: &Workspace, id: &str) -> Vec<serde_json::Value> {
    read(&ws.state.join("executions").join(format!("{id}.jsonl")))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `r` was bob's approval of `id` after its request expired: exit 5 saying
/// so, and journaled as refused.
fn refused_as_expired(ws: &Workspace, id: &str, r: &Run) {
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "the approval request of execution {id} expired at"
        )),
        "{}",
        r.stderr
    );
    let recs = journal(ws, id);
    let refused = recs.iter().find(|r| r["event"] == "approval").unwrap();
    assert_eq!(refused["approved"], false);
    assert_eq!(refused["approver"]["name"], "bob");
}

/// A lab whose store is tagged `payments`, which the policy wants approved.
async fn payments_lab() -> (PgCluster, Workspace) {
    let cluster = pg_cluster("orders").await;
    let mut topology = cluster.topology().clone();
    topology.stores[0].tags = vec!["payments".into()];
    let ws = Workspace::new(&topology);
    policy(&ws, 3600);
    (cluster, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_person_must_approve_and_an_expired_request_is_refused() {
    let (cluster, ws) = payments_lab().await;
    let (_, _, tli) = pg_primary(&cluster).await.unwrap();

    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 8, "{}\n{}", r.stdout, r.stderr);
    let pending = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "pending_approval")
        .expect("a pending_approval event");
    let id = pending["execution_id"].as_str().unwrap().to_string();
    assert!(
        pending["reasons"][0]
            .as_str()
            .unwrap()
            .contains("store `orders`, tagged payments"),
        "{pending}"
    );
    assert_eq!(status_of(&ws, &id), "pending_approval");
    let recs = journal(&ws, &id);
    assert!(recs.iter().all(|r| r["event"] != "intent"), "{recs:?}");
    assert_eq!(pg_primary(&cluster).await.unwrap().2, tli, "nothing issued");

    // Not yet approved: resume refuses.
    let r = ws.run(&["resume", &id]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("is pending_approval"), "{}", r.stderr);

    // The requester, as the same OS user: refused, and journaled.
    let r = ws.run(&["approve", &id]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("self-approval refused: {}", me())),
        "{}",
        r.stderr
    );
    // The requester with a token in their own name: refused too.
    let r = ws.run_env(
        &["approve", &id],
        "SWITCHYARD_APPROVER_TOKEN",
        "my-own-token",
    );
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("the approver token belongs to"),
        "{}",
        r.stderr
    );
    // A token nobody holds: refused.
    let r = ws.run_env(&["approve", &id], "SWITCHYARD_APPROVER_TOKEN", "guess");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        !r.stderr.contains("guess"),
        "the token is never echoed: {}",
        r.stderr
    );
    assert_eq!(status_of(&ws, &id), "pending_approval");
    assert_eq!(pg_primary(&cluster).await.unwrap().2, tli);

    // Bob approves; then resume runs it.
    let r = ws.run_env(&["approve", &id], "SWITCHYARD_APPROVER_TOKEN", BOB_TOKEN);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("approved by bob (approver token"),
        "{}",
        r.stdout
    );
    let text = read(&ws.state.join("executions").join(format!("{id}.jsonl")));
    assert!(
        !text.contains(BOB_TOKEN) && !text.contains("my-own-token"),
        "no token in the journal"
    );
    let r = ws.run(&["resume", &id, "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (_, region, now) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), now), ("west", tli + 1));
    let report = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "report")
        .unwrap();
    let approval = &report["report"]["approval"];
    assert_eq!(approval["request"]["requester"]["name"], me());
    assert_eq!(approval["approved_by"]["approver"]["name"], "bob");
    assert_eq!(approval["refused"].as_array().unwrap().len(), 3);
    let show = ws.run(&["show", &id]);
    assert!(
        show.stdout
            .contains(&format!("approval: requested by {}", me())),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("approved by bob"), "{}", show.stdout);

    // A request that expires before anyone approves it cannot be approved.
    policy(&ws, 1);
    let r = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
    assert_eq!(r.code, 8, "{}\n{}", r.stdout, r.stderr);
    let id2 = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "pending_approval")
        .unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = ws.run_env(&["approve", &id2], "SWITCHYARD_APPROVER_TOKEN", BOB_TOKEN);
    refused_as_expired(&ws, &id2, &r);
    assert_eq!(ws.run(&["resume", &id2]).code, 8);
    assert_eq!(pg_primary(&cluster).await.unwrap().1, "west", "nothing ran");
}

async fn post(url: &str, tok: Option<&str>) -> (u16, serde_json::Value) {
    let mut rq = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({}));
    if let Some(t) = tok {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or_default())
}

async fn start(url: &str, tok: &str, to: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/executions"))
        .bearer_auth(tok)
        .json(&serde_json::json!({ "to": to }))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

async fn executions(url: &str, tok: &str) -> Vec<serde_json::Value> {
    reqwest::Client::new()
        .get(format!("{url}/v1/executions"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The same rule over `switchyard serve`: the requester is the name of the
/// token that started it, approving needs the approver role and another
/// name, every attempt is journaled, `switchyard --server URL approve`
/// answers like the local command, and the approved execution runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_api_the_token_holder_approves_and_the_server_runs_it() {
    use common::serve::{named_token, Server};
    let (cluster, ws) = payments_lab().await;
    let tokens = ws.path("tokens");
    let alice = named_token(&ws, &tokens, "approver", "alice");
    let bob = named_token(&ws, &tokens, "approver", "bob");
    let carol = named_token(&ws, &tokens, "operator", "carol");
    let s = Server::start(&ws, &tokens, "a", &[]);
    let url = s.url.clone();
    let (_, _, tli) = pg_primary(&cluster).await.unwrap();

    let doc: serde_json::Value = reqwest::get(format!("{url}/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented = &doc["paths"]["/v1/executions/{id}/approvals"]["post"]["responses"];
    for code in ["202", "401", "403", "409", "422"] {
        assert!(
            documented[code].is_object(),
            "{code} not documented: {documented}"
        );
    }

    // Alice starts it: journaled pending_approval in her name, nothing issued.
    let (code, p) = start(&url, &alice, "west").await;
    assert_eq!(code, 202, "{p}");
    assert_eq!(p["type"], "urn:switchyard:problem:pending-approval", "{p}");
    let list = executions(&url, &alice).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["status"], "pending_approval");
    assert_eq!(list[0]["started_by"], "alice");
    assert_eq!(
        list[0]["approval"]["request"]["requester"]["name"], "alice",
        "{list:?}"
    );
    assert!(list[0].get("duration_ms").is_none(), "{list:?}");
    let approvals = format!("{url}/v1/executions/{id}/approvals");

    // Nobody, her own token, an operator: refused (the last two journaled).
    assert_eq!(post(&approvals, None).await.0, 401);
    let (code, p) = post(&approvals, Some(&alice)).await;
    assert_eq!(code, 422, "{p}");
    assert_eq!(
        p["type"], "urn:switchyard:problem:refused",
        "RFC 9457 problem: {p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("self-approval refused: alice"),
        "{p}"
    );
    let (code, p) = post(&approvals, Some(&carol)).await;
    assert_eq!(code, 403, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("needs approver"),
        "{p}"
    );
    // The CLI with the operator's token: refused like an unlisted approver token.
    let r = ws.run_env(
        &["--server", &url, "approve", &id],
        "SWITCHYARD_TOKEN",
        &carol,
    );
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(pg_primary(&cluster).await.unwrap().2, tli, "nothing issued");
    assert_eq!(
        executions(&url, &alice).await[0]["status"],
        "pending_approval"
    );

    // Bob approves with the CLI through the server; it runs at once.
    let r = ws.run_env(
        &["--server", &url, "approve", &id],
        "SWITCHYARD_TOKEN",
        &bob,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("Execution {id} approved by bob (API token tok-")),
        "{}",
        r.stdout
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let done = loop {
        let e: serde_json::Value = reqwest::Client::new()
            .get(format!("{url}/v1/executions/{id}"))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !["running", "pending_approval"].contains(&e["status"].as_str().unwrap()) {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["started_by"], "alice", "{done}");
    assert!(done["duration_ms"].as_u64().unwrap() > 0, "{done}");
    let approval = &done["report"]["approval"];
    assert_eq!(approval["request"]["requester"]["via"], "bearer_token");
    assert_eq!(approval["approved_by"]["approver"]["name"], "bob");
    let refused: Vec<&str> = approval["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["approver"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["alice", "carol", "carol"], "{approval}");
    let (_, region, now) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), now), ("west", tli + 1));
    let text = read(&ws.state.join("executions").join(format!("{id}.jsonl")));
    for t in [&alice, &bob, &carol] {
        assert!(!text.contains(t.as_str()), "no token in the journal");
    }
    // Approving it again: nothing to approve (exit 2, as locally).
    let r = ws.run_env(
        &["--server", &url, "approve", &id],
        "SWITCHYARD_TOKEN",
        &bob,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);

    // An expired request: refused (422 / exit 5), journaled, nothing runs.
    policy(&ws, 1);
    let (code, p) = start(&url, &alice, "east").await;
    assert_eq!(code, 202, "{p}");
    let id2 = executions(&url, &alice)
        .await
        .into_iter()
        .find(|e| e["status"] == "pending_approval")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = ws.run_env(
        &["--server", &url, "approve", &id2, "--output", "json"],
        "SWITCHYARD_TOKEN",
        &bob,
    );
    refused_as_expired(&ws, &id2, &r);
    assert_eq!(pg_primary(&cluster).await.unwrap().1, "west", "nothing ran");
}
