//! The safety policy: a TOML file kept in git beside the topology
//! (`orders.toml` → `orders.safety.toml`) that says which executions need a
//! second person's approval ([`crate::approval`]), which gates must hold
//! before a plan starts and between stages ([`crate::gate`]), and which
//! commands run at execution and stage boundaries ([`crate::stage_hook`]).
//! No file means no approvals, no gates beyond the built-in capacity
//! readiness, no hooks. docs/safety.md is the format.
//!
//! Every error names the file, line, column and field, like topology and
//! plan files.

use crate::approval::ApprovalPolicy;
use crate::gate::GatePolicy;
use crate::stage_hook::HookSpec;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use switchyard_topology::source_map::{line_col, SourceMap};

/// A whole safety policy file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// When an execution needs approval, and for how long a request stands.
    #[serde(default)]
    pub approvals: ApprovalPolicy,
    /// Rules that must hold before a plan starts and between stages.
    #[serde(default)]
    pub gates: GatePolicy,
    /// Commands run at execution and stage boundaries.
    #[serde(default)]
    pub hooks: Vec<HookSpec>,
    /// Where this policy was read from (`None`: no file, the defaults).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// File as given.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path (`gates.check[0].timeout_ms`), when one can be named.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The policy file that belongs to `topology_file`: same directory, same
/// stem, `.safety.toml`.
pub fn path_for(topology_file: &Path) -> PathBuf {
    let stem = topology_file
        .file_stem()
        .map_or_else(|| "topology".into(), |s| s.to_string_lossy().into_owned());
    topology_file.with_file_name(format!("{stem}.safety.toml"))
}

/// Read the policy beside `topology_file`; the defaults when there is none.
pub fn load(topology_file: &Path) -> Result<Policy, PolicyError> {
    let path = path_for(topology_file);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path.display().to_string(), &text).map(|mut p| {
            p.file = Some(path);
            p
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
        Err(e) => Err(PolicyError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: None,
            message: format!("cannot read file: {e}"),
        }),
    }
}

/// Parse policy text; `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        let field = SourceMap::from_text(text)
            .ok()
            .and_then(|m| m.path_at(offset))
            .filter(|f| !f.is_empty());
        PolicyError {
            file: file.into(),
            line,
            column,
            field,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut problems = policy.gates.problems();
    problems.extend(policy.hooks.iter().enumerate().flat_map(|(i, h)| {
        h.problems()
            .into_iter()
            .map(move |(f, m)| (format!("hooks[{i}].{f}"), m))
    }));
    problems.extend(policy.approvals.problems());
    if let Some((field, message)) = problems.into_iter().next() {
        let map = SourceMap::from_text(text).ok();
        let offset = map.as_ref().map_or(0, |m| m.locate(&field).start);
        let (line, column) = line_col(text, offset);
        return Err(PolicyError {
            file: file.into(),
            line,
            column,
            field: Some(field),
            message,
        });
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lives_beside_the_topology() {
        assert_eq!(
            path_for(Path::new("/srv/dr/shop.toml")),
            PathBuf::from("/srv/dr/shop.safety.toml")
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse(
            "p.toml",
            "[gates]\nmin_healthy_regions = 2\n\n[[gates.check]]\nname = \"x\"\ntimeout_ms = \"soon\"\ncommand = \"true\"\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (6, Some("gates.check[0].timeout_ms")),
            "{e}"
        );
        let e = parse(
            "p.toml",
            "[[hooks]]\nat = \"pre_stage\"\ncommand = \"true\"\ntimeout_ms = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("hooks[0].timeout_ms"), "{e}");
        assert_eq!(e.line, 4, "{e}");
        let e = parse("p.toml", "[approvals]\nforcd = true\n").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:1: "), "{e}");
    }
}
