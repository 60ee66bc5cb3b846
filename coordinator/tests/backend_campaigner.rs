//! The background election a server runs: one of three leads, the others
//! know who; when the leader's session is destroyed behind its back, another
//! takes over with a greater token (Consul simulator).

use std::sync::Arc;
use std::time::Duration;
use switchyard::backend::Campaigner;
use switchyard_coordination::consul::{Consul, ConsulOptions};
use switchyard_coordination::{Coordinator, Node};
use switchyard_lab::consulsim::ConsulSim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_one_leader_then_a_successor() {
    let sim = ConsulSim::start("127.0.0.1").await.unwrap();
    let mut opts = ConsulOptions::new(sim.address());
    opts.lock_delay = Duration::from_millis(200);
    let servers: Vec<Arc<Campaigner>> = (1..=3)
        .map(|i| {
            let b: Arc<dyn Coordinator> = Arc::new(Consul::new(opts.clone()).unwrap());
            Campaigner::start(
                b,
                Node {
                    name: format!("s{i}"),
                    url: format!("http://s{i}"),
                },
                Duration::from_millis(100),
            )
        })
        .collect();
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let leading: Vec<_> = servers.iter().filter(|s| s.leads()).collect();
            let agreed = servers.iter().all(|s| {
                s.leader().map(|l| l.token)
                    == leading.first().and_then(|l| l.leader()).map(|l| l.token)
            });
            if leading.len() == 1 && agreed {
                return leading[0].until_leading().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("one leader, known to all");
    assert_eq!(servers.iter().filter(|s| s.leads()).count(), 1);
    // Depose it in the backend.
    destroy_session(&sim.address(), first.lease_id());
    let second = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(s) = servers.iter().find(|s| s.leads()) {
                let l = s.until_leading().await;
                if l.token() != first.token() {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a successor");
    assert!(second.token() > first.token());
    assert!(first.is_lost());
    assert_eq!(servers.iter().filter(|s| s.leads()).count(), 1);
}

/// `PUT /v1/session/destroy/ID`, as an operator would send it.
fn destroy_session(addr: &str, id: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /v1/session/destroy/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
