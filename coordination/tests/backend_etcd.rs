//! The coordination behaviour suite on real etcd: a three-member cluster
//! from the lab, several independent clients (one per simulated server).

use async_trait::async_trait;
use std::time::Duration;
use switchyard_coordination::etcd::{Etcd, EtcdOptions};
use switchyard_coordination::suite::{self, Harness};
use switchyard_coordination::{Coordinator, Leadership, Node};
use switchyard_lab::etcd::EtcdCluster;

struct EtcdHarness {
    endpoints: Vec<String>,
    prefix: String,
}

impl EtcdHarness {
    fn options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::new(self.endpoints.clone());
        o.prefix = self.prefix.clone();
        // Short, so lapses are seen quickly; etcd grants at least its minimum.
        o.ttl = Duration::from_secs(3);
        o
    }
}

#[async_trait]
impl Harness for EtcdHarness {
    async fn open(&self) -> Box<dyn Coordinator> {
        Box::new(Etcd::connect(self.options()).await.expect("connect"))
    }

    async fn depose(&self, leadership: &Leadership) {
        // Revoke the lease from another client, as an operator or an etcd
        // lease expiry would: the holder is not told.
        let mut c = etcd_client::Client::connect(&self.endpoints, None)
            .await
            .expect("admin client");
        let id = i64::from_str_radix(leadership.lease_id(), 16).expect("lease id");
        c.lease_revoke(id).await.expect("revoke");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_passes_the_suite() {
    let cluster = EtcdCluster::start(3, None).await.expect("etcd lab");
    let h = EtcdHarness {
        endpoints: cluster.endpoints(),
        prefix: "/suite".into(),
    };
    suite::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_survives_losing_one_etcd_member_and_tokens_keep_growing() {
    let cluster = EtcdCluster::start(3, None).await.expect("etcd lab");
    let h = EtcdHarness {
        endpoints: cluster.endpoints(),
        prefix: "/survive".into(),
    };
    // Longer than etcd's own election after losing its leader (2.5 s in
    // the lab), which no lease renewal can get through.
    let mut o = h.options();
    o.ttl = Duration::from_secs(15);
    let a = Etcd::connect(o).await.unwrap();
    let me = Node {
        name: "a".into(),
        url: "http://a".into(),
    };
    let l = a.try_campaign(&me).await.unwrap().expect("leads");
    let first = cluster.members()[0].name.clone();
    cluster.kill(&first).expect("kill one member");
    // Two of three keep a quorum: appends go on under the same leadership.
    let id = "20261201T000010Z-survive";
    for seq in 1..=3 {
        tokio::time::timeout(
            Duration::from_secs(60),
            a.append(&l, id, seq, format!("{{\"n\":{seq}}}\n").as_bytes()),
        )
        .await
        .expect("no hang")
        .unwrap_or_else(|e| panic!("append {seq} with a member down: {e}"));
    }
    assert!(!l.is_lost(), "{:?}", l.lost_reason());
    let t = l.token();
    a.resign(l).await.unwrap();
    let b = h.open().await;
    let l2 = b.campaign(&me, Duration::from_millis(100)).await.unwrap();
    assert!(l2.token() > t);
}
