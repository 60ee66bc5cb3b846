//! Every error an operation returns, classified by the controller's
//! [`crate::ErrorPolicy`], so the driver's retry decision reads one flag.

use super::{layer_impl, Layer};
use crate::controller::Controller;
use std::sync::Arc;

/// Wraps a controller in [`Classified`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorPolicyLayer;

impl Layer for ErrorPolicyLayer {
    fn layer(&self, inner: Arc<dyn Controller>) -> Arc<dyn Controller> {
        Arc::new(Classified { inner })
    }
}

/// A controller whose errors carry its policy's temporary flag.
#[derive(Debug)]
pub struct Classified {
    inner: Arc<dyn Controller>,
}

layer_impl!(Classified, |self, op, ctx| {
    let policy = self.inner.error_policy();
    self.inner
        .execute(op, ctx)
        .await
        .map_err(|e| policy.classify(e))
});
