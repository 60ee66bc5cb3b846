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
//! Tests read and change the account through the simulator's test-control
//! plane ([`control`]), over its ARM socket, whether the simulator runs in
//! the test's process or in docker-compose.yml's `cosmos` container
//! (`SWITCHYARD_BACKING=compose`, [`crate::backing`]): one code path.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::cosmossim::{CosmosSim, CosmosSimSpec};
//! let sim = CosmosSim::start(CosmosSimSpec::for_regions("catalog", &["east", "west"])).await?;
//! println!("{} {}", sim.arm_endpoint(), sim.account_id());
//! sim.control("outage east").await?;
//! # Ok(()) }
//! ```

pub mod control;
pub mod server;
pub mod world;

use anyhow::{bail, Context};
use control::{ControlClient, State};
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

/// A running simulator, in this process or in a container. Dropping it
/// stops every listener it started (or releases the container).
pub struct CosmosSim {
    spec: CosmosSimSpec,
    arm_base: String,
    global_url: String,
    /// Regional endpoints, in the order of `spec.regions`.
    region_urls: Vec<String>,
    key: String,
    ca_pem: String,
    /// Client id → secret of the service principals whose secrets we know.
    secrets: Vec<(String, String)>,
    account_id: String,
    control: ControlClient,
    running: Running,
}

/// Where the simulator runs.
enum Running {
    /// Listeners in this process.
    Here(Vec<JoinHandle<()>>),
    /// docker-compose.yml's `cosmos` service, held (a lock shared by every
    /// test binary) for as long as this handle lives.
    Compose(#[allow(dead_code)] std::fs::File),
}

impl std::fmt::Debug for CosmosSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosSim")
            .field("account", &self.account_id)
            .field("arm", &self.arm_base)
            .field("compose", &matches!(self.running, Running::Compose(_)))
            .finish_non_exhaustive()
    }
}

impl Drop for CosmosSim {
    fn drop(&mut self) {
        if let Running::Here(tasks) = &self.running {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// The service principal with write access the simulator knows.
pub const CLIENT_ID: &str = "5a1e0000-0000-4000-8000-00000000c11e";
/// A service principal with only the reader role (403 on actions).
pub const READER_CLIENT_ID: &str = "5a1e0000-0000-4000-8000-0000000ead00";
/// The tenant id.
pub const TENANT_ID: &str = "7e4a0000-0000-4000-8000-000000007e4a";

/// Where docker-compose.yml's `cosmos` service writes its topology, CA and
/// secrets (its `--dir`).
const COMPOSE_DIR: &str = "/run/cosmos";

impl CosmosSim {
    /// Bind every listener (free loopback ports unless the spec says
    /// otherwise) and start serving; on `SWITCHYARD_BACKING=compose`, reset
    /// the `cosmos` service's account to `spec` instead (see
    /// [`CosmosSim::attach`]).
    pub async fn start(spec: CosmosSimSpec) -> anyhow::Result<CosmosSim> {
        if spec.regions.len() < 2 {
            bail!("a Cosmos DB account to fail over needs at least two regions");
        }
        if let Some(project) = crate::backing::Backing::compose()? {
            return Self::attach(project, spec).await;
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
        let account_id = world.account_id.clone();
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
        // The tests' own requests go to the ARM listener like anyone's:
        // loopback when it listens on every interface.
        let arm_port = arm.local_addr()?.port();
        let connect_ip = if spec.listen.is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            spec.listen
        };
        let control = ControlClient::new(
            &std::net::SocketAddr::new(connect_ip, arm_port).to_string(),
            &host,
            &ca_pem,
            &shared.key,
        )?;
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
            arm_base: shared.arm_base.clone(),
            global_url: shared.global_url.clone(),
            region_urls: shared.region_urls.clone(),
            key: shared.key.clone(),
            ca_pem,
            secrets: shared
                .clients
                .iter()
                .map(|c| (c.id.clone(), c.secret.clone()))
                .collect(),
            account_id,
            control,
            running: Running::Here(tasks),
            spec,
        })
    }

    /// The compose backing: docker-compose.yml's `cosmos` service (the
    /// service of kind [`crate::backing::ServiceKind::CosmosDb`] the
    /// resolver finds), its account reset through the control plane to a
    /// fresh one with `spec`'s regions (which must be the service's),
    /// consistency, multi-write and timings. The account keeps the
    /// service's identity (its id names the service's store, `profiles`;
    /// the topology's members are named after `spec.store_name`). The CA,
    /// master key and client secrets are read from the container
    /// ([`COMPOSE_DIR`]); the endpoints' URLs carry the service's name
    /// (`cosmos`), which this host must resolve (the certificate is for it).
    async fn attach(
        project: &crate::backing::Compose,
        spec: CosmosSimSpec,
    ) -> anyhow::Result<CosmosSim> {
        use crate::backing::{ServiceKind, Unsupported};
        if spec.base_port.is_some() || spec.advertise_host.is_some() || !spec.listen.is_loopback() {
            return Err(Unsupported(
                "a Cosmos DB simulator on chosen addresses or ports (docker-compose.yml's `cosmos` listens where its command line says)".into(),
            )
            .into());
        }
        let services = project.services().await?;
        let svc = match services.of(ServiceKind::CosmosDb).as_slice() {
            [svc] => (*svc).clone(),
            found => bail!(
                "docker-compose.yml has {} Cosmos DB simulator services; the compose backing attaches to one",
                found.len()
            ),
        };
        let lock = project.lock("cosmos")?;
        let cat = |path: String| {
            let name = svc.name.clone();
            async move {
                project
                    .exec(&name, &["cat", &path])
                    .await
                    .with_context(|| format!("reading {path} in service {name}"))
            }
        };
        let toml = cat(format!("{COMPOSE_DIR}/topology.toml")).await?;
        let there = switchyard_topology::parse_str(&format!("{COMPOSE_DIR}/topology.toml"), &toml)
            .map_err(|e| anyhow::anyhow!("{COMPOSE_DIR}/topology.toml of {}: {e}", svc.name))?;
        let Some(store) = there.stores.first() else {
            bail!("{COMPOSE_DIR}/topology.toml of {} has no store", svc.name);
        };
        let az = store.connection.azure.as_ref().with_context(|| {
            format!("{COMPOSE_DIR}/topology.toml: no [stores.connection.azure]")
        })?;
        let file = |f: &Option<String>, what: &str| {
            f.clone()
                .with_context(|| format!("{COMPOSE_DIR}/topology.toml names no {what}"))
        };
        let ca_pem = cat(file(&store.connection.tls_ca_file, "tls_ca_file")?).await?;
        let key = cat(file(&az.key_file, "key_file")?).await?;
        let secret = cat(file(&az.client_secret_file, "client_secret_file")?).await?;
        let mut secrets = vec![(CLIENT_ID.to_string(), secret)];
        if let Ok(s) = cat(format!("{COMPOSE_DIR}/{}-reader-client-secret", store.name)).await {
            secrets.push((READER_CLIENT_ID.to_string(), s));
        }
        let arm_base = file(&az.arm_endpoint, "arm_endpoint")?;
        let host = arm_base
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map_or(arm_base.as_str(), |(h, _)| h)
            .to_string();
        // The controller follows the URLs the simulator hands out (ARM's
        // operation URLs, the data plane's regional endpoints): by name.
        if tokio::net::lookup_host((host.as_str(), svc.kind.port()))
            .await
            .map_or(true, |mut a| a.next().is_none())
        {
            bail!(
                "the Cosmos DB simulator's URLs and certificate carry the name `{host}`, which this host does not resolve: \
                 map it to the service's address (e.g. `{} {host}` in /etc/hosts)",
                svc.home
            );
        }
        let control = ControlClient::new(&svc.addr, &host, &ca_pem, &key)?;
        let state = control
            .reset(&control::Reset {
                regions: spec.regions.clone(),
                multi_write: spec.multi_write,
                consistency_level: spec.consistency.level.clone(),
                max_staleness_prefix: spec.consistency.max_staleness_prefix,
                max_interval_secs: spec.consistency.max_interval_secs,
                op_ms: spec.op_duration.as_millis() as u64,
                retry_after_secs: spec.retry_after_secs,
            })
            .await
            .map_err(|e| Unsupported(format!("the `cosmos` service's account: {e}")))?;
        Ok(CosmosSim {
            arm_base: state.arm_endpoint.clone(),
            global_url: state.document_endpoint.clone(),
            region_urls: regional_urls(&spec, &state)?,
            key,
            ca_pem,
            secrets,
            account_id: state.account,
            control,
            running: Running::Compose(lock),
            spec,
        })
    }

    /// The spec it was started with.
    pub fn spec(&self) -> &CosmosSimSpec {
        &self.spec
    }

    /// ARM base URL, e.g. `https://127.0.0.1:40123` (also the authority host).
    pub fn arm_endpoint(&self) -> &str {
        &self.arm_base
    }

    /// The account's global data-plane endpoint.
    pub fn document_endpoint(&self) -> &str {
        &self.global_url
    }

    /// Regional data-plane endpoint of `region`.
    pub fn regional_endpoint(&self, region: &str) -> Option<&str> {
        let i = self.spec.regions.iter().position(|r| r == region)?;
        self.region_urls.get(i).map(String::as_str)
    }

    /// The account's primary master key (base64).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Full ARM resource id of the account.
    pub fn account_id(&self) -> String {
        self.account_id.clone()
    }

    /// PEM of the CA that signed every endpoint's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Secret of [`CLIENT_ID`] (or of [`READER_CLIENT_ID`]).
    pub fn client_secret(&self, client_id: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(id, _)| id == client_id)
            .map(|(_, s)| s.as_str())
    }

    /// Whether this is docker-compose.yml's `cosmos` service.
    pub fn is_compose(&self) -> bool {
        matches!(self.running, Running::Compose(_))
    }

    /// Everything the control plane reports, read now.
    pub async fn state(&self) -> anyhow::Result<State> {
        self.control.state().await
    }

    /// ARM requests served so far (token requests included).
    pub async fn arm_requests(&self) -> anyhow::Result<u64> {
        Ok(self.state().await?.arm_requests)
    }

    /// ARM operations started so far, by action (`failoverPriorityChange` …).
    pub async fn operations_started(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        Ok(self.state().await?.started_by_action())
    }

    /// Every operation: (id, action, status, polls), in start order.
    pub async fn operations(&self) -> anyhow::Result<Vec<(String, String, String, u64)>> {
        Ok(self
            .state()
            .await?
            .operations
            .into_iter()
            .map(|o| (o.id, o.action, o.status, o.polls))
            .collect())
    }

    /// The write region as ARM records it and the data plane's writable
    /// regions (topology names).
    pub async fn write_regions(&self) -> anyhow::Result<(Option<String>, Vec<String>)> {
        let s = self.state().await?;
        Ok((s.arm_write_region, s.writable))
    }

    /// One fault or query command (stdin of `switchyard-lab cosmosdb up`):
    /// `outage REGION`, `restore REGION`, `lag REGION MS`, `slow MS`,
    /// `throttle N [STATUS]`, `hold`, `release`, `ops`, `state`.
    pub async fn control(&self, line: &str) -> anyhow::Result<String> {
        self.control.control(line).await
    }

    /// Write the CA, the master key and the client secrets into `dir`
    /// (secrets mode 0600) and return the store as a topology describes it,
    /// its members by the account's current failover priorities: the
    /// controller reads the secrets from those files.
    pub async fn store(&self, dir: &Path) -> anyhow::Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        let state = self.state().await?;
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
        // Beside the others, for a harness that reads the simulator's files
        // (the compose backing reads them in the `cosmos` container).
        if let Some(reader) = self.client_secret(READER_CLIENT_ID) {
            secret(format!("{name}-reader-client-secret"), reader)?;
        }
        let members = state
            .locations
            .iter()
            .map(|l| Member {
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
                endpoint: Some(self.global_url.clone()),
                tls_ca_file: Some(ca.display().to_string()),
                azure: Some(AzureConnection {
                    account: state.account.clone(),
                    arm_endpoint: Some(self.arm_base.clone()),
                    credential: Some("client_secret".into()),
                    authority_host: Some(self.arm_base.clone()),
                    tenant_id: Some(TENANT_ID.into()),
                    client_id: Some(CLIENT_ID.into()),
                    client_secret_file: Some(secret_file),
                    key_file: Some(key_file),
                    locations: state
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
    pub async fn topology(&self, name: &str, dir: &Path) -> anyhow::Result<Topology> {
        Ok(Topology {
            capacity_margin_percent: None,
            name: name.into(),
            regions: crate::regions_first_primary(&self.spec.regions),
            stores: vec![self.store(dir).await?],
        })
    }
}

/// The regional endpoints of `state`, in the order of `spec.regions`.
fn regional_urls(spec: &CosmosSimSpec, state: &State) -> anyhow::Result<Vec<String>> {
    spec.regions
        .iter()
        .map(|r| {
            state
                .locations
                .iter()
                .find(|l| &l.region == r)
                .map(|l| l.endpoint.clone())
                .with_context(|| format!("the account has no location for region {r}"))
        })
        .collect()
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
