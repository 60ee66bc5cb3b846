//! Switchyard topology files: the model, a parser that keeps source locations,
//! and `topocheck`'s rules.
//!
//! - `model.rs`: the plain data types other crates use;
//! - `parse.rs` + `source_map.rs`: TOML → model, with every field's location;
//! - `rules.rs`: the rule catalogue (codes, severities, documentation);
//! - `check.rs` + `quorum.rs`: the rules themselves; `capacity.rs`: N+1 capacity;
//! - `diagnostic.rs`: what a rule reports; `human.rs`, `json.rs`, `sarif.rs`: output formats;
//! - `suggest.rs`: "did you mean …?" for misspelt names;
//! - `report.rs`: checking files and the exit status; `generate.rs`: synthetic topologies.

pub mod capacity;
pub mod check;
pub mod diagnostic;
pub mod generate;
pub mod human;
pub mod json;
pub mod model;
pub mod parse;
pub mod quorum;
pub mod report;
pub mod rules;
pub mod sarif;
pub mod source_map;
pub mod suggest;

pub use check::{check, check_topology, CheckOptions};
pub use diagnostic::{Diagnostic, Severity};
pub use model::*;
pub use parse::{
    parse_file, parse_path, parse_source, parse_str, Fix, ParseError, ParseErrorKind, Parsed,
};
pub use report::{check_path, check_text, exit_code, FileReport};
