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
    /// An unknown value is a panic naming it: running the lab while the
    /// caller asked for something else would pass for what it is not.
    pub fn get() -> &'static Backing {
        static BACKING: OnceLock<Backing> = OnceLock::new();
        BACKING.get_or_init(|| {
            let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            Backing::parse(
                var("SWITCHYARD_BACKING").as_deref(),
                var("COMPOSE_PROJECT_NAME").as_deref(),
                var("COMPOSE_FILE").as_deref(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        })
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
            other => bail!("SWITCHYARD_BACKING={other}: expected `lab` or `compose`"),
        }
    }

    /// The compose project, when that is the backing.
    pub fn compose() -> Option<&'static Compose> {
        match Backing::get() {
            Backing::Compose(c) => Some(c),
            Backing::Lab => None,
        }
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
            .map_err(|_| anyhow::anyhow!("docker {} timed out after {timeout:?}", argv.join(" ")))?
            .context("running docker (SWITCHYARD_BACKING=compose needs the docker CLI with its compose plugin)")?;
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

/// The topology docker-compose.yml runs: topologies/examples/compose.toml.
pub fn compose_topology() -> Result<switchyard_topology::Topology> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/examples/compose.toml");
    switchyard_topology::parse_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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
        assert!(e.to_string().contains("SWITCHYARD_BACKING=docker"), "{e}");
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

    #[test]
    fn the_compose_topology_parses() {
        let t = compose_topology().unwrap();
        assert!(t.stores.iter().any(|s| s.name == "pg"));
    }
}
