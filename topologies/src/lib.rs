//! Switchyard topology files: the model, a parser that keeps source locations,
//! and `topocheck`'s rules.

pub mod model;
pub mod parse;

pub use model::*;
pub use parse::{parse_file, parse_str, ParseError};
