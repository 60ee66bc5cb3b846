//! Where every field of a topology file was written.
//!
//! serde throws source positions away, yet every diagnostic must point at the
//! line that caused it. So the spanned TOML document (toml's `DeTable`, the
//! same parser that fills the model) is walked once and records, for each field path (`stores[0].members[1].votes`), the byte
//! ranges of its key and value. Rules then ask for a path; a defaulted field
//! that was never written falls back to the table that would hold it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use toml09::de::{DeTable, DeValue};
use toml09::Spanned;

/// A byte range in a source text.
pub type Span = Range<usize>;

/// Key and value spans of one written field or table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The key (`votes` in `votes = 1`); `None` for array elements.
    pub key: Option<Span>,
    /// The value, or a table's header (`[[stores.members]]`).
    pub value: Option<Span>,
}

/// FNV-1a: paths are short and trusted, and SipHash dominated building the
/// map for 10,000-member files.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Field path → source spans for one parsed file.
///
/// Built lazily from the source text on first lookup: a topology that passes
/// every rule never needs a location, and building the map is a quarter of
/// the time to check a 10,000-member file.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    text: Option<Arc<str>>,
    entries: OnceLock<FastMap<String, Entry>>,
}

impl SourceMap {
    /// Map every field of `text`, now. Fails when `text` is not valid TOML.
    pub fn from_text(text: &str) -> Result<SourceMap, toml09::de::Error> {
        let doc = DeTable::parse(text)?;
        let map = SourceMap::default();
        let _ = map.entries.set(build(doc.get_ref()));
        Ok(map)
    }

    /// A map of `text`, built when first needed. Text that is not valid TOML
    /// gives an empty map (every lookup then answers offset 0).
    pub fn lazy(text: impl Into<Arc<str>>) -> SourceMap {
        SourceMap {
            text: Some(text.into()),
            entries: OnceLock::new(),
        }
    }

    fn entries(&self) -> &FastMap<String, Entry> {
        self.entries.get_or_init(|| match &self.text {
            Some(text) => match DeTable::parse(text) {
                Ok(doc) => build(doc.get_ref()),
                Err(_) => FastMap::default(),
            },
            None => FastMap::default(),
        })
    }

    /// The entry for `path`, if that field was written in the file.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries().get(path)
    }

    /// Whether the field at `path` was written in the file (as opposed to defaulted).
    pub fn is_written(&self, path: &str) -> bool {
        self.entries().contains_key(path)
    }

    /// The best span to underline for `path`: its value if written, else the
    /// nearest written ancestor (a defaulted `priority` points at its member's
    /// table). Returns an empty span at 0 when nothing matches.
    pub fn locate(&self, path: &str) -> Span {
        let mut p = path;
        loop {
            if let Some(span) = self
                .entries()
                .get(p)
                .and_then(|e| e.value.clone().or(e.key.clone()))
            {
                return span;
            }
            let Some(up) = parent(p) else { return 0..0 };
            // A table's span is its whole body; its `name` is the better
            // place to underline a field that was left at its default.
            if !up.is_empty() {
                if let Some(span) = self
                    .entries()
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
        match self.entries().get(path).and_then(|e| e.key.clone()) {
            Some(k) => k,
            None => self.locate(path),
        }
    }

    /// The deepest recorded path whose key or value contains `offset`; used to
    /// name the field a serde error is about.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        let mut best: Option<(&str, usize)> = None;
        for (path, e) in self.entries() {
            for span in [&e.key, &e.value].into_iter().flatten() {
                let hit = span.contains(&offset) || (span.is_empty() && span.start == offset);
                if hit {
                    let len = span.len();
                    let better = match best {
                        None => true,
                        // Prefer the narrowest span; on ties the longer (deeper) path.
                        Some((bp, bl)) => len < bl || (len == bl && path.len() > bp.len()),
                    };
                    if better {
                        best = Some((path.as_str(), len));
                    }
                }
            }
        }
        best.map(|(p, _)| p)
    }
}

fn build(root: &DeTable<'_>) -> FastMap<String, Entry> {
    let mut b = Builder(FastMap::default());
    let mut path = String::new();
    b.walk_table(&mut path, root);
    b.0
}

struct Builder(FastMap<String, Entry>);

impl Builder {
    fn walk_table(&mut self, path: &mut String, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let len = path.len();
            push_key(path, key.get_ref());
            self.walk_value(path, Some(key.span()), value);
            path.truncate(len);
        }
    }

    fn walk_value(&mut self, path: &mut String, key: Option<Span>, value: &Spanned<DeValue<'_>>) {
        self.0.insert(
            path.clone(),
            Entry {
                key,
                value: Some(value.span()),
            },
        );
        match value.get_ref() {
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let len = path.len();
                    push_index(path, i);
                    self.walk_value(path, None, v);
                    path.truncate(len);
                }
            }
            DeValue::Table(t) => self.walk_table(path, t),
            _ => {}
        }
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
            sm.path_at(text.find("\"m\"").unwrap()),
            Some("stores[0].members[0].name")
        );
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

/// Line and column numbers of `span` in `text`.
pub fn position(text: &str, span: &Span) -> Position {
    let (line, column) = line_col(text, span.start);
    let (end_line, end_column) = line_col(text, span.end.max(span.start));
    Position {
        line,
        column,
        end_line,
        end_column,
    }
}
