//! Fencing the primary so it cannot acknowledge another write.
//!
//! 1. Soft fence over SQL: `ALTER SYSTEM SET default_transaction_read_only =
//!    on` + reload, and terminate client sessions (the deferred restart
//!    below leaves that to its stop, which ends them all). New transactions
//!    fail at once; the setting also persists as the *fence marker*
//!    (observed as `fenced`), which is how a resumed or repeated `Fence`
//!    recognises its work.
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
//!
//! **Deferred restart.** When the member has an `extra.controldata` hook and
//! the session may write server files (a superuser), the restart in recovery
//! leaves the critical path: the fence writes `standby.signal` (and resets
//! `primary_conninfo`) *before* the stop, so whatever starts the old primary
//! next — `Rejoin`, `Unfence`'s `start`, an init system, a person — brings it
//! up in recovery, read-only. Its final position is read from
//! `pg_controldata` once it is stopped: a clean shutdown (state `shut
//! down`) ends its WAL with the shutdown checkpoint record, so a standby that
//! replayed past that record's start holds every acknowledged commit. The
//! captured position is therefore *checkpoint location + 1*. Anything else
//! (no hook, no privilege, not a clean shutdown) takes the restart path above.

use crate::control_file::{ControlFile, LocalDataDir};
use crate::hooks::{self, Hook, CONTROLDATA, STOP_CONTROLDATA};
use crate::lsn::{format_lsn, parse_lsn};
use crate::observe::{current_primary, Evidence, Probe};
use crate::{sql_literal, PostgresController};
use switchyard_controller::{ErrorKind, Outcome, Position, Result};
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
            return self.fence_primary(&m, p.data_directory.as_deref()).await;
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
                // A deferred fence stopped it (this controller's, or one
                // before a crash: its data directory says so): done.
                if let Some((pos, true)) = self.stopped_state(&m).await? {
                    return Ok(Outcome::already_done()
                        .with_member(&m.name)
                        .with_position(pos)
                        .with_note(stopped_note(&m, pos)));
                }
                // Not in the deferred fence's shape (no hook, no clean
                // shutdown, no standby.signal): restart it in recovery, as
                // the fence without the deferred restart does.
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

    /// `data_directory`: as the probe just read it (`None`: not readable
    /// to this role, or not read).
    async fn fence_primary(&self, m: &Member, data_directory: Option<&str>) -> Result<Outcome> {
        if m.hooks.stop.is_none() || m.hooks.start_as_standby.is_none() {
            return Err(self
                .err(
                    ErrorKind::Config,
                    "fencing needs hooks.stop and hooks.start_as_standby",
                )
                .with_member(&m.name));
        }
        let deferred = m.hooks.extra.contains_key(CONTROLDATA);
        let mut signalled = false;
        match self.shared_session(m).await {
            Ok(c) => {
                if deferred {
                    match self.soft_fence_and_signal(&c, m, data_directory).await {
                        Ok(()) => signalled = true,
                        Err(e) => tracing::warn!(
                            member = %m.name, error = %e,
                            "standby.signal not written: restarting in recovery before the promotion"
                        ),
                    }
                } else {
                    // While writes still flow: makes the shutdown checkpoint,
                    // which runs inside the write outage, short. (The
                    // deferred path skips it: it is on the command's path,
                    // and a 10 ms writer leaves the shutdown little to flush.)
                    if let Err(e) = self.exec(&c, m, &["CHECKPOINT"]).await {
                        tracing::warn!(member = %m.name, error = %e, "checkpoint before fence failed");
                    }
                    // A failure here is not fatal: the hard fence follows anyway.
                    if let Err(e) = self.exec(&c, m, SOFT_FENCE).await {
                        tracing::warn!(member = %m.name, error = %e, "soft fence failed");
                    }
                }
            }
            Err(e) => tracing::warn!(member = %m.name, error = %e, "soft fence skipped"),
        }
        let local = data_directory
            .filter(|_| signalled)
            .and_then(|d| LocalDataDir::of_running_primary(m, d));
        if let Some(local) = &local {
            if let Some(done) = self.stop_watching_control_file(m, local).await? {
                return Ok(done);
            }
        } else if signalled && m.hooks.extra.contains_key(STOP_CONTROLDATA) {
            // Stop and read the data directory in one hook process.
            let out = hooks::run(&self.store.name, Hook::StopControlData, m, None).await?;
            if let Some((pos, cd)) = self.controldata_of(m, &out)? {
                if cd.standby_signal {
                    return Ok(Outcome::done()
                        .with_member(&m.name)
                        .with_position(pos)
                        .with_note(stopped_note(m, pos)));
                }
            }
        } else {
            hooks::run(&self.store.name, Hook::Stop, m, None).await?;
        }
        if signalled {
            if let Some((pos, true)) = self.stopped_state(m).await? {
                return Ok(Outcome::done()
                    .with_member(&m.name)
                    .with_position(pos)
                    .with_note(stopped_note(m, pos)));
            }
        }
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

    /// The deferred fence's stop when `m`'s data directory is on this host
    /// (see control_file.rs): the `stop` hook runs, and the fence is done as
    /// soon as the control file shows the shutdown checkpoint — from then on
    /// `m` admits no session and acknowledges nothing, and `standby.signal`
    /// makes whatever starts it next start it in recovery. The hook goes on
    /// in the background until the server has exited; it keeps the member's
    /// hook lock meanwhile, so the next hook on `m` (its restart as a
    /// standby) waits for it. `None` when the hook ended without the control
    /// file showing a clean shutdown with `standby.signal`: the caller reads
    /// `pg_controldata` through the hooks, or restarts `m` in recovery.
    async fn stop_watching_control_file(
        &self,
        m: &Member,
        local: &LocalDataDir,
    ) -> Result<Option<Outcome>> {
        let (store, member) = (self.store.name.clone(), m.clone());
        let mut stop = tokio::spawn(async move {
            let r = hooks::run(&store, Hook::Stop, &member, None).await;
            if let Err(e) = &r {
                tracing::warn!(member = %member.name, error = %e, "stop hook failed");
            }
            r
        });
        let mut hook_ended = false;
        loop {
            if let Some(cf) = local.control_file().filter(ControlFile::shut_down) {
                if local.standby_signal() {
                    let pos = Position {
                        history: switchyard_controller::History(cf.timeline),
                        offset: cf.checkpoint + 1,
                    };
                    self.remember_final_position(&m.name, pos);
                    tracing::info!(member = %m.name, hook_ended, "shutdown checkpoint in pg_control");
                    return Ok(Some(
                        Outcome::done()
                            .with_member(&m.name)
                            .with_position(pos)
                            .with_note(stopped_note(m, pos)),
                    ));
                }
            }
            if hook_ended {
                return Ok(None);
            }
            tokio::select! {
                r = &mut stop => {
                    r.map_err(|e| {
                        self.err(ErrorKind::Hook, format!("hook stop did not finish: {e}"))
                            .with_member(&m.name)
                    })??;
                    hook_ended = true;
                }
                () = tokio::time::sleep(CONTROL_FILE_POLL) => {}
            }
        }
    }

    /// Make the next start of `m` a start in recovery without an upstream,
    /// whoever does it (`standby.signal` written while `m` still runs,
    /// before the stop), then the fence marker (read-only from now on).
    /// Sent as one pipeline: the statements run in order, each on its own
    /// (`ALTER SYSTEM` cannot run in a transaction block), in one round
    /// trip. `Ok` once `standby.signal` is written; a failed marker alone
    /// is only logged (the stop follows anyway).
    async fn soft_fence_and_signal(
        &self,
        c: &tokio_postgres::Client,
        m: &Member,
        data_directory: Option<&str>,
    ) -> Result<()> {
        let dir = match data_directory {
            Some(d) => d.to_string(),
            None => {
                self.scalar(c, m, "SELECT current_setting('data_directory')")
                    .await?
            }
        };
        let copy = format!(
            "COPY (SELECT 1 WHERE false) TO {}",
            sql_literal(&format!("{dir}/standby.signal"))
        );
        // `standby.signal` first: it does not stop a write, and the write
        // outage starts with the soft fence's reload, so the soft fence
        // goes last, right before the stop. Without terminating sessions:
        // the fast shutdown that follows ends every one of them itself, and
        // scanning `pg_stat_activity` to signal them first would only delay
        // that stop.
        let mut stmts = vec![copy.as_str(), "ALTER SYSTEM RESET primary_conninfo"];
        stmts.extend(MARK_FENCED);
        let mut signal = self.exec_pipelined(c, m, &stmts).await;
        let soft = signal.split_off(2);
        if let Some(Err(e)) = soft.iter().find(|r| r.is_err()) {
            tracing::warn!(member = %m.name, error = %e, "soft fence failed");
        }
        signal.into_iter().collect()
    }

    /// The final position of `m`, stopped: from the cache, else from
    /// `pg_controldata` through the `extra.controldata` hook. `None` when
    /// `m` has no such hook or was not shut down cleanly as a primary (then
    /// its end of WAL is not the latest checkpoint, and only a restart in
    /// recovery tells it).
    pub(crate) async fn final_position(&self, m: &Member) -> Result<Option<Position>> {
        Ok(self.stopped_state(m).await?.map(|s| s.0))
    }

    /// [`Self::final_position`] and whether `standby.signal` is in place
    /// (the member restarts in recovery: the deferred fence's shape).
    async fn stopped_state(&self, m: &Member) -> Result<Option<(Position, bool)>> {
        if let Some(p) = self.cached_final_position(&m.name) {
            return Ok(Some((p, true)));
        }
        Ok(self
            .read_controldata(m)
            .await?
            .map(|(pos, cd)| (pos, cd.standby_signal)))
    }

    /// `pg_controldata` of stopped `m` through its `extra.controldata` hook:
    /// the final position when it was shut down cleanly (`None` without the
    /// hook, or when it was not), and what was read. A clean shutdown with
    /// `standby.signal` is remembered as the deferred fence's.
    async fn read_controldata(&self, m: &Member) -> Result<Option<(Position, ControlData)>> {
        if !m.hooks.extra.contains_key(CONTROLDATA) {
            return Ok(None);
        }
        let out = hooks::run(&self.store.name, Hook::ControlData, m, None).await?;
        self.controldata_of(m, &out)
    }

    /// What a `controldata` (or `stop_controldata`) hook printed: see
    /// [`Self::read_controldata`].
    fn controldata_of(&self, m: &Member, out: &str) -> Result<Option<(Position, ControlData)>> {
        let Some(cd) = ControlData::parse(out) else {
            return Err(self
                .err(
                    ErrorKind::Hook,
                    "hooks.extra.controldata (or stop_controldata) printed no `Database cluster \
                     state`, `Latest checkpoint location`, `Latest checkpoint's TimeLineID` and \
                     `standby.signal: present|absent` (is it pg_controldata under LC_ALL=C?)",
                )
                .with_member(&m.name));
        };
        if cd.state != "shut down" {
            tracing::info!(member = %m.name, state = %cd.state, "not a clean shutdown: final position unknown");
            return Ok(None);
        }
        let pos = Position {
            history: switchyard_controller::History(cd.timeline),
            offset: cd.checkpoint + 1,
        };
        if cd.standby_signal {
            self.remember_final_position(&m.name, pos);
        }
        Ok(Some((pos, cd)))
    }

    /// Remember the final position of an old primary the deferred fence
    /// stopped (read now).
    fn remember_final_position(&self, member: &str, pos: Position) {
        self.final_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.to_string(), (pos, std::time::Instant::now()));
    }

    /// Durable fence evidence for every unreachable member with an
    /// `extra.controldata` hook, read in parallel: its data directory shows
    /// a clean shutdown (`pg_controldata`: `shut down`, so no postmaster
    /// runs on it) and `standby.signal` (whatever starts it brings it up in
    /// recovery). That is what makes a stopped former primary *observed*
    /// fenced, for this process and a resumed one alike. A read this
    /// controller made moments ago (its own fence, right after the stop) is
    /// reused rather than repeated; an older one is read again.
    pub(crate) async fn fence_evidence(
        &self,
        probes: &[Probe],
    ) -> std::collections::HashMap<String, Evidence> {
        let reads = probes
            .iter()
            .filter(|p| !p.reachable())
            .filter_map(|p| self.store.member(&p.name))
            .filter(|m| m.hooks.extra.contains_key(CONTROLDATA))
            .map(|m| async move {
                if let Some((pos, age)) = self.fresh_final_position(&m.name) {
                    return (m.name.clone(), Evidence::Fenced(stopped_evidence(pos, age)));
                }
                let e = match self.read_controldata(m).await {
                    Ok(Some((pos, cd))) if cd.standby_signal => {
                        Evidence::Fenced(stopped_evidence(pos, std::time::Duration::ZERO))
                    }
                    Ok(Some(_)) => Evidence::Not(
                        "shut down cleanly but without standby.signal: it would start as a primary"
                            .into(),
                    ),
                    Ok(None) => Evidence::Not(
                        "pg_controldata shows no clean shutdown: running, crashing or crashed"
                            .into(),
                    ),
                    Err(e) => Evidence::Not(format!("fence evidence unreadable: {e}")),
                };
                (m.name.clone(), e)
            });
        futures::future::join_all(reads).await.into_iter().collect()
    }

    /// A member the deferred fence stopped: cached by this controller, or
    /// (with `standby.signal`) as read through the hook.
    pub(crate) fn cached_final_position(&self, member: &str) -> Option<Position> {
        self.final_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)
            .map(|(p, _)| *p)
    }

    /// [`Self::cached_final_position`] if it was read within
    /// [`EVIDENCE_REUSE`], with its age.
    pub(crate) fn fresh_final_position(
        &self,
        member: &str,
    ) -> Option<(Position, std::time::Duration)> {
        let (p, at) = *self
            .final_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)?;
        let age = at.elapsed();
        (age <= EVIDENCE_REUSE).then_some((p, age))
    }

    /// Forget `member`'s final position: it has been started again.
    pub(crate) fn forget_final_position(&self, member: &str) {
        self.final_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(member);
    }

    /// The old primary the fence left stopped, with its final position: the
    /// member the standbys still follow, down, shut down cleanly as a
    /// primary, with `standby.signal` in place.
    pub(crate) async fn stopped_former_primary(
        &self,
        probes: &[Probe],
    ) -> Result<Option<(Member, Position)>> {
        let Some(m) = self
            .configured_upstream(probes)
            .filter(|m| probes.iter().any(|p| p.name == m.name && !p.reachable()))
            .cloned()
        else {
            return Ok(None);
        };
        Ok(match self.stopped_state(&m).await? {
            Some((pos, true)) => Some((m, pos)),
            _ => None,
        })
    }

    /// Any unreachable member in the deferred fence's shape (down, cleanly
    /// shut down as a primary, `standby.signal` in place), wherever the
    /// standbys point by now.
    async fn deferred_fenced(&self, probes: &[Probe]) -> Result<Option<(Member, Position)>> {
        for p in probes.iter().filter(|p| !p.reachable()) {
            let m = self.member(&p.name)?;
            if let Some((pos, true)) = self.stopped_state(m).await? {
                return Ok(Some((m.clone(), pos)));
            }
        }
        Ok(None)
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
                    self.remove_standby_signal(&c, m).await?;
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
        // The deferred fence's old primary, stopped with standby.signal:
        // whatever the standbys follow by now (a promotion elsewhere
        // re-points them), its own timeline decides.
        let deferred = self.deferred_fenced(&probes).await?;
        if let Some((m, pos)) = &deferred {
            self.refuse_if_promoted_elsewhere(&probes, m, pos.history.get())?;
        }
        // Else the fence stopped the old primary and never restarted it:
        // the standbys are still configured to follow it.
        let Some(m) = deferred.map(|(m, _)| m).or_else(|| {
            self.configured_upstream(&probes)
                .filter(|m| probes.iter().any(|p| p.name == m.name && !p.reachable()))
                .cloned()
        }) else {
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
        self.forget_final_position(&m.name);
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
            outcome = outcome.with_position(pos).with_note(format!(
                "{} promoted again: timeline {}",
                m.name, pos.history
            ));
        } else {
            outcome = outcome.with_note(format!("{} is primary again on its timeline", m.name));
        }
        Ok(outcome)
    }

    /// A deferred fence that never got to the stop leaves `standby.signal`
    /// in a primary that runs on: remove it, or its next restart would
    /// demote it. Only looked for where the deferred fence could have
    /// written it.
    async fn remove_standby_signal(&self, c: &tokio_postgres::Client, m: &Member) -> Result<()> {
        if !m.hooks.extra.contains_key(CONTROLDATA) {
            return Ok(());
        }
        let present = self
            .scalar(
                c,
                m,
                "SELECT (pg_stat_file('standby.signal', true) IS NOT NULL)::text",
            )
            .await?;
        if present == "true" {
            // Backends run in the data directory.
            self.exec(
                c,
                m,
                &["COPY (SELECT 1 WHERE false) TO PROGRAM 'rm -f standby.signal'"],
            )
            .await?;
        }
        Ok(())
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

/// How often the deferred fence reads a local control file while the stop
/// runs: every millisecond of it is write outage.
const CONTROL_FILE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// How long a `pg_controldata` read of a stopped member is reused as its
/// fence evidence instead of being read again: long enough to cover the
/// fence's own read and the checkpoint right after it, short enough that a
/// later observation looks again.
const EVIDENCE_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

fn stopped_evidence(pos: Position, age: std::time::Duration) -> String {
    format!(
        "stopped: its control file (pg_controldata through hooks.extra.controldata, or \
         global/pg_control read on this host{}) shows a clean shutdown at {} on timeline {} and \
         standby.signal in its data directory, so it admits no session and can only start in \
         recovery",
        if age.is_zero() {
            String::new()
        } else {
            format!(", read {} ms ago", age.as_millis())
        },
        format_lsn(pos.offset - 1),
        pos.history
    )
}

fn stopped_note(m: &Member, pos: Position) -> String {
    format!(
        "{} stopped with standby.signal (it restarts in recovery); final position {} on timeline {} \
         (just past its shutdown checkpoint, from its control file)",
        m.name,
        format_lsn(pos.offset),
        pos.history
    )
}

/// What the fence needs from `pg_controldata`'s output (`LC_ALL=C`).
#[derive(Debug, PartialEq, Eq)]
struct ControlData {
    state: String,
    checkpoint: u64,
    timeline: u64,
    /// The hook's own line after pg_controldata's: `standby.signal: present`.
    standby_signal: bool,
}

impl ControlData {
    fn parse(out: &str) -> Option<ControlData> {
        let field = |name: &str| {
            out.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        Some(ControlData {
            state: field("Database cluster state")?,
            checkpoint: parse_lsn(&field("Latest checkpoint location")?)?,
            timeline: field("Latest checkpoint's TimeLineID")?.parse().ok()?,
            standby_signal: match field("standby.signal")?.as_str() {
                "present" => true,
                "absent" => false,
                _ => return None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_controldata() {
        let out = "pg_control version number:            1300\n\
                   Database cluster state:               shut down\n\
                   Latest checkpoint location:           0/3000148\n\
                   Latest checkpoint's REDO location:    0/3000148\n\
                   Latest checkpoint's TimeLineID:       2\n\
                   standby.signal: present\n";
        assert_eq!(
            ControlData::parse(out),
            Some(ControlData {
                state: "shut down".into(),
                checkpoint: 0x3000148,
                timeline: 2,
                standby_signal: true
            })
        );
        assert_eq!(
            ControlData::parse("Database cluster state: in production\n"),
            None
        );
    }
}
