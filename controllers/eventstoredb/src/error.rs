//! The backend's private error, folded into the public
//! [`switchyard_controller::Error`] at the trait boundary.

use switchyard_controller::{Error, ErrorKind};
use tonic::Code as tonic_code;

/// What can go wrong inside the EventStoreDB controller.
#[derive(Debug)]
pub struct EsdbError {
    kind: ErrorKind,
    member: Option<String>,
    message: String,
}

impl EsdbError {
    /// A classified error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EsdbError {
            kind,
            member: None,
            message: message.into(),
        }
    }

    /// A configuration error naming the field.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Config,
            format!("{} {}", field.into(), message.into()),
        )
    }

    /// Name the member concerned.
    pub fn member(mut self, name: &str) -> Self {
        self.member = Some(name.to_string());
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Classify an official-client error.
    pub fn client(what: &str, e: kurrentdb::Error) -> Self {
        use kurrentdb::Error as K;
        let kind = match &e {
            K::NotLeaderException(_) | K::ServerError(_) | K::DeadlineExceeded => {
                ErrorKind::NotReady
            }
            K::ConnectionClosed | K::GrpcConnectionError(_) => ErrorKind::Unreachable,
            // A connection to a node that went away surfaces as a cancelled
            // or unavailable call; the client rediscovers on the next one.
            K::Grpc {
                code: tonic_code::Cancelled | tonic_code::Unavailable | tonic_code::Unknown,
                ..
            } => ErrorKind::Unreachable,
            K::AccessDenied => ErrorKind::Refused,
            K::WrongExpectedVersion { .. } => ErrorKind::Refused,
            K::UnsupportedFeature => ErrorKind::Unsupported,
            _ => ErrorKind::Protocol,
        };
        Self::new(kind, format!("{what}: {e}"))
    }

    /// Classify an HTTP error.
    pub fn http(what: &str, e: reqwest::Error) -> Self {
        let kind = if e.is_connect() || e.is_timeout() || e.is_request() {
            ErrorKind::Unreachable
        } else {
            ErrorKind::Protocol
        };
        Self::new(kind, format!("{what}: {e}"))
    }

    /// Convert into the public error of `store`.
    pub fn into_error(self, store: &str) -> Error {
        let e = Error::new(self.kind, store, self.message);
        match self.member {
            Some(m) => e.with_member(m),
            None => e,
        }
    }
}

impl std::fmt::Display for EsdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(m) = &self.member {
            write!(f, "{m}: ")?;
        }
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for EsdbError {}
