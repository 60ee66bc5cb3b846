//! The parser: defaults, and errors that name file, line, column and field.

use switchyard_topology::{parse_file, parse_source, parse_str, ParseErrorKind, StoreKind};

const MINIMAL: &str = r#"name = "shop"

[[regions]]
name = "chicago"
role = "primary"

[[stores]]
name = "orders"
kind = "mongodb"

[[stores.members]]
name = "orders-1"
host = "m1.chicago.internal:27017"
region = "chicago"
"#;

#[test]
fn defaults_are_applied() {
    let t = parse_str("x.toml", MINIMAL).unwrap();
    let s = &t.stores[0];
    assert_eq!(s.kind, StoreKind::Mongodb);
    assert!(s.depends_on.is_empty());
    let m = &s.members[0];
    assert_eq!(
        (
            m.priority,
            m.votes,
            m.arbiter,
            m.hidden,
            m.read_only_replica
        ),
        (1.0, 1, false, false, false)
    );
    assert_eq!(m.failover_priority, None);
}

fn err(text: &str) -> switchyard_topology::ParseError {
    parse_str("topo.toml", text).expect_err("must not parse")
}

#[test]
fn unknown_field_names_path_line_and_column() {
    let e = err(&format!("{MINIMAL}priorty = 2\n"));
    assert_eq!(e.kind, ParseErrorKind::Schema);
    assert_eq!(e.field.as_deref(), Some("stores[0].members[0].priorty"));
    assert_eq!((e.line, e.column), (15, 1));
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "topo.toml:15:1: field `stores[0].members[0].priorty`: unknown field `priorty`"
        ),
        "{shown}"
    );
}

#[test]
fn unknown_top_level_field() {
    let e = err(&MINIMAL.replace("name = \"shop\"", "name = \"shop\"\nowner = \"me\""));
    assert_eq!(e.field.as_deref(), Some("owner"));
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn wrong_type_names_the_field() {
    let e = err(&format!("{MINIMAL}votes = \"one\"\n"));
    assert_eq!(e.kind, ParseErrorKind::Schema);
    assert_eq!(e.field.as_deref(), Some("stores[0].members[0].votes"));
    assert_eq!((e.line, e.column), (15, 9));
    let e = err(&format!("{MINIMAL}votes = -1\n"));
    assert_eq!(e.field.as_deref(), Some("stores[0].members[0].votes"));
}

#[test]
fn unknown_enum_value_names_the_field() {
    let e = err(&MINIMAL.replace("kind = \"mongodb\"", "kind = \"mysql\""));
    assert_eq!(e.field.as_deref(), Some("stores[0].kind"));
    assert_eq!(e.line, 9);
    assert!(e.message.contains("mysql"), "{}", e.message);
    let e = err(&MINIMAL.replace("role = \"primary\"", "role = \"main\""));
    assert_eq!(e.field.as_deref(), Some("regions[0].role"));
}

#[test]
fn missing_field_names_the_field() {
    let e = err(&MINIMAL.replace("region = \"chicago\"\n", ""));
    assert_eq!(e.field.as_deref(), Some("stores[0].members[0].region"));
    assert!(e.line >= 11, "{e}");
}

#[test]
fn syntax_error_has_position_and_key() {
    let e = err(&MINIMAL.replace("kind = \"mongodb\"", "kind = mongodb"));
    assert_eq!(e.kind, ParseErrorKind::Syntax);
    assert_eq!(e.line, 9);
    assert_eq!(e.field.as_deref(), Some("stores[0].kind"));
    let e = err("name = \"x\"\nname = \"y\"\n");
    assert_eq!(e.kind, ParseErrorKind::Syntax);
    assert_eq!(e.line, 2);
}

#[test]
fn inline_tables_are_located_too() {
    let text = "name = \"t\"\nregions = [{ name = \"a\", role = \"primary\" }]\n[[stores]]\nname = \"s\"\nkind = \"postgres\"\nmembers = [{ name = \"m\", host = \"h:1\", region = \"a\", votez = 1 }]\n";
    let e = parse_str("t.toml", text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("stores[0].members[0].votez"));
    assert_eq!(e.line, 6);
    let ok = text.replace(", votez = 1", "");
    let parsed = parse_source("t.toml", &ok).unwrap();
    let span = parsed.source_map.locate("stores[0].members[0].region");
    assert_eq!(&ok[span], "\"a\"");
}

#[test]
fn files_unreadable_or_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let e = parse_file(&missing).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::Io);
    assert!(e.file.ends_with("missing.toml"));
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, b"name = \"a\"\nx = \"\xff\"\n").unwrap();
    let e = parse_file(&bin).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::Syntax);
    assert_eq!((e.line, e.column), (2, 6));
    let good = dir.path().join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert_eq!(parse_file(&good).unwrap().name, "shop");
}

#[test]
fn model_round_trips_through_toml() {
    let t = parse_str("x.toml", MINIMAL).unwrap();
    let again = parse_str("y.toml", &t.to_toml()).unwrap();
    assert_eq!(t, again);
}

#[test]
fn hooks_and_store_options_parse() {
    let text = MINIMAL.replace("kind = \"mongodb\"", "kind = \"postgres\"\nmax_lag_bytes = 1024\nmax_lag_ms = 500\n[stores.connection]\nuser = \"u\"\npassword_env = \"PW\"\n[stores.settings]\nelection_timeout_ms = 10")
        + "[stores.members.hooks]\nstop = \"ssh {host} stop\"\nstart_as_standby = \"follow {primary_host} {primary_port}\"\ntimeout_ms = 1000\n[stores.members.hooks.extra]\ncheckpoint = \"psql -h {host} -c CHECKPOINT\"\n";
    let t = parse_str("x.toml", &text).unwrap();
    let s = &t.stores[0];
    assert_eq!((s.max_lag_bytes, s.max_lag_ms), (Some(1024), Some(500)));
    assert_eq!(s.connection.password_env.as_deref(), Some("PW"));
    let h = &s.members[0].hooks;
    assert_eq!(h.stop.as_deref(), Some("ssh {host} stop"));
    assert_eq!(
        h.extra.get("checkpoint").map(String::as_str),
        Some("psql -h {host} -c CHECKPOINT")
    );
    let e = err(&text.replace("timeout_ms = 1000", "timeout = 1000"));
    assert_eq!(
        e.field.as_deref(),
        Some("stores[0].members[0].hooks.timeout")
    );
}
