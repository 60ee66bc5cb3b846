//! Fence, unfence, capture the fenced master's offset, wait for a target.
//!
//! The fence has two layers. `CONFIG SET min-replicas-to-write` to an
//! impossible count makes the master refuse every write with
//! `-NOREPLICAS`: it is visible in `CONFIG GET` (so `observe` can report
//! it), holds until the controller lifts it, and does not stall anything
//! else. `CLIENT PAUSE WRITE` on top makes writers wait instead of failing
//! while the switchover runs. The pause is bounded: it expires on its own,
//! and under Sentinel it must stay shorter than `down-after-milliseconds`,
//! because a paused master also holds the Sentinels' hello `PUBLISH`, and
//! with it their `PING` replies, which would make them fail it over on
//! their own.

use crate::observe::{unfenced, Snapshot, FENCE_MIN_REPLICAS};
use crate::token::RecordWrite;
use crate::RedisController;
use std::time::{Duration, Instant};
use switchyard_controller::{ErrorKind, OpContext, Outcome, Position, Result};

impl RedisController {
    /// How long a fence's `CLIENT PAUSE WRITE` lasts.
    fn pause_for(&self, snap: &Snapshot) -> Duration {
        let sentinel_bound = snap
            .sentinels
            .iter()
            .filter_map(|s| s.down_after_ms)
            .min()
            .map(|ms| Duration::from_millis(ms / 2));
        match sentinel_bound {
            Some(b) => b.min(self.cfg.pause),
            None if snap.sentinel_managed => Duration::from_millis(500),
            None => self.cfg.pause,
        }
    }

    pub(crate) async fn fence(&self, snap: &Snapshot, ctx: &OpContext) -> Result<Outcome> {
        let master = self.require_master(snap)?;
        let spec = &master.spec;
        if master.fenced() {
            return Ok(Outcome::already_done().with_member(&spec.name));
        }
        // Token first: once fenced, the master accepts no write, ours included.
        self.record(
            spec,
            ctx,
            RecordWrite {
                baseline_min_replicas: master.min_replicas,
                ..RecordWrite::default()
            },
        )
        .await?;
        let mut set = redis::cmd("CONFIG");
        set.arg("SET")
            .arg("min-replicas-to-write")
            .arg(FENCE_MIN_REPLICAS);
        self.run_cmd::<()>(spec, &set).await?;
        let pause = self.pause_for(snap);
        let mut p = redis::cmd("CLIENT");
        p.arg("PAUSE").arg(pause.as_millis() as u64).arg("WRITE");
        self.run_cmd::<()>(spec, &p).await?;
        Ok(Outcome::done().with_member(&spec.name).with_note(format!(
            "min-replicas-to-write {FENCE_MIN_REPLICAS} (writes refused) and CLIENT PAUSE WRITE for {pause:?}"
        )))
    }

    /// Restore a fenced member's own `min-replicas-to-write` and end its pause.
    pub(crate) async fn lift_fence(&self, spec: &crate::MemberSpec, baseline: i64) -> Result<()> {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("min-replicas-to-write").arg(baseline);
        self.run_cmd::<()>(spec, &set).await?;
        self.run_cmd::<()>(spec, redis::cmd("CLIENT").arg("UNPAUSE"))
            .await?;
        Ok(())
    }

    pub(crate) async fn unfence(&self, snap: &Snapshot, ctx: &OpContext) -> Result<Outcome> {
        let master = self.require_master(snap)?;
        if !master.fenced() {
            return Ok(Outcome::already_done().with_member(&master.spec.name));
        }
        let baseline = unfenced(master.record.baseline_min_replicas);
        self.lift_fence(&master.spec, baseline).await?;
        self.record(&master.spec, ctx, RecordWrite::default())
            .await?;
        Ok(Outcome::done()
            .with_member(&master.spec.name)
            .with_note(format!("min-replicas-to-write back to {baseline}")))
    }

    pub(crate) fn capture_position(&self, snap: &Snapshot) -> Result<Outcome> {
        let master = self.require_master(snap)?;
        if !master.fenced() {
            return Err(self
                .err(
                    ErrorKind::Refused,
                    "the master is not fenced: its offset would not be final",
                )
                .with_member(&master.spec.name));
        }
        let offset = master.offset.ok_or_else(|| {
            self.err(
                ErrorKind::Protocol,
                "INFO replication has no master_repl_offset",
            )
            .with_member(&master.spec.name)
        })?;
        Ok(Outcome::done()
            .with_member(&master.spec.name)
            .with_position(Position {
                history: switchyard_controller::History(snap.term().unwrap_or(0)),
                offset,
            }))
    }

    pub(crate) async fn wait_for_position(
        &self,
        snap: Snapshot,
        region: &str,
        chosen: Option<&str>,
        target: Position,
        timeout: Duration,
    ) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut snap = snap;
        loop {
            let best = snap
                .members
                .iter()
                .filter(|p| p.spec.region == region && p.spec.electable() && p.is_replica())
                .filter(|p| chosen.is_none_or(|c| c == p.spec.name))
                .max_by_key(|p| p.offset);
            if let Some(p) = best {
                if let Some(o) = p.offset.filter(|o| *o >= target.offset) {
                    return Ok(Outcome::done()
                        .with_member(&p.spec.name)
                        .with_position(Position {
                            history: target.history,
                            offset: o,
                        }));
                }
            }
            if Instant::now() > deadline {
                let seen = best
                    .map(|p| {
                        format!(
                            "{} is at {}",
                            p.spec.name,
                            p.offset.map_or("?".into(), |o| o.to_string())
                        )
                    })
                    .unwrap_or_else(|| format!("no reachable replica in {region}"));
                return Err(self.err(
                    ErrorKind::Timeout,
                    format!(
                        "{region} did not reach offset {} within {timeout:?}: {seen}",
                        target.offset
                    ),
                ));
            }
            tokio::time::sleep(self.cfg.poll).await;
            snap = self.snapshot().await;
        }
    }
}
