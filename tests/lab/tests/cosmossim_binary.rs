//! `switchyard-lab cosmosdb up`: one ready line with the endpoints, key and
//! account id, a topology that parses, secrets in files only readable by
//! their owner, fault commands on stdin, a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;

#[test]
fn cosmosdb_up_prints_ready_and_takes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-lab"))
        .args(["cosmosdb", "up", "--dir"])
        .arg(dir.path())
        .args(["--regions", "east,west,south"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true, "{line}");
    for k in [
        "topology",
        "arm_endpoint",
        "document_endpoint",
        "key",
        "account",
    ] {
        assert!(ready[k].is_string(), "{k} missing: {line}");
    }
    let account = ready["account"].as_str().unwrap();
    assert!(
        account.starts_with("/subscriptions/")
            && account.contains("/providers/Microsoft.DocumentDB/databaseAccounts/"),
        "{account}"
    );
    let topo =
        switchyard_topology::parse_file(std::path::Path::new(ready["topology"].as_str().unwrap()))
            .unwrap();
    let store = &topo.stores[0];
    assert_eq!(store.members.len(), 3);
    let az = store.connection.azure.as_ref().unwrap();
    assert_eq!(az.account, account);
    // The topology names the secret files; it never holds a secret.
    let text = std::fs::read_to_string(ready["topology"].as_str().unwrap()).unwrap();
    assert!(!text.contains(ready["key"].as_str().unwrap()));
    for f in [
        az.key_file.as_ref().unwrap(),
        az.client_secret_file.as_ref().unwrap(),
    ] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(az.key_file.as_ref().unwrap()).unwrap(),
        ready["key"].as_str().unwrap()
    );

    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "outage east").unwrap();
    writeln!(stdin, "state").unwrap();
    writeln!(stdin, "bogus").unwrap();
    let mut replies = vec![];
    for _ in 0..3 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        replies.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
    }
    assert_eq!(replies[0]["ok"], true, "{replies:?}");
    assert!(
        replies[1]["reply"].as_str().unwrap().contains("east"),
        "{replies:?}"
    );
    assert_eq!(replies[2]["ok"], false, "{replies:?}");

    switchyard_lab::postgres::signal(child.id(), "TERM").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
