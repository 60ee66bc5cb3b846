//! The fencing check, once: before a mutating operation the store's recorded
//! stamp is read through the controller's [`TokenRecord`] hook and compared
//! with the operation's context by [`admit`]; a newer stamp is recorded
//! before the operation where the store can take a write, else right after
//! it (a fenced store has no writable primary until the promotion).
//! Read-only operations are never fenced: any coordinator may look.

use super::{layer_impl, Layer};
use crate::controller::Controller;
use crate::error::{ErrorKind, Result};
use crate::fencing::{admit, Admission, Stamp, TokenRecord};
use std::sync::Arc;

/// Wraps a controller in [`Fenced`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FencingLayer;

impl Layer for FencingLayer {
    fn layer(&self, inner: Arc<dyn Controller>) -> Arc<dyn Controller> {
        Arc::new(Fenced { inner })
    }
}

/// A controller whose mutating operations are admitted by the fencing rule.
#[derive(Debug)]
pub struct Fenced {
    inner: Arc<dyn Controller>,
}

impl Fenced {
    /// Record `stamp`. A store refusing the token is an error; any other
    /// failure only means "not now" (the next attempt, or the next mutating
    /// operation, records it).
    async fn record(&self, rec: &dyn TokenRecord, stamp: &Stamp) -> Result<bool> {
        match rec.write_stamp(stamp).await {
            Ok(done) => Ok(done),
            Err(e) if e.kind() == ErrorKind::Refused => Err(e),
            Err(e) => {
                tracing::warn!(store = %self.inner.store(), error = %e, "could not record the fencing token");
                Ok(false)
            }
        }
    }
}

layer_impl!(Fenced, |self, op, ctx| {
    let rec = match self.inner.token_record() {
        Some(rec) if op.is_mutating() => rec,
        _ => return self.inner.execute(op, ctx).await,
    };
    let seen = rec.read_stamp().await?;
    let admission = admit(seen.as_ref(), ctx).map_err(|r| r.into_error(self.inner.store(), ctx))?;
    let stamp = Stamp::of(ctx);
    let mut recorded = admission == Admission::Recorded;
    if !recorded {
        recorded = self.record(rec, &stamp).await?;
    }
    let outcome = self.inner.execute(op, ctx).await?;
    if !recorded {
        self.record(rec, &stamp).await?;
    }
    Ok(outcome)
});
