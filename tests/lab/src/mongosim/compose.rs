//! [`super::MongoSim`] on `SWITCHYARD_BACKING=compose`: the spec's replica
//! set laid onto docker-compose.yml's real `mongod` services instead of
//! simulated.
//!
//! The spec's regions map onto the compose regions in order (the first
//! region holding data → east, the second → west, an arbiters-only region →
//! south), and the k-th member of a region onto the k-th `catalog-*` service
//! there; the set is initiated by the lab itself (`rs.initiate` with the
//! spec's members, priorities, votes and timing) on volumes Compose has just
//! emptied, so a spec smaller than the file (one member per region) runs on
//! a subset of its services. Inspection (`primary`, `term`, `count_docs`, …)
//! asks the members themselves, with `mongosh` inside their containers;
//! faults are `docker compose kill/start` and `compose/region.sh`, a stalled
//! replica is `fsyncLock` ([`Attached::set_lag`]). What only a simulator can
//! do (a bounded replication delay, its rolled-back counter, its control
//! commands) is refused with [`crate::backing::Unsupported`]'s
//! message, and scripts/compose-backing.sh skips the tests that need it.

use super::MongoSimSpec;
use crate::backing::{Compose, ServiceKind, Services, Unsupported};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::time::Duration;

/// The replica set name docker-compose.yml starts `mongod` with (`--replSet`).
pub const SET_NAME: &str = "rs0";
/// Real servers on a shared Docker host do not keep the simulator's 50 ms
/// heartbeats and 300 ms election timeout without spurious elections.
const MIN_HEARTBEAT: Duration = Duration::from_millis(200);
const MIN_ELECTION_TIMEOUT: Duration = Duration::from_millis(2000);

/// A spec attached to compose services.
#[derive(Debug)]
pub struct Attached {
    project: Compose,
    /// Per spec member (config order): its service.
    services: Vec<String>,
    /// Spec region → compose region.
    regions: HashMap<String, String>,
    _lock: std::fs::File,
}

/// Where a spec's members go on the compose services, and the config that
/// initiates them.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Per spec member (config order): its service.
    pub services: Vec<String>,
    /// Per spec member: `host:port` the tests and the controller connect to.
    pub hosts: Vec<String>,
    /// Spec region → compose region.
    pub regions: HashMap<String, String>,
    /// The `rs.initiate` document: members by home address (what they call
    /// themselves), the spec's priorities, votes, arbiters and timing.
    pub config: serde_json::Value,
}

/// Map `spec` onto `services`, adjusting it to what will run (the compose
/// set name, the timing actually configured); what does not fit is
/// [`Unsupported`], naming it.
pub fn layout(spec: &mut MongoSimSpec, services: &Services) -> Result<Layout> {
    let unsupported = |what: String| -> Result<Layout> { Err(Unsupported(what).into()) };
    let mut order: Vec<&str> = Vec::new();
    for m in &spec.members {
        if !order.contains(&m.region.as_str()) {
            order.push(&m.region);
        }
    }
    let mut data_regions = ["east", "west"].into_iter();
    let mut arbiter_region = Some("south");
    let mut regions = HashMap::new();
    for r in &order {
        let data = spec.members.iter().any(|m| &m.region == r && !m.arbiter);
        let target = if data {
            data_regions.next()
        } else {
            arbiter_region.take()
        };
        let Some(target) = target else {
            return unsupported(format!(
                "a MongoDB spec with regions {order:?}; docker-compose.yml has two data regions (east, west) and an arbiter's (south)"
            ));
        };
        regions.insert(r.to_string(), target.to_string());
    }
    let mut chosen = Vec::new();
    let mut hosts = Vec::new();
    let mut members = Vec::new();
    let mut used: HashMap<String, usize> = HashMap::new();
    for (i, m) in spec.members.iter().enumerate() {
        let region = &regions[&m.region];
        let k = used.entry(region.clone()).or_default();
        // Arbiters only on the arbiter's service, data only on data services.
        let fits: Vec<_> = services
            .in_region(ServiceKind::MongoDb, region)
            .into_iter()
            .filter(|s| s.name.contains("arbiter") == m.arbiter)
            .collect();
        let Some(svc) = fits.get(*k) else {
            return unsupported(format!(
                "MongoDB member {} ({} in {}); docker-compose.yml has {} such service(s) in {region}",
                m.name,
                if m.arbiter { "an arbiter" } else { "data-bearing" },
                m.region,
                fits.len()
            ));
        };
        *k += 1;
        if m.hidden {
            return unsupported(format!("hidden MongoDB member {}", m.name));
        }
        let mut member = serde_json::json!({
            "_id": i,
            "host": format!("{}:{}", svc.home, ServiceKind::MongoDb.port()),
            "votes": m.votes,
        });
        if m.arbiter {
            member["arbiterOnly"] = true.into();
        } else {
            member["priority"] = m.priority.into();
        }
        members.push(member);
        chosen.push(svc.name.clone());
        hosts.push(svc.addr.clone());
    }
    spec.set_name = SET_NAME.to_string();
    spec.heartbeat_interval = spec.heartbeat_interval.max(MIN_HEARTBEAT);
    spec.election_timeout = spec.election_timeout.max(MIN_ELECTION_TIMEOUT);
    let config = serde_json::json!({
        "_id": SET_NAME,
        "members": members,
        "settings": {
            "heartbeatIntervalMillis": spec.heartbeat_interval.as_millis() as u64,
            "electionTimeoutMillis": spec.election_timeout.as_millis() as u64,
        },
    });
    Ok(Layout {
        services: chosen,
        hosts,
        regions,
        config,
    })
}

/// Lay `spec` onto the compose services ([`layout`]): reset every `mongod`
/// service from empty volumes and initiate the set; returns the attachment
/// and each member's `host:port`.
pub async fn attach(project: &Compose, spec: &mut MongoSimSpec) -> Result<(Attached, Vec<String>)> {
    let services = project.services().await?;
    let layout = layout(spec, services)?;
    let lock = project.lock("mongodb")?;
    let all: Vec<&str> = services
        .of(ServiceKind::MongoDb)
        .into_iter()
        .map(|s| s.name.as_str())
        .collect();
    project.reset(&all).await?;
    let first_data = spec
        .members
        .iter()
        .position(|m| !m.arbiter)
        .context("a replica set needs a data-bearing member")?;
    let on = &layout.services[first_data];
    let out = project
        .exec(
            on,
            &[
                "mongosh",
                "--quiet",
                "--norc",
                "--eval",
                &format!("JSON.stringify(rs.initiate({}))", layout.config),
            ],
        )
        .await?;
    let reply: serde_json::Value = serde_json::from_str(out.trim())
        .with_context(|| format!("rs.initiate on {on} printed {out:?}"))?;
    if reply["ok"].as_f64() != Some(1.0) {
        bail!("rs.initiate on {on}: {reply}");
    }
    Ok((
        Attached {
            project: project.clone(),
            services: layout.services,
            regions: layout.regions,
            _lock: lock,
        },
        layout.hosts,
    ))
}

impl Attached {
    /// `mongosh --eval JS` on member `i` (a direct connection to it, inside
    /// its container), the printed JSON parsed.
    fn eval(&self, i: usize, js: &str) -> Result<serde_json::Value> {
        let out = self.project.exec_blocking(
            &self.services[i],
            &["mongosh", "--quiet", "--norc", "--eval", js],
        )?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("{}: {js} printed {out:?}", self.services[i]))
    }

    /// `(term, writable primary)` of member `i`, when it answers.
    fn state(&self, i: usize) -> Option<(i64, bool)> {
        let v = self
            .eval(
                i,
                "JSON.stringify({t: db.adminCommand({replSetGetStatus: 1}).term, p: db.hello().isWritablePrimary})",
            )
            .ok()?;
        Some((v["t"].as_i64()?, v["p"].as_bool()?))
    }

    /// Indexes of the members that say they are the writable primary, with
    /// their terms.
    pub fn primaries(&self) -> Vec<(usize, i64)> {
        (0..self.services.len())
            .filter_map(|i| match self.state(i) {
                Some((t, true)) => Some((i, t)),
                _ => None,
            })
            .collect()
    }

    /// SIGKILL member `i`'s container.
    pub fn kill(&self, i: usize) {
        self.project
            .kill(&self.services[i])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Start member `i`'s container again.
    pub fn revive(&self, i: usize) {
        self.project
            .start(&self.services[i])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Cut or heal the compose region a spec region maps onto.
    pub fn region(&self, region: &str, cut: bool) {
        let r = self
            .regions
            .get(region)
            .unwrap_or_else(|| panic!("no region named {region}"));
        let done = if cut {
            self.project.cut_region(r)
        } else {
            self.project.heal_region(r)
        };
        done.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Member `i`'s term (panics when it does not answer: the simulator's
    /// accessor has no failure either, and a test asking expects an answer).
    pub fn term(&self, i: usize) -> i64 {
        self.state(i)
            .unwrap_or_else(|| panic!("{} does not answer replSetGetStatus", self.services[i]))
            .0
    }

    /// Member `i`'s installed config version.
    pub fn config_version(&self, i: usize) -> i64 {
        self.eval(
            i,
            "JSON.stringify(db.adminCommand({replSetGetConfig: 1}).config.version)",
        )
        .ok()
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| panic!("{} does not answer replSetGetConfig", self.services[i]))
    }

    /// Documents member `i` holds in `db.coll`, read on that member.
    pub fn count_docs(&self, i: usize, ns: &str) -> usize {
        let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
        let js = format!(
            "db.getMongo().setReadPref('secondaryPreferred'); \
             JSON.stringify(db.getSiblingDB({db}).getCollection({coll}).countDocuments({{}}))",
            db = serde_json::Value::from(db),
            coll = serde_json::Value::from(coll),
        );
        self.eval(i, &js)
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("{} cannot count {ns}", self.services[i])) as usize
    }

    /// One line per member from the members themselves, for failure messages.
    pub fn describe(&self, names: &[String]) -> String {
        (0..self.services.len())
            .map(|i| {
                let s = self
                    .eval(
                        i,
                        "const s = db.adminCommand({replSetGetStatus: 1}); \
                         JSON.stringify({state: s.myState, term: s.term, \
                         optime: s.optimes && s.optimes.appliedOpTime, sync: s.syncSourceHost})",
                    )
                    .map_or_else(|e| format!("unreachable: {e:#}"), |v| v.to_string());
                format!("{} ({}) {s}\n", names[i], self.services[i])
            })
            .collect()
    }

    /// A replication stall on member `i` instead of the simulator's delay:
    /// `fsyncLock` blocks its writes, so it applies no oplog entry while it
    /// still answers `hello` and `replSetGetStatus` (lag grows for real);
    /// `fsyncUnlock` until its lock count is 0 lifts it. Only the two
    /// delays that mean "stalled" and "caught up" have a real counterpart:
    /// zero, and an hour or more (what the conformance harness sets).
    pub fn set_lag(&self, i: usize, lag: Duration) {
        let js = if lag.is_zero() {
            "let r = {lockCount: 1}; while (r.lockCount > 0) { r = db.fsyncUnlock(); } JSON.stringify(r.ok)"
        } else if lag >= Duration::from_secs(3600) {
            "JSON.stringify(db.fsyncLock().ok)"
        } else {
            Self::refuse(&format!(
                "set_lag({lag:?}) (a bounded delay; real mongod can only be stalled or not)"
            ))
        };
        match self.eval(i, js) {
            Ok(v) if v.as_f64() == Some(1.0) => {}
            // Unlocking a member that holds no lock answers an error: nothing to lift.
            Err(e) if lag.is_zero() && format!("{e:#}").contains("not locked") => {}
            other => panic!("set_lag on {}: {other:?}", self.services[i]),
        }
    }

    /// What a simulator-only request gets on compose.
    pub fn refuse(what: &str) -> ! {
        panic!(
            "{}",
            Unsupported(format!(
                "{what} (a simulator's fault or counter; real mongod has none to set or read)"
            ))
        )
    }

    /// The compose region a spec region maps onto (for tests' messages).
    pub fn compose_region(&self, region: &str) -> Option<&str> {
        self.regions.get(region).map(String::as_str)
    }

    /// How long [`super::MongoSim::wait_for_primary`] sleeps between asks:
    /// each is a `docker compose exec` per member.
    pub const POLL: Duration = Duration::from_millis(500);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mongosim::SimMemberSpec;

    fn services() -> Services {
        Services::from_config(&crate::backing::resolved_compose_file_for_tests(), &|_| {
            None
        })
        .unwrap()
    }

    #[test]
    fn the_acceptance_layout_takes_every_mongod_service() {
        let mut spec = MongoSimSpec::two_regions_and_arbiter("orders-rs");
        let l = layout(&mut spec, &services()).unwrap();
        assert_eq!(
            l.services,
            [
                "catalog-east-1",
                "catalog-east-2",
                "catalog-west-1",
                "catalog-west-2",
                "catalog-south-arbiter"
            ]
        );
        assert_eq!(l.regions["witness"], "south");
        assert_eq!(l.hosts[4], "172.30.3.25:27017");
        assert_eq!(spec.set_name, "rs0", "mongod runs with --replSet rs0");
        assert_eq!(spec.election_timeout, MIN_ELECTION_TIMEOUT);
        let m = &l.config["members"];
        assert_eq!(m[0]["host"], "172.30.1.21:27017");
        assert_eq!(m[0]["priority"], 2.0);
        assert_eq!(m[2]["priority"], 1.0);
        assert_eq!(m[4]["arbiterOnly"], true);
        assert!(m[4].get("priority").is_none());
        assert_eq!(l.config["settings"]["electionTimeoutMillis"], 2000);
    }

    #[test]
    fn a_smaller_spec_takes_a_subset_and_a_larger_one_is_refused() {
        let regions = ["east", "west", "south"].map(String::from);
        let mut spec = MongoSimSpec::for_regions("x", "x", &regions, 1).unwrap();
        spec.election_timeout = Duration::from_secs(5);
        let l = layout(&mut spec, &services()).unwrap();
        assert_eq!(
            l.services,
            ["catalog-east-1", "catalog-west-1", "catalog-south-arbiter"]
        );
        assert_eq!(
            spec.election_timeout,
            Duration::from_secs(5),
            "a slower timing is kept"
        );
        for k in 2..=3 {
            let name = format!("east-{k}");
            spec.members.push(SimMemberSpec::data(&name, "east", 2.0));
        }
        let e = layout(&mut spec, &services()).unwrap_err().to_string();
        assert!(
            e.contains("east-3") && e.contains("2 such service(s) in east"),
            "{e}"
        );
        let mut four = MongoSimSpec::for_regions(
            "r",
            "r",
            &["a".into(), "b".into(), "c".into(), "d".into()],
            1,
        )
        .unwrap();
        let e = layout(&mut four, &services()).unwrap_err().to_string();
        assert!(e.contains("regions"), "{e}");
    }
}
