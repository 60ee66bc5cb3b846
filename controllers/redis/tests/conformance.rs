//! The api crate's conformance suite against real Redis: a master and two
//! replicas across three regions, managed by three Sentinels (one per
//! region), and the same without Sentinel.

mod common;

use switchyard_controller::conformance::{self, Verdict};

/// Every case applies to redis: none may be skipped.
fn all_passed(report: &conformance::SuiteReport) -> bool {
    report.cases.iter().all(|c| c.verdict == Verdict::Passed)
}

async fn run(sentinels: bool) {
    let f = common::RedisFixture::start(sentinels)
        .await
        .expect("lab cluster");
    let report = conformance::run_all(&f).await;
    println!("{report}");
    report.assert_passed();
    assert!(all_passed(&report), "{report}");
    let views = f.sentinel_views();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "Sentinels disagree: {views:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_with_sentinel() {
    run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_without_sentinel() {
    run(false).await;
}
