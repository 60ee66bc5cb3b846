//! Who leads: the seam a coordination backend slots into.
//!
//! The server asks an [`Election`] whether it leads and, when it does not,
//! where the leader is (`GET /v1/leader`, and the `307` a follower answers
//! mutating requests with). The embedded [`FileElection`] is the default for
//! one machine: the leader holds an exclusive `flock` on
//! `<state-dir>/server.lock` and writes its node and URL into
//! `<state-dir>/server.json`; another server on the same state directory
//! follows and campaigns every second, taking over the moment the leader's
//! process ends (the kernel drops the lock). Executions still take the
//! execution lock and fencing epoch of [`crate::lock`] each time, so the CLI
//! and a server on one state directory exclude each other too. Distributed
//! backends (etcd, Consul) implement the same trait from their leader key.

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use utoipa::ToSchema;

/// A server as the election knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// `--node`.
    pub name: String,
    /// Base URL it serves at.
    pub url: String,
}

/// Leadership among the servers sharing a backend.
pub trait Election: Send + Sync + std::fmt::Debug {
    /// The backend, for messages and `/readyz` (never a secret).
    fn describe(&self) -> String;
    /// Whether this server leads now.
    fn leads(&self) -> bool;
    /// The leader, as the backend records it; `None` while nobody leads.
    fn leader(&self) -> Option<Node>;
}

/// The embedded file backend's election (see the module documentation).
#[derive(Debug)]
pub struct FileElection {
    dir: PathBuf,
    me: Node,
    leads: AtomicBool,
    /// Held for its flock while we lead.
    held: Mutex<Option<File>>,
}

const LOCK: &str = "server.lock";
const LEADER: &str = "server.json";

impl FileElection {
    /// Join the election in `state_dir` as `me`; campaigns once now, then in
    /// the background every second until it leads.
    pub fn start(state_dir: &Path, me: Node) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(state_dir)?;
        let e = Arc::new(FileElection {
            dir: state_dir.to_path_buf(),
            me,
            leads: AtomicBool::new(false),
            held: Mutex::new(None),
        });
        e.campaign()?;
        let weak = Arc::downgrade(&e);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(e) = weak.upgrade() else { return };
                if e.leads() {
                    return;
                }
                if let Err(err) = e.campaign() {
                    tracing::warn!(error = %err, "election: campaign failed");
                }
            }
        });
        Ok(e)
    }

    fn campaign(&self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK))?;
        if !FileExt::try_lock_exclusive(&file)? {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{LEADER}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&self.me).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LEADER))?;
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        self.leads.store(true, Ordering::SeqCst);
        tracing::info!(node = %self.me.name, "election: leading");
        Ok(())
    }
}

impl Election for FileElection {
    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn leads(&self) -> bool {
        self.leads.load(Ordering::SeqCst)
    }

    fn leader(&self) -> Option<Node> {
        if self.leads() {
            return Some(self.me.clone());
        }
        // Believed only while somebody holds the lock: a leader that died
        // left its file behind.
        let probe = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK))
            .ok()?;
        match FileExt::try_lock_exclusive(&probe) {
            Ok(false) => {}
            // Nobody holds it (we just took it for the probe; closing the
            // file releases it again, and our campaign takes it properly).
            _ => return None,
        }
        let bytes = std::fs::read(self.dir.join(LEADER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
