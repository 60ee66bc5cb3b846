//! The lab: real local PostgreSQL clusters and protocol-level simulators of
//! stores that cannot run on these machines, for tests, demos and benchmarks.
pub mod cosmossim;
pub mod mongosim;
pub mod postgres;
