//! Can a region take over? Changes nothing. The lag bound is the store's
//! `max_lag_bytes` / `max_lag_ms`; an unknown lag never satisfies a bound.

use crate::observe::{current_primary, Probe};
use crate::PostgresController;
use switchyard_controller::last_known::age_text;
use switchyard_controller::{DataLossEstimate, ErrorKind, Lag, Outcome, PromoteMode, Result};

/// A forced-failover candidate and what promoting it may lose.
pub(crate) struct ForcedVerdict {
    pub(crate) candidate: String,
    pub(crate) within_bound: bool,
    pub(crate) estimate: DataLossEstimate,
}

impl PostgresController {
    pub(crate) async fn check_readiness(
        &self,
        probes: Vec<Probe>,
        region: &str,
        chosen: Option<&str>,
        mode: PromoteMode,
    ) -> Result<Outcome> {
        let _ = self.to_state(&probes); // refresh the last-known state
        if let Some(p) = current_primary(&probes) {
            self.refuse_other_primary(p, region, chosen)?;
            if p.region == region {
                return Ok(Outcome::already_done()
                    .with_member(&p.name)
                    .with_position(p.position())
                    .with_note(format!("{} in {region} is already primary", p.name)));
            }
        }
        match mode {
            PromoteMode::Planned => self.planned_readiness(&probes, region, chosen),
            PromoteMode::Forced { accept_data_loss } => {
                let v = self.forced_verdict(&probes, region, chosen)?;
                if !v.within_bound && !accept_data_loss {
                    return Err(self
                        .err(
                            ErrorKind::LagTooHigh,
                            format!(
                                "forced promotion of {} refused: {}; accept data loss to override",
                                v.candidate, v.estimate.note
                            ),
                        )
                        .with_member(&v.candidate));
                }
                let mut o = Outcome::done().with_member(&v.candidate);
                o.data_loss = Some(v.estimate);
                Ok(o)
            }
        }
    }

    fn planned_readiness(
        &self,
        probes: &[Probe],
        region: &str,
        chosen: Option<&str>,
    ) -> Result<Outcome> {
        let primary = current_primary(probes);
        let fenced = probes.iter().find(|p| p.is_standby() && p.fenced);
        let reference = match (primary, fenced) {
            (Some(p), _) => p,
            (None, Some(f)) => f,
            (None, None) => {
                return Err(self.err(
                    ErrorKind::NotReady,
                    "no reachable primary and no fenced former primary: a planned switchover \
                     cannot prove zero loss; use a forced failover",
                ))
            }
        };
        if let Some(p) = primary {
            let m = self.member(&p.name)?;
            if m.hooks.stop.is_none() || m.hooks.start_as_standby.is_none() {
                return Err(self
                    .err(
                        ErrorKind::Config,
                        "fencing needs hooks.stop and hooks.start_as_standby on the primary",
                    )
                    .with_member(&p.name));
            }
        }
        let c = self.unfenced_standby(probes, region, chosen)?;
        // The operator's choice must be following the primary now: one
        // that streams from elsewhere (a cascade, a former primary) or not
        // at all has no live lag to judge it by.
        if let (Some(p), Some(_)) = (primary, chosen) {
            if !self.streams_from(c, p) {
                let from = self
                    .streaming_from(c)
                    .map_or("nothing".to_string(), |m| m.name.clone());
                return Err(self
                    .err(
                        ErrorKind::NotReady,
                        format!(
                            "the chosen candidate {} streams from {from}, not from the primary {}",
                            c.name, p.name
                        ),
                    )
                    .with_member(&c.name));
            }
        }
        let lag = self.lag_of(c, reference);
        if !lag.within(self.store.max_lag_bytes, self.store.max_lag_ms) {
            return Err(self
                .err(
                    ErrorKind::LagTooHigh,
                    format!(
                        "{} lags {} behind {} (bound: {})",
                        c.name,
                        lag_text(&lag),
                        reference.name,
                        self.bound_text()
                    ),
                )
                .with_member(&c.name));
        }
        let mut o = Outcome::done()
            .with_member(&c.name)
            .with_position(c.position())
            .with_note(format!(
                "{} can take over from {}: lag {}",
                c.name,
                reference.name,
                lag_text(&lag)
            ));
        if c.replay_paused {
            o = o.with_note(format!("{}: WAL replay is paused", c.name));
        }
        Ok(o)
    }

    /// Judge the forced-failover candidate of `region`. Refuses (error) when
    /// a primary is still reachable elsewhere.
    pub(crate) fn forced_verdict(
        &self,
        probes: &[Probe],
        region: &str,
        chosen: Option<&str>,
    ) -> Result<ForcedVerdict> {
        if let Some(p) = current_primary(probes) {
            if p.region != region {
                return Err(self
                    .err(
                        ErrorKind::Refused,
                        format!(
                            "{} is reachable and primary: a forced failover would leave two \
                             primaries; use a planned switchover",
                            p.name
                        ),
                    )
                    .with_member(&p.name));
            }
        }
        let c = self.candidate(
            probes,
            region,
            chosen,
            &format!("no reachable standby in region {region}"),
        )?;
        // Members that hold more WAL than the candidate: that much is lost for sure.
        let best_other = probes
            .iter()
            .filter(|p| p.reachable() && p.name != c.name)
            .map(|p| p.held_lsn())
            .max()
            .unwrap_or(0);
        // A lower bound, not a lag: a member behind the candidate adds nothing.
        let known_gap = best_other.saturating_sub(c.held_lsn());
        let bounded = self.store.max_lag_bytes.is_some() || self.store.max_lag_ms.is_some();
        let (within, estimate) = match self.loss_range(c, known_gap) {
            Some(r) => {
                let within = r
                    .judged
                    .within(self.store.max_lag_bytes, self.store.max_lag_ms)
                    && self.store.max_lag_bytes.is_none_or(|b| r.at_least <= b);
                (
                    within,
                    DataLossEstimate {
                        bytes: r.judged.bytes.or(Some(r.at_least)),
                        millis: r.judged.millis,
                        writes: None,
                        note: format!(
                            "≥ {} bytes lost (upper bound unknown), judged as {} behind \
                             (bound: {}) on evidence {} old: {}",
                            r.at_least,
                            lag_text(&r.judged),
                            self.bound_text(),
                            age_text(r.age_ms),
                            r.basis
                        ),
                    },
                )
            }
            None => (
                !bounded && known_gap == 0,
                DataLossEstimate {
                    bytes: (known_gap > 0).then_some(known_gap),
                    millis: None,
                    writes: None,
                    note: format!(
                        "≥ {known_gap} bytes lost (upper bound unknown): lag of {} unknown, \
                         never observed while the primary was reachable (no last-known state{}); \
                         {known_gap} bytes behind the most advanced reachable member",
                        c.name,
                        self.last_known.place().path().map_or(
                            " kept: no state directory".to_string(),
                            |p| format!(" in {}", p.display())
                        )
                    ),
                },
            ),
        };
        Ok(ForcedVerdict {
            candidate: c.name.clone(),
            within_bound: within,
            estimate,
        })
    }

    fn bound_text(&self) -> String {
        match (self.store.max_lag_bytes, self.store.max_lag_ms) {
            (None, None) => "none".into(),
            (b, ms) => {
                let mut v = Vec::new();
                if let Some(b) = b {
                    v.push(format!("{b} bytes"));
                }
                if let Some(ms) = ms {
                    v.push(format!("{ms} ms"));
                }
                v.join(", ")
            }
        }
    }
}

pub(crate) fn lag_text(l: &Lag) -> String {
    let b = l
        .bytes
        .map_or("? bytes".to_string(), |b| format!("{b} bytes"));
    match l.millis {
        Some(ms) => format!("{b} / {ms} ms"),
        None => b,
    }
}
