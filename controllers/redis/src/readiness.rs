//! Can a region take over, and which member would.

use crate::observe::{Probe, Snapshot};
use crate::RedisController;
use switchyard_controller::last_known::age_text;
use switchyard_controller::{DataLossEstimate, Error, ErrorKind, Outcome, PromoteMode, Result};

impl RedisController {
    /// The best planned candidate in `region`: a reachable, electable
    /// replica streaming from `master` (link up), holding the most.
    pub(crate) fn planned_candidate<'a>(
        &self,
        snap: &'a Snapshot,
        master: &Probe,
        region: &str,
        chosen: Option<&str>,
    ) -> Option<&'a Probe> {
        snap.members
            .iter()
            .filter(|p| p.spec.region == region && p.spec.electable())
            .filter(|p| chosen.is_none_or(|c| c == p.spec.name))
            .filter(|p| p.is_replica() && p.follows(&master.spec) && p.link_up)
            .max_by_key(|p| p.offset)
    }

    /// The best forced candidate in `region`: a reachable, electable
    /// replica with the highest offset, whatever it follows.
    pub(crate) fn forced_candidate<'a>(
        &self,
        snap: &'a Snapshot,
        region: &str,
        chosen: Option<&str>,
    ) -> Option<&'a Probe> {
        snap.members
            .iter()
            .filter(|p| p.spec.region == region && p.spec.electable() && p.is_replica())
            .filter(|p| chosen.is_none_or(|c| c == p.spec.name))
            .max_by_key(|p| p.offset)
    }

    /// Why no forced candidate is there.
    pub(crate) fn no_forced_candidate(&self, region: &str, chosen: Option<&str>) -> Error {
        match chosen {
            Some(c) => self
                .err(
                    ErrorKind::NotReady,
                    format!("the chosen candidate {c} is not a reachable replica in {region}"),
                )
                .with_member(c),
            None => self.err(
                ErrorKind::NotReady,
                format!("no reachable electable replica in {region}"),
            ),
        }
    }

    /// Refuses a master of `region` that is not the operator's choice.
    pub(crate) fn refuse_other_master(
        &self,
        m: &Probe,
        region: &str,
        chosen: Option<&str>,
    ) -> Result<()> {
        match chosen {
            Some(c) if m.spec.region == region && m.spec.name != c => Err(self
                .err(
                    ErrorKind::Refused,
                    switchyard_controller::operation::other_primary_in_target(
                        &m.spec.name,
                        region,
                        c,
                    ),
                )
                .with_member(&m.spec.name)),
            _ => Ok(()),
        }
    }

    /// The master every check needs, or why there is none.
    pub(crate) fn require_master<'a>(&self, snap: &'a Snapshot) -> Result<&'a Probe> {
        snap.master().ok_or_else(|| {
            let masters: Vec<&str> = snap.masters().map(|p| p.spec.name.as_str()).collect();
            let sentinel = if snap.sentinel_managed {
                format!(
                    "; the Sentinels name {}",
                    snap.sentinel_master()
                        .map(|m| m.name.as_str())
                        .unwrap_or("no agreed master")
                )
            } else {
                String::new()
            };
            self.err(
                ErrorKind::NotReady,
                format!(
                    "no master observed that every check agrees on (ROLE master: {}{sentinel})",
                    if masters.is_empty() {
                        "none".to_string()
                    } else {
                        masters.join(", ")
                    }
                ),
            )
        })
    }

    fn lag_error(&self, p: &Probe, what: String) -> Error {
        self.err(ErrorKind::LagTooHigh, what)
            .with_member(&p.spec.name)
    }

    /// The lag guard of a forced promotion: the last lag observed while the
    /// master was up, and the estimate of what promoting `p` may lose.
    pub(crate) fn forced_loss(&self, p: &Probe, accept: bool) -> Result<DataLossEstimate> {
        let evidence = self.last_known.newest();
        let cached = evidence.as_ref().and_then(|r| {
            r.value
                .lag_bytes
                .get(&p.spec.name)
                .map(|b| (*b, r.age_ms(), r.value.master.clone()))
        });
        let estimate = match &cached {
            Some((bytes, age_ms, master)) => DataLossEstimate {
                bytes: Some(*bytes),
                millis: None,
                writes: None,
                note: format!(
                    "{} was {bytes} bytes of replication stream behind {master} at the last \
                     observation with the master up, {} before the promotion; writes \
                     acknowledged after that without WAIT may be lost too",
                    p.spec.name,
                    age_text(*age_ms)
                ),
            },
            None => DataLossEstimate {
                bytes: None,
                millis: None,
                writes: None,
                note: format!(
                    "unknown: {} was never observed beside a reachable master{}",
                    p.spec.name,
                    if self.last_known.place().path().is_some() {
                        ""
                    } else {
                        " by this process (no state directory)"
                    }
                ),
            },
        };
        let cached = cached.map(|(b, _, _)| (b, ()));
        if accept {
            return Ok(estimate);
        }
        if let Some(bound) = self.cfg.max_lag_bytes {
            match cached {
                Some((bytes, _)) if bytes <= bound => {}
                Some((bytes, _)) => {
                    return Err(self.lag_error(
                        p,
                        format!(
                            "was {bytes} bytes behind at the last observation, above max_lag_bytes {bound}; accept data loss to promote it"
                        ),
                    ))
                }
                None => {
                    return Err(self.lag_error(
                        p,
                        format!("lag unknown (never observed beside a reachable master), max_lag_bytes {bound}; accept data loss to promote it"),
                    ))
                }
            }
        }
        Ok(estimate)
    }

    pub(crate) fn check_readiness(
        &self,
        snap: &Snapshot,
        region: &str,
        chosen: Option<&str>,
        mode: PromoteMode,
    ) -> Result<Outcome> {
        if let Some(m) = snap.master() {
            self.refuse_other_master(m, region, chosen)?;
            if m.spec.region == region {
                return Ok(Outcome::already_done()
                    .with_member(&m.spec.name)
                    .with_note(format!("{} in {region} is already master", m.spec.name)));
            }
        }
        match mode {
            PromoteMode::Planned => {
                let master = self.require_master(snap)?;
                if snap.sentinel_managed {
                    let s = snap
                        .sentinels
                        .iter()
                        .find(|s| s.reachable() && s.ckquorum.is_ok())
                        .ok_or_else(|| {
                            self.err(
                                ErrorKind::NotReady,
                                "no reachable Sentinel reports CKQUORUM OK",
                            )
                        })?;
                    if snap.sentinels.iter().any(|s| s.failover_in_progress()) {
                        return Err(self
                            .err(ErrorKind::NotReady, "a Sentinel failover is in progress")
                            .with_member(&s.spec.name));
                    }
                }
                let c = self
                    .planned_candidate(snap, master, region, chosen)
                    .ok_or_else(|| {
                        self.err(
                            ErrorKind::NotReady,
                            format!(
                                "{} in {region} streams from the master {}",
                                match chosen {
                                    Some(c) =>
                                        format!("the chosen candidate {c} is not a replica that"),
                                    None => "no electable replica".to_string(),
                                },
                                master.spec.name
                            ),
                        )
                    })?;
                let lag = snap.lag_bytes(c, master);
                if let Some(bound) = self.cfg.max_lag_bytes {
                    match lag {
                        Some(b) if b <= bound => {}
                        Some(b) => {
                            return Err(self.lag_error(
                                c,
                                format!("{b} bytes behind the master, above max_lag_bytes {bound}"),
                            ))
                        }
                        None => {
                            return Err(self.lag_error(c, "lag unknown".to_string()));
                        }
                    }
                }
                Ok(Outcome::done().with_member(&c.spec.name).with_note(format!(
                    "{} is {} bytes behind {}",
                    c.spec.name,
                    lag.map_or("?".into(), |b| b.to_string()),
                    master.spec.name
                )))
            }
            PromoteMode::Forced { accept_data_loss } => {
                let c = self
                    .forced_candidate(snap, region, chosen)
                    .ok_or_else(|| self.no_forced_candidate(region, chosen))?;
                let loss = self.forced_loss(c, accept_data_loss)?;
                Ok(Outcome {
                    data_loss: Some(loss),
                    ..Outcome::done().with_member(&c.spec.name)
                })
            }
        }
    }
}
