//! Switchyard coordinator: turns a topology into a failover plan and executes
//! it safely — stores in dependency order, a checkpoint validated after every
//! stage, one execution at a time, every step journaled before it is issued so
//! that a crash resumes instead of restarting.
//!
//! Where to find each concept:
//! - [`service`]: the application (plan, start, resume, abort, drill, state,
//!   history); [`cli`] and the server are adapters over it.
//! - [`plan`]: the plan model (stages, steps, checkpoints), TOML/JSON.
//! - [`expectation`]: composable checkpoint expectations.
//! - [`planner`]: topology → plan; [`candidate`]: `--candidate`, the member the operator chose.
//! - [`preview`]: what a plan will do to each store, shown before asking.
//! - [`validate`]: loading hand-written plans, with file:line:field errors.
//! - [`executor`]: the pure state machine deciding what happens next.
//! - [`abort`]: ending an execution: a plan from the journal and what the stores show now.
//! - [`driver`]: decide, journal, act, observe.
//! - [`journal`]: the append-only, fsync'd execution journal.
//! - [`lock`]: one execution at a time, with a fencing token.
//! - [`backend`]: `--backend`: the file backend and the distributed ones
//!   (leader election, fencing token, journal in the engine).
//! - [`registry`]: store kind → controller.
//! - [`output`]: the envelope (`schema`, `ts`) of every JSON line.
//! - [`health`]: what `state` claims about each member and store, and why.
//! - [`policy`]: the safety policy file beside the topology; [`gate`],
//!   [`stage_hook`], [`approval`]: what it asks for; [`safety`]: gates and
//!   hooks at execution and stage boundaries.
//! - [`rollback`]: returning every store an execution moved to where it started.

pub mod abort;
pub mod approval;
pub mod backend;
pub mod candidate;
pub mod cli;
pub mod conformance;
pub mod driver;
pub mod executor;
pub mod expectation;
pub mod failpoint;
pub mod gate;
pub mod health;
pub mod journal;
pub mod lock;
pub mod output;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod preview;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod report;
pub mod rollback;
pub mod safety;
pub mod server;
pub mod service;
pub mod stage_hook;
pub mod validate;
pub mod width;
