//! Parsing topology files. Every error names the file, line, column and field.
//!
//! The text is deserialised straight into the [`Topology`] model by toml's
//! parser. Locations come from a [`SourceMap`] of every field, taken from the
//! same parser's spanned document when a rule or an error first needs one
//! (most files have no finding, and mapping costs as much as parsing). So a rule can point at the exact `votes = 2`
//! that breaks it, and a schema error (wrong type, unknown field, missing
//! field) names the full field path, e.g. `stores[0].members[1].votes`.

use crate::model::Topology;
use crate::source_map::{line_col, SourceMap, Span};
use crate::suggest::did_you_mean;
use std::fmt;
use std::path::Path;

/// What kind of problem stopped a file from being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid UTF-8 or not valid TOML.
    Syntax,
    /// Valid TOML that does not match the schema: wrong type, unknown or missing field.
    Schema,
}

/// A topology file that could not be read or parsed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ParseError {
    /// File name as given.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: u32,
    /// 1-based column (0 when the file could not be read).
    pub column: u32,
    /// What went wrong.
    pub message: String,
    /// The field concerned, as a path such as `stores[0].members[1].votes`,
    /// when one can be named.
    pub field: Option<String>,
    /// Byte range in the source text the error concerns.
    pub span: Option<Span>,
    /// Read, syntax or schema error.
    pub kind: ParseErrorKind,
    /// How to fix it (boxed: errors travel in every `Result` of the parser).
    pub fix: Box<Fix>,
}

/// How to fix a [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// For an unknown field or value, the known one closest to what was
    /// written (`priority` for `priorty`, `postgres` for `postgresql`).
    pub suggestion: Option<String>,
    /// What to do, specific to what went wrong (a missing file is not
    /// fixed by editing a field).
    pub help: String,
}

fn fix(suggestion: Option<String>, help: impl Into<String>) -> Box<Fix> {
    Box::new(Fix {
        suggestion,
        help: help.into(),
    })
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.fix.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// A successfully parsed file: the model plus what is needed to point into
/// the source.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// File name as given.
    pub file: String,
    /// The full source text.
    pub text: String,
    /// The topology.
    pub topology: Topology,
    /// Where each field was written.
    pub source_map: SourceMap,
}

/// Parse topology text; `file` is used in error messages.
pub fn parse_str(file: &str, text: &str) -> Result<Topology, ParseError> {
    parse_source(file, text).map(|p| p.topology)
}

/// Read and parse a topology file.
pub fn parse_file(path: &Path) -> Result<Topology, ParseError> {
    parse_path(path).map(|p| p.topology)
}

/// Read and parse a topology file, keeping the source and its locations.
pub fn parse_path(path: &Path) -> Result<Parsed, ParseError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ParseError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read file: {e}"),
        field: None,
        span: None,
        kind: ParseErrorKind::Io,
        fix: fix(None, io_help(path, &e)),
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => parse_source(&file, &text),
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            // The valid prefix gives the line and column of the first bad byte.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, column) = small(line_col(prefix, valid));
            Err(ParseError {
                file,
                line,
                column,
                message: format!("file is not valid UTF-8 (invalid byte at offset {valid})"),
                field: None,
                span: Some(valid..valid + 1),
                kind: ParseErrorKind::Syntax,
                fix: fix(
                    None,
                    "save the file as UTF-8 (topology files are UTF-8 TOML)",
                ),
            })
        }
    }
}

/// Parse topology text, keeping the source and its locations.
pub fn parse_source(file: &str, text: &str) -> Result<Parsed, ParseError> {
    match toml09::from_str::<Topology>(text) {
        Ok(topology) => Ok(Parsed {
            file: file.to_string(),
            text: text.to_string(),
            topology,
            source_map: SourceMap::lazy(text),
        }),
        Err(fast) => Err(located_error(file, text, &fast)),
    }
}

/// Locate a parse error: a syntax error as reported by the parser, a schema
/// error (type, unknown or missing field) with the path of its field.
fn located_error(file: &str, text: &str, e: &toml09::de::Error) -> ParseError {
    let span = e.span().unwrap_or(0..0);
    let (line, column) = small(line_col(text, span.start));
    let message = first_line(e.message());
    let source_map = match SourceMap::from_text(text) {
        Ok(map) => map,
        Err(_) => {
            return ParseError {
                file: file.to_string(),
                line,
                column,
                message,
                field: SourceMap::recovered(text)
                    .path_at(span.start)
                    .or_else(|| key_on_line(text, span.start)),
                span: Some(span),
                kind: ParseErrorKind::Syntax,
                fix: fix(
                    None,
                    "fix the TOML syntax at the reported line and column; docs/topology.md \
                     shows a complete file",
                ),
            };
        }
    };
    let mut field = source_map.path_at(span.start);
    let mut suggestion = None;
    let help;
    // serde reports a missing field at its table: name the field itself.
    if let Some(missing) = backticked_after(&message, "missing field ") {
        help = format!("add `{missing} = …`; docs/topology.md lists every field and its type");
        field = Some(match field {
            Some(table) if !table.is_empty() => format!("{table}.{missing}"),
            _ => missing.to_string(),
        });
    } else if let Some(unknown) = backticked_after(&message, "unknown field ") {
        if field.is_none() {
            field = Some(unknown.to_string());
        }
        suggestion = did_you_mean(unknown, expected(&message)).map(str::to_string);
        help = match &suggestion {
            Some(s) => format!("rename `{unknown}` to `{s}`"),
            None => format!(
                "remove `{unknown}` or use one of the fields listed; docs/topology.md describes each"
            ),
        };
    } else if let Some(unknown) = backticked_after(&message, "unknown variant ") {
        suggestion = did_you_mean(unknown, expected(&message)).map(str::to_string);
        help = match &suggestion {
            Some(s) => format!("write `\"{s}\"` instead of `\"{unknown}\"`"),
            None => "use one of the values listed; docs/topology.md describes each".to_string(),
        };
    } else {
        help = "give the field the type docs/topology.md lists for it".to_string();
    }
    ParseError {
        file: file.to_string(),
        line,
        column,
        message,
        field: field.filter(|f| !f.is_empty()),
        span: Some(span),
        kind: ParseErrorKind::Schema,
        fix: fix(suggestion, help),
    }
}

/// The names serde lists after "expected" in an unknown field or variant
/// error: "expected one of `a`, `b`" or "expected `a` or `b`".
fn expected(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`').skip(1).step_by(2).collect()
}

/// What to do about a file that could not be read: it is not a field to fix.
fn io_help(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the current directory".to_string());
            if path.is_relative() {
                format!(
                    "check the path: `{}` is looked up from {cwd}",
                    path.display()
                )
            } else {
                format!("check the path: `{}` does not exist", path.display())
            }
        }
        std::io::ErrorKind::PermissionDenied => {
            "make the file readable by the user running topocheck".to_string()
        }
        _ if path.is_dir() => "give a topology file, not a directory".to_string(),
        _ => "check that the file exists and is readable".to_string(),
    }
}

/// A line and column as stored in a [`ParseError`] (saturating: no file
/// has four billion lines).
fn small((line, column): (usize, usize)) -> (u32, u32) {
    let f = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (f(line), f(column))
}

fn first_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .to_string()
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next()
}

/// For a syntax error, the key or table header written on the error's line,
/// so that even a broken file names the field it broke in.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[start..end].trim();
    if let Some(header) = line.strip_prefix('[') {
        let name = header.trim_start_matches('[').split(']').next()?.trim();
        return (!name.is_empty()).then(|| name.to_string());
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}
