//! The coordinator's fencing token and the one rule that compares it.
//!
//! A [`FencingToken`] comes from the engine that grants a coordinator its
//! leadership (the file lock's counter, an etcd revision, a Consul
//! `LockIndex`) and strictly increases across every coordinator. Every
//! operation carries it in [`crate::OpContext`]. Where a store can hold a
//! record, it keeps a [`Stamp`] (token and execution id) written through its
//! controller's [`TokenRecord`] hook, and the fencing layer
//! ([`crate::layers::FencingLayer`]) compares the stamp with the operation's
//! context by [`admit`] before every mutating operation. No token value
//! bypasses the rule: token 0 (an ad-hoc context) is compared like any other.
//!
//! The rule lives here and only here; a store whose own write path re-checks
//! the token (the Redis script) enforces the same rule server-side.

use crate::controller::OpContext;
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The coordinator's fencing token: strictly greater for every later
/// leadership, across every coordinator sharing a backend.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token of an ad-hoc context (tests, manual use): lower than any a
    /// lock hands out, and checked like any other.
    pub const ADHOC: FencingToken = FencingToken(0);

    /// The number, for stores that keep it as one.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for FencingToken {
    fn from(v: u64) -> Self {
        FencingToken(v)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a store records about the coordinator that last acted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The highest token that acted.
    pub token: FencingToken,
    /// The execution that carried it.
    pub execution: String,
    /// The member the record was read from, for error messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

impl Stamp {
    /// The stamp an operation under `ctx` leaves.
    pub fn of(ctx: &OpContext) -> Self {
        Stamp {
            token: ctx.token,
            execution: ctx.execution_id.clone(),
            member: None,
        }
    }
}

/// What [`admit`] decided for an operation that may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The store already holds this execution's token: nothing to record.
    Recorded,
    /// The token is newer than the store's (or the store holds none): the
    /// operation may proceed and its stamp should be recorded.
    Newer,
}

/// Why [`admit`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A higher token already acted: this coordinator was superseded.
    Superseded {
        /// What the store holds.
        seen: Stamp,
    },
    /// The same token from another execution: two coordinators hold equal
    /// tokens (separate state directories), and the other one acted first.
    SameTokenOtherExecution {
        /// What the store holds.
        seen: Stamp,
    },
}

impl Refusal {
    /// The refusal as a controller error of kind [`ErrorKind::Refused`].
    pub fn into_error(self, store: &str, ctx: &OpContext) -> Error {
        let (seen, msg) = match self {
            Refusal::Superseded { seen } => {
                let msg = format!(
                    "stale coordinator: execution {} carries fencing token {}, but fencing \
                     token {} (execution {}) already acted on this store",
                    ctx.execution_id, ctx.token, seen.token, seen.execution
                );
                (seen, msg)
            }
            Refusal::SameTokenOtherExecution { seen } => {
                let msg = format!(
                    "competing coordinator: execution {} carries fencing token {}, which \
                     execution {} already used on this store",
                    ctx.execution_id, ctx.token, seen.execution
                );
                (seen, msg)
            }
        };
        let e = Error::new(ErrorKind::Refused, store, msg);
        match seen.member {
            Some(m) => e.with_member(m),
            None => e,
        }
    }
}

/// The fencing rule: refuse a lower token, and an equal token from a
/// different execution. `seen` is what the store holds (`None`: nothing
/// recorded yet).
pub fn admit(seen: Option<&Stamp>, ctx: &OpContext) -> std::result::Result<Admission, Refusal> {
    let Some(seen) = seen else {
        return Ok(Admission::Newer);
    };
    if seen.token > ctx.token {
        return Err(Refusal::Superseded { seen: seen.clone() });
    }
    if seen.token == ctx.token {
        return if seen.execution == ctx.execution_id {
            Ok(Admission::Recorded)
        } else {
            Err(Refusal::SameTokenOtherExecution { seen: seen.clone() })
        };
    }
    Ok(Admission::Newer)
}

/// A store's own record of the fencing token: the hook through which the
/// fencing layer reads and writes it. A controller whose store can hold a
/// record implements this and returns itself from
/// [`crate::Controller::token_record`]; the comparison is the layer's.
#[async_trait]
pub trait TokenRecord: Send + Sync {
    /// The highest stamp any reachable member holds. `Ok(None)`: nothing was
    /// recorded yet. An error means the record could not be read (nothing
    /// reachable): the layer does not run a mutating operation it cannot
    /// check.
    async fn read_stamp(&self) -> Result<Option<Stamp>>;

    /// Record `stamp` where the store can take a write now. `Ok(false)`:
    /// not now (no writable primary, or the store records only with its
    /// next configuration change); the layer tries again after the
    /// operation. An error of kind [`ErrorKind::Refused`] means the store
    /// itself refused the token.
    async fn write_stamp(&self, stamp: &Stamp) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(token: u64, exec: &str) -> OpContext {
        OpContext::new(exec, FencingToken(token))
    }

    fn stamp(token: u64, exec: &str) -> Stamp {
        Stamp {
            token: FencingToken(token),
            execution: exec.into(),
            member: None,
        }
    }

    #[test]
    fn nothing_recorded_admits_any_token_even_zero() {
        assert_eq!(admit(None, &ctx(0, "a")), Ok(Admission::Newer));
        assert_eq!(admit(None, &ctx(9, "a")), Ok(Admission::Newer));
    }

    #[test]
    fn lower_token_is_refused_and_zero_is_no_bypass() {
        assert!(matches!(
            admit(Some(&stamp(5, "a")), &ctx(4, "b")),
            Err(Refusal::Superseded { .. })
        ));
        assert!(matches!(
            admit(Some(&stamp(5, "a")), &ctx(0, "adhoc")),
            Err(Refusal::Superseded { .. })
        ));
    }

    #[test]
    fn equal_token_needs_the_same_execution() {
        assert_eq!(
            admit(Some(&stamp(5, "a")), &ctx(5, "a")),
            Ok(Admission::Recorded)
        );
        assert!(matches!(
            admit(Some(&stamp(5, "a")), &ctx(5, "b")),
            Err(Refusal::SameTokenOtherExecution { .. })
        ));
        assert_eq!(
            admit(Some(&stamp(5, "a")), &ctx(6, "b")),
            Ok(Admission::Newer)
        );
    }

    #[test]
    fn refusal_names_both_executions() {
        let e = admit(Some(&stamp(5, "a")), &ctx(5, "b"))
            .unwrap_err()
            .into_error("orders", &ctx(5, "b"));
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.message().contains("execution a"), "{e}");
        assert!(e.message().contains("execution b"), "{e}");
    }
}
