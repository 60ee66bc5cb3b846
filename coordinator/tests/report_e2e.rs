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
        "store's timeline / term / epoch:",
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
