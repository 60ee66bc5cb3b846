//! After a promotion: re-point the other standbys at the new primary and
//! rejoin former primaries as standbys.
//!
//! A standby that has not replayed past the new timeline's switch point
//! just needs `primary_conninfo` (PostgreSQL ≥ 13 applies it on reload; the
//! default `recovery_target_timeline = 'latest'` follows the new timeline).
//! One that holds WAL beyond the switch point (possible after a forced
//! failover) has diverged and goes through the host hooks: `stop`,
//! `rewind` (`pg_rewind` from the new primary), `start_as_standby`.

use crate::fence::{CLEAR_FENCE, SOFT_FENCE};
use crate::hooks::{self, Hook};
use crate::lsn::{format_lsn, parse_history};
use crate::observe::{current_primary, probe_member, Probe};
use crate::{sql_literal, PostgresController};
use std::time::Instant;
use switchyard_controller::{Error, ErrorKind, Outcome, Result};
use switchyard_topology::Member;

/// What was done to one member; reported only once it streams from the
/// new primary (a claim about a rewind is proven by the member following).
enum Move {
    /// `primary_conninfo` changed and reloaded: it was on the primary's history.
    Repointed,
    /// The old primary the deferred fence stopped, started as a standby (no
    /// rewind: its WAL ends at its shutdown checkpoint, `end`, before the fork).
    Started { end: u64 },
    /// Stopped, rewound by the `rewind` hook (pg_rewind, or a fresh clone
    /// where the hook falls back to one), started as a standby.
    Rewound {
        /// Soft-fenced first: it was a writable stale primary.
        stale_primary: bool,
        /// Its timeline before.
        timeline: u64,
        /// Where its timeline forked into the new primary's history.
        diverged_at: Option<u64>,
        /// Its end of WAL before (`None`: it was down, not observed).
        old_end: Option<u64>,
    },
}

impl Move {
    fn describe(&self, m: &str, pm: &str) -> String {
        match self {
            Move::Repointed => format!("{m}: re-pointed, streams from {pm}"),
            Move::Started { end } => format!(
                "{m}: was stopped by the fence (WAL ends at its shutdown checkpoint {}, \
                 before the fork): started as a standby, streams from {pm}",
                format_lsn(*end)
            ),
            Move::Rewound {
                stale_primary,
                timeline,
                diverged_at,
                old_end,
            } => {
                let what = if *stale_primary {
                    format!("stale primary on timeline {timeline} fenced and rewound")
                } else {
                    format!("diverged on timeline {timeline}, rewound")
                };
                let discarded = match (diverged_at, old_end) {
                    (Some(d), Some(e)) => format!(
                        "discarded WAL {}..{} ({} bytes)",
                        format_lsn(*d),
                        format_lsn(*e),
                        e.saturating_sub(*d)
                    ),
                    (Some(d), None) => format!(
                        "discarded WAL from {} to its old end, which was not observed (it was down)",
                        format_lsn(*d)
                    ),
                    (None, Some(e)) => format!(
                        "discarded WAL up to {} from an unknown divergence point",
                        format_lsn(*e)
                    ),
                    (None, None) => {
                        "was down: rewind hook run, WAL discarded unknown".to_string()
                    }
                };
                format!("{m}: {what} (pg_rewind or a re-clone by the rewind hook): {discarded}; streams from {pm}")
            }
        }
    }
}

impl PostgresController {
    pub(crate) async fn repoint_followers(&self, probes: Vec<Probe>) -> Result<Outcome> {
        let (pm, timeline, history) = self.primary_and_history(&probes).await?;
        let mut outcome = Outcome::done();
        // The deferred fence's old primary, stopped with standby.signal and
        // its WAL ending before the fork, needs no rewind: it is started
        // following `pm` now, alongside the re-pointing, rather than after
        // it in `Rejoin` (which then finds it streaming). Anything else
        // about a former primary stays `Rejoin`'s business.
        let early = match self.stopped_former_primary(&probes).await {
            Ok(Some((m, pos)))
                if forked_after(pos, &history) && m.hooks.start_as_standby.is_some() =>
            {
                Some((m, pos))
            }
            _ => None,
        };
        let start_early = async {
            let (m, pos) = early.as_ref()?;
            match self.start_following(m, &pm).await {
                Ok(()) => Some((
                    m.clone(),
                    Move::Started {
                        end: pos.offset - 1,
                    },
                )),
                Err(e) => {
                    // Not this operation's to fail: `Rejoin` starts it.
                    tracing::warn!(member = %m.name, error = %e, "starting the fenced old primary early failed; Rejoin will");
                    None
                }
            }
        };
        let repoint = async {
            let mut moved = Vec::new();
            let mut waiting = Vec::new();
            let mut notes = Vec::new();
            for p in &probes {
                if p.name == pm.name {
                    continue;
                }
                if !p.reachable() {
                    if early.as_ref().is_none_or(|(m, _)| m.name != p.name) {
                        notes.push(format!("{} unreachable: rejoin it when it is back", p.name));
                    }
                    continue;
                }
                if !p.is_standby() || p.fenced {
                    continue; // former primaries are Rejoin's business
                }
                if self.follows(p, &pm) {
                    continue;
                }
                let m = self.member(&p.name)?.clone();
                if self.configured_for(p, &pm) && !diverged(p, &history) {
                    // Re-pointed earlier (an interrupted run): just wait for it.
                    waiting.push(m);
                    continue;
                }
                let mv = if diverged(p, &history) {
                    self.rewind_and_follow(&m, &pm, Some(p), &history).await?
                } else {
                    self.set_upstream(&m, &pm, false).await?;
                    Move::Repointed
                };
                moved.push((m, mv));
            }
            Ok::<_, switchyard_controller::Error>((moved, waiting, notes))
        };
        let (started, repointed) = futures::future::join(start_early, repoint).await;
        let (mut moved, waiting, notes) = repointed?;
        outcome.notes.extend(notes);
        moved.extend(started);
        if moved.is_empty() {
            outcome.already_done = true;
        }
        self.confirm_following(&mut outcome, moved, waiting, &pm, timeline)
            .await?;
        Ok(outcome.with_member(&pm.name))
    }

    pub(crate) async fn rejoin(&self, probes: Vec<Probe>) -> Result<Outcome> {
        let (pm, timeline, history) = self.primary_and_history(&probes).await?;
        let mut outcome = Outcome::done();
        let mut moved = Vec::new();
        let mut waiting = Vec::new();
        let mut failed: Vec<Error> = Vec::new();
        for p in &probes {
            if p.name == pm.name {
                continue;
            }
            let m = self.member(&p.name)?.clone();
            let res = if p.is_primary() {
                // A stale primary (split brain): it may be taking writes
                // right now. Fence it before anything else.
                self.rewind_and_follow(&m, &pm, Some(p), &history).await
            } else if p.is_standby() && p.fenced {
                if diverged(p, &history) {
                    self.rewind_and_follow(&m, &pm, Some(p), &history).await
                } else {
                    self.set_upstream(&m, &pm, true)
                        .await
                        .map(|_| Move::Repointed)
                }
            } else if !p.reachable() {
                if m.hooks.start_as_standby.is_none() {
                    outcome
                        .notes
                        .push(format!("{} unreachable and has no hooks: skipped", m.name));
                    continue;
                }
                match self.final_position(&m).await {
                    // The deferred fence's old primary: its WAL ends at its
                    // shutdown checkpoint, before the fork: no rewind.
                    Ok(Some(pos)) if forked_after(pos, &history) => {
                        self.start_following(&m, &pm).await.map(|_| Move::Started {
                            end: pos.offset - 1,
                        })
                    }
                    _ => self.rewind_and_follow(&m, &pm, None, &history).await,
                }
            } else if p.is_standby() && !self.follows(p, &pm) {
                // Not a former primary, but not following either (e.g. an
                // interrupted earlier rejoin): finish the job.
                if self.configured_for(p, &pm) && !diverged(p, &history) {
                    waiting.push(m);
                    continue;
                }
                if diverged(p, &history) {
                    self.rewind_and_follow(&m, &pm, Some(p), &history).await
                } else {
                    self.set_upstream(&m, &pm, false)
                        .await
                        .map(|_| Move::Repointed)
                }
            } else {
                continue;
            };
            match res {
                Ok(mv) => moved.push((m, mv)),
                Err(e) => failed.push(e),
            }
        }
        let done_before = moved.is_empty();
        self.confirm_following(&mut outcome, moved, waiting, &pm, timeline)
            .await?;
        if let Some(e) = failed.into_iter().next() {
            return Err(e);
        }
        if done_before {
            outcome.already_done = true;
        }
        Ok(outcome.with_member(&pm.name))
    }

    /// Wait until every moved or waiting member streams from `pm`, then
    /// report what was done to each.
    async fn confirm_following(
        &self,
        outcome: &mut Outcome,
        moved: Vec<(Member, Move)>,
        waiting: Vec<Member>,
        pm: &Member,
        timeline: u64,
    ) -> Result<()> {
        let all: Vec<Member> = moved
            .iter()
            .map(|(m, _)| m.clone())
            .chain(waiting.iter().cloned())
            .collect();
        self.wait_following(&all, pm, timeline).await?;
        for (m, mv) in &moved {
            outcome.notes.push(mv.describe(&m.name, &pm.name));
        }
        for m in &waiting {
            outcome.notes.push(format!(
                "{}: streams from {} (re-pointed earlier)",
                m.name, pm.name
            ));
        }
        Ok(())
    }

    /// The primary to follow, its timeline and its timeline history.
    async fn primary_and_history(
        &self,
        probes: &[Probe],
    ) -> Result<(Member, u64, Vec<(u64, u64)>)> {
        let p = current_primary(probes)
            .ok_or_else(|| self.err(ErrorKind::NotReady, "no reachable primary to follow"))?;
        let pm = self.member(&p.name)?.clone();
        let history = if p.timeline > 1 {
            let c = self.shared_session(&pm).await?;
            let text = self
                .scalar(
                    &c,
                    &pm,
                    &format!("SELECT pg_read_file('pg_wal/{:08X}.history')", p.timeline),
                )
                .await?;
            parse_history(&text)
        } else {
            Vec::new()
        };
        Ok((pm, p.timeline, history))
    }

    fn follows(&self, p: &Probe, pm: &Member) -> bool {
        p.streaming && self.streaming_from(p).is_some_and(|m| m.name == pm.name)
    }

    fn configured_for(&self, p: &Probe, pm: &Member) -> bool {
        p.configured
            .as_ref()
            .and_then(|(h, port)| self.member_at(h, *port))
            .is_some_and(|m| m.name == pm.name)
    }

    async fn set_upstream(&self, m: &Member, pm: &Member, clear_fence: bool) -> Result<()> {
        let c = self.shared_session(m).await?;
        // The conninfo may hold a password: it goes to the server, never to a log.
        let set = format!(
            "ALTER SYSTEM SET primary_conninfo = {}",
            sql_literal(&self.conninfo_for(pm, &m.name))
        );
        let mut sql = vec![set.as_str()];
        if clear_fence {
            sql.push("ALTER SYSTEM RESET default_transaction_read_only");
        }
        sql.push("SELECT pg_reload_conf()");
        self.exec(&c, m, &sql).await?;
        tracing::info!(member = %m.name, primary = %pm.name, "re-pointed");
        Ok(())
    }

    /// Stop `m`, rewind it from `pm` and start it as `pm`'s standby. `before`
    /// is how it was observed (`None`: down). A writable member is fenced
    /// over SQL first, so it takes no write between now and the stop.
    async fn rewind_and_follow(
        &self,
        m: &Member,
        pm: &Member,
        before: Option<&Probe>,
        history: &[(u64, u64)],
    ) -> Result<Move> {
        let store = &self.store.name;
        let stale_primary = before.is_some_and(Probe::is_primary);
        if stale_primary {
            match self.session(m).await {
                Ok(c) => {
                    if let Err(e) = self.exec(&c, m, SOFT_FENCE).await {
                        tracing::warn!(member = %m.name, error = %e, "soft fence of a stale primary failed; stopping it anyway");
                    }
                }
                Err(e) => {
                    tracing::warn!(member = %m.name, error = %e, "stale primary not reachable for a soft fence; stopping it")
                }
            }
        }
        // pg_rewind finds the divergence from the source's control file. A
        // just-promoted primary has not checkpointed yet, so its control
        // file still names the old timeline and pg_rewind answers "no
        // rewind required" for a member that has in fact diverged.
        let c = self.session(pm).await?;
        self.exec(&c, pm, &["CHECKPOINT"]).await?;
        let old_end = before.map(Probe::held_lsn);
        let timeline = before.map_or(0, |p| p.timeline);
        let diverged_at = history
            .iter()
            .find(|(t, _)| *t == timeline)
            .map(|(_, switch)| *switch);
        hooks::run(store, Hook::Stop, m, Some(pm)).await?;
        hooks::run(store, Hook::Rewind, m, Some(pm)).await?;
        self.start_following(m, pm).await?;
        Ok(Move::Rewound {
            stale_primary,
            timeline,
            diverged_at,
            old_end,
        })
    }

    /// Start stopped `m` as a standby of `pm` and lift the fence marker.
    async fn start_following(&self, m: &Member, pm: &Member) -> Result<()> {
        hooks::run(&self.store.name, Hook::StartAsStandby, m, Some(pm)).await?;
        self.forget_final_position(&m.name);
        let p = self.wait_up(m, true).await?;
        if p.fenced {
            // wait_up's probe just opened (and kept) the session.
            let c = self.shared_session(m).await?;
            self.exec(&c, m, CLEAR_FENCE).await?;
            // The reload reaches other sessions asynchronously; until the
            // observation sessions see the marker gone the member still
            // looks like a former primary to be rejoined.
            let deadline = Instant::now() + self.timing.start_timeout;
            while probe_member(self, m).await.fenced {
                if Instant::now() > deadline {
                    return Err(self
                        .err(
                            ErrorKind::Timeout,
                            "fence marker still set after reset and reload",
                        )
                        .with_member(&m.name));
                }
                tokio::time::sleep(self.timing.poll.max(std::time::Duration::from_millis(5))).await;
            }
        }
        Ok(())
    }

    /// Wait until each member streams from `pm` on its `timeline` (a
    /// standby re-pointed from an older timeline first streams that one up
    /// to the switch point, then its receiver restarts on the new one).
    async fn wait_following(&self, members: &[Member], pm: &Member, timeline: u64) -> Result<()> {
        let deadline = Instant::now() + self.timing.follow_timeout;
        for m in members {
            loop {
                let p = probe_member(self, m).await;
                if p.is_standby() && self.follows(&p, pm) && p.timeline >= timeline {
                    break;
                }
                if Instant::now() > deadline {
                    let seen = if !p.reachable() {
                        format!("unreachable ({})", p.error.as_deref().unwrap_or("?"))
                    } else if !p.in_recovery {
                        "a primary".to_string()
                    } else {
                        format!(
                            "on timeline {} at {}, WAL receiver {}",
                            p.timeline,
                            format_lsn(p.held_lsn()),
                            p.receiver_status.as_deref().unwrap_or("not running")
                        )
                    };
                    return Err(self
                        .err(
                            ErrorKind::Timeout,
                            format!(
                                "not streaming from {} within {:?}: {seen}",
                                pm.name, self.timing.follow_timeout
                            ),
                        )
                        .with_member(&m.name));
                }
                tokio::time::sleep(self.timing.poll.max(std::time::Duration::from_millis(5))).await;
            }
        }
        Ok(())
    }
}

/// Whether the primary's history forked `pos`'s timeline at or after `pos`
/// (a member whose WAL ends there follows without a rewind).
fn forked_after(pos: switchyard_controller::Position, history: &[(u64, u64)]) -> bool {
    history
        .iter()
        .any(|(t, switch)| *t == pos.history.get() && *switch >= pos.offset)
}

/// Whether standby `p` holds WAL past the point where its timeline was
/// forked into the primary's history (it then cannot follow without a rewind).
fn diverged(p: &Probe, history: &[(u64, u64)]) -> bool {
    if history.is_empty() {
        return false;
    }
    let newest = history.iter().map(|(t, _)| *t).max().unwrap_or(0);
    if p.timeline > newest {
        // On the primary's own timeline (or newer, which would be odd): no fork to judge.
        return false;
    }
    match history.iter().find(|(t, _)| *t == p.timeline) {
        Some((_, switch)) => p.held_lsn() > *switch,
        None => true,
    }
}
