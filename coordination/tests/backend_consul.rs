//! The coordination behaviour suite on the Consul simulator (Consul cannot
//! run here; the simulator is checked by py-consul in
//! tests/lab/tests/consulsim_pyconsul.rs).

use async_trait::async_trait;
use std::time::Duration;
use switchyard_coordination::consul::{Consul, ConsulOptions};
use switchyard_coordination::suite::{self, Harness};
use switchyard_coordination::{Coordinator, Leadership};
use switchyard_lab::consulsim::ConsulSim;

struct ConsulHarness {
    address: String,
    prefix: String,
}

impl ConsulHarness {
    fn options(&self) -> ConsulOptions {
        let mut o = ConsulOptions::new(self.address.clone());
        o.prefix = self.prefix.clone();
        o.lock_delay = Duration::from_secs(1);
        o
    }
}

#[async_trait]
impl Harness for ConsulHarness {
    async fn open(&self) -> Box<dyn Coordinator> {
        Box::new(Consul::new(self.options()).expect("client"))
    }

    async fn depose(&self, leadership: &Leadership) {
        // Destroy the session from another client, as an operator (or a
        // failed node check) would: the holder is not told.
        let r = reqwest::Client::new()
            .put(format!(
                "http://{}/v1/session/destroy/{}",
                self.address,
                leadership.lease_id()
            ))
            .send()
            .await
            .expect("destroy");
        assert!(r.status().is_success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_backend_passes_the_suite() {
    let sim = ConsulSim::start("127.0.0.1")
        .await
        .expect("consul simulator");
    let h = ConsulHarness {
        address: sim.address(),
        prefix: "suite".into(),
    };
    suite::run_all(&h).await;
    // Every resigned or deposed leadership destroyed its session.
    for _ in 0..100 {
        if sim.sessions() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} sessions left behind", sim.sessions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_ttl_is_refused_as_consul_refuses_it() {
    let mut o = ConsulOptions::new("127.0.0.1:1");
    o.ttl = Duration::from_secs(5);
    assert!(Consul::new(o).is_err());
}
