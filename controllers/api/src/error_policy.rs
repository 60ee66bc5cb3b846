//! A controller's error policy: which of its errors are worth retrying and
//! how long to wait between attempts. The error-policy layer
//! ([`crate::layers::ErrorPolicyLayer`]) applies the classification to every
//! error an operation returns; the coordinator's driver retries by the
//! backoff.

use crate::error::{Error, ErrorKind};
use std::time::Duration;

/// How to retry an operation that failed temporarily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial: Duration,
    /// Upper bound of the doubling wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 5,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
        }
    }
}

/// Which errors are temporary, and how to back off. The default: the
/// kinds' own classification and [`Backoff::default`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// Kinds that are temporary for this controller beyond
    /// [`ErrorKind::is_temporary`]'s defaults (none by default).
    pub also_temporary: &'static [ErrorKind],
    /// Kinds that are permanent for this controller although temporary by
    /// default (a store whose timeouts mean the operation itself gave up).
    pub never_temporary: &'static [ErrorKind],
    /// The retry schedule.
    pub backoff: Backoff,
}

impl ErrorPolicy {
    /// Whether `e` is worth retrying under this policy.
    pub fn is_temporary(&self, e: &Error) -> bool {
        let k = e.kind();
        if self.never_temporary.contains(&k) {
            return false;
        }
        e.is_temporary() || self.also_temporary.contains(&k)
    }

    /// `e` with its temporary flag set by this policy.
    pub fn classify(&self, e: Error) -> Error {
        let t = self.is_temporary(&e);
        e.with_temporary(t)
    }
}
