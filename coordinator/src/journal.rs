//! The execution journal: an append-only log of what the coordinator decided,
//! issued and observed. A record is durable (fsync'd) before the action it
//! describes happens, so a coordinator that dies at any instant can be
//! resumed from the journal alone.
//!
//! The [`JournalStore`] trait keeps the storage replaceable (Consul KV, etcd);
//! [`FileJournalStore`] is the embedded default: one JSON-lines file per
//! execution under `<state-dir>/executions/`.

use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_controller::{Operation, Outcome};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum OpResult {
    /// The controller carried the operation out.
    Ok {
        /// What it produced.
        outcome: Outcome,
    },
    /// The controller failed.
    Err {
        /// Error class (`LagTooHigh`, `Unreachable`, ...).
        kind: String,
        /// Whether retrying could help.
        temporary: bool,
        /// The full error text.
        message: String,
    },
}

/// What one store looked like when a checkpoint ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Store epoch (timeline/term) observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// One store's state when an execution was aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Store name.
    pub store: String,
    /// Human summary (`primary pg-west in west, 2/3 members healthy`).
    pub summary: String,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Record {
    /// An execution began.
    Started {
        /// Execution id.
        execution_id: String,
        /// Fencing epoch of the coordinator that started it.
        epoch: u64,
        /// When.
        at_ms: u64,
        /// `failover`, `run`, `drill-out`, `drill-back`.
        kind: String,
        /// Topology file used.
        topology_file: String,
        /// The full plan, so resume needs nothing else.
        plan: Plan,
    },
    /// A coordinator resumed the execution with a new epoch.
    Resumed {
        /// New fencing epoch.
        epoch: u64,
        /// When.
        at_ms: u64,
    },
    /// A stage began (again, after a resume).
    StageStarted {
        /// Stage index.
        stage: usize,
        /// When.
        at_ms: u64,
    },
    /// An operation is about to be issued.
    Intent {
        /// Operation sequence number within the execution (1-based).
        seq: u64,
        /// Stage index.
        stage: usize,
        /// Step index within the stage.
        step: usize,
        /// Store name.
        store: String,
        /// The exact operation, positions filled in.
        op: Operation,
        /// Fencing epoch it is issued under.
        epoch: u64,
        /// When.
        at_ms: u64,
    },
    /// An issued operation finished.
    Outcome {
        /// Sequence number of the intent.
        seq: u64,
        /// Stage index.
        stage: usize,
        /// Step index within the stage.
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
        /// Stage index.
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
        /// Stage index.
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
        /// Fencing epoch.
        epoch: u64,
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
    /// An operator ended the execution.
    Aborted {
        /// Epoch of the aborting coordinator.
        epoch: u64,
        /// When.
        at_ms: u64,
        /// State of every store at that moment.
        stores: Vec<StoreStatus>,
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
    /// A record in the middle of the journal is not valid.
    #[error("journal {path}:{line}: corrupt record: {message}")]
    Corrupt {
        /// File concerned.
        path: String,
        /// 1-based line.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// No such execution.
    #[error("no execution `{0}`")]
    NotFound(String),
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

/// Where journals live; one per execution.
pub trait JournalStore: Send + Sync {
    /// Create the journal of a new execution.
    fn create(&self, execution_id: &str) -> Result<Box<dyn Journal>, JournalError>;
    /// Open an existing journal for appending (after a crash or for abort).
    fn open(&self, execution_id: &str) -> Result<Box<dyn Journal>, JournalError>;
    /// Every record of an execution, in order.
    fn read(&self, execution_id: &str) -> Result<Vec<Record>, JournalError>;
    /// Every execution id, oldest first.
    fn list(&self) -> Result<Vec<String>, JournalError>;
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

    fn path(&self, id: &str) -> PathBuf {
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

struct FileJournal {
    path: PathBuf,
    file: File,
}

impl Journal for FileJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records always serialise");
        line.push(b'\n');
        // One write of the whole line: a crash leaves at most one torn last
        // line, which readers skip and `open` truncates.
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, e))
    }

    fn append_lazy(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records always serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| io_err(&self.path, e))
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| io_err(&self.path, e))
    }
}

impl JournalStore for FileJournalStore {
    fn create(&self, execution_id: &str) -> Result<Box<dyn Journal>, JournalError> {
        let path = self.path(execution_id);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        sync_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        Ok(Box::new(FileJournal { path, file }))
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
        Ok(Box::new(FileJournal { path, file }))
    }

    fn read(&self, execution_id: &str) -> Result<Vec<Record>, JournalError> {
        let path = self.path(execution_id);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                JournalError::NotFound(execution_id.into())
            } else {
                io_err(&path, e)
            }
        })?;
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(&path, e))?;
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(r) => out.push(r),
                // A torn final line is a crash mid-append: that record was
                // never durable, so nothing acted on it.
                Err(_) if i + 1 == lines.len() => break,
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.display().to_string(),
                        line: i + 1,
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(out)
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionSummary {
    /// Execution id.
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
}

/// Where an execution stands according to its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Not finished: still running, interrupted, or stopped by a failure; resumable.
    Unfinished,
    /// Stopped by a failed operation or checkpoint; resumable.
    Failed,
    /// Every stage passed.
    Succeeded,
    /// Ended by an operator.
    Aborted,
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutionStatus::Unfinished => "unfinished",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Aborted => "aborted",
        })
    }
}

/// Summarise an execution from its records.
pub fn summarize(id: &str, records: &[Record]) -> ExecutionSummary {
    let mut s = ExecutionSummary {
        id: id.to_string(),
        kind: String::new(),
        plan: String::new(),
        status: ExecutionStatus::Unfinished,
        started_at_ms: 0,
        last_at_ms: 0,
    };
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
            Record::Aborted { .. } => s.status = ExecutionStatus::Aborted,
            Record::CheckpointFailed { .. }
            | Record::Outcome {
                result: OpResult::Err { .. },
                ..
            } => s.status = ExecutionStatus::Failed,
            Record::Resumed { .. } => s.status = ExecutionStatus::Unfinished,
            _ => {}
        }
        s.last_at_ms = s.last_at_ms.max(record_time(r));
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
        | Record::Finished { at_ms }
        | Record::Aborted { at_ms, .. } => *at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Record {
        Record::Started {
            execution_id: "x".into(),
            epoch: 1,
            at_ms: 5,
            kind: "run".into(),
            topology_file: "t.toml".into(),
            plan: Plan {
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
        let mut j = store.create("2026-x").unwrap();
        j.append(&started()).unwrap();
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
            epoch: 2,
            at_ms: 10,
        })
        .unwrap();
        let recs = store.read("2026-x").unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[2],
            Record::Resumed {
                epoch: 2,
                at_ms: 10
            }
        );
        assert_eq!(store.list().unwrap(), vec!["2026-x".to_string()]);
        assert!(store.create("2026-x").is_err(), "ids are never reused");
        assert!(matches!(store.read("nope"), Err(JournalError::NotFound(_))));
    }

    #[test]
    fn corrupt_middle_line_is_an_error_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileJournalStore::new(dir.path()).unwrap();
        let path = dir.path().join("executions/bad.jsonl");
        let good = serde_json::to_string(&started()).unwrap();
        fs::write(&path, format!("{good}\ngarbage\n{good}\n")).unwrap();
        let e = store.read("bad").unwrap_err();
        assert!(e.to_string().contains("bad.jsonl:2"), "{e}");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_437_296_123), "2026-11-23T12:34:56.123Z");
    }
}
