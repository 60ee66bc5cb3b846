//! docs/topocheck.md documents every rule with the same text as
//! `topocheck --explain`; docs/topology.md mentions every model field.

use switchyard_topology::rules;

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rule_is_documented_verbatim() {
    let doc = read("docs/topocheck.md");
    for r in rules::ALL {
        let heading = format!("### {} {} ({})", r.code, r.name, r.severity);
        assert!(
            doc.contains(&heading),
            "docs/topocheck.md lacks `{heading}`"
        );
        for para in r.explanation.split("\n\n") {
            assert!(
                doc.contains(para.trim()),
                "docs/topocheck.md: {} explanation differs from rules.rs:\n{para}",
                r.code
            );
        }
    }
}

#[test]
fn every_field_is_documented() {
    let doc = read("docs/topology.md");
    let fields = [
        "name",
        "regions",
        "stores",
        "role",
        "kind",
        "depends_on",
        "max_lag_bytes",
        "max_lag_ms",
        "connection",
        "settings",
        "members",
        "tags",
        "capacity",
        "load",
        "capacity_margin_percent",
        "user",
        "database",
        "password_env",
        "tls",
        "tls_ca_file",
        "connect_timeout_ms",
        "replica_set",
        "endpoint",
        "key_env",
        "azure",
        "account",
        "arm_endpoint",
        "credential",
        "authority_host",
        "tenant_id",
        "client_id",
        "client_secret_env",
        "client_secret_file",
        "key_file",
        "locations",
        "election_timeout_ms",
        "heartbeat_interval_ms",
        "catch_up_secs",
        "sentinel_master",
        "sentinel_quorum",
        "sentinel",
        "host",
        "region",
        "priority",
        "votes",
        "arbiter",
        "hidden",
        "read_only_replica",
        "failover_priority",
        "hooks",
        "stop",
        "start",
        "start_as_standby",
        "rewind",
        "timeout_ms",
        "extra",
    ];
    for f in fields {
        assert!(
            doc.contains(&format!("| `{f}` |")),
            "docs/topology.md has no table row for `{f}`"
        );
    }
}
