//! A won election: the fencing token, the lease and the signal that fires
//! when the lease is lost.
//!
//! The lease is tracked on the *local* monotonic clock, conservatively: a
//! renewal extends it to `sent + ttl`, where `sent` is when the renewal
//! request left, before the backend saw it. The backend's own clock starts
//! its TTL later than that (etcd on receipt; Consul only guarantees the TTL
//! as a lower bound), so the local deadline passes first and a leader stops
//! before the backend can elect another. A watchdog task fires the signal
//! when the deadline passes without a renewal, even if the renewal is stuck
//! in a partition and never returns.

use crate::error::CoordinationError;
use crate::Node;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

struct Shared {
    /// When the lease lapses; `None`: it never does (file backend: the flock
    /// is held until the process exits).
    deadline: Mutex<Option<Instant>>,
    /// Fired once, when the leadership is lost.
    lost: CancellationToken,
    /// Why it was lost (set before `lost` fires).
    reason: Mutex<Option<String>>,
    /// Fired when the holder resigns or drops the leadership, so the
    /// backend's renewal task releases the lease and ends.
    released: CancellationToken,
}

impl Shared {
    fn remaining(&self) -> Duration {
        if self.lost.is_cancelled() {
            return Duration::ZERO;
        }
        match *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Duration::MAX,
            Some(d) => d.saturating_duration_since(Instant::now()),
        }
    }

    fn lose(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.lost.cancel();
    }
}

/// A leadership won from a [`Coordinator`](crate::Coordinator).
///
/// Holding one means: at the moment of the last successful renewal this
/// server was the backend's only leader, and no other server can become
/// leader before [`remaining`](Leadership::remaining) runs out. Before each
/// intent the leader calls [`ensure`](Leadership::ensure) with the time the
/// step needs; operations in flight run under
/// [`cancellation`](Leadership::cancellation) and are cancelled the moment the
/// lease is lost.
///
/// Dropping it releases the leadership (best effort, in the background);
/// [`Coordinator::resign`](crate::Coordinator::resign) does so and waits.
pub struct Leadership {
    token: u64,
    node: Node,
    backend: String,
    lease_id: String,
    ttl: Duration,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("token", &self.token)
            .field("node", &self.node.name)
            .field("backend", &self.backend)
            .field("lease_id", &self.lease_id)
            .field("remaining", &self.remaining())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// The backend's side of a [`Leadership`]: its renewal task reports each
/// renewal and the loss of the lease through it, and learns from it when the
/// holder let go. Cloneable; every clone speaks for the same leadership.
#[derive(Clone)]
pub struct LeaseKeeper {
    shared: Arc<Shared>,
    token: u64,
}

impl Leadership {
    /// A new leadership, for backend implementations. `lease` is the
    /// backend's TTL and `granted` when the request that obtained it was sent
    /// (the lease runs until `granted + lease` unless renewed); `None` for a
    /// lock that never lapses. Spawns the watchdog (needs a Tokio runtime).
    pub fn new(
        token: u64,
        node: Node,
        backend: String,
        lease_id: String,
        lease: Option<(Duration, Instant)>,
    ) -> (Leadership, LeaseKeeper) {
        let shared = Arc::new(Shared {
            deadline: Mutex::new(lease.map(|(ttl, granted)| granted + ttl)),
            lost: CancellationToken::new(),
            reason: Mutex::new(None),
            released: CancellationToken::new(),
        });
        if lease.is_some() {
            tokio::spawn(watchdog(Arc::clone(&shared)));
        }
        let keeper = LeaseKeeper {
            shared: Arc::clone(&shared),
            token,
        };
        let l = Leadership {
            token,
            node,
            backend,
            lease_id,
            ttl: lease.map_or(Duration::MAX, |(t, _)| t),
            shared,
        };
        (l, keeper)
    }

    /// The fencing token: strictly greater than every token the backend
    /// handed out before, to any server.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Who holds it.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The backend's name of the lease (etcd lease id, Consul session id,
    /// the lock file), for logs and for the backend's own writes.
    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }

    /// The lease TTL (`Duration::MAX` for a lock that never lapses).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long the leadership is guaranteed to last without another
    /// renewal: zero once lost, `Duration::MAX` for a lock that never lapses.
    pub fn remaining(&self) -> Duration {
        self.shared.remaining()
    }

    /// The check before each intent: `Ok(remaining)` when the leadership is
    /// held and at least `needed` of it remains, else
    /// [`CoordinationError::NotLeader`] saying why. A step that needs more
    /// time than the lease has left is not started: it could not be fenced
    /// to its end.
    pub fn ensure(&self, needed: Duration) -> Result<Duration, CoordinationError> {
        let remaining = self.remaining();
        if self.is_lost() {
            return Err(self.not_leader(
                self.lost_reason()
                    .unwrap_or_else(|| "leadership lost".into()),
            ));
        }
        if remaining < needed {
            return Err(self.not_leader(format!(
                "lease has {} ms left, the step needs {} ms",
                remaining.as_millis(),
                needed.as_millis()
            )));
        }
        Ok(remaining)
    }

    /// A [`CoordinationError::NotLeader`] for this leadership.
    pub fn not_leader(&self, reason: impl Into<String>) -> CoordinationError {
        CoordinationError::NotLeader {
            backend: self.backend.clone(),
            token: self.token,
            reason: reason.into(),
        }
    }

    /// Whether the leadership has been lost (the signal fired).
    pub fn is_lost(&self) -> bool {
        self.shared.lost.is_cancelled()
    }

    /// Completes when the leadership is lost: the lease lapsed, the backend
    /// refused a renewal, or the holder resigned. Await it beside an
    /// operation (`tokio::select!`) to abandon the operation at once.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.shared.lost.cancelled()
    }

    /// A token cancelled when the leadership is lost, to hand to work in
    /// flight (cancelling the returned token itself does not resign).
    pub fn cancellation(&self) -> CancellationToken {
        self.shared.lost.child_token()
    }

    /// Why the leadership was lost, once it was.
    pub fn lost_reason(&self) -> Option<String> {
        self.shared
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For backends: the backend refused a fenced write because this
    /// leadership is no longer current — it is gone for good, so fire the
    /// signal now rather than at the next renewal.
    pub fn lose(&self, reason: impl Into<String>) {
        self.shared.lose(reason.into());
    }

    /// Mark the leadership given up (used by backends' `resign`): the
    /// signal fires and the renewal task releases the lease.
    pub fn release(&self) {
        // Released before lost: whoever wakes on the loss sees it was a
        // resignation.
        self.shared.released.cancel();
        self.shared.lose("resigned".into());
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.release();
    }
}

impl LeaseKeeper {
    /// The token of the leadership this keeper renews.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// A renewal sent at `sent` was accepted with `ttl`: the lease now runs
    /// to `sent + ttl` (never shortened, never revived once lost).
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        if self.is_lost() {
            return;
        }
        let mut d = self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let next = sent + ttl;
        if let Some(cur) = *d {
            if next > cur {
                *d = Some(next);
            }
        }
    }

    /// The backend says the lease is gone (renewal refused, key taken over):
    /// fire the signal with `reason`.
    pub fn lose(&self, reason: impl Into<String>) {
        self.shared.lose(reason.into());
    }

    /// Whether the leadership has been lost.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.is_cancelled()
    }

    /// Completes when the leadership is lost (for any reason).
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.shared.lost.cancelled()
    }

    /// Completes when the holder resigned or dropped the leadership: the
    /// renewal task then releases the lease in the backend and ends.
    pub fn released(&self) -> WaitForCancellationFuture<'_> {
        self.shared.released.cancelled()
    }

    /// Whether the holder resigned or dropped the leadership (as opposed to
    /// losing it to a lapse or the backend).
    pub fn is_released(&self) -> bool {
        self.shared.released.is_cancelled()
    }

    /// Time left until the local deadline (zero once lost).
    pub fn remaining(&self) -> Duration {
        self.shared.remaining()
    }
}

/// Fire the signal when the deadline passes without a renewal.
async fn watchdog(shared: Arc<Shared>) {
    loop {
        let Some(deadline) = *shared.deadline.lock().unwrap_or_else(|p| p.into_inner()) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.lost.cancelled() => return,
        }
        let now = Instant::now();
        let current = *shared.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some_and(|d| d <= now) {
            shared.lose("lease lapsed: no renewal accepted within the TTL".into());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "a".into(),
            url: "http://a".into(),
        }
    }

    #[tokio::test]
    async fn lapses_without_renewal_and_signal_fires() {
        let ttl = Duration::from_millis(200);
        let (l, keeper) = Leadership::new(
            7,
            node(),
            "test".into(),
            "lease".into(),
            Some((ttl, Instant::now())),
        );
        assert!(l.ensure(Duration::ZERO).is_ok());
        // Generous bound: only that the signal fires at all, not when.
        tokio::time::timeout(Duration::from_secs(30), l.lost())
            .await
            .expect("signal fired");
        assert!(keeper.is_lost());
        assert_eq!(l.remaining(), Duration::ZERO);
        let e = l.ensure(Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("lease lapsed"), "{e}");
        // A late renewal does not revive it.
        keeper.renewed(Instant::now(), Duration::from_secs(60));
        assert!(l.is_lost());
    }

    #[tokio::test]
    async fn renewal_extends_and_ensure_checks_what_a_step_needs() {
        let (l, keeper) = Leadership::new(
            1,
            node(),
            "test".into(),
            "lease".into(),
            Some((Duration::from_secs(60), Instant::now())),
        );
        keeper.renewed(Instant::now(), Duration::from_secs(600));
        assert!(l.remaining() > Duration::from_secs(60));
        let e = l.ensure(Duration::from_secs(3600)).unwrap_err();
        assert!(
            matches!(e, CoordinationError::NotLeader { token: 1, .. }),
            "{e}"
        );
        assert!(!l.is_lost());
        drop(l);
        assert!(keeper.is_lost());
        tokio::time::timeout(Duration::from_secs(30), keeper.released())
            .await
            .expect("released on drop");
    }

    #[tokio::test]
    async fn unbounded_lock_never_lapses() {
        let (l, _k) = Leadership::new(1, node(), "file".into(), "lock".into(), None);
        assert_eq!(l.remaining(), Duration::MAX);
        assert!(l.ensure(Duration::from_secs(86_400)).is_ok());
    }
}
