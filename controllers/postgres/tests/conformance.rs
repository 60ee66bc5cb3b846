//! The api crate's conformance suite against a real PostgreSQL cluster:
//! a primary and two streaming standbys across three regions.

mod common;

use switchyard_controller::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_lab_cluster() {
    let f = common::PgFixture::start(&["east", "west", "south"])
        .await
        .expect("lab cluster");
    let report = conformance::run_all(&f).await;
    println!("{report}");
    report.assert_passed();
    // Every case applies to postgres: none may be skipped.
    assert!(
        report
            .cases
            .iter()
            .all(|c| c.verdict == conformance::Verdict::Passed),
        "{report}"
    );
}
