//! Coordination backends, chosen per deployment with `--backend`:
//! `file` (the embedded default for one machine), `etcd://HOST:PORT[,…]`,
//! `consul://HOST:PORT`. [`open`] turns the flag into a
//! [`Coordinator`](switchyard_coordination::Coordinator).
//!
//! [`FileCoordinator`] is the file backend: it wraps what the CLI has always
//! used — the `flock` and per-directory fencing token counter of [`crate::lock`] and
//! the fsync'd JSON-lines journals of [`crate::journal`] — so a server on the
//! file backend and the CLI on the same state directory exclude each other
//! and read each other's journals. Its lock never lapses (the kernel drops
//! it when the process dies), so it fences only processes on this machine.

use crate::journal::{parse_journal, FileJournalStore, JournalError};
use crate::lock::{FileLock, Lock, LockError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_coordination::{
    CoordinationError, Coordinator, LeaderInfo, Leadership, Node, Result, RunningExecution,
    Versioned,
};

/// The `--backend` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// The state directory's lock, fencing token counter and journals.
    File,
    /// etcd v3 endpoints (`HOST:PORT`).
    Etcd(Vec<String>),
    /// One Consul agent (`HOST:PORT`).
    Consul(String),
}

impl std::str::FromStr for BackendSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hostports = |rest: &str| -> Result<Vec<String>, String> {
            let v: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            if v.is_empty() || v.iter().any(|h| !h.contains(':')) {
                return Err(format!(
                    "--backend {s}: expected HOST:PORT[,HOST:PORT…] after the scheme"
                ));
            }
            Ok(v)
        };
        if s == "file" {
            Ok(BackendSpec::File)
        } else if let Some(rest) = s.strip_prefix("etcd://") {
            Ok(BackendSpec::Etcd(hostports(rest)?))
        } else if let Some(rest) = s.strip_prefix("consul://") {
            let mut v = hostports(rest)?;
            if v.len() != 1 {
                return Err(format!(
                    "--backend {s}: Consul is reached through one agent (consul://HOST:PORT)"
                ));
            }
            Ok(BackendSpec::Consul(v.remove(0)))
        } else {
            Err(format!(
                "--backend {s}: expected `file`, `etcd://HOST:PORT[,…]` or `consul://HOST:PORT`"
            ))
        }
    }
}

/// Open the backend `spec` names. `state_dir` is the file backend's
/// directory (other backends keep their state in the engine).
pub async fn open(spec: &BackendSpec, state_dir: &Path) -> Result<Arc<dyn Coordinator>> {
    open_with(spec, state_dir, None).await
}

/// [`open`], with the lease TTL of etcd and Consul set (`None`: their
/// default; the file lock has none).
pub async fn open_with(
    spec: &BackendSpec,
    state_dir: &Path,
    ttl: Option<Duration>,
) -> Result<Arc<dyn Coordinator>> {
    use switchyard_coordination::{consul, etcd};
    match spec {
        BackendSpec::File => Ok(Arc::new(FileCoordinator::new(state_dir)?)),
        BackendSpec::Etcd(endpoints) => {
            let mut o = etcd::EtcdOptions::new(endpoints.clone());
            if let Some(t) = ttl {
                o.ttl = t;
            }
            Ok(Arc::new(etcd::Etcd::connect(o).await?))
        }
        BackendSpec::Consul(address) => {
            let mut o = consul::ConsulOptions::new(address.clone());
            if let Some(t) = ttl {
                o.ttl = t;
            }
            Ok(Arc::new(consul::Consul::new(o)?))
        }
    }
}

/// The embedded file backend (see the module documentation).
#[derive(Debug, Clone)]
pub struct FileCoordinator {
    dir: PathBuf,
    lock: FileLock,
    journals: FileJournalStore,
    /// The last token [`fresh_token`](Coordinator::fresh_token) issued under
    /// our leadership (its token → the latest): the directory's counter
    /// must still show it, or someone took the lock since.
    issued: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
    /// The fresh token's durable write, in flight while the execution's
    /// plan is made; every leadership check (so every journal append, the
    /// journal's creation first) waits for it.
    token_write: Arc<Deferred>,
    /// Writes made durable in the background, before the next record that
    /// must be: the journals' creation renames. Every durable append and
    /// sync waits for them, so a mutating intent is still durable only
    /// after everything before it.
    writes: Arc<Deferred>,
    /// The journal appended to last, kept open with its entry count: an
    /// execution appends some twenty records, each of which would read the
    /// whole file twice (to count its entries, then to open it). Only the
    /// lock's holder appends, and every append checks it first, so under
    /// one leadership (one token) nobody else can have added an entry; a
    /// new one counts again.
    last: Arc<std::sync::Mutex<Option<OpenJournal>>>,
}

/// See [`FileCoordinator`]'s `last`.
struct OpenJournal {
    execution: String,
    /// The leadership's latest token when it was cached.
    token: u64,
    entries: u64,
    /// Opened on the first append after the journal's creation (the handle
    /// `create` returns would sync the directory again on its first sync).
    journal: Option<Box<dyn crate::journal::Journal>>,
}

impl std::fmt::Debug for OpenJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenJournal")
            .field("execution", &self.execution)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// Durability work running in threads of its own (each an fsync or two,
/// which on a loaded disk cost as much as a round trip to a store), waited
/// for where it must be done.
#[derive(Debug, Default)]
struct Deferred {
    running: std::sync::Mutex<Vec<std::thread::JoinHandle<io::Result<()>>>>,
}

impl Deferred {
    fn push(
        &self,
        what: &str,
        work: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<()> {
        let h = std::thread::Builder::new()
            .name(format!("file-backend {what}"))
            .spawn(work)
            .map_err(|e| io(format!("{what}: {e}")))?;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(h);
        Ok(())
    }

    /// Wait for every write pushed so far; the first failure is returned
    /// (the backend is then unusable: a write it promised did not land).
    fn settle(&self) -> Result<()> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = Ok(());
        for h in running.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a background write panicked")));
            if let (Ok(()), Err(e)) = (&first, r) {
                first = Err(io(format!("background write: {e}")));
            }
        }
        first
    }
}

/// `<state-dir>/leader.json`: who holds the lock, for `GET /v1/leader`.
/// Believed only while the lock is held.
const LEADER_FILE: &str = "leader.json";
/// `<state-dir>/running.json`: the running-execution record.
const RUNNING_FILE: &str = "running.json";

#[derive(Serialize, Deserialize)]
struct RunningFile {
    version: u64,
    #[serde(default)]
    record: Option<RunningExecution>,
}

impl FileCoordinator {
    /// The backend on `state_dir` (created if missing).
    pub fn new(state_dir: &Path) -> Result<Self> {
        let lock = FileLock::new(state_dir).map_err(|e| invalid(e.to_string()))?;
        let journals = FileJournalStore::new(state_dir).map_err(|e| journal_err(&e))?;
        Ok(FileCoordinator {
            dir: state_dir.to_path_buf(),
            lock,
            journals,
            issued: Arc::default(),
            token_write: Arc::default(),
            writes: Arc::default(),
            last: Arc::default(),
        })
    }

    /// Refuse a leadership that is lost or whose fencing token is no longer
    /// the directory's latest.
    fn check(&self, l: &Leadership) -> Result<()> {
        self.token_write.settle()?;
        if l.is_lost() {
            return Err(l.not_leader(l.lost_reason().unwrap_or_else(|| "lost".into())));
        }
        let current = self.lock.current_token().map_err(|e| io(e.to_string()))?;
        if current.get() != self.latest(l) {
            l.lose(format!(
                "the lock was taken again (fencing token {current})"
            ));
            return Err(l.not_leader(format!("superseded by fencing token {current}")));
        }
        Ok(())
    }

    /// The latest token issued under `l` (its own until a fresh one).
    fn latest(&self, l: &Leadership) -> u64 {
        match *self.issued.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((lt, latest)) if lt == l.token() => latest,
            _ => l.token(),
        }
    }

    /// Not fsync'd: the leader file is believed only while the lock is
    /// held and its token is the counter's, so after a crash (the lock
    /// free, and the next holder writing its own) nothing believes what it
    /// says, whether or not it survived.
    fn write_leader(&self, info: &LeaderInfo) -> Result<()> {
        let bytes = serde_json::to_vec(info).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.dir, LEADER_FILE, &bytes, false)
            .map_err(|e| io(format!("{}: {e}", self.dir.join(LEADER_FILE).display())))
    }

    fn read_running(&self) -> Result<RunningFile> {
        let path = self.dir.join(RUNNING_FILE);
        match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| invalid(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RunningFile {
                version: 0,
                record: None,
            }),
            Err(e) => Err(io(format!("{}: {e}", path.display()))),
        }
    }

    /// Complete lines of an execution's journal file, raw.
    /// Append entry `seq` of `execution` ([`Coordinator::append`]); when
    /// not `durable`, written without an fsync (the next durable append or
    /// sync of the journal makes it durable: fdatasync covers the whole file).
    fn append_entry(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
        durable: bool,
    ) -> Result<()> {
        self.check(leadership)?;
        let path = self.journals.path(execution);
        let scan = parse_journal(&path.display().to_string(), entry);
        let record = match (scan.records.as_slice(), scan.damage.as_slice()) {
            ([r], []) if entry.ends_with(b"\n") => r.clone(),
            _ => {
                return Err(invalid(format!(
                    "journal of {execution}: entry {seq} is not one journal line"
                )))
            }
        };
        let token = self.latest(leadership);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let ours = |o: &OpenJournal| o.execution == execution && o.token == token;
        let cached = last.as_ref().filter(|o| ours(o)).map(|o| o.entries);
        let have = match cached {
            Some(n) => n,
            None => match self.lines(execution) {
                Ok(l) => l.len() as u64,
                Err(CoordinationError::NotFound { .. }) => 0,
                Err(e) => return Err(e),
            },
        };
        if seq != have + 1 {
            *last = None;
            return Err(CoordinationError::SeqTaken {
                execution: execution.into(),
                seq,
                reason: if seq <= have {
                    "entry exists".into()
                } else {
                    format!("entry {} missing", seq - 1)
                },
            });
        }
        use crate::journal::JournalStore;
        if durable && seq > 1 {
            // What must be durable before this record is.
            self.writes.settle()?;
        }
        // Whatever fails below leaves the cache empty: the next append
        // counts the file's entries again.
        let open = last.take().filter(|o| ours(o));
        if seq == 1 {
            // Written whole under a temporary name, fsync'd and renamed: the
            // journal exists only with its first entry durable. Its new name
            // is made durable in the background, before the journal's next
            // durable record (the first mutating intent at the latest), as
            // the CLI's file journal does on its first sync.
            self.journals
                .create(execution, &record)
                .map_err(|e| journal_err(&e))?;
            let dir = self.journals.dir().to_path_buf();
            self.writes.push("journal directory sync", move || {
                crate::journal::sync_dir(&dir)
            })?;
            *last = Some(OpenJournal {
                execution: execution.into(),
                token,
                entries: 1,
                journal: None,
            });
            Ok(())
        } else {
            let mut journal = match open.and_then(|o| o.journal) {
                Some(j) => j,
                None => self.journals.open(execution).map_err(|e| journal_err(&e))?,
            };
            if durable {
                journal.append(&record)
            } else {
                journal.append_lazy(&record)
            }
            .map_err(|e| journal_err(&e))?;
            *last = Some(OpenJournal {
                execution: execution.into(),
                token,
                entries: seq,
                journal: Some(journal),
            });
            Ok(())
        }
    }

    fn lines(&self, execution: &str) -> Result<Vec<Vec<u8>>> {
        let path = self.journals.path(execution);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CoordinationError::NotFound {
                    what: format!("execution {execution}"),
                })
            }
            Err(e) => return Err(io(format!("{}: {e}", path.display()))),
        };
        // A torn last line was never durable: not an entry (as parse_journal).
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Ok(bytes[..complete]
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect())
    }
}

/// Replace `dir/name` with `bytes` through a temporary file and a rename,
/// so readers see the old content or the new, whole; `durable`: the new
/// content and its name are on disk when this returns.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    if durable {
        crate::journal::sync_dir(dir)?;
    }
    Ok(())
}

fn invalid(message: String) -> CoordinationError {
    CoordinationError::Invalid { message }
}

fn io(message: String) -> CoordinationError {
    // A local filesystem error is not cured by waiting, but it is not the
    // caller's fault either: report it as the backend being unusable.
    CoordinationError::Unavailable {
        backend: "file".into(),
        message,
    }
}

fn journal_err(e: &JournalError) -> CoordinationError {
    match e {
        JournalError::NotFound(id) => CoordinationError::NotFound {
            what: format!("execution {id}"),
        },
        other => io(other.to_string()),
    }
}

#[async_trait]
impl Coordinator for FileCoordinator {
    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn lease_ttl(&self) -> Duration {
        Duration::MAX
    }

    async fn try_campaign(&self, me: &Node) -> Result<Option<Leadership>> {
        let holder = format!("node {} ({}), pid {}", me.name, me.url, std::process::id());
        let guard = match self.lock.try_acquire(&holder) {
            Ok(g) => g,
            Err(LockError::Held { .. }) => return Ok(None),
            Err(e) => return Err(io(e.to_string())),
        };
        // Leading from here on: the counter shows our token.
        guard.durable().map_err(io)?;
        let token = guard.token().get();
        self.write_leader(&LeaderInfo {
            node: me.clone(),
            token,
        })?;
        let (leadership, keeper) = Leadership::new(
            token,
            me.clone(),
            self.describe(),
            self.dir.join("lock").display().to_string(),
            None,
        );
        // The flock lives as long as the leadership: released when it is
        // resigned or dropped, or by the kernel when the process dies.
        tokio::spawn(async move {
            keeper.released().await;
            drop(guard);
        });
        Ok(Some(leadership))
    }

    async fn resign(&self, leadership: Leadership) -> Result<()> {
        // The next holder must find the latest token in the counter.
        self.token_write.settle()?;
        self.writes.settle()?;
        leadership.release();
        // The guard is dropped by the task; wait until the kernel lock is free
        // so a resign is complete when it returns.
        for _ in 0..1000 {
            if !self.lock.is_held().map_err(|e| io(e.to_string()))? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(io("lock still held 5 s after resigning".into()))
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>> {
        if !self.lock.is_held().map_err(|e| io(e.to_string()))? {
            return Ok(None);
        }
        let path = self.dir.join(LEADER_FILE);
        let info: LeaderInfo = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?,
            // Held by a CLI run, which writes no leader file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("{}: {e}", path.display()))),
        };
        // A leader file from an earlier holder (a CLI took the lock since)
        // names nobody.
        let current = self.lock.current_token().map_err(|e| io(e.to_string()))?;
        Ok((info.token == current.get()).then_some(info))
    }

    async fn fresh_token(&self, leadership: &Leadership) -> Result<u64> {
        self.check(leadership)?;
        // The counter's two fsyncs go on in the background while the plan
        // is made; `check`, which every journal append does first (the
        // journal's creation, naming the token, before anything else),
        // waits for them. Only the lock's holder writes the counter.
        let token = self
            .lock
            .current_token()
            .map_err(|e| io(e.to_string()))?
            .get()
            + 1;
        let lock = self.lock.clone();
        self.token_write.push("fencing token", move || {
            lock.store_token(switchyard_controller::FencingToken(token))
                .map_err(io::Error::other)
        })?;
        *self.issued.lock().unwrap_or_else(|p| p.into_inner()) = Some((leadership.token(), token));
        // The leader file carries the latest token, so `leader()` (which
        // believes it only while it matches the counter) still names us.
        self.write_leader(&LeaderInfo {
            node: leadership.node().clone(),
            token,
        })?;
        Ok(token)
    }

    async fn append(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
    ) -> Result<()> {
        self.append_entry(leadership, execution, seq, entry, true)
    }

    async fn append_lazy(
        &self,
        leadership: &Leadership,
        execution: &str,
        seq: u64,
        entry: &[u8],
    ) -> Result<()> {
        self.append_entry(leadership, execution, seq, entry, false)
    }

    async fn sync(&self, leadership: &Leadership, execution: &str) -> Result<()> {
        use crate::journal::JournalStore;
        self.check(leadership)?;
        self.writes.settle()?;
        self.journals
            .open(execution)
            .and_then(|mut j| j.sync())
            .map_err(|e| journal_err(&e))
    }

    async fn entries(&self, execution: &str) -> Result<Vec<Vec<u8>>> {
        self.lines(execution)
    }

    async fn executions(&self) -> Result<Vec<String>> {
        use crate::journal::JournalStore;
        self.journals.list().map_err(|e| journal_err(&e))
    }

    async fn running(&self) -> Result<Option<Versioned<RunningExecution>>> {
        let f = self.read_running()?;
        Ok(f.record.map(|value| Versioned {
            value,
            version: f.version,
        }))
    }

    async fn swap_running(
        &self,
        leadership: &Leadership,
        expected: Option<u64>,
        new: Option<&RunningExecution>,
    ) -> Result<()> {
        self.check(leadership)?;
        let cur = self.read_running()?;
        let cur_version = cur.record.as_ref().map(|_| cur.version);
        if cur_version != expected {
            return Err(CoordinationError::Changed {
                what: "running-execution record".into(),
            });
        }
        let next = RunningFile {
            version: cur.version + 1,
            record: new.cloned(),
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.dir, RUNNING_FILE, &bytes, true)
            .map_err(|e| io(format!("{}: {e}", self.dir.join(RUNNING_FILE).display())))
    }
}

/// A [`Leadership`] as the driver's [`LockGuard`](crate::lock::LockGuard):
/// the leadership's token is the fencing token, `still_held` asks that at least `margin`
/// of the lease remains (checked before each intent), and the loss signal
/// cancels operations in flight.
#[derive(Debug, Clone)]
pub struct LeadershipGuard {
    leadership: Arc<Leadership>,
    margin: Duration,
    token: u64,
}

impl LeadershipGuard {
    /// Guard with `leadership`; an intent is refused when less than
    /// `margin` of the lease remains (the time a step needs to be issued
    /// and journaled before the lease could lapse). Its token is the
    /// leadership's until [`with_token`](Self::with_token).
    pub fn new(leadership: Arc<Leadership>, margin: Duration) -> Self {
        let token = leadership.token();
        LeadershipGuard {
            leadership,
            margin,
            token,
        }
    }

    /// Carry `token` instead: one execution's own, from
    /// [`Coordinator::fresh_token`] under the same leadership.
    pub fn with_token(mut self, token: u64) -> Self {
        self.token = token;
        self
    }

    /// The leadership guarded.
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }
}

impl crate::lock::LockGuard for LeadershipGuard {
    fn token(&self) -> switchyard_controller::FencingToken {
        switchyard_controller::FencingToken(self.token)
    }

    fn still_held(&self) -> bool {
        self.leadership.ensure(self.margin).is_ok()
    }

    fn lost_signal(&self) -> Option<tokio_util::sync::CancellationToken> {
        Some(self.leadership.cancellation())
    }
}

/// Journals kept in a coordination backend, as a
/// [`JournalStore`](crate::journal::JournalStore): each record is one entry
/// (its journal line, checksum included), appended with compare-and-set on
/// the entry number under the leadership, so a deposed leader's append
/// fails with [`JournalError::Fenced`]. Reads need no leadership.
///
/// The journal traits are synchronous and the backends are not: calls
/// block the current thread on the backend (`block_in_place`), which needs
/// Tokio's multi-thread runtime; on any other the call fails with an error
/// saying so rather than panicking.
#[derive(Debug, Clone)]
pub struct BackendJournalStore {
    backend: Arc<dyn Coordinator>,
    leadership: Option<Arc<Leadership>>,
}

impl BackendJournalStore {
    /// Journals in `backend`, written under `leadership` (`None`: read only).
    pub fn new(backend: Arc<dyn Coordinator>, leadership: Option<Arc<Leadership>>) -> Self {
        BackendJournalStore {
            backend,
            leadership,
        }
    }

    fn leadership(&self, execution: &str) -> Result<Arc<Leadership>, JournalError> {
        self.leadership.clone().ok_or_else(|| JournalError::Fenced {
            execution: execution.into(),
            message: "no leadership: this server is not the leader".into(),
        })
    }
}

/// Run a backend call from synchronous journal code.
fn block_on<T>(
    execution: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T, JournalError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| JournalError::Backend {
        execution: execution.into(),
        message: "the coordination backend needs a Tokio runtime".into(),
    })?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(JournalError::Backend {
            execution: execution.into(),
            message: "a journal in a coordination backend needs Tokio's multi-thread runtime"
                .into(),
        });
    }
    tokio::task::block_in_place(|| handle.block_on(f))
        .map_err(|e| backend_journal_err(execution, e))
}

fn backend_journal_err(execution: &str, e: CoordinationError) -> JournalError {
    match e {
        CoordinationError::NotFound { .. } => JournalError::NotFound(execution.into()),
        e @ (CoordinationError::NotLeader { .. } | CoordinationError::SeqTaken { .. }) => {
            JournalError::Fenced {
                execution: execution.into(),
                message: e.to_string(),
            }
        }
        e => JournalError::Backend {
            execution: execution.into(),
            message: e.to_string(),
        },
    }
}

struct BackendJournal {
    backend: Arc<dyn Coordinator>,
    leadership: Arc<Leadership>,
    execution: String,
    next: u64,
}

impl BackendJournal {
    /// Append `record` as the next entry, durable or not (see
    /// [`Coordinator::append_lazy`]).
    fn push(&mut self, record: &crate::journal::Record, durable: bool) -> Result<(), JournalError> {
        let line = crate::journal::encode_line(record).map_err(|e| JournalError::Backend {
            execution: self.execution.clone(),
            message: e.to_string(),
        })?;
        let (l, x, seq) = (&self.leadership, &self.execution, self.next);
        if durable {
            block_on(x, self.backend.append(l, x, seq, &line))?;
        } else {
            block_on(x, self.backend.append_lazy(l, x, seq, &line))?;
        }
        self.next += 1;
        Ok(())
    }
}

impl crate::journal::Journal for BackendJournal {
    fn append(&mut self, record: &crate::journal::Record) -> Result<(), JournalError> {
        self.push(record, true)
    }

    fn append_lazy(&mut self, record: &crate::journal::Record) -> Result<(), JournalError> {
        self.push(record, false)
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        block_on(
            &self.execution,
            self.backend.sync(&self.leadership, &self.execution),
        )
    }
}

impl crate::journal::JournalStore for BackendJournalStore {
    fn create(
        &self,
        execution_id: &str,
        started: &crate::journal::Record,
    ) -> Result<Box<dyn crate::journal::Journal>, JournalError> {
        let mut j = BackendJournal {
            backend: self.backend.clone(),
            leadership: self.leadership(execution_id)?,
            execution: execution_id.into(),
            next: 1,
        };
        crate::journal::Journal::append(&mut j, started)?;
        Ok(Box::new(j))
    }

    fn open(&self, execution_id: &str) -> Result<Box<dyn crate::journal::Journal>, JournalError> {
        let leadership = self.leadership(execution_id)?;
        let n = block_on(execution_id, self.backend.entries(execution_id))?.len() as u64;
        Ok(Box::new(BackendJournal {
            backend: self.backend.clone(),
            leadership,
            execution: execution_id.into(),
            next: n + 1,
        }))
    }

    fn scan(&self, execution_id: &str) -> Result<crate::journal::Scan, JournalError> {
        let entries = block_on(execution_id, self.backend.entries(execution_id))?;
        // Entries are journal lines: parse them exactly as a file journal,
        // so damage is reported the same way (by entry number).
        let bytes: Vec<u8> = entries.concat();
        Ok(parse_journal(
            &format!("{}/{execution_id}", self.backend.describe()),
            &bytes,
        ))
    }

    fn list(&self) -> Result<Vec<String>, JournalError> {
        block_on("", self.backend.executions())
    }
}

/// A server's standing in the election, kept current in the background:
/// campaigns while it does not lead, holds the [`Leadership`] while it
/// does (and campaigns again once it is lost), and caches who leads for
/// `GET /v1/leader` and the followers' redirects, refreshed every `poll`.
#[derive(Debug)]
pub struct Campaigner {
    backend: Arc<dyn Coordinator>,
    state: std::sync::Mutex<CampaignState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct CampaignState {
    leadership: Option<Arc<Leadership>>,
    leader: Option<LeaderInfo>,
    /// The running-execution record as last read.
    running: Option<RunningExecution>,
    /// Rounds completed (campaign and reads), so start-up can wait for one.
    rounds: u64,
}

impl Campaigner {
    /// Join the election on `backend` as `me`; the task stops when the
    /// returned value is dropped (its leadership is then resigned).
    pub fn start(backend: Arc<dyn Coordinator>, me: Node, poll: Duration) -> Arc<Campaigner> {
        let c = Arc::new(Campaigner {
            backend,
            state: std::sync::Mutex::new(CampaignState::default()),
            changed: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&c);
        tokio::spawn(async move {
            loop {
                let Some(c) = weak.upgrade() else { return };
                c.round(&me).await;
                let lost = c.leadership().map(|l| l.cancellation());
                drop(c);
                match lost {
                    // Leading: nothing to do until the lease is lost, but
                    // refresh the cached leader now and then.
                    Some(t) => {
                        tokio::select! {
                            () = t.cancelled() => {}
                            () = tokio::time::sleep(poll) => {}
                        }
                    }
                    None => tokio::time::sleep(poll).await,
                }
            }
        });
        c
    }

    async fn round(&self, me: &Node) {
        let held = self.leadership();
        if held.as_ref().is_some_and(|l| l.is_lost()) {
            tracing::warn!(
                reason = ?held.as_ref().and_then(|l| l.lost_reason()),
                "election: leadership lost"
            );
            self.set(|s| s.leadership = None);
        }
        if self.leadership().is_none() {
            match self.backend.try_campaign(me).await {
                Ok(Some(l)) => {
                    tracing::info!(token = l.token(), node = %me.name, "election: leading");
                    self.set(|s| s.leadership = Some(Arc::new(l)));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "election: campaign failed"),
            }
        }
        match self.backend.leader().await {
            Ok(info) => self.set(|s| s.leader = info),
            Err(e) => tracing::warn!(error = %e, "election: who leads is unknown"),
        }
        match self.backend.running().await {
            Ok(r) => self.set(|s| s.running = r.map(|v| v.value)),
            Err(e) => tracing::warn!(error = %e, "election: the running execution is unknown"),
        }
        self.set(|s| s.rounds += 1);
    }

    fn set(&self, f: impl FnOnce(&mut CampaignState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_waiters();
    }

    /// The backend, for messages (never a secret).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The backend itself (journal, running record).
    pub fn backend(&self) -> &Arc<dyn Coordinator> {
        &self.backend
    }

    /// Our leadership while it holds.
    pub fn leadership(&self) -> Option<Arc<Leadership>> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leadership
            .clone()
            .filter(|l| !l.is_lost())
    }

    /// Whether this server leads now.
    pub fn leads(&self) -> bool {
        self.leadership().is_some()
    }

    /// The leader as last read from the backend (ours at once when we
    /// lead); `None` while nobody leads or the backend cannot be read.
    pub fn leader(&self) -> Option<LeaderInfo> {
        if let Some(l) = self.leadership() {
            return Some(LeaderInfo {
                node: l.node().clone(),
                token: l.token(),
            });
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leader
            .clone()
    }

    /// The execution the backend records as running (as last read, every
    /// poll): on a follower, the one the leader runs.
    pub fn running(&self) -> Option<RunningExecution> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .clone()
    }

    /// Wait until the first round (campaign, leader and running record
    /// read) has completed, so start-up can say whether it leads.
    pub async fn first_round(&self) {
        loop {
            let notified = self.changed.notified();
            if self.state.lock().unwrap_or_else(|p| p.into_inner()).rounds > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Wait until this server leads (for tests and start-up).
    pub async fn until_leading(&self) -> Arc<Leadership> {
        loop {
            let notified = self.changed.notified();
            if let Some(l) = self.leadership() {
                return l;
            }
            notified.await;
        }
    }
}

/// A service running on a coordination backend (`serve`): the election it
/// takes part in, and the lease margin every intent needs.
#[derive(Debug, Clone)]
pub struct Coordinated {
    campaigner: Arc<Campaigner>,
    margin: Duration,
}

impl Coordinated {
    /// Executions run under `campaigner`'s leadership; an intent is refused
    /// when less than `margin` of the lease remains.
    pub fn new(campaigner: Arc<Campaigner>, margin: Duration) -> Self {
        Coordinated { campaigner, margin }
    }

    /// The election.
    pub fn campaigner(&self) -> &Arc<Campaigner> {
        &self.campaigner
    }

    /// The right to run one execution: our leadership (with at least the
    /// margin left) and a fresh token for it from the backend.
    pub fn lock(&self) -> Result<LeadershipGuard, String> {
        let Some(l) = self.campaigner.leadership() else {
            return Err(match self.campaigner.leader() {
                Some(info) => format!(
                    "this server does not lead on {}; {} ({}) does",
                    self.campaigner.describe(),
                    info.node.name,
                    info.node.url
                ),
                None => format!(
                    "no server leads on {} right now; retry",
                    self.campaigner.describe()
                ),
            });
        };
        l.ensure(self.margin).map_err(|e| e.to_string())?;
        let backend = self.campaigner.backend().clone();
        let token = block_on("", backend.fresh_token(&l)).map_err(|e| e.to_string())?;
        Ok(LeadershipGuard::new(l, self.margin).with_token(token))
    }

    /// The journals in the backend, written under our leadership (read only
    /// while we do not lead).
    pub fn journals(&self) -> BackendJournalStore {
        BackendJournalStore::new(
            self.campaigner.backend().clone(),
            self.campaigner.leadership(),
        )
    }
}
