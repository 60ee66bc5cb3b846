//! Observation over SQL: one round trip per member (plus `pg_stat_replication`
//! on a primary), all members in parallel. An unreachable member is a
//! [`Probe`] with `error` set, never a failure of the whole observation.

use crate::error::PgError;
use crate::lsn::{format_lsn, parse_lsn, timeline_of_walfile};
use crate::PostgresController;
use std::collections::HashMap;
use switchyard_controller::{Lag, MemberState, ObservedState, Position, Role};
use switchyard_topology::Member;
use tokio_postgres::{Client, SimpleQueryMessage};

/// What one member said about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) error: Option<String>,
    /// The member could not be reached because of TLS (untrusted
    /// certificate, TLS not offered): it may well be up.
    pub(crate) tls_refused: bool,
    pub(crate) in_recovery: bool,
    pub(crate) timeline: u64,
    /// Primary: current WAL write position. Standby: last replayed record end.
    pub(crate) lsn: u64,
    /// Standby: last received (flushed) position.
    pub(crate) receive_lsn: Option<u64>,
    /// `default_transaction_read_only = on` set in postgresql.auto.conf: the
    /// marker Switchyard's fence leaves (and a soft fence by itself).
    pub(crate) fenced: bool,
    /// Standby: `(host, port)` its WAL receiver streams from right now
    /// (`pg_stat_wal_receiver.status = 'streaming'`); `None` when it does not
    /// stream, whatever `primary_conninfo` says.
    pub(crate) upstream: Option<(String, u16)>,
    /// Standby: `(host, port)` from `primary_conninfo` (what it will follow
    /// once its WAL receiver (re)connects).
    pub(crate) configured: Option<(String, u16)>,
    /// Standby: the WAL receiver is streaming.
    pub(crate) streaming: bool,
    pub(crate) replay_paused: bool,
    /// Standby: WAL receiver status (`streaming`, `starting`, ...), when one runs.
    pub(crate) receiver_status: Option<String>,
    /// Standby: ms since its WAL receiver last heard from the sender (the
    /// standby's own clock: `clock_timestamp() - last_msg_receipt_time`).
    pub(crate) receipt_age_ms: Option<u64>,
    /// Standby: the sender's end of WAL as last reported to it
    /// (`pg_stat_wal_receiver.latest_end_lsn`).
    pub(crate) sender_end_lsn: Option<u64>,
    /// Fencing token and execution recorded in `switchyard.fencing`
    /// (`None`: nothing recorded, or the table does not exist yet).
    pub(crate) fencing: Option<(u64, String)>,
    /// `switchyard.fencing` exists here (the stamp query found the table).
    pub(crate) fencing_table: bool,
    /// Primary: `application_name` → its walsender, for connected standbys.
    pub(crate) replicas: HashMap<String, Replica>,
    /// `data_directory`, when this role may read it (superusers and
    /// `pg_read_all_settings`): where the deferred fence writes
    /// `standby.signal`, known without a round trip of its own.
    pub(crate) data_directory: Option<String>,
}

/// One row of a primary's `pg_stat_replication`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replica {
    /// `state = 'streaming'` (not `startup`/`catchup`/`backup`).
    pub(crate) streaming: bool,
    /// `replay_lag` in ms (NULL once the standby is idle and caught up).
    pub(crate) replay_lag_ms: Option<u64>,
}

impl Probe {
    pub(crate) fn reachable(&self) -> bool {
        self.error.is_none()
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.reachable() && !self.in_recovery
    }

    pub(crate) fn is_standby(&self) -> bool {
        self.reachable() && self.in_recovery
    }

    pub(crate) fn position(&self) -> Position {
        Position {
            history: switchyard_controller::History(self.timeline),
            offset: self.lsn,
        }
    }

    /// Highest WAL position this member holds (received may exceed replayed).
    pub(crate) fn held_lsn(&self) -> u64 {
        self.lsn.max(self.receive_lsn.unwrap_or(0))
    }
}

// One statement, cheap on a cold backend too: every CLI run probes on new
// sessions, and every probe is on a switchover's critical path. So the WAL
// receiver's row is read once (the function, not a scalar subquery per
// column), and `pg_settings` — which materialises every setting, ~1 ms warm
// — is read only when the session's own `default_transaction_read_only`
// says the fence marker may be there (a reload reaches the session's value
// and the view's `reset_val` alike). `data_directory` is shown to the
// roles `pg_settings` would show it to (superusers, `pg_read_all_settings`).
const MEMBER_SQL: &str = "SELECT pg_is_in_recovery(), \
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
  pg_last_wal_replay_lsn()::text, \
  pg_last_wal_receive_lsn()::text, \
  greatest((SELECT timeline_id FROM pg_control_checkpoint())::bigint, \
    CASE WHEN pg_is_in_recovery() THEN (SELECT max(('x' || substr(name, 1, 8))::bit(32)::bigint) \
      FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$') END), \
  r.received_tli, r.status, r.sender_host, r.sender_port, \
  current_setting('primary_conninfo'), \
  CASE WHEN current_setting('default_transaction_read_only') = 'on' THEN \
    (SELECT reset_val = 'on' AND coalesce(sourcefile, '') LIKE '%postgresql.auto.conf' \
     FROM pg_settings WHERE name = 'default_transaction_read_only') ELSE false END, \
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
  greatest(0, (EXTRACT(epoch FROM clock_timestamp() - r.last_msg_receipt_time) * 1000)::bigint), \
  r.latest_end_lsn::text, \
  CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') THEN current_setting('data_directory') END \
  FROM (SELECT) AS one LEFT JOIN pg_stat_get_wal_receiver() AS r ON true";

// The functions behind `pg_stat_replication`, without the view's join of
// every backend and `pg_authid` (a third of a cold probe's cost).
const REPLICATION_SQL: &str = "SELECT a.application_name, w.state, \
  (EXTRACT(epoch FROM w.replay_lag) * 1000)::bigint \
  FROM pg_stat_get_wal_senders() AS w JOIN pg_stat_get_activity(w.pid) AS a ON true";

/// Rows of a simple query, as optional text columns.
pub(crate) async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
    let msgs = client.simple_query(sql).await.map_err(PgError::Query)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// First column of the first row.
pub(crate) async fn scalar(client: &Client, sql: &str) -> Result<Option<String>, PgError> {
    Ok(rows(client, sql)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

fn truthy(v: &Option<String>) -> bool {
    v.as_deref() == Some("t")
}

/// Host and port of a libpq conninfo string (`host=... port=...`).
pub(crate) fn conninfo_host_port(ci: &str) -> Option<(String, u16)> {
    let mut host = None;
    let mut port = 5432;
    for kv in ci.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            let v = v.trim_matches('\'');
            match k {
                "host" | "hostaddr" => host = Some(v.to_string()),
                "port" => port = v.parse().ok()?,
                _ => {}
            }
        }
    }
    host.map(|h| (h, port))
}

/// Probe one member. Observation sessions are kept per member and reused
/// (a probe is then one round trip instead of a connection set-up); a
/// cached session that fails is dropped and the probe retried on a fresh one.
pub(crate) async fn probe_member(ctl: &PostgresController, m: &Member) -> Probe {
    let fresh = || Probe {
        name: m.name.clone(),
        region: m.region.clone(),
        ..Probe::default()
    };
    if let Some(c) = ctl.cached_session(&m.name) {
        let mut p = fresh();
        if fill(&mut p, &c, &ctl.stamp_sql).await.is_ok() {
            return p;
        }
        ctl.forget_session(&m.name);
    }
    let mut p = fresh();
    let client = match ctl.connect(m).await {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            p.error = Some(e.detail());
            p.tls_refused = e.tls_failure().is_some();
            return p;
        }
    };
    match fill(&mut p, &client, &ctl.stamp_sql).await {
        Ok(()) => {
            ctl.keep_session(&m.name, client);
            p
        }
        Err(e) => {
            p = fresh();
            p.error = Some(e.detail());
            p
        }
    }
}

/// The query for `store`'s recorded fencing token and execution, sent in
/// the same pipeline as the member query. Its own statement, so that a
/// missing table (nothing recorded yet, or a store set up before the first
/// switchover) is an error of this statement alone: see [`fill`].
pub(crate) fn stamp_sql(store: &str) -> String {
    format!(
        "SELECT epoch, execution FROM switchyard.fencing WHERE store = {}",
        crate::sql_literal(store)
    )
}

async fn fill(p: &mut Probe, client: &Client, stamp_sql: &str) -> Result<(), PgError> {
    // The three queries in one pipeline (one round trip): whether the member
    // is a primary, whose walsenders count, is only known from the first.
    let (member, replication, stamp) = futures::future::join3(
        rows(client, MEMBER_SQL),
        rows(client, REPLICATION_SQL),
        rows(client, stamp_sql),
    )
    .await;
    let r = member?
        .pop()
        .ok_or_else(|| PgError::Parse("member query returned no row".into()))?;
    let lsn = |i: usize| r[i].as_deref().and_then(parse_lsn);
    let num = |i: usize| r[i].as_deref().and_then(|v| v.parse::<u64>().ok());
    p.in_recovery = truthy(&r[0]);
    if p.in_recovery {
        p.lsn = lsn(3).unwrap_or(0);
        p.receive_lsn = lsn(4);
        // The timeline of the newest WAL this standby holds. The checkpoint
        // (restartpoint) timeline lags behind after a timeline switch, so
        // the newest WAL segment file's timeline and the receiver's count too.
        p.timeline = num(6).unwrap_or(0).max(num(5).unwrap_or(0));
        p.receiver_status = r[7].clone();
        p.streaming = r[7].as_deref() == Some("streaming");
        p.configured = r[10].as_deref().and_then(conninfo_host_port);
        // Only a streaming receiver names its upstream: the configured one
        // is what it would follow, not what it follows.
        p.upstream = match (&r[8], num(9)) {
            (Some(h), Some(port)) if p.streaming => Some((h.clone(), port as u16)),
            _ => None,
        };
        p.replay_paused = truthy(&r[12]);
        p.receipt_age_ms = num(13);
        p.sender_end_lsn = lsn(14);
    } else {
        p.lsn = lsn(1).ok_or_else(|| PgError::Parse("no pg_current_wal_lsn".into()))?;
        p.timeline = r[2]
            .as_deref()
            .and_then(timeline_of_walfile)
            .ok_or_else(|| PgError::Parse("cannot read timeline".into()))?;
        for row in replication? {
            if let Some(app) = &row[0] {
                p.replicas.insert(
                    app.clone(),
                    Replica {
                        streaming: row[1].as_deref() == Some("streaming"),
                        replay_lag_ms: row[2].as_deref().and_then(|v| v.parse::<u64>().ok()),
                    },
                );
            }
        }
    }
    p.fenced = truthy(&r[11]);
    p.data_directory = r[15].clone();
    p.fencing_table = stamp.is_ok();
    p.fencing = match stamp {
        Ok(rows) => rows.into_iter().next().and_then(|row| {
            let token = row[0].as_deref()?.parse::<u64>().ok()?;
            Some((token, row[1].clone().unwrap_or_default()))
        }),
        // No table: nothing was ever recorded on this store (the first
        // stamp creates it). Anything else (a privilege missing, say) leaves
        // the record unreadable, and the probe fails rather than report
        // "nothing recorded" to the fencing rule.
        Err(PgError::Query(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    Ok(())
}

/// What a stopped member's data directory says about its fence
/// ([`PostgresController::fence_evidence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// Cleanly shut down with `standby.signal`: it cannot acknowledge a
    /// write, and whatever starts it brings it up in recovery. What was read.
    Fenced(String),
    /// Read, but not a fence (still running, crashed, no `standby.signal`,
    /// or the hook failed): why.
    Not(String),
}

/// The primary operations act on: among reachable primaries the one on the
/// highest timeline (a returned old primary stays on its old timeline).
pub(crate) fn current_primary(probes: &[Probe]) -> Option<&Probe> {
    probes
        .iter()
        .filter(|p| p.is_primary())
        .max_by_key(|p| (p.timeline, p.lsn))
}

impl PostgresController {
    /// Probe every member in parallel. A member this controller's deferred
    /// fence saw shut down a moment ago (its control file, within
    /// `EVIDENCE_REUSE`; forgotten once a hook starts it again) is reported
    /// unreachable without a connection attempt: its postmaster, still
    /// exiting, would fork a backend only to refuse the session, at the
    /// moment of the switchover that is shortest of CPU.
    pub(crate) async fn probe_all(&self) -> Vec<Probe> {
        let futs = self.store.members.iter().map(|m| async move {
            if let Some((_, age)) = self.fresh_final_position(&m.name) {
                return Probe {
                    name: m.name.clone(),
                    region: m.region.clone(),
                    error: Some(format!(
                        "stopped: its control file showed a clean shutdown {} ms ago",
                        age.as_millis()
                    )),
                    ..Probe::default()
                };
            }
            probe_member(self, m).await
        });
        let probes = futures::future::join_all(futs).await;
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), probes.clone()));
        probes
    }

    /// The last [`Self::probe_all`] if it is younger than
    /// [`crate::PROBE_REUSE`] and no mutating operation ran since, else a
    /// new one.
    pub(crate) async fn recent_or_probe(&self) -> Vec<Probe> {
        if let Some((at, probes)) = &*self.recent.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() <= crate::PROBE_REUSE {
                return probes.clone();
            }
        }
        self.probe_all().await
    }

    /// Drop the reusable snapshot: a mutating operation is under way or done.
    pub(crate) fn forget_probes(&self) {
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Member name whose `host:port` matches.
    pub(crate) fn member_at(&self, host: &str, port: u16) -> Option<&Member> {
        let norm = |h: &str| if h == "localhost" { "127.0.0.1" } else { h }.to_string();
        self.store
            .members
            .iter()
            .find(|m| m.port() == Some(port) && m.hostname().map(norm) == Some(norm(host)))
    }

    /// The member a standby's WAL receiver streams from right now.
    pub(crate) fn streaming_from(&self, p: &Probe) -> Option<&Member> {
        p.upstream
            .as_ref()
            .and_then(|(h, port)| self.member_at(h, *port))
    }

    /// Whether standby `p` streams from `primary`: its own WAL receiver
    /// says so (status `streaming`, sender host and port those of the
    /// primary), or the primary's `pg_stat_replication` lists it streaming.
    pub(crate) fn streams_from(&self, p: &Probe, primary: &Probe) -> bool {
        p.is_standby()
            && (self
                .streaming_from(p)
                .is_some_and(|m| m.name == primary.name)
                || primary.replicas.get(&p.name).is_some_and(|r| r.streaming))
    }

    /// Lag of a standby behind `primary`, from live state only. A standby
    /// streaming from the primary holds only WAL it received from it, so
    /// being ahead of the primary's position means the primary was probed a
    /// moment earlier (the probes run in parallel): 0. One that does not
    /// stream is compared only on the primary's timeline and only while
    /// behind it; ahead of the primary, or on another timeline, it may hold
    /// WAL the primary does not (diverged): unknown, never 0. Time is the
    /// primary's `replay_lag` for it, or 0 when no byte is missing.
    pub(crate) fn lag_of(&self, probe: &Probe, primary: &Probe) -> Lag {
        let bytes = if probe.lsn == 0 {
            None
        } else if self.streams_from(probe, primary) {
            Some(primary.lsn.saturating_sub(probe.lsn))
        } else if probe.timeline == primary.timeline {
            primary.lsn.checked_sub(probe.lsn)
        } else {
            None
        };
        let millis = match bytes {
            Some(0) => Some(0),
            _ => primary
                .replicas
                .get(&probe.name)
                .and_then(|r| r.replay_lag_ms),
        };
        Lag { bytes, millis }
    }

    /// The observed state from `probes` alone (no member's durable fence
    /// evidence read): what operations use to refresh the last-known state.
    pub(crate) fn to_state(&self, probes: &[Probe]) -> ObservedState {
        self.to_state_with(probes, &HashMap::new())
    }

    /// The observed state, with `stopped`: for unreachable members, the
    /// durable fence evidence read for them ([`Self::fence_evidence`]).
    pub(crate) fn to_state_with(
        &self,
        probes: &[Probe],
        stopped: &HashMap<String, Evidence>,
    ) -> ObservedState {
        let primary = current_primary(probes);
        let mut members = Vec::with_capacity(probes.len());
        for p in probes {
            if !p.reachable() {
                let mut m = MemberState::unreachable(
                    &p.name,
                    &p.region,
                    p.error.clone().unwrap_or_default(),
                );
                match stopped.get(&p.name) {
                    Some(Evidence::Fenced(why)) => {
                        m.fenced = true;
                        m.fence_evidence = Some(why.clone());
                    }
                    Some(Evidence::Not(why)) => {
                        m.detail = Some(format!("{}; {why}", p.error.as_deref().unwrap_or("")));
                    }
                    None => {}
                }
                members.push(m);
                continue;
            }
            let mut detail = Vec::new();
            let (role, lag, following, replicating) = if p.is_primary() {
                (Role::Primary, None, None, None)
            } else {
                let lag = primary.map(|cp| self.lag_of(p, cp));
                // Live evidence only: the member's WAL receiver, else the
                // primary's walsender for it.
                let following = self.streaming_from(p).map(|m| m.name.clone()).or_else(|| {
                    primary
                        .filter(|cp| self.streams_from(p, cp))
                        .map(|cp| cp.name.clone())
                });
                // With no primary reachable there is nothing to stream from:
                // not a fault of this member, and not evidence either way.
                let replicating = primary.map(|cp| self.streams_from(p, cp));
                if !p.streaming {
                    let configured = p
                        .configured
                        .as_ref()
                        .and_then(|(h, port)| self.member_at(h, *port))
                        .map_or("no upstream".to_string(), |m| {
                            format!("configured for {}", m.name)
                        });
                    detail.push(format!(
                        "not streaming (WAL receiver {}; {configured})",
                        p.receiver_status.as_deref().unwrap_or("not running")
                    ));
                }
                if let (Some(cp), Some(l)) = (primary, lag) {
                    if l.bytes.is_none() && p.lsn > cp.lsn {
                        detail.push(format!(
                            "holds WAL to {} on timeline {}, past the primary's {}: diverged",
                            format_lsn(p.lsn),
                            p.timeline,
                            format_lsn(cp.lsn)
                        ));
                    }
                }
                (Role::Secondary, lag, following, replicating)
            };
            if p.is_primary() && primary.is_some_and(|cp| cp.name != p.name) {
                detail.push(format!(
                    "also a primary, on old timeline {}: stale (split brain); the next execution fences and rejoins it",
                    p.timeline
                ));
            }
            if p.replay_paused {
                detail.push("replay paused".to_string());
            }
            members.push(MemberState {
                name: p.name.clone(),
                region: p.region.clone(),
                role,
                reachable: true,
                position: Some(p.position()),
                lag,
                following,
                replicating,
                fenced: p.fenced,
                fence_evidence: None,
                priority: None,
                votes: None,
                detail: (!detail.is_empty()).then(|| detail.join("; ")),
                awaits_rejoin: false,
            });
        }
        if let Some(cp) = primary {
            self.remember(cp, probes);
        }
        let term = primary
            .map(|p| p.timeline)
            .or_else(|| probes.iter().map(|p| p.timeline).max())
            .map(switchyard_controller::Term);
        ObservedState {
            store: self.store.name.clone(),
            kind: self.store.kind,
            term,
            config_version: None,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_parse() {
        assert_eq!(
            conninfo_host_port("host=127.0.0.1 port=5433 user=postgres application_name=x"),
            Some(("127.0.0.1".into(), 5433))
        );
        assert_eq!(
            conninfo_host_port("user=postgres host='db1'"),
            Some(("db1".into(), 5432))
        );
        assert_eq!(conninfo_host_port(""), None);
    }
}
