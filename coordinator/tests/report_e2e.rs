//! The final report of real runs: it fits 80 columns (with a wide form),
//! writes positions in the store's own notation, defines its terms in a
//! footer, and says what made a planned promotion safe — a fence and a
//! replayed final position for PostgreSQL, the store's own switchover for
//! MongoDB, which nobody fenced.

mod common;

use common::*;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};

fn assert_fits_80(text: &str) {
    for l in text.lines() {
        assert!(
            l.chars().count() <= 80,
            "{} columns: {l}\n{text}",
            l.chars().count()
        );
    }
}

/// The report part of `show` (after the timeline's `(started …)` line).
fn report_of(show: &str) -> &str {
    let at = show
        .find("Execution ")
        .unwrap_or_else(|| panic!("no report:\n{show}"));
    &show[at..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_report_names_the_fence_and_the_lsn_it_waited_for() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    pg_write(&cluster, "before").await;
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "text"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = ws.run(&["show", "latest"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = report_of(&r.stdout);
    assert_fits_80(report);
    assert!(
        report.contains("primary orders-west-1 in west, store's timeline 2"),
        "{report}"
    );
    let flat = report.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "data loss: none: old primary fenced, target replayed its final position (0/"
        ),
        "{report}"
    );
    assert!(flat.contains("on timeline 1), then promoted"), "{report}");
    for term in [
        "RTO:",
        "wall ms:",
        "ops Σ ms:",
        "coordinator process:",
        "store's timeline / term:",
    ] {
        assert!(report.contains(term), "footer lacks {term}:\n{report}");
    }
    // Wide: one line per store.
    let r = ws.run(&["show", "latest", "--wide"]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("orders "))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        line.contains("RTO ") && line.contains("data loss: none: old primary fenced"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_report_does_not_claim_a_fence() {
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rep-rs"))
        .await
        .expect("simulator starts");
    assert!(sim
        .wait_for_primary_in("east", Duration::from_secs(20))
        .await
        .is_some());
    let ws = Workspace::new(&sim.topology("rep-mongo"));
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "text"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = ws.run(&["show", "latest"]);
    let report = report_of(&r.stdout);
    assert_fits_80(report);
    let flat = report.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("old primary fenced"), "{report}");
    assert!(
        flat.contains("data loss: none expected: the store's own planned switchover, not fenced by switchyard: stepped down"),
        "{report}"
    );
    assert!(flat.contains("store's term "), "{report}");
}

/// Run `switchyard` under a pseudo-terminal (util-linux `script`), so the
/// live progress is drawn as an operator sees it; returns the text with
/// escape sequences removed and the exit code.
fn on_a_terminal(ws: &Workspace, args: &[&str]) -> (String, i32) {
    typed_on_a_terminal(ws, args, "")
}

/// Like [`on_a_terminal`], with `input` typed at the terminal.
fn typed_on_a_terminal(ws: &Workspace, args: &[&str], input: &str) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pty.log");
    let cmd = format!(
        "{} --topology {} --state-dir {} {}",
        env!("CARGO_BIN_EXE_switchyard"),
        ws.topology.display(),
        ws.state.display(),
        args.join(" ")
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&log)
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("script ends");
    let raw = std::fs::read(&log).unwrap_or(out.stdout);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut clean = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        clean.push(if c == '\r' { '\n' } else { c });
    }
    let code = clean
        .rsplit("COMMAND_EXIT_CODE=\"")
        .next()
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    (clean, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_progress_keeps_finished_operations_under_their_stage() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (out, code) = on_a_terminal(&ws, &["failover", "--to", "west", "--yes"]);
    assert_eq!(code, 0, "{out}");
    let last = |needle: &str| {
        out.rfind(needle)
            .unwrap_or_else(|| panic!("never drawn: {needle}\n{out}"))
    };
    // Headings stay above their own rows, in stage order.
    assert!(last("Stage 1: readiness") < last("1. orders"), "{out}");
    assert!(last("1. orders") < last("Stage 2: "), "{out}");
    // A finished row keeps its operations and their times after the checkpoint.
    let fence_row = out.lines().rfind(|l| l.contains("2. orders")).unwrap();
    assert!(fence_row.contains("✓ fence "), "{fence_row}");
    assert!(fence_row.contains("✓ capture_position "), "{fence_row}");
    assert!(fence_row.contains("✓ fenced"), "{fence_row}");
    // The elapsed time is the stage's, on its heading, once the stage ended.
    assert!(
        out.contains("Stage 2: fence orders — checkpoint passed in "),
        "the stage's time: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_row_stops_turning_and_says_why() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    cluster.stop("orders-west-1").await.unwrap();
    let (out, code) = on_a_terminal(&ws, &["failover", "--to", "west", "--yes"]);
    assert_ne!(code, 0, "{out}");
    let row = out
        .lines()
        .rfind(|l| l.contains("1. orders"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("✗ check_readiness"), "{row}");
    assert!(
        out.contains("Stage 1: readiness — stopped: execution refused in "),
        "{out}"
    );
    // Nothing was changed: a refusal (exit 5), not a resumable failure, and
    // listed as refused (`history` is `executions`).
    assert_eq!(code, 5, "{out}");
    for cmd in ["executions", "history"] {
        let r = ws.run(&[cmd]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let row = r
            .stdout
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("{}", r.stdout));
        assert!(row.contains(" refused "), "{cmd}: {row}");
    }
    let r = ws.run(&["resume"]);
    assert_eq!(r.code, 2, "nothing to resume: {}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_names_primary_candidate_lag_fence_and_loss() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let (out, code) = typed_on_a_terminal(&ws, &["failover", "--to", "west"], "n\n");
    assert_eq!(code, 4, "{out}");
    let at = out
        .find("Preview: planned switchover to west")
        .unwrap_or_else(|| panic!("{out}"));
    // Fitted to the terminal: read it with its line breaks as spaces.
    let p = &out[at..].split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        p.contains("orders orders-east-1 (east) → orders-west-1 (west)"),
        "{p}"
    );
    assert!(p.contains("candidate orders-west-1 lag 0 B"), "{p}");
    assert!(p.contains("bound 8.0 MiB (max_lag_bytes): healthy"), "{p}");
    assert!(
        p.contains("fences orders-east-1, the current primary"),
        "{p}"
    );
    assert!(
        p.contains("data loss: none: the candidate replays the fenced primary's final position"),
        "{p}"
    );
    assert!(p.contains("Execute this plan? [y/N]"), "{p}");

    // Forced: `y` is not enough; the store names are.
    cluster.kill("orders-east-1").unwrap();
    let forced = ["failover", "--to", "west", "--forced", "--accept-data-loss"];
    let (out, code) = typed_on_a_terminal(&ws, &forced, "y\n");
    assert_eq!(code, 4, "{out}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("FORCED: type the stores to promote (orders)"),
        "{out}"
    );
    assert!(out.contains("data loss: "), "{out}");
    let (out, code) = typed_on_a_terminal(&ws, &forced, "orders\n");
    assert_eq!(code, 0, "{out}");
}
