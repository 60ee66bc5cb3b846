//! The `Controller` trait (small, required) and `ControllerExt` (provided helpers).

use crate::capability::Capability;
use crate::error::{Error, ErrorKind, Result};
use crate::error_policy::ErrorPolicy;
use crate::fencing::{FencingToken, TokenRecord};
use crate::operation::{Operation, Outcome};
use crate::state::ObservedState;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_topology::StoreKind;

/// Who is issuing an operation: the execution and its fencing token.
///
/// The fencing layer ([`crate::layers::FencingLayer`]) compares the token
/// with what the store recorded before every mutating operation, so a
/// coordinator that lost its leadership cannot keep promoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpContext {
    /// Execution id from the journal.
    pub execution_id: String,
    /// Strictly increasing fencing token of the issuing coordinator.
    pub token: FencingToken,
}

impl OpContext {
    /// A context for `execution_id` under `token`.
    pub fn new(execution_id: impl Into<String>, token: impl Into<FencingToken>) -> Self {
        OpContext {
            execution_id: execution_id.into(),
            token: token.into(),
        }
    }

    /// A context for ad-hoc use (tests, manual use), token 0. It gets no
    /// pass: a store that recorded any real token refuses its mutations.
    pub fn adhoc() -> Self {
        OpContext::new("adhoc", FencingToken::ADHOC)
    }
}

/// One replicated store. Implementations do their own I/O; they hold no plan
/// state, so the coordinator can resume with a fresh controller after a crash.
///
/// A controller implements `observe` and its operations (`execute`); the
/// layers ([`crate::layers::standard`]) add the fencing check, capability
/// gating, a tracing span and the error policy around it. `execute` may
/// assume the layers ran: it is never called with an operation its
/// capability does not cover, nor with a stale token.
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

    /// Carry out one operation. Must be idempotent. Called through the
    /// layers: the operation is covered by [`Controller::capability`] and
    /// the token was admitted by the fencing rule.
    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome>;

    /// Release connections and stop background tasks before the runtime
    /// that spawned them ends. Some client libraries (the MongoDB driver)
    /// panic when their background workers are torn down by the runtime
    /// instead. The controller may be used again afterwards only where the
    /// implementation says so. The default does nothing.
    async fn shutdown(&self) {}

    /// Open ahead of time what `observe` and the operations will use (a
    /// session per member, say), so that a caller with other work to do
    /// first — taking the execution lock — overlaps the two. Never an
    /// error: what cannot be opened now, `observe` reports as it always
    /// does. The default does nothing.
    async fn warm_up(&self) {}

    /// Read ahead what the coming `execute(op)` starts with (a look at
    /// every member, the recorded fencing token), while the caller makes
    /// the operation's intent durable: decide, then journal and observe at
    /// once, then act. The coordinator calls it before `execute` of a
    /// mutating operation and waits for both before issuing it. It must not
    /// change the store (the intent may not be durable yet) and is never an
    /// error: `execute` repeats whatever could not be read. The default
    /// does nothing.
    async fn prepare(&self, _op: &Operation) {}

    /// The store's own record of the fencing token (a table, a config tag,
    /// a key, stream metadata), where it keeps one: the hook the fencing
    /// layer reads and writes. `None`: only the coordinator fences.
    fn token_record(&self) -> Option<&dyn TokenRecord> {
        None
    }

    /// Which errors are temporary and how to back off (see
    /// [`crate::error_policy`]). The default suits a store reached over a
    /// network in seconds.
    fn error_policy(&self) -> ErrorPolicy {
        ErrorPolicy::default()
    }

    /// The highest fencing token the store itself has recorded, through
    /// [`Controller::token_record`]. `Ok(None)` means this kind records
    /// none; `Ok(Some(FencingToken(0)))` that none was recorded yet; an
    /// error that it could not be read. `resume` compares it with the
    /// execution's own tokens: a higher one on the store means a later
    /// execution acted there, from any state directory.
    async fn recorded_token(&self) -> Result<Option<FencingToken>> {
        match self.token_record() {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.read_stamp().await?.map_or(FencingToken(0), |s| s.token),
            )),
        }
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
}

impl<T: Controller + ?Sized> ControllerExt for T {}

/// A shared controller is a controller (the layers hand out `Arc`s).
#[async_trait]
impl<C: Controller + ?Sized> Controller for std::sync::Arc<C> {
    fn store(&self) -> &str {
        (**self).store()
    }

    fn kind(&self) -> StoreKind {
        (**self).kind()
    }

    fn capability(&self) -> Capability {
        (**self).capability()
    }

    async fn observe(&self) -> Result<ObservedState> {
        (**self).observe().await
    }

    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<Outcome> {
        (**self).execute(op, ctx).await
    }

    async fn shutdown(&self) {
        (**self).shutdown().await
    }

    async fn warm_up(&self) {
        (**self).warm_up().await
    }

    async fn prepare(&self, op: &Operation) {
        (**self).prepare(op).await
    }

    fn token_record(&self) -> Option<&dyn TokenRecord> {
        (**self).token_record()
    }

    fn error_policy(&self) -> ErrorPolicy {
        (**self).error_policy()
    }

    fn notation(&self) -> crate::Notation {
        (**self).notation()
    }

    async fn recorded_token(&self) -> Result<Option<FencingToken>> {
        (**self).recorded_token().await
    }
}
