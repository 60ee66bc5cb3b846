//! Observation: `replSetGetStatus` from every member (each member's own
//! view of itself is authoritative for its role and optime) and
//! `replSetGetConfig` from the primary (priorities, votes, config version).

use crate::config::MongoConfig;
use crate::error::MongoError;
use crate::MongoController;
use bson::{doc, Bson, Document, Timestamp};
use futures::future::join_all;
use switchyard_controller::{Lag, MemberState, ObservedState, Position, Role, StoreKind};

/// Encode an optime as a [`Position`]: its term is the history, the timestamp
/// (seconds << 32 | increment) the offset, which grows across terms.
pub fn position(ts: Timestamp, term: i64) -> Position {
    Position {
        history: switchyard_controller::History(term.max(0) as u64),
        offset: (u64::from(ts.time) << 32) | u64::from(ts.increment),
    }
}

/// What one member said about itself.
#[derive(Debug, Clone)]
pub struct SelfView {
    /// `myState`.
    pub state: i32,
    /// `stateStr` of the self entry.
    pub state_str: String,
    /// `term`.
    pub term: i64,
    /// Own applied optime.
    pub optime: Option<(Timestamp, i64)>,
    /// Sync source host.
    pub sync_source: Option<String>,
    /// Config version it has installed.
    pub config_version: Option<i64>,
    /// `lastAppliedWallTime` (ms precision, MongoDB 4.4+), else `optimeDate`.
    pub applied_wall_ms: Option<i64>,
    /// `writeMajorityCount`: data-bearing voting members a `w:"majority"`
    /// write (and a safe reconfig's oplog commitment) needs.
    pub write_majority: Option<i64>,
    /// Hosts this member sees healthy as PRIMARY or SECONDARY (itself
    /// included): the members that can acknowledge its writes.
    pub healthy_data: Vec<String>,
}

/// Everything one observation round saw, kept for the operations.
#[derive(Debug)]
pub struct Snapshot {
    /// Per member (topology order): its self view or why it was unreachable.
    pub views: Vec<Result<SelfView, String>>,
    /// The config (from the primary if there is one, else the newest seen).
    pub config: Option<Document>,
    /// Raw serverStatus rollback counters per member (simulator extension / rbid).
    pub rolled_back_ops: Vec<Option<i64>>,
}

fn get_ts(d: &Document) -> Option<(Timestamp, i64)> {
    let o = d.get_document("optime").ok()?;
    let ts = o.get_timestamp("ts").ok()?;
    let t = match o.get("t") {
        Some(Bson::Int64(t)) => *t,
        Some(Bson::Int32(t)) => i64::from(*t),
        _ => -1,
    };
    Some((ts, t))
}

fn as_i64(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

fn parse_status(d: &Document) -> SelfView {
    let me = d
        .get_array("members")
        .ok()
        .and_then(|a| {
            a.iter()
                .filter_map(|m| m.as_document())
                .find(|m| m.get_bool("self").unwrap_or(false))
        })
        .cloned()
        .unwrap_or_default();
    SelfView {
        state: as_i64(d.get("myState")).unwrap_or(-1) as i32,
        state_str: me.get_str("stateStr").unwrap_or("").to_string(),
        term: as_i64(d.get("term")).unwrap_or(-1),
        optime: get_ts(&me),
        sync_source: d
            .get_str("syncSourceHost")
            .ok()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        config_version: as_i64(me.get("configVersion")),
        applied_wall_ms: me
            .get_datetime("lastAppliedWallTime")
            .or_else(|_| me.get_datetime("optimeDate"))
            .ok()
            .map(|d| d.timestamp_millis()),
        write_majority: as_i64(d.get("writeMajorityCount")),
        healthy_data: d
            .get_array("members")
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_document())
                    .filter(|m| {
                        as_i64(m.get("health")) == Some(1) || m.get_bool("self").unwrap_or(false)
                    })
                    .filter(|m| matches!(as_i64(m.get("state")), Some(1 | 2)))
                    .filter_map(|m| m.get_str("name").ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Priority and votes of `host` in a config document.
pub fn config_member<'a>(config: &'a Document, host: &str) -> Option<&'a Document> {
    config
        .get_array("members")
        .ok()?
        .iter()
        .filter_map(|m| m.as_document())
        .find(|m| m.get_str("host").ok() == Some(host))
}

/// Numeric priority of a config member.
pub fn priority_of(m: &Document) -> f64 {
    match m.get("priority") {
        Some(Bson::Double(v)) => *v,
        Some(Bson::Int32(v)) => f64::from(*v),
        Some(Bson::Int64(v)) => *v as f64,
        _ => 1.0,
    }
}

impl MongoController {
    /// Ask every member at once; unreachable members are recorded, not fatal.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, MongoError> {
        let cfg = &self.cfg;
        let limit = cfg.connect_timeout * 2;
        let views: Vec<Result<(SelfView, Option<i64>), String>> =
            join_all((0..cfg.members.len()).map(|i| async move {
                let st = self
                    .conns
                    .admin(cfg, i, doc! { "replSetGetStatus": 1 }, limit)
                    .await
                    .map_err(|e| e.into_error(&cfg.store).to_string())?;
                let rb = self
                    .conns
                    .admin(cfg, i, doc! { "serverStatus": 1, "repl": 1 }, limit)
                    .await
                    .ok()
                    .and_then(|s| {
                        let r = s.get_document("repl").ok()?;
                        as_i64(r.get("simRolledBackOps"))
                    });
                Ok((parse_status(&st), rb))
            }))
            .await;
        let (views, rolled_back_ops): (Vec<_>, Vec<_>) = views
            .into_iter()
            .map(|v| match v {
                Ok((s, rb)) => (Ok(s), rb),
                Err(e) => (Err(e), None),
            })
            .unzip();
        // Config from the primary with the highest term, else the newest.
        let mut order: Vec<usize> = (0..views.len()).filter(|&i| views[i].is_ok()).collect();
        order.sort_by_key(|&i| {
            let v = views[i].as_ref().expect("filtered");
            (
                std::cmp::Reverse(v.state == 1),
                std::cmp::Reverse(v.term),
                std::cmp::Reverse(v.config_version),
            )
        });
        let mut config = None;
        for i in order {
            if let Ok(d) = self
                .conns
                .admin(cfg, i, doc! { "replSetGetConfig": 1 }, limit)
                .await
            {
                if let Ok(c) = d.get_document("config") {
                    config = Some(c.clone());
                    break;
                }
            }
        }
        if views.iter().all(|v| v.is_err()) {
            return Err(MongoError::new(
                switchyard_controller::ErrorKind::Unreachable,
                format!(
                    "no member of replica set {} answered replSetGetStatus",
                    cfg.replica_set
                ),
            ));
        }
        Ok(Snapshot {
            views,
            config,
            rolled_back_ops,
        })
    }

    /// Turn a snapshot into the contract's observed state.
    pub(crate) fn to_state(&self, snap: &Snapshot) -> ObservedState {
        let cfg: &MongoConfig = &self.cfg;
        let primary = snap
            .views
            .iter()
            .filter_map(|v| v.as_ref().ok())
            .filter(|v| v.state == 1)
            .max_by_key(|v| v.term);
        let primary_optime = primary.and_then(|v| v.optime);
        let primary_wall = primary.and_then(|v| v.applied_wall_ms);
        let members = cfg
            .members
            .iter()
            .zip(&snap.views)
            .enumerate()
            .map(|(idx, (m, v))| {
                let cm = snap.config.as_ref().and_then(|c| config_member(c, &m.host));
                let priority = cm.map(priority_of);
                let votes = cm.and_then(|c| as_i64(c.get("votes"))).map(|v| v as u32);
                match v {
                    Err(e) => {
                        let mut s = MemberState::unreachable(&m.name, &m.region, e.clone());
                        s.priority = priority;
                        s.votes = votes;
                        s
                    }
                    Ok(v) => {
                        let role = match v.state {
                            1 => Role::Primary,
                            2 if votes == Some(0) && priority == Some(0.0) => Role::ReadOnly,
                            2 => Role::Secondary,
                            7 => Role::Arbiter,
                            _ => Role::Unknown,
                        };
                        // Lag as MongoDB defines it: the primary's last
                        // applied wall time minus the member's.
                        let lag = match (primary_optime, v.optime) {
                            (Some((p, pt)), Some((o, ot))) if role != Role::Arbiter => {
                                let millis =
                                    if (ot, o.time, o.increment) >= (pt, p.time, p.increment) {
                                        0
                                    } else {
                                        match (primary_wall, v.applied_wall_ms) {
                                            (Some(a), Some(b)) => (a - b).max(0) as u64,
                                            _ => u64::from(p.time.saturating_sub(o.time)) * 1000,
                                        }
                                    };
                                Some(Lag {
                                    bytes: None,
                                    millis: Some(millis),
                                })
                            }
                            _ => None,
                        };
                        MemberState {
                            name: m.name.clone(),
                            region: m.region.clone(),
                            role,
                            reachable: true,
                            position: v.optime.map(|(ts, t)| position(ts, t)),
                            lag,
                            following: v
                                .sync_source
                                .as_deref()
                                .map(|h| cfg.by_host(h).map_or(h.to_string(), |m| m.name.clone())),
                            // A chosen sync source is a live oplog fetch
                            // (`syncSourceHost`); without one the store
                            // does not say, so neither do we.
                            replicating: v.sync_source.as_ref().map(|_| true),
                            fenced: false,
                            fence_evidence: None,
                            priority,
                            votes,
                            detail: Some(format!(
                                "{} term {}{}{}",
                                v.state_str,
                                v.term,
                                match snap.rolled_back_ops[idx] {
                                    Some(n) if n > 0 => format!(", rolled back {n} oplog entries"),
                                    _ => String::new(),
                                },
                                if cm.is_none() && snap.config.is_some() {
                                    " (not in the replica set config)"
                                } else {
                                    ""
                                }
                            )),
                            awaits_rejoin: false,
                        }
                    }
                }
            })
            .collect();
        let state = ObservedState {
            store: cfg.store.clone(),
            kind: StoreKind::Mongodb,
            term: snap
                .views
                .iter()
                .filter_map(|v| v.as_ref().ok())
                .map(|v| switchyard_controller::Term(v.term.max(0) as u64))
                .max(),
            config_version: snap
                .config
                .as_ref()
                .and_then(|c| as_i64(c.get("version")))
                .map(|v| v.max(0) as u64),
            members,
        };
        self.remember(snap, &state);
        state
    }
}
