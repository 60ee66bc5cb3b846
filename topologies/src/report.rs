//! Checking whole files and turning the findings into an exit status. The
//! binary is a thin shell around this, so tests exercise the same path.

use crate::check::{check, CheckOptions};
use crate::diagnostic::{Diagnostic, Severity};
use crate::parse::{parse_path, parse_source};
use std::path::Path;

/// The outcome of checking one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// File name as given.
    pub file: String,
    /// Source text, when the file could be read.
    pub text: Option<String>,
    /// True when the file could not be read or parsed (no rule ran).
    pub invalid: bool,
    /// Findings, ordered by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    /// Count of findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    }
}

/// Read, parse and check one file.
pub fn check_path(path: &Path, opts: &CheckOptions) -> FileReport {
    let file = path.display().to_string();
    match parse_path(path) {
        Ok(parsed) => {
            let diagnostics = check(&parsed, opts);
            FileReport {
                file,
                text: Some(parsed.text),
                invalid: false,
                diagnostics,
            }
        }
        Err(e) => {
            let text = std::fs::read(path)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            FileReport {
                file,
                text,
                invalid: true,
                diagnostics: vec![Diagnostic::from_parse_error(&e)],
            }
        }
    }
}

/// Parse and check text as if read from `file`.
pub fn check_text(file: &str, text: &str, opts: &CheckOptions) -> FileReport {
    match parse_source(file, text) {
        Ok(parsed) => FileReport {
            file: file.to_string(),
            diagnostics: check(&parsed, opts),
            text: Some(parsed.text),
            invalid: false,
        },
        Err(e) => FileReport {
            file: file.to_string(),
            text: Some(text.to_string()),
            invalid: true,
            diagnostics: vec![Diagnostic::from_parse_error(&e)],
        },
    }
}

/// `topocheck`'s exit status for a set of reports: 2 when any file could not
/// be read or parsed, else 1 when any error (or, with `deny_warnings`, any
/// warning) was found, else 0.
pub fn exit_code(reports: &[FileReport], deny_warnings: bool) -> i32 {
    if reports.iter().any(|r| r.invalid) {
        return 2;
    }
    let errors: usize = reports.iter().map(|r| r.count(Severity::Error)).sum();
    let warnings: usize = reports.iter().map(|r| r.count(Severity::Warning)).sum();
    if errors > 0 || (deny_warnings && warnings > 0) {
        1
    } else {
        0
    }
}
