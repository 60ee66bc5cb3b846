//! The behaviour suite every [`Coordinator`] must pass (as OpenDAL runs one
//! suite against every service). Each backend's tests call [`run_all`] with
//! a [`Harness`] that opens independent clients of one fresh namespace —
//! one per simulated server — and can depose a leader out of band, the way
//! a partition or an operator would.
//!
//! Every check observes the backend through its real protocol; no check
//! asserts on timing except through generous timeouts that only bound a
//! hang.

use crate::{CoordinationError, Coordinator, Leadership, Node, RunningExecution};
use async_trait::async_trait;
use std::future::Future;
use std::time::Duration;

/// What the suite needs from a backend's test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, independent client (its own connection/session state) of the
    /// namespace under test: what a separate server would open.
    async fn open(&self) -> Box<dyn Coordinator>;

    /// Make `leadership` no longer current *in the backend*, without telling
    /// its holder (etcd: revoke the lease from another client; Consul:
    /// destroy the session from another client; file: release the lock).
    async fn depose(&self, leadership: &Leadership);

    /// Whether [`Harness::depose`] leaves the holder's local signal unfired
    /// until it notices (true for etcd and Consul, whose holder learns only
    /// at its next renewal; false for the file lock, whose release is local).
    fn depose_is_remote(&self) -> bool {
        true
    }

    /// A valid journal entry, distinct for each `label`. Backends store
    /// entries as opaque bytes; the file backend keeps journal lines, so its
    /// harness returns encoded journal records.
    fn entry(&self, label: &str) -> Vec<u8> {
        format!("{{\"entry\":\"{label}\"}}\n").into_bytes()
    }
}

/// Bound on any wait in the suite: long enough for a loaded CI machine,
/// short enough that a hang fails instead of stalling CI.
const HANG: Duration = Duration::from_secs(90);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {HANG:?}"),
    }
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        url: format!("http://{name}.test:8080"),
    }
}

async fn win(c: &dyn Coordinator, name: &str) -> Leadership {
    bounded(
        "campaign",
        c.campaign(&node(name), Duration::from_millis(100)),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} campaign: {e}"))
}

/// Run every check, in order, each on its own execution ids.
pub async fn run_all(h: &dyn Harness) {
    one_leader_and_who(h).await;
    tokens_strictly_increase(h).await;
    execution_tokens(h).await;
    journal_cas(h).await;
    deposed_leader_cannot_append(h).await;
    loss_fires_signal(h).await;
    lease_checked_before_intent(h).await;
    running_record(h).await;
}

/// Two servers campaign at once: exactly one wins, and `leader()` names it
/// with its URL and token, from any client.
pub async fn one_leader_and_who(h: &dyn Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let (na, nb) = (node("a"), node("b"));
    let (ra, rb) = bounded("concurrent campaigns", async {
        tokio::join!(a.try_campaign(&na), b.try_campaign(&nb))
    })
    .await;
    let (ra, rb) = (ra.expect("a campaigns"), rb.expect("b campaigns"));
    assert!(
        ra.is_some() != rb.is_some(),
        "exactly one leader expected: a={:?} b={:?}",
        ra.as_ref().map(Leadership::token),
        rb.as_ref().map(Leadership::token)
    );
    let (winner, name, loser) = match (ra, rb) {
        (Some(l), None) => (l, "a", &b),
        (None, Some(l)) => (l, "b", &a),
        _ => unreachable!(),
    };
    assert!(
        bounded("retry", loser.try_campaign(&node("c")))
            .await
            .expect("campaign")
            .is_none(),
        "a third campaign won while {name} leads"
    );
    let c = h.open().await;
    let info = bounded("leader", c.leader())
        .await
        .expect("leader")
        .expect("someone leads");
    assert_eq!(info.node, node(name));
    assert_eq!(info.token, winner.token());
    let backend = if name == "a" { &a } else { &b };
    bounded("resign", backend.resign(winner))
        .await
        .expect("resign");
    let after = bounded("leader", c.leader()).await.expect("leader");
    assert!(after.is_none(), "still a leader after resign: {after:?}");
}

/// Tokens strictly increase across servers and across resign/re-win.
pub async fn tokens_strictly_increase(h: &dyn Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let mut last = 0u64;
    for (i, (c, name)) in [(&a, "a"), (&b, "b"), (&a, "a"), (&b, "b")]
        .into_iter()
        .enumerate()
    {
        let l = win(c.as_ref(), name).await;
        assert!(
            l.token() > last,
            "round {i}: token {} after {last}",
            l.token()
        );
        last = l.token();
        bounded("resign", c.resign(l)).await.expect("resign");
    }
}

/// Execution tokens: each greater than the leadership's and than the one
/// before; the next leader's tokens greater still; a deposed leader gets
/// none.
pub async fn execution_tokens(h: &dyn Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let la = win(a.as_ref(), "a").await;
    let t1 = bounded("fresh_token", a.fresh_token(&la))
        .await
        .expect("token 1");
    let t2 = bounded("fresh_token", a.fresh_token(&la))
        .await
        .expect("token 2");
    assert!(la.token() < t1 && t1 < t2, "{} {t1} {t2}", la.token());
    bounded("depose", h.depose(&la)).await;
    let lb = win(b.as_ref(), "b").await;
    assert!(lb.token() > t2, "new leadership {} after {t2}", lb.token());
    let r = bounded("fresh_token", a.fresh_token(&la)).await;
    assert!(
        matches!(r, Err(CoordinationError::NotLeader { .. })),
        "deposed leader got a token: {r:?}"
    );
    let t3 = bounded("fresh_token", b.fresh_token(&lb))
        .await
        .expect("token 3");
    assert!(t3 > lb.token());
    drop(la);
    bounded("resign", b.resign(lb)).await.expect("resign");
}

/// Appends number entries without gaps and refuse a taken or skipped number.
pub async fn journal_cas(h: &dyn Harness) {
    let a = h.open().await;
    let l = win(a.as_ref(), "a").await;
    let id = "20261201T000001Z-suite-cas";
    let missing = bounded("entries", a.entries(id)).await;
    assert!(
        matches!(missing, Err(CoordinationError::NotFound { .. })),
        "{missing:?}"
    );
    bounded("append", a.append(&l, id, 1, &h.entry("n1")))
        .await
        .expect("append 1");
    let dup = bounded("append", a.append(&l, id, 1, &h.entry("nagain"))).await;
    assert!(
        matches!(dup, Err(CoordinationError::SeqTaken { seq: 1, .. })),
        "{dup:?}"
    );
    let gap = bounded("append", a.append(&l, id, 3, &h.entry("n3"))).await;
    assert!(
        matches!(gap, Err(CoordinationError::SeqTaken { seq: 3, .. })),
        "{gap:?}"
    );
    assert_eq!(
        bounded("append_next", a.append_next(&l, id, &h.entry("n2")))
            .await
            .expect("append_next"),
        2
    );
    let other = h.open().await;
    let got = bounded("entries", other.entries(id))
        .await
        .expect("entries");
    assert_eq!(got, vec![h.entry("n1"), h.entry("n2")]);
    let id2 = "20261201T000002Z-suite-cas";
    bounded("append", a.append(&l, id2, 1, &h.entry("n1")))
        .await
        .expect("append");
    let ids = bounded("executions", other.executions())
        .await
        .expect("executions");
    let pos = |x: &str| ids.iter().position(|i| i == x);
    assert!(
        pos(id).is_some() && pos(id) < pos(id2),
        "executions not listed in order: {ids:?}"
    );
    bounded("resign", a.resign(l)).await.expect("resign");
}

/// A leader deposed in the backend (its local signal may not have fired
/// yet) cannot append: not where the new leader already wrote, and not
/// where nobody has.
pub async fn deposed_leader_cannot_append(h: &dyn Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let id = "20261201T000003Z-suite-deposed";
    let la = win(a.as_ref(), "a").await;
    bounded("append", a.append(&la, id, 1, &h.entry("bya")))
        .await
        .expect("append 1");
    bounded("depose", h.depose(&la)).await;
    let lb = win(b.as_ref(), "b").await;
    assert!(lb.token() > la.token());
    bounded("append", b.append(&lb, id, 2, &h.entry("byb")))
        .await
        .expect("new leader appends 2");
    // The deposed leader's view: entry 2 is taken, entry 3 is free.
    for seq in [2, 3] {
        let r = bounded("append", a.append(&la, id, seq, &h.entry("bya"))).await;
        assert!(r.is_err(), "deposed leader appended entry {seq}");
    }
    let r = bounded("append", a.append(&la, id, 3, &h.entry("bya"))).await;
    assert!(
        matches!(r, Err(CoordinationError::NotLeader { token, .. }) if token == la.token()),
        "free entry: expected NotLeader, got {r:?}"
    );
    let got = bounded("entries", b.entries(id)).await.expect("entries");
    assert_eq!(got, vec![h.entry("bya"), h.entry("byb")]);
    // Nor can it touch the running record.
    let run = RunningExecution {
        id: id.into(),
        node: "a".into(),
        token: la.token(),
        started_ms: 1,
    };
    let r = bounded("claim", a.claim_running(&la, &run)).await;
    assert!(r.is_err(), "deposed leader recorded a running execution");
    drop(la);
    bounded("resign", b.resign(lb)).await.expect("resign");
}

/// Losing the lease in the backend fires the holder's signal, and tokens in
/// flight are cancelled with it.
pub async fn loss_fires_signal(h: &dyn Harness) {
    let a = h.open().await;
    let l = win(a.as_ref(), "a").await;
    let in_flight = l.cancellation();
    assert!(!l.is_lost() && !in_flight.is_cancelled());
    bounded("depose", h.depose(&l)).await;
    bounded("loss signal", l.lost()).await;
    bounded("in-flight cancellation", in_flight.cancelled()).await;
    assert!(l.lost_reason().is_some());
    let e = l.ensure(Duration::ZERO).unwrap_err();
    assert!(matches!(e, CoordinationError::NotLeader { .. }), "{e}");
    // Someone else can lead now.
    let b = h.open().await;
    let lb = win(b.as_ref(), "b").await;
    assert!(lb.token() > l.token());
    bounded("resign", b.resign(lb)).await.expect("resign");
}

/// `ensure` refuses a step that needs more than the lease has left, and
/// everything once the leadership is gone.
pub async fn lease_checked_before_intent(h: &dyn Harness) {
    let a = h.open().await;
    let l = win(a.as_ref(), "a").await;
    let left = l.ensure(Duration::ZERO).expect("fresh leadership holds");
    assert!(left <= l.ttl(), "remaining {left:?} beyond the TTL");
    if l.ttl() != Duration::MAX {
        let r = l.ensure(l.ttl() + Duration::from_secs(1));
        assert!(
            matches!(r, Err(CoordinationError::NotLeader { .. })),
            "{r:?}"
        );
    }
    let lease_id = l.lease_id().to_string();
    bounded("resign", a.resign(l)).await.expect("resign");
    assert!(!lease_id.is_empty());
}

/// The running record: one execution at a time, taken over by a new leader
/// for the same execution, cleared at the end.
pub async fn running_record(h: &dyn Harness) {
    let a = h.open().await;
    let b = h.open().await;
    let la = win(a.as_ref(), "a").await;
    let run = RunningExecution {
        id: "20261201T000004Z-suite-run".into(),
        node: "a".into(),
        token: la.token(),
        started_ms: 42,
    };
    bounded("claim", a.claim_running(&la, &run))
        .await
        .expect("claim");
    let other = RunningExecution {
        id: "20261201T000005Z-suite-other".into(),
        ..run.clone()
    };
    match bounded("claim", a.claim_running(&la, &other)).await {
        Err(CoordinationError::Busy { running }) => assert_eq!(running, run),
        r => panic!("second execution: expected Busy, got {r:?}"),
    }
    bounded("resign", a.resign(la)).await.expect("resign");
    let lb = win(b.as_ref(), "b").await;
    let seen = bounded("running", b.running())
        .await
        .expect("running")
        .expect("record survives the leader");
    assert_eq!(seen.value, run);
    let taken = RunningExecution {
        node: "b".into(),
        token: lb.token(),
        ..run.clone()
    };
    bounded("claim", b.claim_running(&lb, &taken))
        .await
        .expect("new leader takes the same execution over");
    let stale = bounded("swap", b.swap_running(&lb, Some(seen.version), None)).await;
    assert!(
        matches!(stale, Err(CoordinationError::Changed { .. })),
        "stale version accepted: {stale:?}"
    );
    bounded("clear", b.clear_running(&lb, &run.id))
        .await
        .expect("clear");
    assert!(bounded("running", a.running())
        .await
        .expect("running")
        .is_none());
    bounded("resign", b.resign(lb)).await.expect("resign");
}
