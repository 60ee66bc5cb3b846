//! The `Controller` trait (small, required) and `ControllerExt` (provided helpers).

use crate::capability::Capability;
use crate::error::{Error, ErrorKind, Result};
use crate::operation::{Operation, Outcome};
use crate::state::ObservedState;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_topology::StoreKind;

/// Who is issuing an operation: the execution and its fencing epoch.
///
/// Controllers that can store a token on the store (a config field, a table)
/// should refuse operations whose epoch is lower than one already seen, so a
/// coordinator that lost its leadership cannot keep promoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpContext {
    /// Execution id from the journal.
    pub execution_id: String,
    /// Monotonically increasing fencing epoch of the issuing coordinator.
    pub epoch: u64,
}

impl OpContext {
    /// A context for ad-hoc use (tests, `state`), epoch 0.
    pub fn adhoc() -> Self {
        OpContext {
            execution_id: "adhoc".into(),
            epoch: 0,
        }
    }
}

/// One replicated store. Implementations do their own I/O; they hold no plan
/// state, so the coordinator can resume with a fresh controller after a crash.
#[async_trait]
pub trait Controller: Send + Sync + std::fmt::Debug {
    /// Store name from the topology.
    fn store(&self) -> &str;

    /// Kind of store.
    fn kind(&self) -> StoreKind;

    /// What this controller supports.
    fn capability(&self) -> Capability;

    /// Look at every member. Unreachable members are reported in the state,
    /// not returned as errors; an error means nothing could be observed.
    async fn observe(&self) -> Result<ObservedState>;

    /// Carry out one operation. Must be idempotent.
    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome>;

    /// Release connections and stop background tasks before the runtime
    /// that spawned them ends. Some client libraries (the MongoDB driver)
    /// panic when their background workers are torn down by the runtime
    /// instead. The controller may be used again afterwards only where the
    /// implementation says so. The default does nothing.
    async fn shutdown(&self) {}

    /// The highest coordinator fencing epoch the store itself has recorded
    /// (a table, a config tag), where the store keeps one. `Ok(None)` means
    /// this kind records none; an error means it could not be read. `resume`
    /// compares it with the execution's own epochs: a higher one on the
    /// store means a later execution acted there, from any state directory.
    async fn recorded_epoch(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// How this store writes positions and names its history number, for
    /// everything printed to people. The default is plain numbers.
    fn notation(&self) -> crate::Notation {
        crate::Notation::PLAIN
    }
}

/// Helpers every controller gets for free.
#[async_trait]
pub trait ControllerExt: Controller {
    /// Poll `observe` until `cond` holds or `timeout` passes. Observation
    /// errors are retried while temporary.
    async fn wait_until<F>(
        &self,
        timeout: Duration,
        poll: Duration,
        cond: F,
    ) -> Result<ObservedState>
    where
        F: Fn(&ObservedState) -> bool + Send + Sync,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last_err = match self.observe().await {
                Ok(s) if cond(&s) => return Ok(s),
                Ok(_) => None,
                Err(e) if e.is_temporary() => Some(e),
                Err(e) => return Err(e),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(last_err.unwrap_or_else(|| {
                    Error::new(
                        ErrorKind::Timeout,
                        self.store(),
                        format!("condition not reached within {timeout:?}"),
                    )
                }));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Refuse early when the controller lacks a capability.
    fn require(&self, ok: bool, what: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unsupported,
                self.store(),
                format!("{} controller does not support {what}", self.kind()),
            ))
        }
    }
}

impl<T: Controller + ?Sized> ControllerExt for T {}
