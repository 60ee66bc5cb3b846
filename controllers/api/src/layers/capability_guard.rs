//! Capability gating, once: an operation the controller's
//! [`crate::Capability`] does not cover never reaches the controller.

use super::{layer_impl, Layer};
use crate::capability::Gate;
use crate::controller::Controller;
use crate::error::{Error, ErrorKind};
use crate::operation::Outcome;
use std::sync::Arc;

/// Wraps a controller in [`Gated`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CapabilityLayer;

impl Layer for CapabilityLayer {
    fn layer(&self, inner: Arc<dyn Controller>) -> Arc<dyn Controller> {
        Arc::new(Gated { inner })
    }
}

/// A controller that only sees operations its capability covers.
#[derive(Debug)]
pub struct Gated {
    inner: Arc<dyn Controller>,
}

layer_impl!(Gated, |self, op, ctx| {
    match self.inner.capability().gate(op) {
        Gate::Run => self.inner.execute(op, ctx).await,
        Gate::NotNeeded(why) => {
            Ok(Outcome::already_done().with_note(format!("{}: {why}", self.inner.kind())))
        }
        Gate::Unsupported(what) => Err(Error::new(
            ErrorKind::Unsupported,
            self.inner.store(),
            format!(
                "{} controller does not support {}: it has no {what}",
                self.inner.kind(),
                op.name()
            ),
        )),
    }
});
