//! The coordinator's fencing token, stored in the store itself so a
//! coordinator that lost its leadership cannot keep mutating it.
//!
//! Every mutating operation carries `OpContext::epoch`. The highest epoch
//! that completed a mutating operation is kept in
//! `switchyard.fencing(store, epoch, execution, at)` on the primary (created
//! on first use, replicated to every standby like any table). Before a
//! mutating operation the controller reads the highest epoch any reachable
//! member holds; a lower epoch is refused (`Refused`, permanent). Epoch 0 is
//! the ad-hoc context (tests, manual use) and is neither checked nor recorded.

use crate::observe::{current_primary, Probe};
use crate::{sql_literal, PostgresController};
use switchyard_controller::{ErrorKind, OpContext, Result};
use switchyard_topology::Member;
use tokio_postgres::Client;

impl PostgresController {
    pub(crate) fn check_epoch(&self, probes: &[Probe], ctx: &OpContext) -> Result<()> {
        if ctx.epoch == 0 {
            return Ok(());
        }
        if let Some(seen) = probes.iter().map(|p| p.fencing_epoch).max() {
            if ctx.epoch < seen {
                let at = probes
                    .iter()
                    .find(|p| p.fencing_epoch == seen)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                return Err(self
                    .err(
                        ErrorKind::Refused,
                        format!(
                            "stale coordinator: operation carries epoch {} but epoch {seen} \
                             already acted on this store",
                            ctx.epoch
                        ),
                    )
                    .with_member(at));
            }
        }
        Ok(())
    }

    /// Record `ctx.epoch` on the current primary. Best effort: a fenced
    /// store has no writable primary until the promotion, which records it.
    pub(crate) async fn record_epoch(&self, ctx: &OpContext) {
        if ctx.epoch == 0 {
            return;
        }
        let probes = self.probe_all().await;
        let Some(p) = current_primary(&probes) else {
            return;
        };
        if p.fencing_epoch >= ctx.epoch {
            return;
        }
        let Ok(m) = self.member(&p.name) else { return };
        match self.session(m).await {
            Ok(c) => self.record_epoch_on(&c, m, ctx).await,
            Err(e) => {
                tracing::warn!(member = %m.name, error = %e, "could not record the fencing epoch")
            }
        }
    }

    /// Record `ctx.epoch` through an open session on a writable primary.
    pub(crate) async fn record_epoch_on(&self, client: &Client, m: &Member, ctx: &OpContext) {
        if ctx.epoch == 0 {
            return;
        }
        let sql = format!(
            "BEGIN READ WRITE; \
             CREATE SCHEMA IF NOT EXISTS switchyard; \
             CREATE TABLE IF NOT EXISTS switchyard.fencing (store text PRIMARY KEY, \
               epoch bigint NOT NULL, execution text, at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO switchyard.fencing (store, epoch, execution) VALUES ({}, {}, {}) \
               ON CONFLICT (store) DO UPDATE SET epoch = GREATEST(switchyard.fencing.epoch, EXCLUDED.epoch), \
               execution = EXCLUDED.execution, at = now(); \
             COMMIT",
            sql_literal(&self.store.name),
            ctx.epoch,
            sql_literal(&ctx.execution_id)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            tracing::warn!(store = %self.store.name, member = %m.name, error = %e, "could not record the fencing epoch");
        }
    }
}
