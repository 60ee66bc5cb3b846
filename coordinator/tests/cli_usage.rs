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
