//! Sockets: one listener per member, one task per client connection, and
//! the ticker that drives heartbeats, elections and replication.

use super::commands;
use super::wire;
use super::world::World;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// State shared by every task of one simulator.
#[derive(Debug)]
pub struct Shared {
    world: Mutex<World>,
    /// Bumped after every change; waiters (write concern, awaitable hello,
    /// step-down catch-up, dropped connections) watch it.
    pub changed: watch::Sender<u64>,
    /// Wakes the ticker early after a write so replication is prompt.
    pub wake: Notify,
    /// Set when the simulator shuts down.
    pub shutdown: watch::Sender<bool>,
    next_conn: AtomicI64,
    next_reply: AtomicI32,
}

impl Shared {
    /// Wrap a world.
    pub fn new(world: World) -> Arc<Shared> {
        Arc::new(Shared {
            world: Mutex::new(world),
            changed: watch::channel(0).0,
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
            next_conn: AtomicI64::new(1),
            next_reply: AtomicI32::new(1),
        })
    }

    /// Lock the world for reading.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutate the world and wake every waiter.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let r = {
            let mut w = self.lock();
            f(&mut w)
        };
        self.notify();
        r
    }

    /// Wake every waiter and the ticker.
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
        self.wake.notify_one();
    }

    /// Wait until `check` returns `Some` or `timeout` passes (then `None`).
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&World) -> Option<R>,
    ) -> Option<R> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(r) = check(&self.lock()) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return check(&self.lock());
            }
        }
    }
}

/// Heartbeats every `heartbeatIntervalMillis`, replication every few
/// milliseconds or right after a write.
pub async fn ticker(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(3)) => {}
            _ = shared.wake.notified() => {}
            _ = stop.changed() => return,
        }
        let changed = {
            let mut w = shared.lock();
            let now = Instant::now();
            let a = w.heartbeat_tick(now);
            let b = w.replicate_tick(now);
            a || b
        };
        if changed {
            shared.changed.send_modify(|v| *v += 1);
        }
    }
}

/// Accept connections for member `idx`. Connections to a member that is
/// down or cut off are closed at once (the client sees a reset).
pub async fn serve_member(shared: Arc<Shared>, idx: usize, listener: TcpListener) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let gen = {
            let w = shared.lock();
            if !w.client_reachable(idx) {
                continue;
            }
            w.nodes[idx].conn_gen
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
            let mut rx = shared.changed.subscribe();
            let mut stop = shared.shutdown.subscribe();
            let cut = async {
                loop {
                    {
                        let w = shared.lock();
                        if w.nodes[idx].conn_gen != gen || !w.client_reachable(idx) {
                            return;
                        }
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = connection(shared.clone(), idx, gen, conn_id, stream) => {}
                _ = cut => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Whether connection generation `gen` of member `idx` may still carry
/// client traffic. The watcher in `serve_member` closes cut connections
/// asynchronously; this synchronous check closes the window in which a
/// request already read would be served (or its reply delivered) after the
/// member was cut off or killed, which a real partition never allows.
fn still_connected(shared: &Shared, idx: usize, gen: u64) -> bool {
    let w = shared.lock();
    w.nodes[idx].conn_gen == gen && w.client_reachable(idx)
}

async fn connection(shared: Arc<Shared>, idx: usize, gen: u64, conn_id: i64, stream: TcpStream) {
    let (mut r, mut w) = stream.into_split();
    loop {
        let req = match wire::read_request(&mut r).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "closing connection after a framing error");
                return;
            }
        };
        let trace = std::env::var_os("MONGOSIM_TRACE").is_some();
        if trace {
            eprintln!(
                "mongosim[{idx}] conn {conn_id} <- {}{}",
                if req.legacy { "OP_QUERY " } else { "" },
                req.body
            );
        }
        if !still_connected(&shared, idx, gen) {
            return;
        }
        let reply = commands::handle(&shared, idx, conn_id, &req).await;
        if !still_connected(&shared, idx, gen) {
            return;
        }
        if trace {
            eprintln!("mongosim[{idx}] conn {conn_id} -> {reply}");
        }
        let id = shared.next_reply.fetch_add(1, Ordering::Relaxed);
        if wire::write_reply(&mut w, &req, id, &reply).await.is_err() {
            return;
        }
    }
}
