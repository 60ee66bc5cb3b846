//! `--format sarif`: a SARIF 2.1.0 log for code-scanning tools. One run,
//! every rule described in `tool.driver.rules`, one result per diagnostic.
//! Columns are counted in Unicode code points (`columnKind`), as topocheck
//! counts them everywhere else.

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::report::FileReport;
use crate::rules;
use crate::source_map::LineIndex;
use serde_json::{json, Value};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFO_URI: &str = "https://github.com/switchyard/switchyard/blob/main/docs/topocheck.md";

/// A file name as a SARIF `uri`: relative paths stay relative (resolved
/// against the checkout by code scanning), absolute ones become `file://`.
pub fn artifact_uri(file: &str) -> String {
    let slashed = file.replace('\\', "/");
    let mut out = String::new();
    for b in slashed.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    let out = out.strip_prefix("./").map(str::to_string).unwrap_or(out);
    if out.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn region(lines: &LineIndex<'_>, l: &Label) -> Value {
    let p = lines.position(&l.span);
    json!({
        "startLine": p.line,
        "startColumn": p.column,
        "endLine": p.end_line,
        "endColumn": p.end_column,
    })
}

fn result(file: &str, lines: &LineIndex<'_>, d: &Diagnostic, artifact_index: usize) -> Value {
    let rule_index = rules::ALL
        .iter()
        .position(|r| r.code == d.rule.code)
        .unwrap_or(0);
    let uri = artifact_uri(file);
    let mut physical = json!({
        "artifactLocation": { "uri": uri, "index": artifact_index },
    });
    if let Some(p) = &d.primary {
        physical["region"] = region(lines, p);
    }
    let mut text_msg = d.message.clone();
    for n in &d.notes {
        text_msg.push_str(&format!("\nnote: {n}"));
    }
    text_msg.push_str(&format!("\nhelp: {}", d.help));
    let mut res = json!({
        "ruleId": d.rule.code,
        "ruleIndex": rule_index,
        "level": level(d.severity()),
        "message": { "text": text_msg },
        "locations": [{ "physicalLocation": physical }],
        "properties": {
            "rule": d.rule.name,
            "field": d.primary.as_ref().map(|p| p.field.clone()),
            "store": d.store,
            "member": d.member,
        },
    });
    if !d.secondary.is_empty() {
        res["relatedLocations"] = d
            .secondary
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "id": i + 1,
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri, "index": artifact_index },
                        "region": region(lines, l),
                    },
                    "message": { "text": l.message },
                })
            })
            .collect::<Vec<_>>()
            .into();
    }
    res
}

/// The SARIF log for every report, pretty-printed.
pub fn render(reports: &[FileReport]) -> String {
    let rules: Vec<Value> = rules::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.explanation },
                "help": { "text": r.help },
                "helpUri": format!("{INFO_URI}#{}", r.code.to_ascii_lowercase()),
                "defaultConfiguration": { "level": level(r.severity) },
            })
        })
        .collect();
    let artifacts: Vec<Value> = reports
        .iter()
        .map(|r| json!({ "location": { "uri": artifact_uri(&r.file) } }))
        .collect();
    let results: Vec<Value> = reports
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let lines = LineIndex::new(r.text.as_deref().unwrap_or(""));
            r.diagnostics
                .iter()
                .map(|d| result(&r.file, &lines, d, i))
                .collect::<Vec<_>>()
        })
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "topocheck",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": INFO_URI,
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "artifacts": artifacts,
            "results": results,
        }]
    });
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::artifact_uri;

    #[test]
    fn uris_are_relative_or_file_urls() {
        assert_eq!(
            artifact_uri("topologies/examples/shop.toml"),
            "topologies/examples/shop.toml"
        );
        assert_eq!(artifact_uri("./a b.toml"), "a%20b.toml");
        assert_eq!(artifact_uri("/tmp/x.toml"), "file:///tmp/x.toml");
        assert_eq!(artifact_uri("dir\\x.toml"), "dir/x.toml");
    }
}
