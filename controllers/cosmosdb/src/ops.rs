//! The operations, each idempotent: it looks first and acts only on what is
//! not yet true. Every ARM action is a long-running operation whose URL is
//! journaled ([`switchyard_controller::progress`]) before it is polled, so a
//! resumed coordinator finishes polling that operation instead of starting
//! another.

use crate::arm::{same_location, strip_query, Account, OpStatus};
use crate::error::{CResult, CosmosError};
use crate::loss;
use crate::CosmosController;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_controller::{
    progress, ControllerExt, ErrorKind, OpContext, Operation, Outcome, PromoteMode, Role,
};

/// Longest wait for an operation, for the account to leave `Updating`, or
/// for both planes to agree. The stage timeout bounds it first.
const OP_WAIT: Duration = Duration::from_secs(30 * 60);

impl CosmosController {
    pub(crate) async fn run(&self, op: &Operation, ctx: &OpContext) -> CResult<Outcome> {
        let _ = ctx;
        match op {
            Operation::CheckReadiness {
                target_region,
                mode,
                ..
            } => self.readiness(target_region, *mode).await,
            Operation::Promote {
                target_region,
                mode: PromoteMode::Planned,
                ..
            }
            | Operation::MakeSticky { target_region, .. } => self.move_writes(target_region).await,
            Operation::Promote {
                target_region,
                mode: PromoteMode::Forced { accept_data_loss },
                ..
            } => self.forced(target_region, *accept_data_loss).await,
            Operation::Rejoin => self.rejoin().await,
            // The capability layer answers the rest (the service fences
            // and replicates by itself).
            other => Err(CosmosError::new(
                ErrorKind::Unsupported,
                format!(
                    "{} reached the cosmosdb controller past its capability",
                    other.name()
                ),
            )),
        }
    }

    fn target(&self, region: &str) -> CResult<crate::config::LocationSpec> {
        self.cfg.in_region(region).cloned().ok_or_else(|| {
            CosmosError::config(
                "members",
                format!("no account location in region `{region}`"),
            )
        })
    }

    /// The account's locations must be the topology's: refuse before
    /// anything runs when they are not.
    fn check_locations(&self, a: &Account) -> CResult<()> {
        let listed = &a.properties.locations;
        for l in &self.cfg.locations {
            if !listed
                .iter()
                .any(|x| same_location(&x.location_name, &l.location))
            {
                return Err(CosmosError::config(
                    format!("connection.azure.locations.{}", l.region),
                    format!(
                        "the account has no location `{}` (it has {:?})",
                        l.location,
                        listed.iter().map(|x| &x.location_name).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        if listed.len() != self.cfg.locations.len() {
            return Err(CosmosError::config(
                "members",
                format!(
                    "the account has {} locations, the topology {}: a failover priority change must name every location",
                    listed.len(),
                    self.cfg.locations.len()
                ),
            ));
        }
        Ok(())
    }

    async fn readiness(&self, region: &str, mode: PromoteMode) -> CResult<Outcome> {
        let t = self.target(region)?;
        let snap = self.snapshot().await?;
        self.check_locations(&snap.account)?;
        let state = self.to_state(&snap);
        let i = self
            .cfg
            .locations
            .iter()
            .position(|l| l.member == t.member)
            .unwrap_or(0);
        let mut out = Outcome::done().with_member(t.member.clone());
        if state.primary_region() == Some(region) {
            return Ok(Outcome {
                already_done: true,
                ..out.with_note(format!(
                    "{} already takes writes on both planes",
                    t.location
                ))
            });
        }
        if snap.account.updating() && progress::token().is_none() {
            return Err(CosmosError::new(
                ErrorKind::NotReady,
                "the account is Updating: another operation holds it",
            ));
        }
        let offline = snap.account.offline(&t.location);
        if let Err(why) = &snap.views[i] {
            if !offline {
                return Err(CosmosError::new(
                    ErrorKind::NotReady,
                    format!("{} cannot take writes: {why}", t.location),
                )
                .member(&t.member));
            }
        }
        if offline {
            out = out.with_note(format!(
                "{} is offline; it is brought online (onlineRegion) before it takes writes",
                t.location
            ));
        }
        if let PromoteMode::Forced { accept_data_loss } = mode {
            let est = loss::estimate(snap.account.properties.consistency_policy.as_ref());
            if !accept_data_loss {
                if let Err(why) = loss::within(&est, self.cfg.max_lag_ms) {
                    return Err(CosmosError::new(ErrorKind::LagTooHigh, why).member(&t.member));
                }
            }
            out = out.with_note(est.note.clone());
            out.data_loss = Some(est);
            if !snap.multi_write() {
                let old = snap.arm_writes().first().map(|s| s.to_string());
                out = out.with_note(format!(
                    "forced: offlineRegion {} hands writes to the next region by failover priority; {} is moved there first",
                    old.as_deref().unwrap_or("(none)"),
                    t.location
                ));
            }
        }
        if snap.multi_write() {
            out = out.with_note(
                "multi-region writes: every region takes writes already; only failover priorities change",
            );
        }
        Ok(out)
    }

    /// Planned move (and MakeSticky): failover priority 0 to the target,
    /// which is a change of write region for single-write accounts and a
    /// change of priorities only for multi-region-write accounts.
    async fn move_writes(&self, region: &str) -> CResult<Outcome> {
        let t = self.target(region)?;
        let mut notes = vec![];
        let mut acted = self.finish_pending(&mut notes).await?;
        let deadline = Instant::now() + OP_WAIT;
        loop {
            let snap = self.snapshot().await?;
            self.check_locations(&snap.account)?;
            if snap.account.updating() {
                // Not ours (ours finished above): wait for it instead of
                // racing it with a second operation.
                self.wait_idle(deadline).await?;
                continue;
            }
            if snap.account.offline(&t.location) {
                self.lro(
                    "onlineRegion",
                    json!({"region": arm_name(&snap.account, &t.location)}),
                    &mut notes,
                )
                .await?;
                acted = true;
                continue;
            }
            if snap.account.priority(&t.location) != Some(0) {
                let body = priorities(&snap.account, &t.location, None);
                self.lro("failoverPriorityChange", body, &mut notes).await?;
                acted = true;
                continue;
            }
            break;
        }
        self.until_agreed(region).await?;
        Ok(outcome(acted, Some(t.member), notes))
    }

    /// Forced: take the lost write region offline so the service hands
    /// writes to the target (multi-region-write accounts: priorities only).
    async fn forced(&self, region: &str, accept_data_loss: bool) -> CResult<Outcome> {
        let t = self.target(region)?;
        let mut notes = vec![];
        let mut acted = self.finish_pending(&mut notes).await?;
        let snap = self.snapshot().await?;
        self.check_locations(&snap.account)?;
        let est = loss::estimate(snap.account.properties.consistency_policy.as_ref());
        if !accept_data_loss {
            if let Err(why) = loss::within(&est, self.cfg.max_lag_ms) {
                return Err(CosmosError::new(ErrorKind::LagTooHigh, why).member(&t.member));
            }
        }
        if snap.multi_write() {
            let mut out = self.move_writes(region).await?;
            out.data_loss = Some(est);
            return Ok(out);
        }
        let deadline = Instant::now() + OP_WAIT;
        loop {
            let snap = self.snapshot().await?;
            if self.to_state(&snap).primary_region() == Some(region) {
                break;
            }
            if snap.account.updating() {
                self.wait_idle(deadline).await?;
                continue;
            }
            let Some(old) = snap.arm_writes().first().map(|s| s.to_string()) else {
                return Err(CosmosError::new(
                    ErrorKind::NotReady,
                    "ARM lists no write location",
                ));
            };
            if same_location(&old, &t.location) {
                // ARM has moved writes; the data plane still disagrees.
                self.until_agreed(region).await?;
                break;
            }
            // offlineRegion hands writes to the next online region by
            // priority: make that the target first (priority 0 stays).
            let mut next: Vec<(u32, String)> = snap
                .account
                .properties
                .failover_policies
                .iter()
                .filter(|p| {
                    !same_location(&p.location_name, &old)
                        && !snap.account.offline(&p.location_name)
                })
                .map(|p| (p.failover_priority, p.location_name.clone()))
                .collect();
            next.sort();
            if next
                .first()
                .is_some_and(|(_, n)| !same_location(n, &t.location))
            {
                let body = priorities(&snap.account, &t.location, Some(&old));
                self.lro("failoverPriorityChange", body, &mut notes).await?;
                acted = true;
                continue;
            }
            self.lro("offlineRegion", json!({"region": old}), &mut notes)
                .await?;
            acted = true;
        }
        self.until_agreed(region).await?;
        notes.push(est.note.clone());
        let mut out = outcome(acted, Some(t.member), notes);
        out.data_loss = Some(est);
        Ok(out)
    }

    /// Bring every offline location back (`onlineRegion`), once its regional
    /// endpoint answers again.
    async fn rejoin(&self) -> CResult<Outcome> {
        let mut notes = vec![];
        let mut acted = self.finish_pending(&mut notes).await?;
        let deadline = Instant::now() + OP_WAIT;
        loop {
            let snap = self.snapshot().await?;
            if snap.account.updating() {
                self.wait_idle(deadline).await?;
                continue;
            }
            let Some(l) = self
                .cfg
                .locations
                .iter()
                .find(|l| snap.account.offline(&l.location))
            else {
                break;
            };
            let endpoint = snap
                .account
                .properties
                .locations
                .iter()
                .find(|a| same_location(&a.location_name, &l.location))
                .and_then(|a| a.document_endpoint.clone())
                .unwrap_or_default();
            let key = self.cfg.key.load("connection.key_env")?;
            if let Err(e) = self.data.account(&key, &endpoint).await {
                return Err(CosmosError::new(
                    ErrorKind::NotReady,
                    format!(
                        "{} is offline and its endpoint does not answer yet: {}",
                        l.location,
                        e.into_error(&self.cfg.store).message()
                    ),
                )
                .member(&l.member));
            }
            self.lro(
                "onlineRegion",
                json!({"region": arm_name(&snap.account, &l.location)}),
                &mut notes,
            )
            .await?;
            acted = true;
        }
        // Back as a read region means back in the failover order too: a
        // location the account lists without a priority could never take
        // writes again, and a rejoin that leaves it so has not finished.
        let snap = self.snapshot().await?;
        if let Some(l) = self
            .cfg
            .locations
            .iter()
            .find(|l| snap.account.priority(&l.location).is_none())
        {
            return Err(CosmosError::new(
                ErrorKind::NotReady,
                format!(
                    "{} is online but has no failover priority; a failover priority change must list it",
                    l.location
                ),
            )
            .member(&l.member));
        }
        Ok(outcome(acted, None, notes))
    }

    /// Start `action`, journal its operation URL, poll it to the end.
    async fn lro(&self, action: &str, body: Value, notes: &mut Vec<String>) -> CResult<()> {
        tracing::info!(store = %self.cfg.store, action, "starting ARM operation");
        let Some(url) = self.arm.start(action, &body).await? else {
            notes.push(format!("{action} finished synchronously"));
            return Ok(());
        };
        let token = json!({"operation": url, "action": action}).to_string();
        progress::record(token).await.map_err(|e| {
            CosmosError::new(
                ErrorKind::Refused,
                format!(
                    "{action} started ({}) but its URL could not be journaled: {e}",
                    strip_query(&url)
                ),
            )
        })?;
        self.wait_operation(action, &url, notes).await
    }

    async fn wait_operation(
        &self,
        action: &str,
        url: &str,
        notes: &mut Vec<String>,
    ) -> CResult<()> {
        let started = Instant::now();
        let mut polls = 0u32;
        loop {
            let (status, wait) = self.arm.poll(url).await?;
            polls += 1;
            match status {
                OpStatus::Succeeded => {
                    notes.push(format!(
                        "{action} operation {} Succeeded ({polls} polls, {} ms)",
                        strip_query(url),
                        started.elapsed().as_millis()
                    ));
                    return Ok(());
                }
                OpStatus::Failed(m) => {
                    return Err(CosmosError::new(
                        ErrorKind::Refused,
                        format!("{action} operation {} Failed: {m}", strip_query(url)),
                    ))
                }
                OpStatus::Canceled => {
                    return Err(CosmosError::new(
                        ErrorKind::Refused,
                        format!("{action} operation {} was Canceled", strip_query(url)),
                    ))
                }
                OpStatus::InProgress => {
                    if started.elapsed() > OP_WAIT {
                        return Err(CosmosError::new(
                            ErrorKind::Timeout,
                            format!("{action} operation {} still InProgress", strip_query(url)),
                        ));
                    }
                    let wait = wait
                        .unwrap_or(Duration::from_secs(1))
                        .clamp(Duration::from_millis(100), Duration::from_secs(60));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The operation a previous attempt (or process) journaled: poll it to
    /// its end before deciding anything. `true` when there was one.
    async fn finish_pending(&self, notes: &mut Vec<String>) -> CResult<bool> {
        let Some(tok) = progress::token() else {
            return Ok(false);
        };
        let v: Value = serde_json::from_str(&tok).unwrap_or_default();
        let (Some(url), Some(action)) = (v["operation"].as_str(), v["action"].as_str()) else {
            return Ok(false);
        };
        match self.arm.poll(url).await {
            Ok((OpStatus::InProgress, _)) => {
                notes.push(format!(
                    "resumed polling the journaled {action} operation {}",
                    strip_query(url)
                ));
                self.wait_operation(action, url, notes).await?;
            }
            Ok((OpStatus::Succeeded, _)) => notes.push(format!(
                "the journaled {action} operation {} had Succeeded",
                strip_query(url)
            )),
            Ok((status, _)) => notes.push(format!(
                "the journaled {action} operation {} ended {status:?}; deciding again",
                strip_query(url)
            )),
            Err(CosmosError::Arm { status: 404, .. }) => notes.push(format!(
                "the journaled {action} operation {} is unknown to ARM; deciding again",
                strip_query(url)
            )),
            Err(e) => return Err(e),
        }
        Ok(true)
    }

    async fn wait_idle(&self, deadline: Instant) -> CResult<()> {
        loop {
            let a = self.arm.account().await?;
            if !a.updating() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CosmosError::new(
                    ErrorKind::Timeout,
                    "the account stayed Updating (another operation holds it)",
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Wait until both planes agree that `region` takes writes.
    async fn until_agreed(&self, region: &str) -> CResult<()> {
        self.wait_until(OP_WAIT, Duration::from_millis(500), |s| {
            s.primary_region() == Some(region)
                && s.member_in(region).is_some_and(|m| m.role == Role::Primary)
        })
        .await
        .map(|_| ())
        .map_err(|e| CosmosError::new(e.kind(), e.message().to_string()))
    }
}

trait MemberIn {
    fn member_in(&self, region: &str) -> Option<&switchyard_controller::MemberState>;
}

impl MemberIn for switchyard_controller::ObservedState {
    fn member_in(&self, region: &str) -> Option<&switchyard_controller::MemberState> {
        self.members.iter().find(|m| m.region == region)
    }
}

/// `done` when this call changed something, else `already_done`.
fn outcome(acted: bool, member: Option<String>, notes: Vec<String>) -> Outcome {
    let mut out = if acted {
        Outcome::done()
    } else {
        Outcome::already_done()
    };
    out.member = member;
    out.notes = notes;
    out
}

/// The account's own spelling of a location name.
fn arm_name(a: &Account, location: &str) -> String {
    a.properties
        .locations
        .iter()
        .find(|l| same_location(&l.location_name, location))
        .map(|l| l.location_name.clone())
        .unwrap_or_else(|| location.to_string())
}

/// A `failoverPriorityChange` body naming every location exactly once, with
/// unique priorities 0..n-1: `target` first (or second, after `keep_first`),
/// the rest in their current order.
pub fn priorities(a: &Account, target: &str, keep_first: Option<&str>) -> Value {
    let mut order: Vec<(u32, String)> = a
        .properties
        .failover_policies
        .iter()
        .map(|p| (p.failover_priority, p.location_name.clone()))
        .collect();
    order.sort();
    let mut names: Vec<String> = order
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| !same_location(n, target) && !keep_first.is_some_and(|k| same_location(n, k)))
        .collect();
    let t = arm_name(a, target);
    match keep_first {
        Some(k) => {
            names.insert(0, t);
            names.insert(0, arm_name(a, k));
        }
        None => names.insert(0, t),
    }
    let policies: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"locationName": n, "failoverPriority": i}))
        .collect();
    json!({ "failoverPolicies": policies })
}
