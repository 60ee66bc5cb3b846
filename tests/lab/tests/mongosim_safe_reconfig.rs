//! MongoDB 4.4+ "safe reconfig" in the simulator, through the real driver:
//! a non-force `replSetReconfig` waits (up to `maxTimeMS`) until the
//! current config is committed — installed by a majority of the voting
//! members (arbiters count) and the primary's first entry of its term
//! majority-committed among the data-bearing voting members — and fails
//! with `CurrentConfigNotCommittedYet` (308) when the wait expires.

use bson::{doc, Bson, Document};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::Client;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec};

async fn direct(sim: &MongoSim, member: &str) -> Client {
    let uri = format!(
        "mongodb://{}/?directConnection=true",
        sim.host(member).expect("member")
    );
    let mut o = ClientOptions::parse(uri).await.unwrap();
    o.server_selection_timeout = Some(Duration::from_secs(5));
    Client::with_options(o).unwrap()
}

/// Run an admin command; a server refusal is `(code, codeName, errmsg)`.
async fn admin(c: &Client, cmd: Document) -> Result<Document, (i32, String, String)> {
    c.database("admin")
        .run_command(cmd)
        .await
        .map_err(|e| match *e.kind {
            mongodb::error::ErrorKind::Command(ref ce) => {
                (ce.code, ce.code_name.clone(), ce.message.clone())
            }
            _ => panic!("unexpected error {e}"),
        })
}

async fn config(c: &Client) -> Document {
    admin(c, doc! { "replSetGetConfig": 1 })
        .await
        .unwrap()
        .get_document("config")
        .unwrap()
        .clone()
}

async fn commitment_status(c: &Client) -> bool {
    admin(c, doc! { "replSetGetConfig": 1, "commitmentStatus": true })
        .await
        .unwrap()
        .get_bool("commitmentStatus")
        .unwrap()
}

/// `cfg` with the next version and `f` applied to every member.
fn next(cfg: &Document, f: impl Fn(&mut Document)) -> Document {
    let mut d = cfg.clone();
    let members: Vec<Bson> = cfg
        .get_array("members")
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.as_document().unwrap().clone();
            f(&mut m);
            Bson::Document(m)
        })
        .collect();
    d.insert("members", members);
    d.insert("version", cfg.get_i32("version").unwrap() + 1);
    d.remove("term");
    d
}

fn electable(m: &Document) -> bool {
    !m.get_bool("arbiterOnly").unwrap_or(false)
}

/// Two data-bearing members in east and west, an arbiter in witness;
/// primary in east, then every data-bearing priority set to 1 through a
/// (committable) safe reconfig, so no priority takeover interferes.
async fn equal_priorities() -> (MongoSim, String) {
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
        .await
        .unwrap();
    let p = sim
        .wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("primary in east");
    let c = direct(&sim, &p).await;
    let cfg = config(&c).await;
    let new = next(&cfg, |m| {
        if electable(m) {
            m.insert("priority", 1.0);
        }
    });
    admin(&c, doc! { "replSetReconfig": new, "maxTimeMS": 10_000 })
        .await
        .expect("a safe reconfig of a healthy set succeeds");
    assert!(commitment_status(&c).await);
    (sim, p)
}

async fn lose_east(sim: &MongoSim) -> (String, Client) {
    sim.cut_region("east");
    let w = sim
        .wait_for_primary_in("west", Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("west elects by itself:\n{}", sim.describe()));
    let c = direct(sim, &w).await;
    (w, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_waits_for_oplog_commitment_and_completes_once_a_majority_is_back() {
    let (sim, _) = equal_priorities().await;
    let (w, c) = lose_east(&sim).await;

    // The step-up reconfig gave the config the new primary's term.
    let cfg = config(&c).await;
    assert_eq!(i64::from(cfg.get_i32("term").unwrap()), sim.term(&w));
    // 3 of 5 votes elected west, but only 2 of the 3 data-bearing voting
    // members writeMajorityCount needs are there: nothing commits.
    let status = admin(&c, doc! { "replSetGetStatus": 1 }).await.unwrap();
    assert_eq!(status.get_i32("writeMajorityCount").unwrap(), 3);
    assert_eq!(status.get_i32("majorityVoteCount").unwrap(), 3);
    assert!(!commitment_status(&c).await);

    let version = sim.config_version(&w);
    let raise_west = next(&cfg, |m| {
        if m.get_str("host").ok() == sim.host(&w) {
            m.insert("priority", 5.0);
        }
    });
    let (code, name, msg) = admin(
        &c,
        doc! { "replSetReconfig": raise_west.clone(), "maxTimeMS": 500 },
    )
    .await
    .expect_err("the oplog commitment cannot be met");
    assert_eq!((code, name.as_str()), (308, "CurrentConfigNotCommittedYet"));
    assert!(msg.contains("Last committed optime"), "{msg}");
    assert_eq!(sim.config_version(&w), version, "nothing installed");

    // Without maxTimeMS the reconfig waits instead of failing ...
    let c2 = c.clone();
    let pending =
        tokio::spawn(async move { admin(&c2, doc! { "replSetReconfig": raise_west }).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!pending.is_finished(), "the reconfig must still be waiting");
    assert_eq!(sim.config_version(&w), version);

    // ... and completes once east is back and replicates west's first
    // entry of the term.
    sim.heal_region("east");
    pending
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("reconfig after heal: {e:?}\n{}", sim.describe()));
    assert_eq!(sim.config_version(&w), version + 1);
    assert_eq!(sim.primary().as_deref(), Some(w.as_str()));
    assert!(commitment_status(&c).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_priority_change_on_the_elected_primary_then_safe_reconfigs_skip_the_oplog_wait() {
    let (sim, _) = equal_priorities().await;
    let (w, c) = lose_east(&sim).await;
    let term = sim.term(&w);
    let cfg = config(&c).await;
    let west_first = next(&cfg, |m| {
        if electable(m) && !is_east(&sim, m) {
            m.insert("priority", 3.0);
        }
    });
    admin(&c, doc! { "replSetReconfig": west_first, "force": true })
        .await
        .expect("force is accepted on the primary");
    let forced = config(&c).await;
    assert_eq!(
        forced.get_i32("term").unwrap(),
        -1,
        "forced configs carry term -1"
    );
    assert!(forced.get_i32("version").unwrap() > cfg.get_i32("version").unwrap());
    // Same primary, same term: a priority change is no election.
    assert_eq!(sim.primary().as_deref(), Some(w.as_str()));
    assert_eq!(sim.term(&w), term);

    // Leaving a forced config, a safe reconfig only needs the config on a
    // majority of voters (west-1, west-2, witness): no oplog commitment.
    let again = next(&forced, |m| {
        if electable(m) {
            m.insert("tags", doc! { "dc": "any" });
        }
    });
    admin(&c, doc! { "replSetReconfig": again, "maxTimeMS": 5000 })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", sim.describe()));
    // That reconfig was in this term: the next one needs the oplog
    // commitment again, which still cannot be met.
    let now = config(&c).await;
    assert_eq!(i64::from(now.get_i32("term").unwrap()), term);
    let (code, _, _) = admin(
        &c,
        doc! { "replSetReconfig": next(&now, |_| {}), "maxTimeMS": 300 },
    )
    .await
    .expect_err("oplog commitment again");
    assert_eq!(code, 308);
    // w:"majority" still cannot be satisfied.
    let app = direct(&sim, &w).await;
    let r = app
        .database("app")
        .collection::<Document>("t")
        .insert_one(doc! { "_id": 1 })
        .write_concern(
            WriteConcern::builder()
                .w(mongodb::options::Acknowledgment::Majority)
                .w_timeout(Duration::from_millis(200))
                .build(),
        )
        .await;
    assert!(r.is_err(), "majority write must time out");

    // Healed, east installs the newer config and the primary stays in west.
    sim.heal_region("east");
    sim.wait_for_primary_in("west", Duration::from_secs(5))
        .await
        .expect("still west");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.primary().as_deref(),
        Some(w.as_str()),
        "{}",
        sim.describe()
    );
    for e in ["east-1", "east-2"] {
        assert_eq!(
            sim.config_version(e),
            sim.config_version(&w),
            "{}",
            sim.describe()
        );
    }
}

fn is_east(sim: &MongoSim, m: &Document) -> bool {
    let h = m.get_str("host").unwrap();
    ["east-1", "east-2"].iter().any(|e| sim.host(e) == Some(h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_config_must_be_on_a_majority_of_voters_before_the_next_reconfig() {
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
        .await
        .unwrap();
    let p = sim
        .wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("primary in east");
    let c = direct(&sim, &p).await;
    // A long election timeout keeps the primary in office while it cannot
    // see a majority (it steps down only after one election timeout).
    let cfg = config(&c).await;
    let mut slow = next(&cfg, |_| {});
    let mut settings = slow.get_document("settings").unwrap().clone();
    settings.insert("electionTimeoutMillis", 120_000i64);
    slow.insert("settings", settings);
    admin(&c, doc! { "replSetReconfig": slow, "maxTimeMS": 10_000 })
        .await
        .unwrap();
    // Three of the five voters go down: only the primary and east-2 hold
    // the current config.
    for m in ["west-1", "west-2", "witness-1"] {
        sim.kill(m);
    }
    assert!(!commitment_status(&c).await);
    let cfg = config(&c).await;
    let (code, name, msg) = admin(
        &c,
        doc! { "replSetReconfig": next(&cfg, |_| {}), "maxTimeMS": 300 },
    )
    .await
    .expect_err("config commitment cannot be met");
    assert_eq!((code, name.as_str()), (308, "CurrentConfigNotCommittedYet"));
    assert!(
        msg.contains("has not yet propagated to a majority"),
        "{msg}"
    );
    // A majority back: the same reconfig goes through.
    for m in ["west-1", "witness-1"] {
        sim.revive(m);
    }
    assert_eq!(sim.primary().as_deref(), Some(p.as_str()));
    admin(
        &c,
        doc! { "replSetReconfig": next(&cfg, |_| {}), "maxTimeMS": 10_000 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", sim.describe()));
    assert!(commitment_status(&c).await);
    // A secondary cannot report commitment.
    let s = direct(&sim, "west-1").await;
    let (code, _, _) = admin(&s, doc! { "replSetGetConfig": 1, "commitmentStatus": true })
        .await
        .expect_err("primary only");
    assert_eq!(code, 10107);
}
