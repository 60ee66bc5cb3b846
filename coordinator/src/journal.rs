//! The execution journal: an append-only log of what the coordinator decided,
//! issued and observed. A record is durable (fsync'd) before the action it
//! describes happens, so a coordinator that dies at any instant can be
//! resumed from the journal alone.
//!
//! The [`JournalStore`] trait keeps the storage replaceable (Consul KV, etcd);
//! [`FileJournalStore`] is the embedded default: one JSON-lines file per
//! execution under `<state-dir>/executions/`, every line carrying a CRC-32C
//! of its own bytes (see [`encode_line`]).
//!
//! A journal that cannot be read whole is *damaged*, not skipped: [`JournalStore::scan`]
//! returns what it could read together with every corrupt line (file and
//! line), [`ledger`] says which executions are damaged, which were superseded
//! by a later one, and which still block a new execution, and a damaged
//! execution ends only when an operator closes it ([`Record::Closed`]).

use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_controller::{Error, ErrorKind, FencingToken, Operation, Outcome, Term};
use switchyard_topology::{StoreKind, Topology};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix-epoch millisecond timestamp.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 days we meet.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Result of one operation as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum OpResult {
    /// The controller carried the operation out.
    Ok {
        /// What it produced.
        outcome: Outcome,
    },
    /// The controller failed: the error as data. A journal written before
    /// kinds were data holds `"kind":"LagTooHigh"` and no member; it reads
    /// the same (the kinds keep their old spellings as aliases).
    Err {
        /// Error class (`lag_too_high`, `unreachable`, ...).
        kind: ErrorKind,
        /// Whether retrying could help.
        temporary: bool,
        /// Member concerned, when one is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<String>,
        /// The full error text.
        message: String,
    },
}

impl OpResult {
    /// A controller's failure as journaled.
    pub fn of_error(e: &Error) -> Self {
        let r = e.record();
        OpResult::Err {
            kind: r.kind,
            temporary: r.temporary,
            member: r.member,
            message: r.message,
        }
    }
}

/// What one store looked like when a checkpoint ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckpointObservation {
    /// Store name.
    pub store: String,
    /// The expectation, as written in the plan.
    pub expected: String,
    /// `None` when it held, else what was seen instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
    /// Primary observed (`member@region`), if exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The store's own term (timeline, term) observed; journals written
    /// before the rename call it `epoch`.
    #[serde(default, alias = "epoch", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u64>")]
    pub term: Option<Term>,
}

/// One store's state when an execution was aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreStatus {
    /// Store name.
    pub store: String,
    /// Human summary (`primary pg-west in west, 2/3 members healthy`).
    pub summary: String,
}

/// One journal record, named by its `event` field like a progress event.
///
/// The journal speaks the vocabulary of the events and reports: `event`
/// names the record, stages and steps are numbered from 1 (held 0-based in
/// memory, where they index the plan: see [`one_based`]), the coordinator's
/// token is `fencing_token`, the store's is `term`, and every duration says
/// its unit. Journals written before (records named by `type`, 0-based
/// stages and steps, `epoch` for both tokens) still read: see
/// [`upgrade_legacy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Record {
    /// An execution began.
    Started {
        /// Execution id.
        execution_id: String,
        /// Fencing token of the coordinator that started it.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
        /// `failover`, `run`, `drill-out`, `drill-back`.
        kind: String,
        /// Topology file used.
        topology_file: String,
        /// The full plan, so resume needs nothing else.
        plan: Plan,
        /// The kind of every store the plan names, so that `show` writes
        /// positions in each store's notation from the journal alone.
        /// Journals written before have none (read as empty).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        #[schemars(with = "BTreeMap<String, String>")]
        store_kinds: BTreeMap<String, StoreKind>,
    },
    /// A coordinator resumed the execution with a new fencing token.
    Resumed {
        /// New fencing token.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
    },
    /// A stage began (again, after a resume).
    StageStarted {
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// When.
        at_ms: u64,
    },
    /// An operation is about to be issued.
    Intent {
        /// Operation sequence number within the execution (1-based).
        seq: u64,
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// Step within the stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        step: usize,
        /// Store name.
        store: String,
        /// The exact operation, positions filled in.
        op: Operation,
        /// Fencing token it is issued under.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
    },
    /// An issued operation finished.
    Outcome {
        /// Sequence number of the intent.
        seq: u64,
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// Step within the stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        step: usize,
        /// Store name.
        store: String,
        /// When it finished.
        at_ms: u64,
        /// Wall time inside the controller, all attempts.
        duration_ms: u64,
        /// Attempts made (temporary errors are retried).
        attempts: u32,
        /// What happened.
        result: OpResult,
    },
    /// A stage's checkpoint held.
    CheckpointPassed {
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// When.
        at_ms: u64,
        /// Validation wall time.
        duration_ms: u64,
        /// Time spent inside `observe` calls.
        observe_ms: u64,
        /// Observations made.
        polls: u32,
        /// Wall time of the stage in this process, in microseconds.
        #[serde(default)]
        stage_wall_us: u64,
        /// Part of it the coordinator spent itself (journaling, deciding,
        /// scheduling), not waiting on a store, in microseconds.
        #[serde(default)]
        overhead_us: u64,
        /// What was observed, per store.
        observed: Vec<CheckpointObservation>,
    },
    /// A stage's checkpoint did not hold before the stage timed out.
    CheckpointFailed {
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// When.
        at_ms: u64,
        /// Validation wall time.
        duration_ms: u64,
        /// Time spent inside `observe` calls.
        observe_ms: u64,
        /// Observations made.
        polls: u32,
        /// Wall time of the stage in this process, in microseconds.
        #[serde(default)]
        stage_wall_us: u64,
        /// Part of it the coordinator spent itself (journaling, deciding,
        /// scheduling), not waiting on a store, in microseconds.
        #[serde(default)]
        overhead_us: u64,
        /// Expected against observed, per store.
        observed: Vec<CheckpointObservation>,
    },
    /// Every stage passed.
    Finished {
        /// When.
        at_ms: u64,
    },
    /// An operation outside the plan (abort undoing a fence), journaled
    /// before it is issued.
    ExtraIntent {
        /// Store name.
        store: String,
        /// The operation.
        op: Operation,
        /// Fencing token it is issued under.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
    },
    /// Outcome of an [`Record::ExtraIntent`].
    ExtraOutcome {
        /// Store name.
        store: String,
        /// When it finished.
        at_ms: u64,
        /// Wall time inside the controller.
        duration_ms: u64,
        /// What happened.
        result: OpResult,
    },
    /// A running operation reported progress a resumed coordinator needs to
    /// carry on with it (an ARM long-running operation's URL), so it polls
    /// that operation instead of starting another.
    Progress {
        /// Sequence number of the intent.
        seq: u64,
        /// Stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        stage: usize,
        /// Step within the stage (written 1-based).
        #[serde(with = "one_based")]
        #[schemars(with = "usize")]
        step: usize,
        /// Store name.
        store: String,
        /// When.
        at_ms: u64,
        /// Opaque to the coordinator; handed back to the controller.
        token: String,
    },
    /// An operator ended the execution.
    Aborted {
        /// Fencing token of the aborting coordinator.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
        /// State of every store at that moment.
        stores: Vec<StoreStatus>,
    },
    /// An operator closed an execution that can neither be resumed nor
    /// aborted (its journal is damaged, or a later execution superseded
    /// it), with the reason they gave. Nothing is issued for it afterwards.
    Closed {
        /// Fencing token of the coordinator that closed it.
        #[serde(alias = "epoch")]
        fencing_token: FencingToken,
        /// When.
        at_ms: u64,
        /// The operator's reason, as given.
        reason: String,
        /// What was wrong with the journal when it was closed
        /// (`file:line: message` per corrupt line; empty when superseded).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        damage: Vec<String>,
    },
    /// A gate was evaluated before a stage (see [`crate::gate`]).
    Gate(crate::gate::GateRecord),
    /// An execution or stage hook ran (see [`crate::stage_hook`]).
    Hook(crate::stage_hook::HookRecord),
    /// The execution needs a second person's approval before it runs
    /// (see [`crate::approval`]).
    ApprovalRequested(crate::approval::ApprovalRequest),
    /// Someone approved the execution, or tried to and was refused.
    Approval(crate::approval::ApprovalDecision),
    /// Who started the execution (the OS user of the CLI, or the holder
    /// of the API token that asked the server); journaled right after
    /// [`Record::Started`]. Older journals have none: unknown.
    StartedBy {
        /// When.
        at_ms: u64,
        /// Who.
        by: crate::approval::Identity,
    },
}

/// The sequence number the next intent of an execution gets: one past the
/// highest journaled so far, so a resumed execution never reuses one.
pub fn next_seq(records: &[Record]) -> u64 {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Intent { seq, .. } => Some(*seq),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        + 1
}

/// Errors reading or writing a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Filesystem failure.
    #[error("journal {path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// A complete record of the journal is not valid (bad checksum, not a
    /// record): the execution is damaged.
    #[error("journal {path}:{line}: corrupt record: {message}")]
    Corrupt {
        /// File concerned.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// No such execution.
    #[error("no execution `{0}`")]
    NotFound(String),
    /// A journal kept in a coordination backend refused the write: this
    /// coordinator is no longer the leader, or another one appended first.
    /// Nothing more may be issued under this leadership.
    #[error("journal of {execution}: write refused: {message}")]
    Fenced {
        /// Execution id.
        execution: String,
        /// What the backend said.
        message: String,
    },
    /// The coordination backend could not be reached.
    #[error("journal of {execution}: {message}")]
    Backend {
        /// Execution id (empty when listing).
        execution: String,
        /// What failed.
        message: String,
    },
}

/// One corrupt line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Damage {
    /// File concerned.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: corrupt record: {}",
            self.path, self.line, self.message
        )
    }
}

impl From<Damage> for JournalError {
    fn from(d: Damage) -> Self {
        JournalError::Corrupt {
            path: d.path,
            line: d.line,
            message: d.message,
        }
    }
}

/// Everything that could be read from one journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// The valid records, in file order (also those after a corrupt line).
    pub records: Vec<Record>,
    /// Every corrupt complete line.
    pub damage: Vec<Damage>,
}

/// An open journal of one execution, append only.
pub trait Journal: Send {
    /// Append a record; when this returns `Ok` the record is durable.
    fn append(&mut self, record: &Record) -> Result<(), JournalError>;

    /// Append a record that need not be durable yet: the next [`append`]
    /// makes it durable together with itself. Used for records whose loss a
    /// resume tolerates (an outcome: the operation is re-issued, and it is
    /// idempotent; a passed checkpoint: it is validated again), so that an
    /// operation costs one fsync instead of two.
    ///
    /// [`append`]: Journal::append
    fn append_lazy(&mut self, record: &Record) -> Result<(), JournalError> {
        self.append(record)
    }

    /// Make every record appended so far durable.
    fn sync(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// A journal whose next durable record (or sync) first waits for `gate`:
/// something that must be durable before anything is issued — a server's
/// running-execution record, which a new leader resumes from — is written
/// while the execution's read-only start runs, instead of before it. A gate
/// that reports a failure fails that record: the execution stops before
/// its first mutating intent. Needs Tokio's multi-thread runtime (where the
/// server runs), as the backend journals do.
pub struct Gated {
    inner: Box<dyn Journal>,
    execution: String,
    gate: Option<tokio::sync::oneshot::Receiver<Result<(), String>>>,
}

impl Gated {
    /// `inner`, its next durable record held back until `gate` says `Ok`.
    pub fn new(
        inner: Box<dyn Journal>,
        execution: &str,
        gate: tokio::sync::oneshot::Receiver<Result<(), String>>,
    ) -> Self {
        Gated {
            inner,
            execution: execution.into(),
            gate: Some(gate),
        }
    }

    fn pass(&mut self) -> Result<(), JournalError> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        let refused = |message: String| JournalError::Backend {
            execution: self.execution.clone(),
            message,
        };
        let handle = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .ok_or_else(|| refused("a gated journal needs Tokio's multi-thread runtime".into()))?;
        match tokio::task::block_in_place(|| handle.block_on(gate)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(refused(e)),
            Err(_) => Err(refused("what this journal waited for was dropped".into())),
        }
    }
}

impl Journal for Gated {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pass()?;
        self.inner.append(record)
    }

    fn append_lazy(&mut self, record: &Record) -> Result<(), JournalError> {
        self.inner.append_lazy(record)
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.pass()?;
        self.inner.sync()
    }
}

/// Where journals live; one per execution.
pub trait JournalStore: Send + Sync {
    /// Create the journal of a new execution with its first record
    /// (`started`) in it. The journal appears with that record durable or
    /// not at all, so a crash never leaves an empty journal behind. (The
    /// file store makes the new name itself durable with the journal's
    /// first sync: a power loss before it loses the whole journal, which
    /// until then records nothing issued to a store.)
    fn create(
        &self,
        execution_id: &str,
        started: &Record,
    ) -> Result<Box<dyn Journal>, JournalError>;
    /// Open an existing journal for appending (after a crash or for abort).
    fn open(&self, execution_id: &str) -> Result<Box<dyn Journal>, JournalError>;
    /// Every valid record of an execution and every corrupt line; fails
    /// only when the journal cannot be read at all.
    fn scan(&self, execution_id: &str) -> Result<Scan, JournalError>;
    /// Every execution id, oldest first.
    fn list(&self) -> Result<Vec<String>, JournalError>;

    /// Every record of an execution, in order; a corrupt line is an error
    /// naming the file and the line.
    fn read(&self, execution_id: &str) -> Result<Vec<Record>, JournalError> {
        let scan = self.scan(execution_id)?;
        match scan.damage.into_iter().next() {
            Some(d) => Err(d.into()),
            None => Ok(scan.records),
        }
    }
}

/// JSON-lines journals in a directory, fsync'd on every append.
#[derive(Debug, Clone)]
pub struct FileJournalStore {
    dir: PathBuf,
}

impl FileJournalStore {
    /// Journals under `<state_dir>/executions`.
    pub fn new(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("executions");
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(FileJournalStore { dir })
    }

    /// The directory holding the journals.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding an execution's journal.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.jsonl"))
    }
}

fn io_err(path: &Path, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Make a directory entry (a new file, a rename) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// CRC-32C of every journal line (shared with the controllers, which check
/// PostgreSQL's control file with it).
pub use switchyard_controller::crc32c;

/// The key every record line ends with.
const CRC_KEY: &str = ",\"crc32c\":\"";
/// `,"crc32c":"` + 8 hex digits + `"}`.
const CRC_SUFFIX_LEN: usize = CRC_KEY.len() + 8 + 2;

/// One journal line (with its newline): the record's JSON object with a
/// last key `crc32c`, the CRC-32C (8 lowercase hex digits) of the line's
/// bytes without that key — i.e. of the object exactly as serialised,
/// `{...}`. The checksum covers the bytes as written, so verifying it needs
/// no re-serialisation, and the line stays a JSON object `jq` can read.
pub fn encode_line(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = serde_json::to_vec(record)?;
    let crc = crc32c(&body);
    // A record is a JSON object: it ends with `}`.
    body.pop();
    body.extend_from_slice(format!("{CRC_KEY}{crc:08x}\"}}\n").as_bytes());
    Ok(body)
}

/// Decode one complete line (without its newline). `Ok((record, true))`
/// when it carried a valid checksum, `Ok((record, false))` for a record
/// written before journals had checksums.
fn decode_line(line: &[u8]) -> Result<(Record, bool), String> {
    let n = line.len();
    let has_crc = n > CRC_SUFFIX_LEN
        && line[n - CRC_SUFFIX_LEN..].starts_with(CRC_KEY.as_bytes())
        && line.ends_with(b"\"}");
    if !has_crc {
        return parse_record(line)
            .map(|r| (r, false))
            .map_err(|e| format!("not a journal record: {e}"));
    }
    let hex = &line[n - 10..n - 2];
    let want = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| "malformed checksum".to_string())?;
    let mut body = line[..n - CRC_SUFFIX_LEN].to_vec();
    body.push(b'}');
    let got = crc32c(&body);
    if got != want {
        return Err(format!(
            "checksum mismatch (recorded crc32c {want:08x}, content has {got:08x})"
        ));
    }
    parse_record(&body)
        .map(|r| (r, true))
        .map_err(|e| format!("checksum holds but the record is not valid: {e}"))
}

/// One record from its JSON object, in either vocabulary.
fn parse_record(bytes: &[u8]) -> Result<Record, serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    upgrade_legacy(&mut v);
    serde_json::from_value(v)
}

/// Bring a record written before the journal shared the events' vocabulary
/// into today's: it is named by `type` instead of `event`, and its stages
/// and steps count from 0. (Its `epoch` fields read through serde aliases.)
/// A record already named by `event` is left alone, so the two numberings
/// never mix: which one a line uses is told by the line itself.
pub fn upgrade_legacy(v: &mut serde_json::Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if obj.contains_key("event") {
        return;
    }
    let Some(name) = obj.remove("type") else {
        return;
    };
    obj.insert("event".into(), name);
    for key in ["stage", "step"] {
        if let Some(n) = obj.get(key).and_then(serde_json::Value::as_u64) {
            obj.insert(key.into(), (n + 1).into());
        }
    }
}

/// Stage and step numbers as the journal writes them: from 1, as every
/// screen, event and report counts them. In memory they stay 0-based
/// indexes into the plan, so code that walks a plan never adds or subtracts.
pub mod one_based {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Write index `i` as number `i + 1`.
    pub fn serialize<S: Serializer>(i: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*i as u64 + 1)
    }

    /// Read number `n` (from 1) as index `n - 1`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let n = u64::deserialize(d)?;
        n.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| D::Error::custom("stages and steps are numbered from 1"))
    }

    /// The same for an optional number.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Write `Some(i)` as `i + 1`.
        pub fn serialize<S: Serializer>(i: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
            match i {
                Some(i) => super::serialize(i, s),
                None => s.serialize_none(),
            }
        }

        /// Read a number from 1, or nothing.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] usize);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(i)| i))
        }
    }
}

/// Parse a journal's bytes. The bytes after the last newline are a torn
/// append (a crash mid-write: that record was never durable, nothing acted
/// on it) and are ignored. Every complete line must be a record: a corrupt
/// one is reported, never skipped. Lines without a checksum are accepted
/// only before the first line that has one (journals written before
/// checksums existed, then resumed by this version).
pub fn parse_journal(path: &str, bytes: &[u8]) -> Scan {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut scan = Scan::default();
    let mut checksummed = false;
    for (i, line) in bytes[..complete]
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
    {
        let line = &line[..line.len() - 1];
        let result = if line.iter().all(u8::is_ascii_whitespace) {
            Err("empty line".to_string())
        } else {
            decode_line(line)
        };
        match result {
            Ok((r, true)) => {
                checksummed = true;
                scan.records.push(r);
            }
            Ok((_, false)) if checksummed => scan.damage.push(Damage {
                path: path.into(),
                line: i + 1,
                message: "record without a checksum after checksummed records".into(),
            }),
            Ok((r, false)) => scan.records.push(r),
            Err(message) => scan.damage.push(Damage {
                path: path.into(),
                line: i + 1,
                message,
            }),
        }
    }
    scan
}

struct FileJournal {
    path: PathBuf,
    file: File,
    /// The directory whose entry for this journal (its creation's rename)
    /// is not durable yet: made durable by the next sync, before the first
    /// record that must be (see [`JournalStore::create`] of
    /// [`FileJournalStore`]).
    unsynced_dir: Option<PathBuf>,
}

impl FileJournal {
    fn write(&mut self, record: &Record) -> Result<(), JournalError> {
        let line = encode_line(record).map_err(|e| {
            io_err(
                &self.path,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        // One write of the whole line: a crash leaves at most one torn last
        // line, which readers ignore and `open` truncates.
        self.file
            .write_all(&line)
            .map_err(|e| io_err(&self.path, e))
    }
}

impl Journal for FileJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.write(record)?;
        self.sync()
    }

    fn append_lazy(&mut self, record: &Record) -> Result<(), JournalError> {
        self.write(record)
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| io_err(&self.path, e))?;
        if let Some(dir) = &self.unsynced_dir {
            sync_dir(dir).map_err(|e| io_err(dir, e))?;
            self.unsynced_dir = None;
        }
        Ok(())
    }
}

impl JournalStore for FileJournalStore {
    fn create(
        &self,
        execution_id: &str,
        started: &Record,
    ) -> Result<Box<dyn Journal>, JournalError> {
        let path = self.path(execution_id);
        if path.exists() {
            return Err(io_err(
                &path,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "execution ids are never reused",
                ),
            ));
        }
        // Written whole under a temporary name, then renamed: the journal
        // exists only once its start record is durable. (The caller holds
        // the execution lock, so nobody else writes this name meanwhile; a
        // `.tmp` left by a crash is not a journal and is overwritten here.)
        let tmp = self.dir.join(format!("{execution_id}.jsonl.tmp"));
        let line = encode_line(started).map_err(|e| {
            io_err(
                &tmp,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(&line)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        // The rename is made durable by the journal's first sync, not here:
        // that is the first record anything waits for (a mutating
        // operation's intent, at the latest), and until then a power loss
        // only loses a journal of read-only work — the whole journal, never
        // part of its first record, which is durable under either name.
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Box::new(FileJournal {
            path,
            file,
            unsynced_dir: Some(self.dir.clone()),
        }))
    }

    fn open(&self, execution_id: &str) -> Result<Box<dyn Journal>, JournalError> {
        let path = self.path(execution_id);
        if !path.exists() {
            return Err(JournalError::NotFound(execution_id.into()));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // Drop a torn last line left by a crash mid-append.
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut file, &mut buf).map_err(|e| io_err(&path, e))?;
        let keep = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < buf.len() {
            file.set_len(keep as u64).map_err(|e| io_err(&path, e))?;
            file.sync_data().map_err(|e| io_err(&path, e))?;
        }
        file.seek(SeekFrom::End(0)).map_err(|e| io_err(&path, e))?;
        Ok(Box::new(FileJournal {
            path,
            file,
            unsynced_dir: None,
        }))
    }

    fn scan(&self, execution_id: &str) -> Result<Scan, JournalError> {
        let path = self.path(execution_id);
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                JournalError::NotFound(execution_id.into())
            } else {
                io_err(&path, e)
            }
        })?;
        Ok(parse_journal(&path.display().to_string(), &bytes))
    }

    fn list(&self) -> Result<Vec<String>, JournalError> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .map_err(|e| io_err(&self.dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .map(str::to_string)
            })
            .collect();
        // Ids start with a UTC timestamp, so lexical order is start order.
        ids.sort();
        Ok(ids)
    }
}

/// Summary of an execution read from its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecutionSummary {
    /// Execution id: `execution_id`, as in the events, the reports and the
    /// other lines (`id` before; still read).
    #[serde(rename = "execution_id", alias = "id")]
    pub id: String,
    /// `failover`, `run`, `drill-out`, ...
    pub kind: String,
    /// Plan title.
    pub plan: String,
    /// `running or interrupted`, `failed`, `succeeded`, `aborted`.
    pub status: ExecutionStatus,
    /// Start time (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Time of the last record.
    pub last_at_ms: u64,
    /// Who started it (name), when the journal says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

/// Where an execution stands according to its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Not finished: still running, interrupted, or stopped by a failure; resumable.
    Unfinished,
    /// Journaled with its plan, waiting for a second person's approval
    /// (`switchyard approve ID`); nothing has been issued.
    PendingApproval,
    /// Stopped by a failed operation or checkpoint; resumable.
    Failed,
    /// Every stage passed.
    Succeeded,
    /// Ended by an operator.
    Aborted,
    /// Stopped by a precondition before any store was changed (readiness
    /// refused, a store not ready), and closed at once: nothing to resume.
    Refused,
    /// Closed by an operator (`switchyard executions close`).
    Closed,
    /// The journal holds no record: the execution never started (a crash
    /// while its journal was created, by a version that did not create it
    /// atomically). Nothing was issued for it.
    Empty,
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutionStatus::Unfinished => "unfinished",
            ExecutionStatus::PendingApproval => "pending_approval",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Aborted => "aborted",
            ExecutionStatus::Refused => "refused",
            ExecutionStatus::Closed => "closed",
            ExecutionStatus::Empty => "empty",
        })
    }
}

/// The `store` of the single entry of the `aborted` record that closes an
/// execution refused before it changed any store.
pub const REFUSED_MARK: &str = "*";

/// Summarise an execution from its records.
pub fn summarize(id: &str, records: &[Record]) -> ExecutionSummary {
    let mut s = ExecutionSummary {
        id: id.to_string(),
        kind: String::new(),
        plan: String::new(),
        status: if records.is_empty() {
            ExecutionStatus::Empty
        } else {
            ExecutionStatus::Unfinished
        },
        started_at_ms: 0,
        last_at_ms: 0,
        started_by: None,
    };
    let mut closed = false;
    for r in records {
        match r {
            Record::Started {
                kind, plan, at_ms, ..
            } => {
                s.kind = kind.clone();
                s.plan = plan.name.clone();
                s.started_at_ms = *at_ms;
            }
            Record::Finished { .. } => s.status = ExecutionStatus::Succeeded,
            Record::Aborted { stores, .. } => {
                s.status = if stores.len() == 1 && stores[0].store == REFUSED_MARK {
                    ExecutionStatus::Refused
                } else {
                    ExecutionStatus::Aborted
                }
            }
            Record::Closed { .. } => closed = true,
            Record::CheckpointFailed { .. }
            | Record::Outcome {
                result: OpResult::Err { .. },
                ..
            } => s.status = ExecutionStatus::Failed,
            Record::Resumed { .. } => s.status = ExecutionStatus::Unfinished,
            Record::ApprovalRequested(a) => {
                s.status = ExecutionStatus::PendingApproval;
                s.started_by.get_or_insert_with(|| a.requester.name.clone());
            }
            Record::StartedBy { by, .. } => s.started_by = Some(by.name.clone()),
            Record::Approval(a) if a.approved => s.status = ExecutionStatus::Unfinished,
            _ => {}
        }
        s.last_at_ms = s.last_at_ms.max(record_time(r));
    }
    if closed {
        // Nothing follows a close: whatever the records before it said.
        s.status = ExecutionStatus::Closed;
    }
    s
}

/// Timestamp of a record.
pub fn record_time(r: &Record) -> u64 {
    match r {
        Record::Started { at_ms, .. }
        | Record::Resumed { at_ms, .. }
        | Record::StageStarted { at_ms, .. }
        | Record::Intent { at_ms, .. }
        | Record::Outcome { at_ms, .. }
        | Record::CheckpointPassed { at_ms, .. }
        | Record::CheckpointFailed { at_ms, .. }
        | Record::ExtraIntent { at_ms, .. }
        | Record::ExtraOutcome { at_ms, .. }
        | Record::Progress { at_ms, .. }
        | Record::Finished { at_ms }
        | Record::Aborted { at_ms, .. }
        | Record::Closed { at_ms, .. } => *at_ms,
        Record::Gate(g) => g.at_ms,
        Record::Hook(h) => h.at_ms,
        Record::ApprovalRequested(a) => a.at_ms,
        Record::Approval(a) => a.at_ms,
        Record::StartedBy { at_ms, .. } => *at_ms,
    }
}

/// One execution as the ledger sees it: its summary, what is wrong with
/// its journal, and whether a later execution superseded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LedgerEntry {
    /// The summary of its valid records (`status` ignores the damage).
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    /// Every corrupt line of its journal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<Damage>,
    /// The next execution that started after it, if any. Resuming a
    /// superseded execution would undo what that one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Stores its plan changes (mutating steps); `None` when its start
    /// record cannot be read, so the stores it touched are unknown.
    #[serde(skip)]
    pub stores: Option<BTreeSet<String>>,
}

impl LedgerEntry {
    /// The journal has a corrupt line and no operator closed it.
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty() && self.summary.status != ExecutionStatus::Closed
    }

    /// What the records say is not an end (unfinished or failed).
    pub fn is_open(&self) -> bool {
        matches!(
            self.summary.status,
            ExecutionStatus::Unfinished | ExecutionStatus::Failed
        )
    }

    /// Holds something: a record other than a close, or damage. Only such
    /// an execution supersedes earlier ones.
    fn started(&self, records: &[Record]) -> bool {
        !self.damage.is_empty() || records.iter().any(|r| !matches!(r, Record::Closed { .. }))
    }

    /// Damaged, not closed, its records show no end, and nothing later
    /// superseded it: the stores it touched may be mid-failover, and no
    /// journal says how far it got.
    pub fn blocks(&self) -> bool {
        self.is_damaged() && self.is_open() && self.superseded_by.is_none()
    }

    /// The first corrupt line, as `file:line: message`.
    pub fn damage_note(&self) -> Option<String> {
        self.damage.first().map(|d| {
            if self.damage.len() > 1 {
                format!("{d} (and {} more corrupt lines)", self.damage.len() - 1)
            } else {
                d.to_string()
            }
        })
    }
}

/// Stores a plan changes (those with a mutating step).
pub fn plan_stores(plan: &Plan) -> BTreeSet<String> {
    plan.stages
        .iter()
        .flat_map(|st| &st.steps)
        .filter(|s| s.op.to_operation(None).is_some_and(|op| op.is_mutating()))
        .map(|s| s.store.clone())
        .collect()
}

/// The kind of every store `plan` names (steps and checkpoints), from
/// `topology`: what [`Record::Started`] journals as `store_kinds`.
pub fn plan_store_kinds(plan: &Plan, topology: &Topology) -> BTreeMap<String, StoreKind> {
    let named = plan.named_stores();
    topology
        .stores
        .iter()
        .filter(|s| named.contains(s.name.as_str()))
        .map(|s| (s.name.clone(), s.kind))
        .collect()
}

/// The store kinds the journal's start record holds (none for journals
/// written before they were recorded).
pub fn journaled_store_kinds(records: &[Record]) -> BTreeMap<String, StoreKind> {
    records
        .iter()
        .find_map(|r| match r {
            Record::Started { store_kinds, .. } => Some(store_kinds.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Every execution, oldest first, each with its damage and the execution
/// that superseded it. Never fails because one journal is corrupt.
pub fn ledger(store: &dyn JournalStore) -> Result<Vec<LedgerEntry>, JournalError> {
    let mut out: Vec<LedgerEntry> = vec![];
    let mut started = vec![];
    for id in store.list()? {
        let scan = store.scan(&id)?;
        let stores = scan.records.iter().find_map(|r| match r {
            Record::Started { plan, .. } => Some(plan_stores(plan)),
            _ => None,
        });
        let entry = LedgerEntry {
            summary: summarize(&id, &scan.records),
            damage: scan.damage,
            superseded_by: None,
            stores,
        };
        started.push(entry.started(&scan.records));
        out.push(entry);
    }
    let mut later: Option<String> = None;
    for (entry, started) in out.iter_mut().zip(started).rev() {
        entry.superseded_by = later.clone();
        if started {
            later = Some(entry.summary.id.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Record {
        Record::Started {
            execution_id: "x".into(),
            fencing_token: switchyard_controller::FencingToken(1),
            at_ms: 5,
            kind: "run".into(),
            topology_file: "t.toml".into(),
            store_kinds: Default::default(),
            plan: Plan {
                on_failure: None,
                version: 1,
                name: "p".into(),
                topology: "t".into(),
                target_region: "west".into(),
                mode: crate::plan::Mode::Planned,
                depends_on: Default::default(),
                stages: vec![],
            },
        }
    }

    #[test]
    fn append_read_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        let mut j = store.create("2026-x", &started()).unwrap();
        j.append(&Record::Finished { at_ms: 9 }).unwrap();
        drop(j);
        assert_eq!(store.read("2026-x").unwrap().len(), 2);
        // Simulate a crash mid-append.
        let path = dir.path().join("executions/2026-x.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"resu").unwrap();
        drop(f);
        assert_eq!(store.read("2026-x").unwrap().len(), 2);
        let mut j = store.open("2026-x").unwrap();
        j.append(&Record::Resumed {
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 10,
        })
        .unwrap();
        let recs = store.read("2026-x").unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[2],
            Record::Resumed {
                fencing_token: switchyard_controller::FencingToken(2),
                at_ms: 10
            }
        );
        assert_eq!(store.list().unwrap(), vec!["2026-x".to_string()]);
        assert!(
            store.create("2026-x", &started()).is_err(),
            "ids are never reused"
        );
        assert!(matches!(store.read("nope"), Err(JournalError::NotFound(_))));
    }

    /// A journal from before error kinds were data (`"kind":"LagTooHigh"`,
    /// no member) reads back as the typed kind, checksum and all.
    #[test]
    fn an_error_kind_journaled_as_text_reads_as_its_kind() {
        let body = r#"{"type":"outcome","seq":3,"stage":1,"step":0,"store":"orders","at_ms":1,"duration_ms":2,"attempts":1,"result":{"status":"err","kind":"LagTooHigh","temporary":false,"message":"orders: LagTooHigh: 9 MB behind"}}"#;
        let mut line = body.as_bytes()[..body.len() - 1].to_vec();
        line.extend_from_slice(
            format!("{CRC_KEY}{:08x}\"}}\n", crc32c(body.as_bytes())).as_bytes(),
        );
        let scan = parse_journal("old.jsonl", &line);
        assert!(scan.damage.is_empty(), "{:?}", scan.damage);
        match &scan.records[..] {
            [Record::Outcome {
                result: OpResult::Err {
                    kind, member: None, ..
                },
                ..
            }] => assert_eq!(*kind, ErrorKind::LagTooHigh),
            other => panic!("{other:?}"),
        }
        // Written now, the kind is data by name and the member is kept.
        let e = Error::new(ErrorKind::Unreachable, "orders", "down").with_member("pg-east-1");
        let text = serde_json::to_string(&OpResult::of_error(&e)).unwrap();
        assert!(text.contains(r#""kind":"unreachable""#), "{text}");
        assert!(text.contains(r#""member":"pg-east-1""#), "{text}");
        assert!(text.contains(r#""temporary":true"#), "{text}");
    }

    /// A kind this version does not know is damage with a clear message,
    /// never a guess.
    #[test]
    fn an_unknown_error_kind_is_reported_not_guessed() {
        let body = r#"{"type":"outcome","seq":3,"stage":1,"step":0,"store":"orders","at_ms":1,"duration_ms":2,"attempts":1,"result":{"status":"err","kind":"Gremlins","temporary":false,"message":"?"}}"#;
        let mut line = body.as_bytes()[..body.len() - 1].to_vec();
        line.extend_from_slice(
            format!("{CRC_KEY}{:08x}\"}}\n", crc32c(body.as_bytes())).as_bytes(),
        );
        let scan = parse_journal("new.jsonl", &line);
        assert_eq!(scan.damage.len(), 1);
        assert!(
            scan.damage[0].message.contains("Gremlins"),
            "{:?}",
            scan.damage
        );
    }

    #[test]
    fn the_documented_example_line() {
        let line = encode_line(&Record::Resumed {
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 1_795_437_296_123,
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"event\":\"resumed\",\"fencing_token\":2,\"at_ms\":1795437296123,\"crc32c\":\"edea707d\"}\n"
        );
    }

    /// The same record as the version before the shared vocabulary wrote
    /// it (docs/coordinator.md showed this line) reads the same.
    #[test]
    fn the_line_an_older_version_wrote_reads_the_same() {
        let old =
            "{\"type\":\"resumed\",\"epoch\":2,\"at_ms\":1795437296123,\"crc32c\":\"bbcaf36b\"}";
        assert_eq!(
            decode_line(old.as_bytes()).unwrap(),
            (
                Record::Resumed {
                    fencing_token: switchyard_controller::FencingToken(2),
                    at_ms: 1_795_437_296_123,
                },
                true
            )
        );
        // Stages and steps of an old line count from 0; today's from 1.
        let old = r#"{"type":"stage_started","stage":0,"at_ms":5}"#;
        let new = r#"{"event":"stage_started","stage":1,"at_ms":5}"#;
        let want = Record::StageStarted { stage: 0, at_ms: 5 };
        assert_eq!(decode_line(old.as_bytes()).unwrap().0, want);
        assert_eq!(decode_line(new.as_bytes()).unwrap().0, want);
        assert_eq!(serde_json::to_string(&want).unwrap(), new);
        // A stage 0 in today's vocabulary is not a record.
        assert!(decode_line(br#"{"event":"stage_started","stage":0,"at_ms":5}"#).is_err());
    }

    #[test]
    fn every_line_carries_a_checksum_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        drop(store.create("c", &started()).unwrap());
        let text = fs::read_to_string(dir.path().join("executions/c.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        let crc = v["crc32c"].as_str().unwrap();
        let body = serde_json::to_string(&started()).unwrap();
        assert_eq!(crc, format!("{:08x}", crc32c(body.as_bytes())));
        assert_eq!(v["event"], "started");
    }

    #[test]
    fn corrupt_complete_lines_are_damage_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        let mut j = store.create("bad", &started()).unwrap();
        j.append(&Record::Resumed {
            fencing_token: switchyard_controller::FencingToken(2),
            at_ms: 7,
        })
        .unwrap();
        j.append(&Record::Finished { at_ms: 9 }).unwrap();
        drop(j);
        let path = dir.path().join("executions/bad.jsonl");
        // One flipped digit inside the second record: still valid JSON, so
        // only the checksum can tell.
        let text = fs::read_to_string(&path).unwrap();
        let bad = text.replacen("\"fencing_token\":2", "\"fencing_token\":3", 1);
        assert_ne!(bad, text);
        fs::write(&path, &bad).unwrap();
        let e = store.read("bad").unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:2"), "{e}");
        assert!(e.contains("checksum mismatch"), "{e}");
        let scan = store.scan("bad").unwrap();
        assert_eq!(scan.records.len(), 2, "the records around it still read");
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].line, 2);
        // A corrupt *complete* last line is damage too, not a torn append.
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{\"event\":\"finished\",\"at_ms\":9,\"crc32c\":\"00000000\"}";
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let scan = store.scan("bad").unwrap();
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].line, 3, "{:?}", scan.damage);
        // Garbage and an empty line in the middle.
        let good = String::from_utf8(encode_line(&started()).unwrap()).unwrap();
        fs::write(&path, format!("{good}garbage\n\n{good}")).unwrap();
        let scan = store.scan("bad").unwrap();
        let lines: Vec<usize> = scan.damage.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 3]);
    }

    #[test]
    fn journals_without_checksums_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        let path = dir.path().join("executions/old.jsonl");
        let legacy = serde_json::to_string(&started()).unwrap();
        fs::write(&path, format!("{legacy}\n")).unwrap();
        assert_eq!(store.read("old").unwrap(), vec![started()]);
        // Resumed by this version: new records carry checksums...
        store
            .open("old")
            .unwrap()
            .append(&Record::Resumed {
                fencing_token: switchyard_controller::FencingToken(2),
                at_ms: 3,
            })
            .unwrap();
        assert_eq!(store.read("old").unwrap().len(), 2);
        // ...and a record without one after them is damage.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"finished\",\"at_ms\":4}\n")
            .unwrap();
        drop(f);
        let e = store.read("old").unwrap_err().to_string();
        assert!(e.contains("old.jsonl:3"), "{e}");
    }

    #[test]
    fn empty_and_half_created_journals_are_empty_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        let exec = dir.path().join("executions");
        fs::write(exec.join("a.jsonl"), b"").unwrap();
        fs::write(exec.join("b.jsonl"), b"{\"type\":\"star").unwrap();
        fs::write(exec.join("c.jsonl.tmp"), b"{").unwrap();
        assert_eq!(store.list().unwrap(), vec!["a", "b"]);
        for id in ["a", "b"] {
            let scan = store.scan(id).unwrap();
            assert_eq!(scan, Scan::default(), "{id}");
            assert_eq!(summarize(id, &scan.records).status, ExecutionStatus::Empty);
        }
        let l = ledger(&store).unwrap();
        assert!(l.iter().all(|e| !e.blocks() && e.superseded_by.is_none()));
    }

    #[test]
    fn ledger_marks_damage_and_supersession() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        for id in ["1-old", "2-mid", "3-new"] {
            drop(store.create(id, &started()).unwrap());
        }
        fs::write(dir.path().join("executions/4-empty.jsonl"), b"").unwrap();
        let path = dir.path().join("executions/3-new.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not a record\n").unwrap();
        drop(f);
        let l = ledger(&store).unwrap();
        let by: Vec<Option<&str>> = l.iter().map(|e| e.superseded_by.as_deref()).collect();
        assert_eq!(by, vec![Some("2-mid"), Some("3-new"), None, None]);
        assert!(l[2].is_damaged() && l[2].blocks());
        assert!(l[2].damage_note().unwrap().contains("3-new.jsonl:2"));
        assert!(!l[0].blocks() && !l[0].is_damaged());
        // Closing ends it, and the close is itself a checksummed record.
        store
            .open("3-new")
            .unwrap()
            .append(&Record::Closed {
                fencing_token: switchyard_controller::FencingToken(9),
                at_ms: 1,
                reason: "checked by hand".into(),
                damage: vec![l[2].damage_note().unwrap()],
            })
            .unwrap();
        let l = ledger(&store).unwrap();
        assert_eq!(l[2].summary.status, ExecutionStatus::Closed);
        assert!(!l[2].blocks() && !l[2].is_damaged());
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_437_296_123), "2026-11-23T12:34:56.123Z");
    }
}
