//! What a rule reports: a code, a severity, a message, the place in the file
//! it concerns and how to fix it. Rendering lives in `human.rs`, `json.rs`
//! and `sarif.rs`; this file is only the data.

use crate::parse::{ParseError, ParseErrorKind};
use crate::rules::{self, Rule};
use crate::source_map::Span;
use serde::Serialize;
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The topology is accepted, but something is likely wrong.
    Warning,
    /// The topology is refused.
    Error,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An underlined range of the source with a short explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Byte range in the file.
    pub span: Span,
    /// Field path the range belongs to (`stores[0].members[1].region`).
    pub field: String,
    /// Text shown under the underline.
    pub message: String,
}

/// One finding in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The rule that fired.
    pub rule: &'static Rule,
    /// One-line description of this occurrence.
    pub message: String,
    /// The place the finding is about; `None` only for unreadable files.
    pub primary: Option<Label>,
    /// Related places (other members of the lost region, the first definition…).
    pub secondary: Vec<Label>,
    /// Extra facts: vote arithmetic per region, the full cycle, …
    pub notes: Vec<String>,
    /// How to fix it, specific to this occurrence when possible.
    pub help: String,
    /// Store concerned, if any.
    pub store: Option<String>,
    /// Member concerned, if any.
    pub member: Option<String>,
}

impl Diagnostic {
    /// A finding of `rule` at `span` (field `field`).
    pub fn new(
        rule: &'static Rule,
        message: impl Into<String>,
        span: Span,
        field: impl Into<String>,
    ) -> Self {
        Diagnostic {
            rule,
            message: message.into(),
            primary: Some(Label {
                span,
                field: field.into(),
                message: String::new(),
            }),
            secondary: Vec::new(),
            notes: Vec::new(),
            help: rule.help.to_string(),
            store: None,
            member: None,
        }
    }

    /// Severity of the rule.
    pub fn severity(&self) -> Severity {
        self.rule.severity
    }

    /// Set the text under the primary underline.
    pub fn label(mut self, message: impl Into<String>) -> Self {
        if let Some(p) = &mut self.primary {
            p.message = message.into();
        }
        self
    }

    /// Add a related place.
    pub fn secondary(
        mut self,
        span: Span,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.secondary.push(Label {
            span,
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Add a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Replace the rule's generic help with one for this occurrence.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Name the store concerned.
    pub fn store(mut self, store: &str) -> Self {
        self.store = Some(store.to_string());
        self
    }

    /// Name the member concerned.
    pub fn member(mut self, member: &str) -> Self {
        self.member = Some(member.to_string());
        self
    }

    /// The diagnostic for a file that could not be read or parsed.
    pub fn from_parse_error(e: &ParseError) -> Self {
        let field = e.field.clone().unwrap_or_default();
        let label = match e.kind {
            ParseErrorKind::Io => None,
            _ => e.span.clone().map(|span| Label {
                span,
                field: field.clone(),
                message: e
                    .fix
                    .suggestion
                    .as_ref()
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_default(),
            }),
        };
        let message = if field.is_empty() {
            e.message.clone()
        } else {
            format!("field `{field}`: {}", e.message)
        };
        Diagnostic {
            rule: &rules::INVALID_FILE,
            message,
            primary: label,
            secondary: Vec::new(),
            notes: Vec::new(),
            help: e.fix.help.clone(),
            store: None,
            member: None,
        }
    }
}
