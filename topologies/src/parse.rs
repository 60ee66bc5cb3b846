//! Parsing topology files. Every error names the file, line, column and field.

use crate::model::Topology;
use std::path::Path;

/// A topology file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    /// File name as given.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column (0 when the file could not be read).
    pub column: usize,
    /// What went wrong, naming the field.
    pub message: String,
}

/// Parse topology text; `file` is used in error messages.
pub fn parse_str(file: &str, text: &str) -> Result<Topology, ParseError> {
    toml::from_str::<Topology>(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ParseError {
            file: file.to_string(),
            line,
            column,
            message: e.message().to_string(),
        }
    })
}

/// Read and parse a topology file.
pub fn parse_file(path: &Path) -> Result<Topology, ParseError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_str(&file, &text)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
