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
//! `Unfence` aborts a planned switchover: it promotes the fenced member
//! again (a new timeline) when no other primary exists.

use crate::hooks::{self, Hook};
use crate::observe::{current_primary, Probe};
use crate::PostgresController;
use switchyard_controller::{ErrorKind, OpContext, Outcome, Result};
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
    pub(crate) async fn fence(&self, probes: Vec<Probe>, ctx: &OpContext) -> Result<Outcome> {
        if let Some(p) = current_primary(&probes) {
            let m = self.member(&p.name)?.clone();
            return self.fence_primary(&m, ctx).await;
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

    async fn fence_primary(&self, m: &Member, ctx: &OpContext) -> Result<Outcome> {
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
                // Recorded while the primary is still writable.
                self.record_epoch_on(&c, m, ctx).await;
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

    pub(crate) async fn unfence(&self, probes: Vec<Probe>, ctx: &OpContext) -> Result<Outcome> {
        let fenced = probes.iter().find(|p| p.is_standby() && p.fenced);
        if let Some(p) = current_primary(&probes) {
            if fenced.is_some() || p.fenced {
                if p.fenced {
                    // Soft-fenced but never stopped: lift the marker.
                    let m = self.member(&p.name)?;
                    let c = self.session(m).await?;
                    self.exec(&c, m, CLEAR_FENCE).await?;
                    return Ok(Outcome::done().with_member(&p.name));
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
        let f = fenced.ok_or_else(|| {
            self.err(ErrorKind::NotReady, "no fenced member reachable to unfence")
        })?;
        let m = self.member(&f.name)?.clone();
        let c = self.session(&m).await?;
        self.exec(&c, &m, CLEAR_FENCE).await?;
        self.promote_member(&m, &c).await?;
        self.record_epoch_on(&c, &m, ctx).await;
        Ok(Outcome::done()
            .with_member(&m.name)
            .with_note(format!("{} promoted again (new timeline)", m.name)))
    }
}
