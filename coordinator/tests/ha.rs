//! High availability: three `switchyard serve` processes on one coordination
//! backend (real etcd; the lab's Consul simulator) against a real
//! PostgreSQL lab.
//!
//! - The leader is killed (a failpoint aborts it, as `kill -9` would) right
//!   after it promoted, before it journaled the outcome: another server
//!   becomes leader, finds the execution in the backend and finishes it,
//!   with exactly one promotion (timeline + 1) and every acknowledged write.
//! - The crashed leader's token, the store's view of a stale server, is
//!   refused by the store.
//! - Two clients start executions at the same moment on two servers:
//!   exactly one runs, the other gets 409 naming it.
//!
//! No timing is asserted: every wait is bounded generously and fails
//! saying what it waited for.

mod common;

use common::serve::{read, token, Server};
use common::{pg_primary, pg_tags, pg_write, plan_ops, until, writable, Workspace, WAIT};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_coordination::Coordinator;
use switchyard_lab::postgres::PgCluster;
use tokio::time::Instant;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(url: &str, tok: &str) -> Option<(u16, Value)> {
    let r = client().get(url).bearer_auth(tok).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.unwrap_or(Value::Null)))
}

/// POST as an orchestrator does: a follower's 307 is followed to the
/// leader it names, with the same token and body.
async fn post_following(url: &str, tok: &str, body: &Value) -> (u16, Value) {
    let mut url = url.to_string();
    for _ in 0..3 {
        let r = client()
            .post(&url)
            .bearer_auth(tok)
            .json(body)
            .send()
            .await
            .unwrap();
        if r.status() == 307 {
            url = r.headers()["location"].to_str().unwrap().to_string();
            continue;
        }
        let code = r.status().as_u16();
        return (code, r.json().await.unwrap_or(Value::Null));
    }
    panic!("redirected more than twice from {url}");
}

/// Which of `servers` leads, as each says of itself (exactly one).
async fn leader_of(servers: &[&Server], viewer: &str) -> usize {
    until("one server says it leads", || async {
        let mut leading = vec![];
        for (i, s) in servers.iter().enumerate() {
            if let Some((200, v)) = get(&format!("{}/v1/leader", s.url), viewer).await {
                if v["this_server"] == json!(true) {
                    leading.push(i);
                }
            }
        }
        (leading.len() == 1).then(|| leading[0])
    })
    .await
}

async fn until_status(url: &str, viewer: &str, id: &str, want: &str) -> Value {
    until(&format!("{id} {want} at {url}"), || async {
        let (_, v) = get(&format!("{url}/v1/executions/{id}"), viewer).await?;
        (v["status"] == json!(want)).then_some(v)
    })
    .await
}

/// `id` as `url` shows it once its journal is no longer `unfinished`.
async fn until_ended(url: &str, viewer: &str, id: &str) -> Value {
    until(&format!("{id} ends at {url}"), || async {
        let (_, v) = get(&format!("{url}/v1/executions/{id}"), viewer).await?;
        let js = v["journal_status"].as_str()?;
        (js != "unfinished").then_some(v)
    })
    .await
}

/// The records of `id`'s journal as the backend holds them (JSON, one per
/// entry).
async fn journal(backend: &dyn Coordinator, id: &str) -> Vec<Value> {
    backend
        .entries(id)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect()
}

/// How to run a server on the backend under test.
struct Backend {
    /// `--backend` and `--lease-ttl`.
    args: Vec<String>,
    /// A client of the same backend, to read the journal.
    client: Box<dyn Coordinator>,
}

async fn three_servers_survive_the_leaders_death(cluster: PgCluster, backend: Backend) {
    let ws: Vec<Workspace> = (0..3).map(|_| Workspace::new(cluster.topology())).collect();
    let tokens = ws[0].path("tokens");
    let viewer = token(&ws[0], &tokens, "viewer");
    let operator = token(&ws[0], &tokens, "operator");
    let args: Vec<&str> = backend.args.iter().map(String::as_str).collect();

    let (_, from, tli0) = pg_primary(&cluster).await.expect("a primary");
    let to = if from == "east" { "west" } else { "east" };
    let plan = ws[0].run(&["plan", "failover", "--to", to, "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let promote = plan_ops(&plan.stdout)
        .iter()
        .position(|op| op == "promote")
        .expect("the plan promotes")
        + 1;

    // The first server alone, so it leads; it dies right after it
    // promoted, before the outcome is journaled.
    let crash_at = format!("after:{promote}");
    let mut a = Server::start_env(
        &ws[0],
        &tokens,
        "a",
        &args,
        &[("SWITCHYARD_CRASH_AT", crash_at.as_str())],
    );
    until("a leads", || async {
        let (_, v) = get(&format!("{}/v1/leader", a.url), &viewer).await?;
        (v["this_server"] == json!(true)).then_some(())
    })
    .await;
    let b = Server::start(&ws[1], &tokens, "b", &args);
    let c = Server::start(&ws[2], &tokens, "c", &args);
    for s in [&a, &b, &c] {
        until(&format!("{} ready", s.url), || async {
            let r = client()
                .get(format!("{}/readyz", s.url))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
    // Every server names the same leader.
    for s in [&b, &c] {
        until("followers know the leader", || async {
            let (_, v) = get(&format!("{}/v1/leader", s.url), &viewer).await?;
            (v["url"] == json!(a.url)).then_some(())
        })
        .await;
    }
    pg_write(&cluster, "before").await;

    // Started on a follower: redirected to the leader.
    let (code, started) = post_following(
        &format!("{}/v1/executions", b.url),
        &operator,
        &json!({"to": to}),
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the leader's failpoint never fired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "the leader should have died: {status:?}");
    assert!(a.stderr().contains("failpoint"), "{}", a.stderr());

    // Another server takes over and finishes the same execution.
    let survivors = [&b, &c];
    let new = survivors[leader_of(&survivors, &viewer).await];
    let done = until_status(&new.url, &viewer, &id, "succeeded").await;
    assert_eq!(done["id"], json!(id));
    let (_, region, tli) = pg_primary(&cluster).await.expect("a primary after");
    assert_eq!(region, to, "primary in the target region");
    assert_eq!(tli, tli0 + 1, "exactly one promotion (timeline + 1)");
    pg_write(&cluster, "after").await;
    assert_eq!(pg_tags(&cluster).await, vec!["before", "after"]);
    // Every server shows it succeeded (the journal is in the backend).
    for s in survivors {
        until_status(&s.url, &viewer, &id, "succeeded").await;
    }

    // The journal: started by a, resumed once by the new leader with a
    // greater token; the promotion re-observed, not re-issued blindly.
    let recs = journal(backend.client.as_ref(), &id).await;
    let of = |t: &str| -> Vec<&Value> { recs.iter().filter(|r| r["event"] == json!(t)).collect() };
    let first = of("started")[0]["fencing_token"].as_u64().unwrap();
    let resumed = of("resumed");
    assert_eq!(resumed.len(), 1, "{recs:#?}");
    let second = resumed[0]["fencing_token"].as_u64().unwrap();
    assert!(second > first, "tokens {first} then {second}");
    assert_eq!(of("finished").len(), 1);

    // The dead leader's token, as a stale server would still carry it, is
    // refused by the store itself.
    let store = &cluster.topology().stores[0];
    let ctl = switchyard::registry::controller_for(store).unwrap();
    let stale = switchyard_controller::OpContext::new(id.clone(), first);
    let e = ctl
        .execute(&switchyard_controller::Operation::Fence, &stale)
        .await
        .expect_err("a stale token is refused");
    assert_eq!(e.kind(), switchyard_controller::ErrorKind::Refused, "{e}");
    let fresh = switchyard_controller::OpContext::new("someone-else", second);
    let e = ctl
        .execute(&switchyard_controller::Operation::Fence, &fresh)
        .await
        .expect_err("the same token from another execution is refused");
    assert_eq!(e.kind(), switchyard_controller::ErrorKind::Refused, "{e}");
    assert_eq!(
        pg_primary(&cluster).await.unwrap().2,
        tli,
        "nothing changed on the store"
    );

    // Two clients at the same moment, on the leader and on a follower:
    // exactly one execution runs, the other is told which (409).
    let other = survivors
        .iter()
        .find(|s| s.url != new.url)
        .copied()
        .unwrap();
    let body = json!({"to": from});
    let (u1, u2) = (
        format!("{}/v1/executions", new.url),
        format!("{}/v1/executions", other.url),
    );
    let (r1, r2) = tokio::join!(
        post_following(&u1, &operator, &body),
        post_following(&u2, &operator, &body),
    );
    let mut codes = [r1.0, r2.0];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409], "{r1:?} {r2:?}");
    let (won, lost) = if r1.0 == 202 {
        (r1.1, r2.1)
    } else {
        (r2.1, r1.1)
    };
    let id2 = won["id"].as_str().unwrap();
    assert_eq!(lost["running_execution"], json!(id2), "{lost}");
    until_status(&new.url, &viewer, id2, "succeeded").await;
    let (_, region, tli2) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli2), (from.as_str(), tli + 1));
    drop((b, c));
    let _ = read(&a.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_etcd_survive_the_leaders_death() {
    let etcd = switchyard_lab::etcd::EtcdCluster::start(1, None)
        .await
        .expect("etcd lab");
    let endpoints = etcd.endpoints();
    let mut o = switchyard_coordination::etcd::EtcdOptions::new(endpoints.clone());
    o.ttl = Duration::from_secs(3);
    let client = switchyard_coordination::etcd::Etcd::connect(o)
        .await
        .unwrap();
    let cluster = common::pg_cluster("orders").await;
    three_servers_survive_the_leaders_death(
        cluster,
        Backend {
            args: vec![
                "--backend".into(),
                format!("etcd://{}", endpoints.join(",")),
                "--lease-ttl".into(),
                "3".into(),
            ],
            client: Box::new(client),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_consul_survive_the_leaders_death() {
    let sim = switchyard_lab::consulsim::ConsulSim::start("127.0.0.1")
        .await
        .expect("Consul simulator");
    let client = switchyard_coordination::consul::Consul::new(
        switchyard_coordination::consul::ConsulOptions::new(sim.address()),
    )
    .unwrap();
    let cluster = common::pg_cluster("orders").await;
    three_servers_survive_the_leaders_death(
        cluster,
        Backend {
            args: vec!["--backend".into(), format!("consul://{}", sim.address())],
            client: Box::new(client),
        },
    )
    .await;
}

/// Flap damping reads the execution history the backend records: a server
/// that becomes leader after another one moved the stores refuses to move
/// them straight back, though its own state directory has no journal at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_on_etcd_still_damps_a_flap() {
    let etcd = switchyard_lab::etcd::EtcdCluster::start(1, None)
        .await
        .expect("etcd lab");
    let endpoints = etcd.endpoints();
    let cluster = common::pg_cluster("orders").await;
    let ws: Vec<Workspace> = (0..2).map(|_| Workspace::new(cluster.topology())).collect();
    for w in &ws {
        std::fs::write(
            w.path("topology.safety.toml"),
            "[gates]\nflap_damping_s = 3600\n",
        )
        .unwrap();
    }
    let tokens = ws[0].path("tokens");
    let viewer = token(&ws[0], &tokens, "viewer");
    let operator = token(&ws[0], &tokens, "operator");
    let backend = format!("etcd://{}", endpoints.join(","));
    let args = ["--backend", backend.as_str(), "--lease-ttl", "3"];

    let (_, from, tli0) = pg_primary(&cluster).await.expect("a primary");
    let to = if from == "east" { "west" } else { "east" };
    // a alone, so it leads, and moves the stores.
    let a = Server::start(&ws[0], &tokens, "a", &args);
    until("a leads", || async {
        let (_, v) = get(&format!("{}/v1/leader", a.url), &viewer).await?;
        (v["this_server"] == json!(true)).then_some(())
    })
    .await;
    let b = Server::start(&ws[1], &tokens, "b", &args);
    let (code, started) = post_following(
        &format!("{}/v1/executions", a.url),
        &operator,
        &json!({"to": to}),
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let first = started["id"].as_str().unwrap().to_string();
    until_status(&a.url, &viewer, &first, "succeeded").await;
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), (to, tli0 + 1));

    // a goes away; b leads, with no journal in its own state directory.
    drop(a);
    let survivors = [&b];
    leader_of(&survivors, &viewer).await;
    assert!(
        ws[1].journal_files().is_empty(),
        "b's state directory holds no journal: {:?}",
        ws[1].journal_files()
    );
    let (code, back) = post_following(
        &format!("{}/v1/executions", b.url),
        &operator,
        &json!({"to": from}),
    )
    .await;
    assert_eq!(code, 202, "{back}");
    let second = back["id"].as_str().unwrap().to_string();
    // Closed at once before the first stage: the journal says `refused`.
    let refused = until_ended(&b.url, &viewer, &second).await;
    assert_eq!(refused["journal_status"], json!("refused"), "{refused}");
    let recs = journal_of(&endpoints, &second).await;
    let gate = recs
        .iter()
        .find(|r| r["event"] == json!("gate") && r["rule"] == json!("flap_damping"))
        .unwrap_or_else(|| panic!("no flap_damping gate record: {recs:#?}\n{refused}"));
    assert_eq!(gate["passed"], json!(false), "{gate}");
    let detail = gate["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("execution {first} changed stores and ended")),
        "{detail}"
    );
    assert!(
        !recs.iter().any(|r| r["event"] == json!("intent")),
        "nothing was issued: {recs:#?}"
    );
    let (_, region, now) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), now), (to, tli), "the stores did not move");
}

/// The failback delay's history rule through real servers on real etcd and
/// a real PostgreSQL lab: server `a` fails `orders` over to west by force
/// while east is down; server `b`, whose own health log saw east healthy
/// before the loss and again after it (it was not looking in between),
/// refuses the failback to east — the rule named, the forced execution
/// given as the basis, nothing issued, the stores where they were — and,
/// with a short delay, lets it through once east has been healthy that
/// long since the forced failover ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_in_the_history_holds_the_failback_on_a_new_leader() {
    let etcd = switchyard_lab::etcd::EtcdCluster::start(1, None)
        .await
        .expect("etcd lab");
    let endpoints = etcd.endpoints();
    let cluster = common::pg_cluster("orders").await;
    let ws: Vec<Workspace> = (0..2).map(|_| Workspace::new(cluster.topology())).collect();
    // A gap of 600 s between samples still counts as one healthy run, so
    // the time b was not looking (the loss, a slow machine) never breaks
    // its log's run: only the history can.
    let policy = |delay_s: u64| {
        for w in &ws {
            std::fs::write(
                w.path("topology.safety.toml"),
                format!("[gates]\nfailback_delay_s = {delay_s}\nhealth_max_gap_s = 600\n"),
            )
            .unwrap();
        }
    };
    policy(3600);
    let tokens = ws[0].path("tokens");
    let viewer = token(&ws[0], &tokens, "viewer");
    let operator = token(&ws[0], &tokens, "operator");
    let approver = token(&ws[0], &tokens, "approver");
    let backend = format!("etcd://{}", endpoints.join(","));
    let args = ["--backend", backend.as_str(), "--lease-ttl", "3"];
    let (old, from, tli0) = pg_primary(&cluster).await.expect("a primary");
    assert_eq!(from, "east");

    // b's health log: east healthy, before anything happens.
    let r = ws[1].run(&["state"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // a leads; east is lost; a fails over to west by force.
    let a = Server::start(&ws[0], &tokens, "a", &args);
    leader_of(&[&a], &viewer).await;
    cluster.kill(&old).unwrap();
    let (code, started) = post_following(
        &format!("{}/v1/executions", a.url),
        &approver,
        &json!({"to": "west", "mode": "forced", "accept_data_loss": true}),
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let forced = started["id"].as_str().unwrap().to_string();
    until_status(&a.url, &viewer, &forced, "succeeded").await;
    let ended_ms = journal_of(&endpoints, &forced)
        .await
        .iter()
        .find(|r| r["event"] == json!("finished"))
        .and_then(|r| r["at_ms"].as_u64())
        .expect("the forced failover's journal ends with `finished`");
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), ("west", tli0 + 1));

    // East comes back (as it was: a stale primary); a goes away; b leads.
    cluster.start_member(&old).await.unwrap();
    drop(a);
    let b = Server::start(&ws[1], &tokens, "b", &args);
    leader_of(&[&b], &viewer).await;
    // By its own log alone, east has been healthy since before the loss.
    let log = read(&ws[1].state.join("region-health.jsonl"));
    let east: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["region"] == json!("east"))
        .collect();
    assert!(
        east.iter().all(|v| v["healthy"] == json!(true))
            && east[0]["at_ms"].as_u64().unwrap() < ended_ms,
        "b's log: {east:?}"
    );

    let fail_back = || async {
        let (code, v) = post_following(
            &format!("{}/v1/executions", b.url),
            &operator,
            &json!({"to": "east"}),
        )
        .await;
        assert_eq!(code, 202, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let done = until_ended(&b.url, &viewer, &id).await;
        let recs = journal_of(&endpoints, &id).await;
        let gate = recs
            .iter()
            .find(|r| r["event"] == json!("gate") && r["rule"] == json!("failback_delay"))
            .unwrap_or_else(|| panic!("no failback_delay gate record: {recs:#?}\n{done}"))
            .clone();
        (done, recs, gate)
    };
    let basis = format!("execution {forced} failed over away from it by force");

    // Refused by the rule: the run counts from the forced failover's end.
    let (refused, recs, gate) = fail_back().await;
    assert_eq!(refused["journal_status"], json!("refused"), "{refused}");
    assert_eq!(gate["passed"], json!(false), "{gate}");
    let detail = gate["detail"].as_str().unwrap();
    assert!(
        detail.contains("failing back to east needs it healthy for 3600 s")
            && detail.contains(&basis),
        "{detail}"
    );
    assert!(
        !recs.iter().any(|r| r["event"] == json!("intent")),
        "nothing was issued: {recs:#?}"
    );
    let stale = writable(&cluster).await;
    assert_eq!(
        stale.len(),
        2,
        "west and the stale east, untouched: {stale:?}"
    );

    // A short delay, once east has been healthy that long since then.
    policy(2);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    while now_ms() < ended_ms + 2_500 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (allowed, _, gate) = fail_back().await;
    assert_eq!(allowed["journal_status"], json!("succeeded"), "{allowed}");
    assert_eq!(gate["passed"], json!(true), "{gate}");
    let detail = gate["detail"].as_str().unwrap();
    assert!(
        detail.contains("east has been observed healthy since") && detail.contains(&basis),
        "{detail}"
    );
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
}

/// `id`'s journal read straight from etcd.
async fn journal_of(endpoints: &[String], id: &str) -> Vec<Value> {
    let client = switchyard_coordination::etcd::Etcd::connect(
        switchyard_coordination::etcd::EtcdOptions::new(endpoints.to_vec()),
    )
    .await
    .unwrap();
    journal(&client, id).await
}
