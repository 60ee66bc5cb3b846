//! Switchyard coordinator.
