//! The real `mongodb` driver against the simulator: discovery, writes with
//! w:1 and w:"majority", reads, and failover after the primary region is cut.

use bson::{doc, Document};
use futures::TryStreamExt;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::Client;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};

async fn client(sim: &MongoSim) -> Client {
    let mut opts = ClientOptions::parse(sim.uri()).await.expect("uri parses");
    opts.server_selection_timeout = Some(Duration::from_secs(20));
    opts.heartbeat_freq = Some(Duration::from_millis(500));
    Client::with_options(opts).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_discovers_writes_reads_and_fails_over() {
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
        .await
        .expect("sim starts");
    // Whoever wins the first election, priority takeover settles the
    // primary in the preferred region (east, priority 2).
    let first = sim
        .wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("a primary is elected in the preferred region");
    let c = client(&sim).await;
    let coll = c.database("app").collection::<Document>("orders");
    let majority = coll.clone_with_type::<Document>();
    coll.insert_one(doc! { "_id": 1, "v": "w1" })
        .await
        .expect("w:1 insert");
    majority
        .insert_one(doc! { "_id": 2, "v": "majority" })
        .write_concern(WriteConcern::majority())
        .await
        .expect("majority insert");
    let dup = coll.insert_one(doc! { "_id": 2 }).await;
    assert!(dup.is_err(), "duplicate _id must be refused");
    let docs: Vec<Document> = coll
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    assert_eq!(docs.len(), 2);
    assert_eq!(
        coll.count_documents(doc! { "v": "majority" })
            .await
            .unwrap(),
        1
    );
    assert_eq!(coll.estimated_document_count().await.unwrap(), 2);

    // Cut the primary's region; the other side elects and the driver follows.
    let (region, other) = ("east", "west");
    sim.cut_region(region);
    let new = sim
        .wait_for_primary_in(other, Duration::from_secs(30))
        .await
        .expect("the other region elects a primary");
    assert_ne!(new, first);
    // With one data-bearing region gone only two of the four data-bearing
    // voters remain: w:1 works, w:"majority" cannot be satisfied (exactly
    // the documented arbiter caveat) until the region heals.
    coll.insert_one(doc! { "_id": 3 })
        .await
        .expect("w:1 insert after failover");
    let wc = WriteConcern::builder()
        .w(mongodb::options::Acknowledgment::Majority)
        .w_timeout(Duration::from_millis(300))
        .build();
    let blocked = majority
        .insert_one(doc! { "_id": 4 })
        .write_concern(wc)
        .await;
    assert!(
        blocked.is_err(),
        "w:majority cannot complete with 2 of 4 data-bearing voters"
    );
    sim.heal_region(region);
    majority
        .insert_one(doc! { "_id": 5 })
        .write_concern(WriteConcern::majority())
        .await
        .expect("majority insert after healing");
    let n = coll.count_documents(doc! {}).await.unwrap();
    assert_eq!(
        n,
        5,
        "every acknowledged write survives: {}",
        sim.describe()
    );
    sim.wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("priority takeover moves the primary back to east once healed");
    assert!(
        sim.rolled_back_inserts() == 0,
        "nothing was written on the cut side"
    );
}
