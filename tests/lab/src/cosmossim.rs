//! An Azure Cosmos DB simulator: the Azure Resource Manager (ARM) resource
//! provider `Microsoft.DocumentDB/databaseAccounts`, a Microsoft Entra ID
//! token endpoint (OAuth2 client credentials) and the account's data plane
//! (global and regional endpoints), over HTTPS on loopback ports.
//!
//! Cosmos DB cannot run here (the emulator has no regions), so its failover
//! surface is simulated from the public REST reference: `failoverPriorityChange`,
//! `offlineRegion` and `onlineRegion` as asynchronous operations (`202` +
//! `Azure-AsyncOperation`), the account read with `writeLocations`,
//! `readLocations`, `failoverPolicies`, and the data plane's `GET /` with
//! `writableLocations`/`readableLocations`, master-key signatures verified.
//! docs/cosmossim.md says what is and is not modelled.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::cosmossim::{CosmosSim, CosmosSimSpec};
//! let sim = CosmosSim::start(CosmosSimSpec::for_regions("catalog", &["east", "west"])).await?;
//! println!("{} {}", sim.arm_endpoint(), sim.account_id());
//! sim.control("outage east")?;
//! # Ok(()) }
//! ```

pub mod server;
pub mod world;

use anyhow::{bail, Context};
use server::{Client, Endpoint, Role, Shared};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_topology::{AzureConnection, Connection, Member, Store, StoreKind, Topology};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
pub use world::{Consistency, OpStatus, World};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct CosmosSimSpec {
    /// Store name in the topology.
    pub store_name: String,
    /// Account name.
    pub account_name: String,
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Topology regions, in initial failover priority order (the first takes writes).
    pub regions: Vec<String>,
    /// Multi-region writes (`enableMultipleWriteLocations`).
    pub multi_write: bool,
    /// Consistency policy.
    pub consistency: Consistency,
    /// How long each ARM operation takes.
    pub op_duration: Duration,
    /// `Retry-After` seconds the simulator sends with `202` and `InProgress`.
    pub retry_after_secs: u64,
    /// Address every listener binds (loopback unless it runs in a container).
    pub listen: std::net::IpAddr,
    /// Host name or address the endpoints' URLs and the certificate carry;
    /// `None`: the listen address (which must then not be unspecified).
    pub advertise_host: Option<String>,
    /// Fixed ports: ARM on this one, the global endpoint on the next, then
    /// one regional endpoint per region; `None`: free ports.
    pub base_port: Option<u16>,
}

impl CosmosSimSpec {
    /// An account `{store}-acct` over `regions`, the first taking writes.
    pub fn for_regions(store: &str, regions: &[&str]) -> Self {
        CosmosSimSpec {
            store_name: store.into(),
            account_name: format!("{store}-acct"),
            subscription: "00000000-0000-4000-8000-00000000cafe".into(),
            resource_group: "switchyard-lab".into(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            multi_write: false,
            consistency: Consistency::default(),
            op_duration: Duration::from_millis(1500),
            retry_after_secs: 1,
            listen: std::net::Ipv4Addr::LOCALHOST.into(),
            advertise_host: None,
            base_port: None,
        }
    }

    /// The host name the endpoints' URLs carry.
    fn url_host(&self) -> anyhow::Result<String> {
        match &self.advertise_host {
            Some(h) => Ok(h.clone()),
            None if self.listen.is_unspecified() => {
                bail!("listening on {} needs an advertised host name", self.listen)
            }
            None => Ok(self.listen.to_string()),
        }
    }
}

/// The Azure location name the simulator gives a topology region:
/// `east` → `Lab East` (spaces and capitals, as real location names have).
pub fn location_name(region: &str) -> String {
    let mut c = region.chars();
    match c.next() {
        Some(f) => format!("Lab {}{}", f.to_uppercase(), c.as_str()),
        None => "Lab".into(),
    }
}

/// A running simulator. Dropping it stops every listener.
pub struct CosmosSim {
    spec: CosmosSimSpec,
    shared: Arc<Shared>,
    ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for CosmosSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosSim")
            .field("account", &self.account_id())
            .field("arm", &self.shared.arm_base)
            .finish_non_exhaustive()
    }
}

impl Drop for CosmosSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The service principal with write access the simulator knows.
pub const CLIENT_ID: &str = "5a1e0000-0000-4000-8000-00000000c11e";
/// A service principal with only the reader role (403 on actions).
pub const READER_CLIENT_ID: &str = "5a1e0000-0000-4000-8000-0000000ead00";
/// The tenant id.
pub const TENANT_ID: &str = "7e4a0000-0000-4000-8000-000000007e4a";

impl CosmosSim {
    /// Bind every listener (free loopback ports unless the spec says
    /// otherwise) and start serving.
    pub async fn start(spec: CosmosSimSpec) -> anyhow::Result<CosmosSim> {
        if spec.regions.len() < 2 {
            bail!("a Cosmos DB account to fail over needs at least two regions");
        }
        let host = spec.url_host()?;
        let (ca_pem, tls) = tls_config(&host).context("making the simulator's certificates")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let bind = |k: u16| {
            let port = spec.base_port.map_or(0, |b| b + k);
            let addr = std::net::SocketAddr::new(spec.listen, port);
            async move {
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))
            }
        };
        let arm = bind(0).await?;
        let global = bind(1).await?;
        let mut regional = vec![];
        for k in 0..spec.regions.len() {
            regional.push(bind(2 + k as u16).await?);
        }
        let url = |l: &TcpListener| -> anyhow::Result<String> {
            Ok(format!("https://{host}:{}/", l.local_addr()?.port()))
        };
        let locations = spec
            .regions
            .iter()
            .map(|r| (r.clone(), location_name(r)))
            .collect();
        let mut world = World::new(
            &spec.account_name,
            &spec.subscription,
            &spec.resource_group,
            locations,
            spec.multi_write,
            spec.consistency.clone(),
        );
        world.op_duration = spec.op_duration;
        world.retry_after_secs = spec.retry_after_secs;
        let shared = Arc::new(Shared {
            world: std::sync::Mutex::new(world),
            arm_base: url(&arm)?.trim_end_matches('/').to_string(),
            global_url: url(&global)?,
            region_urls: regional.iter().map(url).collect::<anyhow::Result<_>>()?,
            key: server::random_b64(64),
            tenant: TENANT_ID.into(),
            clients: vec![
                Client {
                    id: CLIENT_ID.into(),
                    secret: server::random_b64(30),
                    role: Role::Contributor,
                },
                Client {
                    id: READER_CLIENT_ID.into(),
                    secret: server::random_b64(30),
                    role: Role::Reader,
                },
            ],
            tokens: Default::default(),
            arm_requests: Default::default(),
        });
        let mut tasks = vec![
            tokio::spawn(serve(arm, acceptor.clone(), shared.clone(), Endpoint::Arm)),
            tokio::spawn(serve(
                global,
                acceptor.clone(),
                shared.clone(),
                Endpoint::Global,
            )),
        ];
        for (i, l) in regional.into_iter().enumerate() {
            tasks.push(tokio::spawn(serve(
                l,
                acceptor.clone(),
                shared.clone(),
                Endpoint::Region(i),
            )));
        }
        Ok(CosmosSim {
            spec,
            shared,
            ca_pem,
            tasks,
        })
    }

    /// The spec it was started with.
    pub fn spec(&self) -> &CosmosSimSpec {
        &self.spec
    }

    /// ARM base URL, e.g. `https://127.0.0.1:40123` (also the authority host).
    pub fn arm_endpoint(&self) -> &str {
        &self.shared.arm_base
    }

    /// The account's global data-plane endpoint.
    pub fn document_endpoint(&self) -> &str {
        &self.shared.global_url
    }

    /// Regional data-plane endpoint of `region`.
    pub fn regional_endpoint(&self, region: &str) -> Option<&str> {
        let i = self.spec.regions.iter().position(|r| r == region)?;
        Some(&self.shared.region_urls[i])
    }

    /// The account's primary master key (base64).
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// Full ARM resource id of the account.
    pub fn account_id(&self) -> String {
        self.world(|w| w.account_id.clone())
    }

    /// PEM of the CA that signed every endpoint's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Secret of [`CLIENT_ID`] (or of [`READER_CLIENT_ID`]).
    pub fn client_secret(&self, client_id: &str) -> Option<&str> {
        self.shared
            .clients
            .iter()
            .find(|c| c.id == client_id)
            .map(|c| c.secret.as_str())
    }

    /// Look at (or change) the account directly.
    pub fn world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.shared.world.lock().expect("world lock");
        w.advance();
        f(&mut w)
    }

    /// ARM requests served so far (token requests included).
    pub fn arm_requests(&self) -> u64 {
        self.shared
            .arm_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// ARM operations started so far, by action (`failoverPriorityChange` …).
    pub fn operations_started(&self) -> BTreeMap<&'static str, usize> {
        self.world(|w| w.started_by_kind())
    }

    /// Every operation: (id, action, status, polls), in start order.
    pub fn operations(&self) -> Vec<(String, &'static str, String, u64)> {
        self.world(|w| {
            w.started
                .iter()
                .map(|id| {
                    let o = &w.ops[id];
                    (
                        id.clone(),
                        o.kind.action(),
                        o.status.as_str().to_string(),
                        o.polls,
                    )
                })
                .collect()
        })
    }

    /// The write region as ARM records it and the data plane's writable
    /// regions (topology names).
    pub fn write_regions(&self) -> (Option<String>, Vec<String>) {
        self.world(|w| {
            (
                w.arm_write().map(|i| w.locations[i].region.clone()),
                w.writable
                    .iter()
                    .map(|&i| w.locations[i].region.clone())
                    .collect(),
            )
        })
    }

    /// One fault or query command (stdin of `switchyard-lab cosmosdb up`):
    /// `outage REGION`, `restore REGION`, `lag REGION MS`, `slow MS`,
    /// `throttle N [STATUS]`, `hold`, `release`, `ops`, `state`.
    pub fn control(&self, line: &str) -> anyhow::Result<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let region = |w: &World, name: &str| {
            w.region_index(name)
                .with_context(|| format!("unknown region `{name}`"))
        };
        let mut w = self.shared.world.lock().expect("world lock");
        w.advance();
        Ok(match words.as_slice() {
            ["outage", r] => {
                let i = region(&w, r)?;
                w.locations[i].outage = true;
                format!("{r}: regional endpoint down")
            }
            ["restore", r] => {
                let i = region(&w, r)?;
                w.locations[i].outage = false;
                format!("{r}: regional endpoint back")
            }
            ["lag", r, ms] => {
                let i = region(&w, r)?;
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

    /// Write the CA, the master key and the client secret into `dir` (secrets
    /// mode 0600) and return the store as a topology describes it: the
    /// controller reads the secrets from those files.
    pub fn store(&self, dir: &Path) -> anyhow::Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        let name = &self.spec.store_name;
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, &self.ca_pem)?;
        let secret = |file: String, value: &str| -> anyhow::Result<String> {
            let p = dir.join(file);
            std::fs::write(&p, value)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            Ok(p.display().to_string())
        };
        let key_file = secret(format!("{name}-key"), self.key())?;
        let secret_file = secret(
            format!("{name}-client-secret"),
            self.client_secret(CLIENT_ID).unwrap_or_default(),
        )?;
        let w = self.shared.world.lock().expect("world lock");
        let members = w
            .by_priority()
            .into_iter()
            .map(|i| {
                let l = &w.locations[i];
                Member {
                    name: format!("{name}-{}", l.region),
                    host: None,
                    region: l.region.clone(),
                    priority: 1.0,
                    votes: 1,
                    arbiter: false,
                    hidden: false,
                    read_only_replica: false,
                    failover_priority: Some(l.priority),
                    sentinel: false,
                    hooks: Default::default(),
                }
            })
            .collect();
        Ok(Store {
            tags: Vec::new(),
            name: name.clone(),
            kind: StoreKind::Cosmosdb,
            depends_on: vec![],
            max_lag_bytes: None,
            max_lag_ms: None,
            connection: Connection {
                endpoint: Some(self.shared.global_url.clone()),
                tls_ca_file: Some(ca.display().to_string()),
                azure: Some(AzureConnection {
                    account: w.account_id.clone(),
                    arm_endpoint: Some(self.shared.arm_base.clone()),
                    credential: Some("client_secret".into()),
                    authority_host: Some(self.shared.arm_base.clone()),
                    tenant_id: Some(TENANT_ID.into()),
                    client_id: Some(CLIENT_ID.into()),
                    client_secret_file: Some(secret_file),
                    key_file: Some(key_file),
                    locations: w
                        .locations
                        .iter()
                        .map(|l| (l.region.clone(), l.name.clone()))
                        .collect(),
                    ..AzureConnection::default()
                }),
                ..Connection::default()
            },
            settings: Default::default(),
            members,
        })
    }

    /// A whole topology with this one store; regions as in the spec (the
    /// first primary).
    pub fn topology(&self, name: &str, dir: &Path) -> anyhow::Result<Topology> {
        Ok(Topology {
            capacity_margin_percent: None,
            name: name.into(),
            regions: crate::regions_first_primary(&self.spec.regions),
            stores: vec![self.store(dir)?],
        })
    }
}

/// A CA and a leaf for `localhost`, `127.0.0.1` and the advertised `host`.
fn tls_config(host: &str) -> anyhow::Result<(String, rustls::ServerConfig)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "switchyard-lab cosmossim CA");
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !names.iter().any(|n| n == host) {
        names.push(host.to_string());
    }
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "cosmossim.localhost");
    let cert = leaf.signed_by(&key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca_pem, cfg))
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    at: Endpoint,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let down = match at {
            Endpoint::Region(i) => shared
                .world
                .lock()
                .map(|w| w.locations[i].outage)
                .unwrap_or(true),
            _ => false,
        };
        if down {
            drop(tcp);
            continue;
        }
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc =
                hyper::service::service_fn(move |req| server::handle(shared.clone(), at, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        });
    }
}
