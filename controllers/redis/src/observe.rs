//! Observation: `ROLE`, `INFO replication`, the fencing record and the
//! fence setting of every data member, and what every Sentinel says, all
//! in parallel; then the [`ObservedState`] the coordinator checks.

use crate::config::MemberSpec;
use crate::error::RedisError;
use crate::RedisController;
use redis::Value;
use std::collections::HashMap;
use switchyard_controller::{Lag, MemberState, ObservedState, Position, Role, StoreKind};

/// `min-replicas-to-write` of a fenced master: more replicas than any
/// deployment has, so the master refuses every write (`-NOREPLICAS`)
/// until the controller restores the member's own setting.
pub(crate) const FENCE_MIN_REPLICAS: i64 = 2_147_483_647;

/// A `min-replicas-to-write` to restore: `v` unless it is the fence (or
/// unknown), else Redis' default 0.
pub(crate) fn unfenced(v: Option<i64>) -> i64 {
    v.filter(|b| *b != FENCE_MIN_REPLICAS).unwrap_or(0)
}

/// What the controller keeps in the store (hash `switchyard:<store>`):
/// the coordinator's fencing token and the promotions it recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    /// Highest fencing token that acted on the store.
    pub token: u64,
    /// The execution that carried it.
    pub execution: String,
    /// Store term Switchyard recorded with its last promotion (without
    /// Sentinel, the store's term itself).
    pub term: u64,
    /// Member promoted at `term`.
    pub promoted: Option<String>,
    /// The master's own `min-replicas-to-write`, saved when it was fenced.
    pub baseline_min_replicas: Option<i64>,
}

/// One replica as its master lists it in `INFO replication`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplicaLine {
    pub ip: String,
    pub port: u16,
    pub state: String,
    pub offset: u64,
    /// Seconds since the replica's last acknowledgement.
    pub lag_secs: u64,
}

/// One data member as observed.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub spec: MemberSpec,
    pub error: Option<String>,
    /// `ROLE` said master.
    pub master: bool,
    /// A replica's upstream (`ROLE`: host, port).
    pub upstream: Option<(String, u16)>,
    /// Replica: `master_link_status:up`.
    pub link_up: bool,
    /// Replica: `master_last_io_seconds_ago`.
    pub last_io_secs: Option<i64>,
    /// Replication offset: the master's `master_repl_offset`, a replica's
    /// `slave_repl_offset` (what it has processed).
    pub offset: Option<u64>,
    /// The master's replicas.
    pub replicas: Vec<ReplicaLine>,
    pub min_replicas: Option<i64>,
    pub replica_priority: Option<i64>,
    pub record: Record,
    pub run_id: Option<String>,
}

impl Probe {
    pub fn reachable(&self) -> bool {
        self.error.is_none()
    }
    pub fn fenced(&self) -> bool {
        self.min_replicas == Some(FENCE_MIN_REPLICAS)
    }
    pub fn is_replica(&self) -> bool {
        self.reachable() && !self.master
    }
    pub fn follows(&self, m: &MemberSpec) -> bool {
        self.upstream
            .as_ref()
            .is_some_and(|(h, p)| *p == m.port && h.eq_ignore_ascii_case(&m.hostname))
    }
}

/// One Sentinel as observed.
#[derive(Debug, Clone)]
pub(crate) struct SentinelProbe {
    pub spec: MemberSpec,
    pub error: Option<String>,
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    pub master_addr: Option<(String, u16)>,
    /// `SENTINEL MASTER`: config-epoch, flags, down-after-milliseconds.
    pub config_epoch: Option<u64>,
    pub flags: String,
    pub down_after_ms: Option<u64>,
    /// `SENTINEL SENTINELS`: the other Sentinels it knows.
    pub other_sentinels: usize,
    /// `SENTINEL CKQUORUM`: Ok(reply) or the refusal.
    pub ckquorum: Result<String, String>,
    /// `SENTINEL REPLICAS`: `slave-priority` by `ip:port`.
    pub replica_priorities: HashMap<String, i64>,
    /// `INFO sentinel`: `sentinel_tilt:1` (it acts on nothing until it leaves TILT).
    pub tilt: bool,
    /// `SENTINEL REPLICAS`: `master-link-down-time` (ms) by `ip:port`.
    pub replica_link_down_ms: HashMap<String, i64>,
}

impl SentinelProbe {
    pub fn reachable(&self) -> bool {
        self.error.is_none()
    }
    pub fn failover_in_progress(&self) -> bool {
        self.flags.contains("failover_in_progress")
    }
    pub fn names(&self, m: &MemberSpec) -> bool {
        self.master_addr
            .as_ref()
            .is_some_and(|(h, p)| *p == m.port && h.eq_ignore_ascii_case(&m.hostname))
    }
}

/// Everything one observation saw.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub members: Vec<Probe>,
    pub sentinels: Vec<SentinelProbe>,
    pub sentinel_managed: bool,
}

impl Snapshot {
    /// Data members whose `ROLE` says master.
    pub fn masters(&self) -> impl Iterator<Item = &Probe> {
        self.members.iter().filter(|p| p.reachable() && p.master)
    }

    /// The master every reachable Sentinel names, when they all name the same.
    pub fn sentinel_master(&self) -> Option<&MemberSpec> {
        let mut reachable = self.sentinels.iter().filter(|s| s.reachable());
        let first = reachable.next()?;
        let addr = first.master_addr.as_ref()?;
        if reachable.any(|s| s.master_addr.as_ref() != Some(addr)) {
            return None;
        }
        self.members
            .iter()
            .map(|p| &p.spec)
            .find(|m| first.names(m))
    }

    /// The legitimate master: with Sentinel, the member the Sentinels name
    /// if its `ROLE` agrees; without, the only master, or among several the
    /// one with the strictly highest recorded term (a former master that
    /// came back as it was has an older one).
    pub fn master(&self) -> Option<&Probe> {
        if self.sentinel_managed {
            let m = self.sentinel_master()?;
            return self
                .members
                .iter()
                .find(|p| p.spec.name == m.name && p.reachable() && p.master);
        }
        let masters: Vec<&Probe> = self.masters().collect();
        match masters.as_slice() {
            [] => None,
            [one] => Some(one),
            many => {
                let top = many.iter().map(|p| p.record.term).max()?;
                let mut best = many.iter().filter(|p| p.record.term == top);
                let b = best.next()?;
                best.next().is_none().then_some(*b)
            }
        }
    }

    /// The store's term: Sentinel's config-epoch of this master (bumped by
    /// every failover), or without Sentinel the term Switchyard records
    /// with each promotion. `None` when nothing that holds it answered.
    pub fn term(&self) -> Option<u64> {
        if self.sentinel_managed {
            return self.sentinels.iter().filter_map(|s| s.config_epoch).max();
        }
        match self.master() {
            Some(m) => Some(m.record.term),
            None => self
                .members
                .iter()
                .filter(|p| p.reachable())
                .map(|p| p.record.term)
                .max(),
        }
    }

    /// The reachable member holding the highest fencing token.
    pub fn best_record(&self) -> Option<&Probe> {
        self.members
            .iter()
            .filter(|p| p.reachable())
            .max_by_key(|p| p.record.token)
    }

    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.members.iter().find(|p| p.spec.name == name)
    }

    /// Bytes `p` is behind `master`, when it replicates from it.
    pub fn lag_bytes(&self, p: &Probe, master: &Probe) -> Option<u64> {
        if !p.is_replica() || !p.follows(&master.spec) {
            return None;
        }
        // Both offsets come from the same parallel round; a replica seen a
        // moment after its master may already hold more than the master had.
        Some(master.offset?.saturating_sub(p.offset?))
    }
}

fn info_map(s: &str) -> HashMap<String, String> {
    s.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_replica_line(v: &str) -> Option<ReplicaLine> {
    let kv: HashMap<&str, &str> = v.split(',').filter_map(|p| p.split_once('=')).collect();
    Some(ReplicaLine {
        ip: kv.get("ip")?.to_string(),
        port: kv.get("port")?.parse().ok()?,
        state: kv.get("state").unwrap_or(&"").to_string(),
        offset: kv.get("offset")?.parse().ok()?,
        lag_secs: kv.get("lag").and_then(|l| l.parse().ok()).unwrap_or(0),
    })
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => as_string(other)?.parse().ok(),
    }
}

/// A flat `[k, v, k, v]` reply (or a RESP3 map) as a map.
pub(crate) fn pairs(v: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for kv in items.chunks(2) {
                if let [k, v] = kv {
                    if let (Some(k), Some(v)) = (as_string(k), as_string(v)) {
                        out.insert(k, v);
                    }
                }
            }
        }
        Value::Map(items) => {
            for (k, v) in items {
                if let (Some(k), Some(v)) = (as_string(k), as_string(v)) {
                    out.insert(k, v);
                }
            }
        }
        _ => {}
    }
    out
}

/// `ROLE`: (is master, upstream of a replica).
fn parse_role(v: &Value) -> Result<(bool, Option<(String, u16)>), String> {
    let Value::Array(items) = v else {
        return Err(format!("ROLE returned {v:?}"));
    };
    match items.first().and_then(as_string).as_deref() {
        Some("master") => Ok((true, None)),
        Some("slave") => {
            let host = items.get(1).and_then(as_string);
            let port = items
                .get(2)
                .and_then(as_int)
                .and_then(|p| u16::try_from(p).ok());
            Ok((false, host.zip(port)))
        }
        Some(other) => Err(format!("ROLE says {other}, expected master or slave")),
        None => Err("empty ROLE reply".into()),
    }
}

impl RedisController {
    /// The hash this controller owns in the store.
    pub(crate) fn record_key(&self) -> String {
        format!("switchyard:{}", self.cfg.store)
    }

    async fn probe_member(&self, spec: &MemberSpec) -> Probe {
        let mut p = Probe {
            spec: spec.clone(),
            error: None,
            master: false,
            upstream: None,
            link_up: false,
            last_io_secs: None,
            offset: None,
            replicas: vec![],
            min_replicas: None,
            replica_priority: None,
            record: Record::default(),
            run_id: None,
        };
        let role = redis::cmd("ROLE");
        let mut info = redis::cmd("INFO");
        info.arg("replication").arg("server");
        let mut conf = redis::cmd("CONFIG");
        conf.arg("GET")
            .arg("min-replicas-to-write")
            .arg("replica-priority");
        let mut rec = redis::cmd("HGETALL");
        rec.arg(self.record_key());
        let c = &self.conns;
        let (role, info, conf, rec) = futures::join!(
            c.query::<Value>(spec, &role),
            c.query::<String>(spec, &info),
            c.query::<Value>(spec, &conf),
            c.query::<Value>(spec, &rec),
        );
        let fail = |e: RedisError| e.into_error(&self.cfg.store).to_string();
        match role {
            Ok(v) => match parse_role(&v) {
                Ok((master, upstream)) => {
                    p.master = master;
                    p.upstream = upstream;
                }
                Err(e) => p.error = Some(e),
            },
            Err(e) => {
                p.error = Some(fail(e));
                return p;
            }
        }
        match info {
            Ok(s) => {
                let kv = info_map(&s);
                let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
                p.run_id = kv.get("run_id").cloned();
                p.offset = if p.master {
                    num("master_repl_offset")
                } else {
                    num("slave_repl_offset").or_else(|| num("master_repl_offset"))
                };
                p.link_up = kv.get("master_link_status").map(String::as_str) == Some("up");
                p.last_io_secs = kv
                    .get("master_last_io_seconds_ago")
                    .and_then(|v| v.parse().ok());
                let mut i = 0;
                while let Some(line) = kv.get(&format!("slave{i}")) {
                    if let Some(r) = parse_replica_line(line) {
                        p.replicas.push(r);
                    }
                    i += 1;
                }
            }
            Err(e) => p.error = Some(fail(e)),
        }
        match conf {
            Ok(v) => {
                let kv = pairs(&v);
                p.min_replicas = kv.get("min-replicas-to-write").and_then(|v| v.parse().ok());
                p.replica_priority = kv.get("replica-priority").and_then(|v| v.parse().ok());
            }
            Err(e) => p.error = Some(fail(e)),
        }
        match rec {
            Ok(v) => {
                let kv = pairs(&v);
                let num = |k: &str| kv.get(k).and_then(|v| v.parse().ok());
                p.record = Record {
                    token: num("token").unwrap_or(0),
                    execution: kv.get("execution").cloned().unwrap_or_default(),
                    term: num("term").unwrap_or(0),
                    promoted: kv.get("promoted").cloned(),
                    baseline_min_replicas: kv
                        .get("baseline_min_replicas")
                        .and_then(|v| v.parse().ok()),
                };
            }
            Err(e) => p.error = Some(fail(e)),
        }
        p
    }

    async fn probe_sentinel(&self, spec: &MemberSpec) -> SentinelProbe {
        let mut s = SentinelProbe {
            spec: spec.clone(),
            error: None,
            master_addr: None,
            config_epoch: None,
            flags: String::new(),
            down_after_ms: None,
            other_sentinels: 0,
            ckquorum: Err("not asked".into()),
            replica_priorities: HashMap::new(),
            replica_link_down_ms: HashMap::new(),
            tilt: false,
        };
        let name = &self.cfg.master_name;
        let sentinel = |sub: &str| {
            let mut c = redis::cmd("SENTINEL");
            c.arg(sub).arg(name);
            c
        };
        let c = &self.conns;
        let cmds = [
            sentinel("GET-MASTER-ADDR-BY-NAME"),
            sentinel("MASTER"),
            sentinel("REPLICAS"),
            sentinel("SENTINELS"),
            sentinel("CKQUORUM"),
        ];
        let mut info = redis::cmd("INFO");
        info.arg("sentinel");
        let (addr, master, replicas, others, ck, info) = futures::join!(
            c.query::<Value>(spec, &cmds[0]),
            c.query::<Value>(spec, &cmds[1]),
            c.query::<Value>(spec, &cmds[2]),
            c.query::<Value>(spec, &cmds[3]),
            c.query::<String>(spec, &cmds[4]),
            c.query::<String>(spec, &info),
        );
        if let Ok(i) = info {
            s.tilt = info_map(&i).get("sentinel_tilt").map(String::as_str) == Some("1");
        }
        let fail = |e: RedisError| e.into_error(&self.cfg.store).to_string();
        match addr {
            Ok(Value::Array(v)) if v.len() == 2 => {
                let host = as_string(&v[0]);
                let port = as_int(&v[1]).and_then(|p| u16::try_from(p).ok());
                s.master_addr = host.zip(port);
            }
            Ok(Value::Nil) => s.error = Some(format!("does not monitor a master named {name}")),
            Ok(other) => s.error = Some(format!("GET-MASTER-ADDR-BY-NAME returned {other:?}")),
            Err(e) => {
                s.error = Some(fail(e));
                return s;
            }
        }
        match master {
            Ok(v) => {
                let kv = pairs(&v);
                s.config_epoch = kv.get("config-epoch").and_then(|v| v.parse().ok());
                s.flags = kv.get("flags").cloned().unwrap_or_default();
                s.down_after_ms = kv
                    .get("down-after-milliseconds")
                    .and_then(|v| v.parse().ok());
            }
            Err(e) => s.error = Some(fail(e)),
        }
        match replicas {
            Ok(Value::Array(list)) => {
                for r in &list {
                    let kv = pairs(r);
                    if let (Some(n), Some(p)) = (
                        kv.get("name"),
                        kv.get("slave-priority").and_then(|v| v.parse().ok()),
                    ) {
                        s.replica_priorities.insert(n.clone(), p);
                    }
                    if let (Some(n), Some(d)) = (
                        kv.get("name"),
                        kv.get("master-link-down-time").and_then(|v| v.parse().ok()),
                    ) {
                        s.replica_link_down_ms.insert(n.clone(), d);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => s.error = Some(fail(e)),
        }
        match others {
            Ok(Value::Array(list)) => s.other_sentinels = list.len(),
            Ok(_) => {}
            Err(e) => s.error = Some(fail(e)),
        }
        s.ckquorum = ck.map_err(|e| match e {
            RedisError::Client { source, .. } => source.to_string(),
            other => format!("{other:?}"),
        });
        s
    }

    /// Observe every data member and Sentinel in parallel.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let members =
            futures::future::join_all(self.cfg.members.iter().map(|m| self.probe_member(m)));
        let sentinels =
            futures::future::join_all(self.cfg.sentinels.iter().map(|m| self.probe_sentinel(m)));
        let (members, sentinels) = futures::join!(members, sentinels);
        let snap = Snapshot {
            members,
            sentinels,
            sentinel_managed: self.cfg.sentinel_managed(),
        };
        self.remember_lag(&snap);
        snap
    }

    /// Keep the lag of every replica seen while its master was reachable:
    /// a forced failover judges candidates by it once the master is gone.
    fn remember_lag(&self, snap: &Snapshot) {
        let Some(master) = snap.master() else {
            return;
        };
        let lag_bytes = snap
            .members
            .iter()
            .filter_map(|p| Some((p.spec.name.clone(), snap.lag_bytes(p, master)?)))
            .collect();
        self.last_known.record(crate::Evidence {
            master: master.spec.name.clone(),
            lag_bytes,
        });
    }

    /// The public view of a snapshot.
    pub(crate) fn to_state(&self, snap: &Snapshot) -> ObservedState {
        let term = snap.term();
        let masters: Vec<&Probe> = snap.masters().collect();
        let master = snap.master();
        let sentinel_master = snap.sentinel_master().map(|m| m.name.clone());
        let mut members = Vec::new();
        for p in &snap.members {
            let s = &p.spec;
            if let Some(e) = &p.error {
                members.push(MemberState::unreachable(&s.name, &s.region, e.clone()));
                continue;
            }
            let following = p.upstream.as_ref().map(|(h, port)| {
                self.cfg
                    .by_addr(h, *port)
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| format!("{h}:{port}"))
            });
            let lag = master.and_then(|m| snap.lag_bytes(p, m)).map(|b| Lag {
                bytes: Some(b),
                millis: None,
            });
            let mut detail = vec![if p.master {
                "ROLE master".to_string()
            } else {
                format!(
                    "ROLE slave, link {}{}",
                    if p.link_up { "up" } else { "down" },
                    p.last_io_secs
                        .map(|s| format!(", last I/O {s}s ago"))
                        .unwrap_or_default()
                )
            }];
            if let Some(rp) = p.replica_priority {
                detail.push(format!("replica-priority {rp}"));
            }
            if p.fenced() {
                detail.push("fenced: min-replicas-to-write refuses every write".into());
            }
            if p.master && snap.sentinel_managed && sentinel_master.as_deref() != Some(&s.name) {
                detail.push(format!(
                    "the Sentinels' master is {}",
                    sentinel_master.as_deref().unwrap_or("not agreed")
                ));
            }
            members.push(MemberState {
                name: s.name.clone(),
                region: s.region.clone(),
                role: if p.master {
                    Role::Primary
                } else {
                    Role::Secondary
                },
                reachable: true,
                // A master that is not the legitimate one (came back as it
                // was) carries its own, older history, so that the newest
                // primary of a split brain is the one every check agrees on.
                position: p.offset.map(|offset| Position {
                    history: switchyard_controller::History(
                        if p.master && master.map(|m| &m.spec.name) != Some(&s.name) {
                            p.record.term.min(term.unwrap_or(0).saturating_sub(1))
                        } else {
                            term.unwrap_or(0)
                        },
                    ),
                    offset,
                }),
                lag,
                following,
                // With no reachable master a replica's link is down for
                // want of a master, not through a fault of its own: that
                // says nothing about it (as PostgreSQL's standbys report).
                replicating: (!p.master && master.is_some()).then_some(p.link_up),
                fenced: p.fenced(),
                fence_evidence: None,
                priority: p.replica_priority.map(preference),
                votes: None,
                detail: Some(detail.join("; ")),
                awaits_rejoin: false,
            });
        }
        // A Sentinel is healthy only when it names the one member whose ROLE
        // says master and can authorise a failover.
        let role_master = match masters.as_slice() {
            [one] => Some(&one.spec),
            _ => None,
        };
        for sp in &snap.sentinels {
            let s = &sp.spec;
            if let Some(e) = &sp.error {
                members.push(MemberState::unreachable(&s.name, &s.region, e.clone()));
                continue;
            }
            let named = sp
                .master_addr
                .as_ref()
                .map(|(h, p)| {
                    self.cfg
                        .by_addr(h, *p)
                        .map(|m| m.name.clone())
                        .unwrap_or_else(|| format!("{h}:{p}"))
                })
                .unwrap_or_else(|| "nothing".into());
            let mut problems = vec![];
            match role_master {
                Some(m) if sp.names(m) => {}
                Some(m) => {
                    problems.push(format!("names {named} but ROLE says {} is master", m.name))
                }
                None => problems.push(format!(
                    "names {named}; {} members say ROLE master",
                    masters.len()
                )),
            }
            if let Err(e) = &sp.ckquorum {
                problems.push(format!("CKQUORUM: {e}"));
            }
            if sp.failover_in_progress() {
                problems.push("failover in progress".into());
            }
            if sp.tilt {
                problems.push("in TILT mode (acts on nothing until it leaves it)".into());
            }
            members.push(MemberState {
                name: s.name.clone(),
                region: s.region.clone(),
                role: if problems.is_empty() {
                    Role::Arbiter
                } else {
                    Role::Unknown
                },
                reachable: true,
                position: None,
                lag: None,
                following: None,
                replicating: None,
                fenced: false,
                fence_evidence: None,
                priority: None,
                votes: Some(1),
                detail: Some(format!(
                    "sentinel: master {named}, config-epoch {}, {} other sentinels{}",
                    sp.config_epoch.map_or("?".into(), |e| e.to_string()),
                    sp.other_sentinels,
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                )),
                awaits_rejoin: false,
            });
        }
        ObservedState {
            store: self.cfg.store.clone(),
            kind: StoreKind::Redis,
            term: term.map(switchyard_controller::Term),
            config_version: None,
            members,
        }
    }
}

/// Redis' `replica-priority` (lower is preferred, 0 never promoted) as the
/// contract's priority (higher is preferred, 0 never).
pub(crate) fn preference(replica_priority: i64) -> f64 {
    if replica_priority <= 0 {
        0.0
    } else {
        10_000.0 / replica_priority as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replica_lines_and_role() {
        let r =
            parse_replica_line("ip=127.0.0.1,port=7002,state=online,offset=1447,lag=1").unwrap();
        assert_eq!(
            (r.port, r.offset, r.lag_secs, r.state.as_str()),
            (7002, 1447, 1, "online")
        );
        let role = Value::Array(vec![
            Value::BulkString(b"slave".to_vec()),
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(7001),
            Value::BulkString(b"connected".to_vec()),
            Value::Int(1447),
        ]);
        assert_eq!(
            parse_role(&role).unwrap(),
            (false, Some(("127.0.0.1".to_string(), 7001)))
        );
        assert!(preference(1) > preference(100) && preference(0) == 0.0);
    }
}
