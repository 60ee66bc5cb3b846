//! After a promotion: re-point the other standbys at the new primary and
//! rejoin former primaries as standbys.
//!
//! A standby that has not replayed past the new timeline's switch point
//! just needs `primary_conninfo` (PostgreSQL ≥ 13 applies it on reload; the
//! default `recovery_target_timeline = 'latest'` follows the new timeline).
//! One that holds WAL beyond the switch point (possible after a forced
//! failover) has diverged and goes through the host hooks: `stop`,
//! `rewind` (`pg_rewind` from the new primary), `start_as_standby`.

use crate::fence::CLEAR_FENCE;
use crate::hooks::{self, Hook};
use crate::lsn::parse_history;
use crate::observe::{current_primary, probe_member, Probe};
use crate::{sql_literal, PostgresController};
use std::time::Instant;
use switchyard_controller::{Error, ErrorKind, Outcome, Result};
use switchyard_topology::Member;

impl PostgresController {
    pub(crate) async fn repoint_followers(&self, probes: Vec<Probe>) -> Result<Outcome> {
        let (pm, history) = self.primary_and_history(&probes).await?;
        let mut outcome = Outcome::done();
        let mut moved = Vec::new();
        let mut waiting = Vec::new();
        for p in &probes {
            if p.name == pm.name {
                continue;
            }
            if !p.reachable() {
                outcome
                    .notes
                    .push(format!("{} unreachable: rejoin it when it is back", p.name));
                continue;
            }
            if !p.is_standby() || p.fenced {
                continue; // former primaries are Rejoin's business
            }
            if self.follows(p, &pm) {
                continue;
            }
            let m = self.member(&p.name)?.clone();
            if self.configured_for(p, &pm) {
                // Re-pointed earlier (an interrupted run): just wait for it.
                waiting.push(m);
                continue;
            }
            if diverged(p, &pm, &history) {
                self.rewind_and_follow(&m, &pm).await?;
                outcome
                    .notes
                    .push(format!("{}: diverged, rewound and restarted", m.name));
            } else {
                self.set_upstream(&m, &pm, false).await?;
                outcome.notes.push(format!("{}: re-pointed", m.name));
            }
            moved.push(m);
        }
        if moved.is_empty() {
            outcome.already_done = true;
        }
        moved.extend(waiting);
        self.wait_following(&moved, &pm).await?;
        Ok(outcome.with_member(&pm.name))
    }

    pub(crate) async fn rejoin(&self, probes: Vec<Probe>) -> Result<Outcome> {
        let (pm, history) = self.primary_and_history(&probes).await?;
        let mut outcome = Outcome::done();
        let mut moved = Vec::new();
        let mut waiting = Vec::new();
        let mut failed: Vec<Error> = Vec::new();
        for p in &probes {
            if p.name == pm.name {
                continue;
            }
            let m = self.member(&p.name)?.clone();
            let res = if p.is_standby() && p.fenced {
                if diverged(p, &pm, &history) {
                    self.rewind_and_follow(&m, &pm).await.map(|_| "rewound")
                } else {
                    self.set_upstream(&m, &pm, true).await.map(|_| "re-pointed")
                }
            } else if p.is_primary() {
                self.rewind_and_follow(&m, &pm)
                    .await
                    .map(|_| "stale primary rewound")
            } else if !p.reachable() {
                if m.hooks.start_as_standby.is_none() {
                    outcome
                        .notes
                        .push(format!("{} unreachable and has no hooks: skipped", m.name));
                    continue;
                }
                self.rewind_and_follow(&m, &pm)
                    .await
                    .map(|_| "was down: rewound and started")
            } else if p.is_standby() && !self.follows(p, &pm) {
                // Not a former primary, but not following either (e.g. an
                // interrupted earlier rejoin): finish the job.
                if self.configured_for(p, &pm) {
                    waiting.push(m);
                    continue;
                }
                if diverged(p, &pm, &history) {
                    self.rewind_and_follow(&m, &pm).await.map(|_| "rewound")
                } else {
                    self.set_upstream(&m, &pm, false)
                        .await
                        .map(|_| "re-pointed")
                }
            } else {
                continue;
            };
            match res {
                Ok(what) => {
                    outcome.notes.push(format!("{}: {what}", m.name));
                    moved.push(m);
                }
                Err(e) => failed.push(e),
            }
        }
        let done_before = moved.is_empty();
        moved.extend(waiting);
        self.wait_following(&moved, &pm).await?;
        if let Some(e) = failed.into_iter().next() {
            return Err(e);
        }
        if done_before {
            outcome.already_done = true;
        }
        Ok(outcome.with_member(&pm.name))
    }

    async fn primary_and_history(&self, probes: &[Probe]) -> Result<(Member, Vec<(u64, u64)>)> {
        let p = current_primary(probes)
            .ok_or_else(|| self.err(ErrorKind::NotReady, "no reachable primary to follow"))?;
        let pm = self.member(&p.name)?.clone();
        let history = if p.timeline > 1 {
            let c = self.session(&pm).await?;
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
        Ok((pm, history))
    }

    fn follows(&self, p: &Probe, pm: &Member) -> bool {
        p.streaming
            && p.upstream
                .as_ref()
                .and_then(|(h, port)| self.member_at(h, *port))
                .is_some_and(|m| m.name == pm.name)
    }

    fn configured_for(&self, p: &Probe, pm: &Member) -> bool {
        p.configured
            .as_ref()
            .and_then(|(h, port)| self.member_at(h, *port))
            .is_some_and(|m| m.name == pm.name)
    }

    async fn set_upstream(&self, m: &Member, pm: &Member, clear_fence: bool) -> Result<()> {
        let c = self.session(m).await?;
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

    async fn rewind_and_follow(&self, m: &Member, pm: &Member) -> Result<()> {
        let store = &self.store.name;
        hooks::run(store, Hook::Stop, m, Some(pm)).await?;
        hooks::run(store, Hook::Rewind, m, Some(pm)).await?;
        hooks::run(store, Hook::StartAsStandby, m, Some(pm)).await?;
        let p = self.wait_up(m, true).await?;
        if p.fenced {
            let c = self.session(m).await?;
            self.exec(&c, m, CLEAR_FENCE).await?;
        }
        Ok(())
    }

    async fn wait_following(&self, members: &[Member], pm: &Member) -> Result<()> {
        let deadline = Instant::now() + self.timing.follow_timeout;
        for m in members {
            loop {
                let p = probe_member(self, m).await;
                if p.is_standby() && self.follows(&p, pm) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(self
                        .err(
                            ErrorKind::Timeout,
                            format!(
                                "not streaming from {} within {:?}",
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

/// Whether standby `p` holds WAL past the point where its timeline was
/// forked into the primary's history (it then cannot follow without a rewind).
fn diverged(p: &Probe, primary: &Member, history: &[(u64, u64)]) -> bool {
    let _ = primary;
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
