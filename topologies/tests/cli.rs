//! The `topocheck` binary end to end: exit codes, golden human and JSON
//! output for every example, SARIF, --explain. Set UPDATE_GOLDEN=1 to
//! rewrite the golden files after an intended change, then review the diff.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn topocheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topocheck"))
        .args(args)
        .current_dir(crate_dir())
        .env_remove("NO_COLOR")
        .output()
        .expect("run topocheck")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn bad_examples() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(crate_dir().join("examples/bad"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 8, "failing examples missing: {v:?}");
    v
}

/// The `# expect: TC101 TC105` line of an example.
fn expected_codes(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .expect("example has an # expect: line");
    line.split_whitespace().map(str::to_string).collect()
}

fn golden(name: &str, actual: &str) {
    let path = crate_dir().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn shop_passes_cleanly() {
    let o = topocheck(&["examples/shop.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        stdout(&o),
        "topocheck: checked 1 file: 0 errors, 0 warnings\n"
    );
    let o = topocheck(&["--format", "json", "examples/shop.toml"]);
    assert_eq!(stdout(&o), "");
}

/// The topology of docker-compose.yml: its one finding is the warning that
/// OrderGroove's arbiter layout earns (TC103 on `catalog`); anything else it
/// says is a regression of the file or of the checker.
#[test]
fn compose_example_has_only_the_arbiter_warning() {
    let o = topocheck(&["--format", "json", "examples/compose.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let found: Vec<(String, String)> = stdout(&o)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["code"].as_str().unwrap().to_string(),
                v["store"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [("TC103".to_string(), "catalog".to_string())],
        "{}",
        stdout(&o)
    );
}

#[test]
fn shop_fails_when_two_regions_may_be_lost() {
    let o = topocheck(&["--tolerate", "2", "--format", "json", "examples/shop.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("losing chicago and dallas leaves 1 of 5 votes; a majority needs 3")
    );
}

#[test]
fn every_failing_example_reports_exactly_its_rules_with_the_right_exit_code() {
    for name in bad_examples() {
        let rel = format!("examples/bad/{name}");
        let expected = expected_codes(&crate_dir().join(&rel));
        let o = topocheck(&["--format", "json", &rel]);
        let found: BTreeSet<String> = stdout(&o)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("one JSON object per line")["code"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(found, expected, "{name}");
        let want_exit = if expected.contains("TC000") {
            2
        } else if expected.iter().any(|c| {
            switchyard_topology::rules::find(c).unwrap().severity
                == switchyard_topology::Severity::Error
        }) {
            1
        } else {
            0
        };
        assert_eq!(o.status.code(), Some(want_exit), "{name}");
    }
}

#[test]
fn golden_human_and_json_output() {
    for name in bad_examples() {
        let rel = format!("examples/bad/{name}");
        let stem = name.trim_end_matches(".toml");
        let human = topocheck(&["--color", "never", &rel]);
        golden(&format!("{stem}.txt"), &stdout(&human));
        let json = topocheck(&["--format", "json", &rel]);
        golden(&format!("{stem}.jsonl"), &stdout(&json));
    }
}

#[test]
fn json_objects_have_the_documented_fields() {
    let o = topocheck(&["--format", "json", "examples/bad/majority-lost.toml"]);
    let v: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    for key in [
        "file",
        "code",
        "rule",
        "severity",
        "message",
        "line",
        "column",
        "end_line",
        "end_column",
        "field",
        "store",
        "member",
        "label",
        "related",
        "notes",
        "help",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["code"], "TC101");
    assert_eq!(v["severity"], "error");
    assert_eq!(
        v["message"],
        "store `orders`: losing chicago leaves 2 of 5 votes; a majority needs 3"
    );
    assert_eq!(v["field"], "stores[0].name");
    assert_eq!(v["line"], 14);
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let o = topocheck(&["examples/bad/primary-elsewhere.toml"]);
    assert_eq!(o.status.code(), Some(0));
    let o = topocheck(&["--deny-warnings", "examples/bad/primary-elsewhere.toml"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn unreadable_and_unparsable_files_exit_2() {
    let o = topocheck(&["examples/does-not-exist.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("examples/does-not-exist.toml: cannot read file"),
        "{}",
        stdout(&o)
    );
    // A parse failure wins over rule errors in other files.
    let o = topocheck(&[
        "examples/bad/majority-lost.toml",
        "examples/bad/unknown-field.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).ends_with(
        "topocheck: checked 2 files: 2 errors, 0 warnings (1 file could not be parsed)\n"
    ));
    // Usage errors too.
    assert_eq!(topocheck(&[]).status.code(), Some(2));
    assert_eq!(
        topocheck(&["--format", "xml", "examples/shop.toml"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn explain_prints_rule_documentation() {
    let o = topocheck(&["--explain", "TC101"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.starts_with("TC101 majority-lost (error):"), "{out}");
    assert!(out.contains("2 + 2 + 1"));
    let o = topocheck(&["--explain", "dependency-cycle"]);
    assert!(stdout(&o).starts_with("TC009"));
    assert_eq!(topocheck(&["--explain", "TC999"]).status.code(), Some(2));
    let o = topocheck(&["--list-rules"]);
    assert_eq!(
        stdout(&o).lines().count(),
        switchyard_topology::rules::ALL.len()
    );
}

#[test]
fn sarif_is_a_consistent_2_1_0_log() {
    let files = [
        "examples/shop.toml",
        "examples/bad/names.toml",
        "examples/bad/unknown-field.toml",
    ];
    let mut args = vec!["--format", "sarif"];
    args.extend(files);
    let o = topocheck(&args);
    assert_eq!(o.status.code(), Some(2));
    let log: Value = serde_json::from_str(&stdout(&o)).expect("SARIF is JSON");
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), switchyard_topology::rules::ALL.len());
    let artifacts = run["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 3);
    // Relative to the repository root, whatever directory topocheck ran in.
    assert_eq!(
        artifacts[1]["location"]["uri"],
        "topologies/examples/bad/names.toml"
    );
    assert_eq!(artifacts[1]["location"]["uriBaseId"], "%SRCROOT%");
    let root = crate_dir().join("..").canonicalize().unwrap();
    assert_eq!(
        run["originalUriBaseIds"]["%SRCROOT%"]["uri"],
        format!("file://{}/", root.display())
    );
    // Same findings, same places as the JSON format.
    let mut json_args = vec!["--format", "json"];
    json_args.extend(files);
    let lines: Vec<Value> = stdout(&topocheck(&json_args))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), lines.len());
    for (r, j) in results.iter().zip(&lines) {
        assert_eq!(r["ruleId"], j["code"]);
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert_eq!(r["level"], j["severity"]);
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            format!("topologies/{}", j["file"].as_str().unwrap())
        );
        assert_eq!(loc["region"]["startLine"], j["line"]);
        assert_eq!(loc["region"]["startColumn"], j["column"]);
    }
}

#[test]
fn colour_is_opt_in_when_not_a_terminal() {
    let plain = stdout(&topocheck(&["examples/bad/majority-lost.toml"]));
    assert!(!plain.contains('\u{1b}'));
    let coloured = stdout(&topocheck(&[
        "--color",
        "always",
        "examples/bad/majority-lost.toml",
    ]));
    assert!(coloured.contains('\u{1b}'));
}

#[test]
fn tolerating_more_regions_than_exist_fails_every_store() {
    let o = topocheck(&["--tolerate", "9", "--format", "json", "examples/shop.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for store in ["orders", "payments", "ledger", "catalog"] {
        assert!(
            out.contains(&format!("\"store\":\"{store}\"")),
            "{store} not reported:\n{out}"
        );
    }
    assert!(out.contains("losing chicago, dallas and phoenix leaves 0 of 5 votes"));
}

#[test]
fn several_files_are_summarised_together() {
    let o = topocheck(&[
        "examples/shop.toml",
        "examples/bad/majority-lost.toml",
        "examples/bad/primary-elsewhere.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).ends_with("topocheck: checked 3 files: 1 error, 1 warning\n"),
        "{}",
        stdout(&o)
    );
}

fn sarif(args: &[&str]) -> Value {
    let mut all = vec!["--format", "sarif"];
    all.extend(args);
    serde_json::from_str(&stdout(&topocheck(&all))).expect("SARIF is JSON")
}

#[test]
fn sarif_results_have_fingerprints_and_regions() {
    let log = sarif(&[
        "examples/bad/names.toml",
        "examples/bad/majority-lost.toml",
        "examples/does-not-exist.toml",
    ]);
    let results = log["runs"][0]["results"].as_array().unwrap();
    let mut prints = BTreeSet::new();
    for r in results {
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1, "{r}");
        let fp = r["partialFingerprints"]["topocheck/v1"].as_str().unwrap();
        assert!(prints.insert(fp.to_string()), "fingerprint {fp} repeated");
    }
    let unreadable = results.last().unwrap();
    assert_eq!(unreadable["ruleId"], "TC000");
    assert_eq!(
        unreadable["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "topologies/examples/does-not-exist.toml"
    );
}

#[test]
fn fingerprints_survive_lines_moving() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(crate_dir().join("examples/bad/names.toml")).unwrap();
    let a = dir.path().join("a.toml");
    std::fs::write(&a, &text).unwrap();
    let before = sarif(&[
        "--sarif-root",
        dir.path().to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    std::fs::write(&a, format!("# a comment\n\n{text}")).unwrap();
    let after = sarif(&[
        "--sarif-root",
        dir.path().to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    let prints = |log: &Value| -> Vec<(Value, Value)> {
        log["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["partialFingerprints"].clone(),
                    r["locations"][0]["physicalLocation"]["region"]["startLine"].clone(),
                )
            })
            .collect()
    };
    let (b, a2) = (prints(&before), prints(&after));
    assert_eq!(b.len(), 4);
    for ((fb, lb), (fa, la)) in b.iter().zip(&a2) {
        assert_eq!(fb, fa);
        assert_eq!(la.as_u64().unwrap(), lb.as_u64().unwrap() + 2);
    }
    // --sarif-root: the temp dir is the root, so the URI is the bare name.
    assert_eq!(
        after["runs"][0]["artifacts"][0]["location"]["uri"],
        "a.toml"
    );
}

#[test]
fn misspellings_come_back_with_the_word_meant() {
    let json = |rel: &str| -> Vec<Value> {
        stdout(&topocheck(&["--format", "json", rel]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let field = &json("examples/bad/unknown-field.toml")[0];
    assert_eq!(field["label"], "did you mean `priority`?");
    assert_eq!(field["help"], "rename `priorty` to `priority`");
    let region = &json("examples/bad/names.toml")[0];
    assert_eq!(region["code"], "TC002");
    assert_eq!(region["label"], "did you mean `dallas`?");
    let kind = &json("examples/bad/misspelt-kind.toml")[0];
    assert_eq!(kind["field"], "stores[0].kind");
    assert_eq!(kind["label"], "did you mean `postgres`?");
    let missing = &json("examples/no-such-file.toml")[0];
    assert_eq!(missing["code"], "TC000");
    let help = missing["help"].as_str().unwrap();
    assert!(
        help.starts_with("check the path: `examples/no-such-file.toml` is looked up from /"),
        "{help}"
    );
}
