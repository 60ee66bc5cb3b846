//! Where every field of a topology file was written.
//!
//! serde throws source positions away, yet every diagnostic must point at the
//! line that caused it. So the spanned TOML document (toml's `DeTable`, the
//! same parser that fills the model) is turned into a tree of key and value
//! spans that rules query by field path (`stores[0].members[1].votes`). A
//! defaulted field that was never written falls back to the `name` of the
//! table that would hold it.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use toml09::de::{DeTable, DeValue};
use toml09::Spanned;

/// A byte range in a source text.
pub type Span = Range<usize>;

/// Key and value spans of one written field or table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The key (`votes` in `votes = 1`); `None` for array elements and the root.
    pub key: Option<Span>,
    /// The value; for a table, the span the parser gives it.
    pub value: Option<Span>,
}

/// One written value and what it contains. Keys are kept as spans into the
/// text rather than strings: a 10,000-member file has ~100,000 of them.
#[derive(Debug, Clone, Default)]
struct Node {
    entry: Entry,
    fields: Vec<Node>,
    items: Vec<Node>,
}

/// Field path → source spans for one parsed file.
///
/// Built lazily from the source text on first lookup: a topology that passes
/// every rule never needs a location, and mapping costs about as much as
/// parsing.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    text: Arc<str>,
    root: OnceLock<Node>,
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `stores[0].members[1].votes` → Key(stores) Index(0) Key(members) Index(1) Key(votes).
fn segments(path: &str) -> Option<Vec<Seg<'_>>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            out.push(Seg::Index(r[..close].parse().ok()?));
            rest = &r[close + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(Seg::Key(&r[..end]));
            rest = &r[end..];
        }
    }
    Some(out)
}

impl SourceMap {
    /// Map every field of `text`, now. Fails when `text` is not valid TOML.
    pub fn from_text(text: &str) -> Result<SourceMap, toml09::de::Error> {
        let doc = DeTable::parse(text)?;
        let map = SourceMap {
            text: text.into(),
            root: OnceLock::new(),
        };
        let _ = map.root.set(build(doc.get_ref()));
        Ok(map)
    }

    /// Map whatever part of `text` the parser could recover, for locating a
    /// syntax error's field.
    pub fn recovered(text: &str) -> SourceMap {
        let (doc, _) = DeTable::parse_recoverable(text);
        let map = SourceMap {
            text: text.into(),
            root: OnceLock::new(),
        };
        let _ = map.root.set(build(doc.get_ref()));
        map
    }

    /// A map of `text`, built when first needed. Text that is not valid TOML
    /// gives an empty map (every lookup then answers offset 0).
    pub fn lazy(text: impl Into<Arc<str>>) -> SourceMap {
        SourceMap {
            text: text.into(),
            root: OnceLock::new(),
        }
    }

    fn root(&self) -> &Node {
        self.root.get_or_init(|| match DeTable::parse(&self.text) {
            Ok(doc) => build(doc.get_ref()),
            Err(_) => Node::default(),
        })
    }

    /// The key as written, without quotes.
    fn key_text(&self, span: &Span) -> &str {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let quoted = raw.len() >= 2
            && (raw.starts_with('"') && raw.ends_with('"')
                || raw.starts_with('\'') && raw.ends_with('\''));
        if quoted {
            &raw[1..raw.len() - 1]
        } else {
            raw
        }
    }

    fn node(&self, path: &str) -> Option<&Node> {
        let mut node = self.root();
        for seg in segments(path)? {
            node = match seg {
                Seg::Index(i) => node.items.get(i)?,
                Seg::Key(k) => node.fields.iter().find(|f| {
                    f.entry
                        .key
                        .as_ref()
                        .is_some_and(|ks| self.key_text(ks) == k)
                })?,
            };
        }
        Some(node)
    }

    /// The entry for `path`, if that field was written in the file.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        if path.is_empty() {
            return None;
        }
        self.node(path).map(|n| &n.entry)
    }

    /// Whether the field at `path` was written in the file (as opposed to defaulted).
    pub fn is_written(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The best span to underline for `path`: its value if written, else the
    /// `name` of the nearest written table that would hold it (a defaulted
    /// `priority` points at its member's name). Returns an empty span at 0
    /// when nothing matches.
    pub fn locate(&self, path: &str) -> Span {
        let mut p = path;
        loop {
            if let Some(span) = self.get(p).and_then(|e| e.value.clone().or(e.key.clone())) {
                return span;
            }
            let Some(up) = parent(p) else { return 0..0 };
            if !up.is_empty() {
                if let Some(span) = self
                    .get(&format!("{up}.name"))
                    .and_then(|e| e.value.clone())
                {
                    return span;
                }
            }
            p = up;
        }
    }

    /// The span of the key of `path` if written, else [`SourceMap::locate`].
    pub fn locate_key(&self, path: &str) -> Span {
        match self.get(path).and_then(|e| e.key.clone()) {
            Some(k) => k,
            None => self.locate(path),
        }
    }

    /// The deepest written field whose key or value contains `offset`, as a
    /// path; used to name the field a serde error is about.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let mut path = String::new();
        let mut best: Option<(String, usize)> = None;
        self.search(self.root(), offset, &mut path, &mut best);
        best.map(|(p, _)| p)
    }

    fn search(
        &self,
        node: &Node,
        offset: usize,
        path: &mut String,
        best: &mut Option<(String, usize)>,
    ) {
        if !path.is_empty() {
            for span in [&node.entry.key, &node.entry.value].into_iter().flatten() {
                let hit = span.contains(&offset) || (span.is_empty() && span.start == offset);
                // Prefer the narrowest span; on ties the deeper path.
                if hit
                    && best.as_ref().is_none_or(|(bp, bl)| {
                        span.len() < *bl || (span.len() == *bl && path.len() > bp.len())
                    })
                {
                    *best = Some((path.clone(), span.len()));
                }
            }
        }
        for f in &node.fields {
            let len = path.len();
            let key = f.entry.key.as_ref().map_or("", |k| self.key_text(k));
            push_key(path, key);
            self.search(f, offset, path, best);
            path.truncate(len);
        }
        for (i, item) in node.items.iter().enumerate() {
            let len = path.len();
            push_index(path, i);
            self.search(item, offset, path, best);
            path.truncate(len);
        }
    }
}

fn build(root: &DeTable<'_>) -> Node {
    Node {
        entry: Entry::default(),
        fields: table_fields(root),
        items: Vec::new(),
    }
}

fn table_fields(table: &DeTable<'_>) -> Vec<Node> {
    table.iter().map(|(k, v)| node(Some(k.span()), v)).collect()
}

fn node(key: Option<Span>, value: &Spanned<DeValue<'_>>) -> Node {
    let (fields, items) = match value.get_ref() {
        DeValue::Table(t) => (table_fields(t), Vec::new()),
        DeValue::Array(a) => (Vec::new(), a.iter().map(|v| node(None, v)).collect()),
        _ => (Vec::new(), Vec::new()),
    };
    Node {
        entry: Entry {
            key,
            value: Some(value.span()),
        },
        fields,
        items,
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{i}]");
}

/// `stores[0].members[1]` → `stores[0].members` → `stores[0]` → `stores`.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_walks_up() {
        assert_eq!(
            parent("stores[0].members[1].votes"),
            Some("stores[0].members[1]")
        );
        assert_eq!(parent("stores[0].members[1]"), Some("stores[0].members"));
        assert_eq!(parent("stores[0]"), Some("stores"));
        assert_eq!(parent("stores"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn line_col_counts_characters() {
        let t = "a = 1\nné = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, t.find('=').unwrap()), (1, 3));
        // Offset inside a multi-byte char or past the end never panics.
        assert_eq!(line_col(t, 8), (2, 2));
        assert_eq!(line_col(t, 999).0, 3);
    }

    #[test]
    fn records_keys_values_and_headers() {
        let text = "name = \"x\"\n[[stores]]\nname = \"a\"\ndepends_on = [\"b\", \"c\"]\n[[stores.members]]\nname = \"m\"\n";
        let sm = SourceMap::from_text(text).unwrap();
        let v = sm
            .get("stores[0].depends_on[1]")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert_eq!(&text[v], "\"c\"");
        let m = sm.locate("stores[0].members[0].name");
        assert_eq!(&text[m], "\"m\"");
        // A defaulted field falls back to its member's name.
        let d = sm.locate("stores[0].members[0].votes");
        assert_eq!(&text[d], "\"m\"");
        assert_eq!(
            sm.path_at(text.find("\"m\"").unwrap()).as_deref(),
            Some("stores[0].members[0].name")
        );
        // Quoted keys are found by their unquoted name.
        let q =
            SourceMap::from_text("\"name\" = \"x\"\n[[stores]]\n'kind' = \"postgres\"\n").unwrap();
        assert!(q.is_written("stores[0].kind"));
        assert!(q.is_written("name"));
        assert!(!q.is_written("stores[1].kind"));
        assert!(!q.is_written("stores[x]"));
    }
}

/// Start and end (exclusive) of a span as 1-based line and column numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based first line.
    pub line: usize,
    /// 1-based first column, in characters.
    pub column: usize,
    /// 1-based last line.
    pub end_line: usize,
    /// 1-based column just past the end, in characters.
    pub end_column: usize,
}

/// Line starts of a text, for turning many spans into line and column
/// numbers without rescanning the file for each.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Index `text`.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        LineIndex { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    /// Line and column numbers of `span`.
    pub fn position(&self, span: &Span) -> Position {
        let (line, column) = self.line_col(span.start);
        let (end_line, end_column) = self.line_col(span.end.max(span.start));
        Position {
            line,
            column,
            end_line,
            end_column,
        }
    }
}

/// Line and column numbers of `span` in `text`.
pub fn position(text: &str, span: &Span) -> Position {
    LineIndex::new(text).position(span)
}
