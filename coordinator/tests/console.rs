//! The web console in a real browser: headless Chromium (Debian `chromium`,
//! `chromium-driver`) driven through WebDriver by Python selenium
//! (tests/console/browser.py), against a real `switchyard serve
//! --anonymous-read` and a real PostgreSQL lab. The topology shows the lab's
//! store and members; a session without a token cannot start anything; an
//! execution started from the page runs and its checkpoints light up in
//! order; the history lists it with its duration and who started it. Then
//! the safety policy wants a second person: a start from the page waits in
//! the approvals view, the operator's token cannot approve it (403, nothing
//! changes), an anonymous session cannot either (401), an approver's token
//! approves it from the keyboard and the server runs it. Every view is
//! tabbed through (document order, a visible focus ring, every button
//! reached) and laid out at 1280×800 and 390×844 (no sideways page scroll,
//! no text under 12 px, every control on screen). The stores are then asked
//! directly.
//!
//! Skips (saying so) when the browser or selenium is missing, unless
//! `SWITCHYARD_REQUIRE_BROWSER=1` (set by scripts/test.sh, which installs
//! them): then a missing part fails the test.

mod common;

use common::serve::{named_token, Server};
use common::{pg_cluster, pg_primary, Workspace};
use serde_json::{json, Value};
use std::process::Command;

fn browser_missing() -> Option<String> {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !std::path::Path::new(bin).exists() {
            return Some(format!(
                "{bin} is missing (Debian chromium, chromium-driver)"
            ));
        }
    }
    let ok = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "`import selenium` fails (pip install selenium)".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_lab_and_runs_a_failover_from_the_page() {
    if let Some(why) = browser_missing() {
        assert!(
            std::env::var_os("SWITCHYARD_REQUIRE_BROWSER").is_none(),
            "SWITCHYARD_REQUIRE_BROWSER is set but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let cluster = pg_cluster("orders").await;
    let mut topology = cluster.topology().clone();
    topology.stores[0].tags = vec!["payments".into()];
    let ws = Workspace::new(&topology);
    let tokens = ws.path("tokens");
    let operator = named_token(&ws, &tokens, "operator", "alice");
    let approver = named_token(&ws, &tokens, "approver", "bob");
    let s = Server::start(&ws, &tokens, "a", &["--anonymous-read"]);
    // The page is opened once the server has observed the stores.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while reqwest::get(format!("{}/readyz", s.url))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {}",
            s.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, region0, tli0) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region0, "east");

    // Screenshots for docs/console.md when asked; a temp dir otherwise.
    let shots = std::env::var("SWITCHYARD_CONSOLE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| ws.path("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let members: serde_json::Map<String, Value> = cluster
        .members()
        .iter()
        .map(|m| (m.name.clone(), Value::from(m.region.clone())))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.py");
    let url = s.url.clone();
    let members_json = Value::Object(members.clone()).to_string();
    let shots_arg = shots.to_str().unwrap().to_string();
    // Written by browser.py half-way, so the second start needs approval.
    let policy = ws
        .path("topology.safety.toml")
        .to_str()
        .unwrap()
        .to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                script,
                &url,
                &operator,
                "orders",
                &members_json,
                "west",
                &shots_arg,
                &approver,
                &policy,
                "east",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser.py failed:\n{stdout}\n{stderr}\nserver: {}",
        s.stderr()
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("browser.py output {stdout:?}: {e}"));

    // Topology: every member of the lab, in its region's column, with the
    // role the store has; exactly one primary, in east (before the failover).
    for (name, region) in &members {
        let col = &seen["members_by_column"][region.as_str().unwrap()];
        assert!(
            col.as_array()
                .unwrap()
                .iter()
                .any(|m| m == &Value::from(name.as_str())),
            "{name} not in column {region}: {seen}"
        );
    }
    let roles = seen["topology_members"].as_object().unwrap();
    assert_eq!(roles.len(), members.len(), "{seen}");
    let primaries: Vec<_> = roles.iter().filter(|(_, r)| *r == "primary").collect();
    assert_eq!(primaries.len(), 1, "{seen}");
    assert_eq!(members[primaries[0].0.as_str()], "east", "{seen}");

    // Without a token: the preview shows (a read), the confirmation names
    // the store, and the start is refused by the API.
    assert_eq!(seen["preview_has_store"], true, "{seen}");
    assert_eq!(
        seen["confirm_stores"],
        serde_json::json!(["orders"]),
        "{seen}"
    );
    let refused = seen["anonymous_start"].as_str().unwrap();
    assert!(refused.starts_with("401"), "{seen}");
    assert_eq!(seen["login_shown"], true, "{seen}");

    // The execution started from the page: succeeded, every checkpoint
    // lit live as validated, in stage order.
    let id = seen["execution"].as_str().unwrap();
    assert_eq!(seen["status"], "succeeded", "{seen}");
    let cps = seen["checkpoints"].as_array().unwrap();
    assert!(!cps.is_empty(), "{seen}");
    for (i, c) in cps.iter().enumerate() {
        assert_eq!(c["state"], "passed", "{seen}");
        assert_eq!(c["stage"], (i + 1).to_string(), "{seen}");
        assert_eq!(
            c["lit_order"],
            (i + 1).to_string(),
            "checkpoints lit out of order (or not live): {seen}"
        );
    }
    let ops = seen["ops"].as_array().unwrap();
    assert!(
        !ops.is_empty() && ops.iter().all(|o| o["outcome"] == "ok"),
        "{seen}"
    );
    assert!(
        seen["history_row"].as_str().unwrap().contains("succeeded"),
        "{seen}"
    );
    assert_eq!(seen["history_started_by"], "alice", "{seen}");
    let took = seen["history_duration"].as_str().unwrap();
    assert!(took.ends_with(" s") || took.ends_with(" ms"), "{seen}");

    // The second start waited for approval, in the approvals view, asked by
    // the operator's token holder; the page offered the CLI's preview.
    assert!(
        seen["cli_preview"].as_str().unwrap().contains("orders"),
        "{seen}"
    );
    assert!(
        seen["pending_message"]
            .as_str()
            .unwrap()
            .contains("pending_approval"),
        "{seen}"
    );
    let pending = seen["approval"]["id"].as_str().unwrap();
    assert_eq!(seen["approval"]["requester"], "alice", "{seen}");
    assert!(
        seen["approval"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("tagged payments"),
        "{seen}"
    );
    assert_eq!(seen["pending_banner"], true, "{seen}");
    // Nothing changes without the API's token and role.
    let op = seen["operator_approve"].as_str().unwrap();
    assert!(
        op.starts_with("403") && op.contains("needs approver"),
        "{seen}"
    );
    let anon = seen["anonymous_approve"].as_str().unwrap();
    assert!(anon.starts_with("401"), "{seen}");
    assert_eq!(seen["login_shown_for_approve"], true, "{seen}");
    assert_eq!(seen["approved_execution"], pending, "{seen}");
    assert_eq!(seen["approved_status"], "succeeded", "{seen}");
    // Opened later from the history, the first execution shows its
    // timeline from the journal: the same operations, all ok, and the same
    // checkpoints, all passed.
    let tl = &seen["timeline"];
    assert_eq!(tl["ops"].as_array().unwrap().len(), ops.len(), "{seen}");
    assert!(
        tl["ops"].as_array().unwrap().iter().all(|o| o == "ok"),
        "{seen}"
    );
    assert_eq!(
        tl["checkpoints"].as_array().unwrap().len(),
        cps.len(),
        "{seen}"
    );
    assert!(
        tl["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c == "passed"),
        "{seen}"
    );
    // Keyboard and layout: browser.py failed on any violation; check it
    // looked at every view, at both sizes.
    for view in ["topology", "plans", "execution", "history", "approvals"] {
        let met = seen["keyboard"][view].as_array().unwrap();
        assert!(met.iter().any(|m| m == "nav-approvals"), "{view}: {seen}");
        assert_eq!(
            seen["layout"][format!("{view}@desktop")],
            json!([1280, 800])
        );
        assert_eq!(seen["layout"][format!("{view}@phone")], json!([390, 844]));
    }
    let approvals_keys = seen["keyboard"]["approvals"].as_array().unwrap();
    assert!(
        approvals_keys
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("Approve ")),
        "{seen}"
    );

    // The server agrees: the anonymous start did nothing; the first ran;
    // the second ran only once bob approved, after alice's 403; both were
    // started by alice. The store really moved there and back.
    let list: Value = reqwest::get(format!("{}/v1/executions", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id, pending], "{list}");
    for e in list.as_array().unwrap() {
        assert_eq!(e["status"], "succeeded", "{list}");
        assert_eq!(e["started_by"], "alice", "{list}");
    }
    let shown: Value = reqwest::get(format!("{}/v1/executions/{pending}", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let approval = &shown["report"]["approval"];
    assert_eq!(
        approval["approved_by"]["approver"]["name"], "bob",
        "{shown}"
    );
    assert_eq!(
        approval["refused"][0]["approver"]["name"], "alice",
        "{shown}"
    );
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");
    assert!(tli >= tli0 + 2, "timeline {tli0} -> {tli}");
}
