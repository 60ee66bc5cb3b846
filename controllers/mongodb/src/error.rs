//! The backend's private error enum, converted into the one public
//! [`switchyard_controller::Error`] at the trait boundary.

use switchyard_controller::{Error, ErrorKind};

/// What can go wrong inside the MongoDB controller.
#[derive(Debug)]
pub enum MongoError {
    /// Bad topology / connection settings.
    Config {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The driver failed talking to a member.
    Driver {
        /// Member concerned, when known.
        member: Option<String>,
        /// Server error code, when the server answered.
        code: Option<i32>,
        /// The driver error.
        source: mongodb::error::Error,
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

impl MongoError {
    /// A classified error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        MongoError::Other {
            kind,
            member: None,
            message: message.into(),
        }
    }

    /// Name the member.
    pub fn member(mut self, name: &str) -> Self {
        match &mut self {
            MongoError::Driver { member, .. } | MongoError::Other { member, .. } => {
                *member = Some(name.to_string())
            }
            MongoError::Config { .. } => {}
        }
        self
    }

    /// Server error code of a driver failure.
    pub fn code(&self) -> Option<i32> {
        match self {
            MongoError::Driver { code, .. } => *code,
            _ => None,
        }
    }

    /// Wrap a driver error.
    pub fn driver(e: mongodb::error::Error) -> Self {
        MongoError::Driver {
            member: None,
            code: server_code(&e),
            source: e,
        }
    }

    /// Convert into the public error of `store`.
    pub fn into_error(self, store: &str) -> Error {
        match self {
            MongoError::Config { field, message } => {
                Error::new(ErrorKind::Config, store, format!("{field} {message}"))
            }
            MongoError::Driver {
                member,
                code,
                source,
            } => {
                let kind = classify(&source, code);
                let msg = match code {
                    Some(c) => format!("server error {c}"),
                    None => "driver error".to_string(),
                };
                let e = Error::new(kind, store, msg).with_source(source);
                match member {
                    Some(m) => e.with_member(m),
                    None => e,
                }
            }
            MongoError::Other {
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

/// The server's error code inside a driver error.
pub fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind as K, WriteFailure};
    match e.kind.as_ref() {
        K::Command(c) => Some(c.code),
        K::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        K::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Codes that mean "the replica set is changing state; try again".
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 50, 74,
    // ConfigurationInProgress, CurrentConfigNotCommittedYet (safe reconfig).
    109, 308,
];

fn classify(e: &mongodb::error::Error, code: Option<i32>) -> ErrorKind {
    use mongodb::error::ErrorKind as K;
    match e.kind.as_ref() {
        K::Io(_) | K::ServerSelection { .. } | K::ConnectionPoolCleared { .. } => {
            ErrorKind::Unreachable
        }
        K::Authentication { .. } => ErrorKind::Refused,
        _ => match code {
            Some(c) if TRANSIENT_CODES.contains(&c) => ErrorKind::NotReady,
            Some(93 | 103) => ErrorKind::Refused,
            Some(13 | 18) => ErrorKind::Refused,
            Some(_) => ErrorKind::Refused,
            None => ErrorKind::Protocol,
        },
    }
}
