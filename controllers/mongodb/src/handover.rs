//! The planned hand-over: how a planned `Promote` moves the primary to the
//! target without losing a `w:1` write.
//!
//! What mongod guarantees, and what the order relies on:
//!
//! - `replSetStepDown` with `secondaryCatchUpPeriodSecs` refuses writes from
//!   the moment it starts, and steps down only once a *write majority* of
//!   the set and at least one *electable* secondary have the primary's last
//!   applied optime (`TopologyCoordinator::isSafeToStepDown`); then it hands
//!   the election to the highest-priority caught-up electable secondary
//!   (`chooseElectionHandoffCandidate`). Every write the old primary
//!   acknowledged is then on the member that wins, and on every majority a
//!   winner needs, so nothing rolls back.
//! - A member frozen with `replSetFreeze` does not stand for election —
//!   neither by election timeout nor by priority takeover nor when asked to
//!   step up — and its heartbeats say so, so a step-down does not count it
//!   as electable (`_getUnelectableReason`: `StepDownPeriodActive`).
//! - A secondary with a higher priority than the primary, within 2 s of it,
//!   calls an election by itself (priority takeover) while the primary still
//!   takes writes: whatever `w:1` writes it had not replicated roll back.
//!
//! Hence: freeze every electable member that must not win, step down with a
//! catch-up period (the only unfrozen electable members are the target's,
//! so the step-down waits for one of them and hands it the election), and
//! raise the target's priorities only when it holds the primary; then
//! unfreeze. Raising them first (the order before) let the target take over
//! by priority before the step-down was issued.

use crate::error::MongoError;
use crate::observe::Snapshot;
use crate::MongoController;
use bson::doc;
use std::time::Duration;
use switchyard_controller::{is_target, ErrorKind, ObservedState, OpContext};

type R<T> = Result<T, MongoError>;

/// `west`, or `west-2 in west` when the operator chose the member.
fn aim(target: &str, chosen: Option<&str>) -> String {
    switchyard_controller::operation::in_region(&chosen.map(str::to_string), target)
}

const POLL: Duration = Duration::from_millis(50);

/// What the hand-over did, for the outcome's notes.
pub(crate) struct HandedOver {
    /// The observation with the primary in the target.
    pub state: ObservedState,
    /// Notes for the outcome, in order.
    pub notes: Vec<String>,
}

impl MongoController {
    /// How long the members that must not win stay frozen, and the old
    /// primary stepped down: the catch-up period, the election, and the
    /// reconfig that makes the move stick, with room to spare. They are
    /// unfrozen as soon as the target's priorities are in place; the
    /// period only bounds a hand-over the controller could not finish.
    pub(crate) fn hold(&self) -> Duration {
        self.cfg.catch_up
            + (self.cfg.election_timeout * 4).max(Duration::from_secs(5))
            + self.reconfig_max_time()
            + Duration::from_secs(10)
    }

    /// Freeze, step down with catch-up, wait for the target, make sticky,
    /// unfreeze (see the module documentation). `snap` saw the primary
    /// `p` outside the target.
    pub(crate) async fn hand_over(
        &self,
        snap: &Snapshot,
        p: usize,
        target: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> R<HandedOver> {
        let limit = self.cfg.connect_timeout * 2;
        let hold = self.hold().as_secs();
        let secondary = |i: usize| snap.views[i].as_ref().is_ok_and(|v| v.state == 2);
        let aimed = |i: usize| {
            let m = &self.cfg.members[i];
            is_target(&m.name, &m.region, target, chosen)
        };
        let mut notes = Vec::new();
        // 1. Nobody but the target may win the election the step-down
        //    hands over.
        let mut frozen = Vec::new();
        for i in 0..self.cfg.members.len() {
            let m = &self.cfg.members[i];
            if i == p || !m.electable || !secondary(i) || aimed(i) {
                continue;
            }
            let cmd = doc! { "replSetFreeze": hold as i64 };
            if let Err(e) = self.conns.admin(&self.cfg, i, cmd, limit).await {
                self.unfreeze(&frozen).await;
                return Err(MongoError::new(
                    ErrorKind::NotReady,
                    format!(
                        "could not freeze {} before the step-down ({}); it could win the election \
                         and be taken over by the target later, rolling back its w:1 writes",
                        m.name,
                        e.code()
                            .map_or("no answer".to_string(), |c| format!("server error {c}"))
                    ),
                )
                .member(&m.name));
            }
            frozen.push(i);
        }
        // 2. A member stepped down by an earlier switchover may still be
        //    frozen: the target's candidates must be able to win.
        for i in (0..self.cfg.members.len()).filter(|&i| aimed(i) && secondary(i)) {
            if self.cfg.members[i].electable {
                let _ = self
                    .conns
                    .admin(&self.cfg, i, doc! { "replSetFreeze": 0 }, limit)
                    .await;
            }
        }
        // 3. Step down: writes stop now; the primary waits for a target
        //    candidate (the only electable members left) to catch up.
        let catch = self.cfg.catch_up.as_secs().max(1);
        let cmd = doc! {
            "replSetStepDown": hold as i64,
            "secondaryCatchUpPeriodSecs": catch as i64,
        };
        let old = &self.cfg.members[p].name;
        match self
            .conns
            .admin(&self.cfg, p, cmd, Duration::from_secs(catch + 15))
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(262) => {
                self.unfreeze(&frozen).await;
                return Err(MongoError::new(
                    ErrorKind::NotReady,
                    format!(
                        "no electable member of {} caught up within {catch} s; the primary kept its \
                         role and resumed writes",
                        aim(target, chosen)
                    ),
                )
                .member(old));
            }
            // Someone else moved the primary meanwhile: the wait decides.
            Err(e) if e.code() == Some(10107) => {}
            // The step-down may close the connection; the wait decides.
            Err(MongoError::Driver { code: None, .. }) => {}
            Err(e) => {
                self.unfreeze(&frozen).await;
                return Err(e);
            }
        }
        notes.push(format!(
            "stepped down {old} with a {catch} s catch-up period; writes stopped until a member of {} \
             had all of them",
            aim(target, chosen)
        ));
        if !frozen.is_empty() {
            notes.push(format!(
                "froze {} for {hold} s first, so only {} could win the election",
                self.names(&frozen),
                aim(target, chosen)
            ));
        }
        // 4. The hand-off elects the caught-up candidate at once; should it
        //    not (a heartbeat had not yet told the primary a member was
        //    frozen), ask the candidate to stand. Voters refuse a candidate
        //    behind them, so whoever wins has every acknowledged write.
        let state = match self.wait_elected(target, chosen).await {
            Ok(s) => s,
            Err(e) => {
                self.unfreeze(&frozen).await;
                return Err(e);
            }
        };
        // 5. Only now the preference: the target holds the primary, so a
        //    raised priority moves nothing. If this fails the members stay
        //    frozen for the rest of `hold` (the sequence's make_sticky
        //    retries it), which keeps the old region from taking the
        //    primary back by priority meanwhile.
        let snap = self.snapshot().await?;
        let sticky = self.make_sticky(&snap, target, chosen, ctx).await?;
        notes.push(sticky.note(target));
        // 6. Unfreeze — the old primary too — once each holds the new
        //    priorities (configs spread by heartbeat; a member still on the
        //    old config would see itself outranking the new primary).
        let mut release = frozen;
        if self.cfg.members[p].electable {
            release.push(p);
        }
        let (done, waiting) = self.unfreeze_once_sticky(&release, target, chosen).await;
        if !done.is_empty() {
            notes.push(format!("unfroze {}", self.names(&done)));
        }
        if !waiting.is_empty() {
            notes.push(format!(
                "{} did not show the new priorities yet and stay frozen until the {hold} s pass",
                self.names(&waiting)
            ));
        }
        Ok(HandedOver { state, notes })
    }

    /// Until the primary is in the target; with no primary at all for an
    /// election timeout, `replSetStepUp` on the most advanced candidate.
    async fn wait_elected(&self, target: &str, chosen: Option<&str>) -> R<ObservedState> {
        let deadline = tokio::time::Instant::now() + self.election_wait();
        let nudge_every = self.cfg.election_timeout.max(Duration::from_millis(200));
        let mut leaderless_since: Option<tokio::time::Instant> = None;
        loop {
            let snap = self.snapshot().await;
            if let Ok(snap) = &snap {
                let s = self.to_state(snap);
                match s.primary() {
                    Some(p) if is_target(&p.name, &p.region, target, chosen) => return Ok(s),
                    Some(_) => leaderless_since = None,
                    None => {
                        let now = tokio::time::Instant::now();
                        let since = *leaderless_since.get_or_insert(now);
                        if now.duration_since(since) >= nudge_every {
                            leaderless_since = Some(now);
                            if let Some(c) = self.best_candidate(snap, target, chosen) {
                                let _ = self
                                    .conns
                                    .admin(
                                        &self.cfg,
                                        c,
                                        doc! { "replSetStepUp": 1 },
                                        self.cfg.connect_timeout * 2,
                                    )
                                    .await;
                            }
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match snap {
                    Err(e) => e,
                    Ok(_) => MongoError::new(
                        ErrorKind::Timeout,
                        format!(
                            "no primary {} within {:?} of the step-down",
                            aim(target, chosen),
                            self.election_wait()
                        ),
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The most advanced reachable electable secondary the step aims at.
    pub(crate) fn best_candidate(
        &self,
        snap: &Snapshot,
        target: &str,
        chosen: Option<&str>,
    ) -> Option<usize> {
        (0..self.cfg.members.len())
            .filter(|&i| {
                let m = &self.cfg.members[i];
                m.electable
                    && is_target(&m.name, &m.region, target, chosen)
                    && snap.views[i].as_ref().is_ok_and(|v| v.state == 2)
            })
            .max_by_key(|&i| {
                snap.views[i]
                    .as_ref()
                    .ok()
                    .and_then(|v| v.optime)
                    .map(|(ts, t)| (t, ts.time, ts.increment))
            })
    }

    /// `replSetFreeze: 0` on each of `members`, best effort: a member that
    /// does not answer unfreezes by itself when its period ends.
    async fn unfreeze(&self, members: &[usize]) {
        let limit = self.cfg.connect_timeout * 2;
        for &i in members {
            let _ = self
                .conns
                .admin(&self.cfg, i, doc! { "replSetFreeze": 0 }, limit)
                .await;
        }
    }

    /// Unfreeze each of `members` once its own config carries the sticky
    /// priorities for `target`; returns (unfrozen, still waiting).
    async fn unfreeze_once_sticky(
        &self,
        members: &[usize],
        target: &str,
        chosen: Option<&str>,
    ) -> (Vec<usize>, Vec<usize>) {
        let deadline =
            tokio::time::Instant::now() + self.cfg.election_timeout * 4 + Duration::from_secs(5);
        let mut waiting: Vec<usize> = members.to_vec();
        let mut done = Vec::new();
        loop {
            let mut still = Vec::new();
            for &i in &waiting {
                let ready = self
                    .fetch_config(i)
                    .await
                    .is_ok_and(|c| self.sticky_config(&c, target, chosen).is_none());
                if ready {
                    self.unfreeze(&[i]).await;
                    done.push(i);
                } else {
                    still.push(i);
                }
            }
            waiting = still;
            if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
                return (done, waiting);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn names(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| self.cfg.members[i].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
