//! The execution journal kept in a coordination backend (the Consul
//! simulator and the file backend): records round-trip through the
//! backend, and a deposed leader's append is refused.

use std::sync::Arc;
use std::time::Duration;
use switchyard::backend::{BackendJournalStore, FileCoordinator, LeadershipGuard};
use switchyard::journal::{JournalError, JournalStore, Record};
use switchyard::lock::LockGuard;
use switchyard_coordination::consul::{Consul, ConsulOptions};
use switchyard_coordination::{Coordinator, Node};
use switchyard_lab::consulsim::ConsulSim;

fn node(n: &str) -> Node {
    Node {
        name: n.into(),
        url: format!("http://{n}"),
    }
}

fn rec(token: u64) -> Record {
    Record::Resumed {
        fencing_token: token.into(),
        at_ms: 7,
    }
}

async fn round_trip_and_fencing(a: Arc<dyn Coordinator>, b: Arc<dyn Coordinator>) {
    let la = Arc::new(
        a.campaign(&node("a"), Duration::from_millis(100))
            .await
            .unwrap(),
    );
    let guard = LeadershipGuard::new(la.clone(), Duration::from_millis(1));
    assert_eq!(guard.token().get(), la.token());
    assert!(guard.still_held());
    let store = BackendJournalStore::new(a.clone(), Some(la.clone()));
    let id = "20261201T000020Z-run-e1";
    let mut j = store.create(id, &rec(1)).unwrap();
    j.append(&rec(2)).unwrap();
    // Another server reads the same records, without a leadership.
    let reader = BackendJournalStore::new(b.clone(), None);
    assert_eq!(reader.read(id).unwrap(), vec![rec(1), rec(2)]);
    assert!(reader.list().unwrap().contains(&id.to_string()));
    assert!(matches!(
        reader.open(id).map(drop),
        Err(JournalError::Fenced { .. })
    ));
    // Depose a (resign); b leads and appends; a's journal is refused.
    let signal = guard.lost_signal().unwrap();
    la.release();
    assert!(signal.is_cancelled() && !guard.still_held());
    let lb = Arc::new(
        b.campaign(&node("b"), Duration::from_millis(100))
            .await
            .unwrap(),
    );
    let mut jb = BackendJournalStore::new(b.clone(), Some(lb.clone()))
        .open(id)
        .unwrap();
    jb.append(&rec(3)).unwrap();
    let r = j.append(&rec(99));
    assert!(matches!(r, Err(JournalError::Fenced { .. })), "{r:?}");
    assert_eq!(reader.read(id).unwrap(), vec![rec(1), rec(2), rec(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_in_consul_round_trips_and_fences() {
    let sim = ConsulSim::start("127.0.0.1").await.unwrap();
    let c = || -> Arc<dyn Coordinator> {
        Arc::new(Consul::new(ConsulOptions::new(sim.address())).unwrap())
    };
    round_trip_and_fencing(c(), c()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_in_the_file_backend_round_trips_and_fences() {
    let dir = tempfile::tempdir().unwrap();
    let c = || -> Arc<dyn Coordinator> { Arc::new(FileCoordinator::new(dir.path()).unwrap()) };
    round_trip_and_fencing(c(), c()).await;
    // And it is the CLI's journal format, in the state directory.
    let file = switchyard::journal::FileJournalStore::new(dir.path()).unwrap();
    assert_eq!(file.read("20261201T000020Z-run-e1").unwrap().len(), 3);
}

#[tokio::test]
async fn a_current_thread_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let c: Arc<dyn Coordinator> = Arc::new(FileCoordinator::new(dir.path()).unwrap());
    let r = BackendJournalStore::new(c, None).list();
    assert!(matches!(r, Err(JournalError::Backend { .. })), "{r:?}");
}
