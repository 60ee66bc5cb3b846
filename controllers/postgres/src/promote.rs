//! Promotion. `pg_promote(wait => false)` returns at once; we then poll
//! `pg_is_in_recovery()` on the same session at the controller's poll
//! interval instead of `pg_promote(wait => true)`'s fixed 100 ms sleeps.
//!
//! Idempotence: a region that already holds the primary is `already_done`;
//! a candidate whose promotion is in flight is promoted again, which only
//! re-signals the startup process — the timeline advances exactly once.

use crate::fence::CLEAR_FENCE;
use crate::lsn::format_lsn;
use crate::observe::{current_primary, Probe};
use crate::PostgresController;
use std::time::{Duration, Instant};
use switchyard_controller::{ErrorKind, Outcome, Position, PromoteMode, Result};
use switchyard_topology::Member;
use tokio_postgres::Client;

/// Whether the member is still in recovery, and whether its startup process
/// sleeps between attempts to get WAL (`RecoveryRetrieveRetryInterval`).
/// The functions, not `pg_stat_activity`: polled every few milliseconds.
const PROMOTION_POLL: &str = "SELECT pg_is_in_recovery(), \
  EXISTS (SELECT FROM pg_stat_get_activity(NULL) \
    WHERE backend_type = 'startup' AND wait_event = 'RecoveryRetrieveRetryInterval')";

impl PostgresController {
    pub(crate) async fn promote(
        &self,
        probes: Vec<Probe>,
        region: &str,
        chosen: Option<&str>,
        mode: PromoteMode,
    ) -> Result<Outcome> {
        let _ = self.to_state(&probes);
        if let Some(p) = current_primary(&probes) {
            self.refuse_other_primary(p, region, chosen)?;
            if p.region == region {
                return Ok(Outcome::already_done()
                    .with_member(&p.name)
                    .with_position(p.position())
                    .with_note(format!(
                        "{} is already primary (timeline {})",
                        p.name, p.timeline
                    )));
            }
            return Err(self
                .err(
                    ErrorKind::Refused,
                    format!("{} is still primary: fence it first", p.name),
                )
                .with_member(&p.name));
        }
        let mut outcome = Outcome::done();
        let candidate = match mode {
            PromoteMode::Planned => {
                let fenced =
                    match probes.iter().find(|p| p.is_standby() && p.fenced) {
                        Some(f) => (f.name.clone(), f.lsn),
                        // The deferred fence: stopped, its final position known.
                        None => match self.stopped_former_primary(&probes).await? {
                            Some((m, pos)) => (m.name, pos.offset),
                            None => return Err(self.err(
                                ErrorKind::Refused,
                                "no fenced former primary reachable: a planned promotion cannot \
                                 prove zero loss; use a forced failover",
                            )),
                        },
                    };
                let c = self.unfenced_standby(&probes, region, chosen)?;
                if c.lsn < fenced.1 {
                    return Err(self
                        .err(
                            ErrorKind::NotReady,
                            format!(
                                "has replayed {} but the fenced {} ends at {}: wait for the position first",
                                format_lsn(c.lsn),
                                fenced.0,
                                format_lsn(fenced.1)
                            ),
                        )
                        .with_member(&c.name));
                }
                c.name.clone()
            }
            PromoteMode::Forced { accept_data_loss } => {
                let v = self.forced_verdict(&probes, region, chosen)?;
                if !v.within_bound && !accept_data_loss {
                    return Err(self
                        .err(
                            ErrorKind::LagTooHigh,
                            format!("forced promotion refused: {}", v.estimate.note),
                        )
                        .with_member(&v.candidate));
                }
                outcome.data_loss = Some(v.estimate);
                v.candidate
            }
        };
        let m = self.member(&candidate)?.clone();
        let client = self.shared_session(&m).await?;
        let p = probes.iter().find(|p| p.name == m.name);
        if p.is_some_and(|p| p.fenced) {
            self.exec(&client, &m, CLEAR_FENCE).await?;
        }
        let pos = self.promote_member(&m, &client).await?;
        outcome.member = Some(m.name.clone());
        outcome.position = Some(pos);
        outcome
            .notes
            .push(format!("{} promoted: timeline {}", m.name, pos.history));
        Ok(outcome)
    }

    /// Promote one standby and wait until it leaves recovery.
    pub(crate) async fn promote_member(&self, m: &Member, client: &Client) -> Result<Position> {
        // One round trip: signal the promotion unless it is done already.
        self.exec(
            client,
            m,
            &["SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(wait => false) END"],
        )
        .await?;
        let deadline = Instant::now() + self.timing.promote_timeout;
        let mut nudged: Option<Instant> = None;
        loop {
            let row = crate::observe::rows(client, PROMOTION_POLL)
                .await
                .map_err(|e| e.into_error(&self.store.name, &m.name))?;
            let r = row.into_iter().next().unwrap_or_default();
            if r.first().cloned().flatten().as_deref() == Some("f") {
                break;
            }
            // The startup process can take the promotion request while
            // streaming and then sleep out `wal_retrieve_retry_interval`
            // (5 s by default) before it acts on it: the request's wake-up
            // was spent, and the sleep follows a WAL receiver that just
            // failed — which is the case right after the fenced primary's
            // walsender exits. Only a latch wake-up ends that sleep early;
            // a configuration reload (SIGHUP) is one, and changes nothing
            // else here. Again after 10 ms, should a wake-up be spent before
            // the sleep began.
            let sleeping = r.get(1).cloned().flatten().as_deref() == Some("t");
            if sleeping && nudged.is_none_or(|t| t.elapsed() >= Duration::from_millis(10)) {
                nudged = Some(Instant::now());
                tracing::info!(member = %m.name, "promotion waits out wal_retrieve_retry_interval: waking the startup process");
                self.exec(client, m, &["SELECT pg_reload_conf()"]).await?;
                continue;
            }
            if Instant::now() > deadline {
                return Err(self
                    .err(
                        ErrorKind::Timeout,
                        format!(
                            "still in recovery {:?} after pg_promote",
                            self.timing.promote_timeout
                        ),
                    )
                    .with_member(&m.name));
            }
            tokio::time::sleep(self.timing.poll).await;
        }
        let row = crate::observe::rows(
            client,
            "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())",
        )
        .await
        .map_err(|e| e.into_error(&self.store.name, &m.name))?;
        let r = row.first().cloned().unwrap_or_default();
        Ok(Position {
            history: switchyard_controller::History(
                r.get(1)
                    .cloned()
                    .flatten()
                    .as_deref()
                    .and_then(crate::lsn::timeline_of_walfile)
                    .unwrap_or(0),
            ),
            offset: r
                .first()
                .cloned()
                .flatten()
                .as_deref()
                .and_then(crate::lsn::parse_lsn)
                .unwrap_or(0),
        })
    }
}
