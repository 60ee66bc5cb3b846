//! The store side of fencing: the coordinator's token, kept in the store
//! itself so a coordinator that lost its leadership cannot keep mutating it.
//!
//! `switchyard.fencing(store, epoch, execution, at)` on the primary (created
//! on first use, replicated to every standby like any table) holds the
//! highest fencing token that acted (the column keeps its first name,
//! `epoch`, so tables created by earlier versions stay valid) and the
//! execution that carried it. This file is only the hook
//! ([`TokenRecord`]): the fencing layer of `switchyard-controller` compares.
//! The store does not consult the table itself (`pg_ctl promote` does not),
//! so the check is the coordinator's, on every member it can reach.

use crate::observe::current_primary;
use crate::{sql_literal, PostgresController};
use async_trait::async_trait;
use switchyard_controller::{ErrorKind, Result, Stamp, TokenRecord};

#[async_trait]
impl TokenRecord for PostgresController {
    async fn read_stamp(&self) -> Result<Option<Stamp>> {
        // Replicated like any table, so any reachable member's view is a
        // lower bound of the highest; the maximum over all of them is it.
        // `prepare` may have just looked, while the intent became durable;
        // else look now. The operation this read admits starts from the
        // same look.
        let probes = match self.peek_stamp_probe() {
            Some(p) => p,
            None => self.probe_for_mutation().await,
        };
        let mut reachable = probes.iter().filter(|p| p.reachable()).peekable();
        if reachable.peek().is_none() {
            return Err(self.err(
                ErrorKind::Unreachable,
                "no member reachable: the recorded fencing token cannot be read",
            ));
        }
        Ok(reachable
            .filter_map(|p| {
                p.fencing.as_ref().map(|(token, execution)| Stamp {
                    token: (*token).into(),
                    execution: execution.clone(),
                    member: Some(p.name.clone()),
                })
            })
            .max_by_key(|s| s.token))
    }

    async fn write_stamp(&self, stamp: &Stamp) -> Result<bool> {
        // The layer read the stamp a moment ago: that probe names the
        // primary. Were it stale, the write fails on a member in recovery
        // and the layer records the stamp after the operation instead.
        let probes = self.recent_or_probe().await;
        let Some(p) = current_primary(&probes) else {
            return Ok(false);
        };
        let m = self.member(&p.name)?;
        let client = self.shared_session(m).await?;
        // `BEGIN READ WRITE` passes a soft fence's
        // default_transaction_read_only; GREATEST keeps a higher token a
        // concurrent coordinator wrote between our read and this write.
        // The table is created on first use only: where the probe found it,
        // the DDL would only take its locks and send two notices.
        let create = if p.fencing_table {
            ""
        } else {
            "CREATE SCHEMA IF NOT EXISTS switchyard; \
             CREATE TABLE IF NOT EXISTS switchyard.fencing (store text PRIMARY KEY, \
               epoch bigint NOT NULL, execution text, at timestamptz NOT NULL DEFAULT now()); "
        };
        let sql = format!(
            "BEGIN READ WRITE; {create}\
             INSERT INTO switchyard.fencing (store, epoch, execution) VALUES ({}, {}, {}) \
               ON CONFLICT (store) DO UPDATE SET \
               execution = CASE WHEN EXCLUDED.epoch >= switchyard.fencing.epoch \
                 THEN EXCLUDED.execution ELSE switchyard.fencing.execution END, \
               epoch = GREATEST(switchyard.fencing.epoch, EXCLUDED.epoch), at = now(); \
             COMMIT",
            sql_literal(&self.store.name),
            stamp.token.get(),
            sql_literal(&stamp.execution)
        );
        client.batch_execute(&sql).await.map_err(|e| {
            // The session may be left in the failed transaction: not reused.
            self.forget_session(&m.name);
            self.err(
                ErrorKind::Unreachable,
                format!("recording the fencing token: {e}"),
            )
            .with_member(&m.name)
        })?;
        Ok(true)
    }
}
