//! The coordination behaviour suite on the embedded file backend: one state
//! directory, several independent clients (as several processes on one
//! machine would open it).

use async_trait::async_trait;
use switchyard::backend::FileCoordinator;
use switchyard::journal::{encode_line, Record};
use switchyard_coordination::suite::{self, Harness};
use switchyard_coordination::{Coordinator, Leadership};

struct File {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for File {
    async fn open(&self) -> Box<dyn Coordinator> {
        Box::new(FileCoordinator::new(self.dir.path()).expect("open file backend"))
    }

    async fn depose(&self, leadership: &Leadership) {
        // A flock cannot be taken from a live holder; it goes when the
        // holder lets go (or dies), which is local.
        leadership.release();
        let c = FileCoordinator::new(self.dir.path()).unwrap();
        for _ in 0..1000 {
            if c.leader().await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("lock still held after release");
    }

    fn depose_is_remote(&self) -> bool {
        false
    }

    fn entry(&self, label: &str) -> Vec<u8> {
        // Distinct journal records: a `resumed` with a token from the label.
        let token = label.bytes().fold(0u64, |h, b| h * 31 + u64::from(b));
        encode_line(&Record::Resumed {
            fencing_token: token.into(),
            at_ms: 1,
        })
        .unwrap()
    }
}

#[tokio::test]
async fn file_backend_passes_the_suite() {
    let h = File {
        dir: tempfile::tempdir().unwrap(),
    };
    suite::run_all(&h).await;
}

#[tokio::test]
async fn cli_lock_and_server_exclude_each_other() {
    use switchyard::lock::{FileLock, Lock};
    let dir = tempfile::tempdir().unwrap();
    let guard = FileLock::new(dir.path())
        .unwrap()
        .try_acquire("cli")
        .unwrap();
    let c = FileCoordinator::new(dir.path()).unwrap();
    let me = switchyard_coordination::Node {
        name: "s1".into(),
        url: "http://127.0.0.1:1".into(),
    };
    assert!(c.try_campaign(&me).await.unwrap().is_none());
    // A CLI run holds the lock but names no server leader.
    assert!(c.leader().await.unwrap().is_none());
    let token = guard.token();
    drop(guard);
    let l = c.try_campaign(&me).await.unwrap().expect("free now");
    assert!(l.token() > token.get());
}

/// The backend keeps the journal it appends to open with its entry count;
/// a leader that lost the lock and won it back must count again, or it
/// would take an entry number another holder used meanwhile.
#[tokio::test]
async fn a_new_leadership_counts_the_entries_again() {
    use switchyard_coordination::CoordinationError;
    let h = File {
        dir: tempfile::tempdir().unwrap(),
    };
    let me = switchyard_coordination::Node {
        name: "a".into(),
        url: "http://127.0.0.1:1".into(),
    };
    let id = "20261202T000001Z-cache";
    let a = h.open().await;
    let b = h.open().await;
    let la = a.try_campaign(&me).await.unwrap().expect("a leads");
    a.append(&la, id, 1, &h.entry("a1")).await.unwrap();
    a.append_lazy(&la, id, 2, &h.entry("a2")).await.unwrap();
    h.depose(&la).await;
    let lb = b.try_campaign(&me).await.unwrap().expect("b leads");
    b.append(&lb, id, 3, &h.entry("b3")).await.unwrap();
    h.depose(&lb).await;
    let la2 = a.try_campaign(&me).await.unwrap().expect("a leads again");
    // Entry 3 is b's: a's cached count (2) must not let it through.
    let taken = a.append(&la2, id, 3, &h.entry("a3")).await;
    assert!(
        matches!(taken, Err(CoordinationError::SeqTaken { seq: 3, .. })),
        "{taken:?}"
    );
    a.append(&la2, id, 4, &h.entry("a4")).await.unwrap();
    let got = b.entries(id).await.unwrap();
    assert_eq!(
        got,
        vec![h.entry("a1"), h.entry("a2"), h.entry("b3"), h.entry("a4")]
    );
}
