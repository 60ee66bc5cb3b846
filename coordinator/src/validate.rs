//! Loading a plan file and validating it against a topology and the stores'
//! capabilities, before anything runs. Every problem names the file, the line
//! and the field (`plan.toml:14:9: stages[1].steps[0].store: unknown store ...`).

use crate::expectation::Expectation;
use crate::plan::{Plan, PlanOp, PositionSource, PLAN_VERSION};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use switchyard_controller::Capability;
use switchyard_topology::Topology;

/// One problem found in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIssue {
    /// File as given (`-` for text without a file).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Dotted path of the field (`stages[1].steps[0].store`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PlanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A plan that was rejected; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    /// The problems, in file order.
    pub issues: Vec<PlanIssue>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// A segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Source text of a plan, used to turn field paths into line numbers.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl Source<'_> {
    fn issue(&self, path: &[Seg], message: String) -> PlanIssue {
        let (line, column) = self
            .doc
            .as_ref()
            .and_then(|d| locate(d.as_item(), path))
            .map(|off| line_col(self.text, off))
            .unwrap_or((0, 0));
        PlanIssue {
            file: self.file.to_string(),
            line,
            column,
            field: path_string(path),
            message,
        }
    }
}

/// Offset of the deepest node of `path` that exists in the document.
fn locate(item: &toml_edit::Item, path: &[Seg]) -> Option<usize> {
    use toml_edit::{Item, Value};
    let Some((first, rest)) = path.split_first() else {
        return item.span().map(|s| s.start);
    };
    let here = item.span().map(|s| s.start);
    let deeper = match (item, first) {
        (Item::Table(t), Seg::Key(k)) => t.get_key_value(k).and_then(|(key, child)| {
            if rest.is_empty() {
                key.span()
                    .map(|s| s.start)
                    .or_else(|| child.span().map(|s| s.start))
            } else {
                locate(child, rest).or_else(|| key.span().map(|s| s.start))
            }
        }),
        (Item::ArrayOfTables(a), Seg::Index(i)) => a.get(*i).and_then(|t| {
            let child = Item::Table(t.clone());
            locate(&child, rest).or_else(|| t.span().map(|s| s.start))
        }),
        (Item::Value(Value::InlineTable(t)), Seg::Key(k)) => {
            t.get_key_value(k).and_then(|(key, v)| {
                if rest.is_empty() {
                    key.span().map(|s| s.start)
                } else {
                    locate(v, rest).or_else(|| key.span().map(|s| s.start))
                }
            })
        }
        (Item::Value(Value::Array(a)), Seg::Index(i)) => a.get(*i).and_then(|v| {
            locate(&Item::Value(v.clone()), rest).or_else(|| v.span().map(|s| s.start))
        }),
        _ => None,
    };
    deeper.or(here)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parse plan text (TOML, or JSON when it starts with `{`).
pub fn parse_plan(file: &str, text: &str) -> Result<Plan, PlanError> {
    let one = |line, column, message: String| PlanError {
        issues: vec![PlanIssue {
            file: file.to_string(),
            line,
            column,
            field: String::new(),
            message,
        }],
    };
    if text.trim_start().starts_with('{') {
        // `plan --output json` prints the plan under its envelope
        // (`schema`, `ts`); the plan is what is inside.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| one(e.line(), e.column(), e.to_string()))?;
        if value.get("schema").is_some() {
            return serde_json::from_value(crate::output::strip_envelope(value))
                .map_err(|e| one(0, 0, e.to_string()));
        }
        return serde_json::from_str(text).map_err(|e| one(e.line(), e.column(), e.to_string()));
    }
    toml::from_str::<Plan>(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        let mut err = one(line, column, e.message().trim().to_string());
        // Name the field too: the innermost value whose text holds the error.
        if let (Some(span), Ok(doc)) = (e.span(), toml_edit::ImDocument::parse(text)) {
            let mut best = None;
            field_at(doc.as_item(), span.start, &mut vec![], &mut best);
            if let Some((_, path)) = best {
                err.issues[0].field = path_string(&path);
            }
        }
        err
    })
}

/// The path of the innermost value whose span contains `offset` (with the
/// span's length, to compare candidates).
fn field_at(
    item: &toml_edit::Item,
    offset: usize,
    path: &mut Vec<Seg>,
    best: &mut Option<(usize, Vec<Seg>)>,
) {
    use toml_edit::{Item, Value};
    fn value(v: &Value, offset: usize, path: &mut Vec<Seg>, best: &mut Option<(usize, Vec<Seg>)>) {
        if let Some(s) = v.span() {
            if s.contains(&offset) && best.as_ref().is_none_or(|(len, _)| s.len() <= *len) {
                *best = Some((s.len(), path.clone()));
            }
        }
        match v {
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    value(v, offset, path, best);
                    path.pop();
                }
            }
            Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    path.push(Seg::Key(k.to_string()));
                    value(v, offset, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    match item {
        Item::Value(v) => value(v, offset, path, best),
        Item::Table(t) => {
            for (k, child) in t.iter() {
                path.push(Seg::Key(k.to_string()));
                field_at(child, offset, path, best);
                path.pop();
            }
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                for (k, child) in t.iter() {
                    path.push(Seg::Key(k.to_string()));
                    field_at(child, offset, path, best);
                    path.pop();
                }
                path.pop();
            }
        }
        Item::None => {}
    }
}

/// Read, parse and validate a plan file.
pub fn load_plan(
    path: &Path,
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
) -> Result<Plan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        issues: vec![PlanIssue {
            file: file.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    load_plan_text(&file, &text, topology, caps)
}

/// Parse and validate plan text that came from `file` (a path, or what the
/// server names a request body), with file:line:field errors.
pub fn load_plan_text(
    file: &str,
    text: &str,
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
) -> Result<Plan, PlanError> {
    let plan = parse_plan(file, text)?;
    validate_source(&plan, topology, caps, file, text)?;
    Ok(plan)
}

/// Validate a plan with no source text (generated plans; no line numbers).
pub fn validate(
    plan: &Plan,
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
) -> Result<(), PlanError> {
    validate_source(plan, topology, caps, "<plan>", "")
}

/// The capability a step lacks, by the one table in `switchyard-controller`.
fn op_unsupported(op: &PlanOp, cap: &Capability) -> Option<&'static str> {
    let need = op.need();
    if !cap.has(need) {
        return Some(need.what());
    }
    let chosen = switchyard_controller::Need::ChosenCandidate;
    (op.candidate().is_some() && !cap.has(chosen)).then(|| chosen.what())
}

fn validate_source(
    plan: &Plan,
    topology: &Topology,
    caps: &BTreeMap<String, Capability>,
    file: &str,
    text: &str,
) -> Result<(), PlanError> {
    let src = Source {
        file,
        text,
        doc: if text.trim_start().starts_with('{') || text.is_empty() {
            None
        } else {
            toml_edit::ImDocument::parse(text).ok()
        },
    };
    let mut issues = vec![];
    let key = |k: &str| Seg::Key(k.to_string());
    let stores: Vec<&str> = topology.stores.iter().map(|s| s.name.as_str()).collect();
    let regions: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
    let known_store = |name: &str| stores.contains(&name);
    let unknown_store = |name: &str| {
        format!(
            "unknown store `{name}` (topology `{}` has: {})",
            topology.name,
            stores.join(", ")
        )
    };
    let unknown_region = |name: &str| {
        format!(
            "unknown region `{name}` (topology has: {})",
            regions.join(", ")
        )
    };

    if plan.version != PLAN_VERSION {
        issues.push(src.issue(
            &[key("version")],
            format!(
                "unsupported plan version {} (expected {PLAN_VERSION})",
                plan.version
            ),
        ));
    }
    if plan.topology != topology.name {
        issues.push(src.issue(
            &[key("topology")],
            format!(
                "plan was made for topology `{}`, not `{}`",
                plan.topology, topology.name
            ),
        ));
    }
    if !regions.contains(&plan.target_region.as_str()) {
        issues.push(src.issue(&[key("target_region")], unknown_region(&plan.target_region)));
    }
    if plan.stages.is_empty() {
        issues.push(src.issue(&[key("stages")], "a plan needs at least one stage".into()));
    }

    // Dependencies: topology plus the plan's own additions, which must be acyclic.
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &topology.stores {
        for d in &s.depends_on {
            deps.entry(s.name.as_str()).or_default().insert(d.as_str());
        }
    }
    for (store, list) in &plan.depends_on {
        if !known_store(store) {
            issues.push(src.issue(&[key("depends_on"), key(store)], unknown_store(store)));
        }
        for (i, d) in list.iter().enumerate() {
            if !known_store(d) {
                issues.push(src.issue(
                    &[key("depends_on"), key(store), Seg::Index(i)],
                    unknown_store(d),
                ));
            }
            deps.entry(store.as_str()).or_default().insert(d.as_str());
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        // Point at the plan's own edge that closes the cycle, if it has one.
        let path = cycle
            .windows(2)
            .find_map(|w| {
                let list = plan.depends_on.get(w[0])?;
                let i = list.iter().position(|d| d == w[1])?;
                Some(vec![key("depends_on"), key(w[0]), Seg::Index(i)])
            })
            .unwrap_or_else(|| vec![key("depends_on")]);
        issues.push(src.issue(&path, format!("dependency cycle: {}", cycle.join(" → "))));
    }

    let mut promoted_in: BTreeMap<&str, usize> = BTreeMap::new();
    let mut captured: BTreeSet<&str> = BTreeSet::new();
    for (si, stage) in plan.stages.iter().enumerate() {
        let stage_path = [key("stages"), Seg::Index(si)];
        if stage.timeout_ms == 0 {
            let mut p = stage_path.to_vec();
            p.push(key("timeout_ms"));
            issues.push(src.issue(&p, "timeout_ms must be positive".into()));
        }
        for (i, step) in stage.steps.iter().enumerate() {
            let mut p = stage_path.to_vec();
            p.extend([key("steps"), Seg::Index(i)]);
            let field = |f: &str| {
                let mut q = p.clone();
                q.push(key(f));
                q
            };
            if !known_store(&step.store) {
                issues.push(src.issue(&field("store"), unknown_store(&step.store)));
                continue;
            }
            if let Some(r) = step.op.region() {
                if !regions.contains(&r) {
                    issues.push(src.issue(&field("target_region"), unknown_region(r)));
                } else if let Some(c) = step.op.candidate() {
                    if let Err(e) = crate::candidate::check(topology, &step.store, c, r) {
                        issues.push(src.issue(&field("candidate"), e.to_string()));
                    }
                }
            }
            if let Some(cap) = caps.get(&step.store) {
                if let Some(what) = op_unsupported(&step.op, cap) {
                    issues.push(src.issue(
                        &field("op"),
                        format!(
                            "store `{}` cannot do `{}`: its controller does not support {what}",
                            step.store,
                            step.op.name()
                        ),
                    ));
                }
            }
            match &step.op {
                PlanOp::CapturePosition => {
                    captured.insert(step.store.as_str());
                }
                PlanOp::WaitForPosition {
                    position: PositionSource::Captured(_),
                    ..
                } if !captured.contains(step.store.as_str()) => {
                    issues.push(src.issue(
                        &field("position"),
                        format!(
                            "waits for a captured position but no earlier step captures one for `{}`",
                            step.store
                        ),
                    ));
                }
                PlanOp::Promote { .. } => {
                    for d in deps.get(step.store.as_str()).into_iter().flatten() {
                        match promoted_in.get(d) {
                            Some(&ds) if ds < si => {}
                            Some(_) => issues.push(src.issue(
                                &field("store"),
                                format!(
                                    "`{}` depends on `{d}` and must be promoted in a later stage than it",
                                    step.store
                                ),
                            )),
                            None if plan.stages.iter().skip(si).any(|st| {
                                st.steps.iter().any(|s| {
                                    s.store == *d && matches!(s.op, PlanOp::Promote { .. })
                                })
                            }) =>
                            {
                                issues.push(src.issue(
                                    &field("store"),
                                    format!(
                                        "`{}` is promoted before `{d}`, which it depends on",
                                        step.store
                                    ),
                                ))
                            }
                            None => {}
                        }
                    }
                    promoted_in.entry(step.store.as_str()).or_insert(si);
                }
                _ => {}
            }
        }
        for (i, entry) in stage.checkpoint.iter().enumerate() {
            let mut p = stage_path.to_vec();
            p.extend([key("checkpoint"), Seg::Index(i)]);
            if !known_store(&entry.store) {
                let mut q = p.clone();
                q.push(key("store"));
                issues.push(src.issue(&q, unknown_store(&entry.store)));
                continue;
            }
            if entry.expect.is_empty() {
                let mut q = p.clone();
                q.push(key("expect"));
                issues.push(src.issue(
                    &q,
                    "a checkpoint entry needs at least one expectation".into(),
                ));
            }
            for (j, e) in entry.expect.iter().enumerate() {
                let mut q = p.clone();
                q.extend([key("expect"), Seg::Index(j)]);
                for r in e.regions() {
                    if !regions.contains(&r) {
                        issues.push(src.issue(&q, unknown_region(r)));
                    }
                }
                if let Some(cap) = caps.get(&entry.store) {
                    if let Some(why) = e.unsupported_by(cap) {
                        issues.push(src.issue(
                            &q,
                            format!("store `{}` cannot express `{e}`: {why}", entry.store),
                        ));
                    }
                }
                check_lag_bound(e, &entry.store, topology, &q, &src, &mut issues);
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        issues.sort_by_key(|i| (i.line, i.column));
        Err(PlanError { issues })
    }
}

// A zero lag bound can never be observed on a live store; refusing it early
// saves an operator a checkpoint timeout.
fn check_lag_bound(
    e: &Expectation,
    _store: &str,
    _topology: &Topology,
    path: &[Seg],
    src: &Source<'_>,
    issues: &mut Vec<PlanIssue>,
) {
    if let Expectation::LagBelow(0) = e {
        issues.push(src.issue(
            path,
            "lag_below(0) can never be observed; use a positive bound".into(),
        ));
    }
}

/// A dependency cycle, as the list of stores around it (first repeated last).
pub fn find_cycle<'a>(deps: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Active) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c = stack[start..].to_vec();
                c.push(n);
                return Some(c);
            }
            None => {}
        }
        marks.insert(n, Mark::Active);
        stack.push(n);
        for d in deps.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, deps, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in deps.keys() {
        let mut stack = vec![];
        if let Some(c) = visit(n, deps, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::tests::{caps, topology};

    const GOOD: &str = r#"version = 1
name = "hand-written"
topology = "lab"
target_region = "west"
mode = "planned"

[[stages]]
name = "fence"

[[stages.steps]]
store = "orders"
op = "fence"

[[stages.steps]]
store = "orders"
op = "capture_position"

[[stages.checkpoint]]
store = "orders"
expect = ["fenced"]

[[stages]]
name = "promote"

[[stages.steps]]
store = "orders"
op = "wait_for_position"
target_region = "west"
position = "captured"
timeout_ms = 5000

[[stages.steps]]
store = "orders"
op = "promote"
target_region = "west"
mode = "planned"

[[stages.checkpoint]]
store = "orders"
expect = ["primary_in(west)", "lag_below(1048576)"]

[[stages]]
name = "catalog"

[[stages.steps]]
store = "catalog"
op = "promote"
target_region = "west"
mode = "planned"

[[stages.checkpoint]]
store = "catalog"
expect = ["and(primary_in(west), preferred_in(west))"]
"#;

    fn check(text: &str) -> Result<Plan, PlanError> {
        let plan = parse_plan("plan.toml", text)?;
        validate_source(&plan, &topology(true), &caps(), "plan.toml", text)?;
        Ok(plan)
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn good_plan_is_accepted() {
        let p = check(GOOD).unwrap();
        assert_eq!(p.stages.len(), 3);
    }

    #[test]
    fn typo_in_store_names_the_line() {
        let text = GOOD.replacen(
            "store = \"catalog\"\nop = \"promote\"",
            "store = \"catalgo\"\nop = \"promote\"",
            1,
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.issues.len(), 1, "{e}");
        let i = &e.issues[0];
        assert_eq!(i.line, line_of(&text, "catalgo"), "{e}");
        assert_eq!(i.field, "stages[2].steps[0].store");
        assert!(i.message.contains("unknown store `catalgo`"), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "plan.toml:{}:1: stages[2].steps[0].store: ",
                i.line
            )),
            "{e}"
        );
    }

    #[test]
    fn inexpressible_expectation_names_the_line() {
        // MongoDB followers are not re-pointed explicitly: the controller
        // cannot report `followers_follow`.
        let text = GOOD.replace(
            "expect = [\"and(primary_in(west), preferred_in(west))\"]",
            "expect = [\"primary_in(west)\", \"followers_follow\"]",
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.issues.len(), 1, "{e}");
        assert_eq!(e.issues[0].line, line_of(&text, "followers_follow"), "{e}");
        assert!(
            e.issues[0]
                .message
                .contains("cannot express `followers_follow`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_expectation_is_a_parse_error_with_line() {
        let text = GOOD.replace("expect = [\"fenced\"]", "expect = [\"fenced_off\"]");
        let e = check(&text).unwrap_err();
        assert_eq!(e.issues[0].line, line_of(&text, "fenced_off"), "{e}");
        assert!(
            e.issues[0]
                .message
                .contains("unknown expectation `fenced_off`"),
            "{e}"
        );
    }

    #[test]
    fn cycle_names_the_line() {
        let text = GOOD.replace(
            "mode = \"planned\"\n\n[[stages]]",
            "mode = \"planned\"\n\n[depends_on]\norders = [\"catalog\"]\n\n[[stages]]",
        );
        let e = check(&text).unwrap_err();
        let i = e
            .issues
            .iter()
            .find(|i| i.message.contains("cycle"))
            .expect("cycle reported");
        assert_eq!(i.line, line_of(&text, "orders = [\"catalog\"]"), "{e}");
        assert!(
            i.message.contains("orders → catalog → orders")
                || i.message.contains("catalog → orders → catalog"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_op_and_order_violations() {
        // MongoDB has no fencing; catalog promoted before orders although it depends on it.
        let text = GOOD.replacen(
            "store = \"orders\"\nop = \"fence\"",
            "store = \"catalog\"\nop = \"fence\"",
            1,
        );
        let e = check(&text).unwrap_err();
        assert!(e.to_string().contains("cannot do `fence`"), "{e}");
        let swapped = GOOD.replace("name = \"catalog\"", "name = \"x\"");
        let plan = parse_plan("p", &swapped).unwrap();
        let mut p2 = plan.clone();
        p2.stages.swap(1, 2);
        let e = validate(&p2, &topology(true), &caps()).unwrap_err();
        assert!(e.to_string().contains("promoted before `orders`"), "{e}");
    }

    #[test]
    fn wait_without_capture_is_rejected() {
        let text = GOOD.replace("op = \"capture_position\"", "op = \"fence\"");
        let e = check(&text).unwrap_err();
        assert!(e.to_string().contains("no earlier step captures"), "{e}");
        assert_eq!(e.issues[0].line, line_of(&text, "position = \"captured\""));
    }

    #[test]
    fn syntax_and_unknown_field_errors_have_lines() {
        let text = GOOD.replace("timeout_ms = 5000", "timeout_ms = 5000\ntimeout = 3");
        let e = check(&text).unwrap_err();
        assert!(e.issues[0].line > 0, "{e}");
        assert!(e.to_string().contains("timeout"), "{e}");
    }
}
