//! The operations. Each one observes first and returns
//! `Outcome::already_done()` when the store is already where it should be.

use crate::error::MongoError;
use crate::observe::{config_member, position, priority_of, Snapshot};
use crate::MongoController;
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::{Acknowledgment, WriteConcern};
use std::time::Duration;
use switchyard_controller::fencing::{self, Admission};
use switchyard_controller::{
    DataLossEstimate, ErrorKind, FencingToken, ObservedState, OpContext, Operation, Outcome,
    PromoteMode, Role, Stamp,
};

type R<T> = Result<T, MongoError>;

const POLL: Duration = Duration::from_millis(50);

impl MongoController {
    pub(crate) async fn run(&self, op: &Operation, ctx: &OpContext) -> R<Outcome> {
        match op {
            Operation::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => {
                self.check_readiness(target_region, candidate.as_deref(), *mode)
                    .await
            }
            Operation::MakeSticky {
                target_region,
                candidate,
            } => {
                self.known_region(target_region)?;
                let snap = self.snapshot().await?;
                self.refuse_takeover(&snap, target_region)?;
                match self
                    .make_sticky(&snap, target_region, candidate.as_deref(), ctx)
                    .await?
                {
                    Sticky::Unchanged => Ok(Outcome::already_done()),
                    done => Ok(Outcome::done().with_note(done.note(target_region))),
                }
            }
            Operation::Promote {
                target_region,
                mode: PromoteMode::Planned,
                candidate,
            } => {
                self.promote_planned(target_region, candidate.as_deref(), ctx)
                    .await
            }
            Operation::Promote {
                target_region,
                mode: PromoteMode::Forced { accept_data_loss },
                candidate,
            } => {
                self.promote_forced(target_region, candidate.as_deref(), *accept_data_loss, ctx)
                    .await
            }
            Operation::CapturePosition => {
                let snap = self.snapshot().await?;
                let state = self.to_state(&snap);
                let p = state.primary().ok_or_else(|| {
                    MongoError::new(ErrorKind::NotReady, "no primary to capture a position from")
                })?;
                let pos = p.position.ok_or_else(|| {
                    MongoError::new(ErrorKind::Protocol, "primary reported no optime")
                        .member(&p.name)
                })?;
                Ok(Outcome::done().with_member(&p.name).with_position(pos))
            }
            Operation::WaitForPosition {
                target_region,
                position,
                timeout_ms,
                candidate,
            } => {
                self.known_region(target_region)?;
                let deadline = tokio::time::Instant::now() + Duration::from_millis(*timeout_ms);
                loop {
                    let state = self.to_state(&self.snapshot().await?);
                    if let Some(m) = self
                        .candidates(&state, target_region, candidate.as_deref())
                        .into_iter()
                        .find(|m| m.position.is_some_and(|p| p.reached(position)))
                    {
                        return Ok(Outcome::done()
                            .with_member(&m.name)
                            .with_position(m.position.expect("checked")));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(MongoError::new(
                            ErrorKind::Timeout,
                            format!("no member of {target_region} reached {position} within {timeout_ms} ms"),
                        ));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Operation::Rejoin => self.rejoin(ctx).await,
            // The capability layer answers the rest: RepointFollowers is not
            // needed (secondaries choose their sync source), Fence and
            // Unfence are not separate steps (replSetStepDown inside
            // Promote fences the primary).
            other => Err(MongoError::new(
                ErrorKind::Unsupported,
                format!(
                    "operation {} is not supported by the mongodb controller",
                    other.name()
                ),
            )),
        }
    }

    fn known_region(&self, region: &str) -> R<()> {
        if self
            .cfg
            .members
            .iter()
            .any(|m| m.region == region && m.electable)
        {
            Ok(())
        } else {
            Err(MongoError::new(
                ErrorKind::Refused,
                format!(
                    "region {region} has no electable member in store {}",
                    self.cfg.store
                ),
            ))
        }
    }

    /// Reachable, electable data-bearing members of `region` — only
    /// `chosen`, the operator's `--candidate`, when there is one.
    fn candidates<'a>(
        &self,
        state: &'a ObservedState,
        region: &str,
        chosen: Option<&str>,
    ) -> Vec<&'a switchyard_controller::MemberState> {
        state
            .members
            .iter()
            .filter(|m| m.region == region && m.reachable)
            .filter(|m| chosen.is_none_or(|c| c == m.name))
            .filter(|m| matches!(m.role, Role::Secondary | Role::Primary))
            .filter(|m| self.cfg.by_name(&m.name).is_some_and(|s| s.electable))
            .collect()
    }

    /// The stamp in the tags of the newest config any reachable member holds.
    pub(crate) async fn recorded_stamp(&self) -> R<Option<Stamp>> {
        let mut best: Option<(i64, Option<Stamp>)> = None;
        let mut last_err = None;
        for i in 0..self.cfg.members.len() {
            match self.fetch_config(i).await {
                Ok(c) => {
                    let v = c
                        .get_i32("version")
                        .map(i64::from)
                        .or_else(|_| c.get_i64("version"))
                        .unwrap_or(0);
                    if best.as_ref().is_none_or(|(bv, _)| v > *bv) {
                        best = Some((v, stored_stamp(&c)));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (best, last_err) {
            (Some((_, e)), _) => Ok(e),
            (None, Some(e)) => Err(e),
            (None, None) => Err(MongoError::new(ErrorKind::Config, "no members configured")),
        }
    }

    /// Member `i`'s current replica set config (`replSetGetConfig.config`).
    pub(crate) async fn fetch_config(&self, i: usize) -> R<Document> {
        let limit = self.cfg.connect_timeout * 2;
        let reply = self
            .conns
            .admin(&self.cfg, i, doc! { "replSetGetConfig": 1 }, limit)
            .await?;
        reply
            .get_document("config")
            .cloned()
            .map_err(|_| MongoError::new(ErrorKind::Protocol, "replSetGetConfig without config"))
    }

    fn primary_index(&self, snap: &Snapshot) -> Option<usize> {
        (0..snap.views.len())
            .filter(|&i| snap.views[i].as_ref().is_ok_and(|v| v.state == 1))
            .max_by_key(|&i| snap.views[i].as_ref().map(|v| v.term).unwrap_or(-1))
    }

    fn reconfig_limit(&self) -> Duration {
        Duration::from_secs(35)
    }

    /// `maxTimeMS` of a safe reconfig: without one mongod waits without
    /// limit for the current config to be committed.
    pub(crate) fn reconfig_max_time(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// A non-force `replSetReconfig` on `p`, bounded by `maxTimeMS`. Since
    /// MongoDB 4.4 it first waits until the current config is committed
    /// (installed by a majority of voting members, and the primary's first
    /// entry of its term majority-committed); expiry of that wait is
    /// `CurrentConfigNotCommittedYet` (308), reported as temporary.
    async fn safe_reconfig(&self, p: usize, new: Document) -> R<()> {
        let cmd = doc! {
            "replSetReconfig": new,
            "maxTimeMS": self.reconfig_max_time().as_millis() as i64,
        };
        match self
            .conns
            .admin(&self.cfg, p, cmd, self.reconfig_limit())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(308) => Err(MongoError::new(
                ErrorKind::NotReady,
                format!(
                    "replSetReconfig refused with CurrentConfigNotCommittedYet (308) after {:?}: the primary \
                     has not majority-committed its current config (its first write of the term must reach \
                     writeMajorityCount data-bearing voting members); retry once enough data-bearing members \
                     are back and replicating",
                    self.reconfig_max_time()
                ),
            )
            .member(&self.cfg.members[p].name)),
            Err(e) => Err(e),
        }
    }

    /// (data-bearing voting members the primary `p` sees healthy,
    /// `writeMajorityCount`) for the config `config`: when the first is
    /// smaller, nothing — not a `w:"majority"` write, not a safe reconfig's
    /// oplog commitment — can be majority-committed.
    fn commit_capacity(&self, snap: &Snapshot, config: &Document, p: usize) -> (i64, i64) {
        let view = snap.views[p].as_ref().ok();
        let members: Vec<Document> = config
            .get_array("members")
            .map(|a| a.iter().filter_map(|m| m.as_document()).cloned().collect())
            .unwrap_or_default();
        let votes = |m: &Document| match m.get("votes") {
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Double(v)) => *v as i64,
            _ => 1,
        };
        let voters = members.iter().filter(|m| votes(m) > 0).count() as i64;
        let data: Vec<&str> = members
            .iter()
            .filter(|m| votes(m) > 0 && !m.get_bool("arbiterOnly").unwrap_or(false))
            .filter_map(|m| m.get_str("host").ok())
            .collect();
        let need = view
            .and_then(|v| v.write_majority)
            .unwrap_or_else(|| (voters / 2 + 1).min(data.len() as i64));
        let have = data
            .iter()
            .filter(|h| view.is_some_and(|v| v.healthy_data.iter().any(|x| x == *h)))
            .count() as i64;
        (have, need)
    }

    async fn check_readiness(
        &self,
        target: &str,
        chosen: Option<&str>,
        mode: PromoteMode,
    ) -> R<Outcome> {
        self.known_region(target)?;
        let snap = self.snapshot().await?;
        let state = self.to_state(&snap);
        if let Some(p) = self.primary_there(&state, target, chosen)? {
            return Ok(Outcome::already_done()
                .with_member(&p.name)
                .with_note(format!("{target} already holds the primary")));
        }
        let cands = self.candidates(&state, target, chosen);
        if let (Some(c), true) = (chosen, cands.is_empty()) {
            let why = match state.members.iter().find(|m| m.name == c) {
                None => "it is not a member of this replica set".to_string(),
                Some(m) if !m.reachable => "it is unreachable".to_string(),
                Some(m) => format!("it is {:?}, not a secondary", m.role),
            };
            return Err(MongoError::new(
                ErrorKind::NotReady,
                format!("the chosen candidate {c} cannot be promoted: {why}"),
            )
            .member(c));
        }
        match mode {
            PromoteMode::Planned => {
                if state.primary().is_none() {
                    return Err(MongoError::new(
                        ErrorKind::NotReady,
                        "no reachable primary to hand over from; a planned switchover needs one (use forced failover)",
                    ));
                }
                if cands.is_empty() {
                    return Err(MongoError::new(
                        ErrorKind::NotReady,
                        format!("no reachable electable member in {target}"),
                    ));
                }
                let best = cands
                    .iter()
                    .find(|m| m.lag.is_some_and(|l| l.within(None, self.cfg.max_lag_ms)))
                    .ok_or_else(|| {
                        let worst = cands[0];
                        MongoError::new(
                            ErrorKind::LagTooHigh,
                            format!(
                                "every candidate in {target} lags beyond max_lag_ms {:?} ({} lags {:?} ms)",
                                self.cfg.max_lag_ms,
                                worst.name,
                                worst.lag.and_then(|l| l.millis)
                            ),
                        )
                        .member(&worst.name)
                    })?;
                Ok(Outcome::done().with_member(&best.name))
            }
            PromoteMode::Forced { accept_data_loss } => {
                if let Some(p) = state.primary() {
                    // The set already elected (or kept) a primary: the
                    // promotion becomes a lossless planned hand-over.
                    return Ok(Outcome::done().with_member(&p.name).with_note(format!(
                        "primary {} in {} is reachable; promotion will hand over as in a planned switchover",
                        p.name, p.region
                    )));
                }
                let best = cands.first().ok_or_else(|| {
                    MongoError::new(
                        ErrorKind::NotReady,
                        format!("no reachable electable member in {target}"),
                    )
                })?;
                let lag = self.forced_lag_verdict(&snap, &best.name);
                if !lag.within && !accept_data_loss {
                    return Err(self.lag_refused(&best.name, &lag));
                }
                let (have, need) = self.reachable_votes(&snap);
                if have < need && !accept_data_loss {
                    return Err(self.majority_lost(have, need).member(&best.name));
                }
                let mut o = Outcome::done().with_member(&best.name);
                o.data_loss = Some(lag.estimate);
                Ok(o)
            }
        }
    }

    fn lag_refused(&self, cand: &str, lag: &crate::last_known::LagVerdict) -> MongoError {
        MongoError::new(
            ErrorKind::LagTooHigh,
            format!(
                "forced promotion of {cand} refused: {}; accept data loss to override",
                lag.estimate.note
            ),
        )
        .member(cand)
    }

    fn majority_lost(&self, have: i64, need: i64) -> MongoError {
        MongoError::new(
            ErrorKind::LagTooHigh,
            format!(
                "only {have} of the {need} votes needed for a majority are reachable; \
                 a forced reconfig may lose writes the lost members acknowledged — \
                 retry with accept_data_loss"
            ),
        )
    }

    /// (reachable votes, votes needed for a majority) by the current config.
    fn reachable_votes(&self, snap: &Snapshot) -> (i64, i64) {
        let Some(cfg) = &snap.config else {
            return (0, 1);
        };
        let members = cfg.get_array("members").cloned().unwrap_or_default();
        let mut total = 0;
        let mut have = 0;
        for m in members.iter().filter_map(|m| m.as_document()) {
            let votes = match m.get("votes") {
                Some(Bson::Int32(v)) => i64::from(*v),
                Some(Bson::Int64(v)) => *v,
                Some(Bson::Double(v)) => *v as i64,
                _ => 1,
            };
            total += votes;
            let host = m.get_str("host").unwrap_or("");
            let up = self
                .cfg
                .members
                .iter()
                .position(|s| s.host == host)
                .is_some_and(|i| snap.views[i].is_ok());
            if up {
                have += votes;
            }
        }
        (have, total / 2 + 1)
    }

    /// The primary when it is already where the step aims: in `target`,
    /// and `chosen` when the operator chose. A primary elsewhere in the
    /// target region is refused: a move within a region is not a failover.
    fn primary_there<'a>(
        &self,
        state: &'a ObservedState,
        target: &str,
        chosen: Option<&str>,
    ) -> R<Option<&'a switchyard_controller::MemberState>> {
        match state.primary() {
            Some(p) if p.region == target => match chosen {
                Some(c) if c != p.name => Err(MongoError::new(
                    ErrorKind::Refused,
                    switchyard_controller::operation::other_primary_in_target(&p.name, target, c),
                )
                .member(&p.name)),
                _ => Ok(Some(p)),
            },
            _ => Ok(None),
        }
    }

    /// Priorities that keep `target` primary: its electable members get
    /// their topology priority plus the highest topology priority, so each
    /// outranks every member elsewhere; `chosen`, the operator's
    /// `--candidate`, gets one more than any of them, so priority takeover
    /// within the region lands on it too.
    pub(crate) fn sticky_priority(
        &self,
        host: &str,
        target: &str,
        chosen: Option<&str>,
    ) -> Option<f64> {
        let m = self.cfg.by_host(host)?;
        if !m.electable {
            return None;
        }
        let top = self
            .cfg
            .members
            .iter()
            .filter(|m| m.electable)
            .map(|m| m.priority)
            .fold(0.0, f64::max);
        Some(if m.region == target && chosen == Some(m.name.as_str()) {
            (2.0 * top + 1.0).min(1000.0)
        } else if m.region == target {
            (m.priority + top).min(1000.0)
        } else {
            m.priority
        })
    }

    pub(crate) fn sticky_config(
        &self,
        config: &Document,
        target: &str,
        chosen: Option<&str>,
    ) -> Option<Document> {
        let mut new = config.clone();
        let mut changed = false;
        let members: Vec<Bson> = config
            .get_array("members")
            .ok()?
            .iter()
            .map(|b| {
                let mut m = b.as_document().cloned().unwrap_or_default();
                let host = m.get_str("host").unwrap_or("").to_string();
                if let Some(p) = self.sticky_priority(&host, target, chosen) {
                    if (priority_of(&m) - p).abs() > f64::EPSILON {
                        m.insert("priority", p);
                        changed = true;
                    }
                }
                Bson::Document(m)
            })
            .collect();
        if !changed {
            return None;
        }
        new.insert("members", members);
        Some(new)
    }

    fn bump_version(config: &mut Document) {
        let v = match config.get("version") {
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Double(v)) => *v as i64,
            _ => 0,
        };
        config.insert("version", (v + 1) as i32);
        // The server assigns the config term itself.
        config.remove("term");
    }

    /// MakeSticky while a reachable primary is outside `target` would let
    /// the target take the primary over by priority while the old primary
    /// still acknowledges `w:1` writes the target has not replicated; they
    /// would roll back. The move is Promote's (a step-down that waits for the
    /// target to catch up), which makes it sticky itself.
    fn refuse_takeover(&self, snap: &Snapshot, target: &str) -> R<()> {
        let Some(p) = self.primary_index(snap) else {
            return Ok(());
        };
        let m = &self.cfg.members[p];
        if m.region == target {
            return Ok(());
        }
        Err(MongoError::new(
            ErrorKind::Refused,
            format!(
                "{} in {} is primary: raising {target}'s priorities now would let {target} take the \
                 primary over by priority while {} still acknowledges w:1 writes {target} has not \
                 replicated, and those would roll back; promote {target} first (a planned promotion \
                 steps {} down with a catch-up period and then makes {target} preferred)",
                m.name, m.region, m.name, m.name
            ),
        )
        .member(&m.name))
    }

    /// Raise target priorities on the primary.
    ///
    /// Normally a safe (non-force) reconfig. When the primary demonstrably
    /// cannot majority-commit — it sees fewer healthy data-bearing voting
    /// members than `writeMajorityCount`, as after losing a whole region of
    /// a two-region + arbiter set — a safe reconfig would only wait for
    /// `CurrentConfigNotCommittedYet`. Then the change, which touches
    /// priorities and tags only, is applied with `force: true` on the
    /// elected primary: membership and votes stay identical, so every
    /// election and write majority of the new config is one of the old, and
    /// no majority-committed write can be rolled back because of it.
    pub(crate) async fn make_sticky(
        &self,
        snap: &Snapshot,
        target: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> R<Sticky> {
        let p = self.primary_index(snap).ok_or_else(|| {
            MongoError::new(
                ErrorKind::NotReady,
                "no reachable primary to reconfigure; priorities can only change through a primary",
            )
        })?;
        let config = &self.fetch_config(p).await?;
        admit_on(config, ctx)?;
        let mut new = self
            .sticky_config(config, target, chosen)
            .unwrap_or_else(|| config.clone());
        stamp(&mut new, ctx);
        if &new == config {
            return Ok(Sticky::Unchanged);
        }
        // The version check of replSetReconfig makes this a compare-and-set:
        // a coordinator that raced us to the same version gets error 103.
        Self::bump_version(&mut new);
        let (have, need) = self.commit_capacity(snap, config, p);
        if have >= need {
            self.safe_reconfig(p, new).await?;
            return Ok(Sticky::Reconfigured);
        }
        let name = &self.cfg.members[p].name;
        if !priority_only_change(config, &new) {
            return Err(MongoError::new(
                ErrorKind::Refused,
                format!(
                    "primary {name} sees only {have} of the {need} data-bearing voting members a majority \
                     commit needs, and the change is not priority-only; bring those members back first"
                ),
            )
            .member(name));
        }
        // Force only on the member that is the elected primary right now.
        let hello = self
            .conns
            .admin(
                &self.cfg,
                p,
                doc! { "hello": 1 },
                self.cfg.connect_timeout * 2,
            )
            .await?;
        if !hello.get_bool("isWritablePrimary").unwrap_or(false) {
            return Err(MongoError::new(
                ErrorKind::NotReady,
                format!("{name} stopped being primary before its priorities could change"),
            )
            .member(name));
        }
        self.conns
            .admin(
                &self.cfg,
                p,
                doc! { "replSetReconfig": new, "force": true },
                self.reconfig_limit(),
            )
            .await?;
        Ok(Sticky::Forced { have, need })
    }

    /// Until the primary is in `target` — and is `chosen` when the operator
    /// chose (priority takeover may first elect another member there).
    async fn wait_primary_in(
        &self,
        target: &str,
        chosen: Option<&str>,
        limit: Duration,
    ) -> R<ObservedState> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.snapshot().await {
                Ok(snap) => {
                    let s = self.to_state(&snap);
                    if s.primary().is_some_and(|p| {
                        switchyard_controller::is_target(&p.name, &p.region, target, chosen)
                    }) {
                        return Ok(s);
                    }
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MongoError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no primary {} within {limit:?}",
                        match chosen {
                            Some(c) => format!("{c} in {target}"),
                            None => format!("in {target}"),
                        }
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(crate) fn election_wait(&self) -> Duration {
        self.cfg.catch_up + self.cfg.election_timeout * 20 + Duration::from_secs(10)
    }

    async fn verify_majority_write(&self, target: &str, ctx: &OpContext) -> R<()> {
        let client = self.conns.set(&self.cfg).await?;
        let wc = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .w_timeout(Duration::from_secs(30))
            .build();
        client
            .database(&self.cfg.verify_database)
            .collection::<Document>("switchovers")
            .insert_one(doc! {
                "_id": ObjectId::new(),
                "execution_id": &ctx.execution_id,
                "token": ctx.token.get() as i64,
                "target_region": target,
                "at": DateTime::now(),
            })
            .write_concern(wc)
            .await
            .map_err(MongoError::driver)?;
        Ok(())
    }

    async fn promote_planned(
        &self,
        target: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> R<Outcome> {
        self.known_region(target)?;
        let snap = self.snapshot().await?;
        let state = self.to_state(&snap);
        if let Some(p) = self.primary_there(&state, target, chosen)? {
            return Ok(Outcome::already_done()
                .with_member(&p.name)
                .with_note(format!("{} in {target} is already primary", p.name)));
        }
        self.check_readiness(target, chosen, PromoteMode::Planned)
            .await?;
        let p = self.primary_index(&snap).ok_or_else(|| {
            MongoError::new(
                ErrorKind::NotReady,
                "the primary disappeared during the switchover",
            )
        })?;
        let handed = self.hand_over(&snap, p, target, chosen, ctx).await?;
        let mut out = Outcome::done();
        out.notes = handed.notes;
        let state = handed.state;
        self.verify_majority_write(target, ctx).await?;
        let p = state.primary().expect("primary in target");
        let mut out = out
            .with_member(&p.name)
            .with_note("a w:\"majority\" write succeeded");
        out.position = p.position;
        Ok(out)
    }

    async fn promote_forced(
        &self,
        target: &str,
        chosen: Option<&str>,
        accept: bool,
        ctx: &OpContext,
    ) -> R<Outcome> {
        self.known_region(target)?;
        let snap = self.snapshot().await?;
        let state = self.to_state(&snap);
        if let Some(p) = self.primary_there(&state, target, chosen)? {
            return Ok(Outcome::already_done()
                .with_member(&p.name)
                .with_note(format!("{} in {target} is already primary", p.name)));
        }
        if let Some(p) = state.primary() {
            let from = format!("{} in {}", p.name, p.region);
            let mut out = self.promote_planned(target, chosen, ctx).await?;
            out.notes.insert(
                0,
                format!("primary {from} was reachable: handed over as in a planned switchover"),
            );
            out.data_loss = Some(DataLossEstimate {
                writes: Some(0),
                note: "none: the reachable primary handed over after a secondary caught up".into(),
                ..DataLossEstimate::default()
            });
            return Ok(out);
        }
        // The most advanced reachable electable member of the target is
        // what the set elects (or what a forced reconfig promotes).
        let lag = state
            .members
            .iter()
            .filter(|m| m.region == target && m.reachable && m.role == Role::Secondary)
            .filter(|m| self.cfg.by_name(&m.name).is_some_and(|s| s.electable))
            .filter(|m| chosen.is_none_or(|c| c == m.name))
            .max_by_key(|m| m.position)
            .map(|m| (m.name.clone(), self.forced_lag_verdict(&snap, &m.name)));
        if let Some((cand, v)) = &lag {
            if !v.within && !accept {
                return Err(self.lag_refused(cand, v));
            }
        }
        let lag_note = lag.map(|(_, v)| v.estimate.note);
        let (have, need) = self.reachable_votes(&snap);
        if have >= need {
            // A voting majority survives: the set elects by itself within an
            // election timeout; the controller only steers the result.
            let deadline = tokio::time::Instant::now() + self.election_wait();
            let elected = loop {
                let snap = self.snapshot().await?;
                if self.primary_index(&snap).is_some() {
                    break snap;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(MongoError::new(
                        ErrorKind::Timeout,
                        "the surviving majority did not elect a primary",
                    ));
                }
                tokio::time::sleep(POLL).await;
            };
            let s = self.to_state(&elected);
            let there = s.primary().is_some_and(|p| {
                switchyard_controller::is_target(&p.name, &p.region, target, chosen)
            });
            let mut out = if there {
                let sticky = self.make_sticky(&elected, target, chosen, ctx).await?;
                let p = s.primary().expect("primary");
                let mut o = Outcome::done().with_member(&p.name);
                if sticky != Sticky::Unchanged {
                    o = o.with_note(sticky.note(target));
                }
                o.position = p.position;
                o
            } else {
                self.promote_planned(target, chosen, ctx).await?
            };
            out.notes.insert(
                0,
                format!(
                    "{have} of {need} needed votes reachable: the set elected a primary itself"
                ),
            );
            out.data_loss = Some(DataLossEstimate {
                note: format!(
                    "only w:1 writes not replicated to the surviving majority can be lost; \
                     they are rolled back when the old primary rejoins{}",
                    lag_note
                        .as_deref()
                        .map_or(String::new(), |n| format!(". Before the election: {n}"))
                ),
                ..DataLossEstimate::default()
            });
            return Ok(out);
        }
        if !accept {
            return Err(self.majority_lost(have, need));
        }
        let _ = &state;
        // Pick the most advanced reachable electable member of the target region.
        let cand = self.best_candidate(&snap, target, chosen).ok_or_else(|| {
            MongoError::new(
                ErrorKind::NotReady,
                format!("no reachable electable secondary in {target}"),
            )
        })?;
        let cand_optime = snap.views[cand].as_ref().ok().and_then(|v| v.optime);
        let config = &self.fetch_config(cand).await?;
        let mut removed = Vec::new();
        let survivors: Vec<Bson> = config
            .get_array("members")
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|b| {
                let host = b
                    .as_document()
                    .and_then(|d| d.get_str("host").ok())
                    .unwrap_or("");
                let up = self
                    .cfg
                    .members
                    .iter()
                    .position(|s| s.host == host)
                    .is_some_and(|i| snap.views[i].is_ok());
                if !up {
                    removed.push(
                        self.cfg
                            .by_host(host)
                            .map_or(host.to_string(), |m| m.name.clone()),
                    );
                }
                up
            })
            .collect();
        let mut new = config.clone();
        new.insert("members", survivors);
        let mut new = self.sticky_config(&new, target, chosen).unwrap_or(new);
        stamp(&mut new, ctx);
        Self::bump_version(&mut new);
        self.conns
            .admin(
                &self.cfg,
                cand,
                doc! { "replSetReconfig": new, "force": true },
                self.reconfig_limit(),
            )
            .await?;
        let state = self
            .wait_primary_in(target, chosen, self.election_wait())
            .await?;
        let p = state.primary().expect("primary");
        let now_ms = DateTime::now().timestamp_millis().max(0) as u64;
        let millis = cand_optime.map(|(ts, _)| now_ms.saturating_sub(u64::from(ts.time) * 1000));
        let mut out = Outcome::done().with_member(&p.name).with_note(format!(
            "forced reconfig on {} keeping reachable members only; removed: {}",
            self.cfg.members[cand].name,
            removed.join(", ")
        ));
        out.position = p.position;
        out.data_loss = Some(DataLossEstimate {
            bytes: None,
            millis,
            writes: None,
            note: format!(
                "writes the removed members ({}) accepted after {}'s last applied optime {} may be lost; \
                 they are rolled back (and counted by Rejoin) when those members are re-added{}",
                removed.join(", "),
                self.cfg.members[cand].name,
                cand_optime.map_or("unknown".into(), |(ts, t)| position(ts, t).to_string()),
                lag_note
                    .as_deref()
                    .map_or(String::new(), |n| format!(". Estimate: {n}"))
            ),
        });
        Ok(out)
    }

    async fn rejoin(&self, ctx: &OpContext) -> R<Outcome> {
        let snap = self.snapshot().await?;
        let p = self.primary_index(&snap).ok_or_else(|| {
            MongoError::new(ErrorKind::NotReady, "no primary to rejoin members to")
        })?;
        let primary_region = self.cfg.members[p].region.clone();
        let limit = self.cfg.connect_timeout * 2;
        let mut added = Vec::new();
        for i in 0..self.cfg.members.len() {
            let spec = self.cfg.members[i].clone();
            let config = self.fetch_config(p).await?;
            if config_member(&config, &spec.host).is_some() {
                continue;
            }
            // Only re-add members that answer at all.
            if self
                .conns
                .admin(&self.cfg, i, doc! { "ping": 1 }, limit)
                .await
                .is_err()
            {
                continue;
            }
            let mut members = config.get_array("members").cloned().unwrap_or_default();
            let next_id = members
                .iter()
                .filter_map(|m| m.as_document())
                .filter_map(|m| match m.get("_id") {
                    Some(Bson::Int32(v)) => Some(i64::from(*v)),
                    Some(Bson::Int64(v)) => Some(*v),
                    _ => None,
                })
                .max()
                .unwrap_or(-1)
                + 1;
            let topo = self.cfg.by_name(&spec.name).expect("member of config");
            let priority = self
                .sticky_priority(&spec.host, &primary_region, None)
                .unwrap_or(if topo.electable { topo.priority } else { 0.0 });
            members.push(Bson::Document(doc! {
                "_id": next_id as i32,
                "host": &spec.host,
                "priority": priority,
                "votes": 1,
                "arbiterOnly": spec.arbiter,
            }));
            let mut new = config.clone();
            new.insert("members", members);
            stamp(&mut new, ctx);
            Self::bump_version(&mut new);
            self.safe_reconfig(p, new).await?;
            added.push(spec.name.clone());
        }
        // Wait until every reachable member settled as secondary/arbiter.
        let deadline = tokio::time::Instant::now() + self.election_wait();
        let state = loop {
            let s = self.to_state(&self.snapshot().await?);
            let settled = s.members.iter().filter(|m| m.reachable).all(|m| {
                matches!(
                    m.role,
                    Role::Primary | Role::Secondary | Role::Arbiter | Role::ReadOnly
                )
            }) && s.primaries().count() == 1;
            if settled || tokio::time::Instant::now() >= deadline {
                break s;
            }
            tokio::time::sleep(POLL).await;
        };
        let snap = self.snapshot().await?;
        // The former primary rolled back every write it alone accepted; its
        // old secondaries rolled back subsets of the same writes.
        let rolled: i64 = snap
            .rolled_back_ops
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0);
        let mut out = if added.is_empty() {
            Outcome::already_done()
        } else {
            Outcome::done().with_note(format!("re-added {}", added.join(", ")))
        };
        for m in state.members.iter().filter(|m| !m.reachable) {
            out = out.with_note(format!(
                "{} is unreachable; it rejoins by itself once reachable (rolling back unreplicated writes)",
                m.name
            ));
        }
        if rolled > 0 {
            out.data_loss = Some(DataLossEstimate {
                writes: Some(rolled as u64),
                note: format!(
                    "{rolled} oplog entries were rolled back on a former primary (w:1 writes that never reached a majority)"
                ),
                ..DataLossEstimate::default()
            });
        }
        Ok(out)
    }
}

/// How MakeSticky changed the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sticky {
    /// The priorities (and token tag) were already in place.
    Unchanged,
    /// A safe (non-force) reconfig.
    Reconfigured,
    /// A priority-only forced reconfig on the primary, because it saw
    /// `have` of the `need` data-bearing voting members a majority commit
    /// needs.
    Forced {
        /// Healthy data-bearing voting members the primary saw.
        have: i64,
        /// `writeMajorityCount`.
        need: i64,
    },
}

impl Sticky {
    pub(crate) fn note(self, target: &str) -> String {
        match self {
            Sticky::Unchanged => format!("{target}'s priorities were already in place"),
            Sticky::Reconfigured => {
                format!("raised the priorities of {target}'s electable members")
            }
            Sticky::Forced { have, need } => format!(
                "raised the priorities of {target}'s electable members with a priority-only forced \
                 reconfig on the primary: it sees {have} of the {need} data-bearing voting members a \
                 majority commit needs, so a safe reconfig could not commit (membership and votes are \
                 unchanged, so no majority-committed write can roll back because of it)"
            ),
        }
    }
}

/// Whether `new` differs from `old` only in member priorities and tags
/// (and the version/term the server manages): same members, same votes,
/// same arbiters, same settings — every quorum of one is a quorum of the
/// other.
fn priority_only_change(old: &Document, new: &Document) -> bool {
    let top = |d: &Document| {
        let mut d = d.clone();
        for k in ["version", "term", "members"] {
            d.remove(k);
        }
        d
    };
    let members = |d: &Document| -> Vec<Document> {
        d.get_array("members")
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_document())
                    .map(|m| {
                        let mut m = m.clone();
                        m.remove("priority");
                        m.remove("tags");
                        m
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    top(old) == top(new) && members(old) == members(new)
}

/// Member tag holding the highest fencing token that changed the config.
pub(crate) const TOKEN_TAG: &str = "switchyard_token";
/// Member tag holding the execution that carried it.
pub(crate) const EXECUTION_TAG: &str = "switchyard_execution";
/// The token tag's name before tokens had their own word; still read.
const LEGACY_TOKEN_TAG: &str = "switchyard_epoch";

/// The stamp recorded in a config's member tags (`None` when none).
pub(crate) fn stored_stamp(config: &Document) -> Option<Stamp> {
    config
        .get_array("members")
        .ok()?
        .iter()
        .filter_map(|m| m.as_document())
        .filter_map(|m| m.get_document("tags").ok())
        .filter_map(|t| {
            let token = t
                .get_str(TOKEN_TAG)
                .or_else(|_| t.get_str(LEGACY_TOKEN_TAG))
                .ok()?
                .parse::<u64>()
                .ok()?;
            Some(Stamp {
                token: FencingToken(token),
                execution: t.get_str(EXECUTION_TAG).unwrap_or_default().to_string(),
                member: None,
            })
        })
        .max_by_key(|s| s.token)
}

/// Refuse a config change the fencing rule does not admit, on the very
/// config the version compare-and-set replaces (the fencing layer checked
/// an earlier read).
fn admit_on(config: &Document, ctx: &OpContext) -> R<()> {
    fencing::admit(stored_stamp(config).as_ref(), ctx)
        .map(|_| ())
        .map_err(|r| {
            let e = r.into_error("", ctx);
            MongoError::new(ErrorKind::Refused, e.message().to_string())
        })
}

/// Record `ctx`'s stamp on every member's tags when it is newer. Returns
/// whether anything changed.
fn stamp(config: &mut Document, ctx: &OpContext) -> bool {
    let seen = stored_stamp(config);
    if fencing::admit(seen.as_ref(), ctx) != Ok(Admission::Newer) {
        return false;
    }
    let members: Vec<Bson> = config
        .get_array("members")
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|b| {
            let mut m = b.as_document().cloned().unwrap_or_default();
            let mut tags = m.get_document("tags").cloned().unwrap_or_default();
            tags.remove(LEGACY_TOKEN_TAG);
            tags.insert(TOKEN_TAG, ctx.token.get().to_string());
            tags.insert(EXECUTION_TAG, ctx.execution_id.clone());
            m.insert("tags", tags);
            Bson::Document(m)
        })
        .collect();
    config.insert("members", members);
    true
}

#[cfg(test)]
mod tests {
    use super::priority_only_change;
    use bson::doc;

    #[test]
    fn only_priorities_and_tags_may_differ_for_a_forced_sticky_change() {
        let old = doc! {
            "_id": "rs0", "version": 3, "term": 4,
            "members": [
                { "_id": 0, "host": "a:1", "priority": 2.0, "votes": 1, "tags": {} },
                { "_id": 1, "host": "b:1", "priority": 1.0, "votes": 1, "tags": {} },
                { "_id": 2, "host": "c:1", "priority": 0.0, "votes": 1, "arbiterOnly": true },
            ],
            "settings": { "electionTimeoutMillis": 10000 },
        };
        let mut prio = old.clone();
        prio.insert("version", 4);
        prio.remove("term");
        prio.insert(
            "members",
            vec![
                bson::Bson::Document(doc! { "_id": 0, "host": "a:1", "priority": 2.0, "votes": 1, "tags": { "switchyard_token": "7", "switchyard_execution": "e7" } }),
                bson::Bson::Document(doc! { "_id": 1, "host": "b:1", "priority": 3.0, "votes": 1, "tags": {} }),
                bson::Bson::Document(doc! { "_id": 2, "host": "c:1", "priority": 0.0, "votes": 1, "arbiterOnly": true }),
            ],
        );
        assert!(priority_only_change(&old, &prio));
        let mut votes = prio.clone();
        votes.insert(
            "members",
            vec![
                bson::Bson::Document(doc! { "_id": 0, "host": "a:1", "priority": 2.0, "votes": 1, "tags": {} }),
                bson::Bson::Document(doc! { "_id": 1, "host": "b:1", "priority": 0.0, "votes": 0, "tags": {} }),
                bson::Bson::Document(doc! { "_id": 2, "host": "c:1", "priority": 0.0, "votes": 1, "arbiterOnly": true }),
            ],
        );
        assert!(!priority_only_change(&old, &votes), "votes changed");
        let mut fewer = prio.clone();
        fewer.insert(
            "members",
            vec![bson::Bson::Document(
                doc! { "_id": 0, "host": "a:1", "priority": 2.0, "votes": 1, "tags": {} },
            )],
        );
        assert!(!priority_only_change(&old, &fewer), "members removed");
        let mut settings = prio.clone();
        settings.insert("settings", doc! { "electionTimeoutMillis": 1 });
        assert!(!priority_only_change(&old, &settings), "settings changed");
    }
}
