//! The simulated account: locations, failover priorities, ARM operations,
//! the data plane's view of writable regions, documents and faults.
//!
//! Time only moves when someone looks: every request calls
//! [`World::advance`] first, which carries running operations through their
//! phases. Phases are fractions of the operation's duration, so a slow
//! operation (the `slow` fault) stretches every phase alike, and `hold`
//! freezes operations where they are (tests crash a coordinator mid-way).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Consistency policy of the account (ARM `consistencyPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// `Strong`, `BoundedStaleness`, `Session`, `ConsistentPrefix`, `Eventual`.
    pub level: String,
    /// Bounded staleness: largest number of writes a region may lag.
    pub max_staleness_prefix: u64,
    /// Bounded staleness: largest time a region may lag, in seconds.
    pub max_interval_secs: u64,
}

impl Default for Consistency {
    fn default() -> Self {
        // The service's defaults for a new account.
        Consistency {
            level: "Session".into(),
            max_staleness_prefix: 100,
            max_interval_secs: 5,
        }
    }
}

/// One account location (an Azure region).
#[derive(Debug, Clone)]
pub struct Location {
    /// Topology region.
    pub region: String,
    /// Azure location name, e.g. `Lab East`.
    pub name: String,
    /// ARM failover priority (0 = write region).
    pub priority: u32,
    /// Taken offline through `offlineRegion`.
    pub offline: bool,
    /// Fault: the regional endpoint answers nothing and replication to it stops.
    pub outage: bool,
    /// Fault: writes reach this region this much later.
    pub replication_delay: Duration,
    /// Documents, by `dbs/{db}/colls/{coll}/docs/{id}`.
    pub docs: BTreeMap<String, Value>,
}

impl Location {
    /// `eastus`-style id part: the name lower-cased without spaces.
    pub fn short(&self) -> String {
        normalize(&self.name)
    }
}

/// ARM location names compare case-insensitively and without spaces
/// (`East US` and `eastus` name the same region).
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Which ARM action an operation carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `failoverPriorityChange`.
    FailoverPriorityChange,
    /// `offlineRegion`.
    OfflineRegion,
    /// `onlineRegion`.
    OnlineRegion,
}

impl OpKind {
    /// The ARM action name.
    pub fn action(self) -> &'static str {
        match self {
            OpKind::FailoverPriorityChange => "failoverPriorityChange",
            OpKind::OfflineRegion => "offlineRegion",
            OpKind::OnlineRegion => "onlineRegion",
        }
    }
}

/// Terminal or running status of an asynchronous operation, as ARM names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    /// Still running.
    InProgress,
    /// Finished.
    Succeeded,
    /// Finished with an error (code, message).
    Failed(String, String),
    /// Ended before finishing.
    Canceled,
}

impl OpStatus {
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed(..) => "Failed",
            OpStatus::Canceled => "Canceled",
        }
    }
}

/// What an operation does once its phases are reached.
#[derive(Debug, Clone)]
enum Plan {
    /// New priority per location index; the write region moves from → to.
    Priorities {
        priorities: Vec<u32>,
        moves: Option<(usize, usize)>,
    },
    Offline(usize),
    Online(usize),
}

/// An asynchronous ARM operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Operation id (a GUID-shaped string).
    pub id: String,
    /// What it does.
    pub kind: OpKind,
    /// Status.
    pub status: OpStatus,
    /// How often its status was polled.
    pub polls: u64,
    /// Wall-clock start, RFC 3339.
    pub start_time: String,
    /// Wall-clock end, RFC 3339, once terminal.
    pub end_time: Option<String>,
    duration: Duration,
    elapsed: Duration,
    last: Instant,
    phase: u8,
    plan: Plan,
}

/// An ARM request refused before it started anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ArmError {
    fn bad(message: impl Into<String>) -> Self {
        ArmError {
            status: 400,
            code: "BadRequest".into(),
            message: message.into(),
        }
    }
}

/// A write sent to a region that does not take writes (403, substatus 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteForbidden;

/// A write on its way to one region.
#[derive(Debug, Clone)]
struct Pending {
    due: Instant,
    from: usize,
    to: usize,
    key: String,
    doc: Value,
}

/// The whole simulated account.
#[derive(Debug)]
pub struct World {
    /// Account name.
    pub name: String,
    /// Full ARM resource id.
    pub account_id: String,
    /// Subscription id.
    pub subscription: String,
    /// Locations in the order the account was created with.
    pub locations: Vec<Location>,
    /// Multi-region writes.
    pub multi_write: bool,
    /// Service-managed failover.
    pub automatic_failover: bool,
    /// Consistency policy.
    pub consistency: Consistency,
    /// The data plane's writable locations (indexes), in priority order.
    pub writable: Vec<usize>,
    /// Operations by id.
    pub ops: BTreeMap<String, Operation>,
    /// Operations started, in order (ids).
    pub started: Vec<String>,
    /// Duration of the next operations.
    pub op_duration: Duration,
    /// Operations do not advance while held.
    pub held: bool,
    /// Fault: the next `n` ARM requests get this status with `Retry-After`.
    pub arm_faults: Option<(u32, u16)>,
    /// `Retry-After` seconds the simulator sends.
    pub retry_after_secs: u64,
    /// Writes awaiting replication.
    pending: Vec<Pending>,
    next_op: u64,
}

impl World {
    /// A fresh account; `locations` in failover priority order.
    pub fn new(
        name: &str,
        subscription: &str,
        resource_group: &str,
        locations: Vec<(String, String)>,
        multi_write: bool,
        consistency: Consistency,
    ) -> Self {
        let locations: Vec<Location> = locations
            .into_iter()
            .enumerate()
            .map(|(i, (region, name))| Location {
                region,
                name,
                priority: i as u32,
                offline: false,
                outage: false,
                replication_delay: Duration::ZERO,
                docs: BTreeMap::new(),
            })
            .collect();
        let mut w = World {
            name: name.into(),
            account_id: format!(
                "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"
            ),
            subscription: subscription.into(),
            locations,
            multi_write,
            automatic_failover: false,
            consistency,
            writable: vec![],
            ops: BTreeMap::new(),
            started: vec![],
            op_duration: Duration::from_millis(1500),
            held: false,
            arm_faults: None,
            retry_after_secs: 1,
            pending: vec![],
            next_op: 0,
        };
        w.writable = w.settled_writable();
        w
    }

    /// Online location indexes in failover priority order.
    pub fn online_by_priority(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.locations.len())
            .filter(|&i| !self.locations[i].offline)
            .collect();
        v.sort_by_key(|&i| self.locations[i].priority);
        v
    }

    /// Every location index in failover priority order.
    pub fn by_priority(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.locations.len()).collect();
        v.sort_by_key(|&i| self.locations[i].priority);
        v
    }

    /// The write region as ARM records it (failover priority 0).
    pub fn arm_write(&self) -> Option<usize> {
        (0..self.locations.len())
            .find(|&i| self.locations[i].priority == 0 && !self.locations[i].offline)
    }

    /// Writable locations once nothing is in flight.
    fn settled_writable(&self) -> Vec<usize> {
        if self.multi_write {
            self.online_by_priority()
        } else {
            self.arm_write().into_iter().collect()
        }
    }

    /// Look a location up by (normalised) name.
    pub fn location_index(&self, name: &str) -> Option<usize> {
        let n = normalize(name);
        self.locations.iter().position(|l| l.short() == n)
    }

    /// Look a location up by topology region.
    pub fn region_index(&self, region: &str) -> Option<usize> {
        self.locations.iter().position(|l| l.region == region)
    }

    /// Whether an operation is running (the account is `Updating`).
    pub fn busy(&self) -> bool {
        self.ops.values().any(|o| o.status == OpStatus::InProgress)
    }

    fn start(&mut self, kind: OpKind, plan: Plan) -> Result<String, ArmError> {
        if self.busy() {
            // What the service answers while another operation holds the
            // account's lock.
            return Err(ArmError {
                status: 412,
                code: "PreconditionFailed".into(),
                message: format!(
                    "There is another user operation in progress which requires an exclusive lock on [{}]. Please retry after sometime.",
                    self.name
                ),
            });
        }
        self.next_op += 1;
        let id = format!("{:08x}-5eed-4c05-8d0b-{:012x}", self.next_op, self.next_op);
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                kind,
                status: OpStatus::InProgress,
                polls: 0,
                start_time: rfc3339_now(),
                end_time: None,
                duration: self.op_duration,
                elapsed: Duration::ZERO,
                last: Instant::now(),
                phase: 0,
                plan,
            },
        );
        self.started.push(id.clone());
        Ok(id)
    }

    /// `failoverPriorityChange`, validated as the service documents it:
    /// every location of the account exactly once, priorities unique and
    /// within 0..n-1. Nothing stricter: a change that moves nothing is
    /// accepted and runs as an operation like any other.
    pub fn failover_priority_change(&mut self, body: &Value) -> Result<String, ArmError> {
        let Some(policies) = body.get("failoverPolicies").and_then(Value::as_array) else {
            return Err(ArmError::bad(
                "The request body must contain failoverPolicies.",
            ));
        };
        let n = self.locations.len();
        let mut priorities: Vec<Option<u32>> = vec![None; n];
        for p in policies {
            let name = p
                .get("locationName")
                .and_then(Value::as_str)
                .ok_or_else(|| ArmError::bad("Each failover policy needs a locationName."))?;
            let prio = p
                .get("failoverPriority")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .ok_or_else(|| {
                    ArmError::bad(format!(
                        "Failover priority for {name} is missing or invalid."
                    ))
                })?;
            let i = self.location_index(name).ok_or_else(|| {
                ArmError::bad(format!(
                    "Location {name} is not one of the account's regions."
                ))
            })?;
            if priorities[i].is_some() {
                return Err(ArmError::bad(format!(
                    "Location {name} appears more than once in failoverPolicies."
                )));
            }
            if prio >= n as u64 {
                return Err(ArmError::bad(format!(
                    "Failover priority {prio} for {name} is out of range: the maximum value for a failover priority is {} (number of regions - 1).",
                    n - 1
                )));
            }
            priorities[i] = Some(prio as u32);
        }
        let Some(priorities) = priorities.iter().copied().collect::<Option<Vec<u32>>>() else {
            return Err(ArmError::bad(
                "Failover priorities must be specified for every region of the account.",
            ));
        };
        let mut seen = priorities.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != n {
            return Err(ArmError::bad(
                "Failover priority values must be unique for each of the regions of the account.",
            ));
        }
        let new_write = priorities.iter().position(|&p| p == 0).unwrap_or(0);
        if self.locations[new_write].offline {
            return Err(ArmError::bad(format!(
                "Location {} is offline and cannot become the write region; bring it online first.",
                self.locations[new_write].name
            )));
        }
        let moves = match self.arm_write() {
            Some(old) if old != new_write && !self.multi_write => Some((old, new_write)),
            _ => None,
        };
        self.start(
            OpKind::FailoverPriorityChange,
            Plan::Priorities { priorities, moves },
        )
    }

    /// `offlineRegion` / `onlineRegion` with body `{"region": NAME}`.
    pub fn region_action(&mut self, kind: OpKind, body: &Value) -> Result<String, ArmError> {
        let name = body
            .get("region")
            .and_then(Value::as_str)
            .ok_or_else(|| ArmError::bad("The request body must contain region."))?;
        let i = self.location_index(name).ok_or_else(|| {
            ArmError::bad(format!(
                "Region {name} is not one of the account's regions."
            ))
        })?;
        match kind {
            OpKind::OfflineRegion => {
                if self.locations[i].offline {
                    return Err(ArmError::bad(format!("Region {name} is already offline.")));
                }
                if self.online_by_priority().len() < 2 {
                    return Err(ArmError::bad(
                        "Cannot take the account's only online region offline.",
                    ));
                }
                self.start(kind, Plan::Offline(i))
            }
            OpKind::OnlineRegion => {
                if !self.locations[i].offline {
                    return Err(ArmError::bad(format!("Region {name} is not offline.")));
                }
                self.start(kind, Plan::Online(i))
            }
            OpKind::FailoverPriorityChange => unreachable!("not a region action"),
        }
    }

    /// Carry running operations through their phases and deliver due writes.
    pub fn advance(&mut self) {
        let now = Instant::now();
        let held = self.held;
        let ids: Vec<String> = self
            .ops
            .values()
            .filter(|o| o.status == OpStatus::InProgress)
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            let (frac, plan, phase) = {
                let op = self.ops.get_mut(&id).expect("listed above");
                if !held {
                    op.elapsed += now.saturating_duration_since(op.last);
                }
                op.last = now;
                let frac = op.elapsed.as_secs_f64() / op.duration.as_secs_f64().max(1e-9);
                (frac, op.plan.clone(), op.phase)
            };
            let new_phase = self.run_phases(&plan, phase, frac);
            let op = self.ops.get_mut(&id).expect("listed above");
            op.phase = new_phase;
            if frac >= 1.0 {
                op.status = OpStatus::Succeeded;
                op.end_time = Some(rfc3339_now());
            }
        }
        self.deliver(now);
    }

    /// Apply every phase of `plan` reached at `frac` after `done`; returns
    /// the phase reached.
    fn run_phases(&mut self, plan: &Plan, mut done: u8, frac: f64) -> u8 {
        match plan {
            Plan::Priorities { priorities, moves } => {
                if let Some((old, new)) = *moves {
                    // The data plane hands writes over before ARM records
                    // it: for a while both regions take writes.
                    if done < 1 && frac >= 0.3 {
                        self.writable = vec![old, new];
                        done = 1;
                    }
                    if done < 2 && frac >= 0.6 {
                        self.set_priorities(priorities);
                        done = 2;
                    }
                    if done < 3 && frac >= 0.8 {
                        self.sync_region(new, old);
                        self.writable = vec![new];
                        done = 3;
                    }
                } else if done < 3 && frac >= 1.0 {
                    self.set_priorities(priorities);
                    self.writable = self.settled_writable();
                    done = 3;
                }
            }
            Plan::Offline(i) => {
                if done < 1 && frac >= 0.5 {
                    let i = *i;
                    let was_write = self.arm_write() == Some(i);
                    self.locations[i].offline = true;
                    // The offline region drops to the end of the order; the
                    // next online region by priority takes writes (what the
                    // service does when it fails a write region over).
                    let mut order: Vec<usize> = self.online_by_priority();
                    order.push(i);
                    for (p, &j) in order.iter().enumerate() {
                        self.locations[j].priority = p as u32;
                    }
                    let _ = was_write;
                    self.writable = self.settled_writable();
                    // What the lost region wrote and had not replicated yet
                    // is lost with it.
                    self.pending.retain(|p| p.from != i && p.to != i);
                    done = 1;
                }
            }
            Plan::Online(i) => {
                if done < 1 && frac >= 1.0 {
                    let i = *i;
                    self.locations[i].offline = false;
                    if let Some(w) = self.arm_write() {
                        // A region brought back resynchronises from the write
                        // region: what only it held is gone.
                        self.locations[i].docs = self.locations[w].docs.clone();
                    }
                    self.writable = self.settled_writable();
                    done = 1;
                }
            }
        }
        done
    }

    fn set_priorities(&mut self, priorities: &[u32]) {
        for (l, &p) in self.locations.iter_mut().zip(priorities) {
            l.priority = p;
        }
    }

    /// A planned change of write region loses nothing: the new write region
    /// receives everything the old one holds before it takes over alone.
    fn sync_region(&mut self, to: usize, from: usize) {
        let docs = self.locations[from].docs.clone();
        self.locations[to].docs.extend(docs);
        self.pending.retain(|p| p.to != to);
    }

    fn deliver(&mut self, now: Instant) {
        let mut keep = vec![];
        for p in std::mem::take(&mut self.pending) {
            let l = &mut self.locations[p.to];
            if p.due <= now && !l.outage && !l.offline {
                l.docs.insert(p.key, p.doc);
            } else {
                keep.push(p);
            }
        }
        self.pending = keep;
    }

    /// A document write through `region`'s endpoint; `Err` when that region
    /// does not take writes now.
    pub fn write(&mut self, at: usize, key: String, doc: Value) -> Result<(), WriteForbidden> {
        if !self.writable.contains(&at) {
            return Err(WriteForbidden);
        }
        self.locations[at].docs.insert(key.clone(), doc.clone());
        let strong = self.consistency.level == "Strong";
        let now = Instant::now();
        for i in 0..self.locations.len() {
            if i == at || self.locations[i].offline {
                continue;
            }
            let delay = self.locations[i].replication_delay;
            if (strong || delay.is_zero()) && !self.locations[i].outage {
                self.locations[i].docs.insert(key.clone(), doc.clone());
            } else {
                self.pending.push(Pending {
                    due: now + delay,
                    from: at,
                    to: i,
                    key: key.clone(),
                    doc: doc.clone(),
                });
            }
        }
        Ok(())
    }

    /// ARM `Location` object of location `i`.
    pub fn location_json(&self, i: usize, endpoint: &str) -> Value {
        let l = &self.locations[i];
        json!({
            "id": format!("{}-{}", self.name, l.short()),
            "locationName": l.name,
            "documentEndpoint": endpoint,
            "provisioningState": if l.offline { "Offline" } else { "Succeeded" },
            "failoverPriority": l.priority,
            "isZoneRedundant": false,
        })
    }

    /// The data plane's `GET /` body as served by any endpoint.
    pub fn data_account_json(&self, endpoints: &dyn Fn(usize) -> String) -> Value {
        let loc = |i: usize| json!({"name": self.locations[i].name, "databaseAccountEndpoint": endpoints(i)});
        let c = &self.consistency;
        let mut policy = json!({"defaultConsistencyLevel": c.level});
        if c.level == "BoundedStaleness" {
            policy["maxStalenessPrefix"] = json!(c.max_staleness_prefix);
            policy["maxIntervalInSeconds"] = json!(c.max_interval_secs);
        }
        json!({
            "_self": "",
            "id": self.name,
            "_rid": format!("{}.documents.azure.com", self.name),
            "media": "//media/",
            "addresses": "//addresses/",
            "_dbs": "//dbs/",
            "writableLocations": self.writable.iter().map(|&i| loc(i)).collect::<Vec<_>>(),
            "readableLocations": self.online_by_priority().into_iter().map(loc).collect::<Vec<_>>(),
            "enableMultipleWriteLocations": self.multi_write,
            "userReplicationPolicy": {"asyncReplication": false, "minReplicaSetSize": 3, "maxReplicasetSize": 4},
            "userConsistencyPolicy": policy,
            "systemReplicationPolicy": {"minReplicaSetSize": 3, "maxReplicasetSize": 4},
            "readPolicy": {"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
            "queryEngineConfiguration": "{}",
        })
    }

    /// Count of operations started, by ARM action.
    pub fn started_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for id in &self.started {
            *m.entry(self.ops[id].kind.action()).or_insert(0) += 1;
        }
        m
    }
}

/// Now as RFC 3339 (UTC), as ARM writes times.
pub fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(
            "acct",
            "sub",
            "rg",
            vec![
                ("east".into(), "Lab East".into()),
                ("west".into(), "Lab West".into()),
                ("south".into(), "Lab South".into()),
            ],
            false,
            Consistency::default(),
        )
    }

    fn change(w: &mut World, p: &[(&str, u64)]) -> Result<String, ArmError> {
        let policies: Vec<Value> = p
            .iter()
            .map(|(n, p)| json!({"locationName": n, "failoverPriority": p}))
            .collect();
        w.failover_priority_change(&json!({ "failoverPolicies": policies }))
    }

    #[test]
    fn priority_changes_are_validated_as_the_service_does() {
        let mut w = world();
        let bad = [
            vec![("Lab East", 0), ("Lab West", 1)],
            vec![("Lab East", 0), ("Lab West", 0), ("Lab South", 1)],
            vec![("Lab East", 0), ("Lab West", 1), ("Lab South", 3)],
            vec![("Lab East", 0), ("Lab West", 1), ("Lab Mars", 2)],
            vec![("Lab East", 0), ("Lab East", 1), ("Lab South", 2)],
        ];
        for b in bad {
            let e = change(&mut w, &b).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "BadRequest"), "{b:?}");
        }
        assert!(w.started.is_empty());
        // Names compare like ARM's: case and spaces do not matter.
        change(&mut w, &[("labwest", 0), ("LAB EAST", 1), ("Lab South", 2)]).unwrap();
        let e = change(
            &mut w,
            &[("Lab West", 0), ("Lab East", 1), ("Lab South", 2)],
        )
        .unwrap_err();
        assert_eq!(e.status, 412);
    }

    #[test]
    fn a_write_region_move_passes_through_a_both_writable_window() {
        let mut w = world();
        w.op_duration = Duration::from_secs(3600);
        let id = change(
            &mut w,
            &[("Lab West", 0), ("Lab East", 1), ("Lab South", 2)],
        )
        .unwrap();
        let op = w.ops[&id].clone();
        let plan = op.plan.clone();
        assert_eq!(w.run_phases(&plan, 0, 0.35), 1);
        assert_eq!(w.writable, vec![0, 1]);
        assert_eq!(w.arm_write(), Some(0));
        assert_eq!(w.run_phases(&plan, 1, 0.65), 2);
        assert_eq!(w.arm_write(), Some(1));
        assert_eq!(w.writable, vec![0, 1]);
        assert_eq!(w.run_phases(&plan, 2, 0.85), 3);
        assert_eq!(w.writable, vec![1]);
    }

    #[test]
    fn offline_write_region_promotes_the_next_priority_and_loses_unreplicated_writes() {
        let mut w = world();
        w.op_duration = Duration::from_millis(1);
        w.locations[1].replication_delay = Duration::from_secs(3600);
        w.write(0, "k1".into(), json!({"id": "k1"})).unwrap();
        let id = w
            .region_action(OpKind::OfflineRegion, &json!({"region": "Lab East"}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        w.advance();
        assert_eq!(w.ops[&id].status, OpStatus::Succeeded);
        assert_eq!(w.arm_write(), Some(1));
        assert_eq!(w.writable, vec![1]);
        assert!(w.locations[0].offline);
        assert_eq!(w.locations[0].priority, 2);
        assert!(!w.locations[1].docs.contains_key("k1"));
        assert!(w.locations[2].docs.contains_key("k1"));
        w.locations[1].replication_delay = Duration::ZERO;
        w.advance();
        assert!(
            !w.locations[1].docs.contains_key("k1"),
            "a lost write arrived"
        );
    }
}
