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
}

impl RedisError {
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
        }
    }
}

fn classify(e: &redis::RedisError) -> ErrorKind {
    use redis::ErrorKind as K;
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
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
