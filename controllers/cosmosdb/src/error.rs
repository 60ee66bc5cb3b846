//! The backend's private error, folded into the public
//! [`switchyard_controller::Error`] at the trait boundary.

use std::time::Duration;
use switchyard_controller::{Error, ErrorKind};

/// What can go wrong inside the Cosmos DB controller.
#[derive(Debug)]
pub enum CosmosError {
    /// Bad topology / connection settings.
    Config {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// ARM or the token endpoint answered with an error status.
    Arm {
        /// HTTP status.
        status: u16,
        /// ARM error code, when the body had one.
        code: Option<String>,
        /// Message (never a secret: ARM messages and our own text only).
        message: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// A request never got an answer.
    Transport {
        /// What was being done.
        what: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// A classified failure with a message.
    Other {
        /// Class.
        kind: ErrorKind,
        /// Member concerned.
        member: Option<String>,
        /// Message.
        message: String,
    },
}

impl CosmosError {
    /// A classified error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CosmosError::Other {
            kind,
            member: None,
            message: message.into(),
        }
    }

    /// A configuration error naming the field.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        CosmosError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Name the member concerned.
    pub fn member(mut self, name: &str) -> Self {
        if let CosmosError::Other { member, .. } = &mut self {
            *member = Some(name.to_string());
        }
        self
    }

    /// How ARM statuses map onto the contract: 401/403 are permanent (the
    /// identity lacks a role), 409/412 (another operation holds the
    /// account's lock)/429/5xx are temporary.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CosmosError::Config { .. } => ErrorKind::Config,
            CosmosError::Arm { status, .. } => match status {
                401 | 403 => ErrorKind::Refused,
                404 => ErrorKind::Config,
                409 | 412 | 429 => ErrorKind::NotReady,
                s if *s >= 500 => ErrorKind::Unreachable,
                _ => ErrorKind::Refused,
            },
            CosmosError::Transport { .. } => ErrorKind::Unreachable,
            CosmosError::Other { kind, .. } => *kind,
        }
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    /// Into the public error of `store`.
    pub fn into_error(self, store: &str) -> Error {
        let kind = self.kind();
        match self {
            CosmosError::Config { field, message } => {
                Error::new(kind, store, format!("field `{field}`: {message}"))
            }
            CosmosError::Arm {
                status,
                code,
                message,
                retry_after,
            } => {
                let mut m = format!("ARM {status}");
                if let Some(c) = code {
                    m.push_str(&format!(" {c}"));
                }
                m.push_str(&format!(": {message}"));
                if let Some(r) = retry_after {
                    m.push_str(&format!(" (Retry-After {}s)", r.as_secs()));
                }
                if matches!(status, 401 | 403) {
                    m.push_str(ROLE_HINT);
                }
                Error::new(kind, store, m)
            }
            CosmosError::Transport { what, source } => {
                Error::new(kind, store, what).with_source(source)
            }
            CosmosError::Other {
                member, message, ..
            } => {
                let e = Error::new(kind, store, message);
                match member {
                    Some(m) => e.with_member(m),
                    None => e,
                }
            }
        }
    }
}

/// What an identity needs on the account, said with every 401/403.
pub const ROLE_HINT: &str = "; the identity needs Microsoft.DocumentDB/databaseAccounts/read, \
failoverPriorityChange/action, offlineRegion/action and onlineRegion/action on the account \
(the built-in `DocumentDB Account Contributor` role has them; `Cosmos DB Account Reader Role` \
only reads)";

/// Result alias inside the crate.
pub type CResult<T> = std::result::Result<T, CosmosError>;
