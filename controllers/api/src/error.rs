//! One public error type for every controller. Backends keep private error
//! enums and convert into this, naming the store and (where known) the member.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Result alias used by every controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure; callers branch on these, not on messages.
/// Journaled as data by name (`"lag_too_high"`); a journal written before
/// kinds were data spelled them `"LagTooHigh"`, which still reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A member could not be reached (network, refused, timeout). Temporary.
    #[serde(alias = "Unreachable")]
    Unreachable,
    /// The store is not (yet) in a state that allows the operation. Temporary.
    #[serde(alias = "NotReady")]
    NotReady,
    /// The promotion target lags beyond the store's bound. Permanent unless
    /// data loss is accepted.
    #[serde(alias = "LagTooHigh")]
    LagTooHigh,
    /// The store refused the operation (permission, config conflict). Permanent.
    #[serde(alias = "Refused")]
    Refused,
    /// The topology or connection configuration is wrong. Permanent.
    #[serde(alias = "Config")]
    Config,
    /// The store answered something we do not understand. Permanent.
    #[serde(alias = "Protocol")]
    Protocol,
    /// Waited and the condition did not become true. Temporary.
    #[serde(alias = "Timeout")]
    Timeout,
    /// The controller does not support this operation. Permanent.
    #[serde(alias = "Unsupported")]
    Unsupported,
    /// A host hook (stop/start/rewind command) failed. Permanent.
    #[serde(alias = "Hook")]
    Hook,
}

impl ErrorKind {
    /// Whether retrying the same call later can help.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::Unreachable | ErrorKind::NotReady | ErrorKind::Timeout
        )
    }
}

/// A controller failure, naming the store and member.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    store: String,
    member: Option<String>,
    message: String,
    temporary: Option<bool>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` in `store`.
    pub fn new(kind: ErrorKind, store: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            store: store.into(),
            member: None,
            message: message.into(),
            temporary: None,
            source: None,
        }
    }

    /// Override whether retrying can help (a controller's error policy
    /// knows better than the kind's default).
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.temporary = Some(temporary);
        self
    }

    /// Name the member concerned.
    pub fn with_member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }

    /// Keep the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying can help.
    pub fn is_temporary(&self) -> bool {
        self.temporary.unwrap_or(self.kind.is_temporary())
    }

    /// Store name.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Member name, when the failure concerns one member.
    pub fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// The message without store/member prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as data, for the journal and for progress events.
    pub fn record(&self) -> ErrorRecord {
        ErrorRecord {
            kind: self.kind,
            store: self.store.clone(),
            member: self.member.clone(),
            temporary: self.is_temporary(),
            message: self.to_string(),
        }
    }
}

/// A controller error as data: what the journal keeps of an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Class of failure.
    pub kind: ErrorKind,
    /// Store concerned.
    pub store: String,
    /// Member concerned, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Whether retrying could help.
    pub temporary: bool,
    /// The full error text (store, member, kind, message, cause).
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.store)?;
        if let Some(m) = &self.member {
            write!(f, "/{m}")?;
        }
        write!(f, ": {:?}: {}", self.kind, self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
