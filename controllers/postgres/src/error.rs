//! The backend's private failure classes, converted into the one public
//! [`switchyard_controller::Error`] at the edge (object_store style).

use crate::tls::{self, TlsFailure};
use switchyard_controller::{Error, ErrorKind};

/// Why talking to one member failed.
#[derive(Debug)]
pub(crate) enum PgError {
    /// Could not open a session (refused, timeout, auth).
    Connect(tokio_postgres::Error),
    /// A statement failed.
    Query(tokio_postgres::Error),
    /// The server answered something we could not parse.
    Parse(String),
}

impl PgError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            // A TLS failure is a member that is up but cannot be talked to
            // as configured: permanent until the configuration changes.
            PgError::Connect(e) if tls::classify(e).is_some() => ErrorKind::Config,
            PgError::Connect(e) => match e.code().map(|c| c.code()) {
                // cannot_connect_now: starting up / shutting down / recovering.
                Some("57P03") => ErrorKind::NotReady,
                Some("28P01") | Some("28000") => ErrorKind::Config,
                _ => ErrorKind::Unreachable,
            },
            PgError::Query(e) => {
                if e.is_closed() || e.code().is_none() {
                    ErrorKind::Unreachable
                } else {
                    match e.code().map(|c| c.code()) {
                        Some("57P01") | Some("57P02") | Some("57P03") => ErrorKind::Unreachable,
                        Some("25006") => ErrorKind::Refused,
                        Some("42501") => ErrorKind::Refused,
                        _ => ErrorKind::Protocol,
                    }
                }
            }
            PgError::Parse(_) => ErrorKind::Protocol,
        }
    }

    /// A session that failed at the TLS layer: a member that is up but
    /// cannot be talked to as configured (see `tls.rs`).
    pub(crate) fn tls_failure(&self) -> Option<TlsFailure> {
        match self {
            PgError::Connect(e) => tls::classify(e),
            _ => None,
        }
    }

    /// Convert, naming store and member.
    pub(crate) fn into_error(self, store: &str, member: &str) -> Error {
        let kind = self.kind();
        match self {
            PgError::Connect(e) => Error::new(
                kind,
                store,
                tls::classify(&e).map_or_else(|| "cannot connect".into(), |t| t.message()),
            )
            .with_member(member)
            .with_source(e),
            PgError::Query(e) => {
                let msg = match e.as_db_error() {
                    Some(db) => format!("query failed: {}", db.message()),
                    None => "query failed".to_string(),
                };
                Error::new(kind, store, msg)
                    .with_member(member)
                    .with_source(e)
            }
            PgError::Parse(m) => Error::new(kind, store, m).with_member(member),
        }
    }

    /// Short text for an observed member's `detail`.
    pub(crate) fn detail(&self) -> String {
        if let Some(t) = self.tls_failure() {
            return t.message();
        }
        match self {
            PgError::Connect(e) | PgError::Query(e) => match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            },
            PgError::Parse(m) => m.clone(),
        }
    }
}
