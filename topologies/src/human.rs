//! rustc-style diagnostics: the source line with the offending field
//! underlined, related places, notes and help. Rendered by
//! codespan-reporting.

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::report::FileReport;
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};

/// Render every report, then a summary line.
pub fn render(reports: &[FileReport], color: bool) -> String {
    let mut buf = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    let config = term::Config::default();
    for r in reports {
        let mut files = SimpleFiles::new();
        let text = r.text.clone().unwrap_or_default();
        let id = files.add(r.file.clone(), text.clone());
        for d in &r.diagnostics {
            let cd = to_codespan(d, id, &text, &r.file);
            if term::emit(&mut buf, &config, &files, &cd).is_err() {
                // A span codespan cannot place; never lose the finding.
                let line = format!(
                    "{}[{}]: {}: {}\n\n",
                    d.severity(),
                    d.rule.code,
                    r.file,
                    d.message
                );
                std::io::Write::write_all(&mut buf, line.as_bytes()).ok();
            }
        }
    }
    let mut out = String::from_utf8_lossy(buf.as_slice()).into_owned();
    out.push_str(&summary(reports));
    out.push('\n');
    out
}

/// `topocheck: checked 2 files: 1 error, 3 warnings`.
pub fn summary(reports: &[FileReport]) -> String {
    let errors: usize = reports.iter().map(|r| r.count(Severity::Error)).sum();
    let warnings: usize = reports.iter().map(|r| r.count(Severity::Warning)).sum();
    let files = reports.len();
    let invalid = reports.iter().filter(|r| r.invalid).count();
    let s = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "topocheck: checked {}: {}, {}",
        s(files, "file"),
        s(errors, "error"),
        s(warnings, "warning")
    );
    if invalid > 0 {
        line.push_str(&format!(" ({} could not be parsed)", s(invalid, "file")));
    }
    line
}

fn clamp(text: &str, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let fix = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = fix(span.start);
    start..fix(span.end).max(start)
}

fn to_codespan(d: &Diagnostic, id: usize, text: &str, file: &str) -> cs::Diagnostic<usize> {
    let severity = match d.severity() {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
    };
    let mut labels = Vec::new();
    let mut notes = Vec::new();
    let mut message = d.message.clone();
    match &d.primary {
        Some(Label {
            span,
            field,
            message: m,
        }) => {
            labels.push(cs::Label::primary(id, clamp(text, span)).with_message(m.clone()));
            if !field.is_empty() {
                notes.push(format!("field: {field}"));
            }
        }
        None => message = format!("{file}: {message}"),
    }
    for l in &d.secondary {
        labels.push(cs::Label::secondary(id, clamp(text, &l.span)).with_message(l.message.clone()));
    }
    notes.extend(d.notes.iter().map(|n| format!("note: {n}")));
    notes.push(format!("help: {}", d.help));
    cs::Diagnostic::new(severity)
        .with_code(d.rule.code)
        .with_message(message)
        .with_labels(labels)
        .with_notes(notes)
}
