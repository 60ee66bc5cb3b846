//! [`super::EsdbSim`] on `SWITCHYARD_BACKING=compose`: the spec's nodes are
//! docker-compose.yml's real EventStoreDB 24.10 nodes (`ledger-east`,
//! `-west`, `-south`, one per region, in the spec's region order).
//!
//! The cluster is reset from empty volumes, the spec's node priorities are
//! set with the documented admin call (`POST /admin/node/priority/{n}`), and
//! everything the tests read comes from the nodes' own HTTP API: gossip
//! (`GET /gossip`: state, epoch, advertised address) and the stream's Atom
//! feed (`GET /streams/{s}/0/forward/{n}?embed=body`, AtomPub being enabled
//! in the compose file). Faults are `docker compose kill/start` and
//! `compose/region.sh`. A replication delay, the acknowledged counter and
//! the simulator's control commands are the simulator's only:
//! [`crate::backing::Unsupported`].

use super::EsdbSimSpec;
use crate::backing::{http, Compose, ServiceKind, Services, Unsupported};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A spec attached to compose services.
#[derive(Debug)]
pub struct Attached {
    project: Compose,
    /// Per spec node: its service, the address the tests use, its home
    /// address (what gossip advertises).
    nodes: Vec<(String, String, String)>,
    /// Spec region → compose region.
    regions: HashMap<String, String>,
    _lock: std::fs::File,
}

/// Per spec node (its service, `host:port`, home address) and the region
/// map; what does not fit the compose file is [`Unsupported`].
#[allow(clippy::type_complexity)]
pub fn layout(
    spec: &EsdbSimSpec,
    services: &Services,
) -> Result<(Vec<(String, String, String)>, HashMap<String, String>)> {
    let mut order: Vec<&str> = Vec::new();
    for n in &spec.nodes {
        if n.read_only {
            return Err(Unsupported(format!("read-only replica {}", n.name)).into());
        }
        if order.contains(&n.region.as_str()) {
            return Err(Unsupported(format!(
                "two EventStoreDB nodes in region {}; docker-compose.yml has one per region",
                n.region
            ))
            .into());
        }
        order.push(&n.region);
    }
    if order.len() != 3 {
        return Err(Unsupported(format!(
            "an EventStoreDB cluster of {} node(s); docker-compose.yml's has three",
            order.len()
        ))
        .into());
    }
    let mut regions = HashMap::new();
    let mut nodes = Vec::new();
    for (r, target) in order.iter().zip(["east", "west", "south"]) {
        regions.insert(r.to_string(), target.to_string());
        let found = services.in_region(ServiceKind::EventStoreDb, target);
        let [svc] = found.as_slice() else {
            bail!(
                "docker-compose.yml has {} EventStoreDB services in {target}",
                found.len()
            );
        };
        nodes.push((svc.name.clone(), svc.addr.clone(), svc.home.clone()));
    }
    Ok((nodes, regions))
}

/// Reset the nodes, wait for a leader, set the spec's priorities.
pub async fn attach(project: &Compose, spec: &EsdbSimSpec) -> Result<Attached> {
    let services = project.services().await?;
    let (nodes, regions) = layout(spec, services)?;
    let lock = project.lock("eventstoredb")?;
    let names: Vec<&str> = nodes.iter().map(|(s, _, _)| s.as_str()).collect();
    project.reset(&names).await?;
    let attached = Attached {
        project: project.clone(),
        nodes,
        regions,
        _lock: lock,
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while attached.leaders().len() != 1 {
        if Instant::now() > deadline {
            bail!(
                "no EventStoreDB leader within 180 s:\n{}",
                attached.describe(spec)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (i, n) in spec.nodes.iter().enumerate() {
        let addr = attached.nodes[i].1.clone();
        let path = format!("/admin/node/priority/{}", n.priority);
        let (code, _, body) =
            tokio::task::spawn_blocking(move || http(&addr, "POST", &path, &[], "")).await??;
        if !(200..300).contains(&code) {
            bail!(
                "setting {}'s node priority to {}: HTTP {code} {body}",
                n.name,
                n.priority
            );
        }
    }
    Ok(attached)
}

/// One member of a node's gossip.
#[derive(Debug, Clone)]
struct Member {
    state: String,
    alive: bool,
    ip: String,
    epoch: i64,
    priority: i64,
}

impl Attached {
    /// `host:port` of node `i` (what the tests and the controller use).
    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i].1
    }

    /// Node `i`'s own gossip: every member as it sees them.
    fn gossip(&self, i: usize) -> Result<Vec<Member>> {
        let (code, _, body) = http(
            self.addr(i),
            "GET",
            "/gossip",
            &[("Accept", "application/json")],
            "",
        )?;
        if code != 200 {
            bail!("{}: GET /gossip: HTTP {code}", self.nodes[i].0);
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("gossip JSON")?;
        Ok(v["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| Member {
                        state: m["state"].as_str().unwrap_or_default().to_string(),
                        alive: m["isAlive"].as_bool().unwrap_or(false),
                        ip: m["httpEndPointIp"].as_str().unwrap_or_default().to_string(),
                        epoch: m["epochNumber"].as_i64().unwrap_or(-1),
                        priority: m["nodePriority"].as_i64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// What node `i` says of itself, when it answers.
    fn own(&self, i: usize) -> Option<Member> {
        self.gossip(i)
            .ok()?
            .into_iter()
            .find(|m| m.ip == self.nodes[i].2)
    }

    /// The nodes a client reaches that call themselves leader.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.own(i).is_some_and(|m| m.alive && m.state == "Leader"))
            .collect()
    }

    /// Node `i`'s epoch number as it gossips it.
    pub fn epoch(&self, i: usize) -> Result<i64> {
        self.own(i)
            .map(|m| m.epoch)
            .with_context(|| format!("{} does not answer /gossip", self.nodes[i].0))
    }

    /// Event ids of `stream` as node `i` holds them, in order (its Atom feed,
    /// not forwarded to the leader).
    pub fn stream_ids(&self, i: usize, stream: &str) -> Result<Vec<uuid::Uuid>> {
        let path = format!("/streams/{stream}/0/forward/4096?embed=body");
        let (code, _, body) = http(
            self.addr(i),
            "GET",
            &path,
            &[
                ("Accept", "application/vnd.eventstore.atom+json"),
                ("ES-RequireLeader", "False"),
            ],
            "",
        )?;
        if code == 404 {
            return Ok(Vec::new());
        }
        if code != 200 {
            bail!("{}: GET {path}: HTTP {code}", self.nodes[i].0);
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("Atom feed JSON")?;
        let mut entries: Vec<(i64, uuid::Uuid)> = Vec::new();
        for e in v["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let n = e["eventNumber"]
                .as_i64()
                .context("entry without eventNumber")?;
            let id = e["eventId"]
                .as_str()
                .context("entry without eventId")?
                .parse()
                .context("eventId")?;
            entries.push((n, id));
        }
        // Atom pages list the newest entry first.
        entries.sort_by_key(|(n, _)| *n);
        Ok(entries.into_iter().map(|(_, id)| id).collect())
    }

    /// SIGKILL node `i`'s container.
    pub fn kill(&self, i: usize) -> Result<()> {
        self.project.kill(&self.nodes[i].0)
    }

    /// Start node `i`'s container again.
    pub fn revive(&self, i: usize) -> Result<()> {
        self.project.start(&self.nodes[i].0)
    }

    /// Cut or heal the compose region a spec region maps onto.
    pub fn region(&self, region: &str, cut: bool) -> Result<()> {
        let r = self
            .regions
            .get(region)
            .with_context(|| format!("no region named {region}"))?;
        if cut {
            self.project.cut_region(r)
        } else {
            self.project.heal_region(r)
        }
    }

    /// One line per node from its own gossip, for failure messages.
    pub fn describe(&self, spec: &EsdbSimSpec) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let s = match self.own(i) {
                    Some(m) => format!(
                        "{} alive={} epoch={} prio={}",
                        m.state, m.alive, m.epoch, m.priority
                    ),
                    None => "unreachable".into(),
                };
                format!("{} ({}) {s}\n", spec.nodes[i].name, self.nodes[i].0)
            })
            .collect()
    }

    /// What a simulator-only request gets on compose.
    pub fn refuse(what: &str) -> anyhow::Error {
        Unsupported(format!(
            "{what} (a simulator's fault or counter; a real EventStoreDB has none to set or read)"
        ))
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_regions_map_onto_the_three_nodes_and_more_are_refused() {
        let services =
            Services::from_config(&crate::backing::resolved_compose_file_for_tests(), &|_| {
                None
            })
            .unwrap();
        let spec = EsdbSimSpec::for_regions("ledger", &["a".into(), "b".into(), "c".into()]);
        let (nodes, regions) = layout(&spec, &services).unwrap();
        assert_eq!(
            nodes,
            [
                (
                    "ledger-east".into(),
                    "172.30.1.31:2113".into(),
                    "172.30.1.31".into()
                ),
                (
                    "ledger-west".into(),
                    "172.30.2.32:2113".into(),
                    "172.30.2.32".into()
                ),
                (
                    "ledger-south".into(),
                    "172.30.3.33:2113".into(),
                    "172.30.3.33".into()
                ),
            ]
        );
        assert_eq!(regions["b"], "west");
        let four = EsdbSimSpec::for_regions("l", &["a".into(), "b".into(), "c".into(), "d".into()]);
        let e = layout(&four, &services).unwrap_err().to_string();
        assert!(e.contains("4 node(s)"), "{e}");
        let mut ro = spec.clone();
        ro.nodes[2].read_only = true;
        assert!(layout(&ro, &services)
            .unwrap_err()
            .to_string()
            .contains("read-only"));
    }
}
