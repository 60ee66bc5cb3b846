//! What a store supports. Plans, the coordinator and the conformance suite all
//! read the same struct, so a capability is never assumed in one place and
//! denied in another.

use serde::{Deserialize, Serialize};

/// Features a controller supports. Every field defaults to `false`, so a new
/// capability is opt-in for existing controllers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capability {
    /// Zero-loss planned switchover (fence, capture, catch up, promote).
    pub planned_switchover: bool,
    /// Promotion with the old primary unreachable.
    pub forced_failover: bool,
    /// The old primary can be fenced (made to refuse writes) explicitly.
    pub fencing: bool,
    /// A final write position can be captured and waited for.
    pub positions: bool,
    /// Followers must be re-pointed explicitly after a promotion.
    pub repoint: bool,
    /// A former primary can be rejoined as a follower.
    pub rejoin: bool,
    /// Members elect their primary themselves (MongoDB, EventStoreDB).
    pub self_electing: bool,
    /// Preference can be persisted so a move sticks (MongoDB priorities,
    /// Cosmos DB failover priorities).
    pub sticky_priorities: bool,
    /// Replication lag is observable and a lag bound can be enforced.
    pub lag_bound: bool,
    /// How long one mutating operation is expected to take, when that is
    /// far beyond a stage's default timeout (Cosmos DB's ARM operations take
    /// minutes). The planner gives every stage with a step for this store at
    /// least twice this long. `None`: operations take seconds.
    pub expected_operation_ms: Option<u64>,
}

impl Capability {
    /// A capability set with nothing enabled; use the builder methods.
    pub const fn none() -> Self {
        Capability {
            planned_switchover: false,
            forced_failover: false,
            fencing: false,
            positions: false,
            repoint: false,
            rejoin: false,
            self_electing: false,
            sticky_priorities: false,
            lag_bound: false,
            expected_operation_ms: None,
        }
    }
}
