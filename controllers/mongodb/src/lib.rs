//! Switchyard controller for mongodb.
