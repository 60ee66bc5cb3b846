//! Where the lab's clusters come from, chosen once per process from
//! `SWITCHYARD_BACKING`:
//!
//! - unset or `lab` (the default): the lab starts its own processes (real
//!   PostgreSQL, Redis, etcd; the simulators) on loopback ports.
//! - `compose`: the stores that docker-compose.yml runs from real images are
//!   attached instead of started. So far PostgreSQL: [`crate::postgres::PgCluster::start`]
//!   resets the `pg-*` services to a fresh primary and two streaming
//!   standbys and returns the same handle, its topology the `pg` store of
//!   topologies/examples/compose.toml. The other stores stay on the lab
//!   (`scripts/test.sh` says so when it runs on this backing), and a cluster
//!   the compose file cannot provide (other regions, more members, TLS)
//!   fails with [`Unsupported`], naming what is missing, never falls back.
//!
//! The compose project and file come from `COMPOSE_PROJECT_NAME` (default
//! `switchyard`) and `COMPOSE_FILE` (default: the repository's
//! docker-compose.yml); the members are reached at their home addresses on
//! the compose networks, which a Linux Docker host routes to. Attached
//! clusters are used one at a time: an exclusive lock on a file in the
//! temporary directory, held for the cluster's lifetime, serialises tests
//! (of every test binary) that share the services. docs/compose.md says what
//! was and was not exercised.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

/// The backing of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Processes the lab starts itself.
    Lab,
    /// The services of a docker-compose project.
    Compose(Compose),
}

/// A docker-compose project to attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    /// `-p`: the project name, as the topology's hooks address it.
    pub project: String,
    /// `-f`: the compose file.
    pub file: PathBuf,
}

/// A cluster this backing cannot provide; the message says what is missing.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not available on SWITCHYARD_BACKING=compose: {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

impl Backing {
    /// Read from the environment the first time, the same answer afterwards.
    /// An unknown value is an error naming the variable, the value and the
    /// accepted values (every starter returns it): running the lab while the
    /// caller asked for something else would pass for what it is not.
    pub fn get() -> Result<&'static Backing> {
        static BACKING: OnceLock<Result<Backing, String>> = OnceLock::new();
        BACKING
            .get_or_init(|| {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                Backing::parse(
                    var("SWITCHYARD_BACKING").as_deref(),
                    var("COMPOSE_PROJECT_NAME").as_deref(),
                    var("COMPOSE_FILE").as_deref(),
                )
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The backing named by `SWITCHYARD_BACKING` (`None`: the lab), with the
    /// compose project and file when given.
    pub fn parse(backing: Option<&str>, project: Option<&str>, file: Option<&str>) -> Result<Self> {
        match backing.unwrap_or("lab") {
            "lab" => Ok(Backing::Lab),
            "compose" => Ok(Backing::Compose(Compose {
                project: project.unwrap_or("switchyard").to_string(),
                file: file.map(PathBuf::from).unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker-compose.yml")
                }),
            })),
            other => bail!(
                "SWITCHYARD_BACKING={other:?} is not a backing: the accepted values are `lab` \
                 (the default: processes the lab starts) and `compose` (docker-compose.yml's services)"
            ),
        }
    }

    /// The compose project, when that is the backing (an error for an
    /// unknown `SWITCHYARD_BACKING`).
    pub fn compose() -> Result<Option<&'static Compose>> {
        Ok(match Backing::get()? {
            Backing::Compose(c) => Some(c),
            Backing::Lab => None,
        })
    }
}

impl Compose {
    /// The directory holding the compose file (the topology's hooks run
    /// `docker compose` there).
    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// `docker compose -p PROJECT -f FILE ARGS...` and its argument vector.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ["compose", "-p", &self.project, "-f"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(self.file.display().to_string());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Run `docker compose ARGS...`; its standard output, or an error with
    /// the command and what it printed.
    pub async fn run(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let argv = self.argv(args);
        let mut cmd = tokio::process::Command::new("docker");
        cmd.args(&argv)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                anyhow::anyhow!("docker {} timed out after {timeout:?}", argv.join(" "))
            })?;
        docker_output(&argv, out)
    }

    /// The project's services as the tests reach them, resolved by Compose
    /// (`config --format json`) the first time and the same afterwards.
    pub async fn services(&self) -> Result<&'static Services> {
        static SERVICES: tokio::sync::OnceCell<Services> = tokio::sync::OnceCell::const_new();
        SERVICES
            .get_or_try_init(|| async {
                let json = self
                    .run(&["config", "--format", "json"], Duration::from_secs(60))
                    .await?;
                Services::from_config(&json, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            })
            .await
    }

    /// [`Compose::run`] for the lab's synchronous fault helpers (`kill`,
    /// `cut_region`, ...), which tests call outside async code too.
    pub fn run_blocking(&self, args: &[&str]) -> Result<String> {
        let argv = self.argv(args);
        let out = std::process::Command::new("docker")
            .args(&argv)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .output();
        docker_output(&argv, out)
    }

    /// SIGKILL a service's container (the loss of its host).
    pub fn kill(&self, service: &str) -> Result<()> {
        self.run_blocking(&["kill", "--signal", "SIGKILL", service])
            .map(drop)
    }

    /// Start a killed or stopped service's container again, as configured.
    pub fn start(&self, service: &str) -> Result<()> {
        self.run_blocking(&["start", service]).map(drop)
    }

    /// Whether the service's container is running.
    pub fn is_running(&self, service: &str) -> bool {
        self.run_blocking(&["ps", "--status", "running", "--quiet", service])
            .is_ok_and(|out| !out.trim().is_empty())
    }

    /// Cut `region` off (`compose/region.sh cut`): its members leave the
    /// other regions' networks, everyone else leaves its network.
    pub fn cut_region(&self, region: &str) -> Result<()> {
        self.region_sh("cut", region)
    }

    /// Undo [`Compose::cut_region`] (`compose/region.sh heal`).
    pub fn heal_region(&self, region: &str) -> Result<()> {
        self.region_sh("heal", region)
    }

    fn region_sh(&self, cmd: &str, region: &str) -> Result<()> {
        let script = self.dir().join("compose/region.sh");
        let out = std::process::Command::new(&script)
            .args([cmd, region])
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {cmd} {region} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `docker compose exec -T SERVICE ARGV...`, its standard output.
    pub async fn exec(&self, service: &str, argv: &[&str]) -> Result<String> {
        let mut args = vec!["exec", "-T", service];
        args.extend_from_slice(argv);
        self.run(&args, Duration::from_secs(120)).await
    }

    /// [`Compose::exec`] for synchronous helpers.
    pub fn exec_blocking(&self, service: &str, argv: &[&str]) -> Result<String> {
        let mut args = vec!["exec", "-T", service];
        args.extend_from_slice(argv);
        self.run_blocking(&args)
    }

    /// Recreate `services` from empty volumes and wait until Compose reports
    /// them healthy: a fresh cluster, as the lab would start one.
    pub async fn reset(&self, services: &[&str]) -> Result<()> {
        let long = Duration::from_secs(600);
        let mut rm = vec!["rm", "--stop", "--force", "-v"];
        rm.extend_from_slice(services);
        self.run(&rm, long).await?;
        for s in services {
            // Named volumes outlive `rm -v`; a missing one is fine.
            let vol = format!("{}_{s}", self.project);
            let _ = tokio::process::Command::new("docker")
                .args(["volume", "rm", "--force", &vol])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        let mut up = vec!["up", "--detach", "--wait", "--no-deps"];
        up.extend_from_slice(services);
        self.run(&up, long).await?;
        Ok(())
    }

    /// Hold the lock that serialises attached clusters of `group` until the
    /// returned file is dropped (waiting for another test to finish with
    /// them; they are shared by every test binary).
    pub fn lock(&self, group: &str) -> Result<std::fs::File> {
        use fs4::fs_std::FileExt;
        let path =
            std::env::temp_dir().join(format!("switchyard-compose-{}-{group}.lock", self.project));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock_exclusive()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }
}

/// The standard output of a finished `docker ARGV...`, or an error with
/// the command and everything it printed.
fn docker_output(argv: &[String], out: std::io::Result<std::process::Output>) -> Result<String> {
    let out = out.context(
        "running docker (SWITCHYARD_BACKING=compose needs the docker CLI with its compose plugin)",
    )?;
    if !out.status.success() {
        bail!(
            "docker {} failed ({}): {}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a compose service is to the tests, told by its image (and, for
/// Redis, its entry script): every kind has one port inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `postgres:` (5432).
    Postgres,
    /// `mongo:` (27017), data-bearing members and the arbiter.
    MongoDb,
    /// `eventstore/eventstore:` (HTTP and gRPC on 2113).
    EventStoreDb,
    /// `redis:` running `compose/redis/entry.sh server` (6379).
    Redis,
    /// `redis:` running `compose/redis/entry.sh sentinel` (26379).
    Sentinel,
    /// The lab's Cosmos DB simulator (ARM on 8443, the account on 8444, one
    /// regional endpoint per region from 8445).
    CosmosDb,
    /// `quay.io/coreos/etcd:` (clients on 2379).
    Etcd,
    /// `hashicorp/consul:` (HTTP on 8500).
    Consul,
    /// `switchyard serve` (8080).
    Server,
}

impl ServiceKind {
    /// The port the service listens on inside its container.
    pub fn port(self) -> u16 {
        match self {
            ServiceKind::Postgres => 5432,
            ServiceKind::MongoDb => 27017,
            ServiceKind::EventStoreDb => 2113,
            ServiceKind::Redis => 6379,
            ServiceKind::Sentinel => 26379,
            ServiceKind::CosmosDb => 8443,
            ServiceKind::Etcd => 2379,
            ServiceKind::Consul => 8500,
            ServiceKind::Server => 8080,
        }
    }

    /// The kind of a resolved service, from its image, entrypoint and
    /// command; `None` for one-shot services (init, tokens) and strangers.
    fn of(name: &str, svc: &serde_json::Value) -> Option<ServiceKind> {
        let image = svc["image"].as_str().unwrap_or_default();
        let words = |k: &str| -> String {
            match &svc[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            }
        };
        let (entrypoint, command) = (words("entrypoint"), words("command"));
        if svc["restart"].as_str() == Some("no") {
            return None;
        }
        Some(if image.starts_with("postgres:") {
            ServiceKind::Postgres
        } else if image.starts_with("mongo:") {
            ServiceKind::MongoDb
        } else if image.starts_with("eventstore/eventstore:") {
            ServiceKind::EventStoreDb
        } else if image.starts_with("redis:") && entrypoint.contains("sentinel") {
            ServiceKind::Sentinel
        } else if image.starts_with("redis:") {
            ServiceKind::Redis
        } else if image.starts_with("quay.io/coreos/etcd:") {
            ServiceKind::Etcd
        } else if image.starts_with("hashicorp/consul:") {
            ServiceKind::Consul
        } else if entrypoint.contains("switchyard-lab cosmosdb up") {
            ServiceKind::CosmosDb
        } else if command.starts_with("serve ") && name.starts_with("switchyard-") {
            ServiceKind::Server
        } else {
            return None;
        })
    }
}

/// One service of the compose file, as the tests reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name (`cache-west-1`), which `docker compose` commands take.
    pub name: String,
    /// What it runs.
    pub kind: ServiceKind,
    /// Its region (label `switchyard.region`; `global` for the simulator).
    pub region: String,
    /// Its home address, 172.30.<region>.<switchyard.host>: what the stores
    /// report about themselves and what the topology names.
    pub home: String,
    /// `HOST:PORT` the tests connect to: `SWITCHYARD_COMPOSE_ADDR_<SERVICE>`
    /// when set (the service's name in capitals, `-` as `_`), else a port the
    /// file publishes on the host for the kind's port, else the home address
    /// with the kind's port (a Linux Docker host routes to the networks).
    pub addr: String,
}

impl Service {
    /// The host part of [`Service::addr`].
    pub fn host(&self) -> &str {
        self.addr.rsplit_once(':').map_or(&self.addr, |(h, _)| h)
    }

    /// The port part of [`Service::addr`].
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| self.kind.port())
    }
}

/// Every service of a compose project the tests can attach to, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services(Vec<Service>);

/// The order the tests see regions in (the lab's: primary first).
const REGIONS: [&str; 3] = ["east", "west", "south"];

impl Services {
    /// From the resolved model Compose prints (`docker compose config
    /// --format json`; anchors, merge keys and `${VAR}` already resolved by
    /// Compose itself), with `env` looked up for the address overrides.
    /// Services come in region order (east, west, south, then global), by
    /// name within a region.
    pub fn from_config(json: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Services> {
        let model: serde_json::Value =
            serde_json::from_str(json).context("parsing `docker compose config --format json`")?;
        let Some(services) = model["services"].as_object() else {
            bail!("`docker compose config --format json` has no `services` object");
        };
        let mut out = Vec::new();
        for (name, svc) in services {
            let Some(kind) = ServiceKind::of(name, svc) else {
                continue;
            };
            let label = |k: &str| svc["labels"][k].as_str().map(str::to_string);
            let region = label("switchyard.region")
                .with_context(|| format!("service {name}: no label switchyard.region"))?;
            let n = label("switchyard.host")
                .with_context(|| format!("service {name}: no label switchyard.host"))?;
            let net = match REGIONS.iter().position(|r| *r == region) {
                Some(i) => i + 1,
                // Global services (the simulator) sit on every network; east's
                // address is as good as any and is never cut.
                None => 1,
            };
            let home = format!("172.30.{net}.{n}");
            let key = format!(
                "SWITCHYARD_COMPOSE_ADDR_{}",
                name.to_ascii_uppercase().replace('-', "_")
            );
            let addr = match env(&key) {
                Some(a) => {
                    if a.rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .is_none()
                    {
                        bail!("{key}={a}: expected HOST:PORT");
                    }
                    a
                }
                None => {
                    published(svc, kind.port()).unwrap_or_else(|| format!("{home}:{}", kind.port()))
                }
            };
            out.push(Service {
                name: name.clone(),
                kind,
                region,
                home,
                addr,
            });
        }
        let rank = |r: &str| {
            REGIONS
                .iter()
                .position(|x| *x == r)
                .unwrap_or(REGIONS.len())
        };
        out.sort_by(|a, b| (rank(&a.region), &a.name).cmp(&(rank(&b.region), &b.name)));
        Ok(Services(out))
    }

    /// The services of one kind, in region order.
    pub fn of(&self, kind: ServiceKind) -> Vec<&Service> {
        self.0.iter().filter(|s| s.kind == kind).collect()
    }

    /// The services of one kind in one region, by name.
    pub fn in_region(&self, kind: ServiceKind, region: &str) -> Vec<&Service> {
        self.0
            .iter()
            .filter(|s| s.kind == kind && s.region == region)
            .collect()
    }

    /// A service by name.
    pub fn get(&self, name: &str) -> Result<&Service> {
        self.0
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("docker-compose.yml has no service {name}"))
    }

    /// The service a `HOST:PORT` a store reports belongs to (its home
    /// address or the address the tests use).
    pub fn by_addr(&self, addr: &str) -> Option<&Service> {
        self.0
            .iter()
            .find(|s| s.addr == addr || format!("{}:{}", s.home, s.kind.port()) == addr)
    }
}

/// The host address Compose publishes container port `target` on, when the
/// service publishes it (short `"IP:PUBLISHED:TARGET"` strings and the long
/// form `{target, published, host_ip}` both appear, depending on the
/// Compose version that resolved the file).
fn published(svc: &serde_json::Value, target: u16) -> Option<String> {
    for p in svc["ports"].as_array()? {
        if let Some(s) = p.as_str() {
            let s = s.split('/').next().unwrap_or(s);
            let parts: Vec<&str> = s.split(':').collect();
            let (ip, published, t) = match parts.as_slice() {
                [ip, p, t] => (*ip, *p, *t),
                [p, t] => ("127.0.0.1", *p, *t),
                _ => continue,
            };
            if t.parse() == Ok(target) && !published.is_empty() {
                let ip = if ip.is_empty() || ip == "0.0.0.0" {
                    "127.0.0.1"
                } else {
                    ip
                };
                return Some(format!("{ip}:{published}"));
            }
        } else if p["target"].as_u64() == Some(u64::from(target)) {
            let published = match &p["published"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            let ip = p["host_ip"]
                .as_str()
                .filter(|ip| !ip.is_empty() && *ip != "0.0.0.0")
                .unwrap_or("127.0.0.1");
            return Some(format!("{ip}:{published}"));
        }
    }
    None
}

/// One HTTP/1.0 exchange (never chunked; the answer ends with the
/// connection), for the attached stores' admin APIs: the status code and
/// the body. HTTP/1.0 so that no client library is needed here.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String)> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {addr}{path}: no HTTP header end"))?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{method} {addr}{path}: no status line"))?;
    Ok((code, head.to_string(), body.to_string()))
}

/// The topology docker-compose.yml runs: topologies/examples/compose.toml.
pub fn compose_topology() -> Result<switchyard_topology::Topology> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/examples/compose.toml");
    switchyard_topology::parse_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
/// docker-compose.yml as Compose resolves it, in JSON. CI has Debian's
/// docker-compose 1.29 (its `config` prints YAML only) and PyYAML (for
/// compose/check.py); Compose v2's `config --format json` prints the
/// same model, which the long-form port test covers.
pub(crate) fn resolved_compose_file_for_tests() -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker-compose.yml");
    let yaml = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .env_remove("SWITCHYARD_BACKEND")
        .output()
        .expect("docker-compose (Debian's docker-compose package; scripts/lib.sh installs it)");
    assert!(
        yaml.status.success(),
        "{}",
        String::from_utf8_lossy(&yaml.stderr)
    );
    let mut py = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(&yaml.stdout).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_is_the_default_and_unknown_backings_are_refused() {
        assert_eq!(Backing::parse(None, None, None).unwrap(), Backing::Lab);
        assert_eq!(
            Backing::parse(Some("lab"), None, None).unwrap(),
            Backing::Lab
        );
        let Backing::Compose(c) = Backing::parse(Some("compose"), None, None).unwrap() else {
            panic!("compose expected");
        };
        assert_eq!(c.project, "switchyard");
        assert!(
            c.file.ends_with("docker-compose.yml") && c.file.exists(),
            "{c:?}"
        );
        let e = Backing::parse(Some("docker"), None, None).unwrap_err();
        assert!(
            e.to_string().contains("SWITCHYARD_BACKING=\"docker\""),
            "{e}"
        );
    }

    #[test]
    fn compose_commands_name_the_project_and_the_file() {
        let c = Compose {
            project: "p".into(),
            file: "/x/docker-compose.yml".into(),
        };
        assert_eq!(
            c.argv(&["exec", "-T", "pg-east-1", "true"]),
            [
                "compose",
                "-p",
                "p",
                "-f",
                "/x/docker-compose.yml",
                "exec",
                "-T",
                "pg-east-1",
                "true"
            ]
        );
        assert_eq!(c.dir(), Path::new("/x"));
    }

    fn names(v: Vec<&Service>) -> Vec<(&str, &str, &str)> {
        v.into_iter()
            .map(|s| (s.name.as_str(), s.region.as_str(), s.addr.as_str()))
            .collect()
    }

    #[test]
    fn every_store_kind_resolves_from_the_compose_file() {
        let s = Services::from_config(&resolved_compose_file_for_tests(), &|_| None).unwrap();
        use ServiceKind::*;
        // catalog-init and switchyard-tokens run once: they are no members.
        type Row = (&'static str, &'static str, &'static str);
        let expected: [(ServiceKind, &[Row]); 8] = [
            (
                Postgres,
                &[
                    ("pg-east-1", "east", "172.30.1.11:5432"),
                    ("pg-west-1", "west", "172.30.2.12:5432"),
                    ("pg-south-1", "south", "172.30.3.13:5432"),
                ],
            ),
            (
                MongoDb,
                &[
                    ("catalog-east-1", "east", "172.30.1.21:27017"),
                    ("catalog-east-2", "east", "172.30.1.22:27017"),
                    ("catalog-west-1", "west", "172.30.2.23:27017"),
                    ("catalog-west-2", "west", "172.30.2.24:27017"),
                    ("catalog-south-arbiter", "south", "172.30.3.25:27017"),
                ],
            ),
            (
                EventStoreDb,
                &[
                    ("ledger-east", "east", "172.30.1.31:2113"),
                    ("ledger-west", "west", "172.30.2.32:2113"),
                    ("ledger-south", "south", "172.30.3.33:2113"),
                ],
            ),
            (
                Redis,
                &[
                    ("cache-east-1", "east", "172.30.1.41:6379"),
                    ("cache-west-1", "west", "172.30.2.42:6379"),
                    ("cache-south-1", "south", "172.30.3.43:6379"),
                ],
            ),
            (
                Sentinel,
                &[
                    ("cache-sentinel-east", "east", "172.30.1.44:26379"),
                    ("cache-sentinel-west", "west", "172.30.2.45:26379"),
                    ("cache-sentinel-south", "south", "172.30.3.46:26379"),
                ],
            ),
            (
                Etcd,
                &[
                    ("etcd-east", "east", "172.30.1.51:2379"),
                    ("etcd-west", "west", "172.30.2.52:2379"),
                    ("etcd-south", "south", "172.30.3.53:2379"),
                ],
            ),
            (
                Consul,
                &[
                    ("consul-east", "east", "172.30.1.61:8500"),
                    ("consul-west", "west", "172.30.2.62:8500"),
                    ("consul-south", "south", "172.30.3.63:8500"),
                ],
            ),
            (CosmosDb, &[("cosmos", "global", "172.30.1.81:8443")]),
        ];
        for (kind, want) in expected {
            assert_eq!(names(s.of(kind)), want.to_vec(), "{kind:?}");
        }
        // The servers publish 8080 on the host's loopback: that is their address.
        assert_eq!(
            names(s.of(Server)),
            [
                ("switchyard-east", "east", "127.0.0.1:8081"),
                ("switchyard-west", "west", "127.0.0.1:8082"),
                ("switchyard-south", "south", "127.0.0.1:8083")
            ]
        );
        assert_eq!(s.get("switchyard-east").unwrap().home, "172.30.1.71");
        assert_eq!(
            names(s.in_region(MongoDb, "west")),
            [
                ("catalog-west-1", "west", "172.30.2.23:27017"),
                ("catalog-west-2", "west", "172.30.2.24:27017")
            ]
        );
        assert_eq!(
            s.by_addr("172.30.2.45:26379").unwrap().name,
            "cache-sentinel-west"
        );
        assert!(s.get("catalog-init").is_err() && s.get("switchyard-tokens").is_err());
    }

    #[test]
    fn an_address_override_wins_and_a_bad_one_names_its_variable() {
        let json = resolved_compose_file_for_tests();
        let env = |k: &str| {
            (k == "SWITCHYARD_COMPOSE_ADDR_CACHE_WEST_1").then(|| "127.0.0.1:16379".to_string())
        };
        let s = Services::from_config(&json, &env).unwrap();
        let west = s.get("cache-west-1").unwrap();
        assert_eq!((west.host(), west.port()), ("127.0.0.1", 16379));
        assert_eq!(
            west.home, "172.30.2.42",
            "the home address stays what the store reports"
        );
        assert_eq!(s.by_addr("172.30.2.42:6379").unwrap().name, "cache-west-1");
        assert_eq!(s.get("cache-east-1").unwrap().addr, "172.30.1.41:6379");
        let bad =
            |k: &str| (k == "SWITCHYARD_COMPOSE_ADDR_ETCD_EAST").then(|| "localhost".to_string());
        let e = Services::from_config(&json, &bad).unwrap_err().to_string();
        assert!(
            e.contains("SWITCHYARD_COMPOSE_ADDR_ETCD_EAST=localhost") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn published_ports_in_compose_v2_long_form() {
        // `docker compose config --format json` (v2) writes ports in the long form.
        let json = r#"{"services": {
            "cache-east-1": {"image": "redis:7.2.5-bookworm", "entrypoint": ["/compose/redis/entry.sh", "server"],
                "labels": {"switchyard.region": "east", "switchyard.host": "41"},
                "ports": [{"mode": "ingress", "target": 6379, "published": "16379", "protocol": "tcp"}]},
            "etcd-west": {"image": "quay.io/coreos/etcd:v3.5.17",
                "labels": {"switchyard.region": "west", "switchyard.host": "52"},
                "ports": [{"target": 2380, "published": "2380", "host_ip": "127.0.0.1"}]},
            "nolabel": {"image": "mongo:7.0.14"}
        }}"#;
        let e = Services::from_config(json, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nolabel") && e.contains("switchyard.region"),
            "{e}"
        );
        let json = json.replace(
            r#""nolabel": {"image": "mongo:7.0.14"}"#,
            r#""x": {"image": "busybox"}"#,
        );
        let s = Services::from_config(&json, &|_| None).unwrap();
        assert_eq!(s.get("cache-east-1").unwrap().addr, "127.0.0.1:16379");
        // 2380 (peers) is published, not 2379: the home address it is.
        assert_eq!(s.get("etcd-west").unwrap().addr, "172.30.2.52:2379");
        assert!(s.get("x").is_err());
    }

    #[test]
    fn an_unknown_backing_is_an_error_naming_the_variable_and_the_accepted_values() {
        let e = Backing::parse(Some("kubernetes"), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SWITCHYARD_BACKING=\"kubernetes\"")
                && e.contains("`lab`")
                && e.contains("`compose`"),
            "{e}"
        );
    }

    /// scripts/compose-backing.sh skips tests by name: a renamed test would
    /// run on compose again unseen, or a stale entry skip nothing.
    #[test]
    fn every_test_the_compose_backing_skips_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = std::fs::read_to_string(root.join("scripts/compose-backing.sh")).unwrap();
        let names: Vec<&str> = script
            .lines()
            .filter_map(|l| l.split_once('|').map(|(n, _)| n))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(names.len() > 20, "{names:?}");
        let mut fns = Vec::new();
        let dirs = [
            "controllers",
            "coordinator/tests",
            "coordination/tests",
            "tests/lab/tests",
        ];
        let mut stack: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    fns.extend(text.split("fn ").skip(1).filter_map(|t| {
                        t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .next()
                            .map(str::to_string)
                    }));
                }
            }
        }
        for n in names {
            assert!(
                fns.iter().any(|f| f.contains(n)),
                "scripts/compose-backing.sh skips {n}, which no test is named"
            );
        }
    }

    #[test]
    fn the_compose_topology_parses() {
        let t = compose_topology().unwrap();
        assert!(t.stores.iter().any(|s| s.name == "pg"));
    }
}
