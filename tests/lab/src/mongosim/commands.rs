//! Command handlers: each takes the request body and answers the document
//! a mongod would, following the command reference pages.

use super::server::Shared;
use super::wire::Request;
use super::world::{common_prefix, num, ts_u64, CmdError, NodeState, ReplConfig, World};
use bson::{doc, Bson, DateTime, Document, Timestamp};
use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wire version of MongoDB 7.0.
pub const MAX_WIRE_VERSION: i32 = 21;
/// The version string `buildInfo` reports.
pub const VERSION: &str = "7.0.0";

/// Codes the server labels `RetryableWriteError` (retryable writes spec).
const RETRYABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Answer one request from a client of member `idx`.
pub async fn handle(shared: &Arc<Shared>, idx: usize, conn_id: i64, req: &Request) -> Document {
    let body = &req.body;
    let name = body.keys().next().cloned().unwrap_or_default();
    let retryable_write = body.contains_key("txnNumber");
    let res = match name.as_str() {
        "hello" => hello(shared, idx, conn_id, body, false).await,
        "isMaster" | "ismaster" => hello(shared, idx, conn_id, body, true).await,
        "ping" => Ok(doc! {}),
        "buildInfo" | "buildinfo" => Ok(build_info()),
        "endSessions" | "killAllSessions" => Ok(doc! {}),
        "killCursors" => {
            let ids = body.get_array("cursors").cloned().unwrap_or_default();
            Ok(
                doc! { "cursorsKilled": [], "cursorsNotFound": ids, "cursorsAlive": [], "cursorsUnknown": [] },
            )
        }
        "getMore" => Err(CmdError::new(43, "CursorNotFound", "cursor id not found")),
        "serverStatus" => Ok(server_status(&shared.lock(), idx)),
        "replSetGetStatus" => status(&shared.lock(), idx),
        "replSetGetConfig" => {
            let w = shared.lock();
            match w.nodes[idx].state {
                NodeState::Removed => Err(removed()),
                _ if body.get_bool("commitmentStatus").unwrap_or(false) => {
                    if w.nodes[idx].state != NodeState::Primary || w.nodes[idx].stepping_down {
                        Err(CmdError::new(
                            10107,
                            "NotWritablePrimary",
                            "commitmentStatus is only supported on primary.",
                        ))
                    } else {
                        Ok(doc! {
                            "config": w.nodes[idx].config.to_document(),
                            "commitmentStatus": w.commitment_status(idx),
                        })
                    }
                }
                _ => Ok(doc! { "config": w.nodes[idx].config.to_document() }),
            }
        }
        "replSetReconfig" => reconfig(shared, idx, body).await,
        "replSetStepDown" => step_down(shared, idx, body).await,
        "replSetFreeze" => freeze(shared, idx, body),
        "replSetStepUp" => step_up(shared, idx),
        "insert" => insert(shared, idx, body).await,
        "find" => read(shared, idx, body, Read::Find),
        "count" => read(shared, idx, body, Read::Count),
        "aggregate" => read(shared, idx, body, Read::Aggregate),
        "" => Err(CmdError::new(59, "CommandNotFound", "empty command")),
        other => Err(CmdError::new(
            59,
            "CommandNotFound",
            format!("no such command: '{other}'"),
        )),
    };
    match res {
        Ok(mut d) => {
            d.insert("ok", 1.0);
            if retryable_write {
                if let Ok(wce) = d.get_document("writeConcernError") {
                    if num(wce.get("code")).is_some_and(|c| RETRYABLE_CODES.contains(&(c as i32))) {
                        d.insert("errorLabels", vec!["RetryableWriteError"]);
                    }
                }
            }
            d
        }
        Err(e) => {
            let mut d =
                doc! { "ok": 0.0, "errmsg": e.msg, "code": e.code, "codeName": e.code_name };
            if retryable_write && RETRYABLE_CODES.contains(&e.code) {
                d.insert("errorLabels", vec!["RetryableWriteError"]);
            }
            d
        }
    }
}

fn removed() -> CmdError {
    CmdError::invalid_config("Our replica set config is invalid or we are not a member of it")
}

fn build_info() -> Document {
    doc! {
        "version": VERSION,
        "gitVersion": "switchyard-mongosim",
        "versionArray": [7, 0, 0, 0],
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": 16_777_216,
        "storageEngines": ["wiredTiger"],
        "modules": [],
    }
}

fn optime_doc(ts: Timestamp, t: i64) -> Document {
    doc! { "ts": ts, "t": t }
}

fn date_of(ts: Timestamp) -> DateTime {
    DateTime::from_millis(i64::from(ts.time) * 1000)
}

/// The primary member `idx` knows of (itself included).
fn primary_view(w: &World, idx: usize) -> Option<usize> {
    if w.nodes[idx].state == NodeState::Primary {
        return Some(idx);
    }
    w.visible_primary(idx)
}

async fn hello(
    shared: &Arc<Shared>,
    idx: usize,
    conn_id: i64,
    body: &Document,
    legacy: bool,
) -> Result<Document, CmdError> {
    // Awaitable hello (SDAM streaming protocol): hold the reply until this
    // member's topology changes or maxAwaitTimeMS passes.
    if let (Ok(tv), Some(max_await)) = (
        body.get_document("topologyVersion"),
        num(body.get("maxAwaitTimeMS")),
    ) {
        let (pid, counter) = (tv.get_object_id("processId").ok(), num(tv.get("counter")));
        let baseline = primary_view(&shared.lock(), idx);
        shared
            .wait_for(Duration::from_millis(max_await.max(0) as u64), |w| {
                let n = &w.nodes[idx];
                let same = pid == Some(n.process_id)
                    && counter == Some(n.tv_counter)
                    && primary_view(w, idx) == baseline;
                (!same).then_some(())
            })
            .await;
    }
    let w = shared.lock();
    let n = &w.nodes[idx];
    let mut d = doc! {
        "topologyVersion": { "processId": n.process_id, "counter": n.tv_counter },
    };
    let primary = n.state == NodeState::Primary;
    let writable = primary && !n.stepping_down;
    if legacy {
        d.insert("ismaster", writable);
    } else {
        d.insert("isWritablePrimary", writable);
    }
    if n.state == NodeState::Removed {
        d.insert("secondary", false);
        d.insert("isreplicaset", true);
        d.insert("info", "Does not have a valid replica set config");
    } else {
        let cfg = &n.config;
        let vis = |f: &dyn Fn(&super::world::MemberConfig) -> bool| -> Vec<String> {
            cfg.members
                .iter()
                .filter(|m| !m.hidden && f(m))
                .map(|m| m.host.clone())
                .collect()
        };
        d.insert("hosts", vis(&|m| !m.arbiter_only && m.priority > 0.0));
        let passives = vis(&|m| !m.arbiter_only && m.priority == 0.0);
        if !passives.is_empty() {
            d.insert("passives", passives);
        }
        let arbiters = vis(&|m| m.arbiter_only);
        if !arbiters.is_empty() {
            d.insert("arbiters", arbiters);
        }
        d.insert("setName", &cfg.set_name);
        d.insert("setVersion", cfg.version as i32);
        d.insert("secondary", n.state == NodeState::Secondary);
        if let Some(p) = primary_view(&w, idx) {
            d.insert("primary", &w.nodes[p].host);
        }
        d.insert("me", &n.host);
        if let Some(me) = n.me() {
            if me.arbiter_only {
                d.insert("arbiterOnly", true);
            }
            if me.hidden {
                d.insert("hidden", true);
            }
            if me.priority == 0.0 && !me.arbiter_only {
                d.insert("passive", true);
            }
        }
        if primary {
            d.insert("electionId", n.election_id());
        }
        let (ts, t) = n.last_optime();
        let (cts, ct) = n.commit_optime();
        d.insert(
            "lastWrite",
            doc! {
                "opTime": optime_doc(ts, t),
                "lastWriteDate": date_of(ts),
                "majorityOpTime": optime_doc(cts, ct),
                "majorityWriteDate": date_of(cts),
            },
        );
    }
    if body.get_bool("helloOk").unwrap_or(false) {
        d.insert("helloOk", true);
    }
    d.insert("maxBsonObjectSize", 16_777_216);
    d.insert("maxMessageSizeBytes", 48_000_000);
    d.insert("maxWriteBatchSize", 100_000);
    d.insert("localTime", DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", conn_id);
    d.insert("minWireVersion", 0);
    d.insert("maxWireVersion", MAX_WIRE_VERSION);
    d.insert("readOnly", false);
    Ok(d)
}

fn server_status(w: &World, idx: usize) -> Document {
    let n = &w.nodes[idx];
    doc! {
        "host": &n.host,
        "version": VERSION,
        "process": "mongod",
        "localTime": DateTime::now(),
        "repl": {
            "setName": &n.config.set_name,
            "isWritablePrimary": n.state == NodeState::Primary,
            "secondary": n.state == NodeState::Secondary,
            "me": &n.host,
            "rbid": n.rolled_back_ops as i64,
            // Not in a real server (which writes rolled-back documents to
            // rollback files instead): how many oplog entries this member
            // rolled back, for tests and the controller's loss report.
            "simRolledBackOps": n.rolled_back_ops as i64,
        },
    }
}

fn status(w: &World, idx: usize) -> Result<Document, CmdError> {
    let n = &w.nodes[idx];
    if n.state == NodeState::Removed {
        return Err(removed());
    }
    let cfg = &n.config;
    let (my_code, _) = n.state.code(true);
    let (ts, t) = n.last_optime();
    let (cts, ct) = n.commit_optime();
    let mut members = Vec::new();
    for m in &cfg.members {
        let j = w.by_host(&m.host);
        let up = j.is_some_and(|j| w.reachable(idx, j));
        let mut md = doc! { "_id": m.id, "name": &m.host };
        match j {
            Some(j) if up => {
                let o = &w.nodes[j];
                let (code, s) = o.state.code(true);
                let (ots, ot) = o.last_optime();
                md.insert("health", 1.0);
                md.insert("state", code);
                md.insert("stateStr", s);
                if !m.arbiter_only {
                    md.insert("optime", optime_doc(ots, ot));
                    md.insert("optimeDurable", optime_doc(ots, ot));
                    md.insert("optimeDate", date_of(ots));
                    md.insert(
                        "lastAppliedWallTime",
                        o.oplog.last().map_or(DateTime::from_millis(0), |e| e.wall),
                    );
                }
                md.insert("syncSourceHost", o.sync_source.clone().unwrap_or_default());
                md.insert("configVersion", o.config.version as i32);
                md.insert("configTerm", o.config.term as i32);
                if o.state == NodeState::Primary {
                    md.insert("electionDate", o.election_date.unwrap_or(DateTime::MIN));
                }
                if j == idx {
                    md.insert("self", true);
                } else {
                    md.insert("lastHeartbeat", DateTime::now());
                    md.insert("lastHeartbeatRecv", DateTime::now());
                    md.insert("pingMs", 0i64);
                }
            }
            _ => {
                let (code, s) = NodeState::Secondary.code(false);
                md.insert("health", 0.0);
                md.insert("state", code);
                md.insert("stateStr", s);
                if !m.arbiter_only {
                    let zero = Timestamp {
                        time: 0,
                        increment: 0,
                    };
                    md.insert("optime", optime_doc(zero, -1));
                    md.insert("optimeDurable", optime_doc(zero, -1));
                    md.insert("optimeDate", DateTime::from_millis(0));
                }
                if let Some(last) = n.last_heartbeat.get(&m.host) {
                    md.insert("lastHeartbeatRecv", *last);
                }
                md.insert(
                    "lastHeartbeatMessage",
                    "Couldn't get a connection within the time limit",
                );
            }
        }
        members.push(Bson::Document(md));
    }
    Ok(doc! {
        "set": &cfg.set_name,
        "date": DateTime::now(),
        "myState": my_code,
        "term": n.term,
        "syncSourceHost": n.sync_source.clone().unwrap_or_default(),
        "heartbeatIntervalMillis": cfg.heartbeat_ms as i64,
        "majorityVoteCount": cfg.majority_votes(),
        "writeMajorityCount": cfg.write_majority() as i32,
        "votingMembersCount": cfg.members.iter().filter(|m| m.votes > 0).count() as i32,
        "writableVotingMembersCount": cfg.members.iter().filter(|m| m.votes > 0 && !m.arbiter_only).count() as i32,
        "optimes": {
            "lastCommittedOpTime": optime_doc(cts, ct),
            "lastCommittedWallTime": date_of(cts),
            "appliedOpTime": optime_doc(ts, t),
            "durableOpTime": optime_doc(ts, t),
            "lastAppliedWallTime": date_of(ts),
        },
        "members": members,
    })
}

/// `replSetReconfig` as `CmdReplSetReconfig::run` (`repl_set_commands.cpp`)
/// does it since 4.4 ("safe reconfig"): a non-force reconfig first waits —
/// for `maxTimeMS`, else without limit — until the current config is
/// committed: installed by a majority of the voting members (arbiters
/// count) and, unless the current config came from a forced reconfig, the
/// last committed entry of the previous config and the primary's first
/// entry of its term majority-committed in the current config (data-bearing
/// voting members only). Expiry is `CurrentConfigNotCommittedYet` (308).
/// Then the new config is validated and installed, and the command waits
/// again until a majority of voting members installed it (`MaxTimeMSExpired`
/// on expiry). `force: true` skips all of that.
async fn reconfig(shared: &Arc<Shared>, idx: usize, body: &Document) -> Result<Document, CmdError> {
    let new = body
        .get_document("replSetReconfig")
        .map_err(|_| CmdError::bad_value("replSetReconfig expects a config document"))?;
    let force = body.get_bool("force").unwrap_or(false);
    // maxTimeMS is cumulative over both waits; without it mongod waits
    // indefinitely (an hour stands in for that here).
    let limit = num(body.get("maxTimeMS"))
        .filter(|v| *v > 0)
        .map_or(Duration::from_secs(3600), |v| {
            Duration::from_millis(v as u64)
        });
    let deadline = Instant::now() + limit;
    if !force {
        let pre = shared
            .wait_for(limit, |w| {
                let n = &w.nodes[idx];
                if n.state != NodeState::Primary || n.stepping_down {
                    return Some(Err(CmdError::new(
                        10107,
                        "NotWritablePrimary",
                        "New config is rejected :: caused by :: replSetReconfig should only be run on a writable PRIMARY",
                    )));
                }
                let oplog_wait = n.config.term != -1;
                (w.config_committed(idx)
                    && (!oplog_wait || w.oplog_committed(idx, w.oplog_commitment_len(idx))))
                .then_some(Ok(()))
            })
            .await;
        match pre {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => {
                let w = shared.lock();
                let n = &w.nodes[idx];
                let vt = format!("{{version: {}, term: {}}}", n.config.version, n.config.term);
                let msg = if !w.config_committed(idx) {
                    format!(
                        "New config is rejected :: caused by :: Current config with {vt} has not yet propagated to a majority of nodes"
                    )
                } else {
                    let len = w.oplog_commitment_len(idx);
                    let (ts, t) = n.oplog.get(len.wrapping_sub(1)).map_or(
                        (
                            Timestamp {
                                time: 0,
                                increment: 0,
                            },
                            -1,
                        ),
                        |e| (e.ts, e.t),
                    );
                    format!(
                        "New config is rejected :: caused by :: Last committed optime in the previous config \
                         ({{ ts: Timestamp({}, {}), t: {t} }}) has not yet become committed in the current config with {vt}",
                        ts.time, ts.increment
                    )
                };
                return Err(CmdError::new(308, "CurrentConfigNotCommittedYet", msg));
            }
        }
    }
    let installed = shared.mutate(|w| -> Result<ReplConfig, CmdError> {
        let now = Instant::now();
        let n = &w.nodes[idx];
        if !force && n.state != NodeState::Primary {
            return Err(CmdError::not_primary());
        }
        let mut cfg = ReplConfig::from_document(new, &n.config)?;
        if cfg.set_name != n.config.set_name {
            return Err(CmdError::invalid_config(format!(
                "set name {} does not match this replica set ({})",
                cfg.set_name, n.config.set_name
            )));
        }
        if cfg.member(&n.host).is_none() {
            return Err(CmdError::invalid_config(format!(
                "this node ({}) is not a member of the new config",
                n.host
            )));
        }
        if force {
            // Forced configs jump far ahead so they win over any config a
            // cut-off majority might still install.
            cfg.version = cfg.version.max(n.config.version) + 100_000;
            cfg.term = -1;
        } else {
            if cfg.version <= n.config.version {
                return Err(CmdError::new(
                    103,
                    "NewReplicaSetConfigurationIncompatible",
                    format!(
                        "new config version {} must be greater than the current version {}",
                        cfg.version, n.config.version
                    ),
                ));
            }
            let voter = |c: &ReplConfig, h: &str| c.member(h).is_some_and(|m| m.votes > 0);
            let mut hosts: Vec<&str> = cfg.members.iter().map(|m| m.host.as_str()).collect();
            hosts.extend(n.config.members.iter().map(|m| m.host.as_str()));
            hosts.sort_unstable();
            hosts.dedup();
            let changed = hosts
                .iter()
                .filter(|h| voter(&cfg, h) != voter(&n.config, h))
                .count();
            if changed > 1 {
                return Err(CmdError::new(
                    103,
                    "NewReplicaSetConfigurationIncompatible",
                    "non-force replica set reconfig can only add or remove at most 1 voting member",
                ));
            }
            let reachable_votes: i32 = cfg
                .members
                .iter()
                .filter(|m| w.by_host(&m.host).is_some_and(|j| w.reachable(idx, j)))
                .map(|m| m.votes)
                .sum();
            if reachable_votes < cfg.majority_votes() {
                return Err(CmdError::new(
                    74,
                    "NodeNotFound",
                    "Quorum check failed because not enough voting nodes responded",
                ));
            }
            cfg.term = n.term;
        }
        w.heartbeat_now();
        let node = &mut w.nodes[idx];
        node.config = cfg.clone();
        // `updateLastCommittedInPrevConfig`, atomically with the install.
        node.committed_in_prev_config = node.commit_len;
        node.tv_counter += 1;
        if node.state == NodeState::Primary && !node.me().is_some_and(|m| m.electable()) {
            w.step_down(idx, now, None);
        }
        Ok(cfg)
    })?;
    if force {
        return Ok(doc! {});
    }
    // Then the new config must reach a majority of voting members.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let done = shared
        .wait_for(remaining, |w| {
            let have = installed
                .members
                .iter()
                .filter(|m| m.votes > 0)
                .filter_map(|m| w.by_host(&m.host))
                .filter(|&j| j == idx || w.reachable(idx, j))
                .filter(|&j| !installed.newer_than(&w.nodes[j].config))
                .count();
            (have as i32 >= installed.majority_votes()).then_some(())
        })
        .await;
    match done {
        Some(()) => Ok(doc! {}),
        None => Err(CmdError::new(
            50,
            "MaxTimeMSExpired",
            "Reconfig finished but failed to propagate to a majority :: caused by :: operation exceeded time limit",
        )),
    }
}

async fn step_down(
    shared: &Arc<Shared>,
    idx: usize,
    body: &Document,
) -> Result<Document, CmdError> {
    let secs = num(body.get("replSetStepDown")).unwrap_or(60);
    let catch_up = num(body.get("secondaryCatchUpPeriodSecs")).unwrap_or(10);
    let force = body.get_bool("force").unwrap_or(false);
    if secs <= 0 || catch_up < 0 {
        return Err(CmdError::bad_value("stepDownSecs must be positive"));
    }
    if catch_up > secs {
        return Err(CmdError::bad_value(
            "secondaryCatchUpPeriodSecs must be less than or equal to stepDownSecs",
        ));
    }
    let (term, target) = shared.mutate(|w| {
        let n = &mut w.nodes[idx];
        if n.state != NodeState::Primary {
            return Err(CmdError::not_primary());
        }
        // Writes are refused while the primary waits for a secondary to catch up.
        n.stepping_down = true;
        n.tv_counter += 1;
        Ok((n.term, n.oplog.len()))
    })?;
    // `TopologyCoordinator::isSafeToStepDown`: the primary's last applied
    // optime on a write majority (`$majority`: data-bearing voters), and on
    // at least one caught-up *electable* secondary — one its heartbeats do
    // not report frozen (`_getUnelectableReason`: `StepDownPeriodActive`).
    let caught_up = |w: &World| -> Option<Result<Vec<usize>, CmdError>> {
        let n = &w.nodes[idx];
        if n.state != NodeState::Primary || n.term != term {
            return Some(Err(CmdError::not_primary()));
        }
        let now = Instant::now();
        let has = |j: usize| j == idx || common_prefix(&w.nodes[j].oplog, &n.oplog) >= target;
        let majority = n
            .config
            .members
            .iter()
            .filter(|m| m.votes > 0 && !m.arbiter_only)
            .filter_map(|m| w.by_host(&m.host))
            .filter(|&j| j == idx || w.reachable(idx, j))
            .filter(|&j| has(j))
            .count();
        if majority < n.config.write_majority() {
            return None;
        }
        let ok: Vec<usize> = (0..w.nodes.len())
            .filter(|&j| j != idx && w.reachable(idx, j))
            .filter(|&j| w.nodes[j].state == NodeState::Secondary)
            .filter(|&j| {
                n.config
                    .member(&w.nodes[j].host)
                    .is_some_and(|m| m.electable())
            })
            .filter(|&j| !w.frozen(j, now))
            .filter(|&j| has(j))
            .collect();
        (!ok.is_empty()).then_some(Ok(ok))
    };
    let found = shared
        .wait_for(Duration::from_secs(catch_up as u64), caught_up)
        .await;
    let nominees = match found {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(e),
        None if force => Vec::new(),
        None => {
            shared.mutate(|w| {
                w.nodes[idx].stepping_down = false;
                w.nodes[idx].tv_counter += 1;
            });
            return Err(CmdError::new(
                262,
                "ExceededTimeLimit",
                format!("No electable secondaries caught up as of {catch_up}s"),
            ));
        }
    };
    shared.mutate(|w| {
        let now = Instant::now();
        if w.nodes[idx].state != NodeState::Primary || w.nodes[idx].term != term {
            return Err(CmdError::not_primary());
        }
        w.step_down(idx, now, Some(Duration::from_secs(secs as u64)));
        w.heartbeat_now();
        // Election hand-off (`chooseElectionHandoffCandidate`): the caught-up
        // electable secondary of the highest priority stands at once; on a
        // tie the one listed first in the config.
        let cfg = w.nodes[idx].config.clone();
        let prio = |j: usize| cfg.member(&w.nodes[j].host).map_or(0.0, |m| m.priority);
        let pos = |j: usize| {
            cfg.members
                .iter()
                .position(|m| m.host == w.nodes[j].host)
                .unwrap_or(usize::MAX)
        };
        if let Some(best) = nominees.iter().copied().max_by(|&a, &b| {
            prio(a)
                .partial_cmp(&prio(b))
                .unwrap_or(Ordering::Equal)
                .then(pos(b).cmp(&pos(a)))
        }) {
            if !w.run_election(best, now, false) {
                w.nodes[best].step_up_requested = true;
            }
        }
        Ok(doc! {})
    })
}

fn freeze(shared: &Arc<Shared>, idx: usize, body: &Document) -> Result<Document, CmdError> {
    let secs = num(body.get("replSetFreeze")).unwrap_or(0);
    shared.mutate(|w| {
        let n = &mut w.nodes[idx];
        match n.state {
            NodeState::Primary => Err(CmdError::new(
                95,
                "NotSecondary",
                "cannot freeze node when primary or running for election. state: Primary",
            )),
            NodeState::Arbiter | NodeState::Removed => Err(CmdError::new(
                95,
                "NotSecondary",
                "cannot freeze a node that is not a secondary",
            )),
            NodeState::Secondary if secs <= 0 => {
                n.frozen_until = None;
                Ok(doc! { "info": "unfreezing" })
            }
            // `prepareFreezeResponse`: a freeze never shortens one in force
            // (a step-down's, say); only `0` lifts it.
            NodeState::Secondary => {
                let until = Instant::now() + Duration::from_secs(secs as u64);
                n.frozen_until = Some(n.frozen_until.map_or(until, |t| t.max(until)));
                Ok(doc! {})
            }
        }
    })
}

fn step_up(shared: &Arc<Shared>, idx: usize) -> Result<Document, CmdError> {
    shared.mutate(|w| {
        if w.nodes[idx].state == NodeState::Primary {
            return Ok(doc! { "info": "already primary" });
        }
        if !w.nodes[idx].me().is_some_and(|m| m.electable()) {
            return Err(CmdError::new(
                125,
                "CommandFailed",
                "this node is not electable",
            ));
        }
        // A frozen member is unelectable (`StepDownPeriodActive`), also
        // when asked to step up.
        let now = Instant::now();
        if w.frozen(idx, now) {
            return Err(CmdError::new(
                125,
                "CommandFailed",
                "Election failed: I am still waiting for stepdown period to end",
            ));
        }
        if w.run_election(idx, now, false) {
            Ok(doc! {})
        } else {
            Err(CmdError::new(125, "CommandFailed", "Election failed."))
        }
    })
}

fn ns_of(body: &Document, cmd: &str) -> Result<String, CmdError> {
    let coll = body
        .get_str(cmd)
        .map_err(|_| CmdError::bad_value(format!("{cmd} expects a collection name")))?;
    let db = body.get_str("$db").unwrap_or("test");
    Ok(format!("{db}.{coll}"))
}

async fn insert(shared: &Arc<Shared>, idx: usize, body: &Document) -> Result<Document, CmdError> {
    let ns = ns_of(body, "insert")?;
    let docs: Vec<Document> = body
        .get_array("documents")
        .map_err(|_| CmdError::bad_value("insert expects documents"))?
        .iter()
        .filter_map(|b| b.as_document().cloned())
        .collect();
    let ordered = body.get_bool("ordered").unwrap_or(true);
    let txn = match (body.get_document("lsid"), num(body.get("txnNumber"))) {
        (Ok(lsid), Some(t)) => {
            let mut b = Vec::new();
            let _ = lsid.to_writer(&mut b);
            Some((b, t))
        }
        _ => None,
    };
    let wc = body.get_document("writeConcern").ok();
    let w_val = wc.and_then(|d| d.get("w").cloned());
    let wtimeout = wc.and_then(|d| num(d.get("wtimeout"))).unwrap_or(0);
    let (res, mark) = shared.mutate(|w| {
        if matches!(w.nodes[idx].state, NodeState::Arbiter | NodeState::Removed) {
            return Err(CmdError::not_primary());
        }
        let res = w.insert(idx, &ns, docs, ordered, txn)?;
        let mark = res.mark(&w.nodes[idx]);
        Ok((res, mark))
    })?;
    let mut out = doc! { "n": res.n };
    if !res.write_errors.is_empty() {
        let errs: Vec<Bson> = res
            .write_errors
            .iter()
            .map(|(i, c, m)| Bson::Document(doc! { "index": i, "code": c, "errmsg": m }))
            .collect();
        out.insert("writeErrors", errs);
    }
    let need: Option<usize> = match &w_val {
        Some(Bson::String(s)) if s == "majority" => Some(0),
        Some(b) => num(Some(b)).filter(|v| *v > 1).map(|v| v as usize),
        None => None,
    };
    if let Some(need) = need {
        let limit = if wtimeout > 0 {
            Duration::from_millis(wtimeout as u64)
        } else {
            Duration::from_secs(3600)
        };
        let term = res.term;
        let r = shared
            .wait_for(limit, |w| {
                if need == 0 {
                    w.majority_status(idx, &mark, term)
                } else {
                    w.w_status(idx, &mark, term, need)
                }
            })
            .await;
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                out.insert(
                    "writeConcernError",
                    doc! { "code": e.code, "codeName": e.code_name, "errmsg": e.msg },
                );
            }
            None => {
                out.insert(
                    "writeConcernError",
                    doc! {
                        "code": 64, "codeName": "WriteConcernFailed",
                        "errmsg": "waiting for replication timed out",
                        "errInfo": { "wtimeout": true },
                    },
                );
            }
        }
    }
    Ok(out)
}

enum Read {
    Find,
    Count,
    Aggregate,
}

fn read(
    shared: &Arc<Shared>,
    idx: usize,
    body: &Document,
    kind: Read,
) -> Result<Document, CmdError> {
    let cmd = match kind {
        Read::Find => "find",
        Read::Count => "count",
        Read::Aggregate => "aggregate",
    };
    let ns = ns_of(body, cmd)?;
    let w = shared.lock();
    let n = &w.nodes[idx];
    match n.state {
        NodeState::Primary => {}
        NodeState::Secondary => {
            let mode = body
                .get_document("$readPreference")
                .ok()
                .and_then(|r| r.get_str("mode").ok())
                .unwrap_or("primary");
            if mode == "primary" {
                return Err(CmdError::new(
                    13435,
                    "NotPrimaryNoSecondaryOk",
                    "not primary and secondaryOk=false",
                ));
            }
        }
        _ => {
            return Err(CmdError::new(
                13436,
                "NotPrimaryOrSecondary",
                "node is not in primary or recovering state",
            ))
        }
    }
    let majority = body
        .get_document("readConcern")
        .ok()
        .and_then(|r| r.get_str("level").ok())
        == Some("majority");
    let visible_up_to = if majority {
        ts_u64(n.commit_optime().0)
    } else {
        u64::MAX
    };
    let all: Vec<&Document> = n
        .data
        .get(&ns)
        .map(|c| c.docs.range(..=visible_up_to).map(|(_, d)| d).collect())
        .unwrap_or_default();
    let empty = Document::new();
    let (filter, mut skip, mut limit, mut group) = match kind {
        Read::Find | Read::Count => {
            let f = body
                .get_document(if matches!(kind, Read::Find) {
                    "filter"
                } else {
                    "query"
                })
                .unwrap_or(&empty);
            (
                f.clone(),
                num(body.get("skip")).unwrap_or(0).max(0) as usize,
                num(body.get("limit")).unwrap_or(0).unsigned_abs() as usize,
                None,
            )
        }
        Read::Aggregate => (Document::new(), 0, 0, None),
    };
    let mut stages_filter = vec![filter];
    if let Read::Aggregate = kind {
        for st in body
            .get_array("pipeline")
            .map_err(|_| CmdError::bad_value("aggregate expects a pipeline"))?
        {
            let st = st
                .as_document()
                .ok_or_else(|| CmdError::bad_value("pipeline stage must be a document"))?;
            let (k, v) = st
                .iter()
                .next()
                .ok_or_else(|| CmdError::bad_value("empty stage"))?;
            match k.as_str() {
                "$match" => stages_filter.push(v.as_document().cloned().unwrap_or_default()),
                "$skip" => skip = num(Some(v)).unwrap_or(0) as usize,
                "$limit" => limit = num(Some(v)).unwrap_or(0) as usize,
                "$group" => {
                    let g = v.as_document().cloned().unwrap_or_default();
                    let out_field = g.keys().find(|k| *k != "_id").cloned().unwrap_or_else(|| "n".into());
                    group = Some((g.get("_id").cloned().unwrap_or(Bson::Null), out_field));
                }
                "$count" => group = Some((Bson::Null, format!("$count:{}", v.as_str().unwrap_or("count")))),
                other => {
                    return Err(CmdError::new(
                        40324,
                        "Location40324",
                        format!("Unrecognized pipeline stage name: '{other}' (simulator supports $match, $skip, $limit, $group count, $count)"),
                    ))
                }
            }
        }
    }
    let mut hits: Vec<&Document> = all
        .into_iter()
        .filter(|d| stages_filter.iter().all(|f| matches(d, f)))
        .skip(skip)
        .collect();
    if limit > 0 {
        hits.truncate(limit);
    }
    match kind {
        Read::Count => Ok(doc! { "n": hits.len() as i32 }),
        Read::Find => {
            let batch: Vec<Bson> = hits
                .into_iter()
                .map(|d| Bson::Document(d.clone()))
                .collect();
            Ok(doc! { "cursor": { "firstBatch": batch, "id": 0i64, "ns": ns } })
        }
        Read::Aggregate => {
            let batch: Vec<Bson> = match group {
                Some((_, f)) if hits.is_empty() && !f.is_empty() => Vec::new(),
                Some((id, f)) => match f.strip_prefix("$count:") {
                    Some(name) => vec![Bson::Document(doc! { name: hits.len() as i32 })],
                    None => vec![Bson::Document(doc! { "_id": id, f: hits.len() as i32 })],
                },
                None => hits
                    .into_iter()
                    .map(|d| Bson::Document(d.clone()))
                    .collect(),
            };
            Ok(doc! { "cursor": { "firstBatch": batch, "id": 0i64, "ns": ns } })
        }
    }
}

fn lookup<'a>(d: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut cur = d;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        cur = v.as_document()?;
    }
    None
}

fn cmp(a: &Bson, b: &Bson) -> Option<Ordering> {
    use super::world::numf;
    if let (Some(x), Some(y)) = (numf(Some(a)), numf(Some(b))) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Bson::String(x), Bson::String(y)) => Some(x.cmp(y)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => Some(x.cmp(y)),
        (Bson::DateTime(x), Bson::DateTime(y)) => Some(x.cmp(y)),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => Some(ts_u64(*x).cmp(&ts_u64(*y))),
        (Bson::Boolean(x), Bson::Boolean(y)) => Some(x.cmp(y)),
        (x, y) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

/// Query matching: equality, dotted paths, `$eq $ne $gt $gte $lt $lte $in
/// $nin $exists`, `$and`, `$or`.
pub fn matches(d: &Document, filter: &Document) -> bool {
    filter.iter().all(|(k, cond)| match k.as_str() {
        "$and" => cond.as_array().is_some_and(|a| {
            a.iter()
                .all(|f| f.as_document().is_some_and(|f| matches(d, f)))
        }),
        "$or" => cond.as_array().is_some_and(|a| {
            a.iter()
                .any(|f| f.as_document().is_some_and(|f| matches(d, f)))
        }),
        path => {
            let v = lookup(d, path);
            match cond {
                Bson::Document(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => {
                    ops.iter().all(|(op, arg)| {
                        let c = v.and_then(|v| cmp(v, arg));
                        match op.as_str() {
                            "$eq" => c == Some(Ordering::Equal),
                            "$ne" => c != Some(Ordering::Equal),
                            "$gt" => c == Some(Ordering::Greater),
                            "$gte" => matches!(c, Some(Ordering::Greater | Ordering::Equal)),
                            "$lt" => c == Some(Ordering::Less),
                            "$lte" => matches!(c, Some(Ordering::Less | Ordering::Equal)),
                            "$in" => arg.as_array().is_some_and(|a| {
                                a.iter()
                                    .any(|x| v.and_then(|v| cmp(v, x)) == Some(Ordering::Equal))
                            }),
                            "$nin" => !arg.as_array().is_some_and(|a| {
                                a.iter()
                                    .any(|x| v.and_then(|v| cmp(v, x)) == Some(Ordering::Equal))
                            }),
                            "$exists" => v.is_some() == arg.as_bool().unwrap_or(true),
                            _ => false,
                        }
                    })
                }
                other => v.and_then(|v| cmp(v, other)) == Some(Ordering::Equal),
            }
        }
    })
}
