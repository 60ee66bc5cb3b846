//! Promotion: planned (`FAILOVER TO`, or the Sentinel way) and forced.

use crate::config::MemberSpec;
use crate::observe::{unfenced, Probe, Snapshot};
use crate::token::RecordWrite;
use crate::RedisController;
use std::time::Duration;
use switchyard_controller::{DataLossEstimate, ErrorKind, OpContext, Outcome, PromoteMode, Result};

impl RedisController {
    pub(crate) async fn promote(
        &self,
        snap: Snapshot,
        region: &str,
        chosen: Option<&str>,
        mode: PromoteMode,
        ctx: &OpContext,
    ) -> Result<Outcome> {
        let snap = self.settle_sentinels(snap).await?;
        if let Some(m) = snap.master() {
            self.refuse_other_master(m, region, chosen)?;
        }
        if let Some(m) = snap.master().filter(|m| m.spec.region == region) {
            let loss = match mode {
                PromoteMode::Forced { .. } => Some(self.forced_loss(m, true)?),
                PromoteMode::Planned => None,
            };
            let name = m.spec.name.clone();
            return self
                .finish_promotion(&snap, &name, region, chosen, ctx, loss)
                .await;
        }
        match mode {
            PromoteMode::Planned => self.promote_planned(snap, region, chosen, ctx).await,
            PromoteMode::Forced { accept_data_loss } => {
                self.promote_forced(snap, region, chosen, accept_data_loss, ctx)
                    .await
            }
        }
    }

    /// Wait out a failover the Sentinels run on their own, so the decision
    /// is taken on where they went.
    async fn settle_sentinels(&self, snap: Snapshot) -> Result<Snapshot> {
        if !snap.sentinels.iter().any(|s| s.failover_in_progress()) {
            return Ok(snap);
        }
        self.wait_snapshot(
            self.cfg.failover_timeout,
            "the Sentinels' own failover to finish",
            |s| !s.sentinels.iter().any(|s| s.failover_in_progress()),
        )
        .await
    }

    async fn promote_planned(
        &self,
        snap: Snapshot,
        region: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Outcome> {
        let master = self.require_master(&snap)?;
        if !master.fenced() {
            return Err(self
                .err(
                    ErrorKind::Refused,
                    "a planned promotion needs the master fenced first (Fence), so that no \
                     acknowledged write is left behind",
                )
                .with_member(&master.spec.name));
        }
        let old = master.spec.clone();
        let cand = self
            .planned_candidate(&snap, master, region, chosen)
            .ok_or_else(|| {
                self.err(
                    ErrorKind::NotReady,
                    format!(
                        "{} in {region} streams from {}",
                        match chosen {
                            Some(c) => format!("the chosen candidate {c} is not a replica that"),
                            None => "no electable replica".to_string(),
                        },
                        old.name
                    ),
                )
            })?
            .spec
            .clone();
        // The fenced master's offset is final but for replication PINGs;
        // the candidate must hold all of it.
        let caught_up = |s: &Snapshot| {
            let (Some(m), Some(c)) = (s.probe(&old.name), s.probe(&cand.name)) else {
                return false;
            };
            m.master && c.is_replica() && c.offset.is_some() && c.offset >= m.offset
        };
        let snap = self
            .wait_snapshot(
                Duration::from_secs(5),
                &format!(
                    "{} holding everything the fenced {} has",
                    cand.name, old.name
                ),
                caught_up,
            )
            .await
            .map_err(|e| {
                self.err(ErrorKind::NotReady, e.message().to_string())
                    .with_member(&cand.name)
            })?;
        let snap = if snap.sentinel_managed {
            let after = self.sentinel_failover(&snap, &cand).await?;
            // Sentinel turns a live former master into a replica only after
            // four hello periods; the fenced one follows the new master now,
            // so every member agrees before the promotion counts as done.
            if after
                .probe(&old.name)
                .is_some_and(|p| p.reachable() && p.master)
            {
                self.replicaof(&old, &cand).await?;
            }
            self.wait_snapshot(
                self.cfg.failover_timeout,
                &format!("{} replicating from {}", old.name, cand.name),
                |s| {
                    s.probe(&old.name)
                        .is_some_and(|p| !p.reachable() || (p.is_replica() && p.follows(&cand)))
                },
            )
            .await?
        } else {
            let mut f = redis::cmd("FAILOVER");
            f.arg("TO")
                .arg(&cand.hostname)
                .arg(cand.port)
                .arg("TIMEOUT")
                .arg(self.cfg.failover_timeout.as_millis() as u64);
            self.run_cmd::<()>(&old, &f).await?;
            self.wait_snapshot(
                self.cfg.failover_timeout + Duration::from_secs(1),
                &format!("FAILOVER TO {}", cand.name),
                |s| {
                    s.probe(&cand.name)
                        .is_some_and(|p| p.reachable() && p.master)
                        && s.probe(&old.name).is_some_and(|p| p.is_replica())
                },
            )
            .await?
        };
        self.finish_promotion(&snap, &cand.name, region, chosen, ctx, None)
            .await
    }

    async fn promote_forced(
        &self,
        snap: Snapshot,
        region: &str,
        chosen: Option<&str>,
        accept: bool,
        ctx: &OpContext,
    ) -> Result<Outcome> {
        if let Some(m) = snap.master() {
            // A live master elsewhere (the old one, or where the Sentinels
            // went on their own): fence it and move the planned way, so
            // nothing it acknowledged is lost on top.
            tracing::info!(store = %self.cfg.store, master = %m.spec.name, "forced promotion with a live master: fencing it first");
            let name = m.spec.name.clone();
            // The move from the live master on is planned and loses nothing,
            // but a master the Sentinels chose on their own after the old one
            // died may already lack what the old one acknowledged: that is
            // this execution's loss to report.
            let was_master = self
                .last_known
                .newest()
                .is_some_and(|r| r.value.master == name);
            let loss = if was_master {
                DataLossEstimate {
                    bytes: Some(0),
                    note: format!(
                        "{name} was still master: fenced and moved the planned way, nothing lost"
                    ),
                    ..DataLossEstimate::default()
                }
            } else {
                let mut e = self.forced_loss(m, true)?;
                e.note = format!("the Sentinels had promoted {name} on their own: {}", e.note);
                e
            };
            if !m.fenced() {
                self.fence(&snap, ctx).await?;
            }
            let snap = self.snapshot().await;
            if snap.master().map(|m| &m.spec.name) != Some(&name) {
                return Err(self.err(
                    ErrorKind::NotReady,
                    format!("the master moved away from {name} while it was being fenced"),
                ));
            }
            let mut out = self.promote_planned(snap, region, chosen, ctx).await?;
            out.data_loss.get_or_insert(loss);
            return Ok(out);
        }
        let cand = self
            .forced_candidate(&snap, region, chosen)
            .ok_or_else(|| self.no_forced_candidate(region, chosen))?;
        let loss = self.forced_loss(cand, accept)?;
        let cand = cand.spec.clone();
        let snap = if snap.sentinel_managed {
            self.sentinel_failover(&snap, &cand).await?
        } else {
            let mut no_one = redis::cmd("REPLICAOF");
            no_one.arg("NO").arg("ONE");
            self.run_cmd::<()>(&cand, &no_one).await?;
            self.wait_snapshot(
                self.cfg.failover_timeout,
                &format!("{} answering ROLE master", cand.name),
                |s| {
                    s.probe(&cand.name)
                        .is_some_and(|p| p.reachable() && p.master)
                },
            )
            .await?
        };
        self.finish_promotion(&snap, &cand.name, region, chosen, ctx, Some(loss))
            .await
    }

    /// Make `target` the Sentinels' only choice and have one of them fail
    /// over; returns once every reachable Sentinel names `target` and
    /// `target` answers ROLE master.
    async fn sentinel_failover(&self, snap: &Snapshot, target: &MemberSpec) -> Result<Snapshot> {
        let want = self.sentinel_choice_priority(target);
        for p in snap.members.iter().filter(|p| p.is_replica()) {
            let rp = if p.spec.name == target.name { want } else { 0 };
            if p.replica_priority != Some(rp) {
                let mut set = redis::cmd("CONFIG");
                set.arg("SET").arg("replica-priority").arg(rp);
                self.run_cmd::<()>(&p.spec, &set).await?;
            }
        }
        let sentinel = snap
            .sentinels
            .iter()
            .find(|s| s.reachable())
            .ok_or_else(|| self.err(ErrorKind::Unreachable, "no Sentinel reachable"))?
            .spec
            .clone();
        // Sentinel picks from the priorities it last read with INFO (every
        // 10 s by default): wait until it has seen these, and the target's
        // link up (it reads a replica whose link was down only once a second
        // and may find that reading too old to choose it).
        let others: Vec<String> = snap
            .members
            .iter()
            .filter(|p| p.is_replica() && p.spec.name != target.name)
            .map(|p| p.spec.addr())
            .collect();
        let taddr = target.addr();
        // With the master dead every replica's link is down; only a live
        // master's candidate must show its link up.
        let master_alive = snap.master().is_some();
        let chosen_only = |s: &Snapshot| {
            s.sentinels
                .iter()
                .find(|x| x.spec.name == sentinel.name)
                .is_some_and(|x| {
                    x.replica_priorities.get(&taddr).is_some_and(|p| *p > 0)
                        && (!master_alive || x.replica_link_down_ms.get(&taddr) == Some(&0))
                        && others
                            .iter()
                            .all(|o| x.replica_priorities.get(o).is_none_or(|p| *p == 0))
                })
        };
        let before = snap.sentinel_master().map(|m| m.name.clone());
        let deadline = std::time::Instant::now() + self.cfg.failover_timeout;
        let mut f = redis::cmd("SENTINEL");
        f.arg("FAILOVER").arg(&self.cfg.master_name);
        loop {
            self.wait_snapshot(
                deadline.saturating_duration_since(std::time::Instant::now()),
                &format!(
                    "Sentinel {} seeing {} as its only candidate",
                    sentinel.name, target.name
                ),
                chosen_only,
            )
            .await?;
            match self.run_cmd::<()>(&sentinel, &f).await {
                Ok(()) => {}
                Err(e) if e.to_string().contains("INPROG") => {
                    tracing::info!(store = %self.cfg.store, "a Sentinel failover was already in progress");
                }
                // Its view of the candidate is momentarily stale: ask again.
                Err(e) if e.to_string().contains("NOGOODSLAVE") => {
                    if std::time::Instant::now() > deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(self.cfg.poll * 5).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Until a new master is agreed, or the failover ended without
            // one (Sentinel aborted it: no good replica when it came to
            // choose), then ask again.
            let mut started = false;
            loop {
                let s = self.snapshot().await;
                let running = s.sentinels.iter().any(|x| x.failover_in_progress());
                started |= running;
                let moved = s
                    .master()
                    .is_some_and(|m| Some(&m.spec.name) != before.as_ref());
                if !running && moved {
                    return match s.sentinel_master() {
                        Some(m) if m.name == target.name => Ok(s),
                        other => Err(self.err(
                            ErrorKind::NotReady,
                            format!(
                                "the Sentinels failed over to {} instead of {}",
                                other.map_or("no agreed master", |m| m.name.as_str()),
                                target.name
                            ),
                        )),
                    };
                }
                if std::time::Instant::now() > deadline {
                    let tilted: Vec<&str> = s
                        .sentinels
                        .iter()
                        .filter(|x| x.tilt)
                        .map(|x| x.spec.name.as_str())
                        .collect();
                    return Err(self.err(
                        ErrorKind::Timeout,
                        format!(
                            "no Sentinel failover to {} within {:?}{}",
                            target.name,
                            self.cfg.failover_timeout,
                            if tilted.is_empty() {
                                String::new()
                            } else {
                                format!(" (in TILT mode: {})", tilted.join(", "))
                            }
                        ),
                    ));
                }
                // Only the Sentinel we asked still naming the old master
                // means an abort; the others may just not have heard yet.
                let asked_moved = s
                    .sentinels
                    .iter()
                    .find(|x| x.spec.name == sentinel.name)
                    .is_none_or(|x| {
                        before
                            .as_ref()
                            .and_then(|b| self.cfg.member(b))
                            .is_none_or(|b| !x.names(b))
                    });
                if started && !running && !asked_moved {
                    tracing::info!(store = %self.cfg.store, "the Sentinel failover ended without a new master; asking again");
                    break;
                }
                tokio::time::sleep(self.cfg.poll).await;
            }
        }
    }

    fn sentinel_choice_priority(&self, target: &MemberSpec) -> i64 {
        self.sticky_priority(target, &target.region, Some(&target.name))
            .max(1)
    }

    /// Record the promotion on the new master (once), lift a fence it may
    /// carry, and give every member its lasting priority.
    async fn finish_promotion(
        &self,
        snap: &Snapshot,
        name: &str,
        region: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
        loss: Option<DataLossEstimate>,
    ) -> Result<Outcome> {
        let m: &Probe = snap
            .probe(name)
            .filter(|p| p.reachable() && p.master)
            .ok_or_else(|| {
                self.err(
                    ErrorKind::NotReady,
                    "the new master is not answering ROLE master",
                )
                .with_member(name)
            })?;
        let term = if snap.sentinel_managed {
            snap.term().unwrap_or(0)
        } else if m.record.promoted.as_deref() == Some(name) {
            m.record.term
        } else {
            snap.members
                .iter()
                .filter(|p| p.reachable())
                .map(|p| p.record.term)
                .max()
                .unwrap_or(0)
                + 1
        };
        let recorded = m.record.promoted.as_deref() == Some(name) && m.record.term == term;
        let mut notes = vec![];
        if m.fenced() {
            let b = unfenced(m.record.baseline_min_replicas);
            self.lift_fence(&m.spec, b).await?;
            notes.push(format!(
                "lifted a fence it carried (min-replicas-to-write {b})"
            ));
        }
        let sticky = if snap.sentinel_managed {
            self.apply_sticky(snap, region, chosen).await?
        } else {
            0
        };
        if recorded && notes.is_empty() && sticky == 0 {
            return Ok(Outcome {
                data_loss: loss,
                ..Outcome::already_done().with_member(name)
            });
        }
        self.record(
            &m.spec,
            ctx,
            RecordWrite {
                promotion: Some((term, name.to_string())),
                ..RecordWrite::default()
            },
        )
        .await?;
        let mut out = Outcome {
            data_loss: loss,
            already_done: recorded,
            ..Outcome::done().with_member(name)
        };
        out.notes = notes;
        out.notes.push(format!("{name} is master at term {term}"));
        Ok(out)
    }
}
