//! The operations, each idempotent: a repeat observes that the work is done
//! and returns [`Outcome::already_done`].

use crate::control::{self, Control, CONTROL_STREAM};
use crate::error::EsdbError;
use crate::gossip::{NodeView, Snapshot, VNodeState};
use crate::{EsdbController, OTHER_PRIORITY, PREFERRED_PRIORITY};
use kurrentdb::operations::OperationalOptions;
use kurrentdb::{AppendToStreamOptions, EventData, ReadStreamOptions, StreamPosition, StreamState};
use std::future::Future;
use std::time::Duration;
use switchyard_controller::{
    DataLossEstimate, ErrorKind, History, OpContext, Operation, Outcome, Position, PromoteMode,
};
use tokio::time::Instant;

type R<T> = std::result::Result<T, EsdbError>;

const POLL: Duration = Duration::from_millis(50);
/// Resignations tried before a planned switchover gives up.
const RESIGN_ATTEMPTS: usize = 3;

impl EsdbController {
    pub(crate) async fn run(&self, op: &Operation, ctx: &OpContext) -> R<Outcome> {
        match op {
            Operation::CheckReadiness {
                target_region,
                mode,
                candidate,
            } => {
                self.readiness(target_region, candidate.as_deref(), *mode)
                    .await
            }
            Operation::CapturePosition => self.capture().await,
            Operation::WaitForPosition {
                target_region,
                position,
                timeout_ms,
                candidate,
            } => {
                self.wait_position(
                    target_region,
                    candidate.as_deref(),
                    position,
                    Duration::from_millis(*timeout_ms),
                )
                .await
            }
            Operation::MakeSticky {
                target_region,
                candidate,
            } => {
                let c = self.control(ctx).await?;
                self.make_sticky(target_region, candidate.as_deref(), c)
                    .await
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
            Operation::Rejoin => {
                self.control(ctx).await?;
                self.rejoin().await
            }
            // The capability layer answers the rest: a resigning leader
            // refuses writes by itself (no Fence), followers follow the
            // elected leader (RepointFollowers is not needed).
            other => Err(EsdbError::new(
                ErrorKind::Unsupported,
                format!(
                    "{} reached the eventstoredb controller past its capability",
                    other.name()
                ),
            )),
        }
    }

    /// Retry `f` on temporary errors until `timeout`.
    pub(crate) async fn retry<T, F, Fut>(&self, timeout: Duration, f: F) -> R<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = R<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            match f().await {
                Err(e) if e.kind().is_temporary() && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await
                }
                other => return other,
            }
        }
    }

    /// The control metadata as it stands, re-checked by the fencing rule
    /// (the fencing layer checked before the operation; a long operation
    /// checks again right before each step that moves the leader).
    async fn control(&self, ctx: &OpContext) -> R<Control> {
        let c = self
            .retry(self.cfg.catch_up, || {
                self.with_cluster(|c| async move { control::read(&c).await })
            })
            .await?;
        c.admit(ctx)?;
        Ok(c)
    }

    fn name(&self, v: &NodeView) -> &str {
        &self.cfg.nodes[v.idx].name
    }

    fn region(&self, v: &NodeView) -> &str {
        &self.cfg.nodes[v.idx].region
    }

    /// Whether `v` is where a step towards `target` (and `chosen`, the
    /// operator's `--candidate`) aims.
    fn is_target(&self, v: &NodeView, target: &str, chosen: Option<&str>) -> bool {
        switchyard_controller::is_target(self.name(v), self.region(v), target, chosen)
    }

    /// Refuses a leader of `target` that is not the operator's choice.
    fn refuse_other_leader(&self, v: &NodeView, target: &str, chosen: Option<&str>) -> R<()> {
        match chosen {
            Some(c) if self.region(v) == target && self.name(v) != c => Err(EsdbError::new(
                ErrorKind::Refused,
                switchyard_controller::operation::other_primary_in_target(self.name(v), target, c),
            )
            .member(self.name(v))),
            _ => Ok(()),
        }
    }

    /// What to say when `candidates` found none.
    fn no_candidate(&self, what: String, chosen: Option<&str>) -> String {
        match chosen {
            Some(c) => format!("the chosen candidate {c} is not {what}"),
            None => format!("no {what}"),
        }
    }

    /// Reachable electable nodes of `region` in one of `states`, best
    /// (highest writer checkpoint) first — only `chosen` when the operator
    /// chose.
    fn candidates<'a>(
        &self,
        snap: &'a Snapshot,
        region: &str,
        chosen: Option<&str>,
        states: &[VNodeState],
    ) -> Vec<&'a NodeView> {
        let mut c: Vec<&NodeView> = snap
            .nodes
            .iter()
            .filter(|v| {
                let s = &self.cfg.nodes[v.idx];
                v.reachable
                    && s.electable
                    && s.region == region
                    && chosen.is_none_or(|c| c == s.name)
                    && v.info
                        .as_ref()
                        .and_then(|i| i.state)
                        .is_some_and(|st| states.contains(&st))
            })
            .collect();
        c.sort_by_key(|v| std::cmp::Reverse(v.info.as_ref().map_or(-1, |i| i.writer)));
        c
    }

    fn require_region(&self, region: &str) -> R<()> {
        if self
            .cfg
            .nodes
            .iter()
            .any(|n| n.region == region && n.electable)
        {
            Ok(())
        } else {
            Err(EsdbError::new(
                ErrorKind::Refused,
                format!("region {region} has no electable node (priority above 0, not a read-only replica)"),
            ))
        }
    }

    pub(crate) fn no_quorum(&self, snap: &Snapshot) -> Option<EsdbError> {
        let reachable = snap.reachable_voters(&self.cfg);
        if reachable >= self.cfg.quorum() {
            return None;
        }
        let missing: Vec<&str> = snap
            .nodes
            .iter()
            .filter(|v| !v.reachable && !self.cfg.nodes[v.idx].read_only)
            .map(|v| self.name(v))
            .collect();
        Some(EsdbError::new(
            ErrorKind::Refused,
            format!(
                "only {reachable} of {} voting nodes are reachable; EventStoreDB elects a leader only with a quorum of {} and cannot be made to elect without one; bring back {}",
                self.cfg.cluster_size(),
                self.cfg.quorum(),
                missing.join(", ")
            ),
        ))
    }

    fn leader_of(&self, snap: &Snapshot) -> R<(usize, i64, i64)> {
        let l = snap
            .leader()
            .ok_or_else(|| EsdbError::new(ErrorKind::NotReady, "no reachable leader in gossip"))?;
        let i = l.info.as_ref().expect("a leader has gossip");
        Ok((l.idx, i.writer, i.epoch_number))
    }

    async fn readiness(&self, target: &str, chosen: Option<&str>, mode: PromoteMode) -> R<Outcome> {
        self.require_region(target)?;
        let snap = self.snapshot().await;
        if let Some(l) = snap.leader() {
            self.refuse_other_leader(l, target, chosen)?;
            if self.region(l) == target {
                return Ok(Outcome::already_done()
                    .with_member(self.name(l))
                    .with_note(format!("{} already leads in {target}", self.name(l))));
            }
        }
        match mode {
            PromoteMode::Planned => {
                let (_, lw, _) = self.leader_of(&snap)?;
                if let Some(e) = self.no_quorum(&snap) {
                    return Err(EsdbError::new(ErrorKind::NotReady, e.to_string()));
                }
                let cands = self.candidates(&snap, target, chosen, &[VNodeState::Follower]);
                let best = cands.first().ok_or_else(|| {
                    EsdbError::new(
                        ErrorKind::NotReady,
                        self.no_candidate(
                            format!("a reachable follower in {target} that can be elected"),
                            chosen,
                        ),
                    )
                })?;
                let lag = lw - best.info.as_ref().map_or(0, |i| i.writer);
                self.within_bound(best, lag)?;
                Ok(Outcome::done()
                    .with_member(self.name(best))
                    .with_note(format!(
                        "{} is {lag} bytes behind the leader",
                        self.name(best)
                    )))
            }
            PromoteMode::Forced { accept_data_loss } => {
                if let Some(e) = self.no_quorum(&snap) {
                    return Err(e);
                }
                let cands = self.candidates(&snap, target, chosen, ELECTABLE_STATES);
                let best = cands.first().ok_or_else(|| {
                    EsdbError::new(
                        ErrorKind::Refused,
                        self.no_candidate(
                            format!("a reachable electable node in {target}"),
                            chosen,
                        ),
                    )
                })?;
                let last = last_known_writer(&snap);
                let lag = last - best.info.as_ref().map_or(0, |i| i.writer);
                if !accept_data_loss {
                    self.within_bound(best, lag)?;
                }
                Ok(Outcome::done()
                    .with_member(self.name(best))
                    .with_note(format!(
                        "{} is {lag} bytes behind the highest writer checkpoint gossiped ({last})",
                        self.name(best)
                    )))
            }
        }
    }

    fn within_bound(&self, node: &NodeView, lag: i64) -> R<()> {
        if let Some(max) = self.cfg.max_lag_bytes {
            if lag > max as i64 {
                return Err(EsdbError::new(
                    ErrorKind::LagTooHigh,
                    format!("{lag} bytes behind the leader's writer checkpoint, above max_lag_bytes = {max}"),
                )
                .member(self.name(node)));
            }
        }
        Ok(())
    }

    async fn capture(&self) -> R<Outcome> {
        let snap = self.snapshot().await;
        let (l, writer, epoch) = self.leader_of(&snap)?;
        Ok(Outcome::done()
            .with_member(&self.cfg.nodes[l].name)
            .with_position(Position {
                history: History(epoch.max(0) as u64),
                offset: writer.max(0) as u64,
            }))
    }

    async fn wait_position(
        &self,
        target: &str,
        chosen: Option<&str>,
        pos: &Position,
        timeout: Duration,
    ) -> R<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.snapshot().await;
            let cands = self.candidates(
                &snap,
                target,
                chosen,
                &[VNodeState::Follower, VNodeState::Leader],
            );
            if let Some(best) = cands.first() {
                let w = best.info.as_ref().map_or(0, |i| i.writer);
                if w >= pos.offset as i64 {
                    return Ok(Outcome::done().with_member(self.name(best)).with_position(
                        Position {
                            history: History(
                                best.info
                                    .as_ref()
                                    .map_or(0, |i| i.epoch_number.max(0) as u64),
                            ),
                            offset: w as u64,
                        },
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(EsdbError::new(
                        ErrorKind::Timeout,
                        format!(
                            "writer checkpoint {w} did not reach {} within {timeout:?}",
                            pos.offset
                        ),
                    )
                    .member(self.name(best)));
                }
            } else if Instant::now() >= deadline {
                return Err(EsdbError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} within {timeout:?}",
                        self.no_candidate(format!("a reachable follower in {target}"), chosen)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The priorities that prefer `target`, and `chosen` one above the
    /// rest of it (the election among caught-up nodes goes to it).
    fn desired(
        &self,
        target: &str,
        chosen: Option<&str>,
    ) -> std::collections::BTreeMap<String, i64> {
        self.cfg
            .nodes
            .iter()
            .map(|n| {
                let p = if n.region == target && n.electable && chosen == Some(n.name.as_str()) {
                    PREFERRED_PRIORITY + 1
                } else if n.region == target && n.electable {
                    PREFERRED_PRIORITY
                } else {
                    OTHER_PRIORITY
                };
                (n.name.clone(), p)
            })
            .collect()
    }

    /// Set runtime priorities toward `target` on every reachable node and
    /// record them in the control metadata.
    async fn make_sticky(&self, target: &str, chosen: Option<&str>, mut c: Control) -> R<Outcome> {
        self.require_region(target)?;
        let want = self.desired(target, chosen);
        let snap = self.snapshot().await;
        let mut changed = Vec::new();
        let mut notes = Vec::new();
        for v in &snap.nodes {
            let name = self.name(v).to_string();
            let p = want[&name];
            match (&v.info, v.reachable) {
                (Some(i), true) if i.priority == p => {}
                (_, true) => {
                    let client = self.node_client(v.idx).await?;
                    client
                        .set_node_priority(p as usize, &OperationalOptions::default())
                        .await
                        .map_err(|e| EsdbError::client("SetNodePriority", e).member(&name))?;
                    changed.push(format!("{name}={p}"));
                }
                (_, false) => notes.push(format!(
                    "{name} is unreachable: its priority stays as it is; `state` reports the drift once it is back"
                )),
            }
        }
        let recorded = c.preferred_region.as_deref() == Some(target) && c.priorities == want;
        if !recorded {
            c.preferred_region = Some(target.to_string());
            c.priorities = want;
            let c = &c;
            self.with_cluster(|cl| async move { control::write(&cl, c).await })
                .await?;
        }
        let mut out = if changed.is_empty() && recorded {
            Outcome::already_done()
        } else {
            Outcome::done()
        };
        if !changed.is_empty() {
            out = out.with_note(format!("runtime priorities set: {}", changed.join(", ")));
        }
        out = out.with_note(format!(
            "runtime only: a restarted node takes its configured NodePriority again; set NodePriority={PREFERRED_PRIORITY} on the nodes of {target} and {OTHER_PRIORITY} elsewhere to make this stick"
        ));
        for n in notes {
            out = out.with_note(n);
        }
        Ok(out)
    }

    /// Wait for a reachable node in state Leader whose epoch is above `after`.
    async fn wait_leader(&self, after: i64, timeout: Duration) -> R<Snapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.snapshot().await;
            if let Some(l) = snap.leader() {
                if l.info.as_ref().is_some_and(|i| i.epoch_number > after) {
                    return Ok(snap);
                }
            }
            if Instant::now() >= deadline {
                return Err(EsdbError::new(
                    ErrorKind::Timeout,
                    format!("no leader with an epoch above {after} within {timeout:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn promote_planned(
        &self,
        target: &str,
        chosen: Option<&str>,
        ctx: &OpContext,
    ) -> R<Outcome> {
        self.require_region(target)?;
        // A resignation left half done by a crash: wait for its election.
        let mut snap = self.snapshot().await;
        if snap.leader().is_none() {
            snap = self.wait_leader(-1, self.cfg.catch_up).await?;
        }
        if let Some(l) = snap.leader() {
            if self.is_target(l, target, chosen) {
                return Ok(Outcome::already_done()
                    .with_member(self.name(l))
                    .with_note(format!("{} already leads in {target}", self.name(l))));
            }
        }
        let c = self.control(ctx).await?;
        let sticky = self.make_sticky(target, chosen, c).await?;
        let mut notes = sticky.notes;
        for attempt in 1..=RESIGN_ATTEMPTS {
            let snap = self.snapshot().await;
            let (l, lw, epoch) = self.leader_of(&snap)?;
            if self.is_target(&snap.nodes[l], target, chosen) {
                return self.verified(l, notes, ctx).await;
            }
            // Resign only once the target's best candidate holds everything
            // the leader has: the election then ties on checkpoints and the
            // non-resigning, higher-priority candidate wins.
            let reached = self
                .wait_position(
                    target,
                    chosen,
                    &Position {
                        history: History(epoch.max(0) as u64),
                        offset: lw.max(0) as u64,
                    },
                    self.cfg.catch_up,
                )
                .await?;
            let cand = reached.member.unwrap_or_default();
            // The fencing token once more right before the step that moves the leader.
            self.control(ctx).await?;
            let old = self.cfg.nodes[l].name.clone();
            self.node_client(l)
                .await?
                .resign_node(&OperationalOptions::default())
                .await
                .map_err(|e| EsdbError::client("ResignNode", e).member(&old))?;
            let after = self.wait_leader(epoch, self.cfg.catch_up).await?;
            let (nl, _, ne) = self.leader_of(&after)?;
            if self.is_target(&after.nodes[nl], target, chosen) {
                notes.push(format!(
                    "{old} resigned at writer checkpoint {lw}; {} elected in epoch {ne} ({cand} had caught up)",
                    self.cfg.nodes[nl].name
                ));
                return self.verified(nl, notes, ctx).await;
            }
            notes.push(format!(
                "attempt {attempt}: {} won the election after {old} resigned (the candidate in {target} was not caught up when the votes were counted)",
                self.cfg.nodes[nl].name
            ));
        }
        Err(EsdbError::new(
            ErrorKind::NotReady,
            format!(
                "the leader stayed outside {target} after {RESIGN_ATTEMPTS} resignations: {}",
                notes.join("; ")
            ),
        ))
    }

    /// Append to the control stream through the leader and read it back.
    async fn verified(&self, leader: usize, notes: Vec<String>, ctx: &OpContext) -> R<Outcome> {
        let id = uuid::Uuid::new_v4();
        let name = self.cfg.nodes[leader].name.clone();
        let event = EventData::json(
            "switchyard-verify",
            &serde_json::json!({"execution": ctx.execution_id, "token": ctx.token.get(), "leader": name}),
        )
        .map_err(|e| EsdbError::new(ErrorKind::Protocol, e.to_string()))?
        .id(id);
        let written = self
            .retry(self.cfg.catch_up, || {
                let event = event.clone();
                let name = name.clone();
                self.with_cluster(|client| async move {
                    client
                        .append_to_stream(
                            CONTROL_STREAM,
                            &AppendToStreamOptions::default().stream_state(StreamState::Any),
                            event,
                        )
                        .await
                        .map_err(|e| EsdbError::client("verification append", e).member(&name))
                })
            })
            .await?;
        let read_back = self
            .retry(self.cfg.catch_up, || {
                self.with_cluster(|client| async move {
                    let opts = ReadStreamOptions::default()
                        .backwards()
                        .position(StreamPosition::End)
                        .max_count(1)
                        .requires_leader(true);
                    let mut s = client
                        .read_stream(CONTROL_STREAM, &opts)
                        .await
                        .map_err(|e| EsdbError::client("verification read", e))?;
                    let ev = s
                        .next()
                        .await
                        .map_err(|e| EsdbError::client("verification read", e))?;
                    Ok(ev.map(|e| e.get_original_event().id))
                })
            })
            .await?;
        if read_back != Some(id) {
            return Err(EsdbError::new(
                ErrorKind::Protocol,
                format!(
                    "verification append {id} not read back from the leader (read {read_back:?})"
                ),
            )
            .member(&name));
        }
        let snap = self.snapshot().await;
        let epoch = snap.nodes[leader]
            .info
            .as_ref()
            .map_or(0, |i| i.epoch_number.max(0) as u64);
        let mut out = Outcome::done().with_member(&name).with_position(Position {
            history: History(epoch),
            offset: written.position.commit,
        });
        for n in notes {
            out = out.with_note(n);
        }
        Ok(out.with_note(format!(
            "verified: appended {id} to {CONTROL_STREAM} on {name} and read it back"
        )))
    }

    async fn promote_forced(
        &self,
        target: &str,
        chosen: Option<&str>,
        accept: bool,
        ctx: &OpContext,
    ) -> R<Outcome> {
        self.require_region(target)?;
        let snap = self.snapshot().await;
        if let Some(e) = self.no_quorum(&snap) {
            return Err(e);
        }
        let last = last_known_writer(&snap);
        // The survivors elect by themselves; wait for it.
        let snap = match snap.leader() {
            Some(_) => snap,
            None => self.wait_leader(-1, self.cfg.catch_up).await?,
        };
        let (l, _, _) = self.leader_of(&snap)?;
        let already = self.is_target(&snap.nodes[l], target, chosen);
        let mut notes = Vec::new();
        if !already {
            let c = self.control(ctx).await?;
            let sticky = self.make_sticky(target, chosen, c).await?;
            notes.extend(sticky.notes);
            let out = self
                .promote_planned(target, chosen, ctx)
                .await
                .map_err(|e| {
                    EsdbError::new(
                        e.kind(),
                        format!(
                            "the survivors elected {}; moving the leader to {target}: {e}",
                            self.cfg.nodes[l].name
                        ),
                    )
                })?;
            notes.extend(out.notes);
        }
        let snap = self.snapshot().await;
        let (nl, nw, ne) = self.leader_of(&snap)?;
        if !self.is_target(&snap.nodes[nl], target, chosen) {
            return Err(EsdbError::new(
                ErrorKind::NotReady,
                format!(
                    "the leader is {}, not {}",
                    self.cfg.nodes[nl].name,
                    switchyard_controller::operation::in_region(
                        &chosen.map(str::to_string),
                        target
                    )
                ),
            ));
        }
        let epoch_pos = snap.nodes[nl].info.as_ref().map_or(0, |i| i.epoch_position);
        let lost = (last - epoch_pos).max(0) as u64;
        let loss = DataLossEstimate {
            bytes: Some(lost),
            millis: None,
            writes: None,
            note: format!(
                "acknowledged appends were held by a quorum and survive; at risk are appends never acknowledged: up to {lost} bytes the lost nodes had past position {epoch_pos}, where the survivors' logs ended when epoch {ne} began (a returning node truncates them){}",
                if accept { "; data loss was accepted" } else { "" }
            ),
        };
        let mut out = if already {
            Outcome::already_done()
        } else {
            Outcome::done()
        };
        out = out
            .with_member(&self.cfg.nodes[nl].name)
            .with_position(Position {
                history: History(ne.max(0) as u64),
                offset: nw.max(0) as u64,
            });
        out.data_loss = Some(loss);
        for n in notes {
            out = out.with_note(n);
        }
        Ok(out)
    }

    async fn rejoin(&self) -> R<Outcome> {
        let snap = self.snapshot().await;
        let (l, _, _) = self.leader_of(&snap)?;
        let mut down = Vec::new();
        let mut pending = Vec::new();
        for v in &snap.nodes {
            if v.idx == l {
                continue;
            }
            let name = self.name(v).to_string();
            let state = v.info.as_ref().and_then(|i| i.state);
            match (v.reachable, state) {
                (false, _) => down.push(name),
                (true, Some(VNodeState::Follower | VNodeState::ReadOnlyReplica)) => {}
                (true, _) => pending.push(format!(
                    "{name} ({})",
                    v.info
                        .as_ref()
                        .map_or("not in gossip", |i| i.state_name.as_str())
                )),
            }
        }
        if !pending.is_empty() {
            return Err(EsdbError::new(
                ErrorKind::NotReady,
                format!(
                    "not yet following {}: {}",
                    self.cfg.nodes[l].name,
                    pending.join(", ")
                ),
            ));
        }
        if !down.is_empty() {
            return Err(EsdbError::new(
                ErrorKind::Unreachable,
                format!(
                    "{} unreachable; it rejoins by itself when it is back",
                    down.join(", ")
                ),
            ));
        }
        Ok(Outcome::already_done()
            .with_member(&self.cfg.nodes[l].name)
            .with_note(format!(
                "every node follows {} (nodes rejoin by themselves, truncating what they held past the leader's log)",
                self.cfg.nodes[l].name
            )))
    }
}

/// States in which a node can win the next election.
const ELECTABLE_STATES: &[VNodeState] = &[
    VNodeState::Follower,
    VNodeState::CatchingUp,
    VNodeState::Unknown,
    VNodeState::DiscoverLeader,
    VNodeState::PreReplica,
    VNodeState::Leader,
    VNodeState::PreLeader,
];

/// The highest writer checkpoint any node (reachable or last gossiped) had.
fn last_known_writer(snap: &Snapshot) -> i64 {
    snap.nodes
        .iter()
        .filter_map(|v| v.info.as_ref().map(|i| i.writer))
        .max()
        .unwrap_or(0)
}
