//! The conformance suite (`switchyard::conformance`: every canonical
//! sequence through the coordinator's service, executor and driver) against real Redis: a master and two
//! replicas across three regions, managed by three Sentinels (one per
//! region), and the same without Sentinel.

mod common;

use switchyard::conformance;

async fn run(sentinels: bool) {
    // Two replicas in west: the `--candidate` case promotes the one the
    // controller would not have chosen.
    let f = common::RedisFixture::start_with(sentinels, &["west"])
        .await
        .expect("lab cluster");
    let report = conformance::run_all(&f).await;
    println!("{report}");
    report.assert_passed();
    // Every case applies to redis: none may be skipped.
    report.assert_all_passed();
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
