//! The conformance suite every controller runs against its own backing.
//! (Filled in by the controller-contract work; selected by [`crate::Capability`].)
