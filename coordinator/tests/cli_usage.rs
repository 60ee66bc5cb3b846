//! Usage errors the `switchyard` binary must report before touching any
//! store: exit code 2 and a message naming the file and the bad value.

use std::process::Command;

fn switchyard(args: &[&str]) -> (i32, String) {
    let shop = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topologies/examples/shop.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--topology")
        .arg(shop)
        .args(args)
        .env(
            "SWITCHYARD_STATE_DIR",
            std::env::temp_dir().join("switchyard-cli-usage"),
        )
        .output()
        .expect("switchyard runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_target_region_is_a_usage_error_naming_the_file() {
    for args in [
        &["plan", "failover", "--to", "mars"][..],
        &["failover", "--to", "mars", "--yes"][..],
        &["drill", "--to", "mars", "--yes"][..],
    ] {
        let (code, stderr) = switchyard(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("shop.toml"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("unknown region `mars`"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("chicago, dallas, phoenix"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn unreadable_topology_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--topology", "/nonexistent/topology.toml", "state"])
        .output()
        .expect("switchyard runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/topology.toml"));
}

#[test]
fn completions_load_into_bash_without_a_topology() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["completions", "bash"])
        .env_remove("SWITCHYARD_TOPOLOGY")
        .output()
        .expect("switchyard runs");
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("switchyard.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Real bash sources it and registers the completion for `switchyard`.
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p switchyard",
            script.display()
        ))
        .output()
        .expect("bash runs");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("switchyard"));
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "state",
        "failover",
        "resume",
        "abort",
        "executions",
        "drill",
    ] {
        assert!(text.contains(sub), "completion lacks {sub}");
    }
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["man", "--dir"])
        .arg(dir.path())
        .env_remove("SWITCHYARD_TOPOLOGY")
        .output()
        .expect("switchyard runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "switchyard.1",
        "switchyard-state.1",
        "switchyard-failover.1",
        "switchyard-show.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains("\n.TH "), "{page}:\n{text}");
    }
    let state = std::fs::read_to_string(dir.path().join("switchyard-state.1")).unwrap();
    assert!(state.contains("health"), "{state}");
}

#[test]
fn misplaced_arguments_get_the_command_that_was_meant() {
    let (code, stderr) = switchyard(&["plan", "--to", "dallas"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(" plan failover --to dallas`?")
            && stderr.contains("hint: did you mean `switchyard --topology "),
        "{stderr}"
    );
    let (code, stderr) = switchyard(&["failover", "dallas", "--yes"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(" failover --to dallas --yes`?"), "{stderr}");
}
