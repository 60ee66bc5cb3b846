//! Switchyard controller for postgres.
