//! `--format json`: one JSON object per diagnostic, one per line (JSON
//! Lines). The fields are documented in docs/topocheck.md and are a stable
//! contract: new fields may be added, existing ones keep their meaning.

use crate::diagnostic::{Diagnostic, Label};
use crate::report::FileReport;
use crate::source_map::LineIndex;
use serde_json::{json, Value};

/// The JSON object for one diagnostic found in `file` (whose text is `text`).
pub fn diagnostic_json(file: &str, text: &str, d: &Diagnostic) -> Value {
    diagnostic_json_indexed(file, &LineIndex::new(text), d)
}

fn diagnostic_json_indexed(file: &str, lines: &LineIndex<'_>, d: &Diagnostic) -> Value {
    let loc = |l: &Label| {
        let p = lines.position(&l.span);
        json!({
            "line": p.line,
            "column": p.column,
            "end_line": p.end_line,
            "end_column": p.end_column,
            "field": l.field,
            "message": l.message,
        })
    };
    let primary = d.primary.as_ref().map(loc);
    let get = |k: &str| {
        primary
            .as_ref()
            .and_then(|p| p.get(k).cloned())
            .unwrap_or(Value::Null)
    };
    json!({
        "file": file,
        "code": d.rule.code,
        "rule": d.rule.name,
        "severity": d.severity().as_str(),
        "message": d.message,
        "line": get("line"),
        "column": get("column"),
        "end_line": get("end_line"),
        "end_column": get("end_column"),
        "field": get("field"),
        "store": d.store,
        "member": d.member,
        "label": get("message"),
        "related": d.secondary.iter().map(loc).collect::<Vec<_>>(),
        "notes": d.notes,
        "help": d.help,
    })
}

/// Every diagnostic of every report, one compact JSON object per line.
pub fn render(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let lines = LineIndex::new(r.text.as_deref().unwrap_or(""));
        for d in &r.diagnostics {
            out.push_str(&diagnostic_json_indexed(&r.file, &lines, d).to_string());
            out.push('\n');
        }
    }
    out
}
