//! Real etcd (Debian `etcd-server`): one member or three, on free loopback
//! ports, in a temporary (or given) directory, stopped and removed on drop.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let etcd = switchyard_lab::etcd::EtcdCluster::start(3, None).await?;
//! println!("{}", etcd.endpoints().join(","));
//! # Ok(()) }
//! ```
//!
//! Each member's name carries a random run id, and start-up waits until the
//! member's own client port lists a member of that name: a port answered by
//! some other etcd is a clash, and the cluster is started again on new ports.
//!
//! On `SWITCHYARD_BACKING=compose` a three-member cluster is docker-compose.yml's
//! (`etcd-east`, `-west`, `-south`, whose member names are their service
//! names, checked the same way), reset for each test; see [`crate::backing`].

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One etcd member.
#[derive(Debug, Clone)]
pub struct EtcdMember {
    /// Member name (`lab-<run>-e1`).
    pub name: String,
    /// Client address, `HOST:PORT`.
    pub client: String,
    /// Peer address, `HOST:PORT`.
    pub peer: String,
    /// Data directory.
    pub dir: PathBuf,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    initial_cluster: String,
    children: Mutex<HashMap<String, Child>>,
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Attached to docker-compose.yml's etcd services (see
    /// [`crate::backing`]); members are named by their services.
    compose: Option<(crate::backing::Compose, std::fs::File)>,
}

impl EtcdCluster {
    /// Start `members` members (1 or 3) listening on `127.0.0.1`, under
    /// `base_dir` (a temporary directory when `None`).
    pub async fn start(members: usize, base_dir: Option<&Path>) -> Result<EtcdCluster> {
        Self::start_on(members, base_dir, "127.0.0.1").await
    }

    /// As [`EtcdCluster::start`], listening on `host` (an address of this
    /// machine, e.g. a veth end that a network namespace reaches).
    pub async fn start_on(
        members: usize,
        base_dir: Option<&Path>,
        host: &str,
    ) -> Result<EtcdCluster> {
        if let Some(project) = crate::backing::Backing::compose()? {
            return Self::attach(project, members, base_dir, host).await;
        }
        let mut attempt = 0;
        loop {
            match Self::start_once(members, base_dir, host).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("port clash") => {
                    attempt += 1;
                    tracing::warn!(error = %e, "starting the etcd lab again on new ports");
                }
                other => return other,
            }
        }
    }

    /// The compose backing: docker-compose.yml's three etcd members
    /// (`etcd-east`, `-west`, `-south`), reset from empty volumes, at the
    /// addresses [`crate::backing::Services`] resolves. One member, a chosen
    /// directory or another listening host fail with
    /// [`crate::backing::Unsupported`].
    async fn attach(
        project: &crate::backing::Compose,
        members: usize,
        base_dir: Option<&Path>,
        host: &str,
    ) -> Result<EtcdCluster> {
        use crate::backing::{ServiceKind, Unsupported};
        if members != 3 || base_dir.is_some() || host != "127.0.0.1" {
            return Err(Unsupported(format!(
                "etcd with {members} member(s){}{}; docker-compose.yml has three at fixed addresses",
                base_dir.map_or(String::new(), |d| format!(" in {}", d.display())),
                if host == "127.0.0.1" { String::new() } else { format!(" listening on {host}") },
            ))
            .into());
        }
        let services = project.services().await?;
        let found = services.of(ServiceKind::Etcd);
        let lock = project.lock("etcd")?;
        let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
        project.reset(&names).await?;
        let ms: Vec<EtcdMember> = found
            .iter()
            .map(|s| EtcdMember {
                name: s.name.clone(),
                client: s.addr.clone(),
                peer: format!("{}:2380", s.home),
                dir: PathBuf::from("/etcd-data"),
            })
            .collect();
        let cluster = EtcdCluster {
            initial_cluster: ms
                .iter()
                .map(|m| format!("{}=http://{}", m.name, m.peer))
                .collect::<Vec<_>>()
                .join(","),
            members: ms,
            children: Mutex::new(HashMap::new()),
            root: project.dir(),
            _tmp: None,
            compose: Some((project.clone(), lock)),
        };
        for m in &cluster.members {
            cluster.wait_member(m, Duration::from_secs(120)).await?;
        }
        Ok(cluster)
    }

    async fn start_once(members: usize, base_dir: Option<&Path>, host: &str) -> Result<Self> {
        if members == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        if Command::new("etcd").arg("--version").output().is_err() {
            bail!("etcd not found (install the Debian package etcd-server)");
        }
        let (tmp, root) = match base_dir {
            Some(d) => {
                let root = d.join("etcd");
                std::fs::create_dir_all(&root)?;
                (None, root)
            }
            None => {
                let t = tempfile::tempdir()?;
                let root = t.path().to_path_buf();
                (Some(t), root)
            }
        };
        let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut ms = Vec::new();
        for i in 1..=members {
            let name = format!("lab-{run}-e{i}");
            ms.push(EtcdMember {
                dir: root.join(&name),
                client: format!("{host}:{}", free_port(host)?),
                peer: format!("{host}:{}", free_port(host)?),
                name,
            });
        }
        let initial_cluster = ms
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = EtcdCluster {
            members: ms,
            initial_cluster,
            children: Mutex::new(HashMap::new()),
            root,
            _tmp: tmp,
            compose: None,
        };
        for m in &cluster.members {
            cluster.spawn(m)?;
        }
        for m in &cluster.members {
            cluster.wait_member(m, Duration::from_secs(60)).await?;
        }
        Ok(cluster)
    }

    fn spawn(&self, m: &EtcdMember) -> Result<()> {
        std::fs::create_dir_all(&m.dir)?;
        let log = std::fs::File::create(self.log_file(m))?;
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(format!("http://{}", m.client))
            .arg("--advertise-client-urls")
            .arg(format!("http://{}", m.client))
            .arg("--listen-peer-urls")
            .arg(format!("http://{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}", m.peer))
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&m.name[..12])
            .arg("--initial-cluster-state")
            .arg("new")
            // A loaded 2-core CI machine misses the 100 ms default heartbeats.
            .arg("--heartbeat-interval")
            .arg("250")
            .arg("--election-timeout")
            .arg("2500")
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting etcd {}", m.name))?;
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.name.clone(), child);
        Ok(())
    }

    fn log_file(&self, m: &EtcdMember) -> PathBuf {
        self.root.join(format!("{}.log", m.name))
    }

    /// Wait until `m`'s client port is answered by `m` itself and the
    /// cluster has a leader.
    async fn wait_member(&self, m: &EtcdMember, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&m.name)
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.log_file(m)).unwrap_or_default();
                let clash = if log.contains("address already in use") {
                    " (port clash)"
                } else {
                    ""
                };
                bail!("etcd {} exited ({status}){clash}; log:\n{log}", m.name);
            }
            if let Ok(body) = http_post(&m.client, "/v3/cluster/member/list", "{}") {
                if !body.contains(&format!("\"name\":\"{}\"", m.name))
                    && body.contains("\"members\"")
                {
                    bail!(
                        "port {} is answered by an etcd that is not {} (port clash)",
                        m.client,
                        m.name
                    );
                }
                if let Ok(s) = http_post(&m.client, "/v3/maintenance/status", "{}") {
                    // `leader` is 0 until the cluster elected one.
                    if s.contains("\"leader\":\"") && !s.contains("\"leader\":\"0\"") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd {} not ready within {timeout:?}; log:\n{}",
                    m.name,
                    std::fs::read_to_string(self.log_file(m)).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// Client endpoints (`HOST:PORT`), as `etcd://` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The process id of a member, while it runs.
    /// `None` on the compose backing (the process is in a container).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(Child::id)
    }

    /// `kill -9` a member.
    pub fn kill(&self, name: &str) -> Result<()> {
        if let Some((project, _)) = &self.compose {
            return project.kill(name);
        }
        let mut c = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .with_context(|| format!("no running etcd member {name}"))?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// Start a killed member again on its data directory.
    pub async fn restart(&self, name: &str) -> Result<()> {
        let m = self
            .members
            .iter()
            .find(|m| m.name == name)
            .with_context(|| format!("no etcd member {name}"))?
            .clone();
        match &self.compose {
            Some((project, _)) => project.start(name)?,
            None => self.spawn(&m)?,
        }
        self.wait_member(&m, Duration::from_secs(60)).await
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if self.compose.take().is_some() {
            // The services stay up for the next test, which resets them;
            // `root` is the repository, never removed.
            return;
        }
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (_, mut c) in children.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(children);
        if self._tmp.is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn free_port(host: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

/// One HTTP/1.1 POST of JSON to etcd's gRPC gateway; the response body.
fn http_post(addr: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, rest) = out.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(rest.to_string())
}
