//! Fencing the primary so it cannot acknowledge another write.
//!
//! 1. Soft fence over SQL: `ALTER SYSTEM SET default_transaction_read_only =
//!    on` + reload, and terminate client sessions. New transactions fail
//!    at once; the setting also persists as the *fence marker* (observed as
//!    `fenced`), which is how a resumed or repeated `Fence` recognises its work.
//! 2. Hard fence through the host hooks: `stop` (fast shutdown: sessions
//!    end, the shutdown checkpoint is written and walsenders hand every WAL
//!    record to connected standbys before exiting), then `start_as_standby`
//!    with no upstream. The former primary now runs in recovery: it refuses
//!    every write whatever a client sets, still serves reads, serves WAL to
//!    cascading standbys, and its `pg_last_wal_replay_lsn()` is its final
//!    position.
//!
//! `Unfence` aborts a planned switchover and gives the store its old primary
//! back, whatever the fence got through before the coordinator stopped:
//! - soft-fenced primary (never stopped): lift the marker;
//! - restarted in recovery (the fence done): lift the marker and promote it
//!   again (a new timeline);
//! - stopped (the restart never ran, or the `stop` hook was still running
//!   when the coordinator died): `stop` (which waits for a stop in progress)
//!   and `start` it as it is configured, then as above.
//!
//! It refuses when another member is primary, or is on a later timeline
//! than the old primary's (something else was promoted: making the old one
//! primary again would fork the store's history).

use crate::hooks::{self, Hook};
use crate::observe::{current_primary, Probe};
use crate::PostgresController;
use switchyard_controller::{ErrorKind, Outcome, Result};
use switchyard_topology::Member;

pub(crate) const SOFT_FENCE: &[&str] = &[
    "ALTER SYSTEM SET default_transaction_read_only = on",
    "SELECT pg_reload_conf()",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
];

const MARK_FENCED: &[&str] = &[
    "ALTER SYSTEM SET default_transaction_read_only = on",
    "SELECT pg_reload_conf()",
];

pub(crate) const CLEAR_FENCE: &[&str] = &[
    "ALTER SYSTEM RESET default_transaction_read_only",
    "SELECT pg_reload_conf()",
];

impl PostgresController {
    pub(crate) async fn fence(&self, probes: Vec<Probe>) -> Result<Outcome> {
        if let Some(p) = current_primary(&probes) {
            let m = self.member(&p.name)?.clone();
            return self.fence_primary(&m).await;
        }
        if let Some(f) = probes.iter().find(|p| p.is_standby() && p.fenced) {
            return Ok(Outcome::already_done()
                .with_member(&f.name)
                .with_position(f.position())
                .with_note(format!("{} is already fenced", f.name)));
        }
        // Resumed after the stop but before the restart: the primary is down.
        // The standbys' upstream names it; bring it up fenced.
        if let Some(m) = self.configured_upstream(&probes) {
            if probes.iter().any(|p| p.name == m.name && !p.reachable()) {
                let m = m.clone();
                hooks::run(&self.store.name, Hook::Stop, &m, None).await?;
                hooks::run(&self.store.name, Hook::StartAsStandby, &m, None).await?;
                let p = self.wait_up(&m, true).await?;
                if !p.fenced {
                    let c = self.session(&m).await?;
                    self.exec(&c, &m, MARK_FENCED).await?;
                }
                let p = self.wait_up(&m, true).await?;
                return Ok(Outcome::done()
                    .with_member(&m.name)
                    .with_position(p.position())
                    .with_note(format!(
                        "{} was down; restarted it in recovery without an upstream",
                        m.name
                    )));
            }
        }
        Err(self.err(
            ErrorKind::NotReady,
            "no reachable primary to fence and no fenced former primary",
        ))
    }

    async fn fence_primary(&self, m: &Member) -> Result<Outcome> {
        if m.hooks.stop.is_none() || m.hooks.start_as_standby.is_none() {
            return Err(self
                .err(
                    ErrorKind::Config,
                    "fencing needs hooks.stop and hooks.start_as_standby",
                )
                .with_member(&m.name));
        }
        match self.session(m).await {
            Ok(c) => {
                // While writes still flow: makes the shutdown checkpoint,
                // which runs inside the write outage, short.
                if let Err(e) = self.exec(&c, m, &["CHECKPOINT"]).await {
                    tracing::warn!(member = %m.name, error = %e, "checkpoint before fence failed");
                }
                // A failure here is not fatal: the hard fence follows anyway.
                if let Err(e) = self.exec(&c, m, SOFT_FENCE).await {
                    tracing::warn!(member = %m.name, error = %e, "soft fence failed");
                }
            }
            Err(e) => tracing::warn!(member = %m.name, error = %e, "soft fence skipped"),
        }
        hooks::run(&self.store.name, Hook::Stop, m, None).await?;
        hooks::run(&self.store.name, Hook::StartAsStandby, m, None).await?;
        let p = self.wait_up(m, true).await?;
        Ok(Outcome::done()
            .with_member(&m.name)
            .with_position(p.position())
            .with_note(format!(
                "{} stopped and restarted in recovery without an upstream",
                m.name
            )))
    }

    /// The member most reachable standbys are configured to follow.
    pub(crate) fn configured_upstream(&self, probes: &[Probe]) -> Option<&Member> {
        let mut votes: std::collections::HashMap<&str, usize> = Default::default();
        for p in probes.iter().filter(|p| p.is_standby()) {
            // Streaming or not: with the primary stopped nothing streams,
            // and the configured upstream is what names it.
            if let Some((h, port)) = p.upstream.as_ref().or(p.configured.as_ref()) {
                if let Some(m) = self.member_at(h, *port) {
                    *votes.entry(m.name.as_str()).or_default() += 1;
                }
            }
        }
        let (name, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        self.store.member(name)
    }

    pub(crate) async fn unfence(&self, probes: Vec<Probe>) -> Result<Outcome> {
        let fenced = probes.iter().find(|p| p.is_standby() && p.fenced);
        if let Some(p) = current_primary(&probes) {
            if fenced.is_some() || p.fenced {
                if p.fenced {
                    // Soft-fenced but never stopped: lift the marker.
                    let m = self.member(&p.name)?;
                    let c = self.session(m).await?;
                    self.exec(&c, m, CLEAR_FENCE).await?;
                    return Ok(Outcome::done()
                        .with_member(&p.name)
                        .with_note(format!("{} unfenced (it was never stopped)", p.name)));
                }
                return Err(self
                    .err(
                        ErrorKind::Refused,
                        format!(
                            "{} is already primary; unfencing the former primary would make two",
                            p.name
                        ),
                    )
                    .with_member(&p.name));
            }
            return Ok(Outcome::already_done().with_member(&p.name));
        }
        if let Some(f) = fenced {
            let m = self.member(&f.name)?.clone();
            self.refuse_if_promoted_elsewhere(&probes, &m, f.timeline)?;
            return self.reopen(&m, None).await;
        }
        // The fence stopped the old primary and never restarted it: the
        // standbys are still configured to follow it.
        let Some(m) = self
            .configured_upstream(&probes)
            .filter(|m| probes.iter().any(|p| p.name == m.name && !p.reachable()))
            .cloned()
        else {
            return Err(self.err(
                ErrorKind::NotReady,
                "no fenced member reachable to unfence, and no stopped former primary \
                 that the standbys follow",
            ));
        };
        if m.hooks.start.is_none() {
            return Err(self
                .err(
                    ErrorKind::Config,
                    "the fenced primary is stopped: starting it again needs hooks.start",
                )
                .with_member(&m.name));
        }
        // Its standbys are on its timeline: one of them further ahead means
        // something else was promoted.
        let tl = probes
            .iter()
            .filter(|p| p.is_standby())
            .map(|p| p.timeline)
            .min()
            .unwrap_or(0);
        self.refuse_if_promoted_elsewhere(&probes, &m, tl)?;
        // `stop` first: it waits for a stop still in progress (a killed
        // coordinator's hook), which would otherwise undo the start.
        hooks::run(&self.store.name, Hook::Stop, &m, None).await?;
        hooks::run(&self.store.name, Hook::Start, &m, None).await?;
        let p = self.wait_reachable(&m).await?;
        let again = self.probe_all().await;
        if p.in_recovery {
            self.refuse_if_promoted_elsewhere(&again, &m, p.timeline)?;
        }
        self.reopen(
            &m,
            Some(format!("{} was stopped; started it again", m.name)),
        )
        .await
    }

    /// Refuse to give `m` the primary back when another member has moved
    /// past `timeline` (it was promoted after `m` was fenced).
    fn refuse_if_promoted_elsewhere(
        &self,
        probes: &[Probe],
        m: &Member,
        timeline: u64,
    ) -> Result<()> {
        match probes
            .iter()
            .filter(|p| p.reachable() && p.name != m.name && p.timeline > timeline)
            .max_by_key(|p| p.timeline)
        {
            Some(newer) => Err(self
                .err(
                    ErrorKind::Refused,
                    format!(
                        "{} is on timeline {} but {} is on timeline {timeline}: a member was \
                         promoted after the fence; unfencing {} would fork the store",
                        newer.name, newer.timeline, m.name, m.name
                    ),
                )
                .with_member(&newer.name)),
            None => Ok(()),
        }
    }

    /// Make `m` (fenced, up, in recovery or a read-only primary) the
    /// writable primary again.
    async fn reopen(&self, m: &Member, note: Option<String>) -> Result<Outcome> {
        let c = self.session(m).await?;
        self.exec(&c, m, CLEAR_FENCE).await?;
        let in_recovery = self
            .scalar(&c, m, "SELECT pg_is_in_recovery()::text")
            .await?
            == "true";
        let mut outcome = Outcome::done().with_member(&m.name);
        if let Some(n) = note {
            outcome = outcome.with_note(n);
        }
        if in_recovery {
            let pos = self.promote_member(m, &c).await?;
            outcome = outcome
                .with_position(pos)
                .with_note(format!("{} promoted again: timeline {}", m.name, pos.epoch));
        } else {
            outcome = outcome.with_note(format!("{} is primary again on its timeline", m.name));
        }
        Ok(outcome)
    }

    /// Poll until `m` accepts connections, in recovery or not.
    async fn wait_reachable(&self, m: &Member) -> Result<Probe> {
        let deadline = std::time::Instant::now() + self.timing.start_timeout;
        loop {
            let p = crate::observe::probe_member(self, m).await;
            if p.reachable() {
                return Ok(p);
            }
            if std::time::Instant::now() > deadline {
                return Err(self
                    .err(
                        ErrorKind::Timeout,
                        format!(
                            "did not come up within {:?} after hooks.start: {}",
                            self.timing.start_timeout,
                            p.error.unwrap_or_default()
                        ),
                    )
                    .with_member(&m.name));
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }
}
