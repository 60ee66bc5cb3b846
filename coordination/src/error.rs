//! Coordination errors as typed data: the server maps them to status codes
//! (`Busy` → 409, `NotLeader` → redirect to the leader, `Unavailable` → 503)
//! and the executor stops issuing on `NotLeader` without guessing.

use crate::RunningExecution;

/// Class of a [`CoordinationError`], for metrics and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`CoordinationError::NotLeader`].
    NotLeader,
    /// See [`CoordinationError::SeqTaken`].
    SeqTaken,
    /// See [`CoordinationError::Busy`].
    Busy,
    /// See [`CoordinationError::Changed`].
    Changed,
    /// See [`CoordinationError::NotFound`].
    NotFound,
    /// See [`CoordinationError::Unavailable`].
    Unavailable,
    /// See [`CoordinationError::Invalid`].
    Invalid,
}

/// Why a coordination call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinationError {
    /// The leadership used is not (or no longer) the backend's current one:
    /// its lease lapsed, was revoked, or another server won since. The
    /// caller must stop issuing operations under it.
    #[error("{backend}: not the leader (token {token}): {reason}")]
    NotLeader {
        /// The backend ([`crate::Coordinator::describe`]).
        backend: String,
        /// The token of the leadership that was refused.
        token: u64,
        /// What the backend said (lease expired, key owned by another session, ...).
        reason: String,
    },
    /// Journal entry `seq` of `execution` already exists, or an earlier one
    /// is missing: another writer appended. Re-read the journal.
    #[error("journal of {execution}: entry {seq} cannot be appended: {reason}")]
    SeqTaken {
        /// Execution id.
        execution: String,
        /// Sequence number that was refused.
        seq: u64,
        /// `entry exists` or `entry N-1 missing`.
        reason: String,
    },
    /// Another execution is recorded as running.
    #[error("execution {} is running (started by {}, token {})", running.id, running.node, running.token)]
    Busy {
        /// The running one.
        running: RunningExecution,
    },
    /// A compare-and-set lost: the value changed since it was read.
    #[error("{what} changed concurrently; read it again")]
    Changed {
        /// What changed.
        what: String,
    },
    /// Nothing stored under that name.
    #[error("{what}: not found")]
    NotFound {
        /// What was looked for (`execution 20261201T…`).
        what: String,
    },
    /// The backend could not be reached or answered an error that retrying
    /// can cure (timeout, no quorum, connection refused).
    #[error("{backend}: unavailable: {message}")]
    Unavailable {
        /// The backend.
        backend: String,
        /// What failed.
        message: String,
    },
    /// A request or a stored value is not valid (bad backend URL, a record
    /// in the backend that does not parse). Not temporary.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the key or argument.
        message: String,
    },
}

impl CoordinationError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoordinationError::NotLeader { .. } => ErrorKind::NotLeader,
            CoordinationError::SeqTaken { .. } => ErrorKind::SeqTaken,
            CoordinationError::Busy { .. } => ErrorKind::Busy,
            CoordinationError::Changed { .. } => ErrorKind::Changed,
            CoordinationError::NotFound { .. } => ErrorKind::NotFound,
            CoordinationError::Unavailable { .. } => ErrorKind::Unavailable,
            CoordinationError::Invalid { .. } => ErrorKind::Invalid,
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            CoordinationError::Unavailable { .. } | CoordinationError::Changed { .. }
        )
    }
}
