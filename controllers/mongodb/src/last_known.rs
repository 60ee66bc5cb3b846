//! The evidence a forced failover judges a candidate by once no primary is
//! reachable: every observation that saw a primary records its last applied
//! wall time and each member's lag behind it, in memory and — when the
//! controller was built with a state directory — in
//! `<state dir>/last-known/<store>.json`, so a fresh process has it too.
//! `max_lag_ms` is then enforced the way the PostgreSQL controller enforces
//! its bounds: beyond it, or unknown under it, a forced promotion needs
//! `accept_data_loss`.

use crate::observe::Snapshot;
use crate::MongoController;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchyard_controller::last_known::age_text;
use switchyard_controller::{DataLossEstimate, ObservedState, Role};

/// One observation with a primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Evidence {
    pub(crate) primary: String,
    /// The primary's `lastAppliedWallTime` (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) primary_wall_ms: Option<i64>,
    /// Per data-bearing member: its applied wall time and lag (ms).
    pub(crate) members: BTreeMap<String, MemberEvidence>,
}

/// A member as seen in that observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MemberEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wall_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lag_ms: Option<u64>,
}

/// A forced promotion's verdict for one candidate.
pub(crate) struct LagVerdict {
    pub(crate) within: bool,
    pub(crate) estimate: DataLossEstimate,
}

impl MongoController {
    /// Record an observation that saw a primary.
    pub(crate) fn remember(&self, snap: &Snapshot, state: &ObservedState) {
        let Some(p) = state.primary() else { return };
        let wall = |name: &str| {
            let i = self.cfg.members.iter().position(|m| m.name == name)?;
            snap.views[i].as_ref().ok()?.applied_wall_ms
        };
        let members = state
            .members
            .iter()
            .filter(|m| m.reachable && m.role != Role::Arbiter)
            .map(|m| {
                (
                    m.name.clone(),
                    MemberEvidence {
                        wall_ms: wall(&m.name),
                        lag_ms: m.lag.and_then(|l| l.millis),
                    },
                )
            })
            .collect();
        self.last_known.record(Evidence {
            primary: p.name.clone(),
            primary_wall_ms: wall(&p.name),
            members,
        });
    }

    /// Judge promoting `cand` with no primary reachable: the loss is at
    /// least what a reachable member (or the primary when last seen)
    /// applied beyond it; the bound is judged by its lag when the primary
    /// was last seen, raised to that.
    pub(crate) fn forced_lag_verdict(&self, snap: &Snapshot, cand: &str) -> LagVerdict {
        let wall_now = |name: &str| {
            let i = self.cfg.members.iter().position(|m| m.name == name)?;
            snap.views[i].as_ref().ok()?.applied_wall_ms
        };
        let cand_wall = wall_now(cand);
        let best_other = self
            .cfg
            .members
            .iter()
            .filter(|m| m.name != cand)
            .filter_map(|m| wall_now(&m.name))
            .max();
        let gap = |ahead: Option<i64>| match (ahead, cand_wall) {
            (Some(a), Some(c)) => (a - c).max(0) as u64,
            _ => 0,
        };
        let known_gap = gap(best_other);
        let bound = self.cfg.max_lag_ms;
        let bound_text = bound.map_or("none".into(), |b| format!("{b} ms"));
        let ev = self.last_known.newest().filter(|r| r.value.primary != cand);
        let then = ev
            .as_ref()
            .and_then(|r| r.value.members.get(cand).map(|m| (r, m)));
        match then {
            Some((rec, m)) => {
                let at_least = known_gap.max(gap(rec.value.primary_wall_ms));
                let judged = m.lag_ms.map(|l| l.max(at_least));
                let within = bound.is_none_or(|b| judged.is_some_and(|j| j <= b));
                LagVerdict {
                    within,
                    estimate: DataLossEstimate {
                        millis: judged.or(Some(at_least)),
                        note: format!(
                            "≥ {at_least} ms of writes lost (upper bound unknown), judged as {} \
                             behind (bound: {bound_text}) on evidence {} old: {cand} applied up to \
                             wall time {} ms now; {} was last seen with wall time {} ms (last-known \
                             state{}), when {cand} was {} behind; writes after that are not covered",
                            judged.map_or("? ms".into(), |j| format!("{j} ms")),
                            age_text(rec.age_ms()),
                            cand_wall.map_or("?".into(), |w| w.to_string()),
                            rec.value.primary,
                            rec.value
                                .primary_wall_ms
                                .map_or("?".into(), |w| w.to_string()),
                            self.last_known
                                .place()
                                .path()
                                .map_or(String::new(), |p| format!(" in {}", p.display())),
                            m.lag_ms.map_or("? ms".into(), |l| format!("{l} ms")),
                        ),
                        ..DataLossEstimate::default()
                    },
                }
            }
            None => LagVerdict {
                within: bound.is_none(),
                estimate: DataLossEstimate {
                    millis: (known_gap > 0).then_some(known_gap),
                    note: format!(
                        "≥ {known_gap} ms of writes lost (upper bound unknown): lag of {cand} \
                         unknown, never observed while a primary was reachable (no last-known \
                         state{}); bound: {bound_text}",
                        self.last_known.place().path().map_or(
                            " kept: no state directory".into(),
                            |p| format!(" in {}", p.display())
                        )
                    ),
                    ..DataLossEstimate::default()
                },
            },
        }
    }
}
