//! Layers around every controller, in the manner of OpenDAL's layers around
//! every service: each wraps a [`Controller`] and is a [`Controller`], so
//! they stack, and a controller implements only `observe` and its
//! operations.
//!
//! [`standard`] is the stack the coordinator runs every controller in, from
//! the outside in:
//!
//! 1. [`SpanLayer`] — one tracing span per operation (store, operation,
//!    execution, token) and its result.
//! 2. [`ErrorPolicyLayer`] — classifies every error by the controller's
//!    [`crate::ErrorPolicy`] (temporary or not); the driver retries by it.
//! 3. [`CapabilityLayer`] — an operation the [`crate::Capability`] does not
//!    cover is refused (`Unsupported`) or, where the store does it by
//!    itself, answered as already done ([`crate::capability::Gate`]).
//! 4. [`FencingLayer`] — before a mutating operation, the store's recorded
//!    token is compared with the operation's by [`crate::fencing::admit`]
//!    and the operation's stamp recorded through the controller's
//!    [`crate::fencing::TokenRecord`] hook.

mod capability_guard;
mod error_policy;
mod fencing_guard;
mod span;

pub use capability_guard::CapabilityLayer;
pub use error_policy::ErrorPolicyLayer;
pub use fencing_guard::FencingLayer;
pub use span::SpanLayer;

use crate::controller::Controller;
use std::sync::Arc;

/// Something that wraps a controller into another controller.
pub trait Layer {
    /// Wrap `inner`.
    fn layer(&self, inner: Arc<dyn Controller>) -> Arc<dyn Controller>;
}

/// The coordinator's stack around `inner` (see the module docs for the
/// order and what each layer does).
pub fn standard(inner: Arc<dyn Controller>) -> Arc<dyn Controller> {
    let fenced = FencingLayer.layer(inner);
    let gated = CapabilityLayer.layer(fenced);
    let classified = ErrorPolicyLayer.layer(gated);
    SpanLayer.layer(classified)
}

/// [`standard`] around a controller value.
pub fn layered<C: Controller + 'static>(inner: C) -> Arc<dyn Controller> {
    standard(Arc::new(inner))
}

/// `impl Controller for $ty`: every method but `execute` forwarded to
/// `self.inner`, `execute` given by the layer.
macro_rules! layer_impl {
    ($ty:ty, |$self:ident, $op:ident, $ctx:ident| $body:block) => {
        #[async_trait::async_trait]
        impl crate::controller::Controller for $ty {
            fn store(&self) -> &str {
                self.inner.store()
            }

            fn kind(&self) -> switchyard_topology::StoreKind {
                self.inner.kind()
            }

            fn capability(&self) -> crate::capability::Capability {
                self.inner.capability()
            }

            async fn observe(&self) -> crate::error::Result<crate::state::ObservedState> {
                self.inner.observe().await
            }

            async fn execute(
                &$self,
                $op: &crate::operation::Operation,
                $ctx: &crate::controller::OpContext,
            ) -> crate::error::Result<crate::operation::Outcome> $body

            async fn shutdown(&self) {
                self.inner.shutdown().await
            }

            async fn warm_up(&self) {
                self.inner.warm_up().await
            }

            async fn prepare(&self, op: &crate::operation::Operation) {
                self.inner.prepare(op).await
            }

            fn token_record(&self) -> Option<&dyn crate::fencing::TokenRecord> {
                self.inner.token_record()
            }

            fn error_policy(&self) -> crate::error_policy::ErrorPolicy {
                self.inner.error_policy()
            }

            fn notation(&self) -> crate::Notation {
                self.inner.notation()
            }

            async fn recorded_token(
                &self,
            ) -> crate::error::Result<Option<crate::fencing::FencingToken>> {
                self.inner.recorded_token().await
            }
        }
    };
}
pub(crate) use layer_impl;
