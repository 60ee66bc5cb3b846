//! The evidence a forced failover judges a candidate by once the primary is
//! gone: what every observation with a reachable primary saw (the primary's
//! end of WAL and timeline; per standby its replay and received positions,
//! whom its WAL receiver streamed from and how long ago it last heard from
//! the sender, its lag), kept in memory and — when the controller was built
//! with a state directory — in `<state dir>/last-known/<store>.json`, so a
//! fresh process has it too (see `switchyard_controller::last_known`).

use crate::lsn::format_lsn;
use crate::observe::Probe;
use crate::readiness::lag_text;
use crate::PostgresController;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchyard_controller::last_known::age_text;
use switchyard_controller::Lag;

/// One observation of the store with its primary reachable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Evidence {
    /// The primary (the one on the newest timeline).
    pub(crate) primary: String,
    /// Its timeline.
    pub(crate) timeline: u64,
    /// Its end of WAL (`pg_current_wal_lsn`).
    pub(crate) primary_lsn: u64,
    /// Every reachable standby.
    pub(crate) standbys: BTreeMap<String, StandbyEvidence>,
}

/// A standby as seen in that observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StandbyEvidence {
    pub(crate) timeline: u64,
    pub(crate) replay_lsn: u64,
    /// `pg_last_wal_receive_lsn()`: WAL received and flushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) received_lsn: Option<u64>,
    /// Member its WAL receiver streamed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) streaming_from: Option<String>,
    /// ms between its WAL receiver's last message from the sender and the
    /// observation (the standby's own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) receipt_age_ms: Option<u64>,
    /// The sender's end of WAL as that message reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sender_end_lsn: Option<u64>,
    /// Lag behind the primary at the observation.
    pub(crate) lag: Lag,
}

/// What the evidence says about promoting one candidate now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LossRange {
    /// WAL certainly lost: bytes the primary (when last seen) or another
    /// reachable member holds and the candidate does not.
    pub(crate) at_least: u64,
    /// The candidate's lag when the primary was last seen, raised to
    /// `at_least`: what the lag bound is judged by.
    pub(crate) judged: Lag,
    /// Age of the evidence in ms.
    pub(crate) age_ms: u64,
    /// The basis, for people.
    pub(crate) basis: String,
}

impl PostgresController {
    /// Record this observation (primary `cp` reachable) as the last-known state.
    pub(crate) fn remember(&self, cp: &Probe, probes: &[Probe]) {
        let standbys = probes
            .iter()
            .filter(|p| p.is_standby())
            .map(|p| {
                (
                    p.name.clone(),
                    StandbyEvidence {
                        timeline: p.timeline,
                        replay_lsn: p.lsn,
                        received_lsn: p.receive_lsn,
                        streaming_from: self.streaming_from(p).map(|m| m.name.clone()),
                        receipt_age_ms: p.receipt_age_ms,
                        sender_end_lsn: p.sender_end_lsn,
                        lag: self.lag_of(p, cp),
                    },
                )
            })
            .collect();
        self.last_known.record(Evidence {
            primary: cp.name.clone(),
            timeline: cp.timeline,
            primary_lsn: cp.lsn,
            standbys,
        });
    }

    /// The loss range of promoting `c` now, when there is evidence of it
    /// from a time its primary (another member) was reachable. `known_gap`:
    /// bytes another reachable member holds beyond the candidate.
    pub(crate) fn loss_range(&self, c: &Probe, known_gap: u64) -> Option<LossRange> {
        let rec = self.last_known.newest()?;
        let ev = &rec.value;
        if ev.primary == c.name {
            return None;
        }
        let then = ev.standbys.get(&c.name)?;
        let held = c.held_lsn();
        // The primary held at least what it was seen at, and what its
        // walsender told the candidate it had.
        let primary_had = ev.primary_lsn.max(then.sender_end_lsn.unwrap_or(0));
        let behind_last_seen = primary_had.saturating_sub(held);
        let at_least = known_gap.max(behind_last_seen);
        let judged = Lag {
            bytes: then.lag.bytes.map(|b| b.max(at_least)),
            millis: then.lag.millis,
        };
        let age_ms = rec.age_ms();
        let received = match (then.received_lsn, then.receipt_age_ms) {
            (Some(r), Some(a)) => format!(
                "received up to {} with its last message from {} {} before{}",
                format_lsn(r),
                then.streaming_from.as_deref().unwrap_or("its upstream"),
                age_text(a),
                then.sender_end_lsn.map_or(String::new(), |e| format!(
                    " (sender's end of WAL then: {})",
                    format_lsn(e)
                ))
            ),
            (Some(r), None) => format!(
                "received up to {} (WAL receiver not running)",
                format_lsn(r)
            ),
            (None, _) => "received position unknown".to_string(),
        };
        let basis = format!(
            "{c} holds WAL up to {held_now} now; {primary} was last seen at {plsn} on timeline \
             {tl} {age} ago (last-known state{file}), when {c} had {received} and was {lag} \
             behind; writes {primary} accepted after it was last seen are not covered",
            c = c.name,
            held_now = format_lsn(held),
            primary = ev.primary,
            plsn = format_lsn(ev.primary_lsn),
            tl = ev.timeline,
            age = age_text(age_ms),
            file = self
                .last_known
                .place()
                .path()
                .map_or(String::new(), |p| format!(" in {}", p.display())),
            lag = lag_text(&then.lag),
        );
        Some(LossRange {
            at_least,
            judged,
            age_ms,
            basis,
        })
    }
}
