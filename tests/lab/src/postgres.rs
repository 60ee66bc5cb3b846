//! A real PostgreSQL streaming-replication cluster on loopback.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use switchyard_lab::postgres::{PgCluster, PgClusterSpec};
//! let cluster = PgCluster::start(PgClusterSpec::new(["east", "west", "south"])).await?;
//! let topology = cluster.topology().clone();  // matching switchyard topology
//! cluster.kill("pg-east-1")?;                 // SIGKILL the postmaster
//! cluster.start_member("pg-east-1").await?;   // start it again as configured
//! cluster.stop("pg-west-1").await?;           // fast shutdown
//! drop(cluster);                              // every process stopped, dirs removed
//! # let _ = topology; Ok(()) }
//! ```
//!
//! Layout: one primary (first member of the first region) and streaming
//! standbys, `members_per_region` per region, each with its own port, data
//! directory and unix socket directory under one base directory. When started
//! as root every server runs as the `postgres` OS user (initdb refuses root).
//!
//! Host operations that the controller needs (stop, start as standby,
//! `pg_rewind`) are written to `<base>/pgctl.sh` and referenced from the
//! topology's member hooks, so the controller drives the lab exactly as it
//! would drive real hosts: through templated shell commands.
//!
//! Teardown: [`PgCluster`]'s `Drop` stops every server (immediate mode, then
//! SIGKILL) and removes the directories, also when a test panics (set
//! `SWITCHYARD_LAB_KEEP=1` to keep them for a post-mortem).

use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchyard_topology::{Connection, Hooks, Member, Settings, Store, StoreKind, Topology};

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct PgClusterSpec {
    /// Store name in the topology; member names are `<store>-<region>-<n>`.
    pub store: String,
    /// Region names; the primary lives in the first.
    pub regions: Vec<String>,
    /// Data-bearing members per region (the first one of the first region is
    /// the primary, every other member a streaming standby).
    pub members_per_region: usize,
    /// Regions that get one more standby each (a region named twice gets
    /// two): two promotion candidates in a region, for `--candidate`.
    pub extra_standbys: Vec<String>,
    /// The store's `max_lag_bytes` written to the topology.
    pub max_lag_bytes: Option<u64>,
    /// Base directory; a fresh temporary directory when `None`. The cluster
    /// lives in `<base>/<store>` and is removed on teardown.
    pub base_dir: Option<PathBuf>,
    /// Serve TLS (`ssl = on`) with this certificate and key on every member.
    pub server_tls: Option<ServerTls>,
    /// Lines put at the top of every member's `pg_hba.conf` (first match
    /// wins), e.g. `hostnossl all all all reject` to force TLS on TCP. When
    /// set, the lab's own sessions use the unix socket, so they work
    /// whatever these lines demand of TCP clients.
    pub hba: Vec<String>,
    /// Ports to try first, one per member in order (the rest are picked
    /// free). A port that turns out taken is replaced like any other: the
    /// lab's own tests use this to hand it a port that is already bound.
    pub ports: Vec<u16>,
    /// Give every member hook `extra.controldata` (`pgctl.sh controldata`),
    /// which turns on the controller's deferred restart: the fence leaves
    /// the old primary stopped with `standby.signal` and it restarts after
    /// the promotion (see docs/postgres.md).
    pub deferred_fence: bool,
}

/// A server certificate and key for [`PgClusterSpec::server_tls`].
#[derive(Clone)]
pub struct ServerTls {
    /// PEM certificate chain (server certificate first).
    pub cert_pem: String,
    /// PEM private key. Written with mode 0600, owned by the server's user.
    pub key_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl PgClusterSpec {
    /// One member per region, store `pg`, an 8 MiB lag bound.
    pub fn new<I, S>(regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PgClusterSpec {
            store: "pg".into(),
            regions: regions.into_iter().map(Into::into).collect(),
            members_per_region: 1,
            extra_standbys: Vec::new(),
            max_lag_bytes: Some(8 * 1024 * 1024),
            base_dir: None,
            server_tls: None,
            hba: Vec::new(),
            ports: Vec::new(),
            deferred_fence: false,
        }
    }
}

/// One server of the lab cluster.
#[derive(Debug, Clone)]
pub struct PgMember {
    /// Member name (`<store>-<region>-<n>`).
    pub name: String,
    /// Region it lives in.
    pub region: String,
    /// Address the lab reaches it at: 127.0.0.1, or its home address on the
    /// compose networks (see [`crate::backing`]).
    pub host: String,
    /// TCP port on `host`.
    pub port: u16,
    /// Its directory: `data/`, `log`, `sock/` (inside its container on the
    /// compose backing).
    pub dir: PathBuf,
}

impl PgMember {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// A libpq/tokio-postgres connection string for this member.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres connect_timeout=5",
            self.host, self.port
        )
    }
}

/// A running lab cluster. Dropping it stops every server and removes its files.
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    members: Vec<PgMember>,
    topology: Topology,
    script: PathBuf,
    /// The lab's own sessions go through the unix socket (see `PgClusterSpec::hba`).
    via_socket: bool,
    /// Attached to docker-compose services instead of started (see [`crate::backing`]).
    compose: Option<ComposeAttachment>,
}

/// What an attached cluster holds: the project, and the lock that keeps
/// other tests off its services while it lives.
#[derive(Debug)]
struct ComposeAttachment {
    project: crate::backing::Compose,
    /// Each member's service (member name → service name).
    services: std::collections::BTreeMap<String, String>,
    _lock: std::fs::File,
}

/// The parent of the members' data directories inside the containers
/// (docker-compose.yml: PGDATA).
const COMPOSE_PG_DIR: &str = "/var/lib/postgresql/data";

/// Where PostgreSQL's server binaries live: `SWITCHYARD_PG_BIN`, then
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`, then PATH.
pub fn pg_bin_dir() -> Result<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("SWITCHYARD_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_initdb(&dir) {
            return Ok(dir);
        }
        bail!(
            "SWITCHYARD_PG_BIN={} does not contain initdb and pg_ctl",
            dir.display()
        );
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has_initdb(&dir) {
            return Ok(dir);
        }
    }
    bail!("PostgreSQL server binaries not found (install Debian package `postgresql`, or set SWITCHYARD_PG_BIN)")
}

/// The `postgres` OS user's uid/gid when we run as root, `None` otherwise.
fn run_as_postgres() -> Result<Option<(u32, u32)>> {
    // /proc/self is owned by the effective uid; avoids unsafe geteuid().
    let euid = std::fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            return Ok(Some((f[2].parse()?, f[3].parse()?)));
        }
    }
    bail!("running as root but there is no `postgres` OS user (the Debian `postgresql` package creates it)")
}

/// A server we started could not have the port we gave it.
#[derive(Debug)]
struct PortTaken(String);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PortTaken {}

/// A port free right now (the kernel's choice for port 0). Free only now:
/// whoever binds it later must check that it got it (see `launch`).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn chown_tree(path: &Path, ids: Option<(u32, u32)>) -> Result<()> {
    let Some((uid, gid)) = ids else { return Ok(()) };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), ids)?;
        }
    }
    Ok(())
}

/// Make sure the `postgres` user can reach `dir` (every ancestor traversable).
fn check_traversable(dir: &Path, ids: Option<(u32, u32)>) -> Result<()> {
    if ids.is_none() {
        return Ok(());
    }
    for anc in dir.ancestors().skip(1) {
        if anc.as_os_str().is_empty() {
            continue;
        }
        let mode = std::fs::metadata(anc)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} is not traversable by the postgres user (mode {:o}); choose a base dir under /tmp",
                anc.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

impl PgCluster {
    /// Start a primary and its standbys, wait until every standby streams,
    /// and build the matching topology.
    pub async fn start(spec: PgClusterSpec) -> Result<PgCluster> {
        if let Some(project) = crate::backing::Backing::compose()? {
            return Self::attach(project, spec).await;
        }
        if spec.regions.is_empty() || spec.members_per_region == 0 {
            bail!("a lab cluster needs at least one region and one member per region");
        }
        let bin = pg_bin_dir()?;
        let run_as = run_as_postgres()?;
        let (tmp, base) = match &spec.base_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("switchyard-pg-")
                    .tempdir_in("/tmp")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let base = std::fs::canonicalize(&base)?;
        let root = base.join(&spec.store);
        if root.exists() {
            bail!(
                "{} already exists; refusing to reuse a cluster directory",
                root.display()
            );
        }
        std::fs::create_dir_all(&root)?;
        for d in [&base, &root] {
            let mut p = std::fs::metadata(d)?.permissions();
            p.set_mode(p.mode() | 0o755);
            std::fs::set_permissions(d, p)?;
        }
        check_traversable(&root, run_as)?;

        let mut members = Vec::new();
        for region in &spec.regions {
            let extra = spec.extra_standbys.iter().filter(|r| *r == region).count();
            for n in 1..=spec.members_per_region + extra {
                let name = format!("{}-{}-{}", spec.store, region, n);
                let dir = root.join(&name);
                std::fs::create_dir_all(dir.join("sock"))?;
                members.push(PgMember {
                    name,
                    region: region.clone(),
                    host: "127.0.0.1".into(),
                    port: match spec.ports.get(members.len()) {
                        Some(p) => *p,
                        None => free_port()?,
                    },
                    dir,
                });
            }
        }
        let mut tls_conf = String::new();
        if let Some(tls) = &spec.server_tls {
            let dir = root.join("tls");
            std::fs::create_dir_all(&dir)?;
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert, &tls.cert_pem)?;
            // The server refuses a key file readable by group or others.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)?;
            std::io::Write::write_all(&mut &f, tls.key_pem.as_bytes())?;
            tls_conf = format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert.display(),
                key.display()
            );
        }
        let script = root.join("pgctl.sh");
        std::fs::write(&script, pgctl_script(&bin, &root))?;
        let mut p = std::fs::metadata(&script)?.permissions();
        p.set_mode(0o755);
        std::fs::set_permissions(&script, p)?;
        chown_tree(&root, run_as)?;

        let topology = build_topology(&spec, &members, &script);
        let mut cluster = PgCluster {
            root,
            _tmp: tmp,
            bin,
            run_as,
            members,
            topology,
            script,
            via_socket: !spec.hba.is_empty(),
            compose: None,
        };
        cluster.bootstrap(&tls_conf, &spec.hba).await?;
        // Ports may have changed while starting (see `launch`).
        cluster.topology = build_topology(&spec, &cluster.members, &cluster.script);
        Ok(cluster)
    }

    /// The compose backing: reset the PostgreSQL services of
    /// docker-compose.yml (one per region, as `docker compose config`
    /// resolves them, [`crate::backing::Services`]) to a fresh primary and
    /// two streaming standbys and hand them out as this cluster. The
    /// members' hosts are the services' home addresses (which the hooks hand
    /// the other members as their upstream), the lab's own sessions go to
    /// the address the resolver gives the tests; the hooks are those of the
    /// `pg` store of topologies/examples/compose.toml (`docker compose
    /// exec`), every hook the lab's topology has, `extra.controldata` and
    /// `extra.stop_controldata` kept only for `deferred_fence` as on the
    /// lab. Members get the names the lab would give them
    /// (`<store>-<region>-1`; the service is written into their hooks) and
    /// the standbys name themselves so to the primary (application_name),
    /// so tests see what they would see on the lab.
    async fn attach(project: &crate::backing::Compose, spec: PgClusterSpec) -> Result<PgCluster> {
        use crate::backing::{ServiceKind, Unsupported};
        let unsupported = |what: String| -> Result<PgCluster> { Err(Unsupported(what).into()) };
        if spec.regions != ["east", "west", "south"] {
            return unsupported(format!(
                "PostgreSQL in regions {:?}; docker-compose.yml has east, west, south",
                spec.regions
            ));
        }
        if spec.members_per_region != 1 || !spec.extra_standbys.is_empty() {
            return unsupported(format!(
                "{} PostgreSQL members per region; docker-compose.yml has one",
                spec.members_per_region
            ));
        }
        if spec.server_tls.is_some() || !spec.hba.is_empty() || !spec.ports.is_empty() {
            return unsupported(
                "PostgreSQL with TLS, pg_hba.conf lines or chosen ports (docker-compose.yml's members are fixed)".into(),
            );
        }
        let services = project.services().await?;
        let mut chosen = Vec::new();
        for region in &spec.regions {
            match services.in_region(ServiceKind::Postgres, region).as_slice() {
                [svc] => chosen.push(*svc),
                found => {
                    return unsupported(format!(
                        "{} PostgreSQL services in region {region} ({}); the lab's cluster has one",
                        found.len(),
                        found
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        let lock = project.lock("pg")?;
        let names: Vec<&str> = chosen.iter().map(|s| s.name.as_str()).collect();
        project.reset(&names).await?;
        let (topology, members) =
            compose_topology_for(&spec, &chosen, crate::backing::compose_topology()?)?;
        let primary_host = chosen[0].home.clone();
        for (i, m) in members.iter().enumerate() {
            // pgctl.sh names the member by this file, when present.
            let mut sh = format!(
                "echo {} > {COMPOSE_PG_DIR}/application_name",
                shell_quote(&m.name)
            );
            if i > 0 {
                sh.push_str(&format!(
                    " && /compose/postgres/pgctl.sh set-upstream {primary_host} 5432 && psql -qAt -h /var/run/postgresql -U postgres -c 'SELECT pg_reload_conf()' >/dev/null"
                ));
            }
            let service = &chosen[i].name;
            project
                .run(
                    &["exec", "-T", service, "sh", "-c", &sh],
                    Duration::from_secs(60),
                )
                .await?;
        }
        // The lab's host commands (`pgctl.sh stop|start|... MEMBER`), run in
        // the member's container, for tests that call the script directly.
        let tmp = tempfile::Builder::new()
            .prefix("switchyard-pg-compose-")
            .tempdir_in("/tmp")?;
        let script = tmp.path().join("pgctl.sh");
        let argv: Vec<String> = project
            .argv(&["exec", "-T"])
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        // MEMBER is a lab name (`orders-west-1`); the resolver said which
        // service it is.
        let cases: String = members
            .iter()
            .zip(&chosen)
            .map(|(m, svc)| {
                format!(
                    "  {}) service={} ;;\n",
                    shell_quote(&m.name),
                    shell_quote(&svc.name)
                )
            })
            .collect();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# pgctl.sh CMD MEMBER [HOST PORT] on SWITCHYARD_BACKING=compose\nset -eu\ncmd=\"$1\"; member=\"$2\"; shift 2\ncase \"$member\" in\n{cases}  *) echo \"no member $member\" >&2; exit 2 ;;\nesac\nexec docker {} \"$service\" /compose/postgres/pgctl.sh \"$cmd\" \"$@\"\n",
                argv.join(" ")
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let services = members
            .iter()
            .zip(&chosen)
            .map(|(m, svc)| (m.name.clone(), svc.name.clone()))
            .collect();
        let cluster = PgCluster {
            root: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            bin: PathBuf::new(),
            run_as: None,
            members,
            topology,
            script,
            via_socket: false,
            compose: Some(ComposeAttachment {
                project: project.clone(),
                services,
                _lock: lock,
            }),
        };
        cluster.wait_streaming(Duration::from_secs(120)).await?;
        Ok(cluster)
    }

    async fn bootstrap(&mut self, tls_conf: &str, hba: &[String]) -> Result<()> {
        let primary = self.members[0].clone();
        let data = primary.data_dir();
        self.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .await?;
        // Settings shared by every member (pg_basebackup copies them); the
        // per-member port and socket directory are appended after the copy.
        let mut conf = String::from("\n# switchyard lab\n");
        for line in [
            "listen_addresses = '127.0.0.1'",
            "wal_level = replica",
            "max_wal_senders = 16",
            "max_replication_slots = 16",
            "hot_standby = on",
            "wal_log_hints = on",
            "wal_keep_size = '512MB'",
            "fsync = off",
            "full_page_writes = on",
            "shared_buffers = '16MB'",
            "max_connections = 60",
            // Re-pointed/restarted standbys reconnect quickly.
            "wal_retrieve_retry_interval = '100ms'",
            "wal_receiver_status_interval = '1s'",
            "logging_collector = off",
            "log_line_prefix = '%m [%p] '",
        ] {
            conf.push_str(line);
            conf.push('\n');
        }
        conf.push_str(tls_conf);
        append(&data.join("postgresql.conf"), &conf)?;
        if !hba.is_empty() {
            // pg_basebackup copies pg_hba.conf to every standby.
            let file = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&file)?;
            std::fs::write(&file, format!("{}\n{old}", hba.join("\n")))?;
        }
        self.write_member_conf(&primary)?;
        self.launch(0).await?;
        // `launch` may have moved it to another port.
        let primary = self.members[0].clone();

        for i in 1..self.members.len() {
            let m = self.members[i].clone();
            self.run_pg(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    path_str(&m.data_dir())?,
                    "-X",
                    "stream",
                    "--no-sync",
                ],
            )
            .await?;
            self.write_member_conf(&m)?;
            std::fs::write(m.data_dir().join("standby.signal"), "")?;
            chown_tree(&m.data_dir().join("standby.signal"), self.run_as)?;
            append(
                &m.data_dir().join("postgresql.auto.conf"),
                &format!(
                    "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={}'\n",
                    primary.port, m.name
                ),
            )?;
            self.launch(i).await?;
        }
        self.wait_streaming(Duration::from_secs(60)).await
    }

    fn write_member_conf(&self, m: &PgMember) -> Result<()> {
        // Also after a port change: the last `port` line wins.
        append(
            &m.data_dir().join("postgresql.conf"),
            &format!(
                "port = {}\nunix_socket_directories = '{}'\ncluster_name = '{}'\n",
                m.port,
                m.dir.join("sock").display(),
                m.name
            ),
        )
    }

    /// Start member `i` and wait until it is the server answering its port.
    /// The port was free when it was picked, but anything may have bound it
    /// since (another test's server): when our server cannot bind it, or
    /// another server answers there, ours is stopped and started again on a
    /// new port (up to five times).
    async fn launch(&mut self, i: usize) -> Result<()> {
        let mut last = None;
        for _ in 0..5 {
            let m = self.members[i].clone();
            let log_from = std::fs::metadata(m.log_file()).map_or(0, |md| md.len());
            self.run_pg(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&m.data_dir())?,
                    "-l",
                    path_str(&m.log_file())?,
                    "-W",
                    "start",
                ],
            )
            .await?;
            match self
                .wait_own_server(&m, Duration::from_secs(60), Some(log_from))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.downcast_ref::<PortTaken>().is_some() => {
                    self.stop_now(&m);
                    let port = free_port()?;
                    eprintln!("switchyard-lab: {e}; {} moves to port {port}", m.name);
                    self.members[i].port = port;
                    self.write_member_conf(&self.members[i])?;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no port found")))
    }

    /// Immediate shutdown of a member (teardown, a start that went wrong).
    fn stop_now(&self, m: &PgMember) {
        let mut cmd = std::process::Command::new(self.bin.join("pg_ctl"));
        cmd.args(["-D"])
            .arg(m.data_dir())
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.status();
    }

    /// Poll until `m` accepts SQL connections, and check that the server
    /// answering is `m` (see [`PgCluster::wait_own_server`]).
    async fn wait_accepting(&self, m: &PgMember, timeout: Duration) -> Result<()> {
        self.wait_own_server(m, timeout, None).await
    }

    /// Poll until the server answering `m`'s port accepts SQL, then check it
    /// is the one we started: its `data_directory` (read over that very
    /// connection) must be `m`'s. A port is only free when picked; another
    /// process may hold it by the time the server binds it. With
    /// `log_from` (the log's length before this start), our server's own
    /// "Address already in use" ends the wait at once.
    async fn wait_own_server(
        &self,
        m: &PgMember,
        timeout: Duration,
        log_from: Option<u64>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = std::fs::canonicalize(m.data_dir()).unwrap_or_else(|_| m.data_dir());
        loop {
            // Bounded: whatever holds the port may accept and never answer.
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(&self.admin_conninfo(m), tokio_postgres::NoTls),
            )
            .await
            .map_err(|_| "no answer within 5 s".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match attempt {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    if let Ok(row) = client.query_one("SHOW data_directory", &[]).await {
                        let dir: String = row.get(0);
                        let got =
                            std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone().into());
                        if got == want {
                            return Ok(());
                        }
                        return Err(PortTaken(format!(
                            "port {} of {} is answered by the server of {dir}, not {}",
                            m.port,
                            m.name,
                            want.display()
                        ))
                        .into());
                    }
                }
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "{} did not accept connections within {timeout:?}: {e}; log:\n{}",
                        m.name,
                        tail(&m.log_file())
                    )
                }
                Err(_) => {}
            }
            if let Some(from) = log_from {
                let log = std::fs::read(m.log_file()).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
                if new.contains("Address already in use") && read_pid(&m.data_dir()).is_none() {
                    return Err(PortTaken(format!(
                        "{} could not bind port {} (address already in use)",
                        m.name, m.port
                    ))
                    .into());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until the current primary reports every reachable standby as streaming.
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.members.len() - 1;
        loop {
            let mut last = String::new();
            for m in &self.members {
                let Ok(client) = self.connect(&m.name).await else {
                    continue;
                };
                let Ok(row) = client
                    .query_one(
                        "SELECT NOT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')",
                        &[],
                    )
                    .await
                else {
                    continue;
                };
                let (is_primary, n): (bool, i64) = (row.get(0), row.get(1));
                if is_primary {
                    if n as usize >= want {
                        return Ok(());
                    }
                    last = format!("{} streams to {n} of {want} standbys", m.name);
                }
            }
            if Instant::now() > deadline {
                bail!("standbys not streaming within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run_pg(&self, prog: &str, args: &[&str]) -> Result<()> {
        let mut cmd = tokio::process::Command::new(self.bin.join(prog));
        cmd.args(args)
            .current_dir(&self.root)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            // libpq reads ~/.postgresql/ for client certificates once a
            // server offers TLS; root's home is not the postgres user's to read.
            cmd.uid(uid).gid(gid).env("HOME", &self.root);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .map_err(|_| anyhow!("{prog} timed out"))?
            .with_context(|| format!("running {prog}"))?;
        if !out.status.success() {
            bail!(
                "{prog} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The matching topology (one store, kind postgres, hooks filled).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The store of the topology.
    pub fn store(&self) -> &Store {
        &self.topology.stores[0]
    }

    /// Every member, primary first (as started).
    pub fn members(&self) -> &[PgMember] {
        &self.members
    }

    /// Look a member up by name.
    pub fn member(&self, name: &str) -> Result<&PgMember> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| anyhow!("no lab member {name}"))
    }

    /// The directory holding the cluster.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host-command script the topology's hooks call.
    pub fn script(&self) -> &Path {
        &self.script
    }

    /// Write the topology to `path` as TOML.
    pub fn write_topology(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.topology.to_toml())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The conninfo of the lab's own sessions: TCP, or the unix socket when
    /// the spec's `hba` lines may refuse plain TCP.
    fn admin_conninfo(&self, m: &PgMember) -> String {
        if self.via_socket {
            format!(
                "host={} port={} user=postgres dbname=postgres connect_timeout=5",
                m.dir.join("sock").display(),
                m.port
            )
        } else {
            m.conninfo()
        }
    }

    /// Connect to a member as the superuser.
    pub async fn connect(&self, member: &str) -> Result<tokio_postgres::Client> {
        let m = self.member(member)?;
        let (client, conn) =
            tokio_postgres::connect(&self.admin_conninfo(m), tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to {member}"))?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// The postmaster pid of a running member, from `postmaster.pid`.
    pub fn pid(&self, member: &str) -> Result<Option<u32>> {
        let m = self.member(member)?;
        if let Some(c) = &self.compose {
            // The pid inside the member's container, while it runs.
            let service = c
                .services
                .get(&m.name)
                .with_context(|| format!("no service for {member}"))?;
            let out = std::process::Command::new("docker")
                .args(c.project.argv(&["exec", "-T", service, "sh", "-c",
                    "p=$(head -n1 \"$PGDATA/postmaster.pid\" 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo \"$p\" || true"]))
                .current_dir(c.project.dir())
                .stdin(Stdio::null())
                .output()
                .context("running docker compose exec")?;
            if !out.status.success() {
                bail!(
                    "docker compose exec {member} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            return Ok(String::from_utf8_lossy(&out.stdout).trim().parse().ok());
        }
        Ok(read_pid(&m.data_dir()))
    }

    /// SIGKILL the member's postmaster (a crash: no shutdown checkpoint, no
    /// goodbye to standbys). Its children exit when they notice.
    pub fn kill(&self, member: &str) -> Result<()> {
        let m = self.member(member)?;
        if self.compose.is_some() {
            // pgctl.sh kill: SIGKILL in the container, wait until it is gone.
            let st = std::process::Command::new(&self.script)
                .args(["kill", member])
                .stdin(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("pgctl.sh kill {member} failed ({st})");
            }
            return Ok(());
        }
        let pid =
            read_pid(&m.data_dir()).ok_or_else(|| anyhow!("{member} has no postmaster.pid"))?;
        let st = signal(pid, "KILL")?;
        if !st.success() {
            bail!("kill -KILL {pid} ({member}) failed");
        }
        // Wait until the postmaster is reaped (not just a zombie): postgres
        // refuses to start while the pid in its stale lock file exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Fast shutdown of a member (via the same script the hooks use).
    pub async fn stop(&self, member: &str) -> Result<()> {
        self.script_cmd(&["stop", member]).await
    }

    /// Start a member as it is configured (primary or standby), wait until
    /// it accepts connections.
    pub async fn start_member(&self, member: &str) -> Result<()> {
        self.script_cmd(&["start", member]).await?;
        let m = self.member(member)?.clone();
        self.wait_accepting(&m, Duration::from_secs(60)).await
    }

    async fn script_cmd(&self, args: &[&str]) -> Result<()> {
        let out = tokio::process::Command::new(&self.script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed: {}{}",
                self.script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stop everything now (also done by `Drop`).
    pub fn teardown(&mut self) {
        if self.compose.take().is_some() {
            // The services stay up for the next attach (which resets them);
            // dropping the attachment releases the lock.
            self.members.clear();
            return;
        }
        for m in &self.members {
            let data = m.data_dir();
            if read_pid(&data).is_some() {
                self.stop_now(m);
            }
            if let Some(pid) = read_pid(&data) {
                if process_alive(pid) {
                    let _ = signal(pid, "KILL");
                }
            }
        }
        if std::env::var_os("SWITCHYARD_LAB_KEEP").is_some() {
            // Debugging aid: keep logs and data of a failed run.
            if let Some(t) = self._tmp.take() {
                eprintln!("switchyard-lab: kept {}", t.keep().display());
            }
        } else if self._tmp.is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        self.members.clear();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Send a signal through the shell's `kill` builtin: no unsafe `kill(2)`
/// here, and no dependency on procps' `/usr/bin/kill` (absent on minimal
/// Debian).
pub fn signal(pid: u32, sig: &str) -> Result<std::process::ExitStatus> {
    Ok(std::process::Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\"", sig, &pid.to_string()])
        .status()?)
}

fn read_pid(data: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = s.lines().next()?.trim().parse().ok()?;
    process_alive(pid).then_some(pid)
}

/// Running (not a zombie waiting to be reaped: a killed postmaster is
/// re-parented to PID 1, which may reap it late).
fn process_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

pub(crate) fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn build_topology(spec: &PgClusterSpec, members: &[PgMember], script: &Path) -> Topology {
    let q = shell_quote(&script.display().to_string());
    let regions = crate::regions_first_primary(&spec.regions);
    let members = members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            host: Some(format!("127.0.0.1:{}", m.port)),
            region: m.region.clone(),
            priority: 1.0,
            votes: 1,
            arbiter: false,
            hidden: false,
            read_only_replica: false,
            failover_priority: None,
            sentinel: false,
            hooks: Hooks {
                stop: Some(format!("{q} stop {{member}}")),
                start: Some(format!("{q} start {{member}}")),
                start_as_standby: Some(format!(
                    "{q} start-standby {{member}} {{primary_host}} {{primary_port}}"
                )),
                rewind: Some(format!(
                    "{q} rewind {{member}} {{primary_host}} {{primary_port}}"
                )),
                timeout_ms: Some(120_000),
                extra: if spec.deferred_fence {
                    [
                        (
                            "controldata".to_string(),
                            format!("{q} controldata {{member}}"),
                        ),
                        (
                            "stop_controldata".to_string(),
                            format!("{q} stop-controldata {{member}}"),
                        ),
                    ]
                    .into_iter()
                    .collect()
                } else {
                    Default::default()
                },
            },
        })
        .collect();
    Topology {
        capacity_margin_percent: None,
        name: format!("{}-lab", spec.store),
        regions,
        stores: vec![Store {
            tags: Vec::new(),
            name: spec.store.clone(),
            kind: StoreKind::Postgres,
            depends_on: vec![],
            max_lag_bytes: spec.max_lag_bytes,
            max_lag_ms: None,
            connection: Connection {
                user: Some("postgres".into()),
                database: Some("postgres".into()),
                password_env: None,
                tls: Some("disable".into()),
                connect_timeout_ms: Some(2000),
                ..Connection::default()
            },
            settings: Settings::default(),
            members,
        }],
    }
}

/// The topology and members of a cluster attached to `services` (one
/// PostgreSQL service per region of `spec`, in its order, as the resolver
/// found them): `base`'s `pg` store (topologies/examples/compose.toml) with
/// the members renamed as the lab names them, their hosts the services'
/// home addresses, `{member}` in every hook the service, and the deferred
/// fence's hooks only when the spec asks for it (as on the lab).
fn compose_topology_for(
    spec: &PgClusterSpec,
    services: &[&crate::backing::Service],
    mut base: Topology,
) -> Result<(Topology, Vec<PgMember>)> {
    const FILE: &str = "topologies/examples/compose.toml";
    base.stores.retain(|s| s.name == "pg");
    let Some(mut store) = base.stores.pop() else {
        bail!("{FILE} has no store `pg`");
    };
    let mut members = Vec::new();
    let mut out = Vec::new();
    for (region, svc) in spec.regions.iter().zip(services) {
        let Some(mut m) = store.members.iter().find(|m| m.name == svc.name).cloned() else {
            bail!(
                "{FILE}: store `pg` has no member {} (docker-compose.yml's PostgreSQL service in {region})",
                svc.name
            );
        };
        if &m.region != region {
            bail!(
                "{FILE}: member {} is in region {}, docker-compose.yml puts the service in {region}",
                svc.name,
                m.region
            );
        }
        m.name = format!("{}-{region}-1", spec.store);
        m.host = Some(format!("{}:{}", svc.home, svc.kind.port()));
        if !spec.deferred_fence {
            for h in ["controldata", "stop_controldata"] {
                m.hooks.extra.remove(h);
            }
        }
        let hooks = &mut m.hooks;
        for h in [
            &mut hooks.stop,
            &mut hooks.start,
            &mut hooks.start_as_standby,
            &mut hooks.rewind,
        ]
        .into_iter()
        .flatten()
        .chain(hooks.extra.values_mut())
        {
            *h = h.replace("{member}", &svc.name);
        }
        out.push(PgMember {
            name: m.name.clone(),
            region: region.clone(),
            host: svc.host().to_string(),
            port: svc.port(),
            dir: PathBuf::from(COMPOSE_PG_DIR),
        });
        members.push(m);
    }
    store.name = spec.store.clone();
    store.max_lag_bytes = spec.max_lag_bytes;
    store.members = members;
    Ok((
        Topology {
            name: format!("{}-compose", spec.store),
            stores: vec![store],
            ..base
        },
        out,
    ))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The host-command script. Every command is idempotent: stopping a stopped
/// server or starting a running one succeeds. `start-standby` with an empty
/// primary starts the member in recovery without an upstream (a fenced
/// former primary that still answers read-only queries).
fn pgctl_script(bin: &Path, root: &Path) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"#!/bin/sh
# Generated by switchyard-lab: host commands for the lab's PostgreSQL members.
# Usage: pgctl.sh stop|start|start-standby|rewind|controldata|stop-controldata MEMBER [PRIMARY_HOST PRIMARY_PORT]
set -eu
BIN={bin}
ROOT={root}
cmd="$1"; member="$2"; host="${{3:-}}"; port="${{4:-}}"
case "$member" in *[!A-Za-z0-9._-]*|'') echo "bad member name" >&2; exit 2;; esac
data="$ROOT/$member/data"
log="$ROOT/$member/log"
# setpriv (no PAM session, unlike runuser/su) keeps hooks fast.
# HOME: libpq (pg_rewind, pg_basebackup, the servers' WAL receivers) reads
# ~/.postgresql/ once a server offers TLS, and root's home is not readable.
as_pg() {{ if [ "$(id -u)" = 0 ]; then HOME="$ROOT" setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi; }}
# Shell builtins only in what the stop loop runs (read, test, kill): the
# fence's stop is on the switchover's critical path, and every fork costs
# milliseconds on a loaded host.
pid_of() {{ pid=; [ -f "$data/postmaster.pid" ] && read -r pid < "$data/postmaster.pid" 2>/dev/null; echo "$pid"; }}
# A killed postmaster is re-parented to PID 1 and may stay a zombie for a
# while; postgres refuses to start while its old pid still exists. The state
# is the field after the command name in /proc/PID/stat.
zombie() {{
  [ -n "$1" ] && [ -e "/proc/$1" ] || return 1
  st=; read -r st < "/proc/$1/stat" 2>/dev/null || true
  st=${{st##*) }}
  case "$st" in Z*|X*) return 0;; *) return 1;; esac
}}
alive() {{ p=$(pid_of); [ -n "$p" ] && kill -0 "$p" 2>/dev/null && ! zombie "$p"; }}
wait_reaped() {{
  i=0
  while zombie "$1"; do
    i=$((i+1)); [ $i -gt 30000 ] && {{ echo "pid $1 never reaped" >&2; exit 1; }}
    sleep 0.002
  done
}}
stop() {{
  pid_of >/dev/null; p=$pid
  if [ -n "$p" ] && [ -e "/proc/$p" ]; then
    # SIGINT is a fast shutdown (what pg_ctl -m fast sends); pg_ctl -w
    # would poll every 100 ms, so wait for the postmaster far tighter. It
    # removes its pid file on a clean exit; a killed one leaves it behind.
    # Every 5 ms, not 2: each `sleep` is a process start, and this loop
    # runs while the server shuts down and its standbys take the last WAL
    # — the moment of the switchover that is shortest of CPU (Switchyard's
    # deferred fence watches the control file itself, not this loop).
    zombie "$p" || kill -INT "$p" 2>/dev/null || true
    i=0
    while [ -f "$data/postmaster.pid" ] && [ -e "/proc/$p" ] && ! zombie "$p"; do
      i=$((i+1)); [ $i -gt 12000 ] && {{ echo "$member did not stop" >&2; exit 1; }}
      sleep 0.005
    done
    [ -f "$data/postmaster.pid" ] && wait_reaped "$p"
  fi
  return 0
}}
# The status line (the 8th) of postmaster.pid: starting, stopping, ready, standby.
pm_status() {{
  n=0; st=
  [ -f "$data/postmaster.pid" ] && while IFS= read -r l; do n=$((n+1)); [ $n = 8 ] && {{ st=$l; break; }}; done < "$data/postmaster.pid"
  echo $st
}}
start() {{
  # A server past its shutdown checkpoint is not running, only exiting (the
  # fence returns there and lets the exit finish in the background): wait
  # for it to go, then start, rather than take it for a running server.
  i=0
  while alive && [ "$(pm_status)" = stopping ]; do
    i=$((i+1)); [ $i -gt 30000 ] && {{ echo "$member did not finish stopping" >&2; exit 1; }}
    sleep 0.002
  done
  p=$(pid_of)
  wait_reaped "$p"
  alive || as_pg "$BIN/pg_ctl" -D "$data" -l "$log" -W start >/dev/null
}}
set_upstream() {{
  : > "$data/standby.signal"
  chown --reference="$data/postgresql.auto.conf" "$data/standby.signal"
  tmp="$data/postgresql.auto.conf.tmp"
  grep -v '^primary_conninfo' "$data/postgresql.auto.conf" > "$tmp" || true
  if [ -n "$host" ]; then
    echo "primary_conninfo = 'host=$host port=$port user=postgres application_name=$member'" >> "$tmp"
  fi
  chown --reference="$data/postgresql.auto.conf" "$tmp"
  mv "$tmp" "$data/postgresql.auto.conf"
}}
controldata() {{
  LC_ALL=C as_pg "$BIN/pg_controldata" -D "$data"
  if [ -f "$data/standby.signal" ]; then echo "standby.signal: present"; else echo "standby.signal: absent"; fi
}}
case "$cmd" in
  stop) stop ;;
  start) start ;;
  start-standby) stop; set_upstream; start ;;
  controldata) controldata ;;
  stop-controldata) stop; controldata ;;
  rewind)
    stop
    keep="$ROOT/$member"
    # pg_rewind copies the source's configuration files; keep this member's.
    # The copies are taken only when no earlier rewind was left half done, so
    # a retry (the controller retries, a coordinator resumes) never saves
    # what a failed pg_rewind left behind.
    if [ ! -f "$keep/rewind.in-progress" ]; then
      cp -p "$data/postgresql.conf" "$keep/postgresql.conf.keep"
      cp -p "$data/postgresql.auto.conf" "$keep/postgresql.auto.conf.keep"
      : > "$keep/rewind.in-progress"
    fi
    src="host=$host port=$port user=postgres"
    # Nothing is touched while the new primary cannot be reached: the
    # fallback below replaces the data directory.
    "$BIN/pg_isready" -q -h "$host" -p "$port" || {{ echo "source $host:$port is not accepting connections" >&2; exit 1; }}
    if ! as_pg "$BIN/pg_rewind" -D "$data" --source-server="$src dbname=postgres" >>"$log" 2>&1; then
      # A failed pg_rewind may leave the data directory unusable (its own
      # message says so); cloning the new primary afresh always converges.
      # The old directory is moved aside, never deleted: it may hold the only
      # copy of transactions the new primary lacks. Operators copy reference
      # hooks; a hook that deletes a data directory must not be one of them.
      aside="$keep/data.before-clone.$(date -u +%Y%m%dT%H%M%SZ).$$"
      mv "$data" "$aside"
      echo "pg_rewind failed; moved the data directory aside to $aside; cloning $host:$port with pg_basebackup" | tee -a "$log" >&2
      mkdir -m 700 "$data"
      chown --reference="$keep/postgresql.conf.keep" "$data"
      as_pg "$BIN/pg_basebackup" -D "$data" -d "$src" -X stream -c fast >>"$log" 2>&1
    fi
    cp -p "$keep/postgresql.conf.keep" "$data/postgresql.conf"
    cp -p "$keep/postgresql.auto.conf.keep" "$data/postgresql.auto.conf"
    rm -f "$keep/rewind.in-progress"
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
"#,
        bin = shell_quote(&bin.display().to_string()),
        root = shell_quote(&root.display().to_string()),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backing::{ServiceKind, Services};

    /// The attach's topology from the real compose file, resolved as
    /// `docker compose config` resolves it (Debian's docker-compose here),
    /// and compose.toml.
    fn attached(
        spec: &PgClusterSpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Topology, Vec<PgMember>) {
        let services =
            Services::from_config(&crate::backing::resolved_compose_file_for_tests(), env).unwrap();
        let chosen: Vec<_> = spec
            .regions
            .iter()
            .map(|r| services.in_region(ServiceKind::Postgres, r)[0])
            .collect();
        compose_topology_for(spec, &chosen, crate::backing::compose_topology().unwrap()).unwrap()
    }

    fn hook_names(m: &Member) -> Vec<String> {
        let h = &m.hooks;
        let mut v: Vec<String> = [
            ("stop", h.stop.is_some()),
            ("start", h.start.is_some()),
            ("start_as_standby", h.start_as_standby.is_some()),
            ("rewind", h.rewind.is_some()),
            ("timeout_ms", h.timeout_ms.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n.to_string())
        .collect();
        v.extend(h.extra.keys().map(|k| format!("extra.{k}")));
        v
    }

    #[test]
    fn the_compose_attach_takes_the_resolved_services_and_every_lab_hook() {
        let mut spec = PgClusterSpec::new(["east", "west", "south"]);
        spec.store = "orders".into();
        let (t, members) = attached(&spec, &|_| None);
        let store = &t.stores[0];
        let got: Vec<_> = store
            .members
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.region.as_str(),
                    m.host.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("orders-east-1", "east", "172.30.1.11:5432"),
                ("orders-west-1", "west", "172.30.2.12:5432"),
                ("orders-south-1", "south", "172.30.3.13:5432"),
            ]
        );
        let west = &store.members[1];
        assert_eq!(
            west.hooks.stop.as_deref(),
            Some("docker compose exec -T pg-west-1 /compose/postgres/pgctl.sh stop")
        );
        // Without the deferred fence, as on the lab: no controldata hooks.
        let lab = build_topology(&spec, &members, Path::new("/x/pgctl.sh"));
        assert_eq!(hook_names(west), hook_names(&lab.stores[0].members[1]));
        assert!(west.hooks.extra.is_empty());

        // With it: every hook the lab's topology has, each naming its service.
        spec.deferred_fence = true;
        let (t, members) = attached(&spec, &|_| None);
        let lab = build_topology(&spec, &members, Path::new("/x/pgctl.sh"));
        for (m, l) in t.stores[0].members.iter().zip(&lab.stores[0].members) {
            assert_eq!(hook_names(m), hook_names(l), "{}", m.name);
            assert!(hook_names(m).contains(&"extra.stop_controldata".to_string()));
            let service = format!("pg-{}-1", m.region);
            for cmd in m.hooks.extra.values().chain(m.hooks.stop.iter()) {
                assert!(
                    cmd.contains(&format!("exec -T {service} ")) && !cmd.contains("{member}"),
                    "{cmd}"
                );
            }
        }
        assert!(t.stores[0].members[0].hooks.extra["controldata"].ends_with("pgctl.sh controldata"));
    }

    #[test]
    fn an_address_override_moves_the_labs_sessions_not_the_members_upstream() {
        let spec = PgClusterSpec::new(["east", "west", "south"]);
        let env =
            |k: &str| (k == "SWITCHYARD_COMPOSE_ADDR_PG_WEST_1").then(|| "127.0.0.1:15432".into());
        let (t, members) = attached(&spec, &env);
        assert_eq!(
            (members[1].host.as_str(), members[1].port),
            ("127.0.0.1", 15432)
        );
        assert_eq!(
            t.stores[0].members[1].host.as_deref(),
            Some("172.30.2.12:5432"),
            "the other members follow it at its home address"
        );
        assert_eq!(
            (members[0].host.as_str(), members[0].port),
            ("172.30.1.11", 5432)
        );
    }
}
