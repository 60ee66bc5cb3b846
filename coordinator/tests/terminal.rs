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
    let r = ws.run(&["failover", "--to", "south", "--yes", "--output", "json"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
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
