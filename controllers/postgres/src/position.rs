//! Capturing the fenced primary's final WAL position and waiting until the
//! promotion target has replayed it.

use crate::lsn::{format_lsn, parse_lsn};
use crate::observe::{current_primary, Probe};
use crate::PostgresController;
use std::time::{Duration, Instant};
use switchyard_controller::{ErrorKind, Outcome, Position, Result};

impl PostgresController {
    pub(crate) async fn capture_position(&self, probes: Vec<Probe>) -> Result<Outcome> {
        if let Some(p) = current_primary(&probes) {
            return Err(self
                .err(
                    ErrorKind::Refused,
                    format!(
                        "{} is primary and not fenced: fence it before capturing",
                        p.name
                    ),
                )
                .with_member(&p.name));
        }
        let Some(f) = probes.iter().find(|p| p.is_standby() && p.fenced) else {
            // The deferred fence: stopped, with its final position known.
            if let Some((m, pos)) = self.stopped_former_primary(&probes).await? {
                return Ok(Outcome::done()
                    .with_member(&m.name)
                    .with_position(pos)
                    .with_note(format!(
                        "final position of {} (stopped): {} on timeline {}",
                        m.name,
                        format_lsn(pos.offset),
                        pos.history
                    )));
            }
            return Err(self.err(ErrorKind::NotReady, "no fenced former primary reachable"));
        };
        Ok(Outcome::done()
            .with_member(&f.name)
            .with_position(f.position())
            .with_note(format!(
                "final position of {}: {} on timeline {}",
                f.name,
                format_lsn(f.lsn),
                f.timeline
            )))
    }

    pub(crate) async fn wait_for_position(
        &self,
        probes: Vec<Probe>,
        region: &str,
        chosen: Option<&str>,
        target: Position,
        timeout: Duration,
    ) -> Result<Outcome> {
        if let Some(p) = current_primary(&probes) {
            self.refuse_other_primary(p, region, chosen)?;
            if p.region == region && p.lsn >= target.offset {
                return Ok(Outcome::already_done()
                    .with_member(&p.name)
                    .with_position(p.position())
                    .with_note(format!("{} is already primary past the position", p.name)));
            }
        }
        let c = self.unfenced_standby(&probes, region, chosen)?;
        let m = self.member(&c.name)?;
        let client = self.shared_session(m).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let lsn = self
                .scalar(&client, m, "SELECT pg_last_wal_replay_lsn()::text")
                .await?;
            let lsn = parse_lsn(&lsn).unwrap_or(0);
            if lsn >= target.offset {
                return Ok(Outcome::done()
                    .with_member(&m.name)
                    .with_position(Position {
                        history: switchyard_controller::History(c.timeline),
                        offset: lsn,
                    }));
            }
            if Instant::now() > deadline {
                return Err(self
                    .err(
                        ErrorKind::Timeout,
                        format!(
                            "replayed {} of {} within {timeout:?}",
                            format_lsn(lsn),
                            format_lsn(target.offset)
                        ),
                    )
                    .with_member(&m.name));
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }
}
