//! The background observer: every store observed every few seconds (FCC's
//! node refresh), the last-known state kept for `GET /v1/state` and
//! persisted to `<state-dir>/last-known-state.json`, so a restarted server
//! shows what was last seen — marked with when, never passed off as live.

use super::metrics::Metrics;
use crate::journal::now_ms;
use crate::service::Service;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use utoipa::ToSchema;

/// One store as last observed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoreView {
    /// Store name.
    pub store: String,
    /// The observed state (members, roles, positions, lag), absent when the
    /// store could not be observed.
    #[schema(value_type = Option<Object>)]
    pub state: Option<serde_json::Value>,
    /// One line: primary and healthy members, or why it could not be observed.
    pub summary: String,
    /// The verdict on each member and the store (`coordinator/src/health.rs`:
    /// reachable, replicating from the primary, within the lag bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub health: Option<serde_json::Value>,
    /// Why the store could not be observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A round of observations.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// When the round ended (ms since the Unix epoch).
    pub observed_at_ms: u64,
    /// Read from the state directory at start-up: seen by an earlier process.
    pub persisted: bool,
    /// Per store, in topology order.
    pub stores: Vec<StoreView>,
}

/// The last-known state, refreshed in the background.
#[derive(Debug)]
pub struct Observer {
    latest: RwLock<Option<Snapshot>>,
    file: PathBuf,
    /// Counts completed rounds, so subscribers wake on each new one.
    rounds: tokio::sync::watch::Sender<u64>,
}

const FILE: &str = "last-known-state.json";

impl Observer {
    /// An observer persisting to `state_dir`, starting from what an earlier
    /// process persisted there (if anything readable).
    pub fn new(state_dir: &Path) -> Self {
        let file = state_dir.join(FILE);
        let latest = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
            .map(|mut s| {
                s.persisted = true;
                s
            });
        Observer {
            latest: RwLock::new(latest),
            file,
            rounds: tokio::sync::watch::channel(0).0,
        }
    }

    /// The last round, if any.
    pub fn latest(&self) -> Option<Snapshot> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wakes whenever a round completes (`GET /v1/state/events`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// Whether a round of this process has completed.
    pub fn live(&self) -> bool {
        self.latest().is_some_and(|s| !s.persisted)
    }

    /// Observe every store once, keep and persist the result.
    pub async fn round(&self, service: &Service, metrics: &Metrics) {
        let stores = match service.state().await {
            Ok(report) => report
                .stores
                .into_iter()
                .zip(report.health)
                .map(|((store, s), (_, h))| match (s, h) {
                    (Ok(s), Ok(h)) => StoreView {
                        summary: h.summary(),
                        health: serde_json::to_value(&h).ok(),
                        state: serde_json::to_value(&s).ok(),
                        store,
                        error: None,
                    },
                    (Err(e), _) | (_, Err(e)) => StoreView {
                        summary: format!("cannot observe: {e}"),
                        health: None,
                        state: None,
                        store,
                        error: Some(e),
                    },
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "observer: no controllers");
                return;
            }
        };
        let snap = Snapshot {
            observed_at_ms: now_ms(),
            persisted: false,
            stores,
        };
        metrics.observed(&snap);
        if let Err(e) = persist(&self.file, &snap) {
            tracing::warn!(file = %self.file.display(), error = %e, "observer: cannot persist last-known state");
        }
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(snap);
        self.rounds.send_modify(|n| *n += 1);
    }

    /// Refresh every `interval` until the task is dropped.
    pub async fn run(self: Arc<Self>, service: Service, metrics: Arc<Metrics>, interval: Duration) {
        loop {
            self.round(&service, &metrics).await;
            tokio::time::sleep(interval).await;
        }
    }
}

fn persist(file: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(snap).unwrap_or_default())?;
    std::fs::rename(&tmp, file)
}
