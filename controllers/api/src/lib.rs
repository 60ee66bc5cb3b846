//! The controller contract every Switchyard store plugs into.
//!
//! A controller observes a replicated store ([`ObservedState`]) and carries out
//! [`Operation`]s on it. Operations are plain data so that the coordinator can
//! journal them before issuing them and a dry run can print them. What a store
//! can do is declared in its [`Capability`]; failures are one [`Error`] type
//! that says whether retrying can help and names the store and member.

pub mod capability;
pub mod checksum;
pub mod controller;
pub mod direct;
pub mod error;
pub mod error_policy;
pub mod fencing;
pub mod last_known;
pub mod layers;
pub mod notation;
pub mod operation;
pub mod progress;
pub mod secret_vars;
pub mod sequence;
pub mod state;

pub use capability::{Capability, Gate, Need, Priorities};
pub use checksum::crc32c;
pub use controller::{Controller, ControllerExt, OpContext};
pub use error::{Error, ErrorKind, ErrorRecord, Result};
pub use error_policy::{Backoff, ErrorPolicy};
pub use fencing::{FencingToken, Stamp, TokenRecord};
pub use last_known::{LastKnown, Recorded, Remembered};
pub use layers::{layered, Layer};
pub use notation::Notation;
pub use operation::{is_target, DataLossEstimate, Operation, Outcome, PromoteMode};
pub use secret_vars::SecretVars;
pub use state::{History, Lag, MemberState, ObservedState, Position, Role, Term};
pub use switchyard_topology::StoreKind;
