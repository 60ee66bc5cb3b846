//! What an operator sees at an 80-column terminal, through a real pty
//! (util-linux `script`) against a real PostgreSQL cluster: no line of the
//! live progress, the report or `state` is wider than the terminal (a wider
//! one wraps and throws indicatif's redraw off, leaving stale copies on
//! screen); each stage is printed once, in full, with every operation's
//! name and time; `state` leads with a store that has no primary.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Run `switchyard ARGS` on a pty of `cols` columns; its exit code and
/// everything it drew, escape sequences removed.
fn in_terminal(ws: &Workspace, args: &[&str], cols: usize) -> (i32, String) {
    let mut line = format!(
        "stty cols {cols} rows 40; exec {} --topology {} --state-dir {}",
        env!("CARGO_BIN_EXE_switchyard"),
        ws.topology.display(),
        ws.state.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("COLUMNS", cols.to_string())
        .env_remove("SWITCHYARD_TOPOLOGY")
        .env_remove("SWITCHYARD_STATE_DIR")
        .env_remove("SWITCHYARD_CRASH_AT")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let raw = String::from_utf8_lossy(&o.stdout);
    (o.status.code().unwrap_or(-1), strip_escapes(&raw))
}

/// `text` without ANSI escape sequences (CSI `ESC [ … letter`, and the
/// two-byte ones); one that moves the cursor (up, down, to a column, or
/// clears the line) starts a new line, as a redraw does on screen.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() || n == '~' {
                    if "ABCDEFGHJK".contains(n) {
                        out.push('\n');
                    }
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Every line as the terminal received it: split at `\n` and at `\r`
/// (a redraw starts over at the left edge).
fn drawn_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r']).filter(|l| !l.is_empty())
}

/// No text reaches the last column. Switchyard fits what it prints to one
/// column less than the terminal; indicatif pads a live line with spaces to
/// the full width and lets the terminal wrap to the next one, so a run of
/// `cols` columns must end in a space, or something overflowed.
fn assert_fits(text: &str, cols: usize) {
    for l in drawn_lines(text) {
        let chars: Vec<char> = l.chars().collect();
        for chunk in chars.chunks(cols).filter(|c| c.len() == cols) {
            assert!(
                chunk[cols - 1] == ' ',
                "text in column {cols}: {:?}\n{text}",
                chunk.iter().collect::<String>()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_80_column_terminal_gets_lines_that_fit_each_stage_once_and_no_primary_first() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    let plan = ws.run(&["plan", "failover", "--to", "west", "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();

    let (code, text) = in_terminal(&ws, &["failover", "--to", "west", "--yes"], 80);
    assert_eq!(code, 0, "{text}");
    assert_fits(&text, 80);
    for (i, stage) in stages.iter().enumerate() {
        let heading = format!(
            "Stage {}: {} — checkpoint passed in ",
            i + 1,
            stage["name"].as_str().unwrap()
        );
        assert_eq!(text.matches(&heading).count(), 1, "{heading}\n{text}");
        // The stage's record keeps every operation with its time.
        let block = text.split(&heading).nth(1).unwrap();
        let block = block.split("\nStage ").next().unwrap();
        let block = block.split("Execution ").next().unwrap();
        for step in stage["steps"].as_array().unwrap() {
            let op = format!("✓ {} ", step["op"].as_str().unwrap());
            assert!(block.contains(&op), "{op} in stage {}:\n{block}", i + 1);
        }
    }
    assert!(text.contains("Execution succeeded"), "{text}");
    // The report's footer defines its terms.
    assert!(
        text.contains("RTO: from the store's first mutating operation"),
        "{text}"
    );

    // A forced run with the old primary still up: the preview says what
    // not fencing it means, and a bare answer does not do (stdin here is
    // empty: declined, exit 4, nothing started).
    let (code, text) = in_terminal(&ws, &["failover", "--to", "south", "--forced"], 80);
    assert_eq!(code, 4, "{text}");
    assert_fits(&text, 80);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("fences nothing (forced): orders-west-1 still accepts writes"),
        "{text}"
    );
    assert!(
        flat.contains("FORCED: type the stores to promote (orders)"),
        "{text}"
    );
    assert!(flat.contains("a lower bound"), "{text}");
    let listed = ws.run(&["executions", "--output", "json"]);
    assert_eq!(listed.stdout.lines().count(), 1, "{}", listed.stdout);

    // A refusal (south's standby is down: not ready) is exit 5, listed as
    // refused, with nothing to resume; its report marks what never ran.
    cluster.stop("orders-south-1").await.unwrap();
    let r = ws.run_env(
        &["failover", "--to", "south", "--yes", "--output", "json"],
        "RUST_LOG",
        "info",
    );
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    // The readiness check was retried: each retry one INFO line with its
    // attempt count, the operation's failure one WARN, not one per attempt.
    let attempts = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "op_finished" && e["op"] == "check_readiness")
        .and_then(|e| e["attempts"].as_u64())
        .expect("readiness finished");
    assert!(attempts > 1, "a temporary error is retried: {}", r.stdout);
    let log = |level: &str, what: &str| {
        r.stderr
            .lines()
            .filter(|l| l.contains(level) && l.contains(what))
            .count()
    };
    assert_eq!(
        log(" WARN ", "check_readiness"),
        1,
        "one WARN for the failed operation:\n{}",
        r.stderr
    );
    assert!(
        log(" WARN ", "operation failed: retries exhausted") == 1,
        "{}",
        r.stderr
    );
    for n in 1..attempts {
        let line = format!("attempt={n} max_attempts=");
        assert_eq!(log(" INFO ", &line), 1, "{line}:\n{}", r.stderr);
    }
    let listed = ws.run(&["history", "--output", "json"]);
    let last: serde_json::Value =
        serde_json::from_str(listed.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "refused", "{}", listed.stdout);
    let r = ws.run(&["resume"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let (code, text) = in_terminal(&ws, &["show", "latest"], 80);
    assert_eq!(code, 0, "{text}");
    assert_fits(&text, 80);
    assert!(text.contains("refused in "), "{text}");
    assert!(text.contains("· not run"), "{text}");

    // The primary (now in west) goes away: `state` says so first, exit 7.
    cluster.stop("orders-west-1").await.unwrap();
    let (code, text) = in_terminal(&ws, &["state"], 80);
    assert_eq!(code, 7, "{text}");
    assert!(
        text.trim_start()
            .starts_with("orders: NO PRIMARY: nothing accepts writes"),
        "{text}"
    );
    assert_fits(&text, 80);
}

/// `text` with every run of whitespace one space: a wrapped line reads as
/// the sentence it continues.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The plan `failover --to to` makes (as JSON), and the seq of its first
/// step running `op` (steps are numbered in plan order: one store here).
fn plan_and_seq(ws: &Workspace, to: &str, op: &str) -> (serde_json::Value, usize) {
    let plan = ws.run(&["plan", "failover", "--to", to, "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let seq = plan_ops(&plan.stdout)
        .iter()
        .position(|o| o == op)
        .expect("op in the plan")
        + 1;
    (serde_json::from_str(&plan.stdout).unwrap(), seq)
}

/// A coordinator killed mid-execution, then `resume`: its live progress
/// starts with what the dead process did (from the journal), each with its
/// time and marked as done before the resume, then goes on live; the same
/// on the JSON event stream (`before_resume: true`). `show` writes every
/// captured position in PostgreSQL's own notation, from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_execution_shows_what_was_done_before_the_crash() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());

    // Killed once the captured position's outcome is journaled.
    let (plan, seq) = plan_and_seq(&ws, "west", "capture_position");
    crash(
        &ws,
        &["failover", "--to", "west", "--yes", "--output", "json"],
        &format!("outcome:{seq}"),
    );
    let (code, text) = in_terminal(&ws, &["resume"], 80);
    assert_eq!(code, 0, "{text}");
    assert_fits(&text, 80);
    let all = flat(&text);
    // Each stage's record, printed once: the first passed in the dead
    // process; every operation with its time, and marked when the dead
    // process did it (`✓ fence 35 ms (before the resume)`).
    let mut n = 0;
    for (i, stage) in plan["stages"].as_array().unwrap().iter().enumerate() {
        let name = stage["name"].as_str().unwrap();
        let heading = if i == 0 {
            format!("Stage 1: {name} — checkpoint passed before the resume")
        } else {
            format!("Stage {}: {name} — checkpoint passed in ", i + 1)
        };
        assert_eq!(text.matches(&heading).count(), 1, "{heading}\n{text}");
        let block = text.split(&heading).nth(1).unwrap();
        let block = block.split("\nStage ").next().unwrap();
        let block = flat(block.split("Execution ").next().unwrap());
        for step in stage["steps"].as_array().unwrap() {
            n += 1;
            let done = format!("✓ {} ", step["op"].as_str().unwrap());
            let at = block
                .find(&done)
                .unwrap_or_else(|| panic!("{done} in stage {}:\n{block}", i + 1));
            let (ms, tail) = block[at + done.len()..]
                .split_once(" ms")
                .expect("a time in ms");
            assert!(ms.parse::<u64>().is_ok(), "{done}: {block}");
            assert_eq!(
                tail.starts_with(" (before the resume)"),
                n <= seq,
                "{done} (#{n}, crashed after #{seq}): {block}"
            );
        }
    }
    assert!(all.contains("Execution succeeded"), "{text}");

    // `show`: the captured position and the wait in PostgreSQL's notation.
    let shown = ws.run(&["show", "latest", "--output", "text"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        lsn_on_timeline(&shown.stdout, ", position "),
        "{}",
        shown.stdout
    );
    assert!(
        lsn_on_timeline(&shown.stdout, "has replayed "),
        "{}",
        shown.stdout
    );
    assert!(
        !shown.stdout.contains("offset "),
        "raw position: {}",
        shown.stdout
    );

    // The way back, killed at the same point, resumed into JSON lines.
    let (plan, seq) = plan_and_seq(&ws, "east", "capture_position");
    let ops = plan_ops(&plan.to_string());
    crash(
        &ws,
        &["failover", "--to", "east", "--yes", "--output", "json"],
        &format!("outcome:{seq}"),
    );
    let r = ws.run(&["resume", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    validate(&r.stdout, "event.schema.json");
    let events = r.events();
    let finished: Vec<(u64, bool, &serde_json::Value)> = events
        .iter()
        .filter(|e| e["event"] == "op_finished")
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["before_resume"] == true,
                &e["duration_ms"],
            )
        })
        .collect();
    assert_eq!(finished.len(), ops.len(), "{}", r.stdout);
    for (i, (s, before, ms)) in finished.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "in order: {}", r.stdout);
        assert_eq!(*before, i < seq, "op {s}: {}", r.stdout);
        assert!(ms.is_u64(), "{}", r.stdout);
    }
    // Right after `execution_started` (resumed), before anything live:
    // one run of marked events, none after it.
    let started = events
        .iter()
        .position(|e| e["event"] == "execution_started")
        .unwrap();
    assert_eq!(events[started]["resumed"], true);
    let marks: Vec<bool> = events[started + 1..]
        .iter()
        .map(|e| e["before_resume"] == true)
        .collect();
    let live = marks.iter().position(|m| !m).unwrap();
    assert!(live > 0 && marks[live..].iter().all(|m| !m), "{}", r.stdout);
    assert_eq!(events[started + 1]["event"], "stage_started");
    assert!(events
        .iter()
        .any(|e| e["event"] == "checkpoint_finished" && e["before_resume"] == true));
}
