//! The backend's private error, converted into the one public
//! [`switchyard_controller::Error`] at the trait boundary.

use switchyard_controller::{Error, ErrorKind};

/// What can go wrong inside the Redis controller.
#[derive(Debug)]
pub enum RedisError {
    /// Bad topology / connection settings.
    Config {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The client failed talking to a member or Sentinel.
    Client {
        /// Member (or Sentinel) concerned.
        member: String,
        /// What was being done.
        what: String,
        /// The client error.
        source: redis::RedisError,
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

impl RedisError {
    /// A classified error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RedisError::Other {
            kind,
            member: None,
            message: message.into(),
        }
    }

    /// Name the member.
    pub fn member(mut self, name: &str) -> Self {
        match &mut self {
            RedisError::Other { member, .. } => *member = Some(name.to_string()),
            RedisError::Client { member, .. } => *member = name.to_string(),
            RedisError::Config { .. } => {}
        }
        self
    }

    /// Whether the member answered at all (a refusal, not a broken link).
    pub fn answered(&self) -> bool {
        matches!(self, RedisError::Client { source, .. } if source.kind() != redis::ErrorKind::IoError && !source.is_timeout() && !source.is_connection_dropped() && !source.is_connection_refusal())
    }

    /// Convert into the public error of `store`.
    pub fn into_error(self, store: &str) -> Error {
        match self {
            RedisError::Config { field, message } => {
                Error::new(ErrorKind::Config, store, format!("{field} {message}"))
            }
            RedisError::Client {
                member,
                what,
                source,
            } => {
                let kind = classify(&source);
                Error::new(kind, store, what)
                    .with_member(member)
                    .with_source(source)
            }
            RedisError::Other {
                kind,
                member,
                message,
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

fn classify(e: &redis::RedisError) -> ErrorKind {
    use redis::ErrorKind as K;
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
    {
        return ErrorKind::Unreachable;
    }
    match e.kind() {
        // LOADING, BUSY, TRYAGAIN, MASTERDOWN: the server is changing state.
        K::BusyLoadingError | K::TryAgain | K::MasterDown => ErrorKind::NotReady,
        K::AuthenticationFailed | K::ReadOnly | K::NoScriptError => ErrorKind::Refused,
        K::TypeError | K::ParseError => ErrorKind::Protocol,
        _ => match e.code() {
            Some("INPROG") | Some("NOREPLICAS") => ErrorKind::NotReady,
            Some("NOGOODSLAVE") | Some("NOPERM") | Some("NOAUTH") => ErrorKind::Refused,
            _ => ErrorKind::Refused,
        },
    }
}
