//! `replica-priority`: how the controller steers Sentinel.
//!
//! The topology's `priority` (higher preferred, 0 never) becomes Redis'
//! `replica-priority` (lower preferred, 0 never): the electable members'
//! distinct priorities, highest first, get 100, 110, 120, ...; members of
//! the preferred region get 50 less, so Sentinel's next failover lands
//! there. During a promotion every other replica is set to 0 for a moment,
//! which makes the target Sentinel's only choice.

use crate::config::MemberSpec;
use crate::observe::Snapshot;
use crate::token::RecordWrite;
use crate::RedisController;
use switchyard_controller::{OpContext, Outcome, Result};

impl RedisController {
    /// A member's `replica-priority` when `region` is preferred, and
    /// `chosen` (the operator's `--candidate`) above everyone else there.
    pub(crate) fn sticky_priority(
        &self,
        m: &MemberSpec,
        region: &str,
        chosen: Option<&str>,
    ) -> i64 {
        if !m.electable() {
            return 0;
        }
        let mut distinct: Vec<f64> = self
            .cfg
            .members
            .iter()
            .filter(|x| x.electable())
            .map(|x| x.priority)
            .collect();
        distinct.sort_by(|a, b| b.total_cmp(a));
        distinct.dedup();
        let rank = distinct.iter().position(|p| *p == m.priority).unwrap_or(0) as i64;
        let base = 100 + 10 * rank;
        if m.region == region && chosen == Some(m.name.as_str()) {
            // Below the best of the region (50): Sentinel picks it first.
            45
        } else if m.region == region {
            base - 50
        } else {
            base
        }
    }

    /// Set `replica-priority` on a member and persist it (best effort:
    /// a server started without a config file cannot rewrite one).
    pub(crate) async fn set_priority(&self, m: &MemberSpec, rp: i64) -> Result<()> {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("replica-priority").arg(rp);
        self.run_cmd::<()>(m, &set).await?;
        self.rewrite_config(m).await;
        Ok(())
    }

    pub(crate) async fn rewrite_config(&self, m: &MemberSpec) {
        if let Err(e) = self
            .run_cmd::<()>(m, redis::cmd("CONFIG").arg("REWRITE"))
            .await
        {
            tracing::debug!(member = %m.name, error = %e, "CONFIG REWRITE failed");
        }
    }

    /// Bring every reachable data member to the priorities that prefer
    /// `region`; returns how many changed.
    pub(crate) async fn apply_sticky(
        &self,
        snap: &Snapshot,
        region: &str,
        chosen: Option<&str>,
    ) -> Result<usize> {
        let mut changed = 0;
        for p in snap.members.iter().filter(|p| p.reachable()) {
            let want = self.sticky_priority(&p.spec, region, chosen);
            if p.replica_priority != Some(want) {
                self.set_priority(&p.spec, want).await?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    pub(crate) async fn make_sticky(
        &self,
        snap: &Snapshot,
        region: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Outcome> {
        let changed = self.apply_sticky(snap, region, chosen).await?;
        if changed == 0 {
            return Ok(Outcome::already_done());
        }
        if let Some(m) = snap.master().filter(|m| !m.fenced()) {
            self.record(&m.spec, ctx, RecordWrite::default()).await?;
        }
        Ok(Outcome::done().with_note(format!(
            "replica-priority prefers {region} on {changed} members"
        )))
    }
}
