//! `switchyard --server URL <command>` against a real PostgreSQL lab and a
//! real `switchyard serve`: every command carried remotely — switchover,
//! drill, abort, rollback, show, executions (and close) — exits with the
//! code local mode exits with and prints the same documents: identical but
//! for `ts` where both read the same journal (show, executions), the same
//! sequence of events where each ran an execution of its own.

mod common;

use common::serve::{token, Server};
use common::*;
use serde_json::Value;

/// The JSON lines of `out`, without the moment each was printed.
fn docs(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("ts");
            }
            v
        })
        .collect()
}

/// What a run printed, as a sequence: each line's event (or schema) with
/// the store, operation and verdict it names; ids and times left out.
fn shape(out: &str) -> Vec<String> {
    docs(out)
        .iter()
        .map(|v| {
            let name = v["event"].as_str().or(v["schema"].as_str()).unwrap_or("?");
            format!(
                "{name} {} {} {} {}",
                v["store"], v["op"], v["passed"], v["status"]
            )
        })
        .collect()
}

/// The keys of a document, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn last_event<'a>(v: &'a [Value], name: &str) -> &'a Value {
    v.iter()
        .rev()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

/// The id of the newest journal.
fn latest(ws: &Workspace) -> String {
    let p = ws.journal_files().pop().expect("a journal");
    p.file_stem().unwrap().to_str().unwrap().to_string()
}

/// Change a digit of line 1's `at_ms`: still JSON, only the checksum can tell.
fn corrupt_first_line(ws: &Workspace, id: &str) {
    let path = ws.state.join("executions").join(format!("{id}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let l = &mut lines[0];
    let at = l.find("\"at_ms\":").expect("records carry at_ms") + "\"at_ms\":".len();
    let flipped = if l.as_bytes()[at] == b'1' { "2" } else { "1" };
    l.replace_range(at..at + 1, flipped);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// The test's one `switchyard serve`, always on the same address. A serve
/// on the file backend holds the state directory's lock while it leads (one
/// coordinator per state directory), so every local command runs while no
/// server is up: [`Serving::local`] stops it, runs the command, then starts
/// it again on the same address and waits until it leads.
struct Serving<'a> {
    ws: &'a Workspace,
    tokens: std::path::PathBuf,
    listen: String,
    server: std::cell::RefCell<Option<Server>>,
    /// What the servers stopped so far wrote to stderr.
    logs: std::cell::RefCell<String>,
}

impl<'a> Serving<'a> {
    fn start(ws: &'a Workspace, tokens: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sv = Serving {
            ws,
            tokens: tokens.to_path_buf(),
            listen: format!("127.0.0.1:{port}"),
            server: Default::default(),
            logs: Default::default(),
        };
        sv.up();
        sv
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Start the server and wait until it says it leads.
    fn up(&self) {
        let s = Server::start_at(self.ws, &self.tokens, "a", &self.listen, &[], &[]);
        assert_eq!(s.url, self.url(), "{}", s.stderr());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !leads(&self.listen) {
            assert!(
                std::time::Instant::now() < deadline,
                "never led: {}",
                s.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        *self.server.borrow_mut() = Some(s);
    }

    /// Stop the server (its lock goes with the process), keeping its log.
    fn down(&self) {
        if let Some(mut s) = self.server.borrow_mut().take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
            self.logs.borrow_mut().push_str(&s.stderr());
        }
    }

    /// `f` with no server up, then the server up again.
    fn local<T>(&self, f: impl FnOnce(&Workspace) -> T) -> T {
        self.down();
        let t = f(self.ws);
        self.up();
        t
    }

    /// `ws.run(args)` with no server up.
    fn run(&self, args: &[&str]) -> Run {
        self.local(|ws| ws.run(args))
    }

    /// Everything every server of this test wrote to stderr.
    fn stderr(&self) -> String {
        let mut all = self.logs.borrow().clone();
        if let Some(s) = self.server.borrow().as_ref() {
            all.push_str(&s.stderr());
        }
        all
    }
}

/// Whether the server on `listen` is ready and leads (`/readyz`).
fn leads(listen: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(listen) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    let Some((head, body)) = resp.split_once("\r\n\r\n") else {
        return false;
    };
    head.starts_with("HTTP/1.1 200")
        && serde_json::from_str::<Value>(body).is_ok_and(|v| v["this_server_leads"] == true)
}

/// `switchyard --server URL args` as the holder of `tok`.
fn remote_run(ws: &Workspace, url: &str, tok: &str, args: &[&str]) -> Run {
    let mut c = ws.command(&[&["--server", url], args].concat());
    c.env("SWITCHYARD_TOKEN", tok);
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A plan to west saying `on_failure = "rollback"`, written to
/// `plan.toml`, and a policy whose pre-stage hook refuses stage 3 (the one
/// after the fence): it fails with the store fenced. Returns both paths.
fn plan_failing_at_stage_3(
    sv: &Serving,
    ws: &Workspace,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let r = sv.run(&["plan", "failover", "--to", "west", "--output", "toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = ws.path("plan.toml");
    std::fs::write(&plan, format!("on_failure = \"rollback\"\n{}", r.stdout)).unwrap();
    let policy = ws.path("topology.safety.toml");
    std::fs::write(
        &policy,
        "[[hooks]]\nname = \"change-window\"\nat = \"pre_stage\"\n\
         command = \"[ \\\"$SWITCHYARD_STAGE\\\" != 3 ] || { echo 'change window closed' >&2; exit 1; }\"\n",
    )
    .unwrap();
    (plan, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_over_server_prints_what_local_mode_prints_with_its_exit_code() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let tokens = ws.path("tokens");
    let viewer = token(&ws, &tokens, "viewer");
    let operator = token(&ws, &tokens, "operator");
    let sv = Serving::start(&ws, &tokens);
    let url = sv.url();
    let remote_as = |tok: &str, args: &[&str]| remote_run(&ws, &url, tok, args);
    let remote = |args: &[&str]| remote_as(&operator, args);
    let (_, _, tli0) = pg_primary(&cluster).await.unwrap();

    // Refusals: the same exit codes, the same words.
    let (l, r) = (sv.run(&["abort"]), remote(&["abort"]));
    assert_eq!((r.code, l.code), (2, 2), "{}\n{}", r.stderr, l.stderr);
    assert_eq!(r.stderr, l.stderr);
    let (l, r) = (sv.run(&["show", "nope"]), remote(&["show", "nope"]));
    assert_eq!((r.code, l.code), (2, 2), "{}\n{}", r.stderr, l.stderr);
    let (l, r) = (
        sv.run(&["switchover", "--to", "mars", "--yes"]),
        remote(&["switchover", "--to", "mars", "--yes"]),
    );
    assert_eq!((r.code, l.code), (2, 2), "{}\n{}", r.stderr, l.stderr);
    assert!(r.stderr.contains("unknown region `mars`"), "{}", r.stderr);
    let r = remote_as(&viewer, &["switchover", "--to", "west", "--yes"]);
    assert_eq!(r.code, 2, "a viewer cannot: {}", r.stderr);
    assert!(r.stderr.contains("needs operator"), "{}", r.stderr);
    let r = remote_as(&viewer, &["drill", "--to", "west", "--yes"]);
    assert!(
        r.code == 2 && r.stderr.contains("needs operator"),
        "{}",
        r.stderr
    );
    let r = remote(&["approve", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // No terminal to ask on and no --yes: declined (4), nothing done.
    let (l, r) = (
        sv.run(&["drill", "--to", "west"]),
        remote(&["drill", "--to", "west"]),
    );
    assert_eq!((r.code, l.code), (4, 4), "{}\n{}", r.stderr, l.stderr);
    assert_eq!(r.stderr, l.stderr);

    // switchover: out remotely, back locally; the same events.
    let r = remote(&["switchover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli), ("west", tli0 + 1));
    let l = sv.run(&["switchover", "--to", "east", "--yes", "--output", "json"]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(shape(&r.stdout), shape(&l.stdout));
    assert_eq!(
        shape(&r.stdout).first().map(String::as_str),
        Some("execution_started null null null null")
    );
    let (l, r) = (
        sv.run(&["switchover", "--to", "east", "--yes"]),
        remote(&["switchover", "--to", "east", "--yes"]),
    );
    assert_eq!((r.code, l.code), (0, 0));
    assert_eq!(r.stderr, l.stderr, "nothing to do, said alike");

    // drill: both legs and the drill report.
    let r = remote(&["drill", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let l = sv.run(&["drill", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(shape(&r.stdout), shape(&l.stdout));
    let (rd, ld) = (docs(&r.stdout), docs(&l.stdout));
    let (rd, ld) = (
        last_event(&rd, "drill_report"),
        last_event(&ld, "drill_report"),
    );
    assert_eq!(keys(rd), keys(ld));
    assert_eq!(
        (&rd["status"], &rd["from"]),
        (&"succeeded".into(), &"east".into())
    );
    assert_eq!(keys(&rd["out"]), keys(&ld["out"]));
    let r = remote(&["drill", "--to", "west", "--yes", "--output", "text"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Drill east → west → east: succeeded"),
        "{}",
        r.stdout
    );

    // Without a stream, the API answers 202 with the way out's id; the
    // drill goes on to its end on the server.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/v1/drills"))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"to": "west"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let out = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let all: Value = http
            .get(format!("{url}/v1/executions"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = all.as_array().unwrap();
        let i = rows.iter().position(|e| e["id"] == out.as_str()).unwrap();
        assert_eq!(rows[i]["kind"], "drill-out", "{all}");
        let back = rows[i + 1..].iter().find(|e| e["kind"] == "drill-back");
        if back.is_some_and(|b| b["status"] != "running") {
            assert_eq!(back.unwrap()["status"], "succeeded", "{all}");
            assert_eq!(rows[i]["status"], "succeeded", "{all}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{all}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // executions and show read the same journals: the same documents.
    for args in [
        &["executions", "--output", "json"][..],
        &["executions"],
        &["history", "--output", "json"],
        &["show", "latest", "--output", "json"],
        &["show", "latest"],
        &["show", "latest", "--wide"],
    ] {
        let (l, r) = (sv.run(args), remote(args));
        assert_eq!((r.code, l.code), (0, 0), "{args:?}: {}", r.stderr);
        if args.contains(&"json") {
            assert_eq!(docs(&r.stdout), docs(&l.stdout), "{args:?}");
            assert!(!docs(&r.stdout).is_empty(), "{args:?}");
        } else {
            assert_eq!(r.stdout, l.stdout, "{args:?}");
        }
    }
    let first = docs(&sv.run(&["executions", "--output", "json"]).stdout)[0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (l, r) = (
        sv.run(&["show", &first, "--output", "json"]),
        remote(&["show", &first, "--output", "json"]),
    );
    assert_eq!(docs(&r.stdout), docs(&l.stdout));

    // abort: of an execution killed after its second checkpoint (fenced).
    let crash_failover = || {
        sv.local(|ws| {
            crash(
                ws,
                &["failover", "--to", "west", "--yes", "--output", "json"],
                "checkpoint:2",
            )
        });
        latest(&ws)
    };
    let a1 = crash_failover();
    let r = remote(&["abort", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let a2 = crash_failover();
    let l = sv.run(&["abort", "--output", "json"]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(shape(&r.stdout), shape(&l.stdout));
    let (rd, ld) = (docs(&r.stdout), docs(&l.stdout));
    let (ra, la) = (
        last_event(&rd, "abort_report"),
        last_event(&ld, "abort_report"),
    );
    assert_eq!(keys(ra), keys(la));
    assert_eq!(
        (&ra["execution_id"], &la["execution_id"]),
        (&a1.clone().into(), &a2.into())
    );
    assert_eq!(ra["status"], "aborted", "{ra}");
    // Every store's verdict alike (the summaries name each run's own token).
    let verdicts = |a: &Value| -> Vec<Value> {
        a["stores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s["summary"] = s["summary"]
                    .as_str()
                    .map(|t| t.contains("primary orders-east-1 in east"))
                    .into();
                s
            })
            .collect()
    };
    assert_eq!(verdicts(ra), verdicts(la));
    let a3 = crash_failover();
    let r = remote(&["abort", &a3]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("Execution {a3} aborted by ")),
        "{}",
        r.stdout
    );
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    // rollback: the preview asks first, then the same events.
    let b1 = crash_failover();
    let (l, r) = (
        sv.run(&["rollback", "--output", "json"]),
        remote(&["rollback", "--output", "json"]),
    );
    assert_eq!((r.code, l.code), (4, 4), "{}\n{}", r.stderr, l.stderr);
    assert_eq!(docs(&r.stdout), docs(&l.stdout), "the same preview");
    let r = remote(&["rollback", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    crash_failover();
    let l = sv.run(&["rollback", "--yes", "--output", "json"]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(shape(&r.stdout), shape(&l.stdout));
    assert!(
        docs(&r.stdout)
            .iter()
            .any(|e| e["event"] == "rollback_planned" && e["execution_id"] == b1.as_str()),
        "{}",
        r.stdout
    );
    let (l, r) = (
        sv.run(&["rollback", &b1, "--yes"]),
        remote(&["rollback", &b1, "--yes"]),
    );
    assert_eq!((r.code, l.code), (2, 2), "{}\n{}", r.stderr, l.stderr);
    assert_eq!(r.stderr, l.stderr);
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    // executions close: a damaged journal, closed remotely and locally.
    let mut closed = vec![];
    for by_server in [true, false] {
        let r = sv.local(|ws| {
            ws.run_env(
                &["failover", "--to", "west", "--yes"],
                "SWITCHYARD_CRASH_AT",
                "before:1",
            )
        });
        assert_eq!(r.code, -1, "{}", r.stderr);
        let id = latest(&ws);
        corrupt_first_line(&ws, &id);
        let run = |args: &[&str]| {
            if by_server {
                remote(args)
            } else {
                sv.run(args)
            }
        };
        let r = run(&["executions", "close", &id, "--reason", " "]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let r = run(&[
            "executions",
            "--output",
            "json",
            "close",
            &id,
            "--reason",
            "checked: primary in east, nothing fenced",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut d = docs(&r.stdout).remove(0);
        assert_eq!(d["execution_id"], id.as_str());
        d["execution_id"] = Value::Null;
        d["damage"] = d["damage"].as_array().map(|a| a.len()).into();
        closed.push(d);
    }
    assert_eq!(closed[0], closed[1]);

    // A plan with `on_failure = "rollback"` whose third stage is refused by a
    // hook: followed to the very end, through its rollback, as locally.
    let (plan, policy) = plan_failing_at_stage_3(&sv, &ws);
    let args = ["run", plan.to_str().unwrap(), "--yes", "--output", "json"];
    let r = remote(&args);
    assert_eq!(r.code, 4, "rolled back: {}\n{}", r.stdout, r.stderr);
    let l = sv.run(&args);
    assert_eq!(l.code, 4, "{}", l.stderr);
    assert_eq!(shape(&r.stdout), shape(&l.stdout));
    let ended = |out: &str| {
        docs(out)
            .iter()
            .filter(|e| e["event"] == "execution_ended")
            .count()
    };
    assert_eq!(
        ended(&r.stdout),
        2,
        "the run, then its rollback: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains("failed and was rolled back by"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(&policy).unwrap();
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    // The server's log holds no token.
    for t in [&viewer, &operator] {
        assert!(!sv.stderr().contains(t.as_str()));
    }
}

/// `resume` of an interrupted execution whose plan says `on_failure =
/// "rollback"`: when the resumed run fails, it is rolled back, and `resume
/// --server` follows it through the rollback with the exit code, events and
/// words of local `resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_server_rolls_back_as_local_resume_does() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let tokens = ws.path("tokens");
    let operator = token(&ws, &tokens, "operator");
    let sv = Serving::start(&ws, &tokens);
    let url = sv.url();
    let remote = |args: &[&str]| remote_run(&ws, &url, &operator, args);
    pg_write(&cluster, "before").await;
    let r = sv.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fence = plan_ops(&r.stdout)
        .iter()
        .position(|op| op == "fence")
        .expect("the plan fences")
        + 1;
    // The stage after the fence is refused by a hook: the resumed run fails.
    let (plan, _) = plan_failing_at_stage_3(&sv, &ws);
    let crash_at = format!("after:{fence}");
    let mut runs = vec![];
    for by_server in [true, false] {
        // Interrupted right after the fence: the old primary is fenced.
        let r = sv.local(|ws| {
            ws.run_env(
                &["run", plan.to_str().unwrap(), "--yes"],
                "SWITCHYARD_CRASH_AT",
                &crash_at,
            )
        });
        assert_ne!(r.code, 0, "the failpoint fired: {}", r.stderr);
        let id = latest(&ws);
        let args = ["resume", id.as_str(), "--output", "json"];
        let r = if by_server {
            remote(&args)
        } else {
            sv.run(&args)
        };
        assert_eq!(
            r.code, 4,
            "rolled back (server: {by_server}): {}\n{}",
            r.stdout, r.stderr
        );
        assert!(
            r.stderr.contains("failed and was rolled back by"),
            "server: {by_server}: {}",
            r.stderr
        );
        let ended: Vec<Value> = docs(&r.stdout)
            .into_iter()
            .filter(|e| e["event"] == "execution_ended")
            .collect();
        assert_eq!(
            ended.len(),
            2,
            "the resumed run, then its rollback: {}",
            r.stdout
        );
        assert_eq!(ended[1]["status"], "succeeded", "{ended:?}");
        assert!(
            docs(&r.stdout)
                .iter()
                .any(|e| e["event"] == "rollback_planned"),
            "{}",
            r.stdout
        );
        let (_, region, _) = pg_primary(&cluster).await.unwrap();
        assert_eq!(region, "east", "server: {by_server}");
        runs.push(r);
    }
    assert_eq!(shape(&runs[0].stdout), shape(&runs[1].stdout));
    assert_eq!(pg_tags(&cluster).await, vec!["before"]);
}

/// Item 5 of the issue over the wire: TLS for the CLI too, 401/403 on the
/// new endpoints, no secret (a store password, a bearer token) in the
/// server's debug log, its files, its answers or its metrics, and a reload
/// that applies a good topology and keeps the old tokens over a bad file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_no_secret_leaks_and_reload_is_validated_first() {
    let cluster = pg_cluster("orders").await;
    let mut topology = cluster.topology().clone();
    topology.stores[0].connection.password_env = Some("SWITCHYARD_TEST_PG_PASSWORD".into());
    let ws = Workspace::new(&topology);
    let password = "pw-5f0c1d9e-never-printed";
    let tokens = ws.path("tokens");
    let viewer = token(&ws, &tokens, "viewer");
    let operator = token(&ws, &tokens, "operator");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (crt, key) = (ws.path("tls.crt"), ws.path("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let s = Server::start_env(
        &ws,
        &tokens,
        "tls",
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[
            ("SWITCHYARD_TEST_PG_PASSWORD", password),
            ("RUST_LOG", "debug"),
        ],
    );
    let url = s.url.clone();
    assert!(url.starts_with("https://"), "{url}");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {}",
            s.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let remote = |tok: &str, ca: bool, args: &[&str]| {
        let mut c = ws.command(&[&["--server", url.as_str()], args].concat());
        c.env("SWITCHYARD_TOKEN", tok)
            .env("SWITCHYARD_TEST_PG_PASSWORD", password);
        if ca {
            c.env("SWITCHYARD_CA_CERT", &crt);
        }
        let o = c.output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };

    // The CLI over HTTPS: trusted with the CA, refused without it.
    let r = remote(&viewer, false, &["executions"]);
    assert_eq!(r.code, 1, "an untrusted certificate: {}", r.stderr);
    let mut outputs = vec![];
    for args in [
        &["state", "--output", "json"][..],
        &["failover", "--to", "west", "--yes", "--output", "json"],
        &["executions", "--output", "json"],
        &["show", "latest", "--output", "json"],
    ] {
        let r = remote(&operator, true, args);
        assert!(r.code == 0 || args[0] == "state", "{args:?}: {}", r.stderr);
        outputs.push(r.stdout + &r.stderr);
    }
    let (_, region, _) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");

    // 401 without a token, 403 for a viewer, on every endpoint this added.
    let id = docs(&outputs[2])[0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, body) in [
        (
            "/v1/drills".to_string(),
            Some(serde_json::json!({"to": "east"})),
        ),
        (
            format!("/v1/executions/{id}/rollback"),
            Some(serde_json::json!({})),
        ),
        (
            format!("/v1/executions/{id}/abort"),
            Some(serde_json::json!({})),
        ),
        (
            format!("/v1/executions/{id}/close"),
            Some(serde_json::json!({"reason": "x"})),
        ),
        (format!("/v1/executions/{id}/journal"), None),
    ] {
        for (tok, want) in [(None, 401), (Some(&viewer), 403)] {
            let mut rq = match &body {
                Some(b) => http.post(format!("{url}{path}")).json(b),
                None => http.get(format!("{url}{path}")),
            };
            if let Some(t) = tok {
                rq = rq.bearer_auth(t);
            }
            let r = rq.send().await.unwrap();
            let code = r.status().as_u16();
            if body.is_none() && tok.is_some() {
                assert_eq!(code, 200, "a viewer reads {path}");
                outputs.push(r.text().await.unwrap());
                continue;
            }
            assert_eq!(code, want, "{path} {tok:?}");
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
    }
    for path in ["/v1/topology", "/v1/state", "/v1/executions", "/metrics"] {
        let r = http
            .get(format!("{url}{path}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        outputs.push(r.text().await.unwrap());
    }
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("SWITCHYARD_TEST_PG_PASSWORD")),
        "the topology names the variable (a reference, not a secret)"
    );

    // Reload: a good topology applies without a restart; a bad tokens file
    // keeps the old tokens, saying why.
    let mut changed = topology.clone();
    changed.stores[0].max_lag_ms = Some(4321);
    std::fs::write(&ws.topology, changed.to_toml()).unwrap();
    std::fs::write(
        &tokens,
        format!("{}\nnot a token line\n", common::serve::read(&tokens)),
    )
    .unwrap();
    let hup = |pid: u32| {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success())
    };
    hup(s.child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(s.stderr().contains("topology reloaded")
        && s.stderr().contains("keeping the old tokens"))
    {
        assert!(std::time::Instant::now() < deadline, "{}", s.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        s.stderr().contains(&format!("{}:", tokens.display())),
        "names the file: {}",
        s.stderr()
    );
    let t: Value = http
        .get(format!("{url}/v1/topology"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["stores"][0]["max_lag_ms"], 4321, "{t}");
    // A broken safety policy is reported at once, naming file and line.
    let policy = ws.dir.path().join("topology.safety.toml");
    std::fs::write(&policy, "[approvals]\nnonsense = 1\n").unwrap();
    hup(s.child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s
        .stderr()
        .contains("executions are refused until it is fixed")
    {
        assert!(std::time::Instant::now() < deadline, "{}", s.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        s.stderr().contains(&format!("{}:2:", policy.display())),
        "{}",
        s.stderr()
    );
    std::fs::remove_file(&policy).unwrap();

    // No secret anywhere: the debug log, every file the server wrote, every
    // answer and every CLI output above.
    let log = s.stderr();
    assert!(log.contains("DEBUG"), "the log was at debug level");
    let mut files = vec![];
    let mut dirs = vec![ws.state.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                files.push(std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    assert!(files.len() >= 3, "journals, last-known state, leadership");
    let everything: Vec<String> = std::iter::once(log)
        .chain(
            files
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned()),
        )
        .chain(outputs)
        .chain(std::iter::once(common::serve::read(&tokens)))
        .collect();
    for secret in [password, viewer.as_str(), operator.as_str()] {
        for text in &everything {
            assert!(!text.contains(secret), "a secret leaked into:\n{text}");
        }
    }
}
