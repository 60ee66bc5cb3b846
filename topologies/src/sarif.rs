//! `--format sarif`: a SARIF 2.1.0 log for code-scanning tools. One run,
//! every rule described in `tool.driver.rules`, one result per diagnostic.
//! Columns are counted in Unicode code points (`columnKind`), as topocheck
//! counts them everywhere else.

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::report::FileReport;
use crate::rules;
use crate::source_map::LineIndex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFO_URI: &str = "https://github.com/switchyard/switchyard/blob/main/docs/topocheck.md";

/// The `uriBaseId` every relative URI is resolved against: the root given
/// by `--sarif-root` (the repository root by default), so that code scanning
/// maps results to files in the checkout whatever directory topocheck ran in.
pub const SRCROOT: &str = "%SRCROOT%";

/// Percent-encode a path for a URI (slashes kept, `\\` turned into `/`).
fn encode(path: &str) -> String {
    let slashed = path.replace('\\', "/");
    let mut out = String::new();
    for b in slashed.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A file name as a SARIF `uri` on its own: relative paths stay relative,
/// absolute ones become `file://`. [`Locator`] makes them relative to a root.
pub fn artifact_uri(file: &str) -> String {
    let out = encode(file);
    let out = out.strip_prefix("./").map(str::to_string).unwrap_or(out);
    if out.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}

/// The directory holding `.git` above `start` (a worktree's `.git` is a
/// file), or `start` itself when there is none.
pub fn repository_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(start)
        .to_path_buf()
}

/// `path` made absolute against `cwd`, with `.` and `..` resolved (through
/// the file system when the path exists, so symlinked directories agree).
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    if let Ok(real) = joined.canonicalize() {
        return real;
    }
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Turns file names as given on the command line into SARIF artifact
/// locations relative to a source root.
#[derive(Debug, Clone)]
pub struct Locator {
    root: PathBuf,
    cwd: PathBuf,
}

impl Locator {
    /// Relative to `root`; relative file names are taken from `cwd`.
    pub fn new(root: &Path, cwd: &Path) -> Self {
        let cwd = absolute(cwd, Path::new("/"));
        Locator {
            root: absolute(root, &cwd),
            cwd,
        }
    }

    /// Relative to the repository holding the current directory.
    pub fn from_current_dir() -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Locator::new(&repository_root(&cwd), &cwd)
    }

    /// The artifact location of `file`: `{uri, uriBaseId: "%SRCROOT%"}` for
    /// a file under the root, an absolute `file://` URI for one outside it.
    pub fn location(&self, file: &str) -> Value {
        let abs = absolute(Path::new(file), &self.cwd);
        match abs.strip_prefix(&self.root) {
            Ok(rel) => json!({
                "uri": encode(&rel.to_string_lossy()),
                "uriBaseId": SRCROOT,
            }),
            Err(_) => json!({ "uri": format!("file://{}", encode(&abs.to_string_lossy())) }),
        }
    }

    fn root_uri(&self) -> String {
        let mut u = format!("file://{}", encode(&self.root.to_string_lossy()));
        if !u.ends_with('/') {
            u.push('/');
        }
        u
    }
}

/// A stable identity for a finding that survives edits elsewhere in the
/// file (lines move, fingerprints do not): rule, file, store, member and
/// the field's name without list indices, hashed with FNV-1a. Repeats of the
/// same identity in one log are numbered so that no two results share one.
fn fingerprint(uri: &str, d: &Diagnostic, seen: &mut HashMap<String, usize>) -> String {
    let field = d.primary.as_ref().map_or("", |p| p.field.as_str());
    let unindexed: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in field.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let key = [
        d.rule.code,
        uri,
        d.store.as_deref().unwrap_or(""),
        d.member.as_deref().unwrap_or(""),
        &unindexed,
    ]
    .join("\u{1f}");
    let n = seen.entry(key.clone()).or_insert(0);
    *n += 1;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}:{n}")
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

fn result(
    artifact: &Value,
    lines: &LineIndex<'_>,
    d: &Diagnostic,
    seen: &mut HashMap<String, usize>,
) -> Value {
    let rule_index = rules::ALL
        .iter()
        .position(|r| r.code == d.rule.code)
        .unwrap_or(0);
    let physical = json!({
        "artifactLocation": artifact,
        // A file that could not be read has no place in it to point at:
        // its first line stands for the whole file, so every result has a
        // region code scanning can show.
        "region": match &d.primary {
            Some(p) => region(lines, p),
            None => json!({ "startLine": 1, "startColumn": 1 }),
        },
    });
    let uri = artifact["uri"].as_str().unwrap_or("");
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
        "partialFingerprints": { "topocheck/v1": fingerprint(uri, d, seen) },
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
                        "artifactLocation": artifact,
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

/// The SARIF log for every report, pretty-printed, with URIs relative to the
/// repository holding the current directory.
pub fn render(reports: &[FileReport]) -> String {
    render_with(reports, &Locator::from_current_dir())
}

/// The SARIF log for every report, pretty-printed, with URIs placed by
/// `locator` (`topocheck --sarif-root`).
pub fn render_with(reports: &[FileReport], locator: &Locator) -> String {
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
    let locations: Vec<Value> = reports.iter().map(|r| locator.location(&r.file)).collect();
    let artifacts: Vec<Value> = locations.iter().map(|l| json!({ "location": l })).collect();
    let mut seen = HashMap::new();
    let mut results = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let lines = LineIndex::new(r.text.as_deref().unwrap_or(""));
        let mut artifact = locations[i].clone();
        artifact["index"] = json!(i);
        for d in &r.diagnostics {
            results.push(result(&artifact, &lines, d, &mut seen));
        }
    }
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
            "originalUriBaseIds": { SRCROOT: { "uri": locator.root_uri() } },
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
    use super::{artifact_uri, Locator};
    use serde_json::json;
    use std::path::Path;

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

    #[test]
    fn locations_are_relative_to_the_root() {
        let l = Locator::new(Path::new("/repo"), Path::new("/repo/topologies"));
        assert_eq!(
            l.location("examples/a b.toml"),
            json!({"uri": "topologies/examples/a%20b.toml", "uriBaseId": "%SRCROOT%"})
        );
        assert_eq!(
            l.location("../x/../y.toml"),
            json!({"uri": "y.toml", "uriBaseId": "%SRCROOT%"})
        );
        assert_eq!(
            l.location("/elsewhere/z.toml"),
            json!({"uri": "file:///elsewhere/z.toml"})
        );
        assert_eq!(l.root_uri(), "file:///repo/");
    }
}
