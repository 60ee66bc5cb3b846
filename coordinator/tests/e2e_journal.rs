//! Damaged, truncated and half-created journals against a real PostgreSQL
//! cluster and the real `switchyard` binary: nothing of an old execution is
//! issued again, a damaged journal is reported with its file and line and
//! blocks only what depends on it, and new executions still run.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The journal of the execution `id`.
fn journal(ws: &Workspace, id: &str) -> PathBuf {
    ws.state.join("executions").join(format!("{id}.jsonl"))
}

/// Id of the newest journal.
fn latest(ws: &Workspace) -> String {
    let p = ws.journal_files().pop().expect("a journal");
    p.file_stem().unwrap().to_str().unwrap().to_string()
}

/// Change the first digit of line `line`'s `at_ms` (1-based): the record
/// stays valid JSON, so only the checksum can tell.
fn corrupt_line(path: &Path, line: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let l = &mut lines[line - 1];
    let at = l.find("\"at_ms\":").expect("records carry at_ms") + "\"at_ms\":".len();
    let digit = l.as_bytes()[at];
    let flipped = if digit == b'1' { '2' } else { '1' };
    l.replace_range(at..at + 1, &flipped.to_string());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_truncated_journals_never_re_execute_and_never_wedge() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());

    // Two planned switchovers: east → west (e1), west → east (e2).
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e1 = latest(&ws);
    let r = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e2 = latest(&ws);
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    // 1. The older, succeeded journal is truncated to its first records: it
    // now reads as unfinished. Resuming it would fence and promote west
    // again; it is refused, naming what superseded it.
    let p1 = journal(&ws, &e1);
    let text = std::fs::read_to_string(&p1).unwrap();
    let head: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&p1, head.join("\n") + "\n").unwrap();
    let before = std::fs::read(&p1).unwrap();
    let r = ws.run(&["resume", &e1]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("superseded by {e2}")),
        "{}",
        r.stderr
    );
    let r = ws.run(&["resume"]);
    assert_eq!(r.code, 2, "nothing to resume: {}", r.stderr);
    assert_eq!(std::fs::read(&p1).unwrap(), before, "nothing journaled");
    assert_eq!(
        pg_primary(&cluster).await.unwrap(),
        ("orders-east-1".into(), "east".into(), tli),
        "nothing issued: same primary, same timeline"
    );
    let r = ws.run(&["executions"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("superseded by {e2}")),
        "{}",
        r.stdout
    );

    // 2. A record in the middle of the newer (succeeded) journal is
    // corrupted: reported with file and line, shown, and it blocks nothing
    // (it ended), so a new execution runs.
    let p2 = journal(&ws, &e2);
    corrupt_line(&p2, 3);
    let r = ws.run(&["executions"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let at = format!("{}:3: corrupt record: checksum mismatch", p2.display());
    assert!(r.stdout.contains(&at), "{}", r.stdout);
    assert!(r.stdout.contains("damaged"), "{}", r.stdout);
    let r = ws.run(&["show", &e2]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("DAMAGED: {at}")), "{}", r.stdout);
    let r = ws.run(&["resume", &e2]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&at), "{}", r.stderr);
    let r = ws.run(&["failover", "--to", "west", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "a new execution runs: {}", r.stderr);
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "west");

    // 3. An unfinished execution whose start record is corrupt: which stores
    // it touched is unknown, so planned executions wait until an operator
    // closes it; it is never resumed.
    let r = ws.run_env(
        &["failover", "--to", "east", "--yes", "--output", "json"],
        "SWITCHYARD_CRASH_AT",
        "before:1",
    );
    assert_eq!(r.code, -1, "crashed: {}", r.stderr);
    let e4 = latest(&ws);
    let p4 = journal(&ws, &e4);
    corrupt_line(&p4, 1);
    let at = format!("{}:1: corrupt record: checksum mismatch", p4.display());
    let r = ws.run(&["failover", "--to", "east", "--yes"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&at), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("switchyard executions close {e4} --reason")),
        "{}",
        r.stderr
    );
    let r = ws.run(&["resume", &e4]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&at), "{}", r.stderr);
    // Close refuses without a reason, then records it.
    let r = ws.run(&["executions", "close", &e4, "--reason", " "]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = ws.run(&[
        "executions",
        "close",
        &e4,
        "--reason",
        "primary checked in west, nothing fenced",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ws.run(&["show", &e4]);
    assert!(
        r.stdout.contains("closed by an operator (fencing token "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("): primary checked in west, nothing fenced"),
        "{}",
        r.stdout
    );
    assert_eq!(
        pg_primary(&cluster).await.unwrap().2,
        tli,
        "nothing was issued for the damaged execution"
    );

    // 4. An empty and a half-written journal (a crash while a journal was
    // created, by an older version) wedge nothing.
    let exec = ws.state.join("executions");
    std::fs::write(exec.join("99990101T000000000-failover-e98.jsonl"), b"").unwrap();
    std::fs::write(
        exec.join("99990101T000000001-failover-e99.jsonl"),
        b"{\"type\":\"started\",\"execution_id\":\"999",
    )
    .unwrap();
    let r = ws.run(&["resume"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to resume"), "{}", r.stderr);
    let r = ws.run(&["failover", "--to", "east", "--yes", "--output", "json"]);
    assert_eq!(r.code, 0, "not wedged: {}", r.stderr);
    let (_, region, tli2) = pg_primary(&cluster).await.unwrap();
    assert_eq!((region.as_str(), tli2), ("east", tli + 1));
    let r = ws.run(&["executions"]);
    assert!(r.stdout.contains("empty"), "{}", r.stdout);

    // Every journal this version wrote is whole and checksummed.
    let fresh = journal(&ws, &latest_started(&ws));
    for l in read(&fresh).lines() {
        assert!(l.contains("\"crc32c\":\""), "{l}");
    }
}

/// The newest journal that has a start record.
fn latest_started(ws: &Workspace) -> String {
    ws.journal_files()
        .iter()
        .rev()
        .find(|p| read(p).contains("\"event\":\"started\",\"execution_id\":\"2"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .expect("a started journal")
}

/// A coordinator with another state directory cannot see this one's
/// journals; the fencing epoch the store records tells `resume` that a later
/// execution acted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_an_execution_a_store_shows_superseded() {
    let cluster = pg_cluster("orders").await;
    let ws = Workspace::new(cluster.topology());
    // Readiness checked, then the coordinator dies: nothing changed yet.
    crash(
        &ws,
        &["failover", "--to", "west", "--yes", "--output", "json"],
        "after:1",
    );
    let stale = latest(&ws);

    // Another coordinator, its own state dir: two switchovers, so the store
    // records a fencing epoch above the crashed execution's.
    let other = Workspace::new(cluster.topology());
    for to in ["west", "east"] {
        let r = other.run(&["failover", "--to", to, "--yes", "--output", "json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let (_, region, tli) = pg_primary(&cluster).await.unwrap();
    assert_eq!(region, "east");

    let r = ws.run(&["resume", &stale]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("superseded on store `orders`"),
        "{}",
        r.stderr
    );
    assert_eq!(
        pg_primary(&cluster).await.unwrap(),
        ("orders-east-1".into(), "east".into(), tli),
        "nothing issued: same primary, same timeline"
    );
}
