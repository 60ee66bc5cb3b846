//! Replica-set command semantics of the simulator, exercised through the
//! real driver: reconfig validation, freeze, step-down catch-up, and the
//! members that must never become primary.

use bson::{doc, Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;
use std::time::Duration;
use switchyard_lab::mongosim::{MongoSim, MongoSimSpec, SimMemberSpec};

async fn direct(sim: &MongoSim, member: &str) -> Client {
    let uri = format!(
        "mongodb://{}/?directConnection=true",
        sim.host(member).expect("member")
    );
    let mut o = ClientOptions::parse(uri).await.unwrap();
    o.server_selection_timeout = Some(Duration::from_secs(5));
    Client::with_options(o).unwrap()
}

async fn admin(c: &Client, cmd: Document) -> Result<Document, i32> {
    c.database("admin")
        .run_command(cmd)
        .await
        .map_err(|e| match *e.kind {
            mongodb::error::ErrorKind::Command(ref ce) => ce.code,
            _ => panic!("unexpected error {e}"),
        })
}

async fn settled() -> (MongoSim, String) {
    let sim = MongoSim::start(MongoSimSpec::two_regions_and_arbiter("rs0"))
        .await
        .unwrap();
    let p = sim
        .wait_for_primary_in("east", Duration::from_secs(30))
        .await
        .expect("primary in east");
    (sim, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_is_validated_as_documented() {
    let (sim, p) = settled().await;
    let c = direct(&sim, &p).await;
    let cfg = admin(&c, doc! { "replSetGetConfig": 1 }).await.unwrap();
    let cfg = cfg.get_document("config").unwrap().clone();
    let version = cfg.get_i32("version").unwrap();
    let with = |f: &dyn Fn(&mut Document)| {
        let mut d = cfg.clone();
        f(&mut d);
        d
    };
    // Version must grow.
    let same = with(&|_| {});
    assert_eq!(
        admin(&c, doc! { "replSetReconfig": same })
            .await
            .unwrap_err(),
        103
    );
    // Arbiters have priority 0.
    let bad_arbiter = with(&|d| {
        let mut ms = d.get_array("members").unwrap().clone();
        let mut a = ms[4].as_document().unwrap().clone();
        a.insert("priority", 1.0);
        ms[4] = Bson::Document(a);
        d.insert("members", ms);
        d.insert("version", version + 1);
    });
    assert_eq!(
        admin(&c, doc! { "replSetReconfig": bad_arbiter })
            .await
            .unwrap_err(),
        93
    );
    // At most seven voting members.
    let eight = with(&|d| {
        let mut ms = d.get_array("members").unwrap().clone();
        for i in 0..3 {
            ms.push(Bson::Document(doc! { "_id": 10 + i, "host": format!("127.0.0.1:{}", 1 + i), "votes": 1, "priority": 1 }));
        }
        d.insert("members", ms);
        d.insert("version", version + 1);
    });
    assert_eq!(
        admin(&c, doc! { "replSetReconfig": eight })
            .await
            .unwrap_err(),
        93
    );
    // Only one voting member may change without force.
    let two = with(&|d| {
        let mut ms = d.get_array("members").unwrap().clone();
        for i in [2usize, 3] {
            let mut m = ms[i].as_document().unwrap().clone();
            m.insert("votes", 0);
            m.insert("priority", 0);
            ms[i] = Bson::Document(m);
        }
        d.insert("members", ms);
        d.insert("version", version + 1);
    });
    assert_eq!(
        admin(&c, doc! { "replSetReconfig": two.clone() })
            .await
            .unwrap_err(),
        103
    );
    // Not on a secondary.
    let sec = direct(&sim, "west-1").await;
    let ok_cfg = with(&|d| {
        d.insert("version", version + 1);
    });
    assert_eq!(
        admin(&sec, doc! { "replSetReconfig": ok_cfg.clone() })
            .await
            .unwrap_err(),
        10107
    );
    // A valid one is installed and reaches a majority.
    admin(&c, doc! { "replSetReconfig": ok_cfg }).await.unwrap();
    assert_eq!(sim.config_version(&p), i64::from(version + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_members_do_not_stand_until_unfrozen() {
    let (sim, p) = settled().await;
    let c = direct(&sim, &p).await;
    assert_eq!(
        admin(&c, doc! { "replSetFreeze": 60 }).await.unwrap_err(),
        95
    );
    for m in ["west-1", "west-2"] {
        admin(&direct(&sim, m).await, doc! { "replSetFreeze": 60 })
            .await
            .unwrap();
    }
    sim.cut_region("east");
    // Several election timeouts pass with no candidate in west.
    assert_eq!(
        sim.wait_for_primary_in("west", Duration::from_millis(2000))
            .await,
        None,
        "a frozen member stood for election"
    );
    let r = admin(&direct(&sim, "west-2").await, doc! { "replSetFreeze": 0 })
        .await
        .unwrap();
    assert_eq!(r.get_str("info").unwrap(), "unfreezing");
    assert_eq!(
        sim.wait_for_primary_in("west", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("west-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_waits_for_a_caught_up_secondary() {
    let (sim, p) = settled().await;
    let others: Vec<String> = sim
        .spec()
        .members
        .iter()
        .filter(|m| !m.arbiter && m.name != p)
        .map(|m| m.name.clone())
        .collect();
    for m in &others {
        sim.set_lag(m, Duration::from_secs(3600));
    }
    let app = Client::with_uri_str(sim.uri()).await.unwrap();
    app.database("x")
        .collection::<Document>("y")
        .insert_one(doc! { "a": 1 })
        .await
        .unwrap();
    let c = direct(&sim, &p).await;
    let err = admin(
        &c,
        doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 1 },
    )
    .await
    .unwrap_err();
    assert_eq!(err, 262, "no secondary caught up");
    assert_eq!(
        sim.primary().as_deref(),
        Some(p.as_str()),
        "primary kept its role"
    );
    assert_eq!(
        admin(
            &c,
            doc! { "replSetStepDown": 1, "secondaryCatchUpPeriodSecs": 5 }
        )
        .await
        .unwrap_err(),
        2,
        "catch-up period longer than the step-down period is refused"
    );
    for m in &others {
        sim.set_lag(m, Duration::ZERO);
    }
    admin(
        &c,
        doc! { "replSetStepDown": 30, "secondaryCatchUpPeriodSecs": 10 },
    )
    .await
    .unwrap();
    let new = sim.wait_for_primary(Duration::from_secs(30)).await.unwrap();
    assert_ne!(
        new, p,
        "the stepped-down member is frozen for the step-down period"
    );
}

/// What a lossless planned hand-over relies on: a frozen member is not
/// electable to a step-down (mongod's heartbeats report it unelectable), so
/// with every other electable member frozen the primary waits for the one
/// left to catch up and hands it the election; the w:1 writes acknowledged
/// before all survive. A frozen member refuses to step up, and a shorter
/// freeze does not lift a longer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_hands_over_only_to_an_unfrozen_caught_up_member() {
    let (sim, p) = settled().await;
    let other_east = if p == "east-1" { "east-2" } else { "east-1" };
    for m in [other_east, "west-2"] {
        admin(&direct(&sim, m).await, doc! { "replSetFreeze": 120 })
            .await
            .unwrap();
    }
    let west2 = direct(&sim, "west-2").await;
    admin(&west2, doc! { "replSetFreeze": 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        admin(&west2, doc! { "replSetStepUp": 1 })
            .await
            .unwrap_err(),
        125,
        "a frozen member does not step up, and freeze 1 did not shorten freeze 120"
    );
    // west-1 is behind: the caught-up member in east is frozen, so the
    // step-down must wait for west-1.
    sim.set_lag("west-1", Duration::from_millis(1500));
    let app = Client::with_uri_str(sim.uri()).await.unwrap();
    let coll = app.database("x").collection::<Document>("w1");
    for i in 0..20 {
        coll.insert_one(doc! { "_id": i }).await.unwrap();
    }
    admin(
        &direct(&sim, &p).await,
        doc! { "replSetStepDown": 60, "secondaryCatchUpPeriodSecs": 10 },
    )
    .await
    .unwrap();
    assert_eq!(
        sim.wait_for_primary(Duration::from_secs(30))
            .await
            .as_deref(),
        Some("west-1"),
        "handed over to the only unfrozen electable member\n{}",
        sim.describe()
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 20);
    assert_eq!(sim.rolled_back_inserts(), 0, "no w:1 write rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbiters_and_priority_zero_members_never_become_primary() {
    let spec = MongoSimSpec {
        set_name: "rs1".into(),
        store_name: "s".into(),
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        members: vec![
            SimMemberSpec::data("a", "r1", 1.0),
            SimMemberSpec::data("passive", "r2", 0.0),
            SimMemberSpec::arbiter("arb", "r3"),
        ],
    };
    let sim = MongoSim::start(spec).await.unwrap();
    assert_eq!(
        sim.wait_for_primary(Duration::from_secs(30))
            .await
            .as_deref(),
        Some("a")
    );
    let hello = admin(&direct(&sim, "passive").await, doc! { "hello": 1 })
        .await
        .unwrap();
    assert_eq!(hello.get_array("passives").unwrap().len(), 1);
    assert_eq!(hello.get_array("arbiters").unwrap().len(), 1);
    sim.kill("a");
    assert_eq!(
        sim.wait_for_primary(Duration::from_millis(2000)).await,
        None,
        "{}",
        sim.describe()
    );
    sim.revive("a");
    assert_eq!(
        sim.wait_for_primary(Duration::from_secs(30))
            .await
            .as_deref(),
        Some("a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_drive_faults() {
    let (sim, _) = settled().await;
    assert!(sim.control("cut nowhere").is_err());
    assert!(sim.control("fly east-1").is_err());
    sim.control("cut east").unwrap();
    assert!(sim
        .wait_for_primary_in("west", Duration::from_secs(30))
        .await
        .is_some());
    sim.control("heal east").unwrap();
    sim.control("lag west-1 5").unwrap();
    sim.control("kill west-2").unwrap();
    sim.control("revive west-2").unwrap();
    assert_ne!(sim.control("primary").unwrap(), "none");
}
