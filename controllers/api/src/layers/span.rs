//! One tracing span per operation, so every line a controller logs while
//! carrying it out names the store, the operation, the execution and the
//! token. A failed attempt is logged at INFO: whoever retries it (the
//! coordinator's driver) logs the operation's final failure, once, at WARN.

use super::{layer_impl, Layer};
use crate::controller::Controller;
use std::sync::Arc;
use tracing::Instrument;

/// Wraps a controller in [`Span`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanLayer;

impl Layer for SpanLayer {
    fn layer(&self, inner: Arc<dyn Controller>) -> Arc<dyn Controller> {
        Arc::new(Span { inner })
    }
}

/// A controller whose operations each run in their own span.
#[derive(Debug)]
pub struct Span {
    inner: Arc<dyn Controller>,
}

layer_impl!(Span, |self, op, ctx| {
    let span = tracing::info_span!(
        "operation",
        store = %self.inner.store(),
        kind = %self.inner.kind(),
        op = op.name(),
        execution = %ctx.execution_id,
        token = ctx.token.get(),
    );
    async {
        tracing::info!(op = %op, "executing");
        let r = self.inner.execute(op, ctx).await;
        match &r {
            Ok(o) => tracing::info!(already_done = o.already_done, "done"),
            // One attempt: the driver retries a temporary error, and warns
            // once when the operation has failed for good.
            Err(e) => tracing::info!(
                error = %e,
                kind = ?e.kind(),
                temporary = e.is_temporary(),
                "attempt failed"
            ),
        }
        r
    }
    .instrument(span)
    .await
});
