//! The conformance suite (`switchyard::conformance`: every canonical
//! sequence through the coordinator's service, executor and driver) against
//! a real PostgreSQL cluster: a primary and two streaming standbys across
//! three regions.

mod common;

use switchyard::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_lab_cluster() {
    // Two standbys in west: the `--candidate` case promotes the one the
    // controller would not have chosen.
    let f = common::PgFixture::start_with(&["east", "west", "south"], &["west"])
        .await
        .expect("lab cluster");
    let report = conformance::run_all(&f).await;
    println!("{report}");
    report.assert_passed();
    // Every case applies to postgres: none may be skipped.
    report.assert_all_passed();
}
