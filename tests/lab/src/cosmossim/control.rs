//! The simulator's test-control plane: what the tests read and change of the
//! simulated account (faults, operations, write regions), over the
//! simulator's own ARM socket, so that a test drives a simulator in its own
//! process and one in a container (docker-compose.yml's `cosmos`) the same
//! way. It is the lab's, not Azure's: every route is under
//! [`PREFIX`], which no Azure API has, and needs the account's master key in
//! [`KEY_HEADER`]. Its requests are not ARM requests: they are not counted
//! in `arm_requests` and never throttled.
//!
//! | route | what |
//! |---|---|
//! | `GET  {PREFIX}/state` | [`State`]: ARM requests served, operations, ARM's write region, the data plane's writable regions, the locations by priority, the endpoints |
//! | `POST {PREFIX}/control` | one fault command (body: the line `switchyard-lab cosmosdb up` takes on stdin); `{"reply": …}`, or `400 {"error": …}` |
//! | `POST {PREFIX}/reset` | [`Reset`]: a fresh account of the same identity and locations (the lab's new simulator for a test's spec) |

use super::server::Shared;
use super::world::{Consistency, World};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every route of the control plane starts with this.
pub const PREFIX: &str = "/switchyard-lab/cosmossim/v1";

/// The header carrying the account's master key.
pub const KEY_HEADER: &str = "x-switchyard-lab-key";

/// One ARM operation as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationView {
    /// Operation id (the last segment of its `Azure-AsyncOperation` URL).
    pub id: String,
    /// `failoverPriorityChange`, `offlineRegion` or `onlineRegion`.
    pub action: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`.
    pub status: String,
    /// How often its status or result resource was polled.
    pub polls: u64,
}

/// One location of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationView {
    /// Topology region.
    pub region: String,
    /// Azure location name (`Lab East`).
    pub name: String,
    /// Failover priority (0 takes writes).
    pub priority: u32,
    /// Its regional data-plane endpoint.
    pub endpoint: String,
}

/// `GET {PREFIX}/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Full ARM resource id of the account.
    pub account: String,
    /// ARM requests served since the start or the last reset (token
    /// requests included, control-plane requests not).
    pub arm_requests: u64,
    /// Every operation started, in start order.
    pub operations: Vec<OperationView>,
    /// The write region as ARM records it.
    pub arm_write_region: Option<String>,
    /// The data plane's writable regions, in priority order.
    pub writable: Vec<String>,
    /// Every location, by failover priority.
    pub locations: Vec<LocationView>,
    /// ARM base URL (also the authority host).
    pub arm_endpoint: String,
    /// The account's global data-plane endpoint.
    pub document_endpoint: String,
}

impl State {
    /// Operations started, by action.
    pub fn started_by_action(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for o in &self.operations {
            *m.entry(o.action.clone()).or_insert(0) += 1;
        }
        m
    }
}

/// `POST {PREFIX}/reset`: what a test's spec sets on a fresh account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The regions, in the order the account has them (the first takes
    /// writes); refused when they are not the account's.
    pub regions: Vec<String>,
    /// Multi-region writes.
    pub multi_write: bool,
    /// Consistency level.
    pub consistency_level: String,
    /// Bounded staleness: writes.
    pub max_staleness_prefix: u64,
    /// Bounded staleness: seconds.
    pub max_interval_secs: u64,
    /// Duration of every ARM operation, in milliseconds.
    pub op_ms: u64,
    /// `Retry-After` seconds.
    pub retry_after_secs: u64,
}

/// Serve one control-plane request (`path` starts with [`PREFIX`]): the
/// status code and the JSON body.
pub(super) fn handle(
    shared: &Shared,
    method: &hyper::Method,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use serde_json::json;
    if key != Some(shared.key.as_str()) {
        return (
            401,
            json!({"error": format!("the simulator's control plane needs the account's master key in {KEY_HEADER}")}),
        );
    }
    let route = &path[PREFIX.len()..];
    match (method.as_str(), route) {
        ("GET", "/state") => (200, serde_json::to_value(state(shared)).unwrap_or_default()),
        ("POST", "/control") => {
            let line = String::from_utf8_lossy(body);
            let mut w = shared.world.lock().expect("world lock");
            w.advance();
            match command(&mut w, line.trim()) {
                Ok(reply) => (200, json!({ "reply": reply })),
                Err(e) => (400, json!({ "error": e.to_string() })),
            }
        }
        ("POST", "/reset") => match serde_json::from_slice::<Reset>(body)
            .map_err(anyhow::Error::from)
            .and_then(|r| reset(shared, &r))
        {
            Ok(()) => (200, serde_json::to_value(state(shared)).unwrap_or_default()),
            Err(e) => (400, json!({ "error": e.to_string() })),
        },
        _ => (
            404,
            json!({"error": format!("no route {method} {path}; the control plane has GET {PREFIX}/state, POST {PREFIX}/control, POST {PREFIX}/reset")}),
        ),
    }
}

fn state(shared: &Shared) -> State {
    let mut w = shared.world.lock().expect("world lock");
    w.advance();
    State {
        account: w.account_id.clone(),
        arm_requests: shared
            .arm_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        operations: w
            .started
            .iter()
            .map(|id| {
                let o = &w.ops[id];
                OperationView {
                    id: id.clone(),
                    action: o.kind.action().to_string(),
                    status: o.status.as_str().to_string(),
                    polls: o.polls,
                }
            })
            .collect(),
        arm_write_region: w.arm_write().map(|i| w.locations[i].region.clone()),
        writable: w
            .writable
            .iter()
            .map(|&i| w.locations[i].region.clone())
            .collect(),
        locations: w
            .by_priority()
            .into_iter()
            .map(|i| {
                let l = &w.locations[i];
                LocationView {
                    region: l.region.clone(),
                    name: l.name.clone(),
                    priority: l.priority,
                    endpoint: shared.region_urls[i].clone(),
                }
            })
            .collect(),
        arm_endpoint: shared.arm_base.clone(),
        document_endpoint: shared.global_url.clone(),
    }
}

fn reset(shared: &Shared, r: &Reset) -> anyhow::Result<()> {
    let mut w = shared.world.lock().expect("world lock");
    let have: Vec<&str> = w.locations.iter().map(|l| l.region.as_str()).collect();
    if r.regions != have {
        bail!(
            "regions {:?}: this simulator's account has {have:?} (one endpoint per location, in that order)",
            r.regions
        );
    }
    let locations = w
        .locations
        .iter()
        .map(|l| (l.region.clone(), l.name.clone()))
        .collect();
    let mut fresh = World::new(
        &w.name,
        &w.subscription,
        "-",
        locations,
        r.multi_write,
        Consistency {
            level: r.consistency_level.clone(),
            max_staleness_prefix: r.max_staleness_prefix,
            max_interval_secs: r.max_interval_secs,
        },
    );
    fresh.account_id = w.account_id.clone();
    fresh.op_duration = Duration::from_millis(r.op_ms);
    fresh.retry_after_secs = r.retry_after_secs;
    *w = fresh;
    shared
        .arm_requests
        .store(0, std::sync::atomic::Ordering::Relaxed);
    shared.tokens.lock().expect("tokens lock").clear();
    Ok(())
}

/// One fault or query command: `outage REGION`, `restore REGION`, `lag
/// REGION MS`, `slow MS`, `throttle N [STATUS]`, `hold`, `release`, `ops`,
/// `state`.
fn command(w: &mut World, line: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let region = |w: &World, name: &str| {
        w.region_index(name)
            .with_context(|| format!("unknown region `{name}`"))
    };
    Ok(match words.as_slice() {
        ["outage", r] => {
            let i = region(w, r)?;
            w.locations[i].outage = true;
            format!("{r}: regional endpoint down")
        }
        ["restore", r] => {
            let i = region(w, r)?;
            w.locations[i].outage = false;
            format!("{r}: regional endpoint back")
        }
        ["lag", r, ms] => {
            let i = region(w, r)?;
            w.locations[i].replication_delay = Duration::from_millis(ms.parse()?);
            format!("{r}: writes arrive {ms} ms late")
        }
        ["slow", ms] => {
            w.op_duration = Duration::from_millis(ms.parse()?);
            format!("operations now take {ms} ms")
        }
        ["throttle", n] => {
            w.arm_faults = Some((n.parse::<u32>()?, 429)).filter(|(n, _)| *n > 0);
            format!("next {n} ARM requests: 429")
        }
        ["throttle", n, status] => {
            let s: u16 = status.parse()?;
            w.arm_faults = Some((n.parse::<u32>()?, s)).filter(|(n, _)| *n > 0);
            format!("next {n} ARM requests: {s}")
        }
        ["hold"] => {
            w.held = true;
            "operations held".into()
        }
        ["release"] => {
            w.held = false;
            "operations released".into()
        }
        ["ops"] => serde_json::to_string(&w.started_by_kind())?,
        ["state"] => {
            let arm = w.arm_write().map(|i| w.locations[i].region.clone());
            let dp: Vec<&str> = w
                .writable
                .iter()
                .map(|&i| w.locations[i].region.as_str())
                .collect();
            format!("arm write region {arm:?}; data plane writable {dp:?}")
        }
        _ => bail!(
            "unknown command `{line}` (outage/restore REGION, lag REGION MS, slow MS, throttle N [STATUS], hold, release, ops, state)"
        ),
    })
}

/// A client of the control plane: HTTPS to the simulator's ARM socket,
/// trusting only the simulator's CA, one request per connection.
#[derive(Clone)]
pub struct ControlClient {
    /// Where to connect (the ARM listener, or the address the compose
    /// resolver gives the tests for the `cosmos` service).
    addr: String,
    /// The name its certificate is checked against (the ARM URL's host).
    server_name: rustls::pki_types::ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    key: String,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ControlClient {
    /// A client of the simulator at `addr` (`HOST:PORT`) whose certificate
    /// names `server_name`, signed by the CA in `ca_pem`; `key` is the
    /// account's master key.
    pub fn new(addr: &str, server_name: &str, ca_pem: &str, key: &str) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.context("the simulator's CA")?)?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(ControlClient {
            addr: addr.to_string(),
            server_name: rustls::pki_types::ServerName::try_from(server_name.to_string())
                .with_context(|| format!("{server_name:?} is no TLS server name"))?,
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            key: key.to_string(),
        })
    }

    /// `GET {PREFIX}/state`.
    pub async fn state(&self) -> anyhow::Result<State> {
        let body = self.call("GET", "/state", "").await?;
        serde_json::from_str(&body).context("the control plane's state")
    }

    /// `POST {PREFIX}/control`: the command's reply.
    pub async fn control(&self, line: &str) -> anyhow::Result<String> {
        let body = self.call("POST", "/control", line).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v["reply"].as_str().unwrap_or_default().to_string())
    }

    /// `POST {PREFIX}/reset`: the fresh account's state.
    pub async fn reset(&self, r: &Reset) -> anyhow::Result<State> {
        let body = self
            .call("POST", "/reset", &serde_json::to_string(r)?)
            .await?;
        serde_json::from_str(&body).context("the control plane's state")
    }

    /// One request; the body of a 200, else an error with the simulator's
    /// message.
    async fn call(&self, method: &str, route: &str, body: &str) -> anyhow::Result<String> {
        let what = format!("{method} https://{}{PREFIX}{route}", self.addr);
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            let mut tls = self.tls.connect(self.server_name.clone(), tcp).await?;
            let req = format!(
                "{method} {PREFIX}{route} HTTP/1.1\r\nHost: {}\r\n{KEY_HEADER}: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                self.key,
                body.len()
            );
            tls.write_all(req.as_bytes()).await?;
            let mut out = Vec::new();
            // The server closes after the answer (Connection: close); a
            // peer that closes without TLS close_notify still answered.
            match tls.read_to_end(&mut out).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
                Err(e) => return Err(e.into()),
            }
            anyhow::Ok(out)
        };
        let out = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{what}: no answer within 30 s"))?
            .with_context(|| what.clone())?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("{what}: no HTTP header end"))?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            bail!("{what}: a chunked answer (the control plane sends Content-Length)");
        }
        let code: u16 = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("{what}: no status line"))?;
        if code != 200 {
            let msg = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.to_string());
            bail!("{what}: {code}: {msg}");
        }
        Ok(body.to_string())
    }
}
